//! Fan-out jobs, and the queues their claims (and the due scheduled statuses) are read from.
//!
//! **Queues.** A queue's entries live in time buckets (`fanout_queue ((bucket), status_id)` by the
//! 10 seconds of the moment a job is written; `scheduled_due` by the minute of a publish time),
//! each bucket listed once in `feed_queue_buckets`. `feed_queue_progress` holds the queue's first
//! open bucket: every bucket before it is *closed* (it ended [`LATE_MS`] ago, so nothing more is
//! written into it while pods' clocks agree within 20 s and requests take at most 10 s) and holds
//! nothing pending. Readers walk the listed buckets from there, so they never scan the tombstones
//! of entries done, and raise it (`IF first_bucket = ?`) past closed buckets they found with
//! nothing pending, dropping those buckets' listing.
//!
//! **Jobs.** `fanout_jobs ((status_id))` is the job (LWT only). Inserting writes the queue row,
//! then the job `IF NOT EXISTS` (a queue row without its job is stale and dropped once its bucket
//! is closed; a job without a queue row could never be claimed). A claim leases a job whose
//! lease ran out with `IF lease_until_ms <= ? AND queue_bucket = ?`: of several claimers one
//! applies. A job found in a closed bucket is moved by its claim to the current bucket (queue row
//! first, then the lease naming it, then the old row deleted), so a job no worker finishes never
//! holds the progress back. Finishing deletes the job `IF EXISTS`, then its queue row.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use chatmesh_cql::values;

use super::{ScyllaFeedStore, backend, big, corrupt, statements::*};
use crate::{
    model::FanoutJob,
    store::{FanoutQueue, StoreError},
};

/// How long after its end a queue bucket may still get entries: then it is closed.
pub(super) const LATE_MS: u64 = 30_000;

/// A queue of entries by time bucket (see the module doc).
#[derive(Debug)]
pub(super) struct Queue {
    /// Its name in `feed_queue_buckets` and `feed_queue_progress`.
    pub(super) name: &'static str,
    pub(super) width_ms: u64,
}

pub(super) static FANOUT_QUEUE: Queue = Queue { name: "fanout", width_ms: 10_000 };
pub(super) static DUE_QUEUE: Queue = Queue { name: "scheduled", width_ms: 60_000 };

impl Queue {
    pub(super) fn bucket(&self, ms: u64) -> i64 {
        big(ms / self.width_ms)
    }

    /// Whether nothing more is written into `bucket` at `now_ms`.
    pub(super) fn closed(&self, bucket: i64, now_ms: u64) -> bool {
        bucket < self.first_open(now_ms)
    }

    /// The first bucket not closed at `now_ms`.
    pub(super) fn first_open(&self, now_ms: u64) -> i64 {
        self.bucket(now_ms.saturating_sub(LATE_MS))
    }
}

/// How far a walk of a queue's listed buckets may raise its progress: past the buckets it scanned
/// whole and found closed and holding nothing pending, and the unlisted (empty) closed ones
/// between them.
#[derive(Debug)]
pub(super) struct Advance {
    from: i64,
    to: i64,
    /// The first bucket not closed.
    open: i64,
    blocked: bool,
}

impl Advance {
    pub(super) fn new(from: i64, open: i64) -> Self {
        Advance { from, to: from, open, blocked: false }
    }

    /// The walk scanned `bucket` (the next listed one); `pending`: it holds something not done
    /// (or was not scanned whole).
    pub(super) fn scanned(&mut self, bucket: i64, pending: bool) {
        if self.blocked {
            return;
        }
        if !pending && bucket < self.open {
            self.to = bucket + 1;
        } else {
            self.to = self.to.max(bucket.min(self.open));
            self.blocked = true;
        }
    }

    /// The walk stopped before `bucket`.
    pub(super) fn stopped(&mut self, bucket: i64) {
        self.scanned(bucket, true);
    }

    /// The walk met every listed bucket.
    pub(super) fn finished(&mut self) {
        self.stopped(self.open);
    }
}

/// `fanout_jobs` as read: author, page token, pages done, lease end, queue bucket.
type JobRow = (i64, String, i64, i64, i64);

impl ScyllaFeedStore {
    pub(super) async fn progress(&self, queue: &Queue) -> Result<Option<i64>, StoreError> {
        let row: Option<(Option<i64>,)> = self.cql.row(&GET_PROGRESS, values![queue.name]).await.map_err(backend)?;
        Ok(row.and_then(|(b,)| b))
    }

