//! The home timeline as server-sent events (seed 001 streamed the feed over SSE):
//! `GET /api/v1/timeline/stream`. Live events come from the dispatcher (`Subscribe`, the
//! caller's own events only), so a status posted through any process reaches every gateway.
//!
//! - `status.created` carries a new status of an account the caller follows (or their own),
//!   with the status id as the event id; `status.deleted` carries a deletion, with no id.
//! - A reconnect with `Last-Event-ID` first replays, oldest first, the statuses of the home
//!   timeline after that one, then goes on live with nothing twice. When the timeline no longer
//!   reaches back to it (the client was away too long), `timeline.reset` says to reload the
//!   timeline instead, and live events follow.
//! - Comment lines every 15 s keep idle connections open; when live delivery ends (a
//!   dispatcher restarted, the login session logged out), `closed` carries the reason in the
//!   error shape and the stream ends; EventSource clients reconnect on their own.

use std::{collections::HashSet, convert::Infallible, sync::Arc, time::Duration};

use axum::{
    extract::{Query, Request},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use chatmesh_api::{
    dispatcher::v1::{
        SubscribeRequest, SubscribeResponse, dispatcher_service_client::DispatcherServiceClient, live_event,
    },
    feed::v1::{ListHomeTimelineRequest, Status, feed_service_client::FeedServiceClient},
};
use chatmesh_platform::{ErrorCode, auth::bearer_token, error::http_error_body, error::http_response};
use chatmesh_wire::frames::{self, feed::STATUS_CREATED};
use http::{HeaderValue, header};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::{StreamExt, wrappers::ReceiverStream};

use crate::{State, forward, status_response};

/// The route.
pub const PATH: &str = "/api/v1/timeline/stream";
/// How often an idle stream sends a comment line.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Events waiting for a slow client, at most; past that the stream waits on it.
const QUEUE: usize = 64;
/// A replay reads the home timeline this many statuses at a time (its page maximum)...
const REPLAY_PAGE: i32 = 100;
/// ...for at most this many pages (the timeline's cap, 1,000 entries, is reached first).
const REPLAY_PAGES: usize = 10;

/// Event names besides the feed's own.
const TIMELINE_RESET: &str = "timeline.reset";
const CLOSED: &str = "closed";

/// `GET /api/v1/timeline/stream`: the bearer token from `Authorization`, or from `?token=` for
/// browsers' EventSource, which cannot set headers.
pub async fn timeline(state: Arc<State>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let query = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map(|q| q.0).unwrap_or_default();
    let token = match bearer_token(&parts.headers) {
        Ok(token) => token.to_owned(),
        Err(e) => match query.iter().find(|(name, _)| name == "token") {
            Some((_, token)) if !token.is_empty() => token.clone(),
            _ => return unauthenticated(&e.to_string()),
        },
    };
    if let Err(e) = state.auth.verify(&token) {
        return unauthenticated(&e.to_string());
    }
    let last_event_id = match parts.headers.get("last-event-id") {
        None => None,
        Some(value) => match value.to_str().ok().and_then(chatmesh_wire::ids::parse_id) {
            Some(id) => Some(id),
            None => return http_response(ErrorCode::InvalidArgument, "Last-Event-ID: is not a valid status id"),
        },
    };
    let caller = Caller { headers: &parts.headers, authorization: format!("Bearer {token}") };
    // why: subscribed before the replay is read, so a status posted meanwhile is in one or the other.
    let subscribe = SubscribeRequest { user_events_only: true, ..Default::default() };
    let live = match DispatcherServiceClient::new(state.services.clone()).subscribe(caller.call(subscribe)).await {
        Ok(live) => live.into_inner(),
        Err(status) => return status_response(&status),
    };
    let replay = match last_event_id {
        None => Replay::default(),
        Some(after) => match replay_after(&state, after, &caller).await {
            Ok(replay) => replay,
            Err(status) => return status_response(&status),
        },
    };
    let (events, stream) = mpsc::channel(QUEUE);
    tokio::spawn(relay(live, replay, events));
    let mut response =
        Sse::new(ReceiverStream::new(stream)).keep_alive(KeepAlive::new().interval(HEARTBEAT)).into_response();
    // why: proxies that buffer responses (nginx) would hold events back
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Who the stream's calls are made as: the client's headers, with its token however it came.
struct Caller<'a> {
    headers: &'a http::HeaderMap,
    authorization: String,
}

impl Caller<'_> {
    fn call<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        forward(self.headers, &mut request);
        if let Ok(value) = self.authorization.parse() {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }
}

