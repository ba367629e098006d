//! Local-file media URLs that behave like S3's presigned ones: an HMAC-SHA256 signature over
//! the method, key, expiry and the declared type (and, for uploads, length; for downloads, the
//! file name and the viewer). The handler refuses an expired or tampered URL, a body of another
//! type, or one of another length, before anything is stored; objects are written whole
//! (staged, then renamed) by `object_store`. Unlike S3 it also asks the chat service at each
//! use: an upload URL writes only while its upload is pending and unclaimed, a download URL
//! reads only while its viewer may read the chat (so a kick or a retraction ends it at once).
//! Every answer, refusals included, carries [`CONTENT_SECURITY_POLICY`] and `nosniff`.

use std::{
    collections::HashMap,
    path::Path as FsPath,
    sync::{Arc, OnceLock, Weak},
};

use aws_lc_rs::hmac;
use axum::{
    Router,
    body::Body,
    extract::{Path as UrlPath, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chatmesh_platform::{
    error::{ErrorCode, http_response},
    ids::now_ms,
};
use object_store::{ObjectStore, ObjectStoreExt as _, path::Path};

use super::{CONTENT_SECURITY_POLICY, GateSlot, MediaError, attached_key, backend, is_inline};

/// Reads the signing key, creating a random one (owner-readable only) on first use.
pub fn load_or_create_key(path: &FsPath) -> std::io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(key) if key.len() >= 32 => return Ok(key),
        Ok(_) => return Err(std::io::Error::other(format!("{} holds no usable key", path.display()))),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key: [u8; 32] = rand::random();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, &key)?;
    Ok(key.to_vec())
}

/// Signs and checks local media URLs.
#[derive(Clone)]
pub struct LocalSigner {
    key: hmac::Key,
    /// Configured origin; empty: `default_origin`.
    public_url: String,
    default_origin: Arc<OnceLock<String>>,
}

impl LocalSigner {
    pub fn new(key: Vec<u8>, public_url: String) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            public_url: public_url.trim_end_matches('/').to_owned(),
            default_origin: Arc::new(OnceLock::new()),
        }
    }

    pub fn set_default_origin(&self, origin: String) {
        let _ = self.default_origin.set(origin.trim_end_matches('/').to_owned());
    }

    fn origin(&self) -> Result<&str, MediaError> {
        if !self.public_url.is_empty() {
            return Ok(&self.public_url);
        }
        self.default_origin
            .get()
            .map(String::as_str)
            .ok_or_else(|| backend("local media URLs need media.public_url, or the REST listener in this process"))
    }

    fn signature(&self, parts: &[&str]) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, parts.join("\n").as_bytes()).as_ref())
    }

    fn verify(&self, parts: &[&str], signature: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(signature)
            .is_ok_and(|tag| hmac::verify(&self.key, parts.join("\n").as_bytes(), &tag).is_ok())
    }

    fn url(&self, key: &str, query: &[(&str, &str)]) -> Result<String, MediaError> {
        let mut url = url::Url::parse(&format!("{}/media/{key}", self.origin()?)).map_err(backend)?;
        url.query_pairs_mut().extend_pairs(query);
        Ok(url.to_string())
    }

    pub fn upload_url(&self, key: &str, content_type: &str, size: u64, expires: u64) -> Result<String, MediaError> {
        let (exp, len) = (expires.to_string(), size.to_string());
        let sig = self.signature(&["PUT", key, &exp, content_type, &len]);
        self.url(key, &[("exp", &exp), ("ct", content_type), ("len", &len), ("sig", &sig)])
    }

    pub fn download_url(
        &self,
        key: &str,
        content_type: &str,
        name: &str,
        viewer: u64,
        expires: u64,
    ) -> Result<String, MediaError> {
        let (exp, viewer) = (expires.to_string(), viewer.to_string());
        let sig = self.signature(&["GET", key, &exp, content_type, name, &viewer]);
        self.url(key, &[("exp", &exp), ("ct", content_type), ("name", name), ("for", &viewer), ("sig", &sig)])
    }
}

/// `inline` for what browsers show without running anything ([`super::INLINE_TYPES`]),
/// `attachment` otherwise, with the name encoded per RFC 6266 / 5987 (never trusted as a path).
pub fn content_disposition(content_type: &str, file_name: &str) -> String {
    let inline = is_inline(content_type);
    let encoded: String =
        url::form_urlencoded::byte_serialize(file_name.as_bytes()).collect::<String>().replace('+', "%20");
    format!("{}; filename*=UTF-8''{encoded}", if inline { "inline" } else { "attachment" })
}

#[derive(Clone)]
struct Local {
    store: Arc<dyn ObjectStore>,
    signer: LocalSigner,
    max_bytes: u64,
    gate: GateSlot,
}

