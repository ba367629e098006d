//! The chat store's change feed on ScyllaDB, its in-process watermark, and deleted channels
//! (schema: `crates/cql/migrations/0004_chat_feed_and_uploads.cql`).
//!
//! Tables (partition key, clustering):
//! - `chat_feed` ((node, slot), event_id ASC) → event: every change a chat process wrote, in
//!   event id order, slot = `unix_ms_of(event_id) / 60_000` (a minute of one process's writes
//!   per partition). The event is the protobuf as logged (chat events carry the chat by id
//!   only), including `chat.removed` changes private to their actor, which no channel log holds.
//! - `chat_feed_slots` ((node, day), slot ASC): the node's non-empty minutes of a day
//!   (day = slot / 1440).
//! - `chat_feed_days` ((node, period), day ASC): its non-empty days of a 365-day period
//!   (period = day / 365), so readers skip idle days and idle minutes without probing them.
//! - `chat_deleted_channels` ((channel_id)): channels whose log holds `channel.deleted`.
//!
//! Per node: the feed is the outbox of the process that wrote it. Each chat process's relays
//! (live delivery, channel activity, the search stream) read their own node's feed with
//! cursors of their own, so replicated chat processes neither deliver each other's changes
//! twice nor move a shared cursor past a change another process is still writing. A node's
//! feed is read by whichever process holds that node id next (a StatefulSet ordinal keeps it;
//! a leased id comes back to a process once its lease is free).
//!
//! Writes: [`feed_writes`] gives the three plain, idempotent INSERTs of one event (feed row,
//! its minute, its day), which the caller puts in the same logged batch as the event's own rows,
//! so an event is in the feed if and only if it is written; the store writes the minute's and
//! the day's rows with the first event of each that it writes (shared by all of a node's events
//! there, they would otherwise be rewritten per event). [`channel_deleted_writes`] likewise for
//! `channel.deleted` (which also queues the channel's uploads for release, see
//! [`super::uploads`]).
//!
//! Order: event ids are minted before their batch is written, so a batch can land after one
//! with a larger id. A reader that saw the larger id and moved its cursor past it would never
//! see the smaller one. [`Inflight`] tracks the ids this process is writing, and [`feed`]
//! returns only ids below every one still in flight (and, when none is, below any id this
//! process could still mint). With the feed per node, this makes every node's feed exact. A
//! failed batch stays in flight while it is retried, for at most [`REPLAY_WINDOW`]. A process
//! that follows another on its node (which may have died with a batch in the batchlog) leaves
//! out the last [`REPLAY_WINDOW`] of the feed for its first [`REPLAY_WINDOW`]
//! ([`Inflight::hold_recent`]), unless that one stopped cleanly with nothing in flight
//! ([`Inflight::quiet`]; see [`super::node`]).
//!
//! Reads walk periods → days → minutes → events, each level bounded by the range asked for,
//! all at LOCAL_QUORUM; a caught-up reader costs three reads per call. The feed is kept
//! forever, as the embedded store keeps it.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use chatmesh_api::chat::v1::ChannelEvent;
use chatmesh_cql::{Cql, CqlError, Statement, Value, statement, values};
use chatmesh_platform::ids::{EPOCH_MS, IdGenerator, now_ms, unix_ms_of};
use prost::Message;
use tokio::time::Instant;

use crate::store::StoreError;

/// A feed partition: one minute.
const SLOT_MS: u64 = 60_000;
const SLOTS_PER_DAY: i64 = 1440;
const DAYS_PER_PERIOD: i64 = 365;
const DAY_MS: u64 = 86_400_000;
/// Feed rows read per query (a larger `limit` or `cap` reads several pages of a minute).
const PAGE: usize = 1000;
/// Bits of an id below its millisecond (node and sequence).
const MS_SHIFT: u32 = 22;

