//! Validation of every dispatcher-service request: each function checks one request type, names the
//! field it refuses, and returns the values the handler works with.

use std::collections::HashMap;

use chatmesh_api::dispatcher::v1::{self as pb, attach_request::Command};
use tonic::Status;

use crate::{error::invalid_field, validate};

/// Most users one `GetPresenceRequest` may ask about.
pub const MAX_PRESENCE_IDS: usize = 100;
/// Most users one `PublishToUsersRequest` may name.
pub const MAX_PUBLISH_USER_IDS: usize = 1000;

/// A valid `PublishRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Each event's channel, in the request's order (one per `events` entry).
    pub channel_ids: Vec<u64>,
}

/// Checks a `PublishRequest`: every event names a valid channel, as `ChannelEvent` requires; the
/// rest of an event is delivered as sent.
pub fn publish(request: &pb::PublishRequest) -> Result<Publish, Status> {
    let channel_ids = request
        .events
        .iter()
        .map(|event| validate::id("events.channel_id", &event.channel_id))
        .collect::<Result<_, _>>()?;
    Ok(Publish { channel_ids })
}

/// A valid `PublishToUsersRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishToUsers {
    /// The ids parsed, in the request's order (repeats kept: each session gets the event once anyway).
    pub user_ids: Vec<u64>,
}

/// Checks a `PublishToUsersRequest`: at most [`MAX_PUBLISH_USER_IDS`] ids, each valid, and an
/// event; the event is delivered as sent.
pub fn publish_to_users(request: &pb::PublishToUsersRequest) -> Result<PublishToUsers, Status> {
    if request.user_ids.len() > MAX_PUBLISH_USER_IDS {
        return Err(invalid_field("user_ids", format!("at most {MAX_PUBLISH_USER_IDS} ids")));
    }
    let user_ids = request.user_ids.iter().map(|raw| validate::id("user_ids", raw)).collect::<Result<_, _>>()?;
    match request.event {
        Some(_) => Ok(PublishToUsers { user_ids }),
        None => Err(invalid_field("event", "is required")),
    }
}

/// A valid `AttachRequest`: one command of a gateway's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attach {
    /// A gateway opened a session.
    SessionOpened(SessionOpened),
    /// A gateway closed a session.
    SessionClosed { session_id: String },
    /// A session's followed channels changed (not read: the dispatcher does not support it).
    FollowChanged,
    /// A message without a command, e.g. from a newer gateway.
    Empty,
}

/// A valid `SessionOpened` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOpened {
    pub session_id: String,
    pub user_id: u64,
    /// The user's login session (`sid`), possibly empty.
    pub login_session_id: String,
    /// Follow every channel of the user, rather than `channel_ids`.
    pub all_channels: bool,
    /// The channels asked for, parsed (membership still to check); empty with `all_channels`.
    pub channel_ids: Vec<u64>,
}

/// Checks one `AttachRequest` of the stream: a session opened names a valid user and valid
/// channels (checked even when it follows all the user's channels, which leaves the list
/// unused). The other commands carry nothing checked.
pub fn attach(request: &pb::AttachRequest) -> Result<Attach, Status> {
    Ok(match &request.command {
        Some(Command::SessionOpened(opened)) => {
            let user_id = validate::id("session_opened.user_id", &opened.user_id)?;
            let listed: Vec<u64> = opened
                .channel_ids
                .iter()
                .map(|raw| validate::id("session_opened.channel_ids", raw))
                .collect::<Result<_, _>>()?;
            let channel_ids = if opened.all_channels { Vec::new() } else { listed };
            Attach::SessionOpened(SessionOpened {
                session_id: opened.session_id.clone(),
                user_id,
                login_session_id: opened.login_session_id.clone(),
                all_channels: opened.all_channels,
                channel_ids,
            })
        }
        Some(Command::SessionClosed(closed)) => Attach::SessionClosed { session_id: closed.session_id.clone() },
        Some(Command::FollowChanged(_)) => Attach::FollowChanged,
        None => Attach::Empty,
    })
}

/// A valid `DisconnectUserRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisconnectUser {
    pub user_id: u64,
    /// Only this login session's live sessions; `None` for all of the user's.
    pub login_session_id: Option<String>,
}

