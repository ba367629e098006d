//! The one conformance suite of [`UserStore`]: every backend runs it unchanged through
//! `user_store_suite!(constructor)`, where the constructor returns `(guard, store)`. Cases take
//! `&dyn UserStore`; concurrent ones drive many borrowed calls at once on the test's task.

use std::{future::Future, pin::Pin, task::Poll};

use super::{BlockSets, Rotation, StoreError, UserStore};
use crate::model::{
    Direction, Edge, Friendship, PendingRequest, ReportAction, ReportCategory, ReportRecord, ReportTarget,
    RequestOutcome, Resolution, Role, SessionRecord, Standing, UserRecord,
};

/// Larger than any list a case builds.
const ALL: usize = 1000;

pub fn user(id: u64, email: &str, username: Option<&str>) -> UserRecord {
    UserRecord {
        user_id: id,
        email: email.to_owned(),
        name: format!("user {id}"),
        username: username.map(str::to_owned),
        avatar_url: String::new(),
        bio: String::new(),
        password_hash: "$argon2id$test".into(),
        created_at_ms: 1,
        updated_at_ms: 1,
        role: Role::User,
        suspension: None,
        deleted_at_ms: None,
    }
}

pub fn session(sid: &str, user_id: u64, hash: &str) -> SessionRecord {
    SessionRecord {
        session_id: sid.to_owned(),
        user_id,
        refresh_hash: hash.to_owned(),
        used_hashes: Vec::new(),
        created_at_ms: 1,
        expires_at_ms: u64::MAX,
        ended_at_ms: None,
    }
}

/// A report of `target` (a user, or a chat or status of theirs) by `reporter`, filed at `at_ms`.
pub fn report(report_id: u64, reporter_id: u64, target: ReportTarget, at_ms: u64) -> ReportRecord {
    ReportRecord {
        report_id,
        reporter_id,
        target,
        category: ReportCategory::Spam,
        text: format!("report {report_id}"),
        created_at_ms: at_ms,
        updated_at_ms: at_ms,
        resolution: None,
    }
}

fn of_user(user_id: u64) -> ReportTarget {
    ReportTarget { user_id, chat: None, status: None }
}

fn of_status(user_id: u64, status_id: u64) -> ReportTarget {
    ReportTarget { user_id, chat: None, status: Some(status_id) }
}

fn resolved(mut report: ReportRecord, by_user_id: u64) -> ReportRecord {
    report.resolution = Some(Resolution { action: ReportAction::Dismiss, by_user_id, at_ms: 99 });
    report
}

/// Live accounts `u{id}@example.com`.
async fn people(store: &dyn UserStore, ids: impl IntoIterator<Item = u64>) {
    for id in ids {
        store.insert_user(&user(id, &format!("u{id}@example.com"), None)).await.unwrap();
    }
}

async fn set_deleted(store: &dyn UserStore, user_id: u64, deleted_at_ms: Option<u64>) {
    let mut record = store.get_user(user_id).await.unwrap().expect("the account exists");
    record.deleted_at_ms = deleted_at_ms;
    store.update_user(&record).await.unwrap();
}

/// Makes two users friends the way the core does: a request, then its acceptance.
async fn befriend(store: &dyn UserStore, from: u64, to: u64, edge_id: u64, direct_channel_id: u64) {
    assert_eq!(store.send_friend_request(from, to, edge_id).await.unwrap(), RequestOutcome::Sent);
    assert!(store.accept_friend_request(from, to, edge_id + 1, direct_channel_id).await.unwrap().is_some());
}

fn ids_of(edges: Vec<Edge>) -> Vec<u64> {
    edges.into_iter().map(|e| e.user_id).collect()
}

/// Checks a user's counters against their lists and returns `(followers, following)`.
async fn counted(store: &dyn UserStore, user_id: u64) -> (u64, u64) {
    let followers = store.list_followers(user_id, None, ALL).await.unwrap().len() as u64;
    let following = store.list_following(user_id, None, ALL).await.unwrap().len() as u64;
    let counts = store.follow_counts(user_id).await.unwrap();
    assert_eq!(counts, (followers, following), "user {user_id}: counters equal the lists");
    assert_eq!(store.following_ids(user_id).await.unwrap().len() as u64, following);
    let friends = store.list_friends(user_id, None, ALL).await.unwrap().len() as u64;
    assert_eq!(store.friend_count(user_id).await.unwrap(), friends, "user {user_id}: friend count equals the list");
    counts
}

/// Drives every future at once on this task (they borrow the store, so they are not spawned;
/// a backend that hands work to threads still runs it in parallel).
async fn concurrently<F: Future<Output = ()>>(futures: impl IntoIterator<Item = F>) {
    let mut pending: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pending.is_empty() { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
}

// ---- accounts and sessions

pub async fn emails_and_usernames_are_unique_case_insensitively(store: &dyn UserStore) {
    store.insert_user(&user(1, "Ada@Example.com", Some("Ada"))).await.unwrap();
    assert_eq!(store.insert_user(&user(2, "ada@example.COM", None)).await, Err(StoreError::EmailTaken));
    assert!(matches!(
        store.insert_user(&user(3, "b@example.com", Some("ADA"))).await,
        Err(StoreError::UsernameTaken(_))
    ));
    assert_eq!(store.get_user(2).await.unwrap(), None, "a refused insert stores nothing");
    assert_eq!(store.get_user(3).await.unwrap(), None);
    assert_eq!(store.get_user_by_email("ada@example.com").await.unwrap().unwrap().user_id, 1);
    assert_eq!(store.get_user_by_username("ada").await.unwrap().unwrap().user_id, 1);
}

pub async fn username_changes_move_the_index(store: &dyn UserStore) {
    store.insert_user(&user(1, "a@example.com", Some("alpha"))).await.unwrap();
    store.insert_user(&user(2, "b@example.com", Some("beta"))).await.unwrap();
    let mut a = store.get_user(1).await.unwrap().unwrap();
    a.username = Some("Beta".into());
    assert!(matches!(store.update_user(&a).await, Err(StoreError::UsernameTaken(_))));
    a.username = Some("gamma".into());
    store.update_user(&a).await.unwrap();
    assert!(store.get_user_by_username("alpha").await.unwrap().is_none());
    assert_eq!(store.get_user_by_username("gamma").await.unwrap().unwrap().user_id, 1);
    // the freed name can be taken again
    let mut b = store.get_user(2).await.unwrap().unwrap();
    b.username = Some("alpha".into());
    store.update_user(&b).await.unwrap();
}

pub async fn update_user_moving_email_refuses_a_taken_one(store: &dyn UserStore) {
    store.insert_user(&user(1, "a@example.com", None)).await.unwrap();
    store.insert_user(&user(2, "b@example.com", None)).await.unwrap();
    let mut a = store.get_user(1).await.unwrap().unwrap();
    a.email = "B@Example.com".into();
    assert_eq!(store.update_user(&a).await, Err(StoreError::EmailTaken));
    assert_eq!(store.get_user(1).await.unwrap().unwrap().email, "a@example.com", "a refused update changes nothing");
    a.email = "c@example.com".into();
    store.update_user(&a).await.unwrap();
    assert!(store.get_user_by_email("a@example.com").await.unwrap().is_none());
    assert_eq!(store.get_user_by_email("c@example.com").await.unwrap().unwrap().user_id, 1);
    a.email = "C@Example.COM".into();
    store.update_user(&a).await.unwrap();
    assert_eq!(store.get_user_by_email("c@example.com").await.unwrap().unwrap().email, "C@Example.COM");
    store.insert_user(&user(3, "a@example.com", None)).await.expect("the old email is free again");
}

pub async fn list_users_is_newest_first_and_pages_by_id(store: &dyn UserStore) {
    people(store, [3, 1, 5, 2, 4]).await;
    let ids = |users: Vec<UserRecord>| users.into_iter().map(|u| u.user_id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_users(None, 2).await.unwrap()), [5, 4]);
    assert_eq!(ids(store.list_users(Some(4), 2).await.unwrap()), [3, 2]);
    assert_eq!(ids(store.list_users(Some(2), 2).await.unwrap()), [1]);
    assert!(store.list_users(Some(1), 2).await.unwrap().is_empty());
}

