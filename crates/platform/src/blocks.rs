//! Blocks between users as other services see them: the user service's `CheckBlock` (per
//! unordered pair) and `ListBlockedUserIds` (per user), cached for at most [`BLOCK_TTL`] and
//! never past a newer block epoch on the [`EpochBoard`] keyed by user id — which the user
//! service raises for both users before a block or unblock returns, so within one process the
//! blocked user's very next call is refused. Across processes raises are relayed through Redis
//! pub/sub ([`crate::relay`]) on a topic of their own, which may drop a message: the TTL bounds
//! staleness then, as it does for membership.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use chatmesh_api::user::v1::{
    CheckBlockRequest, ListBlockedUserIdsRequest, user_internal_service_client::UserInternalServiceClient,
};
// why: tokio's clock (the system's outside tests) so tests can pause and advance it
use tokio::time::Instant;
use tonic::Status;

use crate::{
    grpc::InternalChannel,
    membership::{EpochBoard, MEMBERSHIP_TTL},
};

/// How long a block answer is trusted without news of a newer epoch: as long as a membership
/// answer, so a block and a kick take hold within the same bound.
pub const BLOCK_TTL: Duration = MEMBERSHIP_TTL;
/// Pairs cached at most (each entry is a few words).
const PAIR_ENTRIES: usize = 100_000;
/// Users whose blocked lists are cached at most (each entry holds a whole list).
const LIST_ENTRIES: usize = 10_000;

/// Whether either user of a pair blocked the other, with both users' epochs when read.
#[derive(Debug, Clone, Copy)]
struct PairAnswer {
    blocked: bool,
    low_epoch: u64,
    high_epoch: u64,
    at: Instant,
}

/// Everyone a user blocked, with the user's epoch when read.
#[derive(Debug, Clone)]
struct ListAnswer {
    blocked: Arc<HashSet<u64>>,
    epoch: u64,
    at: Instant,
}

/// Empties a cache that reached its bound before it takes one more entry.
fn bounded<K, V>(cache: &mut HashMap<K, V>, max: usize) {
    if cache.len() >= max {
        cache.clear();
    }
}

/// `CheckBlock` and `ListBlockedUserIds` with caches keyed by the users' block epochs.
#[derive(Clone)]
pub struct BlockClient {
    users: UserInternalServiceClient<InternalChannel>,
    epochs: Arc<EpochBoard>,
    /// (lower id, higher id) → the answer.
    pairs: Arc<Mutex<HashMap<(u64, u64), PairAnswer>>>,
    /// user → whom they blocked.
    lists: Arc<Mutex<HashMap<u64, ListAnswer>>>,
}

impl std::fmt::Debug for BlockClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockClient").finish_non_exhaustive()
    }
}

impl BlockClient {
    /// Asks the user service over `users`; `epochs` is the process's board of block epochs
    /// (not the membership one: its keys are user ids).
    pub fn new(users: InternalChannel, epochs: Arc<EpochBoard>) -> Self {
        Self { users: UserInternalServiceClient::new(users), epochs, pairs: Arc::default(), lists: Arc::default() }
    }

    /// The board of block epochs this client's answers are checked against.
    pub fn epochs(&self) -> &Arc<EpochBoard> {
        &self.epochs
    }

    /// Whether `a` blocked `b` or `b` blocked `a`, from the cache while it is current. Nobody
    /// blocks themselves, so `a == b` is answered without a call.
    pub async fn blocked_between(&self, a: u64, b: u64) -> Result<bool, Status> {
        if a == b {
            return Ok(false);
        }
        let (low, high) = (a.min(b), a.max(b));
        let cached = self.pairs.lock().unwrap_or_else(|e| e.into_inner()).get(&(low, high)).copied();
        if let Some(answer) = cached
            && answer.at.elapsed() < BLOCK_TTL
            && self.epochs.is_current(low, answer.low_epoch)
            && self.epochs.is_current(high, answer.high_epoch)
        {
            return Ok(answer.blocked);
        }
        let request = CheckBlockRequest { user_id: low.to_string(), other_user_id: high.to_string() };
        let response = self.users.clone().check_block(request).await?.into_inner();
        let answer = PairAnswer {
            blocked: response.blocking || response.blocked_by,
            low_epoch: response.user_epoch as u64,
            high_epoch: response.other_user_epoch as u64,
            at: Instant::now(),
        };
        let mut pairs = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        bounded(&mut pairs, PAIR_ENTRIES);
        pairs.insert((low, high), answer);
        Ok(answer.blocked)
    }

