//! Settling budgets: a decision whose rule carries a budget is counted (an
//! action will run on it), checked (a preview), or left alone (an action
//! already counted), and becomes the rule's `over_budget` decision when
//! the budget is spent. Decisions of rules without budgets never reach
//! the database.

use std::time::Duration;

use airt_kit::Principal;
use airt_proto::policy::v1::EvaluationPurpose;
use tokio_util::sync::CancellationToken;

use crate::domain::DecisionRecord;
use crate::domain::budget::settle;
use crate::error::PolicyError;
use crate::store::PolicyStore;

/// How often counts of ended windows are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// What a decision is for, as far as budgets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An action runs on the answer: consume.
    Execute,
    /// Plan, preflight, explain, or any caller that is not a service:
    /// check without consuming.
    Preview,
    /// Already counted when first decided: neither.
    Continue,
}

impl Purpose {
    /// Only services execute actions, so only their evaluations may
    /// consume (or skip) budgets; an unspecified purpose executes.
    pub fn of(caller: &Principal, purpose: i32) -> Self {
        if caller.kind != "service" {
            return Self::Preview;
        }
        match EvaluationPurpose::try_from(purpose) {
            Ok(EvaluationPurpose::Preview) => Self::Preview,
            Ok(EvaluationPurpose::Continue) => Self::Continue,
            _ => Self::Execute,
        }
    }
}

/// Settles the budget `record` draws on, if any. A database failure is an
/// error (UNAVAILABLE), never an uncounted ALLOW.
pub async fn settle_budget(
    store: &PolicyStore,
    record: &mut DecisionRecord,
    purpose: Purpose,
) -> Result<(), PolicyError> {
    let Some(budget) = record.budget.clone() else {
        return Ok(());
    };
    match purpose {
        Purpose::Continue => {
            record.budget = None;
        }
        Purpose::Preview => {
            let used = store.peek_budget(&budget).await?;
            settle(record, used, false, used >= budget.max);
        }
        Purpose::Execute => {
            let consumed = store.consume_budget(&budget).await?;
            settle(record, consumed.used, !consumed.exceeded, consumed.exceeded);
        }
    }
    Ok(())
}

/// Deletes the counts of ended windows every minute until `stop`.
pub async fn purge(store: PolicyStore, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(PURGE_INTERVAL) => {}
            () = stop.cancelled() => return,
        }
        let now = jiff::Timestamp::now().as_second();
        if let Err(error) = store.purge_budgets(now).await {
            tracing::warn!(%error, "cannot purge ended budget windows");
        }
    }
}
