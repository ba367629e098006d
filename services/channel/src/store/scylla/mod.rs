//! The channel store on ScyllaDB. Tables (`crates/cql/migrations/0002_channels.cql`,
//! `0006_channel_queues.cql`):
//! - `channel_members ((channel_id), user_id)`: one partition per channel. The channel record,
//!   its `version` and `pending` (when its last change committed, and the encoded writes it
//!   still makes elsewhere) are STATIC columns; each member is a clustering row, and the head
//!   row (`user_id` = [`rows::HEAD_ROW`], below every user id) is written by every change.
//! - `channels_by_user ((user_id), channel_id DESC)`: copies of the member rows, by user.
//! - `channel_closed_members ((channel_id), user_id)`: copies of the rows of members who closed
//!   the channel for themselves.
//! - `channel_direct_pairs ((low, high))`: the direct channel of a pair.
//! - `channel_outbox_queue ((bucket), seq)` and `channel_outbox_progress ((queue))`: encoded
//!   ChannelEvents in 10-second buckets of their write time, and where relays start (see
//!   `queue`). `channel_outbox ((shard), seq)`, the outbox of older versions, is only drained.
//!
//! A [`Change`] is applied in four steps, serialized per channel within the process:
//! 1. Read the channel partition's static row; finish its `pending` writes if it holds some
//!    (recovery, below); refuse a stale `expected_version` right away.
//! 2. Claim the change's direct pairs: `INSERT ... IF NOT EXISTS` (LWT).
//! 3. Commit: ONE unlogged batch on the channel partition, conditional on `IF version = ?`
//!    (bound null for a new channel: a missing row's columns are null), holding the record (or
//!    its removal), the next version, the head row, the member rows, and `pending`. Refused: the
//!    claims made in step 2 are released (`DELETE ... IF channel_id = ?`) and the answer is
//!    `Conflict`.
//! 4. Finish: the pending writes (memberships, closed members) in logged batches (every one
//!    idempotent), the outbox entries into the queue, then `pending` reduced to the commit time
//!    `IF version = ?` (so a later change's pending is never erased). The change is durable once
//!    step 3 applied: a failure here is logged and the answer is still success.
//!
//! Every pending write carries `USING TIMESTAMP` of its change's commit (`at_us` in `pending`):
//! microseconds from the committing process's clock, but at least one above the previous
//! change's `at_us` (kept in `pending` after finishing), so commit timestamps of one channel only
//! rise, whichever processes commit and however their clocks disagree. A late finisher (a
//! stalled process, a reader, a batchlog replay) therefore always loses to the next change's
//! writes and to the relay's deletes, instead of resurrecting what they removed.
//!
//! Recovery: the next `apply` of the channel finishes an unfinished `pending` before anything
//! else, so a change never commits over an unfinished one; `get_channel` finishes only a pending
//! older than [`READER_FINISHES_AFTER_US`] (its process stopped between steps 3 and 4), and
//! answers the read even if finishing fails.
//!
//! Reading the channel reads the partition from its start (`LIMIT 1`): the first live row
//! carries the static columns. The head row sorts first, so the read stops there and never
//! scans the row tombstones departed members leave (until gc_grace, ten days). `SELECT
//! DISTINCT` would not avoid them: ScyllaDB reads a DISTINCT partition up to its first live row
//! too (one row per partition). A channel created before the head row existed gains it with its
//! next change.
//!
//! Deleting a channel commits the record's removal (static columns null) with a pending that
//! says `purge`: finishing it pages through the member rows (still there, hidden from readers
//! because the channel's `kind` is null), deletes each member's membership and the closed
//! list, then deletes the partition in a batch conditional on the version (with `version` and
//! `pending` set null, so the id could be created again as after fjall's delete).
//!
//! Direct pairs: a claim whose channel was never created (its process stopped between steps 2
//! and 3) would hold the pair forever. A later claimer finding the pair held by a channel that
//! does not exist, and whose id is older than [`changes::ABANDONED_CLAIM_MS`], fences that id (`version
//! = 0` with no record, `IF version = null`, so the stopped batch can never apply), releases the
//! claim and claims again. A younger claim counts as taken: its creation is in flight.
//!
//! Multi-op changes keep the last operation per member (a batch's statements share one
//! timestamp, so two writes of one row would not apply in order). A change that deletes the
//! channel holds no other operation. Ids are stored as `bigint` (they stay below 2^63).

mod changes;
mod clock;
mod queue;
mod rows;
mod statements;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use chatmesh_cql::{Cql, id, values};
use tokio::sync::{Mutex, OnceCell};

