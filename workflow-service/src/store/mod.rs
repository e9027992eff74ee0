//! Workflows, their steps, compensations and events, on SQLite or
//! PostgreSQL (portable SQL written once; see `airt_kit::write_tx!`).
//!
//! Every change is a [`Transition`] applied in one transaction together with
//! its workflow event (what `WatchWorkflow` replays) and its audit event: the
//! engine commits a transition *before* the action it announces (write-ahead),
//! so a crash never loses what was about to happen.

use airt_kit::Principal;
use airt_kit::db::{Database, Migrations};
use serde_json::json;
use sqlx::migrate::Migrator;

use crate::domain::{StepStatus, WorkflowDraft, WorkflowSpec, WorkflowStatus};
use crate::error::WorkflowError;

mod approvals;
mod changes;
mod gauges;
mod leases;
mod pages;
#[macro_use]
mod transition;
mod group;

pub use approvals::{ApprovalFilter, ApprovalRow, DeliveryRow, NewDelivery};
pub use changes::{ChangeFeed, ChangeSubscription};
pub use gauges::PendingApprovals;
pub use group::{Committed, LeaseClaim};
pub use leases::Lease;
pub use pages::PageQuery;
pub use transition::Transition;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The workflow schema, the same for both backends.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &MIGRATOR,
    postgres: &MIGRATOR,
};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct WorkflowRow {
    pub workflow_id: String,
    pub name: String,
    pub draft_json: String,
    pub status: String,
    pub submitter: String,
    pub submitter_roles: String,
    pub request_id: Option<String>,
    pub owner: String,
    pub failure_reason: String,
    pub failed_step: String,
    pub event_seq: i64,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    pub ended_at_us: i64,
    /// The W3C `traceparent` of the submission (empty: untraced).
    pub trace_parent: String,
}

impl WorkflowRow {
    pub fn status(&self) -> Result<WorkflowStatus, WorkflowError> {
        WorkflowStatus::parse(&self.status)
            .ok_or_else(|| WorkflowError::Corrupt(format!("workflow status {:?}", self.status)))
    }

