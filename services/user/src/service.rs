//! The tonic handlers of UserService and UserInternalService: validation, rules, mapping.

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use aws_lc_rs::{digest, rand::SecureRandom};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chatmesh_api::dispatcher::v1::{
    DisconnectUserRequest, dispatcher_internal_service_client::DispatcherInternalServiceClient,
};
use chatmesh_api::user::v1::{
    self as pb, user_internal_service_server::UserInternalService, user_service_server::UserService,
};
use chatmesh_platform::{
    auth::{Authenticator, user_of},
    config::Config,
    grpc::InternalChannel,
    ids::{IdGenerator, now_ms},
    password::{PasswordHasher, Verified},
};
use chatmesh_wire::user as wire;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use tonic::{Request, Response, Status};

use crate::{
    error::UserError,
    model::{SessionRecord, UserRecord},
    store::{Rotation, StoreError, UserStore},
};

/// Shared state of the user service's handlers.
struct Core {
    /// Live sessions to close when a login session ends (the dispatcher), if one runs.
    live: Option<DispatcherInternalServiceClient<InternalChannel>>,
    store: Arc<dyn UserStore>,
    hasher: PasswordHasher,
    auth: Arc<Authenticator>,
    ids: Arc<IdGenerator>,
    login_limiter: DefaultKeyedRateLimiter<String>,
}

/// UserService: the public surface.
#[derive(Clone)]
pub struct UserApi {
    core: Arc<Core>,
}

/// UserInternalService: what other services ask (service principals only).
#[derive(Clone)]
pub struct UserInternalApi {
    core: Arc<Core>,
}

impl UserApi {
    /// Builds both surfaces over one store, and re-arms revocations of sessions that ended
    /// recently enough for their access tokens to still be unexpired.
    pub async fn new(
        config: &Config,
        store: Arc<dyn UserStore>,
        auth: Arc<Authenticator>,
        ids: Arc<IdGenerator>,
        live: Option<InternalChannel>,
    ) -> Result<(Self, UserInternalApi), Box<dyn std::error::Error + Send + Sync>> {
        let hasher = PasswordHasher::new(&config.password)?;
        let per_minute = NonZeroU32::new(config.limits.login_per_minute_per_account).unwrap_or(NonZeroU32::MIN);
        let token_window_ms = (config.auth.access_ttl_secs + config.auth.leeway_secs) * 1000;
        for sid in store.sessions_ended_since(now_ms().saturating_sub(token_window_ms)).await? {
            auth.revocations().revoke(&sid, now_ms() + token_window_ms);
        }
        let core = Arc::new(Core {
            live: live.map(DispatcherInternalServiceClient::new),
            store,
            hasher,
            auth,
            ids,
            login_limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
        });
        Ok((Self { core: core.clone() }, UserInternalApi { core }))
    }
}

fn store_error(e: StoreError) -> Status {
    match e {
        StoreError::EmailTaken => UserError::EmailTaken.into(),
        StoreError::UsernameTaken(name) => UserError::UsernameTaken(name).into(),
        StoreError::Backend(e) => UserError::Store(e).into(),
    }
}

fn timestamp(ms: u64) -> Option<prost_types::Timestamp> {
    Some(chatmesh_platform::ids::timestamp(ms))
}

