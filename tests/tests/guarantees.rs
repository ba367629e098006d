//! Guarantees docs/limits.md and docs/security.md state, each held from outside: calls in
//! flight per WebSocket connection, the typing throttle, the REST request time, how far search
//! trails sends, HTTP/2 streams per connection, the login throttle at its default, and the
//! media sweeper on S3. Each test also checks the number it holds against the docs and the
//! config defaults, so neither can drift from what is tested.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, Instant},
};

use chatmesh_api::{
    channel::v1::ChannelVisibility,
    chat::v1::{self as pb, chat_service_client::ChatServiceClient},
    dispatcher::v1::{SendTypingRequest, dispatcher_service_client::DispatcherServiceClient},
    user::v1 as user,
};
use chatmesh_platform::{
    auth::Authenticator,
    config::{Config, MediaBackend},
    grpc::{PlatformLayer, Policy, in_process_channel},
};
use chatmesh_tests::{
    TestApp, User, authed,
    guarantees::{self, Gate, documented_limit, h2},
    raw, test_config, ws,
};
use futures::StreamExt as _;
use serde_json::json;
use tonic::{Code, transport::Channel};

/// Only guards against hanging: every wait below ends on the event it waits for.
const WAIT: Duration = Duration::from_secs(30);

fn frame_code(frame: &serde_json::Value) -> &str {
    frame["data"]["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_connection_runs_at_most_eight_calls_at_once_and_refuses_the_ninth() {
    let documented = documented_limit("calls in flight per WebSocket connection");
    assert!(documented.starts_with("8 (then a `TOO_MANY_REQUESTS` error frame)"), "{documented}");
    let app = TestApp::spawn().await;
    // why: a gateway of its own reaches the chat part through a gate, so its calls can be held
    let gate = Gate::start(app.grpc_addr).await;
    let gateway = guarantees::ws_gateway(&app, gate.addr).await;
    let alice = app.user("alice").await;
    let (mut socket, _) = ws::connect(gateway.ws_addr(), &alice.token, "").await;
    let (mut second, _) = ws::connect(gateway.ws_addr(), &alice.token, "").await;
    // acks in a channel that does not exist: once a call reaches the chat part, it answers NOT_FOUND
    let ack = json!({"event": "ack", "data": {"channelId": "999999", "chatId": "1"}});
    let ping = json!({"event": "ping", "data": {}});

    gate.hold();
    for _ in 0..9 {
        ws::send(&mut socket, ack.clone()).await;
    }
    // why: the session answers frames in order, so everything it said about the nine acks
    // comes before the pong
    ws::send(&mut socket, ping.clone()).await;
    let frames = ws::until(&mut socket, "pong", WAIT).await.expect("a pong");
    let codes: Vec<&str> = frames.iter().filter(|f| f["event"] == "error").map(frame_code).collect();
    assert_eq!(codes, ["TOO_MANY_REQUESTS"], "eight calls wait, the ninth is refused: {frames:?}");
    assert_eq!(frames.len(), 2, "nothing else came back while the calls wait: {frames:?}");
    // the limit is the connection's: another connection of the same user still calls
    ws::send(&mut second, ack.clone()).await;
    ws::send(&mut second, ping.clone()).await;
    let frames = ws::until(&mut second, "pong", WAIT).await.expect("a pong");
    assert_eq!(frames.len(), 1, "the second connection's call is not refused: {frames:?}");

    // a finished call has freed its place by the time its answer is read: a client that keeps
    // eight in flight, sending the next call on each answer, is never refused
    gate.release();
    for answered in 0..16 {
        let frame = ws::next_frame(&mut socket, WAIT).await.expect("each waiting call answers");
        assert_eq!((frame["event"].as_str(), frame_code(&frame)), (Some("error"), "NOT_FOUND"), "call {answered}");
        if answered < 8 {
            ws::send(&mut socket, ack.clone()).await;
        }
    }
    let frame = ws::next_frame(&mut second, WAIT).await.expect("the second connection's call answers");
    assert_eq!(frame_code(&frame), "NOT_FOUND", "{frame}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_notices_go_out_at_most_once_per_user_and_channel_every_three_seconds() {
    let documented = documented_limit("typing notices");
    assert!(documented.starts_with("≤ 1 per user and channel per 3 s"), "{documented}");
    let every = Duration::from_secs(3);
    let app = TestApp::spawn().await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let channel = app.group(&alice, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let marker = app.group(&alice, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let (mut socket, _) = ws::connect(app.ws_addr, &bob.token, "").await;
    // bob's typing notices as they arrive: (when, channel, user)
    let (seen, mut notices) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(frame) = ws::next_frame(&mut socket, WAIT).await {
            if frame["event"] == "typing" {
                let data = &frame["data"];
                let notice = (Instant::now(), data["channelId"].to_string(), data["userId"].to_string());
                if seen.send(notice).is_err() {
                    return;
                }
            }
        }
    });
    let mut dispatcher = DispatcherServiceClient::new(app.channel().await);
    let typing = |channel: &str| authed(&alice.token, SendTypingRequest { channel_id: channel.into() });
    let (channel_json, marker_json, alice_json) =
        (json!(channel).to_string(), json!(marker).to_string(), json!(alice.id).to_string());

    // a burst: one notice, however many are sent (the dispatcher delivers before it answers,
    // so every notice of the burst reaches bob before the marker's)
    let started = Instant::now();
    for _ in 0..5 {
        dispatcher.send_typing(typing(&channel)).await.expect("typing");
    }
    let burst = started.elapsed();
    dispatcher.send_typing(typing(&marker)).await.expect("typing");
    let mut delivered = 0;
    loop {
        let (_, channel_id, user_id) = notices.recv().await.expect("the marker's notice");
        assert_eq!(user_id, alice_json);
        if channel_id == marker_json {
            break;
        }
        assert_eq!(channel_id, channel_json);
        delivered += 1;
    }
    // why: the throttle reads the machine's clock; a burst that took longer than the window
    // may rightly deliver more, so the bound allows one more per window elapsed
    let allowed = 1 + (burst.as_secs_f64() / every.as_secs_f64()) as usize;
    assert!((1..=allowed).contains(&delivered), "{delivered} notices from a burst of 5 in {burst:?}");

    // keep typing until the next notice arrives: it was let through at least 3 s after the first
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    let (arrived, channel_id, _) = loop {
        tokio::select! {
            notice = notices.recv() => break notice.expect("another notice"),
            _ = pace.tick() => {
                assert!(started.elapsed() < WAIT, "typing never goes out again");
                dispatcher.send_typing(typing(&channel)).await.expect("typing");
            }
        }
    };
    assert_eq!(channel_id, channel_json);
    let apart = arrived - started;
    assert!(apart >= every, "the second notice came {apart:?} after the first was sent");
    println!("typing: {delivered} notice from a burst of 5 in {burst:?}; the next {apart:?} after the first");
}

/// A user service stand-in whose Login answers UNAUTHENTICATED after `answer_after`, or never.
fn user_service(answer_after: Option<Duration>) -> tonic::service::Routes {
    let login = move || async move {
        match answer_after {
            Some(delay) => tokio::time::sleep(delay).await,
            None => std::future::pending().await,
        }
        ([("content-type", "application/grpc"), ("grpc-status", "16"), ("grpc-message", "wrong password")], "")
    };
    axum::Router::new().route("/chatmesh.user.v1.UserService/Login", axum::routing::post(login)).into()
}

/// A login through the REST gateway in front of [`user_service`]: status, error status name,
/// and how long it took (in the test's paused time).
async fn rest_login(answer_after: Option<Duration>, body: axum::body::Body) -> (u16, String, Duration) {
    use tonic::codegen::Service as _;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path().to_owned());
    // why: the services' own deadline (10 s) would answer first; this is the gateway's bound
    config.grpc.default_deadline_ms = 3_600_000;
    let auth = Arc::new(Authenticator::from_data_dir(config.auth.clone(), dir.path()).unwrap());
    let services = in_process_channel(
        user_service(answer_after),
        PlatformLayer::new(Arc::new(Policy::new(auth.clone(), &config))),
    );
    let mut router = chatmesh_gateway_rest::router(auth, services, &[], &[]);
    let request =
        axum::http::Request::post("/api/v1/auth/login").header("content-type", "application/json").body(body).unwrap();
    let started = tokio::time::Instant::now();
    let response = router.call(request).await.unwrap();
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    (status, body["status"].as_str().unwrap_or_default().to_owned(), elapsed)
}

// why: paused (virtual) time makes the 15 s exact without waiting for it.
#[tokio::test(start_paused = true)]
async fn a_rest_request_past_fifteen_seconds_answers_504_body_included() {
    let documented = documented_limit("REST request time, body included");
    assert!(documented.starts_with("15 s (504)"), "{documented}");
    let limit = Duration::from_secs(15);
    assert_eq!(chatmesh_gateway_rest::REQUEST_TIMEOUT, limit);
    let login = || axum::body::Body::from(r#"{"email": "ada@example.com", "password": "wrong password"}"#);

    let answered = rest_login(Some(limit - Duration::from_secs(1)), login()).await;
    assert_eq!(answered, (401, "UNAUTHENTICATED".into(), limit - Duration::from_secs(1)), "an answer in time");
    let stalled = rest_login(None, login()).await;
    assert_eq!(stalled, (504, "DEADLINE_EXCEEDED".into(), limit), "a service that never answers");
    // a body that starts and never ends
    let chunks = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"email\": "))])
        .chain(futures::stream::pending());
    let slow_body = rest_login(Some(Duration::ZERO), axum::body::Body::from_stream(chunks)).await;
    assert_eq!(slow_body, (504, "DEADLINE_EXCEEDED".into(), limit), "a body still arriving");
}

