//! The tonic handlers of UserService and UserInternalService: wire → core → protobuf.

use std::sync::Arc;

use chatmesh_api::dispatcher::v1::PresenceStatus;
use chatmesh_api::user::v1::{
    self as pb, user_internal_service_server::UserInternalService, user_service_server::UserService,
};
use chatmesh_platform::{
    auth::{Authenticator, user_of},
    client_addr::client_source,
    config::Config,
    ids::{IdGenerator, now_ms},
    membership::EpochBoard,
    page::encode_token,
    redis_pool::Redis,
};
use chatmesh_wire::user as wire;
use tonic::{Request, Response, Status};

pub use crate::core::Peers;
use crate::{
    core::{AccountView, FriendView, Profile, Relation, Tokens, UserCore},
    model::{AccountState, Direction, ReportAction, ReportCategory, ReportRecord, Role, UserRecord},
    store::UserStore,
};

/// UserService: the public surface.
#[derive(Clone)]
pub struct UserApi {
    core: Arc<UserCore>,
}

/// UserInternalService: what other services ask (service principals only).
#[derive(Clone)]
pub struct UserInternalApi {
    core: Arc<UserCore>,
}

impl UserApi {
    /// Builds both surfaces over one store, and re-arms revocations of sessions that ended
    /// recently enough for their access tokens to still be unexpired. `limits`: the Redis every
    /// user-service process keeps login and sign-up limits in (none: this process's own).
    /// `block_epochs`: raised whenever a block changes, for the block checks of every service.
    pub async fn new(
        config: &Config,
        store: Arc<dyn UserStore>,
        auth: Arc<Authenticator>,
        ids: Arc<IdGenerator>,
        peers: Peers,
        limits: Option<&Redis>,
        block_epochs: Arc<EpochBoard>,
    ) -> Result<(Self, UserInternalApi), Box<dyn std::error::Error + Send + Sync>> {
        let core = UserCore::new(config, store, auth, ids, peers, limits, block_epochs)?;
        core.rearm_revocations().await?;
        Ok(Self::over(core))
    }

    /// Indexes accounts older than user search once, then erases accounts whose deletion grace
    /// period has passed, every `sweep_interval_secs`, until `stop` resolves.
    pub async fn run_sweeper(&self, stop: impl std::future::Future<Output = ()>) {
        let core = self.core.clone();
        let sweeping = async move {
            if let Err(e) = core.backfill_directory().await {
                tracing::warn!(error = %e, "indexing older accounts for user search failed; retried at the next start");
            }
            let mut every = tokio::time::interval(core.sweep_interval());
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                match core.sweep_deleted().await {
                    Ok(0) => {}
                    Ok(erased) => tracing::info!(erased, "deleted accounts erased"),
                    Err(e) => tracing::warn!(error = %e, "account sweep failed, retrying next round"),
                }
            }
        };
        tokio::select! {
            () = sweeping => {}
            () = stop => {}
        }
    }

    /// One sweep now (tests and the admin command).
    pub async fn sweep_now(&self) -> Result<usize, Status> {
        Ok(self.core.sweep_deleted().await?)
    }

    /// Both surfaces over one core.
    pub(crate) fn over(core: UserCore) -> (Self, UserInternalApi) {
        let core = Arc::new(core);
        (Self { core: core.clone() }, UserInternalApi { core })
    }
}

fn timestamp(ms: u64) -> Option<prost_types::Timestamp> {
    Some(chatmesh_platform::ids::timestamp(ms))
}

/// The wire form of an account as the core let the caller see it, with its counters.
fn user_pb(profile: Profile) -> pb::User {
    let Profile { user, followers, following, state, show_role } = profile;
    let role = if show_role { role_pb(user.role) } else { pb::UserRole::Unspecified };
    pb::User {
        total_followers: followers as i64,
        total_following: following as i64,
        state: state_pb(state) as i32,
        role: role as i32,
        ..to_pb(user)
    }
}

fn role_pb(role: Role) -> pb::UserRole {
    match role {
        Role::User => pb::UserRole::User,
        Role::Admin => pb::UserRole::Admin,
    }
}

fn state_pb(state: AccountState) -> pb::UserState {
    match state {
        AccountState::Active => pb::UserState::Active,
        AccountState::Suspended => pb::UserState::Suspended,
        AccountState::Deleted => pb::UserState::Deleted,
    }
}

fn relation_pb(relation: Relation) -> pb::Relation {
    let s = relation.standing;
    pb::Relation {
        following: s.following,
        followed_by: s.followed_by,
        blocked: s.blocking,
        blocked_by: s.blocked_by,
        friend: s.friends,
        friend_request_sent: s.request_sent,
        friend_request_received: s.request_received,
        mutual_following_count: relation.mutual_following as i64,
    }
}

