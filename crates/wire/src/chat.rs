//! Validation of every chat-service request: each function checks one request type, names the
//! field it refuses, and returns the values the handler works with.
//!
//! The rules are those the contracts (`proto/chatmesh/chat/v1`) annotate, checked on the values
//! as sent; text is trimmed only once accepted. What needs more than the request stays with the
//! handler: membership, whether a reply or an acknowledged chat belongs to the channel, uploads
//! as stored, the media limits of the serving process (accepted content types, largest size),
//! and the search analyzer (words of a query).

use std::collections::BTreeSet;

use chatmesh_api::chat::v1::{self as pb, EventType};
use tonic::Status;

use crate::{error::invalid_field, validate};

/// Most characters in a chat's text, as sent.
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
/// Longest search query accepted, in characters, as sent.
pub const MAX_QUERY_CHARS: usize = 256;
/// Most characters in an upload's file name, as sent.
pub const MAX_FILE_NAME: usize = 255;
/// Most characters in each name of a media type (`type` and `subtype`, RFC 6838).
pub const MAX_MEDIA_NAME: usize = 127;
/// The latest millisecond a `google.protobuf.Timestamp` can name: 9999-12-31T23:59:59.999Z.
pub const MAX_TIME_MS: u64 = 253_402_300_799_999;

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
    let text = match (request.text.is_empty(), upload_ids.is_empty()) {
        (true, true) => return Err(invalid_field("text", "is required unless the chat has attachments")),
        (true, false) => String::new(),
        (false, _) => chat_text("text", &request.text)?,
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
    /// Newest first, older than this chat; with `after`, the upper bound of the range listed.
    pub before: Option<u64>,
    /// Oldest first, newer than this chat (with `before` too: the chats strictly between them).
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
    /// Trimmed, never empty.
    pub query: String,
    pub channel_id: Option<u64>,
    pub sender_id: Option<u64>,
    /// Milliseconds since the epoch, inclusive (see [`time_ms`]).
    pub from_ms: Option<u64>,
    /// Milliseconds since the epoch, exclusive; at or before `from_ms`, the range is empty.
    pub until_ms: Option<u64>,
    /// Clamped to `1..=`[`MAX_HITS`].
    pub page_size: usize,
    /// Continue after this (the decoded page token); `None`: the first page.
    pub cursor: Option<u64>,
}

