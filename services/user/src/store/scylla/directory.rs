//! The search directory: `directory ((term_key), term, user_id)`, partitioned by the term's
//! first [`KEY_CHARS`] characters (a shorter term is its own key), `directory_keys ((shard),
//! term_key)` listing the keys in use (one partition, shard 0), and `directory_by_user
//! ((user_id), term)` to replace a user's terms.
//!
//! The service prefixes each term with its kind (`u:`, `n:`), so a key of 4 characters splits
//! terms by the first two characters of the word. A prefix of at least 4 characters lies in one
//! partition, read as `term >= prefix AND term < successor(prefix)`; a shorter one reads the
//! keys it covers from `directory_keys`, in order, then those partitions in turn until the page
//! is full. Text compares by its UTF-8 bytes, which is code point order, so
//! [`successor`] (the last character moved up by one) bounds exactly the terms starting with
//! the prefix.
//!
//! Replacing a user's terms reads their old terms and, in one logged batch, deletes the ones
//! that go and writes the new ones (with their keys). Two replacements of one user racing may
//! leave the union of their terms until the next one.

use std::collections::BTreeSet;

use chatmesh_cql::{BatchKind, values};

use super::{ScyllaUserStore, backend, limit_of, statements::*};
use crate::store::{Directory, StoreError};

/// Characters of a term that make its partition key.
const KEY_CHARS: usize = 4;
/// The one partition of `directory_keys`.
const KEYS_SHARD: i32 = 0;

/// The partition key of a term (or of a prefix at least [`KEY_CHARS`] long).
fn term_key(term: &str) -> &str {
    match term.char_indices().nth(KEY_CHARS) {
        Some((at, _)) => &term[..at],
        None => term,
    }
}

/// The smallest string above every string starting with `prefix` (the last character that can
/// be moved up, moved up by one); for a prefix of U+10FFFF only (or none), the prefix followed
/// by U+10FFFF, which leaves out terms continuing with that noncharacter.
fn successor(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        let up = match c as u32 + 1 {
            0xD800 => Some('\u{E000}'),
            n => char::from_u32(n),
        };
        if let Some(up) = up {
            chars.push(up);
            return chars.into_iter().collect();
        }
    }
    format!("{prefix}{}", char::MAX)
}

/// Replaces a user's terms with `terms` (none: takes the user out).
pub(super) async fn replace_terms(store: &ScyllaUserStore, user_id: u64, terms: &[String]) -> Result<(), StoreError> {
    let old = store.user_terms(user_id).await?;
    let new: BTreeSet<&str> = terms.iter().map(String::as_str).collect();
    let mut batch = Vec::new();
    for term in old.iter().filter(|t| !new.contains(t.as_str())) {
        batch.push((&DELETE_TERM, values![term_key(term), term, user_id]));
        batch.push((&DELETE_USER_TERM, values![user_id, term]));
    }
    // why every new term, not only the added ones: rewriting is idempotent and repairs a batch
    // a replica missed
    for term in &new {
        batch.push((&PUT_TERM, values![term_key(term), *term, user_id]));
        batch.push((&PUT_USER_TERM, values![user_id, *term]));
        batch.push((&PUT_TERM_KEY, values![KEYS_SHARD, term_key(term)]));
    }
    store.cql.batch(BatchKind::Logged, batch).await.map_err(backend).map(|_| ())
}

impl ScyllaUserStore {
    async fn user_terms(&self, user_id: u64) -> Result<Vec<String>, StoreError> {
        let mut terms: Vec<String> = Vec::new();
        loop {
            // the empty string sorts before every term
            let after = terms.last().map_or("", String::as_str);
            let page: Vec<(String,)> =
                self.cql.rows(&USER_TERMS, values![user_id, after, self.page]).await.map_err(backend)?;
            let full = page.len() >= self.page as usize;
            terms.extend(page.into_iter().map(|(t,)| t));
            if !full {
                return Ok(terms);
            }
        }
    }

