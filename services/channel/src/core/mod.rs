//! The channel service's operations in domain types: each mutation reads, asks the rules
//! ([`rules`]) and applies one [`Change`] that the store accepts only if the channel did not
//! change in between; a raced change is read and decided again.

pub mod rules;

use std::{collections::BTreeMap, sync::Arc};

use chatmesh_platform::{
    ids::{IdGenerator, now_ms},
    membership::EpochBoard,
};
use chatmesh_wire::channel as wire;
use tokio::sync::Notify;

use self::rules::RoleChange;
use crate::{
    error::{ChannelError, role_name},
    events,
    model::{ChannelRecord, Kind, MemberRecord, Role, Visibility},
    store::{Change, ChannelStore, Op, OutboxEntry, StoreError},
    users::UserDirectory,
};

/// Attempts of one read-decide-apply cycle before answering UNAVAILABLE.
const MAX_ATTEMPTS: usize = 16;

/// The rules and their state: the store, the user directory, ids, the membership epochs other
/// services cache by, and the outbox relay's wake-up.
pub struct ChannelCore {
    store: Arc<dyn ChannelStore>,
    users: Arc<dyn UserDirectory>,
    ids: Arc<IdGenerator>,
    epochs: Arc<EpochBoard>,
    /// Wakes the outbox relay after a change that recorded events.
    outbox: Arc<Notify>,
}

/// A channel as one user may see it: `membership` is `None` for an outsider of a public one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub channel: ChannelRecord,
    pub membership: Option<MemberRecord>,
}

impl View {
    fn member(&self) -> Result<&MemberRecord, ChannelError> {
        rules::must_be_member(self.channel.channel_id, self.membership.as_ref())
    }

    /// A change to this channel, applied only if it is still at the version read.
    fn change(&self, ops: Vec<Op>, outbox: Vec<OutboxEntry>) -> Change {
        Change { channel_id: self.channel.channel_id, expected_version: Some(self.channel.version), ops, outbox }
    }
}

/// A created channel, or the direct channel the pair already had (`created` false).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub channel: ChannelRecord,
    pub created: bool,
}

/// One page of a list and the cursor of the next (`None`: the list ended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<u64>,
}

/// What another service learns of a user's membership (`channel` `None`: no such channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub channel: Option<ChannelRecord>,
    pub member: Option<MemberRecord>,
    /// A direct channel's two members (empty for other kinds), for the block checks of others.
    pub direct_members: Vec<u64>,
}

/// What a decision produced: the change to apply, and what to answer once it is applied.
type Decision<T> = Result<(Change, T), ChannelError>;

fn member(channel_id: u64, user_id: u64, role: Role, invited_by: u64, now: u64) -> MemberRecord {
    MemberRecord { channel_id, user_id, role, joined_at_ms: now, invited_by, closed: false, closed_at_ms: 0 }
}

impl ChannelCore {
    /// `epochs` learns each channel's new membership epoch before a change returns; `outbox`
    /// is notified after every change that recorded events.
    pub fn new(
        store: Arc<dyn ChannelStore>,
        users: Arc<dyn UserDirectory>,
        ids: Arc<IdGenerator>,
        epochs: Arc<EpochBoard>,
        outbox: Arc<Notify>,
    ) -> Self {
        Self { store, users, ids, epochs, outbox }
    }

    // ---- ChannelService ----

    /// A group or broadcast owned by the caller, or the caller's direct channel with one other
    /// user (the existing one when the pair has it).
    pub async fn create_channel(&self, caller: u64, cmd: wire::CreateChannel) -> Result<Created, ChannelError> {
        match cmd {
            wire::CreateChannel::Direct(direct) => self.create_direct(caller, direct).await,
            wire::CreateChannel::Group(group) => self.create_group(caller, group).await,
        }
    }

    async fn create_direct(&self, caller: u64, direct: wire::CreateDirect) -> Result<Created, ChannelError> {
        let (low, high, other) = rules::direct_pair(caller, direct.member_ids)?;
        let existing = self.store.find_direct(low, high).await?;
        if existing.is_none() {
            self.require_users("member_ids", &[other]).await?;
        }
        // why: asked when the pair already has its channel too, so a block also keeps it closed
        let blocked = self.users.blocked_between(caller, other).await.map_err(ChannelError::Users)?;
        rules::may_have_direct_channel(other, blocked)?;
        match existing {
            Some(existing) => Ok(Created { channel: self.channel(existing).await?, created: false }),
            None => self.open_direct(caller, other).await,
        }
    }

