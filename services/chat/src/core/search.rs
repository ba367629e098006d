//! Search: queries served from the index and checked against the store, the index's status,
//! and the chats' current states for an indexer running elsewhere.

use std::collections::HashSet;

use chatmesh_api::chat::v1::ChatState;
use chatmesh_search::{self as search, IndexQuery, SearchError, SearchStatus, source};
use chatmesh_wire::chat as wire;

use super::{ChatCore, Page, ReadBy};
use crate::{
    error::ChatError,
    model::{ChatKind, ChatRecord},
    search_source::searchable_states,
};

/// Index queries per search page at most, when the store filters many candidates out.
const MAX_SEARCH_ROUNDS: usize = 4;

/// A chat found, with the part of its text that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub chat: ChatRecord,
    pub snippet: String,
}

/// How far the index trails the store, and whether its indexer runs in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHealth {
    pub status: SearchStatus,
    pub indexer_running: bool,
}

/// Whether a search candidate, as the store holds it now, may be shown: still a text chat
/// matching the query, not retracted, in one of the `allowed` channels (the caller's), of the
/// sender asked for. (Whether the caller removed it for themselves is the store's to say.)
pub fn searchable(chat: &ChatRecord, allowed: &HashSet<u64>, query: &IndexQuery) -> bool {
    chat.kind == ChatKind::Text
        && !chat.is_retracted()
        && allowed.contains(&chat.channel_id)
        && query.sender_id.is_none_or(|s| s == chat.sender_id)
        && search::matches(&chat.text, &query.query)
}

/// Whether a time range, from `from_ms` (inclusive) until `until_ms` (exclusive), holds any time.
pub fn time_range_open(from_ms: Option<u64>, until_ms: Option<u64>) -> bool {
    match (from_ms, until_ms) {
        (Some(from), Some(until)) => from < until,
        _ => true,
    }
}

impl ChatCore {
    /// Chats of the caller's channels (or of one of them) matching a query, newest first, with
    /// the senders the caller blocked.
    pub async fn search_chats(&self, caller: u64, cmd: wire::SearchChats) -> Result<ReadBy<Page<Hit>>, ChatError> {
        let wire::SearchChats { query, channel_id, sender_id, from_ms, until_ms, page_size: size, cursor } = cmd;
        // why: what counts as a word is the search analyzer's, which the wire crate does not link.
        let query = search::parse_query(&query).map_err(ChatError::InvalidQuery)?;
        let index = &self.search()?.index;
        let channel_ids = match channel_id {
            Some(channel_id) => {
                self.directory.member(channel_id, caller).await?;
                vec![channel_id]
            }
            None => self.directory.channels_of(caller).await?,
        };
        if query.clauses.is_empty() || !time_range_open(from_ms, until_ms) {
            // why: nothing searchable was typed ("?!"), or no time lies in the range, so nothing
            // matches; asked after the membership check so the answer says no more than any search
            return Ok(ReadBy { read: Page { items: Vec::new(), next: None }, blocked: Default::default() });
        }
        let allowed: HashSet<u64> = channel_ids.iter().copied().collect();
        let mut index_query = IndexQuery {
            query,
            channel_ids,
            sender_id,
            from_ms,
            until_ms,
            before_chat_id: cursor,
            viewer: caller,
            limit: 0,
        };
        // why: the index trails the store, so every candidate is checked against the store now;
        // when many fail, ask again below the last one examined.
        let mut hits = Vec::with_capacity(size);
        let mut more = false;
        for _ in 0..MAX_SEARCH_ROUNDS {
            index_query.limit = (size - hits.len()) * 2 + 1;
            let ids = index.search(index_query.clone()).await.map_err(SearchError::from)?;
            more = ids.len() == index_query.limit;
            let mut examined = 0;
            for id in &ids {
                examined += 1;
                index_query.before_chat_id = Some(*id);
                if let Some(hit) = self.hit(*id, caller, &allowed, &index_query).await? {
                    hits.push(hit);
                    if hits.len() == size {
                        break;
                    }
                }
            }
            more |= examined < ids.len();
            if hits.len() == size || !more {
                break;
            }
        }
        let blocked = self.blocked_senders(caller, hits.iter().map(|hit| &hit.chat)).await;
        Ok(ReadBy { read: Page { items: hits, next: index_query.before_chat_id.filter(|_| more) }, blocked })
    }

