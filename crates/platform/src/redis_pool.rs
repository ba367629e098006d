//! One Redis connection manager per URL for the whole process, shared by every purpose that
//! points at that Redis (backplane publishing, presence, limits, leases, relays); it reconnects
//! by itself. Pub/sub subscriptions take connections of their own, as Redis requires.
//!
//! `rediss://` URLs connect over TLS (rustls), trusting the public web roots, or only the CA
//! bundle given with [`RedisPool::with_ca_file`] (a private CA).

use std::{collections::HashMap, path::Path, sync::Arc};

use redis::aio::ConnectionManager;

/// A Redis: its client (for subscriptions) and the process's shared connection manager.
#[derive(Clone)]
pub struct Redis {
    pub client: redis::Client,
    pub manager: ConnectionManager,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").finish_non_exhaustive()
    }
}

#[derive(Clone, Default, Debug)]
pub struct RedisPool {
    connected: Arc<tokio::sync::Mutex<HashMap<String, Redis>>>,
    /// The CA bundle (PEM) `rediss://` servers are checked against; none: the web roots.
    ca: Option<Arc<Vec<u8>>>,
}

impl RedisPool {
    /// A pool whose `rediss://` connections trust only the CA certificates in the PEM file
    /// `path` (`redis.tls_ca_file`); an empty path keeps the public web roots.
    pub fn with_ca_file(path: &Path) -> Result<Self, String> {
        if path.as_os_str().is_empty() {
            return Ok(Self::default());
        }
        let pem = crate::tls::read_ca_bundle(path)?;
        Ok(Self { connected: Arc::default(), ca: Some(Arc::new(pem)) })
    }

    /// The connection to `url`, made on first use.
    pub async fn get(&self, url: &str) -> Result<Redis, redis::RedisError> {
        let mut connected = self.connected.lock().await;
        if let Some(redis) = connected.get(url) {
            return Ok(redis.clone());
        }
        let client = self.client(url)?;
        let manager = client.get_connection_manager().await?;
        let redis = Redis { client, manager };
        connected.insert(url.to_owned(), redis.clone());
        Ok(redis)
    }

    fn client(&self, url: &str) -> Result<redis::Client, redis::RedisError> {
        if !url.starts_with("rediss://") {
            return redis::Client::open(url);
        }
        // why: rustls builds its client config with the process's default crypto provider, and
        // two are compiled in (aws-lc-rs and ring, through other crates): name one
        crate::tls::install_crypto_provider();
        match &self.ca {
            None => redis::Client::open(url),
            Some(pem) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates { client_tls: None, root_cert: Some(pem.as_ref().clone()) },
            ),
        }
    }
}
