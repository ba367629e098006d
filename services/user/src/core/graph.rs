//! The social graph's rules: follows, blocks and friends. Every refusal is decided before
//! anything is written; the store makes each change (and its counters) atomic.

use std::collections::HashSet;

use chatmesh_api::{channel::v1::GetOrCreateDirectChannelRequest, dispatcher::v1::GetPresencesRequest};
use chatmesh_platform::{ids::now_ms, shared_limits::Allowances};
use chatmesh_wire::user as wire;

use super::{Profile, UserCore, at_least_a_second};
use crate::{
    error::UserError,
    model::{AccountState, Direction, Edge, Friendship, PendingRequest, RequestOutcome, Standing, UserRecord},
};

/// How the caller stands with another user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relation {
    pub standing: Standing,
    /// How many users both follow.
    pub mutual_following: u64,
}

/// A friend as the caller sees them.
#[derive(Debug, Clone)]
pub struct FriendView {
    pub profile: Profile,
    pub friendship: Friendship,
    /// Online now, as the dispatcher sees it (`None`: no dispatcher to ask).
    pub online: Option<bool>,
}

/// A page of users with the token of the next one.
#[derive(Debug, Clone)]
pub struct UserPage {
    pub users: Vec<Profile>,
    pub next: Option<u64>,
    pub total: u64,
}

/// A page of user ids (internal lists), the cursor of the next page and the whole list's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPage {
    pub ids: Vec<u64>,
    pub next: Option<u64>,
    pub total: u64,
}

/// Whether `actor` may start a relation (follow, friend request) with `target`, given how they
/// stand and the target's state. Checked in this order: oneself, the target's state, blocks.
pub fn may_relate(actor: u64, target: &UserRecord, standing: &Standing, now_ms: u64) -> Result<(), UserError> {
    if actor == target.user_id {
        return Err(UserError::SelfRelation);
    }
    match target.state(now_ms) {
        AccountState::Deleted => return Err(UserError::TargetDeleted(target.user_id)),
        AccountState::Suspended => return Err(UserError::TargetSuspended(target.user_id)),
        AccountState::Active => {}
    }
    if standing.blocked_by {
        return Err(UserError::BlockedByTarget(target.user_id));
    }
    if standing.blocking {
        return Err(UserError::TargetBlockedByCaller(target.user_id));
    }
    Ok(())
}

/// The entries of one page and the cursor of the next: a full page may have a successor.
fn page_of(edges: Vec<Edge>, size: usize) -> (Vec<u64>, Option<u64>) {
    let next = (edges.len() == size).then(|| edges.last().map(|e| e.edge_id)).flatten();
    (edges.iter().map(|e| e.user_id).collect(), next)
}

impl UserCore {
    /// How `viewer` stands with `other`.
    pub async fn relation(&self, viewer: u64, other: u64) -> Result<Relation, UserError> {
        let standing = self.store.standing(viewer, other).await?;
        let mine: HashSet<u64> = self.store.following_ids(viewer).await?.into_iter().collect();
        let theirs = self.store.following_ids(other).await?;
        let mutual_following = theirs.iter().filter(|id| mine.contains(id)).count() as u64;
        Ok(Relation { standing, mutual_following })
    }

    /// Takes one event from a user's hourly allowance, or says how long to wait.
    pub(super) async fn take_hourly(allowance: &Allowances, user_id: u64, what: &'static str) -> Result<(), UserError> {
        match allowance.take(&user_id.to_string()).await {
            Ok(_) => Ok(()),
            Err(wait) => Err(UserError::GraphThrottled { what, wait: at_least_a_second(wait) }),
        }
    }

    /// The target of a new relation, if `actor` may start one with them.
    async fn relatable(&self, actor: u64, target: u64) -> Result<(UserRecord, Standing), UserError> {
        if actor == target {
            return Err(UserError::SelfRelation);
        }
        let user = self.load_user(target).await?;
        let standing = self.store.standing(actor, target).await?;
        may_relate(actor, &user, &standing, now_ms())?;
        Ok((user, standing))
    }

