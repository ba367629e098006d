//! The chat store's uploads on ScyllaDB (schema: `crates/cql/migrations/0004_chat_feed_and_uploads.cql`;
//! the hourly index and queues in `0005_chat_pointers_and_queues.cql`).
//!
//! Tables (partition key, clustering):
//! - `chat_uploads` ((upload_id)): the record, `state` 'pending' | 'attached' (with `chat_id`) |
//!   'reclaiming'. Written only by lightweight transactions at LOCAL_SERIAL: created `IF NOT
//!   EXISTS`, attached `IF state = 'pending' AND uploader_id = ? AND channel_id = ?` (so an
//!   upload is attached once, to its uploader's chat in its channel), detached `IF state =
//!   'attached' AND chat_id = ?`, expired `IF state = 'pending'`, released with its deleted
//!   channel and forgotten `IF EXISTS`; Paxos and plain write timestamps never mix on a row.
//! - `chat_uploads_by_channel` ((channel_id), upload_id): a channel's uploads, to release them
//!   when it is deleted.
//! - One partition per hour ([`hour_of`]), so a sweep scans at most an hour's deleted entries,
//!   never everything deleted within gc_grace (3 hours on these tables) or a day's walked ones:
//!   - `chat_uploads_pending_by_hour` ((hour), upload_id): uploads that may still be pending, by
//!     the hour of the id's time (upload ids are time-ordered, and expiry goes by the id's time
//!     as the embedded store's does). Entries stay until the expiry sweep walks past them
//!     (forgetting an upload leaves its entry): it reads each entry's upload, expires those still
//!     pending, and trims what it walked with one range delete (no tombstone per entry);
//!   - `chat_uploads_reclaim_by_hour` ((hour), upload_id) → from_chat: uploads whose objects are
//!     to be deleted, by the hour they were queued in (an entry leaves once the sweep finds its
//!     upload forgotten); `chat_uploads_channel_releases_by_hour` ((hour), channel_id): deleted
//!     channels whose uploads are still to be released, by the hour of `channel.deleted`;
//!   - `chat_uploads_queue_hours` ((queue), hour): the hours of each that may hold entries,
//!     written before (or with) an hour's entries; a pending hour leaves once walked wholly
//!     before the cutoff, a queue's hour once found empty an hour after it ended ([`close_hour`]).
//! - Before 0005: `chat_uploads_pending` ((day), upload_id) with `chat_uploads_pending_days`,
//!   walked by the expiry sweep until no day is left, and `chat_uploads_reclaim`,
//!   `chat_uploads_channel_releases` ((shard = 0), ...), whose entries the sweep moves into the
//!   hourly queues.
//!
//! There are no multi-partition transactions, so each operation orders its writes so that an
//! interruption leaves work the sweep ([`expire_uploads`], [`reclaimable_uploads`]) finishes,
//! never an upload whose object is deleted while a live chat shows it, and no object that is
//! never deleted:
//! - Creating writes the index entries, then the record: a record is always in the indexes.
//! - Expiring turns a pending upload 'reclaiming', then queues it, then trims the index; after an
//!   interruption the next sweep finds the entry again and queues the upload it turned.
//! - Releasing a retracted chat's uploads queues them with `from_chat` first (or in the
//!   retraction's own batch: [`release_writes`]), then detaches them; the sweep detaches any
//!   still attached to that chat.
//! - A deleted channel is queued in the batch of its `channel.deleted` event
//!   ([`channel_release_writes`]); [`release_channel`] (right after, and again from the sweep
//!   while it is queued) turns each upload 'reclaiming' and queues it, then drops the entry.
//! - Forgetting deletes the record and its channel's index entry; its queue and pending entries
//!   are dropped by the sweeps, which find them stale.
//!
//! Attaching ([`claim`]) is one LWT per upload; one found attached to the same chat id already
//! (another process finishing the same keyed send) counts as attached; another refused one
//! undoes the claims made before it.
//! A claim whose chat is then never written stays attached to that chat id (its objects are
//! never deleted) unless the caller knows the write failed and hands them back ([`unclaim`]); a
//! retried send with the same idempotency key finishes the write instead.

use chatmesh_cql::{BatchKind, Cql, CqlError, Statement, Value, statement, values};
use chatmesh_platform::ids::{EPOCH_MS, max_id_at, unix_ms_of};

use crate::{
    model::{ChatRecord, UploadRecord, UploadState},
    store::StoreError,
};

/// The one partition of the queues before migration 0005.
const SHARD: i32 = 0;
/// The index and queues, as named in `chat_uploads_queue_hours`.
const PENDING_INDEX: &str = "pending";
const RECLAIM: &str = "reclaim";
const CHANNEL_RELEASE: &str = "channel_release";
const HOUR_MS: u64 = 3_600_000;
/// Rows read per query when a loop pages through a partition.
const PAGE: usize = 256;
/// Days of pending uploads, hours of a queue, and deleted channels, taken per sweep.
const QUEUE_PAGE: i32 = 1000;
const DAY_MS: u64 = 86_400_000;

const PENDING: &str = "pending";
const ATTACHED: &str = "attached";
const RECLAIMING: &str = "reclaiming";

static PUT_UPLOAD: Statement = statement!(
    "chat.upload_put",
    not_idempotent,
    "INSERT INTO chat_uploads (upload_id, uploader_id, channel_id, file_name, content_type, size_bytes, \
     created_at_ms, state, chat_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
);
static GET_UPLOAD: Statement = statement!(
    "chat.upload_get",
    idempotent,
    "SELECT uploader_id, channel_id, file_name, content_type, size_bytes, created_at_ms, state, chat_id \
     FROM chat_uploads WHERE upload_id = ?"
);
pub(super) static ATTACH: Statement = statement!(
    "chat.upload_attach",
    not_idempotent,
    "UPDATE chat_uploads SET state = ?, chat_id = ? WHERE upload_id = ? IF state = ? AND uploader_id = ? \
     AND channel_id = ?"
);
static DETACH: Statement = statement!(
    "chat.upload_detach",
    not_idempotent,
    "UPDATE chat_uploads SET state = ?, chat_id = ? WHERE upload_id = ? IF state = ? AND chat_id = ?"
);
static EXPIRE: Statement = statement!(
    "chat.upload_expire",
    not_idempotent,
    "UPDATE chat_uploads SET state = ? WHERE upload_id = ? IF state = ?"
);
static RELEASE: Statement = statement!(
    "chat.upload_release",
    not_idempotent,
    "UPDATE chat_uploads SET state = ?, chat_id = ? WHERE upload_id = ? IF EXISTS"
);
static DELETE_UPLOAD: Statement =
    statement!("chat.upload_delete", not_idempotent, "DELETE FROM chat_uploads WHERE upload_id = ? IF EXISTS");
