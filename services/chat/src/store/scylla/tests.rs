//! The ScyllaDB chat store's own tests: the whole conformance suite on the in-memory executor
//! (and on a cluster when `CHATMESH_TEST_SCYLLA` is set), golden files of every operation's
//! statements, and what the suite cannot stage: lost writes, many buckets, busy channels,
//! concurrency and failed batches.

use std::sync::{
    Arc, Mutex as StdMutex,
    atomic::{AtomicU64, Ordering},
};

use chatmesh_api::chat::v1::{EventType, channel_event::Payload};
use chatmesh_cql::{Call, Cql, MemoryCql, Statement, golden::taken, memory::Limits, statement, values};
use chatmesh_platform::ids::{EPOCH_MS, IdGenerator};
use prost::Message;

use super::{
    Ids, ScyllaChatStore,
    change_feed::REPLAY_WINDOW,
    encode_chat,
    read::PAGE,
    statements::{CLAIM_EVENT_KEY, CLAIM_KEY, PUT_CHAT, all_statements},
    uploads::ATTACH,
};
use crate::{
    model::{ChatRecord, NewChat, UploadRecord, UploadState},
    store::{
        ChangeFeed, Chats, CreateOutcome, EventLog, ExternalEvent, ItemOutcome, Range, ReadPointers, Uploads,
        conformance::{self, channel_deleted, text},
    },
};

mod memory {
    use super::*;

    crate::chat_store_suite!(|| {
        let ids = Arc::new(IdGenerator::new(1).expect("node id"));
        ((), ScyllaChatStore::new(Cql::memory(MemoryCql::migrated()), ids))
    });
}

mod scylla {
    use super::*;

    // skipped with a printed "skipped: CHATMESH_TEST_SCYLLA not set" unless a server is configured
    crate::chat_store_suite!(async |case: &'static str| async move {
        let cql = chatmesh_cql::migrate::test_keyspace(case).await?;
        let store = ScyllaChatStore::new(cql, Arc::new(IdGenerator::new(1).expect("node id")));
        store.prepare().await.expect("the chat store's statements prepare on the migrated keyspace");
        Some(((), store))
    });
}

/// The first id of a deterministic store: 500 days after the id epoch (2025-05-15).
const FIRST_ID: u64 = (500 * 86_400_000) << 22;
/// Its clock: a minute later.
const NOW: u64 = EPOCH_MS + 500 * 86_400_000 + 60_000;

/// A store with ids counting from [`FIRST_ID`] and a fixed clock, recording its calls; and
/// the same executor, not recording (to stage what a store left half done).
fn fixed() -> (ScyllaChatStore, Cql, Arc<StdMutex<Vec<Call>>>) {
    let memory = MemoryCql::migrated();
    // why: chat rows are written at timestamps taken from their ids; the cluster's clock is
    // the store's
    memory.set_time(NOW as i64);
    let plain = Cql::memory(memory);
    let (cql, log) = plain.recording();
    (ScyllaChatStore::with(cql, Ids::Sequence(AtomicU64::new(FIRST_ID)), || NOW), plain, log)
}

/// A store like [`fixed`]'s (ids from `first_id`, the fixed clock) as one more process on
/// `memory`, not recording.
fn process(memory: &Arc<MemoryCql>, first_id: u64) -> ScyllaChatStore {
    ScyllaChatStore::with(memory.client(0), Ids::Sequence(AtomicU64::new(first_id)), || NOW)
}

