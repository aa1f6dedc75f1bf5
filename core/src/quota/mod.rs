//! Storage quotas of workspace content (InitWorkspace's `storage_quota_bytes`).
//!
//! One backend per working area, chosen once at start by probing the area's file system:
//! - **btrfs qgroups**: a workspace with a quota gets its content folder as a subvolume; its
//!   level-0 qgroup `0/<subvolume id>` gets the limit on referenced bytes. Quotas must be enabled
//!   on the file system (`btrfs quota enable`); with `quota.btrfs_enable` the daemon enables them
//!   itself at start. Disposal destroys the subvolume and removes the qgroup; a kernel that still
//!   accounts the freed space refuses that (EBUSY) and drops the qgroup itself once the space is
//!   freed (Linux 6.7+).
//! - **XFS project quotas** (mounted with `prjquota`): the content folder gets a project id,
//!   inherited by everything created in it, and the project a block limit. The id is derived from
//!   the instance id (`PROJECT_IDS`), skipping ids that still charge inodes; disposal clears the
//!   limit.
//! - **none**: any other file system, or quotas off. A request for a quota is logged once per
//!   working area, counted in `wsd_quota_unsupported_total`, and the workspace runs without one.
//!
//! Nothing is recorded besides `storage_quota_bytes` in the workspace record: the subvolume id
//! and the project id are read back from the content folder itself, so a restarted daemon sets
//! the limit of a reloaded AVAILABLE workspace again and disposes it the same way.
//!
//! The limit is soft during init (not set at all) and hard after: InitWorkspace sets it once the
//! content is in place, before the workspace becomes AVAILABLE, so a restored backup larger than
//! the quota still initializes and the next write fails (EDQUOT).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::QuotaConfig;
use crate::sys::{btrfs, xfs};

/// Project ids the daemon gives XFS content folders: `START + hash(instance id) % LEN`, then the
/// next ones while a candidate still charges inodes. Ids below `START` are left to the
/// administrator's own projects.
pub const PROJECT_IDS: std::ops::Range<u32> = 0x4000_0000..0x7fff_ffff;
/// Candidates tried before giving up.
const PROJECT_ID_TRIES: u32 = 1024;

#[derive(Debug)]
enum Backend {
    None { reason: String },
    Btrfs,
    Xfs { assign: std::sync::Mutex<()> },
}

/// The quota backend of one working area.
#[derive(Debug)]
pub(crate) struct Quota {
    area: PathBuf,
    backend: Backend,
    /// Whether "not available" was logged already.
    noticed: AtomicBool,
}

fn open_dir(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

fn parent_and_name(path: &Path) -> io::Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a content folder has a parent and a name",
        )),
    }
}

/// `statfs` magic numbers (`linux/magic.h`).
const BTRFS_MAGIC: i64 = 0x9123_683e;
const XFS_MAGIC: i64 = 0x5846_5342;

/// The `statfs` magic number of the file system that holds `file`.
#[allow(clippy::unnecessary_cast)] // `f_type`'s type differs between targets.
fn fs_magic(file: &File) -> io::Result<i64> {
    let stat = nix::sys::statfs::fstatfs(file).map_err(io::Error::from)?;
    // Magic numbers are 32 bits; a 32-bit `f_type` would sign-extend.
    Ok(stat.filesystem_type().0 as i64 & 0xffff_ffff)
}

/// The file systems named in log messages.
fn fs_name(magic: i64) -> String {
    match magic {
        BTRFS_MAGIC => "btrfs".into(),
        XFS_MAGIC => "xfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0xef53 => "ext2/3/4".into(),
        0x794c_7630 => "overlayfs".into(),
        0x6969 => "nfs".into(),
        other => format!("file system type {other:#x}"),
    }
}

/// The file system id as `/sys/fs/btrfs` names it.
fn uuid_text(id: &[u8; 16]) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The first project id tried for `id` (FNV-1a, stable across builds and restarts).
fn first_project_id(id: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    PROJECT_IDS.start + (h % u64::from(PROJECT_IDS.end - PROJECT_IDS.start)) as u32
}

fn next_project_id(projid: u32) -> u32 {
    if projid + 1 >= PROJECT_IDS.end {
        PROJECT_IDS.start
    } else {
        projid + 1
    }
}

