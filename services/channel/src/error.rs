//! The channel service's errors: every refusal a variant with its own `ErrorInfo` reason,
//! mapped to gRPC statuses in one place. Store and upstream failures are logged with the
//! request id and answered without their text.

use chatmesh_platform::error::{internal, invalid_field, status_with_reason, unavailable};
use chatmesh_wire::channel as wire;
use tonic::{Code, Status};

use crate::{model::Role, store::StoreError};

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
    /// The caller's role is below the one `action` needs.
    #[error("only {} may {action}", holders(*required))]
    RoleRequired { required: Role, action: &'static str },
    /// The member acted on holds the caller's role or a higher one.
    #[error("you may only {action} members below your own role")]
    TargetNotBelow { user_id: u64, action: &'static str },
    #[error("you cannot change your own role")]
    OwnRole,
    /// Nobody raises anyone to or above their own role (the owner hands ownership over instead).
    #[error("nobody raises anyone to or above their own role")]
    RoleNotGrantable { role: Role },
    /// What direct channels do not allow (the message says what).
    #[error("{0}")]
    DirectChannel(&'static str),
    #[error("the owner must hand ownership over before leaving")]
    OwnerMustTransfer,
    #[error("user {user_id} is already a member of channel {channel_id}")]
    AlreadyMember { channel_id: u64, user_id: u64 },
    /// One of the pair has blocked the other (which one is not said).
    #[error("you and user {user_id} cannot have a direct channel: one of you has blocked the other")]
    UserBlocked { user_id: u64 },
    /// The half of the direct-channel rule that needs the caller (the wire checks the rest).
    #[error("member_ids: {}", wire::DIRECT_MEMBERS_RULE)]
    DirectMembers,
    #[error("channel {0} is changing too fast, retry")]
    Busy(u64),
    #[error("channel store: {0}")]
    Store(#[from] StoreError),
    /// The user service did not answer which users exist.
    #[error("user directory: {0}")]
    Users(Status),
}

/// Who holds `role` or a higher one, as the refusal names them.
fn holders(role: Role) -> &'static str {
    match role {
        Role::Owner => "the owner",
        Role::Admin | Role::Member => "the owner or an admin",
    }
}

pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Member => "member",
        Role::Admin => "admin",
        Role::Owner => "owner",
    }
}

