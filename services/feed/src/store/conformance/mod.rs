//! The conformance suite of [`FeedStore`], in one part per trait ([`statuses`], [`likes`],
//! [`timelines`], [`fanout`], [`schedule`], [`trends`]): every backend runs all of it unchanged
//! through `feed_store_suite!(constructor)`, where the constructor returns `(guard, store)`.
//! Cases take `&dyn FeedStore`; concurrent ones drive many borrowed calls at once on the test's
//! task. The fixtures here are public for the backends' own tests.

pub mod fanout;
pub mod likes;
pub mod schedule;
pub mod statuses;
pub mod timelines;
pub mod trends;

use std::{future::Future, pin::Pin, task::Poll};

use super::FeedStore;
use crate::model::{Counts, FanoutJob, ScheduledRecord, StatusKind, StatusRecord, Stored};

/// Larger than any list a case builds.
pub const ALL: usize = 1000;
/// The trend bucket of the fixtures' statuses.
pub const BUCKET: u64 = 480_000;

/// A post of `author_id` without tags.
pub fn post(status_id: u64, author_id: u64) -> StatusRecord {
    StatusRecord {
        status_id,
        author_id,
        kind: StatusKind::Post,
        text: format!("status {status_id}"),
        referenced_id: None,
        referenced_author_id: None,
        tags: Vec::new(),
        mentions: Vec::new(),
        created_at_ms: status_id,
        trend_bucket: BUCKET,
    }
}

/// A post carrying `tags`, counted in `bucket`.
pub fn tagged(status_id: u64, author_id: u64, tags: &[&str], bucket: u64) -> StatusRecord {
    StatusRecord {
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        trend_bucket: bucket,
        ..post(status_id, author_id)
    }
}

/// `author_id`'s reply to `to`.
pub fn reply(status_id: u64, author_id: u64, to: &StatusRecord) -> StatusRecord {
    StatusRecord {
        kind: StatusKind::Reply,
        referenced_id: Some(to.status_id),
        referenced_author_id: Some(to.author_id),
        ..post(status_id, author_id)
    }
}

/// `author_id`'s repost of `of`.
pub fn repost(status_id: u64, author_id: u64, of: &StatusRecord) -> StatusRecord {
    StatusRecord {
        kind: StatusKind::Repost,
        text: String::new(),
        referenced_id: Some(of.status_id),
        referenced_author_id: Some(of.author_id),
        ..post(status_id, author_id)
    }
}

/// The fan-out of `status` from its first follower page.
pub fn job(status: &StatusRecord) -> FanoutJob {
    FanoutJob { status_id: status.status_id, author_id: status.author_id, page_token: String::new(), pages_done: 0 }
}

/// `author_id`'s status scheduled for `publish_at_ms`.
pub fn scheduled(scheduled_id: u64, author_id: u64, publish_at_ms: u64) -> ScheduledRecord {
    ScheduledRecord {
        scheduled_id,
        author_id,
        text: format!("scheduled {scheduled_id}"),
        in_reply_to: None,
        publish_at_ms,
        created_at_ms: 1,
    }
}

/// One status as stored.
pub async fn stored(store: &dyn FeedStore, status_id: u64) -> Option<Stored> {
    store.get_statuses(&[status_id]).await.unwrap().pop().expect("one answer per id")
}

pub fn live(status: &StatusRecord, likes: u64, reposts: u64, replies: u64) -> Option<Stored> {
    Some(Stored::Live(status.clone(), Counts { likes, reposts, replies }))
}

pub fn deleted(status: &StatusRecord) -> Option<Stored> {
    Some(Stored::Deleted { status_id: status.status_id, author_id: status.author_id })
}

/// Checks a live status's counters against its lists and returns them.
pub async fn counted(store: &dyn FeedStore, status_id: u64) -> Counts {
    let Some(Stored::Live(_, counts)) = stored(store, status_id).await else { panic!("status {status_id} is live") };
    let listed = Counts {
        likes: store.list_likes(status_id, None, ALL).await.unwrap().len() as u64,
        reposts: store.list_reposts(status_id, None, ALL).await.unwrap().len() as u64,
        replies: store.list_replies(status_id, None, ALL).await.unwrap().len() as u64,
    };
    assert_eq!(counts, listed, "status {status_id}: counters equal the lists");
    counts
}

/// Checks a user's counters against their lists and returns `(statuses, likes)`.
pub async fn user_counted(store: &dyn FeedStore, user_id: u64) -> (u64, u64) {
    let statuses = store.list_user_statuses(user_id, None, ALL).await.unwrap().len() as u64;
    let likes = store.list_user_likes(user_id, None, ALL).await.unwrap().len() as u64;
    let counts = (store.count_user_statuses(user_id).await.unwrap(), store.count_user_likes(user_id).await.unwrap());
    assert_eq!(counts, (statuses, likes), "user {user_id}: counters equal the lists");
    counts
}

