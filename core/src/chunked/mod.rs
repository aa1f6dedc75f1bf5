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

pub use backup::{BackupStats, DeltaBase, PackSink, Parent, PACK_TARGET};
pub use export::export_full_archive;
use format::DELTA_HEADER_MAX;
pub use format::{
    decode_manifest, decode_stored, delta_header, encode_manifest, is_manifest, Delta, DeltaHeader,
    FormatError, Manifest, Stored,
};
pub use gc::{collect_garbage, delete_workspace, GcReport};
pub use objects::{is_manifest_key, PackPlace, MANIFEST_EXT};
pub use restore::restore_manifest;

use crate::archive::ArchiveOptions;
use crate::error::{Error, Result};
use crate::storage::{ObjectLocation, Storage};

/// Packs uploaded at once by one backup.
const UPLOADS_AT_ONCE: usize = 3;

/// Reads the manifest at `loc`, a delta resolved against its base: `None` when there is none,
/// DATA_LOSS when it (or a delta's base) is damaged or missing.
pub async fn load_manifest(storage: &Storage, loc: &ObjectLocation) -> Result<Option<Manifest>> {
    Ok(load_stored(storage, loc)
        .await?
        .map(|loaded| Arc::unwrap_or_clone(loaded.manifest)))
}

/// A stored manifest: what it stands for, its stored bytes and, for a delta, its base.
#[derive(Clone)]
pub struct Loaded {
    pub loc: ObjectLocation,
    /// The manifest, a delta resolved.
    pub manifest: Arc<Manifest>,
    pub encoded: bytes::Bytes,
    pub base: Option<DeltaBase>,
}

impl Loaded {
    /// This manifest as the parent of the workspace's next backup, whose manifest may be a delta
    /// against this one's base, or against this one when it is full.
    pub fn into_parent(self) -> Parent {
        let base = self.base.unwrap_or_else(|| DeltaBase {
            key: self.loc.key.clone(),
            hash: *blake3::hash(&self.encoded).as_bytes(),
            manifest: self.manifest.clone(),
            encoded: self.encoded.clone(),
        });
        Parent::with_base(self.manifest, Some(base))
    }
}

/// Reads the manifest at `loc` and, for a delta, its base (see [`load_manifest`]).
pub async fn load_stored(storage: &Storage, loc: &ObjectLocation) -> Result<Option<Loaded>> {
    let Some(encoded) = storage.get_bytes(loc).await? else {
        return Ok(None);
    };
    let what = loc.qualified();
    let unusable =
        move |e: FormatError| Error::DataLoss(format!("the manifest {what} cannot be used: {e}"));
    let stored = {
        let encoded = encoded.clone();
        tokio::task::spawn_blocking(move || decode_stored(&encoded))
            .await
            .map_err(Error::internal)?
            .map_err(unusable.clone())?
    };
    let base = match &stored {
        Stored::Full(_) => None,
        Stored::Delta(header, _) => {
            let base_loc = ObjectLocation {
                bucket: loc.bucket.clone(),
                key: header.base_key.clone(),
            };
            // A base is a full backup of the same workspace, next to the delta.
            if !may_build_on(&loc.key, &base_loc.key) {
                return Err(unusable(FormatError::Damaged(
                    "its base is not another backup of the same workspace".into(),
                )));
            }
            let Some(base) = storage.get_bytes(&base_loc).await? else {
                return Err(unusable(FormatError::Damaged(format!(
                    "its base {} is missing",
                    base_loc.qualified()
                ))));
            };
            Some(base)
        }
    };
    let loc = loc.clone();
    tokio::task::spawn_blocking(move || assemble(loc, encoded, stored, base))
        .await
        .map_err(Error::internal)?
        .map(Some)
        .map_err(unusable)
}

/// The [`Loaded`] form of a decoded stored manifest: a delta resolved against `base_encoded`, the
/// stored bytes of its base, which must be the ones it was made against. Blocking.
fn assemble(
    loc: ObjectLocation,
    encoded: bytes::Bytes,
    stored: Stored,
    base_encoded: Option<bytes::Bytes>,
) -> std::result::Result<Loaded, FormatError> {
    let (header, delta) = match stored {
        Stored::Full(manifest) => {
            return Ok(Loaded {
                loc,
                manifest: Arc::new(manifest),
                encoded,
                base: None,
            })
        }
        Stored::Delta(header, delta) => (header, delta),
    };
    let base_encoded = base_encoded
        .filter(|b| *blake3::hash(b).as_bytes() == header.base_hash)
        .ok_or_else(|| {
            FormatError::Damaged("its base is not the manifest it was made against".into())
        })?;
    let base = decode_manifest(&base_encoded)?;
    let manifest = format::resolve_delta(&base, delta)?;
    Ok(Loaded {
        loc,
        manifest: Arc::new(manifest),
        encoded,
        base: Some(DeltaBase {
            key: header.base_key,
            hash: header.base_hash,
            manifest: Arc::new(base),
            encoded: base_encoded,
        }),
    })
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
#[derive(Clone)]
pub struct Written {
    /// The manifest as stored (full or a delta), as a load of it would answer it: the next
    /// backup's parent.
    pub stored: Loaded,
    pub stats: BackupStats,
}

impl Written {
    /// Size of the stored manifest.
    pub fn manifest_bytes(&self) -> u64 {
        self.stored.encoded.len() as u64
    }
}

/// Writes a chunked backup of `source` (packs into `place`) and commits it by storing its
/// manifest at `loc` (for a backup, then its workspace's `latest` pointer). On any failure no
/// manifest is stored: earlier backups stay as they were, and packs already uploaded are left for
/// garbage collection. A backup whose parent has a full base among the workspace's backups is
/// stored as a delta against it while the delta stays small (`format::delta_pays_off`);
/// snapshots are always stored in full.
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
    let delta_against = parent
        .as_ref()
        .and_then(|p| p.delta_base().cloned())
        .filter(|base| may_build_on(&loc.key, &base.key));
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
    let manifest = Arc::new(manifest);
    let (encoded, base) = tokio::task::spawn_blocking({
        let manifest = manifest.clone();
        move || encode_backup(&manifest, delta_against)
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
        stored: Loaded {
            loc,
            manifest,
            encoded,
            base,
        },
        stats,
    })
}

