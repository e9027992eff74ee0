//! `io.fs.*`: files inside the workspace, with real undo.
//!
//! Before a reversible action changes anything, it writes its undo data into
//! the workspace's undo slot for the step's idempotency key (previous bytes,
//! the trash) and then an undo record; a repeated execution under the same
//! key finds the record and does not capture again, so the undo always
//! restores the state from before the *first* attempt.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

mod slot;
mod write;

use slot::Slot;
use write::{Copy, Delete, MakeDir, Move, WriteFile};

use super::workspace::io_error;
use super::{ErrorKind, Execution, ExecutionContext, Handler, HandlerError, Workspace, string};

/// Largest file `io.fs.read_file` returns.
pub const DEFAULT_MAX_READ: u64 = 10 * 1024 * 1024;

pub(super) fn register(handlers: &mut HashMap<String, Arc<dyn Handler>>) {
    handlers.insert("io.fs.read_file".into(), Arc::new(Fs(ReadFile)));
    handlers.insert("io.fs.list_dir".into(), Arc::new(Fs(ListDir)));
    handlers.insert("io.fs.exists".into(), Arc::new(Fs(Exists)));
    handlers.insert("io.fs.hash_file".into(), Arc::new(Fs(HashFile)));
    handlers.insert("io.fs.write_file".into(), Arc::new(Fs(WriteFile)));
    handlers.insert("io.fs.make_dir".into(), Arc::new(Fs(MakeDir)));
    handlers.insert("io.fs.move".into(), Arc::new(Fs(Move)));
    handlers.insert("io.fs.copy".into(), Arc::new(Fs(Copy)));
    handlers.insert("io.fs.delete".into(), Arc::new(Fs(Delete)));
}

/// The validated inputs of an action.
type Inputs = Map<String, Value>;
/// What an action did, or why not.
type Outcome = Result<Execution, HandlerError>;

/// A filesystem action: blocking work inside the workspace, given the step's
/// undo slot. [`Fs`] runs it off the async threads as a [`Handler`].
trait FsAction: std::fmt::Debug + Clone + Send + Sync + 'static {
    fn execute(&self, ws: &Workspace, slot: &Slot, inputs: &Inputs) -> Outcome;

    /// Undoes the action from its undo record alone; reads have no undo.
    fn compensate(&self, ws: &Workspace, undo: &Value) -> Result<(), HandlerError> {
        let _ = (ws, undo);
        Err(HandlerError::new(
            ErrorKind::CompensationFailed,
            "this capability has no undo",
        ))
    }
}

/// The [`Handler`] of a [`FsAction`].
#[derive(Debug)]
struct Fs<A>(A);

#[async_trait::async_trait]
impl<A: FsAction> Handler for Fs<A> {
    async fn execute(
        &self,
        ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let (action, slot, inputs) = (self.0.clone(), Slot::of(ctx), inputs.clone());
        blocking(ctx, move |ws| action.execute(ws, &slot, &inputs)).await
    }

    async fn compensate(&self, ctx: &ExecutionContext, undo: &Value) -> Result<(), HandlerError> {
        let (action, undo) = (self.0.clone(), undo.clone());
        blocking(ctx, move |ws| action.compensate(ws, &undo)).await
    }
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    ctx: &ExecutionContext,
    work: impl FnOnce(&Workspace) -> Result<T, HandlerError> + Send + 'static,
) -> Result<T, HandlerError> {
    let workspace = ctx.workspace.clone();
    tokio::task::spawn_blocking(move || work(&workspace))
        .await
        .map_err(|e| {
            HandlerError::new(ErrorKind::Transient, format!("filesystem task failed: {e}"))
        })?
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn kind_of(meta: &cap_std::fs::Metadata) -> &'static str {
    let file_type = meta.file_type();
    if file_type.is_symlink() {
        "symlink"
    } else if file_type.is_dir() {
        "dir"
    } else if file_type.is_file() {
        "file"
    } else {
        "other"
    }
}

fn metadata(ws: &Workspace, path: &Path) -> Result<Option<cap_std::fs::Metadata>, HandlerError> {
    match ws.dir().symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(e, path)),
    }
}

/// Missing ancestors of `path`, outermost first.
fn missing_ancestors(ws: &Workspace, path: &Path) -> Result<Vec<PathBuf>, HandlerError> {
    let mut missing = Vec::new();
    let mut current = path.parent();
    while let Some(dir) = current.filter(|d| !d.as_os_str().is_empty()) {
        if metadata(ws, dir)?.is_some() {
            break;
        }
        missing.push(dir.to_path_buf());
        current = dir.parent();
    }
    missing.reverse();
    Ok(missing)
}

