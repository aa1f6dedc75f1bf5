//! Path confinement: the one place where a path from a request or an archive is resolved inside a
//! folder the daemon must not leave. Everything is opened relative to a folder fd, so a path given
//! by an untrusted party can neither `..` nor symlink its way out.
//!
//! Two scopes, each a type:
//!
//! - [`Beneath`]: a folder whose tree is untrusted content (the workspace content folder, an
//!   archive's extraction target). No symlink is followed anywhere on the way, and nothing above
//!   the folder is reached: `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, or, where the kernel
//!   has no openat2, a walk that opens one plain component at a time with `O_NOFOLLOW`. Used by
//!   the initializers (download, git checkout location, `.git`/`.gitmodules` checks), the archive
//!   extractor, git status and the ready/log files of a workspace.
//! - [`InRoot`]: a container's root folder, given as an open fd (e.g. of `/proc/<pid>/root`).
//!   A real root file system has absolute symlinks that are meant relative to that root, so
//!   symlinks are resolved as if the root were `/`: `openat2(RESOLVE_IN_ROOT |
//!   RESOLVE_NO_MAGICLINKS)`; a symlink (absolute or with `..`) cannot lead above the root. Without
//!   openat2 the walk refuses every symlink instead. Meant for the in-workspace mounts (a mount
//!   target such as `/proc`).
//!
//! Whether openat2 can be used is found out on first use: `ENOSYS` (old kernel) switches to the
//! walk for the rest of the process; `EPERM` (a seccomp filter) falls back for that one call.
//! Errors are a [`ConfineError`], which says why a path was refused (symlink, missing, not a
//! folder, escape) without ever naming a host path.

mod beneath;
mod in_root;
mod resolve;
#[cfg(test)]
mod tests;

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub use beneath::{create_temp_file, remove_temp, rename_into_place, Beneath};
pub use in_root::InRoot;
pub use resolve::{kind_at, EntryKind};

#[cfg(test)]
pub(crate) use resolve::with_component_walk;

use crate::error::Error;

/// Why a path was refused or could not be resolved. Never carries a host path.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The path itself is unusable.
    #[error("unusable path: {0}")]
    BadPath(BadPath),
    /// A component on the way is a symlink that is not followed in this scope.
    #[error("the path passes through a symlink")]
    Symlink,
    /// Resolving the path would leave the root (e.g. a magic link).
    #[error("the path leads outside its root")]
    Escapes,
    /// A component of the path does not exist.
    #[error("the path does not exist")]
    NotFound,
    /// A component of the path (or the path itself, where a folder is wanted) is not a folder.
    #[error("the path is not a folder")]
    NotAFolder,
    /// The path names something that is not a regular file where one is wanted.
    #[error("the path is not a regular file")]
    NotAFile,
    /// Any other failure of the system call `op`.
    #[error("{op} failed: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// What makes a path unusable before anything is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    #[error("'..' is not allowed")]
    ParentDir,
    #[error("it contains a NUL character")]
    Nul,
    #[error("it names no file")]
    NoFileName,
}

impl ConfineError {
    pub(crate) fn io(op: &'static str, source: impl Into<io::Error>) -> ConfineError {
        ConfineError::Io {
            op,
            source: source.into(),
        }
    }

    /// True when the refusal is about the path that was asked for (so a request carrying it is
    /// an invalid argument), false for failures of the system.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, ConfineError::Io { .. })
    }

    /// The error for a request field `field` (e.g. "target"): refusals become
    /// INVALID_ARGUMENT naming the field, system failures INTERNAL.
    pub fn for_request(self, field: &str) -> Error {
        if self.is_refusal() {
            Error::InvalidArgument(format!("{field}: {self}"))
        } else {
            Error::internal(format!("{field}: {self}"))
        }
    }
}

impl From<ConfineError> for io::Error {
    fn from(e: ConfineError) -> io::Error {
        let kind = match &e {
            ConfineError::BadPath(_) | ConfineError::NotAFile => io::ErrorKind::InvalidInput,
            ConfineError::Symlink | ConfineError::Escapes => io::ErrorKind::PermissionDenied,
            ConfineError::NotFound => io::ErrorKind::NotFound,
            ConfineError::NotAFolder => io::ErrorKind::NotADirectory,
            ConfineError::Io { source, .. } => source.kind(),
        };
        io::Error::new(kind, e)
    }
}

/// Normalizes a path to plain components below a root: a leading `/`, `.` and empty components
/// are dropped; `..` and NUL bytes are refused. Whether an absolute path is acceptable at all is
/// the caller's policy (archives refuse them before calling this).
pub fn normalize(path: &[u8]) -> Result<PathBuf, ConfineError> {
    if path.contains(&0) {
        return Err(ConfineError::BadPath(BadPath::Nul));
    }
    let mut out = PathBuf::new();
    for component in path.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err(ConfineError::BadPath(BadPath::ParentDir)),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

/// Turns a request path into a relative path below the content root (see [`normalize`]), with
/// an INVALID_ARGUMENT naming the request field when it is refused.
pub fn relative_request_path(field: &str, path: &str) -> crate::error::Result<PathBuf> {
    normalize(path.as_bytes()).map_err(|e| match e {
        ConfineError::BadPath(BadPath::ParentDir) => Error::InvalidArgument(format!(
            "{field} {path:?} leaves the workspace: '..' is not allowed"
        )),
        ConfineError::BadPath(BadPath::Nul) => {
            Error::InvalidArgument(format!("{field} contains a NUL character"))
        }
        other => Error::InvalidArgument(format!("{field}: {other}")),
    })
}

/// Splits a normalized relative path into its folder (empty for the root) and its file name.
pub fn split_parent(rel: &Path) -> Result<(&Path, &OsStr), ConfineError> {
    match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(ConfineError::BadPath(BadPath::NoFileName)),
    }
}
