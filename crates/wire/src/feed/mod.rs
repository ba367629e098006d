//! Validation of every feed-service request: each function checks one request type, names the
//! field it refuses, and returns the values the core works with; [`hashtags`] and [`mentions`]
//! read a status's text.
//!
//! A publish time is judged against the wall clock here; what needs more than the request is
//! the core's: whether a status exists and whether the caller may see it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chatmesh_api::feed::v1 as pb;
use tonic::Status;

use crate::{error::invalid_field, validate};

mod internal;
mod text;

pub use self::{internal::*, text::*};

/// Entries per page of the lists when the request asks for none.
pub const DEFAULT_PAGE: usize = 50;
/// Largest page of the lists.
pub const MAX_PAGE: usize = 100;
/// Trends per page when the request asks for none.
pub const DEFAULT_TRENDS: usize = 10;
/// Largest page of trends.
pub const MAX_TRENDS: usize = 100;
/// The first second a `google.protobuf.Timestamp` can name: 0001-01-01T00:00:00Z.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
/// The last second a `google.protobuf.Timestamp` can name: 9999-12-31T23:59:59Z.
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;
/// How far ahead of now a status may be scheduled: the contract's `timestamp.within`.
pub const MAX_SCHEDULE_AHEAD: Duration = Duration::from_secs(365 * 24 * 60 * 60);
const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// A valid `CreateStatusRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStatus {
    /// As written (see [`status_text`]); its tags and mentions are [`hashtags`] and [`mentions`].
    pub text: String,
    /// The status answered: a reply. `None`: a post.
    pub in_reply_to: Option<u64>,
    /// When to publish, in milliseconds since the epoch (rounded down): after the clock at
    /// validation, [`MAX_SCHEDULE_AHEAD`] after it at most; `None`: now.
    pub publish_at_ms: Option<u64>,
}

/// Checks a `CreateStatusRequest`: the text, the status replied to, the publish time (in the
/// future, at most [`MAX_SCHEDULE_AHEAD`] from the clock now).
pub fn create_status(request: &pb::CreateStatusRequest) -> Result<NewStatus, Status> {
    let text = status_text("text", &request.text)?;
    let in_reply_to = optional_id("in_reply_to_status_id", &request.in_reply_to_status_id)?;
    let publish_at_ms =
        request.publish_time.as_ref().map(|at| publish_time("publish_time", at, SystemTime::now())).transpose()?;
    Ok(NewStatus { text, in_reply_to, publish_at_ms })
}

/// A valid request naming one status and nothing else: GetStatus, DeleteStatus, RepostStatus,
/// UndoRepost, LikeStatus and UnlikeStatus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRef {
    pub status_id: u64,
}

fn status_ref(status_id: &str) -> Result<StatusRef, Status> {
    Ok(StatusRef { status_id: validate::id("status_id", status_id)? })
}

/// Checks a `GetStatusRequest`: the status id is required.
pub fn get_status(request: &pb::GetStatusRequest) -> Result<StatusRef, Status> {
    status_ref(&request.status_id)
}

/// Checks a `DeleteStatusRequest`: the status id is required.
pub fn delete_status(request: &pb::DeleteStatusRequest) -> Result<StatusRef, Status> {
    status_ref(&request.status_id)
}

/// Checks a `RepostStatusRequest`: the status id is required.
pub fn repost_status(request: &pb::RepostStatusRequest) -> Result<StatusRef, Status> {
    status_ref(&request.status_id)
}

/// Checks an `UndoRepostRequest`: the status id is required.
pub fn undo_repost(request: &pb::UndoRepostRequest) -> Result<StatusRef, Status> {
    status_ref(&request.status_id)
}

/// Checks a `LikeStatusRequest`: the status id is required.
pub fn like_status(request: &pb::LikeStatusRequest) -> Result<StatusRef, Status> {
    status_ref(&request.status_id)
}

/// Checks an `UnlikeStatusRequest`: the status id is required.
pub fn unlike_status(request: &pb::UnlikeStatusRequest) -> Result<StatusRef, Status> {
    status_ref(&request.status_id)
}

/// One page of a list, newest first: ListHomeTimeline and ListScheduledStatuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// The decoded page token: the page holds the entries older than this; `None`: the first page.
    pub before: Option<u64>,
    /// Entries on the page: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when the request asked for none.
    pub limit: usize,
}

