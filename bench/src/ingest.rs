//! (c) Durable ingest: 64 concurrent gRPC senders, each CreateChat answered after the durable
//! write, against the raw batched write rate of the chat store opened directly.

use std::{
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

/// What one closed-loop run measured.
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
    Fut: std::future::Future<Output = bool> + Send,
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
                    let due = Instant::now();
                    if send(i, n).await {
                        report::record(&mut latency, due.elapsed());
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

/// The server's rate: CreateChat over gRPC, 64 senders spread over 8 accounts and groups.
async fn server_run(binary: &Path, duration: Duration) -> anyhow::Result<Run> {
    let server = Server::start(binary).await?;
    let users = server.users("ingest", ACCOUNTS).await?;
    let mut targets = Vec::new();
    for user in &users {
        let channel_id = server.group(user, &[]).await?;
        // why: one HTTP/2 connection per account, as separate clients would hold.
        targets.push((user.token.clone(), channel_id, server.chats().await?));
    }
    let targets = Arc::new(targets);
    let run = closed_loop(duration, move |i, n| {
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
    })
    .await?;
    if run.sends == 0 {
        anyhow::bail!("no CreateChat succeeded; server log:\n{}", server.log_tail());
    }
    Ok(run)
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

/// The floor: `FjallChatStore::create_chat` in-process, 64 tasks, same duration.
async fn store_run(duration: Duration) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let ids = Arc::new(IdGenerator::new(1).map_err(anyhow::Error::msg)?);
    let store = Arc::new(FjallChatStore::open(dir.path(), ids).context("opening the chat store")?);
    closed_loop(duration, move |i, n| {
        let store = store.clone();
        async move {
            let chat = text_chat(1 + (i % ACCOUNTS) as u64, 1000 + (i % ACCOUNTS) as u64, format!("ingest {i} {n}"));
            store.create_chat(chat).await.is_ok()
        }
    })
    .await
}

/// Runs (c): the server, then the raw store, each for `duration`.
pub async fn run(binary: &Path, duration: Duration, cores: usize) -> anyhow::Result<Outcome> {
    let server = server_run(binary, duration).await?;
    let store = store_run(duration).await?;
    let (server_rate, store_rate) = (server.rate(), store.rate());
    let per_core = server_rate / cores as f64;
    let (sp, bp) = (percentiles(&server.latency), percentiles(&store.latency));
    let p = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let rate_ratio = ratio(server_rate, store_rate);
    let rows = vec![
        ["sends/s".into(), num(server_rate), num(store_rate), show_ratio(&rate_ratio)],
        ["sends/s per core".into(), num(per_core), num(store_rate / cores as f64), show_ratio(&rate_ratio)],
        [
            "p50 ms".into(),
            num(p(&sp, "p50_ms")),
            num(p(&bp, "p50_ms")),
            show_ratio(&ratio(p(&sp, "p50_ms"), p(&bp, "p50_ms"))),
        ],
        [
            "p99 ms".into(),
            num(p(&sp, "p99_ms")),
            num(p(&bp, "p99_ms")),
            show_ratio(&ratio(p(&sp, "p99_ms"), p(&bp, "p99_ms"))),
        ],
        ["errors".into(), server.errors.to_string(), store.errors.to_string(), "—".into()],
    ];
    Ok(Outcome {
        id: "c",
        title: "durable ingest".into(),
        notes: vec![
            format!(
                "{SENDERS} concurrent closed-loop senders for {:.1} s over {ACCOUNTS} accounts and groups; \
                 CreateChat over gRPC is answered after the durable write",
                duration.as_secs_f64()
            ),
            "baseline: FjallChatStore::create_chat opened directly in a temp dir, 64 tasks, same duration \
             (the store's raw batched write rate)"
                .into(),
            "latency: from each call's start to its answer".into(),
        ],
        rows,
        goal: Some(format!("≥ {GOAL_PER_CORE:.0} sends/s per core")),
        goal_met: Some(per_core >= GOAL_PER_CORE),
        data: json!({
            "senders": SENDERS,
            "duration_s": duration.as_secs_f64(),
            "cores": cores,
            "server": { "sends": server.sends, "errors": server.errors, "sends_per_s": server_rate,
                        "sends_per_s_per_core": per_core, "latency": sp },
            "baseline_store": { "sends": store.sends, "errors": store.errors, "sends_per_s": store_rate,
                                "latency": bp },
            "ratio_rate": rate_ratio,
        }),
    })
}
