//! Versioned schema migrations: `migrations/NNNN_name.cql`, applied in order by
//! `chatmesh admin migrate`. Each statement is `CREATE TABLE IF NOT EXISTS`, so applying one
//! twice (a retry after a crash; two operators at once where the schema is Raft-managed,
//! ScyllaDB 5.4+) changes nothing; the keyspace's
//! `schema_migrations` table records each applied version with its checksum, and a recorded
//! migration whose file has changed since is refused rather than silently skipped.
//!
//! A keyspace whose tables are replicated by tablets is refused before any table is created
//! ([`refuse_tablets`]): the stores rely on lightweight transactions, which ScyllaDB refuses on
//! tablet keyspaces before 2025.4.

use std::sync::Arc;

use scylla::statement::unprepared::Statement as Unprepared;

use crate::{Consistency, Cql, CqlError, ScyllaConfig, ScyllaCql, Statement, schema::Schema, values};

#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub cql: &'static str,
}

macro_rules! migration {
    ($version:literal, $name:literal) => {
        Migration { version: $version, name: $name, cql: include_str!(concat!("../migrations/", $name, ".cql")) }
    };
}

/// Every migration, in order.
pub static MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_users"),
    migration!(2, "0002_channels"),
    migration!(3, "0003_chats"),
    migration!(4, "0004_chat_feed_and_uploads"),
    migration!(5, "0005_chat_pointers_and_queues"),
    migration!(6, "0006_channel_queues"),
    migration!(7, "0007_social_graph"),
    migration!(8, "0008_feed"),
    migration!(9, "0009_status_reports"),
    migration!(10, "0010_recommendations"),
];

/// The schema a fully migrated keyspace has.
pub fn schema() -> Result<Schema, String> {
    Schema::parse(MIGRATIONS.iter().map(|m| (m.name, m.cql)))
}

/// A stable checksum of a migration's statements (FNV-1a over the normalized text).
pub fn checksum(migration: &Migration) -> String {
    let text = crate::schema::statements(migration.cql).join(";");
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

/// How the keyspace is replicated when `migrate` creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    /// Datacenter name → replicas there (NetworkTopologyStrategy).
    pub datacenters: Vec<(String, u32)>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Versions applied by this run.
    pub applied: Vec<i32>,
    /// The keyspace's version afterwards.
    pub version: i32,
}

