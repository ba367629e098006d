//! The ScyllaDB feed store on the schema-checked in-memory executor: the conformance suite (and on
//! a real server when `CHATMESH_TEST_SCYLLA` is set), the golden files of what each operation runs
//! ([`golden`], `src/store/golden/`), and the races, interruptions and queue walks the design is
//! built for.

mod golden;

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use chatmesh_cql::MemoryCql;

use super::{fanout::FANOUT_QUEUE, *};
use crate::{
    model::{StatusRecord, TimelineEntry},
    store::{
        FanoutQueue, Likes, Schedule, Statuses, StoreError, Timelines, Trends,
        conformance::{
            ALL, BUCKET, counted, deleted, job, live, post, repost, scheduled, stored, tagged, user_counted,
        },
    },
};

mod memory {
    use super::*;

    crate::feed_store_suite!(|| ((), ScyllaFeedStore::new(Cql::memory(MemoryCql::migrated()))));
}

mod scylla {
    use super::*;

    // skipped with a printed "skipped: CHATMESH_TEST_SCYLLA not set" unless a server is configured
    crate::feed_store_suite!(async |case: &'static str| async move {
        let cql = chatmesh_cql::migrate::test_keyspace(case).await?;
        Some(((), ScyllaFeedStore::new(cql)))
    });
}

/// 2023-11-14T22:13:20Z.
const NOW: u64 = 1_700_000_000_000;

/// A status id minted `hours` after the id epoch (its n-th that millisecond).
fn at_hour(hours: u64, n: u64) -> u64 {
    ((hours * 3_600_000) << 22) | n
}

/// Two processes on one executor.
fn pods() -> (Arc<MemoryCql>, ScyllaFeedStore, ScyllaFeedStore) {
    let memory = MemoryCql::migrated();
    let (a, b) = (ScyllaFeedStore::new(memory.client(0)), ScyllaFeedStore::new(memory.client(0)));
    (memory, a, b)
}

#[tokio::test]
async fn every_statement_parses_against_the_migrations() {
    ScyllaFeedStore::new(Cql::memory(MemoryCql::migrated())).prepare().await.unwrap();
}

