//! [`Trends`](crate::store::Trends): tag counts per bucket, the computed snapshot, and the lease
//! deciding who computes it.

use super::{concurrently, tagged};
use crate::{model::TrendsSnapshot, store::FeedStore};

async fn counts(store: &dyn FeedStore, from: u64, to: u64) -> Vec<(String, u64)> {
    let mut counts = store.tag_counts(from, to).await.unwrap();
    counts.sort();
    counts
}

fn tags(counts: &[(&str, u64)]) -> Vec<(String, u64)> {
    counts.iter().map(|&(t, n)| (t.to_owned(), n)).collect()
}

/// Statuses 1 to 4 of user 1: bucket 1 `a b`, bucket 2 `a`, bucket 3 `a c`, bucket 5 `b`.
async fn scene(store: &dyn FeedStore) {
    for (id, tags, bucket) in [(1, &["a", "b"][..], 1), (2, &["a"], 2), (3, &["a", "c"], 3), (4, &["b"], 5)] {
        store.insert_status(&tagged(id, 1, tags, bucket), None).await.unwrap();
    }
}

pub async fn tag_counts_sum_the_buckets_in_range(store: &dyn FeedStore) {
    assert!(store.tag_counts(0, u64::MAX).await.unwrap().is_empty());
    scene(store).await;
    assert_eq!(counts(store, 1, 3).await, tags(&[("a", 3), ("b", 1), ("c", 1)]));
    assert_eq!(counts(store, 2, 2).await, tags(&[("a", 1)]));
    assert_eq!(counts(store, 3, 5).await, tags(&[("a", 1), ("b", 1), ("c", 1)]));
    assert!(counts(store, 4, 4).await.is_empty());
    assert_eq!(counts(store, 0, u64::MAX).await, tags(&[("a", 3), ("b", 2), ("c", 1)]));
}

pub async fn a_deleted_status_takes_its_tags_back_from_its_bucket(store: &dyn FeedStore) {
    scene(store).await;
    store.delete_status(3).await.unwrap();
    assert!(counts(store, 3, 3).await.is_empty(), "tags whose sum is 0 are left out");
    assert_eq!(counts(store, 0, u64::MAX).await, tags(&[("a", 2), ("b", 2)]));
    store.delete_status(1).await.unwrap();
    store.delete_status(1).await.unwrap();
    assert_eq!(counts(store, 0, u64::MAX).await, tags(&[("a", 1), ("b", 1)]), "taken back once");
}

pub async fn pruning_forgets_the_buckets_before_the_one_given(store: &dyn FeedStore) {
    scene(store).await;
    store.prune_buckets(3).await.unwrap();
    assert!(counts(store, 0, 2).await.is_empty());
    assert_eq!(counts(store, 0, u64::MAX).await, tags(&[("a", 1), ("b", 1), ("c", 1)]));
    store.delete_status(1).await.unwrap();
    assert_eq!(counts(store, 0, u64::MAX).await, tags(&[("a", 1), ("b", 1), ("c", 1)]), "a pruned count stays gone");
    assert_eq!(store.list_tag_statuses("a", None, 10).await.unwrap(), [3, 2], "pruning leaves the tag lists");
    store.prune_buckets(u64::MAX).await.unwrap();
    assert!(counts(store, 0, u64::MAX).await.is_empty());
}

pub async fn the_trends_snapshot_saves_and_loads(store: &dyn FeedStore) {
    assert_eq!(store.load_trends().await.unwrap(), None, "none computed yet");
    let first = TrendsSnapshot { trends: tags(&[("rust", 5), ("a", 2), ("b", 2)]), refreshed_at_ms: 1000 };
    store.save_trends(&first).await.unwrap();
    assert_eq!(store.load_trends().await.unwrap(), Some(first));
    let next = TrendsSnapshot { trends: Vec::new(), refreshed_at_ms: 2000 };
    store.save_trends(&next).await.unwrap();
    assert_eq!(store.load_trends().await.unwrap(), Some(next), "the last one saved");
}

pub async fn a_lease_is_exclusive_until_it_runs_out(store: &dyn FeedStore) {
    assert!(store.try_lease("trends", 1, 100, 200).await.unwrap());
    assert!(!store.try_lease("trends", 2, 150, 250).await.unwrap(), "held by 1 until 200");
    assert!(store.try_lease("trends", 1, 150, 300).await.unwrap(), "its owner renews it");
    assert!(!store.try_lease("trends", 2, 250, 400).await.unwrap(), "renewed until 300");
    assert!(store.try_lease("other", 2, 250, 400).await.unwrap(), "another name is another lease");
    assert!(store.try_lease("trends", 2, 301, 400).await.unwrap(), "it ran out");
    assert!(!store.try_lease("trends", 1, 350, 500).await.unwrap());

    let winners = std::sync::Mutex::new(Vec::new());
    let winners_ref = &winners;
    concurrently((10..14u64).map(|owner| async move {
        if store.try_lease("race", owner, 100, 200).await.unwrap() {
            winners_ref.lock().unwrap().push(owner);
        }
    }))
    .await;
    assert_eq!(winners.into_inner().unwrap().len(), 1, "one of several racing owners takes a free lease");
}
