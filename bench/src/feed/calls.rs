//! The feed benchmark's calls to chatmesh: posts and the fan-out watch, home timeline pages
//! and GetMe on a timetable, likes on a timetable and their counters afterwards.

use std::{
    ops::Range,
    time::{Duration, Instant},
};

use anyhow::Context;
use chatmesh_api::{
    feed::v1::{self as pb_feed, feed_service_client::FeedServiceClient},
    user::v1::{self as pb_user, user_service_client::UserServiceClient},
};
use chatmesh_wire::page::encode_token;
use futures::StreamExt;
use hdrhistogram::Histogram;
use tonic::transport::Channel;

use super::PAGE;
use crate::{
    fanout::cpu_secs,
    history::{Timed, on_timetable},
    report,
    server::{Server, User, authed},
};

/// The pause between reads of the last follower's timeline while a fan-out runs (one read in
/// flight).
pub(super) const POLL: Duration = Duration::from_millis(5);
/// A post the last follower does not see within this long counts as failed.
pub(super) const FANOUT_DEADLINE: Duration = Duration::from_secs(120);
/// Posts (filling the readers' timelines) and token warm-ups in flight.
pub(super) const IN_FLIGHT: usize = 16;

/// Status ids of one home timeline page, before `before` when given.
pub(super) async fn timeline(
    feed: &mut FeedServiceClient<Channel>,
    token: &str,
    before: Option<u64>,
    size: usize,
) -> Result<Vec<u64>, tonic::Status> {
    let request = pb_feed::ListHomeTimelineRequest {
        page_size: i32::try_from(size).unwrap_or(i32::MAX),
        page_token: before.map(encode_token).unwrap_or_default(),
    };
    let page = feed.list_home_timeline(authed(token, request)).await?.into_inner();
    Ok(page.statuses.iter().filter_map(|s| s.status_id.parse().ok()).collect())
}

/// Posts `text` as `token`'s account; the new status's id.
pub(super) async fn post(feed: &mut FeedServiceClient<Channel>, token: &str, text: String) -> anyhow::Result<u64> {
    let request = pb_feed::CreateStatusRequest { text, ..Default::default() };
    let answer = feed.create_status(authed(token, request)).await.context("CreateStatus")?.into_inner();
    Ok(answer.status.context("CreateStatus answered no status")?.status_id.parse()?)
}

/// What the fan-out posts measured.
pub(super) struct Fanout {
    /// From each call until CreateStatus answered (the first follower page written).
    pub(super) answered: Histogram<u64>,
    /// From each call until the last follower's timeline showed the status.
    pub(super) last: Histogram<u64>,
    pub(super) status_ids: Vec<u64>,
    pub(super) refused: u64,
    pub(super) late: u64,
    /// Watched followers whose timeline afterwards is not every post once, newest first.
    pub(super) wrong: u64,
    pub(super) poll_errors: u64,
    pub(super) first_error: Option<String>,
}

/// The posting account posts `posts` statuses one after another; each is timed until the
/// oldest follower (listed last, so written last) sees it. Every watcher (the oldest first)
/// reads its timeline once before, so that read's backfill is behind it and later reads show
/// what fan-out wrote.
pub(super) async fn fanout(server: &Server, star: &User, watchers: &[User], posts: u64) -> anyhow::Result<Fanout> {
    let mut feed = FeedServiceClient::new(server.channel().await?);
    let mut poll = FeedServiceClient::new(server.channel().await?);
    for watcher in watchers {
        timeline(&mut poll, &watcher.token, None, 1).await.context("a follower's first ListHomeTimeline")?;
    }
    let last_follower = &watchers[0].token;
    let mut run = Fanout {
        answered: report::histogram(),
        last: report::histogram(),
        status_ids: Vec::new(),
        refused: 0,
        late: 0,
        wrong: 0,
        poll_errors: 0,
        first_error: None,
    };
    for p in 0..posts {
        let started = Instant::now();
        let status_id = match post(&mut feed, &star.token, format!("fan-out {p}: to every follower")).await {
            Ok(id) => id,
            Err(e) => {
                run.refused += 1;
                run.first_error.get_or_insert_with(|| format!("{e:#}"));
                continue;
            }
        };
        report::record(&mut run.answered, started.elapsed());
        run.status_ids.push(status_id);
        loop {
            match timeline(&mut poll, last_follower, None, 1).await {
                Ok(ids) if ids.first() == Some(&status_id) => {
                    report::record(&mut run.last, started.elapsed());
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    run.poll_errors += 1;
                    run.first_error.get_or_insert_with(|| format!("ListHomeTimeline: {e}"));
                }
            }
            if started.elapsed() > FANOUT_DEADLINE {
                run.late += 1;
                break;
            }
            tokio::time::sleep(POLL).await;
        }
    }
    let expected: Vec<u64> = run.status_ids.iter().rev().copied().collect();
    for watcher in watchers {
        let held = timeline(&mut poll, &watcher.token, None, (expected.len() + 1).min(100)).await.ok();
        run.wrong += u64::from(held.as_ref() != Some(&expected));
    }
    Ok(run)
}

