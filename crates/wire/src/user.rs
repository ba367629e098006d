//! Validation of every user-service request: each function checks one request type, names the
//! field it refuses, and returns the values the handler works with.

use std::{fmt, time::Duration};

use chatmesh_api::user::v1 as pb;
use tonic::Status;
use unicode_normalization::UnicodeNormalization;

use crate::{error::invalid_field, validate};

/// Longest email address accepted, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL: usize = 254;
/// Shortest password accepted, in characters.
pub const MIN_PASSWORD: usize = 8;
/// Longest password accepted, in characters; a longer one can match no account.
pub const MAX_PASSWORD: usize = 128;
/// Longest display name, in characters.
pub const MAX_NAME: usize = 64;
/// Longest avatar URL, in characters.
pub const MAX_URL: usize = 2048;
/// Longest bio, in characters.
pub const MAX_BIO: usize = 500;
/// Most ids or usernames one internal batch request may name.
pub const MAX_BATCH: usize = 100;
/// The fields `UpdateMeRequest.update_mask` may name.
pub const UPDATE_MASK_FIELDS: [&str; 4] = ["name", "username", "avatar_url", "bio"];
/// Page size of the lists when the request asks for none.
pub const DEFAULT_PAGE: usize = 50;
/// Largest page of the lists.
pub const MAX_PAGE: usize = 100;
/// Longest search query, in characters.
pub const MAX_QUERY: usize = 64;
/// Longest report text, in characters.
pub const MAX_REPORT_TEXT: usize = 1000;
/// Longest suspension reason, in characters.
pub const MAX_REASON: usize = 500;
/// Longest suspension for a time, in seconds (ten years of 365 days); 0 suspends for good.
pub const MAX_SUSPEND_SECONDS: i64 = 315_360_000;

/// A valid `CreateUserRequest`.
#[derive(Clone, PartialEq, Eq)]
pub struct CreateUser {
    /// As typed.
    pub email: String,
    /// As typed (not trimmed).
    pub password: String,
    /// Display name, trimmed.
    pub name: String,
    /// `None` when the request gave none; else its [`username_key`] (`Ada` → `ada`).
    pub username: Option<String>,
}

// why: a manual Debug so a logged or asserted request never prints the password.
impl fmt::Debug for CreateUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateUser")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .field("name", &self.name)
            .field("username", &self.username)
            .finish()
    }
}

/// Checks a `CreateUserRequest`: email, password, name, then the optional username.
pub fn create_user(request: &pb::CreateUserRequest) -> Result<CreateUser, Status> {
    email_address("email", &request.email)?;
    password("password", &request.password)?;
    display_name(&request.name)?;
    let username = (!request.username.is_empty()).then_some(request.username.as_str());
    if let Some(username) = username {
        self::username(username)?;
    }
    let username = username.map(username_key);
    Ok(CreateUser {
        email: request.email.clone(),
        password: request.password.clone(),
        name: request.name.trim().to_owned(),
        username,
    })
}

/// A valid `LoginRequest`.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The email lowercased (as typed otherwise): the key accounts and login throttling go by.
    pub email_key: String,
    /// As typed.
    pub password: String,
    /// False when the password is longer than any account's can be ([`MAX_PASSWORD`]).
    // why: such a login is refused as bad credentials (the handler's answer, UNAUTHENTICATED, not a
    // field error), without paying for a hash; the rule lives here so the fuzz targets see it.
    pub password_can_match: bool,
    /// Restore the account if its owner deleted it (within the grace period).
    pub restore: bool,
}

// why: a manual Debug so a logged or asserted request never prints the password.
impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("email_key", &self.email_key)
            .field("password", &"<redacted>")
            .field("password_can_match", &self.password_can_match)
            .field("restore", &self.restore)
            .finish()
    }
}

/// Checks a `LoginRequest`: both fields are required; nothing else is revealed about their shape.
pub fn login(request: &pb::LoginRequest) -> Result<Login, Status> {
    let email = &request.email;
    if email.is_empty() {
        return Err(invalid_field("email", "is required"));
    }
    if request.password.is_empty() {
        return Err(invalid_field("password", "is required"));
    }
    Ok(Login {
        email_key: email.to_lowercase(),
        password: request.password.clone(),
        password_can_match: request.password.chars().count() <= MAX_PASSWORD,
        restore: request.restore,
    })
}

/// A valid `RefreshTokenRequest`.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// The token `<sid>.<secret>` split at its first dot; `None` when it has no dot.
    // why: a token of the wrong shape is answered like an unknown one (the handler's
    // UNAUTHENTICATED), not as a field error, so it is passed on rather than refused here.
    pub session_and_secret: Option<(String, String)>,
}

// why: a manual Debug so a logged or asserted request never prints the refresh secret.
impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let session = self.session_and_secret.as_ref().map(|(sid, _)| (sid.as_str(), "<redacted>"));
        f.debug_struct("RefreshToken").field("session_and_secret", &session).finish()
    }
}

/// Checks a `RefreshTokenRequest`: the token is required.
pub fn refresh_token(request: &pb::RefreshTokenRequest) -> Result<RefreshToken, Status> {
    let token = &request.refresh_token;
    if token.is_empty() {
        return Err(invalid_field("refresh_token", "is required"));
    }
    let session_and_secret = token.split_once('.').map(|(sid, secret)| (sid.to_owned(), secret.to_owned()));
    Ok(RefreshToken { session_and_secret })
}

/// A valid `LogoutRequest` (it has no fields; the session is the caller's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logout;

/// Checks a `LogoutRequest`: there is nothing to check.
pub fn logout(_request: &pb::LogoutRequest) -> Result<Logout, Status> {
    Ok(Logout)
}

/// A valid `LogoutAllRequest` (it has no fields; the sessions are the caller's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogoutAll;

/// Checks a `LogoutAllRequest`: there is nothing to check.
pub fn logout_all(_request: &pb::LogoutAllRequest) -> Result<LogoutAll, Status> {
    Ok(LogoutAll)
}

/// A valid `GetMeRequest` (it has no fields; the account is the caller's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetMe;

/// Checks a `GetMeRequest`: there is nothing to check.
pub fn get_me(_request: &pb::GetMeRequest) -> Result<GetMe, Status> {
    Ok(GetMe)
}

/// A valid `GetUserRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetUser {
    pub user_id: u64,
}

/// Checks a `GetUserRequest`: the user id is required.
pub fn get_user(request: &pb::GetUserRequest) -> Result<GetUser, Status> {
    Ok(GetUser { user_id: validate::id("user_id", &request.user_id)? })
}

/// A valid `UpdateMeRequest`: each field is `None` when it is not to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateMe {
    /// The new display name, trimmed.
    pub name: Option<String>,
    /// The new username's [`username_key`]; `Some(None)` removes it.
    pub username: Option<Option<String>>,
    /// The new avatar URL; empty removes it.
    pub avatar_url: Option<String>,
    /// The new bio, as given (newlines and tabs kept); empty removes it.
    pub bio: Option<String>,
}

/// Checks an `UpdateMeRequest`: the mask names only known fields, each field given is valid
/// (name, username, avatar_url, bio; whether the mask names it or not), and a name the mask
/// names is given. With an empty mask the non-empty fields change; with a mask, the fields it
/// names (an empty username, avatar_url or bio removes it).
pub fn update_me(request: &pb::UpdateMeRequest) -> Result<UpdateMe, Status> {
    for field in &request.update_mask {
        if !UPDATE_MASK_FIELDS.contains(&field.as_str()) {
            return Err(invalid_field("update_mask", format!("unknown field {field:?}")));
        }
    }
    if !request.name.is_empty() {
        display_name(&request.name)?;
    }
    if !request.username.is_empty() {
        username(&request.username)?;
    }
    if !request.avatar_url.is_empty() {
        url("avatar_url", &request.avatar_url)?;
    }
    if !request.bio.is_empty() {
        // why: a bio may have lines and tabs; every other control character is refused.
        validate::text("bio", &request.bio.replace(['\n', '\t'], " "), 1, MAX_BIO)?;
    }
    let masked = |field: &str, value: &str| {
        if request.update_mask.is_empty() { !value.is_empty() } else { request.update_mask.iter().any(|f| f == field) }
    };
    let mut valid = UpdateMe { name: None, username: None, avatar_url: None, bio: None };
    if masked("name", &request.name) {
        if request.name.is_empty() {
            return Err(invalid_field("name", "is required when update_mask names it"));
        }
        valid.name = Some(request.name.trim().to_owned());
    }
    if masked("username", &request.username) {
        valid.username = Some((!request.username.is_empty()).then(|| username_key(&request.username)));
    }
    if masked("avatar_url", &request.avatar_url) {
        valid.avatar_url = Some(request.avatar_url.clone());
    }
    if masked("bio", &request.bio) {
        valid.bio = Some(request.bio.clone());
    }
    Ok(valid)
}

