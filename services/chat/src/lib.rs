//! Chat service: chats, history, read pointers and unread counts, and each channel's ordered
//! event log (with the global change feed that publishing and search consume).

mod announce;
mod error;
mod model;
mod peers;
mod publish;
mod service;
pub mod store;

pub use error::ChatError;
pub use model::{Announcement, ChatKind, ChatRecord, NewChat, ReadPointer};
pub use peers::{MEMBERSHIP_TTL, Peers};
pub use publish::{GrpcPublisher, Publisher, run_publish_relay};
pub use service::{ChatApi, ChatInternalApi};
