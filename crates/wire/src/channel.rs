//! Validation of every channel-service request: each function checks one request type, names the
//! field it refuses, and returns the values the handler works with.
//!
//! Page tokens are decoded here too (the last check of a list request).

use std::collections::BTreeSet;

use chatmesh_api::channel::v1 as pb;
use tonic::Status;

use crate::{error::invalid_field, validate};

/// Most characters in a channel name.
pub const MAX_NAME: usize = 100;
/// Most characters in a channel topic.
pub const MAX_TOPIC: usize = 500;
/// Most characters in a channel image URL.
pub const MAX_URL: usize = 2048;
/// Most `member_ids` a create request may name (a direct channel takes at most two).
pub const MAX_INITIAL_MEMBERS: usize = 100;
/// Page size of the public lists when the request asks for none.
pub const DEFAULT_PAGE: usize = 50;
/// Largest page of the public lists.
pub const MAX_PAGE: usize = 100;
/// Largest (and default) page of `ListUserChannelIds`, and most ids one `RecordActivity` names.
pub const MAX_INTERNAL_PAGE: usize = 1000;
/// What a direct channel's `member_ids` must say.
pub const DIRECT_MEMBERS_RULE: &str = "a direct channel has exactly two users: the caller and one other";

/// Which of group and broadcast a create request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    /// A named group.
    Group,
    /// One writer, many readers.
    Broadcast,
}

/// A visibility a request named (UNSPECIFIED is resolved or refused before this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Anyone may see the preview and join.
    Public,
    /// Members only.
    Private,
}

/// A member role a request named (UNSPECIFIED is refused before this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// MEMBER_ROLE_MEMBER.
    Member,
    /// MEMBER_ROLE_ADMIN.
    Admin,
    /// MEMBER_ROLE_OWNER.
    Owner,
}

/// `CreateChannel`: a direct channel or a group/broadcast, each with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateChannel {
    /// CHANNEL_KIND_DIRECT.
    Direct(CreateDirect),
    /// CHANNEL_KIND_GROUP or CHANNEL_KIND_BROADCAST.
    Group(CreateGroup),
}

/// A direct channel's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateDirect {
    /// The distinct ids given (one or two). The handler adds the caller and refuses with
    /// [`DIRECT_MEMBERS_RULE`] unless that makes exactly two.
    pub member_ids: BTreeSet<u64>,
}

/// A group's or a broadcast's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateGroup {
    /// Group or broadcast.
    pub kind: GroupKind,
    /// PRIVATE when the request left it unspecified.
    pub visibility: Visibility,
    /// Trimmed.
    pub name: String,
    /// Empty or valid.
    pub topic: String,
    /// Empty or an http(s) URL.
    pub image_url: String,
    /// The distinct initial member ids; may include the caller (the handler drops them).
    pub member_ids: BTreeSet<u64>,
}

/// `GetChannel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetChannel {
    /// The channel asked for.
    pub channel_id: u64,
}

/// `ListMyChannels`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListMyChannels {
    /// Clamped to `1..=MAX_PAGE`.
    pub page_size: usize,
    /// Continue after this (the decoded page token); `None`: the first page.
    pub cursor: Option<u64>,
    /// Whether closed channels are listed too.
    pub include_closed: bool,
}

/// `UpdateChannel`: `Some` for each field to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateChannel {
    /// The channel to change.
    pub channel_id: u64,
    /// Trimmed.
    pub name: Option<String>,
    /// Empty clears it.
    pub topic: Option<String>,
    /// Empty clears it.
    pub image_url: Option<String>,
    /// The new visibility.
    pub visibility: Option<Visibility>,
}

/// `DeleteChannel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteChannel {
    /// The channel to delete.
    pub channel_id: u64,
}

/// `CreateMember`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateMember {
    /// The channel to join or invite into.
    pub channel_id: u64,
    /// `None` when the request left it empty: the caller joins.
    pub user_id: Option<u64>,
}

/// `DeleteMember`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteMember {
    /// The channel to leave or remove from.
    pub channel_id: u64,
    /// The member leaving or removed.
    pub user_id: u64,
}

/// `ListMembers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListMembers {
    /// The channel whose members are listed.
    pub channel_id: u64,
    /// Clamped to `1..=MAX_PAGE`.
    pub page_size: usize,
    /// Continue after this (the decoded page token); `None`: the first page.
    pub cursor: Option<u64>,
}

