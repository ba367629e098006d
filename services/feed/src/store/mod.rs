//! The feed store, in domain types: statuses with their lists and counters ([`Statuses`]),
//! likes ([`Likes`]), home timelines ([`Timelines`]), fan-out jobs ([`FanoutQueue`]),
//! scheduled statuses ([`Schedule`]) and trends ([`Trends`]); [`FeedStore`] is all of them.
//! Every counter is the length of the list it counts, written in the same atomic step as the
//! list entry, so concurrent likes, reposts and deletions leave them equal.
//!
//! Lists are ordered by time-ordered ids and read newest first, after the id `before` when
//! given (a page cursor).
//!
//! Backends: [`FjallFeedStore`] (embedded, one process) and [`ScyllaFeedStore`] (ScyllaDB).

#[cfg(test)]
#[doc(hidden)]
pub mod conformance;
mod fjall;
mod scylla;

use async_trait::async_trait;

pub use self::{fjall::FjallFeedStore, scylla::ScyllaFeedStore};
use crate::model::{Edge, FanoutJob, ScheduledRecord, StatusRecord, Stored, TimelineEntry, TrendsSnapshot};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The status a write needs (the one replied to, reposted or liked) is missing or deleted.
    #[error("status {0} not found")]
    StatusNotFound(u64),
    /// The author already reposts this status: the existing repost's id.
    #[error("already reposted as {0}")]
    AlreadyReposted(u64),
    #[error("{0}")]
    Backend(String),
}

/// Everything the feed service keeps.
pub trait FeedStore: Statuses + Likes + Timelines + FanoutQueue + Schedule + Trends {}

impl<T: Statuses + Likes + Timelines + FanoutQueue + Schedule + Trends> FeedStore for T {}

/// Published statuses and what hangs off them: a user's list and count, tags' lists and
/// trend buckets, a status's replies and reposts with their counts.
#[async_trait]
pub trait Statuses: Send + Sync + 'static {
    /// Publishes a status in one atomic write: the record, its author's list and count, each
    /// tag's list and its count in the status's trend bucket; for a reply the referenced
    /// status's reply list and count, for a repost its repost list and count and the
    /// (original, author) pair; and `fanout`, when given, as a pending job.
    /// Refused with [`StoreError::StatusNotFound`] when the referenced status is missing or
    /// deleted, and [`StoreError::AlreadyReposted`] when the author already reposts it —
    /// nothing is written then.
    async fn insert_status(&self, status: &StatusRecord, fanout: Option<&FanoutJob>) -> Result<(), StoreError>;
    /// Statuses by id, in order: live, a tombstone, or `None` for an id never published.
    async fn get_statuses(&self, status_ids: &[u64]) -> Result<Vec<Option<Stored>>, StoreError>;
    /// Deletes a live status: leaves a tombstone and takes it out of its author's list and
    /// count, its tags' lists and trend bucket counts, the referenced status's reply or repost
    /// list and count, every like (each liker's list and like count), and its pending fan-out.
    /// Reposts of it are deleted the same way. Answers the deleted record; `None` (and nothing
    /// changes) when it was missing or already deleted.
    async fn delete_status(&self, status_id: u64) -> Result<Option<StatusRecord>, StoreError>;
    /// A user's statuses (ids), newest first.
    async fn list_user_statuses(&self, user_id: u64, before: Option<u64>, limit: usize)
    -> Result<Vec<u64>, StoreError>;
    /// How many live statuses a user has: the length of [`Statuses::list_user_statuses`].
    async fn count_user_statuses(&self, user_id: u64) -> Result<u64, StoreError>;
    /// Replies to a status (ids), newest first.
    async fn list_replies(&self, status_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<u64>, StoreError>;
    /// Statuses carrying a (lowercase) tag (ids), newest first.
    async fn list_tag_statuses(&self, tag: &str, before: Option<u64>, limit: usize) -> Result<Vec<u64>, StoreError>;
    /// Reposts of a status, newest first: the repost's id and its author.
    async fn list_reposts(&self, status_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<Edge>, StoreError>;
    /// For each status id, the id of `user_id`'s repost of it, if any.
    async fn reposts_by(&self, user_id: u64, status_ids: &[u64]) -> Result<Vec<Option<u64>>, StoreError>;
}

/// Likes: who liked a status, what a user liked, and the counts.
#[async_trait]
pub trait Likes: Send + Sync + 'static {
    /// Records the like (listed under `like_id` on both sides) and counts it on the status and
    /// the user, in one atomic write; `false` (nothing changes) if it already existed.
    /// [`StoreError::StatusNotFound`] when the status is missing or deleted.
    async fn like(&self, user_id: u64, status_id: u64, like_id: u64) -> Result<bool, StoreError>;
    /// Removes the like and its counts; `false` if there was none.
    async fn unlike(&self, user_id: u64, status_id: u64) -> Result<bool, StoreError>;
    /// Who liked a status, newest like first: the like's id and the user.
    async fn list_likes(&self, status_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<Edge>, StoreError>;
    /// What a user liked, newest like first: the like's id and the status.
    async fn list_user_likes(&self, user_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<Edge>, StoreError>;
    /// How many likes a user has: the length of [`Likes::list_user_likes`].
    async fn count_user_likes(&self, user_id: u64) -> Result<u64, StoreError>;
    /// For each status id, whether `user_id` likes it.
    async fn liked_by(&self, user_id: u64, status_ids: &[u64]) -> Result<Vec<bool>, StoreError>;
}

/// Home timelines (a cache: entries can be dropped and rebuilt) and who is a celebrity.
#[async_trait]
pub trait Timelines: Send + Sync + 'static {
    /// Adds `entry` to each reader's timeline; an entry already there is left as it is. A
    /// timeline longer than `cap` + 10% afterwards is trimmed to its newest `cap` entries.
    async fn push(&self, readers: &[u64], entry: TimelineEntry, cap: usize) -> Result<(), StoreError>;
    /// Adds several entries to one reader's timeline (a backfill), as [`Timelines::push`].
    async fn push_entries(&self, reader: u64, entries: &[TimelineEntry], cap: usize) -> Result<(), StoreError>;
    /// A reader's entries, newest (largest status id) first.
    async fn page(&self, reader: u64, before: Option<u64>, limit: usize) -> Result<Vec<TimelineEntry>, StoreError>;
    /// Takes entries out of a reader's timeline; ids not there are skipped.
    async fn remove(&self, reader: u64, status_ids: &[u64]) -> Result<(), StoreError>;
    /// The largest follow id this reader's timeline has been backfilled for (0: none).
    async fn watermark(&self, reader: u64) -> Result<u64, StoreError>;
    /// Raises the watermark (a lower value leaves it as it is).
    async fn raise_watermark(&self, reader: u64, follow_id: u64) -> Result<(), StoreError>;
    /// Marks an author a celebrity, for good: their statuses are merged into timelines on read.
    async fn mark_celebrity(&self, author_id: u64) -> Result<(), StoreError>;
    /// The celebrities among `user_ids`, in the order given.
    async fn celebrities_among(&self, user_ids: &[u64]) -> Result<Vec<u64>, StoreError>;
}

/// Fan-out jobs: what remains of each status's fan-out, leased to one worker at a time.
#[async_trait]
pub trait FanoutQueue: Send + Sync + 'static {
    /// Leases up to `limit` jobs whose lease has run out (or was never taken) to `owner` until
    /// `lease_until_ms`, and answers them.
    async fn claim_fanouts(
        &self,
        owner: u64,
        now_ms: u64,
        lease_until_ms: u64,
        limit: usize,
    ) -> Result<Vec<FanoutJob>, StoreError>;
    /// Leases one job to `owner` (the process that just inserted it); `false` if it is gone.
    async fn lease_fanout(&self, status_id: u64, owner: u64, lease_until_ms: u64) -> Result<bool, StoreError>;
    /// Records a job's progress (its next page token and pages done); a job that is gone
    /// (finished, or its status deleted) stays gone.
    async fn advance_fanout(&self, job: &FanoutJob) -> Result<(), StoreError>;
    /// The job is done: forgets it.
    async fn finish_fanout(&self, status_id: u64) -> Result<(), StoreError>;
}

