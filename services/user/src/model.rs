//! The user service's domain records, as stored.

use serde::{Deserialize, Serialize};

/// An account. `password_hash` never leaves the service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRecord {
    pub user_id: u64,
    /// As the user typed it.
    pub email: String,
    pub name: String,
    /// As the user typed it; uniqueness is on the lowercase form.
    pub username: Option<String>,
    pub avatar_url: String,
    pub bio: String,
    pub password_hash: String,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl UserRecord {
    /// The key email uniqueness is checked on.
    pub fn email_key(&self) -> String {
        self.email.to_lowercase()
    }

    /// The key username uniqueness is checked on.
    pub fn username_key(&self) -> Option<String> {
        self.username.as_ref().map(|u| u.to_lowercase())
    }
}

/// One login session (`sid`): a device's chain of refresh tokens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionRecord {
    pub session_id: String,
    pub user_id: u64,
    /// SHA-256 (hex) of the refresh token that is valid now.
    pub refresh_hash: String,
    /// Hashes of refresh tokens already used; presenting one again means the chain leaked.
    pub used_hashes: Vec<String>,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub ended_at_ms: Option<u64>,
}

impl SessionRecord {
    /// Used hashes remembered per session for reuse detection.
    pub const USED_HASHES_KEPT: usize = 64;
}
