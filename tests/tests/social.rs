//! The social graph from outside: follows with exact counters, blocks across services, friends
//! over REST, reports and admins, user search, and the account lifecycle.

use std::time::Duration;

use chatmesh_api::{
    channel::v1::{ChannelKind, CreateChannelRequest, GetChannelRequest},
    chat::v1::{CreateChatRequest, ListChatsRequest},
    user::v1::{
        self as pb, CreateUserRequest, user_internal_service_client::UserInternalServiceClient,
        user_service_client::UserServiceClient,
    },
};
use chatmesh_tests::{Rest, TestApp, User, authed, refused, test_config};
use serde_json::{Value, json};
use tonic::{Code, Status, transport::Channel};

/// Only guards against hanging: every wait below ends on the condition it waits for.
const WAIT: Duration = Duration::from_secs(30);

async fn users(app: &TestApp) -> UserServiceClient<Channel> {
    app.users().await
}

async fn follow(app: &TestApp, who: &User, whom: &User) -> Result<pb::Relation, Status> {
    let request = authed(&who.token, pb::FollowUserRequest { user_id: whom.id.clone() });
    Ok(users(app).await.follow_user(request).await?.into_inner().relation.expect("relation"))
}

async fn unfollow(app: &TestApp, who: &User, whom: &User) -> Result<pb::Relation, Status> {
    let request = authed(&who.token, pb::UnfollowUserRequest { user_id: whom.id.clone() });
    Ok(users(app).await.unfollow_user(request).await?.into_inner().relation.expect("relation"))
}

async fn profile(app: &TestApp, viewer: &User, of: &User) -> pb::GetUserResponse {
    let request = authed(&viewer.token, pb::GetUserRequest { user_id: of.id.clone() });
    users(app).await.get_user(request).await.expect("get user").into_inner()
}

/// Every page of a user's followers (or followings), and the total the first page states.
async fn all_follows(app: &TestApp, viewer: &User, of: &User, followers: bool) -> (Vec<String>, i64) {
    let (mut ids, mut token, mut total) = (Vec::new(), String::new(), -1);
    loop {
        let (page, next, stated) = if followers {
            let request = pb::ListFollowersRequest { user_id: of.id.clone(), page_size: 7, page_token: token };
            let r = users(app).await.list_followers(authed(&viewer.token, request)).await.unwrap().into_inner();
            (r.users, r.next_page_token, r.total_size)
        } else {
            let request = pb::ListFollowingRequest { user_id: of.id.clone(), page_size: 7, page_token: token };
            let r = users(app).await.list_following(authed(&viewer.token, request)).await.unwrap().into_inner();
            (r.users, r.next_page_token, r.total_size)
        };
        if total < 0 {
            total = stated;
        }
        ids.extend(page.into_iter().map(|u| u.user_id));
        if next.is_empty() {
            return (ids, total);
        }
        token = next;
    }
}

async fn block(app: &TestApp, who: &User, whom: &User) {
    let request = authed(&who.token, pb::BlockUserRequest { user_id: whom.id.clone() });
    users(app).await.block_user(request).await.expect("block");
}

async fn signup(app: &TestApp, email: &str, username: &str, name: &str) -> Result<String, Status> {
    let request = CreateUserRequest {
        email: email.into(),
        password: "correct horse battery".into(),
        name: name.into(),
        username: username.into(),
    };
    Ok(users(app).await.create_user(request).await?.into_inner().user.expect("user").user_id)
}

async fn sign_in(app: &TestApp, email: &str, restore: bool) -> Result<pb::LoginResponse, Status> {
    let request = pb::LoginRequest { email: email.into(), password: "correct horse battery".into(), restore };
    Ok(users(app).await.login(request).await?.into_inner())
}

/// A user with a username, signed in.
async fn person(app: &TestApp, username: &str, name: &str) -> User {
    let email = format!("{username}@example.com");
    let id = signup(app, &email, username, name).await.expect("sign-up");
    let tokens = sign_in(app, &email, false).await.expect("login").tokens.expect("tokens");
    User { id, token: tokens.access_token }
}

