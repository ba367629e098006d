//! Full-text search: the index trait, its embedded tantivy backend, and the indexer that keeps
//! it following the change feed.
//!
//! The index is eventually consistent and holds only what a query needs to find and filter
//! chats (ids, channel, sender, time, who removed it, analyzed text); results are always
//! checked against the store before anyone sees them, and snippets are cut from the store's
//! current text.

pub mod analysis;
#[doc(hidden)]
pub mod conformance;
pub mod indexer;
mod tantivy;

use async_trait::async_trait;

pub use self::{
    analysis::{ParsedQuery, matches, parse_query, snippet},
    indexer::{IndexerSettings, IndexerStatus, SearchStatus, rebuild, run_indexer, status},
    tantivy::TantivyIndex,
};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IndexError {
    #[error("search index: {0}")]
    Backend(String),
}

/// A chat as the index keeps it: the store's state of the chat when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedChat {
    pub chat_id: u64,
    pub channel_id: u64,
    pub sender_id: u64,
    pub created_at_ms: u64,
    pub text: String,
    /// Users who removed the chat for themselves: it is not found for them.
    pub removed_for: Vec<u64>,
    /// The feed position this state was read at; it only grows for a chat.
    pub version: u64,
}

/// One change to the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexChange {
    /// Replaces whatever the index holds for the chat.
    Upsert(IndexedChat),
    /// Forgets the chat (retracted, or no longer a text chat).
    Delete { chat_id: u64 },
    /// Forgets every chat of a deleted channel.
    DeleteChannel { channel_id: u64 },
}

/// What to look for, and where.
#[derive(Debug, Clone)]
pub struct IndexQuery {
    pub query: ParsedQuery,
    /// Only these channels (the caller's, at query time). Empty finds nothing.
    pub channel_ids: Vec<u64>,
    pub sender_id: Option<u64>,
    /// Created at or after (ms since the epoch).
    pub from_ms: Option<u64>,
    /// Created before (ms since the epoch).
    pub until_ms: Option<u64>,
    /// Older than this chat (paging).
    pub before_chat_id: Option<u64>,
    /// Whose removals to leave out.
    pub viewer: u64,
    pub limit: usize,
}

/// A search index. Writes are idempotent by chat id and become visible and durable only at
/// `commit`, which records the feed position they reach in the same step, so a restart
/// resumes exactly where the last commit left off.
#[async_trait]
pub trait SearchIndex: Send + Sync + 'static {
    /// Stages changes, applied in order.
    async fn write(&self, changes: Vec<IndexChange>) -> Result<(), IndexError>;
    /// Makes every staged change durable and searchable, with `position`.
    async fn commit(&self, position: u64) -> Result<(), IndexError>;
    /// The feed position of the last commit (0: nothing indexed).
    async fn position(&self) -> Result<u64, IndexError>;
    /// Matching chat ids, newest first.
    async fn search(&self, query: IndexQuery) -> Result<Vec<u64>, IndexError>;
    /// Chats held (as of the last commit).
    async fn documents(&self) -> Result<u64, IndexError>;
}
