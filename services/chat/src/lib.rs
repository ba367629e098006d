//! Chat service: chats, history, read pointers and unread counts, and each channel's ordered
//! event log (with the global change feed that publishing and search consume), and full-text
//! search over it.
//!
//! `service` translates gRPC to `ChatCore` (the rules), which works on the `store`, asks the
//! channel and user services through the [`Directory`], and hands committed events to the
//! change feed's consumers (`delivery`).

mod announce;
mod convert;
mod core;
mod delivery;
mod directory;
mod error;
pub mod media;
mod model;
pub mod search_source;
mod service;
pub mod store;

pub use self::{
    core::{ChatDeps, Search},
    delivery::{ActivitySink, FeedSink, GrpcPublisher, PublishSink, Publisher, run_feed_delivery},
    directory::Directory,
    error::ChatError,
    model::{Announcement, AttachmentRecord, ChatKind, ChatRecord, NewChat, ReadPointer, UploadRecord, UploadState},
    service::{ChatApi, ChatInternalApi},
};
