//! The id of the request being served: taken from the caller's `x-request-id` (the REST
//! gateway forwards its own) or made anew by the gRPC layer, and held for the handler's task so
//! an error answered anywhere below names the log line that explains it.

use std::future::Future;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The longest caller-given id kept; a longer or non-printable one is replaced.
const MAX_LEN: usize = 64;

/// The id of the request this task serves, or a fresh one outside a request.
pub fn current() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_else(|_| fresh())
}

/// Runs `future` as the request `id`.
pub async fn scope<F: Future>(id: String, future: F) -> F::Output {
    REQUEST_ID.scope(id, future).await
}

/// The caller's `x-request-id` when it is a short printable token, else a fresh id.
pub fn from_headers(headers: &http::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_LEN && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(fresh, str::to_owned)
}

/// A new request id: 16 hex digits.
pub fn fresh() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_id_is_kept_only_when_short_and_printable() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-request-id", "abc-123".parse().unwrap());
        assert_eq!(from_headers(&headers), "abc-123");
        headers.insert("x-request-id", "a b".parse().unwrap());
        assert_eq!(from_headers(&headers).len(), 16);
        headers.insert("x-request-id", "x".repeat(65).parse().unwrap());
        assert_eq!(from_headers(&headers).len(), 16);
        assert_eq!(from_headers(&http::HeaderMap::new()).len(), 16);
    }
}
