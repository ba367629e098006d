//! Dispatcher service: live delivery. Gateways attach with one multiplexed stream each and
//! register their sessions; committed events are published here and fanned out by channel
//! subscription. Presence and typing are ephemeral and live here too. Several dispatchers
//! share events through the Redis backplane.

mod backplane;
mod hub;
mod presence;
mod service;

pub use backplane::{Inbound, RedisBackplane, Remote};
pub use presence::RedisPresence;
pub use service::{Cluster, DispatcherApi, DispatcherInternalApi};