    /// The entries of partition `key` from `prefix` (after `after`, when it is in this
    /// partition) below `upper`, into `out` until it holds `limit`.
    async fn terms_of_key(
        &self,
        key: &str,
        prefix: &str,
        upper: &str,
        after: Option<&(String, u64)>,
        limit: usize,
        out: &mut Vec<(String, u64)>,
    ) -> Result<(), StoreError> {
        let mut lower = prefix.to_owned();
        if let Some((term, user_id)) = after.filter(|(term, _)| term_key(term) == key) {
            let asked = limit - out.len();
            let rows: Vec<(i64,)> = self
                .cql
                .rows(&TERM_USERS_AFTER, values![key, term, *user_id, limit_of(asked)])
                .await
                .map_err(backend)?;
            out.extend(rows.into_iter().map(|(id,)| (term.clone(), chatmesh_cql::id(id))));
            // the smallest string above `term`
            lower = format!("{term}\0");
        }
        if out.len() >= limit {
            return Ok(());
        }
        let asked = limit - out.len();
        let rows: Vec<(String, i64)> =
            self.cql.rows(&TERMS_FROM, values![key, lower, upper, limit_of(asked)]).await.map_err(backend)?;
        out.extend(rows.into_iter().map(|(term, id)| (term, chatmesh_cql::id(id))));
        Ok(())
    }
}

#[async_trait::async_trait]
impl Directory for ScyllaUserStore {
    /// Always complete: accounts made before migration 0007 are indexed at their next profile
    /// change (docs/scylla.md, known limits); there is no backfill on ScyllaDB yet.
    async fn directory_complete(&self) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn mark_directory_complete(&self) -> Result<(), StoreError> {
        Ok(())
    }

    #[tracing::instrument(name = "user_store.index_terms", skip_all, fields(db.system = "scylla"))]
    async fn index_terms(&self, user_id: u64, terms: &[String]) -> Result<(), StoreError> {
        replace_terms(self, user_id, terms).await
    }

    #[tracing::instrument(name = "user_store.search_terms", skip_all, fields(db.system = "scylla"))]
    async fn search_terms(
        &self,
        prefix: &str,
        after: Option<(String, u64)>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let upper = successor(prefix);
        // an entry before the prefix resumes nothing; one past it leaves nothing to read
        let after = after.filter(|(term, _)| term.as_str() >= prefix);
        if limit == 0 || after.as_ref().is_some_and(|(term, _)| *term >= upper) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        if prefix.chars().count() >= KEY_CHARS {
            self.terms_of_key(term_key(prefix), prefix, &upper, after.as_ref(), limit, &mut out).await?;
            return Ok(out);
        }
        let mut from = after.as_ref().map_or(prefix, |(term, _)| term_key(term)).to_owned();
        loop {
            let keys: Vec<(String,)> =
                self.cql.rows(&TERM_KEYS, values![KEYS_SHARD, &from, &upper, self.page]).await.map_err(backend)?;
            for (key,) in &keys {
                self.terms_of_key(key, prefix, &upper, after.as_ref(), limit, &mut out).await?;
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            match keys.last() {
                Some((last,)) if keys.len() >= self.page as usize => from = format!("{last}\0"),
                _ => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_first_four_characters_or_the_whole_short_term() {
        assert_eq!(term_key("u:ada"), "u:ad");
        assert_eq!(term_key("u:a"), "u:a");
        assert_eq!(term_key("n:ÉÉÉ"), "n:ÉÉ", "characters, not bytes");
    }

    #[test]
    fn the_successor_bounds_exactly_the_strings_with_the_prefix() {
        assert_eq!(successor("u:ab"), "u:ac");
        assert_eq!(successor("n:\u{D7FF}"), "n:\u{E000}", "surrogates are not characters");
        assert_eq!(successor("u:a\u{10FFFF}"), "u:b");
        assert_eq!(successor(""), "\u{10FFFF}");
        for term in ["u:ab", "u:ab\0", "u:abzz", "u:ab\u{10FFFF}"] {
            assert!(term >= "u:ab" && term < successor("u:ab").as_str(), "{term:?}");
        }
        assert!("u:ac" >= successor("u:ab").as_str());
    }
}
