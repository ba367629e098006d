//! Ed25519 signing keys with `kid`s, kept under the data dir: `<dir>/<kid>.pk8` (PKCS#8 DER,
//! mode 0600) and `<dir>/current` naming the signing key. Every key in the folder verifies, so
//! a rotation keeps old tokens valid until their key file is removed.
//!
//! A process that only verifies a ring's tokens may hold its public keys alone:
//! `<dir>/<kid>.pub` (PEM SubjectPublicKeyInfo), as `chatmesh admin keys export-public` writes
//! them. Such a ring is read, never written: its folder may be a read-only mount.

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
use base64::Engine as _;
use jsonwebtoken::{DecodingKey, EncodingKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("key folder {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("key {kid} in {path} is not an Ed25519 PKCS#8 key")]
    BadKey { kid: String, path: PathBuf },
    #[error("key {kid} in {path} is not an Ed25519 public key in PEM (SubjectPublicKeyInfo)")]
    BadPublicKey { kid: String, path: PathBuf },
    #[error(
        "no keys in {path}: a part that only verifies tokens reads the signing part's public keys there \
         (<kid>.pub, written by `chatmesh admin keys export-public`)"
    )]
    Empty { path: PathBuf },
    #[error("could not generate a key")]
    Generate,
    #[error("{0}")]
    Retire(String),
}

