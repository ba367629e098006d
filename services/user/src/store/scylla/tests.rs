//! The ScyllaDB user store on the schema-checked in-memory executor: the conformance suite (and
//! on a real server when `CHATMESH_TEST_SCYLLA` is set), the golden files of what each operation
//! runs (`src/store/golden/`), and the races and interruptions the pair rows are built for.

use std::sync::{Arc, Mutex};

use chatmesh_cql::{Call, MemoryCql, golden::taken};

use super::{graph::at_us, *};
use crate::{
    model::{Direction, Edge, ReportAction, ReportCategory, ReportRecord, ReportTarget, RequestOutcome, Resolution},
    store::{Blocks, Directory, Follows, Friends, Recommendations, Reports, conformance::session, conformance::user},
};

mod memory {
    use super::*;

    crate::user_store_suite!(|| ((), ScyllaUserStore::new(Cql::memory(MemoryCql::migrated()))));
}

mod scylla {
    use super::*;

    // skipped with a printed "skipped: CHATMESH_TEST_SCYLLA not set" unless a server is configured
    crate::user_store_suite!(async |case: &'static str| async move {
        let cql = chatmesh_cql::migrate::test_keyspace(case).await?;
        Some(((), ScyllaUserStore::new(cql)))
    });
}

/// 2023-11-14T22:13:20Z, day 19675.
const NOW: u64 = 1_700_000_000_000;

/// A store for setting a scene and one recording what the operation under test runs, on the
/// same data; a fixed clock and pages of 2 rows so paging shows.
fn scene() -> (ScyllaUserStore, ScyllaUserStore, Arc<Mutex<Vec<Call>>>) {
    let memory = MemoryCql::migrated();
    let setup = ScyllaUserStore { clock: || NOW, ..ScyllaUserStore::new(Cql::memory(memory.clone())) };
    let (cql, log) = Cql::memory(memory).recording();
    let store = ScyllaUserStore { clock: || NOW, page: 2, ..ScyllaUserStore::new(cql) };
    (setup, store, log)
}

fn deleted(mut user: UserRecord, at_ms: u64) -> UserRecord {
    user.deleted_at_ms = Some(at_ms);
    user
}

fn report(report_id: u64, reporter_id: u64, target_user_id: u64) -> ReportRecord {
    ReportRecord {
        report_id,
        reporter_id,
        target: ReportTarget { user_id: target_user_id, chat: None, status: None },
        category: ReportCategory::Spam,
        text: "spam".into(),
        created_at_ms: NOW,
        updated_at_ms: NOW,
        resolution: None,
    }
}

fn status_report(report_id: u64, reporter_id: u64, author_id: u64, status_id: u64) -> ReportRecord {
    let target = ReportTarget { user_id: author_id, chat: None, status: Some(status_id) };
    ReportRecord { target, ..report(report_id, reporter_id, author_id) }
}

fn resolution() -> Option<Resolution> {
    Some(Resolution { action: ReportAction::Dismiss, by_user_id: 9, at_ms: NOW + 1 })
}

#[tokio::test]
async fn every_statement_parses_against_the_migrations() {
    ScyllaUserStore::new(Cql::memory(MemoryCql::migrated())).prepare().await.unwrap();
}

#[test]
fn list_rows_of_a_later_change_of_a_pair_are_written_later() {
    // the edge id's milliseconds, in microseconds, plus the generation
    let edge_id = (5_000u64 << 22) | 7;
    assert_eq!(at_us(edge_id, 3), (chatmesh_platform::ids::EPOCH_MS as i64 + 5_000) * 1000 + 3);
    assert!(at_us(edge_id, 4) > at_us(edge_id, 3));
}

