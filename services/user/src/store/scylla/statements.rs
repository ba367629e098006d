//! The statements of the user store, each declared once and checked against the migrations
//! (`crates/cql/migrations/0001_users.cql`, `0007_social_graph.cql`,
//! `0009_status_reports.cql`, `0010_recommendations.cql`) by the golden tests.

use chatmesh_cql::{Consistency, Statement, statement};

// Accounts (0001; user_states and the listings: 0007).

pub(super) static CLAIM_EMAIL: Statement = statement!(
    "user.claim_email",
    not_idempotent,
    "INSERT INTO users_by_email (email_key, user_id) VALUES (?, ?) IF NOT EXISTS"
);
pub(super) static RELEASE_EMAIL: Statement =
    statement!("user.release_email", not_idempotent, "DELETE FROM users_by_email WHERE email_key = ? IF user_id = ?");
pub(super) static EMAIL_OWNER: Statement =
    statement!("user.email_owner", idempotent, "SELECT user_id FROM users_by_email WHERE email_key = ?");
pub(super) static CLAIM_USERNAME: Statement = statement!(
    "user.claim_username",
    not_idempotent,
    "INSERT INTO users_by_username (username_key, user_id) VALUES (?, ?) IF NOT EXISTS"
);
pub(super) static RELEASE_USERNAME: Statement = statement!(
    "user.release_username",
    not_idempotent,
    "DELETE FROM users_by_username WHERE username_key = ? IF user_id = ?"
);
pub(super) static USERNAME_OWNER: Statement =
    statement!("user.username_owner", idempotent, "SELECT user_id FROM users_by_username WHERE username_key = ?");
pub(super) static PUT_USER: Statement = statement!(
    "user.put_user",
    idempotent,
    "INSERT INTO users (user_id, email, name, username, avatar_url, bio, password_hash, created_at_ms, updated_at_ms) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
);
pub(super) static GET_USER: Statement = statement!(
    "user.get_user",
    idempotent,
    "SELECT email, name, username, avatar_url, bio, password_hash, created_at_ms, updated_at_ms FROM users \
     WHERE user_id = ?"
);
pub(super) static DELETE_USER: Statement =
    statement!("user.delete_user", idempotent, "DELETE FROM users WHERE user_id = ?");
pub(super) static PUT_USER_STATE: Statement = statement!(
    "user.put_user_state",
    idempotent,
    "INSERT INTO user_states (user_id, role, suspension, deleted_at_ms) VALUES (?, ?, ?, ?)"
);
pub(super) static GET_USER_STATE: Statement = statement!(
    "user.get_user_state",
    idempotent,
    "SELECT role, suspension, deleted_at_ms FROM user_states WHERE user_id = ?"
);
pub(super) static DELETE_USER_STATE: Statement =
    statement!("user.delete_user_state", idempotent, "DELETE FROM user_states WHERE user_id = ?");
pub(super) static LIST_USER: Statement =
    statement!("user.list_user", idempotent, "INSERT INTO users_by_day (day, user_id) VALUES (?, ?)");
pub(super) static UNLIST_USER: Statement =
    statement!("user.unlist_user", idempotent, "DELETE FROM users_by_day WHERE day = ? AND user_id = ?");
pub(super) static USERS_OF_DAY: Statement = statement!(
    "user.users_of_day",
    idempotent,
    "SELECT user_id FROM users_by_day WHERE day = ? AND user_id < ? LIMIT ?"
);
pub(super) static LIST_DELETED: Statement = statement!(
    "user.list_deleted",
    idempotent,
    "INSERT INTO deleted_users (day, deleted_at_ms, user_id) VALUES (?, ?, ?)"
);
pub(super) static UNLIST_DELETED: Statement = statement!(
    "user.unlist_deleted",
    idempotent,
    "DELETE FROM deleted_users WHERE day = ? AND deleted_at_ms = ? AND user_id = ?"
);
pub(super) static DELETED_FROM: Statement = statement!(
    "user.deleted_from",
    idempotent,
    "SELECT deleted_at_ms, user_id FROM deleted_users WHERE day = ? AND deleted_at_ms >= ? AND deleted_at_ms <= ? \
     LIMIT ?"
);
pub(super) static DELETED_AT: Statement = statement!(
    "user.deleted_at",
    idempotent,
    "SELECT user_id FROM deleted_users WHERE day = ? AND deleted_at_ms = ? AND user_id > ? LIMIT ?"
);
pub(super) static PUT_DAY: Statement =
    statement!("user.put_day", idempotent, "INSERT INTO user_days (list_name, day) VALUES (?, ?)");
