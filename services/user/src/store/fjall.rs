//! The embedded user store on fjall: every write is one serializable transaction synced to disk
//! (the single writer serializes them, so a read-check-write inside one is atomic), and reads
//! that must agree with each other read one snapshot.
//!
//! Ids in keys are u64 big-endian, so keys sort by id; a list reads newest first by walking a
//! user's range backwards. Keyspaces (key → value):
//! - `userid__user`: user id → UserRecord (JSON)
//! - `email__userid`: lowercase email → user id
//! - `username__userid`: lowercase username → user id
//! - `deletedms_userid__`: deleted-at ms ++ user id → () (accounts awaiting the sweeper)
//! - `sessionid__session`: session id → SessionRecord (JSON)
//! - `userid_sessionid__`: user id ++ session id → ()
//! - `endedms_sessionid__`: ended-at ms ++ session id → ()
//! - `followee_edgeid_follower__`: → () (a user's followers)
//! - `follower_edgeid_followee__`: → () (whom a user follows)
//! - `follower_followee__edgeid`: → edge id (one follow, for existence and removal)
//! - `userid__followcounts`: user id → followers ++ following
//! - `parkeduser_followee__edgeid`, `parkeduser_follower__edgeid`: a deleted user's follows out
//!   and in, kept aside until restored or erased
//! - `blocker_edgeid_blocked__`: → () (whom a user blocks)
//! - `blocker_blocked__edgeid`: → edge id
//! - `blocked_blocker__edgeid`: → edge id (who blocks a user)
//! - `userid__blockepoch`: user id → block epoch
//! - `from_to__edgeid`: one pending friend request → its edge id
//! - `to_edgeid_from__`: → () (a user's incoming requests)
//! - `from_edgeid_to__`: → () (a user's outgoing requests)
//! - `userid_friend__edgeid_directchannelid`: one side of a friendship
//! - `userid_edgeid_friend__directchannelid`: a user's friends
//! - `userid__friendcount`: user id → friend count
//! - `parkeduser_friend__edgeid_directchannelid`: a deleted user's friendships, kept aside
//! - `reportid__report`: report id → ReportRecord (JSON)
//! - `status_reportid__`: status (0 open, 1 resolved) ++ report id → ()
//! - `status_targetuserid_reportid__`: status ++ target user id ++ report id → ()
//! - `reporter_targetuserid_chatid_channelid__openreportid`: an open report to merge into
//!   (chat and channel 0 for a report of a user or a status; a status report's key goes on
//!   with the status id)
//! - `term_userid__`: search term ++ 0x00 ++ user id → ()
//! - `userid__terms`: user id → the user's search terms (JSON)
//! - `userid_candidate__score`: user id ++ candidate id → score (a who-to-follow candidate)
//! - `userid_invscore_invcandidate__`: user id ++ (u64::MAX − score) ++ (u64::MAX − candidate
//!   id) → () (a user's candidates, highest score first, then higher candidate first)
//! - `meta`: `format_version` → "1"; `directory_complete` → "1" once every account older
//!   than user search was indexed

use std::{ops::Bound, path::Path, sync::Arc};

use async_trait::async_trait;
use fjall::{
    Guard, Iter, KeyspaceCreateOptions, PersistMode, Readable, SingleWriterTxDatabase, SingleWriterTxKeyspace,
    SingleWriterWriteTx, Slice,
};
use serde::{Serialize, de::DeserializeOwned};

use super::{Accounts, BlockSets, Blocks, Directory, Follows, Friends, Reports, Rotation, StoreError};
use crate::model::{
    Direction, Edge, Friendship, PendingRequest, ReportRecord, RequestOutcome, SessionRecord, Standing, UserRecord,
};

pub use self::bulk::{BulkFollow, BulkLoaded, BulkUser};

mod bulk;
mod graph;
mod recommendations;
mod reports;

const FORMAT_VERSION: &str = "1";
/// The `meta` key marking the directory backfilled.
const DIRECTORY_COMPLETE: &str = "directory_complete";

/// Report status, the first part of the report index keys.
const OPEN: u64 = 0;
const RESOLVED: u64 = 1;

type Ks = SingleWriterTxKeyspace;
type Tx<'a> = SingleWriterWriteTx<'a>;

