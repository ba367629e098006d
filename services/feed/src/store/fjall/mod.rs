//! The embedded feed store on fjall, with one writer thread doing group commit ([`writer`]): it
//! drains a bounded queue of writes into one transaction, each write's read-check-write seeing
//! the writes before it, syncs the journal once for the batch, and only then publishes a new
//! read snapshot and answers every caller. A refused write is undone inside the batch, so it
//! writes nothing; a failed sync undoes the whole batch and every caller in it gets an error.
//! Reads see the latest durable snapshot, each read one snapshot.
//!
//! Ids in keys are u64 big-endian, so keys sort by id; a list reads newest first by walking its
//! range backwards. Keyspaces (key → value):
//! - `statusid__status`: status id → StatusRecord (JSON) of a live status
//! - `statusid__deletedauthorid`: status id → author id (the tombstone a deletion leaves)
//! - `statusid__counts`: status id → likes ++ reposts ++ replies, for every status published
//!   (a tombstone keeps counting the replies still listed under it)
//! - `authorid_statusid__`: → () (a user's live statuses)
//! - `userid__statuscount`: user id → how many live statuses
//! - `tag_statusid__`: tag ++ 0x00 ++ status id → () (the separator sorts a tag before every
//!   longer tag it begins)
//! - `bucket_tag__count`: trend bucket ++ tag → how many live statuses of that bucket carry it
//! - `statusid_replyid__`: → () (a status's replies)
//! - `statusid_repostid__reposterid`: a status's reposts
//! - `statusid_reposterid__repostid`: one user's repost of a status (at most one)
//! - `statusid_likeid__userid`: who liked a status
//! - `userid_likeid__statusid`: what a user liked
//! - `userid_statusid__likeid`: one like, for existence and removal
//! - `userid__likecount`: user id → how many likes
//! - `readerid_statusid__posterid`: home timelines
//! - `readerid__timelinecount`: reader id → how many timeline entries
//! - `readerid__watermark`: reader id → the largest follow id backfilled
//! - `celebrityid__`: → ()
//! - `statusid__fanout`: status id → FanoutJob with its lease owner and end (JSON)
//! - `leaseuntilms_statusid__`: → () (fan-out jobs by lease end, 0 when never leased)
//! - `scheduledid__scheduled`: scheduled id → ScheduledRecord (JSON)
//! - `authorid_scheduledid__`: → () (a user's scheduled statuses)
//! - `publishatms_scheduledid__`: → () (the due index)
//! - `name__ownerid_untilms`: a named lease (the trends lease)
//! - `meta`: `format_version` → "1"; `trends` → TrendsSnapshot (JSON)

mod fanout;
mod likes;
mod schedule;
mod statuses;
#[cfg(test)]
mod tests;
mod timelines;
mod trends;
mod writer;

use std::{
    path::Path,
    sync::{Arc, RwLock, atomic::AtomicU64},
};

use fjall::{Iter, KeyspaceCreateOptions, Readable, SingleWriterTxKeyspace, Slice, Snapshot};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::{mpsc, oneshot};

use self::writer::{Batch, Job, QUEUE, Writer};
use super::StoreError;

const FORMAT_VERSION: &str = "1";
/// The `meta` key of the last computed trends.
const TRENDS: &str = "trends";

type Ks = SingleWriterTxKeyspace;

/// Called before each sync; an error fails the sync (tests inject disk failures with it).
type SyncHook = Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>;

/// The feed store in a local folder (one process).
#[derive(Clone)]
pub struct FjallFeedStore {
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
    ks: Keyspaces,
    /// The latest durable snapshot.
    snapshot: RwLock<Snapshot>,
    /// Batches synced so far.
    syncs: AtomicU64,
}

/// The keyspaces, named in the module doc.
struct Keyspaces {
    statuses: Ks,
    tombstones: Ks,
    counters: Ks,
    user_statuses: Ks,
    user_status_counts: Ks,
    tag_statuses: Ks,
    buckets: Ks,
    replies: Ks,
    reposts: Ks,
    repost_pairs: Ks,
    likes: Ks,
    user_likes: Ks,
    like_pairs: Ks,
    user_like_counts: Ks,
    timelines: Ks,
    timeline_counts: Ks,
    watermarks: Ks,
    celebrities: Ks,
    fanouts: Ks,
    fanout_leases: Ks,
    scheduled: Ks,
    user_scheduled: Ks,
    due: Ks,
    leases: Ks,
    meta: Ks,
}

impl std::fmt::Debug for FjallFeedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallFeedStore").finish_non_exhaustive()
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn stopped() -> StoreError {
    backend("the feed writer has stopped")
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(backend)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(backend)
}

/// Ids joined big-endian: a key that sorts by them in order.
fn key(ids: &[u64]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_be_bytes()).collect()
}

/// The id at byte `offset` of a key or value.
fn id_at(bytes: &[u8], offset: usize) -> Result<u64, StoreError> {
    bytes
        .get(offset..offset + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| backend("corrupt key"))
}

/// `tag ++ 0x00`: the part of `tag_statusid__` keys before the status id.
fn tag_prefix(tag: &str) -> Vec<u8> {
    let mut key = tag.as_bytes().to_vec();
    key.push(0);
    key
}

fn tag_key(tag: &str, status_id: u64) -> Vec<u8> {
    let mut key = tag_prefix(tag);
    key.extend_from_slice(&status_id.to_be_bytes());
    key
}

fn bucket_key(bucket: u64, tag: &str) -> Vec<u8> {
    let mut key = bucket.to_be_bytes().to_vec();
    key.extend_from_slice(tag.as_bytes());
    key
}

