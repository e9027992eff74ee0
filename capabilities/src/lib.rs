//! The standard capabilities — the Body's hands — and the contract every
//! handler keeps.
//!
//! A handler executes with an [`ExecutionContext`] and JSON inputs, and
//! returns JSON outputs plus, for reversible actions, an *undo record*: the
//! durable data its [`Handler::compensate`] needs, so an undo works after a
//! restart with nothing but that record. Failures are typed
//! [`HandlerError`]s that say whether a retry can help; a handler never
//! reports success for an action that failed. Both `execute` and
//! `compensate` are idempotent under the same idempotency key.
//!
//! Every built-in has a CapabilitySpec v3 file in `specs/`, embedded in the
//! binary and published to the registry at start-up.

use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::Instant;

use serde::Deserialize;
use serde_json::{Map, Value};

pub mod data;
pub mod exec;
pub mod fs;
pub mod mcp;
pub mod mcp_import;
pub mod net;
pub mod outbound;
pub mod remote;
pub mod sandbox;
pub mod sys;
pub mod text;
pub mod workspace;

pub use workspace::Workspace;

/// Where and as what a step runs.
#[derive(Debug, Clone)]
pub struct ExecutionContext {
    pub workflow_id: String,
    pub step_name: String,
    /// Starting at 1.
    pub attempt: u32,
    /// `<workflow_id>/<step_name>`: the same on every attempt and after a
    /// restart, so a repeated execution finds its earlier undo data.
    pub idempotency_key: String,
    pub deadline: Instant,
    pub workspace: Arc<Workspace>,
    /// The step's W3C trace context (`traceparent`, `tracestate`), sent
    /// along with remote calls; empty when nothing is traced.
    pub trace_headers: Vec<(String, String)>,
}

impl ExecutionContext {
    pub fn new(
        workflow_id: &str,
        step_name: &str,
        attempt: u32,
        deadline: Instant,
        workspace: Arc<Workspace>,
    ) -> Self {
        Self {
            workflow_id: workflow_id.to_owned(),
            step_name: step_name.to_owned(),
            attempt,
            idempotency_key: format!("{workflow_id}/{step_name}"),
            deadline,
            workspace,
            trace_headers: Vec::new(),
        }
    }

    /// The same context, continuing the given trace in remote calls.
    #[must_use]
    pub fn with_trace_headers(mut self, headers: Vec<(String, String)>) -> Self {
        self.trace_headers = headers;
        self
    }
}

/// What went wrong, in categories a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Inputs do not fit the capability's parameters.
    InvalidInput,
    /// The target does not exist.
    NotFound,
    /// The target already exists and the action would clobber it.
    AlreadyExists,
    /// The action would leave the sandbox (path, network or program).
    SandboxViolation,
    /// The action ran and failed (non-zero exit, non-2xx status, ...).
    ActionFailed,
    /// The deadline passed.
    Timeout,
    /// A transient failure (I/O, connection) worth retrying.
    Transient,
    /// The handler could not undo its action.
    CompensationFailed,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "INVALID_INPUT",
            Self::NotFound => "NOT_FOUND",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::SandboxViolation => "SANDBOX_VIOLATION",
            Self::ActionFailed => "ACTION_FAILED",
            Self::Timeout => "TIMEOUT",
            Self::Transient => "TRANSIENT",
            Self::CompensationFailed => "COMPENSATION_FAILED",
        }
    }
}

/// A typed handler failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct HandlerError {
    pub kind: ErrorKind,
    pub message: String,
    /// Whether retrying the same call can succeed.
    pub retryable: bool,
    /// Structured facts (status code, exit status, stderr excerpt, ...).
    pub details: Value,
}

impl HandlerError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let retryable = matches!(kind, ErrorKind::Transient | ErrorKind::Timeout);
        Self {
            kind,
            message: message.into(),
            retryable,
            details: Value::Null,
        }
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    pub fn sandbox(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::SandboxViolation, message)
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }
}

/// A successful execution.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub outputs: Value,
    /// What `compensate` needs to undo the action; `None` for actions with
    /// nothing to undo (reads).
    pub undo: Option<Value>,
}

impl Execution {
    pub fn read(outputs: Value) -> Self {
        Self {
            outputs,
            undo: None,
        }
    }
}

