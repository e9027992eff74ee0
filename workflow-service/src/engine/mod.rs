//! The engine: runs a workflow's steps as a DAG, each through the gate —
//! registry (what is it, how risky?), input validation, policy (may the
//! submitter do it?) — and obeys: DENY fails the step, REQUIRE_APPROVAL
//! pauses the workflow without executing, ALLOW executes with retries and a
//! timeout. On failure, completed steps are compensated in reverse
//! completion order. Every transition is committed before the action it
//! announces.

mod approvals;
mod assess;
mod collect;
mod journal;
mod lease;
mod plan;
mod recheck;
mod rollback;
mod schedule;
mod step;
mod undo;

use lease::{CancelFlag, Claim, Slot};
pub use plan::StepPlan;
use step::StepStart;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use airt_kit::Principal;
use airt_proto::policy::v1 as policy;
use airt_proto::registry::v1 as registry;
use serde_json::{Map, Value, json};

use crate::capabilities::{Catalogue, ParameterSpec, Workspace};
use crate::domain::{WorkflowDraft, WorkflowSpec};
use crate::error::WorkflowError;
use crate::gate::policy::PolicyGate;
use crate::gate::registry::RegistryGate;
use crate::store::{StepRow, Transition, WorkflowRow, WorkflowStore};
use crate::webhooks::WebhookConfig;

/// How the engine behaves where a spec says nothing.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Step timeout when the step sets none (also bounds waiting for the
    /// registry and the policy service).
    pub default_step_timeout: Duration,
    /// Attempts per compensation before it counts as failed.
    pub compensation_attempts: u32,
    /// How long an approval waits for a decision when the step sets no
    /// `approval.timeout` (and for approvals the policy requires).
    pub approval_timeout: Duration,
    /// Where approval and workflow events are announced.
    pub webhooks: WebhookConfig,
    /// This instance's name in leases; stable across restarts, so a
    /// restarted instance resumes its own workflows without waiting for
    /// their leases to expire. Unique among replicas.
    pub instance_id: String,
    /// How long a lease lasts without renewal (renewed every third of it).
    pub lease_ttl: Duration,
    /// How often orphaned workflows (expired leases) are looked for.
    pub recovery_interval: Duration,
    /// Workflows this instance drives at once; more wait their turn, and
    /// the recovery scan claims only what it can start.
    pub max_active_runs: usize,
    /// The deployment's environment (`prod`, `staging`, ...): what the
    /// policy's `when.environment` matches. Configuration, never the caller.
    pub environment: String,
    /// How long a finished workflow's undo data is kept (see `collect.rs`).
    pub undo_retention: Duration,
    /// What the engine counts (registered nowhere by default).
    pub metrics: crate::metrics::WorkflowMetrics,
    /// The local MCP servers `mcp:stdio:<name>#<tool>` handlers may start.
    pub mcp_stdio: Arc<crate::capabilities::mcp::StdioServers>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            default_step_timeout: Duration::from_secs(60),
            compensation_attempts: 3,
            approval_timeout: Duration::from_secs(24 * 3600),
            webhooks: WebhookConfig::default(),
            instance_id: uuid::Uuid::now_v7().to_string(),
            lease_ttl: Duration::from_secs(15),
            recovery_interval: Duration::from_secs(1),
            max_active_runs: 1024,
            environment: String::new(),
            undo_retention: Duration::from_secs(24 * 3600),
            metrics: crate::metrics::WorkflowMetrics::default(),
            mcp_stdio: Arc::default(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    store: WorkflowStore,
    catalogue: Arc<Catalogue>,
    workspace: Arc<Workspace>,
    registry: RegistryGate,
    policy: PolicyGate,
    remote: crate::capabilities::remote::RemoteCaller,
    mcp: crate::capabilities::mcp::McpCaller,
    config: EngineConfig,
    /// One slot per unfinished workflow this process has touched: only the
    /// holder of its lock drives it, so a workflow never runs twice here.
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// Woken when a webhook delivery is queued.
    outbox: Arc<tokio::sync::Notify>,
    /// Woken when an approval (with a deadline) is requested.
    deadlines: Arc<tokio::sync::Notify>,
    /// This process in leases: `<instance id>#<boot id>`.
    owner: String,
    /// Driver writes held back to ride with the driver's next commit of the
    /// same workflow (see [`Engine::defer`]).
    deferred: Mutex<HashMap<String, Vec<Transition>>>,
    /// One permit per workflow being driven (`max_active_runs`).
    active: Arc<tokio::sync::Semaphore>,
}

/// Runs workflows. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Who acts on the engine's behalf in audit entries.
const ACTOR: &str = "service:workflow";
/// How long a deferred write may wait for the next commit of its workflow
/// before it is committed on its own.
const FLUSH_AFTER: Duration = Duration::from_millis(5);

#[derive(Debug)]
pub(crate) enum Outcome {
    Succeeded(Value),
    Failed { reason: String },
    AwaitingApproval,
}

/// One run of one workflow.
#[derive(Debug)]
pub(crate) struct Run {
    workflow_id: String,
    spec: WorkflowSpec,
    submitter: Principal,
    deadline: Option<Instant>,
    outputs: Mutex<Map<String, Value>>,
}

