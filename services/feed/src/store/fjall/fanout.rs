//! Fan-out jobs on fjall: each job stored with its lease (owner and end), and indexed by lease
//! end so a claim reads only the jobs whose lease has run out (keyspaces in the parent module's
//! doc).

use async_trait::async_trait;
use fjall::Readable;
use serde::{Deserialize, Serialize};

use super::{Batch, FjallFeedStore, Keyspaces, StoreError, get_json, id_at, key, up_to};
use crate::{model::FanoutJob, store::FanoutQueue};

/// A job as stored: what remains, and who holds it until when (0, 0: never leased).
#[derive(Serialize, Deserialize)]
struct LeasedJob {
    job: FanoutJob,
    owner: u64,
    until_ms: u64,
}

impl Keyspaces {
    fn job(&self, r: &impl Readable, status_id: u64) -> Result<Option<LeasedJob>, StoreError> {
        get_json(r, &self.fanouts, &key(&[status_id]))
    }

    /// Stores a job leased to `owner` until `until_ms`, moving its lease index entry.
    pub(super) fn put_job(
        &self,
        b: &mut Batch<'_>,
        job: &FanoutJob,
        owner: u64,
        until_ms: u64,
    ) -> Result<(), StoreError> {
        let id = job.status_id;
        if let Some(old) = self.job(b.view(), id)?
            && old.until_ms != until_ms
        {
            b.delete(&self.fanout_leases, key(&[old.until_ms, id]))?;
        }
        b.put_json(&self.fanouts, key(&[id]), &LeasedJob { job: job.clone(), owner, until_ms })?;
        b.put(&self.fanout_leases, key(&[until_ms, id]), b"")
    }

    /// Forgets a job; `false` if it was gone.
    pub(super) fn forget_job(&self, b: &mut Batch<'_>, status_id: u64) -> Result<bool, StoreError> {
        let Some(old) = self.job(b.view(), status_id)? else { return Ok(false) };
        b.delete(&self.fanout_leases, key(&[old.until_ms, status_id]))?;
        b.delete(&self.fanouts, key(&[status_id]))
    }
}

#[async_trait]
impl FanoutQueue for FjallFeedStore {
    #[tracing::instrument(name = "feed_store.claim_fanouts", skip_all, fields(db.system = "fjall", %owner))]
    async fn claim_fanouts(
        &self,
        owner: u64,
        now_ms: u64,
        lease_until_ms: u64,
        limit: usize,
    ) -> Result<Vec<FanoutJob>, StoreError> {
        self.write(move |s, b| {
            let mut claimed = Vec::new();
            // why: a lease ending at `now_ms` has run out (held while now < until)
            for (k, _) in up_to(b.view(), &s.fanout_leases, now_ms, limit)? {
                let Some(stored) = s.job(b.view(), id_at(&k, 8)?)? else {
                    b.delete(&s.fanout_leases, k)?;
                    continue;
                };
                s.put_job(b, &stored.job, owner, lease_until_ms)?;
                claimed.push(stored.job);
            }
            Ok(claimed)
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.lease_fanout", skip_all, fields(db.system = "fjall", %status_id))]
    async fn lease_fanout(&self, status_id: u64, owner: u64, lease_until_ms: u64) -> Result<bool, StoreError> {
        self.write(move |s, b| {
            let Some(stored) = s.job(b.view(), status_id)? else { return Ok(false) };
            s.put_job(b, &stored.job, owner, lease_until_ms)?;
            Ok(true)
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.advance_fanout", skip_all, fields(db.system = "fjall", status_id = job.status_id))]
    async fn advance_fanout(&self, job: &FanoutJob) -> Result<(), StoreError> {
        let job = job.clone();
        self.write(move |s, b| {
            if let Some(stored) = s.job(b.view(), job.status_id)? {
                s.put_job(b, &job, stored.owner, stored.until_ms)?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(name = "feed_store.finish_fanout", skip_all, fields(db.system = "fjall", %status_id))]
    async fn finish_fanout(&self, status_id: u64) -> Result<(), StoreError> {
        self.write(move |s, b| s.forget_job(b, status_id).map(drop)).await
    }
}
