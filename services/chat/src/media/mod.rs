//! Attachments' bytes: presigned upload and download URLs over an `object_store` backend, the
//! checks made when an upload is attached, and the sweeper that deletes what nobody needs.
//!
//! File bytes never pass through gRPC or the REST gateway: clients PUT to and GET from the URLs
//! handed out here. With S3 those are S3's presigned URLs; with local files they are HMAC-signed
//! URLs of the small handler in [`local`], which enforces what S3 cannot (size and type, and at
//! each use whether the upload still takes bytes or the viewer may still read the file).
//!
//! An upload's bytes go to its staging key ([`staging_key`]), the only key an upload URL can
//! write. Attaching claims them: they are copied, once, to the attached key
//! ([`attached_key`]), which no URL can write and every download URL reads; the staged copy is
//! deleted. So what a chat carries is what every viewer downloads, whatever is PUT later.

pub mod local;

use std::{
    path::Path as FsPath,
    sync::{Arc, OnceLock, Weak},
    time::Duration,
};

use chatmesh_platform::{
    config::{MediaBackend, MediaConfig},
    ids::now_ms,
    shutdown::CancellationToken,
};
use object_store::{
    Attribute, GetOptions, ObjectStore, ObjectStoreExt as _,
    aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, S3CopyIfNotExists},
    local::LocalFileSystem,
    path::Path,
    signer::{Method, SignedUrlOptions, Signer},
};

use crate::store::ChatStore;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("media store: {0}")]
    Backend(String),
}

fn backend(e: impl std::fmt::Display) -> MediaError {
    MediaError::Backend(e.to_string())
}

/// Media types a browser shows without running anything (no SVG, no HTML-like or scriptable
/// type). Only these are answered `inline`, and only if accepted; every other accepted type is
/// a download (`Content-Disposition: attachment`). Not configurable: adding a type here is a
/// security decision, made in code review.
pub const INLINE_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "audio/mpeg",
    "audio/mp4",
    "audio/aac",
    "audio/ogg",
    "audio/wav",
    "audio/webm",
    "audio/flac",
    "text/plain",
];

/// The policy every `/media` answer carries: a file opened as a page runs no script, loads
/// nothing and is an opaque origin of its own; the browser never guesses another type.
pub const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'";

/// Whether a file of `content_type` is answered `inline` (see [`INLINE_TYPES`]).
pub fn is_inline(content_type: &str) -> bool {
    INLINE_TYPES.contains(&content_type)
}

/// The key an upload URL writes: `uploads/<upload id>`.
pub fn staging_key(upload_id: u64) -> String {
    crate::model::object_key(upload_id)
}

/// The key an attachment is read from: `attached/<upload id>`, written once when the upload is
/// attached and never by a URL.
pub fn attached_key(upload_id: u64) -> String {
    format!("attached/{upload_id}")
}

/// What is stored under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    /// As the backend recorded it; `None` where the backend keeps no types (local files, whose
    /// handler refused any other type at upload).
    pub content_type: Option<String>,
}

/// A signed URL and when it stops working (ms since the epoch).
#[derive(Debug, Clone)]
pub struct SignedUrl {
    pub url: String,
    pub expires_at_ms: u64,
}

/// What the chat service says, when a local URL is used, about the upload it names: its
/// signature proves what was allowed when it was issued; this says whether that still holds.
#[async_trait::async_trait]
pub trait Gate: Send + Sync + 'static {
    /// Whether upload `upload_id` still takes bytes (pending: not attached, withdrawn or expired).
    async fn takes_bytes(&self, upload_id: u64) -> Result<bool, MediaError>;
    /// Whether `viewer` may still read attachment `upload_id`: its chat is not retracted and they
    /// may read it (a member of its channel, the chat not removed for them).
    async fn may_read(&self, upload_id: u64, viewer: u64) -> Result<bool, MediaError>;
}

/// The chat service's [`Gate`], once it exists; weak, as the service holds the media backend.
pub(crate) type GateSlot = Arc<OnceLock<Weak<dyn Gate>>>;

/// Whether [`Media::claim`] found bytes to claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The staged bytes are now the attachment's (or an earlier attach already claimed them).
    Claimed,
    /// Nothing was uploaded, and nothing claimed before.
    NothingStaged,
}

