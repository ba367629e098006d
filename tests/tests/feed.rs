//! Statuses from outside: posts, replies, reposts and likes with counters equal to their lists
//! (under concurrency too), refusals that change nothing, and the REST routes. Timelines, trends
//! and scheduled statuses are in feed_timeline.rs.

use std::collections::BTreeSet;

use chatmesh_api::feed::v1::{self as pb, StatusKind, feed_service_client::FeedServiceClient};
use chatmesh_tests::{Rest, TestApp, User, authed, raw, refused};
use serde_json::{Value, json};
use tonic::{Code, Status, transport::Channel};

fn text(text: &str) -> pb::CreateStatusRequest {
    pb::CreateStatusRequest { text: text.into(), ..Default::default() }
}

async fn create(app: &TestApp, who: &User, request: pb::CreateStatusRequest) -> Result<pb::Status, Status> {
    Ok(app.feed().await.create_status(authed(&who.token, request)).await?.into_inner().status.expect("status"))
}

async fn post(app: &TestApp, who: &User, words: &str) -> pb::Status {
    create(app, who, text(words)).await.expect("post")
}

async fn reply(app: &TestApp, who: &User, to: &str, words: &str) -> Result<pb::Status, Status> {
    let request =
        pb::CreateStatusRequest { text: words.into(), in_reply_to_status_id: to.into(), ..Default::default() };
    create(app, who, request).await
}

async fn get(app: &TestApp, who: &User, status_id: &str) -> Result<pb::Status, Status> {
    let request = authed(&who.token, pb::GetStatusRequest { status_id: status_id.into() });
    Ok(app.feed().await.get_status(request).await?.into_inner().status.expect("status"))
}

async fn delete(app: &TestApp, who: &User, status_id: &str) -> Result<(), Status> {
    let request = authed(&who.token, pb::DeleteStatusRequest { status_id: status_id.into() });
    app.feed().await.delete_status(request).await.map(drop)
}

async fn like(app: &TestApp, who: &User, status_id: &str) -> Result<pb::Status, Status> {
    let request = authed(&who.token, pb::LikeStatusRequest { status_id: status_id.into() });
    Ok(app.feed().await.like_status(request).await?.into_inner().status.expect("status"))
}

async fn unlike(app: &TestApp, who: &User, status_id: &str) -> Result<(), Status> {
    let request = authed(&who.token, pb::UnlikeStatusRequest { status_id: status_id.into() });
    app.feed().await.unlike_status(request).await.map(drop)
}

async fn repost(app: &TestApp, who: &User, status_id: &str) -> Result<pb::Status, Status> {
    let request = authed(&who.token, pb::RepostStatusRequest { status_id: status_id.into() });
    Ok(app.feed().await.repost_status(request).await?.into_inner().status.expect("status"))
}

async fn undo_repost(app: &TestApp, who: &User, status_id: &str) -> Result<(), Status> {
    let request = authed(&who.token, pb::UndoRepostRequest { status_id: status_id.into() });
    app.feed().await.undo_repost(request).await.map(drop)
}

/// Every page of a list, in pages of 3 so paging is exercised, and the total the first page states.
async fn pages<T, Fut>(mut page: impl FnMut(String) -> Fut) -> (Vec<T>, i64)
where
    Fut: Future<Output = Result<(Vec<T>, String, i64), Status>>,
{
    let (mut all, mut token, mut total) = (Vec::new(), String::new(), None);
    loop {
        let (items, next, stated) = page(token).await.expect("a page");
        total.get_or_insert(stated);
        all.extend(items);
        if next.is_empty() {
            return (all, total.unwrap_or_default());
        }
        token = next;
    }
}

const PAGE: i32 = 3;

async fn user_statuses(app: &TestApp, viewer: &User, of: &User) -> (Vec<pb::Status>, i64) {
    pages(|page_token| async move {
        let request = pb::ListUserStatusesRequest { user_id: of.id.clone(), page_size: PAGE, page_token };
        let r = app.feed().await.list_user_statuses(authed(&viewer.token, request)).await?.into_inner();
        Ok((r.statuses, r.next_page_token, r.total_size))
    })
    .await
}

async fn replies(app: &TestApp, viewer: &User, status_id: &str) -> (Vec<pb::Status>, i64) {
    pages(|page_token| async move {
        let request = pb::ListStatusRepliesRequest { status_id: status_id.into(), page_size: PAGE, page_token };
        let r = app.feed().await.list_status_replies(authed(&viewer.token, request)).await?.into_inner();
        Ok((r.statuses, r.next_page_token, r.total_size))
    })
    .await
}

