//! Membership as other services see it: the channel service's `CheckMembership`, cached per
//! (channel, user) for at most [`MEMBERSHIP_TTL`] and never past a newer epoch on the
//! [`EpochBoard`] — which the channel service raises before a membership change returns, so
//! within one process a kicked user's very next call is refused. Across processes raises are
//! relayed through Redis pub/sub ([`crate::relay`]), which may drop a message: the TTL bounds
//! staleness then.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use chatmesh_api::channel::v1::{
    ChannelKind, ChannelVisibility, CheckMembershipRequest, CheckMembershipResponse, ListUserChannelIdsRequest,
    MemberRole, channel_internal_service_client::ChannelInternalServiceClient,
};
// why: tokio's clock (the system's outside tests) so tests can pause and advance it
use tokio::time::Instant;
use tonic::Status;

use crate::grpc::InternalChannel;

/// Whether a member with `role` may write in a channel of `kind` (send chats, start uploads,
/// announce typing): in a broadcast channel only its owner writes. Every service asks this one
/// rule.
pub fn may_write(kind: ChannelKind, role: MemberRole) -> bool {
    kind != ChannelKind::Broadcast || role == MemberRole::Owner
}

/// How long a membership answer is trusted without news of a newer epoch.
pub const MEMBERSHIP_TTL: Duration = Duration::from_secs(1);
const CACHE_ENTRIES: usize = 100_000;

/// The newest epoch known per id: a channel's membership epoch, or (on a board of its own) a
/// user's block epoch.
#[derive(Debug, Default)]
pub struct EpochBoard {
    epochs: RwLock<HashMap<u64, u64>>,
    /// Where raises made here are announced to other processes, when the mesh spans several.
    announce: Option<tokio::sync::mpsc::UnboundedSender<Vec<u8>>>,
}

impl EpochBoard {
    pub fn new() -> Self {
        Self::default()
    }

    /// A board whose raises are also handed, encoded, to the returned receiver (for
    /// [`crate::relay::relay`]; [`EpochBoard::record_announced`] reads them on the other side).
    pub fn announcing() -> (Self, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Self { epochs: RwLock::default(), announce: Some(tx) }, rx)
    }

    /// Records that `channel_id` reached `epoch` (epochs only grow), and announces it.
    pub fn raise(&self, channel_id: u64, epoch: u64) {
        self.record(channel_id, epoch);
        if let Some(announce) = &self.announce {
            let mut message = channel_id.to_be_bytes().to_vec();
            message.extend_from_slice(&epoch.to_be_bytes());
            let _ = announce.send(message);
        }
    }

    /// Records a raise another process announced.
    pub fn record_announced(&self, message: &[u8]) {
        if let (Some(channel), Some(epoch)) = (message.get(..8), message.get(8..16)) {
            let parse = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or_default());
            self.record(parse(channel), parse(epoch));
        }
    }

    /// Records an epoch another process reached.
    pub fn record(&self, channel_id: u64, epoch: u64) {
        let mut epochs = self.epochs.write().unwrap_or_else(|e| e.into_inner());
        let entry = epochs.entry(channel_id).or_insert(epoch);
        *entry = (*entry).max(epoch);
    }

    /// Whether an answer carrying `epoch` may still be used.
    pub fn is_current(&self, channel_id: u64, epoch: u64) -> bool {
        let epochs = self.epochs.read().unwrap_or_else(|e| e.into_inner());
        epochs.get(&channel_id).is_none_or(|known| *known <= epoch)
    }
}

/// Why a user may not act in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The channel does not exist, or is private or direct and the user is not a member.
    NotFound,
    /// The channel is public and the user is not a member.
    NotAMember,
}

/// (channel, user) → the answer and when it was fetched.
type Cache = HashMap<(u64, u64), (CheckMembershipResponse, Instant)>;

/// `CheckMembership` with a cache keyed by the membership epoch.
#[derive(Clone)]
pub struct MembershipClient {
    channels: ChannelInternalServiceClient<InternalChannel>,
    epochs: Arc<EpochBoard>,
    cache: Arc<Mutex<Cache>>,
}

