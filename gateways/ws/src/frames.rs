//! The WebSocket protocol's vocabulary in one place: event names, close codes, and the JSON
//! encoding of frames (`{"event": "...", "data": {...}}`, proto3 JSON mapping for payloads).

use chatmesh_api::{
    chat::v1::{ChannelEvent, EventType},
    dispatcher::v1::{LiveEvent, live_event::Event},
};
use prost::Message;
use prost_reflect::DynamicMessage;
use serde_json::{Value, json};

/// Server → client event names.
pub mod server {
    pub const READY: &str = "ready";
    pub const CHAT_CREATED: &str = "chat.created";
    pub const CHAT_EDITED: &str = "chat.edited";
    pub const CHAT_RETRACTED: &str = "chat.retracted";
    pub const CHAT_ACKED: &str = "chat.acked";
    pub const MEMBER_JOINED: &str = "member.joined";
    pub const MEMBER_LEFT: &str = "member.left";
    pub const MEMBER_UPDATED: &str = "member.updated";
    pub const CHANNEL_UPDATED: &str = "channel.updated";
    pub const CHANNEL_DELETED: &str = "channel.deleted";
    pub const TYPING: &str = "typing";
    pub const PRESENCE: &str = "presence";
    pub const RESYNC: &str = "resync";
    pub const RESUMED: &str = "resumed";
    pub const AUTHENTICATED: &str = "authenticated";
    pub const PONG: &str = "pong";
    pub const ERROR: &str = "error";
}

/// Client → server event names.
pub use chatmesh_wire::frames::client;

/// Close codes, documented in docs/websocket.md.
pub mod close {
    /// The server is restarting or lost its dispatcher: reconnect and resume.
    pub const RECONNECT: u16 = 1012;
    /// The access token expired and was not renewed with an `auth` frame.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// The login session ended (logout).
    pub const LOGGED_OUT: u16 = 4003;
    /// The channel named in `channel_id` is not one of the user's.
    pub const CHANNEL_NOT_FOUND: u16 = 4004;
    /// The client did not read fast enough.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// No pong arrived in time.
    pub const HEARTBEAT_TIMEOUT: u16 = 4009;
}

/// A protobuf message as proto3 JSON (lowerCamel names, int64 as strings, RFC 3339 times).
pub fn to_json<M: Message>(message: &M, full_name: &str) -> Value {
    let Some(descriptor) = chatmesh_api::descriptor_pool().get_message_by_name(full_name) else { return json!({}) };
    DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .ok()
        .and_then(|dynamic| serde_json::to_value(&dynamic).ok())
        .unwrap_or_else(|| json!({}))
}

pub fn frame(event: &str, data: Value) -> String {
    json!({ "event": event, "data": data }).to_string()
}

pub fn error(code: &str, message: &str) -> String {
    frame(server::ERROR, json!({ "code": code, "message": message }))
}

fn event_name(kind: EventType) -> Option<&'static str> {
    Some(match kind {
        EventType::ChatCreated => server::CHAT_CREATED,
        EventType::ChatEdited => server::CHAT_EDITED,
        EventType::ChatRetracted => server::CHAT_RETRACTED,
        EventType::ChatAcked => server::CHAT_ACKED,
        EventType::MemberJoined => server::MEMBER_JOINED,
        EventType::MemberLeft => server::MEMBER_LEFT,
        EventType::MemberUpdated => server::MEMBER_UPDATED,
        EventType::ChannelUpdated => server::CHANNEL_UPDATED,
        EventType::ChannelDeleted => server::CHANNEL_DELETED,
        // why: a removal is private to its actor and never live.
        EventType::Unspecified | EventType::ChatRemoved => return None,
    })
}

/// A channel event as a frame: the event's fields (eventId, channelId, actorId, occurredAt
/// and its payload) under `data`.
pub fn channel_event(event: &ChannelEvent) -> Option<String> {
    let name = event_name(event.r#type())?;
    let mut data = to_json(event, "chatmesh.chat.v1.ChannelEvent");
    if let Some(fields) = data.as_object_mut() {
        fields.remove("type");
        fields.remove("idempotencyKey");
    }
    Some(frame(name, data))
}

/// A live event as a frame, with the channel and event id it belongs to (for dedupe).
pub fn live_event(event: &LiveEvent) -> Option<(Option<u64>, Option<u64>, String)> {
    match event.event.as_ref()? {
        Event::ChannelEvent(e) => Some((e.channel_id.parse().ok(), e.event_id.parse().ok(), channel_event(e)?)),
        Event::Typing(t) => {
            Some((t.channel_id.parse().ok(), None, frame(server::TYPING, to_json(t, "chatmesh.dispatcher.v1.Typing"))))
        }
        Event::Presence(p) => {
            Some((None, None, frame(server::PRESENCE, to_json(p, "chatmesh.dispatcher.v1.Presence"))))
        }
        Event::Resync(r) => {
            Some((r.channel_id.parse().ok(), None, frame(server::RESYNC, to_json(r, "chatmesh.dispatcher.v1.Resync"))))
        }
    }
}

pub fn resync(channel_id: u64, reason: &str) -> String {
    frame(server::RESYNC, json!({ "channelId": channel_id.to_string(), "reason": reason }))
}

#[cfg(test)]
mod tests {
    use chatmesh_api::chat::v1::{Chat, channel_event::Payload};

    use super::*;

    #[test]
    fn channel_events_are_proto3_json_under_their_name() {
        let event = ChannelEvent {
            event_id: "42".into(),
            channel_id: "7".into(),
            r#type: EventType::ChatCreated as i32,
            actor_id: "9".into(),
            idempotency_key: "internal".into(),
            payload: Some(Payload::Chat(Chat { chat_id: "41".into(), text: "hi".into(), ..Default::default() })),
            ..Default::default()
        };
        let frame: Value = serde_json::from_str(&channel_event(&event).unwrap()).unwrap();
        assert_eq!(frame["event"], "chat.created");
        assert_eq!(frame["data"]["eventId"], "42");
        assert_eq!(frame["data"]["chat"]["chatId"], "41");
        assert_eq!(frame["data"]["chat"]["text"], "hi");
        assert!(frame["data"].get("idempotencyKey").is_none());
    }
}