#[tokio::test]
async fn a_follow_whose_list_write_stalls_loses_to_the_unfollow_after_it() {
    let memory = MemoryCql::migrated();
    let (pod_a, pod_b) = (ScyllaUserStore::new(memory.client(0)), ScyllaUserStore::new(memory.client(0)));
    let mut pause = memory.pause_before(&PUT_FOLLOWER);
    let follow = tokio::spawn(async move { pod_a.follow(1, 2, 10).await });
    pause.reached().await;
    // pod A's transaction applied; its list batch is stalled (then stamped later than B's delete)
    assert!(pod_b.unfollow(1, 2).await.unwrap());
    pause.release();
    assert!(follow.await.unwrap().unwrap());
    assert!(pod_b.list_followers(2, None, 10).await.unwrap().is_empty(), "the stalled write stays deleted");
    assert!(pod_b.list_following(1, None, 10).await.unwrap().is_empty());
    assert_eq!(pod_b.follow_counts(2).await.unwrap(), (0, 0));
    assert_eq!(pod_b.follow_counts(1).await.unwrap(), (0, 0));
    assert!(!pod_b.standing(1, 2).await.unwrap().following);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follow_toggles_racing_on_threads_and_skewed_pods_end_with_counters_equal_to_the_lists() {
    let memory = MemoryCql::migrated();
    // three processes whose clocks disagree by seconds: list rows carry their change's
    // timestamp, pairs and counts their Paxos ballots, so no clock decides anything
    let pods: Vec<ScyllaUserStore> =
        [-2_000, 0, 1_500].into_iter().map(|skew| ScyllaUserStore::new(memory.client(skew))).collect();
    let pairs = [(1u64, 2u64), (2, 1), (3, 1), (1, 3), (4, 1)];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300u64 {
        let store = pods[i as usize % pods.len()].clone();
        let (follower, followee) = pairs[i as usize % pairs.len()];
        // why statement by statement: each call runs on a worker thread, so the calls of
        // different tasks interleave between their statements
        tasks.spawn(async move {
            if i % 2 == 0 {
                store.follow(follower, followee, 1000 + i).await.unwrap();
            } else {
                store.unfollow(follower, followee).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let store = &pods[1];
    for user_id in 1..=4 {
        let followers = store.list_followers(user_id, None, 1000).await.unwrap().len() as u64;
        let following = store.list_following(user_id, None, 1000).await.unwrap().len() as u64;
        assert_eq!(store.follow_counts(user_id).await.unwrap(), (followers, following), "user {user_id}");
    }
    for (follower, followee) in pairs {
        let listed = store.following_ids(follower).await.unwrap().contains(&followee);
        let listed_in = store.list_followers(followee, None, 1000).await.unwrap().iter().any(|e| e.user_id == follower);
        assert_eq!(listed, listed_in, "{follower} -> {followee} on both lists or neither");
        assert_eq!(store.standing(follower, followee).await.unwrap().following, listed);
    }
}

#[tokio::test]
async fn a_follow_reusing_its_edge_id_after_an_unfollow_is_listed_again() {
    let store = ScyllaUserStore::new(Cql::memory(MemoryCql::migrated()));
    assert!(store.follow(1, 2, 10).await.unwrap());
    assert!(store.unfollow(1, 2).await.unwrap());
    // why: the unfollow's delete and this write share the row; the generation orders them
    assert!(store.follow(1, 2, 10).await.unwrap());
    assert_eq!(store.list_followers(2, None, 10).await.unwrap(), [Edge { user_id: 1, edge_id: 10 }]);
    assert_eq!(store.follow_counts(2).await.unwrap(), (1, 0));
}

#[tokio::test]
async fn a_follow_stopped_before_its_counts_is_repaired_by_a_recount() {
    let memory = MemoryCql::migrated();
    let crashed = ScyllaUserStore::new(memory.client(0));
    let store = ScyllaUserStore::new(memory.client(0));
    let mut pause = memory.pause_before(&SET_FOLLOWERS_COUNT);
    let stopped = crashed.clone();
    let follow = tokio::spawn(async move { stopped.follow(1, 2, 10).await });
    pause.reached().await;
    crashed.cql.crash();
    pause.release();
    assert!(follow.await.unwrap().is_err(), "the process stopped mid-follow");
    assert_eq!(store.list_followers(2, None, 10).await.unwrap().len(), 1, "the follow and its lists stand");
    assert_eq!(store.follow_counts(2).await.unwrap(), (0, 0), "its counts were not written");
    store.recount_follows(2).await.unwrap();
    store.recount_follows(1).await.unwrap();
    assert_eq!(store.follow_counts(2).await.unwrap(), (1, 0));
    assert_eq!(store.follow_counts(1).await.unwrap(), (0, 1));
    assert!(store.unfollow(1, 2).await.unwrap());
    assert_eq!(store.follow_counts(2).await.unwrap(), (0, 0), "later changes count from the repaired value");
}

#[tokio::test]
async fn a_list_row_left_by_an_interrupted_unfollow_is_removed_when_parking_meets_it() {
    let memory = MemoryCql::migrated();
    let store = ScyllaUserStore::new(memory.client(0));
    store.insert_user(&user(1, "a@example.com", None)).await.unwrap();
    store.insert_user(&user(2, "b@example.com", None)).await.unwrap();
    store.follow(2, 1, 10).await.unwrap();
    // the unfollow's transaction applies, its list deletes are lost (a timeout, never replayed)
    memory.hold_writes_of(&DELETE_FOLLOWER, 1);
    assert!(store.unfollow(2, 1).await.is_err());
    assert_eq!(store.list_followers(1, None, 10).await.unwrap().len(), 1, "a stale row");
    store.park_edges(1).await.unwrap();
    assert!(store.list_followers(1, None, 10).await.unwrap().is_empty());
    assert!(store.list_following(2, None, 10).await.unwrap().is_empty());
    store.restore_edges(1).await.unwrap();
    assert!(store.list_followers(1, None, 10).await.unwrap().is_empty(), "nothing was parked: nothing comes back");
}

async fn insert_user() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_user(&user(1, "Ada@Example.com", Some("Ada"))).await.unwrap();
    // accepted; refused for a taken username (the email claim is undone); for a taken email
    store.insert_user(&user(2, "Bob@Example.com", Some("Bob"))).await.unwrap();
    let refused = store.insert_user(&user(3, "carol@example.com", Some("ADA"))).await;
    assert_eq!(refused, Err(StoreError::UsernameTaken("ADA".into())));
    assert_eq!(store.insert_user(&user(4, "ada@example.COM", None)).await, Err(StoreError::EmailTaken));
    taken(&log)
}

async fn get_user() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_user(&user(1, "Ada@Example.com", Some("Ada"))).await.unwrap();
    assert_eq!(store.get_user(1).await.unwrap(), Some(user(1, "Ada@Example.com", Some("Ada"))));
    taken(&log)
}

async fn get_user_by_email() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_user(&user(1, "Ada@Example.com", Some("Ada"))).await.unwrap();
    assert_eq!(store.get_user_by_email("ada@example.com").await.unwrap().map(|u| u.user_id), Some(1));
    taken(&log)
}

async fn get_user_by_username() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_user(&user(1, "Ada@Example.com", Some("Ada"))).await.unwrap();
    assert_eq!(store.get_user_by_username("ada").await.unwrap().map(|u| u.user_id), Some(1));
    taken(&log)
}

async fn update_user() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_user(&user(1, "Ada@Example.com", Some("Ada"))).await.unwrap();
    setup.insert_user(&user(2, "Bob@Example.com", Some("Bob"))).await.unwrap();
    // refused for a taken username (the new email's claim is undone); then renamed and moved
    // (claims, the write, releases of the old ones); then deleted (listed for the sweeper)
    let mut ada = user(1, "ada@new.example", Some("BOB"));
    assert_eq!(store.update_user(&ada).await, Err(StoreError::UsernameTaken("BOB".into())));
    ada.username = Some("Countess".into());
    ada.updated_at_ms = NOW;
    store.update_user(&ada).await.unwrap();
    assert_eq!(setup.get_user_by_username("ada").await.unwrap(), None);
    assert_eq!(setup.get_user_by_email("ada@example.com").await.unwrap(), None);
    store.update_user(&deleted(ada, NOW)).await.unwrap();
    taken(&log)
}

