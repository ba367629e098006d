//! The dispatcher's decisions, as plain functions: who follows a channel, where an event goes,
//! when receipts, typing and presence fan out, and what presence a user may see.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use chatmesh_api::{
    channel::v1::{ChannelKind, CheckMembershipResponse, MemberRole},
    chat::v1::{ChannelEvent, EventType, channel_event::Payload},
    dispatcher::v1::{CloseSession, LiveEvent, Presence, PresenceStatus, Typing, live_event::Event},
};
use chatmesh_platform::ids::timestamp;

use crate::{error::DispatcherError, hub};

/// How long a typing notice lasts on clients.
pub const TYPING_TTL: Duration = Duration::from_secs(8);
/// At most one typing notice per user and channel this often.
pub const TYPING_EVERY: Duration = Duration::from_secs(3);

/// Whether a membership answer says the user is a member of an existing channel: only members
/// follow a channel.
pub fn is_member(answer: &CheckMembershipResponse) -> bool {
    answer.channel_exists && answer.is_member
}

/// Whether receipts, typing and presence fan out in a channel: direct channels, and groups of
/// at most `small_channel_max` members.
pub fn fans_out(answer: &CheckMembershipResponse, small_channel_max: u32) -> bool {
    answer.channel_exists
        && (answer.kind() == ChannelKind::Direct
            || (answer.kind() == ChannelKind::Group && answer.member_count as u32 <= small_channel_max))
}

/// Whether a member with `role` may send typing notices in `channel_id`, a channel of `kind`:
/// only who may write there, so in a broadcast channel only its owner (its readers cannot
/// announce a chat they could not send).
pub fn may_type(channel_id: u64, kind: ChannelKind, role: MemberRole) -> Result<(), DispatcherError> {
    match chatmesh_platform::membership::may_write(kind, role) {
        true => Ok(()),
        false => Err(DispatcherError::BroadcastOwnerOnly { channel_id }),
    }
}

/// Where a committed channel event goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// To every follower, then the channel is forgotten (no follower check: it is gone).
    ChannelDeleted,
    /// The user joined: they follow the channel (if still a member); every follower hears it.
    Joined(u64),
    /// The user left: every other follower hears it, and each of the leaver's devices that
    /// followed the channel; then they stop following it.
    Left(u64),
    /// A read receipt: to every follower, only where receipts fan out.
    Receipt,
    /// To every follower.
    Followers,
}

/// The delivery of an event, from its type and the member it is about.
pub fn delivery(event: &ChannelEvent) -> Delivery {
    let subject = match &event.payload {
        Some(Payload::Member(member)) => member.user_id.parse::<u64>().ok(),
        _ => None,
    };
    match (event.r#type(), subject) {
        (EventType::ChannelDeleted, _) => Delivery::ChannelDeleted,
        (EventType::MemberJoined, Some(user)) => Delivery::Joined(user),
        (EventType::MemberLeft, Some(user)) => Delivery::Left(user),
        (EventType::ChatAcked, _) => Delivery::Receipt,
        _ => Delivery::Followers,
    }
}

/// Whether this dispatcher announces a user's coming online or going offline, given whether
/// another dispatcher still (or already) holds a session of theirs (`None`: unknown, no
/// shared presence).
pub fn announces_presence(held_elsewhere: Option<bool>) -> bool {
    held_elsewhere != Some(true)
}

/// The presence a caller sees of a user: only people who share a channel see it; others see
/// OFFLINE without a last-seen time. `user_id` is as the caller wrote it.
pub fn presence_as_seen(user_id: String, shares_a_channel: bool, online: bool, last_seen_ms: Option<u64>) -> Presence {
    let online = shares_a_channel && online;
    Presence {
        user_id,
        status: if online { PresenceStatus::Online } else { PresenceStatus::Offline } as i32,
        last_seen_at: if shares_a_channel && !online { last_seen_ms.map(timestamp) } else { None },
    }
}

/// The live event telling a user's channels they came online or went offline at `now_ms`.
pub fn presence_change(user: u64, online: bool, now_ms: u64) -> LiveEvent {
    let presence = Presence {
        user_id: user.to_string(),
        status: if online { PresenceStatus::Online } else { PresenceStatus::Offline } as i32,
        last_seen_at: if online { None } else { Some(timestamp(now_ms)) },
    };
    LiveEvent { event: Some(Event::Presence(presence)) }
}

