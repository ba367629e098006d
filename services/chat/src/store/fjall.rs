//! The embedded chat store on fjall, with one writer thread doing group commit: it drains a
//! bounded queue of writes into one transaction, assigns ids in commit order, syncs the journal
//! once for the whole batch, and only then publishes a new read snapshot and answers every
//! caller. Readers always read the latest durable snapshot, so nothing unsynced is ever seen.
//! If a sync fails, the batch is undone and every caller in it gets an error.
//!
//! Keyspaces (key → value):
//! - `channelid_chatid__chat`: channel id ++ chat id (u64 BE) → ChatRecord (JSON)
//! - `chatid__channelid`: chat id → channel id
//! - `senderid_channelid_clientmsgid__chatid`: sender ++ channel ++ client_msg_id → chat id
//! - `channelid_eventid__event`: channel id ++ event id → ChannelEvent (protobuf; chats by id only)
//! - `eventid__channelid`: event id → channel id, or channel id ++ user id for a change private
//!   to that user (the global change feed, in commit order)
//! - `userid_eventid__private`: user id ++ event id → ChannelEvent of a private change (chat.removed)
//! - `eventkey__eventid`: idempotency key of an appended event → event id
//! - `userid_chatid__removed`: user id ++ chat id → () (removed for that user)
//! - `chatid_userid__removed`: chat id ++ user id → () (the same, by chat)
//! - `channelid_userid__pointer`: channel id ++ user id → ReadPointer (JSON)
//! - `uploadid__upload`: upload id → UploadRecord (JSON)
//! - `channelid_uploadid__`: channel id ++ upload id → () (a channel's uploads)
//! - `uploadid__pending`: upload id → () (uploads not yet attached, oldest first)
//! - `uploadid__reclaim`: upload id → () (uploads whose objects are to be deleted)
//! - `meta`: `format_version` → "1"; `cursor:<name>` → event id (u64 BE)

use std::{
    collections::HashSet,
    path::Path,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use async_trait::async_trait;
use chatmesh_api::chat::v1::{ChannelEvent, EventType, channel_event::Payload};
use chatmesh_platform::ids::{IdGenerator, now_ms, unix_ms_of};
use fjall::{KeyspaceCreateOptions, PersistMode, Readable, SingleWriterTxDatabase, SingleWriterTxKeyspace, Snapshot};
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use super::{ChatStore, CreateOutcome, ExternalEvent, ItemOutcome, Range, StoreError, Unread, WriteStats, chat_event};
use crate::model::{ChatKind, ChatRecord, NewChat, ReadPointer, UploadRecord, UploadState};

const FORMAT_VERSION: &str = "1";
/// Writes waiting for the writer; senders wait (backpressure) when it is full.
const QUEUE: usize = 4096;
/// Writes committed together at most.
const MAX_BATCH: usize = 512;

/// Called before each sync; an error fails the sync (tests inject disk failures with it).
pub type SyncHook = Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>;

// Keyspace indexes in `Keyspaces::all`.
const CHATS: usize = 0;
const CHAT_CHANNEL: usize = 1;
const IDEMPOTENCY: usize = 2;
const EVENTS: usize = 3;
const FEED: usize = 4;
const EVENT_KEYS: usize = 5;
const REMOVED: usize = 6;
const POINTERS: usize = 7;
const META: usize = 8;
const PRIVATE: usize = 9;
const REMOVED_BY: usize = 10;
const UPLOADS: usize = 11;
const CHANNEL_UPLOADS: usize = 12;
const PENDING: usize = 13;
const RECLAIM: usize = 14;
const NAMES: [&str; 15] = [
    "channelid_chatid__chat",
    "chatid__channelid",
    "senderid_channelid_clientmsgid__chatid",
    "channelid_eventid__event",
    "eventid__channelid",
    "eventkey__eventid",
    "userid_chatid__removed",
    "channelid_userid__pointer",
    "meta",
    "userid_eventid__private",
    "chatid_userid__removed",
    "uploadid__upload",
    "channelid_uploadid__",
    "uploadid__pending",
    "uploadid__reclaim",
];

#[derive(Clone)]
pub struct FjallChatStore {
    // why: declared first so it drops first; the writer (dropped next) holds the database.
    shared: Arc<Shared>,
    writer: Arc<WriterHandle>,
}

/// The writer thread's queue; dropping the last handle closes the queue and waits for the
/// thread to finish its batch and close the database, so a store can be reopened at once.
struct WriterHandle {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What readers and the writer share.
struct Shared {
    ks: Vec<SingleWriterTxKeyspace>,
    /// The latest durable snapshot.
    snapshot: RwLock<Snapshot>,
    writes: AtomicU64,
    syncs: AtomicU64,
    durable_id: AtomicU64,
}

impl std::fmt::Debug for FjallChatStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallChatStore").field("stats", &self.stats()).finish()
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn key2(a: u64, b: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(16);
    key.extend_from_slice(&a.to_be_bytes());
    key.extend_from_slice(&b.to_be_bytes());
    key
}

fn u64_of(bytes: &[u8]) -> Result<u64, StoreError> {
    bytes.try_into().map(u64::from_be_bytes).map_err(|_| backend("corrupt id"))
}

fn tail_u64(key: &[u8]) -> Result<u64, StoreError> {
    key.get(8..16).map_or(Err(backend("corrupt key")), u64_of)
}

fn idempotency_key(sender: u64, channel: u64, client_msg_id: &str) -> Vec<u8> {
    let mut key = key2(sender, channel);
    key.extend_from_slice(client_msg_id.as_bytes());
    key
}

fn decode_chat(bytes: &[u8]) -> Result<ChatRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(backend)
}

fn decode_upload(bytes: &[u8]) -> Result<UploadRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(backend)
}

