//! Feed events live: what the feed service hands the dispatcher (`PublishToUsers`) reaches
//! every WebSocket session of the users it names, once, and nobody else's; through the Redis
//! backplane too when CHATMESH_TEST_REDIS_URL is set (the dispatcher delivers its own sessions
//! and skips its own message coming back). Across two dispatchers: cli/tests/cluster.rs.

use std::time::Duration;

use chatmesh_api::{
    dispatcher::v1::{
        FeedEvent, FeedEventType, PublishToUsersRequest,
        dispatcher_internal_service_client::DispatcherInternalServiceClient,
    },
    feed::v1::Status as FeedStatus,
};
use chatmesh_tests::{TestApp, User, authed, test_config, ws};
use tonic::{Code, Status};

/// Only guards against hanging: every wait below ends on the frame it waits for.
const WAIT: Duration = Duration::from_secs(30);

fn feed_event(kind: FeedEventType, status: FeedStatus) -> FeedEvent {
    let status = prost_types::Any {
        type_url: "type.googleapis.com/chatmesh.feed.v1.Status".into(),
        value: prost::Message::encode_to_vec(&status),
    };
    FeedEvent { r#type: kind as i32, status: Some(status) }
}

fn created(status_id: &str, author: &User, text: &str) -> FeedEvent {
    let status = FeedStatus {
        status_id: status_id.into(),
        author_id: author.id.clone(),
        text: text.into(),
        ..Default::default()
    };
    feed_event(FeedEventType::StatusCreated, status)
}

fn deleted(status_id: &str) -> FeedEvent {
    feed_event(
        FeedEventType::StatusDeleted,
        FeedStatus { status_id: status_id.into(), deleted: true, ..Default::default() },
    )
}

/// Calls PublishToUsers as the feed service does: with a service principal's token.
async fn publish(app: &TestApp, users: &[&User], event: FeedEvent) -> Result<(), Status> {
    let request = PublishToUsersRequest { user_ids: users.iter().map(|u| u.id.clone()).collect(), event: Some(event) };
    let mut dispatcher = DispatcherInternalServiceClient::new(app.channel().await);
    dispatcher.publish_to_users(authed(&app.service_token("feed"), request)).await.map(drop)
}

/// The next `status.*` frame as (event, status id), skipping other frames (none is expected).
async fn next_status(socket: &mut ws::Socket) -> (String, String) {
    loop {
        let frame = ws::next_frame(socket, WAIT).await.expect("a status frame before the wait ran out");
        let event = frame["event"].as_str().unwrap_or_default();
        if event.starts_with("status.") {
            let status_id = frame["data"]["status"]["statusId"].as_str().expect("a status id").to_owned();
            return (event.to_owned(), status_id);
        }
    }
}

/// Bob on two devices and Cy get what is addressed to them, once each, and nothing addressed
/// to anyone else: each socket's next status frame is the one expected, so an extra or
/// duplicate frame would show up in its place.
async fn each_socket_of_the_named_users_gets_their_events_once(app: &TestApp) {
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    let cy = app.user("cy").await;
    let bob_phone = app.login("bob@example.com", "correct horse battery").await.expect("a second login").access_token;
    let (mut bob_desk, _) = ws::connect(app.ws_addr, &bob.token, "").await;
    let (mut bob_phone, _) = ws::connect(app.ws_addr, &bob_phone, "").await;
    let (mut cy_socket, _) = ws::connect(app.ws_addr, &cy.token, "").await;

    publish(app, &[&bob, &ada, &bob], created("41", &ada, "shipping #rust today")).await.expect("published");
    let frame = ws::until(&mut bob_desk, "status.created", WAIT).await.expect("bob's desk gets it").pop().unwrap();
    assert_eq!(frame["data"]["status"]["text"], "shipping #rust today", "{frame}");
    assert_eq!(frame["data"]["status"]["authorId"].as_str(), Some(ada.id.as_str()));
    assert!(frame["data"].get("eventId").is_none() && frame["data"].get("channelId").is_none(), "{frame}");
    assert_eq!(next_status(&mut bob_phone).await, ("status.created".into(), "41".into()), "every session of bob");

    publish(app, &[&cy], created("42", &ada, "for cy")).await.expect("published");
    assert_eq!(next_status(&mut cy_socket).await, ("status.created".into(), "42".into()), "cy never got 41");
    publish(app, &[&ada, &bob], deleted("41")).await.expect("published");
    for socket in [&mut bob_desk, &mut bob_phone] {
        assert_eq!(
            next_status(socket).await,
            ("status.deleted".into(), "41".into()),
            "bob never got cy's 42, nor 41 twice"
        );
    }
    publish(app, &[&cy], created("43", &ada, "for cy again")).await.expect("published");
    assert_eq!(next_status(&mut cy_socket).await, ("status.created".into(), "43".into()), "cy never got the deletion");
}

#[tokio::test]
async fn a_published_status_reaches_every_socket_of_the_users_named_and_no_one_else() {
    let app = TestApp::spawn().await;
    each_socket_of_the_named_users_gets_their_events_once(&app).await;
}

#[tokio::test]
async fn through_the_redis_backplane_each_socket_still_gets_its_events_once() {
    let Ok(redis) = std::env::var("CHATMESH_TEST_REDIS_URL") else {
        println!("skipped: CHATMESH_TEST_REDIS_URL not set");
        return;
    };
    let dir = tempfile::tempdir().expect("temporary data dir");
    let mut config = test_config(dir.path().to_owned());
    config.redis_url = redis;
    let app = TestApp::spawn_with(config).await;
    each_socket_of_the_named_users_gets_their_events_once(&app).await;
}

#[tokio::test]
async fn only_feed_events_with_valid_ids_from_services_are_published() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let mut dispatcher = DispatcherInternalServiceClient::new(app.channel().await);
    let service = app.service_token("feed");
    let cases = [
        (vec![ada.id.clone()], None, "event"),
        (vec!["01".into()], Some(created("41", &ada, "hi")), "user_ids"),
        (vec![ada.id.clone(); 1001], Some(created("41", &ada, "hi")), "user_ids"),
    ];
    for (user_ids, event, field) in cases {
        let refused = dispatcher.publish_to_users(authed(&service, PublishToUsersRequest { user_ids, event })).await;
        let status = refused.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(status.message().starts_with(&format!("{field}: ")), "names {field}: {}", status.message());
    }
    let request = PublishToUsersRequest { user_ids: vec![ada.id.clone()], event: Some(created("41", &ada, "hi")) };
    let by_a_user = dispatcher.publish_to_users(authed(&ada.token, request)).await;
    assert_eq!(by_a_user.map_err(|s| s.code()).err(), Some(Code::PermissionDenied), "service principals only");
}