/// How long after a logged batch timed out ScyllaDB's batchlog may still apply it: its replay
/// loop runs every 60 s (`batchlog_manager::replay_interval`) and replays the entries older than
/// twice the write timeout (`write_request_timeout_in_ms`, 2 s by default), so a batch is
/// replayed within ~64 s of its write; two replay intervals leave room for the replay lap's own
/// time. A replay that fails (it writes at CL=ALL: a replica down) is retried a lap later, past
/// this window: such a change reaches its channel's log and history, not the feed's readers.
pub(super) const REPLAY_WINDOW: Duration = Duration::from_secs(120);

static FEED_PUT: Statement =
    statement!("chat.feed_put", idempotent, "INSERT INTO chat_feed (node, slot, event_id, event) VALUES (?, ?, ?, ?)");
static FEED_SLOT_PUT: Statement =
    statement!("chat.feed_slot_put", idempotent, "INSERT INTO chat_feed_slots (node, day, slot) VALUES (?, ?, ?)");
static FEED_DAY_PUT: Statement =
    statement!("chat.feed_day_put", idempotent, "INSERT INTO chat_feed_days (node, period, day) VALUES (?, ?, ?)");
static FEED_DAYS: Statement = statement!(
    "chat.feed_days",
    idempotent,
    "SELECT day FROM chat_feed_days WHERE node = ? AND period = ? AND day >= ? AND day <= ? LIMIT ?"
);
static FEED_LAST_DAYS: Statement = statement!(
    "chat.feed_last_days",
    idempotent,
    "SELECT day FROM chat_feed_days WHERE node = ? AND period = ? ORDER BY day DESC LIMIT ?"
);
static FEED_SLOTS: Statement = statement!(
    "chat.feed_slots",
    idempotent,
    "SELECT slot FROM chat_feed_slots WHERE node = ? AND day = ? AND slot >= ? AND slot <= ? LIMIT ?"
);
static FEED_LAST_SLOTS: Statement = statement!(
    "chat.feed_last_slots",
    idempotent,
    "SELECT slot FROM chat_feed_slots WHERE node = ? AND day = ? ORDER BY slot DESC LIMIT ?"
);
static FEED_EVENTS: Statement = statement!(
    "chat.feed_events",
    idempotent,
    "SELECT event_id, event FROM chat_feed WHERE node = ? AND slot = ? AND event_id > ? AND event_id < ? LIMIT ?"
);
static FEED_IDS: Statement = statement!(
    "chat.feed_ids",
    idempotent,
    "SELECT event_id FROM chat_feed WHERE node = ? AND slot = ? AND event_id > ? AND event_id < ? LIMIT ?"
);
static FEED_LAST: Statement = statement!(
    "chat.feed_last",
    idempotent,
    "SELECT event_id FROM chat_feed WHERE node = ? AND slot = ? ORDER BY event_id DESC LIMIT ?"
);
static DELETED_PUT: Statement = statement!(
    "chat.feed_channel_deleted_put",
    idempotent,
    "INSERT INTO chat_deleted_channels (channel_id, deleted) VALUES (?, ?)"
);
static DELETED_GET: Statement = statement!(
    "chat.feed_channel_deleted",
    idempotent,
    "SELECT deleted FROM chat_deleted_channels WHERE channel_id = ?"
);

/// Every statement of the feed (prepared at start, covered by the golden files).
pub(super) static STATEMENTS: &[&Statement] = &[
    &FEED_PUT,
    &FEED_SLOT_PUT,
    &FEED_DAY_PUT,
    &FEED_DAYS,
    &FEED_LAST_DAYS,
    &FEED_SLOTS,
    &FEED_LAST_SLOTS,
    &FEED_EVENTS,
    &FEED_IDS,
    &FEED_LAST,
    &DELETED_PUT,
    &DELETED_GET,
];

fn backend(e: CqlError) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The minute of an id.
fn slot_of(id: u64) -> i64 {
    (unix_ms_of(id) / SLOT_MS) as i64
}

pub(super) fn day_of_slot(slot: i64) -> i64 {
    slot / SLOTS_PER_DAY
}

fn period_of_day(day: i64) -> i32 {
    (day / DAYS_PER_PERIOD) as i32
}

