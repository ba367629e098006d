//! The real `chatmesh up` process under test: free ports, a temporary data dir, benchmark
//! limits, and real clients (tonic, WebSocket) against it.

use std::{
    net::{SocketAddr, TcpListener},
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use chatmesh_api::{
    channel::v1::{self as pb_channel, channel_service_client::ChannelServiceClient},
    chat::v1::chat_service_client::ChatServiceClient,
    user::v1::{self as pb_user, user_service_client::UserServiceClient},
};
use tokio::process::{Child, Command};
use tonic::{Request, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// The password every benchmark account uses.
const PASSWORD: &str = "correct horse battery";

/// A spawned `chatmesh up` on free loopback ports over a data dir; killed on drop.
pub struct Server {
    pub child: Child,
    pub grpc_addr: SocketAddr,
    pub ws_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// Where the data dir (`data/`) and the process's log live.
    root: std::path::PathBuf,
    /// A temporary root, removed with the server.
    _owned: Option<tempfile::TempDir>,
}

/// A process's resident set from /proc (bytes), if it still runs.
pub fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A signed-in benchmark account.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub token: String,
}

/// `count` free loopback ports, all held at once so they differ, then released.
fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners =
        (0..count).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<Vec<_>, _>>().context("free ports")?;
    Ok(listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<Vec<_>, _>>()?)
}

impl Server {
    /// Spawns `binary up` over a temporary data dir; returns as soon as the process runs (see
    /// [`Server::wait_healthy`]).
    pub fn spawn(binary: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("temporary data dir")?;
        let mut server = Self::spawn_at(binary, dir.path())?;
        server._owned = Some(dir);
        Ok(server)
    }

    /// Spawns `binary up` with its data dir under `root` (kept: a later server may reopen it).
    pub fn spawn_at(binary: &Path, root: &Path) -> anyhow::Result<Self> {
        Self::spawn_parts(binary, root, None, &[])
    }

    /// Spawns `binary serve <parts>` (or `up` without parts) with its data dir under `root` and
    /// extra `CHATMESH_*` settings.
    pub fn spawn_parts(
        binary: &Path,
        root: &Path,
        parts: Option<&[&str]>,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let ports = free_ports(4)?;
        let addr = |i: usize| SocketAddr::from(([127, 0, 0, 1], ports[i]));
        let (grpc_addr, rest_addr, ws_addr, metrics_addr) = (addr(0), addr(1), addr(2), addr(3));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join("chatmesh.log"))
            .context("server log file")?;
        let command = match parts {
            None => vec!["up"],
            Some(parts) => std::iter::once("serve").chain(parts.iter().copied()).collect(),
        };
        let child = Command::new(binary)
            .current_dir(root)
            .arg("--data-dir")
            .arg(root.join("data"))
            .args(command)
            .args(["--grpc-listen", &grpc_addr.to_string(), "--rest-listen", &rest_addr.to_string()])
            .args(["--ws-listen", &ws_addr.to_string(), "--metrics-listen", &metrics_addr.to_string()])
            // why: no chatmesh.toml of the caller's working dir may change what is measured.
            .env("CHATMESH_CONFIG", root.join("absent.toml"))
            .env("CHATMESH_LOG__FILTER", "warn")
            // why: benchmarks measure chats, not password hashing (argon2 has its own limits).
            .env("CHATMESH_PASSWORD__MEMORY_KIB", "4096")
            .env("CHATMESH_PASSWORD__ITERATIONS", "1")
            .env("CHATMESH_PASSWORD__MAX_CONCURRENT_HASHES", "4")
            .env("CHATMESH_LIMITS__USER_CALLS_PER_SEC", "1000000")
            .env("CHATMESH_LIMITS__USER_CALLS_BURST", "1000000")
            .env("CHATMESH_LIMITS__SIGNUPS_PER_HOUR_PER_SOURCE", "1000000")
            .env("CHATMESH_LIMITS__LOGIN_PER_MINUTE_PER_SOURCE", "1000000")
            .env("CHATMESH_WS__MAX_SESSIONS_PER_USER", "100000")
            // why: every benchmark client connects from this one address
            .env("CHATMESH_WS__MAX_CONNECTIONS_PER_SOURCE", "0")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        Ok(Self { child, grpc_addr, ws_addr, metrics_addr, root: root.to_owned(), _owned: None })
    }

    /// Spawns and waits until gRPC health answers SERVING.
    pub async fn start(binary: &Path) -> anyhow::Result<Self> {
        let mut server = Self::spawn(binary)?;
        server.wait_healthy(Duration::from_secs(30)).await?;
        Ok(server)
    }

    /// Polls the gRPC health service until it answers SERVING; returns when it did.
    pub async fn wait_healthy(&mut self, within: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + within;
        let uri = format!("http://{}", self.grpc_addr);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("chatmesh exited with {status} before it was healthy; log:\n{}", self.log_tail());
            }
            if let Ok(channel) = Channel::from_shared(uri.clone())?.connect().await {
                let answer = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await;
                if answer.is_ok_and(|a| a.into_inner().status == ServingStatus::Serving as i32) {
                    return Ok(Instant::now());
                }
            }
            if Instant::now() > deadline {
                bail!("chatmesh was not healthy within {within:?}; log:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The last lines the process logged (for setup failures).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.root.join("chatmesh.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A gauge or counter from the process's Prometheus endpoint (`None` until it is exported).
    pub async fn metric(&self, name: &str) -> anyhow::Result<Option<f64>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.metrics_addr).await?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n").await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        Ok(body
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok()))
    }

    /// The process's resident set from /proc (bytes), if it still runs.
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_of(self.child.id()?)
    }

    /// Stops the server as an operator would (SIGTERM, then its drain) and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().context("kill -TERM")?;
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => self.child.kill().await?,
        }
        Ok(())
    }

    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(Channel::from_shared(format!("http://{}", self.grpc_addr))?.connect().await?)
    }

    pub async fn chats(&self) -> anyhow::Result<ChatServiceClient<Channel>> {
        Ok(ChatServiceClient::new(self.channel().await?))
    }

    /// Registers and signs in `count` accounts named `<prefix><i>`, a few at a time.
    pub async fn users(&self, prefix: &str, count: usize) -> anyhow::Result<Vec<User>> {
        let client = UserServiceClient::new(self.channel().await?);
        let tasks = futures::stream::iter(0..count).map(|i| {
            let mut client = client.clone();
            let email = format!("{prefix}{i}@bench.example.com");
            async move {
                let request = pb_user::CreateUserRequest {
                    email: email.clone(),
                    password: PASSWORD.into(),
                    name: format!("Bench {i}"),
                    username: String::new(),
                };
                let created = client.create_user(request).await.context("CreateUser")?.into_inner();
                let login = pb_user::LoginRequest { email, password: PASSWORD.into(), restore: false };
                let tokens = client.login(login).await.context("Login")?.into_inner().tokens.context("no tokens")?;
                anyhow::Ok(User { id: created.user.context("no user")?.user_id, token: tokens.access_token })
            }
        });
        use futures::StreamExt;
        tasks.buffered(8).collect::<Vec<_>>().await.into_iter().collect()
    }

    /// A private group owned by `owner` with every one of `members` (past the 100 initial members
    /// of CreateChannel, the owner invites the rest one by one); returns its id.
    pub async fn group(&self, owner: &User, members: &[User]) -> anyhow::Result<String> {
        const MAX_INITIAL_MEMBERS: usize = 100;
        let mut channels = ChannelServiceClient::new(self.channel().await?);
        let (initial, rest) = members.split_at(members.len().min(MAX_INITIAL_MEMBERS));
        let request = pb_channel::CreateChannelRequest {
            kind: pb_channel::ChannelKind::Group as i32,
            visibility: pb_channel::ChannelVisibility::Private as i32,
            name: "bench".into(),
            member_ids: initial.iter().map(|m| m.id.clone()).collect(),
            ..Default::default()
        };
        let created = channels.create_channel(authed(&owner.token, request)).await.context("CreateChannel")?;
        let channel_id = created.into_inner().channel.context("no channel")?.channel_id;
        for member in rest {
            let request =
                pb_channel::CreateMemberRequest { channel_id: channel_id.clone(), user_id: member.id.clone() };
            channels.create_member(authed(&owner.token, request)).await.context("CreateMember")?;
        }
        Ok(channel_id)
    }
}