/// `UpdateMember`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateMember {
    /// The channel.
    pub channel_id: u64,
    /// The member whose role changes.
    pub user_id: u64,
    /// The new role.
    pub role: Role,
}

/// `CloseChannel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseChannel {
    /// The channel to hide from the caller's list.
    pub channel_id: u64,
}

/// `ReopenChannel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReopenChannel {
    /// The channel to show in the caller's list again.
    pub channel_id: u64,
}

/// `CheckMembership` (internal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckMembership {
    /// The channel.
    pub channel_id: u64,
    /// The user asked about.
    pub user_id: u64,
}

/// `GetOrCreateDirectChannel` (internal): two distinct users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetOrCreateDirectChannel {
    /// The creator, when the channel is new.
    pub user_id: u64,
    /// The other user.
    pub other_user_id: u64,
}

/// `ListUserChannelIds` (internal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListUserChannelIds {
    /// Whose channels.
    pub user_id: u64,
    /// Clamped to `1..=MAX_INTERNAL_PAGE`; `MAX_INTERNAL_PAGE` when unset.
    pub page_size: usize,
    /// Continue after this (the decoded page token); `None`: the first page.
    pub cursor: Option<u64>,
}

/// `RecordActivity` (internal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordActivity {
    /// Each channel with new chats, and the newest of them (the highest id named for it).
    pub newest_chats: std::collections::BTreeMap<u64, u64>,
}

fn name(name: &str) -> Result<String, Status> {
    if name.trim().is_empty() {
        return Err(invalid_field("name", "is required"));
    }
    // why: the length and character rules apply to the name as sent; the trimmed one is stored.
    validate::text("name", name, 1, MAX_NAME)?;
    Ok(name.trim().to_owned())
}

fn topic(topic: &str) -> Result<(), Status> {
    // why: a topic may span lines; newlines and tabs are the control characters it may hold.
    if topic.is_empty() { Ok(()) } else { validate::text("topic", &topic.replace(['\n', '\t'], " "), 1, MAX_TOPIC) }
}

fn image_url(url: &str) -> Result<(), Status> {
    if url.is_empty() {
        return Ok(());
    }
    validate::text("image_url", url, 1, MAX_URL)?;
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(invalid_field("image_url", "must be an http(s) URL"))
    }
}

/// `None` for a value this build does not know; UNSPECIFIED is `Some(None)`.
fn visibility(value: i32) -> Option<Option<Visibility>> {
    match pb::ChannelVisibility::try_from(value).ok()? {
        pb::ChannelVisibility::Public => Some(Some(Visibility::Public)),
        pb::ChannelVisibility::Private => Some(Some(Visibility::Private)),
        pb::ChannelVisibility::Unspecified => Some(None),
    }
}

/// Validates a `CreateChannelRequest`: the kind, each field's own rule, then what the kind needs.
pub fn create_channel(request: &pb::CreateChannelRequest) -> Result<CreateChannel, Status> {
    let kind = match pb::ChannelKind::try_from(request.kind) {
        Ok(pb::ChannelKind::Direct) => None,
        Ok(pb::ChannelKind::Group) => Some(GroupKind::Group),
        Ok(pb::ChannelKind::Broadcast) => Some(GroupKind::Broadcast),
        Ok(pb::ChannelKind::Unspecified) | Err(_) => {
            return Err(invalid_field("kind", "must be GROUP, DIRECT or BROADCAST"));
        }
    };
    let name = match kind {
        None if !request.name.is_empty() => return Err(invalid_field("name", "direct channels have no name")),
        None => String::new(),
        Some(_) => name(&request.name)?,
    };
    // why: a direct channel ignores topic, image and visibility, but a field's own rule holds
    // whatever the kind, as the contract says.
    topic(&request.topic)?;
    image_url(&request.image_url)?;
    let visibility = visibility(request.visibility)
        .ok_or_else(|| invalid_field("visibility", "is not a known visibility"))?
        .unwrap_or(Visibility::Private);
    if request.member_ids.len() > MAX_INITIAL_MEMBERS {
        return Err(invalid_field("member_ids", format!("at most {MAX_INITIAL_MEMBERS} ids")));
    }
    let member_ids: BTreeSet<u64> =
        request.member_ids.iter().map(|raw| validate::id("member_ids", raw)).collect::<Result<_, _>>()?;
    let Some(kind) = kind else {
        // why: none, or more than two, is wrong whoever the caller is; the rest needs the caller.
        if member_ids.is_empty() || request.member_ids.len() > 2 {
            return Err(invalid_field("member_ids", DIRECT_MEMBERS_RULE));
        }
        return Ok(CreateChannel::Direct(CreateDirect { member_ids }));
    };
    Ok(CreateChannel::Group(CreateGroup {
        kind,
        visibility,
        name,
        topic: request.topic.clone(),
        image_url: request.image_url.clone(),
        member_ids,
    }))
}

