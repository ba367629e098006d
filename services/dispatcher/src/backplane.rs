//! The Redis backplane between dispatchers: every event published to one dispatcher is
//! published on its channel's Redis pub/sub channel, and each dispatcher — the publishing one
//! too — delivers what its subscriptions bring, so an event reaches every gateway following it
//! whichever dispatcher it entered, and every session sees one channel's events in one order.
//!
//! Pub/sub is at-most-once, so it is never the only copy: the event log is. Publishing fails
//! open after a short timeout (a slow Redis never blocks a send), and when the subscription
//! connection is lost the dispatcher is told (`Remote::Gap`), so it can send its sessions back to
//! the log to catch up — never a silent gap.
//!
//! Control messages every dispatcher hears (logout, gap notices, events addressed to users
//! rather than to a channel's followers) go on one control channel.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chatmesh_api::{
    chat::v1::ChannelEvent,
    dispatcher::v1::{DisconnectUserRequest, LiveEvent},
};
use chatmesh_platform::{redis_keys, shutdown::CancellationToken};
use futures::StreamExt;
use prost::Message;
use redis::{AsyncCommands, aio::ConnectionManager};
use tokio::sync::{mpsc, oneshot};

/// What dispatchers tell each other.
#[derive(Debug, Clone, PartialEq)]
pub enum Remote {
    /// A committed channel event, delivered like a local publish.
    Event(ChannelEvent),
    /// An ephemeral event (typing, presence) for a channel's followers but one user.
    Ephemeral { channel: u64, except_user: u64, event: LiveEvent },
    /// Close a user's sessions (logout).
    Disconnect(DisconnectUserRequest),
    /// An event for every session of these users (a feed event), wherever they are connected.
    Users { users: Vec<u64>, event: LiveEvent },
    /// Events may have been missed (a lost subscription, or a dispatcher that could not publish).
    Gap,
}

const EVENT: u8 = 0;
const EPHEMERAL: u8 = 1;
const DISCONNECT: u8 = 2;
const GAP: u8 = 3;
const USERS: u8 = 4;

/// A message on the backplane: the publishing dispatcher's id (so it skips its own), a kind,
/// and the message.
fn envelope(origin: u64, message: &Remote) -> Vec<u8> {
    let mut bytes = origin.to_be_bytes().to_vec();
    match message {
        Remote::Event(event) => {
            bytes.push(EVENT);
            event.encode(&mut bytes).expect("a Vec grows as needed");
        }
        Remote::Ephemeral { channel, except_user, event } => {
            bytes.push(EPHEMERAL);
            bytes.extend_from_slice(&channel.to_be_bytes());
            bytes.extend_from_slice(&except_user.to_be_bytes());
            event.encode(&mut bytes).expect("a Vec grows as needed");
        }
        Remote::Disconnect(request) => {
            bytes.push(DISCONNECT);
            request.encode(&mut bytes).expect("a Vec grows as needed");
        }
        Remote::Gap => bytes.push(GAP),
        Remote::Users { users, event } => {
            bytes.push(USERS);
            let count = u32::try_from(users.len()).expect("at most 1,000 users per request");
            bytes.extend_from_slice(&count.to_be_bytes());
            users.iter().for_each(|user| bytes.extend_from_slice(&user.to_be_bytes()));
            event.encode(&mut bytes).expect("a Vec grows as needed");
        }
    }
    bytes
}

fn open(bytes: &[u8]) -> Option<(u64, Remote)> {
    let (origin, rest) = bytes.split_at_checked(8)?;
    let origin = u64::from_be_bytes(origin.try_into().ok()?);
    let (kind, body) = rest.split_first()?;
    let message = match *kind {
        EVENT => Remote::Event(ChannelEvent::decode(body).ok()?),
        EPHEMERAL => {
            let (channel, rest) = body.split_at_checked(8)?;
            let (except, event) = rest.split_at_checked(8)?;
            Remote::Ephemeral {
                channel: u64::from_be_bytes(channel.try_into().ok()?),
                except_user: u64::from_be_bytes(except.try_into().ok()?),
                event: LiveEvent::decode(event).ok()?,
            }
        }
        DISCONNECT => Remote::Disconnect(DisconnectUserRequest::decode(body).ok()?),
        GAP => Remote::Gap,
        USERS => {
            let (count, rest) = body.split_at_checked(4)?;
            let count = u32::from_be_bytes(count.try_into().ok()?) as usize;
            let (users, event) = rest.split_at_checked(count.checked_mul(8)?)?;
            Remote::Users {
                users: users
                    .chunks_exact(8)
                    .map(|user| u64::from_be_bytes(user.try_into().expect("8 bytes")))
                    .collect(),
                event: LiveEvent::decode(event).ok()?,
            }
        }
        _ => return None,
    };
    Some((origin, message))
}

