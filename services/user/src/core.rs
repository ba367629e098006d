//! The user service's rules: sign-up, login with throttling, refresh-token rotation, logout,
//! profiles and lookups, in domain types. The handlers in `service.rs` only translate.

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use aws_lc_rs::{digest, rand::SecureRandom};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chatmesh_api::dispatcher::v1::{
    DisconnectUserRequest, dispatcher_internal_service_client::DispatcherInternalServiceClient,
};
use chatmesh_platform::{
    auth::Authenticator,
    config::{AuthConfig, Config},
    grpc::InternalChannel,
    ids::{IdGenerator, now_ms},
    password::{PasswordError, PasswordHasher, Verified},
};
use chatmesh_wire::user as wire;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};

use crate::{
    error::UserError,
    model::{SessionRecord, UserRecord},
    store::{Rotation, UserStore},
};

/// Tokens issued for a login session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: String,
    /// `<sid>.<secret>`.
    pub refresh_token: String,
    pub expires_in_secs: u64,
    pub session_id: String,
}

/// What a successful login answers.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    pub user: UserRecord,
    pub tokens: Tokens,
}

/// The user service's state and operations.
pub struct UserCore {
    /// Live sessions to close when a login session ends (the dispatcher), if one runs.
    live: Option<DispatcherInternalServiceClient<InternalChannel>>,
    store: Arc<dyn UserStore>,
    hasher: PasswordHasher,
    auth: Arc<Authenticator>,
    ids: Arc<IdGenerator>,
    throttle: LoginThrottle,
}

impl UserCore {
    pub fn new(
        config: &Config,
        store: Arc<dyn UserStore>,
        auth: Arc<Authenticator>,
        ids: Arc<IdGenerator>,
        live: Option<InternalChannel>,
    ) -> Result<Self, PasswordError> {
        Ok(Self {
            live: live.map(DispatcherInternalServiceClient::new),
            store,
            hasher: PasswordHasher::new(&config.password)?,
            auth,
            ids,
            throttle: LoginThrottle::per_minute(config.limits.login_per_minute_per_account),
        })
    }

    /// Re-arms revocations of sessions that ended recently enough for their access tokens to
    /// still be unexpired (after a restart).
    pub async fn rearm_revocations(&self) -> Result<(), UserError> {
        let window = token_window_ms(self.auth.config());
        for sid in self.store.sessions_ended_since(now_ms().saturating_sub(window)).await? {
            self.auth.revocations().revoke(&sid, now_ms() + window);
        }
        Ok(())
    }

    /// Signs a new account up.
    pub async fn create_user(&self, cmd: wire::CreateUser) -> Result<UserRecord, UserError> {
        // why: fail fast before paying for a hash; the store re-checks atomically on insert.
        if self.store.get_user_by_email(&cmd.email.to_lowercase()).await?.is_some() {
            return Err(UserError::EmailTaken);
        }
        let wire::CreateUser { email, password, name, username } = cmd;
        let password_hash = self.hasher.hash(password).await?;
        let user = new_account(self.ids.next_id(), email, name, username, password_hash, now_ms());
        self.store.insert_user(&user).await?;
        tracing::info!(user_id = user.user_id, "user created");
        let own = user.user_id;
        Ok(seen_by(user, Some(own)))
    }

    /// Checks a password and opens a login session.
    pub async fn login(&self, cmd: wire::Login) -> Result<LoggedIn, UserError> {
        let wire::Login { email_key, password, password_can_match } = cmd;
        if !password_can_match {
            return Err(UserError::BadCredentials);
        }
        // why: checked before hashing, so guessing costs the attacker, not our CPU.
        self.throttle.check(&email_key)?;
        let user = self.store.get_user_by_email(&email_key).await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let verified = self.hasher.verify(password, stored).await?;
        let user = match credentials(user, verified)? {
            Credentials::Valid(user) => user,
            Credentials::Rehashed(user) => {
                self.store.update_user(&user).await?;
                user
            }
        };
        let secret = new_refresh_secret()?;
        let sid = uuid::Uuid::new_v4().simple().to_string();
        let ttl_ms = self.auth.config().refresh_ttl_secs * 1000;
        let session = new_session(&sid, user.user_id, sha256_hex(secret.as_bytes()), now_ms(), ttl_ms);
        self.store.insert_session(&session).await?;
        tracing::info!(user_id = user.user_id, session_id = %sid, "login");
        let (tokens, own) = (self.tokens(user.user_id, &sid, &secret), user.user_id);
        Ok(LoggedIn { user: seen_by(user, Some(own)), tokens })
    }