    /// The queue's progress, starting it at `bucket` when it has none.
    pub(super) async fn start_progress(&self, queue: &Queue, bucket: i64) -> Result<i64, StoreError> {
        if self.cql.lwt(&START_PROGRESS, values![queue.name, bucket]).await.map_err(backend)? {
            return Ok(bucket);
        }
        self.progress(queue).await?.ok_or_else(|| corrupt(format!("queue {}: no progress", queue.name)))
    }

    /// Lists `bucket` in the queue, once per process and bucket.
    pub(super) async fn list_queue_bucket(&self, queue: &Queue, bucket: i64) -> Result<(), StoreError> {
        if self.listed.lock().expect("listed buckets").get(queue.name) == Some(&bucket) {
            return Ok(());
        }
        self.cql.execute(&PUT_QUEUE_BUCKET, values![queue.name, bucket]).await.map_err(backend)?;
        self.listed.lock().expect("listed buckets").insert(queue.name, bucket);
        Ok(())
    }

    /// One page of the queue's listed buckets in `from..=to`.
    pub(super) async fn queue_buckets(&self, queue: &Queue, from: i64, to: i64) -> Result<Vec<i64>, StoreError> {
        let values = values![queue.name, from, to, self.page];
        let rows: Vec<(i64,)> = self.cql.rows(&QUEUE_BUCKETS, values).await.map_err(backend)?;
        Ok(rows.into_iter().map(|(b,)| b).collect())
    }

    /// Raises the queue's progress as far as the walk allows (another reader raising it first
    /// wins), and drops the listing of the buckets passed.
    pub(super) async fn advance(&self, queue: &Queue, advance: Advance) -> Result<(), StoreError> {
        if advance.to <= advance.from {
            return Ok(());
        }
        let values = values![advance.to, queue.name, advance.from];
        if self.cql.lwt(&ADVANCE_PROGRESS, values).await.map_err(backend)? {
            self.cql.execute(&DROP_QUEUE_BUCKETS, values![queue.name, advance.to]).await.map_err(backend)?;
        }
        Ok(())
    }

    /// Queues a job for its status (see the module doc).
    pub(super) async fn enqueue(&self, job: &FanoutJob) -> Result<(), StoreError> {
        let now = (self.clock)();
        let bucket = FANOUT_QUEUE.bucket(now);
        if !self.fanout_started.load(Ordering::Acquire) {
            // why LATE_MS back: a pod whose clock is behind still writes at or after it
            self.start_progress(&FANOUT_QUEUE, FANOUT_QUEUE.bucket(now.saturating_sub(LATE_MS))).await?;
            self.fanout_started.store(true, Ordering::Release);
        }
        self.list_queue_bucket(&FANOUT_QUEUE, bucket).await?;
        self.cql.execute(&QUEUE_JOB, values![bucket, job.status_id]).await.map_err(backend)?;
        // never leased: owner 0 until 0
        let values =
            values![job.status_id, job.author_id, &job.page_token, i64::from(job.pages_done), 0u64, 0u64, bucket];
        self.cql.lwt(&INSERT_JOB, values).await.map_err(backend)?;
        Ok(())
    }

    async fn job(&self, status_id: u64) -> Result<Option<JobRow>, StoreError> {
        self.cql.row(&GET_JOB, values![status_id]).await.map_err(backend)
    }

    /// Forgets a status's job: the job, then its queue row.
    pub(super) async fn forget_job(&self, status_id: u64) -> Result<(), StoreError> {
        let Some((.., queue_bucket)) = self.job(status_id).await? else { return Ok(()) };
        self.cql.lwt(&DELETE_JOB, values![status_id]).await.map_err(backend)?;
        self.cql.execute(&UNQUEUE_JOB, values![queue_bucket, status_id]).await.map_err(backend)
    }

