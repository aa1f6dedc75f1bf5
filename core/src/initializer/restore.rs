//! Restoring archives from storage: the snapshot, backup and prebuild initializers, and the
//! restore-before-initialize step of InitWorkspace.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::InitContext;
use crate::archive::{extract_archive, ArchiveOptions, ArchiveStats};
use crate::chunked::{self, PackPlace};
use crate::config::ArchiveFormat;
use crate::error::{Error, Result};
use crate::storage::{ObjectLocation, Storage};

/// Restores the object at `loc` into `target`: a chunked manifest (`*.wsm`) or a full archive,
/// streamed. `Ok(None)` when the object does not exist. A bad archive fails with a message that
/// names the archive, never a host path; missing or damaged chunks fail with DATA_LOSS. A restored
/// manifest is kept at `keep_parent`, so the workspace's next backup stores only what changed.
pub async fn restore_archive(
    storage: &Arc<Storage>,
    loc: &ObjectLocation,
    target: &Path,
    opts: &Arc<ArchiveOptions>,
    keep_parent: Option<&Path>,
) -> Result<Option<ArchiveStats>> {
    let started = Instant::now();
    let outcome = if chunked::is_manifest_key(&loc.key) {
        restore_manifest(storage, loc, target, opts, keep_parent).await
    } else {
        let target = target.to_path_buf();
        let opts = opts.clone();
        match storage
            .download(loc, move |reader| extract_archive(reader, &target, &opts))
            .await?
        {
            None => Ok(None),
            Some(Ok(stats)) => Ok(Some(stats)),
            Some(Err(e)) => Err(Error::InitFailed(format!(
                "cannot restore {}: {e}",
                loc.qualified()
            ))),
        }
    };
    match &outcome {
        Ok(Some(stats)) => {
            metrics::counter!("wsd_restore_bytes_total").increment(stats.archive_bytes);
            metrics::histogram!("wsd_restore_duration_seconds")
                .record(started.elapsed().as_secs_f64());
        }
        Ok(None) => {}
        Err(_) => metrics::counter!("wsd_restore_failures_total").increment(1),
    }
    outcome
}

async fn restore_manifest(
    storage: &Arc<Storage>,
    loc: &ObjectLocation,
    target: &Path,
    opts: &Arc<ArchiveOptions>,
    keep_parent: Option<&Path>,
) -> Result<Option<ArchiveStats>> {
    let place = PackPlace::of_manifest(loc).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{} is not where manifests are kept",
            loc.qualified()
        ))
    })?;
    let Some(loaded) = chunked::load_stored(storage, loc).await? else {
        return Ok(None);
    };
    let stats = chunked::restore_manifest(
        storage.clone(),
        place,
        loaded.manifest.clone(),
        loc.qualified(),
        target.to_path_buf(),
        opts.clone(),
    )
    .await?;
    if let Some(path) = keep_parent {
        let path = path.to_path_buf();
        let kept = tokio::task::spawn_blocking(move || chunked::save_local_parent(&path, &loaded))
            .await
            .map_err(Error::internal)?;
        if let Err(e) = kept {
            tracing::warn!(error = %e, "cannot keep the restored manifest as the next backup's parent");
        }
    }
    Ok(Some(stats))
}

/// The newest backup of owner + meta_id: the newest of its full archive (either format) and its
/// newest chunked manifest, whichever archive mode wrote them.
pub async fn find_backup(
    storage: &Storage,
    owner: &str,
    meta_id: &str,
) -> Result<Option<ObjectLocation>> {
    let mut newest: Option<(ObjectLocation, i128)> = None;
    let mut consider = |loc: ObjectLocation, at: i128| {
        if newest.as_ref().is_none_or(|(_, t)| at > *t) {
            newest = Some((loc, at));
        }
    };
    for format in [ArchiveFormat::Zstd, ArchiveFormat::Tar] {
        let loc = storage.full_backup_location(owner, meta_id, format.extension());
        if let Some(meta) = storage.head(&loc).await? {
            let at = meta
                .last_modified
                .timestamp_nanos_opt()
                .map_or(i128::MAX, i128::from);
            consider(loc, at);
        }
    }
    let any = storage.full_backup_location(owner, meta_id, "tar");
    if let Some(place) = PackPlace::of_workspace_object(&any) {
        match chunked::latest_backup(storage, &place, meta_id).await {
            Ok(Some((loc, nanos))) => consider(loc, i128::try_from(nanos).unwrap_or(i128::MAX)),
            Ok(None) => {}
            // Stores that refuse listing still restore full archives.
            Err(e) if newest.is_some() => {
                tracing::warn!(workspace = %meta_id, error = %e, "cannot list chunked backups; restoring the full archive");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(newest.map(|(loc, _)| loc))
}

async fn restore_kind(ctx: &InitContext, loc: &ObjectLocation, kind: &str) -> Result<Option<()>> {
    let storage = ctx.storage.as_ref().ok_or_else(|| {
        Error::InitFailed(format!(
            "cannot restore the {kind} {}: remote storage is disabled for this workspace",
            loc.qualified()
        ))
    })?;
    let started = Instant::now();
    let keep_parent = ctx.keep_parent.as_deref();
    let stats =
        restore_archive(storage, loc, &ctx.content, &ctx.tools.archive, keep_parent).await?;
    Ok(stats.map(|s| ctx.record(kind, started, s.archive_bytes)))
}

pub async fn restore_snapshot(ctx: &InitContext, loc: &ObjectLocation) -> Result<()> {
    restore_kind(ctx, loc, "snapshot")
        .await?
        .ok_or_else(|| Error::SnapshotNotFound(loc.qualified()))
}

/// Restores the prebuild snapshot; `false` when it does not exist, so the caller falls back.
pub async fn restore_prebuild(ctx: &InitContext, loc: &ObjectLocation) -> Result<bool> {
    if ctx.storage.is_none() {
        tracing::warn!(snapshot = %loc.qualified(), "remote storage disabled: prebuild snapshot not restored");
        return Ok(false);
    }
    let restored = restore_kind(ctx, loc, "prebuild").await?.is_some();
    if !restored {
        tracing::info!(snapshot = %loc.qualified(), "prebuild snapshot does not exist; falling back");
    }
    Ok(restored)
}

pub async fn restore_backup(ctx: &InitContext) -> Result<()> {
    let Some(storage) = ctx.storage.as_ref() else {
        return Err(Error::InitFailed(
            "no backup found: remote storage is disabled for this workspace".into(),
        ));
    };
    let loc = find_backup(storage, &ctx.owner, &ctx.meta_id)
        .await?
        .ok_or_else(|| {
            Error::InitFailed(format!("no backup found for workspace {}", ctx.meta_id))
        })?;
    restore_kind(ctx, &loc, "backup")
        .await?
        .ok_or_else(|| Error::InitFailed(format!("no backup found for workspace {}", ctx.meta_id)))
}