enum Signing {
    Local(Box<local::LocalSigner>),
    S3(Arc<AmazonS3>),
}

/// The media backend of the chat service.
pub struct Media {
    store: Arc<dyn ObjectStore>,
    signing: Signing,
    config: MediaConfig,
    gate: GateSlot,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media").field("backend", &self.config.backend).finish_non_exhaustive()
    }
}

/// Refuses accepted types that are not one exact, lowercase `type/subtype`: a family such as
/// `image/*` would accept `image/html`.
fn check_content_types(accepted: &[String]) -> Result<(), MediaError> {
    let name = |part: &str| {
        part.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "!#$&^_.+-".contains(c))
    };
    for entry in accepted {
        if !entry.split_once('/').is_some_and(|(kind, subtype)| name(kind) && name(subtype)) {
            return Err(backend(format!(
                "media.content_types: {entry:?} is not one exact lowercase media type (type/subtype, no wildcards)"
            )));
        }
    }
    Ok(())
}

/// `AmazonS3Builder::from_env`, trusting the CA bundle (PEM) at `ca_file` beside the usual
/// roots when it is set (an S3-compatible store under a private CA).
fn s3_from_env(ca_file: &str) -> Result<AmazonS3Builder, MediaError> {
    if ca_file.is_empty() {
        return Ok(AmazonS3Builder::from_env());
    }
    let pem = chatmesh_platform::tls::read_ca_bundle(FsPath::new(ca_file)).map_err(backend)?;
    let mut options = object_store::ClientOptions::new();
    for certificate in object_store::Certificate::from_pem_bundle(&pem).map_err(backend)? {
        options = options.with_root_certificate(certificate);
    }
    // why: from_env's own loop, over a builder that already has the client options (setting
    // them afterwards would drop the AWS_* client settings it read)
    let mut builder = AmazonS3Builder::new().with_client_options(options);
    for (key, value) in std::env::vars() {
        if key.starts_with("AWS_")
            && let Ok(key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>()
        {
            builder = builder.with_config(key, value);
        }
    }
    Ok(builder)
}

impl Media {
    /// The backend `config` names. Local files live under `local_root` (or `data_dir/media`)
    /// and are signed with a key kept in `data_dir/keys/media.key`; the handler serving them is
    /// [`Media::local_router`].
    pub fn open(config: &MediaConfig, data_dir: &FsPath) -> Result<Self, MediaError> {
        check_content_types(&config.content_types)?;
        let gate = GateSlot::default();
        match config.backend {
            MediaBackend::Local => {
                let root = if config.local_root.is_empty() {
                    data_dir.join("media")
                } else {
                    config.local_root.clone().into()
                };
                std::fs::create_dir_all(&root).map_err(|e| backend(format!("creating {}: {e}", root.display())))?;
                let store = Arc::new(LocalFileSystem::new_with_prefix(&root).map_err(backend)?);
                let key = local::load_or_create_key(&data_dir.join("keys").join("media.key")).map_err(backend)?;
                let signer = local::LocalSigner::new(key, config.public_url.clone());
                Ok(Self { store, signing: Signing::Local(Box::new(signer)), config: config.clone(), gate })
            }
            MediaBackend::S3 => {
                if config.s3_bucket.is_empty() {
                    return Err(backend("media.s3_bucket is required for the s3 backend"));
                }
                let mut builder = s3_from_env(&config.s3_ca_file)?
                    .with_bucket_name(&config.s3_bucket)
                    .with_region(&config.s3_region)
                    .with_allow_http(config.s3_allow_http);
                if !config.s3_endpoint.is_empty() {
                    builder = builder.with_endpoint(&config.s3_endpoint);
                }
                // why: a claim copies once and never over an attachment; AWS S3 refuses a
                // CopyObject with `If-None-Match: *` onto an existing key. Other stores set
                // AWS_COPY_IF_NOT_EXISTS (e.g. R2's `header: cf-copy-destination-if-none-match: *`).
                if builder.get_config_value(&AmazonS3ConfigKey::CopyIfNotExists).is_none() {
                    builder =
                        builder.with_copy_if_not_exists(S3CopyIfNotExists::Header("if-none-match".into(), "*".into()));
                }
                let s3 = Arc::new(builder.build().map_err(backend)?);
                Ok(Self { store: s3.clone(), signing: Signing::S3(s3), config: config.clone(), gate })
            }
        }
    }

    /// Lets the local handler ask `gate` about the uploads its URLs name.
    pub fn set_gate(&self, gate: Weak<dyn Gate>) {
        let _ = self.gate.set(gate);
    }

    /// The handler of local-file URLs, to mount at the root of the REST listener or of a
    /// listener of its own (it serves `/media/...`); `None` for other backends.
    pub fn local_router(self: &Arc<Self>) -> Option<axum::Router> {
        match &self.signing {
            Signing::Local(signer) => {
                Some(local::router(self.store.clone(), (**signer).clone(), self.config.max_bytes, self.gate.clone()))
            }
            Signing::S3(_) => None,
        }
    }

    /// Where local-file URLs point when `public_url` is not configured (the listener serving them).
    pub fn set_default_origin(&self, origin: String) {
        if let Signing::Local(signer) = &self.signing {
            signer.set_default_origin(origin);
        }
    }

    pub fn max_bytes(&self) -> u64 {
        self.config.max_bytes
    }

    /// The content types accepted, each exact (see [`accepts`]).
    pub fn content_types(&self) -> &[String] {
        &self.config.content_types
    }

    /// A URL to PUT exactly `size` bytes of `content_type` to upload `upload_id`'s staging key.
    pub async fn upload_url(&self, upload_id: u64, content_type: &str, size: u64) -> Result<SignedUrl, MediaError> {
        let key = staging_key(upload_id);
        let ttl = Duration::from_secs(self.config.upload_url_ttl_secs);
        // why: local URLs carry whole seconds; rounding up never cuts the promised lifetime short.
        let expires_at_ms = (now_ms() + ttl.as_millis() as u64).div_ceil(1000) * 1000;
        let url = match &self.signing {
            Signing::Local(signer) => signer.upload_url(&key, content_type, size, expires_at_ms / 1000)?,
            Signing::S3(s3) => {
                let options = SignedUrlOptions::new().with_signed_header(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_str(content_type).map_err(backend)?,
                );
                s3.signed_url_opts(Method::PUT, &Path::from(key), ttl, &options).await.map_err(backend)?.to_string()
            }
        };
        Ok(SignedUrl { url, expires_at_ms })
    }

    /// A URL for `viewer` to GET attachment `upload_id`, answered with `content_type` and
    /// `file_name` (`inline` only for [`INLINE_TYPES`]). Local URLs check at each use that the
    /// viewer may still read it; S3's are valid for their whole (short) life.
    pub async fn download_url(
        &self,
        upload_id: u64,
        content_type: &str,
        file_name: &str,
        viewer: u64,
    ) -> Result<SignedUrl, MediaError> {
        let key = attached_key(upload_id);
        let ttl = Duration::from_secs(self.config.download_url_ttl_secs);
        let expires_at_ms = (now_ms() + ttl.as_millis() as u64).div_ceil(1000) * 1000;
        let url = match &self.signing {
            Signing::Local(signer) => {
                signer.download_url(&key, content_type, file_name, viewer, expires_at_ms / 1000)?
            }
            Signing::S3(s3) => {
                let options = SignedUrlOptions::new().with_query([
                    ("response-content-type", content_type.to_owned()),
                    ("response-content-disposition", local::content_disposition(content_type, file_name)),
                ]);
                s3.signed_url_opts(Method::GET, &Path::from(key), ttl, &options).await.map_err(backend)?.to_string()
            }
        };
        Ok(SignedUrl { url, expires_at_ms })
    }

    /// What is stored under `key`, if anything.
    pub async fn inspect(&self, key: &str) -> Result<Option<Stored>, MediaError> {
        let options = GetOptions { head: true, ..Default::default() };
        match self.store.get_opts(&Path::from(key), options).await {
            Ok(result) => Ok(Some(Stored {
                size: result.meta.size,
                content_type: result.attributes.get(&Attribute::ContentType).map(|v| v.to_string()),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    /// Claims upload `upload_id`'s staged bytes for its attachment: copies them to its attached
    /// key unless something is there already (an earlier claim, which stays as it was).
    pub async fn claim(&self, upload_id: u64) -> Result<Claim, MediaError> {
        let (from, to) = (Path::from(staging_key(upload_id)), Path::from(attached_key(upload_id)));
        match self.store.copy_if_not_exists(&from, &to).await {
            Ok(()) | Err(object_store::Error::AlreadyExists { .. }) => Ok(Claim::Claimed),
            Err(object_store::Error::NotFound { .. }) => Ok(Claim::NothingStaged),
            Err(e) => Err(backend(e)),
        }
    }

    /// Deletes the staged copy of a claimed upload now, and again once its upload URL
    /// (created at `created_at_ms`) has expired, so bytes PUT meanwhile do not linger. Best
    /// effort: nothing reads a staging key after the claim.
    pub async fn drop_staged(self: &Arc<Self>, upload_id: u64, created_at_ms: u64) {
        let key = staging_key(upload_id);
        if let Err(e) = self.delete(&key).await {
            tracing::warn!(error = %e, upload_id, "deleting a claimed upload's staged copy failed");
        }
        let url_dead_at = created_at_ms + (self.config.upload_url_ttl_secs + 1) * 1000;
        let wait = Duration::from_millis(url_dead_at.saturating_sub(now_ms()));
        if wait.is_zero() {
            return;
        }
        let media = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if let Err(e) = media.delete(&key).await {
                tracing::warn!(error = %e, upload_id, "deleting a claimed upload's staged copy failed");
            }
        });
    }

    /// Width and height of an image, read from its first bytes.
    pub async fn dimensions(&self, key: &str, size: u64) -> Option<(u32, u32)> {
        let head = self.store.get_range(&Path::from(key), 0..size.min(256 * 1024)).await.ok()?;
        let dims = imagesize::blob_size(&head).ok()?;
        Some((u32::try_from(dims.width).ok()?, u32::try_from(dims.height).ok()?))
    }

    /// Deletes `key`; a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), MediaError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    fn abandoned_after(&self) -> Duration {
        Duration::from_secs(self.config.abandoned_after_secs)
    }

    fn sweep_interval(&self) -> Duration {
        Duration::from_secs(self.config.sweep_interval_secs.max(1))
    }
}

/// Whether `content_type` (lowercase, no parameters) is one of `accepted`, exactly.
pub fn accepts(accepted: &[String], content_type: &str) -> bool {
    accepted.iter().any(|allowed| allowed == content_type)
}

/// A pattern (ECMA-262 and RE2 alike) for exactly the media types [`accepts`] lets through as
/// CreateUpload asks it (lowercased first, so letters match in either case), for a document
/// that states this deployment's rule.
pub fn accepted_pattern(accepted: &[String]) -> String {
    let literal = |text: &str| -> String {
        text.chars()
            .map(|c| match c {
                c if c.is_ascii_alphabetic() => format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase()),
                c if c.is_ascii_alphanumeric() || c == '/' || c == '-' || c == '_' || c == '!' || c == '#' => c.into(),
                c => format!("\\{c}"),
            })
            .collect()
    };
    let alternatives: Vec<String> = accepted.iter().map(|allowed| literal(allowed)).collect();
    format!("^(?:{})$", alternatives.join("|"))
}

/// Uploads handled per sweep step.
const SWEEP_BATCH: usize = 256;

/// One sweep: uploads never attached within the TTL are released, then every released upload
/// (abandoned, retracted, of a deleted channel) loses its objects (staged and attached) and its
/// record. Returns the bytes reclaimed.
pub async fn sweep(store: &dyn ChatStore, media: &Media) -> Result<u64, String> {
    let cutoff = now_ms().saturating_sub(media.abandoned_after().as_millis() as u64);
    while store.expire_uploads(cutoff, SWEEP_BATCH).await.map_err(|e| e.to_string())? == SWEEP_BATCH {}
    let mut reclaimed = 0;
    loop {
        let uploads = store.reclaimable_uploads(SWEEP_BATCH).await.map_err(|e| e.to_string())?;
        if uploads.is_empty() {
            return Ok(reclaimed);
        }
        let mut done = Vec::with_capacity(uploads.len());
        let mut bytes = 0;
        for upload in uploads {
            for key in [staging_key(upload.upload_id), attached_key(upload.upload_id)] {
                bytes += media.inspect(&key).await.map_err(|e| e.to_string())?.map_or(0, |s| s.size);
                media.delete(&key).await.map_err(|e| e.to_string())?;
            }
            done.push(upload.upload_id);
        }
        reclaimed += bytes;
        metrics::counter!("chatmesh_media_reclaimed_bytes_total").increment(bytes);
        metrics::counter!("chatmesh_media_reclaimed_uploads_total").increment(done.len() as u64);
        store.forget_uploads(done).await.map_err(|e| e.to_string())?;
    }
}

/// Sweeps every `sweep_interval_secs` until `shutdown`.
pub async fn run_sweeper(store: Arc<dyn ChatStore>, media: Arc<Media>, shutdown: CancellationToken) {
    loop {
        match sweep(store.as_ref(), &media).await {
            Ok(0) => {}
            Ok(bytes) => tracing::info!(bytes, "media reclaimed"),
            Err(e) => tracing::warn!(error = %e, "media sweep failed; retrying at the next interval"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(media.sweep_interval()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accepted_pattern_matches_what_accepts_lets_through() {
        let accepted: Vec<String> =
            ["image/png", "application/pdf", "text/plain", "application/vnd.ms-excel"].map(String::from).into();
        let pattern = regex::Regex::new(&accepted_pattern(&accepted)).unwrap();
        for (sent, expected) in [
            ("image/png", true),
            ("IMAGE/Png", true),
            ("image/svg+xml", false),
            ("image/html", false),
            ("image/", false),
            ("image", false),
            ("images/png", false),
            ("image/pngx", false),
            ("application/pdf", true),
            ("Application/PDF", true),
            ("application/pdfx", false),
            ("application/vnd.ms-excel", true),
            ("application/vndxms-excel", false),
            ("text/plain", true),
            ("text/html", false),
            ("video/mp4", false),
        ] {
            assert_eq!(accepts(&accepted, &sent.to_ascii_lowercase()), expected, "accepts {sent}");
            assert_eq!(pattern.is_match(sent), expected, "the pattern on {sent}: {pattern}");
        }
    }

    #[test]
    fn only_exact_lowercase_types_may_be_accepted() {
        let check = |types: &[&str]| check_content_types(&types.iter().map(|t| t.to_string()).collect::<Vec<_>>());
        assert!(check(&["image/png", "application/vnd.ms-excel", "audio/mp4"]).is_ok());
        for bad in ["image/*", "*/*", "image/", "image", "Image/png", "image/png; charset=x", " image/png"] {
            let err = check(&["text/plain", bad]).unwrap_err().to_string();
            assert!(err.contains("media.content_types") && err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn the_defaults_accept_no_type_that_can_run_script_and_show_only_inert_ones_inline() {
        let defaults = MediaConfig::default().content_types;
        assert!(check_content_types(&defaults).is_ok());
        for scriptable in ["image/svg+xml", "text/html", "application/xhtml+xml", "text/xml", "application/xml"] {
            assert!(!accepts(&defaults, scriptable), "{scriptable} accepted");
            assert!(!is_inline(scriptable), "{scriptable} inline");
        }
        assert!(!is_inline("application/pdf"), "PDF viewers run script: a download");
        assert!(is_inline("image/png") && is_inline("text/plain"));
    }

    #[test]
    fn an_s3_client_is_built_trusting_a_configured_ca_bundle_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crates/platform/testdata/tls/ca.pem");
        let config = |ca_file: &str| MediaConfig {
            backend: MediaBackend::S3,
            s3_bucket: "chatmesh-media".into(),
            s3_endpoint: "https://s3.internal.example:9000".into(),
            s3_ca_file: ca_file.into(),
            ..MediaConfig::default()
        };
        let media = Media::open(&config(ca), dir.path()).expect("a client with the CA among its roots");
        assert!(Arc::new(media).local_router().is_none(), "an S3 backend");
        let not_a_bundle = dir.path().join("ca.pem");
        std::fs::write(&not_a_bundle, "not a certificate").unwrap();
        let err = Media::open(&config(not_a_bundle.to_str().unwrap()), dir.path()).unwrap_err().to_string();
        assert!(err.contains("ca.pem") && err.contains("no certificate"), "{err}");
    }
}
