//! The feed service's errors, mapped to gRPC statuses in one place.

use chatmesh_platform::error::{internal, status_with_reason, unavailable, upstream};
use tonic::{Code, Status};

use crate::store::StoreError;

/// Every way a feed operation ends without its answer.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("status {0} not found")]
    StatusNotFound(u64),
    #[error("user {0} not found")]
    UserNotFound(u64),
    #[error("status {0} is not yours")]
    NotAuthor(u64),
    #[error("user {0} has blocked you")]
    BlockedByAuthor(u64),
    #[error("you have blocked user {0}; unblock them first")]
    AuthorBlockedByYou(u64),
    /// The store failed; the text is logged, never answered.
    #[error("storage: {0}")]
    Store(String),
    /// This process has no route to a part the operation needs.
    #[error("the {0} service is not reachable from here")]
    PeerMissing(&'static str),
    /// Another service refused or failed.
    #[error("peer: {0:?}")]
    Peer(Status),
}

impl From<StoreError> for FeedError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::StatusNotFound(id) => FeedError::StatusNotFound(id),
            // why: the core turns a repeat repost into its answer before it gets here
            StoreError::AlreadyReposted(id) => FeedError::Store(format!("unexpected repeat repost {id}")),
            StoreError::Backend(e) => FeedError::Store(e),
        }
    }
}

impl From<Status> for FeedError {
    fn from(status: Status) -> Self {
        FeedError::Peer(status)
    }
}

impl From<FeedError> for Status {
    fn from(error: FeedError) -> Self {
        let message = error.to_string();
        let user = |id: u64| [("user_id", id.to_string())];
        match error {
            FeedError::StatusNotFound(id) => {
                status_with_reason(Code::NotFound, message, "STATUS_NOT_FOUND", &[("status_id", id.to_string())])
            }
            FeedError::UserNotFound(id) => status_with_reason(Code::NotFound, message, "USER_NOT_FOUND", &user(id)),
            FeedError::NotAuthor(id) => status_with_reason(
                Code::PermissionDenied,
                message,
                "NOT_STATUS_AUTHOR",
                &[("status_id", id.to_string())],
            ),
            FeedError::BlockedByAuthor(id) => {
                status_with_reason(Code::PermissionDenied, message, "USER_BLOCKED", &user(id))
            }
            FeedError::AuthorBlockedByYou(id) => {
                status_with_reason(Code::FailedPrecondition, message, "USER_BLOCKED_BY_YOU", &user(id))
            }
            FeedError::Store(e) => internal("feed store", e),
            FeedError::PeerMissing(part) => unavailable("feed service peer", part),
            FeedError::Peer(status) => upstream("feed service peer", status),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    fn reason(status: &Status) -> String {
        status.get_error_details().error_info().map(|info| info.reason.clone()).unwrap_or_default()
    }

    #[test]
    fn every_refusal_answers_its_code_and_reason() {
        let cases = [
            (FeedError::StatusNotFound(7), Code::NotFound, "STATUS_NOT_FOUND"),
            (FeedError::UserNotFound(7), Code::NotFound, "USER_NOT_FOUND"),
            (FeedError::NotAuthor(7), Code::PermissionDenied, "NOT_STATUS_AUTHOR"),
            (FeedError::BlockedByAuthor(7), Code::PermissionDenied, "USER_BLOCKED"),
            (FeedError::AuthorBlockedByYou(7), Code::FailedPrecondition, "USER_BLOCKED_BY_YOU"),
        ];
        for (error, code, want) in cases {
            let status = Status::from(error);
            assert_eq!((status.code(), reason(&status).as_str()), (code, want));
        }
    }

    #[test]
    fn a_store_failure_answers_no_detail() {
        let status = Status::from(FeedError::Store("fjall: /var/lib/chatmesh/feed: permission denied".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(status.message().starts_with("internal error (request "), "{}", status.message());
    }
}