pub(super) static FORGET_DAY: Statement =
    statement!("user.forget_day", idempotent, "DELETE FROM user_days WHERE list_name = ? AND day = ?");
pub(super) static DAYS_DOWN: Statement = statement!(
    "user.days_down",
    idempotent,
    "SELECT day FROM user_days WHERE list_name = ? AND day <= ? ORDER BY day DESC LIMIT ?"
);
pub(super) static DAYS_UP: Statement = statement!(
    "user.days_up",
    idempotent,
    "SELECT day FROM user_days WHERE list_name = ? AND day >= ? AND day <= ? LIMIT ?"
);

// Sessions (0001).

pub(super) static INSERT_SESSION: Statement = statement!(
    "user.insert_session",
    not_idempotent,
    "INSERT INTO sessions (session_id, user_id, refresh_hash, used_hashes, created_at_ms, expires_at_ms, ended_at_ms) \
     VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
);
/// Read at LOCAL_SERIAL: sessions are written by lightweight transactions only, and one whose
/// outcome was unknown (a timeout after its accept phase) is settled by a serial read, never
/// missed by it.
pub(super) static GET_SESSION: Statement = Statement {
    name: "user.get_session",
    cql: "SELECT user_id, refresh_hash, used_hashes, created_at_ms, expires_at_ms, ended_at_ms FROM sessions \
          WHERE session_id = ?",
    consistency: Consistency::LocalSerial,
    idempotent: true,
};
pub(super) static ROTATE_SESSION: Statement = statement!(
    "user.rotate_session",
    not_idempotent,
    "UPDATE sessions SET refresh_hash = ?, used_hashes = ? WHERE session_id = ? IF refresh_hash = ? AND ended_at_ms = ?"
);
pub(super) static END_SESSION: Statement = statement!(
    "user.end_session",
    not_idempotent,
    "UPDATE sessions SET ended_at_ms = ? WHERE session_id = ? IF user_id = ? AND ended_at_ms = ?"
);
/// Sessions are written by lightweight transactions only, so they are erased by one too.
pub(super) static DELETE_SESSION: Statement =
    statement!("user.delete_session", not_idempotent, "DELETE FROM sessions WHERE session_id = ? IF user_id = ?");
pub(super) static INDEX_USER_SESSION: Statement = statement!(
    "user.index_user_session",
    idempotent,
    "INSERT INTO sessions_by_user (user_id, session_id) VALUES (?, ?)"
);
pub(super) static USER_SESSIONS: Statement = statement!(
    "user.user_sessions",
    idempotent,
    "SELECT session_id FROM sessions_by_user WHERE user_id = ? AND session_id > ? LIMIT ?"
);
pub(super) static DROP_USER_SESSIONS: Statement =
    statement!("user.drop_user_sessions", idempotent, "DELETE FROM sessions_by_user WHERE user_id = ?");
pub(super) static INDEX_ENDED_SESSION: Statement = statement!(
    "user.index_ended_session",
    idempotent,
    "INSERT INTO ended_sessions (day, ended_at_ms, session_id) VALUES (?, ?, ?)"
);
pub(super) static ENDED_SESSIONS_FROM: Statement = statement!(
    "user.ended_sessions_from",
    idempotent,
    "SELECT ended_at_ms, session_id FROM ended_sessions WHERE day = ? AND ended_at_ms >= ? LIMIT ?"
);
pub(super) static ENDED_SESSIONS_AT: Statement = statement!(
    "user.ended_sessions_at",
    idempotent,
    "SELECT session_id FROM ended_sessions WHERE day = ? AND ended_at_ms = ? AND session_id > ? LIMIT ?"
);

