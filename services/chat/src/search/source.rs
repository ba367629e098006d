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
const MAX_STATES: usize = chatmesh_wire::chat::MAX_BATCH_IDS;

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

/// Searchable states read from a store, each channel's deletion read once for as long as this
/// lives (one batch of changes, or one scan of the store).
pub(crate) struct Searchable<'a> {
    store: &'a dyn ChatStore,
    channel_gone: HashMap<u64, bool>,
}

impl<'a> Searchable<'a> {
    pub(crate) fn new(store: &'a dyn ChatStore) -> Self {
        Self { store, channel_gone: HashMap::new() }
    }

    /// `chat`'s searchable state at `version`, or `None` when it must not be found (also when
    /// its channel was deleted: a change taken over from a dead indexer may come after that).
    pub(crate) async fn state(&mut self, chat: ChatRecord, version: u64) -> Result<Option<IndexedChat>, StoreError> {
        let gone = match self.channel_gone.get(&chat.channel_id) {
            Some(gone) => *gone,
            None => {
                let gone = self.store.channel_deleted(chat.channel_id).await?;
                self.channel_gone.insert(chat.channel_id, gone);
                gone
            }
        };
        if gone {
            return Ok(None);
        }
        let removed = self.store.removed_by(chat.chat_id).await?;
        Ok(indexed(chat, removed, version))
    }
}

/// The chat store of this process.
pub struct StoreSource(pub Arc<dyn ChatStore>);

impl StoreSource {
    /// [`ChatSource::states`] with the store's own error.
    pub async fn read(&self, chat_ids: &[u64]) -> Result<HashMap<u64, IndexedChat>, StoreError> {
        let mut searchable = Searchable::new(self.0.as_ref());
        let mut states = HashMap::with_capacity(chat_ids.len());
        for chat_id in chat_ids {
            let Some(chat) = self.0.get_chat(*chat_id).await? else { continue };
            if let Some(state) = searchable.state(chat, 0).await? {
                states.insert(*chat_id, state);
            }
        }
        Ok(states)
    }
}

#[async_trait]
impl ChatSource for StoreSource {
    async fn states(&self, chat_ids: &[u64]) -> Result<HashMap<u64, IndexedChat>, String> {
        self.read(chat_ids).await.map_err(|e| e.to_string())
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
