//! Applying a [`Change`]: the compare-and-set batch on the channel's partition, the direct-pair
//! claims, and the pending writes to other partitions (see the module docs of `scylla`).

use std::collections::BTreeMap;

use chatmesh_cql::{BatchKind, Value, id, values};
use serde::{Deserialize, Serialize};

use super::{
    ScyllaChannelStore,
    rows::{HEAD_ROW, Item, MAX_ID, backend, corrupt, member_values, record_values},
    statements::*,
};
use crate::{
    model::MemberRecord,
    store::{Change, ChannelStore, Op, StoreError},
};

/// Statements per logged batch of pending writes (keeps batches far below the size limits).
const WRITES_PER_BATCH: usize = 64;
/// Member rows read per page when a deleted channel's memberships are removed.
const PURGE_PAGE: i32 = 200;
const CLAIM_ATTEMPTS: usize = 4;
/// A pair claimed by a channel that does not exist, with an id older than this, was abandoned
/// by a creator that stopped before its batch (creations take well under a request timeout).
pub const ABANDONED_CLAIM_MS: u64 = 60_000;
/// `version` of an id fenced off because its creation was abandoned.
const FENCED: i64 = 0;

/// A write a change makes outside its channel's partition, kept in `pending` until done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Write {
    /// The member's row in `channels_by_user`.
    Membership(MemberRecord),
    NoMembership {
        user_id: u64,
    },
    /// The member's row in `channel_closed_members`.
    Closed(MemberRecord),
    /// Only for a member who was closed (so joins write no tombstones).
    NotClosed {
        user_id: u64,
    },
    Outbox {
        seq: u64,
        #[serde(with = "hex")]
        event: Vec<u8>,
    },
}

/// What a committed change still writes elsewhere, and when it committed; stored as JSON text in
/// the static `pending` (text, not blob: golden files and cqlsh show it readable). Once its
/// writes are done it stays, with none, so the next change knows when this one committed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Pending {
    pub(super) writes: Vec<Write>,
    /// The change deleted the channel: every member's membership and the closed list go too,
    /// then the partition.
    #[serde(default)]
    pub(super) purge: bool,
    /// When the change committed (µs: the clock of the process that committed it, but above the
    /// previous change's, see `commit`): the write timestamp of every one of these writes,
    /// whoever runs them and however late, so they always lose to the next change's. `None`
    /// only in pendings written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) at_us: Option<i64>,
}

impl Pending {
    /// A change whose writes are all done: only when it committed.
    pub(super) fn finished(at_us: i64) -> Self {
        Pending { writes: Vec::new(), purge: false, at_us: Some(at_us) }
    }

    /// Whether writes remain to be done.
    pub(super) fn owes_writes(&self) -> bool {
        self.purge || !self.writes.is_empty()
    }

    pub(super) fn encode(&self, channel_id: u64) -> Result<String, StoreError> {
        serde_json::to_string(self).map_err(|e| corrupt(channel_id, format!("encoding pending writes: {e}")))
    }

    pub(super) fn decode(channel_id: u64, json: &str) -> Result<Self, StoreError> {
        serde_json::from_str(json).map_err(|e| corrupt(channel_id, format!("decoding pending writes: {e}")))
    }

    /// The writes to other partitions than the outbox queue's, each stamped `at_us`.
    fn statements(&self, channel_id: u64, at_us: i64) -> Vec<Item> {
        let member_row = |m: &MemberRecord| {
            let mut v = values![m.user_id];
            v.extend(member_values(m));
            v.push(at_us.into());
            v
        };
        self.writes
            .iter()
            .filter_map(|write| -> Option<Item> {
                Some(match write {
                    Write::Membership(m) => {
                        let mut v = values![m.user_id, channel_id];
                        v.extend(member_values(m));
                        v.push(at_us.into());
                        (&PUT_MEMBERSHIP, v)
                    }
                    Write::NoMembership { user_id } => (&DELETE_MEMBERSHIP, values![at_us, *user_id, channel_id]),
                    Write::Closed(m) => {
                        let mut v = values![channel_id];
                        v.extend(member_row(m));
                        (&PUT_CLOSED, v)
                    }
                    Write::NotClosed { user_id } => (&DELETE_CLOSED, values![at_us, channel_id, *user_id]),
                    Write::Outbox { .. } => return None,
                })
            })
            .collect()
    }

    /// The outbox entries: seq and encoded event.
    fn events(&self) -> Vec<(u64, &[u8])> {
        self.writes
            .iter()
            .filter_map(|write| match write {
                Write::Outbox { seq, event } => Some((*seq, event.as_slice())),
                _ => None,
            })
            .collect()
    }
}

/// Event bytes as a hex string inside the pending JSON (a JSON array of numbers is ~3.5x).
mod hex {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() % 2 != 0 {
            return Err(D::Error::custom("hex of odd length"));
        }
        (0..text.len())
            .step_by(2)
            .map(|at| {
                let pair = text.get(at..at + 2).ok_or_else(|| D::Error::custom("not hex"))?;
                u8::from_str_radix(pair, 16).map_err(D::Error::custom)
            })
            .collect()
    }
}