// Follows (0007).

pub(super) static GET_FOLLOW: Statement = statement!(
    "user.get_follow",
    idempotent,
    "SELECT edge_id, generation FROM follow_edges WHERE follower_id = ? AND followee_id = ?"
);
pub(super) static SET_FOLLOW: Statement = statement!(
    "user.set_follow",
    not_idempotent,
    "UPDATE follow_edges SET edge_id = ?, generation = ? WHERE follower_id = ? AND followee_id = ? IF generation = ?"
);
pub(super) static PUT_FOLLOWER: Statement = statement!(
    "user.put_follower",
    idempotent,
    "INSERT INTO followers_by_user (user_id, edge_id, follower_id) VALUES (?, ?, ?) USING TIMESTAMP ?"
);
pub(super) static DELETE_FOLLOWER: Statement = statement!(
    "user.delete_follower",
    idempotent,
    "DELETE FROM followers_by_user USING TIMESTAMP ? WHERE user_id = ? AND edge_id = ? AND follower_id = ?"
);
pub(super) static FOLLOWERS: Statement = statement!(
    "user.followers",
    idempotent,
    "SELECT edge_id, follower_id FROM followers_by_user WHERE user_id = ? AND edge_id < ? LIMIT ?"
);
pub(super) static PUT_FOLLOWING: Statement = statement!(
    "user.put_following",
    idempotent,
    "INSERT INTO following_by_user (user_id, edge_id, followee_id) VALUES (?, ?, ?) USING TIMESTAMP ?"
);
pub(super) static DELETE_FOLLOWING: Statement = statement!(
    "user.delete_following",
    idempotent,
    "DELETE FROM following_by_user USING TIMESTAMP ? WHERE user_id = ? AND edge_id = ? AND followee_id = ?"
);
pub(super) static FOLLOWING: Statement = statement!(
    "user.following",
    idempotent,
    "SELECT edge_id, followee_id FROM following_by_user WHERE user_id = ? AND edge_id < ? LIMIT ?"
);
pub(super) static GET_COUNTS: Statement = statement!(
    "user.get_counts",
    idempotent,
    "SELECT followers, following, friends FROM graph_counts WHERE user_id = ?"
);
pub(super) static SET_FOLLOWERS_COUNT: Statement = statement!(
    "user.set_followers_count",
    not_idempotent,
    "UPDATE graph_counts SET followers = ? WHERE user_id = ? IF followers = ?"
);
pub(super) static SET_FOLLOWING_COUNT: Statement = statement!(
    "user.set_following_count",
    not_idempotent,
    "UPDATE graph_counts SET following = ? WHERE user_id = ? IF following = ?"
);
pub(super) static SET_FRIENDS_COUNT: Statement = statement!(
    "user.set_friends_count",
    not_idempotent,
    "UPDATE graph_counts SET friends = ? WHERE user_id = ? IF friends = ?"
);
pub(super) static PARK_FOLLOW: Statement = statement!(
    "user.park_follow",
    idempotent,
    "INSERT INTO parked_follows (user_id, outgoing, other_id, edge_id) VALUES (?, ?, ?, ?)"
);
pub(super) static UNPARK_FOLLOW: Statement = statement!(
    "user.unpark_follow",
    idempotent,
    "DELETE FROM parked_follows WHERE user_id = ? AND outgoing = ? AND other_id = ?"
);
pub(super) static PARKED_FOLLOWS: Statement = statement!(
    "user.parked_follows",
    idempotent,
    "SELECT other_id, edge_id FROM parked_follows WHERE user_id = ? AND outgoing = ? AND other_id > ? LIMIT ?"
);
pub(super) static ERASE_PARKED_FOLLOWS: Statement =
    statement!("user.erase_parked_follows", idempotent, "DELETE FROM parked_follows WHERE user_id = ?");

