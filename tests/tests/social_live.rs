//! The social graph as live clients see it: sessions a password change or a suspension ends
//! close their sockets, a moderator's retraction reaches history and sockets, a block holds from
//! the very next send, and friends' presence follows their sockets.

use std::time::Duration;

use chatmesh_api::{
    channel::v1::{
        ChannelKind, ChannelVisibility, CreateChannelRequest, GetOrCreateDirectChannelRequest,
        channel_internal_service_client::ChannelInternalServiceClient,
    },
    chat::v1::{CreateChatRequest, ListChatsRequest},
    dispatcher::v1::PresenceStatus,
    user::v1 as pb,
};
use chatmesh_tests::{
    TestApp, User, authed, refused,
    ws::{self, Received},
};
use tonic::{Code, Status};

/// Only guards against hanging: every wait below ends on the condition it waits for.
const WAIT: Duration = Duration::from_secs(30);
/// The close code of a socket whose login session ended (docs/websocket.md).
const SESSION_ENDED: u16 = 4003;
const PASSWORD: &str = "correct horse battery";

/// Reads until the socket closes; returns the close code (`None`: closed without one, or still
/// open after [`WAIT`]).
async fn close_code(socket: &mut ws::Socket) -> Option<u16> {
    while let Some(received) = ws::next(socket, WAIT).await {
        if let Received::Closed(code) = received {
            return code;
        }
    }
    None
}

/// Whether the gateway refuses to upgrade a connection carrying `token` (401 before the upgrade).
async fn upgrade_refused(app: &TestApp, token: &str) -> bool {
    let url = format!("ws://{}/?token={token}", app.ws_addr);
    matches!(
        tokio_tungstenite::connect_async(url).await,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) if response.status() == 401
    )
}

async fn send(app: &TestApp, who: &User, channel_id: &str, text: &str) -> Result<String, Status> {
    let request = CreateChatRequest { channel_id: channel_id.into(), text: text.into(), ..Default::default() };
    Ok(app.chats().await.create_chat(authed(&who.token, request)).await?.into_inner().chat.expect("chat").chat_id)
}

#[tokio::test]
async fn a_password_change_closes_the_socket_of_every_session_and_the_new_tokens_connect() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let other_device = app.login("ada@example.com", PASSWORD).await.expect("a second login").access_token;
    let (mut this_socket, _) = ws::connect(app.ws_addr, &ada.token, "").await;
    let (mut other_socket, _) = ws::connect(app.ws_addr, &other_device, "").await;

    let change = pb::ChangePasswordRequest { current_password: PASSWORD.into(), new_password: "a new password".into() };
    let changed = app.users().await.change_password(authed(&ada.token, change)).await.unwrap().into_inner();
    assert_eq!(changed.ended_sessions, 2);
    assert_eq!(close_code(&mut other_socket).await, Some(SESSION_ENDED), "the other device's socket closes");
    assert_eq!(close_code(&mut this_socket).await, Some(SESSION_ENDED), "and the changing session's own");
    for old in [&ada.token, &other_device] {
        assert!(upgrade_refused(&app, old).await, "an ended session's token opens no socket");
    }

    let fresh = changed.tokens.expect("a new session");
    let (_, ready) = ws::connect(app.ws_addr, &fresh.access_token, "").await;
    assert_eq!(ready["data"]["userId"], ada.id.as_str(), "{ready}");
}

#[tokio::test]
async fn a_suspension_by_an_admin_closes_the_suspended_users_socket() {
    let app = TestApp::spawn().await;
    let (bob, root) = (app.user("bob").await, app.user("root").await);
    app.grant_admin("root@example.com").await;
    let (mut socket, _) = ws::connect(app.ws_addr, &bob.token, "").await;
    let (mut bystander, _) = ws::connect(app.ws_addr, &root.token, "").await;

    let suspend = pb::SuspendAccountRequest { user_id: bob.id.clone(), suspend_seconds: 3600, reason: "spam".into() };
    let account = app.users().await.suspend_account(authed(&root.token, suspend)).await.unwrap().into_inner();
    assert_eq!(account.account.unwrap().user.unwrap().state, pb::UserState::Suspended as i32);
    assert_eq!(close_code(&mut socket).await, Some(SESSION_ENDED));
    assert!(upgrade_refused(&app, &bob.token).await, "nor can the suspended user connect again");
    ws::send(&mut bystander, serde_json::json!({"event": "ping", "data": {}})).await;
    let pong = ws::until(&mut bystander, "pong", WAIT).await;
    assert!(pong.is_some(), "the admin's own socket stays open");
}