fn failed(statement: &'static str, e: impl std::fmt::Display) -> CqlError {
    CqlError::Failed { statement, message: e.to_string() }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 48 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

async fn run(session: &ScyllaCql, what: &'static str, cql: String) -> Result<(), CqlError> {
    let mut statement = Unprepared::new(cql);
    statement.set_consistency(scylla::statement::Consistency::All);
    session.session().query_unpaged(statement, ()).await.map_err(|e| failed(what, e))?;
    Ok(())
}

/// Whether the cluster knows tablets at all: ScyllaDB 6.0+ has `initial_tablets` in its
/// `system_schema.scylla_keyspaces`; older ScyllaDB and Cassandra answer no row (the driver's
/// own tests ask the same way).
static KNOWS_TABLETS: Statement = Statement {
    name: "migrate.knows_tablets",
    cql: "SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ? AND column_name = ?",
    // why: schema tables are node-local and agreed on after each schema change: any node answers
    consistency: Consistency::One,
    idempotent: true,
};

/// A keyspace's tablets: `initial_tablets` is null (or the row absent) for a vnode keyspace,
/// and set for a tablet one (0: ScyllaDB picks the count).
static KEYSPACE_TABLETS: Statement = Statement {
    name: "migrate.keyspace_tablets",
    cql: "SELECT initial_tablets FROM system_schema.scylla_keyspaces WHERE keyspace_name = ?",
    consistency: Consistency::One,
    idempotent: true,
};

/// Refuses `keyspace` if its tables are replicated by tablets: every store takes lightweight
/// transactions (uniqueness claims, channel changes, read pointers, uploads), which ScyllaDB
/// refuses on tablet keyspaces before 2025.4, so the parts would start and then fail those
/// requests. A cluster without tablets (ScyllaDB before 6.0, Cassandra) passes.
pub async fn refuse_tablets(cql: &Cql, keyspace: &str) -> Result<(), CqlError> {
    let column: Vec<(String,)> =
        cql.rows(&KNOWS_TABLETS, values!["system_schema", "scylla_keyspaces", "initial_tablets"]).await?;
    if column.is_empty() {
        return Ok(());
    }
    let row: Option<(Option<i32>,)> = cql.row(&KEYSPACE_TABLETS, values![keyspace]).await?;
    let Some(initial) = row.and_then(|(initial,)| initial) else {
        return Ok(());
    };
    Err(failed(
        "migrate.keyspace_tablets",
        format!(
            "keyspace {keyspace} uses tablets (initial_tablets = {initial} in system_schema.scylla_keyspaces), and \
             chatmesh's stores need lightweight transactions, which ScyllaDB refuses on tablet keyspaces before \
             2025.4. Recreate it with tablets disabled — `CREATE KEYSPACE {keyspace} WITH replication = {{...}} \
             AND tablets = {{'enabled': false}}`, which `chatmesh admin migrate` runs itself when the keyspace \
             does not exist — and move its data there (a cluster whose tablets_mode_for_new_keyspaces is \
             `enforced` cannot host it). This run created no table in it."
        ),
    ))
}

/// Creates the keyspace if needed and applies every migration not yet recorded there.
pub async fn migrate(config: &ScyllaConfig, replication: &Replication) -> Result<Applied, CqlError> {
    let ks = &config.keyspace;
    if !valid_name(ks) {
        return Err(failed("migrate", format!("keyspace name {ks:?}: letters, digits and _ only, at most 48")));
    }
    let session = Arc::new(ScyllaCql::connect(config, false).await?);
    let replicas: Vec<String> = replication.datacenters.iter().map(|(dc, n)| format!("'{dc}': {n}")).collect();
    if replicas.is_empty() {
        return Err(failed("migrate", "no datacenter to replicate to"));
    }
    let keyspace = format!(
        "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {{'class': 'NetworkTopologyStrategy', {}}}",
        replicas.join(", ")
    );
    // why: lightweight transactions need vnode-based replication on ScyllaDB 6.x (a new
    // keyspace uses tablets by default there); ScyllaDB 5.x knows no `tablets` option
    if let Err(e) = run(&session, "migrate.keyspace", format!("{keyspace} AND tablets = {{'enabled': false}}")).await {
        if !e.to_string().to_ascii_lowercase().contains("tablets") {
            return Err(e);
        }
        run(&session, "migrate.keyspace", keyspace).await?;
    }
    // why: an existing keyspace (or one created where tablets cannot be disabled) may use
    // tablets; refuse it before any table is created in it
    refuse_tablets(&Cql::scylla(session.clone()), ks).await?;
    run(
        &session,
        "migrate.history",
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (version int PRIMARY KEY, name text, checksum text, \
             applied_at_ms bigint)"
        ),
    )
    .await?;
    session.session().use_keyspace(ks, false).await.map_err(|e| failed("migrate.use_keyspace", e))?;
    let mut history = Unprepared::new("SELECT version, name, checksum FROM schema_migrations");
    history.set_consistency(scylla::statement::Consistency::LocalQuorum);
    let recorded = session
        .session()
        .query_unpaged(history, ())
        .await
        .map_err(|e| failed("migrate.read_history", e))?
        .into_rows_result()
        .map_err(|e| failed("migrate.read_history", e))?;
    let recorded: Vec<(i32, String, String)> = recorded
        .rows::<(i32, String, String)>()
        .map_err(|e| failed("migrate.read_history", e))?
        .collect::<Result<_, _>>()
        .map_err(|e| failed("migrate.read_history", e))?;
    let mut outcome = Applied::default();
    for migration in MIGRATIONS {
        if let Some((_, _, sum)) = recorded.iter().find(|(v, _, _)| *v == migration.version) {
            if *sum != checksum(migration) {
                return Err(failed(
                    "migrate",
                    format!(
                        "{} was applied with checksum {sum} and has changed since: add a new migration instead",
                        migration.name
                    ),
                ));
            }
            outcome.version = migration.version;
            continue;
        }
        for statement in crate::schema::statements(migration.cql) {
            run(&session, migration.name, statement).await?;
        }
        session.session().await_schema_agreement().await.map_err(|e| failed(migration.name, e))?;
        let mut record = Unprepared::new(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at_ms) VALUES (?, ?, ?, ?)",
        );
        record.set_consistency(scylla::statement::Consistency::LocalQuorum);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        session
            .session()
            .query_unpaged(record, (migration.version, migration.name, checksum(migration), now))
            .await
            .map_err(|e| failed("migrate.record", e))?;
        tracing::info!(version = migration.version, name = migration.name, "applied a migration");
        outcome.applied.push(migration.version);
        outcome.version = migration.version;
    }
    Ok(outcome)
}