fn friend_pb(friend: FriendView) -> pb::Friend {
    let presence = match friend.online {
        Some(true) => PresenceStatus::Online,
        Some(false) => PresenceStatus::Offline,
        None => PresenceStatus::Unspecified,
    };
    pb::Friend {
        user: Some(user_pb(friend.profile)),
        since: timestamp(chatmesh_platform::ids::unix_ms_of(friend.friendship.edge_id)),
        direct_channel_id: friend.friendship.direct_channel_id.to_string(),
        presence: presence as i32,
    }
}

fn report_pb(report: ReportRecord) -> pb::Report {
    let category = match report.category {
        ReportCategory::Spam => pb::ReportCategory::Spam,
        ReportCategory::Harassment => pb::ReportCategory::Harassment,
        ReportCategory::Hate => pb::ReportCategory::Hate,
        ReportCategory::Violence => pb::ReportCategory::Violence,
        ReportCategory::Sexual => pb::ReportCategory::Sexual,
        ReportCategory::Impersonation => pb::ReportCategory::Impersonation,
        ReportCategory::Other => pb::ReportCategory::Other,
    };
    let (chat_id, channel_id) = report
        .target
        .chat
        .map_or((String::new(), String::new()), |(chat, channel)| (chat.to_string(), channel.to_string()));
    let resolution = report.resolution.as_ref();
    let action = resolution.map_or(pb::ReportAction::Unspecified, |r| match r.action {
        ReportAction::Dismiss => pb::ReportAction::Dismiss,
        ReportAction::RetractChat => pb::ReportAction::RetractChat,
        ReportAction::SuspendUser => pb::ReportAction::SuspendUser,
        ReportAction::DeleteStatus => pb::ReportAction::DeleteStatus,
    });
    let status = if resolution.is_some() { pb::ReportStatus::Resolved } else { pb::ReportStatus::Open };
    pb::Report {
        report_id: report.report_id.to_string(),
        reporter_id: report.reporter_id.to_string(),
        target_user_id: report.target.user_id.to_string(),
        target_chat_id: chat_id,
        target_channel_id: channel_id,
        category: category as i32,
        text: report.text,
        status: status as i32,
        action: action as i32,
        resolved_by: resolution.map(|r| r.by_user_id.to_string()).unwrap_or_default(),
        created_at: timestamp(report.created_at_ms),
        updated_at: timestamp(report.updated_at_ms),
        resolved_at: resolution.and_then(|r| timestamp(r.at_ms)),
        target_status_id: report.target.status.map(|id| id.to_string()).unwrap_or_default(),
    }
}

fn account_pb(view: AccountView) -> pb::Account {
    let suspension = view.suspension.filter(|_| view.profile.state == AccountState::Suspended);
    pb::Account {
        suspended_until: suspension.as_ref().and_then(|s| s.until_ms).and_then(timestamp),
        suspension_reason: suspension.map(|s| s.reason).unwrap_or_default(),
        deleted_at: view.deleted_at_ms.and_then(timestamp),
        purge_at: view.purge_at_ms.and_then(timestamp),
        user: Some(user_pb(view.profile)),
    }
}

fn next_token(next: Option<u64>) -> String {
    next.map(encode_token).unwrap_or_default()
}

fn users_pb(users: Vec<Profile>) -> Vec<pb::User> {
    users.into_iter().map(user_pb).collect()
}

/// The wire form of an account record as the core let the caller see it (an empty email: not
/// theirs), without counters.
fn to_pb(user: UserRecord) -> pb::User {
    let state = state_pb(user.state(now_ms()));
    pb::User {
        state: state as i32,
        total_followers: 0,
        total_following: 0,
        role: pb::UserRole::Unspecified as i32,
        user_id: user.user_id.to_string(),
        name: user.name,
        // why: accounts made before usernames were stored in lower case show them so too
        username: user.username.map(|name| wire::username_key(&name)).unwrap_or_default(),
        email: user.email,
        avatar_url: user.avatar_url,
        bio: user.bio,
        created_at: timestamp(user.created_at_ms),
        updated_at: timestamp(user.updated_at_ms),
    }
}

