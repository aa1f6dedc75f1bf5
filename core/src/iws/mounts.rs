//! MountProc / MountSysfs / MountNfs and their unmounts. A file system is built outside the
//! workspace as a detached mount (invisible to every process), masked while still detached, and
//! only then moved onto the target inside the workspace's mount namespace: there is no moment at
//! which an unmasked proc or sysfs is visible in the workspace. Targets are resolved inside the
//! target process's root, never following a symlink out of it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::{open, OFlag};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;

use crate::confine::{kind_at, InRoot};
use crate::error::{Error, Result};
use crate::sys::mount_api::{self, FsContext};
use crate::sys::namespaces::run_inside;
use crate::sys::process::Pidfd;

/// What kind of file system a mount of the in-workspace service is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Proc,
    Sysfs,
    Nfs,
    /// The id-shifted root at the mark (PrepareForUserNS, then WriteIDMapping).
    IdShift,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Proc => "proc",
            Kind::Sysfs => "sysfs",
            Kind::Nfs => "nfs",
            Kind::IdShift => "id-shift",
        }
    }
}

/// Files of proc hidden behind `/dev/null`.
const PROC_NULL_MASKS: &[&str] = &[
    "kcore",
    "keys",
    "sched_debug",
    "timer_list",
    "latency_stats",
    "timer_stats",
];
/// Folders of proc (and sysfs) hidden behind an empty read-only tmpfs.
const PROC_EMPTY_MASKS: &[&str] = &["acpi", "scsi"];
const SYSFS_EMPTY_MASKS: &[&str] = &["firmware"];
/// Parts of proc made read-only.
const PROC_READ_ONLY: &[&str] = &["asound", "bus", "fs", "irq", "sys", "sysrq-trigger"];

const HIDDEN: u64 = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC;

fn kernel(what: &str, e: io::Error) -> Error {
    Error::KernelRefused(format!("{what}: {e}"))
}

/// Whether `name` exists directly below `base` (entries this kernel lacks count as masked).
fn present(base: BorrowedFd<'_>, name: &str) -> io::Result<bool> {
    kind_at(base, std::ffi::OsStr::new(name))
        .map(|kind| kind.is_some())
        .map_err(io::Error::from)
}

/// `/dev/null` over each file, an empty read-only tmpfs over each folder, and read-only copies
/// over the read-only parts, all on the detached tree `base`.
fn mask(base: BorrowedFd<'_>, null: &[&str], empty: &[&str], read_only: &[&str]) -> io::Result<()> {
    for name in null {
        if present(base, name)? {
            let dev_null = mount_api::clone_tree("/dev/null")?;
            mount_api::move_mount(dev_null.as_fd(), base, name)?;
        }
    }
    for name in empty {
        if present(base, name)? {
            let tmpfs = FsContext::open("tmpfs")?;
            tmpfs.set_string("mode", "0555")?;
            let tmpfs = tmpfs.mount(HIDDEN | libc::MOUNT_ATTR_RDONLY)?;
            mount_api::move_mount(tmpfs.as_fd(), base, name)?;
        }
    }
    for name in read_only {
        if present(base, name)? {
            let part = mount_api::open_tree(
                base,
                name,
                libc::OPEN_TREE_CLONE | libc::AT_RECURSIVE as libc::c_uint,
            )?;
            mount_api::set_attributes(part.as_fd(), libc::MOUNT_ATTR_RDONLY, None)?;
            mount_api::move_mount(part.as_fd(), base, name)?;
        }
    }
    Ok(())
}

/// A masked proc of the PID namespace `pid_namespace`, detached.
pub fn masked_proc(pid_namespace: BorrowedFd<'_>) -> Result<OwnedFd> {
    let context = FsContext::open("proc").map_err(|e| kernel("cannot create a proc", e))?;
    context
        .set_fd("pidns", pid_namespace)
        .and_then(|()| context.set_string("source", "proc"))
        .map_err(|e| {
            kernel(
                &format!("cannot configure a proc ({})", context.messages()),
                e,
            )
        })?;
    let tree = context
        .mount(HIDDEN)
        .map_err(|e| kernel("cannot create a proc", e))?;
    mask(
        tree.as_fd(),
        PROC_NULL_MASKS,
        PROC_EMPTY_MASKS,
        PROC_READ_ONLY,
    )
    .map_err(|e| kernel("cannot mask the new proc", e))?;
    Ok(tree)
}

