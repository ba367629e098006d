//! `chatmesh`: one binary for the whole mesh. `up` runs everything on embedded storage;
//! `serve <part>…` runs some parts (what each Kubernetes Deployment runs); `admin` manages keys,
//! rebuilds the search index and reports a running server's status.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use chatmesh_cli::{Part, admin, start};
use chatmesh_platform::{
    auth::KeyRing,
    config::Config,
    shutdown::{self, CancellationToken},
    telemetry,
};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

/// chatmesh: a chat and social-messaging backend (gRPC services, REST and WebSocket gateways).
#[derive(Debug, Parser)]
#[command(name = "chatmesh", version, about, long_about = None)]
struct Cli {
    /// Config file (TOML); settings there are overridden by CHATMESH_* variables, then by flags.
    #[arg(long, short = 'c', global = true, env = "CHATMESH_CONFIG", default_value = "chatmesh.toml")]
    config: PathBuf,
    /// Where embedded stores and generated keys live [default: ./chatmesh-data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Node id of this process in generated ids, 0..=1023 [default: 0].
    #[arg(long, global = true)]
    node_id: Option<u16>,
    /// Log format: text or json [default: text].
    #[arg(long, global = true)]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every service and both gateways in this process, on embedded storage.
    Up(Listeners),
    /// Run the named parts in this process: user, channel, chat, dispatcher, indexer, rest, ws.
    Serve {
        #[arg(required = true, num_args = 1..)]
        parts: Vec<Part>,
        #[command(flatten)]
        listeners: Listeners,
    },
    /// Administration commands.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, Args)]
struct Listeners {
    /// gRPC listen address [default: 127.0.0.1:50051].
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    /// REST gateway listen address [default: 127.0.0.1:8080].
    #[arg(long)]
    rest_listen: Option<SocketAddr>,
    /// WebSocket gateway listen address [default: 127.0.0.1:8081].
    #[arg(long)]
    ws_listen: Option<SocketAddr>,
    /// Prometheus metrics listen address [default: 127.0.0.1:9464].
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Once every listener is bound, write their addresses there as JSON (atomically), e.g.
    /// {"grpc":"127.0.0.1:41234","rest":…,"ws":…,"metrics":…}: with port 0 this is how to
    /// learn the ports. Removed at start and on a clean stop.
    #[arg(long, env = "CHATMESH_READY_FILE")]
    ready_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Rebuild the search index from the chat store. Offline: stop the server using the data
    /// dir first; the new index replaces the old one only once it is complete.
    Reindex,
    /// Compare the search index with the chat store (offline for the store: stop the server
    /// using the data dir first); exits non-zero when they differ.
    VerifyIndex {
        /// Print JSON (with the ids of every differing chat) instead of counts.
        #[arg(long)]
        json: bool,
    },
    /// Create the ScyllaDB keyspace (`[store.scylla]`) if needed and apply the schema
    /// migrations not yet applied there; safe to run again.
    Migrate,
    /// Give an account a role on a running server: `grant admin ada@example.com` makes it an
    /// admin (it may then list and resolve reports, suspend and delete users), `grant user …`
    /// takes that back.
    Grant {
        role: RoleArg,
        /// The account's email.
        email: String,
        /// The server's gRPC address [default: the configured grpc.listen].
        #[arg(long)]
        grpc: Option<String>,
    },
    /// Health and search-index lag of a running server.
    Status {
        /// The server's gRPC address [default: the configured grpc.listen].
        #[arg(long)]
        grpc: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// A role `chatmesh admin grant` sets.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    Admin,
    User,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Generate a new signing key; older keys keep verifying. Servers load it on their next start.
    Rotate {
        /// Rotate the service-principal key instead of the user-token key.
        #[arg(long)]
        service: bool,
    },
    /// Remove an old key: tokens it signed stop verifying when the servers restart. Wait at
    /// least the tokens' lifetime after a rotation (15 min for access tokens) before retiring.
    Retire {
        /// The key id (`chatmesh admin keys list` shows them).
        kid: String,
        /// A key of the service-principal ring instead of the user-token ring.
        #[arg(long)]
        service: bool,
    },
    /// The keys of a ring, the signing one marked.
    List {
        /// The service-principal ring instead of the user-token ring.
        #[arg(long)]
        service: bool,
    },
    /// Write the public key of every key in the ring to DIR as `<kid>.pub` (PEM): what the parts
    /// that only verify tokens load (in Kubernetes, every part but `user` mounts them instead
    /// of the private keys). Files of other kids already in DIR are left: empty it first to
    /// publish exactly the ring's keys.
    ExportPublic {
        /// The service-principal ring instead of the user-token ring.
        #[arg(long)]
        service: bool,
        /// Where to write the `<kid>.pub` files (created if needed).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// The flags that override config, as a partial config document.
#[derive(Debug, Default, Serialize)]
struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_id: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rest: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ws: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<serde_json::Value>,
}

fn overrides(cli: &Cli) -> Overrides {
    let listen = |a: Option<SocketAddr>| a.map(|a| serde_json::json!({ "listen": a.to_string() }));
    let listeners = match &cli.command {
        Command::Up(l) | Command::Serve { listeners: l, .. } => Some(l),
        Command::Admin { .. } => None,
    };
    Overrides {
        data_dir: cli.data_dir.clone(),
        node_id: cli.node_id,
        log: cli.log_format.as_ref().map(|f| serde_json::json!({ "format": f })),
        grpc: listeners.and_then(|l| listen(l.grpc_listen)),
        rest: listeners.and_then(|l| listen(l.rest_listen)),
        ws: listeners.and_then(|l| listen(l.ws_listen)),
        metrics: listeners.and_then(|l| listen(l.metrics_listen)),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = cli.config.exists().then_some(cli.config.as_path());
    let config = match Config::load(file, overrides(&cli)) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("chatmesh: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    // why: before any start-up work, which may wait minutes (Redis, a node-id lease, the
    // schema): until a handler is installed, SIGTERM kills the process mid-start, and as a
    // container's PID 1 it is ignored altogether. Admin commands keep the default: Ctrl-C ends them.
    let stop = match &cli.command {
        Command::Up(_) | Command::Serve { .. } => match shutdown::on_signal() {
            Ok(stop) => stop,
            Err(e) => {
                eprintln!("chatmesh: installing the signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        },
        Command::Admin { .. } => CancellationToken::new(),
    };
    let telemetry = telemetry::init(&config.log, &config.telemetry, &service_name(&cli.command));
    let result = run(cli.command, config, stop).await;
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatmesh: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `service.name` of this process's telemetry: `chatmesh-up`, `chatmesh-chat`,
/// `chatmesh-channel+chat`, `chatmesh-admin`.
fn service_name(command: &Command) -> String {
    match command {
        Command::Up(_) => "chatmesh-up".into(),
        Command::Serve { parts, .. } => {
            let parts: BTreeSet<String> = parts.iter().map(|p| format!("{p:?}").to_lowercase()).collect();
            format!("chatmesh-{}", parts.into_iter().collect::<Vec<_>>().join("+"))
        }
        Command::Admin { .. } => "chatmesh-admin".into(),
    }
}

async fn run(command: Command, config: Config, stop: CancellationToken) -> anyhow::Result<()> {
    let (parts, ready_file): (BTreeSet<Part>, _) = match command {
        Command::Up(listeners) => (Part::ALL.into_iter().collect(), listeners.ready_file),
        Command::Serve { parts, listeners } => (parts.into_iter().collect(), listeners.ready_file),
        Command::Admin { command } => return admin(command, config).await,
    };
    // why: a file left by an earlier run must not be read as this run's addresses.
    if let Some(path) = &ready_file {
        remove_ready_file(path)?;
    }
    let running = tokio::select! {
        started = start(config, &parts) => started?,
        () = stop.cancelled() => {
            // why: nothing serves yet and nothing was acknowledged: stopping is dropping
            tracing::info!("stopped during start-up");
            return Ok(());
        }
    };
    let stopping = running.shutdown_token();
    tokio::spawn(async move {
        stop.cancelled().await;
        stopping.cancel();
    });
    if let Some(addr) = running.grpc_addr {
        println!("chatmesh: gRPC on {addr}");
    }
    if let Some(addr) = running.internal_grpc_addr {
        println!("chatmesh: internal gRPC on {addr}");
    }
    if let Some(addr) = running.rest_addr {
        println!("chatmesh: REST on http://{addr}");
    }
    if let Some(addr) = running.ws_addr {
        println!("chatmesh: WebSocket on ws://{addr}");
    }
    if let Some(addr) = running.metrics_addr {
        println!("chatmesh: metrics on http://{addr}/metrics");
    }
    if let Some(path) = &ready_file {
        running.listening().write(path)?;
    }
    running.wait().await?;
    if let Some(path) = &ready_file {
        remove_ready_file(path)?;
    }
    tracing::info!("stopped");
    Ok(())
}

fn remove_ready_file(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing the ready file {}", path.display()))
        }
        _ => Ok(()),
    }
}

async fn admin(command: AdminCommand, config: Config) -> anyhow::Result<()> {
    match command {
        AdminCommand::Keys { command } => {
            let ring = |service: bool| config.data_dir.join("keys").join(if service { "service" } else { "user" });
            match command {
                KeysCommand::Rotate { service } => {
                    let dir = ring(service);
                    let kid = KeyRing::rotate(&dir)?;
                    println!("new signing key {kid} in {}; restart the servers to sign with it", dir.display());
                }
                KeysCommand::Retire { kid, service } => {
                    let left = KeyRing::retire(&ring(service), &kid)?;
                    println!("retired {kid}; left: {}; restart the servers to stop accepting it", left.join(", "));
                }
                KeysCommand::List { service } => {
                    let keys = KeyRing::load(&ring(service))?;
                    for kid in keys.kids() {
                        let signing = if Some(kid.as_str()) == keys.current_kid() { " (signing)" } else { "" };
                        println!("{kid}{signing}");
                    }
                }
                KeysCommand::ExportPublic { service, out } => {
                    let written = KeyRing::load(&ring(service))?.export_public(&out)?;
                    for kid in &written {
                        println!("{}", out.join(format!("{kid}.pub")).display());
                    }
                }
            }
            Ok(())
        }
        AdminCommand::Migrate => chatmesh_cli::stores::migrate(&config).await,
        AdminCommand::Reindex => admin::reindex(&config).await,
        AdminCommand::VerifyIndex { json } => admin::verify_index(&config, json).await,
        AdminCommand::Status { grpc, json } => admin::status(&config, grpc, json).await,
        AdminCommand::Grant { role, email, grpc } => {
            admin::grant(&config, grpc, &email, matches!(role, RoleArg::Admin)).await
        }
    }
}
