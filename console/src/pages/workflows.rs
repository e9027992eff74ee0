//! Workflows: the list (by status and name) and one workflow's page with
//! its steps, compensations and timeline. The timeline is rendered with
//! the page (readable without scripts) and then follows the workflow live
//! over server-sent events fed by `WatchWorkflow`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use airt_kit::json::{from_proto_struct, from_proto_value};
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt as _};
use maud::{Markup, html};
use serde::Deserialize;

use crate::Console;
use crate::error::ConsoleError;
use crate::pages::{bounded_id, decision_text, status_filter, step_status, workflow_status};
use crate::user::User;
use crate::view;

fn client(console: &Console) -> WorkflowServiceClient<tonic::transport::Channel> {
    WorkflowServiceClient::new(console.channels.workflow.clone())
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    page: String,
}

const STATUSES: [&str; 10] = [
    "ALL",
    "PENDING",
    "RUNNING",
    "PAUSED",
    "COMPLETED",
    "FAILED",
    "ROLLED_BACK",
    "COMPENSATION_FAILED",
    "CANCELLED",
    "ROLLING_BACK",
];

/// `GET /workflows`: the workflows the user may see, newest first.
pub async fn list(
    State(console): State<Arc<Console>>,
    user: User,
    Query(query): Query<ListQuery>,
) -> Result<Markup, ConsoleError> {
    let (status, status_value) = status_filter(&query.status, "ALL", |name| {
        pb::WorkflowStatus::from_str_name(&format!("WORKFLOW_STATUS_{name}")).map(|s| s as i32)
    })?;
    let name = bounded_id(query.name.trim(), "name")?;
    let page = client(&console)
        .list_workflows(user.request(pb::ListWorkflowsRequest {
            page_size: 100,
            page_token: bounded_id(&query.page, "page")?.to_owned(),
            status: status_value,
            name: name.to_owned(),
            ..Default::default()
        }))
        .await?
        .into_inner();
    let body = html! {
        form.filters method="get" action="/workflows" {
            label for="status" { "Status" }
            select #status name="status" {
                @for s in STATUSES { option value=(s) selected[s == status] { (s) } }
            }
            label for="name" { "Name" }
            input #name type="text" name="name" value=(name);
            button type="submit" { "Show" }
        }
        @if page.workflows.is_empty() {
            p { "No workflow matches." }
        } @else {
            div.scroll { table {
                thead { tr { th { "Workflow" } th { "Status" } th { "Submitted by" } th { "Created" } th { "Updated" } } }
                tbody { @for w in &page.workflows { tr data-testid="workflow-row" data-workflow-id=(w.workflow_id) {
                    td { a href={ "/workflows/" (w.workflow_id) } { (w.spec.as_ref().map(|s| s.name.as_str()).unwrap_or("-")) }
                         br; span.muted { (w.workflow_id) } }
                    td { (workflow_status(w.status)) }
                    td { (view::principal(w.submitter.as_ref())) }
                    td { (view::time(w.create_time.as_ref())) }
                    td { (view::time(w.update_time.as_ref())) }
                } } }
            } }
        }
        @if !page.next_page_token.is_empty() {
            p { a href={ "/workflows?status=" (status) "&name=" (name) "&page=" (page.next_page_token) } { "Next page" } }
        }
    };
    Ok(view::page(
        "Workflows",
        Some(&user),
        console.development,
        &body,
    ))
}

/// The workflow and every event so far: the first message of a watch.
async fn snapshot(
    console: &Console,
    user: &User,
    id: &str,
) -> Result<pb::WatchWorkflowResponse, ConsoleError> {
    let mut stream = client(console)
        .watch_workflow(user.request(pb::WatchWorkflowRequest {
            workflow_id: bounded_id(id, "workflow id")?.to_owned(),
            after_sequence: 0,
        }))
        .await?
        .into_inner();
    stream
        .message()
        .await?
        .ok_or_else(|| ConsoleError::BadRequest("the workflow's watch ended at once".into()))
}

/// `GET /workflows/{id}`.
pub async fn detail(
    State(console): State<Arc<Console>>,
    user: User,
    Path(id): Path<String>,
) -> Result<Markup, ConsoleError> {
    let first = snapshot(&console, &user, &id).await?;
    let w = first.workflow.ok_or_else(|| {
        ConsoleError::BadRequest("the service answered without the workflow".into())
    })?;
    let last = first.events.last().map_or(0, |e| e.sequence);
    let name = w.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default();
    let body = html! {
        dl {
            dt { "Status" } dd { strong #status data-testid="workflow-status" { (workflow_status(w.status)) } }
            dt { "Id" } dd { (w.workflow_id) }
            dt { "Submitted by" } dd { (view::principal(w.submitter.as_ref())) }
            dt { "Created" } dd { (view::time(w.create_time.as_ref())) }
            @if !w.failure_reason.is_empty() { dt { "Why it failed" } dd data-testid="failure-reason" { (w.failure_reason) } }
            @if !w.trace_id.is_empty() { dt { "Trace" } dd { code { (w.trace_id) } } }
        }
        (steps(&w))
        (compensations(&w))
        h2 { "Timeline" }
        ol.timeline #timeline data-after=(last) data-workflow=(w.workflow_id) data-testid="timeline" {
            @for e in &first.events { (event(e)) }
        }
        script src="/static/live.js" defer {}
    };
    let title = format!("Workflow {name}");
    Ok(view::page(&title, Some(&user), console.development, &body))
}

