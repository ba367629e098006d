//! Listeners: binding, admitting connections (a cap per client address, a deadline for the
//! first bytes, a header timeout), serving until the process stops, and draining within a
//! grace period.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use chatmesh_platform::{
    config::{Config, RestConfig},
    connections::{Guarded, SourceCap},
    grpc::PlatformLayer,
    shutdown::CancellationToken,
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{net::TcpListener, task::JoinSet};
use tonic::service::Routes;

use crate::background::Background;

/// How an HTTP listener treats its connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpSettings {
    /// How long a stop waits for requests in flight.
    pub(crate) grace: Duration,
    /// How long a request's headers (and a new connection's first bytes) may take to arrive.
    pub(crate) header_timeout: Duration,
    /// Open connections per client address (0: no cap).
    pub(crate) per_source: usize,
}

impl HttpSettings {
    /// The REST gateway's listener, from `[rest]`.
    pub(crate) fn rest(rest: &RestConfig) -> Self {
        Self {
            grace: Duration::from_secs(rest.drain_secs),
            header_timeout: Duration::from_secs(rest.header_timeout_secs.max(1)),
            per_source: rest.max_connections_per_source,
        }
    }
}

/// Ping interval of HTTP/2 connections on HTTP listeners, which find dead peers with it.
const HTTP2_KEEPALIVE: Duration = Duration::from_secs(45);

impl Background {
    /// Binds a gRPC listener serving `routes` behind `layer`, with the settings of `[grpc]`,
    /// and at most `per_source` open connections per client address (0: no cap); returns its
    /// address.
    pub(crate) async fn serve_grpc(
        &mut self,
        (name, addr): (&'static str, SocketAddr),
        config: &Config,
        layer: PlatformLayer,
        routes: Routes,
        per_source: usize,
    ) -> anyhow::Result<SocketAddr> {
        let listener = bind(name, addr).await?;
        let bound = listener.local_addr()?;
        let server = tonic::transport::Server::builder()
            .max_concurrent_streams(config.grpc.max_concurrent_streams)
            .http2_keepalive_interval(Some(Duration::from_secs(config.grpc.keepalive_secs)))
            .http2_keepalive_timeout(Some(Duration::from_secs(config.grpc.keepalive_timeout_secs)))
            .layer(layer)
            .add_routes(routes);
        let stop = self.shutdown.clone();
        let grace = Duration::from_secs(config.grpc.drain_secs);
        let handshake = Duration::from_secs(config.grpc.handshake_timeout_secs.max(1));
        let cap = SourceCap::new(name, per_source);
        self.spawn(async move {
            use tokio_stream::StreamExt as _;
            // why: the HTTP/2 server waits for the client's preface without a deadline of its
            // own; keepalive pings only begin once it has arrived.
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).filter_map(move |accepted| {
                let stream = match accepted {
                    Ok(stream) => stream,
                    Err(e) => return Some(Err(e)),
                };
                // why: without TCP_NODELAY a reply spanning two segments waits out the peer's delayed ACK (~40 ms).
                let _ = stream.set_nodelay(true);
                // a connection refused here is dropped, which closes it
                let permit = cap.admit(stream.peer_addr().ok()?.ip())?;
                Some(Ok(Guarded::new(stream, permit, handshake)))
            });
            let serve = server.serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
            drained(name, &stop, grace, async { serve.await.with_context(|| format!("{name} server")) }).await
        });
        Ok(bound)
    }

    /// Binds an HTTP listener serving `router` with `settings`; returns its address.
    pub(crate) async fn serve_http(
        &mut self,
        (name, addr): (&'static str, SocketAddr),
        settings: HttpSettings,
        router: axum::Router,
    ) -> anyhow::Result<SocketAddr> {
        let listener = bind(name, addr).await?;
        let bound = listener.local_addr()?;
        let stop = self.shutdown.clone();
        self.spawn(async move {
            let serve = http_connections(name, listener, settings, router, stop.clone());
            drained(name, &stop, settings.grace, async {
                serve.await;
                Ok(())
            })
            .await
        });
        Ok(bound)
    }

    /// Serves the metrics and the process's probes on `[metrics] listen`.
    pub(crate) async fn serve_metrics(&mut self, config: &Config) -> anyhow::Result<SocketAddr> {
        let router = metrics_router(self.started.clone(), self.shutdown.clone());
        // why: scraped by the cluster's own collector, never by clients: no cap per address
        let settings =
            HttpSettings { grace: Duration::from_secs(1), header_timeout: Duration::from_secs(10), per_source: 0 };
        self.serve_http(("metrics", config.metrics.listen), settings, router).await
    }
}

/// Serves HTTP/1.1 and HTTP/2 (prior knowledge) on `listener` until `stop`, then waits for the
/// requests in flight; dropped, it closes every connection. A connection is closed when its
/// address already holds `per_source` others, when its first bytes or a request's headers take
/// longer than `header_timeout`, or when it idles that long between requests.
async fn http_connections(
    name: &'static str,
    listener: TcpListener,
    settings: HttpSettings,
    router: axum::Router,
    stop: CancellationToken,
) {
    use tower::ServiceExt as _;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(settings.header_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(HTTP2_KEEPALIVE);
    let cap = SourceCap::new(name, settings.per_source);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        let (stream, remote) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "{name}: accept failed");
                    // why: an exhausted descriptor table fails every accept at once; retrying
                    // without a pause would spin a core
                    if !matches!(e.kind(), std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        // a connection refused here is dropped, which closes it
        let Some(permit) = cap.admit(remote.ip()) else { continue };
        // why: without TCP_NODELAY a reply spanning two segments waits out the peer's delayed ACK (~40 ms).
        let _ = stream.set_nodelay(true);
        // why: the protocol is not known before the first bytes, and hyper's header timeout
        // starts only once it is
        let io = TokioIo::new(Guarded::new(stream, permit, settings.header_timeout));
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(axum::extract::ConnectInfo(remote));
            router.clone().oneshot(request)
        });
        let connection = graceful.watch(builder.serve_connection(io, service).into_owned());
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "{name}: connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
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
/// the process's probes: `/healthz` (alive) and `/readyz` (503 until every part of the process
/// has started — `started` cancelled — and again once draining) — the HTTP probes of parts with
/// no HTTP listener of their own, such as the WebSocket gateway.
fn metrics_router(started: CancellationToken, shutdown: CancellationToken) -> axum::Router {
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
                let answer = match (started.is_cancelled(), shutdown.is_cancelled()) {
                    (_, true) => (http::StatusCode::SERVICE_UNAVAILABLE, "draining"),
                    (false, false) => (http::StatusCode::SERVICE_UNAVAILABLE, "starting"),
                    (true, false) => (http::StatusCode::OK, "ready"),
                };
                async move { answer }
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

    /// `/readyz` is 503 while the process starts (its listeners may not be bound yet), 200 once
    /// it has started, and 503 again from the moment it drains.
    #[tokio::test]
    async fn ready_only_between_start_up_and_the_drain() {
        use tower::ServiceExt as _;
        let (started, shutdown) = (CancellationToken::new(), CancellationToken::new());
        let router = metrics_router(started.clone(), shutdown.clone());
        let ready = || async {
            let request = http::Request::get("/readyz").body(axum::body::Body::empty()).unwrap();
            router.clone().oneshot(request).await.unwrap().status().as_u16()
        };
        assert_eq!(ready().await, 503, "still starting");
        started.cancel();
        assert_eq!(ready().await, 200);
        shutdown.cancel();
        assert_eq!(ready().await, 503, "draining");
    }
}
