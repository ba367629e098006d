//! The chat store on ScyllaDB. Every statement is a prepared `static` run at LOCAL_QUORUM
//! (idempotency keys and read pointers by lightweight transactions at LOCAL_SERIAL); a write
//! answers only once its statement or logged batch has returned.
//!
//! Tables (crates/cql/migrations/0003_chats.cql; the feed and uploads are in 0004, written by
//! [`feed`] and [`uploads`]):
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
//! - `chat_read_pointers ((user_id), channel_id)` (LWTs only: a pointer never moves back)
//! - `chat_cursors ((name))` → event id
//! - the registry of channels with chats, walked in id order by [`ChatStore::scan_chats`]:
//!   `chat_channels ((slot), channel_id)` with slot = channel_id >> 40, `chat_channel_slots
//!   ((shard), slot)` with shard = channel_id >> 56, `chat_channel_shards ((root = 0), shard)`
//!   (at most 128 rows)
//!
//! Writes to one channel are serialized within the process by striped locks; ids are taken under
//! the channel's lock right before the write, so per channel id order is commit order. Every
//! event id is minted into the feed's in-flight set ([`feed::Inflight`]) and stays there until
//! its write returns, so the feed never hands out an id while a smaller one may still commit. A
//! chat, its `chat.created` event and their feed entries are one logged batch (all or nothing);
//! so are an edit or a retraction and its event, a removal and its private feed entry, an
//! appended event with its announcement chat. Index rows (bucket lists, the registry) are written
//! in the batch of the first write that needs them in this process ([`Known`]), not with every
//! chat: the registry's upper levels are shared by every channel.
//!
//! Idempotency keys are claimed before the write with `INSERT ... IF NOT EXISTS` holding the
//! whole write's content: a claim whose write is missing (a crash between the two, or another
//! process between them right now) is finished from what the claim holds, with the same ids,
//! by idempotent INSERTs. Across processes, edits and retractions of one chat are last-write-wins
//! on its row (each process serializes its own). Announcements (of appended events) are created
//! as the announcer words them: no client key, no attachments.

mod feed;
mod uploads;

use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use chatmesh_api::chat::v1::{ChannelEvent, EventType, channel_event::Payload};
use chatmesh_cql::{BatchKind, Cql, CqlError, Statement, Value, statement, values};
use chatmesh_platform::ids::{IdGenerator, now_ms, unix_ms_of};
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use tokio::sync::{Mutex, MutexGuard, Semaphore, SemaphorePermit};

use super::{ChatStore, CreateOutcome, ExternalEvent, ItemOutcome, Range, StoreError, Unread, WriteStats, chat_event};
use crate::model::{ChatKind, ChatRecord, NewChat, ReadPointer, UploadRecord, UploadState};

/// A chat or event bucket spans 6 hours of ids: at 10 chats/s, the most one channel sustains,
/// a partition holds 216,000 chats (~90 MB); quiet channels skip empty buckets through
/// `chat_buckets`. The arithmetic is in docs/scylla.md.
const BUCKET_MS: u64 = 21_600_000;
/// How long a failed batch is retried in the background before its ids are released.
const SETTLE_FOR: Duration = Duration::from_secs(3600);
/// Writes in flight at once across channels (each holds its channel's lock).
const MAX_IN_FLIGHT: usize = 256;
/// Channel lock stripes.
const STRIPES: usize = 1024;
/// Rows read per query when a loop pages through a partition.
const PAGE: usize = 500;
/// Buckets read per query.
const BUCKET_PAGE: i32 = 64;
/// Attempts of a compare-and-set (read pointer) or of a claim raced by a release.
const ATTEMPTS: usize = 8;
/// Chat reads in flight while a page of events is filled in.
const HYDRATE_READS: usize = 32;
/// Channels read per query when a scan walks a slot of the channel registry.
const CHANNEL_PAGE: i32 = 64;
/// Index rows this process remembers having written (then it forgets them all and writes
/// them again as they come).
const KNOWN_MAX: usize = 100_000;

// chats
static PUT_CHAT: Statement = statement!(
    "chat.put_chat",
    idempotent,
    "INSERT INTO chats (channel_id, bucket, chat_id, sender_id, kind, retracted, record) VALUES (?, ?, ?, ?, ?, ?, ?)"
);
static GET_CHAT: Statement = statement!(
    "chat.get_chat",
    idempotent,
    "SELECT record FROM chats WHERE channel_id = ? AND bucket = ? AND chat_id = ?"
);
static CHATS_BEFORE: Statement = statement!(
    "chat.chats_before",
    idempotent,
    "SELECT record FROM chats WHERE channel_id = ? AND bucket = ? AND chat_id < ? ORDER BY chat_id DESC LIMIT ?"
);
static CHATS_AFTER: Statement = statement!(
    "chat.chats_after",
    idempotent,
    "SELECT record FROM chats WHERE channel_id = ? AND bucket = ? AND chat_id > ? ORDER BY chat_id ASC LIMIT ?"
);
static CHAT_IDS_AT_OR_BEFORE: Statement = statement!(
    "chat.chat_ids_at_or_before",
    idempotent,
    "SELECT chat_id FROM chats WHERE channel_id = ? AND bucket = ? AND chat_id <= ? ORDER BY chat_id DESC LIMIT ?"
);
static UNREAD_AFTER: Statement = statement!(
    "chat.unread_after",
    idempotent,
    "SELECT chat_id, sender_id, kind, retracted FROM chats WHERE channel_id = ? AND bucket = ? AND chat_id > ? \
     ORDER BY chat_id ASC LIMIT ?"
);
static PUT_CHAT_BY_ID: Statement =
    statement!("chat.put_chat_by_id", idempotent, "INSERT INTO chats_by_id (chat_id, channel_id) VALUES (?, ?)");
static GET_CHAT_CHANNEL: Statement =
    statement!("chat.get_chat_channel", idempotent, "SELECT channel_id FROM chats_by_id WHERE chat_id = ?");
static PUT_CHAT_BUCKET: Statement =
    statement!("chat.put_chat_bucket", idempotent, "INSERT INTO chat_buckets (channel_id, bucket) VALUES (?, ?)");
static CHAT_BUCKETS_DOWN: Statement = statement!(
    "chat.chat_buckets_down",
    idempotent,
    "SELECT bucket FROM chat_buckets WHERE channel_id = ? AND bucket <= ? ORDER BY bucket DESC LIMIT ?"
);
static CHAT_BUCKETS_UP: Statement = statement!(
    "chat.chat_buckets_up",
    idempotent,
    "SELECT bucket FROM chat_buckets WHERE channel_id = ? AND bucket >= ? ORDER BY bucket ASC LIMIT ?"
);
// idempotent sends
static CLAIM_KEY: Statement = statement!(
    "chat.claim_key",
    not_idempotent,
    "INSERT INTO chat_keys (sender_id, channel_id, client_msg_id, chat_id, event_id, body_hash, record) \
     VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
);
static GET_KEY: Statement = statement!(
    "chat.get_key",
    idempotent,
    "SELECT chat_id, event_id, body_hash, record FROM chat_keys WHERE sender_id = ? AND channel_id = ? \
     AND client_msg_id = ?"
);
static RELEASE_KEY: Statement = statement!(
    "chat.release_key",
    not_idempotent,
    "DELETE FROM chat_keys WHERE sender_id = ? AND channel_id = ? AND client_msg_id = ? IF chat_id = ?"
);
// the channel event log
static PUT_EVENT: Statement = statement!(
    "chat.put_event",
    idempotent,
    "INSERT INTO chat_events (channel_id, bucket, event_id, event) VALUES (?, ?, ?, ?)"
);
static EVENTS_AFTER: Statement = statement!(
    "chat.events_after",
    idempotent,
    "SELECT event FROM chat_events WHERE channel_id = ? AND bucket = ? AND event_id > ? ORDER BY event_id ASC LIMIT ?"
);
static EVENT_EXISTS: Statement = statement!(
    "chat.event_exists",
    idempotent,
    "SELECT event_id FROM chat_events WHERE channel_id = ? AND bucket = ? AND event_id = ?"
);
static PUT_EVENT_BUCKET: Statement = statement!(
    "chat.put_event_bucket",
    idempotent,
    "INSERT INTO chat_event_buckets (channel_id, bucket) VALUES (?, ?)"
);
static EVENT_BUCKETS_UP: Statement = statement!(
    "chat.event_buckets_up",
    idempotent,
    "SELECT bucket FROM chat_event_buckets WHERE channel_id = ? AND bucket >= ? ORDER BY bucket ASC LIMIT ?"
);
static CLAIM_EVENT_KEY: Statement = statement!(
    "chat.claim_event_key",
    not_idempotent,
    "INSERT INTO chat_event_keys (idempotency_key, event_id, channel_id, event, chat_event_id, chat_record) \
     VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS"
);
static GET_EVENT_KEY: Statement = statement!(
    "chat.get_event_key",
    idempotent,
    "SELECT event_id, channel_id, event, chat_event_id, chat_record FROM chat_event_keys WHERE idempotency_key = ?"
);
// removed for me
static PUT_REMOVAL: Statement = statement!(
    "chat.put_removal",
    idempotent,
    "INSERT INTO chat_removals (user_id, channel_id, chat_id) VALUES (?, ?, ?)"
);
static REMOVED_IN_RANGE: Statement = statement!(
    "chat.removed_in_range",
    idempotent,
    "SELECT chat_id FROM chat_removals WHERE user_id = ? AND channel_id = ? AND chat_id >= ? AND chat_id <= ? LIMIT ?"
);
static PUT_REMOVED_BY: Statement =
    statement!("chat.put_removed_by", idempotent, "INSERT INTO chat_removed_by (chat_id, user_id) VALUES (?, ?)");
