//! The feed store on ScyllaDB (schema: `crates/cql/migrations/0008_feed.cql`, each table
//! commented there).
//!
//! **Partitions stay bounded.** Lists that grow with time are partitioned by a time bucket of
//! their entry's id and walked newest bucket first through `feed_list_buckets`, which lists each
//! list's non-empty buckets (a page never probes an empty one):
//! - a user's statuses and likes (`statuses_by_user`, `likes_by_user`): 6-hour buckets, bounded
//!   by the per-user call limit (50/s: ~1,080,000 rows, ~38 MB);
//! - a tag's statuses, a status's replies, reposts and likes (`statuses_by_tag`,
//!   `replies_by_status`, `reposts_by_status`, `likes_by_status`): 1-hour buckets, written by
//!   crowds: ~800 entries/s sustained for an hour pass 100 MB;
//! - a home timeline (`timelines ((reader_id))`) is capped: trimmed by one range delete to its
//!   newest `cap` entries once past `cap` + 10% (~1,100 rows at the default cap);
//! - the queues (`fanout_queue`, `scheduled_due`) by 10-second and 1-minute buckets, read from a
//!   progress marker (`feed_queue_progress`) so readers never scan the tombstones of entries done
//!   ([`fanout`]); the trend counts by the service's trend bucket, a tag and a shard ([`trends`]).
//!
//! **Counters are the lengths of their lists, exact under concurrency.** Every relation has one
//! row decided by a lightweight transaction: a status (`statuses`, `INSERT ... IF NOT EXISTS`, and
//! deletion `IF state = ?`), a like (`likes`, a pair row changed `IF generation = ?`, as the
//! user store's follows), a repost (`repost_claims`, `IF NOT EXISTS` / `IF repost_id = ?`). The
//! list rows follow it (idempotent: whoever finishes a change may write them again), and only the
//! process whose transaction applied then moves the counters (`status_counts`,
//! `feed_user_counts`), each by compare-and-set — read, then `UPDATE ... SET likes = ? IF likes =
//! ?`, again on conflict — so each applied change adds its ±1 exactly once however calls
//! interleave. Counter columns are not used (the house choice, see the user store's
//! `graph.rs`): a counter update whose outcome is unknown (a timeout) cannot be retried without
//! perhaps counting twice, and ScyllaDB counters cannot be written with other columns or by a
//! lightweight transaction. Counts read as at least 0.
//!
//! **List rows carry the timestamp of their change** (`USING TIMESTAMP`: the entry id's
//! milliseconds × 1000, plus 0 when a status's rows are put and 1 when deleted, or the like pair's
//! generation), so a late batch (a stalled process, a batchlog replay) never brings back a row a
//! later change deleted, whatever the clocks.
//!
//! **Multi-partition writes are ordered so a crash leaves nothing a reader trips over**
//! ([`statuses`]): publishing claims the repost pair (a claim holds the repost's record and job,
//! so whoever meets a claim without its status finishes that write), queues the fan-out job, then
//! inserts the status by LWT, then its lists (one logged batch), then its counters. A job or a
//! claim without its status is harmless (a timeline entry of an id never published is skipped on
//! read) and a status without its lists is finished by a retry of the same insert. Deleting
//! tombstones the status first (`state` 1: readers see it deleted), then takes it out of its lists
//! and counters, its likes, its reposts and its job, then marks it done (`state` 2); a deletion
//! that meets a status left in state 1 by a crash finishes the idempotent part of that work.
//! A like or a repost written while its status is being deleted checks the status again, at
//! LOCAL_SERIAL, after its lists are written: either the check sees the deletion (and the like or
//! repost undoes itself) or the deletion's scan of the lists, after its transaction, sees it.
//!
//! **The crash window**: a process that stops after a transaction and before its counters leaves
//! a count one off its list (the next change of the relation still applies once).
//! [`ScyllaFeedStore::recount_status`] and [`ScyllaFeedStore::recount_user`] set counts to their
//! lists' lengths; a trend count of that window stays off until its bucket is pruned.
//!
//! Leases (fan-out jobs, the trends lease) are lightweight transactions conditioned on the lease
//! having run out (`IF lease_until_ms <= ?`); a scheduled status is published by the one process
//! whose `DELETE ... IF EXISTS` of it applies ([`schedule`]).
//!
//! Reads and plain writes run at LOCAL_QUORUM; only idempotent statements are retried. Partitions
//! are read in pages by clustering key with a bound `LIMIT`, never unpaged.

