//! The user store: accounts and login sessions, in domain types. Uniqueness of email and
//! username (case-insensitive) is the store's job, atomically with the write.
//!
//! Backends: [`FjallUserStore`] (embedded, one process) and [`ScyllaUserStore`] (ScyllaDB).

#[cfg(test)]
#[doc(hidden)]
pub mod conformance;
mod fjall;
mod scylla;

use async_trait::async_trait;

pub use self::{fjall::FjallUserStore, scylla::ScyllaUserStore};
use crate::model::{SessionRecord, UserRecord};

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

#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Creates an account; fails if its email or username is taken (case-insensitively).
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    async fn get_user(&self, user_id: u64) -> Result<Option<UserRecord>, StoreError>;
    /// By lowercase email.
    async fn get_user_by_email(&self, email_key: &str) -> Result<Option<UserRecord>, StoreError>;
    /// By lowercase username.
    async fn get_user_by_username(&self, username_key: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Replaces an account's record; fails if a new username is taken.
    async fn update_user(&self, user: &UserRecord) -> Result<(), StoreError>;

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
