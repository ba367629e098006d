//! The WebSocket protocol's decisions as plain functions: where a handshake carries its token,
//! which client frames are refused, when a token may be renewed in band, which events a
//! connection sends (once each, in order) and where a resume starts. None is a business rule:
//! those live in the services the session calls.

use std::{collections::HashMap, time::Duration};

use chatmesh_platform::auth::Caller;
use chatmesh_wire::frames::ClientFrame;
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::frames::close;

/// The value of `name` in a URL query (`a=1&token=x`), undecoded.
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| pair.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

/// Where a handshake carries its token, first found first: `?token=`, then the browser form
/// `Sec-WebSocket-Protocol: bearer, <token>` (whose answer echoes the protocol `bearer`).
/// `None`: look for an `authorization: Bearer` header.
pub fn handshake_token(query: &str, protocols: &str) -> Option<(String, Option<&'static str>)> {
    if let Some(token) = query_param(query, "token").filter(|t| !t.is_empty()) {
        return Some((token.to_owned(), None));
    }
    protocols
        .split(',')
        .map(str::trim)
        .collect::<Vec<_>>()
        .windows(2)
        .find(|pair| pair[0].eq_ignore_ascii_case("bearer"))
        .map(|pair| (pair[1].to_owned(), Some("bearer")))
}

/// Whether a user holding `open` sessions on this gateway may open another.
pub fn may_open_session(open: usize, max_per_user: usize) -> bool {
    open < max_per_user
}

/// Why a parsed client frame is answered with an `error` frame instead of being acted on:
/// (code, message). A second `resume` must wait for the first one's `resumed`.
pub fn refused_frame(frame: &ClientFrame, resuming: bool) -> Option<(&'static str, String)> {
    match frame {
        ClientFrame::Resume { .. } if resuming => {
            Some(("RESUME_IN_PROGRESS", "wait for `resumed` before resuming again".into()))
        }
        ClientFrame::Unknown(other) => Some(("UNKNOWN_EVENT", format!("unknown event {other:?}"))),
        _ => None,
    }
}

/// Whether an in-band `auth` token's caller may take over this connection: the same user on
/// the same login session.
pub fn may_renew(user_id: u64, login_session: &str, caller: &Caller) -> bool {
    matches!(caller, Caller::User { user_id: u, session_id } if *u == user_id && session_id == login_session)
}

/// How long until a token valid until `expires_at_secs` expires (at least a second, so an
/// expired one closes the connection on the next turn rather than spinning).
pub fn until_expiry(expires_at_secs: u64, now_secs: u64) -> Duration {
    Duration::from_secs(expires_at_secs.saturating_sub(now_secs).max(1))
}

/// Whether an event goes out on this connection: not when it (or a later event of its
/// channel) already did. Frames without a channel and event id always go out.
pub fn first_sending(last_sent: &mut HashMap<u64, u64>, channel: Option<u64>, event_id: Option<u64>) -> bool {
    let (Some(channel), Some(event_id)) = (channel, event_id) else { return true };
    let last = last_sent.entry(channel).or_insert(0);
    if event_id <= *last {
        return false;
    }
    *last = event_id;
    true
}

/// A resume's plan: the (channel, after event id) pairs to replay, and the channels whose live
/// events already went out past the resume point (they cannot be replayed in order: the client
/// refetches them). Nothing at or before a resume point is sent again.
pub fn resume_plan(last_sent: &mut HashMap<u64, u64>, wanted: Vec<(u64, u64)>) -> (Vec<(u64, u64)>, Vec<u64>) {
    let (mut plan, mut live_ahead) = (Vec::new(), Vec::new());
    for (channel, last) in wanted {
        let sent = last_sent.entry(channel).or_insert(0);
        if *sent > last {
            live_ahead.push(channel);
            continue;
        }
        *sent = last;
        plan.push((channel, last));
    }
    (plan, live_ahead)
}

/// Why a replay of a channel's log stopped, as a `resync` reason.
pub fn replay_failure(code: tonic::Code) -> &'static str {
    if code == tonic::Code::NotFound { "not_found" } else { "unavailable" }
}

/// The close a read error calls for: (close code, reason).
pub fn close_for(error: &WsError) -> (u16, &'static str) {
    match error {
        WsError::Capacity(_) => (1009, "message too big"),
        WsError::Utf8(_) => (1007, "invalid UTF-8"),
        _ => (1002, "protocol error"),
    }
}

