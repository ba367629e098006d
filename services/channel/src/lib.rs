//! Channel service: channels, direct conversations, members, roles and invitations.
//!
//! Not built yet: every RPC answers UNIMPLEMENTED (the generated default bodies) until the
//! channels issue lands; the servers are registered so health, reflection and clients see them.

use chatmesh_api::channel::v1::{
    channel_internal_service_server::ChannelInternalService, channel_service_server::ChannelService,
};

/// ChannelService: the public surface.
#[derive(Debug, Clone, Default)]
pub struct ChannelApi;

/// ChannelInternalService: membership checks for other services.
#[derive(Debug, Clone, Default)]
pub struct ChannelInternalApi;

impl ChannelService for ChannelApi {}

impl ChannelInternalService for ChannelInternalApi {}
