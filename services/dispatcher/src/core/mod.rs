//! The dispatcher's operations: delivering committed events to the sessions that follow their
//! channel (and feed events to the sessions of the users they name), registering gateways'
//! sessions, presence and typing. The decisions they ask are in [`rules`]; the handlers in
//! `service.rs` only translate.

pub mod rules;
mod subscribe;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chatmesh_api::{
    chat::v1::ChannelEvent,
    dispatcher::v1::{
        self as pb, AttachRequest, AttachResponse, LiveEvent, Presence, SessionReady, attach_response::Command as Down,
        live_event::Event,
    },
};
use chatmesh_platform::{ids::now_ms, membership::MembershipClient};
use chatmesh_wire::dispatcher::{self as wire, Attach};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tonic::Status;

use self::rules::{Delivery, TypingThrottle};
use crate::{
    backplane::{Inbound, RedisBackplane, Remote},
    error::DispatcherError,
    hub::{self, GatewayTx, Hub},
    presence::RedisPresence,
};

/// What joins a dispatcher to the others of the mesh.
pub struct Cluster {
    pub backplane: Arc<RedisBackplane>,
    pub inbound: Inbound,
    pub presence: RedisPresence,
}

const GATEWAY_QUEUE: usize = 4096;
/// Why sessions are sent to resume after live delivery may have missed events.
const INTERRUPTED: &str = "live delivery was interrupted; resume";

/// The dispatcher's state and operations.
pub struct DispatcherCore {
    hub: Hub,
    membership: MembershipClient,
    /// Receipts, typing and presence fan out only in direct channels and groups up to this size.
    small_channel_max: u32,
    gateways: AtomicU64,
    /// Per channel, the membership epoch its followers were last checked at.
    verified: Mutex<HashMap<u64, u64>>,
    typing: Mutex<TypingThrottle>,
    /// Other dispatchers, when the mesh spans processes.
    backplane: Option<Arc<RedisBackplane>>,
    presence: Option<RedisPresence>,
    /// Per user, the subscriptions held here.
    subscriptions: Mutex<HashMap<u64, usize>>,
}

impl DispatcherCore {
    /// A dispatcher; with `cluster`, joined to the others: what they send is delivered here,
    /// presence is shared, and after a possible gap every session here is sent to resume.
    pub fn start(membership: MembershipClient, small_channel_max: u32, cluster: Option<Cluster>) -> Arc<Self> {
        let (backplane, inbound, presence) = match cluster {
            Some(Cluster { backplane, inbound, presence }) => (Some(backplane), Some(inbound), Some(presence)),
            None => (None, None, None),
        };
        let core = Arc::new(Self {
            hub: Hub::default(),
            membership,
            small_channel_max,
            gateways: AtomicU64::new(1),
            verified: Mutex::new(HashMap::new()),
            typing: Mutex::new(TypingThrottle::default()),
            backplane,
            presence,
            subscriptions: Mutex::new(HashMap::new()),
        });
        if let Some(Inbound { mut messages }) = inbound {
            let receiver = core.clone();
            tokio::spawn(async move {
                while let Some(message) = messages.recv().await {
                    receiver.remote(message).await;
                }
            });
            tokio::spawn(Self::keep_cluster(Arc::downgrade(&core)));
        }
        core
    }

    /// Refreshes this dispatcher's presence claims and prunes its backplane subscriptions,
    /// until the dispatcher is dropped.
    async fn keep_cluster(keeper: std::sync::Weak<Self>) {
        let every = keeper.upgrade().and_then(|c| c.presence.as_ref().map(RedisPresence::heartbeat));
        let mut every = tokio::time::interval(every.unwrap_or(Duration::from_secs(10)));
        let mut pruned = Instant::now();
        loop {
            every.tick().await;
            let Some(core) = keeper.upgrade() else { return };
            if let Some(presence) = &core.presence {
                presence.refresh(&core.hub.online_users()).await;
            }
            // why: unsubscribing lazily keeps churn low; an event for a channel nobody here
            // follows is simply not delivered.
            if pruned.elapsed() >= Duration::from_secs(30)
                && let Some(backplane) = &core.backplane
            {
                backplane.retain(|| core.hub.followed_channels());
                pruned = Instant::now();
            }
        }
    }

    /// Delivers committed events (their channels already checked): through the backplane when
    /// there is one (so every dispatcher, this one included, delivers in one order), else here.
    pub async fn publish_all(&self, events: Vec<(u64, ChannelEvent)>) -> Result<(), DispatcherError> {
        for (channel, event) in events {
            match &self.backplane {
                Some(backplane) => backplane.publish(channel, &event).await.map_err(DispatcherError::Backplane)?,
                None => self.publish(channel, event).await?,
            }
        }
        Ok(())
    }