/// The user store in a local folder (one process).
#[derive(Clone)]
pub struct FjallUserStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: SingleWriterTxDatabase,
    users: Ks,
    emails: Ks,
    usernames: Ks,
    deleted_users: Ks,
    sessions: Ks,
    user_sessions: Ks,
    ended_sessions: Ks,
    followers: Ks,
    following: Ks,
    follow_pairs: Ks,
    follow_counts: Ks,
    parked_following: Ks,
    parked_followers: Ks,
    blocking: Ks,
    block_pairs: Ks,
    blocked_by: Ks,
    block_epochs: Ks,
    request_pairs: Ks,
    requests_in: Ks,
    requests_out: Ks,
    friendships: Ks,
    friend_list: Ks,
    friend_counts: Ks,
    parked_friends: Ks,
    reports: Ks,
    reports_by_status: Ks,
    reports_by_target: Ks,
    open_reports: Ks,
    terms: Ks,
    user_terms: Ks,
    recommendations: Ks,
    recommendation_ranks: Ks,
    meta: Ks,
}

impl std::fmt::Debug for FjallUserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallUserStore").finish_non_exhaustive()
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(backend)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(backend)
}

fn id_from(bytes: &[u8]) -> Result<u64, StoreError> {
    bytes.try_into().map(u64::from_be_bytes).map_err(|_| backend("corrupt user id"))
}

/// Ids joined big-endian: a key that sorts by them in order.
fn key(ids: &[u64]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_be_bytes()).collect()
}

/// The `n`th id of a key or value made by [`key`].
fn part(bytes: &[u8], n: usize) -> Result<u64, StoreError> {
    bytes
        .get(n * 8..n * 8 + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| backend("corrupt key"))
}

fn user_session_key(user_id: u64, session_id: &str) -> Vec<u8> {
    let mut key = user_id.to_be_bytes().to_vec();
    key.extend_from_slice(session_id.as_bytes());
    key
}

fn ended_key(ended_ms: u64, session_id: &str) -> Vec<u8> {
    let mut key = ended_ms.to_be_bytes().to_vec();
    key.extend_from_slice(session_id.as_bytes());
    key
}

/// `term ++ 0x00 ++ user id`: the separator sorts a term before every longer term it begins.
fn term_key(term: &str, user_id: u64) -> Vec<u8> {
    let mut key = term.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&user_id.to_be_bytes());
    key
}

fn split_term_key(key: &[u8]) -> Result<(String, u64), StoreError> {
    let split = key.len().checked_sub(9).ok_or_else(|| backend("corrupt term key"))?;
    let term = String::from_utf8(key[..split].to_vec()).map_err(backend)?;
    Ok((term, id_from(&key[split + 1..])?))
}

/// The key under which one reporter's open reports of one target merge.
fn open_report_key(report: &ReportRecord) -> Vec<u8> {
    let (chat_id, channel_id) = report.target.chat.unwrap_or((0, 0));
    let mut ids = vec![report.reporter_id, report.target.user_id, chat_id, channel_id];
    // why: appended, so the keys of user and chat reports stay as they were stored
    ids.extend(report.target.status);
    key(&ids)
}

fn keys_of(iter: impl Iterator<Item = Guard>, limit: usize) -> Result<Vec<Slice>, StoreError> {
    iter.take(limit).map(|guard| guard.key().map_err(backend)).collect()
}

fn pairs_of(iter: Iter) -> Result<Vec<(Slice, Slice)>, StoreError> {
    iter.map(|guard| guard.into_inner().map_err(backend)).collect()
}

