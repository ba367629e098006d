//! DispatcherService.Subscribe, the gRPC live stream: a subscriber gets the events of the
//! channels it follows as committed, and the events addressed to it (new statuses of accounts
//! it follows); nothing else. Refusals answer before the stream opens; logout ends it.

use std::time::Duration;

use chatmesh_api::{
    channel::v1::ChannelVisibility,
    chat::v1::{self as chat, EventType},
    dispatcher::v1::{
        FeedEventType, GetPresenceRequest, PresenceStatus, SubscribeRequest, SubscribeResponse,
        dispatcher_service_client::DispatcherServiceClient, live_event::Event,
    },
    feed::v1::{CreateStatusRequest, Status as FeedStatus},
    user::v1::LogoutRequest,
};
use chatmesh_tests::{TestApp, User, authed, reason};
use tonic::{Code, Streaming};

/// Only guards against hanging: every wait below ends on the event it waits for.
const WAIT: Duration = Duration::from_secs(30);

async fn subscribe(
    app: &TestApp,
    who: &User,
    request: SubscribeRequest,
) -> Result<Streaming<SubscribeResponse>, tonic::Status> {
    let mut dispatcher = DispatcherServiceClient::new(app.channel().await);
    Ok(dispatcher.subscribe(authed(&who.token, request)).await?.into_inner())
}

/// The next event, skipping presence and typing (which come and go with other sessions).
async fn next(stream: &mut Streaming<SubscribeResponse>) -> Result<Event, tonic::Status> {
    loop {
        let message = tokio::time::timeout(WAIT, stream.message()).await.expect("an event before the wait ran out")?;
        match message.expect("the stream is open").event.and_then(|e| e.event) {
            Some(Event::Presence(_) | Event::Typing(_)) | None => continue,
            Some(event) => return Ok(event),
        }
    }
}

async fn send(app: &TestApp, who: &User, channel_id: &str, text: &str) -> chat::Chat {
    let request = chat::CreateChatRequest { channel_id: channel_id.into(), text: text.into(), ..Default::default() };
    app.chats().await.create_chat(authed(&who.token, request)).await.expect("send").into_inner().chat.expect("chat")
}

/// A chat in a channel of ada and cy's: no stream of bob's may carry it.
const NOT_FOR_BOB: &str = "not for bob";

/// The next chats created with one of the texts of `want`, as (channel, text), in the order
/// they came; other events (members joining, the notices saying so) are skipped.
async fn chats(stream: &mut Streaming<SubscribeResponse>, want: &[(String, &str)]) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    while seen.len() < want.len() {
        if let Event::ChannelEvent(e) = next(stream).await.expect("an event")
            && e.r#type() == EventType::ChatCreated
            && let Some(chat::channel_event::Payload::Chat(chat)) = e.payload
        {
            assert_ne!(chat.text, NOT_FOR_BOB, "a chat of a channel bob is not in");
            if !want.iter().any(|(_, text)| *text == chat.text) {
                continue;
            }
            seen.push((e.channel_id, chat.text));
        }
    }
    seen
}

fn owned(want: &[(String, &str)]) -> Vec<(String, String)> {
    want.iter().map(|(channel, text)| (channel.clone(), (*text).to_owned())).collect()
}

#[tokio::test]
async fn a_subscriber_gets_its_channels_events_in_order_and_only_its_own() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    let cy = app.user("cy").await;
    let ours = app.group(&ada, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let theirs = app.group(&ada, ChannelVisibility::Private, &[&cy]).await.channel_id;
    let mut everything = subscribe(&app, &bob, SubscribeRequest::default()).await.expect("subscribed");
    let mut one = subscribe(&app, &bob, SubscribeRequest { channel_id: ours.clone(), ..Default::default() })
        .await
        .expect("subscribed to one channel");

    send(&app, &ada, &theirs, NOT_FOR_BOB).await;
    let want = [(ours.clone(), "one"), (ours.clone(), "two"), (ours.clone(), "three")];
    for (channel, text) in &want {
        send(&app, &ada, channel, text).await;
    }
    assert_eq!(chats(&mut everything, &want).await, owned(&want));
    assert_eq!(chats(&mut one, &want).await, owned(&want));

    // a channel joined while subscribed is followed by the stream that follows every channel
    let later = app.group(&ada, ChannelVisibility::Private, &[&bob]).await.channel_id;
    send(&app, &ada, &later, "new here").await;
    send(&app, &ada, &ours, "four").await;
    let want = [(later, "new here"), (ours.clone(), "four")];
    assert_eq!(chats(&mut everything, &want).await, owned(&want));
    assert_eq!(chats(&mut one, &want[1..]).await, owned(&want[1..]));
}

