//! The feed over time: home timelines (backfill on follow, fan-out past its first page, the
//! celebrity path, unfollow, block and delete taking statuses out), trends and their window, and
//! scheduled statuses published exactly once, across a restart too.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use chatmesh_api::feed::v1::{self as pb, StatusKind};
use chatmesh_platform::config::Config;
use chatmesh_tests::{TestApp, User, authed, eventually, refused, test_config};
use tonic::{Code, Status};

/// An app whose feed is configured by `tune`, over its own temporary data dir.
async fn spawn_feed(tune: impl FnOnce(&mut Config)) -> (tempfile::TempDir, TestApp) {
    let dir = tempfile::tempdir().expect("temporary data dir");
    let mut config = test_config(dir.path().to_owned());
    // why: background work (fan-out pages, due statuses) is looked for often, so waits stay short.
    config.feed.poll_interval_ms = 100;
    tune(&mut config);
    (dir, TestApp::spawn_with(config).await)
}

async fn create(app: &TestApp, who: &User, request: pb::CreateStatusRequest) -> Result<pb::Status, Status> {
    Ok(app.feed().await.create_status(authed(&who.token, request)).await?.into_inner().status.expect("status"))
}

async fn post(app: &TestApp, who: &User, words: &str) -> pb::Status {
    create(app, who, pb::CreateStatusRequest { text: words.into(), ..Default::default() }).await.expect("post")
}

async fn delete(app: &TestApp, who: &User, status_id: &str) -> Result<(), Status> {
    let request = authed(&who.token, pb::DeleteStatusRequest { status_id: status_id.into() });
    app.feed().await.delete_status(request).await.map(drop)
}

async fn get(app: &TestApp, who: &User, status_id: &str) -> Result<pb::Status, Status> {
    let request = authed(&who.token, pb::GetStatusRequest { status_id: status_id.into() });
    Ok(app.feed().await.get_status(request).await?.into_inner().status.expect("status"))
}