/// `PUT /media/uploads/{id}` and `GET /media/attached/{id}` for signed URLs.
pub(super) fn router(store: Arc<dyn ObjectStore>, signer: LocalSigner, max_bytes: u64, gate: GateSlot) -> Router {
    Router::new()
        .route("/media/{*key}", axum::routing::put(put).get(get))
        .with_state(Local { store, signer, max_bytes, gate })
        .layer(axum::middleware::map_response(inert))
}

/// Every answer: a file opened as a page is sandboxed and loads nothing, and its type is the
/// one stated.
async fn inert(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// The upload id of a key this server generates under `prefix` (`uploads/` for PUT,
/// `attached/` for GET): `<prefix><decimal id>`; anything else is not ours.
fn upload_of(key: &str, prefix: &str) -> Option<u64> {
    key.strip_prefix(prefix)
        .filter(|id| !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|id| id.parse().ok())
}

impl Local {
    /// The chat service's answers, while it runs.
    fn gate(&self) -> Result<Arc<dyn super::Gate>, Box<Response>> {
        self.gate
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| Box::new(http_response(ErrorCode::Unavailable, "attachments are not served here right now")))
    }
}

fn gate_failed(e: MediaError, key: &str) -> Response {
    tracing::error!(error = %e, key, "checking an upload failed");
    http_response(ErrorCode::Unavailable, "the upload could not be checked; retry")
}

fn params(query: Option<String>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect()
}

/// The signed parameters, checked: signature first, then expiry.
/// Returns the signed values and the upload id the key names.
fn checked<'a>(
    local: &Local,
    method: &str,
    key: &str,
    params: &'a HashMap<String, String>,
    signed: &[&str],
) -> Result<(Vec<&'a str>, u64), Box<Response>> {
    let denied = || Box::new(http_response(ErrorCode::PermissionDenied, "the URL's signature does not match"));
    let prefix = if method == "PUT" { "uploads/" } else { "attached/" };
    let Some(upload_id) = upload_of(key, prefix) else { return Err(denied()) };
    let values: Vec<&str> = signed.iter().map(|name| params.get(*name).map_or("", String::as_str)).collect();
    let mut parts = vec![method, key];
    parts.extend(&values);
    if !local.signer.verify(&parts, params.get("sig").map_or("", String::as_str)) {
        return Err(denied());
    }
    let expires: u64 = values[0].parse().unwrap_or(0);
    if expires.saturating_mul(1000) < now_ms() {
        return Err(Box::new(http_response(ErrorCode::PermissionDenied, "the URL has expired")));
    }
    Ok((values, upload_id))
}

async fn put(
    State(local): State<Local>,
    UrlPath(key): UrlPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let params = params(query);
    let (values, upload_id) = match checked(&local, "PUT", &key, &params, &["exp", "ct", "len"]) {
        Ok(checked) => checked,
        Err(response) => return *response,
    };
    let gate = match local.gate() {
        Ok(gate) => gate,
        Err(response) => return *response,
    };
    // why: once attached (or withdrawn) the file is final; the claimed copy is checked too, as an
    // attach claims it before the chat is committed
    let claimed = match local.store.head(&Path::from(attached_key(upload_id))).await {
        Ok(_) => true,
        Err(object_store::Error::NotFound { .. }) => false,
        Err(e) => return gate_failed(backend(e), &key),
    };
    match gate.takes_bytes(upload_id).await {
        Ok(true) if !claimed => {}
        Ok(_) => {
            return http_response(
                ErrorCode::FailedPrecondition,
                "this upload takes no more bytes: it was attached, withdrawn or expired",
            );
        }
        Err(e) => return gate_failed(e, &key),
    }
    let (content_type, length) = (values[1], values[2].parse::<u64>().unwrap_or(0));
    let sent_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !sent_type.eq_ignore_ascii_case(content_type) {
        return http_response(ErrorCode::InvalidArgument, &format!("content-type must be {content_type}"));
    }
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > length) || length > local.max_bytes {
        return http_response(ErrorCode::PayloadTooLarge, &format!("the body must be exactly {length} bytes"));
    }
    // why: read one byte past the declared length, to tell "longer" from "exact".
    let bytes = match axum::body::to_bytes(body, length as usize + 1).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return http_response(ErrorCode::PayloadTooLarge, &format!("the body must be exactly {length} bytes"));
        }
    };
    if bytes.len() as u64 != length {
        let code = if bytes.len() as u64 > length { ErrorCode::PayloadTooLarge } else { ErrorCode::InvalidArgument };
        return http_response(code, &format!("the body must be exactly {length} bytes"));
    }
    match local.store.put(&Path::from(key.as_str()), bytes.into()).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => {
            tracing::error!(error = %e, key, "storing an upload failed");
            http_response(ErrorCode::Internal, "the file could not be stored")
        }
    }
}