/// The live event of `user` typing in `channel` at `now_ms`, shown for [`TYPING_TTL`].
pub fn typing(channel: u64, user: u64, now_ms: u64) -> LiveEvent {
    let typing = Typing {
        channel_id: channel.to_string(),
        user_id: user.to_string(),
        expires_at: Some(timestamp(now_ms + TYPING_TTL.as_millis() as u64)),
    };
    LiveEvent { event: Some(Event::Typing(typing)) }
}

/// At most one typing notice per user and channel every [`TYPING_EVERY`].
#[derive(Debug, Default)]
pub struct TypingThrottle {
    last: HashMap<(u64, u64), Instant>,
}

impl TypingThrottle {
    /// Whether a notice of `user` in `channel` at `now` goes out (and counts as the last one).
    pub fn admit(&mut self, user: u64, channel: u64, now: Instant) -> bool {
        if self.last.get(&(user, channel)).is_some_and(|last| now.duration_since(*last) < TYPING_EVERY) {
            return false;
        }
        // why: forget notices old enough not to matter, so the map stays as small as the typists.
        self.last.retain(|_, last| now.duration_since(*last) < TYPING_EVERY);
        self.last.insert((user, channel), now);
        true
    }
}

/// How a subscription ends when the hub closes its session: the WebSocket close code it asked
/// for, as the gRPC status a subscriber understands.
pub fn subscription_closed(close: &CloseSession) -> tonic::Status {
    let code = match close.close_code {
        hub::CLOSE_LOGGED_OUT => tonic::Code::Unauthenticated,
        hub::CLOSE_CHANNEL_LEFT => tonic::Code::PermissionDenied,
        _ => tonic::Code::Unavailable,
    };
    tonic::Status::new(code, close.reason.clone())
}

#[cfg(test)]
mod tests {
    use chatmesh_api::channel::v1::Member;

    use super::*;

    fn answer(exists: bool, member: bool, kind: ChannelKind, members: i32) -> CheckMembershipResponse {
        CheckMembershipResponse {
            channel_exists: exists,
            is_member: member,
            kind: kind as i32,
            member_count: members,
            ..Default::default()
        }
    }

    #[test]
    fn only_members_of_existing_channels_follow() {
        assert!(is_member(&answer(true, true, ChannelKind::Group, 3)));
        assert!(!is_member(&answer(true, false, ChannelKind::Group, 3)));
        assert!(!is_member(&answer(false, true, ChannelKind::Group, 3)));
    }

    #[test]
    fn receipts_typing_and_presence_fan_out_in_direct_and_small_groups_only() {
        let cases = [
            (answer(true, true, ChannelKind::Direct, 2), true),
            (answer(true, true, ChannelKind::Group, 50), true),
            (answer(true, true, ChannelKind::Group, 51), false),
            (answer(false, false, ChannelKind::Direct, 2), false),
            (answer(true, true, ChannelKind::Broadcast, 3), false),
        ];
        for (answer, fans) in cases {
            assert_eq!(fans_out(&answer, 50), fans, "{answer:?}");
        }
    }

    #[test]
    fn only_who_may_write_may_type_so_broadcast_readers_may_not() {
        use ChannelKind::{Broadcast, Direct, Group};
        use MemberRole::{Admin, Member, Owner};
        let cases = [
            (Direct, Member, true),
            (Group, Member, true),
            (Group, Owner, true),
            (Broadcast, Owner, true),
            (Broadcast, Admin, false),
            (Broadcast, Member, false),
        ];
        for (kind, role, allowed) in cases {
            let verdict = may_type(9, kind, role);
            assert_eq!(verdict.is_ok(), allowed, "{kind:?} {role:?}");
            if !allowed {
                assert!(matches!(verdict, Err(DispatcherError::BroadcastOwnerOnly { channel_id: 9 })));
            }
        }
    }

