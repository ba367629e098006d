//! The ScyllaDB side of [`crate::Cql`]: one driver session per process, token- and
//! datacenter-aware, statements prepared once, retried by the driver only when idempotent.

use std::{collections::HashMap, sync::Arc, time::Duration};

use scylla::{
    client::{execution_profile::ExecutionProfile, session::Session, session_builder::SessionBuilder},
    errors::{BadQuery, DbError, ExecutionError, PrepareError, RequestAttemptError},
    policies::{
        load_balancing::DefaultPolicy, retry::DefaultRetryPolicy, timestamp_generator::MonotonicTimestampGenerator,
    },
    response::query_result::QueryResult,
    statement::{
        Consistency, SerialConsistency,
        batch::{Batch, BatchType},
        prepared::PreparedStatement,
    },
    value::{CqlValue, Row},
};
use tokio::sync::RwLock;

use crate::{BatchKind, CqlError, FromRow, Statement, Value};

/// Where the cluster is and how to talk to it (`[store.scylla]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScyllaConfig {
    /// `host:port` of a few nodes; the driver discovers the rest.
    pub contact_points: Vec<String>,
    pub keyspace: String,
    /// The local datacenter: requests go to its replicas (LOCAL_QUORUM), never elsewhere.
    pub datacenter: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Client-to-node encryption; none: plain TCP.
    pub tls: Option<ScyllaTls>,
}

/// How node certificates are checked when the session encrypts (rustls).
#[derive(Clone)]
pub struct ScyllaTls(pub Arc<rustls::ClientConfig>);

impl std::fmt::Debug for ScyllaTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaTls").finish_non_exhaustive()
    }
}

impl PartialEq for ScyllaTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ScyllaTls {}

/// A connected session with its prepared statements.
pub struct ScyllaCql {
    session: Session,
    prepared: RwLock<HashMap<&'static str, PreparedStatement>>,
}

impl std::fmt::Debug for ScyllaCql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaCql").finish_non_exhaustive()
    }
}

fn failed(statement: &'static str, e: impl std::fmt::Display) -> CqlError {
    CqlError::Failed { statement, message: e.to_string() }
}

/// Whether the server refused the request itself, before executing any of it, in a way the same
/// request meets again on any node and at any time: a syntax error, an invalid request (ScyllaDB
/// answers a batch past `batch_size_fail_threshold_in_kb`, or a write timestamp too far ahead,
/// with `Invalid`), a missing permission or a configuration refusal. Timeouts, unavailable
/// replicas, overload and broken connections are not: the driver may have retried an attempt
/// that reached the replicas, so the outcome is unknown.
fn refused(error: &DbError) -> bool {
    matches!(error, DbError::SyntaxError | DbError::Invalid | DbError::Unauthorized | DbError::ConfigError)
}

/// Maps a driver error: [`CqlError::Invalid`] when nothing of the request can have applied and a
/// retry fails the same way ([`refused`], or the driver refused it before sending: too many
/// statements in a batch, a partition key too long), [`CqlError::Schema`] for values that do not
/// serialize to their columns' types, else [`CqlError::Failed`] (outcome unknown).
fn classify(statement: &'static str, e: ExecutionError) -> CqlError {
    let message = e.to_string();
    match e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(error, _)) if refused(&error) => {
            CqlError::Invalid { statement, message }
        }
        ExecutionError::PrepareError(PrepareError::AllAttemptsFailed {
            first_attempt: RequestAttemptError::DbError(error, _),
        }) if refused(&error) => CqlError::Invalid { statement, message },
        ExecutionError::BadQuery(BadQuery::SerializationError(_))
        | ExecutionError::LastAttemptError(RequestAttemptError::SerializationError(_)) => {
            CqlError::Schema { statement, message }
        }
        ExecutionError::BadQuery(_) => CqlError::Invalid { statement, message },
        _ => CqlError::Failed { statement, message },
    }
}

