//! The statements of the feed store, each declared once and checked against the migration
//! (`crates/cql/migrations/0008_feed.cql`) by the golden tests.

use chatmesh_cql::{Consistency, Statement, statement};

// Statuses and their counters.

pub(super) static INSERT_STATUS: Statement = statement!(
    "feed.insert_status",
    not_idempotent,
    "INSERT INTO statuses (status_id, author_id, record, state) VALUES (?, ?, ?, ?) IF NOT EXISTS"
);
pub(super) static GET_STATUS: Statement =
    statement!("feed.get_status", idempotent, "SELECT author_id, record, state FROM statuses WHERE status_id = ?");
/// Read at LOCAL_SERIAL: the check a like or a repost makes after writing, so it is ordered with
/// the deletion's lightweight transaction (a deletion it does not see scans the lists after it).
pub(super) static GET_STATUS_SERIAL: Statement = Statement {
    name: "feed.get_status_serial",
    cql: "SELECT author_id, record, state FROM statuses WHERE status_id = ?",
    consistency: Consistency::LocalSerial,
    idempotent: true,
};
pub(super) static SET_STATUS_STATE: Statement = statement!(
    "feed.set_status_state",
    not_idempotent,
    "UPDATE statuses SET state = ? WHERE status_id = ? IF state = ?"
);
pub(super) static GET_STATUS_COUNTS: Statement = statement!(
    "feed.get_status_counts",
    idempotent,
    "SELECT likes, reposts, replies FROM status_counts WHERE status_id = ?"
);
pub(super) static SET_STATUS_LIKES: Statement = statement!(
    "feed.set_status_likes",
    not_idempotent,
    "UPDATE status_counts SET likes = ? WHERE status_id = ? IF likes = ?"
);
pub(super) static SET_STATUS_REPOSTS: Statement = statement!(
    "feed.set_status_reposts",
    not_idempotent,
    "UPDATE status_counts SET reposts = ? WHERE status_id = ? IF reposts = ?"
);
pub(super) static SET_STATUS_REPLIES: Statement = statement!(
    "feed.set_status_replies",
    not_idempotent,
    "UPDATE status_counts SET replies = ? WHERE status_id = ? IF replies = ?"
);
pub(super) static GET_USER_COUNTS: Statement =
    statement!("feed.get_user_counts", idempotent, "SELECT statuses, likes FROM feed_user_counts WHERE user_id = ?");
pub(super) static SET_USER_STATUSES: Statement = statement!(
    "feed.set_user_statuses",
    not_idempotent,
    "UPDATE feed_user_counts SET statuses = ? WHERE user_id = ? IF statuses = ?"
);
pub(super) static SET_USER_LIKES: Statement = statement!(
    "feed.set_user_likes",
    not_idempotent,
    "UPDATE feed_user_counts SET likes = ? WHERE user_id = ? IF likes = ?"
);

// Bucketed lists: each list's rows are put `USING TIMESTAMP`, deleted likewise, paged by id within
// a bucket; `feed_list_buckets` lists each list's non-empty buckets.

