//! [`Statuses`](crate::store::Statuses): publishing, reading, listing and deleting statuses with
//! their lists and counters.

use super::{
    ALL, BUCKET, concurrently, counted, deleted, job, live, post, reply, repost, stored, tagged, user_counted,
};
use crate::{
    model::{Edge, StatusRecord},
    store::{FeedStore, StoreError},
};

fn sorted(mut counts: Vec<(String, u64)>) -> Vec<(String, u64)> {
    counts.sort();
    counts
}

fn tags(counts: &[(&str, u64)]) -> Vec<(String, u64)> {
    counts.iter().map(|&(t, n)| (t.to_owned(), n)).collect()
}

pub async fn a_published_post_reads_back_live_with_zero_counts_on_its_author_and_tags(store: &dyn FeedStore) {
    let status = tagged(10, 1, &["rust", "fjall"], BUCKET);
    store.insert_status(&status, None).await.unwrap();
    assert_eq!(stored(store, 10).await, live(&status, 0, 0, 0));
    assert_eq!(store.list_user_statuses(1, None, ALL).await.unwrap(), [10]);
    assert_eq!(user_counted(store, 1).await, (1, 0));
    assert_eq!(store.list_tag_statuses("rust", None, ALL).await.unwrap(), [10]);
    assert_eq!(store.list_tag_statuses("fjall", None, ALL).await.unwrap(), [10]);
    assert!(store.list_tag_statuses("rus", None, ALL).await.unwrap().is_empty(), "a tag's prefix is another tag");
    assert_eq!(sorted(store.tag_counts(BUCKET, BUCKET).await.unwrap()), tags(&[("fjall", 1), ("rust", 1)]));
    assert_eq!(user_counted(store, 2).await, (0, 0), "a user with no statuses counts zero");
}

pub async fn a_reply_is_listed_and_counted_on_the_status_it_answers(store: &dyn FeedStore) {
    let root = post(10, 1);
    store.insert_status(&root, None).await.unwrap();
    let first = reply(11, 2, &root);
    store.insert_status(&first, None).await.unwrap();
    store.insert_status(&reply(12, 3, &root), None).await.unwrap();
    assert_eq!(store.list_replies(10, None, ALL).await.unwrap(), [12, 11]);
    assert_eq!(counted(store, 10).await.replies, 2);
    assert_eq!(stored(store, 11).await, live(&first, 0, 0, 0));
    assert_eq!(user_counted(store, 2).await, (1, 0), "a reply is a status of its author");
    assert!(store.list_replies(11, None, ALL).await.unwrap().is_empty());
}

pub async fn a_repost_is_listed_counted_and_known_to_its_author(store: &dyn FeedStore) {
    let original = post(10, 1);
    store.insert_status(&original, None).await.unwrap();
    let shared = repost(20, 2, &original);
    store.insert_status(&shared, None).await.unwrap();
    store.insert_status(&repost(21, 3, &original), None).await.unwrap();
    assert_eq!(
        store.list_reposts(10, None, ALL).await.unwrap(),
        [Edge { id: 21, other: 3 }, Edge { id: 20, other: 2 }]
    );
    assert_eq!(counted(store, 10).await.reposts, 2);
    assert_eq!(store.reposts_by(2, &[10, 99, 21]).await.unwrap(), [Some(20), None, None]);
    assert_eq!(store.reposts_by(1, &[10]).await.unwrap(), [None]);
    assert_eq!(stored(store, 20).await, live(&shared, 0, 0, 0));
    assert_eq!(store.list_user_statuses(2, None, ALL).await.unwrap(), [20], "a repost is a status of its reposter");
    assert_eq!(user_counted(store, 2).await, (1, 0));
}

pub async fn a_reply_or_repost_of_a_missing_or_deleted_status_is_refused_and_writes_nothing(store: &dyn FeedStore) {
    let never = post(99, 1);
    let orphan = StatusRecord { tags: vec!["lost".into()], ..reply(11, 2, &never) };
    assert_eq!(store.insert_status(&orphan, Some(&job(&orphan))).await, Err(StoreError::StatusNotFound(99)));
    let gone = post(10, 1);
    store.insert_status(&gone, None).await.unwrap();
    store.delete_status(10).await.unwrap();
    assert_eq!(store.insert_status(&reply(12, 2, &gone), None).await, Err(StoreError::StatusNotFound(10)));
    let late = repost(13, 2, &gone);
    assert_eq!(store.insert_status(&late, Some(&job(&late))).await, Err(StoreError::StatusNotFound(10)));

    assert_eq!(store.get_statuses(&[11, 12, 13]).await.unwrap(), [None, None, None], "a refused insert stores nothing");
    assert_eq!(user_counted(store, 2).await, (0, 0));
    assert!(store.list_tag_statuses("lost", None, ALL).await.unwrap().is_empty());
    assert!(store.tag_counts(0, u64::MAX).await.unwrap().is_empty());
    assert!(store.list_replies(10, None, ALL).await.unwrap().is_empty());
    assert!(store.list_reposts(10, None, ALL).await.unwrap().is_empty());
    assert_eq!(store.reposts_by(2, &[10]).await.unwrap(), [None]);
    assert!(store.claim_fanouts(1, 1000, 2000, ALL).await.unwrap().is_empty(), "nor its fan-out");
}

