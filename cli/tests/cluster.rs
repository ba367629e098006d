//! Several `chatmesh serve` processes on loopback joined by Redis: an event entering one
//! dispatcher reaches a WebSocket client of a gateway attached to another, and a lost backplane
//! subscription sends that gateway's clients back to the event log instead of leaving a gap.
//! Needs CHATMESH_TEST_REDIS_URL (`.ci/run` sets it) and, for the outage test, `redis-server`.

mod common;

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{Process, authed, connect, free_addr, own_redis, redis_url, sign_up, start_redis, wait_for_port};

use chatmesh_api::{
    channel::v1::{ChannelKind, CreateChannelRequest, channel_service_client::ChannelServiceClient},
    chat::v1::{CreateChatRequest, chat_service_client::ChatServiceClient},
    user::v1::{LoginRequest, user_service_client::UserServiceClient},
};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};
use tonic::transport::Channel;

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// `chatmesh serve <parts>` on `data` with these listeners and settings.
fn serve(data: &Path, parts: &[&str], grpc: SocketAddr, ws: SocketAddr, env: &[(&str, String)]) -> Process {
    spawn(data, parts, &[("--grpc-listen", grpc), ("--ws-listen", ws), ("--rest-listen", free_addr())], env)
}

/// As [`serve`], with the REST gateway on `rest`.
fn serve_with_rest(data: &Path, parts: &[&str], grpc: SocketAddr, rest: SocketAddr, env: &[(&str, String)]) -> Process {
    spawn(data, parts, &[("--grpc-listen", grpc), ("--ws-listen", free_addr()), ("--rest-listen", rest)], env)
}

fn spawn(data: &Path, parts: &[&str], listeners: &[(&str, SocketAddr)], env: &[(&str, String)]) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_chatmesh"))
        .args(["--data-dir", data.to_str().unwrap(), "serve"])
        .args(parts)
        .args(listeners.iter().flat_map(|(flag, addr)| [flag.to_string(), addr.to_string()]))
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env("CHATMESH_LOG__FILTER", "warn")
        .env("CHATMESH_PASSWORD__MEMORY_KIB", "4096")
        .env("CHATMESH_PASSWORD__ITERATIONS", "1")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(log_file(data, parts))
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    Process(child)
}

/// The distinct warnings the processes logged (numbers elided), with counts.
fn print_warnings(data: &Path) {
    let mut warnings: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(data).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            for line in std::fs::read_to_string(entry.path()).unwrap_or_default().lines() {
                let plain: String = line.chars().filter(|c| !c.is_ascii_digit()).collect();
                if let Some(at) = plain.find("WARN").or_else(|| plain.find("ERROR")) {
                    *warnings.entry(plain[at..].chars().take(160).collect()).or_default() += 1;
                }
            }
        }
    }
    for (warning, count) in warnings {
        println!("  {count} × {warning}");
    }
}

/// Where a process's warnings go: a file per start in the data dir (kept for a failing run).
fn log_file(data: &Path, parts: &[&str]) -> std::fs::File {
    let name = format!(
        "{}-{}.log",
        parts.join("+"),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    );
    std::fs::File::create(data.join(name)).expect("a log file")
}

