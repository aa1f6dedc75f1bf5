//! The workspace's cgroups on the cgroup v2 hierarchy (behaviour spec, PrepareForUserNS and
//! EvacuateCGroup), the way Gitpod's ws-daemon makes them:
//!
//! ```text
//! <container cgroup>             controllers enabled for its children, no processes
//!   workspace/                   PrepareForUserNS: the container's processes move here;
//!                                EvacuateCGroup: controllers enabled for its children, no processes,
//!                                handed to the workspace's root user
//!     user/                      EvacuateCGroup: every process of the workspace, handed over too
//! ```
//!
//! Each level is made the same way: make the child folder, move every process of the parent
//! into it, *then* enable the parent's controllers for its children. The order matters: the
//! kernel refuses to enable controllers in a cgroup that still holds processes (EBUSY, the "no
//! internal processes" rule), so a process that forks while the move is on is moved in another
//! round. A process that ends between the read of `cgroup.procs` and its move (ESRCH) is no
//! error. On a node without a v2 hierarchy (cgroup v1 only) every step succeeds doing nothing.
//!
//! **Where the hierarchy is**: `iws.cgroup.v2_mount`, else the `cgroup2` mount in
//! `/proc/self/mountinfo` (never a hard-coded path: on a hybrid node it is
//! `/sys/fs/cgroup/unified`). Cgroup paths are read as relative to that mount (the daemon sees
//! the hierarchy from its cgroup namespace's root, as a fresh cgroup2 mount shows it); a path
//! that climbs out of it (`/../..`: the container is outside the daemon's cgroup namespace) is
//! refused rather than followed out of the mount.
//!
//! **Which cgroup is the container's** (see [`container_cgroup`]): AttachContainer recorded a
//! path (the v2 one, or on a hybrid node possibly a v1 one given by the caller), and the init's
//! `0::` line of `/proc/<pid>/cgroup` says where the init is now; once PrepareForUserNS ran, that
//! is `<container>/workspace` or `<container>/workspace/user` (or deeper, below the delegated
//! `user`). The rule: our own suffixes (`/workspace`, `/workspace/user...`) are taken off the
//! recorded path; if the init's path is that path or lies below its `workspace`, it is the
//! container's cgroup; otherwise (the record is a v1 path) the init's path is cut before its
//! first `workspace` component that is last or followed by `user`. Without a running init (a
//! teardown after the container stopped) the recorded path, so cut, is used. A container whose
//! cgroup is the hierarchy's root is refused: its "processes" would be the whole node's.
//!
//! Most logic works on cgroup folders through [`CgroupFs`], so that the order of the steps is
//! tested without root against a model of the kernel's rules (`tests/cgroups.rs`); [`Kernel`] is
//! the real cgroupfs, tested as root.
//!
//! **cgroups-rs** (kata-containers, 0.5.1) was evaluated and is not used: its v2 hierarchy is
//! fixed at `/sys/fs/cgroup` (`UNIFIED_MOUNTPOINT`; `V2`'s root cannot be set), `auto()` takes a
//! hybrid node for v1 and its v1 hierarchy ignores the `cgroup2` mount, so the hybrid layout here
//! cannot be reached through it; its v2 creation enables controllers from the hierarchy's root
//! down, before any process moves, and drops the errors of those writes, the opposite of the
//! move-then-enable order above; and it brings a D-Bus client (zbus) and a second nix. What is
//! left for us, writing PIDs and `+controller` lines to two files, is a few lines of std.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use wsd_proto::iws::{EvacuateCGroupRequest, EvacuateCGroupResponse};

use super::info::{CgroupMounts, ProcessCgroups};
use super::IwsService;
use crate::call::CallContext;
use crate::config::IwsConfig;
use crate::error::{Error, Result};
use crate::runtime::Container;

mod kernel;
pub(crate) use kernel::{CgroupFs, Kernel};

/// The cgroup below the container's that holds the workspace's processes.
pub(crate) const WORKSPACE: &str = "workspace";
/// The cgroup below the workspace's that EvacuateCGroup moves them into.
pub(crate) const USER: &str = "user";

/// Rounds of moving processes before giving up on a cgroup that keeps getting new ones.
const MOVE_ROUNDS: usize = 16;
/// Attempts to remove a cgroup whose last processes are still on their way out.
const REMOVE_ATTEMPTS: usize = 50;