use self::{
    changes::Pending,
    clock::Clock,
    queue::Relay,
    rows::{Head, HeadRow, MAX_ID, backend, corrupt, head_of, limit_of, member_of},
    statements::*,
};
use super::{Change, ChannelStore, OutboxEntry, StoreError};
use crate::model::{ChannelRecord, MemberRecord};

/// Stripes of the in-process lock serializing changes to one channel.
const LOCK_STRIPES: u64 = 256;
/// Closed members read per page.
const CLOSED_PAGE: usize = 500;
/// A reader finishes a pending change only once it is this old: until then the process that
/// committed it is finishing it (twice the default request timeout), and the next change of the
/// channel finishes it in any case.
const READER_FINISHES_AFTER_US: i64 = 10_000_000;

#[derive(Clone)]
pub struct ScyllaChannelStore {
    cql: Cql,
    locks: Arc<[Mutex<()>]>,
    clock: Arc<Clock>,
    /// This process's relay position in the outbox queue (one relay per process).
    relay: Arc<Mutex<Relay>>,
    /// Set once the queue's progress row is known to exist (before the first queue write).
    queue_started: Arc<OnceCell<()>>,
}

impl std::fmt::Debug for ScyllaChannelStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaChannelStore").field("cql", &self.cql).finish_non_exhaustive()
    }
}

impl ScyllaChannelStore {
    pub fn new(cql: Cql) -> Self {
        Self::on_clock(cql, Arc::new(Clock::wall()))
    }

    fn on_clock(cql: Cql, clock: Arc<Clock>) -> Self {
        let locks = (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect();
        Self { cql, locks, clock, relay: Arc::default(), queue_started: Arc::default() }
    }

    /// Prepares every statement (on ScyllaDB: fails fast on a schema mismatch).
    pub async fn prepare(&self) -> Result<(), StoreError> {
        self.cql.prepare(STATEMENTS).await.map_err(backend)
    }

    async fn read_head(&self, channel_id: u64) -> Result<Head, StoreError> {
        let row = self.cql.row::<HeadRow>(&GET_CHANNEL, values![channel_id, 1i32]).await.map_err(backend)?;
        head_of(channel_id, row)
    }

    /// The channel's static row, after finishing the pending writes of its last change (a
    /// change must not commit over them).
    async fn settled_head(&self, channel_id: u64) -> Result<Head, StoreError> {
        let head = self.read_head(channel_id).await?;
        let Some(pending) = head.unfinished() else { return Ok(head) };
        let version = head.version.ok_or_else(|| corrupt(channel_id, "pending writes without a version"))?;
        tracing::info!(channel_id, version, "finishing the pending writes of an earlier change");
        self.finish(channel_id, version, pending).await?;
        if pending.purge {
            // why: the channel is gone; a new one of this id still commits after the purge
            let pending = pending.at_us.map(Pending::finished);
            return Ok(Head { pending, ..Head::default() });
        }
        Ok(head)
    }

    /// A reader's view of the channel: it finishes a pending change only when the process that
    /// committed it has had time to (finishing is for changes whose process stopped), and a
    /// failure to finish never fails the read (the change is committed either way).
    async fn read_channel(&self, channel_id: u64) -> Result<Option<ChannelRecord>, StoreError> {
        let head = self.read_head(channel_id).await?;
        let (Some(pending), Some(version)) = (head.unfinished(), head.version) else { return Ok(head.record) };
        let stalled = pending.at_us.is_none_or(|at| self.clock.now_us().saturating_sub(at) >= READER_FINISHES_AFTER_US);
        if stalled {
            tracing::info!(channel_id, version, "finishing the pending writes of a stalled change");
            if let Err(e) = self.finish(channel_id, version, pending).await {
                tracing::warn!(channel_id, version, error = %e, "could not finish a stalled change; the next one will");
            }
        }
        Ok(head.record)
    }
}

#[async_trait]
impl ChannelStore for ScyllaChannelStore {
    #[tracing::instrument(name = "channel_store.apply", skip_all, fields(db.system = "scylladb"))]
    async fn apply(&self, change: Change) -> Result<(), StoreError> {
        let channel_id = change.channel_id;
        // why: changes to one channel from this process queue here instead of racing their LWTs
        let _serial = self.locks[(channel_id % LOCK_STRIPES) as usize].lock().await;
        let committed = self.commit(change).await?;
        if let Some(pending) = &committed.pending
            && let Err(e) = self.finish(channel_id, committed.version, pending).await
        {
            // why: the change is durable and its pending writes are finished by the next read or
            // change of the channel; an error would tell the caller it did not happen
            let version = committed.version;
            tracing::warn!(channel_id, version, error = %e, "a committed change's other writes wait for recovery");
        }
        Ok(())
    }

