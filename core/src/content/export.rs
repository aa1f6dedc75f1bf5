//! A workspace's newest backup as one archive, whichever mode wrote it: a full archive is copied as
//! it is stored, a chunked backup is turned into the tar (+zstd) stream a `full` backup of the
//! same tree would be, as its chunks arrive (no temporary file). What a client that wants to
//! download a workspace's content gets (`ws-daemon export`).

use std::io::Write;
use std::sync::Arc;

use crate::chunked::{self, PackPlace};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::initializer::find_backup;
use crate::storage::{process_env, Storage};

/// What [`export_backup`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// The backup it came from (`object@bucket`).
    pub source: String,
    /// Whether it was made from a chunked backup (else copied from a full archive).
    pub from_manifest: bool,
    /// Whether the archive is zstd-compressed (else plain tar).
    pub zstd: bool,
}

/// Writes the newest backup of owner + meta id to `out` as one archive. NOT_FOUND when the
/// workspace has no backup (or it went while being read), FAILED_PRECONDITION without remote
/// storage; missing or damaged chunks fail with DATA_LOSS, and `out` then holds an incomplete
/// archive (no end marker), which the caller discards.
pub async fn export_backup(
    config: &Config,
    owner: &str,
    meta_id: &str,
    out: Box<dyn Write + Send>,
) -> Result<Exported> {
    let storage = Storage::from_config(&config.storage, &process_env)?
        .map(Arc::new)
        .ok_or_else(|| Error::StorageDisabled(meta_id.to_string()))?;
    let loc = find_backup(&storage, owner, meta_id)
        .await?
        .ok_or_else(|| Error::BackupNotFound(meta_id.to_string()))?;
    let source = loc.qualified();
    if !chunked::is_manifest_key(&loc.key) {
        let mut out = out;
        let copied = storage
            .download(&loc, move |reader| {
                std::io::copy(reader, &mut out).and_then(|_| out.flush())
            })
            .await?
            .ok_or_else(|| Error::BackupNotFound(meta_id.to_string()))?;
        copied.map_err(|e| Error::Internal(format!("cannot write the archive: {e}")))?;
        return Ok(Exported {
            zstd: loc.key.ends_with(".zst"),
            source,
            from_manifest: false,
        });
    }
    let place = PackPlace::of_manifest(&loc)
        .ok_or_else(|| Error::internal("a backup manifest outside the workspaces folder"))?;
    let manifest = chunked::load_manifest(&storage, &loc)
        .await?
        .ok_or_else(|| Error::BackupNotFound(meta_id.to_string()))?;
    let opts = Arc::new(super::archive_options(config)?);
    let zstd = matches!(opts.compression, crate::archive::Compression::Zstd);
    chunked::export_full_archive(
        storage,
        place,
        Arc::new(manifest),
        source.clone(),
        out,
        opts,
    )
    .await?;
    Ok(Exported {
        source,
        from_manifest: true,
        zstd,
    })
}
