//! The statuses of workflows, steps and compensations — one enum per
//! concept, one spelling everywhere (proto `WORKFLOW_STATUS_RUNNING`, and
//! `RUNNING` in the database, JSON and logs).

use std::fmt;

macro_rules! status_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_enum! {
    /// PENDING → RUNNING → (PAUSED ⇄ RUNNING) → COMPLETED | FAILED |
    /// ROLLING_BACK → ROLLED_BACK | COMPENSATION_FAILED | CANCELLED.
    WorkflowStatus {
        Pending => "PENDING",
        Running => "RUNNING",
        Paused => "PAUSED",
        Completed => "COMPLETED",
        Failed => "FAILED",
        RollingBack => "ROLLING_BACK",
        RolledBack => "ROLLED_BACK",
        CompensationFailed => "COMPENSATION_FAILED",
        Cancelled => "CANCELLED",
    }
}

impl WorkflowStatus {
    /// No further transition will happen.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed
                | Self::Failed
                | Self::RolledBack
                | Self::CompensationFailed
                | Self::Cancelled
        )
    }
}

status_enum! {
    /// PENDING → RUNNING → SUCCEEDED | FAILED | DENIED | SKIPPED, with
    /// AWAITING_APPROVAL → RUNNING | REJECTED | EXPIRED, and COMPENSATING →
    /// COMPENSATED | COMPENSATION_FAILED.
    StepStatus {
        Pending => "PENDING",
        Running => "RUNNING",
        Succeeded => "SUCCEEDED",
        Failed => "FAILED",
        Denied => "DENIED",
        Skipped => "SKIPPED",
        AwaitingApproval => "AWAITING_APPROVAL",
        Rejected => "REJECTED",
        Expired => "EXPIRED",
        Compensating => "COMPENSATING",
        Compensated => "COMPENSATED",
        CompensationFailed => "COMPENSATION_FAILED",
    }
}

status_enum! {
    /// A durable compensation record: PENDING → RUNNING → DONE | FAILED.
    CompensationStatus {
        Pending => "PENDING",
        Running => "RUNNING",
        Done => "DONE",
        Failed => "FAILED",
    }
}

status_enum! {
    /// An approval request: PENDING → APPROVED | REJECTED | EXPIRED, or VOID
    /// when the action changed after the request (or the step no longer
    /// waits for it).
    ApprovalStatus {
        Pending => "PENDING",
        Approved => "APPROVED",
        Rejected => "REJECTED",
        Expired => "EXPIRED",
        Void => "VOID",
    }
}

status_enum! {
    /// A webhook delivery: PENDING (retrying) → DELIVERED | FAILED (gave up).
    DeliveryStatus {
        Pending => "PENDING",
        Delivered => "DELIVERED",
        Failed => "FAILED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airt_proto::workflow::v1 as pb;

    #[test]
    fn one_spelling_everywhere() {
        for status in WorkflowStatus::ALL {
            assert_eq!(WorkflowStatus::parse(status.as_str()), Some(*status));
            let proto = pb::WorkflowStatus::from_str_name(&format!("WORKFLOW_STATUS_{status}"));
            assert!(proto.is_some(), "{status} has a proto twin");
        }
        for status in StepStatus::ALL {
            assert!(
                pb::StepStatus::from_str_name(&format!("STEP_STATUS_{status}")).is_some(),
                "{status}"
            );
        }
        for status in CompensationStatus::ALL {
            assert!(
                pb::CompensationStatus::from_str_name(&format!("COMPENSATION_STATUS_{status}"))
                    .is_some(),
                "{status}"
            );
        }
        for status in ApprovalStatus::ALL {
            assert!(
                pb::ApprovalStatus::from_str_name(&format!("APPROVAL_STATUS_{status}")).is_some(),
                "{status}"
            );
        }
        for status in DeliveryStatus::ALL {
            assert!(
                pb::DeliveryStatus::from_str_name(&format!("DELIVERY_STATUS_{status}")).is_some(),
                "{status}"
            );
        }
        assert_eq!(
            pb::WorkflowStatus::Cancelled as usize,
            WorkflowStatus::ALL.len()
        );
    }
}
