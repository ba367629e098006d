//! Abuse from the outside: forged and misused tokens on every surface (every RPC of every
//! gRPC service, every REST route, the WebSocket handshake), fields a client must not set, and
//! what responses must never carry.

use chatmesh_api::user::v1::{GetUserRequest, UpdateMeRequest};
use chatmesh_platform::config::AuthConfig;
use chatmesh_tests::{
    TestApp, authed,
    forge::{self, Known},
};
use tonic::Code;

/// Calls `path` with an empty message and `token`; the status code it answers.
async fn call(channel: tonic::transport::Channel, path: &str, token: &str) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    if grpc.ready().await.is_err() {
        return Code::Unavailable;
    }
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path = path.parse().expect("a method path");
    match grpc.unary(authed(token, ()), path, codec).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// Every RPC of the contracts as a path, and whether its service is internal.
fn every_rpc() -> Vec<(String, bool)> {
    let pool = chatmesh_api::descriptor_pool();
    pool.services()
        .filter(|s| s.full_name().starts_with("chatmesh."))
        .flat_map(|s| {
            let (internal, service) = (s.name().ends_with("InternalService"), s.full_name().to_owned());
            s.methods().map(|m| (format!("/{service}/{}", m.name()), internal)).collect::<Vec<_>>()
        })
        .collect()
}

async fn known(app: &TestApp) -> Known {
    let (user_id, tokens) = app.register("target@example.com").await;
    let (kid, der) = app.signing_key("user");
    let (service_kid, service_der) = app.signing_key("service");
    Known {
        user_id,
        session_id: tokens.session_id.clone(),
        kid,
        der,
        service_kid,
        service_der,
        refresh_token: tokens.refresh_token.clone(),
        access_token: tokens.access_token.clone(),
        leeway_secs: AuthConfig::default().leeway_secs,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_are_refused_on_every_surface() {
    let app = TestApp::spawn().await;
    let known = known(&app).await;
    let forged = forge::forged(&known);
    let channel = app.channel().await;
    let open: Vec<&str> = chatmesh_platform::grpc::OPEN_METHODS.to_vec();
    let rpcs: Vec<(String, bool)> =
        every_rpc().into_iter().filter(|(path, _)| !open.contains(&path.as_str())).collect();
    let routes: Vec<_> = chatmesh_gateway_rest::routes().into_iter().filter(|r| !r.open).collect();
    assert!(rpcs.len() >= 40 && routes.len() >= 30, "{} rpcs, {} routes", rpcs.len(), routes.len());

    let (mut tried, mut accepted) = (0, Vec::new());
    for (what, token) in &forged {
        // gRPC: every RPC of every service, public and internal
        for (path, internal) in &rpcs {
            if *internal && *what == forge::SERVICE_ON_PUBLIC {
                continue; // a service token is the right one there
            }
            tried += 1;
            let code = call(channel.clone(), path, token).await;
            if code != Code::Unauthenticated {
                accepted.push(format!("gRPC {path} with {what}: {code:?}"));
            }
        }
        // REST: every route that needs a token, at the edge
        for route in &routes {
            tried += 1;
            let path = route.path.replace(['{', '}'], "").replace("_id", "-1");
            let bearer = format!("Bearer {token}");
            let (status, _) =
                chatmesh_tests::raw::http(app.rest_addr, route.method.as_str(), &path, &[("authorization", &bearer)])
                    .await;
            if status != 401 {
                accepted.push(format!("REST {} {path} with {what}: {status}", route.method));
            }
        }
        // WebSocket: refused before the upgrade
        tried += 1;
        let url = format!("ws://{}/?token={}", app.ws_addr, token);
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) if response.status() == 401 => {}
            Err(other) => accepted.push(format!("WebSocket with {what}: {other}")),
            Ok(_) => accepted.push(format!("WebSocket with {what}: upgraded")),
        }
    }
    println!("forged tokens: {} kinds, accepted {} of {tried} attempts", forged.len(), accepted.len());
    assert!(accepted.is_empty(), "accepted:\n{}", accepted.join("\n"));

    // a user's real token on an internal RPC: known, but not allowed
    let mut refused = 0;
    for (path, _) in rpcs.iter().filter(|(_, internal)| *internal) {
        assert_eq!(call(channel.clone(), path, &known.access_token).await, Code::PermissionDenied, "{path}");
        refused += 1;
    }
    println!("a user token on {refused} internal rpcs: PERMISSION_DENIED each");
    // and the real token still works, so the refusals above are about the tokens
    assert_eq!(call(channel.clone(), "/chatmesh.user.v1.UserService/GetMe", &known.access_token).await, Code::Ok);
}