    pub fn draft(&self) -> Result<WorkflowDraft, WorkflowError> {
        serde_json::from_str(&self.draft_json)
            .map_err(|e| WorkflowError::Corrupt(format!("workflow spec: {e}")))
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StepRow {
    pub workflow_id: String,
    pub step_name: String,
    pub position: i64,
    pub status: String,
    pub attempt: i64,
    pub capability_version: String,
    pub risk_level: String,
    pub resolved_inputs: String,
    pub outputs: String,
    pub decision: String,
    pub approval_id: String,
    pub error: String,
    pub undo: String,
    pub completed_seq: i64,
    pub started_at_us: i64,
    pub ended_at_us: i64,
}

impl StepRow {
    pub fn status(&self) -> Result<StepStatus, WorkflowError> {
        StepStatus::parse(&self.status)
            .ok_or_else(|| WorkflowError::Corrupt(format!("step status {:?}", self.status)))
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CompensationRow {
    pub workflow_id: String,
    pub step_name: String,
    pub position: i64,
    pub capability_id: String,
    pub inputs: String,
    pub status: String,
    pub attempts: i64,
    pub error: String,
    pub started_at_us: i64,
    pub ended_at_us: i64,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EventRow {
    pub workflow_id: String,
    pub seq: i64,
    pub occurred_at_us: i64,
    pub kind: String,
    pub step_name: String,
    pub detail: String,
}

/// Restricts [`WorkflowStore::list`]; empty strings match everything.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<WorkflowStatus>,
    pub submitter: String,
    pub name: String,
    pub owner: String,
}

pub(super) const WORKFLOW_COLUMNS: &str = "workflow_id, name, draft_json, status, submitter, submitter_roles, request_id, owner, \
     failure_reason, failed_step, event_seq, created_at_us, updated_at_us, ended_at_us, trace_parent";
pub(super) const STEP_COLUMNS: &str = "workflow_id, step_name, position, status, attempt, capability_version, risk_level, \
     resolved_inputs, outputs, decision, approval_id, error, undo, completed_seq, started_at_us, ended_at_us";
pub(super) const COMPENSATION_COLUMNS: &str = "workflow_id, step_name, position, capability_id, inputs, status, attempts, error, started_at_us, ended_at_us";

const INSERT_WORKFLOW: &str = "INSERT INTO workflows (workflow_id, name, draft_json, status, submitter, submitter_roles, \
     request_id, owner, failure_reason, failed_step, event_seq, created_at_us, updated_at_us, ended_at_us, \
     lease_owner, lease_expires_at_us, trace_parent) \
     VALUES ($1, $2, $3, 'PENDING', $4, $5, $6, $7, '', '', 1, $8, $8, 0, $9, $10, $11)";
/// The step rows [`WorkflowStore::create`] writes for `spec`: every step
/// PENDING and untouched (the same values as the literals of its insert).
pub fn pending_steps(workflow_id: &str, spec: &WorkflowSpec) -> Vec<StepRow> {
    (0_i64..)
        .zip(&spec.steps)
        .map(|(position, step)| StepRow {
            workflow_id: workflow_id.to_owned(),
            step_name: step.name.clone(),
            position,
            status: StepStatus::Pending.as_str().to_owned(),
            attempt: 0,
            capability_version: String::new(),
            risk_level: String::new(),
            resolved_inputs: "{}".into(),
            outputs: "null".into(),
            decision: "{}".into(),
            approval_id: String::new(),
            error: String::new(),
            undo: "null".into(),
            completed_seq: 0,
            started_at_us: 0,
            ended_at_us: 0,
        })
        .collect()
}

/// Followed by one `(workflow_id, step_name, position)` row per step.
const INSERT_STEPS_PREFIX: &str = "INSERT INTO workflow_steps (workflow_id, step_name, position, status, attempt, capability_version, \
     risk_level, resolved_inputs, outputs, decision, approval_id, error, undo, completed_seq, started_at_us, ended_at_us) ";
/// Takes `$4` event sequence numbers at once (the last is returned); with a
/// lease owner `$3`, only while it holds the lease (fencing).
const NEXT_EVENTS: &str = "UPDATE workflows SET event_seq = event_seq + $4, updated_at_us = $2 \
     WHERE workflow_id = $1 AND ($3 = '' OR lease_owner = $3) RETURNING event_seq";
/// [`NEXT_EVENTS`] and the workflow's status (`$5`, reason `$6`, failed
/// step `$7`), ending it (`$8`) and giving the lease up (`$9`) as
/// `transition::SET_WORKFLOW_STATUS` does.
const NEXT_EVENTS_WITH_STATUS: &str = "UPDATE workflows SET event_seq = event_seq + $4, updated_at_us = $2, \
     status = $5, failure_reason = $6, failed_step = $7, \
     ended_at_us = CASE WHEN $8 THEN $2 ELSE ended_at_us END, \
     lease_owner = CASE WHEN $9 THEN '' ELSE lease_owner END, \
     lease_expires_at_us = CASE WHEN $9 THEN 0 ELSE lease_expires_at_us END \
     WHERE workflow_id = $1 AND ($3 = '' OR lease_owner = $3) RETURNING event_seq";
const INSERT_EVENTS_PREFIX: &str =
    "INSERT INTO workflow_events (workflow_id, seq, occurred_at_us, kind, step_name, detail) ";
fn select_workflow() -> String {
    format!("SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE workflow_id = $1")
}
fn select_by_request() -> String {
    format!("SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE submitter = $1 AND request_id = $2")
}
fn select_steps() -> String {
    format!("SELECT {STEP_COLUMNS} FROM workflow_steps WHERE workflow_id = $1 ORDER BY position")
}
fn select_compensations() -> String {
    format!(
        "SELECT {COMPENSATION_COLUMNS} FROM workflow_compensations WHERE workflow_id = $1 ORDER BY position"
    )
}
const SELECT_EVENTS: &str = "SELECT workflow_id, seq, occurred_at_us, kind, step_name, detail FROM workflow_events \
     WHERE workflow_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";

/// Where a new workflow comes from: the lease its submitter's instance
/// holds on it, and the trace of its submission.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    /// Empty: no lease (any instance may claim it).
    pub lease_owner: &'a str,
    pub lease_until_us: i64,
    /// W3C `traceparent`; empty when the submission was not traced.
    pub trace_parent: &'a str,
}

/// The workflow service's database.
#[derive(Debug, Clone)]
pub struct WorkflowStore {
    db: Database,
    changes: ChangeFeed,
    queue: std::sync::Arc<group::Queue>,
}

impl WorkflowStore {
    pub fn new(db: Database) -> Self {
        Self {
            db,
            changes: ChangeFeed::default(),
            queue: std::sync::Arc::default(),
        }
    }

    /// Wakes at every change this process commits to `workflow_id`.
    pub fn subscribe(&self, workflow_id: &str) -> ChangeSubscription {
        self.changes.subscribe(workflow_id)
    }

    /// Stores a new workflow (PENDING, every step PENDING). With a
    /// `request_id` already used by the same submitter, returns that
    /// workflow instead (`created == false`).
    pub async fn create(
        &self,
        workflow_id: &str,
        draft: &WorkflowDraft,
        spec: &WorkflowSpec,
        submitter: &Principal,
        request_id: Option<&str>,
    ) -> Result<(WorkflowRow, bool), WorkflowError> {
        let origin = Origin::default();
        self.create_leased(workflow_id, draft, spec, submitter, request_id, origin)
            .await
    }

    /// [`WorkflowStore::create`] with the new workflow's lease already held
    /// (so its first run claims nothing) and its trace context.
    pub async fn create_leased(
        &self,
        workflow_id: &str,
        draft: &WorkflowDraft,
        spec: &WorkflowSpec,
        submitter: &Principal,
        request_id: Option<&str>,
        origin: Origin<'_>,
    ) -> Result<(WorkflowRow, bool), WorkflowError> {
        let draft_json =
            serde_json::to_string(draft).map_err(|e| WorkflowError::Corrupt(e.to_string()))?;
        if let Some(existing) = self.by_request(submitter, request_id).await? {
            return same_request(existing, &draft_json);
        }
        let roles = serde_json::to_string(&submitter.roles)
            .map_err(|e| WorkflowError::Corrupt(e.to_string()))?;
        let now = airt_kit::clock::now_micros();
        // The row as INSERT_WORKFLOW writes it (not read back).
        let row = WorkflowRow {
            workflow_id: workflow_id.to_owned(),
            name: spec.name.clone(),
            draft_json,
            status: WorkflowStatus::Pending.as_str().to_owned(),
            submitter: submitter.to_string(),
            submitter_roles: roles,
            request_id: request_id.map(str::to_owned),
            owner: spec.owner.clone(),
            failure_reason: String::new(),
            failed_step: String::new(),
            event_seq: 1,
            created_at_us: now,
            updated_at_us: now,
            ended_at_us: 0,
            trace_parent: origin.trace_parent.to_owned(),
        };
        let submission = group::Submission {
            row: row.clone(),
            lease_owner: origin.lease_owner.to_owned(),
            lease_until_us: origin.lease_until_us,
            steps: spec.steps.iter().map(|step| step.name.clone()).collect(),
            detail: json!({"name": spec.name, "steps": spec.steps.len(), "request_id": request_id}),
        };
        let actor = submitter.to_string();
        let work = group::Work::Submission(Box::new(submission));
        match self.commit_work(workflow_id, &actor, "", None, work).await {
            Ok(_) => {}
            // A concurrent retry with the same request_id won the insert.
            Err(WorkflowError::Storage(sqlx::Error::Database(e)))
                if e.is_unique_violation() && request_id.is_some() =>
            {
                if let Some(existing) = self.by_request(submitter, request_id).await? {
                    return same_request(existing, &row.draft_json);
                }
                return Err(WorkflowError::Storage(sqlx::Error::Database(e)));
            }
            Err(e) => return Err(e),
        }
        Ok((row, true))
    }

    async fn by_request(
        &self,
        submitter: &Principal,
        request_id: Option<&str>,
    ) -> Result<Option<WorkflowRow>, WorkflowError> {
        let Some(request_id) = request_id else {
            return Ok(None);
        };
        let sql = select_by_request();
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(submitter.to_string()).bind(request_id).fetch_optional(pool).await?
        }))
    }

