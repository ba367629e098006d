//! The dispatcher's live state: attached gateways, their sessions, and which sessions follow
//! which channel. Fan-out is by channel subscription: an event is looked up by its channel,
//! grouped by gateway, and each gateway gets it once with the ids of its sessions.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use chatmesh_api::dispatcher::v1::{AttachResponse, CloseSession, Delivery, LiveEvent, attach_response::Command};
use tokio::sync::mpsc;

/// A gateway's stream back; bounded, so a stuck gateway slows publishing rather than growing memory.
pub type GatewayTx = mpsc::Sender<Result<AttachResponse, tonic::Status>>;

#[derive(Debug)]
struct Session {
    gateway: u64,
    user: u64,
    login_session: String,
    /// Follows every channel of the user, including joins while connected.
    all_channels: bool,
    channels: HashSet<u64>,
}

#[derive(Debug, Default)]
struct State {
    gateways: HashMap<u64, GatewayTx>,
    sessions: HashMap<String, Session>,
    followers: HashMap<u64, HashSet<String>>,
    by_user: HashMap<u64, HashSet<String>>,
    last_seen_ms: HashMap<u64, u64>,
}

#[derive(Debug, Default)]
pub struct Hub {
    state: Mutex<State>,
}

/// Who gets an event: per gateway, its sender and session ids.
pub type Targets = Vec<(GatewayTx, Vec<String>)>;

impl Hub {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn attach(&self, gateway: u64, tx: GatewayTx) {
        self.state().gateways.insert(gateway, tx);
    }

    /// Forgets a gateway and its sessions; returns the users who went offline.
    pub fn detach(&self, gateway: u64, now_ms: u64) -> Vec<u64> {
        let mut state = self.state();
        state.gateways.remove(&gateway);
        let gone: Vec<String> =
            state.sessions.iter().filter(|(_, s)| s.gateway == gateway).map(|(id, _)| id.clone()).collect();
        gone.iter().filter_map(|id| Self::remove_session(&mut state, id, now_ms)).collect()
    }

    /// Registers a session following `channels`; returns whether the user just came online.
    pub fn open_session(
        &self,
        gateway: u64,
        session_id: String,
        user: u64,
        login_session: String,
        all_channels: bool,
        channels: HashSet<u64>,
    ) -> bool {
        let mut state = self.state();
        for channel in &channels {
            state.followers.entry(*channel).or_default().insert(session_id.clone());
        }
        let sessions = state.by_user.entry(user).or_default();
        let came_online = sessions.is_empty();
        sessions.insert(session_id.clone());
        state.sessions.insert(session_id, Session { gateway, user, login_session, all_channels, channels });
        metrics::gauge!("chatmesh_dispatcher_sessions").set(state.sessions.len() as f64);
        came_online
    }

    /// Forgets a session; returns its user if they went offline.
    pub fn close_session(&self, session_id: &str, now_ms: u64) -> Option<u64> {
        Self::remove_session(&mut self.state(), session_id, now_ms)
    }

    fn remove_session(state: &mut State, session_id: &str, now_ms: u64) -> Option<u64> {
        let session = state.sessions.remove(session_id)?;
        metrics::gauge!("chatmesh_dispatcher_sessions").set(state.sessions.len() as f64);
        for channel in &session.channels {
            if let Some(followers) = state.followers.get_mut(channel) {
                followers.remove(session_id);
                if followers.is_empty() {
                    state.followers.remove(channel);
                }
            }
        }
        let sessions = state.by_user.entry(session.user).or_default();
        sessions.remove(session_id);
        if sessions.is_empty() {
            state.by_user.remove(&session.user);
            state.last_seen_ms.insert(session.user, now_ms);
            return Some(session.user);
        }
        None
    }

    /// Sessions following `channel`, grouped by gateway, leaving out `except_user`'s.
    pub fn targets(&self, channel: u64, except_user: Option<u64>) -> Targets {
        let state = self.state();
        let mut by_gateway: HashMap<u64, Vec<String>> = HashMap::new();
        for session_id in state.followers.get(&channel).into_iter().flatten() {
            if let Some(session) = state.sessions.get(session_id)
                && Some(session.user) != except_user
            {
                by_gateway.entry(session.gateway).or_default().push(session_id.clone());
            }
        }
        Self::with_senders(&state, by_gateway)
    }

    /// The sessions of `user` (optionally only one login session), grouped by gateway.
    pub fn user_targets(&self, user: u64, login_session: Option<&str>) -> Targets {
        self.user_sessions_where(user, |session| login_session.is_none_or(|sid| sid == session.login_session))
    }

    /// Every session of any of `users`, grouped by gateway: each gateway is named once, however
    /// many of the users it holds, so it encodes the event once for all of them.
    pub fn users_targets(&self, users: &[u64]) -> Targets {
        let state = self.state();
        let users: HashSet<u64> = users.iter().copied().collect();
        let mut by_gateway: HashMap<u64, Vec<String>> = HashMap::new();
        for session_id in users.iter().filter_map(|user| state.by_user.get(user)).flatten() {
            if let Some(session) = state.sessions.get(session_id) {
                by_gateway.entry(session.gateway).or_default().push(session_id.clone());
            }
        }
        Self::with_senders(&state, by_gateway)
    }

