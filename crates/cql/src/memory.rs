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
//! NOT EXISTS] [USING TTL ? | TIMESTAMP ? [AND ...]]`; `UPDATE t [USING ...] SET c = ?, ... WHERE
//! <key> [IF EXISTS | IF c op ? AND ...]`; `DELETE FROM t [USING TIMESTAMP ?] WHERE <key
//! prefix> [range] [IF EXISTS | IF ...]`. TTLs are accepted and not enforced.
//!
//! # Write timestamps, as a cluster orders writes
//!
//! Every cell, row marker and tombstone carries the write timestamp (microseconds) it was
//! written with, and reads see what ScyllaDB would:
//! - a write's timestamp is its statement's `USING TIMESTAMP ?` if it has one, else its
//!   *process's* clock (below); all statements of a batch share one;
//! - per cell, the highest timestamp wins whatever the order writes arrive in; on a tie a
//!   tombstone wins, then the larger value (as Cassandra and ScyllaDB reconcile);
//! - `DELETE` writes a partition tombstone (partition key only), a row tombstone (the whole
//!   primary key) or a range tombstone (a clustering prefix and/or range); writing `null` writes
//!   a cell tombstone. A tombstone hides every write to what it covers with a timestamp *lower or
//!   equal* to its own; later writes show through;
//! - lightweight transactions take their timestamp from the Paxos ballot (the executor's clock,
//!   above any earlier ballot on that partition) and refuse `USING TIMESTAMP`, as ScyllaDB does;
//!   so is a `USING TIMESTAMP` more than 3 days ahead of the executor's clock (ScyllaDB's
//!   default `restrict_future_timestamp`), with [`CqlError::Invalid`].
//!
//! **Processes.** [`MemoryCql::client`] gives a [`Cql`] for one more simulated process (a pod)
//! on the same data: its clock is the executor's, `skew_ms` off, and monotonic (like the
//! driver's `MonotonicTimestampGenerator`). [`Cql::memory`] is `client(0)`: with no skew every
//! write gets a higher timestamp than the one before it, whichever handle sent it, so call order
//! is last-write-wins order, as before timestamps were modelled. The executor's clock is the
//! wall clock, unless [`MemoryCql::set_time`] pins it (then it moves 1 µs per timestamp taken).
//! [`Cql::crash`] stops a process: every later call through that handle or any clone of it (the
//! ones its store's background tasks hold) fails, as a dead pod sends nothing; a new process on
//! the same `MemoryCql` is the restarted pod.
//!
//! ```
//! # use std::sync::Arc;
//! # use chatmesh_cql::{MemoryCql, Statement, schema::Schema, statement, values};
//! static PUT: Statement = statement!("doc.put", idempotent, "INSERT INTO kv (k, v) VALUES (?, ?)");
//! static GET: Statement = statement!("doc.get", idempotent, "SELECT v FROM kv WHERE k = ?");
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), chatmesh_cql::CqlError> {
//! # let schema = Schema::parse([("0001", "CREATE TABLE IF NOT EXISTS kv (k text, v text, PRIMARY KEY ((k)));")]).unwrap();
//! let memory = Arc::new(MemoryCql::new(schema));
//! let pod_a = memory.client(0);
//! let pod_b = memory.client(-2_000); // its clock runs 2 s behind
//! pod_a.execute(&PUT, values!["k", "from a"]).await?;
//! pod_b.execute(&PUT, values!["k", "from b"]).await?; // sent later, stamped earlier: it loses
//! assert_eq!(pod_a.row::<(String,)>(&GET, values!["k"]).await?, Some(("from a".to_owned(),)));
//! pod_b.crash();
//! assert!(pod_b.row::<(String,)>(&GET, values!["k"]).await.is_err(), "a crashed pod sends nothing");
//! # Ok(()) }
//! ```
//!
//! # Failed writes that apply later
//!
//! [`MemoryCql::fail_writes`] makes writes fail as a write timeout does, applied (as the
//! batchlog would) or not. [`MemoryCql::hold_writes`] (or [`MemoryCql::hold_writes_of`] a given
//! statement) makes them fail *and wait*: [`MemoryCql::release_held`] applies them later, after
//! whatever ran meanwhile, with the timestamp they were sent with, as a batchlog replay does
//! (a held lightweight transaction is decided when released).
//!
//! ```
//! # use std::sync::Arc;
//! # use chatmesh_cql::{BatchKind, MemoryCql, Statement, schema::Schema, statement, values};
//! # static PUT: Statement = statement!("doc.put", idempotent, "INSERT INTO kv (k, v) VALUES (?, ?)");
//! # static GET: Statement = statement!("doc.get", idempotent, "SELECT v FROM kv WHERE k = ?");
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), chatmesh_cql::CqlError> {
//! # let schema = Schema::parse([("0001", "CREATE TABLE IF NOT EXISTS kv (k text, v text, PRIMARY KEY ((k)));")]).unwrap();
//! let memory = Arc::new(MemoryCql::new(schema));
//! let cql = memory.client(0);
//! memory.hold_writes_of(&PUT, 1);
//! let old = cql.batch(BatchKind::Logged, vec![(&PUT, values!["k", "old"])]).await;
//! assert!(old.is_err(), "the caller sees a timeout");
//! cql.execute(&PUT, values!["k", "new"]).await?;
//! assert_eq!(memory.release_held(), 1); // the batchlog replays it now, stamped when it was sent
//! assert_eq!(cql.row::<(String,)>(&GET, values!["k"]).await?, Some(("new".to_owned(),)));
//! # Ok(()) }
//! ```
//!
//! [`MemoryCql::pause_before`] stops the next call of a statement, from whichever process, until
//! the test releases it, so two processes interleave exactly where a race needs them to:
//!
//! ```
//! # use std::sync::Arc;
//! # use chatmesh_cql::{MemoryCql, Statement, schema::Schema, statement, values};
//! # static PUT: Statement = statement!("doc.put", idempotent, "INSERT INTO kv (k, v) VALUES (?, ?)");
//! # static GET: Statement = statement!("doc.get", idempotent, "SELECT v FROM kv WHERE k = ?");
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), chatmesh_cql::CqlError> {
//! # let schema = Schema::parse([("0001", "CREATE TABLE IF NOT EXISTS kv (k text, v text, PRIMARY KEY ((k)));")]).unwrap();
//! let memory = Arc::new(MemoryCql::new(schema));
//! let (pod_a, pod_b) = (memory.client(0), memory.client(0));
//! let mut pause = memory.pause_before(&PUT);
//! let stalled = tokio::spawn(async move { pod_a.execute(&PUT, values!["k", "a"]).await });
//! pause.reached().await; // pod A is about to write
//! assert_eq!(pod_b.row::<(String,)>(&GET, values!["k"]).await?, None);
//! pause.release();
//! stalled.await.expect("pod A's task")?;
//! assert_eq!(pod_b.row::<(String,)>(&GET, values!["k"]).await?, Some(("a".to_owned(),)));
//! # Ok(()) }
//! ```
//!
//! # Tombstones scanned and batch sizes
//!
//! Each read counts the tombstones it scans, in its order, until its `LIMIT` is reached (the
//! partition tombstone, range tombstones over the rows it passes, dead rows, row tombstones and
//! cell tombstones of the rows it returns; tombstones are never purged: gc_grace is 10 days),
//! and each batch spanning partitions its size (the bytes of its bound values, approximating
//! ScyllaDB's size of its mutations). Both are exposed by [`MemoryCql::stats`] and checked
//! against [`Limits`] (ScyllaDB's defaults unless [`MemoryCql::set_limits`] says otherwise):
//! past a fail threshold the read fails, or the batch is refused ([`CqlError::Invalid`]).
//!
//! # A lint over declared statements
//!
//! [`MemoryCql::lint`] reports each lightweight transaction that compares-and-sets one row of a
//! partition holding many ([`CoarseLwt`]): Paxos serializes the whole partition, so
//! transactions on different rows of it contend.

use std::{
    cmp::Ordering,
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, Ordering as AtomicOrdering},
    },
};

