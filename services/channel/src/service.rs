//! The tonic handlers of ChannelService and ChannelInternalService: validation, the
//! membership and role rules, and mapping. Each mutation reads, decides, and applies one
//! [`Change`] that the store accepts only if the channel did not change in between.

use std::sync::Arc;

use chatmesh_api::channel::v1::{
    self as pb, channel_internal_service_server::ChannelInternalService, channel_service_server::ChannelService,
};
use chatmesh_platform::{
    auth::user_of,
    error::invalid_field,
    ids::{IdGenerator, now_ms},
    membership::EpochBoard,
    page,
};
use chatmesh_wire::channel as wire;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::{
    error::ChannelError,
    events,
    model::{ChannelRecord, Kind, MemberRecord, Role, Visibility},
    store::{Change, ChannelStore, Op, OutboxEntry, StoreError},
    users::UserDirectory,
};

/// Attempts of one read-decide-apply cycle before answering UNAVAILABLE.
const MAX_ATTEMPTS: usize = 16;

struct Core {
    store: Arc<dyn ChannelStore>,
    users: Arc<dyn UserDirectory>,
    ids: Arc<IdGenerator>,
    epochs: Arc<EpochBoard>,
    /// Wakes the outbox relay after a change.
    outbox: Arc<Notify>,
}

/// ChannelService: the public surface.
#[derive(Clone)]
pub struct ChannelApi {
    core: Arc<Core>,
}

/// ChannelInternalService: membership answers for other services (service principals only).
#[derive(Clone)]
pub struct ChannelInternalApi {
    core: Arc<Core>,
}

impl ChannelApi {
    /// `epochs` learns each channel's new membership epoch before a change returns; `outbox`
    /// is notified after every change that recorded events.
    pub fn new(
        store: Arc<dyn ChannelStore>,
        users: Arc<dyn UserDirectory>,
        ids: Arc<IdGenerator>,
        epochs: Arc<EpochBoard>,
        outbox: Arc<Notify>,
    ) -> (Self, ChannelInternalApi) {
        let core = Arc::new(Core { store, users, ids, epochs, outbox });
        (Self { core: core.clone() }, ChannelInternalApi { core })
    }
}

/// What a decision produced: the change to apply, and what to answer once it is applied.
type Decision<T> = Result<(Change, T), ChannelError>;

/// What the caller may see of a channel.
struct View {
    channel: ChannelRecord,
    membership: Option<MemberRecord>,
}

impl View {
    fn member(&self) -> Result<&MemberRecord, ChannelError> {
        self.membership.as_ref().ok_or(ChannelError::NotAMember(self.channel.channel_id))
    }

    fn change(&self, ops: Vec<Op>, outbox: Vec<OutboxEntry>) -> Change {
        Change { channel_id: self.channel.channel_id, expected_version: Some(self.channel.version), ops, outbox }
    }
}

impl Core {
    /// The channel as `user` may see it: NOT_FOUND when it does not exist, and also when the
    /// user is not a member of a private or direct one.
    async fn view(&self, channel_id: u64, user: u64) -> Result<View, ChannelError> {
        let channel = self.store.get_channel(channel_id).await?.ok_or(ChannelError::ChannelNotFound(channel_id))?;
        let membership = self.store.get_member(channel_id, user).await?;
        let public = channel.visibility == Visibility::Public && channel.kind != Kind::Direct;
        if membership.is_none() && !public {
            return Err(ChannelError::ChannelNotFound(channel_id));
        }
        Ok(View { channel, membership })
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

    async fn require_users(&self, field: &'static str, user_ids: &[u64]) -> Result<(), ChannelError> {
        if let Some(user_id) = self.users.missing_users(user_ids).await?.first() {
            return Err(ChannelError::UserNotFound { field, user_id: *user_id });
        }
        Ok(())
    }

    async fn channel_pb(&self, channel_id: u64) -> Result<pb::Channel, ChannelError> {
        let channel = self.store.get_channel(channel_id).await?.ok_or(ChannelError::ChannelNotFound(channel_id))?;
        Ok(channel.to_pb())
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Member => "member",
        Role::Admin => "admin",
        Role::Owner => "owner",
    }
}

fn member(channel_id: u64, user_id: u64, role: Role, invited_by: u64, now: u64) -> MemberRecord {
    MemberRecord { channel_id, user_id, role, joined_at_ms: now, invited_by, closed: false, closed_at_ms: 0 }
}

impl ChannelApi {
    async fn create_direct(
        &self,
        caller: u64,
        direct: wire::CreateDirect,
    ) -> Result<pb::CreateChannelResponse, Status> {
        let mut ids = direct.member_ids;
        ids.insert(caller);
        // why: the wire refused what is wrong whoever asks; this half of the rule needs the caller.
        if ids.len() != 2 {
            return Err(invalid_field("member_ids", wire::DIRECT_MEMBERS_RULE));
        }
        let (low, high) = (*ids.first().unwrap_or(&caller), *ids.last().unwrap_or(&caller));
        let other = if low == caller { high } else { low };
        let core = &self.core;
        if let Some(existing) = core.store.find_direct(low, high).await.map_err(ChannelError::from)? {
            return Ok(pb::CreateChannelResponse { channel: Some(core.channel_pb(existing).await?), created: false });
        }
        core.require_users("member_ids", &[other]).await?;
        let channel_id = core.ids.next_id();
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
            outbox: members.iter().map(|m| events::member_joined(&core.ids, caller, m)).collect(),
        };
        let existing = match core.apply(change).await {
            Ok(()) => channel_id,
            // why: a concurrent request created the pair's channel first; answer with that one.
            Err(StoreError::DirectPairTaken(existing)) => existing,
            Err(e) => return Err(ChannelError::from(e).into()),
        };
        Ok(pb::CreateChannelResponse {
            channel: Some(core.channel_pb(existing).await?),
            created: existing == channel_id,
        })
    }

