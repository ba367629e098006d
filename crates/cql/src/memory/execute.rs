//! Running statements: reads (with their tombstone counts), writes and batches (with their
//! sizes, conditions, timestamps and injected faults).

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering as AtomicOrdering},
};

use bytes::Bytes;
use scylla::{
    deserialize::{FrameSlice, row::ColumnIterator},
    frame::response::result::{ColumnSpec, TableSpec},
    serialize::{value::SerializeValue, writers::CellWriter},
};

use super::{
    HeldWrite, MemoryCql, Outcome, Process,
    data::{
        Cell, Data, Partition, RangeTombstone, Stamped, clustering_key, clustering_order, decode, encode, latest,
        matching_rows, partition_key, write_cell,
    },
    parse::{Condition, Kind, Op, Parsed},
    schema_error, timed_out, wall_micros,
};
use crate::{
    CqlError, FromRow, Statement, Value,
    schema::{Order, Table},
};

/// One statement of a write, bound and checked.
#[derive(Debug)]
pub(super) struct Mutation {
    pub(super) stmt: &'static Statement,
    pub(super) parsed: Arc<Parsed>,
    pub(super) bound: Vec<Option<Cell>>,
    pub(super) partition: Vec<Cell>,
    /// Its `USING TIMESTAMP`.
    pub(super) timestamp: Option<i64>,
}

impl MemoryCql {
    /// Serializes each value with the driver against the type its marker binds.
    fn bind(&self, stmt: &'static Statement, parsed: &Parsed, values: &[Value]) -> Result<Vec<Option<Cell>>, CqlError> {
        if values.len() != parsed.markers.len() {
            return Err(schema_error(
                stmt.name,
                format!("{} values bound to {} markers", values.len(), parsed.markers.len()),
            ));
        }
        values
            .iter()
            .zip(&parsed.markers)
            .enumerate()
            .map(|(i, (value, typ))| {
                let mut buf = Vec::new();
                value
                    .serialize(&typ.column_type(), CellWriter::new(&mut buf))
                    .map_err(|e| schema_error(stmt.name, format!("value {} ({value:?}) as {typ:?}: {e}", i + 1)))?;
                Ok(decode(*typ, &buf))
            })
            .collect()
    }

    /// The executor's clock (the coordinators' and the processes' common time).
    fn now(&self) -> i64 {
        let mut clock = self.clock.lock().expect("clock");
        let now = clock.pinned.unwrap_or_else(wall_micros).max(clock.last + 1);
        clock.last = now;
        now
    }

    /// Refuses a `USING TIMESTAMP` as ScyllaDB does: the reserved `i64::MIN`, and (its default
    /// `restrict_future_timestamp: true`) one more than 3 days ahead of the coordinator's clock.
    fn check_timestamp(&self, stmt: &'static Statement, ts: i64) -> Result<i64, CqlError> {
        const THREE_DAYS_US: i64 = 3 * 86_400 * 1_000_000;
        let now = {
            let clock = self.clock.lock().expect("clock");
            clock.pinned.unwrap_or_else(wall_micros).max(clock.last)
        };
        if ts == i64::MIN || ts > now.saturating_add(THREE_DAYS_US) {
            return Err(CqlError::Invalid {
                statement: stmt.name,
                message: format!(
                    "USING TIMESTAMP {ts}: reserved or more than 3 days ahead (restrict_future_timestamp)"
                ),
            });
        }
        Ok(ts)
    }

    /// A timestamp from `process`'s clock: skewed, monotonic.
    pub(super) fn stamp(&self, process: &Process) -> i64 {
        let skewed = self.now() + process.skew_us;
        let ts = skewed.max(process.last.load(AtomicOrdering::Acquire).saturating_add(1));
        process.last.store(ts, AtomicOrdering::Release);
        ts
    }

    /// A Paxos ballot on the partition `m` writes: the executor's clock, above any earlier one.
    pub(super) fn ballot(&self, m: &Mutation, data: &mut Data) -> i64 {
        let partition = data.tables.entry(m.parsed.table.clone()).or_default().entry(m.partition.clone()).or_default();
        let ballot = self.now().max(partition.ballot + 1);
        partition.ballot = ballot;
        ballot
    }

