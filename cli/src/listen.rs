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
    let timer = || async move {
        tokio::time::sleep(grace).await;
        tracing::warn!("{name}: connections still open after {grace:?}; closing them");
    };
    drained_within(stop, timer, serve).await
}

/// [`drained`] with its grace period as a timer started at `stop` (a test's clock stands in).
async fn drained_within<Timer: Future<Output = ()>>(
    stop: &CancellationToken,
    grace: impl FnOnce() -> Timer,
    serve: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::pin!(serve);
    let deadline = async {
        stop.cancelled().await;
        grace().await;
    };
    tokio::select! {
        result = &mut serve => result,
        () = deadline => Ok(()),
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures::FutureExt as _;

    use super::*;

    #[tokio::test]
    async fn a_server_that_never_drains_is_given_up_when_the_grace_period_after_stop_ends() {
        let stop = CancellationToken::new();
        // the grace period's clock: started by the drain, run out by the test
        let started = AtomicBool::new(false);
        let (run_out, ran_out) = tokio::sync::oneshot::channel::<()>();
        let grace = || {
            started.store(true, Ordering::SeqCst);
            async { ran_out.await.unwrap_or_default() }
        };
        let run = drained_within(&stop, grace, futures::future::pending());
        tokio::pin!(run);
        assert!((&mut run).now_or_never().is_none(), "serving before the stop");
        assert!(!started.load(Ordering::SeqCst), "the grace period starts at the stop, not before");
        stop.cancel();
        assert!((&mut run).now_or_never().is_none(), "draining within the grace period");
        assert!(started.load(Ordering::SeqCst));
        run_out.send(()).unwrap();
        assert!(matches!((&mut run).now_or_never(), Some(Ok(()))), "given up once the grace period ran out");
    }

    #[tokio::test]
    async fn a_server_that_drains_within_the_grace_period_ends_with_its_own_result() {
        let stop = CancellationToken::new();
        let served = stop.clone().cancelled_owned().map(|()| Err(anyhow::anyhow!("served with an error")));
        let run = drained_within(&stop, futures::future::pending, served);
        tokio::pin!(run);
        stop.cancel();
        let ended = (&mut run).now_or_never().expect("ends as soon as the server has drained");
        assert_eq!(ended.unwrap_err().to_string(), "served with an error");
    }
}