async fn list_users() -> Vec<Call> {
    let (setup, store, log) = scene();
    for id in 1..=3 {
        setup.insert_user(&user(id, &format!("u{id}@example.com"), None)).await.unwrap();
    }
    let ids: Vec<u64> = store.list_users(Some(3), 2).await.unwrap().into_iter().map(|u| u.user_id).collect();
    assert_eq!(ids, [2, 1]);
    taken(&log)
}

async fn users_deleted_before() -> Vec<Call> {
    let (setup, store, log) = scene();
    for id in 1..=4 {
        setup.insert_user(&user(id, &format!("u{id}@example.com"), None)).await.unwrap();
    }
    // a day whose only deletion was undone (dropped from the index: it ended days ago); three
    // entries in one millisecond, the first stale (its account is not deleted: a batch that
    // has not landed), so a page of 2 yields one account and the rest of that millisecond is read
    let old = NOW - 10 * DAY_MS;
    setup.update_user(&deleted(user(4, "u4@example.com", None), old)).await.unwrap();
    setup.update_user(&user(4, "u4@example.com", None)).await.unwrap();
    setup.cql.execute(&LIST_DELETED, values![day_of(NOW - 5), NOW - 5, 1u64]).await.unwrap();
    for id in 2..=3 {
        setup.update_user(&deleted(user(id, &format!("u{id}@example.com"), None), NOW - 5)).await.unwrap();
    }
    let ids: Vec<u64> = store.users_deleted_before(NOW, 2).await.unwrap().into_iter().map(|u| u.user_id).collect();
    assert_eq!(ids, [2, 3]);
    taken(&log)
}

