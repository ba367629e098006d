//! The one layer stack every gRPC server runs, in-process or on a socket: authentication,
//! per-user rate limits, a default deadline, and decode errors answered as INVALID_ARGUMENT.

use std::{
    collections::HashSet,
    convert::Infallible,
    num::NonZeroU32,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use http::{Request, Response};
use tonic::{Code, Status, body::Body};
use tower::{Layer, Service, ServiceExt, util::BoxCloneSyncService};

use crate::{
    auth::{AuthError, Authenticator, Caller},
    config::Config,
    error::rate_limited,
};

/// RPCs anyone may call without a token.
pub const OPEN_METHODS: &[&str] = &[
    "/chatmesh.user.v1.UserService/CreateUser",
    "/chatmesh.user.v1.UserService/Login",
    "/chatmesh.user.v1.UserService/RefreshToken",
];

/// Services anyone may call without a token (health and reflection).
pub const OPEN_SERVICES: &[&str] =
    &["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A transport failure of a [`GrpcChannel`] (connection refused, reset, ...).
// why: a concrete error type, not a boxed one, keeps generated clients usable in
// `async_trait` methods (a boxed error there trips a higher-ranked lifetime inference bug).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TransportError(#[from] BoxError);

/// A gRPC transport usable by every generated client: either a tonic `Channel` to another
/// process, or the server's own routes wrapped in this layer stack (no socket).
pub type GrpcChannel = BoxCloneSyncService<Request<Body>, Response<Body>, TransportError>;

/// Wraps a tonic `Channel` (a remote part) as a [`GrpcChannel`].
pub fn remote_channel(channel: tonic::transport::Channel) -> GrpcChannel {
    BoxCloneSyncService::new(
        ServiceExt::<Request<Body>>::map_err(channel, |e| TransportError(Box::new(e))).map_request(with_trace_context),
    )
}

/// Wraps in-process routes in the same layer stack a network call goes through.
pub fn in_process_channel(routes: tonic::service::Routes, layer: PlatformLayer) -> GrpcChannel {
    BoxCloneSyncService::new(
        ServiceExt::<Request<Body>>::map_err(layer.layer(routes), |never| match never {})
            .map_request(with_trace_context),
    )
}

/// Carries the caller's trace into the call (a no-op unless traces are exported).
fn with_trace_context(mut request: Request<Body>) -> Request<Body> {
    crate::telemetry::inject(request.headers_mut());
    request
}

/// A transport whose target is set after it is handed out: parts of one process call each
/// other in-process, but the routes exist only once every part is built.
///
/// The transports it hands out hold it weakly (the routes they reach hold those transports,
/// so a strong reference would be a cycle keeping every store open): whoever runs the parts
/// keeps the `LateChannel` alive as long as they serve.
#[derive(Clone, Default)]
pub struct LateChannel {
    target: Arc<std::sync::OnceLock<GrpcChannel>>,
}

impl std::fmt::Debug for LateChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LateChannel").field("set", &self.target.get().is_some()).finish()
    }
}

impl LateChannel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Points the transport at its target; later calls are ignored.
    pub fn set(&self, target: GrpcChannel) {
        let _ = self.target.set(target);
    }

    /// This transport as a [`GrpcChannel`].
    pub fn channel(&self) -> GrpcChannel {
        let target = Arc::downgrade(&self.target);
        BoxCloneSyncService::new(tower::service_fn(move |request: Request<Body>| {
            let target = target.upgrade().and_then(|t| t.get().cloned());
            async move {
                match target {
                    Some(mut channel) => channel.ready().await?.call(request).await,
                    None => Ok(Status::unavailable("peer not serving").into_http()),
                }
            }
        }))
    }
}

/// Attaches this part's service-principal token to outgoing internal calls, minting a new
/// one shortly before the cached one expires.
#[derive(Clone)]
pub struct ServiceAuth {
    auth: Arc<Authenticator>,
    part: &'static str,
    cached: Arc<std::sync::RwLock<(String, u64)>>, // (token, unix ms after which to mint anew)
}

impl std::fmt::Debug for ServiceAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAuth").field("part", &self.part).finish()
    }
}

impl ServiceAuth {
    pub fn new(auth: Arc<Authenticator>, part: &'static str) -> Self {
        Self { auth, part, cached: Arc::new(std::sync::RwLock::new((String::new(), 0))) }
    }

    pub(crate) fn token(&self) -> String {
        let now = crate::ids::now_ms();
        {
            let cached = self.cached.read().unwrap_or_else(|e| e.into_inner());
            if cached.1 > now {
                return cached.0.clone();
            }
        }
        let token = self.auth.issue_service(self.part);
        // why: renew at half the lifetime so a token never expires mid-call or mid-retry.
        let renew_at = now + self.auth.config().service_token_ttl_secs * 500;
        *self.cached.write().unwrap_or_else(|e| e.into_inner()) = (token.clone(), renew_at);
        token
    }
}