/// Checks a `DisconnectUserRequest`: the user id is required.
pub fn disconnect_user(request: &pb::DisconnectUserRequest) -> Result<DisconnectUser, Status> {
    let user_id = validate::id("user_id", &request.user_id)?;
    let login_session_id = (!request.login_session_id.is_empty()).then(|| request.login_session_id.clone());
    Ok(DisconnectUser { user_id, login_session_id })
}

/// A valid `GetPresenceRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetPresence {
    /// The ids parsed, in the request's order (one per `user_ids` entry).
    pub user_ids: Vec<u64>,
}

/// Checks a `GetPresenceRequest`: at most [`MAX_PRESENCE_IDS`] ids, each valid.
pub fn get_presence(request: &pb::GetPresenceRequest) -> Result<GetPresence, Status> {
    if request.user_ids.len() > MAX_PRESENCE_IDS {
        return Err(invalid_field("user_ids", format!("at most {MAX_PRESENCE_IDS} ids")));
    }
    let user_ids = request.user_ids.iter().map(|raw| validate::id("user_ids", raw)).collect::<Result<_, _>>()?;
    Ok(GetPresence { user_ids })
}

/// A valid `GetPresencesRequest` (internal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetPresences {
    /// The ids parsed, in the request's order (one per `user_ids` entry).
    pub user_ids: Vec<u64>,
}

/// Checks a `GetPresencesRequest`: at most [`MAX_PRESENCE_IDS`] ids, each valid.
pub fn get_presences(request: &pb::GetPresencesRequest) -> Result<GetPresences, Status> {
    if request.user_ids.len() > MAX_PRESENCE_IDS {
        return Err(invalid_field("user_ids", format!("at most {MAX_PRESENCE_IDS} ids")));
    }
    let user_ids = request.user_ids.iter().map(|raw| validate::id("user_ids", raw)).collect::<Result<_, _>>()?;
    Ok(GetPresences { user_ids })
}

/// A valid `SendTypingRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendTyping {
    pub channel_id: u64,
}

/// Checks a `SendTypingRequest`: the channel id is required.
pub fn send_typing(request: &pb::SendTypingRequest) -> Result<SendTyping, Status> {
    Ok(SendTyping { channel_id: validate::id("channel_id", &request.channel_id)? })
}

/// A valid `SubscribeRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Which channels the stream follows.
    pub follow: SubscribeFollow,
    /// Resume points: channel id → the last event id seen there.
    pub last_event_ids: HashMap<u64, u64>,
}

/// The channels a subscription follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeFollow {
    /// Every channel of the caller, including those joined while subscribed.
    AllChannels,
    /// This one channel.
    Channel(u64),
    /// None: only the events addressed to the caller.
    UserEventsOnly,
}

