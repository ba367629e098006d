//! Reads of the chat store on ScyllaDB: pages of history walking a channel's non-empty buckets,
//! removed-for-me marks read per page, unread counts, scans of the channel registry, and logged
//! events filled in with their chats as they are now.

use std::collections::{BTreeSet, HashMap, VecDeque};

use chatmesh_api::chat::v1::{ChannelEvent, channel_event::Payload};
use chatmesh_cql::{Cql, Statement, values};
use futures::{StreamExt, TryStreamExt};

use super::{
    ScyllaChatStore, bound, bucket, cql_error, decode_chat, decode_event, kind_name, limit, parse_id,
    statements::{
        CHANNELS_IN_SLOT, CHAT_BUCKETS_DOWN, CHAT_BUCKETS_UP, CHAT_IDS_AT_OR_BEFORE, CHATS_AFTER, CHATS_BEFORE,
        EVENT_BUCKETS_UP, EVENTS_AFTER, GET_CHAT, GET_CHAT_CHANNEL, GET_LEGACY_POINTER, GET_POINTER, REMOVED_BY,
        REMOVED_IN_RANGE, SHARDS_AFTER, SLOTS_IN_SHARD, UNREAD_AFTER,
    },
};
use crate::{
    model::{ChatKind, ChatRecord, ReadPointer},
    store::StoreError,
};

/// Rows read per query when a loop pages through a partition.
pub(super) const PAGE: usize = 500;
/// Buckets read per query.
const BUCKET_PAGE: i32 = 64;
/// Chat reads in flight while a page of events is filled in.
const HYDRATE_READS: usize = 32;
/// Channels read per query when a scan walks a slot of the channel registry.
const CHANNEL_PAGE: i32 = 64;

/// Iterates a channel's non-empty buckets from `from` (inclusive) one way, a page at a time.
struct Buckets {
    stmt: &'static Statement,
    channel: u64,
    up: bool,
    next: Option<i32>,
    queue: VecDeque<i32>,
}

impl Buckets {
    fn new(stmt: &'static Statement, channel: u64, from: i32, up: bool) -> Self {
        Buckets { stmt, channel, up, next: Some(from), queue: VecDeque::new() }
    }

    async fn next(&mut self, cql: &Cql) -> Result<Option<i32>, StoreError> {
        if self.queue.is_empty()
            && let Some(from) = self.next.take()
        {
            let rows: Vec<(i32,)> =
                cql.rows(self.stmt, values![self.channel, from, BUCKET_PAGE]).await.map_err(cql_error)?;
            if rows.len() == BUCKET_PAGE as usize
                && let Some((last,)) = rows.last()
            {
                self.next = if self.up { last.checked_add(1) } else { last.checked_sub(1) };
            }
            self.queue.extend(rows.into_iter().map(|(b,)| b));
        }
        Ok(self.queue.pop_front())
    }
}

/// Which way a page of history runs.
#[derive(Debug, Clone, Copy)]
pub(super) enum Direction {
    /// Newest first, ids below the cursor.
    Older,
    /// Oldest first, ids above the cursor.
    Newer,
}

impl ScyllaChatStore {
    pub(super) async fn channel_of(&self, chat_id: u64) -> Result<Option<u64>, StoreError> {
        let row: Option<(i64,)> = self.cql().row(&GET_CHAT_CHANNEL, values![chat_id]).await.map_err(cql_error)?;
        Ok(row.map(|(c,)| chatmesh_cql::id(c)))
    }

    pub(super) async fn chat_in(&self, channel_id: u64, chat_id: u64) -> Result<Option<ChatRecord>, StoreError> {
        chat_in(self.cql(), channel_id, chat_id).await
    }

    /// The chat ids in `[low, high]` of `channel_id` that `user` removed (at most `max`).
    pub(super) async fn removed_between(
        &self,
        user: u64,
        channel_id: u64,
        low: u64,
        high: u64,
        max: usize,
    ) -> Result<BTreeSet<u64>, StoreError> {
        let rows: Vec<(i64,)> = self
            .cql()
            .rows(&REMOVED_IN_RANGE, values![user, channel_id, low, high, limit(max.max(1))])
            .await
            .map_err(cql_error)?;
        Ok(rows.into_iter().map(|(c,)| chatmesh_cql::id(c)).collect())
    }

