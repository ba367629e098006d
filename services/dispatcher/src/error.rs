//! The dispatcher's errors, mapped to gRPC statuses in one place.

use chatmesh_platform::{
    error::{status_with_reason, unavailable, upstream},
    membership::Refusal,
};
use tonic::{Code, Status};

/// Every way a dispatcher operation ends without its answer.
#[derive(Debug, thiserror::Error)]
pub enum DispatcherError {
    /// The channel does not exist, or the caller may not know it does.
    #[error("channel {channel_id} not found")]
    ChannelNotFound { channel_id: u64 },
    #[error("only members of channel {channel_id} may do this")]
    NotAMember { channel_id: u64 },
    /// A broadcast channel's readers may not write in it, so neither may they type.
    #[error("only the owner may write in broadcast channel {channel_id}")]
    BroadcastOwnerOnly { channel_id: u64 },
    /// A gateway asked to change what a session follows; sessions follow their channels.
    #[error("follow_changed: sessions follow their channels")]
    FollowChangedUnsupported,
    /// A subscription asked to resume from event ids; subscriptions carry live events only.
    #[error(
        "last_event_ids: resuming a subscription is not built yet; catch up with ChatService.ListEvents, then subscribe without them"
    )]
    ResumeUnsupported,
    /// The user holds as many subscriptions on this dispatcher as one may.
    #[error("at most {max} live streams per user at once; close one first")]
    TooManySubscriptions { max: usize },
    /// The backplane did not take an event; the detail is logged, never answered.
    #[error("backplane: {0}")]
    Backplane(String),
    /// The channel service's answer to a membership question.
    #[error("membership: {}", .0.message())]
    Membership(#[from] Status),
}

impl DispatcherError {
    /// Why a user who must be a member of `channel_id` is refused.
    pub fn refused(channel_id: u64, refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotFound => DispatcherError::ChannelNotFound { channel_id },
            Refusal::NotAMember => DispatcherError::NotAMember { channel_id },
        }
    }
}

impl From<DispatcherError> for Status {
    fn from(error: DispatcherError) -> Self {
        let message = error.to_string();
        match error {
            DispatcherError::ChannelNotFound { channel_id } => status_with_reason(
                Code::NotFound,
                message,
                "CHANNEL_NOT_FOUND",
                &[("channel_id", channel_id.to_string())],
            ),
            DispatcherError::NotAMember { channel_id } => status_with_reason(
                Code::PermissionDenied,
                message,
                "NOT_A_MEMBER",
                &[("channel_id", channel_id.to_string())],
            ),
            DispatcherError::BroadcastOwnerOnly { channel_id } => status_with_reason(
                Code::PermissionDenied,
                message,
                "BROADCAST_OWNER_ONLY",
                &[("channel_id", channel_id.to_string())],
            ),
            DispatcherError::TooManySubscriptions { max } => status_with_reason(
                Code::ResourceExhausted,
                message,
                "TOO_MANY_SUBSCRIPTIONS",
                &[("max", max.to_string())],
            ),
            DispatcherError::FollowChangedUnsupported | DispatcherError::ResumeUnsupported => {
                Status::unimplemented(message)
            }
            DispatcherError::Backplane(e) => unavailable("backplane", e),
            // why: the channel service's refusals pass on as it answered them; a failure to
            // reach it (transport text) or its own failure is logged here, not answered.
            DispatcherError::Membership(status) => upstream("channel service", status),
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
    fn refusals_answer_their_code_and_reason() {
        let status = Status::from(DispatcherError::refused(42, Refusal::NotFound));
        assert_eq!((status.code(), reason(&status).as_str()), (Code::NotFound, "CHANNEL_NOT_FOUND"));
        assert_eq!(status.message(), "channel 42 not found");
        let status = Status::from(DispatcherError::refused(42, Refusal::NotAMember));
        assert_eq!((status.code(), reason(&status).as_str()), (Code::PermissionDenied, "NOT_A_MEMBER"));
        let status = Status::from(DispatcherError::BroadcastOwnerOnly { channel_id: 42 });
        assert_eq!((status.code(), reason(&status).as_str()), (Code::PermissionDenied, "BROADCAST_OWNER_ONLY"));
        assert_eq!(Status::from(DispatcherError::FollowChangedUnsupported).code(), Code::Unimplemented);
    }

    #[test]
    fn a_failed_dependency_answers_no_detail() {
        let status = Status::from(DispatcherError::Backplane("redis 10.0.0.9:6379: broken pipe".into()));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("10.0.0.9") && status.message().contains("request"), "{status:?}");
        let transport = Status::unavailable("tcp connect error: 10.0.0.8:50051: connection refused");
        let status = Status::from(DispatcherError::from(transport));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("10.0.0.8"), "{status:?}");
        let refused = Status::permission_denied("only members may do this");
        assert_eq!(Status::from(DispatcherError::from(refused)).message(), "only members may do this");
    }
}
