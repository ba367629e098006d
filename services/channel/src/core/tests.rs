//! The core's operations on a real (embedded) store, without tonic: what they write and answer.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use tonic::Status;

use super::*;
use crate::store::FjallChannelStore;

/// Users 1 to 9 exist; `blocks` holds (blocker, blocked) pairs.
#[derive(Default)]
struct KnownUsers {
    blocks: std::sync::Mutex<std::collections::HashSet<(u64, u64)>>,
}

impl KnownUsers {
    fn block(&self, blocker: u64, blocked: u64) {
        self.blocks.lock().unwrap().insert((blocker, blocked));
    }
}

#[async_trait]
impl UserDirectory for KnownUsers {
    async fn missing_users(&self, user_ids: &[u64]) -> Result<Vec<u64>, Status> {
        Ok(user_ids.iter().copied().filter(|id| !(1..10).contains(id)).collect())
    }
    async fn blocked_between(&self, a: u64, b: u64) -> Result<bool, Status> {
        let blocks = self.blocks.lock().unwrap();
        Ok(blocks.contains(&(a, b)) || blocks.contains(&(b, a)))
    }
}

/// A store whose changes are always raced by another writer.
struct AlwaysRaced {
    inner: FjallChannelStore,
    attempts: AtomicUsize,
}

#[async_trait]
impl ChannelStore for AlwaysRaced {
    async fn apply(&self, change: Change) -> Result<(), StoreError> {
        if change.expected_version.is_none() {
            return self.inner.apply(change).await;
        }
        self.attempts.fetch_add(1, Ordering::Relaxed);
        Err(StoreError::Conflict)
    }
    async fn get_channel(&self, channel_id: u64) -> Result<Option<ChannelRecord>, StoreError> {
        self.inner.get_channel(channel_id).await
    }
    async fn get_member(&self, channel_id: u64, user_id: u64) -> Result<Option<MemberRecord>, StoreError> {
        self.inner.get_member(channel_id, user_id).await
    }
    async fn list_members(
        &self,
        channel_id: u64,
        after: Option<u64>,
        n: usize,
    ) -> Result<Vec<MemberRecord>, StoreError> {
        self.inner.list_members(channel_id, after, n).await
    }
    async fn list_memberships(
        &self,
        user: u64,
        before: Option<u64>,
        n: usize,
    ) -> Result<Vec<MemberRecord>, StoreError> {
        self.inner.list_memberships(user, before, n).await
    }
    async fn list_closed_members(&self, channel_id: u64) -> Result<Vec<MemberRecord>, StoreError> {
        self.inner.list_closed_members(channel_id).await
    }
    async fn find_direct(&self, low: u64, high: u64) -> Result<Option<u64>, StoreError> {
        self.inner.find_direct(low, high).await
    }
    async fn list_outbox(&self, after_seq: Option<u64>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.inner.list_outbox(after_seq, limit).await
    }
    async fn delete_outbox(&self, seqs: &[u64]) -> Result<(), StoreError> {
        self.inner.delete_outbox(seqs).await
    }
}

fn core_on(store: Arc<dyn ChannelStore>) -> (ChannelCore, Arc<EpochBoard>) {
    let (core, epochs, _) = core_with_users(store);
    (core, epochs)
}

/// A core whose user directory the test may change (blocks).
fn core_with_users(store: Arc<dyn ChannelStore>) -> (ChannelCore, Arc<EpochBoard>, Arc<KnownUsers>) {
    let epochs = Arc::new(EpochBoard::new());
    let ids = Arc::new(IdGenerator::new(1).unwrap());
    let users = Arc::new(KnownUsers::default());
    (ChannelCore::new(store, users.clone(), ids, epochs.clone(), Arc::new(Notify::new())), epochs, users)
}

fn direct(ids: &[u64]) -> wire::CreateChannel {
    wire::CreateChannel::Direct(wire::CreateDirect { member_ids: ids.iter().copied().collect() })
}

fn get_or_create(user_id: u64, other_user_id: u64) -> wire::GetOrCreateDirectChannel {
    wire::GetOrCreateDirectChannel { user_id, other_user_id }
}

fn group(members: &[u64]) -> wire::CreateChannel {
    wire::CreateChannel::Group(wire::CreateGroup {
        kind: wire::GroupKind::Group,
        visibility: wire::Visibility::Private,
        name: "team".into(),
        topic: String::new(),
        image_url: String::new(),
        member_ids: members.iter().copied().collect(),
    })
}

fn set_role(channel_id: u64, user_id: u64, role: wire::Role) -> wire::UpdateMember {
    wire::UpdateMember { channel_id, user_id, role }
}