impl Run {
    /// A run of nothing yet: for checks before a workflow is stored.
    fn checking(spec: WorkflowSpec, submitter: &Principal) -> Self {
        Self {
            workflow_id: String::new(),
            spec,
            submitter: submitter.clone(),
            deadline: None,
            outputs: Mutex::default(),
        }
    }

    fn outputs(&self) -> Map<String, Value> {
        self.outputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The registry's risk level as text; unknown or unspecified is HIGH.
fn risk_name(level: i32) -> &'static str {
    airt_kit::vocabulary::RiskLevel::from_proto(level).map_or("HIGH", |l| l.as_str())
}

fn parameters_of(spec: &registry::CapabilitySpec) -> Vec<ParameterSpec> {
    spec.parameters
        .iter()
        .map(|p| ParameterSpec {
            name: p.name.clone(),
            param_type: registry::ParameterType::try_from(p.r#type)
                .map(|t| {
                    t.as_str_name()
                        .trim_start_matches("PARAMETER_TYPE_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_default(),
            required: p.required,
            default: p
                .default_value
                .as_ref()
                .map(airt_kit::json::from_proto_value),
        })
        .collect()
}

fn decision_json(record: &policy::DecisionRecord) -> Value {
    json!({
        "decision": policy::Decision::try_from(record.decision).map_or("UNSPECIFIED", |d| d.as_str_name().trim_start_matches("DECISION_")),
        "rule_id": record.rule_id,
        "reason": record.reason,
        "escalated": record.escalated,
        "policy_revision": record.policy_revision,
    })
}

impl Engine {
    pub fn new(
        store: WorkflowStore,
        catalogue: Arc<Catalogue>,
        workspace: Arc<Workspace>,
        registry: RegistryGate,
        policy: PolicyGate,
        network: Arc<crate::capabilities::net::NetworkPolicy>,
        config: EngineConfig,
    ) -> Self {
        let remote = crate::capabilities::remote::RemoteCaller::new(network.clone());
        let mcp = crate::capabilities::mcp::McpCaller::new(network, config.mcp_stdio.clone());
        Self {
            inner: Arc::new(Inner {
                store,
                catalogue,
                workspace,
                registry,
                policy,
                remote,
                mcp,
                slots: Mutex::default(),
                deferred: Mutex::default(),
                active: Arc::new(tokio::sync::Semaphore::new(config.max_active_runs.max(1))),
                outbox: Arc::default(),
                deadlines: Arc::default(),
                owner: format!("{}#{}", config.instance_id, uuid::Uuid::now_v7()),
                config,
            }),
        }
    }

    pub fn store(&self) -> &WorkflowStore {
        &self.inner.store
    }

    /// Notified whenever a webhook delivery is queued (for the dispatcher).
    pub fn outbox_notify(&self) -> Arc<tokio::sync::Notify> {
        self.inner.outbox.clone()
    }

    /// The permits of the workflows this replica drives (for its metrics).
    pub fn active_runs(&self) -> Arc<tokio::sync::Semaphore> {
        self.inner.active.clone()
    }

    fn metrics(&self) -> &crate::metrics::WorkflowMetrics {
        &self.inner.config.metrics
    }

    /// Validates and stores a workflow for `submitter`, then runs it in the
    /// background; returns its row and, when it was created now, its steps
    /// as stored (every one PENDING). A `request_id` already used by the
    /// submitter returns the existing workflow (and `None`) and starts nothing.
    pub async fn submit(
        &self,
        draft: WorkflowDraft,
        submitter: Principal,
        request_id: Option<String>,
    ) -> Result<(WorkflowRow, Option<Vec<StepRow>>), WorkflowError> {
        let spec = self.admit(&draft)?;
        let run = Run::checking(spec, &submitter);
        self.check_statically(&run).await?;
        let spec = run.spec;
        let workflow_id = uuid::Uuid::now_v7().to_string();
        // Stored with this instance's lease (its first run claims nothing)
        // and the submission's trace, which every run of it joins.
        let trace_parent = airt_kit::trace::current_traceparent();
        let origin = crate::store::Origin {
            lease_owner: &self.inner.owner,
            lease_until_us: self.lease_until(),
            trace_parent: &trace_parent,
        };
        let (row, created) = self
            .inner
            .store
            .create_leased(
                &workflow_id,
                &draft,
                &spec,
                &submitter,
                request_id.as_deref(),
                origin,
            )
            .await?;
        if !created {
            return Ok((row, None));
        }
        self.metrics().submitted();
        let engine = self.clone();
        let id = row.workflow_id.clone();
        tokio::spawn(async move {
            if let Err(error) = engine.run_with(&id, Claim::AlreadyHeld).await {
                tracing::error!(workflow_id = %id, %error, "workflow run stopped on an internal error");
            }
        });
        let steps = crate::store::pending_steps(&row.workflow_id, &spec);
        Ok((row, Some(steps)))
    }

    /// Current outputs of a workflow's steps (for tests and the API).
    pub async fn step_outputs(
        &self,
        workflow_id: &str,
    ) -> Result<HashMap<String, Value>, WorkflowError> {
        Ok(self
            .inner
            .store
            .steps(workflow_id)
            .await?
            .into_iter()
            .map(|s| {
                (
                    s.step_name,
                    serde_json::from_str(&s.outputs).unwrap_or(Value::Null),
                )
            })
            .collect())
    }
}
