//! The outbox entries each change records: `chatmesh.chat.v1.ChannelEvent`s without an event
//! id (the chat service's log assigns it) and with an idempotency key, so a redelivered entry
//! is appended once.

use chatmesh_api::chat::v1::{ChannelEvent, EventType, channel_event::Payload};
use chatmesh_platform::ids::{IdGenerator, now_ms};
use prost::Message;

use crate::{
    model::{ChannelRecord, MemberRecord},
    store::OutboxEntry,
};

fn entry(ids: &IdGenerator, channel_id: u64, kind: EventType, actor: u64, payload: Payload) -> OutboxEntry {
    entry_with_changes(ids, channel_id, kind, actor, payload, Vec::new())
}

fn entry_with_changes(
    ids: &IdGenerator,
    channel_id: u64,
    kind: EventType,
    actor: u64,
    payload: Payload,
    changed_fields: Vec<String>,
) -> OutboxEntry {
    let seq = ids.next_id();
    let now = now_ms();
    let event = ChannelEvent {
        event_id: String::new(),
        channel_id: channel_id.to_string(),
        r#type: kind as i32,
        occurred_at: Some(chatmesh_platform::ids::timestamp(now)),
        actor_id: actor.to_string(),
        idempotency_key: format!("channel-outbox:{seq}"),
        payload: Some(payload),
        changed_fields,
    };
    OutboxEntry { seq, event: event.encode_to_vec() }
}

pub fn member_joined(ids: &IdGenerator, actor: u64, member: &MemberRecord) -> OutboxEntry {
    entry(ids, member.channel_id, EventType::MemberJoined, actor, Payload::Member(member.to_pb()))
}

/// Left by themselves (`actor` = the member) or kicked (`actor` = who kicked).
pub fn member_left(ids: &IdGenerator, actor: u64, member: &MemberRecord) -> OutboxEntry {
    entry(ids, member.channel_id, EventType::MemberLeft, actor, Payload::Member(member.to_pb()))
}

pub fn member_updated(ids: &IdGenerator, actor: u64, member: &MemberRecord) -> OutboxEntry {
    let payload = Payload::Member(member.to_pb());
    entry_with_changes(ids, member.channel_id, EventType::MemberUpdated, actor, payload, vec!["role".into()])
}

/// `changed` names the fields that changed ("name", "topic", "image_url", "visibility").
pub fn channel_updated(ids: &IdGenerator, actor: u64, channel: &ChannelRecord, changed: Vec<String>) -> OutboxEntry {
    let payload = Payload::Channel(channel.to_pb());
    entry_with_changes(ids, channel.channel_id, EventType::ChannelUpdated, actor, payload, changed)
}

pub fn channel_deleted(ids: &IdGenerator, actor: u64, channel: &ChannelRecord) -> OutboxEntry {
    entry(ids, channel.channel_id, EventType::ChannelDeleted, actor, Payload::Channel(channel.to_pb()))
}
