//! Building an index from the store's chats (`chatmesh admin reindex`, and an indexer finding
//! an index never committed to), and comparing an index with the store
//! (`chatmesh admin verify-index`).

use std::collections::HashMap;

use crate::{
    ChangeFeedReader, IndexChange, IndexedChat, SearchError, SearchIndex,
    indexer::refused,
    source::{ScanPage, ScanPosition},
};

/// Chats read per step of a rebuild.
const REBUILD_PAGE: usize = 1000;

/// Writes every searchable chat of the store into `index` (which should be empty) and commits
/// it at the feed position read before the scan, so an indexer resuming there re-applies
/// whatever changed during the rebuild. `progress` hears the number of chats read so far.
pub async fn rebuild<S: ChangeFeedReader + ?Sized>(
    store: &S,
    index: &dyn SearchIndex,
    mut progress: impl FnMut(u64),
) -> Result<u64, SearchError> {
    let head = store.feed_head().await?;
    let mut read = 0u64;
    let mut scan = Scan::new(store);
    while let Some((count, page)) = scan.next(head).await? {
        read += count;
        refused(&index.write(page.into_iter().map(IndexChange::Upsert).collect()).await?);
        progress(read);
    }
    index.commit(head).await?;
    Ok(read)
}

/// Every searchable chat of a store, a page at a time.
struct Scan<'a, S: ?Sized> {
    store: &'a S,
    after: ScanPosition,
}

impl<'a, S: ChangeFeedReader + ?Sized> Scan<'a, S> {
    fn new(store: &'a S) -> Self {
        Self { store, after: (0, 0) }
    }

    /// The next page: how many chats were read, and the searchable states among them at
    /// `version`; `None` at the end.
    async fn next(&mut self, version: u64) -> Result<Option<(u64, Vec<IndexedChat>)>, SearchError> {
        let Some(ScanPage { read, next, chats }) = self.store.scan(self.after, REBUILD_PAGE).await? else {
            return Ok(None);
        };
        self.after = next;
        Ok(Some((read, chats.into_iter().map(|chat| IndexedChat { version, ..chat }).collect())))
    }
}

/// How an index differs from the store's searchable chats.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Comparison {
    /// Searchable chats in the store.
    pub searchable: u64,
    /// Documents in the index.
    pub indexed: u64,
    /// Searchable but not in the index.
    pub missing: Vec<u64>,
    /// In the index but not searchable (retracted, or of a deleted channel, or unknown).
    pub extra: Vec<u64>,
    /// In both, but the index holds another state (text, removals, ...).
    pub stale: Vec<u64>,
}

impl Comparison {
    pub fn differences(&self) -> usize {
        self.missing.len() + self.extra.len() + self.stale.len()
    }
}

/// Compares every searchable chat of the store with what the index holds of it (by digest).
pub async fn compare<S: ChangeFeedReader + ?Sized>(
    store: &S,
    index: &dyn SearchIndex,
) -> Result<Comparison, SearchError> {
    let mut expected: HashMap<u64, u64> = HashMap::new();
    let mut scan = Scan::new(store);
    while let Some((_, page)) = scan.next(0).await? {
        expected.extend(page.iter().map(|state| (state.chat_id, state.digest())));
    }
    let mut comparison = Comparison { searchable: expected.len() as u64, ..Comparison::default() };
    let mut after_id = 0;
    loop {
        let entries = index.entries_after(after_id, REBUILD_PAGE).await?;
        let Some(last) = entries.last() else { break };
        after_id = last.chat_id;
        for entry in entries {
            comparison.indexed += 1;
            match expected.remove(&entry.chat_id) {
                Some(digest) if digest == entry.digest => {}
                Some(_) => comparison.stale.push(entry.chat_id),
                None => comparison.extra.push(entry.chat_id),
            }
        }
    }
    comparison.missing = expected.into_keys().collect();
    comparison.missing.sort_unstable();
    Ok(comparison)
}
