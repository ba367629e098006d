//! The `chatmesh` binary's wiring: which parts run in this process, on which listeners.
//! Binaries only wire; every rule lives in a service or the platform crate.

pub mod admin;
pub mod stores;

use std::{collections::BTreeSet, net::SocketAddr, str::FromStr, sync::Arc};

use anyhow::Context as _;
use chatmesh_api::{
    FILE_DESCRIPTOR_SET,
    channel::v1::{
        channel_internal_service_server::ChannelInternalServiceServer, channel_service_server::ChannelServiceServer,
    },
    chat::v1::{chat_internal_service_server::ChatInternalServiceServer, chat_service_server::ChatServiceServer},
    dispatcher::v1::{
        dispatcher_internal_service_server::DispatcherInternalServiceServer,
        dispatcher_service_server::DispatcherServiceServer,
    },
    user::v1::{user_internal_service_server::UserInternalServiceServer, user_service_server::UserServiceServer},
};
use chatmesh_platform::{
    auth::Authenticator,
    config::Config,
    grpc::{
        GrpcChannel, LateChannel, PlatformLayer, Policy, ServiceAuth, in_process_channel, internal_channel,
        remote_channel,
    },
    ids::IdGenerator,
    membership::{EpochBoard, MembershipClient},
    shutdown::CancellationToken,
};
use tokio::{net::TcpListener, sync::Notify, task::JoinSet};
use tonic::{codec::CompressionEncoding, service::Routes};
use tonic_health::{ServingStatus, server::HealthReporter};

/// A part of the mesh that a process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    User,
    Channel,
    Chat,
    Dispatcher,
    Indexer,
    Rest,
    Ws,
}

impl Part {
    pub const ALL: [Part; 7] =
        [Part::User, Part::Channel, Part::Chat, Part::Dispatcher, Part::Indexer, Part::Rest, Part::Ws];

    fn is_grpc(self) -> bool {
        matches!(self, Part::User | Part::Channel | Part::Chat | Part::Dispatcher)
    }
}

impl FromStr for Part {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "user" => Part::User,
            "channel" => Part::Channel,
            "chat" => Part::Chat,
            "dispatcher" => Part::Dispatcher,
            "indexer" => Part::Indexer,
            "rest" => Part::Rest,
            "ws" => Part::Ws,
            other => {
                return Err(format!(
                    "unknown part {other:?}: one of user, channel, chat, dispatcher, indexer, rest, ws"
                ));
            }
        })
    }
}

/// A running process: its bound addresses, and how to stop it.
#[derive(Debug)]
pub struct Running {
    /// The gRPC listener, when a gRPC part runs here (public services only when an
    /// internal listener is configured).
    pub grpc_addr: Option<SocketAddr>,
    /// The internal gRPC listener (every service), when configured.
    pub internal_grpc_addr: Option<SocketAddr>,
    pub rest_addr: Option<SocketAddr>,
    pub ws_addr: Option<SocketAddr>,
    /// Where Prometheus metrics are served, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// The process's own routes behind the platform layer stack (no socket).
    pub in_process: Option<GrpcChannel>,
    pub auth: Arc<Authenticator>,
    shutdown: CancellationToken,
    tasks: JoinSet<anyhow::Result<()>>,
    health: Option<Health>,
    /// The in-process transport between parts; dropping it frees the parts and their stores.
    _local: Option<LateChannel>,
}

/// The health reporter and every service name it reports on.
#[derive(Debug)]
struct Health {
    reporter: HealthReporter,
    served: Vec<&'static str>,
}

