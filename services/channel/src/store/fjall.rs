//! The embedded channel store on fjall: each [`Change`] is one serializable transaction,
//! synced to disk before it returns. Every read is of a snapshot: a plain keyspace read sees a
//! transaction's writes while they are being applied, e.g. a direct pair claimed before its
//! channel's record.
//!
//! Keyspaces (key → value):
//! - `channelid__channel`: channel id (u64 BE) → ChannelRecord (JSON)
//! - `channelid_userid__member`: channel id ++ user id → MemberRecord (JSON)
//! - `userid_channelid__member`: user id ++ channel id → MemberRecord (JSON), the same record
//! - `channelid_userid__closed`: members who closed the channel for themselves → ()
//! - `low_high__channelid`: the two user ids of a direct channel → its channel id
//! - `seq__outbox`: outbox sequence (u64 BE) → encoded ChannelEvent
//! - `meta`: `format_version` → "1"

use std::{path::Path, sync::Arc};

use async_trait::async_trait;
use fjall::{KeyspaceCreateOptions, PersistMode, Readable, SingleWriterTxDatabase, SingleWriterTxKeyspace};
use serde::{Serialize, de::DeserializeOwned};

use super::{Change, ChannelStore, Op, OutboxEntry, StoreError};
use crate::model::{ChannelRecord, MemberRecord};

const FORMAT_VERSION: &str = "1";

#[derive(Clone)]
pub struct FjallChannelStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: SingleWriterTxDatabase,
    channels: SingleWriterTxKeyspace,
    members: SingleWriterTxKeyspace,
    memberships: SingleWriterTxKeyspace,
    closed: SingleWriterTxKeyspace,
    direct_pairs: SingleWriterTxKeyspace,
    outbox: SingleWriterTxKeyspace,
}

impl std::fmt::Debug for FjallChannelStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallChannelStore").finish_non_exhaustive()
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(backend)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(backend)
}

fn pair_key(a: u64, b: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&a.to_be_bytes());
    key[8..].copy_from_slice(&b.to_be_bytes());
    key
}

fn tail_id(key: &[u8]) -> Result<u64, StoreError> {
    key.get(8..16).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).ok_or_else(|| backend("corrupt key"))
}

impl FjallChannelStore {
    /// Opens (or creates) the store in `dir`, refusing a store of another format version.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db =
            chatmesh_platform::embedded::open_versioned(dir, "channel", FORMAT_VERSION).map_err(StoreError::Backend)?;
        let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).map_err(backend);
        let inner = Inner {
            channels: ks("channelid__channel")?,
            members: ks("channelid_userid__member")?,
            memberships: ks("userid_channelid__member")?,
            closed: ks("channelid_userid__closed")?,
            direct_pairs: ks("low_high__channelid")?,
            outbox: ks("seq__outbox")?,
            db,
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// A store in a fresh temporary folder (tests).
    #[cfg(test)]
    pub fn temp() -> (tempfile::TempDir, Self) {
        let dir = tempfile::tempdir().expect("temporary folder");
        let store = Self::open(dir.path()).expect("temporary channel store opens");
        (dir, store)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner)).await.map_err(backend)?
    }
}

impl Inner {
    fn apply(&self, change: Change) -> Result<(), StoreError> {
        let id = change.channel_id.to_be_bytes();
        let mut tx = self.db.write_tx().durability(Some(PersistMode::SyncAll));
        let current: Option<ChannelRecord> =
            tx.get(&self.channels, id).map_err(backend)?.map(|v| decode(&v)).transpose()?;
        if current.as_ref().map(|c| c.version) != change.expected_version {
            return Err(StoreError::Conflict);
        }
        let next_version = change.expected_version.unwrap_or(0) + 1;
        let mut channel = current;
        let mut deleted = false;
        for op in change.ops {
            match op {
                Op::PutChannel(record) => channel = Some(record),
                Op::DeleteChannel => {
                    let mut keys = Vec::new();
                    for guard in tx.prefix(&self.members, id) {
                        keys.push(guard.key().map_err(backend)?);
                    }
                    for key in keys {
                        let user = tail_id(&key)?;
                        tx.remove(&self.closed, key.clone());
                        tx.remove(&self.members, key);
                        tx.remove(&self.memberships, pair_key(user, change.channel_id));
                    }
                    tx.remove(&self.channels, id);
                    deleted = true;
                }
                Op::PutMember(member) => {
                    let bytes = encode(&member)?;
                    let key = pair_key(member.channel_id, member.user_id);
                    if member.closed {
                        tx.insert(&self.closed, key, b"");
                    } else {
                        tx.remove(&self.closed, key);
                    }
                    tx.insert(&self.members, pair_key(member.channel_id, member.user_id), bytes.clone());
                    tx.insert(&self.memberships, pair_key(member.user_id, member.channel_id), bytes);
                }
                Op::DeleteMember { user_id } => {
                    tx.remove(&self.closed, pair_key(change.channel_id, user_id));
                    tx.remove(&self.members, pair_key(change.channel_id, user_id));
                    tx.remove(&self.memberships, pair_key(user_id, change.channel_id));
                }
                Op::ClaimDirectPair { low, high } => {
                    if let Some(existing) = tx.get(&self.direct_pairs, pair_key(low, high)).map_err(backend)? {
                        let existing = existing.as_ref().try_into().map(u64::from_be_bytes).map_err(backend)?;
                        return Err(StoreError::DirectPairTaken(existing));
                    }
                    tx.insert(&self.direct_pairs, pair_key(low, high), id);
                }
            }
        }
        if !deleted {
            let mut channel = channel.ok_or_else(|| backend("a new channel needs its record"))?;
            channel.version = next_version;
            tx.insert(&self.channels, id, encode(&channel)?);
        }
        for entry in change.outbox {
            tx.insert(&self.outbox, entry.seq.to_be_bytes(), entry.event);
        }
        tx.commit().map_err(backend)
    }
}

