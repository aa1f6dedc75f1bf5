//! A container's cgroups for the in-workspace tests (as root): one folder of the same name on the
//! cgroup v2 hierarchy and on the v1 `cpu`, `cpuacct` and `memory` hierarchies (one folder where
//! a hierarchy has several of them), wherever this node mounts
//! them (found in /proc/self/mountinfo), with a CPU and a memory limit. Removed on drop with
//! everything below them, children first; processes still there go back to the root cgroup.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct TestCgroups {
    /// The v2 folder (if the node has a v2 hierarchy) and its mount.
    pub v2: Option<(PathBuf, PathBuf)>,
    /// The v1 `cpu`, `cpuacct` and `memory` folders with their mounts.
    pub v1: Vec<(PathBuf, PathBuf)>,
}

/// Mount points of the v2 hierarchy and of the v1 hierarchies with `cpu` or `memory`.
fn mounts() -> (Option<PathBuf>, Vec<(String, PathBuf)>) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let (mut v2, mut v1) = (None, Vec::new());
    for line in info.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let point = PathBuf::from(before.split(' ').nth(4).unwrap_or_default());
        let mut after = after.split(' ');
        match (after.next(), after.nth(1)) {
            (Some("cgroup2"), _) => {
                v2.get_or_insert(point);
            }
            (Some("cgroup"), Some(options)) => {
                for c in ["cpu", "cpuacct", "memory"] {
                    if options.split(',').any(|o| o == c) {
                        v1.push((c.to_string(), point.clone()));
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    (v2, v1)
}

impl TestCgroups {
    /// Creates `name` on each hierarchy; CPU limited to 1.5 CPUs and memory to `memory_limit`
    /// bytes on v1 (this node keeps those controllers there).
    pub fn create(name: &str, memory_limit: u64) -> TestCgroups {
        let (v2_mount, v1_mounts) = mounts();
        let v2 = v2_mount.map(|mount| {
            let dir = mount.join(name);
            std::fs::create_dir(&dir).expect("v2 cgroup");
            (dir, mount)
        });
        let mut v1 = Vec::new();
        for (controller, mount) in v1_mounts {
            let dir = mount.join(name);
            std::fs::create_dir(&dir).expect("v1 cgroup");
            v1.push((dir.clone(), mount));
            let write = |file: &str, value: &str| {
                std::fs::write(dir.join(file), value).unwrap_or_else(|e| panic!("{file}: {e}"))
            };
            match controller.as_str() {
                "cpu" => {
                    write("cpu.cfs_period_us", "100000");
                    write("cpu.cfs_quota_us", "150000");
                }
                "memory" => write("memory.limit_in_bytes", &memory_limit.to_string()),
                _ => {}
            }
        }
        TestCgroups { v2, v1 }
    }

    /// Moves the process `pid` (host PID) into the v1 folders and into `v2_below` of the v2
    /// folder ("" for the folder itself; e.g. "workspace/user" once the daemon made it).
    pub fn enter(&self, pid: i32, v2_below: &str) {
        for (dir, _) in &self.v1 {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string()).expect("enter v1");
        }
        if let Some((dir, _)) = &self.v2 {
            std::fs::write(dir.join(v2_below).join("cgroup.procs"), pid.to_string())
                .expect("enter v2");
        }
    }

    /// The v2 folder (`rel` below it).
    pub fn v2_dir(&self, rel: &str) -> Option<PathBuf> {
        self.v2.as_ref().map(|(dir, _)| dir.join(rel))
    }

    /// The host PIDs in `rel` below the v2 folder.
    pub fn v2_procs(&self, rel: &str) -> Vec<i32> {
        let Some(dir) = self.v2_dir(rel) else {
            return Vec::new();
        };
        let mut pids: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        pids.sort_unstable();
        pids
    }

    /// The v1 folder of the hierarchy that has `file` (e.g. `memory.usage_in_bytes`).
    pub fn v1_file(&self, file: &str) -> Option<PathBuf> {
        self.v1
            .iter()
            .map(|(dir, _)| dir.join(file))
            .find(|f| f.exists())
    }
}

fn remove_tree(dir: &Path, mount: &Path) {
    let mut dirs = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        if let Ok(entries) = std::fs::read_dir(&d) {
            todo.extend(
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        dirs.push(d);
    }
    for d in dirs.iter().rev() {
        for p in std::fs::read_to_string(d.join("cgroup.procs"))
            .unwrap_or_default()
            .split_whitespace()
        {
            let _ = std::fs::write(mount.join("cgroup.procs"), p);
        }
        for _ in 0..100 {
            if std::fs::remove_dir(d).is_ok() || !d.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        if let Some((dir, mount)) = &self.v2 {
            remove_tree(dir, mount);
        }
        for (dir, mount) in &self.v1 {
            remove_tree(dir, mount);
        }
    }
}