#[tokio::test]
async fn a_chat_report_resolved_by_retraction_leaves_a_tombstone_and_tells_live_members() {
    let app = TestApp::spawn().await;
    let (ada, bob, cy, eve, root) = (
        app.user("ada").await,
        app.user("bob").await,
        app.user("cy").await,
        app.user("eve").await,
        app.user("root").await,
    );
    app.grant_admin("root@example.com").await;
    let group = app.group(&ada, ChannelVisibility::Private, &[&bob, &cy]).await.channel_id;
    let chat = send(&app, &bob, &group, "something vile").await.unwrap();
    let (mut member, _) = ws::connect(app.ws_addr, &ada.token, "").await;

    let report = |who: &User, channel_id: &str| {
        authed(
            &who.token,
            pb::CreateReportRequest {
                chat_id: chat.clone(),
                channel_id: channel_id.into(),
                category: pb::ReportCategory::Harassment as i32,
                text: "see this".into(),
                ..Default::default()
            },
        )
    };
    // an outsider cannot report (or learn of) a chat of a channel they are not in
    refused(app.users().await.create_report(report(&eve, &group)).await, Code::NotFound, "CHAT_NOT_FOUND");
    // nor name it with a channel of theirs it is not in
    let elsewhere = app.group(&cy, ChannelVisibility::Private, &[]).await.channel_id;
    refused(app.users().await.create_report(report(&cy, &elsewhere)).await, Code::NotFound, "CHAT_NOT_FOUND");

    let filed = app.users().await.create_report(report(&cy, &group)).await.unwrap().into_inner().report.unwrap();
    assert_eq!(
        (filed.target_user_id.as_str(), filed.target_chat_id.as_str(), filed.target_channel_id.as_str()),
        (bob.id.as_str(), chat.as_str(), group.as_str()),
        "a chat report names its sender"
    );
    let resolve = pb::ResolveReportRequest {
        report_id: filed.report_id.clone(),
        action: pb::ReportAction::RetractChat as i32,
        suspend_seconds: 0,
    };
    let resolved = app.users().await.resolve_report(authed(&root.token, resolve.clone())).await.unwrap().into_inner();
    let resolved = resolved.report.unwrap();
    assert_eq!(
        (resolved.status, resolved.action, resolved.resolved_by.as_str()),
        (pb::ReportStatus::Resolved as i32, pb::ReportAction::RetractChat as i32, root.id.as_str())
    );

    let history = ListChatsRequest { channel_id: group.clone(), ..Default::default() };
    let chats = app.chats().await.list_chats(authed(&cy.token, history)).await.unwrap().into_inner().chats;
    let tombstone = chats.iter().find(|c| c.chat_id == chat).expect("the chat stays in history");
    assert!(tombstone.retracted && tombstone.text.is_empty(), "a tombstone: {tombstone:?}");

    let frames = ws::until(&mut member, "chat.retracted", WAIT).await.expect("a live chat.retracted");
    let live = &frames.last().unwrap()["data"];
    assert_eq!((live["channelId"].as_str(), live["chat"]["chatId"].as_str()), (Some(group.as_str()), Some(&*chat)));
    assert_eq!(live["chat"]["retracted"], true, "{live}");

    refused(
        app.users().await.resolve_report(authed(&root.token, resolve)).await,
        Code::FailedPrecondition,
        "REPORT_ALREADY_RESOLVED",
    );
}

#[tokio::test]
async fn the_very_next_send_after_a_block_is_refused_and_users_cannot_open_direct_channels_internally() {
    let app = TestApp::spawn().await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    let open = CreateChannelRequest {
        kind: ChannelKind::Direct as i32,
        member_ids: vec![ada.id.clone()],
        ..Default::default()
    };
    let dm = app.create_channel(&bob, open).await;
    // why: a send before the block leaves "not blocked" in the chat service's cache, which the
    // block must overturn at once
    send(&app, &bob, &dm, "hi").await.expect("not blocked yet");

    let block = authed(&ada.token, pb::BlockUserRequest { user_id: bob.id.clone() });
    app.users().await.block_user(block).await.unwrap();
    refused(send(&app, &bob, &dm, "hi again").await, Code::PermissionDenied, "USER_BLOCKED");
    refused(send(&app, &ada, &dm, "and you?").await, Code::PermissionDenied, "USER_BLOCKED");

    // the internal way to a direct channel (it asks no block) is closed to users
    let direct = || GetOrCreateDirectChannelRequest { user_id: bob.id.clone(), other_user_id: ada.id.clone() };
    let mut internal = ChannelInternalServiceClient::new(app.channel().await);
    for token in [&bob.token, &ada.token] {
        let status = internal.get_or_create_direct_channel(authed(token, direct())).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    let as_service = authed(&app.service_token("user"), direct());
    let found = internal.get_or_create_direct_channel(as_service).await.expect("the user service may").into_inner();
    assert_eq!((found.channel_id.as_str(), found.created), (dm.as_str(), false));
}

/// How `viewer` sees `friend`'s presence in their friends list.
async fn presence_of(app: &TestApp, viewer: &User, friend: &User) -> PresenceStatus {
    let listed = authed(&viewer.token, pb::ListFriendsRequest::default());
    let friends = app.users().await.list_friends(listed).await.unwrap().into_inner().friends;
    let entry = friends.iter().find(|f| f.user.as_ref().is_some_and(|u| u.user_id == friend.id)).expect("a friend");
    entry.presence()
}

/// Polls `viewer`'s friends list until `friend` shows `want`.
async fn until_presence(app: &TestApp, viewer: &User, friend: &User, want: PresenceStatus) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen = presence_of(app, viewer, friend).await;
        if seen == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {seen:?}, not {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_friend_shows_online_while_their_socket_is_open_and_offline_after() {
    let app = TestApp::spawn().await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    let ask = authed(&ada.token, pb::SendFriendRequestRequest { user_id: bob.id.clone() });
    app.users().await.send_friend_request(ask).await.unwrap();
    let accept = authed(&bob.token, pb::AcceptFriendRequestRequest { user_id: ada.id.clone() });
    app.users().await.accept_friend_request(accept).await.unwrap();
    assert_eq!(presence_of(&app, &ada, &bob).await, PresenceStatus::Offline);

    let (mut socket, _) = ws::connect(app.ws_addr, &bob.token, "").await;
    until_presence(&app, &ada, &bob, PresenceStatus::Online).await;
    socket.close(None).await.expect("closes");
    until_presence(&app, &ada, &bob, PresenceStatus::Offline).await;
}
