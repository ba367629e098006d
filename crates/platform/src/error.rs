//! The one error-code table: gRPC status codes ↔ HTTP statuses, and the JSON error body
//! every REST answer uses: `{"code": 404, "status": "NOT_FOUND", "message": "…", "details": […]}`.

use std::collections::HashMap;

use http::StatusCode;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The domain of every `ErrorInfo` we attach.
pub use chatmesh_wire::error::{ERROR_DOMAIN, invalid_field};

/// The error codes chatmesh answers with, each with its gRPC code and HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    OutOfRange,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    Aborted,
    FailedPrecondition,
    ResourceExhausted,
    Unimplemented,
    Unavailable,
    DeadlineExceeded,
    Cancelled,
    Internal,
    /// The gateway's own: a route exists but not for this method.
    MethodNotAllowed,
    /// The gateway's own: the body is over the limit.
    PayloadTooLarge,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 16] = [
        Self::InvalidArgument,
        Self::OutOfRange,
        Self::Aborted,
        Self::Unauthenticated,
        Self::PermissionDenied,
        Self::NotFound,
        Self::AlreadyExists,
        Self::FailedPrecondition,
        Self::ResourceExhausted,
        Self::Unimplemented,
        Self::Unavailable,
        Self::DeadlineExceeded,
        Self::Cancelled,
        Self::Internal,
        Self::MethodNotAllowed,
        Self::PayloadTooLarge,
    ];

    /// The gRPC code and HTTP status of this error.
    pub fn mapping(self) -> (Code, StatusCode) {
        match self {
            Self::InvalidArgument => (Code::InvalidArgument, StatusCode::BAD_REQUEST),
            Self::OutOfRange => (Code::OutOfRange, StatusCode::BAD_REQUEST),
            Self::Aborted => (Code::Aborted, StatusCode::CONFLICT),
            Self::Unauthenticated => (Code::Unauthenticated, StatusCode::UNAUTHORIZED),
            Self::PermissionDenied => (Code::PermissionDenied, StatusCode::FORBIDDEN),
            Self::NotFound => (Code::NotFound, StatusCode::NOT_FOUND),
            Self::AlreadyExists => (Code::AlreadyExists, StatusCode::CONFLICT),
            // why: 409 is HTTP's "conflicts with the current state"; 412 is for conditional
            // headers (If-Match), which this API does not take (ADR 18)
            Self::FailedPrecondition => (Code::FailedPrecondition, StatusCode::CONFLICT),
            Self::ResourceExhausted => (Code::ResourceExhausted, StatusCode::TOO_MANY_REQUESTS),
            Self::Unimplemented => (Code::Unimplemented, StatusCode::NOT_IMPLEMENTED),
            Self::Unavailable => (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
            Self::DeadlineExceeded => (Code::DeadlineExceeded, StatusCode::GATEWAY_TIMEOUT),
            // why: 499 is the de-facto "client closed request"; http has no constant for it.
            Self::Cancelled => (Code::Cancelled, StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)),
            Self::Internal => (Code::Internal, StatusCode::INTERNAL_SERVER_ERROR),
            Self::MethodNotAllowed => (Code::Unimplemented, StatusCode::METHOD_NOT_ALLOWED),
            Self::PayloadTooLarge => (Code::InvalidArgument, StatusCode::PAYLOAD_TOO_LARGE),
        }
    }

    /// The upper-case name REST bodies carry in `status`.
    pub fn name(self) -> &'static str {
        match self {
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::OutOfRange => "OUT_OF_RANGE",
            Self::Aborted => "ABORTED",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::NotFound => "NOT_FOUND",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::FailedPrecondition => "FAILED_PRECONDITION",
            Self::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Self::Unimplemented => "UNIMPLEMENTED",
            Self::Unavailable => "UNAVAILABLE",
            Self::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Self::Cancelled => "CANCELLED",
            Self::Internal => "INTERNAL",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
        }
    }

    /// The error code of a gRPC status (codes without a row are INTERNAL).
    pub fn from_grpc(code: Code) -> Self {
        match code {
            Code::InvalidArgument => Self::InvalidArgument,
            Code::OutOfRange => Self::OutOfRange,
            Code::Aborted => Self::Aborted,
            Code::Unauthenticated => Self::Unauthenticated,
            Code::PermissionDenied => Self::PermissionDenied,
            Code::NotFound => Self::NotFound,
            Code::AlreadyExists => Self::AlreadyExists,
            Code::FailedPrecondition => Self::FailedPrecondition,
            Code::ResourceExhausted => Self::ResourceExhausted,
            Code::Unimplemented => Self::Unimplemented,
            Code::Unavailable => Self::Unavailable,
            Code::DeadlineExceeded => Self::DeadlineExceeded,
            Code::Cancelled => Self::Cancelled,
            _ => Self::Internal,
        }
    }

    pub fn grpc_code(self) -> Code {
        self.mapping().0
    }

    pub fn http_status(self) -> StatusCode {
        self.mapping().1
    }
}

