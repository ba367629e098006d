//! The user store, in domain types: accounts and login sessions ([`Accounts`]), the social graph
//! ([`Follows`], [`Blocks`], [`Friends`]), reports ([`Reports`]), the prefix index user search
//! reads ([`Directory`]) and who-to-follow scores ([`Recommendations`]); [`UserStore`] is all
//! of them. Uniqueness of email and username
//! (case-insensitive) is the store's job, atomically with the write; so are the follow counters,
//! which always equal the lists they count.
//!
//! Backends: [`FjallUserStore`] (embedded, one process) and [`ScyllaUserStore`] (ScyllaDB).

#[cfg(test)]
#[doc(hidden)]
pub mod conformance;
mod fjall;
mod scylla;

use async_trait::async_trait;

pub use self::{
    fjall::{BulkFollow, BulkLoaded, BulkUser, FjallUserStore},
    scylla::ScyllaUserStore,
};
use crate::model::{
    Edge, Friendship, PendingRequest, ReportRecord, RequestOutcome, SessionRecord, Standing, UserRecord,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("email taken")]
    EmailTaken,
    #[error("username {0} taken")]
    UsernameTaken(String),
    #[error("{0}")]
    Backend(String),
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// It was the current one; the session now expects the new hash.
    Rotated(SessionRecord),
    /// It was already used: the session has been ended.
    Reused(SessionRecord),
    /// The session has ended or expired.
    Ended,
    /// No such session, or a hash the session never issued.
    Unknown,
}

/// Everything the user service keeps.
pub trait UserStore: Accounts + Follows + Blocks + Friends + Reports + Directory + Recommendations {}

impl<T: Accounts + Follows + Blocks + Friends + Reports + Directory + Recommendations> UserStore for T {}

/// Accounts and their login sessions.
#[async_trait]
pub trait Accounts: Send + Sync + 'static {
    /// Creates an account; fails if its email or username is taken (case-insensitively).
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    async fn get_user(&self, user_id: u64) -> Result<Option<UserRecord>, StoreError>;
    /// Accounts by id, in order (`None` for a missing one); backends read them in one round
    /// trip where they can (a page of a list reads fifty).
    async fn get_users(&self, user_ids: &[u64]) -> Result<Vec<Option<UserRecord>>, StoreError> {
        let mut users = Vec::with_capacity(user_ids.len());
        for &user_id in user_ids {
            users.push(self.get_user(user_id).await?);
        }
        Ok(users)
    }
    /// By lowercase email.
    async fn get_user_by_email(&self, email_key: &str) -> Result<Option<UserRecord>, StoreError>;
    /// By lowercase username.
    async fn get_user_by_username(&self, username_key: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Replaces an account's record, moving its email and username index entries when they
    /// change; fails if a new email or username is taken.
    async fn update_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Accounts newest first (by id), after the id `before` when given.
    async fn list_users(&self, before: Option<u64>, limit: usize) -> Result<Vec<UserRecord>, StoreError>;
    /// Accounts deleted at or before `cutoff_ms`, oldest deletion first (the sweeper's work).
    async fn users_deleted_before(&self, cutoff_ms: u64, limit: usize) -> Result<Vec<UserRecord>, StoreError>;
    /// Erases an account for good: its record, email and username (both free again), its
    /// sessions; the graph is erased separately ([`Follows::park_edges`] and friends first).
    async fn erase_user(&self, user_id: u64) -> Result<(), StoreError>;

    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Atomically swaps the session's refresh hash `presented_hash` for `new_hash`, detecting
    /// reuse of an older hash (which ends the session).
    async fn rotate_session(
        &self,
        session_id: &str,
        presented_hash: &str,
        new_hash: &str,
        now_ms: u64,
    ) -> Result<Rotation, StoreError>;
    /// Ends one session; returns it if it was live.
    async fn end_session(&self, session_id: &str, now_ms: u64) -> Result<Option<SessionRecord>, StoreError>;
    /// Ends every live session of a user; returns them.
    async fn end_user_sessions(&self, user_id: u64, now_ms: u64) -> Result<Vec<SessionRecord>, StoreError>;
    /// Session ids ended at or after `since_ms` (to re-arm revocations after a restart).
    async fn sessions_ended_since(&self, since_ms: u64) -> Result<Vec<String>, StoreError>;
}

