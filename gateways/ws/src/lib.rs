//! WebSocket edge gateway: JSON frames bridged to the dispatcher and the chat service.
//!
//! Thin by design: it verifies the access token at the handshake (401 before any upgrade),
//! translates frames to gRPC calls made with the user's own token, and writes live events
//! from its one stream to the dispatcher. It holds no business rules. The protocol is
//! documented in docs/websocket.md; its names and close codes live in [`frames`].

pub mod frames;
mod link;
mod protocol;
mod session;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use chatmesh_platform::{
    auth::{AuthError, Authenticator, Caller},
    config::WsConfig,
    grpc::{GrpcChannel, InternalChannel},
    shutdown::CancellationToken,
};
use http::StatusCode;
use tokio::{net::TcpListener, task::JoinSet};
use tokio_tungstenite::tungstenite::{
    handshake::server::{ErrorResponse, Request, Response},
    protocol::WebSocketConfig,
};

pub use link::Link;
use session::Identity;

/// What the gateway needs: token verification, and the services it translates to.
pub struct Gateway {
    pub auth: Arc<Authenticator>,
    /// ChatService, called with each user's token.
    pub chat: GrpcChannel,
    /// DispatcherService, called with each user's token.
    pub dispatcher: GrpcChannel,
    pub settings: WsConfig,
    link: Link,
    /// Open sessions per user on this gateway.
    open: Arc<Mutex<std::collections::HashMap<u64, usize>>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Gateway {
    pub fn new(auth: Arc<Authenticator>, chat: GrpcChannel, dispatcher: GrpcChannel, settings: WsConfig) -> Arc<Self> {
        Arc::new(Self { auth, chat, dispatcher, settings, link: Link::default(), open: Arc::default() })
    }

    fn socket_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.settings.read_buffer_bytes)
            .write_buffer_size(0)
            .max_write_buffer_size(self.settings.max_write_buffer_bytes)
            .max_message_size(Some(self.settings.max_message_bytes))
            .max_frame_size(Some(self.settings.max_message_bytes))
    }

    /// Serves WebSocket sessions on `listener` until `shutdown`; then every socket gets a close
    /// frame with the reconnect code, and this returns once they are closed (or the drain
    /// time has passed).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        dispatcher_internal: InternalChannel,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let link = tokio::spawn(self.link.clone().run(dispatcher_internal, shutdown.clone()));
        let mut sessions = JoinSet::new();
        let cap = chatmesh_platform::connections::SourceCap::new("WebSocket", self.settings.max_connections_per_source);
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
            };
            // a connection refused here is dropped, which closes it
            let Some(place) = cap.admit(peer.ip()) else { continue };
            let gateway = self.clone();
            let stop = shutdown.clone();
            sessions.spawn(async move {
                let _place = place;
                let _ = stream.set_nodelay(true);
                if let Some((socket, identity, _slot)) = gateway.handshake(stream).await {
                    tracing::debug!(%peer, user_id = identity.user_id, "websocket session opened");
                    session::run(gateway, socket, identity, stop).await;
                }
            });
        }
        drop(listener);
        let drain = Duration::from_secs(self.settings.drain_secs + 1);
        if tokio::time::timeout(drain, async { while sessions.join_next().await.is_some() {} }).await.is_err() {
            sessions.abort_all();
        }
        link.abort();
        Ok(())
    }

    /// Upgrades a connection whose token verifies; answers 401 (JSON error body) otherwise, and
    /// 429 when the user already holds `max_sessions_per_user` sessions here. The handshake has
    /// a deadline.
    async fn handshake(
        &self,
        stream: tokio::net::TcpStream,
    ) -> Option<(tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, Identity, Slot)> {
        let verified: Arc<Mutex<Option<(Identity, Slot)>>> = Arc::default();
        let out = verified.clone();
        let auth = self.auth.clone();
        let (open, cap) = (self.open.clone(), self.settings.max_sessions_per_user);
        // why: the callback's error type is tungstenite's, large by its design.
        #[allow(clippy::result_large_err)]
        let callback = move |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
            let (identity, protocol) = identify(&auth, request).map_err(|e| {
                let (status, body) = chatmesh_platform::error::error_body(
                    chatmesh_platform::ErrorCode::Unauthenticated,
                    &e.to_string(),
                    Vec::new(),
                );
                plain(status, body.to_string())
            })?;
            let slot = Slot::take(&open, identity.user_id, cap).ok_or_else(|| {
                let message = format!("at most {cap} open sessions per user");
                let (status, body) = chatmesh_platform::error::error_body(
                    chatmesh_platform::ErrorCode::ResourceExhausted,
                    &message,
                    Vec::new(),
                );
                plain(status, body.to_string())
            })?;
            if let Some(protocol) = protocol
                && let Ok(value) = protocol.parse()
            {
                response.headers_mut().insert("sec-websocket-protocol", value);
            }
            *out.lock().unwrap_or_else(|e| e.into_inner()) = Some((identity, slot));
            Ok(response)
        };
        let timeout = Duration::from_secs(self.settings.handshake_timeout_secs);
        let accepted = tokio::time::timeout(
            timeout,
            tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(self.socket_config())),
        )
        .await;
        match accepted {
            Ok(Ok(socket)) => {
                let (identity, slot) = verified.lock().unwrap_or_else(|e| e.into_inner()).take()?;
                Some((socket, identity, slot))
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "websocket handshake refused");
                None
            }
            Err(_) => {
                tracing::debug!("websocket handshake timed out");
                None
            }
        }
    }
}

