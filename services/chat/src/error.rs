//! The chat service's errors, mapped to gRPC statuses in one place.

use chatmesh_platform::error::{internal, status_with_reason};
use tonic::{Code, Status};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// Also what a non-member gets for a private or direct channel: its existence does not leak.
    #[error("channel {0} not found")]
    ChannelNotFound(u64),
    #[error("only members of channel {0} may do this")]
    NotAMember(u64),
    #[error("chat {0} not found")]
    ChatNotFound(u64),
    #[error("only the sender may change chat {0}")]
    NotSender(u64),
    #[error("chat {0} was retracted")]
    Retracted(u64),
    #[error("only the owner may write in a broadcast channel")]
    BroadcastOwnerOnly,
    #[error("client_msg_id was already used for a different chat ({0})")]
    KeyReused(u64),
    #[error("the chat could not be stored durably; retry with the same client_msg_id")]
    NotDurable,
    #[error("storage: {0}")]
    Store(String),
    #[error(transparent)]
    Upstream(#[from] Status),
}

impl ChatError {
    /// The reason code of a per-id outcome in a multiple-chat answer.
    pub fn reason(&self) -> &'static str {
        match self {
            ChatError::ChannelNotFound(_) | ChatError::ChatNotFound(_) => "CHAT_NOT_FOUND",
            ChatError::NotAMember(_) => "NOT_A_MEMBER",
            ChatError::NotSender(_) => "NOT_SENDER",
            ChatError::Retracted(_) => "CHAT_RETRACTED",
            _ => "FAILED",
        }
    }
}

impl From<ChatError> for Status {
    fn from(error: ChatError) -> Self {
        let message = error.to_string();
        match error {
            ChatError::ChannelNotFound(id) => {
                status_with_reason(Code::NotFound, message, "CHANNEL_NOT_FOUND", &[("channel_id", id.to_string())])
            }
            ChatError::NotAMember(id) => {
                status_with_reason(Code::PermissionDenied, message, "NOT_A_MEMBER", &[("channel_id", id.to_string())])
            }
            ChatError::ChatNotFound(id) => {
                status_with_reason(Code::NotFound, message, "CHAT_NOT_FOUND", &[("chat_id", id.to_string())])
            }
            ChatError::NotSender(id) => {
                status_with_reason(Code::PermissionDenied, message, "NOT_SENDER", &[("chat_id", id.to_string())])
            }
            ChatError::Retracted(id) => {
                status_with_reason(Code::FailedPrecondition, message, "CHAT_RETRACTED", &[("chat_id", id.to_string())])
            }
            ChatError::BroadcastOwnerOnly => {
                status_with_reason(Code::PermissionDenied, message, "BROADCAST_OWNER_ONLY", &[])
            }
            ChatError::KeyReused(id) => status_with_reason(
                Code::AlreadyExists,
                message,
                "IDEMPOTENCY_KEY_REUSED",
                &[("chat_id", id.to_string())],
            ),
            ChatError::NotDurable => status_with_reason(Code::Unavailable, message, "NOT_DURABLE", &[]),
            ChatError::Store(e) => internal("chat store", e),
            ChatError::Upstream(status) => status,
        }
    }
}

impl From<StoreError> for ChatError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotDurable(_) => ChatError::NotDurable,
            StoreError::Backend(e) => ChatError::Store(e),
        }
    }
}
