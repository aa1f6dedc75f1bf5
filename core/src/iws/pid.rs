//! PIDs in requests are PIDs of the workspace container's PID namespace: translated at exactly
//! that level, accepted only for descendants of the container's init, and held through a pidfd
//! so that a recycled PID is never acted on. Blocking (reads `/proc`).

use crate::error::{Error, Result};
use crate::runtime::Container;
use crate::sys::namespaces;
use crate::sys::process::Pidfd;

fn unknown(pid: i64) -> Error {
    Error::InvalidArgument(format!(
        "pid {pid} is not a process of this workspace's container"
    ))
}

/// The parent PID of `pid` (daemon's namespace) from `/proc/<pid>/status`.
fn parent_of(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether `pid` is `ancestor` or one of its descendants.
fn descends_from(mut pid: i32, ancestor: i32) -> bool {
    // A process tree is far shallower than this; the bound only guards against a cycle of
    // recycled PIDs read at different times.
    for _ in 0..4096 {
        if pid == ancestor {
            return true;
        }
        match parent_of(pid) {
            Some(parent) if parent > 0 => pid = parent,
            _ => return false,
        }
    }
    false
}

/// The process the container knows as `pid`, held.
pub fn translate(container: &Container, pid: i64) -> Result<Pidfd> {
    let inner = i32::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| Error::InvalidArgument(format!("pid must be a positive PID, not {pid}")))?;
    let ns = container.pid_namespace();
    let host = namespaces::pid_from_namespace(ns, inner).map_err(|_| unknown(pid))?;
    let held = Pidfd::open(host).map_err(|_| unknown(pid))?;
    // The PID may have been recycled between the lookup and the pidfd: ask again for the held one.
    if namespaces::pid_in_namespace(ns, host).ok() != Some(inner) {
        return Err(unknown(pid));
    }
    if !descends_from(host, container.pid()) || !held.is_alive() {
        return Err(unknown(pid));
    }
    Ok(held)
}

/// A process as records name it: its PID and start time (a recycled PID has another).
/// Blocking (reads `/proc`).
pub fn identity(process: &Pidfd) -> Option<(i32, u64)> {
    let pid = process.pid();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let start = crate::runtime::container::start_time_of(&stat)?;
    process.is_alive().then_some((pid, start))
}

/// The process of a record's `identity`, held, if it still runs. Blocking.
pub fn find(identity: (i32, u64)) -> Option<Pidfd> {
    let held = Pidfd::open(identity.0).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", identity.0)).ok()?;
    (crate::runtime::container::start_time_of(&stat) == Some(identity.1) && held.is_alive())
        .then_some(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_process_descends_from_its_ancestors_only() {
        let me = std::process::id() as i32;
        assert!(descends_from(me, me));
        assert!(descends_from(me, 1), "everything descends from init");
        let parent = parent_of(me).expect("parent");
        assert!(descends_from(me, parent));
        assert!(!descends_from(parent, me));
        assert!(!descends_from(i32::MAX, 1), "no such process");
    }
}