    /// Exchanges a refresh token for new tokens; a reused one ends its session.
    pub async fn refresh(&self, cmd: wire::RefreshToken) -> Result<Tokens, UserError> {
        let (sid, secret) = cmd.session_and_secret.ok_or(UserError::BadRefreshToken)?;
        let new_secret = new_refresh_secret()?;
        let (presented, next) = (sha256_hex(secret.as_bytes()), sha256_hex(new_secret.as_bytes()));
        match judge_rotation(self.store.rotate_session(&sid, &presented, &next, now_ms()).await?) {
            RefreshOutcome::Renew(session) => Ok(self.tokens(session.user_id, &sid, &new_secret)),
            RefreshOutcome::EndAndRefuse(session) => {
                self.revoke(session.user_id, &sid);
                tracing::warn!(user_id = session.user_id, session_id = %sid, "refresh token reused, session ended");
                Err(UserError::RefreshReuse)
            }
            RefreshOutcome::Refuse(error) => Err(error),
        }
    }

    /// Ends the caller's login session.
    pub async fn logout(&self, user_id: u64, sid: &str) -> Result<(), UserError> {
        self.store.end_session(sid, now_ms()).await?;
        self.revoke(user_id, sid);
        tracing::info!(user_id, session_id = %sid, "logout");
        Ok(())
    }

    /// Ends every login session of the caller; returns how many were live.
    pub async fn logout_all(&self, user_id: u64) -> Result<usize, UserError> {
        let ended = self.store.end_user_sessions(user_id, now_ms()).await?;
        for session in &ended {
            self.revoke(user_id, &session.session_id);
        }
        tracing::info!(user_id, sessions = ended.len(), "logout everywhere");
        Ok(ended.len())
    }

    /// An account as `viewer` sees it.
    pub async fn get_user(&self, viewer: u64, user_id: u64) -> Result<UserRecord, UserError> {
        Ok(seen_by(self.load_user(user_id).await?, Some(viewer)))
    }

    /// Changes the caller's profile fields named in `cmd`.
    pub async fn update_me(&self, user_id: u64, cmd: wire::UpdateMe) -> Result<UserRecord, UserError> {
        let mut user = self.load_user(user_id).await?;
        apply_update(&mut user, cmd, now_ms());
        self.store.update_user(&user).await?;
        Ok(seen_by(user, Some(user_id)))
    }

    /// Accounts by id, in order, as another service sees them; `None` for a missing one.
    pub async fn batch_get_users(&self, user_ids: &[u64]) -> Result<Vec<Option<UserRecord>>, UserError> {
        let mut users = Vec::with_capacity(user_ids.len());
        for &id in user_ids {
            users.push(self.store.get_user(id).await?.map(|user| seen_by(user, None)));
        }
        Ok(users)
    }

    /// The accounts holding these (lowercase) usernames, as another service sees them.
    pub async fn resolve_usernames(&self, keys: &[String]) -> Result<Vec<UserRecord>, UserError> {
        let mut users = Vec::new();
        for key in keys {
            if let Some(user) = self.store.get_user_by_username(key).await? {
                users.push(seen_by(user, None));
            }
        }
        Ok(users)
    }

    async fn load_user(&self, user_id: u64) -> Result<UserRecord, UserError> {
        self.store.get_user(user_id).await?.ok_or(UserError::UserNotFound(user_id))
    }

    fn tokens(&self, user_id: u64, sid: &str, secret: &str) -> Tokens {
        let access = self.auth.issue_access(user_id, sid);
        Tokens {
            access_token: access.token,
            refresh_token: format!("{sid}.{secret}"),
            expires_in_secs: access.expires_in_secs,
            session_id: sid.to_owned(),
        }
    }

