//! ScyllaDB for chatmesh's stores.
//!
//! Every statement a store runs is a [`Statement`]: a `static` with its CQL text, consistency
//! and idempotence, prepared once when the store connects. Bound values are [`Value`]s and
//! result rows are typed tuples checked by the driver. [`Cql`] runs statements either on a
//! ScyllaDB [`scylla::client::session::Session`] or on `memory::MemoryCql`, an in-memory
//! executor of the same statement subset over the tables declared by the `.cql` migrations: it
//! serializes every bound value with the driver against the column types of the migrated
//! schema and deserializes every result row with the driver, so a statement whose values or
//! rows disagree with the schema fails in tests run on every machine; it orders writes by their
//! timestamps as a cluster does (tombstones, several processes with skewed clocks, batches that
//! time out and apply later). Golden tests record the calls ([`Call`]) a store operation makes.
//! The in-memory executor and the golden-file helpers are test code: they are built for this
//! crate's tests and with the `testsuite` feature.

#[cfg(any(test, feature = "testsuite"))]
pub mod golden;
#[cfg(any(test, feature = "testsuite"))]
pub mod memory;
pub mod migrate;
pub mod schema;
mod session;

use std::sync::{Arc, Mutex};

use scylla::{
    deserialize::row::DeserializeRow,
    frame::response::result::ColumnType,
    serialize::{
        SerializationError,
        value::SerializeValue,
        writers::{CellWriter, WrittenCellProof},
    },
    statement::SerialConsistency,
};

#[cfg(any(test, feature = "testsuite"))]
pub use self::memory::MemoryCql;
pub use self::session::{ScyllaConfig, ScyllaCql, ScyllaTls};

/// One statement a store runs, declared as a `static`.
#[derive(Debug)]
pub struct Statement {
    /// A stable name, used in golden files and traces (`<store>.<operation>`).
    pub name: &'static str,
    /// The CQL text: only `?` markers bind values (no literals), one statement.
    pub cql: &'static str,
    pub consistency: Consistency,
    /// Whether running it twice has the effect of running it once; only idempotent statements
    /// are retried by the driver (and speculatively executed).
    pub idempotent: bool,
}

impl Statement {
    /// Whether it is a lightweight transaction (has an `IF` clause), run at LOCAL_SERIAL.
    pub fn is_conditional(&self) -> bool {
        // why: asked on every write and batch; no allocation (`IF NOT EXISTS`, `IF EXISTS` and
        // `IF c = ?` all have the keyword between spaces; names never contain spaces)
        self.cql.as_bytes().windows(4).any(|w| w.eq_ignore_ascii_case(b" IF "))
    }

    pub fn serial_consistency(&self) -> Option<SerialConsistency> {
        self.is_conditional().then_some(SerialConsistency::LocalSerial)
    }
}

/// Declares a [`Statement`] read and written at LOCAL_QUORUM.
#[macro_export]
macro_rules! statement {
    ($name:literal, idempotent, $cql:literal) => {
        $crate::Statement { name: $name, cql: $cql, consistency: $crate::Consistency::LocalQuorum, idempotent: true }
    };
    ($name:literal, not_idempotent, $cql:literal) => {
        $crate::Statement { name: $name, cql: $cql, consistency: $crate::Consistency::LocalQuorum, idempotent: false }
    };
}

pub use scylla::statement::Consistency;

/// A bound value. Ids are `u64` in the domain and `bigint` in CQL (they stay below 2^63).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    BigInt(i64),
    Int(i32),
    Text(String),
    Blob(Vec<u8>),
    Boolean(bool),
    Null,
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::BigInt(v as i64)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::BigInt(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Boolean(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Blob(v.to_vec())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Builds a `Vec<Value>` from anything convertible: `values![channel_id, bucket, text]`.
#[macro_export]
macro_rules! values {
    ($($v:expr),* $(,)?) => {
        vec![$($crate::Value::from($v)),*]
    };
}

impl SerializeValue for Value {
    // why: delegate to the driver's own impls, so its type checks apply to every value
    fn serialize<'b>(
        &self,
        typ: &ColumnType,
        writer: CellWriter<'b>,
    ) -> Result<WrittenCellProof<'b>, SerializationError> {
        match self {
            Value::BigInt(v) => v.serialize(typ, writer),
            Value::Int(v) => v.serialize(typ, writer),
            Value::Text(v) => v.serialize(typ, writer),
            Value::Blob(v) => v.serialize(typ, writer),
            Value::Boolean(v) => v.serialize(typ, writer),
            Value::Null => Option::<i64>::None.serialize(typ, writer),
        }
    }
}

