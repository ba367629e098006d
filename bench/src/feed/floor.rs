//! The feed benchmark's raw `FjallFeedStore`: the baselines on scratch stores, writing the
//! same timelines and likes chatmesh is asked to, and the check of what the stopped server's
//! store holds afterwards.

use std::{path::Path, sync::Arc, time::Instant};

use anyhow::{bail, ensure};
use chatmesh_feed::{
    StatusKind, StatusRecord, Stored, TimelineEntry,
    store::{FjallFeedStore, Likes, Statuses, Timelines},
};
use chatmesh_platform::{
    config::FeedConfig,
    ids::{IdGenerator, now_ms},
};
use futures::StreamExt;
use hdrhistogram::Histogram;

use super::LOADER_NODE;
use crate::{history::on_timetable, report};

/// Likes the raw store's closed loop keeps in flight (its group commit batches them).
pub(super) const STORE_IN_FLIGHT: usize = 256;

/// A status record of `author` for the scratch store.
fn record(status_id: u64, author_id: u64) -> StatusRecord {
    StatusRecord {
        status_id,
        author_id,
        kind: StatusKind::Post,
        text: "the baseline's status".into(),
        referenced_id: None,
        referenced_author_id: None,
        tags: Vec::new(),
        mentions: Vec::new(),
        created_at_ms: now_ms(),
        trend_bucket: 0,
    }
}

/// The floor of fan-out: each status pushed into `readers`' timelines on a scratch store, in
/// pages of the fan-out page one after another (as the fan-out job writes them); the time per
/// status.
pub(super) async fn store_fanout(
    dir: &Path,
    author: u64,
    readers: &[u64],
    posts: u64,
) -> anyhow::Result<Histogram<u64>> {
    let store = FjallFeedStore::open(dir)?;
    let ids = IdGenerator::new(LOADER_NODE).map_err(anyhow::Error::msg)?;
    let settings = FeedConfig::default();
    let mut latency = report::histogram();
    for _ in 0..posts {
        let entry = TimelineEntry { status_id: ids.next_id(), poster_id: author };
        let started = Instant::now();
        for page in readers.chunks(settings.fanout_page) {
            store.push(page, entry, settings.timeline_cap).await?;
        }
        report::record(&mut latency, started.elapsed());
    }
    let held = store.page(readers[readers.len() - 1], None, posts as usize + 1).await?.len();
    ensure!(held == posts as usize, "the scratch store's last reader holds {held} of {posts} statuses");
    Ok(latency)
}

/// What the scratch store's likes measured.
pub(super) struct StoreLikes {
    /// Likes per second of the closed loop.
    pub(super) rate: f64,
    /// Latency of the likes on the timetable, from when each was due.
    pub(super) open: Histogram<u64>,
}

/// The floor of likes on a scratch store: the closed-loop rate of `likers` liking one status
/// ([`STORE_IN_FLIGHT`] at once), then the same likers liking another on chatmesh's timetable.
pub(super) async fn store_likes(dir: &Path, likers: &[u64], per_second: u32) -> anyhow::Result<StoreLikes> {
    let store = FjallFeedStore::open(dir)?;
    let ids = Arc::new(IdGenerator::new(LOADER_NODE).map_err(anyhow::Error::msg)?);
    let (closed, open) = (ids.next_id(), ids.next_id());
    store.insert_status(&record(closed, 1), None).await?;
    store.insert_status(&record(open, 1), None).await?;
    let started = Instant::now();
    let likes = futures::stream::iter(likers.iter().map(|&user| {
        let (store, ids) = (store.clone(), ids.clone());
        async move { store.like(user, closed, ids.next_id()).await }
    }));
    let liked = likes.buffer_unordered(STORE_IN_FLIGHT).collect::<Vec<_>>().await;
    let secs = started.elapsed().as_secs_f64();
    ensure!(liked.iter().all(|l| *l == Ok(true)), "a like of the scratch store was refused");
    let timed = on_timetable(likers.len() as u64, per_second, |k| {
        let (store, ids, user) = (store.clone(), ids.clone(), likers[k as usize]);
        async move { store.like(user, open, ids.next_id()).await.ok().filter(|l| *l) }
    })
    .await?;
    ensure!(timed.answers.iter().all(Option::is_some), "a timed like of the scratch store was refused");
    for (status_id, stored) in [closed, open].into_iter().zip(store.get_statuses(&[closed, open]).await?) {
        let likes = match stored {
            Some(Stored::Live(_, counts)) => counts.likes,
            _ => bail!("the scratch store lost status {status_id}"),
        };
        ensure!(likes == likers.len() as u64, "the scratch store counts {likes} of {} likes", likers.len());
    }
    Ok(StoreLikes { rate: likers.len() as f64 / secs, open: timed.latency })
}

/// What the stopped server's feed store holds after the fan-out: whether `author` was marked a
/// celebrity (merged on read, never fanned out), and how many `followers` lack a timeline of
/// exactly `posted` (newest first) as stored — reads through the API would merge a celebrity's
/// statuses in, so only the store shows what fan-out wrote.
pub(super) async fn stored_fanout(
    dir: &Path,
    author: u64,
    followers: &[u64],
    posted: &[u64],
) -> anyhow::Result<(bool, u64)> {
    let store = FjallFeedStore::open(dir)?;
    let celebrity = !store.celebrities_among(&[author]).await?.is_empty();
    let reads = futures::stream::iter(followers.iter().map(|&follower| {
        let store = store.clone();
        async move { store.page(follower, None, posted.len() + 1).await }
    }));
    let pages: Vec<_> = reads.buffer_unordered(64).collect().await;
    let mut missing = 0;
    for page in pages {
        let ids: Vec<u64> = page?.iter().map(|e| e.status_id).collect();
        missing += u64::from(ids != posted);
    }
    Ok((celebrity, missing))
}
