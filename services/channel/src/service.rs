//! The tonic handlers of ChannelService and ChannelInternalService: each reads the caller,
//! validates the request on the wire (`chatmesh_wire::channel`), runs one [`ChannelCore`]
//! operation and maps its answer to protobuf.

use std::sync::Arc;

use chatmesh_api::channel::v1::{
    self as pb, channel_internal_service_server::ChannelInternalService, channel_service_server::ChannelService,
};
use chatmesh_platform::{auth::user_of, ids::IdGenerator, membership::EpochBoard, page};
use chatmesh_wire::channel as wire;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::{
    core::{ChannelCore, Page},
    model::MemberRecord,
    store::ChannelStore,
    users::UserDirectory,
};

/// ChannelService: the public surface.
#[derive(Clone)]
pub struct ChannelApi {
    core: Arc<ChannelCore>,
}

/// ChannelInternalService: membership answers and direct channels for other services (service
/// principals only).
#[derive(Clone)]
pub struct ChannelInternalApi {
    core: Arc<ChannelCore>,
}

impl ChannelApi {
    /// `epochs` learns each channel's new membership epoch before a change returns; `outbox`
    /// is notified after every change that recorded events.
    pub fn new(
        store: Arc<dyn ChannelStore>,
        users: Arc<dyn UserDirectory>,
        ids: Arc<IdGenerator>,
        epochs: Arc<EpochBoard>,
        outbox: Arc<Notify>,
    ) -> (Self, ChannelInternalApi) {
        let core = Arc::new(ChannelCore::new(store, users, ids, epochs, outbox));
        (Self { core: core.clone() }, ChannelInternalApi { core })
    }
}

/// A page's token: empty when the list ended.
fn next_token<T>(page: &Page<T>) -> String {
    page.next.map(page::encode_token).unwrap_or_default()
}