/// A built-in capability.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + std::fmt::Debug {
    /// Runs the action. Inputs are already validated against the spec's
    /// parameters, with defaults filled in.
    async fn execute(
        &self,
        ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError>;

    /// Undoes the action from its undo record alone. Running it twice has
    /// the effect of running it once.
    async fn compensate(&self, ctx: &ExecutionContext, undo: &Value) -> Result<(), HandlerError> {
        let _ = (ctx, undo);
        Err(HandlerError::new(
            ErrorKind::CompensationFailed,
            "this capability has no undo",
        ))
    }
}

/// The part of a capability spec the handlers need: its id and parameters.
#[derive(Debug, Clone, Deserialize)]
pub struct BuiltinSpec {
    pub id: String,
    pub handler: String,
    /// `READ`, `WRITE`, `DELETE`, `EXECUTE` or `NETWORK`.
    pub operation_type: String,
    pub risk: BuiltinRisk,
    #[serde(default)]
    pub parameters: Vec<ParameterSpec>,
    /// The whole file, as published to the registry.
    #[serde(skip)]
    pub text: &'static str,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BuiltinRisk {
    /// `LOW`, `MEDIUM`, `HIGH` or `CRITICAL`.
    pub level: String,
}

/// Rank of a risk level name (unknown names rank lowest).
fn risk_rank(level: &str) -> u8 {
    match level {
        "LOW" => 1,
        "MEDIUM" => 2,
        "HIGH" => 3,
        "CRITICAL" => 4,
        _ => 0,
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ParameterSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub param_type: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default: Option<Value>,
}

fn type_matches(param_type: &str, value: &Value) -> bool {
    match param_type {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        _ => false,
    }
}

/// One thing wrong with a step's inputs, by parameter name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputProblem {
    pub parameter: String,
    pub problem: String,
}

/// Everything wrong with `inputs` against `parameters`: unknown names,
/// values of the wrong type, required parameters missing. Names in
/// `pending` are inputs whose values are not known yet (they need earlier
/// steps' outputs): they count as present and their type is not checked.
pub fn input_problems(
    parameters: &[ParameterSpec],
    inputs: &Map<String, Value>,
    pending: &[String],
) -> Vec<InputProblem> {
    let problem = |parameter: &str, problem: String| InputProblem {
        parameter: parameter.to_owned(),
        problem,
    };
    let mut problems = Vec::new();
    for name in inputs.keys().chain(pending) {
        if !parameters.iter().any(|p| &p.name == name) {
            problems.push(problem(name, format!("unknown parameter {name:?}")));
        }
    }
    for parameter in parameters {
        let name = &parameter.name;
        match inputs.get(name) {
            Some(value) if !type_matches(&parameter.param_type, value) => problems.push(problem(
                name,
                format!(
                    "parameter {name:?} must be of type {}",
                    parameter.param_type
                ),
            )),
            Some(_) => {}
            None if parameter.required
                && parameter.default.is_none()
                && !pending.contains(name) =>
            {
                problems.push(problem(
                    name,
                    format!("missing required parameter {name:?}"),
                ));
            }
            None => {}
        }
    }
    problems
}

/// Checks inputs against parameters ([`input_problems`]) and fills in
/// defaults. The error names every problem and is not retryable.
pub fn validate_inputs(
    parameters: &[ParameterSpec],
    inputs: &Map<String, Value>,
) -> Result<Map<String, Value>, HandlerError> {
    let problems = input_problems(parameters, inputs, &[]);
    if !problems.is_empty() {
        let text: Vec<String> = problems.into_iter().map(|p| p.problem).collect();
        return Err(HandlerError::invalid_input(text.join("; ")));
    }
    let mut resolved = inputs.clone();
    for parameter in parameters {
        if let (None, Some(default)) = (inputs.get(&parameter.name), &parameter.default) {
            resolved.insert(parameter.name.clone(), default.clone());
        }
    }
    Ok(resolved)
}