/// The keys of one purpose (user tokens or service tokens).
pub struct KeyRing {
    dir: PathBuf,
    /// The key tokens are signed with, and its kid; none in a ring that only verifies.
    signing: Option<(String, EncodingKey)>,
    verifying: HashMap<String, DecodingKey>,
    /// Each private key's raw Ed25519 public key, for `export_public`.
    public: HashMap<String, Vec<u8>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("dir", &self.dir).field("current_kid", &self.current_kid()).finish()
    }
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

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
        let (mut ring, mut signing) = (Self::empty(dir), None);
        for (kid, path) in key_files(dir, "pk8")? {
            let der = fs::read(&path).map_err(io)?;
            let pair = Ed25519KeyPair::from_pkcs8(&der)
                .map_err(|_| KeyRingError::BadKey { kid: kid.clone(), path: path.clone() })?;
            ring.verifying.insert(kid.clone(), DecodingKey::from_ed_der(pair.public_key().as_ref()));
            ring.public.insert(kid.clone(), pair.public_key().as_ref().to_vec());
            if kid == current_kid {
                signing = Some(EncodingKey::from_ed_der(&der));
            }
        }
        let signing = signing.ok_or_else(|| KeyRingError::BadKey { kid: current_kid.clone(), path: dir.to_owned() })?;
        ring.signing = Some((current_kid, signing));
        Ok(ring)
    }

    /// Loads the ring in `dir` to verify tokens only: every `<kid>.pub` (PEM public key) and
    /// every `<kid>.pk8` there verifies; `current` is not needed, and nothing is written, so the
    /// folder may be read-only. A folder with no key is refused: no token could verify.
    pub fn load_verifying(dir: &Path) -> Result<Self, KeyRingError> {
        let io = |source| KeyRingError::Io { path: dir.to_owned(), source };
        let mut ring = Self::empty(dir);
        for (kid, path) in key_files(dir, "pub")? {
            let pem = fs::read(&path).map_err(io)?;
            let key = DecodingKey::from_ed_pem(&pem)
                .map_err(|_| KeyRingError::BadPublicKey { kid: kid.clone(), path: path.clone() })?;
            ring.verifying.insert(kid, key);
        }
        for (kid, path) in key_files(dir, "pk8")? {
            let der = fs::read(&path).map_err(io)?;
            let pair = Ed25519KeyPair::from_pkcs8(&der)
                .map_err(|_| KeyRingError::BadKey { kid: kid.clone(), path: path.clone() })?;
            ring.verifying.insert(kid, DecodingKey::from_ed_der(pair.public_key().as_ref()));
        }
        if ring.verifying.is_empty() {
            return Err(KeyRingError::Empty { path: dir.to_owned() });
        }
        Ok(ring)
    }

    fn empty(dir: &Path) -> Self {
        Self { dir: dir.to_owned(), signing: None, verifying: HashMap::new(), public: HashMap::new() }
    }

    /// Writes the public key of every private key of this ring to `out` as `<kid>.pub` (PEM
    /// SubjectPublicKeyInfo, what [`KeyRing::load_verifying`] reads); returns the kids written.
    /// Files of other kids already in `out` are left alone.
    pub fn export_public(&self, out: &Path) -> Result<Vec<String>, KeyRingError> {
        let io = |source| KeyRingError::Io { path: out.to_owned(), source };
        fs::create_dir_all(out).map_err(io)?;
        let mut kids: Vec<&String> = self.public.keys().collect();
        kids.sort();
        for kid in &kids {
            let mut der = ED25519_SPKI_PREFIX.to_vec();
            der.extend_from_slice(&self.public[*kid]);
            let body = base64::engine::general_purpose::STANDARD.encode(der);
            let pem = format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n");
            fs::write(out.join(format!("{kid}.pub")), pem).map_err(io)?;
        }
        Ok(kids.into_iter().cloned().collect())
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
        if ring.current_kid() == Some(kid) {
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

    /// The signing key's id; none in a ring loaded to verify only.
    pub fn current_kid(&self) -> Option<&str> {
        self.signing.as_ref().map(|(kid, _)| kid.as_str())
    }

    /// The signing key and its id; none in a ring loaded to verify only.
    pub(crate) fn signing_key(&self) -> Option<(&str, &EncodingKey)> {
        self.signing.as_ref().map(|(kid, key)| (kid.as_str(), key))
    }

    /// The verifying key named by `kid`; only keys of this ring, never one named by a token.
    pub(crate) fn verifying_key(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifying.get(kid)
    }
}

/// The `<kid>.<extension>` files of `dir`, as (kid, path); other entries (`current`, a
/// Kubernetes volume's `..data` links) are skipped.
fn key_files(dir: &Path, extension: &str) -> Result<Vec<(String, PathBuf)>, KeyRingError> {
    let io = |source| KeyRingError::Io { path: dir.to_owned(), source };
    let suffix = format!(".{extension}");
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        match name.strip_suffix(&suffix) {
            Some(kid) if !kid.is_empty() && !kid.starts_with('.') => files.push((kid.to_owned(), path.clone())),
            _ => continue,
        }
    }
    Ok(files)
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
        let first_kid = first.current_kid().unwrap().to_owned();
        let again = KeyRing::load_or_generate(dir.path()).unwrap();
        assert_eq!(first.current_kid(), again.current_kid());
        let new_kid = KeyRing::rotate(dir.path()).unwrap();
        let rotated = KeyRing::load(dir.path()).unwrap();
        assert_eq!(rotated.current_kid(), Some(new_kid.as_str()));
        assert!(rotated.verifying_key(&first_kid).is_some());

        let err = KeyRing::retire(dir.path(), &new_kid).unwrap_err();
        assert!(err.to_string().contains("signing key"), "{err}");
        assert!(KeyRing::retire(dir.path(), "nope").is_err());
        assert_eq!(KeyRing::retire(dir.path(), &first_kid).unwrap(), vec![new_kid.clone()]);
        let retired = KeyRing::load(dir.path()).unwrap();
        assert!(retired.verifying_key(&first_kid).is_none(), "its tokens no longer verify");
        assert_eq!(retired.kids(), vec![new_kid]);
    }

    /// Every file name in `dir`, sorted.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn exported_public_keys_load_as_a_ring_that_verifies_and_never_signs() {
        let private = tempfile::tempdir().unwrap();
        let old = KeyRing::rotate(private.path()).unwrap();
        let new = KeyRing::rotate(private.path()).unwrap();
        let public = tempfile::tempdir().unwrap();
        let written = KeyRing::load(private.path()).unwrap().export_public(public.path()).unwrap();
        let mut both = vec![old.clone(), new.clone()];
        both.sort();
        assert_eq!(written, both);
        assert_eq!(listing(public.path()), both.iter().map(|k| format!("{k}.pub")).collect::<Vec<_>>());
        let pem = fs::read_to_string(public.path().join(format!("{old}.pub"))).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");

        let ring = KeyRing::load_verifying(public.path()).unwrap();
        assert_eq!(ring.current_kid(), None, "a public ring never signs");
        assert!(ring.signing_key().is_none());
        assert_eq!(ring.kids(), both);
        assert_eq!(listing(public.path()), both.iter().map(|k| format!("{k}.pub")).collect::<Vec<_>>(), "read only");
    }

    #[test]
    fn a_ring_to_verify_refuses_an_empty_folder_and_a_key_of_another_kind() {
        let empty = tempfile::tempdir().unwrap();
        let err = KeyRing::load_verifying(empty.path()).unwrap_err();
        assert!(matches!(err, KeyRingError::Empty { .. }), "{err}");
        assert!(err.to_string().contains("export-public"), "{err}");
        assert!(listing(empty.path()).is_empty(), "nothing generated");

        // an EC P-256 public key, not Ed25519
        let p256 = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEVs/o5+uQbTjL3chynL4wXgUg2R9\n\
                    q9UU8I5mEovUf86QZ7kOBIjJwqnzD1omageEHWwHdBO6B+dFabmdT9POxg==\n-----END PUBLIC KEY-----\n";
        fs::write(empty.path().join("p256.pub"), p256).unwrap();
        let err = KeyRing::load_verifying(empty.path()).unwrap_err();
        assert!(matches!(&err, KeyRingError::BadPublicKey { kid, .. } if kid == "p256"), "{err}");
    }
}
