//! Who may do what in a channel: plain functions of kinds, visibilities and roles, each
//! answering `Ok(())` or the refusal the caller hears. [`super::ChannelCore`] asks them on
//! what it read; nothing here does I/O.

use crate::{
    error::ChannelError,
    model::{ChannelRecord, Kind, MemberRecord, Role, Visibility},
};

/// Whether a user sees the channel: members always; others only public groups and
/// broadcasts. NOT_FOUND otherwise, so a private or direct channel's existence does not leak.
pub fn may_view(channel: &ChannelRecord, member: bool) -> Result<(), ChannelError> {
    let public = channel.visibility == Visibility::Public && channel.kind != Kind::Direct;
    if member || public { Ok(()) } else { Err(ChannelError::ChannelNotFound(channel.channel_id)) }
}

/// The caller's membership, for what only members may do.
pub fn must_be_member(channel_id: u64, membership: Option<&MemberRecord>) -> Result<&MemberRecord, ChannelError> {
    membership.ok_or(ChannelError::NotAMember(channel_id))
}

/// The pair `(low, high)` of a direct channel `caller` creates with `member_ids` (validated on
/// the wire: one or two distinct ids), and the other user: exactly two users, the caller one
/// of them.
pub fn direct_pair(caller: u64, member_ids: impl IntoIterator<Item = u64>) -> Result<(u64, u64, u64), ChannelError> {
    let mut ids: std::collections::BTreeSet<u64> = member_ids.into_iter().collect();
    ids.insert(caller);
    let [low, high] = ids.into_iter().collect::<Vec<_>>()[..] else { return Err(ChannelError::DirectMembers) };
    Ok((low, high, if low == caller { high } else { low }))
}

/// Creating or reopening (through CreateChannel) a direct channel with `other`: not while
/// either of the pair has blocked the other.
pub fn may_have_direct_channel(other: u64, blocked: bool) -> Result<(), ChannelError> {
    if blocked { Err(ChannelError::UserBlocked { user_id: other }) } else { Ok(()) }
}

/// Renaming, retopicking, a new image or visibility: the owner or an admin, never of a direct
/// channel.
pub fn may_update(kind: Kind, actor: Role) -> Result<(), ChannelError> {
    if kind == Kind::Direct {
        return Err(ChannelError::DirectChannel("direct channels cannot be changed"));
    }
    at_least(actor, Role::Admin, "change the channel")
}

/// Deleting the channel: the owner only; a direct channel is closed instead.
pub fn may_delete(kind: Kind, actor: Role) -> Result<(), ChannelError> {
    if kind == Kind::Direct {
        return Err(ChannelError::DirectChannel("direct channels cannot be deleted; close them"));
    }
    at_least(actor, Role::Owner, "delete the channel")
}

/// Joining or inviting: never into a direct channel (asked before anything else, so even a
/// non-member learns why).
pub fn may_add_members(kind: Kind) -> Result<(), ChannelError> {
    if kind == Kind::Direct {
        return Err(ChannelError::DirectChannel("direct channels have exactly two members"));
    }
    Ok(())
}

/// Inviting someone else: any member of a public group; the owner or an admin elsewhere.
pub fn may_invite(kind: Kind, visibility: Visibility, actor: Role) -> Result<(), ChannelError> {
    may_add_members(kind)?;
    let open_group = kind == Kind::Group && visibility == Visibility::Public;
    if open_group { Ok(()) } else { at_least(actor, Role::Admin, "invite into this channel") }
}

/// Leaving or being removed: not from a direct channel (it is closed instead).
pub fn may_remove_members(kind: Kind) -> Result<(), ChannelError> {
    if kind == Kind::Direct {
        return Err(ChannelError::DirectChannel("direct channels cannot be left; close them"));
    }
    Ok(())
}

/// Leaving by oneself: anyone but the owner, who hands ownership over first.
pub fn may_leave(actor: Role) -> Result<(), ChannelError> {
    if actor == Role::Owner { Err(ChannelError::OwnerMustTransfer) } else { Ok(()) }
}

/// Removing others at all: the owner or an admin (asked before the target is looked up).
pub fn may_remove_others(actor: Role) -> Result<(), ChannelError> {
    at_least(actor, Role::Admin, "remove members")
}

