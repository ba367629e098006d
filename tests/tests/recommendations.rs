//! Who to follow (seed 001's recommendations): profile views, likes, reposts and replies raise a
//! candidate's score; following someone passes on their top picks and takes them out; nobody
//! followed, blocked or blocking is ever listed; the list pages highest first, over gRPC and REST.

use chatmesh_api::{
    feed::v1::{CreateStatusRequest, LikeStatusRequest, RepostStatusRequest, Status},
    user::v1::{GetUserRequest, ListRecommendationsRequest, ListRecommendationsResponse},
};
use chatmesh_tests::{Rest, TestApp, User, authed, eventually};

async fn page(app: &TestApp, who: &User, page_size: i32, page_token: &str) -> ListRecommendationsResponse {
    let request = ListRecommendationsRequest { page_size, page_token: page_token.into() };
    app.users().await.list_recommendations(authed(&who.token, request)).await.expect("recommendations").into_inner()
}

/// The ids listed, in order, on one page of 100.
async fn listed(app: &TestApp, who: &User) -> Vec<String> {
    page(app, who, 100, "").await.users.into_iter().map(|u| u.user_id).collect()
}

/// Polls until `who`'s list is `want` (the feed reports interactions in the background).
async fn becomes(app: &TestApp, who: &User, want: &[&User], what: &str) {
    let want: Vec<String> = want.iter().map(|u| u.id.clone()).collect();
    eventually(what, || async {
        let seen = listed(app, who).await;
        if seen == want { Ok(()) } else { Err(seen) }
    })
    .await;
}

async fn view(app: &TestApp, who: &User, whom: &User) {
    let request = authed(&who.token, GetUserRequest { user_id: whom.id.clone() });
    app.users().await.get_user(request).await.expect("profile");
}

async fn post(app: &TestApp, who: &User, text: &str, in_reply_to: Option<&Status>) -> Status {
    let request = CreateStatusRequest {
        text: text.into(),
        in_reply_to_status_id: in_reply_to.map(|s| s.status_id.clone()).unwrap_or_default(),
        ..Default::default()
    };
    let answer = app.feed().await.create_status(authed(&who.token, request)).await.expect("post");
    answer.into_inner().status.expect("status")
}

#[tokio::test]
async fn views_likes_reposts_and_replies_raise_candidates_listed_highest_first() {
    let app = TestApp::spawn().await;
    let ada = app.person("ada", "Ada").await;
    let bob = app.person("bob", "Bob").await;
    let cyd = app.person("cyd", "Cyd").await;
    assert!(listed(&app, &ada).await.is_empty(), "nothing before any activity");

    view(&app, &ada, &bob).await;
    view(&app, &ada, &ada).await;
    becomes(&app, &ada, &[&bob], "a viewed profile is a candidate; one's own is not").await;

    let status = post(&app, &cyd, "thoughts on #rust", None).await;
    let mut feed = app.feed().await;
    feed.like_status(authed(&ada.token, LikeStatusRequest { status_id: status.status_id.clone() }))
        .await
        .expect("like");
    feed.like_status(authed(&ada.token, LikeStatusRequest { status_id: status.status_id.clone() }))
        .await
        .expect("a repeated like changes nothing");
    becomes(&app, &ada, &[&cyd, &bob], "a like counts once; equal scores list the newer account first").await;
    feed.repost_status(authed(&ada.token, RepostStatusRequest { status_id: status.status_id.clone() }))
        .await
        .expect("repost");
    post(&app, &ada, "agreed", Some(&status)).await;
    view(&app, &ada, &bob).await;
    eventually("cyd at 3 (like, repost, reply), bob at 2 (two views)", || async {
        let answer = page(&app, &ada, 1, "").await;
        let first = answer.users.first().map(|u| u.user_id.clone());
        if first.as_deref() == Some(cyd.id.as_str()) && answer.total_size == 2 { Ok(()) } else { Err(answer) }
    })
    .await;
    for _ in 0..2 {
        view(&app, &ada, &bob).await;
    }
    becomes(&app, &ada, &[&bob, &cyd], "four views outscore three interactions").await;
}

