//! What the parts of one process share at run time: their background tasks, the tokens that
//! stop them, and one connection per Redis; with the tasks every process may run before its
//! parts (the node id lease, the membership, block and session announcements).
//!
//! A stop runs in three steps (see [`Stopping`]): the listeners drain while the feed relays
//! keep handing on what is written; then the relays make a final pass; only then is the
//! node id released, so no other process mints ids with it while this one's feed still holds
//! changes not relayed.

use std::{collections::BTreeSet, path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use chatmesh_platform::{
    auth::Authenticator,
    config::{Config, StoreBackend},
    membership::EpochBoard,
    redis_pool::{Redis, RedisPool},
    shutdown::CancellationToken,
};
use tokio::task::JoinSet;

use crate::Part;

/// How long a relay's final pass may take at a stop (the chat pod's grace period allows it).
const FINAL_RELAY: Duration = Duration::from_secs(10);

/// What runs once the relays are done and before the node id is released.
type Closing = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// A process's background tasks, in the order a stop ends them.
#[derive(Default)]
pub(crate) struct Stopping {
    /// The listeners and every other task, ended by the shutdown token.
    serving: JoinSet<anyhow::Result<()>>,
    /// The feed relays: they run until the serving tasks have ended, then make a final pass.
    relays: JoinSet<anyhow::Result<()>>,
    relays_stop: CancellationToken,
    /// The stores' orderly close (the chat feed's clean-stop record), after the final pass.
    closing: Vec<Closing>,
    /// The node-id lease: released once the relays are done and the stores closed.
    lease: JoinSet<anyhow::Result<()>>,
    release: CancellationToken,
}

/// Waits for every task of `tasks`, keeping the first error one ended with.
async fn join_all(tasks: &mut JoinSet<anyhow::Result<()>>, first_error: &mut Option<anyhow::Error>) {
    while let Some(result) = tasks.join_next().await {
        if let Err(e) = result.map_err(anyhow::Error::from).and_then(|r| r) {
            tracing::error!(error = %e, "part stopped with an error");
            first_error.get_or_insert(e);
        }
    }
}

impl std::fmt::Debug for Stopping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stopping")
            .field("serving", &self.serving.len())
            .field("relays", &self.relays.len())
            .field("closing", &self.closing.len())
            .finish_non_exhaustive()
    }
}

impl Stopping {
    /// Ends every task once `shutdown` is cancelled (the caller cancels it): waits for the
    /// serving tasks to drain, then for the relays' final pass, then closes the stores, then
    /// releases the node id.
    /// Returns the first error a task ended with.
    pub(crate) async fn stop(&mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        join_all(&mut self.serving, &mut first_error).await;
        self.relays_stop.cancel();
        join_all(&mut self.relays, &mut first_error).await;
        for close in self.closing.drain(..) {
            close.await;
        }
        self.release.cancel();
        join_all(&mut self.lease, &mut first_error).await;
        first_error.map_or(Ok(()), Err)
    }
}

/// The background tasks of a process and what they share.
pub(crate) struct Background {
    pub(crate) shutdown: CancellationToken,
    /// Cancelled once every part of the process has started (the readiness probe waits for it).
    pub(crate) started: CancellationToken,
    stopping: Stopping,
    // why: one connection manager per Redis for the whole process, whatever uses it.
    pools: RedisPool,
}

impl Background {
    /// Background tasks connecting to Redis as `config` says (`redis.tls_ca_file`).
    pub(crate) fn new(config: &Config) -> anyhow::Result<Self> {
        let pools = RedisPool::with_ca_file(Path::new(&config.redis.tls_ca_file)).map_err(anyhow::Error::msg)?;
        Ok(Self {
            shutdown: CancellationToken::new(),
            started: CancellationToken::new(),
            stopping: Stopping::default(),
            pools,
        })
    }

    /// Runs `task` until the process stops; its error stops the process with an error.
    pub(crate) fn spawn(&mut self, task: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        self.stopping.serving.spawn(task);
    }