/// Polls the feed until it shows `count` changes: a failed write's retry in the background
/// holds it back until settled (time is paused: the retries' sleeps pass at once).
async fn settled_feed(store: &ScyllaChatStore, count: usize) -> Vec<chatmesh_api::chat::v1::ChannelEvent> {
    for _ in 0..1000 {
        let feed = store.feed(0, 100).await.unwrap();
        if feed.len() >= count {
            return feed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the failed write was never settled")
}

/// Moves the store's next id to the first of millisecond `ms`.
fn ids_from(store: &ScyllaChatStore, ms: u64) {
    let Ids::Sequence(next) = &store.inner.ids else { panic!("a fixed store") };
    next.store((ms - EPOCH_MS) << 22, Ordering::Release);
}

/// Moves the store's next id `days` later.
fn skip_days(store: &ScyllaChatStore, days: u64) {
    let Ids::Sequence(next) = &store.inner.ids else { panic!("a fixed store") };
    next.fetch_add((days * 86_400_000) << 22, Ordering::AcqRel);
}

async fn send(store: &ScyllaChatStore, channel: u64, sender: u64, body: &str) -> ChatRecord {
    match store.create_chat(text(channel, sender, body, "")).await.unwrap() {
        CreateOutcome::Created(chat) => chat,
        other => panic!("expected a new chat, got {other:?}"),
    }
}

fn upload(upload_id: u64, channel_id: u64, uploader_id: u64) -> UploadRecord {
    conformance::upload(upload_id, channel_id, uploader_id, NOW)
}

fn with_upload(channel: u64, sender: u64, body: &str, key: &str, upload_id: u64) -> NewChat {
    NewChat { attachments: vec![conformance::attached(upload_id)], ..text(channel, sender, body, key) }
}

fn joined(key: &str) -> ExternalEvent {
    conformance::member_joined(key)
}

/// The claim a send leaves when its process stops before writing the chat.
async fn stage_lost_send(store: &ScyllaChatStore, plain: &Cql, chat: NewChat) -> ChatRecord {
    let record = ChatRecord::created(chat, store.inner.ids.next());
    let event_id = store.inner.ids.next();
    let claim = values![
        record.sender_id,
        record.channel_id,
        record.client_msg_id.as_str(),
        record.chat_id,
        event_id,
        record.body_hash.as_str(),
        encode_chat(&record).unwrap()
    ];
    assert!(plain.lwt(&CLAIM_KEY, claim).await.unwrap());
    record
}

// golden: each operation's calls on a staged store

async fn create_chat() -> Vec<Call> {
    let (store, plain, log) = fixed();
    store.create_upload(upload(11, 1, 7)).await.unwrap();
    let lost = stage_lost_send(&store, &plain, text(1, 7, "lost in a crash", "k3")).await;
    taken(&log);
    // a keyed send with an upload; its retry; a send whose upload is taken; a retry of a
    // send whose process stopped between its claim and its write
    let CreateOutcome::Created(chat) = store.create_chat(with_upload(1, 7, "hi", "k1", 11)).await.unwrap() else {
        panic!("created")
    };
    let again = store.create_chat(with_upload(1, 7, "hi", "k1", 11)).await.unwrap();
    assert_eq!(again, CreateOutcome::Duplicate(chat));
    let taken_upload = store.create_chat(with_upload(1, 7, "again", "k2", 11)).await.unwrap();
    assert_eq!(taken_upload, CreateOutcome::UploadUnavailable(11));
    let finished = store.create_chat(text(1, 7, "lost in a crash", "k3")).await.unwrap();
    assert_eq!(finished, CreateOutcome::Duplicate(lost));
    taken(&log)
}

async fn edit_chat() -> Vec<Call> {
    let (store, _, log) = fixed();
    let chat = send(&store, 1, 7, "hello").await;
    taken(&log);
    assert!(matches!(store.edit_chat(chat.chat_id, 7, "hello!".into()).await.unwrap(), ItemOutcome::Done(_)));
    taken(&log)
}

async fn retract_chats() -> Vec<Call> {
    let (store, _, log) = fixed();
    store.create_upload(upload(11, 1, 7)).await.unwrap();
    let CreateOutcome::Created(chat) = store.create_chat(with_upload(1, 7, "a file", "", 11)).await.unwrap() else {
        panic!("created")
    };
    taken(&log);
    let outcomes = store.retract_chats(7, vec![chat.chat_id, 999]).await.unwrap();
    assert!(matches!(outcomes[..], [ItemOutcome::Done(_), ItemOutcome::NotFound]));
    taken(&log)
}

async fn remove_chats() -> Vec<Call> {
    let (store, _, log) = fixed();
    let chat = send(&store, 1, 7, "a").await;
    taken(&log);
    store.remove_chats(8, vec![chat.chat_id, chat.chat_id, 999]).await.unwrap();
    taken(&log)
}

async fn append_events() -> Vec<Call> {
    let (store, _, log) = fixed();
    store.create_upload(upload(11, 1, 7)).await.unwrap();
    taken(&log);
    // an announced event, its redelivery, a channel's deletion (its upload released)
    let first = store.append_events(vec![joined("k1")]).await.unwrap();
    assert_eq!(store.append_events(vec![joined("k1")]).await.unwrap(), first);
    store.append_events(vec![channel_deleted(1)]).await.unwrap();
    taken(&log)
}

async fn ack() -> Vec<Call> {
    let (store, _, log) = fixed();
    let a = send(&store, 1, 7, "a").await.chat_id;
    let b = send(&store, 1, 7, "b").await.chat_id;
    taken(&log);
    // a first pointer, moved forward, an older ack ignored
    store.ack(1, 8, a).await.unwrap();
    store.ack(1, 8, b).await.unwrap();
    assert_eq!(store.ack(1, 8, a).await.unwrap().last_read_chat_id, b);
    taken(&log)
}

async fn set_cursor() -> Vec<Call> {
    let (store, _, log) = fixed();
    store.set_cursor("publisher", FIRST_ID + 5).await.unwrap();
    taken(&log)
}

async fn cursor() -> Vec<Call> {
    let (store, _, log) = fixed();
    store.set_cursor("publisher", FIRST_ID + 5).await.unwrap();
    taken(&log);
    assert_eq!(store.cursor("publisher").await.unwrap(), FIRST_ID + 5);
    taken(&log)
}

async fn get_chat() -> Vec<Call> {
    let (store, _, log) = fixed();
    let chat = send(&store, 1, 7, "a").await;
    taken(&log);
    assert_eq!(store.get_chat(chat.chat_id).await.unwrap(), Some(chat));
    taken(&log)
}

async fn is_removed() -> Vec<Call> {
    let (store, _, log) = fixed();
    let chat = send(&store, 1, 7, "a").await;
    store.remove_chats(8, vec![chat.chat_id]).await.unwrap();
    taken(&log);
    assert!(store.is_removed(8, chat.chat_id).await.unwrap());
    taken(&log)
}

async fn list_chats() -> Vec<Call> {
    let (store, _, log) = fixed();
    let a = send(&store, 1, 7, "a").await.chat_id;
    let b = send(&store, 1, 7, "b").await.chat_id;
    let c = send(&store, 1, 7, "c").await.chat_id;
    store.remove_chats(8, vec![b]).await.unwrap();
    taken(&log);
    // newest first for a viewer who removed one; then oldest first after an id
    let ids = |chats: Vec<ChatRecord>| chats.iter().map(|c| c.chat_id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_chats(1, Range::Before(None), 2, 8).await.unwrap()), vec![c, a]);
    assert_eq!(ids(store.list_chats(1, Range::After(a), 10, 8).await.unwrap()), vec![c]);
    taken(&log)
}

async fn list_events() -> Vec<Call> {
    let (store, _, log) = fixed();
    let chat = send(&store, 1, 7, "a").await;
    store.edit_chat(chat.chat_id, 7, "b".into()).await.unwrap();
    taken(&log);
    let events = store.list_events(1, 0, 10).await.unwrap();
    assert_eq!(events.len(), 2);
    taken(&log)
}

async fn unread() -> Vec<Call> {
    let (store, _, log) = fixed();
    let a = send(&store, 1, 7, "a").await.chat_id;
    send(&store, 1, 8, "mine").await;
    let c = send(&store, 1, 7, "c").await.chat_id;
    send(&store, 1, 7, "d").await;
    store.ack(1, 8, a).await.unwrap();
    store.remove_chats(8, vec![c]).await.unwrap();
    taken(&log);
    assert_eq!(store.unread(1, 8).await.unwrap().count, 1);
    taken(&log)
}

async fn newest_chat_at_or_before() -> Vec<Call> {
    let (store, _, log) = fixed();
    let a = send(&store, 1, 7, "a").await.chat_id;
    send(&store, 1, 7, "b").await;
    taken(&log);
    assert_eq!(store.newest_chat_at_or_before(1, a + 1).await.unwrap(), Some(a));
    taken(&log)
}

async fn removed_by() -> Vec<Call> {
    let (store, _, log) = fixed();
    let chat = send(&store, 1, 7, "a").await.chat_id;
    store.remove_chats(8, vec![chat]).await.unwrap();
    store.remove_chats(9, vec![chat]).await.unwrap();
    taken(&log);
    assert_eq!(store.removed_by(chat).await.unwrap(), vec![8, 9]);
    taken(&log)
}

async fn scan_chats() -> Vec<Call> {
    let (store, _, log) = fixed();
    let a = send(&store, 2, 7, "a").await.chat_id;
    let b = send(&store, 1, 7, "b").await.chat_id;
    taken(&log);
    let scanned: Vec<u64> = store.scan_chats((0, 0), 10).await.unwrap().iter().map(|c| c.chat_id).collect();
    assert_eq!(scanned, vec![b, a]);
    taken(&log)
}

async fn close() -> Vec<Call> {
    let memory = MemoryCql::migrated();
    memory.set_time(NOW as i64);
    let (cql, log) = memory.client(0).recording();
    let store = ScyllaChatStore::with(cql, Ids::Sequence(AtomicU64::new(FIRST_ID)), || NOW);
    send(&store, 1, 7, "a").await;
    taken(&log);
    // an orderly stop; then the node's next process finds the mark and clears it before its
    // first write
    store.close().await.unwrap();
    let (cql, next_log) = memory.client(0).recording();
    let next = ScyllaChatStore::with(cql, Ids::Sequence(AtomicU64::new(FIRST_ID + 1000)), || NOW);
    send(&next, 1, 7, "b").await;
    let mut calls = taken(&log);
    calls.extend(taken(&next_log));
    calls
}

/// The operations delegated to the feed and upload modules (their golden files are theirs),
/// for the coverage of every statement of the store.
async fn delegated() -> Vec<Call> {
    let (store, plain, log) = fixed();
    // what processes before migration 0005 queued, and an hour of the reclaim queue emptied long ago
    plain.execute(&LEGACY_RECLAIM_PUT, values![0i32, 12u64]).await.unwrap();
    plain.execute(&LEGACY_CHANNEL_RELEASE_PUT, values![0i32, 3u64]).await.unwrap();
    plain.execute(&QUEUE_HOUR_PUT, values!["reclaim", (NOW / 3_600_000) as i64 - 5]).await.unwrap();
    let day = (NOW / 86_400_000) as i64 - 1;
    plain.execute(&LEGACY_PENDING_PUT, values![day, 12u64]).await.unwrap();
    plain.execute(&LEGACY_PENDING_DAY_PUT, values![0i32, day]).await.unwrap();
    let chat = send(&store, 1, 7, "a").await.chat_id;
    store.remove_chats(8, vec![chat]).await.unwrap();
    store.create_upload(upload(11, 1, 7)).await.unwrap();
    store.create_upload(upload(12, 1, 7)).await.unwrap();
    store.create_upload(upload(13, 2, 7)).await.unwrap();
    store.get_upload(11).await.unwrap();
    // a send whose second upload is refused gives the first one back
    let refused = store.create_chat(NewChat {
        attachments: [with_upload(1, 7, "f", "", 11).attachments, with_upload(1, 7, "f", "", 13).attachments].concat(),
        ..text(1, 7, "f", "")
    });
    assert_eq!(refused.await.unwrap(), CreateOutcome::UploadUnavailable(13));
    store.append_events(vec![channel_deleted(2)]).await.unwrap();
    assert_eq!(store.get_upload(13).await.unwrap().map(|u| u.state), Some(UploadState::Reclaiming));
    store.feed(0, 10).await.unwrap();
    store.feed_head().await.unwrap();
    store.feed_count(0, 10).await.unwrap();
    store.channel_deleted(2).await.unwrap();
    store.expire_uploads(NOW + 1, 10).await.unwrap();
    let reclaimable: Vec<u64> = store.reclaimable_uploads(10).await.unwrap().iter().map(|u| u.upload_id).collect();
    store.forget_uploads(reclaimable).await.unwrap();
    assert!(store.reclaimable_uploads(10).await.unwrap().is_empty(), "the forgotten ones' entries dropped");
    taken(&log)
}

static LEGACY_RECLAIM_PUT: Statement = statement!(
    "test.store_legacy_reclaim_put",
    idempotent,
    "INSERT INTO chat_uploads_reclaim (shard, upload_id) VALUES (?, ?)"
);
static LEGACY_CHANNEL_RELEASE_PUT: Statement = statement!(
    "test.store_legacy_channel_release_put",
    idempotent,
    "INSERT INTO chat_uploads_channel_releases (shard, channel_id) VALUES (?, ?)"
);
static LEGACY_PENDING_PUT: Statement = statement!(
    "test.store_legacy_pending_put",
    idempotent,
    "INSERT INTO chat_uploads_pending (day, upload_id) VALUES (?, ?)"
);
static LEGACY_PENDING_DAY_PUT: Statement = statement!(
    "test.store_legacy_pending_day_put",
    idempotent,
    "INSERT INTO chat_uploads_pending_days (shard, day) VALUES (?, ?)"
);
static QUEUE_HOUR_PUT: Statement = statement!(
    "test.store_queue_hour_put",
    idempotent,
    "INSERT INTO chat_uploads_queue_hours (queue, hour) VALUES (?, ?)"
);

chatmesh_cql::golden_files!(
    prefix: "",
    statements: super::all_statements(),
    also: [delegated],
    [
    create_chat,
    edit_chat,
    retract_chats,
    remove_chats,
    append_events,
    ack,
    set_cursor,
    cursor,
    get_chat,
    is_removed,
    list_chats,
    list_events,
    unread,
    newest_chat_at_or_before,
    removed_by,
    scan_chats,
    close,
    ]
);

#[tokio::test]
async fn every_statement_prepares_on_the_migrated_schema() {
    let (store, _, _) = fixed();
    store.prepare().await.unwrap();
}

#[tokio::test]
async fn an_append_whose_write_was_lost_is_finished_by_its_redelivery() {
    let (store, plain, _) = fixed();
    // the claim an append leaves when its process stops before the write
    let mut event = joined("k1");
    let event_id = store.inner.ids.next();
    event.event.event_id = event_id.to_string();
    let record = ChatRecord::created(event.announcement.clone().unwrap(), store.inner.ids.next());
    let chat_event_id = store.inner.ids.next();
    let claim =
        values!["k1", event_id, 1u64, event.event.encode_to_vec(), chat_event_id, encode_chat(&record).unwrap()];
    assert!(plain.lwt(&CLAIM_EVENT_KEY, claim).await.unwrap());
    assert!(store.list_events(1, 0, 10).await.unwrap().is_empty());

    assert_eq!(store.append_events(vec![joined("k1")]).await.unwrap(), vec![event_id]);
    let events = store.list_events(1, 0, 10).await.unwrap();
    let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids, vec![event_id.to_string(), chat_event_id.to_string()]);
    assert_eq!(store.get_chat(record.chat_id).await.unwrap(), Some(record));
    assert_eq!(store.feed(0, 10).await.unwrap().len(), 2, "in the feed too");
}

