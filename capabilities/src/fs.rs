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

use super::workspace::{UNDO_OWNER_FILE, io_error};
use super::{
    ErrorKind, Execution, ExecutionContext, Handler, HandlerError, Workspace, boolean, string,
};

/// Largest file `io.fs.read_file` returns.
pub const DEFAULT_MAX_READ: u64 = 10 * 1024 * 1024;

pub(super) fn register(handlers: &mut HashMap<String, Arc<dyn Handler>>) {
    handlers.insert("io.fs.read_file".into(), Arc::new(ReadFile));
    handlers.insert("io.fs.list_dir".into(), Arc::new(ListDir));
    handlers.insert("io.fs.exists".into(), Arc::new(Exists));
    handlers.insert("io.fs.hash_file".into(), Arc::new(HashFile));
    handlers.insert("io.fs.write_file".into(), Arc::new(WriteFile));
    handlers.insert("io.fs.make_dir".into(), Arc::new(MakeDir));
    handlers.insert("io.fs.move".into(), Arc::new(Move));
    handlers.insert("io.fs.copy".into(), Arc::new(Copy));
    handlers.insert("io.fs.delete".into(), Arc::new(Delete));
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

/// The undo slot of a step: its record (if captured already) and paths.
struct Slot {
    name: String,
    workflow_id: String,
}

impl Slot {
    fn of(ctx: &ExecutionContext) -> Self {
        Self {
            name: Workspace::undo_slot(&ctx.idempotency_key),
            workflow_id: ctx.workflow_id.clone(),
        }
    }

    fn file(&self, name: &str) -> String {
        format!("{}/{name}", self.name)
    }

    /// The record of an earlier attempt, if it got that far.
    fn record(&self, ws: &Workspace) -> Result<Option<Value>, HandlerError> {
        match ws.undo().read(self.file("record.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                HandlerError::new(
                    ErrorKind::ActionFailed,
                    format!("undo record unreadable: {e}"),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(e, Path::new(".airt/undo"))),
        }
    }

    /// Creates the slot, naming the workflow it belongs to (see
    /// [`Workspace::undo_slots`]).
    fn create(&self, ws: &Workspace) -> Result<(), HandlerError> {
        ws.undo()
            .create_dir_all(&self.name)
            .and_then(|()| {
                ws.undo()
                    .write(self.file(UNDO_OWNER_FILE), &self.workflow_id)
            })
            .map_err(|e| io_error(e, Path::new(".airt/undo")))
    }

    /// The undo record of an earlier attempt; on the first attempt, `check`
    /// runs (nothing is kept for an action refused there), then the slot is
    /// created, `keep` keeps what the undo will need and returns the record,
    /// and the record is committed — all before the action changes anything.
    fn record_once<P>(
        &self,
        ws: &Workspace,
        check: impl FnOnce() -> Result<P, HandlerError>,
        keep: impl FnOnce(P) -> Result<Value, HandlerError>,
    ) -> Result<Value, HandlerError> {
        if let Some(record) = self.record(ws)? {
            return Ok(record);
        }
        let checked = check()?;
        self.create(ws)?;
        let record = keep(checked)?;
        self.commit(ws, &record)?;
        Ok(record)
    }

    /// The record of a write to `rel` (`op`: write or copy), keeping the
    /// bytes it replaces.
    fn keep_target(
        &self,
        ws: &Workspace,
        op: &str,
        rel: &Path,
        existed: bool,
        created_dirs: &[PathBuf],
    ) -> Result<Value, HandlerError> {
        if existed {
            self.keep_previous(ws, rel)?;
        }
        Ok(json!({
            "op": op, "path": rel.display().to_string(), "slot": self.name,
            "existed": existed, "created_dirs": path_strings(created_dirs),
        }))
    }

    /// Keeps the current bytes of `path` as this slot's `previous`.
    fn keep_previous(&self, ws: &Workspace, path: &Path) -> Result<(), HandlerError> {
        let previous = ws.dir().read(path).map_err(|e| io_error(e, path))?;
        ws.undo()
            .write(self.file("previous"), previous)
            .map_err(|e| io_error(e, Path::new(".airt/undo")))
    }

    /// Writes the record atomically (temp file, then rename).
    fn commit(&self, ws: &Workspace, record: &Value) -> Result<(), HandlerError> {
        let tmp = self.file("record.json.tmp");
        ws.undo()
            .write(&tmp, record.to_string())
            .and_then(|()| ws.undo().rename(&tmp, ws.undo(), self.file("record.json")))
            .map_err(|e| io_error(e, Path::new(".airt/undo")))
    }
}

fn undo_str<'a>(undo: &'a Value, field: &str) -> Result<&'a str, HandlerError> {
    undo.get(field).and_then(Value::as_str).ok_or_else(|| {
        HandlerError::new(
            ErrorKind::CompensationFailed,
            format!("undo record lacks {field}"),
        )
    })
}

