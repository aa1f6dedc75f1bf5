//! The content operations of WorkspaceContentService: InitWorkspace, WaitForInit,
//! IsWorkspaceExists, TakeSnapshot, BackupWorkspace, DisposeWorkspace (behaviour spec, section
//! WorkspaceContentService).

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use serde::Serialize;
use wsd_proto::wsdaemon::{
    BackupWorkspaceRequest, BackupWorkspaceResponse, DisposeWorkspaceRequest,
    DisposeWorkspaceResponse, InitWorkspaceRequest, InitWorkspaceResponse,
    IsWorkspaceExistsRequest, IsWorkspaceExistsResponse, SnapshotStatusRequest,
    SnapshotStatusResponse, TakeSnapshotRequest, TakeSnapshotResponse, WaitForInitRequest,
    WaitForInitResponse, WorkspaceContentState, WorkspaceStateRequest, WorkspaceStateResponse,
};

use super::ids::{validate_instance_id, validate_metadata_field};
use super::state::{ContentState, WorkspaceRecord};
use super::store::{DisposeOutcome, InitPhase, Workspace};
use crate::archive::write_archive;
use crate::call::CallContext;
use crate::confine::Beneath;
use crate::daemon::{Daemon, SnapshotPhase};
use crate::error::{Error, Result};
use crate::initializer::{self, InitContext, InitMetric, InitSource, InitTools, Plan};
use crate::storage::{ObjectLocation, Storage, UploadStats};

/// `<content>/.gitpod/ready`
const READY_FILE: &str = ".gitpod/ready";
/// Prebuild log files uploaded by DisposeWorkspace with `backup_logs`, in `<content>/.gitpod/`.
const LOG_FOLDER: &str = ".gitpod";
const LOG_PREFIX: &str = "prebuild-log-";
const MAX_LOG_BYTES: u64 = 64 << 20;

#[derive(Serialize)]
struct ReadyFile<'a> {
    source: InitSource,
    metrics: &'a [InitMetric],
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

fn wrong_state(ws: &Workspace, state: ContentState, operation: &'static str) -> Error {
    Error::WrongState {
        id: ws.id.clone(),
        state: state.name(),
        operation,
        needed: "AVAILABLE",
    }
}

impl Daemon {
    fn workspace(&self, id: &str) -> Result<Arc<Workspace>> {
        validate_instance_id(id)?;
        self.inner
            .store
            .get(id)
            .ok_or_else(|| Error::WorkspaceNotFound(id.to_string()))
    }

    /// The storage a workspace may use: `None` when it is disabled for it or not configured.
    fn storage_for(&self, record: &WorkspaceRecord) -> Option<Arc<Storage>> {
        if record.remote_storage_disabled {
            None
        } else {
            self.inner.storage.clone()
        }
    }

    pub async fn init_workspace(
        &self,
        req: InitWorkspaceRequest,
        ctx: &CallContext,
    ) -> Result<InitWorkspaceResponse> {
        validate_instance_id(&req.id)?;
        let metadata = req
            .metadata
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("metadata is required".into()))?;
        validate_metadata_field("owner", &metadata.owner)?;
        validate_metadata_field("meta_id", &metadata.meta_id)?;
        if req.storage_quota_bytes < 0 {
            return Err(Error::InvalidArgument(
                "storage_quota_bytes must not be negative".into(),
            ));
        }
        let plan = Plan::from_request(req.initializer.as_ref())?;
        plan.validate(&self.inner.config.git)?;
        self.check_open()?;

