//! The channel service's errors, mapped to gRPC statuses in one place.

use chatmesh_platform::error::{internal, status_with_reason};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Also what a non-member gets for a private or direct channel: its existence does not leak.
    #[error("channel {0} not found")]
    ChannelNotFound(u64),
    #[error("user {user_id} is not a member of channel {channel_id}")]
    MemberNotFound { channel_id: u64, user_id: u64 },
    #[error("{field}: user {user_id} not found")]
    UserNotFound { field: &'static str, user_id: u64 },
    #[error("only members of channel {0} may do this")]
    NotAMember(u64),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("user {user_id} is already a member of channel {channel_id}")]
    AlreadyMember { channel_id: u64, user_id: u64 },
    #[error("{1}")]
    Precondition(&'static str, &'static str),
    #[error("channel {0} is changing too fast, retry")]
    Busy(u64),
    #[error("storage: {0}")]
    Store(String),
    #[error(transparent)]
    Upstream(#[from] Status),
}

impl From<ChannelError> for Status {
    fn from(error: ChannelError) -> Self {
        let message = error.to_string();
        match error {
            ChannelError::ChannelNotFound(id) => {
                status_with_reason(Code::NotFound, message, "CHANNEL_NOT_FOUND", &[("channel_id", id.to_string())])
            }
            ChannelError::MemberNotFound { channel_id, user_id } => status_with_reason(
                Code::NotFound,
                message,
                "MEMBER_NOT_FOUND",
                &[("channel_id", channel_id.to_string()), ("user_id", user_id.to_string())],
            ),
            ChannelError::UserNotFound { field, user_id } => status_with_reason(
                Code::NotFound,
                message,
                "USER_NOT_FOUND",
                &[("field", field.to_owned()), ("user_id", user_id.to_string())],
            ),
            ChannelError::NotAMember(id) => {
                status_with_reason(Code::PermissionDenied, message, "NOT_A_MEMBER", &[("channel_id", id.to_string())])
            }
            ChannelError::Forbidden(_) => status_with_reason(Code::PermissionDenied, message, "ROLE_REQUIRED", &[]),
            ChannelError::AlreadyMember { channel_id, user_id } => status_with_reason(
                Code::AlreadyExists,
                message,
                "ALREADY_MEMBER",
                &[("channel_id", channel_id.to_string()), ("user_id", user_id.to_string())],
            ),
            ChannelError::Precondition(reason, _) => status_with_reason(Code::FailedPrecondition, message, reason, &[]),
            ChannelError::Busy(_) => Status::unavailable(message),
            ChannelError::Store(e) => internal("channel store", e),
            ChannelError::Upstream(status) => status,
        }
    }
}

impl From<crate::store::StoreError> for ChannelError {
    fn from(e: crate::store::StoreError) -> Self {
        ChannelError::Store(e.to_string())
    }
}
