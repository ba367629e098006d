//! An in-memory executor of the statement subset the stores use, over the tables the
//! migrations declare. It exists so the ScyllaDB stores run their conformance suites and golden
//! tests on every machine: every bound value is serialized by the driver against the schema's
//! column type, and every result row is type-checked and deserialized by the driver from
//! column specs built from the schema. Semantics follow CQL where the stores rely on them:
//! partitions and clustering order, static columns, range restrictions and deletes, `LIMIT`,
//! lightweight transactions (a missing row's columns are null) and conditional batches on one
//! partition. Everything runs under one lock, so each statement or batch is atomic.
//!
//! The subset: only `?` markers bind values; `SELECT` names its columns and restricts the whole
//! partition key by `=`, then a clustering prefix by `=` and at most one range; `INSERT ... [IF
//! NOT EXISTS] [USING TTL ?]`; `UPDATE t [USING TTL ?] SET c = ?, ... WHERE <key> [IF EXISTS |
//! IF c op ? AND ...]`; `DELETE FROM t WHERE <key prefix> [range] [IF EXISTS | IF ...]`. TTLs are
//! accepted and not enforced.

use std::{
    cmp::Ordering,
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use scylla::{
    deserialize::{FrameSlice, row::ColumnIterator},
    frame::response::result::{ColumnSpec, TableSpec},
    serialize::{value::SerializeValue, writers::CellWriter},
};

use crate::{
    CqlError, FromRow, Statement, Value,
    schema::{CqlType, Order, Schema, Table, tokens},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn parse(token: &str) -> Option<Op> {
        Some(match token {
            "=" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            _ => return None,
        })
    }

    fn holds(self, ord: Ordering) -> bool {
        match self {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
        }
    }
}

/// `column op ?`, binding the marker at `marker`.
#[derive(Debug, Clone)]
struct Cond {
    column: String,
    op: Op,
    marker: usize,
}

#[derive(Debug, Clone)]
enum Condition {
    None,
    NotExists,
    Exists,
    Columns(Vec<Cond>),
}

#[derive(Debug, Clone)]
enum Kind {
    Select { columns: Vec<String>, order: Option<Order>, limit: Option<usize> },
    Insert { columns: Vec<(String, usize)> },
    Update { set: Vec<(String, usize)> },
    Delete,
}

/// A statement parsed and checked against the schema.
#[derive(Debug, Clone)]
struct Parsed {
    table: String,
    kind: Kind,
    /// Key restrictions (for INSERT: the key columns among the inserted ones).
    restrictions: Vec<Cond>,
    condition: Condition,
    /// The type each marker binds, in order.
    markers: Vec<CqlType>,
}

/// A value as keys and conditions compare it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Cell {
    BigInt(i64),
    Int(i32),
    Bytes(Vec<u8>),
    Boolean(bool),
}

#[derive(Debug, Default)]
struct Partition {
    statics: HashMap<String, Cell>,
    rows: BTreeMap<Vec<Cell>, HashMap<String, Cell>>,
}

#[derive(Debug, Default)]
struct Data {
    tables: HashMap<String, BTreeMap<Vec<Cell>, Partition>>,
}

/// The in-memory executor; see the module docs.
#[derive(Debug)]
pub struct MemoryCql {
    schema: Schema,
    parsed: Mutex<HashMap<&'static str, Arc<Parsed>>>,
    data: Mutex<Data>,
    /// Writes still to fail (tests of write timeouts), and whether they apply anyway.
    faults: Mutex<(usize, bool)>,
}

fn schema_error(statement: &'static str, message: impl Into<String>) -> CqlError {
    CqlError::Schema { statement, message: message.into() }
}

impl MemoryCql {
    pub fn new(schema: Schema) -> Self {
        MemoryCql {
            schema,
            parsed: Mutex::new(HashMap::new()),
            data: Mutex::new(Data::default()),
            faults: Mutex::new((0, false)),
        }
    }

