//! Limits shared by every process of the mesh, kept in Redis as GCRA cells (the theoretical
//! arrival time of the next event), each checked and advanced atomically by a small script
//! (one round trip). When Redis does not answer within the timeout, the process's own cells
//! decide instead (fail open: a slow Redis never blocks a call).
//!
//! Two kinds: [`SharedLimiter`], per-user call limits (the in-process side is the platform
//! layer's `governor` limiter), and [`Allowances`], keyed allowances that can also be given
//! back (login and sign-up throttling: an attempt is taken before hashing and returned when it
//! succeeded, which `governor` cannot do).

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

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

/// Gives one interval back to a cell (an event taken by [`GCRA`] that is not to count).
const GIVE_BACK: &str = r"
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1]) - interval
if tat <= now then redis.call('DEL', KEYS[1]) return 0 end
redis.call('SET', KEYS[1], tat, 'PX', math.ceil((tat - now) / 1000) + 1000)
return 0
";

/// How long until a cell would admit an event (0: now), without taking one.
const WAIT: &str = r"
local now = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if tat - now > tolerance then return tat - now - tolerance end
return 0
";

/// How long Redis is left alone after it failed to answer.
const REST_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Redis scripts run with a timeout; after a failure Redis is not asked again for
/// [`REST_AFTER_FAILURE`], so one slow call per second at most, not every call, pays the timeout.
struct RedisCells {
    connection: ConnectionManager,
    timeout: Duration,
    /// Redis is not asked before this time (µs).
    resting_until: AtomicU64,
}

impl RedisCells {
    fn new(redis: &crate::redis_pool::Redis, timeout: Duration) -> Self {
        Self { connection: redis.manager.clone(), timeout, resting_until: AtomicU64::new(0) }
    }

    /// Runs `script` on `key` with `now`, `interval` and `tolerance`; `Err` when Redis did not answer in time.
    async fn run(&self, script: &redis::Script, key: String, now: u64, rate: Rate) -> Result<u64, ()> {
        if now_us() < self.resting_until.load(Ordering::Relaxed) {
            return Err(());
        }
        let rest = || self.resting_until.store(now_us() + REST_AFTER_FAILURE.as_micros() as u64, Ordering::Relaxed);
        let mut connection = self.connection.clone();
        let mut invocation = script.key(key);
        invocation.arg(now).arg(rate.interval_us).arg(rate.tolerance_us);
        match tokio::time::timeout(self.timeout, invocation.invoke_async::<u64>(&mut connection)).await {
            Ok(Ok(answer)) => Ok(answer),
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

pub struct SharedLimiter {
    redis: RedisCells,
    script: redis::Script,
    rate: Rate,
}

impl std::fmt::Debug for SharedLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimiter").field("interval_us", &self.rate.interval_us).finish_non_exhaustive()
    }
}

impl SharedLimiter {
    /// `per_sec` calls a second sustained, `burst` at once.
    pub fn new(redis: &crate::redis_pool::Redis, per_sec: u32, burst: u32, timeout: Duration) -> Self {
        let interval_us = (1_000_000 / u64::from(per_sec.max(1))).max(1);
        let rate = Rate { interval_us, tolerance_us: interval_us * u64::from(burst.max(1) - 1) };
        Self { redis: RedisCells::new(redis, timeout), script: redis::Script::new(GCRA), rate }
    }

    /// `Some(wait)` when `user` is over the limit, `None` when admitted; `Err` when Redis did
    /// not answer in time (the caller falls back to its own limiter).
    pub async fn check(&self, user: u64) -> Result<Option<Duration>, ()> {
        match self.redis.run(&self.script, redis_keys::user_calls(user), now_us(), self.rate).await? {
            0 => Ok(None),
            wait_us => Ok(Some(Duration::from_micros(wait_us))),
        }
    }
}

/// How fast an allowance refills: `count` events per `period`, all `count` at once at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Microseconds between events at the sustained rate.
    interval_us: u64,
    /// How far ahead a cell may run: the burst.
    tolerance_us: u64,
}

impl Rate {
    /// `count` events per `period` (at least one), all of them at once at most.
    pub fn per(count: u32, period: Duration) -> Self {
        let count = u64::from(count.max(1));
        let interval_us = (period.as_micros() as u64 / count).max(1);
        Self { interval_us, tolerance_us: interval_us * (count - 1) }
    }
}

/// Cells kept in this process: key → theoretical arrival time (µs). A cell whose time has
/// passed is as good as none, so such cells are dropped once many have gathered.
#[derive(Default)]
struct LocalCells {
    cells: Mutex<HashMap<String, u64>>,
}

