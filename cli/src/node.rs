//! One process being wired: what its parts share, and a method per part that starts it.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use anyhow::Context as _;
use chatmesh_chat::media::Media;
use chatmesh_platform::{
    auth::{Authenticator, UserKeys},
    config::Config,
    grpc::{InternalChannel, LateChannel, PlatformLayer, Policy, ServiceAuth, in_process_channel, internal_channel},
    ids::IdGenerator,
    membership::EpochBoard,
};

use crate::{Part, Running, background::Background, peers::PeerAddrs};

/// A process's parts while they start: the config, what they share, and where they are bound.
pub(crate) struct Node {
    pub(crate) config: Config,
    pub(crate) parts: BTreeSet<Part>,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) ids: Arc<IdGenerator>,
    /// Membership epochs shared by the parts of this process.
    pub(crate) epochs: Arc<EpochBoard>,
    /// Block epochs (keyed by user id) shared by the parts of this process.
    pub(crate) block_epochs: Arc<EpochBoard>,
    pub(crate) peers: PeerAddrs,
    /// The in-process transport between parts, set once the gRPC routes exist.
    local: LateChannel,
    /// Attachments' bytes, when the chat part runs here.
    pub(crate) media: Option<Arc<Media>>,
    pub(crate) background: Background,
    running: Running,
}

impl Node {
    /// Opens what every part of `parts` shares: the data dir, the signing keys, the node id,
    /// the metrics listener, the membership and block epochs and the transports to the other parts.
    pub(crate) async fn open(config: Config, parts: &BTreeSet<Part>) -> anyhow::Result<Self> {
        crate::background::refuse_unshared_ids(&config, parts)?;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating the data dir {}", config.data_dir.display()))?;
        // why: only the user part signs user tokens; the others verify them with public keys
        // alone, so the private keys stay off the internet-facing pods
        let user_keys = if parts.contains(&Part::User) { UserKeys::Sign } else { UserKeys::Verify };
        let auth = Arc::new(
            Authenticator::open(config.auth.clone(), &config.data_dir, user_keys)
                .context("loading the signing keys")?,
        );
        let mut background = Background::new(&config)?;
        let node_id = background.node_id(&config, parts).await?;
        let ids = Arc::new(IdGenerator::new(node_id).map_err(anyhow::Error::msg)?);
        let mut running = Running::new(auth.clone(), background.shutdown.clone());
        if config.metrics.enabled {
            running.metrics_addr = Some(background.serve_metrics(&config).await?);
        }
        let local = LateChannel::new();
        let epochs = background.membership_epochs(&config, &auth).await?;
        let block_epochs = background.block_epochs(&config).await?;
        let peers = PeerAddrs::new(&config, parts, &local)?;
        let media = match parts.contains(&Part::Chat) {
            true => Some(Arc::new(Media::open(&config.media, &config.data_dir).context("opening the media store")?)),
            false => None,
        };
        let parts = parts.clone();
        Ok(Self { config, parts, auth, ids, epochs, block_epochs, peers, local, media, background, running })
    }

    pub(crate) fn runs(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }

    /// The credentials `part` calls other parts' internal services with.
    pub(crate) fn credentials(&self, part: Part) -> ServiceAuth {
        ServiceAuth::new(self.auth.clone(), part.name())
    }

    /// The internal transport to `peer` with `credentials`, which `part` cannot run without.
    pub(crate) fn internal(
        &self,
        peer: Part,
        part: Part,
        credentials: &ServiceAuth,
    ) -> anyhow::Result<InternalChannel> {
        Ok(internal_channel(self.peers.need(peer, part)?, credentials.clone()))
    }

    /// The gRPC parts of this process behind the platform layer: in process, on `grpc.listen`
    /// and, when configured, on `grpc.internal_listen`.
    pub(crate) async fn grpc(&mut self) -> anyhow::Result<()> {
        let layer = PlatformLayer::new(Arc::new(self.policy().await?));
        let (routes, health) = self.grpc_routes().await?;
        let in_process = in_process_channel(routes.every.clone(), layer.clone());
        self.local.set(in_process.clone());
        self.running.in_process = Some(in_process);
        self.running.health = Some(health);
        let public = match self.config.grpc.internal_listen {
            Some(addr) => {
                let listener = ("internal gRPC", addr);
                let bound =
                    self.background.serve_grpc(listener, &self.config, layer.clone(), routes.every.clone(), 0).await?;
                self.running.internal_grpc_addr = Some(bound);
                layer.public_only()
            }
            None => layer,
        };
        let listener = ("gRPC", self.config.grpc.listen);
        let per_source = self.config.grpc.max_connections_per_source;
        let bound = self.background.serve_grpc(listener, &self.config, public, routes.public, per_source).await?;
        self.running.grpc_addr = Some(bound);
        Ok(())
    }

