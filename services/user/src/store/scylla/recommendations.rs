//! Who-to-follow scores: `recommendations ((user_id), candidate_id)` → score, one partition per
//! user (migration 0010), holding at most the cap plus one bump's candidates.
//!
//! The partition is small, so every operation reads it whole (in pages by candidate, as the
//! other bounded lists are read) and sorts it by score in memory; no index by score is kept,
//! since a score's change would move its row. A bump reads the scores, writes the sums of the
//! candidates that stay and deletes the rows that fall past the cap, in single-partition
//! unlogged batches. These are plain writes, not lightweight transactions: two bumps of one user
//! racing may both read a score and one's points be lost, and a racing bump may hold a row past
//! the cap until the next trim, which the trait accepts of a working set (a Paxos round per
//! interaction would cost more than the score is worth).

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet},
};

use chatmesh_cql::{BatchKind, values};

use super::{Batch, MAX_ID, ScyllaUserStore, backend, statements::*};
use crate::store::{Recommendations, StoreError};

/// Statements per batch: a bump's writes go in batches of this many, each ~40 B of values.
const BATCH_ROWS: usize = 100;

/// `(candidate, score)` pairs in listing order: highest score first, then higher candidate.
fn by_rank(entries: &mut [(u64, u64)]) {
    entries.sort_unstable_by_key(|&(candidate, score)| Reverse((score, candidate)));
}

impl ScyllaUserStore {
    /// Every `(candidate, score)` of `user`, by candidate.
    async fn held_recommendations(&self, user: u64) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut held = Vec::new();
        // ids are below 2^63, so -1 comes before every candidate
        let mut cursor = -1i64;
        loop {
            let rows: Vec<(i64, i64)> =
                self.cql.rows(&RECOMMENDATIONS_FROM, values![user, cursor, self.page]).await.map_err(backend)?;
            held.extend(rows.iter().map(|&(candidate, score)| (chatmesh_cql::id(candidate), chatmesh_cql::id(score))));
            match rows.last() {
                Some(&(candidate, _)) if rows.len() >= self.page as usize => cursor = candidate,
                _ => return Ok(held),
            }
        }
    }

    async fn write_in_batches(&self, writes: Batch) -> Result<(), StoreError> {
        for chunk in writes.chunks(BATCH_ROWS) {
            self.cql.batch(BatchKind::Unlogged, chunk.to_vec()).await.map_err(backend)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Recommendations for ScyllaUserStore {
    #[tracing::instrument(name = "user_store.bump_recommendations", skip_all, fields(db.system = "scylla", %user))]
    async fn bump_recommendations(&self, user: u64, candidates: &[(u64, u64)], cap: usize) -> Result<(), StoreError> {
        let held: BTreeMap<u64, u64> = self.held_recommendations(user).await?.into_iter().collect();
        let mut scores = held.clone();
        let mut bumped = BTreeSet::new();
        for &(candidate, add) in candidates {
            let score = scores.entry(candidate).or_default();
            // a bigint holds scores up to 2^63 - 1
            *score = score.saturating_add(add).min(MAX_ID);
            bumped.insert(candidate);
        }
        let mut ranked: Vec<(u64, u64)> = scores.into_iter().collect();
        by_rank(&mut ranked);
        let trimmed = ranked.split_off(cap.min(ranked.len()));
        // why only the bumped rows: rewriting the others would put back the scores read here
        // over a racing bump's newer ones
        let mut writes: Batch = ranked
            .iter()
            .filter(|(candidate, _)| bumped.contains(candidate))
            .map(|&(candidate, score)| (&PUT_RECOMMENDATION, values![user, candidate, score]))
            .collect();
        // a bumped candidate that falls past the cap at once was never written: nothing to delete
        writes.extend(
            trimmed
                .iter()
                .filter(|(candidate, _)| held.contains_key(candidate))
                .map(|&(candidate, _)| (&DELETE_RECOMMENDATION, values![user, candidate])),
        );
        self.write_in_batches(writes).await
    }

    #[tracing::instrument(name = "user_store.drop_recommendations", skip_all, fields(db.system = "scylla", %user))]
    async fn drop_recommendations(&self, user: u64, candidates: &[u64]) -> Result<(), StoreError> {
        // why blind deletes: deleting an absent row is a no-op, and a read would not save a write
        let writes = candidates.iter().map(|&candidate| (&DELETE_RECOMMENDATION, values![user, candidate])).collect();
        self.write_in_batches(writes).await
    }

    #[tracing::instrument(name = "user_store.list_recommendations", skip_all, fields(db.system = "scylla", %user))]
    async fn list_recommendations(&self, user: u64, limit: usize) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut ranked = self.held_recommendations(user).await?;
        by_rank(&mut ranked);
        ranked.truncate(limit);
        Ok(ranked)
    }

    #[tracing::instrument(name = "user_store.erase_recommendations", skip_all, fields(db.system = "scylla", %user))]
    async fn erase_recommendations(&self, user: u64) -> Result<(), StoreError> {
        self.cql.execute(&ERASE_RECOMMENDATIONS, values![user]).await.map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_order_is_score_then_candidate_both_descending() {
        let mut entries = vec![(1, 5), (3, 7), (2, 5), (4, 0)];
        by_rank(&mut entries);
        assert_eq!(entries, [(3, 7), (2, 5), (1, 5), (4, 0)]);
    }
}
