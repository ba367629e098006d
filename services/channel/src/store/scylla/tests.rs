//! The ScyllaDB channel store on the schema-checked in-memory executor: the conformance suite
//! (and on a real server when `CHATMESH_TEST_SCYLLA` is set), the golden files of what each
//! operation runs (`src/store/golden/`), recovery from a process stopped mid-change, processes
//! whose clocks disagree, and the tombstones reads scan.

use std::sync::{Arc, Mutex};

use chatmesh_cql::{Call, MemoryCql, Statement, golden::taken, memory::Limits, statement};

use super::{
    changes::{Pending, Write},
    queue::{BUCKET_MS, CLOSE_AFTER_MS, WRITE_DEADLINE_US, bucket_of},
    *,
};
use crate::{
    model::{Kind, Role},
    store::{
        Op,
        conformance::{channel, member},
    },
};

mod memory {
    use super::*;

    crate::channel_store_suite!(|| ((), ScyllaChannelStore::new(Cql::memory(MemoryCql::migrated()))));
}

mod scylla {
    use super::*;

    // skipped with a printed "skipped: CHATMESH_TEST_SCYLLA not set" unless a server is configured
    crate::channel_store_suite!(async |case: &'static str| async move {
        let cql = chatmesh_cql::migrate::test_keyspace(case).await?;
        Some(((), ScyllaChannelStore::new(cql)))
    });
}

#[tokio::test]
async fn every_statement_parses_against_the_migrations() {
    ScyllaChannelStore::new(Cql::memory(MemoryCql::migrated())).prepare().await.unwrap();
}

fn create(id: u64, members: &[(u64, Role)], outbox: &[u64]) -> Change {
    let mut ops = vec![Op::PutChannel(channel(id, Kind::Group))];
    ops.extend(members.iter().map(|(user, role)| Op::PutMember(member(id, *user, *role))));
    let outbox = outbox.iter().map(|seq| OutboxEntry { seq: *seq, event: vec![*seq as u8] }).collect();
    Change { channel_id: id, expected_version: None, ops, outbox }
}

fn direct(id: u64, low: u64, high: u64) -> Change {
    Change {
        channel_id: id,
        expected_version: None,
        ops: vec![
            Op::ClaimDirectPair { low, high },
            Op::PutChannel(channel(id, Kind::Direct)),
            Op::PutMember(member(id, low, Role::Member)),
            Op::PutMember(member(id, high, Role::Member)),
        ],
        outbox: vec![],
    }
}

fn put_member(id: u64, version: u64, record: MemberRecord) -> Change {
    Change { channel_id: id, expected_version: Some(version), ops: vec![Op::PutMember(record)], outbox: vec![] }
}

fn closed(id: u64, user: u64, closed: bool) -> MemberRecord {
    MemberRecord { closed, closed_at_ms: if closed { 5 } else { 0 }, ..member(id, user, Role::Member) }
}

/// Where the stores' clocks stand in tests (2023-11-14), so golden timestamps are exact.
const PINNED_MS: i64 = 1_700_000_000_000;

/// One executor; `store` sets up unrecorded, `recorded()` gives the same store (one process:
/// one clock, one relay) whose calls are kept.
struct Bench {
    memory: Arc<MemoryCql>,
    cql: Cql,
    clock: Arc<Clock>,
    store: ScyllaChannelStore,
}

impl Bench {
    fn new() -> Self {
        let memory = MemoryCql::migrated();
        let cql = Cql::memory(memory.clone());
        let clock = Arc::new(Clock::pinned(PINNED_MS));
        Bench { store: ScyllaChannelStore::on_clock(cql.clone(), clock.clone()), clock, cql, memory }
    }

    fn recorded(&self) -> (ScyllaChannelStore, Arc<Mutex<Vec<Call>>>) {
        let (cql, log) = self.cql.recording();
        (ScyllaChannelStore { cql, ..self.store.clone() }, log)
    }
}

