//! The search index on Elasticsearch: one document per searchable chat in `<index>`, and the
//! committed feed position in a one-document index `<index>-meta`.
//!
//! The documents carry the analysis already done: `words` and `cjk` hold the tokens our own
//! analyzers (the ones the tantivy backend and the query parser use) produce, joined by spaces
//! and indexed with Elasticsearch's `whitespace` analyzer, so a query clause finds exactly what
//! it finds in the embedded index. Beside them: ids, time, who removed the chat, the raw `text`
//! (the seed's field, for operators), and `version` and `digest` for `verify-index`. The seed's
//! `ignored_user_ids` is `removed_for` here; it has no `is_retract` (a retracted chat is
//! deleted) nor `updated_at` (`version` orders states).
//!
//! - Visibility: the index has `refresh_interval: -1` and writes never refresh, so staged
//!   changes become searchable only at `commit`, which refreshes and then records the position.
//!   Staged writes are durable in Elasticsearch's translog, unlike tantivy's: after a crash
//!   they are still there and show at the next refresh; the indexer's replay from the committed
//!   position rewrites them idempotently.
//! - Ordering: an upsert carries the chat's version as an external version, so a replayed or
//!   late state never overwrites a newer one (Elasticsearch answers 409, counted as done).
//! - Channel deletes: a bulk cannot delete by query, so a `DeleteChannel` ends the bulk before
//!   it and runs a `_delete_by_query` on `channel_id` (`conflicts=proceed`) before the changes
//!   after it are sent. A query only sees refreshed (committed) documents, so chats of the
//!   channel staged since the last commit are tracked here and deleted by id in the bulk.
//! - Failures: every bulk item is checked. 2xx, 409 and the 404 of a delete are done; 429 and
//!   5xx items (and a failed request) are sent again with exponential backoff, up to 5 attempts
//!   from 100 ms; a 400 is a [`Rejected`] change; anything else (a missing index, a write block)
//!   fails the write, and the indexer retries it from its last commit.
//! - `digest` is a `keyword` holding the decimal `u64`: it round-trips exactly through any JSON
//!   reader, and it is only read back, never queried.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
    time::Duration,
};

use async_trait::async_trait;
use elasticsearch::{
    BulkParts, CountParts, DeleteByQueryParts, Elasticsearch, GetParts, IndexParts, SearchParts,
    auth::Credentials,
    http::{
        StatusCode, Url,
        request::JsonBody,
        response::Response,
        transport::{SingleNodeConnectionPool, TransportBuilder},
    },
    indices::{IndicesCreateParts, IndicesPutIndexTemplateParts, IndicesRefreshParts},
    params::{Conflicts, Refresh},
};
use serde_json::{Value, json};
use tantivy::tokenizer::TokenStream as _;

use super::{
    IndexChange, IndexEntry, IndexError, IndexQuery, IndexedChat, Rejected, SearchIndex,
    analysis::{self, Clause},
};

/// The index name when none is configured.
pub const DEFAULT_INDEX: &str = "chatmesh-chats";

/// Bulk attempts before a write gives up on items Elasticsearch keeps refusing for now.
const ATTEMPTS: u32 = 5;
/// The pause before the first retry; it doubles with each attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait for one request; a delete-by-query of a large channel is the slow one.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Elasticsearch's default `index.max_result_window`: no page may reach past it.
const MAX_PAGE: usize = 10_000;
/// Elasticsearch's external versions are signed 64-bit.
const MAX_EXTERNAL_VERSION: u64 = i64::MAX as u64;
/// Staged chats tracked for channel deletes; past this (a rebuild), a channel delete refreshes.
const MAX_TRACKED: usize = 100_000;
/// Stands in `words` for a token the analysis dropped (too long), keeping positions as tantivy
/// has them; never a word itself, since `_` is not a word character.
const GAP: &str = "_";

/// Where the index lives.
#[derive(Clone)]
pub struct ElasticsearchSettings {
    /// The cluster's base URL, e.g. `http://127.0.0.1:9200`.
    pub url: String,
    /// The chats' index; the position is kept in `<index>-meta`.
    pub index: String,
    /// Basic-auth user, when the cluster has security on.
    pub username: Option<String>,
    /// Basic-auth password (with `username`).
    pub password: Option<String>,
}

impl Default for ElasticsearchSettings {
    fn default() -> Self {
        Self { url: "http://127.0.0.1:9200".into(), index: DEFAULT_INDEX.into(), username: None, password: None }
    }
}

impl std::fmt::Debug for ElasticsearchSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElasticsearchSettings")
            .field("url", &self.url)
            .field("index", &self.index)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The search index on an Elasticsearch cluster.
pub struct ElasticsearchIndex {
    client: Elasticsearch,
    index: String,
    meta_index: String,
    staged: Mutex<Staged>,
}

impl std::fmt::Debug for ElasticsearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElasticsearchIndex").field("index", &self.index).finish_non_exhaustive()
    }
}

/// Chats staged since the last commit, by channel: what a channel delete must remove by id.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    channel_of: HashMap<u64, u64>,
    /// More were staged than are tracked: a channel delete refreshes before its query instead.
    overflowed: bool,
}

impl Staged {
    fn track(&mut self, chat_id: u64, channel_id: u64) {
        if self.overflowed {
            return;
        }
        if self.channel_of.len() >= MAX_TRACKED && !self.channel_of.contains_key(&chat_id) {
            self.overflowed = true;
            self.channel_of = HashMap::new();
            return;
        }
        self.channel_of.insert(chat_id, channel_id);
    }
}

