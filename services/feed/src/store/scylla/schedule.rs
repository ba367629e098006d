//! Scheduled statuses: the record (`scheduled_statuses`, LWT only), its author's list and the due
//! index (`scheduled_due`, a queue by minute of publish time, see [`super::fanout`]).
//!
//! Inserting writes the list and due rows first, then the record `IF NOT EXISTS`: an index row
//! without its record is skipped by readers, a record without its due row would never publish.
//! A due row goes to its publish time's bucket, or a later one when the queue's progress has
//! passed that (a status scheduled in the past), and never to a closed bucket (the bucket of its
//! creation time at the earliest). Publishing and cancelling take the record by `DELETE ... IF
//! EXISTS`: of several processes one applies, and only that one inserts the status (or answers
//! `true`); its index rows are deleted after. A publish first checks the status it replies to,
//! so a refused one keeps the scheduled status, as the embedded store does (the status's own
//! insert checks again, after the record was taken: a parent deleted in between loses it).

use async_trait::async_trait;
use chatmesh_cql::values;

use super::{
    ATTEMPTS, ScyllaFeedStore, all, backend, big, contended, fanout::Advance, fanout::DUE_QUEUE, from_json, limit_of,
    statements::*, to_json,
};
use crate::{
    model::{FanoutJob, ScheduledRecord, StatusKind, StatusRecord},
    store::{Schedule, StoreError},
};

/// A scheduled record as read, with the due bucket listing it.
struct Scheduled {
    record: ScheduledRecord,
    due_bucket: i64,
}

impl ScyllaFeedStore {
    async fn load_scheduled(&self, scheduled_id: u64) -> Result<Option<Scheduled>, StoreError> {
        let row: Option<(i64, String, i64)> =
            self.cql.row(&GET_SCHEDULED, values![scheduled_id]).await.map_err(backend)?;
        let Some((_, record, due_bucket)) = row else { return Ok(None) };
        let record = from_json(&record, format_args!("scheduled status {scheduled_id}"))?;
        Ok(Some(Scheduled { record, due_bucket }))
    }

    /// The due bucket a new record goes to (see the module doc).
    async fn due_bucket(&self, record: &ScheduledRecord) -> Result<i64, StoreError> {
        let wanted = DUE_QUEUE.bucket(record.publish_at_ms.max(record.created_at_ms));
        let first = match self.progress(&DUE_QUEUE).await? {
            Some(first) => first,
            None => self.start_progress(&DUE_QUEUE, wanted).await?,
        };
        Ok(wanted.max(first))
    }

    /// Takes a scheduled status out (its record by LWT, then its index rows); whether this call
    /// took it.
    async fn unschedule(&self, old: &Scheduled) -> Result<bool, StoreError> {
        let record = &old.record;
        if !self.cql.lwt(&DELETE_SCHEDULED, values![record.scheduled_id]).await.map_err(backend)? {
            return Ok(false);
        }
        self.write(vec![
            (&DELETE_USER_SCHEDULED, values![record.author_id, record.scheduled_id]),
            (&DELETE_DUE, values![old.due_bucket, record.publish_at_ms, record.scheduled_id]),
        ])
        .await?;
        Ok(true)
    }

    /// The records of scheduled ids still scheduled, in order (an index row whose record is gone
    /// is skipped).
    async fn records(&self, ids: &[u64]) -> Result<Vec<ScheduledRecord>, StoreError> {
        let loaded = all(ids.iter().map(|&id| self.load_scheduled(id)).collect()).await?;
        Ok(loaded.into_iter().flatten().map(|s| s.record).collect())
    }

    /// The due records of one bucket (publish time at most `now_ms`) in time order, into `out`
    /// until it holds `limit`; whether a record is still there (or the bucket was not read whole).
    async fn due_in(
        &self,
        bucket: i64,
        now_ms: u64,
        limit: usize,
        out: &mut Vec<ScheduledRecord>,
    ) -> Result<bool, StoreError> {
        let mut pending = false;
        let mut from = -1i64;
        loop {
            let values = values![bucket, from, big(now_ms), self.page];
            let rows: Vec<(i64, i64)> = self.cql.rows(&DUE_FROM, values).await.map_err(backend)?;
            let full = rows.len() >= self.page as usize;
            let ids: Vec<u64> = rows.iter().map(|&(_, id)| chatmesh_cql::id(id)).collect();
            let records = self.records(&ids).await?;
            pending |= !records.is_empty();
            for record in records {
                if out.len() >= limit {
                    return Ok(true);
                }
                out.push(record);
            }
            let Some(&(last_ms, mut after)) = rows.last().filter(|_| full) else { return Ok(pending) };
            // why: the page may have cut through statuses due in the same millisecond
            loop {
                let values = values![bucket, last_ms, after, self.page];
                let rows: Vec<(i64,)> = self.cql.rows(&DUE_AT, values).await.map_err(backend)?;
                let ids: Vec<u64> = rows.iter().map(|&(id,)| chatmesh_cql::id(id)).collect();
                let records = self.records(&ids).await?;
                pending |= !records.is_empty();
                for record in records {
                    if out.len() >= limit {
                        return Ok(true);
                    }
                    out.push(record);
                }
                match rows.last() {
                    Some(&(id,)) if rows.len() >= self.page as usize => after = id,
                    _ => break,
                }
            }
            from = last_ms;
        }
    }
}