impl FjallChatStore {
    /// Opens (or creates) the store in `dir` and starts its writer thread.
    pub fn open(dir: &Path, ids: Arc<IdGenerator>) -> Result<Self, StoreError> {
        Self::open_with_hook(dir, ids, Arc::new(|| Ok(())))
    }

    /// As [`open`](Self::open), calling `hook` before every sync.
    pub fn open_with_hook(dir: &Path, ids: Arc<IdGenerator>, hook: SyncHook) -> Result<Self, StoreError> {
        let db =
            chatmesh_platform::embedded::open_versioned(dir, "chat", FORMAT_VERSION).map_err(StoreError::Backend)?;
        let ks = NAMES
            .iter()
            .map(|name| db.keyspace(name, KeyspaceCreateOptions::default).map_err(backend))
            .collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::new(Shared {
            ks,
            snapshot: RwLock::new(db.read_tx()),
            writes: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            durable_id: AtomicU64::new(0),
        });
        let (jobs, rx) = mpsc::channel(QUEUE);
        let writer = Writer { db, shared: shared.clone(), ids, hook, poisoned: AtomicBool::new(false) };
        let thread =
            std::thread::Builder::new().name("chat-writer".into()).spawn(move || writer.run(rx)).map_err(backend)?;
        Ok(Self { shared, writer: Arc::new(WriterHandle { jobs: Some(jobs), thread: Some(thread) }) })
    }

    /// A store in a fresh temporary folder (tests).
    pub fn temp() -> (tempfile::TempDir, Self) {
        let dir = tempfile::tempdir().expect("temporary folder");
        let ids = Arc::new(IdGenerator::new(1).expect("node id"));
        let store = Self::open(dir.path(), ids).expect("temporary chat store opens");
        (dir, store)
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let jobs = self.writer.jobs.as_ref().ok_or_else(|| backend("the chat writer has stopped"))?;
        jobs.send(make(tx)).await.map_err(|_| backend("the chat writer has stopped"))?;
        rx.await.map_err(|_| backend("the chat writer has stopped"))?
    }

    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Shared, &Snapshot) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let snapshot = shared.snapshot.read().unwrap_or_else(|e| e.into_inner()).clone();
            work(&shared, &snapshot)
        })
        .await
        .map_err(backend)?
    }
}

impl Shared {
    fn chat(&self, snap: &Snapshot, channel_id: u64, chat_id: u64) -> Result<Option<ChatRecord>, StoreError> {
        snap.get(&self.ks[CHATS], key2(channel_id, chat_id)).map_err(backend)?.map(|v| decode_chat(&v)).transpose()
    }

    fn channel_of(&self, snap: &Snapshot, chat_id: u64) -> Result<Option<u64>, StoreError> {
        snap.get(&self.ks[CHAT_CHANNEL], chat_id.to_be_bytes()).map_err(backend)?.map(|v| u64_of(&v)).transpose()
    }

    fn removed(&self, snap: &Snapshot, user: u64, chat_id: u64) -> Result<bool, StoreError> {
        snap.contains_key(&self.ks[REMOVED], key2(user, chat_id)).map_err(backend)
    }

    /// A logged event with its chat as it is now.
    fn hydrate(&self, snap: &Snapshot, bytes: &[u8]) -> Result<ChannelEvent, StoreError> {
        let mut event = ChannelEvent::decode(bytes).map_err(backend)?;
        if let Some(Payload::Chat(stub)) = &event.payload {
            let (channel, chat) = (stub.channel_id.parse().unwrap_or(0), stub.chat_id.parse().unwrap_or(0));
            if let Some(record) = self.chat(snap, channel, chat)? {
                event.payload = Some(Payload::Chat(record.to_pb(None)));
            }
        }
        Ok(event)
    }
}

#[async_trait]
impl ChatStore for FjallChatStore {
    #[tracing::instrument(name = "chat_store.create_chat", skip_all, fields(db.system = "fjall"))]
    async fn create_chat(&self, chat: NewChat) -> Result<CreateOutcome, StoreError> {
        self.submit(|reply| Job::Create(chat, reply)).await
    }

    #[tracing::instrument(name = "chat_store.edit_chat", skip_all, fields(db.system = "fjall"))]
    async fn edit_chat(&self, chat_id: u64, editor: u64, text: String) -> Result<ItemOutcome, StoreError> {
        self.submit(|reply| Job::Edit { chat_id, editor, text, reply }).await
    }

    #[tracing::instrument(name = "chat_store.retract_chats", skip_all, fields(db.system = "fjall"))]
    async fn retract_chats(&self, sender: u64, chat_ids: Vec<u64>) -> Result<Vec<ItemOutcome>, StoreError> {
        self.submit(|reply| Job::Retract { sender, chat_ids, reply }).await
    }

    #[tracing::instrument(name = "chat_store.remove_chats", skip_all, fields(db.system = "fjall"))]
    async fn remove_chats(&self, user: u64, chat_ids: Vec<u64>) -> Result<(), StoreError> {
        self.submit(|reply| Job::Remove { user, chat_ids, reply }).await
    }

    #[tracing::instrument(name = "chat_store.append_events", skip_all, fields(db.system = "fjall"))]
    async fn append_events(&self, events: Vec<ExternalEvent>) -> Result<Vec<u64>, StoreError> {
        self.submit(|reply| Job::Append { events, reply }).await
    }

