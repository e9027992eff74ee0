//! The `io.fs.*` actions that change the workspace, each with its undo.

use std::io;
use std::path::PathBuf;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::slot::{Slot, compensation_io, undo_dirs, undo_str};
use super::{
    FsAction, Inputs, Outcome, kind_of, metadata, missing_ancestors, path_strings,
    remove_empty_dirs, sha256_hex,
};
use crate::workspace::io_error;
use crate::{ErrorKind, Execution, HandlerError, Workspace, boolean, string};

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

#[derive(Debug, Clone)]
pub(super) struct WriteFile;

impl FsAction for WriteFile {
    fn execute(&self, ws: &Workspace, slot: &Slot, inputs: &Inputs) -> Outcome {
        let path = string(inputs, "path")?;
        let bytes = decode_content(inputs)?;
        let create_dirs = boolean(inputs, "create_dirs");
        let rel = ws.resolve(path)?;
        let check = || {
            let existing = metadata(ws, &rel)?;
            if existing.as_ref().is_some_and(|m| !m.is_file()) {
                return Err(HandlerError::new(
                    ErrorKind::ActionFailed,
                    format!("{path} exists and is not a file"),
                ));
            }
            let created_dirs = if create_dirs {
                missing_ancestors(ws, &rel)?
            } else {
                Vec::new()
            };
            Ok((existing.is_some(), created_dirs))
        };
        let keep = |(existed, dirs): (bool, Vec<PathBuf>)| {
            slot.keep_target(ws, "write", &rel, existed, &dirs)
        };
        let record = slot.record_once(ws, check, keep)?;
        if create_dirs && let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            ws.dir()
                .create_dir_all(parent)
                .map_err(|e| io_error(e, parent))?;
        }
        ws.dir()
            .write(&rel, &bytes)
            .map_err(|e| io_error(e, &rel))?;
        let created = !record["existed"].as_bool().unwrap_or(true);
        Ok(Execution {
            outputs: json!({"path": path, "size": bytes.len(), "sha256": sha256_hex(&bytes), "created": created}),
            undo: Some(record),
        })
    }

    fn compensate(&self, ws: &Workspace, undo: &Value) -> Result<(), HandlerError> {
        let path = PathBuf::from(undo_str(undo, "path")?);
        let slot = undo_str(undo, "slot")?;
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
            remove_empty_dirs(ws, &undo_dirs(undo))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub(super) struct MakeDir;

impl FsAction for MakeDir {
    fn execute(&self, ws: &Workspace, slot: &Slot, inputs: &Inputs) -> Outcome {
        let path = string(inputs, "path")?;
        let rel = ws.resolve(path)?;
        let record = match slot.record(ws)? {
            Some(record) => record,
            None => {
                if let Some(meta) = metadata(ws, &rel)? {
                    if meta.is_dir() {
                        // Nothing to create and nothing to undo.
                        return Ok(Execution {
                            outputs: json!({"path": path, "created": false}),
                            undo: None,
                        });
                    }
                    return Err(HandlerError::new(
                        ErrorKind::AlreadyExists,
                        format!("{path} exists and is not a directory"),
                    ));
                }
                let mut created = missing_ancestors(ws, &rel)?;
                created.push(rel.clone());
                slot.create(ws)?;
                let record = json!({"op": "make_dir", "path": rel.display().to_string(), "slot": slot.name, "created_dirs": path_strings(&created)});
                slot.commit(ws, &record)?;
                record
            }
        };
        ws.dir()
            .create_dir_all(&rel)
            .map_err(|e| io_error(e, &rel))?;
        Ok(Execution {
            outputs: json!({"path": path, "created": true}),
            undo: Some(record),
        })
    }

    fn compensate(&self, ws: &Workspace, undo: &Value) -> Result<(), HandlerError> {
        remove_empty_dirs(ws, &undo_dirs(undo))
    }
}

/// The inputs of a move or a copy, resolved inside the workspace.
struct Transfer<'a> {
    from: &'a str,
    to: &'a str,
    src: PathBuf,
    dst: PathBuf,
    overwrite: bool,
}

impl<'a> Transfer<'a> {
    fn of(ws: &Workspace, inputs: &'a Map<String, Value>) -> Result<Self, HandlerError> {
        let (from, to) = (string(inputs, "from")?, string(inputs, "to")?);
        Ok(Self {
            from,
            to,
            src: ws.resolve(from)?,
            dst: ws.resolve(to)?,
            overwrite: boolean(inputs, "overwrite"),
        })
    }

    /// Whether the target exists; an existing one is replaced only when
    /// `overwrite` was asked for.
    fn target_exists(&self, ws: &Workspace) -> Result<bool, HandlerError> {
        let exists = metadata(ws, &self.dst)?.is_some();
        if exists && !self.overwrite {
            return Err(HandlerError::new(
                ErrorKind::AlreadyExists,
                format!("{} exists; set overwrite: true to replace it", self.to),
            ));
        }
        Ok(exists)
    }
}

