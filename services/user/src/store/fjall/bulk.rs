//! The bulk loader, for benchmarks and operators seeding a store no server has open: many
//! accounts and follows per transaction instead of one synced transaction each, written under
//! the very keys [`Accounts::insert_user`], [`Directory::index_terms`] and [`Follows::follow`]
//! write, so every counter still equals the list it counts and search finds each account as the
//! service would have indexed it.
//!
//! [`Accounts::insert_user`]: crate::store::Accounts::insert_user
//! [`Directory::index_terms`]: crate::store::Directory::index_terms
//! [`Follows::follow`]: crate::store::Follows::follow

use fjall::{PersistMode, Readable};

use super::{DIRECTORY_COMPLETE, FjallUserStore, Inner, Tx, backend, encode, term_key};
use crate::{model::UserRecord, store::StoreError};

/// Records written per transaction: the sync of each commit is spread over this many, and one
/// transaction's own memtable stays a few megabytes.
const PER_TRANSACTION: usize = 10_000;

/// One account for [`FjallUserStore::bulk_load`] and the search terms it is listed under
/// (`chatmesh_user::search_terms_of` of the record, as the service indexes it; empty: not
/// searchable).
#[derive(Debug, Clone)]
pub struct BulkUser {
    pub user: UserRecord,
    pub terms: Vec<String>,
}

/// One follow for [`FjallUserStore::bulk_load`]: `follower` follows `followee`, listed under
/// `edge_id` (a snowflake: lists run newest first by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkFollow {
    pub follower: u64,
    pub followee: u64,
    pub edge_id: u64,
}

/// What one [`FjallUserStore::bulk_load`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkLoaded {
    pub users: usize,
    /// Follows written; one that already existed is not counted (nor written again).
    pub follows: usize,
}

impl FjallUserStore {
    /// The bench and ops bulk loader: writes `users` (each with its search terms), then
    /// `follows`, 10,000 records per transaction, each transaction synced on commit. Keys and
    /// counters are exactly those of one `insert_user` + `index_terms` per account and one
    /// `follow` per follow. A taken email or username is refused as `insert_user` refuses it
    /// (what earlier transactions wrote stays); a follow that exists is skipped, as `follow`
    /// skips it. Loading into a store without accounts marks its directory complete (nothing
    /// older to backfill). Blocks the calling thread; for a store no running server has open.
    pub fn bulk_load(&self, users: &[BulkUser], follows: &[BulkFollow]) -> Result<BulkLoaded, StoreError> {
        self.bulk_load_in(users, follows, PER_TRANSACTION)
    }

    fn bulk_load_in(
        &self,
        users: &[BulkUser],
        follows: &[BulkFollow],
        per_transaction: usize,
    ) -> Result<BulkLoaded, StoreError> {
        let s = &self.inner;
        let mut loaded = BulkLoaded::default();
        for chunk in users.chunks(per_transaction) {
            let mut tx = s.db.write_tx().durability(Some(PersistMode::SyncAll));
            // why: into an empty store every account comes with its terms, so the start-up
            // backfill has nothing to do (it would index them again, one synced write each)
            if tx.first_key_value(&s.users).is_none() {
                tx.insert(&s.meta, DIRECTORY_COMPLETE, "1");
            }
            for user in chunk {
                s.insert_account(&mut tx, user)?;
            }
            tx.commit().map_err(backend)?;
            loaded.users += chunk.len();
        }
        for chunk in follows.chunks(per_transaction) {
            let mut tx = s.db.write_tx().durability(Some(PersistMode::SyncAll));
            for f in chunk {
                loaded.follows += usize::from(s.add_follow(&mut tx, f.follower, f.followee, f.edge_id)?);
            }
            tx.commit().map_err(backend)?;
        }
        Ok(loaded)
    }
}

