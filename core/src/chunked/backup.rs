//! Writing a chunked backup of a folder: walk the tree, reuse what the parent backup recorded for
//! files whose inode, size, mtime and ctime did not change, split the others with FastCDC, and
//! compress and pack only chunks that neither the parent nor this backup has stored yet.
//!
//! Three kinds of threads: the walk (reading and cutting chunks) on the calling thread, workers
//! that hash each chunk and compress the ones not stored yet, and the packer that fills packs and
//! hands each full one to a [`PackSink`]. The walk numbers the chunks it sends; the packer learns
//! each number's id, so entries are resolved when the manifest is built. Hashing in the workers
//! keeps it off the serial walk. Channels between them are bounded, so memory stays a few chunks
//! per worker whatever the tree.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use nix::dir::Dir;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use xattr::FileExt;

use super::format::{
    chunk_id, ChunkId, ChunkLoc, Entry, Manifest, Xattr, CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, KIND_DIR,
    KIND_FILE, KIND_HARD_LINK, KIND_SYMLINK, MANIFEST_VERSION, PACK_MAGIC,
};
use crate::archive::{
    file_kind, is_vanished, walk_tree, xattr_archived, ArchiveError, ArchiveOptions, IdMap,
    NOBODY_ID,
};

/// A file changed this close to the backup's start (or later) may change again within the same
/// timestamp tick after it was read, unseen by size, mtime and ctime: the next backup reads it
/// again (its ctime is not recorded). Kernel timestamps are coarse (a few milliseconds).
const RACY_SECS: i64 = 2;

/// Packs are closed once they hold this many bytes (so they end up 16-20 MiB).
pub const PACK_TARGET: usize = 16 << 20;

/// Receives finished packs. `put` may block (it is the upload's back pressure) and fails when the
/// pack cannot be stored, which ends the backup.
pub trait PackSink: Send {
    fn put(&mut self, name: &str, pack: Vec<u8>) -> io::Result<()>;
}

/// What a backup reuses from the previous one.
pub struct Parent {
    manifest: Arc<Manifest>,
    by_path: HashMap<Vec<u8>, usize>,
    base: Option<DeltaBase>,
}

/// The full manifest a backup may store its manifest as a delta against (see `format`): the
/// parent itself when it is full, else the parent's own base.
#[derive(Clone)]
pub struct DeltaBase {
    pub key: String,
    /// BLAKE3 of its stored bytes.
    pub hash: [u8; 32],
    pub manifest: Arc<Manifest>,
    /// Its stored bytes, kept in the working area with the parent.
    pub encoded: bytes::Bytes,
}

impl Parent {
    /// A parent whose manifest no delta may build on.
    pub fn new(manifest: Manifest) -> Parent {
        Parent::with_base(Arc::new(manifest), None)
    }

    /// A parent, and the full manifest the next backup may store a delta against.
    pub fn with_base(manifest: Arc<Manifest>, base: Option<DeltaBase>) -> Parent {
        let by_path = manifest
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.kind == KIND_FILE)
            .map(|(i, e)| (e.path.clone(), i))
            .collect();
        Parent {
            manifest,
            by_path,
            base,
        }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn delta_base(&self) -> Option<&DeltaBase> {
        self.base.as_ref()
    }
}

/// Counters of one chunked backup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackupStats {
    pub entries: u64,
    /// Regular files read and chunked.
    pub files_read: u64,
    /// Regular files whose chunks came from the parent without reading them.
    pub files_unchanged: u64,
    pub content_bytes: u64,
    /// Bytes read from files (the rest came from the parent).
    pub bytes_read: u64,
    pub chunks_new: u64,
    pub chunks_reused: u64,
    /// Bytes of the packs written (what was uploaded).
    pub pack_bytes: u64,
    pub packs: u64,
    pub skipped: u64,
    pub unmapped_ids: u64,
}

/// Where a stored chunk lives.
#[derive(Clone, Debug)]
struct Stored {
    pack: Arc<str>,
    offset: u64,
    stored_len: u32,
    plain_len: u32,
}

/// A chunk cut by the walk, numbered in the order the walk sent it.
struct Job {
    seq: u64,
    plain: Vec<u8>,
}

