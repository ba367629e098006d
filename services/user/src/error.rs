//! The user service's errors, mapped to gRPC statuses in one place.

use chatmesh_platform::{
    error::{internal, rate_limited, status_with_reason, unavailable, upstream},
    ids::timestamp,
    password::PasswordError,
};
use tonic::{Code, Status};

use crate::store::StoreError;

/// Every way a user-service operation ends without its answer.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("username {0} is taken")]
    UsernameTaken(String),
    #[error("user {0} not found")]
    UserNotFound(u64),
    #[error("invalid email or password")]
    BadCredentials,
    #[error("too many login attempts, retry later")]
    LoginThrottled(std::time::Duration),
    #[error("too many sign-ups from this address, retry later")]
    SignUpThrottled(std::time::Duration),
    #[error("invalid refresh token")]
    BadRefreshToken,
    #[error("the login session has ended")]
    SessionEnded,
    #[error("refresh token reuse detected; the login session has ended")]
    RefreshReuse,
    /// Hashing or verifying a password failed (not the password being wrong).
    #[error("password hashing: {0}")]
    PasswordHash(#[from] PasswordError),
    /// The system's random source failed while making a refresh token.
    #[error("no randomness for a refresh token")]
    NoRandomness,
    /// The store failed; the text is logged, never answered.
    #[error("storage: {0}")]
    Store(String),
    #[error("you cannot do that to yourself")]
    SelfRelation,
    #[error("user {0} has deleted their account")]
    TargetDeleted(u64),
    #[error("user {0} is suspended")]
    TargetSuspended(u64),
    #[error("user {0} has blocked you")]
    BlockedByTarget(u64),
    #[error("you have blocked user {0}; unblock them first")]
    TargetBlockedByCaller(u64),
    #[error("too many {what} this hour, retry later")]
    GraphThrottled { what: &'static str, wait: std::time::Duration },
    #[error("you already follow {0} users, the most allowed")]
    FollowingLimit(u64),
    #[error("no pending friend request with user {0}")]
    FriendRequestNotFound(u64),
    #[error("user {0} is not your friend")]
    NotFriends(u64),
    #[error("this account is suspended")]
    AccountSuspended { until_ms: Option<u64>, reason: String },
    #[error("this account was deleted; sign in with restore to bring it back before it is erased")]
    AccountDeleted { purge_at_ms: u64 },
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("only admins may do that")]
    NotAdmin,
    #[error("user_id must name the chat's sender, or be left empty")]
    ReportedUserIsNotTheSender,
    #[error("user_id must name the status's author, or be left empty")]
    ReportedUserIsNotTheAuthor,
    #[error("a report names a user_id, a chat_id or a status_id")]
    ReportWithoutTarget,
    #[error("chat {0} not found")]
    ChatNotFound(u64),
    #[error("status {0} not found")]
    StatusNotFound(u64),
    #[error("report {0} not found")]
    ReportNotFound(u64),
    #[error("report {0} is already resolved")]
    ReportResolved(u64),
    #[error("report {0} is not about a chat")]
    NotAChatReport(u64),
    #[error("report {0} is not about a status")]
    NotAStatusReport(u64),
    #[error("no account has this email")]
    EmailNotFound,
    /// This process has no route to a part the operation needs.
    #[error("the {0} service is not reachable from here")]
    PeerMissing(&'static str),
    /// Another service refused or failed.
    #[error("peer: {0:?}")]
    Peer(Status),
}

impl From<StoreError> for UserError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::EmailTaken => UserError::EmailTaken,
            StoreError::UsernameTaken(name) => UserError::UsernameTaken(name),
            StoreError::Backend(e) => UserError::Store(e),
        }
    }
}