/// A batch's kind: logged batches span partitions and are applied all-or-nothing eventually;
/// unlogged ones are for writes to one partition (applied atomically there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    Logged,
    Unlogged,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CqlError {
    /// The statement could not run, or its outcome is unknown (a timeout).
    #[error("{statement}: {message}")]
    Failed { statement: &'static str, message: String },
    /// Values or rows that disagree with the schema: a bug, never retried.
    #[error("{statement}: {message}")]
    Schema { statement: &'static str, message: String },
    /// Refused by the server before anything was applied (an InvalidRequest, such as a batch
    /// past `batch_size_fail_threshold_in_kb`): retrying the same request fails the same way.
    #[error("{statement}: {message}")]
    Invalid { statement: &'static str, message: String },
}

/// A statement as it was run: what golden files record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub name: &'static str,
    pub cql: &'static str,
    pub consistency: Consistency,
    pub serial: Option<SerialConsistency>,
    pub idempotent: bool,
    pub values: Vec<Value>,
    /// `Some` for a statement run inside a batch: the batch's kind.
    pub batch: Option<BatchKind>,
}

impl Call {
    /// One golden line block: name, consistency, idempotence, CQL, values.
    pub fn render(&self) -> String {
        let serial = self.serial.map(|s| format!(" serial={s:?}")).unwrap_or_default();
        let batch = self.batch.map(|b| format!(" batch={b:?}")).unwrap_or_default();
        let values: Vec<String> = self.values.iter().map(render_value).collect();
        format!(
            "{} consistency={:?}{serial} idempotent={}{batch}\n  {}\n  [{}]\n",
            self.name,
            self.consistency,
            self.idempotent,
            self.cql,
            values.join(", ")
        )
    }
}

fn render_value(value: &Value) -> String {
    match value {
        Value::BigInt(v) => format!("{v}"),
        Value::Int(v) => format!("{v}i"),
        Value::Text(v) => format!("{v:?}"),
        // why: JSON records stay readable in golden files; binary (protobuf) shows as hex
        Value::Blob(v) => match std::str::from_utf8(v) {
            Ok(text) if !text.chars().any(char::is_control) => format!("blob{text:?}"),
            _ => format!("0x{}", v.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        },
        Value::Boolean(v) => format!("{v}"),
        Value::Null => "null".into(),
    }
}

/// Runs statements on ScyllaDB or in memory; cheap to clone.
#[derive(Clone)]
pub struct Cql {
    engine: Engine,
    recorder: Option<Arc<Mutex<Vec<Call>>>>,
}

#[derive(Clone)]
enum Engine {
    Scylla(Arc<ScyllaCql>),
    #[cfg(any(test, feature = "testsuite"))]
    Memory(memory::Client),
}

impl std::fmt::Debug for Cql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let engine = match self.engine {
            Engine::Scylla(_) => "scylla",
            #[cfg(any(test, feature = "testsuite"))]
            Engine::Memory(_) => "memory",
        };
        f.debug_struct("Cql").field("engine", &engine).finish()
    }
}

/// The rows a statement's result deserializes into: tuples of owned values.
pub trait FromRow: for<'f, 'm> DeserializeRow<'f, 'm> + Send {}
impl<T: for<'f, 'm> DeserializeRow<'f, 'm> + Send> FromRow for T {}

impl Cql {
    pub fn scylla(session: Arc<ScyllaCql>) -> Self {
        Cql { engine: Engine::Scylla(session), recorder: None }
    }

    /// A process on the in-memory executor, its clock not skewed: `engine.client(0)` (see
    /// [`MemoryCql::client`]).
    #[cfg(any(test, feature = "testsuite"))]
    pub fn memory(engine: Arc<MemoryCql>) -> Self {
        engine.client(0)
    }

    /// Simulates this process crashing (in-memory executor only): every later call through this
    /// handle or any clone of it fails, as a dead process sends nothing more; writes it left held
    /// ([`MemoryCql::hold_writes`]) stay with the executor, as a batchlog keeps them.
    #[cfg(any(test, feature = "testsuite"))]
    pub fn crash(&self) {
        match &self.engine {
            Engine::Memory(client) => client.crash(),
            Engine::Scylla(_) => panic!("only a process on the in-memory executor can be crashed"),
        }
    }

    /// The same executor, also recording every call into the returned log.
    pub fn recording(&self) -> (Self, Arc<Mutex<Vec<Call>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        (Cql { engine: self.engine.clone(), recorder: Some(log.clone()) }, log)
    }

    /// Prepares statements ahead of their first use (on ScyllaDB: fails fast on a schema
    /// mismatch; in memory: parses and checks them against the schema).
    pub async fn prepare(&self, statements: &[&'static Statement]) -> Result<(), CqlError> {
        match &self.engine {
            Engine::Scylla(s) => s.prepare(statements).await,
            #[cfg(any(test, feature = "testsuite"))]
            Engine::Memory(m) => statements.iter().try_for_each(|s| m.check(s)),
        }
    }

    fn record(&self, stmt: &'static Statement, values: &[Value], batch: Option<BatchKind>) {
        if let Some(log) = &self.recorder {
            log.lock().expect("recorder").push(Call {
                name: stmt.name,
                cql: stmt.cql,
                consistency: stmt.consistency,
                serial: stmt.serial_consistency(),
                idempotent: stmt.idempotent,
                values: values.to_vec(),
                batch,
            });
        }
    }

    /// Runs a read and returns its rows (one page of at most the statement's `LIMIT`).
    pub async fn rows<R: FromRow>(&self, stmt: &'static Statement, values: Vec<Value>) -> Result<Vec<R>, CqlError> {
        self.record(stmt, &values, None);
        match &self.engine {
            Engine::Scylla(s) => s.rows(stmt, values).await,
            #[cfg(any(test, feature = "testsuite"))]
            Engine::Memory(m) => m.rows(stmt, values).await,
        }
    }

    /// Runs a read expected to return at most one row.
    pub async fn row<R: FromRow>(&self, stmt: &'static Statement, values: Vec<Value>) -> Result<Option<R>, CqlError> {
        Ok(self.rows(stmt, values).await?.into_iter().next())
    }

    /// Runs a write that is not conditional.
    pub async fn execute(&self, stmt: &'static Statement, values: Vec<Value>) -> Result<(), CqlError> {
        debug_assert!(!stmt.is_conditional(), "{}: use lwt()", stmt.name);
        self.record(stmt, &values, None);
        match &self.engine {
            Engine::Scylla(s) => s.execute(stmt, values).await,
            #[cfg(any(test, feature = "testsuite"))]
            Engine::Memory(m) => m.write(vec![(stmt, values)], false).await.map(|_| ()),
        }
    }

    /// Runs a lightweight transaction; returns whether it was applied.
    pub async fn lwt(&self, stmt: &'static Statement, values: Vec<Value>) -> Result<bool, CqlError> {
        debug_assert!(stmt.is_conditional(), "{}: not a lightweight transaction", stmt.name);
        self.record(stmt, &values, None);
        match &self.engine {
            Engine::Scylla(s) => s.lwt(stmt, values).await,
            #[cfg(any(test, feature = "testsuite"))]
            Engine::Memory(m) => m.write(vec![(stmt, values)], false).await,
        }
    }

    /// Runs statements as one batch; returns whether it was applied (always, unless it holds
    /// conditions, which must then all be on one partition).
    pub async fn batch(&self, kind: BatchKind, items: Vec<(&'static Statement, Vec<Value>)>) -> Result<bool, CqlError> {
        if items.is_empty() {
            return Ok(true);
        }
        for (stmt, values) in &items {
            self.record(stmt, values, Some(kind));
        }
        match &self.engine {
            Engine::Scylla(s) => s.batch(kind, items).await,
            #[cfg(any(test, feature = "testsuite"))]
            Engine::Memory(m) => m.write(items, true).await,
        }
    }
}

/// Converts a stored `bigint` back to a domain id.
pub fn id(v: i64) -> u64 {
    v as u64
}