// Blocks (0007).

pub(super) static GET_BLOCK: Statement = statement!(
    "user.get_block",
    idempotent,
    "SELECT edge_id, generation FROM block_edges WHERE blocker_id = ? AND blocked_id = ?"
);
pub(super) static SET_BLOCK: Statement = statement!(
    "user.set_block",
    not_idempotent,
    "UPDATE block_edges SET edge_id = ?, generation = ? WHERE blocker_id = ? AND blocked_id = ? IF generation = ?"
);
pub(super) static PUT_BLOCKED: Statement = statement!(
    "user.put_blocked",
    idempotent,
    "INSERT INTO blocks_by_user (user_id, edge_id, blocked_id) VALUES (?, ?, ?) USING TIMESTAMP ?"
);
pub(super) static DELETE_BLOCKED: Statement = statement!(
    "user.delete_blocked",
    idempotent,
    "DELETE FROM blocks_by_user USING TIMESTAMP ? WHERE user_id = ? AND edge_id = ? AND blocked_id = ?"
);
pub(super) static BLOCKED: Statement = statement!(
    "user.blocked",
    idempotent,
    "SELECT edge_id, blocked_id FROM blocks_by_user WHERE user_id = ? AND edge_id < ? LIMIT ?"
);
pub(super) static PUT_BLOCKER: Statement = statement!(
    "user.put_blocker",
    idempotent,
    "INSERT INTO blocked_by_user (user_id, blocker_id, edge_id) VALUES (?, ?, ?) USING TIMESTAMP ?"
);
pub(super) static DELETE_BLOCKER: Statement = statement!(
    "user.delete_blocker",
    idempotent,
    "DELETE FROM blocked_by_user USING TIMESTAMP ? WHERE user_id = ? AND blocker_id = ? AND edge_id = ?"
);
pub(super) static BLOCKERS: Statement = statement!(
    "user.blockers",
    idempotent,
    "SELECT blocker_id, edge_id FROM blocked_by_user WHERE user_id = ? AND blocker_id > ? LIMIT ?"
);
pub(super) static GET_EPOCH: Statement =
    statement!("user.get_epoch", idempotent, "SELECT epoch FROM block_epochs WHERE user_id = ?");
pub(super) static SET_EPOCH: Statement =
    statement!("user.set_epoch", not_idempotent, "UPDATE block_epochs SET epoch = ? WHERE user_id = ? IF epoch = ?");

// Friends (0007).

pub(super) static GET_PAIR: Statement = statement!(
    "user.get_pair",
    idempotent,
    "SELECT requester_id, request_edge_id, friend_edge_id, direct_channel_id, generation FROM friend_pairs \
     WHERE low_id = ? AND high_id = ?"
);
pub(super) static SET_PAIR: Statement = statement!(
    "user.set_pair",
    not_idempotent,
    "UPDATE friend_pairs SET requester_id = ?, request_edge_id = ?, friend_edge_id = ?, direct_channel_id = ?, \
     generation = ? WHERE low_id = ? AND high_id = ? IF generation = ?"
);
pub(super) static PUT_REQUEST: Statement = statement!(
    "user.put_request",
    idempotent,
    "INSERT INTO friend_requests_by_user (user_id, incoming, edge_id, other_id) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
);
pub(super) static DELETE_REQUEST: Statement = statement!(
    "user.delete_request",
    idempotent,
    "DELETE FROM friend_requests_by_user USING TIMESTAMP ? WHERE user_id = ? AND incoming = ? AND edge_id = ? \
     AND other_id = ?"
);
pub(super) static REQUESTS: Statement = statement!(
    "user.requests",
    idempotent,
    "SELECT edge_id, other_id FROM friend_requests_by_user WHERE user_id = ? AND incoming = ? AND edge_id < ? LIMIT ?"
);
pub(super) static PUT_FRIEND: Statement = statement!(
    "user.put_friend",
    idempotent,
    "INSERT INTO friends_by_user (user_id, edge_id, friend_id, direct_channel_id) VALUES (?, ?, ?, ?) \
     USING TIMESTAMP ?"
);
pub(super) static DELETE_FRIEND: Statement = statement!(
    "user.delete_friend",
    idempotent,
    "DELETE FROM friends_by_user USING TIMESTAMP ? WHERE user_id = ? AND edge_id = ? AND friend_id = ?"
);
pub(super) static FRIENDS: Statement = statement!(
    "user.friends",
    idempotent,
    "SELECT edge_id, friend_id, direct_channel_id FROM friends_by_user WHERE user_id = ? AND edge_id < ? LIMIT ?"
);
pub(super) static PARK_FRIEND: Statement = statement!(
    "user.park_friend",
    idempotent,
    "INSERT INTO parked_friends (user_id, friend_id, edge_id, direct_channel_id) VALUES (?, ?, ?, ?)"
);
pub(super) static UNPARK_FRIEND: Statement =
    statement!("user.unpark_friend", idempotent, "DELETE FROM parked_friends WHERE user_id = ? AND friend_id = ?");
