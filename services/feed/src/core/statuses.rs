//! Posting, replying, reposting, scheduling and deleting statuses, and the lists of a user, a
//! status's replies and reposts, and a tag.

use chatmesh_api::user::v1::User;
use chatmesh_platform::ids::now_ms;
use chatmesh_wire::feed as text;

use super::{FeedCore, Page, Scope, StatusView};
use crate::{
    error::FeedError,
    graph::is_present,
    model::{FanoutJob, ScheduledRecord, StatusKind, StatusRecord, Stored},
    store::StoreError,
};

/// @mentions resolved per status; more are left as plain text.
const MAX_MENTIONS: usize = 20;

/// What writing a status did.
pub(super) enum Published {
    Done(StatusRecord),
    /// A repeat repost: the one already there.
    AlreadyReposted(u64),
    /// A scheduled status another process published or its author cancelled first.
    Gone,
}

impl FeedCore {
    /// Posts a status now, or schedules it for `publish_at_ms`.
    pub async fn create_status(
        &self,
        author: u64,
        text: String,
        in_reply_to: Option<u64>,
        publish_at_ms: Option<u64>,
    ) -> Result<StatusView, FeedError> {
        if let Some(at) = publish_at_ms {
            return self.schedule(author, text, in_reply_to, at).await;
        }
        let record = self.compose(author, text, in_reply_to).await?;
        match self.publish(record, None).await? {
            Published::Done(record) => {
                if let Some(replied_to) = record.referenced_author_id {
                    self.graph.interacted(author, replied_to);
                }
                self.view(author, record.status_id).await
            }
            // why: only reposts and scheduled statuses can meet these
            Published::AlreadyReposted(_) | Published::Gone => Err(FeedError::Store("a new post collided".into())),
        }
    }

    /// A status record for `author`'s text: the reply target resolved (a repost's original),
    /// blocks checked, tags and mentions found, a new id minted (its time is the creation time).
    pub(super) async fn compose(
        &self,
        author: u64,
        body: String,
        in_reply_to: Option<u64>,
    ) -> Result<StatusRecord, FeedError> {
        let target = match in_reply_to {
            Some(id) => {
                let target = self.target(id).await?;
                self.graph.check_not_blocked(author, target.author_id).await?;
                Some(target)
            }
            None => None,
        };
        let mut names = text::mentions(&body);
        names.truncate(MAX_MENTIONS);
        let mentions = self.graph.resolve_usernames(names).await?;
        let status_id = self.next_id();
        Ok(StatusRecord {
            status_id,
            author_id: author,
            kind: if target.is_some() { StatusKind::Reply } else { StatusKind::Post },
            tags: text::hashtags(&body),
            text: body,
            referenced_id: target.as_ref().map(|t| t.status_id),
            referenced_author_id: target.as_ref().map(|t| t.author_id),
            mentions,
            created_at_ms: chatmesh_platform::ids::unix_ms_of(status_id),
            trend_bucket: self.trend_bucket(chatmesh_platform::ids::unix_ms_of(status_id)),
        })
    }

    /// Writes a status (for a scheduled one, in place of its schedule) with its fan-out job,
    /// then fans it out to the author's own timeline and the first page of followers before
    /// answering; the rest is the background worker's.
    pub(super) async fn publish(&self, record: StatusRecord, scheduled: Option<u64>) -> Result<Published, FeedError> {
        let author = record.author_id;
        let first = self.graph.follower_page(author, "", self.settings.fanout_page).await?;
        let celebrity = first.total >= self.settings.celebrity_followers;
        let job = (!celebrity).then(|| FanoutJob {
            status_id: record.status_id,
            author_id: author,
            page_token: String::new(),
            pages_done: 0,
        });
        let written = match scheduled {
            None => self.store.insert_status(&record, job.as_ref()).await.map(|()| true),
            Some(id) => self.store.publish_scheduled(id, &record, job.as_ref()).await,
        };
        match written {
            Ok(true) => {}
            Ok(false) => return Ok(Published::Gone),
            Err(StoreError::AlreadyReposted(id)) => return Ok(Published::AlreadyReposted(id)),
            Err(e) => return Err(e.into()),
        }
        if celebrity {
            self.store.mark_celebrity(author).await?;
        }
        let entry = crate::model::TimelineEntry { status_id: record.status_id, poster_id: author };
        let mut readers = vec![author];
        if let Some(job) = job {
            readers.extend(&first.user_ids);
            self.store.push(&readers, entry, self.settings.timeline_cap).await?;
            self.announce_created(author, record.status_id, Some(readers));
            self.after_first_page(job, first.next_page_token).await?;
        } else {
            self.store.push(&readers, entry, self.settings.timeline_cap).await?;
            self.announce_created(author, record.status_id, None);
        }
        Ok(Published::Done(record))
    }

