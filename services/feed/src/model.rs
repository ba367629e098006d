//! The feed service's domain records, as stored.

use serde::{Deserialize, Serialize};

/// What a status is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StatusKind {
    /// Text of its own.
    Post,
    /// Text of its own, answering `referenced_id`.
    Reply,
    /// `referenced_id` shared as it is (always an original: never a repost).
    Repost,
}

/// A published status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusRecord {
    /// Minted when it was published: its place in every list.
    pub status_id: u64,
    pub author_id: u64,
    pub kind: StatusKind,
    /// Empty for a repost.
    pub text: String,
    /// The replied-to (Reply) or reposted (Repost) status.
    pub referenced_id: Option<u64>,
    /// That status's author (for block checks without reading it).
    pub referenced_author_id: Option<u64>,
    /// Lowercase hashtags of the text, each once, in order.
    pub tags: Vec<String>,
    /// Users mentioned in the text, each once.
    pub mentions: Vec<u64>,
    /// When it was written (for a scheduled status: when it was scheduled).
    pub created_at_ms: u64,
    /// The trends bucket its tags count in (publish time / bucket length), kept so a deletion
    /// takes the count back from the same bucket.
    pub trend_bucket: u64,
}

/// Counters of a status: always the lengths of its like, repost and reply lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub likes: u64,
    pub reposts: u64,
    pub replies: u64,
}

/// A status as read: published with its counters, or the tombstone a deletion left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Live(StatusRecord, Counts),
    /// Deleted by its author; only the id (and author) remain.
    Deleted {
        status_id: u64,
        author_id: u64,
    },
}

/// A status waiting for its publish time. Its id names it until then; publishing mints the
/// status a new id (its place among what was published meanwhile).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScheduledRecord {
    pub scheduled_id: u64,
    pub author_id: u64,
    pub text: String,
    pub in_reply_to: Option<u64>,
    pub publish_at_ms: u64,
    pub created_at_ms: u64,
}

/// An entry of a list ordered by a time-ordered id: the entry's id (its page cursor) and the
/// user or status it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub id: u64,
    pub other: u64,
}

/// One entry of a home timeline: a status and who put it there (its author; the reposter for
/// a repost), which is whom the reader must still follow to see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineEntry {
    pub status_id: u64,
    pub poster_id: u64,
}

/// What remains to do of a status's fan-out: the follower pages after `page_token`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FanoutJob {
    pub status_id: u64,
    pub author_id: u64,
    /// The user service's `next_page_token` of the author's followers (empty: from the start).
    pub page_token: String,
    /// Follower pages written so far (for telemetry and tests).
    pub pages_done: u32,
}

/// The trends as last computed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrendsSnapshot {
    /// Most used first (ties: tag ascending), at most the kept number.
    pub trends: Vec<(String, u64)>,
    pub refreshed_at_ms: u64,
}
