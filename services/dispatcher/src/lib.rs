//! Dispatcher service: live delivery. Gateways attach with one multiplexed stream each and
//! register their sessions; committed events are published here and fanned out by channel
//! subscription. Presence and typing are ephemeral and live here too.

mod hub;
mod service;

pub use service::{DispatcherApi, DispatcherInternalApi};
