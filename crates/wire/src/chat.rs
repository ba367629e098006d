//! Validation of every chat-service request: each function checks one request type, names the
//! field it refuses, and returns the values the handler works with.
//!
//! What needs more than the request stays with the handler: membership, whether a reply or an
//! acknowledged chat belongs to the channel, uploads as stored, the media limits of the serving
//! process (accepted content types, largest size), and the search analyzer (words of a
//! query).

use std::collections::BTreeSet;

use chatmesh_api::chat::v1::{self as pb, EventType};
use tonic::Status;

use crate::{error::invalid_field, validate};

/// Most characters in a chat's text, counted after trimming.
pub const MAX_TEXT: usize = 4000;
/// Most characters in a client's idempotency key.
pub const MAX_CLIENT_MSG_ID: usize = 64;
/// Most ids in one id list (chats to remove or retract, channels to count, chat states).
pub const MAX_BATCH_IDS: usize = 100;
/// Most attachments on one chat.
pub const MAX_ATTACHMENTS: usize = 10;
/// Chats per ListChats page when the request names no size.
pub const DEFAULT_PAGE: usize = 50;
/// Chats per ListChats page at most.
pub const MAX_PAGE: usize = 100;
/// Events per ListEvents page when the request names no size.
pub const DEFAULT_EVENTS: usize = 100;
/// Events per ListEvents page at most.
pub const MAX_EVENTS: usize = 500;
/// Events in one AppendChannelEvents request at most.
pub const MAX_APPEND: usize = 500;
/// Hits per SearchChats page when the request names no size.
pub const DEFAULT_HITS: usize = 20;
/// Hits per SearchChats page at most.
pub const MAX_HITS: usize = 100;
/// Longest search query accepted, in characters (after trimming).
pub const MAX_QUERY_CHARS: usize = 256;
/// Most characters in an upload's file name (after trimming).
pub const MAX_FILE_NAME: usize = 255;

/// A valid CreateChat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateChat {
    pub channel_id: u64,
    /// Trimmed; empty only when the chat carries attachments.
    pub text: String,
    /// Empty: the send is not idempotent.
    pub client_msg_id: String,
    pub reply_to: Option<u64>,
    /// Distinct, in request order; at most [`MAX_ATTACHMENTS`].
    pub upload_ids: Vec<u64>,
}

/// Reads a CreateChatRequest: channel, attachments, text, idempotency key, reply, in that order.
pub fn create_chat(request: &pb::CreateChatRequest) -> Result<CreateChat, Status> {
    let channel_id = validate::id("channel_id", &request.channel_id)?;
    let upload_ids = if request.attachment_upload_ids.is_empty() {
        Vec::new()
    } else if request.attachment_upload_ids.len() > MAX_ATTACHMENTS {
        return Err(invalid_field("attachment_upload_ids", format!("at most {MAX_ATTACHMENTS} attachments")));
    } else {
        id_list("attachment_upload_ids", &request.attachment_upload_ids)?
    };
    // why: a chat may be only files; text is then optional.
    let text = if upload_ids.is_empty() || !request.text.trim().is_empty() {
        chat_text("text", &request.text)?
    } else {
        String::new()
    };
    let client_msg_id = &request.client_msg_id;
    if client_msg_id.chars().count() > MAX_CLIENT_MSG_ID || client_msg_id.chars().any(char::is_control) {
        return Err(invalid_field(
            "client_msg_id",
            format!("must be at most {MAX_CLIENT_MSG_ID} printable characters"),
        ));
    }
    let reply_to = optional_id("reply_to_chat_id", &request.reply_to_chat_id)?;
    Ok(CreateChat { channel_id, text, client_msg_id: client_msg_id.clone(), reply_to, upload_ids })
}

/// A valid GetChat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetChat {
    pub chat_id: u64,
}

/// Reads a GetChatRequest.
pub fn get_chat(request: &pb::GetChatRequest) -> Result<GetChat, Status> {
    Ok(GetChat { chat_id: validate::id("chat_id", &request.chat_id)? })
}

/// A valid ListChats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListChats {
    pub channel_id: u64,
    /// Newest first, older than this chat; never together with `after`.
    pub before: Option<u64>,
    /// Oldest first, newer than this chat.
    pub after: Option<u64>,
    /// Clamped to `1..=`[`MAX_PAGE`].
    pub page_size: usize,
    /// Continue after this (the decoded page token); `None`: the first page.
    pub cursor: Option<u64>,
}

