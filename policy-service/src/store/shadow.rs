//! The shadow set: which stored revision is evaluated beside the active
//! one. Changing it bumps the activation sequence, so every replica loads
//! it, and is audited.

use airt_kit::Principal;
use airt_kit::audit::{AppendAudit as _, NewAuditEvent};
use serde_json::json;

use super::{ActiveState, PolicyStore, StoredPolicySet, select_one};
use crate::error::PolicyError;

const SET_SHADOW: &str = "UPDATE policy_state SET shadow_revision = $1, \
     activation_seq = activation_seq + 1 WHERE id = 1";

impl PolicyStore {
    /// Makes stored `revision` the shadow set, or stops shadowing when it
    /// is empty. Returns the shadow set, if any.
    pub async fn set_shadow(
        &self,
        revision: &str,
        actor: &Principal,
        reason: &str,
        request_id: &str,
    ) -> Result<Option<StoredPolicySet>, PolicyError> {
        let lock = self.state_lock_sql();
        let select = select_one();
        airt_kit::write_tx!(&self.db, tx => {
            let state: ActiveState = sqlx::query_as(lock).fetch_one(&mut *tx).await?;
            let found: Option<StoredPolicySet> = if revision.is_empty() {
                None
            } else {
                let found: Option<StoredPolicySet> = sqlx::query_as(sqlx::AssertSqlSafe(select.as_str()))
                    .bind(revision)
                    .fetch_optional(&mut *tx)
                    .await?;
                if found.is_none() {
                    return Err(PolicyError::NotFound(revision.to_owned()));
                }
                found
            };
            if state.shadow_revision != revision {
                sqlx::query(SET_SHADOW).bind(revision).execute(&mut *tx).await?;
                let (action, resource) = if revision.is_empty() {
                    ("policy_set.shadow_stopped", state.shadow_revision.as_str())
                } else {
                    ("policy_set.shadowed", revision)
                };
                tx.append_audit(
                    &NewAuditEvent::new(actor, action, "policy_set", resource).with_details(json!({
                        "previous_shadow_revision": state.shadow_revision,
                        "reason": reason,
                        "request_id": request_id,
                    })),
                )
                .await?;
            }
            found
        })
        .map_err(PolicyError::from)
    }
}