/// A chunk hashed by a worker: compressed when this backup stores it, `None` when it is stored
/// already (by the parent, or by another job of this backup).
struct Compressed {
    seq: u64,
    id: ChunkId,
    plain_len: u32,
    frame: Option<Vec<u8>>,
}

/// A file's chunk: known by id (the parent's, for an unchanged file), or by the walk's number
/// until a worker has hashed it.
#[derive(Clone, Copy)]
enum ChunkRef {
    Id(ChunkId),
    Seq(u64),
}

/// What the workers share to store each chunk once.
struct Dedup<'a> {
    /// The parent's chunks.
    reused: &'a HashMap<ChunkId, Stored>,
    /// Chunks a worker of this backup claimed for packing.
    claimed: Mutex<HashSet<ChunkId>>,
}

impl Dedup<'_> {
    /// Whether the worker that hashed `id` is the one to store it.
    fn claim(&self, id: &ChunkId) -> bool {
        if self.reused.contains_key(id) {
            return false;
        }
        match self.claimed.lock() {
            Ok(mut claimed) => claimed.insert(*id),
            // A worker panicked; storing a chunk twice is harmless.
            Err(poisoned) => poisoned.into_inner().insert(*id),
        }
    }
}

/// Writes the chunked form of `source` and answers its manifest (not yet stored: the caller stores
/// it after this returns, which commits the backup). Blocking; runs on a thread of its own.
pub fn write_chunked(
    source: &Path,
    workspace: &str,
    created_unix_nanos: u64,
    parent: Option<&Parent>,
    opts: &ArchiveOptions,
    sink: &mut dyn PackSink,
) -> Result<(Manifest, BackupStats), ArchiveError> {
    let workers = usize::try_from(opts.zstd_workers.max(1)).unwrap_or(1);
    let (job_tx, job_rx) = sync_channel::<Job>(workers * 2);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = sync_channel::<Compressed>(workers * 2);
    let level = opts.zstd_level;

    let reused = parent_chunks(parent);
    let dedup = Dedup {
        reused: &reused,
        claimed: Mutex::new(HashSet::new()),
    };
    std::thread::scope(|scope| {
        let mut compressors = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (jobs, done, dedup) = (job_rx.clone(), done_tx.clone(), &dedup);
            let spawned = std::thread::Builder::new()
                .name("chunk-compress".into())
                .spawn_scoped(scope, move || compress_loop(&jobs, &done, dedup, level));
            compressors.push(spawned.map_err(|e| ArchiveError::io("spawn thread", b"", e))?);
        }
        // Only the workers hold the job queue and the result channel: when the packer stops,
        // the workers stop, and then the walk's next send fails instead of blocking.
        drop(job_rx);
        drop(done_tx);
        let packer = std::thread::Builder::new()
            .name("chunk-pack".into())
            .spawn_scoped(scope, move || pack_loop(done_rx, sink))
            .map_err(|e| ArchiveError::io("spawn thread", b"", e))?;

        let racy_after = i128::from(created_unix_nanos) - i128::from(RACY_SECS) * 1_000_000_000;
        let mut walker = Walker::new(parent, opts, job_tx, racy_after);
        let walked = walk_tree(source, |dirfd, name, path| walker.entry(dirfd, name, path));
        let Walker {
            entries,
            stats,
            jobs,
            ..
        } = walker;
        // Closing the job channel lets the workers and then the packer finish.
        drop(jobs);
        let mut compress_failed = None;
        for worker in compressors {
            match worker.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => compress_failed = Some(e),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        let packed = match packer.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        // A failed upload stops the walk (its sends fail): report the upload, not the walk.
        let packed = packed?;
        if let Some(e) = compress_failed {
            return Err(e);
        }
        walked?;
        let mut stats = stats;
        stats.pack_bytes = packed.bytes;
        stats.packs = packed.packs;
        stats.chunks_new += packed.chunks_new;
        stats.chunks_reused += packed.chunks_stored_before;
        let manifest = build_manifest(
            workspace,
            created_unix_nanos,
            entries,
            &reused,
            &packed,
            &mut stats,
        )?;
        Ok((manifest, stats))
    })
}

