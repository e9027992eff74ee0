//! `airt approvals list|show|approve|reject`: the approver's side.

use std::process::ExitCode;

use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::approval_service_client::ApprovalServiceClient;

use crate::client::{ConnectionArgs, ServiceName, describe};

#[derive(Debug, clap::Subcommand)]
pub enum ApprovalsCommand {
    /// The inbox: approvals waiting for a decision (oldest first).
    List {
        /// PENDING (default), APPROVED, REJECTED, EXPIRED, VOID or ALL.
        #[arg(long, default_value = "PENDING")]
        status: String,
        /// Only this workflow's approvals.
        #[arg(long, default_value = "")]
        workflow: String,
    },
    /// Everything about one approval: the exact action, the policy
    /// decision, the deadline and the webhook deliveries.
    Show { approval_id: String },
    /// Approve: the step then executes, exactly as shown.
    Approve {
        approval_id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Reject: the step fails as REJECTED and the workflow rolls back.
    Reject {
        approval_id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
}

fn name(prefix: &str, text: &str) -> String {
    text.strip_prefix(prefix).unwrap_or(text).to_owned()
}

fn status(value: i32) -> String {
    pb::ApprovalStatus::try_from(value)
        .map(|s| name("APPROVAL_STATUS_", s.as_str_name()))
        .unwrap_or_default()
}

fn time(ts: Option<&prost_types::Timestamp>) -> String {
    ts.map(ToString::to_string).unwrap_or_else(|| "-".into())
}

fn principal(p: Option<&airt_proto::common::v1::Principal>) -> String {
    p.filter(|p| !p.id.is_empty())
        .map(|p| format!("{}:{}", p.r#type, p.id))
        .unwrap_or_else(|| "-".into())
}

fn line(approval: &pb::Approval) {
    let what = if approval.capability_id.is_empty() {
        "human approval".to_owned()
    } else {
        approval.capability_id.clone()
    };
    out!(
        "{}  {:<8} {}/{}  {what}  expires {}",
        approval.approval_id,
        status(approval.status),
        approval.workflow_name,
        approval.step_name,
        time(approval.expire_time.as_ref())
    );
}

fn show(approval: &pb::Approval) {
    out!("approval      {}", approval.approval_id);
    out!("status        {}", status(approval.status));
    if !approval.status_reason.is_empty() {
        out!("              {}", approval.status_reason);
    }
    out!(
        "workflow      {} ({})",
        approval.workflow_name,
        approval.workflow_id
    );
    out!("step          {}", approval.step_name);
    out!("message       {}", approval.message);
    if !approval.capability_id.is_empty() {
        let risk = airt_proto::common::v1::RiskLevel::try_from(approval.risk_level)
            .map(|r| name("RISK_LEVEL_", r.as_str_name()))
            .unwrap_or_default();
        out!(
            "capability    {} {} (risk {risk})",
            approval.capability_id,
            approval.capability_version
        );
    }
    if let Some(inputs) = &approval.resolved_inputs {
        let inputs = airt_kit::json::from_proto_struct(inputs);
        out!(
            "inputs        {}",
            serde_json::to_string(&airt_kit::mask::mask_map(&inputs)).unwrap_or_default()
        );
    }
    if let Some(decision) = approval.decision.as_ref().filter(|d| !d.rule_id.is_empty()) {
        out!(
            "policy        rule {}: {}{}",
            decision.rule_id,
            decision.reason,
            if decision.escalated {
                " (escalated)"
            } else {
                ""
            }
        );
    }
    out!("digest        {}", approval.action_digest);
    out!("approvers     {}", approval.approver_roles.join(", "));
    out!(
        "requested     {} for {}",
        time(approval.request_time.as_ref()),
        principal(approval.requested_for.as_ref())
    );
    out!("expires       {}", time(approval.expire_time.as_ref()));
    if approval.decided_by.is_some() {
        out!(
            "decided       {} by {}{}",
            time(approval.decide_time.as_ref()),
            principal(approval.decided_by.as_ref()),
            if approval.comment.is_empty() {
                String::new()
            } else {
                format!(": {}", approval.comment)
            }
        );
    }
    for delivery in &approval.deliveries {
        let state = pb::DeliveryStatus::try_from(delivery.status)
            .map(|s| name("DELIVERY_STATUS_", s.as_str_name()))
            .unwrap_or_default();
        let error = if delivery.last_error.is_empty() {
            String::new()
        } else {
            format!(" — {}", delivery.last_error)
        };
        out!(
            "webhook       {} {} {state} after {} attempt(s){error}",
            delivery.event,
            delivery.url,
            delivery.attempts
        );
    }
}

pub async fn run(args: &ConnectionArgs, command: ApprovalsCommand) -> anyhow::Result<ExitCode> {
    let mut client = ApprovalServiceClient::new(args.authenticated(ServiceName::Workflow)?);
    let fail = |status: tonic::Status| anyhow::anyhow!(describe(&status));
    match command {
        ApprovalsCommand::List {
            status: wanted,
            workflow,
        } => {
            let status = match wanted.to_uppercase().as_str() {
                "ALL" => 0,
                text => pb::ApprovalStatus::from_str_name(&format!("APPROVAL_STATUS_{text}"))
                    .ok_or_else(|| anyhow::anyhow!("unknown status {wanted:?}"))?
                    as i32,
            };
            let mut listing = crate::output::Listing::new(args.output);
            let mut page_token = String::new();
            loop {
                let page = client
                    .list_approvals(pb::ListApprovalsRequest {
                        status,
                        workflow_id: workflow.clone(),
                        page_size: 100,
                        page_token,
                    })
                    .await
                    .map_err(fail)?
                    .into_inner();
                for approval in &page.approvals {
                    listing.push(approval, line)?;
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            let empty = listing.is_empty();
            listing.finish()?;
            if empty {
                eprintln!(
                    "no {} approvals you may see. An approval is listed for its approvers (a role its step names, e.g. `approver_roles: [release_manager]`), for the submitter of its workflow and for admins{}",
                    wanted.to_lowercase(),
                    args.identity_hint()
                );
            }
        }
        ApprovalsCommand::Show { approval_id } => {
            let approval = client
                .get_approval(pb::GetApprovalRequest { approval_id })
                .await
                .map_err(fail)?
                .into_inner()
                .approval
                .unwrap_or_default();
            crate::output::one(args.output, &approval, show)?;
        }
        ApprovalsCommand::Approve {
            approval_id,
            comment,
        } => {
            let approval = client
                .approve_step(pb::ApproveStepRequest {
                    approval_id,
                    comment,
                    request_id: String::new(),
                })
                .await
                .map_err(fail)?
                .into_inner()
                .approval
                .unwrap_or_default();
            show(&approval);
        }
        ApprovalsCommand::Reject {
            approval_id,
            comment,
        } => {
            let approval = client
                .reject_step(pb::RejectStepRequest {
                    approval_id,
                    comment,
                    request_id: String::new(),
                })
                .await
                .map_err(fail)?
                .into_inner()
                .approval
                .unwrap_or_default();
            show(&approval);
        }
    }
    Ok(ExitCode::SUCCESS)
}