impl tonic::service::Interceptor for ServiceAuth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let value = format!("Bearer {}", self.token())
            .parse()
            .map_err(|_| Status::internal("service token is not valid metadata"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

/// A client transport for internal calls: `channel` with this part's service token attached.
pub type InternalChannel = tonic::service::interceptor::InterceptedService<GrpcChannel, ServiceAuth>;

pub fn internal_channel(channel: GrpcChannel, auth: ServiceAuth) -> InternalChannel {
    tonic::service::interceptor::InterceptedService::new(channel, auth)
}

/// What the layer enforces, shared by every server of a process.
pub struct Policy {
    auth: Arc<Authenticator>,
    limiter: DefaultKeyedRateLimiter<u64>,
    default_deadline: Duration,
    open_methods: HashSet<&'static str>,
    /// Calls since the limiter last forgot idle users.
    calls: std::sync::atomic::AtomicU64,
    /// The mesh-wide limiter, when several processes serve the same users.
    shared: Option<crate::shared_limits::SharedLimiter>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("default_deadline", &self.default_deadline).finish()
    }
}

impl Policy {
    pub fn new(auth: Arc<Authenticator>, config: &Config) -> Self {
        let rate = NonZeroU32::new(config.limits.user_calls_per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.limits.user_calls_burst).unwrap_or(rate);
        Self {
            auth,
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            default_deadline: config.default_deadline(),
            open_methods: OPEN_METHODS.iter().copied().collect(),
            calls: std::sync::atomic::AtomicU64::new(0),
            shared: None,
        }
    }

    /// Limits users across every process sharing `limiter` (falling back to this process's
    /// limiter when Redis does not answer).
    pub fn with_shared_limits(mut self, limiter: crate::shared_limits::SharedLimiter) -> Self {
        self.shared = Some(limiter);
        self
    }

    /// Whether `user` may make another call now.
    async fn limit(&self, user_id: u64) -> Result<(), Status> {
        if let Some(shared) = &self.shared
            && let Ok(verdict) = shared.check(user_id).await
        {
            return match verdict {
                None => Ok(()),
                Some(wait) => Err(rate_limited("too many requests", wait)),
            };
        }
        // why: the keyed limiter keeps a cell per user; forget idle ones now and then.
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10_000 == 9_999 {
            self.limiter.retain_recent();
        }
        match self.limiter.check_key(&user_id) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                Err(rate_limited("too many requests", not_until.wait_time_from(self.limiter_clock_now())))
            }
        }
    }

    /// Decides who may make this call; the caller, or the status to answer with.
    fn admit(&self, path: &str, headers: &http::HeaderMap) -> Result<Option<Caller>, Status> {
        let service = path.trim_start_matches('/').split('/').next().unwrap_or_default();
        if self.open_methods.contains(path) || OPEN_SERVICES.contains(&service) {
            return Ok(None);
        }
        let token = bearer(headers)?;
        let caller = self.auth.verify(token).map_err(|e| match e {
            AuthError::Missing => Status::unauthenticated("missing bearer token"),
            other => Status::unauthenticated(other.to_string()),
        })?;
        match (&caller, is_internal(path)) {
            (Caller::User { .. }, true) => {
                return Err(Status::permission_denied("internal rpcs accept only service principals"));
            }
            (Caller::Service { .. }, false) => {
                return Err(Status::unauthenticated("service tokens are not accepted on public rpcs"));
            }
            (Caller::User { .. }, false) | (Caller::Service { .. }, true) => {}
        }
        Ok(Some(caller))
    }

    fn limiter_clock_now(&self) -> governor::clock::QuantaInstant {
        governor::clock::DefaultClock::default().now()
    }

    /// The caller's deadline (`grpc-timeout`), capped by the server's default.
    fn deadline(&self, headers: &http::HeaderMap) -> Duration {
        headers
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map_or(self.default_deadline, |d| d.min(self.default_deadline))
    }
}

/// Whether `path` names an RPC of an internal service (only service principals may call those).
fn is_internal(path: &str) -> bool {
    path.trim_start_matches('/').split('/').next().unwrap_or_default().ends_with("InternalService")
}

fn bearer(headers: &http::HeaderMap) -> Result<&str, Status> {
    crate::auth::bearer_token(headers).map_err(|e| Status::unauthenticated(e.to_string()))
}

