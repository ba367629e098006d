//! How this process reaches each gRPC part: in process when it runs here, else at the address
//! `[peers]` gives it.

use std::collections::BTreeSet;

use anyhow::Context as _;
use chatmesh_platform::{
    config::Config,
    grpc::{GrpcChannel, LateChannel, remote_channel},
};

use crate::Part;

/// The transport to each gRPC part (none: it runs nowhere this process knows of).
pub(crate) struct PeerAddrs {
    user: Option<GrpcChannel>,
    channel: Option<GrpcChannel>,
    chat: Option<GrpcChannel>,
    dispatcher: Option<GrpcChannel>,
    feed: Option<GrpcChannel>,
}

impl PeerAddrs {
    /// The parts in `parts` are reached through `local`; the others at their `[peers]` address.
    pub(crate) fn new(config: &Config, parts: &BTreeSet<Part>, local: &LateChannel) -> anyhow::Result<Self> {
        let reach = |part: Part, address: &str| match parts.contains(&part) {
            true => Ok(Some(local.channel())),
            false => remote(address),
        };
        Ok(Self {
            user: reach(Part::User, &config.peers.user)?,
            channel: reach(Part::Channel, &config.peers.channel)?,
            chat: reach(Part::Chat, &config.peers.chat)?,
            dispatcher: reach(Part::Dispatcher, &config.peers.dispatcher)?,
            feed: reach(Part::Feed, &config.peers.feed)?,
        })
    }

    /// The transport to `peer`, if this process knows one.
    pub(crate) fn get(&self, peer: Part) -> Option<GrpcChannel> {
        match peer {
            Part::User => self.user.clone(),
            Part::Channel => self.channel.clone(),
            Part::Chat => self.chat.clone(),
            Part::Dispatcher => self.dispatcher.clone(),
            Part::Feed => self.feed.clone(),
            Part::Indexer | Part::Rest | Part::Ws => None,
        }
    }

    /// The transport to `peer`, which `part` cannot run without.
    pub(crate) fn need(&self, peer: Part, part: Part) -> anyhow::Result<GrpcChannel> {
        self.get(peer).with_context(|| {
            let (part, peer) = (part.name(), peer.name());
            format!("the {part} part needs the {peer} part: run it in this process or set peers.{peer}")
        })
    }

    /// One transport to every gRPC part, routing each call by its service's package
    /// (`/chatmesh.chat.v1.ChatService/...` → the chat part); a part with no transport answers
    /// UNAVAILABLE.
    pub(crate) fn by_service(&self) -> GrpcChannel {
        let parts = [
            ("/chatmesh.user.", self.user.clone()),
            ("/chatmesh.channel.", self.channel.clone()),
            ("/chatmesh.chat.", self.chat.clone()),
            ("/chatmesh.dispatcher.", self.dispatcher.clone()),
            ("/chatmesh.feed.", self.feed.clone()),
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
}

/// A transport to the comma-separated gRPC URLs of `address` (none when it is empty).
fn remote(address: &str) -> anyhow::Result<Option<GrpcChannel>> {
    if address.is_empty() {
        return Ok(None);
    }
    let endpoints = address
        .split(',')
        .map(|a| {
            tonic::transport::Endpoint::from_shared(a.trim().to_owned()).with_context(|| format!("peer address {a:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // why: several addresses are balanced per call, and a dead one is left out (failover).
    let channel = match <[_; 1]>::try_from(endpoints) {
        Ok([endpoint]) => endpoint.connect_lazy(),
        Err(endpoints) => tonic::transport::Channel::balance_list(endpoints.into_iter()),
    };
    Ok(Some(remote_channel(channel)))
}
