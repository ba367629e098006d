//! Listeners: binding, serving until the process stops, and draining within a grace period.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use chatmesh_platform::{config::Config, grpc::PlatformLayer, shutdown::CancellationToken};
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::background::Background;

impl Background {
    /// Binds a gRPC listener serving `routes` behind `layer`, with the settings of `[grpc]`;
    /// returns its address.
    pub(crate) async fn serve_grpc(
        &mut self,
        (name, addr): (&'static str, SocketAddr),
        config: &Config,
        layer: PlatformLayer,
        routes: Routes,
    ) -> anyhow::Result<SocketAddr> {
        let listener = bind(name, addr).await?;
        let bound = listener.local_addr()?;
        let server = tonic::transport::Server::builder()
            .max_concurrent_streams(config.grpc.max_concurrent_streams)
            .http2_keepalive_interval(Some(Duration::from_secs(config.grpc.keepalive_secs)))
            .layer(layer)
            .add_routes(routes);
        let stop = self.shutdown.clone();
        let grace = Duration::from_secs(config.grpc.drain_secs);
        self.spawn(async move {
            use tokio_stream::StreamExt as _;
            // why: without TCP_NODELAY a reply spanning two segments waits out the peer's delayed ACK (~40 ms).
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener)
                .map(|stream| stream.and_then(|s| s.set_nodelay(true).map(|()| s)));
            let serve = server.serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
            drained(name, &stop, grace, async { serve.await.with_context(|| format!("{name} server")) }).await
        });
        Ok(bound)
    }

    /// Binds an HTTP listener serving `router`, drained within `grace`; returns its address.
    pub(crate) async fn serve_http(
        &mut self,
        (name, addr): (&'static str, SocketAddr),
        grace: Duration,
        router: axum::Router,
    ) -> anyhow::Result<SocketAddr> {
        let listener = bind(name, addr).await?;
        let bound = listener.local_addr()?;
        let stop = self.shutdown.clone();
        self.spawn(async move {
            use axum::serve::ListenerExt as _;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let serve = axum::serve(listener, router).with_graceful_shutdown(stop.clone().cancelled_owned());
            drained(name, &stop, grace, async { serve.await.with_context(|| format!("{name} server")) }).await
        });
        Ok(bound)
    }

    /// Serves the metrics and the process's probes on `[metrics] listen`.
    pub(crate) async fn serve_metrics(&mut self, config: &Config) -> anyhow::Result<SocketAddr> {
        let router = metrics_router(self.shutdown.clone());
        self.serve_http(("metrics", config.metrics.listen), Duration::from_secs(1), router).await
    }
}

/// Binds `name`'s listener on `addr`, saying where it listens.
pub(crate) async fn bind(name: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {name} on {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "{name} listening");
    Ok(listener)
}

/// Runs a server until it has drained after `stop`, or until `grace` has passed since `stop`:
/// a client that keeps an idle connection open must not hold the process past its grace period.
async fn drained(
    name: &str,
    stop: &CancellationToken,
    grace: Duration,
    serve: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::pin!(serve);
    let deadline = async {
        stop.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = &mut serve => result,
        () = deadline => {
            tracing::warn!("{name}: connections still open after {grace:?}; closing them");
            Ok(())
        }
    }
}

/// `GET /metrics` in the Prometheus text format (one recorder serves the whole process), and
/// the process's probes: `/healthz` (alive) and `/readyz` (503 once draining) — the HTTP probes
/// of parts with no HTTP listener of their own, such as the WebSocket gateway.
fn metrics_router(shutdown: CancellationToken) -> axum::Router {
    let handle = chatmesh_platform::telemetry::prometheus();
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let body = handle.as_ref().map(|h| h.render()).unwrap_or_default();
                async move { ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(
            "/readyz",
            axum::routing::get(move || {
                let draining = shutdown.is_cancelled();
                async move {
                    match draining {
                        true => (http::StatusCode::SERVICE_UNAVAILABLE, "draining"),
                        false => (http::StatusCode::OK, "ready"),
                    }
                }
            }),
        )
}