/// The spec files of every built-in, embedded in the binary.
const SPEC_FILES: &[&str] = &[
    include_str!("specs/io.fs.read_file.yaml"),
    include_str!("specs/io.fs.list_dir.yaml"),
    include_str!("specs/io.fs.exists.yaml"),
    include_str!("specs/io.fs.hash_file.yaml"),
    include_str!("specs/io.fs.write_file.yaml"),
    include_str!("specs/io.fs.make_dir.yaml"),
    include_str!("specs/io.fs.move.yaml"),
    include_str!("specs/io.fs.copy.yaml"),
    include_str!("specs/io.fs.delete.yaml"),
    include_str!("specs/data.json.query.yaml"),
    include_str!("specs/data.json.transform.yaml"),
    include_str!("specs/data.hash.sha256.yaml"),
    include_str!("specs/data.base64.encode.yaml"),
    include_str!("specs/data.base64.decode.yaml"),
    include_str!("specs/text.regex.match.yaml"),
    include_str!("specs/text.template.render.yaml"),
    include_str!("specs/sys.info.get_time.yaml"),
    include_str!("specs/sys.info.get_os.yaml"),
    include_str!("specs/sys.info.get_env_var.yaml"),
    include_str!("specs/net.http.get.yaml"),
    include_str!("specs/net.http.post.yaml"),
    include_str!("specs/net.http.put.yaml"),
    include_str!("specs/sys.exec.run.yaml"),
];

/// Configuration the handlers need beyond the workspace.
#[derive(Debug, Clone, Default)]
pub struct CatalogueConfig {
    /// Environment variables `sys.info.get_env_var` may read.
    pub env_allow_list: Vec<String>,
    /// Internal hosts and ranges `net.http.*` may reach.
    pub network: net::NetworkPolicy,
    /// Programs `sys.exec.run` may run, resolved to absolute paths.
    pub exec: exec::ExecPolicy,
    /// Local MCP servers `mcp:stdio:` handlers may start.
    pub mcp_stdio: mcp::StdioServers,
}

/// Every built-in capability: its spec and its handler.
#[derive(Debug, Clone)]
pub struct Catalogue {
    specs: Vec<BuiltinSpec>,
    handlers: HashMap<String, Arc<dyn Handler>>,
}

impl Catalogue {
    pub fn new(config: &CatalogueConfig) -> Self {
        let specs = SPEC_FILES
            .iter()
            .map(|text| {
                let mut spec: BuiltinSpec = serde_norway::from_str(text)
                    .unwrap_or_else(|e| panic!("embedded spec is malformed: {e}"));
                spec.text = text;
                spec
            })
            .collect();
        let mut handlers: HashMap<String, Arc<dyn Handler>> = HashMap::new();
        fs::register(&mut handlers);
        data::register(&mut handlers);
        text::register(&mut handlers);
        sys::register(&mut handlers, config);
        net::register(&mut handlers, Arc::new(config.network.clone()));
        exec::register(&mut handlers, Arc::new(config.exec.clone()));
        Self { specs, handlers }
    }

    pub fn specs(&self) -> &[BuiltinSpec] {
        &self.specs
    }

    pub fn spec(&self, capability_id: &str) -> Option<&BuiltinSpec> {
        self.specs.iter().find(|s| s.id == capability_id)
    }

    /// Whether a registry spec may run the built-in its handler names: a
    /// `builtin:` handler runs only under its own embedded spec's id and
    /// operation type, at that spec's risk or higher. Anything else is a
    /// relabelled built-in (program execution as a LOW-risk READ, or a new
    /// id pointing at one) and is refused.
    pub fn check_pinned(
        &self,
        id: &str,
        handler: &str,
        operation_type: &str,
        risk_level: &str,
    ) -> Result<(), HandlerError> {
        let refuse = |why: String| {
            Err(HandlerError::sandbox(format!(
                "capability {id} may not run {handler}: {why}"
            )))
        };
        let Some(embedded) = self.specs.iter().find(|s| s.handler == handler) else {
            return refuse("no such built-in".into());
        };
        if embedded.id != id {
            return refuse(format!("the built-in runs only as {}", embedded.id));
        }
        if embedded.operation_type != operation_type {
            return refuse(format!(
                "its operation type is {}, not {operation_type}",
                embedded.operation_type
            ));
        }
        if risk_rank(risk_level) < risk_rank(&embedded.risk.level) {
            return refuse(format!(
                "its risk is {}, not {risk_level}",
                embedded.risk.level
            ));
        }
        Ok(())
    }

