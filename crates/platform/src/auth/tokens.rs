//! Minting and verifying JWTs: EdDSA only, `kid` from our own rings only, `exp`, `nbf`, `iss`,
//! `aud` and `sub` required and checked with a configured leeway.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
};

use jsonwebtoken::{Algorithm, Header, Validation, decode, decode_header, encode};
use serde::{Deserialize, Serialize};

use super::{Caller, KeyRing, KeyRingError, Revocations};
use crate::{config::AuthConfig, ids::now_ms};

/// The claims of every token we mint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// A user id in decimal, or `svc:<part>` for a service principal.
    pub sub: String,
    /// The login session (users only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
}

/// A freshly minted access token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: String,
    pub expires_in_secs: u64,
    /// Unix milliseconds at which it stops verifying (leeway included).
    pub valid_until_ms: u64,
}

/// Why a token was refused. Messages are safe to show the caller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("the login session has ended")]
    SessionEnded,
}

/// What a process does with user tokens, and so which user keys it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserKeys {
    /// Signs them (the user part): the private ring, generated on first start.
    Sign,
    /// Only verifies them (every other part): public keys are enough, and the folder is only
    /// read, never written.
    Verify,
}

/// Tokens remembered as verified, at most (a token is a few hundred bytes).
const VERIFIED_KEPT: usize = 16_384;

/// Mints and verifies user and service tokens.
#[derive(Debug)]
pub struct Authenticator {
    config: AuthConfig,
    users: KeyRing,
    services: KeyRing,
    revocations: Arc<Revocations>,
    /// Tokens whose signature and claims verified, by their exact text: a caller presents the
    /// same token on every call until it expires, and checking an Ed25519 signature each time
    /// was a third of a busy server's CPU. Expiry and revocation are still checked per call;
    /// a token that differs by one byte is verified in full.
    verified: Mutex<HashMap<Box<str>, (Caller, u64)>>,
}

impl Authenticator {
    pub fn new(config: AuthConfig, users: KeyRing, services: KeyRing) -> Self {
        Self { config, users, services, revocations: Arc::new(Revocations::new()), verified: Mutex::default() }
    }

    /// Loads (or, on first start, generates) both key rings under `<data_dir>/keys/`.
    pub fn from_data_dir(config: AuthConfig, data_dir: &Path) -> Result<Self, KeyRingError> {
        Self::open(config, data_dir, UserKeys::Sign)
    }

    /// Loads the key rings under `<data_dir>/keys/`: the service ring to sign and verify
    /// (generated on first start), and the user ring as `user_keys` says.
    pub fn open(config: AuthConfig, data_dir: &Path, user_keys: UserKeys) -> Result<Self, KeyRingError> {
        let user_dir = data_dir.join("keys").join("user");
        let users = match user_keys {
            UserKeys::Sign => KeyRing::load_or_generate(&user_dir)?,
            UserKeys::Verify => KeyRing::load_verifying(&user_dir)?,
        };
        let services = KeyRing::load_or_generate(&data_dir.join("keys").join("service"))?;
        Ok(Self::new(config, users, services))
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// An access token for `user_id` on login session `sid`.
    pub fn issue_access(&self, user_id: u64, sid: &str) -> AccessToken {
        let ttl = self.config.access_ttl_secs;
        let token = self.sign(&self.users, &self.config.audience, user_id.to_string(), Some(sid.to_owned()), ttl);
        AccessToken { token, expires_in_secs: ttl, valid_until_ms: now_ms() + (ttl + self.config.leeway_secs) * 1000 }
    }

    /// A service-principal token for `part`, valid on internal RPCs only.
    pub fn issue_service(&self, part: &str) -> String {
        let ttl = self.config.service_token_ttl_secs;
        self.sign(&self.services, &self.config.internal_audience, format!("svc:{part}"), None, ttl)
    }

    fn sign(&self, ring: &KeyRing, aud: &str, sub: String, sid: Option<String>, ttl: u64) -> String {
        let now = now_ms() / 1000;
        let claims = Claims {
            iss: self.config.issuer.clone(),
            aud: aud.to_owned(),
            sub,
            sid,
            iat: now,
            nbf: now,
            exp: now + ttl,
        };
        let Some((kid, key)) = ring.signing_key() else {
            // why: only the user part issues user tokens, and it always loads its private ring
            tracing::error!("no signing key in this process for {aud} tokens: none issued");
            return String::new();
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        // why: signing with a well-formed Ed25519 key over serde-serializable claims cannot fail.
        encode(&header, &claims, key).unwrap_or_default()
    }

    /// Verifies a bearer token and names its caller.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        self.verify_until(token).map(|(caller, _)| caller)
    }

    /// Verifies a bearer token; also returns when it expires (Unix seconds).
    pub fn verify_until(&self, token: &str) -> Result<(Caller, u64), AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let now = now_ms() / 1000;
        let remembered = self.verified.lock().unwrap_or_else(|e| e.into_inner()).get(token).cloned();
        if let Some((caller, exp)) = remembered
            && now <= exp + self.config.leeway_secs
        {
            return self.admit(caller, exp);
        }
        let (caller, exp) = self.verify_in_full(token)?;
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_KEPT {
            let leeway = self.config.leeway_secs;
            verified.retain(|_, (_, exp)| now <= *exp + leeway);
            if verified.len() >= VERIFIED_KEPT {
                verified.clear();
            }
        }
        verified.insert(token.into(), (caller.clone(), exp));
        drop(verified);
        self.admit(caller, exp)
    }