/// An entry whose chunks are still ids or numbers (locations are known only when packing is
/// done).
struct Pending {
    entry: Entry,
    chunk_ids: Vec<ChunkRef>,
}

struct Walker<'a> {
    parent: Option<&'a Parent>,
    opts: &'a ArchiveOptions,
    jobs: SyncSender<Job>,
    entries: Vec<Pending>,
    stats: BackupStats,
    /// Chunks sent to the workers so far (the next one's number).
    sent: u64,
    /// (dev, ino) -> path of the first entry of a multiply linked file.
    links: HashMap<(u64, u64), Vec<u8>>,
    small: Vec<u8>,
    /// The chunking window of large files (reused).
    window: Vec<u8>,
    /// Files whose ctime or mtime is at or after this (unix nanoseconds) are "racily clean".
    racy_after: i128,
}

impl<'a> Walker<'a> {
    fn new(
        parent: Option<&'a Parent>,
        opts: &'a ArchiveOptions,
        jobs: SyncSender<Job>,
        racy_after: i128,
    ) -> Self {
        Walker {
            parent,
            opts,
            jobs,
            entries: Vec::new(),
            stats: BackupStats::default(),
            sent: 0,
            links: HashMap::new(),
            small: Vec::with_capacity(CHUNK_MIN as usize),
            window: Vec::new(),
            racy_after,
        }
    }