/// Drives every future at once on this task (they borrow the store, so they are not spawned;
/// a backend that hands work to threads still runs it in parallel).
pub async fn concurrently<F: Future<Output = ()>>(futures: impl IntoIterator<Item = F>) {
    let mut pending: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pending.is_empty() { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
}

/// Instantiates the suite for a backend constructor returning `(guard, store)` (or, for a
/// backend behind a server, `async |case| Option<(guard, store)>`, `None` skipping the case).
#[macro_export]
macro_rules! feed_store_suite {
    ($($make:tt)+) => {
        mod feed_store_conformance {
            use super::*;

            chatmesh_platform::conformance_suite!(
                statuses,
                $crate::store::conformance::statuses,
                ($($make)+),
                [
                    a_published_post_reads_back_live_with_zero_counts_on_its_author_and_tags,
                    a_reply_is_listed_and_counted_on_the_status_it_answers,
                    a_repost_is_listed_counted_and_known_to_its_author,
                    a_reply_or_repost_of_a_missing_or_deleted_status_is_refused_and_writes_nothing,
                    a_repeat_repost_answers_already_reposted_with_the_first_id_and_changes_nothing,
                    get_statuses_answers_in_order_live_deleted_or_never_published,
                    lists_are_newest_first_and_page_before_an_id,
                    a_deleted_status_leaves_a_tombstone_and_leaves_every_list_count_tag_and_like,
                    deleting_a_status_deletes_its_reposts,
                    deleting_a_repost_takes_it_off_the_original_and_lets_its_author_repost_again,
                    deleting_a_missing_or_deleted_status_answers_none_and_changes_nothing,
                    counts_equal_lists_after_concurrent_likes_unlikes_reposts_and_deletes
                ]
            );
            chatmesh_platform::conformance_suite!(
                likes,
                $crate::store::conformance::likes,
                ($($make)+),
                [
                    a_like_is_listed_on_both_sides_and_counted_once,
                    liking_a_missing_or_deleted_status_is_refused,
                    an_unlike_removes_the_like_and_its_counts_once,
                    like_lists_are_newest_like_first_and_page_before_a_like_id,
                    liked_by_answers_in_the_order_asked,
                    concurrent_likes_and_unlikes_of_one_status_end_with_counts_equal_to_the_lists
                ]
            );
            chatmesh_platform::conformance_suite!(
                timelines,
                $crate::store::conformance::timelines,
                ($($make)+),
                [
                    pushing_an_entry_twice_keeps_the_first,
                    push_entries_adds_a_backfill_like_push,
                    a_timeline_past_its_cap_and_a_tenth_is_trimmed_to_its_newest_cap,
                    timelines_page_newest_status_first,
                    removed_entries_are_gone_and_absent_ones_skipped,
                    the_watermark_only_rises,
                    celebrities_are_marked_for_good_and_answered_in_the_order_asked
                ]
            );
            chatmesh_platform::conformance_suite!(
                fanout,
                $crate::store::conformance::fanout,
                ($($make)+),
                [
                    a_job_published_with_its_status_waits_unleased_for_a_claim,
                    a_leased_job_is_not_claimed_again_until_its_lease_runs_out,
                    concurrent_claims_lease_each_job_to_one_owner_up_to_the_limit,
                    advancing_a_job_records_its_progress_and_keeps_its_lease,
                    a_finished_or_deleted_job_stays_gone
                ]
            );
            chatmesh_platform::conformance_suite!(
                schedule,
                $crate::store::conformance::schedule,
                ($($make)+),
                [
                    scheduled_statuses_read_back_and_list_newest_scheduled_first,
                    due_scheduled_answers_those_due_soonest_first,
                    a_cancelled_status_is_gone_once_and_never_publishes,
                    publish_scheduled_publishes_once_under_two_concurrent_publishers,
                    a_refused_publish_keeps_the_scheduled_status
                ]
            );
            chatmesh_platform::conformance_suite!(
                trends,
                $crate::store::conformance::trends,
                ($($make)+),
                [
                    tag_counts_sum_the_buckets_in_range,
                    a_deleted_status_takes_its_tags_back_from_its_bucket,
                    pruning_forgets_the_buckets_before_the_one_given,
                    the_trends_snapshot_saves_and_loads,
                    a_lease_is_exclusive_until_it_runs_out
                ]
            );
        }
    };
}
