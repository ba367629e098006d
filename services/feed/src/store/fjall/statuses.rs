//! Statuses on fjall: publishing and deleting with every list, counter and tag bucket that
//! hangs off a status (keyspaces in the parent module's doc).

use async_trait::async_trait;
use fjall::Readable;

use super::{
    Batch, FjallFeedStore, Keyspaces, Ks, StoreError, backend, bucket_key, get_json, has, id_at, key, newest_first,
    number, oldest_first, tag_key, tag_prefix,
};
use crate::{
    model::{Counts, Edge, FanoutJob, StatusKind, StatusRecord, Stored},
    store::Statuses,
};

/// One of a status's counters.
#[derive(Clone, Copy)]
pub(super) enum Count {
    Likes,
    Reposts,
    Replies,
}

impl Keyspaces {
    pub(super) fn live(&self, r: &impl Readable, status_id: u64) -> Result<Option<StatusRecord>, StoreError> {
        get_json(r, &self.statuses, &key(&[status_id]))
    }

    pub(super) fn counts(&self, r: &impl Readable, status_id: u64) -> Result<Counts, StoreError> {
        Ok(match r.get(&self.counters, key(&[status_id])).map_err(backend)? {
            Some(v) => Counts { likes: id_at(&v, 0)?, reposts: id_at(&v, 8)?, replies: id_at(&v, 16)? },
            None => Counts::default(),
        })
    }

    /// Adds `delta` to one counter of a status.
    pub(super) fn count(&self, b: &mut Batch<'_>, status_id: u64, which: Count, delta: i64) -> Result<(), StoreError> {
        let mut counts = self.counts(b.view(), status_id)?;
        let n = match which {
            Count::Likes => &mut counts.likes,
            Count::Reposts => &mut counts.reposts,
            Count::Replies => &mut counts.replies,
        };
        *n = n.saturating_add_signed(delta);
        b.put(&self.counters, key(&[status_id]), key(&[counts.likes, counts.reposts, counts.replies]))
    }

    /// Takes `id` off `target`'s reply or repost list, and its count down if it was listed.
    fn unlist(&self, b: &mut Batch<'_>, list: &Ks, target: u64, id: u64, which: Count) -> Result<(), StoreError> {
        if b.delete(list, key(&[target, id]))? {
            self.count(b, target, which, -1)?;
        }
        Ok(())
    }

    /// Publishes a status with everything that hangs off it ([`Statuses::insert_status`]).
    pub(super) fn publish(
        &self,
        b: &mut Batch<'_>,
        status: &StatusRecord,
        fanout: Option<&FanoutJob>,
    ) -> Result<(), StoreError> {
        let (id, author) = (status.status_id, status.author_id);
        // why: a retried insert (its answer lost) finds its status, live or already deleted
        if has(b.view(), &self.statuses, &key(&[id]))? || has(b.view(), &self.tombstones, &key(&[id]))? {
            return Ok(());
        }
        let referenced = match status.kind {
            StatusKind::Post => None,
            StatusKind::Reply | StatusKind::Repost => {
                let target = status.referenced_id.ok_or_else(|| backend("a reply or repost names no status"))?;
                if !has(b.view(), &self.statuses, &key(&[target]))? {
                    return Err(StoreError::StatusNotFound(target));
                }
                Some(target)
            }
        };
        if let (StatusKind::Repost, Some(target)) = (status.kind, referenced)
            && let Some(existing) = b.get(&self.repost_pairs, &key(&[target, author]))?
        {
            return Err(StoreError::AlreadyReposted(id_at(&existing, 0)?));
        }
        b.put_json(&self.statuses, key(&[id]), status)?;
        b.put(&self.counters, key(&[id]), key(&[0, 0, 0]))?;
        b.put(&self.user_statuses, key(&[author, id]), b"")?;
        b.bump(&self.user_status_counts, key(&[author]), 1)?;
        for tag in &status.tags {
            b.put(&self.tag_statuses, tag_key(tag, id), b"")?;
            b.bump(&self.buckets, bucket_key(status.trend_bucket, tag), 1)?;
        }
        match (status.kind, referenced) {
            (StatusKind::Reply, Some(target)) => {
                b.put(&self.replies, key(&[target, id]), b"")?;
                self.count(b, target, Count::Replies, 1)?;
            }
            (StatusKind::Repost, Some(target)) => {
                b.put(&self.reposts, key(&[target, id]), author.to_be_bytes())?;
                b.put(&self.repost_pairs, key(&[target, author]), id.to_be_bytes())?;
                self.count(b, target, Count::Reposts, 1)?;
            }
            _ => {}
        }
        if let Some(job) = fanout {
            self.put_job(b, job, 0, 0)?;
        }
        Ok(())
    }