/// The close for a session scoped to `wanted` when the dispatcher did not give it that channel.
pub fn scope_refusal(wanted: Option<u64>, channels: &[u64]) -> Option<(u16, String)> {
    wanted
        .filter(|channel| !channels.contains(channel))
        .map(|channel| (close::CHANNEL_NOT_FOUND, format!("channel {channel} not found")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_token_wins_then_the_bearer_protocol() {
        assert_eq!(handshake_token("token=abc&channel_id=1", "bearer, xyz"), Some(("abc".into(), None)));
        assert_eq!(handshake_token("token=&x=1", "chat, Bearer, xyz"), Some(("xyz".into(), Some("bearer"))));
        assert_eq!(handshake_token("", "chat"), None, "the authorization header is asked next");
        assert_eq!(handshake_token("tokens=abc", ""), None, "only the exact parameter name");
        assert_eq!(query_param("a=1&channel_id=42", "channel_id"), Some("42"));
    }

    #[test]
    fn sessions_per_user_are_capped() {
        assert!(may_open_session(0, 2));
        assert!(may_open_session(1, 2));
        assert!(!may_open_session(2, 2));
        assert!(!may_open_session(0, 0));
    }

    #[test]
    fn a_second_resume_and_unknown_events_are_refused() {
        let resume = ClientFrame::Resume { channels: vec![(1, 5)], refused: Vec::new() };
        assert_eq!(refused_frame(&resume, true).map(|r| r.0), Some("RESUME_IN_PROGRESS"));
        assert_eq!(refused_frame(&resume, false), None);
        assert_eq!(refused_frame(&ClientFrame::Unknown("shout".into()), false).map(|r| r.0), Some("UNKNOWN_EVENT"));
        assert_eq!(refused_frame(&ClientFrame::Ping, true), None);
    }

    #[test]
    fn only_the_same_user_and_login_session_renew_a_token() {
        let same = Caller::User { user_id: 7, session_id: "s".into() };
        assert!(may_renew(7, "s", &same));
        assert!(!may_renew(7, "other", &same));
        assert!(!may_renew(8, "s", &same));
        assert!(!may_renew(7, "s", &Caller::Service { part: "chat".into() }));
    }

    #[test]
    fn an_expired_token_closes_on_the_next_turn() {
        assert_eq!(until_expiry(100, 40), Duration::from_secs(60));
        assert_eq!(until_expiry(100, 100), Duration::from_secs(1));
        assert_eq!(until_expiry(100, 500), Duration::from_secs(1));
    }

    #[test]
    fn each_event_goes_out_once_and_in_order() {
        let mut sent = HashMap::new();
        assert!(first_sending(&mut sent, Some(1), Some(5)));
        assert!(!first_sending(&mut sent, Some(1), Some(5)), "a duplicate");
        assert!(!first_sending(&mut sent, Some(1), Some(4)), "an older one");
        assert!(first_sending(&mut sent, Some(2), Some(4)), "another channel");
        assert!(first_sending(&mut sent, None, None), "presence and typing have no event id");
    }

    #[test]
    fn a_resume_replays_after_its_point_unless_live_events_went_past_it() {
        let mut sent = HashMap::from([(1, 10), (2, 3)]);
        let (plan, ahead) = resume_plan(&mut sent, vec![(1, 8), (2, 6), (3, 0)]);
        assert_eq!(plan, vec![(2, 6), (3, 0)]);
        assert_eq!(ahead, vec![1]);
        assert_eq!(sent[&2], 6, "nothing up to the resume point goes out again");
    }

    #[test]
    fn read_errors_and_replay_failures_have_their_codes() {
        assert_eq!(replay_failure(tonic::Code::NotFound), "not_found");
        assert_eq!(replay_failure(tonic::Code::Unavailable), "unavailable");
        assert_eq!(close_for(&WsError::Utf8("bad".into())).0, 1007);
        assert_eq!(close_for(&WsError::ConnectionClosed).0, 1002);
    }

    #[test]
    fn a_scoped_session_needs_its_channel() {
        assert_eq!(scope_refusal(Some(4), &[1, 2]).map(|r| r.0), Some(close::CHANNEL_NOT_FOUND));
        assert_eq!(scope_refusal(Some(2), &[1, 2]), None);
        assert_eq!(scope_refusal(None, &[]), None);
    }
}