    /// Creates the direct channel of `caller` (its creator) and `other`, or answers the one a
    /// concurrent request created first.
    async fn open_direct(&self, caller: u64, other: u64) -> Result<Created, ChannelError> {
        let (low, high) = (caller.min(other), caller.max(other));
        let channel_id = self.ids.next_id();
        let now = now_ms();
        let channel = ChannelRecord {
            channel_id,
            kind: Kind::Direct,
            visibility: Visibility::Private,
            name: String::new(),
            topic: String::new(),
            image_url: String::new(),
            owner_id: 0,
            member_count: 2,
            created_at_ms: now,
            updated_at_ms: now,
            version: 0,
        };
        let members =
            [member(channel_id, caller, Role::Member, 0, now), member(channel_id, other, Role::Member, caller, now)];
        let change = Change {
            channel_id,
            expected_version: None,
            ops: vec![
                Op::ClaimDirectPair { low, high },
                Op::PutChannel(channel),
                Op::PutMember(members[0].clone()),
                Op::PutMember(members[1].clone()),
            ],
            outbox: members.iter().map(|m| events::member_joined(&self.ids, caller, m)).collect(),
        };
        let existing = match self.apply(change).await {
            Ok(()) => channel_id,
            // why: a concurrent request created the pair's channel first; answer with that one.
            Err(StoreError::DirectPairTaken(existing)) => existing,
            Err(e) => return Err(e.into()),
        };
        Ok(Created { channel: self.channel(existing).await?, created: existing == channel_id })
    }

    async fn create_group(&self, caller: u64, group: wire::CreateGroup) -> Result<Created, ChannelError> {
        let invited: Vec<u64> = group.member_ids.into_iter().filter(|id| *id != caller).collect();
        self.require_users("member_ids", &invited).await?;
        let channel_id = self.ids.next_id();
        let now = now_ms();
        let channel = ChannelRecord {
            channel_id,
            kind: group.kind.into(),
            visibility: group.visibility.into(),
            name: group.name,
            topic: group.topic,
            image_url: group.image_url,
            owner_id: caller,
            member_count: 1 + invited.len() as u32,
            created_at_ms: now,
            updated_at_ms: now,
            version: 0,
        };
        let mut members = vec![member(channel_id, caller, Role::Owner, 0, now)];
        members.extend(invited.iter().map(|id| member(channel_id, *id, Role::Member, caller, now)));
        let mut ops = vec![Op::PutChannel(channel)];
        ops.extend(members.iter().cloned().map(Op::PutMember));
        let outbox = members.iter().map(|m| events::member_joined(&self.ids, caller, m)).collect();
        self.apply(Change { channel_id, expected_version: None, ops, outbox }).await?;
        tracing::info!(channel_id, owner = caller, "channel created");
        Ok(Created { channel: self.channel(channel_id).await?, created: true })
    }

    /// The channel as `caller` may see it: NOT_FOUND when it does not exist, and also when the
    /// caller is not a member of a private or direct one.
    pub async fn view(&self, caller: u64, channel_id: u64) -> Result<View, ChannelError> {
        let channel = self.channel(channel_id).await?;
        let membership = self.store.get_member(channel_id, caller).await?;
        rules::may_view(&channel, membership.is_some())?;
        Ok(View { channel, membership })
    }

    /// The caller's channels, newest first; closed ones only when asked for.
    pub async fn list_my_channels(
        &self,
        caller: u64,
        cmd: wire::ListMyChannels,
    ) -> Result<Page<ChannelRecord>, ChannelError> {
        let (size, mut cursor) = (cmd.page_size, cmd.cursor);
        let mut channels = Vec::new();
        let mut exhausted = false;
        while channels.len() < size && !exhausted {
            let batch = self.store.list_memberships(caller, cursor, size).await?;
            exhausted = batch.len() < size;
            for membership in batch {
                cursor = Some(membership.channel_id);
                if membership.closed && !cmd.include_closed {
                    continue;
                }
                if let Some(channel) = self.store.get_channel(membership.channel_id).await? {
                    channels.push(channel);
                }
                if channels.len() == size {
                    break;
                }
            }
        }
        let next = cursor.filter(|_| channels.len() == size);
        Ok(Page { items: channels, next })
    }

