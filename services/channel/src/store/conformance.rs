//! The one conformance suite of [`ChannelStore`]: every backend runs it unchanged through
//! `channel_store_suite!(constructor)`, where the constructor returns `(guard, store)`.

use super::{Change, ChannelStore, Op, OutboxEntry, StoreError};
use crate::model::{ChannelRecord, Kind, MemberRecord, Role, Visibility};

pub fn channel(id: u64, kind: Kind) -> ChannelRecord {
    ChannelRecord {
        channel_id: id,
        kind,
        visibility: Visibility::Private,
        name: format!("channel {id}"),
        topic: String::new(),
        image_url: String::new(),
        owner_id: 1,
        member_count: 0,
        created_at_ms: 1,
        updated_at_ms: 1,
        version: 0,
    }
}

pub fn member(channel_id: u64, user_id: u64, role: Role) -> MemberRecord {
    MemberRecord { channel_id, user_id, role, joined_at_ms: 1, invited_by: 0, closed: false, closed_at_ms: 0 }
}

fn create(id: u64, members: &[(u64, Role)], seq: u64) -> Change {
    let mut ops = vec![Op::PutChannel(channel(id, Kind::Group))];
    ops.extend(members.iter().map(|(user, role)| Op::PutMember(member(id, *user, *role))));
    Change { channel_id: id, expected_version: None, ops, outbox: vec![OutboxEntry { seq, event: vec![seq as u8] }] }
}

pub async fn changes_apply_only_on_the_version_read(store: &dyn ChannelStore) {
    store.apply(create(10, &[(1, Role::Owner)], 1)).await.unwrap();
    assert_eq!(store.apply(create(10, &[(1, Role::Owner)], 2)).await, Err(StoreError::Conflict), "exists already");
    let v1 = store.get_channel(10).await.unwrap().unwrap().version;
    assert_eq!(v1, 1);
    let join = |expected| Change {
        channel_id: 10,
        expected_version: Some(expected),
        ops: vec![Op::PutMember(member(10, 2, Role::Member))],
        outbox: vec![],
    };
    store.apply(join(v1)).await.unwrap();
    assert_eq!(store.get_channel(10).await.unwrap().unwrap().version, 2, "every change bumps the version");
    assert_eq!(store.apply(join(v1)).await, Err(StoreError::Conflict), "a stale read is refused");
    let missing = Change { channel_id: 99, expected_version: Some(1), ops: vec![], outbox: vec![] };
    assert_eq!(store.apply(missing).await, Err(StoreError::Conflict));
}

pub async fn members_are_listed_by_channel_and_by_user(store: &dyn ChannelStore) {
    for id in [10, 20, 30] {
        store.apply(create(id, &[(1, Role::Owner), (2, Role::Member)], id)).await.unwrap();
    }
    store.apply(create(40, &[(3, Role::Owner)], 40)).await.unwrap();
    let members = store.list_members(10, None, 10).await.unwrap();
    assert_eq!(members.iter().map(|m| m.user_id).collect::<Vec<_>>(), vec![1, 2]);
    let page = store.list_members(10, Some(1), 10).await.unwrap();
    assert_eq!(page.iter().map(|m| m.user_id).collect::<Vec<_>>(), vec![2]);
    let mine = store.list_memberships(2, None, 2).await.unwrap();
    assert_eq!(mine.iter().map(|m| m.channel_id).collect::<Vec<_>>(), vec![30, 20], "newest first");
    let rest = store.list_memberships(2, Some(20), 10).await.unwrap();
    assert_eq!(rest.iter().map(|m| m.channel_id).collect::<Vec<_>>(), vec![10]);
    assert_eq!(store.get_member(10, 2).await.unwrap().unwrap().role, Role::Member);
    assert!(store.get_member(40, 2).await.unwrap().is_none());
}

pub async fn closed_members_are_listed_until_reopened_or_gone(store: &dyn ChannelStore) {
    store.apply(create(10, &[(1, Role::Owner), (2, Role::Member), (3, Role::Member)], 1)).await.unwrap();
    let close = |user, version, closed| Change {
        channel_id: 10,
        expected_version: Some(version),
        ops: vec![Op::PutMember(MemberRecord { closed, ..member(10, user, Role::Member) })],
        outbox: vec![],
    };
    store.apply(close(2, 1, true)).await.unwrap();
    store.apply(close(3, 2, true)).await.unwrap();
    let closed = |list: Vec<MemberRecord>| list.into_iter().map(|m| m.user_id).collect::<Vec<_>>();
    assert_eq!(closed(store.list_closed_members(10).await.unwrap()), vec![2, 3]);
    store.apply(close(2, 3, false)).await.unwrap();
    let leave = Change {
        channel_id: 10,
        expected_version: Some(4),
        ops: vec![Op::DeleteMember { user_id: 3 }],
        outbox: vec![],
    };
    store.apply(leave).await.unwrap();
    assert!(store.list_closed_members(10).await.unwrap().is_empty());
}

