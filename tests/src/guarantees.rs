//! Tools for the tests of documented guarantees (tests/tests/guarantees.rs): the documented
//! value of a limit, a TCP gate that holds a peer's calls on demand, a WebSocket gateway run
//! apart from the services, a restart with another config, and a raw HTTP/2 client.

use std::{collections::BTreeSet, net::SocketAddr};

use chatmesh_cli::{Part, Running};
use chatmesh_platform::config::Config;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinSet,
};

use crate::{TestApp, test_config};

/// The value column of the row of docs/limits.md whose limit column is `limit`.
pub fn documented_limit(limit: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/limits.md");
    let text = std::fs::read_to_string(&path).expect("docs/limits.md");
    let row = text
        .lines()
        .find_map(|line| line.strip_prefix(&format!("| {limit} |")))
        .unwrap_or_else(|| panic!("docs/limits.md has no row {limit:?}"));
    row.split('|').next().unwrap_or_default().trim().to_owned()
}

/// A TCP proxy in front of `upstream` that, while held, forwards nothing the client sends:
/// the client's calls stay in flight until [`Gate::release`].
pub struct Gate {
    pub addr: SocketAddr,
    open: watch::Sender<bool>,
    proxy: tokio::task::JoinHandle<()>,
}

impl Gate {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("gate binds");
        let addr = listener.local_addr().expect("gate address");
        let (open, _) = watch::channel(true);
        let gate = open.clone();
        let proxy = tokio::spawn(async move {
            // why: dropping the set (the gate) ends every connection it carries
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let mut open = gate.subscribe();
                connections.spawn(async move {
                    let mut buf = vec![0; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        // why: checked after reading, so nothing sent after `hold` passes
                        if open.wait_for(|open| *open).await.is_err()
                            || server_write.write_all(&buf[..n]).await.is_err()
                        {
                            return;
                        }
                    }
                });
                connections.spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
            }
        });
        Self { addr, open, proxy }
    }

    /// From now on, what clients send waits at the gate.
    pub fn hold(&self) {
        self.open.send_replace(false);
    }

    /// Lets what waited through, and everything after.
    pub fn release(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.proxy.abort();
    }
}

/// Parts of chatmesh started in this process beside a [`TestApp`], stopped when dropped.
pub struct Parts {
    running: Running,
}

impl Parts {
    pub fn ws_addr(&self) -> SocketAddr {
        self.running.ws_addr.expect("WebSocket listener")
    }
}

impl Drop for Parts {
    fn drop(&mut self) {
        self.running.shutdown_token().cancel();
    }
}

/// A WebSocket gateway of its own (the app's keys), calling the chat part at `chat` and the
/// app's dispatcher directly.
pub async fn ws_gateway(app: &TestApp, chat: SocketAddr) -> Parts {
    let mut config = test_config(app.data_dir.clone());
    config.peers.chat = format!("http://{chat}");
    config.peers.dispatcher = format!("http://{}", app.grpc_addr);
    let parts = BTreeSet::from([Part::Ws]);
    let running = chatmesh_cli::start(config, &parts).await.expect("the WebSocket gateway starts");
    Parts { running }
}

impl TestApp {
    /// Stops and starts again on the same data dir with `config` (its data dir is replaced).
    pub async fn restart_with(mut self, mut config: Config) -> Self {
        let dir = self._dir.take();
        config.data_dir = self.data_dir.clone();
        self.running.take().expect("running").stop().await.expect("clean stop");
        let mut app = Self::spawn_with(config).await;
        app._dir = dir;
        app
    }
}

/// A raw HTTP/2 client: frames as bytes, headers as HPACK literals (RFC 9113, RFC 7541).
pub mod h2 {
    use std::net::SocketAddr;

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const REFUSED_STREAM: u32 = 0x7;
    pub const CANCEL: u32 = 0x8;

    #[derive(Debug, Clone)]
    pub struct Frame {
        pub kind: u8,
        pub flags: u8,
        pub stream: u32,
        pub payload: Vec<u8>,
    }

    pub struct Connection {
        socket: TcpStream,
        authority: String,
    }

    impl Connection {
        /// Connects, exchanges SETTINGS, and returns the server's settings (id, value).
        pub async fn open(addr: SocketAddr) -> (Self, Vec<(u16, u32)>) {
            let socket = TcpStream::connect(addr).await.expect("connects");
            let mut connection = Self { socket, authority: addr.to_string() };
            connection.socket.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.expect("preface");
            connection.send(SETTINGS, 0, 0, &[]).await;
            loop {
                let frame = connection.read().await.expect("the server's SETTINGS");
                if frame.kind == SETTINGS && frame.flags & ACK == 0 {
                    connection.send(SETTINGS, ACK, 0, &[]).await;
                    let settings = frame
                        .payload
                        .chunks_exact(6)
                        .map(|s| (u16::from_be_bytes([s[0], s[1]]), u32::from_be_bytes([s[2], s[3], s[4], s[5]])))
                        .collect();
                    return (connection, settings);
                }
            }
        }

        pub async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
            let mut frame = Vec::with_capacity(9 + payload.len());
            frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
            frame.extend_from_slice(&[kind, flags]);
            frame.extend_from_slice(&stream.to_be_bytes());
            frame.extend_from_slice(payload);
            self.socket.write_all(&frame).await.expect("writes a frame");
        }

        /// The next frame, or `None` once the server closed the connection.
        pub async fn read(&mut self) -> Option<Frame> {
            let mut head = [0; 9];
            self.socket.read_exact(&mut head).await.ok()?;
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0; len];
            self.socket.read_exact(&mut payload).await.ok()?;
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            Some(Frame { kind: head[3], flags: head[4], stream, payload })
        }

        /// Opens `stream` with a gRPC call of `path` carrying `message` (the client half closed).
        pub async fn grpc_call(&mut self, stream: u32, path: &str, message: &[u8]) {
            let mut block = Vec::new();
            for (name, value) in [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", self.authority.as_str()),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ] {
                literal(&mut block, name, value);
            }
            self.send(HEADERS, END_HEADERS, stream, &block).await;
            let mut body = vec![0];
            body.extend_from_slice(&(message.len() as u32).to_be_bytes());
            body.extend_from_slice(message);
            self.send(DATA, END_STREAM, stream, &body).await;
        }
    }

    /// A header field as a literal without indexing, lengths under 127 (RFC 7541 §6.2.2).
    fn literal(block: &mut Vec<u8>, name: &str, value: &str) {
        assert!(name.len() < 127 && value.len() < 127, "short header fields only");
        block.push(0);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
}