#[tokio::test]
async fn a_lost_send_is_finished_with_its_uploads_or_given_up_when_they_went_elsewhere() {
    let (store, plain, _) = fixed();
    store.create_upload(upload(11, 1, 7)).await.unwrap();
    store.create_upload(upload(12, 1, 7)).await.unwrap();
    // lost before its upload was attached: the retry attaches it and writes the chat
    let lost = stage_lost_send(&store, &plain, with_upload(1, 7, "f", "k1", 11)).await;
    let retried = store.create_chat(with_upload(1, 7, "f", "k1", 11)).await.unwrap();
    assert_eq!(retried, CreateOutcome::Duplicate(lost.clone()));
    assert_eq!(store.get_upload(11).await.unwrap().unwrap().state, UploadState::Attached(lost.chat_id));
    assert_eq!(store.get_chat(lost.chat_id).await.unwrap(), Some(lost));
    // lost, and its upload went to another chat meanwhile: the claim is given up and the
    // retry is a send like any other (here refused: the upload is taken)
    let gone = stage_lost_send(&store, &plain, with_upload(1, 7, "g", "k2", 12)).await;
    let other = store.create_chat(with_upload(1, 7, "other", "", 12)).await.unwrap();
    assert!(matches!(other, CreateOutcome::Created(_)));
    let retried = store.create_chat(with_upload(1, 7, "g", "k2", 12)).await.unwrap();
    assert_eq!(retried, CreateOutcome::UploadUnavailable(12));
    assert_eq!(store.get_chat(gone.chat_id).await.unwrap(), None);
    assert!(matches!(store.create_chat(text(1, 7, "g", "k2")).await.unwrap(), CreateOutcome::Created(_)));
}