    fn event(kind: EventType, member: Option<&str>) -> ChannelEvent {
        let mut event = ChannelEvent { r#type: kind as i32, ..Default::default() };
        if let Some(user) = member {
            event.payload = Some(Payload::Member(Member { user_id: user.into(), ..Default::default() }));
        }
        event
    }

    #[test]
    fn each_event_type_has_its_delivery() {
        assert_eq!(delivery(&event(EventType::ChannelDeleted, None)), Delivery::ChannelDeleted);
        assert_eq!(delivery(&event(EventType::MemberJoined, Some("7"))), Delivery::Joined(7));
        assert_eq!(delivery(&event(EventType::MemberLeft, Some("7"))), Delivery::Left(7));
        assert_eq!(delivery(&event(EventType::MemberLeft, Some("x"))), Delivery::Followers, "no subject, no unfollow");
        assert_eq!(delivery(&event(EventType::ChatAcked, None)), Delivery::Receipt);
        assert_eq!(delivery(&event(EventType::ChatCreated, None)), Delivery::Followers);
    }

    #[test]
    fn presence_changes_are_announced_unless_another_dispatcher_holds_the_user() {
        assert!(announces_presence(None));
        assert!(announces_presence(Some(false)));
        assert!(!announces_presence(Some(true)));
    }

    #[test]
    fn presence_is_seen_only_by_people_who_share_a_channel() {
        let stranger = presence_as_seen("7".into(), false, true, Some(5_000));
        assert_eq!((stranger.status(), stranger.last_seen_at), (PresenceStatus::Offline, None));
        let online = presence_as_seen("7".into(), true, true, Some(5_000));
        assert_eq!((online.status(), online.last_seen_at), (PresenceStatus::Online, None));
        let away = presence_as_seen("7".into(), true, false, Some(5_000));
        assert_eq!((away.status(), away.last_seen_at), (PresenceStatus::Offline, Some(timestamp(5_000))));
        assert_eq!(away.user_id, "7");
    }

    #[test]
    fn a_presence_change_carries_last_seen_only_when_going_offline() {
        let Some(Event::Presence(on)) = presence_change(7, true, 9_000).event else { panic!("a presence") };
        assert_eq!((on.status(), on.last_seen_at), (PresenceStatus::Online, None));
        let Some(Event::Presence(off)) = presence_change(7, false, 9_000).event else { panic!("a presence") };
        assert_eq!((off.status(), off.last_seen_at), (PresenceStatus::Offline, Some(timestamp(9_000))));
    }

    #[test]
    fn a_typing_notice_expires_after_its_ttl() {
        let Some(Event::Typing(notice)) = typing(3, 7, 1_000).event else { panic!("a typing notice") };
        assert_eq!((notice.channel_id.as_str(), notice.user_id.as_str()), ("3", "7"));
        assert_eq!(notice.expires_at, Some(timestamp(1_000 + TYPING_TTL.as_millis() as u64)));
    }

    #[test]
    fn typing_goes_out_at_most_once_per_user_and_channel_every_few_seconds() {
        let mut throttle = TypingThrottle::default();
        let start = Instant::now();
        assert!(throttle.admit(7, 1, start));
        assert!(!throttle.admit(7, 1, start + Duration::from_secs(1)));
        assert!(throttle.admit(7, 2, start + Duration::from_secs(1)), "another channel");
        assert!(throttle.admit(8, 1, start + Duration::from_secs(1)), "another user");
        assert!(throttle.admit(7, 1, start + TYPING_EVERY));
        assert!(!throttle.admit(7, 1, start + TYPING_EVERY + Duration::from_millis(10)));
    }

    #[test]
    fn a_closed_subscription_ends_with_the_status_its_close_code_means() {
        let close = |close_code| CloseSession { session_id: "s".into(), reason: "why".into(), close_code };
        assert_eq!(subscription_closed(&close(hub::CLOSE_LOGGED_OUT)).code(), tonic::Code::Unauthenticated);
        assert_eq!(subscription_closed(&close(hub::CLOSE_CHANNEL_LEFT)).code(), tonic::Code::PermissionDenied);
        let reconnect = subscription_closed(&close(hub::CLOSE_RECONNECT));
        assert_eq!((reconnect.code(), reconnect.message()), (tonic::Code::Unavailable, "why"));
    }
}
