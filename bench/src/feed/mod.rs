//! (feed) The feed service at scale, over one loaded graph: an account followed by `followers`
//! accounts, written by the bulk loader (`FjallUserStore::bulk_load`) into the stopped server's
//! user store. Then, over gRPC: fan-out of a status to every follower (until the last
//! follower's home timeline shows it) beside `FjallFeedStore::push` writing the same timelines
//! on a scratch store; home timeline pages of readers following `followees` accounts beside
//! GetMe; and likes of one status from distinct accounts on a fixed timetable beside
//! `FjallFeedStore::like` — each baseline measured in the same run.
//!
//! Loaded accounts have no password: the benchmark signs their access tokens with the user
//! signing key the server keeps in its data dir (`Authenticator::issue_access`, what Login
//! issues), as a login would, without hashing a password per account.

mod calls;
mod floor;
mod load;

use std::{path::Path, time::Duration};

use anyhow::{Context, bail, ensure};
use chatmesh_api::{
    feed::v1::feed_service_client::FeedServiceClient, user::v1::user_service_client::UserServiceClient,
};
use chatmesh_platform::config::FeedConfig;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

use self::{
    calls::{
        FANOUT_DEADLINE, IN_FLIGHT, POLL, Reader, failures, fanout, fill_timelines, get_me, home_pages,
        like_on_timetable, like_totals, merge, settle, share, timeline, warm_tokens,
    },
    floor::{STORE_IN_FLIGHT, store_fanout, store_likes, stored_fanout},
    load::{BATCH, Tokens, load},
};
use crate::{
    history::{Timed, latency_rows},
    report::{self, Outcome, num, percentiles, ratio, show_ratio},
    server::{Server, User},
};

/// Statuses per home timeline page.
const PAGE: usize = 20;
/// Readers of home timelines, each calling over its own HTTP/2 connection.
const READERS: usize = 8;
/// The loader's node id: its ids never collide with the server's (nor with other loaders').
const LOADER_NODE: u16 = 1002;
/// Connections the likes are spread over.
const LIKE_CONNECTIONS: usize = 8;
/// Achieved like rate, as a share of the target, that counts as holding it.
const HELD_SHARE: f64 = 0.98;
/// Goal: home timeline page p99 in ms.
const GOAL_PAGE_MS: f64 = 5.0;

/// The sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Followers of the posting account, loaded.
    pub followers: usize,
    /// Statuses it posts, one after another, each fanned out to every follower.
    pub posts: u64,
    /// Accounts every reader follows, each posting `statuses_each` statuses.
    pub followees: usize,
    pub statuses_each: usize,
    /// ListHomeTimeline calls and as many GetMe calls, each at `per_second`, in `rounds` turns.
    pub reads: u64,
    pub per_second: u32,
    pub rounds: u64,
    /// Likes of one status, from distinct accounts, at `likes_per_second` for `like_secs`.
    pub likes_per_second: u32,
    pub like_secs: u64,
}

impl Sizes {
    fn likes(&self) -> usize {
        self.likes_per_second as usize * self.like_secs as usize
    }
}

/// The server settings of this benchmark: the posting account fanned out (not a celebrity,
/// whatever its followers), and access tokens outliving the run.
fn settings() -> [(&'static str, String); 2] {
    [("CHATMESH_FEED__CELEBRITY_FOLLOWERS", "1000000000".into()), ("CHATMESH_AUTH__ACCESS_TTL_SECS", "7200".into())]
}

fn p(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::INFINITY)
}

/// A row of one figure beside its baseline.
fn row(label: &str, measured: f64, baseline: f64) -> [String; 4] {
    [label.into(), num(measured), num(baseline), show_ratio(&ratio(measured, baseline))]
}

