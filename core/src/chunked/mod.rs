//! Incremental, content-addressed backups: the `chunked` archive mode.
//!
//! A backup splits files into content-defined chunks (FastCDC 2020, 256 KiB / 1 MiB / 4 MiB),
//! names each chunk by the BLAKE3 of its bytes, compresses new chunks with zstd into packs of
//! 16-20 MiB, and commits with a manifest that records every entry (as a tar entry would) and
//! where its chunks are. Files the previous backup saw unchanged (inode, size, mtime, ctime) are
//! not read at all; chunks the previous backup stored are not uploaded again. See `format` for the
//! stored forms and `objects` for where they live.

mod backup;
mod export;
mod format;
mod gc;
mod objects;
mod restore;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

pub use backup::{BackupStats, PackSink, Parent, PACK_TARGET};
pub use export::export_full_archive;
pub use format::{decode_manifest, encode_manifest, is_manifest, FormatError, Manifest};
pub use gc::{collect_garbage, delete_workspace, GcReport};
pub use objects::{is_manifest_key, PackPlace, MANIFEST_EXT};
pub use restore::restore_manifest;

use crate::archive::ArchiveOptions;
use crate::error::{Error, Result};
use crate::storage::{ObjectLocation, Storage};

/// Packs uploaded at once by one backup.
const UPLOADS_AT_ONCE: usize = 3;

/// Reads the manifest at `loc`: `None` when there is none, DATA_LOSS when it is damaged.
pub async fn load_manifest(storage: &Storage, loc: &ObjectLocation) -> Result<Option<Manifest>> {
    let Some(bytes) = storage.get_bytes(loc).await? else {
        return Ok(None);
    };
    let what = loc.qualified();
    tokio::task::spawn_blocking(move || {
        decode_manifest(&bytes)
            .map(Some)
            .map_err(|e| Error::DataLoss(format!("the manifest {what} cannot be used: {e}")))
    })
    .await
    .map_err(Error::internal)?
}

/// The newest backup manifest of workspace `meta_id` and its time, found through the workspace's
/// `latest` pointer (a lookup, not a listing: stores answer it alike whether or not the bucket
/// exists, and it needs no list permission). Only when the pointer names a manifest that is gone
/// are the manifests listed.
pub async fn latest_backup(
    storage: &Storage,
    place: &PackPlace,
    meta_id: &str,
) -> Result<Option<(ObjectLocation, u128)>> {
    let pointer = place.latest_pointer(meta_id);
    let Some(named) = storage.get_bytes(&pointer).await? else {
        return Ok(None);
    };
    let named = std::str::from_utf8(&named).unwrap_or("").trim();
    if let Ok(nanos) = named.parse::<u128>() {
        let loc = place.backup_manifest(meta_id, nanos);
        if storage.head(&loc).await?.is_some() {
            return Ok(Some((loc, nanos)));
        }
    }
    tracing::warn!(workspace = %meta_id, "the latest-backup pointer names no stored manifest; listing them");
    Ok(list_backups(storage, place, meta_id).await?.pop())
}

/// The backup manifests of a workspace, oldest first.
async fn list_backups(
    storage: &Storage,
    place: &PackPlace,
    meta_id: &str,
) -> Result<Vec<(ObjectLocation, u128)>> {
    let found = storage
        .list(&place.bucket, &place.backups_folder(meta_id))
        .await?;
    let mut backups: Vec<(ObjectLocation, u128)> = found
        .into_iter()
        .filter_map(|meta| {
            let key = meta.location.to_string();
            PackPlace::backup_time(&key).map(|t| {
                (
                    ObjectLocation {
                        bucket: place.bucket.clone(),
                        key,
                    },
                    t,
                )
            })
        })
        .collect();
    backups.sort_by_key(|(_, t)| *t);
    Ok(backups)
}

/// Hands packs from the backup's threads to the async uploads.
struct UploadQueue {
    tx: tokio::sync::mpsc::Sender<(String, Vec<u8>)>,
}

impl PackSink for UploadQueue {
    fn put(&mut self, name: &str, pack: Vec<u8>) -> std::io::Result<()> {
        self.tx
            .blocking_send((name.to_string(), pack))
            .map_err(|_| std::io::Error::other("the pack uploads stopped"))
    }
}

