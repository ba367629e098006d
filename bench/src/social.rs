//! (social) The social graph at scale: one account followed by `users` accounts, which are
//! also the directory user search reads, written by the bulk loader
//! (`FjallUserStore::bulk_load`) into the stopped server's user store. Then, over gRPC,
//! ListFollowers pages of 50 at deep cursors, SearchUsers by realistic prefixes and full
//! usernames, and FollowUser/UnfollowUser toggles from several clients at once, each on a fixed
//! timetable and timed from when each call was due, beside GetMe (one point read through the
//! same stack) measured in the same run.

use std::{
    collections::HashSet,
    ops::Range,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use chatmesh_api::user::v1::{self as pb_user, user_service_client::UserServiceClient};
use chatmesh_platform::ids::{IdGenerator, now_ms};
use chatmesh_user::{
    UserRecord, search_terms_of,
    store::{BulkFollow, BulkLoaded, BulkUser, FjallUserStore, Follows},
};
use chatmesh_wire::page::encode_token;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::{
    fanout::cpu_secs,
    history::{Timed, latency_rows, on_timetable},
    report::{self, Outcome, num, percentiles, ratio},
    server::{Server, User, authed},
};

/// The page every ListFollowers asks for.
const PAGE: usize = 50;
/// Users per SearchUsers page (a type-ahead list).
const HITS: i32 = 20;
/// Accounts calling at once, each over its own HTTP/2 connection.
const CLIENTS: usize = 8;
/// Accounts (and their follows) made and handed to the loader at a time.
const BATCH: usize = 10_000;
/// Loaded accounts remembered to draw search queries and follow targets from.
const SAMPLES: usize = 5_000;
/// The loader's node id: its ids never collide with the server's (nor with (e)'s loader).
const LOADER_NODE: u16 = 1001;
/// A password hash no password matches: nobody signs in as a loaded account.
const NO_PASSWORD: &str = "!bulk-loaded";

/// Goals, p99 in ms.
const GOAL_PAGE_MS: f64 = 5.0;
const GOAL_SEARCH_MS: f64 = 10.0;
const GOAL_FOLLOW_MS: f64 = 10.0;

/// The sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Accounts loaded: the followers of one account, and the directory search reads.
    pub users: usize,
    /// GetMe calls and as many ListFollowers calls, each at `per_second`.
    pub reads: u64,
    /// The rate of GetMe and of ListFollowers calls.
    pub per_second: u32,
    /// SearchUsers calls, at `searches_per_second`.
    pub searches: u64,
    pub searches_per_second: u32,
    /// FollowUser and UnfollowUser calls, half each (rounded up to whole rounds of the clients),
    /// at `toggles_per_second`.
    pub toggles: u64,
    pub toggles_per_second: u32,
    /// Turns the four kinds of call take (GetMe, ListFollowers, SearchUsers, follows), each
    /// making its share of its calls per turn.
    pub rounds: u64,
}

/// Common given names, Latin-script, some with diacritics (handles keep their ASCII letters).
const FIRST: &str = "James Mary John Patricia Robert Jennifer Michael Linda David Elizabeth William Barbara Richard Susan \
    Joseph Jessica Thomas Sarah Chris Karen Daniel Nancy Matthew Lisa Anthony Betty Mark Sandra Paul Ashley \
    Steven Emily Andrew Donna Joshua Michelle Kevin Carol Brian Amanda George Melissa Timothy Deborah Ryan \
    Stephanie Jacob Rebecca Gary Laura Nicholas Helen Eric Sharon Jonathan Cynthia Stephen Kathleen Larry \
    Amy Justin Angela Scott Anna Brandon Ruth Benjamin Brenda Samuel Pamela Noah Emma Liam Olivia Lucas \
    Sophia Mateo Isabella Hugo Chloé Léa Zoë José María Björn Søren Ingrid Astrid Lars Anja Lukas Mia Felix \
    Hannah Luca Giulia Marco Chiara Pedro Ana Diego Lucía Yuki Hana Kenji Aiko Wei Mei Jin Min Arjun Priya \
    Ravi Ananya Omar Layla Ahmed Fatima Kofi Amara";

