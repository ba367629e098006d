//! What the process tests share: free ports, a child process killed when dropped, and a few
//! clients of the real binary.

#![allow(dead_code)] // why: each test binary uses a different part of this module.

use std::{
    net::{SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use chatmesh_api::{
    channel::v1::{ChannelKind, CreateChannelRequest, channel_service_client::ChannelServiceClient},
    user::v1::{CreateUserRequest, LoginRequest, user_service_client::UserServiceClient},
};
use tonic::{Request, transport::Channel};

/// `chatmesh --data-dir <data>`, with the cheap argon2 settings every process test uses (the
/// OWASP defaults are asserted by a unit test); the caller adds the command and flags.
pub fn chatmesh(data: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chatmesh"));
    command
        .args(["--data-dir", data.to_str().expect("a UTF-8 path")])
        .env("CHATMESH_PASSWORD__MEMORY_KIB", "4096")
        .env("CHATMESH_PASSWORD__ITERATIONS", "1");
    command
}

/// Runs `chatmesh admin <args>` on `data`; returns stdout, failing on a non-zero exit.
pub fn admin(data: &std::path::Path, args: &[&str]) -> String {
    let output = chatmesh(data).arg("admin").args(args).output().expect("the binary runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "admin {args:?}: {stdout}{stderr}");
    stdout.into_owned()
}

/// Starts `command` as a [`Process`], its output appended to `log` (or dropped).
pub fn launch(mut command: Command, log: Option<&std::path::Path>) -> Process {
    let (stdout, stderr) = match log {
        Some(path) => {
            let file = std::fs::File::create(path).expect("a log file");
            (Stdio::from(file.try_clone().expect("a log file")), Stdio::from(file))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    Process(command.stdout(stdout).stderr(stderr).spawn().expect("the binary starts"))
}

pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A child process, killed if a failing test leaves it running.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A gRPC channel to `grpc`, waiting up to 30 s for the server to listen.
pub async fn connect(grpc: SocketAddr) -> Channel {
    let started = Instant::now();
    loop {
        match Channel::from_shared(format!("http://{grpc}")).unwrap().connect().await {
            Ok(channel) => return channel,
            Err(e) if started.elapsed() > Duration::from_secs(30) => panic!("no server on {grpc}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Registers and logs in; returns (user id, access token).
pub async fn sign_up(channel: &Channel, email: &str) -> (String, String) {
    let mut users = UserServiceClient::new(channel.clone());
    let create = CreateUserRequest {
        email: email.into(),
        password: "correct horse".into(),
        name: "U".into(),
        username: String::new(),
    };
    let id = users.create_user(create).await.unwrap().into_inner().user.unwrap().user_id;
    let login = LoginRequest { email: email.into(), password: "correct horse".into() };
    (id, users.login(login).await.unwrap().into_inner().tokens.unwrap().access_token)
}

/// A group owned by the holder of `owner` with `members`; returns its id.
pub async fn group(channel: &Channel, owner: &str, members: &[&str]) -> String {
    let request = CreateChannelRequest {
        kind: ChannelKind::Group as i32,
        name: "group".into(),
        member_ids: members.iter().map(|m| m.to_string()).collect(),
        ..Default::default()
    };
    let response = ChannelServiceClient::new(channel.clone()).create_channel(authed(owner, request)).await.unwrap();
    response.into_inner().channel.unwrap().channel_id
}

/// The Redis the Redis-backed tests use, or `None` (said why) when they are off.
pub fn redis_url() -> Option<String> {
    let url = std::env::var("CHATMESH_TEST_REDIS_URL").ok();
    if url.is_none() {
        println!("skipped: CHATMESH_TEST_REDIS_URL is not set (.ci/run sets it)");
    }
    url
}

/// A redis-server of this test's own, listening: its process, port and URL. `None` (said why)
/// when Redis tests are off; when they are on, a missing redis-server fails the test.
pub async fn own_redis() -> Option<(Process, u16, String)> {
    redis_url()?;
    let port = free_addr().port();
    let process = start_redis(port);
    wait_for_port(port).await;
    Some((process, port, format!("redis://127.0.0.1:{port}")))
}

/// Starts redis-server on `port` (installed by `.ci/run` wherever Redis tests run).
pub fn start_redis(port: u16) -> Process {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("redis-server is needed when CHATMESH_TEST_REDIS_URL is set: {e}"));
    Process(child)
}

pub async fn wait_for_port(port: u16) {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "redis-server on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
