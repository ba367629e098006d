//! The channel store: channels, members (by channel and by user), direct-pair uniqueness and
//! the channel service's outbox, in domain types.
//!
//! Every change is one [`Change`]: a set of operations on one channel, applied atomically
//! together with its outbox entries, and only if the channel's version is still the one the
//! caller read (compare-and-set). The service decides rules on what it read; the store makes
//! sure nothing changed in between. Partitions stay bounded: members by channel, memberships
//! by user, each paginated.
//!
//! Backends: [`FjallChannelStore`] (embedded, one process) and [`ScyllaChannelStore`]
//! (ScyllaDB: each change one conditional batch on the channel's partition, its writes to other
//! partitions recorded in that batch and finished right after).

#[cfg(test)]
#[doc(hidden)]
pub mod conformance;
mod fjall;
mod scylla;

use async_trait::async_trait;

pub use self::{fjall::FjallChannelStore, scylla::ScyllaChannelStore};
use crate::model::{ChannelRecord, MemberRecord};

/// One operation of a [`Change`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Writes the channel record (its `version` is set by the store).
    PutChannel(ChannelRecord),
    /// Removes the channel with every membership.
    DeleteChannel,
    PutMember(MemberRecord),
    DeleteMember {
        user_id: u64,
    },
    /// Claims the direct channel of a pair (`low < high`); fails if the pair has one.
    ClaimDirectPair {
        low: u64,
        high: u64,
    },
}

/// An entry of the outbox: an encoded `chatmesh.chat.v1.ChannelEvent`, in `seq` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub seq: u64,
    pub event: Vec<u8>,
}

/// An atomic change to one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub channel_id: u64,
    /// `None`: the channel must not exist yet. `Some(v)`: its version must still be `v`.
    pub expected_version: Option<u64>,
    pub ops: Vec<Op>,
    pub outbox: Vec<OutboxEntry>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The channel changed (or appeared, or vanished) since it was read; read and decide again.
    #[error("the channel changed concurrently")]
    Conflict,
    /// The pair already has a direct channel.
    #[error("direct channel {0} already exists for this pair")]
    DirectPairTaken(u64),
    #[error("{0}")]
    Backend(String),
}

#[async_trait]
pub trait ChannelStore: Send + Sync + 'static {
    /// Applies `change` atomically (records, outbox, version bump), synced before returning.
    async fn apply(&self, change: Change) -> Result<(), StoreError>;
    async fn get_channel(&self, channel_id: u64) -> Result<Option<ChannelRecord>, StoreError>;
    async fn get_member(&self, channel_id: u64, user_id: u64) -> Result<Option<MemberRecord>, StoreError>;
    /// Members of a channel by user id, after `after_user`.
    async fn list_members(
        &self,
        channel_id: u64,
        after_user: Option<u64>,
        limit: usize,
    ) -> Result<Vec<MemberRecord>, StoreError>;
    /// A user's memberships, newest channel first, before `before_channel`.
    async fn list_memberships(
        &self,
        user_id: u64,
        before_channel: Option<u64>,
        limit: usize,
    ) -> Result<Vec<MemberRecord>, StoreError>;
    /// Members who closed the channel for themselves.
    async fn list_closed_members(&self, channel_id: u64) -> Result<Vec<MemberRecord>, StoreError>;
    /// The direct channel of a pair (`low < high`), if any.
    async fn find_direct(&self, low: u64, high: u64) -> Result<Option<u64>, StoreError>;
    /// Outbox entries after `after_seq`, oldest first.
    async fn list_outbox(&self, after_seq: Option<u64>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;
    /// Forgets the outbox entries `seqs` (once delivered). Only those: an entry whose `seq` is
    /// lower may have been written after they were listed (seqs are minted before a change
    /// applies), and is still to be delivered.
    async fn delete_outbox(&self, seqs: &[u64]) -> Result<(), StoreError>;
}
