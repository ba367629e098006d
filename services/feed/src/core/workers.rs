//! The feed's background work, run by every feed process: fan-out jobs (leased, so one
//! process runs each), due scheduled statuses (published by a conditional write, so one
//! process publishes each) and trends (recomputed by the holder of the trends lease).

use std::time::Duration;

use chatmesh_platform::ids::now_ms;
use tokio_util::sync::CancellationToken;

use super::{FeedCore, Page, statuses::Published, timeline::FANOUT_LEASE_MS};
use crate::{error::FeedError, model::TrendsSnapshot};

/// Jobs one pass claims.
const JOBS_PER_PASS: usize = 8;
/// Scheduled statuses one pass publishes.
const DUE_PER_PASS: usize = 50;
/// The trends lease's name in the store.
const TRENDS_LEASE: &str = "trends";

impl FeedCore {
    /// Runs fan-out jobs, scheduled statuses and the trends schedule until `stop`.
    pub async fn run_workers(self, stop: CancellationToken) {
        let trends = tokio::spawn(self.clone().run_trends(stop.clone()));
        let poll = Duration::from_millis(self.settings.poll_interval_ms.max(10));
        while !stop.is_cancelled() {
            let busy = match self.work_once().await {
                Ok(busy) => busy,
                Err(error) => {
                    tracing::warn!(%error, "feed background work failed, retrying");
                    false
                }
            };
            if busy {
                continue;
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.until_next_due(poll).await) => {}
            }
        }
        let _ = trends.await;
    }

    /// One pass: claimed fan-out jobs run to their end, due scheduled statuses published.
    /// `true` when it found work (there may be more).
    async fn work_once(&self) -> Result<bool, FeedError> {
        let now = now_ms();
        let jobs = self.store.claim_fanouts(self.owner, now, now + FANOUT_LEASE_MS, JOBS_PER_PASS).await?;
        let mut busy = !jobs.is_empty();
        for job in jobs {
            let status_id = job.status_id;
            if let Err(error) = self.run_fanout_job(job).await {
                // why: the lease runs out and a later pass (here or elsewhere) resumes the job
                tracing::warn!(%error, status_id, "fan-out page failed, retrying after the lease");
            }
        }
        let due = self.store.due_scheduled(now_ms(), DUE_PER_PASS).await?;
        busy |= !due.is_empty();
        for scheduled in due {
            self.publish_scheduled(scheduled).await?;
        }
        Ok(busy)
    }

    /// Publishes one due scheduled status, unless another process did first; one whose reply
    /// target has gone (or whose author is now blocked) is dropped.
    async fn publish_scheduled(&self, scheduled: crate::model::ScheduledRecord) -> Result<(), FeedError> {
        let id = scheduled.scheduled_id;
        let record = match self.compose(scheduled.author_id, scheduled.text, scheduled.in_reply_to).await {
            Ok(mut record) => {
                record.created_at_ms = scheduled.created_at_ms;
                record
            }
            Err(FeedError::StatusNotFound(_) | FeedError::BlockedByAuthor(_) | FeedError::AuthorBlockedByYou(_)) => {
                tracing::info!(scheduled_id = id, "scheduled reply's target is gone; dropping it");
                self.store.cancel_scheduled(id).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        match self.publish(record, Some(id)).await {
            Ok(Published::Done(record)) => {
                tracing::debug!(scheduled_id = id, status_id = record.status_id, "published a scheduled status");
            }
            Ok(Published::Gone | Published::AlreadyReposted(_)) => {}
            Err(FeedError::StatusNotFound(_)) => {
                self.store.cancel_scheduled(id).await?;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// How long to wait for the next due scheduled status, at most `poll`.
    async fn until_next_due(&self, poll: Duration) -> Duration {
        match self.store.due_scheduled(u64::MAX, 1).await {
            Ok(next) => next
                .first()
                .map(|s| Duration::from_millis(s.publish_at_ms.saturating_sub(now_ms())).min(poll))
                .unwrap_or(poll),
            Err(_) => poll,
        }
    }

    /// Recomputes the trends on schedule while this process holds the trends lease; the
    /// schedule follows the stored snapshot's time, so a restart resumes it.
    async fn run_trends(self, stop: CancellationToken) {
        let every = Duration::from_secs(self.settings.trends_refresh_secs.max(1));
        while !stop.is_cancelled() {
            let wait = match self.refresh_trends_when_due(every).await {
                Ok(wait) => wait,
                Err(error) => {
                    tracing::warn!(%error, "trends refresh failed, retrying");
                    every
                }
            };
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Refreshes the trends if the last refresh is `every` old and this process holds the
    /// lease; answers how long until the next one is due.
    async fn refresh_trends_when_due(&self, every: Duration) -> Result<Duration, FeedError> {
        let every_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
        let now = now_ms();
        let last = self.store.load_trends().await?.map(|s| s.refreshed_at_ms).unwrap_or(0);
        if now < last + every_ms {
            return Ok(Duration::from_millis(last + every_ms - now));
        }
        if !self.store.try_lease(TRENDS_LEASE, self.owner, now, now + 2 * every_ms).await? {
            return Ok(every);
        }
        self.refresh_trends(now).await?;
        Ok(every)
    }

    /// Counts every tag of the window's buckets, keeps the most used, forgets older buckets.
    pub(super) async fn refresh_trends(&self, now: u64) -> Result<(), FeedError> {
        let to = self.trend_bucket(now);
        let from = to.saturating_sub(self.settings.trends_buckets.max(1) - 1);
        let counts = self.store.tag_counts(from, to).await?;
        let snapshot = TrendsSnapshot { trends: top_trends(counts, self.settings.trends_kept), refreshed_at_ms: now };
        self.store.save_trends(&snapshot).await?;
        self.store.prune_buckets(from).await?;
        Ok(())
    }

    /// A page of the last computed trends (offset-paged: the snapshot changes only on refresh).
    pub async fn list_trends(&self, offset: usize, limit: usize) -> Result<(Page<(String, u64)>, u64), FeedError> {
        let snapshot = self.store.load_trends().await?.unwrap_or_default();
        let items: Vec<(String, u64)> = snapshot.trends.iter().skip(offset).take(limit).cloned().collect();
        let next = (offset + items.len() < snapshot.trends.len()).then_some((offset + items.len()) as u64);
        Ok((Page { items, next, total: None }, snapshot.refreshed_at_ms))
    }
}

/// The `kept` most used tags, most used first, ties by tag.
pub fn top_trends(mut counts: Vec<(String, u64)>, kept: usize) -> Vec<(String, u64)> {
    counts.retain(|(_, count)| *count > 0);
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts.truncate(kept);
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trends_are_the_most_used_tags_ties_by_name() {
        let counts = vec![("rust".into(), 3), ("go".into(), 5), ("zig".into(), 3), ("none".into(), 0)];
        let top = top_trends(counts, 2);
        assert_eq!(top, vec![("go".to_string(), 5), ("rust".to_string(), 3)]);
    }
}
