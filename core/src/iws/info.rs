//! WorkspaceInfo: CPU and memory use and limits of a workspace's container, from its cgroup
//! files (v2, v1, or a hybrid of both), behaviour spec section InWorkspaceService. Memory figures
//! and limits are read when asked (a few small files); CPU use is a rate, so a background sampler
//! reads the usage counter of every attached container once a second and the answer is the last
//! rate: no call ever sleeps.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use crate::runtime::Container;
use crate::sync::Mutex;

/// Where the cgroup hierarchies are mounted, found in `/proc/self/mountinfo`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupMounts {
    /// The unified (v2) hierarchy.
    pub v2: Option<PathBuf>,
    /// v1 hierarchies by controller (`cpu`, `cpuacct`, `memory`, ...).
    pub v1: HashMap<String, PathBuf>,
}

impl CgroupMounts {
    /// Parses mountinfo: `... <mount point> <options> - <fs type> <source> <super options>`.
    pub fn from_mountinfo(mountinfo: &str) -> CgroupMounts {
        let mut found = CgroupMounts::default();
        for line in mountinfo.lines() {
            let Some((before, after)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = before.split(' ').nth(4) else {
                continue;
            };
            let mut after = after.split(' ');
            let (fstype, _source, options) = (after.next(), after.next(), after.next());
            let point = PathBuf::from(unescape(mount_point));
            match fstype {
                Some("cgroup2") => {
                    found.v2.get_or_insert(point);
                }
                Some("cgroup") => {
                    for option in options.unwrap_or_default().split(',') {
                        if !matches!(option, "rw" | "ro") && !option.contains('=') {
                            found.v1.entry(option.to_string()).or_insert(point.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        found
    }

    /// Whether the v2 hierarchy has `controller` (a hybrid node keeps cpu and memory on v1).
    fn v2_has(&self, controller: &str) -> Option<&Path> {
        let root = self.v2.as_deref()?;
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).ok()?;
        controllers
            .split_whitespace()
            .any(|c| c == controller)
            .then_some(root)
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The cgroup path of a process per v1 controller, and its v2 path, from `/proc/<pid>/cgroup`.
#[derive(Debug, Default, PartialEq)]
pub struct ProcessCgroups {
    pub v2: Option<String>,
    pub v1: HashMap<String, String>,
}

impl ProcessCgroups {
    pub fn parse(text: &str) -> ProcessCgroups {
        let mut found = ProcessCgroups::default();
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if controllers.is_empty() {
                found.v2 = Some(path.to_string());
            } else {
                for c in controllers.split(',') {
                    found.v1.insert(c.to_string(), path.to_string());
                }
            }
        }
        found
    }
}

/// A container's resources at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// CPU time used since the cgroup was made, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// The CPU limit in millicores; `None`: unlimited.
    pub cpu_limit_millis: Option<i64>,
    /// Memory in use, without the inactive file cache, in bytes.
    pub memory_used: i64,
    /// The memory limit in bytes; `None`: unlimited.
    pub memory_limit: Option<i64>,
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn number(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}

/// A `key value` line of a `*.stat` file.
fn stat_value(text: &str, key: &str) -> Option<i64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| number(v))?
    })
}

/// The folder of a cgroup below a hierarchy's mount point.
fn folder(mount: &Path, cgroup: &str) -> PathBuf {
    mount.join(cgroup.trim_start_matches('/'))
}

/// v2 `cpu.max` (`max 100000` or `150000 100000`) in millicores.
pub fn v2_cpu_limit(cpu_max: &str) -> Option<i64> {
    let mut parts = cpu_max.split_whitespace();
    let quota: i64 = parts.next()?.parse().ok()?;
    let period: i64 = parts.next()?.parse().ok()?;
    (period > 0).then(|| quota * 1000 / period)
}

/// v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` in millicores (-1: unlimited).
pub fn v1_cpu_limit(quota: i64, period: i64) -> Option<i64> {
    (quota > 0 && period > 0).then(|| quota * 1000 / period)
}

/// A v1 memory limit: unset limits read as a huge page-aligned number.
fn v1_memory_limit(limit: i64) -> Option<i64> {
    (limit > 0 && limit < i64::MAX / 2).then_some(limit)
}

/// Reads what the cgroups of a process say now. `None` when its cgroup files cannot be read.
pub fn read_now(mounts: &CgroupMounts, process: &ProcessCgroups) -> Option<Reading> {
    let (cpu_usage_ns, cpu_limit_millis) = match (mounts.v2_has("cpu"), &process.v2) {
        (Some(root), Some(path)) => {
            let dir = folder(root, path);
            let usage_us = stat_value(&read(&dir.join("cpu.stat"))?, "usage_usec")?;
            let limit = read(&dir.join("cpu.max")).and_then(|m| v2_cpu_limit(&m));
            (usage_us.max(0) as u64 * 1000, limit)
        }
        _ => {
            let acct = folder(mounts.v1.get("cpuacct")?, process.v1.get("cpuacct")?);
            let usage = number(&read(&acct.join("cpuacct.usage"))?)?;
            let limit = match (mounts.v1.get("cpu"), process.v1.get("cpu")) {
                (Some(mount), Some(path)) => {
                    let cpu = folder(mount, path);
                    let quota = read(&cpu.join("cpu.cfs_quota_us")).and_then(|q| number(&q));
                    let period = read(&cpu.join("cpu.cfs_period_us")).and_then(|p| number(&p));
                    quota.zip(period).and_then(|(q, p)| v1_cpu_limit(q, p))
                }
                _ => None,
            };
            (usage.max(0) as u64, limit)
        }
    };
    let (memory_used, memory_limit) = match (mounts.v2_has("memory"), &process.v2) {
        (Some(root), Some(path)) => {
            let dir = folder(root, path);
            let current = number(&read(&dir.join("memory.current"))?)?;
            let inactive = read(&dir.join("memory.stat"))
                .and_then(|s| stat_value(&s, "inactive_file"))
                .unwrap_or(0);
            let limit = read(&dir.join("memory.max")).and_then(|m| number(&m));
            (current - inactive, limit)
        }
        _ => {
            let dir = folder(mounts.v1.get("memory")?, process.v1.get("memory")?);
            let usage = number(&read(&dir.join("memory.usage_in_bytes"))?)?;
            let inactive = read(&dir.join("memory.stat"))
                .and_then(|s| stat_value(&s, "total_inactive_file"))
                .unwrap_or(0);
            let limit = read(&dir.join("memory.limit_in_bytes"))
                .and_then(|l| number(&l))
                .and_then(v1_memory_limit);
            (usage - inactive, limit)
        }
    };
    Some(Reading {
        cpu_usage_ns,
        cpu_limit_millis,
        memory_used: memory_used.max(0),
        memory_limit,
    })
}

/// The CPU use between two readings, in millicores.
pub fn cpu_rate(earlier: (Instant, u64), later: (Instant, u64)) -> i64 {
    let elapsed = later.0.saturating_duration_since(earlier.0).as_nanos();
    if elapsed == 0 {
        return 0;
    }
    let used = u128::from(later.1.saturating_sub(earlier.1));
    i64::try_from(used * 1000 / elapsed).unwrap_or(i64::MAX)
}

/// The node's memory (`MemTotal` of `/proc/meminfo`) in bytes: the limit of an unlimited cgroup.
pub fn node_memory() -> i64 {
    read(Path::new("/proc/meminfo"))
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The last CPU reading of a container and the rate since the one before.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    generation: u64,
    pid: i32,
    at: Instant,
    usage_ns: u64,
    millicores: Option<i64>,
}

/// Reads the cgroups of attached containers; keeps the CPU rate of each.
#[derive(Default)]
pub struct Sampler {
    mounts: OnceLock<CgroupMounts>,
    cpu: Mutex<HashMap<String, CpuSample>>,
}

impl Sampler {
    fn mounts(&self) -> &CgroupMounts {
        self.mounts.get_or_init(|| {
            CgroupMounts::from_mountinfo(
                &read(Path::new("/proc/self/mountinfo")).unwrap_or_default(),
            )
        })
    }

    /// The cgroups of `container` now (blocking: reads a few files).
    pub fn read(&self, container: &Container) -> Option<Reading> {
        let cgroups = read(Path::new(&format!("/proc/{}/cgroup", container.pid())))?;
        let reading = read_now(self.mounts(), &ProcessCgroups::parse(&cgroups))?;
        // What was read belongs to the container only if its init still runs.
        container.is_running().then_some(reading)
    }

    /// One pass over `containers` (workspace id, generation, container): blocking.
    pub fn sample(&self, containers: &[(String, u64, std::sync::Arc<Container>)]) {
        let mut fresh = HashMap::new();
        for (id, generation, container) in containers {
            let Some(reading) = self.read(container) else {
                continue;
            };
            let now = (Instant::now(), reading.cpu_usage_ns);
            let earlier = self
                .cpu
                .lock()
                .get(id)
                .copied()
                .filter(|s| s.generation == *generation && s.pid == container.pid());
            fresh.insert(
                id.clone(),
                CpuSample {
                    generation: *generation,
                    pid: container.pid(),
                    at: now.0,
                    usage_ns: now.1,
                    millicores: earlier.map(|e| cpu_rate((e.at, e.usage_ns), now)),
                },
            );
        }
        // Workspaces gone since the last pass are dropped with it.
        *self.cpu.lock() = fresh;
    }

    /// The CPU use of workspace `id` over the last sampling period, in millicores.
    pub fn cpu_used(&self, id: &str, generation: u64, container: &Container) -> Option<i64> {
        self.cpu
            .lock()
            .get(id)
            .filter(|s| s.generation == generation && s.pid == container.pid())
            .and_then(|s| s.millicores)
    }
}

/// The logical CPUs a process may run on, in millicores: the CPU limit of an unlimited cgroup.
pub fn cpus_of(pid: i32) -> i64 {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(pid))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|c| set.is_set(*c).unwrap_or(false))
                .count()
        })
        .ok()
        .filter(|n| *n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .map_or(1000, |n| n as i64 * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_of_hybrid_and_unified_nodes_are_found() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
            32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
            33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpuacct,cpu\n\
            35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
            40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
            41 31 0:38 / /sys/fs/cgroup/un\\040ified rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let m = CgroupMounts::from_mountinfo(hybrid);
        assert_eq!(m.v2.as_deref(), Some(Path::new("/sys/fs/cgroup/un ified")));
        assert_eq!(m.v1["cpu"], Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(m.v1["cpuacct"], Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m.v1["memory"], Path::new("/sys/fs/cgroup/memory"));
        assert!(!m.v1.contains_key("name=systemd"));
        let unified =
            CgroupMounts::from_mountinfo("25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        assert_eq!(unified.v2.as_deref(), Some(Path::new("/sys/fs/cgroup")));
        assert!(unified.v1.is_empty());
    }

    #[test]
    fn process_cgroups_split_by_controller() {
        let p = ProcessCgroups::parse(
            "4:memory:/ws/a\n2:cpuacct,cpu:/ws/b\n0::/ws/c\n1:name=systemd:/\n",
        );
        assert_eq!(p.v2.as_deref(), Some("/ws/c"));
        assert_eq!(p.v1["memory"], "/ws/a");
        assert_eq!(p.v1["cpu"], "/ws/b");
        assert_eq!(p.v1["cpuacct"], "/ws/b");
    }

    #[test]
    fn limits_keep_fractions_and_unlimited_is_none() {
        assert_eq!(v2_cpu_limit("150000 100000\n"), Some(1500));
        assert_eq!(v2_cpu_limit("max 100000\n"), None);
        assert_eq!(v1_cpu_limit(250_000, 100_000), Some(2500));
        assert_eq!(v1_cpu_limit(-1, 100_000), None);
        assert_eq!(v1_memory_limit(9_223_372_036_854_771_712), None);
        assert_eq!(v1_memory_limit(256 << 20), Some(256 << 20));
    }

    #[test]
    fn cpu_rates_are_millicores() {
        let t0 = Instant::now();
        let t1 = t0 + std::time::Duration::from_secs(2);
        assert_eq!(cpu_rate((t0, 0), (t1, 3_000_000_000)), 1500);
        assert_eq!(cpu_rate((t0, 5), (t0, 9)), 0, "no time passed");
        assert_eq!(cpu_rate((t0, 9), (t1, 5)), 0, "a counter that went back");
        assert!(node_memory() > 0);
    }
}
