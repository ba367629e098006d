//! Accounts and login sessions, driven from outside through real gRPC clients.

use chatmesh_api::user::v1::{
    CreateUserRequest, GetMeRequest, GetUserRequest, LogoutAllRequest, LogoutRequest, RefreshTokenRequest,
    UpdateMeRequest,
};
use chatmesh_tests::{TestApp, authed, raw};
use tonic::Code;

fn create(email: &str, password: &str, name: &str, username: &str) -> CreateUserRequest {
    CreateUserRequest { email: email.into(), password: password.into(), name: name.into(), username: username.into() }
}

#[tokio::test]
async fn duplicate_email_in_another_letter_case_is_already_exists() {
    let app = TestApp::spawn().await;
    app.register("Ada@Example.com").await;
    let status =
        app.users().await.create_user(create("ada@EXAMPLE.com", "correct horse", "Other", "")).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
}

#[tokio::test]
async fn duplicate_username_in_another_letter_case_is_already_exists() {
    let app = TestApp::spawn().await;
    let mut users = app.users().await;
    users.create_user(create("a@example.com", "correct horse", "A", "Ada")).await.unwrap();
    let status = users.create_user(create("b@example.com", "correct horse", "B", "ADA")).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(app.login("b@example.com", "correct horse").await.is_err(), "nothing was stored");
}

