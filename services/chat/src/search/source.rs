//! Where an indexer reads the current state of the chats that changed: the chat store, when
//! the indexer runs in the chat part's process, or the chat part's `GetChatStates` when it runs
//! in a process of its own.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use chatmesh_api::chat::v1::{
    ChatState, GetChatStatesRequest, chat_internal_service_client::ChatInternalServiceClient,
};
use chatmesh_platform::{grpc::InternalChannel, ids};

use super::IndexedChat;
use crate::{
    model::{ChatKind, ChatRecord},
    store::{ChatStore, StoreError},
};

/// Chats asked of `GetChatStates` at once, at most (the batch cap of every id list).
pub const MAX_STATES: usize = chatmesh_wire::chat::MAX_BATCH_IDS;

/// The current, searchable state of chats.
#[async_trait]
pub trait ChatSource: Send + Sync + 'static {
    /// The state of each of `chat_ids` that is searchable now (a text chat, not retracted, in a
    /// channel that still exists), with `version` 0; a chat absent from the answer must be
    /// forgotten by the index.
    async fn states(&self, chat_ids: &[u64]) -> Result<HashMap<u64, IndexedChat>, String>;
}

/// The index form of a chat, or `None` when it must not be found (a retracted or system chat).
pub(crate) fn indexed(chat: ChatRecord, removed_for: Vec<u64>, version: u64) -> Option<IndexedChat> {
    (chat.kind == ChatKind::Text && !chat.is_retracted()).then_some(IndexedChat {
        chat_id: chat.chat_id,
        channel_id: chat.channel_id,
        sender_id: chat.sender_id,
        created_at_ms: chat.created_at_ms,
        text: chat.text,
        removed_for,
        version,
    })
}

/// A chat's current searchable state in `store`.
pub async fn current_state(store: &dyn ChatStore, chat_id: u64) -> Result<Option<IndexedChat>, StoreError> {
    let Some(chat) = store.get_chat(chat_id).await? else { return Ok(None) };
    // why: a change taken over from a dead indexer may come after its channel's deletion.
    if store.channel_deleted(chat.channel_id).await? {
        return Ok(None);
    }
    let removed = store.removed_by(chat_id).await?;
    Ok(indexed(chat, removed, 0))
}

/// The chat store of this process.
pub struct StoreSource(pub Arc<dyn ChatStore>);

#[async_trait]
impl ChatSource for StoreSource {
    async fn states(&self, chat_ids: &[u64]) -> Result<HashMap<u64, IndexedChat>, String> {
        let mut states = HashMap::with_capacity(chat_ids.len());
        for chat_id in chat_ids {
            if let Some(state) = current_state(self.0.as_ref(), *chat_id).await.map_err(|e| e.to_string())? {
                states.insert(*chat_id, state);
            }
        }
        Ok(states)
    }
}

/// The chat part of another process, over its internal service.
pub struct GrpcSource(pub ChatInternalServiceClient<InternalChannel>);

#[async_trait]
impl ChatSource for GrpcSource {
    async fn states(&self, chat_ids: &[u64]) -> Result<HashMap<u64, IndexedChat>, String> {
        let mut states = HashMap::with_capacity(chat_ids.len());
        for chunk in chat_ids.chunks(MAX_STATES) {
            let request = GetChatStatesRequest { chat_ids: chunk.iter().map(u64::to_string).collect() };
            let answer =
                self.0.clone().get_chat_states(request).await.map_err(|s| format!("{}: {}", s.code(), s.message()))?;
            for state in answer.into_inner().states {
                let chat = from_state(state)?;
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