mod fanout;
mod likes;
mod schedule;
mod statements;
mod statuses;
#[cfg(test)]
mod tests;
mod timelines;
mod trends;

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, atomic::AtomicBool},
    task::Poll,
};

use chatmesh_cql::{BatchKind, Cql, CqlError, Statement, Value, values};
use serde::{Serialize, de::DeserializeOwned};

use self::statements::*;
use super::StoreError;
use crate::model::Edge;

/// Rows per page of the paged reads.
const PAGE: i32 = 1000;
/// Compare-and-set rounds on one row before giving up on one that keeps changing.
const ATTEMPTS: usize = 32;
/// Calls run at once by one operation (a fan-out page's readers, a page of statuses).
const PARALLEL: usize = 32;
/// The largest id a `bigint` holds.
const MAX_ID: u64 = i64::MAX as u64;
/// Buckets of the lists one user writes (bounded by the per-user call limit).
const USER_BUCKET_MS: u64 = 6 * 3_600_000;
/// Buckets of the lists crowds write (a tag's, a status's).
const CROWD_BUCKET_MS: u64 = 3_600_000;

type Batch = Vec<(&'static Statement, Vec<Value>)>;
/// Every celebrity as read at a time (unix ms).
type Celebrities = (u64, Arc<HashSet<u64>>);

/// The feed store on ScyllaDB; cheap to clone.
#[derive(Clone)]
pub struct ScyllaFeedStore {
    cql: Cql,
    /// Unix ms now: places fan-out jobs in their queue buckets and decides which are closed
    /// (fixed in golden tests).
    clock: fn() -> u64,
    page: i32,
    /// The bucket this process last listed, per queue and for trends (listed once, not per
    /// entry: those listings would otherwise be written by every status).
    listed: Arc<Mutex<HashMap<&'static str, i64>>>,
    /// Whether this process has made sure the fan-out queue has a progress marker.
    fanout_started: Arc<AtomicBool>,
    /// The celebrities as last read, and when (unix ms by `clock`).
    celebrities: Arc<Mutex<Option<Celebrities>>>,
}

impl std::fmt::Debug for ScyllaFeedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaFeedStore").field("cql", &self.cql).finish_non_exhaustive()
    }
}

fn backend(e: CqlError) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("corrupt row: {what}"))
}

fn contended(what: &str) -> StoreError {
    StoreError::Backend(format!("{what}: changed concurrently {ATTEMPTS} times in a row"))
}

fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("encoding a record: {e}")))
}

fn from_json<T: DeserializeOwned>(text: &str, what: impl std::fmt::Display) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("{what}: {e}")))
}

/// A `u64` bound (a cursor, a time) as a `bigint`, clamped to the largest one.
fn big(v: u64) -> i64 {
    v.min(MAX_ID) as i64
}

/// A `LIMIT` for `limit` rows (callers ask for none only after checking for 0).
fn limit_of(limit: usize) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX).max(1)
}

/// The write timestamp of a list row's change: the entry id's milliseconds in microseconds, plus
/// the change's rank (0 put, 1 deleted; for likes the pair's generation).
fn at_us(id: u64, rank: i64) -> i64 {
    let ms = i64::try_from(chatmesh_platform::ids::unix_ms_of(id)).unwrap_or(i64::MAX / 1000);
    ms.saturating_mul(1000).saturating_add(rank)
}