/// Validates a `GetChannelRequest`.
pub fn get_channel(request: &pb::GetChannelRequest) -> Result<GetChannel, Status> {
    Ok(GetChannel { channel_id: validate::id("channel_id", &request.channel_id)? })
}

/// Validates a `ListMyChannelsRequest`: the page size, clamped, and the page token.
pub fn list_my_channels(request: &pb::ListMyChannelsRequest) -> Result<ListMyChannels, Status> {
    Ok(ListMyChannels {
        page_size: crate::page::page_size(request.page_size, DEFAULT_PAGE, MAX_PAGE),
        cursor: crate::page::decode_token(&request.page_token)?,
        include_closed: request.include_closed,
    })
}

/// Validates an `UpdateChannelRequest`. Without an update mask, the non-empty fields change.
pub fn update_channel(request: &pb::UpdateChannelRequest) -> Result<UpdateChannel, Status> {
    const FIELDS: [&str; 4] = ["name", "topic", "image_url", "visibility"];
    let channel_id = validate::id("channel_id", &request.channel_id)?;
    if let Some(field) = request.update_mask.iter().find(|f| !FIELDS.contains(&f.as_str())) {
        return Err(invalid_field("update_mask", format!("unknown field {field:?}")));
    }
    let masked = |field: &str, set: bool| {
        if request.update_mask.is_empty() { set } else { request.update_mask.iter().any(|f| f == field) }
    };
    let name = if masked("name", !request.name.is_empty()) { Some(name(&request.name)?) } else { None };
    let topic = if masked("topic", !request.topic.is_empty()) {
        topic(&request.topic)?;
        Some(request.topic.clone())
    } else {
        None
    };
    let image_url = if masked("image_url", !request.image_url.is_empty()) {
        image_url(&request.image_url)?;
        Some(request.image_url.clone())
    } else {
        None
    };
    let visibility = if masked("visibility", request.visibility != 0) {
        Some(
            visibility(request.visibility)
                .flatten()
                .ok_or_else(|| invalid_field("visibility", "must be PUBLIC or PRIVATE"))?,
        )
    } else {
        None
    };
    Ok(UpdateChannel { channel_id, name, topic, image_url, visibility })
}

/// Validates a `DeleteChannelRequest`.
pub fn delete_channel(request: &pb::DeleteChannelRequest) -> Result<DeleteChannel, Status> {
    Ok(DeleteChannel { channel_id: validate::id("channel_id", &request.channel_id)? })
}

/// Validates a `CreateMemberRequest`; an empty `user_id` means the caller.
pub fn create_member(request: &pb::CreateMemberRequest) -> Result<CreateMember, Status> {
    let channel_id = validate::id("channel_id", &request.channel_id)?;
    let user_id = if request.user_id.is_empty() { None } else { Some(validate::id("user_id", &request.user_id)?) };
    Ok(CreateMember { channel_id, user_id })
}

/// Validates a `DeleteMemberRequest`.
pub fn delete_member(request: &pb::DeleteMemberRequest) -> Result<DeleteMember, Status> {
    let channel_id = validate::id("channel_id", &request.channel_id)?;
    let user_id = validate::id("user_id", &request.user_id)?;
    Ok(DeleteMember { channel_id, user_id })
}

/// Validates a `ListMembersRequest`: the channel and the page size, clamped (the token is the
/// handler's).
pub fn list_members(request: &pb::ListMembersRequest) -> Result<ListMembers, Status> {
    let channel_id = validate::id("channel_id", &request.channel_id)?;
    Ok(ListMembers {
        channel_id,
        page_size: crate::page::page_size(request.page_size, DEFAULT_PAGE, MAX_PAGE),
        cursor: crate::page::decode_token(&request.page_token)?,
    })
}