fn path_strings(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|p| p.display().to_string()).collect()
}

/// Removes directories deepest first while they are empty.
fn remove_empty_dirs(ws: &Workspace, dirs: &[String]) -> Result<(), HandlerError> {
    for dir in dirs.iter().rev() {
        match ws.dir().remove_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(HandlerError::new(
                    ErrorKind::CompensationFailed,
                    format!("cannot remove directory {dir} created by this step: {e}"),
                ));
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct ReadFile;

impl FsAction for ReadFile {
    fn execute(&self, ws: &Workspace, _: &Slot, inputs: &Inputs) -> Outcome {
        let path = string(inputs, "path")?;
        let encoding = inputs
            .get("encoding")
            .and_then(Value::as_str)
            .unwrap_or("utf8");
        let max = inputs
            .get("max_bytes")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_MAX_READ);
        let rel = ws.resolve(path)?;
        let meta = ws.dir().metadata(&rel).map_err(|e| io_error(e, &rel))?;
        if !meta.is_file() {
            return Err(HandlerError::new(
                ErrorKind::ActionFailed,
                format!("{path} is not a file"),
            ));
        }
        if meta.len() > max {
            return Err(HandlerError::new(
                ErrorKind::ActionFailed,
                format!("{path} has {} bytes, more than max_bytes {max}", meta.len()),
            )
            .with_details(json!({"size": meta.len(), "max_bytes": max})));
        }
        let bytes = ws.dir().read(&rel).map_err(|e| io_error(e, &rel))?;
        let content = match encoding {
            "base64" => base64::engine::general_purpose::STANDARD.encode(&bytes),
            "utf8" => String::from_utf8(bytes.clone()).map_err(|_| {
                HandlerError::new(
                    ErrorKind::ActionFailed,
                    format!("{path} is not UTF-8 text; read it with encoding: base64"),
                )
            })?,
            other => {
                return Err(HandlerError::invalid_input(format!(
                    "unknown encoding {other:?}: utf8 or base64"
                )));
            }
        };
        Ok(Execution::read(json!({
            "path": path, "content": content, "encoding": encoding,
            "size": bytes.len(), "sha256": sha256_hex(&bytes),
        })))
    }
}

#[derive(Debug, Clone)]
struct ListDir;

impl FsAction for ListDir {
    fn execute(&self, ws: &Workspace, _: &Slot, inputs: &Inputs) -> Outcome {
        let path = inputs.get("path").and_then(Value::as_str).unwrap_or(".");
        let rel = if path == "." || path.is_empty() {
            PathBuf::from(".")
        } else {
            ws.resolve(path)?
        };
        let mut entries = Vec::new();
        for entry in ws.dir().read_dir(&rel).map_err(|e| io_error(e, &rel))? {
            let entry = entry.map_err(|e| io_error(e, &rel))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if rel == Path::new(".") && name == super::workspace::RESERVED_DIR {
                continue;
            }
            let meta = entry.metadata().map_err(|e| io_error(e, &rel))?;
            entries.push(json!({"name": name, "type": kind_of(&meta), "size": meta.len()}));
        }
        entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        Ok(Execution::read(json!({"path": path, "entries": entries})))
    }
}

#[derive(Debug, Clone)]
struct Exists;

impl FsAction for Exists {
    fn execute(&self, ws: &Workspace, _: &Slot, inputs: &Inputs) -> Outcome {
        let path = string(inputs, "path")?;
        let meta = metadata(ws, &ws.resolve(path)?)?;
        Ok(Execution::read(
            json!({"path": path, "exists": meta.is_some(), "type": meta.as_ref().map(kind_of)}),
        ))
    }
}

#[derive(Debug, Clone)]
struct HashFile;

impl FsAction for HashFile {
    fn execute(&self, ws: &Workspace, _: &Slot, inputs: &Inputs) -> Outcome {
        let path = string(inputs, "path")?;
        let rel = ws.resolve(path)?;
        let mut file = ws.dir().open(&rel).map_err(|e| io_error(e, &rel))?;
        let mut hasher = Sha256::new();
        let size = io::copy(&mut file, &mut hasher).map_err(|e| io_error(e, &rel))?;
        Ok(Execution::read(
            json!({"path": path, "sha256": hex::encode(hasher.finalize()), "size": size}),
        ))
    }
}
