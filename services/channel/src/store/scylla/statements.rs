//! The statements of the channel store, each declared once and checked against the migrations
//! (`crates/cql/migrations/0002_channels.cql`, `0006_channel_queues.cql`) by the golden tests.

use chatmesh_cql::{Statement, statement};

pub(super) static GET_CHANNEL: Statement = statement!(
    "channel.get_channel",
    idempotent,
    "SELECT kind, visibility, name, topic, image_url, owner_id, member_count, created_at_ms, updated_at_ms, \
     version, pending FROM channel_members WHERE channel_id = ? LIMIT ?"
);
pub(super) static GET_MEMBER: Statement = statement!(
    "channel.get_member",
    idempotent,
    "SELECT role, joined_at_ms, invited_by, closed, closed_at_ms, kind FROM channel_members WHERE channel_id = ? \
     AND user_id = ?"
);

pub(super) static LIST_MEMBERS: Statement = statement!(
    "channel.list_members",
    idempotent,
    "SELECT user_id, role, joined_at_ms, invited_by, closed, closed_at_ms, kind FROM channel_members \
     WHERE channel_id = ? AND user_id >= ? LIMIT ?"
);
pub(super) static MEMBER_IDS: Statement = statement!(
    "channel.member_ids",
    idempotent,
    "SELECT user_id FROM channel_members WHERE channel_id = ? AND user_id >= ? LIMIT ?"
);
pub(super) static PUT_CHANNEL: Statement = statement!(
    "channel.put_channel",
    not_idempotent,
    "UPDATE channel_members SET kind = ?, visibility = ?, name = ?, topic = ?, image_url = ?, owner_id = ?, \
     member_count = ?, created_at_ms = ?, updated_at_ms = ?, version = ?, pending = ? WHERE channel_id = ? \
     IF version = ?"
);
pub(super) static BUMP_VERSION: Statement = statement!(
    "channel.bump_version",
    not_idempotent,
    "UPDATE channel_members SET version = ?, pending = ? WHERE channel_id = ? IF version = ?"
);
pub(super) static PUT_MEMBER: Statement = statement!(
    "channel.put_member",
    idempotent,
    "INSERT INTO channel_members (channel_id, user_id, role, joined_at_ms, invited_by, closed, closed_at_ms) \
     VALUES (?, ?, ?, ?, ?, ?, ?)"
);
/// The head row (see `HEAD_ROW`): written by every change, so the channel's first live row is
/// always this one.
pub(super) static PUT_HEAD: Statement =
    statement!("channel.put_head", idempotent, "INSERT INTO channel_members (channel_id, user_id) VALUES (?, ?)");
pub(super) static DELETE_MEMBER: Statement =
    statement!("channel.delete_member", idempotent, "DELETE FROM channel_members WHERE channel_id = ? AND user_id = ?");
pub(super) static CLEAR_PENDING: Statement = statement!(
    "channel.clear_pending",
    not_idempotent,
    "UPDATE channel_members SET pending = ? WHERE channel_id = ? IF version = ?"
);
pub(super) static FORGET_CHANNEL: Statement = statement!(
    "channel.forget_channel",
    not_idempotent,
    "UPDATE channel_members SET version = ?, pending = ? WHERE channel_id = ? IF version = ?"
);
pub(super) static DELETE_CHANNEL: Statement =
    statement!("channel.delete_channel", idempotent, "DELETE FROM channel_members WHERE channel_id = ?");