#[test]
fn no_lightweight_transaction_sets_one_row_of_a_partition_holding_many() {
    let coarse = MemoryCql::migrated().lint(STATEMENTS).unwrap();
    assert!(coarse.is_empty(), "{}", coarse.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
}

#[test]
fn list_rows_are_deleted_later_than_they_were_put() {
    let id = at_hour(5, 7);
    assert_eq!(at_us(id, 0), (chatmesh_platform::ids::EPOCH_MS as i64 + 5 * 3_600_000) * 1000);
    assert!(at_us(id, 1) > at_us(id, 0));
}

#[test]
fn a_queue_bucket_closes_late_after_its_end() {
    let (width, late) = (FANOUT_QUEUE.width_ms, fanout::LATE_MS);
    assert!(!FANOUT_QUEUE.closed(0, width + late - 1));
    assert!(FANOUT_QUEUE.closed(0, width + late));
    assert_eq!(FANOUT_QUEUE.first_open(width + late), 1);
    assert_eq!(FANOUT_QUEUE.first_open(0), 0, "nothing is closed before the first bucket ends");
}

// ---- races: a like or repost written while its status is deleted

#[tokio::test]
async fn a_like_stalled_before_its_lists_is_taken_back_when_its_status_is_deleted_meanwhile() {
    let (memory, pod_a, pod_b) = pods();
    pod_a.insert_status(&post(10, 1), None).await.unwrap();
    let mut pause = memory.pause_before(&PUT_STATUS_LIKE);
    let liker = pod_a.clone();
    let like = tokio::spawn(async move { liker.like(2, 10, 100).await });
    pause.reached().await;
    // the like's pair applied, its lists not written: the deletion's walk finds no like
    assert!(pod_b.delete_status(10).await.unwrap().is_some());
    pause.release();
    assert_eq!(like.await.unwrap(), Err(StoreError::StatusNotFound(10)), "the like saw the deletion afterwards");
    assert!(pod_b.list_likes(10, None, ALL).await.unwrap().is_empty());
    assert!(pod_b.list_user_likes(2, None, ALL).await.unwrap().is_empty());
    assert_eq!(user_counted(&pod_b, 2).await, (0, 0));
    assert_eq!(pod_b.liked_by(2, &[10]).await.unwrap(), [false]);
}

#[tokio::test]
async fn a_repost_stalled_before_its_lists_goes_with_its_original_deleted_meanwhile() {
    let (memory, pod_a, pod_b) = pods();
    let original = post(10, 1);
    pod_a.insert_status(&original, None).await.unwrap();
    let shared = repost(20, 2, &original);
    let mut pause = memory.pause_before(&PUT_REPOST);
    let reposter = pod_a.clone();
    let (status, fanout) = (shared.clone(), job(&shared));
    let insert = tokio::spawn(async move { reposter.insert_status(&status, Some(&fanout)).await });
    pause.reached().await;
    assert!(pod_b.delete_status(10).await.unwrap().is_some());
    pause.release();
    assert_eq!(insert.await.unwrap(), Err(StoreError::StatusNotFound(10)));
    assert_eq!(stored(&pod_b, 20).await, deleted(&shared), "the repost went the original's way");
    assert!(pod_b.list_reposts(10, None, ALL).await.unwrap().is_empty());
    assert_eq!(pod_b.reposts_by(2, &[10]).await.unwrap(), [None]);
    assert_eq!(user_counted(&pod_b, 2).await, (0, 0));
    assert!(pod_b.claim_fanouts(7, 1000, 2000, ALL).await.unwrap().is_empty(), "its fan-out went too");
}

#[tokio::test]
async fn a_like_whose_list_write_stalls_loses_to_the_unlike_after_it() {
    let (memory, pod_a, pod_b) = pods();
    pod_a.insert_status(&post(10, 1), None).await.unwrap();
    let mut pause = memory.pause_before(&PUT_STATUS_LIKE);
    let liker = pod_a.clone();
    let like = tokio::spawn(async move { liker.like(2, 10, 100).await });
    pause.reached().await;
    assert!(pod_b.unlike(2, 10).await.unwrap(), "the pair holds the like: the unlike takes it");
    pause.release();
    assert_eq!(like.await.unwrap(), Ok(true));
    // why: the lists' delete carries the unlike's generation, above the like's put
    assert!(pod_b.list_likes(10, None, ALL).await.unwrap().is_empty(), "the stalled write stays deleted");
    assert!(pod_b.list_user_likes(2, None, ALL).await.unwrap().is_empty());
    assert_eq!(counted(&pod_b, 10).await.likes, 0);
    assert_eq!(user_counted(&pod_b, 2).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn likes_reposts_and_deletes_racing_on_threads_and_skewed_pods_keep_counts_equal_to_the_lists() {
    const USERS: u64 = 8;
    let memory = MemoryCql::migrated();
    // three processes whose clocks disagree by seconds: list rows carry their change's timestamp,
    // pairs and counts their Paxos ballots, so no clock decides anything
    let pods: Vec<ScyllaFeedStore> =
        [-2_000, 0, 1_500].into_iter().map(|skew| ScyllaFeedStore::new(memory.client(skew))).collect();
    let (target, other) = (post(1, 100), post(2, 100));
    pods[0].insert_status(&target, None).await.unwrap();
    pods[0].insert_status(&other, None).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..400u64 {
        let store = pods[i as usize % pods.len()].clone();
        let target = target.clone();
        // why statement by statement: each call runs on a worker thread, so the calls of
        // different tasks interleave between their statements
        tasks.spawn(async move {
            let user = 1 + i % USERS;
            let id = 1000 + i;
            if i == 200 {
                store.delete_status(1).await.unwrap();
                return;
            }
            match i % 5 {
                0 | 1 => match store.like(user, 1, id).await {
                    Ok(_) | Err(StoreError::StatusNotFound(1)) => {}
                    Err(e) => panic!("like: {e}"),
                },
                2 => {
                    store.unlike(user, 1).await.unwrap();
                    store.like(user, 2, id).await.unwrap();
                }
                3 => match store.insert_status(&repost(id, user, &target), Some(&job(&target))).await {
                    Ok(()) | Err(StoreError::AlreadyReposted(_) | StoreError::StatusNotFound(1)) => {}
                    Err(e) => panic!("repost: {e}"),
                },
                _ => {
                    if let Some(repost_id) = store.reposts_by(user, &[1]).await.unwrap()[0] {
                        store.delete_status(repost_id).await.unwrap();
                    }
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let store = &pods[1];
    assert_eq!(stored(store, 1).await, deleted(&target));
    assert!(store.list_likes(1, None, ALL).await.unwrap().is_empty(), "no like outlives its status");
    assert!(store.list_reposts(1, None, ALL).await.unwrap().is_empty(), "no repost outlives its original");
    counted(store, 2).await;
    for user in 1..=USERS {
        user_counted(store, user).await;
        assert!(store.list_user_likes(user, None, ALL).await.unwrap().iter().all(|e| e.other == 2), "user {user}");
        assert_eq!(store.liked_by(user, &[1]).await.unwrap(), [false], "user {user}");
        assert_eq!(store.reposts_by(user, &[1]).await.unwrap(), [None], "user {user}");
        assert!(store.list_user_statuses(user, None, ALL).await.unwrap().is_empty(), "user {user}: reposts went");
    }
}

// ---- interruptions: what a stopped process leaves, and who finishes it

#[tokio::test]
async fn an_insert_stopped_after_its_status_is_finished_by_its_retry_and_counted_by_a_recount() {
    let (memory, crashed, store) = pods();
    let status = tagged(10, 1, &["rust"], BUCKET);
    let mut pause = memory.pause_before(&PUT_USER_STATUS);
    let stopped = crashed.clone();
    let first = status.clone();
    let insert = tokio::spawn(async move { stopped.insert_status(&first, None).await });
    pause.reached().await;
    crashed.cql.crash();
    pause.release();
    assert!(insert.await.unwrap().is_err(), "the process stopped after the status's transaction");
    assert_eq!(stored(&store, 10).await, live(&status, 0, 0, 0), "readable by id");
    assert!(store.list_user_statuses(1, None, ALL).await.unwrap().is_empty(), "not yet listed");

    store.insert_status(&status, None).await.expect("a retry of the insert");
    assert_eq!(store.list_user_statuses(1, None, ALL).await.unwrap(), [10]);
    assert_eq!(store.list_tag_statuses("rust", None, ALL).await.unwrap(), [10]);
    assert_eq!(store.count_user_statuses(1).await.unwrap(), 0, "the crash window: counted by nobody");
    store.recount_user(1).await.unwrap();
    assert_eq!(user_counted(&store, 1).await, (1, 0));
}

#[tokio::test]
async fn a_repost_claim_left_by_a_stopped_writer_is_finished_by_the_next_repost() {
    let (memory, crashed, store) = pods();
    let original = post(10, 1);
    store.insert_status(&original, None).await.unwrap();
    let mut pause = memory.pause_before(&INSERT_STATUS);
    let stopped = crashed.clone();
    let first = repost(20, 2, &original);
    let status = first.clone();
    let insert = tokio::spawn(async move { stopped.insert_status(&status, Some(&job(&status))).await });
    pause.reached().await;
    crashed.cql.crash();
    pause.release();
    assert!(insert.await.unwrap().is_err());
    assert_eq!(stored(&store, 20).await, None, "claimed, never written");

    let again = repost(21, 2, &original);
    assert_eq!(store.insert_status(&again, None).await, Err(StoreError::AlreadyReposted(20)));
    assert_eq!(stored(&store, 20).await, live(&first, 0, 0, 0), "finished from its claim");
    assert_eq!(stored(&store, 21).await, None);
    assert_eq!(counted(&store, 10).await.reposts, 1);
    assert_eq!(user_counted(&store, 2).await, (1, 0));
    let jobs = store.claim_fanouts(7, 1000, 2000, ALL).await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.status_id).collect::<Vec<_>>(), [20], "with the job its claim held");
}

#[tokio::test]
async fn a_repost_claim_left_by_a_stopped_writer_goes_when_met_after_its_original_is_deleted() {
    let (memory, crashed, store) = pods();
    let original = post(10, 1);
    store.insert_status(&original, None).await.unwrap();
    let mut pause = memory.pause_before(&INSERT_STATUS);
    let stopped = crashed.clone();
    let insert = tokio::spawn(async move { stopped.insert_status(&repost(20, 2, &post(10, 1)), None).await });
    pause.reached().await;
    crashed.cql.crash();
    pause.release();
    assert!(insert.await.unwrap().is_err());
    assert_eq!(store.reposts_by(2, &[10]).await.unwrap(), [None], "a claim without its repost reposts nothing");

    // the next repost passes its check, then the original is deleted before it meets the claim
    let mut pause = memory.pause_before(&CLAIM_REPOST);
    let reposter = store.clone();
    let again = tokio::spawn(async move { reposter.insert_status(&repost(21, 2, &post(10, 1)), None).await });
    pause.reached().await;
    store.delete_status(10).await.unwrap();
    pause.release();
    assert_eq!(again.await.unwrap(), Err(StoreError::StatusNotFound(10)));
    let claim: Option<(i64, String, Option<String>)> =
        store.cql.row(&GET_REPOST_CLAIM, values![2u64, 10u64]).await.unwrap();
    assert_eq!(claim, None, "met, and released");
    assert_eq!(store.get_statuses(&[20, 21]).await.unwrap(), [None, None]);
    assert_eq!(user_counted(&store, 2).await, (0, 0));
}

#[tokio::test]
async fn a_deletion_stopped_midway_is_finished_by_the_next_one() {
    let (memory, crashed, store) = pods();
    let status = tagged(10, 1, &["rust"], BUCKET);
    store.insert_status(&status, Some(&job(&status))).await.unwrap();
    store.like(2, 10, 100).await.unwrap();
    let mut pause = memory.pause_before(&DELETE_USER_STATUS);
    let stopped = crashed.clone();
    let delete = tokio::spawn(async move { stopped.delete_status(10).await });
    pause.reached().await;
    crashed.cql.crash();
    pause.release();
    assert!(delete.await.unwrap().is_err());
    assert_eq!(stored(&store, 10).await, deleted(&status), "a tombstone from the first step");

    assert_eq!(store.delete_status(10).await.unwrap(), None, "already deleted: it only finishes");
    assert!(store.list_user_statuses(1, None, ALL).await.unwrap().is_empty());
    assert!(store.list_tag_statuses("rust", None, ALL).await.unwrap().is_empty());
    assert_eq!(user_counted(&store, 2).await, (0, 0), "its like went, counted by the pair's change");
    assert!(store.claim_fanouts(7, 1000, 2000, ALL).await.unwrap().is_empty());
    assert_eq!(store.count_user_statuses(1).await.unwrap(), 1, "the crash window: the author's count");
    store.recount_user(1).await.unwrap();
    assert_eq!(user_counted(&store, 1).await, (0, 0));
    assert_eq!(store.delete_status(10).await.unwrap(), None);
}

#[tokio::test]
async fn trend_copies_arriving_out_of_order_keep_the_latest_count() {
    let (memory, _, store) = pods();
    // same shard (id % 8): one count row
    memory.hold_writes_of(&PUT_TREND_COPY, 1);
    assert!(store.insert_status(&tagged(1, 1, &["rust"], BUCKET), None).await.is_err(), "its copy timed out");
    store.insert_status(&tagged(9, 1, &["rust"], BUCKET), None).await.unwrap();
    assert_eq!(memory.release_held(), 1, "the first copy lands last");
    assert_eq!(store.tag_counts(BUCKET, BUCKET).await.unwrap(), [("rust".to_owned(), 2)]);
}

// ---- queues: buckets, progress and what readers scan

static CLAIM_CLOCK: AtomicU64 = AtomicU64::new(NOW);

#[tokio::test]
async fn a_job_in_a_closed_bucket_is_moved_by_its_claim_and_the_progress_passes_the_bucket() {
    let memory = MemoryCql::migrated();
    let store =
        ScyllaFeedStore { clock: || CLAIM_CLOCK.load(Ordering::Acquire), ..ScyllaFeedStore::new(memory.client(0)) };
    let (kept, done) = (post(10, 1), post(11, 1));
    store.insert_status(&kept, Some(&job(&kept))).await.unwrap();
    store.insert_status(&done, Some(&job(&done))).await.unwrap();
    let old = FANOUT_QUEUE.bucket(NOW);
    // the finished job's queue row is left behind (its delete timed out, never replayed)
    memory.hold_writes_of(&UNQUEUE_JOB, 1);
    assert!(store.finish_fanout(11).await.is_err());

    CLAIM_CLOCK.store(NOW + 120_000, Ordering::Release);
    let current = FANOUT_QUEUE.bucket(NOW + 120_000);
    assert_eq!(store.claim_fanouts(7, 1000, 2000, ALL).await.unwrap(), [job(&kept)]);
    let queued = |bucket: i64| {
        let store = store.clone();
        async move {
            let rows: Vec<(i64,)> = store.cql.rows(&QUEUED_JOBS, values![bucket, -1i64, 10i32]).await.unwrap();
            rows.into_iter().map(|(id,)| id as u64).collect::<Vec<_>>()
        }
    };
    assert!(queued(old).await.is_empty(), "the moved job's row and the stale one are gone");
    assert_eq!(queued(current).await, [10], "the job is listed in the current bucket");
    assert_eq!(store.progress(&FANOUT_QUEUE).await.unwrap(), Some(FANOUT_QUEUE.first_open(NOW + 120_000)));

    let scans = |memory: &MemoryCql| memory.stats().reads.get("feed.queued_jobs").map_or(0, |r| r.runs);
    let before = scans(&memory);
    assert_eq!(store.claim_fanouts(8, 2500, 3000, ALL).await.unwrap(), [job(&kept)], "the lease ran out");
    assert_eq!(scans(&memory) - before, 1, "only the current bucket is read: the old one is behind the progress");
}

#[tokio::test]
async fn a_status_scheduled_in_the_past_after_the_progress_moved_on_is_still_due() {
    let store = ScyllaFeedStore::new(Cql::memory(MemoryCql::migrated()));
    store.insert_scheduled(&scheduled(10, 1, 100)).await.unwrap();
    assert!(store.cancel_scheduled(10).await.unwrap());
    // a reader far ahead passes every bucket it found with nothing pending
    assert!(store.due_scheduled(10_000_000, ALL).await.unwrap().is_empty());
    let first = store.progress(&super::fanout::DUE_QUEUE).await.unwrap().unwrap();
    assert!(first > 0, "the progress moved on");
    store.insert_scheduled(&scheduled(20, 1, 200)).await.unwrap();
    let due = store.due_scheduled(300, ALL).await.unwrap();
    assert_eq!(due.iter().map(|r| r.scheduled_id).collect::<Vec<_>>(), [20], "put in the progress's bucket");
    assert!(store.due_scheduled(199, ALL).await.unwrap().is_empty(), "and due at its own time");
}

#[tokio::test]
async fn a_timeline_trimmed_many_times_is_read_past_few_tombstones() {
    let memory = MemoryCql::migrated();
    let store = ScyllaFeedStore::new(memory.client(0));
    for id in 1..=500 {
        store.push(&[1], TimelineEntry { status_id: id, poster_id: 5 }, 20).await.unwrap();
    }
    // the core never reads deeper than the cap
    assert_eq!(store.page(1, None, 20).await.unwrap().len(), 20);
    let scanned = memory.stats().reads["feed.timeline_page"].max_tombstones;
    // why: each trim is one range tombstone, and a read meets only those over the rows it passes
    assert!(scanned <= 2, "a page read met {scanned} tombstones");
}

static CELEBRITY_CLOCK: AtomicU64 = AtomicU64::new(NOW);

#[tokio::test]
async fn celebrities_are_read_once_a_second_per_process_and_again_after_a_mark() {
    let memory = MemoryCql::migrated();
    let pod = |memory: &Arc<MemoryCql>| ScyllaFeedStore {
        clock: || CELEBRITY_CLOCK.load(Ordering::Acquire),
        ..ScyllaFeedStore::new(memory.client(0))
    };
    let (reader, marker) = (pod(&memory), pod(&memory));
    let reads = |memory: &MemoryCql| memory.stats().reads.get("feed.celebrities").map_or(0, |r| r.runs);
    reader.mark_celebrity(1).await.unwrap();
    assert_eq!(reader.celebrities_among(&[1, 2]).await.unwrap(), [1]);
    assert_eq!(reader.celebrities_among(&[2, 1]).await.unwrap(), [1]);
    assert_eq!(reads(&memory), 1, "the second answer came from the process's copy");
    marker.mark_celebrity(2).await.unwrap();
    assert_eq!(reader.celebrities_among(&[2, 1]).await.unwrap(), [1], "marked elsewhere within the second");
    CELEBRITY_CLOCK.store(NOW + 1000, Ordering::Release);
    assert_eq!(reader.celebrities_among(&[2, 1]).await.unwrap(), [2, 1]);
    reader.mark_celebrity(3).await.unwrap();
    assert_eq!(reader.celebrities_among(&[3]).await.unwrap(), [3], "its own mark shows at once");
}

#[tokio::test]
async fn a_process_lists_a_trend_bucket_once_and_again_after_pruning_it() {
    let memory = MemoryCql::migrated();
    let (cql, log) = memory.client(0).recording();
    let store = ScyllaFeedStore::new(cql);
    let listings = || log.lock().unwrap().iter().filter(|c| c.name == PUT_TREND_BUCKET.name).count();
    for id in 1..=3 {
        store.insert_status(&tagged(id, 1, &["a"], BUCKET), None).await.unwrap();
    }
    assert_eq!(listings(), 1, "listed by the first status of the bucket only");
    store.prune_buckets(BUCKET + 1).await.unwrap();
    assert!(store.tag_counts(0, u64::MAX).await.unwrap().is_empty());
    // a status of a pruned bucket published again (the service never does: it prunes old buckets)
    store.insert_status(&tagged(4, 1, &["a"], BUCKET), None).await.unwrap();
    assert_eq!(listings(), 2, "listed again once pruned");
    assert_eq!(store.tag_counts(0, u64::MAX).await.unwrap(), [("a".to_owned(), 1)], "counted from 0");
}

#[tokio::test]
async fn lists_walk_their_buckets_newest_first_across_pages_of_buckets() {
    let store = ScyllaFeedStore { page: 2, ..ScyllaFeedStore::new(Cql::memory(MemoryCql::migrated())) };
    // 6-hour buckets 0, 1, 3 and 5; two statuses in bucket 3
    let ids = [at_hour(1, 1), at_hour(7, 1), at_hour(19, 1), at_hour(20, 2), at_hour(31, 1)];
    for id in ids {
        store.insert_status(&post(id, 1), None).await.unwrap();
    }
    let newest_first: Vec<u64> = ids.iter().rev().copied().collect();
    assert_eq!(store.list_user_statuses(1, None, ALL).await.unwrap(), newest_first);
    assert_eq!(store.list_user_statuses(1, Some(at_hour(20, 2)), 2).await.unwrap(), newest_first[2..4]);
    assert_eq!(user_counted(&store, 1).await, (5, 0));
    store.recount_user(1).await.unwrap();
    assert_eq!(user_counted(&store, 1).await, (5, 0), "a recount of a right count changes nothing");
}