/// Parses a `grpc-timeout` value such as `250m` or `10S`.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The tower layer applying a [`Policy`].
#[derive(Debug, Clone)]
pub struct PlatformLayer {
    policy: Arc<Policy>,
    public_only: bool,
}

impl PlatformLayer {
    pub fn new(policy: Arc<Policy>) -> Self {
        Self { policy, public_only: false }
    }

    /// The same layer for a listener outside clients reach: internal services answer
    /// UNIMPLEMENTED there, as if they did not exist (they are served on the internal listener).
    pub fn public_only(&self) -> Self {
        Self { policy: self.policy.clone(), public_only: true }
    }
}

impl<S> Layer<S> for PlatformLayer {
    type Service = PlatformService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PlatformService { inner, policy: self.policy.clone(), public_only: self.public_only }
    }
}

#[derive(Debug, Clone)]
pub struct PlatformService<S> {
    inner: S,
    policy: Arc<Policy>,
    public_only: bool,
}

impl<S, B> Service<Request<B>> for PlatformService<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // why: take the service that was driven ready, leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy.clone();
        let path = request.uri().path().to_owned();
        let labels = crate::telemetry::rpc_labels(&path);
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = labels.name,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = labels.service,
            rpc.method = labels.method,
            rpc.grpc.status_code = tracing::field::Empty,
            request_id = tracing::field::Empty,
        );
        // why: only a caller's id is recorded here; one made for an error is logged with it.
        let request_id = crate::request_id::from_headers(request.headers());
        if let Some(id) = &request_id {
            span.record("request_id", id.as_str());
        }
        crate::telemetry::adopt(&span, request.headers());
        let started = std::time::Instant::now();
        let hidden = self.public_only && is_internal(&path);
        let handled = Box::pin(crate::request_id::scope(request_id, async move {
            if hidden {
                return Ok::<_, Infallible>(
                    Status::unimplemented("this service is not served on this listener").into_http(),
                );
            }
            match policy.admit(&path, request.headers()) {
                Ok(Some(caller)) => {
                    if let Caller::User { user_id, .. } = &caller
                        && let Err(status) = policy.limit(*user_id).await
                    {
                        return Ok(status.into_http());
                    }
                    request.extensions_mut().insert(caller);
                }
                Ok(None) => {}
                Err(status) => return Ok(status.into_http()),
            }
            let deadline = policy.deadline(request.headers());
            let response = match tokio::time::timeout(deadline, inner.call(request)).await {
                Ok(response) => response?,
                Err(_) => return Ok(Status::deadline_exceeded("deadline exceeded").into_http()),
            };
            Ok(remap_decode_error(response))
        }));
        let recorded = span.clone();
        Box::pin(tracing::Instrument::instrument(
            async move {
                let response = handled.await?;
                // why: an error answered at once travels in the headers (trailers-only); a
                // stream that fails later is counted when it began, as OK.
                let code = Status::from_header_map(response.headers()).map_or(Code::Ok, |s| s.code());
                recorded.record("rpc.grpc.status_code", code as i32);
                let (service, method) = (labels.service, labels.method);
                metrics::histogram!("chatmesh_rpc_server_duration_seconds", "service" => service, "method" => method)
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!(
                    "chatmesh_rpc_server_requests_total",
                    "service" => service,
                    "method" => method,
                    "code" => code_name(code)
                )
                .increment(1);
                Ok(response)
            },
            span,
        ))
    }
}