    /// Ends a login session's tokens at once and closes its live sockets.
    fn revoke(&self, user_id: u64, sid: &str) {
        self.auth.revocations().revoke(sid, now_ms() + token_window_ms(self.auth.config()));
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
}

/// How long an access token may still be accepted after its session ends: its lifetime plus
/// the clock leeway. A revocation must last that long.
pub fn token_window_ms(auth: &AuthConfig) -> u64 {
    (auth.access_ttl_secs + auth.leeway_secs) * 1000
}

/// Login attempts per account (by lowercase email) per minute.
pub struct LoginThrottle {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl LoginThrottle {
    pub fn per_minute(attempts: u32) -> Self {
        let attempts = NonZeroU32::new(attempts).unwrap_or(NonZeroU32::MIN);
        Self { limiter: RateLimiter::keyed(Quota::per_minute(attempts)) }
    }

    /// Admits one attempt on `email_key`, or says how long to wait (at least a second).
    pub fn check(&self, email_key: &str) -> Result<(), UserError> {
        self.limiter.check_key(&email_key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            UserError::LoginThrottled(wait.max(Duration::from_secs(1)))
        })
    }
}

/// An account whose password checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Valid(UserRecord),
    /// Valid, with a stronger hash to store.
    Rehashed(UserRecord),
}

/// Whether a login's account and password verification let it in. An unknown account and a
/// wrong password are refused alike, so the answer does not tell which emails exist.
pub fn credentials(user: Option<UserRecord>, verified: Verified) -> Result<Credentials, UserError> {
    match (user, verified) {
        (Some(user), Verified::Yes) => Ok(Credentials::Valid(user)),
        (Some(mut user), Verified::YesRehashed(hash)) => {
            user.password_hash = hash;
            Ok(Credentials::Rehashed(user))
        }
        _ => Err(UserError::BadCredentials),
    }
}

/// What presenting a refresh token decides.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// It was the current token: issue new tokens for this session.
    Renew(SessionRecord),
    /// It was already used, so the chain leaked: the store ended the session; its access
    /// tokens must end now too, and the caller is refused.
    EndAndRefuse(SessionRecord),
    Refuse(UserError),
}

pub fn judge_rotation(rotation: Rotation) -> RefreshOutcome {
    match rotation {
        Rotation::Rotated(session) => RefreshOutcome::Renew(session),
        Rotation::Reused(session) => RefreshOutcome::EndAndRefuse(session),
        Rotation::Ended => RefreshOutcome::Refuse(UserError::SessionEnded),
        Rotation::Unknown => RefreshOutcome::Refuse(UserError::BadRefreshToken),
    }
}

/// An account as `viewer` sees it: the email only on their own account (`None`: another
/// service asking), the password hash never.
pub fn seen_by(mut user: UserRecord, viewer: Option<u64>) -> UserRecord {
    if viewer != Some(user.user_id) {
        user.email.clear();
    }
    user.password_hash.clear();
    user
}

/// Applies a profile update: only the fields it names change.
pub fn apply_update(user: &mut UserRecord, update: wire::UpdateMe, now_ms: u64) {
    let wire::UpdateMe { name, username, avatar_url, bio } = update;
    if let Some(name) = name {
        user.name = name;
    }
    if let Some(username) = username {
        user.username = username;
    }
    if let Some(avatar_url) = avatar_url {
        user.avatar_url = avatar_url;
    }
    if let Some(bio) = bio {
        user.bio = bio;
    }
    user.updated_at_ms = now_ms;
}

/// A new account, with an empty profile.
pub fn new_account(
    user_id: u64,
    email: String,
    name: String,
    username: Option<String>,
    password_hash: String,
    now_ms: u64,
) -> UserRecord {
    UserRecord {
        user_id,
        email,
        name,
        username,
        avatar_url: String::new(),
        bio: String::new(),
        password_hash,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    }
}

