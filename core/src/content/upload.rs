//! TakeSnapshot, SnapshotStatus and BackupWorkspace: the content folder streamed as an archive to
//! storage while disposal is held off.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use wsd_proto::wsdaemon::snapshot_status_response::Phase;
use wsd_proto::wsdaemon::{
    BackupWorkspaceRequest, BackupWorkspaceResponse, SnapshotStatusRequest, SnapshotStatusResponse,
    TakeSnapshotRequest, TakeSnapshotResponse,
};

use super::{wrong_state, ContentService};
use crate::archive::write_archive;
use crate::call::CallContext;
use crate::config::ArchiveFormat;
use crate::error::{Error, Result};
use crate::storage::{ObjectLocation, Storage, UploadStats};
use crate::workspace::outcomes::Keep;
use crate::workspace::state::{ContentState, WorkspaceRecord};
use crate::workspace::store::Workspace;

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

fn snapshot_outcome(phase: Phase, size_bytes: u64, error: String) -> SnapshotStatusResponse {
    let mut outcome = SnapshotStatusResponse {
        error,
        size_bytes: i64::try_from(size_bytes).unwrap_or(i64::MAX),
        ..Default::default()
    };
    outcome.set_phase(phase);
    outcome
}

impl ContentService {
    /// Checks that an upload of this workspace may start and returns its record and storage.
    fn upload_preconditions(
        &self,
        ws: &Workspace,
        operation: &'static str,
    ) -> Result<(WorkspaceRecord, Arc<Storage>)> {
        self.background.check_open()?;
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
        let source = self.store.area().content_dir(&record.id);
        let opts = self.archive.clone();
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

    pub(crate) async fn take_snapshot(
        self: Arc<Self>,
        req: TakeSnapshotRequest,
        ctx: CallContext,
    ) -> Result<TakeSnapshotResponse> {
        let ws = self.store.find(&req.id)?;
        self.upload_preconditions(&ws, "TakeSnapshot")?;
        // Held until the upload ends, so that disposal waits for it.
        let guard = ws.content_lock.clone().read_owned().await;
        let (record, storage) = self.upload_preconditions(&ws, "TakeSnapshot")?;
        let ext = self.config.archive.format.extension();
        let loc = storage.snapshot_location(&record.owner, &record.meta_id, unix_nanos(), ext);
        let url = loc.qualified();
        let running = snapshot_outcome(Phase::InProgress, 0, String::new());
        self.snapshots.put(&url, running, Keep::UntilReplaced).await;

        let me = self.clone();
        let task_url = url.clone();
        let upload = async move {
            let result = me.upload_content(&storage, &record, &loc, "snapshot").await;
            drop(guard);
            let outcome = match &result {
                Ok(stats) => snapshot_outcome(Phase::Done, stats.bytes, String::new()),
                Err(e) => snapshot_outcome(Phase::Failed, 0, e.to_string()),
            };
            me.snapshots.put(&task_url, outcome, Keep::ForTtl).await;
            result.map(|_| ())
        };
        if req.return_immediately {
            self.background.spawn(async move {
                // The outcome is recorded for SnapshotStatus; failures are logged by the upload.
                let _ = upload.await;
            });
        } else {
            ctx.wait("TakeSnapshot", self.background.detached(upload))
                .await?;
        }
        Ok(TakeSnapshotResponse { url })
    }

    pub(crate) async fn snapshot_status(
        self: Arc<Self>,
        req: SnapshotStatusRequest,
        _ctx: CallContext,
    ) -> Result<SnapshotStatusResponse> {
        let Some(found) = self.snapshots.get(&req.url).await else {
            return Ok(snapshot_outcome(Phase::Unknown, 0, String::new()));
        };
        if found.earlier_run && found.value.phase() == Phase::InProgress {
            return Ok(snapshot_outcome(
                Phase::Failed,
                0,
                "the daemon stopped before the snapshot was complete; take it again".into(),
            ));
        }
        Ok(found.value)
    }

    /// Writes the full backup; the previous one stays intact until the new one is complete.
    pub(super) async fn write_full_backup(
        &self,
        storage: &Storage,
        record: &WorkspaceRecord,
    ) -> Result<String> {
        let format = self.config.archive.format;
        let loc = storage.full_backup_location(&record.owner, &record.meta_id, format.extension());
        self.upload_content(storage, record, &loc, "backup").await?;
        // The other format's full backup is older now; remove it so restores are unambiguous.
        for other in [ArchiveFormat::Zstd, ArchiveFormat::Tar] {
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

    pub(crate) async fn backup_workspace(
        self: Arc<Self>,
        req: BackupWorkspaceRequest,
        ctx: CallContext,
    ) -> Result<BackupWorkspaceResponse> {
        let ws = self.store.find(&req.id)?;
        self.upload_preconditions(&ws, "BackupWorkspace")?;
        let me = self.clone();
        let backup = async move {
            let _content = ws.content_lock.clone().read_owned().await;
            let _one_backup = ws.backup_lock.lock().await;
            let (record, storage) = me.upload_preconditions(&ws, "BackupWorkspace")?;
            me.write_full_backup(&storage, &record).await
        };
        let url = ctx
            .wait("BackupWorkspace", self.background.detached(backup))
            .await?;
        Ok(BackupWorkspaceResponse { url })
    }
}
