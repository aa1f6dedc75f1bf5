//! The file-system id shift of a workspace: its processes run in a user namespace whose root is
//! an unprivileged host id, yet files of the container's root must appear with their own owners.
//!
//! With idmapped mounts (the kernel's own means, no module needed) the shifted root is a copy of
//! the container's root mount, idmapped with the workspace's user namespace and mounted at
//! [`MARK`]. Such a mount needs the user namespace and its maps to exist, which they do not when
//! PrepareForUserNS runs (the historical order: PrepareForUserNS, then a child in a new user
//! namespace, then WriteIDMapping for it). So PrepareForUserNS checks that the root can be
//! idmapped (with a user namespace of the daemon's own) and creates the mark folder, and the
//! WriteIDMapping that completes a process's maps (the second of uid and gid) mounts the shifted
//! root at the mark in that process's mount namespace. A workspace then binds the mark as its new
//! root, as it did with the historical FUSE method.
//!
//! With shiftfs (an out-of-tree module some nodes have) PrepareForUserNS mounts a shiftfs mark
//! of the root at [`MARK`] and the workspace mounts shiftfs from it itself.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use crate::confine::InRoot;
use crate::error::{Error, Result};
use crate::sys::mount_api::{self, FsContext};

/// Where the shifted root appears in the workspace (Gitpod's path: `/.workspace` is the
/// workspace's daemon folder, where its socket is).
pub const MARK: &str = "/.workspace/mark";

/// How the id shift is made on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shift {
    Idmapped,
    Shiftfs,
}

fn refused(what: &str, e: impl std::fmt::Display) -> Error {
    Error::KernelRefused(format!("{what}: {e}"))
}

/// Creates the folders of [`MARK`] that are missing (0755); whether it created the mark itself.
pub fn make_mark(root: &InRoot) -> Result<bool> {
    let mut parent = String::from("/");
    let mut created = false;
    for part in MARK.trim_start_matches('/').split('/') {
        let dir = root
            .open_dir_path(&parent)
            .map_err(|e| refused("cannot prepare the mark folder", e))?;
        created = match nix::sys::stat::mkdirat(&dir, part, Mode::from_bits_truncate(0o755)) {
            Ok(()) => true,
            Err(Errno::EEXIST) => false,
            Err(e) => return Err(refused("cannot create the mark folder", e)),
        };
        parent = format!("{}/{part}", parent.trim_end_matches('/'));
    }
    Ok(created)
}

/// Removes the mark folder if it is empty and nothing is mounted on it (WipingTeardown).
pub fn remove_mark(root: &InRoot) {
    if let Ok(dir) = root.open_dir_path("/.workspace") {
        let _ = nix::unistd::unlinkat(&dir, "mark", nix::unistd::UnlinkatFlags::RemoveDir);
    }
}

/// On a thread in the container's mount namespace: a detached copy of its root mount (without
/// the mounts below it), idmapped with `userns`.
pub fn idmapped_root(root: &InRoot, userns: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let copy = mount_api::open_tree(
        root.as_fd(),
        "",
        libc::OPEN_TREE_CLONE | libc::AT_EMPTY_PATH as libc::c_uint,
    )?;
    mount_api::set_attributes(copy.as_fd(), libc::MOUNT_ATTR_IDMAP, Some(userns))?;
    Ok(copy)
}

/// Whether the kernel lists shiftfs among its file systems.
pub fn shiftfs_available() -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|list| {
            list.lines()
                .any(|l| l.split_whitespace().last() == Some("shiftfs"))
        })
        .unwrap_or(false)
}

/// On a thread in the container's mount namespace: a shiftfs mark of its root, detached.
/// shiftfs takes its source as a path, given here as the magic link of the root's descriptor
/// in the daemon's /proc (the thread's working folder is set to it; the thread is its own).
pub fn shiftfs_mark(root: &InRoot, host_proc: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    nix::unistd::fchdir(host_proc)?;
    let fs = FsContext::open("shiftfs")?;
    fs.set_string(
        "source",
        &format!("thread-self/fd/{}", root.as_fd().as_raw_fd()),
    )?;
    fs.set_flag("mark")?;
    fs.mount(0)
}

/// What a failed idmapping of the root means for the user.
pub fn not_idmappable(e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::EPERM) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => {
            Error::KernelRefused(format!(
                "the workspace's root file system cannot be idmapped on this node \
                 (idmapped mounts need Linux 5.12+ and a file system that supports them, \
                 overlayfs 5.19+, tmpfs 6.3+) and shiftfs is not available: {e}"
            ))
        }
        _ => refused("cannot idmap the workspace's root", e),
    }
}