/// A new login session expecting the refresh secret hashed as `refresh_hash`.
pub fn new_session(sid: &str, user_id: u64, refresh_hash: String, now_ms: u64, ttl_ms: u64) -> SessionRecord {
    SessionRecord {
        session_id: sid.to_owned(),
        user_id,
        refresh_hash,
        used_hashes: Vec::new(),
        created_at_ms: now_ms,
        expires_at_ms: now_ms + ttl_ms,
        ended_at_ms: None,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    digest::digest(&digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A refresh token is `<sid>.<secret>`; only the secret's hash is stored.
fn new_refresh_secret() -> Result<String, UserError> {
    let mut secret = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut secret).map_err(|_| UserError::NoRandomness)?;
    Ok(URL_SAFE_NO_PAD.encode(secret))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::{FjallUserStore, conformance::user};

    #[test]
    fn a_login_passes_only_with_an_account_and_a_matching_password() {
        let ada = user(1, "ada@example.com", None);
        assert_eq!(credentials(Some(ada.clone()), Verified::Yes).unwrap(), Credentials::Valid(ada.clone()));
        let Credentials::Rehashed(rehashed) =
            credentials(Some(ada.clone()), Verified::YesRehashed("$new".into())).unwrap()
        else {
            panic!("a weaker hash is replaced");
        };
        assert_eq!(rehashed.password_hash, "$new");
        for (account, verified) in [(Some(ada), Verified::No), (None, Verified::No), (None, Verified::Yes)] {
            assert!(matches!(credentials(account, verified), Err(UserError::BadCredentials)));
        }
    }

    #[test]
    fn logins_are_throttled_per_account_with_a_wait_of_at_least_a_second() {
        let throttle = LoginThrottle::per_minute(2);
        assert!(throttle.check("ada@example.com").is_ok());
        assert!(throttle.check("ada@example.com").is_ok());
        match throttle.check("ada@example.com") {
            Err(UserError::LoginThrottled(wait)) => assert!(wait >= Duration::from_secs(1), "{wait:?}"),
            other => panic!("the third attempt in a minute is throttled, got {other:?}"),
        }
        assert!(throttle.check("bob@example.com").is_ok(), "another account is not affected");
        assert!(LoginThrottle::per_minute(0).check("x").is_ok(), "a zero quota still admits one attempt");
    }

    #[test]
    fn a_presented_refresh_token_renews_ends_or_is_refused() {
        let session = new_session("s1", 7, "h".into(), 0, 1);
        assert!(
            matches!(judge_rotation(Rotation::Rotated(session.clone())), RefreshOutcome::Renew(s) if s.user_id == 7)
        );
        assert!(matches!(judge_rotation(Rotation::Reused(session)), RefreshOutcome::EndAndRefuse(s) if s.user_id == 7));
        assert!(matches!(judge_rotation(Rotation::Ended), RefreshOutcome::Refuse(UserError::SessionEnded)));
        assert!(matches!(judge_rotation(Rotation::Unknown), RefreshOutcome::Refuse(UserError::BadRefreshToken)));
    }

    #[test]
    fn the_email_is_seen_only_by_its_owner_and_the_hash_by_nobody() {
        let ada = user(1, "ada@example.com", Some("ada"));
        let own = seen_by(ada.clone(), Some(1));
        assert_eq!(own.email, "ada@example.com");
        assert!(own.password_hash.is_empty());
        assert!(seen_by(ada.clone(), Some(2)).email.is_empty(), "another user");
        assert!(seen_by(ada, None).email.is_empty(), "another service");
    }

    #[test]
    fn a_profile_update_changes_only_the_named_fields() {
        let mut ada = user(1, "ada@example.com", Some("ada"));
        ada.bio = "hello".into();
        let update = wire::UpdateMe { name: Some("Ada L.".into()), username: Some(None), avatar_url: None, bio: None };
        apply_update(&mut ada, update, 99);
        assert_eq!((ada.name.as_str(), ada.username.as_deref(), ada.bio.as_str()), ("Ada L.", None, "hello"));
        assert_eq!((ada.created_at_ms, ada.updated_at_ms), (1, 99));
    }

    #[test]
    fn a_revocation_outlives_every_access_token_of_the_session() {
        let auth = AuthConfig { access_ttl_secs: 900, leeway_secs: 30, ..AuthConfig::default() };
        assert_eq!(token_window_ms(&auth), 930_000);
        let session = new_session("s", 1, "h".into(), 1_000, 5_000);
        assert_eq!((session.expires_at_ms, session.ended_at_ms), (6_000, None));
    }

    /// A core over `store`, with cheap password hashing and keys in a temporary folder.
    pub(crate) fn core_over(store: Arc<dyn UserStore>) -> (tempfile::TempDir, UserCore) {
        let mut config = Config::default();
        config.password.memory_kib = 64;
        config.password.iterations = 1;
        config.password.parallelism = 1;
        let keys = tempfile::tempdir().unwrap();
        let auth = Arc::new(Authenticator::from_data_dir(config.auth.clone(), keys.path()).unwrap());
        let ids = Arc::new(IdGenerator::new(1).unwrap());
        (keys, UserCore::new(&config, store, auth, ids, None).unwrap())
    }

    /// A core over a fresh embedded store.
    fn core() -> (tempfile::TempDir, tempfile::TempDir, UserCore) {
        let (dir, store) = FjallUserStore::temp();
        let (keys, core) = core_over(Arc::new(store));
        (dir, keys, core)
    }

    fn sign_up(email: &str) -> wire::CreateUser {
        wire::CreateUser { email: email.into(), password: "correct horse".into(), name: "Ada".into(), username: None }
    }

    fn login(email: &str, password: &str) -> wire::Login {
        wire::Login { email_key: email.to_lowercase(), password: password.into(), password_can_match: true }
    }

    fn refresh(token: &str) -> wire::RefreshToken {
        let (sid, secret) = token.split_once('.').unwrap();
        wire::RefreshToken { session_and_secret: Some((sid.to_owned(), secret.to_owned())) }
    }

    #[tokio::test]
    async fn a_reused_refresh_token_ends_its_session() {
        let (_dir, _keys, core) = core();
        core.create_user(sign_up("ada@example.com")).await.unwrap();
        assert!(matches!(core.create_user(sign_up("ADA@example.com")).await, Err(UserError::EmailTaken)));
        assert!(matches!(core.login(login("ada@example.com", "wrong")).await, Err(UserError::BadCredentials)));
        let first = core.login(login("ada@example.com", "correct horse")).await.unwrap();
        assert_eq!(first.user.email, "ada@example.com");
        assert!(first.user.password_hash.is_empty());
        let second = core.refresh(refresh(&first.tokens.refresh_token)).await.unwrap();
        assert_eq!(second.session_id, first.tokens.session_id);
        assert!(matches!(core.refresh(refresh(&first.tokens.refresh_token)).await, Err(UserError::RefreshReuse)));
        assert!(core.auth.revocations().is_revoked(&first.tokens.session_id));
        assert!(matches!(core.refresh(refresh(&second.refresh_token)).await, Err(UserError::SessionEnded)));
        let malformed = wire::RefreshToken { session_and_secret: None };
        assert!(matches!(core.refresh(malformed).await, Err(UserError::BadRefreshToken)));
    }

    #[tokio::test]
    async fn other_users_and_services_do_not_see_the_email() {
        let (_dir, _keys, core) = core();
        let ada = core.create_user(sign_up("ada@example.com")).await.unwrap();
        let update = wire::UpdateMe { name: None, username: Some(Some("Ada".into())), avatar_url: None, bio: None };
        core.update_me(ada.user_id, update).await.unwrap();
        assert_eq!(core.get_user(ada.user_id, ada.user_id).await.unwrap().email, "ada@example.com");
        assert!(core.get_user(ada.user_id + 1, ada.user_id).await.unwrap().email.is_empty());
        let found = core.batch_get_users(&[ada.user_id, 424_242]).await.unwrap();
        assert!(found[0].as_ref().is_some_and(|u| u.email.is_empty()) && found[1].is_none());
        let resolved = core.resolve_usernames(&["ada".into(), "nobody".into()]).await.unwrap();
        assert_eq!(resolved.len(), 1);
        assert!(resolved[0].email.is_empty());
        assert!(matches!(core.get_user(1, 424_242).await, Err(UserError::UserNotFound(424_242))));
    }

    #[tokio::test]
    async fn logout_everywhere_ends_every_live_session() {
        let (_dir, _keys, core) = core();
        let ada = core.create_user(sign_up("ada@example.com")).await.unwrap();
        let one = core.login(login("ada@example.com", "correct horse")).await.unwrap();
        core.login(login("ada@example.com", "correct horse")).await.unwrap();
        core.logout(ada.user_id, &one.tokens.session_id).await.unwrap();
        assert!(core.auth.revocations().is_revoked(&one.tokens.session_id));
        assert_eq!(core.logout_all(ada.user_id).await.unwrap(), 1, "the other one was still live");
        assert!(matches!(core.refresh(refresh(&one.tokens.refresh_token)).await, Err(UserError::SessionEnded)));
    }
}
