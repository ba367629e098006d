//! Delivery of the change feed to its consumers. The feed is the outbox: one delivery task per
//! consumer reads it after the consumer's durable cursor, delivers, and only then moves the
//! cursor, so a failed delivery never fails a send and is retried until it succeeds. Consumers:
//! the dispatcher (live delivery), the channel service (reopening closed channels when a chat
//! arrives), and the search indexer (which keeps its position in the index itself; see
//! `chatmesh_search::run_indexer`).

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use chatmesh_api::{
    channel::v1::{
        ChannelActivity, RecordActivityRequest, channel_internal_service_client::ChannelInternalServiceClient,
    },
    chat::v1::{ChannelEvent, ChatKind, EventType, channel_event::Payload},
    dispatcher::v1::{PublishRequest, dispatcher_internal_service_client::DispatcherInternalServiceClient},
};
use chatmesh_platform::{grpc::InternalChannel, shutdown::CancellationToken};
use tokio::sync::watch;
use tonic::Status;

use crate::store::ChatStore;

const BATCH: usize = 256;
const IDLE_POLL: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where committed events go for fan-out.
#[async_trait]
pub trait Publisher: Send + Sync + 'static {
    async fn publish(&self, events: Vec<ChannelEvent>) -> Result<(), Status>;
}

/// A consumer of the change feed, with its own durable cursor.
#[async_trait]
pub trait FeedSink: Send + Sync + 'static {
    /// The name its cursor is kept under.
    fn cursor(&self) -> &'static str;
    async fn deliver(&self, events: Vec<ChannelEvent>) -> Result<(), Status>;
}

/// Live delivery: every event goes to the publisher.
pub struct PublishSink(pub Arc<dyn Publisher>);

#[async_trait]
impl FeedSink for PublishSink {
    fn cursor(&self) -> &'static str {
        "publisher"
    }

    async fn deliver(&self, mut events: Vec<ChannelEvent>) -> Result<(), Status> {
        // why: a removal is private to its actor and never fans out to the channel.
        events.retain(|e| e.r#type() != EventType::ChatRemoved);
        if events.is_empty() {
            return Ok(());
        }
        self.0.publish(events).await
    }
}

/// Activity: channels that got a new text chat, told to the channel service (which reopens
/// them for members who had closed them).
#[derive(Debug, Clone)]
pub struct ActivitySink {
    client: ChannelInternalServiceClient<InternalChannel>,
}

impl ActivitySink {
    pub fn new(channel: InternalChannel) -> Self {
        Self { client: ChannelInternalServiceClient::new(channel) }
    }
}

#[async_trait]
impl FeedSink for ActivitySink {
    fn cursor(&self) -> &'static str {
        "activity"
    }

    async fn deliver(&self, events: Vec<ChannelEvent>) -> Result<(), Status> {
        // the newest new text chat of each channel
        let mut newest: std::collections::BTreeMap<String, (u64, String)> = std::collections::BTreeMap::new();
        for event in events.into_iter().filter(|e| e.r#type() == EventType::ChatCreated) {
            let Some(Payload::Chat(chat)) = &event.payload else { continue };
            if chat.kind() != ChatKind::Text {
                continue;
            }
            let id = chat.chat_id.parse::<u64>().unwrap_or(0);
            let entry = newest.entry(event.channel_id.clone()).or_insert((0, String::new()));
            if id > entry.0 {
                *entry = (id, chat.chat_id.clone());
            }
        }
        if newest.is_empty() {
            return Ok(());
        }
        let activities = newest
            .into_iter()
            .map(|(channel_id, (_, newest_chat_id))| ChannelActivity { channel_id, newest_chat_id })
            .collect();
        self.client.clone().record_activity(RecordActivityRequest { activities }).await.map(|_| ())
    }
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

/// Delivers the change feed to `sink` until `shutdown`; `wake` changes after each committed write.
pub async fn run_feed_delivery(
    store: Arc<dyn ChatStore>,
    sink: Arc<dyn FeedSink>,
    mut wake: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    loop {
        let pause = match deliver_once(store.as_ref(), sink.as_ref()).await {
            Ok(0) => IDLE_POLL,
            Ok(_) => {
                if failing {
                    tracing::info!(consumer = sink.cursor(), "feed delivery recovered");
                }
                failing = false;
                backoff = Duration::from_millis(100);
                continue;
            }
            Err(e) => {
                // why: log a failure streak once; delivery keeps retrying quietly.
                if !failing {
                    tracing::warn!(consumer = sink.cursor(), error = %e, "feed delivery failed; retrying with backoff");
                }
                failing = true;
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                pause
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            Ok(()) = wake.changed(), if !failing => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

async fn deliver_once(store: &dyn ChatStore, sink: &dyn FeedSink) -> Result<usize, String> {
    let cursor = store.cursor(sink.cursor()).await.map_err(|e| e.to_string())?;
    let events = store.feed(cursor, BATCH).await.map_err(|e| e.to_string())?;
    let Some(last) = events.last().and_then(|e| e.event_id.parse::<u64>().ok()) else { return Ok(0) };
    let count = events.len();
    sink.deliver(events).await.map_err(|s| format!("{}: {}", s.code(), s.message()))?;
    store.set_cursor(sink.cursor(), last).await.map_err(|e| e.to_string())?;
    metrics::counter!("chatmesh_feed_delivered_total", "consumer" => sink.cursor()).increment(count as u64);
    // the age of the newest delivered event when it left: how far this consumer trails writes
    let age_ms = chatmesh_platform::ids::now_ms().saturating_sub(chatmesh_platform::ids::unix_ms_of(last));
    metrics::gauge!("chatmesh_feed_lag_seconds", "consumer" => sink.cursor()).set(age_ms as f64 / 1000.0);
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
        let (_wake, woken) = watch::channel(0);
        let shutdown = CancellationToken::new();
        let sink = Arc::new(PublishSink(publisher.clone()));
        let delivery = tokio::spawn(run_feed_delivery(store.clone(), sink, woken, shutdown.clone()));
        for _ in 0..100 {
            if publisher.published.lock().unwrap().len() == 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        shutdown.cancel();
        delivery.await.unwrap();
        let expected: Vec<String> = store.feed(0, 10).await.unwrap().into_iter().map(|e| e.event_id).collect();
        assert_eq!(*publisher.published.lock().unwrap(), expected, "every event once, in commit order");
        assert_eq!(store.cursor("publisher").await.unwrap().to_string(), expected[4]);
    }
}
