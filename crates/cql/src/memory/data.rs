//! The stored data: cells with their write timestamps, rows, partitions and tombstones,
//! reconciled last-write-wins.

use std::{
    cmp::Ordering,
    collections::{BTreeMap, HashMap},
};

use super::parse::{Cond, Op};
use crate::schema::{CqlType, Order, Table};

/// A value as keys and conditions compare it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Cell {
    BigInt(i64),
    Int(i32),
    Bytes(Vec<u8>),
    Boolean(bool),
}

impl Cell {
    /// Its serialized size (what a batch's size is counted in).
    pub(super) fn size(&self) -> usize {
        match self {
            Cell::BigInt(_) => 8,
            Cell::Int(_) => 4,
            Cell::Boolean(_) => 1,
            Cell::Bytes(b) => b.len(),
        }
    }
}

/// A cell as written: its value (`None`: a tombstone, as writing null is) and timestamp.
#[derive(Debug, Clone)]
pub(super) struct Stamped {
    pub(super) value: Option<Cell>,
    pub(super) ts: i64,
}

impl Stamped {
    /// Whether it wins over `other` when both are written to one cell: the later timestamp; on
    /// a tie a tombstone, then the larger serialized value (as Cassandra and ScyllaDB reconcile).
    pub(super) fn supersedes(&self, other: &Stamped) -> bool {
        match self.ts.cmp(&other.ts) {
            Ordering::Greater => true,
            Ordering::Less => false,
            Ordering::Equal => match (&self.value, &other.value) {
                (None, Some(_)) => true,
                (Some(a), Some(b)) => encoded(a) > encoded(b),
                (Some(_), None) | (None, None) => false,
            },
        }
    }

    /// Its value, unless it is a tombstone or hidden by a tombstone of timestamp `shadow`.
    pub(super) fn live(&self, shadow: Option<i64>) -> Option<&Cell> {
        self.value.as_ref().filter(|_| shadow.is_none_or(|s| self.ts > s))
    }
}

/// Writes `cell` to `column` unless what is there supersedes it.
pub(super) fn write_cell(cells: &mut HashMap<String, Stamped>, column: &str, cell: Stamped) {
    match cells.get(column) {
        Some(old) if !cell.supersedes(old) => {}
        _ => {
            cells.insert(column.to_owned(), cell);
        }
    }
}

pub(super) fn latest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    a.max(b)
}

#[derive(Debug, Default)]
pub(super) struct Row {
    /// The row marker an INSERT writes (the row exists while it is live, even with no cells).
    pub(super) marker: Option<i64>,
    /// A row tombstone.
    pub(super) deleted: Option<i64>,
    pub(super) cells: HashMap<String, Stamped>,
}

/// Deletes the rows starting with `prefix` whose next clustering column satisfies `bounds`
/// (ranges only; none: every row with the prefix).
#[derive(Debug)]
pub(super) struct RangeTombstone {
    pub(super) prefix: Vec<Cell>,
    pub(super) bounds: Vec<(Op, Cell)>,
    pub(super) ts: i64,
}

/// One end of a range: its value and whether it is inclusive (`None`: unbounded).
pub(super) type End<'a> = Option<(&'a Cell, bool)>;

impl RangeTombstone {
    pub(super) fn covers(&self, key: &[Cell]) -> bool {
        key.starts_with(&self.prefix)
            && key.get(self.prefix.len()).is_some_and(|c| self.bounds.iter().all(|(op, b)| op.holds(c.cmp(b))))
    }

    /// The lowest and highest bounds.
    pub(super) fn interval(&self) -> (End<'_>, End<'_>) {
        let (mut low, mut high): (End<'_>, End<'_>) = (None, None);
        for (op, b) in &self.bounds {
            match op {
                Op::Gt | Op::Ge => {
                    let inclusive = *op == Op::Ge;
                    if low.is_none_or(|(l, li)| b > l || (b == l && li && !inclusive)) {
                        low = Some((b, inclusive));
                    }
                }
                Op::Lt | Op::Le => {
                    let inclusive = *op == Op::Le;
                    if high.is_none_or(|(h, hi)| b < h || (b == h && hi && !inclusive)) {
                        high = Some((b, inclusive));
                    }
                }
                Op::Eq | Op::Ne => unreachable!("range tombstones hold ranges only (checked at parse)"),
            }
        }
        (low, high)
    }

    /// Whether it deletes at least all that `other` does, as recently: `other` can be dropped.
    pub(super) fn dominates(&self, other: &RangeTombstone) -> bool {
        if self.ts < other.ts || !other.prefix.starts_with(&self.prefix) {
            return false;
        }
        if other.prefix.len() > self.prefix.len() {
            let next = &other.prefix[self.prefix.len()];
            return self.bounds.iter().all(|(op, b)| op.holds(next.cmp(b)));
        }
        let ((low, high), (other_low, other_high)) = (self.interval(), other.interval());
        let low_ok = match (low, other_low) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((l, li)), Some((ol, oli))) => l < ol || (l == ol && (li || !oli)),
        };
        let high_ok = match (high, other_high) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((h, hi)), Some((oh, ohi))) => h > oh || (h == oh && (hi || !ohi)),
        };
        low_ok && high_ok
    }
}

