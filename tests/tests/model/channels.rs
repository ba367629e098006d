//! The harness's channel operations: create, join, invite, leave, kick, roles, close, delete.

use std::collections::BTreeMap;

use chatmesh_api::{
    channel::v1::{self as pb_channel, ChannelKind, ChannelVisibility, MemberRole},
    chat::v1::EventType,
};
use chatmesh_platform::ids::now_ms;
use chatmesh_tests::authed;
use tonic::Code;

use crate::{
    USERS,
    harness::{Checked, Harness, agree},
    ops::{Kind, Role},
    reference::{CloseWindow, ModelChannel},
};

impl Harness {
    pub(crate) async fn create_group(&mut self, by: usize, kind: Kind, public: bool, members: u8) -> Checked {
        let mut invited: Vec<usize> = (0..USERS).filter(|u| *u != by && members & (1 << u) != 0).collect();
        // why: the service records the initial members' events in user id order.
        invited.sort_by_key(|u| self.users[*u].id.parse::<u64>().unwrap_or(0));
        let request = pb_channel::CreateChannelRequest {
            kind: (if kind == Kind::Broadcast { ChannelKind::Broadcast } else { ChannelKind::Group }) as i32,
            visibility: (if public { ChannelVisibility::Public } else { ChannelVisibility::Private }) as i32,
            name: "team".into(),
            member_ids: invited.iter().map(|u| self.users[*u].id.clone()).collect(),
            ..Default::default()
        };
        let got = self.channels.create_channel(authed(&self.token(by), request)).await;
        let c = self.model.channels.len();
        let visibility = if public { "public" } else { "private" };
        self.note(format!("u{by} create {visibility} {kind:?} ch{c} with {invited:?}"), &got);
        agree("create", &Ok::<(), Code>(()), &got)?;
        let channel = got.map_err(|e| e.to_string())?.into_inner().channel.ok_or("no channel in the answer")?;
        ensure!(channel.owner_id == self.users[by].id, "the creator owns the channel: {channel:?}");
        ensure!(channel.member_count as usize == 1 + invited.len(), "member count at creation: {channel:?}");
        let mut model = ModelChannel {
            id: channel.channel_id,
            kind,
            public,
            deleted: false,
            members: BTreeMap::from([(by, Role::Owner)]),
            closed: BTreeMap::new(),
            member_events: vec![(EventType::MemberJoined, by, by, Role::Owner)],
        };
        for u in invited {
            model.members.insert(u, Role::Member);
            model.member_events.push((EventType::MemberJoined, by, u, Role::Member));
        }
        self.model.channels.push(model);
        Ok(())
    }

    pub(crate) async fn create_direct(&mut self, by: usize, other: usize) -> Checked {
        let request = pb_channel::CreateChannelRequest {
            kind: ChannelKind::Direct as i32,
            member_ids: vec![self.users[other].id.clone()],
            ..Default::default()
        };
        let got = self.channels.create_channel(authed(&self.token(by), request)).await;
        let existing = self
            .model
            .channels
            .iter()
            .position(|c| c.kind == Kind::Direct && c.members.contains_key(&by) && c.members.contains_key(&other));
        let c = existing.unwrap_or(self.model.channels.len());
        self.note(format!("u{by} create direct ch{c} with u{other}"), &got);
        agree("create direct", &Ok::<(), Code>(()), &got)?;
        let response = got.map_err(|e| e.to_string())?.into_inner();
        let channel = response.channel.ok_or("no channel in the answer")?;
        match existing {
            Some(c) => {
                ensure!(!response.created, "a second direct channel for one pair was created");
                ensure!(channel.channel_id == self.model.channels[c].id, "the pair's existing channel is returned");
            }
            None => {
                ensure!(response.created, "the pair's first direct channel reports created = false");
                self.model.channels.push(ModelChannel {
                    id: channel.channel_id,
                    kind: Kind::Direct,
                    public: false,
                    deleted: false,
                    members: BTreeMap::from([(by, Role::Member), (other, Role::Member)]),
                    closed: BTreeMap::new(),
                    member_events: vec![
                        (EventType::MemberJoined, by, by, Role::Member),
                        (EventType::MemberJoined, by, other, Role::Member),
                    ],
                });
            }
        }
        Ok(())
    }

