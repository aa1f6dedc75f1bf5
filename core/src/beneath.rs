//! File operations confined to one folder: paths from requests resolve below it one plain component
//! at a time, each opened relative to its parent with `O_NOFOLLOW`, so neither `..` nor a symlink
//! planted in the tree can lead a write outside the workspace content folder.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{mkdirat, Mode};

use crate::error::{Error, Result};

/// Turns a request path into a relative path below the content root: a leading `/` means the root,
/// `.` segments are dropped, `..` and NUL are refused.
pub fn relative_request_path(field: &str, path: &str) -> Result<PathBuf> {
    if path.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "{field} contains a NUL character"
        )));
    }
    let mut out = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::InvalidArgument(format!(
                    "{field} {path:?} leaves the workspace: '..' is not allowed"
                )))
            }
        }
    }
    Ok(out)
}

fn io_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// A folder that confines every path below it.
pub struct Beneath {
    root: OwnedFd,
}

impl Beneath {
    pub fn open(root: &Path) -> io::Result<Beneath> {
        let fd = File::open(root)?;
        if !fd.metadata()?.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, "not a folder"));
        }
        Ok(Beneath { root: fd.into() })
    }

    /// Opens one plain component (never `..`, see [`Beneath::walk`]) as a folder without
    /// following a symlink: walking a path one such component at a time cannot leave the root.
    fn open_dir_at(parent: &impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
        let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
        openat(parent.as_fd(), name, flags, Mode::empty()).map_err(|e| match e {
            Errno::ELOOP | Errno::ENOTDIR => io::Error::new(
                io::ErrorKind::PermissionDenied,
                "a path component is a symlink or not a folder",
            ),
            other => io_err(other),
        })
    }

    /// Creates the folders of `rel` (mode 0755) as needed and opens the last one. `rel` must be
    /// relative without `..` (see [`relative_request_path`]).
    pub fn create_dir_all(&self, rel: &Path) -> io::Result<OwnedFd> {
        self.walk(rel, true)
    }

    /// Opens the existing folder `rel` without following symlinks.
    pub fn open_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        self.walk(rel, false)
    }

    fn walk(&self, rel: &Path, create: bool) -> io::Result<OwnedFd> {
        let mut current = self.root.try_clone()?;
        for component in rel.components() {
            let Component::Normal(name) = component else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "path is not a plain relative path",
                ));
            };
            if create {
                match mkdirat(current.as_fd(), name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io_err(e)),
                }
            }
            current = Self::open_dir_at(&current, name)?;
        }
        Ok(current)
    }

    /// Names of the regular files directly in folder `rel` whose names are plain ASCII
    /// (`[A-Za-z0-9._-]`), so that they can become object names.
    pub fn list_files(&self, rel: &Path) -> io::Result<Vec<String>> {
        let dir = nix::dir::Dir::from_fd(self.open_dir(rel)?).map_err(io_err)?;
        let mut names = Vec::new();
        for entry in dir {
            let entry = entry.map_err(io_err)?;
            if entry.file_type() != Some(nix::dir::Type::File) {
                continue;
            }
            if let Ok(name) = entry.file_name().to_str() {
                if !name.starts_with('.')
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Reads the regular file `rel` (at most `max` bytes) without following symlinks.
    pub fn read_file(&self, rel: &Path, max: u64) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let (dir, name) = split_parent(rel)?;
        let dir = self.open_dir(dir)?;
        let fd = openat(
            dir.as_fd(),
            name,
            // O_NONBLOCK: a FIFO swapped in after listing must not block the open.
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .map_err(io_err)?;
        let file = File::from(fd);
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let mut bytes = Vec::new();
        file.take(max).read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Writes `bytes` to `rel` atomically: a temporary file in the same folder, then rename.
    pub fn write_file_atomically(&self, rel: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        let (dir, name) = split_parent(rel)?;
        let dir = self.create_dir_all(dir)?;
        let (mut file, tmp) = create_temp_file(&dir, name, mode)?;
        let written = file.write_all(bytes).and_then(|_| file.sync_all());
        if let Err(e) = written {
            let _ = nix::unistd::unlinkat(
                dir.as_fd(),
                tmp.as_os_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
            return Err(e);
        }
        rename_into_place(&dir, &tmp, name)
    }
}

/// Splits `rel` into its folder and file name.
pub fn split_parent(rel: &Path) -> io::Result<(&Path, &OsStr)> {
    match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path names no file",
        )),
    }
}

/// Creates a new, uniquely named temporary file `.<name>.<n>.tmp` in `dir`.
pub fn create_temp_file(dir: &OwnedFd, name: &OsStr, mode: u32) -> io::Result<(File, PathBuf)> {
    for attempt in 0..1000u32 {
        let mut tmp = std::ffi::OsString::from(".");
        tmp.push(name);
        tmp.push(format!(".{}.{attempt}.tmp", std::process::id()));
        let flags =
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(
            dir.as_fd(),
            tmp.as_os_str(),
            flags,
            Mode::from_bits_truncate(mode),
        ) {
            Ok(fd) => return Ok((File::from(fd), PathBuf::from(tmp))),
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(io_err(e)),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "cannot find a free temporary name",
    ))
}

/// Renames `tmp` over `name` inside `dir` and removes `tmp` when that fails.
pub fn rename_into_place(dir: &OwnedFd, tmp: &Path, name: &OsStr) -> io::Result<()> {
    renameat(dir.as_fd(), tmp.as_os_str(), dir.as_fd(), name).map_err(|e| {
        let _ = nix::unistd::unlinkat(
            dir.as_fd(),
            tmp.as_os_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        io_err(e)
    })
}

/// Removes a temporary file created by [`create_temp_file`].
pub fn remove_temp(dir: &OwnedFd, tmp: &Path) {
    let _ = nix::unistd::unlinkat(
        dir.as_fd(),
        tmp.as_os_str(),
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_stay_relative() {
        assert_eq!(
            relative_request_path("f", "/a/./b").ok(),
            Some(PathBuf::from("a/b"))
        );
        assert!(relative_request_path("f", "../x").is_err());
        assert!(relative_request_path("f", "a/../../x").is_err());
        assert!(relative_request_path("f", "a\0b").is_err());
    }

    #[test]
    fn symlinks_in_the_tree_are_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::os::unix::fs::symlink(&outside, root.join("link")).expect("symlink");
        let b = Beneath::open(&root).expect("open");
        assert!(b.create_dir_all(Path::new("link/sub")).is_err());
        assert!(b
            .write_file_atomically(Path::new("link/file"), b"x", 0o644)
            .is_err());
        assert_eq!(std::fs::read_dir(&outside).expect("ls").count(), 0);
        b.write_file_atomically(Path::new("a/b/file"), b"x", 0o644)
            .expect("write inside");
        assert_eq!(std::fs::read(root.join("a/b/file")).expect("read"), b"x");
    }
}
