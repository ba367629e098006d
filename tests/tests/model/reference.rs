//! The reference model: the documented contract, as plain data and rules.

use std::collections::{BTreeMap, BTreeSet};

use chatmesh_api::chat::v1::EventType;
use tonic::Code;

use crate::{
    USERS,
    ops::{Kind, Role, Who},
};

/// A `member.*` event the channel service must log: (type, actor, subject, the subject's role).
pub(crate) type MemberEvent = (EventType, usize, usize, Role);

#[derive(Debug)]
pub(crate) struct ModelChannel {
    pub(crate) id: String,
    pub(crate) kind: Kind,
    pub(crate) public: bool,
    pub(crate) deleted: bool,
    pub(crate) members: BTreeMap<usize, Role>,
    /// Members who closed the channel for themselves, and when.
    pub(crate) closed: BTreeMap<usize, CloseWindow>,
    pub(crate) member_events: Vec<MemberEvent>,
}

/// The milliseconds a close may have been recorded at: the service reads its clock once while
/// answering, so between the test's readings before the call and after the answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CloseWindow {
    pub(crate) earliest: u64,
    pub(crate) latest: u64,
}

impl CloseWindow {
    /// Whether a chat minted in millisecond `chat_ms` reopens the channel: only a chat of a later
    /// millisecond than the close does. `None` when the chat's millisecond lies inside the window
    /// (then only the service knows which side of the close it fell on).
    pub(crate) fn reopened_by(&self, chat_ms: u64) -> Option<bool> {
        if chat_ms > self.latest {
            Some(true)
        } else if chat_ms <= self.earliest {
            Some(false)
        } else {
            None
        }
    }
}

#[derive(Debug)]
pub(crate) struct ModelChat {
    pub(crate) id: u64,
    pub(crate) channel: usize,
    pub(crate) sender: usize,
    pub(crate) text: String,
    pub(crate) retracted: bool,
    pub(crate) edits: usize,
    pub(crate) removed_for: BTreeSet<usize>,
}