pub async fn users_deleted_before_lists_due_deletions_oldest_first(store: &dyn UserStore) {
    people(store, 1..=4).await;
    set_deleted(store, 1, Some(300)).await;
    set_deleted(store, 2, Some(100)).await;
    set_deleted(store, 3, Some(200)).await;
    let ids = |users: Vec<UserRecord>| users.into_iter().map(|u| u.user_id).collect::<Vec<_>>();
    assert_eq!(ids(store.users_deleted_before(200, 10).await.unwrap()), [2, 3], "the cutoff is inclusive");
    assert_eq!(ids(store.users_deleted_before(1000, 2).await.unwrap()), [2, 3]);
    set_deleted(store, 2, None).await;
    assert_eq!(ids(store.users_deleted_before(1000, 10).await.unwrap()), [3, 1], "a restored account is not due");
    store.erase_user(3).await.unwrap();
    assert_eq!(ids(store.users_deleted_before(1000, 10).await.unwrap()), [1], "an erased account is not due");
}

pub async fn erase_user_frees_email_and_username_and_ends_sessions(store: &dyn UserStore) {
    store.insert_user(&user(1, "Ada@example.com", Some("Ada"))).await.unwrap();
    store.insert_user(&user(2, "bob@example.com", Some("bob"))).await.unwrap();
    store.insert_session(&session("s1", 1, "h1")).await.unwrap();
    store.insert_session(&session("s2", 1, "h2")).await.unwrap();
    store.end_session("s2", 50).await.unwrap();
    store.insert_session(&session("other", 2, "o")).await.unwrap();
    store.erase_user(1).await.unwrap();
    assert!(store.get_user(1).await.unwrap().is_none());
    assert!(store.get_user_by_email("ada@example.com").await.unwrap().is_none());
    assert!(store.get_user_by_username("ada").await.unwrap().is_none());
    assert!(store.get_session("s1").await.unwrap().is_none());
    assert!(store.get_session("s2").await.unwrap().is_none());
    assert!(store.get_session("other").await.unwrap().is_some(), "other users keep theirs");
    store.erase_user(1).await.expect("erasing twice is a no-op");
    store.insert_user(&user(3, "ada@example.com", Some("ADA"))).await.expect("email and username are free again");
    assert_eq!(store.get_user_by_username("bob").await.unwrap().unwrap().user_id, 2);
}

pub async fn refresh_rotation_detects_reuse(store: &dyn UserStore) {
    store.insert_session(&session("s1", 1, "h1")).await.unwrap();
    assert!(matches!(store.rotate_session("s1", "h1", "h2", 10).await.unwrap(), Rotation::Rotated(_)));
    assert!(matches!(store.rotate_session("s1", "h2", "h3", 11).await.unwrap(), Rotation::Rotated(_)));
    assert_eq!(store.rotate_session("s1", "never-issued", "hx", 12).await.unwrap(), Rotation::Unknown);
    assert!(matches!(store.rotate_session("s1", "h1", "h4", 13).await.unwrap(), Rotation::Reused(_)));
    assert_eq!(store.rotate_session("s1", "h3", "h5", 14).await.unwrap(), Rotation::Ended, "reuse ended the session");
    assert_eq!(store.sessions_ended_since(13).await.unwrap(), vec!["s1".to_owned()]);
    assert_eq!(store.rotate_session("nope", "h", "h", 1).await.unwrap(), Rotation::Unknown);
}

pub async fn sessions_end_one_or_all(store: &dyn UserStore) {
    for sid in ["a", "b", "c"] {
        store.insert_session(&session(sid, 7, sid)).await.unwrap();
    }
    store.insert_session(&session("other", 8, "o")).await.unwrap();
    assert!(store.end_session("a", 100).await.unwrap().is_some());
    assert!(store.end_session("a", 101).await.unwrap().is_none(), "ending twice is a no-op");
    let ended: Vec<_> = store.end_user_sessions(7, 200).await.unwrap().into_iter().map(|s| s.session_id).collect();
    assert_eq!(ended.len(), 2);
    assert!(ended.contains(&"b".to_owned()) && ended.contains(&"c".to_owned()));
    assert!(store.get_session("other").await.unwrap().unwrap().ended_at_ms.is_none());
    assert_eq!(store.sessions_ended_since(150).await.unwrap().len(), 2);
}

// ---- follows

pub async fn batch_reads_answer_like_single_reads_in_order(store: &dyn UserStore) {
    store.insert_user(&user(1, "a@example.com", None)).await.unwrap();
    store.insert_user(&user(2, "b@example.com", None)).await.unwrap();
    store.follow(1, 2, 10).await.unwrap();
    let users = store.get_users(&[2, 404, 1]).await.unwrap();
    let ids: Vec<Option<u64>> = users.iter().map(|u| u.as_ref().map(|u| u.user_id)).collect();
    assert_eq!(ids, [Some(2), None, Some(1)]);
    assert_eq!(store.follow_counts_of(&[2, 1, 404]).await.unwrap(), [(1, 0), (0, 1), (0, 0)]);
    assert!(store.get_users(&[]).await.unwrap().is_empty());
}

