//! Operations, as proptest draws them: small indices resolved against the model when they run.

use chatmesh_api::channel::v1::MemberRole;
use proptest::prelude::*;

use crate::{USERS, WORDS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub(crate) fn to_pb(self) -> MemberRole {
        match self {
            Role::Member => MemberRole::Member,
            Role::Admin => MemberRole::Admin,
            Role::Owner => MemberRole::Owner,
        }
    }

    pub(crate) fn of_pb(role: MemberRole) -> Option<Role> {
        match role {
            MemberRole::Member => Some(Role::Member),
            MemberRole::Admin => Some(Role::Admin),
            MemberRole::Owner => Some(Role::Owner),
            MemberRole::Unspecified => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Group,
    Broadcast,
    Direct,
}

/// Who acts, resolved against the model when the operation runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Who {
    /// The n-th current member of the channel (wrapping); the n-th user when it has none.
    Member(u8),
    /// Any user of the cast, member or not.
    Anyone(u8),
    /// The n-th user who is not a member (wrapping); the n-th user when all are.
    Outsider(u8),
    /// The n-th member other than the principal (wrapping); the principal when none.
    Junior(u8),
    /// The channel's owner; for a chat, its sender.
    Principal,
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// `members`: a bit per user invited at creation; for a direct channel, picks the other user.
    Create {
        by: u8,
        kind: Kind,
        public: bool,
        members: u8,
    },
    Join {
        by: Who,
        ch: u8,
    },
    /// `user`: whom, resolved like `by`.
    Invite {
        by: Who,
        ch: u8,
        user: Who,
    },
    Leave {
        by: Who,
        ch: u8,
    },
    /// `user`: whom, resolved like `by` (`Principal`: the owner).
    Kick {
        by: Who,
        ch: u8,
        user: Who,
    },
    SetRole {
        by: Who,
        ch: u8,
        user: Who,
        role: Role,
    },
    Close {
        by: Who,
        ch: u8,
    },
    Reopen {
        by: Who,
        ch: u8,
    },
    Delete {
        by: Who,
        ch: u8,
    },
    Send {
        by: Who,
        ch: u8,
        words: Vec<u8>,
    },
    Edit {
        by: Who,
        chat: u8,
        words: Vec<u8>,
    },
    Retract {
        by: Who,
        chat: u8,
    },
    Remove {
        by: Who,
        chat: u8,
    },
    Ack {
        by: Who,
        chat: u8,
    },
    GetChat {
        by: Who,
        chat: u8,
    },
    History {
        by: Who,
        ch: u8,
        oldest_first: bool,
    },
    Unread {
        by: u8,
        ch: Option<u8>,
    },
    Search {
        by: u8,
        word: u8,
        ch: Option<u8>,
    },
    Resume {
        by: Who,
        ch: u8,
        at: u8,
    },
    Members {
        by: Who,
        ch: u8,
    },
    MyChannels {
        by: u8,
    },
}

/// Each kind of operation as the trace names it (its verb), one per `Op` variant.
pub(crate) const VERBS: [&str; 21] = [
    "create",
    "join",
    "invite",
    "leave",
    "kick",
    "set-role",
    "close",
    "reopen",
    "delete",
    "send",
    "edit",
    "retract",
    "remove",
    "ack",
    "get",
    "history",
    "unread",
    "search",
    "resume",
    "members",
    "my-channels",
];

pub(crate) fn who() -> impl Strategy<Value = Who> {
    prop_oneof![3 => (0..8u8).prop_map(Who::Member), 1 => (0..8u8).prop_map(Who::Anyone), 2 => Just(Who::Principal)]
}

/// Who joins or is invited: mostly someone not yet a member (a member is refused).
pub(crate) fn newcomer() -> impl Strategy<Value = Who> {
    prop_oneof![3 => (0..8u8).prop_map(Who::Outsider), 1 => (0..8u8).prop_map(Who::Anyone)]
}

/// Who leaves, whose role changes, who is kicked: mostly a member below the principal (who is
/// refused, as is whoever acts on themselves).
pub(crate) fn subject() -> impl Strategy<Value = Who> {
    prop_oneof![
        3 => (0..8u8).prop_map(Who::Junior),
        1 => (0..8u8).prop_map(Who::Member),
        1 => (0..8u8).prop_map(Who::Anyone),
        1 => Just(Who::Principal)
    ]
}

/// Who edits or retracts a chat, or deletes a channel: the principal (the chat's sender, the
/// channel's owner) as often as anyone else.
pub(crate) fn principal_or_who() -> impl Strategy<Value = Who> {
    prop_oneof![1 => Just(Who::Principal), 1 => who()]
}

pub(crate) fn create() -> impl Strategy<Value = Op> {
    let kind = prop_oneof![4 => Just(Kind::Group), 1 => Just(Kind::Broadcast), 1 => Just(Kind::Direct)];
    // why: public channels mostly, so that joining (open to public ones only) often succeeds
    let public = prop_oneof![2 => Just(true), 1 => Just(false)];
    (0..USERS as u8, kind, public, 0..16u8).prop_map(|(by, kind, public, members)| Op::Create {
        by,
        kind,
        public,
        members,
    })
}

/// The mix of operations. The weights and the biased choices of who acts give every kind of
/// operation some 15 successes or more in 64 cases, so each success path is exercised in every
/// run (the test asserts one per 32 cases), while refusals stay frequent.
pub(crate) fn op() -> impl Strategy<Value = Op> {
    let user = || 0..USERS as u8;
    let n = || 0..8u8;
    let words = || proptest::collection::vec(0..WORDS.len() as u8, 1..=3);
    let role = prop_oneof![3 => Just(Role::Admin), 2 => Just(Role::Member), 1 => Just(Role::Owner)];
    prop_oneof![
        3 => create(),
        6 => (newcomer(), n()).prop_map(|(by, ch)| Op::Join { by, ch }),
        4 => (who(), n(), newcomer()).prop_map(|(by, ch, user)| Op::Invite { by, ch, user }),
        2 => (subject(), n()).prop_map(|(by, ch)| Op::Leave { by, ch }),
        6 => (who(), n(), subject()).prop_map(|(by, ch, user)| Op::Kick { by, ch, user }),
        5 => (who(), n(), subject(), role).prop_map(|(by, ch, user, role)| Op::SetRole { by, ch, user, role }),
        2 => (who(), n()).prop_map(|(by, ch)| Op::Close { by, ch }),
        2 => (who(), n()).prop_map(|(by, ch)| Op::Reopen { by, ch }),
        2 => (principal_or_who(), n()).prop_map(|(by, ch)| Op::Delete { by, ch }),
        10 => (who(), n(), words()).prop_map(|(by, ch, words)| Op::Send { by, ch, words }),
        3 => (principal_or_who(), n(), words()).prop_map(|(by, chat, words)| Op::Edit { by, chat, words }),
        4 => (principal_or_who(), n()).prop_map(|(by, chat)| Op::Retract { by, chat }),
        3 => (who(), n()).prop_map(|(by, chat)| Op::Remove { by, chat }),
        3 => (who(), n()).prop_map(|(by, chat)| Op::Ack { by, chat }),
        3 => (who(), n()).prop_map(|(by, chat)| Op::GetChat { by, chat }),
        3 => (who(), n(), any::<bool>()).prop_map(|(by, ch, oldest_first)| Op::History { by, ch, oldest_first }),
        2 => (user(), proptest::option::of(n())).prop_map(|(by, ch)| Op::Unread { by, ch }),
        2 => (user(), 0..WORDS.len() as u8, proptest::option::weighted(0.3, n()))
            .prop_map(|(by, word, ch)| Op::Search { by, word, ch }),
        2 => (who(), n(), any::<u8>()).prop_map(|(by, ch, at)| Op::Resume { by, ch, at }),
        2 => (who(), n()).prop_map(|(by, ch)| Op::Members { by, ch }),
        2 => user().prop_map(|by| Op::MyChannels { by }),
    ]
}

/// One case: a channel or two first (so most operations have something to act on), then the
/// rest; as few as one, so that a failure shrinks to the operations it needs.
pub(crate) fn case(steps: usize) -> impl Strategy<Value = Vec<Op>> {
    (proptest::collection::vec(create(), 1..=2), proptest::collection::vec(op(), 1..2 * steps.max(1))).prop_map(
        |(mut ops, rest)| {
            ops.extend(rest);
            ops
        },
    )
}
