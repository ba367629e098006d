//! The embedded store's own tests (the conformance suite runs from the parent module): group
//! commit, a failed sync, reopening.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use super::{FjallFeedStore, SyncHook};
use crate::{
    model::{Counts, Stored},
    store::{
        FanoutQueue, Likes, Statuses, StoreError, Timelines,
        conformance::{ALL, job, live, post, repost, stored, tagged, user_counted},
    },
};

fn with_failing_sync() -> (tempfile::TempDir, FjallFeedStore, Arc<AtomicBool>) {
    let dir = tempfile::tempdir().unwrap();
    let fail = Arc::new(AtomicBool::new(false));
    let flag = fail.clone();
    let hook: SyncHook = Arc::new(move || {
        if flag.load(Ordering::Acquire) { Err(std::io::Error::other("injected sync failure")) } else { Ok(()) }
    });
    let store = FjallFeedStore::open_with_hook(dir.path(), hook).unwrap();
    (dir, store, fail)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_likes_of_one_status_share_syncs_and_count_exactly() {
    const LIKES: u64 = 5000;
    let (_dir, store) = FjallFeedStore::temp();
    store.insert_status(&post(1, 1), None).await.unwrap();
    let before = store.syncs();
    let started = Instant::now();
    let likers: Vec<_> = (0..LIKES)
        .map(|user| {
            let store = store.clone();
            tokio::spawn(async move { assert!(store.like(10 + user, 1, 1000 + user).await.unwrap()) })
        })
        .collect();
    for liker in likers {
        liker.await.unwrap();
    }
    let elapsed = started.elapsed();
    let syncs = store.syncs() - before;
    eprintln!("{LIKES} likes in {elapsed:?} ({:.0}/s), {syncs} syncs", LIKES as f64 / elapsed.as_secs_f64());
    assert!(syncs < LIKES / 4, "likes are committed in groups: {syncs} syncs for {LIKES} likes");
    let Some(Stored::Live(_, counts)) = stored(&store, 1).await else { panic!("live") };
    assert_eq!(counts.likes, LIKES);
    assert_eq!(store.list_likes(1, None, usize::MAX).await.unwrap().len() as u64, LIKES);
}

#[tokio::test]
async fn a_refused_write_in_a_batch_leaves_the_others_in_it() {
    let (_dir, store) = FjallFeedStore::temp();
    let original = post(1, 1);
    store.insert_status(&original, None).await.unwrap();
    let (first, again) = (repost(2, 5, &original), repost(3, 5, &original));
    // why: queued together, so one batch usually holds all three
    let (ok, refused, missing) =
        tokio::join!(store.insert_status(&first, None), store.insert_status(&again, None), store.like(6, 99, 100),);
    ok.unwrap();
    assert_eq!(refused, Err(StoreError::AlreadyReposted(2)));
    assert_eq!(missing, Err(StoreError::StatusNotFound(99)));
    assert_eq!(stored(&store, 1).await, live(&original, 0, 1, 0));
    assert_eq!(user_counted(&store, 5).await, (1, 0));
}

#[tokio::test]
async fn a_failed_sync_acknowledges_nothing_and_shows_nothing() {
    let (dir, store, fail) = with_failing_sync();
    let kept = tagged(1, 1, &["kept"], 7);
    store.insert_status(&kept, None).await.unwrap();
    fail.store(true, Ordering::Release);
    let lost = tagged(2, 1, &["lost"], 7);
    let answer = store.insert_status(&lost, Some(&job(&lost))).await;
    assert!(matches!(answer, Err(StoreError::Backend(_))), "{answer:?}");
    assert!(store.like(3, 1, 100).await.is_err());
    assert!(store.push(&[3], crate::model::TimelineEntry { status_id: 2, poster_id: 1 }, 10).await.is_err());
    fail.store(false, Ordering::Release);

    assert_eq!(stored(&store, 2).await, None);
    assert_eq!(store.list_user_statuses(1, None, ALL).await.unwrap(), [1]);
    assert_eq!(user_counted(&store, 1).await, (1, 0));
    assert_eq!(user_counted(&store, 3).await, (0, 0));
    assert!(store.page(3, None, ALL).await.unwrap().is_empty());
    assert!(store.claim_fanouts(7, 1000, 2000, ALL).await.unwrap().is_empty());
    // the undone writes succeed when retried
    store.insert_status(&lost, None).await.unwrap();
    assert!(store.like(3, 1, 100).await.unwrap());
    drop(store);
    let reopened = FjallFeedStore::open(dir.path()).unwrap();
    assert_eq!(reopened.list_user_statuses(1, None, ALL).await.unwrap(), [2, 1]);
    assert_eq!(stored(&reopened, 1).await, live(&kept, 1, 0, 0));
}

#[tokio::test]
async fn a_reopened_store_keeps_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let status = tagged(1, 1, &["kept"], 7);
    {
        let store = FjallFeedStore::open(dir.path()).unwrap();
        store.insert_status(&status, Some(&job(&status))).await.unwrap();
        store.like(2, 1, 100).await.unwrap();
        store.push(&[3], crate::model::TimelineEntry { status_id: 1, poster_id: 1 }, 10).await.unwrap();
    }
    let store = FjallFeedStore::open(dir.path()).unwrap();
    assert_eq!(stored(&store, 1).await, Some(Stored::Live(status, Counts { likes: 1, reposts: 0, replies: 0 })));
    assert_eq!(user_counted(&store, 2).await, (0, 1));
    assert_eq!(store.page(3, None, ALL).await.unwrap().len(), 1);
    assert_eq!(store.claim_fanouts(7, 1000, 2000, ALL).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_retried_insert_of_a_published_status_writes_nothing_more() {
    let (_dir, store) = FjallFeedStore::temp();
    let original = post(1, 1);
    store.insert_status(&original, None).await.unwrap();
    let shared = repost(2, 5, &original);
    store.insert_status(&shared, None).await.unwrap();
    store.insert_status(&shared, None).await.unwrap();
    store.insert_status(&original, None).await.unwrap();
    assert_eq!(stored(&store, 1).await, live(&original, 0, 1, 0));
    assert_eq!(user_counted(&store, 1).await, (1, 0));
    assert_eq!(user_counted(&store, 5).await, (1, 0));
    store.delete_status(2).await.unwrap();
    store.insert_status(&shared, None).await.unwrap();
    assert_eq!(user_counted(&store, 5).await, (0, 0), "a deleted status is not published again");
}