/// A document operation of a bulk request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DocOp {
    Upsert(IndexedChat),
    /// A versioned delete loses to a newer state written by another indexer (409, done).
    Delete {
        chat_id: u64,
        version: Option<u64>,
    },
}

impl DocOp {
    fn chat_id(&self) -> u64 {
        match self {
            DocOp::Upsert(chat) => chat.chat_id,
            DocOp::Delete { chat_id, .. } => *chat_id,
        }
    }
}

/// One request of a write, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Bulk(Vec<DocOp>),
    /// A `_delete_by_query` on the channel, after a refresh when staged chats were not tracked.
    DeleteChannel {
        channel_id: u64,
        refresh_first: bool,
    },
}

fn backend(e: impl std::fmt::Display) -> IndexError {
    IndexError::Backend(e.to_string())
}

/// Turns a batch of changes into the requests that apply it in order, and the changes refused
/// before sending (a version Elasticsearch cannot hold). Tracks staged chats in `staged`.
pub(crate) fn plan(changes: Vec<IndexChange>, staged: &mut Staged) -> (Vec<Step>, Vec<Rejected>) {
    let (mut steps, mut bulk, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
    for change in changes {
        match change {
            IndexChange::Upsert(chat) if chat.version > MAX_EXTERNAL_VERSION => rejected.push(Rejected {
                chat_id: chat.chat_id,
                reason: format!("version {} is beyond Elasticsearch's external versions", chat.version),
            }),
            IndexChange::Upsert(chat) => {
                staged.track(chat.chat_id, chat.channel_id);
                bulk.push(DocOp::Upsert(chat));
            }
            IndexChange::Delete { chat_id, version } => {
                staged.channel_of.remove(&chat_id);
                let version = (version > 0 && version <= MAX_EXTERNAL_VERSION).then_some(version);
                bulk.push(DocOp::Delete { chat_id, version });
            }
            IndexChange::DeleteChannel { channel_id } => {
                let mut ids: Vec<u64> =
                    staged.channel_of.iter().filter(|(_, c)| **c == channel_id).map(|(id, _)| *id).collect();
                ids.sort_unstable();
                for chat_id in ids {
                    staged.channel_of.remove(&chat_id);
                    bulk.push(DocOp::Delete { chat_id, version: None });
                }
                if !bulk.is_empty() {
                    steps.push(Step::Bulk(std::mem::take(&mut bulk)));
                }
                steps.push(Step::DeleteChannel { channel_id, refresh_first: staged.overflowed });
            }
        }
    }
    if !bulk.is_empty() {
        steps.push(Step::Bulk(bulk));
    }
    (steps, rejected)
}

/// The tokens of the words analysis, space separated, with [`GAP`] where it dropped one.
fn words_field(text: &str) -> String {
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
fn cjk_field(text: &str) -> String {
    let mut tokens: Vec<String> = Vec::new();
    for (from, to) in analysis::cjk_runs(text) {
        let chars: Vec<char> = text[from..to].chars().collect();
        tokens.extend(chars.windows(2).map(|w| format!("{}{}", w[0], w[1])));
        tokens.extend(chars.iter().map(char::to_string));
    }
    tokens.join(" ")
}

/// The terms a CJK run of a query looks for: its bigrams in order, or the character alone.
fn cjk_terms(run: &str) -> Vec<String> {
    let chars: Vec<char> = run.chars().collect();
    if chars.len() == 1 {
        vec![run.to_owned()]
    } else {
        chars.windows(2).map(|w| format!("{}{}", w[0], w[1])).collect()
    }
}

/// The document of a chat.
fn document(chat: &IndexedChat) -> Value {
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
pub(crate) fn template_body(index: &str) -> Value {
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
pub(crate) fn meta_template_body(index: &str) -> Value {
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

fn meta_index(index: &str) -> String {
    format!("{index}-meta")
}

/// The lines of a bulk request: an action line per operation, followed by the document for an
/// upsert. Upserts carry the chat's version as an external version.
pub(crate) fn bulk_lines(ops: &[DocOp]) -> Vec<Value> {
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
pub(crate) fn delete_channel_body(channel_id: u64) -> Value {
    json!({ "query": { "term": { "channel_id": channel_id } } })
}

/// The search request of a query: every clause must match, filters narrow, newest first.
pub(crate) fn search_body(q: &IndexQuery) -> Value {
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
pub(crate) fn entries_body(after_chat_id: u64, limit: usize) -> Value {
    json!({
        "query": { "range": { "chat_id": { "gt": after_chat_id } } },
        "sort": [{ "chat_id": { "order": "asc" } }],
        "size": limit.clamp(1, MAX_PAGE),
        "_source": ["version", "digest"],
        "track_total_hits": false,
    })
}

/// What became of the items of a bulk request (indices into what was sent).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Applied, or already superseded (409: the index holds this version or a newer one).
    pub done: Vec<usize>,
    /// Refused for now (429, 5xx): to send again.
    pub retry: Vec<usize>,
    /// Refused for good (400: the document is malformed).
    pub rejected: Vec<Rejected>,
    /// Why the first item to retry was refused.
    pub retry_reason: Option<String>,
}

/// Sorts the items of a bulk response; an item refused in a way no retry or dead letter fixes
/// (a missing index, a read-only block, a forbidden write) fails the whole write.
pub(crate) fn classify(response: &Value, sent: &[DocOp]) -> Result<Outcome, IndexError> {
    let items = response.get("items").and_then(Value::as_array).ok_or_else(|| backend("bulk: no items in response"))?;
    if items.len() != sent.len() {
        return Err(backend(format!("bulk: {} items answered for {} sent", items.len(), sent.len())));
    }
    let mut outcome = Outcome::default();
    for (i, (item, op)) in items.iter().zip(sent).enumerate() {
        let result = item.as_object().and_then(|o| o.values().next()).unwrap_or(&Value::Null);
        let status = result.get("status").and_then(Value::as_u64).unwrap_or(0);
        let error = result.get("error");
        match status {
            200..=299 | 409 => outcome.done.push(i),
            // a delete of a chat the index does not hold
            404 if error.is_none() && matches!(op, DocOp::Delete { .. }) => outcome.done.push(i),
            429 | 500..=599 => {
                outcome.retry.push(i);
                outcome.retry_reason.get_or_insert_with(|| format!("HTTP {status}: {}", reason(error)));
            }
            400 => outcome.rejected.push(Rejected { chat_id: op.chat_id(), reason: reason(error) }),
            _ => {
                return Err(backend(format!(
                    "bulk: chat {} refused with HTTP {status}: {}",
                    op.chat_id(),
                    reason(error)
                )));
            }
        }
    }
    Ok(outcome)
}

/// `type: reason` of an Elasticsearch error object.
fn reason(error: Option<&Value>) -> String {
    let Some(error) = error else { return "no error given".into() };
    let field = |name| error.get(name).and_then(Value::as_str);
    match (field("type"), field("reason")) {
        (Some(ty), Some(reason)) => format!("{ty}: {reason}"),
        (Some(ty), None) => ty.to_owned(),
        _ => error.to_string(),
    }
}

/// The items to send again: those refused, and every later one about the same chat, so a
/// retried change cannot land after a change that followed it.
fn with_followers(ops: &[DocOp], refused: &[usize]) -> Vec<usize> {
    let refused: HashSet<usize> = refused.iter().copied().collect();
    let mut chats = HashSet::new();
    let mut again = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if refused.contains(&i) || chats.contains(&op.chat_id()) {
            chats.insert(op.chat_id());
            again.push(i);
        }
    }
    again
}

/// A response's status and body (JSON when it parses, else the text).
async fn read(response: Response, what: &str) -> Result<(StatusCode, Value), IndexError> {
    let status = response.status_code();
    let text = response.text().await.map_err(|e| backend(format!("{what}: {e}")))?;
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    Ok((status, body))
}

/// The body of a successful response, or an error naming the request and Elasticsearch's reason.
async fn success(response: Response, what: &str) -> Result<Value, IndexError> {
    let (status, body) = read(response, what).await?;
    if status.is_success() { Ok(body) } else { Err(failure(what, status, &body)) }
}

fn failure(what: &str, status: StatusCode, body: &Value) -> IndexError {
    let detail = match body.get("error") {
        Some(error) if error.is_object() => reason(Some(error)),
        _ => body.to_string().chars().take(500).collect(),
    };
    backend(format!("{what}: HTTP {}: {detail}", status.as_u16()))
}

impl ElasticsearchIndex {
    /// Connects to the cluster, installs the index templates and creates the indices if absent.
    /// A template changed since an index was created applies only to indices created after it:
    /// rebuild into a new index name to take it up.
    pub async fn connect(settings: ElasticsearchSettings) -> Result<Self, IndexError> {
        let url = Url::parse(&settings.url).map_err(|e| backend(format!("elasticsearch url {}: {e}", settings.url)))?;
        let mut transport = TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(REQUEST_TIMEOUT);
        if let Some(username) = settings.username {
            transport = transport.auth(Credentials::Basic(username, settings.password.unwrap_or_default()));
        }
        let transport = transport.build().map_err(|e| backend(format!("elasticsearch client: {e}")))?;
        let index = Self {
            client: Elasticsearch::new(transport),
            meta_index: meta_index(&settings.index),
            index: settings.index,
            staged: Mutex::new(Staged::default()),
        };
        index.put_template(&index.meta_index, meta_template_body(&index.index)).await?;
        index.put_template(&index.index, template_body(&index.index)).await?;
        index.create_index(&index.index).await?;
        index.create_index(&index.meta_index).await?;
        Ok(index)
    }

    async fn put_template(&self, name: &str, body: Value) -> Result<(), IndexError> {
        let what = format!("putting index template {name}");
        let response = self
            .client
            .indices()
            .put_index_template(IndicesPutIndexTemplateParts::Name(name))
            .body(body)
            .send()
            .await
            .map_err(|e| backend(format!("{what}: {e}")))?;
        success(response, &what).await.map(drop)
    }

    /// Creates `name` (its template gives settings and mappings) unless it exists.
    async fn create_index(&self, name: &str) -> Result<(), IndexError> {
        let what = format!("creating index {name}");
        let response = self
            .client
            .indices()
            .create(IndicesCreateParts::Index(name))
            .send()
            .await
            .map_err(|e| backend(format!("{what}: {e}")))?;
        let (status, body) = read(response, &what).await?;
        let exists = body.pointer("/error/type").and_then(Value::as_str) == Some("resource_already_exists_exception");
        if status.is_success() || exists { Ok(()) } else { Err(failure(&what, status, &body)) }
    }

    async fn refresh(&self) -> Result<(), IndexError> {
        let what = format!("refreshing {}", self.index);
        let response = self
            .client
            .indices()
            .refresh(IndicesRefreshParts::Index(&[&self.index]))
            .send()
            .await
            .map_err(|e| backend(format!("{what}: {e}")))?;
        let body = success(response, &what).await?;
        match body.pointer("/_shards/failed").and_then(Value::as_u64) {
            Some(0) | None => Ok(()),
            Some(failed) => Err(backend(format!("{what}: {failed} shards failed"))),
        }
    }

    /// Sends `ops` in one bulk request, then again those refused for now, with backoff.
    async fn bulk(&self, mut ops: Vec<DocOp>) -> Result<Vec<Rejected>, IndexError> {
        let mut rejected = Vec::new();
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let lines: Vec<JsonBody<Value>> = bulk_lines(&ops).into_iter().map(JsonBody::new).collect();
            let sent = self.client.bulk(BulkParts::Index(&self.index)).refresh(Refresh::False).body(lines).send().await;
            let answer = match sent {
                Ok(response) => read(response, "bulk").await,
                Err(e) => Err(backend(format!("bulk: {e}"))),
            };
            let everything = || (0..ops.len()).collect::<Vec<_>>();
            let (retry, why) = match answer {
                // why: a request lost on the way may or may not have applied; resending is idempotent.
                Err(e) => (everything(), e.to_string()),
                Ok((status, body)) if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() => {
                    (everything(), failure("bulk", status, &body).to_string())
                }
                Ok((status, body)) if !status.is_success() => return Err(failure("bulk", status, &body)),
                Ok((_, body)) => {
                    let outcome = classify(&body, &ops)?;
                    rejected.extend(outcome.rejected);
                    (outcome.retry, outcome.retry_reason.unwrap_or_default())
                }
            };
            if retry.is_empty() {
                // a chat sent again with a retried change may have been refused twice
                let mut seen = HashSet::new();
                rejected.retain(|r: &Rejected| seen.insert((r.chat_id, r.reason.clone())));
                return Ok(rejected);
            }
            let again = with_followers(&ops, &retry);
            if attempt == ATTEMPTS {
                return Err(backend(format!(
                    "bulk: {} changes still refused after {ATTEMPTS} attempts: {why}",
                    again.len()
                )));
            }
            tracing::warn!(attempt, changes = again.len(), reason = %why, "elasticsearch refused changes, retrying");
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            let again: HashSet<usize> = again.into_iter().collect();
            ops = ops.into_iter().enumerate().filter(|(i, _)| again.contains(i)).map(|(_, op)| op).collect();
        }
    }

    /// Deletes the channel's searchable (committed) chats; its staged ones went by id.
    async fn delete_channel(&self, channel_id: u64) -> Result<(), IndexError> {
        let what = format!("deleting channel {channel_id}");
        let response = self
            .client
            .delete_by_query(DeleteByQueryParts::Index(&[&self.index]))
            // why: a committed chat staged again since conflicts; it already went by id.
            .conflicts(Conflicts::Proceed)
            .refresh(false)
            .body(delete_channel_body(channel_id))
            .send()
            .await
            .map_err(|e| backend(format!("{what}: {e}")))?;
        let body = success(response, &what).await?;
        let failures = body.get("failures").and_then(Value::as_array).map_or(0, Vec::len);
        if failures > 0 || body.get("timed_out").and_then(Value::as_bool) == Some(true) {
            return Err(backend(format!("{what}: {failures} failures, timed out: {}", body["timed_out"])));
        }
        Ok(())
    }

    async fn search_hits(&self, body: Value, what: &str) -> Result<Vec<Value>, IndexError> {
        let response = self
            .client
            .search(SearchParts::Index(&[&self.index]))
            .body(body)
            .send()
            .await
            .map_err(|e| backend(format!("{what}: {e}")))?;
        let mut body = success(response, what).await?;
        match body.pointer_mut("/hits/hits").map(Value::take) {
            Some(Value::Array(hits)) => Ok(hits),
            _ => Err(backend(format!("{what}: no hits in response"))),
        }
    }

    /// Deletes both indices and both templates: for tests.
    #[cfg(test)]
    async fn destroy(&self) {
        use elasticsearch::indices::{IndicesDeleteIndexTemplateParts, IndicesDeleteParts};
        let indices = self.client.indices();
        let _ = indices.delete(IndicesDeleteParts::Index(&[&self.index, &self.meta_index])).send().await;
        for name in [&self.index, &self.meta_index] {
            let _ = indices.delete_index_template(IndicesDeleteIndexTemplateParts::Name(name)).send().await;
        }
    }
}

/// The chat id of a hit (its `_id`).
fn hit_id(hit: &Value) -> Result<u64, IndexError> {
    hit.get("_id")
        .and_then(Value::as_str)
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| backend(format!("a hit without a chat id: {hit}")))
}

#[async_trait]
impl SearchIndex for ElasticsearchIndex {
    async fn write(&self, changes: Vec<IndexChange>) -> Result<Vec<Rejected>, IndexError> {
        let (steps, mut rejected) = {
            let mut staged = self.staged.lock().unwrap_or_else(|e| e.into_inner());
            plan(changes, &mut staged)
        };
        for step in steps {
            match step {
                Step::Bulk(ops) => rejected.extend(self.bulk(ops).await?),
                Step::DeleteChannel { channel_id, refresh_first } => {
                    if refresh_first {
                        self.refresh().await?;
                    }
                    self.delete_channel(channel_id).await?;
                }
            }
        }
        Ok(rejected)
    }

    async fn commit(&self, position: u64) -> Result<(), IndexError> {
        // why: searchable first, then the position: it never claims more than is searchable.
        self.refresh().await?;
        let what = format!("recording position {position}");
        let response = self
            .client
            // why: no refresh: `position` reads it back with a real-time GET by id
            .index(IndexParts::IndexId(&self.meta_index, "position"))
            .body(json!({ "position": position }))
            .send()
            .await
            .map_err(|e| backend(format!("{what}: {e}")))?;
        success(response, &what).await?;
        *self.staged.lock().unwrap_or_else(|e| e.into_inner()) = Staged::default();
        Ok(())
    }

    async fn position(&self) -> Result<u64, IndexError> {
        let what = "reading the position";
        let response = self
            .client
            .get(GetParts::IndexId(&self.meta_index, "position"))
            .send()
            .await
            .map_err(|e| backend(format!("{what}: {e}")))?;
        let (status, body) = read(response, what).await?;
        if status == StatusCode::NOT_FOUND {
            // no position recorded: nothing was committed
            return Ok(0);
        }
        if !status.is_success() {
            return Err(failure(what, status, &body));
        }
        body.pointer("/_source/position").and_then(Value::as_u64).ok_or_else(|| backend(format!("{what}: {body}")))
    }

    async fn search(&self, query: IndexQuery) -> Result<Vec<u64>, IndexError> {
        if query.channel_ids.is_empty() || query.limit == 0 {
            return Ok(Vec::new());
        }
        self.search_hits(search_body(&query), "searching").await?.iter().map(hit_id).collect()
    }

    async fn documents(&self) -> Result<u64, IndexError> {
        let what = "counting documents";
        let response = self
            .client
            .count(CountParts::Index(&[&self.index]))
            .send()
            .await
            .map_err(|e| backend(format!("{what}: {e}")))?;
        let body = success(response, what).await?;
        body.get("count").and_then(Value::as_u64).ok_or_else(|| backend(format!("{what}: {body}")))
    }

    async fn entries_after(&self, after_chat_id: u64, limit: usize) -> Result<Vec<IndexEntry>, IndexError> {
        let hits = self.search_hits(entries_body(after_chat_id, limit), "listing entries").await?;
        hits.iter()
            .map(|hit| {
                let version = hit.pointer("/_source/version").and_then(Value::as_u64);
                let digest = hit.pointer("/_source/digest").and_then(Value::as_str).and_then(|d| d.parse().ok());
                match (version, digest) {
                    (Some(version), Some(digest)) => Ok(IndexEntry { chat_id: hit_id(hit)?, version, digest }),
                    _ => Err(backend(format!("an entry without version or digest: {hit}"))),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, sync::Arc};

    use super::*;
    use crate::search::{conformance, parse_query};

    // --- golden files: what is sent, for a reviewer to read ---

    fn golden_path(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/search/golden").join(name)
    }

    /// Compares `got` with the golden file `name` structurally; `CHATMESH_BLESS=1` rewrites it.
    fn golden(name: &str, got: &Value) {
        let path = golden_path(name);
        if std::env::var("CHATMESH_BLESS").as_deref() == Ok("1") {
            let text = serde_json::to_string_pretty(got).expect("json") + "\n";
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).expect("golden folder");
            }
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            return;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e} (CHATMESH_BLESS=1 writes it)", path.display()));
        let expected: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let mut differences = Vec::new();
        diff("", &expected, got, &mut differences);
        assert!(
            differences.is_empty(),
            "{} differs from what the code sends:\n{}\n(if the change is intended: CHATMESH_BLESS=1 rewrites it; \
             then review the file)",
            path.display(),
            differences.join("\n")
        );
    }

    /// The JSON pointers at which two values differ, with both sides.
    fn diff(at: &str, expected: &Value, got: &Value, out: &mut Vec<String>) {
        match (expected, got) {
            (Value::Object(e), Value::Object(g)) => {
                let keys: std::collections::BTreeSet<&String> = e.keys().chain(g.keys()).collect();
                for key in keys {
                    let here = format!("{at}/{key}");
                    match (e.get(key), g.get(key)) {
                        (Some(e), Some(g)) => diff(&here, e, g, out),
                        (Some(e), None) => out.push(format!("  {here}: expected {e}, missing")),
                        (None, Some(g)) => out.push(format!("  {here}: not expected, got {g}")),
                        (None, None) => {}
                    }
                }
            }
            (Value::Array(e), Value::Array(g)) if e.len() == g.len() => {
                for (i, (e, g)) in e.iter().zip(g).enumerate() {
                    diff(&format!("{at}/{i}"), e, g, out);
                }
            }
            _ if expected != got => {
                out.push(format!("  {}: expected {expected}, got {got}", if at.is_empty() { "/" } else { at }))
            }
            _ => {}
        }
    }

    fn chat(chat_id: u64, channel_id: u64, text: &str) -> IndexedChat {
        IndexedChat { version: 100 + chat_id, ..conformance::chat(chat_id, channel_id, 7, text) }
    }

    /// The requests of a write, as JSON.
    fn describe(steps: &[Step]) -> Value {
        steps
            .iter()
            .map(|step| match step {
                Step::Bulk(ops) => json!({ "bulk": bulk_lines(ops) }),
                Step::DeleteChannel { channel_id, refresh_first } => {
                    json!({ "delete_by_query": delete_channel_body(*channel_id), "refresh_first": refresh_first })
                }
            })
            .collect()
    }

    #[test]
    fn the_index_template_matches_its_golden_file() {
        golden("template.json", &template_body(DEFAULT_INDEX));
        golden("meta_template.json", &meta_template_body(DEFAULT_INDEX));
    }

    #[test]
    fn a_batch_becomes_bulks_around_a_channel_delete() {
        let changes = vec![
            IndexChange::Upsert(IndexedChat {
                removed_for: vec![9, 8],
                ..chat(1, 1, "Meetings at the Café 猫が好き!")
            }),
            IndexChange::Upsert(chat(2, 2, "release notes")),
            IndexChange::Delete { chat_id: 3, version: 103 },
            IndexChange::DeleteChannel { channel_id: 2 },
            IndexChange::Upsert(chat(4, 2, "after the delete")),
        ];
        let (steps, rejected) = plan(changes, &mut Staged::default());
        assert!(rejected.is_empty());
        golden("bulk.json", &describe(&steps));
    }

    #[test]
    fn words_and_filters_query_matches_its_golden_file() {
        let q = IndexQuery {
            query: parse_query("MEETINGS plan").unwrap(),
            channel_ids: vec![1, 2],
            sender_id: Some(11),
            from_ms: Some(2000),
            until_ms: Some(5000),
            before_chat_id: Some(5),
            viewer: 8,
            limit: 20,
        };
        golden("search_words_and_filters.json", &search_body(&q));
    }

    #[test]
    fn cjk_and_phrase_query_matches_its_golden_file() {
        let q = conformance::query("\"release notes\" 猫が好き 猫 好き", &[3]);
        golden("search_cjk_and_phrase.json", &search_body(&q));
    }

    #[test]
    fn entries_request_matches_its_golden_file() {
        golden("entries.json", &entries_body(41, 500));
    }

    // --- pure parts ---

    #[test]
    fn documents_hold_the_tokens_of_our_own_analysis() {
        assert_eq!(words_field("Meetings at the Café猫が好きtomorrow"), "meet at the cafe tomorrow");
        let long = "x".repeat(50);
        assert_eq!(words_field(&format!("release {long} notes")), "releas _ note", "a dropped word keeps its place");
        assert_eq!(cjk_field("猫が好き and 犬"), "猫が が好 好き 猫 が 好 き 犬");
        assert_eq!(cjk_terms("猫"), vec!["猫"]);
        assert_eq!(cjk_terms("猫が好"), vec!["猫が", "が好"]);
        let digest = document(&chat(1, 1, "x"))["digest"].as_str().unwrap().parse::<u64>().unwrap();
        assert_eq!(digest, chat(1, 1, "x").digest(), "the digest round-trips as a string");
    }

    #[test]
    fn bulk_items_are_done_retried_or_rejected() {
        let sent = vec![
            DocOp::Upsert(chat(1, 1, "a")),
            DocOp::Upsert(chat(2, 1, "b")),
            DocOp::Upsert(chat(3, 1, "c")),
            DocOp::Upsert(chat(4, 1, "d")),
            DocOp::Delete { chat_id: 5, version: Some(7) },
        ];
        let response = json!({
            "took": 3,
            "errors": true,
            "items": [
                { "index": { "_id": "1", "_version": 101, "result": "created", "status": 201 } },
                { "index": { "_id": "2", "status": 409, "error": {
                    "type": "version_conflict_engine_exception",
                    "reason": "[2]: version conflict, current version [102] is higher or equal to the one provided [102]" } } },
                { "index": { "_id": "3", "status": 429, "error": {
                    "type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation" } } },
                { "index": { "_id": "4", "status": 400, "error": {
                    "type": "document_parsing_exception", "reason": "[1:2] failed to parse field [created_at]" } } },
                { "delete": { "_id": "5", "result": "not_found", "status": 404 } },
            ],
        });
        let outcome = classify(&response, &sent).unwrap();
        assert_eq!(outcome.done, vec![0, 1, 4]);
        assert_eq!(outcome.retry, vec![2]);
        assert_eq!(
            outcome.rejected,
            vec![Rejected {
                chat_id: 4,
                reason: "document_parsing_exception: [1:2] failed to parse field [created_at]".into()
            }]
        );
        assert!(outcome.retry_reason.unwrap().starts_with("HTTP 429: es_rejected_execution_exception"));

        let blocked = json!({ "items": [{ "index": { "_id": "1", "status": 403, "error": {
            "type": "cluster_block_exception", "reason": "index [chatmesh-chats] blocked by: [FORBIDDEN/8/index write (api)];" } } }] });
        let err = classify(&blocked, &sent[..1]).unwrap_err();
        assert!(err.to_string().contains("cluster_block_exception"), "{err}");
        assert!(classify(&json!({ "items": [] }), &sent[..1]).is_err(), "every item must be answered");
    }

    #[test]
    fn a_retried_change_brings_the_later_changes_of_its_chat() {
        let ops = vec![
            DocOp::Upsert(chat(1, 1, "a")),
            DocOp::Upsert(chat(2, 1, "b")),
            DocOp::Delete { chat_id: 1, version: Some(4) },
            DocOp::Upsert(chat(3, 1, "c")),
        ];
        assert_eq!(with_followers(&ops, &[0]), vec![0, 2]);
        assert_eq!(with_followers(&ops, &[3]), vec![3]);
    }

    #[test]
    fn staged_chats_of_a_deleted_channel_go_by_id_until_too_many_are_tracked() {
        let mut staged = Staged::default();
        let (steps, _) = plan(vec![IndexChange::Upsert(chat(1, 2, "a"))], &mut staged);
        assert_eq!(steps, vec![Step::Bulk(vec![DocOp::Upsert(chat(1, 2, "a"))])]);
        let (steps, _) = plan(vec![IndexChange::DeleteChannel { channel_id: 2 }], &mut staged);
        assert_eq!(
            steps,
            vec![
                Step::Bulk(vec![DocOp::Delete { chat_id: 1, version: None }]),
                Step::DeleteChannel { channel_id: 2, refresh_first: false }
            ]
        );

        let many = (0..=MAX_TRACKED as u64).map(|id| IndexChange::Upsert(chat(id, 2, "a"))).collect();
        let _ = plan(many, &mut staged);
        let (steps, _) = plan(vec![IndexChange::DeleteChannel { channel_id: 2 }], &mut staged);
        assert_eq!(steps, vec![Step::DeleteChannel { channel_id: 2, refresh_first: true }]);
    }

    #[test]
    fn versions_beyond_elasticsearch_are_rejected_before_sending() {
        let chat = IndexedChat { version: u64::MAX, ..chat(1, 1, "a") };
        let (steps, rejected) = plan(vec![IndexChange::Upsert(chat)], &mut Staged::default());
        assert!(steps.is_empty());
        assert_eq!(rejected.len(), 1);
    }

    #[tokio::test]
    async fn an_unreachable_cluster_is_an_error() {
        let settings = ElasticsearchSettings { url: "http://127.0.0.1:1".into(), ..Default::default() };
        let err = ElasticsearchIndex::connect(settings).await.unwrap_err();
        assert!(err.to_string().contains("index template"), "{err}");
        let settings = ElasticsearchSettings { url: "not a url".into(), ..Default::default() };
        assert!(ElasticsearchIndex::connect(settings).await.is_err());
    }

    #[test]
    fn settings_do_not_print_the_password() {
        let settings = ElasticsearchSettings { password: Some("hunter2".into()), ..Default::default() };
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    // --- the client against a scripted stand-in for Elasticsearch ---

    /// Requests seen: `METHOD /path?query` and the body.
    type Seen = Arc<Mutex<Vec<(String, String)>>>;
    /// Answers to give: path, status, body.
    type Script = Arc<Mutex<Vec<(&'static str, u16, Value)>>>;

    /// Answers requests from a script (by path, in order; 200 `{"acknowledged": true}` when
    /// the script has nothing for a path) and records them.
    struct Stand {
        url: String,
        seen: Seen,
    }

    async fn answer(
        axum::extract::State((script, seen)): axum::extract::State<(Script, Seen)>,
        method: axum::http::Method,
        uri: axum::http::Uri,
        body: String,
    ) -> (axum::http::StatusCode, String) {
        seen.lock().unwrap().push((format!("{method} {uri}"), body));
        let mut script = script.lock().unwrap();
        let (status, answer) = match script.iter().position(|(path, _, _)| *path == uri.path()) {
            Some(i) => {
                let (_, status, answer) = script.remove(i);
                (status, answer)
            }
            None => (200, json!({ "acknowledged": true })),
        };
        (axum::http::StatusCode::from_u16(status).unwrap(), answer.to_string())
    }

    impl Stand {
        async fn start(script: Vec<(&'static str, u16, Value)>) -> Self {
            let seen = Seen::default();
            let app = axum::Router::new().fallback(answer).with_state((Arc::new(Mutex::new(script)), seen.clone()));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await });
            Self { url, seen }
        }

        fn requests(&self) -> Vec<String> {
            self.seen.lock().unwrap().iter().map(|(request, _)| request.clone()).collect()
        }

        /// The bodies of the requests to `path`, each as its JSON lines.
        fn bodies(&self, path: &str) -> Vec<Vec<Value>> {
            let seen = self.seen.lock().unwrap();
            seen.iter()
                .filter(|(request, _)| request.split(['?', ' ']).nth(1) == Some(path))
                .map(|(_, body)| body.lines().map(|line| serde_json::from_str(line).unwrap()).collect())
                .collect()
        }
    }

    #[tokio::test]
    async fn a_write_retries_what_was_refused_for_now_and_deletes_a_channel_in_order() {
        let item = |op: &str, id: u64, status: u16| json!({ op: { "_id": id.to_string(), "status": status } });
        let busy =
            json!({ "index": { "_id": "2", "status": 429, "error": { "type": "es_rejected_execution_exception" } } });
        let malformed = json!({ "index": { "_id": "4", "status": 400, "error": {
            "type": "document_parsing_exception", "reason": "bad" } } });
        let stand = Stand::start(vec![
            ("/chatmesh-chats/_bulk", 200, json!({ "items": [item("index", 1, 201), busy, malformed, item("delete", 1, 200)] })),
            ("/chatmesh-chats/_bulk", 200, json!({ "items": [item("index", 2, 201)] })),
            ("/chatmesh-chats/_delete_by_query", 200, json!({ "deleted": 3, "failures": [], "timed_out": false })),
            ("/chatmesh-chats/_bulk", 200, json!({ "items": [item("index", 3, 201)] })),
            ("/chatmesh-chats/_refresh", 200, json!({ "_shards": { "total": 1, "successful": 1, "failed": 0 } })),
            ("/chatmesh-chats-meta/_doc/position", 201, json!({ "result": "created" })),
            ("/chatmesh-chats-meta/_doc/position", 200, json!({ "found": true, "_source": { "position": 7 } })),
            ("/chatmesh-chats/_search", 200, json!({ "hits": { "hits": [{ "_id": "3" }, { "_id": "1" }] } })),
            ("/chatmesh-chats/_count", 200, json!({ "count": 2 })),
            (
                "/chatmesh-chats/_search",
                200,
                json!({ "hits": { "hits": [{ "_id": "3", "_source": { "version": 103, "digest": "18446744073709551615" } }] } }),
            ),
        ])
        .await;
        let settings = ElasticsearchSettings { url: stand.url.clone(), ..Default::default() };
        let index = ElasticsearchIndex::connect(settings).await.unwrap();

        let rejected = index
            .write(vec![
                IndexChange::Upsert(chat(1, 1, "one")),
                IndexChange::Upsert(chat(2, 2, "two")),
                IndexChange::Upsert(chat(4, 2, "four")),
                IndexChange::DeleteChannel { channel_id: 1 },
                IndexChange::Upsert(chat(3, 1, "three")),
            ])
            .await
            .unwrap();
        assert_eq!(rejected, vec![Rejected { chat_id: 4, reason: "document_parsing_exception: bad".into() }]);
        index.commit(7).await.unwrap();
        assert_eq!(index.position().await.unwrap(), 7);
        assert_eq!(index.search(conformance::query("three", &[1])).await.unwrap(), vec![3, 1]);
        assert_eq!(index.documents().await.unwrap(), 2);
        let entries = index.entries_after(2, 10).await.unwrap();
        assert_eq!(entries, vec![IndexEntry { chat_id: 3, version: 103, digest: u64::MAX }]);

        assert_eq!(
            stand.requests(),
            vec![
                "PUT /_index_template/chatmesh-chats-meta",
                "PUT /_index_template/chatmesh-chats",
                "PUT /chatmesh-chats",
                "PUT /chatmesh-chats-meta",
                "POST /chatmesh-chats/_bulk?refresh=false",
                "POST /chatmesh-chats/_bulk?refresh=false",
                "POST /chatmesh-chats/_delete_by_query?conflicts=proceed&refresh=false",
                "POST /chatmesh-chats/_bulk?refresh=false",
                "GET /chatmesh-chats/_refresh",
                "POST /chatmesh-chats-meta/_doc/position",
                "GET /chatmesh-chats-meta/_doc/position",
                "POST /chatmesh-chats/_search",
                "GET /chatmesh-chats/_count",
                "POST /chatmesh-chats/_search",
            ]
        );
        let bulks = stand.bodies("/chatmesh-chats/_bulk");
        let ids = |lines: &Vec<Value>| -> Vec<String> {
            lines
                .iter()
                .filter_map(|l| l.as_object()?.values().next()?.get("_id")?.as_str().map(str::to_owned))
                .collect()
        };
        assert_eq!(ids(&bulks[0]), ["1", "2", "4", "1"], "the staged chat of the channel goes by id");
        assert_eq!(ids(&bulks[1]), ["2"], "only what was refused for now is sent again");
        assert_eq!(ids(&bulks[2]), ["3"], "what follows a channel delete is sent after it");
    }

    #[tokio::test]
    async fn a_bulk_refused_every_time_fails_the_write() {
        let busy = json!({ "items": [{ "index": { "_id": "1", "status": 503, "error": { "type": "unavailable_shards_exception" } } }] });
        let stand = Stand::start((0..ATTEMPTS).map(|_| ("/chatmesh-chats/_bulk", 200, busy.clone())).collect()).await;
        let index = ElasticsearchIndex::connect(ElasticsearchSettings { url: stand.url.clone(), ..Default::default() })
            .await
            .unwrap();
        let err = index.write(vec![IndexChange::Upsert(chat(1, 1, "one"))]).await.unwrap_err();
        assert!(err.to_string().contains("after 5 attempts: HTTP 503: unavailable_shards_exception"), "{err}");
        assert_eq!(stand.bodies("/chatmesh-chats/_bulk").len(), ATTEMPTS as usize);
    }

    // --- the shared suite, against a real cluster ---

    macro_rules! against_elasticsearch {
        ($($case:ident),+ $(,)?) => {
            mod conformance_against_elasticsearch {
                use futures::FutureExt as _;

                use super::*;

                $(
                    #[tokio::test]
                    async fn $case() {
                        let Ok(url) = std::env::var("CHATMESH_TEST_ELASTICSEARCH") else {
                            println!("skipped: CHATMESH_TEST_ELASTICSEARCH not set");
                            return;
                        };
                        let settings = ElasticsearchSettings {
                            url,
                            index: format!("chatmesh-test-{}", uuid::Uuid::new_v4().simple()),
                            ..Default::default()
                        };
                        let index = ElasticsearchIndex::connect(settings).await.expect("elasticsearch connects");
                        let outcome = std::panic::AssertUnwindSafe(conformance::$case(&index)).catch_unwind().await;
                        index.destroy().await;
                        if let Err(panic) = outcome {
                            std::panic::resume_unwind(panic);
                        }
                    }
                )+
            }
        };
    }

    against_elasticsearch!(
        words_are_stemmed_and_cjk_phrases_match_as_written,
        filters_narrow_and_pages_run_newest_first,
        upserts_replace_and_deletes_forget,
        removed_chats_are_not_found_by_their_removers,
        entries_list_what_was_committed_in_chat_order,
        nothing_is_searchable_before_a_commit,
    );
}