pub async fn follow_and_unfollow_keep_counters_equal_to_the_lists(store: &dyn UserStore) {
    assert!(store.follow(1, 2, 10).await.unwrap());
    assert!(!store.follow(1, 2, 11).await.unwrap(), "following twice is a no-op");
    assert!(store.follow(3, 2, 12).await.unwrap());
    assert!(store.follow(2, 1, 13).await.unwrap());
    assert_eq!(counted(store, 1).await, (1, 1));
    assert_eq!(counted(store, 2).await, (2, 1));
    assert_eq!(counted(store, 3).await, (0, 1));
    assert_eq!(
        store.list_followers(2, None, ALL).await.unwrap(),
        [Edge { user_id: 3, edge_id: 12 }, Edge { user_id: 1, edge_id: 10 }],
        "the repeated follow kept its first edge"
    );
    assert!(store.unfollow(1, 2).await.unwrap());
    assert!(!store.unfollow(1, 2).await.unwrap(), "unfollowing twice is a no-op");
    assert!(!store.unfollow(4, 2).await.unwrap(), "unfollowing who one never followed is a no-op");
    assert_eq!(counted(store, 1).await, (1, 0));
    assert_eq!(counted(store, 2).await, (1, 1));
    assert!(store.following_ids(1).await.unwrap().is_empty());
    assert_eq!(store.following_ids(2).await.unwrap(), [1]);
    assert_eq!(counted(store, 9).await, (0, 0), "a user with no follows counts zero");
}

pub async fn concurrent_follow_toggles_end_with_counters_equal_to_the_lists(store: &dyn UserStore) {
    let pairs = [(1, 2), (2, 1), (3, 1), (1, 3), (4, 1)];
    concurrently((0..200u64).map(|i| async move {
        let (follower, followee) = pairs[i as usize % pairs.len()];
        if (i / pairs.len() as u64).is_multiple_of(2) {
            store.follow(follower, followee, 1000 + i).await.unwrap();
        } else {
            store.unfollow(follower, followee).await.unwrap();
        }
        store.follow_counts(followee).await.unwrap();
    }))
    .await;
    for user_id in 1..=4 {
        counted(store, user_id).await;
    }
    for (follower, followee) in pairs {
        let listed_out = store.following_ids(follower).await.unwrap().contains(&followee);
        let listed_in = ids_of(store.list_followers(followee, None, ALL).await.unwrap()).contains(&follower);
        assert_eq!(listed_out, listed_in, "{follower} → {followee} is on both lists or neither");
        assert_eq!(store.standing(follower, followee).await.unwrap().following, listed_out);
    }
}

pub async fn lists_are_newest_first_and_page_by_edge_id(store: &dyn UserStore) {
    for (other, edge_id) in [(2, 10), (3, 30), (4, 20), (5, 50), (6, 40)] {
        store.follow(other, 1, edge_id).await.unwrap();
        store.follow(1, other, edge_id + 1).await.unwrap();
        store.block(7, other, edge_id + 2, 1).await.unwrap();
    }
    let edges =
        |pairs: &[(u64, u64)]| pairs.iter().map(|&(user_id, edge_id)| Edge { user_id, edge_id }).collect::<Vec<_>>();
    assert_eq!(store.list_followers(1, None, 2).await.unwrap(), edges(&[(5, 50), (6, 40)]));
    assert_eq!(store.list_followers(1, Some(40), 2).await.unwrap(), edges(&[(3, 30), (4, 20)]));
    assert_eq!(store.list_followers(1, Some(20), 2).await.unwrap(), edges(&[(2, 10)]));
    assert!(store.list_followers(1, Some(10), 2).await.unwrap().is_empty());
    assert_eq!(store.list_following(1, None, 3).await.unwrap(), edges(&[(5, 51), (6, 41), (3, 31)]));
    assert_eq!(store.list_following(1, Some(31), 3).await.unwrap(), edges(&[(4, 21), (2, 11)]));
    assert_eq!(store.list_blocked(7, None, 2).await.unwrap(), edges(&[(5, 52), (6, 42)]));
    assert_eq!(store.list_blocked(7, Some(42), 10).await.unwrap(), edges(&[(3, 32), (4, 22), (2, 12)]));
    assert!(store.list_followers(1, None, 0).await.unwrap().is_empty(), "a zero limit lists nothing");

    // friends and requests page the same way, requests merging both directions
    for (other, edge_id) in [(12, 100), (13, 300), (14, 200)] {
        befriend(store, 11, other, edge_id, 9000 + other).await;
    }
    let friends = store.list_friends(11, None, 2).await.unwrap();
    assert_eq!(friends.iter().map(|f| (f.user_id, f.edge_id)).collect::<Vec<_>>(), [(13, 301), (14, 201)]);
    assert_eq!(friends[0].direct_channel_id, 9013);
    let rest = store.list_friends(11, Some(201), 2).await.unwrap();
    assert_eq!(rest.iter().map(|f| (f.user_id, f.edge_id)).collect::<Vec<_>>(), [(12, 101)]);

    store.send_friend_request(21, 22, 500).await.unwrap();
    store.send_friend_request(23, 21, 700).await.unwrap();
    store.send_friend_request(21, 24, 600).await.unwrap();
    store.send_friend_request(25, 21, 400).await.unwrap();
    let request = |user_id, direction, edge_id| PendingRequest { user_id, direction, edge_id };
    let (incoming, outgoing) = (Direction::Incoming, Direction::Outgoing);
    assert_eq!(
        store.list_friend_requests(21, None, None, 3).await.unwrap(),
        [request(23, incoming, 700), request(24, outgoing, 600), request(22, outgoing, 500)]
    );
    assert_eq!(store.list_friend_requests(21, None, Some(500), 3).await.unwrap(), [request(25, incoming, 400)]);
    assert_eq!(
        store.list_friend_requests(21, Some(incoming), None, 10).await.unwrap(),
        [request(23, incoming, 700), request(25, incoming, 400)]
    );
    assert_eq!(
        store.list_friend_requests(21, Some(outgoing), Some(600), 10).await.unwrap(),
        [request(22, outgoing, 500)]
    );
    assert_eq!(store.list_friend_requests(22, None, None, 10).await.unwrap(), [request(21, incoming, 500)]);
}

// ---- parking, restoring and erasing a deleted user's graph

/// User 1 follows 2 and 4, is followed by 2 and 3, is friends with 2 and 3, has asked 4 and
/// been asked by 5.
async fn a_social_user(store: &dyn UserStore) {
    people(store, 1..=5).await;
    store.follow(1, 2, 10).await.unwrap();
    store.follow(2, 1, 11).await.unwrap();
    store.follow(3, 1, 12).await.unwrap();
    store.follow(1, 4, 13).await.unwrap();
    store.follow(2, 3, 14).await.unwrap();
    befriend(store, 1, 2, 20, 902).await;
    befriend(store, 3, 1, 22, 903).await;
    store.send_friend_request(1, 4, 24).await.unwrap();
    store.send_friend_request(5, 1, 25).await.unwrap();
}

