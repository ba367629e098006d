//! The channel store on ScyllaDB. Tables (`crates/cql/migrations/0002_channels.cql`):
//! - `channel_members ((channel_id), user_id)`: one partition per channel. The channel record,
//!   its `version` and `pending` (the encoded writes its last change still makes elsewhere) are
//!   STATIC columns; each member is a clustering row.
//! - `channels_by_user ((user_id), channel_id DESC)`: copies of the member rows, by user.
//! - `channel_closed_members ((channel_id), user_id)`: copies of the rows of members who closed
//!   the channel for themselves.
//! - `channel_direct_pairs ((low, high))`: the direct channel of a pair.
//! - `channel_outbox ((shard), seq)`: encoded ChannelEvents; `shard` is always 0.
//!
//! A [`Change`] is applied in four steps, serialized per channel within the process:
//! 1. Read the channel partition's static row; finish its `pending` writes if it holds some
//!    (recovery, below); refuse a stale `expected_version` right away.
//! 2. Claim the change's direct pairs: `INSERT ... IF NOT EXISTS` (LWT).
//! 3. Commit: ONE unlogged batch on the channel partition, conditional on `IF version = ?`
//!    (bound null for a new channel: a missing row's columns are null), holding the record (or
//!    its removal), the next version, the member rows, and `pending`. Refused: the claims made in
//!    step 2 are released (`DELETE ... IF channel_id = ?`) and the answer is `Conflict`.
//! 4. Finish: the pending writes (memberships, closed members, outbox entries) in logged batches
//!    (every one idempotent), then `pending` back to null `IF version = ?` (so a later change's
//!    pending is never erased). The change is durable once step 3 applied: a failure here is
//!    logged and the answer is still success.
//!
//! Recovery: whoever reads a non-null `pending` (the next `apply` or `get_channel` of the
//! channel) applies it again before anything else, so a change whose process stopped between
//! steps 3 and 4 is completed, and a change never commits over an unfinished one.
//!
//! Deleting a channel commits the record's removal (static columns null) with a pending that
//! says `purge`: finishing it pages through the member rows (still there, hidden from readers
//! because the channel's `kind` is null), deletes each member's membership and the closed
//! list, then deletes the partition in a batch conditional on the version (with `version` and
//! `pending` set null, so the id could be created again as after fjall's delete).
//!
//! Direct pairs: a claim whose channel was never created (its process stopped between steps 2
//! and 3) would hold the pair forever. A later claimer finding the pair held by a channel that
//! does not exist, and whose id is older than [`ABANDONED_CLAIM_MS`], fences that id (`version
//! = 0` with no record, `IF version = null`, so the stopped batch can never apply), releases the
//! claim and claims again. A younger claim counts as taken: its creation is in flight.
//!
//! Multi-op changes keep the last operation per member (a batch's statements share one
//! timestamp, so two writes of one row would not apply in order). A change that deletes the
//! channel holds no other operation. Ids are stored as `bigint` (they stay below 2^63).

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use chatmesh_cql::{BatchKind, Cql, CqlError, Statement, Value, id, statement, values};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::{Change, ChannelStore, Op, OutboxEntry, StoreError};
use crate::model::{ChannelRecord, Kind, MemberRecord, Role, Visibility};

/// Stripes of the in-process lock serializing changes to one channel.
const LOCK_STRIPES: u64 = 256;
/// The outbox is one queue: one partition.
const OUTBOX_SHARD: i32 = 0;
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

static GET_CHANNEL: Statement = statement!(
    "channel.get_channel",
    idempotent,
    "SELECT kind, visibility, name, topic, image_url, owner_id, member_count, created_at_ms, updated_at_ms, \
     version, pending FROM channel_members WHERE channel_id = ? LIMIT ?"
);
static GET_MEMBER: Statement = statement!(
    "channel.get_member",
    idempotent,
    "SELECT role, joined_at_ms, invited_by, closed, closed_at_ms, kind FROM channel_members WHERE channel_id = ? \
     AND user_id = ?"
);
/// Closed members read per page.
const CLOSED_PAGE: usize = 500;

static LIST_MEMBERS: Statement = statement!(
    "channel.list_members",
    idempotent,
    "SELECT user_id, role, joined_at_ms, invited_by, closed, closed_at_ms, kind FROM channel_members \
     WHERE channel_id = ? AND user_id >= ? LIMIT ?"
);
static MEMBER_IDS: Statement = statement!(
    "channel.member_ids",
    idempotent,
    "SELECT user_id FROM channel_members WHERE channel_id = ? AND user_id >= ? LIMIT ?"
);
static PUT_CHANNEL: Statement = statement!(
    "channel.put_channel",
    not_idempotent,
    "UPDATE channel_members SET kind = ?, visibility = ?, name = ?, topic = ?, image_url = ?, owner_id = ?, \
     member_count = ?, created_at_ms = ?, updated_at_ms = ?, version = ?, pending = ? WHERE channel_id = ? \
     IF version = ?"
);
static BUMP_VERSION: Statement = statement!(
    "channel.bump_version",
    not_idempotent,
    "UPDATE channel_members SET version = ?, pending = ? WHERE channel_id = ? IF version = ?"
);
static PUT_MEMBER: Statement = statement!(
    "channel.put_member",
    idempotent,
    "INSERT INTO channel_members (channel_id, user_id, role, joined_at_ms, invited_by, closed, closed_at_ms) \
     VALUES (?, ?, ?, ?, ?, ?, ?)"
);
static DELETE_MEMBER: Statement =
    statement!("channel.delete_member", idempotent, "DELETE FROM channel_members WHERE channel_id = ? AND user_id = ?");
