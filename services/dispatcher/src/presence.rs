//! Presence across processes: per user, a Redis sorted set of the dispatchers holding a session
//! of theirs, each claim scored by when it expires unless refreshed. A dispatcher refreshes its
//! claims on a heartbeat, so one that dies stops counting within the TTL. Every call is bounded
//! by a short timeout; when Redis does not answer, the dispatcher falls back to what it knows.
//! "Last seen" is written on every heartbeat and release, so it survives the dispatcher.

use std::time::Duration;

use chatmesh_platform::{ids::now_ms, redis_keys};
use redis::aio::ConnectionManager;

/// How long "last seen" is kept after a user's last session: 90 days.
const LAST_SEEN_KEPT_MS: u64 = 90 * 24 * 3600 * 1000;

pub struct RedisPresence {
    connection: ConnectionManager,
    /// This dispatcher's member name in the sets.
    member: String,
    timeout: Duration,
    ttl: Duration,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence").field("member", &self.member).finish_non_exhaustive()
    }
}

impl RedisPresence {
    pub fn new(redis: &chatmesh_platform::redis_pool::Redis, timeout: Duration, ttl: Duration) -> Self {
        Self { connection: redis.manager.clone(), member: format!("{:016x}", rand::random::<u64>()), timeout, ttl }
    }

    /// How often claims are refreshed.
    pub fn heartbeat(&self) -> Duration {
        self.ttl / 3
    }

    async fn run<T: redis::FromRedisValue>(&self, pipe: redis::Pipeline) -> Option<T> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(self.timeout, pipe.query_async::<T>(&mut connection)).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "presence: Redis refused; using local state");
                None
            }
            Err(_) => {
                tracing::debug!("presence: Redis timed out; using local state");
                None
            }
        }
    }

    /// Claims `user` online here; returns whether they were online elsewhere already.
    pub async fn claim(&self, user: u64) -> Option<bool> {
        let (key, now) = (redis_keys::presence(user), now_ms());
        let mut pipe = redis::pipe();
        pipe.cmd("ZREMRANGEBYSCORE").arg(&key).arg("-inf").arg(now).ignore();
        pipe.cmd("ZCOUNT").arg(&key).arg(now).arg("+inf");
        pipe.cmd("ZADD").arg(&key).arg(now + self.ttl.as_millis() as u64).arg(&self.member).ignore();
        pipe.cmd("PEXPIRE").arg(&key).arg(2 * self.ttl.as_millis() as u64).ignore();
        self.run::<(u64,)>(pipe).await.map(|(before,)| before > 0)
    }

    /// Releases this dispatcher's claim; returns whether `user` is still online elsewhere.
    pub async fn release(&self, user: u64) -> Option<bool> {
        let (key, now) = (redis_keys::presence(user), now_ms());
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM").arg(&key).arg(&self.member).ignore();
        pipe.cmd("SET").arg(redis_keys::last_seen(user)).arg(now).arg("PX").arg(LAST_SEEN_KEPT_MS).ignore();
        pipe.cmd("ZCOUNT").arg(&key).arg(now).arg("+inf");
        self.run::<(u64,)>(pipe).await.map(|(left,)| left > 0)
    }

    /// Whether any dispatcher holds an unexpired claim on `user`.
    pub async fn is_online(&self, user: u64) -> Option<bool> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZCOUNT").arg(redis_keys::presence(user)).arg(now_ms()).arg("+inf");
        self.run::<(u64,)>(pipe).await.map(|(claims,)| claims > 0)
    }

    /// When `user` was last seen online anywhere, if Redis knows.
    pub async fn last_seen_ms(&self, user: u64) -> Option<u64> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(redis_keys::last_seen(user));
        self.run::<(Option<u64>,)>(pipe).await.and_then(|(seen,)| seen)
    }

    /// Renews this dispatcher's claims on `users`.
    pub async fn refresh(&self, users: &[u64]) {
        if users.is_empty() {
            return;
        }
        let now = now_ms();
        let expires = now + self.ttl.as_millis() as u64;
        let mut pipe = redis::pipe();
        for user in users {
            let key = redis_keys::presence(*user);
            pipe.cmd("ZADD").arg(&key).arg(expires).arg(&self.member).ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(2 * self.ttl.as_millis() as u64).ignore();
            pipe.cmd("SET").arg(redis_keys::last_seen(*user)).arg(now).arg("PX").arg(LAST_SEEN_KEPT_MS).ignore();
        }
        let _ = self.run::<()>(pipe).await;
    }
}