#[derive(Debug, Default)]
pub(super) struct Partition {
    /// A partition tombstone.
    pub(super) deleted: Option<i64>,
    pub(super) statics: HashMap<String, Stamped>,
    pub(super) rows: BTreeMap<Vec<Cell>, Row>,
    /// Range tombstones, none dominating another.
    pub(super) ranges: Vec<RangeTombstone>,
    /// The last Paxos ballot's timestamp.
    pub(super) ballot: i64,
}

impl Partition {
    pub(super) fn static_value(&self, column: &str) -> Option<&Cell> {
        self.statics.get(column).and_then(|c| c.live(self.deleted))
    }

    pub(super) fn has_live_statics(&self) -> bool {
        self.statics.values().any(|c| c.live(self.deleted).is_some())
    }

    /// The newest tombstone covering the row at `key`.
    pub(super) fn shadow(&self, key: &[Cell], row: &Row) -> Option<i64> {
        let ranged = self.ranges.iter().filter(|r| r.covers(key)).map(|r| r.ts).max();
        latest(latest(self.deleted, row.deleted), ranged)
    }

    /// The row's live cells, if the row is live (a live marker or a live cell).
    pub(super) fn live_row<'p>(&self, key: &[Cell], row: &'p Row) -> Option<HashMap<&'p str, &'p Cell>> {
        let shadow = self.shadow(key, row);
        let cells: HashMap<&str, &Cell> =
            row.cells.iter().filter_map(|(name, c)| c.live(shadow).map(|v| (name.as_str(), v))).collect();
        let marker = row.marker.is_some_and(|ts| shadow.is_none_or(|s| ts > s));
        (marker || !cells.is_empty()).then_some(cells)
    }

    pub(super) fn add_range(&mut self, tombstone: RangeTombstone) {
        if self.ranges.iter().any(|r| r.dominates(&tombstone)) {
            return;
        }
        self.ranges.retain(|r| !tombstone.dominates(r));
        self.ranges.push(tombstone);
    }
}

#[derive(Debug, Default)]
pub(super) struct Data {
    pub(super) tables: HashMap<String, BTreeMap<Vec<Cell>, Partition>>,
}

pub(super) fn decode(typ: CqlType, cell: &[u8]) -> Option<Cell> {
    let len = i32::from_be_bytes(cell[..4].try_into().expect("a cell has a length"));
    if len < 0 {
        return None;
    }
    let body = &cell[4..];
    Some(match typ {
        CqlType::BigInt => Cell::BigInt(i64::from_be_bytes(body.try_into().expect("8 bytes"))),
        CqlType::Int => Cell::Int(i32::from_be_bytes(body.try_into().expect("4 bytes"))),
        CqlType::Boolean => Cell::Boolean(body.first() == Some(&1)),
        CqlType::Text | CqlType::Blob => Cell::Bytes(body.to_vec()),
    })
}

/// A value's serialized body (how equal-timestamp writes are ordered).
pub(super) fn encoded(cell: &Cell) -> Vec<u8> {
    match cell {
        Cell::BigInt(v) => v.to_be_bytes().to_vec(),
        Cell::Int(v) => v.to_be_bytes().to_vec(),
        Cell::Boolean(v) => vec![u8::from(*v)],
        Cell::Bytes(v) => v.clone(),
    }
}

pub(super) fn encode(cell: Option<&Cell>, frame: &mut Vec<u8>) {
    let Some(cell) = cell else {
        frame.extend_from_slice(&(-1i32).to_be_bytes());
        return;
    };
    let body = encoded(cell);
    frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
    frame.extend_from_slice(&body);
}

pub(super) fn partition_key(table: &Table, restrictions: &[Cond], bound: &[Option<Cell>]) -> Option<Vec<Cell>> {
    table
        .partition_key
        .iter()
        .map(|k| restrictions.iter().find(|c| &c.column == k && c.op == Op::Eq).and_then(|c| bound[c.marker].clone()))
        .collect()
}

/// The equality-restricted clustering prefix (the whole key for a single row).
pub(super) fn clustering_key(table: &Table, restrictions: &[Cond], bound: &[Option<Cell>]) -> Option<Vec<Cell>> {
    let mut key = Vec::new();
    for (column, _) in &table.clustering {
        match restrictions.iter().find(|c| &c.column == column && c.op == Op::Eq) {
            Some(c) => key.push(bound[c.marker].clone()?),
            None => break,
        }
    }
    Some(key)
}

/// How two clustering keys of `table` sort in its partitions: column by column, each in its
/// declared order (`WITH CLUSTERING ORDER BY`).
pub(super) fn clustering_order(table: &Table, a: &[Cell], b: &[Cell]) -> Ordering {
    for ((x, y), (_, order)) in a.iter().zip(b).zip(&table.clustering) {
        let ord = match order {
            Order::Asc => x.cmp(y),
            Order::Desc => y.cmp(x),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

/// Rows of a partition matching the clustering restrictions, in ascending key order.
pub(super) fn matching_rows<'p>(
    table: &Table,
    partition: &'p Partition,
    restrictions: &[Cond],
    bound: &[Option<Cell>],
) -> Vec<(&'p Vec<Cell>, &'p Row)> {
    partition
        .rows
        .iter()
        .filter(|(key, _)| {
            restrictions.iter().all(|c| match table.clustering.iter().position(|(k, _)| *k == c.column) {
                None => true,
                Some(at) => match (&key.get(at), &bound[c.marker]) {
                    (Some(have), Some(want)) => c.op.holds(have.cmp(&want)),
                    _ => false,
                },
            })
        })
        .collect()
}
