//! The edges' frames: the WebSocket gateway's client frames, `{"event": <name>, "data": {...}}`,
//! read into what the gateway does with them (see docs/websocket.md; refusals carry the error
//! frame's code), and the JSON both edges send for live events (a WebSocket frame's `data`, a
//! server-sent event's `data:`).

use chatmesh_api::{
    chat::v1::AckChatsRequest,
    dispatcher::v1::{FeedEvent, FeedEventType, SendTypingRequest},
};
use prost::Message;
use prost_reflect::DynamicMessage;
use serde_json::{Value, json};

/// Feed events, named alike on both edges (a WebSocket frame's `event`, a server-sent event's
/// `event:`).
pub mod feed {
    pub const STATUS_CREATED: &str = "status.created";
    pub const STATUS_DELETED: &str = "status.deleted";
}

/// The message a feed event carries (packed in an `Any`, see live.proto).
const FEED_STATUS: &str = "chatmesh.feed.v1.Status";

/// A protobuf message as proto3 JSON (lowerCamel names, int64 as strings, RFC 3339 times).
pub fn to_json<M: Message>(message: &M, full_name: &str) -> Value {
    encoded_to_json(full_name, &message.encode_to_vec()).unwrap_or_else(|| json!({}))
}

fn encoded_to_json(full_name: &str, bytes: &[u8]) -> Option<Value> {
    let descriptor = chatmesh_api::descriptor_pool().get_message_by_name(full_name)?;
    let dynamic = DynamicMessage::decode(descriptor, bytes).ok()?;
    serde_json::to_value(&dynamic).ok()
}

/// A feed event's name and data: the status it carries, as proto3 JSON, under `status` (the
/// status itself, not its `Any` wrapper). `None` for an unknown type or a payload that is not
/// a status, which no client could read.
pub fn feed_event(event: &FeedEvent) -> Option<(&'static str, Value)> {
    let name = match event.r#type() {
        FeedEventType::StatusCreated => feed::STATUS_CREATED,
        FeedEventType::StatusDeleted => feed::STATUS_DELETED,
        FeedEventType::Unspecified => return None,
    };
    let packed = event.status.as_ref()?;
    if packed.type_url.rsplit('/').next() != Some(FEED_STATUS) {
        return None;
    }
    Some((name, json!({ "status": encoded_to_json(FEED_STATUS, &packed.value)? })))
}

/// Events a client sends.
pub mod client {
    pub const PING: &str = "ping";
    pub const ACK: &str = "ack";
    /// The seed's name for `ack`.
    pub const ON_ACK: &str = "onAck";
    pub const TYPING: &str = "typing";
    pub const AUTH: &str = "auth";
    pub const RESUME: &str = "resume";
}

/// A client frame, read.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    Ping,
    Ack(AckChatsRequest),
    Typing(SendTypingRequest),
    /// A new access token for this connection.
    Auth {
        token: String,
    },
    /// Replay after these (channel, last event id) pairs; `refused` names the channel keys that
    /// were not ids (each answered with an error frame, the others still resumed).
    Resume {
        channels: Vec<(u64, u64)>,
        refused: Vec<String>,
    },
    Unknown(String),
}

/// Why a frame was refused: the `error` frame's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: &'static str,
    pub message: String,
}

fn refused(code: &'static str, message: impl Into<String>) -> FrameError {
    FrameError { code, message: message.into() }
}

/// An id given as a JSON number or a decimal string.
pub fn id_value(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => crate::ids::parse_id(s),
        _ => None,
    }
}

/// Reads one text frame.
pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
    let frame = serde_json::from_str::<Value>(text)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| refused("MALFORMED_FRAME", "frames are JSON objects: {\"event\": ..., \"data\": {...}}"))?;
    let event = frame.get("event").and_then(Value::as_str).unwrap_or_default();
    let data = frame.get("data").unwrap_or(&Value::Null);
    Ok(match event {
        client::PING => ClientFrame::Ping,
        client::ACK | client::ON_ACK => ClientFrame::Ack(ack(data)?),
        client::TYPING => {
            let channel_id = data
                .get("channelId")
                .and_then(id_value)
                .ok_or_else(|| refused("INVALID_ARGUMENT", "channelId: is required"))?;
            ClientFrame::Typing(SendTypingRequest { channel_id: channel_id.to_string() })
        }
        client::AUTH => {
            ClientFrame::Auth { token: data.get("token").and_then(Value::as_str).unwrap_or_default().to_owned() }
        }
        client::RESUME => {
            let wanted = data
                .get("channels")
                .and_then(Value::as_object)
                .ok_or_else(|| refused("INVALID_ARGUMENT", "channels: is required ({channelId: lastEventId})"))?;
            let (mut channels, mut refused_keys) = (Vec::new(), Vec::new());
            for (channel, last) in wanted {
                match crate::ids::parse_id(channel) {
                    Some(channel) => channels.push((channel, id_value(last).unwrap_or(0))),
                    None => refused_keys.push(channel.clone()),
                }
            }
            ClientFrame::Resume { channels, refused: refused_keys }
        }
        other => ClientFrame::Unknown(other.to_owned()),
    })
}

fn ack(data: &Value) -> Result<AckChatsRequest, FrameError> {
    let channel_id = data
        .get("channelId")
        .and_then(id_value)
        .ok_or_else(|| refused("INVALID_ARGUMENT", "channelId: is required"))?;
    let chat_id = data.get("chatId").and_then(id_value).map(|id| id.to_string()).unwrap_or_default();
    let created_at = match data.get("createdAt").and_then(Value::as_str) {
        Some(text) => Some(
            text.parse::<prost_types::Timestamp>()
                .map_err(|_| refused("INVALID_ARGUMENT", "createdAt: is not an RFC 3339 time"))?,
        ),
        None => None,
    };
    Ok(AckChatsRequest { channel_id: channel_id.to_string(), chat_id, created_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_or_name_their_fault() {
        assert_eq!(parse(r#"{"event":"ping"}"#), Ok(ClientFrame::Ping));
        assert_eq!(parse("[]").unwrap_err().code, "MALFORMED_FRAME");
        assert_eq!(parse("nope").unwrap_err().code, "MALFORMED_FRAME");
        let ack = parse(r#"{"event":"onAck","data":{"channelId":"7","chatId":9}}"#).unwrap();
        assert_eq!(
            ack,
            ClientFrame::Ack(AckChatsRequest { channel_id: "7".into(), chat_id: "9".into(), created_at: None })
        );
        assert_eq!(parse(r#"{"event":"ack","data":{}}"#).unwrap_err().message, "channelId: is required");
        let bad_time = parse(r#"{"event":"ack","data":{"channelId":1,"createdAt":"yesterday"}}"#).unwrap_err();
        assert!(bad_time.message.starts_with("createdAt"));
        let resume = parse(r#"{"event":"resume","data":{"channels":{"5":"12","x":1}}}"#).unwrap();
        assert_eq!(resume, ClientFrame::Resume { channels: vec![(5, 12)], refused: vec!["x".into()] });
        assert_eq!(parse(r#"{"event":"dance"}"#), Ok(ClientFrame::Unknown("dance".into())));
        assert_eq!(parse(r#"{"event":"typing","data":{"channelId":"x"}}"#).unwrap_err().code, "INVALID_ARGUMENT");
    }
}
