//! The gate, once for run, preflight and plan: resolve the inputs, ask the
//! registry, check the inputs against the spec, ask the policy.

use tokio::time::Instant;

use airt_kit::json::to_proto_struct;
use airt_proto::common::v1 as common;
use airt_proto::policy::v1 as policy;
use airt_proto::registry::v1 as registry;
use serde_json::{Map, Value, json};

use super::{Engine, Run, decision_json, parameters_of, risk_name};
use crate::capabilities::Catalogue;
use crate::capabilities::input_problems;
use crate::domain::StepSpec;
use crate::domain::template::{Scope, resolve};
use crate::domain::verdict::{Refusal, Verdict};
use crate::error::WorkflowError;
use crate::gate::GateError;
use crate::store::Transition;

/// A step's inputs as far as they are known: all of them when it runs;
/// before anything runs, those that need no earlier step's output, with
/// the names of the others.
#[derive(Debug, Default)]
pub(super) struct StepInputs {
    pub(super) known: Map<String, Value>,
    pub(super) pending: Vec<String>,
}

impl StepInputs {
    /// Every input, resolved.
    pub(super) fn resolved(known: Map<String, Value>) -> Self {
        Self {
            known,
            pending: Vec::new(),
        }
    }

    /// What can be resolved from the initial state alone.
    pub(super) fn statically(run: &Run, step: &StepSpec) -> Self {
        let empty = Map::new();
        let scope = Scope {
            initial_state: &run.spec.initial_state,
            outputs: &empty,
        };
        let mut inputs = Self::default();
        for (key, value) in &step.inputs {
            match resolve(value, scope) {
                Ok(value) => {
                    inputs.known.insert(key.clone(), value);
                }
                Err(_) => inputs.pending.push(key.clone()),
            }
        }
        inputs
    }
}

/// The registry's answer for a step whose capability and inputs pass.
#[derive(Debug)]
pub(super) struct Examined {
    pub(super) capability: registry::Capability,
    pub(super) spec: registry::CapabilitySpec,
    /// The known inputs with defaults filled in and paths normalised.
    pub(super) inputs: Map<String, Value>,
    pub(super) pending: Vec<String>,
}

/// The gate's answer for one ACTION step: the registry's, then the policy's.
#[derive(Debug)]
pub(super) struct Assessment {
    pub(super) examined: Examined,
    pub(super) record: policy::DecisionRecord,
    pub(super) verdict: Verdict,
}

/// The decision as the engine obeys it: anything but ALLOW or
/// REQUIRE_APPROVAL (an unset or unknown decision) is DENY.
fn verdict_of(record: &policy::DecisionRecord) -> Verdict {
    let (rule, reason) = (record.rule_id.clone(), record.reason.clone());
    match policy::Decision::try_from(record.decision) {
        Ok(policy::Decision::Allow) => Verdict::Allow,
        Ok(policy::Decision::RequireApproval) => Verdict::RequireApproval { rule, reason },
        _ => Verdict::Deny { rule, reason },
    }
}

/// Why the gate gave no verdict: a refusal of the step, or an engine
/// error (storage, lease) while committing deferred writes.
#[derive(Debug)]
pub(super) enum GateFailure {
    Refused(Refusal),
    Engine(WorkflowError),
}

impl From<Refusal> for GateFailure {
    fn from(refusal: Refusal) -> Self {
        Self::Refused(refusal)
    }
}

impl From<WorkflowError> for GateFailure {
    fn from(error: WorkflowError) -> Self {
        Self::Engine(error)
    }
}

fn unanswered(error: GateError) -> Refusal {
    Refusal::Unanswered(error.to_string())
}

impl Engine {
    pub(super) fn step_deadline(&self, run: &Run, step: &StepSpec) -> Instant {
        let own = Instant::now()
            + step
                .timeout
                .unwrap_or(self.inner.config.default_step_timeout);
        run.deadline.map_or(own, |d| d.min(own))
    }

    pub(super) fn policy_context(
        &self,
        run: &Run,
        step: &StepSpec,
        capability: Option<&registry::CapabilitySpec>,
        inputs: &Map<String, Value>,
    ) -> policy::PolicyContext {
        policy::PolicyContext {
            principal: Some(run.submitter.to_proto()),
            agent: step.agent.clone(),
            workflow_id: run.workflow_id.clone(),
            step_name: step.name.clone(),
            capability_id: step.capability.clone(),
            // Risk comes from the registry; an unknown capability is HIGH.
            risk_level: capability
                .and_then(|c| c.risk.as_ref())
                .map_or(common::RiskLevel::High as i32, |r| r.level),
            requires_approval: capability
                .and_then(|c| c.risk.as_ref())
                .is_some_and(|r| r.requires_approval),
            operation_type: capability.map_or(0, |c| c.operation_type),
            inputs: Some(to_proto_struct(inputs)),
            environment: self.inner.config.environment.clone(),
        }
    }