    pub async fn get(&self, workflow_id: &str) -> Result<Option<WorkflowRow>, WorkflowError> {
        let sql = select_workflow();
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(workflow_id).fetch_optional(pool).await?
        }))
    }

    pub async fn steps(&self, workflow_id: &str) -> Result<Vec<StepRow>, WorkflowError> {
        let sql = select_steps();
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(workflow_id).fetch_all(pool).await?
        }))
    }

    pub async fn compensations(
        &self,
        workflow_id: &str,
    ) -> Result<Vec<CompensationRow>, WorkflowError> {
        let sql = select_compensations();
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(workflow_id).fetch_all(pool).await?
        }))
    }

    /// Events after `after_seq`, in order.
    pub async fn events(
        &self,
        workflow_id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>, WorkflowError> {
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_as(SELECT_EVENTS).bind(workflow_id).bind(after_seq).bind(limit).fetch_all(pool).await?
        }))
    }

    /// Commits one transition with its workflow event and audit event;
    /// returns the event's sequence number.
    pub async fn apply(
        &self,
        workflow_id: &str,
        actor: &str,
        transition: &Transition,
    ) -> Result<i64, WorkflowError> {
        self.apply_fenced(workflow_id, actor, "", transition).await
    }

    /// [`WorkflowStore::apply`] that commits only while `lease_owner` holds
    /// the workflow's lease (empty: no check); otherwise
    /// [`WorkflowError::LeaseLost`] and nothing changes.
    pub async fn apply_fenced(
        &self,
        workflow_id: &str,
        actor: &str,
        lease_owner: &str,
        transition: &Transition,
    ) -> Result<i64, WorkflowError> {
        self.apply_all(workflow_id, actor, lease_owner, vec![transition.clone()])
            .await
    }

    /// Several transitions in one transaction, in order, each with its
    /// event and audit entry (for changes with no action between them, such
    /// as a decision and the attempt it allows); fenced like
    /// [`WorkflowStore::apply_fenced`]. Returns the last event's sequence
    /// once committed. Other workflows' transitions ready at the same time
    /// may share the transaction (see `group`); this call's either all
    /// commit or none does.
    pub async fn apply_all(
        &self,
        workflow_id: &str,
        actor: &str,
        lease_owner: &str,
        transitions: Vec<Transition>,
    ) -> Result<i64, WorkflowError> {
        self.apply_with(workflow_id, actor, lease_owner, None, transitions)
            .await
            .map(|committed| committed.last_seq)
    }

    /// [`WorkflowStore::apply_all`] that may also take the workflow's
    /// lease as `claim` says, where [`WorkflowStore::claim`] would, in the
    /// same statement (a change from outside the driver: only without a
    /// fence); the answer's `lease` says whether it is held.
    pub async fn apply_with(
        &self,
        workflow_id: &str,
        actor: &str,
        lease_owner: &str,
        claim: Option<LeaseClaim>,
        transitions: Vec<Transition>,
    ) -> Result<Committed, WorkflowError> {
        if transitions.is_empty() {
            return Err(WorkflowError::Corrupt("no transition to apply".into()));
        }
        if claim.is_some() && !lease_owner.is_empty() {
            return Err(WorkflowError::Corrupt("a lease claim with a fence".into()));
        }
        let work = group::Work::Transitions(transitions);
        self.commit_work(workflow_id, actor, lease_owner, claim, work)
            .await
    }
}

/// The workflow a retried submission names: the one stored under its
/// `request_id` when it carries the same spec; a different spec under a
/// used `request_id` is a conflict, never silently the old workflow.
fn same_request(
    existing: WorkflowRow,
    draft_json: &str,
) -> Result<(WorkflowRow, bool), WorkflowError> {
    if existing.draft_json == draft_json {
        return Ok((existing, false));
    }
    Err(WorkflowError::RequestIdConflict {
        request_id: existing.request_id.clone().unwrap_or_default(),
        workflow_id: existing.workflow_id,
    })
}