#[tokio::test]
async fn two_hundred_concurrent_follow_toggles_end_with_counters_equal_to_the_lists() {
    let app = TestApp::spawn().await;
    let (ada, bob, cy) = (app.user("ada").await, app.user("bob").await, app.user("cy").await);
    let toggles = (0..200).map(|i| {
        let (app, ada, bob, cy) = (&app, &ada, &bob, &cy);
        async move {
            let (who, whom) = if i % 3 == 0 { (cy, bob) } else { (ada, bob) };
            if i % 2 == 0 { follow(app, who, whom).await } else { unfollow(app, who, whom).await }
        }
    });
    for result in futures::future::join_all(toggles).await {
        result.expect("every toggle is answered");
    }
    for of in [&ada, &bob, &cy] {
        let me = profile(&app, &ada, of).await.user.expect("user");
        let (followers, stated) = all_follows(&app, &ada, of, true).await;
        assert_eq!((me.total_followers, stated), (followers.len() as i64, followers.len() as i64));
        let (following, stated) = all_follows(&app, &ada, of, false).await;
        assert_eq!((me.total_following, stated), (following.len() as i64, following.len() as i64));
    }
}

#[tokio::test]
async fn follows_show_in_counters_relations_and_newest_first_lists() {
    let app = TestApp::spawn().await;
    let (ada, bob, cy) = (app.user("ada").await, app.user("bob").await, app.user("cy").await);
    assert!(follow(&app, &ada, &bob).await.unwrap().following);
    follow(&app, &ada, &bob).await.expect("a repeat is answered and changes nothing");
    follow(&app, &cy, &bob).await.unwrap();
    follow(&app, &ada, &cy).await.unwrap();
    follow(&app, &bob, &cy).await.unwrap();
    let seen = profile(&app, &ada, &bob).await;
    let (user, relation) = (seen.user.unwrap(), seen.relation.unwrap());
    assert_eq!((user.total_followers, user.total_following), (2, 1));
    assert!(relation.following && !relation.followed_by && !relation.blocked && !relation.friend);
    assert_eq!(relation.mutual_following_count, 1, "both follow cy");
    let (followers, total) = all_follows(&app, &ada, &bob, true).await;
    assert_eq!((followers, total), (vec![cy.id.clone(), ada.id.clone()], 2), "newest first");
    assert!(profile(&app, &ada, &ada).await.relation.is_none(), "no relation with oneself");
    refused(follow(&app, &ada, &ada).await, Code::PermissionDenied, "SELF_RELATION");
    unfollow(&app, &ada, &bob).await.unwrap();
    assert_eq!(profile(&app, &cy, &bob).await.user.unwrap().total_followers, 1);
}

#[tokio::test]
async fn a_block_ends_follows_and_refuses_every_new_relation_and_direct_message() {
    let app = TestApp::spawn().await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    follow(&app, &ada, &bob).await.unwrap();
    follow(&app, &bob, &ada).await.unwrap();
    // a direct channel opened before the block
    let dm = app
        .create_channel(
            &bob,
            CreateChannelRequest {
                kind: ChannelKind::Direct as i32,
                member_ids: vec![ada.id.clone()],
                ..Default::default()
            },
        )
        .await;
    block(&app, &ada, &bob).await;
    let seen = profile(&app, &ada, &bob).await;
    assert_eq!(seen.user.as_ref().unwrap().total_followers, 0, "follows ended both ways");
    assert!(seen.relation.unwrap().blocked);
    assert!(profile(&app, &bob, &ada).await.relation.unwrap().blocked_by);

    refused(follow(&app, &bob, &ada).await, Code::PermissionDenied, "USER_BLOCKED");
    refused(follow(&app, &ada, &bob).await, Code::FailedPrecondition, "USER_BLOCKED_BY_YOU");
    let ask = authed(&bob.token, pb::SendFriendRequestRequest { user_id: ada.id.clone() });
    refused(users(&app).await.send_friend_request(ask).await, Code::PermissionDenied, "USER_BLOCKED");
    let open = CreateChannelRequest {
        kind: ChannelKind::Direct as i32,
        member_ids: vec![ada.id.clone()],
        ..Default::default()
    };
    refused(
        app.channels().await.create_channel(authed(&bob.token, open)).await,
        Code::PermissionDenied,
        "USER_BLOCKED",
    );
    let send = CreateChatRequest { channel_id: dm.clone(), text: "hello?".into(), ..Default::default() };
    refused(app.chats().await.create_chat(authed(&bob.token, send)).await, Code::PermissionDenied, "USER_BLOCKED");
    // nothing changed
    assert_eq!(profile(&app, &bob, &ada).await.user.unwrap().total_followers, 0);
    let history = ListChatsRequest { channel_id: dm.clone(), ..Default::default() };
    let chats = app.chats().await.list_chats(authed(&ada.token, history)).await.unwrap().into_inner().chats;
    assert!(chats.iter().all(|c| c.text != "hello?"), "the refused chat was not stored");
    let requests = authed(&ada.token, pb::ListFriendRequestsRequest::default());
    assert!(users(&app).await.list_friend_requests(requests).await.unwrap().into_inner().requests.is_empty());

    // lifted: following works again, nothing came back on its own
    let lift = authed(&ada.token, pb::UnblockUserRequest { user_id: bob.id.clone() });
    users(&app).await.unblock_user(lift).await.unwrap();
    assert!(follow(&app, &bob, &ada).await.unwrap().following);
    let send = CreateChatRequest { channel_id: dm, text: "hello again".into(), ..Default::default() };
    app.chats().await.create_chat(authed(&bob.token, send)).await.expect("sending works again");
}