/// What [`write_backup`] stored.
#[derive(Debug, Clone)]
pub struct Written {
    pub manifest: Arc<Manifest>,
    pub stats: BackupStats,
    /// Size of the stored manifest.
    pub manifest_bytes: u64,
    /// The stored manifest, for keeping as the next backup's parent.
    pub encoded: bytes::Bytes,
}

/// Writes a chunked backup of `source` (packs into `place`) and commits it by storing its
/// manifest at `loc` (for a backup, then its workspace's `latest` pointer). On any failure no manifest is stored: earlier backups stay as they were,
/// and packs already uploaded are left for garbage collection.
#[allow(clippy::too_many_arguments)]
pub async fn write_backup(
    storage: Arc<Storage>,
    place: PackPlace,
    loc: ObjectLocation,
    source: PathBuf,
    meta_id: String,
    created_unix_nanos: u64,
    parent: Option<Arc<Parent>>,
    opts: Arc<ArchiveOptions>,
) -> Result<Written> {
    let (place_of_pointer, meta_of_pointer) = (place.clone(), meta_id.clone());
    let (tx, rx) = tokio::sync::mpsc::channel::<(String, Vec<u8>)>(1);
    let uploads = {
        let storage = storage.clone();
        tokio_stream_from(rx)
            .map(move |(name, pack)| {
                let storage = storage.clone();
                let loc = place.pack(&name);
                async move { storage.put_new(&loc, pack.into()).await.map(|_| ()) }
            })
            .buffer_unordered(UPLOADS_AT_ONCE)
            .try_collect::<()>()
    };
    let writer = tokio::task::spawn_blocking(move || {
        let mut queue = UploadQueue { tx };
        backup::write_chunked(
            &source,
            &meta_id,
            created_unix_nanos,
            parent.as_deref(),
            &opts,
            &mut queue,
        )
    });
    let (uploaded, written) = tokio::join!(uploads, writer);
    let written = written.map_err(Error::internal)?;
    // A failed upload stops the writer: the upload's error is the cause.
    uploaded?;
    let (manifest, stats) = written.map_err(|e| Error::UploadFailed {
        what: loc.qualified(),
        reason: e.to_string(),
    })?;
    let encoded = tokio::task::spawn_blocking({
        let manifest = manifest.clone();
        move || encode_manifest(&manifest)
    })
    .await
    .map_err(Error::internal)?
    .map_err(Error::internal)?;
    let encoded = bytes::Bytes::from(encoded);
    storage.put_new(&loc, encoded.clone()).await?;
    // A backup (not a snapshot) is complete when the pointer names it.
    if let Some(nanos) = PackPlace::backup_time(&loc.key) {
        let pointer = place_of_pointer.latest_pointer(&meta_of_pointer);
        storage
            .put_bytes(&pointer, nanos.to_string().into_bytes())
            .await?;
    }
    Ok(Written {
        manifest: Arc::new(manifest),
        stats,
        manifest_bytes: encoded.len() as u64,
        encoded,
    })
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Removes all but the newest `keep` (at least one) backup manifests of a workspace; answers how
/// many were removed. Their packs go when garbage collection finds them unreferenced.
pub async fn prune_backups(
    storage: &Storage,
    place: &PackPlace,
    meta_id: &str,
    keep: usize,
) -> Result<usize> {
    let backups = list_backups(storage, place, meta_id).await?;
    let excess = backups.len().saturating_sub(keep.max(1));
    for (loc, _) in &backups[..excess] {
        storage.delete(loc).await?;
    }
    Ok(excess)
}

/// The parent kept in the working area: the location line, then the stored manifest.
pub fn save_local_parent(path: &Path, loc: &ObjectLocation, encoded: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("wsm.tmp");
    let mut bytes = Vec::with_capacity(encoded.len() + 128);
    bytes.extend_from_slice(loc.qualified().as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(encoded);
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, path)
}

/// The parent kept in the working area, if there is a usable one.
pub fn load_local_parent(path: &Path) -> Option<(ObjectLocation, Manifest)> {
    let bytes = std::fs::read(path).ok()?;
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let name = std::str::from_utf8(&bytes[..newline]).ok()?;
    let loc = ObjectLocation::parse_qualified(name).ok()?;
    let manifest = decode_manifest(&bytes[newline + 1..]).ok()?;
    Some((loc, manifest))
}
