//! The per-step pipeline: assess, obey the verdict, execute with retries
//! and a deadline, record the outputs and the undo record.

use airt_proto::policy::v1::EvaluationPurpose;
use tokio::time::Instant;
use tracing::Instrument as _;

use airt_proto::registry::v1 as registry;
use serde_json::{Map, Value};

use super::assess::{Assessment, Examined, GateFailure, StepInputs};
use super::{ACTOR, Engine, Outcome, Run, approvals};
use crate::capabilities::ErrorKind;
use crate::capabilities::{ExecutionContext, HandlerError};
use crate::domain::template::{Scope, resolve};
use crate::domain::verdict::Verdict;
use crate::domain::{StepSpec, StepStatus, StepType};
use crate::error::WorkflowError;
use crate::store::{ApprovalRow, Transition};
use airt_kit::backoff::Backoff;

/// How a step (re)starts.
#[derive(Debug, Default)]
pub(super) struct StepStart {
    /// The granted approval of a step that waited for one.
    pub(super) approval: Option<ApprovalRow>,
    /// The attempt to start with (an interrupted attempt is made again).
    pub(super) first_attempt: u32,
}

/// Why a step stopped before it succeeded.
#[derive(Debug)]
pub(super) enum StepError {
    /// The step ends with this status (FAILED, DENIED) and reason.
    Stop { status: StepStatus, reason: String },
    /// The engine cannot go on with this workflow (storage, lease).
    Engine(WorkflowError),
}

impl StepError {
    pub(super) fn failed(reason: impl Into<String>) -> Self {
        Self::Stop {
            status: StepStatus::Failed,
            reason: reason.into(),
        }
    }

    /// The gate gave no verdict; `when` prefixes the reason (a retry's
    /// `before attempt N`).
    pub(super) fn gate(failure: GateFailure, when: &str) -> Self {
        match failure {
            GateFailure::Refused(refusal) if when.is_empty() => Self::failed(refusal.to_string()),
            GateFailure::Refused(refusal) => Self::failed(format!("{when}: {refusal}")),
            GateFailure::Engine(error) => Self::Engine(error),
        }
    }
}

impl From<WorkflowError> for StepError {
    fn from(error: WorkflowError) -> Self {
        Self::Engine(error)
    }
}

/// How a step's attempts run.
#[derive(Debug)]
struct Attempts<'a> {
    /// The granted approval the step runs with.
    approval: Option<&'a ApprovalRow>,
    first: u32,
    deadline: Instant,
    /// The decision, committed with the first attempt.
    decided: Option<Transition>,
}

/// A step's inputs resolved against the initial state and earlier outputs,
/// and storable.
fn resolve_inputs(run: &Run, step: &StepSpec) -> Result<Map<String, Value>, StepError> {
    let outputs = run.outputs();
    let scope = Scope {
        initial_state: &run.spec.initial_state,
        outputs: &outputs,
    };
    match resolve(&Value::Object(step.inputs.clone()), scope) {
        Ok(value) => {
            storable(&value)
                .map_err(|why| StepError::failed(format!("inputs cannot be stored: {why}")))?;
            match value {
                Value::Object(map) => Ok(map),
                _ => Ok(Map::new()),
            }
        }
        Err(error) => Err(StepError::failed(format!("inputs: {error}"))),
    }
}

/// Whether a step's inputs or outputs can be stored and served back.
fn storable(value: &Value) -> Result<(), String> {
    use airt_kit::limits::{MAX_STORED_BYTES, MAX_STORED_DEPTH, check_storable};
    check_storable(value, MAX_STORED_BYTES, MAX_STORED_DEPTH)
}

impl Engine {
    pub(super) async fn fail(
        &self,
        run: &Run,
        step: &StepSpec,
        status: StepStatus,
        reason: String,
    ) -> Result<Outcome, WorkflowError> {
        self.transition(
            &run.workflow_id,
            Transition::Step {
                step: step.name.clone(),
                status,
                attempt: None,
                error: reason.clone(),
            },
        )
        .await?;
        Ok(Outcome::Failed { reason })
    }

