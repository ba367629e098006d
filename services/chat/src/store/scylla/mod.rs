//! The chat store on ScyllaDB. Every statement is a prepared `static` run at LOCAL_QUORUM
//! (idempotency keys and read pointers by lightweight transactions at LOCAL_SERIAL); a write
//! answers only once its statement or logged batch has returned.
//!
//! Tables (crates/cql/migrations/0003_chats.cql; the change feed and uploads are in 0004,
//! written by [`change_feed`] and [`uploads`]):
//! - `chats ((channel_id, bucket), chat_id DESC)`: the ChatRecord (JSON) plus sender, kind and
//!   retracted for unread counts; `bucket` = 6 hours of the chat id's time ([`BUCKET_MS`])
//! - `chats_by_id ((chat_id))` → channel id; `chat_buckets ((channel_id), bucket DESC)`: the
//!   non-empty buckets, so pages step over empty stretches of history
//! - `chat_keys ((sender_id, channel_id, client_msg_id))` → chat id, created event id, body hash
//!   and the whole record (idempotent sends; LWT)
//! - `chat_events ((channel_id, bucket), event_id DESC)`: the ChannelEvent (protobuf; chats by id
//!   only, filled in on read); `chat_event_buckets ((channel_id), bucket DESC)`
//! - `chat_event_keys ((idempotency_key))` → event id and what the append writes (LWT)
//! - `chat_removals ((user_id, channel_id), chat_id)`, `chat_removed_by ((chat_id), user_id)`
//! - `chat_pointers ((user_id, channel_id))` (0005; LWTs only: a pointer never moves back), and
//!   `chat_read_pointers ((user_id), channel_id)`, read only when the first has no row (acks
//!   before 0005: partitioned by user, its LWTs serialized all of a user's acks)
//! - `chat_cursors ((name, node))` → event id; `chat_feed_nodes ((node))`: nodes whose feed was
//!   written, and whether their last process stopped cleanly (see [`node`])
//! - the registry of channels with chats, walked in id order by [`Chats::scan_chats`]:
//!   `chat_channels ((slot), channel_id)` with slot = channel_id >> 40, `chat_channel_slots
//!   ((shard), slot)` with shard = channel_id >> 56, `chat_channel_shards ((root = 0), shard)`
//!   (at most 128 rows); a process writes each row once, with the first chat that needs it
//!
//! Writes to one channel are serialized within the process by striped locks; ids are taken under
//! the channel's lock right before the write, so per channel id order is commit order. Every
//! event id is minted into the feed's in-flight set ([`change_feed::Inflight`]) and stays there until
//! its write returns, so the feed never hands out an id while a smaller one may still commit. A
//! chat, its `chat.created` event and their feed entries are one logged batch (all or nothing);
//! so are an edit or a retraction and its event, a removal and its private feed entry, an
//! appended event with its announcement chat. Index rows (bucket lists, the registry, the feed's
//! minutes and days) are written in the batch of the first write that needs them in this process
//! ([`write::Known`]), not with every chat: they are shared by a channel's whole traffic, by every
//! channel, or by all of a node's events.
//!
//! Idempotency keys are claimed before the write with `INSERT ... IF NOT EXISTS` holding the
//! whole write's content: a claim whose write is missing (a crash between the two, or another
//! process between them right now) is finished from what the claim holds, with the same ids,
//! by idempotent INSERTs. A chat's row is written `USING TIMESTAMP` of its logical write (its
//! creation at its id's time, an edit or a retraction past the version it read), reused by every
//! retry and by a claim's finish, so a failed batch applied late never reverts a later change;
//! across processes, edits and retractions of one chat are last-write-wins on that timestamp. Announcements (of appended events) are created
//! as the announcer words them: no client key, no attachments.
//!
//! Files: [`statements`] (every statement but the change feed's and uploads'), [`locks`] (the
//! channel locks), [`write`] (claims, batches, settling failed batches), [`read`] (pages,
//! buckets, filling in logged events), [`change_feed`], [`node`] (the node's start and clean
//! stop), [`uploads`]; the trait implementations are here.

mod change_feed;
mod locks;
mod node;
mod read;
mod statements;
#[cfg(test)]
mod tests;
mod uploads;
mod write;

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use async_trait::async_trait;
use chatmesh_api::chat::v1::ChannelEvent;
use chatmesh_cql::{Cql, CqlError, values};
use chatmesh_platform::ids::{IdGenerator, now_ms, unix_ms_of};
use prost::Message;
use tokio::sync::{Mutex, Semaphore};