/// A valid `BatchGetUsersRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchGetUsers {
    /// The ids parsed, in the request's order (one per `user_ids` entry).
    pub user_ids: Vec<u64>,
}

/// Checks a `BatchGetUsersRequest`: at most [`MAX_BATCH`] ids, each valid.
pub fn batch_get_users(request: &pb::BatchGetUsersRequest) -> Result<BatchGetUsers, Status> {
    if request.user_ids.len() > MAX_BATCH {
        return Err(invalid_field("user_ids", format!("at most {MAX_BATCH} ids")));
    }
    let user_ids = request.user_ids.iter().map(|raw| validate::id("user_ids", raw)).collect::<Result<_, _>>()?;
    Ok(BatchGetUsers { user_ids })
}

/// A valid `ResolveUsernamesRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveUsernames {
    /// The names without leading `@`, as [`username_key`]s: the keys usernames are unique on.
    pub keys: Vec<String>,
}

/// Checks a `ResolveUsernamesRequest`: at most [`MAX_BATCH`] names (a malformed one just matches nobody).
pub fn resolve_usernames(request: &pb::ResolveUsernamesRequest) -> Result<ResolveUsernames, Status> {
    if request.usernames.len() > MAX_BATCH {
        return Err(invalid_field("usernames", format!("at most {MAX_BATCH} names")));
    }
    let keys = request.usernames.iter().map(|name| username_key(name.trim_start_matches('@'))).collect();
    Ok(ResolveUsernames { keys })
}

/// A valid request naming one user and nothing else: FollowUser, UnfollowUser, BlockUser,
/// UnblockUser, SendFriendRequest and its Accept, Decline and Cancel, RemoveFriend, the admins'
/// GetAccount, UnsuspendAccount and DeleteAccount, and the internal ListBlockedUserIds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserTarget {
    /// The user the request names.
    pub user_id: u64,
}

fn target(user_id: &str) -> Result<UserTarget, Status> {
    Ok(UserTarget { user_id: validate::id("user_id", user_id)? })
}

/// Checks a `FollowUserRequest`: the user id is required.
pub fn follow_user(request: &pb::FollowUserRequest) -> Result<UserTarget, Status> {
    target(&request.user_id)
}

/// Checks an `UnfollowUserRequest`: the user id is required.
pub fn unfollow_user(request: &pb::UnfollowUserRequest) -> Result<UserTarget, Status> {
    target(&request.user_id)
}

/// Checks a `BlockUserRequest`: the user id is required.
pub fn block_user(request: &pb::BlockUserRequest) -> Result<UserTarget, Status> {
    target(&request.user_id)
}

/// Checks an `UnblockUserRequest`: the user id is required.
pub fn unblock_user(request: &pb::UnblockUserRequest) -> Result<UserTarget, Status> {
    target(&request.user_id)
}

/// Checks a `SendFriendRequestRequest`: the user id is required.
pub fn send_friend_request(request: &pb::SendFriendRequestRequest) -> Result<UserTarget, Status> {
    target(&request.user_id)
}

/// Checks an `AcceptFriendRequestRequest`: the user id is required.
pub fn accept_friend_request(request: &pb::AcceptFriendRequestRequest) -> Result<UserTarget, Status> {
    target(&request.user_id)
}

/// Checks a `DeclineFriendRequestRequest`: the user id is required.
pub fn decline_friend_request(request: &pb::DeclineFriendRequestRequest) -> Result<UserTarget, Status> {
    target(&request.user_id)
}

/// Checks a `CancelFriendRequestRequest`: the user id is required.
pub fn cancel_friend_request(request: &pb::CancelFriendRequestRequest) -> Result<UserTarget, Status> {
    target(&request.user_id)
}

/// Checks a `RemoveFriendRequest`: the user id is required.
pub fn remove_friend(request: &pb::RemoveFriendRequest) -> Result<UserTarget, Status> {
    target(&request.user_id)
}

/// Checks a `GetAccountRequest`: the user id is required.
pub fn get_account(request: &pb::GetAccountRequest) -> Result<UserTarget, Status> {
    target(&request.user_id)
}

/// Checks an `UnsuspendAccountRequest`: the user id is required.
pub fn unsuspend_account(request: &pb::UnsuspendAccountRequest) -> Result<UserTarget, Status> {
    target(&request.user_id)
}

/// Checks a `DeleteAccountRequest`: the user id is required.
pub fn delete_account(request: &pb::DeleteAccountRequest) -> Result<UserTarget, Status> {
    target(&request.user_id)
}

/// Checks a `ListBlockedUserIdsRequest`: the user id is required.
pub fn list_blocked_user_ids(request: &pb::ListBlockedUserIdsRequest) -> Result<UserTarget, Status> {
    target(&request.user_id)
}

/// A valid `CheckBlockRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckBlock {
    /// One user.
    pub user_id: u64,
    /// The other (it may be the same user: no one blocks themselves).
    pub other_user_id: u64,
}

/// Checks a `CheckBlockRequest`: both user ids are required.
pub fn check_block(request: &pb::CheckBlockRequest) -> Result<CheckBlock, Status> {
    Ok(CheckBlock {
        user_id: validate::id("user_id", &request.user_id)?,
        other_user_id: validate::id("other_user_id", &request.other_user_id)?,
    })
}

/// A valid `SetRoleRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetRole {
    /// The email lowercased: the key accounts go by.
    pub email_key: String,
    /// USER_ROLE_ADMIN (else USER_ROLE_USER).
    pub admin: bool,
}

/// Checks a `SetRoleRequest`: an email (any text of at most 254 bytes) and a defined role.
pub fn set_role(request: &pb::SetRoleRequest) -> Result<SetRole, Status> {
    if request.email.is_empty() {
        return Err(invalid_field("email", "is required"));
    }
    if request.email.len() > MAX_EMAIL {
        return Err(invalid_field("email", format!("must be at most {MAX_EMAIL} bytes")));
    }
    let admin = match pb::UserRole::try_from(request.role) {
        Ok(pb::UserRole::Admin) => true,
        Ok(pb::UserRole::User) => false,
        Ok(pb::UserRole::Unspecified) => return Err(invalid_field("role", "is required")),
        Err(_) => return Err(invalid_field("role", "must be a defined value")),
    };
    Ok(SetRole { email_key: request.email.to_lowercase(), admin })
}

/// One page of a list, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Entries on the page: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when the request asked for none.
    pub page_size: usize,
    /// The decoded page token: the page holds the entries older than this; `None`: the first page.
    pub before: Option<u64>,
}

/// The page size, clamped, then the page token (the last check of a list request).
fn page(page_size: i32, page_token: &str) -> Result<Page, Status> {
    Ok(Page {
        page_size: crate::page::page_size(page_size, DEFAULT_PAGE, MAX_PAGE),
        before: crate::page::decode_token(page_token)?,
    })
}

/// A valid `ListFollowersRequest` or `ListFollowingRequest`: one page of one user's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserPage {
    /// Whose followers, or whom they follow.
    pub user_id: u64,
    /// As [`Page::page_size`].
    pub page_size: usize,
    /// As [`Page::before`].
    pub before: Option<u64>,
}

