//! The tonic handlers of ChatService and ChatInternalService: request validation (through
//! `chatmesh_wire::chat`), membership rules (asked of the channel service), and mapping.
//! Durability and ordering live in the store.

use std::{
    collections::{BTreeSet, HashSet},
    sync::Arc,
};

use aws_lc_rs::digest;
use chatmesh_api::{
    channel::v1::{ChannelKind, MemberRole},
    chat::v1::{
        self as pb, ChannelEvent, EventType, chat_internal_service_server::ChatInternalService,
        chat_service_server::ChatService,
    },
};
use chatmesh_platform::{
    auth::user_of,
    error::{invalid_field, status_with_reason},
    ids::{IdGenerator, max_id_at, now_ms, unix_ms_of},
    page,
};
use chatmesh_wire::chat::{self as wire, AckTarget};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::{
    announce,
    error::ChatError,
    feed::Publisher,
    media::Media,
    model::{AttachmentRecord, ChatKind, ChatRecord, NewChat, ReadPointer, UploadRecord, UploadState, timestamp},
    peers::Peers,
    search::{self, IndexQuery, IndexerStatus, SearchIndex},
    store::{ChatStore, CreateOutcome, ExternalEvent, ItemOutcome, Range},
};

const MAX_MENTIONS: usize = 20;
/// Index queries per search page at most, when the store filters many candidates out.
const MAX_SEARCH_ROUNDS: usize = 4;

/// The search index this process serves queries from, and whether its indexer runs here.
#[derive(Clone)]
pub struct Search {
    pub index: Arc<dyn SearchIndex>,
    pub indexer: Arc<IndexerStatus>,
}

struct Core {
    store: Arc<dyn ChatStore>,
    peers: Peers,
    publisher: Arc<dyn Publisher>,
    /// Ticks after each committed write, waking the feed relays.
    committed: watch::Sender<u64>,
    search: Option<Search>,
    media: Option<Arc<Media>>,
    ids: Arc<IdGenerator>,
}

/// What the chat service is built from.
pub struct ChatDeps {
    pub store: Arc<dyn ChatStore>,
    pub peers: Peers,
    pub publisher: Arc<dyn Publisher>,
    /// Ticks after each committed write, waking the feed relays.
    pub committed: watch::Sender<u64>,
    /// The search index queries are served from, when this process has one.
    pub search: Option<Search>,
    /// The attachments' backend, when this process has one.
    pub media: Option<Arc<Media>>,
    /// For upload ids.
    pub ids: Arc<IdGenerator>,
}

/// ChatService: the public surface.
#[derive(Clone)]
pub struct ChatApi {
    core: Arc<Core>,
}

/// ChatInternalService: the channel event log's intake (service principals only).
#[derive(Clone)]
pub struct ChatInternalApi {
    core: Arc<Core>,
}

impl ChatApi {
    pub fn new(deps: ChatDeps) -> (Self, ChatInternalApi) {
        let ChatDeps { store, peers, publisher, committed, search, media, ids } = deps;
        let core = Arc::new(Core { store, peers, publisher, committed, search, media, ids });
        (Self { core: core.clone() }, ChatInternalApi { core })
    }
}

/// `@username`s in a text: a letter then 2 to 31 letters, digits or `_`, after a non-word character.
fn mentioned_usernames(text: &str) -> Vec<String> {
    let mut names = BTreeSet::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let boundary = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if *c != '@' || !boundary {
            continue;
        }
        let name: String = chars[i + 1..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').collect();
        if (3..=32).contains(&name.len()) && name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            names.insert(name.to_lowercase());
        }
        if names.len() == MAX_MENTIONS {
            break;
        }
    }
    names.into_iter().collect()
}

