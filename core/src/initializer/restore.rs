//! Restoring archives from storage: the snapshot, backup and prebuild initializers, and the
//! restore-before-initialize step of InitWorkspace.

use std::sync::Arc;
use std::time::Instant;

use super::InitContext;
use crate::archive::{extract_archive, ArchiveOptions, ArchiveStats};
use crate::config::ArchiveFormat;
use crate::error::{Error, Result};
use crate::storage::{ObjectLocation, Storage};

/// Streams the archive at `loc` into `target`. `Ok(None)` when the object does not exist. A bad
/// archive fails with a message that names the archive, never a host path.
pub async fn restore_archive(
    storage: &Storage,
    loc: &ObjectLocation,
    target: &std::path::Path,
    opts: &Arc<ArchiveOptions>,
) -> Result<Option<ArchiveStats>> {
    let started = Instant::now();
    let target = target.to_path_buf();
    let opts = opts.clone();
    let outcome = storage
        .download(loc, move |reader| extract_archive(reader, &target, &opts))
        .await?;
    match outcome {
        None => Ok(None),
        Some(Ok(stats)) => {
            metrics::counter!("wsd_restore_bytes_total").increment(stats.archive_bytes);
            metrics::histogram!("wsd_restore_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            Ok(Some(stats))
        }
        Some(Err(e)) => {
            metrics::counter!("wsd_restore_failures_total").increment(1);
            Err(Error::InitFailed(format!(
                "cannot restore {}: {e}",
                loc.qualified()
            )))
        }
    }
}

/// The newest full backup of owner + meta_id, in either archive format.
pub async fn find_full_backup(
    storage: &Storage,
    owner: &str,
    meta_id: &str,
) -> Result<Option<ObjectLocation>> {
    let mut newest = None;
    for format in [ArchiveFormat::Zstd, ArchiveFormat::Tar] {
        let loc = storage.full_backup_location(owner, meta_id, format.extension());
        if let Some(meta) = storage.head(&loc).await? {
            let newer = match &newest {
                Some((_, at)) => meta.last_modified > *at,
                None => true,
            };
            if newer {
                newest = Some((loc, meta.last_modified));
            }
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
    let stats = restore_archive(storage, loc, &ctx.content, &ctx.tools.archive).await?;
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
    let loc = find_full_backup(storage, &ctx.owner, &ctx.meta_id)
        .await?
        .ok_or_else(|| {
            Error::InitFailed(format!("no backup found for workspace {}", ctx.meta_id))
        })?;
    restore_kind(ctx, &loc, "backup")
        .await?
        .ok_or_else(|| Error::InitFailed(format!("no backup found for workspace {}", ctx.meta_id)))
}
