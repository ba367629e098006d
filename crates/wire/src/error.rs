//! The error every validation answers: INVALID_ARGUMENT naming the field, with a
//! `BadRequest` field violation and an `ErrorInfo` in the status details.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `domain` of every `ErrorInfo` chatmesh sends.
pub const ERROR_DOMAIN: &str = "chatmesh";

/// INVALID_ARGUMENT naming the offending field, with a `BadRequest` field violation.
pub fn invalid_field(field: &str, description: impl Into<String>) -> Status {
    let description = description.into();
    let message = format!("{field}: {description}");
    let mut details = ErrorDetails::with_bad_request_violation(field, description);
    details.set_error_info("INVALID_ARGUMENT", ERROR_DOMAIN, HashMap::from([("field".to_owned(), field.to_owned())]));
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// Asserts a validation refused with INVALID_ARGUMENT naming `field`; returns its message.
#[cfg(test)]
#[track_caller]
pub(crate) fn refuses<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) -> String {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(status.message().starts_with(&format!("{field}: ")), "names {field}: {}", status.message());
    status.message().to_owned()
}
