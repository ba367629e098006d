//! (d) Idle connections: memory per idle authenticated WebSocket session, as the server's RSS
//! delta over `sessions` sessions ÷ sessions; beside a bare tokio-tungstenite server (a child
//! process of this binary, so its RSS is its own) holding as many idle connections.

use std::{
    net::SocketAddr,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context;
use futures::StreamExt;
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpListener,
    process::Command,
};

use crate::{
    latency::connect_session,
    report::{Outcome, num, ratio, show_ratio},
    server::{Server, rss_of},
};

/// Accounts the sessions are spread over (the gateway caps sessions per user; the benchmark
/// raises the cap, but many users per process is the realistic shape).
const USERS: usize = 50;
/// Sessions opened before the "before" reading, so allocator arenas and lazily built state
/// are not counted as per-session memory.
const WARM_UP: usize = 100;
/// Connections being opened at once.
const OPENING: usize = 64;
/// The goal: ≥ 100,000 idle sessions per GiB.
const GOAL_PER_GIB: f64 = 100_000.0;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// How long memory is left to settle before a reading (shorter for the smoke run's few sessions).
fn settle(sessions: usize) -> Duration {
    if sessions >= 1000 { Duration::from_secs(2) } else { Duration::from_millis(500) }
}

/// What one side measured.
struct Held {
    /// Right after the process became healthy.
    at_start: u64,
    before: u64,
    after: u64,
    sessions: usize,
    open_secs: f64,
}

impl Held {
    fn bytes_per_session(&self) -> f64 {
        self.after.saturating_sub(self.before) as f64 / self.sessions.max(1) as f64
    }
}

/// chatmesh: authenticated sessions past their `ready` frame, spread over [`USERS`] accounts.
async fn chatmesh(binary: &Path, sessions: usize) -> anyhow::Result<Held> {
    let server = Server::start(binary).await?;
    let at_start = server.rss_bytes().context("the server's RSS")?;
    let users = server.users("idle", USERS).await?;
    let ws = server.ws_addr;
    let open = |range: std::ops::Range<usize>| {
        let users = &users;
        futures::stream::iter(range.map(move |i| connect_session(ws, users[i % USERS].token.clone())))
            .buffer_unordered(OPENING)
            .collect::<Vec<_>>()
    };
    let warm: Vec<_> = open(0..WARM_UP).await.into_iter().collect::<Result<_, _>>().context("warm-up sessions")?;
    tokio::time::sleep(settle(sessions)).await;
    let before = server.rss_bytes().context("the server's RSS")?;
    let started = Instant::now();
    let opened = open(WARM_UP..WARM_UP + sessions).await;
    let open_secs = started.elapsed().as_secs_f64();
    let held: Vec<_> = opened
        .into_iter()
        .collect::<Result<_, _>>()
        .with_context(|| format!("opening {sessions} sessions; server log:\n{}", server.log_tail()))?;
    tokio::time::sleep(settle(sessions)).await;
    let after = server.rss_bytes().context("the server's RSS")?;
    drop((warm, held));
    Ok(Held { at_start, before, after, sessions, open_secs })
}

/// The floor: this binary as a bare WebSocket server holding every connection idle.
pub async fn serve_baseline() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else { return };
            while let Some(Ok(_)) = socket.next().await {}
        });
    }
}

async fn baseline(sessions: usize) -> anyhow::Result<Held> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--serve-idle-baseline")
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawning the baseline server")?;
    let stdout = child.stdout.take().context("baseline stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr: SocketAddr = lines.next_line().await?.context("the baseline printed no address")?.parse()?;
    let pid = child.id().context("baseline pid")?;
    let at_start = rss_of(pid).context("the baseline's RSS")?;
    let open = |count: usize| {
        futures::stream::iter(
            (0..count)
                .map(|_| async move { anyhow::Ok(tokio_tungstenite::connect_async(format!("ws://{addr}/")).await?.0) }),
        )
        .buffer_unordered(OPENING)
        .collect::<Vec<_>>()
    };
    let warm: Vec<_> = open(WARM_UP).await.into_iter().collect::<Result<_, _>>()?;
    tokio::time::sleep(settle(sessions)).await;
    let before = rss_of(pid).context("the baseline's RSS")?;
    let started = Instant::now();
    let held: Vec<_> = open(sessions).await.into_iter().collect::<Result<_, _>>()?;
    let open_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(settle(sessions)).await;
    let after = rss_of(pid).context("the baseline's RSS")?;
    drop((warm, held));
    Ok(Held { at_start, before, after, sessions, open_secs })
}

/// Runs (d) with `sessions` idle sessions on each side.
pub async fn run(binary: &Path, sessions: usize) -> anyhow::Result<Outcome> {
    let measured = chatmesh(binary, sessions).await?;
    let floor = baseline(sessions).await?;
    let (mb, bb) = (measured.bytes_per_session(), floor.bytes_per_session());
    let per_gib = |bytes: f64| if bytes > 0.0 { GIB / bytes } else { f64::INFINITY };
    let met = per_gib(mb) >= GOAL_PER_GIB;
    let kib = |bytes: f64| bytes / 1024.0;
    let mib = |bytes: u64| num(bytes as f64 / 1_048_576.0);
    let rows = vec![
        ["KiB per idle session".into(), num(kib(mb)), num(kib(bb)), show_ratio(&ratio(mb, bb))],
        ["sessions per GiB".into(), num(per_gib(mb)), num(per_gib(bb)), show_ratio(&ratio(per_gib(mb), per_gib(bb)))],
        [
            "RSS at start → before → after (MiB)".into(),
            format!("{} → {} → {}", mib(measured.at_start), mib(measured.before), mib(measured.after)),
            format!("{} → {} → {}", mib(floor.at_start), mib(floor.before), mib(floor.after)),
            "—".into(),
        ],
        [
            "sessions opened per second".into(),
            num(sessions as f64 / measured.open_secs),
            num(sessions as f64 / floor.open_secs),
            show_ratio(&ratio(floor.open_secs, measured.open_secs)),
        ],
    ];
    Ok(Outcome {
        id: "d",
        title: format!("idle connections: {sessions} sessions"),
        notes: vec![
            format!(
                "chatmesh: {sessions} WebSocket sessions authenticated by token and past `ready`, over {USERS} \
                 accounts, after {WARM_UP} warm-up sessions; RSS read from /proc {:.1} s after the last opened",
                settle(sessions).as_secs_f64()
            ),
            "baseline: a bare tokio-tungstenite server (a child process) holding as many plain connections, \
             measured the same way"
                .into(),
        ],
        rows,
        goal: Some("≥ 100,000 idle sessions per GiB".into()),
        figures_meet_goal: Some(met),
        failed: 0,
        data: json!({
            "sessions": sessions,
            "chatmesh": {"rss_at_start": measured.at_start, "rss_before": measured.before, "rss_after": measured.after, "bytes_per_session": mb,
                         "open_secs": measured.open_secs},
            "baseline": {"rss_at_start": floor.at_start, "rss_before": floor.before, "rss_after": floor.after, "bytes_per_session": bb,
                         "open_secs": floor.open_secs},
            "ratio_bytes": ratio(mb, bb),
        }),
    })
}
