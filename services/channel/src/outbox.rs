//! Drains the channel service's outbox into the chat service's event log, in order, with
//! this part's service token. An entry leaves the outbox only once the log accepted it; the
//! log records each idempotency key once, so redelivery after a crash is harmless.

use std::{sync::Arc, time::Duration};

use chatmesh_api::chat::v1::{
    AppendChannelEventsRequest, ChannelEvent, chat_internal_service_client::ChatInternalServiceClient,
};
use chatmesh_platform::{grpc::InternalChannel, shutdown::CancellationToken};
use prost::Message;
use tokio::sync::Notify;

use crate::store::ChannelStore;

const BATCH: usize = 100;
/// How often the outbox is looked at even without a wake-up.
const IDLE_POLL: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Runs until `shutdown`; `wake` is notified after every change that recorded events.
pub async fn run_outbox_relay(
    store: Arc<dyn ChannelStore>,
    channel: InternalChannel,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut log = ChatInternalServiceClient::new(channel);
    let mut backoff = Duration::from_millis(100);
    loop {
        let delivered = deliver_once(store.as_ref(), &mut log).await;
        let pause = match delivered {
            Ok(0) => {
                backoff = Duration::from_millis(100);
                IDLE_POLL
            }
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "channel outbox delivery failed");
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                pause
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Delivers one batch; returns how many entries left the outbox.
async fn deliver_once(
    store: &dyn ChannelStore,
    log: &mut ChatInternalServiceClient<InternalChannel>,
) -> Result<usize, String> {
    let entries = store.list_outbox(None, BATCH).await.map_err(|e| e.to_string())?;
    metrics::gauge!("chatmesh_channel_outbox_pending").set(entries.len() as f64);
    if entries.is_empty() {
        return Ok(0);
    }
    let events = entries
        .iter()
        .map(|e| ChannelEvent::decode(e.event.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("corrupt outbox entry: {e}"))?;
    log.append_channel_events(AppendChannelEventsRequest { events }).await.map_err(|s| s.to_string())?;
    // why: only what was delivered; a lower seq written after the listing is still owed
    let delivered: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    store.delete_outbox(&delivered).await.map_err(|e| e.to_string())?;
    metrics::counter!("chatmesh_channel_outbox_relayed_total").increment(entries.len() as u64);
    Ok(entries.len())
}
