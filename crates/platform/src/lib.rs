//! What every chatmesh binary shares: typed config, authentication (JWT, service principals,
//! passwords), the gRPC layer stack, the error-code table, ids, telemetry and shutdown.

pub mod auth;
pub mod blocks;
pub mod client_addr;
pub mod config;
pub mod connections;
pub mod embedded;
pub mod error;
pub mod fault;
pub mod grpc;
pub mod ids;
pub mod membership;
pub mod node_lease;
pub mod page;
pub mod password;
pub mod redis_keys;
pub mod redis_pool;
pub mod relay;
pub mod request_id;
pub mod shared_limits;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod validate;

pub use auth::Caller;
pub use error::ErrorCode;