async fn delete_and_park(store: &dyn UserStore, user_id: u64) {
    set_deleted(store, user_id, Some(1000)).await;
    store.park_edges(user_id).await.unwrap();
    store.park_friends(user_id).await.unwrap();
}

async fn restore(store: &dyn UserStore, user_id: u64) {
    set_deleted(store, user_id, None).await;
    store.restore_edges(user_id).await.unwrap();
    store.restore_friends(user_id).await.unwrap();
}

pub async fn parked_edges_leave_counts_and_come_back_on_restore(store: &dyn UserStore) {
    a_social_user(store).await;
    let followers_before = store.list_followers(1, None, ALL).await.unwrap();
    let following_before = store.list_following(1, None, ALL).await.unwrap();
    let friends_before = store.list_friends(1, None, ALL).await.unwrap();

    delete_and_park(store, 1).await;
    store.park_edges(1).await.expect("parking twice is a no-op");
    store.park_friends(1).await.expect("parking twice is a no-op");
    assert_eq!(counted(store, 1).await, (0, 0));
    assert_eq!(counted(store, 2).await, (0, 1), "2 keeps only its follow of 3");
    assert_eq!(counted(store, 3).await, (1, 0));
    assert_eq!(counted(store, 4).await, (0, 0));
    assert_eq!(store.friend_count(2).await.unwrap(), 0);
    assert_eq!(store.get_friendship(3, 1).await.unwrap(), None);
    assert_eq!(store.standing(2, 1).await.unwrap(), Standing::default());
    assert!(store.list_friend_requests(4, None, None, ALL).await.unwrap().is_empty(), "requests are dropped");
    assert!(store.list_friend_requests(5, None, None, ALL).await.unwrap().is_empty());

    restore(store, 1).await;
    store.restore_edges(1).await.expect("restoring twice is a no-op");
    store.restore_friends(1).await.expect("restoring twice is a no-op");
    assert_eq!(store.list_followers(1, None, ALL).await.unwrap(), followers_before, "the same edges come back");
    assert_eq!(store.list_following(1, None, ALL).await.unwrap(), following_before);
    assert_eq!(store.list_friends(1, None, ALL).await.unwrap(), friends_before);
    assert_eq!(counted(store, 1).await, (2, 2));
    assert_eq!(counted(store, 2).await, (1, 2));
    assert_eq!(counted(store, 3).await, (1, 1));
    assert_eq!(counted(store, 4).await, (1, 0));
    assert_eq!(
        store.get_friendship(2, 1).await.unwrap(),
        Some(Friendship { user_id: 1, edge_id: 21, direct_channel_id: 902 })
    );
    assert_eq!(store.friend_count(3).await.unwrap(), 1);
    assert!(store.list_friend_requests(1, None, None, ALL).await.unwrap().is_empty(), "requests stay dropped");
}

pub async fn erase_forgets_parked_edges(store: &dyn UserStore) {
    a_social_user(store).await;
    delete_and_park(store, 1).await;
    store.erase_edges(1).await.unwrap();
    store.erase_friends(1).await.unwrap();
    store.restore_edges(1).await.unwrap();
    store.restore_friends(1).await.unwrap();
    assert_eq!(counted(store, 1).await, (0, 0), "nothing comes back after an erase");
    assert_eq!(counted(store, 2).await, (0, 1));
    assert_eq!(store.friend_count(1).await.unwrap(), 0);
    assert_eq!(store.friend_count(2).await.unwrap(), 0);
}

pub async fn a_restore_skips_users_erased_or_deleted_meanwhile(store: &dyn UserStore) {
    a_social_user(store).await;
    delete_and_park(store, 1).await;
    // 2 is erased for good the way the sweeper does it; 3 is deleted and still restorable
    delete_and_park(store, 2).await;
    store.erase_edges(2).await.unwrap();
    store.erase_friends(2).await.unwrap();
    store.erase_blocks(2).await.unwrap();
    store.erase_user(2).await.unwrap();
    delete_and_park(store, 3).await;

    restore(store, 1).await;
    assert_eq!(store.list_following(1, None, ALL).await.unwrap(), [Edge { user_id: 4, edge_id: 13 }]);
    assert!(store.list_followers(1, None, ALL).await.unwrap().is_empty());
    assert!(store.list_friends(1, None, ALL).await.unwrap().is_empty());
    assert_eq!(counted(store, 1).await, (0, 1));
    assert_eq!(counted(store, 2).await, (0, 0));
    assert_eq!(counted(store, 3).await, (0, 0));
    assert_eq!(counted(store, 4).await, (1, 0));
}

pub async fn a_restore_skips_pairs_blocked_meanwhile(store: &dyn UserStore) {
    a_social_user(store).await;
    delete_and_park(store, 1).await;
    store.block(2, 1, 50, 7).await.unwrap();
    store.block(1, 3, 51, 8).await.unwrap();
    restore(store, 1).await;
    assert_eq!(store.list_following(1, None, ALL).await.unwrap(), [Edge { user_id: 4, edge_id: 13 }]);
    assert!(store.list_followers(1, None, ALL).await.unwrap().is_empty(), "no follow crosses a block");
    assert!(store.list_friends(1, None, ALL).await.unwrap().is_empty(), "no friendship crosses a block");
    for user_id in 1..=4 {
        counted(store, user_id).await;
    }
}

// ---- blocks