    /// `actor` follows `target` (idempotent).
    pub async fn follow(&self, actor: u64, target: u64) -> Result<Relation, UserError> {
        let (_, standing) = self.relatable(actor, target).await?;
        if !standing.following {
            let (_, following) = self.store.follow_counts(actor).await?;
            if following >= self.max_following {
                return Err(UserError::FollowingLimit(self.max_following));
            }
            Self::take_hourly(&self.follows, actor, "follows").await?;
            if self.store.follow(actor, target, self.ids.next_id()).await? {
                tracing::info!(follower = actor, followee = target, "follow");
                self.pass_on_picks(actor, target).await;
            }
        }
        self.relation(actor, target).await
    }

    /// `actor` stops following `target` (idempotent; no allowance taken).
    pub async fn unfollow(&self, actor: u64, target: u64) -> Result<Relation, UserError> {
        if actor == target {
            return Err(UserError::SelfRelation);
        }
        self.load_user(target).await?;
        if self.store.unfollow(actor, target).await? {
            tracing::info!(follower = actor, followee = target, "unfollow");
        }
        self.relation(actor, target).await
    }

    /// A page of a user's followers (`followers`) or followings, newest first, with the total.
    pub async fn list_follows(
        &self,
        viewer: u64,
        page: wire::UserPage,
        followers: bool,
    ) -> Result<UserPage, UserError> {
        let user = self.load_user(page.user_id).await?;
        if user.deleted_at_ms.is_some() {
            return Err(UserError::TargetDeleted(user.user_id));
        }
        let edges = if followers {
            self.store.list_followers(page.user_id, page.before, page.page_size).await?
        } else {
            self.store.list_following(page.user_id, page.before, page.page_size).await?
        };
        let (ids, next) = page_of(edges, page.page_size);
        let hidden = self.hidden_from(viewer).await?;
        let users = self.profiles(ids.into_iter().filter(|id| !hidden.contains(id)), viewer).await?;
        let (total_followers, total_following) = self.store.follow_counts(page.user_id).await?;
        Ok(UserPage { users, next, total: if followers { total_followers } else { total_following } })
    }

    /// Everyone `viewer` has blocked or is blocked by: hidden from each other in lists and search.
    pub(crate) async fn hidden_from(&self, viewer: u64) -> Result<HashSet<u64>, UserError> {
        let sets = self.store.block_sets(viewer).await?;
        Ok(sets.blocking.into_iter().chain(sets.blocked_by).collect())
    }

    /// `actor` blocks `target`: follows both ways, requests and a friendship end in the same write.
    pub async fn block(&self, actor: u64, target: u64) -> Result<Relation, UserError> {
        if actor == target {
            return Err(UserError::SelfRelation);
        }
        self.load_user(target).await?;
        let epoch = self.ids.next_id();
        let created = self.store.block(actor, target, self.ids.next_id(), epoch).await?;
        // why: raised before answering, so this process's next check already sees the block.
        self.raise_block_epochs(actor, target, epoch);
        if created {
            tracing::info!(blocker = actor, blocked = target, "block");
        }
        self.relation(actor, target).await
    }

    /// `actor` lifts a block of `target` (idempotent).
    pub async fn unblock(&self, actor: u64, target: u64) -> Result<Relation, UserError> {
        if actor == target {
            return Err(UserError::SelfRelation);
        }
        self.load_user(target).await?;
        let epoch = self.ids.next_id();
        if self.store.unblock(actor, target, epoch).await? {
            tracing::info!(blocker = actor, blocked = target, "unblock");
        }
        self.raise_block_epochs(actor, target, epoch);
        self.relation(actor, target).await
    }

    fn raise_block_epochs(&self, a: u64, b: u64, epoch: u64) {
        self.block_epochs.raise(a, epoch);
        self.block_epochs.raise(b, epoch);
    }

    /// The users the caller has blocked, newest first.
    pub async fn list_blocked(&self, actor: u64, page: wire::Page) -> Result<UserPage, UserError> {
        let edges = self.store.list_blocked(actor, page.before, page.page_size).await?;
        let (ids, next) = page_of(edges, page.page_size);
        let users = self.profiles(ids, actor).await?;
        Ok(UserPage { users, next, total: 0 })
    }