/// Keys under the ids `prefix`, highest next id first, below `before` when given.
fn newest_first(
    r: &impl Readable,
    ks: &Ks,
    prefix: &[u64],
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<Slice>, StoreError> {
    let start = key(prefix);
    match before {
        Some(before) => {
            let end = [prefix, &[before]].concat();
            keys_of(r.range(ks, start..key(&end)).rev(), limit)
        }
        None => keys_of(r.prefix(ks, start).rev(), limit),
    }
}

/// The `n`th id of a stored value, 0 when there is none.
fn counter(r: &impl Readable, ks: &Ks, k: &[u8], n: usize) -> Result<u64, StoreError> {
    match r.get(ks, k).map_err(backend)? {
        Some(v) => part(&v, n),
        None => Ok(0),
    }
}

impl FjallUserStore {
    /// Opens (or creates) the store in `dir`, refusing a store of another format version.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db =
            chatmesh_platform::embedded::open_versioned(dir, "user", FORMAT_VERSION).map_err(StoreError::Backend)?;
        let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).map_err(backend);
        let inner = Inner {
            users: ks("userid__user")?,
            emails: ks("email__userid")?,
            usernames: ks("username__userid")?,
            deleted_users: ks("deletedms_userid__")?,
            sessions: ks("sessionid__session")?,
            user_sessions: ks("userid_sessionid__")?,
            ended_sessions: ks("endedms_sessionid__")?,
            followers: ks("followee_edgeid_follower__")?,
            following: ks("follower_edgeid_followee__")?,
            follow_pairs: ks("follower_followee__edgeid")?,
            follow_counts: ks("userid__followcounts")?,
            parked_following: ks("parkeduser_followee__edgeid")?,
            parked_followers: ks("parkeduser_follower__edgeid")?,
            blocking: ks("blocker_edgeid_blocked__")?,
            block_pairs: ks("blocker_blocked__edgeid")?,
            blocked_by: ks("blocked_blocker__edgeid")?,
            block_epochs: ks("userid__blockepoch")?,
            request_pairs: ks("from_to__edgeid")?,
            requests_in: ks("to_edgeid_from__")?,
            requests_out: ks("from_edgeid_to__")?,
            friendships: ks("userid_friend__edgeid_directchannelid")?,
            friend_list: ks("userid_edgeid_friend__directchannelid")?,
            friend_counts: ks("userid__friendcount")?,
            parked_friends: ks("parkeduser_friend__edgeid_directchannelid")?,
            reports: ks("reportid__report")?,
            reports_by_status: ks("status_reportid__")?,
            reports_by_target: ks("status_targetuserid_reportid__")?,
            open_reports: ks("reporter_targetuserid_chatid_channelid__openreportid")?,
            terms: ks("term_userid__")?,
            user_terms: ks("userid__terms")?,
            recommendations: ks("userid_candidate__score")?,
            recommendation_ranks: ks("userid_invscore_invcandidate__")?,
            meta: ks("meta")?,
            db,
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// A store in a fresh temporary folder (tests).
    #[cfg(test)]
    pub fn temp() -> (tempfile::TempDir, Self) {
        let dir = tempfile::tempdir().expect("temporary folder");
        let store = Self::open(dir.path()).expect("temporary user store opens");
        (dir, store)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner)).await.map_err(backend)?
    }

    /// Runs `work` in one write transaction and commits it (durably) unless it fails.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner, &mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.blocking(move |s| {
            let mut tx = s.db.write_tx().durability(Some(PersistMode::SyncAll));
            let out = work(s, &mut tx)?;
            tx.commit().map_err(backend)?;
            Ok(out)
        })
        .await
    }
}

impl Inner {
    fn get_json<T: DeserializeOwned>(&self, ks: &Ks, key: &[u8]) -> Result<Option<T>, StoreError> {
        ks.get(key).map_err(backend)?.map(|v| decode(&v)).transpose()
    }

    fn user_by_index(&self, index: &Ks, key: &str) -> Result<Option<UserRecord>, StoreError> {
        match index.get(key.as_bytes()).map_err(backend)? {
            Some(id) => self.get_json(&self.users, &id_from(&id)?.to_be_bytes()),
            None => Ok(None),
        }
    }

    fn read_user(&self, r: &impl Readable, user_id: u64) -> Result<Option<UserRecord>, StoreError> {
        r.get(&self.users, user_id.to_be_bytes()).map_err(backend)?.map(|v| decode(&v)).transpose()
    }

    /// Whether `user_id` has an account that is not deleted (parked edges come back only to those).
    fn is_live(&self, r: &impl Readable, user_id: u64) -> Result<bool, StoreError> {
        Ok(self.read_user(r, user_id)?.is_some_and(|u| u.deleted_at_ms.is_none()))
    }

    fn has(&self, r: &impl Readable, ks: &Ks, ids: &[u64]) -> Result<bool, StoreError> {
        r.contains_key(ks, key(ids)).map_err(backend)
    }

    fn blocked_either_way(&self, r: &impl Readable, a: u64, b: u64) -> Result<bool, StoreError> {
        Ok(self.has(r, &self.block_pairs, &[a, b])? || self.has(r, &self.block_pairs, &[b, a])?)
    }

    /// `(other id, stored value)` of every key `user_id ++ other` in `ks`.
    fn pairs_under(&self, r: &impl Readable, ks: &Ks, user_id: u64) -> Result<Vec<(u64, Slice)>, StoreError> {
        pairs_of(r.prefix(ks, user_id.to_be_bytes()))?.into_iter().map(|(k, v)| Ok((part(&k, 1)?, v))).collect()
    }