    /// Up to `limit` chats of a channel from `cursor` (exclusive) one way, leaving out those
    /// `viewer` removed.
    pub(super) async fn page(
        &self,
        channel_id: u64,
        direction: Direction,
        mut cursor: i64,
        limit_to: usize,
        viewer: Option<u64>,
    ) -> Result<Vec<ChatRecord>, StoreError> {
        let mut out = Vec::new();
        let (start, stmt, buckets_stmt, up) = match direction {
            Direction::Older if cursor > 0 => (cursor - 1, &CHATS_BEFORE, &CHAT_BUCKETS_DOWN, false),
            Direction::Newer if cursor < i64::MAX => (cursor + 1, &CHATS_AFTER, &CHAT_BUCKETS_UP, true),
            _ => return Ok(out),
        };
        if limit_to == 0 {
            return Ok(out);
        }
        let mut buckets = Buckets::new(buckets_stmt, channel_id, bucket(start as u64), up);
        while out.len() < limit_to
            && let Some(b) = buckets.next(self.cql()).await?
        {
            loop {
                let want = (limit_to - out.len()).min(PAGE);
                let rows: Vec<(Vec<u8>,)> =
                    self.cql().rows(stmt, values![channel_id, b, cursor, limit(want)]).await.map_err(cql_error)?;
                let got = rows.len();
                let chats = rows.iter().map(|(r,)| decode_chat(r)).collect::<Result<Vec<_>, _>>()?;
                let (Some(first), Some(last)) = (chats.first(), chats.last()) else { break };
                cursor = bound(last.chat_id);
                let removed = match viewer {
                    Some(user) => {
                        let (low, high) = (first.chat_id.min(last.chat_id), first.chat_id.max(last.chat_id));
                        self.removed_between(user, channel_id, low, high, got).await?
                    }
                    None => BTreeSet::new(),
                };
                out.extend(chats.into_iter().filter(|c| !removed.contains(&c.chat_id)));
                if got < want || out.len() >= limit_to {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// `user`'s read pointer in `channel_id`: its `chat_pointers` row, else the one acked before
    /// migration 0005 in `chat_read_pointers` (see [`Self::pointer_rows`]).
    pub(super) async fn pointer(&self, channel_id: u64, user: u64) -> Result<Option<ReadPointer>, StoreError> {
        Ok(self.pointer_rows(channel_id, user).await?.1)
    }

    /// `user`'s `chat_pointers` row in `channel_id`, and the pointer in effect: that row, or when
    /// there is none the `chat_read_pointers` row (no longer written: a pointer acked before
    /// migration 0005 counts until the next ack past it creates the new row).
    pub(super) async fn pointer_rows(
        &self,
        channel_id: u64,
        user: u64,
    ) -> Result<(Option<ReadPointer>, Option<ReadPointer>), StoreError> {
        let row: Option<(i64, i64)> =
            self.cql().row(&GET_POINTER, values![user, channel_id]).await.map_err(cql_error)?;
        let decode =
            |(last, at): (i64, i64)| ReadPointer { last_read_chat_id: chatmesh_cql::id(last), acked_at_ms: at as u64 };
        if let Some(row) = row {
            let pointer = decode(row);
            return Ok((Some(pointer), Some(pointer)));
        }
        let legacy: Option<(i64, i64)> =
            self.cql().row(&GET_LEGACY_POINTER, values![user, channel_id]).await.map_err(cql_error)?;
        Ok((None, legacy.map(decode)))
    }

    pub(super) async fn newest_at_or_before(&self, channel_id: u64, max_id: u64) -> Result<Option<u64>, StoreError> {
        let max = bound(max_id);
        let mut buckets = Buckets::new(&CHAT_BUCKETS_DOWN, channel_id, bucket(max as u64), false);
        while let Some(b) = buckets.next(self.cql()).await? {
            let row: Option<(i64,)> =
                self.cql().row(&CHAT_IDS_AT_OR_BEFORE, values![channel_id, b, max, 1i32]).await.map_err(cql_error)?;
            if let Some((id,)) = row {
                return Ok(Some(chatmesh_cql::id(id)));
            }
        }
        Ok(None)
    }

    pub(super) async fn count_unread(&self, channel_id: u64, user: u64, after: u64) -> Result<u64, StoreError> {
        let mut cursor = bound(after);
        if cursor == i64::MAX {
            return Ok(0);
        }
        let mut count = 0;
        let mut buckets = Buckets::new(&CHAT_BUCKETS_UP, channel_id, bucket(cursor as u64 + 1), true);
        while let Some(b) = buckets.next(self.cql()).await? {
            loop {
                let rows: Vec<(i64, i64, String, bool)> = self
                    .cql()
                    .rows(&UNREAD_AFTER, values![channel_id, b, cursor, limit(PAGE)])
                    .await
                    .map_err(cql_error)?;
                let (Some(first), Some(last)) = (rows.first(), rows.last()) else { break };
                let (low, high) = (chatmesh_cql::id(first.0), chatmesh_cql::id(last.0));
                cursor = last.0;
                let candidates: Vec<u64> = rows
                    .iter()
                    .filter(|(_, sender, kind, retracted)| {
                        chatmesh_cql::id(*sender) != user && kind == kind_name(ChatKind::Text) && !retracted
                    })
                    .map(|(id, ..)| chatmesh_cql::id(*id))
                    .collect();
                if !candidates.is_empty() {
                    let removed = self.removed_between(user, channel_id, low, high, rows.len()).await?;
                    count += candidates.iter().filter(|id| !removed.contains(id)).count() as u64;
                }
                if rows.len() < PAGE {
                    break;
                }
            }
        }
        Ok(count)
    }

    /// The next non-empty slot of the channel registry after `slot`, if any.
    async fn next_slot(&self, slot: i64) -> Result<Option<i64>, StoreError> {
        let mut shard = (slot >> 16) as i32;
        let mut after = slot;
        loop {
            let row: Option<(i64,)> =
                self.cql().row(&SLOTS_IN_SHARD, values![shard, after, 1i32]).await.map_err(cql_error)?;
            if let Some((next,)) = row {
                return Ok(Some(next));
            }
            let row: Option<(i32,)> =
                self.cql().row(&SHARDS_AFTER, values![0i32, shard, 1i32]).await.map_err(cql_error)?;
            let Some((next,)) = row else { return Ok(None) };
            shard = next;
            after = (i64::from(next) << 16) - 1;
        }
    }

    /// A channel's events after `after_event`, oldest first, chats as they are now.
    pub(super) async fn events_after(
        &self,
        channel_id: u64,
        after_event: u64,
        limit_to: usize,
    ) -> Result<Vec<ChannelEvent>, StoreError> {
        let mut cursor = bound(after_event);
        let mut out = Vec::new();
        if limit_to == 0 || cursor == i64::MAX {
            return Ok(out);
        }
        let mut buckets = Buckets::new(&EVENT_BUCKETS_UP, channel_id, bucket(cursor as u64 + 1), true);
        while out.len() < limit_to
            && let Some(b) = buckets.next(self.cql()).await?
        {
            loop {
                let want = (limit_to - out.len()).min(PAGE);
                let rows: Vec<(Vec<u8>,)> = self
                    .cql()
                    .rows(&EVENTS_AFTER, values![channel_id, b, cursor, limit(want)])
                    .await
                    .map_err(cql_error)?;
                let got = rows.len();
                for (bytes,) in rows {
                    let event = decode_event(&bytes)?;
                    cursor = bound(parse_id("event id", &event.event_id)?);
                    out.push(event);
                }
                if got < want {
                    break;
                }
                if out.len() >= limit_to {
                    break;
                }
            }
        }
        hydrate(self.cql(), out).await
    }

    /// Users who removed the chat for themselves.
    pub(super) async fn removers(&self, chat_id: u64) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        let mut cursor = -1i64;
        loop {
            let rows: Vec<(i64,)> =
                self.cql().rows(&REMOVED_BY, values![chat_id, cursor, limit(PAGE)]).await.map_err(cql_error)?;
            let got = rows.len();
            out.extend(rows.iter().map(|(u,)| chatmesh_cql::id(*u)));
            match rows.last() {
                Some((last,)) if got == PAGE => cursor = *last,
                _ => return Ok(out),
            }
        }
    }

    /// Every chat in (channel, chat) order after `after`: the rest of the channel `after` is
    /// in, then the registry's channels after it, slot by slot.
    pub(super) async fn scan(&self, after: (u64, u64), limit_to: usize) -> Result<Vec<ChatRecord>, StoreError> {
        let (channel, chat) = after;
        let mut out = Vec::new();
        if limit_to == 0 {
            return Ok(out);
        }
        // the rest of the channel `after` is in, then the registry's channels after it, slot by slot
        out.extend(self.page(channel, Direction::Newer, bound(chat), limit_to, None).await?);
        let (mut slot, mut floor) = (bound(channel) >> 40, bound(channel));
        while out.len() < limit_to {
            let rows: Vec<(i64,)> =
                self.cql().rows(&CHANNELS_IN_SLOT, values![slot, floor, CHANNEL_PAGE]).await.map_err(cql_error)?;
            for (next,) in &rows {
                let next_chats = self.page(chatmesh_cql::id(*next), Direction::Newer, 0, limit_to - out.len(), None);
                out.extend(next_chats.await?);
                if out.len() >= limit_to {
                    return Ok(out);
                }
            }
            match rows.last() {
                Some((last,)) if rows.len() == CHANNEL_PAGE as usize => floor = *last,
                _ => match self.next_slot(slot).await? {
                    Some(next) => (slot, floor) = (next, (next << 40) - 1),
                    None => break,
                },
            }
        }
        Ok(out)
    }
}

/// A chat by channel and id, from the chats table.
async fn chat_in(cql: &Cql, channel_id: u64, chat_id: u64) -> Result<Option<ChatRecord>, StoreError> {
    let row: Option<(Vec<u8>,)> =
        cql.row(&GET_CHAT, values![channel_id, bucket(chat_id), chat_id]).await.map_err(cql_error)?;
    row.map(|(r,)| decode_chat(&r)).transpose()
}

/// Logged events with their chats as they are now (chat events are logged by id only).
pub(super) async fn hydrate(cql: &Cql, mut events: Vec<ChannelEvent>) -> Result<Vec<ChannelEvent>, StoreError> {
    let mut wanted: Vec<(u64, u64)> = Vec::new();
    for event in &events {
        if let Some(Payload::Chat(stub)) = &event.payload {
            let (channel, chat) = (stub.channel_id.parse().unwrap_or(0), stub.chat_id.parse().unwrap_or(0));
            if !wanted.contains(&(channel, chat)) {
                wanted.push((channel, chat));
            }
        }
    }
    // why: a few round trips' latency for the page rather than one per chat, with a bounded
    // number of reads in flight
    let found: Vec<Option<ChatRecord>> = futures::stream::iter(wanted.clone())
        .map(|(channel, chat)| chat_in(cql, channel, chat))
        .buffered(HYDRATE_READS)
        .try_collect()
        .await?;
    let chats: HashMap<(u64, u64), ChatRecord> =
        wanted.into_iter().zip(found).filter_map(|(key, chat)| chat.map(|c| (key, c))).collect();
    for event in &mut events {
        if let Some(Payload::Chat(stub)) = &event.payload {
            let key = (stub.channel_id.parse().unwrap_or(0), stub.chat_id.parse().unwrap_or(0));
            if let Some(record) = chats.get(&key) {
                event.payload = Some(Payload::Chat(record.to_pb(None)));
            }
        }
    }
    Ok(events)
}
