//! Home timelines: fan-out on write (the first page before CreateStatus answers, the rest as
//! a durable job), celebrities merged on read, backfill of new follows by watermark, and
//! reading filtered by whom the reader follows and blocks (docs/adr/0020).

use std::collections::HashSet;

use chatmesh_platform::ids::now_ms;

use super::{FeedCore, Page, Scope, StatusView};
use crate::{
    error::FeedError,
    model::{FanoutJob, TimelineEntry},
};

/// How long a fan-out job stays leased to the worker that claimed it without progress.
pub(super) const FANOUT_LEASE_MS: u64 = 30_000;
/// New followees backfilled per timeline read; the rest on the next reads.
const BACKFILL_PER_READ: usize = 100;
/// Rounds of reading a page when what was read is filtered out.
const MAX_ROUNDS: usize = 8;

impl FeedCore {
    /// The first page is written: records the job's progress (or its end) and leaves the rest
    /// to the worker.
    pub(super) async fn after_first_page(&self, mut job: FanoutJob, next_page_token: String) -> Result<(), FeedError> {
        if next_page_token.is_empty() {
            self.store.finish_fanout(job.status_id).await?;
            return Ok(());
        }
        job.page_token = next_page_token;
        job.pages_done = 1;
        self.store.advance_fanout(&job).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Runs a claimed job to its end, one follower page at a time; each page's timelines are
    /// written before the job's cursor moves past it, and the lease is renewed per page (a
    /// job whose status was deleted is gone, and stops).
    pub(super) async fn run_fanout_job(&self, mut job: FanoutJob) -> Result<(), FeedError> {
        let entry = TimelineEntry { status_id: job.status_id, poster_id: job.author_id };
        let event = match self.live {
            Some(_) => self.created_event(job.author_id, job.status_id).await?,
            None => None,
        };
        loop {
            let page = self.graph.follower_page(job.author_id, &job.page_token, self.settings.fanout_page).await?;
            if !page.user_ids.is_empty() {
                self.store.push(&page.user_ids, entry, self.settings.timeline_cap).await?;
                if let Some(event) = &event {
                    self.announce(page.user_ids, event);
                }
            }
            if page.next_page_token.is_empty() {
                self.store.finish_fanout(job.status_id).await?;
                return Ok(());
            }
            job.page_token = page.next_page_token;
            job.pages_done += 1;
            self.store.advance_fanout(&job).await?;
            if !self.store.lease_fanout(job.status_id, self.owner, now_ms() + FANOUT_LEASE_MS).await? {
                return Ok(());
            }
        }
    }

    /// The reader's home timeline: their own statuses and those of whom they follow, newest
    /// first.
    pub async fn home_timeline(
        &self,
        reader: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<StatusView>, FeedError> {
        let followees = self.graph.following(reader).await?;
        self.backfill(reader, &followees).await?;
        let mut followed: HashSet<u64> = followees.iter().map(|(user, _)| *user).collect();
        followed.insert(reader);
        let ids: Vec<u64> = followees.iter().map(|(user, _)| *user).collect();
        let celebrities = self.store.celebrities_among(&ids).await?;

        let mut items = Vec::with_capacity(limit);
        let mut stale = Vec::new();
        let mut cursor = before;
        for _ in 0..MAX_ROUNDS {
            let stored = self.store.page(reader, cursor, limit).await?;
            let stored_ids: HashSet<u64> = stored.iter().map(|e| e.status_id).collect();
            let mut merged = vec![stored.clone()];
            for &celebrity in &celebrities {
                let ids = self.store.list_user_statuses(celebrity, cursor, limit).await?;
                merged
                    .push(ids.into_iter().map(|status_id| TimelineEntry { status_id, poster_id: celebrity }).collect());
            }
            let exhausted = merged.iter().all(|list| list.len() < limit);
            let candidates: Vec<TimelineEntry> = merge_newest_first(merged).into_iter().take(limit).collect();
            let Some(last) = candidates.last() else { break };
            cursor = Some(last.status_id);
            let (kept, dropped): (Vec<&TimelineEntry>, Vec<&TimelineEntry>) =
                candidates.iter().partition(|e| followed.contains(&e.poster_id));
            stale.extend(dropped.iter().map(|e| e.status_id));
            let ids: Vec<u64> = kept.iter().map(|e| e.status_id).collect();
            let views = self.visible(reader, &ids, Scope::List).await?;
            let shown: HashSet<u64> = views.iter().map(|v| v.status_id).collect();
            stale.extend(ids.iter().filter(|id| !shown.contains(id) && stored_ids.contains(id)));
            for view in views {
                if items.len() < limit {
                    items.push(view);
                }
            }
            if items.len() >= limit || exhausted {
                break;
            }
        }
        if !stale.is_empty() {
            self.store.remove(reader, &stale).await?;
        }
        let next = (items.len() >= limit).then(|| items.last().map(|v| v.status_id)).flatten();
        Ok(Page { items, next, total: None })
    }

    /// Copies the latest statuses of followees followed since the timeline's watermark into
    /// it (oldest follow first, a bounded number per read), then raises the watermark.
    async fn backfill(&self, reader: u64, followees: &[(u64, u64)]) -> Result<(), FeedError> {
        let watermark = self.store.watermark(reader).await?;
        let mut new: Vec<(u64, u64)> = followees.iter().copied().filter(|(_, follow)| *follow > watermark).collect();
        if new.is_empty() {
            return Ok(());
        }
        new.sort_by_key(|(_, follow)| *follow);
        new.truncate(BACKFILL_PER_READ);
        let users: Vec<u64> = new.iter().map(|(user, _)| *user).collect();
        let celebrities: HashSet<u64> = self.store.celebrities_among(&users).await?.into_iter().collect();
        for &(user, _) in new.iter().filter(|(user, _)| !celebrities.contains(user)) {
            let ids = self.store.list_user_statuses(user, None, self.settings.backfill_statuses).await?;
            let entries: Vec<TimelineEntry> =
                ids.into_iter().map(|status_id| TimelineEntry { status_id, poster_id: user }).collect();
            if !entries.is_empty() {
                self.store.push_entries(reader, &entries, self.settings.timeline_cap).await?;
            }
        }
        let highest = new.iter().map(|(_, follow)| *follow).max().unwrap_or(watermark);
        self.store.raise_watermark(reader, highest).await?;
        Ok(())
    }
}

/// Merges lists that are each newest first into one, newest first, each status once (the
/// first poster seen for it wins).
pub fn merge_newest_first(lists: Vec<Vec<TimelineEntry>>) -> Vec<TimelineEntry> {
    let mut all: Vec<TimelineEntry> = lists.into_iter().flatten().collect();
    all.sort_by_key(|e| std::cmp::Reverse(e.status_id));
    let mut seen = HashSet::with_capacity(all.len());
    all.retain(|e| seen.insert(e.status_id));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(pairs: &[(u64, u64)]) -> Vec<TimelineEntry> {
        pairs.iter().map(|&(status_id, poster_id)| TimelineEntry { status_id, poster_id }).collect()
    }

    #[test]
    fn merging_keeps_newest_first_and_each_status_once() {
        let stored = entries(&[(9, 1), (6, 1), (3, 2)]);
        let celebrity = entries(&[(8, 5), (6, 1), (1, 5)]);
        let merged = merge_newest_first(vec![stored, celebrity]);
        let ids: Vec<u64> = merged.iter().map(|e| e.status_id).collect();
        assert_eq!(ids, [9, 8, 6, 3, 1]);
    }

    #[test]
    fn merging_nothing_is_empty() {
        assert!(merge_newest_first(vec![Vec::new(), Vec::new()]).is_empty());
    }
}