pub(super) static PARKED_FRIENDS: Statement = statement!(
    "user.parked_friends",
    idempotent,
    "SELECT friend_id, edge_id, direct_channel_id FROM parked_friends WHERE user_id = ? AND friend_id > ? LIMIT ?"
);
pub(super) static ERASE_PARKED_FRIENDS: Statement =
    statement!("user.erase_parked_friends", idempotent, "DELETE FROM parked_friends WHERE user_id = ?");

// Reports (0007; the claims of status reports: 0009).

pub(super) static CLAIM_REPORT: Statement = statement!(
    "user.claim_report",
    not_idempotent,
    "INSERT INTO open_reports (reporter_id, target_user_id, chat_id, report_id) VALUES (?, ?, ?, ?) IF NOT EXISTS"
);
pub(super) static REPORT_CLAIM: Statement = statement!(
    "user.report_claim",
    idempotent,
    "SELECT report_id FROM open_reports WHERE reporter_id = ? AND target_user_id = ? AND chat_id = ?"
);
pub(super) static RELEASE_REPORT: Statement = statement!(
    "user.release_report",
    not_idempotent,
    "DELETE FROM open_reports WHERE reporter_id = ? AND target_user_id = ? AND chat_id = ? IF report_id = ?"
);
pub(super) static CLAIM_STATUS_REPORT: Statement = statement!(
    "user.claim_status_report",
    not_idempotent,
    "INSERT INTO open_status_reports (reporter_id, status_id, report_id) VALUES (?, ?, ?) IF NOT EXISTS"
);
pub(super) static STATUS_REPORT_CLAIM: Statement = statement!(
    "user.status_report_claim",
    idempotent,
    "SELECT report_id FROM open_status_reports WHERE reporter_id = ? AND status_id = ?"
);
pub(super) static RELEASE_STATUS_REPORT: Statement = statement!(
    "user.release_status_report",
    not_idempotent,
    "DELETE FROM open_status_reports WHERE reporter_id = ? AND status_id = ? IF report_id = ?"
);
pub(super) static INSERT_REPORT: Statement = statement!(
    "user.insert_report",
    not_idempotent,
    "INSERT INTO reports (report_id, record, resolved, revision) VALUES (?, ?, ?, ?) IF NOT EXISTS"
);
pub(super) static GET_REPORT: Statement =
    statement!("user.get_report", idempotent, "SELECT record, resolved, revision FROM reports WHERE report_id = ?");