fn token_pair(tokens: Tokens) -> pb::TokenPair {
    pb::TokenPair {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        expires_in: tokens.expires_in_secs as i64,
        token_type: "Bearer".into(),
        session_id: tokens.session_id,
    }
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let cmd = wire::create_user(request.get_ref())?;
        let source = client_source(&request, self.core.auth(), self.core.trusted_proxies());
        let user = self.core.create_user(cmd, source).await?;
        // why: the record just written is at hand; only its (zero) counters are read
        let own = Some(user.user_id);
        let profile = self.core.profile(user, own, true).await?;
        Ok(Response::new(pb::CreateUserResponse { user: Some(user_pb(profile)) }))
    }

    async fn login(&self, request: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        let cmd = wire::login(request.get_ref())?;
        let source = client_source(&request, self.core.auth(), self.core.trusted_proxies());
        let logged_in = self.core.login(cmd, source).await?;
        let own = Some(logged_in.user.user_id);
        let profile = self.core.profile(logged_in.user, own, true).await?;
        Ok(Response::new(pb::LoginResponse {
            tokens: Some(token_pair(logged_in.tokens)),
            user: Some(user_pb(profile)),
        }))
    }

    async fn refresh_token(
        &self,
        request: Request<pb::RefreshTokenRequest>,
    ) -> Result<Response<pb::RefreshTokenResponse>, Status> {
        let cmd = wire::refresh_token(request.get_ref())?;
        let tokens = self.core.refresh(cmd).await?;
        Ok(Response::new(pb::RefreshTokenResponse { tokens: Some(token_pair(tokens)) }))
    }

    async fn logout(&self, request: Request<pb::LogoutRequest>) -> Result<Response<pb::LogoutResponse>, Status> {
        let (user_id, sid) = user_of(&request)?;
        wire::logout(request.get_ref())?;
        self.core.logout(user_id, &sid).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn logout_all(
        &self,
        request: Request<pb::LogoutAllRequest>,
    ) -> Result<Response<pb::LogoutAllResponse>, Status> {
        let (user_id, _) = user_of(&request)?;
        wire::logout_all(request.get_ref())?;
        let ended = self.core.logout_all(user_id).await?;
        Ok(Response::new(pb::LogoutAllResponse { ended_sessions: ended as i32 }))
    }

    async fn get_me(&self, request: Request<pb::GetMeRequest>) -> Result<Response<pb::GetMeResponse>, Status> {
        let (user_id, _) = user_of(&request)?;
        wire::get_me(request.get_ref())?;
        let profile = self.core.get_me(user_id).await?;
        Ok(Response::new(pb::GetMeResponse { user: Some(user_pb(profile)) }))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Result<Response<pb::GetUserResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let wire::GetUser { user_id } = wire::get_user(request.get_ref())?;
        let (profile, relation) = self.core.get_user(caller, user_id).await?;
        Ok(Response::new(pb::GetUserResponse { user: Some(user_pb(profile)), relation: relation.map(relation_pb) }))
    }

    async fn update_me(&self, request: Request<pb::UpdateMeRequest>) -> Result<Response<pb::UpdateMeResponse>, Status> {
        let (user_id, _) = user_of(&request)?;
        // why: checked before the account is read, so a refused request touches no store.
        let cmd = wire::update_me(request.get_ref())?;
        let profile = self.core.update_me(user_id, cmd).await?;
        Ok(Response::new(pb::UpdateMeResponse { user: Some(user_pb(profile)) }))
    }

    async fn follow_user(
        &self,
        request: Request<pb::FollowUserRequest>,
    ) -> Result<Response<pb::FollowUserResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let target = wire::follow_user(request.get_ref())?;
        let relation = self.core.follow(caller, target.user_id).await?;
        Ok(Response::new(pb::FollowUserResponse { relation: Some(relation_pb(relation)) }))
    }

    async fn unfollow_user(
        &self,
        request: Request<pb::UnfollowUserRequest>,
    ) -> Result<Response<pb::UnfollowUserResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let target = wire::unfollow_user(request.get_ref())?;
        let relation = self.core.unfollow(caller, target.user_id).await?;
        Ok(Response::new(pb::UnfollowUserResponse { relation: Some(relation_pb(relation)) }))
    }

    async fn list_followers(
        &self,
        request: Request<pb::ListFollowersRequest>,
    ) -> Result<Response<pb::ListFollowersResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let page = wire::list_followers(request.get_ref())?;
        let page = self.core.list_follows(caller, page, true).await?;
        Ok(Response::new(pb::ListFollowersResponse {
            users: users_pb(page.users),
            next_page_token: next_token(page.next),
            total_size: page.total as i64,
        }))
    }

    async fn list_following(
        &self,
        request: Request<pb::ListFollowingRequest>,
    ) -> Result<Response<pb::ListFollowingResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let page = wire::list_following(request.get_ref())?;
        let page = self.core.list_follows(caller, page, false).await?;
        Ok(Response::new(pb::ListFollowingResponse {
            users: users_pb(page.users),
            next_page_token: next_token(page.next),
            total_size: page.total as i64,
        }))
    }

    async fn block_user(
        &self,
        request: Request<pb::BlockUserRequest>,
    ) -> Result<Response<pb::BlockUserResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let target = wire::block_user(request.get_ref())?;
        let relation = self.core.block(caller, target.user_id).await?;
        Ok(Response::new(pb::BlockUserResponse { relation: Some(relation_pb(relation)) }))
    }

    async fn unblock_user(
        &self,
        request: Request<pb::UnblockUserRequest>,
    ) -> Result<Response<pb::UnblockUserResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let target = wire::unblock_user(request.get_ref())?;
        let relation = self.core.unblock(caller, target.user_id).await?;
        Ok(Response::new(pb::UnblockUserResponse { relation: Some(relation_pb(relation)) }))
    }

    async fn list_blocked_users(
        &self,
        request: Request<pb::ListBlockedUsersRequest>,
    ) -> Result<Response<pb::ListBlockedUsersResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let page = wire::list_blocked_users(request.get_ref())?;
        let page = self.core.list_blocked(caller, page).await?;
        Ok(Response::new(pb::ListBlockedUsersResponse {
            users: users_pb(page.users),
            next_page_token: next_token(page.next),
        }))
    }

    async fn list_recommendations(
        &self,
        request: Request<pb::ListRecommendationsRequest>,
    ) -> Result<Response<pb::ListRecommendationsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let page = wire::list_recommendations(request.get_ref())?;
        let page = self.core.list_recommendations(caller, page).await?;
        Ok(Response::new(pb::ListRecommendationsResponse {
            users: users_pb(page.users),
            next_page_token: next_token(page.next),
            total_size: page.total as i64,
        }))
    }

    async fn send_friend_request(
        &self,
        request: Request<pb::SendFriendRequestRequest>,
    ) -> Result<Response<pb::SendFriendRequestResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let target = wire::send_friend_request(request.get_ref())?;
        let (relation, friend) = self.core.send_friend_request(caller, target.user_id).await?;
        Ok(Response::new(pb::SendFriendRequestResponse {
            relation: Some(relation_pb(relation)),
            friend: friend.map(friend_pb),
        }))
    }

    async fn list_friend_requests(
        &self,
        request: Request<pb::ListFriendRequestsRequest>,
    ) -> Result<Response<pb::ListFriendRequestsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let page = wire::list_friend_requests(request.get_ref())?;
        let (pending, next) = self.core.list_friend_requests(caller, page).await?;
        let requests = pending
            .into_iter()
            .map(|(profile, request)| pb::FriendRequest {
                user: Some(user_pb(profile)),
                direction: match request.direction {
                    Direction::Incoming => pb::FriendRequestDirection::Incoming,
                    Direction::Outgoing => pb::FriendRequestDirection::Outgoing,
                } as i32,
                created_at: timestamp(chatmesh_platform::ids::unix_ms_of(request.edge_id)),
            })
            .collect();
        Ok(Response::new(pb::ListFriendRequestsResponse { requests, next_page_token: next_token(next) }))
    }

    async fn accept_friend_request(
        &self,
        request: Request<pb::AcceptFriendRequestRequest>,
    ) -> Result<Response<pb::AcceptFriendRequestResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let from = wire::accept_friend_request(request.get_ref())?;
        let friend = self.core.accept_friend_request(caller, from.user_id).await?;
        Ok(Response::new(pb::AcceptFriendRequestResponse { friend: Some(friend_pb(friend)) }))
    }

    async fn decline_friend_request(
        &self,
        request: Request<pb::DeclineFriendRequestRequest>,
    ) -> Result<Response<pb::DeclineFriendRequestResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let from = wire::decline_friend_request(request.get_ref())?;
        self.core.decline_friend_request(caller, from.user_id).await?;
        Ok(Response::new(pb::DeclineFriendRequestResponse {}))
    }

    async fn cancel_friend_request(
        &self,
        request: Request<pb::CancelFriendRequestRequest>,
    ) -> Result<Response<pb::CancelFriendRequestResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let to = wire::cancel_friend_request(request.get_ref())?;
        self.core.cancel_friend_request(caller, to.user_id).await?;
        Ok(Response::new(pb::CancelFriendRequestResponse {}))
    }

    async fn remove_friend(
        &self,
        request: Request<pb::RemoveFriendRequest>,
    ) -> Result<Response<pb::RemoveFriendResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let friend = wire::remove_friend(request.get_ref())?;
        self.core.remove_friend(caller, friend.user_id).await?;
        Ok(Response::new(pb::RemoveFriendResponse {}))
    }

    async fn list_friends(
        &self,
        request: Request<pb::ListFriendsRequest>,
    ) -> Result<Response<pb::ListFriendsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let page = wire::list_friends(request.get_ref())?;
        let (friends, next, total) = self.core.list_friends(caller, page).await?;
        Ok(Response::new(pb::ListFriendsResponse {
            friends: friends.into_iter().map(friend_pb).collect(),
            next_page_token: next_token(next),
            total_size: total as i64,
        }))
    }

    async fn search_users(
        &self,
        request: Request<pb::SearchUsersRequest>,
    ) -> Result<Response<pb::SearchUsersResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::search_users(request.get_ref())?;
        let (users, next) = self.core.search_users(caller, cmd).await?;
        Ok(Response::new(pb::SearchUsersResponse { users: users_pb(users), next_page_token: next_token(next) }))
    }

    async fn create_report(
        &self,
        request: Request<pb::CreateReportRequest>,
    ) -> Result<Response<pb::CreateReportResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::create_report(request.get_ref())?;
        let report = self.core.create_report(caller, cmd).await?;
        Ok(Response::new(pb::CreateReportResponse { report: Some(report_pb(report)) }))
    }

    async fn change_email(
        &self,
        request: Request<pb::ChangeEmailRequest>,
    ) -> Result<Response<pb::ChangeEmailResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::change_email(request.get_ref())?;
        let profile = self.core.change_email(caller, cmd).await?;
        Ok(Response::new(pb::ChangeEmailResponse { user: Some(user_pb(profile)) }))
    }

    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::change_password(request.get_ref())?;
        let source = client_source(&request, self.core.auth(), self.core.trusted_proxies());
        let (ended, logged_in) = self.core.change_password(caller, cmd, source).await?;
        Ok(Response::new(pb::ChangePasswordResponse {
            ended_sessions: ended as i32,
            tokens: Some(token_pair(logged_in.tokens)),
        }))
    }

    async fn delete_me(&self, request: Request<pb::DeleteMeRequest>) -> Result<Response<pb::DeleteMeResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::delete_me(request.get_ref())?;
        let purge_at = self.core.delete_me(caller, cmd).await?;
        Ok(Response::new(pb::DeleteMeResponse { purge_at: timestamp(purge_at) }))
    }

    async fn list_reports(
        &self,
        request: Request<pb::ListReportsRequest>,
    ) -> Result<Response<pb::ListReportsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::list_reports(request.get_ref())?;
        let (reports, next) = self.core.list_reports(caller, cmd).await?;
        Ok(Response::new(pb::ListReportsResponse {
            reports: reports.into_iter().map(report_pb).collect(),
            next_page_token: next_token(next),
        }))
    }

    async fn resolve_report(
        &self,
        request: Request<pb::ResolveReportRequest>,
    ) -> Result<Response<pb::ResolveReportResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::resolve_report(request.get_ref())?;
        let report = self.core.resolve_report(caller, cmd).await?;
        Ok(Response::new(pb::ResolveReportResponse { report: Some(report_pb(report)) }))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::list_accounts(request.get_ref())?;
        let (accounts, next) = self.core.list_accounts(caller, cmd).await?;
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: accounts.into_iter().map(account_pb).collect(),
            next_page_token: next_token(next),
        }))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let target = wire::get_account(request.get_ref())?;
        let account = self.core.get_account(caller, target.user_id).await?;
        Ok(Response::new(pb::GetAccountResponse { account: Some(account_pb(account)) }))
    }

    async fn suspend_account(
        &self,
        request: Request<pb::SuspendAccountRequest>,
    ) -> Result<Response<pb::SuspendAccountResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::suspend_account(request.get_ref())?;
        let account = self.core.suspend_account(caller, cmd).await?;
        Ok(Response::new(pb::SuspendAccountResponse { account: Some(account_pb(account)) }))
    }

    async fn unsuspend_account(
        &self,
        request: Request<pb::UnsuspendAccountRequest>,
    ) -> Result<Response<pb::UnsuspendAccountResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let target = wire::unsuspend_account(request.get_ref())?;
        let account = self.core.unsuspend_account(caller, target.user_id).await?;
        Ok(Response::new(pb::UnsuspendAccountResponse { account: Some(account_pb(account)) }))
    }

    async fn delete_account(
        &self,
        request: Request<pb::DeleteAccountRequest>,
    ) -> Result<Response<pb::DeleteAccountResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let target = wire::delete_account(request.get_ref())?;
        let account = self.core.delete_account(caller, target.user_id).await?;
        Ok(Response::new(pb::DeleteAccountResponse { account: Some(account_pb(account)) }))
    }
}