/// A container's cgroup on the v2 hierarchy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Place {
    /// The hierarchy's mount point.
    pub mount: PathBuf,
    /// The container's cgroup below it, `/a/b` (`/`: the root).
    pub cgroup: String,
}

impl Place {
    fn is_root(&self) -> bool {
        self.cgroup.trim_matches('/').is_empty()
    }

    /// The container cgroup's folder. A path that climbs (`..`: the container's cgroup lies
    /// outside the daemon's cgroup namespace) would lead out of the mount, so it is refused.
    fn container(&self) -> Result<Group> {
        if self.cgroup.split('/').any(|c| c == ".." || c == ".") {
            return Err(Error::KernelRefused(
                "the container's cgroup lies outside the daemon's cgroup namespace; run the \
                 daemon in the node's cgroup namespace"
                    .into(),
            ));
        }
        Ok(Group {
            dir: self.mount.join(self.cgroup.trim_start_matches('/')),
            name: "the container cgroup",
        })
    }

    /// The container cgroup, unless it is the hierarchy's root (the whole node's processes).
    fn own_container(&self) -> Result<Group> {
        if self.is_root() {
            return Err(Error::KernelRefused(
                "the container has no cgroup of its own on the cgroup v2 hierarchy (it runs in \
                 the root cgroup), so no workspace cgroup can be made below it"
                    .into(),
            ));
        }
        self.container()
    }
}

/// A cgroup folder and how messages name it (never by its host path).
#[derive(Debug, Clone)]
struct Group {
    dir: PathBuf,
    name: &'static str,
}