/// Reads a ListChatsRequest.
pub fn list_chats(request: &pb::ListChatsRequest) -> Result<ListChats, Status> {
    let channel_id = validate::id("channel_id", &request.channel_id)?;
    let before = optional_id("before", &request.before)?;
    let after = optional_id("after", &request.after)?;
    if before.is_some() && after.is_some() {
        return Err(invalid_field("after", "give either before or after, not both"));
    }
    let page_size = crate::page::page_size(request.page_size, DEFAULT_PAGE, MAX_PAGE);
    let cursor = crate::page::decode_token(&request.page_token)?;
    Ok(ListChats { channel_id, before, after, page_size, cursor })
}

/// A valid EditChat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditChat {
    pub chat_id: u64,
    /// Trimmed, never empty.
    pub text: String,
}

/// Reads an EditChatRequest.
pub fn edit_chat(request: &pb::EditChatRequest) -> Result<EditChat, Status> {
    let chat_id = validate::id("chat_id", &request.chat_id)?;
    let text = chat_text("text", &request.text)?;
    Ok(EditChat { chat_id, text })
}

/// A valid RemoveChats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveChats {
    /// Distinct, in request order; 1 to [`MAX_BATCH_IDS`].
    pub chat_ids: Vec<u64>,
}

/// Reads a RemoveChatsRequest.
pub fn remove_chats(request: &pb::RemoveChatsRequest) -> Result<RemoveChats, Status> {
    Ok(RemoveChats { chat_ids: id_list("chat_ids", &request.chat_ids)? })
}

/// A valid RetractChats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetractChats {
    /// Distinct, in request order; 1 to [`MAX_BATCH_IDS`].
    pub chat_ids: Vec<u64>,
}

/// Reads a RetractChatsRequest.
pub fn retract_chats(request: &pb::RetractChatsRequest) -> Result<RetractChats, Status> {
    Ok(RetractChats { chat_ids: id_list("chat_ids", &request.chat_ids)? })
}

/// A valid SearchChats, as far as the request alone tells: the handler still parses the query
/// into words with the search analyzer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchChats {
    /// Trimmed, non-empty, at most [`MAX_QUERY_CHARS`] characters.
    pub query: String,
    pub channel_id: Option<u64>,
    pub sender_id: Option<u64>,
    /// Milliseconds since the epoch, inclusive.
    pub from_ms: Option<u64>,
    /// Milliseconds since the epoch, exclusive; after `from_ms` when both are given.
    pub until_ms: Option<u64>,
    /// Clamped to `1..=`[`MAX_HITS`].
    pub page_size: usize,
    /// Continue after this (the decoded page token); `None`: the first page.
    pub cursor: Option<u64>,
}

/// Reads a SearchChatsRequest.
pub fn search_chats(request: &pb::SearchChatsRequest) -> Result<SearchChats, Status> {
    let query = request.query.trim();
    if query.is_empty() {
        return Err(invalid_field("query", "is required"));
    }
    if query.chars().count() > MAX_QUERY_CHARS {
        return Err(invalid_field("query", format!("must have at most {MAX_QUERY_CHARS} characters")));
    }
    let channel_id = optional_id("channel_id", &request.channel_id)?;
    let sender_id = optional_id("sender_id", &request.sender_id)?;
    let from_ms = request.start_time.as_ref().map(|t| time_ms("start_time", t)).transpose()?;
    let until_ms = request.end_time.as_ref().map(|t| time_ms("end_time", t)).transpose()?;
    if let (Some(from), Some(until)) = (from_ms, until_ms)
        && from >= until
    {
        return Err(invalid_field("end_time", "must be after start_time"));
    }
    let page_size = crate::page::page_size(request.page_size, DEFAULT_HITS, MAX_HITS);
    let cursor = crate::page::decode_token(&request.page_token)?;
    Ok(SearchChats { query: query.to_owned(), channel_id, sender_id, from_ms, until_ms, page_size, cursor })
}

/// How far an AckChats moves the read pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckTarget {
    /// Up to this chat (the handler checks it is a chat of the channel).
    Chat(u64),
    /// Up to the newest chat created at or before this time, in milliseconds since the epoch
    /// (not yet clamped to now: that is the handler's clock).
    CreatedAt(u64),
}