    /// Everyone `user` blocked, from the cache while it is current (one call serves every chat
    /// of a page).
    pub async fn blocked_by_user(&self, user: u64) -> Result<Arc<HashSet<u64>>, Status> {
        let cached = self.lists.lock().unwrap_or_else(|e| e.into_inner()).get(&user).cloned();
        if let Some(answer) = cached
            && answer.at.elapsed() < BLOCK_TTL
            && self.epochs.is_current(user, answer.epoch)
        {
            return Ok(answer.blocked);
        }
        let request = ListBlockedUserIdsRequest { user_id: user.to_string() };
        let response = self.users.clone().list_blocked_user_ids(request).await?.into_inner();
        let blocked: Arc<HashSet<u64>> = Arc::new(response.user_ids.iter().filter_map(|id| id.parse().ok()).collect());
        let answer = ListAnswer { blocked: blocked.clone(), epoch: response.epoch as u64, at: Instant::now() };
        let mut lists = self.lists.lock().unwrap_or_else(|e| e.into_inner());
        bounded(&mut lists, LIST_ENTRIES);
        lists.insert(user, answer);
        Ok(blocked)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use chatmesh_api::user::v1::{
        CheckBlockResponse, ListBlockedUserIdsResponse, user_internal_service_server::UserInternalService,
        user_internal_service_server::UserInternalServiceServer,
    };

    use super::*;
    use crate::{
        auth::Authenticator,
        config::Config,
        grpc::{PlatformLayer, Policy, ServiceAuth, in_process_channel, internal_channel},
    };

    /// The user service's block graph: (blocker, blocked) pairs and each user's block epoch,
    /// counting the calls it answers.
    #[derive(Clone, Default)]
    struct Users {
        blocks: Arc<Mutex<HashSet<(u64, u64)>>>,
        epochs: Arc<Mutex<HashMap<u64, u64>>>,
        calls: Arc<AtomicUsize>,
    }

    impl Users {
        /// `blocker` blocks (or unblocks) `blocked`; both users' epochs rise, as the user
        /// service's do. Returns the new epochs (blocker's, blocked's).
        fn set(&self, blocker: u64, blocked: u64, on: bool) -> (u64, u64) {
            let mut blocks = self.blocks.lock().unwrap();
            if on {
                blocks.insert((blocker, blocked));
            } else {
                blocks.remove(&(blocker, blocked));
            }
            let mut epochs = self.epochs.lock().unwrap();
            let mut bump = |user| {
                let epoch = epochs.entry(user).or_insert(0);
                *epoch += 1;
                *epoch
            };
            (bump(blocker), bump(blocked))
        }

        fn epoch(&self, user: u64) -> i64 {
            self.epochs.lock().unwrap().get(&user).copied().unwrap_or(0) as i64
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::Acquire)
        }
    }

    #[tonic::async_trait]
    impl UserInternalService for Users {
        async fn check_block(
            &self,
            request: tonic::Request<CheckBlockRequest>,
        ) -> Result<tonic::Response<CheckBlockResponse>, Status> {
            self.calls.fetch_add(1, Ordering::AcqRel);
            let request = request.into_inner();
            let (a, b) = (request.user_id.parse::<u64>().unwrap(), request.other_user_id.parse::<u64>().unwrap());
            let blocks = self.blocks.lock().unwrap().clone();
            Ok(tonic::Response::new(CheckBlockResponse {
                blocking: blocks.contains(&(a, b)),
                blocked_by: blocks.contains(&(b, a)),
                user_epoch: self.epoch(a),
                other_user_epoch: self.epoch(b),
            }))
        }

        async fn list_blocked_user_ids(
            &self,
            request: tonic::Request<ListBlockedUserIdsRequest>,
        ) -> Result<tonic::Response<ListBlockedUserIdsResponse>, Status> {
            self.calls.fetch_add(1, Ordering::AcqRel);
            let user = request.into_inner().user_id.parse::<u64>().unwrap();
            let blocks = self.blocks.lock().unwrap().clone();
            let user_ids = blocks.iter().filter(|(by, _)| *by == user).map(|(_, them)| them.to_string()).collect();
            Ok(tonic::Response::new(ListBlockedUserIdsResponse { user_ids, epoch: self.epoch(user) }))
        }
    }