fn user_page(user_id: &str, page_size: i32, page_token: &str) -> Result<UserPage, Status> {
    let user_id = validate::id("user_id", user_id)?;
    let Page { page_size, before } = page(page_size, page_token)?;
    Ok(UserPage { user_id, page_size, before })
}

/// Checks a `ListFollowersRequest`: the user id, then the page.
pub fn list_followers(request: &pb::ListFollowersRequest) -> Result<UserPage, Status> {
    user_page(&request.user_id, request.page_size, &request.page_token)
}

/// Checks a `ListFollowingRequest`: the user id, then the page.
pub fn list_following(request: &pb::ListFollowingRequest) -> Result<UserPage, Status> {
    user_page(&request.user_id, request.page_size, &request.page_token)
}

/// Checks a `ListBlockedUsersRequest`: the page.
pub fn list_blocked_users(request: &pb::ListBlockedUsersRequest) -> Result<Page, Status> {
    page(request.page_size, &request.page_token)
}

/// Checks a `ListFriendsRequest`: the page.
pub fn list_friends(request: &pb::ListFriendsRequest) -> Result<Page, Status> {
    page(request.page_size, &request.page_token)
}

/// Which way a friend request goes, seen from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FriendDirection {
    /// Someone asked the caller.
    Incoming,
    /// The caller asked someone.
    Outgoing,
}

/// A valid `ListFriendRequestsRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FriendRequestsPage {
    /// Which page.
    pub page: Page,
    /// Only the requests going this way; `None`: both ways.
    pub direction: Option<FriendDirection>,
}

/// Checks a `ListFriendRequestsRequest`: the direction is a known one (or unspecified), then the page.
pub fn list_friend_requests(request: &pb::ListFriendRequestsRequest) -> Result<FriendRequestsPage, Status> {
    let direction = match pb::FriendRequestDirection::try_from(request.direction) {
        Ok(pb::FriendRequestDirection::Unspecified) => None,
        Ok(pb::FriendRequestDirection::Incoming) => Some(FriendDirection::Incoming),
        Ok(pb::FriendRequestDirection::Outgoing) => Some(FriendDirection::Outgoing),
        Err(_) => return Err(invalid_field("direction", "is not a known direction")),
    };
    Ok(FriendRequestsPage { page: page(request.page_size, &request.page_token)?, direction })
}

/// A valid `SearchUsersRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchUsers {
    /// The prefix to find: the query as a [`username_key`] (NFKC, lower case), trimmed, its
    /// leading `@`s and the white space after them dropped. Never empty: a query of only `@`s
    /// keeps them (it can match only a display name's word).
    pub query: String,
    /// [`Self::query`] when it is a valid username: the user of that name comes first.
    pub exact_username: Option<String>,
    /// Entries on the page: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when the request asked for none.
    pub page_size: usize,
    /// How many results the earlier pages held (the decoded page token; 0 for the first page).
    pub offset: u64,
}

/// Checks a `SearchUsersRequest`: the query (1 to [`MAX_QUERY`] characters, not blank, no
/// control characters, checked as sent), then the page.
pub fn search_users(request: &pb::SearchUsersRequest) -> Result<SearchUsers, Status> {
    let raw = &request.query;
    validate::text("query", raw, 1, MAX_QUERY)?;
    // why: `trim` drops Unicode White_Space, the set the contract's not-blank pattern excludes.
    if raw.trim().is_empty() {
        return Err(invalid_field("query", "must not be blank"));
    }
    let key = username_key(raw);
    let key = key.trim();
    let unprefixed = key.trim_start_matches('@').trim_start();
    let query = if unprefixed.is_empty() { key } else { unprefixed }.to_owned();
    let exact_username = is_username(&query).then(|| query.clone());
    let page_size = crate::page::page_size(request.page_size, DEFAULT_PAGE, MAX_PAGE);
    let offset = crate::page::decode_token(&request.page_token)?.unwrap_or(0);
    Ok(SearchUsers { query, exact_username, page_size, offset })
}

/// Why a user reports someone or something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportCategoryKind {
    /// REPORT_CATEGORY_SPAM.
    Spam,
    /// REPORT_CATEGORY_HARASSMENT.
    Harassment,
    /// REPORT_CATEGORY_HATE.
    Hate,
    /// REPORT_CATEGORY_VIOLENCE.
    Violence,
    /// REPORT_CATEGORY_SEXUAL.
    Sexual,
    /// REPORT_CATEGORY_IMPERSONATION.
    Impersonation,
    /// REPORT_CATEGORY_OTHER.
    Other,
}

/// A valid `CreateReportRequest`: of a user, of a chat, or of both (the chat's sender).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateReport {
    /// The user reported; `None` for a chat report that leaves it to the chat's sender.
    pub user_id: Option<u64>,
    /// The chat reported and its channel, `(chat_id, channel_id)`.
    pub chat: Option<(u64, u64)>,
    /// Why.
    pub category: ReportCategoryKind,
    /// What happened, as given (newlines and tabs kept); may be empty.
    pub text: String,
}

/// Checks a `CreateReportRequest`: each field's own rule (the ids given, the category, the
/// text), then the rules between them: a chat id goes with a channel id and the other way
/// round, and a report names a user or a chat.
pub fn create_report(request: &pb::CreateReportRequest) -> Result<CreateReport, Status> {
    let user_id = optional_id("user_id", &request.user_id)?;
    let chat_id = optional_id("chat_id", &request.chat_id)?;
    let channel_id = optional_id("channel_id", &request.channel_id)?;
    let category = match pb::ReportCategory::try_from(request.category) {
        Ok(pb::ReportCategory::Unspecified) => return Err(invalid_field("category", "is required")),
        Ok(pb::ReportCategory::Spam) => ReportCategoryKind::Spam,
        Ok(pb::ReportCategory::Harassment) => ReportCategoryKind::Harassment,
        Ok(pb::ReportCategory::Hate) => ReportCategoryKind::Hate,
        Ok(pb::ReportCategory::Violence) => ReportCategoryKind::Violence,
        Ok(pb::ReportCategory::Sexual) => ReportCategoryKind::Sexual,
        Ok(pb::ReportCategory::Impersonation) => ReportCategoryKind::Impersonation,
        Ok(pb::ReportCategory::Other) => ReportCategoryKind::Other,
        Err(_) => return Err(invalid_field("category", "is not a known category")),
    };
    // why: a report may have lines and tabs; every other control character is refused.
    validate::text("text", &request.text.replace(['\n', '\t'], " "), 0, MAX_REPORT_TEXT)?;
    let chat = match (chat_id, channel_id) {
        (Some(chat_id), Some(channel_id)) => Some((chat_id, channel_id)),
        (Some(_), None) => return Err(invalid_field("channel_id", "is required with chat_id")),
        (None, Some(_)) => return Err(invalid_field("chat_id", "is required with channel_id")),
        (None, None) => None,
    };
    if user_id.is_none() && chat.is_none() {
        return Err(invalid_field("user_id", "is required unless chat_id is given"));
    }
    Ok(CreateReport { user_id, chat, category, text: request.text.clone() })
}

/// A valid `ChangeEmailRequest`.
#[derive(Clone, PartialEq, Eq)]
pub struct ChangeEmail {
    /// As typed.
    pub current_password: String,
    /// As typed.
    pub new_email: String,
}

// why: a manual Debug so a logged or asserted request never prints the password.
impl fmt::Debug for ChangeEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeEmail")
            .field("current_password", &"<redacted>")
            .field("new_email", &self.new_email)
            .finish()
    }
}

/// Checks a `ChangeEmailRequest`: the current password is given, the new email is valid as
/// [`create_user`] takes one.
pub fn change_email(request: &pb::ChangeEmailRequest) -> Result<ChangeEmail, Status> {
    let current_password = secret("current_password", &request.current_password)?;
    email_address("new_email", &request.new_email)?;
    Ok(ChangeEmail { current_password, new_email: request.new_email.clone() })
}