pub async fn a_repeat_repost_answers_already_reposted_with_the_first_id_and_changes_nothing(store: &dyn FeedStore) {
    let original = post(10, 1);
    store.insert_status(&original, None).await.unwrap();
    store.insert_status(&repost(20, 2, &original), None).await.unwrap();
    let again = StatusRecord { tags: vec!["again".into()], ..repost(22, 2, &original) };
    assert_eq!(store.insert_status(&again, Some(&job(&again))).await, Err(StoreError::AlreadyReposted(20)));
    assert_eq!(stored(store, 22).await, None);
    assert_eq!(store.list_reposts(10, None, ALL).await.unwrap(), [Edge { id: 20, other: 2 }]);
    assert_eq!(counted(store, 10).await.reposts, 1);
    assert_eq!(store.reposts_by(2, &[10]).await.unwrap(), [Some(20)]);
    assert_eq!(store.list_user_statuses(2, None, ALL).await.unwrap(), [20]);
    assert_eq!(user_counted(store, 2).await, (1, 0));
    assert!(store.list_tag_statuses("again", None, ALL).await.unwrap().is_empty());
    assert!(store.claim_fanouts(1, 1000, 2000, ALL).await.unwrap().is_empty());
}

pub async fn get_statuses_answers_in_order_live_deleted_or_never_published(store: &dyn FeedStore) {
    let (a, b) = (post(10, 1), post(20, 2));
    store.insert_status(&a, None).await.unwrap();
    store.insert_status(&b, None).await.unwrap();
    store.delete_status(10).await.unwrap();
    assert_eq!(
        store.get_statuses(&[20, 99, 10, 20]).await.unwrap(),
        [live(&b, 0, 0, 0), None, deleted(&a), live(&b, 0, 0, 0)]
    );
    assert!(store.get_statuses(&[]).await.unwrap().is_empty());
}

pub async fn lists_are_newest_first_and_page_before_an_id(store: &dyn FeedStore) {
    let root = post(1, 9);
    store.insert_status(&root, None).await.unwrap();
    for id in [30, 10, 50, 20, 40] {
        let answer = StatusRecord { tags: vec!["t".into()], ..reply(id, 1, &root) };
        store.insert_status(&answer, None).await.unwrap();
    }
    assert_eq!(store.list_user_statuses(1, None, 2).await.unwrap(), [50, 40]);
    assert_eq!(store.list_user_statuses(1, Some(40), 2).await.unwrap(), [30, 20]);
    assert_eq!(store.list_user_statuses(1, Some(20), 2).await.unwrap(), [10]);
    assert!(store.list_user_statuses(1, Some(10), 2).await.unwrap().is_empty());
    assert_eq!(store.list_replies(1, None, 3).await.unwrap(), [50, 40, 30]);
    assert_eq!(store.list_replies(1, Some(30), 3).await.unwrap(), [20, 10]);
    assert_eq!(store.list_tag_statuses("t", Some(50), 2).await.unwrap(), [40, 30]);
    assert_eq!(store.list_tag_statuses("t", Some(11), 2).await.unwrap(), [10], "a cursor need not be listed");
    for (id, user) in [(70, 2), (90, 3), (60, 4), (80, 5)] {
        store.insert_status(&repost(id, user, &root), None).await.unwrap();
    }
    let edges = |pairs: &[(u64, u64)]| pairs.iter().map(|&(id, other)| Edge { id, other }).collect::<Vec<_>>();
    assert_eq!(store.list_reposts(1, None, 3).await.unwrap(), edges(&[(90, 3), (80, 5), (70, 2)]));
    assert_eq!(store.list_reposts(1, Some(70), 3).await.unwrap(), edges(&[(60, 4)]));
    assert!(store.list_user_statuses(1, None, 0).await.unwrap().is_empty(), "a zero limit lists nothing");
}

