//! Helpers shared by the bench binaries: arguments, medians and a scratch tmpfs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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