static CLEAR_PENDING: Statement = statement!(
    "channel.clear_pending",
    not_idempotent,
    "UPDATE channel_members SET pending = ? WHERE channel_id = ? IF version = ?"
);
static FORGET_CHANNEL: Statement = statement!(
    "channel.forget_channel",
    not_idempotent,
    "UPDATE channel_members SET version = ?, pending = ? WHERE channel_id = ? IF version = ?"
);
static DELETE_CHANNEL: Statement =
    statement!("channel.delete_channel", idempotent, "DELETE FROM channel_members WHERE channel_id = ?");
static FENCE_CHANNEL: Statement = statement!(
    "channel.fence_channel",
    not_idempotent,
    "UPDATE channel_members SET version = ? WHERE channel_id = ? IF version = ?"
);
static PUT_MEMBERSHIP: Statement = statement!(
    "channel.put_membership",
    idempotent,
    "INSERT INTO channels_by_user (user_id, channel_id, role, joined_at_ms, invited_by, closed, closed_at_ms) \
     VALUES (?, ?, ?, ?, ?, ?, ?)"
);
static DELETE_MEMBERSHIP: Statement = statement!(
    "channel.delete_membership",
    idempotent,
    "DELETE FROM channels_by_user WHERE user_id = ? AND channel_id = ?"
);
static LIST_MEMBERSHIPS: Statement = statement!(
    "channel.list_memberships",
    idempotent,
    "SELECT channel_id, role, joined_at_ms, invited_by, closed, closed_at_ms FROM channels_by_user \
     WHERE user_id = ? AND channel_id <= ? LIMIT ?"
);
static PUT_CLOSED: Statement = statement!(
    "channel.put_closed",
    idempotent,
    "INSERT INTO channel_closed_members (channel_id, user_id, role, joined_at_ms, invited_by, closed, closed_at_ms) \
     VALUES (?, ?, ?, ?, ?, ?, ?)"
);
static DELETE_CLOSED: Statement = statement!(
    "channel.delete_closed",
    idempotent,
    "DELETE FROM channel_closed_members WHERE channel_id = ? AND user_id = ?"
);
static DELETE_ALL_CLOSED: Statement =
    statement!("channel.delete_all_closed", idempotent, "DELETE FROM channel_closed_members WHERE channel_id = ?");
static LIST_CLOSED: Statement = statement!(
    "channel.list_closed",
    idempotent,
    "SELECT user_id, role, joined_at_ms, invited_by, closed, closed_at_ms FROM channel_closed_members \
     WHERE channel_id = ? AND user_id > ? LIMIT ?"
);
static FIND_DIRECT: Statement = statement!(
    "channel.find_direct",
    idempotent,
    "SELECT channel_id FROM channel_direct_pairs WHERE low = ? AND high = ?"
);
static CLAIM_DIRECT: Statement = statement!(
    "channel.claim_direct",
    not_idempotent,
    "INSERT INTO channel_direct_pairs (low, high, channel_id) VALUES (?, ?, ?) IF NOT EXISTS"
);
static RELEASE_DIRECT: Statement = statement!(
    "channel.release_direct",
    not_idempotent,
    "DELETE FROM channel_direct_pairs WHERE low = ? AND high = ? IF channel_id = ?"
);
static PUT_OUTBOX: Statement =
    statement!("channel.put_outbox", idempotent, "INSERT INTO channel_outbox (shard, seq, event) VALUES (?, ?, ?)");
static LIST_OUTBOX: Statement = statement!(
    "channel.list_outbox",
    idempotent,
    "SELECT seq, event FROM channel_outbox WHERE shard = ? AND seq >= ? LIMIT ?"
);
static DELETE_OUTBOX: Statement =
    statement!("channel.delete_outbox", idempotent, "DELETE FROM channel_outbox WHERE shard = ? AND seq <= ?");

/// Every statement of the store, prepared when it starts.
pub(crate) static STATEMENTS: &[&Statement] = &[
    &GET_CHANNEL,
    &GET_MEMBER,
    &LIST_MEMBERS,
    &MEMBER_IDS,
    &PUT_CHANNEL,
    &BUMP_VERSION,
    &PUT_MEMBER,
    &DELETE_MEMBER,
    &CLEAR_PENDING,
    &FORGET_CHANNEL,
    &DELETE_CHANNEL,
    &FENCE_CHANNEL,
    &PUT_MEMBERSHIP,
    &DELETE_MEMBERSHIP,
    &LIST_MEMBERSHIPS,
    &PUT_CLOSED,
    &DELETE_CLOSED,
    &DELETE_ALL_CLOSED,
    &LIST_CLOSED,
    &FIND_DIRECT,
    &CLAIM_DIRECT,
    &RELEASE_DIRECT,
    &PUT_OUTBOX,
    &LIST_OUTBOX,
    &DELETE_OUTBOX,
];

type Item = (&'static Statement, Vec<Value>);
/// kind, visibility, name, topic, image_url, owner_id, member_count, created_at_ms,
/// updated_at_ms, version, pending.
type HeadRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);
/// role, joined_at_ms, invited_by, closed, closed_at_ms.
type MemberCols = (String, i64, i64, bool, i64);