    /// Deletes a live status, its reposts first ([`Statuses::delete_status`]).
    pub(super) fn delete(&self, b: &mut Batch<'_>, status_id: u64) -> Result<Option<StatusRecord>, StoreError> {
        let Some(status) = self.live(b.view(), status_id)? else { return Ok(None) };
        for (k, _) in oldest_first(b.view(), &self.reposts, key(&[status_id]), usize::MAX)? {
            self.delete(b, id_at(&k, 8)?)?;
        }
        let (id, author) = (status.status_id, status.author_id);
        b.delete(&self.statuses, key(&[id]))?;
        b.put(&self.tombstones, key(&[id]), author.to_be_bytes())?;
        if b.delete(&self.user_statuses, key(&[author, id]))? {
            b.bump(&self.user_status_counts, key(&[author]), -1)?;
        }
        for tag in &status.tags {
            if b.delete(&self.tag_statuses, tag_key(tag, id))? {
                b.bump(&self.buckets, bucket_key(status.trend_bucket, tag), -1)?;
            }
        }
        match (status.kind, status.referenced_id) {
            (StatusKind::Reply, Some(target)) => self.unlist(b, &self.replies, target, id, Count::Replies)?,
            (StatusKind::Repost, Some(target)) => {
                self.unlist(b, &self.reposts, target, id, Count::Reposts)?;
                let pair = key(&[target, author]);
                if b.get(&self.repost_pairs, &pair)?.is_some_and(|v| v.as_ref() == id.to_be_bytes()) {
                    b.delete(&self.repost_pairs, pair)?;
                }
            }
            _ => {}
        }
        for (k, v) in oldest_first(b.view(), &self.likes, key(&[id]), usize::MAX)? {
            self.drop_like(b, id_at(&v, 0)?, id, id_at(&k, 8)?)?;
        }
        self.forget_job(b, id)?;
        Ok(Some(status))
    }
}

#[async_trait]
impl Statuses for FjallFeedStore {
    #[tracing::instrument(name = "feed_store.insert_status", skip_all, fields(db.system = "fjall"))]
    async fn insert_status(&self, status: &StatusRecord, fanout: Option<&FanoutJob>) -> Result<(), StoreError> {
        let (status, fanout) = (status.clone(), fanout.cloned());
        self.write(move |s, b| s.publish(b, &status, fanout.as_ref())).await
    }

    #[tracing::instrument(name = "feed_store.get_statuses", skip_all, fields(db.system = "fjall"))]
    async fn get_statuses(&self, status_ids: &[u64]) -> Result<Vec<Option<Stored>>, StoreError> {
        let ids = status_ids.to_vec();
        self.read(move |s, snap| {
            ids.iter()
                .map(|&id| {
                    if let Some(status) = s.live(snap, id)? {
                        return Ok(Some(Stored::Live(status, s.counts(snap, id)?)));
                    }
                    Ok(match snap.get(&s.tombstones, key(&[id])).map_err(backend)? {
                        Some(author) => Some(Stored::Deleted { status_id: id, author_id: id_at(&author, 0)? }),
                        None => None,
                    })
                })
                .collect()
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.delete_status", skip_all, fields(db.system = "fjall", %status_id))]
    async fn delete_status(&self, status_id: u64) -> Result<Option<StatusRecord>, StoreError> {
        self.write(move |s, b| s.delete(b, status_id)).await
    }

    #[tracing::instrument(name = "feed_store.list_user_statuses", skip_all, fields(db.system = "fjall"))]
    async fn list_user_statuses(
        &self,
        user_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        self.read(move |s, snap| {
            newest_first(snap, &s.user_statuses, key(&[user_id]), before, limit)?
                .iter()
                .map(|(k, _)| id_at(k, 8))
                .collect()
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.count_user_statuses", skip_all, fields(db.system = "fjall"))]
    async fn count_user_statuses(&self, user_id: u64) -> Result<u64, StoreError> {
        self.read(move |s, snap| number(snap, &s.user_status_counts, &key(&[user_id]))).await
    }

    #[tracing::instrument(name = "feed_store.list_replies", skip_all, fields(db.system = "fjall"))]
    async fn list_replies(&self, status_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<u64>, StoreError> {
        self.read(move |s, snap| {
            newest_first(snap, &s.replies, key(&[status_id]), before, limit)?.iter().map(|(k, _)| id_at(k, 8)).collect()
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.list_tag_statuses", skip_all, fields(db.system = "fjall"))]
    async fn list_tag_statuses(&self, tag: &str, before: Option<u64>, limit: usize) -> Result<Vec<u64>, StoreError> {
        let prefix = tag_prefix(tag);
        self.read(move |s, snap| {
            let at = prefix.len();
            newest_first(snap, &s.tag_statuses, prefix, before, limit)?.iter().map(|(k, _)| id_at(k, at)).collect()
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.list_reposts", skip_all, fields(db.system = "fjall"))]
    async fn list_reposts(&self, status_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<Edge>, StoreError> {
        self.read(move |s, snap| {
            newest_first(snap, &s.reposts, key(&[status_id]), before, limit)?
                .iter()
                .map(|(k, v)| Ok(Edge { id: id_at(k, 8)?, other: id_at(v, 0)? }))
                .collect()
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.reposts_by", skip_all, fields(db.system = "fjall"))]
    async fn reposts_by(&self, user_id: u64, status_ids: &[u64]) -> Result<Vec<Option<u64>>, StoreError> {
        let ids = status_ids.to_vec();
        self.read(move |s, snap| {
            ids.iter()
                .map(|&id| {
                    snap.get(&s.repost_pairs, key(&[id, user_id])).map_err(backend)?.map(|v| id_at(&v, 0)).transpose()
                })
                .collect()
        })
        .await
    }
}
