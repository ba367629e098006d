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

use super::{IndexChange, IndexError, IndexedChat, SearchIndex};
use crate::{
    model::{ChatKind, ChatRecord},
    store::{ChatStore, StoreError},
};

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

/// The index form of a chat's current state, or `None` when it must not be found (a retracted
/// or system chat).
fn indexed(chat: ChatRecord, removed_for: Vec<u64>, version: u64) -> Option<IndexedChat> {
    (chat.kind == ChatKind::Text && !chat.is_retracted()).then_some(IndexedChat {
        chat_id: chat.chat_id,
        channel_id: chat.channel_id,
        sender_id: chat.sender_id,
        created_at_ms: chat.created_at_ms,
        text: chat.text,
        removed_for,
        version,
    })
}

/// Index changes for a run of feed events, reading each changed chat's current state.
async fn changes_for(store: &dyn ChatStore, events: &[ChannelEvent]) -> Result<Vec<IndexChange>, StoreError> {
    enum Step {
        Chat(u64, u64),
        Channel(u64),
    }
    let mut steps = Vec::new();
    // why: a chat changed several times in one run is written once, at its last change.
    let mut last_of: HashMap<u64, usize> = HashMap::new();
    for event in events {
        let event_id: u64 = event.event_id.parse().unwrap_or(0);
        match (event.r#type(), &event.payload) {
            (
                EventType::ChatCreated | EventType::ChatEdited | EventType::ChatRetracted | EventType::ChatRemoved,
                Some(Payload::Chat(chat)),
            ) => {
                if let Ok(chat_id) = chat.chat_id.parse::<u64>() {
                    last_of.insert(chat_id, steps.len());
                    steps.push(Step::Chat(chat_id, event_id));
                }
            }
            (EventType::ChannelDeleted, _) => {
                if let Ok(channel_id) = event.channel_id.parse() {
                    steps.push(Step::Channel(channel_id));
                }
            }
            _ => {}
        }
    }
    let mut changes = Vec::with_capacity(steps.len());
    for (i, step) in steps.into_iter().enumerate() {
        match step {
            Step::Chat(chat_id, version) if last_of.get(&chat_id) == Some(&i) => {
                let current = match store.get_chat(chat_id).await? {
                    Some(chat) => indexed(chat, store.removed_by(chat_id).await?, version),
                    None => None,
                };
                changes.push(match current {
                    Some(chat) => IndexChange::Upsert(chat),
                    None => IndexChange::Delete { chat_id },
                });
            }
            Step::Chat(..) => {}
            Step::Channel(channel_id) => changes.push(IndexChange::DeleteChannel { channel_id }),
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
    let mut after = (0, 0);
    let mut read = 0u64;
    let mut deleted: HashMap<u64, bool> = HashMap::new();
    loop {
        let page = store.scan_chats(after, REBUILD_PAGE).await.map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = (last.channel_id, last.chat_id);
        read += page.len() as u64;
        let mut changes = Vec::with_capacity(page.len());
        for chat in page {
            let channel_gone = match deleted.get(&chat.channel_id) {
                Some(gone) => *gone,
                None => {
                    let gone = store.channel_deleted(chat.channel_id).await.map_err(|e| e.to_string())?;
                    deleted.insert(chat.channel_id, gone);
                    gone
                }
            };
            if channel_gone {
                continue;
            }
            let removed = store.removed_by(chat.chat_id).await.map_err(|e| e.to_string())?;
            if let Some(chat) = indexed(chat, removed, head) {
                changes.push(IndexChange::Upsert(chat));
            }
        }
        refused(&index.write(changes).await.map_err(|e| e.to_string())?);
        progress(read);
    }
    index.commit(head).await.map_err(|e| e.to_string())?;
    Ok(read)
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
    status.running.store(true, Ordering::Release);
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    let mut indexer = Indexer {
        store: store.as_ref(),
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
    status.running.store(false, Ordering::Release);
}

enum Progress {
    /// More of the feed is waiting.
    More,
    /// Caught up: wait for a write, or this long (a commit falls due).
    CaughtUp(Duration),
}

struct Indexer<'a> {
    store: &'a dyn ChatStore,
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
        Ok(position)
    }

    async fn step(&mut self) -> Result<Progress, Failure> {
        let position = match self.position {
            Some(position) => position,
            None => self.resume().await?,
        };
        let events = self.store.feed(position, BATCH).await?;
        if let Some(last) = events.last().and_then(|e| e.event_id.parse::<u64>().ok()) {
            let changes = changes_for(self.store, &events).await?;
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
        followed.write(changes_for(&store, &events).await.unwrap()).await.unwrap();
        followed.commit(store.feed_head().await.unwrap()).await.unwrap();

        let rebuilt_dir = tempfile::tempdir().unwrap();
        let rebuilt = TantivyIndex::open(rebuilt_dir.path(), 20_000_000).unwrap();
        let mut seen = Vec::new();
        assert_eq!(rebuild(&store, &rebuilt, |n| seen.push(n)).await.unwrap(), 30);
        assert_eq!(seen.last(), Some(&30));
        assert_eq!(rebuilt.position().await.unwrap(), followed.position().await.unwrap());

        for viewer in [0, 9] {
            let mut q = query("common", &[1, 2, 3]);
            q.viewer = viewer;
            let (a, b) = (followed.search(q.clone()).await.unwrap(), rebuilt.search(q).await.unwrap());
            assert_eq!(a, b, "viewer {viewer}");
            assert_eq!(a.len(), if viewer == 9 { 27 } else { 28 });
        }
    }
}