    /// Takes a gateway's stream of session commands; returns the stream of what goes down to it.
    pub fn attach<S>(self: &Arc<Self>, mut inbound: S) -> mpsc::Receiver<Result<AttachResponse, Status>>
    where
        S: Stream<Item = Result<AttachRequest, Status>> + Send + Unpin + 'static,
    {
        let gateway = self.gateways.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(GATEWAY_QUEUE);
        self.hub.attach(gateway, tx.clone());
        let core = self.clone();
        tokio::spawn(async move {
            while let Some(Ok(command)) = inbound.next().await {
                core.handle(gateway, &tx, command).await;
            }
            for user in core.hub.detach(gateway, now_ms()) {
                core.local_presence(user, false).await;
            }
            tracing::info!(gateway, "gateway detached");
        });
        tracing::info!(gateway, "gateway attached");
        rx
    }

    /// Closes a user's sessions (all, or one login session's) here and on every dispatcher.
    pub async fn disconnect_user(&self, valid: &wire::DisconnectUser, request: &pb::DisconnectUserRequest) {
        self.disconnect(valid).await;
        if let Some(backplane) = &self.backplane {
            backplane.disconnect(request).await;
        }
    }

    /// Hands a user-addressed event (a feed event, already checked) to every session of `users`:
    /// this dispatcher's at once, the others' through the backplane (best effort, like typing:
    /// these events are not logged, so there is no order across dispatchers to keep). Each
    /// gateway gets it once, naming all its sessions of those users.
    pub async fn publish_to_users(&self, users: Vec<u64>, event: LiveEvent) {
        if users.is_empty() {
            return;
        }
        hub::deliver(self.hub.users_targets(&users), &event).await;
        if let Some(backplane) = &self.backplane {
            backplane.publish_to_users(users, event).await;
        }
    }

    /// The presence of users as `caller` sees it; `users` pairs each id as written with its value.
    pub async fn presence_seen_by(
        &self,
        caller: u64,
        users: Vec<(String, u64)>,
    ) -> Result<Vec<Presence>, DispatcherError> {
        let mine: HashSet<u64> = self.membership.channels_of(caller).await?.into_iter().collect();
        let mut presences = Vec::with_capacity(users.len());
        for (raw, user) in users {
            let shares = user == caller || self.membership.channels_of(user).await?.iter().any(|c| mine.contains(c));
            // why: nothing is looked up for a user the caller may not see.
            let online = shares && self.is_online(user).await;
            let last_seen = if shares && !online { self.last_seen_ms(user).await } else { None };
            presences.push(rules::presence_as_seen(raw, shares, online, last_seen));
        }
        Ok(presences)
    }

    /// The presence of any users, with no check of who shares a channel: for a service that
    /// decided its caller may see them (a friends list). `users` pairs each id as written with
    /// its value.
    pub async fn presences(&self, users: Vec<(String, u64)>) -> Vec<Presence> {
        let mut presences = Vec::with_capacity(users.len());
        for (raw, user) in users {
            let online = self.is_online(user).await;
            let last_seen = if online { None } else { self.last_seen_ms(user).await };
            presences.push(rules::presence_as_seen(raw, true, online, last_seen));
        }
        presences
    }

    /// Tells `channel` that `caller` (a member who may write there) is typing, at most every
    /// few seconds.
    pub async fn send_typing(&self, caller: u64, channel: u64) -> Result<(), DispatcherError> {
        let answer = match self.membership.require_member(channel, caller).await? {
            Ok(answer) => answer,
            Err(refused) => return Err(DispatcherError::refused(channel, refused)),
        };
        rules::may_type(channel, answer.kind(), answer.role())?;
        let admitted = self.typing.lock().unwrap_or_else(|e| e.into_inner()).admit(caller, channel, Instant::now());
        if admitted && self.is_small(channel, caller).await {
            let live = rules::typing(channel, caller, now_ms());
            hub::deliver(self.hub.targets(channel, Some(caller)), &live).await;
            if let Some(backplane) = &self.backplane {
                backplane.publish_ephemeral(channel, caller, &live).await;
            }
        }
        Ok(())
    }