/// Longest wait for Redis to confirm a subscription before a session is refused.
const FOLLOW_WAIT: Duration = Duration::from_secs(5);

enum Command {
    Follow(Vec<u64>, oneshot::Sender<()>),
    Unfollow(Vec<u64>),
}

/// One process's side of the backplane.
pub struct RedisBackplane {
    origin: u64,
    publisher: ConnectionManager,
    commands: mpsc::UnboundedSender<Command>,
    timeout: Duration,
    /// Channels subscribed (or being subscribed) to.
    followed: Mutex<HashSet<u64>>,
    /// A publish failed: other dispatchers may have missed it until a gap notice goes out.
    failed: AtomicBool,
}

impl std::fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackplane").field("origin", &self.origin).finish_non_exhaustive()
    }
}

/// What the backplane hands the dispatcher: what other dispatchers sent, in order, with
/// `Remote::Gap` whenever events may have been missed.
pub struct Inbound {
    pub messages: mpsc::Receiver<Remote>,
}

impl RedisBackplane {
    /// Joins through `redis` and starts the subscription task (until `shutdown`). Every Redis call
    /// on a request path is bounded by `timeout`.
    pub fn connect(
        redis: &chatmesh_platform::redis_pool::Redis,
        timeout: Duration,
        shutdown: CancellationToken,
    ) -> (Arc<Self>, Inbound) {
        let (client, publisher) = (redis.client.clone(), redis.manager.clone());
        let (commands, rx) = mpsc::unbounded_channel();
        let (messages_tx, messages) = mpsc::channel(4096);
        let origin = rand::random::<u64>();
        tokio::spawn(subscribe_loop(client, origin, rx, messages_tx, shutdown.clone()));
        let backplane = Arc::new(Self {
            origin,
            publisher,
            commands,
            timeout,
            followed: Mutex::new(HashSet::new()),
            failed: AtomicBool::new(false),
        });
        tokio::spawn(announce_gaps(Arc::downgrade(&backplane), shutdown));
        (backplane, Inbound { messages })
    }

    /// After failed publishes, tells the other dispatchers (once Redis answers) that they may
    /// have missed events.
    async fn announce_gap(&self) {
        if !self.failed.load(Ordering::Acquire) {
            return;
        }
        let mut connection = self.publisher.clone();
        let notice = connection.publish::<_, _, ()>(redis_keys::live_control(), envelope(self.origin, &Remote::Gap));
        if let Ok(Ok(())) = tokio::time::timeout(self.timeout, notice).await {
            self.failed.store(false, Ordering::Release);
            tracing::info!("backplane publishing restored; other dispatchers told to resync their sessions");
        }
    }

