//! The tonic handlers of ChatService and ChatInternalService: each reads the caller and the
//! request (validated by `chatmesh_wire::chat`), asks [`ChatCore`], and answers in protobuf.

use std::sync::Arc;

use chatmesh_api::chat::v1::{
    self as pb, chat_internal_service_server::ChatInternalService, chat_service_server::ChatService,
};
use chatmesh_platform::auth::user_of;
use chatmesh_wire::chat as wire;
use tonic::{Request, Response, Status};

use crate::{
    convert,
    core::{ChatCore, ChatDeps, ReadBy},
};

/// ChatService: the public surface.
#[derive(Clone)]
pub struct ChatApi {
    core: Arc<ChatCore>,
}

/// ChatInternalService: the channel event log's intake, search's view of the store and
/// moderators' retractions (service principals only).
#[derive(Clone)]
pub struct ChatInternalApi {
    core: Arc<ChatCore>,
}

impl ChatApi {
    pub fn new(deps: ChatDeps) -> (Self, ChatInternalApi) {
        let core = Arc::new(ChatCore::new(deps));
        core.answer_media_checks();
        (Self { core: core.clone() }, ChatInternalApi { core })
    }
}

#[tonic::async_trait]
impl ChatService for ChatApi {
    async fn create_chat(
        &self,
        request: Request<pb::CreateChatRequest>,
    ) -> Result<Response<pb::CreateChatResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::create_chat(request.get_ref())?;
        let chat = self.core.create_chat(caller, cmd).await?;
        Ok(Response::new(pb::CreateChatResponse { chat: Some(chat.to_pb(Some(caller))) }))
    }

    async fn get_chat(&self, request: Request<pb::GetChatRequest>) -> Result<Response<pb::GetChatResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::get_chat(request.get_ref())?;
        let chat = self.core.get_chat(caller, cmd).await?;
        Ok(Response::new(pb::GetChatResponse { chat: Some(chat.read.to_pb_read_by(caller, &chat.blocked)) }))
    }

    async fn list_chats(
        &self,
        request: Request<pb::ListChatsRequest>,
    ) -> Result<Response<pb::ListChatsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::list_chats(request.get_ref())?;
        let ReadBy { read: page, blocked } = self.core.list_chats(caller, cmd).await?;
        Ok(Response::new(pb::ListChatsResponse {
            chats: page.items.iter().map(|c| c.to_pb_read_by(caller, &blocked)).collect(),
            next_page_token: convert::page_token(page.next),
        }))
    }

    async fn edit_chat(&self, request: Request<pb::EditChatRequest>) -> Result<Response<pb::EditChatResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::edit_chat(request.get_ref())?;
        let chat = self.core.edit_chat(caller, cmd).await?;
        Ok(Response::new(pb::EditChatResponse { chat: Some(chat.to_pb(Some(caller))) }))
    }

    async fn remove_chats(
        &self,
        request: Request<pb::RemoveChatsRequest>,
    ) -> Result<Response<pb::RemoveChatsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::remove_chats(request.get_ref())?;
        let outcomes = self.core.remove_chats(caller, cmd).await?;
        let outcomes = outcomes.into_iter().map(|(id, r)| convert::outcome(id, r)).collect();
        Ok(Response::new(pb::RemoveChatsResponse { outcomes }))
    }

    async fn retract_chats(
        &self,
        request: Request<pb::RetractChatsRequest>,
    ) -> Result<Response<pb::RetractChatsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::retract_chats(request.get_ref())?;
        let outcomes = self.core.retract_chats(caller, cmd).await?;
        let outcomes = outcomes.into_iter().map(|(id, r)| convert::outcome(id, r)).collect();
        Ok(Response::new(pb::RetractChatsResponse { outcomes }))
    }

    async fn search_chats(
        &self,
        request: Request<pb::SearchChatsRequest>,
    ) -> Result<Response<pb::SearchChatsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::search_chats(request.get_ref())?;
        let ReadBy { read: page, blocked } = self.core.search_chats(caller, cmd).await?;
        Ok(Response::new(pb::SearchChatsResponse {
            hits: page.items.into_iter().map(|hit| convert::hit(hit, caller, &blocked)).collect(),
            next_page_token: convert::page_token(page.next),
        }))
    }

    async fn create_upload(
        &self,
        request: Request<pb::CreateUploadRequest>,
    ) -> Result<Response<pb::CreateUploadResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::create_upload(request.get_ref())?;
        let (upload, url) = self.core.create_upload(caller, cmd, request.get_ref().size_bytes).await?;
        Ok(Response::new(pb::CreateUploadResponse {
            upload_id: upload.upload_id.to_string(),
            expires_at: convert::expires_at(&url),
            upload_url: url.url,
        }))
    }

    async fn get_attachment_url(
        &self,
        request: Request<pb::GetAttachmentUrlRequest>,
    ) -> Result<Response<pb::GetAttachmentUrlResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::get_attachment_url(request.get_ref())?;
        let url = self.core.get_attachment_url(caller, cmd).await?;
        Ok(Response::new(pb::GetAttachmentUrlResponse { expires_at: convert::expires_at(&url), download_url: url.url }))
    }

    async fn ack_chats(&self, request: Request<pb::AckChatsRequest>) -> Result<Response<pb::AckChatsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::ack_chats(request.get_ref())?;
        let pointer = self.core.ack_chats(caller, cmd).await?;
        let read_pointer = convert::read_pointer(cmd.channel_id, caller, pointer);
        Ok(Response::new(pb::AckChatsResponse { read_pointer: Some(read_pointer) }))
    }

    async fn get_unread_counts(
        &self,
        request: Request<pb::GetUnreadCountsRequest>,
    ) -> Result<Response<pb::GetUnreadCountsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::get_unread_counts(request.get_ref())?;
        let counts = self.core.unread_counts(caller, cmd).await?;
        let counts = counts.into_iter().map(|(channel_id, unread)| convert::unread_count(channel_id, unread)).collect();
        Ok(Response::new(pb::GetUnreadCountsResponse { counts }))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let cmd = wire::list_events(request.get_ref())?;
        let page = self.core.list_events(caller, cmd).await?;
        Ok(Response::new(pb::ListEventsResponse { events: page.events, has_more: page.has_more }))
    }
}

