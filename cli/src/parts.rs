//! The gRPC parts: a method per service that opens its store, builds it from its peers, starts
//! its background tasks and adds its servers to the process's routes.

use std::{sync::Arc, time::Duration};

use chatmesh_api::{
    channel::v1::{
        channel_internal_service_server::ChannelInternalServiceServer, channel_service_server::ChannelServiceServer,
    },
    chat::v1::{chat_internal_service_server::ChatInternalServiceServer, chat_service_server::ChatServiceServer},
    dispatcher::v1::{
        dispatcher_internal_service_server::DispatcherInternalServiceServer,
        dispatcher_service_server::DispatcherServiceServer,
    },
    feed::v1::{feed_internal_service_server::FeedInternalServiceServer, feed_service_server::FeedServiceServer},
    user::v1::{user_internal_service_server::UserInternalServiceServer, user_service_server::UserServiceServer},
};
use chatmesh_chat::store::ChatStore;
use chatmesh_platform::{blocks::BlockClient, config::SearchSource, membership::MembershipClient};
use tokio::sync::{Notify, watch};

use crate::{
    Part,
    grpc::{GrpcRoutes, GrpcServices, add},
    node::Node,
    running::Health,
    stores::Stores,
};

impl Node {
    /// Every gRPC service of this process's parts, with health and reflection.
    pub(crate) async fn grpc_routes(&mut self) -> anyhow::Result<(GrpcRoutes, Health)> {
        let stored = Part::ALL.into_iter().any(|p| p.has_store() && self.runs(p));
        let stores = Stores::open(&self.config, stored).await?;
        let mut services = GrpcServices::new(self.config.grpc.max_message_bytes)?;
        if self.runs(Part::User) {
            self.user(&stores, &mut services).await?;
        }
        if self.runs(Part::Channel) {
            self.channel(&stores, &mut services).await?;
        }
        if self.runs(Part::Chat) {
            self.chat(&stores, &mut services).await?;
        }
        if self.runs(Part::Dispatcher) {
            self.dispatcher(&mut services).await?;
        }
        if self.runs(Part::Feed) {
            self.feed(&stores, &mut services).await?;
        }
        Ok(services.finish().await)
    }

    async fn user(&mut self, stores: &Stores, services: &mut GrpcServices) -> anyhow::Result<()> {
        let store = stores.user().await?;
        let credentials = self.credentials(Part::User);
        // why: optional peers: a user part without them still serves accounts; what needs one
        // (friends' direct channels, chat and status reports, presence) answers UNAVAILABLE.
        let peer =
            |part| self.peers.get(part).map(|p| chatmesh_platform::grpc::internal_channel(p, credentials.clone()));
        let peers = chatmesh_user::Peers {
            dispatcher: peer(Part::Dispatcher),
            channels: peer(Part::Channel),
            chats: peer(Part::Chat),
            feed: peer(Part::Feed),
        };
        // why: login and sign-up limits hold across every user-service process when Redis joins them
        let limits = match self.config.limits_url() {
            Some(url) => Some(self.background.redis(url).await?),
            None => None,
        };
        let (public, internal) = chatmesh_user::UserApi::new(
            &self.config,
            store,
            self.auth.clone(),
            self.ids.clone(),
            peers,
            limits.as_ref(),
            self.block_epochs.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("starting the user service: {e}"))?;
        let (sweeper, stop) = (public.clone(), self.background.shutdown.clone());
        self.background.spawn(async move {
            sweeper.run_sweeper(stop.cancelled_owned()).await;
            Ok(())
        });
        add!(services, UserServiceServer, public);
        add!(services, UserInternalServiceServer, internal);
        Ok(())
    }

    async fn channel(&mut self, stores: &Stores, services: &mut GrpcServices) -> anyhow::Result<()> {
        let store = stores.channel().await?;
        let credentials = self.credentials(Part::Channel);
        let users = chatmesh_channel::GrpcUserDirectory::new(
            self.internal(Part::User, Part::Channel, &credentials)?,
            self.block_epochs.clone(),
        );
        let outbox = Arc::new(Notify::new());
        let (public, internal) = chatmesh_channel::ChannelApi::new(
            store.clone(),
            Arc::new(users),
            self.ids.clone(),
            self.epochs.clone(),
            outbox.clone(),
        );
        let log = self.internal(Part::Chat, Part::Channel, &credentials)?;
        self.background.spawn_relay("channel outbox", move |stop| {
            chatmesh_channel::run_outbox_relay(store.clone(), log.clone(), outbox.clone(), stop)
        });
        add!(services, ChannelServiceServer, public);
        add!(services, ChannelInternalServiceServer, internal);
        Ok(())
    }

