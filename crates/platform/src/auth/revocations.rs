//! Login sessions ended before their access tokens expire: a logout takes effect at once.

use std::{collections::HashMap, sync::RwLock};

use crate::ids::now_ms;

/// Ended login sessions (`sid`s), each remembered until every token it had has expired.
#[derive(Debug, Default)]
pub struct Revocations {
    ended: RwLock<HashMap<String, u64>>, // sid → unix ms after which no token of it verifies anyway
}

impl Revocations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `sid` ended; `until_ms` is when its last access token expires.
    pub fn revoke(&self, sid: &str, until_ms: u64) {
        let mut ended = self.ended.write().unwrap_or_else(|e| e.into_inner());
        let now = now_ms();
        ended.retain(|_, until| *until > now);
        ended.insert(sid.to_owned(), until_ms);
    }

    pub fn is_revoked(&self, sid: &str) -> bool {
        let ended = self.ended.read().unwrap_or_else(|e| e.into_inner());
        ended.get(sid).is_some_and(|until| *until > now_ms())
    }
}
