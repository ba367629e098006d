//! What a real cluster needs from the binary, against the real process: parts that only
//! verify user tokens run on public keys alone (through a two-phase key rotation); a part
//! with a production store, no Redis and node id 0 refuses to start; SIGTERM during start-up
//! stops the process (also as a container's PID 1); the node id stays leased through the drain
//! and the final relay; `rediss://` reaches a TLS Redis trusting a private CA.
//!
//! The Redis cases need CHATMESH_TEST_REDIS_URL (`.ci/run` sets it) and `redis-server`.

mod common;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    time::{Duration, SystemTime},
};

use chatmesh_api::user::v1::{LoginRequest, user_service_client::UserServiceClient};
use common::{HUNG, Process, chatmesh, connect, launch, own_redis, redis_url, sign_up, until};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The test CA and the certificate it signed for 127.0.0.1 (crates/platform/testdata/tls).
fn tls_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/platform/testdata/tls").join(name)
}

fn kill(signal: &str, pid: u32) {
    assert!(Command::new("kill").args([signal, &pid.to_string()]).status().unwrap().success(), "kill {signal} {pid}");
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Every file in `dir` with its length and modification time.
fn snapshot(dir: &Path) -> BTreeMap<String, (u64, SystemTime)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            (entry.file_name().to_string_lossy().into_owned(), (meta.len(), meta.modified().unwrap()))
        })
        .collect()
}

/// Copies every file of `from` into `to` (created).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

