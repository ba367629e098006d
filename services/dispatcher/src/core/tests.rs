//! The core's presence answers with a gateway attached in process and a channel service that
//! knows no channels (so nobody shares one with anybody).

use chatmesh_api::{
    channel::v1::{
        ListUserChannelIdsRequest, ListUserChannelIdsResponse, channel_internal_service_server::ChannelInternalService,
        channel_internal_service_server::ChannelInternalServiceServer,
    },
    dispatcher::v1::{PresenceStatus, SessionClosed, SessionOpened, attach_request::Command as Up},
};
use chatmesh_platform::{
    auth::Authenticator,
    config::Config,
    grpc::{PlatformLayer, Policy, ServiceAuth, in_process_channel, internal_channel},
    membership::EpochBoard,
};
use tokio_stream::wrappers::ReceiverStream;

use super::*;

/// The channel service: every user belongs to no channel.
#[derive(Clone)]
struct NoChannels;

#[tonic::async_trait]
impl ChannelInternalService for NoChannels {
    async fn list_user_channel_ids(
        &self,
        _request: tonic::Request<ListUserChannelIdsRequest>,
    ) -> Result<tonic::Response<ListUserChannelIdsResponse>, Status> {
        Ok(tonic::Response::new(ListUserChannelIdsResponse::default()))
    }
}

fn dispatcher(keys: &tempfile::TempDir) -> Arc<DispatcherCore> {
    let config = Config::default();
    let auth = Arc::new(Authenticator::from_data_dir(config.auth.clone(), keys.path()).unwrap());
    let layer = PlatformLayer::new(Arc::new(Policy::new(auth.clone(), &config)));
    let routes = tonic::service::Routes::new(ChannelInternalServiceServer::new(NoChannels));
    let channels = internal_channel(in_process_channel(routes, layer), ServiceAuth::new(auth, "dispatcher"));
    DispatcherCore::start(MembershipClient::new(channels, Arc::new(EpochBoard::new())), 10, None)
}

fn opened(session_id: &str, user_id: u64) -> Result<AttachRequest, Status> {
    let opened = SessionOpened { session_id: session_id.into(), user_id: user_id.to_string(), ..Default::default() };
    Ok(AttachRequest { command: Some(Up::SessionOpened(opened)) })
}

fn closed(session_id: &str) -> Result<AttachRequest, Status> {
    Ok(AttachRequest { command: Some(Up::SessionClosed(SessionClosed { session_id: session_id.into() })) })
}

/// Waits for the dispatcher's answer to a session opened: commands are handled in order, so
/// every command sent before it has been handled too.
async fn ready(down: &mut mpsc::Receiver<Result<AttachResponse, Status>>, session_id: &str) {
    while let Some(Ok(response)) = down.recv().await {
        if let Some(Down::SessionReady(ready)) = response.command
            && ready.session_id == session_id
        {
            return;
        }
    }
    panic!("the gateway stream ended before {session_id} was ready");
}

fn asked(ids: &[u64]) -> Vec<(String, u64)> {
    ids.iter().map(|id| (id.to_string(), *id)).collect()
}

fn statuses(presences: &[Presence]) -> Vec<(&str, PresenceStatus, bool)> {
    presences.iter().map(|p| (p.user_id.as_str(), p.status(), p.last_seen_at.is_some())).collect()
}

#[tokio::test]
async fn presences_answer_for_anyone_in_order_where_the_public_query_needs_a_shared_channel() {
    let keys = tempfile::tempdir().unwrap();
    let core = dispatcher(&keys);
    let (up, inbound) = mpsc::channel(8);
    let mut down = core.attach(ReceiverStream::new(inbound));
    up.send(opened("a", 7)).await.unwrap();
    up.send(opened("b", 8)).await.unwrap();
    ready(&mut down, "b").await;
    up.send(closed("b")).await.unwrap();
    up.send(opened("c", 9)).await.unwrap();
    ready(&mut down, "c").await;

    let presences = core.presences(asked(&[8, 7, 5, 7])).await;
    assert_eq!(
        statuses(&presences),
        [
            ("8", PresenceStatus::Offline, true),
            ("7", PresenceStatus::Online, false),
            ("5", PresenceStatus::Offline, false),
            ("7", PresenceStatus::Online, false),
        ],
        "one per id asked, in order: online, gone (with when), never seen"
    );
    let public = core.presence_seen_by(9, asked(&[7, 8])).await.unwrap();
    assert_eq!(
        statuses(&public),
        [("7", PresenceStatus::Offline, false), ("8", PresenceStatus::Offline, false)],
        "a stranger sees nothing through GetPresence"
    );
}

