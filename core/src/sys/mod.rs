//! The kernel calls of the in-workspace side that neither `nix` nor the standard library wrap:
//! the new mount API, pidfds, namespace ioctls, and running work inside another process's
//! namespaces. The only module of core allowed `unsafe`; each block says why it is sound.
//!
//! Everything here is a thin, typed wrapper: policy (what to mount where, who may ask) lives in
//! `crate::iws`, so it can be tested without root.

pub mod btrfs;
pub mod command;
pub mod mount_api;
pub mod namespaces;
pub mod process;
pub mod userns;
pub mod xfs;

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// `io::Error` of a syscall's return value.
fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A new file descriptor returned by a syscall, owned from here on.
fn owned_fd(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = check(ret)? as RawFd;
    // SAFETY: the kernel just returned `fd` as a new descriptor of this process; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A C string of a path or key; an interior NUL cannot name anything, so it is an invalid input.
fn c_string(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in a name"))
}

#[cfg(test)]
mod tests;
