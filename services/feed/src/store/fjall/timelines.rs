//! Home timelines and celebrities on fjall: entries keyed by (reader, status id), each reader's
//! entry count for trimming, and the backfill watermark (keyspaces in the parent module's doc).

use async_trait::async_trait;

use super::{Batch, FjallFeedStore, Keyspaces, StoreError, has, id_at, key, newest_first, number, oldest_first};
use crate::{model::TimelineEntry, store::Timelines};

impl Keyspaces {
    /// Adds the entries not yet there, then trims a timeline past `cap` + 10% to its newest `cap`.
    fn add_entries(
        &self,
        b: &mut Batch<'_>,
        reader: u64,
        entries: &[TimelineEntry],
        cap: usize,
    ) -> Result<(), StoreError> {
        let count_key = key(&[reader]);
        let before = number(b.view(), &self.timeline_counts, &count_key)?;
        let mut count = before;
        for entry in entries {
            let k = key(&[reader, entry.status_id]);
            if !has(b.view(), &self.timelines, &k)? {
                b.put(&self.timelines, k, entry.poster_id.to_be_bytes())?;
                count += 1;
            }
        }
        let cap = cap as u64;
        if count > cap + cap / 10 {
            let excess = usize::try_from(count - cap).unwrap_or(usize::MAX);
            for (k, _) in oldest_first(b.view(), &self.timelines, key(&[reader]), excess)? {
                if b.delete(&self.timelines, k)? {
                    count -= 1;
                }
            }
        }
        if count != before {
            b.set_number(&self.timeline_counts, count_key, count)?;
        }
        Ok(())
    }
}

#[async_trait]
impl Timelines for FjallFeedStore {
    #[tracing::instrument(name = "feed_store.push", skip_all, fields(db.system = "fjall", readers = readers.len()))]
    async fn push(&self, readers: &[u64], entry: TimelineEntry, cap: usize) -> Result<(), StoreError> {
        let readers = readers.to_vec();
        self.write(move |s, b| {
            for reader in readers {
                s.add_entries(b, reader, &[entry], cap)?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.push_entries", skip_all, fields(db.system = "fjall", %reader))]
    async fn push_entries(&self, reader: u64, entries: &[TimelineEntry], cap: usize) -> Result<(), StoreError> {
        let entries = entries.to_vec();
        self.write(move |s, b| s.add_entries(b, reader, &entries, cap)).await
    }

    #[tracing::instrument(name = "feed_store.page", skip_all, fields(db.system = "fjall", %reader))]
    async fn page(&self, reader: u64, before: Option<u64>, limit: usize) -> Result<Vec<TimelineEntry>, StoreError> {
        self.read(move |s, snap| {
            newest_first(snap, &s.timelines, key(&[reader]), before, limit)?
                .iter()
                .map(|(k, v)| Ok(TimelineEntry { status_id: id_at(k, 8)?, poster_id: id_at(v, 0)? }))
                .collect()
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.remove", skip_all, fields(db.system = "fjall", %reader))]
    async fn remove(&self, reader: u64, status_ids: &[u64]) -> Result<(), StoreError> {
        let ids = status_ids.to_vec();
        self.write(move |s, b| {
            let mut removed = 0;
            for id in ids {
                if b.delete(&s.timelines, key(&[reader, id]))? {
                    removed += 1;
                }
            }
            if removed > 0 {
                b.bump(&s.timeline_counts, key(&[reader]), -removed)?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.watermark", skip_all, fields(db.system = "fjall", %reader))]
    async fn watermark(&self, reader: u64) -> Result<u64, StoreError> {
        self.read(move |s, snap| number(snap, &s.watermarks, &key(&[reader]))).await
    }

    #[tracing::instrument(name = "feed_store.raise_watermark", skip_all, fields(db.system = "fjall", %reader))]
    async fn raise_watermark(&self, reader: u64, follow_id: u64) -> Result<(), StoreError> {
        self.write(move |s, b| {
            if follow_id > number(b.view(), &s.watermarks, &key(&[reader]))? {
                b.set_number(&s.watermarks, key(&[reader]), follow_id)?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.mark_celebrity", skip_all, fields(db.system = "fjall", %author_id))]
    async fn mark_celebrity(&self, author_id: u64) -> Result<(), StoreError> {
        self.write(move |s, b| {
            if !has(b.view(), &s.celebrities, &key(&[author_id]))? {
                b.put(&s.celebrities, key(&[author_id]), b"")?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.celebrities_among", skip_all, fields(db.system = "fjall"))]
    async fn celebrities_among(&self, user_ids: &[u64]) -> Result<Vec<u64>, StoreError> {
        let ids = user_ids.to_vec();
        self.read(move |s, snap| {
            let mut celebrities = Vec::new();
            for id in ids {
                if has(snap, &s.celebrities, &key(&[id]))? {
                    celebrities.push(id);
                }
            }
            Ok(celebrities)
        })
        .await
    }
}
