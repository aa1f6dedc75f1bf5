//! Restoring a chunked backup: the manifest's entries are created in order by one thread (with the
//! extractor's confinement and id mapping), while the chunks they need are fetched ahead with
//! ranged reads of their packs, several at once, decompressed and checked on blocking threads, and
//! handed over in order. A chunk used again soon (the zero chunk of a sparse file, a file and its
//! copy) is kept in memory up to a budget instead of being fetched twice.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;

use super::format::{chunk_id, Manifest, KIND_DIR, KIND_FILE, KIND_HARD_LINK, KIND_SYMLINK};
use super::objects::PackPlace;
use crate::archive::{ArchiveError, ArchiveOptions, ArchiveStats, Body, EntryMeta, TreeRestore};
use crate::error::{Error, Result};
use crate::storage::Storage;

/// Chunks further apart than this in a pack are fetched with separate reads.
const MAX_GAP: u64 = 256 * 1024;
/// The largest single ranged read.
const MAX_READ: u64 = 8 << 20;
/// Ranged reads in flight.
const READS_AHEAD: usize = 6;
/// Memory for chunks kept to be used again.
const KEEP_BUDGET: u64 = 64 << 20;
/// Batches of decompressed chunks waiting for the writer. The producer hands chunks over in
/// batches (one per read, or [`BATCH_BYTES`]), not one by one: a hand-over per chunk woke the
/// writer thread tens of thousands of times per restore.
pub(super) const BATCHES_AHEAD: usize = 4;
/// A batch is handed over once it holds this many plain bytes.
const BATCH_BYTES: usize = 8 << 20;

/// Chunks in restore order, as the producer hands them over.
pub(super) type Batch = Vec<Bytes>;

#[derive(Clone, Copy)]
enum Source {
    /// From the current read; keep it when it is used again.
    Fetch {
        keep: bool,
    },
    Kept,
}

struct Read1 {
    pack: u32,
    start: u64,
    end: u64,
    chunks: Vec<u32>,
}

/// The order in which file data is needed, and the reads that bring it.
pub(super) struct Plan {
    steps: Vec<(u32, Source)>,
    reads: Vec<Read1>,
}

pub(super) fn plan(m: &Manifest) -> Plan {
    let order: Vec<u32> = m
        .entries
        .iter()
        .filter(|e| e.kind == KIND_FILE)
        .flat_map(|e| e.chunks.iter().copied())
        .collect();
    let mut remaining: HashMap<u32, u32> = HashMap::new();
    for &c in &order {
        *remaining.entry(c).or_default() += 1;
    }
    let mut kept: HashMap<u32, u64> = HashMap::new();
    let mut kept_bytes = 0u64;
    let mut steps = Vec::with_capacity(order.len());
    let mut reads: Vec<Read1> = Vec::new();
    for c in order {
        let left = remaining.get_mut(&c).map(|n| {
            *n -= 1;
            *n
        });
        let left = left.unwrap_or(0);
        if let Entry::Vacant(slot) = kept.entry(c) {
            let loc = &m.chunks[c as usize];
            let keep = left > 0 && kept_bytes + u64::from(loc.plain_len) <= KEEP_BUDGET;
            if keep {
                slot.insert(u64::from(loc.plain_len));
                kept_bytes += u64::from(loc.plain_len);
            }
            steps.push((c, Source::Fetch { keep }));
            let end = loc.offset + u64::from(loc.stored_len);
            match reads.last_mut() {
                Some(r)
                    if r.pack == loc.pack
                        && loc.offset >= r.end
                        && loc.offset - r.end <= MAX_GAP
                        && end - r.start <= MAX_READ =>
                {
                    r.end = end;
                    r.chunks.push(c);
                }
                _ => reads.push(Read1 {
                    pack: loc.pack,
                    start: loc.offset,
                    end,
                    chunks: vec![c],
                }),
            }
        } else {
            steps.push((c, Source::Kept));
        }
        if left == 0 {
            if let Some(bytes) = kept.remove(&c) {
                kept_bytes -= bytes;
            }
        }
    }
    Plan { steps, reads }
}

