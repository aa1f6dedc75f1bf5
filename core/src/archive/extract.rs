//! Extracting an untrusted tar (+zstd) stream into a folder.
//!
//! Everything is created relative to a directory fd of the target; parent
//! folders are resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//! (or, where openat2 is unavailable, component by component with
//! `O_NOFOLLOW`), and leaves are created with `*at` calls that never follow
//! symlinks (`O_CREAT|O_EXCL|O_NOFOLLOW`, `symlinkat`, `linkat` without
//! `AT_SYMLINK_FOLLOW`, `AT_SYMLINK_NOFOLLOW`).

use std::cell::Cell;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};

use nix::errno::Errno;
use nix::fcntl::{open, openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fstatat, futimens, mkdirat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use xattr::FileExt;

use super::{
    detect_compression, parse_pax_time, ArchiveError, ArchiveOptions, ArchiveStats, Compression,
    IdMap, NOBODY_ID,
};

const CHUNK: usize = 256 * 1024;
const CHANNEL_DEPTH: usize = 16;
const COPY_BUF: usize = 1 << 20;

struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

/// Reads the input (decoding zstd if needed) in the calling thread and hands
/// chunks to the extraction thread.
struct Feeder {
    full: SyncSender<io::Result<Chunk>>,
    free: Receiver<Vec<u8>>,
}

enum FeedOutcome {
    /// Input fully consumed; bytes read from the caller's stream.
    Done,
    /// The extraction thread stopped reading (it failed or finished early).
    Stopped,
    Failed(ArchiveError),
}

/// Counts bytes read from the caller's stream and records EOF.
struct CountingReader<R> {
    inner: R,
    count: Rc<Cell<u64>>,
    eof: Rc<Cell<bool>>,
    failed: Rc<Cell<bool>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                self.failed.set(true);
            }
        })?;
        if n == 0 && !buf.is_empty() {
            self.eof.set(true);
        }
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

impl Feeder {
    fn run(
        &self,
        mut src: impl Read,
        is_zstd: bool,
        input_eof: &Cell<bool>,
        src_failed: &Cell<bool>,
    ) -> FeedOutcome {
        loop {
            let mut buf = match self.free.try_recv() {
                Ok(b) => b,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => vec![0u8; CHUNK],
            };
            let mut len = 0;
            let mut end = false;
            while len < buf.len() {
                match src.read(&mut buf[len..]) {
                    Ok(0) => {
                        end = true;
                        break;
                    }
                    Ok(n) => len += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let err = if src_failed.get() || !is_zstd {
                            // Error of the caller's stream itself.
                            ArchiveError::io("read archive", b"", e)
                        } else if input_eof.get() || e.kind() == io::ErrorKind::UnexpectedEof {
                            ArchiveError::Truncated(format!("zstd: {e}"))
                        } else {
                            ArchiveError::Malformed(format!("zstd: {e}"))
                        };
                        // Let the extraction thread stop too.
                        let _ = self
                            .full
                            .send(Err(io::Error::other("archive stream failed")));
                        return FeedOutcome::Failed(err);
                    }
                }
            }
            if len > 0 && self.full.send(Ok(Chunk { buf, len })).is_err() {
                return FeedOutcome::Stopped;
            }
            if end {
                return FeedOutcome::Done;
            }
        }
    }
}

/// `Read` adapter over the chunk channel, used by the extraction thread.
struct ChanReader {
    full: Receiver<io::Result<Chunk>>,
    free: SyncSender<Vec<u8>>,
    cur: Option<Chunk>,
    pos: usize,
    eof: Rc<Cell<bool>>,
    failed: bool,
}

