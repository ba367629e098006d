//! The change stream (`search.source = "stream"`): the chat part relays its durable change feed
//! into a Redis Stream, and indexers in any process read it as one consumer group.
//!
//! Relay: XADD ([`StreamSink::relay`], which the chat part runs as a consumer of its feed), then
//! the feed cursor moves, so an entry is relayed at least once and never lost; a store write and
//! a Redis write cannot be one transaction.
//! Indexer: XREADGROUP, the current state of each changed chat written to the index and
//! committed, and only then XACK. An indexer killed before its XACK leaves its entries pending:
//! it reads them again when it restarts under the same name, and another consumer takes them
//! over (XAUTOCLAIM) once they have been idle for `claim_idle`. Writing current states makes a
//! repeat harmless. The stream is trimmed only below what every consumer is done with.

use std::{sync::Arc, time::Duration};

use chatmesh_api::chat::v1::ChannelEvent;
use chatmesh_platform::{fault, redis_keys, shutdown::CancellationToken};
use redis::{
    AsyncCommands,
    aio::ConnectionManager,
    streams::{StreamAutoClaimOptions, StreamId, StreamPendingReply, StreamReadOptions, StreamReadReply},
};

use crate::{
    ChatSource, IndexerStatus, SearchIndex,
    indexer::{Changed, changed_by, changes_for, refused},
};

/// Entries read or claimed per step.
const BATCH: usize = 512;
/// How long one read waits for new entries.
const BLOCK: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often the stream is trimmed and departed consumers are forgotten, at most.
const HOUSEKEEPING: Duration = Duration::from_secs(30);
/// A consumer with nothing pending, silent this long, is removed from the group.
const CONSUMER_GONE: Duration = Duration::from_secs(3600);

/// The feed consumer that relays index-relevant changes into the stream (its feed cursor is
/// [`StreamSink::CURSOR`]).
pub struct StreamSink {
    redis: ConnectionManager,
}

/// The stream could not be written; the same events must be relayed again.
#[derive(Debug, thiserror::Error)]
#[error("change stream: {0}")]
pub struct RelayError(#[from] redis::RedisError);

impl StreamSink {
    /// The name of the feed cursor the relay moves.
    pub const CURSOR: &'static str = "stream";

    pub fn new(redis: ConnectionManager) -> Self {
        Self { redis }
    }

    /// Appends an entry for every index-relevant change of `events` to the stream.
    pub async fn relay(&self, events: &[ChannelEvent]) -> Result<(), RelayError> {
        let mut pipe = redis::pipe();
        let mut any = false;
        for change in events.iter().filter_map(changed_by) {
            pipe.xadd(redis_keys::change_stream(), "*", &entry_fields(change)).ignore();
            any = true;
        }
        if !any {
            return Ok(());
        }
        let mut redis = self.redis.clone();
        Ok(pipe.query_async::<()>(&mut redis).await?)
    }
}

/// A stream entry's fields for a change: `event` (its event id) and `chat` or `channel`.
fn entry_fields(change: Changed) -> [(&'static str, u64); 2] {
    match change {
        Changed::Chat { chat_id, event_id } => [("event", event_id), ("chat", chat_id)],
        Changed::Channel { channel_id } => [("event", 0), ("channel", channel_id)],
    }
}

fn parse_entry(entry: &StreamId) -> Option<Changed> {
    match (entry.get::<u64>("event"), entry.get::<u64>("chat"), entry.get::<u64>("channel")) {
        (Some(event_id), Some(chat_id), None) => Some(Changed::Chat { chat_id, event_id }),
        (Some(_), None, Some(channel_id)) => Some(Changed::Channel { channel_id }),
        _ => None,
    }
}

/// How a stream indexer takes part in the consumer group.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// This indexer's name in the group (stable across its restarts, like a pod name).
    pub consumer: String,
    /// Entries another consumer has held unacknowledged this long are taken over.
    pub claim_idle: Duration,
}

/// A consumer name when none is configured: the pod's (`$HOSTNAME`), else this process's.
pub fn default_consumer() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("indexer-{}", std::process::id()))
}