    /// Keeps `deletedms_userid__` in step with an account's `deleted_at_ms` (`None`: no record).
    fn move_deletion_index(&self, tx: &mut Tx<'_>, old: Option<&UserRecord>, new: Option<&UserRecord>) {
        let deleted = |u: Option<&UserRecord>| u.and_then(|u| u.deleted_at_ms.map(|at| key(&[at, u.user_id])));
        let (was, is) = (deleted(old), deleted(new));
        if was != is {
            if let Some(k) = was {
                tx.remove(&self.deleted_users, k);
            }
            if let Some(k) = is {
                tx.insert(&self.deleted_users, k, b"");
            }
        }
    }

    // ---- follows

    fn bump_follow_counts(
        &self,
        tx: &mut Tx<'_>,
        user_id: u64,
        followers: i64,
        following: i64,
    ) -> Result<(), StoreError> {
        let k = user_id.to_be_bytes();
        let followers = counter(tx, &self.follow_counts, &k, 0)?.saturating_add_signed(followers);
        let following = counter(tx, &self.follow_counts, &k, 1)?.saturating_add_signed(following);
        if followers == 0 && following == 0 {
            tx.remove(&self.follow_counts, k);
        } else {
            tx.insert(&self.follow_counts, k, key(&[followers, following]));
        }
        Ok(())
    }

    fn add_follow(&self, tx: &mut Tx<'_>, follower: u64, followee: u64, edge_id: u64) -> Result<bool, StoreError> {
        if self.has(tx, &self.follow_pairs, &[follower, followee])? {
            return Ok(false);
        }
        tx.insert(&self.follow_pairs, key(&[follower, followee]), edge_id.to_be_bytes());
        tx.insert(&self.followers, key(&[followee, edge_id, follower]), b"");
        tx.insert(&self.following, key(&[follower, edge_id, followee]), b"");
        self.bump_follow_counts(tx, followee, 1, 0)?;
        self.bump_follow_counts(tx, follower, 0, 1)?;
        Ok(true)
    }

    /// Removes a follow and its counts; its edge id if there was one.
    fn remove_follow(&self, tx: &mut Tx<'_>, follower: u64, followee: u64) -> Result<Option<u64>, StoreError> {
        let pair = key(&[follower, followee]);
        let Some(edge) = tx.get(&self.follow_pairs, &pair).map_err(backend)? else {
            return Ok(None);
        };
        let edge_id = id_from(&edge)?;
        tx.remove(&self.follow_pairs, pair);
        tx.remove(&self.followers, key(&[followee, edge_id, follower]));
        tx.remove(&self.following, key(&[follower, edge_id, followee]));
        self.bump_follow_counts(tx, followee, -1, 0)?;
        self.bump_follow_counts(tx, follower, 0, -1)?;
        Ok(Some(edge_id))
    }

    fn park_follows(&self, tx: &mut Tx<'_>, user_id: u64) -> Result<(), StoreError> {
        for (followee, _) in self.pairs_under(tx, &self.follow_pairs, user_id)? {
            if let Some(edge_id) = self.remove_follow(tx, user_id, followee)? {
                tx.insert(&self.parked_following, key(&[user_id, followee]), edge_id.to_be_bytes());
            }
        }
        for k in keys_of(tx.prefix(&self.followers, user_id.to_be_bytes()), usize::MAX)? {
            let follower = part(&k, 2)?;
            if let Some(edge_id) = self.remove_follow(tx, follower, user_id)? {
                tx.insert(&self.parked_followers, key(&[user_id, follower]), edge_id.to_be_bytes());
            }
        }
        Ok(())
    }

    fn forget_parked_follows(&self, tx: &mut Tx<'_>, user_id: u64) -> Result<(), StoreError> {
        for ks in [&self.parked_following, &self.parked_followers] {
            for (other, _) in self.pairs_under(tx, ks, user_id)? {
                tx.remove(ks, key(&[user_id, other]));
            }
        }
        Ok(())
    }