    /// Changes name, topic, image or visibility; the changed fields are announced.
    pub async fn update_channel(&self, caller: u64, cmd: wire::UpdateChannel) -> Result<ChannelRecord, ChannelError> {
        let channel_id = cmd.channel_id;
        let visibility = cmd.visibility.map(Visibility::from);
        self.mutate(channel_id, || async {
            let view = self.view(caller, channel_id).await?;
            rules::may_update(view.channel.kind, view.member()?.role)?;
            let mut channel = view.channel.clone();
            let mut changed = Vec::new();
            if let Some(name) = cmd.name.as_ref().filter(|name| **name != channel.name) {
                channel.name = name.clone();
                changed.push("name".to_owned());
            }
            if let Some(topic) = cmd.topic.as_ref().filter(|topic| **topic != channel.topic) {
                channel.topic = topic.clone();
                changed.push("topic".to_owned());
            }
            if let Some(image_url) = cmd.image_url.as_ref().filter(|url| **url != channel.image_url) {
                channel.image_url = image_url.clone();
                changed.push("image_url".to_owned());
            }
            if let Some(visibility) = visibility.filter(|v| *v != channel.visibility) {
                channel.visibility = visibility;
                changed.push("visibility".to_owned());
            }
            channel.updated_at_ms = now_ms();
            let mut announced = channel.clone();
            announced.version = view.channel.version + 1;
            let outbox = if changed.is_empty() {
                Vec::new()
            } else {
                vec![events::channel_updated(&self.ids, caller, &announced, changed)]
            };
            Ok((view.change(vec![Op::PutChannel(channel)], outbox), announced))
        })
        .await
    }

    /// Deletes the channel with every membership.
    pub async fn delete_channel(&self, caller: u64, channel_id: u64) -> Result<(), ChannelError> {
        self.mutate(channel_id, || async {
            let view = self.view(caller, channel_id).await?;
            rules::may_delete(view.channel.kind, view.member()?.role)?;
            let outbox = vec![events::channel_deleted(&self.ids, caller, &view.channel)];
            Ok((view.change(vec![Op::DeleteChannel], outbox), ()))
        })
        .await?;
        tracing::info!(channel_id, by = caller, "channel deleted");
        Ok(())
    }

    /// The caller joins (no `user_id`, or their own) or invites someone else.
    pub async fn add_member(&self, caller: u64, cmd: wire::CreateMember) -> Result<MemberRecord, ChannelError> {
        let (channel_id, target) = (cmd.channel_id, cmd.user_id.unwrap_or(caller));
        if target != caller {
            // why: checked before any rule, so "no such user" never depends on the channel.
            self.require_users("user_id", &[target]).await?;
        }
        let joined = self
            .mutate(channel_id, || async {
                let view = self.view(caller, channel_id).await?;
                rules::may_add_members(view.channel.kind)?;
                if target == caller {
                    if view.membership.is_some() {
                        return Err(ChannelError::AlreadyMember { channel_id, user_id: caller });
                    }
                } else {
                    rules::may_invite(view.channel.kind, view.channel.visibility, view.member()?.role)?;
                    if self.store.get_member(channel_id, target).await?.is_some() {
                        return Err(ChannelError::AlreadyMember { channel_id, user_id: target });
                    }
                }
                let invited_by = if target == caller { 0 } else { caller };
                let joined = member(channel_id, target, Role::Member, invited_by, now_ms());
                let mut channel = view.channel.clone();
                channel.member_count += 1;
                let outbox = vec![events::member_joined(&self.ids, caller, &joined)];
                Ok((view.change(vec![Op::PutChannel(channel), Op::PutMember(joined.clone())], outbox), joined))
            })
            .await?;
        tracing::info!(channel_id, user_id = target, by = caller, "member joined");
        Ok(joined)
    }

