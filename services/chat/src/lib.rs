//! Chat service: chats, history, read pointers and unread counts, and each channel's ordered
//! event log (with the global change feed that publishing and search consume), and full-text
//! search over it.

mod announce;
mod error;
mod feed;
pub mod media;
mod model;
mod peers;
pub mod search;
mod service;
pub mod store;

pub use error::ChatError;
pub use feed::{ActivitySink, FeedSink, GrpcPublisher, PublishSink, Publisher, run_feed_relay};
pub use model::{
    Announcement, AttachmentRecord, ChatKind, ChatRecord, NewChat, ReadPointer, UploadRecord, UploadState,
};
pub use peers::Peers;
pub use service::{ChatApi, ChatDeps, ChatInternalApi, Search};
