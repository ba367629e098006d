//! Reports of statuses from outside: filed against the status's author and merged per reporter
//! and status, refused (and not stored) for a status the reporter cannot read, and resolved by
//! an admin's deletion, which takes the status out of every list as its author's would.

use chatmesh_api::{
    feed::v1 as feed,
    user::v1::{self as pb, user_service_client::UserServiceClient},
};
use chatmesh_tests::{Rest, TestApp, User, authed, reason, refused};
use serde_json::json;
use tonic::{Code, Status, transport::Channel};

async fn users(app: &TestApp) -> UserServiceClient<Channel> {
    app.users().await
}

async fn post(app: &TestApp, who: &User, text: &str) -> String {
    let request = authed(&who.token, feed::CreateStatusRequest { text: text.into(), ..Default::default() });
    let status = app.feed().await.create_status(request).await.expect("post").into_inner().status.expect("status");
    status.status_id
}

fn of_status(status_id: &str, text: &str) -> pb::CreateReportRequest {
    pb::CreateReportRequest {
        status_id: status_id.into(),
        category: pb::ReportCategory::Hate as i32,
        text: text.into(),
        ..Default::default()
    }
}

async fn file(app: &TestApp, who: &User, request: pb::CreateReportRequest) -> Result<pb::Report, Status> {
    Ok(users(app).await.create_report(authed(&who.token, request)).await?.into_inner().report.expect("report"))
}

async fn report(app: &TestApp, who: &User, status_id: &str, text: &str) -> Result<pb::Report, Status> {
    file(app, who, of_status(status_id, text)).await
}

/// The open reports of `target`, as the admin `root` lists them.
async fn open_reports_of(app: &TestApp, root: &User, target: &User) -> Vec<pb::Report> {
    let request = pb::ListReportsRequest { target_user_id: target.id.clone(), ..Default::default() };
    users(app).await.list_reports(authed(&root.token, request)).await.expect("reports").into_inner().reports
}

async fn resolve(app: &TestApp, who: &User, report_id: &str, action: pb::ReportAction) -> Result<pb::Report, Status> {
    let request = pb::ResolveReportRequest { report_id: report_id.into(), action: action as i32, suspend_seconds: 0 };
    Ok(users(app).await.resolve_report(authed(&who.token, request)).await?.into_inner().report.expect("report"))
}

async fn get_status(app: &TestApp, who: &User, status_id: &str) -> Result<feed::Status, Status> {
    let request = authed(&who.token, feed::GetStatusRequest { status_id: status_id.into() });
    Ok(app.feed().await.get_status(request).await?.into_inner().status.expect("status"))
}

fn ids(statuses: Vec<feed::Status>) -> Vec<String> {
    statuses.into_iter().map(|s| s.status_id).collect()
}

/// The first page of each list the status can be in: its author's, `follower`'s home timeline,
/// the tag's, and what `liker` liked.
async fn lists_holding(app: &TestApp, author: &User, follower: &User, liker: &User, tag: &str) -> [Vec<String>; 4] {
    let mut client = app.feed().await;
    let own = feed::ListUserStatusesRequest { user_id: author.id.clone(), ..Default::default() };
    let own = client.list_user_statuses(authed(&follower.token, own)).await.expect("statuses").into_inner();
    let home = feed::ListHomeTimelineRequest::default();
    let home = client.list_home_timeline(authed(&follower.token, home)).await.expect("timeline").into_inner();
    let tagged = feed::ListTagStatusesRequest { tag: tag.into(), ..Default::default() };
    let tagged = client.list_tag_statuses(authed(&follower.token, tagged)).await.expect("tag").into_inner();
    let liked = feed::ListUserLikesRequest { user_id: liker.id.clone(), ..Default::default() };
    let liked = client.list_user_likes(authed(&liker.token, liked)).await.expect("likes").into_inner();
    [ids(own.statuses), ids(home.statuses), ids(tagged.statuses), ids(liked.statuses)]
}