impl std::fmt::Debug for MembershipClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipClient").finish_non_exhaustive()
    }
}

impl MembershipClient {
    pub fn new(channels: InternalChannel, epochs: Arc<EpochBoard>) -> Self {
        Self {
            channels: ChannelInternalServiceClient::new(channels),
            epochs,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn epochs(&self) -> &Arc<EpochBoard> {
        &self.epochs
    }

    /// The channel service's answer for (channel, user), from the cache while it is current.
    pub async fn check(&self, channel_id: u64, user_id: u64) -> Result<CheckMembershipResponse, Status> {
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
        cache.insert((channel_id, user_id), (answer.clone(), Instant::now()));
        Ok(answer)
    }

    /// The answer for a user who must be a member, or why not.
    pub async fn require_member(
        &self,
        channel_id: u64,
        user_id: u64,
    ) -> Result<Result<CheckMembershipResponse, Refusal>, Status> {
        let answer = self.check(channel_id, user_id).await?;
        if answer.channel_exists && answer.is_member {
            return Ok(Ok(answer));
        }
        let public = answer.channel_exists
            && answer.visibility() == ChannelVisibility::Public
            && answer.kind() != ChannelKind::Direct;
        Ok(Err(if public { Refusal::NotAMember } else { Refusal::NotFound }))
    }

    /// Every channel the user belongs to.
    pub async fn channels_of(&self, user_id: u64) -> Result<Vec<u64>, Status> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_older_than_the_newest_epoch_are_stale() {
        let board = EpochBoard::new();
        assert!(board.is_current(1, 3), "nothing known yet");
        board.raise(1, 5);
        board.raise(1, 4);
        assert!(!board.is_current(1, 4));
        assert!(board.is_current(1, 5));
        assert!(board.is_current(2, 1));
    }

    /// The channel service, answering "member" until told otherwise.
    #[derive(Clone, Default)]
    struct Channels {
        member: Arc<std::sync::atomic::AtomicBool>,
    }

    #[tonic::async_trait]
    impl chatmesh_api::channel::v1::channel_internal_service_server::ChannelInternalService for Channels {
        async fn check_membership(
            &self,
            _request: tonic::Request<CheckMembershipRequest>,
        ) -> Result<tonic::Response<CheckMembershipResponse>, Status> {
            let is_member = self.member.load(std::sync::atomic::Ordering::Acquire);
            Ok(tonic::Response::new(CheckMembershipResponse { channel_exists: true, is_member, ..Default::default() }))
        }
    }

    // why: paused (virtual) time makes the TTL's edge exact without timing the machine
    #[tokio::test(start_paused = true)]
    async fn without_news_of_an_epoch_a_cached_answer_lives_exactly_the_ttl() {
        use crate::{
            auth::Authenticator,
            config::Config,
            grpc::{PlatformLayer, Policy, ServiceAuth, in_process_channel, internal_channel},
        };
        let dir = tempfile::tempdir().unwrap();
        let config = Config::default();
        let auth = Arc::new(Authenticator::from_data_dir(config.auth.clone(), dir.path()).unwrap());
        let channels = Channels::default();
        channels.member.store(true, std::sync::atomic::Ordering::Release);
        let server = chatmesh_api::channel::v1::channel_internal_service_server::ChannelInternalServiceServer::new(
            channels.clone(),
        );
        let layer = PlatformLayer::new(Arc::new(Policy::new(auth.clone(), &config)));
        let transport = in_process_channel(tonic::service::Routes::new(server), layer);
        let client = MembershipClient::new(
            internal_channel(transport, ServiceAuth::new(auth, "test")),
            Arc::new(EpochBoard::new()),
        );

        assert!(client.check(1, 7).await.unwrap().is_member);
        // the member is removed in another process, and the news of it is lost
        channels.member.store(false, std::sync::atomic::Ordering::Release);
        tokio::time::advance(MEMBERSHIP_TTL - Duration::from_millis(1)).await;
        assert!(client.check(1, 7).await.unwrap().is_member, "answered from the cache within the TTL");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!client.check(1, 7).await.unwrap().is_member, "asked again once the TTL is over");
    }
}