#[async_trait]
impl ChannelStore for FjallChannelStore {
    #[tracing::instrument(name = "channel_store.apply", skip_all, fields(db.system = "fjall"))]
    async fn apply(&self, change: Change) -> Result<(), StoreError> {
        self.blocking(move |s| s.apply(change)).await
    }

    #[tracing::instrument(name = "channel_store.get_channel", skip_all, fields(db.system = "fjall"))]
    async fn get_channel(&self, channel_id: u64) -> Result<Option<ChannelRecord>, StoreError> {
        self.blocking(move |s| {
            s.db.read_tx().get(&s.channels, channel_id.to_be_bytes()).map_err(backend)?.map(|v| decode(&v)).transpose()
        })
        .await
    }

    #[tracing::instrument(name = "channel_store.get_member", skip_all, fields(db.system = "fjall"))]
    async fn get_member(&self, channel_id: u64, user_id: u64) -> Result<Option<MemberRecord>, StoreError> {
        self.blocking(move |s| {
            s.db.read_tx()
                .get(&s.members, pair_key(channel_id, user_id))
                .map_err(backend)?
                .map(|v| decode(&v))
                .transpose()
        })
        .await
    }

    #[tracing::instrument(name = "channel_store.list_members", skip_all, fields(db.system = "fjall"))]
    async fn list_members(
        &self,
        channel_id: u64,
        after_user: Option<u64>,
        limit: usize,
    ) -> Result<Vec<MemberRecord>, StoreError> {
        self.blocking(move |s| {
            let start = pair_key(channel_id, after_user.map_or(0, |u| u.saturating_add(1)));
            let end = pair_key(channel_id, u64::MAX);
            let mut out = Vec::new();
            for guard in s.db.read_tx().range(&s.members, start..=end).take(limit) {
                out.push(decode(&guard.value().map_err(backend)?)?);
            }
            Ok(out)
        })
        .await
    }

    #[tracing::instrument(name = "channel_store.list_memberships", skip_all, fields(db.system = "fjall"))]
    async fn list_memberships(
        &self,
        user_id: u64,
        before_channel: Option<u64>,
        limit: usize,
    ) -> Result<Vec<MemberRecord>, StoreError> {
        self.blocking(move |s| {
            let start = pair_key(user_id, 0);
            let end = pair_key(user_id, before_channel.unwrap_or(u64::MAX));
            let mut out = Vec::new();
            for guard in s.db.read_tx().range(&s.memberships, start..end).rev().take(limit) {
                out.push(decode(&guard.value().map_err(backend)?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn list_closed_members(&self, channel_id: u64) -> Result<Vec<MemberRecord>, StoreError> {
        self.blocking(move |s| {
            let snapshot = s.db.read_tx();
            let mut out = Vec::new();
            for guard in snapshot.prefix(&s.closed, channel_id.to_be_bytes()) {
                let key = guard.key().map_err(backend)?;
                if let Some(bytes) = snapshot.get(&s.members, &key).map_err(backend)? {
                    out.push(decode(&bytes)?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn find_direct(&self, low: u64, high: u64) -> Result<Option<u64>, StoreError> {
        self.blocking(move |s| {
            s.db.read_tx()
                .get(&s.direct_pairs, pair_key(low, high))
                .map_err(backend)?
                .map(|v| v.as_ref().try_into().map(u64::from_be_bytes).map_err(backend))
                .transpose()
        })
        .await
    }

    async fn list_outbox(&self, after_seq: Option<u64>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.blocking(move |s| {
            let start = after_seq.map_or(0, |seq| seq.saturating_add(1)).to_be_bytes();
            let mut out = Vec::new();
            for guard in s.db.read_tx().range(&s.outbox, start..).take(limit) {
                let (key, value) = guard.into_inner().map_err(backend)?;
                let seq = key.as_ref().try_into().map(u64::from_be_bytes).map_err(backend)?;
                out.push(OutboxEntry { seq, event: value.to_vec() });
            }
            Ok(out)
        })
        .await
    }

    async fn delete_outbox(&self, seqs: &[u64]) -> Result<(), StoreError> {
        let seqs = seqs.to_vec();
        self.blocking(move |s| {
            let mut tx = s.db.write_tx().durability(Some(PersistMode::SyncAll));
            for seq in seqs {
                tx.remove(&s.outbox, seq.to_be_bytes());
            }
            tx.commit().map_err(backend)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::FjallChannelStore;

    crate::channel_store_suite!(FjallChannelStore::temp);
}