#[tokio::test]
async fn chats_from_a_blocked_sender_in_a_group_are_marked() {
    let app = TestApp::spawn().await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    let group = app.group(&ada, chatmesh_api::channel::v1::ChannelVisibility::Private, &[&bob]).await;
    block(&app, &ada, &bob).await;
    let send =
        CreateChatRequest { channel_id: group.channel_id.clone(), text: "still here".into(), ..Default::default() };
    app.chats().await.create_chat(authed(&bob.token, send)).await.expect("group channels keep working");
    let history = ListChatsRequest { channel_id: group.channel_id.clone(), ..Default::default() };
    let chats = app.chats().await.list_chats(authed(&ada.token, history.clone())).await.unwrap().into_inner().chats;
    let chat = chats.iter().find(|c| c.text == "still here").expect("the chat is listed");
    assert!(chat.sender_blocked, "the reader blocked its sender");
    let chats = app.chats().await.list_chats(authed(&bob.token, history)).await.unwrap().into_inner().chats;
    assert!(chats.iter().all(|c| !c.sender_blocked), "not marked for its sender");
}

#[tokio::test]
async fn friends_over_rest_request_accept_with_a_direct_channel_and_unfriend_keeps_it() {
    let app = TestApp::spawn().await;
    let rest = Rest { app: &app };
    let (ada, bob, cy) = (app.user("ada").await, app.user("bob").await, app.user("cy").await);
    let (status, body) = rest.authed("POST", "/api/v1/me/friend/request", &ada.token, json!({"userId": bob.id})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["relation"]["friendRequestSent"], true, "{body}");
    let (_, incoming) = rest.authed("GET", "/api/v1/me/friends/request", &bob.token, Value::Null).await;
    assert_eq!(incoming["requests"][0]["user"]["userId"], ada.id.as_str(), "{incoming}");
    assert_eq!(incoming["requests"][0]["direction"], "FRIEND_REQUEST_DIRECTION_INCOMING", "{incoming}");
    let (_, outgoing) = rest.authed("GET", "/api/v1/me/friends/request", &ada.token, Value::Null).await;
    assert_eq!(outgoing["requests"][0]["direction"], "FRIEND_REQUEST_DIRECTION_OUTGOING", "{outgoing}");

    // cy cannot accept a request addressed to bob
    let (status, body) = rest.authed("POST", "/api/v1/me/friend/add", &cy.token, json!({"userId": ada.id})).await;
    assert_eq!((status, body["details"][0]["reason"].as_str()), (404, Some("FRIEND_REQUEST_NOT_FOUND")), "{body}");

    let (status, accepted) = rest.authed("POST", "/api/v1/me/friend/add", &bob.token, json!({"userId": ada.id})).await;
    assert_eq!(status, 200, "{accepted}");
    let dm = accepted["friend"]["directChannelId"].as_str().expect("a direct channel").to_owned();
    assert_eq!(accepted["friend"]["user"]["userId"], ada.id.as_str());
    let (_, requests) = rest.authed("GET", "/api/v1/me/friends/request", &bob.token, Value::Null).await;
    assert!(requests["requests"].as_array().is_none_or(Vec::is_empty), "the request is gone: {requests}");
    let (_, friends) = rest.authed("GET", "/api/v1/me/friends", &ada.token, Value::Null).await;
    assert_eq!(friends["friends"][0]["user"]["userId"], bob.id.as_str(), "{friends}");
    assert_eq!(friends["totalSize"], "1", "{friends}");
    assert!(friends["friends"][0]["presence"].as_str().is_some(), "presence is shown: {friends}");
    assert!(profile(&app, &ada, &bob).await.relation.unwrap().friend);

    let send = CreateChatRequest { channel_id: dm.clone(), text: "hi friend".into(), ..Default::default() };
    app.chats().await.create_chat(authed(&ada.token, send)).await.expect("the direct channel works");
    let (status, _) = rest.authed("POST", "/api/v1/me/friend/remove", &ada.token, json!({"userId": bob.id})).await;
    assert_eq!(status, 200);
    assert!(!profile(&app, &ada, &bob).await.relation.unwrap().friend);
    let kept = authed(&bob.token, GetChannelRequest { channel_id: dm.clone() });
    app.channels().await.get_channel(kept).await.expect("unfriending keeps the direct channel");
    let history = ListChatsRequest { channel_id: dm, ..Default::default() };
    let chats = app.chats().await.list_chats(authed(&bob.token, history)).await.unwrap().into_inner().chats;
    assert!(chats.iter().any(|c| c.text == "hi friend"), "and its history");
    let (status, body) = rest.authed("POST", "/api/v1/me/friend/remove", &ada.token, json!({"userId": bob.id})).await;
    assert_eq!((status, body["details"][0]["reason"].as_str()), (404, Some("FRIEND_NOT_FOUND")), "{body}");
}

