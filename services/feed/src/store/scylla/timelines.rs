//! Home timelines, their backfill watermarks, and celebrities.
//!
//! A timeline is one partition, `timelines ((reader_id), status_id DESC)`, kept short by trimming:
//! its static `entries_hint` estimates how many entries it holds (each push adds the entries it
//! wrote; plain writes, so two pushes racing may count one). Once the estimate passes `cap` + 10%
//! the push counts the entries (reading at most `cap` + 10% + 1 ids) and, when there are more,
//! deletes everything below the `cap`-th newest with one range delete, then stores the count.
//! The estimate never counts fewer entries than a single writer pushed (removals do not lower
//! it), so a timeline is trimmed no later than the embedded store's exact count would; racing
//! pushes trim at the next push. A push reads whether each entry is there (an entry already there
//! is left as it is).
//!
//! Celebrities are one partition, read whole (they are few; a reader follows up to thousands of
//! users), and answered from the process's copy for a second: every home timeline read asks, and
//! that partition would otherwise take them all.

use std::{collections::HashSet, sync::Arc};

use async_trait::async_trait;
use chatmesh_cql::{BatchKind, values};

use super::{ATTEMPTS, Batch, MAX_ID, ScyllaFeedStore, all, backend, big, contended, limit_of, statements::*};
use crate::{
    model::TimelineEntry,
    store::{StoreError, Timelines},
};

/// The one partition of `celebrities`.
const CELEBRITY_SHARD: i32 = 0;
/// How long a process answers from the celebrities it last read: marks are for good, so a set
/// this old misses only authors marked meanwhile by another process (their statuses show on the
/// next read), and the one partition is read once a second per process, not per timeline read.
const CELEBRITIES_FRESH_MS: u64 = 1000;

impl ScyllaFeedStore {
    /// Adds the entries not yet in `reader`'s timeline, then trims it past `cap` + 10%.
    async fn add_entries(&self, reader: u64, entries: &[TimelineEntry], cap: usize) -> Result<(), StoreError> {
        let mut seen = HashSet::new();
        let entries: Vec<TimelineEntry> = entries.iter().copied().filter(|e| seen.insert(e.status_id)).collect();
        if entries.is_empty() {
            return Ok(());
        }
        let there = |entry: TimelineEntry| async move {
            let row: Option<(Option<i64>,)> =
                self.cql.row(&TIMELINE_ENTRY, values![reader, entry.status_id]).await.map_err(backend)?;
            Ok(row.is_some())
        };
        let present = all(entries.iter().map(|&e| there(e)).collect()).await?;
        let fresh: Vec<TimelineEntry> =
            entries.into_iter().zip(present).filter(|(_, there)| !there).map(|(e, _)| e).collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let hint: Option<(Option<i64>,)> =
            self.cql.row(&TIMELINE_HINT, values![reader, 1i32]).await.map_err(backend)?;
        let hint = hint.and_then(|(h,)| h).unwrap_or(0).max(0) as u64;
        let estimate = hint.saturating_add(fresh.len() as u64);
        let threshold = cap.saturating_add(cap / 10);
        let mut batch: Batch = fresh.iter().map(|e| (&PUT_ENTRY, values![reader, e.status_id, e.poster_id])).collect();
        let trim = estimate > threshold as u64;
        if !trim {
            batch.push((&SET_HINT, values![big(estimate), reader]));
        }
        // one partition: applied atomically there
        self.cql.batch(BatchKind::Unlogged, batch).await.map_err(backend)?;
        if !trim {
            return Ok(());
        }
        // why: the estimate only says when to count; the count decides
        let values = values![reader, MAX_ID, limit_of(threshold.saturating_add(1))];
        let newest: Vec<(i64, i64)> = self.cql.rows(&TIMELINE_PAGE, values).await.map_err(backend)?;
        let kept = if newest.len() > threshold {
            let cut = if cap == 0 { MAX_ID } else { chatmesh_cql::id(newest[cap - 1].0) };
            self.cql.execute(&TRIM_TIMELINE, values![reader, cut]).await.map_err(backend)?;
            cap
        } else {
            newest.len()
        };
        self.cql.execute(&SET_HINT, values![big(kept as u64), reader]).await.map_err(backend)
    }