    /// Schedules a status (its time already checked against the contract's window by the
    /// request's validation): the reply target and blocks checked now, published by the worker.
    async fn schedule(
        &self,
        author: u64,
        body: String,
        in_reply_to: Option<u64>,
        publish_at_ms: u64,
    ) -> Result<StatusView, FeedError> {
        let in_reply_to = match in_reply_to {
            Some(id) => {
                let target = self.target(id).await?;
                self.graph.check_not_blocked(author, target.author_id).await?;
                Some(target.status_id)
            }
            None => None,
        };
        let record = ScheduledRecord {
            scheduled_id: self.next_id(),
            author_id: author,
            text: body,
            in_reply_to,
            publish_at_ms,
            created_at_ms: now_ms(),
        };
        self.store.insert_scheduled(&record).await?;
        self.wake.notify_one();
        let profile = self.profile(author).await?;
        Ok(StatusView::scheduled(record, profile))
    }

    /// A status as `reader` sees it; a scheduled one only to its author.
    pub async fn get_status(&self, reader: u64, status_id: u64) -> Result<StatusView, FeedError> {
        match self.view(reader, status_id).await {
            Err(FeedError::StatusNotFound(_)) => {}
            other => return other,
        }
        match self.store.get_scheduled(status_id).await? {
            Some(scheduled) if scheduled.author_id == reader => {
                let profile = self.profile(reader).await?;
                Ok(StatusView::scheduled(scheduled, profile))
            }
            _ => Err(FeedError::StatusNotFound(status_id)),
        }
    }

    /// Deletes (or unschedules) one of `caller`'s statuses.
    pub async fn delete_status(&self, caller: u64, status_id: u64) -> Result<(), FeedError> {
        if let Some(scheduled) = self.store.get_scheduled(status_id).await? {
            if scheduled.author_id != caller {
                return Err(FeedError::NotAuthor(status_id));
            }
            self.store.cancel_scheduled(status_id).await?;
            return Ok(());
        }
        let record = self.live_status(status_id).await?;
        if record.author_id != caller {
            return Err(FeedError::NotAuthor(status_id));
        }
        self.remove_status(caller, status_id).await
    }

    /// Deletes a published status of `author` (the store's one write takes it out of every
    /// list, tag, trend and count) and tells its followers live; gone already changes nothing.
    pub(super) async fn remove_status(&self, author: u64, status_id: u64) -> Result<(), FeedError> {
        if self.store.delete_status(status_id).await?.is_some() {
            self.announce_to_followers(author, super::live::deleted_event(status_id));
        }
        Ok(())
    }

    /// Reposts a status (its original, for a repost); a repeat answers the repost already there.
    pub async fn repost(&self, caller: u64, status_id: u64) -> Result<StatusView, FeedError> {
        let original = self.target(status_id).await?;
        self.graph.check_not_blocked(caller, original.author_id).await?;
        if let Some(Some(existing)) = self.store.reposts_by(caller, &[original.status_id]).await?.pop() {
            return self.view(caller, existing).await;
        }
        let id = self.next_id();
        let record = StatusRecord {
            status_id: id,
            author_id: caller,
            kind: StatusKind::Repost,
            text: String::new(),
            referenced_id: Some(original.status_id),
            referenced_author_id: Some(original.author_id),
            tags: Vec::new(),
            mentions: Vec::new(),
            created_at_ms: chatmesh_platform::ids::unix_ms_of(id),
            trend_bucket: self.trend_bucket(chatmesh_platform::ids::unix_ms_of(id)),
        };
        let repost_id = match self.publish(record, None).await? {
            Published::Done(record) => {
                self.graph.interacted(caller, original.author_id);
                record.status_id
            }
            Published::AlreadyReposted(existing) => existing,
            Published::Gone => return Err(FeedError::StatusNotFound(status_id)),
        };
        self.view(caller, repost_id).await
    }

    /// Takes `caller`'s repost of a status back; none there changes nothing.
    pub async fn undo_repost(&self, caller: u64, status_id: u64) -> Result<(), FeedError> {
        let original = self.target(status_id).await?;
        if let Some(Some(repost)) = self.store.reposts_by(caller, &[original.status_id]).await?.pop()
            && self.store.delete_status(repost).await?.is_some()
        {
            self.announce_to_followers(caller, super::live::deleted_event(repost));
        }
        Ok(())
    }

