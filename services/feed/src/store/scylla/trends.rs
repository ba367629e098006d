//! Trends: tag counts per trend bucket, the computed snapshot, and named leases.
//!
//! A tag's count in a bucket is split over [`SHARDS`] rows (`feed_trend_counts ((bucket, tag,
//! shard))`, shard = status id % 8), so the statuses of one hot tag compare-and-set on eight Paxos
//! partitions rather than one. Each row is changed only `IF version = ?` (the version rising by
//! one per change) by the process whose status insert or deletion applied; after a change applies
//! its count is copied into `feed_trend_tags ((bucket), tag, shard)` `USING TIMESTAMP` = the
//! version, so copies arriving in any order keep the latest, and `tag_counts` reads one partition
//! per bucket (the buckets listed in `feed_trend_buckets`, each listed once per process and
//! bucket). A decrement finding nothing to take back (the bucket was pruned) changes nothing.
//!
//! Pruning sets each count of a bucket to 0 (`IF version = ?`, keeping the version rising), deletes
//! its copy at that version, then unlists the bucket: a count changed later (a status of a pruned
//! bucket published again) starts from 0 and its copy shows.

use std::collections::HashMap;

use async_trait::async_trait;
use chatmesh_cql::values;

use super::{ATTEMPTS, ScyllaFeedStore, backend, big, contended, from_json, statements::*, to_json};
use crate::{
    model::{StatusRecord, TrendsSnapshot},
    store::{StoreError, Trends},
};

/// Rows a tag's count in one bucket is split over.
const SHARDS: u64 = 8;
/// The one partition of `feed_trend_buckets` and `feed_trends`.
const ONE: i32 = 0;
/// `feed_trend_counts` rows expire this long after their last change (seconds): long after any
/// trends window.
const COUNT_TTL_SECS: i32 = 30 * 86_400;

/// The `listed` key of the trend bucket this process last listed.
const LISTED: &str = "trends";

/// `feed_trend_tags` rows read per page (more than a tag's shards, so a page never ends inside
/// the first tag it reads).
fn copies_page(page: i32) -> i32 {
    page.max(2 * SHARDS as i32)
}

impl ScyllaFeedStore {
    /// Lists the trend bucket of a status with tags, once per process and bucket.
    pub(super) async fn list_trend_bucket(&self, status: &StatusRecord) -> Result<(), StoreError> {
        let bucket = big(status.trend_bucket);
        if status.tags.is_empty() || self.listed.lock().expect("listed buckets").get(LISTED) == Some(&bucket) {
            return Ok(());
        }
        self.cql.execute(&PUT_TREND_BUCKET, values![ONE, bucket]).await.map_err(backend)?;
        self.listed.lock().expect("listed buckets").insert(LISTED, bucket);
        Ok(())
    }

    /// Adds `delta` to `tag`'s count in `bucket` (the shard of `status_id`), then copies it.
    pub(super) async fn add_trend(&self, bucket: u64, tag: &str, status_id: u64, delta: i64) -> Result<(), StoreError> {
        let shard = (status_id % SHARDS) as i32;
        for _ in 0..ATTEMPTS {
            let row: Option<(Option<i64>, Option<i64>)> =
                self.cql.row(&GET_TREND_COUNT, values![bucket, tag, shard]).await.map_err(backend)?;
            let (total, version) = row.unwrap_or_default();
            let total = total.unwrap_or(0);
            if delta < 0 && total <= 0 {
                // pruned: nothing to take back
                return Ok(());
            }
            if self.set_trend(bucket, tag, shard, total + delta, version).await? {
                return Ok(());
            }
        }
        Err(contended(&format!("trend count {tag} in bucket {bucket}")))
    }

    /// Sets one count to `total` if its version is still `version`, then copies it; whether it
    /// applied.
    async fn set_trend(
        &self,
        bucket: u64,
        tag: &str,
        shard: i32,
        total: i64,
        version: Option<i64>,
    ) -> Result<bool, StoreError> {
        let next = version.unwrap_or(0) + 1;
        let values = values![COUNT_TTL_SECS, total, next, bucket, tag, shard, version];
        if !self.cql.lwt(&SET_TREND_COUNT, values).await.map_err(backend)? {
            return Ok(false);
        }
        let values = values![bucket, tag, shard, total, next];
        self.cql.execute(&PUT_TREND_COPY, values).await.map_err(backend)?;
        Ok(true)
    }

    /// Sets one count of a pruned bucket to 0 and deletes its copy.
    async fn reset_trend(&self, bucket: i64, tag: &str, shard: i32) -> Result<(), StoreError> {
        for _ in 0..ATTEMPTS {
            let row: Option<(Option<i64>, Option<i64>)> =
                self.cql.row(&GET_TREND_COUNT, values![bucket, tag, shard]).await.map_err(backend)?;
            let version = row.and_then(|(_, v)| v);
            let next = version.unwrap_or(0) + 1;
            let values = values![COUNT_TTL_SECS, 0i64, next, bucket, tag, shard, version];
            if self.cql.lwt(&SET_TREND_COUNT, values).await.map_err(backend)? {
                let values = values![next, bucket, tag, shard];
                return self.cql.execute(&DELETE_TREND_COPY, values).await.map_err(backend);
            }
        }
        Err(contended(&format!("trend count {tag} in bucket {bucket}")))
    }