/// Cells held at once before the idle ones are dropped.
const LOCAL_CELLS_KEPT: usize = 10_000;

impl LocalCells {
    fn take(&self, key: &str, now: u64, rate: Rate) -> u64 {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        if cells.len() >= LOCAL_CELLS_KEPT {
            cells.retain(|_, tat| *tat > now);
            if cells.len() >= LOCAL_CELLS_KEPT / 2 {
                // why: memory stays bounded however many keys are live; the cells nearest their
                // refill are forgotten first (and the next drop is half the bound away)
                let mut tats: Vec<u64> = cells.values().copied().collect();
                let keep_from = tats.len() - LOCAL_CELLS_KEPT / 4;
                let threshold = *tats.select_nth_unstable(keep_from).1;
                cells.retain(|_, tat| *tat >= threshold);
            }
        }
        let tat = cells.get(key).copied().unwrap_or(now).max(now);
        if tat - now > rate.tolerance_us {
            return tat - now - rate.tolerance_us;
        }
        cells.insert(key.to_owned(), tat + rate.interval_us);
        0
    }

    fn give_back(&self, key: &str, now: u64, rate: Rate) {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tat) = cells.get_mut(key) {
            *tat = tat.saturating_sub(rate.interval_us);
            if *tat <= now {
                cells.remove(key);
            }
        }
    }

    fn wait(&self, key: &str, now: u64, rate: Rate) -> u64 {
        let cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        let tat = cells.get(key).copied().unwrap_or(now);
        tat.saturating_sub(now).saturating_sub(rate.tolerance_us)
    }
}

/// An event taken from an allowance, and where (Redis or this process): what
/// [`Allowances::give_back`] returns.
#[derive(Debug)]
#[must_use = "an event taken is either kept (dropped) or given back"]
pub struct Taken {
    key: String,
    shared: bool,
}

/// An allowance per key (a client address, an account): events are taken from it, refused once
/// it is spent, and refilled at a [`Rate`]; an event taken can be given back. Kept in this
/// process, or in Redis for every process of the mesh (then this process's cells stand in
/// while Redis does not answer).
pub struct Allowances {
    /// Names the allowance in Redis keys (`login-source`, `signup-source`, ...).
    name: &'static str,
    rate: Rate,
    local: LocalCells,
    redis: Option<(RedisCells, [redis::Script; 3])>,
}

impl std::fmt::Debug for Allowances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Allowances")
            .field("name", &self.name)
            .field("rate", &self.rate)
            .field("shared", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}

impl Allowances {
    /// Allowances kept in this process only.
    pub fn local(name: &'static str, rate: Rate) -> Self {
        Self { name, rate, local: LocalCells::default(), redis: None }
    }

    /// Allowances kept in Redis, shared by every process using the same `name`.
    pub fn shared(name: &'static str, rate: Rate, redis: &crate::redis_pool::Redis, timeout: Duration) -> Self {
        let scripts = [redis::Script::new(GCRA), redis::Script::new(GIVE_BACK), redis::Script::new(WAIT)];
        Self { name, rate, local: LocalCells::default(), redis: Some((RedisCells::new(redis, timeout), scripts)) }
    }

    /// Takes one event from `key`'s allowance, or says how long until one is free.
    pub async fn take(&self, key: &str) -> Result<Taken, Duration> {
        let now = now_us();
        let (wait_us, shared) = match self.run(0, key, now).await {
            Some(answer) => (answer, true),
            None => (self.local.take(key, now, self.rate), false),
        };
        match wait_us {
            0 => Ok(Taken { key: key.to_owned(), shared }),
            _ => Err(Duration::from_micros(wait_us)),
        }
    }

    /// Returns an event [`take`](Self::take) took (it is not to count), to the cells it was
    /// taken from: one taken here while Redis did not answer never erases one counted there.
    pub async fn give_back(&self, taken: Taken) {
        let now = now_us();
        match taken.shared {
            true => {
                let _ = self.run(1, &taken.key, now).await;
            }
            false => self.local.give_back(&taken.key, now, self.rate),
        }
    }

    /// Whether `key`'s allowance is spent (the next [`take`](Self::take) would be refused);
    /// takes nothing.
    pub async fn is_spent(&self, key: &str) -> bool {
        let now = now_us();
        let wait_us = match self.run(2, key, now).await {
            Some(answer) => answer,
            None => self.local.wait(key, now, self.rate),
        };
        wait_us > 0
    }

