//! Validation of the social graph's requests: follows, blocks, friends, user search, and the
//! internal block checks and role changes.

use super::*;

/// Largest (and default) page of the internal `ListFollowerIds`: one fan-out step's followers.
pub const MAX_ID_PAGE: usize = 1000;

/// A valid request naming one user and nothing else: FollowUser, UnfollowUser, BlockUser,
/// UnblockUser, SendFriendRequest and its Accept, Decline and Cancel, RemoveFriend, the admins'
/// GetAccount, UnsuspendAccount and DeleteAccount, and the internal ListBlockedUserIds and
/// ListFollowingIds.
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

/// Checks a `ListFollowingIdsRequest`: the user id is required.
pub fn list_following_ids(request: &pb::ListFollowingIdsRequest) -> Result<UserTarget, Status> {
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
pub(super) fn page(page_size: i32, page_token: &str) -> Result<Page, Status> {
    Ok(Page {
        page_size: crate::page::page_size(page_size, DEFAULT_PAGE, MAX_PAGE),
        before: crate::page::decode_token(page_token)?,
    })
}

/// A valid `ListFollowersRequest`, `ListFollowingRequest` or (internal) `ListFollowerIdsRequest`:
/// one page of one user's list.
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

/// Checks a `ListFollowerIdsRequest` (internal): the user id, then the page, of up to
/// [`MAX_ID_PAGE`] ids (the default too).
pub fn list_follower_ids(request: &pb::ListFollowerIdsRequest) -> Result<UserPage, Status> {
    let user_id = validate::id("user_id", &request.user_id)?;
    let page_size = crate::page::page_size(request.page_size, MAX_ID_PAGE, MAX_ID_PAGE);
    Ok(UserPage { user_id, page_size, before: crate::page::decode_token(&request.page_token)? })
}

/// Checks a `ListBlockedUsersRequest`: the page.
pub fn list_blocked_users(request: &pb::ListBlockedUsersRequest) -> Result<Page, Status> {
    page(request.page_size, &request.page_token)
}

/// A valid `ListRecommendationsRequest`: a page of the list by position (scores move between
/// pages, so a position is as good a cursor as any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecommendationsPage {
    /// As [`Page::page_size`].
    pub page_size: usize,
    /// Entries before this page.
    pub offset: u64,
}

/// Checks a `ListRecommendationsRequest`: the page size, clamped, then the page token.
pub fn list_recommendations(request: &pb::ListRecommendationsRequest) -> Result<RecommendationsPage, Status> {
    let page_size = crate::page::page_size(request.page_size, DEFAULT_PAGE, MAX_PAGE);
    let offset = crate::page::decode_token(&request.page_token)?.unwrap_or(0);
    Ok(RecommendationsPage { page_size, offset })
}

/// Most users one `RecordInteractions` names.
pub const MAX_INTERACTIONS: usize = 100;

/// A valid (internal) `RecordInteractionsRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordInteractions {
    pub user_id: u64,
    /// As named, repeats kept (each counts).
    pub other_user_ids: Vec<u64>,
}

/// Checks a `RecordInteractionsRequest`: the user, then 1 to 100 other users' ids.
pub fn record_interactions(request: &pb::RecordInteractionsRequest) -> Result<RecordInteractions, Status> {
    let user_id = validate::id("user_id", &request.user_id)?;
    if request.other_user_ids.is_empty() {
        return Err(invalid_field("other_user_ids", "is required"));
    }
    if request.other_user_ids.len() > MAX_INTERACTIONS {
        return Err(invalid_field("other_user_ids", format!("at most {MAX_INTERACTIONS} ids")));
    }
    let other_user_ids =
        request.other_user_ids.iter().map(|raw| validate::id("other_user_ids", raw)).collect::<Result<_, _>>()?;
    Ok(RecordInteractions { user_id, other_user_ids })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::refuses;

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
            list_following_ids(ListFollowingIdsRequest),
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
    fn follower_id_pages_hold_up_to_a_thousand_ids_by_default() {
        let request = |user_id: &str, page_size, page_token: &str| pb::ListFollowerIdsRequest {
            user_id: user_id.into(),
            page_size,
            page_token: page_token.into(),
        };
        let first = list_follower_ids(&request("7", 0, "")).unwrap();
        assert_eq!(first, UserPage { user_id: 7, page_size: MAX_ID_PAGE, before: None });
        let next = list_follower_ids(&request("7", 5000, &crate::page::encode_token(99))).unwrap();
        assert_eq!(next, UserPage { user_id: 7, page_size: MAX_ID_PAGE, before: Some(99) });
        assert_eq!(list_follower_ids(&request("7", 3, "")).unwrap().page_size, 3);
        assert_eq!(list_follower_ids(&request("7", -1, "")).unwrap().page_size, MAX_ID_PAGE);
        refuses(list_follower_ids(&request("", 10, "")), "user_id");
        refuses(list_follower_ids(&request("x", 10, "x")), "user_id");
        refuses(list_follower_ids(&request("7", 10, "99")), "page_token");
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

    #[test]
    fn recommendations_page_by_position_and_interactions_name_one_to_a_hundred_users() {
        let first = list_recommendations(&pb::ListRecommendationsRequest::default()).unwrap();
        assert_eq!((first.page_size, first.offset), (DEFAULT_PAGE, 0));
        let next = pb::ListRecommendationsRequest { page_size: 5, page_token: crate::page::encode_token(10) };
        assert_eq!(list_recommendations(&next).unwrap(), RecommendationsPage { page_size: 5, offset: 10 });
        let garbage = pb::ListRecommendationsRequest { page_token: "x".into(), ..Default::default() };
        refuses(list_recommendations(&garbage), "page_token");

        let request = |user: &str, others: Vec<&str>| pb::RecordInteractionsRequest {
            user_id: user.into(),
            other_user_ids: others.into_iter().map(String::from).collect(),
        };
        let valid = record_interactions(&request("1", vec!["2", "2", "3"])).unwrap();
        assert_eq!((valid.user_id, valid.other_user_ids), (1, vec![2, 2, 3]));
        refuses(record_interactions(&request("", vec!["2"])), "user_id");
        refuses(record_interactions(&request("1", vec![])), "other_user_ids");
        refuses(record_interactions(&request("1", vec!["0"])), "other_user_ids");
        refuses(record_interactions(&request("1", vec!["2"; 101])), "other_user_ids");
    }
}