    async fn create_group(&self, caller: u64, group: wire::CreateGroup) -> Result<pb::CreateChannelResponse, Status> {
        let invited: Vec<u64> = group.member_ids.into_iter().filter(|id| *id != caller).collect();
        let core = &self.core;
        core.require_users("member_ids", &invited).await?;
        let channel_id = core.ids.next_id();
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
        let mut ops = vec![Op::PutChannel(channel.clone())];
        ops.extend(members.iter().cloned().map(Op::PutMember));
        let outbox = members.iter().map(|m| events::member_joined(&core.ids, caller, m)).collect();
        core.apply(Change { channel_id, expected_version: None, ops, outbox }).await.map_err(ChannelError::from)?;
        tracing::info!(channel_id, owner = caller, "channel created");
        Ok(pb::CreateChannelResponse { channel: Some(core.channel_pb(channel_id).await?), created: true })
    }
}

#[tonic::async_trait]
impl ChannelService for ChannelApi {
    async fn create_channel(
        &self,
        request: Request<pb::CreateChannelRequest>,
    ) -> Result<Response<pb::CreateChannelResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let response = match wire::create_channel(request.get_ref())? {
            wire::CreateChannel::Direct(direct) => self.create_direct(caller, direct).await?,
            wire::CreateChannel::Group(group) => self.create_group(caller, group).await?,
        };
        Ok(Response::new(response))
    }

    async fn get_channel(
        &self,
        request: Request<pb::GetChannelRequest>,
    ) -> Result<Response<pb::GetChannelResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let channel_id = wire::get_channel(request.get_ref())?.channel_id;
        let view = self.core.view(channel_id, caller).await?;
        let response = match &view.membership {
            Some(membership) => {
                pb::GetChannelResponse { channel: Some(view.channel.to_pb()), membership: Some(membership.to_pb()) }
            }
            None => pb::GetChannelResponse { channel: Some(view.channel.to_preview_pb()), membership: None },
        };
        Ok(Response::new(response))
    }

    async fn list_my_channels(
        &self,
        request: Request<pb::ListMyChannelsRequest>,
    ) -> Result<Response<pb::ListMyChannelsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let req = request.into_inner();
        let valid = wire::list_my_channels(&req)?;
        let (size, mut cursor) = (valid.page_size, valid.cursor);
        let mut channels = Vec::new();
        let mut exhausted = false;
        while channels.len() < size && !exhausted {
            let batch = self.core.store.list_memberships(caller, cursor, size).await.map_err(ChannelError::from)?;
            exhausted = batch.len() < size;
            for membership in batch {
                cursor = Some(membership.channel_id);
                if membership.closed && !valid.include_closed {
                    continue;
                }
                if let Some(channel) =
                    self.core.store.get_channel(membership.channel_id).await.map_err(ChannelError::from)?
                {
                    channels.push(channel.to_pb());
                }
                if channels.len() == size {
                    break;
                }
            }
        }
        let next_page_token = match cursor {
            Some(cursor) if channels.len() == size => page::encode_token(cursor),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListMyChannelsResponse { channels, next_page_token }))
    }

    async fn update_channel(
        &self,
        request: Request<pb::UpdateChannelRequest>,
    ) -> Result<Response<pb::UpdateChannelResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let update = wire::update_channel(request.get_ref())?;
        let channel_id = update.channel_id;
        let visibility = update.visibility.map(Visibility::from);
        let core = &self.core;
        let channel = core
            .mutate(channel_id, || async {
                let view = core.view(channel_id, caller).await?;
                let me = view.member()?;
                if view.channel.kind == Kind::Direct {
                    return Err(ChannelError::Precondition("DIRECT_CHANNEL", "direct channels cannot be changed"));
                }
                if me.role < Role::Admin {
                    return Err(ChannelError::Forbidden("only the owner or an admin may change the channel"));
                }
                let mut channel = view.channel.clone();
                let mut changed = Vec::new();
                if let Some(name) = update.name.as_ref().filter(|name| **name != channel.name) {
                    channel.name = name.clone();
                    changed.push("name".to_owned());
                }
                if let Some(topic) = update.topic.as_ref().filter(|topic| **topic != channel.topic) {
                    channel.topic = topic.clone();
                    changed.push("topic".to_owned());
                }
                if let Some(image_url) = update.image_url.as_ref().filter(|url| **url != channel.image_url) {
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
                    vec![events::channel_updated(&core.ids, caller, &announced, changed)]
                };
                Ok((view.change(vec![Op::PutChannel(channel)], outbox), announced))
            })
            .await?;
        Ok(Response::new(pb::UpdateChannelResponse { channel: Some(channel.to_pb()) }))
    }

    async fn delete_channel(
        &self,
        request: Request<pb::DeleteChannelRequest>,
    ) -> Result<Response<pb::DeleteChannelResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let channel_id = wire::delete_channel(request.get_ref())?.channel_id;
        let core = &self.core;
        core.mutate(channel_id, || async {
            let view = core.view(channel_id, caller).await?;
            let me = view.member()?;
            if view.channel.kind == Kind::Direct {
                return Err(ChannelError::Precondition(
                    "DIRECT_CHANNEL",
                    "direct channels cannot be deleted; close them",
                ));
            }
            if me.role != Role::Owner {
                return Err(ChannelError::Forbidden("only the owner may delete the channel"));
            }
            let outbox = vec![events::channel_deleted(&core.ids, caller, &view.channel)];
            Ok((view.change(vec![Op::DeleteChannel], outbox), ()))
        })
        .await?;
        tracing::info!(channel_id, by = caller, "channel deleted");
        Ok(Response::new(pb::DeleteChannelResponse {}))
    }

    async fn create_member(
        &self,
        request: Request<pb::CreateMemberRequest>,
    ) -> Result<Response<pb::CreateMemberResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let valid = wire::create_member(request.get_ref())?;
        let (channel_id, target) = (valid.channel_id, valid.user_id.unwrap_or(caller));
        let core = &self.core;
        if target != caller {
            // why: checked before any rule, so "no such user" never depends on the channel.
            core.require_users("user_id", &[target]).await?;
        }
        let joined = core
            .mutate(channel_id, || async {
                let view = core.view(channel_id, caller).await?;
                if view.channel.kind == Kind::Direct {
                    return Err(ChannelError::Precondition(
                        "DIRECT_CHANNEL",
                        "direct channels have exactly two members",
                    ));
                }
                if target == caller {
                    if view.membership.is_some() {
                        return Err(ChannelError::AlreadyMember { channel_id, user_id: caller });
                    }
                } else {
                    let me = view.member()?;
                    let open_group = view.channel.kind == Kind::Group && view.channel.visibility == Visibility::Public;
                    if !open_group && me.role < Role::Admin {
                        return Err(ChannelError::Forbidden("only the owner or an admin may invite into this channel"));
                    }
                    if core.store.get_member(channel_id, target).await?.is_some() {
                        return Err(ChannelError::AlreadyMember { channel_id, user_id: target });
                    }
                }
                let invited_by = if target == caller { 0 } else { caller };
                let joined = member(channel_id, target, Role::Member, invited_by, now_ms());
                let mut channel = view.channel.clone();
                channel.member_count += 1;
                let outbox = vec![events::member_joined(&core.ids, caller, &joined)];
                Ok((view.change(vec![Op::PutChannel(channel), Op::PutMember(joined.clone())], outbox), joined))
            })
            .await?;
        tracing::info!(channel_id, user_id = target, by = caller, "member joined");
        Ok(Response::new(pb::CreateMemberResponse { member: Some(joined.to_pb()) }))
    }

    async fn delete_member(
        &self,
        request: Request<pb::DeleteMemberRequest>,
    ) -> Result<Response<pb::DeleteMemberResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let valid = wire::delete_member(request.get_ref())?;
        let (channel_id, target) = (valid.channel_id, valid.user_id);
        let core = &self.core;
        core.mutate(channel_id, || async {
            let view = core.view(channel_id, caller).await?;
            let me = view.member()?;
            if view.channel.kind == Kind::Direct {
                return Err(ChannelError::Precondition("DIRECT_CHANNEL", "direct channels cannot be left; close them"));
            }
            let leaving = if target == caller {
                if me.role == Role::Owner {
                    return Err(ChannelError::Precondition(
                        "OWNER_MUST_TRANSFER",
                        "the owner must hand ownership over before leaving",
                    ));
                }
                me.clone()
            } else {
                if me.role < Role::Admin {
                    return Err(ChannelError::Forbidden("only the owner or an admin may remove members"));
                }
                let them = core
                    .store
                    .get_member(channel_id, target)
                    .await?
                    .ok_or(ChannelError::MemberNotFound { channel_id, user_id: target })?;
                if them.role >= me.role {
                    return Err(ChannelError::Forbidden("you may only remove members below your own role"));
                }
                them
            };
            let mut channel = view.channel.clone();
            channel.member_count = channel.member_count.saturating_sub(1);
            let outbox = vec![events::member_left(&core.ids, caller, &leaving)];
            Ok((view.change(vec![Op::PutChannel(channel), Op::DeleteMember { user_id: target }], outbox), ()))
        })
        .await?;
        tracing::info!(channel_id, user_id = target, by = caller, "member left");
        Ok(Response::new(pb::DeleteMemberResponse {}))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let valid = wire::list_members(request.get_ref())?;
        let (channel_id, size, cursor) = (valid.channel_id, valid.page_size, valid.cursor);
        let view = self.core.view(channel_id, caller).await?;
        view.member()?;
        let members = self.core.store.list_members(channel_id, cursor, size).await.map_err(ChannelError::from)?;
        let next_page_token = match members.last() {
            Some(last) if members.len() == size => page::encode_token(last.user_id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListMembersResponse {
            members: members.iter().map(MemberRecord::to_pb).collect(),
            next_page_token,
        }))
    }

    async fn update_member(
        &self,
        request: Request<pb::UpdateMemberRequest>,
    ) -> Result<Response<pb::UpdateMemberResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let valid = wire::update_member(request.get_ref())?;
        let (channel_id, target, role) = (valid.channel_id, valid.user_id, Role::from(valid.role));
        let core = &self.core;
        let updated = core
            .mutate(channel_id, || async {
                let view = core.view(channel_id, caller).await?;
                let me = view.member()?.clone();
                if view.channel.kind == Kind::Direct {
                    return Err(ChannelError::Precondition("DIRECT_CHANNEL", "direct channels have no roles"));
                }
                if me.role < Role::Admin {
                    return Err(ChannelError::Forbidden("only the owner or an admin may change roles"));
                }
                if target == caller {
                    return Err(ChannelError::Forbidden("you cannot change your own role"));
                }
                let mut them = core
                    .store
                    .get_member(channel_id, target)
                    .await?
                    .ok_or(ChannelError::MemberNotFound { channel_id, user_id: target })?;
                if them.role >= me.role {
                    return Err(ChannelError::Forbidden("you may only change the roles of members below your own"));
                }
                let now = now_ms();
                let mut ops = Vec::new();
                let mut outbox = Vec::new();
                if role == Role::Owner {
                    if me.role != Role::Owner {
                        return Err(ChannelError::Forbidden("only the owner may hand ownership over"));
                    }
                    let mut channel = view.channel.clone();
                    channel.owner_id = target;
                    channel.updated_at_ms = now;
                    let mut demoted = me.clone();
                    demoted.role = Role::Admin;
                    outbox.push(events::member_updated(&core.ids, caller, &demoted));
                    ops.push(Op::PutChannel(channel));
                    ops.push(Op::PutMember(demoted));
                } else if role >= me.role {
                    return Err(ChannelError::Forbidden("nobody raises anyone to or above their own role"));
                }
                them.role = role;
                outbox.push(events::member_updated(&core.ids, caller, &them));
                ops.push(Op::PutMember(them.clone()));
                Ok((view.change(ops, outbox), them))
            })
            .await?;
        tracing::info!(channel_id, user_id = target, role = role_name(role), by = caller, "role changed");
        Ok(Response::new(pb::UpdateMemberResponse { member: Some(updated.to_pb()) }))
    }

    async fn close_channel(
        &self,
        request: Request<pb::CloseChannelRequest>,
    ) -> Result<Response<pb::CloseChannelResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let channel_id = wire::close_channel(request.get_ref())?.channel_id;
        self.set_closed(channel_id, caller, true).await?;
        Ok(Response::new(pb::CloseChannelResponse {}))
    }

    async fn reopen_channel(
        &self,
        request: Request<pb::ReopenChannelRequest>,
    ) -> Result<Response<pb::ReopenChannelResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let channel_id = wire::reopen_channel(request.get_ref())?.channel_id;
        self.set_closed(channel_id, caller, false).await?;
        Ok(Response::new(pb::ReopenChannelResponse {}))
    }
}

