//! How far the index trails the change feed, and whether an indexer runs in this process.

use std::sync::atomic::{AtomicBool, Ordering};

use chatmesh_platform::ids::unix_ms_of;

use crate::{ChangeFeedReader, SearchError, SearchIndex};

/// Feed entries counted at most for `lag_events`.
const LAG_COUNT_CAP: u64 = 1_000_000;

/// Whether an indexer runs in this process (for status reports).
#[derive(Debug, Default)]
pub struct IndexerStatus {
    running: AtomicBool,
}

impl IndexerStatus {
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    pub(crate) fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Release);
    }
}

/// How far the index trails the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchStatus {
    pub newest_event_id: u64,
    pub indexed_event_id: u64,
    pub lag_events: u64,
    pub lag_ms: u64,
    pub documents: u64,
}

/// The time between two event ids (which carry their creation time).
pub(crate) fn lag_ms(newest: u64, indexed: u64) -> u64 {
    if newest > indexed { unix_ms_of(newest).saturating_sub(unix_ms_of(indexed)) } else { 0 }
}

/// The index's lag behind the store's feed, now.
pub async fn status<S: ChangeFeedReader + ?Sized>(
    store: &S,
    index: &dyn SearchIndex,
) -> Result<SearchStatus, SearchError> {
    let indexed = index.position().await?;
    let newest = store.feed_head().await?;
    let lag_events = store.feed_count(indexed, LAG_COUNT_CAP).await?;
    let documents = index.documents().await?;
    Ok(SearchStatus {
        newest_event_id: newest,
        indexed_event_id: indexed,
        lag_events,
        lag_ms: lag_ms(newest, indexed),
        documents,
    })
}
