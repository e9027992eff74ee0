//! The engine: runs a workflow's steps as a DAG, each through the gate —
//! registry (what is it, how risky?), input validation, policy (may the
//! submitter do it?) — and obeys: DENY fails the step, REQUIRE_APPROVAL
//! pauses the workflow without executing, ALLOW executes with retries and a
//! timeout. On failure, completed steps are compensated in reverse
//! completion order. Every transition is committed before the action it
//! announces.

mod approvals;
mod recheck;
mod undo;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airt_kit::Principal;
use airt_kit::json::to_proto_struct;
use airt_proto::common::v1 as common;
use airt_proto::policy::v1 as policy;
use airt_proto::registry::v1 as registry;
use serde_json::{Map, Value, json};

use crate::capabilities::{
    Catalogue, ExecutionContext, HandlerError, ParameterSpec, Workspace, validate_inputs,
};
use crate::domain::template::{Scope, resolve};
use crate::domain::{
    CompensationStatus, StepSpec, StepStatus, StepType, WorkflowDraft, WorkflowSpec,
    WorkflowStatus, validate_workflow,
};
use crate::error::WorkflowError;
use crate::gate::GateError;
use crate::gate::policy::PolicyGate;
use crate::gate::registry::RegistryGate;
use crate::store::{ApprovalRow, Transition, WorkflowRow, WorkflowStore};
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

/// How a run gets the workflow's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// Claim it (free, expired, or ours already).
    Take,
    /// The workflow was stored with this instance's lease moments ago.
    AlreadyHeld,
}

/// Who drives a workflow in this process, and whether it is to be cancelled.
#[derive(Debug, Default)]
struct Slot {
    drive: tokio::sync::Mutex<()>,
    cancel: CancelFlag,
}

/// A cancellation request (whether to roll back, and why), and whether this
/// instance lost the workflow's lease and must stop.
#[derive(Debug, Default)]
struct CancelFlag {
    request: Mutex<Option<(bool, String)>>,
    lost: std::sync::atomic::AtomicBool,
}

impl CancelFlag {
    fn lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn set_lost(&self, lost: bool) {
        self.lost.store(lost, std::sync::atomic::Ordering::SeqCst);
    }

    /// Takes over a cancellation persisted by any replica (JSON
    /// `{"rollback": bool, "reason": "..."}`; empty: none).
    fn absorb(&self, persisted: &str) {
        if let Ok(request) = serde_json::from_str::<Value>(persisted) {
            self.request(
                request["rollback"].as_bool().unwrap_or(false),
                request["reason"].as_str().unwrap_or_default(),
            );
        }
    }

