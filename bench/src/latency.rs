//! (a) End-to-end latency: CreateChat over gRPC → `chat.created` on every subscriber's
//! WebSocket, sent on a fixed timetable and timed from when each send was due; beside a bare
//! tokio-tungstenite broadcast server run in-process with the same subscribers and timetable.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context;
use chatmesh_api::chat::v1 as pb_chat;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::{net::TcpListener, sync::broadcast};
use tokio_tungstenite::tungstenite::{Message, handshake::server as handshake};

use crate::{
    report::{self, Outcome, num, percentiles, ratio, show_ratio},
    server::{Target, authed},
};

/// The marker before the due time (µs since the run's base instant) in each chat's text.
const MARKER: &str = "bench-due:";

/// One latency scenario: how many subscribers, at what send rate, for how long.
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

    fn period(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.per_second))
    }
}

/// What the subscribers measured.
struct Deliveries {
    latency: Histogram<u64>,
    expected: u64,
    send_errors: u64,
}

/// The due time stamped in a `chat.created` frame (µs since base), if it is one of ours.
fn due_of(frame: &str) -> Option<u64> {
    if !frame.contains("\"chat.created\"") {
        return None;
    }
    let start = frame.find(MARKER)? + MARKER.len();
    let digits: String = frame[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

pub(crate) type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads `socket` until `expected` stamped frames arrived or `until`; returns their latencies.
async fn receive(mut socket: Socket, base: Instant, expected: u64, until: tokio::time::Instant) -> Histogram<u64> {
    let mut latency = report::histogram();
    while latency.len() < expected {
        let Ok(Some(Ok(message))) = tokio::time::timeout_at(until, socket.next()).await else { break };
        if let Message::Text(text) = message
            && let Some(due) = due_of(&text)
        {
            let now = base.elapsed().as_micros() as u64;
            report::record(&mut latency, Duration::from_micros(now.saturating_sub(due)));
        }
    }
    let _ = socket.close(None).await;
    latency
}

/// Spawns one receiver per socket and merges what they measured.
async fn collect(sockets: Vec<Socket>, base: Instant, scenario: Scenario, end: tokio::time::Instant) -> Histogram<u64> {
    let tasks: Vec<_> = sockets.into_iter().map(|s| tokio::spawn(receive(s, base, scenario.sends(), end))).collect();
    let mut all = report::histogram();
    for task in tasks {
        if let Ok(latency) = task.await {
            let _ = all.add(latency);
        }
    }
    all
}

/// When the timetable's `k`-th send is due, and its stamp.
fn due(start: tokio::time::Instant, base: Instant, period: Duration, k: u64) -> (tokio::time::Instant, u64) {
    let at = start + period * u32::try_from(k).unwrap_or(u32::MAX);
    let stamp = (at.into_std().saturating_duration_since(base)).as_micros() as u64;
    (at, stamp)
}

/// How long receivers wait past the last due send for stragglers.
const DRAIN: Duration = Duration::from_secs(5);

/// chatmesh: a group of `subscribers` users, one WebSocket session each; the owner sends.
/// In cluster mode the sessions alternate between the two gateways.
async fn chatmesh(binary: &Path, scenario: Scenario, cluster: bool) -> anyhow::Result<Deliveries> {
    let target = Target::start(binary, cluster).await?;
    let server = &target.core;
    let users = server.users(&format!("lat{}u", scenario.subscribers), scenario.subscribers).await?;
    let (owner, members) = users.split_first().context("no users")?;
    let channel_id = server.group(owner, members).await?;

    let gateways = target.ws_addrs();
    let sockets = futures::stream::iter(
        users.iter().enumerate().map(|(i, u)| connect_session(gateways[i % gateways.len()], u.token.clone())),
    )
    .buffer_unordered(32)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<anyhow::Result<Vec<_>>>()
    .with_context(|| format!("WebSocket sessions; server log:\n{}", server.log_tail()))?;
    // why: live events are held for 0.5 s after `ready` (room for a resume); start past that.
    tokio::time::sleep(Duration::from_millis(800)).await;

    let base = Instant::now();
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let end = start + scenario.duration + DRAIN;
    let receivers = tokio::spawn(collect(sockets, base, scenario, end));

    let client = server.chats().await?;
    let mut sends = Vec::new();
    for k in 0..scenario.sends() {
        let (at, stamp) = due(start, base, scenario.period(), k);
        tokio::time::sleep_until(at).await;
        // why: each send is its own task so a slow answer never delays the next due send.
        let mut client = client.clone();
        let request = pb_chat::CreateChatRequest {
            channel_id: channel_id.clone(),
            text: format!("{MARKER}{stamp} #{k}"),
            ..Default::default()
        };
        let token = owner.token.clone();
        sends.push(tokio::spawn(async move { client.create_chat(authed(&token, request)).await.is_ok() }));
    }
    let mut send_errors = 0;
    for send in sends {
        if !send.await.unwrap_or(false) {
            send_errors += 1;
        }
    }
    let latency = receivers.await?;
    let expected = scenario.sends() * scenario.subscribers as u64;
    Ok(Deliveries { latency, expected, send_errors })
}

/// A session of the gateway, past its `ready` frame.
pub(crate) async fn connect_session(ws: SocketAddr, token: String) -> anyhow::Result<Socket> {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{ws}/?token={token}")).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) if text.contains("\"ready\"") => return Ok(socket),
            Ok(Some(Ok(_))) => {}
            other => anyhow::bail!("no ready frame: {other:?}"),
        }
    }
}

