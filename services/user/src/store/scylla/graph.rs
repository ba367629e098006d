//! The social graph: follows, blocks and friends.
//!
//! **Pair rows.** Each relation between two users is one row of its own partition —
//! `follow_edges ((follower_id, followee_id))`, `block_edges ((blocker_id, blocked_id))`,
//! `friend_pairs ((low_id, high_id))` — holding the edge (null: no relation now) and a
//! `generation`. Every change of a pair is one lightweight transaction `... SET ..., generation
//! = g + 1 ... IF generation = ?` on the generation it read (null for a pair never related), so
//! the changes of a pair are totally ordered and each is decided exactly once, whichever
//! process makes it: two follows of one pair make one edge, a follow and an unfollow racing
//! apply in one order. The row is never deleted, so its generation keeps counting when a
//! relation ends and begins again (with a new edge id, or the same one: a parked follow
//! restored, a caller reusing an id).
//!
//! **Lists** (`followers_by_user`, `following_by_user`, `blocks_by_user`, `blocked_by_user`,
//! `friend_requests_by_user`, `friends_by_user`) are projections of the pair rows, written after
//! the transaction applied, in one logged batch per change (both sides of the pair), `USING
//! TIMESTAMP` [`at_us`]`(edge_id, generation of the change)`. Every list row's key holds its
//! edge id, and only changes of its pair write it, so a later change always writes with a higher
//! timestamp: a batch of an earlier change that arrives late (a stalled process, a batchlog
//! replay) loses to the deletes of the later one instead of bringing a row back. A list row
//! whose pair no longer holds its edge (a change interrupted before its batch) is deleted by
//! whoever meets it while parking or erasing, at the pair's current generation, which no later
//! change can go below.
//!
//! **Counts** (`graph_counts ((user_id))`: followers, following, friends) are plain bigints
//! changed by compare-and-set — read, then `UPDATE ... SET followers = ? IF followers = ?`,
//! retried on conflict — once by the process whose pair transaction applied, after its list
//! batch. Concurrent changes, however they interleave, therefore leave every count equal to its
//! list: each applied change adds exactly its ±1 once. ScyllaDB counter columns are not used: a
//! counter update whose outcome is unknown cannot be retried without perhaps counting twice,
//! and a compare-and-set can be (on conflict it reads again). Counts are read as at least 0 (a
//! decrement may land before the increment of the change it undoes).
//!
//! **The crash window.** A process that stops (or meets a timeout) after a pair transaction
//! and before its list batch or its counts leaves the pair changed but a list row or a count
//! behind (the next change of the pair still orders correctly; a stale list row is removed when
//! met). [`ScyllaUserStore::recount_follows`] and [`ScyllaUserStore::recount_friends`] repair a
//! user's counts by counting their lists; park and restore run them for the user they move, and
//! an operator can run them for any user.
//!
//! **Blocks** end follows both ways, a pending request and a friendship through the same pair
//! transactions as unfollowing and unfriending, after the block's own transaction (so the
//! core, which checks blocks first, refuses new ones from then on), and raise the two users'
//! block epochs last, so a process refreshing its cache on the epoch finds the block. Epochs are
//! only raised (`UPDATE ... IF epoch = ?` on the value read).
//!
//! **Parking** takes a deleted user's follows and friendships out of every list and count, one
//! pair at a time: the parked row first (`parked_follows`, `parked_friends`), then the pair's
//! transaction (the parked row is removed again if another change won), then the lists and the
//! other side's count; the user's own counts are recounted at the end. Restoring puts each
//! parked relation back through a transaction that requires the pair to be empty (one made
//! since wins), unless the other side is gone (erased or deleted) or either blocks the other,
//! then removes the parked row.

use chatmesh_cql::{BatchKind, Statement, values};

use super::{Batch, MAX_ID, ScyllaUserStore, backend, limit_of, statements::*};
use crate::{
    model::{Direction, Edge, Friendship, PendingRequest, RequestOutcome, Standing},
    store::{BlockSets, Blocks, Follows, Friends, StoreError},
};

/// Compare-and-set rounds on one pair row or count before giving up on one that keeps changing.
const ATTEMPTS: usize = 32;

/// The write timestamp of a list row's change: the edge id's milliseconds in microseconds, plus
/// the generation of the change (each change of a pair adds one).
pub(super) fn at_us(edge_id: u64, generation: i64) -> i64 {
    let ms = i64::try_from(chatmesh_platform::ids::unix_ms_of(edge_id)).unwrap_or(i64::MAX / 1000);
    ms.saturating_mul(1000).saturating_add(generation)
}

fn contended(what: &str) -> StoreError {
    StoreError::Backend(format!("{what}: changed concurrently {ATTEMPTS} times in a row"))
}

/// A follow or block pair row as read: its edge (None: no relation now) and generation (None:
/// never written).
#[derive(Debug, Clone, Copy)]
struct Pair {
    edge_id: Option<u64>,
    generation: Option<i64>,
}

impl Pair {
    fn from_row(row: Option<(Option<i64>, Option<i64>)>) -> Self {
        let (edge_id, generation) = row.unwrap_or_default();
        Pair { edge_id: edge_id.map(chatmesh_cql::id), generation }
    }

    /// The generation the pair's next change writes.
    fn next(&self) -> i64 {
        self.generation.unwrap_or(0) + 1
    }

    /// The generation of the change that wrote the pair as it is.
    fn current(&self) -> i64 {
        self.generation.unwrap_or(0)
    }
}

/// The friend pair row of two users as read.
#[derive(Debug, Clone, Copy, Default)]
struct FriendPair {
    requester: Option<u64>,
    request_edge: Option<u64>,
    friend_edge: Option<u64>,
    channel: Option<u64>,
    generation: Option<i64>,
}