static PUT_BY_CHANNEL: Statement = statement!(
    "chat.upload_by_channel_put",
    idempotent,
    "INSERT INTO chat_uploads_by_channel (channel_id, upload_id) VALUES (?, ?)"
);
static BY_CHANNEL: Statement = statement!(
    "chat.upload_by_channel",
    idempotent,
    "SELECT upload_id FROM chat_uploads_by_channel WHERE channel_id = ? AND upload_id > ? LIMIT ?"
);
static DELETE_BY_CHANNEL: Statement = statement!(
    "chat.upload_by_channel_delete",
    idempotent,
    "DELETE FROM chat_uploads_by_channel WHERE channel_id = ? AND upload_id = ?"
);
static DROP_BY_CHANNEL: Statement =
    statement!("chat.upload_by_channel_drop", idempotent, "DELETE FROM chat_uploads_by_channel WHERE channel_id = ?");
static PUT_PENDING: Statement = statement!(
    "chat.upload_pending_put",
    idempotent,
    "INSERT INTO chat_uploads_pending_by_hour (hour, upload_id) VALUES (?, ?)"
);
static PENDING_UPLOADS: Statement = statement!(
    "chat.upload_pending",
    idempotent,
    "SELECT upload_id FROM chat_uploads_pending_by_hour WHERE hour = ? AND upload_id <= ? LIMIT ?"
);
static TRIM_PENDING: Statement = statement!(
    "chat.upload_pending_trim",
    idempotent,
    "DELETE FROM chat_uploads_pending_by_hour WHERE hour = ? AND upload_id <= ?"
);
static PUT_QUEUE_HOUR: Statement = statement!(
    "chat.upload_queue_hour_put",
    idempotent,
    "INSERT INTO chat_uploads_queue_hours (queue, hour) VALUES (?, ?)"
);
static QUEUE_HOURS: Statement = statement!(
    "chat.upload_queue_hours",
    idempotent,
    "SELECT hour FROM chat_uploads_queue_hours WHERE queue = ? LIMIT ?"
);
static DELETE_QUEUE_HOUR: Statement = statement!(
    "chat.upload_queue_hour_delete",
    idempotent,
    "DELETE FROM chat_uploads_queue_hours WHERE queue = ? AND hour = ?"
);
static QUEUE_RECLAIM: Statement = statement!(
    "chat.upload_reclaim_put",
    idempotent,
    "INSERT INTO chat_uploads_reclaim_by_hour (hour, upload_id) VALUES (?, ?)"
);
static QUEUE_RELEASE: Statement = statement!(
    "chat.upload_release_put",
    idempotent,
    "INSERT INTO chat_uploads_reclaim_by_hour (hour, upload_id, from_chat) VALUES (?, ?, ?)"
);
static RECLAIMABLE: Statement = statement!(
    "chat.upload_reclaimable",
    idempotent,
    "SELECT upload_id, from_chat FROM chat_uploads_reclaim_by_hour WHERE hour = ? AND upload_id > ? LIMIT ?"
);
static DELETE_RECLAIM: Statement = statement!(
    "chat.upload_reclaim_delete",
    idempotent,
    "DELETE FROM chat_uploads_reclaim_by_hour WHERE hour = ? AND upload_id = ?"
);
static QUEUE_CHANNEL: Statement = statement!(
    "chat.upload_channel_release_put",
    idempotent,
    "INSERT INTO chat_uploads_channel_releases_by_hour (hour, channel_id) VALUES (?, ?)"
);
static QUEUED_CHANNELS: Statement = statement!(
    "chat.upload_channel_releases",
    idempotent,
    "SELECT channel_id FROM chat_uploads_channel_releases_by_hour WHERE hour = ? LIMIT ?"
);
static DELETE_QUEUED_CHANNEL: Statement = statement!(
    "chat.upload_channel_release_delete",
    idempotent,
    "DELETE FROM chat_uploads_channel_releases_by_hour WHERE hour = ? AND channel_id = ?"
);
// the index and queues before migration 0005: the index walked until empty, the queues drained
// into the hourly ones
static LEGACY_PENDING_UPLOADS: Statement = statement!(
    "chat.upload_legacy_pending",
    idempotent,
    "SELECT upload_id FROM chat_uploads_pending WHERE day = ? AND upload_id <= ? LIMIT ?"
);
static LEGACY_TRIM_PENDING: Statement = statement!(
    "chat.upload_legacy_pending_trim",
    idempotent,
    "DELETE FROM chat_uploads_pending WHERE day = ? AND upload_id <= ?"
);
static LEGACY_PENDING_DAYS: Statement = statement!(
    "chat.upload_legacy_pending_days",
    idempotent,
    "SELECT day FROM chat_uploads_pending_days WHERE shard = ? AND day <= ? LIMIT ?"
);
static LEGACY_DELETE_PENDING_DAY: Statement = statement!(
    "chat.upload_legacy_pending_day_delete",
    idempotent,
    "DELETE FROM chat_uploads_pending_days WHERE shard = ? AND day = ?"
);
static LEGACY_RECLAIMABLE: Statement = statement!(
    "chat.upload_legacy_reclaimable",
    idempotent,
    "SELECT upload_id, from_chat FROM chat_uploads_reclaim WHERE shard = ? LIMIT ?"
);
static LEGACY_DELETE_RECLAIM: Statement = statement!(
    "chat.upload_legacy_reclaim_delete",
    idempotent,
    "DELETE FROM chat_uploads_reclaim WHERE shard = ? AND upload_id = ?"
);
static LEGACY_QUEUED_CHANNELS: Statement = statement!(
    "chat.upload_legacy_channel_releases",
    idempotent,
    "SELECT channel_id FROM chat_uploads_channel_releases WHERE shard = ? LIMIT ?"
);
static LEGACY_DELETE_QUEUED_CHANNEL: Statement = statement!(
    "chat.upload_legacy_channel_release_delete",
    idempotent,
    "DELETE FROM chat_uploads_channel_releases WHERE shard = ? AND channel_id = ?"
);

