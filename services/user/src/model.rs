//! The user service's domain records, as stored.

use serde::{Deserialize, Serialize};

/// An account. `password_hash` never leaves the service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRecord {
    pub user_id: u64,
    /// As the user typed it.
    pub email: String,
    pub name: String,
    /// As the user typed it; uniqueness is on the lowercase form.
    pub username: Option<String>,
    pub avatar_url: String,
    pub bio: String,
    pub password_hash: String,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    #[serde(default)]
    pub role: Role,
    /// Set while an admin's suspension lasts.
    #[serde(default)]
    pub suspension: Option<Suspension>,
    /// Set from the owner's (or an admin's) deletion until the sweeper erases the account or
    /// its owner restores it.
    #[serde(default)]
    pub deleted_at_ms: Option<u64>,
}

/// What an account may administer.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    User,
    Admin,
}

/// An admin's suspension of an account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Suspension {
    /// `None`: for good.
    pub until_ms: Option<u64>,
    pub reason: String,
    pub by_user_id: u64,
    pub at_ms: u64,
}

/// Whether an account can be used, at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    Active,
    Suspended,
    Deleted,
}

impl UserRecord {
    /// The account's state at `now_ms` (a suspension that has run out no longer counts).
    pub fn state(&self, now_ms: u64) -> AccountState {
        if self.deleted_at_ms.is_some() {
            AccountState::Deleted
        } else if self.suspension.as_ref().is_some_and(|s| s.until_ms.is_none_or(|until| until > now_ms)) {
            AccountState::Suspended
        } else {
            AccountState::Active
        }
    }

    /// The key email uniqueness is checked on.
    pub fn email_key(&self) -> String {
        self.email.to_lowercase()
    }

    /// The key username uniqueness is checked on.
    pub fn username_key(&self) -> Option<String> {
        self.username.as_ref().map(|u| u.to_lowercase())
    }
}

/// One login session (`sid`): a device's chain of refresh tokens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionRecord {
    pub session_id: String,
    pub user_id: u64,
    /// SHA-256 (hex) of the refresh token that is valid now.
    pub refresh_hash: String,
    /// Hashes of refresh tokens already used; presenting one again means the chain leaked.
    pub used_hashes: Vec<String>,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub ended_at_ms: Option<u64>,
}

impl SessionRecord {
    /// Used hashes remembered per session for reuse detection.
    pub const USED_HASHES_KEPT: usize = 64;
}

/// One user in a list of another's (a follower, a followed user, a blocked user): who, and the
/// time-ordered id of the relation, which orders the list (newest first) and pages it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub user_id: u64,
    /// Snowflake id minted when the relation began (its milliseconds are when).
    pub edge_id: u64,
}

/// Which way a pending friend request goes, seen from the user listing it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Direction {
    Incoming,
    Outgoing,
}

/// A pending friend request as one side sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingRequest {
    /// The other side.
    pub user_id: u64,
    pub direction: Direction,
    /// Snowflake id minted when it was sent.
    pub edge_id: u64,
}

/// A friendship as one side sees it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Friendship {
    /// The friend.
    pub user_id: u64,
    /// Snowflake id minted when the request was accepted.
    pub edge_id: u64,
    pub direct_channel_id: u64,
}

/// What asking someone to be friends did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// A new pending request.
    Sent,
    /// The caller had already asked; nothing changed.
    AlreadySent,
    /// They had already asked the caller; nothing changed (the core accepts theirs instead).
    TheyAsked,
    /// Already friends; nothing changed.
    AlreadyFriends,
}

/// How two users stand, read in one go (the store's view; the core adds the mutual count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    pub following: bool,
    pub followed_by: bool,
    pub blocking: bool,
    pub blocked_by: bool,
    pub friends: bool,
    pub request_sent: bool,
    pub request_received: bool,
}

/// Why a report was made.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReportCategory {
    Spam,
    Harassment,
    Hate,
    Violence,
    Sexual,
    Impersonation,
    Other,
}

/// What an admin did about a report.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReportAction {
    Dismiss,
    RetractChat,
    SuspendUser,
    DeleteStatus,
}

/// The report's target: a user, a chat (with its channel and sender) or a status (with its
/// author).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReportTarget {
    pub user_id: u64,
    /// `(chat_id, channel_id)` for a chat report.
    pub chat: Option<(u64, u64)>,
    /// The status, for a status report (never with `chat`).
    // why: records from before status reports have no such field, and user and chat reports
    // are written as they were (the same JSON, the same goldens)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Resolution {
    pub action: ReportAction,
    pub by_user_id: u64,
    pub at_ms: u64,
}

/// A report. One reporter's open report of one target absorbs their later ones.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReportRecord {
    /// Snowflake: the newest-first order of the admin's list.
    pub report_id: u64,
    pub reporter_id: u64,
    pub target: ReportTarget,
    pub category: ReportCategory,
    pub text: String,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// `None` while open.
    pub resolution: Option<Resolution>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_stored_before_status_reports_reads_as_one_of_no_status_and_is_written_back_alike() {
        let old = r#"{"report_id":10,"reporter_id":1,"target":{"user_id":5,"chat":[70,80]},"category":"spam","text":"spam","created_at_ms":1,"updated_at_ms":1,"resolution":null}"#;
        let report: ReportRecord = serde_json::from_str(old).unwrap();
        assert_eq!(report.target, ReportTarget { user_id: 5, chat: Some((70, 80)), status: None });
        assert_eq!(serde_json::to_string(&report).unwrap(), old);
        let status = ReportRecord { target: ReportTarget { user_id: 5, chat: None, status: Some(9) }, ..report };
        let json = serde_json::to_string(&status).unwrap();
        assert!(json.contains(r#""status":9"#), "{json}");
        assert_eq!(serde_json::from_str::<ReportRecord>(&json).unwrap(), status);
    }
}