impl Group {
    fn child(&self, child: &str, name: &'static str) -> Group {
        Group {
            dir: self.dir.join(child),
            name,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn is(e: &io::Error, errno: i32) -> bool {
    e.raw_os_error() == Some(errno)
}

/// The v2 hierarchy's mount point: the configured one, else the first `cgroup2` mount in
/// `mountinfo`. `None`: a cgroup v1 node.
pub(crate) fn v2_mount(config: &IwsConfig, mountinfo: &str) -> Result<Option<PathBuf>> {
    match &config.cgroup.v2_mount {
        Some(mount) => {
            let cgroup2 = nix::sys::statfs::statfs(mount.as_path())
                .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
                .unwrap_or(false);
            if cgroup2 {
                Ok(Some(mount.clone()))
            } else {
                Err(Error::KernelRefused(
                    "iws.cgroup.v2_mount is not the mount point of a cgroup2 file system".into(),
                ))
            }
        }
        None => Ok(CgroupMounts::from_mountinfo(mountinfo).v2),
    }
}

/// `path` without the cgroups this module makes below a container: cut before the first
/// `workspace` component that is the last one or is followed by `user`.
fn without_ours(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let cut = (0..parts.len())
        .find(|&i| parts[i] == WORKSPACE && (i + 1 == parts.len() || parts[i + 1] == USER));
    let kept = &parts[..cut.unwrap_or(parts.len())];
    format!("/{}", kept.join("/"))
}

/// Whether `path` is `base` or lies below `base`'s `workspace` cgroup.
fn is_ours_below(path: &str, base: &str) -> bool {
    let parts = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (path, base) = (parts(path), parts(base));
    path.starts_with(&base) && path.get(base.len()).is_none_or(|next| next == WORKSPACE)
}

/// The container's cgroup (relative to the v2 mount) from what AttachContainer recorded and the
/// init's `0::` path now (`None` when the init is gone): the rule in the module comment.
pub(crate) fn container_cgroup(recorded: &str, init_v2: Option<&str>) -> Option<String> {
    let recorded = (!recorded.trim().is_empty()).then(|| without_ours(recorded));
    match (recorded, init_v2) {
        (Some(r), Some(now)) if is_ours_below(now, &r) => Some(r),
        (_, Some(now)) => Some(without_ours(now)),
        (Some(r), None) => Some(r),
        (None, None) => None,
    }
}

/// The init's path on the v2 hierarchy now, if it still runs.
fn init_v2(container: &Container) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{}/cgroup", container.pid())).ok()?;
    let v2 = ProcessCgroups::parse(&text).v2?;
    container.is_running().then_some(v2)
}

/// Where the container's cgroup is; `None`: no v2 hierarchy, or nothing known of the container.
fn locate(container: &Container, config: &IwsConfig) -> Result<Option<Place>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(mount) = v2_mount(config, &mountinfo)? else {
        return Ok(None);
    };
    let found = container_cgroup(
        &container.record().cgroup_path,
        init_v2(container).as_deref(),
    );
    Ok(found.map(|cgroup| Place { mount, cgroup }))
}

/// The PIDs listed in a `cgroup.procs`.
fn pids_in(fs: &impl CgroupFs, group: &Group) -> Result<Vec<i32>> {
    let text = fs.read(&group.file("cgroup.procs")).map_err(|e| {
        Error::KernelRefused(format!("cannot read the processes of {}: {e}", group.name))
    })?;
    let mut pids: Vec<i32> = text
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// Moves every process of `from` into `to`, in rounds until `from` has none (a process may fork
/// while the move is on). Processes that end meanwhile are skipped.
fn move_all(fs: &impl CgroupFs, from: &Group, to: &Group) -> Result<()> {
    for _ in 0..MOVE_ROUNDS {
        let pids = pids_in(fs, from)?;
        if pids.is_empty() {
            return Ok(());
        }
        for pid in pids {
            match fs.write(&to.file("cgroup.procs"), &pid.to_string()) {
                Ok(()) => {}
                Err(e) if is(&e, libc::ESRCH) => {}
                Err(e) => {
                    return Err(Error::KernelRefused(format!(
                        "cannot move a process of {} into {}: {e}",
                        from.name, to.name
                    )))
                }
            }
        }
    }
    if pids_in(fs, from)?.is_empty() {
        Ok(())
    } else {
        Err(Error::KernelRefused(format!(
            "{} keeps getting new processes faster than they can be moved out",
            from.name
        )))
    }
}

/// The words of a controller list file.
fn controllers(fs: &impl CgroupFs, group: &Group, file: &str) -> Result<Vec<String>> {
    let text = fs.read(&group.file(file)).map_err(|e| {
        Error::KernelRefused(format!(
            "cannot read the controllers of {}: {e}",
            group.name
        ))
    })?;
    Ok(text.split_whitespace().map(str::to_string).collect())
}

/// Enables for the children of `group` every controller it has that is not enabled yet.
/// `Ok(false)`: the kernel answered EBUSY, processes arrived in `group` since they were moved.
fn enable_controllers(fs: &impl CgroupFs, group: &Group) -> Result<bool> {
    let enabled = controllers(fs, group, "cgroup.subtree_control")?;
    for controller in controllers(fs, group, "cgroup.controllers")? {
        if enabled.contains(&controller) {
            continue;
        }
        let line = format!("+{controller}");
        match fs.write(&group.file("cgroup.subtree_control"), &line) {
            Ok(()) => {}
            Err(e) if is(&e, libc::EBUSY) => return Ok(false),
            Err(e) => {
                return Err(Error::KernelRefused(format!(
                    "cannot enable the {controller} controller for the children of {}: {e}",
                    group.name
                )))
            }
        }
    }
    Ok(true)
}

/// Turns off every controller that `group` enables for its children.
fn disable_controllers(fs: &impl CgroupFs, group: &Group) -> Result<()> {
    for controller in controllers(fs, group, "cgroup.subtree_control")? {
        fs.write(
            &group.file("cgroup.subtree_control"),
            &format!("-{controller}"),
        )
        .map_err(|e| {
            Error::KernelRefused(format!(
                "cannot turn off the {controller} controller of {}: {e}",
                group.name
            ))
        })?;
    }
    Ok(())
}

fn make_dir(fs: &impl CgroupFs, group: &Group) -> Result<()> {
    match fs.make_dir(&group.dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::KernelRefused(format!(
            "cannot create {}: {e}",
            group.name
        ))),
    }
}

/// Gitpod's `evacuateToCGroup`: makes `to` (a cgroup below `from`), moves every process of
/// `from` into it, then enables `from`'s controllers for its children. Idempotent.
fn evacuate_to(fs: &impl CgroupFs, from: &Group, to: &Group) -> Result<()> {
    make_dir(fs, to)?;
    for _ in 0..MOVE_ROUNDS {
        move_all(fs, from, to)?;
        // Not done: a process joined `from` after the move, so move again.
        if enable_controllers(fs, from)? {
            return Ok(());
        }
    }
    Err(Error::KernelRefused(format!(
        "{} keeps getting new processes, so its controllers cannot be enabled for its children",
        from.name
    )))
}

/// Makes `<container>/workspace`, moves the container's processes into it and enables the
/// container cgroup's controllers for it. Processes that joined the container cgroup after
/// EvacuateCGroup go to `workspace/user` instead (the workspace cgroup holds none by then).
pub(crate) fn make_in(fs: &impl CgroupFs, place: &Place) -> Result<()> {
    let container = place.own_container()?;
    if !fs.is_dir(&container.dir) {
        return Err(Error::KernelRefused(
            "the container cgroup does not exist (did the container stop?)".into(),
        ));
    }
    let workspace = container.child(WORKSPACE, "the workspace cgroup");
    let user = workspace.child(USER, "the user cgroup");
    if fs.is_dir(&user.dir) {
        evacuate_to(fs, &container, &user)
    } else {
        evacuate_to(fs, &container, &workspace)
    }
}

/// The folder plus the three files a delegated cgroup's owner writes.
const DELEGATED: [&str; 4] = [
    "",
    "cgroup.procs",
    "cgroup.threads",
    "cgroup.subtree_control",
];

fn delegate(fs: &impl CgroupFs, group: &Group, uid: u32, gid: u32) -> Result<()> {
    for entry in DELEGATED {
        let path = if entry.is_empty() {
            group.dir.clone()
        } else {
            group.file(entry)
        };
        fs.chown(&path, uid, gid).map_err(|e| {
            Error::KernelRefused(format!(
                "cannot hand {} to the workspace's root user: {e}",
                group.name
            ))
        })?;
    }
    Ok(())
}

/// EvacuateCGroup on a v2 hierarchy: the workspace cgroup (made first if PrepareForUserNS did
/// not), its processes moved into `workspace/user`, its controllers enabled for `user`, and both
/// folders (with their `cgroup.procs`, `cgroup.threads`, `cgroup.subtree_control`) handed to
/// `uid`:`gid`. Idempotent.
pub(crate) fn evacuate_in(fs: &impl CgroupFs, place: &Place, uid: u32, gid: u32) -> Result<()> {
    make_in(fs, place)?;
    let workspace = place
        .own_container()?
        .child(WORKSPACE, "the workspace cgroup");
    let user = workspace.child(USER, "the user cgroup");
    evacuate_to(fs, &workspace, &user)?;
    delegate(fs, &workspace, uid, gid)?;
    delegate(fs, &user, uid, gid)
}

/// Every cgroup from `top` down, children before their parents (`top` last). Iterative: the
/// delegated tree may be as deep as its owner made it.
fn depth_first(fs: &impl CgroupFs, top: &Group) -> Result<Vec<Group>> {
    let mut seen = Vec::new();
    let mut todo = vec![top.dir.clone()];
    while let Some(dir) = todo.pop() {
        match fs.subdirs(&dir) {
            Ok(children) => todo.extend(children),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Error::KernelRefused(format!(
                    "cannot list the cgroups below {}: {e}",
                    top.name
                )))
            }
        }
        let name = if dir == top.dir {
            top.name
        } else {
            "a cgroup below the workspace cgroup"
        };
        seen.push(Group { dir, name });
    }
    seen.reverse();
    Ok(seen)
}