    /// Script `which` in Redis, if this allowance is shared and Redis answered.
    async fn run(&self, which: usize, key: &str, now: u64) -> Option<u64> {
        let (redis, scripts) = self.redis.as_ref()?;
        redis.run(&scripts[which], redis_keys::allowance(self.name, key), now, self.rate).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_cells_stay_bounded_however_many_keys_are_live_and_keep_the_busiest() {
        let (cells, rate, t) = (LocalCells::default(), Rate::per(1, Duration::from_secs(3600)), 1_000_000_000);
        for i in 0..3 * LOCAL_CELLS_KEPT as u64 {
            // later keys are taken later, so their cells refill last
            assert_eq!(cells.take(&format!("k{i}"), t + i, rate), 0);
            assert!(cells.cells.lock().unwrap().len() <= LOCAL_CELLS_KEPT);
        }
        let last = format!("k{}", 3 * LOCAL_CELLS_KEPT as u64 - 1);
        assert!(cells.take(&last, t + 3 * LOCAL_CELLS_KEPT as u64, rate) > 0, "the newest cell is kept");
    }

    #[test]
    fn a_rate_spreads_its_count_over_the_period_and_allows_all_of_it_at_once() {
        let rate = Rate::per(10, Duration::from_secs(60));
        assert_eq!(rate, Rate { interval_us: 6_000_000, tolerance_us: 54_000_000 });
        assert_eq!(Rate::per(0, Duration::from_secs(1)), Rate { interval_us: 1_000_000, tolerance_us: 0 });
    }

    #[test]
    fn local_cells_refuse_a_spent_allowance_refill_and_take_back_what_is_given() {
        let (cells, rate, t) = (LocalCells::default(), Rate::per(3, Duration::from_secs(3)), 1_000_000_000);
        for _ in 0..3 {
            assert_eq!(cells.take("a", t, rate), 0);
        }
        assert_eq!(cells.wait("a", t, rate), 1_000_000, "spent: one comes back in a second");
        assert_eq!(cells.take("a", t, rate), 1_000_000);
        assert_eq!(cells.take("b", t, rate), 0, "another key has its own allowance");
        cells.give_back("a", t, rate);
        assert_eq!(cells.wait("a", t, rate), 0, "one given back");
        assert_eq!(cells.take("a", t, rate), 0);
        assert_eq!(cells.take("a", t + 1_000_000, rate), 0, "one refilled after a second");
        for _ in 0..5 {
            cells.give_back("b", t, rate);
        }
        assert!(!cells.cells.lock().unwrap().contains_key("b"), "giving back more than was taken leaves a fresh cell");
        cells.give_back("c", t, rate);
        assert!(!cells.cells.lock().unwrap().contains_key("c"), "giving back to no cell makes none");
    }

    #[tokio::test]
    async fn allowances_in_process_take_give_back_and_tell_when_spent() {
        let allowances = Allowances::local("test", Rate::per(2, Duration::from_secs(3600)));
        let _first = allowances.take("k").await.expect("taken");
        assert!(!allowances.is_spent("k").await);
        let second = allowances.take("k").await.expect("taken");
        assert!(allowances.is_spent("k").await);
        let wait = allowances.take("k").await.unwrap_err();
        assert!(wait > Duration::from_secs(1700) && wait <= Duration::from_secs(1800), "{wait:?}");
        allowances.give_back(second).await;
        assert!(allowances.take("k").await.is_ok());
    }

    /// The same allowance in Redis (when `CHATMESH_TEST_REDIS_URL` is set): two processes'
    /// views share it, and the Redis scripts agree with the cells kept in process.
    #[tokio::test]
    async fn allowances_in_redis_are_shared_and_behave_as_in_process() {
        let Ok(url) = std::env::var("CHATMESH_TEST_REDIS_URL") else {
            println!("skipped: CHATMESH_TEST_REDIS_URL not set");
            return;
        };
        let redis = crate::redis_pool::RedisPool::default().get(&url).await.expect("Redis");
        let rate = Rate::per(2, Duration::from_secs(3600));
        let (one, two) = (
            Allowances::shared("test", rate, &redis, Duration::from_secs(5)),
            Allowances::shared("test", rate, &redis, Duration::from_secs(5)),
        );
        let key = format!("k{}", now_us());
        assert!(one.take(&key).await.is_ok());
        let taken = two.take(&key).await.expect("the second process takes from the same allowance");
        assert!(one.is_spent(&key).await && two.is_spent(&key).await);
        let wait = one.take(&key).await.unwrap_err();
        assert!(wait > Duration::from_secs(1700) && wait <= Duration::from_secs(1800), "{wait:?}");
        two.give_back(taken).await;
        assert!(!one.is_spent(&key).await, "given back in one process, free in the other");
        assert!(one.take(&key).await.is_ok());
        assert!(one.local.cells.lock().unwrap().is_empty(), "nothing was decided in process");
    }
}