/// Follows: `follower` → `followee`, with a counter of each side kept equal to its list.
#[async_trait]
pub trait Follows: Send + Sync + 'static {
    /// Records the follow (listed under `edge_id`) and counts it on both sides, in one atomic
    /// write; `false` (and nothing changes) if it already existed.
    async fn follow(&self, follower: u64, followee: u64, edge_id: u64) -> Result<bool, StoreError>;
    /// Removes the follow and its counts; `false` if there was none.
    async fn unfollow(&self, follower: u64, followee: u64) -> Result<bool, StoreError>;
    /// Who follows `user_id`, newest first, after the edge id `before` when given.
    async fn list_followers(&self, user_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<Edge>, StoreError>;
    /// Whom `user_id` follows, newest first, after the edge id `before` when given.
    async fn list_following(&self, user_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<Edge>, StoreError>;
    /// `(followers, following)` of a user: the lengths of the two lists.
    async fn follow_counts(&self, user_id: u64) -> Result<(u64, u64), StoreError>;
    /// [`Follows::follow_counts`] of several users, in order, in one round trip where the
    /// backend can.
    async fn follow_counts_of(&self, user_ids: &[u64]) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut counts = Vec::with_capacity(user_ids.len());
        for &user_id in user_ids {
            counts.push(self.follow_counts(user_id).await?);
        }
        Ok(counts)
    }
    /// Every user `user_id` follows (bounded by the following limit), unordered.
    async fn following_ids(&self, user_id: u64) -> Result<Vec<u64>, StoreError>;
    /// Takes every follow to and from `user_id` out of the lists and counters (the user was
    /// deleted), keeping them aside for [`Follows::restore_edges`]; idempotent.
    async fn park_edges(&self, user_id: u64) -> Result<(), StoreError>;
    /// Puts parked follows back (the owner restored the account), skipping any whose other side
    /// is gone; idempotent.
    async fn restore_edges(&self, user_id: u64) -> Result<(), StoreError>;
    /// Forgets parked follows for good (the sweeper erased the account).
    async fn erase_edges(&self, user_id: u64) -> Result<(), StoreError>;
}

/// Blocks, and each user's block epoch (raised by every block or unblock involving them).
#[async_trait]
pub trait Blocks: Send + Sync + 'static {
    /// Records that `blocker` blocks `blocked` (listed under `edge_id`) and, in the same atomic
    /// write, ends follows both ways (with their counts), pending friend requests both ways and
    /// a friendship, and raises both users' block epochs to `epoch`; `false` if it already existed
    /// (the epochs are raised all the same).
    async fn block(&self, blocker: u64, blocked: u64, edge_id: u64, epoch: u64) -> Result<bool, StoreError>;
    /// Lifts the block and raises both users' epochs to `epoch`; `false` if there was none.
    async fn unblock(&self, blocker: u64, blocked: u64, epoch: u64) -> Result<bool, StoreError>;
    /// Whom `user_id` blocks, newest first, after the edge id `before` when given.
    async fn list_blocked(&self, user_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<Edge>, StoreError>;
    /// Everyone `user_id` blocks and everyone who blocks `user_id`, and the user's block epoch.
    async fn block_sets(&self, user_id: u64) -> Result<BlockSets, StoreError>;
    /// How `user_id` and `other` stand (follows, blocks, friendship, requests), read in one go.
    async fn standing(&self, user_id: u64, other: u64) -> Result<Standing, StoreError>;
    /// A user's block epoch (0 before any block involved them).
    async fn block_epoch(&self, user_id: u64) -> Result<u64, StoreError>;
    /// Forgets every block to and from `user_id` (the sweeper erased the account).
    async fn erase_blocks(&self, user_id: u64) -> Result<(), StoreError>;
}

/// What [`Blocks::block_sets`] reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockSets {
    pub blocking: Vec<u64>,
    pub blocked_by: Vec<u64>,
    pub epoch: u64,
}