    pub(super) fn rows<R: FromRow>(&self, stmt: &'static Statement, values: Vec<Value>) -> Result<Vec<R>, CqlError> {
        let parsed = self.parse(stmt)?;
        let Kind::Select { columns, order, limit } = &parsed.kind else {
            return Err(schema_error(stmt.name, "not a SELECT"));
        };
        let bound = self.bind(stmt, &parsed, &values)?;
        let table = self.schema.table(&parsed.table).expect("checked at parse");
        let specs: Vec<ColumnSpec<'static>> = columns
            .iter()
            .map(|c| {
                let typ = table.column(c).expect("checked at parse").typ;
                ColumnSpec::owned(c.clone(), typ.column_type(), TableSpec::owned("memory".into(), table.name.clone()))
            })
            .collect();
        R::type_check(&specs).map_err(|e| schema_error(stmt.name, format!("result rows: {e}")))?;
        let limit = match limit {
            Some(marker) => match &bound[*marker] {
                Some(Cell::Int(n)) if *n > 0 => *n as usize,
                other => return Err(schema_error(stmt.name, format!("LIMIT {other:?}"))),
            },
            None => usize::MAX,
        };
        let data = self.data.lock().expect("memory data");
        let mut out = Vec::new();
        let Some(partition) = partition_key(table, &parsed.restrictions, &bound)
            .and_then(|key| data.tables.get(&table.name).and_then(|t| t.get(&key)))
        else {
            self.scanned(stmt, 0)?;
            return Ok(out);
        };
        let mut rows = matching_rows(table, partition, &parsed.restrictions, &bound);
        // why: each clustering column sorts in its own declared order (`(a ASC, b DESC)` lists
        // b descending within each a); ORDER BY the first column against its order reverses all
        rows.sort_by(|(a, _), (b, _)| clustering_order(table, a, b));
        let natural = table.clustering.first().map_or(Order::Asc, |(_, o)| *o);
        if order.is_some_and(|o| o != natural) {
            rows.reverse();
        }
        // why: counted as ScyllaDB meets them, in query order until LIMIT live rows are found
        let mut tombstones = usize::from(partition.deleted.is_some());
        let mut ranges_met = vec![false; partition.ranges.len()];
        for (key, row) in rows {
            if out.len() == limit {
                break;
            }
            for (at, range) in partition.ranges.iter().enumerate() {
                ranges_met[at] |= range.covers(key);
            }
            match partition.live_row(key, row) {
                Some(cells) => {
                    tombstones +=
                        usize::from(row.deleted.is_some()) + row.cells.values().filter(|c| c.value.is_none()).count();
                    out.push(self.row::<R>(stmt, table, columns, &specs, partition, Some((key, &cells)))?);
                }
                None => tombstones += 1,
            }
        }
        tombstones += ranges_met.iter().filter(|met| **met).count();
        self.scanned(stmt, tombstones)?;
        let clustering_restricted = parsed.restrictions.len() > table.partition_key.len();
        // why: a partition holding only static values still answers one row
        if out.is_empty() && partition.has_live_statics() && !clustering_restricted {
            out.push(self.row::<R>(stmt, table, columns, &specs, partition, None)?);
        }
        Ok(out)
    }

    /// Counts a read's tombstones; fails it past the threshold.
    fn scanned(&self, stmt: &'static Statement, tombstones: usize) -> Result<(), CqlError> {
        let limits = *self.limits.lock().expect("limits");
        let mut stats = self.stats.lock().expect("stats");
        let read = stats.reads.entry(stmt.name).or_default();
        read.runs += 1;
        read.max_tombstones = read.max_tombstones.max(tombstones);
        if tombstones > limits.tombstone_warn {
            read.warnings += 1;
        }
        if tombstones > limits.tombstone_fail {
            return Err(CqlError::Failed {
                statement: stmt.name,
                message: format!(
                    "scanned over {} tombstones; query aborted (tombstone_failure_threshold)",
                    limits.tombstone_fail
                ),
            });
        }
        Ok(())
    }