    async fn chat(&mut self, stores: &Stores, services: &mut GrpcServices) -> anyhow::Result<()> {
        let store = stores.chat(self.ids.clone()).await?;
        let credentials = self.credentials(Part::Chat);
        let membership =
            MembershipClient::new(self.internal(Part::Channel, Part::Chat, &credentials)?, self.epochs.clone());
        let users = self.internal(Part::User, Part::Chat, &credentials)?;
        let blocks = BlockClient::new(users.clone(), self.block_epochs.clone());
        let directory = chatmesh_chat::Directory::new(membership, blocks, users);
        let publisher: Arc<dyn chatmesh_chat::Publisher> =
            Arc::new(chatmesh_chat::GrpcPublisher::new(self.internal(Part::Dispatcher, Part::Chat, &credentials)?));
        let (committed, woken) = watch::channel(0u64);
        let search = self.open_search(&store, &woken).await?;
        self.media_sweeper(&store);
        let (public, internal) = chatmesh_chat::ChatApi::new(chatmesh_chat::ChatDeps {
            store: store.clone(),
            directory,
            publisher: publisher.clone(),
            committed,
            search: Some(search),
            media: self.media.clone(),
            ids: self.ids.clone(),
        });
        let activity = chatmesh_chat::ActivitySink::new(self.internal(Part::Channel, Part::Chat, &credentials)?);
        let mut sinks: Vec<Arc<dyn chatmesh_chat::FeedSink>> =
            vec![Arc::new(chatmesh_chat::PublishSink(publisher)), Arc::new(activity)];
        sinks.extend(self.stream_sink().await?);
        self.feed_delivery(&store, &woken, sinks);
        self.background.close_at_stop(store.clone());
        add!(services, ChatServiceServer, public);
        add!(services, ChatInternalServiceServer, internal);
        Ok(())
    }

    /// Deletes the uploads nobody needs, when this process keeps attachments.
    fn media_sweeper(&mut self, store: &Arc<dyn ChatStore>) {
        let Some(media) = self.media.clone() else { return };
        let (store, stop) = (store.clone(), self.background.shutdown.clone());
        self.background.spawn(async move {
            chatmesh_chat::media::run_sweeper(store, media, stop).await;
            Ok(())
        });
    }

    /// The relay of the change feed into the change stream, with `search.source = "stream"`.
    async fn stream_sink(&self) -> anyhow::Result<Option<Arc<dyn chatmesh_chat::FeedSink>>> {
        let url = self.config.stream_url().filter(|_| self.config.search.source == SearchSource::Stream);
        let Some(url) = url else { return Ok(None) };
        let redis = self.background.redis(url).await?;
        Ok(Some(Arc::new(chatmesh_search::stream::StreamSink::new(redis.manager))))
    }

    /// Hands each committed change to every sink, in order, from the chat store's feed.
    fn feed_delivery(
        &mut self,
        store: &Arc<dyn ChatStore>,
        woken: &watch::Receiver<u64>,
        sinks: Vec<Arc<dyn chatmesh_chat::FeedSink>>,
    ) {
        for sink in sinks {
            let (store, woken) = (store.clone(), woken.clone());
            self.background.spawn_relay(sink.cursor(), move |stop| {
                chatmesh_chat::run_feed_delivery(store.clone(), sink.clone(), woken.clone(), stop)
            });
        }
    }

    async fn feed(&mut self, stores: &Stores, services: &mut GrpcServices) -> anyhow::Result<()> {
        let store = stores.feed().await?;
        let credentials = self.credentials(Part::Feed);
        let users = self.internal(Part::User, Part::Feed, &credentials)?;
        let blocks = BlockClient::new(users.clone(), self.block_epochs.clone());
        let dispatcher =
            self.peers.get(Part::Dispatcher).map(|p| chatmesh_platform::grpc::internal_channel(p, credentials.clone()));
        let public =
            chatmesh_feed::FeedApi::new(self.config.feed.clone(), store, self.ids.clone(), users, blocks, dispatcher);
        let (workers, stop) = (public.clone(), self.background.shutdown.clone());
        self.background.spawn(async move {
            workers.run_workers(stop).await;
            Ok(())
        });
        let internal = public.internal();
        add!(services, FeedServiceServer, public);
        add!(services, FeedInternalServiceServer, internal);
        Ok(())
    }

    async fn dispatcher(&mut self, services: &mut GrpcServices) -> anyhow::Result<()> {
        let credentials = self.credentials(Part::Dispatcher);
        let membership =
            MembershipClient::new(self.internal(Part::Channel, Part::Dispatcher, &credentials)?, self.epochs.clone());
        let cluster = self.dispatcher_cluster().await?;
        let (public, internal) =
            chatmesh_dispatcher::DispatcherApi::new(membership, self.config.dispatcher.small_channel_max, cluster);
        add!(services, DispatcherServiceServer, public);
        add!(services, DispatcherInternalServiceServer, internal);
        Ok(())
    }

    /// The dispatchers' backplane and shared presence, when Redis joins several processes.
    async fn dispatcher_cluster(&self) -> anyhow::Result<Option<chatmesh_dispatcher::Cluster>> {
        let Some(url) = self.config.backplane_url() else { return Ok(None) };
        let timeout = Duration::from_millis(self.config.redis.timeout_ms);
        let redis = self.background.redis(url).await?;
        let (backplane, inbound) =
            chatmesh_dispatcher::RedisBackplane::connect(&redis, timeout, self.background.shutdown.clone());
        let presence_url = self.config.presence_url().unwrap_or(url);
        let ttl = Duration::from_secs(self.config.redis.presence_ttl_secs.max(3));
        let presence =
            chatmesh_dispatcher::RedisPresence::new(&self.background.redis(presence_url).await?, timeout, ttl);
        tracing::info!("dispatcher joined the Redis backplane");
        Ok(Some(chatmesh_dispatcher::Cluster { backplane, inbound, presence }))
    }
}