/// The Redis cluster mode runs on (`CHATMESH_BENCH_REDIS_URL`, default the local one).
pub fn redis_url() -> String {
    std::env::var("CHATMESH_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Whether something answers at the Redis URL's address.
pub async fn redis_reachable() -> bool {
    let url = redis_url();
    let authority = url.trim_start_matches("redis://").split('/').next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default().to_owned();
    matches!(tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(host_port)).await, Ok(Ok(_)))
}

/// What a benchmark drives: `chatmesh up`, or cluster mode — a process with every part but
/// a second dispatcher + WebSocket gateway process, joined by Redis — with sessions spread
/// over both gateways.
pub struct Target {
    pub core: Server,
    pub edge: Option<Server>,
    _root: Option<tempfile::TempDir>,
}

impl Target {
    pub async fn start(binary: &Path, cluster: bool) -> anyhow::Result<Self> {
        if !cluster {
            return Ok(Target { core: Server::start(binary).await?, edge: None, _root: None });
        }
        let root = tempfile::tempdir().context("temporary data dir")?;
        let redis = ("CHATMESH_REDIS_URL", redis_url());
        let all = ["user", "channel", "chat", "indexer", "dispatcher", "rest", "ws"];
        let mut core = Server::spawn_parts(binary, root.path(), Some(&all), std::slice::from_ref(&redis))?;
        core.wait_healthy(Duration::from_secs(30)).await?;
        let peer = format!("http://{}", core.grpc_addr);
        let env = [
            redis,
            ("CHATMESH_PEERS__USER", peer.clone()),
            ("CHATMESH_PEERS__CHANNEL", peer.clone()),
            ("CHATMESH_PEERS__CHAT", peer),
        ];
        // why: the same data dir, for the signing keys the core generated (the edge opens no store)
        let mut edge = Server::spawn_parts(binary, root.path(), Some(&["dispatcher", "ws"]), &env)?;
        edge.wait_healthy(Duration::from_secs(30)).await?;
        Ok(Target { core, edge: Some(edge), _root: Some(root) })
    }

    /// The WebSocket gateways, sessions go to them in turn.
    pub fn ws_addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(self.core.ws_addr).chain(self.edge.as_ref().map(|e| e.ws_addr)).collect()
    }

    /// Every process's id.
    pub fn pids(&self) -> Vec<u32> {
        std::iter::once(&self.core).chain(self.edge.as_ref()).filter_map(|s| s.child.id()).collect()
    }
}

/// A request carrying `authorization: Bearer <token>`.
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}