    /// Joins (`target == by`) or invites.
    pub(crate) async fn add_member(&mut self, c: usize, by: usize, target: usize) -> Checked {
        let rule = self.model.invite_rule(c, by, target);
        // why: an empty user_id joins; naming oneself does the same.
        let user_id = if target == by { String::new() } else { self.users[target].id.clone() };
        let request = pb_channel::CreateMemberRequest { channel_id: self.model.channels[c].id.clone(), user_id };
        let got = self.channels.create_member(authed(&self.token(by), request)).await;
        let what = if target == by { format!("u{by} join ch{c}") } else { format!("u{by} invite ch{c} u{target}") };
        self.note(what, &got);
        agree("create member", &rule, &got)?;
        if rule.is_err() {
            return self.unchanged(c).await;
        }
        if let Ok(response) = got {
            let member = response.into_inner().member.ok_or("no member in the answer")?;
            ensure!(member.role() == MemberRole::Member, "a new member is a MEMBER: {member:?}");
            let invited_by = if target == by { String::new() } else { self.users[by].id.clone() };
            ensure!(member.invited_by == invited_by, "invited_by: {member:?}");
            let channel = &mut self.model.channels[c];
            channel.members.insert(target, Role::Member);
            channel.member_events.push((EventType::MemberJoined, by, target, Role::Member));
        }
        Ok(())
    }

    /// Leaves (`target == by`) or kicks.
    pub(crate) async fn remove_member(&mut self, c: usize, by: usize, target: usize) -> Checked {
        let rule = self.model.remove_member_rule(c, by, target);
        let request = pb_channel::DeleteMemberRequest {
            channel_id: self.model.channels[c].id.clone(),
            user_id: self.users[target].id.clone(),
        };
        let got = self.channels.delete_member(authed(&self.token(by), request)).await;
        let what = if target == by { format!("u{by} leave ch{c}") } else { format!("u{by} kick ch{c} u{target}") };
        self.note(what, &got);
        agree("delete member", &rule, &got)?;
        if rule.is_err() {
            return self.unchanged(c).await;
        }
        if let Ok(role) = rule {
            let channel = &mut self.model.channels[c];
            channel.members.remove(&target);
            channel.closed.remove(&target);
            channel.member_events.push((EventType::MemberLeft, by, target, role));
        }
        Ok(())
    }

    pub(crate) async fn set_role(&mut self, c: usize, by: usize, target: usize, role: Role) -> Checked {
        let rule = self.model.set_role_rule(c, by, target, role);
        let request = pb_channel::UpdateMemberRequest {
            channel_id: self.model.channels[c].id.clone(),
            user_id: self.users[target].id.clone(),
            role: role.to_pb() as i32,
        };
        let got = self.channels.update_member(authed(&self.token(by), request)).await;
        self.note(format!("u{by} set-role ch{c} u{target} {role:?}"), &got);
        agree("update member", &rule, &got)?;
        if rule.is_err() {
            return self.unchanged(c).await;
        }
        if let Ok(response) = got {
            let member = response.into_inner().member.ok_or("no member in the answer")?;
            ensure!(member.role() == role.to_pb(), "the answer carries the new role: {member:?}");
            let channel = &mut self.model.channels[c];
            if role == Role::Owner {
                // why: handing ownership over makes the old owner an ADMIN, announced first.
                channel.members.insert(by, Role::Admin);
                channel.member_events.push((EventType::MemberUpdated, by, by, Role::Admin));
            }
            channel.members.insert(target, role);
            channel.member_events.push((EventType::MemberUpdated, by, target, role));
        }
        Ok(())
    }

    /// After a refused membership change: the members and roles are still the model's.
    pub(crate) async fn unchanged(&mut self, c: usize) -> Checked {
        if self.model.channels[c].deleted {
            return Ok(());
        }
        let owner = self.model.principal(c);
        self.member_list(c, owner).await.map_err(|e| format!("after a refusal, ch{c}'s members: {e}"))
    }

    pub(crate) async fn close(&mut self, c: usize, by: usize, close: bool) -> Checked {
        let rule = self.model.access(c, by);
        let channel_id = self.model.channels[c].id.clone();
        let earliest = now_ms();
        let got = if close {
            let request = pb_channel::CloseChannelRequest { channel_id };
            self.channels.close_channel(authed(&self.token(by), request)).await.map(|_| ())
        } else {
            let request = pb_channel::ReopenChannelRequest { channel_id };
            self.channels.reopen_channel(authed(&self.token(by), request)).await.map(|_| ())
        };
        let latest = now_ms();
        self.note(format!("u{by} {} ch{c}", if close { "close" } else { "reopen" }), &got);
        agree("close or reopen", &rule, &got)?;
        if rule.is_ok() {
            let closed = &mut self.model.channels[c].closed;
            if close {
                // why: closing again moves the close to now; chats before it stay behind it.
                closed.insert(by, CloseWindow { earliest, latest })
            } else {
                closed.remove(&by)
            };
        }
        Ok(())
    }

    pub(crate) async fn delete(&mut self, c: usize, by: usize) -> Checked {
        let rule = self.model.delete_rule(c, by);
        let request = pb_channel::DeleteChannelRequest { channel_id: self.model.channels[c].id.clone() };
        let got = self.channels.delete_channel(authed(&self.token(by), request)).await;
        self.note(format!("u{by} delete ch{c}"), &got);
        agree("delete channel", &rule, &got)?;
        if rule.is_ok() {
            self.model.channels[c].deleted = true;
        }
        Ok(())
    }
}