    /// Publishes a channel event to the other dispatchers.
    ///
    /// Channel events are delivered from the subscription only — by every dispatcher, this one
    /// included — so each channel has one order everywhere: the order Redis executed the
    /// PUBLISHes in. Not published, an event is an error for the caller to retry (the chat
    /// service's feed delivery does; sends never wait on it).
    pub async fn publish(&self, channel: u64, event: &ChannelEvent) -> Result<(), String> {
        let mut connection = self.publisher.clone();
        let message = envelope(self.origin, &Remote::Event(event.clone()));
        let sent = connection.publish::<_, _, ()>(redis_keys::live_channel(channel), message);
        match tokio::time::timeout(self.timeout, sent).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("the backplane refused the event: {e}")),
            Err(_) => Err("the backplane did not answer in time".into()),
        }
    }

    /// Publishes an ephemeral event (typing, presence) for a channel's followers but one user.
    pub async fn publish_ephemeral(&self, channel: u64, except_user: u64, event: &LiveEvent) {
        let message = Remote::Ephemeral { channel, except_user, event: event.clone() };
        self.send(redis_keys::live_channel(channel), &message).await;
    }

    /// Asks every other dispatcher to close a user's sessions.
    pub async fn disconnect(&self, request: &DisconnectUserRequest) {
        self.send(redis_keys::live_control().to_owned(), &Remote::Disconnect(request.clone())).await;
    }

    /// Asks every other dispatcher to hand `event` to its sessions of `users`. Best effort, like
    /// typing and presence: a failure is followed by a gap notice once Redis answers again.
    pub async fn publish_to_users(&self, users: Vec<u64>, event: LiveEvent) {
        self.send(redis_keys::live_control().to_owned(), &Remote::Users { users, event }).await;
    }

    /// Publishes on `key`; fails open (logged once per failure streak) after the timeout.
    async fn send(&self, key: String, message: &Remote) {
        let mut connection = self.publisher.clone();
        let channel = key.clone();
        let sent =
            tokio::time::timeout(self.timeout, connection.publish::<_, _, ()>(key, envelope(self.origin, message)));
        let failure = match sent.await {
            Ok(Ok(())) => return self.announce_gap().await,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        // why: log a failure streak once; the gap notice tells the others when it ends.
        if !self.failed.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                channel,
                error = failure,
                "backplane publish failed; other dispatchers will be told to resync"
            );
        }
    }

    /// Subscribes to `channels` and waits until Redis confirmed (at most [`FOLLOW_WAIT`]), so a
    /// session is ready only once events of its channels reach this dispatcher. SUBSCRIBE is
    /// idempotent, and commands run in order: a confirmation also covers an earlier, still
    /// pending subscription of the same channel. Returns whether it was confirmed.
    pub async fn follow(&self, channels: impl IntoIterator<Item = u64>) -> bool {
        let channels: Vec<u64> = {
            let mut followed = self.followed.lock().unwrap_or_else(|e| e.into_inner());
            channels
                .into_iter()
                .inspect(|c| {
                    followed.insert(*c);
                })
                .collect()
        };
        if channels.is_empty() {
            return true;
        }
        let (done, confirmed) = oneshot::channel();
        if self.commands.send(Command::Follow(channels, done)).is_err() {
            return false;
        }
        match tokio::time::timeout(FOLLOW_WAIT, confirmed).await {
            Ok(Ok(())) => true,
            _ => {
                tracing::warn!("backplane subscription not confirmed; the session is refused");
                false
            }
        }
    }

    /// Stops following the channels not in `keep()` (nobody here follows them any more).
    /// `keep` is read under the same lock `follow` takes, so a session registered before its
    /// `follow` either keeps its channels here or re-subscribes them after this unsubscribe.
    pub fn retain(&self, keep: impl FnOnce() -> HashSet<u64>) {
        let gone: Vec<u64> = {
            let mut followed = self.followed.lock().unwrap_or_else(|e| e.into_inner());
            let keep = keep();
            let gone = followed.iter().filter(|c| !keep.contains(c)).copied().collect();
            followed.retain(|c| keep.contains(c));
            gone
        };
        if !gone.is_empty() {
            let _ = self.commands.send(Command::Unfollow(gone));
        }
    }
}

/// Retries the gap notice every second while publishing is failing.
async fn announce_gaps(backplane: std::sync::Weak<RedisBackplane>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let Some(backplane) = backplane.upgrade() else { return };
        backplane.announce_gap().await;
    }
}