impl From<ChannelError> for Status {
    fn from(error: ChannelError) -> Self {
        let message = error.to_string();
        let refused = |code, reason, metadata: &[(&str, String)]| status_with_reason(code, &message, reason, metadata);
        match error {
            ChannelError::ChannelNotFound(id) => {
                refused(Code::NotFound, "CHANNEL_NOT_FOUND", &[("channel_id", id.to_string())])
            }
            ChannelError::MemberNotFound { channel_id, user_id } => refused(
                Code::NotFound,
                "MEMBER_NOT_FOUND",
                &[("channel_id", channel_id.to_string()), ("user_id", user_id.to_string())],
            ),
            ChannelError::UserNotFound { field, user_id } => refused(
                Code::NotFound,
                "USER_NOT_FOUND",
                &[("field", field.to_owned()), ("user_id", user_id.to_string())],
            ),
            ChannelError::NotAMember(id) => {
                refused(Code::PermissionDenied, "NOT_A_MEMBER", &[("channel_id", id.to_string())])
            }
            ChannelError::RoleRequired { required, .. } => {
                refused(Code::PermissionDenied, "ROLE_REQUIRED", &[("required_role", role_name(required).to_owned())])
            }
            ChannelError::TargetNotBelow { user_id, .. } => {
                refused(Code::PermissionDenied, "TARGET_ROLE_NOT_BELOW", &[("user_id", user_id.to_string())])
            }
            ChannelError::OwnRole => refused(Code::PermissionDenied, "OWN_ROLE", &[]),
            ChannelError::RoleNotGrantable { role } => {
                refused(Code::PermissionDenied, "ROLE_NOT_GRANTABLE", &[("role", role_name(role).to_owned())])
            }
            ChannelError::DirectChannel(_) => refused(Code::FailedPrecondition, "DIRECT_CHANNEL", &[]),
            ChannelError::OwnerMustTransfer => refused(Code::FailedPrecondition, "OWNER_MUST_TRANSFER", &[]),
            ChannelError::AlreadyMember { channel_id, user_id } => refused(
                Code::AlreadyExists,
                "ALREADY_MEMBER",
                &[("channel_id", channel_id.to_string()), ("user_id", user_id.to_string())],
            ),
            ChannelError::UserBlocked { user_id } => {
                refused(Code::PermissionDenied, "USER_BLOCKED", &[("user_id", user_id.to_string())])
            }
            ChannelError::DirectMembers => invalid_field("member_ids", wire::DIRECT_MEMBERS_RULE),
            ChannelError::Busy(id) => refused(Code::Unavailable, "CHANNEL_BUSY", &[("channel_id", id.to_string())]),
            ChannelError::Store(e) => internal("channel store", e),
            // why: a peer's answer may carry transport text (addresses, os errors); the code
            // survives, the text goes to the log
            ChannelError::Users(status) => match status.code() {
                Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => {
                    unavailable("user directory", status.message())
                }
                _ => internal("user directory", format!("{:?}: {}", status.code(), status.message())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    fn reason(status: &Status) -> String {
        status.get_details_error_info().map(|info| info.reason).unwrap_or_default()
    }

    #[test]
    fn every_refusal_has_its_own_reason() {
        let cases = [
            (ChannelError::ChannelNotFound(1), Code::NotFound, "CHANNEL_NOT_FOUND"),
            (ChannelError::MemberNotFound { channel_id: 1, user_id: 2 }, Code::NotFound, "MEMBER_NOT_FOUND"),
            (ChannelError::UserNotFound { field: "user_id", user_id: 2 }, Code::NotFound, "USER_NOT_FOUND"),
            (ChannelError::NotAMember(1), Code::PermissionDenied, "NOT_A_MEMBER"),
            (
                ChannelError::RoleRequired { required: Role::Owner, action: "delete the channel" },
                Code::PermissionDenied,
                "ROLE_REQUIRED",
            ),
            (
                ChannelError::TargetNotBelow { user_id: 2, action: "remove" },
                Code::PermissionDenied,
                "TARGET_ROLE_NOT_BELOW",
            ),
            (ChannelError::OwnRole, Code::PermissionDenied, "OWN_ROLE"),
            (ChannelError::RoleNotGrantable { role: Role::Admin }, Code::PermissionDenied, "ROLE_NOT_GRANTABLE"),
            (ChannelError::DirectChannel("direct channels have no roles"), Code::FailedPrecondition, "DIRECT_CHANNEL"),
            (ChannelError::OwnerMustTransfer, Code::FailedPrecondition, "OWNER_MUST_TRANSFER"),
            (ChannelError::AlreadyMember { channel_id: 1, user_id: 2 }, Code::AlreadyExists, "ALREADY_MEMBER"),
            (ChannelError::UserBlocked { user_id: 2 }, Code::PermissionDenied, "USER_BLOCKED"),
            (ChannelError::DirectMembers, Code::InvalidArgument, "INVALID_ARGUMENT"),
            (ChannelError::Busy(1), Code::Unavailable, "CHANNEL_BUSY"),
        ];
        for (error, code, want) in cases {
            let status = Status::from(error);
            assert_eq!((status.code(), reason(&status).as_str()), (code, want), "{}", status.message());
        }
    }

    #[test]
    fn role_refusals_name_who_may() {
        let admin = ChannelError::RoleRequired { required: Role::Admin, action: "change the channel" };
        assert_eq!(admin.to_string(), "only the owner or an admin may change the channel");
        let owner = ChannelError::RoleRequired { required: Role::Owner, action: "delete the channel" };
        assert_eq!(owner.to_string(), "only the owner may delete the channel");
        assert!(Status::from(ChannelError::DirectMembers).message().starts_with("member_ids"));
    }

    #[test]
    fn store_and_upstream_failures_answer_without_their_text() {
        let store = Status::from(ChannelError::Store(StoreError::Backend("connection refused: 10.1.2.3:9042".into())));
        assert_eq!(store.code(), Code::Internal);
        assert!(!store.message().contains("10.1.2.3"), "{}", store.message());
        let users = Status::from(ChannelError::Users(Status::unavailable("tcp connect error: 10.4.5.6:50051")));
        assert_eq!(users.code(), Code::Unavailable);
        assert!(!users.message().contains("10.4.5.6"), "{}", users.message());
        let users = Status::from(ChannelError::Users(Status::permission_denied("token for part chat refused")));
        assert_eq!(users.code(), Code::Internal);
        assert!(!users.message().contains("token"), "{}", users.message());
    }
}
