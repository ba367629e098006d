//! Fan-out through a crash: an author with 5,000 followers posts 20 statuses, the feed process
//! is SIGKILLed while their fan-out jobs are pending and started again on the same data dir, and
//! every follower's timeline then holds each status exactly once, newest first (all 5,005 read
//! from the feed store itself once the process has stopped); the celebrity path (merged on read)
//! shows the signed-up followers the same timelines. Two processes on loopback: A runs the user
//! service and the rest of the core, B the feed, each on a data dir of its own, B with A's keys.
//! No Redis: each process is given a node id of its own. No test asserts a duration (the phases'
//! times are printed).

mod common;

use std::{
    path::Path,
    process::Command,
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use chatmesh_api::{
    feed::v1::{CreateStatusRequest, ListHomeTimelineRequest, Status, feed_service_client::FeedServiceClient},
    user::v1::{FollowUserRequest, user_service_client::UserServiceClient},
};
use chatmesh_feed::store::{FanoutQueue, FjallFeedStore, Timelines};
use chatmesh_platform::ids::{IdGenerator, now_ms};
use chatmesh_user::{
    UserRecord, search_terms_of,
    store::{BulkFollow, BulkUser, FjallUserStore, Follows},
};
use common::{Server, authed, chatmesh, connect, eventually, sign_up};
use tonic::transport::Channel;

/// Followers written by the bulk loader into A's stopped user store.
const LOADED: usize = 5_000;
/// Signed-up followers who follow before the load: the oldest follows, so the last page of
/// every fan-out (their timelines over gRPC tell when the jobs are through).
const EARLY: usize = 3;
/// Signed-up followers who follow after the load: the newest follows, so on the first page,
/// which CreateStatus writes before it answers.
const LATE: usize = 2;
const STATUSES: usize = 20;
/// Followers per fan-out page: 5,005 followers make 51 pages per status, 1,020 in all.
const FANOUT_PAGE: usize = 100;
/// Node ids: A's, B's (the same after its restart: no Redis leases them) and the loader's.
const A_NODE: u16 = 1;
const B_NODE: u16 = 2;
const LOADER_NODE: u16 = 1001;
/// A password hash no password matches: nobody signs in as a loaded account.
const NO_PASSWORD: &str = "!bulk-loaded";

/// Which way the author's statuses reach timelines.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Route {
    /// Written into every follower's timeline (fan-out on write, the rest as durable jobs).
    FanOut,
    /// The author is a celebrity: merged into followers' timelines on read.
    Celebrity,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::FanOut => "fan-out",
            Route::Celebrity => "celebrity",
        }
    }

    /// `feed.celebrity_followers`: the author's 5,005 followers are below it, or at or above it.
    fn celebrity_followers(self) -> u64 {
        match self {
            Route::FanOut => 1_000_000,
            Route::Celebrity => 1_000,
        }
    }
}

/// A signed-up account: its id and access token.
struct Account {
    id: u64,
    token: String,
}