/// Every page of `who`'s home timeline, `page_size` at a time.
async fn timeline_in_pages(app: &TestApp, who: &User, page_size: i32) -> Vec<pb::Status> {
    let (mut all, mut page_token) = (Vec::new(), String::new());
    let mut feed = app.feed().await;
    loop {
        let request = authed(&who.token, pb::ListHomeTimelineRequest { page_size, page_token });
        let page = feed.list_home_timeline(request).await.expect("timeline").into_inner();
        all.extend(page.statuses);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

async fn timeline(app: &TestApp, who: &User) -> Vec<pb::Status> {
    timeline_in_pages(app, who, 100).await
}

/// Every published status of `of`, newest first, as `viewer` lists them, and the stated total.
async fn user_statuses(app: &TestApp, viewer: &User, of: &User) -> (Vec<pb::Status>, i64) {
    let (mut all, mut page_token, mut total) = (Vec::new(), String::new(), None);
    let mut feed = app.feed().await;
    loop {
        let request = pb::ListUserStatusesRequest { user_id: of.id.clone(), page_size: 100, page_token };
        let page = feed.list_user_statuses(authed(&viewer.token, request)).await.expect("statuses").into_inner();
        total.get_or_insert(page.total_size);
        all.extend(page.statuses);
        if page.next_page_token.is_empty() {
            return (all, total.unwrap_or_default());
        }
        page_token = page.next_page_token;
    }
}

async fn scheduled(app: &TestApp, who: &User) -> Vec<pb::Status> {
    let request = authed(&who.token, pb::ListScheduledStatusesRequest::default());
    app.feed().await.list_scheduled_statuses(request).await.expect("scheduled statuses").into_inner().statuses
}

fn ids(statuses: &[pb::Status]) -> Vec<String> {
    statuses.iter().map(|s| s.status_id.clone()).collect()
}

fn texts(statuses: &[pb::Status]) -> Vec<String> {
    statuses.iter().map(|s| s.text.clone()).collect()
}

fn authors(statuses: &[pb::Status]) -> Vec<String> {
    statuses.iter().map(|s| s.author_id.clone()).collect()
}

#[tokio::test]
async fn the_home_timeline_holds_own_and_followed_statuses_newest_first_in_pages_that_cover_it_once() {
    let app = &TestApp::spawn().await;
    let ada = &app.user("ada").await;
    let bob = &app.person("bob", "Bob Builder").await;
    post(app, ada, "ada's first").await;
    assert_eq!(texts(&timeline(app, ada).await), ["ada's first"], "own statuses show");
    for i in 1..=5 {
        post(app, bob, &format!("bob {i}")).await;
    }
    assert_eq!(texts(&timeline(app, ada).await), ["ada's first"], "not followed yet");

    app.follow(ada, bob).await;
    let want = ["bob 5", "bob 4", "bob 3", "bob 2", "bob 1", "ada's first"];
    eventually("the follow backfills bob's latest statuses on read", || async move {
        let seen = texts(&timeline(app, ada).await);
        if seen == want { Ok(()) } else { Err(seen) }
    })
    .await;
    let newest = post(app, bob, "bob 6").await;
    let seen = timeline(app, ada).await;
    assert_eq!(seen.first().map(|s| &s.status_id), Some(&newest.status_id), "a followee's new post comes first");
    assert_eq!(seen[0].author.as_ref().map(|a| a.name.as_str()), Some("Bob Builder"));
    assert_eq!(seen.len(), 7, "{:?}", texts(&seen));

    let all = ids(&seen);
    for page_size in [1, 2, 3, 7] {
        assert_eq!(ids(&timeline_in_pages(app, ada, page_size).await), all, "pages of {page_size}");
    }
}

/// Unfollows and blocks reach timelines through per-process caches of at most 1 s; the rest
/// is slack for two loaded cores.
const GRAPH_BOUND: Duration = Duration::from_secs(5);

/// Waits until `reader`'s timeline reads `want` (texts), within [`GRAPH_BOUND`].
async fn timeline_becomes(app: &TestApp, reader: &User, want: &[&str], what: &str) {
    let started = Instant::now();
    eventually(what, || async move {
        let seen = texts(&timeline(app, reader).await);
        if seen == want { Ok(()) } else { Err(seen) }
    })
    .await;
    assert!(started.elapsed() < GRAPH_BOUND, "{what}: took {:?}", started.elapsed());
}

#[tokio::test]
async fn unfollowing_and_blocking_either_way_take_their_statuses_out_of_the_timeline() {
    let app = &TestApp::spawn().await;
    let ada = &app.user("ada").await;
    let (bob, cy, dan) = (&app.user("bob").await, &app.user("cy").await, &app.user("dan").await);
    for whom in [&bob, &cy, &dan] {
        app.follow(ada, whom).await;
    }
    for (who, words) in [(&bob, "bob says hi"), (&cy, "cy says hi"), (&dan, "dan says hi")] {
        post(app, who, words).await;
    }
    eventually("every followee's status shows", || async move {
        let seen = texts(&timeline(app, ada).await);
        if seen == ["dan says hi", "cy says hi", "bob says hi"] { Ok(()) } else { Err(seen) }
    })
    .await;

    app.unfollow(ada, bob).await;
    timeline_becomes(app, ada, &["dan says hi", "cy says hi"], "an unfollow takes bob's statuses out").await;
    app.block(cy, ada).await;
    timeline_becomes(app, ada, &["dan says hi"], "the author blocking the reader takes cy's statuses out").await;
    app.block(ada, dan).await;
    timeline_becomes(app, ada, &[], "the reader blocking the author takes dan's statuses out").await;
    assert_eq!(texts(&timeline(app, bob).await), ["bob says hi"], "bob's own timeline keeps it");
}

#[tokio::test]
async fn a_deleted_status_and_reposts_of_it_leave_every_timeline_at_once() {
    let app = &TestApp::spawn().await;
    let (ada, eve, fay) = (&app.user("ada").await, &app.user("eve").await, &app.user("fay").await);
    app.follow(ada, eve).await;
    app.follow(ada, fay).await;
    app.follow(fay, eve).await;
    let kept = post(app, eve, "kept").await;
    let doomed = post(app, eve, "doomed").await;
    let request = authed(&fay.token, pb::RepostStatusRequest { status_id: doomed.status_id.clone() });
    let shared = app.feed().await.repost_status(request).await.expect("repost").into_inner().status.unwrap();
    let everything = &vec![shared.status_id.clone(), doomed.status_id.clone(), kept.status_id.clone()];
    eventually("the statuses and the repost show", || async move {
        let seen = ids(&timeline(app, ada).await);
        if &seen == everything { Ok(()) } else { Err(seen) }
    })
    .await;
    eventually("fay's timeline holds them too", || async move {
        let seen = ids(&timeline(app, fay).await);
        if &seen == everything { Ok(()) } else { Err(seen) }
    })
    .await;

    delete(app, eve, &doomed.status_id).await.expect("delete");
    for reader in [&ada, &eve, &fay] {
        assert_eq!(ids(&timeline(app, reader).await), [kept.status_id.as_str()], "{}'s timeline", reader.id);
    }
}

#[tokio::test]
async fn a_status_reaches_every_follower_past_the_first_fan_out_page_exactly_once() {
    let (_dir, app) = &spawn_feed(|config| config.feed.fanout_page = 3).await;
    let author = &app.user("author").await;
    let mut followers = Vec::new();
    for i in 0..10 {
        let follower = app.user(&format!("follower{i}")).await;
        app.follow(&follower, author).await;
        // why: a first read backfills the follow, so what arrives later arrives by fan-out.
        assert!(timeline(app, &follower).await.is_empty());
        followers.push(follower);
    }
    let first = post(app, author, "one").await;
    let one = &vec![first.status_id.clone()];
    for newest in &followers[7..] {
        let seen = ids(&timeline(app, newest).await);
        assert_eq!(seen, [first.status_id.as_str()], "the first page (newest follows) is written before the answer");
    }
    for follower in &followers {
        eventually("the rest of the fan-out runs in the background", || async move {
            let seen = ids(&timeline(app, follower).await);
            if &seen == one { Ok(()) } else { Err(seen) }
        })
        .await;
    }
    let second = post(app, author, "two").await;
    let third = post(app, author, "three").await;
    let want = &vec![third.status_id.clone(), second.status_id.clone(), first.status_id.clone()];
    for follower in &followers {
        eventually("later posts arrive once each, newest first", || async move {
            let seen = ids(&timeline(app, follower).await);
            if &seen == want { Ok(()) } else { Err(seen) }
        })
        .await;
    }
}

/// One timeline entry as a reader sees it: (author's name, kind, its text or the reposted text).
type Entry = (String, i32, String);

fn entries(statuses: &[pb::Status]) -> Vec<Entry> {
    statuses
        .iter()
        .map(|s| {
            let name = s.author.as_ref().map(|a| a.name.clone()).unwrap_or_default();
            let text = if s.kind == StatusKind::Repost as i32 {
                s.referenced_status.as_ref().map(|r| r.text.clone()).unwrap_or_default()
            } else {
                s.text.clone()
            };
            (name, s.kind, text)
        })
        .collect()
}

/// The same script on an app with `celebrity_followers`: a star with three followers, a plain
/// author with one, posts, a reply and a repost, then an unfollow of the star. Returns every
/// participant's timeline after the posts, and the unfollower's after the unfollow.
async fn celebrity_script(celebrity_followers: u64) -> (Vec<Vec<Entry>>, Vec<Entry>) {
    let (_dir, app) = &spawn_feed(|config| config.feed.celebrity_followers = celebrity_followers).await;
    let star = app.person("star", "Star").await;
    let plain = app.person("plain", "Plain").await;
    let fans = [app.person("fan_one", "Fan 1").await, app.person("fan_two", "Fan 2").await];
    let fan3 = app.person("fan_three", "Fan 3").await;
    for fan in fans.iter().chain([&fan3]) {
        app.follow(fan, &star).await;
    }
    app.follow(&fans[0], &plain).await;
    for reader in fans.iter().chain([&fan3, &star, &plain]) {
        timeline(app, reader).await;
    }
    let s1 = post(app, &star, "star 1").await;
    let p1 = post(app, &plain, "plain 1").await;
    post(app, &star, "star 2").await;
    let request = authed(&plain.token, pb::RepostStatusRequest { status_id: s1.status_id.clone() });
    app.feed().await.repost_status(request).await.expect("repost");
    let reply = pb::CreateStatusRequest {
        text: "star answers".into(),
        in_reply_to_status_id: p1.status_id.clone(),
        ..Default::default()
    };
    create(app, &star, reply).await.expect("reply");
    post(app, &star, "star 3").await;

    let mut seen = Vec::new();
    for reader in fans.iter().chain([&fan3, &star, &plain]) {
        seen.push(entries(&timeline(app, reader).await));
    }
    let unfollower = &fans[1];
    app.unfollow(unfollower, &star).await;
    let after = eventually("the unfollow takes the star out", || async move {
        let left = entries(&timeline(app, unfollower).await);
        if left.iter().all(|(name, _, _)| name != "Star") { Ok(left) } else { Err(left) }
    })
    .await;
    (seen, after)
}

#[tokio::test]
async fn the_celebrity_path_gives_the_same_timelines_as_fan_out() {
    let (fanned, fanned_after) = celebrity_script(1_000_000).await;
    let (merged, merged_after) = celebrity_script(2).await;
    let fan3 = &fanned[2];
    let posts: Vec<&str> =
        fan3.iter().filter(|(_, kind, _)| *kind == StatusKind::Post as i32).map(|(_, _, t)| t.as_str()).collect();
    assert_eq!(posts, ["star 3", "star 2", "star 1"], "the script ran: {fan3:?}");
    assert!(fanned[0].iter().any(|(name, kind, text)| {
        (name.as_str(), *kind, text.as_str()) == ("Plain", StatusKind::Repost as i32, "star 1")
    }));
    assert_eq!(merged, fanned, "the same timelines, in the same order");
    assert_eq!(merged_after, fanned_after, "after the unfollow too");
}

/// The trends' (tag, count) pairs, most used first, and when they were taken.
async fn trends(app: &TestApp, who: &User) -> (Vec<(String, i64)>, Option<prost_types::Timestamp>) {
    let request = authed(&who.token, pb::ListTrendsRequest::default());
    let answer = app.feed().await.list_trends(request).await.expect("trends").into_inner();
    (answer.trends.into_iter().map(|t| (t.tag, t.count)).collect(), answer.refresh_time)
}

fn tuned_trends(config: &mut Config, bucket_secs: u64) {
    config.feed.trends_bucket_secs = bucket_secs;
    config.feed.trends_buckets = 3;
    config.feed.trends_refresh_secs = 1;
}

async fn post_reference_tags(app: &TestApp, who: &User) -> Vec<pb::Status> {
    let mut posted = Vec::new();
    for words in ["#rust one", "#Rust and #go", "#RUST, #go and #rust again", "#zig", "no tags"] {
        posted.push(post(app, who, words).await);
    }
    posted
}

fn owned(pairs: &[(&str, i64)]) -> Vec<(String, i64)> {
    pairs.iter().map(|(tag, count)| (tag.to_string(), *count)).collect()
}

#[tokio::test]
async fn trends_rank_the_windows_tags_most_used_first_and_forget_them_after_the_window() {
    let (_dir, app) = &spawn_feed(|config| tuned_trends(config, 1)).await;
    let ada = &app.user("ada").await;
    post_reference_tags(app, ada).await;
    let reference = &owned(&[("rust", 3), ("go", 2), ("zig", 1)]);
    let refreshed = eventually("the next refresh counts every tag once per status", || async move {
        let (seen, at) = trends(app, ada).await;
        if &seen == reference { Ok(at) } else { Err(seen) }
    })
    .await;
    assert!(refreshed.is_some(), "the refresh time is stated");
    eventually("tags older than the window drop out", || async move {
        let (seen, _) = trends(app, ada).await;
        if seen.is_empty() { Ok(()) } else { Err(seen) }
    })
    .await;
}

#[tokio::test]
async fn deleting_a_status_takes_its_tags_back_at_the_next_trends_refresh() {
    // why: minute buckets keep the statuses in the window for the whole test.
    let (_dir, app) = &spawn_feed(|config| tuned_trends(config, 60)).await;
    let ada = &app.user("ada").await;
    let posted = post_reference_tags(app, ada).await;
    let reference = &owned(&[("rust", 3), ("go", 2), ("zig", 1)]);
    eventually("the reference counts", || async move {
        let (seen, _) = trends(app, ada).await;
        if &seen == reference { Ok(()) } else { Err(seen) }
    })
    .await;
    delete(app, ada, &posted[0].status_id).await.expect("delete a #rust status");
    let want = &BTreeMap::from([("go".to_owned(), 2), ("rust".to_owned(), 2), ("zig".to_owned(), 1)]);
    let seen = eventually("the next refresh counts one #rust less", || async move {
        let (seen, _) = trends(app, ada).await;
        if seen.iter().cloned().collect::<BTreeMap<_, _>>() == *want { Ok(seen) } else { Err(seen) }
    })
    .await;
    assert!(seen.windows(2).all(|w| w[0].1 >= w[1].1), "most used first: {seen:?}");
}

/// A publish time `ms` milliseconds from now, whole milliseconds.
fn in_ms(ms: i64) -> prost_types::Timestamp {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64;
    let at = now + ms;
    prost_types::Timestamp { seconds: at.div_euclid(1000), nanos: (at.rem_euclid(1000) * 1_000_000) as i32 }
}

fn ms_of(at: &prost_types::Timestamp) -> i64 {
    at.seconds * 1000 + i64::from(at.nanos) / 1_000_000
}

async fn schedule(app: &TestApp, who: &User, words: &str, at: prost_types::Timestamp) -> Result<pb::Status, Status> {
    create(app, who, pb::CreateStatusRequest { text: words.into(), publish_time: Some(at), ..Default::default() }).await
}

#[tokio::test]
async fn a_publish_time_in_the_past_or_over_a_year_ahead_is_refused_naming_it() {
    let app = &TestApp::spawn().await;
    let ada = &app.user("ada").await;
    for at in [in_ms(-60_000), in_ms(366 * 24 * 3600 * 1000)] {
        let status = schedule(app, ada, "when?", at).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with("publish_time"), "{}", status.message());
    }
    assert!(scheduled(app, ada).await.is_empty(), "nothing was scheduled");
    assert_eq!(user_statuses(app, ada, ada).await.1, 0);
}

#[tokio::test]
async fn a_scheduled_status_is_its_authors_alone_until_it_is_published_once_under_a_new_id() {
    let (_dir, app) = &spawn_feed(|_| {}).await;
    let (ada, bob) = (&app.user("ada").await, &app.user("bob").await);
    app.follow(bob, ada).await;
    timeline(app, bob).await;
    let due = in_ms(2_000);
    let planned = schedule(app, ada, "later #soon", due).await.expect("scheduled");
    assert!(planned.scheduled, "{planned:?}");
    assert_eq!(planned.publish_time.as_ref().map(ms_of), Some(ms_of(&due)));
    assert_eq!(ids(&scheduled(app, ada).await), [planned.status_id.as_str()]);
    assert!(scheduled(app, bob).await.is_empty(), "the author's alone");
    refused(get(app, bob, &planned.status_id).await, Code::NotFound, "STATUS_NOT_FOUND");
    assert!(get(app, ada, &planned.status_id).await.expect("its author reads it").scheduled);
    assert_eq!(user_statuses(app, ada, ada).await, (vec![], 0), "not published yet");
    assert!(timeline(app, bob).await.is_empty());
    // why: a witness due later shows the worker has passed the first due time more than once.
    let witness = schedule(app, ada, "witness", in_ms(3_000)).await.expect("scheduled");

    let published = eventually("both are published", || async move {
        let (seen, total) = user_statuses(app, bob, ada).await;
        if total >= 2 && total == seen.len() as i64 { Ok(seen) } else { Err((total, texts(&seen))) }
    })
    .await;
    assert_eq!(texts(&published), ["witness", "later #soon"], "each once");
    assert_eq!(user_statuses(app, bob, ada).await.1, 2);
    let later = &published[1];
    assert!(!later.scheduled && later.kind == StatusKind::Post as i32, "{later:?}");
    assert!(later.status_id != planned.status_id && later.status_id != witness.status_id, "a new id");
    assert!(later.publish_time.as_ref().map(ms_of) >= Some(ms_of(&due)), "{later:?}");
    assert!(scheduled(app, ada).await.is_empty());
    eventually("the published statuses fan out", || async move {
        let seen = texts(&timeline(app, bob).await);
        if seen == ["witness", "later #soon"] { Ok(()) } else { Err(seen) }
    })
    .await;
}

#[tokio::test]
async fn deleting_a_scheduled_status_cancels_it() {
    let (_dir, app) = &spawn_feed(|_| {}).await;
    let ada = &app.user("ada").await;
    let cancelled = schedule(app, ada, "never", in_ms(1_000)).await.expect("scheduled");
    let witness = schedule(app, ada, "witness", in_ms(2_000)).await.expect("scheduled");
    assert_eq!(ids(&scheduled(app, ada).await), [witness.status_id.clone(), cancelled.status_id.clone()]);
    delete(app, ada, &cancelled.status_id).await.expect("cancel");
    assert_eq!(ids(&scheduled(app, ada).await), [witness.status_id.as_str()]);
    refused(get(app, ada, &cancelled.status_id).await, Code::NotFound, "STATUS_NOT_FOUND");
    let published = eventually("the witness, due after the cancelled one, is published", || async move {
        let (seen, total) = user_statuses(app, ada, ada).await;
        if total >= 1 && total == seen.len() as i64 { Ok(seen) } else { Err(total) }
    })
    .await;
    assert_eq!(texts(&published), ["witness"], "the cancelled one never was");
}

#[tokio::test]
async fn a_scheduled_status_is_published_exactly_once_across_a_restart() {
    let app = TestApp::spawn().await;
    let ada = &app.user("ada").await;
    let due = in_ms(4_000);
    schedule(&app, ada, "after the restart", due).await.expect("scheduled");
    schedule(&app, ada, "witness", in_ms(5_000)).await.expect("scheduled");
    let app = &app.restart().await;
    assert!(ms_of(&in_ms(0)) < ms_of(&due), "restarted before the due time");
    assert_eq!(texts(&scheduled(app, ada).await), ["witness", "after the restart"], "kept across the restart");
    let (total, published) = eventually("both are published", || async move {
        let (seen, total) = user_statuses(app, ada, ada).await;
        // why: a page and its total are read apart, so a publish between them can skew one read.
        if total >= 2 && total == seen.len() as i64 { Ok((total, seen)) } else { Err((total, texts(&seen))) }
    })
    .await;
    assert_eq!(
        (total, texts(&published)),
        (2, vec!["witness".to_owned(), "after the restart".to_owned()]),
        "each once"
    );
    assert_eq!(authors(&published), [ada.id.clone(), ada.id.clone()]);
}
