//! Who to follow (seed 001's `RECOMMENDATIONS:uid`): scores kept per user, raised by a point
//! when the user views someone's profile or likes, reposts or replies to their status (the feed
//! reports those through `RecordInteractions`), and, when the user follows someone, by that
//! someone's own top picks. Read highest first, never anyone the user follows, blocks or is
//! blocked by (those met on a read are forgotten then). Upkeep is best effort: a point lost to a
//! failure is logged, never an error for the call that earned it.

use std::collections::{BTreeMap, HashSet};

use chatmesh_wire::user as wire;

use super::{UserCore, graph::UserPage};
use crate::error::UserError;

/// Candidates one user holds, at most (the seed's cap); the lowest scores are trimmed.
pub const MAX_RECOMMENDATIONS: usize = 1000;
/// Of someone newly followed, this many top picks are passed on (the seed's 50).
const PASSED_ON: usize = 50;

impl UserCore {
    /// `user` showed interest in `others`: each one they could be recommended gains a point per
    /// mention.
    pub async fn record_interactions(&self, user: u64, others: &[u64]) -> Result<(), UserError> {
        let mut points: BTreeMap<u64, u64> = BTreeMap::new();
        for &other in others {
            *points.entry(other).or_default() += 1;
        }
        let mut candidates = Vec::with_capacity(points.len());
        for (other, points) in points {
            if self.recommendable(user, other).await? {
                candidates.push((other, points));
            }
        }
        if !candidates.is_empty() {
            self.store.bump_recommendations(user, &candidates, MAX_RECOMMENDATIONS).await?;
        }
        Ok(())
    }

    /// [`UserCore::record_interactions`], logged instead of answered: for calls whose own work is done.
    pub(super) async fn note_interest(&self, user: u64, others: &[u64]) {
        if let Err(e) = self.record_interactions(user, others).await {
            tracing::warn!(user, error = %e, "recommendations not updated");
        }
    }

    /// `follower` now follows `followee`: the followee leaves the follower's candidates, and
    /// the followee's top picks join them.
    pub(super) async fn pass_on_picks(&self, follower: u64, followee: u64) {
        let passed = async {
            self.store.drop_recommendations(follower, &[followee]).await?;
            let picks = self.store.list_recommendations(followee, PASSED_ON).await?;
            let ids: Vec<u64> = picks.into_iter().map(|(candidate, _)| candidate).collect();
            self.record_interactions(follower, &ids).await
        };
        if let Err(e) = passed.await {
            tracing::warn!(follower, followee, error = %e, "recommendations not passed on");
        }
    }

    /// Whether `other` may be among `user`'s candidates: someone else, not followed, not
    /// blocked either way.
    async fn recommendable(&self, user: u64, other: u64) -> Result<bool, UserError> {
        if other == user {
            return Ok(false);
        }
        let standing = self.store.standing(user, other).await?;
        Ok(!(standing.following || standing.blocking || standing.blocked_by))
    }

    /// A page of `user`'s candidates, highest score first, with how many there are.
    pub async fn list_recommendations(
        &self,
        user: u64,
        page: wire::RecommendationsPage,
    ) -> Result<UserPage, UserError> {
        // why: at most the cap, so the whole list is read and filtered; positions stay stable
        // across pages once what no longer qualifies is forgotten below.
        let held = self.store.list_recommendations(user, MAX_RECOMMENDATIONS).await?;
        let following: HashSet<u64> = self.store.following_ids(user).await?.into_iter().collect();
        let hidden = self.hidden_from(user).await?;
        let (kept, gone): (Vec<u64>, Vec<u64>) = held
            .into_iter()
            .map(|(candidate, _)| candidate)
            .partition(|c| *c != user && !following.contains(c) && !hidden.contains(c));
        if !gone.is_empty() {
            self.store.drop_recommendations(user, &gone).await?;
        }
        let start = usize::try_from(page.offset).unwrap_or(usize::MAX).min(kept.len());
        let end = start.saturating_add(page.page_size).min(kept.len());
        let users = self.profiles(kept[start..end].iter().copied(), user).await?;
        // why: accounts deleted since are not shown; forgotten here, they stop being counted
        let shown: HashSet<u64> = users.iter().map(|p| p.user.user_id).collect();
        let deleted: Vec<u64> = kept[start..end].iter().copied().filter(|c| !shown.contains(c)).collect();
        if !deleted.is_empty() {
            self.store.drop_recommendations(user, &deleted).await?;
        }
        let next = (end < kept.len()).then_some((end - deleted.len()) as u64);
        Ok(UserPage { users, next, total: (kept.len() - deleted.len()) as u64 })
    }
}