/// The pair of processes of one run, and their data dirs.
struct Pair {
    route: Route,
    a_dir: tempfile::TempDir,
    b_dir: tempfile::TempDir,
    a: Server,
    b: Server,
    started: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_follower_gets_each_status_once_in_order_through_a_feed_killed_mid_fan_out_as_by_the_celebrity_path() {
    let started = Instant::now();
    let (fanned, merged) = tokio::join!(script(Route::FanOut), script(Route::Celebrity));
    println!("both runs took {:?}", started.elapsed());
    let expected: Vec<String> = (0..STATUSES).rev().map(text).collect();
    for (i, timeline) in fanned.iter().enumerate() {
        assert_eq!(timeline, &expected, "fan-out: signed-up follower {i}'s home timeline");
    }
    assert_eq!(merged, fanned, "the celebrity path shows the signed-up followers the timelines fan-out wrote");
}

fn text(i: usize) -> String {
    format!("status {i}")
}

/// The script on a fresh pair of processes: followers signed up and bulk-loaded, 20
/// statuses posted, the feed process killed and started again, every timeline checked. Answers
/// the signed-up followers' home timelines (texts, newest first) as ListHomeTimeline shows them.
async fn script(route: Route) -> Vec<Vec<String>> {
    let name = route.name();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    // the author and the early followers sign up and follow; A stops, and the loader adds 5,000
    let a = serve_a(a_dir.path()).await;
    let users = connect(a.grpc()).await;
    let author = account(&users, &format!("author-{name}@example.com")).await;
    let mut readers = Vec::new();
    for i in 0..EARLY {
        readers.push(follower(&users, &author, &format!("early{i}-{name}@example.com")).await);
    }
    stop(a).await;
    let loading = Instant::now();
    let loaded = load(&a_dir.path().join("user"), author.id).await;
    println!("{name}: loaded {LOADED} followers in {:?}", loading.elapsed());
    copy_dir(&a_dir.path().join("keys"), &b_dir.path().join("keys"));
    let a = serve_a(a_dir.path()).await;
    let users = connect(a.grpc()).await;
    for i in 0..LATE {
        readers.push(follower(&users, &author, &format!("late{i}-{name}@example.com")).await);
    }
    let b = serve_b(b_dir.path(), a.grpc(), route).await;
    let mut pair = Pair { route, a_dir, b_dir, a, b, started: Instant::now() };

    // why: a first read backfills the new follows (nothing yet) and raises each timeline's
    // watermark, so what the signed-up followers see later is what fan-out (or the merge) gave
    let feed = connect(pair.b.grpc()).await;
    for reader in &readers {
        assert!(home_timeline(&feed, reader).await.unwrap().is_empty(), "{name}: nothing posted yet");
    }
    let posting = Instant::now();
    let mut posted = Vec::new();
    for i in 0..STATUSES {
        let request = CreateStatusRequest { text: text(i), ..Default::default() };
        let answer = FeedServiceClient::new(feed.clone()).create_status(authed(&author.token, request)).await;
        let status = answer.unwrap_or_else(|e| panic!("{name}: CreateStatus {i}: {e:?}")).into_inner().status.unwrap();
        posted.push(status.status_id.parse::<u64>().unwrap());
    }
    println!("{name}: posted {STATUSES} statuses in {:?}", posting.elapsed());
    pair.b.kill();
    let killed = Instant::now();

    // the kill landed mid-fan-out: the first page of each status is in, the rest not all yet
    let store = FjallFeedStore::open(&pair.b_dir.path().join("feed")).expect("the killed feed's store opens");
    let at_kill = delivered(&store, &loaded, &posted, &author).await;
    // why: the newest follows (the late readers', then the last loaded) make the first page
    let mut first_page = 0;
    for &reader in &loaded[LOADED - (FANOUT_PAGE - LATE)..] {
        first_page += store.page(reader, None, 1_000).await.unwrap().len();
    }
    drop(store);
    let want = LOADED * STATUSES;
    println!("{name}: at the kill {at_kill} of {want} fan-out entries of loaded followers were written");
    match route {
        Route::FanOut => {
            assert!(at_kill < want, "the kill came after every job was done: it tested nothing");
            let whole = (FANOUT_PAGE - LATE) * STATUSES;
            assert_eq!(first_page, whole, "the first page of each status is written before CreateStatus answers");
        }
        Route::Celebrity => assert_eq!(at_kill, 0, "a celebrity's statuses are not fanned out"),
    }

    // started again: the jobs resume (those the killed process held once their lease runs out)
    pair.b = serve_b(pair.b_dir.path(), pair.a.grpc(), route).await;
    let feed = connect(pair.b.grpc()).await;
    let oldest = &readers[0];
    let took = eventually(&format!("{name}: the oldest follower's timeline holds every status"), || {
        let (feed, oldest) = (feed.clone(), oldest);
        // why: at least, so that a duplicate fails the exact comparison below, not this wait
        async move { home_timeline(&feed, oldest).await.is_ok_and(|statuses| statuses.len() >= STATUSES) }
    })
    .await;
    println!(
        "{name}: the oldest follower's timeline held every status {took:?} after the restart ({:?} after the kill)",
        killed.elapsed()
    );
    let mut timelines = Vec::new();
    for reader in &readers {
        let statuses = home_timeline(&feed, reader).await.unwrap();
        let ids: Vec<u64> = statuses.iter().map(|s| s.status_id.parse().unwrap()).collect();
        assert_eq!(ids, posted.iter().rev().copied().collect::<Vec<_>>(), "{name}: reader {}", reader.id);
        timelines.push(statuses.into_iter().map(|s| s.text).collect());
    }
    finish(pair, &loaded, &readers, &posted, &author).await;
    timelines
}

/// Stops B, then checks every timeline in its store: all of them hold each status once, newest
/// first (fan-out) or none does (celebrity), the author's own holds all, and no fan-out job is
/// left.
async fn finish(pair: Pair, loaded: &[u64], readers: &[Account], posted: &[u64], author: &Account) {
    let Pair { route, a_dir, b_dir, a: _a, b, started } = pair;
    let name = route.name();
    stop(b).await;
    print_warnings(a_dir.path(), name);
    print_warnings(b_dir.path(), name);
    let store = FjallFeedStore::open(&b_dir.path().join("feed")).expect("the stopped feed's store opens");
    let newest_first: Vec<u64> = posted.iter().rev().copied().collect();
    let want = match route {
        Route::FanOut => newest_first.clone(),
        Route::Celebrity => Vec::new(),
    };
    let followers: Vec<u64> = loaded.iter().copied().chain(readers.iter().map(|r| r.id)).collect();
    let mut wrong = Vec::new();
    for &reader in &followers {
        let entries = store.page(reader, None, 1_000).await.unwrap();
        let ids: Vec<u64> = entries.iter().map(|e| e.status_id).collect();
        if ids != want || entries.iter().any(|e| e.poster_id != author.id) {
            wrong.push((reader, entries));
        }
    }
    let own: Vec<u64> = store.page(author.id, None, 1_000).await.unwrap().iter().map(|e| e.status_id).collect();
    let left = store.claim_fanouts(0, u64::MAX, 0, 1_000).await.unwrap();
    println!(
        "{name}: of {} followers' stored timelines {} are as they should be ({}), {} are not; fan-out jobs left {}; \
         the run from B's start took {:?}",
        followers.len(),
        followers.len() - wrong.len(),
        if want.is_empty() { "empty" } else { "each status once, newest first" },
        wrong.len(),
        left.len(),
        started.elapsed()
    );
    assert!(
        wrong.is_empty(),
        "{name}: {} followers' timelines are not {want:?}; the first: {:?}",
        wrong.len(),
        wrong[0]
    );
    assert_eq!(own, newest_first, "{name}: the author's own timeline");
    assert!(left.is_empty(), "{name}: fan-out jobs never finished: {left:?}");
}

/// How many (loaded follower, status) entries the store holds, each checked to be one of the
/// author's statuses and each list newest first, once each.
async fn delivered(store: &FjallFeedStore, loaded: &[u64], posted: &[u64], author: &Account) -> usize {
    let mut count = 0;
    for &reader in loaded {
        let entries = store.page(reader, None, 1_000).await.unwrap();
        let ids: Vec<u64> = entries.iter().map(|e| e.status_id).collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "follower {reader}: each once, newest first: {ids:?}");
        assert!(
            entries.iter().all(|e| e.poster_id == author.id && posted.contains(&e.status_id)),
            "follower {reader}: {entries:?}"
        );
        count += entries.len();
    }
    count
}