/// A valid AckChats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckChats {
    pub channel_id: u64,
    pub target: AckTarget,
}

/// Reads an AckChatsRequest: `chat_id` wins over `created_at`, which is then not read.
pub fn ack_chats(request: &pb::AckChatsRequest) -> Result<AckChats, Status> {
    let channel_id = validate::id("channel_id", &request.channel_id)?;
    let target = match (optional_id("chat_id", &request.chat_id)?, &request.created_at) {
        (Some(chat_id), _) => AckTarget::Chat(chat_id),
        (None, Some(at)) => AckTarget::CreatedAt(time_ms("created_at", at)?),
        (None, None) => return Err(invalid_field("chat_id", "give chat_id or created_at")),
    };
    Ok(AckChats { channel_id, target })
}

/// A valid GetUnreadCounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetUnreadCounts {
    /// Distinct, in request order, at most [`MAX_BATCH_IDS`]; empty means every channel of the caller.
    pub channel_ids: Vec<u64>,
}

/// Reads a GetUnreadCountsRequest.
pub fn get_unread_counts(request: &pb::GetUnreadCountsRequest) -> Result<GetUnreadCounts, Status> {
    let channel_ids =
        if request.channel_ids.is_empty() { Vec::new() } else { id_list("channel_ids", &request.channel_ids)? };
    Ok(GetUnreadCounts { channel_ids })
}

/// A valid ListEvents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListEvents {
    pub channel_id: u64,
    /// Events strictly after this one; `None` means from the start.
    pub after_event_id: Option<u64>,
    /// Clamped to `1..=`[`MAX_EVENTS`].
    pub page_size: usize,
}

/// Reads a ListEventsRequest.
pub fn list_events(request: &pb::ListEventsRequest) -> Result<ListEvents, Status> {
    let channel_id = validate::id("channel_id", &request.channel_id)?;
    let after_event_id = optional_id("after_event_id", &request.after_event_id)?;
    let page_size = crate::page::page_size(request.page_size, DEFAULT_EVENTS, MAX_EVENTS);
    Ok(ListEvents { channel_id, after_event_id, page_size })
}

/// A valid CreateUpload, as far as the request alone tells: whether the content type is
/// accepted and the size allowed depends on the serving process's media settings, so the
/// handler checks those (and `size_bytes` with them, to keep its one message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateUpload {
    pub channel_id: u64,
    /// Trimmed, 1 to [`MAX_FILE_NAME`] characters, no control characters.
    pub file_name: String,
    /// The media type without parameters, trimmed and lowercase; never empty.
    pub content_type: String,
}

/// Reads a CreateUploadRequest.
pub fn create_upload(request: &pb::CreateUploadRequest) -> Result<CreateUpload, Status> {
    let channel_id = validate::id("channel_id", &request.channel_id)?;
    let file_name = request.file_name.trim();
    if file_name.is_empty() {
        return Err(invalid_field("file_name", "is required"));
    }
    if file_name.chars().count() > MAX_FILE_NAME || file_name.chars().any(char::is_control) {
        return Err(invalid_field("file_name", format!("must be at most {MAX_FILE_NAME} printable characters")));
    }
    let content_type = request.content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if content_type.is_empty() {
        return Err(invalid_field("content_type", "is required"));
    }
    Ok(CreateUpload { channel_id, file_name: file_name.to_owned(), content_type })
}

/// A valid GetAttachmentUrl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetAttachmentUrl {
    pub upload_id: u64,
}

/// Reads a GetAttachmentUrlRequest.
pub fn get_attachment_url(request: &pb::GetAttachmentUrlRequest) -> Result<GetAttachmentUrl, Status> {
    Ok(GetAttachmentUrl { upload_id: validate::id("upload_id", &request.upload_id)? })
}

/// A valid AppendChannelEvents: the events are recorded as sent, so there is nothing to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendChannelEvents;