/// A store as one more process on `memory`, its clock pinned `ms_later` than [`PINNED_MS`].
fn process(memory: &Arc<MemoryCql>, ms_later: i64) -> ScyllaChannelStore {
    ScyllaChannelStore::on_clock(memory.client(0), Arc::new(Clock::pinned(PINNED_MS + ms_later)))
}

/// Later than [`READER_FINISHES_AFTER_US`]: a pending change this old has stalled.
const STALLED_MS: i64 = READER_FINISHES_AFTER_US / 1000 + 1;

/// A create, a member join (with an event), a stale change refused, a direct pair claimed.
async fn golden_apply() -> Vec<Call> {
    let bench = Bench::new();
    let (store, log) = bench.recorded();
    store.apply(create(10, &[(1, Role::Owner), (2, Role::Member)], &[100])).await.unwrap();
    let join = |version| Change {
        channel_id: 10,
        expected_version: Some(version),
        ops: vec![
            Op::PutChannel(ChannelRecord { member_count: 3, updated_at_ms: 2, ..channel(10, Kind::Group) }),
            Op::PutMember(member(10, 3, Role::Member)),
        ],
        outbox: vec![OutboxEntry { seq: 101, event: vec![101] }],
    };
    store.apply(join(1)).await.unwrap();
    assert_eq!(store.apply(join(1)).await, Err(StoreError::Conflict));
    store.apply(direct(20, 1, 2)).await.unwrap();
    taken(&log)
}

/// Closing, reopening and leaving: closed rows are written and deleted only as needed.
async fn golden_apply_members() -> Vec<Call> {
    let bench = Bench::new();
    bench.store.apply(create(10, &[(1, Role::Owner), (2, Role::Member), (3, Role::Member)], &[])).await.unwrap();
    let (store, log) = bench.recorded();
    store.apply(put_member(10, 1, closed(10, 2, true))).await.unwrap();
    store.apply(put_member(10, 2, closed(10, 2, false))).await.unwrap();
    let leave = Change {
        channel_id: 10,
        expected_version: Some(3),
        ops: vec![Op::DeleteMember { user_id: 3 }],
        outbox: vec![],
    };
    store.apply(leave).await.unwrap();
    taken(&log)
}

/// Deleting a channel: removal committed with a purge, memberships and closed list
/// removed, then the partition.
async fn golden_apply_delete_channel() -> Vec<Call> {
    let bench = Bench::new();
    bench.store.apply(create(10, &[(1, Role::Owner), (2, Role::Member), (3, Role::Member)], &[])).await.unwrap();
    bench.store.apply(put_member(10, 1, closed(10, 2, true))).await.unwrap();
    let (store, log) = bench.recorded();
    let delete = Change {
        channel_id: 10,
        expected_version: Some(2),
        ops: vec![Op::DeleteChannel],
        outbox: vec![OutboxEntry { seq: 102, event: vec![102] }],
    };
    store.apply(delete).await.unwrap();
    assert!(bench.store.get_channel(10).await.unwrap().is_none());
    assert!(bench.store.list_memberships(2, None, 10).await.unwrap().is_empty());
    assert!(bench.store.list_closed_members(10).await.unwrap().is_empty());
    taken(&log)
}

/// A pair taken; a pair held by an abandoned claim (fenced, released, claimed again); a
/// claim released because the channel's batch was refused (the fenced id).
async fn golden_apply_direct_pair() -> Vec<Call> {
    let bench = Bench::new();
    bench.store.apply(direct(20, 1, 2)).await.unwrap();
    assert!(bench.cql.lwt(&CLAIM_DIRECT, values![3u64, 4u64, 30u64]).await.unwrap(), "an abandoned claim");
    let (store, log) = bench.recorded();
    assert_eq!(store.apply(direct(21, 1, 2)).await, Err(StoreError::DirectPairTaken(20)));
    store.apply(direct(31, 3, 4)).await.unwrap();
    assert_eq!(store.apply(direct(30, 5, 6)).await, Err(StoreError::Conflict), "30 is fenced");
    assert_eq!(bench.store.find_direct(3, 4).await.unwrap(), Some(31));
    assert_eq!(bench.store.find_direct(5, 6).await.unwrap(), None, "released");
    assert!(bench.store.get_channel(30).await.unwrap().is_none());
    taken(&log)
}