fn body_hash(text: &str, reply_to: u64, attachments: &[u64]) -> String {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(&reply_to.to_be_bytes());
    for upload in attachments {
        context.update(&upload.to_be_bytes());
    }
    context.update(text.as_bytes());
    context.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn outcome(chat_id: u64, result: Result<(), ChatError>) -> pb::ChatOutcome {
    match result {
        Ok(()) => pb::ChatOutcome { chat_id: chat_id.to_string(), ok: true, reason: String::new() },
        Err(e) => pb::ChatOutcome { chat_id: chat_id.to_string(), ok: false, reason: e.reason().to_owned() },
    }
}

impl Core {
    fn tick(&self) {
        self.committed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A chat the caller may read: it exists, they belong to its channel, they did not remove it.
    async fn readable_chat(&self, chat_id: u64, caller: u64) -> Result<ChatRecord, ChatError> {
        let chat = self.store.get_chat(chat_id).await?.ok_or(ChatError::ChatNotFound(chat_id))?;
        match self.peers.member(chat.channel_id, caller).await {
            Ok(_) => {}
            // why: a chat of a channel the caller cannot see does not exist for them.
            Err(ChatError::ChannelNotFound(_)) => return Err(ChatError::ChatNotFound(chat_id)),
            Err(e) => return Err(e),
        }
        if self.store.is_removed(caller, chat_id).await? {
            return Err(ChatError::ChatNotFound(chat_id));
        }
        Ok(chat)
    }

    /// Mentions of members of the channel.
    async fn mentions(&self, channel_id: u64, text: &str) -> Result<Vec<u64>, ChatError> {
        let names = mentioned_usernames(text);
        let mut members = Vec::new();
        for user in self.peers.resolve_usernames(names).await? {
            if self.peers.is_member(channel_id, user).await? {
                members.push(user);
            }
        }
        members.sort_unstable();
        members.dedup();
        Ok(members)
    }

    fn media(&self) -> Result<&Arc<Media>, Status> {
        self.media.as_ref().ok_or_else(|| Status::unavailable("attachments are not served by this process"))
    }

    /// An upload of `caller` in `channel_id`, finished and matching what was declared, as the
    /// chat will carry it. A finished upload that does not match is deleted.
    async fn attachable(&self, upload_id: u64, caller: u64, channel_id: u64) -> Result<AttachmentRecord, Status> {
        let field = "attachment_upload_ids";
        let media = self.media()?;
        let upload = self.store.get_upload(upload_id).await.map_err(ChatError::from)?;
        let upload = match upload {
            Some(u) if u.uploader_id == caller && u.channel_id == channel_id => u,
            _ => {
                return Err(invalid_field(
                    field,
                    format!("upload {upload_id} is not an upload of yours in this channel"),
                ));
            }
        };
        match upload.state {
            UploadState::Pending => {}
            UploadState::Attached(_) => {
                return Err(invalid_field(field, format!("upload {upload_id} is already attached")));
            }
            UploadState::Reclaiming => return Err(invalid_field(field, format!("upload {upload_id} has expired"))),
        }
        let key = upload.object_key();
        let stored = media.inspect(&key).await.map_err(|e| Status::unavailable(e.to_string()))?;
        let Some(stored) = stored else {
            return Err(status_with_reason(
                tonic::Code::FailedPrecondition,
                format!("{field}: upload {upload_id} is not finished: PUT the file to its upload URL first"),
                "UPLOAD_NOT_FINISHED",
                &[("upload_id", upload_id.to_string())],
            ));
        };
        let type_matches = stored.content_type.as_deref().is_none_or(|t| t.eq_ignore_ascii_case(&upload.content_type));
        if stored.size != upload.size_bytes || !type_matches {
            media.delete(&key).await.map_err(|e| Status::unavailable(e.to_string()))?;
            return Err(invalid_field(
                field,
                format!(
                    "upload {upload_id} is not what was declared ({} bytes of {}); the file was deleted",
                    upload.size_bytes, upload.content_type
                ),
            ));
        }
        let (width, height) = if upload.content_type.starts_with("image/") {
            media.dimensions(&key, stored.size).await.unwrap_or((0, 0))
        } else {
            (0, 0)
        };
        Ok(AttachmentRecord {
            upload_id,
            file_name: upload.file_name,
            content_type: upload.content_type,
            size_bytes: upload.size_bytes,
            width,
            height,
        })
    }

    /// A search candidate as the caller may see it now, or `None`: it must still exist as a
    /// text chat matching the query, in one of the caller's channels, not retracted and not
    /// removed by the caller.
    async fn searchable(
        &self,
        chat_id: u64,
        caller: u64,
        allowed: &HashSet<u64>,
        query: &IndexQuery,
    ) -> Result<Option<pb::SearchHit>, Status> {
        let Some(chat) = self.store.get_chat(chat_id).await.map_err(ChatError::from)? else { return Ok(None) };
        let visible = chat.kind == ChatKind::Text
            && !chat.is_retracted()
            && allowed.contains(&chat.channel_id)
            && query.sender_id.is_none_or(|s| s == chat.sender_id)
            && search::matches(&chat.text, &query.query);
        if !visible || self.store.is_removed(caller, chat_id).await.map_err(ChatError::from)? {
            return Ok(None);
        }
        let snippet = search::snippet(&chat.text, &query.query);
        Ok(Some(pb::SearchHit { chat: Some(chat.to_pb(Some(caller))), snippet }))
    }

    fn read_pointer_pb(channel_id: u64, user: u64, pointer: ReadPointer) -> pb::ReadPointer {
        pb::ReadPointer {
            channel_id: channel_id.to_string(),
            user_id: user.to_string(),
            last_read_chat_id: if pointer.last_read_chat_id == 0 {
                String::new()
            } else {
                pointer.last_read_chat_id.to_string()
            },
            acked_at: (pointer.acked_at_ms > 0).then(|| timestamp(pointer.acked_at_ms)),
        }
    }
}

#[tonic::async_trait]
impl ChatService for ChatApi {
    async fn create_chat(
        &self,
        request: Request<pb::CreateChatRequest>,
    ) -> Result<Response<pb::CreateChatResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let wire::CreateChat { channel_id, text, client_msg_id, reply_to, upload_ids } =
            wire::create_chat(request.get_ref())?;
        let core = &self.core;
        let access = core.peers.member(channel_id, caller).await?;
        if access.kind == ChannelKind::Broadcast && access.role != MemberRole::Owner {
            return Err(ChatError::BroadcastOwnerOnly.into());
        }
        let reply_to = reply_to.unwrap_or(0);
        if reply_to != 0 {
            let target = core.store.get_chat(reply_to).await.map_err(ChatError::from)?;
            if target.is_none_or(|t| t.channel_id != channel_id) {
                return Err(invalid_field("reply_to_chat_id", "is not a chat of this channel"));
            }
        }
        let mentions = core.mentions(channel_id, &text).await?;
        let mut attachments = Vec::with_capacity(upload_ids.len());
        for upload_id in &upload_ids {
            attachments.push(core.attachable(*upload_id, caller, channel_id).await?);
        }
        let chat = NewChat {
            channel_id,
            sender_id: caller,
            kind: ChatKind::Text,
            body_hash: body_hash(&text, reply_to, &upload_ids),
            attachments,
            text,
            client_msg_id,
            reply_to,
            mentions,
            announcement: None,
        };
        let chat = match core.store.create_chat(chat).await.map_err(ChatError::from)? {
            CreateOutcome::Created(chat) => {
                core.tick();
                chat
            }
            CreateOutcome::Duplicate(chat) => chat,
            CreateOutcome::KeyConflict(existing) => return Err(ChatError::KeyReused(existing).into()),
            CreateOutcome::UploadUnavailable(upload) => {
                return Err(invalid_field("attachment_upload_ids", format!("upload {upload} is already attached")));
            }
        };
        Ok(Response::new(pb::CreateChatResponse { chat: Some(chat.to_pb(Some(caller))) }))
    }

    async fn get_chat(&self, request: Request<pb::GetChatRequest>) -> Result<Response<pb::GetChatResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let wire::GetChat { chat_id } = wire::get_chat(request.get_ref())?;
        let chat = self.core.readable_chat(chat_id, caller).await?;
        Ok(Response::new(pb::GetChatResponse { chat: Some(chat.to_pb(Some(caller))) }))
    }

    async fn list_chats(
        &self,
        request: Request<pb::ListChatsRequest>,
    ) -> Result<Response<pb::ListChatsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let wire::ListChats { channel_id, before, after, page_size: size, cursor } =
            wire::list_chats(request.get_ref())?;
        self.core.peers.member(channel_id, caller).await?;
        // why: the direction is the request's (after: oldest first); the token only moves the start.
        let range = match after {
            Some(after) => Range::After(cursor.unwrap_or(after)),
            None => Range::Before(cursor.or(before)),
        };
        let chats = self.core.store.list_chats(channel_id, range, size, caller).await.map_err(ChatError::from)?;
        let next_page_token = match chats.last() {
            Some(last) if chats.len() == size => page::encode_token(last.chat_id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListChatsResponse {
            chats: chats.iter().map(|c| c.to_pb(Some(caller))).collect(),
            next_page_token,
        }))
    }

    async fn edit_chat(&self, request: Request<pb::EditChatRequest>) -> Result<Response<pb::EditChatResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let wire::EditChat { chat_id, text } = wire::edit_chat(request.get_ref())?;
        let core = &self.core;
        core.readable_chat(chat_id, caller).await?;
        let chat = match core.store.edit_chat(chat_id, caller, text).await.map_err(ChatError::from)? {
            ItemOutcome::Done(chat) => *chat,
            ItemOutcome::NotFound => return Err(ChatError::ChatNotFound(chat_id).into()),
            ItemOutcome::NotSender => return Err(ChatError::NotSender(chat_id).into()),
            ItemOutcome::Retracted => return Err(ChatError::Retracted(chat_id).into()),
        };
        core.tick();
        Ok(Response::new(pb::EditChatResponse { chat: Some(chat.to_pb(Some(caller))) }))
    }

    async fn remove_chats(
        &self,
        request: Request<pb::RemoveChatsRequest>,
    ) -> Result<Response<pb::RemoveChatsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let wire::RemoveChats { chat_ids } = wire::remove_chats(request.get_ref())?;
        let core = &self.core;
        let mut outcomes = Vec::with_capacity(chat_ids.len());
        let mut removable = Vec::new();
        for chat_id in chat_ids {
            let readable = core.readable_chat(chat_id, caller).await.map(|_| ());
            if readable.is_ok() {
                removable.push(chat_id);
            }
            outcomes.push(outcome(chat_id, readable));
        }
        if !removable.is_empty() {
            core.store.remove_chats(caller, removable).await.map_err(ChatError::from)?;
        }
        Ok(Response::new(pb::RemoveChatsResponse { outcomes }))
    }

    async fn retract_chats(
        &self,
        request: Request<pb::RetractChatsRequest>,
    ) -> Result<Response<pb::RetractChatsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let wire::RetractChats { chat_ids } = wire::retract_chats(request.get_ref())?;
        let core = &self.core;
        let mut results: Vec<(u64, Result<(), ChatError>)> = Vec::with_capacity(chat_ids.len());
        let mut retractable = Vec::new();
        for chat_id in chat_ids {
            let readable = core.readable_chat(chat_id, caller).await.map(|_| ());
            if readable.is_ok() {
                retractable.push(chat_id);
            }
            results.push((chat_id, readable));
        }
        if !retractable.is_empty() {
            let done = core.store.retract_chats(caller, retractable.clone()).await.map_err(ChatError::from)?;
            for (chat_id, item) in retractable.into_iter().zip(done) {
                let result = match item {
                    ItemOutcome::Done(_) => Ok(()),
                    ItemOutcome::NotFound => Err(ChatError::ChatNotFound(chat_id)),
                    ItemOutcome::NotSender => Err(ChatError::NotSender(chat_id)),
                    ItemOutcome::Retracted => Err(ChatError::Retracted(chat_id)),
                };
                if let Some(slot) = results.iter_mut().find(|(id, _)| *id == chat_id) {
                    slot.1 = result;
                }
            }
            core.tick();
        }
        Ok(Response::new(pb::RetractChatsResponse {
            outcomes: results.into_iter().map(|(id, r)| outcome(id, r)).collect(),
        }))
    }

    async fn search_chats(
        &self,
        request: Request<pb::SearchChatsRequest>,
    ) -> Result<Response<pb::SearchChatsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let wire::SearchChats { query, channel_id, sender_id, from_ms, until_ms, page_size: size, cursor } =
            wire::search_chats(request.get_ref())?;
        // why: what counts as a word (and so the word cap) is the search analyzer's, which the wire crate does not link.
        let query = search::parse_query(&query).map_err(|m| invalid_field("query", m))?;
        let core = &self.core;
        let Some(search) = &core.search else {
            return Err(Status::unavailable("search is not served by this process"));
        };
        let channel_ids = match channel_id {
            Some(channel_id) => {
                core.peers.member(channel_id, caller).await?;
                vec![channel_id]
            }
            None => core.peers.channels_of(caller).await?,
        };
        let allowed: HashSet<u64> = channel_ids.iter().copied().collect();
        let mut index_query = IndexQuery {
            query,
            channel_ids,
            sender_id,
            from_ms,
            until_ms,
            before_chat_id: cursor,
            viewer: caller,
            limit: 0,
        };
        // why: the index trails the store, so every candidate is checked against the store now;
        // when many fail, ask again below the last one examined.
        let mut hits = Vec::with_capacity(size);
        let mut more = false;
        for _ in 0..MAX_SEARCH_ROUNDS {
            index_query.limit = (size - hits.len()) * 2 + 1;
            let ids = search.index.search(index_query.clone()).await.map_err(|e| Status::internal(e.to_string()))?;
            more = ids.len() == index_query.limit;
            let mut examined = 0;
            for id in &ids {
                examined += 1;
                index_query.before_chat_id = Some(*id);
                if let Some(hit) = core.searchable(*id, caller, &allowed, &index_query).await? {
                    hits.push(hit);
                    if hits.len() == size {
                        break;
                    }
                }
            }
            more |= examined < ids.len();
            if hits.len() == size || !more {
                break;
            }
        }
        let next_page_token = match index_query.before_chat_id {
            Some(last) if more => page::encode_token(last),
            _ => String::new(),
        };
        Ok(Response::new(pb::SearchChatsResponse { hits, next_page_token }))
    }

    async fn create_upload(
        &self,
        request: Request<pb::CreateUploadRequest>,
    ) -> Result<Response<pb::CreateUploadResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let req = request.into_inner();
        let wire::CreateUpload { channel_id, file_name, content_type } = wire::create_upload(&req)?;
        let core = &self.core;
        let media = core.media()?;
        if !media.accepts(&content_type) {
            return Err(invalid_field("content_type", format!("{content_type} is not accepted here")));
        }
        // why: the size's limit is this process's media setting, so the whole check stays here.
        if req.size_bytes <= 0 || req.size_bytes as u64 > media.max_bytes() {
            return Err(invalid_field("size_bytes", format!("must be from 1 to {} bytes", media.max_bytes())));
        }
        let access = core.peers.member(channel_id, caller).await?;
        if access.kind == ChannelKind::Broadcast && access.role != MemberRole::Owner {
            return Err(ChatError::BroadcastOwnerOnly.into());
        }
        let upload_id = core.ids.next_id();
        let upload = UploadRecord {
            upload_id,
            uploader_id: caller,
            channel_id,
            file_name,
            content_type,
            size_bytes: req.size_bytes as u64,
            created_at_ms: unix_ms_of(upload_id),
            state: UploadState::Pending,
        };
        core.store.create_upload(upload.clone()).await.map_err(ChatError::from)?;
        let signed = media
            .upload_url(&upload.object_key(), &upload.content_type, upload.size_bytes)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(pb::CreateUploadResponse {
            upload_id: upload_id.to_string(),
            upload_url: signed.url,
            expires_at: Some(timestamp(signed.expires_at_ms)),
        }))
    }

    async fn get_attachment_url(
        &self,
        request: Request<pb::GetAttachmentUrlRequest>,
    ) -> Result<Response<pb::GetAttachmentUrlResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let wire::GetAttachmentUrl { upload_id } = wire::get_attachment_url(request.get_ref())?;
        let core = &self.core;
        let media = core.media()?;
        let not_found = || {
            status_with_reason(
                tonic::Code::NotFound,
                format!("attachment {upload_id} not found"),
                "ATTACHMENT_NOT_FOUND",
                &[("upload_id", upload_id.to_string())],
            )
        };
        let upload = core.store.get_upload(upload_id).await.map_err(ChatError::from)?.ok_or_else(not_found)?;
        let UploadState::Attached(chat_id) = upload.state else { return Err(not_found()) };
        let chat = core.readable_chat(chat_id, caller).await.map_err(|_| not_found())?;
        if chat.is_retracted() {
            return Err(not_found());
        }
        let signed = media
            .download_url(&upload.object_key(), &upload.content_type, &upload.file_name)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(pb::GetAttachmentUrlResponse {
            download_url: signed.url,
            expires_at: Some(timestamp(signed.expires_at_ms)),
        }))
    }

    async fn ack_chats(&self, request: Request<pb::AckChatsRequest>) -> Result<Response<pb::AckChatsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let wire::AckChats { channel_id, target } = wire::ack_chats(request.get_ref())?;
        let core = &self.core;
        core.peers.member(channel_id, caller).await?;
        let target = match target {
            AckTarget::Chat(chat_id) => {
                let chat = core.store.get_chat(chat_id).await.map_err(ChatError::from)?;
                if chat.is_none_or(|c| c.channel_id != channel_id) {
                    return Err(invalid_field("chat_id", "is not a chat of this channel"));
                }
                Some(chat_id)
            }
            AckTarget::CreatedAt(ms) => {
                // why: a time past now names no chat yet; clamping also keeps the arithmetic in range.
                let ms = ms.min(now_ms());
                // why: ids carry their creation millisecond, so "the newest chat at or before t" is a key range.
                core.store.newest_chat_at_or_before(channel_id, max_id_at(ms)).await.map_err(ChatError::from)?
            }
        };
        let pointer = match target {
            Some(id) => core.store.ack(channel_id, caller, id).await.map_err(ChatError::from)?,
            None => core.store.unread(channel_id, caller).await.map_err(ChatError::from)?.pointer,
        };
        let read_pointer = Core::read_pointer_pb(channel_id, caller, pointer);
        // why: receipts are ephemeral (not logged); a lost one is harmless, so publish best-effort.
        let event = ChannelEvent {
            channel_id: channel_id.to_string(),
            r#type: EventType::ChatAcked as i32,
            occurred_at: Some(timestamp(pointer.acked_at_ms)),
            actor_id: caller.to_string(),
            payload: Some(pb::channel_event::Payload::ReadPointer(read_pointer.clone())),
            ..Default::default()
        };
        let publisher = core.publisher.clone();
        tokio::spawn(async move {
            if let Err(e) = publisher.publish(vec![event]).await {
                tracing::debug!(error = %e, "receipt not published");
            }
        });
        Ok(Response::new(pb::AckChatsResponse { read_pointer: Some(read_pointer) }))
    }

    async fn get_unread_counts(
        &self,
        request: Request<pb::GetUnreadCountsRequest>,
    ) -> Result<Response<pb::GetUnreadCountsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let wire::GetUnreadCounts { channel_ids } = wire::get_unread_counts(request.get_ref())?;
        let core = &self.core;
        let channels = if channel_ids.is_empty() {
            core.peers.channels_of(caller).await?
        } else {
            for channel_id in &channel_ids {
                core.peers.member(*channel_id, caller).await?;
            }
            channel_ids
        };
        let mut counts = Vec::with_capacity(channels.len());
        for channel_id in channels {
            let unread = core.store.unread(channel_id, caller).await.map_err(ChatError::from)?;
            let id = |v: u64| if v == 0 { String::new() } else { v.to_string() };
            counts.push(pb::UnreadCount {
                channel_id: channel_id.to_string(),
                unread_count: unread.count as i64,
                last_chat_id: id(unread.last_chat_id),
                last_read_chat_id: id(unread.pointer.last_read_chat_id),
            });
        }
        Ok(Response::new(pb::GetUnreadCountsResponse { counts }))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let wire::ListEvents { channel_id, after_event_id, page_size: size } = wire::list_events(request.get_ref())?;
        self.core.peers.member(channel_id, caller).await?;
        let after = after_event_id.unwrap_or(0);
        let mut events = self.core.store.list_events(channel_id, after, size + 1).await.map_err(ChatError::from)?;
        let has_more = events.len() > size;
        events.truncate(size);
        // why: idempotency keys are between services; clients dedupe by event id.
        events.iter_mut().for_each(|e| e.idempotency_key.clear());
        Ok(Response::new(pb::ListEventsResponse { events, has_more }))
    }
}