/// Reads a SearchChatsRequest.
pub fn search_chats(request: &pb::SearchChatsRequest) -> Result<SearchChats, Status> {
    let query = not_blank("query", &request.query, MAX_QUERY_CHARS, Controls::None)?;
    let channel_id = optional_id("channel_id", &request.channel_id)?;
    let sender_id = optional_id("sender_id", &request.sender_id)?;
    let from_ms = request.start_time.as_ref().map(time_ms);
    let until_ms = request.end_time.as_ref().map(time_ms);
    let page_size = crate::page::page_size(request.page_size, DEFAULT_HITS, MAX_HITS);
    let cursor = crate::page::decode_token(&request.page_token)?;
    Ok(SearchChats { query, channel_id, sender_id, from_ms, until_ms, page_size, cursor })
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

/// Reads an AckChatsRequest: `chat_id` wins over `created_at`.
pub fn ack_chats(request: &pb::AckChatsRequest) -> Result<AckChats, Status> {
    let channel_id = validate::id("channel_id", &request.channel_id)?;
    let chat_id = optional_id("chat_id", &request.chat_id)?;
    let created_at = request.created_at.as_ref().map(time_ms);
    let target = match (chat_id, created_at) {
        (Some(chat_id), _) => AckTarget::Chat(chat_id),
        (None, Some(ms)) => AckTarget::CreatedAt(ms),
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
/// accepted and the size not too large depends on the serving process's media settings, so the
/// handler checks those (it reads `size_bytes`, known here to be positive, off the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateUpload {
    pub channel_id: u64,
    /// Trimmed, never empty.
    pub file_name: String,
    /// `type/subtype`, lowercase.
    pub content_type: String,
}

/// Reads a CreateUploadRequest: channel, file name, content type, size, in that order.
pub fn create_upload(request: &pb::CreateUploadRequest) -> Result<CreateUpload, Status> {
    let channel_id = validate::id("channel_id", &request.channel_id)?;
    let file_name = not_blank("file_name", &request.file_name, MAX_FILE_NAME, Controls::None)?;
    let content_type = &request.content_type;
    if content_type.is_empty() {
        return Err(invalid_field("content_type", "is required"));
    }
    if !is_media_type(content_type) {
        return Err(invalid_field("content_type", "must be a media type, type/subtype, without parameters"));
    }
    if request.size_bytes == 0 {
        return Err(invalid_field("size_bytes", "is required"));
    }
    if request.size_bytes < 0 {
        return Err(invalid_field("size_bytes", "must be positive"));
    }
    Ok(CreateUpload { channel_id, file_name, content_type: content_type.to_ascii_lowercase() })
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

/// Reads an AppendChannelEventsRequest: at most [`MAX_APPEND`] events, each naming its channel
/// (`ChannelEvent`'s own rule) and, as this request adds (in its comment: `ChannelEvent` is also
/// the dispatcher's Publish item), an actor, an idempotency key and a known type the chat
/// service does not record itself (member and channel events).
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
        match EventType::try_from(event.r#type) {
            Err(_) => return Err(invalid_field("events.type", "is not a known event type")),
            Ok(EventType::Unspecified) => return Err(invalid_field("events.type", "is required")),
            Ok(
                EventType::ChatCreated
                | EventType::ChatEdited
                | EventType::ChatRetracted
                | EventType::ChatAcked
                | EventType::ChatRemoved,
            ) => {
                return Err(invalid_field("events.type", "chat events are recorded by the chat service itself"));
            }
            Ok(
                EventType::MemberJoined
                | EventType::MemberLeft
                | EventType::MemberUpdated
                | EventType::ChannelUpdated
                | EventType::ChannelDeleted,
            ) => {}
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

/// A valid ModerateRetractChat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModerateRetractChat {
    pub chat_id: u64,
    /// The admin who decided (for the log; the chat is retracted as its sender would).
    pub moderator_id: u64,
}

/// Reads a ModerateRetractChatRequest: both ids are required.
pub fn moderate_retract_chat(request: &pb::ModerateRetractChatRequest) -> Result<ModerateRetractChat, Status> {
    let chat_id = validate::id("chat_id", &request.chat_id)?;
    let moderator_id = validate::id("moderator_id", &request.moderator_id)?;
    Ok(ModerateRetractChat { chat_id, moderator_id })
}

/// Text of a chat: at most [`MAX_TEXT`] characters, not blank, no control characters but
/// newline and tab. Returns it trimmed.
fn chat_text(field: &str, text: &str) -> Result<String, Status> {
    not_blank(field, text, MAX_TEXT, Controls::NewlineAndTab)
}

/// The control characters a text may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Controls {
    None,
    NewlineAndTab,
}

/// Text as the contracts' not-blank patterns take it, checked as sent: 1 to `max` characters,
/// no control characters (but those `allowed`), at least one that is not whitespace. Returns it
/// trimmed.
fn not_blank(field: &str, value: &str, max: usize, allowed: Controls) -> Result<String, Status> {
    if value.is_empty() {
        return Err(invalid_field(field, "is required"));
    }
    if value.chars().count() > max {
        return Err(invalid_field(field, format!("must have at most {max} characters")));
    }
    let multiline = allowed == Controls::NewlineAndTab;
    if value.chars().any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t'))) {
        let rule = if multiline { "control characters other than newline and tab" } else { "control characters" };
        return Err(invalid_field(field, format!("must not contain {rule}")));
    }
    // why: `trim` drops Unicode White_Space, the set the not-blank patterns exclude.
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(invalid_field(field, "must not be blank"));
    }
    Ok(trimmed.to_owned())
}

/// A media type as RFC 6838 names it, `type/subtype` without parameters: each name 1 to
/// [`MAX_MEDIA_NAME`] letters, digits and `!#$&^_.+-`, starting with a letter or digit.
fn is_media_type(value: &str) -> bool {
    let name = |part: &str| {
        part.len() <= MAX_MEDIA_NAME
            && part.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && part.chars().all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
    };
    value.split_once('/').is_some_and(|(kind, subtype)| name(kind) && name(subtype))
}