pub async fn a_block_ends_follows_requests_and_friendship_both_ways_and_raises_epochs(store: &dyn UserStore) {
    people(store, 1..=5).await;
    store.follow(1, 2, 10).await.unwrap();
    store.follow(2, 1, 11).await.unwrap();
    store.follow(1, 5, 12).await.unwrap();
    befriend(store, 2, 1, 13, 900).await;
    store.send_friend_request(3, 1, 15).await.unwrap();
    store.send_friend_request(1, 4, 16).await.unwrap();

    assert!(store.block(1, 2, 20, 100).await.unwrap());
    assert_eq!(store.standing(1, 2).await.unwrap(), Standing { blocking: true, ..Standing::default() });
    assert_eq!(store.standing(2, 1).await.unwrap(), Standing { blocked_by: true, ..Standing::default() });
    assert_eq!(counted(store, 1).await, (0, 1), "only the follow of 5 is left");
    assert_eq!(counted(store, 2).await, (0, 0));
    assert_eq!(store.friend_count(1).await.unwrap(), 0);
    assert_eq!(store.get_friendship(2, 1).await.unwrap(), None);
    assert_eq!((store.block_epoch(1).await.unwrap(), store.block_epoch(2).await.unwrap()), (100, 100));

    assert!(store.block(1, 3, 21, 200).await.unwrap());
    assert!(store.block(4, 1, 22, 300).await.unwrap());
    assert!(store.list_friend_requests(1, None, None, ALL).await.unwrap().is_empty(), "requests end both ways");
    assert!(store.list_friend_requests(3, None, None, ALL).await.unwrap().is_empty());
    assert!(store.list_friend_requests(4, None, None, ALL).await.unwrap().is_empty());
    assert_eq!(store.block_epoch(3).await.unwrap(), 200);
    assert_eq!(store.block_epoch(1).await.unwrap(), 300);
    assert_eq!(store.block_epoch(5).await.unwrap(), 0, "a user no block involved has epoch 0");

    assert!(!store.block(1, 2, 23, 400).await.unwrap(), "blocking twice is a no-op");
    assert_eq!(store.list_blocked(1, None, ALL).await.unwrap().len(), 2);
    assert_eq!((store.block_epoch(1).await.unwrap(), store.block_epoch(2).await.unwrap()), (400, 400));
    assert!(store.unblock(1, 2, 500).await.unwrap());
    assert_eq!((store.block_epoch(1).await.unwrap(), store.block_epoch(2).await.unwrap()), (500, 500));
    assert!(!store.unblock(1, 2, 600).await.unwrap(), "unblocking twice is a no-op");
    assert!(!store.unblock(1, 2, 10).await.unwrap());
    assert!(store.block_epoch(1).await.unwrap() >= 500, "an epoch never goes down");
    assert_eq!(store.standing(1, 2).await.unwrap(), Standing::default(), "what the block ended stays ended");
    assert_eq!(store.send_friend_request(2, 1, 30).await.unwrap(), RequestOutcome::Sent);
}

pub async fn block_sets_and_standing_read_both_directions(store: &dyn UserStore) {
    people(store, 1..=7).await;
    store.block(1, 2, 10, 100).await.unwrap();
    store.block(3, 1, 11, 200).await.unwrap();
    store.follow(1, 4, 12).await.unwrap();
    store.follow(4, 1, 13).await.unwrap();
    store.send_friend_request(1, 5, 14).await.unwrap();
    store.send_friend_request(6, 1, 15).await.unwrap();
    befriend(store, 1, 7, 16, 900).await;

    assert_eq!(store.block_sets(1).await.unwrap(), BlockSets { blocking: vec![2], blocked_by: vec![3], epoch: 200 });
    assert_eq!(store.block_sets(2).await.unwrap(), BlockSets { blocking: vec![], blocked_by: vec![1], epoch: 100 });
    assert_eq!(store.block_sets(3).await.unwrap(), BlockSets { blocking: vec![1], blocked_by: vec![], epoch: 200 });
    assert_eq!(store.block_sets(9).await.unwrap(), BlockSets::default());

    let only = |f: fn(&mut Standing)| {
        let mut s = Standing::default();
        f(&mut s);
        s
    };
    assert_eq!(store.standing(1, 2).await.unwrap(), only(|s| s.blocking = true));
    assert_eq!(store.standing(2, 1).await.unwrap(), only(|s| s.blocked_by = true));
    assert_eq!(store.standing(1, 3).await.unwrap(), only(|s| s.blocked_by = true));
    assert_eq!(
        store.standing(1, 4).await.unwrap(),
        only(|s| {
            s.following = true;
            s.followed_by = true;
        })
    );
    assert_eq!(store.standing(1, 5).await.unwrap(), only(|s| s.request_sent = true));
    assert_eq!(store.standing(5, 1).await.unwrap(), only(|s| s.request_received = true));
    assert_eq!(store.standing(1, 6).await.unwrap(), only(|s| s.request_received = true));
    assert_eq!(store.standing(7, 1).await.unwrap(), only(|s| s.friends = true));
    assert_eq!(store.standing(1, 9).await.unwrap(), Standing::default());
}

pub async fn erase_blocks_forgets_blocks_both_ways(store: &dyn UserStore) {
    store.block(1, 2, 10, 100).await.unwrap();
    store.block(3, 1, 11, 200).await.unwrap();
    store.block(3, 2, 12, 300).await.unwrap();
    store.erase_blocks(1).await.unwrap();
    assert!(store.list_blocked(1, None, ALL).await.unwrap().is_empty());
    assert_eq!(ids_of(store.list_blocked(3, None, ALL).await.unwrap()), [2]);
    let sets = store.block_sets(2).await.unwrap();
    assert_eq!(sets.blocked_by, [3], "only blocks of the erased user go");
    assert_eq!(store.standing(3, 1).await.unwrap(), Standing::default());
}

// ---- friends

pub async fn a_friend_request_either_way_is_one_request(store: &dyn UserStore) {
    assert_eq!(store.send_friend_request(1, 2, 10).await.unwrap(), RequestOutcome::Sent);
    assert_eq!(store.send_friend_request(1, 2, 11).await.unwrap(), RequestOutcome::AlreadySent);
    assert_eq!(store.send_friend_request(2, 1, 12).await.unwrap(), RequestOutcome::TheyAsked);
    let outgoing = PendingRequest { user_id: 2, direction: Direction::Outgoing, edge_id: 10 };
    assert_eq!(store.list_friend_requests(1, None, None, ALL).await.unwrap(), [outgoing], "one request, the first");
    assert!(store.list_friend_requests(2, Some(Direction::Outgoing), None, ALL).await.unwrap().is_empty());

    let accepted = store.accept_friend_request(1, 2, 20, 900).await.unwrap();
    assert_eq!(accepted, Some(Friendship { user_id: 1, edge_id: 20, direct_channel_id: 900 }), "as 2 sees it");
    assert_eq!(store.send_friend_request(1, 2, 21).await.unwrap(), RequestOutcome::AlreadyFriends);
    assert_eq!(store.send_friend_request(2, 1, 22).await.unwrap(), RequestOutcome::AlreadyFriends);
    assert!(store.list_friend_requests(1, None, None, ALL).await.unwrap().is_empty());
    assert!(store.list_friend_requests(2, None, None, ALL).await.unwrap().is_empty());
    assert_eq!(
        store.get_friendship(1, 2).await.unwrap(),
        Some(Friendship { user_id: 2, edge_id: 20, direct_channel_id: 900 })
    );
    assert_eq!(store.list_friends(2, None, ALL).await.unwrap(), [accepted.unwrap()]);
    assert_eq!((store.friend_count(1).await.unwrap(), store.friend_count(2).await.unwrap()), (1, 1));

    assert_eq!(store.send_friend_request(3, 1, 30).await.unwrap(), RequestOutcome::Sent);
    assert!(store.delete_friend_request(3, 1).await.unwrap());
    assert!(!store.delete_friend_request(3, 1).await.unwrap(), "deleting twice is a no-op");
    assert!(store.list_friend_requests(1, None, None, ALL).await.unwrap().is_empty());
    assert_eq!(store.send_friend_request(1, 3, 31).await.unwrap(), RequestOutcome::Sent, "a deleted request is gone");

    assert!(store.remove_friend(2, 1).await.unwrap());
    assert!(!store.remove_friend(1, 2).await.unwrap(), "removing twice is a no-op");
    assert_eq!((store.friend_count(1).await.unwrap(), store.friend_count(2).await.unwrap()), (0, 0));
    assert_eq!(store.get_friendship(1, 2).await.unwrap(), None);
    assert!(store.list_friends(1, None, ALL).await.unwrap().is_empty());
}

