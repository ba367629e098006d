//! (e) History: ListChats pages of 50 at random points of a channel holding `chats` chats,
//! written by the bulk loader straight through the chat store (not the API); beside the same
//! pages read from the store in-process. (f) Search over the same chats: indexing throughput
//! (the server's indexer catching up with the loaded feed) and SearchChats over a fixed query
//! mix, beside the same queries on the index in-process. And (g) with that data: cold start of
//! `chatmesh up` to healthy and its idle RSS, beside an empty start in the same run.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use chatmesh_api::chat::v1 as pb_chat;
use chatmesh_chat::store::{Chats, CreateOutcome, FjallChatStore, Range};
use chatmesh_platform::ids::IdGenerator;
use chatmesh_search::{IndexQuery, SearchIndex, TantivyIndex, parse_query};
use futures::StreamExt;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;

use crate::{
    ingest::text_chat,
    report::{self, Outcome, num, percentiles, ratio, show_ratio},
    server::{Server, authed},
};

/// The page every query asks for.
const PAGE: usize = 50;
/// Sends the loader keeps in flight (the store's group commit batches them).
const LOADING: usize = 256;
/// The loader's node id: its ids never collide with the server's.
const LOADER_NODE: u16 = 1000;
/// Words the loaded chats are made of (English and CJK, for search over the same data).
const WORDS: [&str; 24] = [
    "release",
    "notes",
    "deploy",
    "review",
    "meeting",
    "lunch",
    "budget",
    "design",
    "bug",
    "fix",
    "ship",
    "today",
    "tomorrow",
    "weekend",
    "coffee",
    "猫が好き",
    "会议",
    "明天",
    "发布",
    "周末",
    "咖啡",
    "设计",
    "한국어",
    "회의",
];

/// The search mix: English words, a phrase, and Chinese, Japanese and Korean.
const QUERIES: [&str; 8] =
    ["release", "deploy review", "\"release notes\"", "coffee weekend", "猫が好き", "会议", "设计 发布", "한국어"];
/// Hits per search page.
const HITS: usize = 20;

/// The sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub chats: usize,
    pub queries: u64,
    pub per_second: u32,
    /// Searches, at their own (lower) rate: one search does far more than one page.
    pub searches: u64,
    pub searches_per_second: u32,
}

/// Syllables of the filler vocabulary (20 × 20 × 20 = 8,000 words).
const SYLLABLES: [&str; 20] = [
    "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "be", "do", "fu", "ga", "hi", "jo", "ku", "ma", "no", "pe", "ri",
    "zu",
];

