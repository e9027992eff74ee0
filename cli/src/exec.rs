//! `airt exec CAPABILITY --input k=v …`: one capability as a governed action.

use std::process::ExitCode;
use std::time::Duration;

use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;

use crate::client::{ConnectionArgs, ServiceName, describe};

#[derive(Debug, Clone, clap::Args)]
pub struct ExecArgs {
    /// The capability to run, e.g. io.fs.write_file.
    capability: String,
    /// An input as `name=value`; the value is read as YAML (`size=3` is a
    /// number, `ok=true` a boolean, `path=a.txt` a string, `data={"a": 1}`
    /// an object; `name=` the empty string). Repeatable.
    #[arg(long = "input", short = 'i', value_parser = parse_input)]
    inputs: Vec<(String, serde_json::Value)>,
    /// Idempotency key: the same key and action answer with the same action.
    #[arg(long, default_value = "")]
    request_id: String,
    /// The agent acting for you (what policy rules match as `agent`).
    #[arg(long, default_value = "")]
    agent: String,
    /// How long to wait for the outcome (at most 60s).
    #[arg(long, default_value = "10s", value_parser = airt_kit::config::parse_duration)]
    wait: Duration,
}

fn parse_input(text: &str) -> Result<(String, serde_json::Value), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected name=value"))?;
    // An empty value is an empty string (YAML would read it as null).
    let value = match value {
        "" => serde_json::Value::String(String::new()),
        text => airt_kit::limits::parse_yaml::<serde_json::Value>(text)
            .unwrap_or_else(|_| serde_json::Value::String(text.to_owned())),
    };
    Ok((name.trim().to_owned(), value))
}

pub async fn run(args: &ConnectionArgs, exec: ExecArgs) -> anyhow::Result<ExitCode> {
    let mut client = WorkflowServiceClient::new(args.authenticated(ServiceName::Workflow)?);
    let inputs: serde_json::Map<String, serde_json::Value> = exec.inputs.into_iter().collect();
    let answer = client
        .execute_action(pb::ExecuteActionRequest {
            capability_id: exec.capability,
            inputs: Some(airt_kit::json::to_proto_struct(&inputs)),
            request_id: exec.request_id,
            agent: exec.agent,
            wait: Some(prost_types::Duration {
                seconds: i64::try_from(exec.wait.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(exec.wait.subsec_nanos()).unwrap_or(0),
            }),
        })
        .await
        .map_err(|status| anyhow::anyhow!(describe(&status)))?
        .into_inner();
    crate::output::one(args.output, &answer, print)?;
    use pb::ActionStatus as A;
    Ok(match pb::ActionStatus::try_from(answer.status) {
        Ok(A::Succeeded | A::AwaitingApproval | A::Running) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

fn print(answer: &pb::ExecuteActionResponse) {
    let status = pb::ActionStatus::try_from(answer.status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("ACTION_STATUS_")
                .to_owned()
        })
        .unwrap_or_else(|_| answer.status.to_string());
    let rule = answer
        .decision
        .as_ref()
        .filter(|d| !d.rule_id.is_empty())
        .map(|d| format!(" (rule {})", d.rule_id))
        .unwrap_or_default();
    out!("{status}{rule}  workflow {}", answer.workflow_id);
    if !answer.error.is_empty() {
        out!("  {}", answer.error);
    }
    if let Some(outputs) = &answer.outputs {
        let outputs = airt_kit::json::from_proto_value(outputs);
        out!(
            "{}",
            serde_json::to_string_pretty(&outputs).unwrap_or_default()
        );
    }
    if let Some(approval) = &answer.approval {
        out!(
            "  waiting for approval {} ({}): decide with\n    airt approvals approve {} --comment \"...\"\n  then run the same command with --request-id to get the result",
            approval.approval_id,
            approval.message,
            approval.approval_id
        );
    }
}