/// Statuses scheduled for later.
#[async_trait]
pub trait Schedule: Send + Sync + 'static {
    async fn insert_scheduled(&self, scheduled: &ScheduledRecord) -> Result<(), StoreError>;
    async fn get_scheduled(&self, scheduled_id: u64) -> Result<Option<ScheduledRecord>, StoreError>;
    /// A user's scheduled statuses, newest scheduled first.
    async fn list_scheduled(
        &self,
        user_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ScheduledRecord>, StoreError>;
    /// Those due at `now_ms` (publish time at or before it), soonest first.
    async fn due_scheduled(&self, now_ms: u64, limit: usize) -> Result<Vec<ScheduledRecord>, StoreError>;
    /// Forgets a scheduled status; `false` if it was not there (published or cancelled).
    async fn cancel_scheduled(&self, scheduled_id: u64) -> Result<bool, StoreError>;
    /// Publishes a scheduled status as `status`: in one atomic write, only while the scheduled
    /// record still exists, removes it and does what [`Statuses::insert_status`] does. `false`
    /// (nothing written) when it is already gone, so of several processes one publishes.
    async fn publish_scheduled(
        &self,
        scheduled_id: u64,
        status: &StatusRecord,
        fanout: Option<&FanoutJob>,
    ) -> Result<bool, StoreError>;
}

/// Tag counts per trend bucket, the computed trends, and the lease that decides who computes.
#[async_trait]
pub trait Trends: Send + Sync + 'static {
    /// Each tag's count summed over buckets `from..=to` (tags whose sum is 0 left out), in no
    /// particular order.
    async fn tag_counts(&self, from_bucket: u64, to_bucket: u64) -> Result<Vec<(String, u64)>, StoreError>;
    /// Forgets the counts of buckets before `bucket`.
    async fn prune_buckets(&self, before_bucket: u64) -> Result<(), StoreError>;
    async fn save_trends(&self, snapshot: &TrendsSnapshot) -> Result<(), StoreError>;
    async fn load_trends(&self) -> Result<Option<TrendsSnapshot>, StoreError>;
    /// Takes or renews the named lease for `owner` until `until_ms`; `false` while another
    /// owner holds it (its `until_ms` not yet passed at `now_ms`).
    async fn try_lease(&self, name: &str, owner: u64, now_ms: u64, until_ms: u64) -> Result<bool, StoreError>;
}
