//! PrepareForUserNS, and the shifted root that the WriteIDMapping completing a process's maps
//! mounts (see `shift` for why it happens there).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use wsd_proto::iws::{FsShiftMethod, PrepareForUserNsRequest, PrepareForUserNsResponse};

use super::dev;
use super::mounts::{self, Kind, Place};
use super::pid;
use super::prepared::Prepared;
use super::shift::{self, Shift, MARK};
use super::{IwsService, Target};
use crate::call::CallContext;
use crate::error::{Error, Result};
use crate::runtime::Container;
use crate::sys::process::Pidfd;

/// The place of the container's init: its root and mount namespace (blocking).
pub(super) fn init_place(container: &Container) -> Result<Place> {
    Place::of(&pid::translate(container, 1)?)
}

fn identity_of(container: &Container) -> (i32, u64) {
    (container.pid(), container.record().start_time)
}

impl IwsService {
    /// A user namespace of the daemon's own, mapped like a workspace's root, to ask the kernel
    /// whether a root can be idmapped before the workspace's own namespace exists. Made once.
    async fn probe_namespace(&self) -> Result<Arc<OwnedFd>> {
        if let Some(ns) = self.probe_userns.lock().clone() {
            return Ok(ns);
        }
        let map = |start: u32| format!("0 {start} 1\n");
        let (uid_map, gid_map) = (
            map(self.config.iws.uid_map.root_range.start),
            map(self.config.iws.gid_map.root_range.start),
        );
        let ns = tokio::task::spawn_blocking(move || {
            crate::sys::userns::detached_user_namespace(&uid_map, &gid_map)
        })
        .await
        .map_err(Error::internal)?
        .map_err(|e| {
            Error::KernelRefused(format!(
                "cannot check whether the workspace's root can be idmapped: the daemon could not \
                 make a user namespace mapping root to host ids {} (iws.uid_map.root_range) and \
                 {} (iws.gid_map.root_range); user namespaces may be off on this node \
                 (sysctl user.max_user_namespaces = 0): {e}",
                self.config.iws.uid_map.root_range.start, self.config.iws.gid_map.root_range.start
            ))
        })?;
        let ns = Arc::new(ns);
        *self.probe_userns.lock() = Some(ns.clone());
        Ok(ns)
    }

    pub(crate) async fn prepare_for_user_ns(
        self: Arc<Self>,
        _req: PrepareForUserNsRequest,
        ctx: CallContext,
    ) -> Result<PrepareForUserNsResponse> {
        let target = self.target(&ctx)?;
        let me = self.clone();
        // One piece of background work: a caller that goes away cannot leave a half-made
        // preparation unrecorded.
        let shift = self
            .background
            .detached(async move { me.prepare(target).await })
            .await?;
        let fs_shift = match shift {
            Shift::Idmapped => FsShiftMethod::Idmapped,
            Shift::Shiftfs => FsShiftMethod::Shiftfs,
        };
        Ok(PrepareForUserNsResponse {
            fs_shift: fs_shift as i32,
            persistent_volume_claim: false,
        })
    }