pub async fn accepting_is_atomic_and_needs_the_request(store: &dyn UserStore) {
    assert_eq!(store.accept_friend_request(1, 2, 10, 900).await.unwrap(), None, "no request, nothing to accept");
    assert_eq!(store.get_friendship(2, 1).await.unwrap(), None);
    store.send_friend_request(2, 1, 11).await.unwrap();
    assert_eq!(store.accept_friend_request(1, 2, 12, 900).await.unwrap(), None, "the request goes the other way");
    assert_eq!(store.friend_count(1).await.unwrap(), 0);
    assert!(store.standing(1, 2).await.unwrap().request_received, "the real request is untouched");

    let accepted = std::sync::Mutex::new(Vec::new());
    concurrently((0..8u64).map(|i| {
        let accepted = &accepted;
        async move {
            if let Some(friendship) = store.accept_friend_request(2, 1, 100 + i, 1000 + i).await.unwrap() {
                accepted.lock().unwrap().push(friendship);
            }
        }
    }))
    .await;
    let accepted = accepted.into_inner().unwrap();
    assert_eq!(accepted.len(), 1, "one acceptance wins");
    assert_eq!(store.get_friendship(1, 2).await.unwrap(), Some(accepted[0]));
    assert_eq!((store.friend_count(1).await.unwrap(), store.friend_count(2).await.unwrap()), (1, 1));
    assert_eq!(store.list_friends(2, None, ALL).await.unwrap().len(), 1);
    assert!(store.list_friend_requests(1, None, None, ALL).await.unwrap().is_empty());
    assert!(store.list_friend_requests(2, None, None, ALL).await.unwrap().is_empty());
}

// ---- reports

pub async fn reports_by_one_reporter_of_one_target_merge_while_open(store: &dyn UserStore) {
    let first = store.upsert_report(&report(10, 1, of_user(5), 100)).await.unwrap();
    assert_eq!(first, report(10, 1, of_user(5), 100));
    let mut again = report(11, 1, of_user(5), 200);
    again.category = ReportCategory::Harassment;
    again.text = "worse now".into();
    let merged = store.upsert_report(&again).await.unwrap();
    assert_eq!(merged.report_id, 10, "merged into the open report");
    assert_eq!((merged.category, merged.text.as_str()), (ReportCategory::Harassment, "worse now"));
    assert_eq!((merged.created_at_ms, merged.updated_at_ms), (100, 200));
    assert_eq!(store.get_report(10).await.unwrap(), Some(merged.clone()));
    assert_eq!(store.get_report(11).await.unwrap(), None);

    let chat = ReportTarget { user_id: 5, chat: Some((70, 80)), status: None };
    assert_eq!(store.upsert_report(&report(12, 1, chat, 300)).await.unwrap().report_id, 12, "a chat is another target");
    assert_eq!(store.upsert_report(&report(13, 2, of_user(5), 300)).await.unwrap().report_id, 13, "another reporter");
    assert_eq!(store.upsert_report(&report(14, 1, chat, 400)).await.unwrap().report_id, 12, "the same chat merges");
    let other_chat = ReportTarget { user_id: 5, chat: Some((71, 80)), status: None };
    assert_eq!(store.upsert_report(&report(15, 1, other_chat, 400)).await.unwrap().report_id, 15);

    assert!(store.resolve_report(&resolved(merged, 9)).await.unwrap());
    assert_eq!(
        store.upsert_report(&report(16, 1, of_user(5), 500)).await.unwrap().report_id,
        16,
        "a resolved report absorbs nothing"
    );
}

pub async fn status_reports_round_trip_and_merge_per_status(store: &dyn UserStore) {
    let status = report(10, 1, of_status(5, 70), 100);
    assert_eq!(store.upsert_report(&status).await.unwrap(), status);
    assert_eq!(store.get_report(10).await.unwrap(), Some(status.clone()), "the status is kept");
    let mut again = report(11, 1, of_status(5, 70), 200);
    again.text = "again".into();
    let merged = store.upsert_report(&again).await.unwrap();
    assert_eq!((merged.report_id, merged.target, merged.text.as_str()), (10, of_status(5, 70), "again"));
    assert_eq!(store.get_report(10).await.unwrap(), Some(merged.clone()));
    assert_eq!(store.get_report(11).await.unwrap(), None);

    let user = store.upsert_report(&report(12, 1, of_user(5), 300)).await.unwrap();
    assert_eq!(user.report_id, 12, "the author is another target");
    let chat = ReportTarget { user_id: 5, chat: Some((70, 80)), status: None };
    assert_eq!(
        store.upsert_report(&report(13, 1, chat, 300)).await.unwrap().report_id,
        13,
        "a chat of the same id too"
    );
    assert_eq!(store.upsert_report(&report(14, 1, of_status(5, 71), 300)).await.unwrap().report_id, 14);
    assert_eq!(store.upsert_report(&report(15, 2, of_status(5, 70), 300)).await.unwrap().report_id, 15);
    let ids = |reports: Vec<ReportRecord>| reports.into_iter().map(|r| r.report_id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_reports(false, Some(5), None, ALL).await.unwrap()), [15, 14, 13, 12, 10]);

    assert!(store.resolve_report(&resolved(merged, 9)).await.unwrap());
    let after = store.upsert_report(&report(16, 1, of_status(5, 70), 500)).await.unwrap();
    assert_eq!((after.report_id, after.target), (16, of_status(5, 70)), "a resolved report absorbs nothing");
    assert_eq!(store.upsert_report(&report(17, 1, of_status(5, 70), 600)).await.unwrap().report_id, 16);
    assert_eq!(ids(store.list_reports(true, Some(5), None, ALL).await.unwrap()), [10]);
}

