//! Write timestamps for the pending writes of changes, in CQL's unit (µs since the epoch).

use std::sync::atomic::{AtomicI64, Ordering};

/// The process's clock for changes: microseconds, so two changes of one millisecond never tie,
/// and monotonic, above every timestamp it gave before. (Above another process's: see `commit`.)
#[derive(Debug)]
pub(super) struct Clock {
    /// Pinned (tests): the clock stands there, moved only by `advance`; stamps still rise.
    pinned: Option<AtomicI64>,
    last: AtomicI64,
}

impl Clock {
    pub(super) fn wall() -> Self {
        Clock { pinned: None, last: AtomicI64::new(i64::MIN) }
    }

    /// A clock standing at `unix_ms` until advanced.
    #[cfg(test)]
    pub(super) fn pinned(unix_ms: i64) -> Self {
        Clock { pinned: Some(AtomicI64::new(unix_ms * 1000)), last: AtomicI64::new(i64::MIN) }
    }

    #[cfg(test)]
    pub(super) fn advance(&self, ms: i64) {
        self.pinned.as_ref().expect("only a pinned clock is advanced").fetch_add(ms * 1000, Ordering::SeqCst);
    }

    pub(super) fn now_us(&self) -> i64 {
        match &self.pinned {
            Some(at) => at.load(Ordering::SeqCst),
            None => {
                let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
            }
        }
    }

    /// A timestamp above every earlier one of this clock.
    pub(super) fn stamp(&self) -> i64 {
        let now = self.now_us();
        let previous = self
            .last
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(now.max(last.saturating_add(1))))
            .expect("the update always applies");
        now.max(previous.saturating_add(1))
    }
}
