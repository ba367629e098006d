//! The user service's errors, mapped to gRPC statuses in one place.

use chatmesh_platform::error::{internal, rate_limited, status_with_reason};
use tonic::{Code, Status};

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
    #[error("invalid refresh token")]
    BadRefreshToken,
    #[error("the login session has ended")]
    SessionEnded,
    #[error("refresh token reuse detected; the login session has ended")]
    RefreshReuse,
    #[error("storage: {0}")]
    Store(String),
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
            UserError::LoginThrottled(wait) => rate_limited(message, wait),
            UserError::BadRefreshToken => status_with_reason(Code::Unauthenticated, message, "BAD_REFRESH_TOKEN", &[]),
            UserError::SessionEnded => status_with_reason(Code::Unauthenticated, message, "SESSION_ENDED", &[]),
            UserError::RefreshReuse => status_with_reason(Code::Unauthenticated, message, "REFRESH_TOKEN_REUSED", &[]),
            UserError::Store(e) => internal("user store", e),
        }
    }
}
