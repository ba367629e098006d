//! Live delivery through the real WebSocket gateway and dispatcher, with real sockets.

use std::{collections::BTreeMap, time::Duration};

use chatmesh_api::{
    channel::v1::{self as channel_pb, ChannelVisibility},
    chat::v1::{self as pb, ChatKind},
    dispatcher::v1::{
        GetPresenceRequest, PresenceStatus, PublishRequest,
        dispatcher_internal_service_client::DispatcherInternalServiceClient,
        dispatcher_service_client::DispatcherServiceClient,
    },
    user::v1::LogoutRequest,
};
use chatmesh_tests::{
    TestApp, User, authed,
    ws::{self, Received},
};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{
    Message,
    protocol::frame::{Frame, coding::OpCode},
};

const WAIT: Duration = Duration::from_secs(10);

async fn send(app: &TestApp, who: &User, channel_id: &str, text: &str) -> pb::Chat {
    let request = pb::CreateChatRequest { channel_id: channel_id.into(), text: text.into(), ..Default::default() };
    app.chats().await.create_chat(authed(&who.token, request)).await.expect("send").into_inner().chat.unwrap()
}

/// Frames until the chat.created of `chat_id`, which is returned.
async fn until_chat(socket: &mut ws::Socket, chat_id: &str) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Some(frame) =
        ws::next_frame(socket, deadline.saturating_duration_since(tokio::time::Instant::now())).await
    {
        if frame["event"] == "chat.created" && frame["data"]["chat"]["chatId"] == chat_id {
            return Some(frame);
        }
    }
    None
}

/// The next answer to a client frame (`error` or `pong`), skipping live events that
/// arrive meanwhile (e.g. the announcement of the channel just created).
async fn reply(socket: &mut ws::Socket) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Some(frame) =
        ws::next_frame(socket, deadline.saturating_duration_since(tokio::time::Instant::now())).await
    {
        if matches!(frame["event"].as_str(), Some("error" | "pong")) {
            return Some(frame);
        }
    }
    None
}

/// The frames up to the chat.created of `chat_id`, which comes last. A connection gets the
/// change feed in its order, so a chat it should not get, sent before `chat_id`, would be among
/// them: no waiting to see that something does not come.
async fn frames_through_chat(socket: &mut ws::Socket, chat_id: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    while let Some(frame) =
        ws::next_frame(socket, deadline.saturating_duration_since(tokio::time::Instant::now())).await
    {
        let done = frame["event"] == "chat.created" && frame["data"]["chat"]["chatId"] == chat_id;
        seen.push(frame);
        if done {
            return seen;
        }
    }
    panic!("chat {chat_id} did not arrive; before it: {seen:?}");
}