/// Runs `futures` at once on this task, at most [`PARALLEL`] in flight, and answers their
/// outputs in order (the first error, once all of a round have finished).
async fn all<T, F: Future<Output = Result<T, StoreError>>>(futures: Vec<F>) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::with_capacity(futures.len());
    let mut rest = futures.into_iter();
    loop {
        let mut round: Vec<Pin<Box<F>>> = rest.by_ref().take(PARALLEL).map(Box::pin).collect();
        if round.is_empty() {
            return Ok(out);
        }
        let mut done: Vec<Option<Result<T, StoreError>>> = round.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (future, slot) in round.iter_mut().zip(done.iter_mut()) {
                if slot.is_none() {
                    match future.as_mut().poll(cx) {
                        Poll::Ready(value) => *slot = Some(value),
                        Poll::Pending => pending = true,
                    }
                }
            }
            if pending { Poll::Pending } else { Poll::Ready(()) }
        })
        .await;
        for value in done {
            out.push(value.expect("every future of the round finished")?);
        }
    }
}

/// Whose list: a user's or a status's (by id), or a tag's.
#[derive(Debug, Clone, Copy)]
enum Owner<'a> {
    Id(u64),
    Tag(&'a str),
}

impl Owner<'_> {
    fn value(self) -> Value {
        match self {
            Owner::Id(id) => Value::from(id),
            Owner::Tag(tag) => Value::from(tag),
        }
    }

    /// As `feed_list_buckets` names it.
    fn text(self) -> String {
        match self {
            Owner::Id(id) => id.to_string(),
            Owner::Tag(tag) => tag.to_owned(),
        }
    }
}

/// A list partitioned by time bucket of its entries' ids, newest first.
#[derive(Debug)]
struct List {
    /// Its `list_name` in `feed_list_buckets`.
    name: &'static str,
    width_ms: u64,
    /// `(owner, bucket, id[, other]) USING TIMESTAMP ?`
    put: &'static Statement,
    /// `USING TIMESTAMP ? WHERE owner, bucket, id[, other]`
    delete: &'static Statement,
    /// `id[, other] WHERE owner, bucket, id < ? LIMIT ?`
    page: &'static Statement,
    /// Whether rows name a second id (the entry's user or status).
    pair: bool,
}

static USER_STATUSES_LIST: List = List {
    name: "user_statuses",
    width_ms: USER_BUCKET_MS,
    put: &PUT_USER_STATUS,
    delete: &DELETE_USER_STATUS,
    page: &USER_STATUSES,
    pair: false,
};
static TAG_STATUSES_LIST: List = List {
    name: "tag_statuses",
    width_ms: CROWD_BUCKET_MS,
    put: &PUT_TAG_STATUS,
    delete: &DELETE_TAG_STATUS,
    page: &TAG_STATUSES,
    pair: false,
};
static REPLIES_LIST: List = List {
    name: "replies",
    width_ms: CROWD_BUCKET_MS,
    put: &PUT_REPLY,
    delete: &DELETE_REPLY,
    page: &REPLIES,
    pair: false,
};
static REPOSTS_LIST: List = List {
    name: "reposts",
    width_ms: CROWD_BUCKET_MS,
    put: &PUT_REPOST,
    delete: &DELETE_REPOST,
    page: &REPOSTS,
    pair: true,
};
static STATUS_LIKES_LIST: List = List {
    name: "status_likes",
    width_ms: CROWD_BUCKET_MS,
    put: &PUT_STATUS_LIKE,
    delete: &DELETE_STATUS_LIKE,
    page: &STATUS_LIKES,
    pair: true,
};
static USER_LIKES_LIST: List = List {
    name: "user_likes",
    width_ms: USER_BUCKET_MS,
    put: &PUT_USER_LIKE,
    delete: &DELETE_USER_LIKE,
    page: &USER_LIKES,
    pair: true,
};

impl List {
    fn bucket(&self, id: u64) -> i64 {
        big(chatmesh_platform::ids::unix_ms_of(id) / self.width_ms)
    }

    /// The writes listing `id` (with `other`) under `owner` at `ts`: the row and its bucket.
    fn put(&self, owner: Owner<'_>, id: u64, other: u64, ts: i64) -> Batch {
        let bucket = self.bucket(id);
        let mut row = values![owner.value(), bucket, id];
        if self.pair {
            row.push(Value::from(other));
        }
        row.push(Value::from(ts));
        vec![(self.put, row), (&PUT_LIST_BUCKET, values![self.name, owner.text(), bucket])]
    }