/// A change that committed: its version and what it still writes elsewhere.
#[derive(Debug)]
pub(super) struct Committed {
    pub(super) version: u64,
    pub(super) pending: Option<Pending>,
}

impl ScyllaChannelStore {
    /// Whether a closed member's row exists (read before a change touches the member, so a
    /// reopening or leaving member's closed row is deleted and nobody else's is).
    async fn was_closed(&self, channel_id: u64, user_id: u64) -> Result<bool, StoreError> {
        let row = self
            .cql
            .row::<(String, i64, i64, bool, i64, Option<String>)>(&GET_MEMBER, values![channel_id, user_id])
            .await
            .map_err(backend)?;
        Ok(row.is_some_and(|(_, _, _, closed, _, _)| closed))
    }

    /// Steps 1 to 3 of a change (see the module docs).
    pub(super) async fn commit(&self, change: Change) -> Result<Committed, StoreError> {
        let Change { channel_id, expected_version, ops, outbox } = change;
        let head = self.settled_head(channel_id).await?;
        if head.record.as_ref().map(|r| r.version) != expected_version {
            return Err(StoreError::Conflict);
        }
        let next = expected_version.unwrap_or(0) + 1;
        let mut put_channel = None;
        let mut delete = false;
        // why: the last operation per member wins, as it would applied in order
        let mut members: BTreeMap<u64, Option<MemberRecord>> = BTreeMap::new();
        let mut claims = Vec::new();
        for op in ops {
            match op {
                Op::PutChannel(record) => put_channel = Some(record),
                Op::DeleteChannel => delete = true,
                Op::PutMember(member) => {
                    if member.channel_id != channel_id {
                        return Err(corrupt(
                            channel_id,
                            format!("a change puts a member of channel {}", member.channel_id),
                        ));
                    }
                    members.insert(member.user_id, Some(member));
                }
                Op::DeleteMember { user_id } => {
                    members.insert(user_id, None);
                }
                Op::ClaimDirectPair { low, high } => claims.push((low, high)),
            }
        }
        if delete && (put_channel.is_some() || !members.is_empty() || !claims.is_empty()) {
            return Err(corrupt(channel_id, "a change deleting the channel holds no other operation"));
        }
        if !delete && head.record.is_none() && put_channel.is_none() {
            return Err(corrupt(channel_id, "a new channel needs its record"));
        }

        let mut writes = Vec::new();
        let mut rows: Vec<Item> = Vec::new();
        for (user_id, member) in members {
            let was_closed = head.record.is_some() && self.was_closed(channel_id, user_id).await?;
            match member {
                Some(m) => {
                    let mut v = values![channel_id, user_id];
                    v.extend(member_values(&m));
                    rows.push((&PUT_MEMBER, v));
                    if m.closed {
                        writes.push(Write::Closed(m.clone()));
                    } else if was_closed {
                        writes.push(Write::NotClosed { user_id });
                    }
                    writes.push(Write::Membership(m));
                }
                None => {
                    rows.push((&DELETE_MEMBER, values![channel_id, user_id]));
                    if was_closed {
                        writes.push(Write::NotClosed { user_id });
                    }
                    writes.push(Write::NoMembership { user_id });
                }
            }
        }
        writes.extend(outbox.into_iter().map(|e| Write::Outbox { seq: e.seq, event: e.event }));
        // why: above the previous change's commit even if that process's clock ran ahead of
        // this one's, so this change's writes elsewhere win over that one's (the batch below
        // applies only on the version read with it)
        let stamp = self.clock.stamp();
        let at_us = Some(head.last_at_us().map_or(stamp, |last| stamp.max(last.saturating_add(1))));
        // why: written even with no writes to make, so the next change learns when this committed
        let pending = Pending { writes, purge: delete, at_us };
        let blob = pending.encode(channel_id)?;

        let mut batch: Vec<Item> = Vec::with_capacity(rows.len() + 2);
        if delete || put_channel.is_some() {
            let mut v = record_values(put_channel.as_ref());
            v.extend(values![next, blob, channel_id, expected_version]);
            batch.push((&PUT_CHANNEL, v));
        } else {
            batch.push((&BUMP_VERSION, values![next, blob, channel_id, expected_version]));
        }
        // why: every change writes it, so channels created before it existed gain it too
        batch.push((&PUT_HEAD, values![channel_id, HEAD_ROW]));
        batch.extend(rows);

        let mut claimed = Vec::new();
        for (low, high) in claims {
            if let Err(e) = self.claim_pair(low, high, channel_id, expected_version.is_none()).await {
                self.release_pairs(channel_id, &claimed).await;
                return Err(e);
            }
            claimed.push((low, high));
        }
        // why: an error here leaves the outcome unknown, so claims stay; a claim whose channel
        // never appears is taken over once abandoned (see claim_pair)
        let applied = self.cql.batch(BatchKind::Unlogged, batch).await.map_err(backend)?;
        if !applied {
            self.release_pairs(channel_id, &claimed).await;
            return Err(StoreError::Conflict);
        }
        Ok(Committed { version: next, pending: pending.owes_writes().then_some(pending) })
    }

