//! The workflow engine's logic in plain Rust: the workflow spec, its
//! validation at submit, templating, the rules of approvals, and what
//! happens next to a workflow (`progress`). No IO.

pub mod approval;
pub mod progress;
pub mod spec;
pub mod status;
pub mod template;
pub mod verdict;

pub use spec::{StepSpec, StepType, WorkflowDraft, WorkflowSpec, validate_workflow};
pub use status::{ApprovalStatus, CompensationStatus, DeliveryStatus, StepStatus, WorkflowStatus};