    /// How far the index trails the store.
    pub async fn search_status(&self, _cmd: wire::GetSearchStatus) -> Result<SearchHealth, ChatError> {
        let search = self.search()?;
        let status = search::status(self.store.as_ref(), search.index.as_ref()).await?;
        Ok(SearchHealth { status, indexer_running: search.indexer.is_running() })
    }

    /// The searchable state of each of the chats that has one, in request order.
    pub async fn chat_states(&self, cmd: wire::GetChatStates) -> Result<Vec<ChatState>, ChatError> {
        let mut found = searchable_states(self.store.as_ref(), &cmd.chat_ids).await?;
        Ok(cmd.chat_ids.iter().filter_map(|id| found.remove(id)).map(|s| source::to_state(&s)).collect())
    }

    /// Candidate `chat_id` as the caller may see it now, or `None`.
    async fn hit(
        &self,
        chat_id: u64,
        caller: u64,
        allowed: &HashSet<u64>,
        query: &IndexQuery,
    ) -> Result<Option<Hit>, ChatError> {
        let Some(chat) = self.store.get_chat(chat_id).await? else { return Ok(None) };
        if !searchable(&chat, allowed, query) || self.store.is_removed(caller, chat_id).await? {
            return Ok(None);
        }
        let snippet = search::snippet(&chat.text, &query.query);
        Ok(Some(Hit { chat, snippet }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChatRecord, NewChat};

    fn chat(channel_id: u64, sender_id: u64, text: &str) -> ChatRecord {
        let new = NewChat {
            channel_id,
            sender_id,
            kind: ChatKind::Text,
            text: text.into(),
            client_msg_id: String::new(),
            reply_to: 0,
            mentions: Vec::new(),
            announcement: None,
            body_hash: String::new(),
            attachments: Vec::new(),
        };
        ChatRecord::created(new, 100)
    }

    fn query(words: &str, sender_id: Option<u64>) -> IndexQuery {
        IndexQuery {
            query: search::parse_query(words).unwrap(),
            channel_ids: vec![5],
            sender_id,
            from_ms: None,
            until_ms: None,
            before_chat_id: None,
            viewer: 1,
            limit: 10,
        }
    }

    #[test]
    fn a_time_range_ending_at_or_before_its_start_holds_nothing() {
        let cases = [
            ((None, None), true),
            ((Some(5), None), true),
            ((Some(5), Some(6)), true),
            ((Some(5), Some(5)), false),
            ((Some(5), Some(4)), false),
        ];
        for ((from, until), open) in cases {
            assert_eq!(time_range_open(from, until), open, "from {from:?} until {until:?}");
        }
    }

    #[test]
    fn a_candidate_is_shown_only_as_the_store_holds_it_now() {
        let allowed: HashSet<u64> = [5].into();
        let retracted = ChatRecord { text: String::new(), retracted_at_ms: Some(1), ..chat(5, 1, "lunch plans") };
        let system = ChatRecord { kind: ChatKind::System, ..chat(5, 1, "lunch plans") };
        let cases = [
            (chat(5, 1, "lunch plans"), query("lunch", None), true),
            (chat(5, 1, "lunch plans"), query("lunch", Some(1)), true),
            (chat(5, 1, "lunch plans"), query("lunch", Some(2)), false),
            (chat(5, 1, "dinner plans"), query("lunch", None), false),
            (chat(6, 1, "lunch plans"), query("lunch", None), false),
            (retracted, query("lunch", None), false),
            (system, query("lunch", None), false),
        ];
        for (i, (chat, query, shown)) in cases.into_iter().enumerate() {
            assert_eq!(searchable(&chat, &allowed, &query), shown, "case {i}: {chat:?}");
        }
    }
}