impl Read for ChanReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(chunk) = &self.cur {
                if self.pos < chunk.len {
                    let n = out.len().min(chunk.len - self.pos);
                    out[..n].copy_from_slice(&chunk.buf[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            if let Some(chunk) = self.cur.take() {
                let _ = self.free.try_send(chunk.buf);
            }
            if self.failed {
                return Err(io::Error::other("archive stream failed"));
            }
            match self.full.recv() {
                Ok(Ok(chunk)) => {
                    self.cur = Some(chunk);
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.failed = true;
                    return Err(e);
                }
                Err(_) => {
                    self.eof.set(true);
                    return Ok(0);
                }
            }
        }
    }
}

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
    let root = open(
        target,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ArchiveError::nix("open target folder", b".", e))?;

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
                let reader = ChanReader {
                    full: full_rx,
                    free: free_tx,
                    cur: None,
                    pos: 0,
                    eof: eof.clone(),
                    failed: false,
                };
                let mut ex = Extractor {
                    root: Rc::new(root),
                    opts,
                    stats: ArchiveStats::default(),
                    cache: None,
                    dirs: Vec::new(),
                    buf: vec![0u8; COPY_BUF],
                    use_openat2: true,
                    eof,
                };
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

struct DirMeta {
    path: Vec<u8>,
    mode: u32,
    mtime: TimeSpec,
}

struct Extractor<'a> {
    root: Rc<OwnedFd>,
    opts: &'a ArchiveOptions,
    stats: ArchiveStats,
    /// Last resolved parent folder (normalized relative path, fd).
    cache: Option<(Vec<u8>, Rc<OwnedFd>)>,
    /// Folder modes/mtimes, applied at the end (deepest first).
    dirs: Vec<DirMeta>,
    buf: Vec<u8>,
    use_openat2: bool,
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

enum Norm {
    Root,
    Path(Vec<u8>),
}

/// Normalizes an archive path: refuses absolute paths, `..` and NUL bytes,
/// drops `.` and empty components.
fn normalize(raw: &[u8]) -> Result<Norm, ArchiveError> {
    if raw.first() == Some(&b'/') {
        return Err(ArchiveError::unsafe_entry(raw, "absolute path"));
    }
    if raw.contains(&0) {
        return Err(ArchiveError::unsafe_entry(raw, "NUL byte in path"));
    }
    let mut out = Vec::with_capacity(raw.len());
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(ArchiveError::unsafe_entry(raw, "path contains '..'")),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    if out.is_empty() {
        Ok(Norm::Root)
    } else {
        Ok(Norm::Path(out))
    }
}

fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

fn cstr(bytes: &[u8], name: &[u8]) -> Result<CString, ArchiveError> {
    CString::new(bytes).map_err(|_| ArchiveError::unsafe_entry(name, "NUL byte in path"))
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

impl Extractor<'_> {
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
        let uid = map_owner(&self.opts.uid_map, uid, &mut self.stats.unmapped_ids);
        let gid = map_owner(&self.opts.gid_map, gid, &mut self.stats.unmapped_ids);
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
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
        let norm = normalize(&raw)?;
        let meta = self.meta(entry)?;
        let path = match norm {
            Norm::Root if kind == T::Directory => {
                let root = self.root.clone();
                self.owner_and_xattrs(&root, &meta, &raw)?;
                self.dirs.push(DirMeta {
                    path: Vec::new(),
                    mode: meta.mode & 0o3777,
                    mtime: meta.mtime,
                });
                self.stats.entries += 1;
                return Ok(());
            }
            Norm::Root => {
                return Err(ArchiveError::unsafe_entry(
                    &raw,
                    "entry refers to the extraction root",
                ));
            }
            Norm::Path(p) => p,
        };
        let (parent, leaf) = split_parent(&path);
        let leaf = cstr(leaf, &raw)?;
        let pfd = self.parent_fd(parent, &raw)?;
        match kind {
            T::Directory => self.dir(&pfd, &path, &leaf, &meta, &raw)?,
            T::Symlink => self.symlink(entry, &pfd, &leaf, &meta, &raw)?,
            T::Link => self.hard_link(entry, &pfd, &path, &leaf, &raw)?,
            _ => self.file(entry, &pfd, &leaf, &meta, &raw)?,
        }
        self.stats.entries += 1;
        Ok(())
    }

    /// Resolves (creating missing folders) the parent folder of an entry.
    fn parent_fd(&mut self, parent: &[u8], raw: &[u8]) -> Result<Rc<OwnedFd>, ArchiveError> {
        if parent.is_empty() {
            return Ok(self.root.clone());
        }
        if let Some((p, fd)) = &self.cache {
            if p.as_slice() == parent {
                return Ok(fd.clone());
            }
        }
        let fd = Rc::new(self.open_beneath(parent, true, raw)?);
        self.cache = Some((parent.to_vec(), fd.clone()));
        Ok(fd)
    }

