//! What search reads of the chat store: the current, searchable state of chats (from the store
//! in the chat part's process, or from the chat part's `GetChatStates` in a process of its own),
//! and, for the indexer that follows the store itself, its change feed and a scan of every chat.
//! The chat crate implements these traits for its stores.

use std::collections::HashMap;

use async_trait::async_trait;
use chatmesh_api::chat::v1::{
    ChannelEvent, ChatState, GetChatStatesRequest, chat_internal_service_client::ChatInternalServiceClient,
};
use chatmesh_platform::{grpc::InternalChannel, ids};

use crate::{IndexedChat, SourceError};

/// Chats asked of `GetChatStates` at once, at most (the batch cap of every id list).
const MAX_STATES: usize = chatmesh_wire::chat::MAX_BATCH_IDS;

/// The current, searchable state of chats.
#[async_trait]
pub trait ChatSource: Send + Sync + 'static {
    /// The state of each of `chat_ids` that is searchable now (a text chat, not retracted, in a
    /// channel that still exists), with `version` 0; a chat absent from the answer must be
    /// forgotten by the index.
    async fn states(&self, chat_ids: &[u64]) -> Result<HashMap<u64, IndexedChat>, SourceError>;
}

/// Where a scan of the store's chats stands: after this (channel, chat); (0, 0) at the start.
pub type ScanPosition = (u64, u64);

/// One page of a scan over every chat of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    /// Chats read, searchable or not.
    pub read: u64,
    /// Where the next page starts.
    pub next: ScanPosition,
    /// The searchable states among them (as [`ChatSource::states`] gives them).
    pub chats: Vec<IndexedChat>,
}

/// The chat store as the indexer that follows it reads it: its change feed, and a scan of every
/// chat for rebuilding and verifying the index.
#[async_trait]
pub trait ChangeFeedReader: ChatSource {
    /// Up to `limit` changes after `after_event_id`, in commit order.
    async fn feed(&self, after_event_id: u64, limit: usize) -> Result<Vec<ChannelEvent>, SourceError>;
    /// The newest event id of the feed (0 when empty).
    async fn feed_head(&self) -> Result<u64, SourceError>;
    /// Changes after `after_event_id`, counted up to `cap`.
    async fn feed_count(&self, after_event_id: u64, cap: u64) -> Result<u64, SourceError>;
    /// The next `limit` chats of the store in (channel, chat) order after `after`; `None` at the end.
    async fn scan(&self, after: ScanPosition, limit: usize) -> Result<Option<ScanPage>, SourceError>;
}

/// The chat part of another process, over its internal service.
pub struct GrpcSource(pub ChatInternalServiceClient<InternalChannel>);

#[async_trait]
impl ChatSource for GrpcSource {
    async fn states(&self, chat_ids: &[u64]) -> Result<HashMap<u64, IndexedChat>, SourceError> {
        let mut states = HashMap::with_capacity(chat_ids.len());
        for chunk in chat_ids.chunks(MAX_STATES) {
            let request = GetChatStatesRequest { chat_ids: chunk.iter().map(u64::to_string).collect() };
            let answer = self
                .0
                .clone()
                .get_chat_states(request)
                .await
                .map_err(|s| SourceError(format!("{}: {}", s.code(), s.message())))?;
            for state in answer.into_inner().states {
                let chat = from_state(state).map_err(SourceError)?;
                states.insert(chat.chat_id, chat);
            }
        }
        Ok(states)
    }
}

/// The wire form of a chat's state.
pub fn to_state(chat: &IndexedChat) -> ChatState {
    ChatState {
        chat_id: chat.chat_id.to_string(),
        channel_id: chat.channel_id.to_string(),
        sender_id: chat.sender_id.to_string(),
        created_at: Some(ids::timestamp(chat.created_at_ms)),
        text: chat.text.clone(),
        removed_for_user_ids: chat.removed_for.iter().map(u64::to_string).collect(),
    }
}

fn from_state(state: ChatState) -> Result<IndexedChat, String> {
    let id = |field: &str, value: &str| value.parse::<u64>().map_err(|_| format!("{field} {value:?} is not an id"));
    let created_at_ms =
        state.created_at.map_or(0, |t| (t.seconds.max(0) as u64) * 1000 + (t.nanos.max(0) as u64) / 1_000_000);
    Ok(IndexedChat {
        chat_id: id("chat_id", &state.chat_id)?,
        channel_id: id("channel_id", &state.channel_id)?,
        sender_id: id("sender_id", &state.sender_id)?,
        created_at_ms,
        text: state.text,
        removed_for: state
            .removed_for_user_ids
            .iter()
            .map(|u| id("removed_for_user_ids", u))
            .collect::<Result<_, _>>()?,
        version: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_cross_the_wire_unchanged() {
        let chat = IndexedChat {
            chat_id: 7,
            channel_id: 3,
            sender_id: 9,
            created_at_ms: 1_700_000_000_123,
            text: "hello 猫".into(),
            removed_for: vec![4, 5],
            version: 0,
        };
        assert_eq!(from_state(to_state(&chat)).unwrap(), chat);
        let mut broken = to_state(&chat);
        broken.sender_id = "x".into();
        assert!(from_state(broken).unwrap_err().contains("sender_id"));
    }
}