#[tonic::async_trait]
impl ChannelService for ChannelApi {
    async fn create_channel(
        &self,
        request: Request<pb::CreateChannelRequest>,
    ) -> Result<Response<pb::CreateChannelResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::create_channel(request.get_ref())?;
        let created = self.core.create_channel(caller, cmd).await?;
        Ok(Response::new(pb::CreateChannelResponse {
            channel: Some(created.channel.to_pb()),
            created: created.created,
        }))
    }

    async fn get_channel(
        &self,
        request: Request<pb::GetChannelRequest>,
    ) -> Result<Response<pb::GetChannelResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let channel_id = wire::get_channel(request.get_ref())?.channel_id;
        let view = self.core.view(caller, channel_id).await?;
        let response = match &view.membership {
            Some(membership) => {
                pb::GetChannelResponse { channel: Some(view.channel.to_pb()), membership: Some(membership.to_pb()) }
            }
            None => pb::GetChannelResponse { channel: Some(view.channel.to_preview_pb()), membership: None },
        };
        Ok(Response::new(response))
    }

    async fn list_my_channels(
        &self,
        request: Request<pb::ListMyChannelsRequest>,
    ) -> Result<Response<pb::ListMyChannelsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::list_my_channels(request.get_ref())?;
        let page = self.core.list_my_channels(caller, cmd).await?;
        let next_page_token = next_token(&page);
        Ok(Response::new(pb::ListMyChannelsResponse {
            channels: page.items.iter().map(|c| c.to_pb()).collect(),
            next_page_token,
        }))
    }

    async fn update_channel(
        &self,
        request: Request<pb::UpdateChannelRequest>,
    ) -> Result<Response<pb::UpdateChannelResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::update_channel(request.get_ref())?;
        let channel = self.core.update_channel(caller, cmd).await?;
        Ok(Response::new(pb::UpdateChannelResponse { channel: Some(channel.to_pb()) }))
    }

    async fn delete_channel(
        &self,
        request: Request<pb::DeleteChannelRequest>,
    ) -> Result<Response<pb::DeleteChannelResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let channel_id = wire::delete_channel(request.get_ref())?.channel_id;
        self.core.delete_channel(caller, channel_id).await?;
        Ok(Response::new(pb::DeleteChannelResponse {}))
    }

    async fn create_member(
        &self,
        request: Request<pb::CreateMemberRequest>,
    ) -> Result<Response<pb::CreateMemberResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::create_member(request.get_ref())?;
        let joined = self.core.add_member(caller, cmd).await?;
        Ok(Response::new(pb::CreateMemberResponse { member: Some(joined.to_pb()) }))
    }

    async fn delete_member(
        &self,
        request: Request<pb::DeleteMemberRequest>,
    ) -> Result<Response<pb::DeleteMemberResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::delete_member(request.get_ref())?;
        self.core.remove_member(caller, cmd).await?;
        Ok(Response::new(pb::DeleteMemberResponse {}))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::list_members(request.get_ref())?;
        let page = self.core.list_members(caller, cmd).await?;
        let next_page_token = next_token(&page);
        Ok(Response::new(pb::ListMembersResponse {
            members: page.items.iter().map(MemberRecord::to_pb).collect(),
            next_page_token,
        }))
    }

    async fn update_member(
        &self,
        request: Request<pb::UpdateMemberRequest>,
    ) -> Result<Response<pb::UpdateMemberResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::update_member(request.get_ref())?;
        let updated = self.core.set_role(caller, cmd).await?;
        Ok(Response::new(pb::UpdateMemberResponse { member: Some(updated.to_pb()) }))
    }

    async fn close_channel(
        &self,
        request: Request<pb::CloseChannelRequest>,
    ) -> Result<Response<pb::CloseChannelResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let channel_id = wire::close_channel(request.get_ref())?.channel_id;
        self.core.set_closed(caller, channel_id, true).await?;
        Ok(Response::new(pb::CloseChannelResponse {}))
    }

    async fn reopen_channel(
        &self,
        request: Request<pb::ReopenChannelRequest>,
    ) -> Result<Response<pb::ReopenChannelResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let channel_id = wire::reopen_channel(request.get_ref())?.channel_id;
        self.core.set_closed(caller, channel_id, false).await?;
        Ok(Response::new(pb::ReopenChannelResponse {}))
    }
}

#[tonic::async_trait]
impl ChannelInternalService for ChannelInternalApi {
    async fn get_or_create_direct_channel(
        &self,
        request: Request<pb::GetOrCreateDirectChannelRequest>,
    ) -> Result<Response<pb::GetOrCreateDirectChannelResponse>, Status> {
        let cmd = wire::get_or_create_direct_channel(request.get_ref())?;
        let created = self.core.get_or_create_direct(cmd).await?;
        Ok(Response::new(pb::GetOrCreateDirectChannelResponse {
            channel_id: created.channel.channel_id.to_string(),
            created: created.created,
        }))
    }

    async fn check_membership(
        &self,
        request: Request<pb::CheckMembershipRequest>,
    ) -> Result<Response<pb::CheckMembershipResponse>, Status> {
        let cmd = wire::check_membership(request.get_ref())?;
        let crate::core::Membership { channel, member: membership, direct_members } =
            self.core.check_membership(cmd).await?;
        let Some(channel) = channel else { return Ok(Response::new(pb::CheckMembershipResponse::default())) };
        Ok(Response::new(pb::CheckMembershipResponse {
            channel_exists: true,
            is_member: membership.is_some(),
            role: membership.map_or(pb::MemberRole::Unspecified, |m| m.role.to_pb()) as i32,
            kind: channel.kind.to_pb() as i32,
            visibility: channel.visibility.to_pb() as i32,
            membership_epoch: channel.version as i64,
            member_count: channel.member_count as i32,
            direct_member_ids: direct_members.iter().map(u64::to_string).collect(),
        }))
    }

