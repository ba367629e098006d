//! Validation of every user-service request: each function checks one request type, names the
//! field it refuses, and returns the values the handler works with.

use std::{fmt, time::Duration};

use chatmesh_api::user::v1 as pb;
use tonic::Status;
use unicode_normalization::UnicodeNormalization;

use crate::{error::invalid_field, validate};

mod graph;
mod moderation;

pub use self::{graph::*, moderation::*};

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
}