/// The canonical name of a status code, as metrics label it (`OK`, `NOT_FOUND`, ...).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Tonic answers an undecodable request (bad protobuf, invalid UTF-8) with INTERNAL; it is the
/// caller's fault, so it becomes INVALID_ARGUMENT with the decoder's message (which names the field).
fn remap_decode_error(response: Response<Body>) -> Response<Body> {
    match Status::from_header_map(response.headers()) {
        Some(status) if status.code() == Code::Internal && status.message().starts_with("failed to decode") => {
            Status::invalid_argument(status.message().to_owned()).into_http()
        }
        _ => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthConfig;

    fn policy(dir: &std::path::Path, deadline_ms: u64) -> (Arc<Authenticator>, Arc<Policy>) {
        let auth = Arc::new(Authenticator::from_data_dir(AuthConfig::default(), dir).unwrap());
        let mut config = Config::default();
        config.grpc.default_deadline_ms = deadline_ms;
        config.limits.user_calls_per_sec = 1;
        config.limits.user_calls_burst = 3;
        (auth.clone(), Arc::new(Policy::new(auth, &config)))
    }

    fn request(path: &str, token: Option<&str>) -> Request<Body> {
        let mut builder = Request::builder().uri(format!("http://localhost{path}"));
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        builder.body(Body::empty()).unwrap()
    }

    /// A service that answers OK after `delay`, reporting the caller it saw.
    fn echo(
        delay: Duration,
    ) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone + Send {
        tower::service_fn(move |request: Request<Body>| async move {
            tokio::time::sleep(delay).await;
            let mut response = Response::new(Body::empty());
            let caller = request.extensions().get::<Caller>().map(|c| format!("{c:?}")).unwrap_or_default();
            response.headers_mut().insert("x-caller", caller.parse().unwrap());
            response.headers_mut().insert("grpc-status", "0".parse().unwrap());
            Ok::<_, Infallible>(response)
        })
    }

    fn code(response: &Response<Body>) -> Code {
        Status::from_header_map(response.headers()).map_or(Code::Ok, |s| s.code())
    }

    #[tokio::test]
    async fn open_methods_pass_without_a_token_and_others_need_one() {
        let dir = tempfile::tempdir().unwrap();
        let (_, policy) = policy(dir.path(), 1000);
        let mut service = PlatformLayer::new(policy).layer(echo(Duration::ZERO));
        let open = service.call(request("/chatmesh.user.v1.UserService/Login", None)).await.unwrap();
        assert_eq!(code(&open), Code::Ok);
        let health = service.call(request("/grpc.health.v1.Health/Check", None)).await.unwrap();
        assert_eq!(code(&health), Code::Ok);
        let closed = service.call(request("/chatmesh.user.v1.UserService/GetMe", None)).await.unwrap();
        assert_eq!(code(&closed), Code::Unauthenticated);
    }

    #[tokio::test]
    async fn principals_are_kept_to_their_surface() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, policy) = policy(dir.path(), 1000);
        let mut service = PlatformLayer::new(policy).layer(echo(Duration::ZERO));
        let user = auth.issue_access(7, "s").token;
        let svc = auth.issue_service("chat");
        let internal = "/chatmesh.channel.v1.ChannelInternalService/CheckMembership";
        let public = "/chatmesh.user.v1.UserService/GetMe";
        assert_eq!(code(&service.call(request(internal, Some(&user))).await.unwrap()), Code::PermissionDenied);
        assert_eq!(code(&service.call(request(public, Some(&svc))).await.unwrap()), Code::Unauthenticated);
        let ok = service.call(request(internal, Some(&svc))).await.unwrap();
        assert_eq!(code(&ok), Code::Ok);
        assert!(ok.headers()["x-caller"].to_str().unwrap().contains("chat"), "the caller reaches the handler");
    }

    #[tokio::test]
    async fn a_user_over_the_rate_is_told_when_to_retry() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, policy) = policy(dir.path(), 1000);
        let mut service = PlatformLayer::new(policy).layer(echo(Duration::ZERO));
        let token = auth.issue_access(7, "s").token;
        let other = auth.issue_access(8, "t").token;
        let path = "/chatmesh.user.v1.UserService/GetMe";
        for _ in 0..3 {
            assert_eq!(code(&service.call(request(path, Some(&token))).await.unwrap()), Code::Ok);
        }
        let limited = service.call(request(path, Some(&token))).await.unwrap();
        assert_eq!(code(&limited), Code::ResourceExhausted);
        assert!(limited.headers().get("retry-after").is_some());
        assert_eq!(code(&service.call(request(path, Some(&other))).await.unwrap()), Code::Ok, "limits are per user");
    }

    // why: paused (virtual) time makes the deadlines exact without timing the machine.
    #[tokio::test(start_paused = true)]
    async fn calls_past_the_deadline_are_deadline_exceeded() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, policy) = policy(dir.path(), 10_000);
        let mut service = PlatformLayer::new(policy).layer(echo(Duration::from_secs(60)));
        let token = auth.issue_access(7, "s").token;
        let started = tokio::time::Instant::now();
        let response = service.call(request("/chatmesh.user.v1.UserService/GetMe", Some(&token))).await.unwrap();
        assert_eq!(code(&response), Code::DeadlineExceeded);
        assert_eq!(started.elapsed(), Duration::from_secs(10), "the server's default applies");

        let mut shorter = request("/chatmesh.user.v1.UserService/GetMe", Some(&token));
        shorter.headers_mut().insert("grpc-timeout", "10m".parse().unwrap());
        let started = tokio::time::Instant::now();
        let response = service.call(shorter).await.unwrap();
        assert_eq!(code(&response), Code::DeadlineExceeded);
        assert_eq!(started.elapsed(), Duration::from_millis(10), "the caller's shorter deadline wins");
    }

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("10S"), Some(Duration::from_secs(10)));
        assert_eq!(parse_grpc_timeout("10x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
    }
}