    /// The sessions of `user` that follow `channel` or every channel of theirs.
    pub fn user_targets_in(&self, user: u64, channel: u64) -> Targets {
        self.user_sessions_where(user, |session| session.all_channels || session.channels.contains(&channel))
    }

    /// The sessions of `user` scoped to `channel` alone.
    pub fn scoped_targets(&self, user: u64, channel: u64) -> Targets {
        self.user_sessions_where(user, |session| !session.all_channels && session.channels.contains(&channel))
    }

    fn user_sessions_where(&self, user: u64, keep: impl Fn(&Session) -> bool) -> Targets {
        let state = self.state();
        let mut by_gateway: HashMap<u64, Vec<String>> = HashMap::new();
        for session_id in state.by_user.get(&user).into_iter().flatten() {
            if let Some(session) = state.sessions.get(session_id)
                && keep(session)
            {
                by_gateway.entry(session.gateway).or_default().push(session_id.clone());
            }
        }
        Self::with_senders(&state, by_gateway)
    }

    fn with_senders(state: &State, by_gateway: HashMap<u64, Vec<String>>) -> Targets {
        by_gateway
            .into_iter()
            .filter_map(|(gateway, ids)| state.gateways.get(&gateway).map(|tx| (tx.clone(), ids)))
            .collect()
    }

    /// Every session, grouped by gateway.
    pub fn all_targets(&self) -> Targets {
        let state = self.state();
        let mut by_gateway: HashMap<u64, Vec<String>> = HashMap::new();
        for (id, session) in &state.sessions {
            by_gateway.entry(session.gateway).or_default().push(id.clone());
        }
        Self::with_senders(&state, by_gateway)
    }

    /// Users with a session here.
    pub fn online_users(&self) -> Vec<u64> {
        self.state().by_user.keys().copied().collect()
    }

    /// Channels some session here follows.
    pub fn followed_channels(&self) -> HashSet<u64> {
        self.state().followers.keys().copied().collect()
    }

    /// Users with a session following `channel`.
    pub fn following_users(&self, channel: u64) -> Vec<u64> {
        let state = self.state();
        let users: HashSet<u64> = state
            .followers
            .get(&channel)
            .into_iter()
            .flatten()
            .filter_map(|id| state.sessions.get(id).map(|s| s.user))
            .collect();
        users.into_iter().collect()
    }

    /// `user`'s sessions that follow every channel now follow `channel` too.
    pub fn follow(&self, user: u64, channel: u64) {
        let mut state = self.state();
        let ids: Vec<String> = state.by_user.get(&user).into_iter().flatten().cloned().collect();
        for id in ids {
            if let Some(session) = state.sessions.get_mut(&id)
                && session.all_channels
                && session.channels.insert(channel)
            {
                state.followers.entry(channel).or_default().insert(id);
            }
        }
    }

    /// `user`'s sessions stop following `channel`.
    pub fn unfollow(&self, user: u64, channel: u64) {
        let mut state = self.state();
        let ids: Vec<String> = state.by_user.get(&user).into_iter().flatten().cloned().collect();
        for id in ids {
            if let Some(session) = state.sessions.get_mut(&id) {
                session.channels.remove(&channel);
            }
            if let Some(followers) = state.followers.get_mut(&channel) {
                followers.remove(&id);
                if followers.is_empty() {
                    state.followers.remove(&channel);
                }
            }
        }
    }

    /// Nobody follows `channel` any more.
    pub fn drop_channel(&self, channel: u64) {
        let mut state = self.state();
        if let Some(ids) = state.followers.remove(&channel) {
            for id in ids {
                if let Some(session) = state.sessions.get_mut(&id) {
                    session.channels.remove(&channel);
                }
            }
        }
    }

    pub fn is_online(&self, user: u64) -> bool {
        self.state().by_user.contains_key(&user)
    }

    pub fn last_seen_ms(&self, user: u64) -> Option<u64> {
        self.state().last_seen_ms.get(&user).copied()
    }
}

/// Sends `event` once to each gateway, naming its sessions.
pub async fn deliver(targets: Targets, event: &LiveEvent) {
    metrics::counter!("chatmesh_dispatcher_events_total").increment(1);
    for (tx, session_ids) in targets {
        metrics::counter!("chatmesh_dispatcher_deliveries_total").increment(session_ids.len() as u64);
        let delivery =
            AttachResponse { command: Some(Command::Delivery(Delivery { session_ids, event: Some(event.clone()) })) };
        // why: a gateway that went away is detached by its own stream's end.
        let _ = tx.send(Ok(delivery)).await;
    }
}

/// WebSocket close codes the dispatcher asks for (see docs/websocket.md).
/// Reconnect and resume (the server could not guarantee live delivery for a while).
pub const CLOSE_RECONNECT: u32 = 1012;
pub const CLOSE_LOGGED_OUT: u32 = 4003;
pub const CLOSE_CHANNEL_LEFT: u32 = 4004;

/// Asks gateways to close sessions.
pub async fn close(targets: Targets, close_code: u32, reason: &str) {
    for (tx, session_ids) in targets {
        for session_id in session_ids {
            let close = CloseSession { session_id, reason: reason.to_owned(), close_code };
            let _ = tx.send(Ok(AttachResponse { command: Some(Command::CloseSession(close)) })).await;
        }
    }
}