#[tonic::async_trait]
impl ChatInternalService for ChatInternalApi {
    async fn moderate_retract_chat(
        &self,
        request: Request<pb::ModerateRetractChatRequest>,
    ) -> Result<Response<pb::ModerateRetractChatResponse>, Status> {
        let cmd = wire::moderate_retract_chat(request.get_ref())?;
        self.core.moderate_retract(cmd).await?;
        Ok(Response::new(pb::ModerateRetractChatResponse {}))
    }

    async fn get_search_status(
        &self,
        request: Request<pb::GetSearchStatusRequest>,
    ) -> Result<Response<pb::GetSearchStatusResponse>, Status> {
        let cmd = wire::get_search_status(request.get_ref())?;
        let health = self.core.search_status(cmd).await?;
        Ok(Response::new(convert::search_status(health)))
    }

    async fn get_chat_states(
        &self,
        request: Request<pb::GetChatStatesRequest>,
    ) -> Result<Response<pb::GetChatStatesResponse>, Status> {
        let cmd = wire::get_chat_states(request.get_ref())?;
        let states = self.core.chat_states(cmd).await?;
        Ok(Response::new(pb::GetChatStatesResponse { states }))
    }

    async fn append_channel_events(
        &self,
        request: Request<pb::AppendChannelEventsRequest>,
    ) -> Result<Response<pb::AppendChannelEventsResponse>, Status> {
        let wire::AppendChannelEvents = wire::append_channel_events(request.get_ref())?;
        let events = self.core.append_channel_events(request.into_inner().events).await?;
        Ok(Response::new(pb::AppendChannelEventsResponse { events }))
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use chatmesh_api::chat::v1::ChannelEvent;
    use chatmesh_platform::{
        auth::{Authenticator, Caller},
        blocks::BlockClient,
        config::AuthConfig,
        grpc::{ServiceAuth, internal_channel, remote_channel},
        ids::IdGenerator,
        membership::{EpochBoard, MembershipClient},
    };
    use tonic::Code;

    use super::*;
    use crate::{
        delivery::Publisher,
        directory::Directory,
        model::{ChatRecord, NewChat, ReadPointer, UploadRecord},
        store::{
            ChangeFeed, Chats, CreateOutcome, EventLog, ExternalEvent, ItemOutcome, Range, ReadPointers, StoreError,
            Unread, Uploads, WriteStats,
        },
    };

    const BACKEND_TEXT: &str = "fjall: /var/lib/secret path io error";

    fn failure() -> StoreError {
        StoreError::Backend(BACKEND_TEXT.into())
    }

    /// A store whose every call fails in its backend.
    struct FailingStore;

    #[async_trait]
    impl Chats for FailingStore {
        async fn create_chat(&self, _: NewChat) -> Result<CreateOutcome, StoreError> {
            Err(failure())
        }
        async fn get_chat(&self, _: u64) -> Result<Option<ChatRecord>, StoreError> {
            Err(failure())
        }
        async fn list_chats(&self, _: u64, _: Range, _: usize, _: u64) -> Result<Vec<ChatRecord>, StoreError> {
            Err(failure())
        }
        async fn newest_chat_at_or_before(&self, _: u64, _: u64) -> Result<Option<u64>, StoreError> {
            Err(failure())
        }
        async fn scan_chats(&self, _: (u64, u64), _: usize) -> Result<Vec<ChatRecord>, StoreError> {
            Err(failure())
        }
        async fn is_removed(&self, _: u64, _: u64) -> Result<bool, StoreError> {
            Err(failure())
        }
        async fn removed_by(&self, _: u64) -> Result<Vec<u64>, StoreError> {
            Err(failure())
        }
        fn chats_estimate(&self) -> u64 {
            0
        }
        fn stats(&self) -> WriteStats {
            WriteStats::default()
        }
        async fn edit_chat(&self, _: u64, _: u64, _: String) -> Result<ItemOutcome, StoreError> {
            Err(failure())
        }
        async fn retract_chats(&self, _: u64, _: Vec<u64>) -> Result<Vec<ItemOutcome>, StoreError> {
            Err(failure())
        }
        async fn remove_chats(&self, _: u64, _: Vec<u64>) -> Result<(), StoreError> {
            Err(failure())
        }
    }

    #[async_trait]
    impl EventLog for FailingStore {
        async fn append_events(&self, _: Vec<ExternalEvent>) -> Result<Vec<u64>, StoreError> {
            Err(failure())
        }
        async fn list_events(&self, _: u64, _: u64, _: usize) -> Result<Vec<ChannelEvent>, StoreError> {
            Err(failure())
        }
        async fn channel_deleted(&self, _: u64) -> Result<bool, StoreError> {
            Err(failure())
        }
    }

    #[async_trait]
    impl ChangeFeed for FailingStore {
        async fn feed(&self, _: u64, _: usize) -> Result<Vec<ChannelEvent>, StoreError> {
            Err(failure())
        }
        async fn feed_head(&self) -> Result<u64, StoreError> {
            Err(failure())
        }
        async fn feed_count(&self, _: u64, _: u64) -> Result<u64, StoreError> {
            Err(failure())
        }
        async fn cursor(&self, _: &str) -> Result<u64, StoreError> {
            Err(failure())
        }
        async fn set_cursor(&self, _: &str, _: u64) -> Result<(), StoreError> {
            Err(failure())
        }
    }

    #[async_trait]
    impl ReadPointers for FailingStore {
        async fn ack(&self, _: u64, _: u64, _: u64) -> Result<ReadPointer, StoreError> {
            Err(failure())
        }
        async fn unread(&self, _: u64, _: u64) -> Result<Unread, StoreError> {
            Err(failure())
        }
    }

    #[async_trait]
    impl Uploads for FailingStore {
        async fn create_upload(&self, _: UploadRecord) -> Result<(), StoreError> {
            Err(failure())
        }
        async fn get_upload(&self, _: u64) -> Result<Option<UploadRecord>, StoreError> {
            Err(failure())
        }
        async fn reclaimable_uploads(&self, _: usize) -> Result<Vec<UploadRecord>, StoreError> {
            Err(failure())
        }
        async fn expire_uploads(&self, _: u64, _: usize) -> Result<usize, StoreError> {
            Err(failure())
        }
        async fn forget_uploads(&self, _: Vec<u64>) -> Result<(), StoreError> {
            Err(failure())
        }
    }

    struct NoPublisher;

    #[async_trait]
    impl Publisher for NoPublisher {
        async fn publish(&self, _: Vec<ChannelEvent>) -> Result<(), Status> {
            Ok(())
        }
    }

    /// The chat service over `FailingStore`; its peers are never reached (the store fails first).
    fn failing_service() -> (ChatApi, ChatInternalApi, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let auth = Arc::new(Authenticator::from_data_dir(AuthConfig::default(), dir.path()).unwrap());
        let nowhere = || {
            let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
            internal_channel(remote_channel(channel), ServiceAuth::new(auth.clone(), "chat"))
        };
        let membership = MembershipClient::new(nowhere(), Arc::new(EpochBoard::default()));
        let blocks = BlockClient::new(nowhere(), Arc::new(EpochBoard::default()));
        let directory = Directory::new(membership, blocks, nowhere());
        let (committed, _) = tokio::sync::watch::channel(0);
        let (api, internal) = ChatApi::new(ChatDeps {
            store: Arc::new(FailingStore),
            directory,
            publisher: Arc::new(NoPublisher),
            committed,
            search: None,
            media: None,
            ids: Arc::new(IdGenerator::new(1).unwrap()),
        });
        (api, internal, dir)
    }

    fn as_user<T>(message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.extensions_mut().insert(Caller::User { user_id: 1, session_id: "s".into() });
        request
    }

    fn assert_hidden(status: Status) {
        assert_eq!(status.code(), Code::Internal, "{status:?}");
        assert!(status.message().contains("request"), "names its request id: {}", status.message());
        assert!(!status.message().contains("fjall") && !status.message().contains("secret"), "{}", status.message());
    }

    #[tokio::test]
    async fn a_store_failure_reaches_the_client_as_internal_without_its_text() {
        let (api, internal, _dir) = failing_service();
        let refused = api.get_chat(as_user(pb::GetChatRequest { chat_id: "42".into() })).await.unwrap_err();
        assert_hidden(refused);
        let request = Request::new(pb::GetChatStatesRequest { chat_ids: vec!["42".into()] });
        assert_hidden(internal.get_chat_states(request).await.unwrap_err());
        let event = ChannelEvent {
            channel_id: "5".into(),
            actor_id: "1".into(),
            idempotency_key: "k".into(),
            r#type: pb::EventType::MemberJoined as i32,
            ..Default::default()
        };
        let request = Request::new(pb::AppendChannelEventsRequest { events: vec![event] });
        assert_hidden(internal.append_channel_events(request).await.unwrap_err());
    }
}
