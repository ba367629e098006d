//! Scheduled statuses on fjall: the record, its author's list and the due index, and the
//! conditional publish (keyspaces in the parent module's doc).

use async_trait::async_trait;
use fjall::Readable;

use super::{Batch, FjallFeedStore, Keyspaces, StoreError, get_json, id_at, key, newest_first, up_to};
use crate::{
    model::{FanoutJob, ScheduledRecord, StatusRecord},
    store::Schedule,
};

impl Keyspaces {
    fn scheduled(&self, r: &impl Readable, scheduled_id: u64) -> Result<Option<ScheduledRecord>, StoreError> {
        get_json(r, &self.scheduled, &key(&[scheduled_id]))
    }

    /// Forgets a scheduled status with its index entries; `false` if it was gone.
    fn unschedule(&self, b: &mut Batch<'_>, scheduled_id: u64) -> Result<bool, StoreError> {
        let Some(old) = self.scheduled(b.view(), scheduled_id)? else { return Ok(false) };
        b.delete(&self.user_scheduled, key(&[old.author_id, scheduled_id]))?;
        b.delete(&self.due, key(&[old.publish_at_ms, scheduled_id]))?;
        b.delete(&self.scheduled, key(&[scheduled_id]))
    }

    /// The records of index keys whose second id is a scheduled id.
    fn records(
        &self,
        r: &impl Readable,
        keys: impl IntoIterator<Item = impl AsRef<[u8]>>,
    ) -> Result<Vec<ScheduledRecord>, StoreError> {
        let mut records = Vec::new();
        for k in keys {
            if let Some(record) = self.scheduled(r, id_at(k.as_ref(), 8)?)? {
                records.push(record);
            }
        }
        Ok(records)
    }
}

#[async_trait]
impl Schedule for FjallFeedStore {
    #[tracing::instrument(name = "feed_store.insert_scheduled", skip_all, fields(db.system = "fjall"))]
    async fn insert_scheduled(&self, scheduled: &ScheduledRecord) -> Result<(), StoreError> {
        let scheduled = scheduled.clone();
        self.write(move |s, b| {
            let id = scheduled.scheduled_id;
            s.unschedule(b, id)?;
            b.put_json(&s.scheduled, key(&[id]), &scheduled)?;
            b.put(&s.user_scheduled, key(&[scheduled.author_id, id]), b"")?;
            b.put(&s.due, key(&[scheduled.publish_at_ms, id]), b"")
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.get_scheduled", skip_all, fields(db.system = "fjall", %scheduled_id))]
    async fn get_scheduled(&self, scheduled_id: u64) -> Result<Option<ScheduledRecord>, StoreError> {
        self.read(move |s, snap| s.scheduled(snap, scheduled_id)).await
    }

    #[tracing::instrument(name = "feed_store.list_scheduled", skip_all, fields(db.system = "fjall"))]
    async fn list_scheduled(
        &self,
        user_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ScheduledRecord>, StoreError> {
        self.read(move |s, snap| {
            let keys = newest_first(snap, &s.user_scheduled, key(&[user_id]), before, limit)?;
            s.records(snap, keys.into_iter().map(|(k, _)| k))
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.due_scheduled", skip_all, fields(db.system = "fjall"))]
    async fn due_scheduled(&self, now_ms: u64, limit: usize) -> Result<Vec<ScheduledRecord>, StoreError> {
        self.read(move |s, snap| {
            let keys = up_to(snap, &s.due, now_ms, limit)?;
            s.records(snap, keys.into_iter().map(|(k, _)| k))
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.cancel_scheduled", skip_all, fields(db.system = "fjall", %scheduled_id))]
    async fn cancel_scheduled(&self, scheduled_id: u64) -> Result<bool, StoreError> {
        self.write(move |s, b| s.unschedule(b, scheduled_id)).await
    }

    #[tracing::instrument(name = "feed_store.publish_scheduled", skip_all, fields(db.system = "fjall", %scheduled_id))]
    async fn publish_scheduled(
        &self,
        scheduled_id: u64,
        status: &StatusRecord,
        fanout: Option<&FanoutJob>,
    ) -> Result<bool, StoreError> {
        let (status, fanout) = (status.clone(), fanout.cloned());
        self.write(move |s, b| {
            if !s.unschedule(b, scheduled_id)? {
                return Ok(false);
            }
            // why: a refusal here undoes the unscheduling too (the whole write is undone)
            s.publish(b, &status, fanout.as_ref())?;
            Ok(true)
        })
        .await
    }
}
