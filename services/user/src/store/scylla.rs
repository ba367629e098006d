//! The user store on ScyllaDB (schema: `crates/cql/migrations/0001_users.cql`).
//!
//! Tables (partition key, clustering):
//! - `users` ((user_id)): the account, one column per record field; plain writes only.
//! - `users_by_email` ((email_key)) → user_id, `users_by_username` ((username_key)) → user_id:
//!   uniqueness claims, written only by lightweight transactions at LOCAL_SERIAL: claimed with
//!   `INSERT ... IF NOT EXISTS`, released with `DELETE ... IF user_id = ?` (never someone
//!   else's claim).
//! - `sessions` ((session_id)): the session, `used_hashes` as JSON text; written only by LWTs
//!   (insert `IF NOT EXISTS`, rotation `IF refresh_hash = ? AND ended_at_ms = null`, ending
//!   `IF user_id = ? AND ended_at_ms = null`), so rotation and ending are atomic and Paxos and
//!   plain write timestamps never mix on a row.
//! - `sessions_by_user` ((user_id), session_id): a user's sessions, to end them all.
//! - `ended_sessions` ((day), ended_at_ms, session_id): ended sessions by UTC day
//!   (`ended_at_ms / 86_400_000`); "ended since" reads the days from `since` to tomorrow (clock
//!   skew between nodes) in pages.
//!
//! Design: there are no multi-partition transactions, so each operation orders its writes so
//! that an interruption leaves nothing a reader can trip over:
//! - `insert_user` claims the email, then the username (undoing the email claim if the
//!   username is taken), then writes the account row: a refused account stores no row. An
//!   insert interrupted between its claims and the row (a crash, an LWT of unknown outcome)
//!   leaves claims owned by an id without an account: lookups find nothing, but the email and
//!   username stay taken until an operator deletes the claims (known limit).
//! - `update_user` with a new username claims it, writes the row, then releases the old name; a
//!   rename interrupted before the release leaves a claim whose account no longer carries the
//!   name, which `get_user_by_username` ignores. A claim already owned by the same user (an
//!   earlier interrupted rename) counts as claimed, as fjall lets a user "take" their own name.
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
//! partitions that grow (a user's sessions, a day of ended sessions) page by clustering key with
//! a bound `LIMIT`, never unpaged.

use async_trait::async_trait;
use chatmesh_cql::{Cql, CqlError, Statement, statement, values};

use super::{Rotation, StoreError, UserStore};
use crate::model::{SessionRecord, UserRecord};

const DAY_MS: u64 = 86_400_000;
/// Rows per page of the paged reads.
const PAGE: i32 = 1000;
/// Reads-then-LWT rounds of one rotation before giving up on a session that keeps changing.
const ROTATE_ATTEMPTS: usize = 8;

static CLAIM_EMAIL: Statement = statement!(
    "user.claim_email",
    not_idempotent,
    "INSERT INTO users_by_email (email_key, user_id) VALUES (?, ?) IF NOT EXISTS"
);
static RELEASE_EMAIL: Statement =
    statement!("user.release_email", not_idempotent, "DELETE FROM users_by_email WHERE email_key = ? IF user_id = ?");
static EMAIL_OWNER: Statement =
    statement!("user.email_owner", idempotent, "SELECT user_id FROM users_by_email WHERE email_key = ?");
static CLAIM_USERNAME: Statement = statement!(
    "user.claim_username",
    not_idempotent,
    "INSERT INTO users_by_username (username_key, user_id) VALUES (?, ?) IF NOT EXISTS"
);
static RELEASE_USERNAME: Statement = statement!(
    "user.release_username",
    not_idempotent,
    "DELETE FROM users_by_username WHERE username_key = ? IF user_id = ?"
);
static USERNAME_OWNER: Statement =
    statement!("user.username_owner", idempotent, "SELECT user_id FROM users_by_username WHERE username_key = ?");
