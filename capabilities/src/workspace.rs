//! The filesystem sandbox: one workspace root, reached only through a
//! capability-based directory handle (`cap_std::fs::Dir`). Paths are
//! relative to the root; `..`, absolute paths and symlinks are refused before
//! any I/O, and the handle itself refuses to resolve outside the root at the
//! moment of the operation (so a symlink swapped in after a check still
//! cannot lead out). A sibling such as `/ws-evil` is unreachable: there is no
//! string prefix test to fool, only the open directory.
//!
//! `.airt/` inside the root is reserved: it holds undo data (previous bytes,
//! deleted files) keyed by idempotency key, on the same filesystem so moves
//! into the trash are atomic renames. Each slot names its workflow, so the
//! undo data of finished workflows can be removed ([`Workspace::undo_slots`]).

use std::io;
use std::path::{Component, Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use sha2::{Digest, Sha256};

use super::{ErrorKind, HandlerError};

/// The reserved top-level directory of every workspace.
pub const RESERVED_DIR: &str = ".airt";
const UNDO_DIR: &str = ".airt/undo";
/// The file in an undo slot naming the workflow the slot belongs to.
pub const UNDO_OWNER_FILE: &str = "workflow";

/// An undo slot, as the garbage collector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoSlot {
    pub name: String,
    /// The workflow whose step wrote it (`None` for a slot without owner).
    pub workflow_id: Option<String>,
}

#[derive(Debug)]
pub struct Workspace {
    root_path: PathBuf,
    root: Dir,
    undo: Dir,
}

impl Workspace {
    /// Opens (creating if needed) the workspace root and its undo area.
    pub fn open(root: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let root_path = std::fs::canonicalize(root)?;
        let root = Dir::open_ambient_dir(&root_path, ambient_authority())?;
        root.create_dir_all(UNDO_DIR)?;
        let undo = root.open_dir(UNDO_DIR)?;
        Ok(Self {
            root_path,
            root,
            undo,
        })
    }

    /// The absolute path of the root (for a child process's working
    /// directory, the one place a path string is unavoidable).
    pub fn root_path(&self) -> &Path {
        &self.root_path
    }

    /// The root directory handle.
    pub fn dir(&self) -> &Dir {
        &self.root
    }

    /// The undo area (inside `.airt/`, unreachable by capability paths).
    pub fn undo(&self) -> &Dir {
        &self.undo
    }

    /// Undo slots not changed since `before`, with the workflow each
    /// belongs to: candidates for removal once that workflow is finished.
    pub fn undo_slots(&self, before: std::time::SystemTime) -> io::Result<Vec<UndoSlot>> {
        let mut slots = Vec::new();
        for entry in self.undo.entries()? {
            let entry = entry?;
            let metadata = entry.metadata()?;
            if !metadata.is_dir() || metadata.modified()?.into_std() > before {
                continue;
            }
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let workflow_id = self
                .undo
                .read_to_string(format!("{name}/{UNDO_OWNER_FILE}"))
                .ok()
                .filter(|id| !id.is_empty() && id.len() <= 64);
            slots.push(UndoSlot { name, workflow_id });
        }
        Ok(slots)
    }

    /// Removes an undo slot and everything in it.
    pub fn discard_undo_slot(&self, name: &str) -> io::Result<()> {
        if name.is_empty() || name.contains(['/', '.']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a slot name",
            ));
        }
        match self.undo.remove_dir_all(name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// The undo slot of an idempotency key: a directory name derived from it.
    pub fn undo_slot(idempotency_key: &str) -> String {
        hex::encode(&Sha256::digest(idempotency_key.as_bytes())[..16])
    }

    /// The lexical form [`Workspace::check_path`] resolves a path to: `.`
    /// components and repeated or trailing `/` dropped (`./a//b/` is `a/b`).
    /// What the sandbox refuses (`..`, absolute paths) is left as it is, to
    /// be refused there. The policy sees this form, so a rule on `a/b`
    /// cannot be passed with `./a/b`.
    pub fn normalise(path: &str) -> String {
        let absolute = path.starts_with('/');
        let parts: Vec<&str> = path
            .split('/')
            .filter(|part| !part.is_empty() && *part != ".")
            .collect();
        match (absolute, parts.is_empty()) {
            (true, _) => format!("/{}", parts.join("/")),
            (false, true) => ".".to_owned(),
            (false, false) => parts.join("/"),
        }
    }

    /// Validates a user path: relative, no `..`, not in `.airt/`, not empty.
    /// Returns it normalised (`.` components removed).
    pub fn check_path(&self, path: &str) -> Result<PathBuf, HandlerError> {
        if path.is_empty() {
            return Err(HandlerError::invalid_input("path is empty"));
        }
        let mut normal = PathBuf::new();
        for component in Path::new(path).components() {
            match component {
                Component::Normal(part) => normal.push(part),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(HandlerError::sandbox(format!(
                        "{path:?}: `..` is not allowed in workspace paths"
                    )));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(HandlerError::sandbox(format!(
                        "{path:?}: absolute paths are outside the workspace"
                    )));
                }
            }
        }
        if normal.as_os_str().is_empty() {
            return Err(HandlerError::invalid_input(format!(
                "{path:?} names the workspace root itself"
            )));
        }
        if normal.components().next() == Some(Component::Normal(RESERVED_DIR.as_ref())) {
            return Err(HandlerError::sandbox(format!(
                "{path:?}: {RESERVED_DIR}/ is reserved for the runtime"
            )));
        }
        Ok(normal)
    }

    /// Refuses a path if it or any of its parents is a symlink (checked
    /// without following). Missing components end the walk.
    pub fn refuse_symlinks(&self, path: &Path) -> Result<(), HandlerError> {
        let mut prefix = PathBuf::new();
        for component in path.components() {
            prefix.push(component);
            match self.root.symlink_metadata(&prefix) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(HandlerError::sandbox(format!(
                        "{}: symlinks are not followed in the workspace",
                        prefix.display()
                    )));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_error(e, &prefix)),
            }
        }
        Ok(())
    }

    /// `check_path` + `refuse_symlinks`.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, HandlerError> {
        let normal = self.check_path(path)?;
        self.refuse_symlinks(&normal)?;
        Ok(normal)
    }
}

/// Maps an I/O error to a typed handler error about `path`.
pub fn io_error(error: io::Error, path: &Path) -> HandlerError {
    let text = error.to_string();
    let kind =
        if text.contains("outside of the filesystem") || text.contains("outside the filesystem") {
            ErrorKind::SandboxViolation
        } else {
            match error.kind() {
                io::ErrorKind::NotFound => ErrorKind::NotFound,
                io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
                io::ErrorKind::Interrupted
                | io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut => ErrorKind::Transient,
                _ => ErrorKind::ActionFailed,
            }
        };
    HandlerError::new(kind, format!("{}: {text}", path.display()))
}