pub(super) static UPDATE_REPORT: Statement = statement!(
    "user.update_report",
    not_idempotent,
    "UPDATE reports SET record = ?, resolved = ?, revision = ? WHERE report_id = ? IF revision = ?"
);
pub(super) static LIST_REPORT: Statement = statement!(
    "user.list_report",
    idempotent,
    "INSERT INTO reports_by_day (resolved, day, report_id) VALUES (?, ?, ?)"
);
pub(super) static UNLIST_REPORT: Statement = statement!(
    "user.unlist_report",
    idempotent,
    "DELETE FROM reports_by_day WHERE resolved = ? AND day = ? AND report_id = ?"
);
pub(super) static REPORTS_OF_DAY: Statement = statement!(
    "user.reports_of_day",
    idempotent,
    "SELECT report_id FROM reports_by_day WHERE resolved = ? AND day = ? AND report_id < ? LIMIT ?"
);
pub(super) static LIST_TARGET_REPORT: Statement = statement!(
    "user.list_target_report",
    idempotent,
    "INSERT INTO reports_by_target (target_user_id, resolved, report_id) VALUES (?, ?, ?)"
);
pub(super) static UNLIST_TARGET_REPORT: Statement = statement!(
    "user.unlist_target_report",
    idempotent,
    "DELETE FROM reports_by_target WHERE target_user_id = ? AND resolved = ? AND report_id = ?"
);
pub(super) static REPORTS_OF_TARGET: Statement = statement!(
    "user.reports_of_target",
    idempotent,
    "SELECT report_id FROM reports_by_target WHERE target_user_id = ? AND resolved = ? AND report_id < ? LIMIT ?"
);

// The directory (0007).

pub(super) static PUT_TERM: Statement =
    statement!("user.put_term", idempotent, "INSERT INTO directory (term_key, term, user_id) VALUES (?, ?, ?)");
pub(super) static DELETE_TERM: Statement =
    statement!("user.delete_term", idempotent, "DELETE FROM directory WHERE term_key = ? AND term = ? AND user_id = ?");
pub(super) static TERMS_FROM: Statement = statement!(
    "user.terms_from",
    idempotent,
    "SELECT term, user_id FROM directory WHERE term_key = ? AND term >= ? AND term < ? LIMIT ?"
);
pub(super) static TERM_USERS_AFTER: Statement = statement!(
    "user.term_users_after",
    idempotent,
    "SELECT user_id FROM directory WHERE term_key = ? AND term = ? AND user_id > ? LIMIT ?"
);
pub(super) static PUT_TERM_KEY: Statement =
    statement!("user.put_term_key", idempotent, "INSERT INTO directory_keys (shard, term_key) VALUES (?, ?)");
pub(super) static TERM_KEYS: Statement = statement!(
    "user.term_keys",
    idempotent,
    "SELECT term_key FROM directory_keys WHERE shard = ? AND term_key >= ? AND term_key < ? LIMIT ?"
);
pub(super) static PUT_USER_TERM: Statement =
    statement!("user.put_user_term", idempotent, "INSERT INTO directory_by_user (user_id, term) VALUES (?, ?)");
pub(super) static DELETE_USER_TERM: Statement =
    statement!("user.delete_user_term", idempotent, "DELETE FROM directory_by_user WHERE user_id = ? AND term = ?");
pub(super) static USER_TERMS: Statement = statement!(
    "user.user_terms",
    idempotent,
    "SELECT term FROM directory_by_user WHERE user_id = ? AND term > ? LIMIT ?"
);

// Recommendations (0010): plain writes only (see `recommendations.rs`).

pub(super) static PUT_RECOMMENDATION: Statement = statement!(
    "user.put_recommendation",
    idempotent,
    "INSERT INTO recommendations (user_id, candidate_id, score) VALUES (?, ?, ?)"
);
pub(super) static DELETE_RECOMMENDATION: Statement = statement!(
    "user.delete_recommendation",
    idempotent,
    "DELETE FROM recommendations WHERE user_id = ? AND candidate_id = ?"
);
pub(super) static RECOMMENDATIONS_FROM: Statement = statement!(
    "user.recommendations_from",
    idempotent,
    "SELECT candidate_id, score FROM recommendations WHERE user_id = ? AND candidate_id > ? LIMIT ?"
);
pub(super) static ERASE_RECOMMENDATIONS: Statement =
    statement!("user.erase_recommendations", idempotent, "DELETE FROM recommendations WHERE user_id = ?");