    /// Runs a relay of what this process writes (`relay(stop)` returns once `stop` is
    /// cancelled): through the listeners' drain, then once more with a cancelled token, a
    /// final pass that hands on what the drain wrote (within [`FINAL_RELAY`]).
    pub(crate) fn spawn_relay<F, R>(&mut self, name: &'static str, relay: R)
    where
        R: Fn(CancellationToken) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stopping.relays_stop.clone();
        self.stopping.relays.spawn(async move {
            relay(stop).await;
            let last = CancellationToken::new();
            last.cancel();
            match tokio::time::timeout(FINAL_RELAY, relay(last)).await {
                Ok(()) => tracing::info!(relay = name, "final relay pass done"),
                Err(_) => tracing::warn!(
                    relay = name,
                    "the final relay pass did not finish in {FINAL_RELAY:?}; the rest is relayed by the next \
                     process with this node id"
                ),
            }
            Ok(())
        });
    }

    /// Closes `store` at a stop, after the relays' final pass and before the node id is
    /// released; a failure only means the next process on this node waits out the replay window.
    pub(crate) fn close_at_stop(&mut self, store: Arc<dyn chatmesh_chat::store::ChatStore>) {
        self.stopping.closing.push(Box::pin(async move {
            match store.close().await {
                Ok(()) => tracing::info!("chat store closed"),
                Err(e) => tracing::warn!(error = %e, "the chat store could not record a clean stop"),
            }
        }));
    }

    /// The tasks, for [`crate::Running`] to stop.
    pub(crate) fn into_tasks(self) -> Stopping {
        self.stopping
    }

    /// The process's connection to the Redis at `url`.
    pub(crate) async fn redis(&self, url: &str) -> anyhow::Result<Redis> {
        self.pools.get(url).await.with_context(|| format!("connecting to Redis at {url}"))
    }

    /// This process's node id in generated ids. When Redis joins several processes and this one
    /// generates ids, the id is leased there (the configured one, or the lowest free one when
    /// `node_id` is 0) and kept until the process has relayed what it wrote.
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
        let (lost, release) = (self.shutdown.clone(), self.stopping.release.clone());
        self.stopping.lease.spawn(async move { lease.keep(lost, release).await.map_err(anyhow::Error::msg) });
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
        let board = self.relayed_board(&redis, chatmesh_platform::redis_keys::membership_epochs(), timeout);
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

    /// Block epochs (keyed by user id) shared by the parts of this process: raised by the user
    /// part, read by the block checks of the channel and chat parts; with Redis, announced to
    /// and from the other processes on a channel of their own.
    pub(crate) async fn block_epochs(&mut self, config: &Config) -> anyhow::Result<Arc<EpochBoard>> {
        let Some(url) = config.backplane_url() else { return Ok(Arc::new(EpochBoard::new())) };
        let timeout = Duration::from_millis(config.redis.timeout_ms);
        let redis = self.redis(url).await?;
        Ok(self.relayed_board(&redis, chatmesh_platform::redis_keys::block_epochs(), timeout))
    }

    /// A board whose raises are published on `channel`, and which records the raises the other
    /// processes publish there, until the shutdown.
    fn relayed_board(&mut self, redis: &Redis, channel: &'static str, timeout: Duration) -> Arc<EpochBoard> {
        let (board, outgoing) = EpochBoard::announcing();
        let board = Arc::new(board);
        let (receiver, stop, relayed) = (board.clone(), self.shutdown.clone(), redis.clone());
        self.spawn(async move {
            let incoming = move |message: &[u8]| receiver.record_announced(message);
            chatmesh_platform::relay::relay(relayed, channel, outgoing, incoming, timeout, stop).await;
            Ok(())
        });
        board
    }
}

