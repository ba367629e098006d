//! Ids on the wire: decimal strings of positive 64-bit integers.

/// Parses a decimal id from the wire.
pub fn parse_id(value: &str) -> Option<u64> {
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|id| *id > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_positive_decimals_parse() {
        assert_eq!(parse_id("42"), Some(42));
        for bad in ["", "0", "-1", "+1", " 1", "1e3", "18446744073709551616", "١٢"] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }
}