/// Common family names.
const LAST: &str = "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez \
    Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez \
    Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker \
    Hall Rivera Campbell Mitchell Carter Roberts Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker \
    Schulz Hoffmann Dubois Moreau Laurent Lefèvre Girard Rossi Russo Ferrari Esposito Bianchi Romano Colombo \
    Ricci Silva Santos Oliveira Souza Pereira Costa Almeida Jensen Nielsen Hansen Andersson Johansson \
    Karlsson Nilsson Larsen Kowalski Nowak Wiśniewski Novák Horváth Ivanov Petrov Sato Suzuki Takahashi \
    Tanaka Watanabe Wang Li Zhang Liu Chen Yang Kim Park Choi Patel Shah Singh Kumar Khan Ali Hassan Mensah \
    Okafor Adeyemi Mwangi";

/// Words people put in handles.
const HANDLE_WORDS: &str = "dev codes music art games photo travels writes design fit cooks reads the real official hq";

/// A loaded account as the queries see it.
#[derive(Debug, Clone)]
struct Person {
    name: String,
    username: Option<String>,
}

/// Display names and unique usernames, seeded: common first and last names (so a short prefix
/// fans out to many accounts, a long one to few), handles in the shapes people pick.
struct Names {
    rng: StdRng,
    first: Vec<&'static str>,
    last: Vec<&'static str>,
    handle_words: Vec<&'static str>,
    /// Lowercase usernames given out.
    taken: HashSet<String>,
}