    /// Puts the workspace-path inputs of a built-in (`path`, `from`, `to` of
    /// `io.fs.*`, `cwd` of `sys.exec.run`) in the form the sandbox resolves
    /// them to, before the policy judges them.
    pub fn normalise_paths(handler: &str, inputs: &mut Map<String, Value>) {
        let keys: &[&str] = if handler.starts_with("builtin:io.fs.") {
            &["path", "from", "to"]
        } else if handler == "builtin:sys.exec.run" {
            &["cwd"]
        } else {
            return;
        };
        for key in keys {
            if let Some(Value::String(path)) = inputs.get_mut(*key) {
                *path = Workspace::normalise(path);
            }
        }
    }

    /// [`Catalogue::check_pinned`] for a spec as the registry serves it.
    pub fn check_pinned_spec(
        &self,
        spec: &airt_proto::registry::v1::CapabilitySpec,
    ) -> Result<(), HandlerError> {
        use airt_proto::common::v1::{OperationType, RiskLevel};
        let operation = OperationType::try_from(spec.operation_type)
            .map(|o| o.as_str_name().trim_start_matches("OPERATION_TYPE_"))
            .unwrap_or("UNSPECIFIED");
        let risk = spec
            .risk
            .as_ref()
            .and_then(|r| RiskLevel::try_from(r.level).ok())
            .map(|r| r.as_str_name().trim_start_matches("RISK_LEVEL_"))
            .unwrap_or("UNSPECIFIED");
        self.check_pinned(&spec.id, &spec.handler, operation, risk)
    }

    /// The handler behind a `builtin:<name>` handler reference.
    pub fn handler(&self, builtin_name: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.get(builtin_name).cloned()
    }

    /// The spec and handler of a built-in capability.
    fn builtin(
        &self,
        capability_id: &str,
    ) -> Result<(&BuiltinSpec, Arc<dyn Handler>), HandlerError> {
        let spec = self.spec(capability_id).ok_or_else(|| {
            HandlerError::new(
                ErrorKind::NotFound,
                format!("no built-in capability {capability_id}"),
            )
        })?;
        let name = spec
            .handler
            .strip_prefix("builtin:")
            .unwrap_or(&spec.handler);
        let handler = self
            .handler(name)
            .ok_or_else(|| HandlerError::new(ErrorKind::NotFound, format!("no handler {name}")))?;
        Ok((spec, handler))
    }

    /// Validates inputs against the built-in's parameters and executes it.
    pub async fn execute(
        &self,
        capability_id: &str,
        ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let (spec, handler) = self.builtin(capability_id)?;
        let inputs = validate_inputs(&spec.parameters, inputs)?;
        handler.execute(ctx, &inputs).await
    }

    /// Undoes a built-in's action from its undo record.
    pub async fn compensate(
        &self,
        capability_id: &str,
        ctx: &ExecutionContext,
        undo: &Value,
    ) -> Result<(), HandlerError> {
        let (_, handler) = self.builtin(capability_id)?;
        handler.compensate(ctx, undo).await
    }
}

/// A string input (validation guaranteed its type).
pub(crate) fn string<'a>(
    inputs: &'a Map<String, Value>,
    name: &str,
) -> Result<&'a str, HandlerError> {
    inputs
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| HandlerError::invalid_input(format!("missing required parameter {name:?}")))
}

pub(crate) fn boolean(inputs: &Map<String, Value>, name: &str) -> bool {
    inputs.get(name).and_then(Value::as_bool).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params() -> Vec<ParameterSpec> {
        serde_norway::from_str(
            "- {name: path, type: string, required: true}\n- {name: count, type: integer, default: 3}\n- {name: force, type: boolean}\n",
        )
        .expect("params")
    }

    #[test]
    fn inputs_are_checked_and_defaults_filled() {
        let ok = validate_inputs(
            &params(),
            json!({"path": "a.txt"}).as_object().expect("object"),
        )
        .expect("valid");
        assert_eq!(ok["count"], 3);
        let error = validate_inputs(
            &params(),
            json!({"count": "x", "extra": 1})
                .as_object()
                .expect("object"),
        )
        .expect_err("invalid");
        assert_eq!(error.kind, ErrorKind::InvalidInput);
        assert!(!error.retryable);
        for expected in [
            "unknown parameter \"extra\"",
            "\"count\" must be of type integer",
            "missing required parameter \"path\"",
        ] {
            assert!(error.message.contains(expected), "{}", error.message);
        }
    }
}
