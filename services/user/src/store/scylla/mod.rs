//! The user store on ScyllaDB (schema: `crates/cql/migrations/0001_users.cql`,
//! `0007_social_graph.cql`, `0009_status_reports.cql`, `0010_recommendations.cql`, each table
//! commented there).
//!
//! Tables (partition key, clustering):
//! - `users` ((user_id)) and `user_states` ((user_id)): the account, one column per record field
//!   (role, suspension and deletion in `user_states`, added by 0007; no row there reads as a plain
//!   user), written together in one logged batch; plain writes only.
//! - `users_by_email` ((email_key)) → user_id, `users_by_username` ((username_key)) → user_id:
//!   uniqueness claims, written only by lightweight transactions at LOCAL_SERIAL: claimed with
//!   `INSERT ... IF NOT EXISTS`, released with `DELETE ... IF user_id = ?` (never someone
//!   else's claim).
//! - `sessions` ((session_id)): the session, `used_hashes` as JSON text; written only by LWTs
//!   (insert `IF NOT EXISTS`, rotation `IF refresh_hash = ? AND ended_at_ms = null`, ending
//!   `IF user_id = ? AND ended_at_ms = null`, erasure `IF user_id = ?`), so rotation and ending
//!   are atomic and Paxos and plain write timestamps never mix on a row.
//! - `sessions_by_user` ((user_id), session_id): a user's sessions, to end them all.
//! - `ended_sessions` ((day), ended_at_ms, session_id): ended sessions by UTC day
//!   (`ended_at_ms / 86_400_000`); "ended since" reads the days from `since` to tomorrow (clock
//!   skew between nodes) in pages.
//! - `users_by_day` ((day), user_id DESC), `deleted_users` ((day), deleted_at_ms, user_id) and
//!   `user_days` ((list_name), day): accounts by the day of their id (the admin's list) and
//!   deleted accounts by the day of their deletion (the sweeper's), walking only the days
//!   `user_days` lists (see [`days`]).
//! - The graph ([`graph`]): pair rows `follow_edges`, `block_edges`, `friend_pairs`, their lists,
//!   `graph_counts`, `block_epochs`, `parked_follows`, `parked_friends`.
//! - Reports ([`reports`]) and the search directory ([`directory`]).
//! - `recommendations` ((user_id), candidate_id): who-to-follow scores, plain writes, read
//!   whole and sorted in memory ([`recommendations`]).
//!
//! Design: there are no multi-partition transactions, so each operation orders its writes so
//! that an interruption leaves nothing a reader can trip over:
//! - `insert_user` claims the email, then the username (undoing the email claim if the
//!   username is taken), then writes the account (a logged batch: its rows and its listings): a
//!   refused account stores no row. An insert interrupted between its claims and the rows (a
//!   crash, an LWT of unknown outcome) leaves claims owned by an id without an account: lookups
//!   find nothing, but the email and username stay taken until an operator deletes the claims
//!   (known limit).
//! - `update_user` with a new email or username claims it, writes the rows, then releases the
//!   old one; an update interrupted before the release leaves a claim whose account no longer
//!   carries it, which the lookups ignore. A claim already owned by the same user (an earlier
//!   interrupted update) counts as claimed, as fjall lets a user "take" their own name. A
//!   change of `deleted_at_ms` moves the account's `deleted_users` entry in the same batch.
//! - `erase_user` releases the claims and erases the sessions before the account's rows, so a
//!   retry after an interruption still finds what to release.
//! - `insert_session` lists the session under its user before writing it, so no session can
//!   escape `end_user_sessions`.
//! - Ending a session first lists it in `ended_sessions`, then sets `ended_at_ms` by LWT: a
//!   listed session that did not end is harmless (a revocation re-armed for nothing), an ended
//!   one missing from the list would not be.
//! - `rotate_session` reads, then swaps the hash by LWT conditioned on the hash it read; when not
//!   applied another request changed the session, so it reads again and classifies anew (a
//!   concurrent rotation with the same token makes this one a reuse, as in a serial order).
//!
//! Reads and plain writes run at LOCAL_QUORUM; only idempotent statements are retried. Reads of
//! partitions that grow (a user's sessions, a day of ended sessions, the graph's lists) page by
//! clustering key with a bound `LIMIT`, never unpaged.

