//! One workspace container as the daemon holds it: its init process through a pidfd, its PID
//! namespace, and what identifies it across daemon restarts (PID and start time).

use std::os::fd::{AsFd, OwnedFd};

use crate::error::{Error, Result};
use crate::sys::namespaces::NamespaceId;
use crate::sys::process::Pidfd;
pub use crate::workspace::state::ContainerRecord;

/// An attached container.
#[derive(Debug)]
pub struct Container {
    record: ContainerRecord,
    init: Pidfd,
    pid_namespace: OwnedFd,
    pid_namespace_id: NamespaceId,
}

/// `/proc/<pid>/stat` field 22 (start time). The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its closing parenthesis.
pub fn start_time_of(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 is the first after the name; 22 is the 20th from there.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// The cgroup of a process from `/proc/<pid>/cgroup`: the v2 line (`0::/path`), else the v1
/// line of the cpu or memory hierarchy.
pub fn cgroup_of(lines: &str) -> Option<String> {
    let mut v1 = None;
    for line in lines.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            return Some(path.to_string());
        }
        if v1.is_none() && controllers.split(',').any(|c| c == "cpu" || c == "memory") {
            v1 = Some(path.to_string());
        }
    }
    v1
}

fn not_a_process(pid: i32) -> Error {
    Error::InvalidArgument(format!("pid {pid}: no such process"))
}

impl Container {
    /// Takes hold of the process `pid` as a workspace container. `expected_start` (after a
    /// restart) must match its start time. Blocking: reads `/proc`.
    pub fn open(pid: i64, cgroup_path: &str, expected_start: Option<u64>) -> Result<Container> {
        let pid = i32::try_from(pid).ok().filter(|p| *p > 0).ok_or_else(|| {
            Error::InvalidArgument(format!("pid must be a positive PID, not {pid}"))
        })?;
        let init = Pidfd::open(pid).map_err(|_| not_a_process(pid))?;
        let stat =
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|_| not_a_process(pid))?;
        let start_time = start_time_of(&stat).ok_or_else(|| not_a_process(pid))?;
        let cgroup_path = if cgroup_path.is_empty() {
            let lines = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .map_err(|_| not_a_process(pid))?;
            cgroup_of(&lines).unwrap_or_default()
        } else {
            cgroup_path.to_string()
        };
        // What was read belongs to the process held by the pidfd only if it still exists.
        if !init.is_alive() {
            return Err(not_a_process(pid));
        }
        if expected_start.is_some_and(|s| s != start_time) {
            return Err(Error::InvalidArgument(format!(
                "pid {pid} is another process than the one attached (it was restarted)"
            )));
        }
        let pid_namespace = init.pid_namespace().map_err(|e| {
            Error::Internal(format!("cannot read the PID namespace of pid {pid}: {e}"))
        })?;
        let pid_namespace_id = NamespaceId::of(pid_namespace.as_fd()).map_err(Error::internal)?;
        let own = std::fs::File::open("/proc/self/ns/pid").map_err(Error::internal)?;
        if NamespaceId::of(own.as_fd()).map_err(Error::internal)? == pid_namespace_id {
            return Err(Error::InvalidArgument(format!(
                "pid {pid} runs in the daemon's own PID namespace: not a container"
            )));
        }
        Ok(Container {
            record: ContainerRecord {
                pid,
                start_time,
                cgroup_path,
            },
            init,
            pid_namespace,
            pid_namespace_id,
        })
    }

    pub fn record(&self) -> &ContainerRecord {
        &self.record
    }

    pub fn pid(&self) -> i32 {
        self.record.pid
    }

    pub fn pid_namespace(&self) -> std::os::fd::BorrowedFd<'_> {
        self.pid_namespace.as_fd()
    }

    pub fn pid_namespace_id(&self) -> NamespaceId {
        self.pid_namespace_id
    }

    /// Whether the container's init still runs.
    pub fn is_running(&self) -> bool {
        self.init.is_alive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_are_read_past_odd_command_names() {
        let stat =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(start_time_of(stat), Some(987654));
        assert_eq!(start_time_of("4242 (x) S 1"), None);
        assert_eq!(start_time_of("garbage"), None);
    }

    #[test]
    fn cgroups_come_from_the_v2_line_else_cpu_or_memory() {
        let hybrid = "12:pids:/p\n4:cpu,cpuacct:/kubepods/pod1/c1\n3:memory:/kubepods/pod1/c1m\n0::/unified/c1\n";
        assert_eq!(cgroup_of(hybrid).as_deref(), Some("/unified/c1"));
        let v1 = "12:pids:/p\n4:cpu,cpuacct:/kubepods/c1\n3:memory:/kubepods/c1m\n";
        assert_eq!(cgroup_of(v1).as_deref(), Some("/kubepods/c1"));
        assert_eq!(cgroup_of("1:name=systemd:/x\n"), None);
    }

    #[test]
    fn processes_that_are_no_container_are_refused_with_the_reason() {
        for pid in [0, -3, i64::from(i32::MAX) + 1] {
            let err = Container::open(pid, "", None).expect_err("not a pid");
            assert!(err.to_string().contains("positive PID"), "{err}");
        }
        let err = Container::open(i64::from(i32::MAX), "", None).expect_err("no process");
        assert!(err.to_string().contains("no such process"), "{err}");
        let me = i64::from(std::process::id());
        let err = Container::open(me, "", None).expect_err("own namespace");
        assert!(err.to_string().contains("not a container"), "{err}");
    }
}
