//! Likes: liking and unliking (a repost's like goes to its original), who liked a status and
//! what a user liked.

use chatmesh_api::user::v1::User;

use super::{
    FeedCore, Page, Scope, StatusView,
    statuses::{People, next_cursor},
};
use crate::error::FeedError;

impl FeedCore {
    /// Likes a status; a repeat changes nothing. Answers the status as it stands after.
    pub async fn like(&self, caller: u64, status_id: u64) -> Result<StatusView, FeedError> {
        let target = self.target(status_id).await?;
        self.graph.check_not_blocked(caller, target.author_id).await?;
        if self.store.like(caller, target.status_id, self.next_id()).await? {
            self.graph.interacted(caller, target.author_id);
        }
        self.view(caller, target.status_id).await
    }

    /// Takes a like back; none there changes nothing.
    pub async fn unlike(&self, caller: u64, status_id: u64) -> Result<(), FeedError> {
        let target = self.target(status_id).await?;
        self.store.unlike(caller, target.status_id).await?;
        Ok(())
    }

    /// Who liked a status, newest like first, with the status's like count.
    pub async fn list_likes(
        &self,
        reader: u64,
        status_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<User>, FeedError> {
        self.people_of(reader, status_id, before, limit, People::Likers).await
    }

    /// What a user liked, newest like first, with how many likes they have.
    pub async fn list_user_likes(
        &self,
        reader: u64,
        user_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<StatusView>, FeedError> {
        self.require_visible_user(reader, user_id).await?;
        let edges = self.store.list_user_likes(user_id, before, limit).await?;
        let next = next_cursor(&edges.iter().map(|e| e.id).collect::<Vec<_>>(), limit);
        let ids: Vec<u64> = edges.iter().map(|e| e.other).collect();
        let items = self.visible(reader, &ids, Scope::List).await?;
        let total = self.store.count_user_likes(user_id).await?;
        Ok(Page { items, next, total: Some(total) })
    }
}
