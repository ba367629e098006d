//! The one place system announcements are worded: a channel event from the channel
//! service becomes a SYSTEM chat in history. Users appear as `<@user_id>`, which clients
//! render with names (as Discord does), so history never holds stale display names.

use chatmesh_api::{
    channel::v1::{ChannelVisibility, MemberRole},
    chat::v1::{ChannelEvent, EventType, channel_event::Payload},
};

use crate::model::{Announcement, ChatKind, NewChat};

fn mention(user_id: u64) -> String {
    format!("<@{user_id}>")
}

/// The announcement of `event`, if it is announced in history.
pub fn announcement(event: &ChannelEvent) -> Option<NewChat> {
    let channel_id: u64 = event.channel_id.parse().ok()?;
    let actor: u64 = event.actor_id.parse().ok()?;
    let (kind, subject, text) = match (event.r#type(), &event.payload) {
        (EventType::MemberJoined, Some(Payload::Member(member))) => {
            let user: u64 = member.user_id.parse().ok()?;
            if user == actor {
                ("member.joined", 0, format!("{} joined", mention(user)))
            } else {
                ("member.invited", user, format!("{} added {}", mention(actor), mention(user)))
            }
        }
        (EventType::MemberLeft, Some(Payload::Member(member))) => {
            let user: u64 = member.user_id.parse().ok()?;
            if user == actor {
                ("member.left", 0, format!("{} left", mention(user)))
            } else {
                ("member.kicked", user, format!("{} removed {}", mention(actor), mention(user)))
            }
        }
        (EventType::MemberUpdated, Some(Payload::Member(member))) => {
            let user: u64 = member.user_id.parse().ok()?;
            let role = match member.role() {
                MemberRole::Owner => "the owner",
                MemberRole::Admin => "an admin",
                _ => "a member",
            };
            ("member.role_changed", user, format!("{} made {} {role}", mention(actor), mention(user)))
        }
        (EventType::ChannelUpdated, Some(Payload::Channel(channel))) => {
            let changed = |field: &str| event.changed_fields.iter().any(|f| f == field);
            let mut parts = Vec::new();
            if changed("name") {
                parts.push(format!("renamed the channel to “{}”", channel.name));
            }
            if changed("topic") {
                parts.push(format!("changed the topic to “{}”", channel.topic));
            }
            if changed("image_url") {
                parts.push("changed the channel image".to_owned());
            }
            if changed("visibility") {
                let visibility = if channel.visibility() == ChannelVisibility::Public { "public" } else { "private" };
                parts.push(format!("made the channel {visibility}"));
            }
            if parts.is_empty() {
                return None;
            }
            let kind = if changed("name") { "channel.renamed" } else { "channel.updated" };
            (kind, 0, format!("{} {}", mention(actor), parts.join(", ")))
        }
        _ => return None,
    };
    Some(NewChat {
        channel_id,
        sender_id: actor,
        kind: ChatKind::System,
        text,
        client_msg_id: String::new(),
        reply_to: 0,
        mentions: if subject == 0 { Vec::new() } else { vec![subject] },
        announcement: Some(Announcement { kind: kind.to_owned(), actor_id: actor, subject_user_id: subject }),
        body_hash: String::new(),
        attachments: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use chatmesh_api::channel::v1::{Channel, Member};

    use super::*;

    fn event(kind: EventType, actor: &str, payload: Payload, changed: &[&str]) -> ChannelEvent {
        ChannelEvent {
            channel_id: "5".into(),
            r#type: kind as i32,
            actor_id: actor.into(),
            payload: Some(payload),
            changed_fields: changed.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }
    }

    fn member(user: &str) -> Payload {
        Payload::Member(Member { user_id: user.into(), role: MemberRole::Admin as i32, ..Default::default() })
    }

    #[test]
    fn membership_changes_are_worded_by_who_acted() {
        let text = |e: ChannelEvent| announcement(&e).map(|c| (c.announcement.unwrap().kind, c.text));
        assert_eq!(
            text(event(EventType::MemberJoined, "1", member("1"), &[])),
            Some(("member.joined".into(), "<@1> joined".into()))
        );
        assert_eq!(
            text(event(EventType::MemberJoined, "1", member("2"), &[])),
            Some(("member.invited".into(), "<@1> added <@2>".into()))
        );
        assert_eq!(
            text(event(EventType::MemberLeft, "2", member("2"), &[])),
            Some(("member.left".into(), "<@2> left".into()))
        );
        assert_eq!(
            text(event(EventType::MemberLeft, "1", member("2"), &[])),
            Some(("member.kicked".into(), "<@1> removed <@2>".into()))
        );
        assert_eq!(
            text(event(EventType::MemberUpdated, "1", member("2"), &["role"])),
            Some(("member.role_changed".into(), "<@1> made <@2> an admin".into()))
        );
        let renamed = Payload::Channel(Channel { name: "plans".into(), ..Default::default() });
        assert_eq!(
            text(event(EventType::ChannelUpdated, "1", renamed.clone(), &["name"])),
            Some(("channel.renamed".into(), "<@1> renamed the channel to “plans”".into()))
        );
        assert_eq!(text(event(EventType::ChannelUpdated, "1", renamed, &[])), None);
        assert_eq!(text(event(EventType::ChannelDeleted, "1", member("1"), &[])), None);
    }
}