type FriendPairRow = (Option<i64>, Option<i64>, Option<i64>, Option<i64>, Option<i64>);

impl FriendPair {
    fn next(&self) -> i64 {
        self.generation.unwrap_or(0) + 1
    }

    fn current(&self) -> i64 {
        self.generation.unwrap_or(0)
    }
}

/// A count of `graph_counts`.
#[derive(Debug, Clone, Copy)]
enum Count {
    Followers,
    Following,
    Friends,
}

impl Count {
    fn statement(self) -> &'static Statement {
        match self {
            Count::Followers => &SET_FOLLOWERS_COUNT,
            Count::Following => &SET_FOLLOWING_COUNT,
            Count::Friends => &SET_FRIENDS_COUNT,
        }
    }

    fn of(self, (followers, following, friends): (Option<i64>, Option<i64>, Option<i64>)) -> Option<i64> {
        match self {
            Count::Followers => followers,
            Count::Following => following,
            Count::Friends => friends,
        }
    }
}

/// The follow `follower` → `followee` in both lists: written, or deleted, at `ts`.
fn follow_rows(follower: u64, followee: u64, edge_id: u64, ts: i64, put: bool) -> Batch {
    if put {
        vec![
            (&PUT_FOLLOWER, values![followee, edge_id, follower, ts]),
            (&PUT_FOLLOWING, values![follower, edge_id, followee, ts]),
        ]
    } else {
        vec![
            (&DELETE_FOLLOWER, values![ts, followee, edge_id, follower]),
            (&DELETE_FOLLOWING, values![ts, follower, edge_id, followee]),
        ]
    }
}

fn block_rows(blocker: u64, blocked: u64, edge_id: u64, ts: i64, put: bool) -> Batch {
    if put {
        vec![
            (&PUT_BLOCKED, values![blocker, edge_id, blocked, ts]),
            (&PUT_BLOCKER, values![blocked, blocker, edge_id, ts]),
        ]
    } else {
        vec![
            (&DELETE_BLOCKED, values![ts, blocker, edge_id, blocked]),
            (&DELETE_BLOCKER, values![ts, blocked, blocker, edge_id]),
        ]
    }
}

fn request_rows(from: u64, to: u64, edge_id: u64, ts: i64, put: bool) -> Batch {
    if put {
        vec![
            (&PUT_REQUEST, values![from, false, edge_id, to, ts]),
            (&PUT_REQUEST, values![to, true, edge_id, from, ts]),
        ]
    } else {
        vec![
            (&DELETE_REQUEST, values![ts, from, false, edge_id, to]),
            (&DELETE_REQUEST, values![ts, to, true, edge_id, from]),
        ]
    }
}

fn friend_rows(a: u64, b: u64, edge_id: u64, channel: u64, ts: i64, put: bool) -> Batch {
    if put {
        vec![(&PUT_FRIEND, values![a, edge_id, b, channel, ts]), (&PUT_FRIEND, values![b, edge_id, a, channel, ts])]
    } else {
        vec![(&DELETE_FRIEND, values![ts, a, edge_id, b]), (&DELETE_FRIEND, values![ts, b, edge_id, a])]
    }
}

fn ordered(a: u64, b: u64) -> (u64, u64) {
    (a.min(b), a.max(b))
}

impl ScyllaUserStore {
    async fn write(&self, batch: Batch) -> Result<(), StoreError> {
        self.cql.batch(BatchKind::Logged, batch).await.map_err(backend).map(|_| ())
    }

    // Counts.

    async fn counts(&self, user_id: u64) -> Result<(Option<i64>, Option<i64>, Option<i64>), StoreError> {
        let row = self.cql.row(&GET_COUNTS, values![user_id]).await.map_err(backend)?;
        Ok(row.unwrap_or_default())
    }

    /// Adds `delta` to one of a user's counts by compare-and-set.
    async fn add(&self, user_id: u64, count: Count, delta: i64) -> Result<(), StoreError> {
        for _ in 0..ATTEMPTS {
            let current = count.of(self.counts(user_id).await?);
            let next = current.unwrap_or(0) + delta;
            if self.cql.lwt(count.statement(), values![next, user_id, current]).await.map_err(backend)? {
                return Ok(());
            }
        }
        Err(contended(&format!("count {count:?} of user {user_id}")))
    }

    /// Sets one of a user's counts to `value` by compare-and-set (a recount).
    async fn set_count(&self, user_id: u64, count: Count, value: i64) -> Result<(), StoreError> {
        for _ in 0..ATTEMPTS {
            let current = count.of(self.counts(user_id).await?);
            if current == Some(value) {
                return Ok(());
            }
            if self.cql.lwt(count.statement(), values![value, user_id, current]).await.map_err(backend)? {
                return Ok(());
            }
        }
        Err(contended(&format!("count {count:?} of user {user_id}")))
    }

    /// One page of `(edge_id, other)` rows of a user's list read by `list` (clustered by edge
    /// id, newest first) below the edge id `cursor`, and the cursor of the next page (None: the
    /// list ends here).
    async fn list_page(
        &self,
        list: &'static Statement,
        user_id: u64,
        cursor: u64,
    ) -> Result<(Vec<(u64, u64)>, Option<u64>), StoreError> {
        let rows: Vec<(i64, i64)> = self.cql.rows(list, values![user_id, cursor, self.page]).await.map_err(backend)?;
        let rows: Vec<(u64, u64)> =
            rows.into_iter().map(|(e, other)| (chatmesh_cql::id(e), chatmesh_cql::id(other))).collect();
        let next = rows.last().map(|(e, _)| *e).filter(|_| rows.len() >= self.page as usize);
        Ok((rows, next))
    }

