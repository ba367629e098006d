//! The tonic handlers of FeedService and FeedInternalService: wire → core → protobuf.

use std::sync::Arc;

use chatmesh_api::feed::v1::{
    self as pb, feed_internal_service_server::FeedInternalService, feed_service_server::FeedService,
};
use chatmesh_platform::{
    auth::user_of,
    blocks::BlockClient,
    config::FeedConfig,
    grpc::InternalChannel,
    ids::{IdGenerator, timestamp},
    page::encode_token,
};
use chatmesh_wire::feed as wire;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    convert::{status_pb, statuses_pb},
    core::{FeedCore, Live},
    graph::Graph,
    store::FeedStore,
};

/// FeedService: the public surface.
#[derive(Clone)]
pub struct FeedApi {
    core: Arc<FeedCore>,
}

impl std::fmt::Debug for FeedApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedApi").finish_non_exhaustive()
    }
}

/// FeedInternalService: what moderation asks of the feed (service principals only).
#[derive(Clone)]
pub struct FeedInternalApi {
    core: Arc<FeedCore>,
}

impl std::fmt::Debug for FeedInternalApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedInternalApi").finish_non_exhaustive()
    }
}

impl FeedApi {
    /// The service over its store; `users` reaches the user service (profiles, followers,
    /// follows), `blocks` answers block checks with the shared epochs, `dispatcher` (when this
    /// process reaches one) carries live events.
    pub fn new(
        settings: FeedConfig,
        store: Arc<dyn FeedStore>,
        ids: Arc<IdGenerator>,
        users: InternalChannel,
        blocks: BlockClient,
        dispatcher: Option<InternalChannel>,
    ) -> Self {
        let graph = Graph::new(users, blocks);
        let live = dispatcher.map(Live::new);
        Self { core: Arc::new(FeedCore::new(store, graph, ids, settings, live)) }
    }

    /// The internal surface over the same core.
    pub fn internal(&self) -> FeedInternalApi {
        FeedInternalApi { core: self.core.clone() }
    }

    /// Fan-out jobs, scheduled statuses and trends, until `stop` is cancelled.
    pub async fn run_workers(&self, stop: CancellationToken) {
        FeedCore::clone(&self.core).run_workers(stop).await;
    }
}

