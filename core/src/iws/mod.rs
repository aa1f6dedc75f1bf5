//! The in-workspace service (`iws.InWorkspaceService`), served on each workspace's own socket:
//! every call acts on the container of the socket's workspace, for a caller inside that
//! container (behaviour spec, section InWorkspaceService; runtime spec). The main listener and
//! the in-process surfaces have no caller identity and are refused.
//!
//! Files: `socket` (the sockets and their callers), `caller` (the caller check), `limits` (the
//! rate-limit table), `pid` (PIDs of the container), `idmap` (WriteIDMapping), `mounts` (proc,
//! sysfs, NFS), `nfs` (MountNfs checks), `userns` (PrepareForUserNS and the shifted root, with
//! `dev`, `shift` and the `prepared` records), `cgroups` (the workspace cgroups,
//! EvacuateCGroup), `network` (SetupPairVeths), `teardown` (Teardown, WipingTeardown,
//! dispose). Kernel calls are in `crate::sys`.

mod caller;
pub(crate) mod cgroups;
mod dev;
mod idmap;
mod info;
mod limits;
mod mounts;
mod network;
mod nfs;
mod pid;
mod prepared;
mod records;
mod shift;
pub(crate) mod socket;
mod teardown;
mod userns;

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Instant;

use wsd_proto::iws::{
    MountNfsRequest, MountNfsResponse, MountProcRequest, MountProcResponse, UmountNfsRequest,
    UmountNfsResponse, UmountProcRequest, UmountProcResponse, WorkspaceInfoRequest,
    WorkspaceInfoResponse, WriteIdMappingRequest, WriteIdMappingResponse,
};

use crate::background::Background;
use crate::call::CallContext;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::runtime::{Container, RuntimeService};
use crate::workspace::store::{Lifecycle, Store, Workspace};
use limits::RateLimits;
use mounts::{Kind, Place};

pub(crate) struct IwsService {
    config: Arc<Config>,
    store: Arc<Store>,
    runtime: Arc<RuntimeService>,
    background: Background,
    limits: RateLimits,
    sampler: info::Sampler,
    mounts: records::MountRecords,
    prepared: Arc<prepared::PreparedRecords>,
    /// The user namespace that probes whether a root can be idmapped (made at first use).
    probe_userns: crate::sync::Mutex<Option<Arc<std::os::fd::OwnedFd>>>,
    /// This service, for work that outlives a call (dispose).
    me: std::sync::Weak<IwsService>,
    /// Namespace work (each step a thread of its own) in flight per workspace.
    in_flight: crate::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

/// Namespace operations of one workspace that run at once; more wait their turn.
const CONCURRENT_PER_WORKSPACE: usize = 4;

/// What a Mount* call mounts.
enum NewMount {
    Proc,
    Sysfs,
    Nfs(nfs::NfsMount),
}

impl NewMount {
    fn kind(&self) -> Kind {
        match self {
            NewMount::Proc => Kind::Proc,
            NewMount::Sysfs => Kind::Sysfs,
            NewMount::Nfs(_) => Kind::Nfs,
        }
    }
}

/// The workspace and container a call acts on, once the caller passed the checks.
struct Target {
    workspace: Arc<Workspace>,
    container: Arc<Container>,
}

impl IwsService {
    pub(crate) fn new(
        config: Arc<Config>,
        store: Arc<Store>,
        runtime: Arc<RuntimeService>,
        background: Background,
    ) -> Arc<IwsService> {
        let area = store.area().clone();
        Arc::new_cyclic(|me| IwsService {
            config,
            store,
            runtime,
            background,
            limits: RateLimits::default(),
            sampler: info::Sampler::default(),
            mounts: records::MountRecords::new(area.root()),
            prepared: Arc::new(prepared::PreparedRecords::new(area.root())),
            probe_userns: crate::sync::Mutex::new(None),
            me: me.clone(),
            in_flight: crate::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// A turn for namespace work of workspace `id`.
    async fn turn(&self, id: &str) -> tokio::sync::OwnedSemaphorePermit {
        let slots = self
            .in_flight
            .lock()
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(CONCURRENT_PER_WORKSPACE)))
            .clone();
        // The semaphore is never closed.
        match slots.acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the per-workspace semaphore is never closed"),
        }
    }

