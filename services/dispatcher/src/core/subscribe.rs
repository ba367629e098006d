//! Subscribe: a live stream straight to a gRPC client. Each stream is a gateway of its own to
//! the hub, holding one session, so whatever reaches a WebSocket session (channel events,
//! typing, presence, feed events, resyncs, closes) reaches it the same way.

use std::sync::{Arc, atomic::Ordering};

use chatmesh_api::dispatcher::v1::{AttachResponse, SubscribeResponse, attach_response::Command as Down};
use chatmesh_platform::ids::now_ms;
use chatmesh_wire::dispatcher::{self as wire, SubscribeFollow};
use tokio::sync::mpsc;
use tonic::Status;

use super::{DispatcherCore, rules};
use crate::error::DispatcherError;

/// Events queued for one subscriber; a client that stops reading slows its own stream only
/// until the queue is full, then the hub waits on it like on a slow gateway.
const SUBSCRIBER_QUEUE: usize = 256;
/// Subscriptions one user may hold on one dispatcher at once (as many as WebSocket sessions
/// per gateway).
const MAX_SUBSCRIPTIONS_PER_USER: usize = 16;

/// What a subscriber reads: its events, then at most one status that ends the stream.
pub type Subscription = mpsc::Receiver<Result<SubscribeResponse, Status>>;

impl DispatcherCore {
    /// Opens `caller`'s live stream (their login session `login_session`, so logout ends it).
    /// It is registered before this answers: nothing published after the answer is missed.
    pub async fn subscribe(
        self: &Arc<Self>,
        caller: u64,
        login_session: String,
        request: wire::Subscribe,
    ) -> Result<Subscription, DispatcherError> {
        if !request.last_event_ids.is_empty() {
            return Err(DispatcherError::ResumeUnsupported);
        }
        let (all_channels, channel_ids) = match request.follow {
            SubscribeFollow::AllChannels => (true, Vec::new()),
            SubscribeFollow::UserEventsOnly => (false, Vec::new()),
            SubscribeFollow::Channel(channel) => {
                if let Err(refused) = self.membership.require_member(channel, caller).await? {
                    return Err(DispatcherError::refused(channel, refused));
                }
                (false, vec![channel])
            }
        };
        let held = Held::take(self.clone(), caller)?;
        let gateway = self.gateways.fetch_add(1, Ordering::Relaxed);
        let (hub_tx, from_hub) = mpsc::channel(SUBSCRIBER_QUEUE);
        self.hub.attach(gateway, hub_tx.clone());
        let opened = wire::SessionOpened {
            session_id: format!("subscribe-{gateway}"),
            user_id: caller,
            login_session_id: login_session,
            all_channels,
            channel_ids,
        };
        let (out, subscription) = mpsc::channel(SUBSCRIBER_QUEUE);
        if let Err(e) = self.open_session(gateway, &hub_tx, opened).await {
            self.hub.detach(gateway, now_ms());
            return Err(e);
        }
        tokio::spawn(self.clone().pump(gateway, from_hub, out, held));
        Ok(subscription)
    }

    /// Passes what the hub sends the subscription's session on to its client until the client
    /// goes away or the session is closed; then forgets the session.
    async fn pump(
        self: Arc<Self>,
        gateway: u64,
        mut from_hub: mpsc::Receiver<Result<AttachResponse, Status>>,
        out: mpsc::Sender<Result<SubscribeResponse, Status>>,
        _held: Held,
    ) {
        loop {
            let command = tokio::select! {
                () = out.closed() => break,
                command = from_hub.recv() => command,
            };
            let Some(Ok(AttachResponse { command: Some(command) })) = command else { break };
            match command {
                Down::Delivery(delivery) => {
                    if out.send(Ok(SubscribeResponse { event: delivery.event })).await.is_err() {
                        break;
                    }
                }
                Down::CloseSession(close) => {
                    let _ = out.send(Err(rules::subscription_closed(&close))).await;
                    break;
                }
                Down::SessionReady(_) => {}
            }
        }
        for user in self.hub.detach(gateway, now_ms()) {
            self.local_presence(user, false).await;
        }
    }
}

/// One subscription counted against its user while it lives.
struct Held {
    core: Arc<DispatcherCore>,
    user: u64,
}

impl Held {
    fn take(core: Arc<DispatcherCore>, user: u64) -> Result<Self, DispatcherError> {
        let mut held = core.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(user).or_default();
        if *count >= MAX_SUBSCRIPTIONS_PER_USER {
            return Err(DispatcherError::TooManySubscriptions { max: MAX_SUBSCRIPTIONS_PER_USER });
        }
        *count += 1;
        drop(held);
        Ok(Self { core, user })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.core.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.user);
            }
        }
    }
}