/// Friend requests and friendships (symmetric: each is listed on both sides).
#[async_trait]
pub trait Friends: Send + Sync + 'static {
    /// Records a request `from` → `to` (listed under `edge_id`) unless either has asked the
    /// other or they are friends, atomically with that check.
    async fn send_friend_request(&self, from: u64, to: u64, edge_id: u64) -> Result<RequestOutcome, StoreError>;
    /// Removes the request `from` → `to`; `false` if there was none.
    async fn delete_friend_request(&self, from: u64, to: u64) -> Result<bool, StoreError>;
    /// A user's pending requests, newest first, after the edge id `before`, only one way when
    /// `direction` is given.
    async fn list_friend_requests(
        &self,
        user_id: u64,
        direction: Option<crate::model::Direction>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<PendingRequest>, StoreError>;
    /// In one atomic write: the request `from` → `to` is gone and the two are friends (listed
    /// under `edge_id`, sharing `direct_channel_id`). `None` if there was no such request (and
    /// nothing changes); the friendship as `to` sees it otherwise.
    async fn accept_friend_request(
        &self,
        from: u64,
        to: u64,
        edge_id: u64,
        direct_channel_id: u64,
    ) -> Result<Option<Friendship>, StoreError>;
    /// Ends a friendship, on both sides; `false` if there was none.
    async fn remove_friend(&self, user_id: u64, friend: u64) -> Result<bool, StoreError>;
    /// The friendship as `user_id` sees it.
    async fn get_friendship(&self, user_id: u64, friend: u64) -> Result<Option<Friendship>, StoreError>;
    /// A user's friends, newest friendship first, after the edge id `before` when given.
    async fn list_friends(
        &self,
        user_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Friendship>, StoreError>;
    /// How many friends a user has.
    async fn friend_count(&self, user_id: u64) -> Result<u64, StoreError>;
    /// Takes a deleted user's friendships and requests out of every list, keeping friendships
    /// aside for [`Friends::restore_friends`] (requests are dropped); idempotent.
    async fn park_friends(&self, user_id: u64) -> Result<(), StoreError>;
    /// Puts parked friendships back, skipping any whose other side is gone; idempotent.
    async fn restore_friends(&self, user_id: u64) -> Result<(), StoreError>;
    /// Forgets parked friendships for good.
    async fn erase_friends(&self, user_id: u64) -> Result<(), StoreError>;
}

/// Reports and their resolution.
#[async_trait]
pub trait Reports: Send + Sync + 'static {
    /// Stores a new report, or merges it into the reporter's open report of the same target
    /// (same user, same chat): the category and text become the new ones, `updated_at_ms` moves.
    /// Returns the report as stored.
    async fn upsert_report(&self, report: &ReportRecord) -> Result<ReportRecord, StoreError>;
    async fn get_report(&self, report_id: u64) -> Result<Option<ReportRecord>, StoreError>;
    /// Reports newest first, open or resolved (`resolved`), optionally of one target user, after
    /// the report id `before` when given.
    async fn list_reports(
        &self,
        resolved: bool,
        target_user_id: Option<u64>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ReportRecord>, StoreError>;
    /// Records a report's resolution, only if it is still open: `false` if it was resolved
    /// already (nothing changes).
    async fn resolve_report(&self, report: &ReportRecord) -> Result<bool, StoreError>;
}

/// The prefix index of usernames and name words that user search reads.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Whether every account that existed before the directory was introduced is indexed.
    async fn directory_complete(&self) -> Result<bool, StoreError>;
    /// Records that every such account is indexed (the backfill finished).
    async fn mark_directory_complete(&self) -> Result<(), StoreError>;
    /// Makes `terms` (lowercase username, lowercase name words) the user's entries, replacing
    /// whatever it had; empty `terms` takes the user out.
    async fn index_terms(&self, user_id: u64, terms: &[String]) -> Result<(), StoreError>;
    /// Users with a term starting with `prefix`, in term order then by id, after the entry
    /// `after` (a term and a user id) when given; at most `limit` entries (one user may appear
    /// under several terms).
    async fn search_terms(
        &self,
        prefix: &str,
        after: Option<(String, u64)>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError>;
}

/// Who-to-follow candidates per user with a score (seed 001's `RECOMMENDATIONS:uid`): a
/// working set, not a record, so a bump lost to a race or a crash costs a point of score and
/// nothing else. Each user holds at most `cap` candidates; past it the lowest are trimmed.
#[async_trait]
pub trait Recommendations: Send + Sync + 'static {
    /// Adds each `(candidate, points)` to `user`'s scores (a new candidate starts at its
    /// points), then trims `user`'s candidates to the `cap` highest (on equal scores the lower
    /// candidate id goes first).
    async fn bump_recommendations(&self, user: u64, candidates: &[(u64, u64)], cap: usize) -> Result<(), StoreError>;
    /// Forgets `candidates` from `user`'s scores (absent ones are no-ops).
    async fn drop_recommendations(&self, user: u64, candidates: &[u64]) -> Result<(), StoreError>;
    /// `user`'s first `limit` candidates as `(candidate, score)`, highest score first and, on
    /// equal scores, higher candidate id first (the list is read whole, at most the cap).
    async fn list_recommendations(&self, user: u64, limit: usize) -> Result<Vec<(u64, u64)>, StoreError>;
    /// Forgets every candidate of `user` (an erased account).
    async fn erase_recommendations(&self, user: u64) -> Result<(), StoreError>;
}
