//! What the parts of one process share at run time: their background tasks, the token that
//! stops them, and one connection per Redis; with the tasks every process may run before its
//! parts (the node id lease, the membership and session announcements).

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use anyhow::Context as _;
use chatmesh_platform::{
    auth::Authenticator,
    config::Config,
    membership::EpochBoard,
    redis_pool::{Redis, RedisPool},
    shutdown::CancellationToken,
};
use tokio::task::JoinSet;

use crate::Part;

/// The background tasks of a process and what they share.
pub(crate) struct Background {
    pub(crate) shutdown: CancellationToken,
    tasks: JoinSet<anyhow::Result<()>>,
    // why: one connection manager per Redis for the whole process, whatever uses it.
    pools: RedisPool,
}

impl Background {
    pub(crate) fn new() -> Self {
        Self { shutdown: CancellationToken::new(), tasks: JoinSet::new(), pools: RedisPool::default() }
    }

    /// Runs `task` until the process stops; its error stops the process with an error.
    pub(crate) fn spawn(&mut self, task: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// The tasks, for [`crate::Running`] to drain.
    pub(crate) fn into_tasks(self) -> JoinSet<anyhow::Result<()>> {
        self.tasks
    }

    /// The process's connection to the Redis at `url`.
    pub(crate) async fn redis(&self, url: &str) -> anyhow::Result<Redis> {
        self.pools.get(url).await.with_context(|| format!("connecting to Redis at {url}"))
    }

    /// This process's node id in generated ids. When Redis joins several processes and this one
    /// generates ids, the id is leased there (the configured one, or the lowest free one when
    /// `node_id` is 0) and kept for as long as the process runs.
    pub(crate) async fn node_id(&mut self, config: &Config, parts: &BTreeSet<Part>) -> anyhow::Result<u16> {
        let generates = parts.iter().any(|p| p.has_store());
        let Some(url) = config.backplane_url().filter(|_| generates) else { return Ok(config.node_id) };
        let wanted = (config.node_id != 0).then_some(config.node_id);
        let redis = self.redis(url).await?;
        let lease = chatmesh_platform::node_lease::NodeLease::acquire(&redis, wanted, Duration::from_secs(30))
            .await
            .map_err(|e| anyhow::anyhow!("leasing a node id in Redis at {url}: {e}"))?;
        let node_id = lease.node_id;
        tracing::info!(node_id, "node id leased");
        let stop = self.shutdown.clone();
        self.spawn(async move { lease.keep(stop).await.map_err(anyhow::Error::msg) });
        Ok(node_id)
    }

    /// Membership epochs shared by the parts of this process; with Redis, announced to and
    /// from the other processes, as are ended sessions.
    pub(crate) async fn membership_epochs(
        &mut self,
        config: &Config,
        auth: &Arc<Authenticator>,
    ) -> anyhow::Result<Arc<EpochBoard>> {
        let Some(url) = config.backplane_url() else { return Ok(Arc::new(EpochBoard::new())) };
        let timeout = Duration::from_millis(config.redis.timeout_ms);
        let redis = self.redis(url).await?;
        let (board, outgoing) = EpochBoard::announcing();
        let board = Arc::new(board);
        let (receiver, stop, relayed) = (board.clone(), self.shutdown.clone(), redis.clone());
        self.spawn(async move {
            let incoming = move |message: &[u8]| receiver.record_announced(message);
            let channel = chatmesh_platform::redis_keys::membership_epochs();
            chatmesh_platform::relay::relay(relayed, channel, outgoing, incoming, timeout, stop).await;
            Ok(())
        });
        if let Some(outgoing) = auth.revocations().announce() {
            let (auth, stop) = (auth.clone(), self.shutdown.clone());
            self.spawn(async move {
                let incoming = move |message: &[u8]| auth.revocations().record_announced(message);
                let channel = chatmesh_platform::redis_keys::ended_sessions();
                chatmesh_platform::relay::relay(redis, channel, outgoing, incoming, timeout, stop).await;
                Ok(())
            });
        }
        Ok(board)
    }
}
