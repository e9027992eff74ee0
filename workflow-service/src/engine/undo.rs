//! What undoes a completed step that names no `compensation:` and left no
//! undo record: the registry's word on the capability decides, and a
//! rollback never counts a standing effect as undone.
//!
//! - a `HUMAN_APPROVAL` step or a `READ` changed nothing: nothing to undo;
//! - a built-in keeps an undo record for every effect it has, so a
//!   reversible built-in without one did nothing to undo; an irreversible
//!   one cannot be undone;
//! - any other reversible capability is undone by the capability its spec
//!   names (`compensation.capability_id`), decided by the policy like an
//!   explicit compensation. It receives, for each of its parameters, the
//!   step's output of that name, else the step's input of that name;
//! - otherwise (irreversible, MANUAL, or no undo capability) the step
//!   cannot be undone, and the workflow ends COMPENSATION_FAILED naming it.

use std::time::Duration;
use tokio::time::Instant;

use airt_proto::common::v1 as common;
use airt_proto::registry::v1 as registry;
use serde_json::{Map, Value};

use super::{Engine, parameters_of};
use crate::domain::{StepSpec, StepStatus, StepType};
use crate::error::WorkflowError;
use crate::store::{StepRow, Transition};

/// How a completed step is undone when nothing was recorded for it.
#[derive(Debug)]
pub(super) enum Undo {
    /// It changed nothing.
    Nothing,
    /// Run this capability with these inputs (through the policy).
    Run { capability: String, inputs: Value },
    /// It cannot be undone by the runtime; why.
    Impossible(String),
}

impl Engine {
    /// Records that a completed step's effect stands: COMPENSATION_FAILED, and why.
    pub(super) async fn effect_stands(
        &self,
        workflow_id: &str,
        step: &str,
        why: String,
    ) -> Result<(), WorkflowError> {
        let transition = Transition::Step {
            step: step.to_owned(),
            status: StepStatus::CompensationFailed,
            attempt: None,
            error: why,
        };
        self.transition(workflow_id, transition).await
    }

    pub(super) async fn implicit_undo(&self, step: &StepSpec, row: &StepRow) -> Undo {
        if step.step_type == StepType::HumanApproval {
            return Undo::Nothing;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let spec = match self
            .inner
            .registry
            .capability(&step.capability, deadline)
            .await
        {
            Ok(Some(capability)) => capability.spec,
            Ok(None) => None,
            Err(error) => {
                return Undo::Impossible(format!(
                    "the registry cannot say how to undo {}: {error}",
                    step.capability
                ));
            }
        };
        let Some(spec) = spec else {
            return Undo::Impossible(format!("{} is not registered", step.capability));
        };
        if spec.operation_type == common::OperationType::Read as i32 {
            return Undo::Nothing;
        }
        let reversible = spec.side_effects.as_ref().is_some_and(|s| s.reversible);
        if !reversible {
            return Undo::Impossible(format!("step {} cannot be undone", step.name));
        }
        if spec.handler.starts_with("builtin:") {
            return Undo::Nothing;
        }
        let undo_id = spec
            .compensation
            .as_ref()
            .filter(|c| c.supported)
            .map(|c| c.capability_id.clone())
            .unwrap_or_default();
        if undo_id.is_empty() {
            return Undo::Impossible(format!(
                "step {} names no capability that undoes {}: undo it by hand",
                step.name, step.capability
            ));
        }
        let undo_spec = match self.inner.registry.capability(&undo_id, deadline).await {
            Ok(Some(registry::Capability { spec: Some(s), .. })) => s,
            Ok(_) => {
                return Undo::Impossible(format!("undo capability {undo_id} is not registered"));
            }
            Err(error) => return Undo::Impossible(format!("undo capability {undo_id}: {error}")),
        };
        Undo::Run {
            inputs: undo_inputs(&undo_spec, row),
            capability: undo_id,
        }
    }
}

/// For each parameter of the undo capability: the step's output of that
/// name, else its input of that name.
fn undo_inputs(undo: &registry::CapabilitySpec, row: &StepRow) -> Value {
    let object = |text: &str| match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let (inputs, outputs) = (object(&row.resolved_inputs), object(&row.outputs));
    let chosen = parameters_of(undo)
        .into_iter()
        .filter_map(|p| {
            let value = outputs.get(&p.name).or_else(|| inputs.get(&p.name))?;
            Some((p.name, value.clone()))
        })
        .collect();
    Value::Object(chosen)
}
