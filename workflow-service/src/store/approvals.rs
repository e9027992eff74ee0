//! Approval requests and the webhook outbox. Approvals change only through
//! [`super::Transition`]s (with their workflow event and audit entry);
//! deliveries are inserted in the transaction of the event they announce
//! and updated here as they are sent.

use airt_kit::audit::{AppendAudit as _, NewAuditEvent};
use serde_json::json;

use super::WorkflowStore;
use crate::domain::{ApprovalStatus, DeliveryStatus};
use crate::error::WorkflowError;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ApprovalRow {
    pub approval_id: String,
    pub workflow_id: String,
    pub workflow_name: String,
    pub step_name: String,
    pub capability_id: String,
    pub capability_version: String,
    pub risk_level: String,
    pub resolved_inputs: String,
    pub decision: String,
    pub action_digest: String,
    pub approver_roles: String,
    pub message: String,
    pub status: String,
    pub requested_for: String,
    pub decided_by: String,
    pub comment: String,
    pub status_reason: String,
    pub requested_at_us: i64,
    pub expires_at_us: i64,
    pub decided_at_us: i64,
}

impl ApprovalRow {
    pub fn status(&self) -> Result<ApprovalStatus, WorkflowError> {
        ApprovalStatus::parse(&self.status)
            .ok_or_else(|| WorkflowError::Corrupt(format!("approval status {:?}", self.status)))
    }