use self::{
    read::Direction,
    statements::{GET_CURSOR, PUT_CURSOR, all_statements},
    write::Known,
};
use super::{
    ChangeFeed, Chats, CreateOutcome, EventLog, ExternalEvent, ItemOutcome, Range, ReadPointers, StoreError, Unread,
    Uploads, WriteStats,
};
use crate::model::{ChatKind, ChatRecord, NewChat, ReadPointer, UploadRecord};

/// A chat or event bucket spans 6 hours of ids: at 10 chats/s, the most one channel sustains,
/// a partition holds 216,000 chats (~90 MB); quiet channels skip empty buckets through
/// `chat_buckets`. The arithmetic is in docs/scylla.md.
const BUCKET_MS: u64 = 21_600_000;

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn cql_error(e: CqlError) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The time bucket of an id.
fn bucket(id: u64) -> i32 {
    (unix_ms_of(id) / BUCKET_MS) as i32
}

/// An id as a CQL bound: ids stay below 2^63; larger bounds (u64::MAX "no bound") saturate.
fn bound(id: u64) -> i64 {
    id.min(i64::MAX as u64) as i64
}

fn limit(n: usize) -> i32 {
    n.min(i32::MAX as usize) as i32
}

fn kind_name(kind: ChatKind) -> &'static str {
    match kind {
        ChatKind::Text => "text",
        ChatKind::System => "system",
    }
}

fn encode_chat(chat: &ChatRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(chat).map_err(|e| backend(format!("encoding chat {}: {e}", chat.chat_id)))
}

fn decode_chat(bytes: &[u8]) -> Result<ChatRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| backend(format!("a stored chat record: {e}")))
}

fn decode_event(bytes: &[u8]) -> Result<ChannelEvent, StoreError> {
    ChannelEvent::decode(bytes).map_err(|e| backend(format!("a stored channel event: {e}")))
}

fn parse_id(what: &str, text: &str) -> Result<u64, StoreError> {
    text.parse().map_err(|_| backend(format!("{what} {text:?} is not an id")))
}

/// Where ids come from: the node's generator, or (golden tests) a fixed sequence.
enum Ids {
    Snowflake(Arc<IdGenerator>),
    #[cfg(test)]
    Sequence(AtomicU64),
}

impl Ids {
    /// A chat id.
    fn next(&self) -> u64 {
        match self {
            Ids::Snowflake(ids) => ids.next_id(),
            #[cfg(test)]
            Ids::Sequence(next) => next.fetch_add(1, Ordering::AcqRel),
        }
    }

    /// An event id, in flight from the moment it is minted (no feed reader can pass it).
    fn event(&self, inflight: &change_feed::Inflight) -> change_feed::InflightGuard {
        match self {
            Ids::Snowflake(ids) => inflight.allocate(ids),
            #[cfg(test)]
            Ids::Sequence(_) => inflight.begin(self.next()),
        }
    }
}

/// The chat store on ScyllaDB; cheap to clone.
#[derive(Clone)]
pub struct ScyllaChatStore {
    inner: Arc<Inner>,
}

struct Inner {
    cql: Cql,
    ids: Ids,
    /// The wall clock (ack times, the hours of the upload queues); fixed in golden tests.
    now: fn() -> u64,
    /// Channel write locks, by a hash of the channel id.
    locks: Box<[Mutex<()>]>,
    /// Bounds the writes in flight across channels ([`locks::MAX_IN_FLIGHT`]).
    in_flight: Semaphore,
    /// Event ids taken and not yet written (or failed).
    inflight: change_feed::Inflight,
    /// This process's node id: the feed and its cursors are per node (see [`change_feed`]).
    node: i32,
    /// Its node's row in `chat_feed_nodes`: checked before the first feed read or write, its
    /// clean-stop mark cleared before a feed write ([`node`]).
    node_row: node::NodeRow,
    known: std::sync::Mutex<HashSet<Known>>,
    writes: AtomicU64,
    syncs: AtomicU64,
    durable_id: AtomicU64,
}

impl std::fmt::Debug for ScyllaChatStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaChatStore").field("cql", &self.inner.cql).field("stats", &self.stats()).finish()
    }
}

impl ScyllaChatStore {
    pub fn new(cql: Cql, ids: Arc<IdGenerator>) -> Self {
        Self::with(cql, Ids::Snowflake(ids), now_ms)
    }

    fn with(cql: Cql, ids: Ids, now: fn() -> u64) -> Self {
        let node = match &ids {
            Ids::Snowflake(ids) => i32::from(ids.node_id()),
            #[cfg(test)]
            Ids::Sequence(_) => 0,
        };
        ScyllaChatStore {
            inner: Arc::new(Inner {
                cql,
                ids,
                now,
                locks: locks::stripes(),
                in_flight: Semaphore::new(locks::MAX_IN_FLIGHT),
                inflight: change_feed::Inflight::with_clock(now),
                node,
                node_row: node::NodeRow::default(),
                known: std::sync::Mutex::new(HashSet::new()),
                writes: AtomicU64::new(0),
                syncs: AtomicU64::new(0),
                durable_id: AtomicU64::new(0),
            }),
        }
    }