/// A valid `ChangePasswordRequest`.
#[derive(Clone, PartialEq, Eq)]
pub struct ChangePassword {
    /// As typed.
    pub current_password: String,
    /// As typed (not trimmed).
    pub new_password: String,
}

// why: a manual Debug so a logged or asserted request never prints a password.
impl fmt::Debug for ChangePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangePassword")
            .field("current_password", &"<redacted>")
            .field("new_password", &"<redacted>")
            .finish()
    }
}

/// Checks a `ChangePasswordRequest`: the current password is given, the new one has
/// [`MIN_PASSWORD`] to [`MAX_PASSWORD`] characters.
pub fn change_password(request: &pb::ChangePasswordRequest) -> Result<ChangePassword, Status> {
    let current_password = secret("current_password", &request.current_password)?;
    password("new_password", &request.new_password)?;
    Ok(ChangePassword { current_password, new_password: request.new_password.clone() })
}

/// A valid `DeleteMeRequest`.
#[derive(Clone, PartialEq, Eq)]
pub struct DeleteMe {
    /// As typed.
    pub current_password: String,
}

// why: a manual Debug so a logged or asserted request never prints the password.
impl fmt::Debug for DeleteMe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeleteMe").field("current_password", &"<redacted>").finish()
    }
}

/// Checks a `DeleteMeRequest`: the current password is given.
pub fn delete_me(request: &pb::DeleteMeRequest) -> Result<DeleteMe, Status> {
    Ok(DeleteMe { current_password: secret("current_password", &request.current_password)? })
}

/// A valid `ListReportsRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListReports {
    /// Which page.
    pub page: Page,
    /// Resolved reports; false: open ones (the default).
    pub resolved: bool,
    /// Only the reports of this user.
    pub target_user_id: Option<u64>,
}

/// Checks a `ListReportsRequest`: the status is a known one (or unspecified), the user id if
/// given, then the page.
pub fn list_reports(request: &pb::ListReportsRequest) -> Result<ListReports, Status> {
    let resolved = match pb::ReportStatus::try_from(request.status) {
        Ok(pb::ReportStatus::Unspecified | pb::ReportStatus::Open) => false,
        Ok(pb::ReportStatus::Resolved) => true,
        Err(_) => return Err(invalid_field("status", "is not a known status")),
    };
    let target_user_id = optional_id("target_user_id", &request.target_user_id)?;
    Ok(ListReports { page: page(request.page_size, &request.page_token)?, resolved, target_user_id })
}

/// What an admin does about a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportActionKind {
    /// Nothing wrong: close it.
    Dismiss,
    /// Retract the reported chat.
    RetractChat,
    /// Suspend the reported user (or the chat's sender).
    SuspendUser,
}

/// A valid `ResolveReportRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolveReport {
    /// The report.
    pub report_id: u64,
    /// What to do.
    pub action: ReportActionKind,
    /// For [`ReportActionKind::SuspendUser`]: how long, `None` for good. Always `None` for the
    /// other actions (whose `suspend_seconds` is checked, then ignored).
    pub suspend_for: Option<Duration>,
}

/// Checks a `ResolveReportRequest`: the report id, the action, then `suspend_seconds` (0 to
/// [`MAX_SUSPEND_SECONDS`], whatever the action).
pub fn resolve_report(request: &pb::ResolveReportRequest) -> Result<ResolveReport, Status> {
    let report_id = validate::id("report_id", &request.report_id)?;
    let action = match pb::ReportAction::try_from(request.action) {
        Ok(pb::ReportAction::Unspecified) => return Err(invalid_field("action", "is required")),
        Ok(pb::ReportAction::Dismiss) => ReportActionKind::Dismiss,
        Ok(pb::ReportAction::RetractChat) => ReportActionKind::RetractChat,
        Ok(pb::ReportAction::SuspendUser) => ReportActionKind::SuspendUser,
        Err(_) => return Err(invalid_field("action", "is not a known action")),
    };
    let suspend_for = suspension(request.suspend_seconds)?.filter(|_| action == ReportActionKind::SuspendUser);
    Ok(ResolveReport { report_id, action, suspend_for })
}

/// Whether an account can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStateKind {
    /// USER_STATE_ACTIVE.
    Active,
    /// USER_STATE_SUSPENDED.
    Suspended,
    /// USER_STATE_DELETED.
    Deleted,
}

/// A valid `ListAccountsRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListAccounts {
    /// Which page.
    pub page: Page,
    /// Only accounts in this state; `None`: every one.
    pub state: Option<AccountStateKind>,
}

/// Checks a `ListAccountsRequest`: the state is a known one (or unspecified), then the page.
pub fn list_accounts(request: &pb::ListAccountsRequest) -> Result<ListAccounts, Status> {
    let state = match pb::UserState::try_from(request.state) {
        Ok(pb::UserState::Unspecified) => None,
        Ok(pb::UserState::Active) => Some(AccountStateKind::Active),
        Ok(pb::UserState::Suspended) => Some(AccountStateKind::Suspended),
        Ok(pb::UserState::Deleted) => Some(AccountStateKind::Deleted),
        Err(_) => return Err(invalid_field("state", "is not a known state")),
    };
    Ok(ListAccounts { page: page(request.page_size, &request.page_token)?, state })
}

/// A valid `SuspendAccountRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuspendAccount {
    /// Whose account.
    pub user_id: u64,
    /// How long; `None`: for good.
    pub suspend_for: Option<Duration>,
    /// Shown to the user when login is refused, as given; may be empty.
    pub reason: String,
}

/// Checks a `SuspendAccountRequest`: the user id, `suspend_seconds` (0 to
/// [`MAX_SUSPEND_SECONDS`]), then the reason (at most [`MAX_REASON`] characters, one line).
pub fn suspend_account(request: &pb::SuspendAccountRequest) -> Result<SuspendAccount, Status> {
    let user_id = validate::id("user_id", &request.user_id)?;
    let suspend_for = suspension(request.suspend_seconds)?;
    validate::text("reason", &request.reason, 0, MAX_REASON)?;
    Ok(SuspendAccount { user_id, suspend_for, reason: request.reason.clone() })
}

/// `suspend_seconds`: 0 (for good, `None`) to [`MAX_SUSPEND_SECONDS`].
fn suspension(seconds: i64) -> Result<Option<Duration>, Status> {
    match seconds {
        0 => Ok(None),
        1..=MAX_SUSPEND_SECONDS => Ok(Some(Duration::from_secs(seconds.unsigned_abs()))),
        _ => Err(invalid_field(
            "suspend_seconds",
            format!("must be 0 (for good) to {MAX_SUSPEND_SECONDS} seconds (10 years)"),
        )),
    }
}

/// An id that may be left empty.
fn optional_id(field: &str, value: &str) -> Result<Option<u64>, Status> {
    if value.is_empty() { Ok(None) } else { validate::id(field, value).map(Some) }
}

/// A required address of at most [`MAX_EMAIL`] bytes, valid by [`is_email`], checked as typed.
fn email_address(field: &str, email: &str) -> Result<(), Status> {
    if email.is_empty() {
        return Err(invalid_field(field, "is required"));
    }
    if email.len() > MAX_EMAIL {
        return Err(invalid_field(field, format!("must have at most {MAX_EMAIL} bytes")));
    }
    if is_email(email) { Ok(()) } else { Err(invalid_field(field, "is not a valid email address")) }
}

/// The HTML standard's "valid email address", which protovalidate's `string.email` checks:
///
/// ```text
/// ^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$
/// ```
///
/// ASCII only: a local part of those characters (dots anywhere), `@`, and a domain of one or
/// more dot-separated labels of 1 to 63 letters, digits and hyphens, not starting or ending
/// with a hyphen.
fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else { return false };
    let local_ok =
        !local.is_empty() && local.bytes().all(|b| b.is_ascii_alphanumeric() || b".!#$%&'*+/=?^_`{|}~-".contains(&b));
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    local_ok && domain.split('.').all(label_ok)
}

