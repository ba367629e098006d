//! The embedded user store on fjall: every write is one serializable transaction synced to disk.
//!
//! Keyspaces (key → value):
//! - `userid__user`: user id (u64 BE) → UserRecord (JSON)
//! - `email__userid`: lowercase email → user id
//! - `username__userid`: lowercase username → user id
//! - `sessionid__session`: session id → SessionRecord (JSON)
//! - `userid_sessionid__`: user id (u64 BE) ++ session id → ()
//! - `endedms_sessionid__`: ended-at ms (u64 BE) ++ session id → ()
//! - `meta`: `format_version` → "1"

use std::{path::Path, sync::Arc};

use async_trait::async_trait;
use fjall::{KeyspaceCreateOptions, PersistMode, Readable, SingleWriterTxDatabase, SingleWriterTxKeyspace};
use serde::{Serialize, de::DeserializeOwned};

use super::{Rotation, StoreError, UserStore};
use crate::model::{SessionRecord, UserRecord};

const FORMAT_VERSION: &str = "1";

#[derive(Clone)]
pub struct FjallUserStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: SingleWriterTxDatabase,
    users: SingleWriterTxKeyspace,
    emails: SingleWriterTxKeyspace,
    usernames: SingleWriterTxKeyspace,
    sessions: SingleWriterTxKeyspace,
    user_sessions: SingleWriterTxKeyspace,
    ended_sessions: SingleWriterTxKeyspace,
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
            sessions: ks("sessionid__session")?,
            user_sessions: ks("userid_sessionid__")?,
            ended_sessions: ks("endedms_sessionid__")?,
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
}

impl Inner {
    fn get_json<T: DeserializeOwned>(&self, ks: &SingleWriterTxKeyspace, key: &[u8]) -> Result<Option<T>, StoreError> {
        ks.get(key).map_err(backend)?.map(|v| decode(&v)).transpose()
    }

    fn user_by_index(&self, index: &SingleWriterTxKeyspace, key: &str) -> Result<Option<UserRecord>, StoreError> {
        match index.get(key.as_bytes()).map_err(backend)? {
            Some(id) => self.get_json(&self.users, &id_from(&id)?.to_be_bytes()),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl UserStore for FjallUserStore {
    #[tracing::instrument(name = "user_store.insert_user", skip_all, fields(db.system = "fjall"))]
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let user = user.clone();
        self.blocking(move |s| {
            let mut tx = s.db.write_tx().durability(Some(PersistMode::SyncAll));
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
            tx.commit().map_err(backend)
        })
        .await
    }

    #[tracing::instrument(name = "user_store.get_user", skip_all, fields(db.system = "fjall"))]
    async fn get_user(&self, user_id: u64) -> Result<Option<UserRecord>, StoreError> {
        self.blocking(move |s| s.get_json(&s.users, &user_id.to_be_bytes())).await
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
        self.blocking(move |s| {
            let mut tx = s.db.write_tx().durability(Some(PersistMode::SyncAll));
            let old: UserRecord = match tx.get(&s.users, user.user_id.to_be_bytes()).map_err(backend)? {
                Some(v) => decode(&v)?,
                None => return Err(backend("user vanished")),
            };
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
            tx.commit().map_err(backend)
        })
        .await
    }

    #[tracing::instrument(name = "user_store.insert_session", skip_all, fields(db.system = "fjall"))]
    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let session = session.clone();
        self.blocking(move |s| {
            let mut tx = s.db.write_tx().durability(Some(PersistMode::SyncAll));
            tx.insert(&s.sessions, session.session_id.as_bytes(), encode(&session)?);
            tx.insert(&s.user_sessions, user_session_key(session.user_id, &session.session_id), b"");
            tx.commit().map_err(backend)
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
        self.blocking(move |s| {
            let mut tx = s.db.write_tx().durability(Some(PersistMode::SyncAll));
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
                tx.commit().map_err(backend)?;
                return Ok(Rotation::Rotated(session));
            }
            if session.used_hashes.contains(&presented) {
                session.ended_at_ms = Some(now_ms);
                tx.insert(&s.sessions, sid.as_bytes(), encode(&session)?);
                tx.insert(&s.ended_sessions, ended_key(now_ms, &sid), b"");
                tx.commit().map_err(backend)?;
                return Ok(Rotation::Reused(session));
            }
            Ok(Rotation::Unknown)
        })
        .await
    }

    async fn end_session(&self, session_id: &str, now_ms: u64) -> Result<Option<SessionRecord>, StoreError> {
        let sid = session_id.to_owned();
        self.blocking(move |s| {
            let mut tx = s.db.write_tx().durability(Some(PersistMode::SyncAll));
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
            tx.commit().map_err(backend)?;
            Ok(Some(session))
        })
        .await
    }

    async fn end_user_sessions(&self, user_id: u64, now_ms: u64) -> Result<Vec<SessionRecord>, StoreError> {
        self.blocking(move |s| {
            let mut tx = s.db.write_tx().durability(Some(PersistMode::SyncAll));
            let mut sids = Vec::new();
            for guard in tx.prefix(&s.user_sessions, user_id.to_be_bytes()) {
                let key = guard.key().map_err(backend)?;
                sids.push(String::from_utf8_lossy(&key[8..]).into_owned());
            }
            let mut ended = Vec::new();
            for sid in sids {
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
            tx.commit().map_err(backend)?;
            Ok(ended)
        })
        .await
    }

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
