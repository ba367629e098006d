//! Domain results in their protobuf form (a chat's own is [`ChatRecord::to_pb`]).
//!
//! [`ChatRecord::to_pb`]: crate::model::ChatRecord::to_pb

use std::collections::HashSet;

use chatmesh_api::chat::v1 as pb;
use chatmesh_platform::page;

use crate::{
    core::{Hit, SearchHealth},
    error::ChatError,
    media::SignedUrl,
    model::{ReadPointer, timestamp},
    store::Unread,
};

/// An id, or empty for 0 (none).
fn optional_id(id: u64) -> String {
    if id == 0 { String::new() } else { id.to_string() }
}

/// The page token of where the next page starts, or empty after the last page.
pub fn page_token(next: Option<u64>) -> String {
    next.map(page::encode_token).unwrap_or_default()
}

/// What became of one chat of a multiple-chat request.
pub fn outcome(chat_id: u64, result: Result<(), ChatError>) -> pb::ChatOutcome {
    match result {
        Ok(()) => pb::ChatOutcome { chat_id: chat_id.to_string(), ok: true, reason: String::new() },
        Err(e) => pb::ChatOutcome { chat_id: chat_id.to_string(), ok: false, reason: e.reason().to_owned() },
    }
}

pub fn read_pointer(channel_id: u64, user: u64, pointer: ReadPointer) -> pb::ReadPointer {
    pb::ReadPointer {
        channel_id: channel_id.to_string(),
        user_id: user.to_string(),
        last_read_chat_id: optional_id(pointer.last_read_chat_id),
        acked_at: (pointer.acked_at_ms > 0).then(|| timestamp(pointer.acked_at_ms)),
    }
}

pub fn unread_count(channel_id: u64, unread: Unread) -> pb::UnreadCount {
    pb::UnreadCount {
        channel_id: channel_id.to_string(),
        unread_count: unread.count as i64,
        last_chat_id: optional_id(unread.last_chat_id),
        last_read_chat_id: optional_id(unread.pointer.last_read_chat_id),
    }
}

/// A search hit, as `reader` (who blocked `blocked`) sees its chat.
pub fn hit(hit: Hit, reader: u64, blocked: &HashSet<u64>) -> pb::SearchHit {
    pb::SearchHit { chat: Some(hit.chat.to_pb_read_by(reader, blocked)), snippet: hit.snippet }
}

pub fn search_status(health: SearchHealth) -> pb::GetSearchStatusResponse {
    let status = health.status;
    pb::GetSearchStatusResponse {
        newest_event_id: optional_id(status.newest_event_id),
        indexed_event_id: optional_id(status.indexed_event_id),
        lag_events: status.lag_events as i64,
        lag: Some(prost_types::Duration {
            seconds: (status.lag_ms / 1000) as i64,
            nanos: ((status.lag_ms % 1000) * 1_000_000) as i32,
        }),
        documents: status.documents as i64,
        indexer_running: health.indexer_running,
    }
}

/// When a signed URL stops working.
pub fn expires_at(url: &SignedUrl) -> Option<prost_types::Timestamp> {
    Some(timestamp(url.expires_at_ms))
}