/// Every statement of the uploads (prepared at start, covered by the golden files).
pub(super) static STATEMENTS: &[&Statement] = &[
    &PUT_UPLOAD,
    &GET_UPLOAD,
    &ATTACH,
    &DETACH,
    &EXPIRE,
    &RELEASE,
    &DELETE_UPLOAD,
    &PUT_BY_CHANNEL,
    &BY_CHANNEL,
    &DELETE_BY_CHANNEL,
    &DROP_BY_CHANNEL,
    &PUT_PENDING,
    &PENDING_UPLOADS,
    &TRIM_PENDING,
    &PUT_QUEUE_HOUR,
    &QUEUE_HOURS,
    &DELETE_QUEUE_HOUR,
    &QUEUE_RECLAIM,
    &QUEUE_RELEASE,
    &RECLAIMABLE,
    &DELETE_RECLAIM,
    &QUEUE_CHANNEL,
    &QUEUED_CHANNELS,
    &DELETE_QUEUED_CHANNEL,
    &LEGACY_PENDING_UPLOADS,
    &LEGACY_TRIM_PENDING,
    &LEGACY_PENDING_DAYS,
    &LEGACY_DELETE_PENDING_DAY,
    &LEGACY_RECLAIMABLE,
    &LEGACY_DELETE_RECLAIM,
    &LEGACY_QUEUED_CHANNELS,
    &LEGACY_DELETE_QUEUED_CHANNEL,
];

fn backend(e: CqlError) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The UTC day of an upload id's time: its partition of `chat_uploads_pending`.
fn day_of(upload_id: u64) -> i64 {
    (unix_ms_of(upload_id) / DAY_MS) as i64
}

/// The hour of unix milliseconds `ms`: a queue entry's partition, from the time it is queued.
pub(super) fn hour_of(ms: u64) -> i64 {
    (ms / HOUR_MS) as i64
}

/// The largest id that could have been minted at or before `ms`, as a bigint.
fn last_id_at(ms: u64) -> i64 {
    // why: a far-future cutoff must not overflow the shift; ids stay below 2^63
    if ms.saturating_sub(EPOCH_MS) >= 1 << 41 { i64::MAX } else { max_id_at(ms) as i64 }
}

fn page(rows: usize) -> i32 {
    rows.min(i32::MAX as usize) as i32
}

/// The `state` and `chat_id` columns of a state.
fn state_columns(state: UploadState) -> (&'static str, Option<u64>) {
    match state {
        UploadState::Pending => (PENDING, None),
        UploadState::Attached(chat_id) => (ATTACHED, Some(chat_id)),
        UploadState::Reclaiming => (RECLAIMING, None),
    }
}

type UploadRow = (i64, i64, String, String, i64, i64, String, Option<i64>);

fn decode(upload_id: u64, row: UploadRow) -> Result<UploadRecord, StoreError> {
    let (uploader_id, channel_id, file_name, content_type, size_bytes, created_at_ms, state, chat_id) = row;
    let state = match (state.as_str(), chat_id) {
        (PENDING, _) => UploadState::Pending,
        (ATTACHED, Some(chat_id)) => UploadState::Attached(chatmesh_cql::id(chat_id)),
        (RECLAIMING, _) => UploadState::Reclaiming,
        (other, chat_id) => {
            return Err(StoreError::Backend(format!("upload {upload_id}: state {other:?} with chat {chat_id:?}")));
        }
    };
    Ok(UploadRecord {
        upload_id,
        uploader_id: chatmesh_cql::id(uploader_id),
        channel_id: chatmesh_cql::id(channel_id),
        file_name,
        content_type,
        size_bytes: size_bytes.max(0) as u64,
        created_at_ms: created_at_ms.max(0) as u64,
        state,
    })
}

/// Records an upload (as given: pending) with its index entries. Creating an upload that
/// exists already (a retry) leaves it as it is.
pub(super) async fn create_upload(cql: &Cql, upload: UploadRecord) -> Result<(), StoreError> {
    let (id, hour) = (upload.upload_id, hour_of(unix_ms_of(upload.upload_id)));
    // why: the index entries first, so a record is always found by the sweeps
    let entries = vec![
        (&PUT_BY_CHANNEL, values![upload.channel_id, id]),
        (&PUT_QUEUE_HOUR, values![PENDING_INDEX, hour]),
        (&PUT_PENDING, values![hour, id]),
    ];
    cql.batch(BatchKind::Logged, entries).await.map_err(backend)?;
    let (state, chat_id) = state_columns(upload.state);
    let record = values![
        id,
        upload.uploader_id,
        upload.channel_id,
        upload.file_name,
        upload.content_type,
        upload.size_bytes,
        upload.created_at_ms,
        state,
        chat_id
    ];
    cql.lwt(&PUT_UPLOAD, record).await.map_err(backend)?;
    Ok(())
}

/// The upload, if it is known.
pub(super) async fn get_upload(cql: &Cql, upload_id: u64) -> Result<Option<UploadRecord>, StoreError> {
    let row: Option<UploadRow> = cql.row(&GET_UPLOAD, values![upload_id]).await.map_err(backend)?;
    row.map(|row| decode(upload_id, row)).transpose()
}

/// Attaches `uploader`'s pending uploads in `channel_id` to `chat_id`, all or none, before the
/// chat is written. An upload already attached to `chat_id` counts as attached: another process
/// finishing the same keyed send (same chat id) got there first, and that chat may be written
/// by now, so nothing is handed back then. `Ok(None)`: all attached. `Ok(Some(id))`: that
/// upload is not the uploader's pending upload in this channel (another's, another channel's,
/// attached elsewhere, expired, unknown, or listed twice); the ones attached before it are
/// handed back. On an error the ones this call attached are handed back as far as possible.
pub(super) async fn claim(
    cql: &Cql,
    uploader: u64,
    channel_id: u64,
    upload_ids: &[u64],
    chat_id: u64,
) -> Result<Option<u64>, StoreError> {
    // why: only what this call attached is handed back; one attached to `chat_id` by another
    // process finishing the same send stays (that chat may be written)
    let mut taken = Vec::with_capacity(upload_ids.len());
    for (n, upload_id) in upload_ids.iter().enumerate() {
        let attach = values![ATTACHED, chat_id, *upload_id, PENDING, uploader, channel_id];
        match cql.lwt(&ATTACH, attach).await {
            Ok(true) => taken.push(*upload_id),
            Ok(false) if attached_to(cql, *upload_id, chat_id, &upload_ids[..n]).await? => {}
            Ok(false) => {
                unclaim(cql, &taken, chat_id).await?;
                return Ok(Some(*upload_id));
            }
            Err(e) => {
                // why: the outcome of this one is unknown: hand it back too (a no-op if not applied)
                taken.push(*upload_id);
                if let Err(undo) = unclaim(cql, &taken, chat_id).await {
                    tracing::warn!(error = %undo, chat_id, "uploads claimed for a chat not written stay attached");
                }
                return Err(backend(e));
            }
        }
    }
    Ok(None)
}

