//! Chat service: chats, history, read pointers and unread counts, and each channel's ordered
//! event log (with the global change feed that publishing and search consume).

mod model;
pub mod store;

pub use model::{Announcement, ChatKind, ChatRecord, NewChat, ReadPointer};

use chatmesh_api::chat::v1::{chat_internal_service_server::ChatInternalService, chat_service_server::ChatService};

/// ChatService: the public surface.
#[derive(Debug, Clone, Default)]
pub struct ChatApi;

/// ChatInternalService: the channel event log's intake for other services.
#[derive(Debug, Clone, Default)]
pub struct ChatInternalApi;

impl ChatService for ChatApi {}

impl ChatInternalService for ChatInternalApi {}
