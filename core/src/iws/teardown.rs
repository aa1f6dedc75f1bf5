//! Teardown and WipingTeardown, and the same undoing when a workspace is disposed of.
//!
//! Teardown undoes what this service left in the running container: every mount it made (the
//! shifted root, proc, sysfs, NFS; each in the mount namespace it was made in, detached lazily
//! with what is below it) and the veth pair with its NAT table. WipingTeardown with `do_wipe`
//! does that and also undoes PrepareForUserNS: the device files it created, the mark folder, the
//! workspace cgroup (its processes go back to the container's cgroup). Everything is idempotent:
//! what is already undone counts as undone. A part that cannot be undone is logged and answered
//! with `success = false`; the other parts are still undone.

use std::sync::Arc;

use wsd_proto::iws::{
    TeardownRequest, TeardownResponse, WipingTeardownRequest, WipingTeardownResponse,
};

use super::mounts::Place;
use super::records::MountRecord;
use super::userns::init_place;
use super::{dev, pid, shift, IwsService, Target};
use crate::call::CallContext;
use crate::error::{Error, Result};
use crate::runtime::Container;
use crate::workspace::store::Workspace;

/// Newest first (unique mount ids grow): a mount made later may lie on one made earlier.
fn unmount_order(records: &mut [MountRecord]) {
    records.sort_by_key(|r| std::cmp::Reverse(r.mount_id));
}

impl IwsService {
    pub(crate) async fn teardown(
        self: Arc<Self>,
        _req: TeardownRequest,
        ctx: CallContext,
    ) -> Result<TeardownResponse> {
        let target = self.target(&ctx)?;
        let me = self.clone();
        let success = self
            .background
            .detached(async move { Ok(me.undo(&target.workspace, &target.container, false).await) })
            .await?;
        Ok(TeardownResponse { success })
    }

    pub(crate) async fn wiping_teardown(
        self: Arc<Self>,
        req: WipingTeardownRequest,
        ctx: CallContext,
    ) -> Result<WipingTeardownResponse> {
        let target: Target = self.target(&ctx)?;
        if !req.do_wipe {
            return Ok(WipingTeardownResponse { success: true });
        }
        let me = self.clone();
        let success = self
            .background
            .detached(async move { Ok(me.undo(&target.workspace, &target.container, true).await) })
            .await?;
        Ok(WipingTeardownResponse { success })
    }

    /// Undoes this service's work in `container` (with `wipe` also PrepareForUserNS's); whether
    /// every part was undone. Failures are logged with the workspace id.
    pub(super) async fn undo(
        &self,
        ws: &Workspace,
        container: &Arc<Container>,
        wipe: bool,
    ) -> bool {
        let _turn = self.turn(&ws.id).await;
        let mut success = true;
        let mut failed = |what: &str, e: Error| {
            tracing::warn!(id = %ws.id, error = %e, "cannot undo {what}");
            success = false;
        };

        let mut records = self.mounts.all(ws, container).await;
        unmount_order(&mut records);
        for record in records {
            match self.unmount_record(container, &record).await {
                Ok(()) => {
                    if let Err(e) = self.mounts.remove(ws, container, record.mount_id).await {
                        failed("a mount record", e);
                    }
                }
                Err(e) => failed(
                    &format!("the {} mount at {}", record.kind, record.target),
                    e,
                ),
            }
        }

        if let Err(e) = super::network::remove_network(container.clone()).await {
            failed("the network", e);
        }

        if wipe {
            if let Err(e) = self.unprepare(ws, container).await {
                failed("the preparation for a user namespace", e);
            }
        }
        tracing::info!(id = %ws.id, wipe, success, "torn down");
        success
    }

    /// Unmounts one recorded mount in the mount namespace it was made in: its holder's while
    /// that process lives, else the container init's. Not there (any more) counts as done.
    async fn unmount_record(&self, container: &Arc<Container>, record: &MountRecord) -> Result<()> {
        let container = container.clone();
        let holder = record.holder;
        let place = tokio::task::spawn_blocking(move || -> Result<Option<Place>> {
            if let Some(process) = holder.and_then(pid::find) {
                if let Ok(place) = Place::of(&process) {
                    return Ok(Some(place));
                }
            }
            if !container.is_running() {
                return Ok(None);
            }
            init_place(&container).map(Some)
        })
        .await
        .map_err(Error::internal)??;
        let Some(place) = place else {
            // The container is gone, and every mount in its namespaces with it.
            return Ok(());
        };
        match place
            .detach(record.target.clone(), vec![record.mount_id])
            .await
        {
            Ok(_) => Ok(()),
            // The target itself went away: so did whatever was mounted on it.
            Err(Error::InvalidArgument(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Undoes PrepareForUserNS as recorded: device files, the mark folder, the workspace cgroup.
    async fn unprepare(&self, ws: &Workspace, container: &Arc<Container>) -> Result<()> {
        let records = self.prepared.clone();
        let id = ws.id.clone();
        let identity = (container.pid(), container.record().start_time);
        let held = container.clone();
        let found = tokio::task::spawn_blocking(move || {
            let prepared = records.load(&id, identity);
            let place = match &prepared {
                Some(_) if held.is_running() => init_place(&held).ok(),
                _ => None,
            };
            (prepared, place)
        })
        .await
        .map_err(Error::internal)?;
        let (Some(prepared), place) = found else {
            return Ok(());
        };
        if let Some(place) = place {
            let (dev_created, mark_created) = (prepared.dev_created.clone(), prepared.mark_created);
            place
                .inside(move |root, _| {
                    dev::remove(&root, &dev_created)?;
                    if mark_created {
                        shift::remove_mark(&root);
                    }
                    Ok(())
                })
                .await?;
        }
        if prepared.cgroup {
            self.remove_workspace_cgroup(container).await?;
        }
        let records = self.prepared.clone();
        let id = ws.id.clone();
        tokio::task::spawn_blocking(move || records.remove(&id))
            .await
            .map_err(Error::internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str, id: u64) -> MountRecord {
        MountRecord {
            kind: kind.into(),
            mount_id: id,
            target: "/x".into(),
            container: (1, 1),
            holder: None,
        }
    }

    #[test]
    fn newer_mounts_go_first() {
        let mut records = vec![
            record("id-shift", 1),
            record("proc", 2),
            record("sysfs", 3),
            record("id-shift", 4),
        ];
        unmount_order(&mut records);
        let order: Vec<u64> = records.iter().map(|r| r.mount_id).collect();
        assert_eq!(order, vec![4, 3, 2, 1]);
    }
}