#[tonic::async_trait]
impl UserInternalService for UserInternalApi {
    async fn batch_get_users(
        &self,
        request: Request<pb::BatchGetUsersRequest>,
    ) -> Result<Response<pb::BatchGetUsersResponse>, Status> {
        let cmd = wire::batch_get_users(request.get_ref())?;
        let found = self.core.batch_get_users(&cmd.user_ids).await?;
        let mut response = pb::BatchGetUsersResponse::default();
        // why: missing ids are answered as the caller wrote them, so the raw strings ride along.
        for (raw, user) in request.into_inner().user_ids.into_iter().zip(found) {
            match user {
                Some(user) => response.users.push(to_pb(user)),
                None => response.missing_user_ids.push(raw),
            }
        }
        Ok(Response::new(response))
    }

    async fn resolve_usernames(
        &self,
        request: Request<pb::ResolveUsernamesRequest>,
    ) -> Result<Response<pb::ResolveUsernamesResponse>, Status> {
        let cmd = wire::resolve_usernames(request.get_ref())?;
        let users = self.core.resolve_usernames(&cmd.keys).await?;
        Ok(Response::new(pb::ResolveUsernamesResponse { users: users.into_iter().map(to_pb).collect() }))
    }

    async fn check_block(
        &self,
        request: Request<pb::CheckBlockRequest>,
    ) -> Result<Response<pb::CheckBlockResponse>, Status> {
        let cmd = wire::check_block(request.get_ref())?;
        let (standing, user_epoch, other_epoch) = self.core.check_block(cmd.user_id, cmd.other_user_id).await?;
        Ok(Response::new(pb::CheckBlockResponse {
            blocking: standing.blocking,
            blocked_by: standing.blocked_by,
            user_epoch: user_epoch as i64,
            other_user_epoch: other_epoch as i64,
        }))
    }

