//! `tools/call`: one governed action for the caller (`ExecuteAction`), and
//! `airt_action_status` (`GetAction`).
//!
//! A call waits up to `--approval-wait` for an action that needs an
//! approval, sending progress notifications (when the client asked for
//! progress) while it waits, then answers with where the action stands.
//! Anything but a success is a tool error (`isError`): the action has not
//! run (denied, waiting, rejected, expired) or failed, and an agent that
//! reads only the flag must not take it as done.

use std::time::Duration;

use airt_proto::workflow::v1 as pb;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ContentBlock, MetaObject, ProgressNotificationParam,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::Gateway;
use crate::caller::Caller;
use crate::error::GatewayError;
use crate::tools::{REQUEST_ID_META, STATUS_TOOL};

/// How often a waiting call asks again (and reports progress).
const POLL: Duration = Duration::from_secs(1);
/// The longest `wait_seconds` of `airt_action_status`.
const MAX_STATUS_WAIT: u64 = 60;

/// What an action answer says, from ExecuteAction or GetAction.
#[derive(Debug, Clone, Default)]
pub struct Action {
    pub status: pb::ActionStatus,
    pub workflow_id: String,
    pub outputs: Option<Value>,
    pub error: String,
    pub decision: Option<airt_proto::policy::v1::DecisionRecord>,
    pub approval: Option<pb::PendingApproval>,
}

/// Both answers carry the same fields (GetAction has no `created`).
macro_rules! action_from {
    ($response:ty) => {
        impl From<$response> for Action {
            fn from(r: $response) -> Self {
                Self {
                    status: pb::ActionStatus::try_from(r.status).unwrap_or_default(),
                    workflow_id: r.workflow_id,
                    outputs: r.outputs.as_ref().map(airt_kit::json::from_proto_value),
                    error: r.error,
                    decision: r.decision,
                    approval: r.approval,
                }
            }
        }
    };
}

action_from!(pb::ExecuteActionResponse);
action_from!(pb::GetActionResponse);

impl Action {
    fn waiting(&self) -> bool {
        matches!(
            self.status,
            pb::ActionStatus::AwaitingApproval | pb::ActionStatus::Running
        )
    }
}

