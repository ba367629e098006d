//! The golden files of what each operation runs (`src/store/golden/`): a scene set up by one
//! process, then the operation run by another one recording its calls, on a fixed clock and with
//! pages of 2 rows so paging shows.

use std::sync::{Arc, Mutex};

use chatmesh_cql::{Call, golden::taken};

use super::*;
use crate::{
    model::{Edge, FanoutJob, ScheduledRecord, TrendsSnapshot},
    store::conformance::reply,
};

fn store_at(cql: Cql, clock: fn() -> u64) -> ScyllaFeedStore {
    ScyllaFeedStore { clock, page: 2, ..ScyllaFeedStore::new(cql) }
}

/// A process setting the scene and one recording what the operation under test runs.
fn scene() -> (ScyllaFeedStore, ScyllaFeedStore, Arc<Mutex<Vec<Call>>>) {
    scene_at(|| NOW)
}

/// As [`scene`], the recording process's clock reading `clock`.
fn scene_at(clock: fn() -> u64) -> (ScyllaFeedStore, ScyllaFeedStore, Arc<Mutex<Vec<Call>>>) {
    let memory = MemoryCql::migrated();
    let setup = ScyllaFeedStore { clock: || NOW, ..ScyllaFeedStore::new(Cql::memory(memory.clone())) };
    let (cql, log) = Cql::memory(memory).recording();
    (setup, store_at(cql, clock), log)
}

// Statuses.

async fn insert_status() -> Vec<Call> {
    let (_, store, log) = scene();
    // the first job this process queues starts the queue's progress (already started: no)
    let status = tagged(10, 1, &["rust", "cql"], BUCKET);
    store.insert_status(&status, Some(&job(&status))).await.unwrap();
    taken(&log)
}

async fn insert_reply() -> Vec<Call> {
    let (setup, store, log) = scene();
    let root = post(10, 1);
    setup.insert_status(&root, None).await.unwrap();
    store.insert_status(&reply(11, 2, &root), None).await.unwrap();
    taken(&log)
}

async fn insert_repost() -> Vec<Call> {
    let (setup, store, log) = scene();
    let original = post(10, 1);
    setup.insert_status(&original, None).await.unwrap();
    // claimed, written, and the original read again at LOCAL_SERIAL
    let shared = repost(20, 2, &original);
    store.insert_status(&shared, Some(&job(&shared))).await.unwrap();
    taken(&log)
}

async fn insert_repost_again() -> Vec<Call> {
    let (setup, store, log) = scene();
    let original = post(10, 1);
    setup.insert_status(&original, None).await.unwrap();
    setup.insert_status(&repost(20, 2, &original), None).await.unwrap();
    assert_eq!(store.insert_status(&repost(21, 2, &original), None).await, Err(StoreError::AlreadyReposted(20)));
    taken(&log)
}

async fn insert_status_again() -> Vec<Call> {
    let (setup, store, log) = scene();
    let status = tagged(10, 1, &["rust"], BUCKET);
    setup.insert_status(&status, None).await.unwrap();
    // a retry whose first answer was lost: the idempotent writes again, no counts
    store.insert_status(&status, None).await.unwrap();
    taken(&log)
}

async fn get_statuses() -> Vec<Call> {
    let (setup, store, log) = scene();
    let (kept, gone) = (post(10, 1), post(20, 1));
    setup.insert_status(&kept, None).await.unwrap();
    setup.insert_status(&gone, None).await.unwrap();
    setup.like(2, 10, 100).await.unwrap();
    setup.delete_status(20).await.unwrap();
    let answers = store.get_statuses(&[10, 99, 20]).await.unwrap();
    assert_eq!(answers, [live(&kept, 1, 0, 0), None, deleted(&gone)]);
    taken(&log)
}

async fn delete_status() -> Vec<Call> {
    let (setup, store, log) = scene();
    let root = post(1, 9);
    setup.insert_status(&root, None).await.unwrap();
    let status = StatusRecord { tags: vec!["rust".into()], ..reply(10, 1, &root) };
    setup.insert_status(&status, Some(&job(&status))).await.unwrap();
    setup.like(2, 10, 100).await.unwrap();
    setup.insert_status(&repost(20, 3, &status), None).await.unwrap();
    // its lists and counts, its like, its repost (deleted the same way), its job
    assert_eq!(store.delete_status(10).await.unwrap(), Some(status));
    taken(&log)
}

async fn delete_status_again() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_status(&post(10, 1), None).await.unwrap();
    setup.delete_status(10).await.unwrap();
    assert_eq!(store.delete_status(10).await.unwrap(), None);
    taken(&log)
}