    async fn list_blocked_user_ids(
        &self,
        request: Request<pb::ListBlockedUserIdsRequest>,
    ) -> Result<Response<pb::ListBlockedUserIdsResponse>, Status> {
        let target = wire::list_blocked_user_ids(request.get_ref())?;
        let (ids, epoch) = self.core.blocked_ids(target.user_id).await?;
        Ok(Response::new(pb::ListBlockedUserIdsResponse {
            user_ids: ids.iter().map(u64::to_string).collect(),
            epoch: epoch as i64,
        }))
    }

    async fn set_role(&self, request: Request<pb::SetRoleRequest>) -> Result<Response<pb::SetRoleResponse>, Status> {
        let cmd = wire::set_role(request.get_ref())?;
        let role = if cmd.admin { Role::Admin } else { Role::User };
        let profile = self.core.set_role(&cmd.email_key, role).await?;
        Ok(Response::new(pb::SetRoleResponse { user: Some(user_pb(profile)) }))
    }

    async fn list_follower_ids(
        &self,
        request: Request<pb::ListFollowerIdsRequest>,
    ) -> Result<Response<pb::ListFollowerIdsResponse>, Status> {
        let page = wire::list_follower_ids(request.get_ref())?;
        let page = self.core.follower_ids(page).await?;
        Ok(Response::new(pb::ListFollowerIdsResponse {
            user_ids: page.ids.iter().map(u64::to_string).collect(),
            next_page_token: next_token(page.next),
            total_size: page.total as i64,
        }))
    }