impl ChannelApi {
    async fn set_closed(&self, channel_id: u64, caller: u64, closed: bool) -> Result<(), ChannelError> {
        let core = &self.core;
        core.mutate(channel_id, || async {
            let view = core.view(channel_id, caller).await?;
            let mut me = view.member()?.clone();
            me.closed = closed;
            me.closed_at_ms = if closed { now_ms() } else { 0 };
            Ok((view.change(vec![Op::PutMember(me)], Vec::new()), ()))
        })
        .await
    }
}

#[tonic::async_trait]
impl ChannelInternalService for ChannelInternalApi {
    async fn check_membership(
        &self,
        request: Request<pb::CheckMembershipRequest>,
    ) -> Result<Response<pb::CheckMembershipResponse>, Status> {
        let wire::CheckMembership { channel_id, user_id } = wire::check_membership(request.get_ref())?;
        let Some(channel) = self.core.store.get_channel(channel_id).await.map_err(ChannelError::from)? else {
            return Ok(Response::new(pb::CheckMembershipResponse::default()));
        };
        let membership = self.core.store.get_member(channel_id, user_id).await.map_err(ChannelError::from)?;
        Ok(Response::new(pb::CheckMembershipResponse {
            channel_exists: true,
            is_member: membership.is_some(),
            role: membership.map_or(pb::MemberRole::Unspecified, |m| m.role.to_pb()) as i32,
            kind: channel.kind.to_pb() as i32,
            visibility: channel.visibility.to_pb() as i32,
            membership_epoch: channel.version as i64,
            member_count: channel.member_count as i32,
        }))
    }