    /// Whether either user has blocked the other, with both block epochs (internal).
    pub async fn check_block(&self, user_id: u64, other: u64) -> Result<(Standing, u64, u64), UserError> {
        let standing = self.store.standing(user_id, other).await?;
        let (mine, theirs) = (self.store.block_epoch(user_id).await?, self.store.block_epoch(other).await?);
        Ok((standing, mine, theirs))
    }

    /// Everyone a user has blocked, and the user's block epoch (internal).
    pub async fn blocked_ids(&self, user_id: u64) -> Result<(Vec<u64>, u64), UserError> {
        let sets = self.store.block_sets(user_id).await?;
        Ok((sets.blocking, sets.epoch))
    }

    /// A page of a user's followers' ids, newest follow first, with their number (internal:
    /// the feed's fan-out). Deleting an account parks its follows, so a deleted user is neither
    /// listed nor counted; an unknown user has none, as for [`UserCore::blocked_ids`].
    pub async fn follower_ids(&self, page: wire::UserPage) -> Result<IdPage, UserError> {
        let edges = self.store.list_followers(page.user_id, page.before, page.page_size).await?;
        let (ids, next) = page_of(edges, page.page_size);
        let (total, _) = self.store.follow_counts(page.user_id).await?;
        Ok(IdPage { ids, next, total })
    }

    /// Everyone a user follows, newest follow first, each with the follow's own id (internal:
    /// the feed's backfill watermark): at most the following limit, the newest if a lowered
    /// limit left more. Deleted users are not listed; an unknown user follows nobody.
    pub async fn following_edges(&self, user_id: u64) -> Result<Vec<Edge>, UserError> {
        let limit = usize::try_from(self.max_following).unwrap_or(usize::MAX);
        Ok(self.store.list_following(user_id, None, limit).await?)
    }

    /// `actor` asks `target` to be friends; if `target` had asked already, they become friends.
    pub async fn send_friend_request(
        &self,
        actor: u64,
        target: u64,
    ) -> Result<(Relation, Option<FriendView>), UserError> {
        let (_, standing) = self.relatable(actor, target).await?;
        if standing.request_received {
            let friend = self.accept(target, actor).await?;
            return Ok((self.relation(actor, target).await?, Some(friend)));
        }
        if !standing.friends && !standing.request_sent {
            Self::take_hourly(&self.friend_requests, actor, "friend requests").await?;
        }
        let friend = match self.store.send_friend_request(actor, target, self.ids.next_id()).await? {
            RequestOutcome::TheyAsked => Some(self.accept(target, actor).await?),
            RequestOutcome::Sent => {
                tracing::info!(from = actor, to = target, "friend request");
                None
            }
            RequestOutcome::AlreadySent | RequestOutcome::AlreadyFriends => None,
        };
        Ok((self.relation(actor, target).await?, friend))
    }

    /// The caller's pending requests, newest first.
    pub async fn list_friend_requests(
        &self,
        actor: u64,
        page: wire::FriendRequestsPage,
    ) -> Result<(Vec<(Profile, PendingRequest)>, Option<u64>), UserError> {
        let direction = page.direction.map(|d| match d {
            wire::FriendDirection::Incoming => Direction::Incoming,
            wire::FriendDirection::Outgoing => Direction::Outgoing,
        });
        let size = page.page.page_size;
        let pending = self.store.list_friend_requests(actor, direction, page.page.before, size).await?;
        let next = (pending.len() == size).then(|| pending.last().map(|p| p.edge_id)).flatten();
        let mut listed = Vec::with_capacity(pending.len());
        for request in pending {
            if let Some(profile) = self.profiles([request.user_id], actor).await?.pop() {
                listed.push((profile, request));
            }
        }
        Ok((listed, next))
    }

    /// The caller accepts `from`'s request: one atomic write makes them friends and removes it.
    pub async fn accept_friend_request(&self, actor: u64, from: u64) -> Result<FriendView, UserError> {
        // why: a request from someone suspended or deleted since is not accepted
        let (_, standing) = self.relatable(actor, from).await?;
        if !standing.request_received {
            return Err(UserError::FriendRequestNotFound(from));
        }
        self.accept(from, actor).await
    }