    /// A verified caller, unless its login session has ended since.
    fn admit(&self, caller: Caller, exp: u64) -> Result<(Caller, u64), AuthError> {
        if let Caller::User { session_id, .. } = &caller
            && self.revocations.is_revoked(session_id)
        {
            return Err(AuthError::SessionEnded);
        }
        Ok((caller, exp))
    }

    /// Checks the signature and every claim.
    fn verify_in_full(&self, token: &str) -> Result<(Caller, u64), AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Invalid(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let kid = header.kid.ok_or(AuthError::UnknownKey)?;
        let (key, audience, is_service) = if let Some(key) = self.users.verifying_key(&kid) {
            (key, &self.config.audience, false)
        } else if let Some(key) = self.services.verifying_key(&kid) {
            (key, &self.config.internal_audience, true)
        } else {
            return Err(AuthError::UnknownKey);
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = self.config.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_audience(&[audience]);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        let claims = decode::<Claims>(token, key, &validation).map_err(|e| AuthError::Invalid(e.to_string()))?.claims;
        if is_service {
            let part =
                claims.sub.strip_prefix("svc:").ok_or_else(|| AuthError::Invalid("bad service subject".into()))?;
            return Ok((Caller::Service { part: part.to_owned() }, claims.exp));
        }
        let user_id = crate::ids::parse_id(&claims.sub).ok_or_else(|| AuthError::Invalid("bad subject".into()))?;
        let session_id = claims.sid.ok_or_else(|| AuthError::Invalid("missing sid".into()))?;
        Ok((Caller::User { user_id, session_id }, claims.exp))
    }
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

    use super::*;

    fn authenticator() -> (tempfile::TempDir, Authenticator) {
        let dir = tempfile::tempdir().unwrap();
        let auth = Authenticator::from_data_dir(AuthConfig::default(), dir.path()).unwrap();
        (dir, auth)
    }

    #[test]
    fn user_and_service_tokens_verify_as_their_principal() {
        let (_dir, auth) = authenticator();
        let access = auth.issue_access(42, "s1");
        assert_eq!(auth.verify(&access.token), Ok(Caller::User { user_id: 42, session_id: "s1".into() }));
        let service = auth.issue_service("chat");
        assert_eq!(auth.verify(&service), Ok(Caller::Service { part: "chat".into() }));
    }

    #[test]
    fn alg_none_and_foreign_keys_are_refused() {
        let (_dir, auth) = authenticator();
        let access = auth.issue_access(42, "s1").token;
        let payload = access.split('.').nth(1).unwrap();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(auth.verify(&format!("{none_header}.{payload}.")).is_err());

        let (_other_dir, other) = authenticator();
        assert_eq!(auth.verify(&other.issue_access(42, "s1").token), Err(AuthError::UnknownKey));
    }

    #[test]
    fn a_remembered_token_still_expires_and_is_still_revoked() {
        let (_dir, auth) = authenticator();
        let access = auth.issue_access(42, "s1");
        assert!(auth.verify(&access.token).is_ok());
        assert!(auth.verify(&access.token).is_ok(), "remembered");
        auth.revocations().revoke("s1", access.valid_until_ms);
        assert_eq!(auth.verify(&access.token), Err(AuthError::SessionEnded), "revoked after it was remembered");

        // a remembered token past its expiry (and leeway) is verified in full again, and refused
        let (caller, _) = auth.verify_until(&auth.issue_service("chat")).unwrap();
        let service = auth.issue_service("chat");
        auth.verified.lock().unwrap().insert(service.as_str().into(), (caller, 1));
        assert!(auth.verify(&service).is_ok(), "not expired really: verified in full");
        let past = auth.sign(&auth.services, &auth.config.internal_audience, "svc:chat".into(), None, 0);
        let mut tampered = past.clone();
        tampered.push('x');
        assert!(auth.verify(&tampered).is_err(), "one byte more is verified in full");
    }

    #[test]
    fn a_part_holding_only_public_user_keys_verifies_tokens_of_either_rotation_phase() {
        let signer_dir = tempfile::tempdir().unwrap();
        let old = KeyRing::rotate(&signer_dir.path().join("keys/user")).unwrap();
        let new = KeyRing::rotate(&signer_dir.path().join("keys/user")).unwrap();
        // phase one: both keys published, the old one still signing
        std::fs::write(signer_dir.path().join("keys/user/current"), &old).unwrap();
        let signing_old = Authenticator::from_data_dir(AuthConfig::default(), signer_dir.path()).unwrap();

        let verifier_dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::load(&signer_dir.path().join("keys/user")).unwrap();
        ring.export_public(&verifier_dir.path().join("keys/user")).unwrap();
        // every part signs its own service tokens with the one shared service key
        let service = signer_dir.path().join("keys/service");
        std::fs::create_dir_all(verifier_dir.path().join("keys/service")).unwrap();
        for entry in std::fs::read_dir(&service).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, verifier_dir.path().join("keys/service").join(path.file_name().unwrap())).unwrap();
        }
        let verifier = Authenticator::open(AuthConfig::default(), verifier_dir.path(), UserKeys::Verify).unwrap();
        let caller = Caller::User { user_id: 42, session_id: "s1".into() };
        assert_eq!(verifier.verify(&signing_old.issue_access(42, "s1").token), Ok(caller.clone()));
        assert_eq!(verifier.verify(&signing_old.issue_service("user")), Ok(Caller::Service { part: "user".into() }));
        assert_eq!(verifier.verify(&verifier.issue_service("rest")), Ok(Caller::Service { part: "rest".into() }));
        assert_eq!(verifier.issue_access(42, "s1").token, "", "a verifying part issues no user token");

        // phase two: the signer switches to the new key; the verifier, not restarted, accepts it
        std::fs::write(signer_dir.path().join("keys/user/current"), &new).unwrap();
        let signing_new = Authenticator::from_data_dir(AuthConfig::default(), signer_dir.path()).unwrap();
        let token = signing_new.issue_access(42, "s1").token;
        assert_eq!(decode_header(&token).unwrap().kid.as_deref(), Some(new.as_str()));
        assert_eq!(verifier.verify(&token), Ok(caller));
    }

    #[test]
    fn revoked_sessions_stop_verifying() {
        let (_dir, auth) = authenticator();
        let access = auth.issue_access(42, "s1");
        auth.revocations().revoke("s1", access.valid_until_ms);
        assert_eq!(auth.verify(&access.token), Err(AuthError::SessionEnded));
    }
}