/// For a store's conformance suite against a real cluster: a fresh, migrated keyspace for one
/// test case, when `CHATMESH_TEST_SCYLLA` names a contact point (`host:port[,host:port]`);
/// otherwise `None`, after printing that the case was skipped. `CHATMESH_TEST_SCYLLA_DC` names
/// the datacenter (default `datacenter1`).
#[cfg(any(test, feature = "testsuite"))]
pub async fn test_keyspace(case: &str) -> Option<crate::Cql> {
    let Ok(points) = std::env::var("CHATMESH_TEST_SCYLLA") else {
        println!("skipped: CHATMESH_TEST_SCYLLA not set ({case})");
        return None;
    };
    let dc = std::env::var("CHATMESH_TEST_SCYLLA_DC").unwrap_or_else(|_| "datacenter1".into());
    let hash = case.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let config = ScyllaConfig {
        contact_points: points.split(',').map(str::to_owned).collect(),
        keyspace: format!("chatmesh_test_{hash:016x}"),
        datacenter: Some(dc.clone()),
        username: std::env::var("CHATMESH_TEST_SCYLLA_USER").ok(),
        password: std::env::var("CHATMESH_TEST_SCYLLA_PASSWORD").ok(),
        request_timeout: std::time::Duration::from_secs(10),
        connect_timeout: std::time::Duration::from_secs(5),
        tls: None,
    };
    let admin = ScyllaCql::connect(&config, false).await.expect("connecting to CHATMESH_TEST_SCYLLA");
    run(&admin, "test.drop_keyspace", format!("DROP KEYSPACE IF EXISTS {}", config.keyspace))
        .await
        .expect("dropping the test keyspace");
    migrate(&config, &Replication { datacenters: vec![(dc, 1)] }).await.expect("migrating the test keyspace");
    let session = ScyllaCql::connect(&config, true).await.expect("connecting to the test keyspace");
    Some(crate::Cql::scylla(std::sync::Arc::new(session)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_parse() {
        for (n, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, n + 1, "{}", m.name);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)), "{}", m.name);
        }
        schema().unwrap();
    }

    #[test]
    fn checksums_ignore_comments_and_layout_only() {
        let a = Migration {
            version: 1,
            name: "a",
            cql: "-- x\nCREATE TABLE IF NOT EXISTS t (a bigint,\n PRIMARY KEY (a));",
        };
        let b = Migration { version: 1, name: "a", cql: "CREATE TABLE IF NOT EXISTS t (a bigint, PRIMARY KEY (a));" };
        let c = Migration { version: 1, name: "a", cql: "CREATE TABLE IF NOT EXISTS t (a int, PRIMARY KEY (a));" };
        assert_eq!(checksum(&a), checksum(&b));
        assert_ne!(checksum(&a), checksum(&c));
    }

    use crate::{
        MemoryCql,
        schema::{Column, CqlType, Order, Table},
        statement,
    };

    static PUT_COLUMN: Statement = statement!(
        "test.put_column",
        idempotent,
        "INSERT INTO system_schema.columns (keyspace_name, table_name, column_name) VALUES (?, ?, ?)"
    );
    static PUT_KEYSPACE: Statement = statement!(
        "test.put_keyspace",
        idempotent,
        "INSERT INTO system_schema.scylla_keyspaces (keyspace_name, initial_tablets) VALUES (?, ?)"
    );

    fn table(name: &str, columns: &[(&str, CqlType)], partition_key: &[&str], clustering: &[&str]) -> Table {
        Table {
            name: name.into(),
            columns: columns.iter().map(|(c, typ)| Column { name: (*c).into(), typ: *typ, is_static: false }).collect(),
            partition_key: partition_key.iter().map(|k| (*k).into()).collect(),
            clustering: clustering.iter().map(|k| ((*k).into(), Order::Asc)).collect(),
        }
    }

    /// A cluster's schema tables, as far as `refuse_tablets` reads them: every cluster has
    /// `system_schema.columns`; one that knows tablets (ScyllaDB 6.0+) also has
    /// `system_schema.scylla_keyspaces` with `initial_tablets`. A cluster without it (Cassandra)
    /// has no such table at all, so reading it would fail.
    async fn cluster(knows_tablets: bool) -> Cql {
        let mut schema = schema().unwrap();
        let columns = [("keyspace_name", CqlType::Text), ("table_name", CqlType::Text), ("column_name", CqlType::Text)];
        let tables = [table("system_schema.columns", &columns, &["keyspace_name"], &["table_name", "column_name"])];
        schema.tables.extend(tables.into_iter().map(|t| (t.name.clone(), t)));
        if knows_tablets {
            let columns = [("keyspace_name", CqlType::Text), ("initial_tablets", CqlType::Int)];
            let keyspaces = table("system_schema.scylla_keyspaces", &columns, &["keyspace_name"], &[]);
            schema.tables.insert(keyspaces.name.clone(), keyspaces);
        }
        let cql = Cql::memory(Arc::new(MemoryCql::new(schema)));
        cql.execute(&PUT_COLUMN, values!["system_schema", "columns", "column_name"]).await.unwrap();
        if knows_tablets {
            cql.execute(&PUT_COLUMN, values!["system_schema", "scylla_keyspaces", "initial_tablets"]).await.unwrap();
        }
        cql
    }

    #[tokio::test]
    async fn a_keyspace_using_tablets_is_refused_naming_it_and_the_fix() {
        let cql = cluster(true).await;
        cql.execute(&PUT_KEYSPACE, values!["chatmesh", 0i32]).await.unwrap();
        let refused = refuse_tablets(&cql, "chatmesh").await.expect_err("a tablet keyspace is refused");
        let said = refused.to_string();
        assert!(said.contains("keyspace chatmesh uses tablets"), "{said}");
        assert!(said.contains("lightweight transactions") && said.contains("2025.4"), "{said}");
        assert!(said.contains("AND tablets = {'enabled': false}"), "the fix: {said}");
    }

    #[tokio::test]
    async fn a_vnode_keyspace_passes_whatever_other_keyspaces_use() {
        let cql = cluster(true).await;
        cql.execute(&PUT_KEYSPACE, values!["other", 8i32]).await.unwrap();
        refuse_tablets(&cql, "chatmesh").await.expect("no row: a vnode keyspace");
        cql.execute(&PUT_KEYSPACE, values!["chatmesh", Option::<i32>::None]).await.unwrap();
        refuse_tablets(&cql, "chatmesh").await.expect("initial_tablets null: a vnode keyspace");
    }

    #[tokio::test]
    async fn a_cluster_without_tablets_passes_without_reading_scylla_keyspaces() {
        let cql = cluster(false).await;
        refuse_tablets(&cql, "chatmesh").await.expect("ScyllaDB before 6.0 and Cassandra pass");
    }
}
