//! Likes: the pair row `likes ((user_id, status_id))`, changed only by `IF generation = ?` on the
//! generation read (as the user store's follow pairs), its two lists (`likes_by_status`,
//! `likes_by_user`) written after it `USING TIMESTAMP` [`at_us`]`(like id, generation of the
//! change)`, then the two counts by compare-and-set, by the process whose change applied.
//!
//! A like checks its status is live first and again after its lists are written (at
//! LOCAL_SERIAL): a deletion it missed the first time either shows now, and the like takes itself
//! back, or comes after the lists were written, and the deletion's walk of the status's likes
//! takes it back. A listed like its pair no longer holds (taken back by the other side first) has
//! its list rows deleted at the pair's current generation, which no earlier write of them passes.

use async_trait::async_trait;
use chatmesh_cql::values;

use super::{
    ATTEMPTS, Batch, Count, Owner, STATUS_LIKES_LIST, ScyllaFeedStore, USER_LIKES_LIST, all, at_us, backend, contended,
    count_of, statements::*,
};
use crate::{
    model::Edge,
    store::{Likes, StoreError},
};

/// A like pair row as read: its like (None: not liked now) and generation (None: never written).
#[derive(Debug, Clone, Copy)]
struct Pair {
    like_id: Option<u64>,
    generation: Option<i64>,
}

impl Pair {
    /// The generation the pair's next change writes.
    fn next(&self) -> i64 {
        self.generation.unwrap_or(0) + 1
    }

    /// The generation of the change that wrote the pair as it is.
    fn current(&self) -> i64 {
        self.generation.unwrap_or(0)
    }
}

/// The like in both lists: written, or deleted, at `ts`.
fn like_rows(user_id: u64, status_id: u64, like_id: u64, ts: i64, put: bool) -> Batch {
    let (by_status, by_user) = (Owner::Id(status_id), Owner::Id(user_id));
    if put {
        let mut batch = STATUS_LIKES_LIST.put(by_status, like_id, user_id, ts);
        batch.extend(USER_LIKES_LIST.put(by_user, like_id, status_id, ts));
        batch
    } else {
        let mut batch = STATUS_LIKES_LIST.delete(by_status, like_id, user_id, ts);
        batch.extend(USER_LIKES_LIST.delete(by_user, like_id, status_id, ts));
        batch
    }
}

impl ScyllaFeedStore {
    async fn like_pair(&self, user_id: u64, status_id: u64) -> Result<Pair, StoreError> {
        let row: Option<(Option<i64>, Option<i64>)> =
            self.cql.row(&GET_LIKE, values![user_id, status_id]).await.map_err(backend)?;
        let (like_id, generation) = row.unwrap_or_default();
        Ok(Pair { like_id: like_id.map(chatmesh_cql::id), generation })
    }

    /// The pair's next change: `like_id` (None: unliked), if the pair is still as read.
    async fn set_like(
        &self,
        user_id: u64,
        status_id: u64,
        like_id: Option<u64>,
        pair: &Pair,
    ) -> Result<bool, StoreError> {
        let values = values![like_id, pair.next(), user_id, status_id, pair.generation];
        self.cql.lwt(&SET_LIKE, values).await.map_err(backend)
    }

    /// Takes back `user_id`'s like of `status_id` (only the one under `listed`, when given): its
    /// pair, lists and counts; whether this call took it back. A listed like the pair no longer
    /// holds has its list rows deleted.
    pub(super) async fn end_like(&self, user_id: u64, status_id: u64, listed: Option<u64>) -> Result<bool, StoreError> {
        for _ in 0..ATTEMPTS {
            let pair = self.like_pair(user_id, status_id).await?;
            let Some(like_id) = pair.like_id.filter(|l| listed.is_none_or(|x| x == *l)) else {
                if let Some(stale) = listed {
                    self.write(like_rows(user_id, status_id, stale, at_us(stale, pair.current()), false)).await?;
                }
                return Ok(false);
            };
            if !self.set_like(user_id, status_id, None, &pair).await? {
                continue;
            }
            self.write(like_rows(user_id, status_id, like_id, at_us(like_id, pair.next()), false)).await?;
            self.add(Count::StatusLikes, status_id, -1).await?;
            self.add(Count::UserLikes, user_id, -1).await?;
            return Ok(true);
        }
        Err(contended(&format!("like {user_id} -> {status_id}")))
    }
}

#[async_trait]
impl Likes for ScyllaFeedStore {
    #[tracing::instrument(name = "feed_store.like", skip_all, fields(db.system = "scylla"))]
    async fn like(&self, user_id: u64, status_id: u64, like_id: u64) -> Result<bool, StoreError> {
        if !self.is_live(status_id, false).await? {
            return Err(StoreError::StatusNotFound(status_id));
        }
        let mut generation = None;
        for _ in 0..ATTEMPTS {
            let pair = self.like_pair(user_id, status_id).await?;
            if let Some(existing) = pair.like_id {
                // why: finishes the lists of a like interrupted before them (idempotent)
                self.write(like_rows(user_id, status_id, existing, at_us(existing, pair.current()), true)).await?;
                return Ok(false);
            }
            if self.set_like(user_id, status_id, Some(like_id), &pair).await? {
                generation = Some(pair.next());
                break;
            }
        }
        let generation = generation.ok_or_else(|| contended(&format!("like {user_id} -> {status_id}")))?;
        self.write(like_rows(user_id, status_id, like_id, at_us(like_id, generation), true)).await?;
        self.add(Count::StatusLikes, status_id, 1).await?;
        self.add(Count::UserLikes, user_id, 1).await?;
        if !self.is_live(status_id, true).await? {
            // why: deleted after the check above; its walk of the likes may have passed this one
            self.end_like(user_id, status_id, Some(like_id)).await?;
            return Err(StoreError::StatusNotFound(status_id));
        }
        Ok(true)
    }

    #[tracing::instrument(name = "feed_store.unlike", skip_all, fields(db.system = "scylla"))]
    async fn unlike(&self, user_id: u64, status_id: u64) -> Result<bool, StoreError> {
        self.end_like(user_id, status_id, None).await
    }

    #[tracing::instrument(name = "feed_store.list_likes", skip_all, fields(db.system = "scylla"))]
    async fn list_likes(&self, status_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<Edge>, StoreError> {
        self.list_page(&STATUS_LIKES_LIST, Owner::Id(status_id), before, limit).await
    }

    #[tracing::instrument(name = "feed_store.list_user_likes", skip_all, fields(db.system = "scylla"))]
    async fn list_user_likes(&self, user_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<Edge>, StoreError> {
        self.list_page(&USER_LIKES_LIST, Owner::Id(user_id), before, limit).await
    }

    #[tracing::instrument(name = "feed_store.count_user_likes", skip_all, fields(db.system = "scylla"))]
    async fn count_user_likes(&self, user_id: u64) -> Result<u64, StoreError> {
        Ok(count_of(self.user_counts(user_id).await?.1))
    }

    #[tracing::instrument(name = "feed_store.liked_by", skip_all, fields(db.system = "scylla"))]
    async fn liked_by(&self, user_id: u64, status_ids: &[u64]) -> Result<Vec<bool>, StoreError> {
        let liked = |status_id: u64| async move { Ok(self.like_pair(user_id, status_id).await?.like_id.is_some()) };
        all(status_ids.iter().map(|&id| liked(id)).collect()).await
    }
}
