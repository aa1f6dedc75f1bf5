//! Extracting an untrusted tar (+zstd) stream into a folder.
//!
//! Everything is created relative to a directory fd of the target. Parent folders are resolved
//! by [`crate::confine::Beneath`] (openat2 `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, or a walk
//! with `O_NOFOLLOW`), and leaves are created with `*at` calls that never follow symlinks
//! (`O_CREAT|O_EXCL|O_NOFOLLOW`, `symlinkat`, `linkat` without `AT_SYMLINK_FOLLOW`,
//! `AT_SYMLINK_NOFOLLOW`); see `entries`. `stream` moves the input from the calling thread to the
//! extraction thread.

mod entries;
mod stream;

use std::cell::Cell;
use std::ffi::{CString, OsStr};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc::sync_channel;

use nix::errno::Errno;
use nix::sys::stat::{fchmod, futimens, Mode};
use nix::sys::time::TimeSpec;

use super::{
    detect_compression, parse_pax_time, ArchiveError, ArchiveOptions, ArchiveStats, Compression,
    IdMap, NOBODY_ID,
};
use crate::confine::{self, BadPath, Beneath, ConfineError};
use stream::{ChanReader, Chunk, CountingReader, FeedOutcome, Feeder, CHANNEL_DEPTH};

const COPY_BUF: usize = 1 << 20;

/// Extracts a tar or tar.zst stream into the existing folder `target`.
///
/// The archive is untrusted: nothing outside `target` is ever created,
/// modified or chmod-ed (see the module docs). On error the partial
/// extraction is left in place; the caller removes it.
pub fn extract_archive<R: Read>(
    mut input: R,
    target: &Path,
    opts: &ArchiveOptions,
) -> Result<ArchiveStats, ArchiveError> {
    let mut prefix = vec![0u8; 512];
    let mut got = 0;
    while got < prefix.len() {
        match input.read(&mut prefix[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ArchiveError::io("read archive", b"", e)),
        }
    }
    prefix.truncate(got);
    let compression = detect_compression(&prefix).ok_or(ArchiveError::UnknownFormat)?;
    let target = Beneath::open(target)
        .map_err(|e| ArchiveError::io("open target folder", b".", e.into()))?;
    let root = target
        .open_dir(Path::new(""))
        .map_err(|e| ArchiveError::io("open target folder", b".", e.into()))?;

    let (full_tx, full_rx) = sync_channel::<io::Result<Chunk>>(CHANNEL_DEPTH);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(CHANNEL_DEPTH + 2);
    let count = Rc::new(Cell::new(0u64));
    let input_eof = Rc::new(Cell::new(false));
    let src_failed = Rc::new(Cell::new(false));

    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("archive-extract".into())
            .spawn_scoped(scope, move || {
                let eof = Rc::new(Cell::new(false));
                let reader = ChanReader::new(full_rx, free_tx, eof.clone());
                let mut ex = Extractor::new(target, root, opts, eof);
                ex.run(reader)
            })
            .map_err(|e| ArchiveError::io("spawn extraction thread", b"", e))?;

        let feeder = Feeder {
            full: full_tx,
            free: free_rx,
        };
        let src = CountingReader {
            inner: io::Cursor::new(prefix).chain(input),
            count: count.clone(),
            eof: input_eof.clone(),
            failed: src_failed.clone(),
        };
        let outcome = match compression {
            Compression::None => feeder.run(src, false, &input_eof, &src_failed),
            Compression::Zstd => match zstd::stream::read::Decoder::new(src) {
                Ok(dec) => feeder.run(dec, true, &input_eof, &src_failed),
                Err(e) => FeedOutcome::Failed(ArchiveError::io("zstd init", b"", e)),
            },
        };
        // Closing the channel ends the extraction thread's input.
        drop(feeder);
        let result = match worker.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        match outcome {
            FeedOutcome::Failed(e) => Err(e),
            FeedOutcome::Done | FeedOutcome::Stopped => result.map(|stats| ArchiveStats {
                archive_bytes: count.get(),
                ..stats
            }),
        }
    })
}

/// Creates the entries of an archive that is not a tar stream (a chunked manifest) with the same
/// confinement and id mapping as [`extract_archive`]. Folder modes and times are applied by
/// [`TreeRestore::finish`]; on error the partial tree is left for the caller to remove.
pub(crate) struct TreeRestore<'a> {
    ex: Extractor<'a>,
}

