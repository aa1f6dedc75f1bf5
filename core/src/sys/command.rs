//! Programs started inside another network namespace.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes `command` join the network namespace `ns` (an nsfs descriptor) between fork and exec,
/// so the program runs there whichever thread spawns it. The descriptor lives in `command`
/// until it is dropped.
pub fn in_network_namespace(command: &mut Command, ns: OwnedFd) -> &mut Command {
    let hook = move || {
        // SAFETY: setns is a single system call, async-signal-safe, as everything between fork
        // and exec must be; the descriptor is owned by this closure and so still open here.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SAFETY: the hook only calls setns and reads errno, both async-signal-safe, allocates
    // nothing and takes no lock, so it is sound in the forked child of a multi-threaded process.
    unsafe { command.pre_exec(hook) }
}