/// [`MIN_PASSWORD`] to [`MAX_PASSWORD`] characters of any kind.
fn password(field: &str, password: &str) -> Result<(), Status> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(invalid_field(field, format!("must have at least {MIN_PASSWORD} characters")));
    }
    if n > MAX_PASSWORD {
        return Err(invalid_field(field, format!("must have at most {MAX_PASSWORD} characters")));
    }
    Ok(())
}

/// A required secret: any non-empty text (a wrong one is the handler's UNAUTHENTICATED).
fn secret(field: &str, value: &str) -> Result<String, Status> {
    if value.is_empty() { Err(invalid_field(field, "is required")) } else { Ok(value.to_owned()) }
}

/// At most [`MAX_NAME`] characters, no control characters, no bidirectional formatting
/// characters ([`is_bidi_control`]), and something visible (some character is not
/// [`is_invisible`]), checked untrimmed — so a name cannot reorder the text around it or
/// pass for nobody.
fn display_name(name: &str) -> Result<(), Status> {
    validate::text("name", name, 1, MAX_NAME)?;
    if name.chars().any(is_bidi_control) {
        return Err(invalid_field("name", "must not contain bidirectional formatting characters"));
    }
    if name.chars().all(is_invisible) {
        return Err(invalid_field("name", "must not be blank or invisible"));
    }
    Ok(())
}

/// The bidirectional formatting characters (Unicode's Bidi_Control): the embeddings and
/// overrides U+202A–U+202E, the isolates U+2066–U+2069, the marks U+200E, U+200F and U+061C.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show nothing: white space, Unicode's default-ignorable code points below
/// U+10000 (zero-width spaces and joiners, word joiner, soft hyphen, Hangul fillers, variation
/// selectors, the bidirectional controls, ...) and the blank braille pattern U+2800.
// why: none above U+FFFF (tags, U+1BCA0..): the contract's pattern must also be written for the
// OpenAPI document, whose pattern dialect names no code point above U+FFFF
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
        )
}

/// The form a username is stored, compared and looked up in: NFKC, then lowercase (`Ada` and
/// `ADA` are `ada`; a lookup of the full-width `ａｄａ` finds `ada`).
pub fn username_key(username: &str) -> String {
    username.nfkc().collect::<String>().to_lowercase()
}

/// 3 to 32 of a-z, A-Z, 0-9 and _, starting with a letter (upper case is accepted and stored
/// as lower case, see [`username_key`]).
fn username(username: &str) -> Result<(), Status> {
    if is_username(username) {
        Ok(())
    } else {
        Err(invalid_field("username", "must be 3 to 32 letters, digits or _, starting with a letter"))
    }
}

