//! [`Beneath`]: file operations on untrusted content below one folder, never following a symlink
//! and never reaching above the folder.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, openat, renameat, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::resolve::{kind_at, openat2_usable, resolve, EntryKind, Scope};
use super::{split_parent, ConfineError};

/// Mode of the folders created on the way.
const FOLDER_MODE: u32 = 0o755;

/// A folder that confines every path below it (see the module docs for the rules).
#[derive(Debug)]
pub struct Beneath {
    root: OwnedFd,
    /// Chosen when the root is opened (tests turn it off per thread, see `with_component_walk`).
    openat2: bool,
}

impl AsFd for Beneath {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }
}

impl Beneath {
    /// Opens the folder `root`. The path is the daemon's own (its working area), not a request's:
    /// only what lies below it is confined.
    pub fn open(root: &Path) -> Result<Beneath, ConfineError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = open(root, flags, Mode::empty()).map_err(|e| match e {
            Errno::ENOENT => ConfineError::NotFound,
            Errno::ENOTDIR => ConfineError::NotAFolder,
            other => ConfineError::io("open", other),
        })?;
        Ok(Beneath::from_fd(fd))
    }

    /// Confines paths below a folder that is already open.
    pub fn from_fd(root: OwnedFd) -> Beneath {
        Beneath {
            root,
            openat2: openat2_usable(),
        }
    }

    /// Opens the existing folder `rel` (`""` is the root itself).
    pub fn open_dir(&self, rel: &Path) -> Result<OwnedFd, ConfineError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
        resolve(
            self.root.as_fd(),
            rel,
            Scope::Beneath,
            flags,
            self.openat2,
            None,
        )
    }

    /// Creates the folders of `rel` (mode 0755) as needed and opens the last one.
    pub fn create_dir_all(&self, rel: &Path) -> Result<OwnedFd, ConfineError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
        let mode = Mode::from_bits_truncate(FOLDER_MODE);
        resolve(
            self.root.as_fd(),
            rel,
            Scope::Beneath,
            flags,
            self.openat2,
            Some(mode),
        )
    }

    /// What `rel` is (not following a symlink there either), or `None` when it, or a folder on
    /// its way, does not exist. A symlink or non-folder on the way is an error.
    pub fn kind_of(&self, rel: &Path) -> Result<Option<EntryKind>, ConfineError> {
        let (dir, name) = split_parent(rel)?;
        match self.open_dir(dir) {
            Ok(dir) => kind_at(&dir, name),
            Err(ConfineError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Names of the regular files directly in folder `rel` whose names are plain ASCII
    /// (`[A-Za-z0-9._-]`, not starting with `.`), so that they can become object names.
    pub fn list_files(&self, rel: &Path) -> Result<Vec<String>, ConfineError> {
        let dir = nix::dir::Dir::from_fd(self.open_dir(rel)?)
            .map_err(|e| ConfineError::io("read folder", e))?;
        let mut names = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| ConfineError::io("read folder", e))?;
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

    /// Reads the regular file `rel` (at most `max` bytes).
    pub fn read_file(&self, rel: &Path, max: u64) -> Result<Vec<u8>, ConfineError> {
        let (dir, name) = split_parent(rel)?;
        let dir = self.open_dir(dir)?;
        let fd = openat(
            dir.as_fd(),
            name,
            // O_NONBLOCK: a FIFO swapped in after listing must not block the open.
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::ELOOP => ConfineError::Symlink,
            Errno::ENOENT => ConfineError::NotFound,
            other => ConfineError::io("open", other),
        })?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(|e| ConfineError::io("stat", e))?;
        if !meta.is_file() {
            return Err(ConfineError::NotAFile);
        }
        let mut bytes = Vec::new();
        file.take(max)
            .read_to_end(&mut bytes)
            .map_err(|e| ConfineError::io("read", e))?;
        Ok(bytes)
    }

    /// Writes `bytes` to `rel` atomically (a temporary file in the same folder, then rename),
    /// creating the folders on the way.
    pub fn write_file_atomically(
        &self,
        rel: &Path,
        bytes: &[u8],
        mode: u32,
    ) -> Result<(), ConfineError> {
        let (dir, name) = split_parent(rel)?;
        let dir = self.create_dir_all(dir)?;
        let (mut file, tmp) = create_temp_file(&dir, name, mode)?;
        if let Err(e) = file.write_all(bytes).and_then(|_| file.sync_all()) {
            remove_temp(&dir, &tmp);
            return Err(ConfineError::io("write", e));
        }
        rename_into_place(&dir, &tmp, name)
    }
}

/// Creates a new, uniquely named temporary file `.<name>.<pid>.<n>.tmp` in the folder `dir`.
pub fn create_temp_file(
    dir: &OwnedFd,
    name: &OsStr,
    mode: u32,
) -> Result<(File, PathBuf), ConfineError> {
    let flags =
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    for attempt in 0..1000u32 {
        let mut tmp = OsString::from(".");
        tmp.push(name);
        tmp.push(format!(".{}.{attempt}.tmp", std::process::id()));
        match openat(
            dir.as_fd(),
            tmp.as_os_str(),
            flags,
            Mode::from_bits_truncate(mode),
        ) {
            Ok(fd) => return Ok((File::from(fd), PathBuf::from(tmp))),
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(ConfineError::io("create", e)),
        }
    }
    Err(ConfineError::io("create", Errno::EEXIST))
}

/// Renames `tmp` over `name` inside the folder `dir`, and removes `tmp` when that fails.
pub fn rename_into_place(dir: &OwnedFd, tmp: &Path, name: &OsStr) -> Result<(), ConfineError> {
    renameat(dir.as_fd(), tmp.as_os_str(), dir.as_fd(), name).map_err(|e| {
        remove_temp(dir, tmp);
        ConfineError::io("rename", e)
    })
}

/// Removes a temporary file created by [`create_temp_file`].
pub fn remove_temp(dir: &OwnedFd, tmp: &Path) {
    let _ = unlinkat(dir.as_fd(), tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
}
