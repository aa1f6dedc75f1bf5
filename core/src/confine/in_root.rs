//! [`InRoot`]: resolving paths of a request inside a container's root file system.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::resolve::{openat2_usable, resolve, Scope};
use super::{normalize, ConfineError};

/// A container's root folder. Paths are resolved as the container sees them: `/` is the root,
/// and symlinks (absolute ones too) are followed as if the root were `/`, so none leads above
/// it. Where the kernel has no openat2, every symlink is refused instead.
#[derive(Debug)]
pub struct InRoot {
    root: OwnedFd,
    openat2: bool,
}

impl AsFd for InRoot {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }
}

impl InRoot {
    /// The root as an already-open folder fd, e.g. `/proc/<pid>/root` opened with
    /// `O_PATH | O_DIRECTORY` (opening that magic link is what enters the container's root).
    pub fn from_fd(root: OwnedFd) -> InRoot {
        InRoot {
            root,
            openat2: openat2_usable(),
        }
    }

    /// Opens the folder at `root` (a path the daemon chose, e.g. `/proc/<pid>/root`; symlinks in
    /// it, that magic link included, are followed).
    pub fn open(root: &Path) -> Result<InRoot, ConfineError> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = open(root, flags, Mode::empty()).map_err(|e| match e {
            Errno::ENOENT => ConfineError::NotFound,
            Errno::ENOTDIR => ConfineError::NotAFolder,
            other => ConfineError::io("open", other),
        })?;
        Ok(InRoot::from_fd(fd))
    }

    /// Resolves `path` as seen inside the container (absolute or relative to its root; `..` is
    /// refused) to an `O_PATH` fd of an existing folder, e.g. a mount target such as `/proc`.
    ///
    /// A missing target is [`ConfineError::NotFound`], one that is not a folder (or a symlink
    /// to a non-folder) [`ConfineError::NotAFolder`]; with [`ConfineError::for_request`] every
    /// refusal becomes INVALID_ARGUMENT.
    pub fn open_dir_path(&self, path: &str) -> Result<OwnedFd, ConfineError> {
        let rel = normalize(path.as_bytes())?;
        resolve(
            self.root.as_fd(),
            &rel,
            Scope::InRoot,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            self.openat2,
            None,
        )
    }
}
