//! Operator commands: rebuilding and verifying the search index, a running server's status, and
//! granting roles.

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use chatmesh_api::{
    chat::v1::{GetSearchStatusRequest, chat_internal_service_client::ChatInternalServiceClient},
    user::v1::{SetRoleRequest, UserRole, user_internal_service_client::UserInternalServiceClient},
};
use chatmesh_chat::store::{ChatStore, FjallChatStore};
use chatmesh_platform::{
    auth::{Authenticator, UserKeys},
    config::{Config, StoreBackend},
    grpc::{ServiceAuth, internal_channel, remote_channel},
    ids::IdGenerator,
};
use chatmesh_search::{SearchIndex, TantivyIndex, rebuild};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::search_dir;

/// Rebuilds the embedded search index from the chat store, offline: the data dir must not be
/// in use. The new index is built beside the old one and replaces it only when complete.
pub async fn reindex(config: &Config) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let store = open_store(config, "reindex").await?;
    let live = search_dir(config);
    let fresh = live.with_extension("rebuild");
    remove_dir(&fresh)?;
    let index = TantivyIndex::open(&fresh, config.search.writer_memory_mib << 20)?;
    let bar = ProgressBar::new(store.chats_estimate().max(1)).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/~{len} chats ({per_sec}, {eta} left)")
            .context("progress style")?,
    );
    let read = rebuild(store.as_ref(), &index, |n| {
        bar.set_length(bar.length().unwrap_or(0).max(n));
        bar.set_position(n);
    })
    .await
    .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    let documents = index.documents().await?;
    let position = index.position().await?;
    drop(index);
    let old = live.with_extension("old");
    remove_dir(&old)?;
    if live.exists() {
        std::fs::rename(&live, &old).with_context(|| format!("moving {} aside", live.display()))?;
    }
    std::fs::rename(&fresh, &live).with_context(|| format!("moving {} into place", fresh.display()))?;
    remove_dir(&old)?;
    println!(
        "search index rebuilt in {:.1} s: {read} chats read, {documents} searchable, at event {position}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Compares the search index with the chat store, offline (the data dir must not be in use by
/// a chat part; an Elasticsearch index may be live). Fails when they differ.
pub async fn verify_index(config: &Config, json: bool) -> anyhow::Result<()> {
    let store = open_store(config, "verify-index").await?;
    let index = crate::search_index(config, false).await?;
    let comparison = chatmesh_search::compare(store.as_ref(), index.as_ref()).await.map_err(anyhow::Error::msg)?;
    if json {
        println!("{}", serde_json::to_string(&comparison)?);
    } else {
        println!(
            "store: {} searchable chats; index: {} documents; missing {}, extra {}, stale {}",
            comparison.searchable,
            comparison.indexed,
            comparison.missing.len(),
            comparison.extra.len(),
            comparison.stale.len()
        );
    }
    match comparison.differences() {
        0 => Ok(()),
        n => anyhow::bail!("the index differs from the store in {n} chats (`chatmesh admin reindex` rebuilds it)"),
    }
}

/// The chat store, opened by an offline command: the data dir's embedded store (which must not
/// be in use), or the ScyllaDB keyspace.
async fn open_store(config: &Config, command: &str) -> anyhow::Result<Arc<dyn ChatStore>> {
    let ids = Arc::new(IdGenerator::new(config.node_id).map_err(anyhow::Error::msg)?);
    if config.store.backend == StoreBackend::Scylla {
        return crate::stores::Stores::open(config, true).await?.chat(ids).await;
    }
    let chat_dir = config.data_dir.join("chat");
    if !chat_dir.exists() {
        anyhow::bail!("no chat store in {}", config.data_dir.display());
    }
    let store = FjallChatStore::open(&chat_dir, ids).map_err(|e| {
        anyhow::anyhow!(
            "opening the chat store in {}: {e} ({command} runs offline: stop the server using this data dir first)",
            chat_dir.display()
        )
    })?;
    Ok(Arc::new(store))
}

fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// What `chatmesh admin status` reports.
#[derive(Debug, Serialize)]
struct Status {
    grpc: String,
    health: String,
    search: Option<SearchLag>,
    /// Why search status is missing, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    search_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct SearchLag {
    newest_event_id: String,
    indexed_event_id: String,
    lag_events: i64,
    lag_seconds: f64,
    documents: i64,
    indexer_running: bool,
}

/// Asks a running server for its health and its search index's lag (with a service token
/// signed by the data dir's service key).
/// A connection to a running server's gRPC address (default: the configured `grpc.listen`),
/// and this command's service credentials for internal calls.
async fn server(
    config: &Config,
    grpc: Option<String>,
) -> anyhow::Result<(String, tonic::transport::Channel, ServiceAuth)> {
    let address = grpc.unwrap_or_else(|| format!("http://{}", config.grpc.listen));
    let auth = Arc::new(
        // why: admin commands sign with the service key only; the user keys may be public ones (a pod)
        Authenticator::open(config.auth.clone(), &config.data_dir, UserKeys::Verify)
            .context("loading the service key")?,
    );
    let channel = tonic::transport::Endpoint::from_shared(address.clone())
        .with_context(|| format!("gRPC address {address:?}"))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .with_context(|| format!("connecting to {address}"))?;
    Ok((address, channel, ServiceAuth::new(auth, "admin")))
}

/// Sets an account's role on a running server.
pub async fn grant(config: &Config, grpc: Option<String>, email: &str, admin: bool) -> anyhow::Result<()> {
    let (address, channel, credentials) = server(config, grpc).await?;
    let role = if admin { UserRole::Admin } else { UserRole::User };
    let request = SetRoleRequest { email: email.to_owned(), role: role as i32 };
    let user = UserInternalServiceClient::new(internal_channel(remote_channel(channel), credentials))
        .set_role(request)
        .await
        .map_err(|e| anyhow::anyhow!("{address}: {:?}: {}", e.code(), e.message()))?
        .into_inner()
        .user
        .context("the server answered no account")?;
    let role = if admin { "admin" } else { "user" };
    println!("{email} (user {}) is now {role}", user.user_id);
    Ok(())
}

pub async fn status(config: &Config, grpc: Option<String>, json: bool) -> anyhow::Result<()> {
    let (address, channel, credentials) = server(config, grpc).await?;
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .map(|r| format!("{:?}", r.into_inner().status()))
        .unwrap_or_else(|e| format!("unknown ({})", e.message()));
    let client = ChatInternalServiceClient::new(internal_channel(remote_channel(channel), credentials));
    let (search, search_error) = match client.clone().get_search_status(GetSearchStatusRequest {}).await {
        Ok(r) => {
            let r = r.into_inner();
            let lag = r.lag.unwrap_or_default();
            let lag_seconds = lag.seconds as f64 + f64::from(lag.nanos) / 1e9;
            let search = SearchLag {
                newest_event_id: r.newest_event_id,
                indexed_event_id: r.indexed_event_id,
                lag_events: r.lag_events,
                lag_seconds,
                documents: r.documents,
                indexer_running: r.indexer_running,
            };
            (Some(search), None)
        }
        Err(e) => (None, Some(format!("{:?}: {}", e.code(), e.message()))),
    };
    let status = Status { grpc: address, health, search, search_error };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    println!("gRPC {}: {}", status.grpc, status.health);
    match (&status.search, &status.search_error) {
        (Some(s), _) => println!(
            "search: {} chats indexed; {} changes behind ({:.1} s); indexed up to event {}, feed at {}; indexer {}",
            s.documents,
            s.lag_events,
            s.lag_seconds,
            if s.indexed_event_id.is_empty() { "-" } else { &s.indexed_event_id },
            if s.newest_event_id.is_empty() { "-" } else { &s.newest_event_id },
            if s.indexer_running { "running" } else { "not running" },
        ),
        (None, Some(e)) => println!("search: unavailable ({e})"),
        (None, None) => {}
    }
    Ok(())
}