/// A read leaving a young pending change to its process; once it stalled, a read that first
/// finishes its writes; then a plain read.
async fn golden_get_channel() -> Vec<Call> {
    let bench = Bench::new();
    bench.store.apply(create(10, &[(1, Role::Owner)], &[])).await.unwrap();
    let join = Change {
        channel_id: 10,
        expected_version: Some(1),
        ops: vec![Op::PutMember(member(10, 2, Role::Member))],
        outbox: vec![OutboxEntry { seq: 101, event: vec![101] }],
    };
    bench.store.commit(join).await.unwrap();
    let (store, log) = bench.recorded();
    assert_eq!(store.get_channel(10).await.unwrap().unwrap().version, 2);
    assert!(bench.store.list_memberships(2, None, 10).await.unwrap().is_empty(), "its process finishes it");
    bench.clock.advance(STALLED_MS);
    assert_eq!(store.get_channel(10).await.unwrap().unwrap().version, 2);
    assert_eq!(store.get_channel(10).await.unwrap().unwrap().version, 2);
    assert_eq!(bench.store.list_memberships(2, None, 10).await.unwrap().len(), 1, "recovered");
    taken(&log)
}

async fn setup_three() -> Bench {
    let bench = Bench::new();
    for id in [10, 20, 30] {
        bench.store.apply(create(id, &[(1, Role::Owner), (2, Role::Member)], &[id + 90])).await.unwrap();
    }
    bench.store.apply(put_member(10, 1, closed(10, 2, true))).await.unwrap();
    bench
}

async fn golden_get_member() -> Vec<Call> {
    let bench = setup_three().await;
    let (store, log) = bench.recorded();
    assert!(store.get_member(10, 2).await.unwrap().unwrap().closed);
    assert!(store.get_member(10, 9).await.unwrap().is_none());
    taken(&log)
}

async fn golden_list_members() -> Vec<Call> {
    let bench = setup_three().await;
    let (store, log) = bench.recorded();
    assert_eq!(store.list_members(10, None, 1).await.unwrap()[0].user_id, 1);
    assert_eq!(store.list_members(10, Some(1), 10).await.unwrap()[0].user_id, 2);
    taken(&log)
}

async fn golden_list_memberships() -> Vec<Call> {
    let bench = setup_three().await;
    let (store, log) = bench.recorded();
    let first: Vec<u64> = store.list_memberships(2, None, 2).await.unwrap().iter().map(|m| m.channel_id).collect();
    assert_eq!(first, vec![30, 20]);
    let rest: Vec<u64> = store.list_memberships(2, Some(20), 2).await.unwrap().iter().map(|m| m.channel_id).collect();
    assert_eq!(rest, vec![10]);
    taken(&log)
}

async fn golden_list_closed_members() -> Vec<Call> {
    let bench = setup_three().await;
    let (store, log) = bench.recorded();
    assert_eq!(store.list_closed_members(10).await.unwrap(), vec![closed(10, 2, true)]);
    taken(&log)
}

async fn golden_find_direct() -> Vec<Call> {
    let bench = Bench::new();
    bench.store.apply(direct(20, 1, 2)).await.unwrap();
    let (store, log) = bench.recorded();
    assert_eq!(store.find_direct(1, 2).await.unwrap(), Some(20));
    taken(&log)
}