/// Removing `target_id`, whose role is `target`: the owner or an admin, and only members below
/// their own role.
pub fn may_kick(actor: Role, target_id: u64, target: Role) -> Result<(), ChannelError> {
    may_remove_others(actor)?;
    below(actor, target_id, target, "remove")
}

/// Changing roles at all: the owner or an admin, never their own role, never in a direct
/// channel (asked before the target is looked up).
pub fn may_change_roles(kind: Kind, actor: Role, of_themself: bool) -> Result<(), ChannelError> {
    if kind == Kind::Direct {
        return Err(ChannelError::DirectChannel("direct channels have no roles"));
    }
    at_least(actor, Role::Admin, "change roles")?;
    if of_themself { Err(ChannelError::OwnRole) } else { Ok(()) }
}

/// What setting a member's role does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// The member gets `role`.
    Set,
    /// The member becomes the owner and the owner an admin.
    HandOver,
}

/// Giving `target_id` (now `target`) the role `role`: only members below the actor's own role,
/// never to or above it; the owner alone hands ownership over.
pub fn may_set_role(actor: Role, target_id: u64, target: Role, role: Role) -> Result<RoleChange, ChannelError> {
    at_least(actor, Role::Admin, "change roles")?;
    below(actor, target_id, target, "change the roles of")?;
    if role == Role::Owner {
        at_least(actor, Role::Owner, "hand ownership over")?;
        return Ok(RoleChange::HandOver);
    }
    if role >= actor {
        return Err(ChannelError::RoleNotGrantable { role });
    }
    Ok(RoleChange::Set)
}

/// Whether a chat with id `chat_id` reopens the channel for `member`: only one sent after the
/// member closed it (an earlier one, delivered late, must not undo the close). Ids carry their
/// creation time.
pub fn reopens(member: &MemberRecord, chat_id: u64) -> bool {
    member.closed && chatmesh_platform::ids::unix_ms_of(chat_id) > member.closed_at_ms
}

fn at_least(actor: Role, required: Role, action: &'static str) -> Result<(), ChannelError> {
    if actor >= required { Ok(()) } else { Err(ChannelError::RoleRequired { required, action }) }
}