pub async fn a_deleted_status_leaves_a_tombstone_and_leaves_every_list_count_tag_and_like(store: &dyn FeedStore) {
    let root = post(1, 9);
    store.insert_status(&root, None).await.unwrap();
    let status = StatusRecord { tags: vec!["a".into(), "b".into()], ..reply(10, 1, &root) };
    store.insert_status(&status, Some(&job(&status))).await.unwrap();
    store.insert_status(&tagged(11, 1, &["a"], BUCKET), None).await.unwrap();
    store.like(2, 10, 100).await.unwrap();
    store.like(3, 10, 101).await.unwrap();
    store.like(2, 1, 102).await.unwrap();

    assert_eq!(store.delete_status(10).await.unwrap(), Some(status.clone()), "answers the deleted record");
    assert_eq!(stored(store, 10).await, deleted(&status));
    assert_eq!(store.list_user_statuses(1, None, ALL).await.unwrap(), [11]);
    assert_eq!(user_counted(store, 1).await, (1, 0));
    assert_eq!(store.list_tag_statuses("a", None, ALL).await.unwrap(), [11]);
    assert!(store.list_tag_statuses("b", None, ALL).await.unwrap().is_empty());
    assert_eq!(store.tag_counts(BUCKET, BUCKET).await.unwrap(), [("a".to_owned(), 1)]);
    assert!(store.list_replies(1, None, ALL).await.unwrap().is_empty());
    assert_eq!(counted(store, 1).await.replies, 0);
    assert!(store.list_likes(10, None, ALL).await.unwrap().is_empty());
    assert_eq!(store.list_user_likes(2, None, ALL).await.unwrap(), [Edge { id: 102, other: 1 }]);
    assert_eq!(user_counted(store, 2).await, (0, 1));
    assert_eq!(user_counted(store, 3).await, (0, 0));
    assert_eq!(store.liked_by(2, &[10, 1]).await.unwrap(), [false, true]);
    assert!(store.claim_fanouts(1, 1000, 2000, ALL).await.unwrap().is_empty(), "its pending fan-out is gone");
    assert_eq!(store.like(4, 10, 103).await, Err(StoreError::StatusNotFound(10)));
    assert!(!store.unlike(2, 10).await.unwrap());
}

pub async fn deleting_a_status_deletes_its_reposts(store: &dyn FeedStore) {
    let original = tagged(10, 1, &["x"], BUCKET);
    store.insert_status(&original, None).await.unwrap();
    let (first, second) = (repost(20, 2, &original), repost(21, 3, &original));
    store.insert_status(&first, Some(&job(&first))).await.unwrap();
    store.insert_status(&second, Some(&job(&second))).await.unwrap();
    store.insert_status(&post(22, 2), None).await.unwrap();
    store.like(4, 20, 100).await.unwrap();
    store.like(4, 22, 101).await.unwrap();

    assert_eq!(store.delete_status(10).await.unwrap(), Some(original.clone()));
    assert_eq!(
        store.get_statuses(&[10, 20, 21]).await.unwrap(),
        [deleted(&original), deleted(&first), deleted(&second)]
    );
    assert!(store.list_reposts(10, None, ALL).await.unwrap().is_empty());
    assert_eq!(store.reposts_by(2, &[10]).await.unwrap(), [None]);
    assert_eq!(store.reposts_by(3, &[10]).await.unwrap(), [None]);
    assert_eq!(store.list_user_statuses(2, None, ALL).await.unwrap(), [22]);
    assert_eq!(user_counted(store, 2).await, (1, 0));
    assert_eq!(user_counted(store, 3).await, (0, 0));
    assert_eq!(
        store.list_user_likes(4, None, ALL).await.unwrap(),
        [Edge { id: 101, other: 22 }],
        "likes of a repost go"
    );
    assert_eq!(user_counted(store, 4).await, (0, 1));
    assert!(store.claim_fanouts(1, 1000, 2000, ALL).await.unwrap().is_empty(), "the reposts' fan-outs are gone");
    assert!(store.tag_counts(0, u64::MAX).await.unwrap().is_empty());
}

pub async fn deleting_a_repost_takes_it_off_the_original_and_lets_its_author_repost_again(store: &dyn FeedStore) {
    let original = post(10, 1);
    store.insert_status(&original, None).await.unwrap();
    let shared = repost(20, 2, &original);
    store.insert_status(&shared, None).await.unwrap();
    assert_eq!(store.delete_status(20).await.unwrap(), Some(shared.clone()));
    assert_eq!(stored(store, 20).await, deleted(&shared));
    assert_eq!(stored(store, 10).await, live(&original, 0, 0, 0), "the original stays");
    assert!(store.list_reposts(10, None, ALL).await.unwrap().is_empty());
    assert_eq!(store.reposts_by(2, &[10]).await.unwrap(), [None]);
    assert_eq!(user_counted(store, 2).await, (0, 0));
    store.insert_status(&repost(21, 2, &original), None).await.unwrap();
    assert_eq!(store.reposts_by(2, &[10]).await.unwrap(), [Some(21)]);
    assert_eq!(counted(store, 10).await.reposts, 1);
}