    /// The checks every call passes, in this order: over a workspace socket, a container
    /// attached, the caller inside it, within the rate limit of the method called.
    fn target(&self, ctx: &CallContext) -> Result<Target> {
        let method = ctx.method;
        let caller = ctx
            .caller
            .as_ref()
            .ok_or(Error::NotOnWorkspaceSocket(method))?;
        let workspace = self
            .store
            .get(&caller.workspace)
            .ok_or_else(|| Error::WorkspaceNotFound(caller.workspace.clone()))?;
        let container = self
            .runtime
            .container(&workspace)
            .ok_or_else(|| Error::NoContainer(caller.workspace.clone()))?;
        caller::check(caller, &container)?;
        self.limits
            .take(&caller.workspace, container.pid(), method, Instant::now())?;
        Ok(Target {
            workspace,
            container,
        })
    }

    pub(crate) async fn write_id_mapping(
        self: Arc<Self>,
        req: WriteIdMappingRequest,
        ctx: CallContext,
    ) -> Result<WriteIdMappingResponse> {
        let target = self.target(&ctx)?;
        let ranges = if req.gid {
            &self.config.iws.gid_map
        } else {
            &self.config.iws.uid_map
        };
        let text = idmap::map_text(&req.mapping, ranges)?;
        let file = if req.gid { "gid_map" } else { "uid_map" };
        let me = self.clone();
        // One piece of background work: the map and the shifted root it may complete belong
        // together, whether or not the caller waits.
        self.background
            .detached(async move {
                let container = target.container.clone();
                let process = tokio::task::spawn_blocking(move || {
                    let process = pid::translate(&container, req.pid)?;
                    write_map(&process, file, &text)?;
                    Ok::<_, Error>(process)
                })
                .await
                .map_err(Error::internal)??;
                me.shift_root_for(&target, process).await?;
                Ok(WriteIdMappingResponse::default())
            })
            .await
    }

    /// Builds `what` for the process the container knows as `pid` and mounts it at `at`, then
    /// records the mount. One piece of background work: a caller that goes away half-way cannot
    /// leave a mount that is not recorded (and so could not be unmounted).
    async fn mount(
        self: &Arc<Self>,
        target: Target,
        what: NewMount,
        pid: i64,
        at: String,
    ) -> Result<()> {
        self.mounts
            .check_room(&target.workspace, &target.container)
            .await?;
        let me = self.clone();
        let kind = what.kind();
        let work = async move {
            let _turn = me.turn(&target.workspace.id).await;
            let container = target.container.clone();
            let proc_wanted = matches!(what, NewMount::Proc);
            // /proc reads and the proc's own mount calls, on a blocking thread.
            let (place, built, holder) = tokio::task::spawn_blocking(move || {
                let process = pid::translate(&container, pid)?;
                let place = Place::of(&process)?;
                let holder = pid::identity(&process);
                let built = if proc_wanted {
                    let ns = process.pid_namespace().map_err(|e| {
                        Error::KernelRefused(format!("cannot read the PID namespace: {e}"))
                    })?;
                    mounts::masked_proc(ns.as_fd())?
                } else {
                    // sysfs and network file systems are made in the network namespace.
                    Place::network_namespace(&process)?
                };
                Ok::<_, Error>((place, built, holder))
            })
            .await
            .map_err(Error::internal)??;
            let tree = match what {
                NewMount::Proc => built,
                NewMount::Sysfs => mounts::masked_sysfs(built).await?,
                NewMount::Nfs(nfs) => {
                    mounts::network_fs(built, "nfs4", nfs.source, nfs.options).await?
                }
            };
            // proc and sysfs of the same process at the same place are the same mount: a
            // repeated call finds its earlier mount and mounts nothing twice.
            let ours = match kind {
                Kind::Proc | Kind::Sysfs => {
                    me.mounts
                        .ours(&target.workspace, &target.container, kind.name())
                        .await
                }
                _ => Vec::new(),
            };
            let Some(mount_id) = place.attach_unless_ours(tree, at.clone(), ours).await? else {
                tracing::info!(id = %target.workspace.id, kind = kind.name(), target = %at, "mounted already");
                return Ok(());
            };
            tracing::info!(id = %target.workspace.id, kind = kind.name(), target = %at, "mounted");
            me.mounts
                .add(
                    &target.workspace,
                    &target.container,
                    kind.name(),
                    mount_id,
                    at,
                    holder,
                )
                .await
        };
        self.background.detached(work).await
    }

