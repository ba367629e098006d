//! Statuses: publishing and deleting a status with every list, counter and trend count that
//! hangs off it, in an order a crash cannot turn into something a reader trips over.
//!
//! **Publishing** ([`ScyllaFeedStore::publish`]):
//! 1. check the status it replies to or reposts is live (else `StatusNotFound`, nothing written);
//! 2. for a repost, claim `repost_claims (author, original)` by LWT, the claim holding the repost's
//!    record and fan-out job. A claim held by another repost that is live answers
//!    `AlreadyReposted`; one whose repost was deleted (its clean-up not done) is released; one
//!    whose repost was never written (its writer stopped, or is still writing) is finished from
//!    the claim, then answers `AlreadyReposted`;
//! 3. queue the fan-out job ([`super::fanout`]): a job whose status is never written fans out an
//!    id that readers skip;
//! 4. insert the status `IF NOT EXISTS`: the process whose insert applies is the one that counts it;
//! 5. its lists in one logged batch (its author's, its tags', the replied-to or reposted status's
//!    list), `USING TIMESTAMP` of the status id's milliseconds, and its trend bucket's listing;
//! 6. if step 4 applied: its author's count, the referenced status's reply or repost count, its
//!    tags' trend counts;
//! 7. for a repost, read the original again at LOCAL_SERIAL: deleted meanwhile, the repost is
//!    deleted as the original's deletion would have (`StatusNotFound`).
//!
//! A retry of an insert that stopped after step 4 finds the status and writes step 5 again
//! (idempotent; its job was queued before step 4); the counts of step 6 are what the recount
//! repairs.
//!
//! **Deleting** ([`ScyllaFeedStore::delete`]): `state` 0 → 1 by LWT (the one call that applies
//! answers the record; readers see a tombstone from here), then the lists (deleted `USING
//! TIMESTAMP` one above their put), the counts, the repost claim, every like, every repost (each
//! deleted the same way), the fan-out job, and `state` 1 → 2. A deletion meeting `state` 1 finishes
//! that work but the counts (the first deletion counted, or stopped before: the recount repairs).

use async_trait::async_trait;
use chatmesh_cql::values;

use super::{
    ATTEMPTS, Batch, Count, Owner, REPLIES_LIST, REPOSTS_LIST, ScyllaFeedStore, TAG_STATUSES_LIST, USER_STATUSES_LIST,
    all, at_us, backend, contended, count_of, from_json, statements::*, to_json,
};
use crate::{
    model::{Counts, Edge, FanoutJob, StatusKind, StatusRecord, Stored},
    store::{Statuses, StoreError},
};

/// `statuses.state`: published.
const LIVE: i32 = 0;
/// Deleted, its clean-up not finished.
const DELETING: i32 = 1;
/// Deleted and cleaned up.
const DELETED: i32 = 2;

/// A status row as read.
pub(super) struct StatusRow {
    pub(super) author_id: u64,
    pub(super) record: StatusRecord,
    pub(super) state: i32,
}

/// `repost_claims`: the repost id, its record and its fan-out job (JSON).
type ClaimRow = (i64, String, Option<String>);

/// The status a reply or repost names; a post names none.
fn referenced(status: &StatusRecord) -> Result<Option<u64>, StoreError> {
    match status.kind {
        StatusKind::Post => Ok(None),
        StatusKind::Reply | StatusKind::Repost => status.referenced_id.map(Some).ok_or_else(|| {
            StoreError::Backend(format!("status {}: a reply or repost names no status", status.status_id))
        }),
    }
}

/// The writes listing a status (`put`) or unlisting it: its author's list, its tags' lists, the
/// referenced status's reply or repost list.
fn status_rows(status: &StatusRecord, put: bool) -> Batch {
    let (id, author) = (status.status_id, status.author_id);
    let ts = at_us(id, i64::from(!put));
    let row = |list: &'static super::List, owner: Owner<'_>, other: u64| {
        if put { list.put(owner, id, other, ts) } else { list.delete(owner, id, other, ts) }
    };
    let mut batch = row(&USER_STATUSES_LIST, Owner::Id(author), 0);
    for tag in &status.tags {
        batch.extend(row(&TAG_STATUSES_LIST, Owner::Tag(tag), 0));
    }
    match (status.kind, status.referenced_id) {
        (StatusKind::Reply, Some(target)) => batch.extend(row(&REPLIES_LIST, Owner::Id(target), 0)),
        (StatusKind::Repost, Some(target)) => batch.extend(row(&REPOSTS_LIST, Owner::Id(target), author)),
        _ => {}
    }
    batch
}