#[async_trait]
impl Schedule for ScyllaFeedStore {
    #[tracing::instrument(name = "feed_store.insert_scheduled", skip_all, fields(db.system = "scylla"))]
    async fn insert_scheduled(&self, scheduled: &ScheduledRecord) -> Result<(), StoreError> {
        let id = scheduled.scheduled_id;
        let record = to_json(scheduled)?;
        for _ in 0..ATTEMPTS {
            if let Some(old) = self.load_scheduled(id).await? {
                // replacing the one of that id, as the embedded store does
                self.unschedule(&old).await?;
            }
            let bucket = self.due_bucket(scheduled).await?;
            self.list_queue_bucket(&DUE_QUEUE, bucket).await?;
            self.write(vec![
                (&PUT_DUE, values![bucket, scheduled.publish_at_ms, id]),
                (&PUT_USER_SCHEDULED, values![scheduled.author_id, id]),
            ])
            .await?;
            let values = values![id, scheduled.author_id, &record, bucket];
            if self.cql.lwt(&INSERT_SCHEDULED, values).await.map_err(backend)? {
                return Ok(());
            }
        }
        Err(contended(&format!("scheduled status {id}")))
    }

    #[tracing::instrument(name = "feed_store.get_scheduled", skip_all, fields(db.system = "scylla", %scheduled_id))]
    async fn get_scheduled(&self, scheduled_id: u64) -> Result<Option<ScheduledRecord>, StoreError> {
        Ok(self.load_scheduled(scheduled_id).await?.map(|s| s.record))
    }

    #[tracing::instrument(name = "feed_store.list_scheduled", skip_all, fields(db.system = "scylla"))]
    async fn list_scheduled(
        &self,
        user_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ScheduledRecord>, StoreError> {
        let mut out = Vec::new();
        let mut before = big(before.unwrap_or(u64::MAX));
        while out.len() < limit {
            let asked = limit - out.len();
            let values = values![user_id, before, limit_of(asked)];
            let rows: Vec<(i64,)> = self.cql.rows(&USER_SCHEDULED, values).await.map_err(backend)?;
            let ids: Vec<u64> = rows.iter().map(|&(id,)| chatmesh_cql::id(id)).collect();
            out.extend(self.records(&ids).await?);
            match rows.last() {
                Some(&(last,)) if rows.len() >= asked => before = last,
                _ => break,
            }
        }
        Ok(out)
    }

    #[tracing::instrument(name = "feed_store.due_scheduled", skip_all, fields(db.system = "scylla"))]
    async fn due_scheduled(&self, now_ms: u64, limit: usize) -> Result<Vec<ScheduledRecord>, StoreError> {
        let mut due = Vec::new();
        if limit == 0 {
            return Ok(due);
        }
        let Some(first) = self.progress(&DUE_QUEUE).await? else { return Ok(due) };
        // why the progress bucket too: a status scheduled in the past may have been put there
        let last = DUE_QUEUE.bucket(now_ms).max(first);
        let mut advance = Advance::new(first, DUE_QUEUE.first_open(now_ms));
        let mut from = first;
        'walk: loop {
            let buckets = self.queue_buckets(&DUE_QUEUE, from, last).await?;
            for &bucket in &buckets {
                if due.len() >= limit {
                    advance.stopped(bucket);
                    break 'walk;
                }
                let pending = self.due_in(bucket, now_ms, limit, &mut due).await?;
                advance.scanned(bucket, pending);
            }
            match buckets.last() {
                Some(&b) if buckets.len() >= self.page as usize => from = b + 1,
                _ => {
                    advance.finished();
                    break;
                }
            }
        }
        self.advance(&DUE_QUEUE, advance).await?;
        // a status put in a later bucket than its time's comes out in time order all the same
        due.sort_by_key(|r| (r.publish_at_ms, r.scheduled_id));
        Ok(due)
    }

    #[tracing::instrument(name = "feed_store.cancel_scheduled", skip_all, fields(db.system = "scylla", %scheduled_id))]
    async fn cancel_scheduled(&self, scheduled_id: u64) -> Result<bool, StoreError> {
        match self.load_scheduled(scheduled_id).await? {
            Some(old) => self.unschedule(&old).await,
            None => Ok(false),
        }
    }

    #[tracing::instrument(name = "feed_store.publish_scheduled", skip_all, fields(db.system = "scylla", %scheduled_id))]
    async fn publish_scheduled(
        &self,
        scheduled_id: u64,
        status: &StatusRecord,
        fanout: Option<&FanoutJob>,
    ) -> Result<bool, StoreError> {
        let Some(old) = self.load_scheduled(scheduled_id).await? else { return Ok(false) };
        if let (StatusKind::Reply | StatusKind::Repost, Some(target)) = (status.kind, status.referenced_id)
            && !self.is_live(target, false).await?
        {
            return Err(StoreError::StatusNotFound(target));
        }
        if !self.unschedule(&old).await? {
            return Ok(false);
        }
        self.publish(status, fanout).await?;
        Ok(true)
    }
}