/// The metadata of one entry as an archive records it (in-workspace owner ids).
pub(crate) struct EntryMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_secs: i64,
    pub mtime_nanos: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<'a> TreeRestore<'a> {
    pub(crate) fn open(target: &Path, opts: &'a ArchiveOptions) -> Result<Self, ArchiveError> {
        let target = Beneath::open(target)
            .map_err(|e| ArchiveError::io("open target folder", b".", e.into()))?;
        let root = target
            .open_dir(Path::new(""))
            .map_err(|e| ArchiveError::io("open target folder", b".", e.into()))?;
        let eof = Rc::new(Cell::new(false));
        Ok(TreeRestore {
            ex: Extractor::new(target, root, opts, eof),
        })
    }

    /// Creates the entry at archive path `raw`.
    pub(crate) fn entry(
        &mut self,
        raw: &[u8],
        meta: EntryMeta,
        body: Body<'_>,
    ) -> Result<(), ArchiveError> {
        let xattrs = meta
            .xattrs
            .into_iter()
            .filter_map(|(name, value)| CString::new(name).ok().map(|n| (n, value)))
            .collect();
        let mtime = TimeSpec::new(
            meta.mtime_secs,
            i64::from(meta.mtime_nanos.min(999_999_999)),
        );
        let meta = self.ex.mapped_meta(
            meta.mode,
            u64::from(meta.uid),
            u64::from(meta.gid),
            mtime,
            xattrs,
        );
        self.ex.apply(raw, &meta, body)
    }

    /// Applies folder modes and times; answers what was restored.
    pub(crate) fn finish(mut self) -> Result<ArchiveStats, ArchiveError> {
        self.ex.cache = None;
        self.ex.finish_dirs()?;
        Ok(self.ex.stats)
    }
}

struct DirMeta {
    /// Normalized, relative to the target (empty for the target itself).
    path: PathBuf,
    mode: u32,
    mtime: TimeSpec,
}

struct Extractor<'a> {
    /// The target, confining every path of the archive.
    target: Beneath,
    /// The target folder itself.
    root: Rc<OwnedFd>,
    opts: &'a ArchiveOptions,
    stats: ArchiveStats,
    /// Last resolved parent folder (normalized relative path, fd).
    cache: Option<(PathBuf, Rc<OwnedFd>)>,
    /// Folder modes/mtimes, applied at the end (deepest first).
    dirs: Vec<DirMeta>,
    buf: Vec<u8>,
    /// Set when the stream reached EOF.
    eof: Rc<Cell<bool>>,
}

