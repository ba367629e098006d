//! User search by username and name prefix, over the store's prefix index ([`Directory`]).
//!
//! Each active account is indexed under `u:<username>`, `n:<word>` for each word of its name and
//! `n:<whole name>` when the name has several words, all lower case and NFKC-normalised. A search
//! ranks the exact username first, then usernames starting with the query, then names (a word
//! or the whole name) starting with it, each in index order; accounts the caller blocked or is
//! blocked by, suspended and deleted ones are left out. Pages are offsets into that ranking,
//! read afresh each time, so a search reads at most [`MAX_SCAN`] entries past its offset.
//!
//! [`Directory`]: crate::store::Directory

use std::collections::HashSet;

use chatmesh_platform::ids::now_ms;
use chatmesh_wire::user as wire;

use super::{Profile, UserCore};
use crate::{
    error::UserError,
    model::{AccountState, UserRecord},
};

/// Index entries read past the page's offset at most: bounds the cost of a search whose
/// entries are mostly filtered out.
pub const MAX_SCAN: usize = 2000;
/// Deepest offset a page may start at.
pub const MAX_OFFSET: u64 = 1000;
const CHUNK: usize = 200;
/// Accounts read per page by the one-time backfill.
const BACKFILL_PAGE: usize = 500;

const USERNAME: &str = "u:";
const NAME: &str = "n:";

/// The normalised words of a display name, and the whole name when it has several.
pub fn name_terms(name: &str) -> Vec<String> {
    let words: Vec<String> = name.split_whitespace().map(wire::username_key).filter(|w| !w.is_empty()).collect();
    let mut terms = words.clone();
    if words.len() > 1 {
        terms.push(words.join(" "));
    }
    terms
}

/// The index entries of an account: none unless it is active.
pub fn search_terms_of(user: &UserRecord, now_ms: u64) -> Vec<String> {
    if user.state(now_ms) != AccountState::Active {
        return Vec::new();
    }
    let mut terms: Vec<String> = user.username_key().map(|u| format!("{USERNAME}{u}")).into_iter().collect();
    terms.extend(name_terms(&user.name).into_iter().map(|t| format!("{NAME}{t}")));
    terms.sort();
    terms.dedup();
    terms
}

impl UserCore {
    /// Makes the search index match an account as it is now.
    pub(crate) async fn reindex(&self, user: &UserRecord) -> Result<(), UserError> {
        self.store.index_terms(user.user_id, &search_terms_of(user, now_ms())).await?;
        Ok(())
    }

    /// Indexes every account made before user search existed, once (a store written by an
    /// older version has accounts but no entries); later starts find it complete.
    pub async fn backfill_directory(&self) -> Result<usize, UserError> {
        if self.store.directory_complete().await? {
            return Ok(0);
        }
        let (mut before, mut indexed) = (None, 0);
        loop {
            let users = self.store.list_users(before, BACKFILL_PAGE).await?;
            for user in &users {
                self.reindex(user).await?;
            }
            indexed += users.len();
            match users.last() {
                Some(last) if users.len() == BACKFILL_PAGE => before = Some(last.user_id),
                _ => break,
            }
        }
        self.store.mark_directory_complete().await?;
        tracing::info!(indexed, "older accounts indexed for user search");
        Ok(indexed)
    }

    /// A page of users matching `cmd` as `viewer` may see them, and the offset of the next page.
    pub async fn search_users(
        &self,
        viewer: u64,
        cmd: wire::SearchUsers,
    ) -> Result<(Vec<Profile>, Option<u64>), UserError> {
        if cmd.offset > MAX_OFFSET {
            return Ok((Vec::new(), None));
        }
        let hidden = self.hidden_from(viewer).await?;
        let wanted = cmd.offset as usize + cmd.page_size + 1;
        let mut seen = HashSet::new();
        let mut ranked = Vec::new();
        if let Some(exact) = &cmd.exact_username
            && let Some(user) = self.store.get_user_by_username(exact).await?
            && !hidden.contains(&user.user_id)
            && user.state(now_ms()) == AccountState::Active
        {
            seen.insert(user.user_id);
            ranked.push(user.user_id);
        }
        let mut budget = MAX_SCAN + cmd.offset as usize;
        for kind in [USERNAME, NAME] {
            let prefix = format!("{kind}{}", cmd.query);
            let mut after = None;
            while ranked.len() < wanted && budget > 0 {
                let asked = CHUNK.min(budget);
                let chunk = self.store.search_terms(&prefix, after.clone(), asked).await?;
                budget -= chunk.len();
                let done = chunk.len() < asked;
                after = chunk.last().cloned();
                for (_, user_id) in chunk {
                    if !hidden.contains(&user_id) && seen.insert(user_id) {
                        ranked.push(user_id);
                    }
                }
                if done || after.is_none() {
                    break;
                }
            }
        }
        let more = ranked.len() > cmd.offset as usize + cmd.page_size;
        let page: Vec<u64> = ranked.into_iter().skip(cmd.offset as usize).take(cmd.page_size).collect();
        let mut users = Vec::with_capacity(page.len());
        for profile in self.profiles(page, viewer).await? {
            // why: the index trails a suspension by at most one write; the record decides.
            if profile.state == AccountState::Active {
                users.push(profile);
            }
        }
        let next = more.then_some(cmd.offset + cmd.page_size as u64);
        Ok((users, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{model::Suspension, store::conformance::user};

    #[tokio::test]
    async fn accounts_older_than_search_are_indexed_once_at_start() {
        use std::sync::Arc;

        use crate::store::{Accounts, Directory, FjallUserStore};
        let (_dir, store) = FjallUserStore::temp();
        let store = Arc::new(store);
        // accounts written before the directory existed: records without entries
        for id in 1..=3 {
            store.insert_user(&user(id, &format!("u{id}@example.com"), Some(&format!("old{id}")))).await.unwrap();
        }
        let (_keys, core) = crate::core::tests::core_over(store.clone());
        assert!(store.search_terms("u:old", None, 10).await.unwrap().is_empty());
        assert_eq!(core.backfill_directory().await.unwrap(), 3);
        let found = store.search_terms("u:old", None, 10).await.unwrap();
        assert_eq!(found.iter().map(|(_, id)| *id).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(core.backfill_directory().await.unwrap(), 0, "a later start finds it complete");
    }

    #[test]
    fn names_are_indexed_by_word_and_whole() {
        assert_eq!(name_terms("Ada  Lovelace"), vec!["ada", "lovelace", "ada lovelace"]);
        assert_eq!(name_terms("Ｇrace"), vec!["grace"], "NFKC folds full-width letters");
        assert_eq!(name_terms("Bob"), vec!["bob"]);
    }

    #[test]
    fn only_active_accounts_are_indexed() {
        let mut ada = user(1, "ada@example.com", Some("Ada_L"));
        ada.name = "Ada Lovelace".into();
        assert_eq!(search_terms_of(&ada, 10), vec!["n:ada", "n:ada lovelace", "n:lovelace", "u:ada_l"]);
        ada.suspension = Some(Suspension { until_ms: None, reason: String::new(), by_user_id: 2, at_ms: 1 });
        assert!(search_terms_of(&ada, 10).is_empty());
        ada.suspension = None;
        ada.deleted_at_ms = Some(5);
        assert!(search_terms_of(&ada, 10).is_empty());
    }
}