#[tokio::test]
async fn user_events_only_carries_the_statuses_of_followed_accounts_and_no_chats() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    let cy = app.user("cy").await;
    app.follow(&bob, &ada).await;
    let channel = app.group(&ada, ChannelVisibility::Private, &[&bob]).await.channel_id;
    let mine = SubscribeRequest { user_events_only: true, ..Default::default() };
    let mut stream = subscribe(&app, &bob, mine).await.expect("subscribed");

    send(&app, &ada, &channel, "a chat the stream does not follow").await;
    let post = |who: &User, text: &str| {
        let request = authed(&who.token, CreateStatusRequest { text: text.into(), ..Default::default() });
        let app = &app;
        async move { app.feed().await.create_status(request).await.expect("post").into_inner().status.expect("status") }
    };
    post(&cy, "bob does not follow cy").await;
    let status = post(&ada, "hello followers").await;
    match next(&mut stream).await.expect("an event") {
        Event::FeedEvent(feed) => {
            assert_eq!(feed.r#type(), FeedEventType::StatusCreated);
            let carried = feed.status.expect("the status");
            let carried: FeedStatus = prost::Message::decode(carried.value.as_slice()).expect("a status");
            assert_eq!((carried.status_id, carried.text), (status.status_id, "hello followers".to_owned()));
        }
        other => panic!("expected the status, got {other:?}"),
    }
}

#[tokio::test]
async fn refused_subscriptions_answer_before_the_stream_opens() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    let private = app.group(&ada, ChannelVisibility::Private, &[]).await.channel_id;

    let status = subscribe(&app, &bob, SubscribeRequest { channel_id: private.clone(), ..Default::default() })
        .await
        .expect_err("not a member");
    assert!(matches!(status.code(), Code::NotFound | Code::PermissionDenied), "{status:?}");
    let both = SubscribeRequest { channel_id: private.clone(), user_events_only: true, ..Default::default() };
    let status = subscribe(&app, &ada, both).await.expect_err("one or the other");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("user_events_only:"), "{}", status.message());
    let resume = SubscribeRequest { last_event_ids: [(private, "5".to_owned())].into(), ..Default::default() };
    let status = subscribe(&app, &ada, resume).await.expect_err("resume is not built");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("last_event_ids"), "{}", status.message());
    let mut anonymous = DispatcherServiceClient::new(app.channel().await);
    let status = anonymous.subscribe(SubscribeRequest::default()).await.expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated, "{}", reason(&status));
}

#[tokio::test]
async fn a_subscriber_is_online_while_subscribed_and_logout_ends_its_stream() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    app.group(&ada, ChannelVisibility::Private, &[&bob]).await;
    let presence = || async {
        let request = authed(&ada.token, GetPresenceRequest { user_ids: vec![bob.id.clone()] });
        let answer = DispatcherServiceClient::new(app.channel().await).get_presence(request).await.expect("presence");
        answer.into_inner().presences[0].status()
    };
    assert_eq!(presence().await, PresenceStatus::Offline);
    let mut stream = subscribe(&app, &bob, SubscribeRequest::default()).await.expect("subscribed");
    assert_eq!(presence().await, PresenceStatus::Online, "registered before Subscribe answered");

    app.users().await.logout(authed(&bob.token, LogoutRequest {})).await.expect("logout");
    let ended = loop {
        // why: the group's events from before may still be on their way
        if let Err(ended) = next(&mut stream).await {
            break ended;
        }
    };
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    let started = std::time::Instant::now();
    while presence().await != PresenceStatus::Offline {
        assert!(started.elapsed() < WAIT, "bob went offline when the stream ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_user_holds_at_most_sixteen_subscriptions_and_a_closed_one_frees_its_place() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let mine = || SubscribeRequest { user_events_only: true, ..Default::default() };
    let mut open = Vec::new();
    for _ in 0..16 {
        open.push(subscribe(&app, &ada, mine()).await.expect("within the cap"));
    }
    let status = subscribe(&app, &ada, mine()).await.expect_err("over the cap");
    assert_eq!((status.code(), reason(&status).as_str()), (Code::ResourceExhausted, "TOO_MANY_SUBSCRIPTIONS"));
    let bob = app.user("bob").await;
    subscribe(&app, &bob, mine()).await.expect("another user has places of their own");

    drop(open.pop());
    let started = std::time::Instant::now();
    loop {
        match subscribe(&app, &ada, mine()).await {
            Ok(stream) => break open.push(stream),
            Err(status) => assert!(started.elapsed() < WAIT, "a closed stream frees its place: {status:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
