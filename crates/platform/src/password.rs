//! Password hashing: argon2id with OWASP parameters, on blocking threads behind small
//! semaphores so a burst of logins cannot starve the runtime on two cores. Logins (verifying)
//! and sign-ups (hashing a new password) hold permits of their own, so a burst of sign-ups
//! never makes a login wait.
//!
//! Each hash needs `memory_kib` of working memory (19 MiB by default). Allocating it per call
//! left every blocking thread's malloc arena holding its last buffer (RSS grew by ~4.5 MiB per
//! login at 4 MiB, and would by ~20 MiB at the default); instead one buffer per permit is kept
//! and reused, so the hasher's memory is `(max_concurrent_hashes + max_concurrent_signup_hashes)
//! × memory_kib`, whatever the number of logins. Hashes are standard PHC strings
//! (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).

use std::sync::{Arc, Mutex};

use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use base64::{Engine as _, engine::general_purpose::STANDARD_NO_PAD as B64};
use tokio::sync::Semaphore;

use crate::config::PasswordConfig;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Correct, but hashed with weaker parameters than configured: store this new hash.
    YesRehashed(String),
}

/// Salt bytes of a new hash (the PHC recommendation is at least 16).
const SALT_LEN: usize = 16;
/// Hash bytes of a new hash.
const OUTPUT_LEN: usize = 32;

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    /// Held while a login's password is verified.
    verify_permits: Arc<Semaphore>,
    /// Held while a new password is hashed (sign-up).
    hash_permits: Arc<Semaphore>,
    /// Working memory of the configured parameters, one buffer per permit, reused.
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
    /// A hash of a random password, verified for unknown accounts so both answers cost the same.
    dummy_hash: Arc<String>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").field("params", &self.params).finish()
    }
}

impl PasswordHasher {
    pub fn new(config: &PasswordConfig) -> Result<Self, PasswordError> {
        let params = Params::new(config.memory_kib, config.iterations, config.parallelism, None)
            .map_err(|e| PasswordError::Params(e.to_string()))?;
        let dummy = uuid::Uuid::new_v4().to_string();
        let dummy_hash = hash_with(&params, &dummy, &mut blocks_for(&params))?;
        Ok(Self {
            params,
            verify_permits: Arc::new(Semaphore::new(config.max_concurrent_hashes.max(1))),
            hash_permits: Arc::new(Semaphore::new(config.max_concurrent_signup_hashes.max(1))),
            memory: Arc::default(),
            dummy_hash: Arc::new(dummy_hash),
        })
    }

    /// A PHC string (`$argon2id$v=19$m=…`) with a fresh salt, under a sign-up permit.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        metrics::counter!("chatmesh_password_hashes_total").increment(1);
        let params = self.params.clone();
        self.run(&self.hash_permits, move |memory| hash_with(&params, &password, memory)).await
    }

    /// Checks `password` against `stored`, or against the dummy hash when there is no account,
    /// so an unknown email costs one argon2 verification like a wrong password does.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<Verified, PasswordError> {
        let is_dummy = stored.is_none();
        let stored = stored.unwrap_or_else(|| self.dummy_hash.as_ref().clone());
        metrics::counter!("chatmesh_password_verifications_total").increment(1);
        let params = self.params.clone();
        self.run(&self.verify_permits, move |memory| {
            let parsed = PasswordHash::new(&stored).map_err(|e| PasswordError::Hash(e.to_string()))?;
            if !matches(&parsed, &password, &params, memory)? || is_dummy {
                return Ok(Verified::No);
            }
            let current = Params::try_from(&parsed).ok();
            let weaker = current.is_none_or(|p| {
                p.m_cost() < params.m_cost() || p.t_cost() < params.t_cost() || p.p_cost() < params.p_cost()
            }) || parsed.algorithm.as_str() != "argon2id";
            if weaker {
                return Ok(Verified::YesRehashed(hash_with(&params, &password, memory)?));
            }
            Ok(Verified::Yes)
        })
        .await
    }

    /// Runs `work` on a blocking thread under one of `permits`, with one of the reused buffers.
    async fn run<T: Send + 'static>(
        &self,
        permits: &Semaphore,
        work: impl FnOnce(&mut Vec<Block>) -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _permit = permits.acquire().await.map_err(|e| PasswordError::Hash(e.to_string()))?;
        let pool = self.memory.clone();
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || {
            let taken = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut memory = taken.unwrap_or_else(|| blocks_for(&params));
            let result = work(&mut memory);
            // why: only buffers of the configured size go back (an older hash's may differ)
            if memory.len() == params.block_count() {
                pool.lock().unwrap_or_else(|e| e.into_inner()).push(memory);
            }
            result
        })
        .await
        .map_err(|e| PasswordError::Hash(e.to_string()))?
    }
}

