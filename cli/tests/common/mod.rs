//! What the process tests share: the binary started on port 0 and its addresses read from its
//! ready file, a child process killed when dropped, waits for events, and a few clients.

#![allow(dead_code)] // why: each test binary uses a different part of this module.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use chatmesh_api::{
    channel::v1::{ChannelKind, CreateChannelRequest, channel_service_client::ChannelServiceClient},
    user::v1::{CreateUserRequest, LoginRequest, user_service_client::UserServiceClient},
};
use tonic::{Request, transport::Channel};

/// How long a wait for an event may take before the test is declared hung. It guards against
/// hanging only: no test asserts a duration (figures are printed).
pub const HUNG: Duration = Duration::from_secs(60);

/// `chatmesh --data-dir <data>`, with the cheap argon2 settings every process test uses (the
/// OWASP defaults are asserted by a unit test) and every listener on a port the process picks
/// (a `--*-listen` flag still wins); the caller adds the command and flags.
pub fn chatmesh(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chatmesh"));
    command
        .args(["--data-dir", data.to_str().expect("a UTF-8 path")])
        .env("CHATMESH_PASSWORD__MEMORY_KIB", "4096")
        .env("CHATMESH_PASSWORD__ITERATIONS", "1")
        // why: tests sign many accounts up from one address (the limit has its own test)
        .env("CHATMESH_LIMITS__SIGNUPS_PER_HOUR_PER_SOURCE", "100000")
        .env("CHATMESH_LIMITS__LOGIN_PER_MINUTE_PER_SOURCE", "100000");
    for listener in ["GRPC", "REST", "WS", "METRICS"] {
        command.env(format!("CHATMESH_{listener}__LISTEN"), "127.0.0.1:0");
    }
    command
}

/// Runs `chatmesh admin <args>` on `data`; returns stdout, failing on a non-zero exit.
pub fn admin(data: &Path, args: &[&str]) -> String {
    let output = chatmesh(data).arg("admin").args(args).output().expect("the binary runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "admin {args:?}: {stdout}{stderr}");
    stdout.into_owned()
}

/// A child process, killed if a failing test leaves it running.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// Waits for the process to exit, keeping this runtime running meanwhile (so the test's own
    /// clients can answer the process, a GOAWAY for one).
    pub async fn exited(&mut self) -> ExitStatus {
        let status = until(|| std::future::ready(self.0.try_wait().expect("the process's status"))).await;
        status.unwrap_or_else(|| panic!("process {} still running after {HUNG:?}", self.0.id()))
    }
}

/// A started `chatmesh up` or `chatmesh serve`: its process, and where it listens.
pub struct Server {
    pub process: Process,
    pub listening: Listening,
    _ready: tempfile::TempDir,
}

/// Where a process listens, as its ready file says.
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    pub grpc: Option<SocketAddr>,
    pub internal_grpc: Option<SocketAddr>,
    pub rest: Option<SocketAddr>,
    pub ws: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

impl Server {
    pub fn grpc(&self) -> SocketAddr {
        self.listening.grpc.expect("a gRPC listener")
    }

    pub fn internal_grpc(&self) -> SocketAddr {
        self.listening.internal_grpc.expect("an internal gRPC listener")
    }

    pub fn rest(&self) -> SocketAddr {
        self.listening.rest.expect("a REST listener")
    }

    pub fn ws(&self) -> SocketAddr {
        self.listening.ws.expect("a WebSocket listener")
    }

    pub fn metrics(&self) -> SocketAddr {
        self.listening.metrics.expect("a metrics listener")
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        self.process.0.kill().expect("SIGKILL");
        self.process.0.wait().expect("the killed process's status");
    }
}