    /// Every celebrity, from this process's copy while it is fresh.
    async fn celebrities(&self) -> Result<Arc<HashSet<u64>>, StoreError> {
        let now = (self.clock)();
        if let Some((read_at, set)) = &*self.celebrities.lock().expect("celebrities")
            && now.saturating_sub(*read_at) < CELEBRITIES_FRESH_MS
        {
            return Ok(set.clone());
        }
        // why one partition read whole: celebrities are few, and a reader follows up to thousands
        let mut celebrities = HashSet::new();
        let mut after = -1i64;
        loop {
            let values = values![CELEBRITY_SHARD, after, self.page];
            let rows: Vec<(i64,)> = self.cql.rows(&CELEBRITIES, values).await.map_err(backend)?;
            celebrities.extend(rows.iter().map(|&(id,)| chatmesh_cql::id(id)));
            match rows.last() {
                Some(&(last,)) if rows.len() >= self.page as usize => after = last,
                _ => break,
            }
        }
        let celebrities = Arc::new(celebrities);
        *self.celebrities.lock().expect("celebrities") = Some((now, celebrities.clone()));
        Ok(celebrities)
    }
}

#[async_trait]
impl Timelines for ScyllaFeedStore {
    #[tracing::instrument(name = "feed_store.push", skip_all, fields(db.system = "scylla", readers = readers.len()))]
    async fn push(&self, readers: &[u64], entry: TimelineEntry, cap: usize) -> Result<(), StoreError> {
        all(readers.iter().map(|&reader| self.add_entries(reader, std::slice::from_ref(&entry), cap)).collect())
            .await
            .map(drop)
    }

    #[tracing::instrument(name = "feed_store.push_entries", skip_all, fields(db.system = "scylla", %reader))]
    async fn push_entries(&self, reader: u64, entries: &[TimelineEntry], cap: usize) -> Result<(), StoreError> {
        self.add_entries(reader, entries, cap).await
    }

    #[tracing::instrument(name = "feed_store.page", skip_all, fields(db.system = "scylla", %reader))]
    async fn page(&self, reader: u64, before: Option<u64>, limit: usize) -> Result<Vec<TimelineEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let values = values![reader, big(before.unwrap_or(MAX_ID)), limit_of(limit)];
        let rows: Vec<(i64, i64)> = self.cql.rows(&TIMELINE_PAGE, values).await.map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(status_id, poster_id)| TimelineEntry {
                status_id: chatmesh_cql::id(status_id),
                poster_id: chatmesh_cql::id(poster_id),
            })
            .collect())
    }

    #[tracing::instrument(name = "feed_store.remove", skip_all, fields(db.system = "scylla", %reader))]
    async fn remove(&self, reader: u64, status_ids: &[u64]) -> Result<(), StoreError> {
        let batch: Batch = status_ids.iter().map(|&id| (&REMOVE_ENTRY, values![reader, id])).collect();
        // one partition; the estimate stays (it may count more than there are, never fewer)
        self.cql.batch(BatchKind::Unlogged, batch).await.map_err(backend).map(drop)
    }

    #[tracing::instrument(name = "feed_store.watermark", skip_all, fields(db.system = "scylla", %reader))]
    async fn watermark(&self, reader: u64) -> Result<u64, StoreError> {
        let row: Option<(Option<i64>,)> = self.cql.row(&GET_WATERMARK, values![reader]).await.map_err(backend)?;
        Ok(row.and_then(|(w,)| w).map_or(0, chatmesh_cql::id))
    }

    #[tracing::instrument(name = "feed_store.raise_watermark", skip_all, fields(db.system = "scylla", %reader))]
    async fn raise_watermark(&self, reader: u64, follow_id: u64) -> Result<(), StoreError> {
        for _ in 0..ATTEMPTS {
            let row: Option<(Option<i64>,)> = self.cql.row(&GET_WATERMARK, values![reader]).await.map_err(backend)?;
            let current = row.and_then(|(w,)| w);
            if current.is_some_and(|c| chatmesh_cql::id(c) >= follow_id) {
                return Ok(());
            }
            if self.cql.lwt(&SET_WATERMARK, values![follow_id, reader, current]).await.map_err(backend)? {
                return Ok(());
            }
        }
        Err(contended(&format!("watermark of reader {reader}")))
    }

    #[tracing::instrument(name = "feed_store.mark_celebrity", skip_all, fields(db.system = "scylla", %author_id))]
    async fn mark_celebrity(&self, author_id: u64) -> Result<(), StoreError> {
        self.cql.execute(&PUT_CELEBRITY, values![CELEBRITY_SHARD, author_id]).await.map_err(backend)?;
        *self.celebrities.lock().expect("celebrities") = None;
        Ok(())
    }

    #[tracing::instrument(name = "feed_store.celebrities_among", skip_all, fields(db.system = "scylla"))]
    async fn celebrities_among(&self, user_ids: &[u64]) -> Result<Vec<u64>, StoreError> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        let celebrities = self.celebrities().await?;
        Ok(user_ids.iter().copied().filter(|id| celebrities.contains(id)).collect())
    }
}