    /// Unmounts what this service mounted (of `kind`) at `at`; nothing of it there is success.
    async fn unmount(&self, target: Target, kind: Kind, pid: i64, at: String) -> Result<()> {
        let ours = self
            .mounts
            .ours(&target.workspace, &target.container, kind.name())
            .await;
        let _turn = self.turn(&target.workspace.id).await;
        let container = target.container.clone();
        let place = tokio::task::spawn_blocking(move || {
            let process = pid::translate(&container, pid)?;
            Place::of(&process)
        })
        .await
        .map_err(Error::internal)??;
        match place.detach(at.clone(), ours).await? {
            Some(gone) => {
                tracing::info!(id = %target.workspace.id, kind = kind.name(), target = %at, "unmounted");
                self.mounts
                    .remove(&target.workspace, &target.container, gone)
                    .await
            }
            None => Ok(()),
        }
    }

    pub(crate) async fn mount_proc(
        self: Arc<Self>,
        req: MountProcRequest,
        ctx: CallContext,
    ) -> Result<MountProcResponse> {
        let target = self.target(&ctx)?;
        self.mount(target, NewMount::Proc, req.pid, req.target)
            .await?;
        Ok(MountProcResponse {})
    }

    pub(crate) async fn umount_proc(
        self: Arc<Self>,
        req: UmountProcRequest,
        ctx: CallContext,
    ) -> Result<UmountProcResponse> {
        let target = self.target(&ctx)?;
        self.unmount(target, Kind::Proc, req.pid, req.target)
            .await?;
        Ok(UmountProcResponse {})
    }

    pub(crate) async fn mount_sysfs(
        self: Arc<Self>,
        req: MountProcRequest,
        ctx: CallContext,
    ) -> Result<MountProcResponse> {
        let target = self.target(&ctx)?;
        self.mount(target, NewMount::Sysfs, req.pid, req.target)
            .await?;
        Ok(MountProcResponse {})
    }

    pub(crate) async fn umount_sysfs(
        self: Arc<Self>,
        req: UmountProcRequest,
        ctx: CallContext,
    ) -> Result<UmountProcResponse> {
        let target = self.target(&ctx)?;
        self.unmount(target, Kind::Sysfs, req.pid, req.target)
            .await?;
        Ok(UmountProcResponse {})
    }

    pub(crate) async fn mount_nfs(
        self: Arc<Self>,
        req: MountNfsRequest,
        ctx: CallContext,
    ) -> Result<MountNfsResponse> {
        let target = self.target(&ctx)?;
        let checked = nfs::check(&req.source, &req.args)?;
        self.mount(target, NewMount::Nfs(checked), req.pid, req.target)
            .await?;
        Ok(MountNfsResponse {})
    }

    pub(crate) async fn umount_nfs(
        self: Arc<Self>,
        req: UmountNfsRequest,
        ctx: CallContext,
    ) -> Result<UmountNfsResponse> {
        let target = self.target(&ctx)?;
        self.unmount(target, Kind::Nfs, req.pid, req.target).await?;
        Ok(UmountNfsResponse {})
    }
}

impl IwsService {
    /// Starts the CPU sampler behind WorkspaceInfo: one pass over the running containers every
    /// `period`, on a blocking thread.
    pub(crate) fn start_sampler(self: &Arc<Self>, period: std::time::Duration) {
        let me = Arc::downgrade(self);
        self.background.every(period, "the CPU sampler", move || {
            if let Some(me) = me.upgrade() {
                me.sampler.sample(&me.runtime.running());
            }
            Ok(())
        });
    }