    /// Every `(edge_id, other)` row of a user's list read by `list`, in pages.
    async fn whole_list(&self, list: &'static Statement, user_id: u64) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut out = Vec::new();
        let mut cursor = Some(MAX_ID);
        while let Some(below) = cursor {
            let (rows, next) = self.list_page(list, user_id, below).await?;
            out.extend(rows);
            cursor = next;
        }
        Ok(out)
    }

    /// How many rows a user's list read by `list` holds, counted in pages.
    async fn list_len(&self, list: &'static Statement, user_id: u64) -> Result<usize, StoreError> {
        let mut len = 0;
        let mut cursor = Some(MAX_ID);
        while let Some(below) = cursor {
            let (rows, next) = self.list_page(list, user_id, below).await?;
            len += rows.len();
            cursor = next;
        }
        Ok(len)
    }

    async fn edges(
        &self,
        list: &'static Statement,
        user_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Edge>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let values = values![user_id, before.unwrap_or(MAX_ID), limit_of(limit)];
        let rows: Vec<(i64, i64)> = self.cql.rows(list, values).await.map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(e, other)| Edge { user_id: chatmesh_cql::id(other), edge_id: chatmesh_cql::id(e) })
            .collect())
    }

    /// Sets a user's follower and following counts to the lengths of their lists (repairs a
    /// count left behind by a process stopped mid-change; exact when no follow of the user
    /// changes meanwhile).
    pub async fn recount_follows(&self, user_id: u64) -> Result<(), StoreError> {
        let followers = self.list_len(&FOLLOWERS, user_id).await?;
        let following = self.list_len(&FOLLOWING, user_id).await?;
        self.set_count(user_id, Count::Followers, followers as i64).await?;
        self.set_count(user_id, Count::Following, following as i64).await
    }

    /// Sets a user's friend count to the length of their friend list (as
    /// [`recount_follows`](Self::recount_follows)).
    pub async fn recount_friends(&self, user_id: u64) -> Result<(), StoreError> {
        let mut friends = 0usize;
        let mut cursor = MAX_ID;
        loop {
            let rows: Vec<(i64, i64, i64)> =
                self.cql.rows(&FRIENDS, values![user_id, cursor, self.page]).await.map_err(backend)?;
            friends += rows.len();
            match rows.last() {
                Some((e, _, _)) if rows.len() >= self.page as usize => cursor = chatmesh_cql::id(*e),
                _ => break,
            }
        }
        self.set_count(user_id, Count::Friends, friends as i64).await
    }

    // Follows.

    async fn follow_pair(&self, follower: u64, followee: u64) -> Result<Pair, StoreError> {
        let row = self.cql.row(&GET_FOLLOW, values![follower, followee]).await.map_err(backend)?;
        Ok(Pair::from_row(row))
    }

    /// The pair's next change: `edge_id` (None: no follow), if the pair is still as read.
    async fn set_follow(
        &self,
        follower: u64,
        followee: u64,
        edge_id: Option<u64>,
        pair: &Pair,
    ) -> Result<bool, StoreError> {
        let values = values![edge_id, pair.next(), follower, followee, pair.generation];
        self.cql.lwt(&SET_FOLLOW, values).await.map_err(backend)
    }

    /// Ends the follow `follower` → `followee` (only the one under `listed`, when given): its
    /// pair row, lists and counts; whether this call ended it. A listed edge the pair no longer
    /// holds has its list rows deleted.
    async fn end_follow(&self, follower: u64, followee: u64, listed: Option<u64>) -> Result<bool, StoreError> {
        for _ in 0..ATTEMPTS {
            let pair = self.follow_pair(follower, followee).await?;
            let Some(edge_id) = pair.edge_id.filter(|e| listed.is_none_or(|l| l == *e)) else {
                if let Some(stale) = listed {
                    self.write(follow_rows(follower, followee, stale, at_us(stale, pair.current()), false)).await?;
                }
                return Ok(false);
            };
            if !self.set_follow(follower, followee, None, &pair).await? {
                continue;
            }
            self.write(follow_rows(follower, followee, edge_id, at_us(edge_id, pair.next()), false)).await?;
            self.add(followee, Count::Followers, -1).await?;
            self.add(follower, Count::Following, -1).await?;
            return Ok(true);
        }
        Err(contended(&format!("follow {follower} -> {followee}")))
    }

    /// Parks one follow of `user_id` (listed with `other` under `edge_id`; `outgoing`: the user
    /// follows them).
    async fn park_follow(&self, user_id: u64, outgoing: bool, other: u64, edge_id: u64) -> Result<(), StoreError> {
        let (follower, followee) = if outgoing { (user_id, other) } else { (other, user_id) };
        for _ in 0..ATTEMPTS {
            let pair = self.follow_pair(follower, followee).await?;
            if pair.edge_id != Some(edge_id) {
                // why: a row the pair no longer holds (a change interrupted before its lists)
                self.write(follow_rows(follower, followee, edge_id, at_us(edge_id, pair.current()), false)).await?;
                return Ok(());
            }
            // why first: a follow taken out of the lists must already be kept aside
            self.cql.execute(&PARK_FOLLOW, values![user_id, outgoing, other, edge_id]).await.map_err(backend)?;
            if !self.set_follow(follower, followee, None, &pair).await? {
                self.cql.execute(&UNPARK_FOLLOW, values![user_id, outgoing, other]).await.map_err(backend)?;
                continue;
            }
            self.write(follow_rows(follower, followee, edge_id, at_us(edge_id, pair.next()), false)).await?;
            let count = if outgoing { Count::Followers } else { Count::Following };
            return self.add(other, count, -1).await;
        }
        Err(contended(&format!("follow {follower} -> {followee}")))
    }

    /// Puts one parked follow back unless its other side is gone or the pair is related anew.
    async fn restore_follow(&self, user_id: u64, outgoing: bool, other: u64, edge_id: u64) -> Result<(), StoreError> {
        let (follower, followee) = if outgoing { (user_id, other) } else { (other, user_id) };
        if self.may_restore(user_id, other).await? {
            let mut done = false;
            for _ in 0..ATTEMPTS {
                let pair = self.follow_pair(follower, followee).await?;
                match pair.edge_id {
                    None => {
                        if !self.set_follow(follower, followee, Some(edge_id), &pair).await? {
                            continue;
                        }
                        self.write(follow_rows(follower, followee, edge_id, at_us(edge_id, pair.next()), true)).await?;
                        let count = if outgoing { Count::Followers } else { Count::Following };
                        self.add(other, count, 1).await?;
                    }
                    // why: an earlier restore put it back and stopped before its lists
                    Some(e) if e == edge_id => {
                        self.write(follow_rows(follower, followee, edge_id, at_us(edge_id, pair.current()), true))
                            .await?;
                    }
                    // followed again since, under a new edge
                    Some(_) => {}
                }
                done = true;
                break;
            }
            if !done {
                return Err(contended(&format!("follow {follower} -> {followee}")));
            }
        }
        self.cql.execute(&UNPARK_FOLLOW, values![user_id, outgoing, other]).await.map_err(backend)
    }

    /// Whether a parked relation of `user_id` with `other` may come back: `other` is live
    /// (neither erased nor deleted) and neither blocks the other.
    async fn may_restore(&self, user_id: u64, other: u64) -> Result<bool, StoreError> {
        Ok(self.is_live(other).await?
            && self.block_pair(user_id, other).await?.edge_id.is_none()
            && self.block_pair(other, user_id).await?.edge_id.is_none())
    }

    // Blocks.

    async fn block_pair(&self, blocker: u64, blocked: u64) -> Result<Pair, StoreError> {
        let row = self.cql.row(&GET_BLOCK, values![blocker, blocked]).await.map_err(backend)?;
        Ok(Pair::from_row(row))
    }

    async fn set_block(
        &self,
        blocker: u64,
        blocked: u64,
        edge_id: Option<u64>,
        pair: &Pair,
    ) -> Result<bool, StoreError> {
        let values = values![edge_id, pair.next(), blocker, blocked, pair.generation];
        self.cql.lwt(&SET_BLOCK, values).await.map_err(backend)
    }

    /// Lifts the block `blocker` → `blocked` (only the one under `listed`, when given), as
    /// [`end_follow`](Self::end_follow).
    async fn end_block(&self, blocker: u64, blocked: u64, listed: Option<u64>) -> Result<bool, StoreError> {
        for _ in 0..ATTEMPTS {
            let pair = self.block_pair(blocker, blocked).await?;
            let Some(edge_id) = pair.edge_id.filter(|e| listed.is_none_or(|l| l == *e)) else {
                if let Some(stale) = listed {
                    self.write(block_rows(blocker, blocked, stale, at_us(stale, pair.current()), false)).await?;
                }
                return Ok(false);
            };
            if !self.set_block(blocker, blocked, None, &pair).await? {
                continue;
            }
            self.write(block_rows(blocker, blocked, edge_id, at_us(edge_id, pair.next()), false)).await?;
            return Ok(true);
        }
        Err(contended(&format!("block {blocker} -> {blocked}")))
    }

    /// Raises a user's block epoch to at least `epoch`.
    async fn raise_epoch(&self, user_id: u64, epoch: u64) -> Result<(), StoreError> {
        for _ in 0..ATTEMPTS {
            let current = self.cql.row::<(Option<i64>,)>(&GET_EPOCH, values![user_id]).await.map_err(backend)?;
            let current = current.and_then(|(e,)| e);
            if current.is_some_and(|c| chatmesh_cql::id(c) >= epoch) {
                return Ok(());
            }
            if self.cql.lwt(&SET_EPOCH, values![epoch, user_id, current]).await.map_err(backend)? {
                return Ok(());
            }
        }
        Err(contended(&format!("block epoch of user {user_id}")))
    }

    // Friends.

    async fn friend_pair(&self, a: u64, b: u64) -> Result<FriendPair, StoreError> {
        let (low, high) = ordered(a, b);
        let row: Option<FriendPairRow> = self.cql.row(&GET_PAIR, values![low, high]).await.map_err(backend)?;
        let (requester, request_edge, friend_edge, channel, generation) = row.unwrap_or_default();
        let id = |v: Option<i64>| v.map(chatmesh_cql::id);
        Ok(FriendPair {
            requester: id(requester),
            request_edge: id(request_edge),
            friend_edge: id(friend_edge),
            channel: id(channel),
            generation,
        })
    }

    /// The pair's next state (`to`'s requester, request, friendship), if it is still as read.
    async fn set_friend_pair(&self, a: u64, b: u64, to: FriendPair, from: &FriendPair) -> Result<bool, StoreError> {
        let (low, high) = ordered(a, b);
        let values =
            values![to.requester, to.request_edge, to.friend_edge, to.channel, from.next(), low, high, from.generation];
        self.cql.lwt(&SET_PAIR, values).await.map_err(backend)
    }

    /// Withdraws a pending request between `a` and `b` (only the one under `listed`, when
    /// given; a listed request the pair no longer holds has its list rows deleted, `from` being
    /// its sender); whether this call withdrew one.
    async fn end_request(&self, a: u64, b: u64, listed: Option<(u64, u64)>) -> Result<bool, StoreError> {
        for _ in 0..ATTEMPTS {
            let pair = self.friend_pair(a, b).await?;
            let held = match (pair.requester, pair.request_edge) {
                (Some(from), Some(edge_id)) if listed.is_none_or(|(_, e)| e == edge_id) => Some((from, edge_id)),
                _ => None,
            };
            let Some((from, edge_id)) = held else {
                if let Some((from, stale)) = listed {
                    let to = if from == a { b } else { a };
                    self.write(request_rows(from, to, stale, at_us(stale, pair.current()), false)).await?;
                }
                return Ok(false);
            };
            if !self.set_friend_pair(a, b, FriendPair::default(), &pair).await? {
                continue;
            }
            let to = if from == a { b } else { a };
            self.write(request_rows(from, to, edge_id, at_us(edge_id, pair.next()), false)).await?;
            return Ok(true);
        }
        Err(contended(&format!("friend pair {a}, {b}")))
    }

    /// Ends the friendship of `a` and `b` (only the one under `listed`, when given), as
    /// [`end_follow`](Self::end_follow); with `park`, keeps it aside for `a` first.
    async fn end_friendship(&self, a: u64, b: u64, listed: Option<u64>, park: bool) -> Result<bool, StoreError> {
        for _ in 0..ATTEMPTS {
            let pair = self.friend_pair(a, b).await?;
            let Some(edge_id) = pair.friend_edge.filter(|e| listed.is_none_or(|l| l == *e)) else {
                if let Some(stale) = listed {
                    self.write(friend_rows(a, b, stale, 0, at_us(stale, pair.current()), false)).await?;
                }
                return Ok(false);
            };
            let channel = pair.channel.unwrap_or(0);
            if park {
                // why first: a friendship taken out of the lists must already be kept aside
                self.cql.execute(&PARK_FRIEND, values![a, b, edge_id, channel]).await.map_err(backend)?;
            }
            if !self.set_friend_pair(a, b, FriendPair::default(), &pair).await? {
                if park {
                    self.cql.execute(&UNPARK_FRIEND, values![a, b]).await.map_err(backend)?;
                }
                continue;
            }
            self.write(friend_rows(a, b, edge_id, channel, at_us(edge_id, pair.next()), false)).await?;
            self.add(b, Count::Friends, -1).await?;
            if !park {
                // a parked user's own count is recounted after
                self.add(a, Count::Friends, -1).await?;
            }
            return Ok(true);
        }
        Err(contended(&format!("friend pair {a}, {b}")))
    }

    /// Puts one parked friendship of `user_id` back unless the friend is gone or the pair is
    /// related anew.
    async fn restore_friend(&self, user_id: u64, friend: u64, edge_id: u64, channel: u64) -> Result<(), StoreError> {
        if self.may_restore(user_id, friend).await? {
            let mut done = false;
            for _ in 0..ATTEMPTS {
                let pair = self.friend_pair(user_id, friend).await?;
                match (pair.friend_edge, pair.requester) {
                    (None, None) => {
                        let to =
                            FriendPair { friend_edge: Some(edge_id), channel: Some(channel), ..FriendPair::default() };
                        if !self.set_friend_pair(user_id, friend, to, &pair).await? {
                            continue;
                        }
                        self.write(friend_rows(user_id, friend, edge_id, channel, at_us(edge_id, pair.next()), true))
                            .await?;
                        self.add(friend, Count::Friends, 1).await?;
                    }
                    // why: an earlier restore put it back and stopped before its lists
                    (Some(e), _) if e == edge_id => {
                        let ts = at_us(edge_id, pair.current());
                        self.write(friend_rows(user_id, friend, edge_id, channel, ts, true)).await?;
                    }
                    // related anew since
                    _ => {}
                }
                done = true;
                break;
            }
            if !done {
                return Err(contended(&format!("friend pair {user_id}, {friend}")));
            }
        }
        self.cql.execute(&UNPARK_FRIEND, values![user_id, friend]).await.map_err(backend)
    }

    async fn requests(
        &self,
        user_id: u64,
        incoming: bool,
        before: u64,
        limit: usize,
    ) -> Result<Vec<PendingRequest>, StoreError> {
        let rows: Vec<(i64, i64)> =
            self.cql.rows(&REQUESTS, values![user_id, incoming, before, limit_of(limit)]).await.map_err(backend)?;
        let direction = if incoming { Direction::Incoming } else { Direction::Outgoing };
        Ok(rows
            .into_iter()
            .map(|(e, other)| PendingRequest {
                user_id: chatmesh_cql::id(other),
                direction,
                edge_id: chatmesh_cql::id(e),
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl Follows for ScyllaUserStore {
    #[tracing::instrument(name = "user_store.follow", skip_all, fields(db.system = "scylla"))]
    async fn follow(&self, follower: u64, followee: u64, edge_id: u64) -> Result<bool, StoreError> {
        for _ in 0..ATTEMPTS {
            let pair = self.follow_pair(follower, followee).await?;
            if pair.edge_id.is_some() {
                return Ok(false);
            }
            if !self.set_follow(follower, followee, Some(edge_id), &pair).await? {
                continue;
            }
            self.write(follow_rows(follower, followee, edge_id, at_us(edge_id, pair.next()), true)).await?;
            self.add(followee, Count::Followers, 1).await?;
            self.add(follower, Count::Following, 1).await?;
            return Ok(true);
        }
        Err(contended(&format!("follow {follower} -> {followee}")))
    }

    #[tracing::instrument(name = "user_store.unfollow", skip_all, fields(db.system = "scylla"))]
    async fn unfollow(&self, follower: u64, followee: u64) -> Result<bool, StoreError> {
        self.end_follow(follower, followee, None).await
    }

    #[tracing::instrument(name = "user_store.list_followers", skip_all, fields(db.system = "scylla"))]
    async fn list_followers(&self, user_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<Edge>, StoreError> {
        self.edges(&FOLLOWERS, user_id, before, limit).await
    }

    #[tracing::instrument(name = "user_store.list_following", skip_all, fields(db.system = "scylla"))]
    async fn list_following(&self, user_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<Edge>, StoreError> {
        self.edges(&FOLLOWING, user_id, before, limit).await
    }

    #[tracing::instrument(name = "user_store.follow_counts", skip_all, fields(db.system = "scylla"))]
    async fn follow_counts(&self, user_id: u64) -> Result<(u64, u64), StoreError> {
        let (followers, following, _) = self.counts(user_id).await?;
        let count = |c: Option<i64>| c.unwrap_or(0).max(0) as u64;
        Ok((count(followers), count(following)))
    }

    #[tracing::instrument(name = "user_store.following_ids", skip_all, fields(db.system = "scylla"))]
    async fn following_ids(&self, user_id: u64) -> Result<Vec<u64>, StoreError> {
        Ok(self.whole_list(&FOLLOWING, user_id).await?.into_iter().map(|(_, other)| other).collect())
    }

    #[tracing::instrument(name = "user_store.park_edges", skip_all, fields(db.system = "scylla"))]
    async fn park_edges(&self, user_id: u64) -> Result<(), StoreError> {
        for (outgoing, list) in [(true, &FOLLOWING), (false, &FOLLOWERS)] {
            // why a page at a time: a followers list may hold millions of rows
            let mut cursor = Some(MAX_ID);
            while let Some(below) = cursor {
                let (rows, next) = self.list_page(list, user_id, below).await?;
                for (edge_id, other) in rows {
                    self.park_follow(user_id, outgoing, other, edge_id).await?;
                }
                cursor = next;
            }
        }
        self.recount_follows(user_id).await
    }

    #[tracing::instrument(name = "user_store.restore_edges", skip_all, fields(db.system = "scylla"))]
    async fn restore_edges(&self, user_id: u64) -> Result<(), StoreError> {
        for outgoing in [true, false] {
            // ids are never negative: -1 is below every other id
            let mut cursor = -1i64;
            loop {
                let rows: Vec<(i64, i64)> = self
                    .cql
                    .rows(&PARKED_FOLLOWS, values![user_id, outgoing, cursor, self.page])
                    .await
                    .map_err(backend)?;
                for (other, edge_id) in &rows {
                    self.restore_follow(user_id, outgoing, chatmesh_cql::id(*other), chatmesh_cql::id(*edge_id))
                        .await?;
                }
                match rows.last() {
                    Some((other, _)) if rows.len() >= self.page as usize => cursor = *other,
                    _ => break,
                }
            }
        }
        self.recount_follows(user_id).await
    }

    #[tracing::instrument(name = "user_store.erase_edges", skip_all, fields(db.system = "scylla"))]
    async fn erase_edges(&self, user_id: u64) -> Result<(), StoreError> {
        self.cql.execute(&ERASE_PARKED_FOLLOWS, values![user_id]).await.map_err(backend)
    }
}

#[async_trait::async_trait]
impl Blocks for ScyllaUserStore {
    #[tracing::instrument(name = "user_store.block", skip_all, fields(db.system = "scylla"))]
    async fn block(&self, blocker: u64, blocked: u64, edge_id: u64, epoch: u64) -> Result<bool, StoreError> {
        let mut created = None;
        for _ in 0..ATTEMPTS {
            let pair = self.block_pair(blocker, blocked).await?;
            if let Some(existing) = pair.edge_id {
                // why: finishes the lists of a block interrupted before them (idempotent)
                self.write(block_rows(blocker, blocked, existing, at_us(existing, pair.current()), true)).await?;
                created = Some(false);
                break;
            }
            if !self.set_block(blocker, blocked, Some(edge_id), &pair).await? {
                continue;
            }
            self.write(block_rows(blocker, blocked, edge_id, at_us(edge_id, pair.next()), true)).await?;
            created = Some(true);
            break;
        }
        let created = created.ok_or_else(|| contended(&format!("block {blocker} -> {blocked}")))?;
        self.end_follow(blocker, blocked, None).await?;
        self.end_follow(blocked, blocker, None).await?;
        self.end_request(blocker, blocked, None).await?;
        self.end_friendship(blocker, blocked, None, false).await?;
        // why last: a process refreshing its cache on the new epoch must find the block
        self.raise_epoch(blocker, epoch).await?;
        self.raise_epoch(blocked, epoch).await?;
        Ok(created)
    }

    #[tracing::instrument(name = "user_store.unblock", skip_all, fields(db.system = "scylla"))]
    async fn unblock(&self, blocker: u64, blocked: u64, epoch: u64) -> Result<bool, StoreError> {
        if !self.end_block(blocker, blocked, None).await? {
            return Ok(false);
        }
        self.raise_epoch(blocker, epoch).await?;
        self.raise_epoch(blocked, epoch).await?;
        Ok(true)
    }

    #[tracing::instrument(name = "user_store.list_blocked", skip_all, fields(db.system = "scylla"))]
    async fn list_blocked(&self, user_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<Edge>, StoreError> {
        self.edges(&BLOCKED, user_id, before, limit).await
    }

    #[tracing::instrument(name = "user_store.block_sets", skip_all, fields(db.system = "scylla"))]
    async fn block_sets(&self, user_id: u64) -> Result<BlockSets, StoreError> {
        let blocking = self.whole_list(&BLOCKED, user_id).await?.into_iter().map(|(_, other)| other).collect();
        let mut blocked_by: Vec<u64> = Vec::new();
        let mut cursor = -1i64;
        loop {
            let rows: Vec<(i64, i64)> =
                self.cql.rows(&BLOCKERS, values![user_id, cursor, self.page]).await.map_err(backend)?;
            for (blocker, _) in &rows {
                // a blocker listed under an old edge too (until it is cleaned) counts once
                if blocked_by.last() != Some(&chatmesh_cql::id(*blocker)) {
                    blocked_by.push(chatmesh_cql::id(*blocker));
                }
            }
            match rows.last() {
                Some((blocker, _)) if rows.len() >= self.page as usize => cursor = *blocker,
                _ => break,
            }
        }
        Ok(BlockSets { blocking, blocked_by, epoch: self.block_epoch(user_id).await? })
    }

    #[tracing::instrument(name = "user_store.standing", skip_all, fields(db.system = "scylla"))]
    async fn standing(&self, user_id: u64, other: u64) -> Result<Standing, StoreError> {
        let friends = self.friend_pair(user_id, other).await?;
        Ok(Standing {
            following: self.follow_pair(user_id, other).await?.edge_id.is_some(),
            followed_by: self.follow_pair(other, user_id).await?.edge_id.is_some(),
            blocking: self.block_pair(user_id, other).await?.edge_id.is_some(),
            blocked_by: self.block_pair(other, user_id).await?.edge_id.is_some(),
            friends: friends.friend_edge.is_some(),
            request_sent: friends.request_edge.is_some() && friends.requester == Some(user_id),
            request_received: friends.request_edge.is_some() && friends.requester == Some(other),
        })
    }

    #[tracing::instrument(name = "user_store.block_epoch", skip_all, fields(db.system = "scylla"))]
    async fn block_epoch(&self, user_id: u64) -> Result<u64, StoreError> {
        let row = self.cql.row::<(Option<i64>,)>(&GET_EPOCH, values![user_id]).await.map_err(backend)?;
        Ok(row.and_then(|(e,)| e).map_or(0, chatmesh_cql::id))
    }

    #[tracing::instrument(name = "user_store.erase_blocks", skip_all, fields(db.system = "scylla"))]
    async fn erase_blocks(&self, user_id: u64) -> Result<(), StoreError> {
        let mut cursor = Some(MAX_ID);
        while let Some(below) = cursor {
            let (rows, next) = self.list_page(&BLOCKED, user_id, below).await?;
            for (edge_id, blocked) in rows {
                self.end_block(user_id, blocked, Some(edge_id)).await?;
            }
            cursor = next;
        }
        let mut cursor = -1i64;
        loop {
            let rows: Vec<(i64, i64)> =
                self.cql.rows(&BLOCKERS, values![user_id, cursor, self.page]).await.map_err(backend)?;
            for (blocker, edge_id) in &rows {
                self.end_block(chatmesh_cql::id(*blocker), user_id, Some(chatmesh_cql::id(*edge_id))).await?;
            }
            match rows.last() {
                Some((blocker, _)) if rows.len() >= self.page as usize => cursor = *blocker,
                _ => return Ok(()),
            }
        }
    }
}

#[async_trait::async_trait]
impl Friends for ScyllaUserStore {
    #[tracing::instrument(name = "user_store.send_friend_request", skip_all, fields(db.system = "scylla"))]
    async fn send_friend_request(&self, from: u64, to: u64, edge_id: u64) -> Result<RequestOutcome, StoreError> {
        for _ in 0..ATTEMPTS {
            let pair = self.friend_pair(from, to).await?;
            if pair.friend_edge.is_some() {
                return Ok(RequestOutcome::AlreadyFriends);
            }
            if let Some(requester) = pair.requester {
                return Ok(if requester == from { RequestOutcome::AlreadySent } else { RequestOutcome::TheyAsked });
            }
            let request = FriendPair { requester: Some(from), request_edge: Some(edge_id), ..FriendPair::default() };
            if !self.set_friend_pair(from, to, request, &pair).await? {
                continue;
            }
            self.write(request_rows(from, to, edge_id, at_us(edge_id, pair.next()), true)).await?;
            return Ok(RequestOutcome::Sent);
        }
        Err(contended(&format!("friend pair {from}, {to}")))
    }

    #[tracing::instrument(name = "user_store.delete_friend_request", skip_all, fields(db.system = "scylla"))]
    async fn delete_friend_request(&self, from: u64, to: u64) -> Result<bool, StoreError> {
        for _ in 0..ATTEMPTS {
            let pair = self.friend_pair(from, to).await?;
            let (Some(requester), Some(edge_id)) = (pair.requester, pair.request_edge) else { return Ok(false) };
            if requester != from {
                return Ok(false);
            }
            if !self.set_friend_pair(from, to, FriendPair::default(), &pair).await? {
                continue;
            }
            self.write(request_rows(from, to, edge_id, at_us(edge_id, pair.next()), false)).await?;
            return Ok(true);
        }
        Err(contended(&format!("friend pair {from}, {to}")))
    }

    #[tracing::instrument(name = "user_store.list_friend_requests", skip_all, fields(db.system = "scylla"))]
    async fn list_friend_requests(
        &self,
        user_id: u64,
        direction: Option<Direction>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<PendingRequest>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let before = before.unwrap_or(MAX_ID);
        let mut out = Vec::new();
        for (incoming, wanted) in [(false, Direction::Outgoing), (true, Direction::Incoming)] {
            if direction.is_none_or(|d| d == wanted) {
                out.extend(self.requests(user_id, incoming, before, limit).await?);
            }
        }
        out.sort_by(|a, b| b.edge_id.cmp(&a.edge_id).then(a.user_id.cmp(&b.user_id)));
        out.truncate(limit);
        Ok(out)
    }

    #[tracing::instrument(name = "user_store.accept_friend_request", skip_all, fields(db.system = "scylla"))]
    async fn accept_friend_request(
        &self,
        from: u64,
        to: u64,
        edge_id: u64,
        direct_channel_id: u64,
    ) -> Result<Option<Friendship>, StoreError> {
        for _ in 0..ATTEMPTS {
            let pair = self.friend_pair(from, to).await?;
            let (Some(requester), Some(request_edge)) = (pair.requester, pair.request_edge) else { return Ok(None) };
            if requester != from {
                return Ok(None);
            }
            let friends =
                FriendPair { friend_edge: Some(edge_id), channel: Some(direct_channel_id), ..FriendPair::default() };
            if !self.set_friend_pair(from, to, friends, &pair).await? {
                continue;
            }
            let mut batch = request_rows(from, to, request_edge, at_us(request_edge, pair.next()), false);
            batch.extend(friend_rows(from, to, edge_id, direct_channel_id, at_us(edge_id, pair.next()), true));
            self.write(batch).await?;
            self.add(from, Count::Friends, 1).await?;
            self.add(to, Count::Friends, 1).await?;
            return Ok(Some(Friendship { user_id: from, edge_id, direct_channel_id }));
        }
        Err(contended(&format!("friend pair {from}, {to}")))
    }

    #[tracing::instrument(name = "user_store.remove_friend", skip_all, fields(db.system = "scylla"))]
    async fn remove_friend(&self, user_id: u64, friend: u64) -> Result<bool, StoreError> {
        self.end_friendship(user_id, friend, None, false).await
    }

    #[tracing::instrument(name = "user_store.get_friendship", skip_all, fields(db.system = "scylla"))]
    async fn get_friendship(&self, user_id: u64, friend: u64) -> Result<Option<Friendship>, StoreError> {
        let pair = self.friend_pair(user_id, friend).await?;
        Ok(pair.friend_edge.map(|edge_id| Friendship {
            user_id: friend,
            edge_id,
            direct_channel_id: pair.channel.unwrap_or(0),
        }))
    }

    #[tracing::instrument(name = "user_store.list_friends", skip_all, fields(db.system = "scylla"))]
    async fn list_friends(
        &self,
        user_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Friendship>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let values = values![user_id, before.unwrap_or(MAX_ID), limit_of(limit)];
        let rows: Vec<(i64, i64, i64)> = self.cql.rows(&FRIENDS, values).await.map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(e, friend, channel)| Friendship {
                user_id: chatmesh_cql::id(friend),
                edge_id: chatmesh_cql::id(e),
                direct_channel_id: chatmesh_cql::id(channel),
            })
            .collect())
    }

    #[tracing::instrument(name = "user_store.friend_count", skip_all, fields(db.system = "scylla"))]
    async fn friend_count(&self, user_id: u64) -> Result<u64, StoreError> {
        let (_, _, friends) = self.counts(user_id).await?;
        Ok(friends.unwrap_or(0).max(0) as u64)
    }

    #[tracing::instrument(name = "user_store.park_friends", skip_all, fields(db.system = "scylla"))]
    async fn park_friends(&self, user_id: u64) -> Result<(), StoreError> {
        for incoming in [false, true] {
            let mut cursor = MAX_ID;
            loop {
                let page = self.requests(user_id, incoming, cursor, self.page as usize).await?;
                for request in &page {
                    let from = if incoming { request.user_id } else { user_id };
                    self.end_request(user_id, request.user_id, Some((from, request.edge_id))).await?;
                }
                match page.last() {
                    Some(last) if page.len() >= self.page as usize => cursor = last.edge_id,
                    _ => break,
                }
            }
        }
        let mut cursor = MAX_ID;
        loop {
            let rows: Vec<(i64, i64, i64)> =
                self.cql.rows(&FRIENDS, values![user_id, cursor, self.page]).await.map_err(backend)?;
            for (edge_id, friend, _) in &rows {
                let (edge_id, friend) = (chatmesh_cql::id(*edge_id), chatmesh_cql::id(*friend));
                self.end_friendship(user_id, friend, Some(edge_id), true).await?;
            }
            match rows.last() {
                Some((e, _, _)) if rows.len() >= self.page as usize => cursor = chatmesh_cql::id(*e),
                _ => break,
            }
        }
        self.recount_friends(user_id).await
    }

    #[tracing::instrument(name = "user_store.restore_friends", skip_all, fields(db.system = "scylla"))]
    async fn restore_friends(&self, user_id: u64) -> Result<(), StoreError> {
        let mut cursor = -1i64;
        loop {
            let rows: Vec<(i64, i64, i64)> =
                self.cql.rows(&PARKED_FRIENDS, values![user_id, cursor, self.page]).await.map_err(backend)?;
            for (friend, edge_id, channel) in &rows {
                let (friend, edge_id, channel) =
                    (chatmesh_cql::id(*friend), chatmesh_cql::id(*edge_id), chatmesh_cql::id(*channel));
                self.restore_friend(user_id, friend, edge_id, channel).await?;
            }
            match rows.last() {
                Some((friend, _, _)) if rows.len() >= self.page as usize => cursor = *friend,
                _ => break,
            }
        }
        self.recount_friends(user_id).await
    }

    #[tracing::instrument(name = "user_store.erase_friends", skip_all, fields(db.system = "scylla"))]
    async fn erase_friends(&self, user_id: u64) -> Result<(), StoreError> {
        self.cql.execute(&ERASE_PARKED_FRIENDS, values![user_id]).await.map_err(backend)
    }
}