/// The request id of a call: the client's (`_meta["io.airt/request_id"]`),
/// or a new one.
fn request_id(
    request: &CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<String, McpError> {
    // The SDK hands the request's `_meta` to the context; older paths
    // leave it on the parameters.
    let given = context.meta.0.0.get(REQUEST_ID_META).or_else(|| {
        request
            .meta
            .as_ref()
            .and_then(|meta| meta.0.0.get(REQUEST_ID_META))
    });
    match given {
        None => Ok(format!("mcp-{}", uuid::Uuid::now_v7())),
        Some(Value::String(id)) if !id.is_empty() && id.len() <= 256 => Ok(id.clone()),
        Some(_) => Err(McpError::invalid_params(
            format!("_meta[{REQUEST_ID_META:?}] must be a string of 1 to 256 bytes"),
            None,
        )),
    }
}

/// Runs `tools/call`.
pub async fn call(
    gateway: &Gateway,
    caller: &Caller,
    request: CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResult, McpError> {
    if request.name == STATUS_TOOL {
        return status(
            gateway,
            caller,
            request.arguments.unwrap_or_default(),
            context,
        )
        .await;
    }
    let request_id = request_id(&request, context)?;
    let inputs = request.arguments.clone().unwrap_or_default();
    let mut execute = tonic::Request::new(pb::ExecuteActionRequest {
        capability_id: request.name.to_string(),
        inputs: Some(airt_kit::json::to_proto_struct(&inputs)),
        request_id: request_id.clone(),
        agent: caller.agent.clone(),
        wait: prost_types::Duration::try_from(gateway.approval_wait.min(Duration::from_secs(10)))
            .ok(),
    });
    caller.credentials.apply(&mut execute);
    let answer = match gateway.workflow.clone().execute_action(execute).await {
        Ok(answer) => Action::from(answer.into_inner()),
        Err(status) => return refused(&request.name, status),
    };
    let deadline = Instant::now() + gateway.approval_wait;
    let action = wait(gateway, caller, answer, deadline, context).await;
    Ok(result(&action, Some(&request_id)))
}

/// `airt_action_status {action_id, wait_seconds}`.
async fn status(
    gateway: &Gateway,
    caller: &Caller,
    arguments: Map<String, Value>,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResult, McpError> {
    let Some(Value::String(action_id)) = arguments.get("action_id") else {
        return Err(McpError::invalid_params(
            "action_id (a string) is required",
            None,
        ));
    };
    let wait = match arguments.get("wait_seconds") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .filter(|s| *s <= MAX_STATUS_WAIT)
            .ok_or_else(|| McpError::invalid_params("wait_seconds must be 0 to 60", None))?,
    };
    let action = match get(gateway, caller, action_id, Duration::ZERO).await {
        Ok(action) => action,
        Err(GatewayError::Service(status)) => return refused(STATUS_TOOL, status),
        Err(error) => return Err(error.into()),
    };
    let deadline = Instant::now() + Duration::from_secs(wait);
    let action = self::wait(gateway, caller, action, deadline, context).await;
    let mut answer = result(&action, None);
    // The status query itself succeeded, whatever the action's state; its
    // structured content is always the status (with the outputs once done).
    answer.is_error = Some(false);
    answer.structured_content = Some(details(&action, None));
    Ok(answer)
}

async fn get(
    gateway: &Gateway,
    caller: &Caller,
    workflow_id: &str,
    wait: Duration,
) -> Result<Action, GatewayError> {
    let mut request = tonic::Request::new(pb::GetActionRequest {
        workflow_id: workflow_id.to_owned(),
        wait: prost_types::Duration::try_from(wait).ok(),
    });
    caller.credentials.apply(&mut request);
    let answer = gateway.workflow.clone().get_action(request).await?;
    Ok(Action::from(answer.into_inner()))
}

/// Waits, until `deadline`, for an action that is running or awaiting an
/// approval, reporting progress; answers with where it then stands.
async fn wait(
    gateway: &Gateway,
    caller: &Caller,
    mut action: Action,
    deadline: Instant,
    context: &RequestContext<RoleServer>,
) -> Action {
    let token = context.meta.get_progress_token();
    let started = Instant::now();
    let total = deadline.saturating_duration_since(started).as_secs_f64();
    while action.waiting() && Instant::now() < deadline && !context.ct.is_cancelled() {
        if let Some(token) = &token {
            let message = match &action.approval {
                Some(a) => format!("awaiting approval {}", a.approval_id),
                None => "running".to_owned(),
            };
            let progress =
                ProgressNotificationParam::new(token.clone(), started.elapsed().as_secs_f64())
                    .with_total(total)
                    .with_message(message);
            let _ = context.peer.notify_progress(progress).await;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        // A paused action answers at once: poll it; a running one is
        // waited for by the service.
        let wait = if action.status == pb::ActionStatus::Running {
            left.min(Duration::from_secs(10))
        } else {
            tokio::time::sleep(left.min(POLL)).await;
            Duration::ZERO
        };
        match get(gateway, caller, &action.workflow_id, wait).await {
            Ok(next) => action = next,
            Err(error) => {
                tracing::warn!(workflow_id = %action.workflow_id, error = %error, "cannot follow the action");
                break;
            }
        }
    }
    action
}

/// A call the services refused (bad inputs, unknown capability, access,
/// unavailable): an unknown tool is a protocol error, everything else a
/// tool error the model can read.
fn refused(tool: &str, status: tonic::Status) -> Result<CallToolResult, McpError> {
    // The one step's capability is what the workflow service refused: the
    // tool is not one the registry offers (unknown, or FROZEN).
    let unknown_tool = status.code() == tonic::Code::InvalidArgument
        && airt_kit::status::violations_of(&status)
            .iter()
            .any(|v| v.field.ends_with("steps[0].capability"));
    if unknown_tool && tool != STATUS_TOOL {
        return Err(McpError::invalid_params(
            format!("unknown tool {tool}: {}", status.message()),
            None,
        ));
    }
    let code = format!("{:?}", status.code());
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!(
        "{tool} was not run: {} ({code})",
        status.message()
    ))]);
    result.structured_content =
        Some(json!({"status": "REFUSED", "code": code, "error": status.message()}));
    Ok(result)
}