static REMOVED_BY: Statement = statement!(
    "chat.removed_by",
    idempotent,
    "SELECT user_id FROM chat_removed_by WHERE chat_id = ? AND user_id > ? LIMIT ?"
);
// read pointers and cursors
static GET_POINTER: Statement = statement!(
    "chat.get_pointer",
    idempotent,
    "SELECT last_read_chat_id, acked_at_ms FROM chat_read_pointers WHERE user_id = ? AND channel_id = ?"
);
static CREATE_POINTER: Statement = statement!(
    "chat.create_pointer",
    not_idempotent,
    "INSERT INTO chat_read_pointers (user_id, channel_id, last_read_chat_id, acked_at_ms) VALUES (?, ?, ?, ?) \
     IF NOT EXISTS"
);
static ADVANCE_POINTER: Statement = statement!(
    "chat.advance_pointer",
    not_idempotent,
    "UPDATE chat_read_pointers SET last_read_chat_id = ?, acked_at_ms = ? WHERE user_id = ? AND channel_id = ? \
     IF last_read_chat_id < ?"
);
static PUT_CURSOR: Statement =
    statement!("chat.put_cursor", idempotent, "INSERT INTO chat_cursors (name, node, event_id) VALUES (?, ?, ?)");
static GET_CURSOR: Statement =
    statement!("chat.get_cursor", idempotent, "SELECT event_id FROM chat_cursors WHERE name = ? AND node = ?");
// the registry of channels with chats, for scans
static PUT_CHANNEL: Statement =
    statement!("chat.put_channel", idempotent, "INSERT INTO chat_channels (slot, channel_id) VALUES (?, ?)");
static CHANNELS_IN_SLOT: Statement = statement!(
    "chat.channels_in_slot",
    idempotent,
    "SELECT channel_id FROM chat_channels WHERE slot = ? AND channel_id > ? LIMIT ?"
);
static PUT_CHANNEL_SLOT: Statement =
    statement!("chat.put_channel_slot", idempotent, "INSERT INTO chat_channel_slots (shard, slot) VALUES (?, ?)");
static SLOTS_IN_SHARD: Statement = statement!(
    "chat.slots_in_shard",
    idempotent,
    "SELECT slot FROM chat_channel_slots WHERE shard = ? AND slot > ? LIMIT ?"
);
static PUT_CHANNEL_SHARD: Statement =
    statement!("chat.put_channel_shard", idempotent, "INSERT INTO chat_channel_shards (root, shard) VALUES (?, ?)");
static SHARDS_AFTER: Statement = statement!(
    "chat.shards_after",
    idempotent,
    "SELECT shard FROM chat_channel_shards WHERE root = ? AND shard > ? LIMIT ?"
);

/// The statements of this file (the feed's and uploads' are in their modules).
pub(super) static STATEMENTS: &[&Statement] = &[
    &PUT_CHAT,
    &GET_CHAT,
    &CHATS_BEFORE,
    &CHATS_AFTER,
    &CHAT_IDS_AT_OR_BEFORE,
    &UNREAD_AFTER,
    &PUT_CHAT_BY_ID,
    &GET_CHAT_CHANNEL,
    &PUT_CHAT_BUCKET,
    &CHAT_BUCKETS_DOWN,
    &CHAT_BUCKETS_UP,
    &CLAIM_KEY,
    &GET_KEY,
    &RELEASE_KEY,
    &PUT_EVENT,
    &EVENTS_AFTER,
    &EVENT_EXISTS,
    &PUT_EVENT_BUCKET,
    &EVENT_BUCKETS_UP,
    &CLAIM_EVENT_KEY,
    &GET_EVENT_KEY,
    &PUT_REMOVAL,
    &REMOVED_IN_RANGE,
    &PUT_REMOVED_BY,
    &REMOVED_BY,
    &GET_POINTER,
    &CREATE_POINTER,
    &ADVANCE_POINTER,
    &PUT_CURSOR,
    &GET_CURSOR,
    &PUT_CHANNEL,
    &CHANNELS_IN_SLOT,
    &PUT_CHANNEL_SLOT,
    &SLOTS_IN_SHARD,
    &PUT_CHANNEL_SHARD,
    &SHARDS_AFTER,
];

/// Every statement of the chat store: this file's, the feed's and the uploads'.
fn all_statements() -> Vec<&'static Statement> {
    STATEMENTS.iter().chain(feed::STATEMENTS).chain(uploads::STATEMENTS).copied().collect()
}

type Writes = Vec<(&'static Statement, Vec<Value>)>;

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

/// The chats row of a record (written whole by create, edit and retract).
fn put_chat(chat: &ChatRecord) -> Result<(&'static Statement, Vec<Value>), StoreError> {
    Ok((
        &PUT_CHAT,
        values![
            chat.channel_id,
            bucket(chat.chat_id),
            chat.chat_id,
            chat.sender_id,
            kind_name(chat.kind),
            chat.is_retracted(),
            encode_chat(chat)?
        ],
    ))
}

/// Index rows (bucket lists, the channel registry) a process knows it wrote, so it writes each
/// once rather than with every chat: these partitions are shared by a channel's whole traffic
/// (buckets) or by every channel (the registry's upper levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Known {
    ChatBucket(u64, i32),
    EventBucket(u64, i32),
    Channel(u64),
}

/// One logged batch being built: its writes, the ids it makes durable, and the index rows it
/// writes (known once it returns).
#[derive(Default)]
struct Batch {
    writes: Writes,
    ids: Vec<u64>,
    known: Vec<Known>,
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
    fn event(&self, inflight: &feed::Inflight) -> feed::InflightGuard {
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
    /// The wall clock (ack times); fixed in golden tests.
    now: fn() -> u64,
    /// Channel write locks, by a hash of the channel id.
    locks: Box<[Mutex<()>]>,
    /// Bounds the writes in flight across channels ([`MAX_IN_FLIGHT`]).
    in_flight: Semaphore,
    /// Event ids taken and not yet written (or failed).
    inflight: feed::Inflight,
    /// This process's node id: the feed and its cursors are per node (see feed.rs).
    node: i32,
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

/// Iterates a channel's non-empty buckets from `from` (inclusive) one way, a page at a time.
struct Buckets {
    stmt: &'static Statement,
    channel: u64,
    up: bool,
    next: Option<i32>,
    queue: VecDeque<i32>,
}

impl Buckets {
    fn new(stmt: &'static Statement, channel: u64, from: i32, up: bool) -> Self {
        Buckets { stmt, channel, up, next: Some(from), queue: VecDeque::new() }
    }

    async fn next(&mut self, cql: &Cql) -> Result<Option<i32>, StoreError> {
        if self.queue.is_empty()
            && let Some(from) = self.next.take()
        {
            let rows: Vec<(i32,)> =
                cql.rows(self.stmt, values![self.channel, from, BUCKET_PAGE]).await.map_err(cql_error)?;
            if rows.len() == BUCKET_PAGE as usize
                && let Some((last,)) = rows.last()
            {
                self.next = if self.up { last.checked_add(1) } else { last.checked_sub(1) };
            }
            self.queue.extend(rows.into_iter().map(|(b,)| b));
        }
        Ok(self.queue.pop_front())
    }
}

/// A channel's write lock (or two channels'), with a write slot.
struct Held<'a> {
    _guards: (MutexGuard<'a, ()>, Option<MutexGuard<'a, ()>>),
    _permit: Option<SemaphorePermit<'a>>,
}

/// Which way a page of history runs.
#[derive(Debug, Clone, Copy)]
enum Direction {
    /// Newest first, ids below the cursor.
    Older,
    /// Oldest first, ids above the cursor.
    Newer,
}

impl ScyllaChatStore {
    pub fn new(cql: Cql, ids: Arc<IdGenerator>) -> Self {
        Self::with(cql, Ids::Snowflake(ids), now_ms)
    }

    fn with(cql: Cql, ids: Ids, now: fn() -> u64) -> Self {
        let locks = (0..STRIPES).map(|_| Mutex::new(())).collect();
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
                locks,
                in_flight: Semaphore::new(MAX_IN_FLIGHT),
                inflight: feed::Inflight::with_clock(now),
                node,
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
    fn event_id(&self) -> feed::InflightGuard {
        self.inner.ids.event(&self.inner.inflight)
    }

    fn cql(&self) -> &Cql {
        &self.inner.cql
    }

    fn stripe(channel_id: u64) -> usize {
        // why: ids are snowflakes whose low bits are mostly zero; Fibonacci hashing spreads them.
        (channel_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - STRIPES.trailing_zeros())) as usize
    }

    async fn lock(&self, channel_id: u64) -> Held<'_> {
        let permit = self.write_slot().await;
        Held { _guards: (self.inner.locks[Self::stripe(channel_id)].lock().await, None), _permit: permit }
    }

