//! The indexer: follows the change feed in order and writes each changed chat's *current*
//! state from the store (never the event's payload), staging changes and committing them with
//! the feed position every `commit_interval` or `commit_batch` changes. The position lives in
//! the index's own commit, so a crash mid-batch resumes from the last commit and rewrites the
//! same current states (idempotent by chat id); nothing is lost and nothing comes back.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use chatmesh_api::chat::v1::{ChannelEvent, EventType, channel_event::Payload};
use chatmesh_platform::{ids::unix_ms_of, shutdown::CancellationToken};
use tokio::sync::watch;

use super::{
    IndexChange, IndexError, IndexedChat, SearchIndex,
    source::{ChatSource, Searchable, StoreSource},
};
use crate::store::{ChatStore, StoreError};

/// Feed entries read per step.
const BATCH: usize = 512;
/// Chats read per step of a rebuild.
const REBUILD_PAGE: usize = 1000;
const IDLE_POLL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Feed entries counted at most for `lag_events`.
const LAG_COUNT_CAP: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexerSettings {
    /// Staged changes are committed at least this often.
    pub commit_interval: Duration,
    /// ...or as soon as this many are staged.
    pub commit_batch: usize,
}

impl Default for IndexerSettings {
    fn default() -> Self {
        Self { commit_interval: Duration::from_millis(500), commit_batch: 10_000 }
    }
}

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

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("reading chats: {0}")]
    Source(String),
}

fn lag_ms(newest: u64, indexed: u64) -> u64 {
    if newest > indexed { unix_ms_of(newest).saturating_sub(unix_ms_of(indexed)) } else { 0 }
}

/// The index's lag behind the store's feed, now.
pub async fn status(store: &dyn ChatStore, index: &dyn SearchIndex) -> Result<SearchStatus, String> {
    let indexed = index.position().await.map_err(|e| e.to_string())?;
    let newest = store.feed_head().await.map_err(|e| e.to_string())?;
    let lag_events = store.feed_count(indexed, LAG_COUNT_CAP).await.map_err(|e| e.to_string())?;
    let documents = index.documents().await.map_err(|e| e.to_string())?;
    Ok(SearchStatus {
        newest_event_id: newest,
        indexed_event_id: indexed,
        lag_events,
        lag_ms: lag_ms(newest, indexed),
        documents,
    })
}

/// What changed, as the indexer sees it: a chat to re-read, or a deleted channel to forget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    Chat { chat_id: u64, event_id: u64 },
    Channel { channel_id: u64 },
}

/// What a feed event changes in the index, if anything.
pub fn changed_by(event: &ChannelEvent) -> Option<Changed> {
    let event_id: u64 = event.event_id.parse().unwrap_or(0);
    match (event.r#type(), &event.payload) {
        (
            EventType::ChatCreated | EventType::ChatEdited | EventType::ChatRetracted | EventType::ChatRemoved,
            Some(Payload::Chat(chat)),
        ) => chat.chat_id.parse().ok().map(|chat_id| Changed::Chat { chat_id, event_id }),
        (EventType::ChannelDeleted, _) => {
            event.channel_id.parse().ok().map(|channel_id| Changed::Channel { channel_id })
        }
        _ => None,
    }
}

/// Index changes for a run of changes, in order, reading each changed chat's current state
/// (once, however often it changed in the run) with its last change's event id as version.
pub async fn changes_for(source: &dyn ChatSource, changed: &[Changed]) -> Result<Vec<IndexChange>, String> {
    // why: a chat changed several times in one run is written once, at its last change.
    let mut last_of: HashMap<u64, usize> = HashMap::new();
    for (i, change) in changed.iter().enumerate() {
        if let Changed::Chat { chat_id, .. } = change {
            last_of.insert(*chat_id, i);
        }
    }
    let wanted: Vec<u64> = last_of.keys().copied().collect();
    let mut states = source.states(&wanted).await?;
    let mut changes = Vec::with_capacity(changed.len());
    for (i, change) in changed.iter().enumerate() {
        match *change {
            Changed::Chat { chat_id, event_id } if last_of.get(&chat_id) == Some(&i) => {
                changes.push(match states.remove(&chat_id) {
                    Some(state) => IndexChange::Upsert(IndexedChat { version: event_id, ..state }),
                    None => IndexChange::Delete { chat_id, version: event_id },
                });
            }
            Changed::Chat { .. } => {}
            Changed::Channel { channel_id } => changes.push(IndexChange::DeleteChannel { channel_id }),
        }
    }
    Ok(changes)
}

