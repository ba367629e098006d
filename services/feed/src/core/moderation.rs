//! What moderation asks of the feed (FeedInternalService): which statuses a reader can read,
//! with their authors (the user service's check before it files a report of a status), and
//! deleting a status on an admin's decision.

use super::{FeedCore, Scope};
use crate::{error::FeedError, model::Stored};

impl FeedCore {
    /// Of `status_ids`, those `reader` can read as GetStatus shows them (published, not
    /// deleted, by a present account that does not block the reader: the rules of a read by
    /// id), as `(status_id, author_id)` in request order.
    pub async fn status_states(&self, reader: u64, status_ids: &[u64]) -> Result<Vec<(u64, u64)>, FeedError> {
        let views = self.visible(reader, status_ids, Scope::ById).await?;
        Ok(views.into_iter().map(|view| (view.status_id, view.author_id)).collect())
    }

    /// Deletes a status on an admin's decision (`moderator`), as its author would: the same
    /// write and live event, without the ownership check. A status already deleted is left
    /// as it is; one that never was (or is only scheduled) is NOT_FOUND.
    pub async fn moderate_delete(&self, status_id: u64, moderator: u64) -> Result<(), FeedError> {
        let author = match self.store.get_statuses(&[status_id]).await?.pop().flatten() {
            Some(Stored::Live(record, _)) => record.author_id,
            // why: deleted by its author, or by an earlier try of the same decision: the end is the same
            Some(Stored::Deleted { .. }) => return Ok(()),
            None => return Err(FeedError::StatusNotFound(status_id)),
        };
        self.remove_status(author, status_id).await?;
        tracing::info!(status_id, author, moderator, "status deleted by a moderator");
        Ok(())
    }
}
