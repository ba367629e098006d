//! Pagination: page sizes clamped to a maximum, and opaque page tokens wrapping a cursor id.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use tonic::Status;

use crate::error::invalid_field;

const TOKEN_PREFIX: &str = "cm1:";

/// `requested` clamped to `1..=max`; 0 or negative means `default`.
pub fn page_size(requested: i32, default: usize, max: usize) -> usize {
    if requested <= 0 { default.min(max) } else { (requested as usize).min(max) }
}

/// The opaque token for "continue after `cursor`".
pub fn encode_token(cursor: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{cursor}"))
}

/// The cursor of a page token; empty means the first page.
pub fn decode_token(token: &str) -> Result<Option<u64>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(TOKEN_PREFIX).and_then(|c| c.parse().ok()))
        .map(Some)
        .ok_or_else(|| invalid_field("page_token", "is not a token this server issued"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        assert_eq!(decode_token(&encode_token(42)).unwrap(), Some(42));
        assert_eq!(decode_token("").unwrap(), None);
        assert!(decode_token("42").unwrap_err().message().starts_with("page_token"));
    }

    #[test]
    fn page_sizes_are_clamped() {
        assert_eq!(page_size(0, 50, 100), 50);
        assert_eq!(page_size(-3, 50, 100), 50);
        assert_eq!(page_size(1000, 50, 100), 100);
        assert_eq!(page_size(7, 50, 100), 7);
    }
}
