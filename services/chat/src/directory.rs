//! What the chat service looks up in other services: who belongs to a channel and with which
//! role (the channel service, through the platform's cached membership client), who blocked
//! whom (the user service, through the platform's cached block client), and which user a
//! username names (the user service).

use std::{collections::HashSet, sync::Arc};

use chatmesh_api::{
    channel::v1::{ChannelKind, MemberRole},
    user::v1::{ResolveUsernamesRequest, user_internal_service_client::UserInternalServiceClient},
};
use chatmesh_platform::{
    blocks::BlockClient,
    grpc::InternalChannel,
    membership::{MembershipClient, Refusal},
};

use crate::error::ChatError;

/// What a user may do in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub role: MemberRole,
    pub kind: ChannelKind,
    /// In a direct channel, its other member.
    pub peer: Option<u64>,
}

/// The chat service's lookups in the channel and user services: channel membership and roles,
/// blocks, and usernames.
#[derive(Debug, Clone)]
pub struct Directory {
    membership: MembershipClient,
    blocks: BlockClient,
    users: UserInternalServiceClient<InternalChannel>,
}

impl Directory {
    pub fn new(membership: MembershipClient, blocks: BlockClient, users: InternalChannel) -> Self {
        Self { membership, blocks, users: UserInternalServiceClient::new(users) }
    }

    /// The user's access to a channel they must be a member of: NOT_FOUND when the channel
    /// does not exist or is private or direct, PERMISSION_DENIED when it is public.
    pub async fn member(&self, channel_id: u64, user_id: u64) -> Result<Access, ChatError> {
        match self.membership.require_member(channel_id, user_id).await? {
            Ok(answer) => {
                let mut members = answer.direct_member_ids.iter().filter_map(|id| id.parse::<u64>().ok());
                let peer = members.find(|id| *id != user_id);
                Ok(Access { role: answer.role(), kind: answer.kind(), peer })
            }
            Err(Refusal::NotFound) => Err(ChatError::ChannelNotFound(channel_id)),
            Err(Refusal::NotAMember) => Err(ChatError::NotAMember(channel_id)),
        }
    }

    /// Whether the user is a member (no error for outsiders).
    pub async fn is_member(&self, channel_id: u64, user_id: u64) -> Result<bool, ChatError> {
        let answer = self.membership.check(channel_id, user_id).await?;
        Ok(answer.channel_exists && answer.is_member)
    }

    /// Whether either of two users has blocked the other.
    pub async fn blocked_between(&self, a: u64, b: u64) -> Result<bool, ChatError> {
        Ok(self.blocks.blocked_between(a, b).await?)
    }

    /// Everyone the user has blocked.
    pub async fn blocked_by(&self, user_id: u64) -> Result<Arc<HashSet<u64>>, ChatError> {
        Ok(self.blocks.blocked_by_user(user_id).await?)
    }

    /// Every channel the user belongs to.
    pub async fn channels_of(&self, user_id: u64) -> Result<Vec<u64>, ChatError> {
        Ok(self.membership.channels_of(user_id).await?)
    }

    /// User ids of the given usernames (unknown ones left out).
    pub async fn resolve_usernames(&self, usernames: Vec<String>) -> Result<Vec<u64>, ChatError> {
        if usernames.is_empty() {
            return Ok(Vec::new());
        }
        let users = self.users.clone().resolve_usernames(ResolveUsernamesRequest { usernames }).await?.into_inner();
        Ok(users.users.iter().filter_map(|u| u.user_id.parse().ok()).collect())
    }
}