/// Metadata of one entry, read from its header and PAX records.
struct Meta {
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
    mtime: TimeSpec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

/// What one entry holds, whatever the archive format it came from.
pub(crate) enum Body<'r> {
    Dir,
    File { size: u64, data: &'r mut dyn Read },
    Symlink(&'r [u8]),
    HardLink(&'r [u8]),
}

/// Normalizes an archive path (see [`confine::normalize`]); absolute paths are refused too. The
/// empty path is the target itself.
fn entry_path(raw: &[u8]) -> Result<PathBuf, ArchiveError> {
    if raw.first() == Some(&b'/') {
        return Err(ArchiveError::unsafe_entry(raw, "absolute path"));
    }
    confine::normalize(raw).map_err(|e| refused(raw, e))
}

/// The archive error for an entry whose path the confinement refused.
fn refused(raw: &[u8], e: ConfineError) -> ArchiveError {
    let reason = match e {
        ConfineError::BadPath(BadPath::ParentDir) => "path contains '..'",
        ConfineError::BadPath(BadPath::Nul) => "NUL byte in path",
        ConfineError::BadPath(BadPath::NoFileName) => "path names no file",
        ConfineError::Symlink => "path passes through a symlink",
        ConfineError::Escapes => "path escapes the target",
        ConfineError::NotFound => "parent folder does not exist",
        ConfineError::NotAFolder | ConfineError::NotAFile => "parent path is not a folder",
        ConfineError::Io { op, source } => return ArchiveError::io(op, raw, source),
    };
    ArchiveError::unsafe_entry(raw, reason)
}

fn cstr(name: &OsStr, raw: &[u8]) -> Result<CString, ArchiveError> {
    CString::new(name.as_bytes()).map_err(|_| ArchiveError::unsafe_entry(raw, "NUL byte in path"))
}

fn map_owner(map: &IdMap, id: u64, unmapped: &mut u64) -> Option<u32> {
    match u32::try_from(id)
        .ok()
        .and_then(|c| map.container_to_host(c))
    {
        Some(h) => Some(h),
        None => {
            *unmapped += 1;
            map.container_to_host(NOBODY_ID)
        }
    }
}

fn ignorable_chown_error(e: Errno) -> bool {
    // EPERM: not privileged; EINVAL: id not valid in our user namespace.
    matches!(e, Errno::EPERM | Errno::EINVAL)
}

impl<'a> Extractor<'a> {
    fn new(target: Beneath, root: OwnedFd, opts: &'a ArchiveOptions, eof: Rc<Cell<bool>>) -> Self {
        Extractor {
            target,
            root: Rc::new(root),
            opts,
            stats: ArchiveStats::default(),
            cache: None,
            dirs: Vec::new(),
            buf: vec![0u8; COPY_BUF],
            eof,
        }
    }

    fn run(&mut self, reader: ChanReader) -> Result<ArchiveStats, ArchiveError> {
        let mut ar = tar::Archive::new(reader);
        {
            let entries = ar.entries().map_err(|e| self.stream_err(e))?;
            for entry in entries {
                let mut entry = entry.map_err(|e| self.stream_err(e))?;
                self.entry(&mut entry)?;
            }
        }
        if self.eof.get() {
            return Err(ArchiveError::Truncated(
                "missing end-of-archive marker".into(),
            ));
        }
        // Consume the rest of the stream (padding after the end marker) so
        // errors in the remaining compressed data surface.
        let mut rest = ar.into_inner();
        loop {
            match rest.read(&mut self.buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.stream_err(e)),
            }
        }
        self.cache = None;
        self.finish_dirs()?;
        Ok(self.stats)
    }

    fn stream_err(&self, e: io::Error) -> ArchiveError {
        if self.eof.get() || e.kind() == io::ErrorKind::UnexpectedEof {
            ArchiveError::Truncated(e.to_string())
        } else {
            ArchiveError::Malformed(e.to_string())
        }
    }

    fn meta(&mut self, entry: &mut tar::Entry<'_, ChanReader>) -> Result<Meta, ArchiveError> {
        let h = entry.header();
        let mode = h.mode().map_err(|e| self.stream_err(e))?;
        let uid = h.uid().map_err(|e| self.stream_err(e))?;
        let gid = h.gid().map_err(|e| self.stream_err(e))?;
        let secs = h.mtime().map_err(|e| self.stream_err(e))?;
        let mut mtime = TimeSpec::new(i64::try_from(secs).unwrap_or(i64::MAX), 0);
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(|e| self.stream_err(e))? {
            for ext in pax {
                let ext = ext.map_err(|e| self.stream_err(e))?;
                let key = ext.key_bytes();
                if key == b"mtime" {
                    if let Some((s, ns)) = parse_pax_time(ext.value_bytes()) {
                        mtime = TimeSpec::new(s, i64::from(ns));
                    }
                } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    if let Ok(name) = CString::new(name) {
                        xattrs.push((name, ext.value_bytes().to_vec()));
                    }
                }
            }
        }
        Ok(self.mapped_meta(mode, uid, gid, mtime, xattrs))
    }

    /// Entry metadata with the archive's (in-workspace) owner ids mapped to host ids.
    fn mapped_meta(
        &mut self,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: TimeSpec,
        xattrs: Vec<(CString, Vec<u8>)>,
    ) -> Meta {
        let uid = map_owner(&self.opts.uid_map, uid, &mut self.stats.unmapped_ids);
        let gid = map_owner(&self.opts.gid_map, gid, &mut self.stats.unmapped_ids);
        Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        }
    }

