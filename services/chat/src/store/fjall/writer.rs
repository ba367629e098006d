//! The embedded chat store's one writer: a thread that drains the queue of writes into one
//! transaction (group commit), assigns ids in commit order, syncs the journal once for the
//! batch, and only then publishes the new read snapshot and answers every caller. If the sync
//! fails, it restores every key the batch touched and answers every caller with an error
//! (ADR 7).

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use chatmesh_api::chat::v1::{ChannelEvent, EventType};
use chatmesh_platform::ids::{IdGenerator, now_ms, unix_ms_of};
use fjall::{PersistMode, Readable, SingleWriterTxDatabase, SingleWriterTxKeyspace};
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use super::{
    Shared, SyncHook,
    keys::{
        CHANNEL_UPLOADS, CHAT_CHANNEL, CHATS, EVENT_KEYS, EVENTS, FEED, IDEMPOTENCY, META, PENDING, POINTERS, PRIVATE,
        RECLAIM, REMOVED, REMOVED_BY, UPLOADS, backend, decode_chat, decode_upload, idempotency_key, key2, tail_u64,
        u64_of,
    },
};
use crate::{
    model::{ChatKind, ChatRecord, NewChat, ReadPointer, UploadRecord, UploadState},
    store::{CreateOutcome, ExternalEvent, ItemOutcome, StoreError, chat_event},
};

/// Writes waiting for the writer; senders wait (backpressure) when it is full.
pub(super) const QUEUE: usize = 4096;
/// Writes committed together at most.
const MAX_BATCH: usize = 512;

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One write, with where its answer goes.
pub(super) enum Job {
    Create(NewChat, Reply<CreateOutcome>),
    Edit { chat_id: u64, editor: u64, text: String, reply: Reply<ItemOutcome> },
    Retract { sender: u64, chat_ids: Vec<u64>, reply: Reply<Vec<ItemOutcome>> },
    Remove { user: u64, chat_ids: Vec<u64>, reply: Reply<()> },
    Append { events: Vec<ExternalEvent>, reply: Reply<Vec<u64>> },
    Ack { channel_id: u64, user: u64, chat_id: u64, reply: Reply<ReadPointer> },
    Cursor { name: String, event_id: u64, reply: Reply<()> },
    Upload(UploadRecord, Reply<()>),
    Expire { before_ms: u64, limit: usize, reply: Reply<usize> },
    Forget { upload_ids: Vec<u64>, reply: Reply<()> },
}

/// An answer computed inside a batch, sent once the batch is durable.
enum Answer {
    Create(Reply<CreateOutcome>, Box<CreateOutcome>),
    Item(Reply<ItemOutcome>, ItemOutcome),
    Items(Reply<Vec<ItemOutcome>>, Vec<ItemOutcome>),
    Unit(Reply<()>),
    Ids(Reply<Vec<u64>>, Vec<u64>),
    Pointer(Reply<ReadPointer>, ReadPointer),
    Count(Reply<usize>, usize),
}

impl Answer {
    fn send(self) {
        // why: a caller that gave up (deadline) no longer listens; the write stands.
        let _ = match self {
            Answer::Create(r, v) => r.send(Ok(*v)).map_err(drop),
            Answer::Item(r, v) => r.send(Ok(v)).map_err(drop),
            Answer::Items(r, v) => r.send(Ok(v)).map_err(drop),
            Answer::Unit(r) => r.send(Ok(())).map_err(drop),
            Answer::Ids(r, v) => r.send(Ok(v)).map_err(drop),
            Answer::Pointer(r, v) => r.send(Ok(v)).map_err(drop),
            Answer::Count(r, v) => r.send(Ok(v)).map_err(drop),
        };
    }

    fn fail(self, error: StoreError) {
        let _ = match self {
            Answer::Create(r, _) => r.send(Err(error)).map_err(drop),
            Answer::Item(r, _) => r.send(Err(error)).map_err(drop),
            Answer::Items(r, _) => r.send(Err(error)).map_err(drop),
            Answer::Unit(r) => r.send(Err(error)).map_err(drop),
            Answer::Ids(r, _) => r.send(Err(error)).map_err(drop),
            Answer::Pointer(r, _) => r.send(Err(error)).map_err(drop),
            Answer::Count(r, _) => r.send(Err(error)).map_err(drop),
        };
    }
}