async fn golden_list_outbox() -> Vec<Call> {
    let bench = setup_three().await;
    let (store, log) = bench.recorded();
    let seqs: Vec<u64> = store.list_outbox(Some(100), 10).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![110, 120]);
    taken(&log)
}

/// A listing once the buckets before the entries' closed (the relay moves past them), and the
/// delete of two delivered entries.
async fn golden_delete_outbox() -> Vec<Call> {
    let bench = setup_three().await;
    bench.clock.advance(BUCKET_MS + CLOSE_AFTER_MS);
    let (store, log) = bench.recorded();
    assert_eq!(store.list_outbox(None, 10).await.unwrap().len(), 3);
    store.delete_outbox(&[100, 110]).await.unwrap();
    assert_eq!(bench.store.list_outbox(None, 10).await.unwrap().len(), 1);
    taken(&log)
}

/// How an older version wrote its outbox (one partition, no buckets).
static PUT_LEGACY_OUTBOX: Statement =
    statement!("test.put_legacy_outbox", idempotent, "INSERT INTO channel_outbox (shard, seq, event) VALUES (?, ?, ?)");

/// Entries an older version left in `channel_outbox` are listed before the queue's and deleted
/// there.
async fn golden_list_legacy_outbox() -> Vec<Call> {
    let bench = setup_three().await;
    for seq in [50u64, 60] {
        bench.cql.execute(&PUT_LEGACY_OUTBOX, values![0i32, seq, vec![seq as u8]]).await.unwrap();
    }
    let (store, log) = bench.recorded();
    let seqs: Vec<u64> = store.list_outbox(None, 3).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![50, 60, 100]);
    store.delete_outbox(&[50, 60, 100]).await.unwrap();
    let seqs: Vec<u64> = store.list_outbox(None, 10).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![110, 120]);
    taken(&log)
}

chatmesh_cql::golden_files!(
    prefix: "",
    statements: super::STATEMENTS,
    also: [],
    [
        golden_apply => "apply",
        golden_apply_members => "apply_members",
        golden_apply_delete_channel => "apply_delete_channel",
        golden_apply_direct_pair => "apply_direct_pair",
        golden_get_channel => "get_channel",
        golden_get_member => "get_member",
        golden_list_members => "list_members",
        golden_list_memberships => "list_memberships",
        golden_list_closed_members => "list_closed_members",
        golden_find_direct => "find_direct",
        golden_list_outbox => "list_outbox",
        golden_delete_outbox => "delete_outbox",
        golden_list_legacy_outbox => "list_legacy_outbox",
    ]
);

#[tokio::test]
async fn a_change_committed_by_a_stopped_process_is_finished_by_the_next_change() {
    let bench = Bench::new();
    bench.store.commit(create(10, &[(1, Role::Owner)], &[7])).await.unwrap();
    assert!(bench.store.list_memberships(1, None, 10).await.unwrap().is_empty(), "not finished yet");
    bench.store.apply(put_member(10, 1, member(10, 2, Role::Member))).await.unwrap();
    assert_eq!(bench.store.list_memberships(1, None, 10).await.unwrap().len(), 1);
    assert_eq!(bench.store.list_memberships(2, None, 10).await.unwrap().len(), 1);
    assert_eq!(bench.store.list_outbox(None, 10).await.unwrap().len(), 1);
    assert_eq!(bench.store.read_head(10).await.unwrap().unfinished(), None, "finished");
}

