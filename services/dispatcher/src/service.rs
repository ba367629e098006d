//! The tonic handlers of DispatcherService (presence, typing) and DispatcherInternalService
//! (publish, attach, disconnect).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chatmesh_api::{
    channel::v1::ChannelKind,
    chat::v1::{ChannelEvent, EventType, channel_event::Payload},
    dispatcher::v1::{
        self as pb, AttachRequest, AttachResponse, LiveEvent, Presence, PresenceStatus, SessionReady, Typing,
        attach_response::Command as Down, dispatcher_internal_service_server::DispatcherInternalService,
        dispatcher_service_server::DispatcherService, live_event::Event,
    },
};
use chatmesh_platform::{
    auth::user_of,
    error::status_with_reason,
    ids::{now_ms, timestamp},
    membership::{MembershipClient, Refusal},
};
use chatmesh_wire::dispatcher::{self as wire, Attach};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::{
    backplane::{Inbound, RedisBackplane, Remote},
    hub::{self, GatewayTx, Hub},
    presence::RedisPresence,
};

/// What joins a dispatcher to the others of the mesh.
pub struct Cluster {
    pub backplane: Arc<RedisBackplane>,
    pub inbound: Inbound,
    pub presence: RedisPresence,
}

/// The stream type the generated trait expects for Attach.
type AttachStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<AttachResponse, Status>> + Send + 'static>>;

/// How long a typing notice lasts on clients.
const TYPING_TTL: Duration = Duration::from_secs(8);
/// At most one typing notice per user and channel this often.
const TYPING_EVERY: Duration = Duration::from_secs(3);
const GATEWAY_QUEUE: usize = 4096;
/// Why sessions are sent to resume after live delivery may have missed events.
const INTERRUPTED: &str = "live delivery was interrupted; resume";

struct Core {
    hub: Hub,
    membership: MembershipClient,
    /// Receipts, typing and presence fan out only in direct channels and groups up to this size.
    small_channel_max: u32,
    gateways: AtomicU64,
    /// Per channel, the membership epoch its followers were last checked at.
    verified: Mutex<HashMap<u64, u64>>,
    typing: Mutex<HashMap<(u64, u64), Instant>>,
    /// Other dispatchers, when the mesh spans processes.
    backplane: Option<Arc<RedisBackplane>>,
    presence: Option<RedisPresence>,
}

/// DispatcherService: the public surface.
#[derive(Clone)]
pub struct DispatcherApi {
    core: Arc<Core>,
}

/// DispatcherInternalService: publish and attach (service principals only).
#[derive(Clone)]
pub struct DispatcherInternalApi {
    core: Arc<Core>,
}

impl DispatcherApi {
    /// A dispatcher; with `cluster`, joined to the others: what they send is delivered here,
    /// presence is shared, and after a possible gap every session here is sent to resume.
    pub fn new(
        membership: MembershipClient,
        small_channel_max: u32,
        cluster: Option<Cluster>,
    ) -> (Self, DispatcherInternalApi) {
        let (backplane, inbound, presence) = match cluster {
            Some(Cluster { backplane, inbound, presence }) => (Some(backplane), Some(inbound), Some(presence)),
            None => (None, None, None),
        };
        let core = Arc::new(Core {
            hub: Hub::default(),
            membership,
            small_channel_max,
            gateways: AtomicU64::new(1),
            verified: Mutex::new(HashMap::new()),
            typing: Mutex::new(HashMap::new()),
            backplane,
            presence,
        });
        if let Some(Inbound { mut messages }) = inbound {
            let receiver = core.clone();
            tokio::spawn(async move {
                while let Some(message) = messages.recv().await {
                    receiver.remote(message).await;
                }
            });
            let keeper = Arc::downgrade(&core);
            tokio::spawn(async move {
                let every = keeper.upgrade().and_then(|c| c.presence.as_ref().map(RedisPresence::heartbeat));
                let mut every = tokio::time::interval(every.unwrap_or(Duration::from_secs(10)));
                let mut pruned = Instant::now();
                loop {
                    every.tick().await;
                    let Some(core) = keeper.upgrade() else { return };
                    if let Some(presence) = &core.presence {
                        presence.refresh(&core.hub.online_users()).await;
                    }
                    // why: unsubscribing lazily keeps churn low; an event for a channel nobody
                    // here follows is simply not delivered.
                    if pruned.elapsed() >= Duration::from_secs(30)
                        && let Some(backplane) = &core.backplane
                    {
                        backplane.retain(|| core.hub.followed_channels());
                        pruned = Instant::now();
                    }
                }
            });
        }
        (Self { core: core.clone() }, DispatcherInternalApi { core })
    }
}