async fn list_user_statuses() -> Vec<Call> {
    let (setup, store, log) = scene();
    // 6-hour buckets 0, 1, 3 and 5: two pages of buckets
    for id in [at_hour(1, 1), at_hour(7, 1), at_hour(19, 1), at_hour(31, 1)] {
        setup.insert_status(&post(id, 1), None).await.unwrap();
    }
    let listed = store.list_user_statuses(1, Some(at_hour(31, 1)), 2).await.unwrap();
    assert_eq!(listed, [at_hour(19, 1), at_hour(7, 1)]);
    taken(&log)
}

async fn count_user_statuses() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_status(&post(10, 1), None).await.unwrap();
    assert_eq!(store.count_user_statuses(1).await.unwrap(), 1);
    taken(&log)
}

async fn list_replies() -> Vec<Call> {
    let (setup, store, log) = scene();
    let root = post(10, 1);
    setup.insert_status(&root, None).await.unwrap();
    setup.insert_status(&reply(11, 2, &root), None).await.unwrap();
    assert_eq!(store.list_replies(10, None, 10).await.unwrap(), [11]);
    taken(&log)
}

async fn list_tag_statuses() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_status(&tagged(10, 1, &["rust"], BUCKET), None).await.unwrap();
    assert_eq!(store.list_tag_statuses("rust", None, 10).await.unwrap(), [10]);
    taken(&log)
}

async fn list_reposts() -> Vec<Call> {
    let (setup, store, log) = scene();
    let original = post(10, 1);
    setup.insert_status(&original, None).await.unwrap();
    setup.insert_status(&repost(20, 2, &original), None).await.unwrap();
    assert_eq!(store.list_reposts(10, None, 10).await.unwrap(), [Edge { id: 20, other: 2 }]);
    taken(&log)
}

async fn reposts_by() -> Vec<Call> {
    let (setup, store, log) = scene();
    let original = post(10, 1);
    setup.insert_status(&original, None).await.unwrap();
    setup.insert_status(&repost(20, 2, &original), None).await.unwrap();
    assert_eq!(store.reposts_by(2, &[10, 99]).await.unwrap(), [Some(20), None]);
    taken(&log)
}

async fn recount_status() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_status(&post(10, 1), None).await.unwrap();
    setup.like(2, 10, 100).await.unwrap();
    // a count off by one (as a process stopped before its counts leaves it)
    assert!(setup.cql.lwt(&SET_STATUS_LIKES, values![0i64, 10u64, 1i64]).await.unwrap());
    store.recount_status(10).await.unwrap();
    assert_eq!(counted(&setup, 10).await.likes, 1);
    taken(&log)
}

async fn recount_user() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_status(&post(10, 1), None).await.unwrap();
    assert!(setup.cql.lwt(&SET_USER_STATUSES, values![2i64, 1u64, 1i64]).await.unwrap());
    store.recount_user(1).await.unwrap();
    assert_eq!(user_counted(&setup, 1).await, (1, 0));
    taken(&log)
}

// Likes.

async fn like() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_status(&post(10, 1), None).await.unwrap();
    // liked, the status read again at LOCAL_SERIAL; then a repeat rewrites the lists only
    assert!(store.like(2, 10, 100).await.unwrap());
    assert!(!store.like(2, 10, 101).await.unwrap());
    taken(&log)
}

async fn like_refused() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_status(&post(10, 1), None).await.unwrap();
    setup.delete_status(10).await.unwrap();
    assert_eq!(store.like(2, 10, 100).await, Err(StoreError::StatusNotFound(10)));
    taken(&log)
}

async fn unlike() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_status(&post(10, 1), None).await.unwrap();
    setup.like(2, 10, 100).await.unwrap();
    assert!(store.unlike(2, 10).await.unwrap());
    assert!(!store.unlike(2, 10).await.unwrap());
    taken(&log)
}

async fn list_likes() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_status(&post(10, 1), None).await.unwrap();
    setup.like(2, 10, 100).await.unwrap();
    setup.like(3, 10, 101).await.unwrap();
    assert_eq!(store.list_likes(10, Some(101), 10).await.unwrap(), [Edge { id: 100, other: 2 }]);
    taken(&log)
}

async fn list_user_likes() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_status(&post(10, 1), None).await.unwrap();
    setup.like(2, 10, 100).await.unwrap();
    assert_eq!(store.list_user_likes(2, None, 10).await.unwrap(), [Edge { id: 100, other: 10 }]);
    taken(&log)
}

async fn count_user_likes() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_status(&post(10, 1), None).await.unwrap();
    setup.like(2, 10, 100).await.unwrap();
    assert_eq!(store.count_user_likes(2).await.unwrap(), 1);
    taken(&log)
}

async fn liked_by() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_status(&post(10, 1), None).await.unwrap();
    setup.like(2, 10, 100).await.unwrap();
    assert_eq!(store.liked_by(2, &[10, 99]).await.unwrap(), [true, false]);
    taken(&log)
}

// Timelines.