fn unauthenticated(message: &str) -> Response {
    let mut response = http_response(ErrorCode::Unauthenticated, message);
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// What a reconnect missed: the statuses after its last event, oldest first; or, when the
/// timeline no longer reaches back to that event, none and a reset.
#[derive(Debug, Default)]
struct Replay {
    statuses: Vec<Status>,
    reset: bool,
}

/// Reads the home timeline, newest first, down to the first status at or before `after`.
async fn replay_after(state: &State, after: u64, caller: &Caller<'_>) -> Result<Replay, tonic::Status> {
    let mut feed = FeedServiceClient::new(state.services.clone());
    let mut statuses = Vec::new();
    let mut page_token = String::new();
    for _ in 0..REPLAY_PAGES {
        let page = ListHomeTimelineRequest { page_size: REPLAY_PAGE, page_token };
        let page = feed.list_home_timeline(caller.call(page)).await?.into_inner();
        for status in page.statuses {
            if status_id(&status).is_none_or(|id| id <= after) {
                statuses.reverse();
                return Ok(Replay { statuses, reset: false });
            }
            statuses.push(status);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Ok(Replay { statuses: Vec::new(), reset: true })
}

fn status_id(status: &Status) -> Option<u64> {
    status.status_id.parse().ok()
}

fn created(status: &Status) -> Event {
    let data = json!({ "status": frames::to_json(status, "chatmesh.feed.v1.Status") });
    Event::default().event(STATUS_CREATED).id(status.status_id.clone()).data(data.to_string())
}

/// Sends the replay, then the live events (skipping what the replay already sent) until the
/// client goes away or live delivery ends.
async fn relay(
    mut live: tonic::Streaming<SubscribeResponse>,
    replay: Replay,
    events: mpsc::Sender<Result<Event, Infallible>>,
) {
    let replayed: HashSet<String> = replay.statuses.iter().map(|s| s.status_id.clone()).collect();
    if replay.reset {
        let reset = json!({ "reason": "the timeline no longer reaches back to Last-Event-ID; reload it (GET /api/v1/timeline)" });
        if events.send(Ok(Event::default().event(TIMELINE_RESET).data(reset.to_string()))).await.is_err() {
            return;
        }
    }
    for status in &replay.statuses {
        if events.send(Ok(created(status))).await.is_err() {
            return;
        }
    }
    loop {
        let next = tokio::select! {
            () = events.closed() => return,
            next = live.next() => next,
        };
        let event = match next {
            Some(Ok(SubscribeResponse { event: Some(event) })) => match event.event {
                Some(live_event::Event::FeedEvent(feed)) => match frames::feed_event(&feed) {
                    Some((name, data)) => {
                        let id = data["status"]["statusId"].as_str().unwrap_or_default().to_owned();
                        if name == STATUS_CREATED && replayed.contains(&id) {
                            continue;
                        }
                        let event = Event::default().event(name).data(data.to_string());
                        if name == STATUS_CREATED { event.id(id) } else { event }
                    }
                    None => continue,
                },
                // why: this subscription follows no channel; anything else is not the timeline's
                _ => continue,
            },
            Some(Ok(SubscribeResponse { event: None })) => continue,
            Some(Err(status)) => return close(&events, &status).await,
            None => return close(&events, &tonic::Status::unavailable("live delivery ended; reconnect")).await,
        };
        if events.send(Ok(event)).await.is_err() {
            return;
        }
    }
}

/// Ends the stream with why live delivery ended, in the one error shape.
async fn close(events: &mpsc::Sender<Result<Event, Infallible>>, status: &tonic::Status) {
    let (_, body) = http_error_body(status);
    let _ = events.send(Ok(Event::default().event(CLOSED).data(body.to_string()))).await;
}

/// The route in the OpenAPI document.
pub fn operation() -> serde_json::Value {
    let error = json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}});
    json!({
        "operationId": "TimelineStream",
        "tags": ["FeedService"],
        "summary": "The home timeline as server-sent events",
        "description": "`status.created` (id: the status id; data: {\"status\": Status}) for each new status of the accounts the caller follows and their own; `status.deleted` (no id) for deletions; after a reconnect with `Last-Event-ID`, the statuses missed are replayed first, oldest first, or `timeline.reset` says to reload the timeline; `closed` (data: the error body) ends the stream when live delivery ends. Comment lines every 15 s keep it open. Browsers' EventSource, which cannot set headers, may give the token as `?token=`.",
        "parameters": [
            {"name": "Last-Event-ID", "in": "header", "required": false, "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,18}$"}, "description": "the id of the last status received"},
            {"name": "token", "in": "query", "required": false, "schema": {"type": "string"}, "description": "the access token, when no Authorization header can be set"},
        ],
        "responses": {
            "200": {"description": "OK", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
            "400": {"description": "Bad Request", "content": error},
            "401": {"description": "Unauthorized", "content": error},
            "503": {"description": "Service Unavailable", "content": error},
        },
        "security": [{"bearer": []}],
    })
}