#[tokio::test]
async fn clients_cannot_set_ids_owners_or_senders_and_never_see_secrets() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    let rest = |method: &'static str, path: String, body: serde_json::Value, token: String| {
        let addr = app.rest_addr;
        async move {
            let bearer = format!("Bearer {token}");
            let headers = [("authorization", bearer.as_str()), ("content-type", "application/json")];
            let (status, _, text) =
                chatmesh_tests::raw::http_with_body(addr, method, &path, &headers, &body.to_string()).await;
            (status, serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default())
        }
    };

    // server-set fields in a write: refused (the JSON mapping knows no such field) or ignored
    let channel = app.group(&ada, chatmesh_api::channel::v1::ChannelVisibility::Private, &[&bob]).await;
    let forged_chat = serde_json::json!({
        "channelId": channel.channel_id, "text": "hello", "senderId": bob.id, "chatId": "1", "createdAt": "2001-01-01T00:00:00Z"
    });
    let (status, body) = rest("POST", "/api/v1/chats".into(), forged_chat, ada.token.clone()).await;
    assert_eq!(status, 400, "CreateChat with server fields: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("senderId") || message.contains("chatId") || message.contains("createdAt"), "{body}");
    let forged_channel =
        serde_json::json!({ "kind": "CHANNEL_KIND_GROUP", "name": "mine", "ownerId": bob.id, "channelId": "7" });
    let (status, body) = rest("POST", "/api/v1/channels".into(), forged_channel, ada.token.clone()).await;
    assert_eq!(status, 400, "CreateChannel with server fields: {body}");
    // over gRPC the fields do not exist in the request messages at all: nothing to set
    let role_grab = serde_json::json!({ "role": "MEMBER_ROLE_OWNER" });
    let (status, _) = rest(
        "PATCH",
        format!("/api/v1/channels/{}/members/{}", channel.channel_id, bob.id),
        role_grab,
        bob.token.clone(),
    )
    .await;
    assert_eq!(status, 403, "a member cannot promote themself");
    let email_grab = serde_json::json!({ "name": "Ada", "email": "bob@example.com", "userId": bob.id });
    let (status, body) = rest("PATCH", "/api/v1/users/me".into(), email_grab, ada.token.clone()).await;
    assert_eq!(status, 400, "UpdateMe with server fields: {body}");
    let me = app.users().await.get_me(authed(&ada.token, chatmesh_api::user::v1::GetMeRequest {})).await.unwrap();
    let me = me.into_inner().user.unwrap();
    assert_eq!((me.user_id.as_str(), me.email.as_str()), (ada.id.as_str(), "ada@example.com"), "nothing taken over");

    // responses: no password hash anywhere, no other user's email, no other session's tokens
    let other = app
        .users()
        .await
        .get_user(authed(&ada.token, GetUserRequest { user_id: bob.id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(other.email, "", "another user's email is never shown");
    app.users()
        .await
        .update_me(authed(&ada.token, UpdateMeRequest { name: "Ada L".into(), ..Default::default() }))
        .await
        .expect("a profile update, so its answer is among those checked");
    for (path, token) in [
        ("/api/v1/users/me".to_owned(), &ada.token),
        (format!("/api/v1/users/{}", bob.id), &ada.token),
        (format!("/api/v1/channels/{}/members", channel.channel_id), &bob.token),
    ] {
        let bearer = format!("Bearer {token}");
        let (status, text) =
            chatmesh_tests::raw::http(app.rest_addr, "GET", &path, &[("authorization", &bearer)]).await;
        assert_eq!(status, 200, "{path}: {text}");
        for secret in ["argon2", "password", "refresh", "bob@example.com"] {
            assert!(
                !text.contains(secret) || (secret == "bob@example.com" && token == &bob.token),
                "{path} shows {secret}: {text}"
            );
        }
    }
}

/// The value of a counter in a Prometheus text page (0 when absent).
fn counter(metrics: &str, name: &str) -> u64 {
    metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).map_or(0, |v| v as u64)
}

/// How long a test waits for something that should happen at once: long enough for any
/// machine, so only a hang runs into it.
const HANG: std::time::Duration = std::time::Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_abuse_is_slowed_without_locking_the_owner_out_or_telling_accounts_apart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = chatmesh_tests::test_config(dir.path().to_owned());
    config.limits.login_per_minute_per_account = 60; // one attempt back every second
    let app = TestApp::spawn_with(config).await;
    app.register("ada@example.com").await;
    let login = |email: &'static str, password: &'static str| {
        let addr = app.rest_addr;
        async move {
            let body = serde_json::json!({ "email": email, "password": password }).to_string();
            chatmesh_tests::raw::http_with_body(addr, "POST", "/api/v1/auth/login", &[], &body).await
        }
    };
    let verifications = || async {
        let (_, page) = chatmesh_tests::raw::http(app.metrics_addr, "GET", "/metrics", &[]).await;
        counter(&page, "chatmesh_password_verifications_total")
    };

    // an unknown email and a wrong password: the same answer, one argon2 verification each
    let before = verifications().await;
    let (unknown_status, _, unknown_body) = login("nobody@example.com", "wrong password").await;
    let after_unknown = verifications().await;
    let (wrong_status, _, wrong_body) = login("ada@example.com", "wrong password").await;
    let after_wrong = verifications().await;
    assert_eq!((unknown_status, unknown_body.as_str()), (wrong_status, wrong_body.as_str()));
    assert_eq!((after_unknown - before, after_wrong - after_unknown), (1, 1), "one verification each");

    // a burst of wrong passwords: 429 with Retry-After, and no hashing once throttled
    let mut throttled = None;
    for _ in 0..80 {
        let (status, headers, _) = login("ada@example.com", "wrong password").await;
        if status == 429 {
            throttled = Some(headers);
            break;
        }
        assert_eq!(status, 401);
    }
    let headers = throttled.expect("the burst was throttled");
    let retry_after: u64 = headers
        .lines()
        .find_map(|l| l.strip_prefix("retry-after:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a Retry-After header");
    let hashed = verifications().await;
    assert_eq!(login("ada@example.com", "wrong password").await.0, 429);
    assert_eq!(verifications().await, hashed, "a throttled attempt costs no hashing");

    // the owner is slowed, not locked out: after Retry-After the right password works
    // why: not a wait for something to happen but the promise under test: a client that waits
    // the advertised seconds (rounded up, read from the server's own clock) is let in
    tokio::time::sleep(std::time::Duration::from_secs(retry_after.max(1))).await;
    let (status, _, body) = login("ada@example.com", "correct horse battery").await;
    assert_eq!(status, 200, "{body}");
    println!("login abuse: throttled after the burst, Retry-After {retry_after} s, owner back in after it");
}

/// Sends a ping and waits for its pong.
async fn ping_pong(socket: &mut chatmesh_tests::ws::Socket) {
    chatmesh_tests::ws::send(socket, serde_json::json!({ "event": "ping", "data": {} })).await;
    assert!(chatmesh_tests::ws::until(socket, "pong", HANG).await.is_some(), "a pong");
}

// why: no latency figure (that is the benchmarks' job): the proof is an order of events. In
// each round every hashing permit is held by a login known to be hashing, and pongs come
// back before any of those logins is answered, so they did not wait for a hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_flowing_during_a_burst_of_logins() {
    const ROUNDS: usize = 3;
    const PINGS: usize = 3;
    // the product's OWASP memory cost with four times its passes, so that a hash outlasts a
    // few pongs by far even on a loaded machine (the order shown does not depend on the cost),
    // hashing on as many threads as this runtime has workers: were hashes run on the workers,
    // nothing else could run while they do
    let dir = tempfile::tempdir().unwrap();
    let mut config = chatmesh_tests::test_config(dir.path().to_owned());
    let owasp = chatmesh_platform::config::PasswordConfig::default();
    config.password = chatmesh_platform::config::PasswordConfig {
        iterations: 4 * owasp.iterations,
        max_concurrent_hashes: 2,
        ..owasp
    };
    config.limits.login_per_minute_per_account = 1000;
    let hashing = config.password.max_concurrent_hashes;
    let app = TestApp::spawn_with(config).await;
    let ada = app.user("ada").await;
    let (mut socket, _) = chatmesh_tests::ws::connect(app.ws_addr, &ada.token, "").await;
    let verifications = || async {
        let (_, page) = chatmesh_tests::raw::http(app.metrics_addr, "GET", "/metrics", &[]).await;
        counter(&page, "chatmesh_password_verifications_total")
    };
    // why: connected beforehand, so the logins of a burst arrive together
    let users = app.users().await;
    for round in 0..ROUNDS {
        let before = verifications().await;
        // a burst: one login per permit, and as many again waiting for one
        let burst: Vec<_> = (0..2 * hashing)
            .map(|i| {
                let mut users = users.clone();
                tokio::spawn(async move {
                    let email = if i % 2 == 0 { "ada@example.com" } else { "nobody@example.com" };
                    let login = chatmesh_api::user::v1::LoginRequest {
                        email: email.into(),
                        password: "wrong".into(),
                        restore: false,
                    };
                    let refused = users.login(login).await.expect_err("a wrong password");
                    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
                })
            })
            .collect();
        // why: a login counts its verification before it queues for a permit; once `hashing`
        // have counted, every permit is held (none of them answered yet, checked below)
        let deadline = tokio::time::Instant::now() + HANG;
        while verifications().await < before + hashing as u64 {
            assert!(tokio::time::Instant::now() < deadline, "round {round}: the logins never began verifying");
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        for _ in 0..PINGS {
            ping_pong(&mut socket).await;
        }
        let answered = burst.iter().filter(|login| login.is_finished()).count();
        assert_eq!(answered, 0, "round {round}: a login was answered before {PINGS} pongs came back");
        for login in burst {
            login.await.unwrap();
        }
    }
    println!("heartbeats: {ROUNDS} rounds of {PINGS} pongs, each while {hashing} logins hashed");
}

#[tokio::test]
async fn a_user_holds_a_bounded_number_of_websocket_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = chatmesh_tests::test_config(dir.path().to_owned());
    config.ws.max_sessions_per_user = 3;
    let app = TestApp::spawn_with(config).await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(chatmesh_tests::ws::connect(app.ws_addr, &ada.token, "").await.0);
    }
    let url = format!("ws://{}/?token={}", app.ws_addr, ada.token);
    match tokio_tungstenite::connect_async(url.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 429),
        other => panic!("a fourth session: {:?}", other.map(|_| ())),
    }
    // other users are not affected, and a closed session frees its place (once the server has
    // seen the close: asked again until it has)
    drop(chatmesh_tests::ws::connect(app.ws_addr, &bob.token, "").await);
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        match tokio_tungstenite::connect_async(url.clone()).await {
            Ok(_) => break,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) if response.status() == 429 => {
                assert!(tokio::time::Instant::now() < deadline, "the freed place was not given back");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("a session in the freed place: {e}"),
        }
    }
}

