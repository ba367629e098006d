//! The chat service's errors, mapped to gRPC statuses in one place.
//!
//! Every refusal is a variant with its `ErrorInfo` reason (or, for a bad field, its
//! `BadRequest` violation). Failures of a backend (the store, the media store, the search
//! index) and of a peer are logged with the request id and answered with the id only: no
//! backend text reaches a client.

use chatmesh_platform::error::{internal, invalid_field, status_with_reason, unavailable, upstream};
use chatmesh_search::SearchError;
use tonic::{Code, Status};

use crate::{media::MediaError, store::StoreError};

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
    /// The caller or the other member of a direct channel (named) has blocked the other
    /// (which one is not said).
    #[error("you cannot write to user {0}: one of you has blocked the other")]
    UserBlocked(u64),
    #[error("client_msg_id was already used for a different chat ({0})")]
    KeyReused(u64),
    /// `reply_to_chat_id` names no chat of the channel written to (none, or another channel's:
    /// the answer is the same, so it does not tell which ids exist).
    #[error("reply_to_chat_id: chat {0} not found in this channel")]
    ReplyNotInChannel(u64),
    /// An ack's `chat_id` names no chat of the channel acked (none, or another channel's).
    #[error("chat_id: chat {0} not found in this channel")]
    AckNotInChannel(u64),
    #[error("{0} is not accepted here")]
    ContentTypeNotAccepted(String),
    #[error("must be from 1 to {max} bytes")]
    SizeOutOfRange { max: u64 },
    /// None, someone else's or another channel's: the answer is the same for each.
    #[error("attachment_upload_ids: upload {0} is not an upload of yours in this channel")]
    UploadNotYours(u64),
    #[error("attachment_upload_ids: upload {0} is already attached")]
    UploadAttached(u64),
    #[error("attachment_upload_ids: upload {0} has expired")]
    UploadExpired(u64),
    /// The stored file differs from what CreateUpload declared; it was deleted.
    #[error("upload {upload_id} is not what was declared ({size_bytes} bytes of {content_type}); the file was deleted")]
    UploadMismatch { upload_id: u64, size_bytes: u64, content_type: String },
    #[error("attachment_upload_ids: upload {0} is not finished: PUT the file to its upload URL first")]
    UploadNotFinished(u64),
    /// Also what a caller gets for an attachment of a chat they cannot read.
    #[error("attachment {0} not found")]
    AttachmentNotFound(u64),
    /// The search query as the analyzer refuses it (none given, or too long).
    #[error("{0}")]
    InvalidQuery(String),
    #[error("attachments are not served by this process")]
    MediaNotServed,
    #[error("search is not served by this process")]
    SearchNotServed,
    #[error("the chat could not be stored durably; retry with the same client_msg_id")]
    NotDurable,
    #[error("chat store: {0}")]
    Store(String),
    #[error(transparent)]
    Media(#[from] MediaError),
    /// A failure of an operation over both the index and the store (the index's status).
    #[error(transparent)]
    Search(#[from] SearchError),
    /// What a peer (the channel or user service) answered.
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
            ChatError::UserBlocked(id) => {
                status_with_reason(Code::PermissionDenied, message, "USER_BLOCKED", &[("user_id", id.to_string())])
            }
            ChatError::KeyReused(id) => status_with_reason(
                Code::AlreadyExists,
                message,
                "IDEMPOTENCY_KEY_REUSED",
                &[("chat_id", id.to_string())],
            ),
            ChatError::ReplyNotInChannel(id) => {
                status_with_reason(Code::NotFound, message, "REPLY_TARGET_NOT_FOUND", &[("chat_id", id.to_string())])
            }
            ChatError::AckNotInChannel(id) => {
                status_with_reason(Code::NotFound, message, "ACKED_CHAT_NOT_FOUND", &[("chat_id", id.to_string())])
            }
            ChatError::ContentTypeNotAccepted(_) => invalid_field("content_type", message),
            ChatError::SizeOutOfRange { .. } => invalid_field("size_bytes", message),
            ChatError::UploadNotYours(id) => {
                status_with_reason(Code::NotFound, message, "UPLOAD_NOT_FOUND", &[("upload_id", id.to_string())])
            }
            ChatError::UploadAttached(id) => status_with_reason(
                Code::FailedPrecondition,
                message,
                "UPLOAD_ATTACHED",
                &[("upload_id", id.to_string())],
            ),
            ChatError::UploadExpired(id) => status_with_reason(
                Code::FailedPrecondition,
                message,
                "UPLOAD_EXPIRED",
                &[("upload_id", id.to_string())],
            ),
            ChatError::UploadMismatch { .. } => invalid_field("attachment_upload_ids", message),
            ChatError::InvalidQuery(_) => invalid_field("query", message),
            ChatError::UploadNotFinished(id) => status_with_reason(
                Code::FailedPrecondition,
                message,
                "UPLOAD_NOT_FINISHED",
                &[("upload_id", id.to_string())],
            ),
            ChatError::AttachmentNotFound(id) => {
                status_with_reason(Code::NotFound, message, "ATTACHMENT_NOT_FOUND", &[("upload_id", id.to_string())])
            }
            ChatError::MediaNotServed => status_with_reason(Code::Unavailable, message, "MEDIA_NOT_SERVED", &[]),
            ChatError::SearchNotServed => status_with_reason(Code::Unavailable, message, "SEARCH_NOT_SERVED", &[]),
            ChatError::NotDurable => status_with_reason(Code::Unavailable, message, "NOT_DURABLE", &[]),
            ChatError::Store(e) => internal("chat store", e),
            ChatError::Media(e) => unavailable("media", e),
            // why: search's own mapping tells a broken index (INTERNAL) from an unreachable one (UNAVAILABLE).
            ChatError::Search(e) => e.into(),
            ChatError::Upstream(status) => upstream("peer", status),
        }
    }
}