    pub fn approver_roles(&self) -> Vec<String> {
        serde_json::from_str(&self.approver_roles).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeliveryRow {
    pub delivery_id: String,
    pub approval_id: String,
    pub workflow_id: String,
    pub url: String,
    pub event: String,
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: String,
    pub last_attempt_at_us: i64,
    pub next_attempt_at_us: i64,
    pub created_at_us: i64,
    /// The W3C `traceparent` of the run that queued it (empty: untraced).
    pub trace_parent: String,
}

/// A webhook delivery to queue with a transition.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub delivery_id: String,
    /// Empty for `workflow.finished`.
    pub approval_id: String,
    pub url: String,
    pub event: String,
    /// The exact body that is signed and sent.
    pub payload: String,
    /// The W3C `traceparent` of the span that queued it (empty: untraced).
    pub trace_parent: String,
}

/// Restricts [`WorkflowStore::list_approvals`]; empty strings match everything.
#[derive(Debug, Clone, Default)]
pub struct ApprovalFilter {
    pub status: Option<ApprovalStatus>,
    pub workflow_id: String,
}

pub(super) const APPROVAL_COLUMNS: &str = "approval_id, workflow_id, workflow_name, step_name, capability_id, capability_version, \
     risk_level, resolved_inputs, decision, action_digest, approver_roles, message, status, requested_for, decided_by, \
     comment, status_reason, requested_at_us, expires_at_us, decided_at_us";
pub(super) const DELIVERY_COLUMNS: &str = "delivery_id, approval_id, workflow_id, url, event, payload, status, attempts, last_error, \
     last_attempt_at_us, next_attempt_at_us, created_at_us, trace_parent";

pub(super) const INSERT_APPROVAL: &str = "INSERT INTO approvals (approval_id, workflow_id, workflow_name, step_name, \
     capability_id, capability_version, risk_level, resolved_inputs, decision, action_digest, approver_roles, message, \
     status, requested_for, decided_by, comment, status_reason, requested_at_us, expires_at_us, decided_at_us) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'PENDING', $13, '', '', '', $14, $15, 0)";
/// Only a PENDING approval that has not expired can be decided.
pub(super) const DECIDE_APPROVAL: &str = "UPDATE approvals SET status = $2, decided_by = $3, comment = $4, decided_at_us = $5 \
     WHERE approval_id = $1 AND status = 'PENDING' AND expires_at_us > $5";
pub(super) const CLOSE_APPROVAL: &str = "UPDATE approvals SET status = $3, status_reason = $4, \
     decided_at_us = CASE WHEN decided_at_us = 0 THEN $5 ELSE decided_at_us END \
     WHERE approval_id = $1 AND status = $2";
pub(super) const INSERT_DELIVERY: &str = "INSERT INTO webhook_outbox (delivery_id, approval_id, workflow_id, url, event, \
     payload, status, attempts, last_error, last_attempt_at_us, next_attempt_at_us, created_at_us, trace_parent) \
     VALUES ($1, $2, $3, $4, $5, $6, 'PENDING', 0, '', 0, $7, $7, $8)";
/// Takes a due delivery for one attempt: moves its next attempt past the
/// attempt's time limit, so another replica does not send it meanwhile.
const CLAIM_DELIVERY: &str = "UPDATE webhook_outbox SET next_attempt_at_us = $3 \
     WHERE delivery_id = $1 AND status = 'PENDING' AND next_attempt_at_us = $2";
const RECORD_ATTEMPT: &str = "UPDATE webhook_outbox SET status = $2, attempts = attempts + 1, last_error = $3, \
     last_attempt_at_us = $4, next_attempt_at_us = $5 WHERE delivery_id = $1 RETURNING attempts";

/// Inserts an approval row in a transaction (both backends).
macro_rules! insert_approval {
    ($tx:ident, $a:expr) => {{
        let a = $a;
        sqlx::query(approvals::INSERT_APPROVAL)
            .bind(&a.approval_id)
            .bind(&a.workflow_id)
            .bind(&a.workflow_name)
            .bind(&a.step_name)
            .bind(&a.capability_id)
            .bind(&a.capability_version)
            .bind(&a.risk_level)
            .bind(&a.resolved_inputs)
            .bind(&a.decision)
            .bind(&a.action_digest)
            .bind(&a.approver_roles)
            .bind(&a.message)
            .bind(&a.requested_for)
            .bind(a.requested_at_us)
            .bind(a.expires_at_us)
            .execute(&mut *$tx)
            .await?;
    }};
}
pub(super) use insert_approval;

/// Queues a webhook delivery in a transaction (both backends).
macro_rules! insert_delivery {
    ($tx:ident, $workflow_id:expr, $d:expr, $now:expr) => {{
        let d = $d;
        sqlx::query(approvals::INSERT_DELIVERY)
            .bind(&d.delivery_id)
            .bind(&d.approval_id)
            .bind($workflow_id)
            .bind(&d.url)
            .bind(&d.event)
            .bind(&d.payload)
            .bind($now)
            .bind(&d.trace_parent)
            .execute(&mut *$tx)
            .await?;
    }};
}
pub(super) use insert_delivery;

impl WorkflowStore {
    pub async fn approval(&self, approval_id: &str) -> Result<Option<ApprovalRow>, WorkflowError> {
        let sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE approval_id = $1");
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(approval_id).fetch_optional(pool).await?
        }))
    }

    /// A workflow's approvals, oldest first.
    pub async fn approvals_of(&self, workflow_id: &str) -> Result<Vec<ApprovalRow>, WorkflowError> {
        let sql = format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE workflow_id = $1 ORDER BY approval_id"
        );
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(workflow_id).fetch_all(pool).await?
        }))
    }

    /// PENDING approvals whose deadline has passed at `now_us`.
    pub async fn overdue_approvals(
        &self,
        now_us: i64,
        limit: i64,
    ) -> Result<Vec<ApprovalRow>, WorkflowError> {
        let sql = format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE status = 'PENDING' AND expires_at_us <= $1 \
             ORDER BY expires_at_us LIMIT $2"
        );
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(now_us).bind(limit).fetch_all(pool).await?
        }))
    }

    /// The earliest deadline of a PENDING approval, if any.
    pub async fn next_approval_deadline(&self) -> Result<Option<i64>, WorkflowError> {
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_scalar("SELECT MIN(expires_at_us) FROM approvals WHERE status = 'PENDING'").fetch_one(pool).await?
        }))
    }

    /// The webhook deliveries of an approval, oldest first.
    pub async fn deliveries_of(
        &self,
        approval_id: &str,
    ) -> Result<Vec<DeliveryRow>, WorkflowError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_outbox WHERE approval_id = $1 ORDER BY delivery_id"
        );
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(approval_id).fetch_all(pool).await?
        }))
    }

    /// PENDING deliveries due at `now_us`, oldest first.
    pub async fn due_deliveries(
        &self,
        now_us: i64,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, WorkflowError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_outbox WHERE status = 'PENDING' AND next_attempt_at_us <= $1 \
             ORDER BY next_attempt_at_us LIMIT $2"
        );
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(now_us).bind(limit).fetch_all(pool).await?
        }))
    }

    /// The earliest next attempt of a PENDING delivery, if any.
    pub async fn next_delivery_at(&self) -> Result<Option<i64>, WorkflowError> {
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_scalar("SELECT MIN(next_attempt_at_us) FROM webhook_outbox WHERE status = 'PENDING'").fetch_one(pool).await?
        }))
    }

    /// Takes `delivery` for one attempt until `until_us`; false when another
    /// sender took it first.
    pub async fn claim_delivery(
        &self,
        delivery: &DeliveryRow,
        until_us: i64,
    ) -> Result<bool, WorkflowError> {
        let claimed = airt_kit::with_pool!(&self.db, pool => {
            sqlx::query(CLAIM_DELIVERY)
                .bind(&delivery.delivery_id)
                .bind(delivery.next_attempt_at_us)
                .bind(until_us)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(claimed == 1)
    }

    /// Records one attempt (`error` empty on success) and its audit event;
    /// `next_attempt_at_us` is when to retry while `status` is PENDING.
    pub async fn record_attempt(
        &self,
        delivery: &DeliveryRow,
        status: DeliveryStatus,
        error: &str,
        next_attempt_at_us: i64,
    ) -> Result<(), WorkflowError> {
        let now = airt_kit::clock::now_micros();
        let action = match status {
            DeliveryStatus::Delivered => "webhook.delivered",
            DeliveryStatus::Pending => "webhook.attempt_failed",
            DeliveryStatus::Failed => "webhook.failed",
        };
        airt_kit::write_tx!(&self.db, tx => {
            let attempts: i64 = sqlx::query_scalar(RECORD_ATTEMPT)
                .bind(&delivery.delivery_id)
                .bind(status.as_str())
                .bind(error)
                .bind(now)
                .bind(next_attempt_at_us)
                .fetch_one(&mut *tx)
                .await?;
            let detail = json!({
                "delivery_id": delivery.delivery_id,
                "approval_id": delivery.approval_id,
                "event": delivery.event,
                "url": crate::webhooks::display_url(&delivery.url),
                "attempts": attempts,
                "error": error,
            });
            tx.append_audit(&NewAuditEvent::new("service:workflow", action, "workflow", &delivery.workflow_id).with_details(detail))
                .await?;
        })?;
        Ok(())
    }
}
