//! How channel and member records map to CQL columns and back.

use chatmesh_cql::{CqlError, Statement, Value, id, values};

use super::changes::Pending;
use crate::{
    model::{ChannelRecord, Kind, MemberRecord, Role, Visibility},
    store::StoreError,
};

/// The one partition of `channel_outbox`, the outbox of versions before the bucketed queue:
/// only drained now.
pub(super) const LEGACY_OUTBOX_SHARD: i32 = 0;
/// The clustering key of the channel partition's head row: below every user id, so a read from
/// the partition's start meets it first and never scans the tombstones of departed members.
pub(super) const HEAD_ROW: i64 = -1;

/// A statement and its bound values, as batches take them.
pub(super) type Item = (&'static Statement, Vec<Value>);
/// kind, visibility, name, topic, image_url, owner_id, member_count, created_at_ms,
/// updated_at_ms, version, pending.
pub(super) type HeadRow = (
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
pub(super) type MemberCols = (String, i64, i64, bool, i64);

pub(super) fn backend(e: CqlError) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub(super) fn corrupt(channel_id: u64, what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("channel {channel_id}: {what}"))
}

/// A `LIMIT` bind: at least 1 (callers answer an empty page for 0 themselves).
pub(super) fn limit_of(limit: usize) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX).max(1)
}

/// The largest id a `bigint` holds.
pub(super) const MAX_ID: u64 = i64::MAX as u64;

pub(super) fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Group => "group",
        Kind::Direct => "direct",
        Kind::Broadcast => "broadcast",
    }
}

pub(super) fn kind_of(channel_id: u64, name: &str) -> Result<Kind, StoreError> {
    match name {
        "group" => Ok(Kind::Group),
        "direct" => Ok(Kind::Direct),
        "broadcast" => Ok(Kind::Broadcast),
        other => Err(corrupt(channel_id, format!("unknown kind {other:?}"))),
    }
}

pub(super) fn visibility_name(visibility: Visibility) -> &'static str {
    match visibility {
        Visibility::Public => "public",
        Visibility::Private => "private",
    }
}

pub(super) fn visibility_of(channel_id: u64, name: &str) -> Result<Visibility, StoreError> {
    match name {
        "public" => Ok(Visibility::Public),
        "private" => Ok(Visibility::Private),
        other => Err(corrupt(channel_id, format!("unknown visibility {other:?}"))),
    }
}

pub(super) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Member => "member",
        Role::Admin => "admin",
        Role::Owner => "owner",
    }
}

pub(super) fn role_of(channel_id: u64, name: &str) -> Result<Role, StoreError> {
    match name {
        "member" => Ok(Role::Member),
        "admin" => Ok(Role::Admin),
        "owner" => Ok(Role::Owner),
        other => Err(corrupt(channel_id, format!("unknown role {other:?}"))),
    }
}

pub(super) fn member_of(channel_id: u64, user_id: u64, cols: MemberCols) -> Result<MemberRecord, StoreError> {
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
pub(super) fn member_values(m: &MemberRecord) -> Vec<Value> {
    values![role_name(m.role), m.joined_at_ms, m.invited_by, m.closed, m.closed_at_ms]
}

/// The record's static columns, in `PUT_CHANNEL`'s order; nulls remove the record.
pub(super) fn record_values(record: Option<&ChannelRecord>) -> Vec<Value> {
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

/// The static row of a channel's partition.
#[derive(Debug, Default)]
pub(super) struct Head {
    /// `None`: never created, deleted (or being deleted), or fenced.
    pub(super) record: Option<ChannelRecord>,
    pub(super) version: Option<u64>,
    /// The last change: when it committed and, until they are done, its writes elsewhere.
    pub(super) pending: Option<Pending>,
}

impl Head {
    /// The last change, if it still owes writes elsewhere.
    pub(super) fn unfinished(&self) -> Option<&Pending> {
        self.pending.as_ref().filter(|p| p.owes_writes())
    }

    /// When the last change committed (µs), if known.
    pub(super) fn last_at_us(&self) -> Option<i64> {
        self.pending.as_ref().and_then(|p| p.at_us)
    }
}

pub(super) fn head_of(channel_id: u64, row: Option<HeadRow>) -> Result<Head, StoreError> {
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
