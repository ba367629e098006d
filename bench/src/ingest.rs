//! (c) Durable ingest: 64 concurrent gRPC senders, each CreateChat answered after the durable
//! write, against the raw batched write rate of the chat store opened directly. The closed
//! loops give the rate; their per-call latency hides queueing (a sender only sends once its
//! last call is answered: coordinated omission), so the latency that counts is measured again
//! open-loop: sends on a fixed timetable at half the closed-loop rate, timed from when each was due.

use std::{
    future::Future,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use chatmesh_api::chat::v1 as pb_chat;
use chatmesh_chat::{
    ChatKind, NewChat,
    store::{Chats, FjallChatStore},
};
use chatmesh_platform::ids::IdGenerator;
use hdrhistogram::Histogram;
use serde_json::json;

use crate::{
    report::{self, Outcome, num, percentiles, ratio, show_ratio},
    server::{Server, authed},
};

/// Concurrent senders, as the issue fixes them.
const SENDERS: usize = 64;
/// Accounts (and their groups) the senders are spread over.
const ACCOUNTS: usize = 8;
/// The goal: sends per second per core.
const GOAL_PER_CORE: f64 = 10_000.0;
/// The open-loop rate, as a share of chatmesh's closed-loop rate: loaded, not saturated.
const OPEN_LOOP_SHARE: f64 = 0.5;

/// What one run measured: answered sends, failed ones, how long it took, and the latency of
/// the answered sends (closed loop: from each call's start; open loop: from when it was due).
struct Run {
    sends: u64,
    errors: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.sends as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `SENDERS` closed loops of `send(i, n)` for `duration`, merging their histograms.
async fn closed_loop<F, Fut>(duration: Duration, send: F) -> anyhow::Result<Run>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let started = Instant::now();
    let until = started + duration;
    let tasks: Vec<_> = (0..SENDERS)
        .map(|i| {
            let send = send.clone();
            tokio::spawn(async move {
                let (mut latency, mut sends, mut errors) = (report::histogram(), 0u64, 0u64);
                let mut n = 0u64;
                while Instant::now() < until {
                    let call_started = Instant::now();
                    if send(i, n).await {
                        report::record(&mut latency, call_started.elapsed());
                        sends += 1;
                    } else {
                        errors += 1;
                    }
                    n += 1;
                }
                (latency, sends, errors)
            })
        })
        .collect();
    let mut run = Run { sends: 0, errors: 0, elapsed: Duration::ZERO, latency: report::histogram() };
    for task in tasks {
        let (latency, sends, errors) = task.await?;
        run.latency.add(latency).context("merging histograms")?;
        run.sends += sends;
        run.errors += errors;
    }
    run.elapsed = started.elapsed();
    Ok(run)
}

/// Sends `send(i, k)` at `per_second` on a fixed timetable for `duration`, round-robin over
/// the `SENDERS` senders, each its own task timed from when it was due, so a stalled server or
/// a late sender cannot hide latency.
async fn open_loop<F, Fut>(duration: Duration, per_second: f64, send: F) -> anyhow::Result<Run>
where
    F: Fn(usize, u64) -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let count = (duration.as_secs_f64() * per_second).round() as u64;
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::new();
    for k in 0..count {
        let due = start + Duration::from_secs_f64(k as f64 / per_second);
        tokio::time::sleep_until(due).await;
        let call = send(k as usize % SENDERS, k);
        tasks.push(tokio::spawn(async move { call.await.then(|| due.elapsed()) }));
    }
    let mut run = Run { sends: 0, errors: 0, elapsed: Duration::ZERO, latency: report::histogram() };
    for task in tasks {
        match task.await? {
            Some(elapsed) => {
                report::record(&mut run.latency, elapsed);
                run.sends += 1;
            }
            None => run.errors += 1,
        }
    }
    run.elapsed = start.elapsed();
    Ok(run)
}

/// A closed-loop run and an open-loop one on the same target.
struct Runs {
    closed: Run,
    open: Run,
}

/// The server: CreateChat over gRPC, 64 senders spread over 8 accounts and groups, closed-loop
/// then open-loop at [`OPEN_LOOP_SHARE`] of the closed-loop rate.
async fn server_runs(binary: &Path, duration: Duration) -> anyhow::Result<Runs> {
    let server = Server::start(binary).await?;
    let users = server.users("ingest", ACCOUNTS).await?;
    let mut targets = Vec::new();
    for user in &users {
        let channel_id = server.group(user, &[]).await?;
        // why: one HTTP/2 connection per account, as separate clients would hold.
        targets.push((user.token.clone(), channel_id, server.chats().await?));
    }
    let targets = Arc::new(targets);
    let send = move |i: usize, n: u64| {
        let targets = targets.clone();
        async move {
            let (token, channel_id, client) = &targets[i % ACCOUNTS];
            let request = pb_chat::CreateChatRequest {
                channel_id: channel_id.clone(),
                text: format!("ingest {i} {n}"),
                ..Default::default()
            };
            client.clone().create_chat(authed(token, request)).await.is_ok()
        }
    };
    let closed = closed_loop(duration, send.clone()).await?;
    if closed.sends == 0 {
        anyhow::bail!("no CreateChat succeeded; server log:\n{}", server.log_tail());
    }
    let open = open_loop(duration, closed.rate() * OPEN_LOOP_SHARE, send).await?;
    Ok(Runs { closed, open })
}