    /// The locks of two channels, taken in stripe order (no deadlock with another pair).
    async fn lock_both(&self, a: u64, b: u64) -> Held<'_> {
        let permit = self.write_slot().await;
        let (sa, sb) = (Self::stripe(a), Self::stripe(b));
        if sa == sb {
            return Held { _guards: (self.inner.locks[sa].lock().await, None), _permit: permit };
        }
        let (first, second) = if sa < sb { (sa, sb) } else { (sb, sa) };
        let first = self.inner.locks[first].lock().await;
        let second = self.inner.locks[second].lock().await;
        Held { _guards: (first, Some(second)), _permit: permit }
    }

    /// One of the writes allowed in flight at once, across channels: under a burst, writes
    /// queue here rather than pile onto the cluster (and its coordinators' timeouts).
    async fn write_slot(&self) -> Option<SemaphorePermit<'_>> {
        // why: the semaphore is never closed; None would only mean "unbounded"
        self.inner.in_flight.acquire().await.ok()
    }

    /// Runs a batch, logged (all or nothing across partitions).
    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if let Err(e) = self.cql().batch(BatchKind::Logged, batch.writes.clone()).await {
            self.settle(batch, &e);
            return Err(cql_error(e));
        }
        self.synced(&batch.ids);
        let mut known = self.inner.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() + batch.known.len() > KNOWN_MAX {
            known.clear();
        }
        known.extend(batch.known);
        Ok(())
    }

    /// After a failed batch: a logged batch whose request failed (a timeout) may still be
    /// applied later by the cluster's batchlog, below a feed cursor that has moved on. So its
    /// ids stay in flight (no feed reader passes them) while the same idempotent batch is
    /// retried in the background until it is applied one way or the other. The caller was
    /// answered with the error, so the write is not acknowledged either way.
    fn settle(&self, batch: Batch, error: &CqlError) {
        if matches!(error, CqlError::Schema { .. }) {
            return; // refused before it was sent: nothing can apply later
        }
        let held: Vec<feed::InflightGuard> = batch.ids.iter().map(|id| self.inner.inflight.begin(*id)).collect();
        let cql = self.cql().clone();
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(100);
            let deadline = tokio::time::Instant::now() + SETTLE_FOR;
            loop {
                tokio::time::sleep(wait).await;
                match cql.batch(BatchKind::Logged, batch.writes.clone()).await {
                    Ok(_) => break,
                    Err(e) if tokio::time::Instant::now() >= deadline => {
                        tracing::error!(error = %e, ids = ?batch.ids, "a failed chat write could not be settled; releasing its ids");
                        break;
                    }
                    Err(_) => wait = (wait * 2).min(Duration::from_secs(30)),
                }
            }
            drop(held);
        });
    }

    /// Adds an index row's writes unless this process wrote them before.
    fn index(&self, batch: &mut Batch, row: Known) {
        if self.inner.known.lock().unwrap_or_else(|e| e.into_inner()).contains(&row) || batch.known.contains(&row) {
            return;
        }
        match row {
            Known::ChatBucket(channel, bucket) => batch.writes.push((&PUT_CHAT_BUCKET, values![channel, bucket])),
            Known::EventBucket(channel, bucket) => batch.writes.push((&PUT_EVENT_BUCKET, values![channel, bucket])),
            Known::Channel(channel) => batch.writes.extend([
                (&PUT_CHANNEL, values![channel >> 40, channel]),
                (&PUT_CHANNEL_SLOT, values![(channel >> 56) as i32, channel >> 40]),
                (&PUT_CHANNEL_SHARD, values![0i32, (channel >> 56) as i32]),
            ]),
        }
        batch.known.push(row);
    }

    /// Adds an event's rows in its channel's log and in the feed.
    fn log(&self, batch: &mut Batch, event: &ChannelEvent) -> Result<(), StoreError> {
        let channel = parse_id("channel id", &event.channel_id)?;
        let event_id = parse_id("event id", &event.event_id)?;
        batch.writes.push((&PUT_EVENT, values![channel, bucket(event_id), event_id, event.encode_to_vec()]));
        self.index(batch, Known::EventBucket(channel, bucket(event_id)));
        batch.writes.extend(feed::feed_writes(self.inner.node, event));
        batch.ids.push(event_id);
        Ok(())
    }

    /// Adds everything creating a chat writes: the chat, its lookups, its `chat.created` event.
    fn created(&self, batch: &mut Batch, chat: &ChatRecord, created: &ChannelEvent) -> Result<(), StoreError> {
        let channel = chat.channel_id;
        batch.writes.push(put_chat(chat)?);
        batch.writes.push((&PUT_CHAT_BY_ID, values![chat.chat_id, channel]));
        self.index(batch, Known::ChatBucket(channel, bucket(chat.chat_id)));
        self.index(batch, Known::Channel(channel));
        batch.ids.push(chat.chat_id);
        self.log(batch, created)
    }

    /// Counts a write round trip that returned, covering `ids`.
    fn synced(&self, ids: &[u64]) {
        self.inner.syncs.fetch_add(1, Ordering::AcqRel);
        if let Some(max) = ids.iter().max() {
            self.inner.durable_id.fetch_max(*max, Ordering::AcqRel);
        }
    }

    /// Counts an acknowledged write operation.
    fn acknowledged<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_ok() {
            self.inner.writes.fetch_add(1, Ordering::AcqRel);
        }
        result
    }

    async fn channel_of(&self, chat_id: u64) -> Result<Option<u64>, StoreError> {
        let row: Option<(i64,)> = self.cql().row(&GET_CHAT_CHANNEL, values![chat_id]).await.map_err(cql_error)?;
        Ok(row.map(|(c,)| chatmesh_cql::id(c)))
    }

    async fn chat_in(&self, channel_id: u64, chat_id: u64) -> Result<Option<ChatRecord>, StoreError> {
        chat_in(self.cql(), channel_id, chat_id).await
    }

    /// The chat ids in `[low, high]` of `channel_id` that `user` removed (at most `max`).
    async fn removed_between(
        &self,
        user: u64,
        channel_id: u64,
        low: u64,
        high: u64,
        max: usize,
    ) -> Result<BTreeSet<u64>, StoreError> {
        let rows: Vec<(i64,)> = self
            .cql()
            .rows(&REMOVED_IN_RANGE, values![user, channel_id, low, high, limit(max.max(1))])
            .await
            .map_err(cql_error)?;
        Ok(rows.into_iter().map(|(c,)| chatmesh_cql::id(c)).collect())
    }

    /// Up to `limit` chats of a channel from `cursor` (exclusive) one way, leaving out those
    /// `viewer` removed.
    async fn page(
        &self,
        channel_id: u64,
        direction: Direction,
        mut cursor: i64,
        limit_to: usize,
        viewer: Option<u64>,
    ) -> Result<Vec<ChatRecord>, StoreError> {
        let mut out = Vec::new();
        let (start, stmt, buckets_stmt, up) = match direction {
            Direction::Older if cursor > 0 => (cursor - 1, &CHATS_BEFORE, &CHAT_BUCKETS_DOWN, false),
            Direction::Newer if cursor < i64::MAX => (cursor + 1, &CHATS_AFTER, &CHAT_BUCKETS_UP, true),
            _ => return Ok(out),
        };
        if limit_to == 0 {
            return Ok(out);
        }
        let mut buckets = Buckets::new(buckets_stmt, channel_id, bucket(start as u64), up);
        while out.len() < limit_to
            && let Some(b) = buckets.next(self.cql()).await?
        {
            loop {
                let want = (limit_to - out.len()).min(PAGE);
                let rows: Vec<(Vec<u8>,)> =
                    self.cql().rows(stmt, values![channel_id, b, cursor, limit(want)]).await.map_err(cql_error)?;
                let got = rows.len();
                let chats = rows.iter().map(|(r,)| decode_chat(r)).collect::<Result<Vec<_>, _>>()?;
                let (Some(first), Some(last)) = (chats.first(), chats.last()) else { break };
                cursor = bound(last.chat_id);
                let removed = match viewer {
                    Some(user) => {
                        let (low, high) = (first.chat_id.min(last.chat_id), first.chat_id.max(last.chat_id));
                        self.removed_between(user, channel_id, low, high, got).await?
                    }
                    None => BTreeSet::new(),
                };
                out.extend(chats.into_iter().filter(|c| !removed.contains(&c.chat_id)));
                if got < want || out.len() >= limit_to {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Finds the idempotency claim of (sender, channel, key) taken by someone else: the outcome
    /// for a send with `body_hash`, finishing the claimed write if it is missing. `Ok(None)`:
    /// the claim is gone (released meanwhile, or released here because it cannot be finished):
    /// claim again.
    async fn claimed(&self, chat: &NewChat) -> Result<Option<CreateOutcome>, StoreError> {
        let key = values![chat.sender_id, chat.channel_id, chat.client_msg_id.as_str()];
        let row: Option<(i64, i64, String, Vec<u8>)> = self.cql().row(&GET_KEY, key).await.map_err(cql_error)?;
        let Some((chat_id, event_id, hash, stored)) = row else { return Ok(None) };
        let (chat_id, event_id) = (chatmesh_cql::id(chat_id), chatmesh_cql::id(event_id));
        let outcome = |record: ChatRecord| {
            if hash == chat.body_hash { CreateOutcome::Duplicate(record) } else { CreateOutcome::KeyConflict(chat_id) }
        };
        if let Some(current) = self.chat_in(chat.channel_id, chat_id).await? {
            return Ok(Some(outcome(current)));
        }
        // why: claimed but not written (a crash between the two, or another process between them
        // now): finish that write with its own ids; every statement of it is an idempotent INSERT.
        let record = decode_chat(&stored)?;
        if !self.attach(&record).await? {
            let released = self
                .cql()
                .lwt(&RELEASE_KEY, values![chat.sender_id, chat.channel_id, chat.client_msg_id.as_str(), chat_id])
                .await
                .map_err(cql_error)?;
            if released {
                self.synced(&[]);
            }
            return Ok(None);
        }
        let _inflight = self.inner.inflight.begin(event_id);
        let key = format!("chat:{chat_id}:created");
        let created = chat_event(event_id, EventType::ChatCreated, record.sender_id, &record, key);
        let mut batch = Batch::default();
        self.created(&mut batch, &record, &created)?;
        self.commit(batch).await?;
        Ok(Some(outcome(record)))
    }

    /// Makes sure the uploads of a claimed chat whose write is being finished are attached to
    /// it; false when one of them went elsewhere meanwhile.
    async fn attach(&self, record: &ChatRecord) -> Result<bool, StoreError> {
        let mut pending = Vec::new();
        for attachment in &record.attachments {
            match uploads::get_upload(self.cql(), attachment.upload_id).await?.map(|u| u.state) {
                Some(UploadState::Attached(id)) if id == record.chat_id => {}
                _ => pending.push(attachment.upload_id),
            }
        }
        if pending.is_empty() {
            return Ok(true);
        }
        let refused = uploads::claim(self.cql(), record.sender_id, record.channel_id, &pending, record.chat_id).await?;
        Ok(refused.is_none())
    }

    async fn create(&self, chat: NewChat) -> Result<CreateOutcome, StoreError> {
        let _lock = self.lock(chat.channel_id).await;
        for _ in 0..ATTEMPTS {
            // why: ids taken under the channel's lock, right before the write: id order is
            // commit order in the channel.
            let chat_id = self.inner.ids.next();
            let inflight = self.event_id();
            let event_id = inflight.event_id();
            let record = ChatRecord::created(chat.clone(), chat_id);
            let keyed = !record.client_msg_id.is_empty();
            if keyed {
                let claim = values![
                    record.sender_id,
                    record.channel_id,
                    record.client_msg_id.as_str(),
                    chat_id,
                    event_id,
                    record.body_hash.as_str(),
                    encode_chat(&record)?
                ];
                if !self.cql().lwt(&CLAIM_KEY, claim).await.map_err(cql_error)? {
                    match self.claimed(&chat).await? {
                        Some(outcome) => return Ok(outcome),
                        None => continue,
                    }
                }
                self.synced(&[]);
            }
            if !record.attachments.is_empty() {
                let upload_ids: Vec<u64> = record.attachments.iter().map(|a| a.upload_id).collect();
                let refused =
                    uploads::claim(self.cql(), record.sender_id, record.channel_id, &upload_ids, chat_id).await?;
                if let Some(upload_id) = refused {
                    if keyed {
                        // why: nothing was written; the key is free for a send that can attach.
                        let release =
                            values![record.sender_id, record.channel_id, record.client_msg_id.as_str(), chat_id];
                        self.cql().lwt(&RELEASE_KEY, release).await.map_err(cql_error)?;
                        self.synced(&[]);
                    }
                    return Ok(CreateOutcome::UploadUnavailable(upload_id));
                }
            }
            let key = format!("chat:{chat_id}:created");
            let created = chat_event(event_id, EventType::ChatCreated, record.sender_id, &record, key);
            let mut batch = Batch::default();
            self.created(&mut batch, &record, &created)?;
            self.commit(batch).await?;
            return Ok(CreateOutcome::Created(record));
        }
        Err(backend(format!(
            "the idempotency key of sender {} in channel {} kept changing while it was claimed",
            chat.sender_id, chat.channel_id
        )))
    }

    async fn edit(&self, chat_id: u64, editor: u64, text: String) -> Result<ItemOutcome, StoreError> {
        let Some(channel) = self.channel_of(chat_id).await? else { return Ok(ItemOutcome::NotFound) };
        let _lock = self.lock(channel).await;
        let Some(mut chat) = self.chat_in(channel, chat_id).await? else { return Ok(ItemOutcome::NotFound) };
        if chat.sender_id != editor || chat.kind != ChatKind::Text {
            return Ok(ItemOutcome::NotSender);
        }
        if chat.is_retracted() {
            return Ok(ItemOutcome::Retracted);
        }
        let inflight = self.event_id();
        let event_id = inflight.event_id();
        chat.text = text;
        chat.edited_at_ms = Some(unix_ms_of(event_id));
        let key = format!("chat:{chat_id}:edited:{event_id}");
        let event = chat_event(event_id, EventType::ChatEdited, editor, &chat, key);
        let mut batch = Batch { writes: vec![put_chat(&chat)?], ..Batch::default() };
        self.log(&mut batch, &event)?;
        self.commit(batch).await?;
        Ok(ItemOutcome::Done(Box::new(chat)))
    }

    async fn retract(&self, sender: u64, chat_id: u64) -> Result<ItemOutcome, StoreError> {
        let Some(channel) = self.channel_of(chat_id).await? else { return Ok(ItemOutcome::NotFound) };
        let _lock = self.lock(channel).await;
        let Some(mut chat) = self.chat_in(channel, chat_id).await? else { return Ok(ItemOutcome::NotFound) };
        if chat.sender_id != sender || chat.kind != ChatKind::Text {
            return Ok(ItemOutcome::NotSender);
        }
        if chat.is_retracted() {
            return Ok(ItemOutcome::Retracted);
        }
        let inflight = self.event_id();
        let event_id = inflight.event_id();
        let attached = chat.clone();
        chat.text.clear();
        chat.mentions.clear();
        chat.attachments.clear();
        chat.retracted_at_ms = Some(unix_ms_of(event_id));
        let event = chat_event(event_id, EventType::ChatRetracted, sender, &chat, format!("chat:{chat_id}:retracted"));
        let mut batch = Batch { writes: vec![put_chat(&chat)?], ..Batch::default() };
        self.log(&mut batch, &event)?;
        // why: the uploads are queued for release in the tombstone's own batch, so the release is
        // as durable as the retraction; detached right after (or by the next sweep).
        batch.writes.extend(uploads::release_writes(&attached));
        self.commit(batch).await?;
        if !attached.attachments.is_empty() {
            match uploads::release_for_chat(self.cql(), &attached).await {
                Ok(()) => self.synced(&[]),
                Err(e) => tracing::warn!(error = %e, chat_id, "retracted chat's uploads left for the sweep to release"),
            }
        }
        Ok(ItemOutcome::Done(Box::new(chat)))
    }

    /// Hides a chat for `user`, once; the change enters the feed privately (for search only).
    async fn remove(&self, user: u64, chat_id: u64) -> Result<(), StoreError> {
        let Some(channel) = self.channel_of(chat_id).await? else { return Ok(()) };
        let _lock = self.lock(channel).await;
        if !self.removed_between(user, channel, chat_id, chat_id, 1).await?.is_empty() {
            return Ok(());
        }
        let inflight = self.event_id();
        let event_id = inflight.event_id();
        let stub = ChatRecord { chat_id, channel_id: channel, ..placeholder_chat() };
        let event = chat_event(event_id, EventType::ChatRemoved, user, &stub, format!("chat:{chat_id}:removed:{user}"));
        let mut batch = Batch {
            writes: vec![(&PUT_REMOVAL, values![user, channel, chat_id]), (&PUT_REMOVED_BY, values![chat_id, user])],
            ids: vec![event_id],
            known: Vec::new(),
        };
        // why: private to the remover: the feed only, never the channel's log.
        batch.writes.extend(feed::feed_writes(self.inner.node, &event));
        self.commit(batch).await
    }

    async fn append(&self, external: ExternalEvent) -> Result<u64, StoreError> {
        let ExternalEvent { mut event, announcement } = external;
        let channel = parse_id("the appended event's channel id", &event.channel_id)?;
        let _locks = self.lock_both(channel, announcement.as_ref().map_or(channel, |a| a.channel_id)).await;
        let inflight = self.event_id();
        let event_id = inflight.event_id();
        event.event_id = event_id.to_string();
        let announced = match announcement {
            Some(chat) => {
                let chat_id = self.inner.ids.next();
                let inflight = self.event_id();
                Some((ChatRecord::created(chat, chat_id), inflight.event_id(), inflight))
            }
            None => None,
        };
        let announced = announced.as_ref().map(|(record, id, _guard)| (record, *id));
        // why: an event without a key cannot be recognised when redelivered: appended as is.
        if !event.idempotency_key.is_empty() {
            let claim = values![
                event.idempotency_key.as_str(),
                event_id,
                channel,
                event.encode_to_vec(),
                announced.map(|(_, id)| id),
                announced.map(|(record, _)| encode_chat(record)).transpose()?
            ];
            if !self.cql().lwt(&CLAIM_EVENT_KEY, claim).await.map_err(cql_error)? {
                return self.appended(&event.idempotency_key).await;
            }
            self.synced(&[]);
        }
        self.write_append(&event, announced).await?;
        Ok(event_id)
    }

    /// The event id of an appended event's key claimed before, finishing its write if it is
    /// missing (with the claim's own ids and content).
    async fn appended(&self, key: &str) -> Result<u64, StoreError> {
        type Claim = (i64, i64, Vec<u8>, Option<i64>, Option<Vec<u8>>);
        let row: Option<Claim> = self.cql().row(&GET_EVENT_KEY, values![key]).await.map_err(cql_error)?;
        let Some((event_id, channel, event, chat_event_id, chat)) = row else {
            return Err(backend(format!("the claim of event key {key:?} vanished")));
        };
        let (event_id, channel) = (chatmesh_cql::id(event_id), chatmesh_cql::id(channel));
        let exists: Option<(i64,)> =
            self.cql().row(&EVENT_EXISTS, values![channel, bucket(event_id), event_id]).await.map_err(cql_error)?;
        if exists.is_some() {
            return Ok(event_id);
        }
        let event = decode_event(&event)?;
        let announced = match (chat_event_id, chat) {
            (Some(id), Some(record)) => Some((decode_chat(&record)?, chatmesh_cql::id(id))),
            _ => None,
        };
        let _inflight = self.inner.inflight.begin(event_id);
        let _announced_inflight = announced.as_ref().map(|(_, id)| self.inner.inflight.begin(*id));
        self.write_append(&event, announced.as_ref().map(|(record, id)| (record, *id))).await?;
        Ok(event_id)
    }

    /// One logged batch: the event, its announcement chat with that chat's created event, and
    /// a deleted channel's mark.
    async fn write_append(
        &self,
        event: &ChannelEvent,
        announced: Option<(&ChatRecord, u64)>,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        self.log(&mut batch, event)?;
        let deleted = event.r#type() == EventType::ChannelDeleted;
        let channel = parse_id("channel id", &event.channel_id)?;
        if deleted {
            batch.writes.extend(feed::channel_deleted_writes(channel));
        }
        if let Some((record, chat_event_id)) = announced {
            let key = format!("{}:announcement", event.idempotency_key);
            let created = chat_event(chat_event_id, EventType::ChatCreated, record.sender_id, record, key);
            self.created(&mut batch, record, &created)?;
        }
        self.commit(batch).await?;
        if deleted {
            // why: the release is queued in the batch; releasing now shows it at once, and a
            // failure is finished by the next sweep (the event is written: not an error)
            match uploads::release_channel(self.cql(), channel).await {
                Ok(()) => self.synced(&[]),
                Err(e) => {
                    tracing::warn!(error = %e, channel, "deleted channel's uploads left for the sweep to release")
                }
            }
        }
        Ok(())
    }

    async fn advance(&self, channel_id: u64, user: u64, chat_id: u64) -> Result<ReadPointer, StoreError> {
        for _ in 0..ATTEMPTS {
            let current = self.pointer(channel_id, user).await?;
            if let Some(pointer) = current
                && pointer.last_read_chat_id >= chat_id
            {
                return Ok(pointer);
            }
            if current.is_none() && chat_id == 0 {
                return Ok(ReadPointer::default());
            }
            let moved = ReadPointer { last_read_chat_id: chat_id, acked_at_ms: (self.inner.now)() };
            let applied = match current {
                Some(_) => {
                    let set = values![chat_id, moved.acked_at_ms, user, channel_id, chat_id];
                    self.cql().lwt(&ADVANCE_POINTER, set).await.map_err(cql_error)?
                }
                None => {
                    let create = values![user, channel_id, chat_id, moved.acked_at_ms];
                    self.cql().lwt(&CREATE_POINTER, create).await.map_err(cql_error)?
                }
            };
            if applied {
                self.synced(&[]);
                return Ok(moved);
            }
            // why: another ack got there first; look again (it may be behind us still).
        }
        Err(backend(format!("the read pointer of user {user} in channel {channel_id} kept moving")))
    }

    async fn pointer(&self, channel_id: u64, user: u64) -> Result<Option<ReadPointer>, StoreError> {
        let row: Option<(i64, i64)> =
            self.cql().row(&GET_POINTER, values![user, channel_id]).await.map_err(cql_error)?;
        Ok(row.map(|(last, at)| ReadPointer { last_read_chat_id: chatmesh_cql::id(last), acked_at_ms: at as u64 }))
    }

    async fn newest_at_or_before(&self, channel_id: u64, max_id: u64) -> Result<Option<u64>, StoreError> {
        let max = bound(max_id);
        let mut buckets = Buckets::new(&CHAT_BUCKETS_DOWN, channel_id, bucket(max as u64), false);
        while let Some(b) = buckets.next(self.cql()).await? {
            let row: Option<(i64,)> =
                self.cql().row(&CHAT_IDS_AT_OR_BEFORE, values![channel_id, b, max, 1i32]).await.map_err(cql_error)?;
            if let Some((id,)) = row {
                return Ok(Some(chatmesh_cql::id(id)));
            }
        }
        Ok(None)
    }

    async fn count_unread(&self, channel_id: u64, user: u64, after: u64) -> Result<u64, StoreError> {
        let mut cursor = bound(after);
        if cursor == i64::MAX {
            return Ok(0);
        }
        let mut count = 0;
        let mut buckets = Buckets::new(&CHAT_BUCKETS_UP, channel_id, bucket(cursor as u64 + 1), true);
        while let Some(b) = buckets.next(self.cql()).await? {
            loop {
                let rows: Vec<(i64, i64, String, bool)> = self
                    .cql()
                    .rows(&UNREAD_AFTER, values![channel_id, b, cursor, limit(PAGE)])
                    .await
                    .map_err(cql_error)?;
                let (Some(first), Some(last)) = (rows.first(), rows.last()) else { break };
                let (low, high) = (chatmesh_cql::id(first.0), chatmesh_cql::id(last.0));
                cursor = last.0;
                let candidates: Vec<u64> = rows
                    .iter()
                    .filter(|(_, sender, kind, retracted)| {
                        chatmesh_cql::id(*sender) != user && kind == kind_name(ChatKind::Text) && !retracted
                    })
                    .map(|(id, ..)| chatmesh_cql::id(*id))
                    .collect();
                if !candidates.is_empty() {
                    let removed = self.removed_between(user, channel_id, low, high, rows.len()).await?;
                    count += candidates.iter().filter(|id| !removed.contains(id)).count() as u64;
                }
                if rows.len() < PAGE {
                    break;
                }
            }
        }
        Ok(count)
    }

    /// The next non-empty slot of the channel registry after `slot`, if any.
    async fn next_slot(&self, slot: i64) -> Result<Option<i64>, StoreError> {
        let mut shard = (slot >> 16) as i32;
        let mut after = slot;
        loop {
            let row: Option<(i64,)> =
                self.cql().row(&SLOTS_IN_SHARD, values![shard, after, 1i32]).await.map_err(cql_error)?;
            if let Some((next,)) = row {
                return Ok(Some(next));
            }
            let row: Option<(i32,)> =
                self.cql().row(&SHARDS_AFTER, values![0i32, shard, 1i32]).await.map_err(cql_error)?;
            let Some((next,)) = row else { return Ok(None) };
            shard = next;
            after = (i64::from(next) << 16) - 1;
        }
    }
}

/// A chat by channel and id, from the chats table.
async fn chat_in(cql: &Cql, channel_id: u64, chat_id: u64) -> Result<Option<ChatRecord>, StoreError> {
    let row: Option<(Vec<u8>,)> =
        cql.row(&GET_CHAT, values![channel_id, bucket(chat_id), chat_id]).await.map_err(cql_error)?;
    row.map(|(r,)| decode_chat(&r)).transpose()
}

/// Logged events with their chats as they are now (chat events are logged by id only).
pub(super) async fn hydrate(cql: &Cql, mut events: Vec<ChannelEvent>) -> Result<Vec<ChannelEvent>, StoreError> {
    let mut wanted: Vec<(u64, u64)> = Vec::new();
    for event in &events {
        if let Some(Payload::Chat(stub)) = &event.payload {
            let (channel, chat) = (stub.channel_id.parse().unwrap_or(0), stub.chat_id.parse().unwrap_or(0));
            if !wanted.contains(&(channel, chat)) {
                wanted.push((channel, chat));
            }
        }
    }
    // why: a few round trips' latency for the page rather than one per chat, with a bounded
    // number of reads in flight
    let found: Vec<Option<ChatRecord>> = futures::stream::iter(wanted.clone())
        .map(|(channel, chat)| chat_in(cql, channel, chat))
        .buffered(HYDRATE_READS)
        .try_collect()
        .await?;
    let chats: HashMap<(u64, u64), ChatRecord> =
        wanted.into_iter().zip(found).filter_map(|(key, chat)| chat.map(|c| (key, c))).collect();
    for event in &mut events {
        if let Some(Payload::Chat(stub)) = &event.payload {
            let key = (stub.channel_id.parse().unwrap_or(0), stub.chat_id.parse().unwrap_or(0));
            if let Some(record) = chats.get(&key) {
                event.payload = Some(Payload::Chat(record.to_pb(None)));
            }
        }
    }
    Ok(events)
}

/// Fields of a chat record the removal event does not carry.
fn placeholder_chat() -> ChatRecord {
    ChatRecord {
        chat_id: 0,
        channel_id: 0,
        sender_id: 0,
        kind: ChatKind::Text,
        text: String::new(),
        client_msg_id: String::new(),
        reply_to: 0,
        mentions: Vec::new(),
        announcement: None,
        body_hash: String::new(),
        created_at_ms: 0,
        edited_at_ms: None,
        retracted_at_ms: None,
        attachments: Vec::new(),
    }
}

#[async_trait]
impl ChatStore for ScyllaChatStore {
    #[tracing::instrument(name = "chat_store.create_chat", skip_all, fields(db.system = "scylla"))]
    async fn create_chat(&self, chat: NewChat) -> Result<CreateOutcome, StoreError> {
        let outcome = self.create(chat).await;
        self.acknowledged(outcome)
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

    #[tracing::instrument(name = "chat_store.append_events", skip_all, fields(db.system = "scylla"))]
    async fn append_events(&self, events: Vec<ExternalEvent>) -> Result<Vec<u64>, StoreError> {
        let mut ids = Vec::with_capacity(events.len());
        for event in events {
            ids.push(self.append(event).await?);
        }
        self.acknowledged(Ok(ids))
    }

    #[tracing::instrument(name = "chat_store.ack", skip_all, fields(db.system = "scylla"))]
    async fn ack(&self, channel_id: u64, user: u64, chat_id: u64) -> Result<ReadPointer, StoreError> {
        let pointer = self.advance(channel_id, user, chat_id).await;
        self.acknowledged(pointer)
    }

    async fn set_cursor(&self, name: &str, event_id: u64) -> Result<(), StoreError> {
        self.cql().execute(&PUT_CURSOR, values![name, self.inner.node, event_id]).await.map_err(cql_error)?;
        self.synced(&[]);
        self.acknowledged(Ok(()))
    }

    #[tracing::instrument(name = "chat_store.get_chat", skip_all, fields(db.system = "scylla"))]
    async fn get_chat(&self, chat_id: u64) -> Result<Option<ChatRecord>, StoreError> {
        match self.channel_of(chat_id).await? {
            Some(channel) => self.chat_in(channel, chat_id).await,
            None => Ok(None),
        }
    }

    async fn is_removed(&self, user: u64, chat_id: u64) -> Result<bool, StoreError> {
        match self.channel_of(chat_id).await? {
            Some(channel) => Ok(!self.removed_between(user, channel, chat_id, chat_id, 1).await?.is_empty()),
            None => Ok(false),
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

    #[tracing::instrument(name = "chat_store.list_events", skip_all, fields(db.system = "scylla"))]
    async fn list_events(
        &self,
        channel_id: u64,
        after_event: u64,
        limit_to: usize,
    ) -> Result<Vec<ChannelEvent>, StoreError> {
        let mut cursor = bound(after_event);
        let mut out = Vec::new();
        if limit_to == 0 || cursor == i64::MAX {
            return Ok(out);
        }
        let mut buckets = Buckets::new(&EVENT_BUCKETS_UP, channel_id, bucket(cursor as u64 + 1), true);
        while out.len() < limit_to
            && let Some(b) = buckets.next(self.cql()).await?
        {
            loop {
                let want = (limit_to - out.len()).min(PAGE);
                let rows: Vec<(Vec<u8>,)> = self
                    .cql()
                    .rows(&EVENTS_AFTER, values![channel_id, b, cursor, limit(want)])
                    .await
                    .map_err(cql_error)?;
                let got = rows.len();
                for (bytes,) in rows {
                    let event = decode_event(&bytes)?;
                    cursor = bound(parse_id("event id", &event.event_id)?);
                    out.push(event);
                }
                if got < want {
                    break;
                }
                if out.len() >= limit_to {
                    break;
                }
            }
        }
        hydrate(self.cql(), out).await
    }

    async fn feed(&self, after_event: u64, limit: usize) -> Result<Vec<ChannelEvent>, StoreError> {
        // why: feed::feed fills in each chat's current state itself
        feed::feed(self.cql(), &self.inner.inflight, self.inner.node, after_event, limit).await
    }

    async fn cursor(&self, name: &str) -> Result<u64, StoreError> {
        let row: Option<(i64,)> =
            self.cql().row(&GET_CURSOR, values![name, self.inner.node]).await.map_err(cql_error)?;
        Ok(row.map_or(0, |(id,)| chatmesh_cql::id(id)))
    }

    #[tracing::instrument(name = "chat_store.unread", skip_all, fields(db.system = "scylla"))]
    async fn unread(&self, channel_id: u64, user: u64) -> Result<Unread, StoreError> {
        let pointer = self.pointer(channel_id, user).await?.unwrap_or_default();
        let last_chat_id = self.newest_at_or_before(channel_id, u64::MAX).await?.unwrap_or(0);
        // why: uncapped, as the embedded store counts (the service shows the exact number)
        let count = self.count_unread(channel_id, user, pointer.last_read_chat_id).await?;
        Ok(Unread { count, last_chat_id, pointer })
    }

    async fn newest_chat_at_or_before(&self, channel_id: u64, max_id: u64) -> Result<Option<u64>, StoreError> {
        self.newest_at_or_before(channel_id, max_id).await
    }

    async fn removed_by(&self, chat_id: u64) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        let mut cursor = -1i64;
        loop {
            let rows: Vec<(i64,)> =
                self.cql().rows(&REMOVED_BY, values![chat_id, cursor, limit(PAGE)]).await.map_err(cql_error)?;
            let got = rows.len();
            out.extend(rows.iter().map(|(u,)| chatmesh_cql::id(*u)));
            match rows.last() {
                Some((last,)) if got == PAGE => cursor = *last,
                _ => return Ok(out),
            }
        }
    }

    async fn feed_head(&self) -> Result<u64, StoreError> {
        feed::feed_head(self.cql(), self.inner.node).await
    }

    async fn feed_count(&self, after_event: u64, cap: u64) -> Result<u64, StoreError> {
        feed::feed_count(self.cql(), self.inner.node, after_event, cap).await
    }

    async fn scan_chats(&self, after: (u64, u64), limit_to: usize) -> Result<Vec<ChatRecord>, StoreError> {
        let (channel, chat) = after;
        let mut out = Vec::new();
        if limit_to == 0 {
            return Ok(out);
        }
        // the rest of the channel `after` is in, then the registry's channels after it, slot by slot
        out.extend(self.page(channel, Direction::Newer, bound(chat), limit_to, None).await?);
        let (mut slot, mut floor) = (bound(channel) >> 40, bound(channel));
        while out.len() < limit_to {
            let rows: Vec<(i64,)> =
                self.cql().rows(&CHANNELS_IN_SLOT, values![slot, floor, CHANNEL_PAGE]).await.map_err(cql_error)?;
            for (next,) in &rows {
                let next_chats = self.page(chatmesh_cql::id(*next), Direction::Newer, 0, limit_to - out.len(), None);
                out.extend(next_chats.await?);
                if out.len() >= limit_to {
                    return Ok(out);
                }
            }
            match rows.last() {
                Some((last,)) if rows.len() == CHANNEL_PAGE as usize => floor = *last,
                _ => match self.next_slot(slot).await? {
                    Some(next) => (slot, floor) = (next, (next << 40) - 1),
                    None => break,
                },
            }
        }
        Ok(out)
    }

    async fn channel_deleted(&self, channel_id: u64) -> Result<bool, StoreError> {
        feed::channel_deleted(self.cql(), channel_id).await
    }

    async fn create_upload(&self, upload: UploadRecord) -> Result<(), StoreError> {
        let done = uploads::create_upload(self.cql(), upload).await;
        self.delegated(done)
    }

    async fn get_upload(&self, upload_id: u64) -> Result<Option<UploadRecord>, StoreError> {
        uploads::get_upload(self.cql(), upload_id).await
    }

    async fn expire_uploads(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
        let done = uploads::expire_uploads(self.cql(), before_ms, limit).await;
        self.delegated(done)
    }

    async fn reclaimable_uploads(&self, limit: usize) -> Result<Vec<UploadRecord>, StoreError> {
        uploads::reclaimable_uploads(self.cql(), limit).await
    }

    async fn forget_uploads(&self, upload_ids: Vec<u64>) -> Result<(), StoreError> {
        let done = uploads::forget_uploads(self.cql(), upload_ids).await;
        self.delegated(done)
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
}

impl ScyllaChatStore {
    /// Counts an upload write (its round trips are the upload module's: counted as one).
    fn delegated<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_ok() {
            self.synced(&[]);
        }
        self.acknowledged(result)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use chatmesh_cql::{Call, MemoryCql};
    use chatmesh_platform::ids::EPOCH_MS;

    use super::*;
    use crate::store::conformance::{self, channel_deleted, text};

    mod memory {
        use super::*;

        crate::chat_store_suite!(|| {
            let ids = Arc::new(IdGenerator::new(1).expect("node id"));
            ((), ScyllaChatStore::new(Cql::memory(MemoryCql::migrated()), ids))
        });
    }

    mod scylla {
        use super::*;

        // skipped with a printed "skipped: CHATMESH_TEST_SCYLLA not set" unless a server is configured
        crate::chat_store_suite!(async |case: &'static str| async move {
            let cql = chatmesh_cql::migrate::test_keyspace(case).await?;
            let store = ScyllaChatStore::new(cql, Arc::new(IdGenerator::new(1).expect("node id")));
            store.prepare().await.expect("the chat store's statements prepare on the migrated keyspace");
            Some(((), store))
        });
    }

    /// The first id of a deterministic store: 500 days after the id epoch (2025-05-15).
    const FIRST_ID: u64 = (500 * 86_400_000) << 22;
    /// Its clock: a minute later.
    const NOW: u64 = EPOCH_MS + 500 * 86_400_000 + 60_000;

    /// A store with ids counting from [`FIRST_ID`] and a fixed clock, recording its calls; and
    /// the same executor, not recording (to stage what a store left half done).
    fn fixed() -> (ScyllaChatStore, Cql, Arc<StdMutex<Vec<Call>>>) {
        let plain = Cql::memory(MemoryCql::migrated());
        let (cql, log) = plain.recording();
        (ScyllaChatStore::with(cql, Ids::Sequence(AtomicU64::new(FIRST_ID)), || NOW), plain, log)
    }

    /// Moves the store's next id `days` later.
    fn skip_days(store: &ScyllaChatStore, days: u64) {
        let Ids::Sequence(next) = &store.inner.ids else { panic!("a fixed store") };
        next.fetch_add((days * 86_400_000) << 22, Ordering::AcqRel);
    }

    use chatmesh_cql::golden::taken;

    async fn send(store: &ScyllaChatStore, channel: u64, sender: u64, body: &str) -> ChatRecord {
        match store.create_chat(text(channel, sender, body, "")).await.unwrap() {
            CreateOutcome::Created(chat) => chat,
            other => panic!("expected a new chat, got {other:?}"),
        }
    }

    fn upload(upload_id: u64, channel_id: u64, uploader_id: u64) -> UploadRecord {
        conformance::upload(upload_id, channel_id, uploader_id, NOW)
    }

    fn with_upload(channel: u64, sender: u64, body: &str, key: &str, upload_id: u64) -> NewChat {
        NewChat { attachments: vec![conformance::attached(upload_id)], ..text(channel, sender, body, key) }
    }

    fn joined(key: &str) -> ExternalEvent {
        conformance::member_joined(key)
    }

    /// The claim a send leaves when its process stops before writing the chat.
    async fn stage_lost_send(store: &ScyllaChatStore, plain: &Cql, chat: NewChat) -> ChatRecord {
        let record = ChatRecord::created(chat, store.inner.ids.next());
        let event_id = store.inner.ids.next();
        let claim = values![
            record.sender_id,
            record.channel_id,
            record.client_msg_id.as_str(),
            record.chat_id,
            event_id,
            record.body_hash.as_str(),
            encode_chat(&record).unwrap()
        ];
        assert!(plain.lwt(&CLAIM_KEY, claim).await.unwrap());
        record
    }

    // golden: each operation's calls on a staged store

    async fn create_chat() -> Vec<Call> {
        let (store, plain, log) = fixed();
        store.create_upload(upload(11, 1, 7)).await.unwrap();
        let lost = stage_lost_send(&store, &plain, text(1, 7, "lost in a crash", "k3")).await;
        taken(&log);
        // a keyed send with an upload; its retry; a send whose upload is taken; a retry of a
        // send whose process stopped between its claim and its write
        let CreateOutcome::Created(chat) = store.create_chat(with_upload(1, 7, "hi", "k1", 11)).await.unwrap() else {
            panic!("created")
        };
        let again = store.create_chat(with_upload(1, 7, "hi", "k1", 11)).await.unwrap();
        assert_eq!(again, CreateOutcome::Duplicate(chat));
        let taken_upload = store.create_chat(with_upload(1, 7, "again", "k2", 11)).await.unwrap();
        assert_eq!(taken_upload, CreateOutcome::UploadUnavailable(11));
        let finished = store.create_chat(text(1, 7, "lost in a crash", "k3")).await.unwrap();
        assert_eq!(finished, CreateOutcome::Duplicate(lost));
        taken(&log)
    }

    async fn edit_chat() -> Vec<Call> {
        let (store, _, log) = fixed();
        let chat = send(&store, 1, 7, "hello").await;
        taken(&log);
        assert!(matches!(store.edit_chat(chat.chat_id, 7, "hello!".into()).await.unwrap(), ItemOutcome::Done(_)));
        taken(&log)
    }

    async fn retract_chats() -> Vec<Call> {
        let (store, _, log) = fixed();
        store.create_upload(upload(11, 1, 7)).await.unwrap();
        let CreateOutcome::Created(chat) = store.create_chat(with_upload(1, 7, "a file", "", 11)).await.unwrap() else {
            panic!("created")
        };
        taken(&log);
        let outcomes = store.retract_chats(7, vec![chat.chat_id, 999]).await.unwrap();
        assert!(matches!(outcomes[..], [ItemOutcome::Done(_), ItemOutcome::NotFound]));
        taken(&log)
    }

    async fn remove_chats() -> Vec<Call> {
        let (store, _, log) = fixed();
        let chat = send(&store, 1, 7, "a").await;
        taken(&log);
        store.remove_chats(8, vec![chat.chat_id, chat.chat_id, 999]).await.unwrap();
        taken(&log)
    }

    async fn append_events() -> Vec<Call> {
        let (store, _, log) = fixed();
        store.create_upload(upload(11, 1, 7)).await.unwrap();
        taken(&log);
        // an announced event, its redelivery, a channel's deletion (its upload released)
        let first = store.append_events(vec![joined("k1")]).await.unwrap();
        assert_eq!(store.append_events(vec![joined("k1")]).await.unwrap(), first);
        store.append_events(vec![channel_deleted(1)]).await.unwrap();
        taken(&log)
    }

    async fn ack() -> Vec<Call> {
        let (store, _, log) = fixed();
        let a = send(&store, 1, 7, "a").await.chat_id;
        let b = send(&store, 1, 7, "b").await.chat_id;
        taken(&log);
        // a first pointer, moved forward, an older ack ignored
        store.ack(1, 8, a).await.unwrap();
        store.ack(1, 8, b).await.unwrap();
        assert_eq!(store.ack(1, 8, a).await.unwrap().last_read_chat_id, b);
        taken(&log)
    }

    async fn set_cursor() -> Vec<Call> {
        let (store, _, log) = fixed();
        store.set_cursor("publisher", FIRST_ID + 5).await.unwrap();
        taken(&log)
    }

    async fn cursor() -> Vec<Call> {
        let (store, _, log) = fixed();
        store.set_cursor("publisher", FIRST_ID + 5).await.unwrap();
        taken(&log);
        assert_eq!(store.cursor("publisher").await.unwrap(), FIRST_ID + 5);
        taken(&log)
    }

    async fn get_chat() -> Vec<Call> {
        let (store, _, log) = fixed();
        let chat = send(&store, 1, 7, "a").await;
        taken(&log);
        assert_eq!(store.get_chat(chat.chat_id).await.unwrap(), Some(chat));
        taken(&log)
    }

    async fn is_removed() -> Vec<Call> {
        let (store, _, log) = fixed();
        let chat = send(&store, 1, 7, "a").await;
        store.remove_chats(8, vec![chat.chat_id]).await.unwrap();
        taken(&log);
        assert!(store.is_removed(8, chat.chat_id).await.unwrap());
        taken(&log)
    }

    async fn list_chats() -> Vec<Call> {
        let (store, _, log) = fixed();
        let a = send(&store, 1, 7, "a").await.chat_id;
        let b = send(&store, 1, 7, "b").await.chat_id;
        let c = send(&store, 1, 7, "c").await.chat_id;
        store.remove_chats(8, vec![b]).await.unwrap();
        taken(&log);
        // newest first for a viewer who removed one; then oldest first after an id
        let ids = |chats: Vec<ChatRecord>| chats.iter().map(|c| c.chat_id).collect::<Vec<_>>();
        assert_eq!(ids(store.list_chats(1, Range::Before(None), 2, 8).await.unwrap()), vec![c, a]);
        assert_eq!(ids(store.list_chats(1, Range::After(a), 10, 8).await.unwrap()), vec![c]);
        taken(&log)
    }

    async fn list_events() -> Vec<Call> {
        let (store, _, log) = fixed();
        let chat = send(&store, 1, 7, "a").await;
        store.edit_chat(chat.chat_id, 7, "b".into()).await.unwrap();
        taken(&log);
        let events = store.list_events(1, 0, 10).await.unwrap();
        assert_eq!(events.len(), 2);
        taken(&log)
    }

    async fn unread() -> Vec<Call> {
        let (store, _, log) = fixed();
        let a = send(&store, 1, 7, "a").await.chat_id;
        send(&store, 1, 8, "mine").await;
        let c = send(&store, 1, 7, "c").await.chat_id;
        send(&store, 1, 7, "d").await;
        store.ack(1, 8, a).await.unwrap();
        store.remove_chats(8, vec![c]).await.unwrap();
        taken(&log);
        assert_eq!(store.unread(1, 8).await.unwrap().count, 1);
        taken(&log)
    }

    async fn newest_chat_at_or_before() -> Vec<Call> {
        let (store, _, log) = fixed();
        let a = send(&store, 1, 7, "a").await.chat_id;
        send(&store, 1, 7, "b").await;
        taken(&log);
        assert_eq!(store.newest_chat_at_or_before(1, a + 1).await.unwrap(), Some(a));
        taken(&log)
    }

    async fn removed_by() -> Vec<Call> {
        let (store, _, log) = fixed();
        let chat = send(&store, 1, 7, "a").await.chat_id;
        store.remove_chats(8, vec![chat]).await.unwrap();
        store.remove_chats(9, vec![chat]).await.unwrap();
        taken(&log);
        assert_eq!(store.removed_by(chat).await.unwrap(), vec![8, 9]);
        taken(&log)
    }

    async fn scan_chats() -> Vec<Call> {
        let (store, _, log) = fixed();
        let a = send(&store, 2, 7, "a").await.chat_id;
        let b = send(&store, 1, 7, "b").await.chat_id;
        taken(&log);
        let scanned: Vec<u64> = store.scan_chats((0, 0), 10).await.unwrap().iter().map(|c| c.chat_id).collect();
        assert_eq!(scanned, vec![b, a]);
        taken(&log)
    }

    /// The operations delegated to the feed and upload modules (their golden files are theirs),
    /// for the coverage of every statement of the store.
    async fn delegated() -> Vec<Call> {
        let (store, _, log) = fixed();
        let chat = send(&store, 1, 7, "a").await.chat_id;
        store.remove_chats(8, vec![chat]).await.unwrap();
        store.create_upload(upload(11, 1, 7)).await.unwrap();
        store.create_upload(upload(12, 1, 7)).await.unwrap();
        store.create_upload(upload(13, 2, 7)).await.unwrap();
        store.get_upload(11).await.unwrap();
        // a send whose second upload is refused gives the first one back
        let refused = store.create_chat(NewChat {
            attachments: [with_upload(1, 7, "f", "", 11).attachments, with_upload(1, 7, "f", "", 13).attachments]
                .concat(),
            ..text(1, 7, "f", "")
        });
        assert_eq!(refused.await.unwrap(), CreateOutcome::UploadUnavailable(13));
        store.append_events(vec![channel_deleted(2)]).await.unwrap();
        assert_eq!(store.get_upload(13).await.unwrap().map(|u| u.state), Some(UploadState::Reclaiming));
        store.feed(0, 10).await.unwrap();
        store.feed_head().await.unwrap();
        store.feed_count(0, 10).await.unwrap();
        store.channel_deleted(2).await.unwrap();
        store.expire_uploads(NOW + 1, 10).await.unwrap();
        let reclaimable: Vec<u64> = store.reclaimable_uploads(10).await.unwrap().iter().map(|u| u.upload_id).collect();
        store.forget_uploads(reclaimable).await.unwrap();
        taken(&log)
    }

    chatmesh_cql::golden_files!(
        prefix: "",
        statements: super::all_statements(),
        also: [delegated],
        [
        create_chat,
        edit_chat,
        retract_chats,
        remove_chats,
        append_events,
        ack,
        set_cursor,
        cursor,
        get_chat,
        is_removed,
        list_chats,
        list_events,
        unread,
        newest_chat_at_or_before,
        removed_by,
        scan_chats,
        ]
    );

    #[tokio::test]
    async fn every_statement_prepares_on_the_migrated_schema() {
        let (store, _, _) = fixed();
        store.prepare().await.unwrap();
    }

    #[tokio::test]
    async fn an_append_whose_write_was_lost_is_finished_by_its_redelivery() {
        let (store, plain, _) = fixed();
        // the claim an append leaves when its process stops before the write
        let mut event = joined("k1");
        let event_id = store.inner.ids.next();
        event.event.event_id = event_id.to_string();
        let record = ChatRecord::created(event.announcement.clone().unwrap(), store.inner.ids.next());
        let chat_event_id = store.inner.ids.next();
        let claim =
            values!["k1", event_id, 1u64, event.event.encode_to_vec(), chat_event_id, encode_chat(&record).unwrap()];
        assert!(plain.lwt(&CLAIM_EVENT_KEY, claim).await.unwrap());
        assert!(store.list_events(1, 0, 10).await.unwrap().is_empty());

        assert_eq!(store.append_events(vec![joined("k1")]).await.unwrap(), vec![event_id]);
        let events = store.list_events(1, 0, 10).await.unwrap();
        let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
        assert_eq!(ids, vec![event_id.to_string(), chat_event_id.to_string()]);
        assert_eq!(store.get_chat(record.chat_id).await.unwrap(), Some(record));
        assert_eq!(store.feed(0, 10).await.unwrap().len(), 2, "in the feed too");
    }

    #[tokio::test]
    async fn a_lost_send_is_finished_with_its_uploads_or_given_up_when_they_went_elsewhere() {
        let (store, plain, _) = fixed();
        store.create_upload(upload(11, 1, 7)).await.unwrap();
        store.create_upload(upload(12, 1, 7)).await.unwrap();
        // lost before its upload was attached: the retry attaches it and writes the chat
        let lost = stage_lost_send(&store, &plain, with_upload(1, 7, "f", "k1", 11)).await;
        let retried = store.create_chat(with_upload(1, 7, "f", "k1", 11)).await.unwrap();
        assert_eq!(retried, CreateOutcome::Duplicate(lost.clone()));
        assert_eq!(store.get_upload(11).await.unwrap().unwrap().state, UploadState::Attached(lost.chat_id));
        assert_eq!(store.get_chat(lost.chat_id).await.unwrap(), Some(lost));
        // lost, and its upload went to another chat meanwhile: the claim is given up and the
        // retry is a send like any other (here refused: the upload is taken)
        let gone = stage_lost_send(&store, &plain, with_upload(1, 7, "g", "k2", 12)).await;
        let other = store.create_chat(with_upload(1, 7, "other", "", 12)).await.unwrap();
        assert!(matches!(other, CreateOutcome::Created(_)));
        let retried = store.create_chat(with_upload(1, 7, "g", "k2", 12)).await.unwrap();
        assert_eq!(retried, CreateOutcome::UploadUnavailable(12));
        assert_eq!(store.get_chat(gone.chat_id).await.unwrap(), None);
        assert!(matches!(store.create_chat(text(1, 7, "g", "k2")).await.unwrap(), CreateOutcome::Created(_)));
    }

    #[tokio::test]
    async fn a_send_whose_upload_is_refused_leaves_its_key_free() {
        let (store, _, _) = fixed();
        store.create_upload(upload(11, 1, 8)).await.unwrap();
        assert_eq!(
            store.create_chat(with_upload(1, 7, "f", "k1", 11)).await.unwrap(),
            CreateOutcome::UploadUnavailable(11),
            "another's upload"
        );
        assert!(matches!(store.create_chat(text(1, 7, "f", "k1")).await.unwrap(), CreateOutcome::Created(_)));
    }

    #[tokio::test]
    async fn pages_cross_buckets_and_skip_empty_ones() {
        let (store, _, _) = fixed();
        let mut ids = Vec::new();
        // 70 buckets with one chat each (more than a page of buckets), gaps of empty buckets
        for i in 0..70 {
            ids.push(send(&store, 1, 7, &format!("m{i}")).await.chat_id);
            skip_days(&store, if i % 7 == 0 { 25 } else { 10 });
        }
        send(&store, 2, 7, "elsewhere").await;
        let listed = |chats: Vec<ChatRecord>| chats.iter().map(|c| c.chat_id).collect::<Vec<_>>();
        let newest = listed(store.list_chats(1, Range::Before(None), 100, 0).await.unwrap());
        assert_eq!(newest, ids.iter().rev().copied().collect::<Vec<_>>());
        let after = listed(store.list_chats(1, Range::After(ids[3]), 3, 0).await.unwrap());
        assert_eq!(after, ids[4..7]);
        let before = listed(store.list_chats(1, Range::Before(Some(ids[3])), 10, 0).await.unwrap());
        assert_eq!(before, vec![ids[2], ids[1], ids[0]]);
        assert_eq!(store.newest_chat_at_or_before(1, ids[40] + 1).await.unwrap(), Some(ids[40]));
        assert_eq!(store.newest_chat_at_or_before(1, ids[0] - 1).await.unwrap(), None);
        assert_eq!(store.list_events(1, ids[68], 10).await.unwrap().len(), 2, "two created events after");
        let unread = store.unread(1, 8).await.unwrap();
        assert_eq!((unread.count, unread.last_chat_id), (70, ids[69]));
        assert_eq!(store.scan_chats((0, 0), 100).await.unwrap().len(), 71);
    }

    #[tokio::test]
    async fn unread_counts_and_removals_page_through_busy_channels() {
        let (store, _, _) = fixed();
        let mut ids = Vec::new();
        for i in 0..(PAGE + 20) {
            ids.push(send(&store, 1, 7, &format!("m{i}")).await.chat_id);
        }
        store.remove_chats(8, ids[..PAGE + 3].to_vec()).await.unwrap();
        assert_eq!(store.unread(1, 8).await.unwrap().count, 17);
        assert_eq!(store.unread(1, 9).await.unwrap().count, PAGE as u64 + 20);
        let seen = store.list_chats(1, Range::After(0), 10, 8).await.unwrap();
        assert_eq!(seen.iter().map(|c| c.chat_id).collect::<Vec<_>>(), ids[PAGE + 3..PAGE + 13]);
        for user in 100..(100 + PAGE as u64 + 2) {
            store.remove_chats(user, vec![ids[0]]).await.unwrap();
        }
        assert_eq!(store.removed_by(ids[0]).await.unwrap().len(), PAGE + 3);
    }

    #[tokio::test]
    async fn scans_walk_channels_across_slots_and_shards() {
        let (store, _, _) = fixed();
        let channels = [1u64, (3 << 40) + 2, (3 << 40) + 9, (5 << 56) + 1, (127 << 56) + 4];
        let mut expected = Vec::new();
        for channel in channels.iter().rev() {
            let first = send(&store, *channel, 7, "a").await;
            let second = send(&store, *channel, 7, "b").await;
            expected.push((*channel, [first.chat_id, second.chat_id]));
        }
        expected.sort();
        let expected: Vec<u64> = expected.iter().flat_map(|(_, ids)| *ids).collect();
        let all: Vec<u64> = store.scan_chats((0, 0), 100).await.unwrap().iter().map(|c| c.chat_id).collect();
        assert_eq!(all, expected);
        // page by page, resuming after the last (channel, chat) seen
        let mut after = (0, 0);
        let mut paged = Vec::new();
        loop {
            let page = store.scan_chats(after, 3).await.unwrap();
            let Some(last) = page.last() else { break };
            after = (last.channel_id, last.chat_id);
            paged.extend(page.iter().map(|c| c.chat_id));
        }
        assert_eq!(paged, expected);
        assert!(store.scan_chats((channels[2], u64::MAX), 100).await.unwrap().len() == 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_senders_in_one_channel_commit_in_id_order() {
        let store = ScyllaChatStore::new(Cql::memory(MemoryCql::migrated()), Arc::new(IdGenerator::new(1).unwrap()));
        let senders = (0..16).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                for j in 0..8 {
                    store.create_chat(text(1, i, &format!("{i}/{j}"), "")).await.unwrap();
                }
            })
        });
        futures::future::join_all(senders).await.into_iter().for_each(|r| r.unwrap());
        let chats = store.list_chats(1, Range::After(0), 1000, 0).await.unwrap();
        assert_eq!(chats.len(), 128);
        let events = store.list_events(1, 0, 1000).await.unwrap();
        let created: Vec<String> = events
            .iter()
            .map(|e| match &e.payload {
                Some(Payload::Chat(chat)) => chat.chat_id.clone(),
                _ => panic!("a chat event"),
            })
            .collect();
        let ids: Vec<String> = chats.iter().map(|c| c.chat_id.to_string()).collect();
        assert_eq!(created, ids, "chat ids and their events' ids in the same order");
        let stats = store.stats();
        assert_eq!(stats.writes, 128);
        assert!(stats.syncs >= 128 && stats.durable_id > 0);
    }

    #[tokio::test]
    async fn a_failed_write_holds_the_feed_back_until_it_is_settled() {
        let engine = MemoryCql::migrated();
        let store = ScyllaChatStore::new(Cql::memory(engine.clone()), Arc::new(IdGenerator::new(1).unwrap()));
        // a write timeout whose batch is not applied (yet): the caller gets an error ...
        engine.fail_writes(1, false);
        assert!(store.create_chat(crate::store::conformance::text(1, 7, "lost?", "")).await.is_err());
        // ... a later chat in another channel commits at once, with a larger id ...
        let CreateOutcome::Created(later) =
            store.create_chat(crate::store::conformance::text(2, 7, "later", "")).await.unwrap()
        else {
            panic!("created")
        };
        // ... but the feed holds it back while the failed batch may still apply below it
        assert!(store.feed(0, 10).await.unwrap().is_empty(), "nothing passes an unsettled write");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let feed = loop {
            let feed = store.feed(0, 10).await.unwrap();
            if !feed.is_empty() || std::time::Instant::now() > deadline {
                break feed;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let channels: Vec<&str> = feed.iter().map(|e| e.channel_id.as_str()).collect();
        assert_eq!(channels, vec!["1", "2"], "the settled write first, in id order");
        assert_eq!(store.list_chats(1, Range::After(0), 10, 0).await.unwrap().len(), 1);
        assert_eq!(store.get_chat(later.chat_id).await.unwrap().unwrap().text, "later");
    }
}