pub async fn a_report_resolves_only_once(store: &dyn UserStore) {
    let stored = store.upsert_report(&report(10, 1, of_user(5), 100)).await.unwrap();
    assert!(store.resolve_report(&resolved(stored.clone(), 9)).await.unwrap());
    assert!(!store.resolve_report(&resolved(stored.clone(), 8)).await.unwrap(), "resolved already");
    let now = store.get_report(10).await.unwrap().unwrap();
    assert_eq!(now.resolution.map(|r| r.by_user_id), Some(9), "the first resolution stands");
    assert_eq!(now.text, stored.text);
    assert!(!store.resolve_report(&resolved(report(99, 1, of_user(5), 1), 9)).await.unwrap(), "no such report");
    assert!(store.list_reports(false, None, None, ALL).await.unwrap().is_empty());
    assert_eq!(store.list_reports(true, Some(5), None, ALL).await.unwrap().len(), 1);
}

pub async fn reports_list_by_status_and_target_newest_first(store: &dyn UserStore) {
    for (id, reporter, target) in [(10, 1, 5), (20, 2, 5), (30, 3, 6), (40, 4, 5), (50, 5, 6)] {
        store.upsert_report(&report(id, reporter, of_user(target), id)).await.unwrap();
    }
    store.resolve_report(&resolved(report(20, 2, of_user(5), 20), 9)).await.unwrap();
    store.resolve_report(&resolved(report(50, 5, of_user(6), 50), 9)).await.unwrap();
    let ids = |reports: Vec<ReportRecord>| reports.into_iter().map(|r| r.report_id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_reports(false, None, None, ALL).await.unwrap()), [40, 30, 10]);
    assert_eq!(ids(store.list_reports(false, None, None, 2).await.unwrap()), [40, 30]);
    assert_eq!(ids(store.list_reports(false, None, Some(30), 2).await.unwrap()), [10]);
    assert_eq!(ids(store.list_reports(true, None, None, ALL).await.unwrap()), [50, 20]);
    assert_eq!(ids(store.list_reports(false, Some(5), None, ALL).await.unwrap()), [40, 10]);
    assert_eq!(ids(store.list_reports(false, Some(5), Some(40), ALL).await.unwrap()), [10]);
    assert_eq!(ids(store.list_reports(true, Some(6), None, ALL).await.unwrap()), [50]);
    assert!(store.list_reports(false, Some(7), None, ALL).await.unwrap().is_empty());
}

// ---- directory

pub async fn directory_prefix_search_and_replacement(store: &dyn UserStore) {
    let terms = |ts: &[&str]| ts.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>();
    let entries = |es: &[(&str, u64)]| es.iter().map(|&(t, id)| (t.to_owned(), id)).collect::<Vec<_>>();
    store.index_terms(2, &terms(&["n:ada", "u:adam"])).await.unwrap();
    store.index_terms(1, &terms(&["n:ada lovelace", "n:ada", "u:ada_l", "n:lovelace"])).await.unwrap();
    store.index_terms(3, &terms(&["n:bob"])).await.unwrap();

    assert_eq!(
        store.search_terms("n:ada", None, 10).await.unwrap(),
        entries(&[("n:ada", 1), ("n:ada", 2), ("n:ada lovelace", 1)]),
        "term order, then id"
    );
    assert_eq!(store.search_terms("u:ada", None, 10).await.unwrap(), entries(&[("u:ada_l", 1), ("u:adam", 2)]));
    assert_eq!(store.search_terms("n:", None, 2).await.unwrap(), entries(&[("n:ada", 1), ("n:ada", 2)]));
    assert_eq!(
        store.search_terms("n:", Some(("n:ada".into(), 2)), 2).await.unwrap(),
        entries(&[("n:ada lovelace", 1), ("n:bob", 3)])
    );
    assert_eq!(store.search_terms("n:", Some(("n:bob".into(), 3)), 10).await.unwrap(), entries(&[("n:lovelace", 1)]));
    assert!(store.search_terms("n:x", None, 10).await.unwrap().is_empty());
    assert!(store.search_terms("u:adam", Some(("u:adam".into(), 2)), 10).await.unwrap().is_empty());

    store.index_terms(1, &terms(&["n:grace", "u:ada_l"])).await.unwrap();
    assert_eq!(store.search_terms("n:ada", None, 10).await.unwrap(), entries(&[("n:ada", 2)]), "old terms are gone");
    assert_eq!(store.search_terms("n:g", None, 10).await.unwrap(), entries(&[("n:grace", 1)]));
    assert_eq!(store.search_terms("u:", None, 10).await.unwrap(), entries(&[("u:ada_l", 1), ("u:adam", 2)]));

    store.index_terms(1, &[]).await.unwrap();
    assert_eq!(
        store.search_terms("", None, 10).await.unwrap(),
        entries(&[("n:ada", 2), ("n:bob", 3), ("u:adam", 2)]),
        "empty terms take the user out"
    );
}

// ---- recommendations

/// Every `(candidate, score)` of a user, in listing order.
async fn recommended(store: &dyn UserStore, user: u64) -> Vec<(u64, u64)> {
    store.list_recommendations(user, ALL).await.unwrap()
}

pub async fn recommendation_bumps_add_up_and_list_highest_first_then_higher_candidate(store: &dyn UserStore) {
    assert!(recommended(store, 1).await.is_empty(), "no candidates yet");
    store.bump_recommendations(1, &[(10, 3), (11, 1)], ALL).await.unwrap();
    store.bump_recommendations(1, &[(11, 2), (12, 3), (13, 5), (10, 0)], ALL).await.unwrap();
    // a candidate named twice in one bump gets both its points; a new one starts at its points
    store.bump_recommendations(1, &[(14, 1), (15, 0), (14, 1)], ALL).await.unwrap();
    assert_eq!(recommended(store, 1).await, [(13, 5), (12, 3), (11, 3), (10, 3), (14, 2), (15, 0)]);
    assert_eq!(store.list_recommendations(1, 2).await.unwrap(), [(13, 5), (12, 3)]);
    assert!(store.list_recommendations(1, 0).await.unwrap().is_empty());
    store.bump_recommendations(1, &[(10, 1)], ALL).await.unwrap();
    assert_eq!(
        recommended(store, 1).await,
        [(13, 5), (10, 4), (12, 3), (11, 3), (14, 2), (15, 0)],
        "a bump moves it up"
    );
}

