//! Dispatcher service: live delivery. Gateways attach with one multiplexed stream each and
//! register their sessions; committed events are published here and fanned out by channel
//! subscription. Presence and typing are ephemeral and live here too. Several dispatchers
//! share events through the Redis backplane.

mod backplane;
mod hub;
mod service;

pub use backplane::{Inbound, RedisBackplane};
pub use service::{DispatcherApi, DispatcherInternalApi};
