//! One WebSocket session: the client's frames translated to gRPC calls made with the user's
//! own token, and live events from the link written back — deduplicated per channel by event
//! id, with resume replaying the event log before the live events that arrived meanwhile.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use chatmesh_api::{
    chat::v1::{
        AckChatsRequest, ChannelEvent, GetUnreadCountsRequest, ListEventsRequest,
        chat_service_client::ChatServiceClient,
    },
    dispatcher::v1::{SendTypingRequest, SessionOpened, dispatcher_service_client::DispatcherServiceClient},
};
use chatmesh_platform::{grpc::GrpcChannel, ids::now_ms, shutdown::CancellationToken};
use chatmesh_wire::frames::ClientFrame;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{net::TcpStream, sync::mpsc, task::JoinHandle};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Message,
        protocol::{CloseFrame, frame::coding::CloseCode},
    },
};
use tonic::Request;

use crate::{
    Gateway,
    frames::{self, client, close, server},
    link::{Control, Frame, Registration},
    protocol,
};

/// Who connected, from the verified handshake.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user_id: u64,
    pub login_session: String,
    pub token: String,
    pub expires_at_secs: u64,
    /// Follow only this channel.
    pub channel_id: Option<u64>,
}

/// What the writer task is asked to do.
enum Out {
    Text(tokio_tungstenite::tungstenite::Utf8Bytes),
    Ping,
}