/// A reader with its own connection.
#[derive(Clone)]
pub(super) struct Reader {
    pub(super) feed: FeedServiceClient<Channel>,
    pub(super) users: UserServiceClient<Channel>,
    pub(super) user: User,
}

/// The followees post `statuses_each` statuses each, in turn, [`IN_FLIGHT`] at once; every
/// status id posted, newest first, and how long it took.
pub(super) async fn fill_timelines(
    server: &Server,
    followees: &[User],
    statuses_each: usize,
) -> anyhow::Result<(Vec<u64>, f64)> {
    let feed = FeedServiceClient::new(server.channel().await?);
    let started = Instant::now();
    let posts = futures::stream::iter((0..followees.len() * statuses_each).map(|k| {
        let (mut feed, token) = (feed.clone(), followees[k % followees.len()].token.clone());
        async move { post(&mut feed, &token, format!("status {k} of a followee #topic{}", k % 7)).await }
    }));
    let mut ids: Vec<u64> =
        posts.buffer_unordered(IN_FLIGHT).collect::<Vec<_>>().await.into_iter().collect::<Result<_, _>>()?;
    ids.sort_unstable_by_key(|id| std::cmp::Reverse(*id));
    Ok((ids, started.elapsed().as_secs_f64()))
}

/// ListHomeTimeline of the readers in turn, each its own timeline: a first page for even calls,
/// the page before a random entry for odd ones. Right when it is exactly those [`PAGE`]
/// statuses.
pub(super) async fn home_pages(
    readers: &[Reader],
    expected: &[u64],
    points: &[usize],
    calls: Range<u64>,
    per_second: u32,
) -> anyhow::Result<Timed<bool>> {
    on_timetable(calls.end - calls.start, per_second, |j| {
        let k = (calls.start + j) as usize;
        let Reader { mut feed, user, .. } = readers[k % readers.len()].clone();
        let (before, want) = match k % 2 {
            0 => (None, expected[..PAGE].to_vec()),
            _ => (Some(expected[points[k]]), expected[points[k] + 1..points[k] + 1 + PAGE].to_vec()),
        };
        async move { Some(timeline(&mut feed, &user.token, before, PAGE).await.ok()? == want) }
    })
    .await
}

/// GetMe of the readers in turn: the baseline.
pub(super) async fn get_me(readers: &[Reader], calls: Range<u64>, per_second: u32) -> anyhow::Result<Timed<bool>> {
    on_timetable(calls.end - calls.start, per_second, |j| {
        let Reader { mut users, user, .. } = readers[(calls.start + j) as usize % readers.len()].clone();
        async move {
            let answer = users.get_me(authed(&user.token, pb_user::GetMeRequest {})).await.ok()?;
            Some(answer.into_inner().user.is_some_and(|u| u.user_id == user.id))
        }
    })
    .await
}

/// Round `r` of `rounds`: its share of `total` calls.
pub(super) fn share(total: u64, rounds: u64, r: u64) -> Range<u64> {
    let each = total.div_ceil(rounds);
    (r * each).min(total)..((r + 1) * each).min(total)
}

/// Adds one round's calls to those of the rounds before.
pub(super) fn merge(into: &mut Timed<bool>, round: Timed<bool>) -> anyhow::Result<()> {
    into.latency.add(&round.latency).map_err(|e| anyhow::anyhow!("merging histograms: {e:?}"))?;
    into.answers.extend(round.answers);
    Ok(())
}