/// A peer's answer, passed on with its code: its refusals as they are (their reasons and
/// details are meant for the client), its failures with the generic message of this process
/// (the peer's own text, which may name its backend, goes to the log).
impl From<StoreError> for ChatError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotDurable(_) => ChatError::NotDurable,
            StoreError::Backend(e) => ChatError::Store(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use chatmesh_platform::error::http_error_body;
    use chatmesh_search::IndexError;

    use super::*;

    /// The `ErrorInfo` reason of a status.
    fn reason(status: &Status) -> String {
        let (_, body) = http_error_body(status);
        body["details"][0]["reason"].as_str().unwrap_or_default().to_owned()
    }

    /// The field of a status's first field violation.
    fn field(status: &Status) -> String {
        let (_, body) = http_error_body(status);
        let details = body["details"].as_array().cloned().unwrap_or_default();
        let violations = details.iter().find_map(|d| d["fieldViolations"].as_array().cloned()).unwrap_or_default();
        violations.first().and_then(|v| v["field"].as_str()).unwrap_or_default().to_owned()
    }

    #[test]
    fn refusals_carry_their_reasons() {
        let cases = [
            (ChatError::ChannelNotFound(1), Code::NotFound, "CHANNEL_NOT_FOUND"),
            (ChatError::NotAMember(1), Code::PermissionDenied, "NOT_A_MEMBER"),
            (ChatError::ChatNotFound(1), Code::NotFound, "CHAT_NOT_FOUND"),
            (ChatError::NotSender(1), Code::PermissionDenied, "NOT_SENDER"),
            (ChatError::Retracted(1), Code::FailedPrecondition, "CHAT_RETRACTED"),
            (ChatError::BroadcastOwnerOnly, Code::PermissionDenied, "BROADCAST_OWNER_ONLY"),
            (ChatError::UserBlocked(2), Code::PermissionDenied, "USER_BLOCKED"),
            (ChatError::KeyReused(1), Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED"),
            (ChatError::ReplyNotInChannel(1), Code::NotFound, "REPLY_TARGET_NOT_FOUND"),
            (ChatError::AckNotInChannel(1), Code::NotFound, "ACKED_CHAT_NOT_FOUND"),
            (ChatError::UploadNotYours(1), Code::NotFound, "UPLOAD_NOT_FOUND"),
            (ChatError::UploadAttached(1), Code::FailedPrecondition, "UPLOAD_ATTACHED"),
            (ChatError::UploadExpired(1), Code::FailedPrecondition, "UPLOAD_EXPIRED"),
            (ChatError::UploadNotFinished(1), Code::FailedPrecondition, "UPLOAD_NOT_FINISHED"),
            (ChatError::AttachmentNotFound(1), Code::NotFound, "ATTACHMENT_NOT_FOUND"),
            (ChatError::MediaNotServed, Code::Unavailable, "MEDIA_NOT_SERVED"),
            (ChatError::SearchNotServed, Code::Unavailable, "SEARCH_NOT_SERVED"),
            (ChatError::NotDurable, Code::Unavailable, "NOT_DURABLE"),
        ];
        for (error, code, expected) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{expected}");
            assert_eq!(reason(&status), expected);
        }
    }

    #[test]
    fn refused_references_and_uploads_name_their_field_first() {
        let cases = [
            (ChatError::ReplyNotInChannel(7), "reply_to_chat_id: chat 7 not found in this channel"),
            (ChatError::AckNotInChannel(7), "chat_id: chat 7 not found in this channel"),
            (ChatError::UploadNotYours(7), "attachment_upload_ids: upload 7 is not an upload of yours in this channel"),
            (ChatError::UploadAttached(7), "attachment_upload_ids: upload 7 is already attached"),
            (ChatError::UploadExpired(7), "attachment_upload_ids: upload 7 has expired"),
        ];
        for (error, message) in cases {
            let status = Status::from(error);
            assert_eq!(status.message(), message);
            assert_eq!(field(&status), "", "a refused reference is no bad field: {message}");
        }
        let status = Status::from(ChatError::UploadNotFinished(7));
        assert!(
            status.message().starts_with("attachment_upload_ids: upload 7 is not finished"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn bad_fields_keep_their_messages() {
        let cases = [
            (ChatError::ContentTypeNotAccepted("text/html".into()), "content_type", "text/html is not accepted here"),
            (ChatError::SizeOutOfRange { max: 10 }, "size_bytes", "must be from 1 to 10 bytes"),
            (ChatError::InvalidQuery("is required".into()), "query", "is required"),
            (
                ChatError::UploadMismatch { upload_id: 7, size_bytes: 3, content_type: "image/png".into() },
                "attachment_upload_ids",
                "upload 7 is not what was declared (3 bytes of image/png); the file was deleted",
            ),
        ];
        for (error, expected_field, message) in cases {
            let status = Status::from(error);
            assert_eq!(
                (status.code(), status.message()),
                (Code::InvalidArgument, format!("{expected_field}: {message}").as_str())
            );
            assert_eq!((field(&status), reason(&status).as_str()), (expected_field.to_owned(), "INVALID_ARGUMENT"));
        }
    }

    #[test]
    fn backend_failures_answer_with_the_request_id_only() {
        let secret = "fjall: /var/lib/secret path io error";
        let cases = [
            (ChatError::from(StoreError::Backend(secret.into())), Code::Internal),
            (ChatError::from(MediaError::Backend(secret.into())), Code::Unavailable),
            (ChatError::Search(IndexError::Backend(secret.into()).into()), Code::Internal),
            (ChatError::Search(IndexError::Unavailable(secret.into()).into()), Code::Unavailable),
            (ChatError::Upstream(Status::internal(secret)), Code::Internal),
            (ChatError::Upstream(Status::unavailable(secret)), Code::Unavailable),
        ];
        for (error, code) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code);
            assert!(status.message().contains("request"), "{}", status.message());
            assert!(!status.message().contains("secret"), "{}", status.message());
        }
        let status = Status::from(ChatError::from(StoreError::NotDurable(secret.into())));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("secret"), "{}", status.message());
    }

    #[test]
    fn a_peers_refusals_pass_through() {
        let refused = status_with_reason(Code::Unavailable, "membership epoch is moving", "RETRY", &[]);
        let status = Status::from(ChatError::Upstream(refused));
        assert_eq!((status.code(), status.message()), (Code::Unavailable, "membership epoch is moving"));
        let status = Status::from(ChatError::Upstream(Status::resource_exhausted("slow down")));
        assert_eq!((status.code(), status.message()), (Code::ResourceExhausted, "slow down"));
    }

    #[test]
    fn per_id_outcomes_keep_their_reasons() {
        assert_eq!(ChatError::ChannelNotFound(1).reason(), "CHAT_NOT_FOUND");
        assert_eq!(ChatError::ChatNotFound(1).reason(), "CHAT_NOT_FOUND");
        assert_eq!(ChatError::NotAMember(1).reason(), "NOT_A_MEMBER");
        assert_eq!(ChatError::NotSender(1).reason(), "NOT_SENDER");
        assert_eq!(ChatError::Retracted(1).reason(), "CHAT_RETRACTED");
        assert_eq!(ChatError::Store("x".into()).reason(), "FAILED");
    }
}