mod days;
mod directory;
mod graph;
mod recommendations;
mod reports;
mod statements;
#[cfg(test)]
mod tests;

use async_trait::async_trait;
use chatmesh_cql::{BatchKind, Cql, CqlError, Statement, Value, values};

use self::{
    days::{DELETED_LIST, USERS_LIST},
    statements::*,
};
use super::{Accounts, Rotation, StoreError};
use crate::model::{Role, SessionRecord, Suspension, UserRecord};

const DAY_MS: u64 = 86_400_000;
/// Rows per page of the paged reads.
const PAGE: i32 = 1000;
/// Reads-then-LWT rounds of one rotation before giving up on a session that keeps changing.
const ROTATE_ATTEMPTS: usize = 8;
/// The largest id a `bigint` holds.
const MAX_ID: u64 = i64::MAX as u64;

type UserRow = (String, String, Option<String>, String, String, String, i64, i64);
type StateRow = (Option<String>, Option<String>, Option<i64>);
type SessionRow = (i64, String, String, i64, i64, Option<i64>);
type Batch = Vec<(&'static Statement, Vec<Value>)>;

#[derive(Clone)]
pub struct ScyllaUserStore {
    cql: Cql,
    /// Unix ms now: bounds the days `sessions_ended_since` reads and decides which empty days
    /// are dropped from `user_days` (fixed in golden tests).
    clock: fn() -> u64,
    page: i32,
}

impl std::fmt::Debug for ScyllaUserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaUserStore").field("cql", &self.cql).finish_non_exhaustive()
    }
}

fn backend(e: CqlError) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("corrupt row: {what}"))
}

fn day_of(ms: u64) -> u64 {
    ms / DAY_MS
}

/// The UTC day of a snowflake id's milliseconds.
fn day_of_id(id: u64) -> u64 {
    day_of(chatmesh_platform::ids::unix_ms_of(id))
}

/// A `LIMIT` for `limit` rows (callers ask for none only after checking for 0).
fn limit_of(limit: usize) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX).max(1)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Admin => "admin",
    }
}

fn role_of(user_id: u64, name: Option<&str>) -> Result<Role, StoreError> {
    match name {
        None | Some("user") => Ok(Role::User),
        Some("admin") => Ok(Role::Admin),
        Some(other) => Err(corrupt(format!("user {user_id}: role {other:?}"))),
    }
}

fn user_from(user_id: u64, row: UserRow, state: Option<StateRow>) -> Result<UserRecord, StoreError> {
    let (email, name, username, avatar_url, bio, password_hash, created_at_ms, updated_at_ms) = row;
    let (role, suspension, deleted_at_ms) = state.unwrap_or_default();
    let suspension = suspension
        .map(|json| serde_json::from_str::<Suspension>(&json))
        .transpose()
        .map_err(|e| corrupt(format!("user {user_id}: suspension: {e}")))?;
    Ok(UserRecord {
        user_id,
        email,
        name,
        username,
        avatar_url,
        bio,
        password_hash,
        created_at_ms: chatmesh_cql::id(created_at_ms),
        updated_at_ms: chatmesh_cql::id(updated_at_ms),
        role: role_of(user_id, role.as_deref())?,
        suspension,
        deleted_at_ms: deleted_at_ms.map(chatmesh_cql::id),
    })
}

fn session_from(session_id: &str, row: SessionRow) -> Result<SessionRecord, StoreError> {
    let (user_id, refresh_hash, used_hashes, created_at_ms, expires_at_ms, ended_at_ms) = row;
    let used_hashes = serde_json::from_str(&used_hashes)
        .map_err(|e| StoreError::Backend(format!("session {session_id}: corrupt used_hashes: {e}")))?;
    Ok(SessionRecord {
        session_id: session_id.to_owned(),
        user_id: chatmesh_cql::id(user_id),
        refresh_hash,
        used_hashes,
        created_at_ms: chatmesh_cql::id(created_at_ms),
        expires_at_ms: chatmesh_cql::id(expires_at_ms),
        ended_at_ms: ended_at_ms.map(chatmesh_cql::id),
    })
}

fn used_hashes_json(session: &SessionRecord) -> Result<String, StoreError> {
    serde_json::to_string(&session.used_hashes)
        .map_err(|e| StoreError::Backend(format!("session {}: encoding used_hashes: {e}", session.session_id)))
}