#[tokio::test]
async fn the_owner_handing_over_becomes_an_admin() {
    let (_dir, store) = FjallChannelStore::temp();
    let (core, _) = core_on(Arc::new(store));
    let channel = core.create_channel(1, group(&[2])).await.unwrap().channel;
    let id = channel.channel_id;
    let new_owner = core.set_role(1, set_role(id, 2, wire::Role::Owner)).await.unwrap();
    assert_eq!(new_owner.role, Role::Owner);
    let view = core.view(1, id).await.unwrap();
    assert_eq!(view.channel.owner_id, 2);
    assert_eq!(view.membership.map(|m| m.role), Some(Role::Admin));
    let refused = core.set_role(1, set_role(id, 2, wire::Role::Member)).await.unwrap_err();
    assert!(matches!(refused, ChannelError::TargetNotBelow { user_id: 2, .. }), "{refused}");
}

#[tokio::test]
async fn a_refused_change_writes_nothing_and_raises_no_epoch() {
    let (_dir, store) = FjallChannelStore::temp();
    let store = Arc::new(store);
    let (core, epochs) = core_on(store.clone());
    let id = core.create_channel(1, group(&[2, 3])).await.unwrap().channel.channel_id;
    let before =
        (core.view(1, id).await.unwrap(), store.list_outbox(None, 100).await.unwrap(), epochs.is_current(id, 1));
    let kick = wire::DeleteMember { channel_id: id, user_id: 3 };
    assert!(matches!(core.remove_member(2, kick).await, Err(ChannelError::RoleRequired { required: Role::Admin, .. })));
    let leave = wire::DeleteMember { channel_id: id, user_id: 1 };
    assert!(matches!(core.remove_member(1, leave).await, Err(ChannelError::OwnerMustTransfer)));
    assert!(matches!(core.delete_channel(2, id).await, Err(ChannelError::RoleRequired { required: Role::Owner, .. })));
    let after =
        (core.view(1, id).await.unwrap(), store.list_outbox(None, 100).await.unwrap(), epochs.is_current(id, 1));
    assert_eq!(after, before);
    assert!(after.2, "cached membership answers stay current");
}

#[tokio::test]
async fn a_change_raced_every_time_answers_busy_after_bounded_attempts() {
    let (_dir, inner) = FjallChannelStore::temp();
    let store = Arc::new(AlwaysRaced { inner, attempts: AtomicUsize::new(0) });
    let (core, _) = core_on(store.clone());
    let id = core.create_channel(1, group(&[])).await.unwrap().channel.channel_id;
    let busy = core.set_closed(1, id, true).await.unwrap_err();
    assert!(matches!(busy, ChannelError::Busy(channel) if channel == id), "{busy}");
    assert_eq!(store.attempts.load(Ordering::Relaxed), MAX_ATTEMPTS);
}

#[tokio::test]
async fn a_pair_has_one_direct_channel_whoever_creates_it() {
    let (_dir, store) = FjallChannelStore::temp();
    let (core, _) = core_on(Arc::new(store));
    let first = core.create_channel(1, direct(&[2])).await.unwrap();
    assert!(first.created);
    let again = core.create_channel(2, direct(&[1, 2])).await.unwrap();
    assert_eq!((again.channel.channel_id, again.created), (first.channel.channel_id, false));
    assert!(matches!(core.create_channel(1, direct(&[1])).await, Err(ChannelError::DirectMembers)));
    assert!(matches!(
        core.create_channel(1, direct(&[42])).await,
        Err(ChannelError::UserNotFound { field: "member_ids", user_id: 42 })
    ));
}

#[tokio::test]
async fn a_block_either_way_refuses_a_new_direct_channel_and_creates_nothing() {
    let (_dir, store) = FjallChannelStore::temp();
    let store = Arc::new(store);
    let (core, _, users) = core_with_users(store.clone());
    users.block(2, 1);
    for (caller, other) in [(1, 2), (2, 1)] {
        let refused = core.create_channel(caller, direct(&[other])).await.unwrap_err();
        assert!(matches!(refused, ChannelError::UserBlocked { user_id } if user_id == other), "{refused}");
    }
    assert_eq!(store.find_direct(1, 2).await.unwrap(), None);
    assert!(store.list_memberships(1, None, 10).await.unwrap().is_empty());
    assert!(store.list_outbox(None, 10).await.unwrap().is_empty(), "no event recorded");
    assert!(core.create_channel(1, direct(&[3])).await.unwrap().created, "others are not affected");
}

