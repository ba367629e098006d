//! The embedded chat store on fjall, with one writer thread doing group commit ([`writer`]): it
//! drains a bounded queue of writes into one transaction, assigns ids in commit order, syncs the
//! journal once for the whole batch, and only then publishes a new read snapshot and answers
//! every caller. Readers ([`read`]) always read the latest durable snapshot, so nothing unsynced
//! is ever seen. If a sync fails, the batch is undone and every caller in it gets an error.
//! The keyspaces are listed in [`keys`].

mod keys;
mod read;
#[cfg(test)]
mod tests;
mod writer;

use std::{
    path::Path,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use async_trait::async_trait;
use chatmesh_api::chat::v1::ChannelEvent;
use chatmesh_platform::ids::IdGenerator;
use fjall::{KeyspaceCreateOptions, SingleWriterTxKeyspace, Snapshot};
use tokio::sync::{mpsc, oneshot};

use self::{
    keys::{CHAT_CHANNEL, NAMES, backend},
    writer::{Job, QUEUE, Writer},
};
use super::{
    ChangeFeed, Chats, CreateOutcome, EventLog, ExternalEvent, ItemOutcome, Range, ReadPointers, StoreError, Unread,
    Uploads, WriteStats,
};
use crate::model::{ChatRecord, NewChat, ReadPointer, UploadRecord};

const FORMAT_VERSION: &str = "1";

/// Called before each sync; an error fails the sync (tests inject disk failures with it).
pub type SyncHook = Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>;

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

impl FjallChatStore {
    /// Opens (or creates) the store in `dir` and starts its writer thread.
    pub fn open(dir: &Path, ids: Arc<IdGenerator>) -> Result<Self, StoreError> {
        Self::start(dir, ids, Arc::new(|| Ok(())))
    }

    /// As [`open`](Self::open), calling `hook` before every sync (tests).
    #[cfg(test)]
    pub fn open_with_hook(dir: &Path, ids: Arc<IdGenerator>, hook: SyncHook) -> Result<Self, StoreError> {
        Self::start(dir, ids, hook)
    }

    fn start(dir: &Path, ids: Arc<IdGenerator>, hook: SyncHook) -> Result<Self, StoreError> {
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
        let writer = Writer::new(db, shared.clone(), ids, hook);
        let thread =
            std::thread::Builder::new().name("chat-writer".into()).spawn(move || writer.run(rx)).map_err(backend)?;
        Ok(Self { shared, writer: Arc::new(WriterHandle { jobs: Some(jobs), thread: Some(thread) }) })
    }

    /// A store in a fresh temporary folder (tests).
    #[cfg(any(test, feature = "testsuite"))]
    pub fn temp() -> (tempfile::TempDir, Self) {
        let dir = tempfile::tempdir().expect("temporary folder");
        let ids = Arc::new(IdGenerator::new(1).expect("node id"));
        let store = Self::open(dir.path(), ids).expect("temporary chat store opens");
        (dir, store)
    }

    /// Queues a write for the writer and waits for its answer (sent once it is durable).
    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let jobs = self.writer.jobs.as_ref().ok_or_else(|| backend("the chat writer has stopped"))?;
        jobs.send(make(tx)).await.map_err(|_| backend("the chat writer has stopped"))?;
        rx.await.map_err(|_| backend("the chat writer has stopped"))?
    }

    /// Runs a read on the latest durable snapshot, off the async threads.
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

#[async_trait]
impl Chats for FjallChatStore {
    #[tracing::instrument(name = "chat_store.create_chat", skip_all, fields(db.system = "fjall"))]
    async fn create_chat(&self, chat: NewChat) -> Result<CreateOutcome, StoreError> {
        self.submit(|reply| Job::Create(chat, reply)).await
    }

    #[tracing::instrument(name = "chat_store.get_chat", skip_all, fields(db.system = "fjall"))]
    async fn get_chat(&self, chat_id: u64) -> Result<Option<ChatRecord>, StoreError> {
        self.read(move |s, snap| s.get_chat(snap, chat_id)).await
    }

    #[tracing::instrument(name = "chat_store.list_chats", skip_all, fields(db.system = "fjall"))]
    async fn list_chats(
        &self,
        channel_id: u64,
        range: Range,
        limit: usize,
        viewer: u64,
    ) -> Result<Vec<ChatRecord>, StoreError> {
        self.read(move |s, snap| s.list_chats(snap, channel_id, range, limit, viewer)).await
    }

    async fn newest_chat_at_or_before(&self, channel_id: u64, max_id: u64) -> Result<Option<u64>, StoreError> {
        self.read(move |s, snap| s.newest_chat_at_or_before(snap, channel_id, max_id)).await
    }

    async fn scan_chats(&self, after: (u64, u64), limit: usize) -> Result<Vec<ChatRecord>, StoreError> {
        self.read(move |s, snap| s.scan_chats(snap, after, limit)).await
    }

    async fn is_removed(&self, user: u64, chat_id: u64) -> Result<bool, StoreError> {
        self.read(move |s, snap| s.removed(snap, user, chat_id)).await
    }

    async fn removed_by(&self, chat_id: u64) -> Result<Vec<u64>, StoreError> {
        self.read(move |s, snap| s.removed_by(snap, chat_id)).await
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
}

#[async_trait]
impl EventLog for FjallChatStore {
    #[tracing::instrument(name = "chat_store.append_events", skip_all, fields(db.system = "fjall"))]
    async fn append_events(&self, events: Vec<ExternalEvent>) -> Result<Vec<u64>, StoreError> {
        self.submit(|reply| Job::Append { events, reply }).await
    }

    #[tracing::instrument(name = "chat_store.list_events", skip_all, fields(db.system = "fjall"))]
    async fn list_events(
        &self,
        channel_id: u64,
        after_event: u64,
        limit: usize,
    ) -> Result<Vec<ChannelEvent>, StoreError> {
        self.read(move |s, snap| s.list_events(snap, channel_id, after_event, limit)).await
    }

    async fn channel_deleted(&self, channel_id: u64) -> Result<bool, StoreError> {
        self.read(move |s, snap| s.channel_deleted(snap, channel_id)).await
    }
}

#[async_trait]
impl ChangeFeed for FjallChatStore {
    async fn feed(&self, after_event: u64, limit: usize) -> Result<Vec<ChannelEvent>, StoreError> {
        self.read(move |s, snap| s.feed(snap, after_event, limit)).await
    }

    async fn feed_head(&self) -> Result<u64, StoreError> {
        self.read(|s, snap| s.feed_head(snap)).await
    }

    async fn feed_count(&self, after_event: u64, cap: u64) -> Result<u64, StoreError> {
        self.read(move |s, snap| s.feed_count(snap, after_event, cap)).await
    }

    async fn cursor(&self, name: &str) -> Result<u64, StoreError> {
        let name = name.to_owned();
        self.read(move |s, snap| s.cursor(snap, &name)).await
    }

    async fn set_cursor(&self, name: &str, event_id: u64) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.submit(|reply| Job::Cursor { name, event_id, reply }).await
    }
}

#[async_trait]
impl ReadPointers for FjallChatStore {
    #[tracing::instrument(name = "chat_store.ack", skip_all, fields(db.system = "fjall"))]
    async fn ack(&self, channel_id: u64, user: u64, chat_id: u64) -> Result<ReadPointer, StoreError> {
        self.submit(|reply| Job::Ack { channel_id, user, chat_id, reply }).await
    }

    #[tracing::instrument(name = "chat_store.unread", skip_all, fields(db.system = "fjall"))]
    async fn unread(&self, channel_id: u64, user: u64) -> Result<Unread, StoreError> {
        self.read(move |s, snap| s.unread(snap, channel_id, user)).await
    }
}

#[async_trait]
impl Uploads for FjallChatStore {
    async fn create_upload(&self, upload: UploadRecord) -> Result<(), StoreError> {
        self.submit(|reply| Job::Upload(upload, reply)).await
    }

    async fn get_upload(&self, upload_id: u64) -> Result<Option<UploadRecord>, StoreError> {
        self.read(move |s, snap| s.get_upload(snap, upload_id)).await
    }

    async fn reclaimable_uploads(&self, limit: usize) -> Result<Vec<UploadRecord>, StoreError> {
        self.read(move |s, snap| s.reclaimable_uploads(snap, limit)).await
    }

    async fn expire_uploads(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
        self.submit(|reply| Job::Expire { before_ms, limit, reply }).await
    }

    async fn forget_uploads(&self, upload_ids: Vec<u64>) -> Result<(), StoreError> {
        self.submit(|reply| Job::Forget { upload_ids, reply }).await
    }
}