fn refusal(channel_id: u64, refusal: Refusal) -> Status {
    match refusal {
        Refusal::NotFound => status_with_reason(
            Code::NotFound,
            format!("channel {channel_id} not found"),
            "CHANNEL_NOT_FOUND",
            &[("channel_id", channel_id.to_string())],
        ),
        Refusal::NotAMember => status_with_reason(
            Code::PermissionDenied,
            format!("only members of channel {channel_id} may do this"),
            "NOT_A_MEMBER",
            &[("channel_id", channel_id.to_string())],
        ),
    }
}

impl Core {
    /// Before delivering in `channel`: if its membership changed since its followers were last
    /// checked, drop the followers who are no longer members (so a kicked user gets nothing
    /// sent after the kick returned).
    async fn verify_followers(&self, channel: u64) -> Result<(), Status> {
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
            if !(answer.channel_exists && answer.is_member) {
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
        match self.membership.check(channel, user).await {
            Ok(answer) => {
                answer.channel_exists
                    && (answer.kind() == ChannelKind::Direct
                        || (answer.kind() == ChannelKind::Group
                            && answer.member_count as u32 <= self.small_channel_max))
            }
            Err(_) => false,
        }
    }

    /// Delivers one committed event of `channel` (its `channel_id`, already checked).
    async fn publish(&self, channel: u64, event: ChannelEvent) -> Result<(), Status> {
        if event.r#type() == EventType::ChannelDeleted {
            // why: the channel is gone, so verification would unfollow everyone before they hear it.
            let live = LiveEvent { event: Some(Event::ChannelEvent(event)) };
            hub::deliver(self.hub.targets(channel, None), &live).await;
            self.hub.drop_channel(channel);
            self.unverify(channel);
            return Ok(());
        }
        self.verify_followers(channel).await?;
        let subject = match &event.payload {
            Some(Payload::Member(member)) => member.user_id.parse::<u64>().ok(),
            _ => None,
        };
        let kind = event.r#type();
        let actor = event.actor_id.parse::<u64>().unwrap_or(0);
        let live = LiveEvent { event: Some(Event::ChannelEvent(event)) };
        match (kind, subject) {
            (EventType::MemberJoined, Some(user)) => {
                // why: the event may trail a later kick; follow only a current member.
                if self.membership.check(channel, user).await.is_ok_and(|a| a.channel_exists && a.is_member) {
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
            (EventType::MemberLeft, Some(user)) => {
                // why: the leaver hears of it on each device that followed the channel, members once each.
                hub::deliver(self.hub.targets(channel, Some(user)), &live).await;
                hub::deliver(self.hub.user_targets_in(user, channel), &live).await;
                self.unfollow(user, channel).await;
            }
            (EventType::ChatAcked, _) => {
                if self.is_small(channel, actor).await {
                    hub::deliver(self.hub.targets(channel, None), &live).await;
                }
            }
            _ => hub::deliver(self.hub.targets(channel, None), &live).await,
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
            if elsewhere == Some(true) {
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
        let presence = Presence {
            user_id: user.to_string(),
            status: if online { PresenceStatus::Online } else { PresenceStatus::Offline } as i32,
            last_seen_at: if online { None } else { Some(timestamp(now_ms())) },
        };
        let live = LiveEvent { event: Some(Event::Presence(presence)) };
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

    async fn open_session(&self, gateway: u64, tx: &GatewayTx, opened: wire::SessionOpened) -> Result<(), Status> {
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
        let result = match wire::attach(&request) {
            Err(refused) => Err(refused),
            Ok(Attach::SessionOpened(opened)) => self.open_session(gateway, tx, opened).await,
            Ok(Attach::SessionClosed { session_id }) => {
                if let Some(user) = self.hub.close_session(&session_id, now_ms()) {
                    self.local_presence(user, false).await;
                }
                Ok(())
            }
            Ok(Attach::FollowChanged) => Err(Status::unimplemented("follow_changed: sessions follow their channels")),
            Ok(Attach::Empty) => Ok(()),
        };
        if let Err(status) = result {
            tracing::warn!(gateway, error = %status, "attach command refused");
        }
    }
}

#[tonic::async_trait]
impl DispatcherInternalService for DispatcherInternalApi {
    async fn publish(&self, request: Request<pb::PublishRequest>) -> Result<Response<pb::PublishResponse>, Status> {
        // why: the whole batch is checked before any event goes out, so a refused batch delivers nothing.
        let valid = wire::publish(request.get_ref())?;
        for (event, channel) in request.into_inner().events.into_iter().zip(valid.channel_ids) {
            match &self.core.backplane {
                // why: delivered here from the subscription, like everywhere else (one order).
                Some(backplane) => backplane.publish(channel, &event).await.map_err(Status::unavailable)?,
                None => self.core.publish(channel, event).await?,
            }
        }
        Ok(Response::new(pb::PublishResponse {}))
    }

    async fn attach(&self, request: Request<Streaming<AttachRequest>>) -> Result<Response<AttachStream>, Status> {
        let gateway = self.core.gateways.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(GATEWAY_QUEUE);
        self.core.hub.attach(gateway, tx.clone());
        let mut inbound = request.into_inner();
        let core = self.core.clone();
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
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn disconnect_user(
        &self,
        request: Request<pb::DisconnectUserRequest>,
    ) -> Result<Response<pb::DisconnectUserResponse>, Status> {
        let valid = wire::disconnect_user(request.get_ref())?;
        self.core.disconnect(&valid).await;
        if let Some(backplane) = &self.core.backplane {
            backplane.disconnect(request.get_ref()).await;
        }
        Ok(Response::new(pb::DisconnectUserResponse {}))
    }
}

#[tonic::async_trait]
impl DispatcherService for DispatcherApi {
    async fn get_presence(
        &self,
        request: Request<pb::GetPresenceRequest>,
    ) -> Result<Response<pb::GetPresenceResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let valid = wire::get_presence(request.get_ref())?;
        let core = &self.core;
        let mine: HashSet<u64> = core.membership.channels_of(caller).await?.into_iter().collect();
        let mut presences = Vec::with_capacity(valid.user_ids.len());
        // why: each presence names the user as the caller wrote the id, so the raw strings ride along.
        for (raw, user) in request.into_inner().user_ids.into_iter().zip(valid.user_ids) {
            let shares = user == caller || core.membership.channels_of(user).await?.iter().any(|c| mine.contains(c));
            // why: presence is shown only to people who share a channel; others see OFFLINE.
            let online = shares && core.is_online(user).await;
            presences.push(Presence {
                user_id: raw,
                status: if online { PresenceStatus::Online } else { PresenceStatus::Offline } as i32,
                last_seen_at: if shares && !online { core.last_seen_ms(user).await.map(timestamp) } else { None },
            });
        }
        Ok(Response::new(pb::GetPresenceResponse { presences }))
    }

    async fn send_typing(
        &self,
        request: Request<pb::SendTypingRequest>,
    ) -> Result<Response<pb::SendTypingResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let wire::SendTyping { channel_id: channel } = wire::send_typing(request.get_ref())?;
        let core = &self.core;
        if let Err(refused) = core.membership.require_member(channel, caller).await? {
            return Err(refusal(channel, refused));
        }
        {
            let mut typing = core.typing.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if typing.get(&(caller, channel)).is_some_and(|last| now.duration_since(*last) < TYPING_EVERY) {
                return Ok(Response::new(pb::SendTypingResponse {}));
            }
            typing.retain(|_, last| now.duration_since(*last) < TYPING_EVERY);
            typing.insert((caller, channel), now);
        }
        if core.is_small(channel, caller).await {
            let typing = Typing {
                channel_id: channel.to_string(),
                user_id: caller.to_string(),
                expires_at: Some(timestamp(now_ms() + TYPING_TTL.as_millis() as u64)),
            };
            let live = LiveEvent { event: Some(Event::Typing(typing)) };
            hub::deliver(core.hub.targets(channel, Some(caller)), &live).await;
            if let Some(backplane) = &core.backplane {
                backplane.publish_ephemeral(channel, caller, &live).await;
            }
        }
        Ok(Response::new(pb::SendTypingResponse {}))
    }
}