fn probe_btrfs(dir: &File, config: &QuotaConfig) -> Backend {
    // `/sys/fs/btrfs/<fsid>/qgroups/` exists while quotas are on. Without sysfs to ask, setting
    // the first limit tells (ENOTCONN).
    let enabled = btrfs::fsid(dir.as_fd()).ok().and_then(|id| {
        let fs = Path::new("/sys/fs/btrfs").join(uuid_text(&id));
        fs.exists().then(|| {
            std::fs::read_to_string(fs.join("qgroups/enabled")).is_ok_and(|v| v.trim() == "1")
        })
    });
    if enabled != Some(false) {
        return Backend::Btrfs;
    }
    if !config.btrfs_enable {
        return Backend::None {
            reason: "btrfs quotas are off on its file system (enable them with `btrfs quota \
                     enable`, or set quota.btrfs_enable)"
                .into(),
        };
    }
    match btrfs::enable_quotas(dir.as_fd()) {
        Ok(()) => {
            tracing::info!("enabled btrfs quotas on the working area's file system");
            Backend::Btrfs
        }
        Err(e) => Backend::None {
            reason: format!("btrfs quotas are off and enabling them failed: {e}"),
        },
    }
}

fn probe_xfs(dir: &File) -> Backend {
    match xfs::project_quota_enforced(dir.as_fd()) {
        Ok(true) => Backend::Xfs {
            assign: std::sync::Mutex::new(()),
        },
        Ok(false) => Backend::None {
            reason: "project quotas are not enforced on its XFS file system (mount it with \
                     prjquota)"
                .into(),
        },
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Backend::None {
            reason: "the kernel cannot manage XFS quotas (no quotactl_fd or no quota support)"
                .into(),
        },
        Err(e) => Backend::None {
            reason: format!("cannot read the XFS quota state: {e}"),
        },
    }
}

