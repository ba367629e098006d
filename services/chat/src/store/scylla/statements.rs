//! The chat store's statements on ScyllaDB, by table (the change feed's are in
//! [`super::change_feed`], the uploads' in [`super::uploads`]).

use chatmesh_cql::{Statement, statement};

use super::{change_feed, uploads};

// chats
pub(super) static PUT_CHAT: Statement = statement!(
    "chat.put_chat",
    idempotent,
    "INSERT INTO chats (channel_id, bucket, chat_id, sender_id, kind, retracted, record) VALUES (?, ?, ?, ?, ?, ?, ?) \
     USING TIMESTAMP ?"
);
pub(super) static GET_CHAT: Statement = statement!(
    "chat.get_chat",
    idempotent,
    "SELECT record FROM chats WHERE channel_id = ? AND bucket = ? AND chat_id = ?"
);
pub(super) static CHATS_BEFORE: Statement = statement!(
    "chat.chats_before",
    idempotent,
    "SELECT record FROM chats WHERE channel_id = ? AND bucket = ? AND chat_id < ? ORDER BY chat_id DESC LIMIT ?"
);
pub(super) static CHATS_AFTER: Statement = statement!(
    "chat.chats_after",
    idempotent,
    "SELECT record FROM chats WHERE channel_id = ? AND bucket = ? AND chat_id > ? ORDER BY chat_id ASC LIMIT ?"
);
pub(super) static CHAT_IDS_AT_OR_BEFORE: Statement = statement!(
    "chat.chat_ids_at_or_before",
    idempotent,
    "SELECT chat_id FROM chats WHERE channel_id = ? AND bucket = ? AND chat_id <= ? ORDER BY chat_id DESC LIMIT ?"
);
pub(super) static UNREAD_AFTER: Statement = statement!(
    "chat.unread_after",
    idempotent,
    "SELECT chat_id, sender_id, kind, retracted FROM chats WHERE channel_id = ? AND bucket = ? AND chat_id > ? \
     ORDER BY chat_id ASC LIMIT ?"
);
pub(super) static PUT_CHAT_BY_ID: Statement =
    statement!("chat.put_chat_by_id", idempotent, "INSERT INTO chats_by_id (chat_id, channel_id) VALUES (?, ?)");
pub(super) static GET_CHAT_CHANNEL: Statement =
    statement!("chat.get_chat_channel", idempotent, "SELECT channel_id FROM chats_by_id WHERE chat_id = ?");
pub(super) static PUT_CHAT_BUCKET: Statement =
    statement!("chat.put_chat_bucket", idempotent, "INSERT INTO chat_buckets (channel_id, bucket) VALUES (?, ?)");
