//! Node-id leases: when several processes generate ids, each holds its node id through a
//! Redis key taken with SET NX and a TTL, renewed on a heartbeat, so two live processes never
//! generate ids with the same node id. A process that cannot renew its lease before it expires
//! stops (another may take the id), rather than risk a duplicate id.

use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::{ids::MAX_NODE_ID, redis_keys, shutdown::CancellationToken};

/// Releases the key only if it still holds this process's token.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Renews the key only if it still holds this process's token; 1 when renewed.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";

/// A held node id.
pub struct NodeLease {
    pub node_id: u16,
    connection: ConnectionManager,
    token: String,
    ttl: Duration,
}

impl std::fmt::Debug for NodeLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLease").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

impl NodeLease {
    /// Takes `wanted` if given (failing if another process holds it), else the lowest free id.
    pub async fn acquire(redis: &crate::redis_pool::Redis, wanted: Option<u16>, ttl: Duration) -> Result<Self, String> {
        let mut connection = redis.manager.clone();
        let token = format!("{:016x}", rand::random::<u64>());
        let candidates: Vec<u16> = match wanted {
            Some(id) => vec![id],
            None => (0..=MAX_NODE_ID).collect(),
        };
        for node_id in candidates {
            let taken: Option<String> = redis::cmd("SET")
                .arg(redis_keys::node_lease(node_id))
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query_async(&mut connection)
                .await
                .map_err(|e| e.to_string())?;
            if taken.is_some() {
                return Ok(Self { node_id, connection, token, ttl });
            }
        }
        Err(match wanted {
            Some(id) => format!("node_id {id} is held by another live process"),
            None => "every node id is held by a live process".into(),
        })
    }

    /// Renews the lease every third of its TTL until `shutdown`, then releases it. If it cannot
    /// be renewed before it expires, cancels `shutdown` (the process stops generating ids) and
    /// says why.
    pub async fn keep(self, shutdown: CancellationToken) -> Result<(), String> {
        let renew = redis::Script::new(RENEW);
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.ttl / 3) => {}
            }
            let mut connection = self.connection.clone();
            let mut call = renew.key(redis_keys::node_lease(self.node_id));
            call.arg(&self.token).arg(self.ttl.as_millis() as u64);
            match tokio::time::timeout(self.ttl / 3, call.invoke_async::<u64>(&mut connection)).await {
                Ok(Ok(1)) => renewed = tokio::time::Instant::now(),
                Ok(Ok(_)) => {
                    shutdown.cancel();
                    return Err(format!("the lease on node id {} was lost to another process", self.node_id));
                }
                _ if renewed.elapsed() >= self.ttl => {
                    shutdown.cancel();
                    return Err(format!("the lease on node id {} could not be renewed in time", self.node_id));
                }
                _ => tracing::warn!(node_id = self.node_id, "the node-id lease was not renewed; retrying"),
            }
        }
        let mut connection = self.connection.clone();
        let release = redis::Script::new(RELEASE);
        let mut call = release.key(redis_keys::node_lease(self.node_id));
        call.arg(&self.token);
        let _ = tokio::time::timeout(Duration::from_secs(1), call.invoke_async::<u64>(&mut connection)).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn live_processes_never_share_a_node_id() {
        let Ok(url) = std::env::var("CHATMESH_TEST_REDIS_URL") else {
            println!("skipped: CHATMESH_TEST_REDIS_URL is not set (.ci/run sets it)");
            return;
        };
        let ttl = Duration::from_secs(5);
        let pool = crate::redis_pool::RedisPool::default();
        let redis = pool.get(&url).await.expect("Redis answers");
        // why: a high id keeps this test clear of the leases other tests' processes take.
        let first = NodeLease::acquire(&redis, Some(1000), ttl).await.expect("a free id");
        let err = NodeLease::acquire(&redis, Some(1000), ttl).await.unwrap_err();
        assert!(err.contains("held by another"), "{err}");
        let stop = CancellationToken::new();
        let kept = tokio::spawn(first.keep(stop.clone()));
        stop.cancel();
        kept.await.unwrap().unwrap();
        let again = NodeLease::acquire(&redis, Some(1000), ttl).await.expect("released on stop");
        assert_eq!(again.node_id, 1000);
        let stop = CancellationToken::new();
        stop.cancel();
        again.keep(stop).await.unwrap();
    }
}