fn backend(e: CqlError) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn corrupt(channel_id: u64, what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("channel {channel_id}: {what}"))
}

/// A `LIMIT` bind: at least 1 (callers answer an empty page for 0 themselves).
fn limit_of(limit: usize) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX).max(1)
}

/// The largest id a `bigint` holds.
const MAX_ID: u64 = i64::MAX as u64;

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Group => "group",
        Kind::Direct => "direct",
        Kind::Broadcast => "broadcast",
    }
}

fn kind_of(channel_id: u64, name: &str) -> Result<Kind, StoreError> {
    match name {
        "group" => Ok(Kind::Group),
        "direct" => Ok(Kind::Direct),
        "broadcast" => Ok(Kind::Broadcast),
        other => Err(corrupt(channel_id, format!("unknown kind {other:?}"))),
    }
}

fn visibility_name(visibility: Visibility) -> &'static str {
    match visibility {
        Visibility::Public => "public",
        Visibility::Private => "private",
    }
}

fn visibility_of(channel_id: u64, name: &str) -> Result<Visibility, StoreError> {
    match name {
        "public" => Ok(Visibility::Public),
        "private" => Ok(Visibility::Private),
        other => Err(corrupt(channel_id, format!("unknown visibility {other:?}"))),
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Member => "member",
        Role::Admin => "admin",
        Role::Owner => "owner",
    }
}

fn role_of(channel_id: u64, name: &str) -> Result<Role, StoreError> {
    match name {
        "member" => Ok(Role::Member),
        "admin" => Ok(Role::Admin),
        "owner" => Ok(Role::Owner),
        other => Err(corrupt(channel_id, format!("unknown role {other:?}"))),
    }
}

fn member_of(channel_id: u64, user_id: u64, cols: MemberCols) -> Result<MemberRecord, StoreError> {
    let (role, joined_at_ms, invited_by, closed, closed_at_ms) = cols;
    Ok(MemberRecord {
        channel_id,
        user_id,
        role: role_of(channel_id, &role)?,
        joined_at_ms: id(joined_at_ms),
        invited_by: id(invited_by),
        closed,
        closed_at_ms: id(closed_at_ms),
    })
}

/// The member columns of the three tables holding member rows, in their statements' order.
fn member_values(m: &MemberRecord) -> Vec<Value> {
    values![role_name(m.role), m.joined_at_ms, m.invited_by, m.closed, m.closed_at_ms]
}

/// The record's static columns, in `PUT_CHANNEL`'s order; nulls remove the record.
fn record_values(record: Option<&ChannelRecord>) -> Vec<Value> {
    match record {
        Some(r) => values![
            kind_name(r.kind),
            visibility_name(r.visibility),
            r.name.as_str(),
            r.topic.as_str(),
            r.image_url.as_str(),
            r.owner_id,
            u64::from(r.member_count),
            r.created_at_ms,
            r.updated_at_ms
        ],
        None => vec![Value::Null; 9],
    }
}

/// A write a change makes outside its channel's partition, kept in `pending` until done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Write {
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

/// What a committed change still writes elsewhere; stored as JSON text in the static `pending`
/// (text, not blob: golden files and cqlsh show it readable).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    writes: Vec<Write>,
    /// The change deleted the channel: every member's membership and the closed list go too,
    /// then the partition.
    #[serde(default)]
    purge: bool,
}

impl Pending {
    fn encode(&self, channel_id: u64) -> Result<String, StoreError> {
        serde_json::to_string(self).map_err(|e| corrupt(channel_id, format!("encoding pending writes: {e}")))
    }

    fn decode(channel_id: u64, json: &str) -> Result<Self, StoreError> {
        serde_json::from_str(json).map_err(|e| corrupt(channel_id, format!("decoding pending writes: {e}")))
    }