fn entry(status_id: u64, poster_id: u64) -> TimelineEntry {
    TimelineEntry { status_id, poster_id }
}

async fn push() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.push(&[2], entry(10, 5), 100).await.unwrap();
    // reader 1 gets it; reader 2 has it already
    store.push(&[1, 2], entry(10, 5), 100).await.unwrap();
    taken(&log)
}

async fn push_entries() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.push(&[1], entry(10, 5), 2).await.unwrap();
    // past 2 + 10%: counted, trimmed to the newest 2 by one range delete
    store.push_entries(1, &[entry(30, 6), entry(20, 6), entry(10, 5)], 2).await.unwrap();
    assert_eq!(setup.page(1, None, 10).await.unwrap(), [entry(30, 6), entry(20, 6)]);
    taken(&log)
}

async fn page() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.push_entries(1, &[entry(10, 5), entry(20, 6)], 100).await.unwrap();
    assert_eq!(store.page(1, Some(20), 10).await.unwrap(), [entry(10, 5)]);
    taken(&log)
}

async fn remove() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.push_entries(1, &[entry(10, 5), entry(20, 6)], 100).await.unwrap();
    store.remove(1, &[10, 99]).await.unwrap();
    taken(&log)
}

async fn watermark() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.raise_watermark(1, 50).await.unwrap();
    assert_eq!(store.watermark(1).await.unwrap(), 50);
    taken(&log)
}

async fn raise_watermark() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.raise_watermark(1, 50).await.unwrap();
    store.raise_watermark(1, 70).await.unwrap();
    store.raise_watermark(1, 60).await.unwrap();
    taken(&log)
}

async fn mark_celebrity() -> Vec<Call> {
    let (_, store, log) = scene();
    store.mark_celebrity(3).await.unwrap();
    taken(&log)
}

async fn celebrities_among() -> Vec<Call> {
    let (setup, store, log) = scene();
    for id in [1, 3, 5] {
        setup.mark_celebrity(id).await.unwrap();
    }
    // read whole, in pages
    assert_eq!(store.celebrities_among(&[5, 2, 1]).await.unwrap(), [5, 1]);
    taken(&log)
}

// Fan-out jobs.

async fn claim_fanouts() -> Vec<Call> {
    // two minutes later: the jobs' bucket is closed
    let (setup, store, log) = scene_at(|| NOW + 120_000);
    for id in [10, 11] {
        let status = post(id, 1);
        setup.insert_status(&status, Some(&job(&status))).await.unwrap();
    }
    setup.finish_fanout(11).await.unwrap();
    // job 10 moved to the current bucket and leased; the closed bucket passed
    assert_eq!(store.claim_fanouts(7, 1000, 2000, 10).await.unwrap(), [job(&post(10, 1))]);
    taken(&log)
}

async fn lease_fanout() -> Vec<Call> {
    let (setup, store, log) = scene();
    let status = post(10, 1);
    setup.insert_status(&status, Some(&job(&status))).await.unwrap();
    assert!(store.lease_fanout(10, 7, 2000).await.unwrap());
    assert!(!store.lease_fanout(99, 7, 2000).await.unwrap());
    taken(&log)
}

async fn advance_fanout() -> Vec<Call> {
    let (setup, store, log) = scene();
    let status = post(10, 1);
    setup.insert_status(&status, Some(&job(&status))).await.unwrap();
    store.advance_fanout(&FanoutJob { page_token: "page 2".into(), pages_done: 1, ..job(&status) }).await.unwrap();
    taken(&log)
}

async fn finish_fanout() -> Vec<Call> {
    let (setup, store, log) = scene();
    let status = post(10, 1);
    setup.insert_status(&status, Some(&job(&status))).await.unwrap();
    store.finish_fanout(10).await.unwrap();
    store.finish_fanout(10).await.unwrap();
    taken(&log)
}

// Scheduled statuses.

async fn insert_scheduled() -> Vec<Call> {
    let (_, store, log) = scene();
    // the first one starts the due queue's progress at its bucket
    store.insert_scheduled(&scheduled(10, 1, 500)).await.unwrap();
    taken(&log)
}

async fn get_scheduled() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_scheduled(&scheduled(10, 1, 500)).await.unwrap();
    assert_eq!(store.get_scheduled(10).await.unwrap(), Some(scheduled(10, 1, 500)));
    taken(&log)
}

async fn list_scheduled() -> Vec<Call> {
    let (setup, store, log) = scene();
    for id in [10, 20, 30] {
        setup.insert_scheduled(&scheduled(id, 1, 500)).await.unwrap();
    }
    let ids = |records: Vec<ScheduledRecord>| records.into_iter().map(|r| r.scheduled_id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_scheduled(1, None, 3).await.unwrap()), [30, 20, 10]);
    taken(&log)
}