    fn row<R: FromRow>(
        &self,
        stmt: &'static Statement,
        table: &Table,
        columns: &[String],
        specs: &[ColumnSpec<'static>],
        partition: &Partition,
        row: Option<(&Vec<Cell>, &HashMap<&str, &Cell>)>,
    ) -> Result<R, CqlError> {
        let mut frame = Vec::new();
        for name in columns {
            let column = table.column(name).expect("checked at parse");
            let cell = if column.is_static {
                partition.static_value(name)
            } else if let Some(at) = table.clustering.iter().position(|(c, _)| c == name) {
                row.map(|(key, _)| &key[at])
            } else if table.partition_key.iter().any(|k| k == name) {
                // partition key values are not kept per row; the stores never select them
                return Err(schema_error(stmt.name, format!("selects partition key column {name}")));
            } else {
                row.and_then(|(_, cells)| cells.get(name.as_str()).copied())
            };
            encode(cell, &mut frame);
        }
        let frame = Bytes::from(frame);
        R::deserialize(ColumnIterator::new(specs, FrameSlice::new(&frame)))
            .map_err(|e| schema_error(stmt.name, format!("result row: {e}")))
    }

    /// Binds and checks one statement of a write.
    fn mutation(&self, stmt: &'static Statement, values: &[Value]) -> Result<Mutation, CqlError> {
        let parsed = self.parse(stmt)?;
        if matches!(parsed.kind, Kind::Select { .. }) {
            return Err(schema_error(stmt.name, "a SELECT cannot write"));
        }
        let bound = self.bind(stmt, &parsed, values)?;
        let table = self.schema.table(&parsed.table).expect("checked at parse");
        if let Some(c) = parsed.restrictions.iter().find(|c| table.is_key(&c.column) && bound[c.marker].is_none()) {
            return Err(schema_error(stmt.name, format!("a null in key column {}", c.column)));
        }
        let partition = partition_key(table, &parsed.restrictions, &bound).expect("no null in the key");
        let timestamp = match parsed.timestamp {
            Some(marker) => match &bound[marker] {
                Some(Cell::BigInt(ts)) => Some(self.check_timestamp(stmt, *ts)?),
                _ => return Err(schema_error(stmt.name, "a null timestamp (USING TIMESTAMP)")),
            },
            None => None,
        };
        if let Kind::Insert { columns } | Kind::Update { set: columns } = &parsed.kind {
            let ck = clustering_key(table, &parsed.restrictions, &bound).expect("no null in the key");
            let writes_regular =
                columns.iter().any(|(c, _)| !table.column(c).expect("checked").is_static && !table.is_key(c));
            if !table.clustering.is_empty() && ck.is_empty() && writes_regular {
                return Err(schema_error(stmt.name, "writes regular columns without the clustering key"));
            }
        }
        Ok(Mutation { stmt, parsed, bound, partition, timestamp })
    }

    /// Runs writes atomically: conditions first (all must hold), then every write, all with one
    /// timestamp (a statement's own `USING TIMESTAMP` aside).
    pub(super) fn write(
        &self,
        process: &Process,
        items: Vec<(&'static Statement, Vec<Value>)>,
        is_batch: bool,
    ) -> Result<bool, CqlError> {
        let mutations =
            items.iter().map(|(stmt, values)| self.mutation(stmt, values)).collect::<Result<Vec<_>, _>>()?;
        let first = mutations[0].stmt.name;
        let conditional = mutations.iter().any(|m| m.parsed.condition_present());
        if conditional && mutations.len() > 1 {
            if mutations.iter().any(|m| m.timestamp.is_some()) {
                return Err(schema_error(first, "a conditional batch cannot carry USING TIMESTAMP"));
            }
            let key = |m: &Mutation| (m.parsed.table.clone(), m.partition.clone());
            if mutations.iter().any(|m| key(m) != key(&mutations[0])) {
                return Err(schema_error(first, "a conditional batch spans partitions"));
            }
        }
        if is_batch {
            self.measure(&mutations)?;
        }
        match self.take_fault(&mutations) {
            Some(Outcome::Lost) => Err(timed_out(first)),
            Some(Outcome::Held) => {
                let ts = (!conditional).then(|| self.stamp(process));
                self.held.lock().expect("held writes").push(HeldWrite { mutations, ts });
                Err(timed_out(first))
            }
            fault => {
                let mut data = self.data.lock().expect("memory data");
                let ts = if conditional { self.ballot(&mutations[0], &mut data) } else { self.stamp(process) };
                if !self.conditions_hold(&mutations, &data) {
                    return if fault.is_some() { Err(timed_out(first)) } else { Ok(false) };
                }
                for m in &mutations {
                    self.apply(m, m.timestamp.unwrap_or(ts), &mut data);
                }
                if fault.is_some() {
                    return Err(timed_out(first));
                }
                Ok(true)
            }
        }
    }

    /// Sizes a batch spanning partitions as ScyllaDB does before running it.
    fn measure(&self, mutations: &[Mutation]) -> Result<(), CqlError> {
        let first = &mutations[0];
        let spans = mutations.iter().any(|m| m.parsed.table != first.parsed.table || m.partition != first.partition);
        if !spans {
            return Ok(());
        }
        let bytes: usize = mutations.iter().flat_map(|m| m.bound.iter().flatten()).map(Cell::size).sum();
        let limits = *self.limits.lock().expect("limits");
        let mut stats = self.stats.lock().expect("stats");
        stats.batches += 1;
        stats.max_batch_bytes = stats.max_batch_bytes.max(bytes);
        if bytes > limits.batch_warn_bytes {
            stats.batch_warnings += 1;
        }
        if bytes > limits.batch_fail_bytes {
            return Err(CqlError::Invalid {
                statement: first.stmt.name,
                message: format!(
                    "batch of {bytes} bytes spanning partitions exceeds the {} bytes of batch_size_fail_threshold_in_kb",
                    limits.batch_fail_bytes
                ),
            });
        }
        Ok(())
    }

    /// The outcome of the first fault matching this write, used up by it.
    fn take_fault(&self, mutations: &[Mutation]) -> Option<Outcome> {
        let mut faults = self.faults.lock().expect("faults");
        let at = faults.iter().position(|f| {
            f.remaining > 0 && f.statement.is_none_or(|name| mutations.iter().any(|m| m.stmt.name == name))
        })?;
        faults[at].remaining -= 1;
        let outcome = faults[at].outcome;
        faults.retain(|f| f.remaining > 0);
        Some(outcome)
    }

    pub(super) fn conditions_hold(&self, mutations: &[Mutation], data: &Data) -> bool {
        mutations.iter().all(|m| !m.parsed.condition_present() || self.holds(m, data))
    }

    fn holds(&self, m: &Mutation, data: &Data) -> bool {
        let (parsed, bound) = (&m.parsed, &m.bound);
        let table = self.schema.table(&parsed.table).expect("checked");
        let partition = data.tables.get(&table.name).and_then(|t| t.get(&m.partition));
        let clustering = clustering_key(table, &parsed.restrictions, bound).expect("no null in the key");
        // the row compared (a table without clustering columns has one per partition); none for
        // a statement on the static columns of a clustered table
        let row_key = (table.clustering.is_empty() || !clustering.is_empty()).then_some(clustering);
        let row_cells =
            partition.zip(row_key.as_ref()).and_then(|(p, key)| p.rows.get(key).and_then(|row| p.live_row(key, row)));
        let exists = match (partition, &row_key) {
            (None, _) => false,
            (Some(p), None) => p.has_live_statics(),
            (Some(_), Some(_)) => row_cells.is_some(),
        };
        match &parsed.condition {
            Condition::None => true,
            Condition::NotExists => !exists,
            Condition::Exists => exists,
            Condition::Columns(conds) => conds.iter().all(|c| {
                let column = table.column(&c.column).expect("checked");
                let current = if column.is_static {
                    partition.and_then(|p| p.static_value(&c.column))
                } else {
                    row_cells.as_ref().and_then(|cells| cells.get(c.column.as_str()).copied())
                };
                match (current, &bound[c.marker]) {
                    (None, None) => c.op == Op::Eq,
                    (Some(_), None) | (None, Some(_)) => c.op == Op::Ne,
                    (Some(a), Some(b)) => c.op.holds(a.cmp(b)),
                }
            }),
        }
    }

    pub(super) fn apply(&self, m: &Mutation, ts: i64, data: &mut Data) {
        let (parsed, bound) = (&m.parsed, &m.bound);
        let table = self.schema.table(&parsed.table).expect("checked");
        let partition = data.tables.entry(table.name.clone()).or_default().entry(m.partition.clone()).or_default();
        let ck = clustering_key(table, &parsed.restrictions, bound).expect("no null in the key");
        match &parsed.kind {
            Kind::Select { .. } => unreachable!("refused when bound"),
            Kind::Insert { columns } | Kind::Update { set: columns } => {
                let has_row = table.clustering.is_empty() || !ck.is_empty();
                if has_row {
                    let row = partition.rows.entry(ck.clone()).or_default();
                    // why: an INSERT makes its row exist (CQL's row marker); an UPDATE does not
                    if matches!(parsed.kind, Kind::Insert { .. }) {
                        row.marker = latest(row.marker, Some(ts));
                    }
                }
                for (column, marker) in columns.iter().filter(|(c, _)| !table.is_key(c)) {
                    let cell = Stamped { value: bound[*marker].clone(), ts };
                    if table.column(column).expect("checked").is_static {
                        write_cell(&mut partition.statics, column, cell);
                    } else {
                        let row =
                            partition.rows.get_mut(&ck).expect("checked when bound: regular columns need the row");
                        write_cell(&mut row.cells, column, cell);
                    }
                }
            }
            Kind::Delete => {
                if parsed.restrictions.len() == table.partition_key.len() {
                    partition.deleted = latest(partition.deleted, Some(ts));
                } else if ck.len() == table.clustering.len() {
                    let row = partition.rows.entry(ck).or_default();
                    row.deleted = latest(row.deleted, Some(ts));
                } else {
                    let next = &table.clustering[ck.len()].0;
                    let bounds = parsed
                        .restrictions
                        .iter()
                        .filter(|c| &c.column == next)
                        .map(|c| (c.op, bound[c.marker].clone().expect("no null in the key")))
                        .collect();
                    partition.add_range(RangeTombstone { prefix: ck, bounds, ts });
                }
            }
        }
    }
}