impl From<UserError> for Status {
    fn from(error: UserError) -> Self {
        let message = error.to_string();
        match error {
            UserError::EmailTaken => status_with_reason(Code::AlreadyExists, message, "EMAIL_TAKEN", &[]),
            UserError::UsernameTaken(name) => {
                status_with_reason(Code::AlreadyExists, message, "USERNAME_TAKEN", &[("username", name)])
            }
            UserError::UserNotFound(id) => {
                status_with_reason(Code::NotFound, message, "USER_NOT_FOUND", &[("user_id", id.to_string())])
            }
            UserError::BadCredentials => status_with_reason(Code::Unauthenticated, message, "BAD_CREDENTIALS", &[]),
            UserError::LoginThrottled(wait) | UserError::SignUpThrottled(wait) => rate_limited(message, wait),
            UserError::BadRefreshToken => status_with_reason(Code::Unauthenticated, message, "BAD_REFRESH_TOKEN", &[]),
            UserError::SessionEnded => status_with_reason(Code::Unauthenticated, message, "SESSION_ENDED", &[]),
            UserError::RefreshReuse => status_with_reason(Code::Unauthenticated, message, "REFRESH_TOKEN_REUSED", &[]),
            UserError::PasswordHash(e) => internal("password hashing", e),
            UserError::NoRandomness => internal("refresh token", message),
            UserError::Store(e) => internal("user store", e),
            // why: a well-formed request that a rule refuses, as Mastodon answers a self-follow
            UserError::SelfRelation => status_with_reason(Code::PermissionDenied, message, "SELF_RELATION", &[]),
            UserError::TargetDeleted(id) => {
                status_with_reason(Code::FailedPrecondition, message, "USER_DELETED", &[("user_id", id.to_string())])
            }
            UserError::TargetSuspended(id) => {
                status_with_reason(Code::FailedPrecondition, message, "USER_SUSPENDED", &[("user_id", id.to_string())])
            }
            UserError::BlockedByTarget(id) => {
                status_with_reason(Code::PermissionDenied, message, "USER_BLOCKED", &[("user_id", id.to_string())])
            }
            UserError::TargetBlockedByCaller(id) => status_with_reason(
                Code::FailedPrecondition,
                message,
                "USER_BLOCKED_BY_YOU",
                &[("user_id", id.to_string())],
            ),
            UserError::GraphThrottled { wait, .. } => rate_limited(message, wait),
            UserError::FollowingLimit(max) => {
                status_with_reason(Code::FailedPrecondition, message, "FOLLOWING_LIMIT", &[("max", max.to_string())])
            }
            UserError::FriendRequestNotFound(id) => {
                status_with_reason(Code::NotFound, message, "FRIEND_REQUEST_NOT_FOUND", &[("user_id", id.to_string())])
            }
            UserError::NotFriends(id) => {
                status_with_reason(Code::NotFound, message, "FRIEND_NOT_FOUND", &[("user_id", id.to_string())])
            }
            UserError::AccountSuspended { until_ms, reason } => {
                let mut metadata = vec![("reason", reason)];
                if let Some(until) = until_ms {
                    metadata.push(("until", rfc3339(until)));
                }
                status_with_reason(Code::PermissionDenied, message, "ACCOUNT_SUSPENDED", &metadata)
            }
            UserError::AccountDeleted { purge_at_ms } => status_with_reason(
                Code::FailedPrecondition,
                message,
                "ACCOUNT_DELETED",
                &[("purge_at", rfc3339(purge_at_ms))],
            ),
            UserError::WrongPassword => status_with_reason(Code::PermissionDenied, message, "WRONG_PASSWORD", &[]),
            UserError::NotAdmin => status_with_reason(Code::PermissionDenied, message, "ADMIN_ONLY", &[]),
            // why: whether the named user wrote it depends on what is stored, not on the request
            UserError::ReportedUserIsNotTheSender | UserError::ReportedUserIsNotTheAuthor => status_with_reason(
                Code::FailedPrecondition,
                message,
                "REPORTED_USER_MISMATCH",
                &[("field", "user_id".into())],
            ),
            UserError::ReportWithoutTarget => chatmesh_wire::error::invalid_field("user_id", message),
            UserError::ChatNotFound(id) => {
                status_with_reason(Code::NotFound, message, "CHAT_NOT_FOUND", &[("chat_id", id.to_string())])
            }
            // why: the reason the feed service answers for a status a reader cannot read
            UserError::StatusNotFound(id) => {
                status_with_reason(Code::NotFound, message, "STATUS_NOT_FOUND", &[("status_id", id.to_string())])
            }
            UserError::ReportNotFound(id) => {
                status_with_reason(Code::NotFound, message, "REPORT_NOT_FOUND", &[("report_id", id.to_string())])
            }
            UserError::ReportResolved(id) => status_with_reason(
                Code::FailedPrecondition,
                message,
                "REPORT_ALREADY_RESOLVED",
                &[("report_id", id.to_string())],
            ),
            UserError::NotAChatReport(id) => status_with_reason(
                Code::FailedPrecondition,
                message,
                "NOT_A_CHAT_REPORT",
                &[("report_id", id.to_string())],
            ),
            UserError::NotAStatusReport(id) => status_with_reason(
                Code::FailedPrecondition,
                message,
                "NOT_A_STATUS_REPORT",
                &[("report_id", id.to_string())],
            ),
            UserError::EmailNotFound => status_with_reason(Code::NotFound, message, "EMAIL_NOT_FOUND", &[]),
            UserError::PeerMissing(part) => unavailable("user service peer", part),
            UserError::Peer(status) => upstream("user service peer", status),
        }
    }
}