    /// The caller leaves (their own `user_id`) or removes someone below their role.
    pub async fn remove_member(&self, caller: u64, cmd: wire::DeleteMember) -> Result<(), ChannelError> {
        let (channel_id, target) = (cmd.channel_id, cmd.user_id);
        self.mutate(channel_id, || async {
            let view = self.view(caller, channel_id).await?;
            let me = view.member()?;
            rules::may_remove_members(view.channel.kind)?;
            let leaving = if target == caller {
                rules::may_leave(me.role)?;
                me.clone()
            } else {
                rules::may_remove_others(me.role)?;
                let them = self.target(channel_id, target).await?;
                rules::may_kick(me.role, target, them.role)?;
                them
            };
            let mut channel = view.channel.clone();
            channel.member_count = channel.member_count.saturating_sub(1);
            let outbox = vec![events::member_left(&self.ids, caller, &leaving)];
            Ok((view.change(vec![Op::PutChannel(channel), Op::DeleteMember { user_id: target }], outbox), ()))
        })
        .await?;
        tracing::info!(channel_id, user_id = target, by = caller, "member left");
        Ok(())
    }

    /// The channel's members by user id; only members may list them.
    pub async fn list_members(&self, caller: u64, cmd: wire::ListMembers) -> Result<Page<MemberRecord>, ChannelError> {
        let (channel_id, size) = (cmd.channel_id, cmd.page_size);
        self.view(caller, channel_id).await?.member()?;
        let members = self.store.list_members(channel_id, cmd.cursor, size).await?;
        let next = members.last().map(|last| last.user_id).filter(|_| members.len() == size);
        Ok(Page { items: members, next })
    }

    /// Gives a member a role; the owner giving OWNER hands ownership over (and becomes admin).
    pub async fn set_role(&self, caller: u64, cmd: wire::UpdateMember) -> Result<MemberRecord, ChannelError> {
        let (channel_id, target, role) = (cmd.channel_id, cmd.user_id, Role::from(cmd.role));
        let updated = self
            .mutate(channel_id, || async {
                let view = self.view(caller, channel_id).await?;
                let me = view.member()?;
                rules::may_change_roles(view.channel.kind, me.role, target == caller)?;
                let mut them = self.target(channel_id, target).await?;
                let mut ops = Vec::new();
                let mut outbox = Vec::new();
                if rules::may_set_role(me.role, target, them.role, role)? == RoleChange::HandOver {
                    let mut channel = view.channel.clone();
                    channel.owner_id = target;
                    channel.updated_at_ms = now_ms();
                    let demoted = MemberRecord { role: Role::Admin, ..me.clone() };
                    outbox.push(events::member_updated(&self.ids, caller, &demoted));
                    ops.push(Op::PutChannel(channel));
                    ops.push(Op::PutMember(demoted));
                }
                them.role = role;
                outbox.push(events::member_updated(&self.ids, caller, &them));
                ops.push(Op::PutMember(them.clone()));
                Ok((view.change(ops, outbox), them))
            })
            .await?;
        tracing::info!(channel_id, user_id = target, role = role_name(role), by = caller, "role changed");
        Ok(updated)
    }

    /// Closes (hides) or reopens the channel for the caller alone; records no event.
    pub async fn set_closed(&self, caller: u64, channel_id: u64, closed: bool) -> Result<(), ChannelError> {
        self.mutate(channel_id, || async {
            let view = self.view(caller, channel_id).await?;
            let mut me = view.member()?.clone();
            me.closed = closed;
            me.closed_at_ms = if closed { now_ms() } else { 0 };
            Ok((view.change(vec![Op::PutMember(me)], Vec::new()), ()))
        })
        .await
    }

    // ---- ChannelInternalService ----

    /// The direct channel of two users, created (with `user_id` as its creator) when they have
    /// none. Both must exist; blocks are not asked: the user service calls this for a
    /// friendship, which a block has already ended.
    pub async fn get_or_create_direct(&self, cmd: wire::GetOrCreateDirectChannel) -> Result<Created, ChannelError> {
        let (user, other) = (cmd.user_id, cmd.other_user_id);
        let missing = self.users.missing_users(&[user, other]).await.map_err(ChannelError::Users)?;
        if let Some(missing) = missing.first() {
            let field = if *missing == user { "user_id" } else { "other_user_id" };
            return Err(ChannelError::UserNotFound { field, user_id: *missing });
        }
        match self.store.find_direct(user.min(other), user.max(other)).await? {
            Some(existing) => Ok(Created { channel: self.channel(existing).await?, created: false }),
            None => self.open_direct(user, other).await,
        }
    }

