//! The gatekeeper's logic: a pure module with no IO, no clock and no
//! globals. A policy set is parsed and compiled once (validated, indexed),
//! then evaluated many times.

pub mod budget;
pub mod condition;
pub mod context;
pub mod engine;
pub mod impact;
pub mod parse;
pub mod pattern;
pub mod testing;
pub mod window;

pub use context::{Decision, DecisionRecord, PolicyContext, RuleExplanation};
pub use engine::CompiledPolicySet;
pub use parse::{ParseError, parse_policy_set};

#[cfg(test)]
mod any_inputs_tests;