/// Refuses a process that would mint ids with node id 0 beside others doing the same: a part
/// keeping its data in ScyllaDB may run as several replicas (nothing here can tell how many),
/// and without Redis nothing leases them distinct node ids, so they would mint duplicate ids;
/// ended sessions and rate limits would also stay per process.
pub(crate) fn refuse_unshared_ids(config: &Config, parts: &BTreeSet<Part>) -> anyhow::Result<()> {
    let stored: Vec<&str> = parts.iter().filter(|p| p.has_store()).map(|p| p.name()).collect();
    if config.store.backend != StoreBackend::Scylla
        || stored.is_empty()
        || config.node_id != 0
        || config.backplane_url().is_some()
    {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to start: the {} part{} keep{} data in ScyllaDB (store.backend = \"scylla\"), where several \
         replicas may run, but no Redis is configured (redis_url) and node_id is 0: every replica would mint ids \
         with node id 0, so ids would repeat, and ended sessions and rate limits would stay per process. Set \
         redis_url (CHATMESH_REDIS_URL; node ids are then leased there), or give each process a distinct \
         node_id (CHATMESH_NODE_ID, e.g. a StatefulSet's pod index)",
        stored.join(", "),
        if stored.len() > 1 { "s" } else { "" },
        if stored.len() > 1 { "" } else { "s" },
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::oneshot;

    use super::*;

    #[tokio::test]
    async fn a_stop_drains_the_listeners_then_relays_once_more_then_closes_the_stores_then_releases_the_node_id() {
        let mut background = Background::new(&Config::default()).unwrap();
        let said = Arc::new(Mutex::new(Vec::<&str>::new()));
        let say = |what| {
            let said = said.clone();
            move || said.lock().unwrap().push(what)
        };
        // a listener that drains until the test lets it end
        let (drained, drain) = oneshot::channel::<()>();
        let (stop, ended) = (background.shutdown.clone(), say("listeners drained"));
        background.spawn(async move {
            stop.cancelled().await;
            drain.await.unwrap_or_default();
            ended();
            Ok(())
        });
        // a relay: each pass says whether it ran while serving or as the final pass
        let passes = said.clone();
        background.spawn_relay("feed", move |stop: CancellationToken| {
            let passes = passes.clone();
            async move {
                let final_pass = stop.is_cancelled();
                stop.cancelled().await;
                passes.lock().unwrap().push(if final_pass { "final relay pass" } else { "relay stopped" });
            }
        });
        let closed = say("chat store closed");
        background.stopping.closing.push(Box::pin(async move { closed() }));
        let (release, released) = (background.stopping.release.clone(), say("node id released"));
        background.stopping.lease.spawn(async move {
            release.cancelled().await;
            released();
            Ok(())
        });

        let shutdown = background.shutdown.clone();
        let mut stopping = background.into_tasks();
        shutdown.cancel();
        let stopped = tokio::spawn(async move { stopping.stop().await });
        // the listeners still drain: the relay runs and the node id is held
        tokio::task::yield_now().await;
        assert!(said.lock().unwrap().is_empty(), "{:?}", said.lock().unwrap());
        drained.send(()).unwrap();
        stopped.await.unwrap().unwrap();
        assert_eq!(
            *said.lock().unwrap(),
            ["listeners drained", "relay stopped", "final relay pass", "chat store closed", "node id released"]
        );
    }

    #[test]
    fn a_production_store_without_redis_or_a_node_id_is_refused() {
        let parts: BTreeSet<Part> = [Part::User, Part::Rest].into();
        let mut config = Config::default();
        refuse_unshared_ids(&config, &parts).expect("embedded stores belong to one process");
        config.store.backend = StoreBackend::Scylla;
        let err = refuse_unshared_ids(&config, &parts).unwrap_err().to_string();
        assert!(err.contains("the user part keeps data in ScyllaDB") && err.contains("redis_url"), "{err}");
        assert!(err.contains("node_id is 0"), "{err}");
        refuse_unshared_ids(&config, &[Part::Rest, Part::Ws].into()).expect("no part mints ids");
        config.node_id = 7;
        refuse_unshared_ids(&config, &parts).expect("a node id of its own");
        config.node_id = 0;
        config.redis_url = "redis://127.0.0.1:6379".into();
        refuse_unshared_ids(&config, &parts).expect("node ids leased in Redis");
    }
}
