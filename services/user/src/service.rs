//! The tonic handlers of UserService and UserInternalService: wire → core → protobuf.

use std::sync::Arc;

use chatmesh_api::user::v1::{
    self as pb, user_internal_service_server::UserInternalService, user_service_server::UserService,
};
use chatmesh_platform::{
    auth::{Authenticator, user_of},
    client_addr::client_source,
    config::Config,
    grpc::InternalChannel,
    ids::IdGenerator,
    redis_pool::Redis,
};
use chatmesh_wire::user as wire;
use tonic::{Request, Response, Status};

use crate::{
    core::{Tokens, UserCore},
    model::UserRecord,
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
    pub async fn new(
        config: &Config,
        store: Arc<dyn UserStore>,
        auth: Arc<Authenticator>,
        ids: Arc<IdGenerator>,
        live: Option<InternalChannel>,
        limits: Option<&Redis>,
    ) -> Result<(Self, UserInternalApi), Box<dyn std::error::Error + Send + Sync>> {
        let core = UserCore::new(config, store, auth, ids, live, limits)?;
        core.rearm_revocations().await?;
        Ok(Self::over(core))
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

/// The wire form of an account as the core let the caller see it (an empty email: not theirs).
fn to_pb(user: UserRecord) -> pb::User {
    pb::User {
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
        Ok(Response::new(pb::CreateUserResponse { user: Some(to_pb(user)) }))
    }

    async fn login(&self, request: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        let cmd = wire::login(request.get_ref())?;
        let source = client_source(&request, self.core.auth(), self.core.trusted_proxies());
        let logged_in = self.core.login(cmd, source).await?;
        Ok(Response::new(pb::LoginResponse {
            tokens: Some(token_pair(logged_in.tokens)),
            user: Some(to_pb(logged_in.user)),
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
        let user = self.core.get_user(user_id, user_id).await?;
        Ok(Response::new(pb::GetMeResponse { user: Some(to_pb(user)) }))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Result<Response<pb::GetUserResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let wire::GetUser { user_id } = wire::get_user(request.get_ref())?;
        let user = self.core.get_user(caller, user_id).await?;
        Ok(Response::new(pb::GetUserResponse { user: Some(to_pb(user)) }))
    }

    async fn update_me(&self, request: Request<pb::UpdateMeRequest>) -> Result<Response<pb::UpdateMeResponse>, Status> {
        let (user_id, _) = user_of(&request)?;
        // why: checked before the account is read, so a refused request touches no store.
        let cmd = wire::update_me(request.get_ref())?;
        let user = self.core.update_me(user_id, cmd).await?;
        Ok(Response::new(pb::UpdateMeResponse { user: Some(to_pb(user)) }))
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
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use chatmesh_platform::auth::Caller;
    use tonic::Code;

    use super::*;
    use crate::{
        model::SessionRecord,
        store::{Rotation, StoreError},
    };

    /// What the failing store's backend says; it must never reach a client.
    const BACKEND_TEXT: &str = "scylla 10.9.8.7:9042: connection refused by node dc1-rack2";

    /// A store whose every call fails as a backend would.
    struct FailingStore;

    fn failed<T>() -> Result<T, StoreError> {
        Err(StoreError::Backend(BACKEND_TEXT.into()))
    }

    #[async_trait]
    impl UserStore for FailingStore {
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
        let login = pb::LoginRequest { email: "ada@example.com".into(), password: "correct horse battery".into() };
        assert_no_backend_text(api.login(Request::new(login)).await.unwrap_err());
        let refresh = pb::RefreshTokenRequest { refresh_token: "sid.secret".into() };
        assert_no_backend_text(api.refresh_token(Request::new(refresh)).await.unwrap_err());
        assert_no_backend_text(api.get_me(as_user(pb::GetMeRequest {})).await.unwrap_err());
        assert_no_backend_text(api.logout(as_user(pb::LogoutRequest {})).await.unwrap_err());
        let batch = pb::BatchGetUsersRequest { user_ids: vec!["7".into()] };
        assert_no_backend_text(internal.batch_get_users(Request::new(batch)).await.unwrap_err());
        // the same answer inside a request carries that request's id
        let status =
            chatmesh_platform::request_id::scope(Some("req-42".into()), api.get_me(as_user(pb::GetMeRequest {})))
                .await
                .unwrap_err();
        assert_eq!(status.message(), "internal error (request req-42)");
    }
}
