//! The kernel seam of the workspace cgroups: the few file operations on cgroup folders, and the
//! real cgroupfs behind them (tests put a model of the kernel's rules in its place).

use std::io;
use std::path::{Path, PathBuf};

/// The file operations on cgroup folders that this module makes: the kernel seam.
pub(crate) trait CgroupFs {
    fn read(&self, file: &Path) -> io::Result<String>;
    /// Writes `text` to an existing file, in one write.
    fn write(&self, file: &Path, text: &str) -> io::Result<()>;
    fn is_dir(&self, dir: &Path) -> bool;
    fn make_dir(&self, dir: &Path) -> io::Result<()>;
    /// `rmdir`: cgroups are removed as folders, never by deleting their files.
    fn remove_dir(&self, dir: &Path) -> io::Result<()>;
    /// The folders directly in `dir` (its child cgroups).
    fn subdirs(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Changes the owner of one file or folder (not recursive).
    fn chown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()>;
}

/// The real cgroupfs.
pub(crate) struct Kernel;

impl CgroupFs for Kernel {
    fn read(&self, file: &Path) -> io::Result<String> {
        std::fs::read_to_string(file)
    }

    fn write(&self, file: &Path, text: &str) -> io::Result<()> {
        use std::io::Write;
        // No create: a wrong folder never gets files that look like a cgroup's.
        let mut f = std::fs::OpenOptions::new().write(true).open(file)?;
        match f.write(text.as_bytes())? {
            n if n == text.len() => Ok(()),
            _ => Err(io::Error::new(io::ErrorKind::WriteZero, "short write")),
        }
    }

    fn is_dir(&self, dir: &Path) -> bool {
        dir.is_dir()
    }

    fn make_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir(dir)
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::remove_dir(dir)
    }

    fn subdirs(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                found.push(entry.path());
            }
        }
        Ok(found)
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
    }
}