pub async fn removing_members_and_channels_clears_both_indexes(store: &dyn ChannelStore) {
    store.apply(create(10, &[(1, Role::Owner), (2, Role::Member), (3, Role::Member)], 1)).await.unwrap();
    let leave = Change {
        channel_id: 10,
        expected_version: Some(1),
        ops: vec![Op::DeleteMember { user_id: 2 }],
        outbox: vec![],
    };
    store.apply(leave).await.unwrap();
    assert!(store.get_member(10, 2).await.unwrap().is_none());
    assert!(store.list_memberships(2, None, 10).await.unwrap().is_empty());
    let delete = Change { channel_id: 10, expected_version: Some(2), ops: vec![Op::DeleteChannel], outbox: vec![] };
    store.apply(delete).await.unwrap();
    assert!(store.get_channel(10).await.unwrap().is_none());
    assert!(store.list_members(10, None, 10).await.unwrap().is_empty());
    assert!(store.list_memberships(1, None, 10).await.unwrap().is_empty());
    assert!(store.list_memberships(3, None, 10).await.unwrap().is_empty());
}

pub async fn a_pair_has_one_direct_channel(store: &dyn ChannelStore) {
    let direct = |id| Change {
        channel_id: id,
        expected_version: None,
        ops: vec![
            Op::ClaimDirectPair { low: 1, high: 2 },
            Op::PutChannel(channel(id, Kind::Direct)),
            Op::PutMember(member(id, 1, Role::Member)),
            Op::PutMember(member(id, 2, Role::Member)),
        ],
        outbox: vec![],
    };
    store.apply(direct(10)).await.unwrap();
    assert_eq!(store.apply(direct(11)).await, Err(StoreError::DirectPairTaken(10)));
    assert!(store.get_channel(11).await.unwrap().is_none(), "a refused change writes nothing");
    assert!(store.get_member(11, 1).await.unwrap().is_none());
    assert_eq!(store.find_direct(1, 2).await.unwrap(), Some(10));
    assert_eq!(store.find_direct(1, 3).await.unwrap(), None);
}

pub async fn the_outbox_keeps_order_until_deleted(store: &dyn ChannelStore) {
    for (id, seq) in [(10, 5), (20, 7), (30, 9)] {
        store.apply(create(id, &[(1, Role::Owner)], seq)).await.unwrap();
    }
    let all = store.list_outbox(None, 10).await.unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![5, 7, 9]);
    assert_eq!(all[1].event, vec![7u8]);
    assert_eq!(store.list_outbox(Some(5), 1).await.unwrap()[0].seq, 7);
    store.delete_outbox(&[5, 7]).await.unwrap();
    assert_eq!(store.list_outbox(None, 10).await.unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), vec![9]);
    let conflicting = create(10, &[], 11);
    assert!(store.apply(conflicting).await.is_err());
    assert_eq!(store.list_outbox(None, 10).await.unwrap().len(), 1, "a refused change records no event");
}

/// A relay lists the outbox, a change whose `seq` was minted earlier writes its entry only
/// then (seqs are minted before the change applies), and the relay forgets what it delivered:
/// the later-written entry stays, to be delivered next.
pub async fn an_entry_written_after_a_listing_survives_the_delete_of_the_delivered(store: &dyn ChannelStore) {
    store.apply(create(20, &[(1, Role::Owner)], 101)).await.unwrap();
    let listed = store.list_outbox(None, 10).await.unwrap();
    assert_eq!(listed.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![101]);
    store.apply(create(10, &[(1, Role::Owner)], 100)).await.unwrap();
    let delivered: Vec<u64> = listed.iter().map(|e| e.seq).collect();
    store.delete_outbox(&delivered).await.unwrap();
    let left = store.list_outbox(None, 10).await.unwrap();
    assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![100], "the undelivered entry is kept");
}

/// Instantiates the suite for a backend constructor returning `(guard, store)`.
#[macro_export]
macro_rules! channel_store_suite {
    ($($make:tt)+) => {
        chatmesh_platform::conformance_suite!(
            channel_store_conformance,
            $crate::store::conformance,
            ($($make)+),
            [
                changes_apply_only_on_the_version_read,
                members_are_listed_by_channel_and_by_user,
                removing_members_and_channels_clears_both_indexes,
                closed_members_are_listed_until_reopened_or_gone,
                a_pair_has_one_direct_channel,
                the_outbox_keeps_order_until_deleted,
                an_entry_written_after_a_listing_survives_the_delete_of_the_delivered
            ]
        );
    };
}
