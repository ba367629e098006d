//! An in-memory executor of the statement subset the stores use, over the tables the
//! migrations declare. It exists so the ScyllaDB stores run their conformance suites and golden
//! tests on every machine: every bound value is serialized by the driver against the schema's
//! column type, and every result row is type-checked and deserialized by the driver from
//! column specs built from the schema. Semantics follow CQL where the stores rely on them:
//! partitions and clustering order (each clustering column in its own declared direction, as
//! `(incoming ASC, edge_id DESC)`), static columns, range restrictions and deletes, `LIMIT`,
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
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, Ordering as AtomicOrdering},
    },
};

use tokio::sync::oneshot;

pub use self::lint::CoarseLwt;
use self::{data::Data, execute::Mutation, parse::Parsed};
use crate::{Cql, CqlError, Engine, FromRow, Statement, Value, schema::Schema};

mod data;
mod execute;
mod lint;
mod parse;
#[cfg(test)]
mod tests;

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
}

fn timed_out(statement: &'static str) -> CqlError {
    CqlError::Failed { statement, message: "write timeout (injected)".into() }
}