    /// Opens the folder `rel` (normalized, relative to the target) without
    /// following any symlink and without leaving the target.
    fn open_beneath(
        &mut self,
        rel: &[u8],
        create: bool,
        raw: &[u8],
    ) -> Result<OwnedFd, ArchiveError> {
        if self.use_openat2 {
            let how = OpenHow::new()
                .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
            match openat2(self.root.as_fd(), rel, how) {
                Ok(fd) => return Ok(fd),
                Err(Errno::ENOSYS) | Err(Errno::EPERM) => {
                    tracing::debug!("openat2 unavailable, resolving paths component by component");
                    self.use_openat2 = false;
                }
                Err(Errno::ELOOP) => {
                    return Err(ArchiveError::unsafe_entry(
                        raw,
                        "path passes through a symlink",
                    ))
                }
                Err(Errno::EXDEV) => {
                    return Err(ArchiveError::unsafe_entry(raw, "path escapes the target"))
                }
                // ENOENT: create missing folders; others: let the walk classify.
                Err(Errno::ENOENT) if !create => {
                    return Err(ArchiveError::unsafe_entry(
                        raw,
                        "parent folder does not exist",
                    ))
                }
                Err(_) => {}
            }
        }
        let mut cur: Option<OwnedFd> = None;
        for comp in rel.split(|&b| b == b'/') {
            let c = cstr(comp, raw)?;
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let mut created = false;
            let fd = loop {
                let dirfd = cur.as_ref().map_or(self.root.as_fd(), |f| f.as_fd());
                match openat(dirfd, c.as_c_str(), flags, Mode::empty()) {
                    Ok(fd) => break fd,
                    Err(Errno::ENOENT) if create && !created => {
                        match mkdirat(dirfd, c.as_c_str(), Mode::from_bits_truncate(0o755)) {
                            Ok(()) | Err(Errno::EEXIST) => created = true,
                            Err(e) => return Err(ArchiveError::nix("mkdir", raw, e)),
                        }
                    }
                    Err(Errno::ENOENT) => {
                        return Err(ArchiveError::unsafe_entry(
                            raw,
                            "parent folder does not exist",
                        ))
                    }
                    Err(Errno::ELOOP) => {
                        return Err(ArchiveError::unsafe_entry(
                            raw,
                            "path passes through a symlink",
                        ))
                    }
                    Err(Errno::ENOTDIR) => {
                        let st = fstatat(dirfd, c.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW);
                        let is_link = st.is_ok_and(|st| {
                            st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits()
                        });
                        return Err(ArchiveError::unsafe_entry(
                            raw,
                            if is_link {
                                "path passes through a symlink"
                            } else {
                                "parent path is not a folder"
                            },
                        ));
                    }
                    Err(e) => return Err(ArchiveError::nix("open folder", raw, e)),
                }
            };
            cur = Some(fd);
        }
        match cur {
            Some(fd) => Ok(fd),
            None => Err(ArchiveError::unsafe_entry(raw, "empty parent path")),
        }
    }

    /// Removes an existing non-folder at `leaf` so that it can be replaced;
    /// refuses to replace a folder.
    fn remove_existing(
        &self,
        pfd: &OwnedFd,
        leaf: &CString,
        raw: &[u8],
    ) -> Result<(), ArchiveError> {
        let st = fstatat(pfd.as_fd(), leaf.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| ArchiveError::nix("stat", raw, e))?;
        if st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits() {
            return Err(ArchiveError::unsafe_entry(
                raw,
                "entry would replace a folder",
            ));
        }
        unlinkat(pfd.as_fd(), leaf.as_c_str(), UnlinkatFlags::NoRemoveDir)
            .map_err(|e| ArchiveError::nix("unlink", raw, e))
    }

    fn owner_and_xattrs(&self, fd: &OwnedFd, meta: &Meta, raw: &[u8]) -> Result<(), ArchiveError> {
        if meta.uid.is_some() || meta.gid.is_some() {
            match fchown(
                fd.as_fd(),
                meta.uid.map(Uid::from_raw),
                meta.gid.map(Gid::from_raw),
            ) {
                Ok(()) => {}
                Err(e) if ignorable_chown_error(e) => {}
                Err(e) => return Err(ArchiveError::nix("chown", raw, e)),
            }
        }
        if meta.xattrs.is_empty() {
            return Ok(());
        }
        let file = File::from(
            fd.try_clone()
                .map_err(|e| ArchiveError::io("dup", raw, e))?,
        );
        for (name, value) in &meta.xattrs {
            let nb = name.as_bytes();
            if !super::xattr_restored(nb) {
                tracing::debug!(entry = %String::from_utf8_lossy(raw), xattr = %String::from_utf8_lossy(nb), "dropping xattr");
                continue;
            }
            if let Err(e) = file.set_xattr(OsStr::from_bytes(nb), value) {
                tracing::debug!(entry = %String::from_utf8_lossy(raw), xattr = %String::from_utf8_lossy(nb), error = %e, "xattr refused");
            }
        }
        Ok(())
    }

