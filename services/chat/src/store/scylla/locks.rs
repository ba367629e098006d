//! Writes to one channel are serialized within the process: a striped lock per channel (taken
//! before its ids are minted, held until its write returns), and a bound on the writes in
//! flight across channels.

use tokio::sync::{Mutex, MutexGuard, SemaphorePermit};

use super::ScyllaChatStore;

/// Writes in flight at once across channels (each holds its channel's lock).
pub(super) const MAX_IN_FLIGHT: usize = 256;
/// Channel lock stripes.
pub(super) const STRIPES: usize = 1024;

/// A channel's write lock (or two channels'), with a write slot.
pub(super) struct Held<'a> {
    _guards: (MutexGuard<'a, ()>, Option<MutexGuard<'a, ()>>),
    _permit: Option<SemaphorePermit<'a>>,
}

/// The lock stripes, one per hash of a channel id.
pub(super) fn stripes() -> Box<[Mutex<()>]> {
    (0..STRIPES).map(|_| Mutex::new(())).collect()
}

fn stripe(channel_id: u64) -> usize {
    // why: ids are snowflakes whose low bits are mostly zero; Fibonacci hashing spreads them.
    (channel_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - STRIPES.trailing_zeros())) as usize
}

impl ScyllaChatStore {
    pub(super) async fn lock(&self, channel_id: u64) -> Held<'_> {
        let permit = self.write_slot().await;
        Held { _guards: (self.inner.locks[stripe(channel_id)].lock().await, None), _permit: permit }
    }

    /// The locks of two channels, taken in stripe order (no deadlock with another pair).
    pub(super) async fn lock_both(&self, a: u64, b: u64) -> Held<'_> {
        let permit = self.write_slot().await;
        let (sa, sb) = (stripe(a), stripe(b));
        if sa == sb {
            return Held { _guards: (self.inner.locks[sa].lock().await, None), _permit: permit };
        }
        let (first, second) = if sa < sb { (sa, sb) } else { (sb, sa) };
        let first = self.inner.locks[first].lock().await;
        let second = self.inner.locks[second].lock().await;
        Held { _guards: (first, Some(second)), _permit: permit }
    }

    /// One of the writes allowed in flight at once, across channels: under a burst, writes
    /// queue here rather than pile onto the cluster (and its coordinators' timeouts).
    async fn write_slot(&self) -> Option<SemaphorePermit<'_>> {
        // why: the semaphore is never closed; None would only mean "unbounded"
        self.inner.in_flight.acquire().await.ok()
    }
}
