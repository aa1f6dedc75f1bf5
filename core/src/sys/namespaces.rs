//! Namespaces: their identity, their nesting, PIDs as another PID namespace sees them, and work
//! done inside another process's namespaces on a thread of its own.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sched::{setns, unshare, CloneFlags};

use super::owned_fd;

/// A namespace's identity: device and inode of its nsfs file. Inode numbers are reused once a
/// namespace is gone, so compare only while a descriptor of it is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespaceId {
    pub dev: u64,
    pub ino: u64,
}

impl NamespaceId {
    pub fn of(ns: BorrowedFd<'_>) -> io::Result<NamespaceId> {
        let st = nix::sys::stat::fstat(ns).map_err(io::Error::from)?;
        Ok(NamespaceId {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }
}

/// The parent of a PID (or user) namespace; `None` past the daemon's own (EPERM: the parent is
/// not visible from here).
pub fn parent(ns: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    // SAFETY: NS_GET_PARENT takes no argument and returns a new descriptor or -1.
    let ret = unsafe { libc::ioctl(ns.as_raw_fd(), libc::NS_GET_PARENT) };
    match owned_fd(ret as libc::c_long) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the PID namespace `ns` is `ancestor` or nested (at any depth) below it.
pub fn is_within(ns: OwnedFd, ancestor: NamespaceId) -> io::Result<bool> {
    let mut current = ns;
    // PID namespaces nest at most 32 deep.
    for _ in 0..=32 {
        if NamespaceId::of(current.as_fd())? == ancestor {
            return Ok(true);
        }
        match parent(current.as_fd())? {
            Some(up) => current = up,
            None => return Ok(false),
        }
    }
    Ok(false)
}

/// The PID in the daemon's namespace of the process that the PID namespace `ns` knows as
/// `pid` (Linux 6.11). ESRCH: no such process in that namespace.
pub fn pid_from_namespace(ns: BorrowedFd<'_>, pid: libc::pid_t) -> io::Result<libc::pid_t> {
    // SAFETY: the ioctl takes the PID as its integer argument and returns a PID or -1.
    let ret = unsafe {
        libc::ioctl(
            ns.as_raw_fd(),
            libc::NS_GET_TGID_FROM_PIDNS,
            pid as libc::c_ulong,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The PID that the PID namespace `ns` knows the daemon's process `pid` by.
pub fn pid_in_namespace(ns: BorrowedFd<'_>, pid: libc::pid_t) -> io::Result<libc::pid_t> {
    // SAFETY: as in pid_from_namespace.
    let ret = unsafe {
        libc::ioctl(
            ns.as_raw_fd(),
            libc::NS_GET_TGID_IN_PIDNS,
            pid as libc::c_ulong,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Runs `work` on a new OS thread that first leaves the process's shared file-system context
/// (`unshare(CLONE_FS)`, without which `setns` into a mount namespace fails in a multi-threaded
/// process) and then joins each namespace in `enter` in order. The thread ends with the work, so
/// no other code (runtime workers, a host's threads) ever runs in those namespaces. Open every
/// descriptor the work needs before calling: inside, `/proc` is the other namespace's.
pub async fn run_inside<T, E>(
    enter: Vec<(OwnedFd, CloneFlags)>,
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<io::Error> + Send + 'static,
{
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("wsd-namespace".into())
        .spawn(move || {
            let outcome = (|| {
                unshare(CloneFlags::CLONE_FS).map_err(io::Error::from)?;
                for (ns, kind) in &enter {
                    setns(ns, *kind).map_err(io::Error::from)?;
                }
                work()
            })();
            let _ = done.send(outcome);
        })
        .map_err(E::from)?;
    result.await.map_err(|_| {
        E::from(io::Error::other(
            "the namespace thread ended without an answer",
        ))
    })?
}
