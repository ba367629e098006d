//! Ed25519 signing keys with `kid`s, kept under the data dir: `<dir>/<kid>.pk8` (PKCS#8 DER,
//! mode 0600) and `<dir>/current` naming the signing key. Every key in the folder verifies, so
//! a rotation keeps old tokens valid until their key file is removed.

use std::{
    collections::HashMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{Ed25519KeyPair, KeyPair},
};
use jsonwebtoken::{DecodingKey, EncodingKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("key folder {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("key {kid} in {path} is not an Ed25519 PKCS#8 key")]
    BadKey { kid: String, path: PathBuf },
    #[error("could not generate a key")]
    Generate,
    #[error("{0}")]
    Retire(String),
}

/// The keys of one purpose (user tokens or service tokens).
pub struct KeyRing {
    dir: PathBuf,
    current_kid: String,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("dir", &self.dir).field("current_kid", &self.current_kid).finish()
    }
}

impl KeyRing {
    /// Loads the ring in `dir`, generating its first key when the folder has none.
    pub fn load_or_generate(dir: &Path) -> Result<Self, KeyRingError> {
        let io = |source| KeyRingError::Io { path: dir.to_owned(), source };
        fs::create_dir_all(dir).map_err(io)?;
        let current = dir.join("current");
        if !current.exists() {
            let kid = generate_key(dir)?;
            write_atomically(&current, kid.as_bytes()).map_err(io)?;
        }
        Self::load(dir)
    }

    /// Loads the ring in `dir`.
    pub fn load(dir: &Path) -> Result<Self, KeyRingError> {
        let io = |source| KeyRingError::Io { path: dir.to_owned(), source };
        let current_kid = fs::read_to_string(dir.join("current")).map_err(io)?.trim().to_owned();
        let mut verifying = HashMap::new();
        let mut signing = None;
        for entry in fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let Some(kid) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".pk8")) else {
                continue;
            };
            let der = fs::read(&path).map_err(io)?;
            let pair = Ed25519KeyPair::from_pkcs8(&der)
                .map_err(|_| KeyRingError::BadKey { kid: kid.to_owned(), path: path.clone() })?;
            verifying.insert(kid.to_owned(), DecodingKey::from_ed_der(pair.public_key().as_ref()));
            if kid == current_kid {
                signing = Some(EncodingKey::from_ed_der(&der));
            }
        }
        let signing = signing.ok_or_else(|| KeyRingError::BadKey { kid: current_kid.clone(), path: dir.to_owned() })?;
        Ok(Self { dir: dir.to_owned(), current_kid, signing, verifying })
    }

    /// Generates a new signing key; the old ones keep verifying. Returns the new `kid`.
    pub fn rotate(dir: &Path) -> Result<String, KeyRingError> {
        let io = |source| KeyRingError::Io { path: dir.to_owned(), source };
        fs::create_dir_all(dir).map_err(io)?;
        let kid = generate_key(dir)?;
        write_atomically(&dir.join("current"), kid.as_bytes()).map_err(io)?;
        Ok(kid)
    }

    /// Removes the key `kid`: tokens it signed stop verifying once servers reload the ring.
    /// The signing key cannot be retired (rotate first). Returns the kids left.
    pub fn retire(dir: &Path, kid: &str) -> Result<Vec<String>, KeyRingError> {
        let io = |source| KeyRingError::Io { path: dir.to_owned(), source };
        let ring = Self::load(dir)?;
        if ring.current_kid == kid {
            return Err(KeyRingError::Retire(format!("{kid} is the signing key: rotate first, then retire it")));
        }
        if !ring.verifying.contains_key(kid) {
            return Err(KeyRingError::Retire(format!("no key {kid} in {}", dir.display())));
        }
        fs::remove_file(dir.join(format!("{kid}.pk8"))).map_err(io)?;
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        let mut left: Vec<String> = ring.verifying.into_keys().filter(|k| k != kid).collect();
        left.sort();
        Ok(left)
    }

    /// Every key that verifies, the signing one included.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.verifying.keys().cloned().collect();
        kids.sort();
        kids
    }

    pub fn current_kid(&self) -> &str {
        &self.current_kid
    }

    pub(crate) fn signing_key(&self) -> &EncodingKey {
        &self.signing
    }

    /// The verifying key named by `kid`; only keys of this ring, never one named by a token.
    pub(crate) fn verifying_key(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifying.get(kid)
    }
}

fn generate_key(dir: &Path) -> Result<String, KeyRingError> {
    let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyRingError::Generate)?;
    let kid = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let path = dir.join(format!("{kid}.pk8"));
    write_atomically(&path, der.as_ref()).map_err(|source| KeyRingError::Io { path, source })?;
    Ok(kid)
}

/// Writes a private file (0600) through a temporary name and a rename, then syncs it.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_survives_reload_and_rotation_keeps_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let first = KeyRing::load_or_generate(dir.path()).unwrap();
        let again = KeyRing::load_or_generate(dir.path()).unwrap();
        assert_eq!(first.current_kid(), again.current_kid());
        let new_kid = KeyRing::rotate(dir.path()).unwrap();
        let rotated = KeyRing::load(dir.path()).unwrap();
        assert_eq!(rotated.current_kid(), new_kid);
        assert!(rotated.verifying_key(first.current_kid()).is_some());

        let err = KeyRing::retire(dir.path(), &new_kid).unwrap_err();
        assert!(err.to_string().contains("signing key"), "{err}");
        assert!(KeyRing::retire(dir.path(), "nope").is_err());
        assert_eq!(KeyRing::retire(dir.path(), first.current_kid()).unwrap(), vec![new_kid.clone()]);
        let retired = KeyRing::load(dir.path()).unwrap();
        assert!(retired.verifying_key(first.current_kid()).is_none(), "its tokens no longer verify");
        assert_eq!(retired.kids(), vec![new_kid]);
    }
}