    /// Makes `from` and `to` friends over `from`'s pending request, with their direct channel.
    async fn accept(&self, from: u64, to: u64) -> Result<FriendView, UserError> {
        // why: the channel first (get-or-create, idempotent), so the friendship never exists without it.
        let channel = self.direct_channel(to, from).await?;
        let friendship = self
            .store
            .accept_friend_request(from, to, self.ids.next_id(), channel)
            .await?
            .ok_or(UserError::FriendRequestNotFound(from))?;
        tracing::info!(from, to, direct_channel_id = channel, "friend request accepted");
        self.friend_view(to, friendship).await
    }

    /// The pair's direct channel, created if they have none.
    async fn direct_channel(&self, user_id: u64, other: u64) -> Result<u64, UserError> {
        let Some(channels) = &self.channels else { return Err(UserError::PeerMissing("channel")) };
        let request =
            GetOrCreateDirectChannelRequest { user_id: user_id.to_string(), other_user_id: other.to_string() };
        let answer = channels.clone().get_or_create_direct_channel(request).await.map_err(UserError::Peer)?;
        answer.into_inner().channel_id.parse().map_err(|_| UserError::Store("channel service answered a bad id".into()))
    }

    /// The caller declines `from`'s request.
    pub async fn decline_friend_request(&self, actor: u64, from: u64) -> Result<(), UserError> {
        if !self.store.delete_friend_request(from, actor).await? {
            return Err(UserError::FriendRequestNotFound(from));
        }
        Ok(())
    }

    /// The caller withdraws their request to `to`.
    pub async fn cancel_friend_request(&self, actor: u64, to: u64) -> Result<(), UserError> {
        if !self.store.delete_friend_request(actor, to).await? {
            return Err(UserError::FriendRequestNotFound(to));
        }
        Ok(())
    }

    /// The caller ends a friendship; the direct channel stays.
    pub async fn remove_friend(&self, actor: u64, friend: u64) -> Result<(), UserError> {
        if !self.store.remove_friend(actor, friend).await? {
            return Err(UserError::NotFriends(friend));
        }
        tracing::info!(user_id = actor, friend, "unfriend");
        Ok(())
    }

    /// The caller's friends, newest friendship first, with presence and the total.
    pub async fn list_friends(
        &self,
        actor: u64,
        page: wire::Page,
    ) -> Result<(Vec<FriendView>, Option<u64>, u64), UserError> {
        let friendships = self.store.list_friends(actor, page.before, page.page_size).await?;
        let next = (friendships.len() == page.page_size).then(|| friendships.last().map(|f| f.edge_id)).flatten();
        let online = self.online(&friendships.iter().map(|f| f.user_id).collect::<Vec<_>>()).await;
        let mut friends = Vec::with_capacity(friendships.len());
        for (friendship, online) in friendships.into_iter().zip(online) {
            if let Some(profile) = self.profiles([friendship.user_id], actor).await?.pop() {
                friends.push(FriendView { profile, friendship, online });
            }
        }
        Ok((friends, next, self.store.friend_count(actor).await?))
    }

    async fn friend_view(&self, viewer: u64, friendship: Friendship) -> Result<FriendView, UserError> {
        let user = self.load_user(friendship.user_id).await?;
        let profile = self.profile(user, Some(viewer), false).await?;
        let online = self.online(&[friendship.user_id]).await.pop().flatten();
        Ok(FriendView { profile, friendship, online })
    }