#[tokio::test]
async fn a_request_both_ways_makes_friends_and_decline_and_cancel_remove_requests() {
    let app = TestApp::spawn().await;
    let (ada, bob, cy) = (app.user("ada").await, app.user("bob").await, app.user("cy").await);
    let ask = |who: &User, whom: &User| authed(&who.token, pb::SendFriendRequestRequest { user_id: whom.id.clone() });
    users(&app).await.send_friend_request(ask(&ada, &bob)).await.unwrap();
    let crossed = users(&app).await.send_friend_request(ask(&bob, &ada)).await.unwrap().into_inner();
    assert!(crossed.friend.is_some() && crossed.relation.unwrap().friend, "asking back accepts");

    users(&app).await.send_friend_request(ask(&cy, &ada)).await.unwrap();
    let decline = authed(&ada.token, pb::DeclineFriendRequestRequest { user_id: cy.id.clone() });
    users(&app).await.decline_friend_request(decline).await.unwrap();
    let again = authed(&ada.token, pb::DeclineFriendRequestRequest { user_id: cy.id.clone() });
    refused(users(&app).await.decline_friend_request(again).await, Code::NotFound, "FRIEND_REQUEST_NOT_FOUND");
    users(&app).await.send_friend_request(ask(&cy, &bob)).await.unwrap();
    let cancel = authed(&cy.token, pb::CancelFriendRequestRequest { user_id: bob.id.clone() });
    users(&app).await.cancel_friend_request(cancel).await.unwrap();
    let listed = authed(&bob.token, pb::ListFriendRequestsRequest::default());
    assert!(users(&app).await.list_friend_requests(listed).await.unwrap().into_inner().requests.is_empty());
}