    async fn record_activity(
        &self,
        request: Request<pb::RecordActivityRequest>,
    ) -> Result<Response<pb::RecordActivityResponse>, Status> {
        let newest_chats = wire::record_activity(request.get_ref())?.newest_chats;
        let core = &self.core;
        // why: a chat sent before a member closed the channel must not undo that close (the
        // relay may deliver it after); ids carry their creation time.
        let closed_before = |member: &MemberRecord, chat_id: u64| {
            member.closed && chatmesh_platform::ids::unix_ms_of(chat_id) > member.closed_at_ms
        };
        for (channel_id, chat_id) in newest_chats {
            // why: the common case (nobody closed it) costs one read and no write.
            let closed = core.store.list_closed_members(channel_id).await.map_err(ChannelError::from)?;
            if !closed.iter().any(|m| closed_before(m, chat_id)) {
                continue;
            }
            let reopened = core
                .mutate(channel_id, || async {
                    let channel =
                        core.store.get_channel(channel_id).await?.ok_or(ChannelError::ChannelNotFound(channel_id))?;
                    let ops = core
                        .store
                        .list_closed_members(channel_id)
                        .await?
                        .into_iter()
                        .filter(|member| closed_before(member, chat_id))
                        .map(|mut member| {
                            member.closed = false;
                            member.closed_at_ms = 0;
                            Op::PutMember(member)
                        })
                        .collect();
                    Ok((Change { channel_id, expected_version: Some(channel.version), ops, outbox: Vec::new() }, ()))
                })
                .await;
            match reopened {
                Ok(()) | Err(ChannelError::ChannelNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Response::new(pb::RecordActivityResponse {}))
    }

    async fn list_user_channel_ids(
        &self,
        request: Request<pb::ListUserChannelIdsRequest>,
    ) -> Result<Response<pb::ListUserChannelIdsResponse>, Status> {
        let wire::ListUserChannelIds { user_id, page_size: size, cursor } =
            wire::list_user_channel_ids(request.get_ref())?;
        let memberships = self.core.store.list_memberships(user_id, cursor, size).await.map_err(ChannelError::from)?;
        let next_page_token = match memberships.last() {
            Some(last) if memberships.len() == size => page::encode_token(last.channel_id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListUserChannelIdsResponse {
            channel_ids: memberships.iter().map(|m| m.channel_id.to_string()).collect(),
            next_page_token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use chatmesh_api::chat::v1::{ChannelEvent, EventType};
    use chatmesh_platform::Caller;
    use prost::Message;

    use super::*;
    use crate::store::FjallChannelStore;

    /// Users 1 to 9 exist.
    struct KnownUsers;

    #[async_trait::async_trait]
    impl UserDirectory for KnownUsers {
        async fn missing_users(&self, user_ids: &[u64]) -> Result<Vec<u64>, Status> {
            Ok(user_ids.iter().copied().filter(|id| !(1..10).contains(id)).collect())
        }
    }

    fn as_user<T>(user_id: u64, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.extensions_mut().insert(Caller::User { user_id, session_id: "s".into() });
        request
    }

    #[tokio::test]
    async fn every_change_records_its_events_in_the_outbox() {
        let (_dir, store) = FjallChannelStore::temp();
        let store = Arc::new(store);
        let (api, _) = ChannelApi::new(
            store.clone(),
            Arc::new(KnownUsers),
            Arc::new(IdGenerator::new(1).unwrap()),
            Arc::new(EpochBoard::new()),
            Arc::new(Notify::new()),
        );
        let create = pb::CreateChannelRequest {
            kind: pb::ChannelKind::Group as i32,
            name: "team".into(),
            member_ids: vec!["2".into()],
            ..Default::default()
        };
        let channel = api.create_channel(as_user(1, create)).await.unwrap().into_inner().channel.unwrap();
        let id = channel.channel_id.clone();
        api.create_member(as_user(1, pb::CreateMemberRequest { channel_id: id.clone(), user_id: "3".into() }))
            .await
            .unwrap();
        let promote =
            pb::UpdateMemberRequest { channel_id: id.clone(), user_id: "3".into(), role: pb::MemberRole::Admin as i32 };
        api.update_member(as_user(1, promote)).await.unwrap();
        let rename = pb::UpdateChannelRequest { channel_id: id.clone(), name: "renamed".into(), ..Default::default() };
        api.update_channel(as_user(3, rename)).await.unwrap();
        api.delete_member(as_user(3, pb::DeleteMemberRequest { channel_id: id.clone(), user_id: "2".into() }))
            .await
            .unwrap();
        api.close_channel(as_user(3, pb::CloseChannelRequest { channel_id: id.clone() })).await.unwrap();
        api.delete_channel(as_user(1, pb::DeleteChannelRequest { channel_id: id.clone() })).await.unwrap();

        let entries = store.list_outbox(None, 100).await.unwrap();
        let events: Vec<ChannelEvent> =
            entries.iter().map(|e| ChannelEvent::decode(e.event.as_slice()).unwrap()).collect();
        let kinds: Vec<(EventType, String)> = events.iter().map(|e| (e.r#type(), e.actor_id.clone())).collect();
        assert_eq!(
            kinds,
            vec![
                (EventType::MemberJoined, "1".into()),
                (EventType::MemberJoined, "1".into()),
                (EventType::MemberJoined, "1".into()),
                (EventType::MemberUpdated, "1".into()),
                (EventType::ChannelUpdated, "3".into()),
                (EventType::MemberLeft, "3".into()),
                (EventType::ChannelDeleted, "1".into()),
            ],
            "closing is personal and records nothing"
        );
        assert!(events.iter().all(|e| e.channel_id == id && e.event_id.is_empty()));
        let keys: std::collections::BTreeSet<_> = events.iter().map(|e| e.idempotency_key.clone()).collect();
        assert_eq!(keys.len(), events.len(), "each entry has its own idempotency key");
    }
}
