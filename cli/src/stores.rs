//! The stores of the user, channel and chat parts: embedded (fjall keyspaces under the data
//! dir, owned by one process) or ScyllaDB (one driver session per process, shared by every
//! part it runs; statements prepared at start so a schema mismatch stops the process at once).
//!
//! A part on ScyllaDB first waits for the keyspace to hold every migration this release has
//! (the migrate Job may still be running), saying so every few seconds, for up to
//! `store.scylla.schema_wait_secs`; then it stops, naming the migrations it lacks.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use chatmesh_channel::store::{ChannelStore, FjallChannelStore, ScyllaChannelStore};
use chatmesh_chat::store::{ChatStore, FjallChatStore, ScyllaChatStore};
use chatmesh_cql::{Cql, ScyllaConfig, ScyllaCql, ScyllaTls, Statement, migrate::MIGRATIONS};
use chatmesh_feed::store::{FeedStore, FjallFeedStore};
use chatmesh_platform::{
    config::{Config, StoreBackend},
    ids::IdGenerator,
};
use chatmesh_user::store::{FjallUserStore, UserStore};

/// Opens the stores a process needs.
pub struct Stores {
    backend: StoreBackend,
    /// Where the embedded stores live.
    data_dir: PathBuf,
    /// The ScyllaDB session, when it is the backend.
    scylla: Option<Cql>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").field("backend", &self.backend).finish()
    }
}

/// The driver's settings from `[store.scylla]`; with `tls`, the CA bundle is read here.
pub fn scylla_config(config: &Config) -> anyhow::Result<ScyllaConfig> {
    let s = &config.store.scylla;
    let non_empty = |v: &str| (!v.is_empty()).then(|| v.to_owned());
    let tls = match (s.tls, s.tls_ca_file.as_str()) {
        (false, "") => None,
        (false, _) => anyhow::bail!("store.scylla.tls_ca_file is set but store.scylla.tls is false"),
        (true, ca) => {
            let ca = (!ca.is_empty()).then(|| Path::new(ca));
            let client = chatmesh_platform::tls::client_config(ca).map_err(anyhow::Error::msg)?;
            Some(ScyllaTls(client))
        }
    };
    Ok(ScyllaConfig {
        contact_points: s.contact_points.clone(),
        keyspace: s.keyspace.clone(),
        datacenter: non_empty(&s.datacenter),
        username: non_empty(&s.username),
        password: non_empty(&s.password),
        request_timeout: Duration::from_millis(s.request_timeout_ms),
        connect_timeout: Duration::from_millis(s.connect_timeout_ms),
        tls,
    })
}

impl Stores {
    /// Connects to ScyllaDB when it is the backend and `needed` (a part with a store runs).
    pub async fn open(config: &Config, needed: bool) -> anyhow::Result<Self> {
        let scylla = match (config.store.backend, needed) {
            (StoreBackend::Scylla, true) => {
                let settings = scylla_config(config)?;
                let session = ScyllaCql::connect(&settings, false)
                    .await
                    .with_context(|| format!("connecting to ScyllaDB at {:?}", settings.contact_points))?;
                let session = Arc::new(session);
                let cql = Cql::scylla(session.clone());
                let (session, cql, keyspace) = (&session, &cql, settings.keyspace.as_str());
                let probe = move || async move {
                    // why: the keyspace may not exist yet; once it does, every connection uses it
                    session.session().use_keyspace(keyspace, false).await.map_err(|e| e.to_string())?;
                    applied_migrations(cql).await
                };
                let budget = Duration::from_secs(config.store.scylla.schema_wait_secs);
                wait_for_schema(keyspace, probe, budget).await?;
                Some(cql.clone())
            }
            _ => None,
        };
        Ok(Stores { backend: config.store.backend, data_dir: config.data_dir.clone(), scylla })
    }

    pub async fn user(&self) -> anyhow::Result<Arc<dyn UserStore>> {
        Ok(match &self.scylla {
            Some(cql) => {
                let store = chatmesh_user::store::ScyllaUserStore::new(cql.clone());
                store.prepare().await.map_err(|e| anyhow::anyhow!("preparing the user store's statements: {e}"))?;
                Arc::new(store)
            }
            None => Arc::new(FjallUserStore::open(&self.data_dir.join("user")).context("opening the user store")?),
        })
    }