/// A chat's text: 4–11 words, mostly from an 8,000-word filler vocabulary, one in 50 from
/// [`WORDS`] (what the search mix asks for), so a one-word query matches well under 1% of the
/// chats — as real searches are selective — rather than a quarter of them.
fn text_of(n: usize, rng: &mut StdRng) -> String {
    let words = 4 + n % 8;
    (0..words)
        .map(|_| {
            if rng.random_range(0..50) == 0 {
                WORDS[rng.random_range(0..WORDS.len())].to_owned()
            } else {
                (0..3).map(|_| SYLLABLES[rng.random_range(0..SYLLABLES.len())]).collect::<String>()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes `count` chats of `sender` in `channel` straight into the store; returns their ids.
async fn load(store: Arc<FjallChatStore>, channel: u64, sender: u64, count: usize) -> anyhow::Result<Vec<u64>> {
    let mut rng = StdRng::seed_from_u64(7);
    let texts: Vec<String> = (0..count).map(|n| text_of(n, &mut rng)).collect();
    let sends = futures::stream::iter(texts.into_iter().map(|text| {
        let store = store.clone();
        async move {
            match store.create_chat(text_chat(channel, sender, text)).await? {
                CreateOutcome::Created(chat) => anyhow::Ok(chat.chat_id),
                other => anyhow::bail!("the loader's chat was not created: {other:?}"),
            }
        }
    }));
    let mut ids: Vec<u64> =
        sends.buffer_unordered(LOADING).collect::<Vec<_>>().await.into_iter().collect::<Result<_, _>>()?;
    ids.sort_unstable();
    Ok(ids)
}

/// The random points every query starts at (the same for chatmesh and the baseline).
fn points(ids: &[u64], queries: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(42);
    (0..queries).map(|_| ids[rng.random_range(PAGE..ids.len().max(PAGE + 1))]).collect()
}

/// The floor: the same pages from the store in-process, one after another.
async fn store_pages(
    store: &FjallChatStore,
    channel: u64,
    viewer: u64,
    points: &[u64],
) -> anyhow::Result<Histogram<u64>> {
    let mut latency = report::histogram();
    for &before in points {
        let started = Instant::now();
        let page = store.list_chats(channel, Range::Before(Some(before)), PAGE, viewer).await?;
        report::record(&mut latency, started.elapsed());
        anyhow::ensure!(page.len() == PAGE, "a page of {} chats before {before}", page.len());
    }
    Ok(latency)
}

/// Calls made on a timetable: the latency of every answered call, timed from when it was due,
/// and each call's answer in order (`None`: the call failed).
pub(crate) struct Timed<T> {
    pub(crate) latency: Histogram<u64>,
    pub(crate) answers: Vec<Option<T>>,
}

/// Runs `count` calls on a fixed timetable at `per_second`, each its own task timed from when
/// it was due; `call(k)` answers what call `k` returned, or `None` when it failed.
pub(crate) async fn on_timetable<F, Fut, T>(count: u64, per_second: u32, call: F) -> anyhow::Result<Timed<T>>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Option<T>> + Send + 'static,
    T: Send + 'static,
{
    let period = Duration::from_secs_f64(1.0 / f64::from(per_second));
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let tasks: Vec<_> = (0..count)
        .map(|k| {
            let due = start + period * u32::try_from(k).unwrap_or(u32::MAX);
            let call = call(k);
            tokio::spawn(async move {
                tokio::time::sleep_until(due).await;
                let answer = call.await;
                (due.elapsed(), answer)
            })
        })
        .collect();
    let mut timed = Timed { latency: report::histogram(), answers: Vec::with_capacity(tasks.len()) };
    for task in tasks {
        let (elapsed, answer) = task.await?;
        if answer.is_some() {
            report::record(&mut timed.latency, elapsed);
        }
        timed.answers.push(answer);
    }
    Ok(timed)
}

/// chatmesh: ListChats over gRPC before each point, on a fixed timetable; each answer is the
/// page's length.
async fn server_pages(
    server: &Server,
    token: &str,
    channel: &str,
    points: &[u64],
    per_second: u32,
) -> anyhow::Result<Timed<usize>> {
    let client = server.chats().await?;
    on_timetable(points.len() as u64, per_second, |k| {
        let (mut client, token) = (client.clone(), token.to_owned());
        let request = pb_chat::ListChatsRequest {
            channel_id: channel.to_owned(),
            before: points[k as usize].to_string(),
            page_size: PAGE as i32,
            ..Default::default()
        };
        async move { client.list_chats(authed(&token, request)).await.ok().map(|a| a.get_ref().chats.len()) }
    })
    .await
}

/// chatmesh: SearchChats over gRPC, the mix in turn, on a fixed timetable; each answer is the
/// number of hits.
async fn server_searches(server: &Server, token: &str, count: u64, per_second: u32) -> anyhow::Result<Timed<usize>> {
    let client = server.chats().await?;
    on_timetable(count, per_second, |k| {
        let (mut client, token) = (client.clone(), token.to_owned());
        let query = QUERIES[k as usize % QUERIES.len()].to_owned();
        let request = pb_chat::SearchChatsRequest { query, page_size: HITS as i32, ..Default::default() };
        async move { client.search_chats(authed(&token, request)).await.ok().map(|a| a.get_ref().hits.len()) }
    })
    .await
}

/// The floor: the same queries on the server's index, opened read-only in-process; with the
/// number of hits of each.
async fn index_searches(
    dir: &Path,
    channel: u64,
    viewer: u64,
    count: u64,
) -> anyhow::Result<(Histogram<u64>, Vec<usize>)> {
    let index = TantivyIndex::open_reader(dir).map_err(|e| anyhow::anyhow!("opening the index: {e}"))?;
    let mut latency = report::histogram();
    let mut found = Vec::new();
    for k in 0..count {
        let text = QUERIES[k as usize % QUERIES.len()];
        let query = IndexQuery {
            query: parse_query(text).map_err(|e| anyhow::anyhow!("{text}: {e:?}"))?,
            channel_ids: vec![channel],
            sender_id: None,
            from_ms: None,
            until_ms: None,
            before_chat_id: None,
            viewer,
            limit: HITS,
        };
        let started = Instant::now();
        let hits = index.search(query).await.map_err(|e| anyhow::anyhow!("search: {e}"))?;
        report::record(&mut latency, started.elapsed());
        found.push(hits.len());
    }
    Ok((latency, found))
}

/// Waits until the server's index holds `documents`; returns how long it took, or the last
/// count it reported.
async fn indexed(server: &Server, documents: usize, within: Duration) -> anyhow::Result<Result<Duration, f64>> {
    let started = Instant::now();
    let mut last = 0.0;
    while started.elapsed() < within {
        last = server.metric("chatmesh_search_documents").await?.unwrap_or(last);
        if last >= documents as f64 {
            return Ok(Ok(started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Err(last))
}

/// Latency rows: p50, p99, p999 of chatmesh beside the baseline.
pub(crate) fn latency_rows(measured: &serde_json::Value, floor: &serde_json::Value) -> Vec<[String; 4]> {
    let p = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    ["p50_ms", "p99_ms", "p999_ms"]
        .iter()
        .map(|k| {
            [
                k.replace("_ms", " (ms)"),
                num(p(measured, k)),
                num(p(floor, k)),
                show_ratio(&ratio(p(measured, k), p(floor, k))),
            ]
        })
        .collect()
}

/// Runs (e), (f) and (g) over a channel of `sizes.chats` chats.
pub async fn run(binary: &Path, sizes: Sizes) -> anyhow::Result<Vec<Outcome>> {
    let root = tempfile::tempdir().context("a data dir")?;
    // an empty start first: the baseline of the start with data
    let empty_dir = tempfile::tempdir().context("a data dir")?;
    let mut empty = Server::spawn_at(binary, empty_dir.path())?;
    let spawned = Instant::now();
    let healthy = empty.wait_healthy(Duration::from_secs(60)).await?;
    let empty_start = healthy.duration_since(spawned);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let empty_rss = empty.rss_bytes().unwrap_or(0);
    empty.stop().await?;

    // an account and its channel, through the API
    let mut server = Server::spawn_at(binary, root.path())?;
    server.wait_healthy(Duration::from_secs(60)).await?;
    let owner = server.users("history", 1).await?.pop().context("no user")?;
    let channel = server.group(&owner, &[]).await?;
    server.stop().await?;

    // the bulk loader, straight into the stopped server's chat store
    let (channel_id, owner_id): (u64, u64) = (channel.parse()?, owner.id.parse()?);
    let store = Arc::new(
        FjallChatStore::open(
            &root.path().join("data/chat"),
            Arc::new(IdGenerator::new(LOADER_NODE).map_err(anyhow::Error::msg)?),
        )
        .context("opening the stopped server's chat store")?,
    );
    let loading = Instant::now();
    let ids = load(store.clone(), channel_id, owner_id, sizes.chats).await?;
    let load_secs = loading.elapsed().as_secs_f64();
    let points = points(&ids, sizes.queries);
    let floor = store_pages(&store, channel_id, owner_id, &points).await?;
    drop(store);
    // why: the store's writer thread lets go of the data dir as it ends
    tokio::time::sleep(Duration::from_millis(500)).await;

    // the server again, over the loaded data
    let mut server = Server::spawn_at(binary, root.path())?;
    let spawned = Instant::now();
    let healthy = server.wait_healthy(Duration::from_secs(120)).await?;
    let loaded_start = healthy.duration_since(spawned);
    // why: the indexer catches up with the loaded feed first, so no measurement below runs
    // beside it; its pace from the spawn on is (f)'s indexing throughput
    let within = Duration::from_secs(60) + Duration::from_millis(sizes.chats as u64);
    let (indexing, indexed_last) = match indexed(&server, sizes.chats, within).await? {
        Ok(_) => (Some(spawned.elapsed()), sizes.chats as f64),
        Err(last) => (None, last),
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded_rss = server.rss_bytes().unwrap_or(0);
    let pages = server_pages(&server, &owner.token, &channel, &points, sizes.per_second).await?;
    let searches = server_searches(&server, &owner.token, sizes.searches, sizes.searches_per_second).await?;
    server.stop().await?;
    anyhow::ensure!(!pages.latency.is_empty(), "no ListChats page was answered");
    let (search_floor, floor_hits) =
        index_searches(&root.path().join("data/search"), channel_id, owner_id, sizes.searches).await?;

    // a page is wrong unless full; a search is wrong unless it finds what the index alone finds
    let errors = |answers: &[Option<usize>]| answers.iter().filter(|a| a.is_none()).count() as u64;
    let short = pages.answers.iter().filter(|a| a.is_some_and(|len| len != PAGE)).count() as u64;
    let page_errors = errors(&pages.answers);
    let pages_failed = page_errors + short;
    let (search_errors, mut unlike_index, mut no_hit) = (errors(&searches.answers), 0u64, 0u64);
    for (answer, floor) in searches.answers.iter().zip(&floor_hits) {
        match answer {
            Some(hits) if hits != floor => unlike_index += 1,
            Some(0) => no_hit += 1,
            _ => {}
        }
    }
    let searches_failed = search_errors + unlike_index;
    let floor_no_hit = floor_hits.iter().filter(|hits| **hits == 0).count();

    let (mp, bp) = (percentiles(&pages.latency), percentiles(&floor));
    let p = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let mut rows = latency_rows(&mp, &bp);
    rows.push(["failed calls".into(), format!("{pages_failed} / {}", sizes.queries), "0".into(), "—".into()]);
    let history = Outcome {
        id: "e",
        title: format!("history: pages of {PAGE} over {} chats", sizes.chats),
        notes: vec![
            format!(
                "{} chats of one channel written by the bulk loader through FjallChatStore::create_chat ({} in flight) \
                 in {:.1} s ({:.0} chats/s)",
                sizes.chats,
                LOADING,
                load_secs,
                sizes.chats as f64 / load_secs
            ),
            format!(
                "chatmesh: {} ListChats (before a random chat, page {PAGE}) over gRPC at {}/s on a fixed timetable, \
                 timed from when each was due; failed: {page_errors} refused (left out of the latency), {short} \
                 answered a page of fewer than {PAGE}; any failure and the goal is not met",
                sizes.queries, sizes.per_second
            ),
            "baseline: the same pages from FjallChatStore::list_chats in-process, one after another".into(),
        ],
        rows,
        goal: Some("p99 ≤ 2 ms".into()),
        figures_meet_goal: Some(p(&mp, "p99_ms") <= 2.0),
        failed: pages_failed,
        data: json!({"chats": sizes.chats, "load_secs": load_secs, "queries": sizes.queries,
                     "per_second": sizes.per_second, "errors": page_errors, "short_pages": short,
                     "chatmesh": mp, "baseline": bp, "ratio_p99": ratio(p(&mp, "p99_ms"), p(&bp, "p99_ms"))}),
    };
    let (sp, sb) = (percentiles(&searches.latency), percentiles(&search_floor));
    let index_rate = indexing.map(|d| sizes.chats as f64 / d.as_secs_f64());
    let load_rate = sizes.chats as f64 / load_secs;
    let mut search_rows = latency_rows(&sp, &sb);
    search_rows.push([
        "failed calls".into(),
        format!("{searches_failed} / {}", sizes.searches),
        "0".into(),
        "—".into(),
    ]);
    search_rows.push([
        "indexing (chats/s)".into(),
        index_rate.map_or_else(|| "not caught up".into(), num),
        num(load_rate),
        index_rate.map_or_else(|| "—".into(), |r| show_ratio(&ratio(r, load_rate))),
    ]);
    let search = Outcome {
        id: "f",
        title: format!("search over {} chats", sizes.chats),
        notes: vec![
            format!(
                "indexing: from the restart's spawn until the server's index held every loaded chat \
                 (`chatmesh_search_documents`, polled every 100 ms), beside the bulk loader's store write rate{}",
                if indexing.is_none() {
                    format!(" — NOT caught up within {} s ({indexed_last} documents)", within.as_secs())
                } else {
                    String::new()
                }
            ),
            format!(
                "chatmesh: {} SearchChats (page {HITS}) over gRPC at {}/s on a fixed timetable, the mix {:?} in turn, \
                 timed from when each was due; failed: {search_errors} refused (left out of the latency), \
                 {unlike_index} found a different number of hits than the index alone; any failure and the goal is \
                 not met; {no_hit} rightly found none (a rare pair of words may have none in a small corpus)",
                sizes.searches, sizes.searches_per_second, QUERIES
            ),
            format!(
                "baseline: the same queries on the same index opened read-only in-process (TantivyIndex::search), one \
                 after another; {floor_no_hit} found no hit"
            ),
        ],
        rows: search_rows,
        goal: Some("p99 ≤ 10 ms".into()),
        figures_meet_goal: Some(p(&sp, "p99_ms") <= 10.0 && !searches.latency.is_empty()),
        failed: searches_failed,
        data: json!({"chats": sizes.chats, "searches": sizes.searches, "per_second": sizes.searches_per_second,
                     "mix": QUERIES, "errors": search_errors, "unlike_index": unlike_index, "no_hit": no_hit,
                     "baseline_no_hit": floor_no_hit,
                     "indexing_secs": indexing.map(|d| d.as_secs_f64()), "index_rate": index_rate,
                     "load_rate": load_rate, "chatmesh": sp, "baseline": sb,
                     "ratio_p99": ratio(p(&sp, "p99_ms"), p(&sb, "p99_ms"))}),
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mib = |b: u64| b as f64 / 1_048_576.0;
    let start = Outcome {
        id: "g",
        title: format!("cold start with {} chats", sizes.chats),
        notes: vec![
            format!(
                "`chatmesh up` to gRPC health SERVING over a data dir holding {} chats; RSS 1 s after its indexer \
                 caught up with them",
                sizes.chats
            ),
            "baseline: the same binary's start over an empty data dir, in this run".into(),
        ],
        rows: vec![
            [
                "start to healthy (ms)".into(),
                num(ms(loaded_start)),
                num(ms(empty_start)),
                show_ratio(&ratio(ms(loaded_start), ms(empty_start))),
            ],
            [
                "idle RSS (MiB)".into(),
                num(mib(loaded_rss)),
                num(mib(empty_rss)),
                show_ratio(&ratio(mib(loaded_rss), mib(empty_rss))),
            ],
        ],
        goal: None,
        figures_meet_goal: None,
        failed: 0,
        data: json!({"chats": sizes.chats, "start_ms": ms(loaded_start), "empty_start_ms": ms(empty_start),
                     "rss_bytes": loaded_rss, "empty_rss_bytes": empty_rss}),
    };
    Ok(vec![history, search, start])
}