impl Inner {
    /// `insert_user` and then `index_terms` of a new account, inside `tx`.
    fn insert_account(&self, tx: &mut Tx<'_>, bulk: &BulkUser) -> Result<(), StoreError> {
        let user = &bulk.user;
        if tx.contains_key(&self.emails, user.email_key()).map_err(backend)? {
            return Err(StoreError::EmailTaken);
        }
        if let Some(key) = user.username_key() {
            if tx.contains_key(&self.usernames, &key).map_err(backend)? {
                return Err(StoreError::UsernameTaken(user.username.clone().unwrap_or_default()));
            }
            tx.insert(&self.usernames, key, user.user_id.to_be_bytes());
        }
        tx.insert(&self.emails, user.email_key(), user.user_id.to_be_bytes());
        tx.insert(&self.users, user.user_id.to_be_bytes(), encode(user)?);
        self.move_deletion_index(tx, None, Some(user));
        let mut terms = bulk.terms.clone();
        terms.sort();
        terms.dedup();
        if !terms.is_empty() {
            for term in &terms {
                tx.insert(&self.terms, term_key(term, user.user_id), b"");
            }
            tx.insert(&self.user_terms, user.user_id.to_be_bytes(), encode(&terms)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use fjall::Slice;

    use super::*;
    use crate::{
        core::search_terms_of,
        store::{Accounts, Directory, Follows, conformance::user},
    };

    /// Every keyspace accounts, follows and search write, key by key.
    fn contents(store: &FjallUserStore) -> Vec<(&'static str, Vec<(Slice, Slice)>)> {
        let s = &store.inner;
        let snapshot = s.db.read_tx();
        [
            ("users", &s.users),
            ("emails", &s.emails),
            ("usernames", &s.usernames),
            ("deleted_users", &s.deleted_users),
            ("followers", &s.followers),
            ("following", &s.following),
            ("follow_pairs", &s.follow_pairs),
            ("follow_counts", &s.follow_counts),
            ("terms", &s.terms),
            ("user_terms", &s.user_terms),
        ]
        .into_iter()
        .map(|(name, ks)| (name, snapshot.iter(ks).map(|g| g.into_inner().unwrap()).collect()))
        .collect()
    }

    /// 23 accounts (one deleted, some without a username); all follow the first, a few follow
    /// each other, and one follow is listed twice.
    fn sample() -> (Vec<BulkUser>, Vec<BulkFollow>) {
        let names = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Ｅdsger Dijkstra", "Barbara Liskov"];
        let users: Vec<BulkUser> = (1..=23u64)
            .map(|id| {
                let username = format!("user_{id}");
                let mut record = user(id, &format!("u{id}@example.com"), (id % 4 != 0).then_some(username.as_str()));
                record.name = format!("{} {id}", names[id as usize % names.len()]);
                if id == 9 {
                    record.deleted_at_ms = Some(5);
                }
                BulkUser { terms: search_terms_of(&record, 10), user: record }
            })
            .collect();
        let mut edge = 100;
        let mut follows = Vec::new();
        let mut follow = |follower, followee| {
            edge += 1;
            follows.push(BulkFollow { follower, followee, edge_id: edge });
        };
        for follower in 2..=23 {
            follow(follower, 1);
        }
        for (follower, followee) in [(1, 2), (3, 2), (2, 3), (5, 3), (3, 2)] {
            follow(follower, followee);
        }
        (users, follows)
    }

    #[tokio::test]
    async fn bulk_loading_writes_the_same_keys_as_one_write_per_record() {
        let (users, follows) = sample();
        let (_one, one_by_one) = FjallUserStore::temp();
        for bulk in &users {
            one_by_one.insert_user(&bulk.user).await.unwrap();
            one_by_one.index_terms(bulk.user.user_id, &bulk.terms).await.unwrap();
        }
        for f in &follows {
            one_by_one.follow(f.follower, f.followee, f.edge_id).await.unwrap();
        }
        let (_bulk, bulk) = FjallUserStore::temp();
        // why: 7 per transaction, so records of one user span several transactions
        let loaded = bulk.bulk_load_in(&users, &follows, 7).unwrap();

        assert_eq!(loaded, BulkLoaded { users: 23, follows: follows.len() - 1 }, "the repeated follow is skipped");
        assert_eq!(contents(&bulk), contents(&one_by_one));
    }

    #[tokio::test]
    async fn bulk_loaded_counters_equal_their_lists_and_search_finds_the_accounts() {
        let (users, follows) = sample();
        let (_dir, store) = FjallUserStore::temp();
        store.bulk_load_in(&users, &follows, 7).unwrap();

        for bulk in &users {
            let id = bulk.user.user_id;
            let followers = store.list_followers(id, None, usize::MAX).await.unwrap().len() as u64;
            let following = store.list_following(id, None, usize::MAX).await.unwrap().len() as u64;
            assert_eq!(store.follow_counts(id).await.unwrap(), (followers, following), "user {id}");
        }
        assert_eq!(store.follow_counts(1).await.unwrap(), (22, 1));
        assert_eq!(store.get_user_by_username("user_3").await.unwrap().map(|u| u.user_id), Some(3));

        let found = async |prefix: &str| -> BTreeSet<u64> {
            store.search_terms(prefix, None, 100).await.unwrap().into_iter().map(|(_, id)| id).collect()
        };
        assert_eq!(found("n:edsger").await, BTreeSet::from([3, 8, 13, 18, 23]), "NFKC-folded name words are indexed");
        assert_eq!(found("u:user_1").await, BTreeSet::from([1, 10, 11, 13, 14, 15, 17, 18, 19]));
        assert_eq!(found("n:barbara").await, BTreeSet::from([4, 14, 19]), "a deleted account is not searchable");
        assert!(found("u:user_9").await.is_empty());
    }

    #[tokio::test]
    async fn bulk_loading_into_an_empty_store_leaves_nothing_to_backfill() {
        let (users, _) = sample();
        let (_dir, empty) = FjallUserStore::temp();
        empty.bulk_load(&users[..3], &[]).unwrap();
        assert!(empty.directory_complete().await.unwrap());

        let (_dir, older) = FjallUserStore::temp();
        older.insert_user(&user(99, "older@example.com", Some("older"))).await.unwrap();
        older.bulk_load(&users[..3], &[]).unwrap();
        assert!(!older.directory_complete().await.unwrap(), "an account from before may lack its terms");
    }

    #[test]
    fn bulk_loading_refuses_a_taken_email_or_username() {
        let (users, _) = sample();
        let (_dir, store) = FjallUserStore::temp();
        store.bulk_load(&users[..3], &[]).unwrap();

        let mut again = users[1].clone();
        again.user.user_id = 99;
        assert_eq!(store.bulk_load(&[again.clone()], &[]), Err(StoreError::EmailTaken));
        again.user.email = "new@example.com".into();
        assert_eq!(store.bulk_load(&[again], &[]), Err(StoreError::UsernameTaken("user_2".into())));
    }
}
