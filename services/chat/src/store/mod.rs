//! The chat store: chats, the per-channel event log with its global change feed, idempotency
//! keys, removed-for-me marks, read pointers and consumer cursors, and uploads, in domain types.
//!
//! It is a few focused traits, composed: [`Chats`], [`EventLog`], [`ChangeFeed`],
//! [`ReadPointers`] and [`Uploads`], which [`ChatStore`] gathers for the service. Each has its
//! part of the conformance suite (`conformance::{chats, event_log, …}`), which every backend
//! runs whole.
//!
//! Writes are durable before they return, and readers only ever see durable state. Ids are
//! assigned by the store in commit order, so a reader tailing a channel "after the last id I
//! saw" never misses a chat committed later. Partitions stay bounded by channel (chats and
//! events keyed channel first) or by user.
//!
//! Backends: [`FjallChatStore`] (embedded, one process) and [`ScyllaChatStore`] (ScyllaDB).

#[cfg(any(test, feature = "testsuite"))]
#[doc(hidden)]
pub mod conformance;
mod fjall;
mod scylla;

use async_trait::async_trait;
use chatmesh_api::chat::v1::{self as pb, ChannelEvent, EventType, channel_event::Payload};
use chatmesh_platform::ids::unix_ms_of;

pub use self::{fjall::FjallChatStore, scylla::ScyllaChatStore};
use crate::model::{ChatRecord, NewChat, ReadPointer, UploadRecord, timestamp};

/// A store failure. The text is for the log only: the service answers it with a generic
/// message and the request id, never with this text.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The write could not be made durable; it was not acknowledged and is not visible.
    #[error("the write could not be made durable: {0}")]
    NotDurable(String),
    /// The backend failed (I/O, the cluster, a corrupt record); the detail of what and where.
    #[error("{0}")]
    Backend(String),
}

/// What creating a chat did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created(ChatRecord),
    /// The same key with the same body was sent before: that chat.
    Duplicate(ChatRecord),
    /// The same key was used for a different body (by the chat with this id).
    KeyConflict(u64),
    /// An upload is not the sender's pending upload in this channel (e.g. already attached).
    UploadUnavailable(u64),
}

/// What changing one chat did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    Done(Box<ChatRecord>),
    NotFound,
    NotSender,
    /// Already retracted: nothing left to change.
    Retracted,
}

/// An event from another service's outbox, to append to its channel's log.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalEvent {
    /// `event_id` empty; `idempotency_key` set.
    pub event: ChannelEvent,
    /// The SYSTEM chat announcing it in history, if it is announced.
    pub announcement: Option<NewChat>,
}

/// Where a history page starts and which way it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// Newest first, older than the id (or from the newest).
    Before(Option<u64>),
    /// Oldest first, newer than the id.
    After(u64),
}

/// Unread state of one member in one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unread {
    pub count: u64,
    pub last_chat_id: u64,
    pub pointer: ReadPointer,
}

/// Counters of the write path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteStats {
    /// Writes acknowledged.
    pub writes: u64,
    /// Completed syncs (each covering one batch of writes).
    pub syncs: u64,
    /// The highest id made durable so far.
    pub durable_id: u64,
}

/// Chats: sent, read, edited, retracted, and removed for one user.
///
/// Every write also logs its event in the channel's [`EventLog`] and the [`ChangeFeed`], in the
/// same durable write.
#[async_trait]
pub trait Chats: Send + Sync + 'static {
    /// Creates a chat and its `chat.created` event, idempotently on (sender, channel, client_msg_id).
    async fn create_chat(&self, chat: NewChat) -> Result<CreateOutcome, StoreError>;
    async fn get_chat(&self, chat_id: u64) -> Result<Option<ChatRecord>, StoreError>;
    /// A page of a channel's history, leaving out what `viewer` removed for themselves.
    async fn list_chats(
        &self,
        channel_id: u64,
        range: Range,
        limit: usize,
        viewer: u64,
    ) -> Result<Vec<ChatRecord>, StoreError>;
    /// The newest chat of a channel with an id at or below `max_id`.
    async fn newest_chat_at_or_before(&self, channel_id: u64, max_id: u64) -> Result<Option<u64>, StoreError>;
    /// Every chat in (channel, chat) order after `after` ((0, 0) from the start), for rebuilds.
    async fn scan_chats(&self, after: (u64, u64), limit: usize) -> Result<Vec<ChatRecord>, StoreError>;
    /// Whether `user` removed the chat for themselves.
    async fn is_removed(&self, user: u64, chat_id: u64) -> Result<bool, StoreError>;
    /// Users who removed the chat for themselves.
    async fn removed_by(&self, chat_id: u64) -> Result<Vec<u64>, StoreError>;
    /// Roughly how many chats the store holds (for progress displays).
    fn chats_estimate(&self) -> u64;
    /// Counters of the store's write path (every write, not only chats').
    fn stats(&self) -> WriteStats;
    /// Replaces the text of `editor`'s own chat; records `chat.edited`.
    async fn edit_chat(&self, chat_id: u64, editor: u64, text: String) -> Result<ItemOutcome, StoreError>;
    /// Withdraws `sender`'s own chats (text removed, tombstone kept); records `chat.retracted` each.
    async fn retract_chats(&self, sender: u64, chat_ids: Vec<u64>) -> Result<Vec<ItemOutcome>, StoreError>;
    /// Hides chats for `user` only; each removal enters the [`ChangeFeed`] privately, never the
    /// channel's log.
    async fn remove_chats(&self, user: u64, chat_ids: Vec<u64>) -> Result<(), StoreError>;
}

