//! Dispatcher service: live delivery. Gateways attach with one multiplexed stream each and
//! register their sessions; committed events are published here and fanned out by channel
//! subscription, and feed events go to every session of the users they name. Presence and
//! typing are ephemeral and live here too. Several dispatchers share events through the Redis
//! backplane.

mod backplane;
mod core;
mod error;
mod hub;
mod presence;
mod service;

pub use self::{
    backplane::{Inbound, RedisBackplane, Remote},
    core::Cluster,
    error::DispatcherError,
    presence::RedisPresence,
    service::{DispatcherApi, DispatcherInternalApi},
};