    /// WorkspaceInfo of both services: CPU and memory use and limits of the caller's container.
    pub(crate) async fn workspace_info(
        self: Arc<Self>,
        _req: WorkspaceInfoRequest,
        ctx: CallContext,
    ) -> Result<WorkspaceInfoResponse> {
        use wsd_proto::iws::{Cpu, Memory, Resources};
        let target = self.target(&ctx)?;
        // Read right here on the async worker: a few small files of procfs and cgroupfs, which
        // the kernel fills from memory (no disk wait). A hop to a blocking thread would add two
        // thread wake-ups per call, about a third of its latency once the threads sat idle.
        let container = &target.container;
        let reading = self.sampler.read(container).ok_or_else(|| {
            Error::KernelRefused(format!(
                "cannot read the CPU and memory figures of workspace {}: its container \
                 stopped, or its cgroup has no cpu/cpuacct and memory hierarchy (v1) or \
                 cpu and memory controllers (v2) to read",
                target.workspace.id
            ))
        })?;
        let cpu_used = self
            .sampler
            .cpu_used(&target.workspace.id, target.workspace.generation, container)
            .unwrap_or(0);
        let cpu_limit = reading
            .cpu_limit_millis
            .unwrap_or_else(|| info::cpus_of(container.pid()));
        let node_memory = info::node_memory();
        let memory_limit = reading.memory_limit.map_or(node_memory, |l| {
            if node_memory > 0 {
                l.min(node_memory)
            } else {
                l
            }
        });
        Ok(WorkspaceInfoResponse {
            resources: Some(Resources {
                cpu: Some(Cpu {
                    used: cpu_used,
                    limit: cpu_limit,
                }),
                memory: Some(Memory {
                    used: reading.memory_used,
                    limit: memory_limit,
                }),
            }),
        })
    }
}

/// Writes `text` into the `file` (`uid_map` or `gid_map`) of `process` in one write; the same
/// map written before counts as written (blocking).
fn write_map(process: &crate::sys::process::Pidfd, file: &str, text: &str) -> Result<()> {
    let path = format!("/proc/{}/{file}", process.pid());
    let mut map = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::KernelRefused(format!("cannot open the {file}: {e}")))?;
    if !process.is_alive() {
        return Err(Error::InvalidArgument(format!(
            "process {} ended",
            process.pid()
        )));
    }
    // One write: the kernel takes a map once, in a single write.
    match map.write(text.as_bytes()) {
        Ok(n) if n == text.len() => Ok(()),
        Ok(_) => Err(Error::KernelRefused(format!(
            "the kernel took only part of the {file}"
        ))),
        Err(e) => {
            let existing = std::fs::read_to_string(&path).unwrap_or_default();
            if idmap::same_map(&existing, text) {
                return Ok(());
            }
            Err(Error::KernelRefused(format!(
                "the kernel refused the {file} (a map can be written once, ranges must not overlap): {e}"
            )))
        }
    }
}

impl Lifecycle for IwsService {
    fn registered(&self, _ws: &Arc<Workspace>) {}

    fn disposing(&self, ws: &Arc<Workspace>) -> futures::future::BoxFuture<'static, ()> {
        let (Some(me), Some(container)) = (self.me.upgrade(), self.runtime.container(ws)) else {
            return Box::pin(async {});
        };
        let ws = ws.clone();
        Box::pin(async move {
            if !me.undo(&ws, &container, true).await {
                tracing::warn!(id = %ws.id, "the container's state was not all undone at dispose");
            }
        })
    }

    fn removed(&self, ws: &Workspace) {
        // Limits are per container; a workspace of the same id registered meanwhile has none yet.
        self.limits.forget(&ws.id);
        self.mounts.forget(ws);
        self.prepared.remove(&ws.id);
        self.in_flight.lock().remove(&ws.id);
    }
}

#[cfg(test)]
mod tests;