async fn erase_user() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_user(&deleted(user(1, "Ada@Example.com", Some("Ada")), NOW)).await.unwrap();
    setup.insert_session(&session("s1", 1, "h1")).await.unwrap();
    setup.index_terms(1, &["u:ada".to_owned()]).await.unwrap();
    store.erase_user(1).await.unwrap();
    assert_eq!(setup.get_user(1).await.unwrap(), None);
    taken(&log)
}

async fn insert_session() -> Vec<Call> {
    let (_, store, log) = scene();
    store.insert_session(&session("s1", 7, "h1")).await.unwrap();
    taken(&log)
}

async fn get_session() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_session(&session("s1", 7, "h1")).await.unwrap();
    assert_eq!(store.get_session("s1").await.unwrap(), Some(session("s1", 7, "h1")));
    taken(&log)
}

async fn rotate_session() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_session(&session("s1", 7, "h1")).await.unwrap();
    // rotated; then the used hash presented again: reuse ends the session
    assert!(matches!(store.rotate_session("s1", "h1", "h2", NOW).await.unwrap(), Rotation::Rotated(_)));
    assert!(matches!(store.rotate_session("s1", "h1", "h3", NOW + 1).await.unwrap(), Rotation::Reused(_)));
    taken(&log)
}

async fn end_session() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.insert_session(&session("s1", 7, "h1")).await.unwrap();
    assert!(store.end_session("s1", NOW).await.unwrap().is_some());
    taken(&log)
}

async fn end_user_sessions() -> Vec<Call> {
    let (setup, store, log) = scene();
    for sid in ["a", "b", "c"] {
        setup.insert_session(&session(sid, 7, sid)).await.unwrap();
    }
    setup.end_session("b", NOW - 1).await.unwrap();
    // two pages of ids (2 + 1); "b" has already ended
    let ended = store.end_user_sessions(7, NOW).await.unwrap();
    assert_eq!(ended.iter().map(|s| s.session_id.as_str()).collect::<Vec<_>>(), ["a", "c"]);
    taken(&log)
}

async fn sessions_ended_since() -> Vec<Call> {
    let (setup, store, log) = scene();
    for sid in ["a", "b", "c", "d"] {
        setup.insert_session(&session(sid, 7, sid)).await.unwrap();
    }
    setup.end_session("a", NOW - DAY_MS - 1).await.unwrap();
    // three in one millisecond: a page of 2 cuts through them
    for sid in ["b", "c", "d"] {
        setup.end_session(sid, NOW - 5).await.unwrap();
    }
    // from yesterday to tomorrow
    let sids = store.sessions_ended_since(NOW - DAY_MS).await.unwrap();
    assert_eq!(sids, ["b", "c", "d"]);
    taken(&log)
}