    fn entry(
        &mut self,
        dirfd: BorrowedFd<'_>,
        name: &CStr,
        path: &[u8],
    ) -> Result<Option<Dir>, ArchiveError> {
        let st = match fstatat(dirfd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) if is_vanished(e) => return Ok(self.vanished(path)),
            Err(e) => return Err(ArchiveError::nix("stat", path, e)),
        };
        let kind = file_kind(&st);
        if kind == SFlag::S_IFREG {
            self.file(dirfd, name, path, &st)?;
            Ok(None)
        } else if kind == SFlag::S_IFDIR {
            self.dir(dirfd, name, path)
        } else if kind == SFlag::S_IFLNK {
            self.symlink(dirfd, name, path, &st)?;
            Ok(None)
        } else {
            tracing::debug!(name = %String::from_utf8_lossy(path), "skipping special file");
            self.stats.skipped += 1;
            Ok(None)
        }
    }

    fn vanished<T>(&mut self, path: &[u8]) -> Option<T> {
        tracing::debug!(name = %String::from_utf8_lossy(path), "file vanished while backing up");
        self.stats.skipped += 1;
        None
    }

    fn base_entry(&mut self, path: &[u8], kind: i32, st: &FileStat) -> Entry {
        let nanos = |secs: i64, nsec: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsec);
        let racy = nanos(st.st_ctime, st.st_ctime_nsec) >= self.racy_after
            || nanos(st.st_mtime, st.st_mtime_nsec) >= self.racy_after;
        let (ctime_secs, ctime_nanos) = if racy {
            (0, 0)
        } else {
            (st.st_ctime, u32::try_from(st.st_ctime_nsec).unwrap_or(0))
        };
        Entry {
            path: path.to_vec(),
            kind,
            mode: st.st_mode & 0o7777,
            uid: map_id(&self.opts.uid_map, st.st_uid, &mut self.stats.unmapped_ids),
            gid: map_id(&self.opts.gid_map, st.st_gid, &mut self.stats.unmapped_ids),
            mtime_secs: st.st_mtime,
            mtime_nanos: u32::try_from(st.st_mtime_nsec).unwrap_or(0),
            ctime_secs,
            ctime_nanos,
            inode: st.st_ino,
            device: st.st_dev,
            ..Entry::default()
        }
    }

    fn push(&mut self, entry: Entry, chunk_ids: Vec<ChunkRef>) {
        self.stats.entries += 1;
        if entry.kind == KIND_FILE {
            if let Some(p) = &self.opts.progress {
                p.add_file();
            }
        }
        self.entries.push(Pending { entry, chunk_ids });
    }

    fn dir(
        &mut self,
        dirfd: BorrowedFd<'_>,
        name: &CStr,
        path: &[u8],
    ) -> Result<Option<Dir>, ArchiveError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = match openat(dirfd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) if is_vanished(e) => return Ok(self.vanished(path)),
            Err(e) => return Err(ArchiveError::nix("open folder", path, e)),
        };
        let st = fstat(&fd).map_err(|e| ArchiveError::nix("stat", path, e))?;
        let file = File::from(fd);
        let mut entry = self.base_entry(path, KIND_DIR, &st);
        entry.xattrs = read_xattrs(&file, path);
        self.push(entry, Vec::new());
        Dir::from_fd(file.into())
            .map(Some)
            .map_err(|e| ArchiveError::nix("open folder", path, e))
    }

    fn symlink(
        &mut self,
        dirfd: BorrowedFd<'_>,
        name: &CStr,
        path: &[u8],
        st: &FileStat,
    ) -> Result<(), ArchiveError> {
        let target = match readlinkat(dirfd, name) {
            Ok(t) => t,
            Err(e) if is_vanished(e) || e == nix::errno::Errno::EINVAL => {
                self.vanished::<()>(path);
                return Ok(());
            }
            Err(e) => return Err(ArchiveError::nix("readlink", path, e)),
        };
        let mut entry = self.base_entry(path, KIND_SYMLINK, st);
        entry.link = target.as_bytes().to_vec();
        self.push(entry, Vec::new());
        Ok(())
    }

    /// A hard-link entry when (dev, ino) was seen before.
    fn hard_link(&mut self, path: &[u8], st: &FileStat) -> bool {
        let Some(first) = self.links.get(&(st.st_dev, st.st_ino)).cloned() else {
            return false;
        };
        let mut entry = self.base_entry(path, KIND_HARD_LINK, st);
        entry.link = first;
        self.push(entry, Vec::new());
        true
    }

    /// The parent's entry for an unchanged file at `path`.
    fn unchanged(&self, path: &[u8], st: &FileStat) -> Option<&'a Entry> {
        let parent = self.parent?;
        let e = &parent.manifest.entries[*parent.by_path.get(path)?];
        let same = e.inode == st.st_ino
            && e.device == st.st_dev
            && e.size == u64::try_from(st.st_size).ok()?
            && e.mtime_secs == st.st_mtime
            && i64::from(e.mtime_nanos) == st.st_mtime_nsec
            && e.ctime_secs == st.st_ctime
            && i64::from(e.ctime_nanos) == st.st_ctime_nsec;
        same.then_some(e)
    }

    fn file(
        &mut self,
        dirfd: BorrowedFd<'_>,
        name: &CStr,
        path: &[u8],
        st: &FileStat,
    ) -> Result<(), ArchiveError> {
        if st.st_nlink > 1 && self.hard_link(path, st) {
            return Ok(());
        }
        if let Some(previous) = self.unchanged(path, st) {
            // ctime covers content, mode, owner and xattrs: all of it is as the parent saw it.
            let chunk_ids = previous
                .chunks
                .iter()
                .filter_map(|&c| self.parent_chunk_id(c).map(ChunkRef::Id))
                .collect::<Vec<_>>();
            if chunk_ids.len() == previous.chunks.len() {
                let mut entry = self.base_entry(path, KIND_FILE, st);
                entry.size = previous.size;
                entry.xattrs = previous.xattrs.clone();
                if st.st_nlink > 1 {
                    self.links.insert((st.st_dev, st.st_ino), path.to_vec());
                }
                self.stats.files_unchanged += 1;
                if let Some(p) = &self.opts.progress {
                    p.add_bytes(entry.size);
                }
                self.stats.content_bytes += entry.size;
                self.stats.chunks_reused += chunk_ids.len() as u64;
                self.push(entry, chunk_ids);
                return Ok(());
            }
        }
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
        let fd = match openat(dirfd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) if is_vanished(e) => {
                self.vanished::<()>(path);
                return Ok(());
            }
            Err(e) => return Err(ArchiveError::nix("open", path, e)),
        };
        let st = fstat(&fd).map_err(|e| ArchiveError::nix("stat", path, e))?;
        if file_kind(&st) != SFlag::S_IFREG {
            self.stats.skipped += 1;
            return Ok(());
        }
        if st.st_nlink > 1 {
            if self.hard_link(path, &st) {
                return Ok(());
            }
            self.links.insert((st.st_dev, st.st_ino), path.to_vec());
        }
        let file = File::from(fd);
        let mut entry = self.base_entry(path, KIND_FILE, &st);
        entry.xattrs = read_xattrs(&file, path);
        let (size, chunk_ids) = self.chunk_file(file, &st, path)?;
        entry.size = size;
        self.stats.files_read += 1;
        self.stats.bytes_read += size;
        self.stats.content_bytes += size;
        self.push(entry, chunk_ids);
        Ok(())
    }

    fn parent_chunk_id(&self, index: u32) -> Option<ChunkId> {
        let c = self.parent?.manifest.chunks.get(index as usize)?;
        <ChunkId>::try_from(c.id.as_slice()).ok()
    }

    /// Splits the file into chunks and sends the ones not stored yet; answers the bytes read (a
    /// file that changes while read is recorded as read) and the chunk ids.
    fn chunk_file(
        &mut self,
        mut file: File,
        st: &FileStat,
        path: &[u8],
    ) -> Result<(u64, Vec<ChunkRef>), ArchiveError> {
        let mut ids = Vec::new();
        let mut size = 0u64;
        if st.st_size <= i64::from(CHUNK_MIN) {
            // Small files (most of a tree) are one chunk: no chunker and its 4 MiB buffer.
            let mut plain = std::mem::take(&mut self.small);
            plain.clear();
            let read = (&mut file)
                .take(u64::from(CHUNK_MAX))
                .read_to_end(&mut plain)
                .map_err(|e| ArchiveError::io("read", path, e));
            let result = read.and_then(|_| {
                if plain.len() as u64 >= u64::from(CHUNK_MIN) {
                    // It grew past one chunk while we looked: chunk it like a large file.
                    return Ok(None);
                }
                size = plain.len() as u64;
                if let Some(p) = &self.opts.progress {
                    p.add_bytes(size);
                }
                if !plain.is_empty() {
                    ids.push(self.add_chunk(&plain, path)?);
                }
                Ok(Some(()))
            });
            self.small = plain;
            if result?.is_some() {
                return Ok((size, ids));
            }
            use std::io::Seek;
            file.rewind()
                .map_err(|e| ArchiveError::io("read", path, e))?;
            size = 0;
            ids.clear();
        }
        let mut window = std::mem::take(&mut self.window);
        let result = cut_chunks(&mut file, &mut window, |chunk| {
            size += chunk.len() as u64;
            if let Some(p) = &self.opts.progress {
                p.add_bytes(chunk.len() as u64);
            }
            ids.push(self.add_chunk(chunk, path)?);
            Ok(())
        });
        self.window = window;
        result.map_err(|e| match e {
            CutError::Read(e) => ArchiveError::io("read", path, e),
            CutError::Chunk(e) => e,
        })?;
        Ok((size, ids))
    }

    /// Sends a chunk to the workers, which hash it and store it unless it is stored already.
    fn add_chunk(&mut self, plain: &[u8], path: &[u8]) -> Result<ChunkRef, ArchiveError> {
        let seq = self.sent;
        self.sent += 1;
        let job = Job {
            seq,
            plain: plain.to_vec(),
        };
        self.jobs.send(job).map_err(|_| {
            // The packer stopped (a failed upload); its error is the one reported.
            ArchiveError::io("pack", path, io::Error::other("packing stopped"))
        })?;
        Ok(ChunkRef::Seq(seq))
    }
}

