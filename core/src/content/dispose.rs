//! DisposeWorkspace: the final backup, prebuild logs, the git status of the checkout, then the
//! workspace's files. Concurrent calls join one disposal; a finished one answers again from its
//! outcome record.

use std::path::Path;
use std::sync::Arc;

use futures::FutureExt;
use wsd_proto::wsdaemon::{DisposeWorkspaceRequest, DisposeWorkspaceResponse};

use super::ContentService;
use crate::call::CallContext;
use crate::confine::Beneath;
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::workspace::ids::validate_instance_id;
use crate::workspace::outcomes::Keep;
use crate::workspace::state::{ContentState, WorkspaceRecord};
use crate::workspace::store::{InitPhase, Workspace};

/// Prebuild log files uploaded by DisposeWorkspace with `backup_logs`, in `<content>/.gitpod/`.
const LOG_FOLDER: &str = ".gitpod";
const LOG_PREFIX: &str = "prebuild-log-";
const MAX_LOG_BYTES: u64 = 64 << 20;

impl ContentService {
    pub(crate) async fn dispose_workspace(
        self: Arc<Self>,
        req: DisposeWorkspaceRequest,
        ctx: CallContext,
    ) -> Result<DisposeWorkspaceResponse> {
        validate_instance_id(&req.id)?;
        let Some(ws) = self.store.get(&req.id) else {
            return self
                .disposed
                .get(&req.id)
                .await
                .map(|found| found.value)
                .ok_or_else(|| Error::WorkspaceNotFound(req.id.clone()));
        };
        let disposal = {
            let mut slot = ws.dispose.lock();
            match slot.as_ref() {
                Some(running) => running.clone(),
                None => {
                    self.background.check_open()?;
                    let me = self.clone();
                    let target = ws.clone();
                    let shared = self
                        .background
                        .detached(async move {
                            me.run_dispose(target, req.backup, req.backup_logs).await
                        })
                        .boxed()
                        .shared();
                    *slot = Some(shared.clone());
                    shared
                }
            }
        };
        ctx.wait("DisposeWorkspace", disposal).await
    }

    async fn run_dispose(
        &self,
        ws: Arc<Workspace>,
        backup: bool,
        backup_logs: bool,
    ) -> Result<DisposeWorkspaceResponse> {
        let result = self.dispose_steps(&ws, backup, backup_logs).await;
        if result.is_err() {
            // Let a later DisposeWorkspace try again.
            *ws.dispose.lock() = None;
        }
        result
    }

    async fn dispose_steps(
        &self,
        ws: &Arc<Workspace>,
        backup: bool,
        backup_logs: bool,
    ) -> Result<DisposeWorkspaceResponse> {
        if ws.state() == ContentState::SettingUp {
            let mut phase = ws.subscribe_init();
            let failed = phase
                .wait_for(|p| !matches!(p, InitPhase::Running))
                .await
                .map(|p| matches!(&*p, InitPhase::Failed(_)))
                .unwrap_or(true);
            if failed {
                // The failed init already removed everything.
                let outcome = DisposeWorkspaceResponse::default();
                self.disposed
                    .put(&ws.id, outcome.clone(), Keep::ForTtl)
                    .await;
                return Ok(outcome);
            }
        }
        self.store.set_state(ws, ContentState::WrappingUp).await?;
        // Waits for snapshots and backups of this workspace to finish.
        let _exclusive = ws.content_lock.write().await;
        let record = ws.record();
        let storage = self.storage_for(&record);

        if backup {
            match &storage {
                Some(storage) => {
                    let _one_backup = ws.backup_lock.lock().await;
                    self.write_backup(storage, &record).await?;
                }
                None => tracing::info!(id = %ws.id, "remote storage disabled: no final backup"),
            }
        }
        if backup_logs {
            match &storage {
                Some(storage) => self.upload_logs(storage, &record).await,
                None => {
                    tracing::info!(id = %ws.id, "remote storage disabled: prebuild logs not uploaded")
                }
            }
        }

        // The git status of the checkout, after the final backup and before the content goes.
        let content = self.store.area().content_dir(&ws.id);
        let checkout = std::path::PathBuf::from(record.checkout_location.as_deref().unwrap_or(""));
        let git_status = match crate::git::status_of(&self.git, &content, &checkout).await {
            Ok(status) => status,
            Err(e) => {
                tracing::warn!(id = %ws.id, error = %e, "cannot read the git status");
                None
            }
        };
        let outcome = DisposeWorkspaceResponse { git_status };
        // What the in-workspace service did to the container (mounts, network, cgroup).
        self.store.disposing(ws).await;
        // Files first: if they cannot be removed the workspace stays known and a later
        // DisposeWorkspace tries again. The record of the result exists before the instance is
        // forgotten, so repeated calls always find one or the other.
        self.store.remove_files_of(ws).await?;
        self.disposed
            .put(&ws.id, outcome.clone(), Keep::ForTtl)
            .await;
        self.store.forget(ws);
        metrics::counter!("wsd_workspace_disposals_total").increment(1);
        tracing::info!(id = %ws.id, backup, "workspace disposed");
        Ok(outcome)
    }

    /// Uploads `prebuild-log-*` files; failures are logged, never fatal.
    async fn upload_logs(&self, storage: &Storage, record: &WorkspaceRecord) {
        let content = self.store.area().content_dir(&record.id);
        let logs =
            tokio::task::spawn_blocking(move || -> std::io::Result<Vec<(String, Vec<u8>)>> {
                let beneath = Beneath::open(&content)?;
                let mut found = Vec::new();
                for name in beneath.list_files(Path::new(LOG_FOLDER))? {
                    if name.starts_with(LOG_PREFIX) {
                        let bytes =
                            beneath.read_file(&Path::new(LOG_FOLDER).join(&name), MAX_LOG_BYTES)?;
                        found.push((name, bytes));
                    }
                }
                Ok(found)
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|read| read);
        let logs = match logs {
            Ok(logs) => logs,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::warn!(id = %record.id, error = %e, "cannot read prebuild logs");
                return;
            }
        };
        for (name, bytes) in logs {
            let loc = storage.log_location(&record.owner, &record.meta_id, &record.id, &name);
            if let Err(e) = storage.put_bytes(&loc, bytes).await {
                metrics::counter!("wsd_log_upload_failures_total").increment(1);
                tracing::warn!(id = %record.id, object = %loc.qualified(), error = %e, "log upload failed");
            }
        }
    }
}