/// A masked sysfs of the network namespace `net_namespace`, detached. sysfs takes the network
/// namespace of the thread that opens it, so that happens on a thread inside it.
pub async fn masked_sysfs(net_namespace: OwnedFd) -> Result<OwnedFd> {
    run_inside(vec![(net_namespace, CloneFlags::CLONE_NEWNET)], || {
        let context = FsContext::open("sysfs")?;
        context.set_string("source", "sysfs")?;
        let tree = context.mount(HIDDEN)?;
        mask(tree.as_fd(), &[], SYSFS_EMPTY_MASKS, &[])?;
        Ok(tree)
    })
    .await
    .map_err(|e| kernel("cannot create a sysfs", e))
}

/// A file system of type `fstype` mounted from `source` with `options`, made in the network
/// namespace `net_namespace` (network file systems connect from there), detached, with `nosuid`
/// and `nodev` forced.
pub async fn network_fs(
    net_namespace: OwnedFd,
    fstype: &'static str,
    source: String,
    options: Vec<(String, Option<String>)>,
) -> Result<OwnedFd> {
    run_inside(vec![(net_namespace, CloneFlags::CLONE_NEWNET)], move || {
        let context = FsContext::open(fstype)?;
        let configured = (|| {
            context.set_string("source", &source)?;
            for (key, value) in &options {
                match value {
                    Some(value) => context.set_string(key, value)?,
                    None => context.set_flag(key)?,
                }
            }
            Ok::<(), io::Error>(())
        })();
        if let Err(e) = configured {
            let why = context.messages();
            return Err(io::Error::new(e.kind(), format!("{e} ({why})")));
        }
        context.mount(libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV)
    })
    .await
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ENODEV) => {
            let what = if fstype.starts_with("nfs") {
                "NFS"
            } else {
                fstype
            };
            Error::KernelRefused(format!(
                "{what} is not supported by this kernel (no {fstype} file system)"
            ))
        }
        _ => kernel(&format!("cannot mount {fstype}"), e),
    })
}

/// What of a process is needed to mount into its view of the world: its root and mount
/// namespace (opened while the pidfd proves the PID still names it), and the daemon's own /proc.
pub struct Place {
    root: OwnedFd,
    mount_namespace: OwnedFd,
    host_proc: OwnedFd,
}