/// Each channel's ordered event log: the chat events [`Chats`] records, and the events other
/// services append (member and channel changes, from their outboxes).
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends events to their channels' logs, once per idempotency key; returns their event ids.
    /// An event's announcement is created as a SYSTEM chat in the same write; `channel.deleted`
    /// releases the channel's uploads.
    async fn append_events(&self, events: Vec<ExternalEvent>) -> Result<Vec<u64>, StoreError>;
    /// A channel's events after `after_event`, oldest first, chats as they are now.
    async fn list_events(
        &self,
        channel_id: u64,
        after_event: u64,
        limit: usize,
    ) -> Result<Vec<ChannelEvent>, StoreError>;
    /// Whether the channel's log ends with `channel.deleted`.
    async fn channel_deleted(&self, channel_id: u64) -> Result<bool, StoreError>;
}

/// The change feed: every change in commit order, read by its consumers (publishing, channel
/// activity, search) from durable cursors of their own.
#[async_trait]
pub trait ChangeFeed: Send + Sync + 'static {
    /// Every change after `after_event` in commit order (the change feed): channel events, and
    /// `chat.removed` changes private to their actor.
    async fn feed(&self, after_event: u64, limit: usize) -> Result<Vec<ChannelEvent>, StoreError>;
    /// The newest event id of the change feed (0 when empty).
    async fn feed_head(&self) -> Result<u64, StoreError>;
    /// How many feed entries follow `after_event`, counting up to `cap`.
    async fn feed_count(&self, after_event: u64, cap: u64) -> Result<u64, StoreError>;
    /// A consumer's position in the change feed (0 before its first [`set_cursor`](Self::set_cursor)).
    async fn cursor(&self, name: &str) -> Result<u64, StoreError>;
    /// Records a consumer's position in the change feed.
    async fn set_cursor(&self, name: &str, event_id: u64) -> Result<(), StoreError>;
    /// Ends an orderly stop: called once, after the process has drained its requests and its
    /// feed consumers have made their last pass, before its node id is given up. A backend whose
    /// feed a crashed process can leave unsettled (ScyllaDB: a batch still in the batchlog)
    /// records here that this one stopped cleanly, so the next process on the node does not wait
    /// that out; it records nothing while a failed write is still held. A write after it still
    /// works (and undoes the record). By default (the embedded store) nothing.
    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Read pointers: how far each member has read each channel, and what is unread.
#[async_trait]
pub trait ReadPointers: Send + Sync + 'static {
    /// Moves `user`'s read pointer in `channel_id` forward to `chat_id` (never back).
    async fn ack(&self, channel_id: u64, user: u64, chat_id: u64) -> Result<ReadPointer, StoreError>;
    /// `user`'s read pointer in `channel_id`, the channel's newest chat, and how many text chats
    /// of others after the pointer are neither retracted nor removed by `user`.
    async fn unread(&self, channel_id: u64, user: u64) -> Result<Unread, StoreError>;
}

/// Uploads: pending until [`Chats::create_chat`] attaches them (once, to their uploader's chat
/// in their channel), then reclaimed when abandoned, retracted or of a deleted channel.
#[async_trait]
pub trait Uploads: Send + Sync + 'static {
    /// Records an upload (pending).
    async fn create_upload(&self, upload: UploadRecord) -> Result<(), StoreError>;
    async fn get_upload(&self, upload_id: u64) -> Result<Option<UploadRecord>, StoreError>;
    /// Uploads whose objects are to be deleted (abandoned, retracted, of a deleted channel).
    async fn reclaimable_uploads(&self, limit: usize) -> Result<Vec<UploadRecord>, StoreError>;
    /// Marks for reclaiming up to `limit` uploads still pending that were created before
    /// `before_ms` (so they can no longer be attached); returns how many.
    async fn expire_uploads(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError>;
    /// Forgets reclaimed uploads once their objects are gone.
    async fn forget_uploads(&self, upload_ids: Vec<u64>) -> Result<(), StoreError>;
}

/// The whole chat store, as the service holds it (`Arc<dyn ChatStore>`). A consumer that
/// reads one part asks for that trait only. Calling a part's method on a `dyn ChatStore`
/// needs no import of the part; on a concrete store, import the part (`use
/// crate::store::Chats`).
pub trait ChatStore: Chats + EventLog + ChangeFeed + ReadPointers + Uploads {}

impl<T: Chats + EventLog + ChangeFeed + ReadPointers + Uploads> ChatStore for T {}

/// A chat event as every backend logs it: the chat by id only; readers fill in its current
/// state (so a log never keeps text that was edited or retracted since).
pub(crate) fn chat_event(event_id: u64, kind: EventType, actor: u64, chat: &ChatRecord, key: String) -> ChannelEvent {
    ChannelEvent {
        event_id: event_id.to_string(),
        channel_id: chat.channel_id.to_string(),
        r#type: kind as i32,
        occurred_at: Some(timestamp(unix_ms_of(event_id))),
        actor_id: actor.to_string(),
        idempotency_key: key,
        payload: Some(Payload::Chat(pb::Chat {
            chat_id: chat.chat_id.to_string(),
            channel_id: chat.channel_id.to_string(),
            ..Default::default()
        })),
        changed_fields: Vec::new(),
    }
}
