//! The `io.fs.*` actions that change the workspace, each with its undo.

use std::io;
use std::path::PathBuf;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::slot::{Slot, compensation_io, undo_dirs, undo_str};
use super::{
    blocking, kind_of, metadata, missing_ancestors, path_strings, remove_empty_dirs, sha256_hex,
};
use crate::workspace::io_error;
use crate::{
    ErrorKind, Execution, ExecutionContext, Handler, HandlerError, Workspace, boolean, string,
};

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
pub(super) struct WriteFile;

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
pub(super) struct MakeDir;

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
pub(super) struct Move;

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
pub(super) struct Copy;

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
pub(super) struct Delete;

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