    fn entry(&mut self, entry: &mut tar::Entry<'_, ChanReader>) -> Result<(), ArchiveError> {
        let kind = entry.header().entry_type();
        let raw = entry.path_bytes().into_owned();
        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous | T::GNUSparse | T::Directory | T::Symlink | T::Link => {}
            T::Char | T::Block | T::Fifo => {
                tracing::debug!(name = %String::from_utf8_lossy(&raw), "skipping device/FIFO entry");
                self.stats.skipped += 1;
                return Ok(());
            }
            _ => {
                tracing::debug!(name = %String::from_utf8_lossy(&raw), kind = ?kind, "skipping unknown entry type");
                self.stats.skipped += 1;
                return Ok(());
            }
        }
        // Path problems are reported before header problems.
        entry_path(&raw)?;
        let meta = self.meta(entry)?;
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        match kind {
            T::Directory => self.apply(&raw, &meta, Body::Dir),
            T::Symlink => self.apply(&raw, &meta, Body::Symlink(link.as_deref().unwrap_or(b""))),
            T::Link => match link {
                Some(target) => self.apply(&raw, &meta, Body::HardLink(&target)),
                None => Err(ArchiveError::Malformed(format!(
                    "hard link {:?} has no target",
                    String::from_utf8_lossy(&raw)
                ))),
            },
            _ => {
                let size = entry.size();
                self.apply(&raw, &meta, Body::File { size, data: entry })
            }
        }
    }

    /// Creates one entry of any archive format at the archive path `raw`.
    fn apply(&mut self, raw: &[u8], meta: &Meta, body: Body<'_>) -> Result<(), ArchiveError> {
        let path = entry_path(raw)?;
        if path.as_os_str().is_empty() {
            if !matches!(body, Body::Dir) {
                return Err(ArchiveError::unsafe_entry(
                    raw,
                    "entry refers to the extraction root",
                ));
            }
            let root = self.root.clone();
            self.owner_and_xattrs(&root, meta, raw)?;
            self.dirs.push(DirMeta {
                path,
                mode: meta.mode & 0o3777,
                mtime: meta.mtime,
            });
            self.stats.entries += 1;
            return Ok(());
        }
        let (parent, leaf) = confine::split_parent(&path).map_err(|e| refused(raw, e))?;
        let leaf = cstr(leaf, raw)?;
        let pfd = self.parent_fd(parent, raw)?;
        match body {
            Body::Dir => self.dir(&pfd, &path, &leaf, meta, raw)?,
            Body::Symlink(target) => self.symlink(target, &pfd, &leaf, meta, raw)?,
            Body::HardLink(target) => self.hard_link(target, &pfd, &path, &leaf, raw)?,
            Body::File { size, data } => self.file(data, size, &pfd, &leaf, meta, raw)?,
        }
        self.stats.entries += 1;
        Ok(())
    }

    /// Resolves (creating missing folders) the parent folder of an entry.
    fn parent_fd(&mut self, parent: &Path, raw: &[u8]) -> Result<Rc<OwnedFd>, ArchiveError> {
        if parent.as_os_str().is_empty() {
            return Ok(self.root.clone());
        }
        if let Some((p, fd)) = &self.cache {
            if p == parent {
                return Ok(fd.clone());
            }
        }
        let fd = self
            .target
            .create_dir_all(parent)
            .map_err(|e| refused(raw, e))?;
        let fd = Rc::new(fd);
        self.cache = Some((parent.to_path_buf(), fd.clone()));
        Ok(fd)
    }

    /// Opens the existing folder `rel` (normalized; empty for the target itself).
    fn open_folder(&self, rel: &Path) -> Result<Rc<OwnedFd>, ConfineError> {
        if rel.as_os_str().is_empty() {
            return Ok(self.root.clone());
        }
        self.target.open_dir(rel).map(Rc::new)
    }

    /// Applies folder modes and mtimes, deepest first.
    fn finish_dirs(&mut self) -> Result<(), ArchiveError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.path.components().count()));
        for d in &dirs {
            let name = d.path.as_os_str().as_bytes();
            let fd = self.open_folder(&d.path).map_err(|e| refused(name, e))?;
            fchmod(fd.as_fd(), Mode::from_bits_truncate(d.mode))
                .map_err(|e| ArchiveError::nix("chmod", name, e))?;
            futimens(fd.as_fd(), &TimeSpec::UTIME_OMIT, &d.mtime)
                .map_err(|e| ArchiveError::nix("set mtime", name, e))?;
        }
        Ok(())
    }
}