/// The page size, clamped, then the page token (the last check of a list request).
fn page(page_size: i32, page_token: &str) -> Result<Page, Status> {
    let limit = crate::page::page_size(page_size, DEFAULT_PAGE, MAX_PAGE);
    Ok(Page { before: crate::page::decode_token(page_token)?, limit })
}

/// Checks a `ListHomeTimelineRequest`: the page.
pub fn list_home_timeline(request: &pb::ListHomeTimelineRequest) -> Result<Page, Status> {
    page(request.page_size, &request.page_token)
}

/// Checks a `ListScheduledStatusesRequest`: the page.
pub fn list_scheduled_statuses(request: &pb::ListScheduledStatusesRequest) -> Result<Page, Status> {
    page(request.page_size, &request.page_token)
}

/// A valid ListStatusReplies, ListStatusReposts or ListStatusLikes: one page of a status's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusPage {
    pub status_id: u64,
    /// As [`Page::before`].
    pub before: Option<u64>,
    /// As [`Page::limit`].
    pub limit: usize,
}

fn status_page(status_id: &str, page_size: i32, page_token: &str) -> Result<StatusPage, Status> {
    let status_id = validate::id("status_id", status_id)?;
    let Page { before, limit } = page(page_size, page_token)?;
    Ok(StatusPage { status_id, before, limit })
}

/// Checks a `ListStatusRepliesRequest`: the status id, then the page.
pub fn list_status_replies(request: &pb::ListStatusRepliesRequest) -> Result<StatusPage, Status> {
    status_page(&request.status_id, request.page_size, &request.page_token)
}

/// Checks a `ListStatusRepostsRequest`: the status id, then the page.
pub fn list_status_reposts(request: &pb::ListStatusRepostsRequest) -> Result<StatusPage, Status> {
    status_page(&request.status_id, request.page_size, &request.page_token)
}

/// Checks a `ListStatusLikesRequest`: the status id, then the page.
pub fn list_status_likes(request: &pb::ListStatusLikesRequest) -> Result<StatusPage, Status> {
    status_page(&request.status_id, request.page_size, &request.page_token)
}

/// A valid ListUserStatuses or ListUserLikes: one page of a user's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserPage {
    pub user_id: u64,
    /// As [`Page::before`].
    pub before: Option<u64>,
    /// As [`Page::limit`].
    pub limit: usize,
}

fn user_page(user_id: &str, page_size: i32, page_token: &str) -> Result<UserPage, Status> {
    let user_id = validate::id("user_id", user_id)?;
    let Page { before, limit } = page(page_size, page_token)?;
    Ok(UserPage { user_id, before, limit })
}

/// Checks a `ListUserStatusesRequest`: the user id, then the page.
pub fn list_user_statuses(request: &pb::ListUserStatusesRequest) -> Result<UserPage, Status> {
    user_page(&request.user_id, request.page_size, &request.page_token)
}

/// Checks a `ListUserLikesRequest`: the user id, then the page.
pub fn list_user_likes(request: &pb::ListUserLikesRequest) -> Result<UserPage, Status> {
    user_page(&request.user_id, request.page_size, &request.page_token)
}

/// A valid `ListTagStatusesRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPage {
    /// The tag's key ([`tag_key`]: lower case, no `#`), as [`hashtags`] finds it in a text.
    pub tag: String,
    /// As [`Page::before`].
    pub before: Option<u64>,
    /// As [`Page::limit`].
    pub limit: usize,
}

/// Checks a `ListTagStatusesRequest`: the tag, then the page.
pub fn list_tag_statuses(request: &pb::ListTagStatusesRequest) -> Result<TagPage, Status> {
    let tag = tag("tag", &request.tag)?;
    let Page { before, limit } = page(request.page_size, &request.page_token)?;
    Ok(TagPage { tag, before, limit })
}

/// A valid `ListTrendsRequest`: trends are a ranked snapshot, so a page is an offset into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrendsPage {
    /// How many trends the earlier pages held (the decoded page token; 0 for the first page).
    pub offset: usize,
    /// Trends on the page: 1 to [`MAX_TRENDS`], [`DEFAULT_TRENDS`] when the request asked for none.
    pub limit: usize,
}

/// Checks a `ListTrendsRequest`: the page size, clamped, then the page token.
pub fn list_trends(request: &pb::ListTrendsRequest) -> Result<TrendsPage, Status> {
    let limit = crate::page::page_size(request.page_size, DEFAULT_TRENDS, MAX_TRENDS);
    let offset = crate::page::decode_token(&request.page_token)?.unwrap_or(0);
    Ok(TrendsPage { offset: usize::try_from(offset).unwrap_or(usize::MAX), limit })
}

