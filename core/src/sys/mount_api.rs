//! The new mount API (Linux 5.2+, mounts on detached trees 6.15+): build a file system as a
//! detached mount (`fsopen` / `fsconfig` / `fsmount`), clone trees (`open_tree`), change their
//! attributes (`mount_setattr`) and attach them (`move_mount`). Detached mounts are invisible to
//! every process until attached, and vanish when their last descriptor is closed.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::{c_string, check, owned_fd};

/// A file-system context from `fsopen`, configured before it is created and mounted.
pub struct FsContext {
    fd: OwnedFd,
}

impl FsContext {
    /// `fsopen(fstype)`. ENODEV: the kernel does not have this file system.
    pub fn open(fstype: &str) -> io::Result<FsContext> {
        let name = c_string(fstype)?;
        // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
        let ret = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), libc::FSOPEN_CLOEXEC) };
        owned_fd(ret).map(|fd| FsContext { fd })
    }

    fn config(
        &self,
        cmd: libc::c_uint,
        key: Option<&str>,
        value: Option<&str>,
        aux: libc::c_int,
    ) -> io::Result<()> {
        let key = key.map(c_string).transpose()?;
        let value = value.map(c_string).transpose()?;
        let key_ptr = key.as_ref().map_or(std::ptr::null(), |k| k.as_ptr());
        let value_ptr = value.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
        // SAFETY: the descriptor is an fs context we own; key and value are NUL-terminated
        // strings or NULL, as `cmd` requires, and live until the call returns.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.fd.as_raw_fd(),
                cmd,
                key_ptr,
                value_ptr,
                aux,
            )
        };
        check(ret).map(drop)
    }

    /// `fsconfig(FSCONFIG_SET_STRING, key, value)`.
    pub fn set_string(&self, key: &str, value: &str) -> io::Result<()> {
        self.config(libc::FSCONFIG_SET_STRING, Some(key), Some(value), 0)
    }

    /// `fsconfig(FSCONFIG_SET_FD, key, fd)`, e.g. `pidns` of proc.
    pub fn set_fd(&self, key: &str, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.config(libc::FSCONFIG_SET_FD, Some(key), None, fd.as_raw_fd())
    }

    /// `fsconfig(FSCONFIG_SET_FLAG, key)`, e.g. `ro`.
    pub fn set_flag(&self, key: &str) -> io::Result<()> {
        self.config(libc::FSCONFIG_SET_FLAG, Some(key), None, 0)
    }

    /// `fsconfig(FSCONFIG_CMD_CREATE)` then `fsmount`: the file system as a detached mount with
    /// the given `MOUNT_ATTR_*` flags.
    pub fn mount(self, attributes: u64) -> io::Result<OwnedFd> {
        self.config(libc::FSCONFIG_CMD_CREATE, None, None, 0)?;
        // SAFETY: plain integer arguments; the fs context descriptor is ours.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                self.fd.as_raw_fd(),
                libc::FSMOUNT_CLOEXEC,
                attributes as libc::c_uint,
            )
        };
        owned_fd(ret)
    }

    /// The messages the file system logged about this context (its reasons for refusing an
    /// option), one per line without the severity prefix. Empty when there are none.
    pub fn messages(&self) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            // SAFETY: `buf` is writable for its whole length; the descriptor is ours.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                )
            };
            let Ok(n) = usize::try_from(n) else { break };
            if n == 0 {
                break;
            }
            let line = String::from_utf8_lossy(&buf[..n]);
            out.push(line.get(2..).unwrap_or_default().trim_end().to_string());
        }
        out.join("; ")
    }
}

/// `open_tree(dirfd, path, flags | OPEN_TREE_CLOEXEC)`; with `OPEN_TREE_CLONE` a detached copy.
pub fn open_tree(dir: BorrowedFd<'_>, path: &str, flags: libc::c_uint) -> io::Result<OwnedFd> {
    let path = c_string(path)?;
    // SAFETY: `path` is NUL-terminated and outlives the call; `dir` is a valid descriptor.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            dir.as_raw_fd(),
            path.as_ptr(),
            flags | libc::OPEN_TREE_CLOEXEC,
        )
    };
    owned_fd(ret)
}

/// A detached recursive copy of the tree at `path` (absolute, in the caller's mount namespace).
pub fn clone_tree(path: &str) -> io::Result<OwnedFd> {
    let cwd = current_dir_fd();
    open_tree(
        cwd,
        path,
        libc::OPEN_TREE_CLONE | libc::AT_RECURSIVE as libc::c_uint,
    )
}

/// `AT_FDCWD` as a descriptor for the `*at` calls above (only used with absolute paths).
fn current_dir_fd() -> BorrowedFd<'static> {
    // SAFETY: AT_FDCWD is a sentinel the kernel accepts wherever a directory descriptor is
    // expected; it is never closed or read as a real descriptor.
    unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) }
}

/// Attaches the detached mount `tree` onto `path` below `dir` ("" means `dir` itself).
pub fn move_mount(tree: BorrowedFd<'_>, dir: BorrowedFd<'_>, path: &str) -> io::Result<()> {
    let from = c_string("")?;
    let to = c_string(path)?;
    let mut flags = libc::MOVE_MOUNT_F_EMPTY_PATH;
    if path.is_empty() {
        flags |= libc::MOVE_MOUNT_T_EMPTY_PATH;
    }
    // SAFETY: both strings are NUL-terminated and outlive the call; both descriptors are valid.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            from.as_ptr(),
            dir.as_raw_fd(),
            to.as_ptr(),
            flags,
        )
    };
    check(ret).map(drop)
}

/// Sets `MOUNT_ATTR_*` flags on the whole mount tree of `tree` (a detached or attached mount).
pub fn set_attributes(
    tree: BorrowedFd<'_>,
    set: u64,
    userns: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let empty = c_string("")?;
    let mut attr = libc::mount_attr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |fd| fd.as_raw_fd() as u64),
    };
    // SAFETY: `attr` is a valid mount_attr whose size is passed along; `empty` is NUL-terminated;
    // the descriptor is valid for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &mut attr as *mut libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    check(ret).map(drop)
}

/// The unique id of the mount that `fd` lies on (`statx` `STATX_MNT_ID_UNIQUE`, Linux 6.8): what
/// tells a mount the daemon made from another one later mounted at the same place.
pub fn mount_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // Only the unique id: the reusable one could name a later mount at the same place.
    const STATX_MNT_ID_UNIQUE: libc::c_uint = 0x4000;
    let empty = c_string("")?;
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `stx` is writable and of the size the kernel expects; `empty` is NUL-terminated.
    let ret = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            STATX_MNT_ID_UNIQUE,
            &mut stx,
        )
    };
    check(libc::c_long::from(ret))?;
    if stx.stx_mask & STATX_MNT_ID_UNIQUE == 0 {
        return Err(io::Error::other(
            "the kernel reports no unique mount id (Linux 6.8 or newer needed)",
        ));
    }
    Ok(stx.stx_mnt_id)
}
