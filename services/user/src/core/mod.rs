//! The user service's rules: sign-up and login with throttling, refresh-token rotation, logout,
//! profiles and lookups, in domain types; the social graph in [`graph`], user search in
//! [`search`], the account lifecycle in [`account`], reports and admin actions in
//! [`moderation`]. The handlers in `service.rs` only translate.

mod account;
mod graph;
mod moderation;
mod recommendations;
mod search;

use std::{net::IpAddr, sync::Arc, time::Duration};

use aws_lc_rs::{digest, rand::SecureRandom};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chatmesh_api::{
    channel::v1::channel_internal_service_client::ChannelInternalServiceClient,
    chat::v1::chat_internal_service_client::ChatInternalServiceClient,
    dispatcher::v1::{DisconnectUserRequest, dispatcher_internal_service_client::DispatcherInternalServiceClient},
    feed::v1::feed_internal_service_client::FeedInternalServiceClient,
};
use chatmesh_platform::{
    auth::Authenticator,
    client_addr::TrustedProxies,
    config::{AccountsConfig, AuthConfig, Config, LimitsConfig},
    grpc::InternalChannel,
    ids::{IdGenerator, now_ms},
    membership::EpochBoard,
    password::{PasswordError, PasswordHasher, Verified},
    redis_pool::Redis,
    shared_limits::{Allowances, Rate, Taken},
};
use chatmesh_wire::user as wire;

use crate::{
    error::UserError,
    model::{AccountState, SessionRecord, UserRecord},
    store::{Rotation, UserStore},
};

pub use self::{
    graph::{FriendView, Relation},
    moderation::AccountView,
    search::search_terms_of,
};

/// The other parts of the mesh the user service calls, where this process can reach them.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    /// The dispatcher: closes sockets of ended sessions, answers friends' presence.
    pub dispatcher: Option<InternalChannel>,
    /// The channel service: direct channels for new friends, membership for chat reports.
    pub channels: Option<InternalChannel>,
    /// The chat service: reported chats, retracting them.
    pub chats: Option<InternalChannel>,
    /// The feed service: reported statuses, deleting them.
    pub feed: Option<InternalChannel>,
}

/// An account as a caller sees it: the record (trimmed to what they may see), its counters and
/// its state.
#[derive(Debug, Clone)]
pub struct Profile {
    pub user: UserRecord,
    pub followers: u64,
    pub following: u64,
    pub state: AccountState,
    /// Whether the role is shown (the caller's own account, or an admin looking).
    pub show_role: bool,
}

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
    channels: Option<ChannelInternalServiceClient<InternalChannel>>,
    chats: Option<ChatInternalServiceClient<InternalChannel>>,
    feed: Option<FeedInternalServiceClient<InternalChannel>>,
    store: Arc<dyn UserStore>,
    hasher: PasswordHasher,
    auth: Arc<Authenticator>,
    ids: Arc<IdGenerator>,
    throttle: LoginThrottle,
    /// Sign-ups per client address.
    signups: Allowances,
    /// Whose word on a call's client address is taken.
    trusted_proxies: TrustedProxies,
    /// Raised for both users whenever a block between them changes (relayed to other processes).
    block_epochs: Arc<EpochBoard>,
    /// Per-user hourly allowances against spam.
    follows: Allowances,
    friend_requests: Allowances,
    reports: Allowances,
    /// Checks of a current password (change email or password, delete) per account.
    password_checks: Allowances,
    max_following: u64,
    accounts: AccountsConfig,
}

