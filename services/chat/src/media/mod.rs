//! Attachments' bytes: presigned upload and download URLs over an `object_store` backend, the
//! checks made when an upload is attached, and the sweeper that deletes what nobody needs.
//!
//! File bytes never pass through gRPC or the REST gateway: clients PUT to and GET from the URLs
//! handed out here. With S3 those are S3's presigned URLs; with local files they are HMAC-signed
//! URLs of the small handler in [`local`], which enforces what S3 cannot (size and type).

pub mod local;

use std::{path::Path as FsPath, sync::Arc, time::Duration};

use chatmesh_platform::{
    config::{MediaBackend, MediaConfig},
    ids::now_ms,
    shutdown::CancellationToken,
};
use object_store::{
    Attribute, GetOptions, ObjectStore, ObjectStoreExt as _,
    aws::{AmazonS3, AmazonS3Builder},
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

enum Signing {
    Local(Box<local::LocalSigner>),
    S3(Arc<AmazonS3>),
}

/// The media backend of the chat service.
pub struct Media {
    store: Arc<dyn ObjectStore>,
    signing: Signing,
    config: MediaConfig,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media").field("backend", &self.config.backend).finish_non_exhaustive()
    }
}

impl Media {
    /// The backend `config` names. Local files live under `local_root` (or `data_dir/media`)
    /// and are signed with a key kept in `data_dir/keys/media.key`; the handler serving them is
    /// [`Media::local_router`].
    pub fn open(config: &MediaConfig, data_dir: &FsPath) -> Result<Self, MediaError> {
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
                Ok(Self { store, signing: Signing::Local(Box::new(signer)), config: config.clone() })
            }
            MediaBackend::S3 => {
                if config.s3_bucket.is_empty() {
                    return Err(backend("media.s3_bucket is required for the s3 backend"));
                }
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(&config.s3_bucket)
                    .with_region(&config.s3_region)
                    .with_allow_http(config.s3_allow_http);
                if !config.s3_endpoint.is_empty() {
                    builder = builder.with_endpoint(&config.s3_endpoint);
                }
                let s3 = Arc::new(builder.build().map_err(backend)?);
                Ok(Self { store: s3.clone(), signing: Signing::S3(s3), config: config.clone() })
            }
        }
    }

    /// The handler of local-file URLs, to mount at the root of the REST listener (it serves
    /// `/media/...`); `None` for other backends.
    pub fn local_router(self: &Arc<Self>) -> Option<axum::Router> {
        match &self.signing {
            Signing::Local(signer) => {
                Some(local::router(self.store.clone(), (**signer).clone(), self.config.max_bytes))
            }
            Signing::S3(_) => None,
        }
    }

    /// Where local-file URLs point when `public_url` is not configured (the REST listener).
    pub fn set_default_origin(&self, origin: String) {
        if let Signing::Local(signer) = &self.signing {
            signer.set_default_origin(origin);
        }
    }

    pub fn max_bytes(&self) -> u64 {
        self.config.max_bytes
    }

    /// The content types accepted; `type/*` accepts a whole family (see [`accepts`]).
    pub fn content_types(&self) -> &[String] {
        &self.config.content_types
    }

    /// A URL to PUT exactly `size` bytes of `content_type` to `key`.
    pub async fn upload_url(&self, key: &str, content_type: &str, size: u64) -> Result<SignedUrl, MediaError> {
        let ttl = Duration::from_secs(self.config.upload_url_ttl_secs);
        // why: local URLs carry whole seconds; rounding up never cuts the promised lifetime short.
        let expires_at_ms = (now_ms() + ttl.as_millis() as u64).div_ceil(1000) * 1000;
        let url = match &self.signing {
            Signing::Local(signer) => signer.upload_url(key, content_type, size, expires_at_ms / 1000)?,
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

    /// A URL to GET `key`, answered with `content_type` and `file_name`.
    pub async fn download_url(&self, key: &str, content_type: &str, file_name: &str) -> Result<SignedUrl, MediaError> {
        let ttl = Duration::from_secs(self.config.download_url_ttl_secs);
        let expires_at_ms = (now_ms() + ttl.as_millis() as u64).div_ceil(1000) * 1000;
        let url = match &self.signing {
            Signing::Local(signer) => signer.download_url(key, content_type, file_name, expires_at_ms / 1000)?,
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

/// Whether `content_type` (lowercase, no parameters) is one of `accepted`, where `type/*`
/// accepts a whole family.
pub fn accepts(accepted: &[String], content_type: &str) -> bool {
    accepted.iter().any(|allowed| match allowed.strip_suffix("/*") {
        Some(family) => content_type.split_once('/').is_some_and(|(f, sub)| f == family && !sub.is_empty()),
        None => allowed == content_type,
    })
}

/// A pattern (ECMA-262 and RE2 alike) for exactly the media types [`accepts`] lets through as
/// CreateUpload asks it (lowercased first, so letters match in either case), for a document
/// that states this deployment's rule: a `family/*` entry takes any subtype of the contract's
/// shape (RFC 6838 names).
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
    let alternatives: Vec<String> = accepted
        .iter()
        .map(|allowed| match allowed.strip_suffix("/*") {
            Some(family) => format!("{}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{{0,126}}", literal(family)),
            None => literal(allowed),
        })
        .collect();
    format!("^(?:{})$", alternatives.join("|"))
}

/// Uploads handled per sweep step.
const SWEEP_BATCH: usize = 256;

/// One sweep: uploads never attached within the TTL are released, then every released upload
/// (abandoned, retracted, of a deleted channel) loses its object and its record. Returns the
/// bytes reclaimed.
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
            let key = upload.object_key();
            bytes += media.inspect(&key).await.map_err(|e| e.to_string())?.map_or(0, |s| s.size);
            media.delete(&key).await.map_err(|e| e.to_string())?;
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
            ["image/*", "application/pdf", "text/plain", "application/vnd.ms-excel"].map(String::from).into();
        let pattern = regex::Regex::new(&accepted_pattern(&accepted)).unwrap();
        for (sent, expected) in [
            ("image/png", true),
            ("IMAGE/Png", true),
            ("image/svg+xml", true),
            ("image/", false),
            ("image", false),
            ("images/png", false),
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
}
