//! Leases: which workflow-service instance drives a workflow, and until
//! when. A lease owner is `<instance id>#<boot id>`: the same instance after
//! a restart (same id, new boot) takes its previous life's leases at once,
//! and a scan never returns what this very process holds unexpired (an
//! expired lease of its own means its run stopped, e.g. on a database
//! error, and is taken again like anyone's). Claims on PostgreSQL take rows with `FOR UPDATE SKIP LOCKED`, so
//! replicas scanning at once never wait for, or take, each other's rows; on
//! SQLite the same statements run inside `BEGIN IMMEDIATE`.

use airt_kit::audit::{AppendAudit as _, NewAuditEvent};
use airt_kit::db::Database;

use super::WorkflowStore;
use crate::error::WorkflowError;

/// Takes the lease of one workflow when it is free, expired or already ours.
const CLAIM: &str = "UPDATE workflows SET lease_owner = $2, lease_expires_at_us = $3 \
     WHERE workflow_id = $1 AND (lease_owner = $2 OR lease_owner = '' OR lease_expires_at_us < $4 \
         OR substr(lease_owner, 1, length($5)) = $5) \
     RETURNING cancel_request";
/// Extends our lease; nothing when another instance took it.
const RENEW: &str = "UPDATE workflows SET lease_expires_at_us = $3 \
     WHERE workflow_id = $1 AND lease_owner = $2 RETURNING cancel_request";
const RELEASE: &str = "UPDATE workflows SET lease_owner = '', lease_expires_at_us = 0 \
     WHERE workflow_id = $1 AND lease_owner = $2";
const REQUEST_CANCEL: &str =
    "UPDATE workflows SET cancel_request = $2 WHERE workflow_id = $1 AND cancel_request = ''";
const ORPHANS_SQLITE: &str = "UPDATE workflows SET lease_owner = $1, lease_expires_at_us = $2 \
     WHERE workflow_id IN (SELECT workflow_id FROM workflows \
         WHERE status IN ('PENDING', 'RUNNING', 'ROLLING_BACK') \
             AND (lease_expires_at_us < $3 OR (lease_owner <> $1 AND substr(lease_owner, 1, length($5)) = $5)) \
         ORDER BY workflow_id LIMIT $4) \
     RETURNING workflow_id";
const ORPHANS_POSTGRES: &str = "UPDATE workflows SET lease_owner = $1, lease_expires_at_us = $2 \
     WHERE workflow_id IN (SELECT workflow_id FROM workflows \
         WHERE status IN ('PENDING', 'RUNNING', 'ROLLING_BACK') \
             AND (lease_expires_at_us < $3 OR (lease_owner <> $1 AND substr(lease_owner, 1, length($5)) = $5)) \
         ORDER BY workflow_id LIMIT $4 FOR UPDATE SKIP LOCKED) \
     RETURNING workflow_id";
/// PAUSED workflows with a step still waiting on an approval that was
/// decided, expired or voided: something can happen to them now. A
/// decision's lease (taken with it, see [`NEXT_EVENTS_CLAIMING`]) held by a
/// previous life of this instance counts as this instance's.
const DECIDED_PAUSED: &str = "SELECT DISTINCT w.workflow_id FROM workflows w \
     JOIN workflow_steps s ON s.workflow_id = w.workflow_id AND s.status = 'AWAITING_APPROVAL' \
     JOIN approvals a ON a.approval_id = s.approval_id AND a.status <> 'PENDING' \
     WHERE w.status = 'PAUSED' AND (w.lease_owner = $1 OR w.lease_expires_at_us < $2 \
         OR substr(w.lease_owner, 1, length($4)) = $4) LIMIT $3";
/// The events statement of a change from outside the driver (no fence)
/// that also takes the lease for `$4` until `$5` where [`CLAIM`] would:
/// the human's decision claims the workflow for the instance that resumes
/// it, saving a transaction. Answers the last event sequence, whether `$4`
/// holds the lease now, and the persisted cancellation request. Every
/// right-hand side reads the row as it was before the update.
pub(super) const NEXT_EVENTS_CLAIMING: &str = "UPDATE workflows SET event_seq = event_seq + $3, updated_at_us = $2, \
     lease_owner = CASE WHEN lease_owner = $4 OR lease_owner = '' OR lease_expires_at_us < $2 \
         OR substr(lease_owner, 1, length($6)) = $6 THEN $4 ELSE lease_owner END, \
     lease_expires_at_us = CASE WHEN lease_owner = $4 OR lease_owner = '' OR lease_expires_at_us < $2 \
         OR substr(lease_owner, 1, length($6)) = $6 THEN $5 ELSE lease_expires_at_us END \
     WHERE workflow_id = $1 RETURNING event_seq, lease_owner = $4, cancel_request";

