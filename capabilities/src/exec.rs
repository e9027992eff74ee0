//! `sys.exec.run`: run an allow-listed program, never a shell.
//!
//! Programs are named, not pathed; each allow-listed name is resolved to an
//! absolute path once, at start-up. Shells, interpreters and program
//! launchers can never be allow-listed. Arguments are passed to the program
//! as they are (no shell, so `;`, `&&`, `$(...)` are plain characters). The
//! environment is cleared, the working directory is inside the workspace,
//! the run is killed at its timeout, and output is capped.
//!
//! Arguments can still name files and options of the program, so the child
//! runs inside the operating-system sandbox of [`super::sandbox`]: only the
//! workspace is writable, nothing outside the system directories is
//! readable, and only allow-listed programs can be executed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use serde_json::{Map, Value, json};
use tokio::io::AsyncReadExt;

use super::sandbox::{self, Confinement, Limits, SandboxMode};
use super::{ErrorKind, Execution, ExecutionContext, Handler, HandlerError, boolean, string};

/// Programs allowed when nothing is configured: read-only text tools.
pub const DEFAULT_PROGRAMS: &[&str] = &[
    "echo",
    "ls",
    "cat",
    "wc",
    "head",
    "tail",
    "sort",
    "uniq",
    "sha256sum",
    "date",
    "true",
    "false",
];

/// Names that run other programs or code and are never allowed.
const FORBIDDEN: &[&str] = &[
    "sh",
    "bash",
    "dash",
    "zsh",
    "ksh",
    "csh",
    "tcsh",
    "fish",
    "busybox",
    "env",
    "sudo",
    "su",
    "doas",
    "xargs",
    "nohup",
    "timeout",
    "nice",
    "setsid",
    "strace",
    "gdb",
    "find",
    "awk",
    "gawk",
    "mawk",
    "sed",
    "perl",
    "ruby",
    "node",
    "nodejs",
    "deno",
    "bun",
    "php",
    "lua",
    "tclsh",
    "wish",
    "expect",
    "java",
    "osascript",
    "pwsh",
    "powershell",
    "ssh",
    "scp",
    "make",
    "docker",
    "kubectl",
];
/// Largest stdout and stderr kept, each (together within what a step may
/// store).
pub const MAX_OUTPUT: usize = 512 * 1024;

fn forbidden(name: &str) -> bool {
    FORBIDDEN.contains(&name)
        || name.starts_with("python")
        || name.starts_with("pip")
        || name.starts_with("perl")
}

/// The resolved allow-list.
#[derive(Debug, Clone, Default)]
pub struct ExecPolicy {
    programs: HashMap<String, PathBuf>,
    sandbox: SandboxMode,
    limits: Limits,
}

impl ExecPolicy {
    /// Resolves each name on `search_path` (a `PATH`-style list). Names with
    /// a `/`, interpreters and shells are refused; names not found are skipped
    /// with a warning.
    pub fn resolve(names: &[String], search_path: &str) -> Result<Self, String> {
        let mut programs = HashMap::new();
        for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            if name.contains('/') {
                return Err(format!(
                    "{name:?}: allow-list programs by name, not by path"
                ));
            }
            if forbidden(name) {
                return Err(format!(
                    "{name:?} runs other programs or code and cannot be allow-listed"
                ));
            }
            let found = search_path
                .split(':')
                .filter(|dir| Path::new(dir).is_absolute())
                .map(|dir| Path::new(dir).join(name))
                .find(|candidate| candidate.is_file());
            match found {
                Some(path) => {
                    programs.insert(name.to_owned(), path);
                }
                None => tracing::warn!(
                    program = name,
                    "allow-listed program not found; it will be refused"
                ),
            }
        }
        if programs.is_empty() {
            return Ok(Self::default());
        }
        Ok(Self {
            programs,
            ..Self::default()
        })
    }

    /// How programs are confined (default: the Landlock sandbox).
    pub fn with_sandbox(mut self, sandbox: SandboxMode) -> Self {
        if sandbox == SandboxMode::None && !self.programs.is_empty() {
            tracing::warn!(
                "--exec-sandbox none: sys.exec.run starts allow-listed programs WITHOUT an operating-system sandbox; their arguments can read and write any file this service can"
            );
        }
        self.sandbox = sandbox;
        self
    }

    pub fn sandbox(&self) -> SandboxMode {
        self.sandbox
    }

    pub fn program(&self, name: &str) -> Option<&Path> {
        self.programs.get(name).map(PathBuf::as_path)
    }
}