async fn tagged(app: &TestApp, viewer: &User, tag: &str) -> Vec<pb::Status> {
    let (statuses, _) = pages(|page_token| async move {
        let request = pb::ListTagStatusesRequest { tag: tag.into(), page_size: PAGE, page_token };
        let r = app.feed().await.list_tag_statuses(authed(&viewer.token, request)).await?.into_inner();
        Ok((r.statuses, r.next_page_token, 0))
    })
    .await;
    statuses
}

/// Who liked a status (user ids, newest first) and the stated total.
async fn status_likes(app: &TestApp, viewer: &User, status_id: &str) -> (Vec<String>, i64) {
    let (users, total) = pages(|page_token| async move {
        let request = pb::ListStatusLikesRequest { status_id: status_id.into(), page_size: PAGE, page_token };
        let r = app.feed().await.list_status_likes(authed(&viewer.token, request)).await?.into_inner();
        Ok((r.users, r.next_page_token, r.total_size))
    })
    .await;
    (users.into_iter().map(|u| u.user_id).collect(), total)
}

/// Who reposted a status (user ids, newest first) and the stated total.
async fn status_reposts(app: &TestApp, viewer: &User, status_id: &str) -> (Vec<String>, i64) {
    let (users, total) = pages(|page_token| async move {
        let request = pb::ListStatusRepostsRequest { status_id: status_id.into(), page_size: PAGE, page_token };
        let r = app.feed().await.list_status_reposts(authed(&viewer.token, request)).await?.into_inner();
        Ok((r.users, r.next_page_token, r.total_size))
    })
    .await;
    (users.into_iter().map(|u| u.user_id).collect(), total)
}

/// What a user liked (status ids, newest like first) and the stated total.
async fn user_likes(app: &TestApp, viewer: &User, of: &User) -> (Vec<String>, i64) {
    let (statuses, total) = pages(|page_token| async move {
        let request = pb::ListUserLikesRequest { user_id: of.id.clone(), page_size: PAGE, page_token };
        let r = app.feed().await.list_user_likes(authed(&viewer.token, request)).await?.into_inner();
        Ok((r.statuses, r.next_page_token, r.total_size))
    })
    .await;
    (ids(&statuses), total)
}

fn ids(statuses: &[pb::Status]) -> Vec<String> {
    statuses.iter().map(|s| s.status_id.clone()).collect()
}

/// (likes, reposts, replies) of a status as `viewer` reads it.
async fn counts(app: &TestApp, viewer: &User, status_id: &str) -> (i64, i64, i64) {
    let status = get(app, viewer, status_id).await.expect("the status is readable");
    (status.total_likes, status.total_reposts, status.total_replies)
}

#[tokio::test]
async fn a_post_comes_back_with_its_author_kind_tags_and_the_mentions_of_existing_users() {
    let app = TestApp::spawn().await;
    let ada = app.person("ada", "Ada Lovelace").await;
    let bob = app.person("bobby", "Bob").await;
    let words = "Shipping #Rust with @bobby, @nobody_here and @BOBBY again #tokio_2 #rust #Go";
    let status = post(&app, &ada, words).await;
    assert!(!status.status_id.is_empty());
    assert_eq!(status.kind, StatusKind::Post as i32);
    assert_eq!((status.author_id.as_str(), status.text.as_str()), (ada.id.as_str(), words));
    let author = status.author.clone().expect("the author's profile");
    assert_eq!(
        (author.user_id.as_str(), author.name.as_str(), author.username.as_str()),
        (ada.id.as_str(), "Ada Lovelace", "ada")
    );
    assert!(author.email.is_empty(), "a public profile: {author:?}");
    assert_eq!(status.tags, ["rust", "tokio_2", "go"], "lower case, each once, in order");
    assert_eq!(status.mentioned_user_ids, [bob.id.as_str()], "existing users only, each once");
    assert_eq!((status.total_likes, status.total_reposts, status.total_replies), (0, 0, 0));
    assert!(status.referenced_status_id.is_empty() && status.referenced_status.is_none());
    assert!(!status.scheduled && !status.deleted);
    assert!(status.create_time.is_some());
    assert_eq!(status.publish_time, status.create_time, "published when created");

    let seen = get(&app, &bob, &status.status_id).await.expect("bob reads it");
    assert_eq!(
        (&seen.status_id, &seen.text, &seen.tags, &seen.mentioned_user_ids, seen.kind),
        (&status.status_id, &status.text, &status.tags, &status.mentioned_user_ids, status.kind)
    );
    assert_eq!(seen.author.as_ref().map(|a| a.name.as_str()), Some("Ada Lovelace"));
    assert_eq!(seen.relation, Some(pb::StatusRelation { liked: false, reposted: false }));
    like(&app, &bob, &status.status_id).await.expect("like");
    let seen = get(&app, &bob, &status.status_id).await.unwrap();
    assert_eq!((seen.total_likes, seen.relation), (1, Some(pb::StatusRelation { liked: true, reposted: false })));
    let own = get(&app, &ada, &status.status_id).await.unwrap();
    assert_eq!((own.total_likes, own.relation.map(|r| r.liked)), (1, Some(false)), "the relation is the reader's");
}