#[tokio::test]
async fn a_send_whose_upload_is_refused_leaves_its_key_free() {
    let (store, _, _) = fixed();
    store.create_upload(upload(11, 1, 8)).await.unwrap();
    assert_eq!(
        store.create_chat(with_upload(1, 7, "f", "k1", 11)).await.unwrap(),
        CreateOutcome::UploadUnavailable(11),
        "another's upload"
    );
    assert!(matches!(store.create_chat(text(1, 7, "f", "k1")).await.unwrap(), CreateOutcome::Created(_)));
}

#[tokio::test]
async fn pages_cross_buckets_and_skip_empty_ones() {
    let memory = MemoryCql::migrated();
    // why: the ids run ~850 days on; a cluster refuses write timestamps 3 days ahead of its clock
    memory.set_time((NOW + 1000 * 86_400_000) as i64);
    let store = process(&memory, FIRST_ID);
    let mut ids = Vec::new();
    // 70 buckets with one chat each (more than a page of buckets), gaps of empty buckets
    for i in 0..70 {
        ids.push(send(&store, 1, 7, &format!("m{i}")).await.chat_id);
        skip_days(&store, if i % 7 == 0 { 25 } else { 10 });
    }
    send(&store, 2, 7, "elsewhere").await;
    let listed = |chats: Vec<ChatRecord>| chats.iter().map(|c| c.chat_id).collect::<Vec<_>>();
    let newest = listed(store.list_chats(1, Range::Before(None), 100, 0).await.unwrap());
    assert_eq!(newest, ids.iter().rev().copied().collect::<Vec<_>>());
    let after = listed(store.list_chats(1, Range::After(ids[3]), 3, 0).await.unwrap());
    assert_eq!(after, ids[4..7]);
    let before = listed(store.list_chats(1, Range::Before(Some(ids[3])), 10, 0).await.unwrap());
    assert_eq!(before, vec![ids[2], ids[1], ids[0]]);
    assert_eq!(store.newest_chat_at_or_before(1, ids[40] + 1).await.unwrap(), Some(ids[40]));
    assert_eq!(store.newest_chat_at_or_before(1, ids[0] - 1).await.unwrap(), None);
    assert_eq!(store.list_events(1, ids[68], 10).await.unwrap().len(), 2, "two created events after");
    let unread = store.unread(1, 8).await.unwrap();
    assert_eq!((unread.count, unread.last_chat_id), (70, ids[69]));
    assert_eq!(store.scan_chats((0, 0), 100).await.unwrap().len(), 71);
}