/// One of a user's session places on this gateway, given back when dropped.
struct Slot {
    open: Arc<Mutex<std::collections::HashMap<u64, usize>>>,
    user_id: u64,
}

impl Slot {
    fn take(open: &Arc<Mutex<std::collections::HashMap<u64, usize>>>, user_id: u64, cap: usize) -> Option<Self> {
        let mut counts = open.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(user_id).or_insert(0);
        if !protocol::may_open_session(*count, cap) {
            if *count == 0 {
                counts.remove(&user_id);
            }
            return None;
        }
        *count += 1;
        Some(Self { open: open.clone(), user_id })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.user_id) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.user_id);
            }
        }
    }
}

fn plain(status: StatusCode, body: String) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(body));
    *response.status_mut() = status;
    if let Ok(value) = "application/json".parse() {
        response.headers_mut().insert("content-type", value);
    }
    response
}

/// The user of a connection: the token from `?token=`, an `authorization: Bearer` header,
/// or the browser form `Sec-WebSocket-Protocol: bearer, <token>` (echoed back as `bearer`).
fn identify(auth: &Authenticator, request: &Request) -> Result<(Identity, Option<&'static str>), AuthError> {
    let query = request.uri().query().unwrap_or_default();
    let protocols = request.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let (token, protocol) = match protocol::handshake_token(query, protocols) {
        Some(found) => found,
        None => (chatmesh_platform::auth::bearer_token(request.headers())?.to_owned(), None),
    };
    let (caller, expires_at_secs) = auth.verify_until(&token)?;
    let Caller::User { user_id, session_id } = caller else {
        return Err(AuthError::Invalid("a user token is required".into()));
    };
    let channel_id = match protocol::query_param(query, "channel_id") {
        Some(raw) => {
            Some(chatmesh_platform::ids::parse_id(raw).ok_or(AuthError::Invalid("channel_id is not an id".into()))?)
        }
        None => None,
    };
    Ok((Identity { user_id, login_session: session_id, token, expires_at_secs, channel_id }, protocol))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_sessions_are_capped_and_a_closed_one_frees_its_place() {
        let open = Arc::default();
        let first = Slot::take(&open, 7, 2).expect("a first session");
        let _second = Slot::take(&open, 7, 2).expect("a second session");
        assert!(Slot::take(&open, 7, 2).is_none(), "a third is over the cap");
        assert!(Slot::take(&open, 8, 2).is_some(), "another user has their own places");
        drop(first);
        assert!(Slot::take(&open, 7, 2).is_some(), "a closed session gives its place back");
        assert!(Slot::take(&open, 9, 0).is_none());
        assert!(!open.lock().unwrap().contains_key(&9), "a refused user leaves no entry");
    }
}