/// A plain text chat as the store takes it (no idempotency key), for writers that bypass the API.
pub(crate) fn text_chat(channel_id: u64, sender_id: u64, text: String) -> NewChat {
    NewChat {
        channel_id,
        sender_id,
        kind: ChatKind::Text,
        body_hash: format!("hash of {text}"),
        text,
        client_msg_id: String::new(),
        reply_to: 0,
        mentions: Vec::new(),
        announcement: None,
        attachments: Vec::new(),
    }
}

/// The floor: `FjallChatStore::create_chat` in-process, 64 tasks, same duration, closed-loop;
/// then open-loop at `per_second` (the server's open-loop rate).
async fn store_runs(duration: Duration, per_second: f64) -> anyhow::Result<Runs> {
    let dir = tempfile::tempdir()?;
    let ids = Arc::new(IdGenerator::new(1).map_err(anyhow::Error::msg)?);
    let store = Arc::new(FjallChatStore::open(dir.path(), ids).context("opening the chat store")?);
    let send = move |i: usize, n: u64| {
        let store = store.clone();
        async move {
            let chat = text_chat(1 + (i % ACCOUNTS) as u64, 1000 + (i % ACCOUNTS) as u64, format!("ingest {i} {n}"));
            store.create_chat(chat).await.is_ok()
        }
    };
    let closed = closed_loop(duration, send.clone()).await?;
    let open = open_loop(duration, per_second, send).await?;
    Ok(Runs { closed, open })
}

/// `[label, chatmesh, baseline, ratio]` rows of the given percentiles of a latency figure.
fn latency_rows(
    label: &str,
    measured: &serde_json::Value,
    floor: &serde_json::Value,
    keys: &[&str],
) -> Vec<[String; 4]> {
    let p = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    keys.iter()
        .map(|key| {
            [
                format!("{label} {} ms", key.trim_end_matches("_ms")),
                num(p(measured, key)),
                num(p(floor, key)),
                show_ratio(&ratio(p(measured, key), p(floor, key))),
            ]
        })
        .collect()
}

/// Runs (c): the server, then the raw store, each closed-loop for `duration` and then
/// open-loop for as long at half the server's closed-loop rate.
pub async fn run(binary: &Path, duration: Duration, cores: usize) -> anyhow::Result<Outcome> {
    let server = server_runs(binary, duration).await?;
    let open_rate = server.closed.rate() * OPEN_LOOP_SHARE;
    let store = store_runs(duration, open_rate).await?;
    let (server_rate, store_rate) = (server.closed.rate(), store.closed.rate());
    let per_core = server_rate / cores as f64;
    let (sc, bc) = (percentiles(&server.closed.latency), percentiles(&store.closed.latency));
    let (so, bo) = (percentiles(&server.open.latency), percentiles(&store.open.latency));
    let rate_ratio = ratio(server_rate, store_rate);
    let mut rows = vec![
        ["sends/s (closed loop)".into(), num(server_rate), num(store_rate), show_ratio(&rate_ratio)],
        ["sends/s per core".into(), num(per_core), num(store_rate / cores as f64), show_ratio(&rate_ratio)],
    ];
    rows.extend(latency_rows("closed-loop", &sc, &bc, &["p50_ms", "p99_ms"]));
    rows.extend(latency_rows(&format!("open-loop at {open_rate:.0}/s"), &so, &bo, &["p50_ms", "p99_ms", "p999_ms"]));
    let errors = |runs: &Runs| runs.closed.errors + runs.open.errors;
    rows.push(["failed sends".into(), errors(&server).to_string(), errors(&store).to_string(), "—".into()]);
    let run_data = |runs: &Runs, closed: &serde_json::Value, open: &serde_json::Value| {
        json!({
            "closed_loop": { "sends": runs.closed.sends, "errors": runs.closed.errors,
                             "sends_per_s": runs.closed.rate(), "latency": closed },
            "open_loop": { "sends": runs.open.sends, "errors": runs.open.errors, "latency": open },
        })
    };
    Ok(Outcome {
        id: "c",
        title: "durable ingest".into(),
        notes: vec![
            format!(
                "closed loop: {SENDERS} concurrent senders for {:.1} s over {ACCOUNTS} accounts and groups, each \
                 sending its next CreateChat (answered after the durable write) once the last is answered; the \
                 rate is the throughput; its latency, from each call's start, leaves out the time a send waited \
                 for its sender (coordinated omission) and understates the tail",
                duration.as_secs_f64()
            ),
            format!(
                "open loop: {open_rate:.0} sends/s ({:.0}% of chatmesh's closed-loop rate) on a fixed timetable for \
                 {:.1} s, round-robin over the same senders, each send its own task timed from when it was due \
                 (the latency to read); the baseline runs the same timetable",
                OPEN_LOOP_SHARE * 100.0,
                duration.as_secs_f64()
            ),
            "baseline: FjallChatStore::create_chat opened directly in a temp dir, the same loops (the store's \
             raw batched write rate)"
                .into(),
        ],
        rows,
        goal: Some(format!("≥ {GOAL_PER_CORE:.0} sends/s per core")),
        figures_meet_goal: Some(per_core >= GOAL_PER_CORE),
        failed: errors(&server),
        data: json!({
            "senders": SENDERS,
            "duration_s": duration.as_secs_f64(),
            "cores": cores,
            "open_loop_per_s": open_rate,
            "server": run_data(&server, &sc, &so),
            "server_sends_per_s_per_core": per_core,
            "baseline_store": run_data(&store, &bc, &bo),
            "ratio_rate": rate_ratio,
        }),
    })
}
