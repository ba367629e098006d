//! Login sessions ended before their access tokens expire: a logout takes effect at once.

use std::{
    collections::HashMap,
    sync::{OnceLock, RwLock},
};

use crate::ids::now_ms;

/// Ended login sessions (`sid`s), each remembered until every token it had has expired.
#[derive(Debug, Default)]
pub struct Revocations {
    ended: RwLock<HashMap<String, u64>>, // sid → unix ms after which no token of it verifies anyway
    /// Where revocations made here are announced to other processes, when the mesh spans several.
    announce: OnceLock<tokio::sync::mpsc::UnboundedSender<Vec<u8>>>,
}

impl Revocations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Also hands every revocation made here, encoded, to the returned receiver (for
    /// [`crate::relay::relay`]; [`Revocations::record_announced`] reads them elsewhere).
    pub fn announce(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.announce.set(tx).ok().map(|()| rx)
    }

    /// Records a revocation another process announced.
    pub fn record_announced(&self, message: &[u8]) {
        if let Some((until, sid)) = message.split_at_checked(8)
            && let Ok(sid) = std::str::from_utf8(sid)
        {
            self.record(sid, u64::from_be_bytes(until.try_into().unwrap_or_default()));
        }
    }

    /// Marks `sid` ended; `until_ms` is when its last access token expires.
    pub fn revoke(&self, sid: &str, until_ms: u64) {
        self.record(sid, until_ms);
        if let Some(announce) = self.announce.get() {
            let mut message = until_ms.to_be_bytes().to_vec();
            message.extend_from_slice(sid.as_bytes());
            let _ = announce.send(message);
        }
    }

    fn record(&self, sid: &str, until_ms: u64) {
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