#[tonic::async_trait]
impl ChatInternalService for ChatInternalApi {
    async fn get_search_status(
        &self,
        request: Request<pb::GetSearchStatusRequest>,
    ) -> Result<Response<pb::GetSearchStatusResponse>, Status> {
        let wire::GetSearchStatus = wire::get_search_status(request.get_ref())?;
        let Some(search) = &self.core.search else {
            return Err(Status::unavailable("search is not served by this process"));
        };
        let status = search::status(self.core.store.as_ref(), search.index.as_ref()).await.map_err(Status::internal)?;
        let id = |v: u64| if v == 0 { String::new() } else { v.to_string() };
        Ok(Response::new(pb::GetSearchStatusResponse {
            newest_event_id: id(status.newest_event_id),
            indexed_event_id: id(status.indexed_event_id),
            lag_events: status.lag_events as i64,
            lag: Some(prost_types::Duration {
                seconds: (status.lag_ms / 1000) as i64,
                nanos: ((status.lag_ms % 1000) * 1_000_000) as i32,
            }),
            documents: status.documents as i64,
            indexer_running: search.indexer.is_running(),
        }))
    }

    async fn get_chat_states(
        &self,
        request: Request<pb::GetChatStatesRequest>,
    ) -> Result<Response<pb::GetChatStatesResponse>, Status> {
        let wire::GetChatStates { chat_ids } = wire::get_chat_states(request.get_ref())?;
        let mut found =
            search::source::StoreSource(self.core.store.clone()).read(&chat_ids).await.map_err(ChatError::from)?;
        let states = chat_ids.iter().filter_map(|id| found.remove(id)).map(|s| search::source::to_state(&s)).collect();
        Ok(Response::new(pb::GetChatStatesResponse { states }))
    }