#[tonic::async_trait]
impl FeedService for FeedApi {
    async fn create_status(
        &self,
        request: Request<pb::CreateStatusRequest>,
    ) -> Result<Response<pb::CreateStatusResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let new = wire::create_status(request.get_ref())?;
        let status = self.core.create_status(caller, new.text, new.in_reply_to, new.publish_at_ms).await?;
        Ok(Response::new(pb::CreateStatusResponse { status: Some(status_pb(status)) }))
    }

    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let target = wire::get_status(request.get_ref())?;
        let status = self.core.get_status(caller, target.status_id).await?;
        Ok(Response::new(pb::GetStatusResponse { status: Some(status_pb(status)) }))
    }

    async fn delete_status(
        &self,
        request: Request<pb::DeleteStatusRequest>,
    ) -> Result<Response<pb::DeleteStatusResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let target = wire::delete_status(request.get_ref())?;
        self.core.delete_status(caller, target.status_id).await?;
        Ok(Response::new(pb::DeleteStatusResponse {}))
    }

    async fn list_user_statuses(
        &self,
        request: Request<pb::ListUserStatusesRequest>,
    ) -> Result<Response<pb::ListUserStatusesResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let page = wire::list_user_statuses(request.get_ref())?;
        let page = self.core.list_user_statuses(caller, page.user_id, page.before, page.limit).await?;
        Ok(Response::new(pb::ListUserStatusesResponse {
            next_page_token: next_token(page.next),
            total_size: total(page.total),
            statuses: statuses_pb(page.items),
        }))
    }

    async fn list_status_replies(
        &self,
        request: Request<pb::ListStatusRepliesRequest>,
    ) -> Result<Response<pb::ListStatusRepliesResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let page = wire::list_status_replies(request.get_ref())?;
        let page = self.core.list_replies(caller, page.status_id, page.before, page.limit).await?;
        Ok(Response::new(pb::ListStatusRepliesResponse {
            next_page_token: next_token(page.next),
            total_size: total(page.total),
            statuses: statuses_pb(page.items),
        }))
    }

    async fn list_tag_statuses(
        &self,
        request: Request<pb::ListTagStatusesRequest>,
    ) -> Result<Response<pb::ListTagStatusesResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let page = wire::list_tag_statuses(request.get_ref())?;
        let page = self.core.list_tag_statuses(caller, &page.tag, page.before, page.limit).await?;
        Ok(Response::new(pb::ListTagStatusesResponse {
            next_page_token: next_token(page.next),
            statuses: statuses_pb(page.items),
        }))
    }

    async fn repost_status(
        &self,
        request: Request<pb::RepostStatusRequest>,
    ) -> Result<Response<pb::RepostStatusResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let target = wire::repost_status(request.get_ref())?;
        let status = self.core.repost(caller, target.status_id).await?;
        Ok(Response::new(pb::RepostStatusResponse { status: Some(status_pb(status)) }))
    }

    async fn undo_repost(
        &self,
        request: Request<pb::UndoRepostRequest>,
    ) -> Result<Response<pb::UndoRepostResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let target = wire::undo_repost(request.get_ref())?;
        self.core.undo_repost(caller, target.status_id).await?;
        Ok(Response::new(pb::UndoRepostResponse {}))
    }

    async fn list_status_reposts(
        &self,
        request: Request<pb::ListStatusRepostsRequest>,
    ) -> Result<Response<pb::ListStatusRepostsResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let page = wire::list_status_reposts(request.get_ref())?;
        let page = self.core.list_reposts(caller, page.status_id, page.before, page.limit).await?;
        Ok(Response::new(pb::ListStatusRepostsResponse {
            next_page_token: next_token(page.next),
            total_size: total(page.total),
            users: page.items,
        }))
    }

    async fn like_status(
        &self,
        request: Request<pb::LikeStatusRequest>,
    ) -> Result<Response<pb::LikeStatusResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let target = wire::like_status(request.get_ref())?;
        let status = self.core.like(caller, target.status_id).await?;
        Ok(Response::new(pb::LikeStatusResponse { status: Some(status_pb(status)) }))
    }

    async fn unlike_status(
        &self,
        request: Request<pb::UnlikeStatusRequest>,
    ) -> Result<Response<pb::UnlikeStatusResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let target = wire::unlike_status(request.get_ref())?;
        self.core.unlike(caller, target.status_id).await?;
        Ok(Response::new(pb::UnlikeStatusResponse {}))
    }

    async fn list_status_likes(
        &self,
        request: Request<pb::ListStatusLikesRequest>,
    ) -> Result<Response<pb::ListStatusLikesResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let page = wire::list_status_likes(request.get_ref())?;
        let page = self.core.list_likes(caller, page.status_id, page.before, page.limit).await?;
        Ok(Response::new(pb::ListStatusLikesResponse {
            next_page_token: next_token(page.next),
            total_size: total(page.total),
            users: page.items,
        }))
    }

    async fn list_user_likes(
        &self,
        request: Request<pb::ListUserLikesRequest>,
    ) -> Result<Response<pb::ListUserLikesResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let page = wire::list_user_likes(request.get_ref())?;
        let page = self.core.list_user_likes(caller, page.user_id, page.before, page.limit).await?;
        Ok(Response::new(pb::ListUserLikesResponse {
            next_page_token: next_token(page.next),
            total_size: total(page.total),
            statuses: statuses_pb(page.items),
        }))
    }

    async fn list_trends(
        &self,
        request: Request<pb::ListTrendsRequest>,
    ) -> Result<Response<pb::ListTrendsResponse>, Status> {
        user_of(&request)?;
        let page = wire::list_trends(request.get_ref())?;
        let (page, refreshed_at_ms) = self.core.list_trends(page.offset, page.limit).await?;
        Ok(Response::new(pb::ListTrendsResponse {
            next_page_token: next_token(page.next),
            trends: page.items.into_iter().map(|(tag, count)| pb::Trend { tag, count: count as i64 }).collect(),
            refresh_time: (refreshed_at_ms > 0).then(|| timestamp(refreshed_at_ms)),
        }))
    }

    async fn list_home_timeline(
        &self,
        request: Request<pb::ListHomeTimelineRequest>,
    ) -> Result<Response<pb::ListHomeTimelineResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let page = wire::list_home_timeline(request.get_ref())?;
        let page = self.core.home_timeline(caller, page.before, page.limit).await?;
        Ok(Response::new(pb::ListHomeTimelineResponse {
            next_page_token: next_token(page.next),
            statuses: statuses_pb(page.items),
        }))
    }

    async fn list_scheduled_statuses(
        &self,
        request: Request<pb::ListScheduledStatusesRequest>,
    ) -> Result<Response<pb::ListScheduledStatusesResponse>, Status> {
        let (caller, _) = user_of(&request)?;
        let page = wire::list_scheduled_statuses(request.get_ref())?;
        let page = self.core.list_scheduled(caller, page.before, page.limit).await?;
        Ok(Response::new(pb::ListScheduledStatusesResponse {
            next_page_token: next_token(page.next),
            statuses: statuses_pb(page.items),
        }))
    }
}

#[tonic::async_trait]
impl FeedInternalService for FeedInternalApi {
    async fn get_status_states(
        &self,
        request: Request<pb::GetStatusStatesRequest>,
    ) -> Result<Response<pb::GetStatusStatesResponse>, Status> {
        let cmd = wire::get_status_states(request.get_ref())?;
        let states = self.core.status_states(cmd.reader_id, &cmd.status_ids).await?;
        let states = states
            .into_iter()
            .map(|(status_id, author_id)| pb::StatusState {
                status_id: status_id.to_string(),
                author_id: author_id.to_string(),
            })
            .collect();
        Ok(Response::new(pb::GetStatusStatesResponse { states }))
    }

    async fn moderate_delete_status(
        &self,
        request: Request<pb::ModerateDeleteStatusRequest>,
    ) -> Result<Response<pb::ModerateDeleteStatusResponse>, Status> {
        let cmd = wire::moderate_delete_status(request.get_ref())?;
        self.core.moderate_delete(cmd.status_id, cmd.moderator_id).await?;
        Ok(Response::new(pb::ModerateDeleteStatusResponse {}))
    }
}

fn next_token(next: Option<u64>) -> String {
    next.map(encode_token).unwrap_or_default()
}

fn total(total: Option<u64>) -> i64 {
    i64::try_from(total.unwrap_or(0)).unwrap_or(i64::MAX)
}