#[tokio::test]
async fn every_admin_rpc_refuses_a_non_admin_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    let mut client = users(&app).await;
    let t = &ada.token;
    refused(
        client.list_reports(authed(t, pb::ListReportsRequest::default())).await,
        Code::PermissionDenied,
        "ADMIN_ONLY",
    );
    let resolve = pb::ResolveReportRequest {
        report_id: "1".into(),
        action: pb::ReportAction::Dismiss as i32,
        suspend_seconds: 0,
    };
    refused(client.resolve_report(authed(t, resolve)).await, Code::PermissionDenied, "ADMIN_ONLY");
    refused(
        client.list_accounts(authed(t, pb::ListAccountsRequest::default())).await,
        Code::PermissionDenied,
        "ADMIN_ONLY",
    );
    let get = pb::GetAccountRequest { user_id: bob.id.clone() };
    refused(client.get_account(authed(t, get)).await, Code::PermissionDenied, "ADMIN_ONLY");
    let suspend = pb::SuspendAccountRequest { user_id: bob.id.clone(), suspend_seconds: 0, reason: "no".into() };
    refused(client.suspend_account(authed(t, suspend)).await, Code::PermissionDenied, "ADMIN_ONLY");
    let unsuspend = pb::UnsuspendAccountRequest { user_id: bob.id.clone() };
    refused(client.unsuspend_account(authed(t, unsuspend)).await, Code::PermissionDenied, "ADMIN_ONLY");
    let delete = pb::DeleteAccountRequest { user_id: bob.id.clone() };
    refused(client.delete_account(authed(t, delete)).await, Code::PermissionDenied, "ADMIN_ONLY");
    let bob_now = profile(&app, &ada, &bob).await.user.unwrap();
    assert_eq!(bob_now.state, pb::UserState::Active as i32, "bob is untouched");
    // the internal role RPC refuses a user token
    let grant = authed(t, pb::SetRoleRequest { email: "ada@example.com".into(), role: pb::UserRole::Admin as i32 });
    let status = UserInternalServiceClient::new(app.channel().await).set_role(grant).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

#[tokio::test]
async fn a_report_resolved_with_a_suspension_stops_the_users_tokens_at_once() {
    let app = TestApp::spawn().await;
    let (ada, bob, root) = (app.user("ada").await, app.user("bob").await, app.user("root").await);
    app.grant_admin("root@example.com").await;
    let report = |text: &str| {
        authed(
            &ada.token,
            pb::CreateReportRequest {
                user_id: bob.id.clone(),
                category: pb::ReportCategory::Spam as i32,
                text: text.into(),
                ..Default::default()
            },
        )
    };
    let first = users(&app).await.create_report(report("spam")).await.unwrap().into_inner().report.unwrap();
    let merged = users(&app).await.create_report(report("more spam")).await.unwrap().into_inner().report.unwrap();
    assert_eq!((merged.report_id.as_str(), merged.text.as_str()), (first.report_id.as_str(), "more spam"));
    let listed = authed(&root.token, pb::ListReportsRequest { target_user_id: bob.id.clone(), ..Default::default() });
    let reports = users(&app).await.list_reports(listed).await.unwrap().into_inner().reports;
    assert_eq!(reports.len(), 1, "one open report of bob: {reports:?}");
    let resolve = pb::ResolveReportRequest {
        report_id: first.report_id.clone(),
        action: pb::ReportAction::SuspendUser as i32,
        suspend_seconds: 3600,
    };
    let resolved = users(&app).await.resolve_report(authed(&root.token, resolve.clone())).await.unwrap().into_inner();
    assert_eq!(resolved.report.unwrap().status, pb::ReportStatus::Resolved as i32);
    refused(
        users(&app).await.resolve_report(authed(&root.token, resolve)).await,
        Code::FailedPrecondition,
        "REPORT_ALREADY_RESOLVED",
    );

    let me = users(&app).await.get_me(authed(&bob.token, pb::GetMeRequest {})).await;
    assert_eq!(me.unwrap_err().code(), Code::Unauthenticated, "the suspended user's token stopped");
    refused(sign_in(&app, "bob@example.com", false).await, Code::PermissionDenied, "ACCOUNT_SUSPENDED");
    refused(follow(&app, &ada, &bob).await, Code::FailedPrecondition, "USER_SUSPENDED");
    let unsuspend = authed(&root.token, pb::UnsuspendAccountRequest { user_id: bob.id.clone() });
    users(&app).await.unsuspend_account(unsuspend).await.unwrap();
    sign_in(&app, "bob@example.com", false).await.expect("bob signs in again");
}

