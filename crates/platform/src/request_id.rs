//! The id of the request being served: taken from the caller's `x-request-id` (the REST
//! gateway forwards its own) or made anew by the gRPC layer, and held for the handler's task so
//! an error answered anywhere below names the log line that explains it.

use std::{cell::OnceCell, future::Future};

tokio::task_local! {
    static REQUEST_ID: RequestId;
}

/// The longest caller-given id kept; a longer or non-printable one is replaced.
const MAX_LEN: usize = 64;

/// The caller's id, or one made the first time something asks (most calls never do).
struct RequestId {
    given: Option<String>,
    made: OnceCell<String>,
}

/// The id of the request this task serves, or a fresh one outside a request.
pub fn current() -> String {
    REQUEST_ID
        .try_with(|id| id.given.clone().unwrap_or_else(|| id.made.get_or_init(fresh).clone()))
        .unwrap_or_else(|_| fresh())
}

/// Runs `future` as the request with the caller's id `given` (`None`: made when first asked).
pub async fn scope<F: Future>(given: Option<String>, future: F) -> F::Output {
    REQUEST_ID.scope(RequestId { given, made: OnceCell::new() }, future).await
}

/// The caller's `x-request-id` when it is a short printable token.
pub fn from_headers(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_LEN && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
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
        assert_eq!(from_headers(&headers).as_deref(), Some("abc-123"));
        headers.insert("x-request-id", "a b".parse().unwrap());
        assert_eq!(from_headers(&headers), None);
        headers.insert("x-request-id", "x".repeat(65).parse().unwrap());
        assert_eq!(from_headers(&headers), None);
        assert_eq!(from_headers(&http::HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn an_id_made_in_a_request_stays_the_same_for_it() {
        let (first, second) = scope(None, async { (current(), current()) }).await;
        assert_eq!(first.len(), 16);
        assert_eq!(first, second);
        assert_eq!(scope(Some("abc".into()), async { current() }).await, "abc");
    }
}
