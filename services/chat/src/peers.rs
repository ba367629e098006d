//! What the chat service asks of other services: membership (cached by epoch), usernames,
//! and the channels of a user.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chatmesh_api::{
    channel::v1::{
        ChannelKind, ChannelVisibility, CheckMembershipRequest, CheckMembershipResponse, ListUserChannelIdsRequest,
        MemberRole, channel_internal_service_client::ChannelInternalServiceClient,
    },
    user::v1::{ResolveUsernamesRequest, user_internal_service_client::UserInternalServiceClient},
};
use chatmesh_platform::{grpc::InternalChannel, membership::EpochBoard};
use tonic::Status;

use crate::error::ChatError;

/// How long a membership answer is trusted without news of a newer epoch. Within one process
/// the epoch board makes a change visible at once; this bounds staleness across processes.
pub const MEMBERSHIP_TTL: Duration = Duration::from_secs(1);
const CACHE_ENTRIES: usize = 100_000;

/// What a user may do in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub role: MemberRole,
    pub kind: ChannelKind,
}

#[derive(Clone)]
pub struct Peers {
    channels: ChannelInternalServiceClient<InternalChannel>,
    users: UserInternalServiceClient<InternalChannel>,
    epochs: Arc<EpochBoard>,
    cache: Arc<Mutex<MembershipCache>>,
}

/// (channel, user) → the answer and when it was fetched.
type MembershipCache = HashMap<(u64, u64), (CheckMembershipResponse, Instant)>;

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers").finish_non_exhaustive()
    }
}

impl Peers {
    pub fn new(channels: InternalChannel, users: InternalChannel, epochs: Arc<EpochBoard>) -> Self {
        Self {
            channels: ChannelInternalServiceClient::new(channels),
            users: UserInternalServiceClient::new(users),
            epochs,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    async fn membership(&self, channel_id: u64, user_id: u64) -> Result<CheckMembershipResponse, Status> {
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.get(&(channel_id, user_id)).cloned()
        };
        if let Some((answer, at)) = cached
            && at.elapsed() < MEMBERSHIP_TTL
            && self.epochs.is_current(channel_id, answer.membership_epoch as u64)
        {
            return Ok(answer);
        }
        let request = CheckMembershipRequest { channel_id: channel_id.to_string(), user_id: user_id.to_string() };
        let answer = self.channels.clone().check_membership(request).await?.into_inner();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert((channel_id, user_id), (answer, Instant::now()));
        Ok(answer)
    }

    /// The user's access to a channel they must be a member of: NOT_FOUND when the channel
    /// does not exist or is private or direct, PERMISSION_DENIED when it is public.
    pub async fn member(&self, channel_id: u64, user_id: u64) -> Result<Access, ChatError> {
        let answer = self.membership(channel_id, user_id).await?;
        if !answer.channel_exists {
            return Err(ChatError::ChannelNotFound(channel_id));
        }
        if !answer.is_member {
            let public = answer.visibility() == ChannelVisibility::Public && answer.kind() != ChannelKind::Direct;
            return Err(if public {
                ChatError::NotAMember(channel_id)
            } else {
                ChatError::ChannelNotFound(channel_id)
            });
        }
        Ok(Access { role: answer.role(), kind: answer.kind() })
    }

    /// Whether the user is a member (no error for outsiders).
    pub async fn is_member(&self, channel_id: u64, user_id: u64) -> Result<bool, ChatError> {
        let answer = self.membership(channel_id, user_id).await?;
        Ok(answer.channel_exists && answer.is_member)
    }

    /// Every channel the user belongs to.
    pub async fn channels_of(&self, user_id: u64) -> Result<Vec<u64>, ChatError> {
        let mut ids = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = ListUserChannelIdsRequest { user_id: user_id.to_string(), page_size: 1000, page_token };
            let page = self.channels.clone().list_user_channel_ids(request).await?.into_inner();
            ids.extend(page.channel_ids.iter().filter_map(|id| id.parse::<u64>().ok()));
            if page.next_page_token.is_empty() {
                return Ok(ids);
            }
            page_token = page.next_page_token;
        }
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