async fn follow() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.follow(1, 2, 10).await.unwrap();
    setup.unfollow(1, 2).await.unwrap();
    // the pair's third change (its generation was 2); then a repeated follow changes nothing
    assert!(store.follow(1, 2, 11).await.unwrap());
    assert!(!store.follow(1, 2, 12).await.unwrap());
    taken(&log)
}

async fn unfollow() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.follow(1, 2, 10).await.unwrap();
    assert!(store.unfollow(1, 2).await.unwrap());
    assert!(!store.unfollow(1, 2).await.unwrap());
    taken(&log)
}

async fn list_followers() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.follow(1, 3, 10).await.unwrap();
    setup.follow(2, 3, 20).await.unwrap();
    assert_eq!(store.list_followers(3, Some(20), 10).await.unwrap(), [Edge { user_id: 1, edge_id: 10 }]);
    taken(&log)
}

async fn list_following() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.follow(1, 2, 10).await.unwrap();
    assert_eq!(store.list_following(1, None, 10).await.unwrap(), [Edge { user_id: 2, edge_id: 10 }]);
    taken(&log)
}

async fn follow_counts() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.follow(1, 2, 10).await.unwrap();
    assert_eq!(store.follow_counts(2).await.unwrap(), (1, 0));
    taken(&log)
}

async fn following_ids() -> Vec<Call> {
    let (setup, store, log) = scene();
    for (followee, edge_id) in [(2, 10), (3, 20), (4, 30)] {
        setup.follow(1, followee, edge_id).await.unwrap();
    }
    // two pages (2 + 1)
    assert_eq!(store.following_ids(1).await.unwrap(), [4, 3, 2]);
    taken(&log)
}

async fn recount_follows() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.follow(1, 2, 10).await.unwrap();
    setup.follow(3, 2, 20).await.unwrap();
    // a count off by one (as a process stopped before its counts leaves it)
    assert!(setup.cql.lwt(&SET_FOLLOWERS_COUNT, values![1i64, 2u64, 2i64]).await.unwrap());
    store.recount_follows(2).await.unwrap();
    assert_eq!(setup.follow_counts(2).await.unwrap(), (2, 0));
    taken(&log)
}

/// Users 1..=3 live; 1 follows 2, 2 and 3 follow 1; 1 and 3 are friends; 1 asked 2.
async fn social(setup: &ScyllaUserStore) {
    for id in 1..=3 {
        setup.insert_user(&user(id, &format!("u{id}@example.com"), None)).await.unwrap();
    }
    setup.follow(1, 2, 10).await.unwrap();
    setup.follow(2, 1, 11).await.unwrap();
    setup.follow(3, 1, 12).await.unwrap();
    setup.send_friend_request(3, 1, 20).await.unwrap();
    setup.accept_friend_request(3, 1, 21, 900).await.unwrap();
    setup.send_friend_request(1, 2, 22).await.unwrap();
}

async fn park_edges() -> Vec<Call> {
    let (setup, store, log) = scene();
    social(&setup).await;
    setup.update_user(&deleted(user(1, "u1@example.com", None), NOW)).await.unwrap();
    store.park_edges(1).await.unwrap();
    assert_eq!(setup.follow_counts(1).await.unwrap(), (0, 0));
    taken(&log)
}

async fn restore_edges() -> Vec<Call> {
    let (setup, store, log) = scene();
    social(&setup).await;
    setup.update_user(&deleted(user(1, "u1@example.com", None), NOW)).await.unwrap();
    setup.park_edges(1).await.unwrap();
    // 3 blocks 1 meanwhile: their follow stays parked away
    setup.block(3, 1, 30, 5).await.unwrap();
    setup.update_user(&user(1, "u1@example.com", None)).await.unwrap();
    store.restore_edges(1).await.unwrap();
    assert_eq!(setup.follow_counts(1).await.unwrap(), (1, 1));
    taken(&log)
}