    /// Prepares every statement (the binary calls it at start: a schema mismatch fails fast).
    pub async fn prepare(&self) -> Result<(), StoreError> {
        self.inner.cql.prepare(&all_statements()).await.map_err(cql_error)
    }

    /// A new event id, in flight until the guard drops.
    fn event_id(&self) -> change_feed::InflightGuard {
        self.inner.ids.event(&self.inner.inflight)
    }

    fn cql(&self) -> &Cql {
        &self.inner.cql
    }
}

#[async_trait]
impl Chats for ScyllaChatStore {
    #[tracing::instrument(name = "chat_store.create_chat", skip_all, fields(db.system = "scylla"))]
    async fn create_chat(&self, chat: NewChat) -> Result<CreateOutcome, StoreError> {
        let outcome = self.create(chat).await;
        self.acknowledged(outcome)
    }

    #[tracing::instrument(name = "chat_store.get_chat", skip_all, fields(db.system = "scylla"))]
    async fn get_chat(&self, chat_id: u64) -> Result<Option<ChatRecord>, StoreError> {
        match self.channel_of(chat_id).await? {
            Some(channel) => self.chat_in(channel, chat_id).await,
            None => Ok(None),
        }
    }

    #[tracing::instrument(name = "chat_store.list_chats", skip_all, fields(db.system = "scylla"))]
    async fn list_chats(
        &self,
        channel_id: u64,
        range: Range,
        limit: usize,
        viewer: u64,
    ) -> Result<Vec<ChatRecord>, StoreError> {
        match range {
            Range::Before(before) => {
                let cursor = before.map_or(i64::MAX, bound);
                self.page(channel_id, Direction::Older, cursor, limit, Some(viewer)).await
            }
            Range::After(after) => self.page(channel_id, Direction::Newer, bound(after), limit, Some(viewer)).await,
        }
    }

    async fn newest_chat_at_or_before(&self, channel_id: u64, max_id: u64) -> Result<Option<u64>, StoreError> {
        self.newest_at_or_before(channel_id, max_id).await
    }

    async fn scan_chats(&self, after: (u64, u64), limit: usize) -> Result<Vec<ChatRecord>, StoreError> {
        self.scan(after, limit).await
    }

    async fn is_removed(&self, user: u64, chat_id: u64) -> Result<bool, StoreError> {
        match self.channel_of(chat_id).await? {
            Some(channel) => Ok(!self.removed_between(user, channel, chat_id, chat_id, 1).await?.is_empty()),
            None => Ok(false),
        }
    }

    async fn removed_by(&self, chat_id: u64) -> Result<Vec<u64>, StoreError> {
        self.removers(chat_id).await
    }

    /// No cheap estimate: counting chats would read every partition, and ScyllaDB's size
    /// estimates count partitions (channel × 6 hours), not rows. 0 = unknown for progress displays.
    fn chats_estimate(&self) -> u64 {
        0
    }

    /// Writes: write operations acknowledged; syncs: write round trips (batches, LWTs, single
    /// writes) that returned; durable_id: the highest chat or event id written.
    fn stats(&self) -> WriteStats {
        WriteStats {
            writes: self.inner.writes.load(Ordering::Acquire),
            syncs: self.inner.syncs.load(Ordering::Acquire),
            durable_id: self.inner.durable_id.load(Ordering::Acquire),
        }
    }

    #[tracing::instrument(name = "chat_store.edit_chat", skip_all, fields(db.system = "scylla"))]
    async fn edit_chat(&self, chat_id: u64, editor: u64, text: String) -> Result<ItemOutcome, StoreError> {
        let outcome = self.edit(chat_id, editor, text).await;
        self.acknowledged(outcome)
    }

    #[tracing::instrument(name = "chat_store.retract_chats", skip_all, fields(db.system = "scylla"))]
    async fn retract_chats(&self, sender: u64, chat_ids: Vec<u64>) -> Result<Vec<ItemOutcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(chat_ids.len());
        for chat_id in chat_ids {
            // why: each chat is its own write (its channel's lock, its batch); a failure stops
            // here and the sender's retry finds the done ones Retracted.
            outcomes.push(self.retract(sender, chat_id).await?);
        }
        self.acknowledged(Ok(outcomes))
    }

    #[tracing::instrument(name = "chat_store.remove_chats", skip_all, fields(db.system = "scylla"))]
    async fn remove_chats(&self, user: u64, chat_ids: Vec<u64>) -> Result<(), StoreError> {
        for chat_id in chat_ids {
            self.remove(user, chat_id).await?;
        }
        self.acknowledged(Ok(()))
    }
}