async fn get_me(rest: SocketAddr, token: &str) -> u16 {
    let response = reqwest::Client::new()
        .get(format!("http://{rest}/api/v1/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the REST part answers");
    response.status().as_u16()
}

async fn login(grpc: SocketAddr, email: &str) -> String {
    let request = LoginRequest { email: email.into(), password: "correct horse".into(), restore: false };
    let tokens = UserServiceClient::new(connect(grpc).await).login(request).await.unwrap().into_inner().tokens;
    tokens.unwrap().access_token
}

fn kid_of(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap();
    serde_json::from_slice::<serde_json::Value>(&header).unwrap()["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_part_that_only_verifies_runs_on_public_keys_through_a_two_phase_rotation() {
    // the user part's data: the private rings
    let signer = tempfile::tempdir().unwrap();
    let old = common::admin(signer.path(), &["keys", "rotate"]);
    common::admin(signer.path(), &["keys", "rotate", "--service"]);
    // the REST part's: the user ring's public keys only, and the shared service key
    let verifier = tempfile::tempdir().unwrap();
    let public = verifier.path().join("keys/user");
    common::admin(signer.path(), &["keys", "export-public", "--out", public.to_str().unwrap()]);
    copy_dir(&signer.path().join("keys/service"), &verifier.path().join("keys/service"));
    let names: Vec<String> = snapshot(&public).into_keys().collect();
    assert!(names.len() == 1 && names[0].ends_with(".pub"), "only the public key: {names:?}");
    assert!(old.contains(names[0].trim_end_matches(".pub")), "{old} {names:?}");

    // the user part keeps its address across restarts, as a Service does
    let serve_user = |grpc: Option<SocketAddr>| {
        let mut command = chatmesh(signer.path());
        command.args(["serve", "user"]);
        if let Some(grpc) = grpc {
            command.arg("--grpc-listen").arg(grpc.to_string());
        }
        common::start(command, None)
    };
    let serve_rest = |user: SocketAddr| {
        let mut command = chatmesh(verifier.path());
        command.args(["serve", "rest"]).env("CHATMESH_PEERS__USER", format!("http://{user}"));
        common::start(command, None)
    };
    let user = serve_user(None).await;
    let before = snapshot(&public);
    let rest = serve_rest(user.grpc()).await;
    let (_, token) = sign_up(&connect(user.grpc()).await, "ada@example.com").await;
    assert_eq!(get_me(rest.rest(), &token).await, 200, "the user part's token verifies at the REST part");
    let foreign = tempfile::tempdir().unwrap();
    common::admin(foreign.path(), &["keys", "rotate"]);
    let forged = chatmesh_platform::auth::Authenticator::from_data_dir(Default::default(), foreign.path())
        .unwrap()
        .issue_access(1, "s1")
        .token;
    assert_eq!(get_me(rest.rest(), &forged).await, 401, "a key the ring lacks is refused at the edge");
    assert_eq!(snapshot(&public), before, "the part wrote nothing into its key folder");

    // rotation, phase one: a new key published while the old one still signs; every part rolls
    let old_kid = kid_of(&token);
    common::admin(signer.path(), &["keys", "rotate"]);
    let new_kid = std::fs::read_to_string(signer.path().join("keys/user/current")).unwrap().trim().to_owned();
    std::fs::write(signer.path().join("keys/user/current"), &old_kid).unwrap();
    common::admin(signer.path(), &["keys", "export-public", "--out", public.to_str().unwrap()]);
    let grpc = user.grpc();
    drop((user, rest));
    let user = serve_user(Some(grpc)).await;
    let rest = serve_rest(grpc).await;
    assert_eq!(kid_of(&login(user.grpc(), "ada@example.com").await), old_kid, "the old key still signs");
    // phase two: the user part alone switches to the new key; the REST part is not restarted
    std::fs::write(signer.path().join("keys/user/current"), &new_kid).unwrap();
    drop(user);
    let user = serve_user(Some(grpc)).await;
    let new_token = login(user.grpc(), "ada@example.com").await;
    assert_eq!(kid_of(&new_token), new_kid);
    assert_eq!(get_me(rest.rest(), &new_token).await, 200, "a token of the new key verifies at the REST part");
    assert_eq!(get_me(rest.rest(), &token).await, 200, "and the old key's still do");
    let mut published = vec![format!("{new_kid}.pub"), format!("{old_kid}.pub")];
    published.sort();
    assert_eq!(snapshot(&public).into_keys().collect::<Vec<_>>(), published, "written by export-public alone");
}

#[tokio::test]
async fn a_production_store_without_redis_and_with_node_id_0_refuses_to_start() {
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("user.log");
    let mut command = chatmesh(data.path());
    command
        .args(["serve", "user"])
        .env("CHATMESH_STORE__BACKEND", "scylla")
        // why: nothing listens there; the refusal must come first
        .env("CHATMESH_STORE__SCYLLA__CONTACT_POINTS", r#"["127.0.0.1:1"]"#)
        .env_remove("CHATMESH_REDIS_URL")
        .env_remove("CHATMESH_NODE_ID");
    let mut process = launch(command, Some(&log));
    let status = process.exited().await;
    let said = read_log(&log);
    assert!(!status.success(), "{status:?}: {said}");
    assert!(said.contains("refusing to start: the user part keeps data in ScyllaDB"), "{said}");
    assert!(said.contains("node_id is 0") && said.contains("redis_url"), "{said}");
    println!("{}", said.lines().last().unwrap_or_default());
}

/// A TCP server that accepts connections and never answers (a Redis that hangs); the
/// receiver hears of each connection accepted.
async fn silent_server() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, heard) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
            let _ = accepted.send(());
        }
    });
    (addr, heard)
}

/// `chatmesh serve rest` on a data dir with keys, its start-up stuck on a Redis that never
/// answers: the command, and the receiver of that Redis's connections.
async fn stuck_start(data: &Path) -> (Command, tokio::sync::mpsc::UnboundedReceiver<()>) {
    common::admin(data, &["keys", "rotate"]);
    common::admin(data, &["keys", "rotate", "--service"]);
    let (redis, heard) = silent_server().await;
    let mut command = chatmesh(data);
    command.args(["serve", "rest"]).env("CHATMESH_REDIS_URL", format!("redis://{redis}"));
    (command, heard)
}

/// Starts `command` and waits until its start-up has reached the silent Redis; the process
/// and its pid.
async fn launch_stuck(
    command: Command,
    heard: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
    log: &Path,
) -> (Process, u32) {
    let process = launch(command, Some(log));
    tokio::time::timeout(HUNG, heard.recv()).await.expect("start-up reaches Redis").unwrap();
    let pid = process.0.id();
    (process, pid)
}

/// Waits for `process` to end; its status and how long it took (printed, never asserted).
async fn ended(process: &mut Process) -> (ExitStatus, Duration) {
    let started = std::time::Instant::now();
    (process.exited().await, started.elapsed())
}