/// Whether a refused attach found the upload attached to `chat_id` already (and not because it
/// is listed twice: `before` are the ones this claim took).
async fn attached_to(cql: &Cql, upload_id: u64, chat_id: u64, before: &[u64]) -> Result<bool, StoreError> {
    if before.contains(&upload_id) {
        return Ok(false);
    }
    // why: written only by lightweight transactions, and the refused one settled any in progress
    Ok(get_upload(cql, upload_id).await?.is_some_and(|u| u.state == UploadState::Attached(chat_id)))
}

/// Hands uploads attached to `chat_id` back (pending). Only for a chat known not to be written
/// (after a timeout the write may have landed: then the claim must stay). Uploads not attached
/// to that chat are left as they are.
pub(super) async fn unclaim(cql: &Cql, upload_ids: &[u64], chat_id: u64) -> Result<(), StoreError> {
    for upload_id in upload_ids {
        cql.lwt(&DETACH, values![PENDING, Option::<u64>::None, *upload_id, ATTACHED, chat_id])
            .await
            .map_err(backend)?;
    }
    Ok(())
}

type Writes = Vec<(&'static Statement, Vec<Value>)>;

/// Queues uploads for reclaiming in one hour, listing that hour (once per queue) before its
/// first entry, so the sweep always finds an entry.
struct ReclaimQueue {
    hour: i64,
    listed: bool,
}

impl ReclaimQueue {
    /// The queue of the hour of unix milliseconds `now`.
    fn at(now: u64) -> Self {
        ReclaimQueue { hour: hour_of(now), listed: false }
    }

    async fn push(&mut self, cql: &Cql, upload_id: u64) -> Result<(), StoreError> {
        if !self.listed {
            cql.execute(&PUT_QUEUE_HOUR, values![RECLAIM, self.hour]).await.map_err(backend)?;
            self.listed = true;
        }
        cql.execute(&QUEUE_RECLAIM, values![self.hour, upload_id]).await.map_err(backend)
    }
}

/// The writes queueing a retracted chat's uploads for reclaiming in `hour` (of the retraction's
/// event id): put them in the retraction's logged batch so the release is as durable as the
/// tombstone; [`release_for_chat`] after the batch (or the next sweep) then detaches them.
pub(super) fn release_writes(chat: &ChatRecord, hour: i64) -> Writes {
    if chat.attachments.is_empty() {
        return Vec::new();
    }
    let mut writes = vec![(&PUT_QUEUE_HOUR, values![RECLAIM, hour])];
    writes.extend(release_entries(chat, hour));
    writes
}

fn release_entries(chat: &ChatRecord, hour: i64) -> Writes {
    chat.attachments.iter().map(|a| (&QUEUE_RELEASE, values![hour, a.upload_id, chat.chat_id])).collect()
}

/// Releases the uploads of a retracted chat (`chat` as it was, with its attachments): they can
/// no longer be attached and their objects are to be deleted. Call it once the retraction is
/// written (with the `hour` its batch queued them in), or before, accepting that a failed
/// retraction loses the files; queued first, so an interruption is finished by the next sweep.
pub(super) async fn release_for_chat(cql: &Cql, chat: &ChatRecord, hour: i64) -> Result<(), StoreError> {
    if chat.attachments.is_empty() {
        return Ok(());
    }
    cql.execute(&PUT_QUEUE_HOUR, values![RECLAIM, hour]).await.map_err(backend)?;
    // why: one partition (the hour's), so one unlogged batch is atomic
    cql.batch(BatchKind::Unlogged, release_entries(chat, hour)).await.map_err(backend)?;
    for attachment in &chat.attachments {
        let detach = values![RECLAIMING, Option::<u64>::None, attachment.upload_id, ATTACHED, chat.chat_id];
        cql.lwt(&DETACH, detach).await.map_err(backend)?;
    }
    Ok(())
}

/// The writes queueing a deleted channel's uploads for release in `hour` (of its
/// `channel.deleted` event): put them in that event's logged batch
/// (`change_feed::channel_deleted_writes` does).
pub(super) fn channel_release_writes(channel_id: u64, hour: i64) -> Writes {
    vec![(&PUT_QUEUE_HOUR, values![CHANNEL_RELEASE, hour]), (&QUEUE_CHANNEL, values![hour, channel_id])]
}

/// Releases every upload of a deleted channel (pending or attached): they turn 'reclaiming' and
/// are queued for their objects' deletion (in the hour of `now`); then the channel leaves the
/// queue (its entry in `queued_hour`). Idempotent: call it after the batch of `channel.deleted`;
/// the sweep calls it again for a channel still queued.
pub(super) async fn release_channel(cql: &Cql, now: u64, channel_id: u64, queued_hour: i64) -> Result<(), StoreError> {
    let mut queue = ReclaimQueue::at(now);
    let mut after = i64::MIN;
    loop {
        let rows: Vec<(i64,)> = cql.rows(&BY_CHANNEL, values![channel_id, after, page(PAGE)]).await.map_err(backend)?;
        for (id,) in &rows {
            let upload_id = chatmesh_cql::id(*id);
            let Some(upload) = get_upload(cql, upload_id).await? else { continue };
            if upload.state == UploadState::Reclaiming {
                continue;
            }
            let release = values![RECLAIMING, Option::<u64>::None, upload_id];
            if cql.lwt(&RELEASE, release).await.map_err(backend)? {
                queue.push(cql, upload_id).await?;
            }
        }
        match rows.last() {
            Some((last,)) if rows.len() == PAGE => after = *last,
            _ => break,
        }
    }
    // why: nothing reads a deleted channel's list again; one partition tombstone
    cql.execute(&DROP_BY_CHANNEL, values![channel_id]).await.map_err(backend)?;
    cql.execute(&DELETE_QUEUED_CHANNEL, values![queued_hour, channel_id]).await.map_err(backend)
}

/// Marks for reclaiming up to `limit` uploads still pending whose ids were minted at or before
/// `before_ms` (so they can no longer be attached); returns how many. `now`: the hour they are
/// queued in.
pub(super) async fn expire_uploads(cql: &Cql, now: u64, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
    if limit == 0 {
        return Ok(0);
    }
    let last = last_id_at(before_ms);
    let mut walk = Expiry { cql, queue: ReclaimQueue::at(now), last, limit, marked: 0 };
    // the index before migration 0005, by day, until every day of it is walked
    let last_day = day_of(last as u64);
    let days: Vec<(i64,)> =
        cql.rows(&LEGACY_PENDING_DAYS, values![SHARD, last_day, QUEUE_PAGE]).await.map_err(backend)?;
    for (day,) in days {
        if walk.partition(&LEGACY_PENDING_UPLOADS, &LEGACY_TRIM_PENDING, day).await? {
            return Ok(walk.marked);
        }
        // why: a day wholly before the cutoff gets no more entries (ids are minted now)
        if day < last_day {
            cql.execute(&LEGACY_DELETE_PENDING_DAY, values![SHARD, day]).await.map_err(backend)?;
        }
    }
    let last_hour = hour_of(unix_ms_of(last as u64));
    for hour in queue_hours(cql, PENDING_INDEX).await?.into_iter().take_while(|hour| *hour <= last_hour) {
        if walk.partition(&PENDING_UPLOADS, &TRIM_PENDING, hour).await? {
            return Ok(walk.marked);
        }
        // why: likewise for an hour; its partition is never read again
        if hour < last_hour {
            cql.execute(&DELETE_QUEUE_HOUR, values![PENDING_INDEX, hour]).await.map_err(backend)?;
        }
    }
    Ok(walk.marked)
}

/// One expiry sweep: the uploads it releases are queued in `queue`.
struct Expiry<'a> {
    cql: &'a Cql,
    queue: ReclaimQueue,
    /// The cutoff: the largest upload id to expire.
    last: i64,
    limit: usize,
    marked: usize,
}