/// The reading window of large files: four of the largest chunk, so that the bytes after a cut
/// are moved to its front about once per three chunks rather than after every cut.
const WINDOW: usize = 4 * CHUNK_MAX as usize;

pub(super) enum CutError<E> {
    Read(io::Error),
    Chunk(E),
}

/// Reads `file` to its end and hands its content-defined chunks to `chunk`, in order. `window`
/// is reused across files (a chunker per file would allocate and zero a buffer each time). A cut
/// is searched only in the largest chunk's length of bytes or in what is left at the end of the
/// file, so cut points depend on the content alone (as FastCDC's own streaming chunker's do).
pub(super) fn cut_chunks<E>(
    file: &mut impl Read,
    window: &mut Vec<u8>,
    mut chunk: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), CutError<E>> {
    let max = CHUNK_MAX as usize;
    window.resize(WINDOW, 0);
    let (mut start, mut filled, mut eof) = (0, 0, false);
    loop {
        while filled - start < max && !eof {
            if filled == window.len() {
                window.copy_within(start..filled, 0);
                filled -= start;
                start = 0;
            }
            match file.read(&mut window[filled..]) {
                Ok(0) => eof = true,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CutError::Read(e)),
            }
        }
        let len = (filled - start).min(max);
        if len == 0 {
            return Ok(());
        }
        let search = &window[start..start + len];
        let (_, cut) =
            fastcdc::v2020::FastCDC::new(search, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX).cut(0, len);
        let cut = cut.clamp(1, len);
        chunk(&window[start..start + cut]).map_err(CutError::Chunk)?;
        start += cut;
    }
}