    async fn record_activity(
        &self,
        request: Request<pb::RecordActivityRequest>,
    ) -> Result<Response<pb::RecordActivityResponse>, Status> {
        let newest_chats = wire::record_activity(request.get_ref())?.newest_chats;
        self.core.record_activity(newest_chats).await?;
        Ok(Response::new(pb::RecordActivityResponse {}))
    }

    async fn list_user_channel_ids(
        &self,
        request: Request<pb::ListUserChannelIdsRequest>,
    ) -> Result<Response<pb::ListUserChannelIdsResponse>, Status> {
        let cmd = wire::list_user_channel_ids(request.get_ref())?;
        let page = self.core.list_user_channel_ids(cmd).await?;
        let next_page_token = next_token(&page);
        Ok(Response::new(pb::ListUserChannelIdsResponse {
            channel_ids: page.items.iter().map(u64::to_string).collect(),
            next_page_token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use chatmesh_api::chat::v1::{ChannelEvent, EventType};
    use chatmesh_platform::Caller;
    use prost::Message;

    use super::*;
    use crate::{
        model::ChannelRecord,
        store::{Change, FjallChannelStore, OutboxEntry, StoreError},
    };

    /// Users 1 to 9 exist.
    struct KnownUsers;

    #[async_trait::async_trait]
    impl UserDirectory for KnownUsers {
        async fn missing_users(&self, user_ids: &[u64]) -> Result<Vec<u64>, Status> {
            Ok(user_ids.iter().copied().filter(|id| !(1..10).contains(id)).collect())
        }
        async fn blocked_between(&self, _: u64, _: u64) -> Result<bool, Status> {
            Ok(false)
        }
    }

    fn as_user<T>(user_id: u64, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.extensions_mut().insert(Caller::User { user_id, session_id: "s".into() });
        request
    }

    #[tokio::test]
    async fn every_change_records_its_events_in_the_outbox() {
        let (_dir, store) = FjallChannelStore::temp();
        let store = Arc::new(store);
        let (api, _) = ChannelApi::new(
            store.clone(),
            Arc::new(KnownUsers),
            Arc::new(IdGenerator::new(1).unwrap()),
            Arc::new(EpochBoard::new()),
            Arc::new(Notify::new()),
        );
        let create = pb::CreateChannelRequest {
            kind: pb::ChannelKind::Group as i32,
            name: "team".into(),
            member_ids: vec!["2".into()],
            ..Default::default()
        };
        let channel = api.create_channel(as_user(1, create)).await.unwrap().into_inner().channel.unwrap();
        let id = channel.channel_id.clone();
        api.create_member(as_user(1, pb::CreateMemberRequest { channel_id: id.clone(), user_id: "3".into() }))
            .await
            .unwrap();
        let promote =
            pb::UpdateMemberRequest { channel_id: id.clone(), user_id: "3".into(), role: pb::MemberRole::Admin as i32 };
        api.update_member(as_user(1, promote)).await.unwrap();
        let rename = pb::UpdateChannelRequest { channel_id: id.clone(), name: "renamed".into(), ..Default::default() };
        api.update_channel(as_user(3, rename)).await.unwrap();
        api.delete_member(as_user(3, pb::DeleteMemberRequest { channel_id: id.clone(), user_id: "2".into() }))
            .await
            .unwrap();
        api.close_channel(as_user(3, pb::CloseChannelRequest { channel_id: id.clone() })).await.unwrap();
        api.delete_channel(as_user(1, pb::DeleteChannelRequest { channel_id: id.clone() })).await.unwrap();

        let entries = store.list_outbox(None, 100).await.unwrap();
        let events: Vec<ChannelEvent> =
            entries.iter().map(|e| ChannelEvent::decode(e.event.as_slice()).unwrap()).collect();
        let kinds: Vec<(EventType, String)> = events.iter().map(|e| (e.r#type(), e.actor_id.clone())).collect();
        assert_eq!(
            kinds,
            vec![
                (EventType::MemberJoined, "1".into()),
                (EventType::MemberJoined, "1".into()),
                (EventType::MemberJoined, "1".into()),
                (EventType::MemberUpdated, "1".into()),
                (EventType::ChannelUpdated, "3".into()),
                (EventType::MemberLeft, "3".into()),
                (EventType::ChannelDeleted, "1".into()),
            ],
            "closing is personal and records nothing"
        );
        assert!(events.iter().all(|e| e.channel_id == id && e.event_id.is_empty()));
        let keys: std::collections::BTreeSet<_> = events.iter().map(|e| e.idempotency_key.clone()).collect();
        assert_eq!(keys.len(), events.len(), "each entry has its own idempotency key");
    }

    /// Every call fails as a lost database connection does, with text a client must not see.
    struct Unreachable;

    const BACKEND_TEXT: &str = "connection refused: scylla-0.scylla.chatmesh.svc:9042 (os error 111)";

    fn down<T>() -> Result<T, StoreError> {
        Err(StoreError::Backend(BACKEND_TEXT.into()))
    }

    #[async_trait::async_trait]
    impl ChannelStore for Unreachable {
        async fn apply(&self, _: Change) -> Result<(), StoreError> {
            down()
        }
        async fn get_channel(&self, _: u64) -> Result<Option<ChannelRecord>, StoreError> {
            down()
        }
        async fn get_member(&self, _: u64, _: u64) -> Result<Option<MemberRecord>, StoreError> {
            down()
        }
        async fn list_members(&self, _: u64, _: Option<u64>, _: usize) -> Result<Vec<MemberRecord>, StoreError> {
            down()
        }
        async fn list_memberships(&self, _: u64, _: Option<u64>, _: usize) -> Result<Vec<MemberRecord>, StoreError> {
            down()
        }
        async fn list_closed_members(&self, _: u64) -> Result<Vec<MemberRecord>, StoreError> {
            down()
        }
        async fn find_direct(&self, _: u64, _: u64) -> Result<Option<u64>, StoreError> {
            down()
        }
        async fn list_outbox(&self, _: Option<u64>, _: usize) -> Result<Vec<OutboxEntry>, StoreError> {
            down()
        }
        async fn delete_outbox(&self, _: &[u64]) -> Result<(), StoreError> {
            down()
        }
    }

    #[tokio::test]
    async fn a_store_failure_reaches_the_client_without_its_text() {
        let (api, internal) = ChannelApi::new(
            Arc::new(Unreachable),
            Arc::new(KnownUsers),
            Arc::new(IdGenerator::new(1).unwrap()),
            Arc::new(EpochBoard::new()),
            Arc::new(Notify::new()),
        );
        let create =
            pb::CreateChannelRequest { kind: pb::ChannelKind::Group as i32, name: "team".into(), ..Default::default() };
        let rename = pb::UpdateChannelRequest { channel_id: "5".into(), name: "renamed".into(), ..Default::default() };
        let check = pb::CheckMembershipRequest { channel_id: "5".into(), user_id: "1".into() };
        let refusals = [
            api.create_channel(as_user(1, create)).await.unwrap_err(),
            api.get_channel(as_user(1, pb::GetChannelRequest { channel_id: "5".into() })).await.unwrap_err(),
            api.update_channel(as_user(1, rename)).await.unwrap_err(),
            api.list_my_channels(as_user(1, pb::ListMyChannelsRequest::default())).await.unwrap_err(),
            internal.check_membership(Request::new(check)).await.unwrap_err(),
        ];
        for status in refusals {
            assert_eq!(status.code(), tonic::Code::Internal, "{}", status.message());
            assert!(!status.message().contains("scylla"), "backend text reached the client: {}", status.message());
            assert!(status.message().starts_with("internal error (request "), "{}", status.message());
        }
        let get = api.get_channel(as_user(1, pb::GetChannelRequest { channel_id: "5".into() }));
        let status = chatmesh_platform::request_id::scope(Some("req-7f3a".into()), get).await.unwrap_err();
        assert_eq!(status.message(), "internal error (request req-7f3a)", "names the log line instead");
    }
}