/// The floor: a bare broadcast server. `/pub` publishes; every other socket subscribes.
pub(crate) async fn broadcast_server() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, _) = broadcast::channel::<Message>(65_536);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut publisher = false;
                // why: the error type is tungstenite's handshake `Callback`'s, not ours.
                #[allow(clippy::result_large_err)]
                let callback = |request: &handshake::Request, response: handshake::Response| {
                    publisher = request.uri().path() == "/pub";
                    Ok(response)
                };
                let Ok(socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else { return };
                let (mut sink, mut source) = socket.split();
                if publisher {
                    while let Some(Ok(message)) = source.next().await {
                        if message.is_text() {
                            let _ = tx.send(message);
                        }
                    }
                } else {
                    let mut rx = tx.subscribe();
                    while let Ok(message) = rx.recv().await {
                        if sink.send(message).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// The baseline run: same subscribers and timetable, frames shaped like `chat.created`.
async fn baseline(scenario: Scenario) -> anyhow::Result<Deliveries> {
    let addr = broadcast_server().await?;
    let mut sockets = Vec::new();
    for _ in 0..scenario.subscribers {
        sockets.push(tokio_tungstenite::connect_async(format!("ws://{addr}/sub")).await?.0);
    }
    let (mut publisher, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/pub")).await?;
    // why: the same pause as before chatmesh's run, so both start equally settled.
    tokio::time::sleep(Duration::from_millis(800)).await;

    let base = Instant::now();
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let end = start + scenario.duration + DRAIN;
    let receivers = tokio::spawn(collect(sockets, base, scenario, end));
    let mut send_errors = 0;
    for k in 0..scenario.sends() {
        let (at, stamp) = due(start, base, scenario.period(), k);
        tokio::time::sleep_until(at).await;
        let frame = json!({"event": "chat.created", "data": {"chat": {"text": format!("{MARKER}{stamp} #{k}")}}});
        if publisher.send(Message::Text(frame.to_string().into())).await.is_err() {
            send_errors += 1;
        }
    }
    let latency = receivers.await?;
    let _ = publisher.close(None).await;
    Ok(Deliveries { latency, expected: scenario.sends() * scenario.subscribers as u64, send_errors })
}

/// The goal at 100 subscribers, in ms: (p50, p99).
const GOAL_AT_100: (f64, f64) = (2.0, 10.0);

/// Runs (a) for one scenario: chatmesh, then the bare broadcast baseline.
pub async fn run(binary: &Path, scenario: Scenario) -> anyhow::Result<Outcome> {
    let measured = chatmesh(binary, scenario, false).await?;
    let floor = baseline(scenario).await?;
    let (mp, bp) = (percentiles(&measured.latency), percentiles(&floor.latency));
    let p = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let mut rows = Vec::new();
    let mut ratios = serde_json::Map::new();
    for (label, key) in [("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"), ("p999 ms", "p999_ms"), ("max ms", "max_ms")] {
        let r = ratio(p(&mp, key), p(&bp, key));
        rows.push([label.to_owned(), num(p(&mp, key)), num(p(&bp, key)), show_ratio(&r)]);
        ratios.insert(format!("ratio_{key}"), r);
    }
    let delivered = |d: &Deliveries| format!("{} / {}", d.latency.len(), d.expected);
    rows.push(["deliveries".into(), delivered(&measured), delivered(&floor), "—".into()]);
    rows.push(["send errors".into(), measured.send_errors.to_string(), floor.send_errors.to_string(), "—".into()]);

    let (goal, figures_meet_goal) = if scenario.subscribers == 100 {
        let met = measured.latency.len() == measured.expected
            && p(&mp, "p50_ms") <= GOAL_AT_100.0
            && p(&mp, "p99_ms") <= GOAL_AT_100.1;
        (Some(format!("p50 ≤ {} ms, p99 ≤ {} ms at 100 subscribers", GOAL_AT_100.0, GOAL_AT_100.1)), Some(met))
    } else {
        (None, None)
    };
    Ok(Outcome {
        id: "a",
        title: format!("end-to-end latency, {} subscribers", scenario.subscribers),
        notes: vec![
            format!(
                "{} subscribers of one group, one WebSocket session each; the owner sends CreateChat over gRPC \
                 at {}/s for {:.1} s ({} sends, {} deliveries expected) on a fixed timetable",
                scenario.subscribers,
                scenario.per_second,
                scenario.duration.as_secs_f64(),
                scenario.sends(),
                measured.expected
            ),
            "latency: from when the send was due (stamped in the chat's text) to the `chat.created` frame read \
             by a subscriber; a late send counts its lateness"
                .into(),
            "baseline: a bare tokio-tungstenite broadcast server in this process, same subscribers and \
             timetable, frames shaped like `chat.created`"
                .into(),
        ],
        rows,
        goal,
        figures_meet_goal,
        failed: measured.send_errors,
        data: json!({
            "subscribers": scenario.subscribers,
            "sends_per_s": scenario.per_second,
            "duration_s": scenario.duration.as_secs_f64(),
            "chatmesh": { "latency": mp, "delivered": measured.latency.len(), "expected": measured.expected,
                          "send_errors": measured.send_errors },
            "baseline_broadcast": { "latency": bp, "delivered": floor.latency.len(), "expected": floor.expected,
                                    "send_errors": floor.send_errors },
            "ratios": ratios,
        }),
    })
}

/// (a) in cluster mode: the same scenario on two processes joined by Redis, as a ratio to
/// `chatmesh up` measured again in this run.
pub async fn run_cluster(binary: &Path, scenario: Scenario) -> anyhow::Result<Outcome> {
    let up = chatmesh(binary, scenario, false).await?;
    let cluster = chatmesh(binary, scenario, true).await?;
    let (cp, up_p) = (percentiles(&cluster.latency), percentiles(&up.latency));
    let p = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let mut rows = Vec::new();
    for (label, key) in [("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"), ("p999 ms", "p999_ms")] {
        rows.push([
            label.to_owned(),
            num(p(&cp, key)),
            num(p(&up_p, key)),
            show_ratio(&ratio(p(&cp, key), p(&up_p, key))),
        ]);
    }
    let delivered = |d: &Deliveries| format!("{} / {}", d.latency.len(), d.expected);
    rows.push(["deliveries".into(), delivered(&cluster), delivered(&up), "—".into()]);
    Ok(Outcome {
        id: "a",
        title: format!("end-to-end latency in cluster mode, {} subscribers", scenario.subscribers),
        notes: vec![
            format!(
                "cluster: `serve user channel chat indexer dispatcher rest ws` and `serve dispatcher ws` joined by \
                 Redis ({}); sessions alternate between the two gateways; the same timetable as (a) ({}/s for {:.1} s)",
                crate::server::redis_url(),
                scenario.per_second,
                scenario.duration.as_secs_f64()
            ),
            "baseline column: `chatmesh up` with the same scenario, measured again in this run".into(),
        ],
        rows,
        goal: None,
        figures_meet_goal: None,
        failed: cluster.send_errors,
        data: json!({"subscribers": scenario.subscribers, "cluster": cp, "up": up_p,
                     "delivered": [cluster.latency.len(), up.latency.len()], "expected": cluster.expected,
                     "ratio_p99": ratio(p(&cp, "p99_ms"), p(&up_p, "p99_ms"))}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_is_read_from_chat_created_frames_only() {
        assert_eq!(due_of(r#"{"event":"chat.created","data":{"chat":{"text":"bench-due:1234 #5"}}}"#), Some(1234));
        assert_eq!(due_of(r#"{"event":"chat.edited","data":{"chat":{"text":"bench-due:1234"}}}"#), None);
        assert_eq!(due_of(r#"{"event":"chat.created","data":{"chat":{"text":"hello"}}}"#), None);
    }
}