async fn open_socket(ws: SocketAddr, token: &str) -> Socket {
    let started = Instant::now();
    loop {
        if let Ok((mut socket, _)) = tokio_tungstenite::connect_async(format!("ws://{ws}/?token={token}")).await {
            let ready = next_frame(&mut socket, Duration::from_secs(10)).await.expect("ready");
            assert_eq!(ready["event"], "ready", "{ready}");
            return socket;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no gateway on {ws}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next JSON frame, or `None` on timeout; a close frame comes back as `{"close": code}`.
async fn next_frame(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Some(json!({
                    "close": frame.as_ref().map(|f| u16::from(f.code)),
                    "reason": frame.map(|f| f.reason.to_string()),
                }));
            }
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// Chat ids of `chat.created` frames until `count` arrived (or the wait ran out).
async fn created(socket: &mut Socket, count: usize, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    let mut ids = Vec::new();
    while ids.len() < count {
        let Some(frame) = next_frame(socket, deadline.saturating_duration_since(Instant::now())).await else { break };
        if frame["event"] == "chat.created" && frame["data"]["chat"]["kind"] == "CHAT_KIND_TEXT" {
            ids.push(frame["data"]["chat"]["chatId"].as_str().unwrap().to_owned());
        }
    }
    ids
}

struct Mesh {
    core_grpc: SocketAddr,
    edge_grpc: SocketAddr,
    core_ws: SocketAddr,
    edge_ws: SocketAddr,
    _processes: Vec<Process>,
}

/// One process with the stores and a dispatcher and gateway; another with only a dispatcher and
/// a gateway, reaching the first for membership and history.
async fn mesh(data: &Path, redis: &str) -> Mesh {
    mesh_with(data, redis, &[]).await
}

async fn mesh_with(data: &Path, redis: &str, settings: &[(&'static str, &str)]) -> Mesh {
    let (core_grpc, core_ws, edge_grpc, edge_ws) = (free_addr(), free_addr(), free_addr(), free_addr());
    let mut core_env = vec![("CHATMESH_REDIS_URL", redis.to_owned())];
    core_env.extend(settings.iter().map(|(k, v)| (*k, v.to_string())));
    let core = serve(data, &["user", "channel", "chat", "indexer", "dispatcher", "ws"], core_grpc, core_ws, &core_env);
    connect(core_grpc).await;
    let peer = format!("http://{core_grpc}");
    let mut edge_env = vec![
        ("CHATMESH_REDIS_URL", redis.to_owned()),
        ("CHATMESH_NODE_ID", "1".into()),
        ("CHATMESH_PEERS__CHANNEL", peer.clone()),
        ("CHATMESH_PEERS__CHAT", peer.clone()),
        ("CHATMESH_PEERS__USER", peer),
    ];
    edge_env.extend(settings.iter().map(|(k, v)| (*k, v.to_string())));
    let edge = serve(data, &["dispatcher", "ws"], edge_grpc, edge_ws, &edge_env);
    connect(edge_grpc).await;
    Mesh { core_grpc, edge_grpc, core_ws, edge_ws, _processes: vec![core, edge] }
}

async fn send(channel: &Channel, token: &str, channel_id: &str, text: &str) -> String {
    let request = CreateChatRequest { channel_id: channel_id.into(), text: text.into(), ..Default::default() };
    let response = ChatServiceClient::new(channel.clone()).create_chat(authed(token, request)).await.unwrap();
    response.into_inner().chat.unwrap().chat_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_clients_of_a_gateway_on_another_dispatcher_in_order() {
    let Some(redis) = redis_url() else { return };
    let data = tempfile::tempdir().unwrap();
    let mesh = mesh(data.path(), &redis).await;
    let channel = connect(mesh.core_grpc).await;
    let (alice, _, bob, channel_id) = alice_and_bob(&channel).await;
    let mut near = open_socket(mesh.core_ws, &alice).await;
    let mut far = open_socket(mesh.edge_ws, &bob).await;

    let mut sent = Vec::new();
    for i in 0..50 {
        sent.push(send(&channel, &alice, &channel_id, &format!("across {i}")).await);
    }
    let (near_got, far_got) = (
        created(&mut near, sent.len(), Duration::from_secs(15)).await,
        created(&mut far, sent.len(), Duration::from_secs(15)).await,
    );
    println!(
        "sent {}, delivered through the same dispatcher {}, through the other {}",
        sent.len(),
        near_got.len(),
        far_got.len()
    );
    assert_eq!(near_got, sent);
    assert_eq!(far_got, sent, "every event, once, in order, through the backplane");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_outage_far_clients_are_sent_to_resume_and_miss_nothing() {
    let Some((redis, port, url)) = own_redis().await else { return };
    let data = tempfile::tempdir().unwrap();
    let mesh = mesh(data.path(), &url).await;
    let channel = connect(mesh.core_grpc).await;
    let (alice, _, bob, channel_id) = alice_and_bob(&channel).await;
    let mut far = open_socket(mesh.edge_ws, &bob).await;
    let before = send(&channel, &alice, &channel_id, "before").await;
    assert_eq!(created(&mut far, 1, Duration::from_secs(10)).await, vec![before.clone()]);

    drop(redis);
    // sends keep working while Redis is down (publishing fails open)
    let started = Instant::now();
    let during = send(&channel, &alice, &channel_id, "during").await;
    println!("a send with Redis down took {:?}", started.elapsed());
    let _redis = start_redis(port);
    wait_for_port(port).await;

    let (got, resumes) =
        receive_all(&mesh, &channel, &bob, &channel_id, &mut far, before.clone(), std::slice::from_ref(&during)).await;
    println!("after the outage: resumed {resumes} times, got {got:?}");
    assert!(resumes >= 1, "the far client is told to reconnect and resume");
    assert!(got.contains(&during), "the chat sent during the outage comes from the log: lost 0");
    let after = send(&channel, &alice, &channel_id, "after").await;
    let (got, _) =
        receive_all(&mesh, &channel, &bob, &channel_id, &mut far, during, std::slice::from_ref(&after)).await;
    assert!(got.contains(&after), "live again: {got:?}");
}

/// A far client that follows `channel_id` across resync requests: it collects `chat.created`
/// ids until it has every one of `want` (or time runs out); told to reconnect (1012), it opens a
/// new socket and resumes after the last chat it saw. Returns what it got and how often it
/// resumed.
async fn receive_all(
    mesh: &Mesh,
    channel: &Channel,
    token: &str,
    channel_id: &str,
    socket: &mut Socket,
    mut last_seen: String,
    want: &[String],
) -> (Vec<String>, usize) {
    let mut got = Vec::new();
    let mut resumes = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !want.iter().all(|id| got.contains(id)) && Instant::now() < deadline {
        match next_frame(socket, Duration::from_secs(1)).await {
            Some(frame) if frame["event"] == "chat.created" && frame["data"]["chat"]["kind"] == "CHAT_KIND_TEXT" => {
                last_seen = frame["data"]["chat"]["chatId"].as_str().unwrap().to_owned();
                got.push(last_seen.clone());
            }
            Some(frame) if frame.get("close").is_some() => {
                assert_eq!(frame["close"], 1012, "{frame}");
                resumes += 1;
                *socket = open_socket(mesh.edge_ws, token).await;
                let after = before_event(channel, token, channel_id, &last_seen).await;
                let resume = json!({ "event": "resume", "data": { "channels": { channel_id: after } } });
                socket.send(Message::text(resume.to_string())).await.unwrap();
            }
            _ => {}
        }
    }
    (got, resumes)
}

/// Alice, and Bob in a group of hers: (alice's token, bob's id, bob's token, the group's id).
async fn alice_and_bob(channel: &Channel) -> (String, String, String, String) {
    let (_, alice) = sign_up(channel, "alice@example.com").await;
    let (bob_id, bob) = sign_up(channel, "bob@example.com").await;
    let channel_id = common::group(channel, &alice, &[&bob_id]).await;
    (alice, bob_id, bob, channel_id)
}

/// The event id of `chat_id`'s `chat.created` in the channel's log (what a client resumes after).
async fn before_event(channel: &Channel, token: &str, channel_id: &str, chat_id: &str) -> String {
    use chatmesh_api::chat::v1::{EventType, ListEventsRequest, channel_event::Payload};
    let request = ListEventsRequest { channel_id: channel_id.into(), page_size: 500, ..Default::default() };
    let events =
        ChatServiceClient::new(channel.clone()).list_events(authed(token, request)).await.unwrap().into_inner();
    events
        .events
        .into_iter()
        .find(|e| {
            e.r#type() == EventType::ChatCreated && matches!(&e.payload, Some(Payload::Chat(c)) if c.chat_id == chat_id)
        })
        .expect("the chat's event")
        .event_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_never_holds_a_send_and_far_clients_get_every_chat() {
    let Some((redis, _, url)) = own_redis().await else { return };
    let data = tempfile::tempdir().unwrap();
    let mesh = mesh(data.path(), &url).await;
    let channel = connect(mesh.core_grpc).await;
    let (alice, _, bob, channel_id) = alice_and_bob(&channel).await;
    let mut far = open_socket(mesh.edge_ws, &bob).await;
    let before = send(&channel, &alice, &channel_id, "before").await;
    assert_eq!(created(&mut far, 1, Duration::from_secs(10)).await, vec![before.clone()]);

    let pid = redis.0.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let mut during = Vec::new();
    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        let started = Instant::now();
        during.push(send(&channel, &alice, &channel_id, &format!("during {i}")).await);
        slowest = slowest.max(started.elapsed());
    }
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    println!("slowest send with Redis stopped: {slowest:?}");
    assert!(slowest < Duration::from_secs(2), "a stalled Redis does not hold sends: {slowest:?}");

    // every chat arrives live, or the client is told to resume and gets the rest from the log
    let (got, resumes) = receive_all(&mesh, &channel, &bob, &channel_id, &mut far, before, &during).await;
    let lost = during.iter().filter(|id| !got.contains(id)).count();
    println!("sent during the stall {}, delivered {}, lost {lost}, resumed {resumes} times", during.len(), got.len());
    assert_eq!(lost, 0);
}

/// What one chaos client saw.
#[derive(Debug, Default)]
struct Seen {
    chats: std::collections::HashSet<String>,
    /// The same event twice on one connection.
    duplicates_within: usize,
    /// An older event after a newer one of the same channel on one connection.
    out_of_order: usize,
    /// A chat seen again on a later connection (after a resume).
    duplicates_across: usize,
    connections: usize,
    closes: std::collections::HashMap<String, usize>,
}

/// A client that stays connected through kills: it alternates gateways on every reconnect and
/// resumes after the last event it saw per channel.
async fn chaos_client(
    gateways: [SocketAddr; 2],
    first: usize,
    token: String,
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut turn = first;
    while !*stop.borrow() {
        if turn != first {
            // why: like a real client, reconnect after a short pause rather than in a tight loop.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let gateway = gateways[turn % 2];
        turn += 1;
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(format!("ws://{gateway}/?token={token}")).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        seen.lock().unwrap().connections += 1;
        // why: channels with nothing seen yet resume from the start of their log.
        let Some(ready) = next_frame(&mut socket, Duration::from_secs(10)).await else { continue };
        for listed in ready["data"]["channels"].as_array().into_iter().flatten() {
            if let Some(id) = listed["channelId"].as_str() {
                last.entry(id.to_owned()).or_insert(1);
            }
        }
        if !last.is_empty() {
            let channels: serde_json::Map<String, Value> =
                last.iter().map(|(c, id)| (c.clone(), Value::String(id.to_string()))).collect();
            let resume = json!({ "event": "resume", "data": { "channels": channels } });
            if socket.send(Message::text(resume.to_string())).await.is_err() {
                continue;
            }
        }
        let mut this_connection: std::collections::HashMap<String, std::collections::BTreeSet<u64>> =
            std::collections::HashMap::new();
        loop {
            if *stop.borrow() {
                return;
            }
            let Some(frame) = next_frame(&mut socket, Duration::from_millis(500)).await else {
                // a timeout is quiet; a dead socket ends the connection
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
                continue;
            };
            if frame.get("close").is_some() {
                *seen.lock().unwrap().closes.entry(format!("{} {}", frame["close"], frame["reason"])).or_default() += 1;
                break;
            }
            if frame["event"] == "error" || frame["event"] == "resync" {
                *seen.lock().unwrap().closes.entry(frame.to_string()).or_default() += 1;
            }
            let data = &frame["data"];
            let (Some(channel), Some(event_id)) =
                (data["channelId"].as_str(), data["eventId"].as_str().and_then(|e| e.parse::<u64>().ok()))
            else {
                continue;
            };
            let ids = this_connection.entry(channel.to_owned()).or_default();
            let mut seen = seen.lock().unwrap();
            if ids.contains(&event_id) {
                seen.duplicates_within += 1;
            } else if ids.last().is_some_and(|newest| *newest > event_id) {
                seen.out_of_order += 1;
            }
            ids.insert(event_id);
            let newest = last.entry(channel.to_owned()).or_default();
            *newest = (*newest).max(event_id);
            if frame["event"] == "chat.created"
                && data["chat"]["kind"] == "CHAT_KIND_TEXT"
                && !seen.chats.insert(data["chat"]["chatId"].as_str().unwrap_or_default().to_owned())
            {
                seen.duplicates_across += 1;
            }
        }
    }
}

fn kill(process: &mut Process) {
    let _ = process.0.kill();
    let _ = process.0.wait();
}

/// The chaos run's size: the figures.
const CHAOS_CLIENTS: usize = 100;
const CHAOS_CHANNELS: usize = 50;
/// Members per channel (each client is in `CHAOS_CHANNELS * MEMBERS / CHAOS_CLIENTS` channels).
const CHAOS_MEMBERS: usize = 10;
const CHAOS_CHATS: usize = 10_000;
/// Concurrent senders, alternating gRPC and REST.
const CHAOS_SENDERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chats_survive_killed_dispatchers_and_gateways_with_clients_resuming() {
    let Some((_redis, _, redis)) = own_redis().await else { return };
    let data = tempfile::tempdir().unwrap();
    let (core_grpc, rest) = (free_addr(), free_addr());
    let (d1, d2, w1, w2) = (free_addr(), free_addr(), free_addr(), free_addr());
    let dispatchers = format!("http://{d1},http://{d2}");
    let base = |node: u16| {
        vec![
            ("CHATMESH_REDIS_URL", redis.clone()),
            ("CHATMESH_NODE_ID", node.to_string()),
            ("CHATMESH_PEERS__CHANNEL", format!("http://{core_grpc}")),
            ("CHATMESH_PEERS__CHAT", format!("http://{core_grpc}")),
            ("CHATMESH_PEERS__USER", format!("http://{core_grpc}")),
            ("CHATMESH_PEERS__DISPATCHER", dispatchers.clone()),
            ("CHATMESH_WS__DRAIN_SECS", "1".into()),
            // why: the senders write as fast as they can; the limiter has its own tests.
            ("CHATMESH_LIMITS__USER_CALLS_PER_SEC", "1000000".into()),
            ("CHATMESH_LIMITS__USER_CALLS_BURST", "1000000".into()),
        ]
    };
    let mut core_env = base(0);
    core_env.retain(|(k, _)| !k.starts_with("CHATMESH_PEERS__C") && *k != "CHATMESH_PEERS__USER");
    let core = serve(data.path(), &["user", "channel", "chat", "indexer"], core_grpc, free_addr(), &core_env);
    // why: the first process creates the signing keys in the shared data dir; the others load them.
    let channel = connect(core_grpc).await;
    let start_dispatcher = |addr, node| serve(data.path(), &["dispatcher"], addr, free_addr(), &base(node));
    let start_gateway = |addr, node| serve(data.path(), &["ws"], free_addr(), addr, &base(node));
    let _rest = serve_with_rest(data.path(), &["rest"], free_addr(), rest, &base(5));
    let mut dispatcher_one = start_dispatcher(d1, 1);
    let _dispatcher_two = start_dispatcher(d2, 2);
    let mut gateway_one = start_gateway(w1, 3);
    let _gateway_two = start_gateway(w2, 4);
    connect(d1).await;
    connect(d2).await;

    let (_, owner) = sign_up(&channel, "owner@example.com").await;
    let mut members = Vec::new();
    for i in 0..CHAOS_CLIENTS {
        members.push(sign_up(&channel, &format!("member{i}@example.com")).await);
    }
    // channel c has members 2c .. 2c + CHAOS_MEMBERS (mod clients): each client is in 5 channels
    let mut channels = Vec::new();
    let mut member_of: Vec<Vec<usize>> = vec![Vec::new(); CHAOS_CLIENTS];
    for c in 0..CHAOS_CHANNELS {
        let chosen: Vec<usize> =
            (0..CHAOS_MEMBERS).map(|k| (c * CHAOS_CLIENTS / CHAOS_CHANNELS + k) % CHAOS_CLIENTS).collect();
        chosen.iter().for_each(|m| member_of[*m].push(c));
        let request = CreateChannelRequest {
            kind: ChannelKind::Group as i32,
            name: "chaos".into(),
            member_ids: chosen.iter().map(|m| members[*m].0.clone()).collect(),
            ..Default::default()
        };
        let created = ChannelServiceClient::new(channel.clone()).create_channel(authed(&owner, request)).await.unwrap();
        channels.push(created.into_inner().channel.unwrap().channel_id);
    }
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut seen = Vec::new();
    let mut clients = Vec::new();
    for (i, (_, token)) in members.iter().enumerate() {
        let state = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
        seen.push(state.clone());
        clients.push(tokio::spawn(chaos_client([w1, w2], i, token.clone(), state, stop.clone())));
    }
    while seen.iter().any(|s| s.lock().unwrap().connections == 0) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;

    // the chats, over gRPC and REST, while a dispatcher and a gateway are killed and
    // restarted three times each
    let started = Instant::now();
    let senders: Vec<_> = (0..CHAOS_SENDERS)
        .map(|sender| {
            let (channel, owner, channels) = (channel.clone(), owner.clone(), channels.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut sent = Vec::new();
                for i in (sender..CHAOS_CHATS).step_by(CHAOS_SENDERS) {
                    let c = i % channels.len();
                    let id = if sender % 2 == 0 {
                        send(&channel, &owner, &channels[c], &format!("chaos {i}")).await
                    } else {
                        let body = json!({ "channelId": channels[c], "text": format!("chaos {i}") });
                        let response = http
                            .post(format!("http://{rest}/api/v1/chats"))
                            .bearer_auth(&owner)
                            .body(body.to_string())
                            .send()
                            .await
                            .unwrap();
                        let text = response.text().await.unwrap();
                        let chat: Value = serde_json::from_str(&text).unwrap();
                        chat["chat"]["chatId"].as_str().unwrap_or_else(|| panic!("a chat: {text}")).to_owned()
                    };
                    sent.push((c, id));
                }
                sent
            })
        })
        .collect();
    let chaos = async {
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            kill(&mut dispatcher_one);
            tokio::time::sleep(Duration::from_millis(300)).await;
            dispatcher_one = start_dispatcher(d1, 1);
            tokio::time::sleep(Duration::from_millis(1500)).await;
            kill(&mut gateway_one);
            tokio::time::sleep(Duration::from_millis(300)).await;
            gateway_one = start_gateway(w1, 3);
        }
    };
    let (sent, ()) = tokio::join!(futures::future::join_all(senders), chaos);
    let sent: Vec<(usize, String)> = sent.into_iter().flat_map(Result::unwrap).collect();
    let send_time = started.elapsed();
    let expected: Vec<Vec<&String>> = member_of
        .iter()
        .map(|mine| sent.iter().filter(|(c, _)| mine.contains(c)).map(|(_, id)| id).collect())
        .collect();
    let missing = |i: usize| expected[i].iter().filter(|id| !seen[i].lock().unwrap().chats.contains(**id)).count();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline && (0..seen.len()).any(|i| missing(i) > 0) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop_tx.send(true).unwrap();
    for client in clients {
        let _ = client.await;
    }
    let lost: usize = (0..seen.len()).map(missing).sum();
    let (mut within, mut disorder, mut across, mut connections) = (0, 0, 0, 0);
    let mut delivered = Vec::new();
    let mut closes: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for state in &seen {
        let s = state.lock().unwrap();
        delivered.push(s.chats.len());
        within += s.duplicates_within;
        disorder += s.out_of_order;
        across += s.duplicates_across;
        connections += s.connections;
        for (reason, n) in &s.closes {
            *closes.entry(reason.clone()).or_default() += n;
        }
    }
    println!(
        "sent {} in {send_time:?} ({} senders, gRPC and REST), clients {}, channels {}, delivered per client min {} max {}, \
         lost {lost}, duplicates within a connection {within}, out of order {disorder}, duplicates across reconnects \
         {across}, connections {connections}",
        sent.len(),
        CHAOS_SENDERS,
        seen.len(),
        CHAOS_CHANNELS,
        delivered.iter().min().unwrap(),
        delivered.iter().max().unwrap(),
    );
    println!("what ended connections: {closes:?}");
    print_warnings(data.path());
    assert_eq!(sent.len(), CHAOS_CHATS);
    assert_eq!(lost, 0, "every chat reached every member");
    assert_eq!((within, disorder), (0, 0), "no duplicates or reordering within a connection");
    drop((dispatcher_one, gateway_one, core));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_logout_reach_across_dispatchers_and_a_dead_one_stops_counting() {
    use chatmesh_api::{
        dispatcher::v1::{GetPresenceRequest, PresenceStatus, dispatcher_service_client::DispatcherServiceClient},
        user::v1::LogoutRequest,
    };
    let Some((_redis, _, url)) = own_redis().await else { return };
    let data = tempfile::tempdir().unwrap();
    let mut mesh = mesh_with(data.path(), &url, &[("CHATMESH_REDIS__PRESENCE_TTL_SECS", "3")]).await;
    let channel = connect(mesh.core_grpc).await;
    let (_, alice) = sign_up(&channel, "alice@example.com").await;
    let (bob_id, bob) = sign_up(&channel, "bob@example.com").await;
    let direct = CreateChannelRequest {
        kind: ChannelKind::Direct as i32,
        member_ids: vec![bob_id.clone()],
        ..Default::default()
    };
    ChannelServiceClient::new(channel.clone()).create_channel(authed(&alice, direct)).await.unwrap();
    let mut near = open_socket(mesh.core_ws, &alice).await;
    let status = |token: String| {
        let channel = channel.clone();
        let bob_id = bob_id.clone();
        async move {
            let request = GetPresenceRequest { user_ids: vec![bob_id] };
            let answer = DispatcherServiceClient::new(channel).get_presence(authed(&token, request)).await.unwrap();
            answer.into_inner().presences[0].status()
        }
    };
    assert_eq!(status(alice.clone()).await, PresenceStatus::Offline);

    // bob comes online through the other dispatcher: alice's dispatcher knows, and tells her
    let mut far = open_socket(mesh.edge_ws, &bob).await;
    assert_eq!(status(alice.clone()).await, PresenceStatus::Online, "presence is shared through Redis");
    let mut heard = None;
    for _ in 0..20 {
        match next_frame(&mut near, Duration::from_millis(500)).await {
            Some(frame) if frame["event"] == "presence" => {
                heard = Some(frame);
                break;
            }
            _ => {}
        }
    }
    let heard = heard.expect("a presence event crossed the backplane");
    assert_eq!(
        (heard["data"]["userId"].as_str(), heard["data"]["status"].as_str()),
        (Some(bob_id.as_str()), Some("PRESENCE_STATUS_ONLINE"))
    );

    // logging out through the first process closes bob's socket on the second
    UserServiceClient::new(channel.clone()).logout(authed(&bob, LogoutRequest {})).await.unwrap();
    let mut closed = None;
    for _ in 0..20 {
        if let Some(frame) = next_frame(&mut far, Duration::from_millis(500)).await
            && frame.get("close").is_some()
        {
            closed = frame["close"].as_u64();
            break;
        }
    }
    assert_eq!(closed, Some(4003), "logged out everywhere");
    let mut edge = DispatcherServiceClient::new(connect(mesh.edge_grpc).await);
    let ended = Instant::now();
    loop {
        let request = authed(&bob, GetPresenceRequest { user_ids: vec![bob_id.clone()] });
        match edge.get_presence(request).await {
            Err(refused) if refused.code() == tonic::Code::Unauthenticated => break,
            other => assert!(
                ended.elapsed() < Duration::from_secs(2),
                "the ended session's token is refused by the other process too: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("a logged-out token was refused by another process after {:?}", ended.elapsed());

    // a dispatcher that dies stops counting within the TTL
    let login = LoginRequest { email: "bob@example.com".into(), password: "correct horse".into() };
    let bob =
        UserServiceClient::new(channel.clone()).login(login).await.unwrap().into_inner().tokens.unwrap().access_token;
    let _far = open_socket(mesh.edge_ws, &bob).await;
    assert_eq!(status(alice.clone()).await, PresenceStatus::Online);
    let edge = mesh._processes.pop().expect("the edge process");
    drop(edge);
    let killed = Instant::now();
    while status(alice.clone()).await == PresenceStatus::Online {
        assert!(killed.elapsed() < Duration::from_secs(10), "offline within the TTL (3 s) and a heartbeat");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("a user of a killed dispatcher showed offline after {:?} (TTL 3 s)", killed.elapsed());
    let request = GetPresenceRequest { user_ids: vec![bob_id.clone()] };
    let answer = DispatcherServiceClient::new(channel.clone()).get_presence(authed(&alice, request)).await.unwrap();
    let seen = answer.into_inner().presences[0].last_seen_at.expect("last seen, kept in Redis past the dispatcher");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(
        (now - seen.seconds) <= 5,
        "last seen at the dead dispatcher's last heartbeat: {}s ago",
        now - seen.seconds
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_is_enforced_by_another_process_within_the_documented_second() {
    use chatmesh_api::{
        channel::v1::DeleteMemberRequest,
        dispatcher::v1::{SendTypingRequest, dispatcher_service_client::DispatcherServiceClient},
    };
    let Some(redis) = redis_url() else { return };
    let data = tempfile::tempdir().unwrap();
    let mesh = mesh(data.path(), &redis).await;
    let channel = connect(mesh.core_grpc).await;
    let (alice, bob_id, bob, channel_id) = alice_and_bob(&channel).await;
    let mut edge = DispatcherServiceClient::new(connect(mesh.edge_grpc).await);
    let typing = || authed(&bob, SendTypingRequest { channel_id: channel_id.clone() });
    edge.send_typing(typing()).await.expect("a member may type (and the edge caches it)");
    let kick = DeleteMemberRequest { channel_id: channel_id.clone(), user_id: bob_id.clone() };
    ChannelServiceClient::new(channel.clone()).delete_member(authed(&alice, kick)).await.unwrap();
    let kicked = Instant::now();
    while edge.send_typing(typing()).await.is_ok() {
        assert!(kicked.elapsed() < Duration::from_millis(1500), "the other process refuses within its cache bound");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("a kicked member was refused by another process after {:?} (bound: 1 s)", kicked.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_call_budget_is_shared_by_every_process() {
    use chatmesh_api::dispatcher::v1::{GetPresenceRequest, dispatcher_service_client::DispatcherServiceClient};
    let Some(redis) = redis_url() else { return };
    let data = tempfile::tempdir().unwrap();
    let limits = [("CHATMESH_LIMITS__USER_CALLS_PER_SEC", "2"), ("CHATMESH_LIMITS__USER_CALLS_BURST", "6")];
    let mesh = mesh_with(data.path(), &redis, &limits).await;
    let channel = connect(mesh.core_grpc).await;
    let (bob_id, bob) = sign_up(&channel, "bob@example.com").await;
    let mut near = DispatcherServiceClient::new(channel.clone());
    let mut far = DispatcherServiceClient::new(connect(mesh.edge_grpc).await);
    let mut admitted = 0;
    let mut limited = 0;
    for i in 0..12 {
        let request = authed(&bob, GetPresenceRequest { user_ids: vec![bob_id.clone()] });
        let answer = if i % 2 == 0 { near.get_presence(request).await } else { far.get_presence(request).await };
        match answer {
            Ok(_) => admitted += 1,
            Err(status) if status.code() == tonic::Code::ResourceExhausted => limited += 1,
            Err(status) => panic!("{status:?}"),
        }
    }
    println!("12 calls over two processes with a burst of 6: admitted {admitted}, limited {limited}");
    assert!((6..=7).contains(&admitted), "one budget across processes, not one each: {admitted}");
}