/// A: the user service and the rest of the core (stores embedded in its data dir).
async fn serve_a(data: &Path) -> Server {
    serve(data, &["user", "channel", "chat", "dispatcher", "rest", "ws"], &[("CHATMESH_NODE_ID", A_NODE.to_string())])
        .await
}

/// B: the feed, reaching A for the graph and live events.
async fn serve_b(data: &Path, a: std::net::SocketAddr, route: Route) -> Server {
    // why: a config file, not CHATMESH_FEED__* variables: the loader does not read those (its
    // list of environment sections lacks `feed`)
    let config = data.join("chatmesh.toml");
    let feed = format!("[feed]\nfanout_page = {FANOUT_PAGE}\ncelebrity_followers = {}\n", route.celebrity_followers());
    std::fs::write(&config, feed).unwrap();
    let peer = format!("http://{a}");
    let env = [
        ("CHATMESH_CONFIG", config.display().to_string()),
        ("CHATMESH_NODE_ID", B_NODE.to_string()),
        ("CHATMESH_PEERS__USER", peer.clone()),
        ("CHATMESH_PEERS__DISPATCHER", peer),
        // why: the test polls a timeline while it waits; the limiter has its own tests
        ("CHATMESH_LIMITS__USER_CALLS_PER_SEC", "1000000".into()),
        ("CHATMESH_LIMITS__USER_CALLS_BURST", "1000000".into()),
    ];
    serve(data, &["feed"], &env).await
}