pub async fn deleting_a_missing_or_deleted_status_answers_none_and_changes_nothing(store: &dyn FeedStore) {
    assert_eq!(store.delete_status(99).await.unwrap(), None);
    assert_eq!(stored(store, 99).await, None, "no tombstone for what was never published");
    let root = post(10, 1);
    store.insert_status(&root, None).await.unwrap();
    let answer = reply(11, 2, &root);
    store.insert_status(&answer, None).await.unwrap();
    store.insert_status(&post(12, 2), None).await.unwrap();
    store.delete_status(11).await.unwrap();
    assert_eq!(store.delete_status(11).await.unwrap(), None);
    assert_eq!(stored(store, 11).await, deleted(&answer));
    assert_eq!(user_counted(store, 2).await, (1, 0), "a second deletion counts nothing down");
    assert_eq!(counted(store, 10).await.replies, 0);
}

pub async fn counts_equal_lists_after_concurrent_likes_unlikes_reposts_and_deletes(store: &dyn FeedStore) {
    const USERS: u64 = 15;
    let (target, other) = (post(1, 100), post(2, 100));
    store.insert_status(&target, None).await.unwrap();
    store.insert_status(&other, None).await.unwrap();
    let churn = |round: u64, i: u64| {
        let target = &target;
        async move {
            let user = 1 + i % USERS;
            let id = round * 100_000 + 1000 + i;
            match i % 6 {
                0 | 1 => match store.like(user, 1, id).await {
                    Ok(_) | Err(StoreError::StatusNotFound(1)) => {}
                    Err(e) => panic!("like: {e}"),
                },
                2 => {
                    store.unlike(user, 1).await.unwrap();
                }
                3 => match store.insert_status(&repost(id, user, target), None).await {
                    Ok(()) | Err(StoreError::AlreadyReposted(_) | StoreError::StatusNotFound(1)) => {}
                    Err(e) => panic!("repost: {e}"),
                },
                4 => {
                    if let Some(repost_id) = store.reposts_by(user, &[1]).await.unwrap()[0] {
                        store.delete_status(repost_id).await.unwrap();
                    }
                }
                _ => {
                    store.like(user, 2, id).await.unwrap();
                }
            }
        }
    };

    concurrently((0..300).map(|i| churn(0, i))).await;
    counted(store, 1).await;
    counted(store, 2).await;
    let reposts = store.list_reposts(1, None, ALL).await.unwrap();
    for user in 1..=USERS {
        user_counted(store, user).await;
        let listed = reposts.iter().find(|e| e.other == user).map(|e| e.id);
        assert_eq!(store.reposts_by(user, &[1]).await.unwrap(), [listed], "user {user}: the pair agrees with the list");
        if let Some(id) = listed {
            assert!(store.list_user_statuses(user, None, ALL).await.unwrap().contains(&id));
        }
        let likes = store.list_likes(1, None, ALL).await.unwrap();
        assert_eq!(store.liked_by(user, &[1]).await.unwrap(), [likes.iter().any(|e| e.other == user)]);
    }

    // the same churn with the status deleted in the middle of it
    concurrently((0..300).map(|i| {
        let churn = churn(1, i);
        async move {
            if i == 150 {
                assert!(store.delete_status(1).await.unwrap().is_some());
            }
            churn.await;
        }
    }))
    .await;
    assert_eq!(stored(store, 1).await, deleted(&target));
    assert!(store.list_likes(1, None, ALL).await.unwrap().is_empty());
    assert!(store.list_reposts(1, None, ALL).await.unwrap().is_empty());
    counted(store, 2).await;
    for user in 1..=USERS {
        user_counted(store, user).await;
        assert!(
            store.list_user_likes(user, None, ALL).await.unwrap().iter().all(|e| e.other == 2),
            "user {user}: no like of the deleted status is left"
        );
        assert_eq!(store.reposts_by(user, &[1]).await.unwrap(), [None]);
        assert!(
            store.list_user_statuses(user, None, ALL).await.unwrap().is_empty(),
            "user {user}: every repost of the deleted status went with it"
        );
    }
}
