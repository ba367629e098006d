//! The JSON Elasticsearch is sent: the index templates, a chat's document (carrying our own
//! analysis), bulk lines, and the search and delete queries. Golden files under `golden/` hold
//! what each looks like, for a reviewer to read.

use serde_json::{Value, json};
use tantivy::tokenizer::TokenStream as _;

use super::bulk::DocOp;
use crate::{
    IndexQuery, IndexedChat,
    analysis::{self, Clause},
};

/// Elasticsearch's default `index.max_result_window`: no page may reach past it.
const MAX_PAGE: usize = 10_000;
/// Stands in `words` for a token the analysis dropped (too long), keeping positions as tantivy
/// has them; never a word itself, since `_` is not a word character.
const GAP: &str = "_";

/// The tokens of the words analysis, space separated, with [`GAP`] where it dropped one.
pub(super) fn words_field(text: &str) -> String {
    let mut analyzer = analysis::words_analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut tokens: Vec<String> = Vec::new();
    while stream.advance() {
        let token = stream.token();
        while tokens.len() < token.position {
            tokens.push(GAP.to_owned());
        }
        tokens.push(token.text.clone());
    }
    tokens.join(" ")
}

/// Each CJK run's bigrams in order, then its characters, space separated. A phrase of bigrams
/// thus matches only inside one run (characters stand between runs), and a single character
/// matches anywhere: what the tantivy backend's positions give.
pub(super) fn cjk_field(text: &str) -> String {
    let mut tokens: Vec<String> = Vec::new();
    for (from, to) in analysis::cjk_runs(text) {
        let chars: Vec<char> = text[from..to].chars().collect();
        tokens.extend(chars.windows(2).map(|w| format!("{}{}", w[0], w[1])));
        tokens.extend(chars.iter().map(char::to_string));
    }
    tokens.join(" ")
}

/// The terms a CJK run of a query looks for: its bigrams in order, or the character alone.
pub(super) fn cjk_terms(run: &str) -> Vec<String> {
    let chars: Vec<char> = run.chars().collect();
    if chars.len() == 1 {
        vec![run.to_owned()]
    } else {
        chars.windows(2).map(|w| format!("{}{}", w[0], w[1])).collect()
    }
}

/// The document of a chat.
pub(super) fn document(chat: &IndexedChat) -> Value {
    json!({
        "chat_id": chat.chat_id,
        "channel_id": chat.channel_id,
        "sender_id": chat.sender_id,
        "created_at": chat.created_at_ms,
        "text": chat.text,
        "removed_for": chat.removed_for,
        "version": chat.version,
        // why: a string keeps all 64 bits through any JSON reader (a double would not).
        "digest": chat.digest().to_string(),
        "words": words_field(&chat.text),
        "cjk": cjk_field(&chat.text),
    })
}

/// The index template for `<index>` and its rebuilds (`<index>*`).
pub(super) fn template_body(index: &str) -> Value {
    let ids = json!({ "type": "unsigned_long" });
    let tokens = json!({ "type": "text", "analyzer": "whitespace", "norms": false });
    json!({
        "index_patterns": [format!("{index}*")],
        "priority": 100,
        "template": {
            "settings": {
                "number_of_shards": 1,
                // why: only commit's explicit refresh may make staged writes searchable.
                "refresh_interval": "-1",
            },
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "chat_id": ids,
                    "channel_id": ids,
                    "sender_id": ids,
                    "created_at": { "type": "date", "format": "epoch_millis" },
                    "text": { "type": "text" },
                    "removed_for": ids,
                    "version": { "type": "long", "index": false },
                    "digest": { "type": "keyword", "index": false },
                    "words": tokens,
                    "cjk": tokens,
                },
            },
        },
    })
}

/// The template of `<index>-meta`, outranking the chats' template that its name also matches.
pub(super) fn meta_template_body(index: &str) -> Value {
    json!({
        "index_patterns": [meta_index(index)],
        "priority": 200,
        "template": {
            "settings": { "number_of_shards": 1 },
            "mappings": {
                "dynamic": "strict",
                "properties": { "position": { "type": "long", "index": false } },
            },
        },
    })
}

pub(super) fn meta_index(index: &str) -> String {
    format!("{index}-meta")
}

/// The lines of a bulk request: an action line per operation, followed by the document for an
/// upsert. Upserts carry the chat's version as an external version.
pub(super) fn bulk_lines(ops: &[DocOp]) -> Vec<Value> {
    let mut lines = Vec::with_capacity(ops.len() * 2);
    for op in ops {
        match op {
            DocOp::Upsert(chat) => {
                lines.push(json!({
                    "index": { "_id": chat.chat_id.to_string(), "version": chat.version, "version_type": "external" }
                }));
                lines.push(document(chat));
            }
            DocOp::Delete { chat_id, version: None } => lines.push(json!({ "delete": { "_id": chat_id.to_string() } })),
            DocOp::Delete { chat_id, version: Some(version) } => lines.push(json!({
                "delete": { "_id": chat_id.to_string(), "version": version, "version_type": "external" }
            })),
        }
    }
    lines
}

/// The `_delete_by_query` body of a channel delete.
pub(super) fn delete_channel_body(channel_id: u64) -> Value {
    json!({ "query": { "term": { "channel_id": channel_id } } })
}

/// The search request of a query: every clause must match, filters narrow, newest first.
pub(super) fn search_body(q: &IndexQuery) -> Value {
    let must: Vec<Value> = q
        .query
        .clauses
        .iter()
        .map(|clause| {
            let (field, terms) = match clause {
                Clause::Words(words) => ("words", words.clone()),
                Clause::Cjk(run) => ("cjk", cjk_terms(run)),
            };
            // why: as the tantivy backend does, one term is a term query and more a phrase.
            match terms.as_slice() {
                [term] => json!({ "term": { field: term } }),
                _ => json!({ "match_phrase": { field: terms.join(" ") } }),
            }
        })
        .collect();
    let mut filter = vec![json!({ "terms": { "channel_id": q.channel_ids } })];
    if let Some(sender) = q.sender_id {
        filter.push(json!({ "term": { "sender_id": sender } }));
    }
    if q.from_ms.is_some() || q.until_ms.is_some() {
        let mut range = serde_json::Map::new();
        if let Some(from) = q.from_ms {
            range.insert("gte".into(), from.into());
        }
        if let Some(until) = q.until_ms {
            range.insert("lt".into(), until.into());
        }
        filter.push(json!({ "range": { "created_at": range } }));
    }
    if let Some(before) = q.before_chat_id {
        filter.push(json!({ "range": { "chat_id": { "lt": before } } }));
    }
    json!({
        "query": {
            "bool": {
                "must": must,
                "filter": filter,
                "must_not": [{ "term": { "removed_for": q.viewer } }],
            },
        },
        "sort": [{ "chat_id": { "order": "desc" } }],
        "size": q.limit.min(MAX_PAGE),
        "_source": false,
        "track_total_hits": false,
    })
}

/// The search request of `entries_after`: chats above `after_chat_id`, ascending.
pub(super) fn entries_body(after_chat_id: u64, limit: usize) -> Value {
    json!({
        "query": { "range": { "chat_id": { "gt": after_chat_id } } },
        "sort": [{ "chat_id": { "order": "asc" } }],
        "size": limit.clamp(1, MAX_PAGE),
        "_source": ["version", "digest"],
        "track_total_hits": false,
    })
}