/// Ada's calls on the three surfaces, each answered as admitted or refused by the rate limit.
struct Surfaces {
    rest_addr: std::net::SocketAddr,
    users: chatmesh_api::user::v1::user_service_client::UserServiceClient<tonic::transport::Channel>,
    socket: chatmesh_tests::ws::Socket,
    token: String,
    /// A channel Ada is not in: her acks there are calls the limit admits and the chat service
    /// then refuses with NOT_FOUND, so every one of them is answered and can be counted.
    elsewhere: String,
    rest_calls: u32,
}

impl Surfaces {
    const NAMES: [&'static str; 3] = ["gRPC", "REST", "WebSocket"];

    /// One call on surface `which` (an index into [`Self::NAMES`]); whether it was admitted.
    async fn call(&mut self, which: usize) -> bool {
        match which {
            0 => {
                let request = authed(&self.token, chatmesh_api::user::v1::GetMeRequest {});
                match self.users.get_me(request).await {
                    Ok(_) => true,
                    Err(status) => {
                        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                        false
                    }
                }
            }
            1 => {
                // why: a new client address each time: the limit is the token's user's, never a header's
                self.rest_calls += 1;
                let spoof = format!("10.0.{}.{}", self.rest_calls / 250, self.rest_calls % 250 + 1);
                let bearer = format!("Bearer {}", self.token);
                let headers = [("authorization", bearer.as_str()), ("x-forwarded-for", &spoof), ("x-real-ip", &spoof)];
                let (status, headers, body) =
                    chatmesh_tests::raw::http_with_body(self.rest_addr, "GET", "/api/v1/users/me", &headers, "").await;
                match status {
                    200 => true,
                    429 => {
                        assert!(headers.contains("retry-after:"), "{headers}");
                        false
                    }
                    other => panic!("REST: {other} {body}"),
                }
            }
            _ => {
                let ack = serde_json::json!({
                    "event": "ack", "data": { "channelId": self.elsewhere, "createdAt": "2020-01-01T00:00:00Z" }
                });
                chatmesh_tests::ws::send(&mut self.socket, ack).await;
                let frames = chatmesh_tests::ws::until(&mut self.socket, "error", HANG).await;
                let error = frames.expect("the ack's answer").pop().unwrap();
                match error["data"]["code"].as_str() {
                    Some("NOT_FOUND") => true,
                    Some("RESOURCE_EXHAUSTED") => false,
                    _ => panic!("WebSocket: {error}"),
                }
            }
        }
    }
}

// why: no clock is read. The allowance refills by one call a second; the calls admitted are
// counted, against bounds that leave room for 20 s of refills, which a surface with an
// allowance of its own (or none) passes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rate_limit_per_user_spans_rest_grpc_and_websocket_whatever_the_headers() {
    const BURST: u32 = 60;
    let dir = tempfile::tempdir().unwrap();
    let mut config = chatmesh_tests::test_config(dir.path().to_owned());
    config.limits.user_calls_per_sec = 1;
    config.limits.user_calls_burst = BURST;
    let app = TestApp::spawn_with(config).await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    // set up by bob, so ada's allowance is untouched
    let elsewhere = app.group(&bob, chatmesh_api::channel::v1::ChannelVisibility::Private, &[]).await.channel_id;
    let (socket, _) = chatmesh_tests::ws::connect(app.ws_addr, &ada.token, "").await;
    let users = app.users().await;
    let token = ada.token.clone();
    let mut surfaces = Surfaces { rest_addr: app.rest_addr, users, socket, token, elsewhere, rest_calls: 0 };