/// Restores `manifest` (stored at `what`, for messages) into the existing folder `target`. A
/// missing or damaged pack fails with DATA_LOSS naming the backup's workspace; the caller removes
/// the partial tree.
pub async fn restore_manifest(
    storage: Arc<Storage>,
    place: PackPlace,
    manifest: Arc<Manifest>,
    what: String,
    target: PathBuf,
    opts: Arc<ArchiveOptions>,
) -> Result<ArchiveStats> {
    let plan = plan(&manifest);
    if let Some(p) = &opts.progress {
        let files = manifest
            .entries
            .iter()
            .filter(|e| e.kind == KIND_FILE)
            .count();
        p.set_totals(manifest.content_bytes, files as u64);
    }
    let (tx, rx) = mpsc::channel::<Batch>(BATCHES_AHEAD);
    let fetched = Arc::new(std::sync::atomic::AtomicU64::new(0));

    let producer = produce(
        storage,
        place,
        manifest.clone(),
        what.clone(),
        plan,
        tx,
        fetched.clone(),
    );
    let consumer = {
        let manifest = manifest.clone();
        tokio::task::spawn_blocking(move || {
            write_tree(&manifest, &mut ChunkFeed::new(rx), &target, &opts)
        })
    };
    let (produced, written) = tokio::join!(producer, consumer);
    let written = written.map_err(Error::internal)?;
    // A fetch that failed ends the chunk stream: its error explains the writer's.
    produced?;
    let stats = written.map_err(|e| Error::InitFailed(format!("cannot restore {what}: {e}")))?;
    Ok(ArchiveStats {
        archive_bytes: fetched.load(std::sync::atomic::Ordering::Relaxed),
        ..stats
    })
}

fn damaged(m: &Manifest, what: &str, why: impl std::fmt::Display) -> Error {
    Error::DataLoss(format!(
        "the backup {what} of workspace {} is damaged: {why}",
        m.workspace
    ))
}