pub(super) static CHAT_BUCKETS_DOWN: Statement = statement!(
    "chat.chat_buckets_down",
    idempotent,
    "SELECT bucket FROM chat_buckets WHERE channel_id = ? AND bucket <= ? ORDER BY bucket DESC LIMIT ?"
);
pub(super) static CHAT_BUCKETS_UP: Statement = statement!(
    "chat.chat_buckets_up",
    idempotent,
    "SELECT bucket FROM chat_buckets WHERE channel_id = ? AND bucket >= ? ORDER BY bucket ASC LIMIT ?"
);
// idempotent sends
pub(super) static CLAIM_KEY: Statement = statement!(
    "chat.claim_key",
    not_idempotent,
    "INSERT INTO chat_keys (sender_id, channel_id, client_msg_id, chat_id, event_id, body_hash, record) \
     VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
);
pub(super) static GET_KEY: Statement = statement!(
    "chat.get_key",
    idempotent,
    "SELECT chat_id, event_id, body_hash, record FROM chat_keys WHERE sender_id = ? AND channel_id = ? \
     AND client_msg_id = ?"
);
pub(super) static RELEASE_KEY: Statement = statement!(
    "chat.release_key",
    not_idempotent,
    "DELETE FROM chat_keys WHERE sender_id = ? AND channel_id = ? AND client_msg_id = ? IF chat_id = ?"
);
// the channel event log
pub(super) static PUT_EVENT: Statement = statement!(
    "chat.put_event",
    idempotent,
    "INSERT INTO chat_events (channel_id, bucket, event_id, event) VALUES (?, ?, ?, ?)"
);
pub(super) static EVENTS_AFTER: Statement = statement!(
    "chat.events_after",
    idempotent,
    "SELECT event FROM chat_events WHERE channel_id = ? AND bucket = ? AND event_id > ? ORDER BY event_id ASC LIMIT ?"
);
pub(super) static EVENT_EXISTS: Statement = statement!(
    "chat.event_exists",
    idempotent,
    "SELECT event_id FROM chat_events WHERE channel_id = ? AND bucket = ? AND event_id = ?"
);
pub(super) static PUT_EVENT_BUCKET: Statement = statement!(
    "chat.put_event_bucket",
    idempotent,
    "INSERT INTO chat_event_buckets (channel_id, bucket) VALUES (?, ?)"
);
pub(super) static EVENT_BUCKETS_UP: Statement = statement!(
    "chat.event_buckets_up",
    idempotent,
    "SELECT bucket FROM chat_event_buckets WHERE channel_id = ? AND bucket >= ? ORDER BY bucket ASC LIMIT ?"
);
pub(super) static CLAIM_EVENT_KEY: Statement = statement!(
    "chat.claim_event_key",
    not_idempotent,
    "INSERT INTO chat_event_keys (idempotency_key, event_id, channel_id, event, chat_event_id, chat_record) \
     VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS"
);
pub(super) static GET_EVENT_KEY: Statement = statement!(
    "chat.get_event_key",
    idempotent,
    "SELECT event_id, channel_id, event, chat_event_id, chat_record FROM chat_event_keys WHERE idempotency_key = ?"
);
// removed for me
pub(super) static PUT_REMOVAL: Statement = statement!(
    "chat.put_removal",
    idempotent,
    "INSERT INTO chat_removals (user_id, channel_id, chat_id) VALUES (?, ?, ?)"
);
pub(super) static REMOVED_IN_RANGE: Statement = statement!(
    "chat.removed_in_range",
    idempotent,
    "SELECT chat_id FROM chat_removals WHERE user_id = ? AND channel_id = ? AND chat_id >= ? AND chat_id <= ? LIMIT ?"
);
pub(super) static PUT_REMOVED_BY: Statement =
    statement!("chat.put_removed_by", idempotent, "INSERT INTO chat_removed_by (chat_id, user_id) VALUES (?, ?)");
pub(super) static REMOVED_BY: Statement = statement!(
    "chat.removed_by",
    idempotent,
    "SELECT user_id FROM chat_removed_by WHERE chat_id = ? AND user_id > ? LIMIT ?"
);
// read pointers (chat_pointers; chat_read_pointers, partitioned by user, is only read) and cursors
pub(super) static GET_POINTER: Statement = statement!(
    "chat.get_pointer",
    idempotent,
    "SELECT last_read_chat_id, acked_at_ms FROM chat_pointers WHERE user_id = ? AND channel_id = ?"
);
pub(super) static GET_LEGACY_POINTER: Statement = statement!(
    "chat.get_legacy_pointer",
    idempotent,
    "SELECT last_read_chat_id, acked_at_ms FROM chat_read_pointers WHERE user_id = ? AND channel_id = ?"
);
pub(super) static CREATE_POINTER: Statement = statement!(
    "chat.create_pointer",
    not_idempotent,
    "INSERT INTO chat_pointers (user_id, channel_id, last_read_chat_id, acked_at_ms) VALUES (?, ?, ?, ?) \
     IF NOT EXISTS"
);
pub(super) static ADVANCE_POINTER: Statement = statement!(
    "chat.advance_pointer",
    not_idempotent,
    "UPDATE chat_pointers SET last_read_chat_id = ?, acked_at_ms = ? WHERE user_id = ? AND channel_id = ? \
     IF last_read_chat_id < ?"
);
pub(super) static PUT_CURSOR: Statement =
    statement!("chat.put_cursor", idempotent, "INSERT INTO chat_cursors (name, node, event_id) VALUES (?, ?, ?)");