    fn dir(
        &mut self,
        pfd: &OwnedFd,
        path: &[u8],
        leaf: &CString,
        meta: &Meta,
        raw: &[u8],
    ) -> Result<(), ArchiveError> {
        let mut tries = 0;
        loop {
            match mkdirat(
                pfd.as_fd(),
                leaf.as_c_str(),
                Mode::from_bits_truncate(0o700),
            ) {
                Ok(()) => break,
                Err(Errno::EEXIST) if tries == 0 => {
                    tries += 1;
                    let st = fstatat(pfd.as_fd(), leaf.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                        .map_err(|e| ArchiveError::nix("stat", raw, e))?;
                    if st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits() {
                        break;
                    }
                    // A file or symlink is replaced by the folder.
                    unlinkat(pfd.as_fd(), leaf.as_c_str(), UnlinkatFlags::NoRemoveDir)
                        .map_err(|e| ArchiveError::nix("unlink", raw, e))?;
                }
                Err(e) => return Err(ArchiveError::nix("mkdir", raw, e)),
            }
        }
        let fd = openat(
            pfd.as_fd(),
            leaf.as_c_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ArchiveError::nix("open folder", raw, e))?;
        self.owner_and_xattrs(&fd, meta, raw)?;
        self.dirs.push(DirMeta {
            path: path.to_vec(),
            mode: meta.mode & 0o3777,
            mtime: meta.mtime,
        });
        // Its children usually follow: keep it as the cached parent.
        self.cache = Some((path.to_vec(), Rc::new(fd)));
        Ok(())
    }

    fn file(
        &mut self,
        entry: &mut tar::Entry<'_, ChanReader>,
        pfd: &OwnedFd,
        leaf: &CString,
        meta: &Meta,
        raw: &[u8],
    ) -> Result<(), ArchiveError> {
        let flags = OFlag::O_CREAT
            | OFlag::O_EXCL
            | OFlag::O_WRONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY;
        let mode = Mode::from_bits_truncate(0o600);
        let fd = match openat(pfd.as_fd(), leaf.as_c_str(), flags, mode) {
            Ok(fd) => fd,
            Err(Errno::EEXIST) => {
                self.remove_existing(pfd, leaf, raw)?;
                openat(pfd.as_fd(), leaf.as_c_str(), flags, mode)
                    .map_err(|e| ArchiveError::nix("create", raw, e))?
            }
            Err(e) => return Err(ArchiveError::nix("create", raw, e)),
        };
        let mut file = File::from(fd);
        let size = entry.size();
        let mut written: u64 = 0;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.stream_err(e)),
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| ArchiveError::io("write", raw, e))?;
            written += n as u64;
        }
        if written != size {
            return Err(ArchiveError::Truncated(format!(
                "entry {:?}: {} of {} data bytes",
                String::from_utf8_lossy(raw),
                written,
                size
            )));
        }
        self.stats.content_bytes += size;
        let fd: OwnedFd = file.into();
        self.owner_and_xattrs(&fd, meta, raw)?;
        // After chown (which clears setuid); setuid/setgid are never restored.
        fchmod(fd.as_fd(), Mode::from_bits_truncate(meta.mode & 0o1777))
            .map_err(|e| ArchiveError::nix("chmod", raw, e))?;
        futimens(fd.as_fd(), &TimeSpec::UTIME_OMIT, &meta.mtime)
            .map_err(|e| ArchiveError::nix("set mtime", raw, e))?;
        Ok(())
    }

    fn symlink(
        &mut self,
        entry: &mut tar::Entry<'_, ChanReader>,
        pfd: &OwnedFd,
        leaf: &CString,
        meta: &Meta,
        raw: &[u8],
    ) -> Result<(), ArchiveError> {
        let target = match entry.link_name_bytes() {
            Some(t) if !t.is_empty() => t.into_owned(),
            _ => {
                return Err(ArchiveError::Malformed(format!(
                    "symlink {:?} has no target",
                    String::from_utf8_lossy(raw)
                )))
            }
        };
        let target = CString::new(target)
            .map_err(|_| ArchiveError::unsafe_entry(raw, "NUL byte in symlink target"))?;
        match symlinkat(target.as_c_str(), pfd.as_fd(), leaf.as_c_str()) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                self.remove_existing(pfd, leaf, raw)?;
                symlinkat(target.as_c_str(), pfd.as_fd(), leaf.as_c_str())
                    .map_err(|e| ArchiveError::nix("symlink", raw, e))?;
            }
            Err(e) => return Err(ArchiveError::nix("symlink", raw, e)),
        }
        if meta.uid.is_some() || meta.gid.is_some() {
            match fchownat(
                pfd.as_fd(),
                leaf.as_c_str(),
                meta.uid.map(Uid::from_raw),
                meta.gid.map(Gid::from_raw),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(()) => {}
                Err(e) if ignorable_chown_error(e) => {}
                Err(e) => return Err(ArchiveError::nix("chown", raw, e)),
            }
        }
        utimensat(
            pfd.as_fd(),
            leaf.as_c_str(),
            &TimeSpec::UTIME_OMIT,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| ArchiveError::nix("set mtime", raw, e))?;
        Ok(())
    }

    fn hard_link(
        &mut self,
        entry: &mut tar::Entry<'_, ChanReader>,
        pfd: &OwnedFd,
        path: &[u8],
        leaf: &CString,
        raw: &[u8],
    ) -> Result<(), ArchiveError> {
        let target_raw = match entry.link_name_bytes() {
            Some(t) => t.into_owned(),
            None => {
                return Err(ArchiveError::Malformed(format!(
                    "hard link {:?} has no target",
                    String::from_utf8_lossy(raw)
                )))
            }
        };
        if target_raw.first() == Some(&b'/') {
            return Err(ArchiveError::unsafe_entry(
                raw,
                "hard link target is absolute",
            ));
        }
        let target = match normalize(&target_raw) {
            Ok(Norm::Path(p)) => p,
            Ok(Norm::Root) => {
                return Err(ArchiveError::unsafe_entry(
                    raw,
                    "hard link to the extraction root",
                ))
            }
            Err(ArchiveError::UnsafeEntry { .. }) => {
                return Err(ArchiveError::unsafe_entry(
                    raw,
                    "hard link target is outside the target",
                ))
            }
            Err(e) => return Err(e),
        };
        if target == path {
            return Ok(());
        }
        let (tparent, tleaf) = split_parent(&target);
        let tleaf = cstr(tleaf, raw)?;
        let tpfd: Rc<OwnedFd> = if tparent.is_empty() {
            self.root.clone()
        } else {
            match self.open_beneath(tparent, false, raw) {
                Ok(fd) => Rc::new(fd),
                Err(ArchiveError::UnsafeEntry { reason, .. }) => {
                    return Err(ArchiveError::unsafe_entry(
                        raw,
                        if reason == "parent folder does not exist" {
                            "hard link target does not exist"
                        } else {
                            "hard link target passes through a symlink or non-folder"
                        },
                    ))
                }
                Err(e) => return Err(e),
            }
        };
        match fstatat(tpfd.as_fd(), tleaf.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits() => {
                return Err(ArchiveError::unsafe_entry(
                    raw,
                    "hard link target is a folder",
                ))
            }
            Ok(_) => {}
            Err(Errno::ENOENT) => {
                return Err(ArchiveError::unsafe_entry(
                    raw,
                    "hard link target does not exist",
                ))
            }
            Err(e) => return Err(ArchiveError::nix("stat", raw, e)),
        }
        let link = || {
            linkat(
                tpfd.as_fd(),
                tleaf.as_c_str(),
                pfd.as_fd(),
                leaf.as_c_str(),
                AtFlags::empty(),
            )
        };
        match link() {
            Ok(()) => Ok(()),
            Err(Errno::EEXIST) => {
                self.remove_existing(pfd, leaf, raw)?;
                link().map_err(|e| ArchiveError::nix("link", raw, e))
            }
            Err(e) => Err(ArchiveError::nix("link", raw, e)),
        }
    }

    /// Applies folder modes and mtimes, deepest first.
    fn finish_dirs(&mut self) -> Result<(), ArchiveError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| {
            std::cmp::Reverse(
                d.path.iter().filter(|&&b| b == b'/').count() + usize::from(!d.path.is_empty()),
            )
        });
        for d in &dirs {
            let fd = if d.path.is_empty() {
                self.root.clone()
            } else {
                Rc::new(self.open_beneath(&d.path, false, &d.path)?)
            };
            fchmod(fd.as_fd(), Mode::from_bits_truncate(d.mode))
                .map_err(|e| ArchiveError::nix("chmod", &d.path, e))?;
            futimens(fd.as_fd(), &TimeSpec::UTIME_OMIT, &d.mtime)
                .map_err(|e| ArchiveError::nix("set mtime", &d.path, e))?;
        }
        Ok(())
    }
}
