//! The gateway's one multiplexed stream to the dispatcher: sessions are registered up it,
//! deliveries come down it and are routed to sessions — each event encoded to JSON once and
//! its bytes shared by every session that gets it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chatmesh_api::dispatcher::v1::{
    AttachRequest, SessionClosed, SessionOpened, attach_request::Command as Up, attach_response::Command as Down,
    dispatcher_internal_service_client::DispatcherInternalServiceClient,
};
use chatmesh_platform::{grpc::InternalChannel, shutdown::CancellationToken};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::{StreamExt, wrappers::ReceiverStream};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::frames::{self, close};

/// A live frame, encoded once.
#[derive(Debug)]
pub struct Frame {
    pub channel: Option<u64>,
    pub event_id: Option<u64>,
    pub text: Utf8Bytes,
}

/// What the link tells a session besides frames.
#[derive(Debug, Clone)]
pub enum Control {
    Close(u16, String),
}

struct SessionHandle {
    live: mpsc::Sender<Arc<Frame>>,
    control: mpsc::Sender<Control>,
    ready: Option<oneshot::Sender<Vec<u64>>>,
}

#[derive(Default)]
struct Inner {
    up: Option<mpsc::Sender<AttachRequest>>,
    sessions: HashMap<String, SessionHandle>,
}

#[derive(Clone, Default)]
pub struct Link {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

/// A session's ends of its link channels.
pub struct Registration {
    pub live: mpsc::Receiver<Arc<Frame>>,
    pub control: mpsc::Receiver<Control>,
    pub ready: oneshot::Receiver<Vec<u64>>,
}

impl Link {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a session and asks the dispatcher to follow its channels.
    pub fn open(&self, opened: SessionOpened, queue: usize) -> Result<Registration, String> {
        let (live_tx, live) = mpsc::channel(queue);
        let (control_tx, control) = mpsc::channel(4);
        let (ready_tx, ready) = oneshot::channel();
        let mut inner = self.inner();
        let up = inner.up.clone().ok_or("the dispatcher is not attached")?;
        inner.sessions.insert(
            opened.session_id.clone(),
            SessionHandle { live: live_tx, control: control_tx, ready: Some(ready_tx) },
        );
        drop(inner);
        let session_id = opened.session_id.clone();
        if let Err(e) = up.try_send(AttachRequest { command: Some(Up::SessionOpened(opened)) }) {
            self.inner().sessions.remove(&session_id);
            return Err(e.to_string());
        }
        Ok(Registration { live, control, ready })
    }

    /// Forgets a session and tells the dispatcher (waiting for room: a lost close would leave
    /// the user online there for good; a broken stream forgets every session anyway).
    pub async fn close(&self, session_id: &str) {
        let up = {
            let mut inner = self.inner();
            inner.sessions.remove(session_id);
            inner.up.clone()
        };
        if let Some(up) = up {
            let closed = SessionClosed { session_id: session_id.to_owned() };
            let request = AttachRequest { command: Some(Up::SessionClosed(closed)) };
            let _ = tokio::time::timeout(Duration::from_secs(5), up.send(request)).await;
        }
    }

    fn close_all(&self, code: u16, reason: &str) {
        let mut inner = self.inner();
        inner.up = None;
        for (_, session) in inner.sessions.drain() {
            let _ = session.control.try_send(Control::Close(code, reason.to_owned()));
        }
    }

    fn route(&self, session_ids: &[String], frame: Arc<Frame>) {
        let inner = self.inner();
        for id in session_ids {
            if let Some(session) = inner.sessions.get(id)
                && session.live.try_send(frame.clone()).is_err()
            {
                // why: a full queue means the client does not keep up; close it rather than
                // stall the others or grow without bound.
                let _ = session.control.try_send(Control::Close(close::SLOW_CONSUMER, "slow consumer".into()));
            }
        }
    }

    fn control(&self, session_id: &str, control: Control) {
        if let Some(session) = self.inner().sessions.get(session_id) {
            let _ = session.control.try_send(control);
        }
    }

    fn ready(&self, session_id: &str, channels: Vec<u64>) {
        if let Some(ready) = self.inner().sessions.get_mut(session_id).and_then(|s| s.ready.take()) {
            let _ = ready.send(channels);
        }
    }

    /// Keeps the stream to the dispatcher attached until `shutdown`. When it breaks, every
    /// session is closed with the reconnect code (clients resume; nothing is lost silently),
    /// and the link attaches again.
    pub async fn run(self, dispatcher: InternalChannel, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let (up_tx, up_rx) = mpsc::channel(4096);
            let mut client = DispatcherInternalServiceClient::new(dispatcher.clone());
            let attached = tokio::select! {
                () = shutdown.cancelled() => return,
                attached = client.attach(ReceiverStream::new(up_rx)) => attached,
            };
            match attached {
                Ok(response) => {
                    backoff = Duration::from_millis(100);
                    self.inner().up = Some(up_tx);
                    tracing::info!("attached to the dispatcher");
                    let mut down = response.into_inner();
                    loop {
                        let message = tokio::select! {
                            () = shutdown.cancelled() => return,
                            message = down.next() => message,
                        };
                        let Some(Ok(message)) = message else { break };
                        match message.command {
                            Some(Down::Delivery(delivery)) => {
                                let Some((channel, event_id, text)) =
                                    delivery.event.as_ref().and_then(frames::live_event)
                                else {
                                    continue;
                                };
                                let frame = Arc::new(Frame { channel, event_id, text: text.into() });
                                self.route(&delivery.session_ids, frame);
                            }
                            Some(Down::CloseSession(closing)) => {
                                let code = u16::try_from(closing.close_code)
                                    .ok()
                                    .filter(|c| *c >= 1000)
                                    .unwrap_or(close::LOGGED_OUT);
                                self.control(&closing.session_id, Control::Close(code, closing.reason));
                            }
                            Some(Down::SessionReady(ready)) => {
                                let channels = ready.channel_ids.iter().filter_map(|id| id.parse().ok()).collect();
                                self.ready(&ready.session_id, channels);
                            }
                            None => {}
                        }
                    }
                    tracing::warn!("the dispatcher stream ended; closing sessions so they resume");
                }
                Err(status) => tracing::warn!(error = %status, "attaching to the dispatcher failed"),
            }
            self.close_all(close::RECONNECT, "dispatcher unavailable, reconnect");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