pub(super) static GET_CURSOR: Statement =
    statement!("chat.get_cursor", idempotent, "SELECT event_id FROM chat_cursors WHERE name = ? AND node = ?");
// nodes whose feed has been written, and their clean stops
pub(super) static GET_FEED_NODE: Statement = statement!(
    "chat.get_feed_node",
    idempotent,
    "SELECT first_write_ms, clean_close_us FROM chat_feed_nodes WHERE node = ?"
);
pub(super) static PUT_FEED_NODE: Statement =
    statement!("chat.put_feed_node", idempotent, "INSERT INTO chat_feed_nodes (node, first_write_ms) VALUES (?, ?)");
pub(super) static MARK_FEED_NODE: Statement = statement!(
    "chat.mark_feed_node",
    idempotent,
    "UPDATE chat_feed_nodes USING TIMESTAMP ? SET clean_close_us = ? WHERE node = ?"
);
// the registry of channels with chats, for scans
pub(super) static PUT_CHANNEL: Statement =
    statement!("chat.put_channel", idempotent, "INSERT INTO chat_channels (slot, channel_id) VALUES (?, ?)");
pub(super) static CHANNELS_IN_SLOT: Statement = statement!(
    "chat.channels_in_slot",
    idempotent,
    "SELECT channel_id FROM chat_channels WHERE slot = ? AND channel_id > ? LIMIT ?"
);
pub(super) static PUT_CHANNEL_SLOT: Statement =
    statement!("chat.put_channel_slot", idempotent, "INSERT INTO chat_channel_slots (shard, slot) VALUES (?, ?)");
pub(super) static SLOTS_IN_SHARD: Statement = statement!(
    "chat.slots_in_shard",
    idempotent,
    "SELECT slot FROM chat_channel_slots WHERE shard = ? AND slot > ? LIMIT ?"
);
pub(super) static PUT_CHANNEL_SHARD: Statement =
    statement!("chat.put_channel_shard", idempotent, "INSERT INTO chat_channel_shards (root, shard) VALUES (?, ?)");
pub(super) static SHARDS_AFTER: Statement = statement!(
    "chat.shards_after",
    idempotent,
    "SELECT shard FROM chat_channel_shards WHERE root = ? AND shard > ? LIMIT ?"
);

/// The statements of this file (the change feed's and uploads' are in their modules).
static STATEMENTS: &[&Statement] = &[
    &PUT_CHAT,
    &GET_CHAT,
    &CHATS_BEFORE,
    &CHATS_AFTER,
    &CHAT_IDS_AT_OR_BEFORE,
    &UNREAD_AFTER,
    &PUT_CHAT_BY_ID,
    &GET_CHAT_CHANNEL,
    &PUT_CHAT_BUCKET,
    &CHAT_BUCKETS_DOWN,
    &CHAT_BUCKETS_UP,
    &CLAIM_KEY,
    &GET_KEY,
    &RELEASE_KEY,
    &PUT_EVENT,
    &EVENTS_AFTER,
    &EVENT_EXISTS,
    &PUT_EVENT_BUCKET,
    &EVENT_BUCKETS_UP,
    &CLAIM_EVENT_KEY,
    &GET_EVENT_KEY,
    &PUT_REMOVAL,
    &REMOVED_IN_RANGE,
    &PUT_REMOVED_BY,
    &REMOVED_BY,
    &GET_POINTER,
    &GET_LEGACY_POINTER,
    &CREATE_POINTER,
    &ADVANCE_POINTER,
    &PUT_CURSOR,
    &GET_CURSOR,
    &GET_FEED_NODE,
    &PUT_FEED_NODE,
    &MARK_FEED_NODE,
    &PUT_CHANNEL,
    &CHANNELS_IN_SLOT,
    &PUT_CHANNEL_SLOT,
    &SLOTS_IN_SHARD,
    &PUT_CHANNEL_SHARD,
    &SHARDS_AFTER,
];

/// Every statement of the chat store: this file's, the change feed's and the uploads'
/// (prepared at start, each run by a golden test).
pub(super) fn all_statements() -> Vec<&'static Statement> {
    STATEMENTS.iter().chain(change_feed::STATEMENTS).chain(uploads::STATEMENTS).copied().collect()
}
