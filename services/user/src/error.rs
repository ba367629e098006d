//! The user service's errors, mapped to gRPC statuses in one place.

use chatmesh_platform::{
    error::{internal, rate_limited, status_with_reason},
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
            (UserError::EmailTaken, Code::AlreadyExists, "EMAIL_TAKEN"),
            (UserError::UsernameTaken("ada".into()), Code::AlreadyExists, "USERNAME_TAKEN"),
            (UserError::UserNotFound(7), Code::NotFound, "USER_NOT_FOUND"),
            (UserError::BadCredentials, Code::Unauthenticated, "BAD_CREDENTIALS"),
            (UserError::BadRefreshToken, Code::Unauthenticated, "BAD_REFRESH_TOKEN"),
            (UserError::SessionEnded, Code::Unauthenticated, "SESSION_ENDED"),
            (UserError::RefreshReuse, Code::Unauthenticated, "REFRESH_TOKEN_REUSED"),
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