pub(super) static PUT_LIST_BUCKET: Statement = statement!(
    "feed.put_list_bucket",
    idempotent,
    "INSERT INTO feed_list_buckets (list_name, owner, bucket) VALUES (?, ?, ?)"
);
pub(super) static LIST_BUCKETS: Statement = statement!(
    "feed.list_buckets",
    idempotent,
    "SELECT bucket FROM feed_list_buckets WHERE list_name = ? AND owner = ? AND bucket <= ? LIMIT ?"
);
pub(super) static PUT_USER_STATUS: Statement = statement!(
    "feed.put_user_status",
    idempotent,
    "INSERT INTO statuses_by_user (user_id, bucket, status_id) VALUES (?, ?, ?) USING TIMESTAMP ?"
);
pub(super) static DELETE_USER_STATUS: Statement = statement!(
    "feed.delete_user_status",
    idempotent,
    "DELETE FROM statuses_by_user USING TIMESTAMP ? WHERE user_id = ? AND bucket = ? AND status_id = ?"
);
pub(super) static USER_STATUSES: Statement = statement!(
    "feed.user_statuses",
    idempotent,
    "SELECT status_id FROM statuses_by_user WHERE user_id = ? AND bucket = ? AND status_id < ? LIMIT ?"
);
pub(super) static PUT_TAG_STATUS: Statement = statement!(
    "feed.put_tag_status",
    idempotent,
    "INSERT INTO statuses_by_tag (tag, bucket, status_id) VALUES (?, ?, ?) USING TIMESTAMP ?"
);
pub(super) static DELETE_TAG_STATUS: Statement = statement!(
    "feed.delete_tag_status",
    idempotent,
    "DELETE FROM statuses_by_tag USING TIMESTAMP ? WHERE tag = ? AND bucket = ? AND status_id = ?"
);
pub(super) static TAG_STATUSES: Statement = statement!(
    "feed.tag_statuses",
    idempotent,
    "SELECT status_id FROM statuses_by_tag WHERE tag = ? AND bucket = ? AND status_id < ? LIMIT ?"
);
pub(super) static PUT_REPLY: Statement = statement!(
    "feed.put_reply",
    idempotent,
    "INSERT INTO replies_by_status (status_id, bucket, reply_id) VALUES (?, ?, ?) USING TIMESTAMP ?"
);
pub(super) static DELETE_REPLY: Statement = statement!(
    "feed.delete_reply",
    idempotent,
    "DELETE FROM replies_by_status USING TIMESTAMP ? WHERE status_id = ? AND bucket = ? AND reply_id = ?"
);
pub(super) static REPLIES: Statement = statement!(
    "feed.replies",
    idempotent,
    "SELECT reply_id FROM replies_by_status WHERE status_id = ? AND bucket = ? AND reply_id < ? LIMIT ?"
);
pub(super) static PUT_REPOST: Statement = statement!(
    "feed.put_repost",
    idempotent,
    "INSERT INTO reposts_by_status (status_id, bucket, repost_id, author_id) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
);
pub(super) static DELETE_REPOST: Statement = statement!(
    "feed.delete_repost",
    idempotent,
    "DELETE FROM reposts_by_status USING TIMESTAMP ? WHERE status_id = ? AND bucket = ? AND repost_id = ? \
     AND author_id = ?"
);
pub(super) static REPOSTS: Statement = statement!(
    "feed.reposts",
    idempotent,
    "SELECT repost_id, author_id FROM reposts_by_status WHERE status_id = ? AND bucket = ? AND repost_id < ? LIMIT ?"
);
pub(super) static PUT_STATUS_LIKE: Statement = statement!(
    "feed.put_status_like",
    idempotent,
    "INSERT INTO likes_by_status (status_id, bucket, like_id, user_id) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
);
pub(super) static DELETE_STATUS_LIKE: Statement = statement!(
    "feed.delete_status_like",
    idempotent,
    "DELETE FROM likes_by_status USING TIMESTAMP ? WHERE status_id = ? AND bucket = ? AND like_id = ? AND user_id = ?"
);
pub(super) static STATUS_LIKES: Statement = statement!(
    "feed.status_likes",
    idempotent,
    "SELECT like_id, user_id FROM likes_by_status WHERE status_id = ? AND bucket = ? AND like_id < ? LIMIT ?"
);
pub(super) static PUT_USER_LIKE: Statement = statement!(
    "feed.put_user_like",
    idempotent,
    "INSERT INTO likes_by_user (user_id, bucket, like_id, status_id) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
);
pub(super) static DELETE_USER_LIKE: Statement = statement!(
    "feed.delete_user_like",
    idempotent,
    "DELETE FROM likes_by_user USING TIMESTAMP ? WHERE user_id = ? AND bucket = ? AND like_id = ? AND status_id = ?"
);
pub(super) static USER_LIKES: Statement = statement!(
    "feed.user_likes",
    idempotent,
    "SELECT like_id, status_id FROM likes_by_user WHERE user_id = ? AND bucket = ? AND like_id < ? LIMIT ?"
);

