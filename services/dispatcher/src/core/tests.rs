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
