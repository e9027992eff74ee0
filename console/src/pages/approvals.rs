//! The approvals inbox, an approval's detail, and the decision (approve or
//! reject, with a comment, after a confirmation showing exactly what runs).

use std::sync::Arc;

use airt_kit::json::from_proto_struct;
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::approval_service_client::ApprovalServiceClient;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::HeaderMap;
use maud::{Markup, html};
use serde::Deserialize;

use crate::Console;
use crate::error::ConsoleError;
use crate::forms::Decision;
use crate::pages::{approval_status, bounded_id, decision_text, status_filter};
use crate::user::User;
use crate::view;

#[derive(Debug, Deserialize)]
pub struct InboxQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    page: String,
}

const STATUSES: [&str; 6] = ["PENDING", "APPROVED", "REJECTED", "EXPIRED", "VOID", "ALL"];

fn client(console: &Console) -> ApprovalServiceClient<tonic::transport::Channel> {
    ApprovalServiceClient::new(console.channels.workflow.clone())
}

/// `GET /`: the approvals the user may see, oldest first (pending ones by
/// default).
pub async fn inbox(
    State(console): State<Arc<Console>>,
    user: User,
    Query(query): Query<InboxQuery>,
) -> Result<Markup, ConsoleError> {
    let (status, status_value) = status_filter(&query.status, "PENDING", |name| {
        pb::ApprovalStatus::from_str_name(&format!("APPROVAL_STATUS_{name}")).map(|s| s as i32)
    })?;
    let page = client(&console)
        .list_approvals(user.request(pb::ListApprovalsRequest {
            status: status_value,
            page_size: 100,
            page_token: bounded_id(&query.page, "page")?.to_owned(),
            ..Default::default()
        }))
        .await?
        .into_inner();
    let body = html! {
        form.filters method="get" action="/" {
            label for="status" { "Status" }
            select #status name="status" data-testid="status-filter" {
                @for s in STATUSES {
                    option value=(s) selected[s == status] { (s) }
                }
            }
            button type="submit" { "Show" }
        }
        @if page.approvals.is_empty() {
            p data-testid="inbox-empty" {
                "Nothing " (status.to_lowercase()) " that you may see. Approvals appear here for the roles they name, and for their submitter."
            }
        } @else {
            div.scroll { table {
                thead { tr {
                    th { "Action" } th { "Risk" } th { "Rule" } th { "Inputs" } th { "Workflow / step" }
                    th { "Requested by" } th { "Expires" } th { "Status" }
                } }
                tbody { @for a in &page.approvals { (row(a)) } }
            } }
        }
        @if !page.next_page_token.is_empty() {
            p { a href={ "/?status=" (status) "&page=" (page.next_page_token) } { "Next page" } }
        }
    };
    Ok(view::page(
        "Approvals",
        Some(&user),
        console.development,
        &body,
    ))
}

fn row(a: &pb::Approval) -> Markup {
    let what = if a.capability_id.is_empty() {
        "human approval"
    } else {
        &a.capability_id
    };
    html! {
        tr data-testid="approval-row" data-approval-id=(a.approval_id) {
            td { a href={ "/approvals/" (a.approval_id) } { (what) }
                 @if !a.capability_version.is_empty() { " " span.muted { (a.capability_version) } } }
            td { (view::risk(a.risk_level)) }
            td { (a.decision.as_ref().map(|d| d.rule_id.as_str()).unwrap_or("-")) }
            td.inputs data-testid="inputs-summary" { code { (inputs_summary(a)) } }
            td { a href={ "/workflows/" (a.workflow_id) } { (a.workflow_name) } " / " (a.step_name) }
            td { (view::principal(a.requested_for.as_ref())) }
            td { time datetime=(view::time(a.expire_time.as_ref())) title=(view::time(a.expire_time.as_ref())) {
                (view::relative(a.expire_time.as_ref())) } }
            td { (approval_status(a.status)) }
        }
    }
}