fn map_id(map: &IdMap, host: u32, unmapped: &mut u64) -> u32 {
    map.host_to_container(host).unwrap_or_else(|| {
        *unmapped += 1;
        NOBODY_ID
    })
}

fn read_xattrs(file: &File, path: &[u8]) -> Vec<Xattr> {
    let names = match file.list_xattr() {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!(name = %String::from_utf8_lossy(path), error = %e, "cannot list xattrs");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for name in names {
        let nb = name.as_bytes();
        if !xattr_archived(nb) {
            continue;
        }
        match file.get_xattr(&name) {
            Ok(Some(value)) => out.push(Xattr {
                name: nb.to_vec(),
                value,
            }),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(name = %String::from_utf8_lossy(path), error = %e, "cannot read xattr");
            }
        }
    }
    out
}

/// Where the parent's chunks are, by id.
fn parent_chunks(parent: Option<&Parent>) -> HashMap<ChunkId, Stored> {
    let mut reused = HashMap::new();
    let Some(p) = parent else {
        return reused;
    };
    let packs: Vec<Arc<str>> = p
        .manifest
        .packs
        .iter()
        .map(|s| Arc::from(s.as_str()))
        .collect();
    for c in &p.manifest.chunks {
        if let (Ok(id), Some(pack)) = (
            <ChunkId>::try_from(c.id.as_slice()),
            packs.get(c.pack as usize),
        ) {
            reused.insert(
                id,
                Stored {
                    pack: pack.clone(),
                    offset: c.offset,
                    stored_len: c.stored_len,
                    plain_len: c.plain_len,
                },
            );
        }
    }
    reused
}

fn compress_loop(
    jobs: &Mutex<Receiver<Job>>,
    done: &SyncSender<Compressed>,
    dedup: &Dedup<'_>,
    level: i32,
) -> Result<(), ArchiveError> {
    let mut compressor =
        zstd::bulk::Compressor::new(level).map_err(|e| ArchiveError::io("zstd init", b"", e))?;
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return Ok(()),
        };
        let Ok(job) = job else {
            return Ok(());
        };
        let id = chunk_id(&job.plain);
        let frame = if dedup.claim(&id) {
            Some(
                compressor
                    .compress(&job.plain)
                    .map_err(|e| ArchiveError::io("compress", b"", e))?,
            )
        } else {
            None
        };
        let plain_len = u32::try_from(job.plain.len()).unwrap_or(u32::MAX);
        if done
            .send(Compressed {
                seq: job.seq,
                id,
                plain_len,
                frame,
            })
            .is_err()
        {
            return Ok(());
        }
    }
}

struct Packed {
    stored: HashMap<ChunkId, Stored>,
    /// The id of each chunk the walk numbered.
    ids: HashMap<u64, ChunkId>,
    bytes: u64,
    packs: u64,
    chunks_new: u64,
    /// Chunks the workers found stored already (by the parent or earlier in this backup).
    chunks_stored_before: u64,
}

