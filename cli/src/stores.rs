//! The stores of the user, channel and chat parts: embedded (fjall keyspaces under the data
//! dir, owned by one process) or ScyllaDB (one driver session per process, shared by every
//! part it runs; statements prepared at start so a schema mismatch stops the process at once).

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use chatmesh_channel::store::{ChannelStore, FjallChannelStore, ScyllaChannelStore};
use chatmesh_chat::store::{ChatStore, FjallChatStore, ScyllaChatStore};
use chatmesh_cql::{Cql, ScyllaConfig, ScyllaCql};
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

/// The driver's settings from `[store.scylla]`.
pub fn scylla_config(config: &Config) -> ScyllaConfig {
    let s = &config.store.scylla;
    let non_empty = |v: &str| (!v.is_empty()).then(|| v.to_owned());
    ScyllaConfig {
        contact_points: s.contact_points.clone(),
        keyspace: s.keyspace.clone(),
        datacenter: non_empty(&s.datacenter),
        username: non_empty(&s.username),
        password: non_empty(&s.password),
        request_timeout: Duration::from_millis(s.request_timeout_ms),
        connect_timeout: Duration::from_millis(s.connect_timeout_ms),
    }
}

impl Stores {
    /// Connects to ScyllaDB when it is the backend and `needed` (a part with a store runs).
    pub async fn open(config: &Config, needed: bool) -> anyhow::Result<Self> {
        let scylla = match (config.store.backend, needed) {
            (StoreBackend::Scylla, true) => {
                let settings = scylla_config(config);
                let session = ScyllaCql::connect(&settings, true).await.with_context(|| {
                    format!(
                        "connecting to ScyllaDB at {:?}, keyspace {} (created by `chatmesh admin migrate`)",
                        settings.contact_points, settings.keyspace
                    )
                })?;
                Some(Cql::scylla(Arc::new(session)))
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

/// `chatmesh admin migrate`: creates the keyspace if needed and applies pending migrations.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    if config.store.backend != StoreBackend::Scylla {
        anyhow::bail!("store.backend is \"embedded\": its stores create themselves; migrate applies to ScyllaDB");
    }
    let settings = scylla_config(config);
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
