//! [`Likes`](crate::store::Likes): likes on both sides with their counts.

use super::{ALL, concurrently, counted, post, stored, user_counted};
use crate::{
    model::Edge,
    store::{FeedStore, StoreError},
};

pub async fn a_like_is_listed_on_both_sides_and_counted_once(store: &dyn FeedStore) {
    store.insert_status(&post(10, 1), None).await.unwrap();
    assert!(store.like(2, 10, 100).await.unwrap());
    assert!(!store.like(2, 10, 101).await.unwrap(), "liking twice is a no-op");
    assert!(store.like(3, 10, 102).await.unwrap());
    assert_eq!(
        store.list_likes(10, None, ALL).await.unwrap(),
        [Edge { id: 102, other: 3 }, Edge { id: 100, other: 2 }]
    );
    assert_eq!(
        store.list_user_likes(2, None, ALL).await.unwrap(),
        [Edge { id: 100, other: 10 }],
        "the first like stays"
    );
    assert_eq!(counted(store, 10).await.likes, 2);
    assert_eq!(user_counted(store, 2).await, (0, 1));
    assert_eq!(user_counted(store, 3).await, (0, 1));
    assert_eq!(user_counted(store, 1).await, (1, 0));
}

pub async fn liking_a_missing_or_deleted_status_is_refused(store: &dyn FeedStore) {
    assert_eq!(store.like(2, 99, 100).await, Err(StoreError::StatusNotFound(99)));
    store.insert_status(&post(10, 1), None).await.unwrap();
    store.delete_status(10).await.unwrap();
    assert_eq!(store.like(2, 10, 101).await, Err(StoreError::StatusNotFound(10)));
    assert!(store.list_likes(99, None, ALL).await.unwrap().is_empty());
    assert!(store.list_likes(10, None, ALL).await.unwrap().is_empty());
    assert_eq!(user_counted(store, 2).await, (0, 0), "a refused like stores nothing");
    assert_eq!(store.liked_by(2, &[99, 10]).await.unwrap(), [false, false]);
}

pub async fn an_unlike_removes_the_like_and_its_counts_once(store: &dyn FeedStore) {
    store.insert_status(&post(10, 1), None).await.unwrap();
    store.insert_status(&post(20, 1), None).await.unwrap();
    store.like(2, 10, 100).await.unwrap();
    store.like(2, 20, 101).await.unwrap();
    store.like(3, 10, 102).await.unwrap();
    assert!(store.unlike(2, 10).await.unwrap());
    assert!(!store.unlike(2, 10).await.unwrap(), "unliking twice is a no-op");
    assert!(!store.unlike(4, 10).await.unwrap(), "unliking what one never liked is a no-op");
    assert!(!store.unlike(2, 99).await.unwrap());
    assert_eq!(store.list_likes(10, None, ALL).await.unwrap(), [Edge { id: 102, other: 3 }]);
    assert_eq!(store.list_user_likes(2, None, ALL).await.unwrap(), [Edge { id: 101, other: 20 }]);
    assert_eq!(counted(store, 10).await.likes, 1);
    assert_eq!(user_counted(store, 2).await, (0, 1));
    assert!(store.like(2, 10, 103).await.unwrap(), "liking again after an unlike counts again");
    assert_eq!(store.list_likes(10, None, ALL).await.unwrap()[0], Edge { id: 103, other: 2 });
    assert_eq!(counted(store, 10).await.likes, 2);
}

pub async fn like_lists_are_newest_like_first_and_page_before_a_like_id(store: &dyn FeedStore) {
    for id in [10, 20, 30, 40] {
        store.insert_status(&post(id, 1), None).await.unwrap();
    }
    for (status, like_id) in [(10, 400), (20, 100), (30, 300), (40, 200)] {
        store.like(2, status, like_id).await.unwrap();
    }
    for (user, like_id) in [(3, 50), (4, 70), (5, 60)] {
        store.like(user, 10, like_id).await.unwrap();
    }
    let edges = |pairs: &[(u64, u64)]| pairs.iter().map(|&(id, other)| Edge { id, other }).collect::<Vec<_>>();
    assert_eq!(store.list_user_likes(2, None, 2).await.unwrap(), edges(&[(400, 10), (300, 30)]));
    assert_eq!(store.list_user_likes(2, Some(300), 2).await.unwrap(), edges(&[(200, 40), (100, 20)]));
    assert!(store.list_user_likes(2, Some(100), 2).await.unwrap().is_empty());
    assert_eq!(store.list_likes(10, None, 2).await.unwrap(), edges(&[(400, 2), (70, 4)]));
    assert_eq!(store.list_likes(10, Some(70), 5).await.unwrap(), edges(&[(60, 5), (50, 3)]));
    assert!(store.list_likes(10, None, 0).await.unwrap().is_empty(), "a zero limit lists nothing");
}

pub async fn liked_by_answers_in_the_order_asked(store: &dyn FeedStore) {
    for id in [10, 20, 30] {
        store.insert_status(&post(id, 1), None).await.unwrap();
    }
    store.like(2, 30, 100).await.unwrap();
    store.like(2, 10, 101).await.unwrap();
    store.like(3, 20, 102).await.unwrap();
    assert_eq!(store.liked_by(2, &[20, 30, 99, 10]).await.unwrap(), [false, true, false, true]);
    assert!(store.liked_by(2, &[]).await.unwrap().is_empty());
}

pub async fn concurrent_likes_and_unlikes_of_one_status_end_with_counts_equal_to_the_lists(store: &dyn FeedStore) {
    const USERS: u64 = 20;
    store.insert_status(&post(10, 100), None).await.unwrap();
    concurrently((0..400u64).map(|i| async move {
        let user = 1 + i % USERS;
        if (i / USERS).is_multiple_of(3) {
            store.unlike(user, 10).await.unwrap();
        } else {
            store.like(user, 10, 1000 + i).await.unwrap();
        }
        store.get_statuses(&[10]).await.unwrap();
    }))
    .await;
    let counts = counted(store, 10).await;
    let likers: Vec<u64> = store.list_likes(10, None, ALL).await.unwrap().into_iter().map(|e| e.other).collect();
    assert_eq!(counts.likes, likers.len() as u64);
    for user in 1..=USERS {
        let liked = likers.contains(&user);
        assert_eq!(user_counted(store, user).await, (0, u64::from(liked)), "user {user}: one like at most");
        assert_eq!(store.liked_by(user, &[10]).await.unwrap(), [liked]);
    }
    assert!(stored(store, 10).await.is_some());
}