/// The wire form of an account; the email only when `own` (the caller's own account).
fn to_pb(user: &UserRecord, own: bool) -> pb::User {
    pb::User {
        user_id: user.user_id.to_string(),
        name: user.name.clone(),
        username: user.username.clone().unwrap_or_default(),
        email: if own { user.email.clone() } else { String::new() },
        avatar_url: user.avatar_url.clone(),
        bio: user.bio.clone(),
        created_at: timestamp(user.created_at_ms),
        updated_at: timestamp(user.updated_at_ms),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    digest::digest(&digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A refresh token is `<sid>.<secret>`; only the secret's hash is stored.
fn new_refresh_secret() -> Result<String, Status> {
    let mut secret = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| chatmesh_platform::error::internal("refresh token", "no randomness"))?;
    Ok(URL_SAFE_NO_PAD.encode(secret))
}

impl Core {
    fn token_pair(&self, user_id: u64, sid: &str, secret: &str) -> pb::TokenPair {
        let access = self.auth.issue_access(user_id, sid);
        pb::TokenPair {
            access_token: access.token,
            refresh_token: format!("{sid}.{secret}"),
            expires_in: access.expires_in_secs as i64,
            token_type: "Bearer".into(),
            session_id: sid.to_owned(),
        }
    }

    /// Ends a login session's tokens at once and closes its live sockets.
    fn revoke(&self, user_id: u64, sid: &str) {
        let config = self.auth.config();
        self.auth.revocations().revoke(sid, now_ms() + (config.access_ttl_secs + config.leeway_secs) * 1000);
        if let Some(live) = &self.live {
            let mut live = live.clone();
            let request = DisconnectUserRequest { user_id: user_id.to_string(), login_session_id: sid.to_owned() };
            // why: the tokens are already refused; closing sockets is best-effort and must not fail a logout.
            tokio::spawn(async move {
                if let Err(e) = live.disconnect_user(request).await {
                    tracing::warn!(error = %e, "closing live sessions after logout failed");
                }
            });
        }
    }

    async fn load_user(&self, user_id: u64) -> Result<UserRecord, Status> {
        self.store.get_user(user_id).await.map_err(store_error)?.ok_or_else(|| UserError::UserNotFound(user_id).into())
    }
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let wire::CreateUser { email, password, name, username } = wire::create_user(request.get_ref())?;
        let core = &self.core;
        // why: fail fast before paying for a hash; the store re-checks atomically on insert.
        if core.store.get_user_by_email(&email.to_lowercase()).await.map_err(store_error)?.is_some() {
            return Err(UserError::EmailTaken.into());
        }
        let password_hash = core.hasher.hash(password).await.map_err(|e| UserError::Store(e.to_string()))?;
        let now = now_ms();
        let user = UserRecord {
            user_id: core.ids.next_id(),
            email,
            name,
            username,
            avatar_url: String::new(),
            bio: String::new(),
            password_hash,
            created_at_ms: now,
            updated_at_ms: now,
        };
        core.store.insert_user(&user).await.map_err(store_error)?;
        tracing::info!(user_id = user.user_id, "user created");
        Ok(Response::new(pb::CreateUserResponse { user: Some(to_pb(&user, true)) }))
    }

    async fn login(&self, request: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        let wire::Login { email_key, password, password_can_match } = wire::login(request.get_ref())?;
        if !password_can_match {
            return Err(UserError::BadCredentials.into());
        }
        let core = &self.core;
        // why: checked before hashing, so guessing costs the attacker, not our CPU.
        if let Err(not_until) = core.login_limiter.check_key(&email_key) {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            return Err(UserError::LoginThrottled(wait.max(Duration::from_secs(1))).into());
        }
        let user = core.store.get_user_by_email(&email_key).await.map_err(store_error)?;
        let verified = core
            .hasher
            .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
            .await
            .map_err(|e| UserError::Store(e.to_string()))?;
        let mut user = match (user, verified) {
            (Some(user), Verified::Yes) => user,
            (Some(mut user), Verified::YesRehashed(hash)) => {
                user.password_hash = hash;
                core.store.update_user(&user).await.map_err(store_error)?;
                user
            }
            _ => return Err(UserError::BadCredentials.into()),
        };
        user.password_hash.clear();
        let sid = uuid::Uuid::new_v4().simple().to_string();
        let secret = new_refresh_secret()?;
        let now = now_ms();
        let session = SessionRecord {
            session_id: sid.clone(),
            user_id: user.user_id,
            refresh_hash: sha256_hex(secret.as_bytes()),
            used_hashes: Vec::new(),
            created_at_ms: now,
            expires_at_ms: now + core.auth.config().refresh_ttl_secs * 1000,
            ended_at_ms: None,
        };
        core.store.insert_session(&session).await.map_err(store_error)?;
        tracing::info!(user_id = user.user_id, session_id = %sid, "login");
        Ok(Response::new(pb::LoginResponse {
            tokens: Some(core.token_pair(user.user_id, &sid, &secret)),
            user: Some(to_pb(&user, true)),
        }))
    }

    async fn refresh_token(
        &self,
        request: Request<pb::RefreshTokenRequest>,
    ) -> Result<Response<pb::RefreshTokenResponse>, Status> {
        let valid = wire::refresh_token(request.get_ref())?;
        let (sid, secret) = valid.session_and_secret.ok_or(UserError::BadRefreshToken)?;
        let sid = sid.as_str();
        let core = &self.core;
        let new_secret = new_refresh_secret()?;
        let rotation = core
            .store
            .rotate_session(sid, &sha256_hex(secret.as_bytes()), &sha256_hex(new_secret.as_bytes()), now_ms())
            .await
            .map_err(store_error)?;
        match rotation {
            Rotation::Rotated(session) => Ok(Response::new(pb::RefreshTokenResponse {
                tokens: Some(core.token_pair(session.user_id, sid, &new_secret)),
            })),
            Rotation::Reused(session) => {
                core.revoke(session.user_id, sid);
                tracing::warn!(user_id = session.user_id, session_id = %sid, "refresh token reused, session ended");
                Err(UserError::RefreshReuse.into())
            }
            Rotation::Ended => Err(UserError::SessionEnded.into()),
            Rotation::Unknown => Err(UserError::BadRefreshToken.into()),
        }
    }

    async fn logout(&self, request: Request<pb::LogoutRequest>) -> Result<Response<pb::LogoutResponse>, Status> {
        let (user_id, sid) = user_of(&request)?;
        wire::logout(request.get_ref())?;
        self.core.store.end_session(&sid, now_ms()).await.map_err(store_error)?;
        self.core.revoke(user_id, &sid);
        tracing::info!(user_id, session_id = %sid, "logout");
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn logout_all(
        &self,
        request: Request<pb::LogoutAllRequest>,
    ) -> Result<Response<pb::LogoutAllResponse>, Status> {
        let (user_id, _) = user_of(&request)?;
        wire::logout_all(request.get_ref())?;
        let ended = self.core.store.end_user_sessions(user_id, now_ms()).await.map_err(store_error)?;
        for session in &ended {
            self.core.revoke(user_id, &session.session_id);
        }
        tracing::info!(user_id, sessions = ended.len(), "logout everywhere");
        Ok(Response::new(pb::LogoutAllResponse { ended_sessions: ended.len() as i32 }))
    }

    async fn get_me(&self, request: Request<pb::GetMeRequest>) -> Result<Response<pb::GetMeResponse>, Status> {
        let (user_id, _) = user_of(&request)?;
        wire::get_me(request.get_ref())?;
        let user = self.core.load_user(user_id).await?;
        Ok(Response::new(pb::GetMeResponse { user: Some(to_pb(&user, true)) }))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Result<Response<pb::GetUserResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let wire::GetUser { user_id } = wire::get_user(request.get_ref())?;
        let user = self.core.load_user(user_id).await?;
        Ok(Response::new(pb::GetUserResponse { user: Some(to_pb(&user, user_id == caller)) }))
    }

    async fn update_me(&self, request: Request<pb::UpdateMeRequest>) -> Result<Response<pb::UpdateMeResponse>, Status> {
        let (user_id, _) = user_of(&request)?;
        // why: checked before the account is read, so a refused request touches no store.
        let valid = wire::update_me(request.get_ref())?;
        let mut user = self.core.load_user(user_id).await?;
        if let Some(name) = valid.name {
            user.name = name;
        }
        if let Some(username) = valid.username {
            user.username = username;
        }
        if let Some(avatar_url) = valid.avatar_url {
            user.avatar_url = avatar_url;
        }
        if let Some(bio) = valid.bio {
            user.bio = bio;
        }
        user.updated_at_ms = now_ms();
        self.core.store.update_user(&user).await.map_err(store_error)?;
        Ok(Response::new(pb::UpdateMeResponse { user: Some(to_pb(&user, true)) }))
    }
}

#[tonic::async_trait]
impl UserInternalService for UserInternalApi {
    async fn batch_get_users(
        &self,
        request: Request<pb::BatchGetUsersRequest>,
    ) -> Result<Response<pb::BatchGetUsersResponse>, Status> {
        let valid = wire::batch_get_users(request.get_ref())?;
        let mut response = pb::BatchGetUsersResponse::default();
        // why: missing ids are answered as the caller wrote them, so the raw strings ride along.
        for (raw, id) in request.into_inner().user_ids.into_iter().zip(valid.user_ids) {
            match self.core.store.get_user(id).await.map_err(store_error)? {
                Some(user) => response.users.push(to_pb(&user, false)),
                None => response.missing_user_ids.push(raw),
            }
        }
        Ok(Response::new(response))
    }

    async fn resolve_usernames(
        &self,
        request: Request<pb::ResolveUsernamesRequest>,
    ) -> Result<Response<pb::ResolveUsernamesResponse>, Status> {
        let valid = wire::resolve_usernames(request.get_ref())?;
        let mut users = Vec::new();
        for key in valid.keys {
            if let Some(user) = self.core.store.get_user_by_username(&key).await.map_err(store_error)? {
                users.push(to_pb(&user, false));
            }
        }
        Ok(Response::new(pb::ResolveUsernamesResponse { users }))
    }
}