/// Runs the feed benchmark: fan-out, home timeline pages, likes of one status.
pub async fn run(binary: &Path, sizes: Sizes) -> anyhow::Result<Vec<Outcome>> {
    let likes = sizes.likes();
    ensure!(likes < sizes.followers, "the feed benchmark likes from distinct followers: {likes} likes need more");
    ensure!(sizes.followees * sizes.statuses_each > 2 * PAGE, "the readers' timelines need more than two pages");
    let root = tempfile::tempdir().context("a data dir")?;
    let env = settings();
    let settings = FeedConfig::default();

    // the posting account through the API (and the server's signing keys, on its first start)
    let mut server = Server::spawn_parts(binary, root.path(), None, &env)?;
    server.wait_healthy(Duration::from_secs(60)).await?;
    let star = server.users("feed", 1).await?.pop().context("no user")?;
    server.stop().await?;

    // the bulk loader, straight into the stopped server's user store
    let star_id: u64 = star.id.parse()?;
    let loaded = load(&root.path().join("data/user"), star_id, sizes).await?;
    eprintln!("  (feed) {} followers and {READERS} readers loaded in {:.1} s", sizes.followers, loaded.secs);

    // the baselines, on scratch stores while the server is stopped
    let newest_first: Vec<u64> = loaded.followers.iter().rev().copied().collect();
    let scratch = tempfile::tempdir().context("a scratch dir")?;
    let store_fan = store_fanout(&scratch.path().join("fanout"), star_id, &newest_first, sizes.posts).await?;
    let likers: Vec<u64> = loaded.followers[1..=likes].to_vec();
    let store_like = store_likes(&scratch.path().join("likes"), &likers, sizes.likes_per_second).await?;
    drop(scratch);
    // why: the stores' writer threads let go of the data dir as they end
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut server = Server::spawn_parts(binary, root.path(), None, &env)?;
    server.wait_healthy(Duration::from_secs(120)).await?;
    let tokens = Tokens::open(&root.path().join("data"))?;
    let settled = settle(&server, Duration::from_secs(120)).await;

    // (1) fan-out: watched followers are the oldest (written last), one past the first page,
    // the middle one and the newest
    let n = loaded.followers.len();
    let mut watched = vec![0, n / 2, n.saturating_sub(settings.fanout_page + 1), n - 1];
    watched.sort_unstable();
    watched.dedup();
    let watchers: Vec<User> = watched.iter().map(|&i| tokens.user(loaded.followers[i])).collect();
    let fan = fanout(&server, &star, &watchers, sizes.posts).await?;
    let Some(&liked_status) = fan.status_ids.last() else {
        bail!(
            "no post of the fan-out was answered: {}; log:\n{}",
            fan.first_error.as_deref().unwrap_or("no error"),
            server.log_tail()
        );
    };

    // (2) home timelines: the followees fill the readers' timelines through CreateStatus
    let readers: Vec<User> = loaded.readers.iter().map(|&id| tokens.user(id)).collect();
    let mut clients = Vec::new();
    for user in readers {
        let channel = server.channel().await?;
        let (mut feed, users) = (FeedServiceClient::new(channel.clone()), UserServiceClient::new(channel));
        timeline(&mut feed, &user.token, None, PAGE).await.context("a reader's first ListHomeTimeline")?;
        clients.push(Reader { feed, users, user });
    }
    let followees: Vec<User> = loaded.followees.iter().map(|&id| tokens.user(id)).collect();
    let (mut expected, fill_secs) = fill_timelines(&server, &followees, sizes.statuses_each).await?;
    expected.truncate(settings.timeline_cap);
    settle(&server, Duration::from_secs(60)).await;
    let mut rng = StdRng::seed_from_u64(31);
    let points: Vec<usize> = (0..sizes.reads).map(|_| rng.random_range(0..expected.len() - PAGE - 1)).collect();
    let empty = || Timed { latency: report::histogram(), answers: Vec::new() };
    let (mut me, mut pages) = (empty(), empty());
    // why: the kinds take turns, so a noisy neighbour's burst lands on the baseline as often
    for r in 0..sizes.rounds {
        let reads = share(sizes.reads, sizes.rounds, r);
        merge(&mut me, get_me(&clients, reads.clone(), sizes.per_second).await?)?;
        merge(&mut pages, home_pages(&clients, &expected, &points, reads, sizes.per_second).await?)?;
    }

    // (3) likes of the last fanned-out status, each from another follower
    let likers: Vec<User> = likers.iter().map(|&id| tokens.user(id)).collect();
    let mut connections = Vec::new();
    for _ in 0..LIKE_CONNECTIONS {
        connections.push(FeedServiceClient::new(server.channel().await?));
    }
    warm_tokens(&connections, &likers, liked_status).await?;
    settle(&server, Duration::from_secs(30)).await;
    let liked = like_on_timetable(&connections, &likers, liked_status, sizes.likes_per_second).await?;
    let (total_likes, listed_likes) = like_totals(&server, &star, liked_status).await?;
    server.stop().await?;
    // what fan-out wrote, as stored (reads through the API merge a celebrity's statuses in)
    let posted: Vec<u64> = fan.status_ids.iter().rev().copied().collect();
    let (celebrity, unreached) =
        stored_fanout(&root.path().join("data/feed"), star_id, &loaded.followers, &posted).await?;

    // (1) figures
    let (fp, ap, sp) = (percentiles(&fan.last), percentiles(&fan.answered), percentiles(&store_fan));
    let rate = |ms: f64| if ms > 0.0 { n as f64 / (ms / 1000.0) } else { 0.0 };
    let fan_failed = fan.refused + fan.late + fan.wrong + unreached + u64::from(celebrity);
    let fanout_outcome = Outcome {
        id: "feed",
        title: format!("fan-out: one status to {n} followers"),
        notes: vec![
            format!(
                "{n} accounts following one account (and {} followees with {READERS} readers following each) written \
                 by the bulk loader (FjallUserStore::bulk_load, {BATCH} a batch) into the stopped server's user \
                 store in {:.1} s; the server then restarts on it and calls start once it is quiet (under 5% of a \
                 core over a second: {})",
                sizes.followees,
                loaded.secs,
                settled.map_or_else(|| "not within 120 s".into(), |d| format!("{:.1} s", d.as_secs_f64()))
            ),
            format!(
                "chatmesh: {} CreateStatus of that account over gRPC, one after another, each timed from the call \
                 until the oldest follower's home timeline shows it — ListFollowerIds lists newest follow first, so \
                 the oldest is on the fan-out's last page; read as that follower (ListHomeTimeline, page 1) again \
                 {} ms after each answer, its access token signed with the user key in the server's data dir \
                 (Authenticator::issue_access, what Login issues: loaded accounts have no password); feed.\
                 celebrity_followers is raised past {n} for this run (at its default of 10,000 this account would \
                 be a celebrity, merged on read and never fanned out)",
                sizes.posts,
                POLL.as_millis()
            ),
            format!(
                "{} followers watched (the oldest, the middle, one past the first page of {}, the newest) read their \
                 timeline once before the posts, so their first read's backfill is behind them; afterwards each must \
                 hold every post exactly once, newest first; failed: {} refused, {} not at the oldest follower within \
                 {} s, {} watched timelines otherwise; {} polls refused{}",
                watchers.len(),
                settings.fanout_page,
                fan.refused,
                fan.late,
                FANOUT_DEADLINE.as_secs(),
                fan.wrong,
                fan.poll_errors,
                fan.first_error.as_ref().map(|e| format!(" (first error: {e})")).unwrap_or_default()
            ),
            format!(
                "afterwards the server's feed store, opened once it stopped, must hold every post in each of the {n} \
                 followers' stored timelines (reads through the API would merge a celebrity's statuses in): \
                 {unreached} do not; the account was {}marked a celebrity{}",
                if celebrity { "" } else { "not " },
                if celebrity {
                    " (FAILED: merged on read, not fanned out; the times above are not fan-out)"
                } else {
                    ""
                }
            ),
            format!(
                "baseline: FjallFeedStore::push on a scratch store (server stopped), the same {n} reader ids newest \
                 follow first in pages of {} one after another (as the fan-out job writes them, each page durable \
                 before the next), per status, {} statuses; it leaves out what the service adds per page (the \
                 ListFollowerIds page, the job's progress and lease writes) and the poll's resolution",
                settings.fanout_page, sizes.posts
            ),
        ],
        rows: vec![
            row("to the last follower p50 (ms)", p(&fp, "p50_ms"), p(&sp, "p50_ms")),
            row("to the last follower p99 (ms)", p(&fp, "p99_ms"), p(&sp, "p99_ms")),
            row("timeline writes/s (at p50)", rate(p(&fp, "p50_ms")), rate(p(&sp, "p50_ms"))),
            ["CreateStatus answered p50 (ms)".into(), num(p(&ap, "p50_ms")), "—".into(), "—".into()],
            ["CreateStatus answered p99 (ms)".into(), num(p(&ap, "p99_ms")), "—".into(), "—".into()],
            ["failed posts".into(), format!("{fan_failed} / {}", sizes.posts), "0".into(), "—".into()],
            ["bulk load (s)".into(), num(loaded.secs), "—".into(), "—".into()],
        ],
        goal: None,
        figures_meet_goal: None,
        failed: fan_failed,
        data: json!({"followers": n, "posts": sizes.posts, "fanout_page": settings.fanout_page,
                     "poll_ms": POLL.as_millis() as u64, "load_secs": loaded.secs,
                     "settle_secs": settled.map(|d| d.as_secs_f64()), "refused": fan.refused, "late": fan.late,
                     "wrong": fan.wrong, "unreached": unreached, "celebrity": celebrity,
                     "poll_errors": fan.poll_errors, "first_error": fan.first_error,
                     "to_last_follower": fp, "create_status": ap, "baseline_store_push": sp,
                     "ratio_p50": ratio(p(&fp, "p50_ms"), p(&sp, "p50_ms")),
                     "ratio_p99": ratio(p(&fp, "p99_ms"), p(&sp, "p99_ms"))}),
    };

    // (2) figures
    let (me_refused, me_wrong) = failures(&me.answers);
    ensure!(me_refused + me_wrong == 0, "the GetMe baseline failed {} of {} calls", me_refused + me_wrong, sizes.reads);
    let (refused, wrong) = failures(&pages.answers);
    let (mp, bp) = (percentiles(&pages.latency), percentiles(&me.latency));
    let mut page_rows = latency_rows(&mp, &bp);
    page_rows.push(["failed calls".into(), format!("{} / {}", refused + wrong, sizes.reads), "0".into(), "—".into()]);
    let posted = sizes.followees * sizes.statuses_each;
    let home = Outcome {
        id: "feed",
        title: format!(
            "home timeline: pages of {PAGE} over {} entries from {} followees",
            expected.len(),
            sizes.followees
        ),
        notes: vec![
            format!(
                "{READERS} loaded readers each follow the same {} loaded accounts; those post {posted} statuses \
                 through CreateStatus ({IN_FLIGHT} at once, in turn; {:.1} s, {:.0} posts/s), fanned out to every \
                 reader, whose timelines (read once before, so no backfill is left) then hold {} entries",
                sizes.followees,
                fill_secs,
                posted as f64 / fill_secs,
                expected.len()
            ),
            format!(
                "chatmesh: {} ListHomeTimeline (page {PAGE}) at {}/s on a fixed timetable, timed from when each was \
                 due, the readers in turn over their own HTTP/2 connections, each its own timeline: even calls the \
                 first page, odd ones the page before a random entry; failed: {refused} refused, {wrong} not exactly \
                 the {PAGE} statuses posted there",
                sizes.reads, sizes.per_second
            ),
            format!(
                "baseline: {} GetMe (the caller's own account through the same gRPC, auth and user store) at {}/s \
                 from the same readers; the two take turns in {} rounds, so a noisy neighbour's burst falls on both",
                sizes.reads, sizes.per_second, sizes.rounds
            ),
        ],
        rows: page_rows,
        goal: Some(format!("p99 ≤ {GOAL_PAGE_MS} ms")),
        figures_meet_goal: Some(!pages.latency.is_empty() && p(&mp, "p99_ms") <= GOAL_PAGE_MS),
        failed: refused + wrong,
        data: json!({"readers": READERS, "followees": sizes.followees, "entries": expected.len(), "calls": sizes.reads,
                     "per_second": sizes.per_second, "fill_secs": fill_secs, "refused": refused, "wrong": wrong,
                     "chatmesh": mp, "baseline_get_me": bp, "ratio_p99": ratio(p(&mp, "p99_ms"), p(&bp, "p99_ms"))}),
    };

    // (3) figures
    let (refused, wrong) = failures(&liked.answers);
    let answered = liked.answers.iter().filter(|a| a.is_some()).count() as u64;
    let achieved = answered as f64 / liked.span.as_secs_f64().max(f64::EPSILON);
    let exact = total_likes == likes as i64 && listed_likes == likes as i64;
    let counts_wrong = u64::from(!exact);
    let (lp, lb) = (percentiles(&liked.latency), percentiles(&store_like.open));
    let target = f64::from(sizes.likes_per_second);
    let like_outcome = Outcome {
        id: "feed",
        title: format!("likes: {likes} distinct accounts like one status at {}/s", sizes.likes_per_second),
        notes: vec![
            format!(
                "chatmesh: {likes} loaded followers (tokens signed as above) each like the last fanned-out status \
                 once, LikeStatus over gRPC at {}/s for {} s on a fixed timetable over {LIKE_CONNECTIONS} \
                 connections, each timed from when it was due; each liker first read the status once (GetStatus, \
                 as an app shows it before its like button), so every token is already verified; achieved rate = \
                 answered likes ÷ (first due time to last answer)",
                sizes.likes_per_second, sizes.like_secs
            ),
            format!(
                "afterwards total_likes is {total_likes} and ListStatusLikes' total {listed_likes}, of {likes} likes \
                 ({}); failed: {refused} refused{}, {wrong} answered a status the liker does not like",
                if exact { "exact" } else { "NOT exact" },
                liked.first_error.as_ref().map(|e| format!(" (first error: {e})")).unwrap_or_default()
            ),
            format!(
                "baseline: FjallFeedStore::like on a scratch store (server stopped), the same {likes} likers: rate = \
                 a closed loop of {STORE_IN_FLIGHT} in flight on one status; latency = the same likers on another \
                 status on chatmesh's timetable ({}/s), timed from when each was due; both counters exact",
                sizes.likes_per_second
            ),
        ],
        rows: vec![
            row(&format!("likes/s (offered {})", sizes.likes_per_second), achieved, store_like.rate),
            row("p50 (ms)", p(&lp, "p50_ms"), p(&lb, "p50_ms")),
            row("p99 (ms)", p(&lp, "p99_ms"), p(&lb, "p99_ms")),
            row("p999 (ms)", p(&lp, "p999_ms"), p(&lb, "p999_ms")),
            ["total_likes after".into(), total_likes.to_string(), likes.to_string(), "—".into()],
            ["failed likes".into(), format!("{} / {likes}", refused + wrong), "0".into(), "—".into()],
        ],
        goal: Some(format!(
            "{} likes/s held (achieved ≥ {:.0}% of it) with total_likes exact",
            sizes.likes_per_second,
            HELD_SHARE * 100.0
        )),
        figures_meet_goal: Some(achieved >= HELD_SHARE * target && exact),
        failed: refused + wrong + counts_wrong,
        data: json!({"likes": likes, "target_per_second": sizes.likes_per_second, "achieved_per_second": achieved,
                     "span_secs": liked.span.as_secs_f64(), "refused": refused, "wrong": wrong,
                     "total_likes": total_likes, "listed_likes": listed_likes, "exact": exact,
                     "first_error": liked.first_error, "chatmesh": lp, "baseline_store_rate": store_like.rate,
                     "baseline_store_timetable": lb, "ratio_rate": ratio(achieved, store_like.rate),
                     "ratio_p99": ratio(p(&lp, "p99_ms"), p(&lb, "p99_ms"))}),
    };
    Ok(vec![fanout_outcome, home, like_outcome])
}
