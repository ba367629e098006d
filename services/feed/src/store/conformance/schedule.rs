//! [`Schedule`](crate::store::Schedule): statuses scheduled for later and their publication,
//! exactly once.

use super::{ALL, concurrently, job, post, reply, scheduled, stored, user_counted};
use crate::{
    model::{ScheduledRecord, StatusRecord},
    store::{FeedStore, StoreError},
};

fn ids(records: Vec<ScheduledRecord>) -> Vec<u64> {
    records.into_iter().map(|r| r.scheduled_id).collect()
}

/// The status `scheduled_id` publishes as, under `status_id`.
fn publishing(status_id: u64, record: &ScheduledRecord) -> StatusRecord {
    StatusRecord { text: record.text.clone(), ..post(status_id, record.author_id) }
}

pub async fn scheduled_statuses_read_back_and_list_newest_scheduled_first(store: &dyn FeedStore) {
    for id in [10, 30, 20] {
        store.insert_scheduled(&scheduled(id, 1, 5000 - id)).await.unwrap();
    }
    store.insert_scheduled(&scheduled(40, 2, 100)).await.unwrap();
    assert_eq!(store.get_scheduled(10).await.unwrap(), Some(scheduled(10, 1, 4990)));
    assert_eq!(store.get_scheduled(99).await.unwrap(), None);
    assert_eq!(ids(store.list_scheduled(1, None, 2).await.unwrap()), [30, 20]);
    assert_eq!(ids(store.list_scheduled(1, Some(20), 2).await.unwrap()), [10]);
    assert!(store.list_scheduled(1, Some(10), 2).await.unwrap().is_empty());
    assert_eq!(ids(store.list_scheduled(2, None, ALL).await.unwrap()), [40]);
    assert!(store.list_scheduled(3, None, ALL).await.unwrap().is_empty());
}

pub async fn due_scheduled_answers_those_due_soonest_first(store: &dyn FeedStore) {
    store.insert_scheduled(&scheduled(10, 1, 500)).await.unwrap();
    store.insert_scheduled(&scheduled(20, 2, 300)).await.unwrap();
    store.insert_scheduled(&scheduled(30, 1, 900)).await.unwrap();
    assert_eq!(ids(store.due_scheduled(500, ALL).await.unwrap()), [20, 10], "due at or before now");
    assert_eq!(ids(store.due_scheduled(500, 1).await.unwrap()), [20]);
    assert!(store.due_scheduled(299, ALL).await.unwrap().is_empty());
    assert_eq!(ids(store.due_scheduled(u64::MAX, ALL).await.unwrap()), [20, 10, 30]);
}

pub async fn a_cancelled_status_is_gone_once_and_never_publishes(store: &dyn FeedStore) {
    let record = scheduled(10, 1, 500);
    store.insert_scheduled(&record).await.unwrap();
    assert!(store.cancel_scheduled(10).await.unwrap());
    assert!(!store.cancel_scheduled(10).await.unwrap(), "cancelling twice is a no-op");
    assert!(!store.cancel_scheduled(99).await.unwrap());
    assert_eq!(store.get_scheduled(10).await.unwrap(), None);
    assert!(store.list_scheduled(1, None, ALL).await.unwrap().is_empty());
    assert!(store.due_scheduled(u64::MAX, ALL).await.unwrap().is_empty());
    let status = publishing(100, &record);
    assert!(!store.publish_scheduled(10, &status, Some(&job(&status))).await.unwrap());
    assert_eq!(stored(store, 100).await, None, "nothing written");
    assert_eq!(user_counted(store, 1).await, (0, 0));
    assert!(store.claim_fanouts(7, 1000, 2000, ALL).await.unwrap().is_empty());
}

pub async fn publish_scheduled_publishes_once_under_two_concurrent_publishers(store: &dyn FeedStore) {
    let record = scheduled(10, 1, 500);
    store.insert_scheduled(&record).await.unwrap();
    let published = std::sync::Mutex::new(Vec::new());
    let published_ref = &published;
    let record_ref = &record;
    concurrently([100, 101].map(|status_id| async move {
        let status = StatusRecord { tags: vec!["soon".into()], ..publishing(status_id, record_ref) };
        if store.publish_scheduled(10, &status, Some(&job(&status))).await.unwrap() {
            published_ref.lock().unwrap().push(status_id);
        }
    }))
    .await;
    let published = published.into_inner().unwrap();
    assert_eq!(published.len(), 1, "one publisher wins: {published:?}");
    let (winner, loser) = if published[0] == 100 { (100, 101) } else { (101, 100) };
    assert!(stored(store, winner).await.is_some());
    assert_eq!(stored(store, loser).await, None);
    assert_eq!(store.list_user_statuses(1, None, ALL).await.unwrap(), [winner]);
    assert_eq!(user_counted(store, 1).await, (1, 0));
    assert_eq!(store.list_tag_statuses("soon", None, ALL).await.unwrap(), [winner]);
    assert_eq!(store.get_scheduled(10).await.unwrap(), None);
    assert!(store.list_scheduled(1, None, ALL).await.unwrap().is_empty());
    assert!(store.due_scheduled(u64::MAX, ALL).await.unwrap().is_empty());
    let jobs = store.claim_fanouts(7, 1000, 2000, ALL).await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.status_id).collect::<Vec<_>>(), [winner], "one fan-out, the winner's");
}

pub async fn a_refused_publish_keeps_the_scheduled_status(store: &dyn FeedStore) {
    let parent = post(5, 2);
    store.insert_status(&parent, None).await.unwrap();
    let record = ScheduledRecord { in_reply_to: Some(5), ..scheduled(10, 1, 500) };
    store.insert_scheduled(&record).await.unwrap();
    store.delete_status(5).await.unwrap();
    let status = StatusRecord { text: record.text.clone(), ..reply(100, 1, &parent) };
    assert_eq!(store.publish_scheduled(10, &status, Some(&job(&status))).await, Err(StoreError::StatusNotFound(5)));
    assert_eq!(store.get_scheduled(10).await.unwrap(), Some(record), "nothing written, nothing taken");
    assert_eq!(ids(store.due_scheduled(500, ALL).await.unwrap()), [10]);
    assert_eq!(ids(store.list_scheduled(1, None, ALL).await.unwrap()), [10]);
    assert_eq!(stored(store, 100).await, None);
    assert_eq!(user_counted(store, 1).await, (0, 0));
    assert!(store.claim_fanouts(7, 1000, 2000, ALL).await.unwrap().is_empty());
}
