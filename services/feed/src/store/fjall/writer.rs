//! The embedded feed store's one writer: a thread that drains the queue of writes into one
//! transaction (group commit), syncs the journal once for the batch, and only then publishes the
//! new read snapshot and answers every caller. Each write runs its read-check-write inside the
//! batch's transaction, seeing the writes before it, so each is atomic; a write that fails is
//! undone there and then, and a failed sync undoes the whole batch.

use std::{
    cell::Cell,
    sync::{Arc, atomic::Ordering},
};

use fjall::{PersistMode, Readable, SingleWriterTxDatabase, SingleWriterWriteTx, Slice};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::{Keyspaces, Ks, Shared, StoreError, SyncHook, backend, encode, id_at};

/// Writes waiting for the writer; senders wait (backpressure) when it is full.
pub(super) const QUEUE: usize = 4096;
/// Writes committed together at most.
const MAX_BATCH: usize = 512;

/// One queued write.
pub(super) type Job = Box<dyn Write>;

pub(super) trait Write: Send {
    /// Runs the write in `batch` (undone there if it fails), keeping its answer for after the sync.
    fn apply(self: Box<Self>, ks: &Keyspaces, batch: &mut Batch<'_>) -> Box<dyn Answer>;
    /// Answers `error` without running.
    fn fail(self: Box<Self>, error: StoreError);
}

/// A write's result, waiting for its batch's sync.
pub(super) trait Answer: Send {
    /// Sends the write's result if `synced` is, else `synced`'s error.
    fn send(self: Box<Self>, synced: Result<(), StoreError>);
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Queues `work`, answering on `reply`.
pub(super) fn job<T, F>(work: F, reply: Reply<T>) -> Job
where
    T: Send + 'static,
    F: FnOnce(&Keyspaces, &mut Batch<'_>) -> Result<T, StoreError> + Send + 'static,
{
    Box::new(Queued { work, reply })
}

struct Queued<T, F> {
    work: F,
    reply: Reply<T>,
}

impl<T, F> Write for Queued<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Keyspaces, &mut Batch<'_>) -> Result<T, StoreError> + Send + 'static,
{
    fn apply(self: Box<Self>, ks: &Keyspaces, batch: &mut Batch<'_>) -> Box<dyn Answer> {
        let Queued { work, reply } = *self;
        let mark = batch.undo.len();
        let out = work(ks, batch);
        if out.is_err() {
            batch.roll_back(mark);
        }
        Box::new(Done { reply, out })
    }

    fn fail(self: Box<Self>, error: StoreError) {
        // why: a caller that gave up (deadline) no longer listens.
        let _ = self.reply.send(Err(error));
    }
}

struct Done<T> {
    reply: Reply<T>,
    out: Result<T, StoreError>,
}

impl<T: Send> Answer for Done<T> {
    fn send(self: Box<Self>, synced: Result<(), StoreError>) {
        // why: a caller that gave up no longer listens; the write stands.
        let _ = self.reply.send(synced.and(self.out));
    }
}

/// One key's value before a write changed it.
struct Undo {
    ks: Ks,
    key: Slice,
    old: Option<Slice>,
}

/// One batch's transaction, remembering every write's previous value so a failed write (back
/// to its mark) or the whole batch can be undone.
pub(super) struct Batch<'a> {
    tx: SingleWriterWriteTx<'a>,
    undo: Vec<Undo>,
}

impl<'a> Batch<'a> {
    /// The batch as it stands, for reads.
    pub(super) fn view(&self) -> &SingleWriterWriteTx<'a> {
        &self.tx
    }

    pub(super) fn get(&self, ks: &Ks, key: &[u8]) -> Result<Option<Slice>, StoreError> {
        self.tx.get(ks, key).map_err(backend)
    }

    pub(super) fn put(&mut self, ks: &Ks, key: impl Into<Slice>, value: impl Into<Slice>) -> Result<(), StoreError> {
        let key = key.into();
        let old = self.get(ks, &key)?;
        self.tx.insert(ks, key.clone(), value);
        self.undo.push(Undo { ks: ks.clone(), key, old });
        Ok(())
    }

    pub(super) fn put_json<T: Serialize>(
        &mut self,
        ks: &Ks,
        key: impl Into<Slice>,
        value: &T,
    ) -> Result<(), StoreError> {
        self.put(ks, key, encode(value)?)
    }

