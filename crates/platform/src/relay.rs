//! A small fan-out between processes over Redis pub/sub, for state each process keeps in memory
//! (membership epochs, ended login sessions): what this process announces is published, what
//! the others announce is handed to `incoming`. Pub/sub may drop a message, so every such state
//! also has a bound without it (epochs: the 1 s answer TTL; sessions: the token lifetime).

use std::time::Duration;

use futures::StreamExt as _;
use redis::AsyncCommands as _;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::shutdown::CancellationToken;

/// Relays on the pub/sub `channel` until `shutdown`. Publishing fails open after `timeout`; a
/// lost subscription reconnects.
pub async fn relay(
    redis: crate::redis_pool::Redis,
    channel: &'static str,
    mut outgoing: UnboundedReceiver<Vec<u8>>,
    incoming: impl Fn(&[u8]) + Send,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    let client = redis.client.clone();
    // why: a random prefix tells this process's own messages apart.
    let origin = rand::random::<u64>().to_be_bytes();
    let subscriber = async {
        loop {
            if let Ok(mut pubsub) = client.get_async_pubsub().await
                && pubsub.subscribe(channel).await.is_ok()
            {
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    if let Some((from, body)) = message.get_payload_bytes().split_at_checked(8)
                        && from != origin
                    {
                        incoming(body);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let publisher = async {
        let mut connection = redis.manager.clone();
        while let Some(body) = outgoing.recv().await {
            let mut payload = origin.to_vec();
            payload.extend_from_slice(&body);
            if !matches!(
                tokio::time::timeout(timeout, connection.publish::<_, _, ()>(channel, payload)).await,
                Ok(Ok(()))
            ) {
                tracing::debug!(channel, "not relayed; other processes rely on the bound without it");
            }
        }
    };
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = subscriber => {}
        () = publisher => {}
    }
}