#[tokio::test]
async fn a_block_keeps_an_existing_direct_channel_from_being_reopened() {
    let (_dir, store) = FjallChannelStore::temp();
    let (core, _, users) = core_with_users(Arc::new(store));
    let first = core.create_channel(1, direct(&[2])).await.unwrap();
    users.block(1, 2);
    let refused = core.create_channel(2, direct(&[1])).await.unwrap_err();
    assert!(matches!(refused, ChannelError::UserBlocked { user_id: 1 }), "{refused}");
    assert!(matches!(core.create_channel(1, direct(&[2])).await, Err(ChannelError::UserBlocked { user_id: 2 })));
    assert_eq!(core.view(1, first.channel.channel_id).await.unwrap().channel, first.channel, "left as it was");
}

#[tokio::test]
async fn an_unknown_user_is_not_found_before_any_block_is_asked() {
    let (_dir, store) = FjallChannelStore::temp();
    let (core, _, users) = core_with_users(Arc::new(store));
    users.block(1, 42);
    let refused = core.create_channel(1, direct(&[42])).await.unwrap_err();
    assert!(matches!(refused, ChannelError::UserNotFound { field: "member_ids", user_id: 42 }), "{refused}");
}

#[tokio::test]
async fn get_or_create_gives_a_pair_one_direct_channel_with_either_creator() {
    let (_dir, store) = FjallChannelStore::temp();
    let store = Arc::new(store);
    let (core, _, _) = core_with_users(store.clone());
    let first = core.get_or_create_direct(get_or_create(3, 4)).await.unwrap();
    assert!(first.created);
    assert_eq!(first.channel.kind, Kind::Direct);
    let again = core.get_or_create_direct(get_or_create(4, 3)).await.unwrap();
    assert_eq!((again.channel.channel_id, again.created), (first.channel.channel_id, false));
    let by_hand = core.create_channel(3, direct(&[4])).await.unwrap();
    assert_eq!((by_hand.channel.channel_id, by_hand.created), (first.channel.channel_id, false), "the same pair");
    let members = store.list_members(first.channel.channel_id, None, 10).await.unwrap();
    let invited: Vec<(u64, u64)> = members.iter().map(|m| (m.user_id, m.invited_by)).collect();
    assert_eq!(invited, [(3, 0), (4, 3)], "user_id is the creator, who invited the other");
}

#[tokio::test]
async fn get_or_create_asks_no_block_but_refuses_a_user_who_does_not_exist() {
    let (_dir, store) = FjallChannelStore::temp();
    let (core, _, users) = core_with_users(Arc::new(store));
    users.block(5, 6);
    assert!(core.get_or_create_direct(get_or_create(5, 6)).await.unwrap().created, "the caller decided already");
    let missing = core.get_or_create_direct(get_or_create(42, 5)).await.unwrap_err();
    assert!(matches!(missing, ChannelError::UserNotFound { field: "user_id", user_id: 42 }), "{missing}");
    let missing = core.get_or_create_direct(get_or_create(5, 43)).await.unwrap_err();
    assert!(matches!(missing, ChannelError::UserNotFound { field: "other_user_id", user_id: 43 }), "{missing}");
}

#[tokio::test]
async fn a_membership_answer_names_a_direct_channels_two_members_only() {
    let (_dir, store) = FjallChannelStore::temp();
    let (core, _) = core_on(Arc::new(store));
    let pair = core.create_channel(2, direct(&[7])).await.unwrap().channel.channel_id;
    let team = core.create_channel(2, group(&[7])).await.unwrap().channel.channel_id;
    let asked = |channel_id, user_id| wire::CheckMembership { channel_id, user_id };
    assert_eq!(
        core.check_membership(asked(pair, 9)).await.unwrap().direct_members,
        [2, 7],
        "also asked as an outsider"
    );
    assert!(core.check_membership(asked(team, 2)).await.unwrap().direct_members.is_empty());
    assert!(core.check_membership(asked(404, 2)).await.unwrap().direct_members.is_empty());
}

#[tokio::test]
async fn activity_reopens_only_for_those_who_closed_before_it() {
    let (_dir, store) = FjallChannelStore::temp();
    let store = Arc::new(store);
    let (core, _) = core_on(store.clone());
    let id = core.create_channel(1, group(&[2, 3])).await.unwrap().channel.channel_id;
    let sent_earlier = core.ids.next_id();
    core.set_closed(2, id, true).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let sent_later = core.ids.next_id();
    core.record_activity(BTreeMap::from([(id, sent_earlier), (404, sent_later)])).await.unwrap();
    assert_eq!(store.list_closed_members(id).await.unwrap().len(), 1, "a chat from before the close keeps it closed");
    core.record_activity(BTreeMap::from([(id, sent_later)])).await.unwrap();
    assert!(store.list_closed_members(id).await.unwrap().is_empty());
}
