//! (b) Fan-out: deliveries per second and per server CPU-second of one channel's chats to
//! `subscribers` WebSocket sessions; beside a bare tokio-tungstenite broadcast server (a child
//! process of this binary, so its CPU time is its own) with as many subscribers and the same
//! send timetable.

use std::{
    net::SocketAddr,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context;
use chatmesh_api::chat::v1 as pb_chat;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    latency::{Socket, broadcast_server, connect_session},
    report::{Outcome, num, ratio, show_ratio},
    server::{Target, authed},
};

/// Accounts of the channel; the sessions are spread over them (fan-out is per session).
const USERS: usize = 100;
const OPENING: usize = 64;
/// How long receivers wait past the last send.
const DRAIN: Duration = Duration::from_secs(3);
/// The marker every measured frame carries.
const MARKER: &str = "bench-fanout";

/// One fan-out scenario.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub subscribers: usize,
    pub per_second: u32,
    pub duration: Duration,
}

impl Scenario {
    fn sends(&self) -> u64 {
        (self.duration.as_secs_f64() * f64::from(self.per_second)).round() as u64
    }
}

/// What one side delivered and what it cost.
struct Delivered {
    deliveries: u64,
    expected: u64,
    cpu_secs: f64,
    wall_secs: f64,
}

impl Delivered {
    fn per_second(&self) -> f64 {
        self.deliveries as f64 / self.wall_secs.max(f64::EPSILON)
    }

    fn per_cpu_second(&self) -> f64 {
        self.deliveries as f64 / self.cpu_secs.max(f64::EPSILON)
    }

    /// Deliveries expected but not received (a failed send loses all of its own).
    fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.deliveries)
    }
}

/// User + system CPU seconds a process has used, from /proc/<pid>/stat.
pub(crate) fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // why: fields after the command name (which may hold spaces) start after the last ')'
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux
    Some(ticks as f64 / 100.0)
}

