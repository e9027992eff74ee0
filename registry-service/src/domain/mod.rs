//! The registry's logic in plain Rust: the CapabilitySpec v3 model, how a
//! submitted draft becomes a validated spec (structure + the Risk Consistency
//! Check), and which revision of an id is current. No IO.

pub mod lifecycle;
pub mod spec;
pub mod validation;

pub use lifecycle::{Lifecycle, current_version};
pub use spec::{CapabilitySpec, SpecDraft};
pub use validation::validate;