    /// The registry's half of the gate: the capability is registered and
    /// not FROZEN, and the inputs fit its parameters (inputs still
    /// `pending` count as present). With `journal`, writes deferred by that
    /// workflow's driver are committed while the registry is slow.
    pub(super) async fn examine(
        &self,
        step: &StepSpec,
        inputs: StepInputs,
        deadline: Instant,
        journal: Option<&str>,
    ) -> Result<Examined, GateFailure> {
        let lookup = self.inner.registry.capability(&step.capability, deadline);
        let found = match journal {
            Some(workflow_id) => self.flushing_if_slow(workflow_id, lookup).await?,
            None => lookup.await,
        };
        let unknown = || Refusal::Unknown {
            capability: step.capability.clone(),
        };
        let capability = found.map_err(unanswered)?.ok_or_else(unknown)?;
        let spec = capability.spec.clone().ok_or_else(unknown)?;
        if spec.lifecycle == registry::CapabilityLifecycle::Frozen as i32 {
            return Err(Refusal::Frozen {
                capability: step.capability.clone(),
                reason: capability.lifecycle_reason.clone(),
            }
            .into());
        }
        let parameters = parameters_of(&spec);
        let problems = input_problems(&parameters, &inputs.known, &inputs.pending);
        if !problems.is_empty() {
            let problems = problems.into_iter().map(|p| (p.parameter, p.problem));
            return Err(Refusal::Inputs(problems.collect()).into());
        }
        let mut known = inputs.known;
        for parameter in &parameters {
            if let (false, Some(default)) = (
                known.contains_key(&parameter.name) || inputs.pending.contains(&parameter.name),
                &parameter.default,
            ) {
                known.insert(parameter.name.clone(), default.clone());
            }
        }
        Catalogue::normalise_paths(&spec.handler, &mut known);
        Ok(Examined {
            capability,
            spec,
            inputs: known,
            pending: inputs.pending,
        })
    }

    /// The gate, one way for run, retry, preflight and plan: [`Self::examine`],
    /// then the policy with the registry's risk and the known inputs.
    /// `purpose`: EXECUTE for a step's first decision, PREVIEW for plan and
    /// preflight, CONTINUE for an action already counted (resumed after its
    /// approval, retried, compensated) — only EXECUTE consumes budgets.
    pub(super) async fn assess(
        &self,
        run: &Run,
        step: &StepSpec,
        inputs: StepInputs,
        deadline: Instant,
        journal: Option<&str>,
        purpose: policy::EvaluationPurpose,
    ) -> Result<Assessment, GateFailure> {
        let examined = self.examine(step, inputs, deadline, journal).await?;
        let context = self.policy_context(run, step, Some(&examined.spec), &examined.inputs);
        let question = self.inner.policy.evaluate(context, purpose, deadline);
        let answer = match journal {
            Some(workflow_id) => self.flushing_if_slow(workflow_id, question).await?,
            None => question.await,
        };
        let record = answer.map_err(unanswered)?;
        Ok(Assessment {
            examined,
            verdict: verdict_of(&record),
            record,
        })
    }

    /// Records the registry's answer and the decision, with the exact
    /// inputs the decision was obtained for.
    pub(super) async fn record_decision(
        &self,
        run: &Run,
        step: &StepSpec,
        capability: Option<&registry::CapabilitySpec>,
        inputs: Map<String, Value>,
        record: &policy::DecisionRecord,
    ) -> Result<(), WorkflowError> {
        let decided = Self::decided(step, capability, inputs, record);
        self.transition(&run.workflow_id, decided).await
    }

    /// The registry's answer and the decision for a step, as a transition.
    pub(super) fn decided(
        step: &StepSpec,
        capability: Option<&registry::CapabilitySpec>,
        inputs: Map<String, Value>,
        record: &policy::DecisionRecord,
    ) -> Transition {
        let risk = capability
            .and_then(|c| c.risk.as_ref())
            .map_or("HIGH", |r| risk_name(r.level));
        let version = capability
            .and_then(|c| c.metadata.as_ref())
            .map(|m| m.version.clone())
            .unwrap_or_default();
        let mut decision = decision_json(record);
        if capability
            .is_some_and(|c| c.lifecycle == registry::CapabilityLifecycle::Deprecated as i32)
        {
            // Flagged on the step, its event and its audit entry.
            decision["warnings"] = json!([format!("capability {} is DEPRECATED", step.capability)]);
        }
        Transition::StepDecided {
            step: step.name.clone(),
            risk_level: risk.to_owned(),
            capability_version: version,
            resolved_inputs: Value::Object(inputs),
            decision,
        }
    }
}