/// Reads an AppendChannelEventsRequest: at most [`MAX_APPEND`] events, each with a channel, an
/// actor, an idempotency key and a type the chat service does not record itself.
pub fn append_channel_events(request: &pb::AppendChannelEventsRequest) -> Result<AppendChannelEvents, Status> {
    if request.events.len() > MAX_APPEND {
        return Err(invalid_field("events", format!("at most {MAX_APPEND} events")));
    }
    for event in &request.events {
        validate::id("events.channel_id", &event.channel_id)?;
        validate::id("events.actor_id", &event.actor_id)?;
        if event.idempotency_key.is_empty() {
            return Err(invalid_field("events.idempotency_key", "is required"));
        }
        // why: `r#type()` reads a number no EventType has as UNSPECIFIED, so it is "required" too.
        match event.r#type() {
            EventType::Unspecified => return Err(invalid_field("events.type", "is required")),
            EventType::ChatCreated | EventType::ChatEdited | EventType::ChatRetracted | EventType::ChatAcked => {
                return Err(invalid_field("events.type", "chat events are recorded by the chat service itself"));
            }
            _ => {}
        }
    }
    Ok(AppendChannelEvents)
}

/// A valid GetSearchStatus: the request has no fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetSearchStatus;

/// Reads a GetSearchStatusRequest.
pub fn get_search_status(_request: &pb::GetSearchStatusRequest) -> Result<GetSearchStatus, Status> {
    Ok(GetSearchStatus)
}

/// A valid GetChatStates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetChatStates {
    /// Distinct, in request order; 1 to [`MAX_BATCH_IDS`].
    pub chat_ids: Vec<u64>,
}

/// Reads a GetChatStatesRequest.
pub fn get_chat_states(request: &pb::GetChatStatesRequest) -> Result<GetChatStates, Status> {
    Ok(GetChatStates { chat_ids: id_list("chat_ids", &request.chat_ids)? })
}

/// Text of a chat: non-empty after trimming, at most [`MAX_TEXT`] characters, no control
/// characters but newline and tab. Returns it trimmed.
fn chat_text(field: &str, text: &str) -> Result<String, Status> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid_field(field, "is required"));
    }
    if trimmed.chars().count() > MAX_TEXT {
        return Err(invalid_field(field, format!("must have at most {MAX_TEXT} characters")));
    }
    if trimmed.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(invalid_field(field, "must not contain control characters other than newline and tab"));
    }
    Ok(trimmed.to_owned())
}

/// A time as milliseconds since the epoch; before 1970 or malformed is refused.
fn time_ms(field: &str, at: &prost_types::Timestamp) -> Result<u64, Status> {
    if at.seconds < 0 || !(0..1_000_000_000).contains(&at.nanos) {
        return Err(invalid_field(field, "is not a valid time"));
    }
    Ok((at.seconds as u64).saturating_mul(1000).saturating_add(at.nanos as u64 / 1_000_000))
}

/// An id that may be left empty.
fn optional_id(field: &str, value: &str) -> Result<Option<u64>, Status> {
    if value.is_empty() { Ok(None) } else { validate::id(field, value).map(Some) }
}

/// 1 to [`MAX_BATCH_IDS`] ids; repeats are dropped, the first occurrence keeps its place.
fn id_list(field: &str, values: &[String]) -> Result<Vec<u64>, Status> {
    if values.is_empty() {
        return Err(invalid_field(field, "is required"));
    }
    if values.len() > MAX_BATCH_IDS {
        return Err(invalid_field(field, format!("at most {MAX_BATCH_IDS} ids")));
    }
    let mut seen = BTreeSet::new();
    values.iter().map(|v| validate::id(field, v)).filter(|r| r.as_ref().map_or(true, |id| seen.insert(*id))).collect()
}

#[cfg(test)]
mod tests {
    use prost_types::Timestamp;

    use super::*;

    /// The field a refusal names, asserting it is INVALID_ARGUMENT.
    fn field_of(status: Status) -> String {
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        status.message().split(':').next().unwrap_or_default().to_owned()
    }

    fn chat(text: &str) -> pb::CreateChatRequest {
        pb::CreateChatRequest { channel_id: "7".into(), text: text.into(), ..Default::default() }
    }

    #[test]
    fn chat_text_is_trimmed_and_its_rules_name_the_field() {
        assert_eq!(create_chat(&chat("  hello \n")).unwrap().text, "hello");
        assert!(create_chat(&chat("line\nnext\ttab")).is_ok());
        for bad in ["", "   ", "bell\u{7}", &"x".repeat(MAX_TEXT + 1)] {
            assert_eq!(field_of(create_chat(&chat(bad)).unwrap_err()), "text", "{bad:?}");
            let edit = pb::EditChatRequest { chat_id: "1".into(), text: bad.into() };
            assert_eq!(field_of(edit_chat(&edit).unwrap_err()), "text", "{bad:?}");
        }
    }

