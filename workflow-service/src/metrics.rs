//! The workflow service's metrics. Counters are counted by this replica as
//! things happen; gauges of stored state (workflows by status, pending
//! approvals, the webhook outbox) are read from the database at each
//! scrape, so every replica sharing it reports the same values.
//!
//! The `capability` label is a capability id only when the registry knows
//! it (the gate's cache); anything else is `unknown`, so a caller cannot
//! mint label values.

use std::sync::Arc;
use std::time::Duration;

use airt_kit::metrics::{Counter, Family, Gauge, Labels, LatencyFamily, Metrics, latency_family};

use crate::domain::status::{StepStatus, WorkflowStatus};
use crate::store::WorkflowStore;

/// Counted by the engine, the API and the webhook dispatcher. The default
/// is registered nowhere (embedded engines, tests).
#[derive(Debug, Clone)]
pub struct WorkflowMetrics {
    submissions: Counter,
    steps: Family<Labels<2>, Counter>,
    step_duration: LatencyFamily<Labels<1>>,
    approval_decisions: Family<Labels<1>, Counter>,
    rollbacks: Family<Labels<1>, Counter>,
    takeovers: Counter,
    recoveries: Counter,
    deliveries: Family<Labels<1>, Counter>,
}

impl Default for WorkflowMetrics {
    fn default() -> Self {
        Self {
            submissions: Counter::default(),
            steps: Family::default(),
            step_duration: latency_family(),
            approval_decisions: Family::default(),
            rollbacks: Family::default(),
            takeovers: Counter::default(),
            recoveries: Counter::default(),
            deliveries: Family::default(),
        }
    }
}

impl WorkflowMetrics {
    /// Registers every workflow metric in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self::default();
        metrics.register(
            "workflow_submissions",
            "Workflows accepted (a repeated request_id is not counted again)",
            this.submissions.clone(),
        );
        metrics.register("workflow_steps", "Steps that reached an outcome, by capability and status (SUCCEEDED, FAILED, DENIED, AWAITING_APPROVAL, REJECTED, EXPIRED, …)", this.steps.clone());
        metrics.register_seconds("workflow_step_duration", "How long a step took from its start to its outcome, by capability (a paused step ends at the pause)", this.step_duration.clone());
        metrics.register(
            "workflow_approval_decisions",
            "Approvals decided by a human, by decision (APPROVED, REJECTED)",
            this.approval_decisions.clone(),
        );
        metrics.register("workflow_rollbacks", "Rollbacks finished, by outcome (ROLLED_BACK, or COMPENSATION_FAILED when a compensation failed)", this.rollbacks.clone());
        metrics.register(
            "workflow_lease_takeovers",
            "Workflows whose expired lease this replica took over",
            this.takeovers.clone(),
        );
        metrics.register("workflow_recoveries", "Workflows resumed by the recovery scan (taken over, or paused with a decided approval)", this.recoveries.clone());
        metrics.register(
            "workflow_webhook_attempts",
            "Webhook delivery attempts, by outcome (delivered, retrying, failed: given up)",
            this.deliveries.clone(),
        );
        this
    }

    /// Registers the gauges read at each scrape: workflows by status,
    /// pending approvals and the age of the oldest, the outbox backlog, and
    /// this replica's active runs against its limit.
    pub fn observe_store(
        metrics: &Metrics,
        store: &WorkflowStore,
        active: Arc<tokio::sync::Semaphore>,
        max_active: usize,
    ) {
        let by_status: Family<Labels<1>, Gauge> = Family::default();
        metrics.register(
            "workflows",
            "Workflows by status (every replica sharing the database)",
            by_status.clone(),
        );
        let pending: Gauge = Gauge::default();
        metrics.register(
            "workflow_approvals_pending",
            "Approvals waiting for a decision",
            pending.clone(),
        );
        let oldest = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        metrics.register_seconds(
            "workflow_approval_oldest_pending_age",
            "How long the oldest pending approval has waited (0 when none)",
            oldest.clone(),
        );
        let backlog: Gauge = Gauge::default();
        metrics.register(
            "workflow_webhook_outbox_backlog",
            "Webhook deliveries not yet delivered nor given up",
            backlog.clone(),
        );
        let running: Gauge = Gauge::default();
        metrics.register(
            "workflow_active_runs",
            "Workflows this replica drives now",
            running.clone(),
        );
        let limit: Gauge = Gauge::default();
        metrics.register(
            "workflow_active_runs_limit",
            "--max-active-workflows of this replica",
            limit.clone(),
        );
        limit.set(i64::try_from(max_active).unwrap_or(i64::MAX));
        let store = store.clone();
        metrics.on_scrape(move || {
            let (store, by_status, pending, oldest, backlog) = (
                store.clone(),
                by_status.clone(),
                pending.clone(),
                oldest.clone(),
                backlog.clone(),
            );
            running.set(
                i64::try_from(max_active.saturating_sub(active.available_permits())).unwrap_or(0),
            );
            async move {
                if let Ok(counts) = store.count_by_status().await {
                    for status in WorkflowStatus::ALL {
                        let count = counts
                            .iter()
                            .find(|(s, _)| s == status.as_str())
                            .map_or(0, |(_, n)| *n);
                        by_status
                            .get_or_create(&[("status", status.as_str().into())])
                            .set(count);
                    }
                }
                if let Ok(waiting) = store.pending_approvals().await {
                    pending.set(waiting.count);
                    let age_us = waiting.oldest_requested_at_us.map_or(0, |at| {
                        airt_kit::clock::now_micros().saturating_sub(at).max(0)
                    });
                    oldest.set(Duration::from_micros(age_us.unsigned_abs()).as_secs_f64());
                }
                if let Ok(queued) = store.outbox_backlog().await {
                    backlog.set(queued);
                }
            }
        });
    }

    pub fn submitted(&self) {
        self.submissions.inc();
    }

    /// A step reached `status` after `took`; `capability` is the id when
    /// the registry knows it.
    pub fn step(&self, capability: Option<&str>, status: StepStatus, took: Duration) {
        let capability = capability.unwrap_or("unknown").to_owned();
        self.step_duration
            .get_or_create(&[("capability", capability.clone().into())])
            .observe(took.as_secs_f64());
        self.steps
            .get_or_create(&[
                ("capability", capability.into()),
                ("status", status.as_str().into()),
            ])
            .inc();
    }

    pub fn approval_decided(&self, decision: &'static str) {
        self.approval_decisions
            .get_or_create(&[("decision", decision.into())])
            .inc();
    }

    pub fn rolled_back(&self, outcome: WorkflowStatus) {
        self.rollbacks
            .get_or_create(&[("outcome", outcome.as_str().into())])
            .inc();
    }

    /// A recovery scan took over `taken_over` expired leases and resumed
    /// `resumed` workflows.
    pub fn recovered(&self, taken_over: usize, resumed: usize) {
        self.takeovers.inc_by(taken_over as u64);
        self.recoveries.inc_by(resumed as u64);
    }

    pub fn webhook_attempt(&self, outcome: &'static str) {
        self.deliveries
            .get_or_create(&[("outcome", outcome.into())])
            .inc();
    }
}