static PUT_USER: Statement = statement!(
    "user.put_user",
    idempotent,
    "INSERT INTO users (user_id, email, name, username, avatar_url, bio, password_hash, created_at_ms, updated_at_ms) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
);
static GET_USER: Statement = statement!(
    "user.get_user",
    idempotent,
    "SELECT email, name, username, avatar_url, bio, password_hash, created_at_ms, updated_at_ms FROM users \
     WHERE user_id = ?"
);
static INSERT_SESSION: Statement = statement!(
    "user.insert_session",
    not_idempotent,
    "INSERT INTO sessions (session_id, user_id, refresh_hash, used_hashes, created_at_ms, expires_at_ms, ended_at_ms) \
     VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
);
/// Read at LOCAL_SERIAL: sessions are written by lightweight transactions only, and one whose
/// outcome was unknown (a timeout after its accept phase) is settled by a serial read, never
/// missed by it.
static GET_SESSION: Statement = Statement {
    name: "user.get_session",
    cql: "SELECT user_id, refresh_hash, used_hashes, created_at_ms, expires_at_ms, ended_at_ms FROM sessions \
          WHERE session_id = ?",
    consistency: chatmesh_cql::Consistency::LocalSerial,
    idempotent: true,
};
static ROTATE_SESSION: Statement = statement!(
    "user.rotate_session",
    not_idempotent,
    "UPDATE sessions SET refresh_hash = ?, used_hashes = ? WHERE session_id = ? IF refresh_hash = ? AND ended_at_ms = ?"
);
static END_SESSION: Statement = statement!(
    "user.end_session",
    not_idempotent,
    "UPDATE sessions SET ended_at_ms = ? WHERE session_id = ? IF user_id = ? AND ended_at_ms = ?"
);
static INDEX_USER_SESSION: Statement = statement!(
    "user.index_user_session",
    idempotent,
    "INSERT INTO sessions_by_user (user_id, session_id) VALUES (?, ?)"
);
static USER_SESSIONS: Statement = statement!(
    "user.user_sessions",
    idempotent,
    "SELECT session_id FROM sessions_by_user WHERE user_id = ? AND session_id > ? LIMIT ?"
);
static INDEX_ENDED_SESSION: Statement = statement!(
    "user.index_ended_session",
    idempotent,
    "INSERT INTO ended_sessions (day, ended_at_ms, session_id) VALUES (?, ?, ?)"
);
static ENDED_SESSIONS_FROM: Statement = statement!(
    "user.ended_sessions_from",
    idempotent,
    "SELECT ended_at_ms, session_id FROM ended_sessions WHERE day = ? AND ended_at_ms >= ? LIMIT ?"
);
static ENDED_SESSIONS_AT: Statement = statement!(
    "user.ended_sessions_at",
    idempotent,
    "SELECT session_id FROM ended_sessions WHERE day = ? AND ended_at_ms = ? AND session_id > ? LIMIT ?"
);

/// Every statement of the store, prepared at start.
pub(crate) static STATEMENTS: &[&Statement] = &[
    &CLAIM_EMAIL,
    &RELEASE_EMAIL,
    &EMAIL_OWNER,
    &CLAIM_USERNAME,
    &RELEASE_USERNAME,
    &USERNAME_OWNER,
    &PUT_USER,
    &GET_USER,
    &INSERT_SESSION,
    &GET_SESSION,
    &ROTATE_SESSION,
    &END_SESSION,
    &INDEX_USER_SESSION,
    &USER_SESSIONS,
    &INDEX_ENDED_SESSION,
    &ENDED_SESSIONS_FROM,
    &ENDED_SESSIONS_AT,
];

type UserRow = (String, String, Option<String>, String, String, String, i64, i64);
type SessionRow = (i64, String, String, i64, i64, Option<i64>);

#[derive(Clone)]
pub struct ScyllaUserStore {
    cql: Cql,
    /// Unix ms now: bounds the days `sessions_ended_since` reads (fixed in golden tests).
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

fn day_of(ms: u64) -> u64 {
    ms / DAY_MS
}

fn user_from(user_id: u64, row: UserRow) -> UserRecord {
    let (email, name, username, avatar_url, bio, password_hash, created_at_ms, updated_at_ms) = row;
    UserRecord {
        user_id,
        email,
        name,
        username,
        avatar_url,
        bio,
        password_hash,
        created_at_ms: chatmesh_cql::id(created_at_ms),
        updated_at_ms: chatmesh_cql::id(updated_at_ms),
    }
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

impl ScyllaUserStore {
    pub fn new(cql: Cql) -> Self {
        Self { cql, clock: chatmesh_platform::ids::now_ms, page: PAGE }
    }

    /// Prepares every statement (fails fast on a schema that does not match).
    pub async fn prepare(&self) -> Result<(), StoreError> {
        self.cql.prepare(STATEMENTS).await.map_err(backend)
    }

    /// Claims `username_key` for `user_id` by LWT; true if it is now (or already was) theirs.
    async fn claim_username(&self, username_key: &str, user_id: u64) -> Result<bool, StoreError> {
        if self.cql.lwt(&CLAIM_USERNAME, values![username_key, user_id]).await.map_err(backend)? {
            return Ok(true);
        }
        // why: a claim left by an interrupted earlier attempt of the same rename is ours
        Ok(self.owner(&USERNAME_OWNER, username_key).await? == Some(user_id))
    }

    async fn put_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let values = values![
            user.user_id,
            &user.email,
            &user.name,
            user.username.as_deref(),
            &user.avatar_url,
            &user.bio,
            &user.password_hash,
            user.created_at_ms,
            user.updated_at_ms,
        ];
        self.cql.execute(&PUT_USER, values).await.map_err(backend)
    }

    async fn load_user(&self, user_id: u64) -> Result<Option<UserRecord>, StoreError> {
        let row = self.cql.row::<UserRow>(&GET_USER, values![user_id]).await.map_err(backend)?;
        Ok(row.map(|row| user_from(user_id, row)))
    }

    async fn owner(&self, stmt: &'static Statement, key: &str) -> Result<Option<u64>, StoreError> {
        let row = self.cql.row::<(i64,)>(stmt, values![key]).await.map_err(backend)?;
        Ok(row.map(|(id,)| chatmesh_cql::id(id)))
    }

    async fn load_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row = self.cql.row::<SessionRow>(&GET_SESSION, values![session_id]).await.map_err(backend)?;
        row.map(|row| session_from(session_id, row)).transpose()
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
}

#[async_trait]
impl UserStore for ScyllaUserStore {
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
        self.put_user(user).await
    }