fn pack_loop(done: Receiver<Compressed>, sink: &mut dyn PackSink) -> Result<Packed, ArchiveError> {
    let mut packed = Packed {
        stored: HashMap::new(),
        ids: HashMap::new(),
        bytes: 0,
        packs: 0,
        chunks_new: 0,
        chunks_stored_before: 0,
    };
    let mut pack = Vec::with_capacity(PACK_TARGET + (CHUNK_MAX as usize));
    let mut members: Vec<(ChunkId, u64, u32, u32)> = Vec::new();
    let mut flush = |pack: &mut Vec<u8>,
                     members: &mut Vec<(ChunkId, u64, u32, u32)>,
                     packed: &mut Packed|
     -> Result<(), ArchiveError> {
        if members.is_empty() {
            return Ok(());
        }
        let name: Arc<str> = Arc::from(blake3::hash(pack).to_hex().as_str());
        let bytes = std::mem::replace(pack, Vec::with_capacity(PACK_TARGET + (CHUNK_MAX as usize)));
        packed.bytes += bytes.len() as u64;
        packed.packs += 1;
        sink.put(&name, bytes)
            .map_err(|e| ArchiveError::io("store pack", b"", e))?;
        for (id, offset, stored_len, plain_len) in members.drain(..) {
            packed.stored.insert(
                id,
                Stored {
                    pack: name.clone(),
                    offset,
                    stored_len,
                    plain_len,
                },
            );
        }
        Ok(())
    };
    for c in done {
        packed.ids.insert(c.seq, c.id);
        let Some(frame) = c.frame else {
            packed.chunks_stored_before += 1;
            continue;
        };
        packed.chunks_new += 1;
        if pack.is_empty() {
            pack.extend_from_slice(PACK_MAGIC);
        }
        let offset = pack.len() as u64;
        let stored_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        pack.extend_from_slice(&frame);
        members.push((c.id, offset, stored_len, c.plain_len));
        if pack.len() >= PACK_TARGET {
            flush(&mut pack, &mut members, &mut packed)?;
        }
    }
    flush(&mut pack, &mut members, &mut packed)?;
    Ok(packed)
}

/// Resolves every entry's chunk ids to the chunk table of the new manifest.
fn build_manifest(
    workspace: &str,
    created_unix_nanos: u64,
    pending: Vec<Pending>,
    reused: &HashMap<ChunkId, Stored>,
    packed: &Packed,
    stats: &mut BackupStats,
) -> Result<Manifest, ArchiveError> {
    let mut manifest = Manifest {
        version: MANIFEST_VERSION,
        workspace: workspace.to_string(),
        created_unix_nanos,
        content_bytes: stats.content_bytes,
        ..Manifest::default()
    };
    let mut pack_index: HashMap<Arc<str>, u32> = HashMap::new();
    let mut chunk_index: HashMap<ChunkId, u32> = HashMap::new();
    manifest.entries.reserve(pending.len());
    for Pending {
        mut entry,
        chunk_ids,
    } in pending
    {
        entry.chunks.reserve(chunk_ids.len());
        for chunk in chunk_ids {
            let id = match chunk {
                ChunkRef::Id(id) => id,
                ChunkRef::Seq(seq) => *packed.ids.get(&seq).ok_or_else(|| {
                    ArchiveError::io(
                        "pack",
                        &entry.path,
                        io::Error::other("a chunk was not hashed"),
                    )
                })?,
            };
            let index = match chunk_index.get(&id) {
                Some(&i) => i,
                None => {
                    let stored = packed
                        .stored
                        .get(&id)
                        .or_else(|| reused.get(&id))
                        .ok_or_else(|| {
                            ArchiveError::io(
                                "pack",
                                &entry.path,
                                io::Error::other(
                                    "a chunk was neither packed nor found in the parent",
                                ),
                            )
                        })?;
                    let next = u32::try_from(manifest.packs.len()).unwrap_or(u32::MAX);
                    let pack = *pack_index.entry(stored.pack.clone()).or_insert_with(|| {
                        manifest.packs.push(stored.pack.to_string());
                        next
                    });
                    let i = u32::try_from(manifest.chunks.len()).unwrap_or(u32::MAX);
                    manifest.chunks.push(ChunkLoc {
                        id: id.to_vec(),
                        pack,
                        offset: stored.offset,
                        stored_len: stored.stored_len,
                        plain_len: stored.plain_len,
                    });
                    chunk_index.insert(id, i);
                    i
                }
            };
            entry.chunks.push(index);
        }
        manifest.entries.push(entry);
    }
    Ok(manifest)
}