#[tokio::test]
async fn malformed_statuses_and_requests_are_invalid_arguments_naming_the_field() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let longest = post(&app, &ada, &"é".repeat(280)).await;
    assert_eq!(longest.text.chars().count(), 280, "280 characters, whatever their bytes");
    let cases = [
        ("text", text(&"x".repeat(281))),
        ("text", text(&"é".repeat(281))),
        ("text", text(" \n\t \u{3000} ")),
        ("text", text("")),
        ("text", text("a bell \u{7}")),
        ("in_reply_to_status_id", pb::CreateStatusRequest { in_reply_to_status_id: "012".into(), ..text("hi") }),
    ];
    for (field, request) in cases {
        let status = create(&app, &ada, request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {}", status.message());
        assert!(status.message().starts_with(field), "names {field}: {}", status.message());
    }
    assert_eq!(user_statuses(&app, &ada, &ada).await.1, 1, "nothing refused was stored");

    refused(get(&app, &ada, "123456789").await, Code::NotFound, "STATUS_NOT_FOUND");
    refused(like(&app, &ada, "123456789").await, Code::NotFound, "STATUS_NOT_FOUND");
    refused(reply(&app, &ada, "123456789", "to nothing").await, Code::NotFound, "STATUS_NOT_FOUND");
    let status = get(&app, &ada, "not-a-number").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("status_id"), "{}", status.message());

    let mut feed = app.feed().await;
    for garbage in ["garbage", "42", "Y20xOg"] {
        let request = pb::ListUserStatusesRequest { user_id: ada.id.clone(), page_size: 1, page_token: garbage.into() };
        let status = feed.list_user_statuses(authed(&ada.token, request)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{garbage}");
        assert!(status.message().starts_with("page_token"), "{garbage}: {}", status.message());
        let request = pb::ListHomeTimelineRequest { page_size: 1, page_token: garbage.into() };
        let status = feed.list_home_timeline(authed(&ada.token, request)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{garbage}");
        assert!(status.message().starts_with("page_token"), "{garbage}: {}", status.message());
        let request = pb::ListStatusLikesRequest {
            status_id: longest.status_id.clone(),
            page_size: 1,
            page_token: garbage.into(),
        };
        let status = feed.list_status_likes(authed(&ada.token, request)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{garbage}");
        assert!(status.message().starts_with("page_token"), "{garbage}: {}", status.message());
    }
}

#[tokio::test]
async fn a_call_without_a_valid_token_is_unauthenticated_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let mut feed = app.feed().await;
    let status = feed.create_status(text("anonymous")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = feed.create_status(authed("not-a-token", text("forged"))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = feed.list_home_timeline(pb::ListHomeTimelineRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = feed.list_trends(pb::ListTrendsRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let mine = post(&app, &ada, "mine").await;
    let status = feed.get_status(pb::GetStatusRequest { status_id: mine.status_id.clone() }).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = feed.delete_status(pb::DeleteStatusRequest { status_id: mine.status_id.clone() }).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let (statuses, total) = user_statuses(&app, &ada, &ada).await;
    assert_eq!((ids(&statuses), total), (vec![mine.status_id], 1));
}

#[tokio::test]
async fn replies_are_counted_and_listed_and_keep_a_stub_of_a_deleted_parent() {
    let app = TestApp::spawn().await;
    let (ada, bob, cy) = (app.user("ada").await, app.user("bob").await, app.user("cy").await);
    let parent = post(&app, &ada, "what do you think of #fjall?").await;
    let first = reply(&app, &bob, &parent.status_id, "fast").await.expect("reply");
    let second = reply(&app, &bob, &parent.status_id, "and #simple").await.expect("reply");
    let third = reply(&app, &cy, &parent.status_id, "agreed").await.expect("reply");
    assert_eq!((first.kind, first.referenced_status_id.as_str()), (StatusKind::Reply as i32, &*parent.status_id));
    let shown = first.referenced_status.as_ref().expect("the parent, filled in");
    assert_eq!(
        (shown.status_id.as_str(), shown.text.as_str(), shown.deleted),
        (&*parent.status_id, &*parent.text, false)
    );
    let nested = reply(&app, &ada, &first.status_id, "thanks").await.expect("a reply to a reply");
    let shown = nested.referenced_status.as_ref().expect("the reply it answers");
    assert_eq!(shown.status_id, first.status_id);
    assert!(shown.referenced_status.is_none(), "one level deep: {shown:?}");

    assert_eq!(counts(&app, &cy, &parent.status_id).await, (0, 0, 3));
    assert_eq!(counts(&app, &cy, &first.status_id).await, (0, 0, 1));
    let (listed, total) = replies(&app, &cy, &parent.status_id).await;
    assert_eq!(
        (ids(&listed), total),
        (vec![third.status_id.clone(), second.status_id.clone(), first.status_id.clone()], 3),
        "newest first"
    );
    like(&app, &bob, &third.status_id).await.unwrap();
    like(&app, &bob, &parent.status_id).await.unwrap();
    like(&app, &cy, &parent.status_id).await.unwrap();
    assert_eq!(user_statuses(&app, &bob, &ada).await.1, 2, "the parent and ada's reply");
    assert_eq!(ids(&tagged(&app, &cy, "#FJALL").await), [parent.status_id.as_str()]);
    assert_eq!(user_likes(&app, &bob, &bob).await, (vec![parent.status_id.clone(), third.status_id.clone()], 2));

    delete(&app, &ada, &parent.status_id).await.expect("its author deletes it");
    refused(get(&app, &bob, &parent.status_id).await, Code::NotFound, "STATUS_NOT_FOUND");
    let orphan = get(&app, &bob, &first.status_id).await.expect("the reply stays");
    assert_eq!(orphan.referenced_status_id, parent.status_id);
    let stub = orphan.referenced_status.expect("a stub of the deleted parent");
    assert!(stub.deleted, "{stub:?}");
    assert_eq!(stub.status_id, parent.status_id);
    let rest = (stub.text.is_empty(), stub.author_id.is_empty(), stub.author.is_none(), stub.tags.is_empty());
    assert_eq!(rest, (true, true, true, true), "only its id: {stub:?}");
    let (left, total) = user_statuses(&app, &bob, &ada).await;
    assert_eq!((ids(&left), total), (vec![nested.status_id.clone()], 1), "gone from its author's list");
    assert!(tagged(&app, &cy, "fjall").await.is_empty(), "gone from its tag");
    assert_eq!(user_likes(&app, &cy, &cy).await.0, Vec::<String>::new(), "gone from its likers' lists");
    assert_eq!(user_likes(&app, &bob, &bob).await.0, [third.status_id.as_str()]);
    assert_eq!(user_statuses(&app, &ada, &bob).await.1, 2, "bob's replies stay");
    let request = pb::ListStatusRepliesRequest { status_id: parent.status_id.clone(), ..Default::default() };
    let listed = app.feed().await.list_status_replies(authed(&cy.token, request)).await;
    refused(listed, Code::NotFound, "STATUS_NOT_FOUND");
    refused(reply(&app, &cy, &parent.status_id, "late").await, Code::NotFound, "STATUS_NOT_FOUND");
    refused(like(&app, &cy, &parent.status_id).await, Code::NotFound, "STATUS_NOT_FOUND");
    refused(repost(&app, &cy, &parent.status_id).await, Code::NotFound, "STATUS_NOT_FOUND");
    refused(delete(&app, &ada, &parent.status_id).await, Code::NotFound, "STATUS_NOT_FOUND");
}

#[tokio::test]
async fn a_deleted_statuses_likes_leave_their_likers_totals() {
    let app = TestApp::spawn().await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    let kept = post(&app, &ada, "kept").await;
    let gone = post(&app, &ada, "gone").await;
    like(&app, &bob, &kept.status_id).await.unwrap();
    like(&app, &bob, &gone.status_id).await.unwrap();
    delete(&app, &ada, &gone.status_id).await.unwrap();
    // why: ListUserLikes' total is "every like of the user"; a like of a deleted status is no like.
    assert_eq!(user_likes(&app, &bob, &bob).await, (vec![kept.status_id.clone()], 1));
}

#[tokio::test]
async fn a_repost_is_one_per_user_reposts_the_original_and_undo_takes_it_back() {
    let app = TestApp::spawn().await;
    let ada = app.person("ada", "Ada").await;
    let (bob, cy) = (app.person("bob", "Bob").await, app.person("cyd", "Cy").await);
    let original = post(&app, &ada, "share this").await;
    let shared = repost(&app, &bob, &original.status_id).await.expect("repost");
    assert_eq!(shared.kind, StatusKind::Repost as i32);
    assert_eq!((shared.author_id.as_str(), shared.text.as_str()), (bob.id.as_str(), ""));
    assert_eq!(shared.referenced_status_id, original.status_id);
    let inner = shared.referenced_status.as_ref().expect("the original, filled in");
    assert_eq!((inner.text.as_str(), inner.author_id.as_str()), ("share this", ada.id.as_str()));
    assert!(shared.relation.is_some_and(|r| r.reposted), "{:?}", shared.relation);
    let again = repost(&app, &bob, &original.status_id).await.expect("a repeat is answered");
    assert_eq!(again.status_id, shared.status_id, "the same repost");
    assert_eq!(counts(&app, &ada, &original.status_id).await.1, 1);

    let of_repost = repost(&app, &cy, &shared.status_id).await.expect("reposting a repost");
    assert_eq!(of_repost.referenced_status_id, original.status_id, "reposts the original");
    let again = repost(&app, &cy, &original.status_id).await.unwrap();
    assert_eq!(again.status_id, of_repost.status_id, "one per user, whichever way it was reposted");
    assert_eq!(counts(&app, &ada, &original.status_id).await.1, 2);
    assert_eq!(status_reposts(&app, &ada, &original.status_id).await, (vec![cy.id.clone(), bob.id.clone()], 2));
    let (bobs, total) = user_statuses(&app, &ada, &bob).await;
    assert_eq!((ids(&bobs), total), (vec![shared.status_id.clone()], 1), "a repost is its reposter's status");
    let seen = get(&app, &bob, &original.status_id).await.unwrap();
    assert!(seen.relation.is_some_and(|r| r.reposted && !r.liked));

    undo_repost(&app, &bob, &original.status_id).await.expect("undo");
    assert_eq!(counts(&app, &ada, &original.status_id).await.1, 1);
    assert_eq!(user_statuses(&app, &ada, &bob).await, (vec![], 0), "gone from the reposter's list");
    assert_eq!(status_reposts(&app, &ada, &original.status_id).await, (vec![cy.id.clone()], 1));
    refused(get(&app, &ada, &shared.status_id).await, Code::NotFound, "STATUS_NOT_FOUND");
    assert!(get(&app, &bob, &original.status_id).await.unwrap().relation.is_some_and(|r| !r.reposted));
    undo_repost(&app, &bob, &original.status_id).await.expect("a second undo is answered");
    assert_eq!(counts(&app, &ada, &original.status_id).await.1, 1, "and changes nothing");
    assert_eq!(status_reposts(&app, &ada, &original.status_id).await, (vec![cy.id.clone()], 1));
    let back = repost(&app, &bob, &original.status_id).await.expect("reposting again");
    assert_ne!(back.status_id, shared.status_id, "a new repost");
    assert_eq!(counts(&app, &ada, &original.status_id).await.1, 2);
}

#[tokio::test]
async fn likes_are_idempotent_and_listed_on_the_status_and_the_liker() {
    let app = TestApp::spawn().await;
    let (ada, bob, cy) = (app.user("ada").await, app.user("bob").await, app.user("cy").await);
    let first = post(&app, &ada, "first").await;
    let second = post(&app, &ada, "second").await;
    let liked = like(&app, &bob, &first.status_id).await.expect("like");
    assert_eq!((liked.total_likes, liked.relation.map(|r| r.liked)), (1, Some(true)), "as it stands after");
    let again = like(&app, &bob, &first.status_id).await.expect("a repeat is answered");
    assert_eq!(again.total_likes, 1, "and changes nothing");
    like(&app, &cy, &first.status_id).await.unwrap();
    like(&app, &bob, &second.status_id).await.unwrap();
    assert_eq!(status_likes(&app, &ada, &first.status_id).await, (vec![cy.id.clone(), bob.id.clone()], 2));
    assert_eq!(
        user_likes(&app, &ada, &bob).await,
        (vec![second.status_id.clone(), first.status_id.clone()], 2),
        "newest like first"
    );
    assert!(get(&app, &bob, &first.status_id).await.unwrap().relation.is_some_and(|r| r.liked));
    assert!(get(&app, &ada, &first.status_id).await.unwrap().relation.is_some_and(|r| !r.liked));

    unlike(&app, &bob, &first.status_id).await.expect("unlike");
    unlike(&app, &bob, &first.status_id).await.expect("a second unlike is answered");
    assert_eq!(counts(&app, &ada, &first.status_id).await.0, 1);
    assert_eq!(status_likes(&app, &ada, &first.status_id).await, (vec![cy.id.clone()], 1));
    assert_eq!(user_likes(&app, &ada, &bob).await, (vec![second.status_id.clone()], 1));
    assert!(get(&app, &bob, &first.status_id).await.unwrap().relation.is_some_and(|r| !r.liked));
    unlike(&app, &ada, &second.status_id).await.expect("none to take back changes nothing");
    assert_eq!(counts(&app, &ada, &second.status_id).await.0, 1);
}

/// One racer's actions on a status, in order (a seeded walk); returns whether it ends liking
/// the status and its repost, if it ends with one.
async fn race(
    mut feed: FeedServiceClient<Channel>,
    token: String,
    status_id: String,
    seed: u64,
) -> (bool, Option<String>) {
    let (mut liked, mut reposted, mut state) = (false, None::<String>, seed);
    let id = || status_id.clone();
    for _ in 0..24 {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let t = &token;
        match (state >> 33) % 5 {
            0 => {
                feed.like_status(authed(t, pb::LikeStatusRequest { status_id: id() })).await.expect("like");
                liked = true;
            }
            1 => {
                feed.unlike_status(authed(t, pb::UnlikeStatusRequest { status_id: id() })).await.expect("unlike");
                liked = false;
            }
            2 => {
                let request = authed(t, pb::RepostStatusRequest { status_id: id() });
                let repost = feed.repost_status(request).await.expect("repost").into_inner().status.expect("status");
                if let Some(before) = &reposted {
                    assert_eq!(before, &repost.status_id, "a repeat answers the same repost");
                }
                reposted = Some(repost.status_id);
            }
            3 => {
                feed.undo_repost(authed(t, pb::UndoRepostRequest { status_id: id() })).await.expect("undo");
                reposted = None;
            }
            _ => {
                if let Some(repost) = reposted.take() {
                    let request = authed(t, pb::DeleteStatusRequest { status_id: repost });
                    feed.delete_status(request).await.expect("deleting one's repost");
                }
            }
        }
    }
    (liked, reposted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_equal_the_lists_after_twenty_users_like_repost_and_undo_concurrently() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let original = post(&app, &ada, "race me").await;
    let mut racers = Vec::new();
    for i in 0..20 {
        racers.push(app.user(&format!("racer{i}")).await);
    }
    let feed = app.feed().await;
    let races = racers.iter().enumerate().map(|(i, racer)| {
        let seed = i as u64 * 7919;
        tokio::spawn(race(feed.clone(), racer.token.clone(), original.status_id.clone(), seed))
    });
    let outcomes: Vec<_> =
        futures::future::join_all(races).await.into_iter().map(|r| r.expect("a racer finishes")).collect();

    let likers: BTreeSet<String> =
        racers.iter().zip(&outcomes).filter(|(_, (liked, _))| *liked).map(|(r, _)| r.id.clone()).collect();
    let reposters: BTreeSet<String> =
        racers.iter().zip(&outcomes).filter(|(_, (_, r))| r.is_some()).map(|(r, _)| r.id.clone()).collect();
    assert!(!likers.is_empty() && !reposters.is_empty(), "the seeded walks end with some of each");
    let (likes, reposts, _) = counts(&app, &ada, &original.status_id).await;
    let (listed, total) = status_likes(&app, &ada, &original.status_id).await;
    assert_eq!((likes, total, listed.len()), (likers.len() as i64, likers.len() as i64, likers.len()));
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), likers);
    let (listed, total) = status_reposts(&app, &ada, &original.status_id).await;
    assert_eq!((reposts, total, listed.len()), (reposters.len() as i64, reposters.len() as i64, reposters.len()));
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), reposters);
    for (racer, (liked, reposted)) in racers.iter().zip(&outcomes) {
        let (statuses, total) = user_statuses(&app, &ada, racer).await;
        assert_eq!(
            (ids(&statuses), total),
            (reposted.iter().cloned().collect::<Vec<_>>(), i64::from(reposted.is_some()))
        );
        let (statuses, total) = user_likes(&app, &ada, racer).await;
        let want = if *liked { vec![original.status_id.clone()] } else { vec![] };
        assert_eq!((statuses, total), (want, i64::from(*liked)));
    }

    // every reposter deletes its repost twice and undoes it, all at once
    let takebacks = racers.iter().zip(&outcomes).filter_map(|(racer, (_, r))| r.clone().map(|r| (racer, r)));
    let takebacks = takebacks.flat_map(|(racer, repost)| {
        let (app, original) = (&app, &original.status_id);
        let deletes = (0..2).map(move |_| {
            let repost = repost.clone();
            async move {
                match delete(app, racer, &repost).await {
                    Ok(()) => Ok(()),
                    Err(status) if status.code() == Code::NotFound => Ok(()),
                    Err(status) => Err(status),
                }
            }
        });
        let undo = async move { undo_repost(app, racer, original).await };
        deletes.map(futures::FutureExt::boxed_local).chain([futures::FutureExt::boxed_local(undo)])
    });
    for result in futures::future::join_all(takebacks).await {
        result.expect("a delete answers done or not found, an undo done");
    }
    let (likes, reposts, _) = counts(&app, &ada, &original.status_id).await;
    assert_eq!((likes, reposts), (likers.len() as i64, 0));
    assert_eq!(status_reposts(&app, &ada, &original.status_id).await, (vec![], 0));
    for racer in &racers {
        assert_eq!(user_statuses(&app, &ada, racer).await, (vec![], 0));
    }
}

#[tokio::test]
async fn deleting_someone_elses_status_is_permission_denied_and_keeps_it() {
    let app = TestApp::spawn().await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    let status = post(&app, &ada, "mine alone").await;
    like(&app, &bob, &status.status_id).await.unwrap();
    refused(delete(&app, &bob, &status.status_id).await, Code::PermissionDenied, "NOT_STATUS_AUTHOR");
    let kept = get(&app, &bob, &status.status_id).await.expect("still there");
    assert_eq!((kept.text.as_str(), kept.total_likes), ("mine alone", 1));
    assert_eq!(user_statuses(&app, &bob, &ada).await.1, 1);
    let shared = repost(&app, &bob, &status.status_id).await.unwrap();
    refused(delete(&app, &ada, &shared.status_id).await, Code::PermissionDenied, "NOT_STATUS_AUTHOR");
    assert_eq!(counts(&app, &ada, &status.status_id).await, (1, 1, 0), "bob's repost stays");
}

#[tokio::test]
async fn when_the_author_blocked_me_liking_replying_reposting_and_reading_are_user_blocked() {
    let app = TestApp::spawn().await;
    let (ada, bob, cy) = (app.user("ada").await, app.user("bob").await, app.user("cy").await);
    let status = post(&app, &ada, "not for bob").await;
    let elsewhere = post(&app, &cy, "cy's thread #shared").await;
    let ada_reply = reply(&app, &ada, &elsewhere.status_id, "ada's answer #shared").await.unwrap();
    app.block(&ada, &bob).await;

    let id = &status.status_id;
    refused(like(&app, &bob, id).await, Code::PermissionDenied, "USER_BLOCKED");
    refused(reply(&app, &bob, id, "hey").await, Code::PermissionDenied, "USER_BLOCKED");
    refused(repost(&app, &bob, id).await, Code::PermissionDenied, "USER_BLOCKED");
    refused(get(&app, &bob, id).await, Code::PermissionDenied, "USER_BLOCKED");
    let request = pb::ListUserStatusesRequest { user_id: ada.id.clone(), ..Default::default() };
    let status_of_list = app.feed().await.list_user_statuses(authed(&bob.token, request)).await.unwrap_err();
    assert_eq!(status_of_list.code(), Code::PermissionDenied, "{status_of_list:?}");

    assert_eq!(counts(&app, &ada, id).await, (0, 0, 0), "nothing changed");
    assert_eq!(user_statuses(&app, &cy, &bob).await, (vec![], 0));
    assert_eq!(user_likes(&app, &cy, &bob).await, (vec![], 0));
    // lists leave out authors either side blocks
    let (listed, _) = replies(&app, &bob, &elsewhere.status_id).await;
    assert!(!ids(&listed).contains(&ada_reply.status_id), "replies: {listed:?}");
    let listed = tagged(&app, &bob, "shared").await;
    assert_eq!(ids(&listed), [elsewhere.status_id.as_str()], "tag statuses");
    let (listed, _) = replies(&app, &cy, &elsewhere.status_id).await;
    assert_eq!(ids(&listed), [ada_reply.status_id.as_str()], "others still see it");
}

#[tokio::test]
async fn having_blocked_the_author_my_likes_replies_and_reposts_fail_until_i_unblock() {
    let app = TestApp::spawn().await;
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    let status = post(&app, &ada, "ada's").await;
    app.block(&bob, &ada).await;
    let id = &status.status_id;
    refused(like(&app, &bob, id).await, Code::FailedPrecondition, "USER_BLOCKED_BY_YOU");
    refused(reply(&app, &bob, id, "hey").await, Code::FailedPrecondition, "USER_BLOCKED_BY_YOU");
    refused(repost(&app, &bob, id).await, Code::FailedPrecondition, "USER_BLOCKED_BY_YOU");
    assert_eq!(counts(&app, &ada, id).await, (0, 0, 0), "nothing changed");
    assert_eq!(user_statuses(&app, &bob, &bob).await, (vec![], 0));
    assert_eq!(user_likes(&app, &bob, &bob).await, (vec![], 0));

    app.unblock(&bob, &ada).await;
    like(&app, &bob, id).await.expect("liking works again");
    assert_eq!(counts(&app, &ada, id).await, (1, 0, 0));
}

#[tokio::test]
async fn statuses_over_rest_answer_camel_case_json() {
    let app = TestApp::spawn().await;
    let rest = Rest { app: &app };
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    let (status, created) =
        rest.authed("POST", "/api/v1/statuses", &ada.token, json!({"text": "hello over #REST"})).await;
    assert_eq!(status, 200, "{created}");
    let id = created["status"]["statusId"].as_str().expect("statusId").to_owned();
    assert_eq!(created["status"]["authorId"], ada.id.as_str(), "{created}");
    assert_eq!(created["status"]["kind"], "STATUS_KIND_POST", "{created}");
    assert_eq!(created["status"]["tags"], json!(["rest"]), "{created}");
    assert!(created["status"].get("status_id").is_none(), "camelCase: {created}");

    let (status, liked) = rest.authed("POST", &format!("/api/v1/statuses/{id}/like"), &bob.token, json!({})).await;
    assert_eq!(status, 200, "{liked}");
    assert_eq!(liked["status"]["totalLikes"], "1", "int64 as a string: {liked}");
    assert_eq!(liked["status"]["relation"]["liked"], true, "{liked}");

    let (status, timeline) = rest.authed("GET", "/api/v1/timeline", &ada.token, Value::Null).await;
    assert_eq!(status, 200, "{timeline}");
    let first = &timeline["statuses"][0];
    assert_eq!(
        (first["statusId"].as_str(), first["totalLikes"].as_str()),
        (Some(id.as_str()), Some("1")),
        "{timeline}"
    );
    assert!(first["createTime"].as_str().is_some_and(|t| t.ends_with('Z')), "a timestamp string: {timeline}");

    let (status, seen) = rest.authed("GET", &format!("/api/v1/statuses/{id}"), &bob.token, Value::Null).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["status"]["author"]["userId"], ada.id.as_str(), "{seen}");
    assert_eq!(seen["status"]["relation"]["liked"], true, "{seen}");

    let (status, body) = rest.authed("POST", &format!("/api/v1/statuses/{id}/unlike"), &bob.token, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (_, seen) = rest.authed("GET", &format!("/api/v1/statuses/{id}"), &bob.token, Value::Null).await;
    let likes = seen["status"].get("totalLikes").cloned().unwrap_or(json!("0"));
    assert_eq!(likes, "0", "{seen}");
    assert_eq!(counts(&app, &ada, &id).await.0, 0, "gRPC agrees");

    let (status, body) = rest.authed("GET", "/api/v1/statuses/123456789", &bob.token, Value::Null).await;
    assert_eq!((status, body["details"][0]["reason"].as_str()), (404, Some("STATUS_NOT_FOUND")), "{body}");
    let (status, body) = rest.authed("POST", "/api/v1/statuses", &ada.token, json!({"text": "x".repeat(281)})).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = raw::http(app.rest_addr, "GET", "/api/v1/timeline", &[]).await;
    assert_eq!(status, 401);
}
