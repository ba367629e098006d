//! [`FanoutQueue`](crate::store::FanoutQueue): pending fan-out jobs, leased to one worker at a
//! time.

use super::{ALL, concurrently, job, post};
use crate::{
    model::{FanoutJob, StatusRecord},
    store::FeedStore,
};

/// Publishes `status` with its fan-out job and answers the job.
async fn published(store: &dyn FeedStore, status: &StatusRecord) -> FanoutJob {
    let job = job(status);
    store.insert_status(status, Some(&job)).await.unwrap();
    job
}

fn sorted(mut jobs: Vec<FanoutJob>) -> Vec<u64> {
    let mut ids: Vec<u64> = jobs.drain(..).map(|j| j.status_id).collect();
    ids.sort_unstable();
    ids
}

pub async fn a_job_published_with_its_status_waits_unleased_for_a_claim(store: &dyn FeedStore) {
    let job = published(store, &post(10, 1)).await;
    store.insert_status(&post(11, 1), None).await.unwrap();
    assert_eq!(store.claim_fanouts(7, 1000, 2000, ALL).await.unwrap(), [job], "only the status given a job has one");
    assert!(store.claim_fanouts(8, 1000, 2000, ALL).await.unwrap().is_empty(), "the claim leased it");
}

pub async fn a_leased_job_is_not_claimed_again_until_its_lease_runs_out(store: &dyn FeedStore) {
    let job = published(store, &post(10, 1)).await;
    assert!(store.lease_fanout(10, 7, 2000).await.unwrap(), "its inserter leases it");
    assert!(store.claim_fanouts(8, 1500, 3000, ALL).await.unwrap().is_empty(), "held until 2000");
    assert_eq!(store.claim_fanouts(8, 2500, 5000, ALL).await.unwrap(), std::slice::from_ref(&job), "the lease ran out");
    assert!(store.claim_fanouts(9, 3000, 6000, ALL).await.unwrap().is_empty(), "owner 8 holds it now");
    assert_eq!(store.claim_fanouts(9, 5001, 6000, ALL).await.unwrap(), [job]);
}

pub async fn concurrent_claims_lease_each_job_to_one_owner_up_to_the_limit(store: &dyn FeedStore) {
    for id in 10..15 {
        published(store, &post(id, 1)).await;
    }
    assert!(store.claim_fanouts(6, 1000, 2000, 0).await.unwrap().is_empty(), "a zero limit claims nothing");
    let claimed = std::sync::Mutex::new(Vec::new());
    let claimed_ref = &claimed;
    concurrently((7..9u64).map(|owner| async move {
        let jobs = store.claim_fanouts(owner, 1000, 2000, 3).await.unwrap();
        assert!(jobs.len() <= 3, "at most the limit");
        claimed_ref.lock().unwrap().extend(jobs);
    }))
    .await;
    assert_eq!(sorted(claimed.into_inner().unwrap()), [10, 11, 12, 13, 14], "each job went to one owner");
    assert!(store.claim_fanouts(9, 1999, 3000, ALL).await.unwrap().is_empty());
    assert_eq!(
        sorted(store.claim_fanouts(9, 2001, 3000, 2).await.unwrap()).len(),
        2,
        "expired leases, up to the limit"
    );
}

pub async fn advancing_a_job_records_its_progress_and_keeps_its_lease(store: &dyn FeedStore) {
    let job = published(store, &post(10, 1)).await;
    assert!(store.lease_fanout(10, 7, 2000).await.unwrap());
    let progressed = FanoutJob { page_token: "page 2".into(), pages_done: 1, ..job };
    store.advance_fanout(&progressed).await.unwrap();
    assert!(store.claim_fanouts(8, 1500, 3000, ALL).await.unwrap().is_empty(), "still leased");
    assert_eq!(store.claim_fanouts(8, 2500, 3000, ALL).await.unwrap(), [progressed], "taken up where it stopped");
}

pub async fn a_finished_or_deleted_job_stays_gone(store: &dyn FeedStore) {
    let finished = published(store, &post(10, 1)).await;
    let deleted = published(store, &post(11, 1)).await;
    assert!(store.lease_fanout(10, 7, 2000).await.unwrap());
    store.finish_fanout(10).await.unwrap();
    store.delete_status(11).await.unwrap();
    for job in [finished, deleted] {
        store.advance_fanout(&FanoutJob { pages_done: 1, ..job.clone() }).await.unwrap();
        assert!(!store.lease_fanout(job.status_id, 7, 2000).await.unwrap(), "job {} is gone", job.status_id);
    }
    assert!(store.claim_fanouts(8, 5000, 6000, ALL).await.unwrap().is_empty(), "an advance resurrects nothing");
    store.finish_fanout(10).await.expect("finishing twice is a no-op");
    assert!(!store.lease_fanout(99, 7, 2000).await.unwrap(), "a job never written");
}