    /// The write unlisting `id` (with `other`) from `owner` at `ts`.
    fn delete(&self, owner: Owner<'_>, id: u64, other: u64, ts: i64) -> Batch {
        let mut row = values![ts, owner.value(), self.bucket(id), id];
        if self.pair {
            row.push(Value::from(other));
        }
        vec![(self.delete, row)]
    }
}

/// A counter (always the length of a list).
#[derive(Debug, Clone, Copy)]
enum Count {
    StatusLikes,
    StatusReposts,
    StatusReplies,
    UserStatuses,
    UserLikes,
}

impl Count {
    fn statement(self) -> &'static Statement {
        match self {
            Count::StatusLikes => &SET_STATUS_LIKES,
            Count::StatusReposts => &SET_STATUS_REPOSTS,
            Count::StatusReplies => &SET_STATUS_REPLIES,
            Count::UserStatuses => &SET_USER_STATUSES,
            Count::UserLikes => &SET_USER_LIKES,
        }
    }
}

type StatusCountsRow = (Option<i64>, Option<i64>, Option<i64>);
type UserCountsRow = (Option<i64>, Option<i64>);

/// A count as answered: never below 0 (a decrement may land before its increment).
fn count_of(value: Option<i64>) -> u64 {
    value.unwrap_or(0).max(0) as u64
}

impl ScyllaFeedStore {
    pub fn new(cql: Cql) -> Self {
        Self {
            cql,
            clock: chatmesh_platform::ids::now_ms,
            page: PAGE,
            listed: Arc::new(Mutex::new(HashMap::new())),
            fanout_started: Arc::new(AtomicBool::new(false)),
            celebrities: Arc::new(Mutex::new(None)),
        }
    }

    /// Prepares every statement (fails fast on a schema that does not match).
    pub async fn prepare(&self) -> Result<(), StoreError> {
        self.cql.prepare(STATEMENTS).await.map_err(backend)
    }

    /// Sets a status's counts to the lengths of its like, repost and reply lists (repairs a count
    /// left behind by a process stopped mid-change; exact when none of them changes meanwhile).
    pub async fn recount_status(&self, status_id: u64) -> Result<(), StoreError> {
        let owner = Owner::Id(status_id);
        let likes = self.list_len(&STATUS_LIKES_LIST, owner).await?;
        let reposts = self.list_len(&REPOSTS_LIST, owner).await?;
        let replies = self.list_len(&REPLIES_LIST, owner).await?;
        self.set_count(Count::StatusLikes, status_id, likes).await?;
        self.set_count(Count::StatusReposts, status_id, reposts).await?;
        self.set_count(Count::StatusReplies, status_id, replies).await
    }

    /// Sets a user's status and like counts to the lengths of their lists (as
    /// [`recount_status`](Self::recount_status)).
    pub async fn recount_user(&self, user_id: u64) -> Result<(), StoreError> {
        let statuses = self.list_len(&USER_STATUSES_LIST, Owner::Id(user_id)).await?;
        let likes = self.list_len(&USER_LIKES_LIST, Owner::Id(user_id)).await?;
        self.set_count(Count::UserStatuses, user_id, statuses).await?;
        self.set_count(Count::UserLikes, user_id, likes).await
    }

    /// Runs writes to several partitions as one logged batch (all of it applies, or after a
    /// coordinator failure the batchlog replays it).
    async fn write(&self, batch: Batch) -> Result<(), StoreError> {
        self.cql.batch(BatchKind::Logged, batch).await.map_err(backend).map(|_| ())
    }

    async fn status_counts(&self, status_id: u64) -> Result<StatusCountsRow, StoreError> {
        let row = self.cql.row(&GET_STATUS_COUNTS, values![status_id]).await.map_err(backend)?;
        Ok(row.unwrap_or_default())
    }