#[async_trait]
impl EventLog for ScyllaChatStore {
    #[tracing::instrument(name = "chat_store.append_events", skip_all, fields(db.system = "scylla"))]
    async fn append_events(&self, events: Vec<ExternalEvent>) -> Result<Vec<u64>, StoreError> {
        let mut ids = Vec::with_capacity(events.len());
        for event in events {
            ids.push(self.append(event).await?);
        }
        self.acknowledged(Ok(ids))
    }

    #[tracing::instrument(name = "chat_store.list_events", skip_all, fields(db.system = "scylla"))]
    async fn list_events(
        &self,
        channel_id: u64,
        after_event: u64,
        limit: usize,
    ) -> Result<Vec<ChannelEvent>, StoreError> {
        self.events_after(channel_id, after_event, limit).await
    }

    async fn channel_deleted(&self, channel_id: u64) -> Result<bool, StoreError> {
        change_feed::channel_deleted(self.cql(), channel_id).await
    }
}

#[async_trait]
impl ChangeFeed for ScyllaChatStore {
    async fn feed(&self, after_event: u64, limit: usize) -> Result<Vec<ChannelEvent>, StoreError> {
        self.started().await?;
        // why: change_feed::feed fills in each chat's current state itself
        change_feed::feed(self.cql(), &self.inner.inflight, self.inner.node, after_event, limit).await
    }

    async fn feed_head(&self) -> Result<u64, StoreError> {
        change_feed::feed_head(self.cql(), self.inner.node).await
    }

    async fn feed_count(&self, after_event: u64, cap: u64) -> Result<u64, StoreError> {
        change_feed::feed_count(self.cql(), self.inner.node, after_event, cap).await
    }

    async fn cursor(&self, name: &str) -> Result<u64, StoreError> {
        let row: Option<(i64,)> =
            self.cql().row(&GET_CURSOR, values![name, self.inner.node]).await.map_err(cql_error)?;
        Ok(row.map_or(0, |(id,)| chatmesh_cql::id(id)))
    }

    async fn set_cursor(&self, name: &str, event_id: u64) -> Result<(), StoreError> {
        self.cql().execute(&PUT_CURSOR, values![name, self.inner.node, event_id]).await.map_err(cql_error)?;
        self.synced(&[]);
        self.acknowledged(Ok(()))
    }

    /// Marks the node's process as stopped cleanly in `chat_feed_nodes` unless a write of it
    /// is unsettled, so the next process of the node does not wait out the batchlog's replay
    /// window (see the `node` module).
    async fn close(&self) -> Result<(), StoreError> {
        self.close_node().await
    }
}

#[async_trait]
impl ReadPointers for ScyllaChatStore {
    #[tracing::instrument(name = "chat_store.ack", skip_all, fields(db.system = "scylla"))]
    async fn ack(&self, channel_id: u64, user: u64, chat_id: u64) -> Result<ReadPointer, StoreError> {
        let pointer = self.advance(channel_id, user, chat_id).await;
        self.acknowledged(pointer)
    }

    #[tracing::instrument(name = "chat_store.unread", skip_all, fields(db.system = "scylla"))]
    async fn unread(&self, channel_id: u64, user: u64) -> Result<Unread, StoreError> {
        let pointer = self.pointer(channel_id, user).await?.unwrap_or_default();
        let last_chat_id = self.newest_at_or_before(channel_id, u64::MAX).await?.unwrap_or(0);
        // why: uncapped, as the embedded store counts (the service shows the exact number)
        let count = self.count_unread(channel_id, user, pointer.last_read_chat_id).await?;
        Ok(Unread { count, last_chat_id, pointer })
    }
}

#[async_trait]
impl Uploads for ScyllaChatStore {
    async fn create_upload(&self, upload: UploadRecord) -> Result<(), StoreError> {
        let done = uploads::create_upload(self.cql(), upload).await;
        self.delegated(done)
    }

    async fn get_upload(&self, upload_id: u64) -> Result<Option<UploadRecord>, StoreError> {
        uploads::get_upload(self.cql(), upload_id).await
    }

    async fn reclaimable_uploads(&self, limit: usize) -> Result<Vec<UploadRecord>, StoreError> {
        uploads::reclaimable_uploads(self.cql(), (self.inner.now)(), limit).await
    }

    async fn expire_uploads(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
        let done = uploads::expire_uploads(self.cql(), (self.inner.now)(), before_ms, limit).await;
        self.delegated(done)
    }

    async fn forget_uploads(&self, upload_ids: Vec<u64>) -> Result<(), StoreError> {
        let done = uploads::forget_uploads(self.cql(), upload_ids).await;
        self.delegated(done)
    }
}
