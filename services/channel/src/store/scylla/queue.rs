//! The outbox as a queue of time buckets (`channel_outbox_queue`, migration 0006): where a
//! change's events are written, how a relay lists them without scanning the tombstones of what
//! was delivered long ago, and how delivered entries are deleted.
//!
//! An entry's seq is minted before its change commits, and the entry is written only when the
//! change is finished, which may be much later (the next change of the channel finishes a change
//! whose process stopped; a reader finishes one after [`super::READER_FINISHES_AFTER_US`]). So
//! a seq says nothing about when its row appears, and no position in seq order is safe to start
//! a listing from. The write time is: an entry goes to the bucket of the moment it is written
//! (the writer's clock), and a write acknowledged more than [`WRITE_DEADLINE_US`] after its
//! bucket was chosen counts as failed (the change keeps its pending writes, which are written
//! again later, into a newer bucket). A bucket that ended [`CLOSE_AFTER_MS`] ago therefore
//! receives nothing more, as long as clocks agree within `CLOSE_AFTER_MS - WRITE_DEADLINE_US`
//! (20 s). A relay lists the buckets from the first open one (`channel_outbox_progress`) to the
//! current one and moves the first open one past every closed bucket it found empty: a listing
//! reads a handful of partitions and scans only the tombstones of the entries delivered in the
//! last ~50 s (and of a backlog, while there is one).
//!
//! Deleting needs an entry's bucket, which its seq does not give: the relay remembers where each
//! entry it listed lies, and deletes it there (with a timestamp at least its write timestamp, so
//! the delete wins over the row however far the writer's clock ran ahead). An entry it did not
//! list is left; it is listed and delivered again, which the chat service's log ignores (it
//! appends each idempotency key once). An entry written twice (a change finished by its process
//! and by a reader) is listed once and deleted in both buckets.

use std::collections::{BTreeMap, HashMap, HashSet};

use chatmesh_cql::{BatchKind, id, values};

use super::{
    ScyllaChannelStore,
    rows::{Item, LEGACY_OUTBOX_SHARD, MAX_ID, backend, limit_of},
    statements::*,
};
use crate::store::{OutboxEntry, StoreError};

/// A bucket's width: entries written within it share a partition.
pub(super) const BUCKET_MS: i64 = 10_000;
/// How long after its bucket was chosen a queue write may be acknowledged and still count:
/// twice the default request timeout (as for readers finishing a change).
pub(super) const WRITE_DEADLINE_US: i64 = 10_000_000;
/// How long after its end a bucket may still receive a write: the write deadline plus 20 s of
/// clock skew between processes.
pub(super) const CLOSE_AFTER_MS: i64 = 30_000;
/// Buckets one listing reads at most (a relay catching up after a long stop goes on at the next).
const MAX_BUCKETS_PER_LISTING: i64 = 360;
/// How often the outbox of older versions is looked at once it was found empty.
const LEGACY_EVERY_MS: i64 = 60_000;
/// Listed entries remembered for their delete; past this, forgotten (they are listed again).
const MAX_LISTED: usize = 10_000;
/// Rows per queue write and per delete batch (each batch is on one partition).
const ROWS_PER_BATCH: usize = 64;
/// The key of the one progress row.
const QUEUE: i32 = 0;

/// The bucket `unix_ms` falls in: its start, in unix ms.
pub(super) fn bucket_of(unix_ms: i64) -> i64 {
    unix_ms - unix_ms.rem_euclid(BUCKET_MS)
}

/// A relay's position and what it listed.
#[derive(Debug, Default)]
pub(super) struct Relay {
    /// The first bucket that may hold undelivered entries or receive writes (`None`: not read).
    first_open: Option<i64>,
    /// Where each listed entry lies.
    listed: HashMap<u64, Vec<Place>>,
    /// When to look at the outbox of older versions again (unix ms).
    legacy_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Queue { bucket: i64, at_us: i64 },
    Legacy,
}

impl ScyllaChannelStore {
    fn now_ms(&self) -> i64 {
        self.clock.now_us().div_euclid(1000)
    }