    /// Removes a key; `false` if it was not there.
    pub(super) fn delete(&mut self, ks: &Ks, key: impl Into<Slice>) -> Result<bool, StoreError> {
        let key = key.into();
        let Some(old) = self.get(ks, &key)? else { return Ok(false) };
        self.tx.remove(ks, key.clone());
        self.undo.push(Undo { ks: ks.clone(), key, old: Some(old) });
        Ok(true)
    }

    /// Stores a u64 value, removing the key at 0.
    pub(super) fn set_number(&mut self, ks: &Ks, key: Vec<u8>, n: u64) -> Result<(), StoreError> {
        if n == 0 { self.delete(ks, key).map(drop) } else { self.put(ks, key, n.to_be_bytes()) }
    }

    /// Adds `delta` to a u64 value (0 when absent) and answers the sum.
    pub(super) fn bump(&mut self, ks: &Ks, key: Vec<u8>, delta: i64) -> Result<u64, StoreError> {
        let n = match self.get(ks, &key)? {
            Some(v) => id_at(&v, 0)?,
            None => 0,
        }
        .saturating_add_signed(delta);
        self.set_number(ks, key, n)?;
        Ok(n)
    }

    /// Undoes the writes after `mark`, newest first.
    fn roll_back(&mut self, mark: usize) {
        for Undo { ks, key, old } in self.undo.drain(mark..).rev() {
            match old {
                Some(value) => self.tx.insert(&ks, key, value),
                None => self.tx.remove(&ks, key),
            }
        }
    }
}

/// The writer thread: it alone writes the database.
pub(super) struct Writer {
    db: SingleWriterTxDatabase,
    shared: Arc<Shared>,
    hook: SyncHook,
    /// A failed sync could not be undone either: refuse writes until restarted.
    poisoned: Cell<bool>,
}

impl Writer {
    pub(super) fn new(db: SingleWriterTxDatabase, shared: Arc<Shared>, hook: SyncHook) -> Self {
        Writer { db, shared, hook, poisoned: Cell::new(false) }
    }

    /// Writes batches until every sender of the queue is gone.
    pub(super) fn run(self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            if self.poisoned.get() {
                for job in jobs {
                    job.fail(backend("the feed store needs a restart after a failed sync"));
                }
                continue;
            }
            self.write_batch(jobs);
        }
        tracing::debug!("feed writer stopped");
    }

    fn write_batch(&self, jobs: Vec<Job>) {
        let count = jobs.len();
        let mut batch = Batch { tx: self.db.write_tx().durability(None), undo: Vec::new() };
        let answers: Vec<_> = jobs.into_iter().map(|job| job.apply(&self.shared.ks, &mut batch)).collect();
        let Batch { tx, undo } = batch;
        let synced = tx
            .commit()
            .map_err(backend)
            .and_then(|()| (self.hook)().map_err(backend))
            .and_then(|()| self.db.persist(PersistMode::SyncAll).map_err(backend));
        match synced {
            Ok(()) => {
                *self.shared.snapshot.write().unwrap_or_else(|e| e.into_inner()) = self.db.read_tx();
                self.shared.syncs.fetch_add(1, Ordering::AcqRel);
                answers.into_iter().for_each(|a| a.send(Ok(())));
            }
            Err(e) => {
                tracing::error!(error = ?e, writes = count, "feed sync failed, undoing the batch");
                self.undo(undo);
                let message = format!("not durable: {e}");
                answers.into_iter().for_each(|a| a.send(Err(StoreError::Backend(message.clone()))));
            }
        }
    }

    /// Restores every key the failed batch wrote (readers never saw the batch).
    fn undo(&self, undo: Vec<Undo>) {
        let mut tx = self.db.write_tx().durability(None);
        for Undo { ks, key, old } in undo.into_iter().rev() {
            match old {
                Some(value) => tx.insert(&ks, key, value),
                None => tx.remove(&ks, key),
            }
        }
        let undone = tx.commit().map_err(backend).and_then(|()| self.db.persist(PersistMode::SyncAll).map_err(backend));
        if let Err(e) = undone {
            tracing::error!(error = ?e, "undoing a failed feed batch failed too; refusing writes until restart");
            self.poisoned.set(true);
        }
    }
}