impl Running {
    /// A token that stops the process when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the shutdown token is cancelled, reports NOT_SERVING, drains, and returns.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        self.shutdown.cancelled().await;
        self.drain().await
    }

    /// Stops now: NOT_SERVING, then drain.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.drain().await
    }

    async fn drain(&mut self) -> anyhow::Result<()> {
        // why: readiness fails first, so balancers stop sending before the listeners close.
        if let Some(health) = &self.health {
            for name in &health.served {
                health.reporter.set_service_status(*name, ServingStatus::NotServing).await;
            }
        }
        self.shutdown.cancel();
        let mut first_error = None;
        while let Some(result) = self.tasks.join_next().await {
            if let Err(e) = result.map_err(anyhow::Error::from).and_then(|r| r) {
                tracing::error!(error = %e, "part stopped with an error");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Starts `parts` in this process on the listeners of `config` (port 0 picks a free port).
pub async fn start(config: Config, parts: &BTreeSet<Part>) -> anyhow::Result<Running> {
    match config.search.source.as_str() {
        "feed" if parts.contains(&Part::Indexer) && !parts.contains(&Part::Chat) => anyhow::bail!(
            "search.source = \"feed\": the indexer follows the chat store's feed, so it runs in the chat part's \
             process; with search.source = \"stream\" (and Redis) it can run anywhere"
        ),
        "feed" => {}
        "stream" if config.stream_url().is_none() => {
            anyhow::bail!("search.source = \"stream\" needs Redis: set redis_url or redis.stream_url")
        }
        "stream" => {}
        other => anyhow::bail!("search.source = {other:?}: \"feed\" or \"stream\""),
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data dir {}", config.data_dir.display()))?;
    let auth = Arc::new(
        Authenticator::from_data_dir(config.auth.clone(), &config.data_dir).context("loading the signing keys")?,
    );
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    // why: one connection manager per Redis for the whole process, whatever uses it.
    let pools = chatmesh_platform::redis_pool::RedisPool::default();
    let node_id = node_id(&config, parts, &pools, &shutdown, &mut tasks).await?;
    let ids = Arc::new(IdGenerator::new(node_id).map_err(anyhow::Error::msg)?);

    let mut running = Running {
        grpc_addr: None,
        internal_grpc_addr: None,
        rest_addr: None,
        ws_addr: None,
        metrics_addr: None,
        in_process: None,
        auth: auth.clone(),
        shutdown: shutdown.clone(),
        tasks: JoinSet::new(),
        health: None,
        _local: None,
    };

    if config.metrics.enabled {
        let grace = std::time::Duration::from_secs(1);
        let router = metrics_router(shutdown.clone());
        let (addr, task) = serve_http("metrics", config.metrics.listen, grace, router, &shutdown).await?;
        running.metrics_addr = Some(addr);
        tasks.spawn(task);
    }
    let local = LateChannel::new();
    let epochs = match config.backplane_url() {
        Some(url) => {
            let (board, outgoing) = EpochBoard::announcing();
            let board = Arc::new(board);
            let timeout = std::time::Duration::from_millis(config.redis.timeout_ms);
            let redis = connect_redis(&pools, url).await?;
            let (receiver, stop, relayed) = (board.clone(), shutdown.clone(), redis.clone());
            tasks.spawn(async move {
                let incoming = move |message: &[u8]| receiver.record_announced(message);
                let channel = chatmesh_platform::redis_keys::membership_epochs();
                chatmesh_platform::relay::relay(relayed, channel, outgoing, incoming, timeout, stop).await;
                Ok(())
            });
            if let Some(outgoing) = auth.revocations().announce() {
                let (auth, stop) = (auth.clone(), shutdown.clone());
                tasks.spawn(async move {
                    let incoming = move |message: &[u8]| auth.revocations().record_announced(message);
                    let channel = chatmesh_platform::redis_keys::ended_sessions();
                    chatmesh_platform::relay::relay(redis, channel, outgoing, incoming, timeout, stop).await;
                    Ok(())
                });
            }
            board
        }
        None => Arc::new(EpochBoard::new()),
    };
    let peers = Peers::new(&config, parts, &local, epochs)?;
    let media = match parts.contains(&Part::Chat) {
        true => Some(Arc::new(
            chatmesh_chat::media::Media::open(&config.media, &config.data_dir).context("opening the media store")?,
        )),
        false => None,
    };
    if parts.iter().any(|p| p.is_grpc()) {
        let mut policy = Policy::new(auth.clone(), &config);
        if let Some(url) = config.limits_url() {
            let timeout = std::time::Duration::from_millis(config.redis.timeout_ms);
            let limits = &config.limits;
            let redis = connect_redis(&pools, url).await?;
            let shared = chatmesh_platform::shared_limits::SharedLimiter::new(
                &redis,
                limits.user_calls_per_sec,
                limits.user_calls_burst,
                timeout,
            );
            policy = policy.with_shared_limits(shared);
        }
        let layer = PlatformLayer::new(Arc::new(policy));
        let (routes, health) =
            grpc_routes(&config, parts, media.as_ref(), &pools, &auth, &ids, &peers, &shutdown, &mut tasks).await?;
        let in_process = in_process_channel(routes.clone(), layer.clone());
        local.set(in_process.clone());
        running.in_process = Some(in_process);
        running.health = Some(health);
        let public = match config.grpc.internal_listen {
            Some(addr) => {
                let (bound, task) =
                    serve_grpc("internal gRPC", addr, &config, layer.clone(), routes.clone(), &shutdown).await?;
                running.internal_grpc_addr = Some(bound);
                tasks.spawn(task);
                layer.public_only()
            }
            None => layer,
        };
        let (bound, task) = serve_grpc("gRPC", config.grpc.listen, &config, public, routes, &shutdown).await?;
        running.grpc_addr = Some(bound);
        tasks.spawn(task);
    }
    if parts.contains(&Part::Indexer) && !parts.contains(&Part::Chat) {
        // an indexer of its own: chats' current states come from the chat part's internal RPC
        let chat =
            internal_channel(peers.need(&peers.chat, "indexer", "chat")?, ServiceAuth::new(auth.clone(), "indexer"));
        let source = Arc::new(chatmesh_chat::search::source::GrpcSource(
            chatmesh_api::chat::v1::chat_internal_service_client::ChatInternalServiceClient::new(chat),
        ));
        let index = search_index(&config, true).await?;
        let status = Arc::new(chatmesh_chat::search::IndexerStatus::default());
        spawn_stream_indexer(&config, &pools, source, index, shutdown.clone(), status, &mut tasks).await?;
    }
    if parts.contains(&Part::Rest) {
        let services = peers.by_service();
        let mut router = chatmesh_gateway_rest::router(auth.clone(), services, &config.rest.cors_origins);
        // why: local media URLs are served beside the REST gateway, not by it (no JSON, no gRPC).
        if let Some(files) = media.as_ref().and_then(|m| m.local_router()) {
            router = files.merge(router);
        }
        let (addr, task) = serve_http(
            "REST",
            config.rest.listen,
            std::time::Duration::from_secs(config.rest.drain_secs),
            router,
            &shutdown,
        )
        .await?;
        running.rest_addr = Some(addr);
        if let Some(media) = &media {
            media.set_default_origin(format!("http://{addr}"));
        }
        tasks.spawn(task);
    }
    if parts.contains(&Part::Ws) {
        let listener = TcpListener::bind(config.ws.listen)
            .await
            .with_context(|| format!("binding WebSocket on {}", config.ws.listen))?;
        running.ws_addr = Some(listener.local_addr()?);
        let gateway = chatmesh_gateway_ws::Gateway::new(
            auth.clone(),
            peers.need(&peers.chat, "ws", "chat")?,
            peers.need(&peers.dispatcher, "ws", "dispatcher")?,
            config.ws.clone(),
        );
        let attach =
            internal_channel(peers.need(&peers.dispatcher, "ws", "dispatcher")?, ServiceAuth::new(auth.clone(), "ws"));
        let stop = shutdown.clone();
        tasks.spawn(async move { gateway.serve(listener, attach, stop).await.context("WebSocket gateway") });
        tracing::info!(addr = %running.ws_addr.unwrap_or(config.ws.listen), "WebSocket listening");
    }
    running._local = Some(local);
    running.tasks = tasks;
    Ok(running)
}

/// Every gRPC service of `parts`, with grpc.health.v1 (one status per service) and
/// reflection v1 and v1alpha.
#[allow(clippy::too_many_arguments)]
async fn grpc_routes(
    config: &Config,
    parts: &BTreeSet<Part>,
    media: Option<&Arc<chatmesh_chat::media::Media>>,
    pools: &chatmesh_platform::redis_pool::RedisPool,
    auth: &Arc<Authenticator>,
    ids: &Arc<IdGenerator>,
    peers: &Peers,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<(Routes, Health)> {
    let max = config.grpc.max_message_bytes;
    let stores =
        stores::Stores::open(config, parts.iter().any(|p| matches!(p, Part::User | Part::Channel | Part::Chat)))
            .await?;
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let mut served = vec![""];
    let mut routes = Routes::new(health_service).add_service(reflection_v1).add_service(reflection_v1alpha);

    // why: one macro keeps every server configured alike (limits, compression, health).
    macro_rules! add {
        ($server:ident, $api:expr) => {{
            let server = $server::new($api)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip);
            health.set_service_status(service_name(&server), ServingStatus::Serving).await;
            served.push(service_name(&server));
            routes = routes.add_service(server);
        }};
    }

    if parts.contains(&Part::User) {
        let store = stores.user().await?;
        let live = peers.dispatcher.clone().map(|d| internal_channel(d, ServiceAuth::new(auth.clone(), "user")));
        let (public, internal) = chatmesh_user::UserApi::new(config, store, auth.clone(), ids.clone(), live)
            .await
            .map_err(|e| anyhow::anyhow!("starting the user service: {e}"))?;
        add!(UserServiceServer, public);
        add!(UserInternalServiceServer, internal);
    }
    if parts.contains(&Part::Channel) {
        let store = stores.channel().await?;
        let credentials = ServiceAuth::new(auth.clone(), "channel");
        let users = chatmesh_channel::GrpcUserDirectory::new(internal_channel(
            peers.need(&peers.user, "channel", "user")?,
            credentials.clone(),
        ));
        let outbox = Arc::new(Notify::new());
        let (public, internal) = chatmesh_channel::ChannelApi::new(
            store.clone(),
            Arc::new(users),
            ids.clone(),
            peers.epochs.clone(),
            outbox.clone(),
        );
        let log = internal_channel(peers.need(&peers.chat, "channel", "chat")?, credentials);
        let stop = shutdown.clone();
        tasks.spawn(async move {
            chatmesh_channel::run_outbox_relay(store, log, outbox, stop).await;
            Ok(())
        });
        add!(ChannelServiceServer, public);
        add!(ChannelInternalServiceServer, internal);
    }
    if parts.contains(&Part::Chat) {
        let store = stores.chat(ids.clone()).await?;
        let credentials = ServiceAuth::new(auth.clone(), "chat");
        let membership = MembershipClient::new(
            internal_channel(peers.need(&peers.channel, "chat", "channel")?, credentials.clone()),
            peers.epochs.clone(),
        );
        let chat_peers = chatmesh_chat::Peers::new(
            membership,
            internal_channel(peers.need(&peers.user, "chat", "user")?, credentials.clone()),
        );
        let publisher: Arc<dyn chatmesh_chat::Publisher> = Arc::new(chatmesh_chat::GrpcPublisher::new(
            internal_channel(peers.need(&peers.dispatcher, "chat", "dispatcher")?, credentials.clone()),
        ));
        let (committed, woken) = tokio::sync::watch::channel(0u64);
        let search = open_search(config, parts, pools, &store, &woken, shutdown, tasks).await?;
        if let Some(media) = media {
            let (store, media, stop) = (store.clone(), media.clone(), shutdown.clone());
            tasks.spawn(async move {
                chatmesh_chat::media::run_sweeper(store, media, stop).await;
                Ok(())
            });
        }
        let (public, internal) = chatmesh_chat::ChatApi::new(chatmesh_chat::ChatDeps {
            store: store.clone(),
            peers: chat_peers,
            publisher: publisher.clone(),
            committed,
            search: Some(search),
            media: media.cloned(),
            ids: ids.clone(),
        });
        let activity = chatmesh_chat::ActivitySink::new(internal_channel(
            peers.need(&peers.channel, "chat", "channel")?,
            credentials,
        ));
        let mut sinks: Vec<Arc<dyn chatmesh_chat::FeedSink>> =
            vec![Arc::new(chatmesh_chat::PublishSink(publisher)), Arc::new(activity)];
        if config.search.source == "stream"
            && let Some(url) = config.stream_url()
        {
            let redis = connect_redis(pools, url).await?;
            sinks.push(Arc::new(chatmesh_chat::search::stream::StreamSink::new(redis.manager)));
        }
        for sink in sinks {
            let (store, woken, stop) = (store.clone(), woken.clone(), shutdown.clone());
            tasks.spawn(async move {
                chatmesh_chat::run_feed_relay(store, sink, woken, stop).await;
                Ok(())
            });
        }
        add!(ChatServiceServer, public);
        add!(ChatInternalServiceServer, internal);
    }
    if parts.contains(&Part::Dispatcher) {
        let membership = MembershipClient::new(
            internal_channel(
                peers.need(&peers.channel, "dispatcher", "channel")?,
                ServiceAuth::new(auth.clone(), "dispatcher"),
            ),
            peers.epochs.clone(),
        );
        let cluster = match config.backplane_url() {
            Some(url) => {
                let timeout = std::time::Duration::from_millis(config.redis.timeout_ms);
                let (backplane, inbound) = chatmesh_dispatcher::RedisBackplane::connect(
                    &connect_redis(pools, url).await?,
                    timeout,
                    shutdown.clone(),
                );
                let presence_url = config.presence_url().unwrap_or(url);
                let ttl = std::time::Duration::from_secs(config.redis.presence_ttl_secs.max(3));
                let presence =
                    chatmesh_dispatcher::RedisPresence::new(&connect_redis(pools, presence_url).await?, timeout, ttl);
                tracing::info!("dispatcher joined the Redis backplane");
                Some(chatmesh_dispatcher::Cluster { backplane, inbound, presence })
            }
            None => None,
        };
        let (public, internal) =
            chatmesh_dispatcher::DispatcherApi::new(membership, config.dispatcher.small_channel_max, cluster);
        add!(DispatcherServiceServer, public);
        add!(DispatcherInternalServiceServer, internal);
    }
    health.set_service_status("", ServingStatus::Serving).await;
    Ok((routes, Health { reporter: health, served }))
}

/// The process's connection to the Redis at `url`.
async fn connect_redis(
    pools: &chatmesh_platform::redis_pool::RedisPool,
    url: &str,
) -> anyhow::Result<chatmesh_platform::redis_pool::Redis> {
    pools.get(url).await.with_context(|| format!("connecting to Redis at {url}"))
}

/// This process's node id in generated ids. When Redis joins several processes and this one
/// generates ids, the id is leased there (the configured one, or the lowest free one when
/// `node_id` is 0) and kept for as long as the process runs.
async fn node_id(
    config: &Config,
    parts: &BTreeSet<Part>,
    pools: &chatmesh_platform::redis_pool::RedisPool,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<u16> {
    let generates = parts.iter().any(|p| matches!(p, Part::User | Part::Channel | Part::Chat));
    let Some(url) = config.backplane_url().filter(|_| generates) else { return Ok(config.node_id) };
    let wanted = (config.node_id != 0).then_some(config.node_id);
    let redis = connect_redis(pools, url).await?;
    let lease = chatmesh_platform::node_lease::NodeLease::acquire(&redis, wanted, std::time::Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("leasing a node id in Redis at {url}: {e}"))?;
    let node_id = lease.node_id;
    tracing::info!(node_id, "node id leased");
    let stop = shutdown.clone();
    tasks.spawn(async move { lease.keep(stop).await.map_err(anyhow::Error::msg) });
    Ok(node_id)
}

/// The chat part's search index under the data dir, and its indexer when the indexer part
/// runs here.
async fn open_search(
    config: &Config,
    parts: &BTreeSet<Part>,
    pools: &chatmesh_platform::redis_pool::RedisPool,
    store: &Arc<dyn chatmesh_chat::store::ChatStore>,
    woken: &tokio::sync::watch::Receiver<u64>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<chatmesh_chat::Search> {
    use chatmesh_chat::search::{IndexerSettings, IndexerStatus, source::StoreSource};
    let indexes_here = parts.contains(&Part::Indexer);
    let index = search_index(config, indexes_here).await?;
    let indexer = Arc::new(IndexerStatus::default());
    if !indexes_here {
        if config.search.source == "feed" {
            tracing::warn!("no indexer runs with this chat part: search results will not follow new chats");
        }
        return Ok(chatmesh_chat::Search { index, indexer });
    }
    let (index_, stop, status) = (index.clone(), shutdown.clone(), indexer.clone());
    if config.search.source == "stream" {
        let source = Arc::new(StoreSource(store.clone()));
        spawn_stream_indexer(config, pools, source, index_, stop, status, tasks).await?;
    } else {
        let settings = IndexerSettings {
            commit_interval: std::time::Duration::from_millis(config.search.commit_interval_ms),
            commit_batch: config.search.commit_batch.max(1),
        };
        let (store, woken) = (store.clone(), woken.clone());
        tasks.spawn(async move {
            chatmesh_chat::search::run_indexer(store, index_, settings, woken, stop, status).await;
            Ok(())
        });
    }
    Ok(chatmesh_chat::Search { index, indexer })
}

/// The search index: Elasticsearch, or the embedded one (written here when `writes`, else only
/// searched while an indexer in another process writes it).
pub(crate) async fn search_index(
    config: &Config,
    writes: bool,
) -> anyhow::Result<Arc<dyn chatmesh_chat::search::SearchIndex>> {
    use chatmesh_chat::search::TantivyIndex;
    Ok(match config.search.backend.as_str() {
        "embedded" if writes => {
            Arc::new(TantivyIndex::open(&search_dir(config), config.search.writer_memory_mib << 20)?)
        }
        "embedded" => Arc::new(TantivyIndex::open_reader(&search_dir(config))?),
        "elasticsearch" => {
            let search = &config.search;
            if search.elasticsearch_url.is_empty() {
                anyhow::bail!("search.backend = \"elasticsearch\" needs search.elasticsearch_url");
            }
            let optional = |s: &str| (!s.is_empty()).then(|| s.to_owned());
            let settings = chatmesh_chat::search::ElasticsearchSettings {
                url: search.elasticsearch_url.clone(),
                index: search.elasticsearch_index.clone(),
                username: optional(&search.elasticsearch_username),
                password: optional(&search.elasticsearch_password),
            };
            Arc::new(
                chatmesh_chat::search::ElasticsearchIndex::connect(settings)
                    .await
                    .with_context(|| format!("connecting to Elasticsearch at {}", search.elasticsearch_url))?,
            )
        }
        other => anyhow::bail!("search.backend = {other:?}: \"embedded\" or \"elasticsearch\""),
    })
}

/// Runs an indexer reading the change stream into `index`, reading chats from `source`.
async fn spawn_stream_indexer(
    config: &Config,
    pools: &chatmesh_platform::redis_pool::RedisPool,
    source: Arc<dyn chatmesh_chat::search::source::ChatSource>,
    index: Arc<dyn chatmesh_chat::search::SearchIndex>,
    stop: CancellationToken,
    status: Arc<chatmesh_chat::search::IndexerStatus>,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    use chatmesh_chat::search::stream::{StreamSettings, default_consumer, run_stream_indexer};
    let url = config.stream_url().context("search.source = \"stream\" needs Redis")?;
    let redis = connect_redis(pools, url).await?;
    let settings = StreamSettings {
        consumer: match config.search.consumer.as_str() {
            "" => default_consumer(),
            named => named.to_owned(),
        },
        claim_idle: std::time::Duration::from_millis(config.search.claim_idle_ms.max(100)),
    };
    tasks.spawn(async move {
        run_stream_indexer(redis.client, source, index, settings, stop, status).await;
        Ok(())
    });
    Ok(())
}

/// Where the embedded search index lives.
pub fn search_dir(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("search")
}

/// `GET /metrics` in the Prometheus text format (one recorder serves the whole process), and
/// the process's probes: `/healthz` (alive) and `/readyz` (503 once draining) — the HTTP probes
/// of parts with no HTTP listener of their own, such as the WebSocket gateway.
fn metrics_router(shutdown: CancellationToken) -> axum::Router {
    let handle = chatmesh_platform::telemetry::prometheus();
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let body = handle.as_ref().map(|h| h.render()).unwrap_or_default();
                async move { ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(
            "/readyz",
            axum::routing::get(move || {
                let draining = shutdown.is_cancelled();
                async move {
                    match draining {
                        true => (http::StatusCode::SERVICE_UNAVAILABLE, "draining"),
                        false => (http::StatusCode::OK, "ready"),
                    }
                }
            }),
        )
}

/// How this process reaches each gRPC part: in-process when it runs here, else at its
/// configured peer address.
struct Peers {
    user: Option<GrpcChannel>,
    channel: Option<GrpcChannel>,
    chat: Option<GrpcChannel>,
    dispatcher: Option<GrpcChannel>,
    /// Membership epochs shared by the parts of this process.
    epochs: Arc<EpochBoard>,
}

impl Peers {
    fn new(
        config: &Config,
        parts: &BTreeSet<Part>,
        local: &LateChannel,
        epochs: Arc<EpochBoard>,
    ) -> anyhow::Result<Self> {
        let reach = |part: Part, address: &str| -> anyhow::Result<Option<GrpcChannel>> {
            if parts.contains(&part) {
                return Ok(Some(local.channel()));
            }
            if address.is_empty() {
                return Ok(None);
            }
            let endpoints = address
                .split(',')
                .map(|a| {
                    tonic::transport::Endpoint::from_shared(a.trim().to_owned())
                        .with_context(|| format!("peer address {a:?}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            // why: several addresses are balanced per call, and a dead one is left out (failover).
            let channel = match <[_; 1]>::try_from(endpoints) {
                Ok([endpoint]) => endpoint.connect_lazy(),
                Err(endpoints) => tonic::transport::Channel::balance_list(endpoints.into_iter()),
            };
            Ok(Some(remote_channel(channel)))
        };
        Ok(Self {
            user: reach(Part::User, &config.peers.user)?,
            channel: reach(Part::Channel, &config.peers.channel)?,
            chat: reach(Part::Chat, &config.peers.chat)?,
            dispatcher: reach(Part::Dispatcher, &config.peers.dispatcher)?,
            epochs,
        })
    }

    /// One transport to every gRPC part, routing each call by its service's package
    /// (`/chatmesh.chat.v1.ChatService/...` → the chat part); a part with no transport answers
    /// UNAVAILABLE.
    fn by_service(&self) -> GrpcChannel {
        let parts = [
            ("/chatmesh.user.", self.user.clone()),
            ("/chatmesh.channel.", self.channel.clone()),
            ("/chatmesh.chat.", self.chat.clone()),
            ("/chatmesh.dispatcher.", self.dispatcher.clone()),
        ];
        tower::util::BoxCloneSyncService::new(tower::service_fn(move |request: http::Request<tonic::body::Body>| {
            let target = parts
                .iter()
                .find(|(prefix, _)| request.uri().path().starts_with(prefix))
                .and_then(|(_, channel)| channel.clone());
            async move {
                use tower::ServiceExt;
                match target {
                    Some(channel) => channel.oneshot(request).await,
                    None => Ok(tonic::Status::unavailable("no peer serves this service").into_http()),
                }
            }
        }))
    }

    /// The transport to `peer`, which `part` cannot run without.
    fn need(&self, channel: &Option<GrpcChannel>, part: &str, peer: &str) -> anyhow::Result<GrpcChannel> {
        channel.clone().with_context(|| {
            format!("the {part} part needs the {peer} part: run it in this process or set peers.{peer}")
        })
    }
}

fn service_name<S: tonic::server::NamedService>(_: &S) -> &'static str {
    S::NAME
}

/// Binds a gRPC listener serving `routes` behind `layer`; returns its address and its task.
async fn serve_grpc(
    name: &'static str,
    addr: SocketAddr,
    config: &Config,
    layer: PlatformLayer,
    routes: tonic::service::Routes,
    shutdown: &CancellationToken,
) -> anyhow::Result<(SocketAddr, impl Future<Output = anyhow::Result<()>> + Send + 'static)> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {name} on {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "{name} listening");
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(config.grpc.max_concurrent_streams)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(config.grpc.keepalive_secs)))
        .layer(layer)
        .add_routes(routes);
    let stop = shutdown.clone();
    let grace = std::time::Duration::from_secs(config.grpc.drain_secs);
    let task = async move {
        use tokio_stream::StreamExt as _;
        // why: without TCP_NODELAY a reply spanning two segments waits out the peer's delayed ACK (~40 ms).
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener)
            .map(|stream| stream.and_then(|s| s.set_nodelay(true).map(|()| s)));
        let serve = server.serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
        drained(name, &stop, grace, async { serve.await.with_context(|| format!("{name} server")) }).await
    };
    Ok((bound, task))
}

async fn serve_http(
    name: &'static str,
    addr: SocketAddr,
    grace: std::time::Duration,
    router: axum::Router,
    shutdown: &CancellationToken,
) -> anyhow::Result<(SocketAddr, impl Future<Output = anyhow::Result<()>> + Send + 'static)> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {name} on {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "{name} listening");
    let stop = shutdown.clone();
    let task = async move {
        use axum::serve::ListenerExt as _;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let serve = axum::serve(listener, router).with_graceful_shutdown(stop.clone().cancelled_owned());
        drained(name, &stop, grace, async { serve.await.with_context(|| format!("{name} server")) }).await
    };
    Ok((bound, task))
}

/// Runs a server until it has drained after `stop`, or until `grace` has passed since `stop`:
/// a client that keeps an idle connection open must not hold the process past its grace period.
async fn drained(
    name: &str,
    stop: &CancellationToken,
    grace: std::time::Duration,
    serve: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::pin!(serve);
    let deadline = async {
        stop.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = &mut serve => result,
        () = deadline => {
            tracing::warn!("{name}: connections still open after {grace:?}; closing them");
            Ok(())
        }
    }
}
