//! The embedded chat store's keyspaces (key → value) and how keys and values are encoded:
//! - `channelid_chatid__chat`: channel id ++ chat id (u64 BE) → ChatRecord (JSON)
//! - `chatid__channelid`: chat id → channel id
//! - `senderid_channelid_clientmsgid__chatid`: sender ++ channel ++ client_msg_id → chat id
//! - `channelid_eventid__event`: channel id ++ event id → ChannelEvent (protobuf; chats by id only)
//! - `eventid__channelid`: event id → channel id, or channel id ++ user id for a change private
//!   to that user (the global change feed, in commit order)
//! - `userid_eventid__private`: user id ++ event id → ChannelEvent of a private change (chat.removed)
//! - `eventkey__eventid`: idempotency key of an appended event → event id
//! - `userid_chatid__removed`: user id ++ chat id → () (removed for that user)
//! - `chatid_userid__removed`: chat id ++ user id → () (the same, by chat)
//! - `channelid_userid__pointer`: channel id ++ user id → ReadPointer (JSON)
//! - `uploadid__upload`: upload id → UploadRecord (JSON)
//! - `channelid_uploadid__`: channel id ++ upload id → () (a channel's uploads)
//! - `uploadid__pending`: upload id → () (uploads not yet attached, oldest first)
//! - `uploadid__reclaim`: upload id → () (uploads whose objects are to be deleted)
//! - `meta`: `format_version` → "1"; `cursor:<name>` → event id (u64 BE)

use crate::{
    model::{ChatRecord, UploadRecord},
    store::StoreError,
};

// Keyspace indexes in `Shared::ks`, in the order of [`NAMES`].
pub(super) const CHATS: usize = 0;
pub(super) const CHAT_CHANNEL: usize = 1;
pub(super) const IDEMPOTENCY: usize = 2;
pub(super) const EVENTS: usize = 3;
pub(super) const FEED: usize = 4;
pub(super) const EVENT_KEYS: usize = 5;
pub(super) const REMOVED: usize = 6;
pub(super) const POINTERS: usize = 7;
pub(super) const META: usize = 8;
pub(super) const PRIVATE: usize = 9;
pub(super) const REMOVED_BY: usize = 10;
pub(super) const UPLOADS: usize = 11;
pub(super) const CHANNEL_UPLOADS: usize = 12;
pub(super) const PENDING: usize = 13;
pub(super) const RECLAIM: usize = 14;
pub(super) const NAMES: [&str; 15] = [
    "channelid_chatid__chat",
    "chatid__channelid",
    "senderid_channelid_clientmsgid__chatid",
    "channelid_eventid__event",
    "eventid__channelid",
    "eventkey__eventid",
    "userid_chatid__removed",
    "channelid_userid__pointer",
    "meta",
    "userid_eventid__private",
    "chatid_userid__removed",
    "uploadid__upload",
    "channelid_uploadid__",
    "uploadid__pending",
    "uploadid__reclaim",
];

pub(super) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Two ids as one key, big-endian: keys sort by the first, then the second.
pub(super) fn key2(a: u64, b: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(16);
    key.extend_from_slice(&a.to_be_bytes());
    key.extend_from_slice(&b.to_be_bytes());
    key
}

pub(super) fn u64_of(bytes: &[u8]) -> Result<u64, StoreError> {
    bytes.try_into().map(u64::from_be_bytes).map_err(|_| backend("corrupt id"))
}

/// The second id of a [`key2`] key.
pub(super) fn tail_u64(key: &[u8]) -> Result<u64, StoreError> {
    key.get(8..16).map_or(Err(backend("corrupt key")), u64_of)
}

/// The key of a send's idempotency claim.
pub(super) fn idempotency_key(sender: u64, channel: u64, client_msg_id: &str) -> Vec<u8> {
    let mut key = key2(sender, channel);
    key.extend_from_slice(client_msg_id.as_bytes());
    key
}

pub(super) fn decode_chat(bytes: &[u8]) -> Result<ChatRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(backend)
}

pub(super) fn decode_upload(bytes: &[u8]) -> Result<UploadRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(backend)
}