    /// Writes outbox entries into the current bucket, stamped `at_us` (their change's commit).
    pub(super) async fn enqueue(&self, events: &[(u64, &[u8])], at_us: i64) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        // why: relays start from the progress row, so it exists before anything is queued
        self.queue_started.get_or_try_init(|| async { self.first_open().await.map(|_| ()) }).await?;
        for chunk in events.chunks(ROWS_PER_BATCH) {
            let (chosen, started) = (self.clock.now_us(), tokio::time::Instant::now());
            let bucket = bucket_of(chosen.div_euclid(1000));
            let rows: Vec<Item> = chunk
                .iter()
                .map(|(seq, event)| -> Item { (&PUT_QUEUED, values![bucket, *seq, *event, at_us, at_us]) })
                .collect();
            self.cql.batch(BatchKind::Unlogged, rows).await.map_err(backend)?;
            // why: the wall clock may step back during the write; the monotonic one cannot
            let monotonic_us = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
            let took_us = self.clock.now_us().saturating_sub(chosen).max(monotonic_us);
            if took_us > WRITE_DEADLINE_US {
                // why: relays may have closed the bucket meanwhile; the change stays pending and
                // its entries are written again, into a newer one
                return Err(StoreError::Backend(format!(
                    "outbox entries acknowledged {} ms after bucket {bucket} was chosen",
                    took_us / 1000
                )));
            }
        }
        Ok(())
    }

    /// The first open bucket as stored, creating the row (a closing window back from now) if
    /// there is none: nothing was queued before it.
    async fn first_open(&self) -> Result<i64, StoreError> {
        if let Some((first,)) = self.cql.row::<(i64,)>(&GET_PROGRESS, values![QUEUE]).await.map_err(backend)? {
            return Ok(first);
        }
        let start = bucket_of(self.now_ms() - CLOSE_AFTER_MS);
        // why: not applied means another process created it first; theirs is read below
        self.cql.lwt(&START_PROGRESS, values![QUEUE, start]).await.map_err(backend)?;
        let row = self.cql.row::<(i64,)>(&GET_PROGRESS, values![QUEUE]).await.map_err(backend)?;
        row.map(|(first,)| first).ok_or_else(|| StoreError::Backend("the outbox progress row is missing".into()))
    }

    /// Entries after `after_seq` (by seq within each bucket), the older buckets first.
    pub(super) async fn list_queue(
        &self,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        if limit == 0 || after_seq.is_some_and(|seq| seq >= MAX_ID) {
            return Ok(Vec::new());
        }
        let mut relay = self.relay.lock().await;
        let now_ms = self.now_ms();
        let mut found = self.list_legacy(&mut relay, after_seq, limit, now_ms).await;
        let first = match relay.first_open {
            Some(first) => first,
            None => self.first_open().await?,
        };
        let after = after_seq.map_or(-1, |seq| seq as i64);
        let last = bucket_of(now_ms).min(first + (MAX_BUCKETS_PER_LISTING - 1) * BUCKET_MS);
        let mut open = first;
        let mut bucket = first;
        while bucket <= last && found.len() < limit {
            let rows: Vec<(i64, Vec<u8>, i64)> = self
                .cql
                .rows(&LIST_QUEUE, values![bucket, after, limit_of(limit - found.len())])
                .await
                .map_err(backend)?;
            let closed = bucket + BUCKET_MS + CLOSE_AFTER_MS <= now_ms;
            // why: only a listing from the start proves a bucket empty
            if open == bucket && closed && rows.is_empty() && after_seq.is_none() {
                open = bucket + BUCKET_MS;
            }
            found.extend(rows.into_iter().map(|(seq, event, at_us)| (id(seq), event, Place::Queue { bucket, at_us })));
            bucket += BUCKET_MS;
        }
        relay.first_open = Some(open);
        if open > first {
            // why: not applied means another relay moved it as far or further; failing leaves it
            // behind, which only costs reads
            if let Err(e) = self.cql.lwt(&ADVANCE_PROGRESS, values![open, QUEUE, open]).await {
                tracing::warn!(first_open = open, error = %e, "could not record the outbox relay's progress");
            }
        }
        Ok(relay.remember(found))
    }

    /// A page of the outbox older versions wrote (`channel_outbox`), while it has entries, then
    /// once a minute (a process of an older version may still write there during an upgrade).
    async fn list_legacy(
        &self,
        relay: &mut Relay,
        after_seq: Option<u64>,
        limit: usize,
        now_ms: i64,
    ) -> Vec<(u64, Vec<u8>, Place)> {
        if now_ms < relay.legacy_at_ms {
            return Vec::new();
        }
        let from = after_seq.map_or(0, |seq| seq + 1);
        let page = values![LEGACY_OUTBOX_SHARD, from, limit_of(limit)];
        match self.cql.rows::<(i64, Vec<u8>)>(&LIST_OUTBOX, page).await {
            Ok(rows) if !rows.is_empty() => {
                rows.into_iter().map(|(seq, event)| (id(seq), event, Place::Legacy)).collect()
            }
            Ok(_) => {
                relay.legacy_at_ms = now_ms + LEGACY_EVERY_MS;
                Vec::new()
            }
            Err(e) => {
                // why: its tombstones (up to gc_grace of them) may fail the read; the queue goes on
                tracing::warn!(error = %e, "could not list the outbox of an older version; trying again in a minute");
                relay.legacy_at_ms = now_ms + LEGACY_EVERY_MS;
                Vec::new()
            }
        }
    }

    /// Deletes delivered entries where this store listed them.
    pub(super) async fn delete_listed(&self, seqs: &[u64]) -> Result<(), StoreError> {
        let mut relay = self.relay.lock().await;
        let stamp = self.clock.stamp();
        let mut by_bucket: BTreeMap<i64, Vec<Item>> = BTreeMap::new();
        let mut legacy: Vec<Item> = Vec::new();
        for seq in seqs {
            let Some(places) = relay.listed.get(seq) else {
                tracing::debug!(seq, "not listed here: left to be listed and delivered again");
                continue;
            };
            for place in places {
                match *place {
                    Place::Queue { bucket, at_us } => by_bucket
                        .entry(bucket)
                        .or_default()
                        .push((&DELETE_QUEUED, values![stamp.max(at_us), bucket, *seq])),
                    Place::Legacy => legacy.push((&DELETE_OUTBOX, values![LEGACY_OUTBOX_SHARD, *seq])),
                }
            }
        }
        for items in by_bucket.into_values().chain([legacy]) {
            for chunk in items.chunks(ROWS_PER_BATCH) {
                self.cql.batch(BatchKind::Unlogged, chunk.to_vec()).await.map_err(backend)?;
            }
        }
        for seq in seqs {
            relay.listed.remove(seq);
        }
        Ok(())
    }
}

impl Relay {
    /// Records where each found entry lies; answers each seq once.
    fn remember(&mut self, found: Vec<(u64, Vec<u8>, Place)>) -> Vec<OutboxEntry> {
        if self.listed.len() + found.len() > MAX_LISTED {
            self.listed.clear();
        }
        let mut answered = HashSet::new();
        let mut entries = Vec::new();
        for (seq, event, place) in found {
            let places = self.listed.entry(seq).or_default();
            if !places.contains(&place) {
                places.push(place);
            }
            if answered.insert(seq) {
                entries.push(OutboxEntry { seq, event });
            }
        }
        entries
    }
}