fn is_username(username: &str) -> bool {
    (3..=32).contains(&username.len())
        && username.starts_with(|c: char| c.is_ascii_alphabetic())
        && username.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Empty, or an http(s) URL of at most [`MAX_URL`] characters.
fn url(field: &str, url: &str) -> Result<(), Status> {
    if url.is_empty() {
        return Ok(());
    }
    validate::text(field, url, 1, MAX_URL)?;
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(invalid_field(field, "must be an http(s) URL"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::refuses;

    fn new_user() -> pb::CreateUserRequest {
        pb::CreateUserRequest {
            email: "Ada@Example.org".into(),
            password: "correct horse".into(),
            name: " Ada ".into(),
            username: String::new(),
        }
    }

    #[test]
    fn emails_are_checked_as_the_html_standard_defines_them() {
        let longest_label = format!("a@{}.org", "b".repeat(63));
        let ok = ["a@b", "a@b.co", "first.last+tag@example.org", ".a..b.@c", "!#$%&'*+/=?^_`{|}~-@x", "a@1-2.3"];
        for ok in ok.into_iter().chain([longest_label.as_str()]) {
            assert!(email_address("email", ok).is_ok(), "{ok}");
        }
        let too_long_label = format!("a@{}.org", "b".repeat(64));
        let shape = ["", "a", "a@", "@b.co", "a@@b.co", "a@b@c", "a@[1.2.3.4]", "\"a\"@b.co"];
        let spaces = ["a b@c.de", " a@b.co", "a@b.co ", "a@b.co\n"];
        let labels = ["a@.b", "a@b.", "a@b..co", "a@-b.co", "a@b-.co", "a@b_c.co", &too_long_label];
        let non_ascii = ["é@b.co", "a@bü.de"];
        for bad in shape.into_iter().chain(spaces).chain(labels).chain(non_ascii) {
            refuses(email_address("email", bad), "email");
        }
    }

    #[test]
    fn emails_have_at_most_254_bytes() {
        let longest = format!("{}@example.org", "a".repeat(MAX_EMAIL - "@example.org".len()));
        assert!(email_address("email", &longest).is_ok());
        refuses(email_address("email", &format!("a{longest}")), "email");
    }

    #[test]
    fn names_are_checked_untrimmed_for_length_controls_and_blankness() {
        assert!(display_name(" Åsa 🌸 ").is_ok());
        assert!(display_name(&"x".repeat(MAX_NAME)).is_ok());
        refuses(display_name(&format!(" {}", "x".repeat(MAX_NAME))), "name");
        for bad in ["", " ", "\u{a0}\u{3000}", "a\tb", "a\u{85}"] {
            refuses(display_name(bad), "name");
        }
    }

    #[test]
    fn names_may_not_reorder_text_or_show_nothing() {
        // joiners and selectors inside a visible name are fine (emoji sequences need them)
        for ok in ["👩\u{200d}💻 Ada", "❤\u{fe0f}", "عائشة", "שלום Ada", "a\u{200b}b", "\u{2800}a"] {
            assert!(display_name(ok).is_ok(), "{ok:?}");
        }
        for bidi in [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2069}', '\u{200e}', '\u{200f}',
            '\u{61c}',
        ] {
            let status = display_name(&format!("Ada{bidi}txt.exe")).unwrap_err();
            assert!(status.message().contains("bidirectional"), "{bidi:?}: {}", status.message());
            refuses(display_name(&format!("Ada{bidi}txt.exe")), "name");
        }
        let invisible = [
            "\u{200b}",
            "\u{200b}\u{200c}\u{200d}",
            "\u{2060}",
            "\u{feff}",
            "\u{ad}",
            "\u{3164}",
            "\u{115f}",
            "\u{2800}",
            " \u{200b} ",
            "\u{fe0f}",
        ];
        for bad in invisible {
            let status = display_name(bad).unwrap_err();
            assert!(status.message().contains("invisible"), "{bad:?}: {}", status.message());
            refuses(display_name(bad), "name");
        }
        assert!(create_user(&pb::CreateUserRequest { name: "\u{202e}nimda".into(), ..new_user() }).is_err());
        refuses(update_me(&pb::UpdateMeRequest { name: "\u{200b}".into(), ..Default::default() }), "name");
    }

    #[test]
    fn usernames_are_checked_for_shape() {
        assert!(username("ada_99").is_ok());
        for bad in ["ab", "9lives", "with space", "émile", "ａｄａ", "adа", &"a".repeat(33)] {
            refuses(username(bad), "username");
        }
    }

    #[test]
    fn usernames_are_stored_and_looked_up_in_lower_case() {
        let valid = create_user(&pb::CreateUserRequest { username: "Ada_Lovelace".into(), ..new_user() }).unwrap();
        assert_eq!(valid.username.as_deref(), Some("ada_lovelace"));
        let update = update_me(&pb::UpdateMeRequest { username: "ADA".into(), ..Default::default() }).unwrap();
        assert_eq!(update.username, Some(Some("ada".into())));
        let names = pb::ResolveUsernamesRequest { usernames: vec!["@Ada".into(), "ａｄａ".into(), "ADA_99".into()] };
        assert_eq!(resolve_usernames(&names).unwrap().keys, ["ada", "ada", "ada_99"]);
    }

    #[test]
    fn create_user_keeps_the_email_trims_the_name_and_refuses_field_by_field() {
        let valid = create_user(&new_user()).unwrap();
        assert_eq!(
            (valid.email.as_str(), valid.name.as_str(), valid.username.as_deref()),
            ("Ada@Example.org", "Ada", None)
        );
        assert!(!format!("{valid:?}").contains("horse"), "the password is not printed");
        refuses(create_user(&pb::CreateUserRequest { email: " Ada@Example.org".into(), ..new_user() }), "email");
        refuses(create_user(&pb::CreateUserRequest { password: "short".into(), ..new_user() }), "password");
        refuses(create_user(&pb::CreateUserRequest { name: "  ".into(), ..new_user() }), "name");
        refuses(create_user(&pb::CreateUserRequest { name: "a\u{7}".into(), ..new_user() }), "name");
        refuses(create_user(&pb::CreateUserRequest { username: "9lives".into(), ..new_user() }), "username");
        // the email is checked first
        refuses(
            create_user(&pb::CreateUserRequest { email: "nope".into(), password: String::new(), ..new_user() }),
            "email",
        );
    }

    #[test]
    fn login_needs_both_fields_and_flags_overlong_passwords() {
        let request = |email: &str, password: &str| pb::LoginRequest {
            email: email.into(),
            password: password.into(),
            ..Default::default()
        };
        refuses(login(&request("", "x")), "email");
        refuses(login(&request("a@b.co", "")), "password");
        let valid = login(&request("A@B.co", "x")).unwrap();
        assert_eq!(valid.email_key, "a@b.co");
        let untrimmed = login(&request(" A@B.co", "x")).unwrap();
        assert_eq!(untrimmed.email_key, " a@b.co", "matched as typed, so it finds no account");
        assert!(valid.password_can_match);
        assert!(!valid.restore);
        assert!(!login(&request("a@b.co", &"x".repeat(MAX_PASSWORD + 1))).unwrap().password_can_match);
    }

    #[test]
    fn login_passes_restore_on() {
        let restoring = pb::LoginRequest { email: "a@b.co".into(), password: "correct horse".into(), restore: true };
        let valid = login(&restoring).unwrap();
        assert!(valid.restore);
        assert!(!format!("{valid:?}").contains("horse"), "the password is not printed");
    }

    #[test]
    fn refresh_tokens_are_required_and_split_at_the_first_dot() {
        refuses(refresh_token(&pb::RefreshTokenRequest::default()), "refresh_token");
        let valid = refresh_token(&pb::RefreshTokenRequest { refresh_token: "sid.s3.kr1t".into() }).unwrap();
        assert_eq!(valid.session_and_secret, Some(("sid".to_owned(), "s3.kr1t".to_owned())));
        assert!(!format!("{valid:?}").contains("kr1t"), "the secret is not printed");
        let no_dot = refresh_token(&pb::RefreshTokenRequest { refresh_token: "nodot".into() }).unwrap();
        assert_eq!(no_dot.session_and_secret, None);
    }

    #[test]
    fn get_user_needs_a_valid_id() {
        refuses(get_user(&pb::GetUserRequest::default()), "user_id");
        refuses(get_user(&pb::GetUserRequest { user_id: "0".into() }), "user_id");
        assert_eq!(get_user(&pb::GetUserRequest { user_id: "42".into() }).unwrap().user_id, 42);
    }

    #[test]
    fn update_me_follows_the_mask() {
        let unknown = pb::UpdateMeRequest { update_mask: vec!["email".into()], ..Default::default() };
        refuses(update_me(&unknown), "update_mask");
        let clear = pb::UpdateMeRequest { update_mask: vec!["username".into(), "bio".into()], ..Default::default() };
        let valid = update_me(&clear).unwrap();
        assert_eq!((valid.name, valid.username, valid.bio), (None, Some(None), Some(String::new())));
        let unmasked = pb::UpdateMeRequest { bio: "line\nand\ttab".into(), ..Default::default() };
        assert_eq!(update_me(&unmasked).unwrap().bio.as_deref(), Some("line\nand\ttab"));
        refuses(update_me(&pb::UpdateMeRequest { bio: "bell\u{7}".into(), ..Default::default() }), "bio");
        refuses(update_me(&pb::UpdateMeRequest { avatar_url: "ftp://x".into(), ..Default::default() }), "avatar_url");
        let name = pb::UpdateMeRequest { update_mask: vec!["name".into()], ..Default::default() };
        refuses(update_me(&name), "name");
    }

    #[test]
    fn update_me_checks_every_field_given_even_outside_the_mask() {
        let given = |request: pb::UpdateMeRequest| pb::UpdateMeRequest { update_mask: vec!["bio".into()], ..request };
        refuses(update_me(&given(pb::UpdateMeRequest { name: " ".into(), ..Default::default() })), "name");
        refuses(update_me(&given(pb::UpdateMeRequest { username: "9lives".into(), ..Default::default() })), "username");
        refuses(update_me(&given(pb::UpdateMeRequest { avatar_url: "x".into(), ..Default::default() })), "avatar_url");
        let valid =
            update_me(&given(pb::UpdateMeRequest { name: "Ada".into(), bio: "hi".into(), ..Default::default() }));
        assert_eq!(valid.unwrap(), UpdateMe { name: None, username: None, avatar_url: None, bio: Some("hi".into()) });
    }

    #[test]
    fn batches_are_capped_and_ids_checked() {
        let many = pb::BatchGetUsersRequest { user_ids: vec!["1".into(); MAX_BATCH + 1] };
        refuses(batch_get_users(&many), "user_ids");
        refuses(batch_get_users(&pb::BatchGetUsersRequest { user_ids: vec!["1".into(), "x".into()] }), "user_ids");
        let names = pb::ResolveUsernamesRequest { usernames: vec!["a".into(); MAX_BATCH + 1] };
        refuses(resolve_usernames(&names), "usernames");
        let names = pb::ResolveUsernamesRequest { usernames: vec!["@@Ada".into()] };
        assert_eq!(resolve_usernames(&names).unwrap().keys, ["ada"]);
    }

    #[test]
    fn requests_naming_one_user_need_a_valid_user_id() {
        macro_rules! targets {
            ($($check:ident($request:ident)),* $(,)?) => {$(
                let valid = $check(&pb::$request { user_id: "42".into() });
                assert_eq!(valid.unwrap(), UserTarget { user_id: 42 }, stringify!($check));
                refuses($check(&pb::$request::default()), "user_id");
                refuses($check(&pb::$request { user_id: "042".into() }), "user_id");
            )*};
        }
        targets!(
            follow_user(FollowUserRequest),
            unfollow_user(UnfollowUserRequest),
            block_user(BlockUserRequest),
            unblock_user(UnblockUserRequest),
            send_friend_request(SendFriendRequestRequest),
            accept_friend_request(AcceptFriendRequestRequest),
            decline_friend_request(DeclineFriendRequestRequest),
            cancel_friend_request(CancelFriendRequestRequest),
            remove_friend(RemoveFriendRequest),
            get_account(GetAccountRequest),
            unsuspend_account(UnsuspendAccountRequest),
            delete_account(DeleteAccountRequest),
            list_blocked_user_ids(ListBlockedUserIdsRequest),
        );
    }

    #[test]
    fn check_block_names_the_id_it_refuses() {
        let request = |user_id: &str, other_user_id: &str| pb::CheckBlockRequest {
            user_id: user_id.into(),
            other_user_id: other_user_id.into(),
        };
        assert_eq!(check_block(&request("1", "2")).unwrap(), CheckBlock { user_id: 1, other_user_id: 2 });
        refuses(check_block(&request("", "2")), "user_id");
        refuses(check_block(&request("1", "x")), "other_user_id");
    }

    #[test]
    fn set_role_matches_the_email_in_lower_case_and_needs_a_known_role() {
        let request = |email: &str, role: pb::UserRole| pb::SetRoleRequest { email: email.into(), role: role.into() };
        let valid = set_role(&request("Ada@Example.org", pb::UserRole::Admin)).unwrap();
        assert_eq!(valid, SetRole { email_key: "ada@example.org".into(), admin: true });
        assert!(!set_role(&request("not an address", pb::UserRole::User)).unwrap().admin);
        assert!(set_role(&request(&"é".repeat(MAX_EMAIL / 2), pb::UserRole::Admin)).is_ok());
        refuses(set_role(&request("", pb::UserRole::Admin)), "email");
        refuses(set_role(&request(&format!("a{}", "é".repeat(MAX_EMAIL / 2)), pb::UserRole::Admin)), "email");
        refuses(set_role(&request("ada@example.org", pb::UserRole::Unspecified)), "role");
        refuses(set_role(&pb::SetRoleRequest { email: "ada@example.org".into(), role: 3 }), "role");
    }

    #[test]
    fn user_lists_check_the_user_then_clamp_the_page_and_decode_the_token() {
        let followers = |user_id: &str, page_size, page_token: &str| pb::ListFollowersRequest {
            user_id: user_id.into(),
            page_size,
            page_token: page_token.into(),
        };
        let first = list_followers(&followers("7", 0, "")).unwrap();
        assert_eq!(first, UserPage { user_id: 7, page_size: DEFAULT_PAGE, before: None });
        let next = list_followers(&followers("7", 1000, &crate::page::encode_token(99))).unwrap();
        assert_eq!(next, UserPage { user_id: 7, page_size: MAX_PAGE, before: Some(99) });
        refuses(list_followers(&followers("", 10, "")), "user_id");
        refuses(list_followers(&followers("7", 10, "99")), "page_token");
        let following = pb::ListFollowingRequest { user_id: "7".into(), page_size: 5, page_token: String::new() };
        assert_eq!(list_following(&following).unwrap(), UserPage { user_id: 7, page_size: 5, before: None });
        refuses(list_following(&pb::ListFollowingRequest { user_id: "0".into(), ..following }), "user_id");
    }

    #[test]
    fn the_callers_lists_clamp_the_page_and_refuse_foreign_tokens() {
        let blocked = pb::ListBlockedUsersRequest { page_size: -1, page_token: crate::page::encode_token(5) };
        assert_eq!(list_blocked_users(&blocked).unwrap(), Page { page_size: DEFAULT_PAGE, before: Some(5) });
        refuses(list_blocked_users(&pb::ListBlockedUsersRequest { page_token: "x".into(), ..blocked }), "page_token");
        let friends = pb::ListFriendsRequest { page_size: 3, page_token: String::new() };
        assert_eq!(list_friends(&friends).unwrap(), Page { page_size: 3, before: None });
        refuses(list_friends(&pb::ListFriendsRequest { page_token: "x".into(), ..friends }), "page_token");
    }

    #[test]
    fn friend_requests_list_one_direction_or_both() {
        let request = |direction: pb::FriendRequestDirection| pb::ListFriendRequestsRequest {
            direction: direction.into(),
            ..Default::default()
        };
        let both = list_friend_requests(&request(pb::FriendRequestDirection::Unspecified)).unwrap();
        assert_eq!(both, FriendRequestsPage { page: Page { page_size: DEFAULT_PAGE, before: None }, direction: None });
        let incoming = list_friend_requests(&request(pb::FriendRequestDirection::Incoming)).unwrap();
        assert_eq!(incoming.direction, Some(FriendDirection::Incoming));
        let outgoing = list_friend_requests(&request(pb::FriendRequestDirection::Outgoing)).unwrap();
        assert_eq!(outgoing.direction, Some(FriendDirection::Outgoing));
        let unknown = pb::ListFriendRequestsRequest { direction: 3, ..Default::default() };
        refuses(list_friend_requests(&unknown), "direction");
        let garbage = pb::ListFriendRequestsRequest { page_token: "x".into(), ..Default::default() };
        refuses(list_friend_requests(&garbage), "page_token");
    }

    #[test]
    fn search_queries_are_normalised_like_usernames_without_their_at() {
        let search = |query: &str| {
            let valid = search_users(&pb::SearchUsersRequest { query: query.into(), ..Default::default() }).unwrap();
            (valid.query, valid.exact_username)
        };
        assert_eq!(search("@Ada"), ("ada".into(), Some("ada".into())));
        assert_eq!(search("  ＡＤＡ_99 "), ("ada_99".into(), Some("ada_99".into())));
        assert_eq!(search("＠ada"), ("ada".into(), Some("ada".into())));
        assert_eq!(search("@@ Ada Love"), ("ada love".into(), None));
        assert_eq!(search("Émile"), ("émile".into(), None));
        assert_eq!(search("ad"), ("ad".into(), None), "too short for a username, still a prefix");
        assert_eq!(search("@"), ("@".into(), None), "only @s are kept, not searched as nothing");
    }

    #[test]
    fn search_queries_are_required_short_one_line_and_not_blank() {
        let search = |query: &str| search_users(&pb::SearchUsersRequest { query: query.into(), ..Default::default() });
        assert!(search(&"é".repeat(MAX_QUERY)).is_ok());
        for bad in ["", " ", "\u{3000}\u{a0}", "ada\n", "a\u{85}", &"a".repeat(MAX_QUERY + 1)] {
            refuses(search(bad), "query");
        }
    }

    #[test]
    fn search_pages_are_offsets() {
        let request =
            |page_size, page_token: String| pb::SearchUsersRequest { query: "ada".into(), page_size, page_token };
        let first = search_users(&request(0, String::new())).unwrap();
        assert_eq!((first.page_size, first.offset), (DEFAULT_PAGE, 0));
        let third = search_users(&request(500, crate::page::encode_token(200))).unwrap();
        assert_eq!((third.page_size, third.offset), (MAX_PAGE, 200));
        refuses(search_users(&request(0, "200".into())), "page_token");
    }

    fn user_report() -> pb::CreateReportRequest {
        pb::CreateReportRequest {
            user_id: "2".into(),
            category: pb::ReportCategory::Spam.into(),
            text: "Sends the same link\nto everyone.\t(twice a minute)".into(),
            ..Default::default()
        }
    }

    #[test]
    fn reports_name_a_user_a_chat_or_both() {
        let valid = create_report(&user_report()).unwrap();
        assert_eq!(
            valid,
            CreateReport {
                user_id: Some(2),
                chat: None,
                category: ReportCategoryKind::Spam,
                text: "Sends the same link\nto everyone.\t(twice a minute)".into(),
            }
        );
        let chat = pb::CreateReportRequest {
            user_id: String::new(),
            chat_id: "5".into(),
            channel_id: "3".into(),
            category: pb::ReportCategory::Harassment.into(),
            text: String::new(),
        };
        let valid = create_report(&chat).unwrap();
        assert_eq!((valid.user_id, valid.chat, valid.category), (None, Some((5, 3)), ReportCategoryKind::Harassment));
        let both = create_report(&pb::CreateReportRequest { user_id: "2".into(), ..chat.clone() }).unwrap();
        assert_eq!((both.user_id, both.chat), (Some(2), Some((5, 3))));

        let neither = pb::CreateReportRequest { user_id: String::new(), ..user_report() };
        refuses(create_report(&neither), "user_id");
        refuses(create_report(&pb::CreateReportRequest { channel_id: String::new(), ..chat.clone() }), "channel_id");
        refuses(create_report(&pb::CreateReportRequest { chat_id: String::new(), ..chat }), "chat_id");
    }

    #[test]
    fn reports_refuse_field_by_field() {
        refuses(create_report(&pb::CreateReportRequest { user_id: "0".into(), ..user_report() }), "user_id");
        refuses(create_report(&pb::CreateReportRequest { chat_id: "x".into(), ..user_report() }), "chat_id");
        refuses(create_report(&pb::CreateReportRequest { channel_id: "01".into(), ..user_report() }), "channel_id");
        refuses(create_report(&pb::CreateReportRequest { category: 0, ..user_report() }), "category");
        refuses(create_report(&pb::CreateReportRequest { category: 99, ..user_report() }), "category");
        refuses(create_report(&pb::CreateReportRequest { text: "a\r\nb".into(), ..user_report() }), "text");
        let long = "é".repeat(MAX_REPORT_TEXT + 1);
        refuses(create_report(&pb::CreateReportRequest { text: long, ..user_report() }), "text");
        let longest = "é".repeat(MAX_REPORT_TEXT);
        assert!(create_report(&pb::CreateReportRequest { text: longest, ..user_report() }).is_ok());
    }

    #[test]
    fn change_email_needs_the_password_and_a_valid_address() {
        let request = |current_password: &str, new_email: &str| pb::ChangeEmailRequest {
            current_password: current_password.into(),
            new_email: new_email.into(),
        };
        let valid = change_email(&request("correct horse", "Ada@Example.org")).unwrap();
        assert_eq!(valid.new_email, "Ada@Example.org");
        assert_eq!(valid.current_password, "correct horse");
        assert!(!format!("{valid:?}").contains("horse"), "the password is not printed");
        refuses(change_email(&request("", "ada@example.org")), "current_password");
        for bad in ["", "nope", " ada@example.org", &format!("{}@example.org", "a".repeat(MAX_EMAIL))] {
            refuses(change_email(&request("correct horse", bad)), "new_email");
        }
    }

    #[test]
    fn change_password_needs_the_current_one_and_a_new_one_of_8_to_128_characters() {
        let request = |current_password: &str, new_password: &str| pb::ChangePasswordRequest {
            current_password: current_password.into(),
            new_password: new_password.into(),
        };
        let valid = change_password(&request("correct horse", "battery staple")).unwrap();
        assert_eq!(valid.new_password, "battery staple");
        let shown = format!("{valid:?}");
        assert!(!shown.contains("horse") && !shown.contains("staple"), "no password is printed: {shown}");
        assert!(change_password(&request("x", &"é".repeat(MIN_PASSWORD))).is_ok());
        assert!(change_password(&request("x", &"é".repeat(MAX_PASSWORD))).is_ok());
        refuses(change_password(&request("", "battery staple")), "current_password");
        refuses(change_password(&request("x", &"é".repeat(MIN_PASSWORD - 1))), "new_password");
        refuses(change_password(&request("x", &"é".repeat(MAX_PASSWORD + 1))), "new_password");
    }

    #[test]
    fn delete_me_needs_the_password() {
        let valid = delete_me(&pb::DeleteMeRequest { current_password: "correct horse".into() }).unwrap();
        assert_eq!(valid.current_password, "correct horse");
        assert!(!format!("{valid:?}").contains("horse"), "the password is not printed");
        refuses(delete_me(&pb::DeleteMeRequest::default()), "current_password");
    }

    #[test]
    fn report_lists_default_to_open_reports_of_anyone() {
        let open = list_reports(&pb::ListReportsRequest::default()).unwrap();
        assert_eq!(
            open,
            ListReports { page: Page { page_size: DEFAULT_PAGE, before: None }, resolved: false, target_user_id: None }
        );
        let request = pb::ListReportsRequest {
            page_size: 10,
            page_token: crate::page::encode_token(9),
            status: pb::ReportStatus::Resolved.into(),
            target_user_id: "4".into(),
        };
        let resolved = list_reports(&request).unwrap();
        assert_eq!(
            resolved,
            ListReports { page: Page { page_size: 10, before: Some(9) }, resolved: true, target_user_id: Some(4) }
        );
        let explicit_open = pb::ListReportsRequest { status: pb::ReportStatus::Open.into(), ..request.clone() };
        assert!(!list_reports(&explicit_open).unwrap().resolved);
        refuses(list_reports(&pb::ListReportsRequest { status: 3, ..request.clone() }), "status");
        refuses(
            list_reports(&pb::ListReportsRequest { target_user_id: "0".into(), ..request.clone() }),
            "target_user_id",
        );
        refuses(list_reports(&pb::ListReportsRequest { page_token: "9".into(), ..request }), "page_token");
    }

    fn suspend_report(suspend_seconds: i64) -> pb::ResolveReportRequest {
        pb::ResolveReportRequest {
            report_id: "7".into(),
            action: pb::ReportAction::SuspendUser.into(),
            suspend_seconds,
        }
    }

    #[test]
    fn resolving_a_report_suspends_for_a_time_or_for_good() {
        let day = resolve_report(&suspend_report(86_400)).unwrap();
        assert_eq!(
            day,
            ResolveReport {
                report_id: 7,
                action: ReportActionKind::SuspendUser,
                suspend_for: Some(Duration::from_secs(86_400))
            }
        );
        assert_eq!(resolve_report(&suspend_report(0)).unwrap().suspend_for, None, "for good");
        let longest = resolve_report(&suspend_report(MAX_SUSPEND_SECONDS)).unwrap();
        assert_eq!(longest.suspend_for, Some(Duration::from_secs(315_360_000)));
        let dismiss = pb::ResolveReportRequest { action: pb::ReportAction::Dismiss.into(), ..suspend_report(60) };
        let dismissed = resolve_report(&dismiss).unwrap();
        assert_eq!((dismissed.action, dismissed.suspend_for), (ReportActionKind::Dismiss, None));
        let retract = pb::ResolveReportRequest { action: pb::ReportAction::RetractChat.into(), ..suspend_report(0) };
        assert_eq!(resolve_report(&retract).unwrap().action, ReportActionKind::RetractChat);
    }

    #[test]
    fn resolving_a_report_refuses_field_by_field() {
        refuses(
            resolve_report(&pb::ResolveReportRequest { report_id: String::new(), ..suspend_report(0) }),
            "report_id",
        );
        refuses(resolve_report(&pb::ResolveReportRequest { action: 0, ..suspend_report(0) }), "action");
        refuses(resolve_report(&pb::ResolveReportRequest { action: 4, ..suspend_report(0) }), "action");
        for seconds in [-1, MAX_SUSPEND_SECONDS + 1, i64::MIN, i64::MAX] {
            refuses(resolve_report(&suspend_report(seconds)), "suspend_seconds");
        }
        let dismiss = pb::ResolveReportRequest { action: pb::ReportAction::Dismiss.into(), ..suspend_report(-1) };
        refuses(resolve_report(&dismiss), "suspend_seconds");
    }

    #[test]
    fn account_lists_filter_by_a_known_state() {
        let request = |state: i32| pb::ListAccountsRequest { state, ..Default::default() };
        let all = list_accounts(&request(0)).unwrap();
        assert_eq!(all, ListAccounts { page: Page { page_size: DEFAULT_PAGE, before: None }, state: None });
        for (state, kind) in [
            (pb::UserState::Active, AccountStateKind::Active),
            (pb::UserState::Suspended, AccountStateKind::Suspended),
            (pb::UserState::Deleted, AccountStateKind::Deleted),
        ] {
            assert_eq!(list_accounts(&request(state.into())).unwrap().state, Some(kind));
        }
        refuses(list_accounts(&request(4)), "state");
        refuses(list_accounts(&pb::ListAccountsRequest { page_token: "x".into(), ..Default::default() }), "page_token");
    }

    #[test]
    fn suspending_an_account_checks_the_user_the_time_and_the_reason() {
        let request = |user_id: &str, suspend_seconds, reason: &str| pb::SuspendAccountRequest {
            user_id: user_id.into(),
            suspend_seconds,
            reason: reason.into(),
        };
        let week = suspend_account(&request("2", 604_800, "Spam, repeatedly.")).unwrap();
        assert_eq!(
            week,
            SuspendAccount {
                user_id: 2,
                suspend_for: Some(Duration::from_secs(604_800)),
                reason: "Spam, repeatedly.".into()
            }
        );
        let for_good = suspend_account(&request("2", 0, "")).unwrap();
        assert_eq!((for_good.suspend_for, for_good.reason.as_str()), (None, ""));
        assert!(suspend_account(&request("2", 0, &"é".repeat(MAX_REASON))).is_ok());
        refuses(suspend_account(&request("", 0, "")), "user_id");
        refuses(suspend_account(&request("2", -5, "")), "suspend_seconds");
        refuses(suspend_account(&request("2", MAX_SUSPEND_SECONDS + 1, "")), "suspend_seconds");
        refuses(suspend_account(&request("2", 0, "two\nlines")), "reason");
        refuses(suspend_account(&request("2", 0, &"é".repeat(MAX_REASON + 1))), "reason");
    }
}