/// `chatmesh serve <parts>` on `data` with these settings, ready; its warnings in a log file
/// of its own in the data dir.
async fn serve(data: &Path, parts: &[&str], env: &[(&str, String)]) -> Server {
    let mut command = chatmesh(data);
    command
        .arg("serve")
        .args(parts)
        .env("CHATMESH_LOG__FILTER", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    common::start(command, Some(&data.join(format!("{}-{stamp}.log", parts.join("+"))))).await
}

/// Stops a process with SIGTERM and waits for a clean exit.
async fn stop(mut server: Server) {
    assert!(Command::new("kill").args(["-TERM", &server.process.0.id().to_string()]).status().unwrap().success());
    let status = server.process.exited().await;
    assert!(status.success(), "a clean exit: {status:?}");
}

/// The distinct warnings a run's processes logged in `data` (numbers elided), with counts.
fn print_warnings(data: &Path, name: &str) {
    let mut warnings: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(data).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            for line in std::fs::read_to_string(entry.path()).unwrap_or_default().lines() {
                let plain: String = line.chars().filter(|c| !c.is_ascii_digit()).collect();
                if let Some(at) = plain.find("WARN").or_else(|| plain.find("ERROR")) {
                    *warnings.entry(plain[at..].chars().take(200).collect()).or_default() += 1;
                }
            }
        }
    }
    for (warning, count) in warnings {
        println!("{name}:   {count} × {warning}");
    }
}

async fn account(users: &Channel, email: &str) -> Account {
    let (id, token) = sign_up(users, email).await;
    Account { id: id.parse().unwrap(), token }
}

/// A signed-up account following `author`.
async fn follower(users: &Channel, author: &Account, email: &str) -> Account {
    let reader = account(users, email).await;
    let request = FollowUserRequest { user_id: author.id.to_string() };
    UserServiceClient::new(users.clone()).follow_user(authed(&reader.token, request)).await.unwrap();
    reader
}

/// The reader's home timeline (its first 100, more than it holds), newest first.
async fn home_timeline(feed: &Channel, reader: &Account) -> Result<Vec<Status>, tonic::Status> {
    let request = ListHomeTimelineRequest { page_size: 100, page_token: String::new() };
    let answer = FeedServiceClient::new(feed.clone()).list_home_timeline(authed(&reader.token, request)).await?;
    Ok(answer.into_inner().statuses)
}

/// Writes [`LOADED`] accounts following `author` straight into the stopped user store in `dir`,
/// as the benchmarks' loader does; answers their ids, oldest follow first.
async fn load(dir: &Path, author: u64) -> Vec<u64> {
    let store = Arc::new(FjallUserStore::open(dir).expect("the stopped user store opens"));
    let ids = IdGenerator::new(LOADER_NODE).unwrap();
    let now = now_ms();
    let users: Vec<BulkUser> = (0..LOADED)
        .map(|n| {
            let user = UserRecord {
                user_id: ids.next_id(),
                email: format!("loaded{n}@load.example.com"),
                name: format!("Loaded {n}"),
                username: None,
                avatar_url: String::new(),
                bio: String::new(),
                password_hash: NO_PASSWORD.into(),
                created_at_ms: now,
                updated_at_ms: now,
                role: Default::default(),
                suspension: None,
                deleted_at_ms: None,
            };
            BulkUser { terms: search_terms_of(&user, now), user }
        })
        .collect();
    let follows: Vec<BulkFollow> = users
        .iter()
        .map(|u| BulkFollow { follower: u.user.user_id, followee: author, edge_id: ids.next_id() })
        .collect();
    let followers: Vec<u64> = users.iter().map(|u| u.user.user_id).collect();
    let writer = store.clone();
    let done = tokio::task::spawn_blocking(move || writer.bulk_load(&users, &follows)).await.unwrap().unwrap();
    assert_eq!((done.users, done.follows), (LOADED, LOADED), "the loader wrote every account and follow");
    let counted = store.follow_counts(author).await.unwrap();
    assert_eq!(counted, ((LOADED + EARLY) as u64, 0), "the author's followers after the load");
    followers
}

/// Copies the directory tree `from` to `to` (A's keys, so B verifies A's tokens and A B's).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
