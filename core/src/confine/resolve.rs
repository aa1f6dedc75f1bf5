//! Resolving a relative path below a folder fd: `openat2` with the scope's resolve flags first,
//! and a walk of one plain component at a time (`O_NOFOLLOW`) where openat2 is not available.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, mkdirat, Mode, SFlag};

use super::{BadPath, ConfineError};

/// Set once the kernel said it has no openat2 (`ENOSYS`): the walk is used from then on.
static OPENAT2_MISSING: AtomicBool = AtomicBool::new(false);

/// How often an openat2 that raced with a rename (`EAGAIN`) is tried again.
const EAGAIN_RETRIES: usize = 8;

#[cfg(test)]
thread_local! {
    static FORCE_WALK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with openat2 turned off for the roots opened on this thread, so that tests cover the
/// component walk on kernels that have openat2.
#[cfg(test)]
pub(crate) fn with_component_walk<T>(f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            FORCE_WALK.with(|w| w.set(false));
        }
    }
    FORCE_WALK.with(|w| w.set(true));
    let _reset = Reset;
    f()
}

/// Whether a root opened now resolves with openat2.
pub(super) fn openat2_usable() -> bool {
    #[cfg(test)]
    if FORCE_WALK.with(|w| w.get()) {
        return false;
    }
    !OPENAT2_MISSING.load(Ordering::Relaxed)
}

/// How symlinks met on the way are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scope {
    /// No symlink at all, nothing above the root.
    Beneath,
    /// Symlinks resolved as if the root were `/` (the walk refuses them instead).
    InRoot,
}

/// What a folder entry is, looked at without following a symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Folder,
    File,
    Symlink,
    /// A device, FIFO or socket.
    Other,
}

/// The kind of the entry `name` directly in folder `dir` (never following a symlink), or `None`
/// when there is no such entry.
pub fn kind_at(dir: impl AsFd, name: &OsStr) -> Result<Option<EntryKind>, ConfineError> {
    match fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => {
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            Ok(Some(if kind == SFlag::S_IFDIR {
                EntryKind::Folder
            } else if kind == SFlag::S_IFREG {
                EntryKind::File
            } else if kind == SFlag::S_IFLNK {
                EntryKind::Symlink
            } else {
                EntryKind::Other
            }))
        }
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(ConfineError::io("stat", e)),
    }
}

/// The plain components of `rel`; anything else (`..`, a root, `.` inside) is refused, so that
/// the walk, which checks one component at a time, never meets one it cannot confine.
fn plain_components(rel: &Path) -> Result<Vec<&OsStr>, ConfineError> {
    rel.components()
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => Err(ConfineError::BadPath(BadPath::ParentDir)),
        })
        .collect()
}

/// Opens `rel` below `root` with `flags` (`O_CLOEXEC` is added; `O_DIRECTORY` when the caller
/// wants a folder). `use_openat2` is the root's choice (see [`openat2_usable`]). With `create`,
/// missing folders on the way (and the last one) are made with that mode; `flags` must then
/// include `O_DIRECTORY`.
pub(super) fn resolve(
    root: BorrowedFd<'_>,
    rel: &Path,
    scope: Scope,
    flags: OFlag,
    use_openat2: bool,
    create: Option<Mode>,
) -> Result<OwnedFd, ConfineError> {
    let components = plain_components(rel)?;
    if use_openat2 {
        match by_openat2(root, rel, scope, flags) {
            Some(Err(ConfineError::NotFound)) if create.is_some() => {}
            Some(result) => return result,
            None => {}
        }
    }
    walk(root, &components, flags, create)
}

/// One openat2 call; `None` when openat2 cannot be used (the caller walks instead).
fn by_openat2(
    root: BorrowedFd<'_>,
    rel: &Path,
    scope: Scope,
    flags: OFlag,
) -> Option<Result<OwnedFd, ConfineError>> {
    let path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let resolve = match scope {
        Scope::Beneath => ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS,
        Scope::InRoot => ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(resolve);
    let mut tries = 0;
    loop {
        let err = match openat2(root, path, how) {
            Ok(fd) => return Some(Ok(fd)),
            Err(e) => e,
        };
        return Some(Err(match err {
            // A rename or mount raced with the resolution of a `..` in a symlink: try again.
            Errno::EAGAIN if tries < EAGAIN_RETRIES => {
                tries += 1;
                continue;
            }
            Errno::ENOSYS => {
                if !OPENAT2_MISSING.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        "openat2 is not available: paths are resolved component by component"
                    );
                }
                return None;
            }
            // Seccomp filters that do not know openat2 answer EPERM: walk for this call.
            Errno::EPERM => return None,
            Errno::ELOOP => ConfineError::Symlink,
            Errno::EXDEV => ConfineError::Escapes,
            Errno::ENOENT => ConfineError::NotFound,
            Errno::ENOTDIR => ConfineError::NotAFolder,
            other => ConfineError::io("open", other),
        }));
    }
}

/// Opens the components one at a time, each relative to the previous with `O_NOFOLLOW`: a
/// symlink anywhere is refused, and with only plain components nothing above `root` is reached.
fn walk(
    root: BorrowedFd<'_>,
    components: &[&OsStr],
    flags: OFlag,
    create: Option<Mode>,
) -> Result<OwnedFd, ConfineError> {
    let Some((last, folders)) = components.split_last() else {
        return openat(root, ".", flags | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| ConfineError::io("open", e));
    };
    // Folders on the way only need to be looked up in: O_PATH needs no read permission.
    let on_the_way = OFlag::O_PATH | OFlag::O_DIRECTORY;
    let mut current: Option<OwnedFd> = None;
    for (name, is_last) in folders
        .iter()
        .map(|n| (n, false))
        .chain(std::iter::once((last, true)))
    {
        let dir = current.as_ref().map_or(root, |fd| fd.as_fd());
        let open_flags =
            if is_last { flags } else { on_the_way } | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut created = false;
        let fd = loop {
            match openat(dir, *name, open_flags, Mode::empty()) {
                Ok(fd) => break fd,
                Err(Errno::ENOENT) if !created => match create {
                    Some(mode) => match mkdirat(dir, *name, mode) {
                        Ok(()) | Err(Errno::EEXIST) => created = true,
                        Err(e) => return Err(ConfineError::io("create folder", e)),
                    },
                    None => return Err(ConfineError::NotFound),
                },
                Err(e) => return Err(classify(dir, name, e)),
            }
        };
        current = Some(fd);
    }
    current.ok_or(ConfineError::NotFound)
}

/// Says why opening `name` in `dir` with `O_NOFOLLOW` failed.
fn classify(dir: BorrowedFd<'_>, name: &OsStr, e: Errno) -> ConfineError {
    match e {
        Errno::ELOOP => ConfineError::Symlink,
        Errno::ENOENT => ConfineError::NotFound,
        // O_DIRECTORY | O_NOFOLLOW on a symlink fails with ENOTDIR (O_PATH) or ELOOP.
        Errno::ENOTDIR => match kind_at(dir, name) {
            Ok(Some(EntryKind::Symlink)) => ConfineError::Symlink,
            _ => ConfineError::NotAFolder,
        },
        other => ConfineError::io("open", other),
    }
}