    #[tracing::instrument(name = "chat_store.ack", skip_all, fields(db.system = "fjall"))]
    async fn ack(&self, channel_id: u64, user: u64, chat_id: u64) -> Result<ReadPointer, StoreError> {
        self.submit(|reply| Job::Ack { channel_id, user, chat_id, reply }).await
    }

    async fn set_cursor(&self, name: &str, event_id: u64) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.submit(|reply| Job::Cursor { name, event_id, reply }).await
    }

    async fn create_upload(&self, upload: UploadRecord) -> Result<(), StoreError> {
        self.submit(|reply| Job::Upload(upload, reply)).await
    }

    async fn expire_uploads(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
        self.submit(|reply| Job::Expire { before_ms, limit, reply }).await
    }

    async fn forget_uploads(&self, upload_ids: Vec<u64>) -> Result<(), StoreError> {
        self.submit(|reply| Job::Forget { upload_ids, reply }).await
    }

    async fn get_upload(&self, upload_id: u64) -> Result<Option<UploadRecord>, StoreError> {
        self.read(move |s, snap| {
            snap.get(&s.ks[UPLOADS], upload_id.to_be_bytes()).map_err(backend)?.map(|v| decode_upload(&v)).transpose()
        })
        .await
    }

    async fn reclaimable_uploads(&self, limit: usize) -> Result<Vec<UploadRecord>, StoreError> {
        self.read(move |s, snap| {
            let mut out = Vec::new();
            for guard in snap.iter(&s.ks[RECLAIM]).take(limit) {
                let key = guard.key().map_err(backend)?;
                if let Some(bytes) = snap.get(&s.ks[UPLOADS], &*key).map_err(backend)? {
                    out.push(decode_upload(&bytes)?);
                }
            }
            Ok(out)
        })
        .await
    }

    #[tracing::instrument(name = "chat_store.get_chat", skip_all, fields(db.system = "fjall"))]
    async fn get_chat(&self, chat_id: u64) -> Result<Option<ChatRecord>, StoreError> {
        self.read(move |s, snap| match s.channel_of(snap, chat_id)? {
            Some(channel) => s.chat(snap, channel, chat_id),
            None => Ok(None),
        })
        .await
    }

    async fn is_removed(&self, user: u64, chat_id: u64) -> Result<bool, StoreError> {
        self.read(move |s, snap| s.removed(snap, user, chat_id)).await
    }

    #[tracing::instrument(name = "chat_store.list_chats", skip_all, fields(db.system = "fjall"))]
    async fn list_chats(
        &self,
        channel_id: u64,
        range: Range,
        limit: usize,
        viewer: u64,
    ) -> Result<Vec<ChatRecord>, StoreError> {
        self.read(move |s, snap| {
            let ks = &s.ks[CHATS];
            let iter: Box<dyn Iterator<Item = fjall::Guard>> = match range {
                Range::Before(before) => {
                    let end = key2(channel_id, before.unwrap_or(u64::MAX));
                    let start = key2(channel_id, 0);
                    match before {
                        Some(_) => Box::new(snap.range(ks, start..end).rev()),
                        None => Box::new(snap.range(ks, start..=end).rev()),
                    }
                }
                Range::After(after) => {
                    Box::new(snap.range(ks, key2(channel_id, after.saturating_add(1))..=key2(channel_id, u64::MAX)))
                }
            };
            let mut out = Vec::new();
            for guard in iter {
                let chat = decode_chat(&guard.value().map_err(backend)?)?;
                if !s.removed(snap, viewer, chat.chat_id)? {
                    out.push(chat);
                    if out.len() == limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    #[tracing::instrument(name = "chat_store.list_events", skip_all, fields(db.system = "fjall"))]
    async fn list_events(
        &self,
        channel_id: u64,
        after_event: u64,
        limit: usize,
    ) -> Result<Vec<ChannelEvent>, StoreError> {
        self.read(move |s, snap| {
            let start = key2(channel_id, after_event.saturating_add(1));
            let end = key2(channel_id, u64::MAX);
            let mut out = Vec::new();
            for guard in snap.range(&s.ks[EVENTS], start..=end).take(limit) {
                out.push(s.hydrate(snap, &guard.value().map_err(backend)?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn feed(&self, after_event: u64, limit: usize) -> Result<Vec<ChannelEvent>, StoreError> {
        self.read(move |s, snap| {
            let mut out = Vec::new();
            for guard in snap.range(&s.ks[FEED], after_event.saturating_add(1).to_be_bytes()..).take(limit) {
                let (key, value) = guard.into_inner().map_err(backend)?;
                let event_id = u64_of(&key)?;
                let stored = match value.len() {
                    8 => snap.get(&s.ks[EVENTS], key2(u64_of(&value)?, event_id)),
                    _ => snap.get(&s.ks[PRIVATE], key2(tail_u64(&value)?, event_id)),
                };
                if let Some(bytes) = stored.map_err(backend)? {
                    out.push(s.hydrate(snap, &bytes)?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn cursor(&self, name: &str) -> Result<u64, StoreError> {
        let key = format!("cursor:{name}");
        self.read(move |s, snap| snap.get(&s.ks[META], key).map_err(backend)?.map_or(Ok(0), |v| u64_of(&v))).await
    }

    #[tracing::instrument(name = "chat_store.unread", skip_all, fields(db.system = "fjall"))]
    async fn unread(&self, channel_id: u64, user: u64) -> Result<Unread, StoreError> {
        self.read(move |s, snap| {
            let pointer: ReadPointer = snap
                .get(&s.ks[POINTERS], key2(channel_id, user))
                .map_err(backend)?
                .map(|v| serde_json::from_slice(&v).map_err(backend))
                .transpose()?
                .unwrap_or_default();
            let ks = &s.ks[CHATS];
            let last_chat_id = match snap.range(ks, key2(channel_id, 0)..=key2(channel_id, u64::MAX)).next_back() {
                Some(guard) => tail_u64(&guard.key().map_err(backend)?)?,
                None => 0,
            };
            let mut count = 0;
            let start = key2(channel_id, pointer.last_read_chat_id.saturating_add(1));
            for guard in snap.range(ks, start..=key2(channel_id, u64::MAX)) {
                let chat = decode_chat(&guard.value().map_err(backend)?)?;
                if chat.sender_id != user
                    && chat.kind == ChatKind::Text
                    && !chat.is_retracted()
                    && !s.removed(snap, user, chat.chat_id)?
                {
                    count += 1;
                }
            }
            Ok(Unread { count, last_chat_id, pointer })
        })
        .await
    }

    async fn newest_chat_at_or_before(&self, channel_id: u64, max_id: u64) -> Result<Option<u64>, StoreError> {
        self.read(move |s, snap| {
            match snap.range(&s.ks[CHATS], key2(channel_id, 0)..=key2(channel_id, max_id)).next_back() {
                Some(guard) => Ok(Some(tail_u64(&guard.key().map_err(backend)?)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn removed_by(&self, chat_id: u64) -> Result<Vec<u64>, StoreError> {
        self.read(move |s, snap| {
            snap.range(&s.ks[REMOVED_BY], key2(chat_id, 0)..=key2(chat_id, u64::MAX))
                .map(|guard| tail_u64(&guard.key().map_err(backend)?))
                .collect()
        })
        .await
    }

    async fn feed_head(&self) -> Result<u64, StoreError> {
        self.read(|s, snap| match snap.iter(&s.ks[FEED]).next_back() {
            Some(guard) => u64_of(&guard.key().map_err(backend)?),
            None => Ok(0),
        })
        .await
    }

    async fn feed_count(&self, after_event: u64, cap: u64) -> Result<u64, StoreError> {
        self.read(move |s, snap| {
            Ok(snap.range(&s.ks[FEED], after_event.saturating_add(1).to_be_bytes()..).take(cap as usize).count() as u64)
        })
        .await
    }

    async fn scan_chats(&self, after: (u64, u64), limit: usize) -> Result<Vec<ChatRecord>, StoreError> {
        self.read(move |s, snap| {
            let start = match after {
                (0, 0) => key2(0, 0),
                (channel, chat) if chat == u64::MAX => key2(channel.saturating_add(1), 0),
                (channel, chat) => key2(channel, chat + 1),
            };
            snap.range(&s.ks[CHATS], start..)
                .take(limit)
                .map(|guard| decode_chat(&guard.value().map_err(backend)?))
                .collect()
        })
        .await
    }

    async fn channel_deleted(&self, channel_id: u64) -> Result<bool, StoreError> {
        self.read(move |s, snap| {
            let newest = snap.range(&s.ks[EVENTS], key2(channel_id, 0)..=key2(channel_id, u64::MAX)).next_back();
            match newest {
                Some(guard) => {
                    let event = ChannelEvent::decode(&*guard.value().map_err(backend)?).map_err(backend)?;
                    Ok(event.r#type() == EventType::ChannelDeleted)
                }
                None => Ok(false),
            }
        })
        .await
    }

    fn chats_estimate(&self) -> u64 {
        self.shared.ks[CHAT_CHANNEL].approximate_len() as u64
    }

    fn stats(&self) -> WriteStats {
        WriteStats {
            writes: self.shared.writes.load(Ordering::Acquire),
            syncs: self.shared.syncs.load(Ordering::Acquire),
            durable_id: self.shared.durable_id.load(Ordering::Acquire),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Job {
    Create(NewChat, Reply<CreateOutcome>),
    Edit { chat_id: u64, editor: u64, text: String, reply: Reply<ItemOutcome> },
    Retract { sender: u64, chat_ids: Vec<u64>, reply: Reply<Vec<ItemOutcome>> },
    Remove { user: u64, chat_ids: Vec<u64>, reply: Reply<()> },
    Append { events: Vec<ExternalEvent>, reply: Reply<Vec<u64>> },
    Ack { channel_id: u64, user: u64, chat_id: u64, reply: Reply<ReadPointer> },
    Cursor { name: String, event_id: u64, reply: Reply<()> },
    Upload(UploadRecord, Reply<()>),
    Expire { before_ms: u64, limit: usize, reply: Reply<usize> },
    Forget { upload_ids: Vec<u64>, reply: Reply<()> },
}

/// An answer computed inside a batch, sent once the batch is durable.
enum Answer {
    Create(Reply<CreateOutcome>, Box<CreateOutcome>),
    Item(Reply<ItemOutcome>, ItemOutcome),
    Items(Reply<Vec<ItemOutcome>>, Vec<ItemOutcome>),
    Unit(Reply<()>),
    Ids(Reply<Vec<u64>>, Vec<u64>),
    Pointer(Reply<ReadPointer>, ReadPointer),
    Count(Reply<usize>, usize),
}

impl Answer {
    fn send(self) {
        // why: a caller that gave up (deadline) no longer listens; the write stands.
        let _ = match self {
            Answer::Create(r, v) => r.send(Ok(*v)).map_err(drop),
            Answer::Item(r, v) => r.send(Ok(v)).map_err(drop),
            Answer::Items(r, v) => r.send(Ok(v)).map_err(drop),
            Answer::Unit(r) => r.send(Ok(())).map_err(drop),
            Answer::Ids(r, v) => r.send(Ok(v)).map_err(drop),
            Answer::Pointer(r, v) => r.send(Ok(v)).map_err(drop),
            Answer::Count(r, v) => r.send(Ok(v)).map_err(drop),
        };
    }

    fn fail(self, error: StoreError) {
        let _ = match self {
            Answer::Create(r, _) => r.send(Err(error)).map_err(drop),
            Answer::Item(r, _) => r.send(Err(error)).map_err(drop),
            Answer::Items(r, _) => r.send(Err(error)).map_err(drop),
            Answer::Unit(r) => r.send(Err(error)).map_err(drop),
            Answer::Ids(r, _) => r.send(Err(error)).map_err(drop),
            Answer::Pointer(r, _) => r.send(Err(error)).map_err(drop),
            Answer::Count(r, _) => r.send(Err(error)).map_err(drop),
        };
    }
}

impl Job {
    fn fail(self, error: StoreError) {
        let _ = match self {
            Job::Create(_, r) => r.send(Err(error)).map_err(drop),
            Job::Edit { reply, .. } => reply.send(Err(error)).map_err(drop),
            Job::Retract { reply, .. } => reply.send(Err(error)).map_err(drop),
            Job::Remove { reply, .. } => reply.send(Err(error)).map_err(drop),
            Job::Append { reply, .. } => reply.send(Err(error)).map_err(drop),
            Job::Ack { reply, .. } => reply.send(Err(error)).map_err(drop),
            Job::Cursor { reply, .. } => reply.send(Err(error)).map_err(drop),
            Job::Upload(_, reply) => reply.send(Err(error)).map_err(drop),
            Job::Expire { reply, .. } => reply.send(Err(error)).map_err(drop),
            Job::Forget { reply, .. } => reply.send(Err(error)).map_err(drop),
        };
    }
}

struct Writer {
    db: SingleWriterTxDatabase,
    shared: Arc<Shared>,
    ids: Arc<IdGenerator>,
    hook: SyncHook,
    /// A failed sync could not be undone either: refuse writes until restarted.
    poisoned: AtomicBool,
}

/// One batch's transaction, remembering each key's value before the batch touched it.
struct Batch<'a> {
    tx: fjall::SingleWriterWriteTx<'a>,
    ks: &'a [SingleWriterTxKeyspace],
    touched: HashSet<(usize, Vec<u8>)>,
    undo: Vec<(usize, Vec<u8>, Option<Vec<u8>>)>,
    max_id: u64,
}

impl Batch<'_> {
    fn get(&self, ks: usize, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tx.get(&self.ks[ks], key).map_err(backend)?.map(|v| v.to_vec()))
    }

    fn remember(&mut self, ks: usize, key: &[u8]) -> Result<(), StoreError> {
        if self.touched.insert((ks, key.to_vec())) {
            let old = self.get(ks, key)?;
            self.undo.push((ks, key.to_vec(), old));
        }
        Ok(())
    }

    fn put(&mut self, ks: usize, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        self.remember(ks, &key)?;
        self.tx.insert(&self.ks[ks], key, value);
        Ok(())
    }

    fn put_chat(&mut self, chat: &ChatRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(chat).map_err(backend)?;
        self.put(CHATS, key2(chat.channel_id, chat.chat_id), bytes)
    }

    fn delete(&mut self, ks: usize, key: Vec<u8>) -> Result<(), StoreError> {
        self.remember(ks, &key)?;
        self.tx.remove(&self.ks[ks], key);
        Ok(())
    }

    fn upload(&self, upload_id: u64) -> Result<Option<UploadRecord>, StoreError> {
        self.get(UPLOADS, &upload_id.to_be_bytes())?.map(|v| decode_upload(&v)).transpose()
    }

    fn put_upload(&mut self, upload: &UploadRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(upload).map_err(backend)?;
        self.put(UPLOADS, upload.upload_id.to_be_bytes().to_vec(), bytes)
    }

    /// Queues an upload's object for deletion; it can no longer be attached.
    fn reclaim(&mut self, mut upload: UploadRecord) -> Result<(), StoreError> {
        if upload.state == UploadState::Reclaiming {
            return Ok(());
        }
        upload.state = UploadState::Reclaiming;
        self.put_upload(&upload)?;
        self.delete(PENDING, upload.upload_id.to_be_bytes().to_vec())?;
        self.put(RECLAIM, upload.upload_id.to_be_bytes().to_vec(), Vec::new())
    }

    fn chat(&self, chat_id: u64) -> Result<Option<ChatRecord>, StoreError> {
        let Some(channel) = self.get(CHAT_CHANNEL, &chat_id.to_be_bytes())? else { return Ok(None) };
        self.get(CHATS, &key2(u64_of(&channel)?, chat_id))?.map(|v| decode_chat(&v)).transpose()
    }

    fn log(&mut self, event: &ChannelEvent) -> Result<(), StoreError> {
        let (channel, event_id): (u64, u64) =
            (event.channel_id.parse().map_err(backend)?, event.event_id.parse().map_err(backend)?);
        self.put(EVENTS, key2(channel, event_id), event.encode_to_vec())?;
        self.put(FEED, event_id.to_be_bytes().to_vec(), channel.to_be_bytes().to_vec())?;
        self.max_id = self.max_id.max(event_id);
        Ok(())
    }
}

impl Writer {
    fn run(self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            metrics::histogram!("chatmesh_chat_write_batch_size").record(jobs.len() as f64);
            metrics::gauge!("chatmesh_chat_write_queue_depth").set(rx.len() as f64);
            if self.poisoned.load(Ordering::Acquire) {
                for job in jobs {
                    job.fail(StoreError::NotDurable("the store needs a restart after a failed sync".into()));
                }
                continue;
            }
            self.write_batch(jobs);
        }
        tracing::debug!("chat writer stopped");
    }

    fn write_batch(&self, jobs: Vec<Job>) {
        let count = jobs.len() as u64;
        let mut batch = Batch {
            tx: self.db.write_tx().durability(None),
            ks: &self.shared.ks,
            touched: HashSet::new(),
            undo: Vec::new(),
            max_id: 0,
        };
        let mut answers = Vec::with_capacity(jobs.len());
        let mut jobs = jobs.into_iter();
        while let Some(job) = jobs.next() {
            match self.apply(&mut batch, job) {
                Ok(answer) => answers.push(answer),
                Err(e) => {
                    // why: a backend error mid-batch leaves the transaction unknown: drop it whole.
                    tracing::error!(error = %e, "chat batch failed");
                    answers.into_iter().for_each(|a: Answer| a.fail(e.clone()));
                    jobs.for_each(|j| j.fail(e.clone()));
                    return;
                }
            }
        }
        let undo = std::mem::take(&mut batch.undo);
        let max_id = batch.max_id;
        if let Err(e) = batch.tx.commit() {
            answers.into_iter().for_each(|a| a.fail(backend(&e)));
            return;
        }
        match (self.hook)().map_err(backend).and_then(|()| self.db.persist(PersistMode::SyncAll).map_err(backend)) {
            Ok(()) => {
                *self.shared.snapshot.write().unwrap_or_else(|e| e.into_inner()) = self.db.read_tx();
                self.shared.syncs.fetch_add(1, Ordering::AcqRel);
                self.shared.writes.fetch_add(count, Ordering::AcqRel);
                self.shared.durable_id.fetch_max(max_id, Ordering::AcqRel);
                answers.into_iter().for_each(Answer::send);
            }
            Err(e) => {
                tracing::error!(error = %e, writes = count, "chat sync failed, undoing the batch");
                self.undo(undo);
                let error = StoreError::NotDurable(e.to_string());
                answers.into_iter().for_each(|a| a.fail(error.clone()));
            }
        }
    }

    /// Restores every key the failed batch touched (readers never saw the batch).
    fn undo(&self, undo: Vec<(usize, Vec<u8>, Option<Vec<u8>>)>) {
        let mut tx = self.db.write_tx().durability(None);
        for (ks, key, old) in undo.into_iter().rev() {
            match old {
                Some(value) => tx.insert(&self.shared.ks[ks], key, value),
                None => tx.remove(&self.shared.ks[ks], key),
            }
        }
        let undone = tx.commit().map_err(backend).and_then(|()| self.db.persist(PersistMode::SyncAll).map_err(backend));
        if let Err(e) = undone {
            tracing::error!(error = %e, "undoing a failed batch failed too; refusing writes until restart");
            self.poisoned.store(true, Ordering::Release);
        }
    }

    fn apply(&self, b: &mut Batch<'_>, job: Job) -> Result<Answer, StoreError> {
        Ok(match job {
            Job::Create(chat, reply) => Answer::Create(reply, Box::new(self.create(b, chat, None)?)),
            Job::Edit { chat_id, editor, text, reply } => Answer::Item(reply, self.edit(b, chat_id, editor, text)?),
            Job::Retract { sender, chat_ids, reply } => {
                let mut outcomes = Vec::with_capacity(chat_ids.len());
                for chat_id in chat_ids {
                    outcomes.push(self.retract(b, sender, chat_id)?);
                }
                Answer::Items(reply, outcomes)
            }
            Job::Remove { user, chat_ids, reply } => {
                for chat_id in chat_ids {
                    self.remove(b, user, chat_id)?;
                }
                Answer::Unit(reply)
            }
            Job::Append { events, reply } => {
                let mut ids = Vec::with_capacity(events.len());
                for event in events {
                    ids.push(self.append(b, event)?);
                }
                Answer::Ids(reply, ids)
            }
            Job::Ack { channel_id, user, chat_id, reply } => {
                let key = key2(channel_id, user);
                let current: ReadPointer = b
                    .get(POINTERS, &key)?
                    .map(|v| serde_json::from_slice(&v).map_err(backend))
                    .transpose()?
                    .unwrap_or_default();
                let pointer = if chat_id > current.last_read_chat_id {
                    let moved = ReadPointer { last_read_chat_id: chat_id, acked_at_ms: now_ms() };
                    b.put(POINTERS, key, serde_json::to_vec(&moved).map_err(backend)?)?;
                    moved
                } else {
                    current
                };
                Answer::Pointer(reply, pointer)
            }
            Job::Cursor { name, event_id, reply } => {
                b.put(META, format!("cursor:{name}").into_bytes(), event_id.to_be_bytes().to_vec())?;
                Answer::Unit(reply)
            }
            Job::Upload(upload, reply) => {
                let id = upload.upload_id.to_be_bytes().to_vec();
                b.put_upload(&upload)?;
                b.put(CHANNEL_UPLOADS, key2(upload.channel_id, upload.upload_id), Vec::new())?;
                b.put(PENDING, id, Vec::new())?;
                Answer::Unit(reply)
            }
            Job::Expire { before_ms, limit, reply } => {
                let last = chatmesh_platform::ids::max_id_at(before_ms);
                let ids: Vec<u64> =
                    b.tx.range(&self.shared.ks[PENDING], ..=last.to_be_bytes().to_vec())
                        .take(limit)
                        .map(|guard| guard.key().map_err(backend).and_then(|k| u64_of(&k)))
                        .collect::<Result<_, _>>()?;
                for id in &ids {
                    if let Some(upload) = b.upload(*id)? {
                        b.reclaim(upload)?;
                    }
                }
                Answer::Count(reply, ids.len())
            }
            Job::Forget { upload_ids, reply } => {
                for id in upload_ids {
                    if let Some(upload) = b.upload(id)? {
                        b.delete(CHANNEL_UPLOADS, key2(upload.channel_id, id))?;
                    }
                    b.delete(UPLOADS, id.to_be_bytes().to_vec())?;
                    b.delete(PENDING, id.to_be_bytes().to_vec())?;
                    b.delete(RECLAIM, id.to_be_bytes().to_vec())?;
                }
                Answer::Unit(reply)
            }
        })
    }

    fn create(&self, b: &mut Batch<'_>, chat: NewChat, event_key: Option<String>) -> Result<CreateOutcome, StoreError> {
        let idem = (!chat.client_msg_id.is_empty())
            .then(|| idempotency_key(chat.sender_id, chat.channel_id, &chat.client_msg_id));
        if let Some(key) = &idem
            && let Some(existing) = b.get(IDEMPOTENCY, key)?
        {
            let existing_id = u64_of(&existing)?;
            return Ok(match b.chat(existing_id)? {
                Some(record) if record.body_hash == chat.body_hash => CreateOutcome::Duplicate(record),
                _ => CreateOutcome::KeyConflict(existing_id),
            });
        }
        // why: every upload is checked before any is attached, so a refused chat attaches none
        let mut uploads = Vec::with_capacity(chat.attachments.len());
        for attachment in &chat.attachments {
            let upload = b.upload(attachment.upload_id)?.filter(|u| {
                u.state == UploadState::Pending && u.uploader_id == chat.sender_id && u.channel_id == chat.channel_id
            });
            let Some(upload) = upload else { return Ok(CreateOutcome::UploadUnavailable(attachment.upload_id)) };
            uploads.push(upload);
        }
        let chat_id = self.ids.next_id();
        for mut upload in uploads {
            upload.state = UploadState::Attached(chat_id);
            b.put_upload(&upload)?;
            b.delete(PENDING, upload.upload_id.to_be_bytes().to_vec())?;
        }
        let record = ChatRecord::created(chat, chat_id);
        b.put_chat(&record)?;
        b.put(CHAT_CHANNEL, chat_id.to_be_bytes().to_vec(), record.channel_id.to_be_bytes().to_vec())?;
        if let Some(key) = idem {
            b.put(IDEMPOTENCY, key, chat_id.to_be_bytes().to_vec())?;
        }
        let event_id = self.ids.next_id();
        let key = event_key.unwrap_or_else(|| format!("chat:{chat_id}:created"));
        b.log(&chat_event(event_id, EventType::ChatCreated, record.sender_id, &record, key))?;
        Ok(CreateOutcome::Created(record))
    }

    fn edit(&self, b: &mut Batch<'_>, chat_id: u64, editor: u64, text: String) -> Result<ItemOutcome, StoreError> {
        let Some(mut chat) = b.chat(chat_id)? else { return Ok(ItemOutcome::NotFound) };
        if chat.sender_id != editor || chat.kind != ChatKind::Text {
            return Ok(ItemOutcome::NotSender);
        }
        if chat.is_retracted() {
            return Ok(ItemOutcome::Retracted);
        }
        let event_id = self.ids.next_id();
        chat.text = text;
        chat.edited_at_ms = Some(unix_ms_of(event_id));
        b.put_chat(&chat)?;
        b.log(&chat_event(
            event_id,
            EventType::ChatEdited,
            editor,
            &chat,
            format!("chat:{chat_id}:edited:{event_id}"),
        ))?;
        Ok(ItemOutcome::Done(Box::new(chat)))
    }

    /// Hides a chat for `user`, once; the change enters the feed privately (for search only).
    fn remove(&self, b: &mut Batch<'_>, user: u64, chat_id: u64) -> Result<(), StoreError> {
        let Some(chat) = b.chat(chat_id)? else { return Ok(()) };
        if b.get(REMOVED, &key2(user, chat_id))?.is_some() {
            return Ok(());
        }
        b.put(REMOVED, key2(user, chat_id), Vec::new())?;
        b.put(REMOVED_BY, key2(chat_id, user), Vec::new())?;
        let event_id = self.ids.next_id();
        let event = chat_event(event_id, EventType::ChatRemoved, user, &chat, format!("chat:{chat_id}:removed:{user}"));
        b.put(PRIVATE, key2(user, event_id), event.encode_to_vec())?;
        b.put(FEED, event_id.to_be_bytes().to_vec(), key2(chat.channel_id, user))?;
        b.max_id = b.max_id.max(event_id);
        Ok(())
    }

    fn retract(&self, b: &mut Batch<'_>, sender: u64, chat_id: u64) -> Result<ItemOutcome, StoreError> {
        let Some(mut chat) = b.chat(chat_id)? else { return Ok(ItemOutcome::NotFound) };
        if chat.sender_id != sender || chat.kind != ChatKind::Text {
            return Ok(ItemOutcome::NotSender);
        }
        if chat.is_retracted() {
            return Ok(ItemOutcome::Retracted);
        }
        let event_id = self.ids.next_id();
        chat.text.clear();
        chat.mentions.clear();
        for attachment in std::mem::take(&mut chat.attachments) {
            if let Some(upload) = b.upload(attachment.upload_id)? {
                b.reclaim(upload)?;
            }
        }
        chat.retracted_at_ms = Some(unix_ms_of(event_id));
        b.put_chat(&chat)?;
        b.log(&chat_event(event_id, EventType::ChatRetracted, sender, &chat, format!("chat:{chat_id}:retracted")))?;
        Ok(ItemOutcome::Done(Box::new(chat)))
    }

    fn append(&self, b: &mut Batch<'_>, external: ExternalEvent) -> Result<u64, StoreError> {
        let key = external.event.idempotency_key.clone().into_bytes();
        if let Some(existing) = b.get(EVENT_KEYS, &key)? {
            return u64_of(&existing);
        }
        let event_id = self.ids.next_id();
        let mut event = external.event;
        event.event_id = event_id.to_string();
        b.log(&event)?;
        if event.r#type() == EventType::ChannelDeleted {
            let channel: u64 = event.channel_id.parse().map_err(backend)?;
            let ids: Vec<u64> =
                b.tx.range(&self.shared.ks[CHANNEL_UPLOADS], key2(channel, 0)..=key2(channel, u64::MAX))
                    .map(|guard| guard.key().map_err(backend).and_then(|k| tail_u64(&k)))
                    .collect::<Result<_, _>>()?;
            for id in ids {
                if let Some(upload) = b.upload(id)? {
                    b.reclaim(upload)?;
                }
            }
        }
        b.put(EVENT_KEYS, key, event_id.to_be_bytes().to_vec())?;
        if let Some(announcement) = external.announcement {
            let announce_key = format!("{}:announcement", event.idempotency_key);
            self.create(b, announcement, Some(announce_key))?;
        }
        Ok(event_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::text;

    crate::chat_store_suite!(FjallChatStore::temp);

    fn with_failing_sync() -> (tempfile::TempDir, FjallChatStore, Arc<AtomicBool>) {
        let dir = tempfile::tempdir().unwrap();
        let fail = Arc::new(AtomicBool::new(false));
        let flag = fail.clone();
        let hook: SyncHook = Arc::new(move || {
            if flag.load(Ordering::Acquire) { Err(std::io::Error::other("injected sync failure")) } else { Ok(()) }
        });
        let store = FjallChatStore::open_with_hook(dir.path(), Arc::new(IdGenerator::new(1).unwrap()), hook).unwrap();
        (dir, store, fail)
    }

    #[tokio::test]
    async fn a_failed_sync_acknowledges_nothing_and_shows_nothing() {
        let (dir, store, fail) = with_failing_sync();
        let kept = store.create_chat(text(1, 7, "kept", "k0")).await.unwrap();
        fail.store(true, Ordering::Release);
        let lost = store.create_chat(text(1, 7, "never acknowledged", "k1")).await;
        assert!(matches!(lost, Err(StoreError::NotDurable(_))), "{lost:?}");
        let edit = store.edit_chat(1, 7, "x".into()).await;
        assert!(edit.is_err());
        fail.store(false, Ordering::Release);

        let visible = store.list_chats(1, Range::After(0), 10, 0).await.unwrap();
        assert_eq!(visible.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(), vec!["kept"]);
        assert_eq!(store.list_events(1, 0, 10).await.unwrap().len(), 1);
        // the key of the failed write is free: a retry creates the chat now
        assert!(matches!(
            store.create_chat(text(1, 7, "never acknowledged", "k1")).await.unwrap(),
            CreateOutcome::Created(_)
        ));
        let CreateOutcome::Created(kept) = kept else { panic!("created") };
        drop(store);
        let reopened = FjallChatStore::open(dir.path(), Arc::new(IdGenerator::new(1).unwrap())).unwrap();
        let after = reopened.list_chats(1, Range::After(0), 10, 0).await.unwrap();
        assert_eq!(after.len(), 2);
        assert_eq!(after[0].chat_id, kept.chat_id);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_senders_share_syncs_and_every_answer_is_durable() {
        let (_dir, store) = FjallChatStore::temp();
        let before = store.stats();
        let senders = (0..64).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut covered = true;
                for j in 0..8 {
                    let outcome = store.create_chat(text(i % 4, i, &format!("{i}/{j}"), "")).await.unwrap();
                    let CreateOutcome::Created(chat) = outcome else { panic!("created") };
                    covered &= store.stats().durable_id >= chat.chat_id;
                }
                covered
            })
        });
        for covered in futures::future::join_all(senders).await {
            assert!(covered.unwrap(), "an answer came before the sync that covers it");
        }
        let after = store.stats();
        let (writes, syncs) = (after.writes - before.writes, after.syncs - before.syncs);
        assert_eq!(writes, 512);
        println!("group commit: {syncs} syncs for {writes} writes from 64 concurrent senders");
        assert!(syncs * 4 <= writes, "group commit: {syncs} syncs for {writes} writes");
    }
}
