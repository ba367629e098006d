//! Search over chats: the index trait, its embedded tantivy and Elasticsearch backends, the
//! analysis they share with the query parser, and the indexers that keep an index following
//! the chat store's change feed (in the chat part's process, or from the change stream).
//!
//! The index is eventually consistent and holds only what a query needs to find and filter
//! chats (ids, channel, sender, time, who removed it, analyzed text); results are always
//! checked against the store before anyone sees them, and snippets are cut from the store's
//! current text. The chat store is read through [`ChatSource`] and [`ChangeFeedReader`], which
//! the chat crate implements.

pub mod analysis;
#[cfg(any(test, feature = "testsuite"))]
#[doc(hidden)]
pub mod conformance;
mod elasticsearch;
mod error;
mod index;
pub mod indexer;
mod rebuild;
pub mod source;
mod status;
pub mod stream;
mod tantivy;

pub use self::{
    analysis::{ParsedQuery, matches, parse_query, snippet},
    elasticsearch::{DEFAULT_INDEX, ElasticsearchIndex, ElasticsearchSettings},
    error::{IndexError, SearchError, SourceError},
    index::{IndexChange, IndexEntry, IndexQuery, IndexedChat, Rejected, SearchIndex},
    indexer::{IndexerSettings, run_indexer},
    rebuild::{Comparison, compare, rebuild},
    source::{ChangeFeedReader, ChatSource, ScanPage, ScanPosition},
    status::{IndexerStatus, SearchStatus, status},
    tantivy::TantivyIndex,
};