    /// The channel and the user's membership in it, for other services.
    pub async fn check_membership(&self, cmd: wire::CheckMembership) -> Result<Membership, ChannelError> {
        let Some(channel) = self.store.get_channel(cmd.channel_id).await? else {
            return Ok(Membership { channel: None, member: None, direct_members: Vec::new() });
        };
        let member = self.store.get_member(cmd.channel_id, cmd.user_id).await?;
        let direct_members = match channel.kind {
            Kind::Direct => self.store.list_members(cmd.channel_id, None, 2).await?.iter().map(|m| m.user_id).collect(),
            Kind::Group | Kind::Broadcast => Vec::new(),
        };
        Ok(Membership { channel: Some(channel), member, direct_members })
    }

    /// Chats were sent (the newest id per channel): members who closed a channel before its
    /// newest chat see it again.
    pub async fn record_activity(&self, newest_chats: BTreeMap<u64, u64>) -> Result<(), ChannelError> {
        for (channel_id, chat_id) in newest_chats {
            // why: the common case (nobody closed it) costs one read and no write.
            let closed = self.store.list_closed_members(channel_id).await?;
            if !closed.iter().any(|m| rules::reopens(m, chat_id)) {
                continue;
            }
            let reopened = self
                .mutate(channel_id, || async {
                    let channel = self.channel(channel_id).await?;
                    let ops = self
                        .store
                        .list_closed_members(channel_id)
                        .await?
                        .into_iter()
                        .filter(|member| rules::reopens(member, chat_id))
                        .map(|member| Op::PutMember(MemberRecord { closed: false, closed_at_ms: 0, ..member }))
                        .collect();
                    Ok((Change { channel_id, expected_version: Some(channel.version), ops, outbox: Vec::new() }, ()))
                })
                .await;
            match reopened {
                Ok(()) | Err(ChannelError::ChannelNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// A user's channel ids, newest first.
    pub async fn list_user_channel_ids(&self, cmd: wire::ListUserChannelIds) -> Result<Page<u64>, ChannelError> {
        let memberships = self.store.list_memberships(cmd.user_id, cmd.cursor, cmd.page_size).await?;
        let ids: Vec<u64> = memberships.iter().map(|m| m.channel_id).collect();
        let next = ids.last().copied().filter(|_| ids.len() == cmd.page_size);
        Ok(Page { items: ids, next })
    }

    // ---- reading, deciding, applying ----

    async fn channel(&self, channel_id: u64) -> Result<ChannelRecord, ChannelError> {
        self.store.get_channel(channel_id).await?.ok_or(ChannelError::ChannelNotFound(channel_id))
    }

    /// The member an action targets.
    async fn target(&self, channel_id: u64, user_id: u64) -> Result<MemberRecord, ChannelError> {
        self.store.get_member(channel_id, user_id).await?.ok_or(ChannelError::MemberNotFound { channel_id, user_id })
    }

    async fn require_users(&self, field: &'static str, user_ids: &[u64]) -> Result<(), ChannelError> {
        let missing = self.users.missing_users(user_ids).await.map_err(ChannelError::Users)?;
        match missing.first() {
            Some(user_id) => Err(ChannelError::UserNotFound { field, user_id: *user_id }),
            None => Ok(()),
        }
    }

    /// Runs read → decide → apply until the store accepts the change unraced.
    async fn mutate<T, F, Fut>(&self, channel_id: u64, mut decide: F) -> Result<T, ChannelError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Decision<T>>,
    {
        for _ in 0..MAX_ATTEMPTS {
            let (change, answer) = decide().await?;
            match self.apply(change).await {
                Ok(()) => return Ok(answer),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ChannelError::Busy(channel_id))
    }

    /// Applies a change; once it is durable, raises the channel's epoch (so cached membership
    /// answers go stale before the caller hears back) and wakes the outbox relay.
    async fn apply(&self, change: Change) -> Result<(), StoreError> {
        let (channel_id, epoch, has_events) =
            (change.channel_id, change.expected_version.unwrap_or(0) + 1, !change.outbox.is_empty());
        self.store.apply(change).await?;
        self.epochs.raise(channel_id, epoch);
        if has_events {
            self.outbox.notify_one();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