/// The ids `viewer` finds for `query`, in rank order (first page).
async fn search(app: &TestApp, viewer: &User, query: &str) -> Vec<String> {
    let request = authed(&viewer.token, pb::SearchUsersRequest { query: query.into(), ..Default::default() });
    let found = app.users().await.search_users(request).await.unwrap().into_inner().users;
    found.into_iter().map(|u| u.user_id).collect()
}

#[tokio::test]
async fn search_ranks_the_exact_username_first_and_hides_blocked_users() {
    let app = TestApp::spawn().await;
    let viewer = person(&app, "viewer", "Viewer").await;
    let ada = person(&app, "ada", "Grace Hopper").await;
    let adam = person(&app, "adam", "Adam Smith").await;
    let lovelace = person(&app, "lovelace", "Ada Lovelace").await;
    let search = |query: &'static str| search(&app, &viewer, query);
    assert_eq!(search("@Ada").await, vec![ada.id.clone(), adam.id.clone(), lovelace.id.clone()]);
    assert_eq!(search("lovel").await, vec![lovelace.id.clone()]);
    assert_eq!(search("ada love").await, vec![lovelace.id.clone()], "a whole name matches too");
    block(&app, &adam, &viewer).await;
    assert_eq!(search("ada").await, vec![ada.id.clone(), lovelace.id.clone()], "blocks hide both ways");
    let rename = authed(
        &ada.token,
        pb::UpdateMeRequest { update_mask: vec!["username".into()], username: "countess".into(), ..Default::default() },
    );
    app.users().await.update_me(rename).await.unwrap();
    assert_eq!(search("countess").await, vec![ada.id.clone()], "kept current as profiles change");
    assert_eq!(search("ada").await, vec![lovelace.id.clone()]);
}