/// The rows listing a deletion: its `deleted_users` entry and its day.
fn list_deletion(user_id: u64, deleted_at_ms: u64) -> Batch {
    let day = day_of(deleted_at_ms);
    vec![(&LIST_DELETED, values![day, deleted_at_ms, user_id]), (&PUT_DAY, values![DELETED_LIST, day])]
}

impl ScyllaUserStore {
    pub fn new(cql: Cql) -> Self {
        Self { cql, clock: chatmesh_platform::ids::now_ms, page: PAGE }
    }

    /// Prepares every statement (fails fast on a schema that does not match).
    pub async fn prepare(&self) -> Result<(), StoreError> {
        self.cql.prepare(STATEMENTS).await.map_err(backend)
    }

    /// Claims `key` for `user_id` by LWT; true if it is now (or already was) theirs.
    async fn claim(
        &self,
        claim: &'static Statement,
        owner: &'static Statement,
        key: &str,
        user_id: u64,
    ) -> Result<bool, StoreError> {
        if self.cql.lwt(claim, values![key, user_id]).await.map_err(backend)? {
            return Ok(true);
        }
        // why: a claim left by an interrupted earlier attempt of the same update is ours
        Ok(self.owner(owner, key).await? == Some(user_id))
    }

    /// Writes the account's rows and `more` in one logged batch (all of it applies, or after a
    /// coordinator failure the batchlog replays it).
    async fn put_user(&self, user: &UserRecord, more: Batch) -> Result<(), StoreError> {
        let suspension = user
            .suspension
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Backend(format!("user {}: encoding suspension: {e}", user.user_id)))?;
        let mut batch = vec![
            (
                &PUT_USER,
                values![
                    user.user_id,
                    &user.email,
                    &user.name,
                    user.username.as_deref(),
                    &user.avatar_url,
                    &user.bio,
                    &user.password_hash,
                    user.created_at_ms,
                    user.updated_at_ms,
                ],
            ),
            (&PUT_USER_STATE, values![user.user_id, role_name(user.role), suspension, user.deleted_at_ms]),
        ];
        batch.extend(more);
        self.cql.batch(BatchKind::Logged, batch).await.map_err(backend).map(|_| ())
    }

    async fn load_user(&self, user_id: u64) -> Result<Option<UserRecord>, StoreError> {
        let Some(row) = self.cql.row::<UserRow>(&GET_USER, values![user_id]).await.map_err(backend)? else {
            return Ok(None);
        };
        let state = self.cql.row::<StateRow>(&GET_USER_STATE, values![user_id]).await.map_err(backend)?;
        user_from(user_id, row, state).map(Some)
    }

    /// Whether the account exists and is not deleted (a relation to it may be restored).
    async fn is_live(&self, user_id: u64) -> Result<bool, StoreError> {
        Ok(self.load_user(user_id).await?.is_some_and(|u| u.deleted_at_ms.is_none()))
    }

    async fn owner(&self, stmt: &'static Statement, key: &str) -> Result<Option<u64>, StoreError> {
        let row = self.cql.row::<(i64,)>(stmt, values![key]).await.map_err(backend)?;
        Ok(row.map(|(id,)| chatmesh_cql::id(id)))
    }

    async fn load_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row = self.cql.row::<SessionRow>(&GET_SESSION, values![session_id]).await.map_err(backend)?;
        row.map(|row| session_from(session_id, row)).transpose()
    }

    /// Every session id listed under a user.
    async fn session_ids(&self, user_id: u64) -> Result<Vec<String>, StoreError> {
        // the empty string sorts before every session id
        let mut sids: Vec<String> = Vec::new();
        loop {
            let after = sids.last().map_or("", String::as_str);
            let page: Vec<(String,)> =
                self.cql.rows(&USER_SESSIONS, values![user_id, after, self.page]).await.map_err(backend)?;
            let full = page.len() >= self.page as usize;
            sids.extend(page.into_iter().map(|(sid,)| sid));
            if !full {
                return Ok(sids);
            }
        }
    }

    /// Ends `session`, read live just before; returns it ended if this call ended it (None: it
    /// was ended meanwhile).
    async fn end(&self, mut session: SessionRecord, now_ms: u64) -> Result<Option<SessionRecord>, StoreError> {
        // why first: a listed session that is still live only re-arms a revocation for nothing;
        // an ended session missing from the list would escape re-arming after a restart
        self.cql
            .execute(&INDEX_ENDED_SESSION, values![day_of(now_ms), now_ms, &session.session_id])
            .await
            .map_err(backend)?;
        let ended = self
            .cql
            .lwt(&END_SESSION, values![now_ms, &session.session_id, session.user_id, None::<u64>])
            .await
            .map_err(backend)?;
        if !ended {
            return Ok(None);
        }
        session.ended_at_ms = Some(now_ms);
        Ok(Some(session))
    }

    /// The session ids listed in one day of `ended_sessions`, ended at or after `since_ms`.
    async fn ended_on(&self, day: u64, since_ms: u64, out: &mut Vec<String>) -> Result<(), StoreError> {
        let mut from = since_ms;
        loop {
            let rows: Vec<(i64, String)> =
                self.cql.rows(&ENDED_SESSIONS_FROM, values![day, from, self.page]).await.map_err(backend)?;
            let full = rows.len() >= self.page as usize;
            let last = rows.last().map(|(ms, sid)| (chatmesh_cql::id(*ms), sid.clone()));
            out.extend(rows.into_iter().map(|(_, sid)| sid));
            let (Some((last_ms, mut after)), true) = (last, full) else { return Ok(()) };
            // why: the page may have cut through sessions that ended in the same millisecond
            loop {
                let sids: Vec<(String,)> = self
                    .cql
                    .rows(&ENDED_SESSIONS_AT, values![day, last_ms, &after, self.page])
                    .await
                    .map_err(backend)?;
                let full = sids.len() >= self.page as usize;
                out.extend(sids.into_iter().map(|(sid,)| sid));
                match out.last() {
                    Some(sid) if full => after = sid.clone(),
                    _ => break,
                }
            }
            from = last_ms.saturating_add(1);
        }
    }

    /// The accounts of one `users_by_day` day with ids below `before`, newest first, into
    /// `out` until it holds `limit`.
    async fn users_of_day(
        &self,
        day: u64,
        before: u64,
        limit: usize,
        out: &mut Vec<UserRecord>,
    ) -> Result<(), StoreError> {
        let mut cursor = before;
        while out.len() < limit {
            let asked = limit - out.len();
            let ids: Vec<(i64,)> =
                self.cql.rows(&USERS_OF_DAY, values![day, cursor, limit_of(asked)]).await.map_err(backend)?;
            for (id,) in &ids {
                // a listed account whose rows are gone (an interrupted erasure) is skipped
                if let Some(user) = self.load_user(chatmesh_cql::id(*id)).await? {
                    out.push(user);
                }
            }
            match ids.last() {
                Some((last,)) if ids.len() >= asked => cursor = chatmesh_cql::id(*last),
                _ => break,
            }
        }
        Ok(())
    }

    /// The accounts deleted on `day` at or before `cutoff_ms`, oldest deletion first, into `out`
    /// until it holds `limit`; whether the day held any entry.
    async fn deleted_on(
        &self,
        day: u64,
        cutoff_ms: u64,
        limit: usize,
        out: &mut Vec<UserRecord>,
    ) -> Result<bool, StoreError> {
        let mut any = false;
        let mut from = 0u64;
        while out.len() < limit {
            let asked = limit - out.len();
            let rows: Vec<(i64, i64)> =
                self.cql.rows(&DELETED_FROM, values![day, from, cutoff_ms, limit_of(asked)]).await.map_err(backend)?;
            any |= !rows.is_empty();
            let full = rows.len() >= asked;
            let last = rows.last().map(|(ms, id)| (chatmesh_cql::id(*ms), chatmesh_cql::id(*id)));
            for (ms, id) in rows {
                self.keep_deleted(chatmesh_cql::id(id), chatmesh_cql::id(ms), out).await?;
            }
            let (Some((last_ms, mut after)), true) = (last, full) else { break };
            // why: the page may have cut through accounts deleted in the same millisecond
            while out.len() < limit {
                let asked = limit - out.len();
                let ids: Vec<(i64,)> =
                    self.cql.rows(&DELETED_AT, values![day, last_ms, after, limit_of(asked)]).await.map_err(backend)?;
                for (id,) in &ids {
                    self.keep_deleted(chatmesh_cql::id(*id), last_ms, out).await?;
                }
                match ids.last() {
                    Some((id,)) if ids.len() >= asked => after = chatmesh_cql::id(*id),
                    _ => break,
                }
            }
            from = last_ms.saturating_add(1);
        }
        Ok(any)
    }

    /// Adds the account of a `deleted_users` entry unless the entry is stale (the account was
    /// restored, deleted again at another time, or erased; its batch has not landed yet).
    async fn keep_deleted(
        &self,
        user_id: u64,
        deleted_at_ms: u64,
        out: &mut Vec<UserRecord>,
    ) -> Result<(), StoreError> {
        if let Some(user) = self.load_user(user_id).await?
            && user.deleted_at_ms == Some(deleted_at_ms)
        {
            out.push(user);
        }
        Ok(())
    }
}

