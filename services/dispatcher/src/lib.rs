//! Dispatcher service: live delivery to gateways, presence and typing.
//!
//! Not built yet: every RPC answers UNIMPLEMENTED (the generated default bodies) until the
//! live-delivery issue lands; the servers are registered so health, reflection and clients see them.

use chatmesh_api::dispatcher::v1::{
    dispatcher_internal_service_server::DispatcherInternalService, dispatcher_service_server::DispatcherService,
};

/// DispatcherService: the public surface.
#[derive(Debug, Clone, Default)]
pub struct DispatcherApi;

/// DispatcherInternalService: publish and attach, for services and gateways.
#[derive(Debug, Clone, Default)]
pub struct DispatcherInternalApi;

impl DispatcherService for DispatcherApi {}

impl DispatcherInternalService for DispatcherInternalApi {}
