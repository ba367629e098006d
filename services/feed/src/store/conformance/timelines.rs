//! [`Timelines`](crate::store::Timelines): home timeline entries, their cap, the backfill
//! watermark and celebrities.

use super::ALL;
use crate::{model::TimelineEntry, store::FeedStore};

fn entry(status_id: u64, poster_id: u64) -> TimelineEntry {
    TimelineEntry { status_id, poster_id }
}

async fn ids(store: &dyn FeedStore, reader: u64) -> Vec<u64> {
    store.page(reader, None, ALL).await.unwrap().into_iter().map(|e| e.status_id).collect()
}

pub async fn pushing_an_entry_twice_keeps_the_first(store: &dyn FeedStore) {
    store.push(&[1, 2], entry(10, 5), 100).await.unwrap();
    store.push(&[1], entry(10, 6), 100).await.unwrap();
    store.push(&[2, 3], entry(11, 5), 100).await.unwrap();
    assert_eq!(store.page(1, None, ALL).await.unwrap(), [entry(10, 5)], "the entry already there is left as it is");
    assert_eq!(store.page(2, None, ALL).await.unwrap(), [entry(11, 5), entry(10, 5)]);
    assert_eq!(store.page(3, None, ALL).await.unwrap(), [entry(11, 5)]);
    assert!(store.page(4, None, ALL).await.unwrap().is_empty());
    store.push(&[], entry(12, 5), 100).await.unwrap();
}

pub async fn push_entries_adds_a_backfill_like_push(store: &dyn FeedStore) {
    store.push(&[1], entry(20, 5), 100).await.unwrap();
    store.push_entries(1, &[entry(30, 6), entry(20, 7), entry(10, 6)], 100).await.unwrap();
    assert_eq!(store.page(1, None, ALL).await.unwrap(), [entry(30, 6), entry(20, 5), entry(10, 6)]);
    store.push_entries(1, &[], 100).await.unwrap();
    assert_eq!(ids(store, 1).await.len(), 3);
}

pub async fn a_timeline_past_its_cap_and_a_tenth_is_trimmed_to_its_newest_cap(store: &dyn FeedStore) {
    const CAP: usize = 10;
    for id in 1..=11 {
        store.push(&[1], entry(id, 5), CAP).await.unwrap();
    }
    assert_eq!(ids(store, 1).await.len(), 11, "cap + 10% is not yet past it");
    store.push(&[1], entry(12, 5), CAP).await.unwrap();
    assert_eq!(ids(store, 1).await, (3..=12).rev().collect::<Vec<_>>(), "trimmed to the newest cap");
    store.push(&[1], entry(2, 5), CAP).await.unwrap();
    assert_eq!(ids(store, 1).await.len(), 11, "an older entry still counts");
    store.push(&[1], entry(12, 5), CAP).await.unwrap();
    assert_eq!(ids(store, 1).await.len(), 11, "a repeated entry counts once");

    let backfill: Vec<_> = (100..130).map(|id| entry(id, 6)).collect();
    store.push_entries(2, &backfill, CAP).await.unwrap();
    assert_eq!(ids(store, 2).await, (120..130).rev().collect::<Vec<_>>());
    store.push(&[2], entry(1, 6), CAP).await.unwrap();
    assert_eq!(ids(store, 2).await.len(), 11);
}

pub async fn timelines_page_newest_status_first(store: &dyn FeedStore) {
    store.push_entries(1, &[entry(30, 5), entry(10, 6), entry(50, 5), entry(20, 7), entry(40, 5)], 100).await.unwrap();
    assert_eq!(store.page(1, None, 2).await.unwrap(), [entry(50, 5), entry(40, 5)]);
    assert_eq!(store.page(1, Some(40), 2).await.unwrap(), [entry(30, 5), entry(20, 7)]);
    assert_eq!(store.page(1, Some(20), 2).await.unwrap(), [entry(10, 6)]);
    assert!(store.page(1, Some(10), 2).await.unwrap().is_empty());
    assert!(store.page(1, None, 0).await.unwrap().is_empty(), "a zero limit lists nothing");
}

pub async fn removed_entries_are_gone_and_absent_ones_skipped(store: &dyn FeedStore) {
    const CAP: usize = 10;
    for id in 1..=11 {
        store.push(&[1, 2], entry(id, 5), CAP).await.unwrap();
    }
    store.remove(1, &[3, 5, 99]).await.unwrap();
    store.remove(3, &[1]).await.unwrap();
    assert_eq!(ids(store, 1).await, [11, 10, 9, 8, 7, 6, 4, 2, 1]);
    assert_eq!(ids(store, 2).await.len(), 11, "other readers keep theirs");
    // the trim still counts right after the removal
    store.push_entries(1, &[entry(12, 5), entry(13, 5)], CAP).await.unwrap();
    assert_eq!(ids(store, 1).await.len(), 11);
    store.push(&[1], entry(14, 5), CAP).await.unwrap();
    assert_eq!(ids(store, 1).await, [14, 13, 12, 11, 10, 9, 8, 7, 6, 4]);
    store.push(&[1], entry(3, 5), CAP).await.unwrap();
    assert!(ids(store, 1).await.contains(&3), "a removed entry can come back");
}

pub async fn the_watermark_only_rises(store: &dyn FeedStore) {
    assert_eq!(store.watermark(1).await.unwrap(), 0, "none yet");
    store.raise_watermark(1, 50).await.unwrap();
    assert_eq!(store.watermark(1).await.unwrap(), 50);
    store.raise_watermark(1, 40).await.unwrap();
    assert_eq!(store.watermark(1).await.unwrap(), 50, "a lower value leaves it");
    store.raise_watermark(1, 70).await.unwrap();
    assert_eq!(store.watermark(1).await.unwrap(), 70);
    assert_eq!(store.watermark(2).await.unwrap(), 0, "each reader has their own");
}

pub async fn celebrities_are_marked_for_good_and_answered_in_the_order_asked(store: &dyn FeedStore) {
    assert!(store.celebrities_among(&[1, 2]).await.unwrap().is_empty());
    store.mark_celebrity(3).await.unwrap();
    store.mark_celebrity(1).await.unwrap();
    store.mark_celebrity(1).await.unwrap();
    assert_eq!(store.celebrities_among(&[1, 2, 3, 4]).await.unwrap(), [1, 3]);
    assert_eq!(store.celebrities_among(&[3, 9, 1]).await.unwrap(), [3, 1]);
    assert!(store.celebrities_among(&[]).await.unwrap().is_empty());
}