impl ModelChat {
    /// The text readers get: none once retracted.
    pub(crate) fn shown_text(&self) -> &str {
        if self.retracted { "" } else { &self.text }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Model {
    pub(crate) channels: Vec<ModelChannel>,
    /// Text chats in the order they were sent (so ids grow).
    pub(crate) chats: Vec<ModelChat>,
    /// (channel, user) → the newest chat id read; kept across leaving and rejoining.
    pub(crate) pointers: BTreeMap<(usize, usize), u64>,
}

impl Model {
    pub(crate) fn channel(&self, ch: u8) -> Option<usize> {
        (!self.channels.is_empty()).then(|| ch as usize % self.channels.len())
    }

    pub(crate) fn chat(&self, chat: u8) -> Option<usize> {
        (!self.chats.is_empty()).then(|| chat as usize % self.chats.len())
    }

    /// The owner of a group or broadcast; the first member of a direct channel.
    pub(crate) fn principal(&self, c: usize) -> usize {
        let channel = &self.channels[c];
        let owner = channel.members.iter().find(|(_, role)| **role == Role::Owner).map(|(u, _)| *u);
        owner.or_else(|| channel.members.keys().next().copied()).unwrap_or(0)
    }

    pub(crate) fn who(&self, who: Who, c: usize, principal: usize) -> usize {
        let members: Vec<usize> = self.channels[c].members.keys().copied().collect();
        match who {
            Who::Member(n) if !members.is_empty() => members[n as usize % members.len()],
            Who::Outsider(n) if members.len() < USERS => {
                let outsiders: Vec<usize> = (0..USERS).filter(|u| !members.contains(u)).collect();
                outsiders[n as usize % outsiders.len()]
            }
            Who::Junior(n) if members.iter().any(|u| *u != principal) => {
                let juniors: Vec<usize> = members.into_iter().filter(|u| *u != principal).collect();
                juniors[n as usize % juniors.len()]
            }
            Who::Member(n) | Who::Anyone(n) | Who::Outsider(n) => n as usize % USERS,
            Who::Principal | Who::Junior(_) => principal,
        }
    }

    /// A member's role, or what a non-member is answered: NOT_FOUND for a deleted, private or
    /// direct channel (existence does not leak), PERMISSION_DENIED for a public one.
    pub(crate) fn access(&self, c: usize, user: usize) -> Result<Role, Code> {
        let channel = &self.channels[c];
        if channel.deleted {
            return Err(Code::NotFound);
        }
        match channel.members.get(&user) {
            Some(role) => Ok(*role),
            None if channel.public && channel.kind != Kind::Direct => Err(Code::PermissionDenied),
            None => Err(Code::NotFound),
        }
    }

    /// Joining by oneself: PUBLIC groups and broadcasts only.
    pub(crate) fn join_rule(&self, c: usize, user: usize) -> Result<(), Code> {
        let channel = &self.channels[c];
        match self.access(c, user) {
            Ok(_) if channel.kind == Kind::Direct => Err(Code::FailedPrecondition),
            Ok(_) => Err(Code::AlreadyExists),
            Err(Code::PermissionDenied) => Ok(()),
            Err(code) => Err(code),
        }
    }

    pub(crate) fn invite_rule(&self, c: usize, by: usize, target: usize) -> Result<(), Code> {
        if target == by {
            return self.join_rule(c, by);
        }
        let channel = &self.channels[c];
        let role = match self.access(c, by) {
            Err(Code::NotFound) => return Err(Code::NotFound),
            _ if channel.kind == Kind::Direct => return Err(Code::FailedPrecondition),
            other => other?,
        };
        let open_group = channel.kind == Kind::Group && channel.public;
        if !open_group && role < Role::Admin {
            return Err(Code::PermissionDenied);
        }
        if channel.members.contains_key(&target) {
            return Err(Code::AlreadyExists);
        }
        Ok(())
    }

    /// Leaving (`target == by`) or removing a member; returns the role they had.
    pub(crate) fn remove_member_rule(&self, c: usize, by: usize, target: usize) -> Result<Role, Code> {
        let channel = &self.channels[c];
        let role = self.access(c, by)?;
        if channel.kind == Kind::Direct {
            return Err(Code::FailedPrecondition);
        }
        if target == by {
            return if role == Role::Owner { Err(Code::FailedPrecondition) } else { Ok(role) };
        }
        if role < Role::Admin {
            return Err(Code::PermissionDenied);
        }
        let Some(theirs) = channel.members.get(&target) else { return Err(Code::NotFound) };
        if *theirs >= role {
            return Err(Code::PermissionDenied);
        }
        Ok(*theirs)
    }

    pub(crate) fn set_role_rule(&self, c: usize, by: usize, target: usize, role: Role) -> Result<(), Code> {
        let channel = &self.channels[c];
        let mine = self.access(c, by)?;
        if channel.kind == Kind::Direct {
            return Err(Code::FailedPrecondition);
        }
        if mine < Role::Admin || target == by {
            return Err(Code::PermissionDenied);
        }
        let Some(theirs) = channel.members.get(&target) else { return Err(Code::NotFound) };
        if *theirs >= mine {
            return Err(Code::PermissionDenied);
        }
        let allowed = if role == Role::Owner { mine == Role::Owner } else { role < mine };
        if allowed { Ok(()) } else { Err(Code::PermissionDenied) }
    }

    pub(crate) fn delete_rule(&self, c: usize, by: usize) -> Result<(), Code> {
        let role = self.access(c, by)?;
        if self.channels[c].kind == Kind::Direct {
            return Err(Code::FailedPrecondition);
        }
        if role == Role::Owner { Ok(()) } else { Err(Code::PermissionDenied) }
    }

    pub(crate) fn send_rule(&self, c: usize, by: usize) -> Result<(), Code> {
        let role = self.access(c, by)?;
        if self.channels[c].kind == Kind::Broadcast && role != Role::Owner {
            return Err(Code::PermissionDenied);
        }
        Ok(())
    }

    /// A chat `user` may read: a member of its channel who did not remove it.
    pub(crate) fn readable(&self, chat: usize, user: usize) -> Result<(), Code> {
        let chat = &self.chats[chat];
        self.access(chat.channel, user)?;
        if chat.removed_for.contains(&user) {
            return Err(Code::NotFound);
        }
        Ok(())
    }

    /// Edit and retract: readable, then the sender's own, then not retracted.
    pub(crate) fn change_rule(&self, chat: usize, user: usize) -> Result<(), Code> {
        self.readable(chat, user)?;
        let chat = &self.chats[chat];
        if chat.sender != user {
            return Err(Code::PermissionDenied);
        }
        if chat.retracted {
            return Err(Code::FailedPrecondition);
        }
        Ok(())
    }

    /// The text chats `user` sees in a channel's history, oldest first.
    pub(crate) fn visible(&self, c: usize, user: usize) -> impl Iterator<Item = &ModelChat> {
        self.chats.iter().filter(move |chat| chat.channel == c && !chat.removed_for.contains(&user))
    }

    /// Chats by others after the read pointer, not removed for me, not retracted.
    pub(crate) fn unread(&self, c: usize, user: usize) -> i64 {
        let pointer = self.pointers.get(&(c, user)).copied().unwrap_or(0);
        self.visible(c, user).filter(|chat| chat.sender != user && chat.id > pointer && !chat.retracted).count() as i64
    }

    pub(crate) fn channels_of(&self, user: usize) -> Vec<usize> {
        (0..self.channels.len()).filter(|c| self.access(*c, user).is_ok()).collect()
    }

    pub(crate) fn search(&self, user: usize, word: &str, only: Option<usize>) -> Vec<u64> {
        let mine = self.channels_of(user);
        let mut found: Vec<u64> = self
            .chats
            .iter()
            .filter(|chat| mine.contains(&chat.channel) && only.is_none_or(|c| c == chat.channel))
            .filter(|chat| !chat.retracted && !chat.removed_for.contains(&user))
            .filter(|chat| chat.text.split(' ').any(|w| w == word))
            .map(|chat| chat.id)
            .collect();
        found.reverse();
        found
    }
}