pub async fn recommendations_past_the_cap_go_lowest_first_lower_candidate_first(store: &dyn UserStore) {
    store.bump_recommendations(1, &[(10, 5), (11, 2), (12, 2), (13, 1)], 3).await.unwrap();
    assert_eq!(recommended(store, 1).await, [(10, 5), (12, 2), (11, 2)], "the lowest score goes");
    store.bump_recommendations(1, &[(14, 2)], 3).await.unwrap();
    assert_eq!(recommended(store, 1).await, [(10, 5), (14, 2), (12, 2)], "on equal scores the lower candidate goes");
    store.bump_recommendations(1, &[(11, 1)], 3).await.unwrap();
    assert_eq!(recommended(store, 1).await, [(10, 5), (14, 2), (12, 2)], "a newcomer below the cap goes at once");
    store.bump_recommendations(1, &[(12, 4)], 3).await.unwrap();
    assert_eq!(recommended(store, 1).await, [(12, 6), (10, 5), (14, 2)]);
    store.bump_recommendations(1, &[], 2).await.unwrap();
    assert_eq!(recommended(store, 1).await, [(12, 6), (10, 5)], "a bump of nothing still trims to its cap");
    store.bump_recommendations(1, &[(14, 1)], 3).await.unwrap();
    assert_eq!(recommended(store, 1).await, [(12, 6), (10, 5), (14, 1)], "a trimmed candidate starts over");
    store.bump_recommendations(1, &[(15, 9)], 0).await.unwrap();
    assert!(recommended(store, 1).await.is_empty(), "a cap of 0 holds nothing");
}

pub async fn recommendations_list_in_rank_order_and_a_limit_takes_the_first(store: &dyn UserStore) {
    let candidates: Vec<(u64, u64)> = (1..=20).map(|c| (c * 7 % 23, c % 4)).collect();
    store.bump_recommendations(1, &candidates, ALL).await.unwrap();
    let all = recommended(store, 1).await;
    assert_eq!(all.len(), 20);
    assert!(all.windows(2).all(|w| (w[0].1, w[0].0) > (w[1].1, w[1].0)), "highest first, then higher candidate");
    for limit in [1, 3, 19, 20, 21] {
        assert_eq!(store.list_recommendations(1, limit).await.unwrap(), all[..limit.min(20)], "the first {limit}");
    }
    // a dropped entry leaves the rest in order
    store.drop_recommendations(1, &[all[4].0]).await.unwrap();
    assert_eq!(store.list_recommendations(1, 6).await.unwrap(), [&all[..4], &all[5..7]].concat());
}

pub async fn dropped_recommendations_are_gone_and_come_back_from_zero(store: &dyn UserStore) {
    store.bump_recommendations(1, &[(10, 1), (11, 2), (12, 3)], ALL).await.unwrap();
    store.drop_recommendations(1, &[11, 99]).await.unwrap();
    assert_eq!(recommended(store, 1).await, [(12, 3), (10, 1)], "absent candidates are no-ops");
    store.drop_recommendations(1, &[]).await.unwrap();
    store.drop_recommendations(2, &[10]).await.unwrap();
    assert_eq!(recommended(store, 1).await, [(12, 3), (10, 1)], "another user's drop changes nothing here");
    store.bump_recommendations(1, &[(11, 1)], ALL).await.unwrap();
    assert_eq!(recommended(store, 1).await, [(12, 3), (11, 1), (10, 1)], "a dropped candidate starts over");
    store.drop_recommendations(1, &[10, 11, 12]).await.unwrap();
    assert!(recommended(store, 1).await.is_empty());
}

pub async fn erase_recommendations_forgets_only_that_users_and_users_are_independent(store: &dyn UserStore) {
    for user in 1..=3 {
        store.bump_recommendations(user, &[(10, user), (11, 5)], ALL).await.unwrap();
    }
    store.bump_recommendations(2, &[(12, 9)], 2).await.unwrap();
    assert_eq!(recommended(store, 1).await, [(11, 5), (10, 1)]);
    assert_eq!(recommended(store, 2).await, [(12, 9), (11, 5)], "a cap trims only its own user");
    assert_eq!(recommended(store, 3).await, [(11, 5), (10, 3)]);
    store.erase_recommendations(2).await.unwrap();
    assert!(recommended(store, 2).await.is_empty());
    assert_eq!(recommended(store, 1).await, [(11, 5), (10, 1)], "neighbours keep theirs");
    assert_eq!(recommended(store, 3).await, [(11, 5), (10, 3)]);
    store.erase_recommendations(2).await.expect("erasing twice is a no-op");
    store.bump_recommendations(2, &[(10, 1)], ALL).await.unwrap();
    assert_eq!(recommended(store, 2).await, [(10, 1)], "an erased user starts over");
}

/// Instantiates the suite for a backend constructor returning `(guard, store)`.
#[macro_export]
macro_rules! user_store_suite {
    ($($make:tt)+) => {
        chatmesh_platform::conformance_suite!(
            user_store_conformance,
            $crate::store::conformance,
            ($($make)+),
            [
                emails_and_usernames_are_unique_case_insensitively,
                username_changes_move_the_index,
                update_user_moving_email_refuses_a_taken_one,
                list_users_is_newest_first_and_pages_by_id,
                users_deleted_before_lists_due_deletions_oldest_first,
                erase_user_frees_email_and_username_and_ends_sessions,
                refresh_rotation_detects_reuse,
                sessions_end_one_or_all,
                follow_and_unfollow_keep_counters_equal_to_the_lists,
                batch_reads_answer_like_single_reads_in_order,
                concurrent_follow_toggles_end_with_counters_equal_to_the_lists,
                lists_are_newest_first_and_page_by_edge_id,
                parked_edges_leave_counts_and_come_back_on_restore,
                erase_forgets_parked_edges,
                a_restore_skips_users_erased_or_deleted_meanwhile,
                a_restore_skips_pairs_blocked_meanwhile,
                a_block_ends_follows_requests_and_friendship_both_ways_and_raises_epochs,
                block_sets_and_standing_read_both_directions,
                erase_blocks_forgets_blocks_both_ways,
                a_friend_request_either_way_is_one_request,
                accepting_is_atomic_and_needs_the_request,
                reports_by_one_reporter_of_one_target_merge_while_open,
                status_reports_round_trip_and_merge_per_status,
                a_report_resolves_only_once,
                reports_list_by_status_and_target_newest_first,
                directory_prefix_search_and_replacement,
                recommendation_bumps_add_up_and_list_highest_first_then_higher_candidate,
                recommendations_past_the_cap_go_lowest_first_lower_candidate_first,
                recommendations_list_in_rank_order_and_a_limit_takes_the_first,
                dropped_recommendations_are_gone_and_come_back_from_zero,
                erase_recommendations_forgets_only_that_users_and_users_are_independent
            ]
        );
    };
}