#[tokio::test]
async fn following_someone_takes_them_out_and_passes_on_their_top_picks() {
    let app = TestApp::spawn().await;
    let ada = app.person("ada", "Ada").await;
    let bob = app.person("bob", "Bob").await;
    let dan = app.person("dan", "Dan").await;
    let eve = app.person("eve", "Eve").await;
    view(&app, &bob, &dan).await;
    view(&app, &bob, &ada).await;
    view(&app, &ada, &bob).await;
    app.follow(&ada, &eve).await;
    view(&app, &bob, &eve).await;
    becomes(&app, &ada, &[&bob], "before following").await;

    app.follow(&ada, &bob).await;
    // bob's picks: dan (passed on), ada (herself: never), eve (followed already: never)
    becomes(&app, &ada, &[&dan], "bob is followed now; his pick dan is passed on").await;
}

#[tokio::test]
async fn nobody_blocked_either_way_is_listed_and_a_block_takes_them_out() {
    let app = TestApp::spawn().await;
    let ada = app.person("ada", "Ada").await;
    let bob = app.person("bob", "Bob").await;
    let cyd = app.person("cyd", "Cyd").await;
    let dan = app.person("dan", "Dan").await;
    for whom in [&bob, &cyd, &dan] {
        view(&app, &ada, whom).await;
    }
    becomes(&app, &ada, &[&dan, &cyd, &bob], "three candidates, newest account first on equal scores").await;
    app.block(&ada, &bob).await;
    app.block(&cyd, &ada).await;
    becomes(&app, &ada, &[&dan], "neither whom ada blocks nor who blocks ada").await;
    assert_eq!(page(&app, &ada, 10, "").await.total_size, 1, "the total counts what is listed");
    view(&app, &ada, &dan).await;
    app.unblock(&ada, &bob).await;
    view(&app, &ada, &bob).await;
    becomes(&app, &ada, &[&dan, &bob], "a lifted block lets views count again, from zero").await;
}

#[tokio::test]
async fn pages_cover_the_list_once_over_grpc_and_rest() {
    let app = TestApp::spawn().await;
    let ada = app.person("ada", "Ada").await;
    let mut people = Vec::new();
    for name in ["bob", "cyd", "dan", "eve", "fay"] {
        people.push(app.person(name, name).await);
    }
    // bob viewed 5 times, cyd 4, ... fay once: a strict order
    for (i, whom) in people.iter().enumerate() {
        for _ in i..people.len() {
            view(&app, &ada, whom).await;
        }
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let answer = page(&app, &ada, 2, &token).await;
        assert_eq!(answer.total_size, 5);
        seen.extend(answer.users.into_iter().map(|u| u.user_id));
        if answer.next_page_token.is_empty() {
            break;
        }
        token = answer.next_page_token;
    }
    assert_eq!(seen, people.iter().map(|u| u.id.clone()).collect::<Vec<_>>(), "highest first, each once");

    let rest = Rest { app: &app };
    let (status, body) =
        rest.authed("GET", "/api/v1/me/recommendations?pageSize=3", &ada.token, serde_json::Value::Null).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["totalSize"], "5");
    assert_eq!(body["users"][0]["userId"].as_str(), Some(people[0].id.as_str()));
    assert_eq!(body["users"].as_array().map(Vec::len), Some(3));
    let (status, body) =
        rest.authed("GET", "/api/v1/me/recommendations?pageToken=nope", &ada.token, serde_json::Value::Null).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.starts_with("page_token")), "{body}");
    let (status, _) = rest.call("GET", "/api/v1/me/recommendations", None, serde_json::Value::Null).await;
    assert_eq!(status, 401);
}