use bytes::Bytes;
use scylla::{
    deserialize::{FrameSlice, row::ColumnIterator},
    frame::response::result::{ColumnSpec, TableSpec},
    serialize::{value::SerializeValue, writers::CellWriter},
};
use tokio::sync::oneshot;

use crate::{
    Cql, CqlError, Engine, FromRow, Statement, Value,
    schema::{CqlType, Order, Schema, Table, tokens},
};

/// ScyllaDB's thresholds (its `db/config.cc`, scylladb/scylladb@001581c6, the values
/// `scylla.yaml` defaults to):
/// - `tombstone_warn_threshold: 1000` — "the maximum number of tombstones a query can scan
///   before warning";
/// - `tombstone_failure_threshold: 100000` — Cassandra aborts a read there; ScyllaDB marks the
///   option *Unused* and instead cuts a page after `query_tombstone_page_limit: 10000`
///   tombstones (unpaged reads, as the stores run, were killed there until scylladb#17241).
///   This executor fails a read past 100,000 so a runaway scan fails a test either way;
/// - `batch_size_warn_threshold_in_kb: 128` and `batch_size_fail_threshold_in_kb: 1024` — "fail
///   any multiple-partition batch exceeding this value" (an InvalidRequest: nothing applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub tombstone_warn: usize,
    pub tombstone_fail: usize,
    pub batch_warn_bytes: usize,
    pub batch_fail_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { tombstone_warn: 1000, tombstone_fail: 100_000, batch_warn_bytes: 128 << 10, batch_fail_bytes: 1 << 20 }
    }
}

/// What reads and batches cost so far (see [`MemoryCql::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Per `SELECT` statement, by name.
    pub reads: BTreeMap<&'static str, ReadStats>,
    /// Batches spanning more than one partition (the ones ScyllaDB measures).
    pub batches: usize,
    /// The largest of them, in bytes of bound values.
    pub max_batch_bytes: usize,
    /// How many of them passed [`Limits::batch_warn_bytes`].
    pub batch_warnings: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub runs: usize,
    /// The most tombstones one run scanned.
    pub max_tombstones: usize,
    /// Runs that scanned more than [`Limits::tombstone_warn`].
    pub warnings: usize,
}

/// A lightweight transaction on one row of a partition that holds many rows (see
/// [`MemoryCql::lint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoarseLwt {
    pub statement: &'static str,
    pub table: String,
    /// What Paxos serializes.
    pub partition_key: Vec<String>,
    /// What the statement compares and sets: the partition key and the clustering columns it
    /// restricts.
    pub row_key: Vec<String>,
}

impl std::fmt::Display for CoarseLwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: compares-and-sets a row of {} by ({}), but Paxos serializes its whole partition ({}): \
             transactions on other rows of it contend",
            self.statement,
            self.table,
            self.row_key.join(", "),
            self.partition_key.join(", ")
        )
    }
}

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
    /// The marker of `USING TIMESTAMP ?`.
    timestamp: Option<usize>,
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

impl Cell {
    /// Its serialized size (what a batch's size is counted in).
    fn size(&self) -> usize {
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
struct Stamped {
    value: Option<Cell>,
    ts: i64,
}

impl Stamped {
    /// Whether it wins over `other` when both are written to one cell: the later timestamp; on
    /// a tie a tombstone, then the larger serialized value (as Cassandra and ScyllaDB reconcile).
    fn supersedes(&self, other: &Stamped) -> bool {
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
    fn live(&self, shadow: Option<i64>) -> Option<&Cell> {
        self.value.as_ref().filter(|_| shadow.is_none_or(|s| self.ts > s))
    }
}

/// Writes `cell` to `column` unless what is there supersedes it.
fn write_cell(cells: &mut HashMap<String, Stamped>, column: &str, cell: Stamped) {
    match cells.get(column) {
        Some(old) if !cell.supersedes(old) => {}
        _ => {
            cells.insert(column.to_owned(), cell);
        }
    }
}

fn latest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    a.max(b)
}

#[derive(Debug, Default)]
struct Row {
    /// The row marker an INSERT writes (the row exists while it is live, even with no cells).
    marker: Option<i64>,
    /// A row tombstone.
    deleted: Option<i64>,
    cells: HashMap<String, Stamped>,
}

/// Deletes the rows starting with `prefix` whose next clustering column satisfies `bounds`
/// (ranges only; none: every row with the prefix).
#[derive(Debug)]
struct RangeTombstone {
    prefix: Vec<Cell>,
    bounds: Vec<(Op, Cell)>,
    ts: i64,
}

/// One end of a range: its value and whether it is inclusive (`None`: unbounded).
type End<'a> = Option<(&'a Cell, bool)>;

impl RangeTombstone {
    fn covers(&self, key: &[Cell]) -> bool {
        key.starts_with(&self.prefix)
            && key.get(self.prefix.len()).is_some_and(|c| self.bounds.iter().all(|(op, b)| op.holds(c.cmp(b))))
    }