/// Whether the manifest at `key` may be stored as a delta against the one at `base_key`: both
/// backups (never a snapshot) of the same workspace, so that pruning keeps the base as long as
/// the delta.
fn may_build_on(key: &str, base_key: &str) -> bool {
    let folder = |k: &str| k.rsplit_once('/').map(|(folder, _)| folder.to_string());
    key != base_key
        && PackPlace::backup_time(key).is_some()
        && PackPlace::backup_time(base_key).is_some()
        && folder(key) == folder(base_key)
}

/// The stored form of a backup's manifest: a delta against `base` when there is one and the delta
/// pays off, else the full manifest.
fn encode_backup(
    manifest: &Manifest,
    base: Option<DeltaBase>,
) -> std::io::Result<(Vec<u8>, Option<DeltaBase>)> {
    if let Some(base) = base {
        let delta = format::make_delta(&base.manifest, manifest);
        if format::delta_pays_off(&delta, manifest) {
            let header = format::DeltaHeader {
                base_key: base.key.clone(),
                base_hash: base.hash,
            };
            return Ok((format::encode_delta(&header, &delta)?, Some(base)));
        }
    }
    Ok((encode_manifest(manifest)?, None))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Removes all but the newest `keep` (at least one) backup manifests of a workspace, and the full
/// manifests the kept deltas build on; answers how many were removed. Their packs go when garbage
/// collection finds them unreferenced.
pub async fn prune_backups(
    storage: &Storage,
    place: &PackPlace,
    meta_id: &str,
    keep: usize,
) -> Result<usize> {
    let backups = list_backups(storage, place, meta_id).await?;
    let excess = backups.len().saturating_sub(keep.max(1));
    let mut bases = std::collections::HashSet::new();
    for (loc, _) in &backups[excess..] {
        let Some(size) = storage.head(loc).await?.map(|meta| meta.size) else {
            continue;
        };
        let head_len = (DELTA_HEADER_MAX as u64).min(size);
        let Some(head) = storage.get_range(loc, 0..head_len).await? else {
            continue;
        };
        match delta_header(&head) {
            Ok(Some(header)) => {
                bases.insert(header.base_key);
            }
            Ok(None) => {}
            // A damaged manifest names no base to keep; its own restore reports the damage.
            Err(e) => {
                tracing::warn!(object = %loc.qualified(), error = %e, "cannot read a kept backup manifest's header")
            }
        }
    }
    let mut removed = 0;
    // Newest first: a delta goes before its base, so whoever finds a base gone finds its deltas
    // gone too (garbage collection relies on it).
    for (loc, _) in backups[..excess].iter().rev() {
        if !bases.contains(&loc.key) {
            storage.delete(loc).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Keeps a manifest in the working area as the next backup's parent: the location line, the
/// stored manifest's length (8 bytes, little-endian) and bytes, then for a delta its base's.
pub fn save_local_parent(path: &Path, parent: &Loaded) -> std::io::Result<()> {
    let tmp = path.with_extension("wsm.tmp");
    let base_encoded = parent.base.as_ref().map_or(&[][..], |b| &b.encoded[..]);
    let encoded = &parent.encoded[..];
    let mut bytes = Vec::with_capacity(encoded.len() + base_encoded.len() + 136);
    bytes.extend_from_slice(parent.loc.qualified().as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(&(encoded.len() as u64).to_le_bytes());
    bytes.extend_from_slice(encoded);
    bytes.extend_from_slice(base_encoded);
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, path)
}

/// The parent kept in the working area, if there is a usable one (a delta resolved against the
/// base kept with it). Blocking.
pub fn load_local_parent(path: &Path) -> Option<Loaded> {
    let bytes = bytes::Bytes::from(std::fs::read(path).ok()?);
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let name = std::str::from_utf8(&bytes[..newline]).ok()?;
    let loc = ObjectLocation::parse_qualified(name).ok()?;
    let rest = bytes.slice(newline + 1..);
    let len = usize::try_from(u64::from_le_bytes(*rest.first_chunk::<8>()?)).ok()?;
    let end = 8usize.checked_add(len).filter(|&end| end <= rest.len())?;
    let encoded = rest.slice(8..end);
    let stored = decode_stored(&encoded).ok()?;
    let base = matches!(stored, Stored::Delta(..)).then(|| rest.slice(end..));
    assemble(loc, encoded, stored, base).ok()
}