impl Expiry<'_> {
    /// Walks one partition of a pending index (`key`: its hour, or its day before migration 0005)
    /// up to the cutoff in pages, expiring what is still pending and trimming what it walked with
    /// one range delete per page; returns whether the limit is reached.
    async fn partition(
        &mut self,
        list: &'static Statement,
        trim: &'static Statement,
        key: i64,
    ) -> Result<bool, StoreError> {
        let cql = self.cql;
        loop {
            let rows: Vec<(i64,)> = cql.rows(list, values![key, self.last, page(PAGE)]).await.map_err(backend)?;
            let mut walked = None;
            for (id,) in &rows {
                if expire_one(cql, &mut self.queue, chatmesh_cql::id(*id)).await? {
                    self.marked += 1;
                }
                walked = Some(*id);
                if self.marked == self.limit {
                    break;
                }
            }
            if let Some(walked) = walked {
                cql.execute(trim, values![key, walked]).await.map_err(backend)?;
            }
            if self.marked == self.limit {
                return Ok(true);
            }
            if rows.len() < PAGE {
                return Ok(false);
            }
        }
    }
}

/// Expires one indexed upload if it is still pending; true when this call did.
async fn expire_one(cql: &Cql, queue: &mut ReclaimQueue, upload_id: u64) -> Result<bool, StoreError> {
    let Some(upload) = get_upload(cql, upload_id).await? else { return Ok(false) };
    match upload.state {
        UploadState::Pending => {
            if !cql.lwt(&EXPIRE, values![RECLAIMING, upload_id, PENDING]).await.map_err(backend)? {
                // attached (or expired by another sweep) meanwhile
                return Ok(false);
            }
            queue.push(cql, upload_id).await?;
            Ok(true)
        }
        UploadState::Reclaiming => {
            // why: an earlier sweep may have stopped between turning it and queueing it
            queue.push(cql, upload_id).await?;
            Ok(false)
        }
        UploadState::Attached(_) => Ok(false),
    }
}

/// The listed hours of `queue`, oldest first.
async fn queue_hours(cql: &Cql, queue: &str) -> Result<Vec<i64>, StoreError> {
    let rows: Vec<(i64,)> = cql.rows(&QUEUE_HOURS, values![queue, QUEUE_PAGE]).await.map_err(backend)?;
    Ok(rows.into_iter().map(|(hour,)| hour).collect())
}

/// Drops `hour`, found empty, from `queue`'s hours once it ended more than an hour ago: a write
/// queued in it may still land a little after it ended (a retry, a batchlog replay), and would be
/// shadowed by the delete if it landed later than that.
async fn close_hour(cql: &Cql, queue: &str, hour: i64, now: u64) -> Result<(), StoreError> {
    if hour + 2 > hour_of(now) {
        return Ok(());
    }
    cql.execute(&DELETE_QUEUE_HOUR, values![queue, hour]).await.map_err(backend)
}

/// Moves what the queues before migration 0005 (one partition each, written by processes of
/// earlier versions) still hold into the hourly queues, in the hour of `now`.
async fn drain_legacy_queues(cql: &Cql, now: u64) -> Result<(), StoreError> {
    let hour = hour_of(now);
    let channels: Vec<(i64,)> = cql.rows(&LEGACY_QUEUED_CHANNELS, values![SHARD, QUEUE_PAGE]).await.map_err(backend)?;
    for (channel,) in channels {
        let mut moved = channel_release_writes(chatmesh_cql::id(channel), hour);
        moved.push((&LEGACY_DELETE_QUEUED_CHANNEL, values![SHARD, channel]));
        cql.batch(BatchKind::Logged, moved).await.map_err(backend)?;
    }
    let uploads: Vec<(i64, Option<i64>)> =
        cql.rows(&LEGACY_RECLAIMABLE, values![SHARD, QUEUE_PAGE]).await.map_err(backend)?;
    for (upload_id, from_chat) in uploads {
        let entry = match from_chat {
            Some(chat_id) => (&QUEUE_RELEASE, values![hour, upload_id, chat_id]),
            None => (&QUEUE_RECLAIM, values![hour, upload_id]),
        };
        let moved =
            vec![(&PUT_QUEUE_HOUR, values![RECLAIM, hour]), entry, (&LEGACY_DELETE_RECLAIM, values![SHARD, upload_id])];
        cql.batch(BatchKind::Logged, moved).await.map_err(backend)?;
    }
    Ok(())
}