    #[test]
    fn create_chat_refusals_name_their_field_in_order() {
        let cases = [
            (pb::CreateChatRequest { channel_id: "abc".into(), ..chat("") }, "channel_id"),
            (
                pb::CreateChatRequest { attachment_upload_ids: vec!["1".into(); MAX_ATTACHMENTS + 1], ..chat("") },
                "attachment_upload_ids",
            ),
            (pb::CreateChatRequest { attachment_upload_ids: vec!["0".into()], ..chat("") }, "attachment_upload_ids"),
            (pb::CreateChatRequest { client_msg_id: "k".repeat(MAX_CLIENT_MSG_ID + 1), ..chat("hi") }, "client_msg_id"),
            (pb::CreateChatRequest { client_msg_id: "k\u{0}".into(), ..chat("hi") }, "client_msg_id"),
            (pb::CreateChatRequest { reply_to_chat_id: "nope".into(), ..chat("hi") }, "reply_to_chat_id"),
        ];
        for (request, field) in cases {
            assert_eq!(field_of(create_chat(&request).unwrap_err()), field, "{request:?}");
        }
        let files =
            pb::CreateChatRequest { attachment_upload_ids: vec!["3".into(), "3".into(), "4".into()], ..chat(" ") };
        let valid = create_chat(&files).expect("files without text");
        assert_eq!((valid.text.as_str(), valid.upload_ids), ("", vec![3, 4]));
    }

    #[test]
    fn lists_need_ids_and_a_cap() {
        let request = |ids: Vec<String>| pb::RetractChatsRequest { chat_ids: ids };
        assert_eq!(field_of(retract_chats(&request(Vec::new())).unwrap_err()), "chat_ids");
        let too_many = (1..=MAX_BATCH_IDS as u64 + 1).map(|i| i.to_string()).collect();
        assert_eq!(field_of(retract_chats(&request(too_many)).unwrap_err()), "chat_ids");
        assert_eq!(
            field_of(remove_chats(&pb::RemoveChatsRequest { chat_ids: vec!["x".into()] }).unwrap_err()),
            "chat_ids"
        );
        let all = get_unread_counts(&pb::GetUnreadCountsRequest::default()).expect("empty means every channel");
        assert!(all.channel_ids.is_empty());
        let bad = pb::GetUnreadCountsRequest { channel_ids: vec!["-1".into()] };
        assert_eq!(field_of(get_unread_counts(&bad).unwrap_err()), "channel_ids");
    }

    #[test]
    fn list_chats_takes_one_direction_and_clamps_the_page() {
        let request = pb::ListChatsRequest {
            channel_id: "1".into(),
            before: "5".into(),
            after: "3".into(),
            page_size: 0,
            ..Default::default()
        };
        assert_eq!(field_of(list_chats(&request).unwrap_err()), "after");
        let valid = list_chats(&pb::ListChatsRequest { after: String::new(), page_size: 1000, ..request }).unwrap();
        assert_eq!((valid.before, valid.after, valid.page_size), (Some(5), None, MAX_PAGE));
        let events = list_events(&pb::ListEventsRequest { channel_id: "1".into(), ..Default::default() }).unwrap();
        assert_eq!((events.after_event_id, events.page_size), (None, DEFAULT_EVENTS));
    }

    #[test]
    fn search_refusals_name_their_field() {
        let query = |q: &str| pb::SearchChatsRequest { query: q.into(), ..Default::default() };
        let at = |seconds| Some(Timestamp { seconds, nanos: 0 });
        let cases = [
            (query("  "), "query"),
            (query(&"x".repeat(MAX_QUERY_CHARS + 1)), "query"),
            (pb::SearchChatsRequest { channel_id: "x".into(), ..query("a") }, "channel_id"),
            (pb::SearchChatsRequest { sender_id: "-1".into(), ..query("a") }, "sender_id"),
            (pb::SearchChatsRequest { start_time: at(-5), ..query("a") }, "start_time"),
            (pb::SearchChatsRequest { end_time: Some(Timestamp { seconds: 1, nanos: -1 }), ..query("a") }, "end_time"),
            (pb::SearchChatsRequest { start_time: at(20), end_time: at(10), ..query("a") }, "end_time"),
        ];
        for (request, field) in cases {
            assert_eq!(field_of(search_chats(&request).unwrap_err()), field, "{request:?}");
        }
        let valid = search_chats(&pb::SearchChatsRequest { start_time: at(1), ..query(" a ") }).unwrap();
        assert_eq!((valid.query.as_str(), valid.from_ms, valid.page_size), ("a", Some(1000), DEFAULT_HITS));
    }

