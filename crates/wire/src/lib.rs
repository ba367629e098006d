//! What chatmesh reads off the wire before any store is touched: the validation of every
//! request type (one module per service, each function naming the field it refuses), the
//! WebSocket gateway's client frames, and the REST gateway's JSON-to-protobuf transcoding;
//! [`registry`] lists every RPC with its request type and check.
//!
//! It links no storage engine and no network client, so the fuzz targets (`fuzz/`) build it
//! quickly, and whatever they find is found in the code the services run.

pub mod error;
pub mod frames;
pub mod ids;
pub mod page;
pub mod registry;
pub mod transcode;
pub mod validate;

pub mod channel;
pub mod chat;
pub mod dispatcher;
pub mod feed;
pub mod user;