    /// Makes the next `count` writes (statements or batches) fail as a write timeout does:
    /// with `applied`, they are applied anyway (as a batchlog replay or a late replica would),
    /// otherwise not at all.
    pub fn fail_writes(&self, count: usize, applied: bool) {
        *self.faults.lock().expect("faults") = (count, applied);
    }

    /// An empty executor on the schema of every migration.
    pub fn migrated() -> Arc<Self> {
        Arc::new(Self::new(crate::migrate::schema().expect("the migrations parse")))
    }

    pub(crate) fn check(&self, stmt: &'static Statement) -> Result<(), CqlError> {
        self.parse(stmt).map(|_| ())
    }

    fn parse(&self, stmt: &'static Statement) -> Result<Arc<Parsed>, CqlError> {
        let mut cache = self.parsed.lock().expect("statement cache");
        if let Some(p) = cache.get(stmt.name) {
            return Ok(p.clone());
        }
        let parsed = Arc::new(parse(&self.schema, stmt.cql).map_err(|e| schema_error(stmt.name, e))?);
        if parsed.condition_present() != stmt.is_conditional() {
            return Err(schema_error(stmt.name, "the IF clause and the statement's flags disagree"));
        }
        cache.insert(stmt.name, parsed.clone());
        Ok(parsed)
    }

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