/// Undoes [`make_in`] and [`evacuate_in`]: controllers off from the bottom up (a cgroup cannot
/// turn off a controller that a child still enables, and the container cgroup takes processes
/// back only with none enabled), every process below `workspace` back into the container
/// cgroup, then each cgroup removed with `rmdir`, children first. Idempotent; the container's
/// processes may all be gone.
pub(crate) fn remove_in(fs: &impl CgroupFs, place: &Place) -> Result<()> {
    if place.is_root() {
        return Ok(());
    }
    let container = place.container()?;
    let workspace = container.child(WORKSPACE, "the workspace cgroup");
    if !fs.is_dir(&workspace.dir) {
        return Ok(());
    }
    let tree = depth_first(fs, &workspace)?;
    for group in &tree {
        disable_controllers(fs, group)?;
    }
    disable_controllers(fs, &container)?;
    for group in &tree {
        let mut attempt = 0;
        loop {
            move_all(fs, group, &container)?;
            match fs.remove_dir(&group.dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                // A process forked in, or one that ended is not released yet.
                Err(e) if is(&e, libc::EBUSY) && attempt + 1 < REMOVE_ATTEMPTS => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(Error::KernelRefused(format!(
                        "cannot remove {}: {e}",
                        group.name
                    )))
                }
            }
        }
    }
    Ok(())
}

