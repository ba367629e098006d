//! The feed service's rules, in domain types: statuses, replies and reposts in [`statuses`],
//! likes in [`likes`], home timelines and fan-out in [`timeline`], the background workers
//! (fan-out jobs, scheduled statuses, trends) in [`workers`], what moderators ask of the feed
//! in [`moderation`]. Reading a status turns stored records into [`StatusView`]s here, leaving
//! out what the reader may not see.

mod likes;
mod live;
mod moderation;
mod statuses;
mod timeline;
mod workers;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use chatmesh_api::user::v1::User;
use chatmesh_platform::{
    config::FeedConfig,
    ids::{IdGenerator, unix_ms_of},
};
use tokio::sync::Notify;

pub use self::{live::Live, timeline::merge_newest_first};
use crate::{
    error::FeedError,
    graph::{Graph, is_present},
    model::{Counts, ScheduledRecord, StatusKind, StatusRecord, Stored},
    store::FeedStore,
};

/// A status as a reader sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusView {
    pub status_id: u64,
    pub author_id: u64,
    /// Absent when the account is gone.
    pub author: Option<User>,
    pub kind: StatusKind,
    pub text: String,
    pub referenced_id: Option<u64>,
    /// One level deep; absent when either side blocks the other.
    pub referenced: Option<Box<StatusView>>,
    pub tags: Vec<String>,
    pub mentions: Vec<u64>,
    pub counts: Counts,
    pub liked: bool,
    pub reposted: bool,
    pub created_at_ms: u64,
    pub publish_at_ms: u64,
    pub scheduled: bool,
    pub deleted: bool,
}

impl StatusView {
    fn live(record: StatusRecord, counts: Counts, author: Option<User>) -> Self {
        Self {
            status_id: record.status_id,
            author_id: record.author_id,
            author,
            kind: record.kind,
            text: record.text,
            referenced_id: record.referenced_id,
            referenced: None,
            tags: record.tags,
            mentions: record.mentions,
            counts,
            liked: false,
            reposted: false,
            created_at_ms: record.created_at_ms,
            publish_at_ms: unix_ms_of(record.status_id),
            scheduled: false,
            deleted: false,
        }
    }

    /// What a deletion leaves: the id, so a reply still shows what it answered.
    fn stub(status_id: u64, author_id: u64) -> Self {
        Self {
            status_id,
            author_id,
            author: None,
            kind: StatusKind::Post,
            text: String::new(),
            referenced_id: None,
            referenced: None,
            tags: Vec::new(),
            mentions: Vec::new(),
            counts: Counts::default(),
            liked: false,
            reposted: false,
            created_at_ms: unix_ms_of(status_id),
            publish_at_ms: unix_ms_of(status_id),
            scheduled: false,
            deleted: true,
        }
    }

    fn scheduled(record: ScheduledRecord, author: Option<User>) -> Self {
        Self {
            status_id: record.scheduled_id,
            author_id: record.author_id,
            author,
            kind: if record.in_reply_to.is_some() { StatusKind::Reply } else { StatusKind::Post },
            text: record.text,
            referenced_id: record.in_reply_to,
            referenced: None,
            tags: Vec::new(),
            mentions: Vec::new(),
            counts: Counts::default(),
            liked: false,
            reposted: false,
            created_at_ms: record.created_at_ms,
            publish_at_ms: record.publish_at_ms,
            scheduled: true,
            deleted: false,
        }
    }
}

/// What a read is for: a list leaves out authors the reader blocks; a status asked for by id
/// (and what it references) is shown all the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    List,
    ById,
}

/// A page of a list: what the reader may see, and the cursor after the last entry read (set
/// when the list may go on).
#[derive(Debug, Clone, Default)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<u64>,
    pub total: Option<u64>,
}

/// The feed service's state: its store, the user service, ids and settings.
#[derive(Clone)]
pub struct FeedCore {
    store: Arc<dyn FeedStore>,
    graph: Graph,
    ids: Arc<IdGenerator>,
    settings: FeedConfig,
    /// Wakes the background worker (a new fan-out job or scheduled status).
    wake: Arc<Notify>,
    /// This process's name in leases: its id generator's node and a random part.
    owner: u64,
    /// The dispatcher, for live events (none: this process cannot reach one).
    live: Option<Live>,
}

impl std::fmt::Debug for FeedCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedCore").field("owner", &self.owner).finish_non_exhaustive()
    }
}

impl FeedCore {
    pub fn new(
        store: Arc<dyn FeedStore>,
        graph: Graph,
        ids: Arc<IdGenerator>,
        settings: FeedConfig,
        live: Option<Live>,
    ) -> Self {
        // why: ids are unique per process (node id + time), so a fresh one names this process
        let owner = ids.next_id();
        Self { store, graph, ids, settings, wake: Arc::new(Notify::new()), owner, live }
    }