    async fn append_channel_events(
        &self,
        request: Request<pb::AppendChannelEventsRequest>,
    ) -> Result<Response<pb::AppendChannelEventsResponse>, Status> {
        let wire::AppendChannelEvents = wire::append_channel_events(request.get_ref())?;
        let external: Vec<ExternalEvent> = request
            .into_inner()
            .events
            .into_iter()
            .map(|event| ExternalEvent { announcement: announce::announcement(&event), event })
            .collect();
        let recorded = external.iter().map(|e| e.event.clone()).collect::<Vec<_>>();
        let event_ids = self.core.store.append_events(external).await.map_err(ChatError::from)?;
        self.core.tick();
        let events = recorded
            .into_iter()
            .zip(event_ids)
            .map(|(mut event, id)| {
                event.event_id = id.to_string();
                event.occurred_at = event.occurred_at.or(Some(timestamp(unix_ms_of(id))));
                event
            })
            .collect();
        Ok(Response::new(pb::AppendChannelEventsResponse { events }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_found_at_word_boundaries() {
        assert_eq!(mentioned_usernames("hi @Ada and @bob_1, not me@mail.com or @x"), vec!["ada", "bob_1"]);
        assert_eq!(mentioned_usernames("@@ada"), vec!["ada"]);
        assert!(mentioned_usernames("no mentions").is_empty());
    }
}