    pub(crate) fn rows<R: FromRow>(&self, stmt: &'static Statement, values: Vec<Value>) -> Result<Vec<R>, CqlError> {
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
            return Ok(out);
        };
        let mut rows = matching_rows(table, partition, &parsed.restrictions, &bound);
        let natural = table.clustering.first().map_or(Order::Asc, |(_, o)| *o);
        if natural == Order::Desc {
            rows.reverse();
        }
        if order.is_some_and(|o| o != natural) {
            rows.reverse();
        }
        let clustering_restricted = parsed.restrictions.len() > table.partition_key.len();
        // why: a partition holding only static values still answers one row
        if rows.is_empty() && !partition.statics.is_empty() && !clustering_restricted {
            out.push(self.row::<R>(stmt, table, columns, &specs, partition, None)?);
            return Ok(out);
        }
        for (key, row) in rows.into_iter().take(limit) {
            out.push(self.row::<R>(stmt, table, columns, &specs, partition, Some((key, row)))?);
        }
        Ok(out)
    }

    fn row<R: FromRow>(
        &self,
        stmt: &'static Statement,
        table: &Table,
        columns: &[String],
        specs: &[ColumnSpec<'static>],
        partition: &Partition,
        row: Option<(&Vec<Cell>, &HashMap<String, Cell>)>,
    ) -> Result<R, CqlError> {
        let mut frame = Vec::new();
        for name in columns {
            let column = table.column(name).expect("checked at parse");
            let cell = if column.is_static {
                partition.statics.get(name)
            } else if let Some(at) = table.clustering.iter().position(|(c, _)| c == name) {
                row.map(|(key, _)| &key[at])
            } else if table.partition_key.iter().any(|k| k == name) {
                // partition key values are not kept per row; the stores never select them
                return Err(schema_error(stmt.name, format!("selects partition key column {name}")));
            } else {
                row.and_then(|(_, cells)| cells.get(name))
            };
            encode(cell, &mut frame);
        }
        let frame = Bytes::from(frame);
        R::deserialize(ColumnIterator::new(specs, FrameSlice::new(&frame)))
            .map_err(|e| schema_error(stmt.name, format!("result row: {e}")))
    }

    /// Runs a write; returns whether it was applied.
    pub(crate) fn execute(&self, stmt: &'static Statement, values: Vec<Value>) -> Result<bool, CqlError> {
        self.batch(vec![(stmt, values)])
    }

    /// Runs writes atomically: conditions first (all must hold), then every write.
    pub(crate) fn batch(&self, items: Vec<(&'static Statement, Vec<Value>)>) -> Result<bool, CqlError> {
        let mut prepared = Vec::with_capacity(items.len());
        for (stmt, values) in &items {
            let parsed = self.parse(stmt)?;
            if matches!(parsed.kind, Kind::Select { .. }) {
                return Err(schema_error(stmt.name, "a SELECT cannot write"));
            }
            let bound = self.bind(stmt, &parsed, values)?;
            prepared.push((*stmt, parsed, bound));
        }
        let conditional: Vec<_> = prepared.iter().filter(|(_, p, _)| p.condition_present()).collect();
        if conditional.len() < prepared.len() && !conditional.is_empty() || conditional.len() > 1 {
            // a conditional batch: every statement on one partition of one table
            let first = &prepared[0];
            let key = |(_, p, b): &(&'static Statement, Arc<Parsed>, Vec<Option<Cell>>)| {
                let table = self.schema.table(&p.table).expect("checked");
                (p.table.clone(), partition_key(table, &p.restrictions, b))
            };
            if prepared.iter().any(|item| key(item) != key(first)) {
                return Err(schema_error(first.0.name, "a conditional batch spans partitions"));
            }
        }
        let fault = {
            let mut faults = self.faults.lock().expect("faults");
            (faults.0 > 0).then(|| {
                faults.0 -= 1;
                faults.1
            })
        };
        let timed_out =
            || CqlError::Failed { statement: prepared[0].0.name, message: "write timeout (injected)".into() };
        if fault == Some(false) {
            return Err(timed_out());
        }
        let mut data = self.data.lock().expect("memory data");
        for (stmt, parsed, bound) in &prepared {
            if parsed.condition_present() && !self.holds(stmt, parsed, bound, &data)? {
                return Ok(false);
            }
        }
        for (stmt, parsed, bound) in &prepared {
            self.apply(stmt, parsed, bound, &mut data)?;
        }
        if fault == Some(true) {
            return Err(timed_out());
        }
        Ok(true)
    }

    fn holds(
        &self,
        stmt: &'static Statement,
        parsed: &Parsed,
        bound: &[Option<Cell>],
        data: &Data,
    ) -> Result<bool, CqlError> {
        let table = self.schema.table(&parsed.table).expect("checked");
        let key = partition_key(table, &parsed.restrictions, bound)
            .ok_or_else(|| schema_error(stmt.name, "a null in the partition key"))?;
        let partition = data.tables.get(&table.name).and_then(|t| t.get(&key));
        let clustering = clustering_key(table, &parsed.restrictions, bound);
        let row = match (&clustering, partition) {
            (Some(ck), Some(p)) if !ck.is_empty() => p.rows.get(ck),
            _ => None,
        };
        let only_statics = clustering.as_ref().is_none_or(|ck| ck.is_empty());
        let exists = match partition {
            None => false,
            Some(p) if only_statics => {
                !p.statics.is_empty() || (table.clustering.is_empty() && p.rows.contains_key(&Vec::new()))
            }
            Some(_) => row.is_some(),
        };
        Ok(match &parsed.condition {
            Condition::None => true,
            Condition::NotExists => !exists,
            Condition::Exists => exists,
            Condition::Columns(conds) => conds.iter().all(|c| {
                let column = table.column(&c.column).expect("checked");
                let current = if column.is_static {
                    partition.and_then(|p| p.statics.get(&c.column))
                } else if table.clustering.is_empty() {
                    partition.and_then(|p| p.rows.get(&Vec::new())).and_then(|r| r.get(&c.column))
                } else {
                    row.and_then(|r| r.get(&c.column))
                };
                match (current, &bound[c.marker]) {
                    (None, None) => c.op == Op::Eq,
                    (Some(_), None) | (None, Some(_)) => c.op == Op::Ne,
                    (Some(a), Some(b)) => c.op.holds(a.cmp(b)),
                }
            }),
        })
    }

    fn apply(
        &self,
        stmt: &'static Statement,
        parsed: &Parsed,
        bound: &[Option<Cell>],
        data: &mut Data,
    ) -> Result<(), CqlError> {
        let table = self.schema.table(&parsed.table).expect("checked");
        let key = partition_key(table, &parsed.restrictions, bound)
            .ok_or_else(|| schema_error(stmt.name, "a null in the partition key"))?;
        let tables = data.tables.entry(table.name.clone()).or_default();
        match &parsed.kind {
            Kind::Select { .. } => unreachable!("refused in batch()"),
            Kind::Insert { columns } | Kind::Update { set: columns } => {
                let ck = clustering_key(table, &parsed.restrictions, bound)
                    .ok_or_else(|| schema_error(stmt.name, "a null in the clustering key"))?;
                let partition = tables.entry(key).or_default();
                let writes_regular =
                    columns.iter().any(|(c, _)| !table.column(c).expect("checked").is_static && !table.is_key(c));
                let is_insert = matches!(parsed.kind, Kind::Insert { .. });
                if !table.clustering.is_empty() && ck.is_empty() && writes_regular {
                    return Err(schema_error(stmt.name, "writes regular columns without the clustering key"));
                }
                // why: an INSERT makes its row exist (as CQL's row marker does); an UPDATE only
                // when it writes a regular column
                if (is_insert || writes_regular || table.clustering.is_empty())
                    && (table.clustering.is_empty() || !ck.is_empty())
                {
                    partition.rows.entry(ck.clone()).or_default();
                }
                for (column, marker) in columns {
                    if table.is_key(column) {
                        continue;
                    }
                    let is_static = table.column(column).expect("checked").is_static;
                    let value = bound[*marker].clone();
                    let target = if is_static {
                        &mut partition.statics
                    } else {
                        partition.rows.get_mut(&ck).expect("created above")
                    };
                    match value {
                        Some(v) => {
                            target.insert(column.clone(), v);
                        }
                        None => {
                            target.remove(column);
                        }
                    }
                }
            }
            Kind::Delete => {
                let Some(partition) = tables.get_mut(&key) else { return Ok(()) };
                if parsed.restrictions.len() == table.partition_key.len() {
                    tables.remove(&key);
                    return Ok(());
                }
                let doomed: Vec<Vec<Cell>> = matching_rows(table, partition, &parsed.restrictions, bound)
                    .into_iter()
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in doomed {
                    partition.rows.remove(&k);
                }
                if partition.rows.is_empty() && partition.statics.is_empty() {
                    tables.remove(&key);
                }
            }
        }
        Ok(())
    }
}

impl Parsed {
    fn condition_present(&self) -> bool {
        !matches!(self.condition, Condition::None)
    }
}

fn decode(typ: CqlType, cell: &[u8]) -> Option<Cell> {
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

fn encode(cell: Option<&Cell>, frame: &mut Vec<u8>) {
    let body: Vec<u8> = match cell {
        None => {
            frame.extend_from_slice(&(-1i32).to_be_bytes());
            return;
        }
        Some(Cell::BigInt(v)) => v.to_be_bytes().to_vec(),
        Some(Cell::Int(v)) => v.to_be_bytes().to_vec(),
        Some(Cell::Boolean(v)) => vec![u8::from(*v)],
        Some(Cell::Bytes(v)) => v.clone(),
    };
    frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
    frame.extend_from_slice(&body);
}

fn partition_key(table: &Table, restrictions: &[Cond], bound: &[Option<Cell>]) -> Option<Vec<Cell>> {
    table
        .partition_key
        .iter()
        .map(|k| restrictions.iter().find(|c| &c.column == k && c.op == Op::Eq).and_then(|c| bound[c.marker].clone()))
        .collect()
}

/// The equality-restricted clustering prefix (the whole key for a single row).
fn clustering_key(table: &Table, restrictions: &[Cond], bound: &[Option<Cell>]) -> Option<Vec<Cell>> {
    let mut key = Vec::new();
    for (column, _) in &table.clustering {
        match restrictions.iter().find(|c| &c.column == column && c.op == Op::Eq) {
            Some(c) => key.push(bound[c.marker].clone()?),
            None => break,
        }
    }
    Some(key)
}

/// Rows of a partition matching the clustering restrictions, in ascending key order.
fn matching_rows<'p>(
    table: &Table,
    partition: &'p Partition,
    restrictions: &[Cond],
    bound: &[Option<Cell>],
) -> Vec<(&'p Vec<Cell>, &'p HashMap<String, Cell>)> {
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

/// Parses a statement of the subset and checks it against the schema.
fn parse(schema: &Schema, cql: &str) -> Result<Parsed, String> {
    let t = tokens(cql);
    let up: Vec<String> = t.iter().map(|s| s.to_ascii_uppercase()).collect();
    let mut p = Parser { t: &t, up: &up, i: 0, markers: 0 };
    let (table_name, kind, restrictions, condition) = match p.next_up().as_str() {
        "SELECT" => {
            let mut columns = Vec::new();
            loop {
                columns.push(p.ident()?);
                if !p.eat(",") {
                    break;
                }
            }
            p.expect("FROM")?;
            let table = p.ident()?;
            p.expect("WHERE")?;
            let restrictions = p.conditions(&["ORDER", "LIMIT"])?;
            let mut order = None;
            if p.eat("ORDER") {
                p.expect("BY")?;
                let _column = p.ident()?;
                order = Some(match p.next_up().as_str() {
                    "ASC" => Order::Asc,
                    "DESC" => Order::Desc,
                    other => return Err(format!("ORDER BY ... {other}")),
                });
            }
            let limit = if p.eat("LIMIT") { Some(p.marker()?) } else { None };
            (table, Kind::Select { columns, order, limit }, restrictions, Condition::None)
        }
        "INSERT" => {
            p.expect("INTO")?;
            let table = p.ident()?;
            p.expect("(")?;
            let mut names = Vec::new();
            loop {
                names.push(p.ident()?);
                if !p.eat(",") {
                    break;
                }
            }
            p.expect(")")?;
            p.expect("VALUES")?;
            p.expect("(")?;
            let mut columns = Vec::new();
            for (n, name) in names.iter().enumerate() {
                if n > 0 {
                    p.expect(",")?;
                }
                columns.push((name.clone(), p.marker()?));
            }
            p.expect(")")?;
            let condition = if p.eat("IF") {
                p.expect("NOT")?;
                p.expect("EXISTS")?;
                Condition::NotExists
            } else {
                Condition::None
            };
            if p.eat("USING") {
                p.expect("TTL")?;
                p.marker()?;
            }
            let restrictions =
                columns.iter().map(|(c, m)| Cond { column: c.clone(), op: Op::Eq, marker: *m }).collect();
            (table, Kind::Insert { columns }, restrictions, condition)
        }
        "UPDATE" => {
            let table = p.ident()?;
            if p.eat("USING") {
                p.expect("TTL")?;
                p.marker()?;
            }
            p.expect("SET")?;
            let mut set = Vec::new();
            loop {
                let column = p.ident()?;
                p.expect("=")?;
                set.push((column, p.marker()?));
                if !p.eat(",") {
                    break;
                }
            }
            p.expect("WHERE")?;
            let restrictions = p.conditions(&["IF"])?;
            let condition = p.if_clause()?;
            (table, Kind::Update { set }, restrictions, condition)
        }
        "DELETE" => {
            p.expect("FROM")?;
            let table = p.ident()?;
            p.expect("WHERE")?;
            let restrictions = p.conditions(&["IF"])?;
            let condition = p.if_clause()?;
            (table, Kind::Delete, restrictions, condition)
        }
        other => return Err(format!("unsupported statement {other}")),
    };
    if p.i != t.len() {
        return Err(format!("unexpected `{}`", t[p.i..].join(" ")));
    }
    let table = schema.table(&table_name).ok_or_else(|| format!("no table {table_name} in the migrations"))?;
    let mut markers = vec![None; p.markers];
    let column_type =
        |name: &str| table.column(name).map(|c| c.typ).ok_or_else(|| format!("{}: no column {name}", table.name));
    for c in &restrictions {
        markers[c.marker] = Some(column_type(&c.column)?);
    }
    check_key(table, &kind, &restrictions)?;
    match &kind {
        Kind::Select { columns, limit, .. } => {
            for c in columns {
                column_type(c)?;
            }
            if let Some(m) = limit {
                markers[*m] = Some(CqlType::Int);
            }
        }
        Kind::Insert { columns } | Kind::Update { set: columns } => {
            for (c, m) in columns {
                markers[*m] = Some(column_type(c)?);
            }
            if let Kind::Update { set } = &kind
                && let Some((c, _)) = set.iter().find(|(c, _)| table.is_key(c))
            {
                return Err(format!("UPDATE sets key column {c}"));
            }
        }
        Kind::Delete => {}
    }
    if let Condition::Columns(conds) = &condition {
        for c in conds {
            if table.is_key(&c.column) {
                return Err(format!("IF on key column {}", c.column));
            }
            markers[c.marker] = Some(column_type(&c.column)?);
        }
    }
    // TTL markers bind an int
    let markers = markers.into_iter().map(|m| m.unwrap_or(CqlType::Int)).collect();
    Ok(Parsed { table: table_name, kind, restrictions, condition, markers })
}

/// The key restrictions a statement kind needs: the whole partition key by `=`; then a
/// clustering prefix by `=` and at most one range, on the next column.
fn check_key(table: &Table, kind: &Kind, restrictions: &[Cond]) -> Result<(), String> {
    for c in restrictions {
        if !table.is_key(&c.column) && !matches!(kind, Kind::Insert { .. }) {
            return Err(format!("WHERE on {}, not a key column", c.column));
        }
    }
    for k in &table.partition_key {
        if !restrictions.iter().any(|c| &c.column == k && c.op == Op::Eq) {
            return Err(format!("the partition key column {k} is not restricted by ="));
        }
    }
    let mut prefix = 0;
    for (k, _) in &table.clustering {
        if restrictions.iter().any(|c| &c.column == k && c.op == Op::Eq) {
            prefix += 1;
        } else {
            break;
        }
    }
    for (at, (k, _)) in table.clustering.iter().enumerate() {
        let restricted = restrictions.iter().filter(|c| &c.column == k).collect::<Vec<_>>();
        if at > prefix && !restricted.is_empty() {
            return Err(format!("clustering column {k} restricted after an unrestricted or ranged one"));
        }
        if at == prefix && restricted.iter().any(|c| c.op == Op::Ne) {
            return Err(format!("!= on clustering column {k}"));
        }
    }
    let whole_row = prefix == table.clustering.len();
    match kind {
        Kind::Insert { columns } => {
            if !whole_row {
                let sets_only_statics =
                    columns.iter().all(|(c, _)| table.is_key(c) || table.column(c).is_some_and(|c| c.is_static));
                if !(prefix == 0 && sets_only_statics) {
                    return Err("INSERT without the whole primary key".into());
                }
            }
        }
        Kind::Update { set } => {
            let ranged = restrictions.len() > table.partition_key.len() + prefix;
            let only_statics = prefix == 0 && set.iter().all(|(c, _)| table.column(c).is_some_and(|c| c.is_static));
            if ranged || !(whole_row || only_statics) {
                return Err("UPDATE needs the whole primary key (or only the partition key, for static columns)".into());
            }
        }
        Kind::Select { .. } | Kind::Delete => {}
    }
    Ok(())
}

struct Parser<'a> {
    t: &'a [String],
    up: &'a [String],
    i: usize,
    markers: usize,
}

impl Parser<'_> {
    fn next_up(&mut self) -> String {
        let s = self.up.get(self.i).cloned().unwrap_or_default();
        self.i += 1;
        s
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.up.get(self.i).map(String::as_str) == Some(word) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, word: &str) -> Result<(), String> {
        if self.eat(word) {
            Ok(())
        } else {
            Err(format!("expected {word} at `{}`", self.t.get(self.i).map_or("<end>", String::as_str)))
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.t.get(self.i) {
            Some(s) if s.chars().all(|c| c.is_alphanumeric() || c == '_') && !s.is_empty() => {
                self.i += 1;
                Ok(s.clone())
            }
            other => Err(format!("expected a name, found {other:?} (only named columns, no literals)")),
        }
    }

    fn marker(&mut self) -> Result<usize, String> {
        if self.t.get(self.i).map(String::as_str) == Some("?") {
            self.i += 1;
            self.markers += 1;
            Ok(self.markers - 1)
        } else {
            Err(format!("expected ?, found {:?} (values are bound, never literal)", self.t.get(self.i)))
        }
    }

    /// `c op ? AND c op ? ...` until one of `stop` or the end.
    fn conditions(&mut self, stop: &[&str]) -> Result<Vec<Cond>, String> {
        let mut out = Vec::new();
        loop {
            let column = self.ident()?;
            let op = self
                .t
                .get(self.i)
                .and_then(|s| Op::parse(s))
                .ok_or_else(|| format!("expected an operator after {column}"))?;
            self.i += 1;
            out.push(Cond { column, op, marker: self.marker()? });
            if self.i >= self.t.len() || stop.contains(&self.up[self.i].as_str()) {
                return Ok(out);
            }
            self.expect("AND")?;
        }
    }

    fn if_clause(&mut self) -> Result<Condition, String> {
        if !self.eat("IF") {
            return Ok(Condition::None);
        }
        if self.eat("EXISTS") {
            return Ok(Condition::Exists);
        }
        Ok(Condition::Columns(self.conditions(&[])?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cql, statement, values};

    fn engine() -> Cql {
        let schema = Schema::parse([(
            "test",
            "CREATE TABLE IF NOT EXISTS m (c bigint, u bigint, name text STATIC, version bigint STATIC, role int, \
             PRIMARY KEY ((c), u)) WITH CLUSTERING ORDER BY (u DESC);\n\
             CREATE TABLE IF NOT EXISTS k (key text, owner bigint, PRIMARY KEY ((key)));",
        )])
        .unwrap();
        Cql::memory(Arc::new(MemoryCql::new(schema)))
    }

    static PUT: Statement = statement!("t.put", idempotent, "INSERT INTO m (c, u, role) VALUES (?, ?, ?)");
    static LIST: Statement =
        statement!("t.list", idempotent, "SELECT u, role, name FROM m WHERE c = ? AND u < ? ORDER BY u ASC LIMIT ?");
    static NEWEST: Statement = statement!("t.newest", idempotent, "SELECT u FROM m WHERE c = ? LIMIT ?");
    static BUMP: Statement =
        statement!("t.bump", not_idempotent, "UPDATE m SET name = ?, version = ? WHERE c = ? IF version = ?");
    static PUT_IF_VERSION: Statement =
        statement!("t.put_if", not_idempotent, "UPDATE m SET role = ? WHERE c = ? AND u = ? IF version = ?");
    static CLAIM: Statement =
        statement!("t.claim", not_idempotent, "INSERT INTO k (key, owner) VALUES (?, ?) IF NOT EXISTS");
    static RELEASE: Statement = statement!("t.release", not_idempotent, "DELETE FROM k WHERE key = ? IF owner = ?");
    static OWNER: Statement = statement!("t.owner", idempotent, "SELECT owner FROM k WHERE key = ?");
    static TRIM: Statement = statement!("t.trim", idempotent, "DELETE FROM m WHERE c = ? AND u <= ?");
    static WRONG_TYPE: Statement = statement!("t.wrong", idempotent, "SELECT u FROM m WHERE c = ? AND u = ?");

    #[tokio::test]
    async fn clustering_order_ranges_limits_and_statics() {
        let cql = engine();
        for u in 1..=5u64 {
            cql.execute(&PUT, values![9u64, u, u as i32]).await.unwrap();
        }
        assert!(cql.lwt(&BUMP, values!["general", 1i64, 9u64, Option::<i64>::None]).await.unwrap(), "null version");
        let rows: Vec<(i64, i32, Option<String>)> = cql.rows(&LIST, values![9u64, 4u64, 2i32]).await.unwrap();
        assert_eq!(rows, vec![(1, 1, Some("general".into())), (2, 2, Some("general".into()))]);
        let newest: Vec<(i64,)> = cql.rows(&NEWEST, values![9u64, 2i32]).await.unwrap();
        assert_eq!(newest, vec![(5,), (4,)], "the table's order is DESC");
        cql.execute(&TRIM, values![9u64, 3u64]).await.unwrap();
        let newest: Vec<(i64,)> = cql.rows(&NEWEST, values![9u64, 10i32]).await.unwrap();
        assert_eq!(newest, vec![(5,), (4,)]);
    }

    #[tokio::test]
    async fn lightweight_transactions_and_conditional_batches() {
        let cql = engine();
        assert!(cql.lwt(&CLAIM, values!["a", 1u64]).await.unwrap());
        assert!(!cql.lwt(&CLAIM, values!["a", 2u64]).await.unwrap());
        assert!(!cql.lwt(&RELEASE, values!["a", 2u64]).await.unwrap());
        assert_eq!(cql.row::<(i64,)>(&OWNER, values!["a"]).await.unwrap(), Some((1,)));
        assert!(cql.lwt(&RELEASE, values!["a", 1u64]).await.unwrap());
        assert_eq!(cql.row::<(i64,)>(&OWNER, values!["a"]).await.unwrap(), None);

        assert!(cql.lwt(&BUMP, values!["x", 1i64, 9u64, Option::<i64>::None]).await.unwrap());
        let batch = |expected: i64, next: i64| {
            vec![(&BUMP, values!["x", next, 9u64, expected]), (&PUT_IF_VERSION, values![3i32, 9u64, 7u64, expected])]
        };
        assert!(!cql.batch(crate::BatchKind::Unlogged, batch(5, 6)).await.unwrap(), "a stale version");
        assert!(cql.batch(crate::BatchKind::Unlogged, batch(1, 2)).await.unwrap());
        let rows: Vec<(i64, i32, Option<String>)> = cql.rows(&LIST, values![9u64, 100u64, 10i32]).await.unwrap();
        assert_eq!(rows, vec![(7, 3, Some("x".into()))]);
        let spans = vec![(&BUMP, values!["x", 3i64, 9u64, 2i64]), (&CLAIM, values!["b", 1u64])];
        assert!(cql.batch(crate::BatchKind::Logged, spans).await.is_err(), "a conditional batch on two partitions");
    }

    #[tokio::test]
    async fn values_and_rows_are_type_checked_by_the_driver() {
        let cql = engine();
        let err = cql.execute(&PUT, values![9u64, "one", 1i32]).await.unwrap_err();
        assert!(err.to_string().contains("value 2"), "{err}");
        let err = cql.rows::<(String,)>(&WRONG_TYPE, values![9u64, 1u64]).await.unwrap_err();
        assert!(err.to_string().contains("result rows"), "{err}");
        let err = cql.execute(&PUT, values![9u64, 1u64]).await.unwrap_err();
        assert!(err.to_string().contains("2 values bound to 3 markers"), "{err}");
    }

    #[test]
    fn statements_outside_the_subset_are_refused_with_a_reason() {
        let schema =
            Schema::parse([("t", "CREATE TABLE IF NOT EXISTS m (c bigint, u bigint, r int, PRIMARY KEY ((c), u));")])
                .unwrap();
        for (cql, reason) in [
            ("SELECT u FROM m WHERE u = ?", "partition key"),
            ("SELECT u FROM m WHERE c = ? LIMIT 1", "never literal"),
            ("SELECT u FROM m WHERE c = ? AND r = ?", "not a key column"),
            ("SELECT x FROM m WHERE c = ?", "no column x"),
            ("SELECT u FROM n WHERE c = ?", "no table n"),
            ("UPDATE m SET r = ? WHERE c = ?", "whole primary key"),
            ("INSERT INTO m (c, r) VALUES (?, ?)", "whole primary key"),
        ] {
            let err = parse(&schema, cql).unwrap_err();
            assert!(err.contains(reason), "{cql}: {err}");
        }
    }
}
