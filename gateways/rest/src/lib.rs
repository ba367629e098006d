//! REST edge gateway: HTTP/JSON translated to the services' gRPC contracts.
//!
//! Not built yet beyond its edge: it verifies bearer tokens (401 in the one error shape) and
//! answers every API route with 501 until the REST issue lands. It holds no business state.

use std::sync::Arc;

use axum::{
    Router,
    extract::{Request, State},
    http::Method,
    response::Response,
    routing::get,
};
use chatmesh_platform::{
    ErrorCode,
    auth::{Authenticator, bearer_token},
    error::http_response,
};

/// Routes anyone may call without a token (their RPCs are open).
const OPEN_ROUTES: &[(Method, &str)] =
    &[(Method::POST, "/api/v1/users"), (Method::POST, "/api/v1/auth/login"), (Method::POST, "/api/v1/auth/refresh")];

/// The gateway's router.
pub fn router(auth: Arc<Authenticator>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/{*path}", axum::routing::any(api))
        .fallback(|| async { http_response(ErrorCode::NotFound, "no such route") })
        .with_state(auth)
}

async fn api(State(auth): State<Arc<Authenticator>>, request: Request) -> Response {
    let open = OPEN_ROUTES.iter().any(|(m, p)| m == request.method() && p == &request.uri().path());
    if !open && let Err(e) = bearer_token(request.headers()).and_then(|token| auth.verify(token)) {
        return http_response(ErrorCode::Unauthenticated, &e.to_string());
    }
    http_response(ErrorCode::Unimplemented, "the REST gateway is not built yet; use the gRPC API")
}
