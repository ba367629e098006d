//! Ids on the wire: decimal strings of positive ids below 2^63 (the snowflakes' range), in
//! canonical form — the contracts' pattern `^[1-9][0-9]{0,18}$`.

/// Parses a decimal id from the wire: 1 to 19 digits, no leading zero.
pub fn parse_id(value: &str) -> Option<u64> {
    let canonical =
        (1..=19).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit()) && !value.starts_with('0');
    if canonical { value.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_positive_decimals_parse() {
        assert_eq!(parse_id("42"), Some(42));
        assert_eq!(parse_id("9999999999999999999"), Some(9_999_999_999_999_999_999));
        for bad in ["", "0", "007", "-1", "+1", " 1", "1e3", "10000000000000000000", "18446744073709551616", "١٢"] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }
}