    /// Who may call what, how often: per process, or shared through Redis when configured.
    async fn policy(&self) -> anyhow::Result<Policy> {
        let policy = Policy::new(self.auth.clone(), &self.config);
        let Some(url) = self.config.limits_url() else { return Ok(policy) };
        let timeout = Duration::from_millis(self.config.redis.timeout_ms);
        let limits = &self.config.limits;
        let redis = self.background.redis(url).await?;
        let shared = chatmesh_platform::shared_limits::SharedLimiter::new(
            &redis,
            limits.user_calls_per_sec,
            limits.user_calls_burst,
            timeout,
        );
        Ok(policy.with_shared_limits(shared))
    }

    /// The REST gateway, with local media files served beside it.
    pub(crate) async fn rest(&mut self) -> anyhow::Result<()> {
        let services = self.peers.by_service();
        let media = &self.config.media;
        let narrowing = |field: &str, schema: serde_json::Value| chatmesh_gateway_rest::openapi::Narrowing {
            message: "chatmesh.chat.v1.CreateUploadRequest".into(),
            field: field.into(),
            schema: schema.as_object().cloned().unwrap_or_default(),
        };
        // why: the document states this deployment's upload rules, which the contract leaves to it
        let narrowings = [
            narrowing("size_bytes", serde_json::json!({"maximum": media.max_bytes})),
            narrowing(
                "content_type",
                serde_json::json!({"pattern": chatmesh_chat::media::accepted_pattern(&media.content_types)}),
            ),
        ];
        let mut router =
            chatmesh_gateway_rest::router(self.auth.clone(), services, &self.config.rest.cors_origins, &narrowings);
        // why: local media URLs are served beside the REST gateway, not by it (no JSON, no gRPC);
        // with `media.listen`, on an origin of their own, away from the API's and the web client's.
        let mut media_addr = None;
        if let Some(files) = self.media.as_ref().and_then(|m| m.local_router()) {
            match self.config.media.listen {
                Some(listen) => {
                    let settings = crate::listen::HttpSettings::rest(&self.config.rest);
                    media_addr = Some(self.background.serve_http(("media", listen), settings, files).await?);
                }
                None => router = files.merge(router),
            }
        }
        let settings = crate::listen::HttpSettings::rest(&self.config.rest);
        let addr = self.background.serve_http(("REST", self.config.rest.listen), settings, router).await?;
        self.running.rest_addr = Some(addr);
        if let Some(media) = &self.media {
            media.set_default_origin(format!("http://{}", media_addr.unwrap_or(addr)));
        }
        Ok(())
    }

    /// The WebSocket gateway, bridged to the chat and dispatcher parts.
    pub(crate) async fn ws(&mut self) -> anyhow::Result<()> {
        let listener = crate::listen::bind("WebSocket", self.config.ws.listen).await?;
        self.running.ws_addr = Some(listener.local_addr()?);
        let gateway = chatmesh_gateway_ws::Gateway::new(
            self.auth.clone(),
            self.peers.need(Part::Chat, Part::Ws)?,
            self.peers.need(Part::Dispatcher, Part::Ws)?,
            self.config.ws.clone(),
        );
        let attach = self.internal(Part::Dispatcher, Part::Ws, &self.credentials(Part::Ws))?;
        let stop = self.background.shutdown.clone();
        self.background.spawn(async move { gateway.serve(listener, attach, stop).await.context("WebSocket gateway") });
        Ok(())
    }

    /// The running process: its addresses, and its tasks to drain when it stops.
    pub(crate) fn finish(self) -> Running {
        // why: every listener is bound now; until here `/readyz` answers 503 (starting)
        self.background.started.cancel();
        let mut running = self.running;
        running.tasks = self.background.into_tasks();
        running._local = Some(self.local);
        running
    }
}
