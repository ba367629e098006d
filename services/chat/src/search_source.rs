//! The chat store as search reads it: `chatmesh_search`'s `ChatSource` and `ChangeFeedReader`
//! over [`ChatStore`] (the searchable state of chats, the change feed, and
//! a scan of every chat for rebuilds), and the change stream's relay as a consumer of the feed.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use chatmesh_api::chat::v1::ChannelEvent;
// why: search's traits stay unimported, so the store's own `feed`/`feed_head` keep resolving
use chatmesh_search::{IndexedChat, ScanPage, ScanPosition, SourceError, stream::StreamSink};
use tonic::Status;

use crate::{
    delivery::FeedSink,
    model::{ChatKind, ChatRecord},
    store::{ChangeFeed, ChatStore, StoreError},
};

impl From<StoreError> for SourceError {
    fn from(e: StoreError) -> Self {
        SourceError(e.to_string())
    }
}

/// The index form of a chat, or `None` when it must not be found (a retracted or system chat).
fn indexed(chat: ChatRecord, removed_for: Vec<u64>) -> Option<IndexedChat> {
    (chat.kind == ChatKind::Text && !chat.is_retracted()).then_some(IndexedChat {
        chat_id: chat.chat_id,
        channel_id: chat.channel_id,
        sender_id: chat.sender_id,
        created_at_ms: chat.created_at_ms,
        text: chat.text,
        removed_for,
        version: 0,
    })
}

/// Searchable states read from a store, each channel's deletion read once for as long as this
/// lives (one batch of changes, or one page of a scan).
struct Searchable<'a> {
    store: &'a dyn ChatStore,
    channel_gone: HashMap<u64, bool>,
}

impl<'a> Searchable<'a> {
    fn new(store: &'a dyn ChatStore) -> Self {
        Self { store, channel_gone: HashMap::new() }
    }

    /// `chat`'s searchable state, or `None` when it must not be found (also when its channel
    /// was deleted: a change taken over from a dead indexer may come after that).
    async fn state(&mut self, chat: ChatRecord) -> Result<Option<IndexedChat>, StoreError> {
        let gone = match self.channel_gone.get(&chat.channel_id) {
            Some(gone) => *gone,
            None => {
                let gone = self.store.channel_deleted(chat.channel_id).await?;
                self.channel_gone.insert(chat.channel_id, gone);
                gone
            }
        };
        if gone {
            return Ok(None);
        }
        let removed = self.store.removed_by(chat.chat_id).await?;
        Ok(indexed(chat, removed))
    }
}

/// The searchable state of each of `chat_ids` that has one.
pub(crate) async fn searchable_states(
    store: &dyn ChatStore,
    chat_ids: &[u64],
) -> Result<HashMap<u64, IndexedChat>, StoreError> {
    let mut searchable = Searchable::new(store);
    let mut states = HashMap::with_capacity(chat_ids.len());
    for chat_id in chat_ids {
        let Some(chat) = store.get_chat(*chat_id).await? else { continue };
        if let Some(state) = searchable.state(chat).await? {
            states.insert(*chat_id, state);
        }
    }
    Ok(states)
}

/// The chat store of this process as a stream indexer's source (an `Arc<dyn ChatStore>` cannot
/// become an `Arc<dyn ChatSource>` by itself).
pub struct StoreSource(pub Arc<dyn ChatStore>);

#[async_trait]
impl chatmesh_search::ChatSource for StoreSource {
    async fn states(&self, chat_ids: &[u64]) -> Result<HashMap<u64, IndexedChat>, SourceError> {
        Ok(searchable_states(self.0.as_ref(), chat_ids).await?)
    }
}

#[async_trait]
impl chatmesh_search::ChatSource for dyn ChatStore {
    async fn states(&self, chat_ids: &[u64]) -> Result<HashMap<u64, IndexedChat>, SourceError> {
        Ok(searchable_states(self, chat_ids).await?)
    }
}

#[async_trait]
impl chatmesh_search::ChangeFeedReader for dyn ChatStore {
    async fn feed(&self, after_event_id: u64, limit: usize) -> Result<Vec<ChannelEvent>, SourceError> {
        Ok(ChangeFeed::feed(self, after_event_id, limit).await?)
    }

    async fn feed_head(&self) -> Result<u64, SourceError> {
        Ok(ChangeFeed::feed_head(self).await?)
    }

    async fn feed_count(&self, after_event_id: u64, cap: u64) -> Result<u64, SourceError> {
        Ok(ChangeFeed::feed_count(self, after_event_id, cap).await?)
    }

    async fn scan(&self, after: ScanPosition, limit: usize) -> Result<Option<ScanPage>, SourceError> {
        let page = self.scan_chats(after, limit).await?;
        let Some(last) = page.last() else { return Ok(None) };
        let next = (last.channel_id, last.chat_id);
        let read = page.len() as u64;
        let mut searchable = Searchable::new(self);
        let mut chats = Vec::with_capacity(page.len());
        for chat in page {
            chats.extend(searchable.state(chat).await?);
        }
        Ok(Some(ScanPage { read, next, chats }))
    }
}

/// The relay of index-relevant changes into the change stream, as a consumer of the feed.
#[async_trait]
impl FeedSink for StreamSink {
    fn cursor(&self) -> &'static str {
        StreamSink::CURSOR
    }

    async fn deliver(&self, events: Vec<ChannelEvent>) -> Result<(), Status> {
        self.relay(&events).await.map_err(|e| chatmesh_platform::error::unavailable("change stream", e))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chatmesh_platform::shutdown::CancellationToken;
    use chatmesh_search::{
        IndexerSettings, IndexerStatus, SearchIndex, TantivyIndex, compare,
        conformance::query,
        indexer::{Changed, changed_by, changes_for},
        rebuild, run_indexer, status,
    };
    use tokio::sync::watch;

    use super::*;
    use crate::store::{
        Chats, CreateOutcome, FjallChatStore,
        conformance::{channel_deleted, text},
    };

    async fn send(store: &dyn ChatStore, channel: u64, words: &str) -> u64 {
        match store.create_chat(text(channel, 7, words, "")).await.unwrap() {
            CreateOutcome::Created(chat) => chat.chat_id,
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
        store.append_events(vec![channel_deleted(2)]).await.unwrap();
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
        let events = ChangeFeed::feed(&store, 0, 1000).await.unwrap();
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