// Reposts and likes: the pair rows.

pub(super) static CLAIM_REPOST: Statement = statement!(
    "feed.claim_repost",
    not_idempotent,
    "INSERT INTO repost_claims (author_id, status_id, repost_id, record, fanout) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS"
);
pub(super) static GET_REPOST_CLAIM: Statement = statement!(
    "feed.get_repost_claim",
    idempotent,
    "SELECT repost_id, record, fanout FROM repost_claims WHERE author_id = ? AND status_id = ?"
);
pub(super) static RELEASE_REPOST: Statement = statement!(
    "feed.release_repost",
    not_idempotent,
    "DELETE FROM repost_claims WHERE author_id = ? AND status_id = ? IF repost_id = ?"
);
pub(super) static GET_LIKE: Statement = statement!(
    "feed.get_like",
    idempotent,
    "SELECT like_id, generation FROM likes WHERE user_id = ? AND status_id = ?"
);
pub(super) static SET_LIKE: Statement = statement!(
    "feed.set_like",
    not_idempotent,
    "UPDATE likes SET like_id = ?, generation = ? WHERE user_id = ? AND status_id = ? IF generation = ?"
);

// Timelines and celebrities.

pub(super) static TIMELINE_HINT: Statement =
    statement!("feed.timeline_hint", idempotent, "SELECT entries_hint FROM timelines WHERE reader_id = ? LIMIT ?");
pub(super) static TIMELINE_ENTRY: Statement = statement!(
    "feed.timeline_entry",
    idempotent,
    "SELECT poster_id FROM timelines WHERE reader_id = ? AND status_id = ?"
);
pub(super) static PUT_ENTRY: Statement = statement!(
    "feed.put_entry",
    idempotent,
    "INSERT INTO timelines (reader_id, status_id, poster_id) VALUES (?, ?, ?)"
);
pub(super) static SET_HINT: Statement =
    statement!("feed.set_hint", idempotent, "UPDATE timelines SET entries_hint = ? WHERE reader_id = ?");
pub(super) static TIMELINE_PAGE: Statement = statement!(
    "feed.timeline_page",
    idempotent,
    "SELECT status_id, poster_id FROM timelines WHERE reader_id = ? AND status_id < ? LIMIT ?"
);
pub(super) static TRIM_TIMELINE: Statement =
    statement!("feed.trim_timeline", idempotent, "DELETE FROM timelines WHERE reader_id = ? AND status_id < ?");
pub(super) static REMOVE_ENTRY: Statement =
    statement!("feed.remove_entry", idempotent, "DELETE FROM timelines WHERE reader_id = ? AND status_id = ?");
pub(super) static GET_WATERMARK: Statement =
    statement!("feed.get_watermark", idempotent, "SELECT watermark FROM timeline_marks WHERE reader_id = ?");
pub(super) static SET_WATERMARK: Statement = statement!(
    "feed.set_watermark",
    not_idempotent,
    "UPDATE timeline_marks SET watermark = ? WHERE reader_id = ? IF watermark = ?"
);
pub(super) static PUT_CELEBRITY: Statement =
    statement!("feed.put_celebrity", idempotent, "INSERT INTO celebrities (shard, author_id) VALUES (?, ?)");
pub(super) static CELEBRITIES: Statement = statement!(
    "feed.celebrities",
    idempotent,
    "SELECT author_id FROM celebrities WHERE shard = ? AND author_id > ? LIMIT ?"
);

// Fan-out jobs and the queues (fan-out, due scheduled statuses).

