//! REST edge gateway: HTTP/JSON transcoded to the services' gRPC contracts.
//!
//! Routes come from the `google.api.http` options in proto/ (read from the descriptor set),
//! requests and responses follow the proto3 JSON mapping, and errors use the one error shape
//! of the platform's error-code table. The gateway is thin: it verifies the bearer token at
//! the edge (401), forwards it, and maps statuses; every rule lives in a service. The one route
//! not transcoded is the home timeline as server-sent events (`stream`).

mod codec;
pub mod openapi;
pub mod routes;
mod stream;

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{Query, RawPathParams, Request, rejection::RawPathParamsRejection},
    response::{IntoResponse, Response},
    routing::{MethodFilter, MethodRouter},
};
use chatmesh_platform::{
    ErrorCode,
    auth::{Authenticator, bearer_token},
    error::{http_error_body, http_response, unavailable},
    grpc::{GrpcChannel, ServiceAuth},
};
use http::{HeaderMap, HeaderName, HeaderValue, header};

pub use routes::{Route, routes};

/// Largest request body accepted (media never passes through the API).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a request may take, body included, before the gateway answers 504 (the
/// services' own default deadline, 10 s, usually answers first).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Headers carried from HTTP into the gRPC call.
const FORWARDED: [&str; 3] = ["authorization", "traceparent", "tracestate"];

struct State {
    auth: Arc<Authenticator>,
    services: GrpcChannel,
    /// Vouches for the client address and forwarding chain stamped on open calls (sign-up and
    /// login limits go by them).
    stamp: ServiceAuth,
}

/// Cross-origin access for browsers, from the configured origins.
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, Any, CorsLayer};
    let layer = CorsLayer::new()
        .allow_methods(Any)
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("traceparent"),
            HeaderName::from_static("tracestate"),
        ])
        .expose_headers([header::RETRY_AFTER, HeaderName::from_static("x-request-id")]);
    if origins.iter().any(|o| o == "*") {
        layer.allow_origin(Any)
    } else {
        layer.allow_origin(AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok())))
    }
}

/// The gateway's router: every REST route of the contracts; 404 and 405 in the error shape. The
/// OpenAPI document adds this deployment's `narrowings` to what the contracts say.
pub fn router(
    auth: Arc<Authenticator>,
    services: GrpcChannel,
    cors_origins: &[String],
    narrowings: &[openapi::Narrowing],
) -> Router {
    let stamp = ServiceAuth::new(auth.clone(), "rest");
    let state = Arc::new(State { auth, services, stamp });
    let routes = routes::routes();
    let document = openapi::document(&routes, narrowings);
    let mut by_path: HashMap<String, MethodRouter> = HashMap::new();
    for route in routes {
        let Ok(filter) = MethodFilter::try_from(route.method.clone()) else { continue };
        let path = route.path.clone();
        let (state, route) = (state.clone(), Arc::new(route));
        let handler = move |params: Result<RawPathParams, RawPathParamsRejection>, request: Request| {
            let (state, route) = (state.clone(), route.clone());
            async move {
                match tokio::time::timeout(REQUEST_TIMEOUT, handle(&state, &route, params, request)).await {
                    Ok(response) => response,
                    Err(_) => http_response(ErrorCode::DeadlineExceeded, "the request timed out"),
                }
            }
        };
        let methods = by_path.remove(&path).unwrap_or_default();
        by_path.insert(path, methods.on(filter, handler));
    }
    let served = document.clone();
    let timeline = state.clone();
    let mut router = Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(stream::PATH, axum::routing::get(move |request: Request| stream::timeline(timeline.clone(), request)))
        .route("/openapi.json", axum::routing::get(move || async move { axum::Json(served) }))
        // why: the UI is compiled into the binary (vendored); it reads /openapi.json.
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").external_url_unchecked("/docs/openapi.json", document));
    for (path, methods) in by_path {
        router = router.route(&path, methods);
    }
    router
        .method_not_allowed_fallback(|| async {
            http_response(ErrorCode::MethodNotAllowed, "method not allowed on this route")
        })
        .fallback(|| async { http_response(ErrorCode::NotFound, "no such route") })
        .layer(axum::middleware::from_fn(observe))
        .layer(cors(cors_origins))
}