async fn erase_edges() -> Vec<Call> {
    let (setup, store, log) = scene();
    social(&setup).await;
    setup.park_edges(1).await.unwrap();
    store.erase_edges(1).await.unwrap();
    taken(&log)
}

async fn block() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.follow(1, 2, 10).await.unwrap();
    setup.send_friend_request(2, 1, 11).await.unwrap();
    // ends the follow and the request; the second block only raises the epochs
    assert!(store.block(1, 2, 20, 100).await.unwrap());
    assert!(!store.block(1, 2, 21, 200).await.unwrap());
    taken(&log)
}

async fn unblock() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.block(1, 2, 20, 100).await.unwrap();
    assert!(store.unblock(1, 2, 200).await.unwrap());
    assert!(!store.unblock(1, 2, 300).await.unwrap());
    taken(&log)
}

async fn list_blocked() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.block(1, 2, 20, 100).await.unwrap();
    assert_eq!(store.list_blocked(1, None, 10).await.unwrap(), [Edge { user_id: 2, edge_id: 20 }]);
    taken(&log)
}

async fn block_sets() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.block(1, 2, 20, 100).await.unwrap();
    setup.block(3, 1, 21, 200).await.unwrap();
    let sets = store.block_sets(1).await.unwrap();
    assert_eq!((sets.blocking, sets.blocked_by, sets.epoch), (vec![2], vec![3], 200));
    taken(&log)
}

async fn standing() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.follow(1, 2, 10).await.unwrap();
    setup.send_friend_request(2, 1, 11).await.unwrap();
    let standing = store.standing(1, 2).await.unwrap();
    assert!(standing.following && standing.request_received && !standing.followed_by);
    taken(&log)
}

async fn block_epoch() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.block(1, 2, 20, 100).await.unwrap();
    assert_eq!(store.block_epoch(2).await.unwrap(), 100);
    taken(&log)
}

async fn erase_blocks() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.block(1, 2, 20, 100).await.unwrap();
    setup.block(3, 1, 21, 200).await.unwrap();
    store.erase_blocks(1).await.unwrap();
    assert_eq!(setup.block_sets(1).await.unwrap().blocking, Vec::<u64>::new());
    taken(&log)
}

async fn send_friend_request() -> Vec<Call> {
    let (_, store, log) = scene();
    // sent; then again either way: nothing changes
    assert_eq!(store.send_friend_request(1, 2, 10).await.unwrap(), RequestOutcome::Sent);
    assert_eq!(store.send_friend_request(2, 1, 11).await.unwrap(), RequestOutcome::TheyAsked);
    taken(&log)
}

async fn delete_friend_request() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.send_friend_request(1, 2, 10).await.unwrap();
    assert!(store.delete_friend_request(1, 2).await.unwrap());
    taken(&log)
}

async fn list_friend_requests() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.send_friend_request(1, 2, 10).await.unwrap();
    setup.send_friend_request(3, 1, 11).await.unwrap();
    let requests = store.list_friend_requests(1, None, None, 10).await.unwrap();
    let seen: Vec<(u64, Direction)> = requests.iter().map(|r| (r.user_id, r.direction)).collect();
    assert_eq!(seen, [(3, Direction::Incoming), (2, Direction::Outgoing)]);
    taken(&log)
}

async fn accept_friend_request() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.send_friend_request(1, 2, 10).await.unwrap();
    assert!(store.accept_friend_request(1, 2, 11, 900).await.unwrap().is_some());
    taken(&log)
}

async fn remove_friend() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.send_friend_request(1, 2, 10).await.unwrap();
    setup.accept_friend_request(1, 2, 11, 900).await.unwrap();
    assert!(store.remove_friend(2, 1).await.unwrap());
    taken(&log)
}

async fn get_friendship() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.send_friend_request(1, 2, 10).await.unwrap();
    setup.accept_friend_request(1, 2, 11, 900).await.unwrap();
    assert_eq!(store.get_friendship(2, 1).await.unwrap().map(|f| f.direct_channel_id), Some(900));
    taken(&log)
}