async fn send_chat(chats: &mut ChatServiceClient<Channel>, who: &User, channel_id: &str, text: &str) -> String {
    let request = pb::CreateChatRequest { channel_id: channel_id.into(), text: text.into(), ..Default::default() };
    chats.create_chat(authed(&who.token, request)).await.expect("send").into_inner().chat.expect("chat").chat_id
}

async fn found(chats: &mut ChatServiceClient<Channel>, who: &User, text: &str) -> Vec<String> {
    let request = pb::SearchChatsRequest { query: text.into(), ..Default::default() };
    let page = chats.search_chats(authed(&who.token, request)).await.expect("search").into_inner();
    page.hits.into_iter().map(|h| h.chat.expect("chat").chat_id).collect()
}

/// The search commits this process made (the metrics recorder is the process's).
async fn commits(app: &TestApp) -> f64 {
    let (_, metrics) = raw::http(app.metrics_addr, "GET", "/metrics", &[]).await;
    counter(&metrics, "chatmesh_search_commits_total")
}

/// Polls the search status until `done` holds of it; returns that status.
async fn status_until(
    app: &TestApp,
    done: impl Fn(&pb::GetSearchStatusResponse) -> bool,
) -> pb::GetSearchStatusResponse {
    let started = Instant::now();
    loop {
        let status = app.search_status().await;
        if done(&status) {
            return status;
        }
        assert!(started.elapsed() < WAIT, "the index never got there: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_trails_sends_by_one_commit_which_falls_due_by_time_or_by_count() {
    let documented = documented_limit("search results trail sends by (a commit)");
    assert!(documented.starts_with("≤ 500 ms, or 10,000 changes"), "{documented}");
    let defaults = Config::default().search;
    assert_eq!((defaults.commit_interval_ms, defaults.commit_batch), (500, 10_000));

    // by time, at the default interval: with a batch never reached, the interval alone commits
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path().to_owned());
    config.search.commit_interval_ms = defaults.commit_interval_ms;
    config.search.commit_batch = 1_000_000;
    let app = TestApp::spawn_with(config).await;
    let alice = app.user("alice").await;
    let channel = app.group(&alice, ChannelVisibility::Private, &[]).await.channel_id;
    let mut chats = app.chats().await;
    let chat = send_chat(&mut chats, &alice, &channel, "narwhal by time").await;
    status_until(&app, |s| s.lag_events == 0 && s.documents == 1).await;
    // why: a build from the store at start-up also commits, but is no commit of the indexer's
    let by_time = commits(&app).await;
    assert!(by_time >= 1.0, "the indexer committed");
    assert_eq!(found(&mut chats, &alice, "narwhal").await, vec![chat]);
    drop(app);

    // by count (a smaller batch, the mechanism being the point): with an interval never
    // reached, the index trails by fewer changes than a batch once it has read them all
    let batch = 4;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path().to_owned());
    config.search.commit_interval_ms = 3_600_000;
    config.search.commit_batch = batch;
    let app = TestApp::spawn_with(config).await;
    let alice = app.user("alice").await;
    let channel = app.group(&alice, ChannelVisibility::Private, &[]).await.channel_id;
    let mut chats = app.chats().await;
    let mut sent = Vec::new();
    for i in 0..2 * batch {
        sent.push(send_chat(&mut chats, &alice, &channel, &format!("walrus {i}")).await);
    }
    let status = status_until(&app, |s| s.lag_events < batch as i64).await;
    assert!(commits(&app).await > by_time, "the indexer committed");
    assert!(status.documents >= batch as i64, "a batch of chats was committed: {status:?}");
    assert!(found(&mut chats, &alice, "walrus").await.contains(&sent[0]), "the first chat is searchable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_connection_holds_at_most_256_streams_and_refuses_the_next() {
    let app = TestApp::spawn().await;
    let (mut connection, settings) = h2::Connection::open(app.grpc_addr).await;
    assert!(settings.contains(&(h2::SETTINGS_MAX_CONCURRENT_STREAMS, 256)), "advertised: {settings:?}");

    // health watches stay open for as long as the client keeps them: 257 at once
    const WATCH: &str = "/grpc.health.v1.Health/Watch";
    let streams: Vec<u32> = (0..257).map(|i| 1 + 2 * i).collect();
    for &stream in &streams {
        connection.grpc_call(stream, WATCH, &[]).await;
    }
    let mut watching = BTreeSet::new();
    // the first reset of each stream: (stream, error code)
    let mut resets = BTreeMap::new();
    while watching.len() < 256 || resets.is_empty() {
        let frame = tokio::time::timeout(WAIT, connection.read()).await.expect("frames").expect("the connection stays");
        match frame.kind {
            h2::DATA => {
                watching.insert(frame.stream);
            }
            h2::RST_STREAM => {
                let code = u32::from_be_bytes(frame.payload[..4].try_into().unwrap());
                resets.entry(frame.stream).or_insert(code);
            }
            h2::HEADERS => assert_eq!(frame.flags & h2::END_STREAM, 0, "stream {} ended at once", frame.stream),
            _ => {}
        }
    }
    assert_eq!(watching, streams[..256].iter().copied().collect(), "the first 256 are served");
    assert_eq!(resets, BTreeMap::from([(streams[256], h2::REFUSED_STREAM)]), "the 257th is refused");

    // the bound is on streams open at once: one cancelled, the next is served
    connection.send(h2::RST_STREAM, 0, streams[0], &h2::CANCEL.to_be_bytes()).await;
    let next = streams[256] + 2;
    connection.grpc_call(next, WATCH, &[]).await;
    loop {
        let frame = tokio::time::timeout(WAIT, connection.read()).await.expect("frames").expect("the connection stays");
        assert!(!(frame.kind == h2::RST_STREAM && frame.stream == next), "refused after a place was freed");
        if frame.kind == h2::DATA && frame.stream == next {
            break;
        }
    }
    assert_eq!(documented_limit("HTTP/2 streams per connection"), "256");
    assert_eq!(Config::default().grpc.max_concurrent_streams, 256);
    assert_eq!(test_config(Default::default()).grpc.max_concurrent_streams, 256, "the tests run with the default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_throttled_at_ten_a_minute_per_account_by_default() {
    let documented = documented_limit("failed logins per account from one client address");
    assert!(documented.starts_with("10/min, then 429 / RESOURCE_EXHAUSTED with Retry-After"), "{documented}");
    let per_minute = Config::default().limits.login_per_minute_per_account;
    assert_eq!(per_minute, 10);
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path().to_owned());
    assert_eq!(config.limits.login_per_minute_per_account, per_minute, "the tests run with the default");
    let app = TestApp::spawn_with(config).await;
    let create = user::CreateUserRequest {
        email: "ada@example.com".into(),
        password: "correct horse battery".into(),
        name: "Ada".into(),
        username: String::new(),
    };
    app.users().await.create_user(create).await.expect("ada registers");
    let retry_after = |value: Option<&str>| -> u64 { value.and_then(|v| v.parse().ok()).expect("a Retry-After") };

    // why: the throttle reads the machine's clock and gives one attempt back every 6 s; the
    // bound allows those, so a slow machine cannot fail it
    let refill = Duration::from_secs(60) / per_minute;
    let started = Instant::now();
    let allowance = || u64::from(per_minute) + (started.elapsed().as_secs_f64() / refill.as_secs_f64()) as u64;
    let mut answered: u64 = 0;
    let throttled = loop {
        match app.login("ada@example.com", "wrong password").await {
            Err(status) if status.code() == Code::Unauthenticated => answered += 1,
            Err(status) if status.code() == Code::ResourceExhausted => break status,
            other => panic!("a wrong password: {other:?}"),
        }
        assert!(answered <= allowance(), "{answered} attempts answered in {:?}", started.elapsed());
    };
    assert!(answered >= u64::from(per_minute), "ten attempts a minute are answered, got {answered}");
    let wait = retry_after(throttled.metadata().get("retry-after").and_then(|v| v.to_str().ok()));
    assert!((1..=refill.as_secs()).contains(&wait), "Retry-After {wait} s: one attempt comes back every 6 s");
    // REST shares the account's allowance: 429 with Retry-After
    let body = json!({"email": "ada@example.com", "password": "wrong password"}).to_string();
    let headers = loop {
        let (status, headers, _) = raw::http_with_body(app.rest_addr, "POST", "/api/v1/auth/login", &[], &body).await;
        match status {
            401 => answered += 1,
            429 => break headers,
            other => panic!("a wrong password over REST: {other}"),
        }
        assert!(answered <= allowance(), "{answered} attempts answered in {:?}", started.elapsed());
    };
    let wait = retry_after(headers.lines().find_map(|l| l.strip_prefix("retry-after:")).map(str::trim));
    assert!((1..=refill.as_secs()).contains(&wait), "Retry-After {wait} s");
    // another account is not slowed
    app.register("bob@example.com").await;
    println!("login throttle: {answered} attempts answered, then 429 with Retry-After {wait} s");
}

/// The S3 media config against moto (tests/with-s3.sh), or `None` (skipped) outside CI.
fn s3_config(dir: &std::path::Path) -> Option<Config> {
    let Ok(endpoint) = std::env::var("CHATMESH_TEST_S3_ENDPOINT") else {
        assert!(std::env::var_os("CI").is_none(), "CI runs the S3 tests: run them under tests/with-s3.sh");
        println!("skipped: CHATMESH_TEST_S3_ENDPOINT is not set (tests/with-s3.sh starts moto's S3 server)");
        return None;
    };
    let mut config = test_config(dir.to_owned());
    config.media.backend = MediaBackend::S3;
    config.media.s3_endpoint = endpoint;
    config.media.s3_allow_http = true;
    let unique = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    config.media.s3_bucket = format!("chatmesh-sweep-{}-{unique}", std::process::id());
    Some(config)
}

/// The uploads whose objects the bucket holds, staged (`uploads/`) or attached (`attached/`)
/// (moto lists a bucket for unsigned requests).
async fn stored(config: &Config) -> BTreeSet<String> {
    let url = format!("{}/{}?list-type=2", config.media.s3_endpoint, config.media.s3_bucket);
    let response = reqwest::get(url).await.expect("moto answers");
    assert_eq!(response.status().as_u16(), 200, "the bucket is listed");
    let listing = response.text().await.expect("a listing");
    assert!(listing.contains("<IsTruncated>false</IsTruncated>"), "one page: {listing}");
    let keys = listing.split("<Key>").skip(1).filter_map(|k| k.split_once("</Key>")).map(|(key, _)| key);
    keys.filter_map(|key| key.strip_prefix("uploads/").or_else(|| key.strip_prefix("attached/")))
        .map(str::to_owned)
        .collect()
}

/// Polls until the upload's object is gone; returns what the bucket still holds.
async fn reclaimed(config: &Config, upload_id: &str) -> BTreeSet<String> {
    let started = Instant::now();
    loop {
        let stored = stored(config).await;
        if !stored.contains(upload_id) {
            return stored;
        }
        assert!(started.elapsed() < WAIT, "the sweeper never reclaimed upload {upload_id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn attach(
    chats: &mut ChatServiceClient<Channel>,
    who: &User,
    channel_id: &str,
    upload_id: &str,
) -> Result<pb::Chat, tonic::Status> {
    let request = pb::CreateChatRequest {
        channel_id: channel_id.into(),
        text: "file".into(),
        attachment_upload_ids: vec![upload_id.into()],
        ..Default::default()
    };
    chats.create_chat(authed(&who.token, request)).await.map(|r| r.into_inner().chat.expect("chat"))
}

async fn download(
    chats: &mut ChatServiceClient<Channel>,
    who: &User,
    upload_id: &str,
) -> Result<Vec<u8>, tonic::Status> {
    let request = pb::GetAttachmentUrlRequest { upload_id: upload_id.into() };
    let url = chats.get_attachment_url(authed(&who.token, request)).await?.into_inner().download_url;
    let response = reqwest::get(url).await.expect("the download URL answers");
    assert_eq!(response.status().as_u16(), 200);
    Ok(response.bytes().await.expect("a body").to_vec())
}

fn counter(metrics: &str, name: &str) -> f64 {
    metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_abandoned_and_retracted_uploads_are_reclaimed_and_attached_ones_kept() {
    let documented = documented_limit("uploads never attached are deleted after");
    assert!(documented.starts_with("24 h (checked every 60 s)"), "{documented}");
    let defaults = Config::default().media;
    assert_eq!((defaults.abandoned_after_secs, defaults.sweep_interval_secs), (24 * 3600, 60));
    let dir = tempfile::tempdir().unwrap();
    let Some(mut config) = s3_config(dir.path()) else { return };
    let url = format!("{}/{}", config.media.s3_endpoint, config.media.s3_bucket);
    let created = reqwest::Client::new().put(url).send().await.expect("moto answers").status();
    assert!(created.is_success(), "bucket created: {created}");
    config.media.sweep_interval_secs = 1;
    let app = TestApp::spawn_with(config.clone()).await;
    let alice = app.user("alice").await;
    let channel = app.group(&alice, ChannelVisibility::Private, &[]).await.channel_id;
    let mut chats = app.chats().await;
    let mut uploads = Vec::new();
    for name in ["abandoned.txt", "kept.txt", "retracted.txt"] {
        let request = pb::CreateUploadRequest {
            channel_id: channel.clone(),
            file_name: name.into(),
            content_type: "text/plain".into(),
            size_bytes: 4,
        };
        let upload = chats.create_upload(authed(&alice.token, request)).await.expect("an upload").into_inner();
        let put = reqwest::Client::new().put(&upload.upload_url).header("content-type", "text/plain").body("data");
        assert_eq!(put.send().await.expect("moto answers").status().as_u16(), 200, "{name} uploaded");
        uploads.push(upload.upload_id);
    }
    assert_eq!(stored(&config).await, uploads.iter().cloned().collect(), "every upload is stored");
    let [abandoned, kept, retracted] = <[String; 3]>::try_from(uploads).unwrap();
    attach(&mut chats, &alice, &channel, &kept).await.expect("attached");
    let doomed = attach(&mut chats, &alice, &channel, &retracted).await.expect("attached");
    let retract = pb::RetractChatsRequest { chat_ids: vec![doomed.chat_id] };
    chats.retract_chats(authed(&alice.token, retract)).await.expect("retracted");

    // a retracted chat's upload is reclaimed at the next sweep (every second here); in that same
    // sweep an upload younger than the abandonment age (the default 24 h) was kept
    let left = reclaimed(&config, &retracted).await;
    assert_eq!(left, BTreeSet::from([abandoned.clone(), kept.clone()]), "not abandoned yet, and attached");
    assert_eq!(download(&mut chats, &alice, &retracted).await.unwrap_err().code(), Code::NotFound);

    // why: a restart with no abandonment age makes the upload abandoned without waiting a day
    config.media.abandoned_after_secs = 0;
    let app = app.restart_with(config.clone()).await;
    let mut chats = app.chats().await;
    let left = reclaimed(&config, &abandoned).await;
    assert_eq!(left, BTreeSet::from([kept.clone()]), "an attached upload is kept");
    // why: the sweeper forgets the record just after deleting the object, so attaching may
    // still find it expired; once forgotten, it is no upload at all
    let started = Instant::now();
    loop {
        let err = attach(&mut chats, &alice, &channel, &abandoned).await.unwrap_err();
        let (_, body) = chatmesh_platform::error::http_error_body(&err);
        match (err.code(), body["details"][0]["reason"].as_str()) {
            (Code::NotFound, Some("UPLOAD_NOT_FOUND")) => break,
            (Code::FailedPrecondition, Some("UPLOAD_EXPIRED")) => {}
            _ => panic!("an abandoned upload cannot be attached: {err:?}"),
        }
        assert!(started.elapsed() < WAIT, "the sweeper never forgets the abandoned upload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(download(&mut chats, &alice, &kept).await.expect("a download URL"), b"data");
    let (_, metrics) = raw::http(app.metrics_addr, "GET", "/metrics", &[]).await;
    assert_eq!(counter(&metrics, "chatmesh_media_reclaimed_uploads_total"), 2.0, "{metrics}");
    assert_eq!(counter(&metrics, "chatmesh_media_reclaimed_bytes_total"), 8.0, "{metrics}");
}
