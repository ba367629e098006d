//! Trends on fjall: tag counts per bucket (written with the statuses), the last computed
//! snapshot in `meta`, and named leases (keyspaces in the parent module's doc).

use std::collections::HashMap;

use async_trait::async_trait;
use fjall::Readable;

use super::{FjallFeedStore, StoreError, TRENDS, backend, get_json, id_at, key, pairs};
use crate::{model::TrendsSnapshot, store::Trends};

#[async_trait]
impl Trends for FjallFeedStore {
    #[tracing::instrument(name = "feed_store.tag_counts", skip_all, fields(db.system = "fjall"))]
    async fn tag_counts(&self, from_bucket: u64, to_bucket: u64) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(move |s, snap| {
            let mut sums: HashMap<String, u64> = HashMap::new();
            for guard in snap.range(&s.buckets, key(&[from_bucket])..) {
                let (k, v) = guard.into_inner().map_err(backend)?;
                if id_at(&k, 0)? > to_bucket {
                    break;
                }
                let tag = String::from_utf8(k[8..].to_vec()).map_err(backend)?;
                *sums.entry(tag).or_default() += id_at(&v, 0)?;
            }
            Ok(sums.into_iter().filter(|&(_, n)| n > 0).collect())
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.prune_buckets", skip_all, fields(db.system = "fjall", %before_bucket))]
    async fn prune_buckets(&self, before_bucket: u64) -> Result<(), StoreError> {
        self.write(move |s, b| {
            for (k, _) in pairs(b.view().range(&s.buckets, ..key(&[before_bucket])), usize::MAX)? {
                b.delete(&s.buckets, k)?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.save_trends", skip_all, fields(db.system = "fjall"))]
    async fn save_trends(&self, snapshot: &TrendsSnapshot) -> Result<(), StoreError> {
        let snapshot = snapshot.clone();
        self.write(move |s, b| b.put_json(&s.meta, TRENDS, &snapshot)).await
    }

    #[tracing::instrument(name = "feed_store.load_trends", skip_all, fields(db.system = "fjall"))]
    async fn load_trends(&self) -> Result<Option<TrendsSnapshot>, StoreError> {
        self.read(|s, snap| get_json(snap, &s.meta, TRENDS.as_bytes())).await
    }

    #[tracing::instrument(name = "feed_store.try_lease", skip_all, fields(db.system = "fjall", %name, %owner))]
    async fn try_lease(&self, name: &str, owner: u64, now_ms: u64, until_ms: u64) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write(move |s, b| {
            if let Some(held) = b.get(&s.leases, name.as_bytes())?
                && id_at(&held, 0)? != owner
                && now_ms < id_at(&held, 8)?
            {
                return Ok(false);
            }
            b.put(&s.leases, name.into_bytes(), key(&[owner, until_ms]))?;
            Ok(true)
        })
        .await
    }
}
