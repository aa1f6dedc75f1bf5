//! Helpers shared by the bench binaries: arguments, medians and a scratch tmpfs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The value after `name` on the command line, or `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A scratch folder, on a tmpfs when the bench runs as root (the VM's disk would dominate the
/// figures); unmounted and removed when dropped.
pub struct Scratch {
    path: PathBuf,
    mounted: bool,
}

impl Scratch {
    pub fn new(name: &str, size: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path).expect("scratch folder");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), name])
            .arg(&path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        Scratch { path, mounted }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn describe(&self) -> &'static str {
        if self.mounted {
            "tmpfs"
        } else {
            "NOT tmpfs: run as root for meaningful figures"
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.path).status();
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Runs a bash script in `dir` with `envs` added, with pipefail (a failing `tar` in `tar | zstd`
/// must not count as a fast baseline); returns how long it took.
pub fn sh(script: &str, dir: &Path, envs: &[(&str, &str)]) -> Duration {
    let started = Instant::now();
    let status = Command::new("bash")
        .args(["-c", &format!("set -euo pipefail; {script}")])
        .current_dir(dir)
        .envs(envs.iter().copied())
        .status()
        .expect("run shell");
    assert!(status.success(), "{script} failed: {status}");
    started.elapsed()
}

/// Resets the peak RSS of `pid` (clear_refs 5) so that a later VmHWM covers one phase only.
pub fn reset_peak(pid: i32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

pub fn peak_mib(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// `shared/bench/mkworkspace.py`, found from the current folder upwards, or `$MKWORKSPACE`.
pub fn mkworkspace() -> PathBuf {
    if let Some(p) = std::env::var_os("MKWORKSPACE") {
        return PathBuf::from(p);
    }
    let here = std::env::current_dir().expect("cwd");
    for base in here.ancestors() {
        let candidate = base.join("shared/bench/mkworkspace.py");
        if candidate.is_file() {
            return candidate;
        }
        let sibling = base.join("../shared/bench/mkworkspace.py");
        if sibling.is_file() {
            return sibling;
        }
    }
    panic!("shared/bench/mkworkspace.py not found: set MKWORKSPACE");
}

/// Writes the benchmark tree of `mkworkspace.py` (`size_mib` MiB) into `dir`; returns its summary
/// line (files and bytes).
pub fn generate_workspace(dir: &Path, size_mib: u64) -> String {
    let generated = Command::new("python3")
        .arg(mkworkspace())
        .arg(dir)
        .args(["--size-mib", &size_mib.to_string()])
        .output()
        .expect("run mkworkspace.py");
    assert!(
        generated.status.success(),
        "mkworkspace.py failed: {}",
        String::from_utf8_lossy(&generated.stderr)
    );
    String::from_utf8_lossy(&generated.stdout)
        .trim()
        .to_string()
}

/// Apparent size of a tree.
pub fn du_bytes(dir: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-sb", "--apparent-size"])
        .arg(dir)
        .output()
        .expect("du");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Files, folders and links in a tree.
pub fn count_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("entry");
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            1 + if is_dir { count_entries(&e.path()) } else { 0 }
        })
        .sum()
}