fn pick(rng: &mut StdRng, words: &[&'static str]) -> &'static str {
    words[rng.random_range(0..words.len())]
}

/// 3 to 32 letters, digits or `_`, starting with a letter (the service's username rule).
fn is_username(s: &str) -> bool {
    (3..=32).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A name's ASCII letters, as a handle would spell it (`Søren` → `Sren`).
fn ascii(word: &str) -> String {
    word.chars().filter(char::is_ascii_alphanumeric).collect()
}

impl Names {
    fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            first: FIRST.split_whitespace().collect(),
            last: LAST.split_whitespace().collect(),
            handle_words: HANDLE_WORDS.split_whitespace().collect(),
            taken: HashSet::new(),
        }
    }

    fn next(&mut self) -> Person {
        let (first, last) = (pick(&mut self.rng, &self.first), pick(&mut self.rng, &self.last));
        let name = match self.rng.random_range(0..20) {
            0 | 1 => first.to_owned(),
            2 => format!("{first} {} {last}", pick(&mut self.rng, &self.first)),
            _ => format!("{first} {last}"),
        };
        let (f, l) = (ascii(first), ascii(last));
        let base = match self.rng.random_range(0..10) {
            0 => return Person { name, username: None },
            1 | 2 => format!("{f}{l}"),
            3 => format!("{f}_{l}"),
            4 => format!("{f}{}", self.rng.random_range(1..10_000)),
            5 => format!("{}{l}", f.get(..1).unwrap_or_default()),
            6 => format!("{l}{f}"),
            7 => format!("{f}_{}", pick(&mut self.rng, &self.handle_words)),
            8 => format!("{}_{f}", pick(&mut self.rng, &self.handle_words)),
            _ => format!("{f}{}", self.rng.random_range(1960..2010)),
        };
        let mut username = if self.rng.random_bool(0.7) { base.to_lowercase() } else { base };
        username.truncate(24);
        // why: a handle that is taken (or too short) grows digits, as sign-up forms suggest
        while !is_username(&username) || self.taken.contains(&username.to_lowercase()) {
            username.push(char::from(b'0' + self.rng.random_range(0..10u8)));
        }
        self.taken.insert(username.to_lowercase());
        Person { name, username: Some(username) }
    }
}

/// What the loader wrote.
struct Loaded {
    /// `(edge id, follower id)` of every follow of the followed account, oldest first.
    followers: Vec<(u64, u64)>,
    /// Every `users / SAMPLES`-th loaded account.
    samples: Vec<(u64, Person)>,
    secs: f64,
}

/// Writes `count` accounts, each following `star`, straight into the user store in `dir`.
async fn load(dir: &Path, star: u64, count: usize) -> anyhow::Result<Loaded> {
    let store = Arc::new(FjallUserStore::open(dir).context("opening the stopped server's user store")?);
    let ids = IdGenerator::new(LOADER_NODE).map_err(anyhow::Error::msg)?;
    let mut names = Names::new(11);
    let stride = (count / SAMPLES).max(1);
    let mut loaded = Loaded { followers: Vec::with_capacity(count), samples: Vec::new(), secs: 0.0 };
    let started = Instant::now();
    let now = now_ms();
    let mut writing: Option<tokio::task::JoinHandle<_>> = None;
    let mut written = (0, 0);
    for first in (0..count).step_by(BATCH) {
        let size = BATCH.min(count - first);
        let (mut users, mut follows) = (Vec::with_capacity(size), Vec::with_capacity(size));
        for n in first..first + size {
            let person = names.next();
            let user = UserRecord {
                user_id: ids.next_id(),
                email: format!("social{n}@load.example.com"),
                name: person.name.clone(),
                username: person.username.clone(),
                avatar_url: String::new(),
                bio: String::new(),
                password_hash: NO_PASSWORD.into(),
                created_at_ms: now,
                updated_at_ms: now,
                role: Default::default(),
                suspension: None,
                deleted_at_ms: None,
            };
            let edge_id = ids.next_id();
            loaded.followers.push((edge_id, user.user_id));
            follows.push(BulkFollow { follower: user.user_id, followee: star, edge_id });
            if n % stride == 0 {
                loaded.samples.push((user.user_id, person));
            }
            users.push(BulkUser { terms: search_terms_of(&user, now), user });
        }
        // why: the next batch is made while this one is written (one core each)
        if let Some(task) = writing.take() {
            let done: BulkLoaded = task.await??;
            written = (written.0 + done.users, written.1 + done.follows);
        }
        let store = store.clone();
        writing = Some(tokio::task::spawn_blocking(move || store.bulk_load(&users, &follows)));
    }
    if let Some(task) = writing {
        let done = task.await??;
        written = (written.0 + done.users, written.1 + done.follows);
    }
    loaded.secs = started.elapsed().as_secs_f64();
    ensure!(written == (count, count), "the loader wrote {written:?} of {count} accounts and follows");

    // the counter of the followed account equals its list, at this size
    let listed = store.list_followers(star, None, usize::MAX).await?.len();
    let counted = store.follow_counts(star).await?;
    ensure!(
        counted == (count as u64, 0) && listed == count,
        "after the load the followed account counts {counted:?} and lists {listed} followers, not {count}"
    );
    Ok(loaded)
}

/// A signed-in account with its own connection.
#[derive(Clone)]
struct Client {
    api: UserServiceClient<Channel>,
    user: User,
}

/// One search: what is typed, and the username that must come first (a full username).
#[derive(Debug, Clone)]
struct Query {
    text: String,
    exact: Option<String>,
}

/// The first `n` characters of a word, lower case (what someone has typed so far).
fn typed(word: &str, n: usize) -> String {
    word.chars().take(n).collect::<String>().to_lowercase()
}

/// The search mix, drawn from loaded accounts in turn: 1 to 4 characters of a first name, a
/// last name or a username, and full usernames (some typed with `@`).
fn queries(samples: &[(u64, Person)], count: usize) -> Vec<Query> {
    let mut rng = StdRng::seed_from_u64(23);
    (0..count)
        .map(|k| {
            let person = &samples[rng.random_range(0..samples.len())].1;
            let words: Vec<&str> = person.name.split_whitespace().collect();
            let (first, last) = (words[0], words[words.len() - 1]);
            let prefix = |text: String| Query { text, exact: None };
            match (k % 6, &person.username) {
                (0, _) => prefix(typed(first, 1)),
                (1, _) => prefix(typed(last, 2)),
                (2, Some(username)) => prefix(typed(username, 3)),
                (2, None) => prefix(typed(first, 3)),
                (3, _) => prefix(typed(first, 4)),
                (_, Some(username)) => {
                    let text = if k % 12 == 5 { format!("@{username}") } else { username.clone() };
                    Query { text, exact: Some(username.to_lowercase()) }
                }
                (_, None) => prefix(typed(first, 4)),
            }
        })
        .collect()
}

/// Failed answers: refused (`None`) or wrong (`Some(false)`).
fn failures(answers: &[Option<bool>]) -> (u64, u64) {
    let refused = answers.iter().filter(|a| a.is_none()).count() as u64;
    let wrong = answers.iter().filter(|a| **a == Some(false)).count() as u64;
    (refused, wrong)
}

/// Calls `calls` of one kind on a fixed timetable at `per_second`: `call(k)` for each `k`.
async fn phase<F, Fut>(calls: Range<u64>, per_second: u32, call: F) -> anyhow::Result<Timed<bool>>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Option<bool>> + Send + 'static,
{
    on_timetable(calls.end - calls.start, per_second, |j| call(calls.start + j)).await
}

/// Round `r` of `rounds`: its share of `total` calls (`total` a multiple of `rounds` keeps
/// every share equal).
fn share(total: u64, rounds: u64, r: u64) -> Range<u64> {
    let each = total.div_ceil(rounds);
    (r * each).min(total)..((r + 1) * each).min(total)
}

/// Adds one round's calls to those of the rounds before.
fn merge(into: &mut Timed<bool>, round: Timed<bool>) -> anyhow::Result<()> {
    into.latency.add(&round.latency).map_err(|e| anyhow::anyhow!("merging histograms: {e:?}"))?;
    into.answers.extend(round.answers);
    Ok(())
}

/// GetMe of the clients in turn: the baseline.
async fn get_me(clients: &[Client], calls: Range<u64>, per_second: u32) -> anyhow::Result<Timed<bool>> {
    phase(calls, per_second, |k| {
        let Client { mut api, user } = clients[k as usize % clients.len()].clone();
        async move {
            let answer = api.get_me(authed(&user.token, pb_user::GetMeRequest {})).await.ok()?;
            Some(answer.into_inner().user.is_some_and(|u| u.user_id == user.id))
        }
    })
    .await
}

/// ListFollowers of `star`, page 50, before random deep cursors; right when the page holds
/// the 50 followers just older than the cursor, newest first, and the total is every follower.
async fn list_followers(
    clients: &[Client],
    star: &str,
    followers: &[(u64, u64)],
    points: &[usize],
    calls: Range<u64>,
    per_second: u32,
) -> anyhow::Result<Timed<bool>> {
    let total = followers.len() as i64;
    phase(calls, per_second, |k| {
        let Client { mut api, user } = clients[k as usize % clients.len()].clone();
        let at = points[k as usize];
        let expected: Vec<String> = followers[at - PAGE..at].iter().rev().map(|(_, id)| id.to_string()).collect();
        let request = pb_user::ListFollowersRequest {
            user_id: star.to_owned(),
            page_size: PAGE as i32,
            page_token: encode_token(followers[at].0),
        };
        async move {
            let page = api.list_followers(authed(&user.token, request)).await.ok()?.into_inner();
            let ids: Vec<String> = page.users.into_iter().map(|u| u.user_id).collect();
            Some(ids == expected && page.total_size == total)
        }
    })
    .await
}

/// SearchUsers over the mix in turn; right when a full username comes first and a prefix
/// (typed from a loaded account) finds someone.
async fn search_users(
    clients: &[Client],
    queries: &[Query],
    calls: Range<u64>,
    per_second: u32,
) -> anyhow::Result<Timed<bool>> {
    phase(calls, per_second, |k| {
        let Client { mut api, user } = clients[k as usize % clients.len()].clone();
        let query = queries[k as usize % queries.len()].clone();
        let request = pb_user::SearchUsersRequest { query: query.text, page_size: HITS, page_token: String::new() };
        async move {
            let found = api.search_users(authed(&user.token, request)).await.ok()?.into_inner().users;
            Some(match query.exact {
                Some(username) => found.first().is_some_and(|u| u.username.to_lowercase() == username),
                None => !found.is_empty(),
            })
        }
    })
    .await
}

/// Each client in turn follows a target and, its next call, unfollows it again; one target in
/// four is the account with every follower, the others loaded accounts. Right when the answer
/// says the caller now follows (or no longer follows) the target.
async fn toggles(
    clients: &[Client],
    star: u64,
    samples: &[(u64, Person)],
    calls: Range<u64>,
    per_second: u32,
) -> anyhow::Result<Timed<bool>> {
    phase(calls, per_second, |k| {
        let c = k as usize % clients.len();
        let Client { mut api, user } = clients[c].clone();
        let call = k as usize / clients.len();
        let (turn, follow) = (call / 2, call.is_multiple_of(2));
        let target =
            if turn.is_multiple_of(4) { star } else { samples[(c * 7_919 + turn * 104_729) % samples.len()].0 };
        let user_id = target.to_string();
        async move {
            let relation = if follow {
                let request = pb_user::FollowUserRequest { user_id };
                api.follow_user(authed(&user.token, request)).await.ok()?.into_inner().relation
            } else {
                let request = pb_user::UnfollowUserRequest { user_id };
                api.unfollow_user(authed(&user.token, request)).await.ok()?.into_inner().relation
            };
            Some(relation.is_some_and(|r| r.following == follow))
        }
    })
    .await
}

/// After the toggles (each follow undone), counters are where they started: the followed
/// account counts every loaded follower again and no client follows anyone. Counters that
/// differ, each.
async fn counters_after_toggles(clients: &[Client], star: &str, followers: usize) -> anyhow::Result<u64> {
    let mut wrong = 0;
    let Client { mut api, user } = clients[0].clone();
    let request = pb_user::GetUserRequest { user_id: star.to_owned() };
    let answer = api.get_user(authed(&user.token, request)).await.context("GetUser")?.into_inner();
    wrong += u64::from(answer.user.is_none_or(|u| u.total_followers != followers as i64));
    for Client { mut api, user } in clients.iter().cloned() {
        let me = api.get_me(authed(&user.token, pb_user::GetMeRequest {})).await.context("GetMe")?.into_inner();
        wrong += u64::from(me.user.is_none_or(|u| u.total_following != 0));
    }
    Ok(wrong)
}

/// Waits until the server is quiet (under 5% of a core over a second, e.g. once compactions of
/// the loaded data are done), so no phase runs beside work the load left; how long it took, or
/// `None` if it never was within `within`.
async fn settle(server: &Server, within: Duration) -> Option<Duration> {
    let pid = server.child.id()?;
    let started = Instant::now();
    let mut last = cpu_secs(pid)?;
    while started.elapsed() < within {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = cpu_secs(pid)?;
        if now - last < 0.05 {
            return Some(started.elapsed());
        }
        last = now;
    }
    None
}

/// Rows of latency beside GetMe, then the failed calls.
fn rows(measured: &Value, floor: &Value, failed: u64, calls: u64) -> Vec<[String; 4]> {
    let mut rows = latency_rows(measured, floor);
    rows.push(["failed calls".into(), format!("{failed} / {calls}"), "—".into(), "—".into()]);
    rows
}

fn p99(v: &Value) -> f64 {
    v["p99_ms"].as_f64().unwrap_or(f64::INFINITY)
}

/// The server settings of this benchmark: follows unthrottled (clients toggle hundreds an hour),
/// access tokens outliving the load.
fn settings() -> [(&'static str, String); 2] {
    [
        ("CHATMESH_LIMITS__FOLLOWS_PER_HOUR_PER_USER", "1000000".into()),
        ("CHATMESH_AUTH__ACCESS_TTL_SECS", "7200".into()),
    ]
}

/// Runs the social benchmark: one outcome per goal (ListFollowers, SearchUsers, follows).
pub async fn run(binary: &Path, sizes: Sizes) -> anyhow::Result<Vec<Outcome>> {
    ensure!(sizes.users > PAGE, "the social benchmark needs more than {PAGE} followers");
    let root = tempfile::tempdir().context("a data dir")?;
    let env = settings();
    // why: whole rounds, so every client's last follow is undone and the counters return
    let toggle_calls = sizes.toggles.div_ceil(sizes.rounds * 2 * CLIENTS as u64) * sizes.rounds * 2 * CLIENTS as u64;

    // the followed account and the clients, through the API
    let mut server = Server::spawn_parts(binary, root.path(), None, &env)?;
    server.wait_healthy(Duration::from_secs(60)).await?;
    let mut accounts = server.users("social", CLIENTS + 1).await?;
    let star = accounts.remove(0);
    server.stop().await?;

    // the bulk loader, straight into the stopped server's user store
    let star_id: u64 = star.id.parse()?;
    let loaded = load(&root.path().join("data/user"), star_id, sizes.users).await?;
    eprintln!("  (social) {} accounts and follows loaded in {:.1} s", sizes.users, loaded.secs);
    // why: the store's writer thread lets go of the data dir as it ends
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut server = Server::spawn_parts(binary, root.path(), None, &env)?;
    let spawned = Instant::now();
    let healthy = server.wait_healthy(Duration::from_secs(120)).await?;
    let start_ms = healthy.duration_since(spawned).as_secs_f64() * 1000.0;
    let mut clients = Vec::new();
    for user in accounts {
        clients.push(Client { api: UserServiceClient::new(server.channel().await?), user });
    }

    // the server's own page token is the one these pages are asked with
    let Client { mut api, user } = clients[0].clone();
    let request =
        pb_user::ListFollowersRequest { user_id: star.id.clone(), page_size: PAGE as i32, ..Default::default() };
    let first = api.list_followers(authed(&user.token, request)).await.context("ListFollowers")?.into_inner();
    let newest = loaded.followers.len() - PAGE;
    ensure!(
        first.next_page_token == encode_token(loaded.followers[newest].0) && first.users.len() == PAGE,
        "the first page of followers does not end where the loader's follows say"
    );

    let settled = settle(&server, Duration::from_secs(120)).await;
    let queries = queries(&loaded.samples, sizes.searches as usize);
    let mut rng = StdRng::seed_from_u64(42);
    let points: Vec<usize> = (0..sizes.reads).map(|_| rng.random_range(PAGE..loaded.followers.len())).collect();
    let empty = || Timed { latency: report::histogram(), answers: Vec::new() };
    let (mut me, mut pages, mut searches, mut toggled) = (empty(), empty(), empty(), empty());
    // why: the kinds take turns a second or so at a time, so a noisy neighbour's burst lands on
    // the baseline as often as on the figures beside it
    for r in 0..sizes.rounds {
        let reads = share(sizes.reads, sizes.rounds, r);
        merge(&mut me, get_me(&clients, reads.clone(), sizes.per_second).await?)?;
        let round = list_followers(&clients, &star.id, &loaded.followers, &points, reads, sizes.per_second).await?;
        merge(&mut pages, round)?;
        let round = share(sizes.searches, sizes.rounds, r);
        merge(&mut searches, search_users(&clients, &queries, round, sizes.searches_per_second).await?)?;
        let round = share(toggle_calls, sizes.rounds, r);
        merge(&mut toggled, toggles(&clients, star_id, &loaded.samples, round, sizes.toggles_per_second).await?)?;
    }
    let toggles = toggled;
    let counters_wrong = counters_after_toggles(&clients, &star.id, sizes.users).await?;
    server.stop().await?;

    let (me_refused, me_wrong) = failures(&me.answers);
    ensure!(me_refused + me_wrong == 0, "the GetMe baseline failed {} of {} calls", me_refused + me_wrong, sizes.reads);
    let bp = percentiles(&me.latency);
    let baseline_note = format!(
        "baseline: {} GetMe (the caller's own account: one point read and its counters through the same gRPC, \
         auth and store) at {}/s on a fixed timetable, the clients in turn, in this run",
        sizes.reads, sizes.per_second
    );
    let load_rate = sizes.users as f64 / loaded.secs;
    let clients_note = format!("{CLIENTS} signed-in clients, each over its own HTTP/2 connection, calling in turn");

    let (refused, wrong) = failures(&pages.answers);
    let mp = percentiles(&pages.latency);
    let mut page_rows = rows(&mp, &bp, refused + wrong, sizes.reads);
    page_rows.push(["bulk load (s)".into(), num(loaded.secs), "—".into(), "—".into()]);
    page_rows.push(["restart to healthy (ms)".into(), num(start_ms), "—".into(), "—".into()]);
    let settled_secs = settled.map(|d| d.as_secs_f64());
    page_rows.push([
        "then to quiet (s)".into(),
        settled_secs.map_or_else(|| "not within 120".into(), num),
        "—".into(),
        "—".into(),
    ]);
    let followers = Outcome {
        id: "social",
        title: format!("followers: ListFollowers pages of {PAGE} over {} followers", sizes.users),
        notes: vec![
            format!(
                "{} accounts (seeded names from {} first and {} last names, 90% with a handle), each following one \
                 account, written by the bulk loader (FjallUserStore::bulk_load, {BATCH} accounts and follows a batch, \
                 the next batch made while one is written) into the stopped server's user store in {:.1} s \
                 ({:.0} accounts/s, each with its follow); afterwards the account's follower counter equals its list, scanned",
                sizes.users,
                FIRST.split_whitespace().count(),
                LAST.split_whitespace().count(),
                loaded.secs,
                load_rate
            ),
            format!(
                "chatmesh: {} ListFollowers (page {PAGE}, the page token of a random loaded follow, at least one page \
                 deep) at {}/s on a fixed timetable, timed from when each was due; {clients_note}; failed: {refused} \
                 refused, {wrong} answered other followers than the loader wrote there, or a total other than {}",
                sizes.reads, sizes.per_second, sizes.users
            ),
            format!(
                "the server then restarts on the loaded data dir; calls start once it is quiet (under 5% of a core \
                 over a second: the compactions the load left are done); the four kinds take turns in {} rounds, \
                 each making its share of its calls per turn (GetMe, ListFollowers, SearchUsers, follows), so a \
                 noisy neighbour's burst falls on the baseline as often as on the figures",
                sizes.rounds
            ),
            baseline_note.clone(),
        ],
        rows: page_rows,
        goal: Some(format!("p99 ≤ {GOAL_PAGE_MS} ms")),
        figures_meet_goal: Some(!pages.latency.is_empty() && p99(&mp) <= GOAL_PAGE_MS),
        failed: refused + wrong,
        data: json!({"users": sizes.users, "load_secs": loaded.secs, "load_rate": load_rate,
                     "restart_ms": start_ms, "settle_secs": settled_secs, "calls": sizes.reads, "per_second": sizes.per_second,
                     "refused": refused, "wrong": wrong, "chatmesh": mp, "baseline_get_me": bp,
                     "ratio_p99": ratio(p99(&mp), p99(&bp))}),
    };

    let (refused, wrong) = failures(&searches.answers);
    let sp = percentiles(&searches.latency);
    let exact = queries.iter().filter(|q| q.exact.is_some()).count();
    let search = Outcome {
        id: "social",
        title: format!("user search over {} users", sizes.users),
        notes: vec![
            format!(
                "chatmesh: {} SearchUsers (page {HITS}) at {}/s on a fixed timetable, timed from when each was due; \
                 {clients_note}; the mix ({} queries, {exact} full usernames, some typed with @, the others 1 to 4 \
                 characters of a loaded account's first name, last name or username) in turn, e.g. {:?}",
                sizes.searches,
                sizes.searches_per_second,
                queries.len(),
                queries.iter().take(6).map(|q| q.text.as_str()).collect::<Vec<_>>()
            ),
            format!(
                "failed: {refused} refused, {wrong} answered wrongly (a full username not first, or nobody for a \
                 prefix some loaded account has)"
            ),
            baseline_note.clone(),
        ],
        rows: rows(&sp, &bp, refused + wrong, sizes.searches),
        goal: Some(format!("p99 ≤ {GOAL_SEARCH_MS} ms")),
        figures_meet_goal: Some(!searches.latency.is_empty() && p99(&sp) <= GOAL_SEARCH_MS),
        failed: refused + wrong,
        data: json!({"users": sizes.users, "searches": sizes.searches, "per_second": sizes.searches_per_second,
                     "page": HITS, "exact": exact, "refused": refused, "wrong": wrong, "chatmesh": sp,
                     "baseline_get_me": bp, "ratio_p99": ratio(p99(&sp), p99(&bp))}),
    };

    let (refused, wrong) = failures(&toggles.answers);
    let fp = percentiles(&toggles.latency);
    let follows = Outcome {
        id: "social",
        title: format!("follows: FollowUser / UnfollowUser from {CLIENTS} clients at once"),
        notes: vec![
            format!(
                "chatmesh: {} calls at {}/s on a fixed timetable (each its own task, timed from when it was due, so \
                 calls overlap whenever one takes longer than {:.1} ms); {clients_note}; each client follows a target \
                 and unfollows it its next call; one target in four is the account with {} followers (its counter \
                 is every follow's hot key), the others loaded accounts; each call is one synced store write",
                toggle_calls,
                sizes.toggles_per_second,
                1000.0 / f64::from(sizes.toggles_per_second),
                sizes.users
            ),
            format!(
                "failed: {refused} refused, {wrong} answered a relation other than the call made, \
                 {counters_wrong} counters not back where they started after the last unfollow"
            ),
            baseline_note,
        ],
        rows: rows(&fp, &bp, refused + wrong + counters_wrong, toggle_calls),
        goal: Some(format!("p99 ≤ {GOAL_FOLLOW_MS} ms")),
        figures_meet_goal: Some(!toggles.latency.is_empty() && p99(&fp) <= GOAL_FOLLOW_MS),
        failed: refused + wrong + counters_wrong,
        data: json!({"users": sizes.users, "calls": toggle_calls, "per_second": sizes.toggles_per_second,
                     "clients": CLIENTS, "refused": refused, "wrong": wrong, "counters_wrong": counters_wrong,
                     "chatmesh": fp, "baseline_get_me": bp, "ratio_p99": ratio(p99(&fp), p99(&bp))}),
    };
    Ok(vec![followers, search, follows])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_usernames_are_valid_and_unique() {
        let mut names = Names::new(1);
        let mut seen = HashSet::new();
        let mut without = 0;
        for _ in 0..20_000 {
            let person = names.next();
            assert!(!person.name.trim().is_empty());
            match person.username {
                Some(username) => {
                    assert!(is_username(&username), "{username}");
                    assert!(seen.insert(username.to_lowercase()), "{username} given twice");
                }
                None => without += 1,
            }
        }
        assert!((1_000..3_000).contains(&without), "about one in ten has no handle: {without}");
    }

    #[test]
    fn the_search_mix_types_prefixes_and_full_usernames_of_loaded_accounts() {
        let mut names = Names::new(2);
        let samples: Vec<(u64, Person)> = (0..100).map(|i| (i, names.next())).collect();
        let mix = queries(&samples, 60);
        for q in &mix {
            match &q.exact {
                Some(username) => assert_eq!(q.text.trim_start_matches('@').to_lowercase(), *username),
                None => assert!((1..=4).contains(&q.text.chars().count()), "{q:?}"),
            }
        }
        assert!(mix.iter().any(|q| q.text.starts_with('@')));
        assert!(mix.iter().filter(|q| q.exact.is_some()).count() >= 15);
        assert!(mix.iter().any(|q| q.exact.is_none() && q.text.chars().count() == 1));
    }
}
