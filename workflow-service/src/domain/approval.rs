//! Approvals in plain Rust: the action digest an approval binds to, who may
//! decide, and what a second decision means.

use airt_kit::Principal;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::status::ApprovalStatus;

/// The exact action a human is asked to approve.
#[derive(Debug, Clone, PartialEq)]
pub struct Action<'a> {
    pub workflow_id: &'a str,
    pub step_name: &'a str,
    /// Empty for HUMAN_APPROVAL steps.
    pub capability_id: &'a str,
    pub capability_version: &'a str,
    pub risk_level: &'a str,
    pub inputs: &'a Map<String, Value>,
    /// The workflow's submitter (`type:id`).
    pub principal: &'a str,
    /// The policy set that required the approval (empty for HUMAN_APPROVAL).
    pub policy_revision: &'a str,
}

impl Action<'_> {
    /// SHA-256 (hex) over the canonical JSON of the action: any change of
    /// capability version, risk, resolved inputs, principal or policy
    /// revision gives another digest, and so voids an approval.
    pub fn digest(&self) -> String {
        let canonical = airt_kit::json::canonical_json(&json!({
            "workflow_id": self.workflow_id,
            "step_name": self.step_name,
            "capability": {"id": self.capability_id, "version": self.capability_version},
            "risk_level": self.risk_level,
            "inputs": self.inputs,
            "principal": self.principal,
            "policy_revision": self.policy_revision,
        }));
        hex::encode(Sha256::digest(canonical.as_bytes()))
    }
}

/// A human's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Reject,
}

impl Verdict {
    /// The approval status this verdict leads to.
    pub fn status(self) -> ApprovalStatus {
        match self {
            Self::Approve => ApprovalStatus::Approved,
            Self::Reject => ApprovalStatus::Rejected,
        }
    }
}

/// What a request for a decision amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionCheck {
    /// Record it.
    Apply,
    /// The same decision was already made: answer with it, change nothing.
    AlreadyDecided,
}

/// Why a decision is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The caller holds none of the approver roles.
    NotAnApprover(String),
    /// The caller submitted the workflow.
    SelfApproval(String),
    /// The approval expired before the decision.
    Expired(String),
    /// Decided otherwise already, or void.
    Conflict(String),
}

/// The facts about an approval a decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Pending<'a> {
    pub approval_id: &'a str,
    pub status: ApprovalStatus,
    pub approver_roles: &'a [String],
    pub requested_for: &'a str,
    pub decided_by: &'a str,
    pub expires_at_us: i64,
}

/// Whether `caller` may give `verdict` on `approval` at `now_us`. Who may
/// decide is checked first, so an outsider learns nothing of the state.
pub fn check_decision(
    approval: Pending<'_>,
    caller: &Principal,
    verdict: Verdict,
    now_us: i64,
) -> Result<DecisionCheck, Refusal> {
    let id = approval.approval_id;
    if !approval.approver_roles.iter().any(|r| caller.has_role(r)) {
        return Err(Refusal::NotAnApprover(format!(
            "approval {id} needs one of the roles [{}]",
            approval.approver_roles.join(", ")
        )));
    }
    if caller.same_person(approval.requested_for) {
        return Err(Refusal::SelfApproval(format!(
            "{caller} submitted the workflow and cannot decide its approvals"
        )));
    }
    match approval.status {
        ApprovalStatus::Pending if now_us >= approval.expires_at_us => {
            Err(Refusal::Expired(format!(
                "approval {id} expired at {}",
                rfc3339(approval.expires_at_us)
            )))
        }
        ApprovalStatus::Pending => Ok(DecisionCheck::Apply),
        status if status == verdict.status() => Ok(DecisionCheck::AlreadyDecided),
        ApprovalStatus::Expired => Err(Refusal::Expired(format!(
            "approval {id} expired at {}",
            rfc3339(approval.expires_at_us)
        ))),
        ApprovalStatus::Void => Err(Refusal::Conflict(format!(
            "approval {id} is VOID: the action changed or the step no longer waits; see the workflow's newer approval"
        ))),
        status => Err(Refusal::Conflict(format!(
            "approval {id} is already {status} by {}",
            approval.decided_by
        ))),
    }
}

/// Microseconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(micros: i64) -> String {
    airt_kit::clock::timestamp_from_micros(micros).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(inputs: &Map<String, Value>) -> Action<'_> {
        Action {
            workflow_id: "w1",
            step_name: "pay",
            capability_id: "crm.pay",
            capability_version: "1.0.0",
            risk_level: "HIGH",
            inputs,
            principal: "user:alice",
            policy_revision: "rev1",
        }
    }

    #[test]
    fn the_digest_binds_every_part_of_the_action() {
        let inputs: Map<String, Value> = serde_json::from_value(json!({"amount": 10})).unwrap();
        let base = action(&inputs).digest();
        assert_eq!(base.len(), 64);
        assert_eq!(base, action(&inputs).digest(), "deterministic");
        let other: Map<String, Value> = serde_json::from_value(json!({"amount": 11})).unwrap();
        let changes = [
            action(&other),
            Action {
                capability_version: "1.1.0",
                ..action(&inputs)
            },
            Action {
                risk_level: "CRITICAL",
                ..action(&inputs)
            },
            Action {
                principal: "user:mallory",
                ..action(&inputs)
            },
            Action {
                policy_revision: "rev2",
                ..action(&inputs)
            },
            Action {
                step_name: "refund",
                ..action(&inputs)
            },
        ];
        for changed in changes {
            assert_ne!(changed.digest(), base, "{changed:?}");
        }
    }

    fn pending(status: ApprovalStatus, roles: &[String]) -> Pending<'_> {
        Pending {
            approval_id: "a1",
            status,
            approver_roles: roles,
            requested_for: "user:alice",
            decided_by: "user:bob",
            expires_at_us: 2_000,
        }
    }

    #[test]
    fn who_may_decide_and_what_a_second_decision_means() {
        let roles = vec!["approver".to_owned()];
        let bob = Principal::new("user", "bob", vec!["approver".into()]);
        let alice = Principal::new("user", "alice", vec!["approver".into()]);
        let carol = Principal::new("user", "carol", vec!["admin".into()]);
        let p = |s| pending(s, &roles);
        use ApprovalStatus as S;
        assert_eq!(
            check_decision(p(S::Pending), &bob, Verdict::Approve, 1_000),
            Ok(DecisionCheck::Apply)
        );
        assert!(matches!(
            check_decision(p(S::Pending), &carol, Verdict::Approve, 1_000),
            Err(Refusal::NotAnApprover(_))
        ));
        assert!(matches!(
            check_decision(p(S::Pending), &alice, Verdict::Approve, 1_000),
            Err(Refusal::SelfApproval(_))
        ));
        assert!(matches!(
            check_decision(p(S::Pending), &bob, Verdict::Approve, 2_000),
            Err(Refusal::Expired(_))
        ));
        assert_eq!(
            check_decision(p(S::Approved), &bob, Verdict::Approve, 1_000),
            Ok(DecisionCheck::AlreadyDecided)
        );
        assert_eq!(
            check_decision(p(S::Rejected), &bob, Verdict::Reject, 9_000),
            Ok(DecisionCheck::AlreadyDecided)
        );
        assert!(matches!(
            check_decision(p(S::Approved), &bob, Verdict::Reject, 1_000),
            Err(Refusal::Conflict(_))
        ));
        assert!(matches!(
            check_decision(p(S::Expired), &bob, Verdict::Approve, 1_000),
            Err(Refusal::Expired(_))
        ));
        assert!(matches!(
            check_decision(p(S::Void), &bob, Verdict::Approve, 1_000),
            Err(Refusal::Conflict(_))
        ));
    }

    #[test]
    fn timestamps_read_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00Z");
    }
}