    /// Before delivering in `channel`: if its membership changed since its followers were last
    /// checked, drop the followers who are no longer members (so a kicked user gets nothing
    /// sent after the kick returned).
    async fn verify_followers(&self, channel: u64) -> Result<(), DispatcherError> {
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner()).get(&channel).copied();
        if verified.is_some_and(|epoch| self.membership.epochs().is_current(channel, epoch)) {
            return Ok(());
        }
        // why: the oldest epoch among the answers is what every follower was checked at; a
        // change landing mid-loop leaves it stale, so the next event checks again.
        let mut oldest: Option<u64> = None;
        for user in self.hub.following_users(channel) {
            let answer = self.membership.check(channel, user).await?;
            let epoch = answer.membership_epoch as u64;
            oldest = Some(oldest.map_or(epoch, |o| o.min(epoch)));
            if !rules::is_member(&answer) {
                self.unfollow(user, channel).await;
            }
        }
        if let Some(epoch) = oldest {
            self.verified.lock().unwrap_or_else(|e| e.into_inner()).insert(channel, epoch);
        }
        Ok(())
    }

    /// New followers were added to `channel` outside a verification: check it again next time.
    fn unverify(&self, channel: u64) {
        self.verified.lock().unwrap_or_else(|e| e.into_inner()).remove(&channel);
    }

    /// `user` no longer follows `channel`; sessions scoped to it alone are closed.
    async fn unfollow(&self, user: u64, channel: u64) {
        let scoped = self.hub.scoped_targets(user, channel);
        self.hub.unfollow(user, channel);
        hub::close(scoped, hub::CLOSE_CHANNEL_LEFT, "no longer a member of the channel").await;
    }

    /// Whether receipts, typing and presence fan out in `channel` (asked as `user`, a member).
    async fn is_small(&self, channel: u64, user: u64) -> bool {
        self.membership.check(channel, user).await.is_ok_and(|answer| rules::fans_out(&answer, self.small_channel_max))
    }

    /// Delivers one committed event of `channel` (its `channel_id`, already checked).
    async fn publish(&self, channel: u64, event: ChannelEvent) -> Result<(), DispatcherError> {
        let delivery = rules::delivery(&event);
        if delivery == Delivery::ChannelDeleted {
            // why: the channel is gone, so verification would unfollow everyone before they hear it.
            let live = LiveEvent { event: Some(Event::ChannelEvent(event)) };
            hub::deliver(self.hub.targets(channel, None), &live).await;
            self.hub.drop_channel(channel);
            self.unverify(channel);
            return Ok(());
        }
        self.verify_followers(channel).await?;
        let actor = event.actor_id.parse::<u64>().unwrap_or(0);
        let live = LiveEvent { event: Some(Event::ChannelEvent(event)) };
        match delivery {
            Delivery::Joined(user) => {
                // why: the event may trail a later kick; follow only a current member.
                if self.membership.check(channel, user).await.is_ok_and(|a| rules::is_member(&a)) {
                    self.hub.follow(user, channel);
                    self.unverify(channel);
                    if let Some(backplane) = &self.backplane
                        && !backplane.follow([channel]).await
                    {
                        hub::close(self.hub.user_targets_in(user, channel), hub::CLOSE_RECONNECT, "resume").await;
                    }
                }
                hub::deliver(self.hub.targets(channel, None), &live).await;
            }
            Delivery::Left(user) => {
                hub::deliver(self.hub.targets(channel, Some(user)), &live).await;
                hub::deliver(self.hub.user_targets_in(user, channel), &live).await;
                self.unfollow(user, channel).await;
            }
            Delivery::Receipt => {
                if self.is_small(channel, actor).await {
                    hub::deliver(self.hub.targets(channel, None), &live).await;
                }
            }
            Delivery::Followers | Delivery::ChannelDeleted => {
                hub::deliver(self.hub.targets(channel, None), &live).await;
            }
        }
        Ok(())
    }

    /// What another dispatcher sent.
    async fn remote(&self, message: Remote) {
        match message {
            Remote::Event(event) => {
                // why: what comes over the backplane is checked like a Publish request before delivery.
                let channel = match chatmesh_wire::validate::id("events.channel_id", &event.channel_id) {
                    Ok(channel) => channel,
                    Err(refused) => {
                        tracing::warn!(error = %refused, "a malformed event from the backplane was dropped");
                        return;
                    }
                };
                if let Err(e) = self.publish(channel, event).await {
                    // why: nobody retries a backplane message; the channel's sessions here
                    // resume from the event log instead of silently missing it.
                    tracing::warn!(channel, error = %e, "an event from the backplane was not delivered; sessions resume");
                    hub::close(self.hub.targets(channel, None), hub::CLOSE_RECONNECT, INTERRUPTED).await;
                }
            }
            Remote::Ephemeral { channel, except_user, event } => {
                hub::deliver(self.hub.targets(channel, Some(except_user)), &event).await;
            }
            Remote::Users { users, event } => {
                hub::deliver(self.hub.users_targets(&users), &event).await;
            }
            Remote::Disconnect(request) => {
                // why: checked like a DisconnectUser request; a malformed one closes nothing.
                if let Ok(valid) = wire::disconnect_user(&request) {
                    self.disconnect(&valid).await;
                }
            }
            Remote::Gap => {
                // why: events published while the backplane was broken never came; the sessions
                // reconnect and resume from the event log.
                hub::close(self.hub.all_targets(), hub::CLOSE_RECONNECT, INTERRUPTED).await;
            }
        }
    }

    /// Closes this dispatcher's sessions of a user (all, or one login session).
    async fn disconnect(&self, request: &wire::DisconnectUser) {
        let targets = self.hub.user_targets(request.user_id, request.login_session_id.as_deref());
        hub::close(targets, hub::CLOSE_LOGGED_OUT, "logged out").await;
    }

    /// A user's first session here opened, or their last one here closed: tell their small
    /// channels, unless another dispatcher still (or already) holds a session of theirs.
    async fn local_presence(&self, user: u64, online: bool) {
        if let Some(presence) = &self.presence {
            let elsewhere = if online { presence.claim(user).await } else { presence.release(user).await };
            if !rules::announces_presence(elsewhere) {
                return;
            }
        }
        self.presence_changed(user, online).await;
    }

    /// When `user` was last seen anywhere in the mesh (here, when Redis does not know).
    async fn last_seen_ms(&self, user: u64) -> Option<u64> {
        match &self.presence {
            Some(presence) => match presence.last_seen_ms(user).await {
                Some(seen) => Some(seen),
                None => self.hub.last_seen_ms(user),
            },
            None => self.hub.last_seen_ms(user),
        }
    }

    /// Whether `user` has a session anywhere in the mesh (here, when Redis does not answer).
    async fn is_online(&self, user: u64) -> bool {
        match &self.presence {
            Some(presence) => match presence.is_online(user).await {
                Some(online) => online,
                None => self.hub.is_online(user),
            },
            None => self.hub.is_online(user),
        }
    }

    /// Tells the user's small channels that they came online or went offline.
    async fn presence_changed(&self, user: u64, online: bool) {
        let live = rules::presence_change(user, online, now_ms());
        let Ok(channels) = self.membership.channels_of(user).await else { return };
        for channel in channels {
            if self.is_small(channel, user).await {
                hub::deliver(self.hub.targets(channel, Some(user)), &live).await;
                if let Some(backplane) = &self.backplane {
                    backplane.publish_ephemeral(channel, user, &live).await;
                }
            }
        }
    }

    async fn open_session(
        &self,
        gateway: u64,
        tx: &GatewayTx,
        opened: wire::SessionOpened,
    ) -> Result<(), DispatcherError> {
        let user = opened.user_id;
        let channels: HashSet<u64> = if opened.all_channels {
            self.membership.channels_of(user).await?.into_iter().collect()
        } else {
            let mut channels = HashSet::new();
            for &channel in &opened.channel_ids {
                if self.membership.require_member(channel, user).await?.is_ok() {
                    channels.insert(channel);
                }
            }
            channels
        };
        let ready = SessionReady {
            session_id: opened.session_id.clone(),
            channel_ids: channels.iter().map(u64::to_string).collect(),
        };
        let session_id = opened.session_id.clone();
        // why: registered first, so a concurrent prune of the backplane sees these channels.
        let came_online = self.hub.open_session(
            gateway,
            opened.session_id,
            user,
            opened.login_session_id,
            opened.all_channels,
            channels.clone(),
        );
        if let Some(backplane) = &self.backplane
            && !backplane.follow(channels.iter().copied()).await
        {
            // why: events of its channels could not reach it yet; rather no session than a gap.
            let close = pb::CloseSession {
                session_id: session_id.clone(),
                reason: "live delivery is not available yet; reconnect".into(),
                close_code: hub::CLOSE_RECONNECT,
            };
            let _ = tx.send(Ok(AttachResponse { command: Some(Down::CloseSession(close)) })).await;
            // why: it never came online (that is announced only after the follow), so it does
            // not go offline either.
            self.hub.close_session(&session_id, now_ms());
            return Ok(());
        }
        let _ = tx.send(Ok(AttachResponse { command: Some(Down::SessionReady(ready)) })).await;
        if came_online {
            self.local_presence(user, true).await;
        }
        Ok(())
    }

    async fn handle(&self, gateway: u64, tx: &GatewayTx, request: AttachRequest) {
        let command = match wire::attach(&request) {
            Ok(command) => command,
            Err(refused) => {
                tracing::warn!(gateway, error = %refused, "attach command refused");
                return;
            }
        };
        let result = match command {
            Attach::SessionOpened(opened) => self.open_session(gateway, tx, opened).await,
            Attach::SessionClosed { session_id } => {
                if let Some(user) = self.hub.close_session(&session_id, now_ms()) {
                    self.local_presence(user, false).await;
                }
                Ok(())
            }
            Attach::FollowChanged => Err(DispatcherError::FollowChangedUnsupported),
            Attach::Empty => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(gateway, error = %e, "attach command refused");
        }
    }
}

#[cfg(test)]
mod tests;
