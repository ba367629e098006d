//! Validation of every user-service request: each function checks one request type, names the
//! field it refuses, and returns the values the handler works with.

use std::fmt;

use chatmesh_api::user::v1 as pb;
use tonic::Status;

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

/// A valid `CreateUserRequest`.
#[derive(Clone, PartialEq, Eq)]
pub struct CreateUser {
    /// As typed, trimmed.
    pub email: String,
    /// As typed (not trimmed).
    pub password: String,
    /// Display name, trimmed.
    pub name: String,
    /// `None` when the request gave none.
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
    let email = request.email.trim();
    email_address(email)?;
    password(&request.password)?;
    display_name(&request.name)?;
    let username = (!request.username.is_empty()).then(|| request.username.clone());
    if let Some(username) = &username {
        self::username(username)?;
    }
    Ok(CreateUser {
        email: email.to_owned(),
        password: request.password.clone(),
        name: request.name.trim().to_owned(),
        username,
    })
}

/// A valid `LoginRequest`.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The email trimmed and lowercased: the key accounts and login throttling go by.
    pub email_key: String,
    /// As typed.
    pub password: String,
    /// False when the password is longer than any account's can be ([`MAX_PASSWORD`]).
    // why: such a login is refused as bad credentials (the handler's answer, UNAUTHENTICATED, not a
    // field error), without paying for a hash; the rule lives here so the fuzz targets see it.
    pub password_can_match: bool,
}

// why: a manual Debug so a logged or asserted request never prints the password.
impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("email_key", &self.email_key)
            .field("password", &"<redacted>")
            .field("password_can_match", &self.password_can_match)
            .finish()
    }
}

/// Checks a `LoginRequest`: both fields are required; nothing else is revealed about their shape.
pub fn login(request: &pb::LoginRequest) -> Result<Login, Status> {
    let email = request.email.trim();
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
    /// The new username; `Some(None)` removes it.
    pub username: Option<Option<String>>,
    /// The new avatar URL; empty removes it.
    pub avatar_url: Option<String>,
    /// The new bio, as given (newlines and tabs kept); empty removes it.
    pub bio: Option<String>,
}

/// Checks an `UpdateMeRequest`: the mask names only known fields, then each field to change
/// (name, username, avatar_url, bio). With an empty mask the non-empty fields change.
pub fn update_me(request: &pb::UpdateMeRequest) -> Result<UpdateMe, Status> {
    for field in &request.update_mask {
        if !UPDATE_MASK_FIELDS.contains(&field.as_str()) {
            return Err(invalid_field("update_mask", format!("unknown field {field:?}")));
        }
    }
    let masked = |field: &str, value: &str| {
        if request.update_mask.is_empty() { !value.is_empty() } else { request.update_mask.iter().any(|f| f == field) }
    };
    let mut valid = UpdateMe { name: None, username: None, avatar_url: None, bio: None };
    if masked("name", &request.name) {
        display_name(&request.name)?;
        valid.name = Some(request.name.trim().to_owned());
    }
    if masked("username", &request.username) {
        if request.username.is_empty() {
            valid.username = Some(None);
        } else {
            username(&request.username)?;
            valid.username = Some(Some(request.username.clone()));
        }
    }
    if masked("avatar_url", &request.avatar_url) {
        url("avatar_url", &request.avatar_url)?;
        valid.avatar_url = Some(request.avatar_url.clone());
    }
    if masked("bio", &request.bio) {
        if !request.bio.is_empty() {
            // why: a bio may have lines and tabs; every other control character is refused.
            validate::text("bio", &request.bio.replace(['\n', '\t'], " "), 1, MAX_BIO)?;
        }
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
    /// The names without leading `@`, lowercased: the keys usernames are unique on.
    pub keys: Vec<String>,
}

/// Checks a `ResolveUsernamesRequest`: at most [`MAX_BATCH`] names (a malformed one just matches nobody).
pub fn resolve_usernames(request: &pb::ResolveUsernamesRequest) -> Result<ResolveUsernames, Status> {
    if request.usernames.len() > MAX_BATCH {
        return Err(invalid_field("usernames", format!("at most {MAX_BATCH} names")));
    }
    let keys = request.usernames.iter().map(|name| name.trim_start_matches('@').to_lowercase()).collect();
    Ok(ResolveUsernames { keys })
}

fn email_address(email: &str) -> Result<(), Status> {
    if email.is_empty() {
        return Err(invalid_field("email", "is required"));
    }
    if email.len() > MAX_EMAIL {
        return Err(invalid_field("email", format!("must have at most {MAX_EMAIL} characters")));
    }
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    if valid { Ok(()) } else { Err(invalid_field("email", "is not a valid email address")) }
}

fn password(password: &str) -> Result<(), Status> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(invalid_field("password", format!("must have at least {MIN_PASSWORD} characters")));
    }
    if n > MAX_PASSWORD {
        return Err(invalid_field("password", format!("must have at most {MAX_PASSWORD} characters")));
    }
    Ok(())
}

