//! The tonic handlers of DispatcherService (presence, typing, subscribe) and DispatcherInternalService
//! (publish, publish to users, attach, disconnect, presences): wire → core → protobuf.

use std::sync::Arc;

use chatmesh_api::dispatcher::v1::{
    self as pb, AttachRequest, AttachResponse, dispatcher_internal_service_server::DispatcherInternalService,
    dispatcher_service_server::DispatcherService,
};
use chatmesh_platform::{auth::user_of, membership::MembershipClient};
use chatmesh_wire::dispatcher as wire;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::core::{Cluster, DispatcherCore};

/// The stream type the generated traits expect for Attach and Subscribe.
type Events<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// DispatcherService: the public surface.
#[derive(Clone)]
pub struct DispatcherApi {
    core: Arc<DispatcherCore>,
}

/// DispatcherInternalService: publish, publish to users, attach, disconnect and presences
/// (service principals only).
#[derive(Clone)]
pub struct DispatcherInternalApi {
    core: Arc<DispatcherCore>,
}

impl DispatcherApi {
    /// A dispatcher; with `cluster`, joined to the others: what they send is delivered here,
    /// presence is shared, and after a possible gap every session here is sent to resume.
    pub fn new(
        membership: MembershipClient,
        small_channel_max: u32,
        cluster: Option<Cluster>,
    ) -> (Self, DispatcherInternalApi) {
        let core = DispatcherCore::start(membership, small_channel_max, cluster);
        (Self { core: core.clone() }, DispatcherInternalApi { core })
    }
}

#[tonic::async_trait]
impl DispatcherInternalService for DispatcherInternalApi {
    async fn publish(&self, request: Request<pb::PublishRequest>) -> Result<Response<pb::PublishResponse>, Status> {
        // why: the whole batch is checked before any event goes out, so a refused batch delivers nothing.
        let valid = wire::publish(request.get_ref())?;
        let events = valid.channel_ids.into_iter().zip(request.into_inner().events).collect();
        self.core.publish_all(events).await?;
        Ok(Response::new(pb::PublishResponse {}))
    }

    async fn attach(
        &self,
        request: Request<Streaming<AttachRequest>>,
    ) -> Result<Response<Events<AttachResponse>>, Status> {
        let down = self.core.attach(request.into_inner());
        Ok(Response::new(Box::pin(ReceiverStream::new(down))))
    }

    async fn disconnect_user(
        &self,
        request: Request<pb::DisconnectUserRequest>,
    ) -> Result<Response<pb::DisconnectUserResponse>, Status> {
        let valid = wire::disconnect_user(request.get_ref())?;
        self.core.disconnect_user(&valid, request.get_ref()).await;
        Ok(Response::new(pb::DisconnectUserResponse {}))
    }

    async fn get_presences(
        &self,
        request: Request<pb::GetPresencesRequest>,
    ) -> Result<Response<pb::GetPresencesResponse>, Status> {
        let valid = wire::get_presences(request.get_ref())?;
        // why: each presence names the user as the caller wrote the id, so the raw strings ride along.
        let users = request.into_inner().user_ids.into_iter().zip(valid.user_ids).collect();
        let presences = self.core.presences(users).await;
        Ok(Response::new(pb::GetPresencesResponse { presences }))
    }

    async fn publish_to_users(
        &self,
        request: Request<pb::PublishToUsersRequest>,
    ) -> Result<Response<pb::PublishToUsersResponse>, Status> {
        let valid = wire::publish_to_users(request.get_ref())?;
        let event = pb::LiveEvent { event: request.into_inner().event.map(pb::live_event::Event::FeedEvent) };
        self.core.publish_to_users(valid.user_ids, event).await;
        Ok(Response::new(pb::PublishToUsersResponse {}))
    }
}

#[tonic::async_trait]
impl DispatcherService for DispatcherApi {
    async fn get_presence(
        &self,
        request: Request<pb::GetPresenceRequest>,
    ) -> Result<Response<pb::GetPresenceResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let valid = wire::get_presence(request.get_ref())?;
        // why: each presence names the user as the caller wrote the id, so the raw strings ride along.
        let users = request.into_inner().user_ids.into_iter().zip(valid.user_ids).collect();
        let presences = self.core.presence_seen_by(caller, users).await?;
        Ok(Response::new(pb::GetPresenceResponse { presences }))
    }

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Events<pb::SubscribeResponse>>, Status> {
        let (caller, login_session) = user_of(&request)?;
        let valid = wire::subscribe(request.get_ref())?;
        let events = self.core.subscribe(caller, login_session, valid).await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(events))))
    }

    async fn send_typing(
        &self,
        request: Request<pb::SendTypingRequest>,
    ) -> Result<Response<pb::SendTypingResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let wire::SendTyping { channel_id } = wire::send_typing(request.get_ref())?;
        self.core.send_typing(caller, channel_id).await?;
        Ok(Response::new(pb::SendTypingResponse {}))
    }
}