    /// The lowest and highest bounds.
    fn interval(&self) -> (End<'_>, End<'_>) {
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
    fn dominates(&self, other: &RangeTombstone) -> bool {
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
struct Partition {
    /// A partition tombstone.
    deleted: Option<i64>,
    statics: HashMap<String, Stamped>,
    rows: BTreeMap<Vec<Cell>, Row>,
    /// Range tombstones, none dominating another.
    ranges: Vec<RangeTombstone>,
    /// The last Paxos ballot's timestamp.
    ballot: i64,
}

impl Partition {
    fn static_value(&self, column: &str) -> Option<&Cell> {
        self.statics.get(column).and_then(|c| c.live(self.deleted))
    }

    fn has_live_statics(&self) -> bool {
        self.statics.values().any(|c| c.live(self.deleted).is_some())
    }

    /// The newest tombstone covering the row at `key`.
    fn shadow(&self, key: &[Cell], row: &Row) -> Option<i64> {
        let ranged = self.ranges.iter().filter(|r| r.covers(key)).map(|r| r.ts).max();
        latest(latest(self.deleted, row.deleted), ranged)
    }

    /// The row's live cells, if the row is live (a live marker or a live cell).
    fn live_row<'p>(&self, key: &[Cell], row: &'p Row) -> Option<HashMap<&'p str, &'p Cell>> {
        let shadow = self.shadow(key, row);
        let cells: HashMap<&str, &Cell> =
            row.cells.iter().filter_map(|(name, c)| c.live(shadow).map(|v| (name.as_str(), v))).collect();
        let marker = row.marker.is_some_and(|ts| shadow.is_none_or(|s| ts > s));
        (marker || !cells.is_empty()).then_some(cells)
    }

    fn add_range(&mut self, tombstone: RangeTombstone) {
        if self.ranges.iter().any(|r| r.dominates(&tombstone)) {
            return;
        }
        self.ranges.retain(|r| !tombstone.dominates(r));
        self.ranges.push(tombstone);
    }
}

#[derive(Debug, Default)]
struct Data {
    tables: HashMap<String, BTreeMap<Vec<Cell>, Partition>>,
}

/// What an injected write timeout does to the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Lost,
    Applied,
    Held,
}

#[derive(Debug)]
struct Fault {
    /// Only writes holding this statement (by name); `None`: any write.
    statement: Option<&'static str>,
    remaining: usize,
    outcome: Outcome,
}

/// One statement of a write, bound and checked.
#[derive(Debug)]
struct Mutation {
    stmt: &'static Statement,
    parsed: Arc<Parsed>,
    bound: Vec<Option<Cell>>,
    partition: Vec<Cell>,
    /// Its `USING TIMESTAMP`.
    timestamp: Option<i64>,
}

/// A write that timed out and waits to be applied; `ts` is `None` for a lightweight
/// transaction (its ballot is taken when it is decided).
#[derive(Debug)]
struct HeldWrite {
    mutations: Vec<Mutation>,
    ts: Option<i64>,
}

/// The executor's clock: the wall clock unless pinned, never twice the same microsecond.
#[derive(Debug, Default)]
struct Clock {
    pinned: Option<i64>,
    last: i64,
}

fn wall_micros() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// A simulated process (a pod): its clock's skew, its last timestamp, whether it crashed.
#[derive(Debug)]
struct Process {
    skew_us: i64,
    last: AtomicI64,
    crashed: AtomicBool,
}

/// One process's handle on the executor: what [`Cql`] holds.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    engine: Arc<MemoryCql>,
    process: Arc<Process>,
}

impl Client {
    fn alive(&self, stmt: &'static Statement) -> Result<(), CqlError> {
        if self.process.crashed.load(AtomicOrdering::Acquire) {
            return Err(CqlError::Failed { statement: stmt.name, message: "the process crashed (simulated)".into() });
        }
        Ok(())
    }

    pub(crate) fn crash(&self) {
        self.process.crashed.store(true, AtomicOrdering::Release);
    }

    pub(crate) fn check(&self, stmt: &'static Statement) -> Result<(), CqlError> {
        self.engine.parse(stmt).map(|_| ())
    }