impl UserCore {
    /// `limits`: the Redis that every user-service process keeps its login and sign-up limits
    /// in (none: this process keeps its own).
    pub fn new(
        config: &Config,
        store: Arc<dyn UserStore>,
        auth: Arc<Authenticator>,
        ids: Arc<IdGenerator>,
        peers: Peers,
        limits: Option<&Redis>,
        block_epochs: Arc<EpochBoard>,
    ) -> Result<Self, PasswordError> {
        let timeout = Duration::from_millis(config.redis.timeout_ms);
        let limits = limits.map(|redis| (redis, timeout));
        let hour = Duration::from_secs(3600);
        let signups = Rate::per(config.limits.signups_per_hour_per_source, hour);
        let per_hour = |name, n| allowances(name, Rate::per(n, hour), limits);
        Ok(Self {
            live: peers.dispatcher.map(DispatcherInternalServiceClient::new),
            channels: peers.channels.map(ChannelInternalServiceClient::new),
            chats: peers.chats.map(ChatInternalServiceClient::new),
            feed: peers.feed.map(FeedInternalServiceClient::new),
            block_epochs,
            follows: per_hour("follows-user", config.limits.follows_per_hour_per_user),
            friend_requests: per_hour("friend-requests-user", config.limits.friend_requests_per_hour_per_user),
            reports: per_hour("reports-user", config.limits.reports_per_hour_per_user),
            password_checks: allowances(
                "password-check-user",
                Rate::per(config.limits.login_per_minute_per_account, Duration::from_secs(60)),
                limits,
            ),
            max_following: u64::from(config.limits.max_following_per_user),
            accounts: config.accounts.clone(),
            store,
            hasher: PasswordHasher::new(&config.password)?,
            auth,
            ids,
            throttle: LoginThrottle::new(&config.limits, limits),
            signups: allowances("signup-source", signups, limits),
            trusted_proxies: config.limits.trusted_proxies.clone(),
        })
    }

    pub(crate) fn auth(&self) -> &Authenticator {
        &self.auth
    }

