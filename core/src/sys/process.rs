//! Processes held through pidfds, so that a PID recycled by the kernel is never acted on.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::{check, owned_fd};

/// `PIDFD_GET_PID_NAMESPACE` (`_IO(0xFF, 5)`, Linux 6.11): not in libc yet.
const PIDFD_GET_PID_NAMESPACE: libc::Ioctl = 0xFF05;

/// A process held through a pidfd.
#[derive(Debug)]
pub struct Pidfd {
    fd: OwnedFd,
    pid: libc::pid_t,
}

impl Pidfd {
    /// `pidfd_open(pid)`: ESRCH when there is no such process.
    pub fn open(pid: libc::pid_t) -> io::Result<Pidfd> {
        // SAFETY: plain integer arguments.
        let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        owned_fd(ret).map(|fd| Pidfd { fd, pid })
    }

    /// A pidfd received from elsewhere (e.g. SO_PEERPIDFD) for the process `pid`.
    pub fn from_owned(fd: OwnedFd, pid: libc::pid_t) -> Pidfd {
        Pidfd { fd, pid }
    }

    /// The PID in the daemon's PID namespace, as it was when the pidfd was taken.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Whether the process still exists (not yet reaped): what was read about `pid()` since the
    /// pidfd was taken belonged to this process if it does.
    pub fn is_alive(&self) -> bool {
        // SAFETY: signal 0 only checks; NULL info is allowed; the descriptor is ours.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                0,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        check(ret).is_ok()
    }

    /// The process's PID namespace, as an nsfs descriptor.
    pub fn pid_namespace(&self) -> io::Result<OwnedFd> {
        // SAFETY: the ioctl takes no argument pointer (an explicit 0, as the kernel requires);
        // it returns a new descriptor or -1.
        let ret = unsafe { libc::ioctl(self.fd.as_raw_fd(), PIDFD_GET_PID_NAMESPACE, 0) };
        owned_fd(ret as libc::c_long)
    }
}

impl AsFd for Pidfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