impl Job {
    fn fail(self, error: StoreError) {
        let _ = match self {
            Job::Create(_, r) => r.send(Err(error)).map_err(drop),
            Job::Edit { reply, .. } => reply.send(Err(error)).map_err(drop),
            Job::Retract { reply, .. } => reply.send(Err(error)).map_err(drop),
            Job::Remove { reply, .. } => reply.send(Err(error)).map_err(drop),
            Job::Append { reply, .. } => reply.send(Err(error)).map_err(drop),
            Job::Ack { reply, .. } => reply.send(Err(error)).map_err(drop),
            Job::Cursor { reply, .. } => reply.send(Err(error)).map_err(drop),
            Job::Upload(_, reply) => reply.send(Err(error)).map_err(drop),
            Job::Expire { reply, .. } => reply.send(Err(error)).map_err(drop),
            Job::Forget { reply, .. } => reply.send(Err(error)).map_err(drop),
        };
    }
}

/// The writer thread: it alone writes the database.
pub(super) struct Writer {
    db: SingleWriterTxDatabase,
    shared: Arc<Shared>,
    ids: Arc<IdGenerator>,
    hook: SyncHook,
    /// A failed sync could not be undone either: refuse writes until restarted.
    poisoned: AtomicBool,
}

/// One batch's transaction, remembering each key's value before the batch touched it.
struct Batch<'a> {
    tx: fjall::SingleWriterWriteTx<'a>,
    ks: &'a [SingleWriterTxKeyspace],
    touched: HashSet<(usize, Vec<u8>)>,
    undo: Vec<(usize, Vec<u8>, Option<Vec<u8>>)>,
    max_id: u64,
}

impl Batch<'_> {
    fn get(&self, ks: usize, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tx.get(&self.ks[ks], key).map_err(backend)?.map(|v| v.to_vec()))
    }

    fn remember(&mut self, ks: usize, key: &[u8]) -> Result<(), StoreError> {
        if self.touched.insert((ks, key.to_vec())) {
            let old = self.get(ks, key)?;
            self.undo.push((ks, key.to_vec(), old));
        }
        Ok(())
    }

    fn put(&mut self, ks: usize, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        self.remember(ks, &key)?;
        self.tx.insert(&self.ks[ks], key, value);
        Ok(())
    }

    fn put_chat(&mut self, chat: &ChatRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(chat).map_err(backend)?;
        self.put(CHATS, key2(chat.channel_id, chat.chat_id), bytes)
    }

    fn delete(&mut self, ks: usize, key: Vec<u8>) -> Result<(), StoreError> {
        self.remember(ks, &key)?;
        self.tx.remove(&self.ks[ks], key);
        Ok(())
    }

    fn upload(&self, upload_id: u64) -> Result<Option<UploadRecord>, StoreError> {
        self.get(UPLOADS, &upload_id.to_be_bytes())?.map(|v| decode_upload(&v)).transpose()
    }

    fn put_upload(&mut self, upload: &UploadRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(upload).map_err(backend)?;
        self.put(UPLOADS, upload.upload_id.to_be_bytes().to_vec(), bytes)
    }

    /// Queues an upload's object for deletion; it can no longer be attached.
    fn reclaim(&mut self, mut upload: UploadRecord) -> Result<(), StoreError> {
        if upload.state == UploadState::Reclaiming {
            return Ok(());
        }
        upload.state = UploadState::Reclaiming;
        self.put_upload(&upload)?;
        self.delete(PENDING, upload.upload_id.to_be_bytes().to_vec())?;
        self.put(RECLAIM, upload.upload_id.to_be_bytes().to_vec(), Vec::new())
    }

    fn chat(&self, chat_id: u64) -> Result<Option<ChatRecord>, StoreError> {
        let Some(channel) = self.get(CHAT_CHANNEL, &chat_id.to_be_bytes())? else { return Ok(None) };
        self.get(CHATS, &key2(u64_of(&channel)?, chat_id))?.map(|v| decode_chat(&v)).transpose()
    }

    fn log(&mut self, event: &ChannelEvent) -> Result<(), StoreError> {
        let (channel, event_id): (u64, u64) =
            (event.channel_id.parse().map_err(backend)?, event.event_id.parse().map_err(backend)?);
        self.put(EVENTS, key2(channel, event_id), event.encode_to_vec())?;
        self.put(FEED, event_id.to_be_bytes().to_vec(), channel.to_be_bytes().to_vec())?;
        self.max_id = self.max_id.max(event_id);
        Ok(())
    }
}