#[tokio::test]
async fn sigterm_during_start_up_stops_the_process_at_once() {
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("rest.log");
    let (command, mut heard) = stuck_start(data.path()).await;
    let (mut process, pid) = launch_stuck(command, &mut heard, &log).await;
    kill("-TERM", pid);
    let (status, took) = ended(&mut process).await;
    let said = read_log(&log);
    println!("stopped {took:?} after SIGTERM: {status:?}");
    assert_eq!(status.code(), Some(0), "it stopped by itself, cleanly, not killed by the signal: {status:?}\n{said}");
    assert!(said.contains("stopped during start-up"), "{said}");
}

#[tokio::test]
async fn sigterm_during_start_up_stops_a_containers_first_process() {
    // why: a container's command runs as PID 1 of its PID namespace, which ignores a signal it
    // has no handler for (the kubelet's SIGTERM), where any other process dies of it
    let namespaces = ["--user", "--map-root-user", "--pid", "--fork", "--kill-child"];
    if !Command::new("unshare").args(namespaces).arg("true").status().is_ok_and(|s| s.success()) {
        println!("skipped: `unshare --user --pid` is not available here to run the binary as PID 1");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("rest.log");
    let (inner, mut heard) = stuck_start(data.path()).await;
    let mut command = Command::new("unshare");
    command.args(namespaces).arg(inner.get_program()).args(inner.get_args());
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    let (mut process, unshare) = launch_stuck(command, &mut heard, &log).await;
    // the binary is unshare's child: PID 1 inside, this pid outside
    let children = format!("/proc/{unshare}/task/{unshare}/children");
    let child = || std::fs::read_to_string(&children).ok()?.split_whitespace().next()?.parse::<u32>().ok();
    let pid = until(|| std::future::ready(child())).await.expect("the binary runs under unshare");
    kill("-TERM", pid);
    let (status, took) = ended(&mut process).await;
    let said = read_log(&log);
    println!("PID 1 stopped {took:?} after SIGTERM: {status:?}");
    assert_eq!(status.code(), Some(0), "{status:?}\n{said}");
    assert!(said.contains("stopped during start-up"), "{said}");
}

#[tokio::test]
async fn the_node_id_stays_leased_through_the_drain_and_is_released_after_the_final_relay() {
    let Some(redis) = own_redis().await else { return };
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("core.log");
    let mut command = chatmesh(data.path());
    command
        .args(["serve", "user", "channel", "chat", "dispatcher", "rest"])
        .env("CHATMESH_REDIS_URL", &redis.url)
        .env("CHATMESH_NODE_ID", "901")
        // a request kept in flight holds the REST drain open this long
        .env("CHATMESH_REST__DRAIN_SECS", "3");
    let mut server = common::start(command, Some(&log)).await;
    let keys = redis::Client::open(redis.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let lease = chatmesh_platform::redis_keys::node_lease(901);
    let held = || {
        let (mut keys, lease) = (keys.clone(), lease.clone());
        async move { redis::cmd("EXISTS").arg(&lease).query_async::<u32>(&mut keys).await.unwrap() == 1 }
    };
    assert!(held().await, "node id 901 leased");
    // a chat written before the stop, and a request whose body never finishes
    let channel = connect(server.grpc()).await;
    let (_, token) = sign_up(&channel, "ada@example.com").await;
    common::group(&channel, &token, &[]).await;
    let mut pending = tokio::net::TcpStream::connect(server.rest()).await.unwrap();
    let head = "POST /api/v1/auth/login HTTP/1.1\r\nhost: chatmesh\r\ncontent-type: application/json\r\n";
    pending.write_all(format!("{head}content-length: 100\r\nexpect: 100-continue\r\n\r\n").as_bytes()).await.unwrap();
    // why: the server says "100 Continue" once the handler reads the body: the request is in flight
    let mut heard = Vec::new();
    while !String::from_utf8_lossy(&heard).contains("100 Continue") {
        let mut buffer = [0u8; 256];
        let read = tokio::time::timeout(HUNG, pending.read(&mut buffer)).await.expect("an answer").unwrap();
        assert!(read > 0, "closed: {}", String::from_utf8_lossy(&heard));
        heard.extend_from_slice(&buffer[..read]);
    }
    pending.write_all(b"{").await.unwrap();

    kill("-TERM", server.process.0.id());
    // while the REST listener drains (the request holds its connection open), the node id stays
    // leased; the connection ends when the drain gives up on it
    let mut checks = 0;
    loop {
        let mut buffer = [0u8; 256];
        tokio::select! {
            _ = pending.read(&mut buffer) => break,
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        assert!(held().await, "released while the listeners still drain:\n{}", read_log(&log));
        checks += 1;
        assert!(checks < HUNG.as_millis() / 20, "still draining after {HUNG:?}");
    }
    let status = server.process.exited().await;
    let said = read_log(&log);
    println!("lease held at each of {checks} checks during the drain");
    assert!(status.success(), "{status:?}\n{said}");
    assert!(!held().await, "released at the end, not left to expire");
    let relayed = said.rfind("final relay pass done").unwrap_or_else(|| panic!("no final relay pass:\n{said}"));
    let released = said.find("node id released").unwrap_or_else(|| panic!("never released:\n{said}"));
    assert!(relayed < released, "released only after the final relay:\n{said}");
}

/// A redis-server of this test's own serving TLS only, on a free port, with the test CA's
/// certificate; `None` (said why) when Redis tests are off or this redis-server has no TLS.
async fn tls_redis(dir: &Path) -> Option<(Process, u16)> {
    redis_url()?;
    let probe =
        Command::new("redis-server").args(["--tls-port", "0", "--port", "0"]).output().expect("redis-server runs");
    let said = String::from_utf8_lossy(&probe.stdout).into_owned() + &String::from_utf8_lossy(&probe.stderr);
    if said.contains("Bad directive") || said.contains("not compiled") {
        println!("skipped: this redis-server was built without TLS ({})", said.lines().last().unwrap_or_default());
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--tls-cert-file")
        .arg(tls_file("server.pem"))
        .arg("--tls-key-file")
        .arg(tls_file("server.key"))
        .arg("--tls-ca-cert-file")
        .arg(tls_file("ca.pem"))
        .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    Some((Process(child), port))
}

#[tokio::test]
async fn rediss_reaches_a_tls_redis_trusting_the_configured_ca_and_refuses_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_redis, port)) = tls_redis(dir.path()).await else { return };
    let url = format!("rediss://127.0.0.1:{port}");
    let ca = tls_file("ca.pem");
    // the platform's pool, as every part connects: PING over TLS once the server is up
    let pool = chatmesh_platform::redis_pool::RedisPool::with_ca_file(&ca).unwrap();
    let pinged = until(|| async {
        let redis = pool.get(&url).await.ok()?;
        redis::cmd("PING").query_async::<String>(&mut redis.manager.clone()).await.ok()
    })
    .await;
    assert_eq!(pinged.as_deref(), Some("PONG"), "the TLS redis-server answers");

    // the binary: its node id leased in the TLS Redis
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("user.log");
    let mut command = chatmesh(data.path());
    command
        .args(["serve", "user"])
        .env("CHATMESH_REDIS_URL", &url)
        .env("CHATMESH_REDIS__TLS_CA_FILE", &ca)
        .env("CHATMESH_NODE_ID", "902");
    let server = common::start(command, Some(&log)).await;
    let redis = pool.get(&url).await.unwrap();
    let lease = chatmesh_platform::redis_keys::node_lease(902);
    let held: u32 = redis::cmd("EXISTS").arg(&lease).query_async(&mut redis.manager.clone()).await.unwrap();
    assert_eq!(held, 1, "the lease was taken over TLS:\n{}", read_log(&log));
    drop(server);

    // without the CA, the web roots do not know the server's certificate: no start
    let other = tempfile::tempdir().unwrap();
    let log = other.path().join("user.log");
    let mut command = chatmesh(other.path());
    command.args(["serve", "user"]).env("CHATMESH_REDIS_URL", &url).env("CHATMESH_NODE_ID", "903");
    let mut process = launch(command, Some(&log));
    let status = process.exited().await;
    let said = read_log(&log);
    assert!(!status.success(), "{said}");
    assert!(said.contains(&format!("connecting to Redis at {url}")), "{said}");
    assert!(said.to_lowercase().contains("certificate") || said.contains("UnknownIssuer"), "{said}");
}