    /// Who among `ids` is online, in order; `None` each when the dispatcher cannot say (it is
    /// not reachable, or this process has none): presence is shown best-effort, never fails a list.
    async fn online(&self, ids: &[u64]) -> Vec<Option<bool>> {
        let Some(live) = &self.live else { return vec![None; ids.len()] };
        if ids.is_empty() {
            return Vec::new();
        }
        let request = GetPresencesRequest { user_ids: ids.iter().map(u64::to_string).collect() };
        match live.clone().get_presences(request).await {
            Ok(answer) => {
                let online: HashSet<String> = answer
                    .into_inner()
                    .presences
                    .into_iter()
                    .filter(|p| p.status() == chatmesh_api::dispatcher::v1::PresenceStatus::Online)
                    .map(|p| p.user_id)
                    .collect();
                ids.iter().map(|id| Some(online.contains(&id.to_string()))).collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "friends' presence unavailable");
                vec![None; ids.len()]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        core::tests::core_over,
        model::Suspension,
        store::{FjallUserStore, conformance::user},
    };

    fn standing() -> Standing {
        Standing::default()
    }

    #[test]
    fn nobody_relates_to_themselves() {
        let ada = user(1, "ada@example.com", None);
        assert!(matches!(may_relate(1, &ada, &standing(), 10), Err(UserError::SelfRelation)));
    }

    #[test]
    fn a_deleted_or_suspended_target_is_refused_with_its_own_reason() {
        let mut bob = user(2, "bob@example.com", None);
        bob.deleted_at_ms = Some(5);
        assert!(matches!(may_relate(1, &bob, &standing(), 10), Err(UserError::TargetDeleted(2))));
        bob.deleted_at_ms = None;
        bob.suspension = Some(Suspension { until_ms: Some(20), reason: String::new(), by_user_id: 9, at_ms: 1 });
        assert!(matches!(may_relate(1, &bob, &standing(), 10), Err(UserError::TargetSuspended(2))));
        // a suspension that has run out no longer refuses
        assert!(may_relate(1, &bob, &standing(), 20).is_ok());
    }

    #[test]
    fn a_block_either_way_refuses_a_new_relation() {
        let bob = user(2, "bob@example.com", None);
        let blocked_by = Standing { blocked_by: true, ..standing() };
        assert!(matches!(may_relate(1, &bob, &blocked_by, 10), Err(UserError::BlockedByTarget(2))));
        let blocking = Standing { blocking: true, ..standing() };
        assert!(matches!(may_relate(1, &bob, &blocking, 10), Err(UserError::TargetBlockedByCaller(2))));
        assert!(may_relate(1, &bob, &standing(), 10).is_ok());
    }

    #[test]
    fn a_full_page_points_past_its_last_entry() {
        let edges = vec![Edge { user_id: 5, edge_id: 50 }, Edge { user_id: 4, edge_id: 40 }];
        assert_eq!(page_of(edges.clone(), 2), (vec![5, 4], Some(40)));
        assert_eq!(page_of(edges, 3), (vec![5, 4], None));
    }

    #[tokio::test]
    async fn follower_ids_page_newest_first_without_deleted_followers() {
        let (_dir, store) = FjallUserStore::temp();
        let (_keys, core) = core_over(Arc::new(store));
        for follower in 11..=15 {
            core.store.follow(follower, 1, 100 + follower).await.unwrap();
        }
        let page = |before| wire::UserPage { user_id: 1, page_size: 2, before };
        let first = core.follower_ids(page(None)).await.unwrap();
        assert_eq!(first, IdPage { ids: vec![15, 14], next: Some(114), total: 5 });
        assert_eq!(core.follower_ids(page(Some(114))).await.unwrap().ids, [13, 12]);
        assert_eq!(core.follower_ids(page(Some(112))).await.unwrap(), IdPage { ids: vec![11], next: None, total: 5 });

        core.store.park_edges(13).await.unwrap();
        let all = core.follower_ids(wire::UserPage { user_id: 1, page_size: 1000, before: None }).await.unwrap();
        assert_eq!(all, IdPage { ids: vec![15, 14, 12, 11], next: None, total: 4 }, "a deleted follower is parked");
        let nobody = core.follower_ids(wire::UserPage { user_id: 99, page_size: 10, before: None }).await.unwrap();
        assert_eq!(nobody, IdPage { ids: Vec::new(), next: None, total: 0 }, "an unknown user has no followers");
    }

    #[tokio::test]
    async fn following_edges_carry_the_follow_ids_newest_first_up_to_the_limit() {
        let (_dir, store) = FjallUserStore::temp();
        let (_keys, mut core) = core_over(Arc::new(store));
        for (followee, edge) in [(31, 201), (32, 202), (33, 203)] {
            core.store.follow(20, followee, edge).await.unwrap();
        }
        let edges = core.following_edges(20).await.unwrap();
        let expected = [(33, 203), (32, 202), (31, 201)].map(|(user_id, edge_id)| Edge { user_id, edge_id });
        assert_eq!(edges, expected);
        core.max_following = 2;
        assert_eq!(core.following_edges(20).await.unwrap(), expected[..2], "a lowered limit keeps the newest");
        assert!(core.following_edges(99).await.unwrap().is_empty(), "an unknown user follows nobody");
    }
}