    async fn list_following_ids(
        &self,
        request: Request<pb::ListFollowingIdsRequest>,
    ) -> Result<Response<pb::ListFollowingIdsResponse>, Status> {
        let target = wire::list_following_ids(request.get_ref())?;
        let edges = self.core.following_edges(target.user_id).await?;
        let followees = edges
            .into_iter()
            .map(|edge| pb::Followee { user_id: edge.user_id.to_string(), follow_id: edge.edge_id.to_string() })
            .collect();
        Ok(Response::new(pb::ListFollowingIdsResponse { followees }))
    }

    async fn record_interactions(
        &self,
        request: Request<pb::RecordInteractionsRequest>,
    ) -> Result<Response<pb::RecordInteractionsResponse>, Status> {
        let valid = wire::record_interactions(request.get_ref())?;
        self.core.record_interactions(valid.user_id, &valid.other_user_ids).await?;
        Ok(Response::new(pb::RecordInteractionsResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use chatmesh_platform::auth::Caller;
    use tonic::Code;

    use super::*;
    use crate::{
        model::{Edge, Friendship, PendingRequest, ReportRecord, RequestOutcome, SessionRecord, Standing},
        store::{
            Accounts, BlockSets, Blocks, Directory, Follows, Friends, Recommendations, Reports, Rotation, StoreError,
        },
    };

    /// What the failing store's backend says; it must never reach a client.
    const BACKEND_TEXT: &str = "scylla 10.9.8.7:9042: connection refused by node dc1-rack2";

    /// A store whose every call fails as a backend would.
    struct FailingStore;

    fn failed<T>() -> Result<T, StoreError> {
        Err(StoreError::Backend(BACKEND_TEXT.into()))
    }

    #[async_trait]
    impl Accounts for FailingStore {
        async fn insert_user(&self, _: &UserRecord) -> Result<(), StoreError> {
            failed()
        }
        async fn get_user(&self, _: u64) -> Result<Option<UserRecord>, StoreError> {
            failed()
        }
        async fn get_user_by_email(&self, _: &str) -> Result<Option<UserRecord>, StoreError> {
            failed()
        }
        async fn get_user_by_username(&self, _: &str) -> Result<Option<UserRecord>, StoreError> {
            failed()
        }
        async fn update_user(&self, _: &UserRecord) -> Result<(), StoreError> {
            failed()
        }
        async fn list_users(&self, _: Option<u64>, _: usize) -> Result<Vec<UserRecord>, StoreError> {
            failed()
        }
        async fn users_deleted_before(&self, _: u64, _: usize) -> Result<Vec<UserRecord>, StoreError> {
            failed()
        }
        async fn erase_user(&self, _: u64) -> Result<(), StoreError> {
            failed()
        }
        async fn insert_session(&self, _: &SessionRecord) -> Result<(), StoreError> {
            failed()
        }
        async fn get_session(&self, _: &str) -> Result<Option<SessionRecord>, StoreError> {
            failed()
        }
        async fn rotate_session(&self, _: &str, _: &str, _: &str, _: u64) -> Result<Rotation, StoreError> {
            failed()
        }
        async fn end_session(&self, _: &str, _: u64) -> Result<Option<SessionRecord>, StoreError> {
            failed()
        }
        async fn end_user_sessions(&self, _: u64, _: u64) -> Result<Vec<SessionRecord>, StoreError> {
            failed()
        }
        async fn sessions_ended_since(&self, _: u64) -> Result<Vec<String>, StoreError> {
            failed()
        }
    }

    #[async_trait]
    impl Follows for FailingStore {
        async fn follow(&self, _: u64, _: u64, _: u64) -> Result<bool, StoreError> {
            failed()
        }
        async fn unfollow(&self, _: u64, _: u64) -> Result<bool, StoreError> {
            failed()
        }
        async fn list_followers(&self, _: u64, _: Option<u64>, _: usize) -> Result<Vec<Edge>, StoreError> {
            failed()
        }
        async fn list_following(&self, _: u64, _: Option<u64>, _: usize) -> Result<Vec<Edge>, StoreError> {
            failed()
        }
        async fn follow_counts(&self, _: u64) -> Result<(u64, u64), StoreError> {
            failed()
        }
        async fn following_ids(&self, _: u64) -> Result<Vec<u64>, StoreError> {
            failed()
        }
        async fn park_edges(&self, _: u64) -> Result<(), StoreError> {
            failed()
        }
        async fn restore_edges(&self, _: u64) -> Result<(), StoreError> {
            failed()
        }
        async fn erase_edges(&self, _: u64) -> Result<(), StoreError> {
            failed()
        }
    }

    #[async_trait]
    impl Blocks for FailingStore {
        async fn block(&self, _: u64, _: u64, _: u64, _: u64) -> Result<bool, StoreError> {
            failed()
        }
        async fn unblock(&self, _: u64, _: u64, _: u64) -> Result<bool, StoreError> {
            failed()
        }
        async fn list_blocked(&self, _: u64, _: Option<u64>, _: usize) -> Result<Vec<Edge>, StoreError> {
            failed()
        }
        async fn block_sets(&self, _: u64) -> Result<BlockSets, StoreError> {
            failed()
        }
        async fn standing(&self, _: u64, _: u64) -> Result<Standing, StoreError> {
            failed()
        }
        async fn block_epoch(&self, _: u64) -> Result<u64, StoreError> {
            failed()
        }
        async fn erase_blocks(&self, _: u64) -> Result<(), StoreError> {
            failed()
        }
    }

    #[async_trait]
    impl Friends for FailingStore {
        async fn send_friend_request(&self, _: u64, _: u64, _: u64) -> Result<RequestOutcome, StoreError> {
            failed()
        }
        async fn delete_friend_request(&self, _: u64, _: u64) -> Result<bool, StoreError> {
            failed()
        }
        async fn list_friend_requests(
            &self,
            _: u64,
            _: Option<crate::model::Direction>,
            _: Option<u64>,
            _: usize,
        ) -> Result<Vec<PendingRequest>, StoreError> {
            failed()
        }
        async fn accept_friend_request(
            &self,
            _: u64,
            _: u64,
            _: u64,
            _: u64,
        ) -> Result<Option<Friendship>, StoreError> {
            failed()
        }
        async fn remove_friend(&self, _: u64, _: u64) -> Result<bool, StoreError> {
            failed()
        }
        async fn get_friendship(&self, _: u64, _: u64) -> Result<Option<Friendship>, StoreError> {
            failed()
        }
        async fn list_friends(&self, _: u64, _: Option<u64>, _: usize) -> Result<Vec<Friendship>, StoreError> {
            failed()
        }
        async fn friend_count(&self, _: u64) -> Result<u64, StoreError> {
            failed()
        }
        async fn park_friends(&self, _: u64) -> Result<(), StoreError> {
            failed()
        }
        async fn restore_friends(&self, _: u64) -> Result<(), StoreError> {
            failed()
        }
        async fn erase_friends(&self, _: u64) -> Result<(), StoreError> {
            failed()
        }
    }

    #[async_trait]
    impl Reports for FailingStore {
        async fn upsert_report(&self, _: &ReportRecord) -> Result<ReportRecord, StoreError> {
            failed()
        }
        async fn get_report(&self, _: u64) -> Result<Option<ReportRecord>, StoreError> {
            failed()
        }
        async fn list_reports(
            &self,
            _: bool,
            _: Option<u64>,
            _: Option<u64>,
            _: usize,
        ) -> Result<Vec<ReportRecord>, StoreError> {
            failed()
        }
        async fn resolve_report(&self, _: &ReportRecord) -> Result<bool, StoreError> {
            failed()
        }
    }

    #[async_trait]
    impl Directory for FailingStore {
        async fn directory_complete(&self) -> Result<bool, StoreError> {
            failed()
        }
        async fn mark_directory_complete(&self) -> Result<(), StoreError> {
            failed()
        }
        async fn index_terms(&self, _: u64, _: &[String]) -> Result<(), StoreError> {
            failed()
        }
        async fn search_terms(
            &self,
            _: &str,
            _: Option<(String, u64)>,
            _: usize,
        ) -> Result<Vec<(String, u64)>, StoreError> {
            failed()
        }
    }

    #[async_trait]
    impl Recommendations for FailingStore {
        async fn bump_recommendations(&self, _: u64, _: &[(u64, u64)], _: usize) -> Result<(), StoreError> {
            failed()
        }
        async fn drop_recommendations(&self, _: u64, _: &[u64]) -> Result<(), StoreError> {
            failed()
        }
        async fn list_recommendations(&self, _: u64, _: usize) -> Result<Vec<(u64, u64)>, StoreError> {
            failed()
        }
        async fn erase_recommendations(&self, _: u64) -> Result<(), StoreError> {
            failed()
        }
    }

    fn apis() -> (tempfile::TempDir, UserApi, UserInternalApi) {
        let (keys, core) = crate::core::tests::core_over(Arc::new(FailingStore));
        let (api, internal) = UserApi::over(core);
        (keys, api, internal)
    }

    fn as_user<T>(message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.extensions_mut().insert(Caller::User { user_id: 7, session_id: "s7".into() });
        request
    }

    fn assert_no_backend_text(status: Status) {
        assert_eq!(status.code(), Code::Internal, "{status:?}");
        assert!(!status.message().contains(BACKEND_TEXT), "{}", status.message());
        assert!(!status.message().contains("10.9.8.7"), "{}", status.message());
        assert!(status.message().contains("request"), "the answer names the request: {}", status.message());
    }

    #[tokio::test]
    async fn a_store_failure_answers_internal_with_the_request_id_and_no_backend_text() {
        let (_keys, api, internal) = apis();
        let sign_up = pb::CreateUserRequest {
            email: "ada@example.com".into(),
            password: "correct horse battery".into(),
            name: "Ada".into(),
            username: String::new(),
        };
        assert_no_backend_text(api.create_user(Request::new(sign_up)).await.unwrap_err());
        let login = pb::LoginRequest {
            email: "ada@example.com".into(),
            password: "correct horse battery".into(),
            restore: false,
        };
        assert_no_backend_text(api.login(Request::new(login)).await.unwrap_err());
        let refresh = pb::RefreshTokenRequest { refresh_token: "sid.secret".into() };
        assert_no_backend_text(api.refresh_token(Request::new(refresh)).await.unwrap_err());
        assert_no_backend_text(api.get_me(as_user(pb::GetMeRequest {})).await.unwrap_err());
        assert_no_backend_text(api.logout(as_user(pb::LogoutRequest {})).await.unwrap_err());
        let batch = pb::BatchGetUsersRequest { user_ids: vec!["7".into()] };
        assert_no_backend_text(internal.batch_get_users(Request::new(batch)).await.unwrap_err());
        let followers = pb::ListFollowerIdsRequest { user_id: "7".into(), ..Default::default() };
        assert_no_backend_text(internal.list_follower_ids(Request::new(followers)).await.unwrap_err());
        let following = pb::ListFollowingIdsRequest { user_id: "7".into() };
        assert_no_backend_text(internal.list_following_ids(Request::new(following)).await.unwrap_err());
        // the same answer inside a request carries that request's id
        let status =
            chatmesh_platform::request_id::scope(Some("req-42".into()), api.get_me(as_user(pb::GetMeRequest {})))
                .await
                .unwrap_err();
        assert_eq!(status.message(), "internal error (request req-42)");
    }
}
