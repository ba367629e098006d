//! Chat service: chats, history, read pointers, search and media, and the channel event log.
//!
//! Not built yet: every RPC answers UNIMPLEMENTED (the generated default bodies) until the
//! chats issue lands; the servers are registered so health, reflection and clients see them.

use chatmesh_api::chat::v1::{chat_internal_service_server::ChatInternalService, chat_service_server::ChatService};

/// ChatService: the public surface.
#[derive(Debug, Clone, Default)]
pub struct ChatApi;

/// ChatInternalService: the channel event log's intake for other services.
#[derive(Debug, Clone, Default)]
pub struct ChatInternalApi;

impl ChatService for ChatApi {}

impl ChatInternalService for ChatInternalApi {}