#[tokio::test]
async fn unread_counts_and_removals_page_through_busy_channels() {
    let (store, _, _) = fixed();
    let mut ids = Vec::new();
    for i in 0..(PAGE + 20) {
        ids.push(send(&store, 1, 7, &format!("m{i}")).await.chat_id);
    }
    store.remove_chats(8, ids[..PAGE + 3].to_vec()).await.unwrap();
    assert_eq!(store.unread(1, 8).await.unwrap().count, 17);
    assert_eq!(store.unread(1, 9).await.unwrap().count, PAGE as u64 + 20);
    let seen = store.list_chats(1, Range::After(0), 10, 8).await.unwrap();
    assert_eq!(seen.iter().map(|c| c.chat_id).collect::<Vec<_>>(), ids[PAGE + 3..PAGE + 13]);
    for user in 100..(100 + PAGE as u64 + 2) {
        store.remove_chats(user, vec![ids[0]]).await.unwrap();
    }
    assert_eq!(store.removed_by(ids[0]).await.unwrap().len(), PAGE + 3);
}

#[tokio::test]
async fn scans_walk_channels_across_slots_and_shards() {
    let (store, _, _) = fixed();
    let channels = [1u64, (3 << 40) + 2, (3 << 40) + 9, (5 << 56) + 1, (127 << 56) + 4];
    let mut expected = Vec::new();
    for channel in channels.iter().rev() {
        let first = send(&store, *channel, 7, "a").await;
        let second = send(&store, *channel, 7, "b").await;
        expected.push((*channel, [first.chat_id, second.chat_id]));
    }
    expected.sort();
    let expected: Vec<u64> = expected.iter().flat_map(|(_, ids)| *ids).collect();
    let all: Vec<u64> = store.scan_chats((0, 0), 100).await.unwrap().iter().map(|c| c.chat_id).collect();
    assert_eq!(all, expected);
    // page by page, resuming after the last (channel, chat) seen
    let mut after = (0, 0);
    let mut paged = Vec::new();
    loop {
        let page = store.scan_chats(after, 3).await.unwrap();
        let Some(last) = page.last() else { break };
        after = (last.channel_id, last.chat_id);
        paged.extend(page.iter().map(|c| c.chat_id));
    }
    assert_eq!(paged, expected);
    assert!(store.scan_chats((channels[2], u64::MAX), 100).await.unwrap().len() == 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_in_one_channel_commit_in_id_order() {
    let store = ScyllaChatStore::new(Cql::memory(MemoryCql::migrated()), Arc::new(IdGenerator::new(1).unwrap()));
    let senders = (0..16).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            for j in 0..8 {
                store.create_chat(text(1, i, &format!("{i}/{j}"), "")).await.unwrap();
            }
        })
    });
    futures::future::join_all(senders).await.into_iter().for_each(|r| r.unwrap());
    let chats = store.list_chats(1, Range::After(0), 1000, 0).await.unwrap();
    assert_eq!(chats.len(), 128);
    let events = store.list_events(1, 0, 1000).await.unwrap();
    let created: Vec<String> = events
        .iter()
        .map(|e| match &e.payload {
            Some(Payload::Chat(chat)) => chat.chat_id.clone(),
            _ => panic!("a chat event"),
        })
        .collect();
    let ids: Vec<String> = chats.iter().map(|c| c.chat_id.to_string()).collect();
    assert_eq!(created, ids, "chat ids and their events' ids in the same order");
    let stats = store.stats();
    assert_eq!(stats.writes, 128);
    assert!(stats.syncs >= 128 && stats.durable_id > 0);
}

