//! Imported MCP tools (`mcp:<url>#<tool>` handlers): a tool of an MCP
//! server, called over Streamable HTTP with the official SDK's client — or
//! (`mcp:stdio:<name>#<tool>`) of a local server the operator declared by
//! name and command (`--mcp-stdio-server name=command args...`): a
//! registrar can only name a declared server, never choose a program.
//!
//! The server's URL passes the same network guard as `net.http.*` and
//! `http:` handlers (internal addresses only when allow-listed, checked
//! after resolution and on every redirect), through the same guarded HTTP
//! client. Each execution opens its own MCP session, calls the one tool
//! with the step's inputs, and closes the session. The call carries the
//! step's `Idempotency-Key` and trace headers. Responses are bounded by the
//! SDK's limits (JSON and SSE event sizes).
//!
//! A tool result is the step's outputs: its `structuredContent` when it has
//! one, else `{"text": ...}` joining its text content. A result marked
//! `isError` is a failed step (not retried: the tool ran and said no).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, Tool};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::net::{NetworkPolicy, client};
use crate::{ErrorKind, Execution, ExecutionContext, HandlerError};

/// Largest structured result or text kept from a tool (bytes of JSON).
const MAX_RESULT: usize = 4 * 1024 * 1024;

/// A parsed `mcp:` handler target: a server (an http(s) URL, or
/// `stdio:<name>` of a declared local server) and a tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpTarget {
    pub url: String,
    pub tool: String,
}

/// Whether `name` may name a local server: `[a-z0-9_-]{1,64}`.
pub fn valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
}

impl McpTarget {
    /// Parses `<http(s) URL>#<tool>` or `stdio:<name>#<tool>` (the handler
    /// without its `mcp:`).
    pub fn parse(target: &str) -> Result<Self, String> {
        let (url, tool) = target
            .rsplit_once('#')
            .ok_or_else(|| format!("{target:?}: expected <http(s) URL>#<tool name>"))?;
        let local = url.strip_prefix("stdio:").map(valid_server_name);
        if local == Some(false) {
            return Err(format!(
                "{url:?}: a local server name is [a-z0-9_-]{{1,64}}"
            ));
        }
        if local.is_none() && !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "{url:?}: the MCP server URL must be http(s) or stdio:<name>"
            ));
        }
        let valid_tool = !tool.is_empty()
            && tool.len() <= 128
            && tool
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
        if !valid_tool {
            return Err(format!(
                "{tool:?}: a tool name is 1-128 of A-Z a-z 0-9 _ - . /"
            ));
        }
        Ok(Self {
            url: url.to_owned(),
            tool: tool.to_owned(),
        })
    }
}

/// The local MCP servers the operator declared: name → program and
/// arguments (no shell). Each call starts the program with an empty
/// environment but `PATH`, `HOME` and `LANG`, its standard error discarded.
#[derive(Debug, Clone, Default)]
pub struct StdioServers(BTreeMap<String, Vec<String>>);

impl StdioServers {
    /// Parses `name=program args...` entries.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut servers = BTreeMap::new();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let (name, command) = entry
                .split_once('=')
                .ok_or_else(|| format!("{entry:?}: expected name=program args..."))?;
            if !valid_server_name(name) {
                return Err(format!(
                    "{name:?}: a local server name is [a-z0-9_-]{{1,64}}"
                ));
            }
            let words: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
            if words.is_empty() {
                return Err(format!("{name}: no program given"));
            }
            if servers.insert(name.to_owned(), words).is_some() {
                return Err(format!("{name}: declared twice"));
            }
        }
        Ok(Self(servers))
    }

    fn command(&self, name: &str) -> Option<tokio::process::Command> {
        let words = self.0.get(name)?;
        let mut command = tokio::process::Command::new(&words[0]);
        command.args(&words[1..]).env_clear();
        for key in ["PATH", "HOME", "LANG"] {
            if let Ok(value) = std::env::var(key) {
                command.env(key, value);
            }
        }
        Some(command)
    }
}

/// The MCP client of `mcp:` handlers.
#[derive(Debug, Clone)]
pub struct McpCaller {
    client: reqwest::Client,
    policy: Arc<NetworkPolicy>,
    stdio: Arc<StdioServers>,
}

fn transport_error(url: &str, error: impl std::fmt::Display) -> HandlerError {
    let text = format!("MCP server {url}: {error}");
    if text.contains(crate::net::REFUSED) {
        HandlerError::sandbox(text)
    } else {
        HandlerError::new(ErrorKind::Transient, text)
    }
}

impl McpCaller {
    pub fn new(policy: Arc<NetworkPolicy>, stdio: Arc<StdioServers>) -> Self {
        Self {
            client: client(policy.clone()),
            policy,
            stdio,
        }
    }