#[async_trait]
impl Accounts for ScyllaUserStore {
    #[tracing::instrument(name = "user_store.insert_user", skip_all, fields(db.system = "scylla"))]
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let email_key = user.email_key();
        if !self.cql.lwt(&CLAIM_EMAIL, values![&email_key, user.user_id]).await.map_err(backend)? {
            return Err(StoreError::EmailTaken);
        }
        if let Some(key) = user.username_key()
            && !self.cql.lwt(&CLAIM_USERNAME, values![key, user.user_id]).await.map_err(backend)?
        {
            // why: the account is refused whole, so its email claim must not outlive it
            self.cql.lwt(&RELEASE_EMAIL, values![&email_key, user.user_id]).await.map_err(backend)?;
            return Err(StoreError::UsernameTaken(user.username.clone().unwrap_or_default()));
        }
        let day = day_of_id(user.user_id);
        let mut listings = vec![(&LIST_USER, values![day, user.user_id]), (&PUT_DAY, values![USERS_LIST, day])];
        if let Some(ms) = user.deleted_at_ms {
            listings.extend(list_deletion(user.user_id, ms));
        }
        self.put_user(user, listings).await
    }

    #[tracing::instrument(name = "user_store.get_user", skip_all, fields(db.system = "scylla"))]
    async fn get_user(&self, user_id: u64) -> Result<Option<UserRecord>, StoreError> {
        self.load_user(user_id).await
    }

    #[tracing::instrument(name = "user_store.get_user_by_email", skip_all, fields(db.system = "scylla"))]
    async fn get_user_by_email(&self, email_key: &str) -> Result<Option<UserRecord>, StoreError> {
        // a claim whose account row was never written (an interrupted insert) finds nothing
        let Some(user_id) = self.owner(&EMAIL_OWNER, email_key).await? else { return Ok(None) };
        let user = self.load_user(user_id).await?;
        // why: an update interrupted before releasing the old email leaves its claim behind
        Ok(user.filter(|u| u.email_key() == email_key))
    }

    #[tracing::instrument(name = "user_store.get_user_by_username", skip_all, fields(db.system = "scylla"))]
    async fn get_user_by_username(&self, username_key: &str) -> Result<Option<UserRecord>, StoreError> {
        let Some(user_id) = self.owner(&USERNAME_OWNER, username_key).await? else { return Ok(None) };
        let user = self.load_user(user_id).await?;
        // why: a rename interrupted before releasing the old name leaves its claim behind
        Ok(user.filter(|u| u.username_key().as_deref() == Some(username_key)))
    }

    #[tracing::instrument(name = "user_store.update_user", skip_all, fields(db.system = "scylla"))]
    async fn update_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let Some(old) = self.load_user(user.user_id).await? else {
            return Err(StoreError::Backend(format!("update_user: user {} vanished", user.user_id)));
        };
        let (old_email, new_email) = (old.email_key(), user.email_key());
        let email_moves = old_email != new_email;
        if email_moves && !self.claim(&CLAIM_EMAIL, &EMAIL_OWNER, &new_email, user.user_id).await? {
            return Err(StoreError::EmailTaken);
        }
        let (old_name, new_name) = (old.username_key(), user.username_key());
        let name_moves = old_name != new_name;
        if name_moves
            && let Some(key) = &new_name
            && !self.claim(&CLAIM_USERNAME, &USERNAME_OWNER, key, user.user_id).await?
        {
            if email_moves {
                // why: the update is refused whole, so the new email must not stay claimed
                self.cql.lwt(&RELEASE_EMAIL, values![&new_email, user.user_id]).await.map_err(backend)?;
            }
            return Err(StoreError::UsernameTaken(user.username.clone().unwrap_or_default()));
        }
        let mut listings = Vec::new();
        if old.deleted_at_ms != user.deleted_at_ms {
            if let Some(ms) = old.deleted_at_ms {
                listings.push((&UNLIST_DELETED, values![day_of(ms), ms, user.user_id]));
            }
            if let Some(ms) = user.deleted_at_ms {
                listings.extend(list_deletion(user.user_id, ms));
            }
        }
        self.put_user(user, listings).await?;
        // not applied below: the old key was no longer ours, nothing to free
        if email_moves {
            self.cql.lwt(&RELEASE_EMAIL, values![old_email, user.user_id]).await.map_err(backend)?;
        }
        if name_moves && let Some(key) = old_name {
            self.cql.lwt(&RELEASE_USERNAME, values![key, user.user_id]).await.map_err(backend)?;
        }
        Ok(())
    }

    #[tracing::instrument(name = "user_store.list_users", skip_all, fields(db.system = "scylla"))]
    async fn list_users(&self, before: Option<u64>, limit: usize) -> Result<Vec<UserRecord>, StoreError> {
        let before = before.unwrap_or(MAX_ID);
        let mut out = Vec::new();
        let mut to_day = day_of_id(before);
        while out.len() < limit {
            let days = self.days_down(USERS_LIST, to_day).await?;
            for &day in &days {
                self.users_of_day(day, before, limit, &mut out).await?;
                if out.len() >= limit {
                    break;
                }
            }
            match days.last() {
                Some(&last) if days.len() >= self.page as usize && last > 0 => to_day = last - 1,
                _ => break,
            }
        }
        Ok(out)
    }

    #[tracing::instrument(name = "user_store.users_deleted_before", skip_all, fields(db.system = "scylla"))]
    async fn users_deleted_before(&self, cutoff_ms: u64, limit: usize) -> Result<Vec<UserRecord>, StoreError> {
        let last_day = day_of(cutoff_ms);
        let mut out = Vec::new();
        let mut from_day = 0;
        while out.len() < limit {
            let days = self.days_up(DELETED_LIST, from_day, last_day).await?;
            for &day in &days {
                let any = self.deleted_on(day, cutoff_ms, limit, &mut out).await?;
                // why: only a day the read covered whole (before the cutoff's day) is known empty
                if !any && day < last_day {
                    self.forget_day_if_closed(DELETED_LIST, day).await?;
                }
                if out.len() >= limit {
                    break;
                }
            }
            match days.last() {
                Some(&last) if days.len() >= self.page as usize => from_day = last + 1,
                _ => break,
            }
        }
        Ok(out)
    }

    #[tracing::instrument(name = "user_store.erase_user", skip_all, fields(db.system = "scylla"))]
    async fn erase_user(&self, user_id: u64) -> Result<(), StoreError> {
        let Some(user) = self.load_user(user_id).await? else { return Ok(()) };
        // why before the rows: a retry after an interruption still finds what to release
        self.cql.lwt(&RELEASE_EMAIL, values![user.email_key(), user_id]).await.map_err(backend)?;
        if let Some(key) = user.username_key() {
            self.cql.lwt(&RELEASE_USERNAME, values![key, user_id]).await.map_err(backend)?;
        }
        for sid in self.session_ids(user_id).await? {
            self.cql.lwt(&DELETE_SESSION, values![sid, user_id]).await.map_err(backend)?;
        }
        self.cql.execute(&DROP_USER_SESSIONS, values![user_id]).await.map_err(backend)?;
        directory::replace_terms(self, user_id, &[]).await?;
        let mut batch = vec![
            (&DELETE_USER, values![user_id]),
            (&DELETE_USER_STATE, values![user_id]),
            (&UNLIST_USER, values![day_of_id(user_id), user_id]),
        ];
        if let Some(ms) = user.deleted_at_ms {
            batch.push((&UNLIST_DELETED, values![day_of(ms), ms, user_id]));
        }
        self.cql.batch(BatchKind::Logged, batch).await.map_err(backend).map(|_| ())
    }

    #[tracing::instrument(name = "user_store.insert_session", skip_all, fields(db.system = "scylla"))]
    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        // why first: a session must never exist without being listed for end_user_sessions
        self.cql.execute(&INDEX_USER_SESSION, values![session.user_id, &session.session_id]).await.map_err(backend)?;
        let values = values![
            &session.session_id,
            session.user_id,
            &session.refresh_hash,
            used_hashes_json(session)?,
            session.created_at_ms,
            session.expires_at_ms,
            session.ended_at_ms,
        ];
        if !self.cql.lwt(&INSERT_SESSION, values).await.map_err(backend)? {
            return Err(StoreError::Backend(format!("insert_session: session {} already exists", session.session_id)));
        }
        Ok(())
    }

    #[tracing::instrument(name = "user_store.get_session", skip_all, fields(db.system = "scylla"))]
    async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.load_session(session_id).await
    }

    #[tracing::instrument(name = "user_store.rotate_session", skip_all, fields(db.system = "scylla"))]
    async fn rotate_session(
        &self,
        session_id: &str,
        presented_hash: &str,
        new_hash: &str,
        now_ms: u64,
    ) -> Result<Rotation, StoreError> {
        for _ in 0..ROTATE_ATTEMPTS {
            let Some(session) = self.load_session(session_id).await? else { return Ok(Rotation::Unknown) };
            if session.ended_at_ms.is_some() || session.expires_at_ms <= now_ms {
                return Ok(Rotation::Ended);
            }
            if session.refresh_hash == presented_hash {
                let mut rotated = session;
                rotated.used_hashes.push(std::mem::replace(&mut rotated.refresh_hash, new_hash.to_owned()));
                let excess = rotated.used_hashes.len().saturating_sub(SessionRecord::USED_HASHES_KEPT);
                rotated.used_hashes.drain(..excess);
                let values = values![new_hash, used_hashes_json(&rotated)?, session_id, presented_hash, None::<u64>];
                if self.cql.lwt(&ROTATE_SESSION, values).await.map_err(backend)? {
                    return Ok(Rotation::Rotated(rotated));
                }
                // why: rotated or ended by another request since the read: classify again
                continue;
            }
            if session.used_hashes.iter().any(|h| h == presented_hash) {
                match self.end(session, now_ms).await? {
                    Some(ended) => return Ok(Rotation::Reused(ended)),
                    // ended meanwhile: the next read answers Ended
                    None => continue,
                }
            }
            return Ok(Rotation::Unknown);
        }
        Err(StoreError::Backend(format!(
            "rotate_session: session {session_id} changed under {ROTATE_ATTEMPTS} attempts in a row"
        )))
    }

    #[tracing::instrument(name = "user_store.end_session", skip_all, fields(db.system = "scylla"))]
    async fn end_session(&self, session_id: &str, now_ms: u64) -> Result<Option<SessionRecord>, StoreError> {
        match self.load_session(session_id).await? {
            Some(session) if session.ended_at_ms.is_none() => self.end(session, now_ms).await,
            _ => Ok(None),
        }
    }

    #[tracing::instrument(name = "user_store.end_user_sessions", skip_all, fields(db.system = "scylla"))]
    async fn end_user_sessions(&self, user_id: u64, now_ms: u64) -> Result<Vec<SessionRecord>, StoreError> {
        let mut ended = Vec::new();
        for sid in self.session_ids(user_id).await? {
            // a listed session whose row was never written (an interrupted insert) is skipped
            let Some(session) = self.load_session(&sid).await? else { continue };
            if session.ended_at_ms.is_some() {
                continue;
            }
            if let Some(session) = self.end(session, now_ms).await? {
                ended.push(session);
            }
        }
        Ok(ended)
    }

    #[tracing::instrument(name = "user_store.sessions_ended_since", skip_all, fields(db.system = "scylla"))]
    async fn sessions_ended_since(&self, since_ms: u64) -> Result<Vec<String>, StoreError> {
        // why tomorrow: a node whose clock runs ahead may already have listed sessions there
        let last_day = day_of((self.clock)()).saturating_add(1).max(day_of(since_ms));
        let mut sids = Vec::new();
        for day in day_of(since_ms)..=last_day {
            self.ended_on(day, since_ms, &mut sids).await?;
        }
        Ok(sids)
    }
}