    /// A user's edges in a `userid_edgeid_other__` keyspace, newest first.
    fn edges(&self, ks: &Ks, user_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<Edge>, StoreError> {
        newest_first(&self.db.read_tx(), ks, &[user_id], before, limit)?
            .iter()
            .map(|k| Ok(Edge { user_id: part(k, 2)?, edge_id: part(k, 1)? }))
            .collect()
    }

    // ---- blocks

    fn raise_epoch(&self, tx: &mut Tx<'_>, user_id: u64, epoch: u64) -> Result<(), StoreError> {
        if epoch > counter(tx, &self.block_epochs, &user_id.to_be_bytes(), 0)? {
            tx.insert(&self.block_epochs, user_id.to_be_bytes(), epoch.to_be_bytes());
        }
        Ok(())
    }

    fn remove_block(&self, tx: &mut Tx<'_>, blocker: u64, blocked: u64) -> Result<bool, StoreError> {
        let pair = key(&[blocker, blocked]);
        let Some(edge) = tx.get(&self.block_pairs, &pair).map_err(backend)? else {
            return Ok(false);
        };
        tx.remove(&self.block_pairs, pair);
        tx.remove(&self.blocked_by, key(&[blocked, blocker]));
        tx.remove(&self.blocking, key(&[blocker, id_from(&edge)?, blocked]));
        Ok(true)
    }

    // ---- friend requests and friendships

    fn add_request(&self, tx: &mut Tx<'_>, from: u64, to: u64, edge_id: u64) {
        tx.insert(&self.request_pairs, key(&[from, to]), edge_id.to_be_bytes());
        tx.insert(&self.requests_out, key(&[from, edge_id, to]), b"");
        tx.insert(&self.requests_in, key(&[to, edge_id, from]), b"");
    }

    fn remove_request(&self, tx: &mut Tx<'_>, from: u64, to: u64) -> Result<bool, StoreError> {
        let pair = key(&[from, to]);
        let Some(edge) = tx.get(&self.request_pairs, &pair).map_err(backend)? else {
            return Ok(false);
        };
        let edge_id = id_from(&edge)?;
        tx.remove(&self.request_pairs, pair);
        tx.remove(&self.requests_out, key(&[from, edge_id, to]));
        tx.remove(&self.requests_in, key(&[to, edge_id, from]));
        Ok(true)
    }

    fn remove_requests_of(&self, tx: &mut Tx<'_>, user_id: u64) -> Result<(), StoreError> {
        for k in keys_of(tx.prefix(&self.requests_out, user_id.to_be_bytes()), usize::MAX)? {
            self.remove_request(tx, user_id, part(&k, 2)?)?;
        }
        for k in keys_of(tx.prefix(&self.requests_in, user_id.to_be_bytes()), usize::MAX)? {
            self.remove_request(tx, part(&k, 2)?, user_id)?;
        }
        Ok(())
    }

    fn bump_friend_count(&self, tx: &mut Tx<'_>, user_id: u64, by: i64) -> Result<(), StoreError> {
        let k = user_id.to_be_bytes();
        match counter(tx, &self.friend_counts, &k, 0)?.saturating_add_signed(by) {
            0 => tx.remove(&self.friend_counts, k),
            n => tx.insert(&self.friend_counts, k, n.to_be_bytes()),
        }
        Ok(())
    }

    fn read_friendship(&self, r: &impl Readable, user_id: u64, friend: u64) -> Result<Option<Friendship>, StoreError> {
        r.get(&self.friendships, key(&[user_id, friend]))
            .map_err(backend)?
            .map(|v| Ok(Friendship { user_id: friend, edge_id: part(&v, 0)?, direct_channel_id: part(&v, 1)? }))
            .transpose()
    }

    /// Makes `a` and `b` friends unless they are; the friendship as `a` sees it.
    fn add_friendship(
        &self,
        tx: &mut Tx<'_>,
        a: u64,
        b: u64,
        edge_id: u64,
        channel: u64,
    ) -> Result<Friendship, StoreError> {
        if let Some(existing) = self.read_friendship(tx, a, b)? {
            return Ok(existing);
        }
        for (me, friend) in [(a, b), (b, a)] {
            tx.insert(&self.friendships, key(&[me, friend]), key(&[edge_id, channel]));
            tx.insert(&self.friend_list, key(&[me, edge_id, friend]), channel.to_be_bytes());
            self.bump_friend_count(tx, me, 1)?;
        }
        Ok(Friendship { user_id: b, edge_id, direct_channel_id: channel })
    }

    fn remove_friendship(&self, tx: &mut Tx<'_>, a: u64, b: u64) -> Result<Option<Friendship>, StoreError> {
        let Some(friendship) = self.read_friendship(tx, a, b)? else {
            return Ok(None);
        };
        for (me, friend) in [(a, b), (b, a)] {
            tx.remove(&self.friendships, key(&[me, friend]));
            tx.remove(&self.friend_list, key(&[me, friendship.edge_id, friend]));
            self.bump_friend_count(tx, me, -1)?;
        }
        Ok(Some(friendship))
    }

    fn park_friendships(&self, tx: &mut Tx<'_>, user_id: u64) -> Result<(), StoreError> {
        for (friend, _) in self.pairs_under(tx, &self.friendships, user_id)? {
            if let Some(f) = self.remove_friendship(tx, user_id, friend)? {
                tx.insert(&self.parked_friends, key(&[user_id, friend]), key(&[f.edge_id, f.direct_channel_id]));
            }
        }
        self.remove_requests_of(tx, user_id)
    }

    fn forget_parked_friends(&self, tx: &mut Tx<'_>, user_id: u64) -> Result<(), StoreError> {
        for (friend, _) in self.pairs_under(tx, &self.parked_friends, user_id)? {
            tx.remove(&self.parked_friends, key(&[user_id, friend]));
        }
        Ok(())
    }

    fn pending(
        &self,
        r: &impl Readable,
        user_id: u64,
        direction: Direction,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<PendingRequest>, StoreError> {
        let ks = match direction {
            Direction::Incoming => &self.requests_in,
            Direction::Outgoing => &self.requests_out,
        };
        newest_first(r, ks, &[user_id], before, limit)?
            .iter()
            .map(|k| Ok(PendingRequest { user_id: part(k, 2)?, direction, edge_id: part(k, 1)? }))
            .collect()
    }

    // ---- reports

    fn put_report(&self, tx: &mut Tx<'_>, report: &ReportRecord) -> Result<(), StoreError> {
        tx.insert(&self.reports, report.report_id.to_be_bytes(), encode(report)?);
        Ok(())
    }

    fn index_report(&self, tx: &mut Tx<'_>, report: &ReportRecord, status: u64, add: bool) {
        let keys = [
            (&self.reports_by_status, key(&[status, report.report_id])),
            (&self.reports_by_target, key(&[status, report.target.user_id, report.report_id])),
        ];
        for (ks, k) in keys {
            if add {
                tx.insert(ks, k, b"");
            } else {
                tx.remove(ks, k);
            }
        }
    }
}

#[async_trait]
impl Accounts for FjallUserStore {
    #[tracing::instrument(name = "user_store.insert_user", skip_all, fields(db.system = "fjall"))]
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let user = user.clone();
        self.write(move |s, tx| {
            if tx.contains_key(&s.emails, user.email_key()).map_err(backend)? {
                return Err(StoreError::EmailTaken);
            }
            if let Some(key) = user.username_key() {
                if tx.contains_key(&s.usernames, &key).map_err(backend)? {
                    return Err(StoreError::UsernameTaken(user.username.clone().unwrap_or_default()));
                }
                tx.insert(&s.usernames, key, user.user_id.to_be_bytes());
            }
            tx.insert(&s.emails, user.email_key(), user.user_id.to_be_bytes());
            tx.insert(&s.users, user.user_id.to_be_bytes(), encode(&user)?);
            s.move_deletion_index(tx, None, Some(&user));
            Ok(())
        })
        .await
    }

    #[tracing::instrument(name = "user_store.get_user", skip_all, fields(db.system = "fjall"))]
    async fn get_user(&self, user_id: u64) -> Result<Option<UserRecord>, StoreError> {
        self.blocking(move |s| s.get_json(&s.users, &user_id.to_be_bytes())).await
    }

    #[tracing::instrument(name = "user_store.get_users", skip_all, fields(db.system = "fjall"))]
    async fn get_users(&self, user_ids: &[u64]) -> Result<Vec<Option<UserRecord>>, StoreError> {
        let ids = user_ids.to_vec();
        self.blocking(move |s| ids.iter().map(|id| s.get_json(&s.users, &id.to_be_bytes())).collect()).await
    }

    #[tracing::instrument(name = "user_store.get_user_by_email", skip_all, fields(db.system = "fjall"))]
    async fn get_user_by_email(&self, email_key: &str) -> Result<Option<UserRecord>, StoreError> {
        let key = email_key.to_owned();
        self.blocking(move |s| s.user_by_index(&s.emails, &key)).await
    }

    #[tracing::instrument(name = "user_store.get_user_by_username", skip_all, fields(db.system = "fjall"))]
    async fn get_user_by_username(&self, username_key: &str) -> Result<Option<UserRecord>, StoreError> {
        let key = username_key.to_owned();
        self.blocking(move |s| s.user_by_index(&s.usernames, &key)).await
    }

    #[tracing::instrument(name = "user_store.update_user", skip_all, fields(db.system = "fjall"))]
    async fn update_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let user = user.clone();
        self.write(move |s, tx| {
            let Some(old) = s.read_user(tx, user.user_id)? else {
                return Err(backend("user vanished"));
            };
            if old.email_key() != user.email_key() {
                if let Some(owner) = tx.get(&s.emails, user.email_key()).map_err(backend)?
                    && id_from(&owner)? != user.user_id
                {
                    return Err(StoreError::EmailTaken);
                }
                tx.insert(&s.emails, user.email_key(), user.user_id.to_be_bytes());
                tx.remove(&s.emails, old.email_key());
            }
            if old.username_key() != user.username_key() {
                if let Some(key) = user.username_key() {
                    if let Some(owner) = tx.get(&s.usernames, &key).map_err(backend)?
                        && id_from(&owner)? != user.user_id
                    {
                        return Err(StoreError::UsernameTaken(user.username.clone().unwrap_or_default()));
                    }
                    tx.insert(&s.usernames, key, user.user_id.to_be_bytes());
                }
                if let Some(old_key) = old.username_key() {
                    tx.remove(&s.usernames, old_key);
                }
            }
            tx.insert(&s.users, user.user_id.to_be_bytes(), encode(&user)?);
            s.move_deletion_index(tx, Some(&old), Some(&user));
            Ok(())
        })
        .await
    }