#[tokio::test]
async fn a_deleted_channel_hides_its_members_until_its_partition_is_gone() {
    let bench = Bench::new();
    bench.store.apply(create(10, &[(1, Role::Owner), (2, Role::Member)], &[])).await.unwrap();
    let delete = Change { channel_id: 10, expected_version: Some(1), ops: vec![Op::DeleteChannel], outbox: vec![] };
    bench.store.commit(delete).await.unwrap();
    assert!(bench.store.get_member(10, 2).await.unwrap().is_none());
    assert!(bench.store.list_members(10, None, 10).await.unwrap().is_empty());
    assert_eq!(bench.store.list_memberships(2, None, 10).await.unwrap().len(), 1, "not purged yet");
    assert!(bench.store.get_channel(10).await.unwrap().is_none());
    assert_eq!(bench.store.list_memberships(2, None, 10).await.unwrap().len(), 1, "its process purges it");
    bench.clock.advance(STALLED_MS);
    assert!(bench.store.get_channel(10).await.unwrap().is_none());
    assert!(bench.store.list_memberships(2, None, 10).await.unwrap().is_empty(), "purged by the read");
    bench.store.apply(create(10, &[(1, Role::Owner)], &[])).await.unwrap();
    assert_eq!(bench.store.get_channel(10).await.unwrap().unwrap().version, 1, "created again");
}

#[tokio::test]
async fn a_young_claim_without_its_channel_is_taken_not_fenced() {
    let bench = Bench::new();
    let young = chatmesh_platform::ids::IdGenerator::new(1).unwrap().next_id();
    assert!(bench.cql.lwt(&CLAIM_DIRECT, values![1u64, 2u64, young]).await.unwrap());
    assert_eq!(bench.store.apply(direct(21, 1, 2)).await, Err(StoreError::DirectPairTaken(young)));
    assert_eq!(bench.store.read_head(young).await.unwrap().version, None, "not fenced");
}

#[tokio::test]
async fn pending_writes_survive_encoding() {
    let pending = Pending {
        writes: vec![
            Write::Membership(closed(10, 2, true)),
            Write::NoMembership { user_id: 3 },
            Write::Closed(closed(10, 2, true)),
            Write::NotClosed { user_id: 4 },
            Write::Outbox { seq: 9, event: vec![0, 1, 254, 255] },
        ],
        purge: true,
        at_us: Some(PINNED_MS * 1000 + 1),
    };
    assert_eq!(Pending::decode(10, &pending.encode(10).unwrap()).unwrap(), pending);
}

/// A reader finds the pending writes of a change whose process stalled and starts finishing
/// them; the next change (leaving) commits and finishes meanwhile; the reader's batch lands
/// last. The membership the leave deleted must stay deleted, even with the reader's clock ahead.
#[tokio::test]
async fn a_reader_finishing_a_pending_change_late_brings_no_membership_back() {
    let memory = MemoryCql::migrated();
    let stalled = process(&memory, 0);
    let reader = process(&memory, STALLED_MS + 1_000);
    let next = process(&memory, STALLED_MS);
    stalled.apply(create(10, &[(1, Role::Owner)], &[])).await.unwrap();
    stalled.commit(put_member(10, 1, member(10, 2, Role::Member))).await.unwrap();
    let mut pause = memory.pause_before(&PUT_MEMBERSHIP);
    let reading = tokio::spawn(async move { reader.get_channel(10).await });
    pause.reached().await;
    let leave = Change {
        channel_id: 10,
        expected_version: Some(2),
        ops: vec![Op::DeleteMember { user_id: 2 }],
        outbox: vec![],
    };
    next.apply(leave).await.unwrap();
    assert!(next.list_memberships(2, None, 10).await.unwrap().is_empty(), "left");
    pause.release();
    assert!(reading.await.expect("the reader's task").unwrap().is_some(), "the read is answered");
    assert!(next.list_memberships(2, None, 10).await.unwrap().is_empty(), "the late finish brought it back");
}

#[tokio::test]
async fn a_read_is_answered_when_finishing_a_stalled_change_fails() {
    let memory = MemoryCql::migrated();
    let stalled = process(&memory, 0);
    stalled.apply(create(10, &[(1, Role::Owner)], &[])).await.unwrap();
    stalled.commit(put_member(10, 1, member(10, 2, Role::Member))).await.unwrap();
    let reader = process(&memory, STALLED_MS);
    memory.fail_writes(1, false);
    assert_eq!(reader.get_channel(10).await.unwrap().map(|c| c.version), Some(2));
    assert!(reader.list_memberships(2, None, 10).await.unwrap().is_empty(), "the finishing failed");
    assert!(reader.read_head(10).await.unwrap().unfinished().is_some(), "left to the next change");
}

