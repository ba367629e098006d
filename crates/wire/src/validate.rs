//! Field validation shared by the services: each failure names its field.

use tonic::Status;

use crate::error::invalid_field;

/// A required decimal id.
pub fn id(field: &str, value: &str) -> Result<u64, Status> {
    if value.is_empty() {
        return Err(invalid_field(field, "is required"));
    }
    crate::ids::parse_id(value).ok_or_else(|| invalid_field(field, "is not a valid id"))
}

/// Text of `min..=max` characters with no control characters.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<(), Status> {
    let chars = value.chars().count();
    if chars < min {
        return Err(invalid_field(
            field,
            if min == 1 { "is required".to_owned() } else { format!("must have at least {min} characters") },
        ));
    }
    if chars > max {
        return Err(invalid_field(field, format!("must have at most {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid_field(field, "must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_field() {
        assert!(id("user_id", "").unwrap_err().message().starts_with("user_id"));
        assert!(text("name", "", 1, 64).unwrap_err().message().starts_with("name"));
        assert!(text("name", &"x".repeat(65), 1, 64).is_err());
        assert!(text("name", "a\u{7}b", 1, 64).is_err());
        assert!(text("name", "Åsa 🌸", 1, 64).is_ok());
    }
}