#[tokio::test]
async fn a_status_report_names_the_author_and_a_second_report_by_the_same_reporter_merges() {
    let app = TestApp::spawn().await;
    let (ada, bob, cy, root) =
        (app.user("ada").await, app.user("bob").await, app.user("cy").await, app.user("root").await);
    app.grant_admin("root@example.com").await;
    let status = post(&app, &ada, "something hateful").await;

    let first = report(&app, &bob, &status, "hateful").await.unwrap();
    assert_eq!(
        (first.target_user_id.as_str(), first.target_status_id.as_str(), first.target_chat_id.as_str()),
        (ada.id.as_str(), status.as_str(), ""),
        "a status report names its author: {first:?}"
    );
    assert_eq!(first.status, pb::ReportStatus::Open as i32);
    // naming the author as the user changes nothing; the report merges into the open one
    let named = pb::CreateReportRequest { user_id: ada.id.clone(), ..of_status(&status, "still") };
    let merged = file(&app, &bob, named).await.unwrap();
    assert_eq!((merged.report_id.as_str(), merged.text.as_str()), (first.report_id.as_str(), "still"));
    // another reporter files their own
    let other = report(&app, &cy, &status, "hateful").await.unwrap();
    assert_ne!(other.report_id, first.report_id);
    let open = open_reports_of(&app, &root, &ada).await;
    assert_eq!(open.len(), 2, "one open report per reporter: {open:?}");
    assert!(open.iter().all(|r| r.target_status_id == status), "{open:?}");

    // a user that is not the author, the author's own report, and a chat with the status
    let wrong = pb::CreateReportRequest { user_id: cy.id.clone(), ..of_status(&status, "x") };
    refused(file(&app, &bob, wrong).await, Code::FailedPrecondition, "REPORTED_USER_MISMATCH");
    refused(report(&app, &ada, &status, "me").await, Code::PermissionDenied, "SELF_RELATION");
    let both = pb::CreateReportRequest { chat_id: "5".into(), channel_id: "3".into(), ..of_status(&status, "x") };
    let refusal = file(&app, &bob, both).await.unwrap_err();
    assert_eq!(refusal.code(), Code::InvalidArgument);
    assert!(refusal.message().starts_with("status_id: "), "names the field: {}", refusal.message());
    assert_eq!(open_reports_of(&app, &root, &ada).await.len(), 2, "no refusal stored a report");
}

#[tokio::test]
async fn reporting_a_status_the_reporter_cannot_read_is_not_found_and_stores_no_report() {
    let app = TestApp::spawn().await;
    let (ada, bob, root) = (app.user("ada").await, app.user("bob").await, app.user("root").await);
    app.grant_admin("root@example.com").await;

    refused(report(&app, &bob, "123456789", "nothing").await, Code::NotFound, "STATUS_NOT_FOUND");

    let deleted = post(&app, &ada, "gone soon").await;
    let delete = authed(&ada.token, feed::DeleteStatusRequest { status_id: deleted.clone() });
    app.feed().await.delete_status(delete).await.expect("deleted by its author");
    refused(report(&app, &bob, &deleted, "late").await, Code::NotFound, "STATUS_NOT_FOUND");

    let hidden = post(&app, &ada, "not for bob").await;
    app.block(&ada, &bob).await;
    refused(get_status(&app, &bob, &hidden).await, Code::PermissionDenied, "USER_BLOCKED");
    let refusal = report(&app, &bob, &hidden, "blocked").await.unwrap_err();
    assert_eq!((refusal.code(), reason(&refusal).as_str()), (Code::NotFound, "STATUS_NOT_FOUND"), "{refusal:?}");
    assert!(!refusal.message().contains("block"), "the block is not told: {}", refusal.message());

    assert_eq!(open_reports_of(&app, &root, &ada).await, Vec::new(), "nothing was stored");
    let every = users(&app).await.list_reports(authed(&root.token, pb::ListReportsRequest::default())).await;
    assert_eq!(every.unwrap().into_inner().reports, Vec::new());
}