pub(super) static INSERT_JOB: Statement = statement!(
    "feed.insert_job",
    not_idempotent,
    "INSERT INTO fanout_jobs (status_id, author_id, page_token, pages_done, owner, lease_until_ms, queue_bucket) \
     VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
);
pub(super) static GET_JOB: Statement = statement!(
    "feed.get_job",
    idempotent,
    "SELECT author_id, page_token, pages_done, lease_until_ms, queue_bucket FROM fanout_jobs WHERE status_id = ?"
);
pub(super) static CLAIM_JOB: Statement = statement!(
    "feed.claim_job",
    not_idempotent,
    "UPDATE fanout_jobs SET owner = ?, lease_until_ms = ?, queue_bucket = ? WHERE status_id = ? \
     IF lease_until_ms <= ? AND queue_bucket = ?"
);
pub(super) static LEASE_JOB: Statement = statement!(
    "feed.lease_job",
    not_idempotent,
    "UPDATE fanout_jobs SET owner = ?, lease_until_ms = ? WHERE status_id = ? IF EXISTS"
);
pub(super) static ADVANCE_JOB: Statement = statement!(
    "feed.advance_job",
    not_idempotent,
    "UPDATE fanout_jobs SET page_token = ?, pages_done = ? WHERE status_id = ? IF EXISTS"
);
pub(super) static DELETE_JOB: Statement =
    statement!("feed.delete_job", not_idempotent, "DELETE FROM fanout_jobs WHERE status_id = ? IF EXISTS");
pub(super) static QUEUE_JOB: Statement =
    statement!("feed.queue_job", idempotent, "INSERT INTO fanout_queue (bucket, status_id) VALUES (?, ?)");
pub(super) static UNQUEUE_JOB: Statement =
    statement!("feed.unqueue_job", idempotent, "DELETE FROM fanout_queue WHERE bucket = ? AND status_id = ?");
pub(super) static QUEUED_JOBS: Statement = statement!(
    "feed.queued_jobs",
    idempotent,
    "SELECT status_id FROM fanout_queue WHERE bucket = ? AND status_id > ? LIMIT ?"
);
pub(super) static PUT_QUEUE_BUCKET: Statement =
    statement!("feed.put_queue_bucket", idempotent, "INSERT INTO feed_queue_buckets (queue, bucket) VALUES (?, ?)");
pub(super) static QUEUE_BUCKETS: Statement = statement!(
    "feed.queue_buckets",
    idempotent,
    "SELECT bucket FROM feed_queue_buckets WHERE queue = ? AND bucket >= ? AND bucket <= ? LIMIT ?"
);
pub(super) static DROP_QUEUE_BUCKETS: Statement =
    statement!("feed.drop_queue_buckets", idempotent, "DELETE FROM feed_queue_buckets WHERE queue = ? AND bucket < ?");
pub(super) static GET_PROGRESS: Statement =
    statement!("feed.get_progress", idempotent, "SELECT first_bucket FROM feed_queue_progress WHERE queue = ?");
pub(super) static START_PROGRESS: Statement = statement!(
    "feed.start_progress",
    not_idempotent,
    "INSERT INTO feed_queue_progress (queue, first_bucket) VALUES (?, ?) IF NOT EXISTS"
);
pub(super) static ADVANCE_PROGRESS: Statement = statement!(
    "feed.advance_progress",
    not_idempotent,
    "UPDATE feed_queue_progress SET first_bucket = ? WHERE queue = ? IF first_bucket = ?"
);

// Scheduled statuses.