    /// A client of `users` through the platform layer, in process, with its own board.
    fn client_of(users: &Users, dir: &tempfile::TempDir) -> BlockClient {
        let config = Config::default();
        let auth = Arc::new(Authenticator::from_data_dir(config.auth.clone(), dir.path()).unwrap());
        let layer = PlatformLayer::new(Arc::new(Policy::new(auth.clone(), &config)));
        let routes = tonic::service::Routes::new(UserInternalServiceServer::new(users.clone()));
        let transport = in_process_channel(routes, layer);
        BlockClient::new(internal_channel(transport, ServiceAuth::new(auth, "test")), Arc::new(EpochBoard::new()))
    }

    // why: paused (virtual) time makes the TTL's edge exact without timing the machine
    #[tokio::test(start_paused = true)]
    async fn without_news_of_an_epoch_a_cached_pair_lives_exactly_the_ttl_whichever_way_it_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::default();
        let client = client_of(&users, &dir);

        users.set(2, 1, true);
        assert!(client.blocked_between(1, 2).await.unwrap(), "blocked the other way round still counts");
        assert!(client.blocked_between(2, 1).await.unwrap());
        assert_eq!(users.calls(), 1, "one cache entry per unordered pair");
        // the block is lifted in another process, and the news of it is lost
        users.set(2, 1, false);
        tokio::time::advance(BLOCK_TTL - Duration::from_millis(1)).await;
        assert!(client.blocked_between(1, 2).await.unwrap(), "answered from the cache within the TTL");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!client.blocked_between(1, 2).await.unwrap(), "asked again once the TTL is over");
        assert_eq!(users.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_epoch_of_either_user_makes_a_cached_pair_stale_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::default();
        let client = client_of(&users, &dir);

        assert!(!client.blocked_between(1, 2).await.unwrap());
        let (_, blocked_epoch) = users.set(1, 2, true);
        // why: the user service raises both users; announcing only the higher id's epoch proves
        // either one alone is enough
        client.epochs().raise(2, blocked_epoch);
        assert!(client.blocked_between(2, 1).await.unwrap(), "the block holds on the very next call");
        let (blocker_epoch, _) = users.set(1, 2, false);
        client.epochs().raise(1, blocker_epoch);
        assert!(!client.blocked_between(1, 2).await.unwrap(), "and so does the unblock");
        assert_eq!(users.calls(), 3);
        assert!(!client.blocked_between(1, 2).await.unwrap());
        assert_eq!(users.calls(), 3, "an answer read at the newest epochs is cached again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocked_list_is_cached_per_user_until_the_ttl_or_a_newer_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::default();
        let client = client_of(&users, &dir);

        users.set(1, 2, true);
        users.set(3, 1, true);
        let listed = client.blocked_by_user(1).await.unwrap();
        assert_eq!(*listed, HashSet::from([2]), "only whom the user blocked, not who blocked them");
        assert_eq!(*client.blocked_by_user(3).await.unwrap(), HashSet::from([1]));
        assert_eq!(users.calls(), 2, "one entry per user");

        let (epoch, _) = users.set(1, 4, true);
        assert_eq!(*client.blocked_by_user(1).await.unwrap(), HashSet::from([2]), "cached");
        client.epochs().raise(1, epoch);
        assert_eq!(*client.blocked_by_user(1).await.unwrap(), HashSet::from([2, 4]), "stale once the epoch rose");

        users.set(1, 2, false);
        tokio::time::advance(BLOCK_TTL).await;
        assert_eq!(*client.blocked_by_user(1).await.unwrap(), HashSet::from([4]), "stale once the TTL is over");
        assert_eq!(users.calls(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn nobody_is_blocked_from_themself_and_asking_costs_no_call() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::default();
        let client = client_of(&users, &dir);
        assert!(!client.blocked_between(7, 7).await.unwrap());
        assert_eq!(users.calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_of_the_user_service_is_passed_on_and_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::default();
        let auth = Arc::new(Authenticator::from_data_dir(config.auth.clone(), dir.path()).unwrap());
        let layer = PlatformLayer::new(Arc::new(Policy::new(auth.clone(), &config)));
        // why: a server without the block RPCs answers UNIMPLEMENTED, as an older user service would
        #[derive(Clone)]
        struct Old;
        impl UserInternalService for Old {}
        let routes = tonic::service::Routes::new(UserInternalServiceServer::new(Old));
        let transport = in_process_channel(routes, layer);
        let client =
            BlockClient::new(internal_channel(transport, ServiceAuth::new(auth, "test")), Arc::new(EpochBoard::new()));
        let refused = client.blocked_between(1, 2).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unimplemented);
        assert!(client.blocked_by_user(1).await.is_err());
        assert!(client.pairs.lock().unwrap().is_empty() && client.lists.lock().unwrap().is_empty());
    }
}