    // calls on each surface in turn spend the one allowance
    let mut spent = 0;
    while surfaces.call(spent as usize % 3).await {
        spent += 1;
        assert!(spent < BURST + BURST / 3, "the surfaces drew on more than one allowance");
    }
    // then every surface is refused, after at most the few calls refilled meanwhile
    let mut refilled = 0;
    for (which, name) in Surfaces::NAMES.iter().enumerate() {
        let mut admitted = 0;
        while surfaces.call(which).await {
            admitted += 1;
            assert!(admitted < BURST / 3, "{name} kept an allowance of its own");
        }
        refilled += admitted;
    }
    // another user is not affected
    let request = authed(&bob.token, chatmesh_api::user::v1::GetMeRequest {});
    app.users().await.get_me(request).await.expect("bob's allowance is his own");
    println!("rate limit: {spent} calls over three surfaces, then each refused ({refilled} refilled meanwhile)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_and_stalled_handshakes_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = chatmesh_tests::test_config(dir.path().to_owned());
    config.ws.handshake_timeout_secs = 1;
    let max = config.grpc.max_message_bytes;
    let app = TestApp::spawn_with(config).await;

    // a gRPC message over the decode limit is refused before any handler reads it: a valid
    // registration whose size comes from an unknown field (which a decoder would skip)
    let huge = vec![b'x'; max + 1024];
    let body = chatmesh_tests::raw::proto_strings(&[
        (1, b"big@example.com"),
        (2, b"correct horse battery"),
        (3, b"Big"),
        (15, &huge),
    ]);
    let refused = chatmesh_tests::raw::unary_raw(app.channel().await, "/chatmesh.user.v1.UserService/CreateUser", body)
        .await
        .expect_err("over the limit");
    assert!(
        matches!(refused.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{}: {}",
        refused.code(),
        refused.message()
    );
    // nothing was created: the same registration, at a normal size, still succeeds
    let (user_id, _) = app.register("big@example.com").await;
    assert!(!user_id.is_empty());

    // a WebSocket client that connects and never finishes its handshake is dropped (HANG only
    // ends the wait should the server never do it)
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stalled = tokio::net::TcpStream::connect(app.ws_addr).await.unwrap();
    stalled.write_all(b"GET /?token=x HTTP/1.1\r\nHost: chat\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(HANG, stalled.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the server closed the stalled connection: {read:?}");
    println!("a stalled handshake was closed; a {} byte message refused: {}", max + 1024, refused.code());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reader_cannot_send_typing_notices_on_any_surface() {
    use chatmesh_api::{
        channel::v1::{ChannelKind, ChannelVisibility, CreateChannelRequest, CreateMemberRequest},
        dispatcher::v1::{SendTypingRequest, dispatcher_service_client::DispatcherServiceClient},
    };
    let app = TestApp::spawn().await;
    let owner = app.user("owner").await;
    let reader = app.user("reader").await;
    let broadcast = CreateChannelRequest {
        kind: ChannelKind::Broadcast as i32,
        visibility: ChannelVisibility::Public as i32,
        name: "news".into(),
        ..Default::default()
    };
    let id = app.create_channel(&owner, broadcast).await;
    let join = CreateMemberRequest { channel_id: id.clone(), user_id: String::new() };
    app.channels().await.create_member(authed(&reader.token, join)).await.expect("a reader joins");
    let rest = |token: &str| {
        let (addr, bearer, path) = (app.rest_addr, format!("Bearer {token}"), format!("/api/v1/channels/{id}/typing"));
        async move {
            let headers = [("authorization", bearer.as_str()), ("content-type", "application/json")];
            let (status, _, body) = chatmesh_tests::raw::http_with_body(addr, "POST", &path, &headers, "{}").await;
            (status, serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default())
        }
    };
    let mut dispatcher = DispatcherServiceClient::new(app.channel().await);
    let typing = |token: &str| authed(token, SendTypingRequest { channel_id: id.clone() });

    // the reader, on each surface: refused as it would be refused a chat
    let (status, body) = rest(&reader.token).await;
    assert_eq!((status, body["status"].as_str()), (403, Some("PERMISSION_DENIED")), "REST: {body}");
    let refused = dispatcher.send_typing(typing(&reader.token)).await.expect_err("gRPC: a reader's typing");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let (mut socket, _) = chatmesh_tests::ws::connect(app.ws_addr, &reader.token, "").await;
    let frame = serde_json::json!({ "event": "typing", "data": { "channelId": id } });
    chatmesh_tests::ws::send(&mut socket, frame).await;
    let frames = chatmesh_tests::ws::until(&mut socket, "error", HANG).await.expect("WebSocket: an answer");
    let error = frames.last().unwrap();
    assert_eq!(error["data"]["code"], "PERMISSION_DENIED", "WebSocket: {error}");

    // the owner, who may write there, may type there
    let (status, body) = rest(&owner.token).await;
    assert_eq!(status, 200, "REST: {body}");
    dispatcher.send_typing(typing(&owner.token)).await.expect("gRPC: the owner's typing");
    println!("typing in a broadcast: the reader refused on REST, gRPC and WebSocket; the owner let through");
}

/// Reads what `stream` is sent until the server closes it (`true`), or `HANG` passes (`false`).
async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_stall_before_their_request_are_closed_on_every_listener() {
    use tokio::io::AsyncWriteExt as _;
    let dir = tempfile::tempdir().unwrap();
    let mut config = chatmesh_tests::test_config(dir.path().to_owned());
    config.rest.header_timeout_secs = 1;
    config.grpc.handshake_timeout_secs = 1;
    config.ws.handshake_timeout_secs = 1;
    let app = TestApp::spawn_with(config).await;
    let stalls: [(&str, std::net::SocketAddr, &[u8]); 6] = [
        ("REST, a partial header", app.rest_addr, b"GET /healthz HTTP/1.1\r\nHost: chat\r\nX-Slow: "),
        ("REST, nothing", app.rest_addr, b""),
        ("REST, a partial HTTP/2 preface", app.rest_addr, b"PRI * HTTP/2.0\r\n"),
        ("gRPC, nothing", app.grpc_addr, b""),
        ("gRPC, a partial HTTP/2 preface", app.grpc_addr, b"PRI * HTTP/2.0\r\n"),
        ("WebSocket, a partial header", app.ws_addr, b"GET /?token=x HTTP/1.1\r\nHost: chat\r\n"),
    ];
    let mut stalled = Vec::new();
    for (what, addr, sent) in stalls {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(sent).await.unwrap();
        stalled.push((what, stream));
    }
    for (what, stream) in &mut stalled {
        assert!(closed_by_server(stream).await, "{what}: still open after {HANG:?}");
    }
    // a client that sends its request at once is served as before
    assert_eq!(chatmesh_tests::raw::http(app.rest_addr, "GET", "/healthz", &[]).await.0, 200);
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel().await);
    health.check(tonic_health::pb::HealthCheckRequest::default()).await.expect("a gRPC call");
    println!("stalled connections: {} closed by the server", stalled.len());
}

/// A TCP connection to `addr` from the loopback address `from`.
async fn connect_from(from: [u8; 4], addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    socket.connect(addr).await.expect("connects")
}

/// Whether a request on a new connection from `from` to the listener `which` at `addr` is
/// served: a health check on gRPC, /healthz on REST, an answer to a handshake without a token
/// on WebSocket.
async fn served(which: &str, from: [u8; 4], addr: std::net::SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    if which == "gRPC" {
        let endpoint = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap();
        let Ok(channel) = endpoint.local_address(Some(from.into())).connect().await else { return false };
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        return health.check(tonic_health::pb::HealthCheckRequest::default()).await.is_ok();
    }
    let request = match which {
        "REST" => "GET /healthz HTTP/1.1\r\nhost: chat\r\nconnection: close\r\n\r\n",
        _ => {
            "GET / HTTP/1.1\r\nhost: chat\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
              sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        }
    };
    let mut stream = connect_from(from, addr).await;
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(HANG, stream.read_to_end(&mut answer)).await;
    answer.starts_with(b"HTTP/1.1 ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_a_bounded_number_of_connections_on_each_listener() {
    const CAP: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let mut config = chatmesh_tests::test_config(dir.path().to_owned());
    config.grpc.max_connections_per_source = CAP;
    config.rest.max_connections_per_source = CAP;
    config.ws.max_connections_per_source = CAP;
    // why: the connections held below stay idle for the whole test, which no timeout may cut short
    config.grpc.handshake_timeout_secs = 600;
    config.rest.header_timeout_secs = 600;
    config.ws.handshake_timeout_secs = 600;
    let app = TestApp::spawn_with(config).await;
    for (which, addr) in [("gRPC", app.grpc_addr), ("REST", app.rest_addr), ("WebSocket", app.ws_addr)] {
        // why: accepted in the order they connect, so the first CAP hold every place when the next arrives
        let mut idle = Vec::new();
        for _ in 0..CAP {
            idle.push(connect_from([127, 0, 0, 1], addr).await);
        }
        let mut over = connect_from([127, 0, 0, 1], addr).await;
        assert!(closed_by_server(&mut over).await, "{which}: connection {} from one address was kept", CAP + 1);
        assert!(!served(which, [127, 0, 0, 1], addr).await, "{which}: a request past the cap was served");
        assert!(served(which, [127, 0, 0, 2], addr).await, "{which}: another address has places of its own");
        // a closed connection gives its place back (once the server has seen the close)
        drop(idle.pop());
        let deadline = tokio::time::Instant::now() + HANG;
        while !served(which, [127, 0, 0, 1], addr).await {
            assert!(tokio::time::Instant::now() < deadline, "{which}: the freed place was not given back");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        println!("{which}: {CAP} idle connections from one address, the next closed, a freed place reused");
    }
}

/// The services reflection lists at `addr`, over v1 and v1alpha (which grpcurl 1.8 speaks).
async fn reflected_services(addr: std::net::SocketAddr) -> (Vec<String>, Vec<String>) {
    macro_rules! list {
        ($version:ident) => {{
            use tonic_reflection::pb::$version::{
                ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
                server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            };
            let channel =
                tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
            let ask = |request| ServerReflectionRequest { host: String::new(), message_request: Some(request) };
            let requests = [
                ask(MessageRequest::ListServices(String::new())),
                ask(MessageRequest::FileContainingSymbol("chatmesh.chat.v1.ChatInternalService".into())),
            ];
            let mut client = ServerReflectionClient::new(channel);
            let mut answers =
                client.server_reflection_info(futures::stream::iter(requests)).await.unwrap().into_inner();
            let mut listed = Vec::new();
            loop {
                let answer = match answers.message().await {
                    Ok(Some(answer)) => answer,
                    Ok(None) => break,
                    // a symbol it cannot describe ends the stream
                    Err(status) => {
                        assert_eq!(status.code(), Code::NotFound, "{status:?}");
                        break;
                    }
                };
                match answer.message_response {
                    Some(MessageResponse::ListServicesResponse(list)) => {
                        listed.extend(list.service.into_iter().map(|s| s.name))
                    }
                    // why: a symbol it can describe is as good as listed
                    Some(MessageResponse::FileDescriptorResponse(_)) => listed.push("described: internal".into()),
                    _ => {}
                }
            }
            listed
        }};
    }
    (list!(v1), list!(v1alpha))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_on_the_public_listener_leaves_the_internal_services_out() {
    let internal = |services: &[String]| -> Vec<String> {
        services.iter().filter(|s| s.contains("Internal") || s.contains("internal")).cloned().collect()
    };
    // `chatmesh up`: one listener, serving the mesh's internal calls too
    let app = TestApp::spawn().await;
    for listed in <[Vec<String>; 2]>::from(reflected_services(app.grpc_addr).await) {
        assert!(listed.contains(&"chatmesh.chat.v1.ChatService".to_owned()), "{listed:?}");
        assert_eq!(internal(&listed), Vec::<String>::new(), "listed on the public listener");
    }
    // with an internal listener beside it: there they are all listed
    let dir = tempfile::tempdir().unwrap();
    let mut config = chatmesh_tests::test_config(dir.path().to_owned());
    config.grpc.internal_listen = Some(([127, 0, 0, 1], 0).into());
    let parts = chatmesh_cli::Part::ALL.into_iter().collect();
    let running = chatmesh_cli::start(config, &parts).await.expect("starts");
    let (public, internal_addr) = (running.grpc_addr.unwrap(), running.internal_grpc_addr.unwrap());
    for listed in <[Vec<String>; 2]>::from(reflected_services(public).await) {
        assert_eq!(internal(&listed), Vec::<String>::new(), "listed on the public listener");
    }
    let every_internal = chatmesh_api::descriptor_pool().services().filter(|s| s.name().ends_with("InternalService"));
    let expected = every_internal.count() + 1;
    for listed in <[Vec<String>; 2]>::from(reflected_services(internal_addr).await) {
        assert_eq!(internal(&listed).len(), expected, "every internal service and the described symbol: {listed:?}");
    }
    running.stop().await.expect("a clean stop");
    println!("reflection: internal services listed on the internal listener only");
}