/// The resolved inputs on one line, cut at 160 characters (the approval
/// page shows them whole).
fn inputs_summary(a: &pb::Approval) -> String {
    let Some(inputs) = &a.resolved_inputs else {
        return String::new();
    };
    let text = serde_json::Value::Object(from_proto_struct(inputs)).to_string();
    if text.chars().count() <= 160 {
        return text;
    }
    let mut cut: String = text.chars().take(159).collect();
    cut.push('…');
    cut
}

async fn fetch(console: &Console, user: &User, id: &str) -> Result<pb::Approval, ConsoleError> {
    client(console)
        .get_approval(user.request(pb::GetApprovalRequest {
            approval_id: bounded_id(id, "approval id")?.to_owned(),
        }))
        .await?
        .into_inner()
        .approval
        .ok_or_else(|| ConsoleError::BadRequest("the service answered without the approval".into()))
}

/// `GET /approvals/{id}`: everything an approver needs to decide.
pub async fn detail(
    State(console): State<Arc<Console>>,
    user: User,
    Path(id): Path<String>,
) -> Result<Markup, ConsoleError> {
    let a = fetch(&console, &user, &id).await?;
    let pending = a.status == pb::ApprovalStatus::Pending as i32;
    let body = html! {
        (facts(&a))
        @if pending {
            form method="post" action={ "/approvals/" (a.approval_id) "/approve" } {
                (view::csrf(&user.csrf))
                input type="hidden" name="digest" value=(a.action_digest);
                label for="comment" { "Comment (recorded with your decision)" }
                textarea #comment name="comment" rows="3" maxlength="2000"
                    data-testid="decision-comment" {}
                button.approve type="submit" data-testid="approve-button" { "Approve…" }
                button.reject type="submit" formaction={ "/approvals/" (a.approval_id) "/reject" }
                    data-testid="reject-button" { "Reject…" }
                p.muted { "You confirm on the next page. The services check your roles and that you did not submit the workflow yourself." }
            }
        }
        (deliveries(&a))
    };
    let title = format!("Approval {}", a.approval_id);
    Ok(view::page(&title, Some(&user), console.development, &body))
}

/// The approval's facts: what runs, why it waits, who asked, until when.
fn facts(a: &pb::Approval) -> Markup {
    let inputs = a
        .resolved_inputs
        .as_ref()
        .map(|s| serde_json::Value::Object(from_proto_struct(s)))
        .unwrap_or_default();
    html! {
        dl {
            dt { "Status" } dd data-testid="approval-status" { (approval_status(a.status)) }
            @if !a.status_reason.is_empty() {
                dt { "What changed" } dd data-testid="status-reason" { (a.status_reason) }
            }
            dt { "Workflow" } dd { a href={ "/workflows/" (a.workflow_id) } { (a.workflow_name) } " (" (a.workflow_id) ")" }
            dt { "Step" } dd { (a.step_name) }
            dt { "Capability" } dd data-testid="capability" { (if a.capability_id.is_empty() { "human approval" } else { &a.capability_id }) " " (a.capability_version) }
            dt { "Risk" } dd { (view::risk(a.risk_level)) }
            dt { "Policy decision" } dd data-testid="decision" { (decision_text(a.decision.as_ref())) }
            @if !a.message.is_empty() { dt { "Message" } dd { (a.message) } }
            dt { "Approver roles" } dd { (a.approver_roles.join(", ")) }
            dt { "Requested by" } dd { (view::principal(a.requested_for.as_ref())) }
            dt { "Requested" } dd { (view::time(a.request_time.as_ref())) }
            dt { "Expires" } dd data-testid="expires" { (view::time(a.expire_time.as_ref())) " (" (view::relative(a.expire_time.as_ref())) ")" }
            @if a.decided_by.as_ref().is_some_and(|p| !p.id.is_empty()) {
                dt { "Decided by" } dd data-testid="decided-by" { (view::principal(a.decided_by.as_ref())) " at " (view::time(a.decide_time.as_ref())) }
                dt { "Comment" } dd data-testid="decided-comment" { (a.comment) }
            }
            dt { "Action digest" } dd { code { (a.action_digest) } }
        }
        h2 { "Inputs" }
        div data-testid="inputs" { (view::json(&inputs)) }
    }
}

