//! Password hashing: argon2id with OWASP parameters, on blocking threads behind a small
//! semaphore so a burst of logins cannot starve the runtime on two cores.

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordVerifier, Version, password_hash::PasswordHasher as _};
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

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
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
        let dummy_hash = hash_with(&params, &dummy)?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(config.max_concurrent_hashes.max(1))),
            dummy_hash: Arc::new(dummy_hash),
        })
    }

    /// A PHC string (`$argon2id$v=19$m=…`) with a fresh salt.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let params = self.params.clone();
        self.run(move || hash_with(&params, &password)).await
    }

    /// Checks `password` against `stored`, or against the dummy hash when there is no account,
    /// so an unknown email costs one argon2 verification like a wrong password does.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<Verified, PasswordError> {
        let is_dummy = stored.is_none();
        let stored = stored.unwrap_or_else(|| self.dummy_hash.as_ref().clone());
        metrics::counter!("chatmesh_password_verifications_total").increment(1);
        let params = self.params.clone();
        self.run(move || {
            let parsed = PasswordHash::new(&stored).map_err(|e| PasswordError::Hash(e.to_string()))?;
            if argon2(&params).verify_password(password.as_bytes(), &parsed).is_err() || is_dummy {
                return Ok(Verified::No);
            }
            let current = Params::try_from(&parsed).ok();
            let weaker = current.is_none_or(|p| {
                p.m_cost() < params.m_cost() || p.t_cost() < params.t_cost() || p.p_cost() < params.p_cost()
            }) || parsed.algorithm.as_str() != "argon2id";
            if weaker {
                return Ok(Verified::YesRehashed(hash_with(&params, &password)?));
            }
            Ok(Verified::Yes)
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _permit = self.permits.acquire().await.map_err(|e| PasswordError::Hash(e.to_string()))?;
        tokio::task::spawn_blocking(work).await.map_err(|e| PasswordError::Hash(e.to_string()))?
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_with(params: &Params, password: &str) -> Result<String, PasswordError> {
    argon2(params)
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordConfig {
        PasswordConfig { memory_kib: 1024, iterations: 1, parallelism: 1, max_concurrent_hashes: 2 }
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

    #[test]
    fn the_defaults_are_at_least_owasp() {
        let config = PasswordConfig::default();
        assert!(config.memory_kib >= 19_456 && config.iterations >= 2);
    }
}
