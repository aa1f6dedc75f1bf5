//! The device files PrepareForUserNS puts into the container's `/dev`: `net/tun` and `fuse`
//! (which a user namespace cannot create itself) and a `kmsg` placeholder (an empty file that a
//! workspace can mount over). Runs on a thread inside the container's mount namespace, with paths
//! resolved in its root; nothing that exists already is replaced or changed, so it is idempotent.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};
use serde::{Deserialize, Serialize};

use crate::confine::InRoot;
use crate::error::{Error, Result};

/// A file of `/dev` this service provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DevFile {
    Tun,
    Fuse,
    KmsgPlaceholder,
}

impl DevFile {
    pub const ALL: [DevFile; 3] = [DevFile::Tun, DevFile::Fuse, DevFile::KmsgPlaceholder];

    /// The folder below `/dev` and the name.
    fn place(self) -> (Option<&'static str>, &'static str) {
        match self {
            DevFile::Tun => (Some("net"), "tun"),
            DevFile::Fuse => (None, "fuse"),
            DevFile::KmsgPlaceholder => (None, "kmsg"),
        }
    }

    /// The character device numbers, `None` for the placeholder.
    fn device(self) -> Option<(u64, u64)> {
        match self {
            DevFile::Tun => Some((10, 200)),
            DevFile::Fuse => Some((10, 229)),
            DevFile::KmsgPlaceholder => None,
        }
    }

    pub fn path(self) -> String {
        match self.place() {
            (Some(dir), name) => format!("/dev/{dir}/{name}"),
            (None, name) => format!("/dev/{name}"),
        }
    }
}

fn refused(what: String, e: impl std::fmt::Display) -> Error {
    Error::KernelRefused(format!("{what}: {e}"))
}

/// The folder that holds `file`, created (0755) when it is missing.
fn folder_of(root: &InRoot, file: DevFile) -> Result<OwnedFd> {
    let dev = root
        .open_dir_path("/dev")
        .map_err(|e| refused("the container has no usable /dev".into(), e))?;
    let Some(sub) = file.place().0 else {
        return Ok(dev);
    };
    match nix::sys::stat::mkdirat(&dev, sub, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(refused(format!("cannot create /dev/{sub}"), e)),
    }
    root.open_dir_path(&format!("/dev/{sub}"))
        .map_err(|e| refused(format!("cannot open /dev/{sub}"), e))
}

/// Whether what is at `name` in `dir` is `file` as this service makes it.
fn is_ours(dir: impl AsFd, name: &str, file: DevFile) -> io::Result<bool> {
    let st = nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    Ok(match file.device() {
        Some((major, minor)) => {
            kind == SFlag::S_IFCHR
                && (libc::major(st.st_rdev), libc::minor(st.st_rdev))
                    == (major as u32, minor as u32)
        }
        None => kind == SFlag::S_IFREG && st.st_size == 0,
    })
}

