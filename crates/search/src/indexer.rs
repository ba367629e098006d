//! The indexer: follows the change feed in order and writes each changed chat's *current*
//! state from the store (never the event's payload), staging changes and committing them with
//! the feed position every `commit_interval` or `commit_batch` changes. The position lives in
//! the index's own commit, so a crash mid-batch resumes from the last commit and rewrites the
//! same current states (idempotent by chat id); nothing is lost and nothing comes back.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use chatmesh_api::chat::v1::{ChannelEvent, EventType, channel_event::Payload};
use chatmesh_platform::shutdown::CancellationToken;
use tokio::sync::watch;

use crate::{
    ChangeFeedReader, ChatSource, IndexChange, IndexedChat, IndexerStatus, Rejected, SearchError, SearchIndex,
    SourceError, rebuild::rebuild, status::lag_ms,
};

/// Feed entries read per step.
const BATCH: usize = 512;
const IDLE_POLL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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
pub async fn changes_for<S: ChatSource + ?Sized>(
    source: &S,
    changed: &[Changed],
) -> Result<Vec<IndexChange>, SourceError> {
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

/// Logs and counts changes the index refused for good (they are not retried).
pub(crate) fn refused(rejected: &[Rejected]) {
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
pub async fn run_indexer<S: ChangeFeedReader + ?Sized>(
    store: Arc<S>,
    index: Arc<dyn SearchIndex>,
    settings: IndexerSettings,
    mut wake: watch::Receiver<u64>,
    shutdown: CancellationToken,
    status: Arc<IndexerStatus>,
) {
    status.set_running(true);
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
    status.set_running(false);
}

enum Progress {
    /// More of the feed is waiting.
    More,
    /// Caught up: wait for a write, or this long (a commit falls due).
    CaughtUp(Duration),
}

struct Indexer<'a, S: ?Sized> {
    store: &'a S,
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

impl<S: ChangeFeedReader + ?Sized> Indexer<'_, S> {
    /// Where the index's last commit left off; an index never committed to is built from the
    /// store first.
    async fn resume(&mut self) -> Result<u64, SearchError> {
        let mut position = self.index.position().await?;
        self.staged = 0;
        self.since = None;
        if position == 0 && self.index.documents().await? == 0 && self.store.feed_head().await? > 0 {
            tracing::info!("building the search index from the store");
            let read = rebuild(self.store, self.index, |_| {}).await?;
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

    async fn step(&mut self) -> Result<Progress, SearchError> {
        let position = match self.position {
            Some(position) => position,
            None => self.resume().await?,
        };
        let events = self.store.feed(position, BATCH).await?;
        if let Some(last) = events.last().and_then(|e| e.event_id.parse::<u64>().ok()) {
            let changed: Vec<Changed> = events.iter().filter_map(changed_by).collect();
            let changes = changes_for(self.store, &changed).await?;
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

    async fn commit(&mut self) -> Result<(), SearchError> {
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