    /// Statuses by id as `reader` sees them, in order, leaving out the missing, the deleted,
    /// those of gone accounts and those either side blocks; a repost whose original cannot be
    /// shown is left out too.
    async fn visible(&self, reader: u64, ids: &[u64], scope: Scope) -> Result<Vec<StatusView>, FeedError> {
        let stored = self.store.get_statuses(ids).await?;
        let live: Vec<(StatusRecord, Counts)> = stored
            .into_iter()
            .flatten()
            .filter_map(|s| match s {
                Stored::Live(record, counts) => Some((record, counts)),
                Stored::Deleted { .. } => None,
            })
            .collect();
        let referenced_ids: Vec<u64> =
            live.iter().filter_map(|(r, _)| r.referenced_id).collect::<HashSet<_>>().into_iter().collect();
        let referenced: HashMap<u64, Stored> = self
            .store
            .get_statuses(&referenced_ids)
            .await?
            .into_iter()
            .zip(&referenced_ids)
            .filter_map(|(s, id)| Some((*id, s?)))
            .collect();
        let mut author_ids: Vec<u64> = live.iter().map(|(r, _)| r.author_id).collect();
        author_ids.extend(referenced.values().filter_map(|s| match s {
            Stored::Live(r, _) => Some(r.author_id),
            Stored::Deleted { .. } => None,
        }));
        let authors = self.graph.users(&author_ids).await?;
        let visible_authors = self.visible_authors(reader, &authors, scope).await?;

        // the reader's relation is to the status itself, or to a repost's original
        let relation_ids: Vec<u64> = live
            .iter()
            .map(
                |(r, _)| {
                    if r.kind == StatusKind::Repost { r.referenced_id.unwrap_or(r.status_id) } else { r.status_id }
                },
            )
            .collect();
        let liked = self.store.liked_by(reader, &relation_ids).await?;
        let reposted = self.store.reposts_by(reader, &relation_ids).await?;

        let mut views = Vec::with_capacity(live.len());
        for (((record, counts), liked), reposted) in live.into_iter().zip(liked).zip(reposted) {
            if !visible_authors.contains(&record.author_id) {
                continue;
            }
            let reference = record.referenced_id.and_then(|id| referenced.get(&id));
            let reference = match reference {
                Some(Stored::Live(r, c)) if visible_authors.contains(&r.author_id) => {
                    Some(StatusView::live(r.clone(), *c, authors.get(&r.author_id).cloned()))
                }
                Some(Stored::Deleted { status_id, author_id }) => Some(StatusView::stub(*status_id, *author_id)),
                _ => None,
            };
            let is_repost = record.kind == StatusKind::Repost;
            if is_repost && reference.as_ref().is_none_or(|r| r.deleted) {
                continue;
            }
            let author = authors.get(&record.author_id).cloned();
            let mut view = StatusView::live(record, counts, author);
            view.referenced = reference.map(Box::new);
            (view.liked, view.reposted) = (liked, reposted.is_some());
            views.push(view);
        }
        Ok(views)
    }

    /// Of the accounts in `authors`, those `reader` may see: present, not blocking the reader
    /// and (in lists) not blocked by the reader.
    async fn visible_authors(
        &self,
        reader: u64,
        authors: &HashMap<u64, User>,
        scope: Scope,
    ) -> Result<HashSet<u64>, FeedError> {
        let blocked = match scope {
            Scope::List => self.graph.blocked_by(reader).await?,
            Scope::ById => Arc::default(),
        };
        let mut visible = HashSet::with_capacity(authors.len());
        for (id, user) in authors {
            if is_present(user) && !blocked.contains(id) && !self.graph.blocks_reader(*id, reader).await? {
                visible.insert(*id);
            }
        }
        Ok(visible)
    }

    /// One status as `reader` sees it, or why not: NOT_FOUND when it is missing, deleted or
    /// its author is gone, PERMISSION_DENIED when its author blocks the reader.
    async fn view(&self, reader: u64, status_id: u64) -> Result<StatusView, FeedError> {
        let record = self.live_status(status_id).await?;
        if self.graph.blocks_reader(record.author_id, reader).await? {
            return Err(FeedError::BlockedByAuthor(record.author_id));
        }
        let mut views = self.visible(reader, &[status_id], Scope::ById).await?;
        views.pop().ok_or(FeedError::StatusNotFound(status_id))
    }

    /// A live status, or NOT_FOUND.
    async fn live_status(&self, status_id: u64) -> Result<StatusRecord, FeedError> {
        match self.store.get_statuses(&[status_id]).await?.pop().flatten() {
            Some(Stored::Live(record, _)) => Ok(record),
            _ => Err(FeedError::StatusNotFound(status_id)),
        }
    }

    /// The status an action on `status_id` is about: the original of a repost, the status
    /// itself otherwise.
    async fn target(&self, status_id: u64) -> Result<StatusRecord, FeedError> {
        let record = self.live_status(status_id).await?;
        match (record.kind, record.referenced_id) {
            (StatusKind::Repost, Some(original)) => self.live_status(original).await,
            _ => Ok(record),
        }
    }

    /// The ids minted here (for likes and statuses).
    fn next_id(&self) -> u64 {
        self.ids.next_id()
    }
}