/// Starts `command` as a [`Process`], its output in `log` (or dropped).
pub fn launch(mut command: Command, log: Option<&Path>) -> Process {
    let (stdout, stderr) = match log {
        Some(path) => {
            let file = std::fs::File::create(path).expect("a log file");
            (Stdio::from(file.try_clone().expect("a log file")), Stdio::from(file))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    Process(command.stdout(stdout).stderr(stderr).spawn().expect("the binary starts"))
}

/// Starts `command` (a `chatmesh up` or `serve`, see [`chatmesh`]) with its output in `log` (or
/// dropped), and waits until its ready file names its listeners.
pub async fn start(mut command: Command, log: Option<&Path>) -> Server {
    let ready = tempfile::tempdir().expect("a dir for the ready file");
    let file = ready.path().join("ready.json");
    command.arg("--ready-file").arg(&file);
    let mut process = launch(command, log);
    let log_text = || log.map(|l| std::fs::read_to_string(l).unwrap_or_default()).unwrap_or_default();
    let text = until(|| {
        let text = match process.0.try_wait().expect("the process's status") {
            Some(status) => panic!("exited before it was ready ({status}): {}", log_text()),
            None => std::fs::read_to_string(&file).ok(),
        };
        std::future::ready(text)
    })
    .await
    .unwrap_or_else(|| panic!("no ready file after {HUNG:?}: {}", log_text()));
    let json: serde_json::Value = serde_json::from_str(&text).expect("the ready file is JSON");
    let addr = |name: &str| json.get(name).map(|a| a.as_str().expect("an address").parse().expect("host:port"));
    let listening = Listening {
        grpc: addr("grpc"),
        internal_grpc: addr("internal_grpc"),
        rest: addr("rest"),
        ws: addr("ws"),
        metrics: addr("metrics"),
    };
    Server { process, listening, _ready: ready }
}

/// Polls `check` until it gives a value, or for [`HUNG`] (then `None`).
pub async fn until<T, F: Future<Output = Option<T>>>(mut check: impl FnMut() -> F) -> Option<T> {
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if started.elapsed() > HUNG {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `check` holds; how long that took (for printing, never for asserting).
pub async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) -> Duration {
    let started = Instant::now();
    let held = until(|| {
        let check = check();
        async move { check.await.then_some(()) }
    })
    .await;
    assert!(held.is_some(), "never happened in {HUNG:?}: {what}");
    started.elapsed()
}

/// A gRPC channel to the listening server at `grpc`.
pub async fn connect(grpc: SocketAddr) -> Channel {
    let endpoint = Channel::from_shared(format!("http://{grpc}")).unwrap();
    endpoint.connect().await.unwrap_or_else(|e| panic!("no server on {grpc}: {e}"))
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
    let login = LoginRequest { email: email.into(), password: "correct horse".into(), restore: false };
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

/// A redis-server of this test's own, on a Unix socket in a directory of its own (no port to
/// pick, so none to race for, and a restart finds the same address).
pub struct OwnRedis {
    pub process: Process,
    pub url: String,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

/// A redis-server of this test's own, answering. `None` (said why) when Redis tests are off;
/// when they are on, a missing redis-server fails the test.
pub async fn own_redis() -> Option<OwnRedis> {
    redis_url()?;
    let dir = tempfile::tempdir().expect("a dir for the Redis socket");
    let socket = dir.path().join("redis.sock");
    let url = format!("redis+unix://{}", socket.display());
    let process = start_redis(&socket).await;
    Some(OwnRedis { process, url, socket, _dir: dir })
}

impl OwnRedis {
    /// Starts the server again on the same socket (after the test killed it).
    pub async fn restart(&mut self) {
        self.process = start_redis(&self.socket).await;
    }
}

/// Starts redis-server on the Unix socket `socket` (no TCP) and waits until it answers a PING.
/// redis-server is installed by `.ci/run` wherever Redis tests run.
async fn start_redis(socket: &Path) -> Process {
    let child = Command::new("redis-server")
        .args(["--port", "0", "--unixsocket", socket.to_str().expect("a UTF-8 path")])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("redis-server is needed when CHATMESH_TEST_REDIS_URL is set: {e}"));
    let process = Process(child);
    let client = redis::Client::open(format!("redis+unix://{}", socket.display())).expect("a Redis URL");
    let answers = until(|| {
        let client = client.clone();
        async move {
            let mut connection = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("PING").query_async::<String>(&mut connection).await.ok()
        }
    })
    .await;
    assert!(answers.is_some(), "redis-server on {} did not answer in {HUNG:?}", socket.display());
    process
}