/// A store as one more process on `memory` whose clock (its writes' and its changes') runs
/// `skew_ms` off [`PINNED_MS`], where `memory`'s clock stands.
fn skewed(memory: &Arc<MemoryCql>, skew_ms: i64) -> ScyllaChannelStore {
    memory.set_time(PINNED_MS);
    ScyllaChannelStore::on_clock(memory.client(skew_ms), Arc::new(Clock::pinned(PINNED_MS + skew_ms)))
}

/// A process whose clock runs 10 s ahead closes a member's channel (and renames it, a change
/// with no writes elsewhere); a process whose clock is right then commits the member's leaving.
/// The leave is the later change: its deletes must win over the earlier change's writes,
/// whatever the clocks say.
#[tokio::test]
async fn a_change_after_one_from_a_clock_ahead_wins_over_it() {
    let memory = MemoryCql::migrated();
    let ahead = skewed(&memory, 10_000);
    let behind = skewed(&memory, 0);
    ahead.apply(create(10, &[(1, Role::Owner), (2, Role::Member)], &[])).await.unwrap();
    ahead.apply(put_member(10, 1, closed(10, 2, true))).await.unwrap();
    let renamed = ChannelRecord { name: "renamed".into(), ..channel(10, Kind::Group) };
    let rename =
        Change { channel_id: 10, expected_version: Some(2), ops: vec![Op::PutChannel(renamed)], outbox: vec![] };
    ahead.apply(rename).await.unwrap();
    assert_eq!(behind.list_memberships(2, None, 10).await.unwrap().len(), 1);
    assert_eq!(behind.list_closed_members(10).await.unwrap().len(), 1);
    let leave = Change {
        channel_id: 10,
        expected_version: Some(3),
        ops: vec![Op::DeleteMember { user_id: 2 }],
        outbox: vec![],
    };
    behind.apply(leave).await.unwrap();
    assert!(behind.get_member(10, 2).await.unwrap().is_none());
    assert!(behind.list_memberships(2, None, 10).await.unwrap().is_empty(), "the membership came back");
    assert!(behind.list_closed_members(10).await.unwrap().is_empty(), "the closed row came back");
}

/// Many members join and leave a channel, one event each, and the relay delivers each. Reading
/// the channel must not scan the tombstones of the members who left, nor listing the outbox
/// those of the entries delivered long ago: each stays far below ScyllaDB's warning threshold.
#[tokio::test]
async fn the_head_read_and_the_relay_scan_few_tombstones_after_many_delivered_events() {
    const COMERS: u64 = 1_100;
    // why: above every member who comes and goes, so their rows come first in the partition
    const OWNER: u64 = 1_000_000;
    let bench = Bench::new();
    bench.memory.set_limits(Limits::default());
    bench.store.apply(create(10, &[(OWNER, Role::Owner)], &[])).await.unwrap();
    let event = |seq: u64| OutboxEntry { seq, event: seq.to_be_bytes().to_vec() };
    let mut version = 1;
    for user in 1..=COMERS {
        let join = Change {
            channel_id: 10,
            expected_version: Some(version),
            ops: vec![Op::PutMember(member(10, user, Role::Member))],
            outbox: vec![event(2 * user)],
        };
        let leave = Change {
            channel_id: 10,
            expected_version: Some(version + 1),
            ops: vec![Op::DeleteMember { user_id: user }],
            outbox: vec![event(2 * user + 1)],
        };
        for change in [join, leave] {
            bench.store.apply(change).await.unwrap();
            version += 1;
            let listed = bench.store.list_outbox(None, 100).await.unwrap();
            assert_eq!(listed.len(), 1, "each event is listed once");
            bench.store.delete_outbox(&[listed[0].seq]).await.unwrap();
            bench.clock.advance(1_000);
        }
    }
    assert_eq!(bench.store.get_channel(10).await.unwrap().map(|c| c.version), Some(version));
    assert!(bench.store.list_outbox(None, 100).await.unwrap().is_empty(), "every event delivered");

    let stats = bench.memory.stats();
    let head = &stats.reads["channel.get_channel"];
    assert_eq!((head.warnings, head.max_tombstones), (0, 0), "the head read scanned departed members");
    // one event a second: the open buckets hold the last ~50 s of them
    let window = usize::try_from((2 * BUCKET_MS + CLOSE_AFTER_MS) / 1_000).unwrap();
    for relay_read in ["channel.list_queue", "channel.list_outbox"] {
        let read = &stats.reads[relay_read];
        assert_eq!(read.warnings, 0, "{relay_read}: {read:?}");
        assert!(read.max_tombstones <= window, "{relay_read} scanned old tombstones: {read:?}");
    }
}