async fn get(State(local): State<Local>, UrlPath(key): UrlPath<String>, RawQuery(query): RawQuery) -> Response {
    let params = params(query);
    let (values, upload_id) = match checked(&local, "GET", &key, &params, &["exp", "ct", "name", "for"]) {
        Ok(checked) => checked,
        Err(response) => return *response,
    };
    let (content_type, name) = (values[1], values[2]);
    let Ok(viewer) = values[3].parse::<u64>() else {
        return http_response(ErrorCode::PermissionDenied, "the URL's signature does not match");
    };
    let gate = match local.gate() {
        Ok(gate) => gate,
        Err(response) => return *response,
    };
    // why: the URL is a bearer URL issued earlier; a kick or a retraction since ends it now
    match gate.may_read(upload_id, viewer).await {
        Ok(true) => {}
        Ok(false) => return http_response(ErrorCode::NotFound, "no such file"),
        Err(e) => return gate_failed(e, &key),
    }
    let object = match local.store.get(&Path::from(key.as_str())).await {
        Ok(object) => object,
        Err(object_store::Error::NotFound { .. }) => return http_response(ErrorCode::NotFound, "no such file"),
        Err(e) => {
            tracing::error!(error = %e, key, "reading an upload failed");
            return http_response(ErrorCode::Internal, "the file could not be read");
        }
    };
    let size = object.meta.size;
    let mut response = Body::from_stream(object.into_stream()).into_response();
    let headers = response.headers_mut();
    let value = |v: &str| HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, value(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(header::CONTENT_DISPOSITION, value(&content_disposition(content_type, name)));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=300"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_every_signed_part() {
        let signer = LocalSigner::new(vec![7; 32], "http://media.test".into());
        let url = url::Url::parse(&signer.upload_url("uploads/1", "image/png", 10, 99).unwrap()).unwrap();
        let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(url.path(), "/media/uploads/1");
        assert!(signer.verify(&["PUT", "uploads/1", "99", "image/png", "10"], &q["sig"]));
        for tampered in [
            ["PUT", "uploads/2", "99", "image/png", "10"],
            ["PUT", "uploads/1", "100", "image/png", "10"],
            ["PUT", "uploads/1", "99", "text/html", "10"],
            ["PUT", "uploads/1", "99", "image/png", "11"],
            ["GET", "uploads/1", "99", "image/png", "10"],
        ] {
            assert!(!signer.verify(&tampered, &q["sig"]), "{tampered:?}");
        }
        assert!(
            !LocalSigner::new(vec![8; 32], String::new())
                .verify(&["PUT", "uploads/1", "99", "image/png", "10"], &q["sig"])
        );
    }

    #[test]
    fn only_generated_keys_are_served() {
        assert_eq!(upload_of("uploads/123", "uploads/"), Some(123));
        assert_eq!(upload_of("attached/123", "attached/"), Some(123));
        for bad in
            ["uploads/", "uploads/../x", "uploads/1/2", "../../etc/passwd", "a/b%2Fc", "uploads/12a", "attached/1"]
        {
            assert_eq!(upload_of(bad, "uploads/"), None, "{bad}");
        }
        assert_eq!(upload_of("uploads/1", "attached/"), None, "a download URL never reads a staging key");
    }

    #[test]
    fn download_signatures_bind_the_viewer() {
        let signer = LocalSigner::new(vec![7; 32], "http://media.test".into());
        let url = url::Url::parse(&signer.download_url("attached/1", "text/plain", "a.txt", 42, 99).unwrap()).unwrap();
        let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!((url.path(), q["for"].as_str()), ("/media/attached/1", "42"));
        assert!(signer.verify(&["GET", "attached/1", "99", "text/plain", "a.txt", "42"], &q["sig"]));
        assert!(!signer.verify(&["GET", "attached/1", "99", "text/plain", "a.txt", "43"], &q["sig"]));
    }

    #[test]
    fn names_are_encoded_never_trusted() {
        assert_eq!(content_disposition("image/png", "a b.png"), "inline; filename*=UTF-8''a%20b.png");
        assert_eq!(content_disposition("image/svg+xml", "a.svg"), "attachment; filename*=UTF-8''a.svg");
        assert_eq!(content_disposition("image/html", "a.png"), "attachment; filename*=UTF-8''a.png");
        assert_eq!(
            content_disposition("application/pdf", "../../etc/passwd\r\nx"),
            "attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd%0D%0Ax"
        );
    }

    #[test]
    fn a_key_is_created_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/media.key");
        let key = load_or_create_key(&path).unwrap();
        assert_eq!(load_or_create_key(&path).unwrap(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
