//! A started process: its bound addresses, and how it stops.

use std::{net::SocketAddr, path::Path, sync::Arc};

use anyhow::Context as _;
use chatmesh_platform::{
    auth::Authenticator,
    grpc::{GrpcChannel, LateChannel},
    shutdown::CancellationToken,
};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::background::Stopping;

/// A running process: its bound addresses, and how to stop it.
#[derive(Debug)]
pub struct Running {
    /// The gRPC listener, when a gRPC part runs here (public services only when an
    /// internal listener is configured).
    pub grpc_addr: Option<SocketAddr>,
    /// The internal gRPC listener (every service), when configured.
    pub internal_grpc_addr: Option<SocketAddr>,
    pub rest_addr: Option<SocketAddr>,
    pub ws_addr: Option<SocketAddr>,
    /// Where Prometheus metrics are served, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// The process's own routes behind the platform layer stack (no socket).
    pub in_process: Option<GrpcChannel>,
    pub auth: Arc<Authenticator>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: Stopping,
    pub(crate) health: Option<Health>,
    /// The in-process transport between parts; dropping it frees the parts and their stores.
    pub(crate) _local: Option<LateChannel>,
}

/// Where a process listens, as its ready file (`--ready-file`) reports it: one `host:port` per
/// bound listener, absent listeners left out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listening {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_grpc: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rest: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ws: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
}

impl Listening {
    /// Writes these addresses to `path` as JSON, atomically (a file beside it, then renamed):
    /// a reader finds no file or a complete one.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(format!(".{}.tmp", std::process::id()));
        let json = serde_json::to_vec(self)?;
        std::fs::write(&partial, json).with_context(|| format!("writing {}", Path::new(&partial).display()))?;
        std::fs::rename(&partial, path).with_context(|| format!("writing the ready file {}", path.display()))
    }
}

/// The health reporter and every service name it reports on.
#[derive(Debug)]
pub(crate) struct Health {
    pub(crate) reporter: HealthReporter,
    pub(crate) served: Vec<&'static str>,
}

impl Running {
    /// Nothing bound yet; `shutdown` stops what will be.
    pub(crate) fn new(auth: Arc<Authenticator>, shutdown: CancellationToken) -> Self {
        Self {
            grpc_addr: None,
            internal_grpc_addr: None,
            rest_addr: None,
            ws_addr: None,
            metrics_addr: None,
            in_process: None,
            auth,
            shutdown,
            tasks: Stopping::default(),
            health: None,
            _local: None,
        }
    }

    /// Every listener's bound address.
    pub fn listening(&self) -> Listening {
        Listening {
            grpc: self.grpc_addr,
            internal_grpc: self.internal_grpc_addr,
            rest: self.rest_addr,
            ws: self.ws_addr,
            metrics: self.metrics_addr,
        }
    }

    /// A token that stops the process when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the shutdown token is cancelled, reports NOT_SERVING, drains, and returns.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        self.shutdown.cancelled().await;
        self.drain().await
    }

    /// Stops now: NOT_SERVING, then drain.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.drain().await
    }

    /// NOT_SERVING, then the listeners drain while the feed relays run; then the relays' final
    /// pass; then the node id is released.
    async fn drain(&mut self) -> anyhow::Result<()> {
        // why: readiness fails first, so balancers stop sending before the listeners close.
        if let Some(health) = &self.health {
            for name in &health.served {
                health.reporter.set_service_status(*name, ServingStatus::NotServing).await;
            }
        }
        self.shutdown.cancel();
        self.tasks.stop().await
    }
}