fn feed_event(status_id: &str) -> LiveEvent {
    let status = chatmesh_api::feed::v1::Status { status_id: status_id.into(), ..Default::default() };
    let status = prost_types::Any {
        type_url: "type.googleapis.com/chatmesh.feed.v1.Status".into(),
        value: prost::Message::encode_to_vec(&status),
    };
    let feed = pb::FeedEvent { r#type: pb::FeedEventType::StatusCreated as i32, status: Some(status) };
    LiveEvent { event: Some(Event::FeedEvent(feed)) }
}

/// The delivery already queued for a gateway (sorted session ids and the event), if any.
fn delivered(down: &mut mpsc::Receiver<Result<AttachResponse, Status>>) -> Option<(Vec<String>, LiveEvent)> {
    match down.try_recv() {
        Ok(Ok(AttachResponse { command: Some(Down::Delivery(delivery)) })) => {
            let mut sessions = delivery.session_ids;
            sessions.sort();
            Some((sessions, delivery.event.expect("an event")))
        }
        _ => None,
    }
}

/// Two gateways attached: the first holds `a1` and `a2` of user 7 and `c` of user 9, the
/// second `b` of user 8.
async fn two_gateways(
    core: &Arc<DispatcherCore>,
) -> [(mpsc::Sender<Result<AttachRequest, Status>>, mpsc::Receiver<Result<AttachResponse, Status>>); 2] {
    let (up_one, inbound) = mpsc::channel(8);
    let mut down_one = core.attach(ReceiverStream::new(inbound));
    let (up_two, inbound) = mpsc::channel(8);
    let mut down_two = core.attach(ReceiverStream::new(inbound));
    for (session, user) in [("a1", 7), ("a2", 7), ("c", 9)] {
        up_one.send(opened(session, user)).await.unwrap();
    }
    ready(&mut down_one, "c").await;
    up_two.send(opened("b", 8)).await.unwrap();
    ready(&mut down_two, "b").await;
    [(up_one, down_one), (up_two, down_two)]
}

#[tokio::test]
async fn a_users_event_reaches_every_session_of_the_named_users_once_per_gateway() {
    let keys = tempfile::tempdir().unwrap();
    let core = dispatcher(&keys);
    let [(_up_one, mut one), (_up_two, mut two)] = two_gateways(&core).await;

    core.publish_to_users(vec![7, 8, 5, 7], feed_event("41")).await;
    assert_eq!(
        delivered(&mut one),
        Some((vec!["a1".into(), "a2".into()], feed_event("41"))),
        "one delivery naming both sessions of user 7, none for user 9"
    );
    assert_eq!(delivered(&mut one), None, "a repeated id does not deliver twice");
    assert_eq!(delivered(&mut two), Some((vec!["b".into()], feed_event("41"))));

    core.publish_to_users(vec![5], feed_event("42")).await;
    core.publish_to_users(Vec::new(), feed_event("43")).await;
    assert_eq!((delivered(&mut one), delivered(&mut two)), (None, None), "nobody named is connected here");
}

#[tokio::test]
async fn a_users_event_from_another_dispatcher_reaches_the_sessions_here() {
    let keys = tempfile::tempdir().unwrap();
    let core = dispatcher(&keys);
    let [(_up_one, mut one), (_up_two, mut two)] = two_gateways(&core).await;

    core.remote(Remote::Users { users: vec![9, 6], event: feed_event("41") }).await;
    assert_eq!(delivered(&mut one), Some((vec!["c".into()], feed_event("41"))));
    assert_eq!(delivered(&mut two), None);
}