/// Creates the files that are missing, owned by `owner` (the host ids of the workspace's root);
/// returns those it created. The calling thread must have umask 0 (its own, after
/// `unshare(CLONE_FS)`), so the modes are exactly the ones given.
pub fn prepare(root: &InRoot, owner: (u32, u32)) -> Result<Vec<DevFile>> {
    let mut created = Vec::new();
    for file in DevFile::ALL {
        let dir = folder_of(root, file)?;
        let name = file.place().1;
        let made = match file.device() {
            Some((major, minor)) => nix::sys::stat::mknodat(
                &dir,
                name,
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                libc::makedev(major as u32, minor as u32),
            ),
            None => nix::fcntl::openat(
                &dir,
                name,
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map(drop),
        };
        match made {
            Ok(()) => {
                nix::unistd::fchownat(
                    &dir,
                    name,
                    Some(Uid::from_raw(owner.0)),
                    Some(Gid::from_raw(owner.1)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| refused(format!("cannot hand {} to the workspace", file.path()), e))?;
                created.push(file);
            }
            // Something is there already: the container brought it, or an earlier call made it.
            Err(Errno::EEXIST) => {
                if file.device().is_some() && !is_ours(&dir, name, file).unwrap_or(false) {
                    tracing::info!(
                        path = file.path(),
                        "left alone: it exists and is another file"
                    );
                }
            }
            Err(e) => return Err(refused(format!("cannot create {}", file.path()), e)),
        }
    }
    Ok(created)
}

/// Removes the files of `created` that are still what this service made (WipingTeardown), and
/// `/dev/net` when it is left empty. Missing files count as removed.
pub fn remove(root: &InRoot, created: &[DevFile]) -> Result<()> {
    for &file in created {
        let (sub, name) = file.place();
        let dir = match sub {
            Some(sub) => root.open_dir_path(&format!("/dev/{sub}")),
            None => root.open_dir_path("/dev"),
        };
        let Ok(dir) = dir else { continue };
        match is_ours(&dir, name, file) {
            Ok(true) => {
                match nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(e) => return Err(refused(format!("cannot remove {}", file.path()), e)),
                }
            }
            Ok(false) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(refused(format!("cannot inspect {}", file.path()), e)),
        }
        if let Some(sub) = sub {
            if let Ok(dev) = root.open_dir_path("/dev") {
                // Fails (and is left) when anything else is in it.
                let _ = nix::unistd::unlinkat(&dev, sub, nix::unistd::UnlinkatFlags::RemoveDir);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    fn root_of(dir: &std::path::Path) -> InRoot {
        InRoot::open(dir).expect("root")
    }

    #[test]
    fn makes_the_files_once_with_the_owner_and_removes_only_its_own() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: creating device files needs root");
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("dev")).expect("dev");
        // The calling thread's umask would shape the modes; the namespace thread sets 0.
        let created = std::thread::spawn({
            let path = dir.path().to_path_buf();
            move || {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).expect("own fs context");
                nix::sys::stat::umask(Mode::empty());
                let root = root_of(&path);
                let first = prepare(&root, (33333, 33334)).expect("prepare");
                let second = prepare(&root, (33333, 33334)).expect("prepare again");
                (first, second)
            }
        })
        .join()
        .expect("thread");
        assert_eq!(created.0, DevFile::ALL.to_vec());
        assert!(created.1.is_empty(), "nothing made twice: {:?}", created.1);

        let tun = std::fs::symlink_metadata(dir.path().join("dev/net/tun")).expect("tun");
        assert!(tun.file_type().is_char_device());
        assert_eq!(
            (libc::major(tun.rdev()), libc::minor(tun.rdev())),
            (10, 200)
        );
        assert_eq!(tun.permissions().mode() & 0o7777, 0o666);
        assert_eq!((tun.uid(), tun.gid()), (33333, 33334));
        let fuse = std::fs::symlink_metadata(dir.path().join("dev/fuse")).expect("fuse");
        assert_eq!(
            (libc::major(fuse.rdev()), libc::minor(fuse.rdev())),
            (10, 229)
        );
        let kmsg = std::fs::symlink_metadata(dir.path().join("dev/kmsg")).expect("kmsg");
        assert!(kmsg.is_file() && kmsg.len() == 0);

        // A file the container put in place of one is not removed.
        std::fs::remove_file(dir.path().join("dev/fuse")).expect("rm");
        std::fs::write(dir.path().join("dev/fuse"), b"theirs").expect("theirs");
        remove(&root_of(dir.path()), &created.0).expect("remove");
        assert!(
            !dir.path().join("dev/net").exists(),
            "empty /dev/net removed"
        );
        assert!(!dir.path().join("dev/kmsg").exists());
        assert_eq!(
            std::fs::read(dir.path().join("dev/fuse")).expect("kept"),
            b"theirs"
        );
        remove(&root_of(dir.path()), &created.0).expect("idempotent");
    }

    #[test]
    fn a_symlinked_dev_cannot_lead_outside_the_root() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: creating device files needs root");
            return;
        }
        let outside = tempfile::tempdir().expect("outside");
        let dir = tempfile::tempdir().expect("root");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("dev")).expect("symlink");
        let _ = prepare(&root_of(dir.path()), (33333, 33333));
        assert_eq!(
            std::fs::read_dir(outside.path()).expect("read").count(),
            0,
            "nothing created outside the root"
        );
    }
}