    /// One page of the trend buckets in `from..=to`.
    async fn trend_buckets(&self, from: i64, to: i64) -> Result<Vec<i64>, StoreError> {
        let rows: Vec<(i64,)> =
            self.cql.rows(&TREND_BUCKETS, values![ONE, from, to, self.page]).await.map_err(backend)?;
        Ok(rows.into_iter().map(|(b,)| b).collect())
    }

    /// Every copy of one bucket: `(tag, shard, total)`.
    async fn trend_copies(&self, bucket: i64) -> Result<Vec<(String, i32, i64)>, StoreError> {
        let page = copies_page(self.page);
        let mut out: Vec<(String, i32, i64)> = Vec::new();
        let mut from = String::new();
        loop {
            let mut rows: Vec<(String, i32, i64)> =
                self.cql.rows(&TREND_COPIES, values![bucket, &from, page]).await.map_err(backend)?;
            if rows.len() < page as usize {
                out.extend(rows);
                return Ok(out);
            }
            // why: the page may end inside its last tag's shards: that tag is read again whole
            let last = rows.last().map(|(tag, _, _)| tag.clone()).unwrap_or_default();
            rows.retain(|(tag, _, _)| *tag != last);
            out.extend(rows);
            from = last;
        }
    }
}

#[async_trait]
impl Trends for ScyllaFeedStore {
    #[tracing::instrument(name = "feed_store.tag_counts", skip_all, fields(db.system = "scylla"))]
    async fn tag_counts(&self, from_bucket: u64, to_bucket: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let mut sums: HashMap<String, u64> = HashMap::new();
        let (mut from, to) = (big(from_bucket), big(to_bucket));
        loop {
            let buckets = self.trend_buckets(from, to).await?;
            for &bucket in &buckets {
                for (tag, _, total) in self.trend_copies(bucket).await? {
                    *sums.entry(tag).or_default() += total.max(0) as u64;
                }
            }
            match buckets.last() {
                Some(&b) if buckets.len() >= self.page as usize => from = b + 1,
                _ => break,
            }
        }
        Ok(sums.into_iter().filter(|&(_, n)| n > 0).collect())
    }

    #[tracing::instrument(name = "feed_store.prune_buckets", skip_all, fields(db.system = "scylla", %before_bucket))]
    async fn prune_buckets(&self, before_bucket: u64) -> Result<(), StoreError> {
        if before_bucket == 0 {
            return Ok(());
        }
        loop {
            let buckets = self.trend_buckets(0, big(before_bucket - 1)).await?;
            for &bucket in &buckets {
                for (tag, shard, _) in self.trend_copies(bucket).await? {
                    self.reset_trend(bucket, &tag, shard).await?;
                }
                self.cql.execute(&DROP_TREND_BUCKET, values![ONE, bucket]).await.map_err(backend)?;
            }
            // the buckets read were unlisted: the next read starts after them
            if buckets.len() < self.page as usize {
                // why: a bucket this process listed may be among them (only in tests: the
                // service prunes buckets past its window)
                self.listed.lock().expect("listed buckets").remove(LISTED);
                return Ok(());
            }
        }
    }

    #[tracing::instrument(name = "feed_store.save_trends", skip_all, fields(db.system = "scylla"))]
    async fn save_trends(&self, snapshot: &TrendsSnapshot) -> Result<(), StoreError> {
        self.cql.execute(&SAVE_TRENDS, values![ONE, to_json(snapshot)?]).await.map_err(backend)
    }

    #[tracing::instrument(name = "feed_store.load_trends", skip_all, fields(db.system = "scylla"))]
    async fn load_trends(&self) -> Result<Option<TrendsSnapshot>, StoreError> {
        let row: Option<(Option<String>,)> = self.cql.row(&LOAD_TRENDS, values![ONE]).await.map_err(backend)?;
        row.and_then(|(s,)| s).map(|s| from_json(&s, "trends snapshot")).transpose()
    }

    #[tracing::instrument(name = "feed_store.try_lease", skip_all, fields(db.system = "scylla", %name, %owner))]
    async fn try_lease(&self, name: &str, owner: u64, now_ms: u64, until_ms: u64) -> Result<bool, StoreError> {
        for _ in 0..ATTEMPTS {
            let row: Option<(Option<i64>, Option<i64>)> =
                self.cql.row(&GET_LEASE, values![name]).await.map_err(backend)?;
            let applied = match row {
                None | Some((None, _)) => {
                    let values = values![name, owner, big(until_ms)];
                    self.cql.lwt(&CREATE_LEASE, values).await.map_err(backend)?
                }
                Some((Some(holder), _)) if chatmesh_cql::id(holder) == owner => {
                    let values = values![big(until_ms), name, owner];
                    self.cql.lwt(&RENEW_LEASE, values).await.map_err(backend)?
                }
                // why: held while now < until (a lease ending at now has run out)
                Some((Some(_), until)) if until.is_some_and(|u| chatmesh_cql::id(u) > now_ms) => return Ok(false),
                Some(_) => {
                    let values = values![owner, big(until_ms), name, big(now_ms)];
                    self.cql.lwt(&TAKE_LEASE, values).await.map_err(backend)?
                }
            };
            if applied {
                return Ok(true);
            }
        }
        Err(contended(&format!("lease {name}")))
    }
}
