//! Black-box test harness: starts the real chatmesh process parts on port 0 (keeping the
//! listeners) over a temporary data dir, and hands out real clients.

use std::{collections::BTreeSet, net::SocketAddr, path::PathBuf};

use chatmesh_api::{
    channel::v1::{self as pb_channel, ChannelKind, ChannelVisibility, channel_service_client::ChannelServiceClient},
    chat::v1::{
        self as chat, chat_internal_service_client::ChatInternalServiceClient, chat_service_client::ChatServiceClient,
    },
    feed::v1::feed_service_client::FeedServiceClient,
    user::v1::{self as user, user_service_client::UserServiceClient},
};
use chatmesh_cli::{Part, Running};
use chatmesh_platform::{config::Config, grpc::GrpcChannel};
use tonic::{Request, transport::Channel};

pub mod forge;
pub mod guarantees;
pub mod raw;

/// A running `chatmesh up` on ephemeral ports and a temporary data dir.
pub struct TestApp {
    pub grpc_addr: SocketAddr,
    pub rest_addr: SocketAddr,
    pub ws_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub data_dir: PathBuf,
    running: Option<Running>,
    _dir: Option<tempfile::TempDir>,
}

/// The config tests run with: ephemeral ports, cheaper argon2 (the OWASP defaults are
/// asserted by a unit test) so suites stay quick on two cores.
pub fn test_config(data_dir: PathBuf) -> Config {
    let mut config = Config { data_dir, ..Config::default() };
    config.grpc.listen = ([127, 0, 0, 1], 0).into();
    config.rest.listen = ([127, 0, 0, 1], 0).into();
    config.ws.listen = ([127, 0, 0, 1], 0).into();
    config.metrics.listen = ([127, 0, 0, 1], 0).into();
    // why: tests wait for the index; a short interval keeps them quick.
    config.search.commit_interval_ms = 50;
    config.password.memory_kib = 4096;
    config.password.iterations = 1;
    // why: load tests send thousands of calls per user; the limiter has its own tests.
    config.limits.user_calls_per_sec = 100_000;
    config.limits.user_calls_burst = 100_000;
    // why: suites sign many accounts up and fail logins from one address; the limits per
    // address have their own tests (abuse.rs).
    config.limits.signups_per_hour_per_source = 100_000;
    config.limits.login_per_minute_per_source = 100_000;
    config
}

impl TestApp {
    pub async fn spawn() -> Self {
        let dir = tempfile::tempdir().expect("temporary data dir");
        let mut app = Self::spawn_in(dir.path().to_owned()).await;
        app._dir = Some(dir);
        app
    }

    /// Starts on an existing data dir (e.g. after a restart).
    pub async fn spawn_in(data_dir: PathBuf) -> Self {
        Self::spawn_with(test_config(data_dir)).await
    }

    pub async fn spawn_with(config: Config) -> Self {
        let parts: BTreeSet<Part> = Part::ALL.into_iter().collect();
        let data_dir = config.data_dir.clone();
        let running = chatmesh_cli::start(config, &parts).await.expect("chatmesh starts");
        Self {
            grpc_addr: running.grpc_addr.expect("gRPC listener"),
            rest_addr: running.rest_addr.expect("REST listener"),
            ws_addr: running.ws_addr.expect("WebSocket listener"),
            metrics_addr: running.metrics_addr.expect("metrics listener"),
            data_dir,
            running: Some(running),
            _dir: None,
        }
    }