    #[tracing::instrument(name = "user_store.get_user", skip_all, fields(db.system = "scylla"))]
    async fn get_user(&self, user_id: u64) -> Result<Option<UserRecord>, StoreError> {
        self.load_user(user_id).await
    }

    #[tracing::instrument(name = "user_store.get_user_by_email", skip_all, fields(db.system = "scylla"))]
    async fn get_user_by_email(&self, email_key: &str) -> Result<Option<UserRecord>, StoreError> {
        match self.owner(&EMAIL_OWNER, email_key).await? {
            // a claim whose account row was never written (an interrupted insert) finds nothing
            Some(user_id) => self.load_user(user_id).await,
            None => Ok(None),
        }
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
        let (old_key, new_key) = (old.username_key(), user.username_key());
        if old_key == new_key {
            return self.put_user(user).await;
        }
        if let Some(key) = &new_key
            && !self.claim_username(key, user.user_id).await?
        {
            return Err(StoreError::UsernameTaken(user.username.clone().unwrap_or_default()));
        }
        self.put_user(user).await?;
        if let Some(key) = old_key {
            // not applied: the old name was no longer ours, nothing to free
            self.cql.lwt(&RELEASE_USERNAME, values![key, user.user_id]).await.map_err(backend)?;
        }
        Ok(())
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
        // the empty string sorts before every session id
        let mut sids: Vec<String> = Vec::new();
        loop {
            let after = sids.last().map_or("", String::as_str);
            let page: Vec<(String,)> =
                self.cql.rows(&USER_SESSIONS, values![user_id, after, self.page]).await.map_err(backend)?;
            let full = page.len() >= self.page as usize;
            sids.extend(page.into_iter().map(|(sid,)| sid));
            if !full {
                break;
            }
        }
        let mut ended = Vec::new();
        for sid in sids {
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use chatmesh_cql::{Call, MemoryCql};

    use super::*;
    use crate::store::conformance::{session, user};

    mod memory {
        use super::*;

        crate::user_store_suite!(|| ((), ScyllaUserStore::new(Cql::memory(MemoryCql::migrated()))));
    }

    mod scylla {
        use super::*;

        // skipped with a printed "skipped: CHATMESH_TEST_SCYLLA not set" unless a server is configured
        crate::user_store_suite!(async |case: &'static str| async move {
            let cql = chatmesh_cql::migrate::test_keyspace(case).await?;
            Some(((), ScyllaUserStore::new(cql)))
        });
    }

    /// 2023-11-14T22:13:20Z, day 19675.
    const NOW: u64 = 1_700_000_000_000;

    /// A store for setting a scene and one recording what the operation under test runs, on the
    /// same data; a fixed clock and pages of 2 rows so paging shows.
    fn scene() -> (ScyllaUserStore, ScyllaUserStore, Arc<Mutex<Vec<Call>>>) {
        let memory = MemoryCql::migrated();
        let setup = ScyllaUserStore::new(Cql::memory(memory.clone()));
        let (cql, log) = Cql::memory(memory).recording();
        let store = ScyllaUserStore { clock: || NOW, page: 2, ..ScyllaUserStore::new(cql) };
        (setup, store, log)
    }

    use chatmesh_cql::golden::taken;

    async fn insert_user() -> Vec<Call> {
        let (setup, store, log) = scene();
        setup.insert_user(&user(1, "Ada@Example.com", Some("Ada"))).await.unwrap();
        // accepted; refused for a taken username (the email claim is undone); for a taken email
        store.insert_user(&user(2, "Bob@Example.com", Some("Bob"))).await.unwrap();
        let refused = store.insert_user(&user(3, "carol@example.com", Some("ADA"))).await;
        assert_eq!(refused, Err(StoreError::UsernameTaken("ADA".into())));
        assert_eq!(store.insert_user(&user(4, "ada@example.COM", None)).await, Err(StoreError::EmailTaken));
        taken(&log)
    }

    async fn get_user() -> Vec<Call> {
        let (setup, store, log) = scene();
        setup.insert_user(&user(1, "Ada@Example.com", Some("Ada"))).await.unwrap();
        assert_eq!(store.get_user(1).await.unwrap(), Some(user(1, "Ada@Example.com", Some("Ada"))));
        taken(&log)
    }

    async fn get_user_by_email() -> Vec<Call> {
        let (setup, store, log) = scene();
        setup.insert_user(&user(1, "Ada@Example.com", Some("Ada"))).await.unwrap();
        assert_eq!(store.get_user_by_email("ada@example.com").await.unwrap().map(|u| u.user_id), Some(1));
        taken(&log)
    }

    async fn get_user_by_username() -> Vec<Call> {
        let (setup, store, log) = scene();
        setup.insert_user(&user(1, "Ada@Example.com", Some("Ada"))).await.unwrap();
        assert_eq!(store.get_user_by_username("ada").await.unwrap().map(|u| u.user_id), Some(1));
        taken(&log)
    }

    async fn update_user() -> Vec<Call> {
        let (setup, store, log) = scene();
        setup.insert_user(&user(1, "Ada@Example.com", Some("Ada"))).await.unwrap();
        setup.insert_user(&user(2, "Bob@Example.com", Some("Bob"))).await.unwrap();
        // refused for a taken username; then renamed (claim, write, release the old name)
        let mut ada = user(1, "Ada@Example.com", Some("BOB"));
        assert_eq!(store.update_user(&ada).await, Err(StoreError::UsernameTaken("BOB".into())));
        ada.username = Some("Countess".into());
        ada.updated_at_ms = NOW;
        store.update_user(&ada).await.unwrap();
        assert_eq!(setup.get_user_by_username("ada").await.unwrap(), None);
        taken(&log)
    }

    async fn insert_session() -> Vec<Call> {
        let (_, store, log) = scene();
        store.insert_session(&session("s1", 7, "h1")).await.unwrap();
        taken(&log)
    }

    async fn get_session() -> Vec<Call> {
        let (setup, store, log) = scene();
        setup.insert_session(&session("s1", 7, "h1")).await.unwrap();
        assert_eq!(store.get_session("s1").await.unwrap(), Some(session("s1", 7, "h1")));
        taken(&log)
    }

    async fn rotate_session() -> Vec<Call> {
        let (setup, store, log) = scene();
        setup.insert_session(&session("s1", 7, "h1")).await.unwrap();
        // rotated; then the used hash presented again: reuse ends the session
        assert!(matches!(store.rotate_session("s1", "h1", "h2", NOW).await.unwrap(), Rotation::Rotated(_)));
        assert!(matches!(store.rotate_session("s1", "h1", "h3", NOW + 1).await.unwrap(), Rotation::Reused(_)));
        taken(&log)
    }

    async fn end_session() -> Vec<Call> {
        let (setup, store, log) = scene();
        setup.insert_session(&session("s1", 7, "h1")).await.unwrap();
        assert!(store.end_session("s1", NOW).await.unwrap().is_some());
        taken(&log)
    }

    async fn end_user_sessions() -> Vec<Call> {
        let (setup, store, log) = scene();
        for sid in ["a", "b", "c"] {
            setup.insert_session(&session(sid, 7, sid)).await.unwrap();
        }
        setup.end_session("b", NOW - 1).await.unwrap();
        // two pages of ids (2 + 1); "b" has already ended
        let ended = store.end_user_sessions(7, NOW).await.unwrap();
        assert_eq!(ended.iter().map(|s| s.session_id.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        taken(&log)
    }

    async fn sessions_ended_since() -> Vec<Call> {
        let (setup, store, log) = scene();
        for sid in ["a", "b", "c", "d"] {
            setup.insert_session(&session(sid, 7, sid)).await.unwrap();
        }
        setup.end_session("a", NOW - DAY_MS - 1).await.unwrap();
        // three in one millisecond: a page of 2 cuts through them
        for sid in ["b", "c", "d"] {
            setup.end_session(sid, NOW - 5).await.unwrap();
        }
        // from yesterday to tomorrow
        let sids = store.sessions_ended_since(NOW - DAY_MS).await.unwrap();
        assert_eq!(sids, ["b", "c", "d"]);
        taken(&log)
    }

    chatmesh_cql::golden_files!(
        prefix: "",
        statements: super::STATEMENTS,
        also: [],
        [
        insert_user,
        get_user,
        get_user_by_email,
        get_user_by_username,
        update_user,
        insert_session,
        get_session,
        rotate_session,
        end_session,
        end_user_sessions,
        sessions_ended_since,
        ]
    );
}