/// Checks a `SubscribeRequest` by its proto contract: an optional channel id (not with
/// `user_events_only`), and resume points whose keys and values are ids.
pub fn subscribe(request: &pb::SubscribeRequest) -> Result<Subscribe, Status> {
    let follow = match (request.channel_id.is_empty(), request.user_events_only) {
        (true, false) => SubscribeFollow::AllChannels,
        (true, true) => SubscribeFollow::UserEventsOnly,
        (false, false) => SubscribeFollow::Channel(validate::id("channel_id", &request.channel_id)?),
        (false, true) => return Err(invalid_field("user_events_only", "is not given with channel_id")),
    };
    let last_event_ids = request
        .last_event_ids
        .iter()
        .map(|(channel, event)| Ok((validate::id("last_event_ids", channel)?, validate::id("last_event_ids", event)?)))
        .collect::<Result<_, Status>>()?;
    Ok(Subscribe { follow, last_event_ids })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::refuses;
    use chatmesh_api::chat::v1::ChannelEvent;

    fn event(channel_id: &str) -> ChannelEvent {
        ChannelEvent { channel_id: channel_id.into(), ..Default::default() }
    }

    fn opened(user_id: &str, channel_ids: &[&str], all_channels: bool) -> pb::AttachRequest {
        let opened = pb::SessionOpened {
            session_id: "s".into(),
            user_id: user_id.into(),
            login_session_id: String::new(),
            channel_ids: channel_ids.iter().map(|c| (*c).to_owned()).collect(),
            all_channels,
        };
        pb::AttachRequest { command: Some(Command::SessionOpened(opened)) }
    }

    #[test]
    fn publish_refuses_any_event_without_a_valid_channel() {
        let valid = publish(&pb::PublishRequest { events: vec![event("7"), event("9")] }).unwrap();
        assert_eq!(valid.channel_ids, [7, 9]);
        refuses(publish(&pb::PublishRequest { events: vec![event("7"), event("")] }), "events.channel_id");
        refuses(publish(&pb::PublishRequest { events: vec![event("7"), event("07")] }), "events.channel_id");
    }

    fn to_users(user_ids: &[&str], event: Option<pb::FeedEvent>) -> pb::PublishToUsersRequest {
        pb::PublishToUsersRequest { user_ids: user_ids.iter().map(|u| (*u).to_owned()).collect(), event }
    }

    #[test]
    fn publish_to_users_takes_valid_ids_and_an_event() {
        let feed = || Some(pb::FeedEvent::default());
        let valid = publish_to_users(&to_users(&["9", "4", "9"], feed())).unwrap();
        assert_eq!(valid.user_ids, [9, 4, 9]);
        assert_eq!(publish_to_users(&to_users(&[], feed())).unwrap().user_ids, Vec::<u64>::new(), "nobody: nothing");
        refuses(publish_to_users(&to_users(&["1"; MAX_PUBLISH_USER_IDS + 1], feed())), "user_ids");
        assert!(publish_to_users(&to_users(&["1"; MAX_PUBLISH_USER_IDS], feed())).is_ok());
        refuses(publish_to_users(&to_users(&["1", "01"], feed())), "user_ids");
        refuses(publish_to_users(&to_users(&["1"], None)), "event");
    }

    #[test]
    fn sessions_opened_name_a_user_and_valid_channels() {
        refuses(attach(&opened("", &[], true)), "session_opened.user_id");
        refuses(attach(&opened("3", &["1", "x"], false)), "session_opened.channel_ids");
        refuses(attach(&opened("3", &["x"], true)), "session_opened.channel_ids");
        let Attach::SessionOpened(all) = attach(&opened("3", &["5"], true)).unwrap() else { panic!("not opened") };
        assert_eq!((all.user_id, all.all_channels, all.channel_ids), (3, true, Vec::new()));
        assert_eq!(attach(&pb::AttachRequest { command: None }).unwrap(), Attach::Empty);
    }

    #[test]
    fn presence_and_typing_need_valid_ids() {
        refuses(get_presence(&pb::GetPresenceRequest { user_ids: vec!["1".into(); MAX_PRESENCE_IDS + 1] }), "user_ids");
        refuses(get_presence(&pb::GetPresenceRequest { user_ids: vec!["1".into(), "-2".into()] }), "user_ids");
        refuses(
            get_presences(&pb::GetPresencesRequest { user_ids: vec!["1".into(); MAX_PRESENCE_IDS + 1] }),
            "user_ids",
        );
        refuses(get_presences(&pb::GetPresencesRequest { user_ids: vec!["01".into()] }), "user_ids");
        let asked = get_presences(&pb::GetPresencesRequest { user_ids: vec!["9".into(), "4".into(), "9".into()] });
        assert_eq!(asked.unwrap().user_ids, [9, 4, 9], "in order, repeats kept: one answer per id asked");
        refuses(send_typing(&pb::SendTypingRequest::default()), "channel_id");
        refuses(disconnect_user(&pb::DisconnectUserRequest::default()), "user_id");
        let all = disconnect_user(&pb::DisconnectUserRequest { user_id: "4".into(), login_session_id: String::new() });
        assert_eq!(all.unwrap().login_session_id, None);
    }

    #[test]
    fn subscribe_checks_its_optional_channel_and_resume_points() {
        assert_eq!(subscribe(&pb::SubscribeRequest::default()).unwrap().follow, SubscribeFollow::AllChannels);
        let one = pb::SubscribeRequest { channel_id: "7".into(), ..Default::default() };
        assert_eq!(subscribe(&one).unwrap().follow, SubscribeFollow::Channel(7));
        let mine = pb::SubscribeRequest { user_events_only: true, ..Default::default() };
        assert_eq!(subscribe(&mine).unwrap().follow, SubscribeFollow::UserEventsOnly);
        refuses(subscribe(&pb::SubscribeRequest { user_events_only: true, ..one }), "user_events_only");
        refuses(subscribe(&pb::SubscribeRequest { channel_id: "0".into(), ..Default::default() }), "channel_id");
        let resume = HashMap::from([("5".to_owned(), "x".to_owned())]);
        refuses(subscribe(&pb::SubscribeRequest { last_event_ids: resume, ..Default::default() }), "last_event_ids");
    }
}
