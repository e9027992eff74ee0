//! The decision log: every decision becomes an audit event, written in
//! batches by a background task so that no decision waits for a database
//! commit. The queue is drained completely before the service closes its
//! database, so a clean shutdown loses no acknowledged decision.

use airt_kit::Principal;
use airt_kit::audit::{AuditLog, AuditWriter, NewAuditEvent};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::domain::{DecisionRecord, PolicyContext};
use airt_kit::mask::mask_map;

/// Events queued before `record` waits (backpressure, never loss).
const QUEUE: usize = 16_384;
/// Events written per transaction at most.
const BATCH: usize = 512;

#[derive(Debug, Clone)]
pub struct DecisionLog {
    queue: mpsc::Sender<NewAuditEvent>,
}

impl DecisionLog {
    /// Starts the writer; it ends once every `DecisionLog` clone is dropped
    /// and the queue is written.
    pub fn spawn(audit: AuditLog) -> (Self, JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(QUEUE);
        (Self { queue }, tokio::spawn(write_batches(audit, receiver)))
    }

    /// A gauge of the decisions queued and not yet written that does not
    /// keep the writer alive (it ends when the last `DecisionLog` drops).
    pub fn backlog_probe(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let queue = self.queue.downgrade();
        move || {
            queue
                .upgrade()
                .map_or(0, |queue| queue.max_capacity() - queue.capacity())
        }
    }

    /// Queues the decision's audit event: caller, context (inputs masked,
    /// plus a digest of the unmasked inputs) and the decision.
    pub async fn record(&self, caller: &Principal, ctx: &PolicyContext, record: &DecisionRecord) {
        self.queue(caller, ctx, details(ctx, record)).await;
    }

    /// Queues a shadow decision: marked `shadow`, with the enforced
    /// decision beside it. Never replayed, never enforced.
    pub async fn record_shadow(
        &self,
        caller: &Principal,
        ctx: &PolicyContext,
        shadow: &DecisionRecord,
        enforced: &DecisionRecord,
    ) {
        let mut details = details(ctx, shadow);
        details["shadow"] = Value::Bool(true);
        details["enforced_decision"] = enforced.decision.as_str().into();
        details["enforced_rule_id"] = (*enforced.rule_id).into();
        details["agrees"] = Value::Bool(shadow.decision == enforced.decision);
        self.queue(caller, ctx, details).await;
    }

    async fn queue(&self, caller: &Principal, ctx: &PolicyContext, details: Value) {
        let event = NewAuditEvent::new(caller, "policy.decision", "capability", &ctx.capability_id)
            .with_details(details);
        if self.queue.send(event).await.is_err() {
            tracing::error!(capability = %ctx.capability_id, "decision log writer is gone; entry not recorded");
        }
    }
}

/// An entry's details: the context (inputs masked, with a digest of the
/// unmasked inputs) and the decision.
fn details(ctx: &PolicyContext, record: &DecisionRecord) -> Value {
    let inputs = Value::Object(ctx.inputs.clone());
    let digest = hex::encode(Sha256::digest(
        airt_kit::json::canonical_json(&inputs).as_bytes(),
    ));
    let mut details = json!({
        "principal": ctx.principal,
        "roles": ctx.roles,
        "agent": ctx.agent,
        "workflow_id": ctx.workflow_id,
        "step_name": ctx.step_name,
        "risk_level": ctx.risk_level.as_str(),
        "requires_approval": ctx.requires_approval,
        "operation_type": ctx.operation_type.map(|o| o.as_str()),
        "environment": ctx.environment,
        "inputs": Value::Object(mask_map(&ctx.inputs)),
        "inputs_digest": digest,
        "decision": record.decision.as_str(),
        "rule_id": &*record.rule_id,
        "reason": &*record.reason,
        "escalated": record.escalated,
        "policy_revision": &*record.policy_revision,
    });
    if let Some(budget) = &record.budget {
        details["budget"] = json!({
            "rule_id": &*budget.rule_id,
            "scope": budget.scope,
            "max": budget.max,
            "used": budget.used,
            "window_start": budget.window_start,
            "counted": budget.counted,
            "exceeded": budget.exceeded,
        });
    }
    details
}

async fn write_batches(audit: AuditLog, mut receiver: mpsc::Receiver<NewAuditEvent>) {
    // One connection for batches that follow one another (its page cache
    // stays warm), given back whenever the queue is empty: an idle writer
    // must not keep the database from closing.
    let mut writer = AuditWriter::new(&audit);
    let mut incoming = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut incoming, BATCH).await > 0 {
        let mut batch = writer.batch();
        for event in incoming.drain(..) {
            batch.push(&event);
        }
        // A failed write is retried, never dropped: the entries were
        // acknowledged (a batch an attempt did commit is not written twice).
        let mut backoff = airt_kit::backoff::Backoff::doubling(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(5),
        );
        while let Err(error) = writer.append_sealed(&mut batch).await {
            if receiver.is_closed() && matches!(error, sqlx::Error::PoolClosed) {
                tracing::error!(
                    lost = batch.len() + receiver.len(),
                    "database closed before the decision log was written"
                );
                return;
            }
            tracing::warn!(%error, pending = batch.len(), "decision log write failed; retrying");
            tokio::time::sleep(backoff.next_delay()).await;
        }
        if receiver.is_empty() {
            writer.release();
        }
    }
}