fn steps(w: &pb::Workflow) -> Markup {
    let specs = w
        .spec
        .as_ref()
        .map(|s| s.steps.as_slice())
        .unwrap_or_default();
    html! {
        h2 { "Steps" }
        div.scroll { table {
            thead { tr { th { "Step" } th { "Capability" } th { "Status" } th { "Attempt" } th { "Decision" } th { "Outputs / error" } } }
            tbody { @for s in &w.steps {
                @let capability = specs.iter().find(|spec| spec.name == s.name).map(|spec| spec.capability.as_str()).unwrap_or("");
                tr data-testid="step-row" data-step=(s.name) {
                    td { (s.name) @if !s.approval_id.is_empty() { br; a href={ "/approvals/" (s.approval_id) } { "approval" } } }
                    td { (capability) " " span.muted { (s.capability_version) } br; (view::risk(s.risk_level)) }
                    td data-testid="step-status" { (step_status(s.status)) }
                    td { (s.attempt) }
                    td { (decision_text(s.decision.as_ref())) }
                    td {
                        @if let Some(outputs) = &s.outputs { (view::json(&from_proto_value(outputs))) }
                        @if !s.error.is_empty() { pre { (s.error) } }
                    }
                }
            } }
        } }
    }
}

fn compensations(w: &pb::Workflow) -> Markup {
    html! {
        @if !w.compensations.is_empty() {
            h2 { "Compensations" }
            div.scroll { table {
                thead { tr { th { "Order" } th { "Step" } th { "Capability" } th { "Status" } th { "Attempts" } th { "Error" } } }
                tbody { @for c in &w.compensations { tr data-testid="compensation-row" {
                    td { (c.order) } td { (c.step_name) } td { (c.capability_id) }
                    td { (pb::CompensationStatus::try_from(c.status).map(|s| view::short(s.as_str_name(), "COMPENSATION_STATUS_")).unwrap_or_default()) }
                    td { (c.attempts) } td { (c.error) }
                } } }
            } }
        }
    }
}

/// One timeline entry (the live script builds the same from JSON).
fn event(e: &pb::WorkflowEvent) -> Markup {
    let detail = e
        .detail
        .as_ref()
        .map(|d| serde_json::Value::Object(from_proto_struct(d)))
        .unwrap_or_default();
    html! {
        li data-sequence=(e.sequence) {
            time { (view::time(e.occur_time.as_ref())) } " "
            strong { (e.kind) } " "
            @if !e.step_name.is_empty() { (e.step_name) " " }
            code { (detail.to_string()) }
        }
    }
}

/// Follows the workflow: appends events and updates the status; the page
/// is complete without it. Served at `/static/live.js`.
pub const LIVE_SCRIPT: &str = r#"
(function(){var list=document.getElementById('timeline');if(!window.EventSource||!list)return;
var source=new EventSource('/workflows/'+encodeURIComponent(list.dataset.workflow)+'/events?after='+encodeURIComponent(list.dataset.after||'0'));
source.addEventListener('timeline',function(m){var e=JSON.parse(m.data);var li=document.createElement('li');
li.dataset.sequence=e.sequence;var t=document.createElement('time');t.textContent=e.time;var k=document.createElement('strong');
k.textContent=e.kind;var c=document.createElement('code');c.textContent=JSON.stringify(e.detail);
li.append(t,' ',k,' ',e.step?e.step+' ':'',c);list.appendChild(li);});
source.addEventListener('status',function(m){var s=document.getElementById('status');if(s)s.textContent=m.data;});
source.addEventListener('end',function(){source.close();});})();
// The browser reconnects by itself after a dropped connection, sending the
// last event id it saw; the server resumes after it.
"#;

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    #[serde(default)]
    after: i64,
}

/// `GET /workflows/{id}/events`: server-sent events from `WatchWorkflow`,
/// after sequence `after` (or the `Last-Event-ID` a reconnecting browser
/// sends): `timeline` (one event as JSON, its id the sequence), `status`
/// (the workflow's status) and `end` (the workflow finished or the watch
/// ended; the page stops listening).
pub async fn events(
    State(console): State<Arc<Console>>,
    user: User,
    headers: http::HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ConsoleError> {
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let stream = client(&console)
        .watch_workflow(user.request(pb::WatchWorkflowRequest {
            workflow_id: bounded_id(&id, "workflow id")?.to_owned(),
            after_sequence: resumed.unwrap_or(query.after).max(0),
        }))
        .await?
        .into_inner();
    let messages = stream
        .map(|message| match message {
            Ok(message) => sse_events(&message),
            Err(status) => vec![Event::default().event("end").data(status.message())],
        })
        .flat_map(futures::stream::iter)
        .chain(futures::stream::once(async {
            Event::default().event("end").data("")
        }))
        .map(Ok);
    Ok(Sse::new(messages).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn sse_events(message: &pb::WatchWorkflowResponse) -> Vec<Event> {
    let mut out: Vec<Event> = message
        .events
        .iter()
        .map(|e| {
            let json = serde_json::json!({
                "sequence": e.sequence,
                "time": view::time(e.occur_time.as_ref()),
                "kind": e.kind,
                "step": e.step_name,
                "detail": e.detail.as_ref().map(|d| serde_json::Value::Object(from_proto_struct(d))),
            });
            Event::default()
                .event("timeline")
                .id(e.sequence.to_string())
                .data(json.to_string())
        })
        .collect();
    if let Some(w) = &message.workflow {
        out.push(
            Event::default()
                .event("status")
                .data(workflow_status(w.status)),
        );
    }
    out
}