#[derive(Debug, Clone)]
pub(super) struct Move;

impl FsAction for Move {
    fn execute(&self, ws: &Workspace, slot: &Slot, inputs: &Inputs) -> Outcome {
        let t = Transfer::of(ws, inputs)?;
        let check = || {
            if metadata(ws, &t.src)?.is_none() {
                return Err(HandlerError::new(
                    ErrorKind::NotFound,
                    format!("{} does not exist", t.from),
                ));
            }
            t.target_exists(ws)
        };
        let keep = |target_exists: bool| {
            if target_exists {
                ws.dir()
                    .rename(&t.dst, ws.undo(), slot.file("overwritten"))
                    .map_err(|e| io_error(e, &t.dst))?;
            }
            Ok(
                json!({"op": "move", "from": t.src.display().to_string(), "to": t.dst.display().to_string(), "slot": slot.name, "overwrote": target_exists}),
            )
        };
        let record = slot.record_once(ws, check, keep)?;
        // A repeated attempt after the rename finds the source gone.
        if metadata(ws, &t.src)?.is_some() {
            ws.dir()
                .rename(&t.src, ws.dir(), &t.dst)
                .map_err(|e| io_error(e, &t.src))?;
        }
        Ok(Execution {
            outputs: json!({"from": t.from, "to": t.to}),
            undo: Some(record),
        })
    }

    fn compensate(&self, ws: &Workspace, undo: &Value) -> Result<(), HandlerError> {
        let (src, dst) = (
            PathBuf::from(undo_str(undo, "from")?),
            PathBuf::from(undo_str(undo, "to")?),
        );
        let slot = undo_str(undo, "slot")?;
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
    }
}

#[derive(Debug, Clone)]
pub(super) struct Copy;

impl FsAction for Copy {
    fn execute(&self, ws: &Workspace, slot: &Slot, inputs: &Inputs) -> Outcome {
        let t = Transfer::of(ws, inputs)?;
        let source = ws.dir().metadata(&t.src).map_err(|e| io_error(e, &t.src))?;
        if !source.is_file() {
            return Err(HandlerError::new(
                ErrorKind::ActionFailed,
                format!("{} is not a file", t.from),
            ));
        }
        // Copying is writing the target: the same record and undo.
        let keep = |existed: bool| slot.keep_target(ws, "copy", &t.dst, existed, &[]);
        let record = slot.record_once(ws, || t.target_exists(ws), keep)?;
        let size = ws
            .dir()
            .copy(&t.src, ws.dir(), &t.dst)
            .map_err(|e| io_error(e, &t.dst))?;
        Ok(Execution {
            outputs: json!({"from": t.from, "to": t.to, "size": size}),
            undo: Some(record),
        })
    }

    fn compensate(&self, ws: &Workspace, undo: &Value) -> Result<(), HandlerError> {
        // Undoing a copy is undoing a write of its target.
        WriteFile.compensate(ws, undo)
    }
}

#[derive(Debug, Clone)]
pub(super) struct Delete;

impl FsAction for Delete {
    fn execute(&self, ws: &Workspace, slot: &Slot, inputs: &Inputs) -> Outcome {
        let path = string(inputs, "path")?;
        let recursive = boolean(inputs, "recursive");
        let rel = ws.resolve(path)?;
        let check = || {
            let meta = metadata(ws, &rel)?.ok_or_else(|| {
                HandlerError::new(ErrorKind::NotFound, format!("{path} does not exist"))
            })?;
            let kind = kind_of(&meta);
            if kind == "dir" && !recursive {
                let empty = ws
                    .dir()
                    .read_dir(&rel)
                    .map_err(|e| io_error(e, &rel))?
                    .next()
                    .is_none();
                if !empty {
                    return Err(HandlerError::new(
                        ErrorKind::ActionFailed,
                        format!("{path} is a non-empty directory; set recursive: true"),
                    ));
                }
            }
            Ok(kind)
        };
        let keep = |kind: &str| {
            Ok(
                json!({"op": "delete", "path": rel.display().to_string(), "slot": slot.name, "type": kind}),
            )
        };
        let record = slot.record_once(ws, check, keep)?;
        // Deleting is moving into the trash, so the undo is a rename back.
        if metadata(ws, &rel)?.is_some() {
            ws.dir()
                .rename(&rel, ws.undo(), slot.file("trash"))
                .map_err(|e| io_error(e, &rel))?;
        }
        Ok(Execution {
            outputs: json!({"path": path, "type": record["type"]}),
            undo: Some(record),
        })
    }

    fn compensate(&self, ws: &Workspace, undo: &Value) -> Result<(), HandlerError> {
        let path = PathBuf::from(undo_str(undo, "path")?);
        let trash = format!("{}/trash", undo_str(undo, "slot")?);
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
    }
}