pub(super) static FENCE_CHANNEL: Statement = statement!(
    "channel.fence_channel",
    not_idempotent,
    "UPDATE channel_members SET version = ? WHERE channel_id = ? IF version = ?"
);
pub(super) static PUT_MEMBERSHIP: Statement = statement!(
    "channel.put_membership",
    idempotent,
    "INSERT INTO channels_by_user (user_id, channel_id, role, joined_at_ms, invited_by, closed, closed_at_ms) \
     VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
);
pub(super) static DELETE_MEMBERSHIP: Statement = statement!(
    "channel.delete_membership",
    idempotent,
    "DELETE FROM channels_by_user USING TIMESTAMP ? WHERE user_id = ? AND channel_id = ?"
);
pub(super) static LIST_MEMBERSHIPS: Statement = statement!(
    "channel.list_memberships",
    idempotent,
    "SELECT channel_id, role, joined_at_ms, invited_by, closed, closed_at_ms FROM channels_by_user \
     WHERE user_id = ? AND channel_id <= ? LIMIT ?"
);
pub(super) static PUT_CLOSED: Statement = statement!(
    "channel.put_closed",
    idempotent,
    "INSERT INTO channel_closed_members (channel_id, user_id, role, joined_at_ms, invited_by, closed, closed_at_ms) \
     VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
);
pub(super) static DELETE_CLOSED: Statement = statement!(
    "channel.delete_closed",
    idempotent,
    "DELETE FROM channel_closed_members USING TIMESTAMP ? WHERE channel_id = ? AND user_id = ?"
);
pub(super) static DELETE_ALL_CLOSED: Statement = statement!(
    "channel.delete_all_closed",
    idempotent,
    "DELETE FROM channel_closed_members USING TIMESTAMP ? WHERE channel_id = ?"
);
pub(super) static LIST_CLOSED: Statement = statement!(
    "channel.list_closed",
    idempotent,
    "SELECT user_id, role, joined_at_ms, invited_by, closed, closed_at_ms FROM channel_closed_members \
     WHERE channel_id = ? AND user_id > ? LIMIT ?"
);
pub(super) static FIND_DIRECT: Statement = statement!(
    "channel.find_direct",
    idempotent,
    "SELECT channel_id FROM channel_direct_pairs WHERE low = ? AND high = ?"
);
pub(super) static CLAIM_DIRECT: Statement = statement!(
    "channel.claim_direct",
    not_idempotent,
    "INSERT INTO channel_direct_pairs (low, high, channel_id) VALUES (?, ?, ?) IF NOT EXISTS"
);
pub(super) static RELEASE_DIRECT: Statement = statement!(
    "channel.release_direct",
    not_idempotent,
    "DELETE FROM channel_direct_pairs WHERE low = ? AND high = ? IF channel_id = ?"
);
pub(super) static PUT_QUEUED: Statement = statement!(
    "channel.put_queued",
    idempotent,
    "INSERT INTO channel_outbox_queue (bucket, seq, event, at_us) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
);
pub(super) static LIST_QUEUE: Statement = statement!(
    "channel.list_queue",
    idempotent,
    "SELECT seq, event, at_us FROM channel_outbox_queue WHERE bucket = ? AND seq > ? LIMIT ?"
);
pub(super) static DELETE_QUEUED: Statement = statement!(
    "channel.delete_queued",
    idempotent,
    "DELETE FROM channel_outbox_queue USING TIMESTAMP ? WHERE bucket = ? AND seq = ?"
);
pub(super) static GET_PROGRESS: Statement = statement!(
    "channel.get_outbox_progress",
    idempotent,
    "SELECT first_open FROM channel_outbox_progress WHERE queue = ?"
);
pub(super) static START_PROGRESS: Statement = statement!(
    "channel.start_outbox_progress",
    not_idempotent,
    "INSERT INTO channel_outbox_progress (queue, first_open) VALUES (?, ?) IF NOT EXISTS"
);
pub(super) static ADVANCE_PROGRESS: Statement = statement!(
    "channel.advance_outbox_progress",
    not_idempotent,
    "UPDATE channel_outbox_progress SET first_open = ? WHERE queue = ? IF first_open < ?"
);
/// The outbox of older versions (`channel_outbox`), drained by the relay.
pub(super) static LIST_OUTBOX: Statement = statement!(
    "channel.list_outbox",
    idempotent,
    "SELECT seq, event FROM channel_outbox WHERE shard = ? AND seq >= ? LIMIT ?"
);
pub(super) static DELETE_OUTBOX: Statement =
    statement!("channel.delete_outbox", idempotent, "DELETE FROM channel_outbox WHERE shard = ? AND seq = ?");

/// Every statement of the store, prepared when it starts.
pub(super) static STATEMENTS: &[&Statement] = &[
    &GET_CHANNEL,
    &GET_MEMBER,
    &LIST_MEMBERS,
    &MEMBER_IDS,
    &PUT_CHANNEL,
    &BUMP_VERSION,
    &PUT_MEMBER,
    &PUT_HEAD,
    &DELETE_MEMBER,
    &CLEAR_PENDING,
    &FORGET_CHANNEL,
    &DELETE_CHANNEL,
    &FENCE_CHANNEL,
    &PUT_MEMBERSHIP,
    &DELETE_MEMBERSHIP,
    &LIST_MEMBERSHIPS,
    &PUT_CLOSED,
    &DELETE_CLOSED,
    &DELETE_ALL_CLOSED,
    &LIST_CLOSED,
    &FIND_DIRECT,
    &CLAIM_DIRECT,
    &RELEASE_DIRECT,
    &PUT_QUEUED,
    &LIST_QUEUE,
    &DELETE_QUEUED,
    &GET_PROGRESS,
    &START_PROGRESS,
    &ADVANCE_PROGRESS,
    &LIST_OUTBOX,
    &DELETE_OUTBOX,
];
