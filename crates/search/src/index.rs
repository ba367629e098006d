//! The index: what it holds of a chat, the changes written to it, the queries it answers, and
//! the trait every backend implements.

use async_trait::async_trait;

use crate::{IndexError, analysis::ParsedQuery};

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

impl IndexedChat {
    /// A fingerprint of what a search can see of the chat (channel, sender, time, text and who
    /// removed it), kept beside the document so an index can be compared with the store.
    pub fn digest(&self) -> u64 {
        // FNV-1a over a fixed encoding: stable across builds and platforms.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for byte in bytes {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for n in [self.chat_id, self.channel_id, self.sender_id, self.created_at_ms] {
            eat(&n.to_le_bytes());
        }
        eat(&(self.text.len() as u64).to_le_bytes());
        eat(self.text.as_bytes());
        let mut removed = self.removed_for.clone();
        removed.sort_unstable();
        for user in removed {
            eat(&user.to_le_bytes());
        }
        hash
    }
}

/// What an index holds of a chat, for comparing it with the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub chat_id: u64,
    pub version: u64,
    /// [`IndexedChat::digest`] of the state written.
    pub digest: u64,
}

/// A change the index refused (a malformed document), with its reason; it goes to the
/// dead-letter stream rather than block the ones after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub chat_id: u64,
    pub reason: String,
}

/// One change to the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexChange {
    /// Replaces whatever the index holds for the chat.
    Upsert(IndexedChat),
    /// Forgets the chat (retracted, or no longer a text chat). `version` orders it against
    /// states written by other indexers, like an upsert's (0: unordered).
    Delete { chat_id: u64, version: u64 },
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
    /// Stages changes, applied in order. Changes the index refuses for good are returned (the
    /// rest are staged); an error means none can be relied on and the batch must be retried.
    async fn write(&self, changes: Vec<IndexChange>) -> Result<Vec<Rejected>, IndexError>;
    /// Makes every staged change durable and searchable, with `position`.
    async fn commit(&self, position: u64) -> Result<(), IndexError>;
    /// The feed position of the last commit (0: nothing indexed).
    async fn position(&self) -> Result<u64, IndexError>;
    /// Matching chat ids, newest first.
    async fn search(&self, query: IndexQuery) -> Result<Vec<u64>, IndexError>;
    /// Chats held (as of the last commit).
    async fn documents(&self) -> Result<u64, IndexError>;
    /// Up to `limit` entries of chats with ids above `after_chat_id`, ascending (as of the last
    /// commit): the index's side of `chatmesh admin verify-index`.
    async fn entries_after(&self, after_chat_id: u64, limit: usize) -> Result<Vec<IndexEntry>, IndexError>;
}