/// Up to `limit` uploads whose objects are to be deleted (abandoned, retracted, of a deleted
/// channel), by the hour they were queued in, then by id. Finishes the releases queued before:
/// deleted channels' uploads, and retracted chats' uploads still attached; drops entries of
/// uploads forgotten since. `now`: the current hour (releases are queued in it; hours an hour
/// past their end are dropped from the queues' lists once found empty).
pub(super) async fn reclaimable_uploads(cql: &Cql, now: u64, limit: usize) -> Result<Vec<UploadRecord>, StoreError> {
    drain_legacy_queues(cql, now).await?;
    for hour in queue_hours(cql, CHANNEL_RELEASE).await? {
        let channels: Vec<(i64,)> = cql.rows(&QUEUED_CHANNELS, values![hour, QUEUE_PAGE]).await.map_err(backend)?;
        for (channel,) in &channels {
            release_channel(cql, now, chatmesh_cql::id(*channel), hour).await?;
        }
        if channels.is_empty() {
            close_hour(cql, CHANNEL_RELEASE, hour, now).await?;
        }
    }
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    for hour in queue_hours(cql, RECLAIM).await? {
        let mut after = i64::MIN;
        let mut entries = 0;
        loop {
            let want = PAGE.min(limit - out.len());
            let rows: Vec<(i64, Option<i64>)> =
                cql.rows(&RECLAIMABLE, values![hour, after, page(want)]).await.map_err(backend)?;
            entries += rows.len();
            for (id, from_chat) in &rows {
                let upload_id = chatmesh_cql::id(*id);
                match reclaimable(cql, upload_id, from_chat.map(chatmesh_cql::id)).await? {
                    Some(upload) => out.push(upload),
                    // why: forgotten since, or never to be reclaimed: the entry is stale
                    None => cql.execute(&DELETE_RECLAIM, values![hour, upload_id]).await.map_err(backend)?,
                }
            }
            if out.len() == limit {
                return Ok(out);
            }
            match rows.last() {
                Some((last, _)) if rows.len() == want => after = *last,
                _ => break,
            }
        }
        if entries == 0 {
            close_hour(cql, RECLAIM, hour, now).await?;
        }
    }
    Ok(out)
}

/// The queued upload, turned 'reclaiming' if its retracted chat still holds it; None when the
/// entry is stale.
async fn reclaimable(cql: &Cql, upload_id: u64, from_chat: Option<u64>) -> Result<Option<UploadRecord>, StoreError> {
    let Some(mut upload) = get_upload(cql, upload_id).await? else { return Ok(None) };
    match upload.state {
        UploadState::Reclaiming => Ok(Some(upload)),
        UploadState::Attached(chat_id) if from_chat == Some(chat_id) => {
            let detach = values![RECLAIMING, Option::<u64>::None, upload_id, ATTACHED, chat_id];
            if !cql.lwt(&DETACH, detach).await.map_err(backend)? {
                // released meanwhile (by release_for_chat): read it again
                return Ok(get_upload(cql, upload_id).await?.filter(|u| u.state == UploadState::Reclaiming));
            }
            upload.state = UploadState::Reclaiming;
            Ok(Some(upload))
        }
        state => {
            tracing::warn!(upload_id, ?state, ?from_chat, "an upload queued for reclaiming is not released; dropped");
            Ok(None)
        }
    }
}