#[tokio::test]
async fn a_failed_write_holds_the_feed_back_until_it_is_settled() {
    let engine = MemoryCql::migrated();
    let store = ScyllaChatStore::new(Cql::memory(engine.clone()), Arc::new(IdGenerator::new(1).unwrap()));
    // (the first feed read records the node, so the next write is the chat's batch)
    assert!(store.feed(0, 10).await.unwrap().is_empty());
    // a write timeout whose batch is not applied (yet): the caller gets an error ...
    engine.fail_writes(1, false);
    assert!(store.create_chat(crate::store::conformance::text(1, 7, "lost?", "")).await.is_err());
    // ... a later chat in another channel commits at once, with a larger id ...
    let CreateOutcome::Created(later) =
        store.create_chat(crate::store::conformance::text(2, 7, "later", "")).await.unwrap()
    else {
        panic!("created")
    };
    // ... but the feed holds it back while the failed batch may still apply below it
    assert!(store.feed(0, 10).await.unwrap().is_empty(), "nothing passes an unsettled write");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let feed = loop {
        let feed = store.feed(0, 10).await.unwrap();
        if !feed.is_empty() || std::time::Instant::now() > deadline {
            break feed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let channels: Vec<&str> = feed.iter().map(|e| e.channel_id.as_str()).collect();
    assert_eq!(channels, vec!["1", "2"], "the settled write first, in id order");
    assert_eq!(store.list_chats(1, Range::After(0), 10, 0).await.unwrap().len(), 1);
    assert_eq!(store.get_chat(later.chat_id).await.unwrap().unwrap().text, "later");
}

#[tokio::test(start_paused = true)]
async fn a_create_applied_late_by_the_batchlog_and_then_retracted_stays_retracted_after_its_retry() {
    let memory = MemoryCql::migrated();
    memory.set_time(NOW as i64);
    let store = process(&memory, FIRST_ID);
    store.create_upload(upload(11, 1, 7)).await.unwrap();
    // the create's batch times out, and the batchlog applies it later ...
    memory.hold_writes_of(&PUT_CHAT, 1);
    assert!(store.create_chat(with_upload(1, 7, "a file", "", 11)).await.is_err());
    assert_eq!(memory.release_held(), 1);
    let chat = store.list_chats(1, Range::After(0), 10, 0).await.unwrap().pop().expect("applied by the batchlog");
    // ... the sender retracts it (its upload released) ...
    assert!(matches!(store.retract_chats(7, vec![chat.chat_id]).await.unwrap()[..], [ItemOutcome::Done(_)]));
    assert_eq!(store.get_upload(11).await.unwrap().unwrap().state, UploadState::Reclaiming);
    // ... and the create's retry in the background must not bring it back
    settled_feed(&store, 2).await;
    let after = store.get_chat(chat.chat_id).await.unwrap().expect("the chat");
    assert!(after.is_retracted(), "un-retracted by the retry: {after:?}");
    assert!(after.attachments.is_empty() && after.text.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_edit_of_a_create_applied_late_survives_the_creates_retry() {
    let memory = MemoryCql::migrated();
    memory.set_time(NOW as i64);
    let store = process(&memory, FIRST_ID);
    memory.hold_writes_of(&PUT_CHAT, 1);
    assert!(store.create_chat(text(1, 7, "helo", "")).await.is_err());
    assert_eq!(memory.release_held(), 1);
    let chat = store.list_chats(1, Range::After(0), 10, 0).await.unwrap().pop().expect("applied by the batchlog");
    assert!(matches!(store.edit_chat(chat.chat_id, 7, "hello".into()).await.unwrap(), ItemOutcome::Done(_)));
    settled_feed(&store, 2).await;
    assert_eq!(store.get_chat(chat.chat_id).await.unwrap().unwrap().text, "hello", "reverted by the retry");
}

#[tokio::test]
async fn two_processes_finishing_one_keyed_send_with_uploads_attach_both_and_keep_the_key() {
    let memory = MemoryCql::migrated();
    memory.set_time(NOW as i64);
    let (a, b) = (process(&memory, FIRST_ID), process(&memory, FIRST_ID + 1000));
    a.create_upload(upload(11, 1, 7)).await.unwrap();
    a.create_upload(upload(12, 1, 7)).await.unwrap();
    let send = || NewChat {
        attachments: vec![conformance::attached(11), conformance::attached(12)],
        ..text(1, 7, "two files", "k1")
    };
    // process A claims the key and attaches upload 11, then stalls before attaching 12 ...
    let mut first = memory.pause_before(&ATTACH);
    let sending = tokio::spawn({
        let (a, chat) = (a.clone(), send());
        async move { a.create_chat(chat).await }
    });
    first.reached().await;
    let mut second = memory.pause_before(&ATTACH);
    first.release();
    second.reached().await;
    // ... meanwhile B, retrying the same send, finds the key and finishes A's write (attaching 12)
    let CreateOutcome::Duplicate(chat) = b.create_chat(send()).await.unwrap() else { panic!("a duplicate") };
    second.release();
    let outcome = sending.await.expect("process A's send").unwrap();
    assert!(matches!(&outcome, CreateOutcome::Created(c) if c.chat_id == chat.chat_id), "A's outcome: {outcome:?}");
    for upload_id in [11, 12] {
        let state = a.get_upload(upload_id).await.unwrap().unwrap().state;
        assert_eq!(state, UploadState::Attached(chat.chat_id), "upload {upload_id}");
    }
    // the key still names the chat: a third retry is a duplicate, not a second chat
    assert_eq!(b.create_chat(send()).await.unwrap(), CreateOutcome::Duplicate(chat.clone()));
    let chats = a.list_chats(1, Range::After(0), 10, 0).await.unwrap();
    assert_eq!(chats.iter().map(|c| c.chat_id).collect::<Vec<_>>(), vec![chat.chat_id], "one chat");
}

#[tokio::test(start_paused = true)]
async fn a_batch_refused_as_invalid_does_not_hold_the_feed() {
    let memory = MemoryCql::migrated();
    memory.set_time(NOW as i64);
    memory.set_limits(chatmesh_cql::memory::Limits { batch_fail_bytes: 8 << 10, ..Default::default() });
    let store = process(&memory, FIRST_ID);
    // refused before anything applied (past batch_size_fail_threshold_in_kb): no retry can apply it
    assert!(store.create_chat(text(1, 7, &"x".repeat(10_000), "")).await.is_err());
    send(&store, 2, 7, "later").await;
    let feed = store.feed(0, 10).await.unwrap();
    assert_eq!(
        feed.iter().map(|e| e.channel_id.as_str()).collect::<Vec<_>>(),
        vec!["2"],
        "held back by a refused batch"
    );
}

// a read pointer acked before migration 0005, as processes of earlier versions wrote it
static LEGACY_POINTER_PUT: Statement = statement!(
    "test.legacy_pointer_put",
    idempotent,
    "INSERT INTO chat_read_pointers (user_id, channel_id, last_read_chat_id, acked_at_ms) VALUES (?, ?, ?, ?)"
);
static POINTER_ROW: Statement = statement!(
    "test.pointer_row",
    idempotent,
    "SELECT last_read_chat_id FROM chat_pointers WHERE user_id = ? AND channel_id = ?"
);

#[tokio::test]
async fn a_pointer_acked_before_per_channel_pointers_counts_until_an_ack_passes_it() {
    let (store, plain, _) = fixed();
    let a = send(&store, 1, 7, "a").await.chat_id;
    let b = send(&store, 1, 7, "b").await.chat_id;
    let c = send(&store, 1, 7, "c").await.chat_id;
    // user 8 acked b in channel 1 before the upgrade: the row is in chat_read_pointers
    plain.execute(&LEGACY_POINTER_PUT, values![8u64, 1u64, b, NOW - 5]).await.unwrap();
    let row = || async { plain.row::<(i64,)>(&POINTER_ROW, values![8u64, 1u64]).await.unwrap() };
    assert_eq!(store.unread(1, 8).await.unwrap().count, 1, "c only");
    assert_eq!(store.ack(1, 8, a).await.unwrap().last_read_chat_id, b, "never moved back");
    assert_eq!(row().await, None, "an ack behind it writes nothing");
    assert_eq!(store.ack(1, 8, c).await.unwrap().last_read_chat_id, c);
    assert_eq!(row().await, Some((c as i64,)), "moved on in the table keyed by user and channel");
    let unread = store.unread(1, 8).await.unwrap();
    assert_eq!((unread.count, unread.pointer.last_read_chat_id), (0, c));
    assert_eq!(store.ack(2, 8, a).await.unwrap().last_read_chat_id, a, "another channel: a pointer of its own");
}

static SWEEP_CLOCK: AtomicU64 = AtomicU64::new(NOW);

#[tokio::test]
async fn upload_sweeps_scan_at_most_an_hours_deleted_queue_entries_however_long_they_run() {
    let memory = MemoryCql::migrated();
    memory.set_time(NOW as i64);
    // why: a sweep scanning every entry deleted within gc_grace (10 days) passes this in hours
    memory.set_limits(Limits { tombstone_fail: 150, ..Limits::default() });
    let store = ScyllaChatStore::with(memory.client(0), Ids::Sequence(AtomicU64::new(FIRST_ID)), || {
        SWEEP_CLOCK.load(Ordering::Acquire)
    });
    for hour in 0..12u64 {
        let now = NOW + hour * 3_600_000;
        SWEEP_CLOCK.store(now, Ordering::Release);
        ids_from(&store, now);
        // this hour: 40 uploads abandoned, 20 channels deleted, and a sweep that reclaims them all
        for n in 0..40 {
            let upload_id = ((now - EPOCH_MS) << 22) | n;
            store.create_upload(conformance::upload(upload_id, 1, 7, now)).await.unwrap();
        }
        for n in 0..20 {
            store.append_events(vec![channel_deleted(1000 + hour * 100 + n)]).await.unwrap();
        }
        assert_eq!(store.expire_uploads(now + 1, 1000).await.unwrap(), 40, "hour {hour}");
        let mut reclaimed = 0;
        loop {
            let uploads = store.reclaimable_uploads(256).await.unwrap();
            if uploads.is_empty() {
                break;
            }
            reclaimed += uploads.len();
            store.forget_uploads(uploads.iter().map(|u| u.upload_id).collect()).await.unwrap();
        }
        assert_eq!(reclaimed, 40, "hour {hour}");
    }
    for (name, read) in memory.stats().reads {
        assert!(read.max_tombstones <= 60, "{name} scanned {} tombstones", read.max_tombstones);
    }
}

#[tokio::test(start_paused = true)]
async fn a_write_that_keeps_failing_holds_the_feed_no_longer_than_the_batchlogs_replay_window() {
    let memory = MemoryCql::migrated();
    memory.set_time(NOW as i64);
    let store = process(&memory, FIRST_ID);
    let first = send(&store, 1, 7, "a").await;
    // from now on every write of a chat row times out: the create and each of its retries
    memory.hold_writes_of(&PUT_CHAT, usize::MAX);
    assert!(store.create_chat(text(1, 7, "stuck", "")).await.is_err());
    store.remove_chats(8, vec![first.chat_id]).await.unwrap();
    let types = |feed: Vec<chatmesh_api::chat::v1::ChannelEvent>| feed.iter().map(|e| e.r#type()).collect::<Vec<_>>();
    tokio::time::sleep(REPLAY_WINDOW - std::time::Duration::from_secs(1)).await;
    assert_eq!(types(store.feed(0, 10).await.unwrap()), vec![EventType::ChatCreated], "held behind the failed write");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let feed = settled_feed(&store, 2).await;
    assert_eq!(types(feed), vec![EventType::ChatCreated, EventType::ChatRemoved], "released after the window");
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_the_feed_waits_out_the_batchlog_replay_of_a_write_sent_before_it() {
    let memory = MemoryCql::migrated();
    memory.set_time(NOW as i64);
    let before = process(&memory, FIRST_ID);
    send(&before, 1, 7, "delivered").await;
    let delivered = before.feed(0, 10).await.unwrap();
    before.set_cursor("publisher", delivered[0].event_id.parse().unwrap()).await.unwrap();
    // a send times out, its batch left in the batchlog; then the process dies
    memory.hold_writes_of(&PUT_CHAT, 1);
    assert!(before.create_chat(text(1, 7, "replayed later", "")).await.is_err());
    before.inner.cql.crash();
    // the restarted process (same node) writes, and its relay reads on from the cursor
    let after = process(&memory, FIRST_ID + 1000);
    send(&after, 2, 7, "after the restart").await;
    let cursor = after.cursor("publisher").await.unwrap();
    assert!(after.feed(cursor, 10).await.unwrap().is_empty(), "nothing passes what the batchlog may still replay");
    assert_eq!(memory.release_held(), 1, "the batchlog replays it within its window");
    tokio::time::sleep(REPLAY_WINDOW).await;
    let feed = after.feed(cursor, 10).await.unwrap();
    let channels: Vec<&str> = feed.iter().map(|e| e.channel_id.as_str()).collect();
    assert_eq!(channels, vec!["1", "2"], "the replayed write first, in id order");
}

#[tokio::test]
async fn rows_shared_by_a_nodes_events_or_by_every_channel_are_written_once_per_process() {
    let (store, _, log) = fixed();
    // channels 1 and 2: one registry slot and shard; five events in one minute of the feed
    for n in 0..5 {
        send(&store, 1 + n % 2, 7, "m").await;
    }
    let calls = taken(&log);
    let count = |name: &str| calls.iter().filter(|c| c.name == name).count();
    assert_eq!(count("chat.feed_put"), 5);
    assert_eq!((count("chat.feed_slot_put"), count("chat.feed_day_put")), (1, 1), "the minute's and the day's rows");
    let registry = (count("chat.put_channel"), count("chat.put_channel_slot"), count("chat.put_channel_shard"));
    assert_eq!(registry, (2, 1, 1), "a channel's row each, the slot's and the shard's once");
}

fn channels(feed: &[chatmesh_api::chat::v1::ChannelEvent]) -> Vec<&str> {
    feed.iter().map(|e| e.channel_id.as_str()).collect()
}

/// The feed after the publisher's cursor, once `process` has sent a chat in `channel`.
async fn restarted_feed(process: &ScyllaChatStore, channel: u64) -> Vec<chatmesh_api::chat::v1::ChannelEvent> {
    send(process, channel, 7, "after the restart").await;
    let cursor = process.cursor("publisher").await.unwrap();
    process.feed(cursor, 10).await.unwrap()
}

/// Sends a chat in `channel` and moves the publisher's cursor past everything in the feed.
async fn send_and_deliver(process: &ScyllaChatStore, channel: u64) {
    send(process, channel, 7, "delivered").await;
    let delivered = process.feed(0, 100).await.unwrap();
    let last = delivered.last().expect("delivered at once").event_id.parse().unwrap();
    process.set_cursor("publisher", last).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn after_a_clean_stop_a_restart_delivers_at_once() {
    let memory = MemoryCql::migrated();
    memory.set_time(NOW as i64);
    let before = process(&memory, FIRST_ID);
    send_and_deliver(&before, 1).await;
    // an orderly stop: requests drained, nothing unsettled
    before.close().await.unwrap();
    before.inner.cql.crash();
    let after = process(&memory, FIRST_ID + 1000);
    assert_eq!(channels(&restarted_feed(&after, 2).await), vec!["2"], "delivered without waiting");
}

#[tokio::test(start_paused = true)]
async fn a_stop_with_a_failed_write_still_held_is_not_clean() {
    let memory = MemoryCql::migrated();
    memory.set_time(NOW as i64);
    let before = process(&memory, FIRST_ID);
    send_and_deliver(&before, 1).await;
    // a send times out, its batch left in the batchlog, and is still held when the process stops
    memory.hold_writes_of(&PUT_CHAT, 1);
    assert!(before.create_chat(text(1, 7, "replayed later", "")).await.is_err());
    before.close().await.unwrap();
    before.inner.cql.crash();
    let after = process(&memory, FIRST_ID + 1000);
    assert!(restarted_feed(&after, 2).await.is_empty(), "nothing passes what the batchlog may still replay");
    assert_eq!(memory.release_held(), 1, "the batchlog replays it within its window");
    tokio::time::sleep(REPLAY_WINDOW).await;
    let cursor = after.cursor("publisher").await.unwrap();
    assert_eq!(channels(&after.feed(cursor, 10).await.unwrap()), vec!["1", "2"], "the replayed write first");
}

#[tokio::test(start_paused = true)]
async fn a_crash_after_a_clean_restarts_first_write_is_not_taken_for_a_clean_stop() {
    let memory = MemoryCql::migrated();
    memory.set_time(NOW as i64);
    let first = process(&memory, FIRST_ID);
    send_and_deliver(&first, 1).await;
    first.close().await.unwrap();
    first.inner.cql.crash();
    // the restart after a clean stop delivers at once ...
    let second = process(&memory, FIRST_ID + 1000);
    send_and_deliver(&second, 2).await;
    // ... then a send times out, its batch left in the batchlog, and the process dies
    memory.hold_writes_of(&PUT_CHAT, 1);
    assert!(second.create_chat(text(3, 7, "replayed later", "")).await.is_err());
    second.inner.cql.crash();
    let third = process(&memory, FIRST_ID + 2000);
    assert!(restarted_feed(&third, 4).await.is_empty(), "nothing passes what the batchlog may still replay");
    assert_eq!(memory.release_held(), 1);
    tokio::time::sleep(REPLAY_WINDOW).await;
    let cursor = third.cursor("publisher").await.unwrap();
    assert_eq!(channels(&third.feed(cursor, 10).await.unwrap()), vec!["3", "4"], "the replayed write first");
}

#[tokio::test(start_paused = true)]
async fn a_write_after_a_clean_stop_undoes_it() {
    let memory = MemoryCql::migrated();
    memory.set_time(NOW as i64);
    let before = process(&memory, FIRST_ID);
    send_and_deliver(&before, 1).await;
    before.close().await.unwrap();
    // a write after the stop was recorded (a late request), left in the batchlog by a crash
    memory.hold_writes_of(&PUT_CHAT, 1);
    assert!(before.create_chat(text(1, 7, "replayed later", "")).await.is_err());
    before.inner.cql.crash();
    let after = process(&memory, FIRST_ID + 1000);
    assert!(restarted_feed(&after, 2).await.is_empty(), "nothing passes what the batchlog may still replay");
    assert_eq!(memory.release_held(), 1);
    tokio::time::sleep(REPLAY_WINDOW).await;
    let cursor = after.cursor("publisher").await.unwrap();
    assert_eq!(channels(&after.feed(cursor, 10).await.unwrap()), vec!["1", "2"]);
}