#[tokio::test]
async fn an_admin_resolving_a_status_report_with_delete_status_takes_the_status_out_of_every_list() {
    let app = TestApp::spawn().await;
    let (ada, bob, cy, root) =
        (app.user("ada").await, app.user("bob").await, app.user("cy").await, app.user("root").await);
    app.grant_admin("root@example.com").await;
    app.follow(&cy, &ada).await;
    let status = post(&app, &ada, "vile #moderated words").await;
    let like = authed(&bob.token, feed::LikeStatusRequest { status_id: status.clone() });
    app.feed().await.like_status(like).await.expect("liked");
    let before = lists_holding(&app, &ada, &cy, &bob, "moderated").await;
    for (list, held) in ["author's", "follower's home", "tag's", "liker's"].iter().zip(&before) {
        assert_eq!(held, &vec![status.clone()], "in the {list} list before");
    }

    let filed = report(&app, &bob, &status, "vile").await.unwrap();
    refused(
        resolve(&app, &bob, &filed.report_id, pb::ReportAction::DeleteStatus).await,
        Code::PermissionDenied,
        "ADMIN_ONLY",
    );
    refused(
        resolve(&app, &root, &filed.report_id, pb::ReportAction::RetractChat).await,
        Code::FailedPrecondition,
        "NOT_A_CHAT_REPORT",
    );
    get_status(&app, &cy, &status).await.expect("refusals delete nothing");

    let resolved = resolve(&app, &root, &filed.report_id, pb::ReportAction::DeleteStatus).await.unwrap();
    assert_eq!(
        (resolved.status, resolved.action, resolved.resolved_by.as_str()),
        (pb::ReportStatus::Resolved as i32, pb::ReportAction::DeleteStatus as i32, root.id.as_str())
    );
    for reader in [&ada, &bob, &cy] {
        refused(get_status(&app, reader, &status).await, Code::NotFound, "STATUS_NOT_FOUND");
    }
    let after = lists_holding(&app, &ada, &cy, &bob, "moderated").await;
    assert_eq!(after, [Vec::<String>::new(), Vec::new(), Vec::new(), Vec::new()], "gone from every list");
    refused(
        resolve(&app, &root, &filed.report_id, pb::ReportAction::DeleteStatus).await,
        Code::FailedPrecondition,
        "REPORT_ALREADY_RESOLVED",
    );

    // a report of a user has no status to delete: refused, and it stays open
    let of_user = pb::CreateReportRequest { user_id: ada.id.clone(), status_id: String::new(), ..of_status("", "") };
    let user_report = file(&app, &cy, of_user).await.unwrap();
    refused(
        resolve(&app, &root, &user_report.report_id, pb::ReportAction::DeleteStatus).await,
        Code::FailedPrecondition,
        "NOT_A_STATUS_REPORT",
    );
    let open = open_reports_of(&app, &root, &ada).await;
    assert_eq!(open.iter().map(|r| r.report_id.as_str()).collect::<Vec<_>>(), [user_report.report_id.as_str()]);
}

#[tokio::test]
async fn a_status_report_over_rest_takes_a_status_id() {
    let app = TestApp::spawn().await;
    let rest = Rest { app: &app };
    let (ada, bob) = (app.user("ada").await, app.user("bob").await);
    let status = post(&app, &ada, "over rest").await;

    let body = json!({"statusId": status, "category": "REPORT_CATEGORY_SPAM", "text": "spam"});
    let (code, filed) = rest.authed("POST", "/api/v1/reports", &bob.token, body).await;
    assert_eq!(code, 200, "{filed}");
    assert_eq!(
        (filed["report"]["targetStatusId"].as_str(), filed["report"]["targetUserId"].as_str()),
        (Some(status.as_str()), Some(ada.id.as_str())),
        "{filed}"
    );
    assert_eq!(filed["report"]["status"], "REPORT_STATUS_OPEN", "{filed}");

    let both = json!({"statusId": status, "chatId": "5", "channelId": "3", "category": "REPORT_CATEGORY_SPAM"});
    let (code, refusal) = rest.authed("POST", "/api/v1/reports", &bob.token, both).await;
    assert_eq!((code, refusal["status"].as_str()), (400, Some("INVALID_ARGUMENT")), "{refusal}");
    assert!(refusal["message"].as_str().is_some_and(|m| m.starts_with("status_id")), "{refusal}");
    let missing = json!({"statusId": "123456789", "category": "REPORT_CATEGORY_SPAM"});
    let (code, refusal) = rest.authed("POST", "/api/v1/reports", &bob.token, missing).await;
    assert_eq!((code, refusal["details"][0]["reason"].as_str()), (404, Some("STATUS_NOT_FOUND")), "{refusal}");
}
