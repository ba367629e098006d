//! Node-id leases: when several processes generate ids, each holds its node id through a
//! Redis key taken with SET NX and a TTL, renewed on a heartbeat, so two live processes never
//! generate ids with the same node id. A process that cannot renew its lease before it expires
//! stops (another may take the id), rather than risk a duplicate id. A process releases its id
//! only when told to, after its last id was minted and relayed.

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
    /// Takes `wanted` if given, else the lowest free id. A wanted id held by another process
    /// is waited for up to one `ttl`: a crashed predecessor with the same id (a StatefulSet
    /// pod's index) leaves its lease behind until it expires. Past that the holder is alive,
    /// and taking the id fails.
    pub async fn acquire(redis: &crate::redis_pool::Redis, wanted: Option<u16>, ttl: Duration) -> Result<Self, String> {
        let mut connection = redis.manager.clone();
        let token = format!("{:016x}", rand::random::<u64>());
        let Some(node_id) = wanted else {
            for node_id in 0..=MAX_NODE_ID {
                if take(&mut connection, node_id, &token, ttl).await? {
                    return Ok(Self { node_id, connection, token, ttl });
                }
            }
            return Err("every node id is held by a live process".into());
        };
        let started = tokio::time::Instant::now();
        let mut said = None;
        loop {
            if take(&mut connection, node_id, &token, ttl).await? {
                return Ok(Self { node_id, connection, token, ttl });
            }
            // why: a live holder renews every third of the TTL; one TTL (and a retry's worth
            // more) without a release or an expiry means it is alive
            if started.elapsed() > ttl + WANTED_RETRY {
                return Err(format!("node_id {node_id} is held by another live process"));
            }
            if said.is_none_or(|at: tokio::time::Instant| at.elapsed() >= WAIT_LOG_EVERY) {
                let left = ttl.saturating_sub(started.elapsed()).as_secs();
                tracing::info!(
                    node_id,
                    "node id {node_id} is held by another process (a predecessor that has not released it); \
                     waiting up to {left} s more for its lease to expire"
                );
                said = Some(tokio::time::Instant::now());
            }
            tokio::time::sleep(WANTED_RETRY).await;
        }
    }

    /// Renews the lease every third of its TTL until `release`, then releases it. If it cannot
    /// be renewed before it expires, cancels `lost` (the process stops generating ids) and says
    /// why.
    pub async fn keep(self, lost: CancellationToken, release: CancellationToken) -> Result<(), String> {
        let renew = redis::Script::new(RENEW);
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = release.cancelled() => break,
                () = tokio::time::sleep(self.ttl / 3) => {}
            }
            let mut connection = self.connection.clone();
            let mut call = renew.key(redis_keys::node_lease(self.node_id));
            call.arg(&self.token).arg(self.ttl.as_millis() as u64);
            match tokio::time::timeout(self.ttl / 3, call.invoke_async::<u64>(&mut connection)).await {
                Ok(Ok(1)) => renewed = tokio::time::Instant::now(),
                Ok(Ok(_)) => {
                    lost.cancel();
                    return Err(format!("the lease on node id {} was lost to another process", self.node_id));
                }
                _ if renewed.elapsed() >= self.ttl => {
                    lost.cancel();
                    return Err(format!("the lease on node id {} could not be renewed in time", self.node_id));
                }
                _ => tracing::warn!(node_id = self.node_id, "the node-id lease was not renewed; retrying"),
            }
        }
        let mut connection = self.connection.clone();
        let release = redis::Script::new(RELEASE);
        let mut call = release.key(redis_keys::node_lease(self.node_id));
        call.arg(&self.token);
        match tokio::time::timeout(Duration::from_secs(1), call.invoke_async::<u64>(&mut connection)).await {
            Ok(Ok(_)) => tracing::info!(node_id = self.node_id, "node id released"),
            _ => {
                tracing::warn!(node_id = self.node_id, "the node-id lease could not be released; it expires by itself")
            }
        }
        Ok(())
    }
}

/// How often a wanted id held by another process is asked for again.
const WANTED_RETRY: Duration = Duration::from_millis(500);
/// How often the wait for a wanted id says so.
const WAIT_LOG_EVERY: Duration = Duration::from_secs(5);

/// SET NX of `node_id`'s lease; whether it was taken.
async fn take(connection: &mut ConnectionManager, node_id: u16, token: &str, ttl: Duration) -> Result<bool, String> {
    let taken: Option<String> = redis::cmd("SET")
        .arg(redis_keys::node_lease(node_id))
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(ttl.as_millis() as u64)
        .query_async(connection)
        .await
        .map_err(|e| e.to_string())?;
    Ok(taken.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn redis() -> Option<crate::redis_pool::Redis> {
        let Ok(url) = std::env::var("CHATMESH_TEST_REDIS_URL") else {
            println!("skipped: CHATMESH_TEST_REDIS_URL is not set (.ci/run sets it)");
            return None;
        };
        Some(crate::redis_pool::RedisPool::default().get(&url).await.expect("Redis answers"))
    }

    #[tokio::test]
    async fn live_processes_never_share_a_node_id() {
        let Some(redis) = redis().await else { return };
        let ttl = Duration::from_secs(2);
        // why: a high id keeps this test clear of the leases other tests' processes take.
        let first = NodeLease::acquire(&redis, Some(1000), ttl).await.expect("a free id");
        let (lost, release) = (CancellationToken::new(), CancellationToken::new());
        let kept = tokio::spawn(first.keep(lost.clone(), release.clone()));
        // a live holder renews: waiting out one TTL does not get its id
        let err = NodeLease::acquire(&redis, Some(1000), ttl).await.unwrap_err();
        assert!(err.contains("held by another"), "{err}");
        assert!(!lost.is_cancelled());
        release.cancel();
        kept.await.unwrap().unwrap();
        let again = NodeLease::acquire(&redis, Some(1000), ttl).await.expect("released on stop");
        assert_eq!(again.node_id, 1000);
        let release = CancellationToken::new();
        release.cancel();
        again.keep(CancellationToken::new(), release).await.unwrap();
    }

    #[tokio::test]
    async fn a_wanted_id_left_by_a_crashed_holder_is_taken_once_its_lease_expires() {
        let Some(redis) = redis().await else { return };
        let ttl = Duration::from_secs(3);
        // a predecessor that crashed: its lease stays until the TTL it set runs out
        let mut connection = redis.manager.clone();
        let _: () = redis::cmd("SET")
            .arg(redis_keys::node_lease(1001))
            .arg("crashed")
            .arg("PX")
            .arg(1_000)
            .query_async(&mut connection)
            .await
            .unwrap();
        let lease = NodeLease::acquire(&redis, Some(1001), ttl).await.expect("taken after the old lease expired");
        assert_eq!(lease.node_id, 1001);
        let release = CancellationToken::new();
        release.cancel();
        lease.keep(CancellationToken::new(), release).await.unwrap();
    }
}
