//! The REST gateway over plain HTTP: the seed's flow, the error shape, and parity with gRPC.

use chatmesh_api::{channel::v1::GetChannelRequest, chat::v1::GetChatRequest, user::v1::GetUserRequest};
use chatmesh_tests::{Rest, TestApp, authed, raw};
use serde_json::{Value, json};

fn assert_error(status: u16, body: &Value, expected: u16, name: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["code"], expected, "{body}");
    assert_eq!(body["status"], name, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(body["details"].is_array());
}

#[tokio::test]
async fn the_seed_flow_over_http() {
    let app = TestApp::spawn().await;
    let rest = Rest { app: &app };
    let (status, ada) = rest
        .call(
            "POST",
            "/api/v1/users",
            None,
            json!({"email": "ada@example.com", "password": "correct horse", "name": "Ada", "username": "ada"}),
        )
        .await;
    assert_eq!(status, 200, "{ada}");
    assert_eq!(
        (ada["user"]["email"].as_str(), ada["user"]["name"].as_str(), ada["user"]["username"].as_str()),
        (Some("ada@example.com"), Some("Ada"), Some("ada"))
    );
    assert!(ada["user"].get("password").is_none() && ada["user"].get("passwordHash").is_none());
    let ada_id = ada["user"]["userId"].as_str().unwrap().to_owned();
    rest.call(
        "POST",
        "/api/v1/users",
        None,
        json!({"email": "bob@example.com", "password": "correct horse", "name": "Bob"}),
    )
    .await;
    let login = |email: &'static str| async move {
        let (status, body) =
            rest.call("POST", "/api/v1/auth/login", None, json!({"email": email, "password": "correct horse"})).await;
        assert_eq!(status, 200);
        assert_eq!(body["tokens"]["tokenType"], "Bearer");
        assert_eq!(body["tokens"]["expiresIn"], "900", "int64 as a string");
        body["tokens"]["accessToken"].as_str().unwrap().to_owned()
    };
    let (ta, tb) = (login("ada@example.com").await, login("bob@example.com").await);
    let (status, me) = rest.call("GET", "/api/v1/users/me", Some(&tb), Value::Null).await;
    assert_eq!((status, me["user"]["name"].as_str()), (200, Some("Bob")));
    let (_, seen) = rest.call("GET", &format!("/api/v1/users/{ada_id}"), Some(&tb), Value::Null).await;
    assert_eq!(seen["user"]["userId"], ada_id);
    assert!(seen["user"].get("email").is_none(), "no other user's email");

    let (status, channel) = rest
        .call(
            "POST",
            "/api/v1/channels",
            Some(&ta),
            json!({"kind": "CHANNEL_KIND_GROUP", "name": "team", "visibility": "CHANNEL_VISIBILITY_PUBLIC"}),
        )
        .await;
    assert_eq!(status, 200, "{channel}");
    assert_eq!(
        (channel["channel"]["name"].as_str(), channel["channel"]["ownerId"].as_str(), channel["created"].as_bool()),
        (Some("team"), Some(ada_id.as_str()), Some(true))
    );
    let channel_id = channel["channel"]["channelId"].as_str().unwrap().to_owned();
    let (status, member) = rest.call("POST", "/api/v1/members", Some(&tb), json!({"channelId": channel_id})).await;
    assert_eq!((status, member["member"]["role"].as_str()), (200, Some("MEMBER_ROLE_MEMBER")));
    let (_, got) = rest.call("GET", &format!("/api/v1/channels/{channel_id}"), Some(&tb), Value::Null).await;
    assert_eq!(got["channel"]["memberCount"], 2);
    // why: a membership change returns once it is in the channel service's outbox; its
    // announcement reaches history when the relay appends it, so it may land after chats sent
    // right after the join. Once it is listed, every chat sent later is newer (commit order).
    let bob_id = me["user"]["userId"].as_str().unwrap();
    let joins = [format!("<@{ada_id}> joined"), format!("<@{bob_id}> joined")];
    let history = format!("/api/v1/chats?channelId={channel_id}&after=1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let announced = loop {
        let (_, list) = rest.call("GET", &history, Some(&tb), Value::Null).await;
        let announced: Vec<String> = list["chats"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["kind"] == "CHAT_KIND_SYSTEM")
            .map(|c| c["text"].as_str().unwrap_or_default().to_owned())
            .collect();
        if announced.len() >= joins.len() || std::time::Instant::now() > deadline {
            break announced;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(announced, joins, "both joins are announced, oldest first");

    let mut chat_ids = Vec::new();
    for text in ["hello bob", "second"] {
        let (status, chat) = rest
            .call(
                "POST",
                "/api/v1/chats",
                Some(&ta),
                json!({"channelId": channel_id, "text": text, "clientMsgId": text}),
            )
            .await;
        assert_eq!(status, 200, "{chat}");
        assert_eq!(
            (chat["chat"]["text"].as_str(), chat["chat"]["senderId"].as_str(), chat["chat"]["kind"].as_str()),
            (Some(text), Some(ada_id.as_str()), Some("CHAT_KIND_TEXT"))
        );
        chat_ids.push(chat["chat"]["chatId"].as_str().unwrap().to_owned());
    }
    let (status, one) = rest.call("GET", &format!("/api/v1/chats/{}", chat_ids[0]), Some(&tb), Value::Null).await;
    assert_eq!(
        (status, one["chat"]["text"].as_str(), one["chat"]["channelId"].as_str()),
        (200, Some("hello bob"), Some(channel_id.as_str()))
    );
    assert!(one["chat"].get("clientMsgId").is_none(), "the idempotency key is the sender's");
    let (_, list) =
        rest.call("GET", &format!("/api/v1/chats?channelId={channel_id}&pageSize=2"), Some(&tb), Value::Null).await;
    let texts: Vec<&str> = list["chats"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap()).collect();
    assert_eq!(texts, vec!["second", "hello bob"], "newest first");
    assert!(list["nextPageToken"].as_str().is_some_and(|t| !t.is_empty()));

    let (status, removed) =
        rest.call("DELETE", "/api/v1/chats/remove-multiple", Some(&tb), json!({"chatIds": [chat_ids[1]]})).await;
    assert_eq!((status, removed["outcomes"][0]["ok"].as_bool()), (200, Some(true)));
    let (_, list) = rest.call("GET", &format!("/api/v1/chats?channelId={channel_id}"), Some(&tb), Value::Null).await;
    let listed: Vec<&Value> = list["chats"].as_array().unwrap().iter().map(|c| &c["chatId"]).collect();
    assert!(!listed.is_empty() && !listed.contains(&&json!(chat_ids[1])), "removed for bob only: {listed:?}");
    let (status, retracted) =
        rest.call("PUT", "/api/v1/chats/retract-multiple", Some(&ta), json!({"chatIds": [chat_ids[0]]})).await;
    assert_eq!((status, retracted["outcomes"][0]["ok"].as_bool()), (200, Some(true)));
    let (_, one) = rest.call("GET", &format!("/api/v1/chats/{}", chat_ids[0]), Some(&tb), Value::Null).await;
    assert_eq!((one["chat"]["retracted"].as_bool(), one["chat"].get("text")), (Some(true), None));

    let (_, again) = rest
        .call("POST", "/api/v1/chats", Some(&tb), json!({"channelId": channel_id, "text": "hello again, Ada"}))
        .await;
    app.search_caught_up().await;
    let path = format!("/api/v1/chats-search?query=HELLO&channelId={channel_id}&startTime=2020-01-01T00:00:00Z");
    let (status, search) = rest.call("GET", &path, Some(&ta), Value::Null).await;
    assert_eq!(status, 200, "{search}");
    let hits = search["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "the retracted chat is not found: {search}");
    assert_eq!(hits[0]["chat"]["chatId"], again["chat"]["chatId"]);
    assert_eq!(hits[0]["snippet"], "<em>hello</em> again, Ada");
    let (status, search) = rest
        .call("GET", "/api/v1/chats-search?query=hello&startTime=2030-01-01T00:00:00Z", Some(&ta), Value::Null)
        .await;
    assert_eq!((status, search["hits"].as_array().map(Vec::len)), (200, None), "nothing after 2030: {search}");
    let (status, search) = rest.call("GET", "/api/v1/chats-search?query=%3F", Some(&ta), Value::Null).await;
    assert_eq!((status, search["hits"].as_array().map(Vec::len)), (200, None), "no searchable word, no hits: {search}");
    let (status, search) = rest.call("GET", "/api/v1/chats-search?query=%20%20", Some(&ta), Value::Null).await;
    assert_error(status, &search, 400, "INVALID_ARGUMENT");
    assert!(search["message"].as_str().unwrap().starts_with("query"), "{search}");
}

#[tokio::test]
async fn errors_come_in_one_shape() {
    let app = TestApp::spawn().await;
    let rest = Rest { app: &app };
    let ada = app.user("ada").await;
    let (status, body) = rest.call("GET", "/api/v1/users/me", None, Value::Null).await;
    assert_error(status, &body, 401, "UNAUTHENTICATED");
    let (status, body) = rest.call("GET", "/api/v1/users/me", Some("forged.token.here"), Value::Null).await;
    assert_error(status, &body, 401, "UNAUTHENTICATED");
    let (_, head, _) = raw::http_with_body(app.rest_addr, "GET", "/api/v1/users/me", &[], "").await;
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    let (status, body) =
        rest.call("POST", "/api/v1/auth/login?password=secret", None, json!({"email": "a@b.co"})).await;
    assert_error(status, &body, 400, "INVALID_ARGUMENT");
    let (status, body) = rest
        .call(
            "PATCH",
            "/api/v1/channels/1/members/2",
            Some(&ada.token),
            json!({"userId": "3", "role": "MEMBER_ROLE_ADMIN"}),
        )
        .await;
    assert_error(status, &body, 400, "INVALID_ARGUMENT");
    assert!(body["message"].as_str().unwrap().starts_with("userId"), "{body}");
    let (status, body) = rest.call("GET", "/api/v1/users/%FF", Some(&ada.token), Value::Null).await;
    assert_error(status, &body, 400, "INVALID_ARGUMENT");
    let (status, body) = rest.call("GET", "/api/v1/nothing-here", Some(&ada.token), Value::Null).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body) = rest.call("PUT", "/api/v1/users/me", Some(&ada.token), Value::Null).await;
    assert_error(status, &body, 405, "METHOD_NOT_ALLOWED");
    let (status, _, text) = raw::http_with_body(
        app.rest_addr,
        "POST",
        "/api/v1/chats",
        &[("authorization", &format!("Bearer {}", ada.token))],
        "{not json",
    )
    .await;
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_error(status, &body, 400, "INVALID_ARGUMENT");
    assert!(body["message"].as_str().unwrap().contains("malformed JSON"));
    let (status, body) = rest
        .call("POST", "/api/v1/chats", Some(&ada.token), json!({"channelId": "1", "text": "x", "senderId": "42"}))
        .await;
    assert_error(status, &body, 400, "INVALID_ARGUMENT");
    assert!(body["message"].as_str().unwrap().contains("senderId"), "unknown fields are named: {body}");
    let (status, body) = rest
        .call("POST", "/api/v1/users", None, json!({"email": "nope", "password": "correct horse", "name": "X"}))
        .await;
    assert_error(status, &body, 400, "INVALID_ARGUMENT");
    assert_eq!(body["details"][1]["fieldViolations"][0]["field"], "email");
    let big = json!({"channelId": "1", "text": "x".repeat(2 * 1024 * 1024)});
    let (status, body) = rest.call("POST", "/api/v1/chats", Some(&ada.token), big).await;
    assert_error(status, &body, 413, "PAYLOAD_TOO_LARGE");
    let (status, body) = rest.call("GET", "/api/v1/channels/123456", Some(&ada.token), Value::Null).await;
    assert_error(status, &body, 404, "NOT_FOUND");
    assert_eq!(body["details"][0]["reason"], "CHANNEL_NOT_FOUND");

    for _ in 0..11 {
        rest.call(
            "POST",
            "/api/v1/auth/login",
            None,
            json!({"email": "ada@example.com", "password": "wrong password"}),
        )
        .await;
    }
    let (status, head, text) = raw::http_with_body(
        app.rest_addr,
        "POST",
        "/api/v1/auth/login",
        &[],
        &json!({"email": "ada@example.com", "password": "wrong password"}).to_string(),
    )
    .await;
    assert_error(status, &serde_json::from_str(&text).unwrap(), 429, "RESOURCE_EXHAUSTED");
    assert!(head.contains("retry-after:"), "{head}");
}

#[tokio::test]
async fn rest_and_grpc_answer_the_same_data() {
    let app = TestApp::spawn().await;
    let rest = Rest { app: &app };
    let ada = app.user("ada").await;
    let channel = app.group(&ada, chatmesh_api::channel::v1::ChannelVisibility::Private, &[]).await;
    let (_, chat) = rest
        .call(
            "POST",
            "/api/v1/chats",
            Some(&ada.token),
            json!({"channelId": channel.channel_id, "text": "same everywhere"}),
        )
        .await;
    let chat_id = chat["chat"]["chatId"].as_str().unwrap().to_owned();

    let user = app
        .users()
        .await
        .get_user(authed(&ada.token, GetUserRequest { user_id: ada.id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let (_, rest_user) = rest.call("GET", &format!("/api/v1/users/{}", ada.id), Some(&ada.token), Value::Null).await;
    assert_eq!(rest_user["user"]["userId"], user.user_id);
    assert_eq!(rest_user["user"]["email"], user.email);
    assert_eq!(rest_user["user"]["name"], user.name);

    let got = app
        .channels()
        .await
        .get_channel(authed(&ada.token, GetChannelRequest { channel_id: channel.channel_id.clone() }))
        .await
        .unwrap()
        .into_inner();
    let (_, rest_channel) =
        rest.call("GET", &format!("/api/v1/channels/{}", channel.channel_id), Some(&ada.token), Value::Null).await;
    assert_eq!(rest_channel["channel"]["name"], got.channel.as_ref().unwrap().name);
    assert_eq!(rest_channel["channel"]["memberCount"], got.channel.as_ref().unwrap().member_count);
    assert_eq!(rest_channel["membership"]["role"], "MEMBER_ROLE_OWNER");

    let grpc_chat = app
        .chats()
        .await
        .get_chat(authed(&ada.token, GetChatRequest { chat_id: chat_id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .chat
        .unwrap();
    let (_, rest_chat) = rest.call("GET", &format!("/api/v1/chats/{chat_id}"), Some(&ada.token), Value::Null).await;
    assert_eq!(rest_chat["chat"]["text"], grpc_chat.text);
    assert_eq!(rest_chat["chat"]["senderId"], grpc_chat.sender_id);
    let seconds = grpc_chat.created_at.unwrap().seconds;
    let rest_time = rest_chat["chat"]["createdAt"].as_str().unwrap();
    let parsed: prost_types::Timestamp = rest_time.parse().unwrap();
    assert_eq!(parsed.seconds, seconds, "{rest_time}");
}

#[tokio::test]
async fn routes_taking_an_id_refuse_outsiders_without_data() {
    let app = TestApp::spawn().await;
    let rest = Rest { app: &app };
    let ada = app.user("ada").await;
    let eve = app.user("eve").await;
    let channel = app.group(&ada, chatmesh_api::channel::v1::ChannelVisibility::Private, &[]).await;
    let id = channel.channel_id.clone();
    let (_, chat) =
        rest.call("POST", "/api/v1/chats", Some(&ada.token), json!({"channelId": id, "text": "private words"})).await;
    let chat_id = chat["chat"]["chatId"].as_str().unwrap().to_owned();
    for (method, path, body) in [
        ("GET", format!("/api/v1/channels/{id}"), Value::Null),
        ("PATCH", format!("/api/v1/channels/{id}"), json!({"name": "mine"})),
        ("DELETE", format!("/api/v1/channels/{id}"), Value::Null),
        ("GET", format!("/api/v1/channels/{id}/members"), Value::Null),
        ("DELETE", format!("/api/v1/channels/{id}/members/{}", ada.id), Value::Null),
        ("PATCH", format!("/api/v1/channels/{id}/members/{}", ada.id), json!({"role": "MEMBER_ROLE_MEMBER"})),
        ("POST", format!("/api/v1/channels/{id}/close"), json!({})),
        ("GET", format!("/api/v1/channels/{id}/events"), Value::Null),
        ("GET", format!("/api/v1/chats/{chat_id}"), Value::Null),
        ("PATCH", format!("/api/v1/chats/{chat_id}"), json!({"text": "edited"})),
        ("GET", format!("/api/v1/chats?channelId={id}"), Value::Null),
        ("POST", "/api/v1/chats".to_owned(), json!({"channelId": id, "text": "intruder"})),
    ] {
        let (status, body) = rest.call(method, &path, Some(&eve.token), body).await;
        // why: 404, not 403, so an outsider cannot tell a private channel exists
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(body["code"], status);
        assert!(!body.to_string().contains("private words") && !body.to_string().contains("team"), "no data: {body}");
    }
}

#[tokio::test]
async fn outsiders_of_a_public_channel_see_it_but_may_not_act_in_it() {
    let app = TestApp::spawn().await;
    let rest = Rest { app: &app };
    let ada = app.user("ada").await;
    let eve = app.user("eve").await;
    let channel = app.group(&ada, chatmesh_api::channel::v1::ChannelVisibility::Public, &[]).await;
    let id = channel.channel_id.clone();
    let (status, seen) = rest.call("GET", &format!("/api/v1/channels/{id}"), Some(&eve.token), Value::Null).await;
    assert_eq!(
        (status, seen["channel"]["channelId"].as_str()),
        (200, Some(id.as_str())),
        "a public channel is visible"
    );
    for (method, path, body) in [
        ("PATCH", format!("/api/v1/channels/{id}"), json!({"name": "mine"})),
        ("DELETE", format!("/api/v1/channels/{id}"), Value::Null),
        ("DELETE", format!("/api/v1/channels/{id}/members/{}", ada.id), Value::Null),
        ("PATCH", format!("/api/v1/channels/{id}/members/{}", ada.id), json!({"role": "MEMBER_ROLE_MEMBER"})),
        ("POST", format!("/api/v1/channels/{id}/close"), json!({})),
        ("POST", "/api/v1/chats".to_owned(), json!({"channelId": id, "text": "intruder"})),
    ] {
        let (status, body) = rest.call(method, &path, Some(&eve.token), body).await;
        // why: the channel's existence is public, so the refusal says what is missing
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert_eq!(body["code"], status);
    }
}

#[tokio::test]
async fn cors_allows_the_configured_origins_only() {
    let mut config = chatmesh_tests::test_config(tempfile::tempdir().unwrap().keep());
    config.rest.cors_origins = vec!["https://app.example".into()];
    let app = TestApp::spawn_with(config).await;
    let preflight = |origin: &'static str| {
        let addr = app.rest_addr;
        async move {
            let headers = [("origin", origin), ("access-control-request-method", "POST")];
            raw::http_with_body(addr, "OPTIONS", "/api/v1/chats", &headers, "").await.1
        }
    };
    assert!(preflight("https://app.example").await.contains("access-control-allow-origin: https://app.example"));
    assert!(!preflight("https://evil.example").await.contains("access-control-allow-origin"));
    let (status, _, body) = raw::http_with_body(app.rest_addr, "GET", "/openapi.json", &[], "").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"openapi\":\"3.1.0\""));
}