impl Writer {
    pub(super) fn new(db: SingleWriterTxDatabase, shared: Arc<Shared>, ids: Arc<IdGenerator>, hook: SyncHook) -> Self {
        Writer { db, shared, ids, hook, poisoned: AtomicBool::new(false) }
    }

    /// Writes batches until every sender of the queue is gone.
    pub(super) fn run(self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            metrics::histogram!("chatmesh_chat_write_batch_size").record(jobs.len() as f64);
            metrics::gauge!("chatmesh_chat_write_queue_depth").set(rx.len() as f64);
            if self.poisoned.load(Ordering::Acquire) {
                for job in jobs {
                    job.fail(StoreError::NotDurable("the store needs a restart after a failed sync".into()));
                }
                continue;
            }
            self.write_batch(jobs);
        }
        tracing::debug!("chat writer stopped");
    }

    fn write_batch(&self, jobs: Vec<Job>) {
        let count = jobs.len() as u64;
        let mut batch = Batch {
            tx: self.db.write_tx().durability(None),
            ks: &self.shared.ks,
            touched: HashSet::new(),
            undo: Vec::new(),
            max_id: 0,
        };
        let mut answers = Vec::with_capacity(jobs.len());
        let mut jobs = jobs.into_iter();
        while let Some(job) = jobs.next() {
            match self.apply(&mut batch, job) {
                Ok(answer) => answers.push(answer),
                Err(e) => {
                    // why: a backend error mid-batch leaves the transaction unknown: drop it whole.
                    tracing::error!(error = %e, "chat batch failed");
                    answers.into_iter().for_each(|a: Answer| a.fail(e.clone()));
                    jobs.for_each(|j| j.fail(e.clone()));
                    return;
                }
            }
        }
        let undo = std::mem::take(&mut batch.undo);
        let max_id = batch.max_id;
        if let Err(e) = batch.tx.commit() {
            answers.into_iter().for_each(|a| a.fail(backend(&e)));
            return;
        }
        match (self.hook)().map_err(backend).and_then(|()| self.db.persist(PersistMode::SyncAll).map_err(backend)) {
            Ok(()) => {
                *self.shared.snapshot.write().unwrap_or_else(|e| e.into_inner()) = self.db.read_tx();
                self.shared.syncs.fetch_add(1, Ordering::AcqRel);
                self.shared.writes.fetch_add(count, Ordering::AcqRel);
                self.shared.durable_id.fetch_max(max_id, Ordering::AcqRel);
                answers.into_iter().for_each(Answer::send);
            }
            Err(e) => {
                tracing::error!(error = %e, writes = count, "chat sync failed, undoing the batch");
                self.undo(undo);
                let error = StoreError::NotDurable(e.to_string());
                answers.into_iter().for_each(|a| a.fail(error.clone()));
            }
        }
    }

    /// Restores every key the failed batch touched (readers never saw the batch).
    fn undo(&self, undo: Vec<(usize, Vec<u8>, Option<Vec<u8>>)>) {
        let mut tx = self.db.write_tx().durability(None);
        for (ks, key, old) in undo.into_iter().rev() {
            match old {
                Some(value) => tx.insert(&self.shared.ks[ks], key, value),
                None => tx.remove(&self.shared.ks[ks], key),
            }
        }
        let undone = tx.commit().map_err(backend).and_then(|()| self.db.persist(PersistMode::SyncAll).map_err(backend));
        if let Err(e) = undone {
            tracing::error!(error = %e, "undoing a failed batch failed too; refusing writes until restart");
            self.poisoned.store(true, Ordering::Release);
        }
    }

    fn apply(&self, b: &mut Batch<'_>, job: Job) -> Result<Answer, StoreError> {
        Ok(match job {
            Job::Create(chat, reply) => Answer::Create(reply, Box::new(self.create(b, chat, None)?)),
            Job::Edit { chat_id, editor, text, reply } => Answer::Item(reply, self.edit(b, chat_id, editor, text)?),
            Job::Retract { sender, chat_ids, reply } => {
                let mut outcomes = Vec::with_capacity(chat_ids.len());
                for chat_id in chat_ids {
                    outcomes.push(self.retract(b, sender, chat_id)?);
                }
                Answer::Items(reply, outcomes)
            }
            Job::Remove { user, chat_ids, reply } => {
                for chat_id in chat_ids {
                    self.remove(b, user, chat_id)?;
                }
                Answer::Unit(reply)
            }
            Job::Append { events, reply } => {
                let mut ids = Vec::with_capacity(events.len());
                for event in events {
                    ids.push(self.append(b, event)?);
                }
                Answer::Ids(reply, ids)
            }
            Job::Ack { channel_id, user, chat_id, reply } => {
                let key = key2(channel_id, user);
                let current: ReadPointer = b
                    .get(POINTERS, &key)?
                    .map(|v| serde_json::from_slice(&v).map_err(backend))
                    .transpose()?
                    .unwrap_or_default();
                let pointer = if chat_id > current.last_read_chat_id {
                    let moved = ReadPointer { last_read_chat_id: chat_id, acked_at_ms: now_ms() };
                    b.put(POINTERS, key, serde_json::to_vec(&moved).map_err(backend)?)?;
                    moved
                } else {
                    current
                };
                Answer::Pointer(reply, pointer)
            }
            Job::Cursor { name, event_id, reply } => {
                b.put(META, format!("cursor:{name}").into_bytes(), event_id.to_be_bytes().to_vec())?;
                Answer::Unit(reply)
            }
            Job::Upload(upload, reply) => {
                let id = upload.upload_id.to_be_bytes().to_vec();
                b.put_upload(&upload)?;
                b.put(CHANNEL_UPLOADS, key2(upload.channel_id, upload.upload_id), Vec::new())?;
                b.put(PENDING, id, Vec::new())?;
                Answer::Unit(reply)
            }
            Job::Expire { before_ms, limit, reply } => {
                let last = chatmesh_platform::ids::max_id_at(before_ms);
                let ids: Vec<u64> =
                    b.tx.range(&self.shared.ks[PENDING], ..=last.to_be_bytes().to_vec())
                        .take(limit)
                        .map(|guard| guard.key().map_err(backend).and_then(|k| u64_of(&k)))
                        .collect::<Result<_, _>>()?;
                for id in &ids {
                    if let Some(upload) = b.upload(*id)? {
                        b.reclaim(upload)?;
                    }
                }
                Answer::Count(reply, ids.len())
            }
            Job::Forget { upload_ids, reply } => {
                for id in upload_ids {
                    if let Some(upload) = b.upload(id)? {
                        b.delete(CHANNEL_UPLOADS, key2(upload.channel_id, id))?;
                    }
                    b.delete(UPLOADS, id.to_be_bytes().to_vec())?;
                    b.delete(PENDING, id.to_be_bytes().to_vec())?;
                    b.delete(RECLAIM, id.to_be_bytes().to_vec())?;
                }
                Answer::Unit(reply)
            }
        })
    }

    fn create(&self, b: &mut Batch<'_>, chat: NewChat, event_key: Option<String>) -> Result<CreateOutcome, StoreError> {
        let idem = (!chat.client_msg_id.is_empty())
            .then(|| idempotency_key(chat.sender_id, chat.channel_id, &chat.client_msg_id));
        if let Some(key) = &idem
            && let Some(existing) = b.get(IDEMPOTENCY, key)?
        {
            let existing_id = u64_of(&existing)?;
            return Ok(match b.chat(existing_id)? {
                Some(record) if record.body_hash == chat.body_hash => CreateOutcome::Duplicate(record),
                _ => CreateOutcome::KeyConflict(existing_id),
            });
        }
        // why: every upload is checked before any is attached, so a refused chat attaches none
        let mut uploads = Vec::with_capacity(chat.attachments.len());
        for attachment in &chat.attachments {
            let upload = b.upload(attachment.upload_id)?.filter(|u| {
                u.state == UploadState::Pending && u.uploader_id == chat.sender_id && u.channel_id == chat.channel_id
            });
            let Some(upload) = upload else { return Ok(CreateOutcome::UploadUnavailable(attachment.upload_id)) };
            uploads.push(upload);
        }
        let chat_id = self.ids.next_id();
        for mut upload in uploads {
            upload.state = UploadState::Attached(chat_id);
            b.put_upload(&upload)?;
            b.delete(PENDING, upload.upload_id.to_be_bytes().to_vec())?;
        }
        let record = ChatRecord::created(chat, chat_id);
        b.put_chat(&record)?;
        b.put(CHAT_CHANNEL, chat_id.to_be_bytes().to_vec(), record.channel_id.to_be_bytes().to_vec())?;
        if let Some(key) = idem {
            b.put(IDEMPOTENCY, key, chat_id.to_be_bytes().to_vec())?;
        }
        let event_id = self.ids.next_id();
        let key = event_key.unwrap_or_else(|| format!("chat:{chat_id}:created"));
        b.log(&chat_event(event_id, EventType::ChatCreated, record.sender_id, &record, key))?;
        Ok(CreateOutcome::Created(record))
    }

    fn edit(&self, b: &mut Batch<'_>, chat_id: u64, editor: u64, text: String) -> Result<ItemOutcome, StoreError> {
        let Some(mut chat) = b.chat(chat_id)? else { return Ok(ItemOutcome::NotFound) };
        if chat.sender_id != editor || chat.kind != ChatKind::Text {
            return Ok(ItemOutcome::NotSender);
        }
        if chat.is_retracted() {
            return Ok(ItemOutcome::Retracted);
        }
        let event_id = self.ids.next_id();
        chat.text = text;
        chat.edited_at_ms = Some(unix_ms_of(event_id));
        b.put_chat(&chat)?;
        b.log(&chat_event(
            event_id,
            EventType::ChatEdited,
            editor,
            &chat,
            format!("chat:{chat_id}:edited:{event_id}"),
        ))?;
        Ok(ItemOutcome::Done(Box::new(chat)))
    }

    /// Hides a chat for `user`, once; the change enters the feed privately (for search only).
    fn remove(&self, b: &mut Batch<'_>, user: u64, chat_id: u64) -> Result<(), StoreError> {
        let Some(chat) = b.chat(chat_id)? else { return Ok(()) };
        if b.get(REMOVED, &key2(user, chat_id))?.is_some() {
            return Ok(());
        }
        b.put(REMOVED, key2(user, chat_id), Vec::new())?;
        b.put(REMOVED_BY, key2(chat_id, user), Vec::new())?;
        let event_id = self.ids.next_id();
        let event = chat_event(event_id, EventType::ChatRemoved, user, &chat, format!("chat:{chat_id}:removed:{user}"));
        b.put(PRIVATE, key2(user, event_id), event.encode_to_vec())?;
        b.put(FEED, event_id.to_be_bytes().to_vec(), key2(chat.channel_id, user))?;
        b.max_id = b.max_id.max(event_id);
        Ok(())
    }

    fn retract(&self, b: &mut Batch<'_>, sender: u64, chat_id: u64) -> Result<ItemOutcome, StoreError> {
        let Some(mut chat) = b.chat(chat_id)? else { return Ok(ItemOutcome::NotFound) };
        if chat.sender_id != sender || chat.kind != ChatKind::Text {
            return Ok(ItemOutcome::NotSender);
        }
        if chat.is_retracted() {
            return Ok(ItemOutcome::Retracted);
        }
        let event_id = self.ids.next_id();
        chat.text.clear();
        chat.mentions.clear();
        for attachment in std::mem::take(&mut chat.attachments) {
            if let Some(upload) = b.upload(attachment.upload_id)? {
                b.reclaim(upload)?;
            }
        }
        chat.retracted_at_ms = Some(unix_ms_of(event_id));
        b.put_chat(&chat)?;
        b.log(&chat_event(event_id, EventType::ChatRetracted, sender, &chat, format!("chat:{chat_id}:retracted")))?;
        Ok(ItemOutcome::Done(Box::new(chat)))
    }

    fn append(&self, b: &mut Batch<'_>, external: ExternalEvent) -> Result<u64, StoreError> {
        let key = external.event.idempotency_key.clone().into_bytes();
        if let Some(existing) = b.get(EVENT_KEYS, &key)? {
            return u64_of(&existing);
        }
        let event_id = self.ids.next_id();
        let mut event = external.event;
        event.event_id = event_id.to_string();
        b.log(&event)?;
        if event.r#type() == EventType::ChannelDeleted {
            let channel: u64 = event.channel_id.parse().map_err(backend)?;
            let ids: Vec<u64> =
                b.tx.range(&self.shared.ks[CHANNEL_UPLOADS], key2(channel, 0)..=key2(channel, u64::MAX))
                    .map(|guard| guard.key().map_err(backend).and_then(|k| tail_u64(&k)))
                    .collect::<Result<_, _>>()?;
            for id in ids {
                if let Some(upload) = b.upload(id)? {
                    b.reclaim(upload)?;
                }
            }
        }
        b.put(EVENT_KEYS, key, event_id.to_be_bytes().to_vec())?;
        if let Some(announcement) = external.announcement {
            let announce_key = format!("{}:announcement", event.idempotency_key);
            self.create(b, announcement, Some(announce_key))?;
        }
        Ok(event_id)
    }
}