/// Fetches the planned reads and sends every step's chunk, in order.
pub(super) async fn produce(
    storage: Arc<Storage>,
    place: PackPlace,
    m: Arc<Manifest>,
    what: String,
    plan: Plan,
    tx: mpsc::Sender<Batch>,
    fetched: Arc<std::sync::atomic::AtomicU64>,
) -> Result<()> {
    let Plan { steps, reads } = plan;
    let mut reads = futures::stream::iter(reads.into_iter().map(|r| {
        let (storage, m, what, fetched) =
            (storage.clone(), m.clone(), what.clone(), fetched.clone());
        let pack_name = m.packs[r.pack as usize].clone();
        let loc = place.pack(&pack_name);
        async move {
            let bytes = storage
                .get_range(&loc, r.start..r.end)
                .await?
                .ok_or_else(|| damaged(&m, &what, format_args!("pack {pack_name} is missing")))?;
            fetched.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
            tokio::task::spawn_blocking(move || unpack(&m, &what, &r, &bytes, &pack_name))
                .await
                .map_err(Error::internal)?
        }
    }))
    .buffered(READS_AHEAD);
    let mut current = Vec::new().into_iter();
    let mut kept: HashMap<u32, Bytes> = HashMap::new();
    let mut remaining: HashMap<u32, u32> = HashMap::new();
    for (c, _) in &steps {
        *remaining.entry(*c).or_default() += 1;
    }
    let mut batch: Batch = Vec::new();
    let mut batch_bytes = 0;
    for (c, source) in steps {
        let plain = match source {
            Source::Kept => kept.get(&c).cloned(),
            Source::Fetch { keep } => {
                let next = match current.next() {
                    Some(p) => Some(p),
                    None => {
                        // The writer gets what is ready before this waits for the next read.
                        if !batch.is_empty() {
                            batch_bytes = 0;
                            if tx.send(std::mem::take(&mut batch)).await.is_err() {
                                return Ok(());
                            }
                        }
                        match reads.try_next().await? {
                            Some(unpacked) => {
                                current = unpacked.into_iter();
                                current.next()
                            }
                            None => None,
                        }
                    }
                };
                if keep {
                    if let Some(p) = &next {
                        kept.insert(c, p.clone());
                    }
                }
                next
            }
        };
        let Some(plain) = plain else {
            return Err(Error::internal("the restore plan and its reads disagree"));
        };
        if let Some(n) = remaining.get_mut(&c) {
            *n -= 1;
            if *n == 0 {
                kept.remove(&c);
            }
        }
        batch_bytes += plain.len();
        batch.push(plain);
        if batch_bytes >= BATCH_BYTES {
            batch_bytes = 0;
            if tx.send(std::mem::take(&mut batch)).await.is_err() {
                // The writer stopped; its error is the one reported.
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        // An error here means the writer stopped; its error is the one reported.
        let _ = tx.send(batch).await;
    }
    Ok(())
}

/// Decompresses and checks the chunks of one read.
fn unpack(m: &Manifest, what: &str, r: &Read1, bytes: &[u8], pack: &str) -> Result<Vec<Bytes>> {
    let mut out = Vec::with_capacity(r.chunks.len());
    let mut decompressor = zstd::bulk::Decompressor::new().map_err(Error::internal)?;
    for &c in &r.chunks {
        let loc = &m.chunks[c as usize];
        let from = usize::try_from(loc.offset - r.start).map_err(Error::internal)?;
        let frame = bytes
            .get(from..from + loc.stored_len as usize)
            .ok_or_else(|| {
                damaged(
                    m,
                    what,
                    format_args!("pack {pack} is shorter than recorded"),
                )
            })?;
        let plain = decompressor
            .decompress(frame, loc.plain_len as usize)
            .map_err(|_| {
                damaged(
                    m,
                    what,
                    format_args!("a chunk in pack {pack} cannot be decompressed"),
                )
            })?;
        if plain.len() != loc.plain_len as usize || chunk_id(&plain).as_slice() != loc.id.as_slice()
        {
            return Err(damaged(
                m,
                what,
                format_args!("a chunk in pack {pack} does not match its hash"),
            ));
        }
        out.push(Bytes::from(plain));
    }
    Ok(out)
}

/// The chunks the producer hands over, one at a time, in restore order.
pub(super) struct ChunkFeed {
    rx: mpsc::Receiver<Batch>,
    pending: std::vec::IntoIter<Bytes>,
}

impl ChunkFeed {
    pub(super) fn new(rx: mpsc::Receiver<Batch>) -> ChunkFeed {
        ChunkFeed {
            rx,
            pending: Vec::new().into_iter(),
        }
    }

    /// The next chunk, waiting for the producer; `None` when it stopped.
    fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.pending.next() {
                return Some(chunk);
            }
            self.pending = self.rx.blocking_recv()?.into_iter();
        }
    }
}

/// Reads a file's chunks from the feed, in order.
pub(super) struct ChunkReader<'r> {
    pub(super) feed: &'r mut ChunkFeed,
    pub(super) left: usize,
    pub(super) current: Bytes,
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.left == 0 {
                return Ok(0);
            }
            self.current = self
                .feed
                .next_chunk()
                .ok_or_else(|| io::Error::other("the chunk stream ended early"))?;
            self.left -= 1;
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

fn write_tree(
    m: &Manifest,
    feed: &mut ChunkFeed,
    target: &std::path::Path,
    opts: &ArchiveOptions,
) -> std::result::Result<ArchiveStats, ArchiveError> {
    let mut tree = TreeRestore::open(target, opts)?;
    for e in &m.entries {
        let meta = EntryMeta {
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime_secs: e.mtime_secs,
            mtime_nanos: e.mtime_nanos,
            xattrs: e
                .xattrs
                .iter()
                .map(|x| (x.name.clone(), x.value.clone()))
                .collect(),
        };
        match e.kind {
            KIND_DIR => tree.entry(&e.path, meta, Body::Dir)?,
            KIND_SYMLINK => tree.entry(&e.path, meta, Body::Symlink(&e.link))?,
            KIND_HARD_LINK => tree.entry(&e.path, meta, Body::HardLink(&e.link))?,
            KIND_FILE => {
                let mut data = ChunkReader {
                    feed: &mut *feed,
                    left: e.chunks.len(),
                    current: Bytes::new(),
                };
                tree.entry(
                    &e.path,
                    meta,
                    Body::File {
                        size: e.size,
                        data: &mut data,
                    },
                )?
            }
            // decode_manifest refuses other kinds.
            _ => {}
        }
    }
    tree.finish()
}