impl Quota {
    /// Probes the working area `area` (blocking; once at start).
    pub fn probe(area: &Path, config: &QuotaConfig) -> Quota {
        let backend = match open_dir(area).and_then(|dir| Ok((fs_magic(&dir)?, dir))) {
            Err(e) => Backend::None {
                reason: format!("cannot inspect its file system: {e}"),
            },
            Ok((BTRFS_MAGIC, dir)) => probe_btrfs(&dir, config),
            Ok((XFS_MAGIC, dir)) => probe_xfs(&dir),
            Ok((magic, _)) => Backend::None {
                reason: format!(
                    "its file system ({}) has neither qgroups nor project quotas",
                    fs_name(magic)
                ),
            },
        };
        let quota = Quota {
            area: area.to_path_buf(),
            backend,
            noticed: AtomicBool::new(false),
        };
        tracing::info!(
            backend = quota.backend_name(),
            "storage quota backend of the working area"
        );
        quota
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::None { .. } => "none",
            Backend::Btrfs => "btrfs-qgroup",
            Backend::Xfs { .. } => "xfs-project",
        }
    }

    /// Counts a quota that is not enforced and logs the reason the first time only (then true).
    fn not_enforced(&self, id: &str, reason: &str) -> bool {
        metrics::counter!("wsd_quota_unsupported_total").increment(1);
        let first = !self.noticed.swap(true, Ordering::Relaxed);
        if first {
            tracing::warn!(
                id,
                "storage quotas are not available on this working area: {reason}; workspaces run \
                 without a quota"
            );
        }
        first
    }

    /// Creates the (absent) content folder `path`, ready for a limit of `bytes` if that is not 0
    /// (blocking).
    pub fn create_folder(&self, path: &Path, bytes: u64) -> io::Result<()> {
        match &self.backend {
            Backend::Btrfs if bytes > 0 => {
                let (parent, name) = parent_and_name(path)?;
                btrfs::create_subvolume(open_dir(parent)?.as_fd(), name)
            }
            Backend::Xfs { assign } if bytes > 0 => {
                std::fs::create_dir(path)?;
                let folder = open_dir(path)?;
                let area = open_dir(&self.area)?;
                let (_, id) = parent_and_name(path)?;
                // One assignment at a time: a free id is taken before the next one looks.
                let _one = assign.lock().unwrap_or_else(|p| p.into_inner());
                let mut projid = first_project_id(&id.to_string_lossy());
                for _ in 0..PROJECT_ID_TRIES {
                    if xfs::project_inodes(area.as_fd(), projid)? == 0 {
                        xfs::set_project_limit(area.as_fd(), projid, 0)?;
                        return xfs::set_project(folder.as_fd(), projid);
                    }
                    projid = next_project_id(projid);
                }
                Err(io::Error::other("no free XFS project id"))
            }
            _ => std::fs::create_dir(path),
        }
    }

    /// Puts the hard limit of `bytes` on the content folder `path` (blocking). A working area
    /// without quotas logs that once and goes on.
    pub fn enforce(&self, id: &str, path: &Path, bytes: u64) -> io::Result<()> {
        match &self.backend {
            Backend::None { reason } => {
                self.not_enforced(id, reason);
                Ok(())
            }
            Backend::Btrfs => {
                let folder = open_dir(path)?;
                if folder.metadata()?.ino() != btrfs::FIRST_FREE_OBJECTID {
                    return Err(io::Error::other("the content folder is not a subvolume"));
                }
                let subvolume = btrfs::subvolume_id(folder.as_fd())?;
                match btrfs::limit_referenced(folder.as_fd(), subvolume, bytes) {
                    Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                        self.not_enforced(id, "btrfs quotas are off on its file system");
                        Ok(())
                    }
                    other => other,
                }
            }
            Backend::Xfs { .. } => {
                let folder = open_dir(path)?;
                let projid = xfs::get_xattr(folder.as_fd())?.projid;
                if !PROJECT_IDS.contains(&projid) {
                    return Err(io::Error::other(
                        "the content folder has no project id of ours",
                    ));
                }
                xfs::set_project_limit(folder.as_fd(), projid, bytes)
            }
        }
    }

    /// Removes the content folder `path` with its quota; an absent folder is fine (blocking).
    pub fn remove_folder(&self, path: &Path) -> io::Result<()> {
        let folder = match open_dir(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // Not a folder (or a symlink): removed as a file.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::ELOOP)) => {
                return remove_tree(path)
            }
            Err(e) => return Err(e),
        };
        if fs_magic(&folder)? == BTRFS_MAGIC
            && folder.metadata()?.ino() == btrfs::FIRST_FREE_OBJECTID
        {
            return remove_subvolume(path, folder);
        }
        let projid = match self.backend {
            Backend::Xfs { .. } => xfs::get_xattr(folder.as_fd())
                .map(|a| a.projid)
                .unwrap_or(0),
            _ => 0,
        };
        drop(folder);
        remove_tree(path)?;
        if PROJECT_IDS.contains(&projid) {
            // A limit left behind does no harm: the next folder given this id clears it first.
            if let Err(e) = open_dir(&self.area)
                .and_then(|area| xfs::set_project_limit(area.as_fd(), projid, 0))
            {
                tracing::warn!(projid, error = %e, "cannot clear the limit of an XFS project");
            }
        }
        Ok(())
    }
}

fn remove_tree(path: &Path) -> io::Result<()> {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Destroys the subvolume at `path` and its qgroup.
fn remove_subvolume(path: &Path, folder: File) -> io::Result<()> {
    let (parent, name) = parent_and_name(path)?;
    let subvolume = btrfs::subvolume_id(folder.as_fd())?;
    drop(folder);
    let parent = open_dir(parent)?;
    if let Err(e) = btrfs::destroy_subvolume(parent.as_fd(), name) {
        // E.g. a subvolume inside it: emptied file by file, the kernel removes empty subvolumes.
        tracing::debug!(error = %e, "destroying the subvolume failed; removing its files");
        remove_tree(path)?;
    }
    match btrfs::remove_qgroup(parent.as_fd(), subvolume) {
        Ok(()) => Ok(()),
        // Gone already, still accounting freed space (the kernel drops it when done), or quotas
        // off.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT) | Some(libc::EBUSY) | Some(libc::ENOTCONN) | Some(libc::EINVAL)
            ) =>
        {
            Ok(())
        }
        Err(e) => {
            tracing::warn!(subvolume, error = %e, "cannot remove the qgroup of the subvolume");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