    async fn prepare(self: Arc<Self>, target: Target) -> Result<Shift> {
        let ws = &target.workspace;
        let _turn = self.turn(&ws.id).await;
        let owner = (
            self.config.iws.uid_map.root_range.start,
            self.config.iws.gid_map.root_range.start,
        );
        let probe = self.probe_namespace().await?;
        let ours = self
            .mounts
            .ours(ws, &target.container, Kind::IdShift.name())
            .await;
        let container = target.container.clone();
        let place = tokio::task::spawn_blocking(move || init_place(&container))
            .await
            .map_err(Error::internal)??;
        let (dev_created, mark_created, shift, shiftfs_mount) = place
            .inside(move |root, host_proc| {
                // The thread's own umask (its file-system context is its own): exact modes.
                nix::sys::stat::umask(nix::sys::stat::Mode::empty());
                let dev_created = dev::prepare(&root, owner)?;
                let mark_created = shift::make_mark(&root)?;
                match shift::idmapped_root(&root, probe.as_fd()) {
                    Ok(_probe_copy) => Ok((dev_created, mark_created, Shift::Idmapped, None)),
                    Err(e) if !shift::shiftfs_available() => Err(shift::not_idmappable(e)),
                    Err(_) => {
                        let mark = shift::shiftfs_mark(&root, host_proc.as_fd()).map_err(|e| {
                            Error::KernelRefused(format!("cannot make the shiftfs mark: {e}"))
                        })?;
                        let id = mounts::attach_unless_ours_inside(&root, mark, MARK, &ours)?;
                        Ok((dev_created, mark_created, Shift::Shiftfs, id))
                    }
                }
            })
            .await?;
        if let Some(id) = shiftfs_mount {
            let holder = Some(identity_of(&target.container));
            self.mounts
                .add(
                    ws,
                    &target.container,
                    Kind::IdShift.name(),
                    id,
                    MARK.into(),
                    holder,
                )
                .await?;
        }

        let cgroup = self.make_workspace_cgroup(&target.container).await?;

        let prepared = Prepared {
            container: identity_of(&target.container),
            shift,
            dev_created,
            mark_created,
            cgroup,
        };
        let me = self.clone();
        let id = ws.id.clone();
        tokio::task::spawn_blocking(move || me.prepared.save(&id, prepared))
            .await
            .map_err(Error::internal)??;
        tracing::info!(id = %ws.id, shift = ?shift, "prepared for a user namespace");
        Ok(shift)
    }

    /// After a WriteIDMapping for `process`: once both its maps are written and PrepareForUserNS
    /// chose idmapped mounts, mounts the container's root, idmapped with the process's user
    /// namespace, at the mark in the process's mount namespace. Idempotent.
    pub(super) async fn shift_root_for(&self, target: &Target, process: Pidfd) -> Result<()> {
        let ws = &target.workspace;
        let container = target.container.clone();
        let id = ws.id.clone();
        let prepared_records = self.prepared.clone();
        let found = tokio::task::spawn_blocking(move || -> Result<Option<_>> {
            let wanted = prepared_records
                .load(&id, identity_of(&container))
                .is_some_and(|p| p.shift == Shift::Idmapped);
            let pid = process.pid();
            let written = |file: &str| {
                std::fs::read_to_string(format!("/proc/{pid}/{file}"))
                    .is_ok_and(|map| !map.trim().is_empty())
            };
            if !wanted || !written("uid_map") || !written("gid_map") {
                return Ok(None);
            }
            let userns = std::fs::File::open(format!("/proc/{pid}/ns/user"))
                .map(OwnedFd::from)
                .map_err(|_| Error::InvalidArgument(format!("process {pid} ended")))?;
            let holder = pid::identity(&process);
            let holder_place = Place::of(&process)?;
            Ok(Some((
                userns,
                holder,
                holder_place,
                init_place(&container)?,
            )))
        })
        .await
        .map_err(Error::internal)??;
        let Some((userns, holder, holder_place, init)) = found else {
            return Ok(());
        };
        let ours = self
            .mounts
            .ours(ws, &target.container, Kind::IdShift.name())
            .await;
        let tree = init
            .inside(move |root, _| {
                shift::idmapped_root(&root, userns.as_fd()).map_err(shift::not_idmappable)
            })
            .await?;
        // The same maps written again find the shifted root there already.
        let Some(mount_id) = holder_place
            .attach_unless_ours(tree, MARK.into(), ours)
            .await?
        else {
            return Ok(());
        };
        tracing::info!(id = %ws.id, "mounted the idmapped root at the mark");
        self.mounts
            .add(
                ws,
                &target.container,
                Kind::IdShift.name(),
                mount_id,
                MARK.into(),
                holder,
            )
            .await
    }
}