    /// Opens a session with the server at `url` (checked by the guard), or
    /// starts the declared local server `stdio:<name>`.
    async fn connect(
        &self,
        url: &str,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<RunningService<RoleClient, ()>, HandlerError> {
        if let Some(name) = url.strip_prefix("stdio:") {
            let command = self.stdio.command(name).ok_or_else(|| {
                HandlerError::new(
                    ErrorKind::NotFound,
                    format!("no local MCP server {name:?} is declared (--mcp-stdio-server)"),
                )
            })?;
            let (process, _) = TokioChildProcess::builder(command)
                .stderr(std::process::Stdio::null())
                .spawn()
                .map_err(|e| transport_error(url, e))?;
            return ().serve(process).await.map_err(|e| transport_error(url, e));
        }
        let parsed: reqwest::Url = url
            .parse()
            .map_err(|e| HandlerError::invalid_input(format!("MCP server URL: {e}")))?;
        self.policy
            .check_url(&parsed)
            .map_err(HandlerError::sandbox)?;
        let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
        config.custom_headers = headers;
        let transport = StreamableHttpClientTransport::with_client(self.client.clone(), config);
        ().serve(transport)
            .await
            .map_err(|e| transport_error(url, e))
    }

    /// The tools an MCP server lists (for `airt registry import-mcp`).
    pub async fn list_tools(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<Vec<Tool>, HandlerError> {
        tokio::time::timeout(timeout, async {
            let session = self.connect(url, HashMap::new()).await?;
            let tools = session
                .list_all_tools()
                .await
                .map_err(|e| transport_error(url, e));
            let _ = session.cancel().await;
            tools
        })
        .await
        .map_err(|_| {
            HandlerError::new(
                ErrorKind::Timeout,
                format!("MCP server {url}: no answer within {timeout:?}"),
            )
        })?
    }

    /// Calls the tool `target` names with the step's inputs.
    pub async fn call(
        &self,
        target: &str,
        ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let target = McpTarget::parse(target).map_err(HandlerError::invalid_input)?;
        let mut headers = HashMap::new();
        let pairs = std::iter::once(("idempotency-key", ctx.idempotency_key.as_str())).chain(
            ctx.trace_headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        for (name, value) in pairs {
            if let (Ok(name), Ok(value)) =
                (HeaderName::try_from(name), HeaderValue::try_from(value))
            {
                headers.insert(name, value);
            }
        }
        let timeout = ctx.deadline.saturating_duration_since(Instant::now());
        if timeout.is_zero() {
            return Err(HandlerError::new(
                ErrorKind::Timeout,
                "the step deadline has passed",
            ));
        }
        let url = target.url.clone();
        let called = tokio::time::timeout(timeout, async {
            let session = self.connect(&url, headers).await?;
            let request =
                CallToolRequestParams::new(target.tool.clone()).with_arguments(inputs.clone());
            // Once sent, the tool may have run: a failure now is not retried.
            let result = session.call_tool(request).await.map_err(|e| {
                HandlerError::new(ErrorKind::Transient, format!("MCP server {url}: {e}"))
                    .retryable(false)
            });
            let _ = session.cancel().await;
            result
        })
        .await
        .map_err(|_| {
            HandlerError::new(
                ErrorKind::Timeout,
                format!(
                    "MCP tool {} at {url}: no answer within the step deadline",
                    target.tool
                ),
            )
        })??;
        outcome(&target, called)
    }
}

fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|block| match block {
            ContentBlock::Text(text) => Some(text.text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A tool result as the step's outcome.
fn outcome(target: &McpTarget, result: CallToolResult) -> Result<Execution, HandlerError> {
    let text = text_of(&result);
    if result.is_error == Some(true) {
        let excerpt: String = text.chars().take(1024).collect();
        return Err(HandlerError::new(
            ErrorKind::ActionFailed,
            format!("MCP tool {} answered an error: {excerpt}", target.tool),
        )
        .with_details(json!({"tool": target.tool, "url": target.url})));
    }
    let outputs = match result.structured_content {
        Some(Value::Object(map)) => Value::Object(map),
        Some(other) => json!({"result": other}),
        None => json!({"text": text}),
    };
    if outputs.to_string().len() > MAX_RESULT {
        return Err(HandlerError::new(
            ErrorKind::ActionFailed,
            format!(
                "MCP tool {} answered more than {MAX_RESULT} bytes",
                target.tool
            ),
        ));
    }
    Ok(Execution {
        outputs,
        undo: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_an_http_server_and_a_tool() {
        assert_eq!(
            McpTarget::parse("http://127.0.0.1:8000/mcp#add_note").unwrap(),
            McpTarget {
                url: "http://127.0.0.1:8000/mcp".into(),
                tool: "add_note".into()
            }
        );
        assert_eq!(
            McpTarget::parse("stdio:notes#add").unwrap().url,
            "stdio:notes"
        );
        for bad in [
            "http://h/mcp",
            "stdio:/bin/sh#x",
            "stdio:#x",
            "ftp://h/mcp#x",
            "file:///etc/passwd#x",
            "http://h/mcp#",
            "http://h/mcp#a b",
            "http://h/mcp#x;rm",
        ] {
            assert!(McpTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn local_servers_are_declared_by_name_and_command() {
        let servers = StdioServers::parse(&["notes=python3 notes.py --stdio".into()]).unwrap();
        assert!(servers.command("notes").is_some() && servers.command("other").is_none());
        for bad in ["notes", "Notes=x", "n=", "../x=y"] {
            assert!(StdioServers::parse(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(StdioServers::parse(&["a=x".into(), "a=y".into()]).is_err());
    }
}