    /// Step 4: the pending writes of the change that made `version` (the outbox entries last),
    /// then `pending` left with only its commit time. Idempotent: anyone may run it again.
    pub(super) async fn finish(&self, channel_id: u64, version: u64, pending: &Pending) -> Result<(), StoreError> {
        let at_us = pending.at_us.unwrap_or_else(|| self.clock.stamp());
        self.logged(pending.statements(channel_id, at_us)).await?;
        self.enqueue(&pending.events(), at_us).await?;
        if pending.purge {
            let mut from = 0u64;
            loop {
                let page: Vec<(i64,)> =
                    self.cql.rows(&MEMBER_IDS, values![channel_id, from, PURGE_PAGE]).await.map_err(backend)?;
                let Some(last) = page.last().map(|(user,)| id(*user)) else { break };
                let deletes =
                    page.iter().map(|(user,)| -> Item { (&DELETE_MEMBERSHIP, values![at_us, *user, channel_id]) });
                self.logged(deletes.collect()).await?;
                if page.len() < PURGE_PAGE as usize || last >= MAX_ID {
                    break;
                }
                from = last + 1;
            }
            self.cql.execute(&DELETE_ALL_CLOSED, values![at_us, channel_id]).await.map_err(backend)?;
            // why: not applied means another reader finished this delete first
            let forget = vec![
                (&FORGET_CHANNEL, values![Value::Null, Value::Null, channel_id, version]),
                (&DELETE_CHANNEL, values![channel_id]),
            ];
            self.cql.batch(BatchKind::Unlogged, forget).await.map_err(backend)?;
        } else {
            // why: not applied means a later change committed (after finishing this one)
            let done = Pending::finished(at_us).encode(channel_id)?;
            self.cql.lwt(&CLEAR_PENDING, values![done, channel_id, version]).await.map_err(backend)?;
        }
        Ok(())
    }

    /// Runs idempotent writes to several partitions in logged batches of bounded size.
    async fn logged(&self, items: Vec<Item>) -> Result<(), StoreError> {
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let chunk: Vec<Item> = items.by_ref().take(WRITES_PER_BATCH).collect();
            self.cql.batch(BatchKind::Logged, chunk).await.map_err(backend)?;
        }
        Ok(())
    }

    /// Claims the pair for `channel_id`, taking over a claim abandoned by a stopped creator.
    async fn claim_pair(&self, low: u64, high: u64, channel_id: u64, new_channel: bool) -> Result<(), StoreError> {
        for _ in 0..CLAIM_ATTEMPTS {
            if self.cql.lwt(&CLAIM_DIRECT, values![low, high, channel_id]).await.map_err(backend)? {
                return Ok(());
            }
            // why: None means the claim was released since; claim again
            let Some(owner) = self.find_direct(low, high).await? else { continue };
            if owner == channel_id && new_channel {
                // an earlier attempt at this very creation claimed it and stopped before its batch
                return Ok(());
            }
            let head = self.read_head(owner).await?;
            let age = chatmesh_platform::ids::now_ms().saturating_sub(chatmesh_platform::ids::unix_ms_of(owner));
            if owner == channel_id || head.record.is_some() || head.unfinished().is_some() || age < ABANDONED_CLAIM_MS {
                return Err(StoreError::DirectPairTaken(owner));
            }
            if head.version.is_none() {
                // why: once fenced, the abandoned creation's batch (IF version = null) can never apply
                self.cql.lwt(&FENCE_CHANNEL, values![FENCED, owner, Value::Null]).await.map_err(backend)?;
                let head = self.read_head(owner).await?;
                if head.record.is_some() || head.unfinished().is_some() {
                    return Err(StoreError::DirectPairTaken(owner));
                }
            }
            tracing::warn!(
                low,
                high,
                owner,
                channel_id,
                "taking over a direct pair claimed by a channel never created"
            );
            self.cql.lwt(&RELEASE_DIRECT, values![low, high, owner]).await.map_err(backend)?;
        }
        Err(StoreError::Conflict)
    }

    /// Releases pairs this change claimed (its batch was refused, or a later claim failed).
    async fn release_pairs(&self, channel_id: u64, pairs: &[(u64, u64)]) {
        for &(low, high) in pairs {
            if let Err(e) = self.cql.lwt(&RELEASE_DIRECT, values![low, high, channel_id]).await {
                // why: left claimed, it is taken over once abandoned (see claim_pair)
                tracing::warn!(low, high, channel_id, error = %e, "could not release a direct pair claim");
            }
        }
    }
}
