//! What the feed asks of the user service: profiles, follower pages for fan-out, whom a reader
//! follows (cached per process for at most [`FOLLOWING_TTL`]), mentions, and blocks (through
//! the shared [`BlockClient`] with its epochs); and what it tells it: who interacted with whose
//! statuses (their who-to-follow recommendations).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chatmesh_api::user::v1::{
    BatchGetUsersRequest, ListFollowerIdsRequest, ListFollowingIdsRequest, RecordInteractionsRequest,
    ResolveUsernamesRequest, User, UserState, user_internal_service_client::UserInternalServiceClient,
};
use chatmesh_platform::{blocks::BlockClient, grpc::InternalChannel};
use chatmesh_wire::ids::parse_id;

use crate::error::FeedError;

/// How long a reader's followees are served from the cache: the bound on how late an unfollow
/// made in another process reaches that reader's timeline.
pub const FOLLOWING_TTL: Duration = Duration::from_secs(1);
/// Readers whose followees one process keeps.
const FOLLOWING_ENTRIES: usize = 10_000;
/// BatchGetUsers takes at most this many ids.
const USERS_PER_CALL: usize = 100;

/// One page of an author's followers.
#[derive(Debug, Clone, Default)]
pub struct FollowerPage {
    pub user_ids: Vec<u64>,
    /// Empty on the last page.
    pub next_page_token: String,
    pub total: u64,
}

/// Whom a reader follows: each followee with the follow's time-ordered id, newest first.
pub type Followees = Arc<Vec<(u64, u64)>>;

/// The user service, as the feed sees it.
#[derive(Clone)]
pub struct Graph {
    users: UserInternalServiceClient<InternalChannel>,
    blocks: BlockClient,
    following: Arc<Mutex<HashMap<u64, (Instant, Followees)>>>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph").finish_non_exhaustive()
    }
}

impl Graph {
    pub fn new(users: InternalChannel, blocks: BlockClient) -> Self {
        Self { users: UserInternalServiceClient::new(users), blocks, following: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// Public profiles by id; ids that name nobody are left out.
    pub async fn users(&self, ids: &[u64]) -> Result<HashMap<u64, User>, FeedError> {
        let mut found = HashMap::with_capacity(ids.len());
        let unique: Vec<u64> = ids.iter().copied().collect::<HashSet<_>>().into_iter().collect();
        for chunk in unique.chunks(USERS_PER_CALL) {
            let request = BatchGetUsersRequest { user_ids: chunk.iter().map(u64::to_string).collect() };
            let response = self.users.clone().batch_get_users(request).await?.into_inner();
            for user in response.users {
                if let Some(id) = parse_id(&user.user_id) {
                    found.insert(id, user);
                }
            }
        }
        Ok(found)
    }

    /// Tells the user service, in the background, that `user` liked, reposted or replied to a
    /// status of `author` (a point toward their recommendations; a failure is logged).
    pub fn interacted(&self, user: u64, author: u64) {
        if user == author {
            return;
        }
        let request = RecordInteractionsRequest { user_id: user.to_string(), other_user_ids: vec![author.to_string()] };
        let mut users = self.users.clone();
        tokio::spawn(async move {
            if let Err(status) = users.record_interactions(request).await {
                tracing::warn!(code = ?status.code(), message = status.message(), "interaction not recorded");
            }
        });
    }

    /// Whether a user exists and has not deleted their account.
    pub async fn exists(&self, user_id: u64) -> Result<bool, FeedError> {
        let users = self.users(&[user_id]).await?;
        Ok(users.get(&user_id).is_some_and(is_present))
    }

    /// One page of an author's followers, newest follow first.
    pub async fn follower_page(&self, author: u64, page_token: &str, size: usize) -> Result<FollowerPage, FeedError> {
        let request = ListFollowerIdsRequest {
            user_id: author.to_string(),
            page_size: i32::try_from(size).unwrap_or(i32::MAX),
            page_token: page_token.to_owned(),
        };
        let response = self.users.clone().list_follower_ids(request).await?.into_inner();
        Ok(FollowerPage {
            user_ids: response.user_ids.iter().filter_map(|id| parse_id(id)).collect(),
            next_page_token: response.next_page_token,
            total: u64::try_from(response.total_size).unwrap_or(0),
        })
    }

    /// Whom `reader` follows, from the cache while it is younger than [`FOLLOWING_TTL`].
    pub async fn following(&self, reader: u64) -> Result<Followees, FeedError> {
        let cached = self.following.lock().unwrap_or_else(|e| e.into_inner()).get(&reader).cloned();
        if let Some((at, followees)) = cached
            && at.elapsed() < FOLLOWING_TTL
        {
            return Ok(followees);
        }
        let request = ListFollowingIdsRequest { user_id: reader.to_string() };
        let response = self.users.clone().list_following_ids(request).await?.into_inner();
        let followees: Followees = Arc::new(
            response.followees.iter().filter_map(|f| Some((parse_id(&f.user_id)?, parse_id(&f.follow_id)?))).collect(),
        );
        let mut cache = self.following.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= FOLLOWING_ENTRIES {
            cache.retain(|_, (at, _)| at.elapsed() < FOLLOWING_TTL);
            if cache.len() >= FOLLOWING_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(reader, (Instant::now(), followees.clone()));
        Ok(followees)
    }

    /// The ids of @mentioned usernames that name someone.
    pub async fn resolve_usernames(&self, usernames: Vec<String>) -> Result<Vec<u64>, FeedError> {
        if usernames.is_empty() {
            return Ok(Vec::new());
        }
        let response = self.users.clone().resolve_usernames(ResolveUsernamesRequest { usernames }).await?.into_inner();
        Ok(response.users.iter().filter_map(|u| parse_id(&u.user_id)).collect())
    }

    /// Whom `user` blocks.
    pub async fn blocked_by(&self, user: u64) -> Result<Arc<HashSet<u64>>, FeedError> {
        Ok(self.blocks.blocked_by_user(user).await?)
    }

    /// How `actor` may act on what `author` wrote: refused when either blocks the other.
    pub async fn check_not_blocked(&self, actor: u64, author: u64) -> Result<(), FeedError> {
        if actor == author || !self.blocks.blocked_between(actor, author).await? {
            return Ok(());
        }
        if self.blocked_by(actor).await?.contains(&author) {
            return Err(FeedError::AuthorBlockedByYou(author));
        }
        Err(FeedError::BlockedByAuthor(author))
    }

    /// Whether `author` blocks `reader` (what a reader may not see at all).
    pub async fn blocks_reader(&self, author: u64, reader: u64) -> Result<bool, FeedError> {
        if author == reader || !self.blocks.blocked_between(author, reader).await? {
            return Ok(false);
        }
        Ok(!self.blocked_by(reader).await?.contains(&author) || self.blocked_by(author).await?.contains(&reader))
    }
}

/// Whether a profile belongs to an account that is still there (not deleted).
pub fn is_present(user: &User) -> bool {
    user.state() != UserState::Deleted
}