/// A status with an `ErrorInfo` reason (e.g. `USER_NOT_FOUND`) and metadata.
pub fn status_with_reason(code: Code, message: impl Into<String>, reason: &str, metadata: &[(&str, String)]) -> Status {
    let metadata: HashMap<String, String> = metadata.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    Status::with_error_details(code, message, ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata))
}

/// RESOURCE_EXHAUSTED telling the caller when to retry (metadata `retry-after`, in seconds,
/// and a `RetryInfo` detail); REST turns it into 429 with `Retry-After`.
pub fn rate_limited(message: impl Into<String>, retry_after: std::time::Duration) -> Status {
    // why: round up, so a client waiting the advertised seconds is never early.
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut status = Status::with_error_details(
        Code::ResourceExhausted,
        message,
        ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(secs))),
    );
    if let Ok(value) = secs.to_string().parse() {
        status.metadata_mut().insert("retry-after", value);
    }
    status
}

/// An internal failure: logged in full with the request id, answered with the id only, so a
/// client never sees backend text and an operator finds the log line from the answer.
pub fn internal(context: &str, error: impl std::fmt::Display) -> Status {
    let request_id = crate::request_id::current();
    tracing::error!(%error, context, %request_id, "internal error");
    Status::internal(format!("internal error (request {request_id})"))
}

/// A dependency (a store, an object store, a search backend, a peer) that did not answer:
/// logged in full with the request id, answered with the id only; the client may retry.
pub fn unavailable(context: &str, error: impl std::fmt::Display) -> Status {
    let request_id = crate::request_id::current();
    tracing::warn!(%error, context, %request_id, "dependency unavailable");
    Status::unavailable(format!("service unavailable, retry later (request {request_id})"))
}

/// A peer's answer as this service passes it on: its refusals (a refusal code, or any status
/// with details) unchanged; its failures, whose text may name hosts or OS errors, logged and
/// answered with this request's id.
pub fn upstream(context: &str, status: Status) -> Status {
    if !status.details().is_empty() {
        return status;
    }
    let failure = || format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded => unavailable(context, failure()),
        Code::Internal | Code::Unknown | Code::DataLoss => internal(context, failure()),
        _ => status,
    }
}

/// The REST error body for a gRPC status, per the error-code table.
pub fn http_error_body(status: &Status) -> (StatusCode, serde_json::Value) {
    let code = ErrorCode::from_grpc(status.code());
    let mut details = Vec::new();
    let parsed = status.get_error_details();
    if let Some(info) = parsed.error_info() {
        details.push(serde_json::json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": info.reason, "domain": info.domain, "metadata": info.metadata,
        }));
    }
    if let Some(bad) = parsed.bad_request() {
        let violations: Vec<_> = bad
            .field_violations
            .iter()
            .map(|v| serde_json::json!({"field": v.field, "description": v.description}))
            .collect();
        details.push(serde_json::json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations,
        }));
    }
    error_body(code, status.message(), details)
}