    fn statements(&self, channel_id: u64) -> Vec<Item> {
        let member_row = |m: &MemberRecord| {
            let mut v = values![m.user_id];
            v.extend(member_values(m));
            v
        };
        self.writes
            .iter()
            .map(|write| -> Item {
                match write {
                    Write::Membership(m) => {
                        let mut v = values![m.user_id, channel_id];
                        v.extend(member_values(m));
                        (&PUT_MEMBERSHIP, v)
                    }
                    Write::NoMembership { user_id } => (&DELETE_MEMBERSHIP, values![*user_id, channel_id]),
                    Write::Closed(m) => {
                        let mut v = values![channel_id];
                        v.extend(member_row(m));
                        (&PUT_CLOSED, v)
                    }
                    Write::NotClosed { user_id } => (&DELETE_CLOSED, values![channel_id, *user_id]),
                    Write::Outbox { seq, event } => (&PUT_OUTBOX, values![OUTBOX_SHARD, *seq, event.as_slice()]),
                }
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

/// The static row of a channel's partition.
#[derive(Debug, Default)]
struct Head {
    /// `None`: never created, deleted (or being deleted), or fenced.
    record: Option<ChannelRecord>,
    version: Option<u64>,
    pending: Option<Pending>,
}

fn head_of(channel_id: u64, row: Option<HeadRow>) -> Result<Head, StoreError> {
    let Some((kind, visibility, name, topic, image_url, owner_id, member_count, created, updated, version, pending)) =
        row
    else {
        return Ok(Head::default());
    };
    let version = version.map(id);
    let pending = pending.map(|json| Pending::decode(channel_id, &json)).transpose()?;
    let record = match kind {
        None => None,
        Some(kind) => {
            let missing = |column: &str| corrupt(channel_id, format!("the record has no {column}"));
            let member_count = member_count.ok_or_else(|| missing("member_count"))?;
            Some(ChannelRecord {
                channel_id,
                kind: kind_of(channel_id, &kind)?,
                visibility: visibility_of(channel_id, &visibility.ok_or_else(|| missing("visibility"))?)?,
                name: name.ok_or_else(|| missing("name"))?,
                topic: topic.ok_or_else(|| missing("topic"))?,
                image_url: image_url.ok_or_else(|| missing("image_url"))?,
                owner_id: id(owner_id.ok_or_else(|| missing("owner_id"))?),
                member_count: u32::try_from(member_count)
                    .map_err(|_| corrupt(channel_id, format!("member_count {member_count}")))?,
                created_at_ms: id(created.ok_or_else(|| missing("created_at_ms"))?),
                updated_at_ms: id(updated.ok_or_else(|| missing("updated_at_ms"))?),
                version: version.ok_or_else(|| missing("version"))?,
            })
        }
    };
    Ok(Head { record, version, pending })
}

/// A change that committed: its version and what it still writes elsewhere.
#[derive(Debug)]
struct Committed {
    version: u64,
    pending: Option<Pending>,
}

#[derive(Clone)]
pub struct ScyllaChannelStore {
    cql: Cql,
    locks: Arc<[Mutex<()>]>,
}

impl std::fmt::Debug for ScyllaChannelStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaChannelStore").field("cql", &self.cql).finish_non_exhaustive()
    }
}

impl ScyllaChannelStore {
    pub fn new(cql: Cql) -> Self {
        let locks = (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect();
        Self { cql, locks }
    }

    /// Prepares every statement (on ScyllaDB: fails fast on a schema mismatch).
    pub async fn prepare(&self) -> Result<(), StoreError> {
        self.cql.prepare(STATEMENTS).await.map_err(backend)
    }

    async fn read_head(&self, channel_id: u64) -> Result<Head, StoreError> {
        let row = self.cql.row::<HeadRow>(&GET_CHANNEL, values![channel_id, 1i32]).await.map_err(backend)?;
        head_of(channel_id, row)
    }

    /// The channel's static row, after finishing the pending writes of its last change.
    async fn settled_head(&self, channel_id: u64) -> Result<Head, StoreError> {
        let mut head = self.read_head(channel_id).await?;
        if let Some(pending) = head.pending.take() {
            let version = head.version.ok_or_else(|| corrupt(channel_id, "pending writes without a version"))?;
            tracing::info!(channel_id, version, "finishing the pending writes of an earlier change");
            self.finish(channel_id, version, &pending).await?;
            if pending.purge {
                return Ok(Head::default());
            }
        }
        Ok(head)
    }

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
    async fn commit(&self, change: Change) -> Result<Committed, StoreError> {
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
        let pending = (delete || !writes.is_empty()).then_some(Pending { writes, purge: delete });
        let blob = pending.as_ref().map(|p| p.encode(channel_id)).transpose()?;

        let mut batch: Vec<Item> = Vec::with_capacity(rows.len() + 1);
        if delete || put_channel.is_some() {
            let mut v = record_values(put_channel.as_ref());
            v.extend(values![next, blob, channel_id, expected_version]);
            batch.push((&PUT_CHANNEL, v));
        } else {
            batch.push((&BUMP_VERSION, values![next, blob, channel_id, expected_version]));
        }
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
        Ok(Committed { version: next, pending })
    }

    /// Step 4: the pending writes of the change that made `version`, then `pending` cleared.
    /// Idempotent: anyone may run it again.
    async fn finish(&self, channel_id: u64, version: u64, pending: &Pending) -> Result<(), StoreError> {
        self.logged(pending.statements(channel_id)).await?;
        if pending.purge {
            let mut from = 0u64;
            loop {
                let page: Vec<(i64,)> =
                    self.cql.rows(&MEMBER_IDS, values![channel_id, from, PURGE_PAGE]).await.map_err(backend)?;
                let Some(last) = page.last().map(|(user,)| id(*user)) else { break };
                self.logged(page.iter().map(|(user,)| (&DELETE_MEMBERSHIP, values![*user, channel_id])).collect())
                    .await?;
                if page.len() < PURGE_PAGE as usize || last >= MAX_ID {
                    break;
                }
                from = last + 1;
            }
            self.cql.execute(&DELETE_ALL_CLOSED, values![channel_id]).await.map_err(backend)?;
            // why: not applied means another reader finished this delete first
            let forget = vec![
                (&FORGET_CHANNEL, values![Value::Null, Value::Null, channel_id, version]),
                (&DELETE_CHANNEL, values![channel_id]),
            ];
            self.cql.batch(BatchKind::Unlogged, forget).await.map_err(backend)?;
        } else {
            // why: not applied means a later change committed (after finishing this one)
            self.cql.lwt(&CLEAR_PENDING, values![Value::Null, channel_id, version]).await.map_err(backend)?;
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
            if owner == channel_id || head.record.is_some() || head.pending.is_some() || age < ABANDONED_CLAIM_MS {
                return Err(StoreError::DirectPairTaken(owner));
            }
            if head.version.is_none() {
                // why: once fenced, the abandoned creation's batch (IF version = null) can never apply
                self.cql.lwt(&FENCE_CHANNEL, values![FENCED, owner, Value::Null]).await.map_err(backend)?;
                let head = self.read_head(owner).await?;
                if head.record.is_some() || head.pending.is_some() {
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

#[async_trait]
impl ChannelStore for ScyllaChannelStore {
    #[tracing::instrument(name = "channel_store.apply", skip_all, fields(db.system = "scylladb"))]
    async fn apply(&self, change: Change) -> Result<(), StoreError> {
        let channel_id = change.channel_id;
        // why: changes to one channel from this process queue here instead of racing their LWTs
        let _serial = self.locks[(channel_id % LOCK_STRIPES) as usize].lock().await;
        let committed = self.commit(change).await?;
        if let Some(pending) = &committed.pending
            && let Err(e) = self.finish(channel_id, committed.version, pending).await
        {
            // why: the change is durable and its pending writes are finished by the next read or
            // change of the channel; an error would tell the caller it did not happen
            let version = committed.version;
            tracing::warn!(channel_id, version, error = %e, "a committed change's other writes wait for recovery");
        }
        Ok(())
    }

    #[tracing::instrument(name = "channel_store.get_channel", skip_all, fields(db.system = "scylladb"))]
    async fn get_channel(&self, channel_id: u64) -> Result<Option<ChannelRecord>, StoreError> {
        Ok(self.settled_head(channel_id).await?.record)
    }

    #[tracing::instrument(name = "channel_store.get_member", skip_all, fields(db.system = "scylladb"))]
    async fn get_member(&self, channel_id: u64, user_id: u64) -> Result<Option<MemberRecord>, StoreError> {
        let row = self
            .cql
            .row::<(String, i64, i64, bool, i64, Option<String>)>(&GET_MEMBER, values![channel_id, user_id])
            .await
            .map_err(backend)?;
        match row {
            // why: no kind: the channel is being deleted; its member rows go last
            Some((role, joined, invited_by, closed, closed_at, Some(_))) => {
                member_of(channel_id, user_id, (role, joined, invited_by, closed, closed_at)).map(Some)
            }
            _ => Ok(None),
        }
    }

    #[tracing::instrument(name = "channel_store.list_members", skip_all, fields(db.system = "scylladb"))]
    async fn list_members(
        &self,
        channel_id: u64,
        after_user: Option<u64>,
        limit: usize,
    ) -> Result<Vec<MemberRecord>, StoreError> {
        let from = after_user.map_or(0, |u| u.saturating_add(1));
        if limit == 0 || from > MAX_ID {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, String, i64, i64, bool, i64, Option<String>)> =
            self.cql.rows(&LIST_MEMBERS, values![channel_id, from, limit_of(limit)]).await.map_err(backend)?;
        // why: no kind: the channel is being deleted; its member rows go last
        if rows.first().is_none_or(|row| row.6.is_none()) {
            return Ok(Vec::new());
        }
        rows.into_iter()
            .map(|(user, role, joined, invited_by, closed, closed_at, _)| {
                member_of(channel_id, id(user), (role, joined, invited_by, closed, closed_at))
            })
            .collect()
    }

    #[tracing::instrument(name = "channel_store.list_memberships", skip_all, fields(db.system = "scylladb"))]
    async fn list_memberships(
        &self,
        user_id: u64,
        before_channel: Option<u64>,
        limit: usize,
    ) -> Result<Vec<MemberRecord>, StoreError> {
        let up_to = match before_channel {
            None => MAX_ID,
            Some(0) => return Ok(Vec::new()),
            Some(before) => (before - 1).min(MAX_ID),
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, String, i64, i64, bool, i64)> =
            self.cql.rows(&LIST_MEMBERSHIPS, values![user_id, up_to, limit_of(limit)]).await.map_err(backend)?;
        rows.into_iter()
            .map(|(channel, role, joined, invited_by, closed, closed_at)| {
                member_of(id(channel), user_id, (role, joined, invited_by, closed, closed_at))
            })
            .collect()
    }

    #[tracing::instrument(name = "channel_store.list_closed_members", skip_all, fields(db.system = "scylladb"))]
    async fn list_closed_members(&self, channel_id: u64) -> Result<Vec<MemberRecord>, StoreError> {
        // why: paged, so a channel with many closed members never needs one unbounded read
        let mut out = Vec::new();
        let mut after = -1i64;
        loop {
            let rows: Vec<(i64, String, i64, i64, bool, i64)> =
                self.cql.rows(&LIST_CLOSED, values![channel_id, after, CLOSED_PAGE as i32]).await.map_err(backend)?;
            let full = rows.len() == CLOSED_PAGE;
            for (user, role, joined, invited_by, closed, closed_at) in rows {
                after = user;
                out.push(member_of(channel_id, id(user), (role, joined, invited_by, closed, closed_at))?);
            }
            if !full {
                return Ok(out);
            }
        }
    }

    #[tracing::instrument(name = "channel_store.find_direct", skip_all, fields(db.system = "scylladb"))]
    async fn find_direct(&self, low: u64, high: u64) -> Result<Option<u64>, StoreError> {
        let row = self.cql.row::<(i64,)>(&FIND_DIRECT, values![low, high]).await.map_err(backend)?;
        Ok(row.map(|(channel,)| id(channel)))
    }

    #[tracing::instrument(name = "channel_store.list_outbox", skip_all, fields(db.system = "scylladb"))]
    async fn list_outbox(&self, after_seq: Option<u64>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let from = after_seq.map_or(0, |seq| seq.saturating_add(1));
        if limit == 0 || from > MAX_ID {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, Vec<u8>)> =
            self.cql.rows(&LIST_OUTBOX, values![OUTBOX_SHARD, from, limit_of(limit)]).await.map_err(backend)?;
        Ok(rows.into_iter().map(|(seq, event)| OutboxEntry { seq: id(seq), event }).collect())
    }

    #[tracing::instrument(name = "channel_store.delete_outbox", skip_all, fields(db.system = "scylladb"))]
    async fn delete_outbox(&self, up_to_seq: u64) -> Result<(), StoreError> {
        self.cql.execute(&DELETE_OUTBOX, values![OUTBOX_SHARD, up_to_seq.min(MAX_ID)]).await.map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        path::PathBuf,
        sync::{Arc, Mutex},
    };

    use chatmesh_cql::{Call, MemoryCql};

    use super::*;
    use crate::store::conformance::{channel, member};

    mod memory {
        use super::*;

        crate::channel_store_suite!(|| ((), ScyllaChannelStore::new(Cql::memory(MemoryCql::migrated()))));
    }

    mod scylla {
        use super::*;

        // skipped with a printed "skipped: CHATMESH_TEST_SCYLLA not set" unless a server is configured
        crate::channel_store_suite!(async |case: &'static str| async move {
            let cql = chatmesh_cql::migrate::test_keyspace(case).await?;
            Some(((), ScyllaChannelStore::new(cql)))
        });
    }

    #[tokio::test]
    async fn every_statement_parses_against_the_migrations() {
        ScyllaChannelStore::new(Cql::memory(MemoryCql::migrated())).prepare().await.unwrap();
    }

    fn create(id: u64, members: &[(u64, Role)], outbox: &[u64]) -> Change {
        let mut ops = vec![Op::PutChannel(channel(id, Kind::Group))];
        ops.extend(members.iter().map(|(user, role)| Op::PutMember(member(id, *user, *role))));
        let outbox = outbox.iter().map(|seq| OutboxEntry { seq: *seq, event: vec![*seq as u8] }).collect();
        Change { channel_id: id, expected_version: None, ops, outbox }
    }

    fn direct(id: u64, low: u64, high: u64) -> Change {
        Change {
            channel_id: id,
            expected_version: None,
            ops: vec![
                Op::ClaimDirectPair { low, high },
                Op::PutChannel(channel(id, Kind::Direct)),
                Op::PutMember(member(id, low, Role::Member)),
                Op::PutMember(member(id, high, Role::Member)),
            ],
            outbox: vec![],
        }
    }

    fn put_member(id: u64, version: u64, record: MemberRecord) -> Change {
        Change { channel_id: id, expected_version: Some(version), ops: vec![Op::PutMember(record)], outbox: vec![] }
    }

    fn closed(id: u64, user: u64, closed: bool) -> MemberRecord {
        MemberRecord { closed, closed_at_ms: if closed { 5 } else { 0 }, ..member(id, user, Role::Member) }
    }

    /// One executor; `store` sets up unrecorded, `recorded()` gives a store whose calls are kept.
    struct Bench {
        cql: Cql,
        store: ScyllaChannelStore,
    }

    impl Bench {
        fn new() -> Self {
            let cql = Cql::memory(MemoryCql::migrated());
            Bench { store: ScyllaChannelStore::new(cql.clone()), cql }
        }

        fn recorded(&self) -> (ScyllaChannelStore, Arc<Mutex<Vec<Call>>>) {
            let (cql, log) = self.cql.recording();
            (ScyllaChannelStore::new(cql), log)
        }
    }

    fn calls(log: &Arc<Mutex<Vec<Call>>>) -> Vec<Call> {
        log.lock().unwrap().clone()
    }

    /// A create, a member join (with an event), a stale change refused, a direct pair claimed.
    async fn golden_apply() -> Vec<Call> {
        let bench = Bench::new();
        let (store, log) = bench.recorded();
        store.apply(create(10, &[(1, Role::Owner), (2, Role::Member)], &[100])).await.unwrap();
        let join = |version| Change {
            channel_id: 10,
            expected_version: Some(version),
            ops: vec![
                Op::PutChannel(ChannelRecord { member_count: 3, updated_at_ms: 2, ..channel(10, Kind::Group) }),
                Op::PutMember(member(10, 3, Role::Member)),
            ],
            outbox: vec![OutboxEntry { seq: 101, event: vec![101] }],
        };
        store.apply(join(1)).await.unwrap();
        assert_eq!(store.apply(join(1)).await, Err(StoreError::Conflict));
        store.apply(direct(20, 1, 2)).await.unwrap();
        calls(&log)
    }

    /// Closing, reopening and leaving: closed rows are written and deleted only as needed.
    async fn golden_apply_members() -> Vec<Call> {
        let bench = Bench::new();
        bench.store.apply(create(10, &[(1, Role::Owner), (2, Role::Member), (3, Role::Member)], &[])).await.unwrap();
        let (store, log) = bench.recorded();
        store.apply(put_member(10, 1, closed(10, 2, true))).await.unwrap();
        store.apply(put_member(10, 2, closed(10, 2, false))).await.unwrap();
        let leave = Change {
            channel_id: 10,
            expected_version: Some(3),
            ops: vec![Op::DeleteMember { user_id: 3 }],
            outbox: vec![],
        };
        store.apply(leave).await.unwrap();
        calls(&log)
    }

    /// Deleting a channel: removal committed with a purge, memberships and closed list
    /// removed, then the partition.
    async fn golden_apply_delete_channel() -> Vec<Call> {
        let bench = Bench::new();
        bench.store.apply(create(10, &[(1, Role::Owner), (2, Role::Member), (3, Role::Member)], &[])).await.unwrap();
        bench.store.apply(put_member(10, 1, closed(10, 2, true))).await.unwrap();
        let (store, log) = bench.recorded();
        let delete = Change {
            channel_id: 10,
            expected_version: Some(2),
            ops: vec![Op::DeleteChannel],
            outbox: vec![OutboxEntry { seq: 102, event: vec![102] }],
        };
        store.apply(delete).await.unwrap();
        assert!(bench.store.get_channel(10).await.unwrap().is_none());
        assert!(bench.store.list_memberships(2, None, 10).await.unwrap().is_empty());
        assert!(bench.store.list_closed_members(10).await.unwrap().is_empty());
        calls(&log)
    }

    /// A pair taken; a pair held by an abandoned claim (fenced, released, claimed again); a
    /// claim released because the channel's batch was refused (the fenced id).
    async fn golden_apply_direct_pair() -> Vec<Call> {
        let bench = Bench::new();
        bench.store.apply(direct(20, 1, 2)).await.unwrap();
        assert!(bench.cql.lwt(&CLAIM_DIRECT, values![3u64, 4u64, 30u64]).await.unwrap(), "an abandoned claim");
        let (store, log) = bench.recorded();
        assert_eq!(store.apply(direct(21, 1, 2)).await, Err(StoreError::DirectPairTaken(20)));
        store.apply(direct(31, 3, 4)).await.unwrap();
        assert_eq!(store.apply(direct(30, 5, 6)).await, Err(StoreError::Conflict), "30 is fenced");
        assert_eq!(bench.store.find_direct(3, 4).await.unwrap(), Some(31));
        assert_eq!(bench.store.find_direct(5, 6).await.unwrap(), None, "released");
        assert!(bench.store.get_channel(30).await.unwrap().is_none());
        calls(&log)
    }

    /// A read that first finishes the pending writes of a change whose process stopped, then a
    /// plain read.
    async fn golden_get_channel() -> Vec<Call> {
        let bench = Bench::new();
        bench.store.apply(create(10, &[(1, Role::Owner)], &[])).await.unwrap();
        let join = Change {
            channel_id: 10,
            expected_version: Some(1),
            ops: vec![Op::PutMember(member(10, 2, Role::Member))],
            outbox: vec![OutboxEntry { seq: 101, event: vec![101] }],
        };
        bench.store.commit(join).await.unwrap();
        let (store, log) = bench.recorded();
        assert_eq!(store.get_channel(10).await.unwrap().unwrap().version, 2);
        assert_eq!(store.get_channel(10).await.unwrap().unwrap().version, 2);
        assert_eq!(bench.store.list_memberships(2, None, 10).await.unwrap().len(), 1, "recovered");
        calls(&log)
    }

    async fn setup_three() -> Bench {
        let bench = Bench::new();
        for id in [10, 20, 30] {
            bench.store.apply(create(id, &[(1, Role::Owner), (2, Role::Member)], &[id + 90])).await.unwrap();
        }
        bench.store.apply(put_member(10, 1, closed(10, 2, true))).await.unwrap();
        bench
    }

    async fn golden_get_member() -> Vec<Call> {
        let bench = setup_three().await;
        let (store, log) = bench.recorded();
        assert!(store.get_member(10, 2).await.unwrap().unwrap().closed);
        assert!(store.get_member(10, 9).await.unwrap().is_none());
        calls(&log)
    }

    async fn golden_list_members() -> Vec<Call> {
        let bench = setup_three().await;
        let (store, log) = bench.recorded();
        assert_eq!(store.list_members(10, None, 1).await.unwrap()[0].user_id, 1);
        assert_eq!(store.list_members(10, Some(1), 10).await.unwrap()[0].user_id, 2);
        calls(&log)
    }

    async fn golden_list_memberships() -> Vec<Call> {
        let bench = setup_three().await;
        let (store, log) = bench.recorded();
        let first: Vec<u64> = store.list_memberships(2, None, 2).await.unwrap().iter().map(|m| m.channel_id).collect();
        assert_eq!(first, vec![30, 20]);
        let rest: Vec<u64> =
            store.list_memberships(2, Some(20), 2).await.unwrap().iter().map(|m| m.channel_id).collect();
        assert_eq!(rest, vec![10]);
        calls(&log)
    }

    async fn golden_list_closed_members() -> Vec<Call> {
        let bench = setup_three().await;
        let (store, log) = bench.recorded();
        assert_eq!(store.list_closed_members(10).await.unwrap(), vec![closed(10, 2, true)]);
        calls(&log)
    }

    async fn golden_find_direct() -> Vec<Call> {
        let bench = Bench::new();
        bench.store.apply(direct(20, 1, 2)).await.unwrap();
        let (store, log) = bench.recorded();
        assert_eq!(store.find_direct(1, 2).await.unwrap(), Some(20));
        calls(&log)
    }

    async fn golden_list_outbox() -> Vec<Call> {
        let bench = setup_three().await;
        let (store, log) = bench.recorded();
        let seqs: Vec<u64> = store.list_outbox(Some(100), 10).await.unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![110, 120]);
        calls(&log)
    }

    async fn golden_delete_outbox() -> Vec<Call> {
        let bench = setup_three().await;
        let (store, log) = bench.recorded();
        store.delete_outbox(110).await.unwrap();
        assert_eq!(bench.store.list_outbox(None, 10).await.unwrap().len(), 1);
        calls(&log)
    }

    /// Every golden scenario, by golden file name.
    async fn golden(name: &str) -> Vec<Call> {
        match name {
            "apply" => golden_apply().await,
            "apply_members" => golden_apply_members().await,
            "apply_delete_channel" => golden_apply_delete_channel().await,
            "apply_direct_pair" => golden_apply_direct_pair().await,
            "get_channel" => golden_get_channel().await,
            "get_member" => golden_get_member().await,
            "list_members" => golden_list_members().await,
            "list_memberships" => golden_list_memberships().await,
            "list_closed_members" => golden_list_closed_members().await,
            "find_direct" => golden_find_direct().await,
            "list_outbox" => golden_list_outbox().await,
            "delete_outbox" => golden_delete_outbox().await,
            other => panic!("no golden scenario {other}"),
        }
    }

    const GOLDEN: &[&str] = &[
        "apply",
        "apply_members",
        "apply_delete_channel",
        "apply_direct_pair",
        "get_channel",
        "get_member",
        "list_members",
        "list_memberships",
        "list_closed_members",
        "find_direct",
        "list_outbox",
        "delete_outbox",
    ];

    fn golden_path(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/store/golden").join(format!("{name}.txt"))
    }

    #[tokio::test]
    async fn golden_files_show_what_each_operation_runs() {
        for name in GOLDEN {
            chatmesh_cql::golden::check(golden_path(name), &golden(name).await);
        }
    }

    #[tokio::test]
    async fn golden_runs_cover_every_statement() {
        let mut all = Vec::new();
        for name in GOLDEN {
            all.extend(golden(name).await);
        }
        chatmesh_cql::golden::assert_covers(STATEMENTS, &all);
    }

    #[tokio::test]
    async fn a_change_committed_by_a_stopped_process_is_finished_by_the_next_change() {
        let bench = Bench::new();
        bench.store.commit(create(10, &[(1, Role::Owner)], &[7])).await.unwrap();
        assert!(bench.store.list_memberships(1, None, 10).await.unwrap().is_empty(), "not finished yet");
        bench.store.apply(put_member(10, 1, member(10, 2, Role::Member))).await.unwrap();
        assert_eq!(bench.store.list_memberships(1, None, 10).await.unwrap().len(), 1);
        assert_eq!(bench.store.list_memberships(2, None, 10).await.unwrap().len(), 1);
        assert_eq!(bench.store.list_outbox(None, 10).await.unwrap().len(), 1);
        assert_eq!(bench.store.read_head(10).await.unwrap().pending, None, "cleared");
    }

    #[tokio::test]
    async fn a_deleted_channel_hides_its_members_until_its_partition_is_gone() {
        let bench = Bench::new();
        bench.store.apply(create(10, &[(1, Role::Owner), (2, Role::Member)], &[])).await.unwrap();
        let delete = Change { channel_id: 10, expected_version: Some(1), ops: vec![Op::DeleteChannel], outbox: vec![] };
        bench.store.commit(delete).await.unwrap();
        assert!(bench.store.get_member(10, 2).await.unwrap().is_none());
        assert!(bench.store.list_members(10, None, 10).await.unwrap().is_empty());
        assert_eq!(bench.store.list_memberships(2, None, 10).await.unwrap().len(), 1, "not purged yet");
        assert!(bench.store.get_channel(10).await.unwrap().is_none());
        assert!(bench.store.list_memberships(2, None, 10).await.unwrap().is_empty(), "purged by the read");
        bench.store.apply(create(10, &[(1, Role::Owner)], &[])).await.unwrap();
        assert_eq!(bench.store.get_channel(10).await.unwrap().unwrap().version, 1, "created again");
    }

    #[tokio::test]
    async fn a_young_claim_without_its_channel_is_taken_not_fenced() {
        let bench = Bench::new();
        let young = chatmesh_platform::ids::IdGenerator::new(1).unwrap().next_id();
        assert!(bench.cql.lwt(&CLAIM_DIRECT, values![1u64, 2u64, young]).await.unwrap());
        assert_eq!(bench.store.apply(direct(21, 1, 2)).await, Err(StoreError::DirectPairTaken(young)));
        assert_eq!(bench.store.read_head(young).await.unwrap().version, None, "not fenced");
    }

    #[tokio::test]
    async fn pending_writes_survive_encoding() {
        let pending = Pending {
            writes: vec![
                Write::Membership(closed(10, 2, true)),
                Write::NoMembership { user_id: 3 },
                Write::Closed(closed(10, 2, true)),
                Write::NotClosed { user_id: 4 },
                Write::Outbox { seq: 9, event: vec![0, 1, 254, 255] },
            ],
            purge: true,
        };
        assert_eq!(Pending::decode(10, &pending.encode(10).unwrap()).unwrap(), pending);
    }
}
