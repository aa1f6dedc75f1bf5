//! A full archive made on demand from a chunked backup: the tar (+zstd) stream a `full` backup of
//! the same tree would be, streamed as the chunks arrive (no temporary file), for clients that
//! need one archive (downloads of a workspace's content).

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::format::{Manifest, KIND_DIR, KIND_FILE, KIND_HARD_LINK, KIND_SYMLINK};
use super::objects::PackPlace;
use super::restore::{plan, produce, Batch, ChunkFeed, ChunkReader, BATCHES_AHEAD};
use crate::archive::{ArchiveError, ArchiveOptions, ArchiveStats, EntryWriter, Head};
use crate::error::{Error, Result};
use crate::storage::Storage;

/// Streams the full archive of `manifest` (stored at `what`) into `out`, compressed as `opts`
/// says. Missing or damaged chunks fail with DATA_LOSS; what was written to `out` by then is an
/// incomplete archive (it lacks the end marker and the zstd frame end).
pub async fn export_full_archive(
    storage: Arc<Storage>,
    place: PackPlace,
    manifest: Arc<Manifest>,
    what: String,
    out: Box<dyn Write + Send>,
    opts: Arc<ArchiveOptions>,
) -> Result<ArchiveStats> {
    let plan = plan(&manifest);
    let (tx, rx) = mpsc::channel::<Batch>(BATCHES_AHEAD);
    let fetched = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let producer = produce(
        storage,
        place,
        manifest.clone(),
        what.clone(),
        plan,
        tx,
        fetched,
    );
    let writer = tokio::task::spawn_blocking(move || {
        write_archive(&manifest, &mut ChunkFeed::new(rx), out, &opts)
    });
    let (produced, written) = tokio::join!(producer, writer);
    let written = written.map_err(Error::internal)?;
    produced?;
    written.map_err(|e| Error::Internal(format!("cannot write the archive of {what}: {e}")))
}

fn write_archive(
    m: &Manifest,
    feed: &mut ChunkFeed,
    out: Box<dyn Write + Send>,
    opts: &ArchiveOptions,
) -> std::result::Result<ArchiveStats, ArchiveError> {
    let mut tar = EntryWriter::new(out, opts)?;
    for e in &m.entries {
        let head = Head {
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime_secs: e.mtime_secs,
            mtime_nanos: e.mtime_nanos,
        };
        let xattrs: Vec<(Vec<u8>, Vec<u8>)> = e
            .xattrs
            .iter()
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect();
        match e.kind {
            KIND_DIR => tar.dir(&e.path, &head, &xattrs)?,
            KIND_SYMLINK => tar.link(&e.path, &head, &e.link, false)?,
            KIND_HARD_LINK => tar.link(&e.path, &head, &e.link, true)?,
            KIND_FILE => {
                let mut data = ChunkReader {
                    feed: &mut *feed,
                    left: e.chunks.len(),
                    current: Bytes::new(),
                };
                tar.file(&e.path, &head, &xattrs, e.size, &mut data)?
            }
            // decode_manifest refuses other kinds.
            _ => {}
        }
    }
    tar.finish()
}
