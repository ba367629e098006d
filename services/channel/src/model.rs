//! The channel service's domain records, as stored.

use chatmesh_api::channel::v1 as pb;
use chatmesh_wire::channel as wire;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Kind {
    Group,
    Direct,
    Broadcast,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Visibility {
    Public,
    Private,
}

/// Ordered: Member < Admin < Owner.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member,
    Admin,
    Owner,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChannelRecord {
    pub channel_id: u64,
    pub kind: Kind,
    pub visibility: Visibility,
    pub name: String,
    pub topic: String,
    pub image_url: String,
    /// 0 for direct channels.
    pub owner_id: u64,
    pub member_count: u32,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Grows with every change to the channel or its members: the store's compare-and-set
    /// token and the membership epoch other services cache answers by.
    pub version: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberRecord {
    pub channel_id: u64,
    pub user_id: u64,
    pub role: Role,
    pub joined_at_ms: u64,
    /// 0 when the member joined by themselves.
    pub invited_by: u64,
    pub closed: bool,
    /// When the member closed the channel (0 when open): only a chat sent after it reopens it.
    #[serde(default)]
    pub closed_at_ms: u64,
}

impl From<wire::GroupKind> for Kind {
    fn from(kind: wire::GroupKind) -> Self {
        match kind {
            wire::GroupKind::Group => Kind::Group,
            wire::GroupKind::Broadcast => Kind::Broadcast,
        }
    }
}

impl From<wire::Visibility> for Visibility {
    fn from(visibility: wire::Visibility) -> Self {
        match visibility {
            wire::Visibility::Public => Visibility::Public,
            wire::Visibility::Private => Visibility::Private,
        }
    }
}

impl From<wire::Role> for Role {
    fn from(role: wire::Role) -> Self {
        match role {
            wire::Role::Member => Role::Member,
            wire::Role::Admin => Role::Admin,
            wire::Role::Owner => Role::Owner,
        }
    }
}

impl Kind {
    pub fn to_pb(self) -> pb::ChannelKind {
        match self {
            Kind::Group => pb::ChannelKind::Group,
            Kind::Direct => pb::ChannelKind::Direct,
            Kind::Broadcast => pb::ChannelKind::Broadcast,
        }
    }
}

impl Visibility {
    pub fn to_pb(self) -> pb::ChannelVisibility {
        match self {
            Visibility::Public => pb::ChannelVisibility::Public,
            Visibility::Private => pb::ChannelVisibility::Private,
        }
    }
}

impl Role {
    pub fn to_pb(self) -> pb::MemberRole {
        match self {
            Role::Member => pb::MemberRole::Member,
            Role::Admin => pb::MemberRole::Admin,
            Role::Owner => pb::MemberRole::Owner,
        }
    }
}

fn timestamp(ms: u64) -> Option<prost_types::Timestamp> {
    Some(chatmesh_platform::ids::timestamp(ms))
}

impl ChannelRecord {
    /// Everything, for members.
    pub fn to_pb(&self) -> pb::Channel {
        pb::Channel {
            channel_id: self.channel_id.to_string(),
            kind: self.kind.to_pb() as i32,
            visibility: self.visibility.to_pb() as i32,
            name: self.name.clone(),
            topic: self.topic.clone(),
            image_url: self.image_url.clone(),
            owner_id: if self.owner_id == 0 { String::new() } else { self.owner_id.to_string() },
            member_count: self.member_count as i32,
            created_at: timestamp(self.created_at_ms),
            updated_at: timestamp(self.updated_at_ms),
        }
    }

    /// What a non-member sees of a public channel: name, topic, image, member count.
    pub fn to_preview_pb(&self) -> pb::Channel {
        pb::Channel { owner_id: String::new(), created_at: None, updated_at: None, ..self.to_pb() }
    }
}

impl MemberRecord {
    pub fn to_pb(&self) -> pb::Member {
        pb::Member {
            channel_id: self.channel_id.to_string(),
            user_id: self.user_id.to_string(),
            role: self.role.to_pb() as i32,
            joined_at: timestamp(self.joined_at_ms),
            invited_by: if self.invited_by == 0 { String::new() } else { self.invited_by.to_string() },
            closed: self.closed,
        }
    }
}