/// An id that may be left empty.
fn optional_id(field: &str, value: &str) -> Result<Option<u64>, Status> {
    if value.is_empty() { Ok(None) } else { validate::id(field, value).map(Some) }
}

/// A publish time as milliseconds since the epoch (rounded down), for a valid
/// `google.protobuf.Timestamp` (seconds within the years 1 to 9999, nanos 0 to 999,999,999)
/// after `now` and [`MAX_SCHEDULE_AHEAD`] after it at most.
fn publish_time(field: &str, at: &prost_types::Timestamp, now: SystemTime) -> Result<u64, Status> {
    if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&at.seconds) || !(0..1_000_000_000).contains(&at.nanos)
    {
        return Err(invalid_field(field, "must be a time from year 1 to 9999, with nanos from 0 to 999,999,999"));
    }
    let at = i128::from(at.seconds) * NANOS_PER_SECOND + i128::from(at.nanos);
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX),
    };
    if at <= now {
        return Err(invalid_field(field, "must be in the future"));
    }
    if at - now > i128::try_from(MAX_SCHEDULE_AHEAD.as_nanos()).expect("365 days of nanoseconds fit an i128") {
        let days = MAX_SCHEDULE_AHEAD.as_secs() / (24 * 60 * 60);
        return Err(invalid_field(field, format!("must be at most {days} days ahead")));
    }
    // why: a time before the year 10000 fits a u64 of milliseconds; one before 1970 (after a
    // clock set before 1970) counts as 1970.
    Ok(u64::try_from(at.div_euclid(1_000_000)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use prost_types::Timestamp;

    use super::*;
    use crate::{error::refuses, page::encode_token, registry::RPCS};

    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn post(text: &str) -> pb::CreateStatusRequest {
        pb::CreateStatusRequest { text: text.into(), ..Default::default() }
    }

    /// A request scheduled `from_now` after the clock now (`before`: before it).
    fn scheduled_in(from_now: Duration, before: bool) -> pb::CreateStatusRequest {
        let now = SystemTime::now();
        let at = if before { now - from_now } else { now + from_now };
        pb::CreateStatusRequest { publish_time: Some(at.into()), ..post("later") }
    }

    #[test]
    fn a_status_is_a_post_a_reply_or_scheduled() {
        let posted = create_status(&post("Hello #Rust, @ada!")).unwrap();
        assert_eq!(posted, NewStatus { text: "Hello #Rust, @ada!".into(), in_reply_to: None, publish_at_ms: None });
        let reply = pb::CreateStatusRequest { in_reply_to_status_id: "42".into(), ..post("yes") };
        assert_eq!(create_status(&reply).unwrap().in_reply_to, Some(42));
        let request = scheduled_in(HOUR, false);
        let at = request.publish_time.unwrap();
        let ms = u64::try_from(at.seconds * 1000 + i64::from(at.nanos / 1_000_000)).unwrap();
        assert_eq!(create_status(&request).unwrap().publish_at_ms, Some(ms), "rounded down to the millisecond");
    }

    #[test]
    fn a_publish_time_is_in_the_future_and_at_most_365_days_ahead_of_the_clock() {
        // why: an hour or a day from either end, so the clock moving on during the test changes nothing.
        let cases = [
            ("an hour ago", scheduled_in(HOUR, true), false),
            ("a year ago", scheduled_in(366 * DAY, true), false),
            ("in an hour", scheduled_in(HOUR, false), true),
            ("in 364 days", scheduled_in(364 * DAY, false), true),
            ("in 366 days", scheduled_in(366 * DAY, false), false),
        ];
        for (name, request, accepted) in cases {
            if accepted {
                let status = create_status(&request).unwrap_or_else(|e| panic!("{name}: refused: {e:?}"));
                assert!(status.publish_at_ms.is_some(), "{name}");
            } else {
                refuses(create_status(&request), "publish_time");
            }
        }
    }

    #[test]
    fn a_publish_time_is_judged_to_the_nanosecond_against_the_clock_reading() {
        let now = SystemTime::UNIX_EPOCH + Duration::new(1_800_000_000, 500);
        let at = |seconds, nanos| Timestamp { seconds, nanos };
        let ahead = 365 * 24 * 3600;
        assert_eq!(publish_time("publish_time", &at(1_800_000_000, 501), now).unwrap(), 1_800_000_000_000);
        let last = publish_time("publish_time", &at(1_800_000_000 + ahead, 500), now).unwrap();
        assert_eq!(last, (1_800_000_000 + ahead as u64) * 1000, "365 days ahead to the nanosecond");
        let future = refuses(publish_time("publish_time", &at(1_800_000_000, 500), now), "publish_time");
        assert!(future.ends_with("must be in the future"), "{future}");
        refuses(publish_time("publish_time", &at(MIN_TIMESTAMP_SECONDS, 0), now), "publish_time");
        let far = refuses(publish_time("publish_time", &at(1_800_000_000 + ahead, 501), now), "publish_time");
        assert!(far.ends_with("must be at most 365 days ahead"), "{far}");
        refuses(publish_time("publish_time", &at(MAX_TIMESTAMP_SECONDS, 999_999_999), now), "publish_time");
    }

    #[test]
    fn create_status_refusals_name_their_field_in_order() {
        let at = |seconds, nanos| Some(Timestamp { seconds, nanos });
        let cases = [
            (post(""), "text"),
            (post(" \n\t"), "text"),
            (post("a\u{0}"), "text"),
            (post(&"x".repeat(MAX_TEXT + 1)), "text"),
            (pb::CreateStatusRequest { in_reply_to_status_id: "x".into(), ..post("") }, "text"),
            (pb::CreateStatusRequest { in_reply_to_status_id: "0".into(), ..post("hi") }, "in_reply_to_status_id"),
            (pb::CreateStatusRequest { in_reply_to_status_id: "01".into(), ..post("hi") }, "in_reply_to_status_id"),
            (pb::CreateStatusRequest { publish_time: at(1, -1), ..post("hi") }, "publish_time"),
            (pb::CreateStatusRequest { publish_time: at(1, 1_000_000_000), ..post("hi") }, "publish_time"),
            (pb::CreateStatusRequest { publish_time: at(MAX_TIMESTAMP_SECONDS + 1, 0), ..post("hi") }, "publish_time"),
            (pb::CreateStatusRequest { publish_time: at(MIN_TIMESTAMP_SECONDS - 1, 0), ..post("hi") }, "publish_time"),
            (pb::CreateStatusRequest { publish_time: at(i64::MAX, 0), ..post("hi") }, "publish_time"),
        ];
        for (request, field) in cases {
            refuses(create_status(&request), field);
        }
    }

    #[test]
    fn requests_naming_one_status_need_a_valid_status_id() {
        macro_rules! refs {
            ($($check:ident($request:ident)),* $(,)?) => {$(
                let valid = $check(&pb::$request { status_id: "42".into() });
                assert_eq!(valid.unwrap(), StatusRef { status_id: 42 }, stringify!($check));
                refuses($check(&pb::$request::default()), "status_id");
                refuses($check(&pb::$request { status_id: "042".into() }), "status_id");
                refuses($check(&pb::$request { status_id: "10000000000000000000".into() }), "status_id");
            )*};
        }
        refs!(
            get_status(GetStatusRequest),
            delete_status(DeleteStatusRequest),
            repost_status(RepostStatusRequest),
            undo_repost(UndoRepostRequest),
            like_status(LikeStatusRequest),
            unlike_status(UnlikeStatusRequest),
        );
    }

    #[test]
    fn lists_check_their_subject_then_clamp_the_page_and_decode_the_token() {
        macro_rules! lists {
            ($($check:ident($request:ident { $field:ident }) -> $page:ident),* $(,)?) => {$(
                let request = |id: &str, page_size, page_token: &str| pb::$request {
                    $field: id.into(),
                    page_size,
                    page_token: page_token.into(),
                };
                let first = $check(&request("7", 0, "")).unwrap();
                assert_eq!(first, $page { $field: 7, before: None, limit: DEFAULT_PAGE }, stringify!($check));
                let next = $check(&request("7", 1000, &encode_token(99))).unwrap();
                assert_eq!(next, $page { $field: 7, before: Some(99), limit: MAX_PAGE }, stringify!($check));
                assert_eq!($check(&request("7", -5, "")).unwrap().limit, DEFAULT_PAGE);
                assert_eq!($check(&request("7", 3, "")).unwrap().limit, 3);
                refuses($check(&request("", 10, "")), stringify!($field));
                refuses($check(&request("x", 10, "garbage")), stringify!($field));
                refuses($check(&request("7", 10, "99")), "page_token");
            )*};
        }
        lists!(
            list_status_replies(ListStatusRepliesRequest { status_id }) -> StatusPage,
            list_status_reposts(ListStatusRepostsRequest { status_id }) -> StatusPage,
            list_status_likes(ListStatusLikesRequest { status_id }) -> StatusPage,
            list_user_statuses(ListUserStatusesRequest { user_id }) -> UserPage,
            list_user_likes(ListUserLikesRequest { user_id }) -> UserPage,
        );
    }

    #[test]
    fn the_callers_lists_clamp_the_page_and_refuse_foreign_tokens() {
        let home = pb::ListHomeTimelineRequest { page_size: 0, page_token: encode_token(5) };
        assert_eq!(list_home_timeline(&home).unwrap(), Page { before: Some(5), limit: DEFAULT_PAGE });
        refuses(list_home_timeline(&pb::ListHomeTimelineRequest { page_token: "x".into(), ..home }), "page_token");
        let scheduled = pb::ListScheduledStatusesRequest { page_size: 500, page_token: String::new() };
        assert_eq!(list_scheduled_statuses(&scheduled).unwrap(), Page { before: None, limit: MAX_PAGE });
        let foreign = pb::ListScheduledStatusesRequest { page_token: "cm1:5".into(), ..scheduled };
        refuses(list_scheduled_statuses(&foreign), "page_token");
    }

    #[test]
    fn a_tag_list_names_its_tag_as_the_texts_list_it() {
        let request = |tag: &str| pb::ListTagStatusesRequest { tag: tag.into(), ..Default::default() };
        let valid = list_tag_statuses(&request("#Rust")).unwrap();
        assert_eq!(valid, TagPage { tag: "rust".into(), before: None, limit: DEFAULT_PAGE });
        assert_eq!(list_tag_statuses(&request("Straße")).unwrap().tag, hashtags("#STRASSE #Straße")[1]);
        for bad in ["", "#", "rust lang", "rust/lang", "##rust", "rust?"] {
            refuses(list_tag_statuses(&request(bad)), "tag");
        }
        let garbage = pb::ListTagStatusesRequest { page_token: "x".into(), ..request("rust") };
        refuses(list_tag_statuses(&garbage), "page_token");
    }

    #[test]
    fn trends_pages_are_offsets_into_the_snapshot() {
        let request = |page_size, page_token: String| pb::ListTrendsRequest { page_size, page_token };
        assert_eq!(list_trends(&request(0, String::new())).unwrap(), TrendsPage { offset: 0, limit: DEFAULT_TRENDS });
        assert_eq!(
            list_trends(&request(1000, encode_token(20))).unwrap(),
            TrendsPage { offset: 20, limit: MAX_TRENDS }
        );
        assert_eq!(list_trends(&request(-1, String::new())).unwrap().limit, DEFAULT_TRENDS);
        refuses(list_trends(&request(0, "20".into())), "page_token");
    }

    #[test]
    fn every_feed_rpc_is_registered_and_answers_any_bytes_with_a_verdict_naming_a_field() {
        let feed: Vec<_> = RPCS.iter().filter(|rpc| rpc.path.starts_with("/chatmesh.feed.v1.FeedService/")).collect();
        let service = chatmesh_api::descriptor_pool().get_service_by_name("chatmesh.feed.v1.FeedService").unwrap();
        assert_eq!(feed.len(), service.methods().len());
        let samples: Vec<Vec<u8>> = vec![
            Vec::new(),
            vec![0xff],
            post("hi").encode_to_vec(),
            pb::GetStatusRequest { status_id: "1".into() }.encode_to_vec(),
            pb::ListTagStatusesRequest { tag: "#x".into(), page_size: 1, page_token: "x".into() }.encode_to_vec(),
        ];
        let mut state = 0x5851_f42d_4c95_7f2d_u64;
        let mut random = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u8
        };
        let noise: Vec<Vec<u8>> = (0..2_000).map(|i| (0..i % 64).map(|_| random()).collect()).collect();
        for rpc in feed {
            for bytes in samples.iter().chain(&noise) {
                if let Some(Err(status)) = (rpc.check)(bytes) {
                    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{}: {status:?}", rpc.path);
                    let field = status.message().split(": ").next().unwrap_or_default();
                    assert!(!field.is_empty() && !field.contains(' '), "{}: names no field: {status:?}", rpc.path);
                }
            }
        }
    }
}
