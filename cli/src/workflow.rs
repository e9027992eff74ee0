//! `airt run FILE [--watch]` and `airt workflow get|list|cancel`.

use std::path::PathBuf;
use std::process::ExitCode;

use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::client::{ConnectionArgs, Credentials, ServiceName, describe};

type Client = WorkflowServiceClient<InterceptedService<Channel, Credentials>>;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The workflow file (YAML or JSON; see examples/workflows/).
    file: PathBuf,
    /// Follow progress step by step until the workflow finishes or pauses.
    #[arg(long)]
    watch: bool,
    /// Idempotency key: submitting again with it returns the same workflow.
    #[arg(long, default_value = "")]
    request_id: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum WorkflowCommand {
    /// Show a workflow with its steps.
    Get { workflow_id: String },
    /// Follow a workflow's events until it finishes (through pauses for
    /// approval); exits non-zero unless it COMPLETED.
    Watch { workflow_id: String },
    /// List workflows, newest first.
    List {
        /// e.g. RUNNING, PAUSED, COMPLETED, ROLLED_BACK.
        #[arg(long)]
        status: Option<String>,
        /// Only workflows whose metadata.owner is this.
        #[arg(long, default_value = "")]
        owner: String,
    },
    /// Cancel a workflow; with --rollback, compensate its completed steps.
    Cancel {
        workflow_id: String,
        #[arg(long)]
        rollback: bool,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

fn name(prefix: &str, value: &str) -> String {
    value.strip_prefix(prefix).unwrap_or(value).to_owned()
}

fn workflow_status(value: i32) -> String {
    pb::WorkflowStatus::try_from(value)
        .map(|s| name("WORKFLOW_STATUS_", s.as_str_name()))
        .unwrap_or_default()
}

fn step_status(value: i32) -> String {
    pb::StepStatus::try_from(value)
        .map(|s| name("STEP_STATUS_", s.as_str_name()))
        .unwrap_or_default()
}

/// Whether a watch stops at `status`: a terminal one, or PAUSED when
/// `through_pauses` is false.
fn finished(status: i32, through_pauses: bool) -> bool {
    use pb::WorkflowStatus as S;
    match S::try_from(status) {
        Ok(S::Completed | S::Failed | S::RolledBack | S::CompensationFailed | S::Cancelled) => true,
        Ok(S::Paused) => !through_pauses,
        _ => false,
    }
}

pub fn print(workflow: &pb::Workflow) {
    let spec_name = workflow
        .spec
        .as_ref()
        .map(|s| s.name.as_str())
        .unwrap_or_default();
    out!(
        "{}  {spec_name}  {}",
        workflow.workflow_id,
        workflow_status(workflow.status)
    );
    if !workflow.failure_reason.is_empty() {
        out!("  reason: {}", workflow.failure_reason);
    }
    if !workflow.trace_id.is_empty() {
        out!("  trace: {}", workflow.trace_id);
    }
    for step in &workflow.steps {
        let decision = step
            .decision
            .as_ref()
            .filter(|d| !d.rule_id.is_empty())
            .map(|d| format!(" (rule {})", d.rule_id))
            .unwrap_or_default();
        let error = if step.error.is_empty() {
            String::new()
        } else {
            format!(": {}", step.error)
        };
        out!(
            "  {:<24} {:<20} attempt {}{decision}{error}",
            step.name,
            step_status(step.status),
            step.attempt
        );
    }
}

/// Follows a workflow until it finishes (or pauses, unless
/// `through_pauses`), printing each event.
pub async fn follow(
    client: &mut Client,
    workflow_id: &str,
    through_pauses: bool,
) -> anyhow::Result<pb::Workflow> {
    let mut stream = client
        .watch_workflow(pb::WatchWorkflowRequest {
            workflow_id: workflow_id.to_owned(),
            after_sequence: 0,
        })
        .await
        .map_err(|s| anyhow::anyhow!(describe(&s)))?
        .into_inner();
    let mut last = None;
    while let Some(update) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!(describe(&s)))?
    {
        for event in &update.events {
            let detail = event
                .detail
                .as_ref()
                .map(airt_kit::json::from_proto_struct)
                .unwrap_or_default();
            let status = detail
                .get("status")
                .and_then(|s| s.as_str())
                .unwrap_or_default();
            let step = if event.step_name.is_empty() {
                String::new()
            } else {
                format!(" {}", event.step_name)
            };
            out!("  #{:<3} {}{step} {status}", event.sequence, event.kind);
            if event.kind == "approval.requested" {
                print_approval_hint(&detail);
            }
        }
        let workflow = update.workflow.unwrap_or_default();
        let done = finished(workflow.status, through_pauses);
        last = Some(workflow);
        if done {
            break;
        }
    }
    last.ok_or_else(|| anyhow::anyhow!("the watch ended without news"))
}

/// What a paused workflow waits for, and how to decide it.
fn print_approval_hint(detail: &serde_json::Map<String, serde_json::Value>) {
    let id = detail
        .get("approval_id")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let roles: Vec<&str> = detail
        .get("approver_roles")
        .and_then(|v| v.as_array())
        .map(|roles| roles.iter().filter_map(|r| r.as_str()).collect())
        .unwrap_or_default();
    let who = if roles.is_empty() {
        "someone other than the submitter".to_owned()
    } else {
        format!(
            "someone other than the submitter with a role of [{}]",
            roles.join(", ")
        )
    };
    out!("       waiting for approval {id}: {who} decides with");
    out!(
        "         airt approvals approve {id} --comment \"...\"   (or: airt approvals reject {id})"
    );
}

fn exit_for(workflow: &pb::Workflow) -> ExitCode {
    match pb::WorkflowStatus::try_from(workflow.status) {
        Ok(
            pb::WorkflowStatus::Completed
            | pb::WorkflowStatus::Paused
            | pb::WorkflowStatus::Running
            | pb::WorkflowStatus::Pending,
        ) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

pub async fn run(args: &ConnectionArgs, run: RunArgs) -> anyhow::Result<ExitCode> {
    let mut client: Client = WorkflowServiceClient::new(args.authenticated(ServiceName::Workflow)?);
    let text = std::fs::read_to_string(&run.file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", run.file.display()))?;
    let submitted = match client
        .submit_workflow(pb::SubmitWorkflowRequest {
            source: Some(pb::submit_workflow_request::Source::SpecText(text)),
            request_id: run.request_id,
        })
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => {
            eprintln!("{}: {}", run.file.display(), describe(&status));
            return Ok(ExitCode::FAILURE);
        }
    };
    let workflow = submitted.workflow.unwrap_or_default();
    out!(
        "{} {}",
        if submitted.created {
            "submitted"
        } else {
            "already submitted"
        },
        workflow.workflow_id
    );
    if !run.watch {
        return Ok(ExitCode::SUCCESS);
    }
    let done = follow(&mut client, &workflow.workflow_id, false).await?;
    print(&done);
    Ok(exit_for(&done))
}

pub async fn command(args: &ConnectionArgs, command: WorkflowCommand) -> anyhow::Result<ExitCode> {
    let mut client: Client = WorkflowServiceClient::new(args.authenticated(ServiceName::Workflow)?);
    let fail = |status: tonic::Status| anyhow::anyhow!(describe(&status));
    match command {
        WorkflowCommand::Get { workflow_id } => {
            let workflow = client
                .get_workflow(pb::GetWorkflowRequest { workflow_id })
                .await
                .map_err(fail)?
                .into_inner()
                .workflow
                .unwrap_or_default();
            crate::output::one(args.output, &workflow, print)?;
        }
        WorkflowCommand::Watch { workflow_id } => {
            let done = follow(&mut client, &workflow_id, true).await?;
            print(&done);
            if done.status != pb::WorkflowStatus::Completed as i32 {
                return Ok(ExitCode::FAILURE);
            }
        }
        WorkflowCommand::List { status, owner } => {
            let status = match status {
                None => 0,
                Some(text) => pb::WorkflowStatus::from_str_name(&format!(
                    "WORKFLOW_STATUS_{}",
                    text.to_uppercase()
                ))
                .ok_or_else(|| anyhow::anyhow!("unknown status {text:?}"))?
                    as i32,
            };
            let mut listing = crate::output::Listing::new(args.output);
            let mut page_token = String::new();
            loop {
                let page = client
                    .list_workflows(pb::ListWorkflowsRequest {
                        page_size: 100,
                        page_token,
                        status,
                        name: String::new(),
                        owner: owner.clone(),
                    })
                    .await
                    .map_err(fail)?
                    .into_inner();
                for workflow in &page.workflows {
                    listing.push(workflow, |workflow| {
                        let spec_name = workflow
                            .spec
                            .as_ref()
                            .map(|s| s.name.as_str())
                            .unwrap_or_default();
                        out!(
                            "{}  {:<20} {spec_name}",
                            workflow.workflow_id,
                            workflow_status(workflow.status)
                        );
                    })?;
                }
                if page.next_page_token.is_empty() {
                    listing.finish()?;
                    break;
                }
                page_token = page.next_page_token;
            }
        }
        WorkflowCommand::Cancel {
            workflow_id,
            rollback,
            reason,
        } => {
            let workflow = client
                .cancel_workflow(pb::CancelWorkflowRequest {
                    workflow_id,
                    rollback,
                    reason,
                    request_id: String::new(),
                })
                .await
                .map_err(fail)?
                .into_inner()
                .workflow
                .unwrap_or_default();
            print(&workflow);
        }
    }
    Ok(ExitCode::SUCCESS)
}
