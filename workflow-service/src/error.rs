//! The workflow service's one error enum and its gRPC mapping.

use airt_kit::status::{self, FieldViolation};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("invalid workflow: {} problem(s)", .0.len())]
    InvalidWorkflow(Vec<FieldViolation>),
    /// A malformed request field other than the workflow spec.
    #[error("invalid request: {} problem(s)", .0.len())]
    InvalidRequest(Vec<FieldViolation>),
    #[error("workflow {0} not found")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("approval {0} not found")]
    ApprovalNotFound(String),
    /// The caller may not do this (`reason` is the ErrorInfo reason).
    #[error("{message}")]
    PermissionDenied {
        reason: &'static str,
        message: String,
    },
    #[error("{0}")]
    ApprovalExpired(String),
    /// A different decision was already made, or the approval is void.
    #[error("{0}")]
    ApprovalConflict(String),
    #[error("{0}")]
    Unavailable(String),
    /// A `request_id` the submitter already used for a different workflow.
    #[error("request_id {request_id:?} was used for workflow {workflow_id} with a different spec")]
    RequestIdConflict {
        request_id: String,
        workflow_id: String,
    },
    /// Another instance took over the workflow: this one must stop.
    #[error("lease of workflow {0} lost to another instance")]
    LeaseLost(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Storage(#[from] sqlx::Error),
}

impl From<WorkflowError> for Status {
    fn from(error: WorkflowError) -> Self {
        match error {
            WorkflowError::InvalidWorkflow(violations) => {
                status::invalid("INVALID_WORKFLOW", "invalid workflow", violations)
            }
            WorkflowError::InvalidRequest(violations) => {
                status::invalid("INVALID_REQUEST", "invalid request", violations)
            }
            WorkflowError::NotFound(id) => status::error(
                Code::NotFound,
                "WORKFLOW_NOT_FOUND",
                format!("workflow {id} not found"),
            ),
            WorkflowError::ApprovalNotFound(id) => status::error(
                Code::NotFound,
                "APPROVAL_NOT_FOUND",
                format!("approval {id} not found"),
            ),
            WorkflowError::PermissionDenied { reason, message } => {
                status::error(Code::PermissionDenied, reason, message)
            }
            WorkflowError::ApprovalExpired(message) => {
                status::error(Code::FailedPrecondition, "APPROVAL_EXPIRED", message)
            }
            WorkflowError::ApprovalConflict(message) => status::error(
                Code::FailedPrecondition,
                "APPROVAL_ALREADY_DECIDED",
                message,
            ),
            WorkflowError::Unavailable(message) => {
                status::error(Code::Unavailable, "DEPENDENCY_UNAVAILABLE", message)
            }
            error @ WorkflowError::RequestIdConflict { .. } => status::error(
                Code::AlreadyExists,
                "REQUEST_ID_CONFLICT",
                format!("{error}; use a new request_id for a new workflow"),
            ),
            WorkflowError::FailedPrecondition(message) => {
                status::error(Code::FailedPrecondition, "WRONG_STATE", message)
            }
            WorkflowError::LeaseLost(id) => status::error(
                Code::Aborted,
                "LEASE_LOST",
                format!("workflow {id} is being driven by another instance; retry"),
            ),
            WorkflowError::Storage(error) => status::storage(&error),
            error @ WorkflowError::Corrupt(_) => status::internal(&error),
        }
    }
}