pub(super) static INSERT_SCHEDULED: Statement = statement!(
    "feed.insert_scheduled",
    not_idempotent,
    "INSERT INTO scheduled_statuses (scheduled_id, author_id, record, due_bucket) VALUES (?, ?, ?, ?) IF NOT EXISTS"
);
pub(super) static GET_SCHEDULED: Statement = statement!(
    "feed.get_scheduled",
    idempotent,
    "SELECT author_id, record, due_bucket FROM scheduled_statuses WHERE scheduled_id = ?"
);
pub(super) static DELETE_SCHEDULED: Statement = statement!(
    "feed.delete_scheduled",
    not_idempotent,
    "DELETE FROM scheduled_statuses WHERE scheduled_id = ? IF EXISTS"
);
pub(super) static PUT_USER_SCHEDULED: Statement = statement!(
    "feed.put_user_scheduled",
    idempotent,
    "INSERT INTO scheduled_by_user (user_id, scheduled_id) VALUES (?, ?)"
);
pub(super) static DELETE_USER_SCHEDULED: Statement = statement!(
    "feed.delete_user_scheduled",
    idempotent,
    "DELETE FROM scheduled_by_user WHERE user_id = ? AND scheduled_id = ?"
);
pub(super) static USER_SCHEDULED: Statement = statement!(
    "feed.user_scheduled",
    idempotent,
    "SELECT scheduled_id FROM scheduled_by_user WHERE user_id = ? AND scheduled_id < ? LIMIT ?"
);
pub(super) static PUT_DUE: Statement = statement!(
    "feed.put_due",
    idempotent,
    "INSERT INTO scheduled_due (bucket, publish_at_ms, scheduled_id) VALUES (?, ?, ?)"
);
pub(super) static DELETE_DUE: Statement = statement!(
    "feed.delete_due",
    idempotent,
    "DELETE FROM scheduled_due WHERE bucket = ? AND publish_at_ms = ? AND scheduled_id = ?"
);
pub(super) static DUE_FROM: Statement = statement!(
    "feed.due_from",
    idempotent,
    "SELECT publish_at_ms, scheduled_id FROM scheduled_due WHERE bucket = ? AND publish_at_ms > ? \
     AND publish_at_ms <= ? LIMIT ?"
);
pub(super) static DUE_AT: Statement = statement!(
    "feed.due_at",
    idempotent,
    "SELECT scheduled_id FROM scheduled_due WHERE bucket = ? AND publish_at_ms = ? AND scheduled_id > ? LIMIT ?"
);

// Trends and leases.

pub(super) static GET_TREND_COUNT: Statement = statement!(
    "feed.get_trend_count",
    idempotent,
    "SELECT total, version FROM feed_trend_counts WHERE bucket = ? AND tag = ? AND shard = ?"
);
pub(super) static SET_TREND_COUNT: Statement = statement!(
    "feed.set_trend_count",
    not_idempotent,
    "UPDATE feed_trend_counts USING TTL ? SET total = ?, version = ? WHERE bucket = ? AND tag = ? AND shard = ? \
     IF version = ?"
);
pub(super) static PUT_TREND_COPY: Statement = statement!(
    "feed.put_trend_copy",
    idempotent,
    "INSERT INTO feed_trend_tags (bucket, tag, shard, total) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
);
pub(super) static DELETE_TREND_COPY: Statement = statement!(
    "feed.delete_trend_copy",
    idempotent,
    "DELETE FROM feed_trend_tags USING TIMESTAMP ? WHERE bucket = ? AND tag = ? AND shard = ?"
);
pub(super) static TREND_COPIES: Statement = statement!(
    "feed.trend_copies",
    idempotent,
    "SELECT tag, shard, total FROM feed_trend_tags WHERE bucket = ? AND tag >= ? LIMIT ?"
);
pub(super) static PUT_TREND_BUCKET: Statement =
    statement!("feed.put_trend_bucket", idempotent, "INSERT INTO feed_trend_buckets (shard, bucket) VALUES (?, ?)");
pub(super) static TREND_BUCKETS: Statement = statement!(
    "feed.trend_buckets",
    idempotent,
    "SELECT bucket FROM feed_trend_buckets WHERE shard = ? AND bucket >= ? AND bucket <= ? LIMIT ?"
);
pub(super) static DROP_TREND_BUCKET: Statement =
    statement!("feed.drop_trend_bucket", idempotent, "DELETE FROM feed_trend_buckets WHERE shard = ? AND bucket = ?");
pub(super) static SAVE_TRENDS: Statement =
    statement!("feed.save_trends", idempotent, "INSERT INTO feed_trends (shard, snapshot) VALUES (?, ?)");
pub(super) static LOAD_TRENDS: Statement =
    statement!("feed.load_trends", idempotent, "SELECT snapshot FROM feed_trends WHERE shard = ?");