    /// Waits at a pause set on one of `statements`, if any (see [`MemoryCql::pause_before`]).
    async fn pass(&self, statements: &[&'static str]) {
        let gate = {
            let mut gates = self.engine.gates.lock().expect("pauses");
            gates.iter().position(|g| statements.contains(&g.statement)).map(|at| gates.remove(at))
        };
        if let Some(gate) = gate {
            let _ = gate.reached.send(());
            // why: a dropped pause lets the call run rather than hang it
            let _ = gate.release.await;
        }
    }

    pub(crate) async fn rows<R: FromRow>(
        &self,
        stmt: &'static Statement,
        values: Vec<Value>,
    ) -> Result<Vec<R>, CqlError> {
        self.pass(&[stmt.name]).await;
        self.alive(stmt)?;
        self.engine.rows(stmt, values)
    }

    /// Runs a write (one statement, or a batch); returns whether it was applied.
    pub(crate) async fn write(
        &self,
        items: Vec<(&'static Statement, Vec<Value>)>,
        is_batch: bool,
    ) -> Result<bool, CqlError> {
        let names: Vec<&'static str> = items.iter().map(|(s, _)| s.name).collect();
        self.pass(&names).await;
        self.alive(items[0].0)?;
        self.engine.write(&self.process, items, is_batch)
    }
}

/// A call stopped before it runs, until released (see [`MemoryCql::pause_before`]).
#[derive(Debug)]
pub struct Pause {
    reached: oneshot::Receiver<()>,
    release: oneshot::Sender<()>,
}

impl Pause {
    /// Waits until a call reaches the pause; it then waits for [`release`](Self::release).
    pub async fn reached(&mut self) {
        let _ = (&mut self.reached).await;
    }

    /// Lets the paused call run (dropping the pause does too).
    pub fn release(self) {
        let _ = self.release.send(());
    }
}

#[derive(Debug)]
struct Gate {
    statement: &'static str,
    reached: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

/// The in-memory executor; see the module docs.
#[derive(Debug)]
pub struct MemoryCql {
    schema: Schema,
    parsed: Mutex<HashMap<&'static str, Arc<Parsed>>>,
    data: Mutex<Data>,
    clock: Mutex<Clock>,
    faults: Mutex<Vec<Fault>>,
    held: Mutex<Vec<HeldWrite>>,
    gates: Mutex<Vec<Gate>>,
    limits: Mutex<Limits>,
    stats: Mutex<Stats>,
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
            clock: Mutex::new(Clock::default()),
            faults: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
            gates: Mutex::new(Vec::new()),
            limits: Mutex::new(Limits::default()),
            stats: Mutex::new(Stats::default()),
        }
    }

    /// An empty executor on the schema of every migration.
    pub fn migrated() -> Arc<Self> {
        Arc::new(Self::new(crate::migrate::schema().expect("the migrations parse")))
    }

    /// A handle for one more simulated process on this data, its clock `skew_ms` off the
    /// executor's (negative: behind) and monotonic; see the module docs.
    pub fn client(self: &Arc<Self>, skew_ms: i64) -> Cql {
        let process =
            Process { skew_us: skew_ms * 1000, last: AtomicI64::new(i64::MIN), crashed: AtomicBool::new(false) };
        let client = Client { engine: self.clone(), process: Arc::new(process) };
        Cql { engine: Engine::Memory(client), recorder: None }
    }

    /// Pins the executor's clock at `unix_ms`: from then on it moves 1 µs per timestamp taken
    /// (never backward), so timestamps a test compares are exact.
    pub fn set_time(&self, unix_ms: i64) {
        self.clock.lock().expect("clock").pinned = Some(unix_ms * 1000);
    }

    /// Makes the next `count` writes (statements or batches) fail as a write timeout does:
    /// with `applied`, they are applied anyway (as a batchlog replay or a late replica would),
    /// otherwise not at all.
    pub fn fail_writes(&self, count: usize, applied: bool) {
        let outcome = if applied { Outcome::Applied } else { Outcome::Lost };
        self.fault(None, count, outcome);
    }

    /// Makes the next `count` writes fail as a write timeout does and wait, unapplied, for
    /// [`release_held`](Self::release_held).
    pub fn hold_writes(&self, count: usize) {
        self.fault(None, count, Outcome::Held);
    }

    /// Like [`hold_writes`](Self::hold_writes), for the next `count` writes (statements or
    /// batches) holding `statement`; other writes run.
    pub fn hold_writes_of(&self, statement: &'static Statement, count: usize) {
        self.fault(Some(statement.name), count, Outcome::Held);
    }

    fn fault(&self, statement: Option<&'static str>, count: usize, outcome: Outcome) {
        self.faults.lock().expect("faults").push(Fault { statement, remaining: count, outcome });
    }

    /// Stops the next call (read, write or batch) of `statement`, from any process, before it
    /// runs, until the returned pause is released: the test runs other calls meanwhile, so two
    /// processes interleave exactly where it says (the paused call takes its timestamp when it
    /// runs, as a process stalled before sending does).
    pub fn pause_before(&self, statement: &'static Statement) -> Pause {
        let (reached_tx, reached) = oneshot::channel();
        let (release, release_rx) = oneshot::channel();
        let gate = Gate { statement: statement.name, reached: reached_tx, release: release_rx };
        self.gates.lock().expect("pauses").push(gate);
        Pause { reached, release }
    }

    /// How many held writes wait.
    pub fn held(&self) -> usize {
        self.held.lock().expect("held writes").len()
    }

    /// Applies every held write in the order they were sent, each with the timestamp it was
    /// sent with (a lightweight transaction is decided now); returns how many were released.
    pub fn release_held(&self) -> usize {
        let held = std::mem::take(&mut *self.held.lock().expect("held writes"));
        let count = held.len();
        for write in held {
            let mut data = self.data.lock().expect("memory data");
            let ts = match write.ts {
                Some(ts) => ts,
                None => self.ballot(&write.mutations[0], &mut data),
            };
            if self.conditions_hold(&write.mutations, &data) {
                for m in &write.mutations {
                    self.apply(m, m.timestamp.unwrap_or(ts), &mut data);
                }
            }
        }
        count
    }

    /// Sets the thresholds reads and batches are checked against (ScyllaDB's by default).
    pub fn set_limits(&self, limits: Limits) {
        *self.limits.lock().expect("limits") = limits;
    }

    /// The tombstones reads scanned and the sizes of batches, so far.
    pub fn stats(&self) -> Stats {
        self.stats.lock().expect("stats").clone()
    }

    /// Lightweight transactions among `statements` that compare-and-set one row of a partition
    /// holding many (see [`CoarseLwt`]). A conditional statement on static columns, or on a
    /// table without clustering columns, sets its whole partition and is not reported.
    pub fn lint(&self, statements: &[&'static Statement]) -> Result<Vec<CoarseLwt>, CqlError> {
        let mut found = Vec::new();
        for stmt in statements.iter().filter(|s| s.is_conditional()) {
            let parsed = self.parse(stmt)?;
            let table = self.schema.table(&parsed.table).expect("checked at parse");
            let clustering: Vec<String> = table
                .clustering
                .iter()
                .map(|(c, _)| c.clone())
                .filter(|c| parsed.restrictions.iter().any(|r| &r.column == c))
                .collect();
            if !clustering.is_empty() {
                found.push(CoarseLwt {
                    statement: stmt.name,
                    table: table.name.clone(),
                    partition_key: table.partition_key.clone(),
                    row_key: table.partition_key.iter().cloned().chain(clustering).collect(),
                });
            }
        }
        Ok(found)
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
    fn stamp(&self, process: &Process) -> i64 {
        let skewed = self.now() + process.skew_us;
        let ts = skewed.max(process.last.load(AtomicOrdering::Acquire).saturating_add(1));
        process.last.store(ts, AtomicOrdering::Release);
        ts
    }

    /// A Paxos ballot on the partition `m` writes: the executor's clock, above any earlier one.
    fn ballot(&self, m: &Mutation, data: &mut Data) -> i64 {
        let partition = data.tables.entry(m.parsed.table.clone()).or_default().entry(m.partition.clone()).or_default();
        let ballot = self.now().max(partition.ballot + 1);
        partition.ballot = ballot;
        ballot
    }

    fn rows<R: FromRow>(&self, stmt: &'static Statement, values: Vec<Value>) -> Result<Vec<R>, CqlError> {
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
        let natural = table.clustering.first().map_or(Order::Asc, |(_, o)| *o);
        if natural == Order::Desc {
            rows.reverse();
        }
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
    fn write(
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

    fn conditions_hold(&self, mutations: &[Mutation], data: &Data) -> bool {
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

    fn apply(&self, m: &Mutation, ts: i64, data: &mut Data) {
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

fn timed_out(statement: &'static str) -> CqlError {
    CqlError::Failed { statement, message: "write timeout (injected)".into() }
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

/// A value's serialized body (how equal-timestamp writes are ordered).
fn encoded(cell: &Cell) -> Vec<u8> {
    match cell {
        Cell::BigInt(v) => v.to_be_bytes().to_vec(),
        Cell::Int(v) => v.to_be_bytes().to_vec(),
        Cell::Boolean(v) => vec![u8::from(*v)],
        Cell::Bytes(v) => v.clone(),
    }
}

fn encode(cell: Option<&Cell>, frame: &mut Vec<u8>) {
    let Some(cell) = cell else {
        frame.extend_from_slice(&(-1i32).to_be_bytes());
        return;
    };
    let body = encoded(cell);
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

/// Parses a statement of the subset and checks it against the schema.
fn parse(schema: &Schema, cql: &str) -> Result<Parsed, String> {
    let t = tokens(cql);
    let up: Vec<String> = t.iter().map(|s| s.to_ascii_uppercase()).collect();
    let mut p = Parser { t: &t, up: &up, i: 0, markers: 0 };
    let mut using = Using::default();
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
            using = p.using(true)?;
            let restrictions =
                columns.iter().map(|(c, m)| Cond { column: c.clone(), op: Op::Eq, marker: *m }).collect();
            (table, Kind::Insert { columns }, restrictions, condition)
        }
        "UPDATE" => {
            let table = p.ident()?;
            using = p.using(true)?;
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
            using = p.using(false)?;
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
    if let Some(m) = using.timestamp {
        if !matches!(condition, Condition::None) {
            // as ScyllaDB refuses it: a lightweight transaction is stamped by its Paxos ballot
            return Err("a lightweight transaction cannot carry USING TIMESTAMP (its ballot is its timestamp)".into());
        }
        markers[m] = Some(CqlType::BigInt);
    }
    if let Some(m) = using.ttl {
        markers[m] = Some(CqlType::Int);
    }
    let markers = markers.into_iter().collect::<Option<Vec<_>>>().ok_or("a marker binds nothing known")?;
    Ok(Parsed { table: table_name, kind, restrictions, condition, timestamp: using.timestamp, markers })
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

/// The markers of `USING TTL ? AND TIMESTAMP ?`.
#[derive(Debug, Default)]
struct Using {
    ttl: Option<usize>,
    timestamp: Option<usize>,
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

    /// `[USING TTL ? | TIMESTAMP ? [AND ...]]` (no TTL in a DELETE).
    fn using(&mut self, ttl_allowed: bool) -> Result<Using, String> {
        let mut using = Using::default();
        if !self.eat("USING") {
            return Ok(using);
        }
        loop {
            let slot = match self.next_up().as_str() {
                "TTL" if ttl_allowed => &mut using.ttl,
                "TIMESTAMP" => &mut using.timestamp,
                other => return Err(format!("USING {other}: TTL ? or TIMESTAMP ? (no TTL in a DELETE)")),
            };
            if slot.is_some() {
                return Err("USING names an option twice".into());
            }
            *slot = Some(self.marker()?);
            if !self.eat("AND") {
                return Ok(using);
            }
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
    use crate::{BatchKind, statement, values};

    fn engine() -> (Arc<MemoryCql>, Cql) {
        let schema = Schema::parse([(
            "test",
            "CREATE TABLE IF NOT EXISTS m (c bigint, u bigint, name text STATIC, version bigint STATIC, role int, \
             PRIMARY KEY ((c), u)) WITH CLUSTERING ORDER BY (u DESC);\n\
             CREATE TABLE IF NOT EXISTS k (key text, owner bigint, PRIMARY KEY ((key)));",
        )])
        .unwrap();
        let memory = Arc::new(MemoryCql::new(schema));
        let cql = Cql::memory(memory.clone());
        (memory, cql)
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
    static PUT_OWNER: Statement = statement!("t.put_owner", idempotent, "INSERT INTO k (key, owner) VALUES (?, ?)");
    static TRIM: Statement = statement!("t.trim", idempotent, "DELETE FROM m WHERE c = ? AND u <= ?");
    static DROP: Statement = statement!("t.drop", idempotent, "DELETE FROM m WHERE c = ? AND u = ?");
    static WRONG_TYPE: Statement = statement!("t.wrong", idempotent, "SELECT u FROM m WHERE c = ? AND u = ?");
    static PUT_AT: Statement =
        statement!("t.put_at", idempotent, "INSERT INTO m (c, u, role) VALUES (?, ?, ?) USING TTL ? AND TIMESTAMP ?");
    static SET_ROLE_AT: Statement =
        statement!("t.set_role_at", idempotent, "UPDATE m USING TIMESTAMP ? SET role = ? WHERE c = ? AND u = ?");
    static NAME_AT: Statement =
        statement!("t.name_at", idempotent, "UPDATE m USING TIMESTAMP ? SET name = ? WHERE c = ?");
    static DROP_AT: Statement =
        statement!("t.drop_at", idempotent, "DELETE FROM m USING TIMESTAMP ? WHERE c = ? AND u = ?");
    static TRIM_AT: Statement =
        statement!("t.trim_at", idempotent, "DELETE FROM m USING TIMESTAMP ? WHERE c = ? AND u <= ?");
    static DROP_PARTITION_AT: Statement =
        statement!("t.drop_partition_at", idempotent, "DELETE FROM m USING TIMESTAMP ? WHERE c = ?");
    static NAME: Statement = statement!("t.name", idempotent, "SELECT name FROM m WHERE c = ? LIMIT ?");

    /// Writes `role` of row (c, u) at timestamp `ts` (a TTL of a day, not enforced).
    fn put_at(c: u64, u: u64, role: i32, ts: i64) -> (&'static Statement, Vec<Value>) {
        (&PUT_AT, values![c, u, role, 86_400i32, ts])
    }

    /// Every live row of partition `c`: (u, role), ascending.
    async fn roles(cql: &Cql, c: u64) -> Vec<(i64, Option<i32>)> {
        let rows: Vec<(i64, Option<i32>, Option<String>)> =
            cql.rows(&LIST, values![c, i64::MAX, 1000i32]).await.unwrap();
        rows.into_iter().map(|(u, role, _)| (u, role)).collect()
    }

    async fn run(cql: &Cql, (stmt, values): (&'static Statement, Vec<Value>)) {
        cql.execute(stmt, values).await.unwrap();
    }

    #[tokio::test]
    async fn clustering_order_ranges_limits_and_statics() {
        let (_, cql) = engine();
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
        let (_, cql) = engine();
        assert!(cql.lwt(&CLAIM, values!["a", 1u64]).await.unwrap());
        assert!(!cql.lwt(&CLAIM, values!["a", 2u64]).await.unwrap());
        assert!(!cql.lwt(&RELEASE, values!["a", 2u64]).await.unwrap());
        assert_eq!(cql.row::<(i64,)>(&OWNER, values!["a"]).await.unwrap(), Some((1,)));
        assert!(cql.lwt(&RELEASE, values!["a", 1u64]).await.unwrap());
        assert_eq!(cql.row::<(i64,)>(&OWNER, values!["a"]).await.unwrap(), None);
        assert!(cql.lwt(&CLAIM, values!["a", 3u64]).await.unwrap(), "a released claim can be taken again");

        assert!(cql.lwt(&BUMP, values!["x", 1i64, 9u64, Option::<i64>::None]).await.unwrap());
        let batch = |expected: i64, next: i64| {
            vec![(&BUMP, values!["x", next, 9u64, expected]), (&PUT_IF_VERSION, values![3i32, 9u64, 7u64, expected])]
        };
        assert!(!cql.batch(BatchKind::Unlogged, batch(5, 6)).await.unwrap(), "a stale version");
        assert!(cql.batch(BatchKind::Unlogged, batch(1, 2)).await.unwrap());
        let rows: Vec<(i64, i32, Option<String>)> = cql.rows(&LIST, values![9u64, 100u64, 10i32]).await.unwrap();
        assert_eq!(rows, vec![(7, 3, Some("x".into()))]);
        let spans = vec![(&BUMP, values!["x", 3i64, 9u64, 2i64]), (&CLAIM, values!["b", 1u64])];
        assert!(cql.batch(BatchKind::Logged, spans).await.is_err(), "a conditional batch on two partitions");
        let stamped = vec![(&BUMP, values!["x", 3i64, 9u64, 2i64]), put_at(9, 8, 1, 1)];
        let err = cql.batch(BatchKind::Unlogged, stamped).await.unwrap_err();
        assert!(err.to_string().contains("cannot carry USING TIMESTAMP"), "{err}");
    }

    #[tokio::test]
    async fn values_and_rows_are_type_checked_by_the_driver() {
        let (_, cql) = engine();
        let err = cql.execute(&PUT, values![9u64, "one", 1i32]).await.unwrap_err();
        assert!(err.to_string().contains("value 2"), "{err}");
        let err = cql.rows::<(String,)>(&WRONG_TYPE, values![9u64, 1u64]).await.unwrap_err();
        assert!(err.to_string().contains("result rows"), "{err}");
        let err = cql.execute(&PUT, values![9u64, 1u64]).await.unwrap_err();
        assert!(err.to_string().contains("2 values bound to 3 markers"), "{err}");
        let err = cql.execute(&PUT_AT, values![9u64, 1u64, 1i32, 60i32, 5i32]).await.unwrap_err();
        assert!(err.to_string().contains("value 5"), "a timestamp binds a bigint: {err}");
        let err = cql.execute(&TRIM, values![9u64, Option::<i64>::None]).await.unwrap_err();
        assert!(err.to_string().contains("a null in key column u"), "{err}");
    }

    #[tokio::test]
    async fn the_write_with_the_later_timestamp_wins_whatever_order_it_arrives_in() {
        let (memory, a) = engine();
        // with no skew, call order is last-write-wins order, whichever handle writes
        let same_clock = Cql::memory(memory.clone());
        a.execute(&PUT, values![1u64, 1u64, 1i32]).await.unwrap();
        same_clock.execute(&PUT, values![1u64, 1u64, 2i32]).await.unwrap();
        a.execute(&PUT, values![1u64, 1u64, 3i32]).await.unwrap();
        assert_eq!(roles(&a, 1).await, vec![(1, Some(3))]);
        // a pod whose clock is behind loses to an earlier write of a pod whose clock is not ...
        let behind = memory.client(-5_000);
        behind.execute(&PUT, values![1u64, 1u64, 4i32]).await.unwrap();
        assert_eq!(roles(&a, 1).await, vec![(1, Some(3))]);
        // ... while its own writes stay in its order (its clock is monotonic)
        behind.execute(&PUT, values![1u64, 2u64, 1i32]).await.unwrap();
        behind.execute(&PUT, values![1u64, 2u64, 2i32]).await.unwrap();
        assert_eq!(roles(&a, 1).await, vec![(1, Some(3)), (2, Some(2))]);
        // explicit timestamps decide, in INSERT and UPDATE
        run(&a, put_at(1, 3, 2, 2_000)).await;
        run(&a, put_at(1, 3, 1, 1_000)).await;
        assert_eq!(roles(&a, 1).await[2], (3, Some(2)));
        a.execute(&SET_ROLE_AT, values![1_500i64, 9i32, 1u64, 3u64]).await.unwrap();
        assert_eq!(roles(&a, 1).await[2], (3, Some(2)), "an older UPDATE loses");
        a.execute(&SET_ROLE_AT, values![2_500i64, 9i32, 1u64, 3u64]).await.unwrap();
        assert_eq!(roles(&a, 1).await[2], (3, Some(9)));
        // on a tie of live values the larger one wins, whatever the order
        run(&a, put_at(1, 4, 7, 1_000)).await;
        run(&a, put_at(1, 4, 5, 1_000)).await;
        assert_eq!(roles(&a, 1).await[3], (4, Some(7)));
    }

    #[tokio::test]
    async fn timestamps_more_than_three_days_ahead_are_refused() {
        let (memory, cql) = engine();
        memory.set_time(1_000_000);
        let three_days_us: i64 = 3 * 86_400 * 1_000_000;
        run(&cql, put_at(1, 1, 1, 1_000_000_000 + three_days_us)).await;
        let (stmt, values) = put_at(1, 1, 1, 1_000_000_001 + three_days_us);
        let err = cql.execute(stmt, values).await.unwrap_err();
        assert!(matches!(err, CqlError::Invalid { .. }), "as ScyllaDB's restrict_future_timestamp: {err}");
    }

    #[tokio::test]
    async fn a_tombstone_beats_a_write_of_the_same_timestamp() {
        let (_, cql) = engine();
        // a write, then a delete of its timestamp
        run(&cql, put_at(1, 1, 5, 1_000)).await;
        cql.execute(&DROP_AT, values![1_000i64, 1u64, 1u64]).await.unwrap();
        // a delete, then a write of its timestamp (then a newer one)
        cql.execute(&DROP_AT, values![2_000i64, 1u64, 2u64]).await.unwrap();
        run(&cql, put_at(1, 2, 5, 2_000)).await;
        assert_eq!(roles(&cql, 1).await, vec![]);
        run(&cql, put_at(1, 2, 6, 2_001)).await;
        assert_eq!(roles(&cql, 1).await, vec![(2, Some(6))]);
        // the statements of one batch share its timestamp: a delete and a write of one row in it
        // leave the row deleted, whatever their order
        let batch = vec![(&PUT, values![1u64, 3u64, 7i32]), (&DROP, values![1u64, 3u64])];
        assert!(cql.batch(BatchKind::Logged, batch).await.unwrap());
        assert_eq!(roles(&cql, 1).await, vec![(2, Some(6))]);
        // writing null is a cell tombstone: it beats a value of its timestamp; the row stays (its
        // INSERT's row marker)
        run(&cql, put_at(1, 4, 5, 1_000)).await;
        cql.execute(&SET_ROLE_AT, values![1_000i64, Option::<i32>::None, 1u64, 4u64]).await.unwrap();
        assert_eq!(roles(&cql, 1).await, vec![(2, Some(6)), (4, None)]);
    }

    #[tokio::test]
    async fn a_range_delete_hides_older_rows_and_newer_writes_show_through() {
        let (_, cql) = engine();
        for u in 1..=5 {
            run(&cql, put_at(1, u, 1, 1_000)).await;
        }
        cql.execute(&TRIM_AT, values![2_000i64, 1u64, 3u64]).await.unwrap();
        let alive = |rows: Vec<(i64, Option<i32>)>| rows.into_iter().map(|(u, _)| u).collect::<Vec<_>>();
        assert_eq!(alive(roles(&cql, 1).await), vec![4, 5]);
        run(&cql, put_at(1, 2, 1, 3_000)).await;
        run(&cql, put_at(1, 1, 1, 1_500)).await;
        assert_eq!(alive(roles(&cql, 1).await), vec![2, 4, 5], "the newer write shows, the older one stays hidden");
        // a partition tombstone hides rows and static columns older than it
        cql.execute(&NAME_AT, values![3_500i64, "general", 1u64]).await.unwrap();
        assert_eq!(
            cql.rows::<(Option<String>,)>(&NAME, values![1u64, 1i32]).await.unwrap(),
            vec![(Some("general".into()),)]
        );
        cql.execute(&DROP_PARTITION_AT, values![4_000i64, 1u64]).await.unwrap();
        assert_eq!(roles(&cql, 1).await, vec![]);
        assert_eq!(cql.rows::<(Option<String>,)>(&NAME, values![1u64, 1i32]).await.unwrap(), vec![]);
        cql.execute(&NAME_AT, values![4_001i64, "again", 1u64]).await.unwrap();
        assert_eq!(
            cql.rows::<(Option<String>,)>(&NAME, values![1u64, 1i32]).await.unwrap(),
            vec![(Some("again".into()),)]
        );
    }

    #[tokio::test]
    async fn a_held_batch_applies_later_with_its_old_timestamp_and_loses_to_newer_writes() {
        let (memory, cql) = engine();
        memory.hold_writes_of(&PUT, 2);
        cql.execute(&PUT_OWNER, values!["a", 0u64]).await.expect("a write without the held statement runs");
        let batch = vec![(&PUT, values![1u64, 1u64, 1i32]), (&PUT_OWNER, values!["a", 1u64])];
        assert!(cql.batch(BatchKind::Logged, batch).await.is_err(), "the caller sees a timeout");
        assert!(cql.execute(&PUT, values![1u64, 2u64, 1i32]).await.is_err());
        assert_eq!(memory.held(), 2);
        assert_eq!(roles(&cql, 1).await, vec![], "nothing applied yet");
        // meanwhile: a newer write of row 1, a delete of row 2
        cql.execute(&PUT, values![1u64, 1u64, 2i32]).await.expect("the holds are used up");
        cql.execute(&DROP, values![1u64, 2u64]).await.unwrap();
        assert_eq!(memory.release_held(), 2);
        assert_eq!(memory.held(), 0);
        assert_eq!(roles(&cql, 1).await, vec![(1, Some(2))], "both late writes lose to what was written after them");
        assert_eq!(cql.row::<(i64,)>(&OWNER, values!["a"]).await.unwrap(), Some((1,)), "the rest of the batch applied");
        // a timeout whose write applied anyway
        memory.fail_writes(1, true);
        assert!(cql.execute(&PUT, values![1u64, 3u64, 1i32]).await.is_err());
        assert_eq!(roles(&cql, 1).await.len(), 2);
    }

    #[tokio::test]
    async fn a_crashed_process_sends_nothing_while_others_and_its_held_writes_go_on() {
        let (memory, a) = engine();
        let pod = memory.client(0);
        let background_task = pod.clone();
        memory.hold_writes(1);
        assert!(pod.execute(&PUT, values![1u64, 1u64, 1i32]).await.is_err());
        pod.crash();
        let err = background_task.execute(&PUT, values![1u64, 2u64, 1i32]).await.unwrap_err();
        assert!(err.to_string().contains("crashed"), "{err}");
        assert!(pod.rows::<(i64,)>(&NEWEST, values![1u64, 1i32]).await.is_err());
        a.execute(&PUT, values![1u64, 3u64, 1i32]).await.unwrap();
        assert_eq!(memory.release_held(), 1, "the cluster replays a dead pod's batch");
        let restarted = memory.client(0);
        assert_eq!(roles(&restarted, 1).await, vec![(1, Some(1)), (3, Some(1))]);
    }

    #[tokio::test]
    async fn a_paused_call_waits_while_other_processes_run() {
        let (memory, a) = engine();
        let b = memory.client(0);
        let mut pause = memory.pause_before(&PUT);
        let stalled = tokio::spawn(async move { a.execute(&PUT, values![1u64, 1u64, 1i32]).await });
        pause.reached().await;
        b.execute(&PUT, values![1u64, 1u64, 2i32]).await.expect("a pause stops one call only");
        assert_eq!(roles(&b, 1).await, vec![(1, Some(2))], "the paused write has not run");
        pause.release();
        stalled.await.unwrap().unwrap();
        assert_eq!(roles(&b, 1).await, vec![(1, Some(1))], "it runs when released, stamped then");
    }

    #[tokio::test]
    async fn reads_count_the_tombstones_they_scan_and_fail_past_the_threshold() {
        let (memory, cql) = engine();
        memory.set_limits(Limits { tombstone_warn: 2, tombstone_fail: 6, ..Limits::default() });
        for u in 1..=6u64 {
            cql.execute(&PUT, values![1u64, u, 1i32]).await.unwrap();
        }
        for u in 1..=3u64 {
            cql.execute(&DROP, values![1u64, u]).await.unwrap();
        }
        // newest first: two live rows before any tombstone
        let newest: Vec<(i64,)> = cql.rows(&NEWEST, values![1u64, 2i32]).await.unwrap();
        assert_eq!(newest, vec![(6,), (5,)]);
        // oldest first: three deleted rows before the first live one
        let oldest: Vec<(i64, i32, Option<String>)> = cql.rows(&LIST, values![1u64, 100u64, 1i32]).await.unwrap();
        assert_eq!(oldest, vec![(4, 1, None)]);
        let stats = memory.stats();
        assert_eq!(stats.reads["t.newest"], ReadStats { runs: 1, max_tombstones: 0, warnings: 0 });
        assert_eq!(stats.reads["t.list"], ReadStats { runs: 1, max_tombstones: 3, warnings: 1 });
        // five dead rows and the range tombstone over them; a second, same delete adds nothing
        cql.execute(&TRIM, values![1u64, 5u64]).await.unwrap();
        cql.execute(&TRIM, values![1u64, 5u64]).await.unwrap();
        let last: Vec<(i64, i32, Option<String>)> = cql.rows(&LIST, values![1u64, 100u64, 1i32]).await.unwrap();
        assert_eq!(last, vec![(6, 1, None)]);
        assert_eq!(memory.stats().reads["t.list"].max_tombstones, 6);
        cql.execute(&DROP, values![1u64, 6u64]).await.unwrap();
        let err = cql.rows::<(i64, i32, Option<String>)>(&LIST, values![1u64, 100u64, 1i32]).await.unwrap_err();
        assert!(err.to_string().contains("tombstone_failure_threshold"), "{err}");
        assert_eq!(memory.stats().reads["t.list"].max_tombstones, 7);
    }

    #[tokio::test]
    async fn batches_spanning_partitions_are_measured_and_refused_past_the_threshold() {
        let (memory, cql) = engine();
        memory.set_limits(Limits { batch_warn_bytes: 20, batch_fail_bytes: 40, ..Limits::default() });
        // each PUT binds 8 + 8 + 4 bytes
        let put = |c: u64, u: u64| (&PUT, values![c, u, 1i32]);
        assert!(cql.batch(BatchKind::Unlogged, vec![put(1, 1), put(1, 2), put(1, 3)]).await.unwrap());
        assert_eq!(memory.stats().batches, 0, "a batch on one partition is not measured");
        assert!(cql.batch(BatchKind::Logged, vec![put(1, 4), put(2, 1)]).await.unwrap());
        let stats = memory.stats();
        assert_eq!((stats.batches, stats.max_batch_bytes, stats.batch_warnings), (1, 40, 1));
        let err = cql.batch(BatchKind::Logged, vec![put(1, 5), put(2, 2), put(3, 1)]).await.unwrap_err();
        assert!(matches!(err, CqlError::Invalid { .. }), "{err}");
        assert_eq!(roles(&cql, 3).await, vec![], "nothing of a refused batch applies");
        assert_eq!(memory.stats().max_batch_bytes, 60);
    }

    #[test]
    fn the_lint_reports_lightweight_transactions_on_one_row_of_a_partition() {
        let (memory, _) = engine();
        static INSERT_IF_NEW: Statement =
            statement!("t.insert_if_new", not_idempotent, "INSERT INTO m (c, u, role) VALUES (?, ?, ?) IF NOT EXISTS");
        let found = memory.lint(&[&PUT, &BUMP, &CLAIM, &RELEASE, &PUT_IF_VERSION, &INSERT_IF_NEW]).unwrap();
        let names: Vec<&str> = found.iter().map(|f| f.statement).collect();
        assert_eq!(names, vec!["t.put_if", "t.insert_if_new"], "statics and unclustered tables set their partition");
        assert_eq!(found[0].partition_key, vec!["c"]);
        assert_eq!(found[0].row_key, vec!["c", "u"]);
        assert!(
            found[0].to_string().contains("by (c, u), but Paxos serializes its whole partition (c)"),
            "{}",
            found[0]
        );
    }

    /// The statements the stores declare (`statement!` and `Statement { .. }`), read from their
    /// sources: name and CQL.
    fn declared_statements() -> Vec<&'static Statement> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../services");
        let mut files = Vec::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") && path.to_string_lossy().contains("/store/") {
                    files.push(path);
                }
            }
        }
        files.sort();
        let mut out = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (at, _) in text.match_indices("statement!(").chain(text.match_indices("Statement {")) {
                let mut literals = string_literals(&text[at..]);
                let (Some(name), Some(cql)) = (literals.next(), literals.next()) else { continue };
                let is_cql = ["SELECT", "INSERT", "UPDATE", "DELETE"].iter().any(|k| cql.starts_with(k));
                if is_cql {
                    let leak = |s: String| &*Box::leak(s.into_boxed_str());
                    let stmt = Statement {
                        name: leak(name),
                        cql: leak(cql),
                        consistency: crate::Consistency::LocalQuorum,
                        idempotent: false,
                    };
                    out.push(&*Box::leak(Box::new(stmt)));
                }
            }
        }
        out
    }

    /// The Rust string literals of `text`, unescaped (`\` line continuations, `\"`).
    fn string_literals(text: &str) -> impl Iterator<Item = String> + '_ {
        let mut chars = text.chars().peekable();
        std::iter::from_fn(move || {
            chars.by_ref().find(|c| *c == '"')?;
            let mut s = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '"' => return Some(s),
                    '\\' => match chars.next()? {
                        '\n' => while chars.next_if(|c| c.is_whitespace()).is_some() {},
                        other => s.push(other),
                    },
                    other => s.push(other),
                }
            }
            None
        })
    }

    #[test]
    fn the_lint_over_the_stores_statements_finds_the_read_pointers_partitioned_by_user() {
        let statements = declared_statements();
        assert!(statements.len() > 100, "the stores' statements are found ({})", statements.len());
        assert!(statements.iter().any(|s| s.name == "user.get_session"), "a Statement {{ .. }} is read too");
        let memory = MemoryCql::migrated();
        let found = memory.lint(&statements).unwrap();
        for finding in &found {
            println!("{finding}");
        }
        let names: Vec<&str> = found.iter().map(|f| f.statement).collect();
        assert_eq!(names, vec!["chat.create_pointer", "chat.advance_pointer"]);
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
            ("UPDATE m USING TIMESTAMP ? SET r = ? WHERE c = ? AND u = ? IF r = ?", "cannot carry USING TIMESTAMP"),
            ("INSERT INTO m (c, u, r) VALUES (?, ?, ?) IF NOT EXISTS USING TIMESTAMP ?", "cannot carry USING"),
            ("DELETE FROM m USING TTL ? WHERE c = ?", "no TTL in a DELETE"),
            ("DELETE FROM m USING TIMESTAMP ? AND TIMESTAMP ? WHERE c = ?", "twice"),
        ] {
            let err = parse(&schema, cql).unwrap_err();
            assert!(err.contains(reason), "{cql}: {err}");
        }
    }
}