fn status_name(status: pb::ActionStatus) -> String {
    let name = status.as_str_name();
    name.strip_prefix("ACTION_STATUS_")
        .unwrap_or(name)
        .to_owned()
}

/// Where an action stands, as JSON: status, ids, decision, outputs or
/// error, pending approval.
pub fn details(action: &Action, request_id: Option<&str>) -> Value {
    let decision = action.decision.as_ref();
    let mut details = json!({
        "status": status_name(action.status),
        "action_id": action.workflow_id,
    });
    if let Some(id) = request_id {
        details["request_id"] = json!(id);
    }
    if let Some(d) = decision {
        details["rule"] = json!(d.rule_id);
        details["reason"] = json!(d.reason);
        details["policy_revision"] = json!(d.policy_revision);
    }
    if let Some(outputs) = &action.outputs {
        details["outputs"] = outputs.clone();
    }
    if !action.error.is_empty() {
        details["error"] = json!(action.error);
    }
    if let Some(approval) = &action.approval {
        details["approval_id"] = json!(approval.approval_id);
        details["approver_roles"] = json!(approval.approver_roles);
        if let Some(t) = &approval.expire_time {
            details["expire_time"] = json!(t.to_string());
        }
    }
    details
}

/// The tool result of an action.
pub fn result(action: &Action, request_id: Option<&str>) -> CallToolResult {
    let status = status_name(action.status);
    let details = details(action, request_id);
    let decision = action.decision.as_ref();
    let rule = decision.map(|d| d.rule_id.as_str()).unwrap_or_default();
    let reason = decision.map(|d| d.reason.as_str()).unwrap_or_default();
    let text = match action.status {
        pb::ActionStatus::Succeeded => {
            let outputs = action.outputs.clone().unwrap_or(Value::Null);
            let mut ok = CallToolResult::success(vec![ContentBlock::text(outputs.to_string())]);
            // Structured content is the outputs themselves (what the
            // output schema describes) when they are an object.
            ok.structured_content = Some(match outputs {
                Value::Object(_) => outputs,
                other => json!({"result": other}),
            });
            ok.meta = Some(MetaObject(meta(&details)));
            return ok;
        }
        pb::ActionStatus::Denied => format!(
            "Denied by policy rule `{rule}`: {reason}. Nothing ran (action {}).",
            action.workflow_id
        ),
        pb::ActionStatus::AwaitingApproval => {
            let approval = action.approval.clone().unwrap_or_default();
            format!(
                "Not run yet: awaiting approval {} ({}; approver roles: {}). Once it is decided, \
                 call {STATUS_TOOL} with {{\"action_id\": \"{}\"}} for the result.",
                approval.approval_id,
                approval.message,
                approval.approver_roles.join(", "),
                action.workflow_id
            )
        }
        pb::ActionStatus::Running => format!(
            "Still running; call {STATUS_TOOL} with {{\"action_id\": \"{}\"}} for the result.",
            action.workflow_id
        ),
        _ => format!(
            "{} (action {}): {}",
            status.to_lowercase(),
            action.workflow_id,
            action.error
        ),
    };
    let mut failed = CallToolResult::error(vec![ContentBlock::text(text)]);
    failed.structured_content = Some(details.clone());
    failed.meta = Some(MetaObject(meta(&details)));
    failed
}

fn meta(details: &Value) -> Map<String, Value> {
    let mut meta = Map::new();
    for key in ["action_id", "request_id", "status"] {
        if let Some(v) = details.get(key) {
            meta.insert(format!("io.airt/{key}"), v.clone());
        }
    }
    meta
}
