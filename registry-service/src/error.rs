//! The registry's one error enum and its gRPC mapping.

use airt_kit::status::{self, FieldViolation};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid capability: {} problem(s)", .0.len())]
    Invalid(Vec<FieldViolation>),
    #[error("{}: {}", .0.field, .0.description)]
    InvalidRequest(FieldViolation),
    #[error("capability {0} not found")]
    NotFound(String),
    #[error(
        "capability {id} version {version} is already published with different content; publish a new version"
    )]
    AlreadyExists { id: String, version: String },
    #[error("{0}: builtin: handlers are published by the workflow service only (service:workflow)")]
    BuiltinReserved(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Storage(#[from] sqlx::Error),
}

impl From<RegistryError> for Status {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::Invalid(violations) => {
                status::invalid("INVALID_CAPABILITY", "invalid capability", violations)
            }
            RegistryError::InvalidRequest(violation) => status::invalid_argument(
                "INVALID_ARGUMENT",
                format!("{}: {}", violation.field, violation.description),
                [violation],
            ),
            RegistryError::NotFound(what) => status::error(
                Code::NotFound,
                "CAPABILITY_NOT_FOUND",
                format!("capability {what} not found"),
            ),
            error @ RegistryError::AlreadyExists { .. } => status::error(
                Code::AlreadyExists,
                "CAPABILITY_VERSION_EXISTS",
                error.to_string(),
            ),
            error @ RegistryError::BuiltinReserved(_) => status::error(
                Code::PermissionDenied,
                "BUILTIN_HANDLER_RESERVED",
                error.to_string(),
            ),
            RegistryError::Storage(error) => status::storage(&error),
            error @ RegistryError::Corrupt(_) => status::internal(&error),
        }
    }
}