    pub async fn channel(&self) -> anyhow::Result<Arc<dyn ChannelStore>> {
        Ok(match &self.scylla {
            Some(cql) => {
                let store = ScyllaChannelStore::new(cql.clone());
                store.prepare().await.map_err(|e| anyhow::anyhow!("preparing the channel store's statements: {e}"))?;
                Arc::new(store)
            }
            None => {
                Arc::new(FjallChannelStore::open(&self.data_dir.join("channel")).context("opening the channel store")?)
            }
        })
    }

    pub async fn feed(&self) -> anyhow::Result<Arc<dyn FeedStore>> {
        Ok(match &self.scylla {
            Some(cql) => {
                let store = chatmesh_feed::store::ScyllaFeedStore::new(cql.clone());
                store.prepare().await.map_err(|e| anyhow::anyhow!("preparing the feed store's statements: {e}"))?;
                Arc::new(store)
            }
            None => Arc::new(FjallFeedStore::open(&self.data_dir.join("feed")).context("opening the feed store")?),
        })
    }

    pub async fn chat(&self, ids: Arc<IdGenerator>) -> anyhow::Result<Arc<dyn ChatStore>> {
        Ok(match &self.scylla {
            Some(cql) => {
                let store = ScyllaChatStore::new(cql.clone(), ids);
                store.prepare().await.map_err(|e| anyhow::anyhow!("preparing the chat store's statements: {e}"))?;
                Arc::new(store)
            }
            None => Arc::new(FjallChatStore::open(&self.data_dir.join("chat"), ids).context("opening the chat store")?),
        })
    }
}

/// Whether a migration is recorded as applied in the keyspace's `schema_migrations`.
static APPLIED: Statement =
    chatmesh_cql::statement!("schema.applied", idempotent, "SELECT name FROM schema_migrations WHERE version = ?");

/// The versions of this release's migrations that the keyspace records as applied (the
/// session in the keyspace); an error while it has no migration history yet.
async fn applied_migrations(cql: &Cql) -> Result<Vec<i32>, String> {
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        let row: Option<(String,)> =
            cql.row(&APPLIED, chatmesh_cql::values![migration.version]).await.map_err(|e| e.to_string())?;
        applied.extend(row.map(|_| migration.version));
    }
    Ok(applied)
}

/// How often the wait for the schema asks again, and how often it says what it waits for.
const SCHEMA_POLL: Duration = Duration::from_secs(1);
const SCHEMA_LOG_EVERY: Duration = Duration::from_secs(5);

/// Waits until `probe` (the applied versions, or why they cannot be read) shows every
/// migration of this release applied in `keyspace`, asking every second and logging what is
/// missing every few seconds; after `budget`, fails naming the missing migrations.
async fn wait_for_schema<F: Future<Output = Result<Vec<i32>, String>>>(
    keyspace: &str,
    mut probe: impl FnMut() -> F,
    budget: Duration,
) -> anyhow::Result<()> {
    let started = tokio::time::Instant::now();
    let mut said: Option<tokio::time::Instant> = None;
    loop {
        let probed = probe().await;
        let applied = probed.as_deref().unwrap_or_default();
        let missing: Vec<&str> = MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)).map(|m| m.name).collect();
        if missing.is_empty() {
            if said.is_some() {
                tracing::info!(keyspace, "the ScyllaDB schema is ready");
            }
            return Ok(());
        }
        let why = match &probed {
            Ok(_) => String::new(),
            Err(e) => format!(" (no migration history readable yet: {e})"),
        };
        let waited = started.elapsed();
        if waited >= budget {
            anyhow::bail!(
                "keyspace {keyspace} lacks the migrations {} after waiting {} s{why}: run `chatmesh admin migrate` \
                 with this release (in Kubernetes, the chatmesh-migrate-<version> Job)",
                missing.join(", "),
                waited.as_secs()
            );
        }
        if said.is_none_or(|at| at.elapsed() >= SCHEMA_LOG_EVERY) {
            tracing::info!(
                keyspace,
                missing = %missing.join(","),
                "waiting for the ScyllaDB schema: keyspace {keyspace} lacks {}{why}; waiting up to {} s more for \
                 `chatmesh admin migrate` (the chatmesh-migrate-<version> Job)",
                missing.join(", "),
                budget.saturating_sub(waited).as_secs()
            );
            said = Some(tokio::time::Instant::now());
        }
        tokio::time::sleep(SCHEMA_POLL).await;
    }
}