/// Failed answers: refused (`None`) or wrong (`Some(false)`).
pub(super) fn failures(answers: &[Option<bool>]) -> (u64, u64) {
    let refused = answers.iter().filter(|a| a.is_none()).count() as u64;
    let wrong = answers.iter().filter(|a| **a == Some(false)).count() as u64;
    (refused, wrong)
}

/// What the likes on the timetable measured.
pub(super) struct LikeRun {
    /// Latency of the answered likes, from when each was due.
    pub(super) latency: Histogram<u64>,
    /// Each like's answer: `Some(liked)`, whether the answer says the caller likes it.
    pub(super) answers: Vec<Option<bool>>,
    /// From the first due time to the last answer.
    pub(super) span: Duration,
    pub(super) first_error: Option<String>,
}

/// `likers` like `status_id` once each on a fixed timetable at `per_second`, over the
/// connections in turn, each like its own task timed from when it was due.
pub(super) async fn like_on_timetable(
    connections: &[FeedServiceClient<Channel>],
    likers: &[User],
    status_id: u64,
    per_second: u32,
) -> anyhow::Result<LikeRun> {
    let period = Duration::from_secs_f64(1.0 / f64::from(per_second));
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let tasks: Vec<_> = likers
        .iter()
        .enumerate()
        .map(|(k, liker)| {
            let due = start + period * u32::try_from(k).unwrap_or(u32::MAX);
            let mut feed = connections[k % connections.len()].clone();
            let request = authed(&liker.token, pb_feed::LikeStatusRequest { status_id: status_id.to_string() });
            tokio::spawn(async move {
                tokio::time::sleep_until(due).await;
                let answer = feed.like_status(request).await;
                let done = tokio::time::Instant::now();
                (
                    done - due,
                    done,
                    answer.map(|a| a.into_inner().status.and_then(|s| s.relation).is_some_and(|r| r.liked)),
                )
            })
        })
        .collect();
    let mut run =
        LikeRun { latency: report::histogram(), answers: Vec::new(), span: Duration::ZERO, first_error: None };
    let mut last = start;
    for task in tasks {
        let (elapsed, done, answer) = task.await?;
        last = last.max(done);
        match answer {
            Ok(liked) => {
                report::record(&mut run.latency, elapsed);
                run.answers.push(Some(liked));
            }
            Err(e) => {
                run.first_error.get_or_insert_with(|| e.to_string());
                run.answers.push(None);
            }
        }
    }
    run.span = last - start;
    Ok(run)
}

/// The liked status's counters after the likes: `total_likes` and ListStatusLikes' total.
pub(super) async fn like_totals(server: &Server, reader: &User, status_id: u64) -> anyhow::Result<(i64, i64)> {
    let mut feed = FeedServiceClient::new(server.channel().await?);
    let request = pb_feed::GetStatusRequest { status_id: status_id.to_string() };
    let status = feed.get_status(authed(&reader.token, request)).await.context("GetStatus")?.into_inner();
    let total_likes = status.status.context("GetStatus answered no status")?.total_likes;
    let request =
        pb_feed::ListStatusLikesRequest { status_id: status_id.to_string(), page_size: 1, ..Default::default() };
    let listed = feed.list_status_likes(authed(&reader.token, request)).await.context("ListStatusLikes")?;
    Ok((total_likes, listed.into_inner().total_size))
}

/// Every liker reads the status once (GetStatus, as an app shows it before its like button),
/// so the server has verified each token before the likes are timed.
pub(super) async fn warm_tokens(
    connections: &[FeedServiceClient<Channel>],
    likers: &[User],
    status_id: u64,
) -> anyhow::Result<()> {
    let reads = futures::stream::iter(likers.iter().enumerate().map(|(k, liker)| {
        let mut feed = connections[k % connections.len()].clone();
        let request = authed(&liker.token, pb_feed::GetStatusRequest { status_id: status_id.to_string() });
        async move { feed.get_status(request).await.map(|_| ()) }
    }));
    let answers: Vec<_> = reads.buffer_unordered(IN_FLIGHT).collect().await;
    answers.into_iter().collect::<Result<Vec<()>, _>>().context("a liker's GetStatus")?;
    Ok(())
}

/// Waits until the server is quiet (under 5% of a core over a second); how long it took, or
/// `None` if it never was within `within`.
pub(super) async fn settle(server: &Server, within: Duration) -> Option<Duration> {
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
