//! Writes of the chat store on ScyllaDB: idempotency claims taken before the write (and
//! finished from what they hold when their write is missing), logged batches holding a write
//! with its event and feed rows, the index rows a process writes once, read pointers moved by
//! compare-and-set, and failed batches retried in the background while their ids stay in flight.

use std::{sync::atomic::Ordering, time::Duration};

use chatmesh_api::chat::v1::{ChannelEvent, EventType};
use chatmesh_cql::{BatchKind, CqlError, Statement, Value, values};
use chatmesh_platform::ids::unix_ms_of;
use prost::Message;

use super::{
    ScyllaChatStore, backend, bucket, change_feed, cql_error, decode_chat, decode_event, encode_chat, kind_name,
    locks::Held,
    parse_id,
    statements::{
        ADVANCE_POINTER, CLAIM_EVENT_KEY, CLAIM_KEY, CREATE_POINTER, EVENT_EXISTS, GET_EVENT_KEY, GET_KEY, PUT_CHANNEL,
        PUT_CHANNEL_SHARD, PUT_CHANNEL_SLOT, PUT_CHAT, PUT_CHAT_BUCKET, PUT_CHAT_BY_ID, PUT_EVENT, PUT_EVENT_BUCKET,
        PUT_REMOVAL, PUT_REMOVED_BY, RELEASE_KEY,
    },
    uploads,
};
use crate::{
    model::{ChatKind, ChatRecord, NewChat, ReadPointer, UploadState},
    store::{CreateOutcome, ExternalEvent, ItemOutcome, StoreError, chat_event},
};

/// Attempts of a compare-and-set (read pointer) or of a claim raced by a release.
const ATTEMPTS: usize = 8;
/// Index rows this process remembers having written (then it forgets them all and writes
/// them again as they come).
const KNOWN_MAX: usize = 100_000;

type Writes = Vec<(&'static Statement, Vec<Value>)>;

/// The chats row of a record (written whole by create, edit and retract) at write timestamp
/// `ts` ([`created_at`], [`rewritten_at`]): every send of one logical write, its retries and a
/// claim's finish included, carries the same one, so a retry landing late loses to any later
/// edit or retraction instead of reverting it.
fn put_chat(chat: &ChatRecord, ts: i64) -> Result<(&'static Statement, Vec<Value>), StoreError> {
    Ok((
        &PUT_CHAT,
        values![
            chat.channel_id,
            bucket(chat.chat_id),
            chat.chat_id,
            chat.sender_id,
            kind_name(chat.kind),
            chat.is_retracted(),
            encode_chat(chat)?,
            ts
        ],
    ))
}

/// The write timestamp (µs) of an id: its millisecond, plus its sequence (the low 12 bits, 4,096
/// per ms) scaled into that millisecond's microseconds, so timestamps follow id order and stay
/// within the id's millisecond (as ScyllaDB compares them with clock-stamped writes).
pub(super) fn timestamp_of(id: u64) -> i64 {
    let sequence = (id & 0xfff) as i64;
    unix_ms_of(id) as i64 * 1000 + sequence * 1000 / 4096
}

/// The write timestamp of a chat's creation: a function of its id alone, so whoever finishes a
/// claimed send writes it as the send itself did.
fn created_at(chat: &ChatRecord) -> i64 {
    timestamp_of(chat.chat_id)
}

/// The write timestamp of an edit or a retraction minted as `event_id` of `chat` as read: past
/// the id's own, and past any the row read can have (creation: [`created_at`]; an edit: within
/// the millisecond it records), so the change beats the version it replaces even when both
/// fall in one millisecond or come from a process whose clock is behind. Record its millisecond
/// as the change's time ([`ms_of`]) to keep the bound for the next change.
fn rewritten_at(chat: &ChatRecord, event_id: u64) -> i64 {
    let current = match chat.edited_at_ms {
        Some(ms) => ms as i64 * 1000 + 999,
        None => created_at(chat),
    };
    timestamp_of(event_id).max(current + 1)
}

/// The millisecond of a write timestamp.
fn ms_of(ts: i64) -> u64 {
    (ts / 1000) as u64
}

/// Whether a failed write was refused before anything of it applied, so no batchlog replay can
/// land it later and retrying it fails the same way: a request the schema refuses (`Schema`),
/// or one refused before it ran (`Invalid`: ScyllaDB's InvalidRequest — a batch past
/// `batch_size_fail_threshold_in_kb`, a write timestamp too far ahead —, a syntax error, a missing
/// permission, or the driver's own refusal before sending). Timeouts and unavailable replicas
/// are `Failed`: their outcome is unknown.
fn cannot_have_applied(error: &CqlError) -> bool {
    matches!(error, CqlError::Schema { .. } | CqlError::Invalid { .. })
}

/// Index rows (bucket lists, the channel registry, the feed's minutes and days) a process knows
/// it wrote, so it writes each once rather than with every chat: these partitions are shared by
/// a channel's whole traffic (buckets), by every channel (the registry's upper levels: a slot's
/// channels, a shard's slots, the 128 shards) or by all of this node's events (a minute of the
/// feed listed in its day, a day in its year).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Known {
    ChatBucket(u64, i32),
    EventBucket(u64, i32),
    Channel(u64),
    ChannelSlot(u64),
    ChannelShard(i32),
    FeedMinute(i64),
    FeedDay(i64),
}