/// `chatmesh admin migrate`: creates the keyspace if needed and applies pending migrations.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    if config.store.backend != StoreBackend::Scylla {
        anyhow::bail!("store.backend is \"embedded\": its stores create themselves; migrate applies to ScyllaDB");
    }
    let settings = scylla_config(config)?;
    let s = &config.store.scylla;
    if s.datacenter.is_empty() {
        anyhow::bail!("store.scylla.datacenter is empty: the keyspace is replicated per datacenter");
    }
    let replication =
        chatmesh_cql::migrate::Replication { datacenters: vec![(s.datacenter.clone(), s.replication_factor)] };
    let outcome = chatmesh_cql::migrate::migrate(&settings, &replication)
        .await
        .with_context(|| format!("migrating keyspace {} at {:?}", settings.keyspace, settings.contact_points))?;
    match outcome.applied.as_slice() {
        [] => println!("keyspace {} is at version {}: nothing to apply", settings.keyspace, outcome.version),
        applied => println!("keyspace {}: applied {applied:?}, now at version {}", settings.keyspace, outcome.version),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chatmesh_cql::{MemoryCql, schema::Schema, values};

    use super::*;

    /// The history table `chatmesh admin migrate` creates beside the migrations.
    const HISTORY: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (version int, name text, checksum text, \
                           applied_at_ms bigint, PRIMARY KEY (version))";

    static RECORD: Statement = chatmesh_cql::statement!(
        "test.record",
        idempotent,
        "INSERT INTO schema_migrations (version, name, checksum, applied_at_ms) VALUES (?, ?, ?, ?)"
    );

    fn keyspace() -> Cql {
        let migrations = MIGRATIONS.iter().map(|m| (m.name, m.cql)).chain([("history", HISTORY)]);
        Cql::memory(Arc::new(MemoryCql::new(Schema::parse(migrations).unwrap())))
    }

    async fn record(cql: &Cql, versions: impl IntoIterator<Item = i32>) {
        for version in versions {
            cql.execute(&RECORD, values![version, "m", "sum", 0i64]).await.unwrap();
        }
    }

    #[tokio::test]
    async fn the_applied_migrations_are_read_from_the_history() {
        let cql = keyspace();
        assert_eq!(applied_migrations(&cql).await.unwrap(), Vec::<i32>::new());
        record(&cql, [1, 2]).await;
        assert_eq!(applied_migrations(&cql).await.unwrap(), vec![1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_part_waits_for_the_migrations_it_lacks_then_starts() {
        let cql = keyspace();
        let newest = MIGRATIONS.last().unwrap().version;
        record(&cql, 1..newest).await;
        let asked = Mutex::new(0);
        let (asked_ref, cql_ref) = (&asked, &cql);
        let probe = move || async move {
            let times = {
                let mut asked = asked_ref.lock().unwrap();
                *asked += 1;
                *asked
            };
            // the migrate Job applies the last migration while the part waits
            if times == 4 {
                record(cql_ref, [newest]).await;
            }
            applied_migrations(cql_ref).await
        };
        wait_for_schema("chatmesh", probe, Duration::from_secs(270)).await.expect("ready once migrated");
        assert_eq!(*asked.lock().unwrap(), 4, "asked again until the schema was there");
    }

    #[tokio::test(start_paused = true)]
    async fn a_part_whose_schema_never_arrives_fails_naming_the_missing_migration() {
        let cql = keyspace();
        let newest = MIGRATIONS.last().unwrap();
        record(&cql, 1..newest.version).await;
        let cql_ref = &cql;
        let probe = move || applied_migrations(cql_ref);
        let started = tokio::time::Instant::now();
        let err = wait_for_schema("chatmesh", probe, Duration::from_secs(30)).await.unwrap_err().to_string();
        assert!(started.elapsed() >= Duration::from_secs(30), "waited the whole budget");
        assert!(err.contains(&format!("keyspace chatmesh lacks the migrations {} after", newest.name)), "{err}");
        assert!(err.contains("chatmesh admin migrate"), "{err}");

        // no keyspace or history at all: every migration is missing, and the reason is said
        let probe = || async { Err::<Vec<i32>, _>("Keyspace 'chatmesh' does not exist".to_owned()) };
        let err = wait_for_schema("chatmesh", probe, Duration::from_secs(3)).await.unwrap_err().to_string();
        assert!(err.contains(MIGRATIONS[0].name) && err.contains("does not exist"), "{err}");
    }
}
