//! Channel service: channels (groups, direct pairs, broadcasts), members and roles, with
//! every change recorded atomically in the service's outbox for the channel event log.

mod core;
mod error;
mod events;
mod model;
mod outbox;
mod service;
pub mod store;
mod users;

pub use error::ChannelError;
pub use model::{ChannelRecord, Kind, MemberRecord, Role, Visibility};
pub use outbox::run_outbox_relay;
pub use service::{ChannelApi, ChannelInternalApi};
pub use users::{GrpcUserDirectory, UserDirectory};