type Replay = Vec<(u64, Result<Vec<ChannelEvent>, &'static str>)>;

/// How long live frames are held after `ready` for a `resume` to come first.
const RESUME_WINDOW: Duration = Duration::from_millis(500);
/// Client-initiated calls in flight per connection.
const CALLS_IN_FLIGHT: usize = 8;

struct Session {
    gateway: Arc<Gateway>,
    calls: Arc<tokio::sync::Semaphore>,
    id: String,
    identity: Identity,
    out: mpsc::Sender<Out>,
    /// The last event id sent per channel: later duplicates and replays are dropped.
    last_sent: HashMap<u64, u64>,
    channels: HashSet<u64>,
    /// Live frames queued to this client (a handle, so the hot path does no metric lookup).
    delivered: metrics::Counter,
}

fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// How long a new session waits for the link to the dispatcher to be attached: steps × step.
const ATTACH_WAIT_STEPS: usize = 30;
const ATTACH_WAIT_STEP: Duration = Duration::from_millis(100);

/// Runs a session until it closes; returns once the socket is done.
pub async fn run(
    gateway: Arc<Gateway>,
    socket: WebSocketStream<TcpStream>,
    identity: Identity,
    shutdown: CancellationToken,
) {
    let session_id = uuid::Uuid::new_v4().simple().to_string();
    let opened = SessionOpened {
        session_id: session_id.clone(),
        user_id: identity.user_id.to_string(),
        login_session_id: identity.login_session.clone(),
        channel_ids: identity.channel_id.iter().map(u64::to_string).collect(),
        all_channels: identity.channel_id.is_none(),
    };
    let (mut sink, stream) = socket.split();
    // why: while the link re-attaches (a dispatcher restarted), wait briefly rather than send
    // the client straight back into a reconnect loop.
    let mut registration = gateway.link.open(opened.clone(), gateway.settings.send_queue);
    for _ in 0..ATTACH_WAIT_STEPS {
        if registration.is_ok() || shutdown.is_cancelled() {
            break;
        }
        tokio::time::sleep(ATTACH_WAIT_STEP).await;
        registration = gateway.link.open(opened.clone(), gateway.settings.send_queue);
    }
    let registration = match registration {
        Ok(registration) => registration,
        Err(e) => {
            tracing::warn!(error = %e, "session refused");
            let frame = CloseFrame { code: CloseCode::from(close::RECONNECT), reason: "dispatcher unavailable".into() };
            let _ = sink.send(Message::Close(Some(frame))).await;
            return;
        }
    };
    let (out_tx, out_rx) = mpsc::channel(gateway.settings.send_queue.max(64));
    let (close_tx, close_rx) = mpsc::channel::<(u16, String)>(1);
    let writer = tokio::spawn(write_loop(sink, out_rx, close_rx));
    let mut session = Session {
        gateway: gateway.clone(),
        calls: Arc::new(tokio::sync::Semaphore::new(CALLS_IN_FLIGHT)),
        id: session_id.clone(),
        identity,
        out: out_tx,
        last_sent: HashMap::new(),
        channels: HashSet::new(),
        delivered: metrics::counter!("chatmesh_ws_deliveries_total"),
    };
    let open = metrics::gauge!("chatmesh_ws_sessions");
    open.increment(1.0);
    let (code, reason) = session.serve(stream, registration, shutdown).await;
    open.decrement(1.0);
    metrics::counter!("chatmesh_ws_closes_total", "code" => code.to_string()).increment(1);
    gateway.link.close(&session_id).await;
    let _ = close_tx.try_send((code, reason));
    // why: a client that stopped reading may never take its close frame; do not wait forever.
    drain(writer, Duration::from_secs(gateway.settings.drain_secs.max(1))).await;
}

async fn drain(writer: JoinHandle<()>, grace: Duration) {
    let abort = writer.abort_handle();
    if tokio::time::timeout(grace, writer).await.is_err() {
        abort.abort();
    }
}

/// Writes frames in order; a close request wins over queued frames.
async fn write_loop(
    mut sink: futures::stream::SplitSink<WebSocketStream<TcpStream>, Message>,
    mut out: mpsc::Receiver<Out>,
    mut close: mpsc::Receiver<(u16, String)>,
) {
    loop {
        tokio::select! {
            biased;
            Some((code, reason)) = close.recv() => {
                let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                let _ = sink.close().await;
                return;
            }
            next = out.recv() => {
                let message = match next {
                    Some(Out::Text(text)) => Message::Text(text),
                    Some(Out::Ping) => Message::Ping(Vec::new().into()),
                    None => return,
                };
                if sink.send(message).await.is_err() {
                    return;
                }
            }
        }
    }
}

impl Session {
    /// Queues a frame; false when the client is too far behind (the caller closes it).
    fn push(&self, text: impl Into<tokio_tungstenite::tungstenite::Utf8Bytes>) -> bool {
        self.out.try_send(Out::Text(text.into())).is_ok()
    }

    /// Queues a live frame unless this connection already sent that event.
    fn push_live(&mut self, frame: &Frame) -> bool {
        if !protocol::first_sending(&mut self.last_sent, frame.channel, frame.event_id) {
            return true;
        }
        let queued = self.push(frame.text.clone());
        if queued {
            self.delivered.increment(1);
        }
        queued
    }

    fn chat(&self) -> ChatServiceClient<GrpcChannel> {
        ChatServiceClient::new(self.gateway.chat.clone())
    }

    async fn serve(
        &mut self,
        mut stream: futures::stream::SplitStream<WebSocketStream<TcpStream>>,
        registration: Registration,
        shutdown: CancellationToken,
    ) -> (u16, String) {
        let Registration { mut live, mut control, ready } = registration;
        let channels = match tokio::time::timeout(Duration::from_secs(10), ready).await {
            Ok(Ok(channels)) => channels,
            _ => return (close::RECONNECT, "the dispatcher did not answer".into()),
        };
        if let Some(refused) = protocol::scope_refusal(self.identity.channel_id, &channels) {
            return refused;
        }
        self.channels = channels.into_iter().collect();
        if !self.send_ready().await {
            return (close::SLOW_CONSUMER, "slow consumer".into());
        }

        let settings = self.gateway.settings.clone();
        let mut heartbeat = tokio::time::interval(Duration::from_secs(settings.ping_interval_secs.max(1)));
        heartbeat.tick().await;
        let pong_timeout = Duration::from_secs(settings.pong_timeout_secs);
        let mut awaiting_pong: Option<Instant> = None;
        // why: a client usually resumes right after `ready`; holding live frames briefly keeps
        // them from overtaking the replay (which would leave an unfillable gap).
        let mut holding_until = Some(tokio::time::Instant::now() + RESUME_WINDOW);
        // while resuming: the replay task, and the live frames buffered meanwhile
        let mut replaying: Option<JoinHandle<Replay>> = None;
        let mut buffered: Vec<Arc<Frame>> = Vec::new();
        loop {
            let expiry = self.expiry();
            tokio::select! {
                () = shutdown.cancelled() => return (close::RECONNECT, "server restarting".into()),
                () = tokio::time::sleep(expiry) => return (close::TOKEN_EXPIRED, "token expired".into()),
                Some(Control::Close(code, reason)) = control.recv() => return (code, reason),
                () = async {
                    match holding_until {
                        Some(until) => tokio::time::sleep_until(until).await,
                        None => std::future::pending().await,
                    }
                }, if holding_until.is_some() && replaying.is_none() => {
                    holding_until = None;
                    if !self.flush(std::mem::take(&mut buffered)).await {
                        return (close::SLOW_CONSUMER, "slow consumer".into());
                    }
                }
                () = async {
                    match awaiting_pong {
                        Some(sent) => tokio::time::sleep_until((sent + pong_timeout).into()).await,
                        None => std::future::pending().await,
                    }
                }, if awaiting_pong.is_some() => {
                    return (close::HEARTBEAT_TIMEOUT, "heartbeat timeout".into());
                }
                Some(frame) = live.recv() => {
                    if replaying.is_some() || holding_until.is_some() {
                        // why: bounded even while a replay runs; a client this far behind resumes anew.
                        if buffered.len() >= settings.send_queue * 8 {
                            return (close::SLOW_CONSUMER, "slow consumer".into());
                        }
                        buffered.push(frame);
                    } else if !self.push_live(&frame) {
                        return (close::SLOW_CONSUMER, "slow consumer".into());
                    }
                }
                replay = async {
                    match replaying.as_mut() {
                        Some(task) => task.await,
                        None => std::future::pending().await,
                    }
                }, if replaying.is_some() => {
                    replaying = None;
                    if !self.finish_resume(replay.unwrap_or_default(), std::mem::take(&mut buffered)).await {
                        return (close::SLOW_CONSUMER, "slow consumer".into());
                    }
                }
                _ = heartbeat.tick() => {
                    if awaiting_pong.is_none() {
                        awaiting_pong = Some(Instant::now());
                        let _ = self.out.try_send(Out::Ping);
                    }
                }
                message = stream.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let replay = self.on_frame(text.as_str(), replaying.is_some()).await;
                        if let Some(replay) = replay {
                            replaying = Some(replay);
                        } else if holding_until.take().is_some() && replaying.is_none() {
                            // the first frame was not a resume: release what was held
                            if !self.flush(std::mem::take(&mut buffered)).await {
                                return (close::SLOW_CONSUMER, "slow consumer".into());
                            }
                        }
                        if replaying.is_some() {
                            holding_until = None;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        self.push(frames::error("BINARY_NOT_ACCEPTED", "frames are JSON text"));
                    }
                    Some(Ok(Message::Pong(_))) => awaiting_pong = None,
                    Some(Ok(Message::Ping(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) | None => return (1000, "bye".into()),
                    Some(Err(error)) => {
                        let (code, reason) = protocol::close_for(&error);
                        return (code, reason.into());
                    }
                },
            }
        }
    }

    /// How long until the access token expires (it may be renewed in band).
    fn expiry(&self) -> Duration {
        protocol::until_expiry(self.identity.expires_at_secs, now_ms() / 1000)
    }

    async fn send_ready(&mut self) -> bool {
        // why: for an all-channel session the chat service resolves the channels itself (no
        // 100-id batch limit); a scoped session asks for its one channel.
        let request =
            GetUnreadCountsRequest { channel_ids: self.identity.channel_id.iter().map(u64::to_string).collect() };
        let counts = if self.channels.is_empty() {
            Vec::new()
        } else {
            match self.chat().get_unread_counts(authed(&self.identity.token, request)).await {
                Ok(response) => response.into_inner().counts,
                Err(status) => {
                    tracing::debug!(error = %status, "unread counts unavailable for ready");
                    Vec::new()
                }
            }
        };
        let channels: Vec<Value> = counts.iter().map(|c| frames::to_json(c, "chatmesh.chat.v1.UnreadCount")).collect();
        let data = json!({ "sessionId": self.id, "userId": self.identity.user_id.to_string(), "channels": channels });
        self.push(frames::frame(server::READY, data))
    }

    /// Handles one client frame; returns a replay task when it is a `resume`.
    async fn on_frame(&mut self, text: &str, resuming: bool) -> Option<JoinHandle<Replay>> {
        let frame = match chatmesh_wire::frames::parse(text) {
            Ok(frame) => frame,
            Err(refused) => {
                self.push(frames::error(refused.code, &refused.message));
                return None;
            }
        };
        if let Some((code, message)) = protocol::refused_frame(&frame, resuming) {
            self.push(frames::error(code, &message));
            return None;
        }
        match frame {
            ClientFrame::Ping => {
                self.push(frames::frame(server::PONG, json!({})));
            }
            ClientFrame::Ack(request) => self.on_ack(request),
            ClientFrame::Typing(request) => self.on_typing(request),
            ClientFrame::Auth { token } => self.on_auth(&token),
            ClientFrame::Resume { channels, refused } => {
                for channel in refused {
                    self.push(frames::error("INVALID_ARGUMENT", &format!("channels: {channel:?} is not a channel id")));
                }
                return self.on_resume(channels);
            }
            // why: refused above
            ClientFrame::Unknown(_) => {}
        }
        None
    }

    /// Runs a client-initiated call off the session loop (so live frames keep flowing while
    /// it waits), at most a few at a time; a failure comes back as an `error` frame.
    /// Each call is the root of its own trace (`ws <event>`).
    fn call<F>(&self, event: &'static str, call: F)
    where
        F: std::future::Future<Output = Result<(), tonic::Status>> + Send + 'static,
    {
        let Ok(permit) = self.calls.clone().try_acquire_owned() else {
            self.push(frames::error("TOO_MANY_REQUESTS", "too many requests in flight on this connection"));
            return;
        };
        let out = self.out.clone();
        let span =
            tracing::info_span!(parent: None, "ws.frame", otel.name = format!("ws {event}"), otel.kind = "server");
        let call = tracing::Instrument::instrument(call, span);
        tokio::spawn(async move {
            let result = call.await;
            // why: the place is free before the client can read the answer, so a call it sends
            // on reading one is never refused for the call just answered
            drop(permit);
            if let Err(status) = result {
                let code = chatmesh_platform::ErrorCode::from_grpc(status.code()).name();
                let _ = out.try_send(Out::Text(frames::error(code, status.message()).into()));
            }
        });
    }

    fn on_ack(&mut self, request: AckChatsRequest) {
        let (mut chat, token) = (self.chat(), self.identity.token.clone());
        self.call(client::ACK, async move { chat.ack_chats(authed(&token, request)).await.map(|_| ()) });
    }

    fn on_typing(&mut self, request: SendTypingRequest) {
        let mut dispatcher = DispatcherServiceClient::new(self.gateway.dispatcher.clone());
        let token = self.identity.token.clone();
        self.call(client::TYPING, async move { dispatcher.send_typing(authed(&token, request)).await.map(|_| ()) });
    }

    /// Renews the session's token in band, so sockets need not reconnect at expiry.
    fn on_auth(&mut self, token: &str) {
        match self.gateway.auth.verify_until(token) {
            Ok((caller, expires))
                if protocol::may_renew(self.identity.user_id, &self.identity.login_session, &caller) =>
            {
                self.identity.token = token.to_owned();
                self.identity.expires_at_secs = expires;
                self.push(frames::frame(server::AUTHENTICATED, json!({ "expiresAt": expires })));
            }
            Ok(_) => {
                self.push(frames::error("PERMISSION_DENIED", "the token is for another user or login session"));
            }
            Err(e) => {
                self.push(frames::error("UNAUTHENTICATED", &e.to_string()));
            }
        }
    }

    /// Starts a replay of the event log after the given event ids; live events are buffered
    /// meanwhile and sent after it, deduplicated.
    fn on_resume(&mut self, wanted: Vec<(u64, u64)>) -> Option<JoinHandle<Replay>> {
        let (plan, live_ahead) = protocol::resume_plan(&mut self.last_sent, wanted);
        for channel in live_ahead {
            self.push(frames::resync(channel, "live_ahead"));
        }
        let (chat, token, cap) = (self.chat(), self.identity.token.clone(), self.gateway.settings.replay_cap);
        Some(tokio::spawn(replay(chat, token, plan, cap)))
    }

    async fn finish_resume(&mut self, replay: Replay, buffered: Vec<Arc<Frame>>) -> bool {
        let deadline = Duration::from_secs(10);
        for (channel, result) in replay {
            match result {
                Ok(events) => {
                    for event in events {
                        let Some(text) = frames::channel_event(&event) else { continue };
                        let frame =
                            Frame { channel: Some(channel), event_id: event.event_id.parse().ok(), text: text.into() };
                        if !self.send_waiting(&frame, deadline).await {
                            return false;
                        }
                    }
                }
                Err(reason) => {
                    if !self.push(frames::resync(channel, reason)) {
                        return false;
                    }
                }
            }
        }
        self.flush(buffered).await && self.push(frames::frame(server::RESUMED, json!({})))
    }

    /// Sends held live frames in order, deduplicated.
    async fn flush(&mut self, buffered: Vec<Arc<Frame>>) -> bool {
        for frame in buffered {
            if !self.send_waiting(&frame, Duration::from_secs(10)).await {
                return false;
            }
        }
        true
    }

    /// Like `push_live`, but waits (up to `deadline`) for room: a replay is bounded by the cap.
    async fn send_waiting(&mut self, frame: &Frame, deadline: Duration) -> bool {
        if !protocol::first_sending(&mut self.last_sent, frame.channel, frame.event_id) {
            return true;
        }
        matches!(tokio::time::timeout(deadline, self.out.send(Out::Text(frame.text.clone()))).await, Ok(Ok(())))
    }
}

/// Reads each channel's log after its resume point, up to `cap` events per channel.
async fn replay(mut chat: ChatServiceClient<GrpcChannel>, token: String, plan: Vec<(u64, u64)>, cap: usize) -> Replay {
    let mut out = Vec::new();
    for (channel, after) in plan {
        let mut events = Vec::new();
        let mut cursor = after;
        let result = loop {
            let after_event_id = if cursor == 0 { String::new() } else { cursor.to_string() };
            let request = ListEventsRequest { channel_id: channel.to_string(), after_event_id, page_size: 500 };
            let page = match chat.list_events(authed(&token, request)).await {
                Ok(page) => page.into_inner(),
                Err(status) => break Err(protocol::replay_failure(status.code())),
            };
            if let Some(last) = page.events.last() {
                cursor = last.event_id.parse().unwrap_or(cursor);
            }
            events.extend(page.events);
            if events.len() > cap {
                break Err("replay_cap");
            }
            if !page.has_more {
                break Ok(events);
            }
        };
        out.push((channel, result));
    }
    out
}
