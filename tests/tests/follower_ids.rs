//! The graph as the feed service reads it: UserInternalService's follower and followee ids,
//! asked with a service token.

use chatmesh_api::user::v1::{
    self as pb, user_internal_service_client::UserInternalServiceClient, user_service_client::UserServiceClient,
};
use chatmesh_tests::{TestApp, User, authed};
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt as _;

async fn internal(app: &TestApp) -> UserInternalServiceClient<Channel> {
    UserInternalServiceClient::new(app.channel().await)
}

async fn users(app: &TestApp) -> UserServiceClient<Channel> {
    app.users().await
}

async fn follow(app: &TestApp, who: &User, whom: &User) {
    let request = authed(&who.token, pb::FollowUserRequest { user_id: whom.id.clone() });
    users(app).await.follow_user(request).await.expect("follow");
}

async fn unfollow(app: &TestApp, who: &User, whom: &User) {
    let request = authed(&who.token, pb::UnfollowUserRequest { user_id: whom.id.clone() });
    users(app).await.unfollow_user(request).await.expect("unfollow");
}

async fn follower_ids(app: &TestApp, user_id: &str, page_size: i32, page_token: String) -> pb::ListFollowerIdsResponse {
    let request = pb::ListFollowerIdsRequest { user_id: user_id.into(), page_size, page_token };
    let request = authed(&app.service_token("feed"), request);
    internal(app).await.list_follower_ids(request).await.expect("follower ids").into_inner()
}

/// Every page of a user's follower ids, and the total each page stated.
async fn all_follower_ids(app: &TestApp, user_id: &str, page_size: i32) -> (Vec<String>, Vec<i64>) {
    let (mut ids, mut totals, mut token) = (Vec::new(), Vec::new(), String::new());
    loop {
        let page = follower_ids(app, user_id, page_size, token).await;
        assert!(page.user_ids.len() <= page_size.max(1) as usize, "a page holds at most its size");
        ids.extend(page.user_ids);
        totals.push(page.total_size);
        if page.next_page_token.is_empty() {
            return (ids, totals);
        }
        token = page.next_page_token;
    }
}

async fn followees(app: &TestApp, user_id: &str) -> Vec<(String, u64)> {
    let request = authed(&app.service_token("feed"), pb::ListFollowingIdsRequest { user_id: user_id.into() });
    let answer = internal(app).await.list_following_ids(request).await.expect("following ids").into_inner();
    answer.followees.into_iter().map(|f| (f.user_id, f.follow_id.parse().expect("a decimal follow id"))).collect()
}

/// The total the public ListFollowers states, as `viewer` sees it.
async fn public_follower_total(app: &TestApp, viewer: &User, of: &User) -> i64 {
    let request = pb::ListFollowersRequest { user_id: of.id.clone(), ..Default::default() };
    let answer = users(app).await.list_followers(authed(&viewer.token, request)).await.expect("followers");
    answer.into_inner().total_size
}

#[tokio::test]
async fn follower_id_pages_cover_every_follower_once_newest_first_with_the_public_total() {
    let app = TestApp::spawn().await;
    let star = app.user("star").await;
    let mut fans = Vec::new();
    for i in 0..9 {
        let fan = app.user(&format!("fan{i}")).await;
        follow(&app, &fan, &star).await;
        fans.push(fan);
    }
    let newest_first: Vec<String> = fans.iter().rev().map(|f| f.id.clone()).collect();

    let (ids, totals) = all_follower_ids(&app, &star.id, 4).await;
    assert_eq!(ids, newest_first, "every follower once, newest follow first");
    assert_eq!(totals, [9, 9, 9], "three pages, each stating every follower");
    assert_eq!(public_follower_total(&app, &star, &star).await, 9);
    let whole = follower_ids(&app, &star.id, 0, String::new()).await;
    assert_eq!((whole.user_ids, whole.next_page_token.as_str()), (newest_first, ""), "1,000 by default: one page");

    // a deleted follower is neither listed nor counted
    let gone = fans.remove(4);
    let delete = authed(&gone.token, pb::DeleteMeRequest { current_password: "correct horse battery".into() });
    users(&app).await.delete_me(delete).await.expect("deleted");
    let (ids, totals) = all_follower_ids(&app, &star.id, 4).await;
    assert!(!ids.contains(&gone.id), "{ids:?}");
    assert_eq!(ids, fans.iter().rev().map(|f| f.id.clone()).collect::<Vec<_>>());
    assert!(totals.iter().all(|total| *total == 8), "{totals:?}");
    assert_eq!(public_follower_total(&app, &star, &star).await, 8);

    let nobody = follower_ids(&app, "12345", 0, String::new()).await;
    assert_eq!((nobody.user_ids.len(), nobody.total_size), (0, 0), "an unknown user has no followers");
}

#[tokio::test]
async fn following_ids_carry_larger_follow_ids_for_later_follows() {
    let app = TestApp::spawn().await;
    let fan = app.user("fan").await;
    let (ada, bob, cy) = (app.user("ada").await, app.user("bob").await, app.user("cy").await);
    for whom in [&ada, &bob, &cy] {
        follow(&app, &fan, whom).await;
    }
    let listed = followees(&app, &fan.id).await;
    let order: Vec<&str> = listed.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(order, [cy.id.as_str(), bob.id.as_str(), ada.id.as_str()], "newest follow first");
    assert!(listed.windows(2).all(|pair| pair[0].1 > pair[1].1), "a later follow has a larger id: {listed:?}");

    // following again is a new follow, with a new, larger id
    let before = listed.iter().map(|(_, follow_id)| *follow_id).max().expect("follows");
    unfollow(&app, &fan, &bob).await;
    follow(&app, &fan, &bob).await;
    let listed = followees(&app, &fan.id).await;
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].0, bob.id);
    assert!(listed[0].1 > before, "{listed:?}");
    assert!(followees(&app, "12345").await.is_empty(), "an unknown user follows nobody");
}

/// The field an INVALID_ARGUMENT names in its BadRequest.
fn violated_field(status: &Status) -> String {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status.get_error_details();
    let violations = details.bad_request().map(|b| b.field_violations.clone()).unwrap_or_default();
    violations.first().map(|v| v.field.clone()).unwrap_or_default()
}

#[tokio::test]
async fn the_id_lists_take_service_principals_only_and_name_the_field_they_refuse() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let mut client = internal(&app).await;
    let followers = |user_id: &str, page_token: &str| pb::ListFollowerIdsRequest {
        user_id: user_id.into(),
        page_size: 0,
        page_token: page_token.into(),
    };
    let following = |user_id: &str| pb::ListFollowingIdsRequest { user_id: user_id.into() };

    let status = client.list_follower_ids(authed(&ada.token, followers(&ada.id, ""))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = client.list_following_ids(authed(&ada.token, following(&ada.id))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = client.list_follower_ids(followers(&ada.id, "")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    let service = app.service_token("feed");
    for bad in ["", "0", "042", "abc", "10000000000000000000"] {
        let status = client.list_follower_ids(authed(&service, followers(bad, ""))).await.unwrap_err();
        assert_eq!(violated_field(&status), "user_id", "{bad:?}: {status:?}");
        let status = client.list_following_ids(authed(&service, following(bad))).await.unwrap_err();
        assert_eq!(violated_field(&status), "user_id", "{bad:?}: {status:?}");
    }
    let status = client.list_follower_ids(authed(&service, followers(&ada.id, "not-a-token"))).await.unwrap_err();
    assert_eq!(violated_field(&status), "page_token", "{status:?}");
}
