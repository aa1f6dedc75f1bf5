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