/// One logged batch being built: its writes, the ids it makes durable, and the index rows it
/// writes (known once it returns).
#[derive(Default)]
struct Batch {
    writes: Writes,
    ids: Vec<u64>,
    known: Vec<Known>,
}

impl ScyllaChatStore {
    /// Runs a batch, logged (all or nothing across partitions), once the node's clean-stop
    /// mark is cleared ([`ScyllaChatStore::writing`]).
    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.writing().await?;
        if let Err(e) = self.cql().batch(BatchKind::Logged, batch.writes.clone()).await {
            self.settle(batch, &e);
            return Err(cql_error(e));
        }
        self.synced(&batch.ids);
        let mut known = self.inner.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() + batch.known.len() > KNOWN_MAX {
            known.clear();
        }
        known.extend(batch.known);
        Ok(())
    }

    /// After a failed batch: a logged batch whose request failed (a timeout) may still be
    /// applied later by the cluster's batchlog, below a feed cursor that has moved on. So its
    /// ids stay in flight (no feed reader passes them, which holds back this process's whole
    /// feed, live delivery included) while the same idempotent batch, its chat row at the same
    /// write timestamp, is retried in the background until it is applied one way or the other
    /// (a retry landing after a later edit or retraction loses to it) — for at most the
    /// batchlog's [`change_feed::REPLAY_WINDOW`]: then the ids are released and retrying stops
    /// (a change applied later still reaches its channel's log, not the feed's readers). A write
    /// refused before anything applied ([`cannot_have_applied`]) holds nothing back. The caller
    /// was answered with the error, so the write is not acknowledged either way.
    fn settle(&self, batch: Batch, error: &CqlError) {
        if cannot_have_applied(error) {
            return;
        }
        let held: Vec<change_feed::InflightGuard> = batch.ids.iter().map(|id| self.inner.inflight.begin(*id)).collect();
        let cql = self.cql().clone();
        metrics::counter!("chatmesh_chat_feed_held_total").increment(1);
        metrics::gauge!("chatmesh_chat_feed_held_batches").increment(1.0);
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + change_feed::REPLAY_WINDOW;
            let mut wait = Duration::from_millis(100);
            let unsettled = loop {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    break true;
                }
                tokio::time::sleep(wait.min(deadline - now)).await;
                match cql.batch(BatchKind::Logged, batch.writes.clone()).await {
                    Ok(_) => break false,
                    Err(e) if cannot_have_applied(&e) => {
                        tracing::warn!(error = %e, ids = ?batch.ids, "a failed chat write was refused when retried; releasing its ids");
                        break false;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, ids = ?batch.ids, "a failed chat write is not settled yet");
                        wait = (wait * 2).min(Duration::from_secs(30));
                    }
                }
            };
            if unsettled {
                tracing::error!(
                    ids = ?batch.ids,
                    "a failed chat write was not settled within the batchlog's replay window; releasing its ids \
                     (if the batchlog applies it later, its changes reach their channel's log, not the feed)"
                );
                metrics::counter!("chatmesh_chat_feed_unsettled_total").increment(1);
            }
            drop(held);
            metrics::gauge!("chatmesh_chat_feed_held_batches").decrement(1.0);
        });
    }

    /// Adds an index row's writes unless this process wrote them before.
    fn index(&self, batch: &mut Batch, row: Known) {
        if self.inner.known.lock().unwrap_or_else(|e| e.into_inner()).contains(&row) || batch.known.contains(&row) {
            return;
        }
        match row {
            Known::ChatBucket(channel, bucket) => batch.writes.push((&PUT_CHAT_BUCKET, values![channel, bucket])),
            Known::EventBucket(channel, bucket) => batch.writes.push((&PUT_EVENT_BUCKET, values![channel, bucket])),
            Known::Channel(channel) => batch.writes.push((&PUT_CHANNEL, values![channel >> 40, channel])),
            Known::ChannelSlot(slot) => batch.writes.push((&PUT_CHANNEL_SLOT, values![(slot >> 16) as i32, slot])),
            Known::ChannelShard(shard) => batch.writes.push((&PUT_CHANNEL_SHARD, values![0i32, shard])),
            Known::FeedMinute(slot) => batch.writes.push(change_feed::minute_row(self.inner.node, slot)),
            Known::FeedDay(day) => batch.writes.push(change_feed::day_row(self.inner.node, day)),
        }
        batch.known.push(row);
    }

    /// Adds the rows registering `channel` for scans (slot = channel >> 40, shard = channel >> 56),
    /// each level once per process.
    fn register(&self, batch: &mut Batch, channel: u64) {
        self.index(batch, Known::Channel(channel));
        self.index(batch, Known::ChannelSlot(channel >> 40));
        self.index(batch, Known::ChannelShard((channel >> 56) as i32));
    }

    /// Adds an event's feed row, and its minute's and day's rows once per process.
    fn feed(&self, batch: &mut Batch, event: &ChannelEvent) {
        let (slot, row) = change_feed::feed_row(self.inner.node, event);
        batch.writes.push(row);
        self.index(batch, Known::FeedMinute(slot));
        self.index(batch, Known::FeedDay(change_feed::day_of_slot(slot)));
    }

    /// Adds an event's rows in its channel's log and in the feed.
    fn log(&self, batch: &mut Batch, event: &ChannelEvent) -> Result<(), StoreError> {
        let channel = parse_id("channel id", &event.channel_id)?;
        let event_id = parse_id("event id", &event.event_id)?;
        batch.writes.push((&PUT_EVENT, values![channel, bucket(event_id), event_id, event.encode_to_vec()]));
        self.index(batch, Known::EventBucket(channel, bucket(event_id)));
        self.feed(batch, event);
        batch.ids.push(event_id);
        Ok(())
    }

    /// Adds everything creating a chat writes: the chat, its lookups, its `chat.created` event.
    fn created(&self, batch: &mut Batch, chat: &ChatRecord, created: &ChannelEvent) -> Result<(), StoreError> {
        let channel = chat.channel_id;
        batch.writes.push(put_chat(chat, created_at(chat))?);
        batch.writes.push((&PUT_CHAT_BY_ID, values![chat.chat_id, channel]));
        self.index(batch, Known::ChatBucket(channel, bucket(chat.chat_id)));
        self.register(batch, channel);
        batch.ids.push(chat.chat_id);
        self.log(batch, created)
    }

    /// Counts a write round trip that returned, covering `ids`.
    pub(super) fn synced(&self, ids: &[u64]) {
        self.inner.syncs.fetch_add(1, Ordering::AcqRel);
        if let Some(max) = ids.iter().max() {
            self.inner.durable_id.fetch_max(*max, Ordering::AcqRel);
        }
    }

    /// Counts an acknowledged write operation.
    pub(super) fn acknowledged<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_ok() {
            self.inner.writes.fetch_add(1, Ordering::AcqRel);
        }
        result
    }

    /// Finds the idempotency claim of (sender, channel, key) taken by someone else: the outcome
    /// for a send with `body_hash`, finishing the claimed write if it is missing. `Ok(None)`:
    /// the claim is gone (released meanwhile, or released here because it cannot be finished):
    /// claim again.
    async fn claimed(&self, chat: &NewChat) -> Result<Option<CreateOutcome>, StoreError> {
        let key = values![chat.sender_id, chat.channel_id, chat.client_msg_id.as_str()];
        let row: Option<(i64, i64, String, Vec<u8>)> = self.cql().row(&GET_KEY, key).await.map_err(cql_error)?;
        let Some((chat_id, event_id, hash, stored)) = row else { return Ok(None) };
        let (chat_id, event_id) = (chatmesh_cql::id(chat_id), chatmesh_cql::id(event_id));
        let outcome = |record: ChatRecord| {
            if hash == chat.body_hash { CreateOutcome::Duplicate(record) } else { CreateOutcome::KeyConflict(chat_id) }
        };
        if let Some(current) = self.chat_in(chat.channel_id, chat_id).await? {
            return Ok(Some(outcome(current)));
        }
        // why: claimed but not written (a crash between the two, or another process between them
        // now): finish that write with its own ids; every statement of it is an idempotent INSERT.
        let record = decode_chat(&stored)?;
        if !self.attach(&record).await? {
            let released = self
                .cql()
                .lwt(&RELEASE_KEY, values![chat.sender_id, chat.channel_id, chat.client_msg_id.as_str(), chat_id])
                .await
                .map_err(cql_error)?;
            if released {
                self.synced(&[]);
            }
            return Ok(None);
        }
        let _inflight = self.inner.inflight.begin(event_id);
        let key = format!("chat:{chat_id}:created");
        let created = chat_event(event_id, EventType::ChatCreated, record.sender_id, &record, key);
        let mut batch = Batch::default();
        self.created(&mut batch, &record, &created)?;
        self.commit(batch).await?;
        Ok(Some(outcome(record)))
    }

    /// Makes sure the uploads of a claimed chat whose write is being finished are attached to
    /// it; false when one of them went elsewhere meanwhile.
    async fn attach(&self, record: &ChatRecord) -> Result<bool, StoreError> {
        let mut pending = Vec::new();
        for attachment in &record.attachments {
            match uploads::get_upload(self.cql(), attachment.upload_id).await?.map(|u| u.state) {
                Some(UploadState::Attached(id)) if id == record.chat_id => {}
                _ => pending.push(attachment.upload_id),
            }
        }
        if pending.is_empty() {
            return Ok(true);
        }
        let refused = uploads::claim(self.cql(), record.sender_id, record.channel_id, &pending, record.chat_id).await?;
        Ok(refused.is_none())
    }

    pub(super) async fn create(&self, chat: NewChat) -> Result<CreateOutcome, StoreError> {
        let _lock = self.lock(chat.channel_id).await;
        for _ in 0..ATTEMPTS {
            // why: ids taken under the channel's lock, right before the write: id order is
            // commit order in the channel.
            let chat_id = self.inner.ids.next();
            let inflight = self.event_id();
            let event_id = inflight.event_id();
            let record = ChatRecord::created(chat.clone(), chat_id);
            let keyed = !record.client_msg_id.is_empty();
            if keyed {
                let claim = values![
                    record.sender_id,
                    record.channel_id,
                    record.client_msg_id.as_str(),
                    chat_id,
                    event_id,
                    record.body_hash.as_str(),
                    encode_chat(&record)?
                ];
                if !self.cql().lwt(&CLAIM_KEY, claim).await.map_err(cql_error)? {
                    match self.claimed(&chat).await? {
                        Some(outcome) => return Ok(outcome),
                        None => continue,
                    }
                }
                self.synced(&[]);
            }
            if !record.attachments.is_empty() {
                let upload_ids: Vec<u64> = record.attachments.iter().map(|a| a.upload_id).collect();
                let refused =
                    uploads::claim(self.cql(), record.sender_id, record.channel_id, &upload_ids, chat_id).await?;
                if let Some(upload_id) = refused {
                    if keyed {
                        // why: nothing was written; the key is free for a send that can attach.
                        let release =
                            values![record.sender_id, record.channel_id, record.client_msg_id.as_str(), chat_id];
                        self.cql().lwt(&RELEASE_KEY, release).await.map_err(cql_error)?;
                        self.synced(&[]);
                    }
                    return Ok(CreateOutcome::UploadUnavailable(upload_id));
                }
            }
            let key = format!("chat:{chat_id}:created");
            let created = chat_event(event_id, EventType::ChatCreated, record.sender_id, &record, key);
            let mut batch = Batch::default();
            self.created(&mut batch, &record, &created)?;
            self.commit(batch).await?;
            return Ok(CreateOutcome::Created(record));
        }
        Err(backend(format!(
            "the idempotency key of sender {} in channel {} kept changing while it was claimed",
            chat.sender_id, chat.channel_id
        )))
    }

    /// Chat `chat_id` under its channel's lock, when `sender` sent it and it is a live text
    /// chat; otherwise the outcome to answer (what edits and retractions share).
    async fn own_live_chat(
        &self,
        chat_id: u64,
        sender: u64,
    ) -> Result<Result<(Held<'_>, ChatRecord), ItemOutcome>, StoreError> {
        let Some(channel) = self.channel_of(chat_id).await? else { return Ok(Err(ItemOutcome::NotFound)) };
        let lock = self.lock(channel).await;
        let Some(chat) = self.chat_in(channel, chat_id).await? else { return Ok(Err(ItemOutcome::NotFound)) };
        if chat.sender_id != sender || chat.kind != ChatKind::Text {
            return Ok(Err(ItemOutcome::NotSender));
        }
        if chat.is_retracted() {
            return Ok(Err(ItemOutcome::Retracted));
        }
        Ok(Ok((lock, chat)))
    }

    pub(super) async fn edit(&self, chat_id: u64, editor: u64, text: String) -> Result<ItemOutcome, StoreError> {
        let (_lock, mut chat) = match self.own_live_chat(chat_id, editor).await? {
            Ok(held) => held,
            Err(outcome) => return Ok(outcome),
        };
        let inflight = self.event_id();
        let event_id = inflight.event_id();
        let ts = rewritten_at(&chat, event_id);
        chat.text = text;
        chat.edited_at_ms = Some(ms_of(ts));
        let key = format!("chat:{chat_id}:edited:{event_id}");
        let event = chat_event(event_id, EventType::ChatEdited, editor, &chat, key);
        let mut batch = Batch { writes: vec![put_chat(&chat, ts)?], ..Batch::default() };
        self.log(&mut batch, &event)?;
        self.commit(batch).await?;
        Ok(ItemOutcome::Done(Box::new(chat)))
    }

    pub(super) async fn retract(&self, sender: u64, chat_id: u64) -> Result<ItemOutcome, StoreError> {
        let (_lock, mut chat) = match self.own_live_chat(chat_id, sender).await? {
            Ok(held) => held,
            Err(outcome) => return Ok(outcome),
        };
        let inflight = self.event_id();
        let event_id = inflight.event_id();
        let ts = rewritten_at(&chat, event_id);
        let attached = chat.clone();
        chat.text.clear();
        chat.mentions.clear();
        chat.attachments.clear();
        chat.retracted_at_ms = Some(ms_of(ts));
        let event = chat_event(event_id, EventType::ChatRetracted, sender, &chat, format!("chat:{chat_id}:retracted"));
        let mut batch = Batch { writes: vec![put_chat(&chat, ts)?], ..Batch::default() };
        self.log(&mut batch, &event)?;
        // why: the uploads are queued for release in the tombstone's own batch, so the release is
        // as durable as the retraction; detached right after (or by the next sweep).
        let hour = uploads::hour_of(unix_ms_of(event_id));
        batch.writes.extend(uploads::release_writes(&attached, hour));
        self.commit(batch).await?;
        if !attached.attachments.is_empty() {
            match uploads::release_for_chat(self.cql(), &attached, hour).await {
                Ok(()) => self.synced(&[]),
                Err(e) => tracing::warn!(error = %e, chat_id, "retracted chat's uploads left for the sweep to release"),
            }
        }
        Ok(ItemOutcome::Done(Box::new(chat)))
    }

    /// Hides a chat for `user`, once; the change enters the feed privately (for search only).
    pub(super) async fn remove(&self, user: u64, chat_id: u64) -> Result<(), StoreError> {
        let Some(channel) = self.channel_of(chat_id).await? else { return Ok(()) };
        let _lock = self.lock(channel).await;
        if !self.removed_between(user, channel, chat_id, chat_id, 1).await?.is_empty() {
            return Ok(());
        }
        let inflight = self.event_id();
        let event_id = inflight.event_id();
        let stub = ChatRecord { chat_id, channel_id: channel, ..placeholder_chat() };
        let event = chat_event(event_id, EventType::ChatRemoved, user, &stub, format!("chat:{chat_id}:removed:{user}"));
        let mut batch = Batch {
            writes: vec![(&PUT_REMOVAL, values![user, channel, chat_id]), (&PUT_REMOVED_BY, values![chat_id, user])],
            ids: vec![event_id],
            known: Vec::new(),
        };
        // why: private to the remover: the feed only, never the channel's log.
        self.feed(&mut batch, &event);
        self.commit(batch).await
    }

    pub(super) async fn append(&self, external: ExternalEvent) -> Result<u64, StoreError> {
        let ExternalEvent { mut event, announcement } = external;
        let channel = parse_id("the appended event's channel id", &event.channel_id)?;
        let _locks = self.lock_both(channel, announcement.as_ref().map_or(channel, |a| a.channel_id)).await;
        let inflight = self.event_id();
        let event_id = inflight.event_id();
        event.event_id = event_id.to_string();
        let announced = match announcement {
            Some(chat) => {
                let chat_id = self.inner.ids.next();
                let inflight = self.event_id();
                Some((ChatRecord::created(chat, chat_id), inflight.event_id(), inflight))
            }
            None => None,
        };
        let announced = announced.as_ref().map(|(record, id, _guard)| (record, *id));
        // why: an event without a key cannot be recognised when redelivered: appended as is.
        if !event.idempotency_key.is_empty() {
            let claim = values![
                event.idempotency_key.as_str(),
                event_id,
                channel,
                event.encode_to_vec(),
                announced.map(|(_, id)| id),
                announced.map(|(record, _)| encode_chat(record)).transpose()?
            ];
            if !self.cql().lwt(&CLAIM_EVENT_KEY, claim).await.map_err(cql_error)? {
                return self.appended(&event.idempotency_key).await;
            }
            self.synced(&[]);
        }
        self.write_append(&event, announced).await?;
        Ok(event_id)
    }

    /// The event id of an appended event's key claimed before, finishing its write if it is
    /// missing (with the claim's own ids and content).
    async fn appended(&self, key: &str) -> Result<u64, StoreError> {
        type Claim = (i64, i64, Vec<u8>, Option<i64>, Option<Vec<u8>>);
        let row: Option<Claim> = self.cql().row(&GET_EVENT_KEY, values![key]).await.map_err(cql_error)?;
        let Some((event_id, channel, event, chat_event_id, chat)) = row else {
            return Err(backend(format!("the claim of event key {key:?} vanished")));
        };
        let (event_id, channel) = (chatmesh_cql::id(event_id), chatmesh_cql::id(channel));
        let exists: Option<(i64,)> =
            self.cql().row(&EVENT_EXISTS, values![channel, bucket(event_id), event_id]).await.map_err(cql_error)?;
        if exists.is_some() {
            return Ok(event_id);
        }
        let event = decode_event(&event)?;
        let announced = match (chat_event_id, chat) {
            (Some(id), Some(record)) => Some((decode_chat(&record)?, chatmesh_cql::id(id))),
            _ => None,
        };
        let _inflight = self.inner.inflight.begin(event_id);
        let _announced_inflight = announced.as_ref().map(|(_, id)| self.inner.inflight.begin(*id));
        self.write_append(&event, announced.as_ref().map(|(record, id)| (record, *id))).await?;
        Ok(event_id)
    }

    /// One logged batch: the event, its announcement chat with that chat's created event, and
    /// a deleted channel's mark.
    async fn write_append(
        &self,
        event: &ChannelEvent,
        announced: Option<(&ChatRecord, u64)>,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        self.log(&mut batch, event)?;
        let deleted = event.r#type() == EventType::ChannelDeleted;
        let channel = parse_id("channel id", &event.channel_id)?;
        let hour = uploads::hour_of(unix_ms_of(parse_id("event id", &event.event_id)?));
        if deleted {
            batch.writes.extend(change_feed::channel_deleted_writes(channel, hour));
        }
        if let Some((record, chat_event_id)) = announced {
            let key = format!("{}:announcement", event.idempotency_key);
            let created = chat_event(chat_event_id, EventType::ChatCreated, record.sender_id, record, key);
            self.created(&mut batch, record, &created)?;
        }
        self.commit(batch).await?;
        if deleted {
            // why: the release is queued in the batch; releasing now shows it at once, and a
            // failure is finished by the next sweep (the event is written: not an error)
            match uploads::release_channel(self.cql(), (self.inner.now)(), channel, hour).await {
                Ok(()) => self.synced(&[]),
                Err(e) => {
                    tracing::warn!(error = %e, channel, "deleted channel's uploads left for the sweep to release")
                }
            }
        }
        Ok(())
    }

    pub(super) async fn advance(&self, channel_id: u64, user: u64, chat_id: u64) -> Result<ReadPointer, StoreError> {
        for _ in 0..ATTEMPTS {
            let (row, current) = self.pointer_rows(channel_id, user).await?;
            if let Some(pointer) = current
                && pointer.last_read_chat_id >= chat_id
            {
                return Ok(pointer);
            }
            if current.is_none() && chat_id == 0 {
                return Ok(ReadPointer::default());
            }
            let moved = ReadPointer { last_read_chat_id: chat_id, acked_at_ms: (self.inner.now)() };
            // why: past a pointer acked before migration 0005 (current without a row), the new
            // row is created ahead of it, so the pointer still never moves back
            let applied = match row {
                Some(_) => {
                    let set = values![chat_id, moved.acked_at_ms, user, channel_id, chat_id];
                    self.cql().lwt(&ADVANCE_POINTER, set).await.map_err(cql_error)?
                }
                None => {
                    let create = values![user, channel_id, chat_id, moved.acked_at_ms];
                    self.cql().lwt(&CREATE_POINTER, create).await.map_err(cql_error)?
                }
            };
            if applied {
                self.synced(&[]);
                return Ok(moved);
            }
            // why: another ack got there first; look again (it may be behind us still).
        }
        Err(backend(format!("the read pointer of user {user} in channel {channel_id} kept moving")))
    }

    /// Counts an upload write (its round trips are the upload module's: counted as one).
    pub(super) fn delegated<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_ok() {
            self.synced(&[]);
        }
        self.acknowledged(result)
    }
}

/// Fields of a chat record the removal event does not carry.
fn placeholder_chat() -> ChatRecord {
    ChatRecord {
        chat_id: 0,
        channel_id: 0,
        sender_id: 0,
        kind: ChatKind::Text,
        text: String::new(),
        client_msg_id: String::new(),
        reply_to: 0,
        mentions: Vec::new(),
        announcement: None,
        body_hash: String::new(),
        created_at_ms: 0,
        edited_at_ms: None,
        retracted_at_ms: None,
        attachments: Vec::new(),
    }
}