#[tokio::test]
async fn a_deleted_account_disappears_is_restored_in_its_grace_period_and_erased_after() {
    let app = TestApp::spawn().await;
    let viewer = person(&app, "viewer", "Viewer").await;
    let ada = person(&app, "ada", "Ada").await;
    follow(&app, &viewer, &ada).await.unwrap();
    follow(&app, &ada, &viewer).await.unwrap();
    let wrong = authed(&ada.token, pb::DeleteMeRequest { current_password: "not it at all".into() });
    refused(users(&app).await.delete_me(wrong).await, Code::PermissionDenied, "WRONG_PASSWORD");
    let delete = authed(&ada.token, pb::DeleteMeRequest { current_password: "correct horse battery".into() });
    users(&app).await.delete_me(delete).await.expect("deleted");

    let seen = profile(&app, &viewer, &ada).await.user.unwrap();
    assert_eq!(
        (seen.state, seen.name.as_str(), seen.username.as_str()),
        (pb::UserState::Deleted as i32, "deleted user", "")
    );
    let me = profile(&app, &viewer, &viewer).await.user.unwrap();
    assert_eq!((me.total_followers, me.total_following), (0, 0), "gone from counters at once");
    let found = authed(&viewer.token, pb::SearchUsersRequest { query: "ada".into(), ..Default::default() });
    assert!(users(&app).await.search_users(found).await.unwrap().into_inner().users.is_empty());
    assert_eq!(
        users(&app).await.get_me(authed(&ada.token, pb::GetMeRequest {})).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    refused(sign_in(&app, "ada@example.com", false).await, Code::FailedPrecondition, "ACCOUNT_DELETED");

    sign_in(&app, "ada@example.com", true).await.expect("restored by signing in");
    let me = profile(&app, &viewer, &viewer).await.user.unwrap();
    assert_eq!((me.total_followers, me.total_following), (1, 1), "the follows came back");
    assert_eq!(profile(&app, &viewer, &ada).await.user.unwrap().username, "ada");
}

#[tokio::test]
async fn after_the_grace_period_the_email_and_username_are_free_and_the_follows_gone() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path().to_owned());
    config.accounts.deletion_grace_secs = 0;
    config.accounts.sweep_interval_secs = 1;
    let app = TestApp::spawn_with(config).await;
    let viewer = person(&app, "viewer", "Viewer").await;
    let ada = person(&app, "ada", "Ada").await;
    follow(&app, &ada, &viewer).await.unwrap();
    let delete = authed(&ada.token, pb::DeleteMeRequest { current_password: "correct horse battery".into() });
    users(&app).await.delete_me(delete).await.unwrap();
    let started = std::time::Instant::now();
    let again = loop {
        match signup(&app, "ada@example.com", "ada", "Ada Again").await {
            Ok(id) => break id,
            Err(status) => assert_eq!(status.code(), Code::AlreadyExists, "{status:?}"),
        }
        assert!(started.elapsed() < WAIT, "the sweeper did not erase the account");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(again, ada.id, "a new account");
    let me = profile(&app, &viewer, &viewer).await.user.unwrap();
    assert_eq!(me.total_followers, 0, "the old follows are gone");
    let old = authed(&viewer.token, pb::GetUserRequest { user_id: ada.id.clone() });
    assert_eq!(users(&app).await.get_user(old).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn a_password_change_needs_the_current_one_and_ends_every_other_session() {
    let app = TestApp::spawn().await;
    let ada = person(&app, "ada", "Ada").await;
    let other = sign_in(&app, "ada@example.com", false).await.unwrap().tokens.unwrap();
    let wrong =
        pb::ChangePasswordRequest { current_password: "wrong password".into(), new_password: "a new password".into() };
    refused(
        users(&app).await.change_password(authed(&ada.token, wrong)).await,
        Code::PermissionDenied,
        "WRONG_PASSWORD",
    );
    let change = pb::ChangePasswordRequest {
        current_password: "correct horse battery".into(),
        new_password: "a new password".into(),
    };
    let changed = users(&app).await.change_password(authed(&ada.token, change)).await.unwrap().into_inner();
    assert_eq!(changed.ended_sessions, 2);
    let fresh = changed.tokens.unwrap();
    for old in [&ada.token, &other.access_token] {
        let me = users(&app).await.get_me(authed(old, pb::GetMeRequest {})).await;
        assert_eq!(me.unwrap_err().code(), Code::Unauthenticated);
    }
    users(&app).await.get_me(authed(&fresh.access_token, pb::GetMeRequest {})).await.expect("the new session works");
    refused(sign_in(&app, "ada@example.com", false).await, Code::Unauthenticated, "BAD_CREDENTIALS");
    let email =
        pb::ChangeEmailRequest { current_password: "a new password".into(), new_email: "ada@lovelace.org".into() };
    let user =
        users(&app).await.change_email(authed(&fresh.access_token, email)).await.unwrap().into_inner().user.unwrap();
    assert_eq!(user.email, "ada@lovelace.org");
    signup(&app, "ada@example.com", "", "Another Ada").await.expect("the old email is free");
}

#[tokio::test]
async fn follows_friend_requests_and_reports_are_limited_per_user_per_hour() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path().to_owned());
    config.limits.follows_per_hour_per_user = 2;
    config.limits.friend_requests_per_hour_per_user = 1;
    config.limits.reports_per_hour_per_user = 1;
    let app = TestApp::spawn_with(config).await;
    let ada = app.user("ada").await;
    let (b, c, d) = (app.user("b").await, app.user("c").await, app.user("d").await);
    follow(&app, &ada, &b).await.unwrap();
    follow(&app, &ada, &c).await.unwrap();
    follow(&app, &ada, &b).await.expect("a repeat takes nothing");
    let status = follow(&app, &ada, &d).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.metadata().get("retry-after").is_some());
    assert_eq!(profile(&app, &d, &d).await.user.unwrap().total_followers, 0, "nothing changed");
    unfollow(&app, &ada, &b).await.expect("unfollows are free");

    let ask = |whom: &User| authed(&ada.token, pb::SendFriendRequestRequest { user_id: whom.id.clone() });
    users(&app).await.send_friend_request(ask(&b)).await.unwrap();
    assert_eq!(users(&app).await.send_friend_request(ask(&c)).await.unwrap_err().code(), Code::ResourceExhausted);
    let report = |whom: &User| {
        authed(
            &ada.token,
            pb::CreateReportRequest {
                user_id: whom.id.clone(),
                category: pb::ReportCategory::Spam as i32,
                ..Default::default()
            },
        )
    };
    users(&app).await.create_report(report(&b)).await.unwrap();
    assert_eq!(users(&app).await.create_report(report(&c)).await.unwrap_err().code(), Code::ResourceExhausted);
}