/// Validates an `UpdateMemberRequest`.
pub fn update_member(request: &pb::UpdateMemberRequest) -> Result<UpdateMember, Status> {
    let channel_id = validate::id("channel_id", &request.channel_id)?;
    let user_id = validate::id("user_id", &request.user_id)?;
    let role = match pb::MemberRole::try_from(request.role) {
        Ok(pb::MemberRole::Member) => Role::Member,
        Ok(pb::MemberRole::Admin) => Role::Admin,
        Ok(pb::MemberRole::Owner) => Role::Owner,
        Ok(pb::MemberRole::Unspecified) | Err(_) => {
            return Err(invalid_field("role", "must be MEMBER, ADMIN or OWNER"));
        }
    };
    Ok(UpdateMember { channel_id, user_id, role })
}

/// Validates a `CloseChannelRequest`.
pub fn close_channel(request: &pb::CloseChannelRequest) -> Result<CloseChannel, Status> {
    Ok(CloseChannel { channel_id: validate::id("channel_id", &request.channel_id)? })
}

/// Validates a `ReopenChannelRequest`.
pub fn reopen_channel(request: &pb::ReopenChannelRequest) -> Result<ReopenChannel, Status> {
    Ok(ReopenChannel { channel_id: validate::id("channel_id", &request.channel_id)? })
}

/// Validates a `CheckMembershipRequest`.
pub fn check_membership(request: &pb::CheckMembershipRequest) -> Result<CheckMembership, Status> {
    let channel_id = validate::id("channel_id", &request.channel_id)?;
    let user_id = validate::id("user_id", &request.user_id)?;
    Ok(CheckMembership { channel_id, user_id })
}

/// Validates a `GetOrCreateDirectChannelRequest`: two ids, naming two different users.
pub fn get_or_create_direct_channel(
    request: &pb::GetOrCreateDirectChannelRequest,
) -> Result<GetOrCreateDirectChannel, Status> {
    let user_id = validate::id("user_id", &request.user_id)?;
    let other_user_id = validate::id("other_user_id", &request.other_user_id)?;
    if other_user_id == user_id {
        return Err(invalid_field("other_user_id", "must name a user other than user_id"));
    }
    Ok(GetOrCreateDirectChannel { user_id, other_user_id })
}

/// Validates a `ListUserChannelIdsRequest`: the user, the page size, clamped, and the page token.
pub fn list_user_channel_ids(request: &pb::ListUserChannelIdsRequest) -> Result<ListUserChannelIds, Status> {
    let user_id = validate::id("user_id", &request.user_id)?;
    Ok(ListUserChannelIds {
        user_id,
        page_size: crate::page::page_size(request.page_size, MAX_INTERNAL_PAGE, MAX_INTERNAL_PAGE),
        cursor: crate::page::decode_token(&request.page_token)?,
    })
}