    /// Stops and starts again on the same data dir.
    pub async fn restart(mut self) -> Self {
        let dir = self._dir.take();
        let data_dir = self.data_dir.clone();
        self.running.take().expect("running").stop().await.expect("clean stop");
        let mut app = Self::spawn_in(data_dir).await;
        app._dir = dir;
        app
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc_addr)).expect("uri").connect().await.expect("connects")
    }

    /// The process's own in-process transport (same layer stack, no socket).
    pub fn in_process(&self) -> GrpcChannel {
        self.running.as_ref().expect("running").in_process.clone().expect("in-process channel")
    }

    pub async fn users(&self) -> UserServiceClient<Channel> {
        UserServiceClient::new(self.channel().await)
    }

    /// Registers an account and logs in; returns (user id, tokens).
    pub async fn register(&self, email: &str) -> (String, user::TokenPair) {
        let mut users = self.users().await;
        let created = users
            .create_user(user::CreateUserRequest {
                email: email.into(),
                password: "correct horse battery".into(),
                name: "Test User".into(),
                username: String::new(),
            })
            .await
            .expect("create user")
            .into_inner();
        let tokens = self.login(email, "correct horse battery").await.expect("login");
        (created.user.expect("user").user_id, tokens)
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<user::TokenPair, tonic::Status> {
        let response = self
            .users()
            .await
            .login(user::LoginRequest { email: email.into(), password: password.into(), restore: false })
            .await?
            .into_inner();
        Ok(response.tokens.expect("tokens"))
    }

    /// A service-principal token minted by this server (for internal RPCs).
    pub fn service_token(&self, part: &str) -> String {
        self.running.as_ref().expect("running").auth.issue_service(part)
    }

    pub async fn channels(&self) -> ChannelServiceClient<Channel> {
        ChannelServiceClient::new(self.channel().await)
    }

    pub async fn chats(&self) -> ChatServiceClient<Channel> {
        ChatServiceClient::new(self.channel().await)
    }

    pub async fn feed(&self) -> FeedServiceClient<Channel> {
        FeedServiceClient::new(self.channel().await)
    }

    /// Registers `<username>@example.com` with a username and display name, and logs in.
    pub async fn person(&self, username: &str, name: &str) -> User {
        let email = format!("{username}@example.com");
        let request = user::CreateUserRequest {
            email: email.clone(),
            password: "correct horse battery".into(),
            name: name.into(),
            username: username.into(),
        };
        let created = self.users().await.create_user(request).await.expect("sign-up").into_inner();
        let tokens = self.login(&email, "correct horse battery").await.expect("login");
        User { id: created.user.expect("user").user_id, token: tokens.access_token }
    }

    /// `who` follows `whom`.
    pub async fn follow(&self, who: &User, whom: &User) {
        let request = authed(&who.token, user::FollowUserRequest { user_id: whom.id.clone() });
        self.users().await.follow_user(request).await.expect("follow");
    }

    /// `who` stops following `whom`.
    pub async fn unfollow(&self, who: &User, whom: &User) {
        let request = authed(&who.token, user::UnfollowUserRequest { user_id: whom.id.clone() });
        self.users().await.unfollow_user(request).await.expect("unfollow");
    }

    /// `who` blocks `whom`.
    pub async fn block(&self, who: &User, whom: &User) {
        let request = authed(&who.token, user::BlockUserRequest { user_id: whom.id.clone() });
        self.users().await.block_user(request).await.expect("block");
    }

    /// `who` lifts the block of `whom`.
    pub async fn unblock(&self, who: &User, whom: &User) {
        let request = authed(&who.token, user::UnblockUserRequest { user_id: whom.id.clone() });
        self.users().await.unblock_user(request).await.expect("unblock");
    }

    /// How far the search index trails the change feed, asked as a service principal.
    pub async fn search_status(&self) -> chat::GetSearchStatusResponse {
        let mut client = ChatInternalServiceClient::new(self.channel().await);
        let request = authed(&self.service_token("admin"), chat::GetSearchStatusRequest {});
        client.get_search_status(request).await.expect("search status").into_inner()
    }

    /// Waits until the search index has committed every change fed so far.
    pub async fn search_caught_up(&self) {
        let started = std::time::Instant::now();
        loop {
            let status = self.search_status().await;
            if status.lag_events == 0 {
                return;
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(30), "the index did not catch up: {status:?}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Reads a key this server generated in its data dir (to forge or age tokens in tests).
    pub fn signing_key(&self, purpose: &str) -> (String, Vec<u8>) {
        let dir = self.data_dir.join("keys").join(purpose);
        let kid = std::fs::read_to_string(dir.join("current")).expect("current key").trim().to_owned();
        let der = std::fs::read(dir.join(format!("{kid}.pk8"))).expect("key file");
        (kid, der)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.shutdown_token().cancel();
        }
    }
}

/// A signed-in user of a test app.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub token: String,
}

impl TestApp {
    /// Registers `<name>@example.com` and logs in.
    pub async fn user(&self, name: &str) -> User {
        let (id, tokens) = self.register(&format!("{name}@example.com")).await;
        User { id, token: tokens.access_token }
    }

    /// A channel created by `owner`; returns its id.
    pub async fn create_channel(&self, owner: &User, request: pb_channel::CreateChannelRequest) -> String {
        let response =
            self.channels().await.create_channel(authed(&owner.token, request)).await.expect("create channel");
        response.into_inner().channel.expect("channel").channel_id
    }

    /// A group owned by `owner` with `members`.
    pub async fn group(&self, owner: &User, visibility: ChannelVisibility, members: &[&User]) -> pb_channel::Channel {
        let request = pb_channel::CreateChannelRequest {
            kind: ChannelKind::Group as i32,
            visibility: visibility as i32,
            name: "team".into(),
            topic: "plans".into(),
            member_ids: members.iter().map(|m| m.id.clone()).collect(),
            ..Default::default()
        };
        let response = self.channels().await.create_channel(authed(&owner.token, request)).await.expect("create group");
        response.into_inner().channel.expect("channel")
    }
}

/// How long [`eventually`] polls before it fails: only a guard against hanging.
pub const EVENTUALLY: std::time::Duration = std::time::Duration::from_secs(30);

/// Polls `probe` until it answers `Ok` (work done in the background: fan-out, refreshes, the
/// feed's reports to the user service); fails after [`EVENTUALLY`] with what it saw last.
pub async fn eventually<T, E: std::fmt::Debug, Fut>(what: &str, mut probe: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Result<T, E>>,
{
    let started = std::time::Instant::now();
    loop {
        match probe().await {
            Ok(found) => return found,
            Err(seen) => assert!(started.elapsed() < EVENTUALLY, "{what}; last seen: {seen:?}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The `ErrorInfo` reason of a refusal (empty when it has none).
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    status.get_error_details().error_info().map(|info| info.reason.clone()).unwrap_or_default()
}

/// Asserts `result` was refused with `code` and the `ErrorInfo` reason `why`.
#[track_caller]
pub fn refused(result: Result<impl std::fmt::Debug, tonic::Status>, code: tonic::Code, why: &str) {
    let status = result.expect_err("refused");
    assert_eq!((status.code(), reason(&status).as_str()), (code, why), "{}", status.message());
}

impl TestApp {
    /// Makes `email`'s account an admin, as `chatmesh admin grant admin <email>` does.
    pub async fn grant_admin(&self, email: &str) {
        let request = authed(
            &self.service_token("admin"),
            user::SetRoleRequest { email: email.into(), role: user::UserRole::Admin as i32 },
        );
        let mut internal = user::user_internal_service_client::UserInternalServiceClient::new(self.channel().await);
        internal.set_role(request).await.expect("grant admin");
    }
}

/// A request carrying `authorization: Bearer <token>`.
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii token"));
    request
}

/// A WebSocket client of the gateway, reading JSON frames.
pub mod ws {
    use std::time::Duration;

    use futures::{SinkExt, StreamExt};
    use serde_json::Value;
    use tokio::net::TcpStream;
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

    pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

    /// What the server sent: a JSON frame, or a close with its code.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Received {
        Frame(Value),
        Closed(Option<u16>),
    }

    /// Connects with `?token=` (and more query), and waits for `ready`.
    pub async fn connect(addr: std::net::SocketAddr, token: &str, query: &str) -> (Socket, Value) {
        let url = format!("ws://{addr}/?token={token}{query}");
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        let ready = next_frame(&mut socket, Duration::from_secs(10)).await.expect("a ready frame");
        assert_eq!(ready["event"], "ready", "{ready}");
        (socket, ready)
    }

    /// The next frame or close, or `None` after `wait`.
    pub async fn next(socket: &mut Socket, wait: Duration) -> Option<Received> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, socket.next()).await.ok()?;
            return Some(match message {
                Some(Ok(Message::Text(text))) => Received::Frame(serde_json::from_str(&text).expect("JSON frames")),
                Some(Ok(Message::Close(frame))) => Received::Closed(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => Received::Closed(None),
            });
        }
    }

    /// The next JSON frame (pings and other control frames skipped), or `None`.
    pub async fn next_frame(socket: &mut Socket, wait: Duration) -> Option<Value> {
        match next(socket, wait).await? {
            Received::Frame(frame) => Some(frame),
            Received::Closed(_) => None,
        }
    }

    /// Frames until one named `event` arrives (returned last), or `None` after `wait`.
    pub async fn until(socket: &mut Socket, event: &str, wait: Duration) -> Option<Vec<Value>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut seen = Vec::new();
        while let Some(frame) =
            next_frame(socket, deadline.saturating_duration_since(tokio::time::Instant::now())).await
        {
            let done = frame["event"] == event;
            seen.push(frame);
            if done {
                return Some(seen);
            }
        }
        None
    }

    pub async fn send(socket: &mut Socket, frame: Value) {
        socket.send(Message::Text(frame.to_string().into())).await.expect("sends");
    }
}

/// JSON calls to an app's REST gateway.
#[derive(Clone, Copy)]
pub struct Rest<'a> {
    pub app: &'a TestApp,
}

impl Rest<'_> {
    /// The status and the body as JSON (null when it is none), with a bearer token when given.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer.as_str()));
        }
        let body = if body.is_null() { String::new() } else { body.to_string() };
        let (status, _, text) = raw::http_with_body(self.app.rest_addr, method, path, &headers, &body).await;
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// [`Rest::call`] as the user whose access token is `token`.
    pub async fn authed(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        self.call(method, path, Some(token), body).await
    }
}