    pub(crate) fn trusted_proxies(&self) -> &TrustedProxies {
        &self.trusted_proxies
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

    /// Signs a new account up for a client at `source` (`None`: unknown, an in-process call).
    ///
    /// A taken email is refused (ALREADY_EXISTS) only after the same argon2 hash a new account
    /// costs, so the answer's timing does not tell taken emails from free ones; the answer
    /// itself does, and the sign-up limit per address bounds how many a client can try.
    pub async fn create_user(&self, cmd: wire::CreateUser, source: Option<IpAddr>) -> Result<UserRecord, UserError> {
        // why: checked before hashing, so a burst of sign-ups costs the client, not our CPU.
        let _counted = self
            .signups
            .take(&source_key(source))
            .await
            .map_err(|wait| UserError::SignUpThrottled(at_least_a_second(wait)))?;
        let taken = self.store.get_user_by_email(&cmd.email.to_lowercase()).await?.is_some();
        let wire::CreateUser { email, password, name, username } = cmd;
        let password_hash = self.hasher.hash(password).await?;
        // why: the store re-checks atomically on insert.
        if taken {
            return Err(UserError::EmailTaken);
        }
        let user = new_account(self.ids.next_id(), email, name, username, password_hash, now_ms());
        self.store.insert_user(&user).await?;
        self.reindex(&user).await?;
        tracing::info!(user_id = user.user_id, "user created");
        let own = user.user_id;
        Ok(seen_by(user, Some(own)))
    }

    /// Checks a password from a client at `source` (`None`: unknown, an in-process call) and
    /// opens a login session.
    pub async fn login(&self, cmd: wire::Login, source: Option<IpAddr>) -> Result<LoggedIn, UserError> {
        let wire::Login { email_key, password, password_can_match, restore } = cmd;
        if !password_can_match {
            return Err(UserError::BadCredentials);
        }
        // why: checked before hashing, so guessing costs the attacker, not our CPU.
        let attempt = self.throttle.begin(&email_key, source).await?;
        if attempt.slowed {
            tokio::time::sleep(LOGIN_DELAY).await;
        }
        let checked = self.check_password(&email_key, password).await;
        self.throttle.settle(attempt, matches!(checked, Err(UserError::BadCredentials))).await;
        let user = self.admit(checked?, restore).await?;
        self.open_session(user).await
    }

    /// Opens a login session for an account whose password checked out.
    pub(crate) async fn open_session(&self, user: UserRecord) -> Result<LoggedIn, UserError> {
        let secret = new_refresh_secret()?;
        let sid = uuid::Uuid::new_v4().simple().to_string();
        let ttl_ms = self.auth.config().refresh_ttl_secs * 1000;
        let session = new_session(&sid, user.user_id, sha256_hex(secret.as_bytes()), now_ms(), ttl_ms);
        self.store.insert_session(&session).await?;
        tracing::info!(user_id = user.user_id, session_id = %sid, "login");
        let (tokens, own) = (self.tokens(user.user_id, &sid, &secret), user.user_id);
        Ok(LoggedIn { user: seen_by(user, Some(own)), tokens })
    }

    /// The account whose password this is (a stronger hash stored on the way).
    async fn check_password(&self, email_key: &str, password: String) -> Result<UserRecord, UserError> {
        let user = self.store.get_user_by_email(email_key).await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let verified = self.hasher.verify(password, stored).await?;
        match credentials(user, verified)? {
            Credentials::Valid(user) => Ok(user),
            Credentials::Rehashed(user) => {
                self.store.update_user(&user).await?;
                Ok(user)
            }
        }
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

    /// The caller's own account, with its counters and role.
    pub async fn get_me(&self, user_id: u64) -> Result<Profile, UserError> {
        let user = self.load_user(user_id).await?;
        self.profile(user, Some(user_id), true).await
    }

    /// An account as `viewer` sees it, and how `viewer` stands with it (`None` for their own).
    pub async fn get_user(&self, viewer: u64, user_id: u64) -> Result<(Profile, Option<Relation>), UserError> {
        let user = self.load_user(user_id).await?;
        let relation = if viewer == user_id { None } else { Some(self.relation(viewer, user_id).await?) };
        let profile = self.profile(user, Some(viewer), false).await?;
        if viewer != user_id {
            // why: a profile viewed counts toward the viewer's recommendations (seed 001)
            self.note_interest(viewer, &[user_id]).await;
        }
        Ok((profile, relation))
    }

    /// Changes the caller's profile fields named in `cmd`.
    pub async fn update_me(&self, user_id: u64, cmd: wire::UpdateMe) -> Result<Profile, UserError> {
        let mut user = self.load_user(user_id).await?;
        apply_update(&mut user, cmd, now_ms());
        self.store.update_user(&user).await?;
        self.reindex(&user).await?;
        self.profile(user, Some(user_id), true).await
    }

    /// Accounts by id, in order, as another service sees them; `None` for a missing one (a
    /// deleted account counts as missing: it can no longer be added anywhere).
    pub async fn batch_get_users(&self, user_ids: &[u64]) -> Result<Vec<Option<UserRecord>>, UserError> {
        let mut users = Vec::with_capacity(user_ids.len());
        for &id in user_ids {
            let user = self.store.get_user(id).await?.filter(|u| u.deleted_at_ms.is_none());
            users.push(user.map(|user| seen_by(user, None)));
        }
        Ok(users)
    }

    /// The accounts holding these (lowercase) usernames, as another service sees them (deleted
    /// accounts left out).
    pub async fn resolve_usernames(&self, keys: &[String]) -> Result<Vec<UserRecord>, UserError> {
        let mut users = Vec::new();
        for key in keys {
            if let Some(user) = self.store.get_user_by_username(key).await?
                && user.deleted_at_ms.is_none()
            {
                users.push(seen_by(user, None));
            }
        }
        Ok(users)
    }

    /// An account as `viewer` sees it, with its counters; `show_role` on one's own account or
    /// to an admin. A deleted account shows only its id and state.
    pub(crate) async fn profile(
        &self,
        user: UserRecord,
        viewer: Option<u64>,
        show_role: bool,
    ) -> Result<Profile, UserError> {
        let state = user.state(now_ms());
        if state == AccountState::Deleted && !show_role {
            return Ok(Profile { user: deleted_view(&user), followers: 0, following: 0, state, show_role });
        }
        let (followers, following) = self.store.follow_counts(user.user_id).await?;
        Ok(Profile { user: seen_by(user, viewer), followers, following, state, show_role })
    }

    /// Profiles of `ids` as `viewer` sees them, in order, leaving out accounts gone or deleted.
    pub(crate) async fn profiles(
        &self,
        ids: impl IntoIterator<Item = u64>,
        viewer: u64,
    ) -> Result<Vec<Profile>, UserError> {
        // why: two store round trips for a page, not two per user
        let ids: Vec<u64> = ids.into_iter().collect();
        let live: Vec<UserRecord> =
            self.store.get_users(&ids).await?.into_iter().flatten().filter(|u| u.deleted_at_ms.is_none()).collect();
        let counts = self.store.follow_counts_of(&live.iter().map(|u| u.user_id).collect::<Vec<_>>()).await?;
        let now = now_ms();
        let profiles = live.into_iter().zip(counts).map(|(user, (followers, following))| Profile {
            state: user.state(now),
            user: seen_by(user, Some(viewer)),
            followers,
            following,
            show_role: false,
        });
        Ok(profiles.collect())
    }

    pub(crate) async fn load_user(&self, user_id: u64) -> Result<UserRecord, UserError> {
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

/// How long a login to an account that has failed too often from everywhere together waits
/// before its password is checked: slowed, never refused.
pub const LOGIN_DELAY: Duration = Duration::from_millis(500);

/// Login throttling after OWASP's brute-force guidance. Failed attempts are counted per account
/// from one client address, and per client address across accounts; once either allowance is
/// spent, that address's attempts are refused (429) before any hashing. Failures from every
/// address together only slow the account's logins ([`LOGIN_DELAY`]): an attacker's failures
/// never lock the owner out, from an address that has not failed. An attempt is taken from both
/// allowances before hashing (so concurrent guesses cannot overrun them) and given back when
/// the password was right: only failures count.
pub struct LoginThrottle {
    per_account_and_source: Allowances,
    per_source: Allowances,
    per_account: Allowances,
}

/// A login attempt the throttle let through, settled once its password was checked.
#[derive(Debug)]
pub struct Attempt {
    account_and_source: Taken,
    source: Taken,
    account: String,
    /// The account has failed too often from everywhere: wait [`LOGIN_DELAY`] first.
    pub slowed: bool,
}

impl LoginThrottle {
    /// The limits of `[limits]`, kept in `shared` Redis (with its timeout) or in this process.
    pub fn new(limits: &LimitsConfig, shared: Option<(&Redis, Duration)>) -> Self {
        let minute = Duration::from_secs(60);
        let per_account = Rate::per(limits.login_per_minute_per_account, minute);
        Self {
            per_account_and_source: allowances("login-account-source", per_account, shared),
            per_source: allowances("login-source", Rate::per(limits.login_per_minute_per_source, minute), shared),
            per_account: allowances("login-account", per_account, shared),
        }
    }

    /// Admits an attempt on `email_key` from `source`, or says how long to wait (at least a second).
    pub async fn begin(&self, email_key: &str, source: Option<IpAddr>) -> Result<Attempt, UserError> {
        let (account, source) = (account_key(email_key), source_key(source));
        let refused = |wait| UserError::LoginThrottled(at_least_a_second(wait));
        let account_and_source =
            self.per_account_and_source.take(&format!("{account}@{source}")).await.map_err(refused)?;
        let source = match self.per_source.take(&source).await {
            Ok(taken) => taken,
            Err(wait) => {
                self.per_account_and_source.give_back(account_and_source).await;
                return Err(refused(wait));
            }
        };
        let slowed = self.per_account.is_spent(&account).await;
        Ok(Attempt { account_and_source, source, account, slowed })
    }

    /// Counts `attempt` as a failure (a wrong password or unknown account), or gives it back.
    pub async fn settle(&self, attempt: Attempt, failed: bool) {
        if failed {
            // why: only counted; a spent account allowance slows logins, it refuses none
            let _ = self.per_account.take(&attempt.account).await;
        } else {
            self.per_account_and_source.give_back(attempt.account_and_source).await;
            self.per_source.give_back(attempt.source).await;
        }
    }
}

/// Allowances named `name` at `rate`, in `shared` Redis or in this process.
fn allowances(name: &'static str, rate: Rate, shared: Option<(&Redis, Duration)>) -> Allowances {
    match shared {
        Some((redis, timeout)) => Allowances::shared(name, rate, redis, timeout),
        None => Allowances::local(name, rate),
    }
}

/// The key an account's limits go by: a hash of its email key, so no email sits in a limiter.
fn account_key(email_key: &str) -> String {
    sha256_hex(email_key.as_bytes())[..32].to_owned()
}

/// The key a client address's limits go by (in-process calls share one).
fn source_key(source: Option<IpAddr>) -> String {
    source.map_or_else(|| "in-process".to_owned(), |ip| ip.to_string())
}

/// A wait as Retry-After states it: whole seconds, at least one.
fn at_least_a_second(wait: Duration) -> Duration {
    wait.max(Duration::from_secs(1))
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

/// What everyone but its owner and admins sees of a deleted account.
pub fn deleted_view(user: &UserRecord) -> UserRecord {
    UserRecord {
        user_id: user.user_id,
        email: String::new(),
        name: DELETED_NAME.to_owned(),
        username: None,
        avatar_url: String::new(),
        bio: String::new(),
        password_hash: String::new(),
        created_at_ms: user.created_at_ms,
        updated_at_ms: user.updated_at_ms,
        role: crate::model::Role::User,
        suspension: None,
        deleted_at_ms: user.deleted_at_ms,
    }
}

/// The name a deleted account shows.
pub const DELETED_NAME: &str = "deleted user";

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
        role: crate::model::Role::User,
        suspension: None,
        deleted_at_ms: None,
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

    fn limits(per_account: u32, per_source: u32) -> LimitsConfig {
        LimitsConfig {
            login_per_minute_per_account: per_account,
            login_per_minute_per_source: per_source,
            ..LimitsConfig::default()
        }
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    /// An attempt from `source` that fails.
    async fn fail(throttle: &LoginThrottle, email: &str, source: Option<IpAddr>) -> Result<bool, UserError> {
        let attempt = throttle.begin(email, source).await?;
        let slowed = attempt.slowed;
        throttle.settle(attempt, true).await;
        Ok(slowed)
    }

    #[tokio::test]
    async fn failures_are_refused_per_account_and_address_with_a_wait_of_at_least_a_second() {
        let throttle = LoginThrottle::new(&limits(2, 100), None);
        let attacker = ip("192.0.2.1");
        fail(&throttle, "ada@example.com", attacker).await.unwrap();
        fail(&throttle, "ada@example.com", attacker).await.unwrap();
        match throttle.begin("ada@example.com", attacker).await {
            Err(UserError::LoginThrottled(wait)) => assert!(wait >= Duration::from_secs(1), "{wait:?}"),
            other => panic!("the third failure in a minute is refused, got {other:?}"),
        }
        assert!(throttle.begin("bob@example.com", attacker).await.is_ok(), "another account is not affected");
        // the owner, from an address that has not failed: slowed, never refused
        for _ in 0..5 {
            let attempt = throttle.begin("ada@example.com", ip("198.51.100.7")).await.expect("the owner is let in");
            assert!(attempt.slowed, "the account failed too often from everywhere: slowed");
            throttle.settle(attempt, false).await;
        }
        let fresh = LoginThrottle::new(&limits(0, 0), None);
        assert!(fresh.begin("x", None).await.is_ok(), "a zero quota still admits one attempt");
    }

    #[tokio::test]
    async fn an_address_failing_across_accounts_is_refused_and_right_passwords_do_not_count() {
        let throttle = LoginThrottle::new(&limits(100, 3), None);
        let source = ip("2001:db8::1");
        for account in ["a@x.org", "b@x.org", "c@x.org"] {
            assert!(!fail(&throttle, account, source).await.unwrap(), "not slowed: one failure per account");
        }
        assert!(matches!(throttle.begin("d@x.org", source).await, Err(UserError::LoginThrottled(_))));
        assert!(throttle.begin("d@x.org", ip("2001:db9::1")).await.is_ok(), "another address is not affected");
        // right passwords are given back: any number of them from one address
        let owner = LoginThrottle::new(&limits(2, 2), None);
        for _ in 0..10 {
            let attempt = owner.begin("ada@example.com", source).await.expect("never refused");
            assert!(!attempt.slowed);
            owner.settle(attempt, false).await;
        }
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
        let epochs = Arc::new(EpochBoard::new());
        (keys, UserCore::new(&config, store, auth, ids, Peers::default(), None, epochs).unwrap())
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
        wire::Login {
            email_key: email.to_lowercase(),
            password: password.into(),
            password_can_match: true,
            restore: false,
        }
    }

    fn refresh(token: &str) -> wire::RefreshToken {
        let (sid, secret) = token.split_once('.').unwrap();
        wire::RefreshToken { session_and_secret: Some((sid.to_owned(), secret.to_owned())) }
    }

    #[tokio::test]
    async fn a_reused_refresh_token_ends_its_session() {
        let (_dir, _keys, core) = core();
        core.create_user(sign_up("ada@example.com"), None).await.unwrap();
        assert!(matches!(core.create_user(sign_up("ADA@example.com"), None).await, Err(UserError::EmailTaken)));
        assert!(matches!(core.login(login("ada@example.com", "wrong"), None).await, Err(UserError::BadCredentials)));
        let first = core.login(login("ada@example.com", "correct horse"), None).await.unwrap();
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
        let ada = core.create_user(sign_up("ada@example.com"), None).await.unwrap();
        let update = wire::UpdateMe { name: None, username: Some(Some("Ada".into())), avatar_url: None, bio: None };
        core.update_me(ada.user_id, update).await.unwrap();
        assert_eq!(core.get_user(ada.user_id, ada.user_id).await.unwrap().0.user.email, "ada@example.com");
        assert!(core.get_user(ada.user_id + 1, ada.user_id).await.unwrap().0.user.email.is_empty());
        let found = core.batch_get_users(&[ada.user_id, 424_242]).await.unwrap();
        assert!(found[0].as_ref().is_some_and(|u| u.email.is_empty()) && found[1].is_none());
        let resolved = core.resolve_usernames(&["ada".into(), "nobody".into()]).await.unwrap();
        assert_eq!(resolved.len(), 1);
        assert!(resolved[0].email.is_empty());
        assert!(matches!(core.get_user(1, 424_242).await, Err(UserError::UserNotFound(424_242))));
    }

    #[tokio::test]
    async fn sign_ups_are_limited_per_address_whether_the_email_is_free_or_taken() {
        let (_dir, _keys, core) = core();
        let limit = Config::default().limits.signups_per_hour_per_source;
        let source = ip("192.0.2.1");
        for i in 0..limit {
            core.create_user(sign_up(&format!("user{i}@example.com")), source).await.expect("within the limit");
        }
        match core.create_user(sign_up("one.more@example.com"), source).await {
            Err(UserError::SignUpThrottled(wait)) => assert!(wait >= Duration::from_secs(1), "{wait:?}"),
            other => panic!("past the limit: {other:?}"),
        }
        core.create_user(sign_up("one.more@example.com"), ip("192.0.2.2")).await.expect("another address");
        // a taken email is refused as such
        let taken = core.create_user(sign_up("USER0@example.com"), ip("192.0.2.2")).await;
        assert!(matches!(taken, Err(UserError::EmailTaken)), "{taken:?}");
    }

    #[tokio::test]
    async fn logout_everywhere_ends_every_live_session() {
        let (_dir, _keys, core) = core();
        let ada = core.create_user(sign_up("ada@example.com"), None).await.unwrap();
        let one = core.login(login("ada@example.com", "correct horse"), None).await.unwrap();
        core.login(login("ada@example.com", "correct horse"), None).await.unwrap();
        core.logout(ada.user_id, &one.tokens.session_id).await.unwrap();
        assert!(core.auth.revocations().is_revoked(&one.tokens.session_id));
        assert_eq!(core.logout_all(ada.user_id).await.unwrap(), 1, "the other one was still live");
        assert!(matches!(core.refresh(refresh(&one.tokens.refresh_token)).await, Err(UserError::SessionEnded)));
    }
}