/// Validates a `RecordActivityRequest`: at most [`MAX_INTERNAL_PAGE`] channels, each id valid.
pub fn record_activity(request: &pb::RecordActivityRequest) -> Result<RecordActivity, Status> {
    if request.activities.len() > MAX_INTERNAL_PAGE {
        return Err(invalid_field("activities", format!("at most {MAX_INTERNAL_PAGE} channels")));
    }
    let mut newest_chats = std::collections::BTreeMap::new();
    for activity in &request.activities {
        let channel_id = validate::id("activities.channel_id", &activity.channel_id)?;
        let chat_id = validate::id("activities.newest_chat_id", &activity.newest_chat_id)?;
        let newest = newest_chats.entry(channel_id).or_insert(chat_id);
        *newest = (*newest).max(chat_id);
    }
    Ok(RecordActivity { newest_chats })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::refuses;

    fn group(name: &str) -> pb::CreateChannelRequest {
        pb::CreateChannelRequest { kind: pb::ChannelKind::Group as i32, name: name.into(), ..Default::default() }
    }

    #[test]
    fn create_channel_refuses_by_field_in_order() {
        refuses(create_channel(&pb::CreateChannelRequest::default()), "kind");
        refuses(create_channel(&pb::CreateChannelRequest { kind: 99, ..Default::default() }), "kind");
        refuses(create_channel(&group("  ")), "name");
        refuses(create_channel(&group(&"x".repeat(MAX_NAME + 1))), "name");
        // why: two things wrong at once: the name is looked at before the topic.
        refuses(create_channel(&pb::CreateChannelRequest { topic: "a\u{7}".into(), ..group("") }), "name");
        refuses(create_channel(&pb::CreateChannelRequest { topic: "a\u{7}".into(), ..group("team") }), "topic");
        refuses(
            create_channel(&pb::CreateChannelRequest { image_url: "ftp://x".into(), ..group("team") }),
            "image_url",
        );
        refuses(create_channel(&pb::CreateChannelRequest { visibility: 7, ..group("team") }), "visibility");
        let crowd = vec!["2".to_owned(); MAX_INITIAL_MEMBERS + 1];
        let message =
            refuses(create_channel(&pb::CreateChannelRequest { member_ids: crowd, ..group("team") }), "member_ids");
        assert_eq!(message, "member_ids: at most 100 ids");
        refuses(
            create_channel(&pb::CreateChannelRequest { member_ids: vec!["0".into()], ..group("team") }),
            "member_ids",
        );
    }

    #[test]
    fn a_valid_group_is_trimmed_defaulted_and_deduplicated() {
        let request = pb::CreateChannelRequest {
            topic: "line one\n\tline two".into(),
            member_ids: vec!["3".into(), "2".into(), "3".into()],
            ..group("  team ")
        };
        let Ok(CreateChannel::Group(group)) = create_channel(&request) else { panic!("a group") };
        assert_eq!(group.name, "team");
        assert_eq!(group.visibility, Visibility::Private);
        assert_eq!(group.kind, GroupKind::Group);
        assert_eq!(group.member_ids, BTreeSet::from([2, 3]));
    }

    #[test]
    fn direct_channels_refuse_names_and_wrong_counts() {
        let direct = |name: &str, ids: &[&str]| pb::CreateChannelRequest {
            kind: pb::ChannelKind::Direct as i32,
            name: name.into(),
            member_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            ..Default::default()
        };
        refuses(create_channel(&direct("pair", &["2"])), "name");
        assert_eq!(
            refuses(create_channel(&direct("", &[])), "member_ids"),
            format!("member_ids: {DIRECT_MEMBERS_RULE}")
        );
        refuses(create_channel(&direct("", &["2", "3", "4"])), "member_ids");
        refuses(create_channel(&direct("", &["2", "x", "4"])), "member_ids");
        refuses(create_channel(&direct("", &["2"; MAX_INITIAL_MEMBERS + 1])), "member_ids");
        let ok = create_channel(&direct("", &["2", "2"])).unwrap();
        assert_eq!(ok, CreateChannel::Direct(CreateDirect { member_ids: BTreeSet::from([2]) }));
    }

    #[test]
    fn direct_channels_ignore_topic_image_and_visibility_but_check_their_rules() {
        let direct = pb::CreateChannelRequest {
            kind: pb::ChannelKind::Direct as i32,
            member_ids: vec!["2".into()],
            topic: "ignored".into(),
            image_url: "https://example.org/ignored.png".into(),
            visibility: pb::ChannelVisibility::Public as i32,
            ..Default::default()
        };
        assert!(matches!(create_channel(&direct), Ok(CreateChannel::Direct(_))));
        refuses(create_channel(&pb::CreateChannelRequest { topic: "a\rb".into(), ..direct.clone() }), "topic");
        refuses(create_channel(&pb::CreateChannelRequest { image_url: "x".into(), ..direct.clone() }), "image_url");
        refuses(create_channel(&pb::CreateChannelRequest { visibility: 7, ..direct }), "visibility");
    }

    #[test]
    fn topics_may_hold_newlines_and_tabs_but_no_other_control_character() {
        assert!(topic("a\nb\tc").is_ok());
        assert!(topic(&"x".repeat(MAX_TOPIC)).is_ok());
        refuses(topic(&"x".repeat(MAX_TOPIC + 1)), "topic");
        for bad in ["a\rb", "a\u{b}b", "a\u{85}b", "a\u{0}b"] {
            refuses(topic(bad), "topic");
        }
    }

    #[test]
    fn update_channel_checks_the_mask_and_only_masked_fields() {
        let update = |mask: &[&str], name: &str| pb::UpdateChannelRequest {
            channel_id: "7".into(),
            update_mask: mask.iter().map(|f| (*f).to_owned()).collect(),
            name: name.into(),
            ..Default::default()
        };
        refuses(
            update_channel(&pb::UpdateChannelRequest { channel_id: String::new(), ..update(&["owner"], "") }),
            "channel_id",
        );
        assert_eq!(
            refuses(update_channel(&update(&["owner"], "")), "update_mask"),
            "update_mask: unknown field \"owner\""
        );
        refuses(update_channel(&update(&["name"], "")), "name");
        refuses(update_channel(&update(&["visibility"], "")), "visibility");
        let valid = update_channel(&update(&["topic"], "ignored")).unwrap();
        assert_eq!((valid.name, valid.topic), (None, Some(String::new())), "the mask, not presence, decides");
        assert_eq!(update_channel(&update(&[], " new ")).unwrap().name.as_deref(), Some("new"));
    }

    #[test]
    fn member_requests_name_their_fields() {
        refuses(create_member(&pb::CreateMemberRequest { channel_id: "1".into(), user_id: "abc".into() }), "user_id");
        assert_eq!(
            create_member(&pb::CreateMemberRequest { channel_id: "1".into(), user_id: String::new() }).unwrap().user_id,
            None
        );
        refuses(delete_member(&pb::DeleteMemberRequest { channel_id: "1".into(), user_id: String::new() }), "user_id");
        let update = |role: i32| pb::UpdateMemberRequest { channel_id: "1".into(), user_id: "2".into(), role };
        refuses(update_member(&update(pb::MemberRole::Unspecified as i32)), "role");
        refuses(update_member(&update(42)), "role");
        assert_eq!(update_member(&update(pb::MemberRole::Admin as i32)).unwrap().role, Role::Admin);
        refuses(close_channel(&pb::CloseChannelRequest { channel_id: "-1".into() }), "channel_id");
        refuses(
            check_membership(&pb::CheckMembershipRequest { channel_id: "1".into(), user_id: "0".into() }),
            "user_id",
        );
    }

    #[test]
    fn a_direct_channel_is_asked_for_two_different_users() {
        let request = |user: &str, other: &str| pb::GetOrCreateDirectChannelRequest {
            user_id: user.into(),
            other_user_id: other.into(),
        };
        refuses(get_or_create_direct_channel(&request("", "2")), "user_id");
        refuses(get_or_create_direct_channel(&request("1", "02")), "other_user_id");
        assert_eq!(
            refuses(get_or_create_direct_channel(&request("7", "7")), "other_user_id"),
            "other_user_id: must name a user other than user_id"
        );
        assert_eq!(
            get_or_create_direct_channel(&request("8", "7")).unwrap(),
            GetOrCreateDirectChannel { user_id: 8, other_user_id: 7 },
            "the order is kept: user_id is the creator"
        );
    }

    #[test]
    fn pages_are_clamped_and_activity_is_capped() {
        let members = |page_size| pb::ListMembersRequest { channel_id: "1".into(), page_size, ..Default::default() };
        assert_eq!(list_members(&members(0)).unwrap().page_size, DEFAULT_PAGE);
        assert_eq!(list_members(&members(1_000_000)).unwrap().page_size, MAX_PAGE);
        assert_eq!(
            list_my_channels(&pb::ListMyChannelsRequest { page_size: -5, ..Default::default() }).unwrap().page_size,
            DEFAULT_PAGE
        );
        let internal = pb::ListUserChannelIdsRequest { user_id: "1".into(), ..Default::default() };
        assert_eq!(list_user_channel_ids(&internal).unwrap().page_size, MAX_INTERNAL_PAGE);
        let activity =
            |channel: &str, chat: &str| pb::ChannelActivity { channel_id: channel.into(), newest_chat_id: chat.into() };
        let too_many = pb::RecordActivityRequest { activities: vec![activity("1", "2"); MAX_INTERNAL_PAGE + 1] };
        assert_eq!(refuses(record_activity(&too_many), "activities"), "activities: at most 1000 channels");
        let no_chat = pb::RecordActivityRequest { activities: vec![activity("5", "")] };
        refuses(record_activity(&no_chat), "activities.newest_chat_id");
        let twice = pb::RecordActivityRequest { activities: vec![activity("5", "9"), activity("5", "7")] };
        assert_eq!(record_activity(&twice).unwrap().newest_chats, std::collections::BTreeMap::from([(5, 9)]));
    }
}
