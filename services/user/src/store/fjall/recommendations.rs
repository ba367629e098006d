//! Who-to-follow scores on fjall (keyspaces in the parent module's doc): a candidate's score
//! under `userid_candidate__score` and its rank under `userid_invscore_invcandidate__`, whose
//! inverted parts make a forward scan of a user's prefix read highest score first and, on equal
//! scores, higher candidate first (the listing order, so the trim keeps a prefix of it). Both
//! change in one transaction; reads see one snapshot.

use std::collections::BTreeMap;

use super::*;
use crate::store::Recommendations;

/// A rank key: ascending order of these is the listing order.
fn rank_key(user: u64, score: u64, candidate: u64) -> Vec<u8> {
    key(&[user, u64::MAX - score, u64::MAX - candidate])
}

/// `(candidate, score)` of a rank key.
fn ranked(k: &[u8]) -> Result<(u64, u64), StoreError> {
    Ok((u64::MAX - part(k, 2)?, u64::MAX - part(k, 1)?))
}

impl Inner {
    fn recommendation_score(&self, r: &impl Readable, user: u64, candidate: u64) -> Result<Option<u64>, StoreError> {
        r.get(&self.recommendations, key(&[user, candidate])).map_err(backend)?.map(|v| id_from(&v)).transpose()
    }

    fn forget_recommendation(&self, tx: &mut Tx<'_>, user: u64, candidate: u64) -> Result<(), StoreError> {
        if let Some(score) = self.recommendation_score(tx, user, candidate)? {
            tx.remove(&self.recommendations, key(&[user, candidate]));
            tx.remove(&self.recommendation_ranks, rank_key(user, score, candidate));
        }
        Ok(())
    }
}

#[async_trait]
impl Recommendations for FjallUserStore {
    #[tracing::instrument(name = "user_store.bump_recommendations", skip_all, fields(db.system = "fjall", %user))]
    async fn bump_recommendations(&self, user: u64, candidates: &[(u64, u64)], cap: usize) -> Result<(), StoreError> {
        // why merged first: a candidate named twice in one call gets both its points
        let mut points: BTreeMap<u64, u64> = BTreeMap::new();
        for &(candidate, add) in candidates {
            let sum = points.entry(candidate).or_default();
            *sum = sum.saturating_add(add);
        }
        self.write(move |s, tx| {
            for (candidate, add) in points {
                let old = s.recommendation_score(tx, user, candidate)?;
                if let Some(old) = old {
                    tx.remove(&s.recommendation_ranks, rank_key(user, old, candidate));
                }
                let score = old.unwrap_or(0).saturating_add(add);
                tx.insert(&s.recommendations, key(&[user, candidate]), score.to_be_bytes());
                tx.insert(&s.recommendation_ranks, rank_key(user, score, candidate), b"");
            }
            // the transaction reads its own writes: past the first `cap` ranks is what goes
            let beyond = keys_of(tx.prefix(&s.recommendation_ranks, user.to_be_bytes()).skip(cap), usize::MAX)?;
            for k in beyond {
                let (candidate, _) = ranked(&k)?;
                tx.remove(&s.recommendations, key(&[user, candidate]));
                tx.remove(&s.recommendation_ranks, k);
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(name = "user_store.drop_recommendations", skip_all, fields(db.system = "fjall", %user))]
    async fn drop_recommendations(&self, user: u64, candidates: &[u64]) -> Result<(), StoreError> {
        let candidates = candidates.to_vec();
        self.write(move |s, tx| {
            for candidate in candidates {
                s.forget_recommendation(tx, user, candidate)?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(name = "user_store.list_recommendations", skip_all, fields(db.system = "fjall", %user))]
    async fn list_recommendations(&self, user: u64, limit: usize) -> Result<Vec<(u64, u64)>, StoreError> {
        self.blocking(move |s| {
            let ranks = s.db.read_tx().prefix(&s.recommendation_ranks, user.to_be_bytes());
            keys_of(ranks, limit)?.iter().map(|k| ranked(k)).collect()
        })
        .await
    }

    #[tracing::instrument(name = "user_store.erase_recommendations", skip_all, fields(db.system = "fjall", %user))]
    async fn erase_recommendations(&self, user: u64) -> Result<(), StoreError> {
        self.write(move |s, tx| {
            for (candidate, score) in s.pairs_under(tx, &s.recommendations, user)? {
                tx.remove(&s.recommendations, key(&[user, candidate]));
                tx.remove(&s.recommendation_ranks, rank_key(user, id_from(&score)?, candidate));
            }
            Ok(())
        })
        .await
    }
}