/// A time as RFC 3339, for error metadata.
fn rfc3339(ms: u64) -> String {
    timestamp(ms).to_string()
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
            (UserError::EmailTaken, Code::AlreadyExists, "EMAIL_TAKEN"),
            (UserError::UsernameTaken("ada".into()), Code::AlreadyExists, "USERNAME_TAKEN"),
            (UserError::UserNotFound(7), Code::NotFound, "USER_NOT_FOUND"),
            (UserError::BadCredentials, Code::Unauthenticated, "BAD_CREDENTIALS"),
            (UserError::BadRefreshToken, Code::Unauthenticated, "BAD_REFRESH_TOKEN"),
            (UserError::SessionEnded, Code::Unauthenticated, "SESSION_ENDED"),
            (UserError::RefreshReuse, Code::Unauthenticated, "REFRESH_TOKEN_REUSED"),
            (UserError::ChatNotFound(7), Code::NotFound, "CHAT_NOT_FOUND"),
            (UserError::StatusNotFound(7), Code::NotFound, "STATUS_NOT_FOUND"),
            (UserError::NotAChatReport(7), Code::FailedPrecondition, "NOT_A_CHAT_REPORT"),
            (UserError::NotAStatusReport(7), Code::FailedPrecondition, "NOT_A_STATUS_REPORT"),
        ];
        for (error, code, want) in cases {
            let status = Status::from(error);
            assert_eq!((status.code(), reason(&status).as_str()), (code, want));
        }
        let wait = std::time::Duration::from_millis(1500);
        for throttled in [UserError::LoginThrottled(wait), UserError::SignUpThrottled(wait)] {
            let throttled = Status::from(throttled);
            assert_eq!(throttled.code(), Code::ResourceExhausted);
            assert_eq!(throttled.metadata().get("retry-after").unwrap(), "2");
        }
    }

    #[test]
    fn internal_failures_answer_no_detail() {
        let failures = [
            UserError::PasswordHash(PasswordError::Hash("argon2: out of memory".into())),
            UserError::NoRandomness,
            UserError::Store("fjall: /var/lib/chatmesh/users: permission denied".into()),
        ];
        for error in failures {
            let status = Status::from(error);
            assert_eq!(status.code(), Code::Internal);
            assert!(status.message().starts_with("internal error (request "), "{}", status.message());
        }
    }

    #[test]
    fn a_hashing_failure_is_not_reported_as_storage() {
        let error = UserError::from(PasswordError::Hash("argon2: out of memory".into()));
        assert!(!error.to_string().starts_with("storage"), "{error}");
    }
}