/// One span (continuing the client's `traceparent`, if any) and the request metrics per call,
/// labelled by route template, never by raw path.
async fn observe(request: Request, next: axum::middleware::Next) -> Response {
    let route = request.extensions().get::<axum::extract::MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method: &'static str = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let span = tracing::info_span!(
        "http.server",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    chatmesh_platform::telemetry::adopt(&span, request.headers());
    let started = std::time::Instant::now();
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    metrics::histogram!("chatmesh_http_server_duration_seconds", "route" => route.clone(), "method" => method)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        "chatmesh_http_server_requests_total",
        "route" => route,
        "method" => method,
        "status" => status.to_string()
    )
    .increment(1);
    response
}

fn bad_request(message: &str) -> Response {
    http_response(ErrorCode::InvalidArgument, message)
}

/// A gRPC status as an HTTP response in the one error shape (429s carry Retry-After).
fn status_response(status: &tonic::Status) -> Response {
    let (code, body) = http_error_body(status);
    let mut response = (code, axum::Json(body)).into_response();
    if code == http::StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(retry) = status.metadata().get("retry-after").and_then(|v| v.to_str().ok())
        && let Ok(value) = HeaderValue::from_str(retry)
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Forwards the caller's headers and gives the call its request id: the client's own when it
/// is a short printable token, else a new one; the services log under the same id.
fn forward<T>(headers: &HeaderMap, request: &mut tonic::Request<T>) -> String {
    for name in FORWARDED {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok())
            && let Ok(value) = value.parse()
        {
            request.metadata_mut().insert(name, value);
        }
    }
    let id = chatmesh_platform::request_id::from_headers(headers).unwrap_or_else(chatmesh_platform::request_id::fresh);
    if let Ok(value) = id.parse() {
        request.metadata_mut().insert("x-request-id", value);
    }
    id
}

async fn handle(
    state: &State,
    route: &Route,
    params: Result<RawPathParams, RawPathParamsRejection>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    if !route.open
        && let Err(e) = bearer_token(&parts.headers).and_then(|token| state.auth.verify(token))
    {
        return http_response(ErrorCode::Unauthenticated, &e.to_string());
    }
    let params = match params {
        Ok(params) => params,
        Err(e) => return bad_request(&format!("malformed path: {}", e.body_text())),
    };
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(e) => {
            let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            return if too_large {
                http_response(ErrorCode::PayloadTooLarge, "the body is over 1 MiB")
            } else {
                bad_request("the body could not be read")
            };
        }
    };
    let query = match Query::<Vec<(String, String)>>::try_from_uri(&parts.uri) {
        Ok(Query(query)) => query,
        Err(e) => return bad_request(&format!("malformed query: {e}")),
    };
    let path: Vec<(&str, &str)> = params.iter().collect();
    let input = match chatmesh_wire::transcode::request_message(&route.input, route.body, &path, &query, &body) {
        Ok(input) => input,
        Err(e) => return bad_request(&e),
    };
    let mut grpc_request = tonic::Request::new(input);
    grpc_request.set_timeout(REQUEST_TIMEOUT);
    let request_id = forward(&parts.headers, &mut grpc_request);
    if route.open
        && let Some(axum::extract::ConnectInfo(client)) =
            parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        chatmesh_platform::client_addr::stamp(&mut grpc_request, client.ip(), &parts.headers, &state.stamp);
    }
    let Ok(path) = route.grpc_path.parse() else { return http_response(ErrorCode::Internal, "bad route") };
    let mut grpc = tonic::client::Grpc::new(state.services.clone());
    // why: in the request's scope, a failure answered below names the id the client gets back
    let call = chatmesh_platform::request_id::scope(Some(request_id.clone()), async {
        grpc.ready().await.map_err(|e| unavailable("services", e))?;
        grpc.unary(grpc_request, path, codec::DynamicCodec { output: route.output.clone() }).await
    });
    let mut response = match tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(1), call).await {
        Err(_) => http_response(ErrorCode::DeadlineExceeded, "the request timed out"),
        Ok(Err(status)) => status_response(&status),
        Ok(Ok(answer)) => match serde_json::to_value(answer.into_inner()) {
            Ok(json) => axum::Json(json).into_response(),
            Err(e) => {
                tracing::error!(error = %e, %request_id, "could not encode the answer");
                http_response(ErrorCode::Internal, &format!("internal error (request {request_id})"))
            }
        },
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    tracing::info!(method = %parts.method, path = %parts.uri.path(), status = response.status().as_u16(), %request_id, "rest");
    response
}
