//! The runtime service: which container runs each workspace (`wsdaemon.WorkspaceRuntime`,
//! runtime spec section 1). An attachment is persisted with the workspace and checked again after
//! a restart; the in-workspace service looks containers up here.

pub mod container;
pub(crate) mod containerd;

use std::collections::HashMap;
use std::sync::Arc;

use wsd_proto::wsdaemon::{
    AttachContainerRequest, AttachContainerResponse, DetachContainerRequest,
    DetachContainerResponse,
};

pub use container::Container;

use crate::call::CallContext;
use crate::error::{Error, Result};
use crate::sync::Mutex;
use crate::workspace::store::{Lifecycle, Store, Workspace};

pub(crate) struct RuntimeService {
    store: Arc<Store>,
    /// By workspace id, for the workspace of that generation.
    attached: Mutex<HashMap<String, (u64, Arc<Container>)>>,
    /// Attach and detach one at a time: each changes the store and the map together.
    changing: tokio::sync::Mutex<()>,
}

impl RuntimeService {
    pub(crate) fn new(store: Arc<Store>) -> RuntimeService {
        RuntimeService {
            store,
            attached: Mutex::new(HashMap::new()),
            changing: tokio::sync::Mutex::new(()),
        }
    }

    /// The container attached to workspace `ws`, if it still runs.
    pub(crate) fn container(&self, ws: &Workspace) -> Option<Arc<Container>> {
        self.attached
            .lock()
            .get(&ws.id)
            .filter(|(generation, c)| *generation == ws.generation && c.is_running())
            .map(|(_, c)| c.clone())
    }

    /// Every attached container that still runs, with its workspace id and generation.
    pub(crate) fn running(&self) -> Vec<(String, u64, Arc<Container>)> {
        self.attached
            .lock()
            .iter()
            .filter(|(_, (_, c))| c.is_running())
            .map(|(id, (generation, c))| (id.clone(), *generation, c.clone()))
            .collect()
    }

    pub(crate) async fn attach_container(
        self: Arc<Self>,
        req: AttachContainerRequest,
        _ctx: CallContext,
    ) -> Result<AttachContainerResponse> {
        let _one_change = self.changing.lock().await;
        let ws = self.store.find(&req.id)?;
        if let Some(current) = self.container(&ws) {
            if i64::from(current.pid()) == req.pid
                && (req.cgroup_path.is_empty() || req.cgroup_path == current.record().cgroup_path)
            {
                return Ok(AttachContainerResponse {});
            }
        }
        let (pid, cgroup) = (req.pid, req.cgroup_path.clone());
        let container = tokio::task::spawn_blocking(move || Container::open(pid, &cgroup, None))
            .await
            .map_err(Error::internal)??;
        let record = container.record().clone();
        // Fails for a workspace disposed meanwhile.
        self.store
            .update(&ws, |r| r.container = Some(record))
            .await?;
        let replaced = self
            .attached
            .lock()
            .insert(req.id.clone(), (ws.generation, Arc::new(container)));
        match replaced {
            Some((_, old)) => {
                tracing::info!(id = %req.id, old_pid = old.pid(), pid = req.pid, "container replaced")
            }
            None => tracing::info!(id = %req.id, pid = req.pid, "container attached"),
        }
        Ok(AttachContainerResponse {})
    }

    pub(crate) async fn detach_container(
        self: Arc<Self>,
        req: DetachContainerRequest,
        _ctx: CallContext,
    ) -> Result<DetachContainerResponse> {
        let _one_change = self.changing.lock().await;
        let ws = self.store.find(&req.id)?;
        if ws.record().container.is_some() {
            self.store.update(&ws, |r| r.container = None).await?;
        }
        if self.attached.lock().remove(&req.id).is_some() {
            tracing::info!(id = %req.id, "container detached");
        }
        Ok(DetachContainerResponse {})
    }

    /// Takes hold again of a container persisted by an earlier run (blocking): kept only if the
    /// same process still runs.
    fn reattach(&self, ws: &Workspace) {
        let Some(record) = ws.record().container else {
            // A workspace of an id used before starts without a container.
            self.attached.lock().remove(&ws.id);
            return;
        };
        match Container::open(
            i64::from(record.pid),
            &record.cgroup_path,
            Some(record.start_time),
        ) {
            Ok(container) => {
                tracing::info!(id = %ws.id, pid = record.pid, "container attached again after a restart");
                self.attached
                    .lock()
                    .insert(ws.id.clone(), (ws.generation, Arc::new(container)));
            }
            Err(e) => {
                // The record is replaced by the next attach or detach; until then lookups find
                // no container.
                self.attached.lock().remove(&ws.id);
                tracing::warn!(id = %ws.id, pid = record.pid, error = %e, "the attached container is gone");
            }
        }
    }
}

impl Lifecycle for RuntimeService {
    fn registered(&self, ws: &Arc<Workspace>) {
        self.reattach(ws);
    }

    fn removed(&self, ws: &Workspace) {
        let mut attached = self.attached.lock();
        if attached
            .get(&ws.id)
            .is_some_and(|(generation, _)| *generation == ws.generation)
        {
            attached.remove(&ws.id);
        }
    }
}

#[cfg(test)]
mod tests;