        let record = WorkspaceRecord {
            id: req.id.clone(),
            owner: metadata.owner.clone(),
            meta_id: metadata.meta_id.clone(),
            state: ContentState::SettingUp,
            remote_storage_disabled: req.remote_storage_disabled,
            storage_quota_bytes: req.storage_quota_bytes,
            created_unix_ms: unix_ms(),
            checkout_location: plan
                .checkout_location()
                .map(|p| p.to_string_lossy().into_owned()),
        };
        let ws = self.inner.store.insert_new(record.clone())?;
        let me = self.clone();
        let init = self.detached(async move { me.run_init(ws, plan, record).await });
        ctx.wait("InitWorkspace", init).await?;
        Ok(InitWorkspaceResponse {})
    }

    /// Runs a registered init to its end: AVAILABLE with a ready file, or nothing left behind.
    async fn run_init(
        &self,
        ws: Arc<Workspace>,
        plan: Plan,
        record: WorkspaceRecord,
    ) -> Result<()> {
        let started = Instant::now();
        let limit = self.inner.config.limits.init_timeout();
        let outcome =
            match tokio::time::timeout(limit, self.initialize_content(&plan, &record)).await {
                Ok(r) => r,
                Err(_) => Err(Error::InitFailed(format!(
                    "initialization took longer than {}s and was stopped",
                    limit.as_secs()
                ))),
            };
        let outcome = match outcome {
            Ok(()) => {
                self.inner
                    .store
                    .set_state(&ws, ContentState::Available)
                    .await
            }
            // The storage failing under an initializer is an initializer failure for the caller.
            Err(Error::Storage(why)) => Err(Error::InitFailed(why)),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {
                metrics::histogram!("wsd_init_duration_seconds")
                    .record(started.elapsed().as_secs_f64());
                tracing::info!(id = %ws.id, secs = started.elapsed().as_secs_f64(), "workspace initialized");
                ws.finish_init(InitPhase::Done);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(id = %ws.id, error = %e, "workspace initialization failed; cleaning up");
                metrics::counter!("wsd_init_failures_total", "reason" => e.reason()).increment(1);
                if let Err(cleanup) = self.inner.store.remove(&ws.id).await {
                    tracing::error!(id = %ws.id, error = %cleanup, "cleanup after failed init failed");
                }
                ws.finish_init(InitPhase::Failed(e.clone()));
                Err(e)
            }
        }
    }

    async fn initialize_content(&self, plan: &Plan, record: &WorkspaceRecord) -> Result<()> {
        self.inner.store.persist(record.clone()).await?;
        let content = self.inner.store.area().content_dir(&record.id);
        let fresh = content.clone();
        tokio::task::spawn_blocking(move || {
            match std::fs::remove_dir_all(&fresh) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            std::fs::create_dir(&fresh)
        })
        .await
        .map_err(Error::internal)?
        .map_err(|e| Error::Internal(format!("cannot create the content folder: {}", e.kind())))?;

        if record.storage_quota_bytes > 0 {
            tracing::warn!(
                id = %record.id,
                quota = record.storage_quota_bytes,
                "storage quotas are not enforced by this daemon; continuing without a quota"
            );
            metrics::counter!("wsd_quota_unsupported_total").increment(1);
        }

        let storage = self.storage_for(record);
        let tools = InitTools {
            archive: self.inner.archive.clone(),
            http: self.inner.http.clone(),
            download: self.inner.config.download.clone(),
            git: self.inner.git.clone(),
            git_settings: self.inner.config.git.clone(),
        };
        let ctx = InitContext::new(
            content.clone(),
            storage.clone(),
            record.owner.clone(),
            record.meta_id.clone(),
            tools,
        );

        // A full backup of this workspace wins over the requested initializer.
        let mut source = None;
        if let Some(storage) = &storage {
            if let Some(loc) =
                initializer::find_full_backup(storage, &record.owner, &record.meta_id).await?
            {
                let started = Instant::now();
                tracing::info!(id = %record.id, backup = %loc.qualified(), "restoring the full backup");
                if let Some(stats) =
                    initializer::restore_archive(storage, &loc, &content, &self.inner.archive)
                        .await?
                {
                    ctx.record("backup", started, stats.archive_bytes);
                    source = Some(InitSource::FromBackup);
                }
            }
        }
        let source = match source {
            Some(s) => s,
            None => initializer::run(plan, &ctx).await?,
        };

        let ready = serde_json::to_vec(&ReadyFile {
            source,
            metrics: &ctx.metrics(),
        })
        .map_err(Error::internal)?;
        tokio::task::spawn_blocking(move || {
            Beneath::open(&content)?.write_file_atomically(Path::new(READY_FILE), &ready, 0o644)
        })
        .await
        .map_err(Error::internal)?
        .map_err(|e| Error::InitFailed(format!("cannot write the ready file {READY_FILE}: {e}")))
    }

    pub async fn wait_for_init(
        &self,
        req: WaitForInitRequest,
        ctx: &CallContext,
    ) -> Result<WaitForInitResponse> {
        let ws = self.workspace(&req.id)?;
        match ws.state() {
            ContentState::Available => return Ok(WaitForInitResponse {}),
            ContentState::WrappingUp => {
                return Err(wrong_state(&ws, ContentState::WrappingUp, "WaitForInit"))
            }
            ContentState::SettingUp => {}
        }
        let mut phase = ws.subscribe_init();
        ctx.wait("WaitForInit", async move {
            let done = phase
                .wait_for(|p| !matches!(p, InitPhase::Running))
                .await
                .map_err(|_| Error::ShuttingDown)?;
            match &*done {
                // The init's own reason, once, with the workspace named.
                InitPhase::Failed(Error::InitFailed(reason)) => {
                    Err(Error::InitFailed(format!("workspace {}: {reason}", ws.id)))
                }
                InitPhase::Failed(e) => Err(Error::InitFailed(format!("workspace {}: {e}", ws.id))),
                _ => Ok(WaitForInitResponse {}),
            }
        })
        .await
    }

    pub async fn is_workspace_exists(
        &self,
        req: IsWorkspaceExistsRequest,
        _ctx: &CallContext,
    ) -> Result<IsWorkspaceExistsResponse> {
        validate_instance_id(&req.id)?;
        Ok(IsWorkspaceExistsResponse {
            exists: self.inner.store.get(&req.id).is_some(),
        })
    }

    /// Checks that an upload of this workspace may start and returns its record and storage.
    fn upload_preconditions(
        &self,
        ws: &Workspace,
        operation: &'static str,
    ) -> Result<(WorkspaceRecord, Arc<Storage>)> {
        self.check_open()?;
        let record = ws.record();
        if record.state != ContentState::Available {
            return Err(wrong_state(ws, record.state, operation));
        }
        let storage = self
            .storage_for(&record)
            .ok_or_else(|| Error::StorageDisabled(ws.id.clone()))?;
        Ok((record, storage))
    }

    /// Streams the content folder as an archive to `loc`.
    async fn upload_content(
        &self,
        storage: &Storage,
        record: &WorkspaceRecord,
        loc: &ObjectLocation,
        kind: &'static str,
    ) -> Result<UploadStats> {
        let source = self.inner.store.area().content_dir(&record.id);
        let opts = self.inner.archive.clone();
        let (_, stats) = storage
            .upload(loc, move |out| {
                write_archive(&source, out, &opts).map_err(std::io::Error::other)
            })
            .await
            .inspect_err(|e| {
                metrics::counter!("wsd_backup_failures_total", "kind" => kind).increment(1);
                tracing::warn!(id = %record.id, object = %loc.qualified(), error = %e, "{kind} failed");
            })?;
        metrics::counter!("wsd_backup_bytes_total", "kind" => kind).increment(stats.bytes);
        metrics::histogram!("wsd_backup_duration_seconds", "kind" => kind)
            .record(stats.duration.as_secs_f64());
        tracing::info!(id = %record.id, object = %loc.qualified(), bytes = stats.bytes, secs = stats.duration.as_secs_f64(), "{kind} written");
        Ok(stats)
    }

    pub async fn take_snapshot(
        &self,
        req: TakeSnapshotRequest,
        ctx: &CallContext,
    ) -> Result<TakeSnapshotResponse> {
        let ws = self.workspace(&req.id)?;
        self.upload_preconditions(&ws, "TakeSnapshot")?;
        // Held until the upload ends, so that disposal waits for it.
        let guard = ws.content_lock.clone().read_owned().await;
        let (record, storage) = self.upload_preconditions(&ws, "TakeSnapshot")?;
        let ext = self.inner.config.archive.format.extension();
        let loc = storage.snapshot_location(&record.owner, &record.meta_id, unix_nanos(), ext);
        let url = loc.qualified();
        self.set_snapshot_phase(&url, SnapshotPhase::InProgress);

        let me = self.clone();
        let task_url = url.clone();
        let upload = async move {
            let result = me.upload_content(&storage, &record, &loc, "snapshot").await;
            drop(guard);
            me.set_snapshot_phase(
                &task_url,
                match &result {
                    Ok(stats) => SnapshotPhase::Done {
                        size_bytes: stats.bytes,
                    },
                    Err(e) => SnapshotPhase::Failed(e.to_string()),
                },
            );
            result.map(|_| ())
        };
        if req.return_immediately {
            self.inner.tasks.spawn(upload);
        } else {
            ctx.wait("TakeSnapshot", self.detached(upload)).await?;
        }
        Ok(TakeSnapshotResponse { url })
    }

    fn set_snapshot_phase(&self, url: &str, phase: SnapshotPhase) {
        let ttl = std::time::Duration::from_secs(self.inner.config.limits.dispose_record_ttl_secs);
        let mut snapshots = self
            .inner
            .snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        snapshots
            .retain(|_, (at, phase)| *phase == SnapshotPhase::InProgress || at.elapsed() < ttl);
        snapshots.insert(url.to_string(), (Instant::now(), phase));
    }

    pub async fn snapshot_status(
        &self,
        req: SnapshotStatusRequest,
        _ctx: &CallContext,
    ) -> Result<SnapshotStatusResponse> {
        use wsd_proto::wsdaemon::snapshot_status_response::Phase;
        let phase = self
            .inner
            .snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&req.url)
            .map(|(_, phase)| phase.clone());
        let mut resp = SnapshotStatusResponse::default();
        match phase {
            None => resp.set_phase(Phase::Unknown),
            Some(SnapshotPhase::InProgress) => resp.set_phase(Phase::InProgress),
            Some(SnapshotPhase::Done { size_bytes }) => {
                resp.set_phase(Phase::Done);
                resp.size_bytes = i64::try_from(size_bytes).unwrap_or(i64::MAX);
            }
            Some(SnapshotPhase::Failed(error)) => {
                resp.set_phase(Phase::Failed);
                resp.error = error;
            }
        }
        Ok(resp)
    }

    pub async fn workspace_state(
        &self,
        req: WorkspaceStateRequest,
        _ctx: &CallContext,
    ) -> Result<WorkspaceStateResponse> {
        validate_instance_id(&req.id)?;
        let state = self
            .inner
            .store
            .get(&req.id)
            .map(|ws| ws.state().to_wire())
            .unwrap_or(WorkspaceContentState::None);
        Ok(WorkspaceStateResponse {
            state: state as i32,
        })
    }

    /// Writes the full backup; the previous one stays intact until the new one is complete.
    async fn write_full_backup(
        &self,
        storage: &Storage,
        record: &WorkspaceRecord,
    ) -> Result<String> {
        let format = self.inner.config.archive.format;
        let loc = storage.full_backup_location(&record.owner, &record.meta_id, format.extension());
        self.upload_content(storage, record, &loc, "backup").await?;
        // The other format's full backup is older now; remove it so restores are unambiguous.
        for other in [
            crate::config::ArchiveFormat::Zstd,
            crate::config::ArchiveFormat::Tar,
        ] {
            if other != format {
                let stale =
                    storage.full_backup_location(&record.owner, &record.meta_id, other.extension());
                if let Err(e) = storage.delete(&stale).await {
                    tracing::warn!(object = %stale.qualified(), error = %e, "cannot remove an older backup");
                }
            }
        }
        Ok(loc.qualified())
    }

    pub async fn backup_workspace(
        &self,
        req: BackupWorkspaceRequest,
        ctx: &CallContext,
    ) -> Result<BackupWorkspaceResponse> {
        let ws = self.workspace(&req.id)?;
        self.upload_preconditions(&ws, "BackupWorkspace")?;
        let me = self.clone();
        let backup = async move {
            let _content = ws.content_lock.clone().read_owned().await;
            let _one_backup = ws.backup_lock.lock().await;
            let (record, storage) = me.upload_preconditions(&ws, "BackupWorkspace")?;
            me.write_full_backup(&storage, &record).await
        };
        let url = ctx.wait("BackupWorkspace", self.detached(backup)).await?;
        Ok(BackupWorkspaceResponse { url })
    }

    pub async fn dispose_workspace(
        &self,
        req: DisposeWorkspaceRequest,
        ctx: &CallContext,
    ) -> Result<DisposeWorkspaceResponse> {
        validate_instance_id(&req.id)?;
        let Some(ws) = self.inner.store.get(&req.id) else {
            return self
                .inner
                .store
                .disposed(&req.id)
                .await
                .map(|outcome| DisposeWorkspaceResponse {
                    git_status: outcome.git_status,
                })
                .ok_or_else(|| Error::WorkspaceNotFound(req.id.clone()));
        };
        let disposal = {
            let mut slot = ws.dispose.lock().unwrap_or_else(|p| p.into_inner());
            match slot.as_ref() {
                Some(running) => running.clone(),
                None => {
                    self.check_open()?;
                    let me = self.clone();
                    let target = ws.clone();
                    let shared = self
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
        let outcome = ctx.wait("DisposeWorkspace", disposal).await?;
        Ok(DisposeWorkspaceResponse {
            git_status: outcome.git_status,
        })
    }

    async fn run_dispose(
        &self,
        ws: Arc<Workspace>,
        backup: bool,
        backup_logs: bool,
    ) -> Result<DisposeOutcome> {
        let result = self.dispose_steps(&ws, backup, backup_logs).await;
        if result.is_err() {
            // Let a later DisposeWorkspace try again.
            *ws.dispose.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        result
    }

    async fn dispose_steps(
        &self,
        ws: &Arc<Workspace>,
        backup: bool,
        backup_logs: bool,
    ) -> Result<DisposeOutcome> {
        if ws.state() == ContentState::SettingUp {
            let mut phase = ws.subscribe_init();
            let failed = phase
                .wait_for(|p| !matches!(p, InitPhase::Running))
                .await
                .map(|p| matches!(&*p, InitPhase::Failed(_)))
                .unwrap_or(true);
            if failed {
                // The failed init already removed everything.
                let outcome = DisposeOutcome::default();
                self.inner
                    .store
                    .record_disposed(&ws.id, outcome.clone())
                    .await;
                return Ok(outcome);
            }
        }
        self.inner
            .store
            .set_state(ws, ContentState::WrappingUp)
            .await?;
        // Waits for snapshots and backups of this workspace to finish.
        let _exclusive = ws.content_lock.write().await;
        let record = ws.record();
        let storage = self.storage_for(&record);

        if backup {
            match &storage {
                Some(storage) => {
                    let _one_backup = ws.backup_lock.lock().await;
                    self.write_full_backup(storage, &record).await?;
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
        let content = self.inner.store.area().content_dir(&ws.id);
        let checkout = std::path::PathBuf::from(record.checkout_location.as_deref().unwrap_or(""));
        let git_status = match crate::git::status_of(&self.inner.git, &content, &checkout).await {
            Ok(status) => status,
            Err(e) => {
                tracing::warn!(id = %ws.id, error = %e, "cannot read the git status");
                None
            }
        };
        let outcome = DisposeOutcome { git_status };
        // Files first: if they cannot be removed the workspace stays known and a later
        // DisposeWorkspace tries again. The record of the result exists before the instance is
        // forgotten, so repeated calls always find one or the other.
        self.inner.store.remove_files_of(&ws.id).await?;
        self.inner
            .store
            .record_disposed(&ws.id, outcome.clone())
            .await;
        self.inner.store.forget(&ws.id);
        metrics::counter!("wsd_workspace_disposals_total").increment(1);
        tracing::info!(id = %ws.id, backup, "workspace disposed");
        Ok(outcome)
    }

    /// Uploads `prebuild-log-*` files; failures are logged, never fatal.
    async fn upload_logs(&self, storage: &Storage, record: &WorkspaceRecord) {
        let content = self.inner.store.area().content_dir(&record.id);
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
            .await;
        let logs = match logs {
            Ok(Ok(logs)) => logs,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return,
            Ok(Err(e)) => {
                tracing::warn!(id = %record.id, error = %e, "cannot read prebuild logs");
                return;
            }
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
