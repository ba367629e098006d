//! Likes on fjall: both lists, the pair and both counts in one write (keyspaces in the parent
//! module's doc).

use async_trait::async_trait;
use fjall::Readable;

use super::{
    Batch, FjallFeedStore, Keyspaces, StoreError, backend, has, id_at, key, newest_first, number, statuses::Count,
};
use crate::{model::Edge, store::Likes};

impl Keyspaces {
    /// Takes one like out of both lists and both counts.
    pub(super) fn drop_like(
        &self,
        b: &mut Batch<'_>,
        user_id: u64,
        status_id: u64,
        like_id: u64,
    ) -> Result<(), StoreError> {
        b.delete(&self.like_pairs, key(&[user_id, status_id]))?;
        if b.delete(&self.likes, key(&[status_id, like_id]))? {
            self.count(b, status_id, Count::Likes, -1)?;
        }
        if b.delete(&self.user_likes, key(&[user_id, like_id]))? {
            b.bump(&self.user_like_counts, key(&[user_id]), -1)?;
        }
        Ok(())
    }
}

#[async_trait]
impl Likes for FjallFeedStore {
    #[tracing::instrument(name = "feed_store.like", skip_all, fields(db.system = "fjall"))]
    async fn like(&self, user_id: u64, status_id: u64, like_id: u64) -> Result<bool, StoreError> {
        self.write(move |s, b| {
            if !has(b.view(), &s.statuses, &key(&[status_id]))? {
                return Err(StoreError::StatusNotFound(status_id));
            }
            if has(b.view(), &s.like_pairs, &key(&[user_id, status_id]))? {
                return Ok(false);
            }
            b.put(&s.like_pairs, key(&[user_id, status_id]), like_id.to_be_bytes())?;
            b.put(&s.likes, key(&[status_id, like_id]), user_id.to_be_bytes())?;
            b.put(&s.user_likes, key(&[user_id, like_id]), status_id.to_be_bytes())?;
            s.count(b, status_id, Count::Likes, 1)?;
            b.bump(&s.user_like_counts, key(&[user_id]), 1)?;
            Ok(true)
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.unlike", skip_all, fields(db.system = "fjall"))]
    async fn unlike(&self, user_id: u64, status_id: u64) -> Result<bool, StoreError> {
        self.write(move |s, b| {
            let Some(like_id) = b.get(&s.like_pairs, &key(&[user_id, status_id]))? else { return Ok(false) };
            s.drop_like(b, user_id, status_id, id_at(&like_id, 0)?)?;
            Ok(true)
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.list_likes", skip_all, fields(db.system = "fjall"))]
    async fn list_likes(&self, status_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<Edge>, StoreError> {
        self.read(move |s, snap| {
            newest_first(snap, &s.likes, key(&[status_id]), before, limit)?
                .iter()
                .map(|(k, v)| Ok(Edge { id: id_at(k, 8)?, other: id_at(v, 0)? }))
                .collect()
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.list_user_likes", skip_all, fields(db.system = "fjall"))]
    async fn list_user_likes(&self, user_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<Edge>, StoreError> {
        self.read(move |s, snap| {
            newest_first(snap, &s.user_likes, key(&[user_id]), before, limit)?
                .iter()
                .map(|(k, v)| Ok(Edge { id: id_at(k, 8)?, other: id_at(v, 0)? }))
                .collect()
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.count_user_likes", skip_all, fields(db.system = "fjall"))]
    async fn count_user_likes(&self, user_id: u64) -> Result<u64, StoreError> {
        self.read(move |s, snap| number(snap, &s.user_like_counts, &key(&[user_id]))).await
    }

    #[tracing::instrument(name = "feed_store.liked_by", skip_all, fields(db.system = "fjall"))]
    async fn liked_by(&self, user_id: u64, status_ids: &[u64]) -> Result<Vec<bool>, StoreError> {
        let ids = status_ids.to_vec();
        self.read(move |s, snap| {
            ids.iter().map(|&id| snap.contains_key(&s.like_pairs, key(&[user_id, id])).map_err(backend)).collect()
        })
        .await
    }
}