    /// Claims the jobs of one bucket whose lease ran out, into `claimed` until it holds `limit`;
    /// whether the bucket holds a job still pending there (or was not scanned whole).
    #[allow(clippy::too_many_arguments)]
    async fn claim_bucket(
        &self,
        bucket: i64,
        owner: u64,
        now_ms: u64,
        lease_until_ms: u64,
        limit: usize,
        claimed: &mut Vec<FanoutJob>,
    ) -> Result<bool, StoreError> {
        let wall = (self.clock)();
        let closed = FANOUT_QUEUE.closed(bucket, wall);
        let current = FANOUT_QUEUE.bucket(wall);
        let mut pending = false;
        let mut after = -1i64;
        loop {
            let values = values![bucket, after, self.page];
            let rows: Vec<(i64,)> = self.cql.rows(&QUEUED_JOBS, values).await.map_err(backend)?;
            for &(status_id,) in &rows {
                let status_id = chatmesh_cql::id(status_id);
                let stale = match self.job(status_id).await? {
                    Some((.., queue_bucket)) if queue_bucket != bucket => true,
                    None => true,
                    Some((author_id, page_token, pages_done, lease_until, _)) => {
                        if chatmesh_cql::id(lease_until) > now_ms {
                            // leased
                            pending = true;
                            continue;
                        }
                        if claimed.len() >= limit {
                            return Ok(true);
                        }
                        let to = if closed { current } else { bucket };
                        if to != bucket {
                            self.list_queue_bucket(&FANOUT_QUEUE, to).await?;
                            self.cql.execute(&QUEUE_JOB, values![to, status_id]).await.map_err(backend)?;
                        }
                        let values = values![owner, big(lease_until_ms), to, status_id, big(now_ms), bucket];
                        if !self.cql.lwt(&CLAIM_JOB, values).await.map_err(backend)? {
                            // another claimer (or the job's inserter) leased it first
                            pending = true;
                            continue;
                        }
                        let pages_done = u32::try_from(pages_done)
                            .map_err(|_| corrupt(format!("job {status_id}: pages_done {pages_done}")))?;
                        claimed.push(FanoutJob {
                            status_id,
                            author_id: chatmesh_cql::id(author_id),
                            page_token,
                            pages_done,
                        });
                        // moved: its old row is stale now
                        to != bucket
                    }
                };
                if !stale {
                    pending = true;
                } else if closed {
                    // why only a closed bucket's: an open one may hold a job still being inserted
                    self.cql.execute(&UNQUEUE_JOB, values![bucket, status_id]).await.map_err(backend)?;
                }
            }
            match rows.last() {
                Some(&(last,)) if rows.len() >= self.page as usize => after = last,
                _ => return Ok(pending),
            }
        }
    }
}

#[async_trait]
impl FanoutQueue for ScyllaFeedStore {
    #[tracing::instrument(name = "feed_store.claim_fanouts", skip_all, fields(db.system = "scylla", %owner))]
    async fn claim_fanouts(
        &self,
        owner: u64,
        now_ms: u64,
        lease_until_ms: u64,
        limit: usize,
    ) -> Result<Vec<FanoutJob>, StoreError> {
        let mut claimed = Vec::new();
        if limit == 0 {
            return Ok(claimed);
        }
        let Some(first) = self.progress(&FANOUT_QUEUE).await? else { return Ok(claimed) };
        let now = (self.clock)();
        let last = FANOUT_QUEUE.bucket(now).max(first);
        let mut advance = Advance::new(first, FANOUT_QUEUE.first_open(now));
        let mut from = first;
        'walk: loop {
            let buckets = self.queue_buckets(&FANOUT_QUEUE, from, last).await?;
            for &bucket in &buckets {
                if claimed.len() >= limit {
                    advance.stopped(bucket);
                    break 'walk;
                }
                let pending = self.claim_bucket(bucket, owner, now_ms, lease_until_ms, limit, &mut claimed).await?;
                advance.scanned(bucket, pending);
            }
            match buckets.last() {
                Some(&b) if buckets.len() >= self.page as usize => from = b + 1,
                _ => {
                    advance.finished();
                    break;
                }
            }
        }
        self.advance(&FANOUT_QUEUE, advance).await?;
        Ok(claimed)
    }

    #[tracing::instrument(name = "feed_store.lease_fanout", skip_all, fields(db.system = "scylla", %status_id))]
    async fn lease_fanout(&self, status_id: u64, owner: u64, lease_until_ms: u64) -> Result<bool, StoreError> {
        let values = values![owner, big(lease_until_ms), status_id];
        self.cql.lwt(&LEASE_JOB, values).await.map_err(backend)
    }

    #[tracing::instrument(name = "feed_store.advance_fanout", skip_all, fields(db.system = "scylla", status_id = job.status_id))]
    async fn advance_fanout(&self, job: &FanoutJob) -> Result<(), StoreError> {
        let values = values![&job.page_token, i64::from(job.pages_done), job.status_id];
        // not applied: the job is gone and stays so
        self.cql.lwt(&ADVANCE_JOB, values).await.map_err(backend).map(drop)
    }

    #[tracing::instrument(name = "feed_store.finish_fanout", skip_all, fields(db.system = "scylla", %status_id))]
    async fn finish_fanout(&self, status_id: u64) -> Result<(), StoreError> {
        self.forget_job(status_id).await
    }
}