    /// A user's statuses, with how many they have.
    pub async fn list_user_statuses(
        &self,
        reader: u64,
        user_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<StatusView>, FeedError> {
        self.require_visible_user(reader, user_id).await?;
        let ids = self.store.list_user_statuses(user_id, before, limit).await?;
        let next = next_cursor(&ids, limit);
        let items = self.visible(reader, &ids, Scope::ById).await?;
        let total = self.store.count_user_statuses(user_id).await?;
        Ok(Page { items, next, total: Some(total) })
    }

    /// The replies to a status; none once it is deleted, like every read of it (the replies
    /// themselves stay, each showing a stub of it).
    pub async fn list_replies(
        &self,
        reader: u64,
        status_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<StatusView>, FeedError> {
        let total = match self.store.get_statuses(&[status_id]).await?.pop().flatten() {
            Some(Stored::Live(record, counts)) => {
                if self.graph.blocks_reader(record.author_id, reader).await? {
                    return Err(FeedError::BlockedByAuthor(record.author_id));
                }
                counts.replies
            }
            Some(Stored::Deleted { .. }) | None => return Err(FeedError::StatusNotFound(status_id)),
        };
        let ids = self.store.list_replies(status_id, before, limit).await?;
        let next = next_cursor(&ids, limit);
        let items = self.visible(reader, &ids, Scope::List).await?;
        Ok(Page { items, next, total: Some(total) })
    }

    /// Statuses with a tag (lowercase, without `#`).
    pub async fn list_tag_statuses(
        &self,
        reader: u64,
        tag: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<StatusView>, FeedError> {
        let ids = self.store.list_tag_statuses(tag, before, limit).await?;
        let next = next_cursor(&ids, limit);
        let items = self.visible(reader, &ids, Scope::List).await?;
        Ok(Page { items, next, total: None })
    }

    /// Who reposted a status (its original, for a repost).
    pub async fn list_reposts(
        &self,
        reader: u64,
        status_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<User>, FeedError> {
        self.people_of(reader, status_id, before, limit, People::Reposters).await
    }

    /// Who liked or reposted a status (its original, for a repost), newest first, with the
    /// status's count of them.
    pub(super) async fn people_of(
        &self,
        reader: u64,
        status_id: u64,
        before: Option<u64>,
        limit: usize,
        which: People,
    ) -> Result<Page<User>, FeedError> {
        let original = self.target(status_id).await?;
        if self.graph.blocks_reader(original.author_id, reader).await? {
            return Err(FeedError::BlockedByAuthor(original.author_id));
        }
        let edges = match which {
            People::Likers => self.store.list_likes(original.status_id, before, limit).await?,
            People::Reposters => self.store.list_reposts(original.status_id, before, limit).await?,
        };
        let next = next_cursor(&edges.iter().map(|e| e.id).collect::<Vec<_>>(), limit);
        let users = self.visible_users(reader, edges.iter().map(|e| e.other).collect()).await?;
        let counts = self.counts_of(original.status_id).await?;
        let total = match which {
            People::Likers => counts.likes,
            People::Reposters => counts.reposts,
        };
        Ok(Page { items: users, next, total: Some(total) })
    }

    /// `caller`'s scheduled statuses, the latest scheduled first.
    pub async fn list_scheduled(
        &self,
        caller: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<StatusView>, FeedError> {
        let records = self.store.list_scheduled(caller, before, limit).await?;
        let next = next_cursor(&records.iter().map(|r| r.scheduled_id).collect::<Vec<_>>(), limit);
        let profile = self.profile(caller).await?;
        let items = records.into_iter().map(|r| StatusView::scheduled(r, profile.clone())).collect();
        Ok(Page { items, next, total: None })
    }

    /// Refuses a user who is gone (NOT_FOUND) or blocks the reader (PERMISSION_DENIED).
    pub(super) async fn require_visible_user(&self, reader: u64, user_id: u64) -> Result<(), FeedError> {
        if !self.graph.exists(user_id).await? {
            return Err(FeedError::UserNotFound(user_id));
        }
        if self.graph.blocks_reader(user_id, reader).await? {
            return Err(FeedError::BlockedByAuthor(user_id));
        }
        Ok(())
    }

    /// Profiles of `ids`, in order, leaving out the gone and those either side blocks.
    pub(super) async fn visible_users(&self, reader: u64, ids: Vec<u64>) -> Result<Vec<User>, FeedError> {
        let users = self.graph.users(&ids).await?;
        let visible = self.visible_authors(reader, &users, Scope::List).await?;
        Ok(ids.iter().filter(|id| visible.contains(id)).filter_map(|id| users.get(id).cloned()).collect())
    }

    /// A live status's counters.
    pub(super) async fn counts_of(&self, status_id: u64) -> Result<crate::model::Counts, FeedError> {
        match self.store.get_statuses(&[status_id]).await?.pop().flatten() {
            Some(Stored::Live(_, counts)) => Ok(counts),
            _ => Err(FeedError::StatusNotFound(status_id)),
        }
    }

    /// A user's own profile, when present.
    async fn profile(&self, user_id: u64) -> Result<Option<User>, FeedError> {
        Ok(self.graph.users(&[user_id]).await?.remove(&user_id).filter(is_present))
    }

    /// The trends bucket of a publish time.
    pub(super) fn trend_bucket(&self, at_ms: u64) -> u64 {
        at_ms / (self.settings.trends_bucket_secs.max(1) * 1000)
    }
}

/// Whom a list of a status's people names.
#[derive(Debug, Clone, Copy)]
pub(super) enum People {
    Likers,
    Reposters,
}

/// The cursor after a page of ids read newest first: the last one, when the page was full.
pub(super) fn next_cursor(ids: &[u64], limit: usize) -> Option<u64> {
    (ids.len() >= limit && limit > 0).then(|| ids.last().copied()).flatten()
}