/// PrepareForUserNS's cgroup step (blocking): `<container cgroup>/workspace` made, the
/// container's processes moved into it, the container cgroup's controllers enabled for it.
/// Idempotent, also after a daemon restart. Succeeds doing nothing without a v2 hierarchy.
pub(crate) fn make_workspace_cgroup(container: &Container, config: &IwsConfig) -> Result<()> {
    match locate(container, config)? {
        Some(place) => make_in(&Kernel, &place),
        None => {
            tracing::debug!(
                pid = container.pid(),
                "no cgroup v2 hierarchy: no workspace cgroup"
            );
            Ok(())
        }
    }
}

/// EvacuateCGroup's work (blocking), see [`evacuate_in`]; `root_uid`/`root_gid` are the host
/// ids of the workspace's root (`iws.uid_map.root_range.start`, `iws.gid_map.root_range.start`).
/// Succeeds doing nothing without a v2 hierarchy.
pub(crate) fn evacuate(
    container: &Container,
    config: &IwsConfig,
    root_uid: u32,
    root_gid: u32,
) -> Result<()> {
    evacuate_at(&Kernel, locate(container, config)?, root_uid, root_gid)
}

/// [`evacuate_in`], or nothing at all without a place on a v2 hierarchy.
pub(crate) fn evacuate_at(
    fs: &impl CgroupFs,
    place: Option<Place>,
    root_uid: u32,
    root_gid: u32,
) -> Result<()> {
    match place {
        Some(place) => evacuate_in(fs, &place, root_uid, root_gid),
        None => {
            tracing::debug!("no cgroup v2 hierarchy: nothing to evacuate");
            Ok(())
        }
    }
}

/// Teardown's cgroup step (blocking), see [`remove_in`]. Idempotent; works after the
/// container's processes are gone (the recorded cgroup path is used then).
pub(crate) fn remove_workspace_cgroup(container: &Container, config: &IwsConfig) -> Result<()> {
    match locate(container, config)? {
        Some(place) => remove_in(&Kernel, &place),
        None => Ok(()),
    }
}

impl IwsService {
    /// [`make_workspace_cgroup`] off the async threads; whether it ran (it records that
    /// WipingTeardown has a workspace cgroup to remove).
    pub(super) async fn make_workspace_cgroup(&self, container: &Arc<Container>) -> Result<bool> {
        let (config, container) = (self.config.clone(), container.clone());
        tokio::task::spawn_blocking(move || make_workspace_cgroup(&container, &config.iws))
            .await
            .map_err(Error::internal)??;
        Ok(true)
    }

    /// [`remove_workspace_cgroup`] off the async threads.
    pub(super) async fn remove_workspace_cgroup(&self, container: &Arc<Container>) -> Result<()> {
        let (config, container) = (self.config.clone(), container.clone());
        tokio::task::spawn_blocking(move || remove_workspace_cgroup(&container, &config.iws))
            .await
            .map_err(Error::internal)?
    }

    pub(crate) async fn evacuate_cgroup(
        self: Arc<Self>,
        _req: EvacuateCGroupRequest,
        ctx: CallContext,
    ) -> Result<EvacuateCGroupResponse> {
        let target = self.target(&ctx)?;
        let _turn = self.turn(&target.workspace.id).await;
        let config = self.config.clone();
        let container = target.container.clone();
        tokio::task::spawn_blocking(move || {
            let iws = &config.iws;
            evacuate(
                &container,
                iws,
                iws.uid_map.root_range.start,
                iws.gid_map.root_range.start,
            )
        })
        .await
        .map_err(Error::internal)??;
        tracing::info!(id = %target.workspace.id, "evacuated the workspace cgroup");
        Ok(EvacuateCGroupResponse {})
    }
}