    #[test]
    fn ack_needs_a_chat_or_a_time() {
        let request = |chat_id: &str, created_at| pb::AckChatsRequest {
            channel_id: "1".into(),
            chat_id: chat_id.into(),
            created_at,
        };
        assert_eq!(field_of(ack_chats(&request("", None)).unwrap_err()), "chat_id");
        assert_eq!(field_of(ack_chats(&request("0", None)).unwrap_err()), "chat_id");
        let malformed = Some(Timestamp { seconds: -1, nanos: 0 });
        assert_eq!(field_of(ack_chats(&request("", malformed)).unwrap_err()), "created_at");
        assert_eq!(ack_chats(&request("9", malformed)).unwrap().target, AckTarget::Chat(9), "chat_id wins");
        let at = Some(Timestamp { seconds: 2, nanos: 5_000_000 });
        assert_eq!(ack_chats(&request("", at)).unwrap().target, AckTarget::CreatedAt(2005));
    }

    #[test]
    fn upload_refusals_name_their_field() {
        let upload = |name: &str, content_type: &str| pb::CreateUploadRequest {
            channel_id: "1".into(),
            file_name: name.into(),
            content_type: content_type.into(),
            size_bytes: 10,
        };
        for (request, field) in [
            (upload(" ", "image/png"), "file_name"),
            (upload("a\u{7}.png", "image/png"), "file_name"),
            (upload(&"n".repeat(MAX_FILE_NAME + 1), "image/png"), "file_name"),
            (upload("a.png", " ; charset=x"), "content_type"),
        ] {
            assert_eq!(field_of(create_upload(&request).unwrap_err()), field, "{request:?}");
        }
        let valid = create_upload(&upload(" a.txt ", "Text/Plain; charset=utf-8")).unwrap();
        assert_eq!((valid.file_name.as_str(), valid.content_type.as_str()), ("a.txt", "text/plain"));
        assert_eq!(field_of(get_attachment_url(&pb::GetAttachmentUrlRequest::default()).unwrap_err()), "upload_id");
    }

    #[test]
    fn appended_events_need_ids_a_key_and_a_foreign_type() {
        let event = |kind: EventType| pb::ChannelEvent {
            channel_id: "1".into(),
            actor_id: "2".into(),
            idempotency_key: "k".into(),
            r#type: kind as i32,
            ..Default::default()
        };
        let append = |events| append_channel_events(&pb::AppendChannelEventsRequest { events });
        assert!(append(vec![event(EventType::MemberJoined)]).is_ok());
        assert_eq!(field_of(append(vec![event(EventType::MemberJoined); MAX_APPEND + 1]).unwrap_err()), "events");
        let cases = [
            (pb::ChannelEvent { channel_id: String::new(), ..event(EventType::MemberJoined) }, "events.channel_id"),
            (pb::ChannelEvent { actor_id: "x".into(), ..event(EventType::MemberJoined) }, "events.actor_id"),
            (
                pb::ChannelEvent { idempotency_key: String::new(), ..event(EventType::MemberJoined) },
                "events.idempotency_key",
            ),
            (event(EventType::Unspecified), "events.type"),
            (pb::ChannelEvent { r#type: 9999, ..event(EventType::MemberJoined) }, "events.type"),
            (event(EventType::ChatCreated), "events.type"),
        ];
        for (bad, field) in cases {
            assert_eq!(
                field_of(append(vec![event(EventType::MemberLeft), bad.clone()]).unwrap_err()),
                field,
                "{bad:?}"
            );
        }
        assert_eq!(field_of(get_chat_states(&pb::GetChatStatesRequest::default()).unwrap_err()), "chat_ids");
        assert!(get_search_status(&pb::GetSearchStatusRequest {}).is_ok());
    }
}