    #[tracing::instrument(name = "channel_store.get_channel", skip_all, fields(db.system = "scylladb"))]
    async fn get_channel(&self, channel_id: u64) -> Result<Option<ChannelRecord>, StoreError> {
        self.read_channel(channel_id).await
    }

    #[tracing::instrument(name = "channel_store.get_member", skip_all, fields(db.system = "scylladb"))]
    async fn get_member(&self, channel_id: u64, user_id: u64) -> Result<Option<MemberRecord>, StoreError> {
        // why: no user id is stored above MAX_ID (as a bigint it would be negative: the head row's
        // place)
        if user_id > MAX_ID {
            return Ok(None);
        }
        let row = self
            .cql
            .row::<(String, i64, i64, bool, i64, Option<String>)>(&GET_MEMBER, values![channel_id, user_id])
            .await
            .map_err(backend)?;
        match row {
            // why: no kind: the channel is being deleted; its member rows go last
            Some((role, joined, invited_by, closed, closed_at, Some(_))) => {
                member_of(channel_id, user_id, (role, joined, invited_by, closed, closed_at)).map(Some)
            }
            _ => Ok(None),
        }
    }

    #[tracing::instrument(name = "channel_store.list_members", skip_all, fields(db.system = "scylladb"))]
    async fn list_members(
        &self,
        channel_id: u64,
        after_user: Option<u64>,
        limit: usize,
    ) -> Result<Vec<MemberRecord>, StoreError> {
        let from = after_user.map_or(0, |u| u.saturating_add(1));
        if limit == 0 || from > MAX_ID {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, String, i64, i64, bool, i64, Option<String>)> =
            self.cql.rows(&LIST_MEMBERS, values![channel_id, from, limit_of(limit)]).await.map_err(backend)?;
        // why: no kind: the channel is being deleted; its member rows go last
        if rows.first().is_none_or(|row| row.6.is_none()) {
            return Ok(Vec::new());
        }
        rows.into_iter()
            .map(|(user, role, joined, invited_by, closed, closed_at, _)| {
                member_of(channel_id, id(user), (role, joined, invited_by, closed, closed_at))
            })
            .collect()
    }

    #[tracing::instrument(name = "channel_store.list_memberships", skip_all, fields(db.system = "scylladb"))]
    async fn list_memberships(
        &self,
        user_id: u64,
        before_channel: Option<u64>,
        limit: usize,
    ) -> Result<Vec<MemberRecord>, StoreError> {
        let up_to = match before_channel {
            None => MAX_ID,
            Some(0) => return Ok(Vec::new()),
            Some(before) => (before - 1).min(MAX_ID),
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, String, i64, i64, bool, i64)> =
            self.cql.rows(&LIST_MEMBERSHIPS, values![user_id, up_to, limit_of(limit)]).await.map_err(backend)?;
        rows.into_iter()
            .map(|(channel, role, joined, invited_by, closed, closed_at)| {
                member_of(id(channel), user_id, (role, joined, invited_by, closed, closed_at))
            })
            .collect()
    }

    #[tracing::instrument(name = "channel_store.list_closed_members", skip_all, fields(db.system = "scylladb"))]
    async fn list_closed_members(&self, channel_id: u64) -> Result<Vec<MemberRecord>, StoreError> {
        // why: paged, so a channel with many closed members never needs one unbounded read
        let mut out = Vec::new();
        let mut after = -1i64;
        loop {
            let rows: Vec<(i64, String, i64, i64, bool, i64)> =
                self.cql.rows(&LIST_CLOSED, values![channel_id, after, CLOSED_PAGE as i32]).await.map_err(backend)?;
            let full = rows.len() == CLOSED_PAGE;
            for (user, role, joined, invited_by, closed, closed_at) in rows {
                after = user;
                out.push(member_of(channel_id, id(user), (role, joined, invited_by, closed, closed_at))?);
            }
            if !full {
                return Ok(out);
            }
        }
    }

    #[tracing::instrument(name = "channel_store.find_direct", skip_all, fields(db.system = "scylladb"))]
    async fn find_direct(&self, low: u64, high: u64) -> Result<Option<u64>, StoreError> {
        let row = self.cql.row::<(i64,)>(&FIND_DIRECT, values![low, high]).await.map_err(backend)?;
        Ok(row.map(|(channel,)| id(channel)))
    }

    #[tracing::instrument(name = "channel_store.list_outbox", skip_all, fields(db.system = "scylladb"))]
    async fn list_outbox(&self, after_seq: Option<u64>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.list_queue(after_seq, limit).await
    }

    #[tracing::instrument(name = "channel_store.delete_outbox", skip_all, fields(db.system = "scylladb"))]
    async fn delete_outbox(&self, seqs: &[u64]) -> Result<(), StoreError> {
        self.delete_listed(seqs).await
    }
}