    fn requested(&self) -> Option<(bool, String)> {
        self.request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn request(&self, rollback: bool, reason: &str) {
        self.request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert((rollback, reason.to_owned()));
    }
}

/// Runs workflows. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Workflows claimed per recovery scan.
const RECOVERY_BATCH: i64 = 128;

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

/// The registry's answer and the policy decision for one step, from its
/// statically known inputs.
#[derive(Debug)]
struct Assessment {
    capability: Option<registry::Capability>,
    known: Map<String, Value>,
    deferred: Vec<String>,
    decision: policy::DecisionRecord,
}

/// What preflight says of one step.
#[derive(Debug, Clone)]
pub struct StepPlan {
    pub step_name: String,
    /// `None` for an unknown capability (treated as HIGH risk) or a
    /// HUMAN_APPROVAL step.
    pub capability: Option<registry::Capability>,
    /// `None` for HUMAN_APPROVAL steps.
    pub decision: Option<policy::DecisionRecord>,
    /// Inputs that depend on earlier steps' outputs.
    pub deferred_inputs: Vec<String>,
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

/// Where a workflow stands, from its stored steps and approvals.
#[derive(Debug, Default)]
struct Progress {
    /// Succeeded steps.
    done: HashSet<String>,
    /// Steps not to schedule again (done, waiting, or settled below).
    started: HashSet<String>,
    /// Steps whose approval was granted: they run now.
    approved: HashMap<String, ApprovalRow>,
    /// Steps whose approval was rejected or expired: status and reason.
    settled: Vec<(String, StepStatus, String)>,
    /// A step still waits for a decision.
    waiting: bool,
    /// A waiting step's approval was voided before a new one was requested.
    orphaned: bool,
    /// A step that had already failed (DENIED, FAILED, ...), with its error.
    failed: Option<(String, String)>,
    /// Steps interrupted while RUNNING, with their attempt: re-executed
    /// from that attempt, under the same idempotency key.
    interrupted: HashMap<String, u32>,
}

/// How a step (re)starts.
#[derive(Debug, Default)]
struct StepStart {
    /// The granted approval of a step that waited for one.
    approval: Option<ApprovalRow>,
    /// The attempt to start with (an interrupted attempt is made again).
    first_attempt: u32,
}

impl Progress {
    /// Whether anything can happen to a paused workflow now.
    fn actionable(&self) -> bool {
        !self.approved.is_empty() || !self.settled.is_empty() || self.orphaned
    }
}

impl Run {
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

/// A background task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whether a step's inputs or outputs can be stored and served back.
fn storable(value: &Value) -> Result<(), String> {
    use airt_kit::limits::{MAX_STORED_BYTES, MAX_STORED_DEPTH, check_storable};
    check_storable(value, MAX_STORED_BYTES, MAX_STORED_DEPTH)
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
        let remote = crate::capabilities::remote::RemoteCaller::new(network);
        Self {
            inner: Arc::new(Inner {
                store,
                catalogue,
                workspace,
                registry,
                policy,
                remote,
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

    /// Validates and stores a workflow for `submitter`, then runs it in the
    /// background. A `request_id` already used by the submitter returns the
    /// existing workflow and starts nothing.
    pub async fn submit(
        &self,
        draft: WorkflowDraft,
        submitter: Principal,
        request_id: Option<String>,
    ) -> Result<(WorkflowRow, bool), WorkflowError> {
        let spec = self.admit(&draft)?;
        let workflow_id = uuid::Uuid::now_v7().to_string();
        // Stored with this instance's lease: its first run claims nothing.
        let (row, created) = self
            .inner
            .store
            .create_leased(
                &workflow_id,
                &draft,
                &spec,
                &submitter,
                request_id.as_deref(),
                (&self.inner.owner, self.lease_until()),
            )
            .await?;
        if created {
            let engine = self.clone();
            let id = row.workflow_id.clone();
            tokio::spawn(async move {
                if let Err(error) = engine.run_with(&id, Claim::AlreadyHeld).await {
                    tracing::error!(workflow_id = %id, %error, "workflow run stopped on an internal error");
                }
            });
        }
        Ok((row, created))
    }

    /// A write of the instance driving the workflow: committed only while
    /// it holds the lease.
    async fn transition(
        &self,
        workflow_id: &str,
        transition: Transition,
    ) -> Result<(), WorkflowError> {
        let owner = self.inner.owner.clone();
        self.commit(workflow_id, ACTOR, &owner, transition).await
    }

    /// A change from outside the driver (a human's decision, a deadline):
    /// committed whoever drives the workflow.
    async fn record_as(
        &self,
        workflow_id: &str,
        actor: &str,
        transition: Transition,
    ) -> Result<(), WorkflowError> {
        self.commit(workflow_id, actor, "", transition).await
    }

    async fn commit(
        &self,
        workflow_id: &str,
        actor: &str,
        lease_owner: &str,
        transition: Transition,
    ) -> Result<(), WorkflowError> {
        self.commit_all(workflow_id, actor, lease_owner, vec![transition])
            .await
    }

    /// Commits `transitions` in one transaction; a driver's commit (with a
    /// lease owner) carries the workflow's deferred writes first.
    async fn commit_all(
        &self,
        workflow_id: &str,
        actor: &str,
        lease_owner: &str,
        mut transitions: Vec<Transition>,
    ) -> Result<(), WorkflowError> {
        if !lease_owner.is_empty() {
            let held = self.take_deferred(workflow_id);
            if !held.is_empty() {
                transitions.splice(0..0, held);
            }
        }
        if transitions.is_empty() {
            return Ok(());
        }
        let announces = transitions.iter().any(|transition| {
            matches!(
                transition,
                Transition::Workflow { deliveries, .. }
                | Transition::ApprovalRequested { deliveries, .. }
                | Transition::ApprovalDecided { deliveries, .. }
                | Transition::ApprovalClosed { deliveries, .. } if !deliveries.is_empty()
            )
        });
        self.inner
            .store
            .apply_all(workflow_id, actor, lease_owner, &transitions)
            .await?;
        if announces {
            self.inner.outbox.notify_one();
        }
        Ok(())
    }

    /// Holds back a driver write so it commits in the same transaction as
    /// the driver's next write of this workflow: a step's SUCCEEDED with the
    /// next step's decision and first attempt, RUNNING with the first
    /// decision. Nothing acts on a deferred write before it is durable: the
    /// next side effect starts only after the commit that carries it. A
    /// crash before that commit loses only what a crash during the step
    /// would (the step runs again with the same idempotency key). The driver
    /// flushes whenever no commit is about to follow (see
    /// [`Engine::flushing_if_slow`]).
    fn defer(&self, workflow_id: &str, transition: Transition) {
        self.inner
            .deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(workflow_id.to_owned())
            .or_default()
            .push(transition);
    }

    fn take_deferred(&self, workflow_id: &str) -> Vec<Transition> {
        self.inner
            .deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(workflow_id)
            .unwrap_or_default()
    }

    /// Commits the workflow's deferred writes, if any.
    async fn flush(&self, workflow_id: &str) -> Result<(), WorkflowError> {
        let owner = self.inner.owner.clone();
        self.commit_all(workflow_id, ACTOR, &owner, Vec::new())
            .await
    }

    /// Awaits `work` (a question to the registry or the policy service);
    /// if it takes longer than [`FLUSH_AFTER`] the deferred writes are
    /// committed meanwhile rather than wait for it.
    async fn flushing_if_slow<T>(
        &self,
        workflow_id: &str,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, WorkflowError> {
        let mut work = std::pin::pin!(work);
        tokio::select! {
            biased;
            done = &mut work => return Ok(done),
            () = tokio::time::sleep(FLUSH_AFTER) => {}
        }
        self.flush(workflow_id).await?;
        Ok(work.await)
    }

    /// Moves a step to `status` (no attempt, no error).
    async fn mark(
        &self,
        workflow_id: &str,
        step: &str,
        status: StepStatus,
    ) -> Result<(), WorkflowError> {
        let step = step.to_owned();
        self.transition(
            workflow_id,
            Transition::Step {
                step,
                status,
                attempt: None,
                error: String::new(),
            },
        )
        .await
    }

    async fn set_status(
        &self,
        run: &Run,
        status: WorkflowStatus,
        reason: &str,
        failed_step: &str,
    ) -> Result<(), WorkflowError> {
        let deliveries = if status.is_terminal() {
            let payload = crate::webhooks::workflow_finished(crate::webhooks::Finished {
                workflow_id: &run.workflow_id,
                workflow_name: &run.spec.name,
                submitter: &run.submitter.to_string(),
                status: status.as_str(),
                reason,
                failed_step,
            });
            self.inner
                .config
                .webhooks
                .deliveries("", "workflow.finished", &payload)
        } else {
            Vec::new()
        };
        self.transition(
            &run.workflow_id,
            Transition::Workflow {
                status,
                reason: reason.to_owned(),
                failed_step: failed_step.to_owned(),
                deliveries,
            },
        )
        .await
    }

    /// Drives a stored workflow as far as it can go: PENDING starts it,
    /// PAUSED resumes it when an approval was decided, RUNNING and
    /// ROLLING_BACK (left by a crashed instance) continue where they
    /// stopped. Takes the workflow's lease first and renews it while
    /// working; when another instance holds it, nothing happens here.
    /// Serialised per workflow in this process.
    pub async fn run(&self, workflow_id: &str) -> Result<WorkflowStatus, WorkflowError> {
        self.run_with(workflow_id, Claim::Take).await
    }

    async fn run_with(
        &self,
        workflow_id: &str,
        claim: Claim,
    ) -> Result<WorkflowStatus, WorkflowError> {
        let queued = Instant::now();
        let _permit = self
            .inner
            .active
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| WorkflowError::Corrupt("the engine is shutting down".into()))?;
        // A lease taken at submission may have run out while waiting.
        let claim = if queued.elapsed() > self.inner.config.lease_ttl / 3 {
            Claim::Take
        } else {
            claim
        };
        let slot = self.slot(workflow_id);
        let result = {
            let _driving = slot.drive.lock().await;
            self.drive_leased(workflow_id, &slot, claim).await
        };
        self.release(workflow_id, &result);
        result
    }

    fn lease_until(&self) -> i64 {
        airt_kit::clock::now_micros()
            + i64::try_from(self.inner.config.lease_ttl.as_micros()).unwrap_or(i64::MAX / 4)
    }

    /// The stored workflow, or NOT_FOUND.
    async fn workflow_row(&self, workflow_id: &str) -> Result<WorkflowRow, WorkflowError> {
        self.inner
            .store
            .get(workflow_id)
            .await?
            .ok_or_else(|| WorkflowError::NotFound(workflow_id.to_owned()))
    }

    async fn status_of(&self, workflow_id: &str) -> Result<WorkflowStatus, WorkflowError> {
        self.workflow_row(workflow_id).await?.status()
    }

    /// With the slot held: claim, drive while renewing, release.
    async fn drive_leased(
        &self,
        workflow_id: &str,
        slot: &Arc<Slot>,
        claim: Claim,
    ) -> Result<WorkflowStatus, WorkflowError> {
        let owner = self.inner.owner.clone();
        let lease = match claim {
            Claim::Take => {
                self.inner
                    .store
                    .claim(workflow_id, &owner, self.lease_until())
                    .await?
            }
            // Any cancellation so far was requested through this process
            // (the slot carries it); later ones come with the renewals.
            Claim::AlreadyHeld => crate::store::Lease {
                held: true,
                cancel_request: String::new(),
            },
        };
        if !lease.held {
            // Another instance drives it; it sees any cancellation too.
            return self.status_of(workflow_id).await;
        }
        slot.cancel.set_lost(false);
        slot.cancel.absorb(&lease.cancel_request);
        // Aborted however this run ends: also when its future is dropped (a
        // caller that went away) or panics, so no renewer outlives its run.
        let renewer = AbortOnDrop(tokio::spawn(
            self.clone()
                .renew_lease(workflow_id.to_owned(), slot.clone()),
        ));
        let result = self.advance(workflow_id, &slot.cancel).await;
        drop(renewer);
        // Whatever is still deferred belongs to a run that stopped on an
        // error: it is lost as in a crash, and recovery repeats the step.
        let dropped = self.take_deferred(workflow_id);
        if !dropped.is_empty() {
            tracing::warn!(
                workflow_id,
                writes = dropped.len(),
                "run stopped with uncommitted writes; recovery will repeat them"
            );
        }
        match &result {
            // A fresh workflow's run writes its PAUSED or final status itself,
            // and that statement gives the lease up; a claimed one may have
            // been paused or finished already when claimed.
            Ok(status)
                if claim == Claim::Take
                    && (*status == WorkflowStatus::Paused || status.is_terminal()) =>
            {
                // Nothing to drive until a decision: any instance may resume it.
                if let Err(error) = self.inner.store.release(workflow_id, &owner).await {
                    tracing::warn!(workflow_id, %error, "lease not released; it will expire");
                }
            }
            Err(WorkflowError::LeaseLost(_)) => {
                tracing::warn!(
                    workflow_id,
                    "lease lost to another instance; stopped driving"
                );
            }
            _ => {}
        }
        result
    }

    /// Renews the lease every third of its lifetime; on losing it, or after
    /// failing to renew for two thirds of it, tells the driver to stop
    /// (before another instance may take over).
    async fn renew_lease(self, workflow_id: String, slot: Arc<Slot>) {
        let ttl = self.inner.config.lease_ttl;
        let owner = self.inner.owner.clone();
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(ttl / 3).await;
            match self
                .inner
                .store
                .renew(&workflow_id, &owner, self.lease_until())
                .await
            {
                Ok(lease) if lease.held => {
                    renewed = Instant::now();
                    slot.cancel.absorb(&lease.cancel_request);
                }
                Ok(_) => {
                    slot.cancel.set_lost(true);
                    return;
                }
                Err(error) => {
                    tracing::warn!(workflow_id, %error, "lease renewal failed");
                    if renewed.elapsed() >= ttl * 2 / 3 {
                        slot.cancel.set_lost(true);
                        return;
                    }
                }
            }
        }
    }

    /// Resumes what this instance should drive: workflows whose lease
    /// expired (or is this instance's, from before a restart), and paused
    /// ones with a decided approval. Returns how many were started.
    pub async fn recover_once(&self) -> Result<usize, WorkflowError> {
        // Claim only what can start now: a claimed workflow waiting for a
        // free run would hold a lease nobody renews.
        let free = self.inner.active.available_permits();
        let batch = i64::try_from(free)
            .unwrap_or(RECOVERY_BATCH)
            .min(RECOVERY_BATCH);
        if batch == 0 {
            return Ok(0);
        }
        let owner = self.inner.owner.clone();
        let mut ids = self
            .inner
            .store
            .claim_orphans(&owner, self.lease_until(), batch)
            .await?;
        if (ids.len() as i64) < batch {
            let paused = batch - ids.len() as i64;
            ids.extend(self.inner.store.decided_paused(&owner, paused).await?);
        }
        let mut started = 0;
        for id in ids {
            if self.is_driving(&id) {
                continue;
            }
            started += 1;
            self.run_in_background(&id);
        }
        Ok(started)
    }

    /// Looks for work to recover at start-up and then every
    /// `recovery_interval` until `shutdown`.
    pub async fn run_recovery(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            match self.recover_once().await {
                Ok(0) => {}
                // A full batch: there may be more; look again at once.
                Ok(n) if n >= RECOVERY_BATCH as usize => {
                    tracing::info!(workflows = n, "resumed workflows");
                    continue;
                }
                Ok(n) => tracing::info!(workflows = n, "resumed workflows"),
                Err(error) => tracing::warn!(%error, "recovery scan failed; retrying"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.inner.config.recovery_interval) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Whether this process is driving the workflow right now.
    fn is_driving(&self, workflow_id: &str) -> bool {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(workflow_id)
            .is_some_and(|slot| slot.drive.try_lock().is_err())
    }

    /// [`Engine::run`] in the background.
    fn run_in_background(&self, workflow_id: &str) {
        let (engine, id) = (self.clone(), workflow_id.to_owned());
        tokio::spawn(async move {
            if let Err(error) = engine.run(&id).await {
                tracing::error!(workflow_id = %id, %error, "workflow run stopped on an internal error");
            }
        });
    }

    fn slot(&self, workflow_id: &str) -> Arc<Slot> {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(workflow_id.to_owned())
            .or_default()
            .clone()
    }

    /// Forgets the slot of a finished workflow.
    fn release(&self, workflow_id: &str, result: &Result<WorkflowStatus, WorkflowError>) {
        if matches!(result, Ok(status) if status.is_terminal()) {
            self.inner
                .slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(workflow_id);
        }
    }

    /// One step forward for a workflow whose slot is held.
    async fn advance(
        &self,
        workflow_id: &str,
        flag: &CancelFlag,
    ) -> Result<WorkflowStatus, WorkflowError> {
        let row = self.workflow_row(workflow_id).await?;
        let status = row.status()?;
        if status.is_terminal() {
            return Ok(status);
        }
        let run = Arc::new(self.load_run(&row).await?);
        if status == WorkflowStatus::RollingBack {
            // Interrupted rollback: continue at the first unfinished compensation.
            return self
                .rollback(&run, &row.failure_reason, &row.failed_step)
                .await;
        }
        if let Some((rollback, why)) = flag.requested()
            && status != WorkflowStatus::Running
        {
            return self.settle_cancel(&run, rollback, &why).await;
        }
        // PENDING means no step was touched: the first step write commits
        // RUNNING with it.
        let progress = if status == WorkflowStatus::Pending {
            Progress::default()
        } else {
            self.progress(&run).await?
        };
        if status == WorkflowStatus::Paused && !progress.actionable() {
            return Ok(status);
        }
        self.drive(&run, flag, status, progress).await
    }

    /// Stops a workflow that is not being driven: skips what has not run,
    /// then rolls back (ROLLED_BACK / COMPENSATION_FAILED) or stops
    /// (CANCELLED).
    async fn settle_cancel(
        &self,
        run: &Run,
        rollback: bool,
        why: &str,
    ) -> Result<WorkflowStatus, WorkflowError> {
        let reason = format!("cancelled: {why}");
        self.skip_remaining(run, &reason).await?;
        if rollback && !run.outputs().is_empty() {
            return self.rollback(run, &reason, "").await;
        }
        self.set_status(run, WorkflowStatus::Cancelled, &reason, "")
            .await?;
        Ok(WorkflowStatus::Cancelled)
    }

    /// Where a workflow stands: its steps, and the state of the approvals
    /// its waiting steps wait for.
    async fn progress(&self, run: &Run) -> Result<Progress, WorkflowError> {
        let mut progress = Progress::default();
        let approvals: HashMap<String, ApprovalRow> = self
            .inner
            .store
            .approvals_of(&run.workflow_id)
            .await?
            .into_iter()
            .map(|a| (a.approval_id.clone(), a))
            .collect();
        for step in self.inner.store.steps(&run.workflow_id).await? {
            let name = step.step_name.clone();
            match step.status()? {
                StepStatus::Succeeded => {
                    progress.done.insert(name.clone());
                    progress.started.insert(name);
                }
                StepStatus::Pending => {}
                // Interrupted by a crash: run again from that attempt.
                StepStatus::Running => {
                    let attempt = u32::try_from(step.attempt.max(1)).unwrap_or(1);
                    // An approved step interrupted while executing keeps its
                    // approval (its digest is checked again).
                    if let Some(approval) = approvals.get(&step.approval_id)
                        && approval.status()? == crate::domain::ApprovalStatus::Approved
                    {
                        progress.approved.insert(name.clone(), approval.clone());
                    }
                    progress.interrupted.insert(name, attempt);
                }
                StepStatus::Failed
                | StepStatus::Denied
                | StepStatus::Rejected
                | StepStatus::Expired => {
                    progress
                        .failed
                        .get_or_insert((name.clone(), step.error.clone()));
                    progress.started.insert(name);
                }
                StepStatus::AwaitingApproval => {
                    let approval = approvals.get(&step.approval_id);
                    match approval.map(ApprovalRow::status).transpose()? {
                        Some(crate::domain::ApprovalStatus::Approved) => {
                            progress
                                .approved
                                .insert(name, approval.cloned().expect("checked above"));
                        }
                        Some(crate::domain::ApprovalStatus::Pending) => {
                            progress.waiting = true;
                            progress.started.insert(name);
                        }
                        Some(crate::domain::ApprovalStatus::Rejected) => {
                            let a = approval.expect("checked above");
                            let comment = if a.comment.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", a.comment)
                            };
                            let reason = format!(
                                "approval {} rejected by {}{comment}",
                                a.approval_id, a.decided_by
                            );
                            progress.started.insert(name.clone());
                            progress.settled.push((name, StepStatus::Rejected, reason));
                        }
                        Some(crate::domain::ApprovalStatus::Expired) => {
                            let a = approval.expect("checked above");
                            let reason = format!(
                                "approval {} expired at {} without a decision",
                                a.approval_id,
                                crate::domain::approval::rfc3339(a.expires_at_us)
                            );
                            progress.started.insert(name.clone());
                            progress.settled.push((name, StepStatus::Expired, reason));
                        }
                        // Voided before its replacement was requested: run
                        // the step again, which requests a new approval.
                        Some(crate::domain::ApprovalStatus::Void) | None => {
                            progress.orphaned = true;
                        }
                    }
                }
                _ => {
                    progress.started.insert(name);
                }
            }
        }
        Ok(progress)
    }

    /// A run's context from its stored row, with the outputs of the steps
    /// that already succeeded.
    async fn load_run(&self, row: &WorkflowRow) -> Result<Run, WorkflowError> {
        let spec = validate_workflow(&row.draft()?).map_err(WorkflowError::InvalidWorkflow)?;
        let roles: Vec<String> = serde_json::from_str(&row.submitter_roles).unwrap_or_default();
        let submitter = Principal::parse(&row.submitter, roles)
            .map_err(|e| WorkflowError::Corrupt(e.to_string()))?;
        // The workflow's time limit counts from its submission, across pauses
        // and restarts.
        let elapsed_us = airt_kit::clock::now_micros().saturating_sub(row.created_at_us);
        let elapsed = Duration::from_micros(u64::try_from(elapsed_us).unwrap_or(0));
        let deadline = spec
            .options
            .max_duration
            .map(|d| Instant::now() + d.saturating_sub(elapsed));
        // A PENDING workflow has no step touched, hence no outputs.
        let outputs = if row.status()? == WorkflowStatus::Pending {
            Map::new()
        } else {
            self.inner
                .store
                .steps(&row.workflow_id)
                .await?
                .into_iter()
                // Succeeded, possibly compensated since: their outputs feed
                // later steps and explicit compensations.
                .filter(|s| s.completed_seq > 0)
                .map(|s| {
                    (
                        s.step_name,
                        serde_json::from_str(&s.outputs).unwrap_or(Value::Null),
                    )
                })
                .collect()
        };
        Ok(Run {
            workflow_id: row.workflow_id.clone(),
            spec,
            submitter,
            deadline,
            outputs: Mutex::new(outputs),
        })
    }

    async fn drive(
        &self,
        run: &Arc<Run>,
        flag: &CancelFlag,
        from: WorkflowStatus,
        progress: Progress,
    ) -> Result<WorkflowStatus, WorkflowError> {
        let workflow_id = run.workflow_id.as_str();
        if from != WorkflowStatus::Running {
            self.defer(
                workflow_id,
                Transition::Workflow {
                    status: WorkflowStatus::Running,
                    reason: String::new(),
                    failed_step: String::new(),
                    deliveries: Vec::new(),
                },
            );
        }

        if from == WorkflowStatus::Pending
            && run.spec.options.preflight
            && let Some((step, reason)) = self
                .flushing_if_slow(workflow_id, self.preflight(run))
                .await??
        {
            for other in run.spec.steps.iter().filter(|s| s.name != step) {
                self.mark(workflow_id, &other.name, StepStatus::Skipped)
                    .await?;
            }
            self.set_status(run, WorkflowStatus::Failed, &reason, &step)
                .await?;
            return Ok(WorkflowStatus::Failed);
        }

        let Progress {
            mut done,
            mut started,
            mut approved,
            settled,
            waiting,
            failed,
            interrupted,
            ..
        } = progress;
        // A step that failed before an interruption fails the workflow.
        let mut failure: Option<(String, String)> = failed;
        // Rejected or expired approvals fail their steps.
        for (step, status, reason) in settled {
            self.transition(
                workflow_id,
                Transition::Step {
                    step: step.clone(),
                    status,
                    attempt: None,
                    error: reason.clone(),
                },
            )
            .await?;
            failure.get_or_insert((step, reason));
        }
        let max_parallel = run.spec.options.max_parallel as usize;
        let mut running = tokio::task::JoinSet::new();
        // While a step waits for a human no new step starts, except the
        // approved ones.
        let mut paused = waiting;
        loop {
            let mut spawned = false;
            if failure.is_none() && flag.requested().is_none() && !flag.lost() {
                for step in &run.spec.steps {
                    if running.len() >= max_parallel {
                        break;
                    }
                    let ready = !started.contains(&step.name)
                        && step.depends_on.iter().all(|d| done.contains(d))
                        && (!paused || approved.contains_key(&step.name));
                    if ready {
                        started.insert(step.name.clone());
                        let start = StepStart {
                            approval: approved.remove(&step.name),
                            first_attempt: interrupted.get(&step.name).copied().unwrap_or(1),
                        };
                        let (engine, run, step) = (self.clone(), run.clone(), step.clone());
                        running.spawn(async move {
                            let outcome = engine.run_step(&run, &step, start).await;
                            (step.name, outcome)
                        });
                        spawned = true;
                    }
                }
            }
            if !spawned && !running.is_empty() {
                // No step starts now whose first commit could carry them.
                self.flush(workflow_id).await?;
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let (name, outcome) =
                joined.map_err(|e| WorkflowError::Corrupt(format!("step task: {e}")))?;
            match outcome? {
                Outcome::Succeeded(outputs) => {
                    run.outputs
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name.clone(), outputs);
                    done.insert(name);
                }
                Outcome::Failed { reason, .. } => {
                    failure.get_or_insert((name, reason));
                }
                Outcome::AwaitingApproval => paused = true,
            }
        }

        if flag.lost() {
            return Err(WorkflowError::LeaseLost(run.workflow_id.clone()));
        }
        // What is still deferred rides with the final status, unless the
        // stored steps are read first (skipping what is left, rolling back).
        if failure.is_some() || flag.requested().is_some() {
            self.flush(workflow_id).await?;
        }
        if let Some((rollback, why)) = flag.requested()
            && failure.is_none()
        {
            let reason = format!("cancelled: {why}");
            self.skip_remaining(run, &reason).await?;
            if rollback && !done.is_empty() {
                return self.rollback(run, &reason, "").await;
            }
            self.set_status(run, WorkflowStatus::Cancelled, &reason, "")
                .await?;
            return Ok(WorkflowStatus::Cancelled);
        }
        if let Some((step, reason)) = failure {
            self.skip_remaining(run, &reason).await?;
            // With nothing completed there is nothing to roll back: FAILED.
            if run.spec.options.auto_rollback && !done.is_empty() {
                return self.rollback(run, &reason, &step).await;
            }
            self.set_status(run, WorkflowStatus::Failed, &reason, &step)
                .await?;
            return Ok(WorkflowStatus::Failed);
        }
        if paused {
            self.set_status(run, WorkflowStatus::Paused, "", "").await?;
            return Ok(WorkflowStatus::Paused);
        }
        self.set_status(run, WorkflowStatus::Completed, "", "")
            .await?;
        Ok(WorkflowStatus::Completed)
    }

    /// Marks every step that has not started, or waits for approval,
    /// SKIPPED; the approvals they wait for become VOID.
    async fn skip_remaining(&self, run: &Run, why: &str) -> Result<(), WorkflowError> {
        for step in self.inner.store.steps(&run.workflow_id).await? {
            let status = step.status()?;
            if status == StepStatus::AwaitingApproval && !step.approval_id.is_empty() {
                self.void_approval(run, &step.step_name, &step.approval_id, why)
                    .await?;
            }
            if matches!(status, StepStatus::Pending | StepStatus::AwaitingApproval) {
                self.mark(&run.workflow_id, &step.step_name, StepStatus::Skipped)
                    .await?;
            }
        }
        Ok(())
    }

    /// Cancels a workflow that has not finished: no new step starts; with
    /// `rollback`, completed steps are compensated (ROLLED_BACK or
    /// COMPENSATION_FAILED), otherwise it stops where it is (CANCELLED).
    /// A paused workflow is settled before this returns; one with steps in
    /// flight stops when they finish.
    pub async fn cancel(
        &self,
        workflow_id: &str,
        caller: &Principal,
        rollback: bool,
        reason: &str,
    ) -> Result<WorkflowRow, WorkflowError> {
        let row = self.workflow_row(workflow_id).await?;
        let status = row.status()?;
        if status.is_terminal() {
            return Err(WorkflowError::FailedPrecondition(format!(
                "workflow {workflow_id} is already {status}"
            )));
        }
        // For whichever instance drives it (it reads this with its lease).
        self.inner
            .store
            .request_cancel(
                workflow_id,
                &caller.to_string(),
                &json!({"rollback": rollback, "reason": reason}),
            )
            .await?;
        let slot = self.slot(workflow_id);
        slot.cancel.request(rollback, reason);
        match slot.drive.try_lock() {
            Ok(driving) => {
                let result = self.drive_leased(workflow_id, &slot, Claim::Take).await;
                drop(driving);
                self.release(workflow_id, &result);
                result?;
            }
            // Being driven: it sees the request; settle afterwards if it
            // paused before it did.
            Err(_) => self.run_in_background(workflow_id),
        }
        self.workflow_row(workflow_id).await
    }

    fn step_deadline(&self, run: &Run, step: &StepSpec) -> Instant {
        let own = Instant::now()
            + step
                .timeout
                .unwrap_or(self.inner.config.default_step_timeout);
        run.deadline.map_or(own, |d| d.min(own))
    }

    fn policy_context(
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

    /// A valid spec this deployment runs: its `metadata.environment`, a
    /// label, may not claim another environment than the deployment's.
    fn admit(&self, draft: &WorkflowDraft) -> Result<WorkflowSpec, WorkflowError> {
        let spec = validate_workflow(draft).map_err(WorkflowError::InvalidWorkflow)?;
        let deployed = &self.inner.config.environment;
        if !spec.environment.is_empty() && !deployed.is_empty() && &spec.environment != deployed {
            return Err(WorkflowError::InvalidWorkflow(vec![
                airt_kit::status::FieldViolation::new(
                    "spec.metadata.environment",
                    format!(
                        "this deployment is {deployed:?}, not {:?}; the environment comes from the service's configuration",
                        spec.environment
                    ),
                ),
            ]));
        }
        Ok(spec)
    }

    /// Looks up and evaluates one ACTION step with its statically known
    /// inputs (those that need earlier steps' outputs are deferred).
    async fn assess(&self, run: &Run, step: &StepSpec) -> Result<Assessment, GateError> {
        let deadline = self.step_deadline(run, step);
        let empty = Map::new();
        let scope = Scope {
            initial_state: &run.spec.initial_state,
            outputs: &empty,
        };
        let mut known = Map::new();
        let mut deferred = Vec::new();
        for (key, value) in &step.inputs {
            match resolve(value, scope) {
                Ok(value) => {
                    known.insert(key.clone(), value);
                }
                Err(_) => deferred.push(key.clone()),
            }
        }
        let capability = self
            .inner
            .registry
            .capability(&step.capability, deadline)
            .await?;
        let spec = capability.as_ref().and_then(|c| c.spec.clone());
        if let Some(spec) = &spec {
            Catalogue::normalise_paths(&spec.handler, &mut known);
        }
        let context = self.policy_context(run, step, spec.as_ref(), &known);
        let decision = self.inner.policy.evaluate(context, deadline).await?;
        Ok(Assessment {
            capability,
            known,
            deferred,
            decision,
        })
    }

    /// Preflight: the first step that would be denied fails the workflow
    /// before anything runs. Returns that step and the reason.
    async fn preflight(&self, run: &Run) -> Result<Option<(String, String)>, WorkflowError> {
        for step in run
            .spec
            .steps
            .iter()
            .filter(|s| s.step_type == StepType::Action)
        {
            let assessment = match self.assess(run, step).await {
                Ok(assessment) => assessment,
                Err(error) => {
                    return Ok(Some((
                        step.name.clone(),
                        format!("preflight: step {}: {error}", step.name),
                    )));
                }
            };
            let record = &assessment.decision;
            if record.decision == policy::Decision::Deny as i32 {
                let reason = format!(
                    "preflight: step {}: policy denied: rule {}: {}",
                    step.name, record.rule_id, record.reason
                );
                let spec = assessment.capability.as_ref().and_then(|c| c.spec.as_ref());
                self.record_decision(run, step, spec, assessment.known.clone(), record)
                    .await?;
                self.transition(
                    &run.workflow_id,
                    Transition::Step {
                        step: step.name.clone(),
                        status: StepStatus::Denied,
                        attempt: None,
                        error: reason.clone(),
                    },
                )
                .await?;
                return Ok(Some((step.name.clone(), reason)));
            }
        }
        Ok(None)
    }

    /// What would happen to each step of `draft` if `submitter` submitted
    /// it now: capability, risk and policy decision per step, from the
    /// statically known inputs. Nothing is stored or executed.
    pub async fn plan(
        &self,
        draft: &WorkflowDraft,
        submitter: Principal,
    ) -> Result<Vec<StepPlan>, WorkflowError> {
        let spec = self.admit(draft)?;
        let deadline = spec.options.max_duration.map(|d| Instant::now() + d);
        let run = Run {
            workflow_id: String::new(),
            spec,
            submitter,
            deadline,
            outputs: Mutex::default(),
        };
        let mut plans = Vec::new();
        for step in &run.spec.steps {
            if step.step_type == StepType::HumanApproval {
                plans.push(StepPlan {
                    step_name: step.name.clone(),
                    capability: None,
                    decision: None,
                    deferred_inputs: Vec::new(),
                });
                continue;
            }
            let assessment = self
                .assess(&run, step)
                .await
                .map_err(|e| WorkflowError::Unavailable(e.to_string()))?;
            plans.push(StepPlan {
                step_name: step.name.clone(),
                capability: assessment.capability,
                decision: Some(assessment.decision),
                deferred_inputs: assessment.deferred,
            });
        }
        Ok(plans)
    }

    /// Records the registry's answer and the decision, with the exact
    /// inputs the decision was obtained for.
    async fn record_decision(
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
    fn decided(
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

    async fn fail(
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

    /// The per-step pipeline, in SPEC order.
    async fn run_step(
        &self,
        run: &Run,
        step: &StepSpec,
        start: StepStart,
    ) -> Result<Outcome, WorkflowError> {
        let StepStart {
            approval,
            first_attempt,
        } = start;
        if step.step_type == StepType::HumanApproval {
            return match approval {
                Some(approval) => self.pass_human_approval(run, step, &approval).await,
                None => self.request_human_approval(run, step).await,
            };
        }
        if run.deadline.is_some_and(|d| Instant::now() >= d) {
            return self
                .fail(
                    run,
                    step,
                    StepStatus::Failed,
                    "workflow exceeded options.max_duration".into(),
                )
                .await;
        }
        let deadline = self.step_deadline(run, step);
        // 1. Resolve inputs.
        let outputs = run.outputs();
        let scope = Scope {
            initial_state: &run.spec.initial_state,
            outputs: &outputs,
        };
        let inputs = match resolve(&Value::Object(step.inputs.clone()), scope) {
            Ok(value) if let Err(why) = storable(&value) => {
                let why = format!("inputs cannot be stored: {why}");
                return self.fail(run, step, StepStatus::Failed, why).await;
            }
            Ok(Value::Object(map)) => map,
            Ok(_) => Map::new(),
            Err(error) => {
                return self
                    .fail(run, step, StepStatus::Failed, format!("inputs: {error}"))
                    .await;
            }
        };
        // 2. The registry: what is it, how risky?
        let capability = match self
            .flushing_if_slow(
                &run.workflow_id,
                self.inner.registry.capability(&step.capability, deadline),
            )
            .await?
        {
            Ok(found) => found,
            Err(error) => {
                return self
                    .fail(run, step, StepStatus::Failed, error.to_string())
                    .await;
            }
        };
        let spec = capability.as_ref().and_then(|c| c.spec.clone());
        if let Some(spec) = &spec
            && spec.lifecycle == registry::CapabilityLifecycle::Frozen as i32
        {
            let reason = capability
                .as_ref()
                .map(|c| c.lifecycle_reason.clone())
                .unwrap_or_default();
            return self
                .fail(
                    run,
                    step,
                    StepStatus::Failed,
                    format!("capability {} is FROZEN: {reason}", step.capability),
                )
                .await;
        }
        // 3. Inputs against the parameters.
        let inputs = match &spec {
            Some(spec) => match validate_inputs(&parameters_of(spec), &inputs) {
                Ok(mut inputs) => {
                    Catalogue::normalise_paths(&spec.handler, &mut inputs);
                    inputs
                }
                Err(error) => {
                    return self
                        .fail(
                            run,
                            step,
                            StepStatus::Failed,
                            format!("invalid inputs: {}", error.message),
                        )
                        .await;
                }
            },
            None => inputs,
        };
        // 4. The policy, with the registry's risk.
        let context = self.policy_context(run, step, spec.as_ref(), &inputs);
        let record = match self
            .flushing_if_slow(
                &run.workflow_id,
                self.inner.policy.evaluate(context, deadline),
            )
            .await?
        {
            Ok(record) => record,
            Err(error) => {
                return self
                    .fail(run, step, StepStatus::Failed, error.to_string())
                    .await;
            }
        };
        // The decision is committed with the first attempt it allows (one
        // transaction), or on its own before anything else.
        let mut decided = Some(Self::decided(step, spec.as_ref(), inputs.clone(), &record));
        let allowed = record.decision == policy::Decision::Allow as i32 && spec.is_some();
        if !allowed && let Some(decided) = decided.take() {
            self.transition(&run.workflow_id, decided).await?;
        }
        // 5. Obey. An approval binds to the exact action: a changed action
        // voids it and asks again.
        match policy::Decision::try_from(record.decision) {
            Ok(policy::Decision::Allow) => {}
            Ok(policy::Decision::RequireApproval) => {
                let action = approvals::ActionFacts::new(step, spec.as_ref(), &inputs, &record);
                match &approval {
                    Some(granted) if granted.action_digest == action.digest(run, step) => {}
                    Some(granted) => {
                        let why = format!(
                            "the action changed after the request ({})",
                            action.changes_since(granted)
                        );
                        self.void_approval(run, &step.name, &granted.approval_id, &why)
                            .await?;
                        return self.request_action_approval(run, step, action).await;
                    }
                    None => return self.request_action_approval(run, step, action).await,
                }
            }
            _ => {
                let reason = format!("policy denied: rule {}: {}", record.rule_id, record.reason);
                return self.fail(run, step, StepStatus::Denied, reason).await;
            }
        }
        let Some(spec) = spec else {
            return self
                .fail(
                    run,
                    step,
                    StepStatus::Failed,
                    format!("unknown capability {}: no handler", step.capability),
                )
                .await;
        };
        // 6. Execute, retrying only what can succeed on retry.
        let mut backoff = step.retry.initial_backoff;
        let first = first_attempt.max(1);
        for attempt in first..=step.retry.max_attempts.max(first_attempt) {
            if attempt > first
                && let Some(outcome) = self
                    .recheck(run, step, &inputs, approval.as_ref(), attempt, deadline)
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
            let ctx = ExecutionContext::new(
                &run.workflow_id,
                &step.name,
                attempt,
                deadline,
                self.inner.workspace.clone(),
            );
            let remaining = deadline.saturating_duration_since(Instant::now());
            let result =
                match tokio::time::timeout(remaining, self.invoke(&spec, &ctx, &inputs)).await {
                    Ok(result) => result,
                    Err(_) => Err(HandlerError::new(
                        crate::capabilities::ErrorKind::Timeout,
                        format!("step {} timed out", step.name),
                    )
                    .retryable(false)),
                };
            match result {
                Ok(execution) if let Err(why) = storable(&execution.outputs) => {
                    let why = format!("the action ran, but its output cannot be stored: {why}");
                    return self.fail(run, step, StepStatus::Failed, why).await;
                }
                Ok(execution) => {
                    // 7. Outputs and the undo record, committed with SUCCEEDED
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
                Err(error)
                    if error.retryable
                        && attempt < step.retry.max_attempts
                        && Instant::now() < deadline =>
                {
                    tracing::info!(workflow_id = %run.workflow_id, step = %step.name, attempt, %error, "retrying");
                    let jitter =
                        0.5 + (airt_kit::clock::now_micros().rem_euclid(1000) as f64) / 2000.0;
                    tokio::time::sleep(
                        backoff
                            .mul_f64(jitter)
                            .min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                    backoff = backoff
                        .mul_f64(step.retry.multiplier)
                        .min(step.retry.max_backoff);
                }
                Err(error) => {
                    return self
                        .fail(run, step, StepStatus::Failed, error.to_string())
                        .await;
                }
            }
        }
        self.fail(run, step, StepStatus::Failed, "no attempt left".into())
            .await
    }

    /// Calls the handler a capability names: a built-in, or a remote HTTP endpoint.
    async fn invoke(
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
        Err(HandlerError::new(
            crate::capabilities::ErrorKind::NotFound,
            format!("unsupported handler {}", spec.handler),
        ))
    }

    /// Compensates completed steps in reverse completion order.
    async fn rollback(
        &self,
        run: &Run,
        reason: &str,
        failed_step: &str,
    ) -> Result<WorkflowStatus, WorkflowError> {
        if self.status_of(&run.workflow_id).await? != WorkflowStatus::RollingBack {
            self.set_status(run, WorkflowStatus::RollingBack, reason, failed_step)
                .await?;
        }
        let mut completed: Vec<_> = self
            .inner
            .store
            .steps(&run.workflow_id)
            .await?
            .into_iter()
            .filter(|s| s.completed_seq > 0)
            .collect();
        completed.sort_by_key(|s| std::cmp::Reverse(s.completed_seq));
        // After an interruption: what was already planned and undone.
        let planned: HashMap<String, i64> = self
            .inner
            .store
            .compensations(&run.workflow_id)
            .await?
            .into_iter()
            .map(|c| (c.step_name, c.position))
            .collect();
        let mut position = planned.values().copied().max().unwrap_or(0);
        let outputs = run.outputs();
        let mut first_failure: Option<(String, String)> = None;
        for row in completed {
            let Some(step) = run.spec.steps.iter().find(|s| s.name == row.step_name) else {
                continue;
            };
            match row.status()? {
                StepStatus::Compensated => continue,
                StepStatus::CompensationFailed => {
                    first_failure.get_or_insert((step.name.clone(), row.error.clone()));
                    continue;
                }
                _ => {}
            }
            let undo: Value = serde_json::from_str(&row.undo).unwrap_or(Value::Null);
            let plan = match &step.compensation {
                Some(explicit) => {
                    let scope = Scope {
                        initial_state: &run.spec.initial_state,
                        outputs: &outputs,
                    };
                    match resolve(&Value::Object(explicit.inputs.clone()), scope) {
                        Ok(inputs) => Some((explicit.capability.clone(), inputs, true)),
                        Err(error) => {
                            first_failure.get_or_insert((
                                step.name.clone(),
                                format!("compensation inputs: {error}"),
                            ));
                            continue;
                        }
                    }
                }
                None if !undo.is_null() => Some((step.capability.clone(), undo.clone(), false)),
                None => match self.implicit_undo(step, &row).await {
                    undo::Undo::Nothing => None,
                    undo::Undo::Run { capability, inputs } => Some((capability, inputs, true)),
                    undo::Undo::Impossible(why) => {
                        first_failure.get_or_insert((step.name.clone(), why.clone()));
                        self.effect_stands(&run.workflow_id, &step.name, why)
                            .await?;
                        continue;
                    }
                },
            };
            let Some((capability, inputs, explicit)) = plan else {
                // It changed nothing: nothing to undo.
                continue;
            };
            // A compensation the workflow names is an action of its own: the
            // policy decides it like any step (the original decision covers
            // only the capability's own undo). Denied, or needing an approval
            // nobody can give mid-rollback: not run, the step stays to undo
            // by hand.
            let refusal = if explicit {
                self.compensation_refused(run, step, &capability, &inputs)
                    .await
            } else {
                None
            };
            if !planned.contains_key(&step.name) {
                position += 1;
                self.transition(
                    &run.workflow_id,
                    Transition::CompensationPlanned {
                        step: step.name.clone(),
                        position,
                        capability_id: capability.clone(),
                        inputs: inputs.clone(),
                    },
                )
                .await?;
                self.mark(&run.workflow_id, &step.name, StepStatus::Compensating)
                    .await?;
            }
            let (result, attempts) = match refusal {
                Some(why) => (Err(why), 0),
                None => {
                    self.attempt_compensation(run, step, &capability, &inputs, explicit)
                        .await?
                }
            };
            match result {
                Ok(()) => {
                    self.transition(
                        &run.workflow_id,
                        Transition::Compensation {
                            step: step.name.clone(),
                            status: CompensationStatus::Done,
                            attempts: i64::from(attempts),
                            error: String::new(),
                        },
                    )
                    .await?;
                    self.mark(&run.workflow_id, &step.name, StepStatus::Compensated)
                        .await?;
                }
                Err(error) => {
                    self.transition(
                        &run.workflow_id,
                        Transition::Compensation {
                            step: step.name.clone(),
                            status: CompensationStatus::Failed,
                            attempts: i64::from(attempts),
                            error: error.clone(),
                        },
                    )
                    .await?;
                    self.effect_stands(&run.workflow_id, &step.name, error.clone())
                        .await?;
                    first_failure.get_or_insert((step.name.clone(), error));
                }
            }
        }
        match first_failure {
            None => {
                self.set_status(run, WorkflowStatus::RolledBack, reason, failed_step)
                    .await?;
                Ok(WorkflowStatus::RolledBack)
            }
            Some((step, error)) => {
                let reason = format!("{reason}; compensation of step {step} failed: {error}");
                self.set_status(run, WorkflowStatus::CompensationFailed, &reason, &step)
                    .await?;
                Ok(WorkflowStatus::CompensationFailed)
            }
        }
    }

    /// Runs a planned compensation up to `compensation_attempts` times;
    /// returns the last result and the attempts made.
    async fn attempt_compensation(
        &self,
        run: &Run,
        step: &StepSpec,
        capability: &str,
        inputs: &Value,
        explicit: bool,
    ) -> Result<(Result<(), String>, u32), WorkflowError> {
        let mut result = Err(String::from("not attempted"));
        let mut attempts = 0;
        for attempt in 1..=self.inner.config.compensation_attempts {
            attempts = attempt;
            self.transition(
                &run.workflow_id,
                Transition::Compensation {
                    step: step.name.clone(),
                    status: CompensationStatus::Running,
                    attempts: i64::from(attempt),
                    error: String::new(),
                },
            )
            .await?;
            let mut ctx = ExecutionContext::new(
                &run.workflow_id,
                &step.name,
                attempt,
                Instant::now() + self.inner.config.default_step_timeout,
                self.inner.workspace.clone(),
            );
            if explicit {
                // An action of its own: a remote service must not mistake it
                // for a retry of the step it undoes.
                ctx.idempotency_key.push_str("/compensation");
            }
            result = self
                .compensate_once(&ctx, capability, inputs, explicit)
                .await;
            match &result {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(workflow_id = %run.workflow_id, step = %step.name, attempt, %error, "compensation failed")
                }
            }
        }
        Ok((result, attempts))
    }

    /// Why the policy (or an unreachable registry or policy service) does
    /// not let the explicit compensation `capability` run, if it does not.
    async fn compensation_refused(
        &self,
        run: &Run,
        step: &StepSpec,
        capability: &str,
        inputs: &Value,
    ) -> Option<String> {
        let deadline = Instant::now() + self.inner.config.default_step_timeout;
        let spec = match self.inner.registry.capability(capability, deadline).await {
            Ok(found) => found.and_then(|c| c.spec),
            Err(error) => return Some(error.to_string()),
        };
        let inputs = inputs.as_object().cloned().unwrap_or_default();
        let mut context = self.policy_context(run, step, spec.as_ref(), &inputs);
        capability.clone_into(&mut context.capability_id);
        let record = match self.inner.policy.evaluate(context, deadline).await {
            Ok(record) => record,
            Err(error) => return Some(error.to_string()),
        };
        match policy::Decision::try_from(record.decision) {
            Ok(policy::Decision::Allow) => None,
            Ok(policy::Decision::RequireApproval) => Some(format!(
                "compensation {capability} requires approval (rule {}); not run, undo by hand",
                record.rule_id
            )),
            _ => Some(format!(
                "compensation {capability}: policy denied: rule {}: {}",
                record.rule_id, record.reason
            )),
        }
    }

    async fn compensate_once(
        &self,
        ctx: &ExecutionContext,
        capability: &str,
        inputs: &Value,
        explicit: bool,
    ) -> Result<(), String> {
        if !explicit {
            // The capability's own undo, from its durable undo record.
            return self
                .inner
                .catalogue
                .compensate(capability, ctx, inputs)
                .await
                .map_err(|e| e.to_string());
        }
        let found = self
            .inner
            .registry
            .capability(capability, ctx.deadline)
            .await
            .map_err(|e| e.to_string())?;
        let lifecycle_reason = found.as_ref().map(|c| c.lifecycle_reason.clone());
        let spec = found
            .and_then(|c| c.spec)
            .ok_or_else(|| format!("unknown compensation capability {capability}"))?;
        if spec.lifecycle == registry::CapabilityLifecycle::Frozen as i32 {
            return Err(format!(
                "compensation capability {capability} is FROZEN: {}",
                lifecycle_reason.unwrap_or_default()
            ));
        }
        let inputs = inputs.as_object().cloned().unwrap_or_default();
        let inputs = validate_inputs(&parameters_of(&spec), &inputs).map_err(|e| e.message)?;
        self.invoke(&spec, ctx, &inputs)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
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