/// Every statement of the store, prepared at start.
pub(crate) static STATEMENTS: &[&Statement] = &[
    &CLAIM_EMAIL,
    &RELEASE_EMAIL,
    &EMAIL_OWNER,
    &CLAIM_USERNAME,
    &RELEASE_USERNAME,
    &USERNAME_OWNER,
    &PUT_USER,
    &GET_USER,
    &DELETE_USER,
    &PUT_USER_STATE,
    &GET_USER_STATE,
    &DELETE_USER_STATE,
    &LIST_USER,
    &UNLIST_USER,
    &USERS_OF_DAY,
    &LIST_DELETED,
    &UNLIST_DELETED,
    &DELETED_FROM,
    &DELETED_AT,
    &PUT_DAY,
    &FORGET_DAY,
    &DAYS_DOWN,
    &DAYS_UP,
    &INSERT_SESSION,
    &GET_SESSION,
    &ROTATE_SESSION,
    &END_SESSION,
    &DELETE_SESSION,
    &INDEX_USER_SESSION,
    &USER_SESSIONS,
    &DROP_USER_SESSIONS,
    &INDEX_ENDED_SESSION,
    &ENDED_SESSIONS_FROM,
    &ENDED_SESSIONS_AT,
    &GET_FOLLOW,
    &SET_FOLLOW,
    &PUT_FOLLOWER,
    &DELETE_FOLLOWER,
    &FOLLOWERS,
    &PUT_FOLLOWING,
    &DELETE_FOLLOWING,
    &FOLLOWING,
    &GET_COUNTS,
    &SET_FOLLOWERS_COUNT,
    &SET_FOLLOWING_COUNT,
    &SET_FRIENDS_COUNT,
    &PARK_FOLLOW,
    &UNPARK_FOLLOW,
    &PARKED_FOLLOWS,
    &ERASE_PARKED_FOLLOWS,
    &GET_BLOCK,
    &SET_BLOCK,
    &PUT_BLOCKED,
    &DELETE_BLOCKED,
    &BLOCKED,
    &PUT_BLOCKER,
    &DELETE_BLOCKER,
    &BLOCKERS,
    &GET_EPOCH,
    &SET_EPOCH,
    &GET_PAIR,
    &SET_PAIR,
    &PUT_REQUEST,
    &DELETE_REQUEST,
    &REQUESTS,
    &PUT_FRIEND,
    &DELETE_FRIEND,
    &FRIENDS,
    &PARK_FRIEND,
    &UNPARK_FRIEND,
    &PARKED_FRIENDS,
    &ERASE_PARKED_FRIENDS,
    &CLAIM_REPORT,
    &REPORT_CLAIM,
    &RELEASE_REPORT,
    &CLAIM_STATUS_REPORT,
    &STATUS_REPORT_CLAIM,
    &RELEASE_STATUS_REPORT,
    &INSERT_REPORT,
    &GET_REPORT,
    &UPDATE_REPORT,
    &LIST_REPORT,
    &UNLIST_REPORT,
    &REPORTS_OF_DAY,
    &LIST_TARGET_REPORT,
    &UNLIST_TARGET_REPORT,
    &REPORTS_OF_TARGET,
    &PUT_TERM,
    &DELETE_TERM,
    &TERMS_FROM,
    &TERM_USERS_AFTER,
    &PUT_TERM_KEY,
    &TERM_KEYS,
    &PUT_USER_TERM,
    &DELETE_USER_TERM,
    &USER_TERMS,
    &PUT_RECOMMENDATION,
    &DELETE_RECOMMENDATION,
    &RECOMMENDATIONS_FROM,
    &ERASE_RECOMMENDATIONS,
];
