//! The policy service's one error enum and its gRPC mapping.

use airt_kit::status::{self, FieldViolation};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid policy set: {} problem(s)", .0.len())]
    InvalidPolicySet(Vec<FieldViolation>),
    #[error("invalid request: {} problem(s)", .0.len())]
    InvalidRequest(Vec<FieldViolation>),
    #[error("policy set revision {0} not found")]
    NotFound(String),
    #[error("no policy set is active")]
    NoActiveSet,
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Storage(#[from] sqlx::Error),
}

impl PolicyError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidRequest(vec![FieldViolation::new(field, description)])
    }
}

impl From<PolicyError> for Status {
    fn from(error: PolicyError) -> Self {
        match error {
            PolicyError::InvalidPolicySet(violations) => {
                status::invalid("INVALID_POLICY_SET", "invalid policy set", violations)
            }
            PolicyError::InvalidRequest(violations) => {
                status::invalid("INVALID_ARGUMENT", "", violations)
            }
            PolicyError::NotFound(revision) => status::error(
                Code::NotFound,
                "POLICY_SET_NOT_FOUND",
                format!("policy set revision {revision} not found"),
            ),
            PolicyError::NoActiveSet => status::error(
                Code::NotFound,
                "NO_ACTIVE_POLICY_SET",
                "no policy set has been activated; every decision is DENY",
            ),
            PolicyError::Storage(error) => status::storage(&error),
            error @ PolicyError::Corrupt(_) => status::internal(&error),
        }
    }
}