fn pairs(iter: impl Iterator<Item = fjall::Guard>, limit: usize) -> Result<Vec<(Slice, Slice)>, StoreError> {
    iter.take(limit).map(|guard| guard.into_inner().map_err(backend)).collect()
}

/// Entries under `prefix` whose next id is below `before` (when given), highest id first.
fn newest_first(
    r: &impl Readable,
    ks: &Ks,
    prefix: Vec<u8>,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<(Slice, Slice)>, StoreError> {
    let iter: Iter = match before {
        Some(before) => {
            let mut end = prefix.clone();
            end.extend_from_slice(&before.to_be_bytes());
            r.range(ks, prefix..end)
        }
        None => r.prefix(ks, prefix),
    };
    pairs(iter.rev(), limit)
}

/// Entries under `prefix`, lowest id first.
fn oldest_first(r: &impl Readable, ks: &Ks, prefix: Vec<u8>, limit: usize) -> Result<Vec<(Slice, Slice)>, StoreError> {
    pairs(r.prefix(ks, prefix), limit)
}

/// Entries whose first id is at most `max`, lowest first.
fn up_to(r: &impl Readable, ks: &Ks, max: u64, limit: usize) -> Result<Vec<(Slice, Slice)>, StoreError> {
    pairs(r.range(ks, ..=key(&[max, u64::MAX])), limit)
}

/// A u64 value, 0 when there is none.
fn number(r: &impl Readable, ks: &Ks, k: &[u8]) -> Result<u64, StoreError> {
    match r.get(ks, k).map_err(backend)? {
        Some(v) => id_at(&v, 0),
        None => Ok(0),
    }
}

fn get_json<T: DeserializeOwned>(r: &impl Readable, ks: &Ks, k: &[u8]) -> Result<Option<T>, StoreError> {
    r.get(ks, k).map_err(backend)?.map(|v| decode(&v)).transpose()
}

fn has(r: &impl Readable, ks: &Ks, k: &[u8]) -> Result<bool, StoreError> {
    r.contains_key(ks, k).map_err(backend)
}

impl FjallFeedStore {
    /// Opens (or creates) the store in `dir`, refusing a store of another format version, and
    /// starts its writer thread.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::start(dir, Arc::new(|| Ok(())))
    }

    /// As [`open`](Self::open), calling `hook` before every sync.
    #[cfg(test)]
    fn open_with_hook(dir: &Path, hook: SyncHook) -> Result<Self, StoreError> {
        Self::start(dir, hook)
    }

    /// A store in a fresh temporary folder (tests).
    #[cfg(test)]
    pub fn temp() -> (tempfile::TempDir, Self) {
        let dir = tempfile::tempdir().expect("temporary folder");
        let store = Self::open(dir.path()).expect("temporary feed store opens");
        (dir, store)
    }

    fn start(dir: &Path, hook: SyncHook) -> Result<Self, StoreError> {
        let db =
            chatmesh_platform::embedded::open_versioned(dir, "feed", FORMAT_VERSION).map_err(StoreError::Backend)?;
        let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).map_err(backend);
        let keyspaces = Keyspaces {
            statuses: ks("statusid__status")?,
            tombstones: ks("statusid__deletedauthorid")?,
            counters: ks("statusid__counts")?,
            user_statuses: ks("authorid_statusid__")?,
            user_status_counts: ks("userid__statuscount")?,
            tag_statuses: ks("tag_statusid__")?,
            buckets: ks("bucket_tag__count")?,
            replies: ks("statusid_replyid__")?,
            reposts: ks("statusid_repostid__reposterid")?,
            repost_pairs: ks("statusid_reposterid__repostid")?,
            likes: ks("statusid_likeid__userid")?,
            user_likes: ks("userid_likeid__statusid")?,
            like_pairs: ks("userid_statusid__likeid")?,
            user_like_counts: ks("userid__likecount")?,
            timelines: ks("readerid_statusid__posterid")?,
            timeline_counts: ks("readerid__timelinecount")?,
            watermarks: ks("readerid__watermark")?,
            celebrities: ks("celebrityid__")?,
            fanouts: ks("statusid__fanout")?,
            fanout_leases: ks("leaseuntilms_statusid__")?,
            scheduled: ks("scheduledid__scheduled")?,
            user_scheduled: ks("authorid_scheduledid__")?,
            due: ks("publishatms_scheduledid__")?,
            leases: ks("name__ownerid_untilms")?,
            meta: ks("meta")?,
        };
        let shared = Arc::new(Shared { ks: keyspaces, snapshot: RwLock::new(db.read_tx()), syncs: AtomicU64::new(0) });
        let (jobs, rx) = mpsc::channel(QUEUE);
        let writer = Writer::new(db, shared.clone(), hook);
        let thread =
            std::thread::Builder::new().name("feed-writer".into()).spawn(move || writer.run(rx)).map_err(backend)?;
        Ok(Self { shared, writer: Arc::new(WriterHandle { jobs: Some(jobs), thread: Some(thread) }) })
    }

    /// Batches synced so far.
    #[cfg(test)]
    fn syncs(&self) -> u64 {
        self.shared.syncs.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Queues `work` for the writer, which runs it in its next batch (undoing it there if it
    /// fails), and waits for its answer, sent once the batch is durable.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Keyspaces, &mut Batch<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let jobs = self.writer.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(writer::job(work, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Runs a read on the latest durable snapshot, off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Keyspaces, &Snapshot) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let snapshot = shared.snapshot.read().unwrap_or_else(|e| e.into_inner()).clone();
            work(&shared.ks, &snapshot)
        })
        .await
        .map_err(backend)?
    }
}

#[cfg(test)]
crate::feed_store_suite!(FjallFeedStore::temp);