/// The feed announces its own statuses: a follower's socket gets `status.created` when the
/// followee posts (and the author's own socket too), then `status.deleted`; a stranger gets
/// neither.
#[tokio::test]
async fn followers_online_get_a_new_status_and_its_deletion() {
    use chatmesh_api::{
        feed::v1::{CreateStatusRequest, DeleteStatusRequest, feed_service_client::FeedServiceClient},
        user::v1::{FollowUserRequest, user_service_client::UserServiceClient},
    };

    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    let cy = app.user("cy").await;
    let mut users = UserServiceClient::new(app.channel().await);
    users
        .follow_user(authed(&bob.token, FollowUserRequest { user_id: ada.id.clone() }))
        .await
        .expect("bob follows ada");
    let (mut bob_socket, _) = ws::connect(app.ws_addr, &bob.token, "").await;
    let (mut ada_socket, _) = ws::connect(app.ws_addr, &ada.token, "").await;
    let (mut cy_socket, _) = ws::connect(app.ws_addr, &cy.token, "").await;

    let mut feed = FeedServiceClient::new(app.channel().await);
    let request = CreateStatusRequest { text: "hello followers #rust".into(), ..Default::default() };
    let status = feed.create_status(authed(&ada.token, request)).await.expect("posted").into_inner().status.unwrap();
    let frame = ws::until(&mut bob_socket, "status.created", WAIT).await.expect("bob gets it").pop().unwrap();
    assert_eq!(frame["data"]["status"]["statusId"].as_str(), Some(status.status_id.as_str()), "{frame}");
    assert_eq!(frame["data"]["status"]["text"], "hello followers #rust", "{frame}");
    assert_eq!(frame["data"]["status"]["author"]["userId"].as_str(), Some(ada.id.as_str()), "with a profile: {frame}");
    assert_eq!(next_status(&mut ada_socket).await, ("status.created".into(), status.status_id.clone()));

    let request = DeleteStatusRequest { status_id: status.status_id.clone() };
    feed.delete_status(authed(&ada.token, request)).await.expect("deleted");
    assert_eq!(next_status(&mut bob_socket).await, ("status.deleted".into(), status.status_id.clone()));

    // why: cy's next status frame is one addressed to cy, proving nothing of ada's came first
    publish(&app, &[&cy], created("43", &ada, "for cy")).await.expect("published");
    assert_eq!(next_status(&mut cy_socket).await, ("status.created".into(), "43".into()), "cy got none of ada's");
}
