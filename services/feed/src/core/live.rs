//! Live delivery of statuses: each fan-out page's followers (and the author) get
//! `status.created` through the dispatcher; a deletion, and a celebrity's post (which has no
//! fan-out), page through the followers for it. Best effort: nothing is logged for these
//! events, a client that was away reads its timeline.

use chatmesh_api::dispatcher::v1::{
    FeedEvent, FeedEventType, PublishToUsersRequest,
    dispatcher_internal_service_client::DispatcherInternalServiceClient,
};
use chatmesh_platform::grpc::InternalChannel;

use super::{FeedCore, Scope};
use crate::{convert::status_pb, error::FeedError};

/// The dispatcher, as the feed reaches it.
#[derive(Clone)]
pub struct Live {
    dispatcher: DispatcherInternalServiceClient<InternalChannel>,
}

impl Live {
    pub fn new(dispatcher: InternalChannel) -> Self {
        Self { dispatcher: DispatcherInternalServiceClient::new(dispatcher) }
    }
}

impl FeedCore {
    /// The `status.created` event of a status, as its author's followers see it; `None` when
    /// it is gone (deleted before the event was made).
    pub(super) async fn created_event(&self, author: u64, status_id: u64) -> Result<Option<FeedEvent>, FeedError> {
        let Some(view) = self.visible(author, &[status_id], Scope::ById).await?.pop() else { return Ok(None) };
        let mut status = status_pb(view);
        status.relation = None;
        Ok(Some(feed_event(FeedEventType::StatusCreated, status)))
    }

    /// Hands `event` to the live sessions of `users`, in the background; a failure is logged.
    pub(super) fn announce(&self, users: Vec<u64>, event: &FeedEvent) {
        let Some(live) = self.live.clone() else { return };
        for chunk in users.chunks(chatmesh_wire::dispatcher::MAX_PUBLISH_USER_IDS) {
            let request = PublishToUsersRequest {
                user_ids: chunk.iter().map(u64::to_string).collect(),
                event: Some(event.clone()),
            };
            let live = live.clone();
            tokio::spawn(async move {
                if let Err(status) = live.dispatcher.clone().publish_to_users(request).await {
                    tracing::warn!(code = ?status.code(), message = status.message(), "live status event not delivered");
                }
            });
        }
    }

    /// Announces a new status in the background: to `readers` (the author and the first
    /// fan-out page), or to every follower when `readers` is `None` (a celebrity's post).
    pub(super) fn announce_created(&self, author: u64, status_id: u64, readers: Option<Vec<u64>>) {
        if self.live.is_none() {
            return;
        }
        let core = self.clone();
        tokio::spawn(async move {
            match core.created_event(author, status_id).await {
                Ok(Some(event)) => match readers {
                    Some(readers) => core.announce(readers, &event),
                    None => core.announce_to_followers(author, event),
                },
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, status_id, "live status event not made"),
            }
        });
    }

    /// Hands `event` to the author and every follower's live sessions, page by page, in the
    /// background (a celebrity's post, a deletion).
    pub(super) fn announce_to_followers(&self, author: u64, event: FeedEvent) {
        if self.live.is_none() {
            return;
        }
        let core = self.clone();
        tokio::spawn(async move {
            core.announce(vec![author], &event);
            let mut token = String::new();
            loop {
                let page = match core.graph.follower_page(author, &token, core.settings.fanout_page).await {
                    Ok(page) => page,
                    Err(error) => {
                        tracing::warn!(%error, author, "followers for a live event not read");
                        return;
                    }
                };
                core.announce(page.user_ids, &event);
                if page.next_page_token.is_empty() {
                    return;
                }
                token = page.next_page_token;
            }
        });
    }
}

/// The `status.deleted` event: the status's id, marked deleted.
pub(super) fn deleted_event(status_id: u64) -> FeedEvent {
    let status =
        chatmesh_api::feed::v1::Status { status_id: status_id.to_string(), deleted: true, ..Default::default() };
    feed_event(FeedEventType::StatusDeleted, status)
}

fn feed_event(kind: FeedEventType, status: chatmesh_api::feed::v1::Status) -> FeedEvent {
    let status = prost_types::Any {
        type_url: "type.googleapis.com/chatmesh.feed.v1.Status".into(),
        value: prost::Message::encode_to_vec(&status),
    };
    FeedEvent { r#type: kind as i32, status: Some(status) }
}