    async fn user_counts(&self, user_id: u64) -> Result<UserCountsRow, StoreError> {
        let row = self.cql.row(&GET_USER_COUNTS, values![user_id]).await.map_err(backend)?;
        Ok(row.unwrap_or_default())
    }

    async fn current(&self, count: Count, key: u64) -> Result<Option<i64>, StoreError> {
        Ok(match count {
            Count::StatusLikes => self.status_counts(key).await?.0,
            Count::StatusReposts => self.status_counts(key).await?.1,
            Count::StatusReplies => self.status_counts(key).await?.2,
            Count::UserStatuses => self.user_counts(key).await?.0,
            Count::UserLikes => self.user_counts(key).await?.1,
        })
    }

    /// Adds `delta` to a count by compare-and-set.
    async fn add(&self, count: Count, key: u64, delta: i64) -> Result<(), StoreError> {
        for _ in 0..ATTEMPTS {
            let current = self.current(count, key).await?;
            let next = current.unwrap_or(0) + delta;
            if self.cql.lwt(count.statement(), values![next, key, current]).await.map_err(backend)? {
                return Ok(());
            }
        }
        Err(contended(&format!("count {count:?} of {key}")))
    }

    /// Sets a count to `value` by compare-and-set (a recount).
    async fn set_count(&self, count: Count, key: u64, value: u64) -> Result<(), StoreError> {
        let value = big(value);
        for _ in 0..ATTEMPTS {
            let current = self.current(count, key).await?;
            if current == Some(value)
                || self.cql.lwt(count.statement(), values![value, key, current]).await.map_err(backend)?
            {
                return Ok(());
            }
        }
        Err(contended(&format!("count {count:?} of {key}")))
    }

    /// A page of `owner`'s `list`: entries with ids below `before`, newest first, walking only
    /// the buckets `feed_list_buckets` lists.
    async fn list_page(
        &self,
        list: &'static List,
        owner: Owner<'_>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Edge>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let before = before.map_or(MAX_ID, |b| b.min(MAX_ID));
        let mut to_bucket = list.bucket(before);
        loop {
            let values = values![list.name, owner.text(), to_bucket, self.page];
            let buckets: Vec<(i64,)> = self.cql.rows(&LIST_BUCKETS, values).await.map_err(backend)?;
            for &(bucket,) in &buckets {
                let values = values![owner.value(), bucket, before, limit_of(limit - out.len())];
                if list.pair {
                    let rows: Vec<(i64, i64)> = self.cql.rows(list.page, values).await.map_err(backend)?;
                    out.extend(
                        rows.into_iter()
                            .map(|(id, other)| Edge { id: chatmesh_cql::id(id), other: chatmesh_cql::id(other) }),
                    );
                } else {
                    let rows: Vec<(i64,)> = self.cql.rows(list.page, values).await.map_err(backend)?;
                    out.extend(rows.into_iter().map(|(id,)| Edge { id: chatmesh_cql::id(id), other: 0 }));
                }
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            match buckets.last() {
                Some(&(last,)) if buckets.len() >= self.page as usize && last > 0 => to_bucket = last - 1,
                _ => return Ok(out),
            }
        }
    }

    /// The next page of a whole-list walk after `cursor` (None: from the newest), and the cursor
    /// of the page after it (None: the list ends here).
    async fn walk(
        &self,
        list: &'static List,
        owner: Owner<'_>,
        cursor: Option<u64>,
    ) -> Result<(Vec<Edge>, Option<u64>), StoreError> {
        let page = self.list_page(list, owner, cursor, self.page as usize).await?;
        let next = page.last().map(|e| e.id).filter(|_| page.len() >= self.page as usize);
        Ok((page, next))
    }

    /// How many entries `owner`'s `list` holds, counted in pages.
    async fn list_len(&self, list: &'static List, owner: Owner<'_>) -> Result<u64, StoreError> {
        let (mut len, mut cursor) = (0, None);
        loop {
            let (page, next) = self.walk(list, owner, cursor).await?;
            len += page.len() as u64;
            match next {
                Some(_) => cursor = next,
                None => return Ok(len),
            }
        }
    }
}