/// `<instance id>#` of a lease owner `<instance id>#<boot id>`.
pub(super) fn instance_prefix(owner: &str) -> String {
    match owner.rfind('#') {
        Some(i) => owner[..=i].to_owned(),
        None => format!("{owner}#"),
    }
}

/// A claim's answer: whether the lease is ours, and a cancellation
/// requested through any replica.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub held: bool,
    pub cancel_request: String,
}

impl WorkflowStore {
    /// Takes the lease of `workflow_id` for `owner` until `until_us` when it
    /// is free, expired or already `owner`'s.
    pub async fn claim(
        &self,
        workflow_id: &str,
        owner: &str,
        until_us: i64,
    ) -> Result<Lease, WorkflowError> {
        let now = airt_kit::clock::now_micros();
        let instance = instance_prefix(owner);
        let cancel: Option<String> = airt_kit::write_tx!(&self.db, tx => {
            sqlx::query_scalar(CLAIM).bind(workflow_id).bind(owner).bind(until_us).bind(now).bind(&instance).fetch_optional(&mut *tx).await?
        })?;
        Ok(Lease {
            held: cancel.is_some(),
            cancel_request: cancel.unwrap_or_default(),
        })
    }

    /// Extends `owner`'s lease; `held == false` when another instance has it.
    pub async fn renew(
        &self,
        workflow_id: &str,
        owner: &str,
        until_us: i64,
    ) -> Result<Lease, WorkflowError> {
        let cancel: Option<String> = airt_kit::write_tx!(&self.db, tx => {
            sqlx::query_scalar(RENEW).bind(workflow_id).bind(owner).bind(until_us).fetch_optional(&mut *tx).await?
        })?;
        Ok(Lease {
            held: cancel.is_some(),
            cancel_request: cancel.unwrap_or_default(),
        })
    }

    /// Gives up `owner`'s lease (the workflow paused or finished).
    /// A single statement: usually a no-op, since pausing or finishing
    /// already released it.
    pub async fn release(&self, workflow_id: &str, owner: &str) -> Result<(), WorkflowError> {
        airt_kit::with_pool!(&self.db, pool => {
            sqlx::query(RELEASE).bind(workflow_id).bind(owner).execute(pool).await?;
        });
        Ok(())
    }

    /// Records a cancellation for whichever instance drives the workflow
    /// (the first request wins).
    pub async fn request_cancel(
        &self,
        workflow_id: &str,
        actor: &str,
        request: &serde_json::Value,
    ) -> Result<(), WorkflowError> {
        let event = NewAuditEvent::new(actor, "workflow.cancel_requested", "workflow", workflow_id)
            .with_details(request.clone());
        airt_kit::write_tx!(&self.db, tx => {
            sqlx::query(REQUEST_CANCEL).bind(workflow_id).bind(request.to_string()).execute(&mut *tx).await?;
            tx.append_audit(&event).await?;
        })?;
        Ok(())
    }

    /// Claims up to `limit` unfinished workflows (PENDING, RUNNING,
    /// ROLLING_BACK) whose lease expired or belongs to a previous life of
    /// `owner`'s instance; never those `owner` itself holds.
    pub async fn claim_orphans(
        &self,
        owner: &str,
        until_us: i64,
        limit: i64,
    ) -> Result<Vec<String>, WorkflowError> {
        let now = airt_kit::clock::now_micros();
        let instance = instance_prefix(owner);
        let claimed = match &self.db {
            Database::Sqlite(pool) => {
                let mut tx = airt_kit::db::begin_immediate(pool).await?;
                let ids = sqlx::query_scalar(ORPHANS_SQLITE)
                    .bind(owner)
                    .bind(until_us)
                    .bind(now)
                    .bind(limit)
                    .bind(&instance)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                ids
            }
            Database::Postgres(pool) => {
                sqlx::query_scalar(ORPHANS_POSTGRES)
                    .bind(owner)
                    .bind(until_us)
                    .bind(now)
                    .bind(limit)
                    .bind(&instance)
                    .fetch_all(pool)
                    .await?
            }
        };
        Ok(claimed)
    }

    /// PAUSED workflows (lease free, expired or `owner`'s instance's) whose
    /// waiting step's approval was decided, expired or voided.
    pub async fn decided_paused(
        &self,
        owner: &str,
        limit: i64,
    ) -> Result<Vec<String>, WorkflowError> {
        let now = airt_kit::clock::now_micros();
        let instance = instance_prefix(owner);
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_scalar(DECIDED_PAUSED).bind(owner).bind(now).bind(limit).bind(&instance).fetch_all(pool).await?
        }))
    }
}