    /// The per-step pipeline, in SPEC order; a step stopped on the way
    /// (refused, denied, failed) is committed with its status and reason.
    pub(super) async fn run_step(
        &self,
        run: &Run,
        step: &StepSpec,
        start: StepStart,
    ) -> Result<Outcome, WorkflowError> {
        let started = Instant::now();
        let span = tracing::info_span!(
            "workflow.step",
            workflow_id = %run.workflow_id,
            step = %step.name,
            capability = %step.capability,
            decision = tracing::field::Empty,
            attempt = tracing::field::Empty,
            status = tracing::field::Empty,
        );
        let pipeline = self
            .step_pipeline(run, step, start)
            .instrument(span.clone());
        let (status, outcome) = match pipeline.await {
            Ok(outcome) => {
                let status = match &outcome {
                    Outcome::Succeeded(_) => StepStatus::Succeeded,
                    Outcome::Failed { .. } => StepStatus::Failed,
                    Outcome::AwaitingApproval => StepStatus::AwaitingApproval,
                };
                (status, outcome)
            }
            Err(StepError::Stop { status, reason }) => {
                (status, self.fail(run, step, status, reason).await?)
            }
            Err(StepError::Engine(error)) => return Err(error),
        };
        span.record("status", status.as_str());
        let known = self.inner.registry.knows(&step.capability);
        self.metrics().step(
            known.then_some(step.capability.as_str()),
            status,
            started.elapsed(),
        );
        Ok(outcome)
    }