async fn list_friends() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.send_friend_request(1, 2, 10).await.unwrap();
    setup.accept_friend_request(1, 2, 11, 900).await.unwrap();
    assert_eq!(store.list_friends(1, None, 10).await.unwrap().len(), 1);
    taken(&log)
}

async fn friend_count() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.send_friend_request(1, 2, 10).await.unwrap();
    setup.accept_friend_request(1, 2, 11, 900).await.unwrap();
    assert_eq!(store.friend_count(1).await.unwrap(), 1);
    taken(&log)
}

async fn park_friends() -> Vec<Call> {
    let (setup, store, log) = scene();
    social(&setup).await;
    store.park_friends(1).await.unwrap();
    assert_eq!(setup.friend_count(3).await.unwrap(), 0);
    taken(&log)
}

async fn restore_friends() -> Vec<Call> {
    let (setup, store, log) = scene();
    social(&setup).await;
    setup.park_friends(1).await.unwrap();
    store.restore_friends(1).await.unwrap();
    assert_eq!(setup.friend_count(3).await.unwrap(), 1);
    taken(&log)
}

async fn erase_friends() -> Vec<Call> {
    let (setup, store, log) = scene();
    social(&setup).await;
    setup.park_friends(1).await.unwrap();
    store.erase_friends(1).await.unwrap();
    taken(&log)
}

async fn upsert_report() -> Vec<Call> {
    let (_, store, log) = scene();
    // a new report; then one merged into it
    store.upsert_report(&report(10, 1, 5)).await.unwrap();
    let mut again = report(11, 1, 5);
    again.category = ReportCategory::Harassment;
    assert_eq!(store.upsert_report(&again).await.unwrap().report_id, 10);
    taken(&log)
}

async fn upsert_report_after_an_interrupted_resolution() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.upsert_report(&report(10, 1, 5)).await.unwrap();
    // resolved, its claim left behind: the next report releases it and claims anew
    let resolved = ReportRecord { resolution: resolution(), ..report(10, 1, 5) };
    setup
        .cql
        .lwt(&UPDATE_REPORT, values![serde_json::to_string(&resolved).unwrap(), true, 1i64, 10u64, 0i64])
        .await
        .unwrap();
    assert_eq!(store.upsert_report(&report(11, 1, 5)).await.unwrap().report_id, 11);
    taken(&log)
}

async fn get_report() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.upsert_report(&report(10, 1, 5)).await.unwrap();
    assert_eq!(store.get_report(10).await.unwrap(), Some(report(10, 1, 5)));
    taken(&log)
}

async fn list_reports() -> Vec<Call> {
    let (setup, store, log) = scene();
    for (id, reporter) in [(10, 1), (20, 2), (30, 3)] {
        setup.upsert_report(&report(id, reporter, 5)).await.unwrap();
    }
    let ids = |reports: Vec<ReportRecord>| reports.into_iter().map(|r| r.report_id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_reports(false, None, None, 2).await.unwrap()), [30, 20]);
    assert_eq!(ids(store.list_reports(false, Some(5), Some(20), 10).await.unwrap()), [10]);
    taken(&log)
}

async fn resolve_report() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.upsert_report(&report(10, 1, 5)).await.unwrap();
    let resolved = ReportRecord { resolution: resolution(), ..report(10, 1, 5) };
    assert!(store.resolve_report(&resolved).await.unwrap());
    assert!(!store.resolve_report(&resolved).await.unwrap());
    taken(&log)
}

async fn upsert_status_report() -> Vec<Call> {
    let (_, store, log) = scene();
    // a new report of a status, claimed in open_status_reports; then one merged into it
    store.upsert_report(&status_report(10, 1, 5, 70)).await.unwrap();
    assert_eq!(store.upsert_report(&status_report(11, 1, 5, 70)).await.unwrap().report_id, 10);
    taken(&log)
}