impl ScyllaCql {
    /// Connects; with `use_keyspace` the session works in the configured keyspace (which must
    /// exist: `chatmesh admin migrate` creates it).
    pub async fn connect(config: &ScyllaConfig, use_keyspace: bool) -> Result<Self, CqlError> {
        // why: LOCAL_QUORUM and LOCAL_SERIAL mean "in the coordinator's datacenter"; without a
        // pinned one, two claims of one key through two datacenters could both be applied
        let Some(dc) = config.datacenter.clone().filter(|dc| !dc.is_empty()) else {
            return Err(failed("connect", "no datacenter configured (store.scylla.datacenter)"));
        };
        let policy = DefaultPolicy::builder().token_aware(true).permit_dc_failover(false).prefer_datacenter(dc);
        let profile = ExecutionProfile::builder()
            .consistency(Consistency::LocalQuorum)
            .serial_consistency(Some(SerialConsistency::LocalSerial))
            .load_balancing_policy(policy.build())
            // why: the default policy retries only statements marked idempotent
            .retry_policy(Arc::new(DefaultRetryPolicy::new()))
            .request_timeout(Some(config.request_timeout))
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&config.contact_points)
            .connection_timeout(config.connect_timeout)
            // why: write timestamps from this process, monotonic, so overwrites it sends through
            // different coordinators apply in the order it sent them (not by coordinator clocks)
            .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
            .default_execution_profile_handle(profile.into_handle());
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.user(user.clone(), password.clone());
        }
        if use_keyspace {
            builder = builder.use_keyspace(config.keyspace.clone(), false);
        }
        if let Some(tls) = &config.tls {
            builder = builder.tls_context(Some(tls.0.clone()));
        }
        let session = builder.build().await.map_err(|e| failed("connect", e))?;
        Ok(ScyllaCql { session, prepared: RwLock::new(HashMap::new()) })
    }

    /// The driver session, for schema statements (migrations).
    pub fn session(&self) -> &Session {
        &self.session
    }

    pub(crate) async fn prepare(&self, statements: &[&'static Statement]) -> Result<(), CqlError> {
        for stmt in statements {
            self.prepared_of(stmt).await?;
        }
        Ok(())
    }

    async fn prepared_of(&self, stmt: &'static Statement) -> Result<PreparedStatement, CqlError> {
        if let Some(p) = self.prepared.read().await.get(stmt.name) {
            return Ok(p.clone());
        }
        let mut prepared = self.session.prepare(stmt.cql).await.map_err(|e| classify(stmt.name, e.into()))?;
        prepared.set_consistency(stmt.consistency);
        prepared.set_serial_consistency(stmt.serial_consistency());
        prepared.set_is_idempotent(stmt.idempotent);
        self.prepared.write().await.insert(stmt.name, prepared.clone());
        Ok(prepared)
    }

    async fn run(&self, stmt: &'static Statement, values: Vec<Value>) -> Result<QueryResult, CqlError> {
        let prepared = self.prepared_of(stmt).await?;
        self.session.execute_unpaged(&prepared, values).await.map_err(|e| classify(stmt.name, e))
    }

    pub(crate) async fn rows<R: FromRow>(
        &self,
        stmt: &'static Statement,
        values: Vec<Value>,
    ) -> Result<Vec<R>, CqlError> {
        let result = self.run(stmt, values).await?.into_rows_result().map_err(|e| failed(stmt.name, e))?;
        let rows = result.rows::<R>().map_err(|e| CqlError::Schema { statement: stmt.name, message: e.to_string() })?;
        rows.collect::<Result<Vec<R>, _>>()
            .map_err(|e| CqlError::Schema { statement: stmt.name, message: e.to_string() })
    }

    pub(crate) async fn execute(&self, stmt: &'static Statement, values: Vec<Value>) -> Result<(), CqlError> {
        self.run(stmt, values).await.map(|_| ())
    }

    pub(crate) async fn lwt(&self, stmt: &'static Statement, values: Vec<Value>) -> Result<bool, CqlError> {
        applied(stmt.name, self.run(stmt, values).await?)
    }

    pub(crate) async fn batch(
        &self,
        kind: BatchKind,
        items: Vec<(&'static Statement, Vec<Value>)>,
    ) -> Result<bool, CqlError> {
        let name = items[0].0.name;
        let mut batch = Batch::new(match kind {
            BatchKind::Logged => BatchType::Logged,
            BatchKind::Unlogged => BatchType::Unlogged,
        });
        let conditional = items.iter().any(|(s, _)| s.is_conditional());
        batch.set_consistency(Consistency::LocalQuorum);
        batch.set_serial_consistency(conditional.then_some(SerialConsistency::LocalSerial));
        batch.set_is_idempotent(items.iter().all(|(s, _)| s.idempotent));
        let mut values = Vec::with_capacity(items.len());
        for (stmt, v) in items {
            batch.append_statement(self.prepared_of(stmt).await?);
            values.push(v);
        }
        let result = self.session.batch(&batch, values).await.map_err(|e| classify(name, e))?;
        if conditional { applied(name, result) } else { Ok(true) }
    }
}

/// The `[applied]` column a lightweight transaction answers with.
fn applied(statement: &'static str, result: QueryResult) -> Result<bool, CqlError> {
    let rows = result.into_rows_result().map_err(|e| failed(statement, e))?;
    let first =
        rows.rows::<Row>().map_err(|e| failed(statement, e))?.next().transpose().map_err(|e| failed(statement, e))?;
    match first.as_ref().and_then(|row| row.columns.first()) {
        Some(Some(CqlValue::Boolean(applied))) => Ok(*applied),
        _ => Err(failed(statement, "a lightweight transaction answered without [applied]")),
    }
}

#[cfg(test)]
mod tests {
    use scylla::{
        errors::{BadQuery, DbError, ExecutionError, RequestAttemptError, WriteType},
        serialize::SerializationError,
    };

    use super::*;

    fn from_server(error: DbError, message: &str) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(error, message.into()))
    }

    #[test]
    fn only_requests_refused_before_anything_applied_are_invalid() {
        for error in [
            from_server(DbError::Invalid, "Batch too large"),
            from_server(DbError::SyntaxError, "line 1:7 no viable alternative"),
            from_server(DbError::Unauthorized, "User chat has no MODIFY permission"),
            from_server(DbError::ConfigError, "Cannot execute this query as it might involve data filtering"),
            ExecutionError::PrepareError(PrepareError::AllAttemptsFailed {
                first_attempt: RequestAttemptError::DbError(DbError::Invalid, "Undefined column name x".into()),
            }),
            ExecutionError::BadQuery(BadQuery::TooManyQueriesInBatchStatement(70_000)),
        ] {
            let shown = error.to_string();
            match classify("t.put", error) {
                CqlError::Invalid { statement, message } => assert_eq!((statement, message), ("t.put", shown)),
                other => panic!("{shown}: {other:?}"),
            }
        }
        let timeout = DbError::WriteTimeout {
            consistency: Consistency::LocalQuorum,
            received: 1,
            required: 2,
            write_type: WriteType::BatchLog,
        };
        let unavailable = DbError::Unavailable { consistency: Consistency::LocalQuorum, required: 2, alive: 1 };
        for error in [
            from_server(timeout, "timed out"),
            // why: an earlier attempt of the same request may have reached the replicas
            from_server(unavailable, "not enough replicas"),
            from_server(DbError::Overloaded, "overloaded"),
            from_server(DbError::ServerError, "internal error"),
            ExecutionError::RequestTimeout(Duration::from_secs(5)),
            ExecutionError::EmptyPlan,
        ] {
            let shown = error.to_string();
            assert!(matches!(classify("t.put", error), CqlError::Failed { .. }), "{shown}");
        }
    }

    #[test]
    fn values_that_do_not_serialize_are_schema_errors() {
        let error = ExecutionError::BadQuery(BadQuery::SerializationError(SerializationError::new(
            std::io::Error::other("a text bound to a bigint"),
        )));
        assert!(matches!(classify("t.put", error), CqlError::Schema { .. }));
    }
}