    async fn step_pipeline(
        &self,
        run: &Run,
        step: &StepSpec,
        start: StepStart,
    ) -> Result<Outcome, StepError> {
        let StepStart {
            approval,
            first_attempt,
        } = start;
        if step.step_type == StepType::HumanApproval {
            return Ok(match approval {
                Some(approval) => self.pass_human_approval(run, step, &approval).await?,
                None => self.request_human_approval(run, step).await?,
            });
        }
        if run.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(StepError::failed("workflow exceeded options.max_duration"));
        }
        let deadline = self.step_deadline(run, step);
        // 1. Resolve inputs; 2-4. the registry, the inputs against its
        // parameters, the policy with the registry's risk.
        let inputs = StepInputs::resolved(resolve_inputs(run, step)?);
        let journal = Some(run.workflow_id.as_str());
        // An action resumed after its approval was counted when it was
        // first decided.
        let purpose = if approval.is_some() {
            EvaluationPurpose::Continue
        } else {
            EvaluationPurpose::Execute
        };
        let assessment = self
            .assess(run, step, inputs, deadline, journal, purpose)
            .await
            .map_err(|failure| StepError::gate(failure, ""))?;
        // The decision is committed with the first attempt it allows (one
        // transaction); any other verdict's rides with the driver's next
        // commit (the denial, or the approval request and PAUSED).
        tracing::Span::current().record("decision", assessment.verdict.name());
        let examined = &assessment.examined;
        let mut decided = Some(Self::decided(
            step,
            Some(&examined.spec),
            examined.inputs.clone(),
            &assessment.record,
        ));
        if assessment.verdict != Verdict::Allow
            && let Some(decided) = decided.take()
        {
            self.defer(&run.workflow_id, decided);
        }
        // 5. Obey.
        if let Some(outcome) = self
            .obey(run, step, &assessment, approval.as_ref(), "")
            .await?
        {
            return Ok(outcome);
        }
        // 6-7. Execute, retrying only what can succeed on retry.
        let attempts = Attempts {
            approval: approval.as_ref(),
            first: first_attempt.max(1),
            deadline,
            decided,
        };
        self.execute(run, step, &assessment.examined, attempts)
            .await
    }

    /// Whether the step may execute under the verdict (`None`), or what
    /// became of it: DENIED, or waiting for an approval bound to the exact
    /// action — a granted approval for a different action is voided and
    /// asked again. `when` says when the question was asked (empty for the
    /// first attempt, `before attempt N` for a retry).
    pub(super) async fn obey(
        &self,
        run: &Run,
        step: &StepSpec,
        assessment: &Assessment,
        approval: Option<&ApprovalRow>,
        when: &str,
    ) -> Result<Option<Outcome>, StepError> {
        let examined = &assessment.examined;
        match &assessment.verdict {
            Verdict::Allow => Ok(None),
            Verdict::Deny { rule, reason } => {
                let when = if when.is_empty() {
                    String::new()
                } else {
                    format!(" {when}")
                };
                Err(StepError::Stop {
                    status: StepStatus::Denied,
                    reason: format!("policy denied{when}: rule {rule}: {reason}"),
                })
            }
            Verdict::RequireApproval { .. } => {
                let action = approvals::ActionFacts::new(
                    step,
                    Some(&examined.spec),
                    &examined.inputs,
                    &assessment.record,
                );
                if let Some(granted) = approval {
                    if granted.action_digest == action.digest(run, step) {
                        return Ok(None);
                    }
                    let why = format!(
                        "the action changed after the approval was requested ({})",
                        action.changes_since(granted)
                    );
                    self.void_approval(run, &step.name, &granted.approval_id, &why)
                        .await?;
                }
                Ok(Some(self.request_action_approval(run, step, action).await?))
            }
        }
    }

    /// Attempts the action until it succeeds, fails for good, or runs out
    /// of attempts or time; each retry is decided again first.
    async fn execute(
        &self,
        run: &Run,
        step: &StepSpec,
        examined: &Examined,
        attempts: Attempts<'_>,
    ) -> Result<Outcome, StepError> {
        let Attempts {
            approval,
            first,
            deadline,
            mut decided,
        } = attempts;
        let inputs = &examined.inputs;
        let mut backoff = Backoff::new(
            step.retry.initial_backoff,
            step.retry.multiplier,
            step.retry.max_backoff,
        );
        let last = step.retry.max_attempts.max(first);
        for attempt in first..=last {
            if attempt > first
                && let Some(outcome) = self
                    .recheck(run, step, inputs, approval, attempt, deadline)
                    .await?
            {
                return Ok(outcome);
            }
            let running = Transition::Step {
                step: step.name.clone(),
                status: StepStatus::Running,
                attempt: Some(i64::from(attempt)),
                error: String::new(),
            };
            let transitions: Vec<Transition> =
                decided.take().into_iter().chain([running]).collect();
            self.commit_all(&run.workflow_id, ACTOR, &self.inner.owner, transitions)
                .await?;
            tracing::Span::current().record("attempt", attempt);
            // A remote handler's request joins the step's trace.
            let ctx = ExecutionContext::new(
                &run.workflow_id,
                &step.name,
                attempt,
                deadline,
                self.inner.workspace.clone(),
            )
            .with_trace_headers(airt_kit::trace::current_headers());
            let remaining = deadline.saturating_duration_since(Instant::now());
            let result = tokio::time::timeout(remaining, self.invoke(&examined.spec, &ctx, inputs))
                .await
                .unwrap_or_else(|_| {
                    let why = format!("step {} timed out", step.name);
                    Err(HandlerError::new(ErrorKind::Timeout, why).retryable(false))
                });
            match result {
                Ok(execution) => {
                    if let Err(why) = storable(&execution.outputs) {
                        return Err(StepError::failed(format!(
                            "the action ran, but its output cannot be stored: {why}"
                        )));
                    }
                    // Outputs and the undo record, committed with SUCCEEDED
                    // (deferred: with the driver's next write).
                    self.defer(
                        &run.workflow_id,
                        Transition::StepSucceeded {
                            step: step.name.clone(),
                            outputs: execution.outputs.clone(),
                            undo: execution.undo.unwrap_or(Value::Null),
                        },
                    );
                    return Ok(Outcome::Succeeded(execution.outputs));
                }
                Err(error) if error.retryable && attempt < last && Instant::now() < deadline => {
                    tracing::info!(workflow_id = %run.workflow_id, step = %step.name, attempt, %error, "retrying");
                    let wait = backoff.next_delay();
                    tokio::time::sleep(
                        wait.min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                }
                Err(error) => return Err(StepError::failed(error.to_string())),
            }
        }
        Err(StepError::failed("no attempt left"))
    }

    /// Calls the handler a capability names: a built-in, a remote HTTP
    /// endpoint, or a tool of an MCP server.
    pub(super) async fn invoke(
        &self,
        spec: &registry::CapabilitySpec,
        ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<crate::capabilities::Execution, HandlerError> {
        if let Some(name) = spec.handler.strip_prefix("builtin:") {
            self.inner.catalogue.check_pinned_spec(spec)?;
            let handler = self.inner.catalogue.handler(name).ok_or_else(|| {
                HandlerError::new(
                    crate::capabilities::ErrorKind::NotFound,
                    format!("no built-in handler {name}"),
                )
            })?;
            return handler.execute(ctx, inputs).await;
        }
        if let Some(url) = spec.handler.strip_prefix("http:") {
            return self.inner.remote.call(url, ctx, inputs).await;
        }
        if let Some(target) = spec.handler.strip_prefix("mcp:") {
            return self.inner.mcp.call(target, ctx, inputs).await;
        }
        Err(HandlerError::new(
            crate::capabilities::ErrorKind::NotFound,
            format!("unsupported handler {}", spec.handler),
        ))
    }
}