    #[tracing::instrument(name = "user_store.list_users", skip_all, fields(db.system = "fjall"))]
    async fn list_users(&self, before: Option<u64>, limit: usize) -> Result<Vec<UserRecord>, StoreError> {
        self.blocking(move |s| {
            let snapshot = s.db.read_tx();
            let iter = match before {
                Some(before) => snapshot.range(&s.users, ..before.to_be_bytes().to_vec()),
                None => snapshot.iter(&s.users),
            };
            iter.rev().take(limit).map(|guard| decode(&guard.value().map_err(backend)?)).collect()
        })
        .await
    }

    #[tracing::instrument(name = "user_store.users_deleted_before", skip_all, fields(db.system = "fjall"))]
    async fn users_deleted_before(&self, cutoff_ms: u64, limit: usize) -> Result<Vec<UserRecord>, StoreError> {
        self.blocking(move |s| {
            let snapshot = s.db.read_tx();
            let mut users = Vec::new();
            for k in keys_of(snapshot.range(&s.deleted_users, ..=key(&[cutoff_ms, u64::MAX])), limit)? {
                if let Some(user) = s.read_user(&snapshot, part(&k, 1)?)? {
                    users.push(user);
                }
            }
            Ok(users)
        })
        .await
    }

    #[tracing::instrument(name = "user_store.erase_user", skip_all, fields(db.system = "fjall", %user_id))]
    async fn erase_user(&self, user_id: u64) -> Result<(), StoreError> {
        self.write(move |s, tx| {
            if let Some(user) = s.read_user(tx, user_id)? {
                let owned = |index: &Ks, k: &str| -> Result<bool, StoreError> {
                    Ok(tx.get(index, k).map_err(backend)?.is_some_and(|id| id.as_ref() == user_id.to_be_bytes()))
                };
                let email_owned = owned(&s.emails, &user.email_key())?;
                let username_owned = user.username_key().map(|k| owned(&s.usernames, &k)).transpose()?.unwrap_or(false);
                if email_owned {
                    tx.remove(&s.emails, user.email_key());
                }
                if username_owned && let Some(k) = user.username_key() {
                    tx.remove(&s.usernames, k);
                }
                s.move_deletion_index(tx, Some(&user), None);
                tx.remove(&s.users, user_id.to_be_bytes());
            }
            for k in keys_of(tx.prefix(&s.user_sessions, user_id.to_be_bytes()), usize::MAX)? {
                let sid = &k[8..];
                if let Some(bytes) = tx.get(&s.sessions, sid).map_err(backend)? {
                    let session: SessionRecord = decode(&bytes)?;
                    if let Some(ended) = session.ended_at_ms {
                        tx.remove(&s.ended_sessions, ended_key(ended, &session.session_id));
                    }
                    tx.remove(&s.sessions, sid);
                }
                tx.remove(&s.user_sessions, k);
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(name = "user_store.insert_session", skip_all, fields(db.system = "fjall"))]
    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let session = session.clone();
        self.write(move |s, tx| {
            tx.insert(&s.sessions, session.session_id.as_bytes(), encode(&session)?);
            tx.insert(&s.user_sessions, user_session_key(session.user_id, &session.session_id), b"");
            Ok(())
        })
        .await
    }

    #[tracing::instrument(name = "user_store.get_session", skip_all, fields(db.system = "fjall"))]
    async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let sid = session_id.to_owned();
        self.blocking(move |s| s.get_json(&s.sessions, sid.as_bytes())).await
    }

    #[tracing::instrument(name = "user_store.rotate_session", skip_all, fields(db.system = "fjall"))]
    async fn rotate_session(
        &self,
        session_id: &str,
        presented_hash: &str,
        new_hash: &str,
        now_ms: u64,
    ) -> Result<Rotation, StoreError> {
        let (sid, presented, new_hash) = (session_id.to_owned(), presented_hash.to_owned(), new_hash.to_owned());
        self.write(move |s, tx| {
            let Some(bytes) = tx.get(&s.sessions, sid.as_bytes()).map_err(backend)? else {
                return Ok(Rotation::Unknown);
            };
            let mut session: SessionRecord = decode(&bytes)?;
            if session.ended_at_ms.is_some() || session.expires_at_ms <= now_ms {
                return Ok(Rotation::Ended);
            }
            if session.refresh_hash == presented {
                session.used_hashes.push(std::mem::replace(&mut session.refresh_hash, new_hash));
                let excess = session.used_hashes.len().saturating_sub(SessionRecord::USED_HASHES_KEPT);
                session.used_hashes.drain(..excess);
                tx.insert(&s.sessions, sid.as_bytes(), encode(&session)?);
                return Ok(Rotation::Rotated(session));
            }
            if session.used_hashes.contains(&presented) {
                session.ended_at_ms = Some(now_ms);
                tx.insert(&s.sessions, sid.as_bytes(), encode(&session)?);
                tx.insert(&s.ended_sessions, ended_key(now_ms, &sid), b"");
                return Ok(Rotation::Reused(session));
            }
            Ok(Rotation::Unknown)
        })
        .await
    }

    #[tracing::instrument(name = "user_store.end_session", skip_all, fields(db.system = "fjall"))]
    async fn end_session(&self, session_id: &str, now_ms: u64) -> Result<Option<SessionRecord>, StoreError> {
        let sid = session_id.to_owned();
        self.write(move |s, tx| {
            let Some(bytes) = tx.get(&s.sessions, sid.as_bytes()).map_err(backend)? else {
                return Ok(None);
            };
            let mut session: SessionRecord = decode(&bytes)?;
            if session.ended_at_ms.is_some() {
                return Ok(None);
            }
            session.ended_at_ms = Some(now_ms);
            tx.insert(&s.sessions, sid.as_bytes(), encode(&session)?);
            tx.insert(&s.ended_sessions, ended_key(now_ms, &sid), b"");
            Ok(Some(session))
        })
        .await
    }

    #[tracing::instrument(name = "user_store.end_user_sessions", skip_all, fields(db.system = "fjall"))]
    async fn end_user_sessions(&self, user_id: u64, now_ms: u64) -> Result<Vec<SessionRecord>, StoreError> {
        self.write(move |s, tx| {
            let mut ended = Vec::new();
            for k in keys_of(tx.prefix(&s.user_sessions, user_id.to_be_bytes()), usize::MAX)? {
                let sid = String::from_utf8_lossy(&k[8..]).into_owned();
                let Some(bytes) = tx.get(&s.sessions, sid.as_bytes()).map_err(backend)? else { continue };
                let mut session: SessionRecord = decode(&bytes)?;
                if session.ended_at_ms.is_some() {
                    continue;
                }
                session.ended_at_ms = Some(now_ms);
                tx.insert(&s.sessions, sid.as_bytes(), encode(&session)?);
                tx.insert(&s.ended_sessions, ended_key(now_ms, &sid), b"");
                ended.push(session);
            }
            Ok(ended)
        })
        .await
    }

    #[tracing::instrument(name = "user_store.sessions_ended_since", skip_all, fields(db.system = "fjall"))]
    async fn sessions_ended_since(&self, since_ms: u64) -> Result<Vec<String>, StoreError> {
        self.blocking(move |s| {
            let mut sids = Vec::new();
            for guard in s.ended_sessions.inner().range(since_ms.to_be_bytes()..) {
                let key = guard.key().map_err(backend)?;
                sids.push(String::from_utf8_lossy(&key[8..]).into_owned());
            }
            Ok(sids)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::FjallUserStore;

    crate::user_store_suite!(FjallUserStore::temp);
}