async fn due_scheduled() -> Vec<Call> {
    let (setup, store, log) = scene();
    // three due in one millisecond: a page of 2 cuts through them
    for id in [10, 20, 30] {
        setup.insert_scheduled(&scheduled(id, 1, 500)).await.unwrap();
    }
    setup.insert_scheduled(&scheduled(40, 1, 900)).await.unwrap();
    let due = store.due_scheduled(600, 10).await.unwrap();
    assert_eq!(due.iter().map(|r| r.scheduled_id).collect::<Vec<_>>(), [10, 20, 30]);
    taken(&log)
}

async fn cancel_scheduled() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_scheduled(&scheduled(10, 1, 500)).await.unwrap();
    assert!(store.cancel_scheduled(10).await.unwrap());
    assert!(!store.cancel_scheduled(10).await.unwrap());
    taken(&log)
}

async fn publish_scheduled() -> Vec<Call> {
    let (setup, store, log) = scene();
    let parent = post(5, 2);
    setup.insert_status(&parent, None).await.unwrap();
    let record = ScheduledRecord { in_reply_to: Some(5), ..scheduled(10, 1, 500) };
    setup.insert_scheduled(&record).await.unwrap();
    // the parent checked, the scheduled one taken by LWT, then the status inserted
    let status = StatusRecord { text: record.text.clone(), ..reply(100, 1, &parent) };
    assert!(store.publish_scheduled(10, &status, Some(&job(&status))).await.unwrap());
    taken(&log)
}

// Trends and leases.

async fn tag_counts() -> Vec<Call> {
    let (setup, store, log) = scene();
    for (id, bucket) in [(1, 1), (2, 2), (3, 3)] {
        setup.insert_status(&tagged(id, 1, &["a"], bucket), None).await.unwrap();
    }
    setup.insert_status(&tagged(4, 1, &["b"], 1), None).await.unwrap();
    // buckets listed in pages; each bucket's copies in one read
    let mut counts = store.tag_counts(0, 2).await.unwrap();
    counts.sort();
    assert_eq!(counts, [("a".to_owned(), 2), ("b".to_owned(), 1)]);
    taken(&log)
}

async fn prune_buckets() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_status(&tagged(1, 1, &["a"], 1), None).await.unwrap();
    setup.insert_status(&tagged(2, 1, &["a"], 2), None).await.unwrap();
    // each count of bucket 1 set to 0, its copy deleted at that version, the bucket unlisted
    store.prune_buckets(2).await.unwrap();
    assert_eq!(setup.tag_counts(0, 10).await.unwrap(), [("a".to_owned(), 1)]);
    taken(&log)
}

async fn save_trends() -> Vec<Call> {
    let (_, store, log) = scene();
    let snapshot = TrendsSnapshot { trends: vec![("rust".into(), 5)], refreshed_at_ms: NOW };
    store.save_trends(&snapshot).await.unwrap();
    taken(&log)
}

async fn load_trends() -> Vec<Call> {
    let (setup, store, log) = scene();
    let snapshot = TrendsSnapshot { trends: vec![("rust".into(), 5)], refreshed_at_ms: NOW };
    setup.save_trends(&snapshot).await.unwrap();
    assert_eq!(store.load_trends().await.unwrap(), Some(snapshot));
    taken(&log)
}

async fn try_lease() -> Vec<Call> {
    let (_, store, log) = scene();
    // created; renewed by its owner; refused to another while held; taken once it ran out
    assert!(store.try_lease("trends", 1, 100, 200).await.unwrap());
    assert!(store.try_lease("trends", 1, 150, 300).await.unwrap());
    assert!(!store.try_lease("trends", 2, 250, 400).await.unwrap());
    assert!(store.try_lease("trends", 2, 300, 400).await.unwrap());
    taken(&log)
}

chatmesh_cql::golden_files!(
    prefix: "",
    statements: super::STATEMENTS,
    also: [],
    [
    insert_status,
    insert_reply,
    insert_repost,
    insert_repost_again,
    insert_status_again,
    get_statuses,
    delete_status,
    delete_status_again,
    list_user_statuses,
    count_user_statuses,
    list_replies,
    list_tag_statuses,
    list_reposts,
    reposts_by,
    recount_status,
    recount_user,
    like,
    like_refused,
    unlike,
    list_likes,
    list_user_likes,
    count_user_likes,
    liked_by,
    push,
    push_entries,
    page,
    remove,
    watermark,
    raise_watermark,
    mark_celebrity,
    celebrities_among,
    claim_fanouts,
    lease_fanout,
    advance_fanout,
    finish_fanout,
    insert_scheduled,
    get_scheduled,
    list_scheduled,
    due_scheduled,
    cancel_scheduled,
    publish_scheduled,
    tag_counts,
    prune_buckets,
    save_trends,
    load_trends,
    try_lease,
    ]
);