pub(super) fn register(handlers: &mut HashMap<String, Arc<dyn Handler>>, policy: Arc<ExecPolicy>) {
    handlers.insert("sys.exec.run".into(), Arc::new(ExecRun { policy }));
}

#[derive(Debug)]
struct ExecRun {
    policy: Arc<ExecPolicy>,
}

async fn read_capped(mut pipe: impl tokio::io::AsyncRead + Unpin) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    let mut truncated = false;
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return (kept, truncated),
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
}

#[async_trait::async_trait]
impl Handler for ExecRun {
    async fn execute(
        &self,
        ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let name = string(inputs, "program")?;
        if name.contains('/') || forbidden(name) {
            return Err(HandlerError::sandbox(format!(
                "{name:?} may not be run: name an allow-listed program"
            )));
        }
        let program = self
            .policy
            .program(name)
            .ok_or_else(|| {
                HandlerError::sandbox(format!("{name:?} is not in the program allow-list"))
            })?
            .to_path_buf();
        let args: Vec<String> = inputs
            .get("args")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|a| {
                        a.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| HandlerError::invalid_input("args must be strings"))
                    })
                    .collect()
            })
            .transpose()?
            .unwrap_or_default();
        let cwd = match inputs.get("cwd").and_then(Value::as_str) {
            None | Some("." | "") => ctx.workspace.root_path().to_path_buf(),
            Some(dir) => ctx.workspace.root_path().join(ctx.workspace.resolve(dir)?),
        };
        let requested = Duration::from_millis(
            inputs
                .get("timeout_ms")
                .and_then(Value::as_u64)
                .unwrap_or(10_000),
        );
        let timeout = requested.min(ctx.deadline.saturating_duration_since(Instant::now()));

        let mut command = tokio::process::Command::new(&program);
        command
            .args(&args)
            .current_dir(&cwd)
            .env_clear()
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        match self.policy.sandbox {
            SandboxMode::Landlock => {
                let programs: Vec<PathBuf> = self.policy.programs.values().cloned().collect();
                Confinement::prepare(
                    ctx.workspace.root_path(),
                    &programs,
                    self.policy.limits,
                    timeout,
                )
                .map_err(HandlerError::sandbox)?
                .apply_to(&mut command);
            }
            SandboxMode::None => {
                command.process_group(0);
            }
        }
        let mut child = command.spawn().map_err(|e| {
            HandlerError::new(ErrorKind::ActionFailed, format!("cannot start {name}: {e}"))
        })?;
        let leader = child.id();
        let stdout = tokio::spawn(read_capped(child.stdout.take().expect("piped stdout")));
        let stderr = tokio::spawn(read_capped(child.stderr.take().expect("piped stderr")));
        let status = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => status
                .map_err(|e| HandlerError::new(ErrorKind::ActionFailed, format!("{name}: {e}")))?,
            Err(_) => {
                if let Some(pid) = leader {
                    sandbox::kill_group(pid);
                }
                let _ = child.kill().await;
                return Err(HandlerError::new(
                    ErrorKind::Timeout,
                    format!("{name} did not finish within {timeout:?}; killed"),
                )
                .retryable(false)
                .with_details(json!({"timeout_ms": timeout.as_millis() as u64})));
            }
        };
        // Whatever the program left running in its group ends with it.
        if let Some(pid) = leader {
            sandbox::kill_group(pid);
        }
        let (out, out_truncated) = stdout.await.unwrap_or_default();
        let (err, err_truncated) = stderr.await.unwrap_or_default();
        let stdout_text = String::from_utf8_lossy(&out).into_owned();
        let stderr_text = String::from_utf8_lossy(&err).into_owned();
        let exit_code = status.code();
        if !status.success() && !boolean(inputs, "allow_nonzero_exit") {
            let excerpt: String = stderr_text.chars().take(512).collect();
            return Err(HandlerError::new(
                ErrorKind::ActionFailed,
                format!("{name} exited with {status}"),
            )
            .with_details(json!({"exit_code": exit_code, "stderr_excerpt": excerpt})));
        }
        Ok(Execution {
            outputs: json!({
                "exit_code": exit_code,
                "stdout": stdout_text,
                "stderr": stderr_text,
                "stdout_truncated": out_truncated,
                "stderr_truncated": err_truncated,
            }),
            undo: None,
        })
    }
}