#[tokio::test]
async fn fifty_concurrent_registrations_of_one_email_create_exactly_one_account() {
    let app = TestApp::spawn().await;
    let channel = app.channel().await;
    let attempts = (0..50).map(|i| {
        let mut users = chatmesh_api::user::v1::user_service_client::UserServiceClient::new(channel.clone());
        async move { users.create_user(create("race@example.com", "correct horse", &format!("racer {i}"), "")).await }
    });
    let results = futures::future::join_all(attempts).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let taken = results.iter().filter(|r| matches!(r, Err(s) if s.code() == Code::AlreadyExists)).count();
    assert_eq!((ok, taken), (1, 49));
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let mut users = app.users().await;
    let long_name = "n".repeat(65);
    let cases = [
        ("name", create("x@example.com", "correct horse", "", "")),
        ("name", create("x@example.com", "correct horse", "   ", "")),
        ("name", create("x@example.com", "correct horse", &long_name, "")),
        ("email", create("not-an-email", "correct horse", "X", "")),
        ("email", create("", "correct horse", "X", "")),
        ("password", create("x@example.com", "short", "X", "")),
        ("username", create("x@example.com", "correct horse", "X", "9 bad name")),
    ];
    for (field, request) in cases {
        let status = users.create_user(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert!(status.message().starts_with(field), "{field}: {}", status.message());
    }
    // invalid UTF-8 in a string field, sent as raw protobuf bytes
    let body = raw::proto_strings(&[(1, b"x@example.com"), (2, b"correct horse"), (3, b"bad \xff\xfe name")]);
    let status =
        raw::unary_raw(app.channel().await, "/chatmesh.user.v1.UserService/CreateUser", body).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("name"), "names the field: {}", status.message());
    // bytes that are no protobuf at all
    let status = raw::unary_raw(app.channel().await, "/chatmesh.user.v1.UserService/Login", vec![0xff, 0xff, 0xff])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    assert_eq!(app.login("x@example.com", "correct horse").await.unwrap_err().code(), Code::Unauthenticated);
    users.create_user(create("x@example.com", "correct horse", "X", "")).await.expect("the email is still free");
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.register("ada@example.com").await;
    let wrong = app.login("ada@example.com", "wrong password").await.unwrap_err();
    let unknown = app.login("nobody@example.com", "wrong password").await.unwrap_err();
    assert_eq!((wrong.code(), wrong.message()), (unknown.code(), unknown.message()));
    assert_eq!(wrong.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled_before_hashing() {
    let app = TestApp::spawn().await;
    app.register("ada@example.com").await;
    let mut codes = Vec::new();
    for _ in 0..12 {
        codes.push(app.login("ada@example.com", "wrong password").await.unwrap_err());
    }
    let throttled = codes.last().unwrap();
    assert_eq!(throttled.code(), Code::ResourceExhausted);
    assert!(throttled.metadata().get("retry-after").is_some());
}

#[tokio::test]
async fn users_and_tokens_survive_a_restart() {
    let app = TestApp::spawn().await;
    let (user_id, tokens) = app.register("ada@example.com").await;
    let app = app.restart().await;
    let me = app.users().await.get_me(authed(&tokens.access_token, GetMeRequest {})).await.unwrap().into_inner();
    assert_eq!(me.user.unwrap().user_id, user_id, "the old access token verifies after the restart");
    app.login("ada@example.com", "correct horse battery").await.expect("the account is still there");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_ends_the_session() {
    let app = TestApp::spawn().await;
    let (_, first) = app.register("ada@example.com").await;
    let mut users = app.users().await;
    let refresh = |token: &str| RefreshTokenRequest { refresh_token: token.to_owned() };

    let second = users.refresh_token(refresh(&first.refresh_token)).await.unwrap().into_inner().tokens.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(second.session_id, first.session_id);
    users.get_me(authed(&second.access_token, GetMeRequest {})).await.expect("the new access token works");

    let third = users.refresh_token(refresh(&second.refresh_token)).await.unwrap().into_inner().tokens.unwrap();

    // the first token was already used: reuse ends the whole session
    let reused = users.refresh_token(refresh(&first.refresh_token)).await.unwrap_err();
    assert_eq!(reused.code(), Code::Unauthenticated);
    let after = users.refresh_token(refresh(&third.refresh_token)).await.unwrap_err();
    assert_eq!(after.code(), Code::Unauthenticated, "the newest refresh token died with the session");
    let me = users.get_me(authed(&third.access_token, GetMeRequest {})).await.unwrap_err();
    assert_eq!(me.code(), Code::Unauthenticated, "access tokens of the session stop at once");

    let forged = users.refresh_token(refresh("nosuchsession.secret")).await.unwrap_err();
    assert_eq!(forged.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn logout_ends_one_session_and_logout_all_ends_every_one() {
    let app = TestApp::spawn().await;
    let (_, phone) = app.register("ada@example.com").await;
    let laptop = app.login("ada@example.com", "correct horse battery").await.unwrap();
    let tablet = app.login("ada@example.com", "correct horse battery").await.unwrap();
    let mut users = app.users().await;

    users.logout(authed(&phone.access_token, LogoutRequest {})).await.unwrap();
    assert_eq!(
        users.get_me(authed(&phone.access_token, GetMeRequest {})).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let refreshed = users.refresh_token(RefreshTokenRequest { refresh_token: phone.refresh_token.clone() }).await;
    assert_eq!(refreshed.unwrap_err().code(), Code::Unauthenticated);
    users.get_me(authed(&laptop.access_token, GetMeRequest {})).await.expect("other devices stay logged in");

    let ended = users.logout_all(authed(&laptop.access_token, LogoutAllRequest {})).await.unwrap().into_inner();
    assert_eq!(ended.ended_sessions, 2);
    for token in [&laptop.access_token, &tablet.access_token] {
        assert_eq!(users.get_me(authed(token, GetMeRequest {})).await.unwrap_err().code(), Code::Unauthenticated);
    }
    // a logout survives a restart
    let app = app.restart().await;
    let status = app.users().await.get_me(authed(&tablet.access_token, GetMeRequest {})).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn profiles_show_emails_to_their_owner_only_and_update_by_mask() {
    let app = TestApp::spawn().await;
    let (ada_id, ada) = app.register("ada@example.com").await;
    let (_, bob) = app.register("bob@example.com").await;
    let mut users = app.users().await;

    let seen = users.get_user(authed(&bob.access_token, GetUserRequest { user_id: ada_id.clone() })).await.unwrap();
    let seen = seen.into_inner().user.unwrap();
    assert_eq!(seen.email, "", "no other user's email");
    assert_eq!(seen.name, "Test User");

    let update = UpdateMeRequest {
        update_mask: vec!["name".into(), "username".into()],
        name: "Ada Lovelace".into(),
        username: "ada".into(),
        bio: "ignored: not in the mask".into(),
        ..Default::default()
    };
    let updated = users.update_me(authed(&ada.access_token, update)).await.unwrap().into_inner().user.unwrap();
    assert_eq!((updated.name.as_str(), updated.username.as_str(), updated.bio.as_str()), ("Ada Lovelace", "ada", ""));

    let taken = UpdateMeRequest { update_mask: vec!["username".into()], username: "ADA".into(), ..Default::default() };
    assert_eq!(users.update_me(authed(&bob.access_token, taken)).await.unwrap_err().code(), Code::AlreadyExists);
    let bad_mask = UpdateMeRequest { update_mask: vec!["email".into()], ..Default::default() };
    let status = users.update_me(authed(&ada.access_token, bad_mask)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("update_mask"));

    for bad in ["", "abc", "0"] {
        let status =
            users.get_user(authed(&ada.access_token, GetUserRequest { user_id: bad.into() })).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}");
    }
    let status =
        users.get_user(authed(&ada.access_token, GetUserRequest { user_id: "999999".into() })).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}
