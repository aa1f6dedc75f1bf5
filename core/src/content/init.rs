//! InitWorkspace and WaitForInit: a workspace's content from a backup or its initializers, then
//! the ready file; nothing left behind when it fails.

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use wsd_proto::wsdaemon::{
    InitWorkspaceRequest, InitWorkspaceResponse, WaitForInitRequest, WaitForInitResponse,
};

use super::progress::Operation;
use super::{wrong_state, ContentService};
use crate::call::CallContext;
use crate::confine::Beneath;
use crate::error::{Error, Result};
use crate::initializer::{self, InitContext, InitMetric, InitSource, InitTools, Plan};
use crate::workspace::ids::{validate_instance_id, validate_metadata_field};
use crate::workspace::state::{ContentState, WorkspaceRecord};
use crate::workspace::store::{InitPhase, Lifecycle, Workspace};

/// `<content>/.gitpod/ready`
const READY_FILE: &str = ".gitpod/ready";

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

impl ContentService {
    pub(crate) async fn init_workspace(
        self: Arc<Self>,
        req: InitWorkspaceRequest,
        ctx: CallContext,
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
        plan.validate(&self.config.git)?;
        self.background.check_open()?;

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
            container: None,
        };
        let ws = self.store.insert_new(record.clone())?;
        let me = self.clone();
        let init = self
            .background
            .detached(async move { me.run_init(ws, plan, record).await });
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
        // An instance id used again: the result of its earlier disposal no longer answers.
        self.disposed.remove(&ws.id).await;
        let started = Instant::now();
        let limit = self.config.limits.init_timeout();
        let outcome =
            match tokio::time::timeout(limit, self.initialize_content(&ws, &plan, &record)).await {
                Ok(r) => r,
                Err(_) => Err(Error::InitFailed(format!(
                    "initialization took longer than {}s and was stopped",
                    limit.as_secs()
                ))),
            };
        let outcome = match outcome {
            Ok(()) => self.store.set_state(&ws, ContentState::Available).await,
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
                if let Err(cleanup) = self.store.remove(&ws).await {
                    tracing::error!(id = %ws.id, error = %cleanup, "cleanup after failed init failed");
                }
                ws.finish_init(InitPhase::Failed(e.clone()));
                Err(e)
            }
        }
    }

    async fn initialize_content(
        &self,
        ws: &Workspace,
        plan: &Plan,
        record: &WorkspaceRecord,
    ) -> Result<()> {
        let running = self.progress.start(&record.id, "init", "initializing");
        let result = self
            .initialize_reporting(ws, plan, record, running.operation())
            .await;
        running.finish(&result);
        result
    }

    async fn initialize_reporting(
        &self,
        ws: &Workspace,
        plan: &Plan,
        record: &WorkspaceRecord,
        progress: &Operation,
    ) -> Result<()> {
        let archive = self.archive_reporting_to(progress);
        self.store.save(ws).await?;
        let content = self.store.area().content_dir(&record.id);
        // Validated as not negative.
        let quota_bytes = record.storage_quota_bytes as u64;
        let (fresh, quota) = (content.clone(), self.quota.clone());
        tokio::task::spawn_blocking(move || {
            quota.remove_folder(&fresh)?;
            quota.create_folder(&fresh, quota_bytes)
        })
        .await
        .map_err(Error::internal)?
        .map_err(|e| Error::Internal(format!("cannot create the content folder: {}", e.kind())))?;

        let storage = self.storage_for(record);
        let tools = InitTools {
            archive: archive.clone(),
            http: self.http.clone(),
            download: self.config.download.clone(),
            git: self.git.clone(),
            git_settings: self.config.git.clone(),
        };
        let ctx = InitContext::new(
            content.clone(),
            storage.clone(),
            record.owner.clone(),
            record.meta_id.clone(),
            tools,
        )
        .keeping_parent_at(self.store.area().parent_manifest(&record.id));

        // A full backup of this workspace wins over the requested initializer.
        let mut source = None;
        if let Some(storage) = &storage {
            if let Some(loc) =
                initializer::find_backup(storage, &record.owner, &record.meta_id).await?
            {
                let started = Instant::now();
                tracing::info!(id = %record.id, backup = %loc.qualified(), "restoring the backup");
                progress.set_phase("restoring the backup");
                if let Some(stats) = initializer::restore_archive(
                    storage,
                    &loc,
                    &content,
                    &archive,
                    ctx.keep_parent.as_deref(),
                )
                .await?
                {
                    ctx.record("backup", started, stats.archive_bytes);
                    source = Some(InitSource::FromBackup);
                }
            }
        }
        let source = match source {
            Some(s) => s,
            None => {
                progress.set_phase("running the initializer");
                initializer::run(plan, &ctx).await?
            }
        };

        let ready = serde_json::to_vec(&ReadyFile {
            source,
            metrics: &ctx.metrics(),
        })
        .map_err(Error::internal)?;
        let ready_at = content.clone();
        tokio::task::spawn_blocking(move || {
            Beneath::open(&ready_at)?.write_file_atomically(Path::new(READY_FILE), &ready, 0o644)
        })
        .await
        .map_err(Error::internal)?
        .map_err(|e| Error::InitFailed(format!("cannot write the ready file {READY_FILE}: {e}")))?;

        // Soft during init, hard after: the content (maybe a backup larger than the quota) is in
        // place; from here on writes past the quota fail. In force before WaitForInit answers.
        if quota_bytes > 0 {
            let (quota, id) = (self.quota.clone(), record.id.clone());
            tokio::task::spawn_blocking(move || quota.enforce(&id, &content, quota_bytes))
                .await
                .map_err(Error::internal)?
                .map_err(|e| {
                    tracing::error!(id = %record.id, error = %e, "cannot set the storage quota");
                    Error::InitFailed(format!("cannot set the storage quota: {}", e.kind()))
                })?;
        }
        Ok(())
    }

    /// Sets the storage quota of a workspace reloaded at start again (blocking), in case the
    /// file system lost it or the working area moved; an error is logged, the workspace stays.
    fn reapply_quota(&self, record: &WorkspaceRecord) {
        if record.storage_quota_bytes <= 0 || record.state != ContentState::Available {
            return;
        }
        let content = self.store.area().content_dir(&record.id);
        let bytes = record.storage_quota_bytes as u64;
        if let Err(e) = self.quota.enforce(&record.id, &content, bytes) {
            tracing::warn!(id = %record.id, error = %e, "cannot set the storage quota again");
        }
    }

    pub(crate) async fn wait_for_init(
        self: Arc<Self>,
        req: WaitForInitRequest,
        ctx: CallContext,
    ) -> Result<WaitForInitResponse> {
        let ws = self.store.find(&req.id)?;
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
}

impl Lifecycle for ContentService {
    /// Called for every workspace reloaded at start (on the blocking thread of the reload), and
    /// for every new one (SETTING_UP: nothing to do yet).
    fn registered(&self, ws: &Arc<Workspace>) {
        self.reapply_quota(&ws.record());
    }

    fn removed(&self, _ws: &Workspace) {}
}