/// Forgets reclaimed uploads once their objects are gone: the record, then its channel's index
/// entry. Its queue and pending entries are left to the sweeps, which drop them as stale (a
/// delete here would not know the queue's hour, and the expiry sweep trims pending entries by
/// range anyway).
pub(super) async fn forget_uploads(cql: &Cql, upload_ids: Vec<u64>) -> Result<(), StoreError> {
    for upload_id in upload_ids {
        let Some(upload) = get_upload(cql, upload_id).await? else { continue };
        cql.lwt(&DELETE_UPLOAD, values![upload_id]).await.map_err(backend)?;
        cql.execute(&DELETE_BY_CHANNEL, values![upload.channel_id, upload_id]).await.map_err(backend)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use chatmesh_cql::{Call, MemoryCql};

    use super::*;
    use crate::{model::ChatKind, store::conformance};

    fn upload(upload_id: u64, channel_id: u64, uploader_id: u64) -> UploadRecord {
        conformance::upload(upload_id, channel_id, uploader_id, 1)
    }

    fn chat(chat_id: u64, uploads: &[u64]) -> ChatRecord {
        ChatRecord {
            chat_id,
            channel_id: 5,
            sender_id: 7,
            kind: ChatKind::Text,
            text: "f".into(),
            client_msg_id: String::new(),
            reply_to: 0,
            mentions: Vec::new(),
            announcement: None,
            body_hash: String::new(),
            created_at_ms: 1,
            edited_at_ms: None,
            retracted_at_ms: None,
            attachments: uploads.iter().map(|u| conformance::attached(*u)).collect(),
        }
    }

    const NEW: u64 = u64::MAX >> 1;

    /// The sweeps' clock: 2025-06-15T15:06:40Z.
    const NOW: u64 = 1_750_000_000_000;

    fn hour() -> i64 {
        hour_of(NOW)
    }

    // the queues before migration 0005, as processes of earlier versions wrote them
    static LEGACY_QUEUE_RECLAIM: Statement = statement!(
        "test.legacy_reclaim_put",
        idempotent,
        "INSERT INTO chat_uploads_reclaim (shard, upload_id, from_chat) VALUES (?, ?, ?)"
    );
    static LEGACY_PENDING_PUT: Statement = statement!(
        "test.legacy_pending_put",
        idempotent,
        "INSERT INTO chat_uploads_pending (day, upload_id) VALUES (?, ?)"
    );
    static LEGACY_PENDING_DAY_PUT: Statement = statement!(
        "test.legacy_pending_day_put",
        idempotent,
        "INSERT INTO chat_uploads_pending_days (shard, day) VALUES (?, ?)"
    );
    static LEGACY_QUEUE_CHANNEL: Statement = statement!(
        "test.legacy_channel_release_put",
        idempotent,
        "INSERT INTO chat_uploads_channel_releases (shard, channel_id) VALUES (?, ?)"
    );

    async fn state(cql: &Cql, upload_id: u64) -> Option<UploadState> {
        get_upload(cql, upload_id).await.unwrap().map(|u| u.state)
    }

    async fn reclaimable_ids(cql: &Cql) -> Vec<u64> {
        reclaimable_uploads(cql, NOW, 100).await.unwrap().iter().map(|u| u.upload_id).collect()
    }

    async fn setup(cql: &Cql) {
        for u in [upload(1, 5, 7), upload(2, 5, 7), upload(3, 5, 7), upload(4, 6, 7), upload(NEW, 5, 7)] {
            create_upload(cql, u).await.unwrap();
        }
    }

    #[tokio::test]
    async fn uploads_attach_once_to_their_uploaders_chat_and_are_reclaimed_when_released() {
        let cql = Cql::memory(MemoryCql::migrated());
        setup(&cql).await;
        assert_eq!(get_upload(&cql, 1).await.unwrap(), Some(upload(1, 5, 7)));
        assert_eq!(get_upload(&cql, 99).await.unwrap(), None);
        assert_eq!(claim(&cql, 8, 5, &[1], 100).await.unwrap(), Some(1), "another's");
        assert_eq!(claim(&cql, 7, 5, &[4], 100).await.unwrap(), Some(4), "another channel's");
        assert_eq!(claim(&cql, 7, 5, &[1, 99], 100).await.unwrap(), Some(99), "unknown");
        assert_eq!(state(&cql, 1).await, Some(UploadState::Pending), "handed back");
        assert_eq!(claim(&cql, 7, 5, &[3, 3], 100).await.unwrap(), Some(3), "listed twice");
        assert_eq!(state(&cql, 3).await, Some(UploadState::Pending), "handed back");
        assert_eq!(claim(&cql, 7, 5, &[1, 2], 100).await.unwrap(), None);
        assert_eq!(state(&cql, 1).await, Some(UploadState::Attached(100)));
        assert_eq!(claim(&cql, 7, 5, &[2], 101).await.unwrap(), Some(2), "attached once");

        // pending uploads minted before the cutoff are released; attached and newer ones are not
        assert_eq!(expire_uploads(&cql, NOW, 1_000_000, 100).await.unwrap(), 2, "3 and 4");
        assert_eq!(expire_uploads(&cql, NOW, 1_000_000, 100).await.unwrap(), 0, "once");
        assert_eq!(state(&cql, NEW).await, Some(UploadState::Pending));
        assert_eq!(claim(&cql, 7, 5, &[3], 101).await.unwrap(), Some(3), "expired");
        release_for_chat(&cql, &chat(100, &[1, 2]), hour()).await.unwrap();
        assert_eq!(state(&cql, 1).await, Some(UploadState::Reclaiming));
        let mut released = reclaimable_ids(&cql).await;
        released.sort_unstable();
        assert_eq!(released, vec![1, 2, 3, 4]);
        assert_eq!(reclaimable_uploads(&cql, NOW, 2).await.unwrap().len(), 2, "up to the limit");
        forget_uploads(&cql, released).await.unwrap();
        assert!(reclaimable_ids(&cql).await.is_empty());
        assert!(get_upload(&cql, 1).await.unwrap().is_none());
        assert_eq!(expire_uploads(&cql, NOW, u64::MAX, 100).await.unwrap(), 1, "the newest, at a far cutoff");
    }

    #[tokio::test]
    async fn expiry_stops_at_the_limit_and_resumes() {
        let cql = Cql::memory(MemoryCql::migrated());
        for id in 1..=(PAGE as u64 + 3) {
            create_upload(&cql, upload(id, 5, 7)).await.unwrap();
        }
        assert_eq!(expire_uploads(&cql, NOW, 1_000_000, 2).await.unwrap(), 2);
        assert_eq!(state(&cql, 3).await, Some(UploadState::Pending));
        assert_eq!(expire_uploads(&cql, NOW, 1_000_000, 1000).await.unwrap(), PAGE + 1, "the rest, over pages");
        assert_eq!(reclaimable_uploads(&cql, NOW, 1000).await.unwrap().len(), PAGE + 3);
        assert_eq!(expire_uploads(&cql, NOW, 1_000_000, 0).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_deleted_channel_releases_its_uploads() {
        let cql = Cql::memory(MemoryCql::migrated());
        create_upload(&cql, upload(1, 5, 7)).await.unwrap();
        create_upload(&cql, upload(2, 6, 7)).await.unwrap();
        create_upload(&cql, upload(3, 5, 7)).await.unwrap();
        assert_eq!(claim(&cql, 7, 5, &[3], 100).await.unwrap(), None);
        // queued with channel.deleted; the sweep releases it (as after a crash before release_channel)
        cql.batch(BatchKind::Logged, super::super::change_feed::channel_deleted_writes(5, hour())).await.unwrap();
        assert_eq!(reclaimable_ids(&cql).await, vec![1, 3]);
        assert_eq!(state(&cql, 3).await, Some(UploadState::Reclaiming), "attached ones too");
        assert_eq!(state(&cql, 2).await, Some(UploadState::Pending));
        // released once: the queue entry is gone
        let queued: Vec<(i64,)> = cql.rows(&QUEUED_CHANNELS, values![hour(), 10i32]).await.unwrap();
        assert!(queued.is_empty());
        release_channel(&cql, NOW, 5, hour()).await.unwrap();
        assert_eq!(reclaimable_ids(&cql).await, vec![1, 3]);
    }

    #[tokio::test]
    async fn an_interrupted_release_is_finished_by_the_sweep() {
        let cql = Cql::memory(MemoryCql::migrated());
        create_upload(&cql, upload(1, 5, 7)).await.unwrap();
        create_upload(&cql, upload(2, 5, 7)).await.unwrap();
        assert_eq!(claim(&cql, 7, 5, &[1], 100).await.unwrap(), None);
        // the retraction's batch queued it; the process stopped before detaching
        cql.batch(BatchKind::Logged, release_writes(&chat(100, &[1]), hour())).await.unwrap();
        assert_eq!(state(&cql, 1).await, Some(UploadState::Attached(100)));
        assert_eq!(reclaimable_ids(&cql).await, vec![1]);
        assert_eq!(state(&cql, 1).await, Some(UploadState::Reclaiming));
        // an expiry that turned an upload but did not queue it: the next sweep queues it
        cql.lwt(&EXPIRE, values![RECLAIMING, 2u64, PENDING]).await.unwrap();
        assert_eq!(reclaimable_ids(&cql).await, vec![1]);
        assert_eq!(expire_uploads(&cql, NOW, 1_000_000, 10).await.unwrap(), 0);
        assert_eq!(reclaimable_ids(&cql).await, vec![1, 2]);
        // stale entries (forgotten uploads, wrong chat) are dropped, not returned
        cql.execute(&QUEUE_RECLAIM, values![hour(), 9u64]).await.unwrap();
        forget_uploads(&cql, vec![1, 2]).await.unwrap();
        assert!(reclaimable_ids(&cql).await.is_empty());
        let left: Vec<(i64, Option<i64>)> = cql.rows(&RECLAIMABLE, values![hour(), i64::MIN, 10i32]).await.unwrap();
        assert!(left.is_empty());
    }

    #[tokio::test]
    async fn unclaim_hands_back_only_the_chats_uploads() {
        let cql = Cql::memory(MemoryCql::migrated());
        setup(&cql).await;
        assert_eq!(claim(&cql, 7, 5, &[1], 100).await.unwrap(), None);
        assert_eq!(claim(&cql, 7, 5, &[2], 101).await.unwrap(), None);
        unclaim(&cql, &[1, 2], 100).await.unwrap();
        assert_eq!(state(&cql, 1).await, Some(UploadState::Pending));
        assert_eq!(state(&cql, 2).await, Some(UploadState::Attached(101)));
    }

    #[test]
    fn days_and_cutoffs_hold_for_every_id() {
        assert_eq!(last_id_at(u64::MAX), i64::MAX);
        assert_eq!(last_id_at(0), max_id_at(0) as i64);
        for id in [0, 1, NEW, u64::MAX] {
            assert!(day_of(id) >= 19_723, "{id}");
        }
    }

    // golden: the calls of each operation, on a scene set up beforehand

    use chatmesh_cql::golden::taken;

    /// Uploads 1, 2, 3 and NEW in channel 5, 4 in channel 6 (all by 7); 1 and 2 attached to 100.
    async fn scene() -> (Cql, Arc<Mutex<Vec<Call>>>) {
        let memory = MemoryCql::migrated();
        let setup_cql = Cql::memory(memory.clone());
        setup(&setup_cql).await;
        assert_eq!(claim(&setup_cql, 7, 5, &[1, 2], 100).await.unwrap(), None);
        Cql::memory(memory).recording()
    }

    async fn create() -> Vec<Call> {
        let (cql, log) = Cql::memory(MemoryCql::migrated()).recording();
        create_upload(&cql, upload(1, 5, 7)).await.unwrap();
        taken(&log)
    }

    async fn get() -> Vec<Call> {
        let (cql, log) = scene().await;
        assert_eq!(state(&cql, 1).await, Some(UploadState::Attached(100)));
        taken(&log)
    }

    async fn claim_refused() -> Vec<Call> {
        let (cql, log) = scene().await;
        // 3 attaches, 4 is another channel's: 3 is handed back
        assert_eq!(claim(&cql, 7, 5, &[3, 4], 101).await.unwrap(), Some(4));
        assert_eq!(claim(&cql, 7, 5, &[3, NEW], 101).await.unwrap(), None);
        unclaim(&cql, &[3], 101).await.unwrap();
        taken(&log)
    }

    async fn expire() -> Vec<Call> {
        let (cql, log) = scene().await;
        // 3 was also indexed by day before migration 0005
        cql.execute(&LEGACY_PENDING_PUT, values![day_of(3), 3u64]).await.unwrap();
        cql.execute(&LEGACY_PENDING_DAY_PUT, values![SHARD, day_of(3)]).await.unwrap();
        taken(&log);
        // a cutoff a day after the uploads' time: their day and hour are walked whole and leave
        // the lists
        assert_eq!(expire_uploads(&cql, NOW, EPOCH_MS + DAY_MS, 100).await.unwrap(), 2, "3 and 4");
        taken(&log)
    }

    async fn release() -> Vec<Call> {
        let (cql, log) = scene().await;
        let retracted = chat(100, &[1, 2]);
        let _in_the_retraction_batch = release_writes(&retracted, hour());
        release_for_chat(&cql, &retracted, hour()).await.unwrap();
        taken(&log)
    }

    async fn channel_release() -> Vec<Call> {
        let (cql, log) = scene().await;
        cql.batch(BatchKind::Logged, channel_release_writes(6, hour())).await.unwrap();
        release_channel(&cql, NOW, 6, hour()).await.unwrap();
        taken(&log)
    }

    async fn reclaimable() -> Vec<Call> {
        let (cql, log) = scene().await;
        // channel 6 deleted (queued), 1 queued by a retraction not yet detached, 3 expired, 9
        // forgotten since; 2 queued by a retraction and channel 8 deleted before migration 0005
        // (the old queues); an hour of the queue emptied three hours ago
        cql.batch(BatchKind::Logged, channel_release_writes(6, hour())).await.unwrap();
        cql.batch(BatchKind::Logged, release_writes(&chat(100, &[1]), hour())).await.unwrap();
        cql.lwt(&EXPIRE, values![RECLAIMING, 3u64, PENDING]).await.unwrap();
        cql.execute(&QUEUE_RECLAIM, values![hour(), 3u64]).await.unwrap();
        cql.execute(&QUEUE_RECLAIM, values![hour(), 9u64]).await.unwrap();
        cql.execute(&LEGACY_QUEUE_RECLAIM, values![SHARD, 2u64, 100u64]).await.unwrap();
        cql.execute(&LEGACY_QUEUE_CHANNEL, values![SHARD, 8u64]).await.unwrap();
        cql.execute(&PUT_QUEUE_HOUR, values![RECLAIM, hour() - 3]).await.unwrap();
        taken(&log);
        assert_eq!(reclaimable_ids(&cql).await, vec![1, 2, 3, 4]);
        taken(&log)
    }

    async fn forget() -> Vec<Call> {
        let (cql, log) = scene().await;
        forget_uploads(&cql, vec![1, 9]).await.unwrap();
        taken(&log)
    }

    chatmesh_cql::golden_files!(
        prefix: "upload_",
        statements: super::STATEMENTS,
        also: [],
        [
        create => "create_upload",
        get => "get_upload",
        claim_refused => "claim",
        expire => "expire_uploads",
        release => "release_for_chat",
        channel_release => "release_channel",
        reclaimable => "reclaimable_uploads",
        forget => "forget_uploads",
        ]
    );
}
