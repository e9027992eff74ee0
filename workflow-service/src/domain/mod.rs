//! The workflow engine's logic in plain Rust: the workflow spec, its
//! validation at submit, and templating. No IO.

pub mod spec;
pub mod status;
pub mod template;

pub use spec::{StepSpec, StepType, WorkflowDraft, WorkflowSpec, validate_workflow};
pub use status::{CompensationStatus, StepStatus, WorkflowStatus};