fn open_proc_entry(pid: i32, entry: &str, flags: OFlag) -> io::Result<OwnedFd> {
    open(
        format!("/proc/{pid}/{entry}").as_str(),
        flags | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

impl Place {
    /// Blocking (opens files of `/proc`).
    pub fn of(process: &Pidfd) -> Result<Place> {
        let pid = process.pid();
        let gone = || Error::InvalidArgument(format!("process {pid} ended"));
        let root =
            open_proc_entry(pid, "root", OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(|_| gone())?;
        let mount_namespace =
            open_proc_entry(pid, "ns/mnt", OFlag::O_RDONLY).map_err(|_| gone())?;
        let host_proc = open(
            "/proc",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(Error::internal)?;
        if !process.is_alive() {
            return Err(gone());
        }
        Ok(Place {
            root,
            mount_namespace,
            host_proc,
        })
    }

    /// The network namespace of `process` (blocking).
    pub fn network_namespace(process: &Pidfd) -> Result<OwnedFd> {
        let pid = process.pid();
        let ns = open_proc_entry(pid, "ns/net", OFlag::O_RDONLY)
            .map_err(|_| Error::InvalidArgument(format!("process {pid} ended")))?;
        if !process.is_alive() {
            return Err(Error::InvalidArgument(format!("process {pid} ended")));
        }
        Ok(ns)
    }

    /// Runs `work` on a thread inside the process's mount namespace, with its root and the
    /// daemon's /proc (for magic links to descriptors; the namespace's own /proc does not show
    /// the daemon). The thread has a file-system context and umask of its own.
    pub async fn inside<T: Send + 'static>(
        self,
        work: impl FnOnce(InRoot, OwnedFd) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let Place {
            root,
            mount_namespace,
            host_proc,
        } = self;
        run_inside(
            vec![(mount_namespace, CloneFlags::CLONE_NEWNS)],
            move || Ok(work(InRoot::from_fd(root), host_proc)),
        )
        .await
        .map_err(|e| kernel("cannot enter the workspace's mount namespace", e))?
    }

    /// Moves the detached `tree` onto `target` (a folder as the process sees it) and returns the
    /// id of the new mount, unless one of `ours` is at `target` already (the same call made
    /// before): then nothing is mounted and the answer is `None`.
    pub async fn attach_unless_ours(
        self,
        tree: OwnedFd,
        target: String,
        ours: Vec<u64>,
    ) -> Result<Option<u64>> {
        self.inside(move |root, _| attach_unless_ours_inside(&root, tree, &target, &ours))
            .await
    }

    /// Unmounts the mount at `target` if it is one of `ours` (ids from [`Place::attach_unless_ours`]), with
    /// the mounts below it. Returns the id it unmounted, `None` when none of ours is there.
    pub async fn detach(self, target: String, ours: Vec<u64>) -> Result<Option<u64>> {
        self.inside(move |root, host_proc| detach_inside(&root, host_proc, &target, &ours))
            .await
    }
}

/// On a thread inside the workspace's mount namespace: `tree` onto `target` below `root`.
pub fn attach_inside(root: &InRoot, tree: OwnedFd, target: &str) -> Result<u64> {
    let at = root
        .open_dir_path(target)
        .map_err(|e| e.for_request("target"))?;
    mount_api::move_mount(tree.as_fd(), at.as_fd(), "")
        .map_err(|e| kernel("cannot mount at the target", e))?;
    mount_api::mount_id(tree.as_fd()).map_err(|e| kernel("cannot identify the new mount", e))
}

/// On a thread inside the workspace's mount namespace: [`attach_inside`], unless one of `ours`
/// is at `target` already (then `None`, and `tree` is dropped).
pub fn attach_unless_ours_inside(
    root: &InRoot,
    tree: OwnedFd,
    target: &str,
    ours: &[u64],
) -> Result<Option<u64>> {
    let at = root
        .open_dir_path(target)
        .map_err(|e| e.for_request("target"))?;
    let there = mount_api::mount_id(at.as_fd())
        .map_err(|e| kernel("cannot identify the mount at the target", e))?;
    if ours.contains(&there) {
        return Ok(None);
    }
    attach_inside(root, tree, target).map(Some)
}

/// On a thread inside the workspace's mount namespace: unmounts the mount at `target` if it is
/// one of `ours`.
fn detach_inside(
    root: &InRoot,
    host_proc: OwnedFd,
    target: &str,
    ours: &[u64],
) -> Result<Option<u64>> {
    let at = root
        .open_dir_path(target)
        .map_err(|e| e.for_request("target"))?;
    let id = mount_api::mount_id(at.as_fd())
        .map_err(|e| kernel("cannot identify the mount at the target", e))?;
    if !ours.contains(&id) {
        return Ok(None);
    }
    // The resolved fd names exactly that mount; unmount it through its magic link in the
    // daemon's /proc (where this thread exists), not by a path the workspace could swap.
    let unmount = || -> io::Result<()> {
        nix::unistd::fchdir(&host_proc)?;
        let link = format!("thread-self/fd/{}", at.as_raw_fd());
        // Detached with the masks mounted below it, as one tree.
        nix::mount::umount2(link.as_str(), nix::mount::MntFlags::MNT_DETACH)?;
        Ok(())
    };
    unmount().map_err(|e| kernel("cannot unmount the target", e))?;
    Ok(Some(id))
}