/// Counts frames carrying [`MARKER`] on every socket until each has `expected` or `until`.
async fn count(sockets: Vec<Socket>, expected: u64, until: tokio::time::Instant) -> u64 {
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            tokio::spawn(async move {
                let mut seen = 0u64;
                while seen < expected
                    && let Ok(Some(Ok(message))) = tokio::time::timeout_at(until, socket.next()).await
                {
                    if let Message::Text(text) = message
                        && text.contains(MARKER)
                    {
                        seen += 1;
                    }
                }
                seen
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap_or(0);
    }
    total
}

/// Sends on a fixed timetable; each send its own task, so a slow answer never delays the next.
async fn timetable<F, Fut>(scenario: Scenario, send: F)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let period = Duration::from_secs_f64(1.0 / f64::from(scenario.per_second));
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for k in 0..scenario.sends() {
        tokio::time::sleep_until(start + period * u32::try_from(k).unwrap_or(u32::MAX)).await;
        tasks.push(tokio::spawn(send(k)));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// chatmesh (cluster mode: sessions alternate between two gateways; CPU of both processes).
async fn chatmesh(binary: &Path, scenario: Scenario, cluster: bool) -> anyhow::Result<Delivered> {
    let target = Target::start(binary, cluster).await?;
    let server = &target.core;
    let users = server.users(&format!("fan{}u", scenario.subscribers), USERS.min(scenario.subscribers)).await?;
    let (owner, members) = users.split_first().context("no users")?;
    let channel_id = server.group(owner, members).await?;
    let gateways = target.ws_addrs();
    let sockets: Vec<Socket> = futures::stream::iter(
        (0..scenario.subscribers)
            .map(|i| connect_session(gateways[i % gateways.len()], users[i % users.len()].token.clone())),
    )
    .buffer_unordered(OPENING)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<_, _>>()
    .with_context(|| format!("opening sessions; server log:\n{}", server.log_tail()))?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let pids = target.pids();
    let cpu = || pids.iter().map(|pid| cpu_secs(*pid)).sum::<Option<f64>>().context("server CPU time");
    let client = server.chats().await?;
    let until = tokio::time::Instant::now() + scenario.duration + DRAIN;
    let receivers = tokio::spawn(count(sockets, scenario.sends(), until));
    let (cpu_before, started) = (cpu()?, Instant::now());
    let token = owner.token.clone();
    timetable(scenario, |k| {
        let (mut client, token, channel_id) = (client.clone(), token.clone(), channel_id.clone());
        async move {
            let request =
                pb_chat::CreateChatRequest { channel_id, text: format!("{MARKER} {k}"), ..Default::default() };
            let _ = client.create_chat(authed(&token, request)).await;
        }
    })
    .await;
    let deliveries = receivers.await?;
    let wall_secs = started.elapsed().as_secs_f64() - DRAIN.as_secs_f64();
    let used = cpu()? - cpu_before;
    Ok(Delivered {
        deliveries,
        expected: scenario.sends() * scenario.subscribers as u64,
        cpu_secs: used,
        wall_secs: wall_secs.max(scenario.duration.as_secs_f64()),
    })
}

/// The floor's process: this binary serving the bare broadcast server of (a).
pub async fn serve_baseline() -> anyhow::Result<()> {
    println!("{}", broadcast_server().await?);
    std::future::pending::<()>().await;
    Ok(())
}

async fn baseline(scenario: Scenario) -> anyhow::Result<Delivered> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--serve-broadcast-baseline")
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawning the baseline server")?;
    let stdout = child.stdout.take().context("baseline stdout")?;
    let addr: SocketAddr =
        BufReader::new(stdout).lines().next_line().await?.context("the baseline printed no address")?.parse()?;
    let pid = child.id().context("baseline pid")?;
    let sockets: Vec<Socket> = futures::stream::iter(
        (0..scenario.subscribers)
            .map(|_| async move { anyhow::Ok(tokio_tungstenite::connect_async(format!("ws://{addr}/sub")).await?.0) }),
    )
    .buffer_unordered(OPENING)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<_, _>>()?;
    let (publisher, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/pub")).await?;
    let publisher = std::sync::Arc::new(tokio::sync::Mutex::new(publisher));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let until = tokio::time::Instant::now() + scenario.duration + DRAIN;
    let receivers = tokio::spawn(count(sockets, scenario.sends(), until));
    let (cpu_before, started) = (cpu_secs(pid).context("baseline CPU time")?, Instant::now());
    timetable(scenario, |k| {
        let publisher = publisher.clone();
        async move {
            // why: shaped like chatmesh's chat.created frame, so both move similar bytes
            let frame = json!({"event": "chat.created", "data": {"chat": {"text": format!("{MARKER} {k}")}}});
            let _ = publisher.lock().await.send(Message::Text(frame.to_string().into())).await;
        }
    })
    .await;
    let deliveries = receivers.await?;
    let wall_secs = started.elapsed().as_secs_f64() - DRAIN.as_secs_f64();
    let cpu = cpu_secs(pid).context("baseline CPU time")? - cpu_before;
    Ok(Delivered {
        deliveries,
        expected: scenario.sends() * scenario.subscribers as u64,
        cpu_secs: cpu,
        wall_secs: wall_secs.max(scenario.duration.as_secs_f64()),
    })
}

/// (b) in cluster mode: the same scenario on two processes joined by Redis (CPU of both), as
/// a ratio to `chatmesh up` measured again in this run.
pub async fn run_cluster(binary: &Path, scenario: Scenario) -> anyhow::Result<Outcome> {
    let up = chatmesh(binary, scenario, false).await?;
    let cluster = chatmesh(binary, scenario, true).await?;
    let rows = vec![
        [
            "deliveries per server CPU-second".into(),
            num(cluster.per_cpu_second()),
            num(up.per_cpu_second()),
            show_ratio(&ratio(cluster.per_cpu_second(), up.per_cpu_second())),
        ],
        [
            "deliveries per second".into(),
            num(cluster.per_second()),
            num(up.per_second()),
            show_ratio(&ratio(cluster.per_second(), up.per_second())),
        ],
        [
            "deliveries".into(),
            format!("{} / {}", cluster.deliveries, cluster.expected),
            format!("{} / {}", up.deliveries, up.expected),
            "—".into(),
        ],
    ];
    Ok(Outcome {
        id: "b",
        title: format!("fan-out in cluster mode, {} subscribers", scenario.subscribers),
        notes: vec![
            format!(
                "cluster: `serve user channel chat indexer dispatcher rest ws` and `serve dispatcher ws` joined by \
                 Redis ({}); sessions alternate between the two gateways; CPU of both processes; the same timetable \
                 as (b) ({}/s for {} s)",
                crate::server::redis_url(),
                scenario.per_second,
                scenario.duration.as_secs()
            ),
            "baseline column: `chatmesh up` with the same scenario, measured again in this run".into(),
        ],
        rows,
        goal: None,
        figures_meet_goal: None,
        failed: cluster.lost(),
        data: json!({"subscribers": scenario.subscribers,
                     "cluster": {"deliveries": cluster.deliveries, "cpu_secs": cluster.cpu_secs,
                                 "per_cpu_second": cluster.per_cpu_second()},
                     "up": {"deliveries": up.deliveries, "cpu_secs": up.cpu_secs, "per_cpu_second": up.per_cpu_second()},
                     "ratio_per_cpu_second": ratio(cluster.per_cpu_second(), up.per_cpu_second())}),
    })
}

/// The goal: deliveries per CPU-second ≥ 0.7 × the baseline's.
const GOAL_RATIO: f64 = 0.7;

/// Runs (b) for one scenario: chatmesh, then the bare broadcast baseline.
pub async fn run(binary: &Path, scenario: Scenario) -> anyhow::Result<Outcome> {
    let measured = chatmesh(binary, scenario, false).await?;
    let floor = baseline(scenario).await?;
    let per_cpu = ratio(measured.per_cpu_second(), floor.per_cpu_second());
    let met = per_cpu.as_f64().is_some_and(|r| r >= GOAL_RATIO);
    let rows = vec![
        [
            "deliveries per server CPU-second".into(),
            num(measured.per_cpu_second()),
            num(floor.per_cpu_second()),
            show_ratio(&per_cpu),
        ],
        [
            "deliveries per second".into(),
            num(measured.per_second()),
            num(floor.per_second()),
            show_ratio(&ratio(measured.per_second(), floor.per_second())),
        ],
        [
            "server CPU-seconds".into(),
            num(measured.cpu_secs),
            num(floor.cpu_secs),
            show_ratio(&ratio(measured.cpu_secs, floor.cpu_secs)),
        ],
        [
            "deliveries".into(),
            format!("{} / {}", measured.deliveries, measured.expected),
            format!("{} / {}", floor.deliveries, floor.expected),
            "—".into(),
        ],
    ];
    Ok(Outcome {
        id: "b",
        title: format!("fan-out: {} subscribers", scenario.subscribers),
        notes: vec![
            format!(
                "chatmesh: one private group, {} sessions over {} accounts; the owner sends CreateChat over gRPC at \
                 {}/s for {} s on a fixed timetable; deliveries counted by the clients until {} s after the last \
                 send; CPU = user + system time of the server process over the run (/proc)",
                scenario.subscribers,
                USERS.min(scenario.subscribers),
                scenario.per_second,
                scenario.duration.as_secs(),
                DRAIN.as_secs()
            ),
            "baseline: a bare tokio-tungstenite broadcast server in a child process, as many subscribers, frames \
             shaped like chat.created published over a WebSocket on the same timetable"
                .into(),
            "chatmesh's CPU includes the durable write, the event log, the dispatcher and the gateway (one process)"
                .into(),
        ],
        rows,
        goal: Some("≥ 0.7× the baseline's deliveries per CPU-second".into()),
        figures_meet_goal: Some(met),
        // why: deliveries per CPU-second over a run that lost deliveries is no figure to judge
        failed: measured.lost(),
        data: json!({
            "subscribers": scenario.subscribers, "per_second": scenario.per_second,
            "duration_s": scenario.duration.as_secs_f64(),
            "chatmesh": {"deliveries": measured.deliveries, "expected": measured.expected,
                         "cpu_secs": measured.cpu_secs, "per_cpu_second": measured.per_cpu_second(),
                         "per_second": measured.per_second()},
            "baseline": {"deliveries": floor.deliveries, "expected": floor.expected,
                         "cpu_secs": floor.cpu_secs, "per_cpu_second": floor.per_cpu_second(),
                         "per_second": floor.per_second()},
            "ratio_per_cpu_second": per_cpu,
        }),
    })
}