async fn resolve_status_report() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.upsert_report(&status_report(10, 1, 5, 70)).await.unwrap();
    let resolved = ReportRecord { resolution: resolution(), ..status_report(10, 1, 5, 70) };
    assert!(store.resolve_report(&resolved).await.unwrap());
    taken(&log)
}

async fn index_terms() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.index_terms(1, &["n:ada".to_owned(), "u:ada".to_owned()]).await.unwrap();
    store.index_terms(1, &["n:ada".to_owned(), "u:countess".to_owned()]).await.unwrap();
    taken(&log)
}

async fn search_terms() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.index_terms(1, &["n:ada".to_owned(), "n:adams".to_owned()]).await.unwrap();
    setup.index_terms(2, &["n:ada".to_owned(), "n:bo".to_owned()]).await.unwrap();
    // a prefix within one key, resuming inside a term; a shorter one, over the keys it covers
    let entries = store.search_terms("n:ada", Some(("n:ada".to_owned(), 1)), 10).await.unwrap();
    assert_eq!(entries, [("n:ada".to_owned(), 2), ("n:adams".to_owned(), 1)]);
    let entries = store.search_terms("n:", Some(("n:adams".to_owned(), 1)), 10).await.unwrap();
    assert_eq!(entries, [("n:bo".to_owned(), 2)]);
    taken(&log)
}

async fn bump_recommendations() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.bump_recommendations(1, &[(10, 5), (11, 2), (12, 1)], 3).await.unwrap();
    // read in two pages (2 + 1); 11 rises, 13 comes in, 12 falls past the cap and 14 with it
    store.bump_recommendations(1, &[(11, 4), (13, 3), (14, 1)], 3).await.unwrap();
    assert_eq!(setup.list_recommendations(1, 10).await.unwrap(), [(11, 6), (10, 5), (13, 3)]);
    taken(&log)
}

async fn drop_recommendations() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.bump_recommendations(1, &[(10, 5), (11, 2)], 10).await.unwrap();
    store.drop_recommendations(1, &[11, 99]).await.unwrap();
    assert_eq!(setup.list_recommendations(1, 10).await.unwrap(), [(10, 5)]);
    taken(&log)
}

async fn list_recommendations() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.bump_recommendations(1, &[(10, 5), (11, 2), (12, 2)], 10).await.unwrap();
    // the whole partition, then sorted: of the two of score 2, the higher candidate first
    assert_eq!(store.list_recommendations(1, 2).await.unwrap(), [(10, 5), (12, 2)]);
    taken(&log)
}

async fn erase_recommendations() -> Vec<Call> {
    let (setup, store, log) = scene();
    setup.bump_recommendations(1, &[(10, 5)], 10).await.unwrap();
    store.erase_recommendations(1).await.unwrap();
    assert!(setup.list_recommendations(1, 10).await.unwrap().is_empty());
    taken(&log)
}

chatmesh_cql::golden_files!(
    prefix: "",
    statements: super::STATEMENTS,
    also: [],
    [
    insert_user,
    get_user,
    get_user_by_email,
    get_user_by_username,
    update_user,
    list_users,
    users_deleted_before,
    erase_user,
    insert_session,
    get_session,
    rotate_session,
    end_session,
    end_user_sessions,
    sessions_ended_since,
    follow,
    unfollow,
    list_followers,
    list_following,
    follow_counts,
    following_ids,
    recount_follows,
    park_edges,
    restore_edges,
    erase_edges,
    block,
    unblock,
    list_blocked,
    block_sets,
    standing,
    block_epoch,
    erase_blocks,
    send_friend_request,
    delete_friend_request,
    list_friend_requests,
    accept_friend_request,
    remove_friend,
    get_friendship,
    list_friends,
    friend_count,
    park_friends,
    restore_friends,
    erase_friends,
    upsert_report,
    upsert_report_after_an_interrupted_resolution,
    get_report,
    list_reports,
    resolve_report,
    upsert_status_report,
    resolve_status_report,
    index_terms,
    search_terms,
    bump_recommendations,
    drop_recommendations,
    list_recommendations,
    erase_recommendations,
    ]
);
