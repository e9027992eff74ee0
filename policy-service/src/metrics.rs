//! The policy service's metrics: decisions by decision and rule, how long
//! deciding takes, the active revision, and the decision log's backlog.

use airt_kit::metrics::{Counter, Family, Gauge, Histogram, Labels, Metrics, exponential_buckets};

use crate::active::ActivePolicy;
use crate::decision_log::DecisionLog;
use crate::domain::DecisionRecord;

/// Recorded by the API for every decision.
#[derive(Debug, Clone)]
pub struct PolicyMetrics {
    /// By `decision` and `rule` (a rule id of the active policy:
    /// operator-defined, so bounded).
    decisions: Family<Labels<2>, Counter>,
    /// By the shadow set's `decision` and `rule`, and whether it `agrees`
    /// with the enforced decision.
    shadow: Family<Labels<3>, Counter>,
    evaluation: Histogram,
}

impl PolicyMetrics {
    /// Registers the policy metrics; the active revision and the decision
    /// log's backlog are read at each scrape.
    pub fn new(metrics: &Metrics, active: &ActivePolicy, log: &DecisionLog) -> Self {
        let this = Self {
            decisions: Family::default(),
            shadow: Family::default(),
            // 1 µs to about 0.3 s: a decision takes microseconds.
            evaluation: Histogram::new(exponential_buckets(1e-6, 4.0, 10)),
        };
        metrics.register(
            "policy_decisions",
            "Decisions made, by decision (ALLOW, DENY, REQUIRE_APPROVAL) and the rule that made it",
            this.decisions.clone(),
        );
        metrics.register(
            "policy_shadow_decisions",
            "Decisions of the shadow set (never enforced), by decision, rule and whether they agree with the enforced one",
            this.shadow.clone(),
        );
        metrics.register_seconds(
            "policy_evaluation",
            "How long evaluating one context against the active set took",
            this.evaluation.clone(),
        );
        let revision: Family<Labels<1>, Gauge> = Family::default();
        metrics.register(
            "policy_active_revision_info",
            "The revision of the active policy set (value 1)",
            revision.clone(),
        );
        let backlog: Gauge = Gauge::default();
        metrics.register(
            "policy_decision_log_backlog",
            "Decisions made but not yet written to the audit chain",
            backlog.clone(),
        );
        let (active, queued) = (active.clone(), log.backlog_probe());
        metrics.on_scrape(move || {
            let current = active.current().revision().to_owned();
            revision.clear();
            revision
                .get_or_create(&[("revision", current.into())])
                .set(1);
            backlog.set(i64::try_from(queued()).unwrap_or(i64::MAX));
            std::future::ready(())
        });
        this
    }

    pub fn decided(&self, record: &DecisionRecord, took: std::time::Duration) {
        self.evaluation.observe(took.as_secs_f64());
        self.decisions
            .get_or_create(&[
                ("decision", record.decision.as_str().into()),
                ("rule", record.rule_id.to_string().into()),
            ])
            .inc();
    }

    pub fn shadowed(&self, shadow: &DecisionRecord, enforced: &DecisionRecord) {
        let agrees = if shadow.decision == enforced.decision {
            "true"
        } else {
            "false"
        };
        self.shadow
            .get_or_create(&[
                ("decision", shadow.decision.as_str().into()),
                ("rule", shadow.rule_id.to_string().into()),
                ("agrees", agrees.into()),
            ])
            .inc();
    }
}
