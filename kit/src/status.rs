//! Every error a caller sees is a `tonic::Status` with a stable code and a
//! `google.rpc.ErrorInfo` (`reason` in UPPER_SNAKE, domain `airt.dev`);
//! validation errors also carry `google.rpc.BadRequest` field violations.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every error this product returns.
pub const ERROR_DOMAIN: &str = "airt.dev";

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `spec.risk.level` or `steps[2].depends_on`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// A status with `ErrorInfo{reason, domain: airt.dev}`.
pub fn error(code: Code, reason: &str, message: impl Into<String>) -> Status {
    error_with_metadata(code, reason, message, HashMap::new())
}

/// A status with `ErrorInfo{reason, domain, metadata}`.
pub fn error_with_metadata(
    code: Code,
    reason: &str,
    message: impl Into<String>,
    metadata: HashMap<String, String>,
) -> Status {
    let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata);
    Status::with_error_details(code, message, details)
}

/// Every violation in one line: `field: description; field: description`.
pub fn violations_message(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

/// INVALID_ARGUMENT whose message is `<what>: ` and every violation
/// ([`violations_message`]), with the violations as details.
pub fn invalid(reason: &str, what: &str, violations: Vec<FieldViolation>) -> Status {
    let message = violations_message(&violations);
    let message = if what.is_empty() {
        message
    } else {
        format!("{what}: {message}")
    };
    invalid_argument(reason, message, violations)
}

/// INVALID_ARGUMENT with every field violation at once.
pub fn invalid_argument(
    reason: &str,
    message: impl Into<String>,
    violations: impl IntoIterator<Item = FieldViolation>,
) -> Status {
    let mut details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new());
    for violation in violations {
        details.add_bad_request_violation(violation.field, violation.description);
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// INTERNAL without internals: the cause is logged with an error id that the
/// caller receives, so an operator can find it.
pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Status {
    let error_id = uuid::Uuid::now_v7().to_string();
    tracing::error!(error_id = %error_id, error = %DisplayChain(cause), "internal error");
    let mut metadata = HashMap::new();
    metadata.insert("error_id".to_owned(), error_id.clone());
    error_with_metadata(
        Code::Internal,
        "INTERNAL",
        format!("internal error (error id {error_id})"),
        metadata,
    )
}

/// UNAVAILABLE for a dependency (database, another service) that is down.
pub fn unavailable(what: &str, cause: &(dyn std::error::Error + 'static)) -> Status {
    tracing::warn!(dependency = what, error = %DisplayChain(cause), "dependency unavailable");
    error(
        Code::Unavailable,
        "DEPENDENCY_UNAVAILABLE",
        format!("{what} is unavailable; retry later"),
    )
}

/// A database error as the caller sees it: UNAVAILABLE
/// (`DATABASE_UNAVAILABLE`, retryable) when the database cannot be reached
/// or is busy right now, INTERNAL otherwise.
pub fn storage(error: &sqlx::Error) -> Status {
    if crate::db::is_unavailable(error) {
        tracing::warn!(error = %DisplayChain(error), "database unavailable");
        return self::error(
            Code::Unavailable,
            "DATABASE_UNAVAILABLE",
            "the database is unavailable; retry later",
        );
    }
    internal(error)
}

/// Displays an error with its whole `source()` chain.
#[derive(Debug)]
pub struct DisplayChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// The `ErrorInfo.reason` of a status, if it has one (for clients and tests).
pub fn reason_of(status: &Status) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
}

/// The field violations of a status (for clients and tests).
pub fn violations_of(status: &Status) -> Vec<FieldViolation> {
    status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| FieldViolation::new(v.field.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_reason_domain_and_every_violation() {
        let status = invalid_argument(
            "INVALID_CAPABILITY",
            "2 problems",
            [
                FieldViolation::new("spec.id", "bad id"),
                FieldViolation::new("spec.risk.level", "too low"),
            ],
        );
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!(info.reason, "INVALID_CAPABILITY");
        assert_eq!(info.domain, ERROR_DOMAIN);
        let fields: Vec<_> = violations_of(&status)
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["spec.id", "spec.risk.level"]);
    }

    #[test]
    fn internal_hides_the_cause_but_returns_an_error_id() {
        let cause = std::io::Error::other("disk /secret/path is full");
        let status = internal(&cause);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
        let details = status.get_error_details();
        let info = details.error_info().expect("error info");
        assert!(info.metadata.contains_key("error_id"));
        assert!(status.message().contains(&info.metadata["error_id"]));
    }
}