fn undo_dirs(undo: &Value) -> Vec<String> {
    undo.get("created_dirs")
        .and_then(Value::as_array)
        .map(|dirs| {
            dirs.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn compensation_io(error: io::Error, path: &Path) -> HandlerError {
    let mut e = io_error(error, path);
    e.kind = ErrorKind::CompensationFailed;
    e
}

// ---- reads -------------------------------------------------------------

#[derive(Debug)]
struct ReadFile;

#[async_trait::async_trait]
impl Handler for ReadFile {
    async fn execute(
        &self,
        ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let path = string(inputs, "path")?.to_owned();
        let encoding = inputs
            .get("encoding")
            .and_then(Value::as_str)
            .unwrap_or("utf8")
            .to_owned();
        let max = inputs
            .get("max_bytes")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_MAX_READ);
        blocking(ctx, move |ws| {
            let rel = ws.resolve(&path)?;
            let meta = ws.dir().metadata(&rel).map_err(|e| io_error(e, &rel))?;
            if !meta.is_file() {
                return Err(HandlerError::new(ErrorKind::ActionFailed, format!("{path} is not a file")));
            }
            if meta.len() > max {
                return Err(HandlerError::new(ErrorKind::ActionFailed, format!("{path} has {} bytes, more than max_bytes {max}", meta.len()))
                    .with_details(json!({"size": meta.len(), "max_bytes": max})));
            }
            let bytes = ws.dir().read(&rel).map_err(|e| io_error(e, &rel))?;
            let content = match encoding.as_str() {
                "base64" => base64::engine::general_purpose::STANDARD.encode(&bytes),
                "utf8" => String::from_utf8(bytes.clone()).map_err(|_| {
                    HandlerError::new(ErrorKind::ActionFailed, format!("{path} is not UTF-8 text; read it with encoding: base64"))
                })?,
                other => return Err(HandlerError::invalid_input(format!("unknown encoding {other:?}: utf8 or base64"))),
            };
            Ok(Execution::read(json!({"path": path, "content": content, "encoding": encoding, "size": bytes.len(), "sha256": sha256_hex(&bytes)})))
        })
        .await
    }
}

#[derive(Debug)]
struct ListDir;

#[async_trait::async_trait]
impl Handler for ListDir {
    async fn execute(
        &self,
        ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let path = inputs
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or(".")
            .to_owned();
        blocking(ctx, move |ws| {
            let rel = if path == "." || path.is_empty() {
                PathBuf::from(".")
            } else {
                ws.resolve(&path)?
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
        })
        .await
    }
}

#[derive(Debug)]
struct Exists;

#[async_trait::async_trait]
impl Handler for Exists {
    async fn execute(
        &self,
        ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let path = string(inputs, "path")?.to_owned();
        blocking(ctx, move |ws| {
            let rel = ws.resolve(&path)?;
            let meta = metadata(ws, &rel)?;
            Ok(Execution::read(
                json!({"path": path, "exists": meta.is_some(), "type": meta.as_ref().map(kind_of)}),
            ))
        })
        .await
    }
}

#[derive(Debug)]
struct HashFile;

#[async_trait::async_trait]
impl Handler for HashFile {
    async fn execute(
        &self,
        ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let path = string(inputs, "path")?.to_owned();
        blocking(ctx, move |ws| {
            let rel = ws.resolve(&path)?;
            let mut file = ws.dir().open(&rel).map_err(|e| io_error(e, &rel))?;
            let mut hasher = Sha256::new();
            let size = io::copy(&mut file, &mut hasher).map_err(|e| io_error(e, &rel))?;
            Ok(Execution::read(
                json!({"path": path, "sha256": hex::encode(hasher.finalize()), "size": size}),
            ))
        })
        .await
    }
}

// ---- writes ------------------------------------------------------------

fn decode_content(inputs: &Map<String, Value>) -> Result<Vec<u8>, HandlerError> {
    let content = string(inputs, "content")?;
    match inputs
        .get("encoding")
        .and_then(Value::as_str)
        .unwrap_or("utf8")
    {
        "utf8" => Ok(content.as_bytes().to_vec()),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(content)
            .map_err(|e| HandlerError::invalid_input(format!("content is not base64: {e}"))),
        other => Err(HandlerError::invalid_input(format!(
            "unknown encoding {other:?}: utf8 or base64"
        ))),
    }
}

#[derive(Debug)]
struct WriteFile;

#[async_trait::async_trait]
impl Handler for WriteFile {
    async fn execute(
        &self,
        ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let path = string(inputs, "path")?.to_owned();
        let bytes = decode_content(inputs)?;
        let create_dirs = boolean(inputs, "create_dirs");
        let slot = Slot::of(ctx);
        blocking(ctx, move |ws| {
            let rel = ws.resolve(&path)?;
            let check = || {
                let existing = metadata(ws, &rel)?;
                if existing.as_ref().is_some_and(|m| !m.is_file()) {
                    return Err(HandlerError::new(ErrorKind::ActionFailed, format!("{path} exists and is not a file")));
                }
                let created_dirs = if create_dirs { missing_ancestors(ws, &rel)? } else { Vec::new() };
                Ok((existing.is_some(), created_dirs))
            };
            let keep = |(existed, dirs): (bool, Vec<PathBuf>)| slot.keep_target(ws, "write", &rel, existed, &dirs);
            let record = slot.record_once(ws, check, keep)?;
            if create_dirs && let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                ws.dir().create_dir_all(parent).map_err(|e| io_error(e, parent))?;
            }
            ws.dir().write(&rel, &bytes).map_err(|e| io_error(e, &rel))?;
            let created = !record["existed"].as_bool().unwrap_or(true);
            Ok(Execution {
                outputs: json!({"path": path, "size": bytes.len(), "sha256": sha256_hex(&bytes), "created": created}),
                undo: Some(record),
            })
        })
        .await
    }

    async fn compensate(&self, ctx: &ExecutionContext, undo: &Value) -> Result<(), HandlerError> {
        let undo = undo.clone();
        blocking(ctx, move |ws| {
            let path = PathBuf::from(undo_str(&undo, "path")?);
            let slot = undo_str(&undo, "slot")?;
            if undo["existed"].as_bool().unwrap_or(false) {
                let previous = ws
                    .undo()
                    .read(format!("{slot}/previous"))
                    .map_err(|e| compensation_io(e, &path))?;
                ws.dir()
                    .write(&path, previous)
                    .map_err(|e| compensation_io(e, &path))?;
            } else {
                match ws.dir().remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(compensation_io(e, &path)),
                }
                remove_empty_dirs(ws, &undo_dirs(&undo))?;
            }
            Ok(())
        })
        .await
    }
}

#[derive(Debug)]
struct MakeDir;

#[async_trait::async_trait]
impl Handler for MakeDir {
    async fn execute(
        &self,
        ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let path = string(inputs, "path")?.to_owned();
        let slot = Slot::of(ctx);
        blocking(ctx, move |ws| {
            let rel = ws.resolve(&path)?;
            let record = match slot.record(ws)? {
                Some(record) => record,
                None => {
                    if let Some(meta) = metadata(ws, &rel)? {
                        if meta.is_dir() {
                            // Nothing to create and nothing to undo.
                            return Ok(Execution { outputs: json!({"path": path, "created": false}), undo: None });
                        }
                        return Err(HandlerError::new(ErrorKind::AlreadyExists, format!("{path} exists and is not a directory")));
                    }
                    let mut created = missing_ancestors(ws, &rel)?;
                    created.push(rel.clone());
                    slot.create(ws)?;
                    let record = json!({"op": "make_dir", "path": rel.display().to_string(), "slot": slot.name, "created_dirs": path_strings(&created)});
                    slot.commit(ws, &record)?;
                    record
                }
            };
            ws.dir().create_dir_all(&rel).map_err(|e| io_error(e, &rel))?;
            Ok(Execution { outputs: json!({"path": path, "created": true}), undo: Some(record) })
        })
        .await
    }

    async fn compensate(&self, ctx: &ExecutionContext, undo: &Value) -> Result<(), HandlerError> {
        let dirs = undo_dirs(undo);
        blocking(ctx, move |ws| remove_empty_dirs(ws, &dirs)).await
    }
}

/// The inputs of a move or a copy.
struct Transfer {
    from: String,
    to: String,
    overwrite: bool,
}

impl Transfer {
    /// Source and target inside the workspace.
    fn paths(&self, ws: &Workspace) -> Result<(PathBuf, PathBuf), HandlerError> {
        Ok((ws.resolve(&self.from)?, ws.resolve(&self.to)?))
    }

    fn of(inputs: &Map<String, Value>) -> Result<Self, HandlerError> {
        Ok(Self {
            from: string(inputs, "from")?.to_owned(),
            to: string(inputs, "to")?.to_owned(),
            overwrite: boolean(inputs, "overwrite"),
        })
    }
}

/// An existing target is replaced only when `overwrite` was asked for.
fn refuse_overwrite(exists: bool, overwrite: bool, to: &str) -> Result<(), HandlerError> {
    if exists && !overwrite {
        return Err(HandlerError::new(
            ErrorKind::AlreadyExists,
            format!("{to} exists; set overwrite: true to replace it"),
        ));
    }
    Ok(())
}

#[derive(Debug)]
struct Move;

#[async_trait::async_trait]
impl Handler for Move {
    async fn execute(
        &self,
        ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let transfer = Transfer::of(inputs)?;
        let slot = Slot::of(ctx);
        blocking(ctx, move |ws| {
            let (src, dst) = transfer.paths(ws)?;
            let Transfer { from, to, overwrite } = transfer;
            let outputs = json!({"from": from, "to": to});
            let check = || {
                if metadata(ws, &src)?.is_none() {
                    return Err(HandlerError::new(ErrorKind::NotFound, format!("{from} does not exist")));
                }
                let target_exists = metadata(ws, &dst)?.is_some();
                refuse_overwrite(target_exists, overwrite, &to)?;
                Ok(target_exists)
            };
            let keep = |target_exists: bool| {
                if target_exists {
                    ws.dir().rename(&dst, ws.undo(), slot.file("overwritten")).map_err(|e| io_error(e, &dst))?;
                }
                Ok(json!({"op": "move", "from": src.display().to_string(), "to": dst.display().to_string(), "slot": slot.name, "overwrote": target_exists}))
            };
            let record = slot.record_once(ws, check, keep)?;
            // A repeated attempt after the rename finds the source gone.
            if metadata(ws, &src)?.is_some() {
                ws.dir().rename(&src, ws.dir(), &dst).map_err(|e| io_error(e, &src))?;
            }
            Ok(Execution { outputs, undo: Some(record) })
        })
        .await
    }

    async fn compensate(&self, ctx: &ExecutionContext, undo: &Value) -> Result<(), HandlerError> {
        let undo = undo.clone();
        blocking(ctx, move |ws| {
            let (src, dst) = (
                PathBuf::from(undo_str(&undo, "from")?),
                PathBuf::from(undo_str(&undo, "to")?),
            );
            let slot = undo_str(&undo, "slot")?;
            if metadata(ws, &src)?.is_none() && metadata(ws, &dst)?.is_some() {
                ws.dir()
                    .rename(&dst, ws.dir(), &src)
                    .map_err(|e| compensation_io(e, &dst))?;
            }
            if undo["overwrote"].as_bool().unwrap_or(false) {
                let kept = format!("{slot}/overwritten");
                if ws.undo().symlink_metadata(&kept).is_ok() {
                    ws.undo()
                        .rename(&kept, ws.dir(), &dst)
                        .map_err(|e| compensation_io(e, &dst))?;
                }
            }
            Ok(())
        })
        .await
    }
}

#[derive(Debug)]
struct Copy;

#[async_trait::async_trait]
impl Handler for Copy {
    async fn execute(
        &self,
        ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let transfer = Transfer::of(inputs)?;
        let slot = Slot::of(ctx);
        blocking(ctx, move |ws| {
            let (src, dst) = transfer.paths(ws)?;
            let Transfer {
                from,
                to,
                overwrite,
            } = transfer;
            let source = ws.dir().metadata(&src).map_err(|e| io_error(e, &src))?;
            if !source.is_file() {
                return Err(HandlerError::new(
                    ErrorKind::ActionFailed,
                    format!("{from} is not a file"),
                ));
            }
            let check = || {
                let existed = metadata(ws, &dst)?.is_some();
                refuse_overwrite(existed, overwrite, &to)?;
                Ok(existed)
            };
            // Copying is writing the target: the same record and undo.
            let keep = |existed: bool| slot.keep_target(ws, "copy", &dst, existed, &[]);
            let record = slot.record_once(ws, check, keep)?;
            let size = ws
                .dir()
                .copy(&src, ws.dir(), &dst)
                .map_err(|e| io_error(e, &dst))?;
            Ok(Execution {
                outputs: json!({"from": from, "to": to, "size": size}),
                undo: Some(record),
            })
        })
        .await
    }

    async fn compensate(&self, ctx: &ExecutionContext, undo: &Value) -> Result<(), HandlerError> {
        // Undoing a copy is undoing a write of its target.
        WriteFile.compensate(ctx, undo).await
    }
}

#[derive(Debug)]
struct Delete;

#[async_trait::async_trait]
impl Handler for Delete {
    async fn execute(
        &self,
        ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let path = string(inputs, "path")?.to_owned();
        let recursive = boolean(inputs, "recursive");
        let slot = Slot::of(ctx);
        blocking(ctx, move |ws| {
            let rel = ws.resolve(&path)?;
            let check = || {
                let meta = metadata(ws, &rel)?
                    .ok_or_else(|| HandlerError::new(ErrorKind::NotFound, format!("{path} does not exist")))?;
                let kind = kind_of(&meta);
                if kind == "dir" && !recursive {
                    let empty = ws.dir().read_dir(&rel).map_err(|e| io_error(e, &rel))?.next().is_none();
                    if !empty {
                        return Err(HandlerError::new(ErrorKind::ActionFailed, format!("{path} is a non-empty directory; set recursive: true")));
                    }
                }
                Ok(kind)
            };
            let keep = |kind: &str| Ok(json!({"op": "delete", "path": rel.display().to_string(), "slot": slot.name, "type": kind}));
            let record = slot.record_once(ws, check, keep)?;
            // Deleting is moving into the trash, so the undo is a rename back.
            if metadata(ws, &rel)?.is_some() {
                ws.dir().rename(&rel, ws.undo(), slot.file("trash")).map_err(|e| io_error(e, &rel))?;
            }
            Ok(Execution { outputs: json!({"path": path, "type": record["type"]}), undo: Some(record) })
        })
        .await
    }

    async fn compensate(&self, ctx: &ExecutionContext, undo: &Value) -> Result<(), HandlerError> {
        let undo = undo.clone();
        blocking(ctx, move |ws| {
            let path = PathBuf::from(undo_str(&undo, "path")?);
            let trash = format!("{}/trash", undo_str(&undo, "slot")?);
            if ws.undo().symlink_metadata(&trash).is_err() {
                // Restored already (or never trashed).
                return Ok(());
            }
            if metadata(ws, &path)?.is_some() {
                return Err(HandlerError::new(
                    ErrorKind::CompensationFailed,
                    format!(
                        "cannot restore {}: something else now exists there",
                        path.display()
                    ),
                ));
            }
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                ws.dir()
                    .create_dir_all(parent)
                    .map_err(|e| compensation_io(e, parent))?;
            }
            ws.undo()
                .rename(&trash, ws.dir(), &path)
                .map_err(|e| compensation_io(e, &path))
        })
        .await
    }
}