fn deliveries(a: &pb::Approval) -> Markup {
    html! {
        @if !a.deliveries.is_empty() {
            h2 { "Webhook deliveries" }
            div.scroll { table {
                thead { tr { th { "Event" } th { "URL" } th { "Status" } th { "Attempts" } th { "Last error" } } }
                tbody { @for d in &a.deliveries { tr {
                    td { (d.event) } td { (d.url) }
                    td { (pb::DeliveryStatus::try_from(d.status).map(|s| view::short(s.as_str_name(), "DELIVERY_STATUS_")).unwrap_or_default()) }
                    td { (d.attempts) } td { (d.last_error) }
                } } }
            } }
        }
    }
}

/// `POST /approvals/{id}/approve` and `/reject`: first a confirmation page
/// with what will run (or not); the confirmed form decides.
pub async fn decide(
    State(console): State<Arc<Console>>,
    user: User,
    headers: HeaderMap,
    Path((id, verb)): Path<(String, String)>,
    Form(form): Form<Decision>,
) -> Result<Response, ConsoleError> {
    crate::forms::check(&console, &headers, &user.nonce, &form.csrf)?;
    let approve = match verb.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return Err(ConsoleError::BadRequest("approve or reject".into())),
    };
    let comment = form.comment()?;
    let a = fetch(&console, &user, &id).await?;
    if !form.digest.is_empty() && form.digest != a.action_digest {
        return Err(ConsoleError::BadRequest(
            "the action changed since the page was shown: look at it again".into(),
        ));
    }
    if form.confirmed != "yes" {
        return Ok(confirm(&console, &user, &a, approve, &comment).into_response());
    }
    let request_id = bounded_id(&form.request_id, "request id")?.to_owned();
    let mut approvals = client(&console);
    if approve {
        approvals
            .approve_step(user.request(pb::ApproveStepRequest {
                approval_id: a.approval_id.clone(),
                comment,
                request_id,
            }))
            .await?;
    } else {
        approvals
            .reject_step(user.request(pb::RejectStepRequest {
                approval_id: a.approval_id.clone(),
                comment,
                request_id,
            }))
            .await?;
    }
    Ok(Redirect::to(&format!("/approvals/{}", a.approval_id)).into_response())
}

fn confirm(
    console: &Console,
    user: &User,
    a: &pb::Approval,
    approve: bool,
    comment: &str,
) -> Markup {
    let verb = if approve { "approve" } else { "reject" };
    let body = html! {
        p { @if approve { "Approving lets this action run now:" } @else { "Rejecting stops the workflow and undoes its completed steps:" } }
        (facts(a))
        form method="post" action={ "/approvals/" (a.approval_id) "/" (verb) } {
            (view::csrf(&user.csrf))
            input type="hidden" name="digest" value=(a.action_digest);
            input type="hidden" name="comment" value=(comment);
            input type="hidden" name="confirmed" value="yes";
            // One id per confirmation: a double submit decides once.
            input type="hidden" name="request_id" value=(uuid::Uuid::new_v4());
            p { "Comment: " @if comment.is_empty() { span.muted { "(none)" } } @else { q { (comment) } } }
            button class=(verb) type="submit" data-testid="confirm-button" {
                @if approve { "Confirm: approve" } @else { "Confirm: reject" }
            }
            a href={ "/approvals/" (a.approval_id) } { "Cancel" }
        }
    };
    let title = if approve {
        "Approve this action?"
    } else {
        "Reject this action?"
    };
    view::page(title, Some(user), console.development, &body)
}
