//! Search's errors, and their one mapping to a gRPC status: a backend's text is logged with the
//! request id, never answered.

use chatmesh_platform::error::{internal, unavailable};
use tonic::Status;

/// A failure of the index itself.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IndexError {
    /// The index failed or answered what it should not (a broken directory, a refused request,
    /// a malformed response).
    #[error("search index: {0}")]
    Backend(String),
    /// The index could not be reached (a cluster down or overloaded past the retries); asking
    /// again later may succeed.
    #[error("search index unreachable: {0}")]
    Unavailable(String),
}

/// A failure reading chats: from the chat store, or from the chat part that serves them.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("reading chats: {0}")]
pub struct SourceError(pub String);

/// What an operation over both the index and the chat store (status, rebuild, verification)
/// fails with.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SearchError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Source(#[from] SourceError),
}

impl From<IndexError> for Status {
    fn from(error: IndexError) -> Self {
        match error {
            IndexError::Backend(_) => internal("search index", error),
            IndexError::Unavailable(_) => unavailable("search index", error),
        }
    }
}

impl From<SearchError> for Status {
    fn from(error: SearchError) -> Self {
        match error {
            SearchError::Index(e) => e.into(),
            SearchError::Source(e) => internal("reading chats", e),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn backend_text_stays_out_of_the_answer() {
        let refused = Status::from(IndexError::Backend("searching: HTTP 500: shard failure at 10.0.0.7".into()));
        assert_eq!(refused.code(), Code::Internal);
        let down = Status::from(IndexError::Unavailable(
            "searching: error sending request for url (http://10.0.0.7:9200/)".into(),
        ));
        assert_eq!(down.code(), Code::Unavailable);
        let store = Status::from(SearchError::Source(SourceError("io error: /var/lib/chatmesh".into())));
        assert_eq!(store.code(), Code::Internal);
        for status in [refused, down, store] {
            assert!(status.message().contains("(request "), "{}", status.message());
            for leak in ["10.0.0.7", "HTTP 500", "/var/lib"] {
                assert!(!status.message().contains(leak), "{}", status.message());
            }
        }
    }
}