/// A change whose process stopped right after committing is finished ten minutes later by the
/// channel's next change. The relay moved past the buckets of that time meanwhile; the entry is
/// written in the bucket of its writing, so it is relayed.
#[tokio::test]
async fn an_event_finished_long_after_its_change_committed_is_relayed() {
    let bench = Bench::new();
    bench.store.apply(create(10, &[(1, Role::Owner)], &[])).await.unwrap();
    let stalled = ScyllaChannelStore::on_clock(bench.cql.clone(), Arc::new(Clock::pinned(PINNED_MS)));
    let join = |version, user, seq| Change {
        channel_id: 10,
        expected_version: Some(version),
        ops: vec![Op::PutMember(member(10, user, Role::Member))],
        outbox: vec![OutboxEntry { seq, event: vec![1] }],
    };
    stalled.commit(join(1, 2, 100)).await.unwrap();
    for _ in 0..60 {
        bench.clock.advance(10_000);
        assert!(bench.store.list_outbox(None, 10).await.unwrap().is_empty());
    }
    let (first_open,) = bench.cql.row::<(i64,)>(&GET_PROGRESS, values![0i32]).await.unwrap().unwrap();
    assert!(first_open > bucket_of(PINNED_MS), "the relay moved past the commit's buckets");
    bench.store.apply(join(2, 3, 200)).await.unwrap();
    let seqs: Vec<u64> = bench.store.list_outbox(None, 10).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![100, 200]);
}

/// A queue write acknowledged after the deadline may have landed in a bucket the relays
/// closed: the change keeps its entries owed, and the next change writes them again, where
/// they are listed (once).
#[tokio::test]
async fn outbox_entries_acknowledged_after_the_deadline_are_written_again() {
    let bench = Bench::new();
    bench.store.apply(create(10, &[(1, Role::Owner)], &[])).await.unwrap();
    let mut pause = bench.memory.pause_before(&PUT_QUEUED);
    let store = bench.store.clone();
    let change = |version, user, seq| Change {
        channel_id: 10,
        expected_version: Some(version),
        ops: vec![Op::PutMember(member(10, user, Role::Member))],
        outbox: vec![OutboxEntry { seq, event: vec![1] }],
    };
    let applying = tokio::spawn(async move { store.apply(change(1, 2, 100)).await });
    pause.reached().await;
    bench.clock.advance(WRITE_DEADLINE_US / 1_000 + 1);
    pause.release();
    applying.await.expect("the applying task").unwrap();
    assert!(bench.store.read_head(10).await.unwrap().unfinished().is_some(), "its entries were written late");
    bench.store.apply(change(2, 3, 200)).await.unwrap();
    let seqs: Vec<u64> = bench.store.list_outbox(None, 10).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![100, 200]);
}