impl ScyllaFeedStore {
    pub(super) async fn load_status(
        &self,
        stmt: &'static chatmesh_cql::Statement,
        status_id: u64,
    ) -> Result<Option<StatusRow>, StoreError> {
        let Some((author_id, record, state)) =
            self.cql.row::<(i64, String, i32)>(stmt, values![status_id]).await.map_err(backend)?
        else {
            return Ok(None);
        };
        let record = from_json(&record, format_args!("status {status_id}"))?;
        Ok(Some(StatusRow { author_id: chatmesh_cql::id(author_id), record, state }))
    }

    /// Whether a status is published and not deleted (`serial`: read at LOCAL_SERIAL).
    pub(super) async fn is_live(&self, status_id: u64, serial: bool) -> Result<bool, StoreError> {
        let stmt = if serial { &GET_STATUS_SERIAL } else { &GET_STATUS };
        Ok(self.load_status(stmt, status_id).await?.is_some_and(|row| row.state == LIVE))
    }

    /// Publishes a status (see the module doc for the order of its writes).
    pub(super) async fn publish(&self, status: &StatusRecord, fanout: Option<&FanoutJob>) -> Result<(), StoreError> {
        let id = status.status_id;
        if let Some(row) = self.load_status(&GET_STATUS, id).await? {
            // why: a retried insert (its answer lost) finds its status and writes its lists again
            // (its job was queued before the status); one already deleted stays so
            if row.state == LIVE {
                self.write(status_rows(&row.record, true)).await?;
                self.list_trend_bucket(&row.record).await?;
            }
            return Ok(());
        }
        let target = referenced(status)?;
        if let Some(target) = target
            && !self.is_live(target, false).await?
        {
            return Err(StoreError::StatusNotFound(target));
        }
        if let (StatusKind::Repost, Some(target)) = (status.kind, target) {
            self.claim_repost(status, fanout, target).await?;
        }
        if let Some(job) = fanout {
            self.enqueue(job).await?;
        }
        let values = values![id, status.author_id, to_json(status)?, LIVE];
        let applied = self.cql.lwt(&INSERT_STATUS, values).await.map_err(backend)?;
        self.write(status_rows(status, true)).await?;
        self.list_trend_bucket(status).await?;
        if applied {
            self.count_status(status, 1).await?;
        }
        if let (StatusKind::Repost, Some(target)) = (status.kind, target)
            && !self.is_live(target, true).await?
        {
            // why: the original was deleted after the check above, and its deletion may have
            // listed its reposts before this one was listed: this repost goes the same way
            Box::pin(self.delete(id)).await?;
            return Err(StoreError::StatusNotFound(target));
        }
        Ok(())
    }