pub(super) static GET_LEASE: Statement =
    statement!("feed.get_lease", idempotent, "SELECT owner, until_ms FROM feed_leases WHERE name = ?");
pub(super) static CREATE_LEASE: Statement = statement!(
    "feed.create_lease",
    not_idempotent,
    "INSERT INTO feed_leases (name, owner, until_ms) VALUES (?, ?, ?) IF NOT EXISTS"
);
pub(super) static RENEW_LEASE: Statement =
    statement!("feed.renew_lease", not_idempotent, "UPDATE feed_leases SET until_ms = ? WHERE name = ? IF owner = ?");
pub(super) static TAKE_LEASE: Statement = statement!(
    "feed.take_lease",
    not_idempotent,
    "UPDATE feed_leases SET owner = ?, until_ms = ? WHERE name = ? IF until_ms <= ?"
);

/// Every statement, prepared at start.
pub(super) static STATEMENTS: &[&Statement] = &[
    &INSERT_STATUS,
    &GET_STATUS,
    &GET_STATUS_SERIAL,
    &SET_STATUS_STATE,
    &GET_STATUS_COUNTS,
    &SET_STATUS_LIKES,
    &SET_STATUS_REPOSTS,
    &SET_STATUS_REPLIES,
    &GET_USER_COUNTS,
    &SET_USER_STATUSES,
    &SET_USER_LIKES,
    &PUT_LIST_BUCKET,
    &LIST_BUCKETS,
    &PUT_USER_STATUS,
    &DELETE_USER_STATUS,
    &USER_STATUSES,
    &PUT_TAG_STATUS,
    &DELETE_TAG_STATUS,
    &TAG_STATUSES,
    &PUT_REPLY,
    &DELETE_REPLY,
    &REPLIES,
    &PUT_REPOST,
    &DELETE_REPOST,
    &REPOSTS,
    &PUT_STATUS_LIKE,
    &DELETE_STATUS_LIKE,
    &STATUS_LIKES,
    &PUT_USER_LIKE,
    &DELETE_USER_LIKE,
    &USER_LIKES,
    &CLAIM_REPOST,
    &GET_REPOST_CLAIM,
    &RELEASE_REPOST,
    &GET_LIKE,
    &SET_LIKE,
    &TIMELINE_HINT,
    &TIMELINE_ENTRY,
    &PUT_ENTRY,
    &SET_HINT,
    &TIMELINE_PAGE,
    &TRIM_TIMELINE,
    &REMOVE_ENTRY,
    &GET_WATERMARK,
    &SET_WATERMARK,
    &PUT_CELEBRITY,
    &CELEBRITIES,
    &INSERT_JOB,
    &GET_JOB,
    &CLAIM_JOB,
    &LEASE_JOB,
    &ADVANCE_JOB,
    &DELETE_JOB,
    &QUEUE_JOB,
    &UNQUEUE_JOB,
    &QUEUED_JOBS,
    &PUT_QUEUE_BUCKET,
    &QUEUE_BUCKETS,
    &DROP_QUEUE_BUCKETS,
    &GET_PROGRESS,
    &START_PROGRESS,
    &ADVANCE_PROGRESS,
    &INSERT_SCHEDULED,
    &GET_SCHEDULED,
    &DELETE_SCHEDULED,
    &PUT_USER_SCHEDULED,
    &DELETE_USER_SCHEDULED,
    &USER_SCHEDULED,
    &PUT_DUE,
    &DELETE_DUE,
    &DUE_FROM,
    &DUE_AT,
    &GET_TREND_COUNT,
    &SET_TREND_COUNT,
    &PUT_TREND_COPY,
    &DELETE_TREND_COPY,
    &TREND_COPIES,
    &PUT_TREND_BUCKET,
    &TREND_BUCKETS,
    &DROP_TREND_BUCKET,
    &SAVE_TRENDS,
    &LOAD_TRENDS,
    &GET_LEASE,
    &CREATE_LEASE,
    &RENEW_LEASE,
    &TAKE_LEASE,
];