/// Whether a chat.created for `chat_id` arrives within `wait`.
async fn gets_chat(socket: &mut ws::Socket, chat_id: &str, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    while let Some(frame) =
        ws::next_frame(socket, deadline.saturating_duration_since(tokio::time::Instant::now())).await
    {
        if frame["event"] == "chat.created" && frame["data"]["chat"]["chatId"] == chat_id {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn a_chat_reaches_every_member_socket_and_no_outsider() {
    let app = TestApp::spawn().await;
    let (ada, bob, eve) = (app.user("ada").await, app.user("bob").await, app.user("eve").await);
    let id = app.group(&ada, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let eves = app.group(&eve, ChannelVisibility::Private, &[]).await.channel_id;
    let (mut ada_ws, ready) = ws::connect(app.ws_addr, &ada.token, "").await;
    assert_eq!(ready["data"]["userId"], ada.id);
    assert!(ready["data"]["channels"].as_array().unwrap().iter().any(|c| c["channelId"] == id));
    let (mut bob_ws, _) = ws::connect(app.ws_addr, &bob.token, "").await;
    let (mut eve_ws, _) = ws::connect(app.ws_addr, &eve.token, "").await;
    let (mut scoped, _) = ws::connect(app.ws_addr, &bob.token, &format!("&channel_id={id}")).await;

    let chat = send(&app, &ada, &id, "hello everyone").await;
    for socket in [&mut ada_ws, &mut bob_ws, &mut scoped] {
        let frame = until_chat(socket, &chat.chat_id).await.expect("members get the chat");
        assert_eq!(frame["data"]["chat"]["text"], "hello everyone");
        assert!(frame["data"]["eventId"].as_str().is_some_and(|id| !id.is_empty()));
    }
    // a non-member gets nothing: her own chat, sent after ada's, reaches her with nothing of ada's before it
    let hers = send(&app, &eve, &eves, "mine").await;
    let seen = frames_through_chat(&mut eve_ws, &hers.chat_id).await;
    assert!(seen.iter().all(|f| f["data"]["chat"]["chatId"] != chat.chat_id), "a non-member got it: {seen:?}");

    // a channel joined while connected is followed at once
    let carol = app.user("carol").await;
    let (mut carol_ws, _) = ws::connect(app.ws_addr, &carol.token, "").await;
    let invite = channel_pb::CreateMemberRequest { channel_id: id.clone(), user_id: carol.id.clone() };
    app.channels().await.create_member(authed(&ada.token, invite)).await.unwrap();
    ws::until(&mut carol_ws, "member.joined", WAIT).await.expect("carol hears she joined");
    let later = send(&app, &bob, &id, "welcome carol").await;
    assert!(gets_chat(&mut carol_ws, &later.chat_id, WAIT).await);

    // a socket scoped to another user's private channel is refused
    let url = format!("ws://{}/?token={}&channel_id={id}", app.ws_addr, eve.token);
    let (mut refused, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(ws::next(&mut refused, WAIT).await, Some(Received::Closed(Some(4004))));
}

#[tokio::test]
async fn a_kicked_user_gets_nothing_sent_after_the_kick_not_even_on_resume() {
    let app = TestApp::spawn().await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    let id = app.group(&ada, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let still = app.group(&ada, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let (mut bob_ws, _) = ws::connect(app.ws_addr, &bob.token, "").await;
    let before = send(&app, &ada, &id, "before").await;
    let seen = until_chat(&mut bob_ws, &before.chat_id).await.unwrap();
    let last_event = seen["data"]["eventId"].as_str().unwrap().to_owned();

    let kick = channel_pb::DeleteMemberRequest { channel_id: id.clone(), user_id: bob.id.clone() };
    app.channels().await.delete_member(authed(&ada.token, kick)).await.unwrap();
    let after = send(&app, &ada, &id, "after the kick").await;
    // a chat sent after it in a channel he is still in reaches him, with nothing of the other before it
    let marker = send(&app, &ada, &still, "in a channel bob is still in").await;
    let seen = frames_through_chat(&mut bob_ws, &marker.chat_id).await;
    assert!(
        seen.iter().all(|f| f["data"]["chat"]["chatId"] != after.chat_id),
        "something sent after the kick reached him: {seen:?}"
    );

    let (mut again, _) = ws::connect(app.ws_addr, &bob.token, "").await;
    ws::send(&mut again, json!({"event": "resume", "data": {"channels": {id.clone(): last_event}}})).await;
    let frames = ws::until(&mut again, "resumed", WAIT).await.expect("the resume completes");
    assert!(frames.iter().all(|f| f["data"]["chat"]["chatId"] != after.chat_id), "not replayed either");
    assert!(frames.iter().any(|f| f["event"] == "resync" && f["data"]["channelId"] == id));
}

/// The client's view of a channel: chat id → (text, retracted), from chat events.
fn apply(state: &mut BTreeMap<String, (String, bool)>, frame: &Value) {
    if let Some(chat) = frame["data"].get("chat")
        && matches!(frame["event"].as_str(), Some("chat.created" | "chat.edited" | "chat.retracted"))
        && chat["kind"] == "CHAT_KIND_TEXT"
    {
        let text = chat["text"].as_str().unwrap_or_default().to_owned();
        state.insert(chat["chatId"].as_str().unwrap().to_owned(), (text, chat["retracted"] == true));
    }
}

#[tokio::test]
async fn resume_after_three_hundred_chats_edits_and_retractions_ends_in_the_server_state() {
    let app = TestApp::spawn().await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    let id = app.group(&ada, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let mut early = Vec::new();
    for i in 0..5 {
        early.push(send(&app, &ada, &id, &format!("early {i}")).await);
    }
    let (mut socket, _) = ws::connect(app.ws_addr, &bob.token, "").await;
    let mut state = BTreeMap::new();
    let marker = send(&app, &ada, &id, "marker").await;
    let mut last_event = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Some(frame) =
        ws::next_frame(&mut socket, deadline.saturating_duration_since(tokio::time::Instant::now())).await
    {
        last_event = frame["data"]["eventId"].as_str().unwrap_or(&last_event).to_owned();
        if frame["data"]["chat"]["chatId"] == marker.chat_id {
            break;
        }
    }
    // the client starts from history it fetched, then goes away
    for chat in app
        .chats()
        .await
        .list_chats(authed(
            &bob.token,
            pb::ListChatsRequest { channel_id: id.clone(), page_size: 100, ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .chats
    {
        if chat.kind() == ChatKind::Text {
            state.insert(chat.chat_id, (chat.text, chat.retracted));
        }
    }
    drop(socket);

    let mut chats = app.chats().await;
    for i in 0..300 {
        send(&app, &ada, &id, &format!("while away {i}")).await;
    }
    chats
        .edit_chat(authed(
            &ada.token,
            pb::EditChatRequest { chat_id: early[1].chat_id.clone(), text: "early 1, edited".into() },
        ))
        .await
        .unwrap();
    chats
        .retract_chats(authed(
            &ada.token,
            pb::RetractChatsRequest { chat_ids: vec![early[2].chat_id.clone(), marker.chat_id.clone()] },
        ))
        .await
        .unwrap();

    let (mut socket, _) = ws::connect(app.ws_addr, &bob.token, "").await;
    ws::send(&mut socket, json!({"event": "resume", "data": {"channels": {id.clone(): last_event}}})).await;
    let tail = send(&app, &ada, &id, "live during the resume").await;
    let frames = ws::until(&mut socket, "resumed", WAIT).await.expect("the resume completes");
    let mut ids = Vec::new();
    for frame in &frames {
        apply(&mut state, frame);
        if let Some(event_id) = frame["data"]["eventId"].as_str() {
            ids.push(event_id.parse::<u64>().unwrap());
        }
    }
    if !state.contains_key(&tail.chat_id) {
        let frame = until_chat(&mut socket, &tail.chat_id).await.expect("the live chat arrives after the replay");
        ids.push(frame["data"]["eventId"].as_str().unwrap().parse().unwrap());
        apply(&mut state, &frame);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "no event twice, none out of order");

    let mut server = BTreeMap::new();
    let mut after = "1".to_owned();
    loop {
        let request =
            pb::ListChatsRequest { channel_id: id.clone(), after: after.clone(), page_size: 100, ..Default::default() };
        let page = chats.list_chats(authed(&bob.token, request)).await.unwrap().into_inner();
        let Some(last) = page.chats.last() else { break };
        after = last.chat_id.clone();
        for chat in page.chats.into_iter().filter(|c| c.kind() == ChatKind::Text) {
            server.insert(chat.chat_id, (chat.text, chat.retracted));
        }
    }
    assert_eq!(server.len(), 307);
    assert_eq!(state, server, "the client ends with exactly the server's state");
}

#[tokio::test]
async fn past_the_replay_cap_the_client_gets_resync() {
    let mut config = chatmesh_tests::test_config(tempfile::tempdir().unwrap().keep());
    config.ws.replay_cap = 10;
    let app = TestApp::spawn_with(config).await;
    let ada = app.user("ada").await;
    let id = app.group(&ada, ChannelVisibility::Private, &[]).await.channel_id;
    // why: publishing trails the sends; wait until it is done so no live event joins the resume.
    let (mut watcher, _) = ws::connect(app.ws_addr, &ada.token, "").await;
    let mut last = String::new();
    for i in 0..30 {
        last = send(&app, &ada, &id, &format!("{i}")).await.chat_id;
    }
    until_chat(&mut watcher, &last).await.expect("every chat published");
    let (mut socket, _) = ws::connect(app.ws_addr, &ada.token, "").await;
    ws::send(&mut socket, json!({"event": "resume", "data": {"channels": {id.clone(): "1"}}})).await;
    let frames = ws::until(&mut socket, "resumed", WAIT).await.unwrap();
    assert!(
        frames
            .iter()
            .any(|f| f["event"] == "resync" && f["data"]["channelId"] == id && f["data"]["reason"] == "replay_cap")
    );
    assert!(!frames.iter().any(|f| f["event"] == "chat.created"), "no partial replay");
}

#[tokio::test]
async fn the_seed_shaped_on_ack_moves_the_pointer_and_the_other_member_sees_it() {
    let app = TestApp::spawn().await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    let direct = channel_pb::CreateChannelRequest {
        kind: channel_pb::ChannelKind::Direct as i32,
        member_ids: vec![bob.id.clone()],
        ..Default::default()
    };
    let id = app.create_channel(&ada, direct).await;
    let (mut ada_ws, _) = ws::connect(app.ws_addr, &ada.token, "").await;
    let (mut bob_ws, _) = ws::connect(app.ws_addr, &bob.token, "").await;
    let chat = send(&app, &ada, &id, "read me").await;
    let created = until_chat(&mut bob_ws, &chat.chat_id).await.unwrap();
    let created_at = created["data"]["chat"]["createdAt"].as_str().unwrap().to_owned();
    let channel_number: u64 = id.parse().unwrap();
    ws::send(&mut bob_ws, json!({"event": "onAck", "data": {"channelId": channel_number, "createdAt": created_at}}))
        .await;

    let acked = ws::until(&mut ada_ws, "chat.acked", WAIT).await.expect("the other member sees the receipt");
    let pointer = &acked.last().unwrap()["data"]["readPointer"];
    assert_eq!(pointer["userId"], bob.id);
    assert_eq!(pointer["lastReadChatId"], chat.chat_id);
    let counts = app
        .chats()
        .await
        .get_unread_counts(authed(&bob.token, pb::GetUnreadCountsRequest { channel_ids: vec![id.clone()] }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (counts.counts[0].unread_count, counts.counts[0].last_read_chat_id.as_str()),
        (0, chat.chat_id.as_str())
    );

    // typing and presence, in a direct channel
    ws::send(&mut ada_ws, json!({"event": "typing", "data": {"channelId": id}})).await;
    let typing = ws::until(&mut bob_ws, "typing", WAIT).await.unwrap();
    assert_eq!(typing.last().unwrap()["data"]["userId"], ada.id);
    let presence = DispatcherServiceClient::new(app.channel().await)
        .get_presence(authed(&bob.token, GetPresenceRequest { user_ids: vec![ada.id.clone()] }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(presence.presences[0].status(), PresenceStatus::Online);
    drop(ada_ws);
    let offline = ws::until(&mut bob_ws, "presence", WAIT).await.unwrap();
    assert_eq!(offline.last().unwrap()["data"]["status"], "PRESENCE_STATUS_OFFLINE");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_as_slow_while_another_gets_everything() {
    let mut config = chatmesh_tests::test_config(tempfile::tempdir().unwrap().keep());
    config.ws.drain_secs = 30;
    let app = TestApp::spawn_with(config).await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    let id = app.group(&ada, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let (mut slow, _) = ws::connect(app.ws_addr, &bob.token, "").await;
    let (mut reader, _) = ws::connect(app.ws_addr, &bob.token, "").await;
    let big = "x".repeat(3900);
    // why: enough bytes to fill the socket buffers and both session queues (frames are shared, not copied)
    let count = 4000;
    let drain = tokio::spawn(async move {
        let mut got = 0;
        while let Some(frame) = ws::next_frame(&mut reader, WAIT).await {
            if frame["event"] == "chat.created" {
                got += 1;
                if got == count {
                    break;
                }
            }
        }
        got
    });
    let chats = app.chats().await;
    let sends = (0..count).map(|i| {
        let mut chats = chats.clone();
        let request =
            pb::CreateChatRequest { channel_id: id.clone(), text: format!("{i} {big}"), ..Default::default() };
        let token = ada.token.clone();
        async move { chats.create_chat(authed(&token, request)).await.map(|_| ()) }
    });
    // why: few in flight, so a client that reads keeps up on two loaded cores; the one that does
    // not read still overflows its 1,024-frame queue
    let sent: Vec<_> = futures::stream::iter(sends).buffer_unordered(4).collect().await;
    assert!(sent.iter().all(Result::is_ok));
    assert_eq!(drain.await.unwrap(), count, "the reading client got every chat");
    let mut close = None;
    while let Some(received) = ws::next(&mut slow, WAIT).await {
        if let Received::Closed(code) = received {
            close = Some(code);
            break;
        }
    }
    assert_eq!(close, Some(Some(4008)), "closed with the slow-consumer code");
}

#[tokio::test]
async fn malformed_frames_get_errors_or_close_codes_and_others_keep_receiving() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let id = app.group(&ada, ChannelVisibility::Private, &[]).await.channel_id;
    let (mut good, _) = ws::connect(app.ws_addr, &ada.token, "").await;
    let (mut bad, _) = ws::connect(app.ws_addr, &ada.token, "").await;
    let error_code = |frame: Option<Value>| frame.map(|f| (f["event"].clone(), f["data"]["code"].clone()));

    bad.send(Message::Text("not json".into())).await.unwrap();
    assert_eq!(error_code(reply(&mut bad).await), Some((json!("error"), json!("MALFORMED_FRAME"))));
    ws::send(&mut bad, json!({"event": "nope", "data": {}})).await;
    assert_eq!(error_code(reply(&mut bad).await), Some((json!("error"), json!("UNKNOWN_EVENT"))));
    bad.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(error_code(reply(&mut bad).await), Some((json!("error"), json!("BINARY_NOT_ACCEPTED"))));
    ws::send(&mut bad, json!({"event": "ping", "data": {}})).await;
    assert_eq!(reply(&mut bad).await.unwrap()["event"], "pong");
    ws::send(&mut bad, json!({"event": "ack", "data": {"channelId": "nope"}})).await;
    assert_eq!(error_code(reply(&mut bad).await).unwrap().1, json!("INVALID_ARGUMENT"));

    let chat = send(&app, &ada, &id, "still here").await;
    assert!(gets_chat(&mut good, &chat.chat_id, WAIT).await);

    bad.send(Message::Text("y".repeat(70 * 1024).into())).await.unwrap();
    let mut code = None;
    while let Some(received) = ws::next(&mut bad, WAIT).await {
        if let Received::Closed(c) = received {
            code = c;
            break;
        }
    }
    assert_eq!(code, Some(1009), "oversized messages close with 1009");

    let (mut invalid, _) = ws::connect(app.ws_addr, &ada.token, "").await;
    invalid
        .send(Message::Frame(Frame::message(
            vec![0xff, 0xfe, 0xfd],
            OpCode::Data(tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text),
            true,
        )))
        .await
        .unwrap();
    let mut code = None;
    while let Some(received) = ws::next(&mut invalid, WAIT).await {
        if let Received::Closed(c) = received {
            code = c;
            break;
        }
    }
    assert_eq!(code, Some(1007), "invalid UTF-8 closes with 1007");

    let chat = send(&app, &ada, &id, "and still here").await;
    assert!(gets_chat(&mut good, &chat.chat_id, WAIT).await, "the well-behaved connection kept receiving");
}

#[tokio::test]
async fn bad_tokens_are_refused_before_the_upgrade_and_logout_closes_sockets() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    for query in ["", "?token=forged", "?token="] {
        let url = format!("ws://{}/{query}", app.ws_addr);
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401, "{query}"),
            other => panic!("{query}: expected 401, got {other:?}"),
        }
    }
    let (mut socket, _) = ws::connect(app.ws_addr, &ada.token, "").await;
    app.users().await.logout(authed(&ada.token, LogoutRequest {})).await.unwrap();
    let mut code = None;
    while let Some(received) = ws::next(&mut socket, WAIT).await {
        if let Received::Closed(c) = received {
            code = c;
            break;
        }
    }
    assert_eq!(code, Some(4003), "logging out closes the device's sockets");

    let mut internal = DispatcherInternalServiceClient::new(app.channel().await);
    let (_, tokens) = app.register("bob@example.com").await;
    let status = internal.publish(authed(&tokens.access_token, PublishRequest::default())).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
}

/// How many sessions the gateway closed with `code` (from its metrics).
async fn closes(app: &TestApp, code: u16) -> u64 {
    let (_, page) = chatmesh_tests::raw::http(app.metrics_addr, "GET", "/metrics", &[]).await;
    let line = format!("chatmesh_ws_closes_total{{code=\"{code}\"}}");
    page.lines().find_map(|l| l.strip_prefix(&line)?.trim().parse::<f64>().ok()).map_or(0, |v| v as u64)
}

/// Reads until the socket closes; returns the close code.
async fn close_code(socket: &mut ws::Socket, wait: Duration) -> Option<u16> {
    while let Some(received) = ws::next(socket, wait).await {
        if let Received::Closed(code) = received {
            return code;
        }
    }
    None
}

#[tokio::test]
async fn a_peer_that_misses_pongs_is_closed() {
    let mut config = chatmesh_tests::test_config(tempfile::tempdir().unwrap().keep());
    config.ws.ping_interval_secs = 1;
    config.ws.pong_timeout_secs = 1;
    let app = TestApp::spawn_with(config).await;
    let ada = app.user("ada").await;
    let (mut answering, _) = ws::connect(app.ws_addr, &ada.token, "").await;
    let (mut silent, _) = ws::connect(app.ws_addr, &ada.token, "").await;
    // the answering client reads (its library answers pings); the silent one reads nothing
    // until the server has closed a session for missed pongs
    let deadline = tokio::time::Instant::now() + WAIT;
    while closes(&app, 4009).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no session was closed for missed pongs");
        // why: a poll interval spent reading the answering socket, so its pings are answered
        if let Ok(received) = tokio::time::timeout(Duration::from_millis(50), answering.next()).await {
            assert!(matches!(received, Some(Ok(ref m)) if !m.is_close()), "the answering peer: {received:?}");
        }
    }
    assert_eq!(close_code(&mut silent, WAIT).await, Some(4009));
    // its pongs were due before the silent one's (it connected first), and it is still open
    ws::send(&mut answering, json!({"event": "ping", "data": {}})).await;
    assert_eq!(reply(&mut answering).await.expect("a pong")["event"], "pong", "no close while pongs come back");
}

/// When an access token expires (its `exp`, Unix seconds).
fn expiry(token: &str) -> u64 {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url claims");
    serde_json::from_slice::<Value>(&claims).expect("JSON claims")["exp"].as_u64().expect("exp")
}

#[tokio::test]
async fn an_expiring_token_closes_the_socket_unless_renewed_in_band() {
    let mut config = chatmesh_tests::test_config(tempfile::tempdir().unwrap().keep());
    config.auth.access_ttl_secs = 6;
    let app = TestApp::spawn_with(config).await;
    let (_, tokens) = app.register("ada@example.com").await;
    let (mut expiring, _) = ws::connect(app.ws_addr, &tokens.access_token, "").await;
    let (mut renewed, _) = ws::connect(app.ws_addr, &tokens.access_token, "").await;
    // a refreshed token of the same login session renews the socket in band. Expiries are whole
    // seconds: refresh until a token expires 3 s after the first, so the socket is renewed
    // seconds before the first expiry and is seen open seconds after it
    let first = expiry(&tokens.access_token);
    let mut refresh_token = tokens.refresh_token.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    let fresh = loop {
        let refresh = chatmesh_api::user::v1::RefreshTokenRequest { refresh_token };
        let fresh = app.users().await.refresh_token(refresh).await.unwrap().into_inner().tokens.unwrap();
        if expiry(&fresh.access_token) >= first + 3 {
            break fresh;
        }
        assert!(tokio::time::Instant::now() < deadline, "no refreshed token expired later than the first");
        refresh_token = fresh.refresh_token;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    ws::send(&mut renewed, json!({"event": "auth", "data": {"token": fresh.access_token}})).await;
    assert_eq!(ws::next_frame(&mut renewed, WAIT).await.unwrap()["event"], "authenticated");
    let other = app.login("ada@example.com", "correct horse battery").await.unwrap().access_token;
    assert_eq!(close_code(&mut expiring, WAIT).await, Some(4001));
    // the renewed socket outlives the first token; another login session's token is refused
    ws::send(&mut renewed, json!({"event": "auth", "data": {"token": other}})).await;
    let refused = ws::next_frame(&mut renewed, WAIT).await.expect("the renewed socket still open");
    assert_eq!(refused["data"]["code"], "PERMISSION_DENIED", "{refused}");
}

#[tokio::test]
async fn members_hear_a_deletion_and_a_socket_scoped_to_a_left_channel_is_closed() {
    let app = TestApp::spawn().await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    let mut channels = app.channels().await;
    let doomed = app.group(&ada, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let left = app.group(&ada, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let (mut bob_ws, _) = ws::connect(app.ws_addr, &bob.token, "").await;
    let (mut scoped, _) = ws::connect(app.ws_addr, &bob.token, &format!("&channel_id={left}")).await;

    channels
        .delete_channel(authed(&ada.token, channel_pb::DeleteChannelRequest { channel_id: doomed.clone() }))
        .await
        .unwrap();
    let heard = ws::until(&mut bob_ws, "channel.deleted", WAIT).await.expect("members hear the deletion");
    assert_eq!(heard.last().unwrap()["data"]["channelId"], doomed);

    let leave = channel_pb::DeleteMemberRequest { channel_id: left.clone(), user_id: bob.id.clone() };
    channels.delete_member(authed(&bob.token, leave)).await.unwrap();
    send(&app, &ada, &left, "after bob left").await;
    assert_eq!(
        close_code(&mut scoped, WAIT).await,
        Some(4004),
        "a socket for that channel alone has nothing left to follow"
    );
}
