//! TakeSnapshot, SnapshotStatus and BackupWorkspace: the content folder streamed as an archive to
//! storage while disposal is held off.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use wsd_proto::wsdaemon::snapshot_status_response::Phase;
use wsd_proto::wsdaemon::{
    BackupWorkspaceRequest, BackupWorkspaceResponse, SnapshotStatusRequest, SnapshotStatusResponse,
    TakeSnapshotRequest, TakeSnapshotResponse,
};

use super::progress::Operation;
use super::{wrong_state, ContentService};
use crate::archive::write_archive;
use crate::archive::ArchiveOptions;
use crate::call::CallContext;
use crate::chunked::{self, PackPlace};
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
        archive: &Arc<ArchiveOptions>,
    ) -> Result<UploadStats> {
        let source = self.store.area().content_dir(&record.id);
        let opts = archive.clone();
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
        let nanos = unix_nanos();
        let mode = self.config.archive.mode;
        let ext = if mode.writes_full() {
            self.config.archive.format.extension()
        } else {
            chunked::MANIFEST_EXT
        };
        let loc = storage.snapshot_location(&record.owner, &record.meta_id, nanos, ext);
        let url = loc.qualified();
        let running = snapshot_outcome(Phase::InProgress, 0, String::new());
        self.snapshots.put(&url, running, Keep::UntilReplaced).await;

        let me = self.clone();
        let task_url = url.clone();
        let upload = async move {
            let result = me.write_snapshot(&storage, &record, &loc, nanos).await;
            drop(guard);
            let outcome = match &result {
                Ok(bytes) => snapshot_outcome(Phase::Done, *bytes, String::new()),
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

    /// Writes the snapshot at `loc` (a full archive, or a manifest in the `chunked` mode; in
    /// `both`, the manifest goes beside the archive under the same name); answers its size.
    async fn write_snapshot(
        &self,
        storage: &Arc<Storage>,
        record: &WorkspaceRecord,
        loc: &ObjectLocation,
        nanos: u128,
    ) -> Result<u64> {
        let running = self.progress.start(&record.id, "snapshot", "starting");
        let archive = self.archive_reporting_to(running.operation());
        let result = self
            .write_snapshot_with(storage, record, loc, nanos, &archive, running.operation())
            .await;
        running.finish(&result);
        result
    }

    async fn write_snapshot_with(
        &self,
        storage: &Arc<Storage>,
        record: &WorkspaceRecord,
        loc: &ObjectLocation,
        nanos: u128,
        archive: &Arc<ArchiveOptions>,
        progress: &Operation,
    ) -> Result<u64> {
        let mode = self.config.archive.mode;
        let mut size = 0;
        if mode.writes_full() {
            progress.set_phase("writing the full archive");
            size = self
                .upload_content(storage, record, loc, "snapshot", archive)
                .await?
                .bytes;
        }
        if mode.writes_chunked() {
            let place = self.pack_place(storage, record)?;
            let manifest = storage.snapshot_location(
                &record.owner,
                &record.meta_id,
                nanos,
                chunked::MANIFEST_EXT,
            );
            progress.set_phase("writing changed files");
            let written = self
                .write_chunked(storage, record, &place, &manifest, "snapshot", archive)
                .await?;
            if !mode.writes_full() {
                size = written.stats.pack_bytes + written.manifest_bytes();
            }
        }
        Ok(size)
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

    /// Writes the backup in the configured mode and answers the name of what restores it: the
    /// full archive when one is written (`full`, `both`), else the chunked manifest. In `both`
    /// the manifest is written last, so it is the newest and restores take it.
    pub(super) async fn write_backup(
        &self,
        storage: &Arc<Storage>,
        record: &WorkspaceRecord,
    ) -> Result<String> {
        let running = self.progress.start(&record.id, "backup", "starting");
        let result = self
            .write_backup_reporting(storage, record, running.operation())
            .await;
        running.finish(&result);
        result
    }

    async fn write_backup_reporting(
        &self,
        storage: &Arc<Storage>,
        record: &WorkspaceRecord,
        progress: &Operation,
    ) -> Result<String> {
        let archive = self.archive_reporting_to(progress);
        let mode = self.config.archive.mode;
        let full = if mode.writes_full() {
            progress.set_phase("writing the full archive");
            Some(self.write_full_backup(storage, record, &archive).await?)
        } else {
            None
        };
        let chunked = if mode.writes_chunked() {
            // In `both`, the counters start again for the second pass over the tree.
            if let Some(p) = &archive.progress {
                p.bytes.store(0, std::sync::atomic::Ordering::Relaxed);
                p.files.store(0, std::sync::atomic::Ordering::Relaxed);
            }
            progress.set_phase("writing changed files");
            Some(self.write_chunked_backup(storage, record, &archive).await?)
        } else {
            None
        };
        full.or(chunked)
            .ok_or_else(|| Error::internal("no archive mode writes backups"))
    }

    /// Writes the full backup; the previous one stays intact until the new one is complete.
    async fn write_full_backup(
        &self,
        storage: &Storage,
        record: &WorkspaceRecord,
        archive: &Arc<ArchiveOptions>,
    ) -> Result<String> {
        let format = self.config.archive.format;
        let loc = storage.full_backup_location(&record.owner, &record.meta_id, format.extension());
        self.upload_content(storage, record, &loc, "backup", archive)
            .await?;
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

    /// Writes a chunked backup (only what changed since the parent is read and uploaded), keeps
    /// its manifest as the next backup's parent and prunes manifests beyond `keep_backups`.
    async fn write_chunked_backup(
        &self,
        storage: &Arc<Storage>,
        record: &WorkspaceRecord,
        archive: &Arc<ArchiveOptions>,
    ) -> Result<String> {
        let place = self.pack_place(storage, record)?;
        let nanos = unix_nanos();
        let loc = place.backup_manifest(&record.meta_id, nanos);
        let written = self
            .write_chunked(storage, record, &place, &loc, "backup", archive)
            .await?;
        let parent_file = self.store.area().parent_manifest(&record.id);
        let kept = written.stored.clone();
        let saved =
            tokio::task::spawn_blocking(move || chunked::save_local_parent(&parent_file, &kept))
                .await
                .map_err(Error::internal)?;
        if let Err(e) = saved {
            tracing::warn!(id = %record.id, error = %e, "cannot keep the backup's manifest as the next parent");
        }
        match chunked::prune_backups(
            storage,
            &place,
            &record.meta_id,
            self.config.archive.keep_backups,
        )
        .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(id = %record.id, removed = n, "older backup manifests removed"),
            Err(e) => {
                tracing::warn!(id = %record.id, error = %e, "cannot remove older backup manifests")
            }
        }
        Ok(loc.qualified())
    }

    /// Where the owner's packs and manifests live.
    fn pack_place(&self, storage: &Storage, record: &WorkspaceRecord) -> Result<PackPlace> {
        let any = storage.full_backup_location(&record.owner, &record.meta_id, "tar");
        PackPlace::of_workspace_object(&any)
            .ok_or_else(|| Error::internal("the storage layout names no workspaces folder"))
    }

    /// Writes the chunked form of the content folder and commits it at `loc`.
    async fn write_chunked(
        &self,
        storage: &Arc<Storage>,
        record: &WorkspaceRecord,
        place: &PackPlace,
        loc: &ObjectLocation,
        kind: &'static str,
        archive: &Arc<ArchiveOptions>,
    ) -> Result<chunked::Written> {
        // Files changed after this are read again by the next backup (see chunked::backup).
        let nanos = unix_nanos();
        let parent = self.chunked_parent(storage, place, record).await;
        let started = std::time::Instant::now();
        let written = chunked::write_backup(
            storage.clone(),
            place.clone(),
            loc.clone(),
            self.store.area().content_dir(&record.id),
            record.meta_id.clone(),
            u64::try_from(nanos).unwrap_or(u64::MAX),
            parent,
            archive.clone(),
        )
        .await
        .inspect_err(|e| {
            metrics::counter!("wsd_backup_failures_total", "kind" => kind).increment(1);
            tracing::warn!(id = %record.id, object = %loc.qualified(), error = %e, "chunked {kind} failed");
        });
        // Even a failed backup may have left packs behind.
        self.gc_places.lock().insert(place.clone());
        let written = written?;
        let secs = started.elapsed().as_secs_f64();
        let uploaded = written.stats.pack_bytes + written.manifest_bytes();
        metrics::counter!("wsd_backup_bytes_total", "kind" => kind).increment(uploaded);
        metrics::histogram!("wsd_backup_duration_seconds", "kind" => kind).record(secs);
        let s = &written.stats;
        tracing::info!(
            id = %record.id, object = %loc.qualified(), secs,
            files_read = s.files_read, files_unchanged = s.files_unchanged,
            content_bytes = s.content_bytes, chunks_new = s.chunks_new, uploaded,
            "chunked {kind} written"
        );
        Ok(written)
    }

    /// The manifest the next chunked backup starts from: the one kept in the working area while
    /// it is still stored, else the newest stored backup. None (a backup that reads and uploads
    /// everything) when neither is usable.
    async fn chunked_parent(
        &self,
        storage: &Storage,
        place: &PackPlace,
        record: &WorkspaceRecord,
    ) -> Option<Arc<chunked::Parent>> {
        let file = self.store.area().parent_manifest(&record.id);
        let local = tokio::task::spawn_blocking(move || chunked::load_local_parent(&file))
            .await
            .ok()
            .flatten();
        if let Some(local) = local {
            let same_place = PackPlace::of_manifest(&local.loc).as_ref() == Some(place);
            // Still stored, with the base a delta builds on.
            let bucket = &local.loc.bucket;
            let stored = same_place
                && is_stored(storage, bucket, &local.loc.key).await
                && match &local.base {
                    Some(base) => is_stored(storage, bucket, &base.key).await,
                    None => true,
                };
            if stored {
                return Some(Arc::new(local.into_parent()));
            }
        }
        let latest = chunked::latest_backup(storage, place, &record.meta_id).await;
        let loaded = match latest {
            Ok(Some((loc, _))) => chunked::load_stored(storage, &loc).await,
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        match loaded {
            Ok(found) => found.map(|loaded| Arc::new(loaded.into_parent())),
            Err(e) => {
                tracing::warn!(id = %record.id, error = %e, "no usable parent backup: this backup stores everything");
                None
            }
        }
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
            me.write_backup(&storage, &record).await
        };
        let url = ctx
            .wait("BackupWorkspace", self.background.detached(backup))
            .await?;
        Ok(BackupWorkspaceResponse { url })
    }
}

/// Whether the object `key` of `bucket` exists (an unreachable store counts as no).
async fn is_stored(storage: &Storage, bucket: &str, key: &str) -> bool {
    let loc = ObjectLocation {
        bucket: bucket.to_string(),
        key: key.to_string(),
    };
    matches!(storage.head(&loc).await, Ok(Some(_)))
}
