//! Per-user call limits shared by every process of the mesh: one GCRA cell per user in Redis,
//! checked and advanced atomically by a small script (one round trip). The same quota as the
//! in-process limiter; when Redis does not answer within the timeout the call is admitted by the
//! process's own limiter instead (fail open: a slow Redis never blocks a call).

use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::redis_keys;

fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Generic cell rate algorithm: `tat` is the theoretical arrival time of the next call. A call
/// is admitted when `tat - now <= tolerance` (the burst) and moves `tat` one interval on.
/// Times are in microseconds. Returns 0 when admitted, else how long until it would be.
const GCRA: &str = r"
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if tat < now then tat = now end
if tat - now > tolerance then return tat - now - tolerance end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil((tat + interval - now) / 1000) + 1000)
return 0
";

pub struct SharedLimiter {
    connection: ConnectionManager,
    script: redis::Script,
    /// Microseconds between calls at the sustained rate.
    interval_us: u64,
    /// How far ahead `tat` may run: the burst.
    tolerance_us: u64,
    timeout: Duration,
    /// After Redis failed to answer, it is not asked again before this time (µs): one slow call
    /// per second at most, not every call, pays the timeout.
    resting_until: std::sync::atomic::AtomicU64,
}

/// How long Redis is left alone after it failed to answer.
const REST_AFTER_FAILURE: Duration = Duration::from_secs(1);

impl std::fmt::Debug for SharedLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimiter").field("interval_us", &self.interval_us).finish_non_exhaustive()
    }
}

impl SharedLimiter {
    /// `per_sec` calls a second sustained, `burst` at once.
    pub fn new(redis: &crate::redis_pool::Redis, per_sec: u32, burst: u32, timeout: Duration) -> Self {
        let connection = redis.manager.clone();
        let interval_us = (1_000_000 / u64::from(per_sec.max(1))).max(1);
        let tolerance_us = interval_us * u64::from(burst.max(1) - 1);
        Self {
            connection,
            script: redis::Script::new(GCRA),
            interval_us,
            tolerance_us,
            timeout,
            resting_until: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(wait)` when `user` is over the limit, `None` when admitted; `Err` when Redis did
    /// not answer in time (the caller falls back to its own limiter).
    pub async fn check(&self, user: u64) -> Result<Option<Duration>, ()> {
        use std::sync::atomic::Ordering;
        if now_us() < self.resting_until.load(Ordering::Relaxed) {
            return Err(());
        }
        let rest = || self.resting_until.store(now_us() + REST_AFTER_FAILURE.as_micros() as u64, Ordering::Relaxed);
        let mut connection = self.connection.clone();
        let mut invocation = self.script.key(redis_keys::user_calls(user));
        invocation.arg(now_us()).arg(self.interval_us).arg(self.tolerance_us);
        match tokio::time::timeout(self.timeout, invocation.invoke_async::<u64>(&mut connection)).await {
            Ok(Ok(0)) => Ok(None),
            Ok(Ok(wait_us)) => Ok(Some(Duration::from_micros(wait_us))),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "shared limits: Redis refused; limiting in process");
                rest();
                Err(())
            }
            Err(_) => {
                tracing::debug!("shared limits: Redis timed out; limiting in process");
                rest();
                Err(())
            }
        }
    }
}