/// The REST error body for one of the gateway's own errors.
pub fn error_body(code: ErrorCode, message: &str, details: Vec<serde_json::Value>) -> (StatusCode, serde_json::Value) {
    let http = code.http_status();
    (http, serde_json::json!({ "code": http.as_u16(), "status": code.name(), "message": message, "details": details }))
}

/// An axum response carrying the one REST error body (401s carry `WWW-Authenticate`).
pub fn http_response(code: ErrorCode, message: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (status, body) = error_body(code, message, Vec::new());
    let mut response = (status, axum::Json(body)).into_response();
    if code == ErrorCode::Unauthenticated {
        response.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_back_to_itself_through_grpc() {
        for code in ErrorCode::ALL {
            if matches!(code, ErrorCode::MethodNotAllowed | ErrorCode::PayloadTooLarge) {
                continue; // the gateway's own, never carried by a gRPC status
            }
            assert_eq!(ErrorCode::from_grpc(code.grpc_code()), code);
        }
    }

    #[test]
    fn the_design_table_holds() {
        let expect = [
            (Code::InvalidArgument, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::FailedPrecondition, 409),
            (Code::ResourceExhausted, 429),
            (Code::Unimplemented, 501),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
        ];
        for (grpc, http) in expect {
            assert_eq!(ErrorCode::from_grpc(grpc).http_status().as_u16(), http, "{grpc:?}");
        }
    }

    #[tokio::test]
    async fn internal_and_unavailable_answers_carry_the_request_id_not_the_error() {
        let status = crate::request_id::scope(Some("req-7f3a".into()), async {
            internal("chat store", "io error: /var/lib/chatmesh/chats: permission denied")
        })
        .await;
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error (request req-7f3a)");
        let status = crate::request_id::scope(Some("req-7f3b".into()), async {
            unavailable("media", "connection refused: http://10.0.0.7:9000")
        })
        .await;
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().ends_with("(request req-7f3b)"), "{}", status.message());
        assert!(!status.message().contains("10.0.0.7"));
        // outside a request a fresh id is made, so the answer still names a log line
        let status = internal("indexer", "boom");
        assert!(status.message().starts_with("internal error (request "), "{}", status.message());
        assert!(!status.message().contains("boom"));
    }

    #[test]
    fn a_peers_failures_are_reworded_and_its_refusals_pass_on() {
        let failed = upstream("peer", Status::unavailable("tcp connect error: 10.1.2.3:50051"));
        assert_eq!(failed.code(), Code::Unavailable);
        assert!(!failed.message().contains("10.1.2.3"), "{}", failed.message());
        let failed = upstream("peer", Status::unknown("h2 protocol error"));
        assert_eq!(failed.code(), Code::Internal);
        assert!(!failed.message().contains("h2"), "{}", failed.message());
        let refused = upstream("peer", Status::not_found("channel 7 not found"));
        assert_eq!((refused.code(), refused.message()), (Code::NotFound, "channel 7 not found"));
        let detailed = status_with_reason(Code::Unavailable, "channel busy", "CHANNEL_BUSY", &[]);
        assert_eq!(upstream("peer", detailed).message(), "channel busy");
    }

    #[test]
    fn invalid_field_names_the_field_in_message_and_details() {
        let status = invalid_field("email", "is not a valid address");
        let (http, body) = http_error_body(&status);
        assert_eq!(http, StatusCode::BAD_REQUEST);
        assert_eq!(body["status"], "INVALID_ARGUMENT");
        assert_eq!(body["message"], "email: is not a valid address");
        let violations = &body["details"][1]["fieldViolations"];
        assert_eq!(violations[0]["field"], "email");
    }
}