/// Keeps one subscription connection: (re)connects with backoff, re-subscribes to every
/// followed channel, forwards other dispatchers' events, and reports each loss as a gap.
async fn subscribe_loop(
    client: redis::Client,
    origin: u64,
    mut commands: mpsc::UnboundedReceiver<Command>,
    messages: mpsc::Sender<Remote>,
    shutdown: CancellationToken,
) {
    let mut followed: HashSet<u64> = HashSet::new();
    let mut backoff = Duration::from_millis(100);
    let mut connected_before = false;
    loop {
        let connection = tokio::select! {
            () = shutdown.cancelled() => return,
            c = client.get_async_pubsub() => c,
        };
        let (mut sink, mut stream) = match connection {
            Ok(pubsub) => pubsub.split(),
            Err(e) => {
                tracing::warn!(error = %e, "backplane subscription: cannot connect; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let mut keys: Vec<String> = followed.iter().map(|c| redis_keys::live_channel(*c)).collect();
        keys.push(redis_keys::live_control().to_owned());
        if sink.subscribe(keys).await.is_err() {
            continue;
        }
        if connected_before {
            tracing::info!("backplane subscription restored");
            // why: whatever was published while it was down never arrived here.
            let _ = messages.send(Remote::Gap).await;
        }
        connected_before = true;
        backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                command = commands.recv() => match command {
                    Some(Command::Follow(channels, done)) => {
                        followed.extend(&channels);
                        let keys: Vec<String> = channels.iter().map(|c| redis_keys::live_channel(*c)).collect();
                        if sink.subscribe(keys).await.is_err() {
                            break;
                        }
                        let _ = done.send(());
                    }
                    Some(Command::Unfollow(channels)) => {
                        channels.iter().for_each(|c| { followed.remove(c); });
                        let keys: Vec<String> = channels.iter().map(|c| redis_keys::live_channel(*c)).collect();
                        if sink.unsubscribe(keys).await.is_err() {
                            break;
                        }
                    }
                    None => return,
                },
                message = stream.next() => match message {
                    Some(message) => match open(message.get_payload_bytes()) {
                        // why: this dispatcher's own channel events come back here, in Redis's
                        // order; its own ephemeral and control messages were handled locally.
                        Some((from, remote)) if from == origin && !matches!(remote, Remote::Event(_)) => {}
                        Some((_, remote)) => {
                            let _ = messages.send(remote).await;
                        }
                        None => tracing::warn!(channel = message.get_channel_name(), "undecodable backplane message"),
                    },
                    None => break,
                },
            }
        }
        tracing::warn!("backplane subscription lost; reconnecting (sessions catch up once it is back)");
    }
}

#[cfg(test)]
mod tests {
    use chatmesh_api::{
        dispatcher::v1::{FeedEvent, FeedEventType, live_event},
        feed::v1::Status,
    };

    use super::*;

    #[test]
    fn envelopes_carry_their_origin_and_message() {
        let event = ChannelEvent { event_id: "5".into(), channel_id: "7".into(), ..Default::default() };
        let status = Status { status_id: "3".into(), text: "hi".into(), ..Default::default() };
        let status = prost_types::Any {
            type_url: "type.googleapis.com/chatmesh.feed.v1.Status".into(),
            value: status.encode_to_vec(),
        };
        let feed = FeedEvent { r#type: FeedEventType::StatusCreated as i32, status: Some(status) };
        let feed_event = LiveEvent { event: Some(live_event::Event::FeedEvent(feed)) };
        let messages = [
            Remote::Event(event),
            Remote::Ephemeral { channel: 7, except_user: 9, event: LiveEvent::default() },
            Remote::Disconnect(DisconnectUserRequest { user_id: "9".into(), login_session_id: "s".into() }),
            Remote::Gap,
            Remote::Users { users: vec![9, u64::MAX, 1], event: feed_event },
            Remote::Users { users: Vec::new(), event: LiveEvent::default() },
        ];
        for message in messages {
            assert_eq!(open(&envelope(42, &message)), Some((42, message)));
        }
        assert_eq!(open(b"short"), None);
        assert_eq!(open(&[0, 0, 0, 0, 0, 0, 0, 1, 99]), None, "an unknown kind");
        let users = envelope(42, &Remote::Users { users: vec![9, 10], event: LiveEvent::default() });
        assert_eq!(open(&users[..users.len() - 1]), None, "fewer users than counted");
        assert_eq!(open(&[0, 0, 0, 0, 0, 0, 0, 1, USERS, 255, 255, 255, 255]), None, "a count past the end");
    }
}