/// Zeroed working memory for `params`.
fn blocks_for(params: &Params) -> Vec<Block> {
    vec![Block::default(); params.block_count()]
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

/// Hashes into `out` with `memory`, resized to what `params` needs.
fn hash_into(
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> Result<(), PasswordError> {
    memory.resize(params.block_count(), Block::default());
    argon2(params)
        .hash_password_into_with_memory(password, salt, out, memory.as_mut_slice())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

fn hash_with(params: &Params, password: &str, memory: &mut Vec<Block>) -> Result<String, PasswordError> {
    let salt: [u8; SALT_LEN] = rand::random();
    let mut out = [0u8; OUTPUT_LEN];
    hash_into(params, password.as_bytes(), &salt, &mut out, memory)?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        B64.encode(salt),
        B64.encode(out)
    ))
}

/// Whether `password` produces the stored hash (argon2id, v=19, its own parameters).
fn matches(
    stored: &PasswordHash,
    password: &str,
    configured: &Params,
    memory: &mut Vec<Block>,
) -> Result<bool, PasswordError> {
    let invalid = |what: &str| PasswordError::Hash(format!("stored hash: {what}"));
    if stored.algorithm.as_str() != "argon2id" || stored.version.is_some_and(|v| v != 0x13) {
        return Ok(false);
    }
    let params = Params::try_from(stored).map_err(|e| invalid(&e.to_string()))?;
    let salt = stored.salt.as_ref().ok_or_else(|| invalid("no salt"))?;
    let expected = stored.hash.as_ref().ok_or_else(|| invalid("no hash"))?;
    let mut out = vec![0u8; expected.len()];
    // why: a hash of other parameters needs other memory; the pool's buffer stays as it is
    if params.block_count() == configured.block_count() {
        hash_into(&params, password.as_bytes(), salt.as_ref(), &mut out, memory)?;
    } else {
        hash_into(&params, password.as_bytes(), salt.as_ref(), &mut out, &mut Vec::new())?;
    }
    // why: Output compares in constant time
    Ok(argon2::password_hash::phc::Output::new(&out).map_err(|e| invalid(&e.to_string()))? == *expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordConfig {
        PasswordConfig {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
            max_concurrent_hashes: 2,
            max_concurrent_signup_hashes: 1,
        }
    }

    #[tokio::test]
    async fn hashes_verify_and_weaker_hashes_are_upgraded() {
        let weak = PasswordHasher::new(&cheap()).unwrap();
        let hash = weak.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert_eq!(weak.verify("correct horse".into(), Some(hash.clone())).await.unwrap(), Verified::Yes);
        assert_eq!(weak.verify("wrong".into(), Some(hash.clone())).await.unwrap(), Verified::No);
        assert_eq!(weak.verify("correct horse".into(), None).await.unwrap(), Verified::No);

        let strong = PasswordHasher::new(&PasswordConfig { memory_kib: 2048, ..cheap() }).unwrap();
        match strong.verify("correct horse".into(), Some(hash)).await.unwrap() {
            Verified::YesRehashed(new) => assert!(new.contains("m=2048")),
            other => panic!("expected a rehash, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn hashes_are_standard_phc_both_ways() {
        use argon2::{PasswordVerifier, password_hash::PasswordHasher as _};
        let config = cheap();
        let ours = PasswordHasher::new(&config).unwrap();
        let params = Params::new(config.memory_kib, config.iterations, config.parallelism, None).unwrap();
        // the argon2 crate's own hash verifies here ...
        let theirs = argon2(&params).hash_password(b"correct horse").unwrap().to_string();
        assert_eq!(ours.verify("correct horse".into(), Some(theirs)).await.unwrap(), Verified::Yes);
        // ... and ours verifies with the argon2 crate
        let mine = ours.hash("correct horse".into()).await.unwrap();
        let parsed = PasswordHash::new(&mine).unwrap();
        assert!(argon2(&params).verify_password(b"correct horse", &parsed).is_ok());
        assert!(argon2(&params).verify_password(b"wrong", &parsed).is_err());
        assert_eq!(ours.memory.lock().unwrap().len(), 1, "one buffer, reused");
    }

    #[tokio::test]
    async fn a_login_does_not_wait_for_sign_up_hashing() {
        let hasher = PasswordHasher::new(&PasswordConfig { max_concurrent_hashes: 1, ..cheap() }).unwrap();
        let stored = hasher.hash("correct horse".into()).await.unwrap();
        // every sign-up permit taken, as by sign-ups hashing
        let held = hasher.hash_permits.clone().acquire_many_owned(1).await.unwrap();
        let verified = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            hasher.verify("correct horse".into(), Some(stored)),
        )
        .await
        .expect("a login is verified while sign-ups hold their permits");
        assert_eq!(verified.unwrap(), Verified::Yes);
        drop(held);
        assert!(hasher.hash("another one".into()).await.unwrap().starts_with("$argon2id$"));
    }

    #[test]
    fn the_defaults_are_at_least_owasp() {
        let config = PasswordConfig::default();
        assert!(config.memory_kib >= 19_456 && config.iterations >= 2);
    }
}