/// A time in nanoseconds since the epoch, for any Timestamp: the contracts set no rule on times,
/// so whatever one holds is taken, nanos outside `0..1e9` carrying over into the seconds.
fn nanos_of(at: &prost_types::Timestamp) -> i128 {
    i128::from(at.seconds) * 1_000_000_000 + i128::from(at.nanos)
}

/// A time as milliseconds since the epoch, within the times a chat can have: one before 1970
/// counts as 1970, one after 9999 as its last millisecond.
fn time_ms(at: &prost_types::Timestamp) -> u64 {
    // why: clamped to 0..=MAX_TIME_MS first, so the cast keeps the value.
    nanos_of(at).div_euclid(1_000_000).clamp(0, i128::from(MAX_TIME_MS)) as u64
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
    fn chat_text_is_checked_as_sent_and_stored_trimmed() {
        assert_eq!(create_chat(&chat("  hello \n")).unwrap().text, "hello");
        let longest = "x".repeat(MAX_TEXT);
        for good in ["line\nnext\ttab", "\u{a0}x", "\u{200b}", "🌸", &longest] {
            assert!(create_chat(&chat(good)).is_ok(), "{good:?}");
        }
        let padded = format!("{longest} ");
        let blanks = [" ", "\n\t", "\u{a0}", "\u{3000}", "\u{2028}"];
        let controls = ["bell\u{7}", "a\r\nb", "a\u{b}b", "a\u{85}", "a\u{7f}"];
        for bad in ["", &"x".repeat(MAX_TEXT + 1), &padded].into_iter().chain(blanks).chain(controls) {
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
            pb::CreateChatRequest { attachment_upload_ids: vec!["3".into(), "3".into(), "4".into()], ..chat("") };
        let valid = create_chat(&files).expect("files without text");
        assert_eq!((valid.text.as_str(), valid.upload_ids), ("", vec![3, 4]));
        let blank = pb::CreateChatRequest { text: " ".into(), ..files };
        assert_eq!(field_of(create_chat(&blank).unwrap_err()), "text", "text given is never blank");
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
    fn list_chats_takes_either_bound_or_both_and_clamps_the_page() {
        let request = pb::ListChatsRequest {
            channel_id: "1".into(),
            before: "5".into(),
            after: "3".into(),
            page_size: 0,
            ..Default::default()
        };
        let between = list_chats(&request).unwrap();
        assert_eq!((between.before, between.after, between.page_size), (Some(5), Some(3), DEFAULT_PAGE));
        let empty = list_chats(&pb::ListChatsRequest { after: "5".into(), ..request.clone() }).unwrap();
        assert_eq!((empty.before, empty.after), (Some(5), Some(5)), "an empty range is the core's to answer");
        assert_eq!(
            field_of(list_chats(&pb::ListChatsRequest { after: "03".into(), ..request.clone() }).unwrap_err()),
            "after"
        );
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
            (query(""), "query"),
            (query("  "), "query"),
            (query("a\tb"), "query"),
            (query(&"x".repeat(MAX_QUERY_CHARS + 1)), "query"),
            (query(&format!(" {}", "x".repeat(MAX_QUERY_CHARS))), "query"),
            (pb::SearchChatsRequest { channel_id: "x".into(), ..query("a") }, "channel_id"),
            (pb::SearchChatsRequest { sender_id: "-1".into(), ..query("a") }, "sender_id"),
        ];
        for (request, field) in cases {
            assert_eq!(field_of(search_chats(&request).unwrap_err()), field, "{request:?}");
        }
        for (end, until_ms) in [(10, 10_000), (20, 20_000)] {
            let empty = pb::SearchChatsRequest { start_time: at(20), end_time: at(end), ..query("a") };
            let empty = search_chats(&empty).expect("an empty time range is the core's to answer");
            assert_eq!((empty.from_ms, empty.until_ms), (Some(20_000), Some(until_ms)));
        }
        let valid = search_chats(&pb::SearchChatsRequest { start_time: at(1), ..query(" a ") }).unwrap();
        assert_eq!((valid.query.as_str(), valid.from_ms, valid.page_size), ("a", Some(1000), DEFAULT_HITS));
        let widest = pb::SearchChatsRequest { start_time: at(-5), end_time: at(i64::MAX), ..query(&"x".repeat(256)) };
        let widest = search_chats(&widest).unwrap();
        assert_eq!((widest.from_ms, widest.until_ms), (Some(0), Some(MAX_TIME_MS)), "any time, clamped");
        let carried = Some(Timestamp { seconds: 2, nanos: -1 });
        let valid = search_chats(&pb::SearchChatsRequest { start_time: at(1), end_time: carried, ..query("a") });
        assert_eq!(valid.unwrap().until_ms, Some(1999), "nanos outside a second carry over");
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
        let at = Some(Timestamp { seconds: 2, nanos: 5_000_000 });
        assert_eq!(ack_chats(&request("", at)).unwrap().target, AckTarget::CreatedAt(2005));
        assert_eq!(ack_chats(&request("9", at)).unwrap().target, AckTarget::Chat(9), "chat_id wins");
        let before_1970 = Some(Timestamp { seconds: -1, nanos: 0 });
        assert_eq!(ack_chats(&request("", before_1970)).unwrap().target, AckTarget::CreatedAt(0));
    }

    #[test]
    fn upload_refusals_name_their_field() {
        let upload = |name: &str, content_type: &str| pb::CreateUploadRequest {
            channel_id: "1".into(),
            file_name: name.into(),
            content_type: content_type.into(),
            size_bytes: 10,
        };
        let longest_name = "t".repeat(MAX_MEDIA_NAME);
        for (request, field) in [
            (upload("", "image/png"), "file_name"),
            (upload(" ", "image/png"), "file_name"),
            (upload("a\u{7}.png", "image/png"), "file_name"),
            (upload("a\tb.png", "image/png"), "file_name"),
            (upload(&"n".repeat(MAX_FILE_NAME + 1), "image/png"), "file_name"),
            (upload(&format!("{} ", "n".repeat(MAX_FILE_NAME)), "image/png"), "file_name"),
            (upload("a.png", ""), "content_type"),
            (upload("a.png", " ; charset=x"), "content_type"),
            (upload("a.txt", "text/plain; charset=utf-8"), "content_type"),
            (upload("a.png", " image/png"), "content_type"),
            (upload("a.png", "image/"), "content_type"),
            (upload("a.png", "image/*"), "content_type"),
            (upload("a.png", "image/png/x"), "content_type"),
            (upload("a.png", "-image/png"), "content_type"),
            (upload("a.png", &format!("{longest_name}x/png")), "content_type"),
            (pb::CreateUploadRequest { size_bytes: 0, ..upload("a.png", "image/png") }, "size_bytes"),
            (pb::CreateUploadRequest { size_bytes: -1, ..upload("a.png", "image/png") }, "size_bytes"),
        ] {
            assert_eq!(field_of(create_upload(&request).unwrap_err()), field, "{request:?}");
        }
        let valid = create_upload(&upload(" a.txt ", "Text/Plain")).unwrap();
        assert_eq!((valid.file_name.as_str(), valid.content_type.as_str()), ("a.txt", "text/plain"));
        for good in
            ["image/svg+xml", "application/vnd.ms-excel", "x-a!#$&^_.+-/b", &format!("{longest_name}/{longest_name}")]
        {
            assert!(create_upload(&upload("a", good)).is_ok(), "{good:?}");
        }
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
        let foreign = [
            EventType::MemberJoined,
            EventType::MemberLeft,
            EventType::MemberUpdated,
            EventType::ChannelUpdated,
            EventType::ChannelDeleted,
        ];
        assert!(append(foreign.map(event).to_vec()).is_ok());
        assert!(append(Vec::new()).is_ok(), "nothing to append");
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
            (event(EventType::ChatAcked), "events.type"),
            (event(EventType::ChatRemoved), "events.type"),
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

    #[test]
    fn a_moderated_retraction_names_its_chat_and_moderator() {
        let request = |chat: &str, moderator: &str| pb::ModerateRetractChatRequest {
            chat_id: chat.into(),
            moderator_id: moderator.into(),
        };
        assert_eq!(field_of(moderate_retract_chat(&request("", "1")).unwrap_err()), "chat_id");
        assert_eq!(field_of(moderate_retract_chat(&request("5", "x")).unwrap_err()), "moderator_id");
        assert_eq!(
            moderate_retract_chat(&request("5", "1")).unwrap(),
            ModerateRetractChat { chat_id: 5, moderator_id: 1 }
        );
    }
}