/// The smallest id minted in the millisecond `ms` (0 before the id epoch).
fn first_id_at(ms: u64) -> u64 {
    let since = ms.saturating_sub(EPOCH_MS);
    // why: far-future clocks (tests) must not overflow; ids stay below 2^63.
    if since >= 1 << (63 - MS_SHIFT) { i64::MAX as u64 } else { since << MS_SHIFT }
}

/// An id as a bigint bound, clamped to the bigint range.
fn bound(id: u64) -> i64 {
    id.min(i64::MAX as u64) as i64
}

/// Event ids this process is writing: the in-process watermark of the feed.
///
/// Every event id must be registered before its write starts and stay registered until the
/// write has finished (success or not): take it with [`Inflight::allocate`], or mint it and
/// call [`Inflight::begin`] at once. [`feed`] then never returns an id at or above the smallest
/// registered one, nor one this process could still mint, nor (for [`REPLAY_WINDOW`] after
/// [`Inflight::hold_recent`]) one of the last [`REPLAY_WINDOW`]: a process that died may have left
/// a batch of this node in the batchlog, which can still land there.
#[derive(Debug)]
pub(super) struct Inflight {
    state: Arc<Mutex<Running>>,
    /// Unix milliseconds now (a fixed clock in golden tests).
    clock: fn() -> u64,
}

#[derive(Debug, Default)]
struct Running {
    /// Registered ids → how many guards hold each.
    ids: BTreeMap<u64, u32>,
    /// The largest id ever registered.
    high: u64,
    /// Until when reads leave out the ids of the last [`REPLAY_WINDOW`].
    recent_held_until: Option<Instant>,
}

/// An event id's write in flight; dropping it marks the write finished.
#[derive(Debug)]
#[must_use = "the id counts as in flight until the guard is dropped"]
pub(super) struct InflightGuard {
    state: Arc<Mutex<Running>>,
    event_id: u64,
}

impl Default for Inflight {
    fn default() -> Self {
        Self::new()
    }
}

fn lock(state: &Mutex<Running>) -> MutexGuard<'_, Running> {
    // why: the map stays consistent whatever panicked while holding it
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inflight {
    pub(super) fn new() -> Self {
        Self::with_clock(now_ms)
    }

    /// With `clock` for "now" in Unix milliseconds (a fixed one in golden tests).
    pub(super) fn with_clock(clock: fn() -> u64) -> Self {
        Inflight { state: Arc::default(), clock }
    }

    /// Registers `event_id` as being written until the guard drops. Register an id as soon as
    /// it is minted: an id minted earlier but registered after a later one finished could be
    /// passed by a reader (use [`Inflight::allocate`], which cannot, where possible).
    pub(super) fn begin(&self, event_id: u64) -> InflightGuard {
        let mut running = lock(&self.state);
        Self::register(&mut running, event_id);
        InflightGuard { state: self.state.clone(), event_id }
    }

    /// Mints an event id from `ids` and registers it in one step, so no reader can pass it.
    pub(super) fn allocate(&self, ids: &IdGenerator) -> InflightGuard {
        let mut running = lock(&self.state);
        let event_id = ids.next_id();
        Self::register(&mut running, event_id);
        InflightGuard { state: self.state.clone(), event_id }
    }

    fn register(running: &mut Running, event_id: u64) {
        *running.ids.entry(event_id).or_default() += 1;
        running.high = running.high.max(event_id);
    }

    /// The smallest event id in flight, if any (readers use [`Inflight::visible_below`], which
    /// also bounds ids not minted yet, under the same lock).
    #[cfg(test)]
    pub(super) fn horizon(&self) -> Option<u64> {
        lock(&self.state).ids.keys().next().copied()
    }

    /// For the next [`REPLAY_WINDOW`], reads leave out the ids of the last [`REPLAY_WINDOW`]
    /// (before the first write or read of a process whose node an earlier process wrote: a batch
    /// that process left in the batchlog may still land below a cursor that moved on).
    pub(super) fn hold_recent(&self) {
        lock(&self.state).recent_held_until = Some(Instant::now() + REPLAY_WINDOW);
    }

    /// Whether nothing this process wrote can still land in the feed: no id in flight (a write
    /// running, or a failed batch held while it is retried) and no replay window of an earlier
    /// process being waited out ([`Inflight::hold_recent`]).
    pub(super) fn quiet(&self) -> bool {
        let running = lock(&self.state);
        running.ids.is_empty() && running.recent_held_until.is_none_or(|until| Instant::now() >= until)
    }

    /// The largest id ever registered (0 before the first).
    pub(super) fn high(&self) -> u64 {
        lock(&self.state).high
    }

    /// What a feed read may return: ids strictly below this. With writes in flight, the smallest
    /// of them; otherwise the next id this process can mint: above every id it registered, and
    /// not in the current millisecond (an id minted from now on is at least its first id). While
    /// [`Inflight::hold_recent`] holds, below the first id of [`REPLAY_WINDOW`] ago too.
    fn visible_below(&self) -> u64 {
        let running = lock(&self.state);
        let now = (self.clock)();
        let below = match running.ids.keys().next() {
            Some(first) => *first,
            None => running.high.saturating_add(1).max(first_id_at(now)),
        };
        match running.recent_held_until {
            Some(until) if Instant::now() < until => {
                below.min(first_id_at(now.saturating_sub(REPLAY_WINDOW.as_millis() as u64)))
            }
            _ => below,
        }
    }
}

