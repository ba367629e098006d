//! The WebSocket protocol's vocabulary in one place: event names, close codes, and the JSON
//! encoding of frames (`{"event": "...", "data": {...}}`, proto3 JSON mapping for payloads).

use chatmesh_api::{
    chat::v1::{ChannelEvent, EventType},
    dispatcher::v1::{FeedEvent, LiveEvent, live_event::Event},
};
pub use chatmesh_wire::frames::to_json;
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
    pub use chatmesh_wire::frames::feed::{STATUS_CREATED, STATUS_DELETED};
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

/// A feed event as a frame: the status it carries under `data.status`; `None` for one no
/// client could read.
pub fn feed_event(event: &FeedEvent) -> Option<String> {
    chatmesh_wire::frames::feed_event(event).map(|(name, data)| frame(name, data))
}

/// A live event as a frame, with the channel and event id it belongs to (for dedupe; a feed
/// event belongs to neither: it is not part of any channel's resume).
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
        Event::FeedEvent(f) => Some((None, None, feed_event(f)?)),
    }
}

pub fn resync(channel_id: u64, reason: &str) -> String {
    frame(server::RESYNC, json!({ "channelId": channel_id.to_string(), "reason": reason }))
}

#[cfg(test)]
mod tests {
    use chatmesh_api::{
        chat::v1::{Chat, channel_event::Payload},
        dispatcher::v1::FeedEventType,
        feed::v1::Status,
    };
    use prost::Message;

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

    fn live_feed_event(kind: FeedEventType, status: &Status, type_url: &str) -> LiveEvent {
        let status = prost_types::Any { type_url: type_url.into(), value: status.encode_to_vec() };
        LiveEvent { event: Some(Event::FeedEvent(FeedEvent { r#type: kind as i32, status: Some(status) })) }
    }

    const STATUS_URL: &str = "type.googleapis.com/chatmesh.feed.v1.Status";

    #[test]
    fn feed_events_carry_the_status_itself_under_their_name_and_no_channel() {
        let status = Status { status_id: "41".into(), author_id: "9".into(), text: "hi".into(), ..Default::default() };
        let live = live_feed_event(FeedEventType::StatusCreated, &status, STATUS_URL);
        let (channel, event_id, text) = live_event(&live).expect("a frame");
        assert_eq!((channel, event_id), (None, None), "not part of any channel's resume");
        let frame: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(frame["event"], "status.created");
        assert_eq!(frame["data"], json!({ "status": { "statusId": "41", "authorId": "9", "text": "hi" } }));

        let gone = Status { status_id: "41".into(), deleted: true, ..Default::default() };
        let (_, _, text) = live_event(&live_feed_event(FeedEventType::StatusDeleted, &gone, STATUS_URL)).unwrap();
        let frame: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (frame["event"].as_str(), &frame["data"]["status"]["deleted"]),
            (Some("status.deleted"), &json!(true))
        );
    }

    #[test]
    fn a_feed_event_no_client_could_read_is_not_sent() {
        let status = Status { status_id: "41".into(), ..Default::default() };
        assert_eq!(live_event(&live_feed_event(FeedEventType::Unspecified, &status, STATUS_URL)), None);
        let elsewhere = "type.googleapis.com/chatmesh.chat.v1.Chat";
        assert_eq!(live_event(&live_feed_event(FeedEventType::StatusCreated, &status, elsewhere)), None);
        let unpacked = FeedEvent { r#type: FeedEventType::StatusCreated as i32, status: None };
        assert_eq!(feed_event(&unpacked), None);
    }
}
