//! Hands committed events to the dispatcher for live delivery. The change feed is the outbox:
//! a relay reads it after its durable cursor, publishes, and only then moves the cursor, so a
//! failed publish never fails a send and is retried until delivered.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chatmesh_api::{
    chat::v1::ChannelEvent,
    dispatcher::v1::{PublishRequest, dispatcher_internal_service_client::DispatcherInternalServiceClient},
};
use chatmesh_platform::{grpc::InternalChannel, shutdown::CancellationToken};
use tokio::sync::Notify;
use tonic::Status;

use crate::store::ChatStore;

/// The feed cursor of the publishing relay.
pub const CURSOR: &str = "publisher";
const BATCH: usize = 256;
const IDLE_POLL: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where committed events go for fan-out.
#[async_trait]
pub trait Publisher: Send + Sync + 'static {
    async fn publish(&self, events: Vec<ChannelEvent>) -> Result<(), Status>;
}

/// The dispatcher over gRPC, with this part's service token.
#[derive(Debug, Clone)]
pub struct GrpcPublisher {
    client: DispatcherInternalServiceClient<InternalChannel>,
}

impl GrpcPublisher {
    pub fn new(channel: InternalChannel) -> Self {
        Self { client: DispatcherInternalServiceClient::new(channel) }
    }
}

#[async_trait]
impl Publisher for GrpcPublisher {
    async fn publish(&self, events: Vec<ChannelEvent>) -> Result<(), Status> {
        self.client.clone().publish(PublishRequest { events }).await.map(|_| ())
    }
}

/// Runs until `shutdown`; `wake` is notified after each committed write.
pub async fn run_publish_relay(
    store: Arc<dyn ChatStore>,
    publisher: Arc<dyn Publisher>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    loop {
        let pause = match publish_once(store.as_ref(), publisher.as_ref()).await {
            Ok(0) => IDLE_POLL,
            Ok(_) => {
                if failing {
                    tracing::info!("publishing recovered");
                }
                failing = false;
                backoff = Duration::from_millis(100);
                continue;
            }
            Err(e) => {
                // why: log a failure streak once; the relay keeps retrying quietly.
                if !failing {
                    tracing::warn!(error = %e, "publishing events failed; retrying with backoff");
                }
                failing = true;
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                pause
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = wake.notified(), if !failing => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

async fn publish_once(store: &dyn ChatStore, publisher: &dyn Publisher) -> Result<usize, String> {
    let cursor = store.cursor(CURSOR).await.map_err(|e| e.to_string())?;
    let events = store.feed(cursor, BATCH).await.map_err(|e| e.to_string())?;
    let Some(last) = events.last().and_then(|e| e.event_id.parse::<u64>().ok()) else { return Ok(0) };
    let count = events.len();
    publisher.publish(events).await.map_err(|s| format!("{}: {}", s.code(), s.message()))?;
    store.set_cursor(CURSOR, last).await.map_err(|e| e.to_string())?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::store::{FjallChatStore, conformance::text};

    /// Refuses the first `failures` publishes, then records what it gets.
    struct Flaky {
        failures: Mutex<usize>,
        published: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Publisher for Flaky {
        async fn publish(&self, events: Vec<ChannelEvent>) -> Result<(), Status> {
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(Status::unavailable("dispatcher down"));
            }
            self.published.lock().unwrap().extend(events.into_iter().map(|e| e.event_id));
            Ok(())
        }
    }

    #[tokio::test]
    async fn events_are_published_in_order_despite_failures() {
        let (_dir, store) = FjallChatStore::temp();
        let store: Arc<dyn ChatStore> = Arc::new(store);
        for i in 0..5 {
            store.create_chat(text(1 + i % 2, 7, &format!("m{i}"), "")).await.expect("sends never wait on publishing");
        }
        let publisher = Arc::new(Flaky { failures: Mutex::new(3), published: Mutex::new(Vec::new()) });
        let (wake, shutdown) = (Arc::new(Notify::new()), CancellationToken::new());
        let relay = tokio::spawn(run_publish_relay(store.clone(), publisher.clone(), wake, shutdown.clone()));
        for _ in 0..100 {
            if publisher.published.lock().unwrap().len() == 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        shutdown.cancel();
        relay.await.unwrap();
        let expected: Vec<String> = store.feed(0, 10).await.unwrap().into_iter().map(|e| e.event_id).collect();
        assert_eq!(*publisher.published.lock().unwrap(), expected, "every event once, in commit order");
        assert_eq!(store.cursor(CURSOR).await.unwrap().to_string(), expected[4]);
    }
}
