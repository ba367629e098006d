//! One Redis connection manager per URL for the whole process, shared by every purpose that
//! points at that Redis (backplane publishing, presence, limits, leases, relays); it reconnects
//! by itself. Pub/sub subscriptions take connections of their own, as Redis requires.

use std::{collections::HashMap, sync::Arc};

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
}

impl RedisPool {
    /// The connection to `url`, made on first use.
    pub async fn get(&self, url: &str) -> Result<Redis, redis::RedisError> {
        let mut connected = self.connected.lock().await;
        if let Some(redis) = connected.get(url) {
            return Ok(redis.clone());
        }
        let client = redis::Client::open(url)?;
        let manager = client.get_connection_manager().await?;
        let redis = Redis { client, manager };
        connected.insert(url.to_owned(), redis.clone());
        Ok(redis)
    }
}