    /// Claims the author's one repost of `target` for `status`.
    async fn claim_repost(
        &self,
        status: &StatusRecord,
        fanout: Option<&FanoutJob>,
        target: u64,
    ) -> Result<(), StoreError> {
        let (id, author) = (status.status_id, status.author_id);
        let job = fanout.map(to_json).transpose()?;
        for _ in 0..ATTEMPTS {
            let values = values![author, target, id, to_json(status)?, job.clone()];
            if self.cql.lwt(&CLAIM_REPOST, values).await.map_err(backend)? {
                return Ok(());
            }
            let claim: Option<ClaimRow> =
                self.cql.row(&GET_REPOST_CLAIM, values![author, target]).await.map_err(backend)?;
            // released meanwhile: claim again
            let Some((existing, record, job)) = claim else { continue };
            let existing = chatmesh_cql::id(existing);
            if existing == id {
                // an earlier attempt of this insert
                return Ok(());
            }
            match self.load_status(&GET_STATUS, existing).await? {
                Some(row) if row.state == LIVE => return Err(StoreError::AlreadyReposted(existing)),
                Some(_) => {
                    // why: a repost deleted whose clean-up has not released its claim yet
                    self.cql.lwt(&RELEASE_REPOST, values![author, target, existing]).await.map_err(backend)?;
                }
                None => {
                    // why: its writer stopped between the claim and the status (or is writing it
                    // now): the claim holds what that write needs, and every step is idempotent
                    let record: StatusRecord = from_json(&record, format_args!("repost claim {author}, {target}"))?;
                    let job: Option<FanoutJob> =
                        job.map(|j| from_json(&j, format_args!("repost claim {author}, {target}"))).transpose()?;
                    match Box::pin(self.publish(&record, job.as_ref())).await {
                        Ok(()) => return Err(StoreError::AlreadyReposted(existing)),
                        Err(StoreError::StatusNotFound(_)) => {
                            // why: the original is gone, so no repost of it may stand: the claim
                            // goes (a writer still finishing that repost deletes it on its check)
                            let values = values![author, target, existing];
                            self.cql.lwt(&RELEASE_REPOST, values).await.map_err(backend)?;
                            return Err(StoreError::StatusNotFound(target));
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(contended(&format!("repost claim {author}, {target}")))
    }

    /// Moves a status's counts by `delta`: its author's, the referenced status's, its tags'.
    async fn count_status(&self, status: &StatusRecord, delta: i64) -> Result<(), StoreError> {
        self.add(Count::UserStatuses, status.author_id, delta).await?;
        match (status.kind, status.referenced_id) {
            (StatusKind::Reply, Some(target)) => self.add(Count::StatusReplies, target, delta).await?,
            (StatusKind::Repost, Some(target)) => self.add(Count::StatusReposts, target, delta).await?,
            _ => {}
        }
        for tag in &status.tags {
            self.add_trend(status.trend_bucket, tag, status.status_id, delta).await?;
        }
        Ok(())
    }

    /// Deletes a status (see the module doc); the record if this call deleted it.
    pub(super) async fn delete(&self, status_id: u64) -> Result<Option<StatusRecord>, StoreError> {
        let Some(row) = self.load_status(&GET_STATUS, status_id).await? else { return Ok(None) };
        match row.state {
            LIVE => {
                let values = values![DELETING, status_id, LIVE];
                if !self.cql.lwt(&SET_STATUS_STATE, values).await.map_err(backend)? {
                    // deleted by another call meanwhile, which cleans up
                    return Ok(None);
                }
                self.clean_up(&row.record, true).await?;
                Ok(Some(row.record))
            }
            DELETING => {
                self.clean_up(&row.record, false).await?;
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Takes a deleted status out of everything that hangs off it; `count`: also its counts.
    async fn clean_up(&self, status: &StatusRecord, count: bool) -> Result<(), StoreError> {
        let id = status.status_id;
        self.write(status_rows(status, false)).await?;
        if count {
            self.count_status(status, -1).await?;
        }
        if let (StatusKind::Repost, Some(target)) = (status.kind, status.referenced_id) {
            let values = values![status.author_id, target, id];
            self.cql.lwt(&RELEASE_REPOST, values).await.map_err(backend)?;
        }
        let mut cursor = None;
        loop {
            let (likes, next) = self.walk(&super::STATUS_LIKES_LIST, Owner::Id(id), cursor).await?;
            for like in likes {
                self.end_like(like.other, id, Some(like.id)).await?;
            }
            match next {
                Some(_) => cursor = next,
                None => break,
            }
        }
        let mut cursor = None;
        loop {
            let (reposts, next) = self.walk(&REPOSTS_LIST, Owner::Id(id), cursor).await?;
            for repost in reposts {
                Box::pin(self.delete(repost.id)).await?;
            }
            match next {
                Some(_) => cursor = next,
                None => break,
            }
        }
        self.forget_job(id).await?;
        self.cql.lwt(&SET_STATUS_STATE, values![DELETED, id, DELETING]).await.map_err(backend)?;
        Ok(())
    }

    async fn stored(&self, status_id: u64) -> Result<Option<Stored>, StoreError> {
        let Some(row) = self.load_status(&GET_STATUS, status_id).await? else { return Ok(None) };
        if row.state != LIVE {
            return Ok(Some(Stored::Deleted { status_id, author_id: row.author_id }));
        }
        let (likes, reposts, replies) = self.status_counts(status_id).await?;
        let counts = Counts { likes: count_of(likes), reposts: count_of(reposts), replies: count_of(replies) };
        Ok(Some(Stored::Live(row.record, counts)))
    }
}

#[async_trait]
impl Statuses for ScyllaFeedStore {
    #[tracing::instrument(name = "feed_store.insert_status", skip_all, fields(db.system = "scylla"))]
    async fn insert_status(&self, status: &StatusRecord, fanout: Option<&FanoutJob>) -> Result<(), StoreError> {
        self.publish(status, fanout).await
    }

    #[tracing::instrument(name = "feed_store.get_statuses", skip_all, fields(db.system = "scylla"))]
    async fn get_statuses(&self, status_ids: &[u64]) -> Result<Vec<Option<Stored>>, StoreError> {
        all(status_ids.iter().map(|&id| self.stored(id)).collect()).await
    }

    #[tracing::instrument(name = "feed_store.delete_status", skip_all, fields(db.system = "scylla", %status_id))]
    async fn delete_status(&self, status_id: u64) -> Result<Option<StatusRecord>, StoreError> {
        self.delete(status_id).await
    }

    #[tracing::instrument(name = "feed_store.list_user_statuses", skip_all, fields(db.system = "scylla"))]
    async fn list_user_statuses(
        &self,
        user_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let page = self.list_page(&USER_STATUSES_LIST, Owner::Id(user_id), before, limit).await?;
        Ok(page.into_iter().map(|e| e.id).collect())
    }

    #[tracing::instrument(name = "feed_store.count_user_statuses", skip_all, fields(db.system = "scylla"))]
    async fn count_user_statuses(&self, user_id: u64) -> Result<u64, StoreError> {
        Ok(count_of(self.user_counts(user_id).await?.0))
    }

    #[tracing::instrument(name = "feed_store.list_replies", skip_all, fields(db.system = "scylla"))]
    async fn list_replies(&self, status_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<u64>, StoreError> {
        let page = self.list_page(&REPLIES_LIST, Owner::Id(status_id), before, limit).await?;
        Ok(page.into_iter().map(|e| e.id).collect())
    }

    #[tracing::instrument(name = "feed_store.list_tag_statuses", skip_all, fields(db.system = "scylla"))]
    async fn list_tag_statuses(&self, tag: &str, before: Option<u64>, limit: usize) -> Result<Vec<u64>, StoreError> {
        let page = self.list_page(&TAG_STATUSES_LIST, Owner::Tag(tag), before, limit).await?;
        Ok(page.into_iter().map(|e| e.id).collect())
    }

    #[tracing::instrument(name = "feed_store.list_reposts", skip_all, fields(db.system = "scylla"))]
    async fn list_reposts(&self, status_id: u64, before: Option<u64>, limit: usize) -> Result<Vec<Edge>, StoreError> {
        self.list_page(&REPOSTS_LIST, Owner::Id(status_id), before, limit).await
    }

    #[tracing::instrument(name = "feed_store.reposts_by", skip_all, fields(db.system = "scylla"))]
    async fn reposts_by(&self, user_id: u64, status_ids: &[u64]) -> Result<Vec<Option<u64>>, StoreError> {
        let claim = |status_id: u64| async move {
            let row: Option<ClaimRow> =
                self.cql.row(&GET_REPOST_CLAIM, values![user_id, status_id]).await.map_err(backend)?;
            let Some((repost_id, _, _)) = row else { return Ok(None) };
            let repost_id = chatmesh_cql::id(repost_id);
            // why: a claim whose repost is not live (being written, or left by a stopped writer)
            Ok(self.is_live(repost_id, false).await?.then_some(repost_id))
        };
        all(status_ids.iter().map(|&id| claim(id)).collect()).await
    }
}