impl InflightGuard {
    pub(super) fn event_id(&self) -> u64 {
        self.event_id
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let mut running = lock(&self.state);
        if let Some(count) = running.ids.get_mut(&self.event_id) {
            *count -= 1;
            if *count == 0 {
                running.ids.remove(&self.event_id);
            }
        }
    }
}

type Write = (&'static Statement, Vec<Value>);

/// The writes that put `event` (its `event_id` set) into the feed: its [`feed_row`], its minute's
/// [`minute_row`] and its day's [`day_row`]. Add them to the logged batch that writes the event
/// itself (the store writes a minute's and a day's rows once per process, with the first event
/// there it writes: they are rewritten alike by every event of a node's minute or year).
#[cfg(test)]
pub(super) fn feed_writes(node: i32, event: &ChannelEvent) -> Vec<Write> {
    let (slot, row) = feed_row(node, event);
    vec![row, minute_row(node, slot), day_row(node, day_of_slot(slot))]
}

/// The feed row of `event` and its minute (slot). A `chat.removed` change private to its actor
/// goes to the feed only (never to the channel's log). An event without a valid id is a bug: it
/// is written as id 0, which no reader returns.
pub(super) fn feed_row(node: i32, event: &ChannelEvent) -> (i64, Write) {
    let event_id = event.event_id.parse::<u64>().unwrap_or_else(|e| {
        tracing::error!(event_id = %event.event_id, error = %e, "a feed event without a valid id");
        0
    });
    let slot = slot_of(event_id);
    (slot, (&FEED_PUT, values![node, slot, event_id, event.encode_to_vec()]))
}

/// The row listing minute `slot` as non-empty in its day.
pub(super) fn minute_row(node: i32, slot: i64) -> Write {
    (&FEED_SLOT_PUT, values![node, day_of_slot(slot), slot])
}

/// The row listing `day` as non-empty in its period.
pub(super) fn day_row(node: i32, day: i64) -> Write {
    (&FEED_DAY_PUT, values![node, period_of_day(day), day])
}

/// The writes recording that `channel_id`'s log now holds `channel.deleted`: add them to the
/// logged batch that writes that event (`hour`: of its id, see [`super::uploads::hour_of`]).
/// They also queue the channel's uploads for release, which
/// [`super::uploads::reclaimable_uploads`] finishes (or [`super::uploads::release_channel`] at
/// once, after the batch).
pub(super) fn channel_deleted_writes(channel_id: u64, hour: i64) -> Vec<Write> {
    let mut writes = vec![(&DELETED_PUT, values![channel_id, true])];
    writes.extend(super::uploads::channel_release_writes(channel_id, hour));
    writes
}

/// Whether the channel's log holds `channel.deleted`. The channel service never writes to a
/// channel after deleting it, so this is "ends with" as the trait states it.
pub(super) async fn channel_deleted(cql: &Cql, channel_id: u64) -> Result<bool, StoreError> {
    let row: Option<(Option<bool>,)> = cql.row(&DELETED_GET, values![channel_id]).await.map_err(backend)?;
    Ok(row.and_then(|(deleted,)| deleted).unwrap_or(false))
}

/// Up to `limit` changes after `after_event` in event id order, chats as they are now (filled
/// in by [`super::read::hydrate`], as for a channel's log). Leaves out ids this process may still
/// commit below (see [`Inflight`]).
pub(super) async fn feed(
    cql: &Cql,
    inflight: &Inflight,
    node: i32,
    after_event: u64,
    limit: usize,
) -> Result<Vec<ChannelEvent>, StoreError> {
    let below = inflight.visible_below();
    let mut walk = Walk { cql, node, after: after_event, below, limit, count: 0, events: Vec::new() };
    walk.run(slot_of(below.saturating_sub(1)), true).await?;
    let events = walk
        .events
        .into_iter()
        .map(|(id, bytes)| {
            ChannelEvent::decode(bytes.as_slice())
                .map_err(|e| StoreError::Backend(format!("chat feed: event {id} does not decode: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    super::read::hydrate(cql, events).await
}

/// How many feed entries follow `after_event`, counting up to `cap`.
pub(super) async fn feed_count(cql: &Cql, node: i32, after_event: u64, cap: u64) -> Result<u64, StoreError> {
    feed_count_at(cql, node, after_event, cap, now_ms()).await
}

async fn feed_count_at(cql: &Cql, node: i32, after_event: u64, cap: u64, now: u64) -> Result<u64, StoreError> {
    let limit = usize::try_from(cap).unwrap_or(usize::MAX);
    let mut walk = Walk { cql, node, after: after_event, below: u64::MAX, limit, count: 0, events: Vec::new() };
    // why: up to tomorrow, for clocks ahead of ours
    walk.run(((now + DAY_MS) / SLOT_MS) as i64, false).await?;
    Ok(walk.count as u64)
}

/// The newest event id of the feed (0 when empty).
pub(super) async fn feed_head(cql: &Cql, node: i32) -> Result<u64, StoreError> {
    feed_head_at(cql, node, now_ms()).await
}

/// [`feed_head`] with `now` for the wall clock (Unix ms).
pub(super) async fn feed_head_at(cql: &Cql, node: i32, now: u64) -> Result<u64, StoreError> {
    // why: from tomorrow's period (clocks ahead of ours) back to the id epoch's
    let newest = period_of_day(day_of_slot(((now + DAY_MS) / SLOT_MS) as i64));
    let oldest = period_of_day(day_of_slot(slot_of(0)));
    for period in (oldest..=newest).rev() {
        let days: Vec<(i64,)> =
            cql.rows(&FEED_LAST_DAYS, values![node, period, DAYS_PER_PERIOD as i32 + 1]).await.map_err(backend)?;
        for (day,) in days {
            let slots: Vec<(i64,)> =
                cql.rows(&FEED_LAST_SLOTS, values![node, day, SLOTS_PER_DAY as i32]).await.map_err(backend)?;
            for (slot,) in slots {
                // why: a day or minute recorded by a batch whose feed row is not visible yet
                // (logged batches are atomic, not isolated) is skipped, not an error
                if let Some((id,)) = cql.row::<(i64,)>(&FEED_LAST, values![node, slot, 1i32]).await.map_err(backend)? {
                    return Ok(chatmesh_cql::id(id));
                }
            }
        }
    }
    Ok(0)
}

/// One read of the feed: ids in (after, below), up to `limit` of them, counted and, when
/// asked, with their events.
struct Walk<'a> {
    cql: &'a Cql,
    node: i32,
    after: u64,
    below: u64,
    limit: usize,
    count: usize,
    events: Vec<(i64, Vec<u8>)>,
}

impl Walk<'_> {
    /// Walks the non-empty periods, days and minutes up to `last_slot`, in order.
    async fn run(&mut self, last_slot: i64, with_events: bool) -> Result<(), StoreError> {
        let below = self.below.min(i64::MAX as u64);
        if self.limit == 0 || self.after.saturating_add(1) >= below {
            return Ok(());
        }
        let first_slot = slot_of(self.after + 1);
        let last_slot = last_slot.min(slot_of(below - 1));
        if first_slot > last_slot {
            return Ok(());
        }
        let (first_day, last_day) = (day_of_slot(first_slot), day_of_slot(last_slot));
        for period in period_of_day(first_day)..=period_of_day(last_day) {
            let days: Vec<(i64,)> = self
                .cql
                .rows(&FEED_DAYS, values![self.node, period, first_day, last_day, DAYS_PER_PERIOD as i32 + 1])
                .await
                .map_err(backend)?;
            for (day,) in days {
                let slots: Vec<(i64,)> = self
                    .cql
                    .rows(&FEED_SLOTS, values![self.node, day, first_slot, last_slot, SLOTS_PER_DAY as i32])
                    .await
                    .map_err(backend)?;
                for (slot,) in slots {
                    if self.slot(slot, below, with_events).await? {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads one minute in pages; returns whether the limit is reached.
    async fn slot(&mut self, slot: i64, below: u64, with_events: bool) -> Result<bool, StoreError> {
        let mut from = bound(self.after);
        loop {
            let want = (self.limit - self.count).min(PAGE);
            let bounds = values![self.node, slot, from, bound(below), want as i32];
            let got = if with_events {
                let rows: Vec<(i64, Vec<u8>)> = self.cql.rows(&FEED_EVENTS, bounds).await.map_err(backend)?;
                let got = rows.len();
                from = rows.last().map_or(from, |(id, _)| *id);
                self.events.extend(rows);
                got
            } else {
                let rows: Vec<(i64,)> = self.cql.rows(&FEED_IDS, bounds).await.map_err(backend)?;
                from = rows.last().map_or(from, |(id,)| *id);
                rows.len()
            };
            self.count += got;
            if self.count == self.limit {
                return Ok(true);
            }
            if got < want {
                return Ok(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chatmesh_api::chat::v1::{EventType, channel_event::Payload};
    use chatmesh_cql::{BatchKind, Call, MemoryCql};

    use super::*;

    /// The node these tests write as.
    const NODE: i32 = 3;

    /// 2025-06-15T15:06:40Z.
    const NOW: u64 = 1_750_000_000_000;

    /// The id minted at `ms` with sequence `seq` (node 1).
    fn id_at(ms: u64, seq: u64) -> u64 {
        ((ms - EPOCH_MS) << MS_SHIFT) | (1 << 12) | seq
    }

    fn event(event_id: u64, channel: u64, kind: EventType, actor: u64) -> ChannelEvent {
        ChannelEvent {
            event_id: event_id.to_string(),
            channel_id: channel.to_string(),
            r#type: kind as i32,
            actor_id: actor.to_string(),
            idempotency_key: format!("k{event_id}"),
            payload: Some(Payload::Chat(chatmesh_api::chat::v1::Chat {
                chat_id: "42".into(),
                channel_id: channel.to_string(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    async fn write(cql: &Cql, events: &[ChannelEvent]) {
        for e in events {
            cql.batch(BatchKind::Logged, feed_writes(NODE, e)).await.unwrap();
        }
    }

    fn fixed() -> Inflight {
        Inflight::with_clock(|| NOW)
    }

    fn ids(events: &[ChannelEvent]) -> Vec<u64> {
        events.iter().map(|e| e.event_id.parse().unwrap()).collect()
    }

    /// Events in two minutes of one day and one of the next day (and one of a year before).
    fn scene_events() -> Vec<ChannelEvent> {
        vec![
            event(id_at(NOW - 400 * DAY_MS, 0), 1, EventType::ChatCreated, 7),
            event(id_at(NOW - DAY_MS, 0), 1, EventType::ChatCreated, 7),
            event(id_at(NOW - DAY_MS, 1), 2, EventType::ChatCreated, 7),
            event(id_at(NOW - DAY_MS + SLOT_MS, 0), 1, EventType::ChatRemoved, 8),
            event(id_at(NOW - 5_000, 0), 2, EventType::MemberJoined, 9),
        ]
    }

    use chatmesh_cql::golden::taken;

    #[tokio::test]
    async fn the_feed_runs_in_id_order_across_minutes_days_and_periods() {
        let cql = Cql::memory(MemoryCql::migrated());
        let events = scene_events();
        // written out of order: the feed is ordered by id, not by write
        write(&cql, &[events[4].clone(), events[1].clone(), events[0].clone(), events[3].clone(), events[2].clone()])
            .await;
        let inflight = fixed();
        let all = feed(&cql, &inflight, NODE, 0, 100).await.unwrap();
        assert_eq!(all, events, "every event, as logged, in id order");
        assert_eq!(ids(&feed(&cql, &inflight, NODE, ids(&events)[1], 2).await.unwrap()), ids(&events)[2..4]);
        assert!(feed(&cql, &inflight, NODE, ids(&events)[4], 10).await.unwrap().is_empty());
        assert!(feed(&cql, &inflight, NODE, u64::MAX, 10).await.unwrap().is_empty());
        assert!(feed(&cql, &inflight, NODE, 0, 0).await.unwrap().is_empty());
        assert_eq!(feed_head_at(&cql, NODE, NOW).await.unwrap(), ids(&events)[4]);
        assert_eq!(feed_count_at(&cql, NODE, 0, 100, NOW).await.unwrap(), 5);
        assert_eq!(feed_count_at(&cql, NODE, 0, 3, NOW).await.unwrap(), 3, "counted up to the cap");
        assert_eq!(feed_count_at(&cql, NODE, ids(&events)[2], 100, NOW).await.unwrap(), 2);
        assert_eq!(feed_count_at(&cql, NODE, 0, 0, NOW).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn an_empty_feed_has_head_zero() {
        let cql = Cql::memory(MemoryCql::migrated());
        assert_eq!(feed_head(&cql, NODE).await.unwrap(), 0);
        assert_eq!(feed_count(&cql, NODE, 0, 10).await.unwrap(), 0);
        assert!(feed(&cql, &Inflight::new(), NODE, 0, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn pages_of_a_busy_minute_are_read_whole() {
        let cql = Cql::memory(MemoryCql::migrated());
        let events: Vec<ChannelEvent> =
            (0..(PAGE as u64 * 2 + 5)).map(|i| event(id_at(NOW - 10_000, i), 1, EventType::ChatCreated, 7)).collect();
        write(&cql, &events).await;
        let inflight = fixed();
        assert_eq!(feed(&cql, &inflight, NODE, 0, PAGE * 3).await.unwrap().len(), PAGE * 2 + 5);
        assert_eq!(feed(&cql, &inflight, NODE, 0, PAGE + 1).await.unwrap(), events[..PAGE + 1]);
        assert_eq!(feed_count_at(&cql, NODE, 0, u64::MAX, NOW).await.unwrap(), PAGE as u64 * 2 + 5);
    }

    #[tokio::test]
    async fn the_feed_stops_below_writes_in_flight_and_ids_yet_to_be_minted() {
        let cql = Cql::memory(MemoryCql::migrated());
        let ids_gen = IdGenerator::new(1).unwrap();
        let inflight = Inflight::new();
        let slow = inflight.allocate(&ids_gen);
        let fast = inflight.allocate(&ids_gen);
        assert!(slow.event_id() < fast.event_id());
        assert_eq!(inflight.horizon(), Some(slow.event_id()));
        // the later id commits first: a reader must not pass the earlier one
        write(&cql, &[event(fast.event_id(), 1, EventType::ChatCreated, 7)]).await;
        drop(fast);
        assert!(feed(&cql, &inflight, NODE, 0, 10).await.unwrap().is_empty(), "held back behind the slower write");
        write(&cql, &[event(slow.event_id(), 2, EventType::ChatCreated, 7)]).await;
        drop(slow);
        assert_eq!(inflight.horizon(), None);
        assert_eq!(feed(&cql, &inflight, NODE, 0, 10).await.unwrap().len(), 2, "both once nothing is in flight");

        let begun = inflight.begin(5);
        let again = inflight.begin(5);
        drop(begun);
        assert_eq!(inflight.horizon(), Some(5), "held while any guard of the id lives");
        drop(again);
        assert_eq!(inflight.horizon(), None);
    }

    #[tokio::test]
    async fn a_fresh_process_does_not_pass_ids_of_the_current_millisecond() {
        let inflight = fixed();
        assert_eq!(inflight.visible_below(), first_id_at(NOW));
        let guard = inflight.begin(id_at(NOW, 7));
        drop(guard);
        assert_eq!(inflight.visible_below(), id_at(NOW, 7) + 1, "after its own ids once they are written");
        assert_eq!(first_id_at(u64::MAX), i64::MAX as u64);
        assert_eq!(first_id_at(0), 0);
    }

    #[tokio::test]
    async fn deleted_channels_are_known() {
        let cql = Cql::memory(MemoryCql::migrated());
        assert!(!channel_deleted(&cql, 2).await.unwrap());
        cql.batch(BatchKind::Logged, channel_deleted_writes(2, super::super::uploads::hour_of(NOW))).await.unwrap();
        assert!(channel_deleted(&cql, 2).await.unwrap());
        assert!(!channel_deleted(&cql, 1).await.unwrap());
    }

    #[test]
    fn slot_arithmetic_holds_for_every_id() {
        for id in [0, 1, 4, u64::MAX >> 1, u64::MAX] {
            let slot = slot_of(id);
            assert!(slot > 0 && period_of_day(day_of_slot(slot)) > 0, "{id}");
        }
    }

    // golden: the calls of each operation, on a scene written beforehand

    async fn scene() -> (Cql, Arc<Mutex<Vec<Call>>>) {
        let memory = MemoryCql::migrated();
        write(&Cql::memory(memory.clone()), &scene_events()).await;
        Cql::memory(memory).recording()
    }

    async fn writes() -> Vec<Call> {
        let (cql, log) = Cql::memory(MemoryCql::migrated()).recording();
        write(&cql, &scene_events()[4..]).await;
        cql.batch(BatchKind::Logged, channel_deleted_writes(2, super::super::uploads::hour_of(NOW))).await.unwrap();
        taken(&log)
    }

    async fn feed_read() -> Vec<Call> {
        let (cql, log) = scene().await;
        // from the day before: the idle minutes and the next day are skipped
        let after = ids(&scene_events())[1];
        assert_eq!(feed(&cql, &fixed(), NODE, after, 2).await.unwrap().len(), 2);
        taken(&log)
    }

    async fn feed_head_read() -> Vec<Call> {
        let (cql, log) = scene().await;
        assert_eq!(feed_head_at(&cql, NODE, NOW).await.unwrap(), ids(&scene_events())[4]);
        taken(&log)
    }

    async fn feed_count_read() -> Vec<Call> {
        let (cql, log) = scene().await;
        assert_eq!(feed_count_at(&cql, NODE, 0, 4, NOW).await.unwrap(), 4);
        taken(&log)
    }

    async fn channel_deleted_read() -> Vec<Call> {
        let (cql, log) = scene().await;
        assert!(!channel_deleted(&cql, 2).await.unwrap());
        taken(&log)
    }

    chatmesh_cql::golden_files!(
        prefix: "feed_",
        statements: super::STATEMENTS,
        also: [],
        [
        writes => "writes",
        feed_read => "feed",
        feed_head_read => "feed_head",
        feed_count_read => "feed_count",
        channel_deleted_read => "channel_deleted",
        ]
    );
}