fn below(actor: Role, target_id: u64, target: Role, action: &'static str) -> Result<(), ChannelError> {
    if target < actor { Ok(()) } else { Err(ChannelError::TargetNotBelow { user_id: target_id, action }) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Kind::{Broadcast, Direct, Group};
    use Role::{Admin, Member, Owner};
    use Visibility::{Private, Public};

    /// The refusal's reason, or "ok".
    fn verdict<T>(result: Result<T, ChannelError>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(ChannelError::ChannelNotFound(_)) => "CHANNEL_NOT_FOUND",
            Err(ChannelError::NotAMember(_)) => "NOT_A_MEMBER",
            Err(ChannelError::RoleRequired { required: Owner, .. }) => "ROLE_REQUIRED(owner)",
            Err(ChannelError::RoleRequired { .. }) => "ROLE_REQUIRED(admin)",
            Err(ChannelError::TargetNotBelow { .. }) => "TARGET_ROLE_NOT_BELOW",
            Err(ChannelError::OwnRole) => "OWN_ROLE",
            Err(ChannelError::RoleNotGrantable { .. }) => "ROLE_NOT_GRANTABLE",
            Err(ChannelError::DirectChannel(_)) => "DIRECT_CHANNEL",
            Err(ChannelError::OwnerMustTransfer) => "OWNER_MUST_TRANSFER",
            Err(ChannelError::DirectMembers) => "DIRECT_MEMBERS",
            Err(ChannelError::UserBlocked { .. }) => "USER_BLOCKED",
            Err(other) => panic!("not a rule's refusal: {other}"),
        }
    }

    fn channel(kind: Kind, visibility: Visibility) -> ChannelRecord {
        ChannelRecord {
            channel_id: 7,
            kind,
            visibility,
            name: String::new(),
            topic: String::new(),
            image_url: String::new(),
            owner_id: 1,
            member_count: 1,
            created_at_ms: 1,
            updated_at_ms: 1,
            version: 1,
        }
    }

    #[test]
    fn outsiders_see_public_groups_and_broadcasts_only() {
        let table = [
            (Group, Public, false, "ok"),
            (Broadcast, Public, false, "ok"),
            (Group, Private, false, "CHANNEL_NOT_FOUND"),
            (Broadcast, Private, false, "CHANNEL_NOT_FOUND"),
            (Direct, Public, false, "CHANNEL_NOT_FOUND"),
            (Direct, Private, false, "CHANNEL_NOT_FOUND"),
            (Group, Private, true, "ok"),
            (Direct, Private, true, "ok"),
        ];
        for (kind, visibility, member, want) in table {
            assert_eq!(verdict(may_view(&channel(kind, visibility), member)), want, "{kind:?} {visibility:?} {member}");
        }
    }

    #[test]
    fn only_members_pass_the_member_check() {
        let me = MemberRecord {
            channel_id: 7,
            user_id: 1,
            role: Member,
            joined_at_ms: 1,
            invited_by: 0,
            closed: false,
            closed_at_ms: 0,
        };
        assert_eq!(must_be_member(7, Some(&me)).unwrap().user_id, 1);
        assert_eq!(verdict(must_be_member(7, None)), "NOT_A_MEMBER");
    }

    #[test]
    fn a_direct_channel_is_the_caller_and_one_other() {
        assert_eq!(direct_pair(5, [2]).unwrap(), (2, 5, 2));
        assert_eq!(direct_pair(1, [2]).unwrap(), (1, 2, 2));
        assert_eq!(direct_pair(5, [5, 2]).unwrap(), (2, 5, 2), "the caller may name themself");
        assert_eq!(verdict(direct_pair(5, [5])), "DIRECT_MEMBERS", "nobody talks to themself");
        assert_eq!(verdict(direct_pair(5, [2, 3])), "DIRECT_MEMBERS", "a direct channel has two users");
    }

    #[test]
    fn owner_and_admins_may_update_a_group_or_broadcast() {
        let table = [
            (Group, Owner, "ok"),
            (Group, Admin, "ok"),
            (Group, Member, "ROLE_REQUIRED(admin)"),
            (Broadcast, Admin, "ok"),
            (Broadcast, Member, "ROLE_REQUIRED(admin)"),
            (Direct, Member, "DIRECT_CHANNEL"),
            (Direct, Owner, "DIRECT_CHANNEL"),
        ];
        for (kind, actor, want) in table {
            assert_eq!(verdict(may_update(kind, actor)), want, "{kind:?} {actor:?}");
        }
    }

    #[test]
    fn only_the_owner_may_delete() {
        let table = [
            (Group, Owner, "ok"),
            (Group, Admin, "ROLE_REQUIRED(owner)"),
            (Group, Member, "ROLE_REQUIRED(owner)"),
            (Broadcast, Owner, "ok"),
            (Direct, Member, "DIRECT_CHANNEL"),
        ];
        for (kind, actor, want) in table {
            assert_eq!(verdict(may_delete(kind, actor)), want, "{kind:?} {actor:?}");
        }
    }

    #[test]
    fn any_member_invites_into_a_public_group_admins_elsewhere() {
        let table = [
            (Group, Public, Member, "ok"),
            (Group, Private, Member, "ROLE_REQUIRED(admin)"),
            (Group, Private, Admin, "ok"),
            (Group, Private, Owner, "ok"),
            (Broadcast, Public, Member, "ROLE_REQUIRED(admin)"),
            (Broadcast, Public, Admin, "ok"),
            (Direct, Private, Member, "DIRECT_CHANNEL"),
        ];
        for (kind, visibility, actor, want) in table {
            assert_eq!(verdict(may_invite(kind, visibility, actor)), want, "{kind:?} {visibility:?} {actor:?}");
        }
        assert_eq!(verdict(may_add_members(Direct)), "DIRECT_CHANNEL");
        assert_eq!(verdict(may_add_members(Group)), "ok");
    }

    #[test]
    fn everyone_but_the_owner_may_leave_a_group() {
        assert_eq!(verdict(may_leave(Member)), "ok");
        assert_eq!(verdict(may_leave(Admin)), "ok");
        assert_eq!(verdict(may_leave(Owner)), "OWNER_MUST_TRANSFER");
        assert_eq!(verdict(may_remove_members(Direct)), "DIRECT_CHANNEL");
        assert_eq!(verdict(may_remove_members(Broadcast)), "ok");
    }

    #[test]
    fn kicking_needs_a_role_above_the_targets() {
        let table = [
            // owner_may_kick_admin, owner_may_kick_member
            (Owner, Admin, "ok"),
            (Owner, Member, "ok"),
            // admin_may_kick_member, admin_may_not_kick_admin, admin_may_not_kick_owner
            (Admin, Member, "ok"),
            (Admin, Admin, "TARGET_ROLE_NOT_BELOW"),
            (Admin, Owner, "TARGET_ROLE_NOT_BELOW"),
            // member_may_not_kick_anyone
            (Member, Member, "ROLE_REQUIRED(admin)"),
            (Member, Owner, "ROLE_REQUIRED(admin)"),
        ];
        for (actor, target, want) in table {
            assert_eq!(verdict(may_kick(actor, 9, target)), want, "{actor:?} kicks {target:?}");
        }
        assert_eq!(verdict(may_remove_others(Member)), "ROLE_REQUIRED(admin)");
        assert_eq!(verdict(may_remove_others(Admin)), "ok");
    }

    #[test]
    fn roles_change_only_below_ones_own() {
        let table = [
            (Direct, Owner, false, "DIRECT_CHANNEL"),
            (Group, Member, false, "ROLE_REQUIRED(admin)"),
            (Group, Admin, true, "OWN_ROLE"),
            (Group, Owner, true, "OWN_ROLE"),
            (Group, Admin, false, "ok"),
            (Broadcast, Owner, false, "ok"),
        ];
        for (kind, actor, of_themself, want) in table {
            assert_eq!(verdict(may_change_roles(kind, actor, of_themself)), want, "{kind:?} {actor:?} {of_themself}");
        }
    }

    #[test]
    fn who_may_give_which_role() {
        let table = [
            // owner_may_promote_member_to_admin, owner_may_demote_admin
            (Owner, Member, Admin, Ok(RoleChange::Set)),
            (Owner, Admin, Member, Ok(RoleChange::Set)),
            (Owner, Member, Member, Ok(RoleChange::Set)),
            // owner_may_hand_ownership_over
            (Owner, Admin, Owner, Ok(RoleChange::HandOver)),
            (Owner, Member, Owner, Ok(RoleChange::HandOver)),
            // admin_may_not_raise_anyone_to_admin_or_owner
            (Admin, Member, Admin, Err("ROLE_NOT_GRANTABLE")),
            (Admin, Member, Owner, Err("ROLE_REQUIRED(owner)")),
            (Admin, Member, Member, Ok(RoleChange::Set)),
            // admin_may_not_change_owner_or_admin
            (Admin, Owner, Member, Err("TARGET_ROLE_NOT_BELOW")),
            (Admin, Admin, Member, Err("TARGET_ROLE_NOT_BELOW")),
            // member_may_not_change_roles
            (Member, Member, Member, Err("ROLE_REQUIRED(admin)")),
        ];
        for (actor, target, role, want) in table {
            let got = may_set_role(actor, 9, target, role);
            let got = match got {
                Ok(change) => Ok(change),
                Err(e) => Err(verdict::<()>(Err(e))),
            };
            assert_eq!(got, want, "{actor:?} sets {target:?} to {role:?}");
        }
    }

    #[test]
    fn a_block_either_way_keeps_a_pair_from_a_direct_channel() {
        assert_eq!(verdict(may_have_direct_channel(2, false)), "ok");
        assert_eq!(verdict(may_have_direct_channel(2, true)), "USER_BLOCKED");
        assert!(matches!(may_have_direct_channel(2, true), Err(ChannelError::UserBlocked { user_id: 2 })));
    }

    #[test]
    fn only_a_chat_sent_after_the_close_reopens() {
        let ids = chatmesh_platform::ids::IdGenerator::new(1).unwrap();
        let chat = ids.next_id();
        let sent_at = chatmesh_platform::ids::unix_ms_of(chat);
        let member = |closed, closed_at_ms| MemberRecord {
            channel_id: 7,
            user_id: 2,
            role: Member,
            joined_at_ms: 1,
            invited_by: 0,
            closed,
            closed_at_ms,
        };
        assert!(reopens(&member(true, sent_at - 1), chat));
        assert!(!reopens(&member(true, sent_at), chat), "sent before (or as) it was closed");
        assert!(!reopens(&member(true, sent_at + 1), chat));
        assert!(!reopens(&member(false, 0), chat), "open already");
    }
}
