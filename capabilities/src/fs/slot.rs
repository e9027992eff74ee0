//! A step's undo slot: what a reversible action keeps (previous bytes, the
//! trash, an overwritten target) and its undo record, written before the
//! action changes anything.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::path_strings;
use crate::workspace::{UNDO_OWNER_FILE, io_error};
use crate::{ErrorKind, ExecutionContext, HandlerError, Workspace};

/// The undo slot of a step: its record (if captured already) and paths.
pub(super) struct Slot {
    pub(super) name: String,
    workflow_id: String,
}

impl Slot {
    pub(super) fn of(ctx: &ExecutionContext) -> Self {
        Self {
            name: Workspace::undo_slot(&ctx.idempotency_key),
            workflow_id: ctx.workflow_id.clone(),
        }
    }

    pub(super) fn file(&self, name: &str) -> String {
        format!("{}/{name}", self.name)
    }

    /// The record of an earlier attempt, if it got that far.
    pub(super) fn record(&self, ws: &Workspace) -> Result<Option<Value>, HandlerError> {
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
    pub(super) fn create(&self, ws: &Workspace) -> Result<(), HandlerError> {
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
    pub(super) fn record_once<P>(
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
    pub(super) fn keep_target(
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
    pub(super) fn keep_previous(&self, ws: &Workspace, path: &Path) -> Result<(), HandlerError> {
        let previous = ws.dir().read(path).map_err(|e| io_error(e, path))?;
        ws.undo()
            .write(self.file("previous"), previous)
            .map_err(|e| io_error(e, Path::new(".airt/undo")))
    }

    /// Writes the record atomically (temp file, then rename).
    pub(super) fn commit(&self, ws: &Workspace, record: &Value) -> Result<(), HandlerError> {
        let tmp = self.file("record.json.tmp");
        ws.undo()
            .write(&tmp, record.to_string())
            .and_then(|()| ws.undo().rename(&tmp, ws.undo(), self.file("record.json")))
            .map_err(|e| io_error(e, Path::new(".airt/undo")))
    }
}

pub(super) fn undo_str<'a>(undo: &'a Value, field: &str) -> Result<&'a str, HandlerError> {
    undo.get(field).and_then(Value::as_str).ok_or_else(|| {
        HandlerError::new(
            ErrorKind::CompensationFailed,
            format!("undo record lacks {field}"),
        )
    })
}

pub(super) fn undo_dirs(undo: &Value) -> Vec<String> {
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

pub(super) fn compensation_io(error: io::Error, path: &Path) -> HandlerError {
    let mut e = io_error(error, path);
    e.kind = ErrorKind::CompensationFailed;
    e
}

// ---- reads -------------------------------------------------------------