/// Reads the stream into `index` until `shutdown`.
pub async fn run_stream_indexer(
    redis: redis::Client,
    source: Arc<dyn ChatSource>,
    index: Arc<dyn SearchIndex>,
    settings: StreamSettings,
    shutdown: CancellationToken,
    status: Arc<IndexerStatus>,
) {
    status.set_running(true);
    let mut backoff = Duration::from_millis(100);
    let mut consumer: Option<Consumer> = None;
    let mut failing = false;
    while !shutdown.is_cancelled() {
        let step = async {
            let active = match consumer.as_mut() {
                Some(active) => active,
                None => consumer.insert(Consumer::join(&redis, source.clone(), index.clone(), &settings).await?),
            };
            active.step().await
        };
        let outcome = tokio::select! {
            () = shutdown.cancelled() => break,
            outcome = step => outcome,
        };
        match outcome {
            Ok(()) => {
                if failing {
                    tracing::info!("search indexing from the change stream recovered");
                }
                failing = false;
                backoff = Duration::from_millis(100);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "search indexing from the change stream failed; retrying with backoff");
                }
                failing = true;
                // why: whatever was read is still pending; read it again from the start.
                if let Some(active) = consumer.as_mut() {
                    active.own_pending = true;
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    status.set_running(false);
}

struct Consumer {
    redis: ConnectionManager,
    source: Arc<dyn ChatSource>,
    index: Arc<dyn SearchIndex>,
    settings: StreamSettings,
    /// Whether entries delivered to this consumer before may still be pending (at start, and
    /// after a failure).
    own_pending: bool,
    /// The highest event id committed to the index.
    position: u64,
    last_claim: tokio::time::Instant,
    last_housekeeping: tokio::time::Instant,
}

impl Consumer {
    async fn join(
        client: &redis::Client,
        source: Arc<dyn ChatSource>,
        index: Arc<dyn SearchIndex>,
        settings: &StreamSettings,
    ) -> Result<Self, String> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(BLOCK + Duration::from_secs(5)));
        // why: its own connection, since a blocking read holds the connection it runs on.
        let mut redis = client.get_connection_manager_with_config(config).await.map_err(|e| e.to_string())?;
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(redis_keys::change_stream())
            .arg(redis_keys::indexer_group())
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut redis)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => return Err(format!("creating the indexer group: {e}")),
            _ => {}
        }
        let position = index.position().await.map_err(|e| e.to_string())?;
        let now = tokio::time::Instant::now();
        tracing::info!(consumer = %settings.consumer, "search indexer joined the change stream");
        Ok(Self {
            redis,
            source,
            index,
            settings: settings.clone(),
            own_pending: true,
            position,
            last_claim: now - settings.claim_idle,
            last_housekeeping: now,
        })
    }

    async fn step(&mut self) -> Result<(), String> {
        if self.own_pending {
            let entries = self.read("0", None).await?;
            self.own_pending = !entries.is_empty();
            return self.apply(entries).await;
        }
        if self.last_claim.elapsed() >= self.settings.claim_idle / 2 {
            self.last_claim = tokio::time::Instant::now();
            let claimed = self.claim().await?;
            if !claimed.is_empty() {
                tracing::info!(entries = claimed.len(), "took over changes a departed indexer left unacknowledged");
                return self.apply(claimed).await;
            }
        }
        // why: as often as entries can be taken over, so the stream never holds much more than that
        if self.last_housekeeping.elapsed() >= self.settings.claim_idle.clamp(Duration::from_secs(1), HOUSEKEEPING) {
            self.last_housekeeping = tokio::time::Instant::now();
            self.housekeeping().await?;
        }
        let entries = self.read(">", Some(BLOCK)).await?;
        self.apply(entries).await
    }

    async fn read(&mut self, from: &str, block: Option<Duration>) -> Result<Vec<StreamId>, String> {
        let mut options =
            StreamReadOptions::default().group(redis_keys::indexer_group(), &self.settings.consumer).count(BATCH);
        if let Some(block) = block {
            options = options.block(block.as_millis() as usize);
        }
        let reply: Option<StreamReadReply> = self
            .redis
            .xread_options(&[redis_keys::change_stream()], &[from], &options)
            .await
            .map_err(|e| format!("reading the change stream: {e}"))?;
        Ok(reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids).collect())
    }

    async fn claim(&mut self) -> Result<Vec<StreamId>, String> {
        let mut claimed = Vec::new();
        let mut start = "0-0".to_owned();
        loop {
            let reply: redis::streams::StreamAutoClaimReply = self
                .redis
                .xautoclaim_options(
                    redis_keys::change_stream(),
                    redis_keys::indexer_group(),
                    &self.settings.consumer,
                    self.settings.claim_idle.as_millis() as u64,
                    &start,
                    StreamAutoClaimOptions::default().count(BATCH),
                )
                .await
                .map_err(|e| format!("claiming idle changes: {e}"))?;
            claimed.extend(reply.claimed);
            if reply.next_stream_id == "0-0" || claimed.len() >= BATCH {
                return Ok(claimed);
            }
            start = reply.next_stream_id;
        }
    }

    /// Writes the current state of what `entries` changed, commits, then acknowledges them.
    async fn apply(&mut self, entries: Vec<StreamId>) -> Result<(), String> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut changed = Vec::with_capacity(entries.len());
        let mut dead = Vec::new();
        for entry in &entries {
            match parse_entry(entry) {
                Some(change) => changed.push(change),
                None => dead.push((entry.id.clone(), 0, "not a change entry".to_owned())),
            }
        }
        let changes = changes_for(self.source.as_ref(), &changed).await.map_err(|e| e.to_string())?;
        let count = changes.len() as u64;
        let rejected = self.index.write(changes).await.map_err(|e| e.to_string())?;
        refused(&rejected);
        dead.extend(rejected.into_iter().map(|r| (String::new(), r.chat_id, r.reason)));
        let newest = changed.iter().map(|c| if let Changed::Chat { event_id, .. } = c { *event_id } else { 0 }).max();
        let position = self.position.max(newest.unwrap_or(0));
        self.index.commit(position).await.map_err(|e| e.to_string())?;
        self.position = position;
        metrics::counter!("chatmesh_search_changes_total").increment(count);
        metrics::counter!("chatmesh_search_commits_total").increment(1);
        for (entry, chat_id, reason) in dead {
            let fields = [("entry", entry), ("chat", chat_id.to_string()), ("reason", reason)];
            let _: String = self
                .redis
                .xadd(redis_keys::change_dead_letters(), "*", &fields)
                .await
                .map_err(|e| format!("dead-lettering a change: {e}"))?;
        }
        // the crash tests' kill point: written and committed, not yet acknowledged
        fault::point("indexer-before-ack");
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        let _: u64 = self
            .redis
            .xack(redis_keys::change_stream(), redis_keys::indexer_group(), &ids)
            .await
            .map_err(|e| format!("acknowledging changes: {e}"))?;
        Ok(())
    }

    /// Trims the stream below the oldest entry anyone may still need (the oldest pending one,
    /// or the group's last delivered one), and forgets consumers long gone with nothing pending.
    async fn housekeeping(&mut self) -> Result<(), String> {
        let key = redis_keys::change_stream();
        let group = redis_keys::indexer_group();
        let groups: redis::streams::StreamInfoGroupsReply =
            self.redis.xinfo_groups(key).await.map_err(|e| format!("reading the groups: {e}"))?;
        let Some(ours) = groups.groups.iter().find(|g| g.name == group) else { return Ok(()) };
        let pending: StreamPendingReply =
            self.redis.xpending(key, group).await.map_err(|e| format!("reading what is pending: {e}"))?;
        let floor = match &pending {
            StreamPendingReply::Data(data) => oldest(&data.start_id, &ours.last_delivered_id),
            _ => ours.last_delivered_id.clone(),
        };
        if groups.groups.len() == 1 && floor != "0-0" {
            let _: u64 = redis::cmd("XTRIM")
                .arg(key)
                .arg("MINID")
                .arg(&floor)
                .query_async(&mut self.redis)
                .await
                .map_err(|e| format!("trimming the change stream: {e}"))?;
        }
        let consumers: redis::streams::StreamInfoConsumersReply =
            self.redis.xinfo_consumers(key, group).await.map_err(|e| format!("reading the consumers: {e}"))?;
        for gone in consumers.consumers.iter().filter(|c| {
            c.pending == 0 && c.name != self.settings.consumer && c.idle as u128 >= CONSUMER_GONE.as_millis()
        }) {
            let _: u64 = redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(key)
                .arg(group)
                .arg(&gone.name)
                .query_async(&mut self.redis)
                .await
                .map_err(|e| format!("removing a departed consumer: {e}"))?;
        }
        Ok(())
    }
}

/// The older of two stream ids (`<ms>-<seq>`).
fn oldest(a: &str, b: &str) -> String {
    let parse = |id: &str| {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        (ms.parse::<u64>().unwrap_or(0), seq.parse::<u64>().unwrap_or(0))
    };
    if parse(a) <= parse(b) { a.to_owned() } else { b.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_compare_as_numbers() {
        assert_eq!(oldest("1700000000000-5", "1700000000000-12"), "1700000000000-5");
        assert_eq!(oldest("999-0", "1000-0"), "999-0");
        assert_eq!(oldest("1000-1", "1000-1"), "1000-1");
    }

    #[test]
    fn entries_round_trip() {
        for change in [Changed::Chat { chat_id: 7, event_id: 9 }, Changed::Channel { channel_id: 3 }] {
            let map = entry_fields(change)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), redis::Value::BulkString(v.to_string().into_bytes())))
                .collect();
            assert_eq!(parse_entry(&StreamId { id: "1-0".into(), map, ..Default::default() }), Some(change));
        }
        assert_eq!(parse_entry(&StreamId::default()), None);
    }
}