/// Writes every searchable chat of the store into `index` (which should be empty) and commits
/// it at the feed position read before the scan, so an indexer resuming there re-applies
/// whatever changed during the rebuild. `progress` hears the number of chats read so far.
pub async fn rebuild(
    store: &dyn ChatStore,
    index: &dyn SearchIndex,
    mut progress: impl FnMut(u64),
) -> Result<u64, String> {
    let head = store.feed_head().await.map_err(|e| e.to_string())?;
    let mut read = 0u64;
    let mut scan = Scan::new(store);
    while let Some((count, page)) = scan.next(head).await? {
        read += count;
        refused(&index.write(page.into_iter().map(IndexChange::Upsert).collect()).await.map_err(|e| e.to_string())?);
        progress(read);
    }
    index.commit(head).await.map_err(|e| e.to_string())?;
    Ok(read)
}

/// Every searchable chat of a store, a page at a time.
struct Scan<'a> {
    store: &'a dyn ChatStore,
    searchable: Searchable<'a>,
    after: (u64, u64),
}

impl<'a> Scan<'a> {
    fn new(store: &'a dyn ChatStore) -> Self {
        Self { store, searchable: Searchable::new(store), after: (0, 0) }
    }

    /// The next page: how many chats were read, and the searchable states among them at
    /// `version`; `None` at the end.
    async fn next(&mut self, version: u64) -> Result<Option<(u64, Vec<IndexedChat>)>, String> {
        let page = self.store.scan_chats(self.after, REBUILD_PAGE).await.map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { return Ok(None) };
        self.after = (last.channel_id, last.chat_id);
        let read = page.len() as u64;
        let mut states = Vec::with_capacity(page.len());
        for chat in page {
            states.extend(self.searchable.state(chat, version).await.map_err(|e| e.to_string())?);
        }
        Ok(Some((read, states)))
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
pub async fn compare(store: &dyn ChatStore, index: &dyn SearchIndex) -> Result<Comparison, String> {
    let mut expected: HashMap<u64, u64> = HashMap::new();
    let mut scan = Scan::new(store);
    while let Some((_, page)) = scan.next(0).await? {
        expected.extend(page.iter().map(|state| (state.chat_id, state.digest())));
    }
    let mut comparison = Comparison { searchable: expected.len() as u64, ..Comparison::default() };
    let mut after_id = 0;
    loop {
        let entries = index.entries_after(after_id, REBUILD_PAGE).await.map_err(|e| e.to_string())?;
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

/// Logs and counts changes the index refused for good (they are not retried).
pub(crate) fn refused(rejected: &[super::Rejected]) {
    for r in rejected {
        tracing::warn!(chat_id = r.chat_id, reason = %r.reason, "the search index refused a chat");
    }
    if !rejected.is_empty() {
        metrics::counter!("chatmesh_search_rejected_total").increment(rejected.len() as u64);
    }
}

fn report(position: u64, newest: u64) {
    metrics::gauge!("chatmesh_search_lag_seconds").set(lag_ms(newest, position) as f64 / 1000.0);
}

/// Follows the feed into `index` until `shutdown`; `wake` changes after each committed write.
/// An index that was never committed to is first rebuilt from the store.
pub async fn run_indexer(
    store: Arc<dyn ChatStore>,
    index: Arc<dyn SearchIndex>,
    settings: IndexerSettings,
    mut wake: watch::Receiver<u64>,
    shutdown: CancellationToken,
    status: Arc<IndexerStatus>,
) {
    status.set_running(true);
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    let source = StoreSource(store.clone());
    let mut indexer = Indexer {
        store: store.as_ref(),
        source: &source,
        index: index.as_ref(),
        settings,
        position: None,
        committed: 0,
        staged: 0,
        since: None,
    };
    loop {
        let pause = match indexer.step().await {
            Ok(Progress::More) => {
                failing = false;
                backoff = Duration::from_millis(100);
                continue;
            }
            Ok(Progress::CaughtUp(pause)) => {
                if failing {
                    tracing::info!("search indexing recovered");
                }
                failing = false;
                backoff = Duration::from_millis(100);
                pause
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "search indexing failed; retrying with backoff");
                }
                failing = true;
                // why: staged changes may be partial; resume from the last commit (idempotent).
                indexer.position = None;
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                pause
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            Ok(()) = wake.changed(), if !failing => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
    if indexer.staged > 0
        && let Err(e) = indexer.commit().await
    {
        tracing::warn!(error = %e, "search index not committed at shutdown; it resumes from its last commit");
    }
    status.set_running(false);
}

enum Progress {
    /// More of the feed is waiting.
    More,
    /// Caught up: wait for a write, or this long (a commit falls due).
    CaughtUp(Duration),
}

struct Indexer<'a> {
    store: &'a dyn ChatStore,
    source: &'a dyn ChatSource,
    index: &'a dyn SearchIndex,
    settings: IndexerSettings,
    /// The feed position reached (staged); `None`: read it from the index's last commit.
    position: Option<u64>,
    /// The feed position of the index's last commit.
    committed: u64,
    staged: usize,
    /// When the oldest staged change was staged.
    since: Option<Instant>,
}

impl Indexer<'_> {
    /// Where the index's last commit left off; an index never committed to is built from the
    /// store first.
    async fn resume(&mut self) -> Result<u64, Failure> {
        let mut position = self.index.position().await?;
        self.staged = 0;
        self.since = None;
        if position == 0 && self.index.documents().await? == 0 && self.store.feed_head().await? > 0 {
            tracing::info!("building the search index from the store");
            let read = rebuild(self.store, self.index, |_| {}).await.map_err(IndexError::Backend)?;
            position = self.index.position().await?;
            tracing::info!(chats = read, "search index built");
        }
        self.committed = position;
        self.position = Some(position);
        // why: the gauge reports the index from the start (a start-up build commits outside
        // `commit`, and an idle indexer may not commit again for a long time)
        metrics::gauge!("chatmesh_search_documents").set(self.index.documents().await? as f64);
        Ok(position)
    }

    async fn step(&mut self) -> Result<Progress, Failure> {
        let position = match self.position {
            Some(position) => position,
            None => self.resume().await?,
        };
        let events = self.store.feed(position, BATCH).await?;
        if let Some(last) = events.last().and_then(|e| e.event_id.parse::<u64>().ok()) {
            let changed: Vec<Changed> = events.iter().filter_map(changed_by).collect();
            let changes = changes_for(self.source, &changed).await.map_err(Failure::Source)?;
            metrics::counter!("chatmesh_search_changes_total").increment(changes.len() as u64);
            refused(&self.index.write(changes).await?);
            self.position = Some(last);
            self.staged += events.len();
            self.since.get_or_insert_with(Instant::now);
        }
        let due = self.since.map(|since| self.settings.commit_interval.saturating_sub(since.elapsed()));
        if self.staged >= self.settings.commit_batch || due == Some(Duration::ZERO) {
            self.commit().await?;
        }
        if events.len() == BATCH {
            return Ok(Progress::More);
        }
        report(self.committed, self.store.feed_head().await?);
        Ok(Progress::CaughtUp(
            self.since.map_or(IDLE_POLL, |since| {
                self.settings.commit_interval.saturating_sub(since.elapsed()).min(IDLE_POLL)
            }),
        ))
    }

    async fn commit(&mut self) -> Result<(), Failure> {
        let Some(position) = self.position else { return Ok(()) };
        self.index.commit(position).await?;
        self.committed = position;
        self.staged = 0;
        self.since = None;
        metrics::counter!("chatmesh_search_commits_total").increment(1);
        metrics::gauge!("chatmesh_search_documents").set(self.index.documents().await? as f64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        search::{TantivyIndex, conformance::query},
        store::{FjallChatStore, conformance::text},
    };

    async fn send(store: &dyn ChatStore, channel: u64, words: &str) -> u64 {
        match store.create_chat(text(channel, 7, words, "")).await.unwrap() {
            crate::store::CreateOutcome::Created(chat) => chat.chat_id,
            other => panic!("{other:?}"),
        }
    }

    async fn caught_up(store: &dyn ChatStore, index: &dyn SearchIndex) {
        for _ in 0..200 {
            if index.position().await.unwrap() == store.feed_head().await.unwrap() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the indexer did not catch up");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_index_follows_creates_edits_retractions_removals_and_deletions() {
        let (_dir, store) = FjallChatStore::temp();
        let store: Arc<dyn ChatStore> = Arc::new(store);
        let index_dir = tempfile::tempdir().unwrap();
        let index: Arc<dyn SearchIndex> = Arc::new(TantivyIndex::open(index_dir.path(), 20_000_000).unwrap());
        let (wake_tx, wake) = watch::channel(0u64);
        let shutdown = CancellationToken::new();
        let settings = IndexerSettings { commit_interval: Duration::from_millis(50), commit_batch: 100 };
        let running = Arc::new(IndexerStatus::default());
        let task =
            tokio::spawn(run_indexer(store.clone(), index.clone(), settings, wake, shutdown.clone(), running.clone()));

        let kept = send(store.as_ref(), 1, "apple kept").await;
        let edited = send(store.as_ref(), 1, "apple draft").await;
        let retracted = send(store.as_ref(), 1, "apple retracted").await;
        let removed = send(store.as_ref(), 1, "apple removed").await;
        send(store.as_ref(), 2, "apple elsewhere").await;
        store.edit_chat(edited, 7, "pear final".into()).await.unwrap();
        store.retract_chats(7, vec![retracted]).await.unwrap();
        store.remove_chats(8, vec![removed]).await.unwrap();
        store.append_events(vec![crate::store::conformance::channel_deleted(2)]).await.unwrap();
        wake_tx.send_modify(|n| *n += 1);
        caught_up(store.as_ref(), index.as_ref()).await;
        assert!(running.is_running());

        let mut q = query("apple", &[1, 2]);
        q.viewer = 8;
        assert_eq!(index.search(q).await.unwrap(), vec![kept], "edited, retracted, removed and deleted are gone");
        assert_eq!(index.search(query("apple", &[1, 2])).await.unwrap(), vec![removed, kept], "removed for 8 only");
        assert_eq!(index.search(query("pear", &[1])).await.unwrap(), vec![edited]);
        let report = status(store.as_ref(), index.as_ref()).await.unwrap();
        assert_eq!((report.lag_events, report.lag_ms, report.documents), (0, 0, 3));

        shutdown.cancel();
        task.await.unwrap();
        assert!(!running.is_running());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rebuild_finds_what_following_the_feed_found() {
        let (_dir, store) = FjallChatStore::temp();
        let mut ids = Vec::new();
        for i in 0..30 {
            ids.push(send(&store, 1 + i % 3, &format!("common word{i}")).await);
        }
        store.retract_chats(7, vec![ids[4]]).await.unwrap();
        store.edit_chat(ids[5], 7, "changed".into()).await.unwrap();
        store.remove_chats(9, vec![ids[6]]).await.unwrap();

        let followed_dir = tempfile::tempdir().unwrap();
        let followed = TantivyIndex::open(followed_dir.path(), 20_000_000).unwrap();
        let events = store.feed(0, 1000).await.unwrap();
        let changed: Vec<Changed> = events.iter().filter_map(changed_by).collect();
        let store: Arc<dyn ChatStore> = Arc::new(store);
        let changes = changes_for(&StoreSource(store.clone()), &changed).await.unwrap();
        followed.write(changes).await.unwrap();
        followed.commit(store.feed_head().await.unwrap()).await.unwrap();

        let rebuilt_dir = tempfile::tempdir().unwrap();
        let rebuilt = TantivyIndex::open(rebuilt_dir.path(), 20_000_000).unwrap();
        let mut seen = Vec::new();
        assert_eq!(rebuild(store.as_ref(), &rebuilt, |n| seen.push(n)).await.unwrap(), 30);
        assert_eq!(seen.last(), Some(&30));
        assert_eq!(rebuilt.position().await.unwrap(), followed.position().await.unwrap());

        let same = compare(store.as_ref(), &rebuilt).await.unwrap();
        assert_eq!((same.searchable, same.indexed, same.differences()), (29, 29, 0), "{same:?}");
        store.edit_chat(ids[7], 7, "edited after the build".into()).await.unwrap();
        store.retract_chats(7, vec![ids[8]]).await.unwrap();
        let send_more = send(store.as_ref(), 1, "unindexed").await;
        let differs = compare(store.as_ref(), &rebuilt).await.unwrap();
        assert_eq!((differs.stale, differs.extra, differs.missing), (vec![ids[7]], vec![ids[8]], vec![send_more]));

        for viewer in [0, 9] {
            let mut q = query("common", &[1, 2, 3]);
            q.viewer = viewer;
            let (a, b) = (followed.search(q.clone()).await.unwrap(), rebuilt.search(q).await.unwrap());
            assert_eq!(a, b, "viewer {viewer}");
            assert_eq!(a.len(), if viewer == 9 { 27 } else { 28 });
        }
    }
}
