//! The in-workspace operations through the dispatch against a real stand-in container (as root),
//! with the caller given as the workspace socket gives it. The socket itself is tested over the
//! wire by the integration tests. Helpers here; the tests by theme in the files below.

mod cgroups;
mod idmap;
mod info;
mod mounts;
mod network;
mod nfs;
mod userns;

use std::path::Path;
use std::sync::Arc;

use wsd_proto::iws::write_id_mapping_request::Mapping;
use wsd_proto::iws::{
    MountNfsRequest, MountNfsResponse, MountProcRequest, MountProcResponse, UmountProcRequest,
    UmountProcResponse, WriteIdMappingRequest, WriteIdMappingResponse,
};

use crate::call::Caller;
use crate::sys::process::Pidfd;
use crate::testing::{call, config, TestContainer};
use crate::{CallContext, Code, Daemon, Result};

pub(super) use crate::testing::init_empty as workspace;

pub(super) async fn attach(d: &Daemon, id: &str, pid: i32) {
    crate::testing::attach(d, id, pid.into())
        .await
        .expect("attach");
}

/// A call as the workspace socket of `id` makes it for the process `peer`.
pub(super) fn from(id: &str, peer: i32) -> CallContext {
    CallContext {
        caller: Some(Caller {
            workspace: id.into(),
            peer: Arc::new(Pidfd::open(peer).expect("peer pidfd")),
        }),
        ..CallContext::default()
    }
}

pub(super) async fn mount_proc(
    d: &Daemon,
    ctx: &CallContext,
    target: &str,
    pid: i64,
) -> Result<MountProcResponse> {
    let req = MountProcRequest {
        target: target.into(),
        pid,
    };
    call(d, "iws.InWorkspaceService/MountProc", req, ctx).await
}

pub(super) async fn umount_proc(
    d: &Daemon,
    ctx: &CallContext,
    target: &str,
    pid: i64,
) -> Result<UmountProcResponse> {
    let req = UmountProcRequest {
        target: target.into(),
        pid,
    };
    call(d, "iws.InWorkspaceService/UmountProc", req, ctx).await
}

/// The id maps of the tests: the container's root to 33333, the other ids from 100000.
pub(super) fn usual_map() -> Vec<Mapping> {
    vec![
        Mapping {
            container_id: 0,
            host_id: 33333,
            size: 1,
        },
        Mapping {
            container_id: 1,
            host_id: 100000,
            size: 65534,
        },
    ]
}

/// Waits until `pid` runs in a user namespace other than the daemon's (`unshare --user` execs
/// its command once the namespace exists).
pub(super) async fn in_own_user_namespace(pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_link(format!("/proc/{pid}/ns/user")).ok()
        == std::fs::read_link("/proc/self/ns/user").ok()
    {
        assert!(std::time::Instant::now() < deadline, "no user namespace");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Whether `path` (as the container's init sees it) is a mount point: another mount than its
/// parent folder's.
pub(super) fn is_mount(container: &TestContainer, path: &Path) -> bool {
    let inside = |p: &Path| {
        let full = Path::new(&format!("/proc/{}/root", container.pid))
            .join(p.strip_prefix("/").expect("absolute"));
        let fd = nix::fcntl::open(
            &full,
            nix::fcntl::OFlag::O_PATH,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        crate::sys::mount_api::mount_id(std::os::fd::AsFd::as_fd(&fd)).expect("mount id")
    };
    inside(path) != inside(path.parent().expect("parent"))
}

/// The names in `dir` as the container's init sees it.
pub(super) fn listing(container: &TestContainer, dir: &Path) -> Vec<String> {
    let inside = Path::new(&format!("/proc/{}/root", container.pid))
        .join(dir.strip_prefix("/").expect("absolute"));
    let mut names: Vec<String> = std::fs::read_dir(inside)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The real tests change the v2 root's `cgroup.subtree_control`: one at a time.
pub(super) static REAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A container cgroup on the v2 hierarchy, removed on drop with everything below it (processes
/// still there go to the root cgroup); hugetlb turned off again at the root if it was turned on
/// here.
pub(super) struct TestV2Cgroup {
    pub(super) mount: std::path::PathBuf,
    pub(super) dir: std::path::PathBuf,
    turned_on_hugetlb: bool,
}

impl TestV2Cgroup {
    pub(super) fn create(name: &str) -> TestV2Cgroup {
        let mounts = crate::iws::info::CgroupMounts::from_mountinfo(
            &std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo"),
        );
        let mount = mounts.v2.expect("a cgroup v2 hierarchy on this node");
        let root_has = |c: &str| {
            std::fs::read_to_string(mount.join("cgroup.subtree_control"))
                .expect("root subtree_control")
                .split_whitespace()
                .any(|w| w == c)
        };
        let turned_on_hugetlb = !root_has("hugetlb");
        if turned_on_hugetlb {
            std::fs::write(mount.join("cgroup.subtree_control"), "+hugetlb").expect("+hugetlb");
        }
        let dir = mount.join(name);
        std::fs::create_dir(&dir).expect("container cgroup");
        TestV2Cgroup {
            mount,
            dir,
            turned_on_hugetlb,
        }
    }

    pub(super) fn enter(&self, pid: i32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).expect("enter");
    }

    pub(super) fn join_command(&self) -> String {
        format!("echo $$ > {}/cgroup.procs", self.dir.display())
    }

    pub(super) fn procs(&self, rel: &str) -> Vec<i32> {
        let mut p: Vec<i32> = std::fs::read_to_string(self.dir.join(rel).join("cgroup.procs"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        p.sort_unstable();
        p
    }

    pub(super) fn words(&self, rel: &str, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(rel).join(file))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    pub(super) fn owner(&self, rel: &str) -> (u32, u32) {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(self.dir.join(rel)).expect("metadata");
        (meta.uid(), meta.gid())
    }
}

impl Drop for TestV2Cgroup {
    fn drop(&mut self) {
        let mut dirs = Vec::new();
        let mut todo = vec![self.dir.clone()];
        while let Some(d) = todo.pop() {
            if let Ok(entries) = std::fs::read_dir(&d) {
                todo.extend(
                    entries
                        .filter_map(|e| e.ok())
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
            dirs.push(d);
        }
        for d in dirs.iter().rev() {
            for p in std::fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .split_whitespace()
            {
                let _ = std::fs::write(self.mount.join("cgroup.procs"), p);
            }
            for _ in 0..100 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        if self.turned_on_hugetlb {
            let _ = std::fs::write(self.mount.join("cgroup.subtree_control"), "-hugetlb");
        }
    }
}
