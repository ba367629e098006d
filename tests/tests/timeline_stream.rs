//! The home timeline as server-sent events (GET /api/v1/timeline/stream), read as a browser's
//! EventSource would: new statuses of followed accounts with their ids, deletions, a reconnect
//! with `Last-Event-ID` replaying what was missed once, a reset when the timeline no longer
//! reaches back, and the refusals.

use std::time::Duration;

use chatmesh_api::feed::v1::{CreateStatusRequest, DeleteStatusRequest, Status};
use chatmesh_tests::{TestApp, User, authed};
use serde_json::Value;

/// Only guards against hanging: every wait below ends on the event it waits for.
const WAIT: Duration = Duration::from_secs(30);

/// One server-sent event.
#[derive(Debug)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: Value,
}

/// A stream being read: what arrived and is not parsed yet.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    /// The next event, skipping comment lines (heartbeats).
    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::from("message"), None, String::new());
                for line in block.lines() {
                    match line.split_once(':') {
                        Some(("event", value)) => event = value.trim_start().to_owned(),
                        Some(("id", value)) => id = Some(value.trim_start().to_owned()),
                        Some(("data", value)) => data.push_str(value.trim_start()),
                        _ => {}
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return SseEvent { event, id, data: serde_json::from_str(&data).expect("JSON data") };
            }
            let chunk =
                tokio::time::timeout(WAIT, self.response.chunk()).await.expect("an event before the wait ran out");
            let chunk = chunk.expect("the stream reads").expect("the stream stays open");
            self.buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The next event, which must be `status.created` or `status.deleted`: (event, id, status id).
    async fn next_status(&mut self) -> (String, Option<String>, String) {
        let event = self.next().await;
        let status_id = event.data["status"]["statusId"].as_str().unwrap_or_else(|| panic!("a status: {event:?}"));
        (event.event.clone(), event.id.clone(), status_id.to_owned())
    }
}

/// Opens the stream; `token` goes in `Authorization` unless `in_query`.
async fn open(app: &TestApp, token: &str, in_query: bool, last_event_id: Option<&str>) -> reqwest::Response {
    let url = format!("http://{}/api/v1/timeline/stream", app.rest_addr);
    let mut request = if in_query {
        reqwest::Client::new().get(format!("{url}?token={token}"))
    } else {
        reqwest::Client::new().get(url).header("authorization", format!("Bearer {token}"))
    };
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    request.send().await.expect("the gateway answers")
}

async fn stream(app: &TestApp, who: &User, last_event_id: Option<&str>) -> EventStream {
    let response = open(app, &who.token, false, last_event_id).await;
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(kind.starts_with("text/event-stream"), "{kind}");
    EventStream { response, buffer: String::new() }
}

async fn post(app: &TestApp, who: &User, text: &str) -> Status {
    let request = authed(&who.token, CreateStatusRequest { text: text.into(), ..Default::default() });
    app.feed().await.create_status(request).await.expect("post").into_inner().status.expect("status")
}

fn created(status: &Status) -> (String, Option<String>, String) {
    ("status.created".into(), Some(status.status_id.clone()), status.status_id.clone())
}

#[tokio::test]
async fn a_follower_gets_new_statuses_with_their_ids_and_deletions_without() {
    let app = TestApp::spawn().await;
    let ada = app.person("ada", "Ada").await;
    let bob = app.person("bob", "Bob").await;
    let cyd = app.person("cyd", "Cyd").await;
    app.follow(&bob, &ada).await;
    let mut events = stream(&app, &bob, None).await;

    let first = post(&app, &ada, "first #rust").await;
    let event = events.next().await;
    assert_eq!((event.event.as_str(), event.id.as_deref()), ("status.created", Some(first.status_id.as_str())));
    assert_eq!(event.data["status"]["text"], "first #rust");
    assert_eq!(event.data["status"]["authorId"].as_str(), Some(ada.id.as_str()));

    post(&app, &cyd, "bob does not follow cyd").await;
    let own = post(&app, &bob, "my own").await;
    assert_eq!(events.next_status().await, created(&own), "cyd's status never came");
    let request = authed(&ada.token, DeleteStatusRequest { status_id: first.status_id.clone() });
    app.feed().await.delete_status(request).await.expect("delete");
    assert_eq!(events.next_status().await, ("status.deleted".into(), None, first.status_id.clone()));
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_replays_what_it_missed_once_then_goes_on_live() {
    let app = TestApp::spawn().await;
    let ada = app.person("ada", "Ada").await;
    let bob = app.person("bob", "Bob").await;
    app.follow(&bob, &ada).await;
    let mut events = stream(&app, &bob, None).await;
    let seen = post(&app, &ada, "seen live").await;
    assert_eq!(events.next_status().await, created(&seen));
    drop(events);

    let missed = [post(&app, &ada, "missed one").await, post(&app, &ada, "missed two").await];
    // as EventSource reconnects: the token in the query, the last id in the header
    let response = open(&app, &bob.token, true, Some(&seen.status_id)).await;
    assert_eq!(response.status(), 200);
    let mut events = EventStream { response, buffer: String::new() };
    for status in &missed {
        assert_eq!(events.next_status().await, created(status), "replayed oldest first");
    }
    let live = post(&app, &ada, "live again").await;
    assert_eq!(events.next_status().await, created(&live), "nothing replayed twice");
}

#[tokio::test]
async fn a_last_event_id_the_timeline_no_longer_reaches_resets_it() {
    let app = TestApp::spawn().await;
    let ada = app.person("ada", "Ada").await;
    let bob = app.person("bob", "Bob").await;
    app.follow(&bob, &ada).await;
    post(&app, &ada, "newer than anything bob saw").await;
    let mut events = stream(&app, &bob, Some("1")).await;
    let reset = events.next().await;
    assert_eq!((reset.event.as_str(), reset.id), ("timeline.reset", None));
    assert!(reset.data["reason"].as_str().is_some_and(|r| r.contains("reload")), "{:?}", reset.data);
    let live = post(&app, &ada, "and then live").await;
    assert_eq!(events.next_status().await, created(&live));
}

#[tokio::test]
async fn the_stream_refuses_missing_and_bad_tokens_and_a_bad_last_event_id() {
    let app = TestApp::spawn().await;
    let bob = app.person("bob", "Bob").await;
    let url = format!("http://{}/api/v1/timeline/stream", app.rest_addr);
    let anonymous = reqwest::get(&url).await.expect("answers");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert_eq!(open(&app, "not-a-token", false, None).await.status(), 401);
    assert_eq!(open(&app, "not-a-token", true, None).await.status(), 401);
    let bad = open(&app, &bob.token, false, Some("latest")).await;
    assert_eq!(bad.status(), 400);
    let body: Value = serde_json::from_slice(&bad.bytes().await.expect("a body")).expect("the error body");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("Last-Event-ID")), "{body}");
}