fn display_name(name: &str) -> Result<(), Status> {
    if name.trim().is_empty() {
        return Err(invalid_field("name", "is required"));
    }
    validate::text("name", name, 1, MAX_NAME)
}

/// 3 to 32 of a-z, 0-9 and _, starting with a letter (any letter case).
fn username(username: &str) -> Result<(), Status> {
    let ok = (3..=32).contains(&username.len())
        && username.starts_with(|c: char| c.is_ascii_alphabetic())
        && username.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid_field("username", "must be 3 to 32 letters, digits or _, starting with a letter"))
    }
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
            email: " Ada@Example.org ".into(),
            password: "correct horse".into(),
            name: " Ada ".into(),
            username: String::new(),
        }
    }

    #[test]
    fn emails_are_checked_for_shape() {
        for ok in ["a@b.co", "first.last+tag@example.org"] {
            assert!(email_address(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "a@", "@b.co", "a@b", "a b@c.de", "a@@b.co", "a@.b", "a@b."] {
            refuses(email_address(bad), "email");
        }
        refuses(email_address(&format!("{}@example.org", "a".repeat(MAX_EMAIL))), "email");
    }

    #[test]
    fn usernames_are_checked_for_shape() {
        assert!(username("ada_99").is_ok());
        for bad in ["ab", "9lives", "with space", "émile", &"a".repeat(33)] {
            refuses(username(bad), "username");
        }
    }

    #[test]
    fn create_user_trims_and_refuses_field_by_field() {
        let valid = create_user(&new_user()).unwrap();
        assert_eq!(
            (valid.email.as_str(), valid.name.as_str(), valid.username.as_deref()),
            ("Ada@Example.org", "Ada", None)
        );
        assert!(!format!("{valid:?}").contains("horse"), "the password is not printed");
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
        refuses(login(&pb::LoginRequest { email: " ".into(), password: "x".into() }), "email");
        refuses(login(&pb::LoginRequest { email: "a@b.co".into(), password: String::new() }), "password");
        let valid = login(&pb::LoginRequest { email: " A@B.co ".into(), password: "x".into() }).unwrap();
        assert_eq!(valid.email_key, "a@b.co");
        assert!(valid.password_can_match);
        let long = pb::LoginRequest { email: "a@b.co".into(), password: "x".repeat(MAX_PASSWORD + 1) };
        assert!(!login(&long).unwrap().password_can_match);
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
    fn batches_are_capped_and_ids_checked() {
        let many = pb::BatchGetUsersRequest { user_ids: vec!["1".into(); MAX_BATCH + 1] };
        refuses(batch_get_users(&many), "user_ids");
        refuses(batch_get_users(&pb::BatchGetUsersRequest { user_ids: vec!["1".into(), "x".into()] }), "user_ids");
        let names = pb::ResolveUsernamesRequest { usernames: vec!["a".into(); MAX_BATCH + 1] };
        refuses(resolve_usernames(&names), "usernames");
        let names = pb::ResolveUsernamesRequest { usernames: vec!["@@Ada".into()] };
        assert_eq!(resolve_usernames(&names).unwrap().keys, ["ada"]);
    }
}
