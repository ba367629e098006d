//! Who may call what: tokens on every path into the services, in-process and over the network.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chatmesh_api::{
    dispatcher::v1::{SubscribeRequest, dispatcher_service_client::DispatcherServiceClient},
    user::v1::{
        BatchGetUsersRequest, GetMeRequest, user_internal_service_client::UserInternalServiceClient,
        user_service_client::UserServiceClient,
    },
};
use chatmesh_platform::ids::now_ms;
use chatmesh_tests::{
    TestApp, authed,
    forge::{claims, sign},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tonic::Code;

async fn get_me_code(app: &TestApp, token: Option<&str>) -> Code {
    let mut users = app.users().await;
    let result = match token {
        Some(token) => users.get_me(authed(token, GetMeRequest {})).await,
        None => users.get_me(GetMeRequest {}).await,
    };
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn register_login_and_get_me_over_the_network() {
    let app = TestApp::spawn().await;
    let (user_id, tokens) = app.register("ada@example.com").await;
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.expires_in, 900);
    let me = app.users().await.get_me(authed(&tokens.access_token, GetMeRequest {})).await.unwrap().into_inner();
    let me = me.user.unwrap();
    assert_eq!(me.user_id, user_id);
    assert_eq!(me.email, "ada@example.com");
}

#[tokio::test]
async fn bad_tokens_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let (user_id, tokens) = app.register("ada@example.com").await;
    let now = now_ms() / 1000;
    let (kid, der) = app.signing_key("user");
    let (service_kid, service_der) = app.signing_key("service");
    let sid = tokens.session_id.as_str();

    let expired = sign(&kid, &der, &claims(&user_id, "chatmesh", Some(sid), now - 3600, now - 120));
    let foreign_der =
        aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let wrongly_signed = sign(&kid, foreign_der.as_ref(), &claims(&user_id, "chatmesh", Some(sid), now, now + 600));
    let payload = URL_SAFE_NO_PAD.encode(claims(&user_id, "chatmesh", Some(sid), now, now + 600).to_string());
    let alg_none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#));
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &claims(&user_id, "chatmesh", Some(sid), now, now + 600),
        &EncodingKey::from_secret(b"guessable"),
    )
    .unwrap();
    let service = sign(&service_kid, &service_der, &claims("svc:chat", "chatmesh-internal", None, now, now + 60));
    let not_yet = sign(&kid, &der, &claims(&user_id, "chatmesh", Some(sid), now + 600, now + 1200));

    assert_eq!(get_me_code(&app, Some(&tokens.access_token)).await, Code::Ok, "the real token works");
    for (what, token) in [
        ("no token", None),
        ("empty", Some("")),
        ("malformed", Some("not.a.jwt")),
        ("expired", Some(expired.as_str())),
        ("wrongly signed", Some(wrongly_signed.as_str())),
        ("alg none", Some(alg_none.as_str())),
        ("HS256", Some(hs256.as_str())),
        ("service principal", Some(service.as_str())),
        ("nbf in the future", Some(not_yet.as_str())),
        ("refresh token as access token", Some(tokens.refresh_token.as_str())),
    ] {
        assert_eq!(get_me_code(&app, token).await, Code::Unauthenticated, "{what}");
    }
}

#[tokio::test]
async fn the_in_process_client_goes_through_the_same_layer() {
    let app = TestApp::spawn().await;
    let (_, tokens) = app.register("ada@example.com").await;
    let mut users = UserServiceClient::new(app.in_process());
    let status = users.get_me(GetMeRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let me = users.get_me(authed(&tokens.access_token, GetMeRequest {})).await.unwrap().into_inner();
    assert_eq!(me.user.unwrap().email, "ada@example.com");
}

#[tokio::test]
async fn internal_rpcs_take_service_principals_only() {
    let app = TestApp::spawn().await;
    let (user_id, tokens) = app.register("ada@example.com").await;
    let mut internal = UserInternalServiceClient::new(app.channel().await);
    let request = || BatchGetUsersRequest { user_ids: vec![user_id.clone(), "12345".into()] };

    let status = internal.batch_get_users(authed(&tokens.access_token, request())).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = internal.batch_get_users(request()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let running_auth = {
        let (kid, der) = app.signing_key("service");
        let now = now_ms() / 1000;
        sign(&kid, &der, &claims("svc:channel", "chatmesh-internal", None, now, now + 60))
    };
    let found = internal.batch_get_users(authed(&running_auth, request())).await.unwrap().into_inner();
    assert_eq!(found.users.len(), 1);
    assert_eq!(found.users[0].email, "", "other services never see emails");
    assert_eq!(found.missing_user_ids, vec!["12345".to_owned()]);
}

#[tokio::test]
async fn what_is_not_built_yet_answers_unimplemented_after_authentication() {
    let app = TestApp::spawn().await;
    let (_, tokens) = app.register("ada@example.com").await;
    let mut live = DispatcherServiceClient::new(app.channel().await);
    // resuming a subscription from event ids
    let request =
        || SubscribeRequest { last_event_ids: [("1".to_owned(), "2".to_owned())].into(), ..Default::default() };
    assert_eq!(live.subscribe(request()).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(live.subscribe(authed(&tokens.access_token, request())).await.unwrap_err().code(), Code::Unimplemented);
}

#[tokio::test]
async fn the_rest_gateway_refuses_bad_tokens_at_the_edge() {
    let app = TestApp::spawn().await;
    let (_, tokens) = app.register("ada@example.com").await;
    let bearer = format!("Bearer {}", tokens.access_token);

    let (status, body) = chatmesh_tests::raw::http(app.rest_addr, "GET", "/api/v1/users/me", &[]).await;
    assert_eq!(status, 401);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "UNAUTHENTICATED");
    assert_eq!(body["code"], 401);
    let (status, body) =
        chatmesh_tests::raw::http(app.rest_addr, "GET", "/api/v1/users/me", &[("authorization", &bearer)]).await;
    assert_eq!(status, 200, "{body}");
    // the WebSocket edge is tested with a real client in live.rs
}
