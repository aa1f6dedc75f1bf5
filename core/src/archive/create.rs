//! Writing a tar (+zstd) stream of a folder.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use tar::{EntryType, Header};
use xattr::FileExt;

use super::walk::{file_kind, is_vanished, walk_tree};
use super::{format_pax_time, ArchiveError, ArchiveOptions, ArchiveStats, Compression, NOBODY_ID};

const OUT_BUF: usize = 1 << 20;
const COPY_BUF: usize = 1 << 20;
const BLOCK: usize = 512;

/// Counts the bytes that reach the caller's writer.
struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Sink<W: Write> {
    Plain(CountingWriter<W>),
    Zstd(zstd::stream::write::Encoder<'static, CountingWriter<W>>),
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Zstd(w) => w.flush(),
        }
    }
}

impl<W: Write> Sink<W> {
    fn finish(self) -> io::Result<CountingWriter<W>> {
        match self {
            Sink::Plain(w) => Ok(w),
            Sink::Zstd(w) => w.finish(),
        }
    }
}

/// Writes a tar stream of `source` (entry names relative to it; the root
/// itself is not an entry) into `out`, compressed as configured.
///
/// Never follows symlinks: the tree is walked with directory file
/// descriptors and `O_NOFOLLOW`, so concurrent renames/symlink swaps inside
/// `source` cannot make it archive anything outside `source`.
pub fn write_archive<W: Write>(
    source: &Path,
    out: W,
    opts: &ArchiveOptions,
) -> Result<ArchiveStats, ArchiveError> {
    let mut w = Writer::new(out, opts)?;
    w.walk(source)?;
    w.finish()
}

/// The metadata of an entry that is not on disk, with in-workspace owner ids.
pub(crate) struct Head {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_secs: i64,
    pub mtime_nanos: u32,
}

/// Writes a tar (+zstd) stream, in the format of [`write_archive`], of entries that are not on
/// disk (those of a chunked manifest), in the order given.
pub(crate) struct EntryWriter<'a, W: Write> {
    w: Writer<'a, Sink<W>>,
}

impl<'a, W: Write> EntryWriter<'a, W> {
    pub(crate) fn new(out: W, opts: &'a ArchiveOptions) -> Result<Self, ArchiveError> {
        Ok(EntryWriter {
            w: Writer::new(out, opts)?,
        })
    }

    fn start(&mut self, path: &[u8], xattrs: &[(Vec<u8>, Vec<u8>)]) {
        self.w.path.clear();
        self.w.path.extend_from_slice(path);
        self.w.pax.clear();
        for (name, value) in xattrs {
            self.w.push_xattr(name, value);
        }
    }

    pub(crate) fn dir(
        &mut self,
        path: &[u8],
        head: &Head,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), ArchiveError> {
        self.start(path, xattrs);
        let mut header = self.w.header_of(head, EntryType::Directory, 0);
        self.w.path.push(b'/');
        self.w.write_entry(&mut header, None)
    }

    pub(crate) fn file(
        &mut self,
        path: &[u8],
        head: &Head,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        size: u64,
        data: &mut dyn Read,
    ) -> Result<(), ArchiveError> {
        self.start(path, xattrs);
        let mut header = self.w.header_of(head, EntryType::Regular, size);
        self.w.write_entry(&mut header, None)?;
        self.w.copy_data(data, size)?;
        self.w.stats.content_bytes += size;
        Ok(())
    }

    pub(crate) fn link(
        &mut self,
        path: &[u8],
        head: &Head,
        target: &[u8],
        hard: bool,
    ) -> Result<(), ArchiveError> {
        self.start(path, &[]);
        let kind = if hard {
            EntryType::Link
        } else {
            EntryType::Symlink
        };
        let mut header = self.w.header_of(head, kind, 0);
        self.w.write_entry(&mut header, Some(target))
    }

    pub(crate) fn finish(self) -> Result<ArchiveStats, ArchiveError> {
        self.w.finish()
    }
}

struct Writer<'a, S: Write> {
    out: BufWriter<S>,
    opts: &'a ArchiveOptions,
    stats: ArchiveStats,
    /// (dev, ino) -> archive name of the first path of a multiply linked file.
    links: HashMap<(u64, u64), Box<[u8]>>,
    /// Archive name of the current entry (reused buffer).
    path: Vec<u8>,
    /// File copy buffer (reused).
    buf: Vec<u8>,
    /// PAX records of the current entry (reused).
    pax: Vec<u8>,
}

impl<'a, W: Write> Writer<'a, Sink<W>> {
    fn new(out: W, opts: &'a ArchiveOptions) -> Result<Self, ArchiveError> {
        let counting = CountingWriter {
            inner: out,
            count: 0,
        };
        let sink = match opts.compression {
            Compression::None => Sink::Plain(counting),
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(counting, opts.zstd_level)
                    .map_err(|e| ArchiveError::io("zstd init", b"", e))?;
                if opts.zstd_workers > 0 {
                    enc.multithread(opts.zstd_workers)
                        .map_err(|e| ArchiveError::io("zstd multithread", b"", e))?;
                }
                Sink::Zstd(enc)
            }
        };
        Ok(Writer {
            out: BufWriter::with_capacity(OUT_BUF, sink),
            opts,
            stats: ArchiveStats::default(),
            links: HashMap::new(),
            path: Vec::with_capacity(4096),
            buf: vec![0u8; COPY_BUF],
            pax: Vec::new(),
        })
    }

    /// Writes the end-of-archive marker and ends the stream.
    fn finish(mut self) -> Result<ArchiveStats, ArchiveError> {
        self.out
            .write_all(&[0u8; 2 * BLOCK])
            .map_err(|e| ArchiveError::io("write", b"", e))?;
        let stats = self.stats;
        let sink = self
            .out
            .into_inner()
            .map_err(|e| ArchiveError::io("write", b"", e.into_error()))?;
        let mut counting = sink
            .finish()
            .map_err(|e| ArchiveError::io("finish zstd frame", b"", e))?;
        counting
            .flush()
            .map_err(|e| ArchiveError::io("flush", b"", e))?;
        Ok(ArchiveStats {
            archive_bytes: counting.count,
            ..stats
        })
    }
}

impl<S: Write> Writer<'_, S> {
    fn walk(&mut self, source: &Path) -> Result<(), ArchiveError> {
        walk_tree(source, |dirfd, name, path| {
            self.path.clear();
            self.path.extend_from_slice(path);
            self.entry(dirfd, name)
        })
    }

    fn err(&self, op: &'static str, e: impl Into<io::Error>) -> ArchiveError {
        ArchiveError::io(op, &self.path, e.into())
    }

    /// Archives one directory entry; returns the opened folder to descend into.
    fn entry(&mut self, dirfd: BorrowedFd<'_>, name: &CStr) -> Result<Option<Dir>, ArchiveError> {
        let st = match fstatat(dirfd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) if is_vanished(e) => return Ok(self.vanished()),
            Err(e) => return Err(self.err("stat", e)),
        };
        let kind = file_kind(&st);
        if kind == SFlag::S_IFREG {
            self.file(dirfd, name, &st)?;
            Ok(None)
        } else if kind == SFlag::S_IFDIR {
            self.dir(dirfd, name)
        } else if kind == SFlag::S_IFLNK {
            self.symlink(dirfd, name, &st)?;
            Ok(None)
        } else {
            tracing::debug!(name = %String::from_utf8_lossy(&self.path), "skipping special file");
            self.stats.skipped += 1;
            Ok(None)
        }
    }

    fn vanished<T>(&mut self) -> Option<T> {
        tracing::debug!(name = %String::from_utf8_lossy(&self.path), "file vanished while archiving");
        self.stats.skipped += 1;
        None
    }

    fn dir(&mut self, dirfd: BorrowedFd<'_>, name: &CStr) -> Result<Option<Dir>, ArchiveError> {
        let fd = match openat(
            dirfd,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if is_vanished(e) => return Ok(self.vanished()),
            Err(e) => return Err(self.err("open folder", e)),
        };
        let st = fstat(&fd).map_err(|e| self.err("stat", e))?;
        let file = File::from(fd);
        self.pax.clear();
        self.add_xattrs(&file);
        let mut header = self.header(&st, EntryType::Directory, 0);
        self.path.push(b'/');
        let res = self.write_entry(&mut header, None);
        self.path.pop();
        res?;
        let dir = Dir::from_fd(file.into()).map_err(|e| self.err("open folder", e))?;
        Ok(Some(dir))
    }

    fn symlink(
        &mut self,
        dirfd: BorrowedFd<'_>,
        name: &CStr,
        st: &FileStat,
    ) -> Result<(), ArchiveError> {
        let target = match readlinkat(dirfd, name) {
            Ok(t) => t,
            Err(e) if is_vanished(e) || e == Errno::EINVAL => {
                self.vanished::<()>();
                return Ok(());
            }
            Err(e) => return Err(self.err("readlink", e)),
        };
        self.pax.clear();
        let mut header = self.header(st, EntryType::Symlink, 0);
        self.write_entry(&mut header, Some(target.as_bytes()))
    }

    fn file(
        &mut self,
        dirfd: BorrowedFd<'_>,
        name: &CStr,
        st: &FileStat,
    ) -> Result<(), ArchiveError> {
        if st.st_nlink > 1 && self.hard_link(st)? {
            return Ok(());
        }
        let fd = match openat(
            dirfd,
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if is_vanished(e) => {
                self.vanished::<()>();
                return Ok(());
            }
            Err(e) => return Err(self.err("open", e)),
        };
        let st = fstat(&fd).map_err(|e| self.err("stat", e))?;
        if file_kind(&st) != SFlag::S_IFREG {
            // Replaced by something else (e.g. a FIFO) between stat and open.
            self.stats.skipped += 1;
            return Ok(());
        }
        if st.st_nlink > 1 {
            if self.hard_link(&st)? {
                return Ok(());
            }
            self.links
                .insert((st.st_dev, st.st_ino), self.path.clone().into_boxed_slice());
        }
        let mut file = File::from(fd);
        let size = u64::try_from(st.st_size).unwrap_or(0);
        self.pax.clear();
        self.add_xattrs(&file);
        let mut header = self.header(&st, EntryType::Regular, size);
        self.write_entry(&mut header, None)?;
        self.copy_data(&mut file, size)?;
        self.stats.content_bytes += size;
        Ok(())
    }

    /// Writes a hard-link entry if (dev, ino) was archived before.
    fn hard_link(&mut self, st: &FileStat) -> Result<bool, ArchiveError> {
        let Some(first) = self.links.get(&(st.st_dev, st.st_ino)).cloned() else {
            return Ok(false);
        };
        self.pax.clear();
        let mut header = self.header(st, EntryType::Link, 0);
        self.write_entry(&mut header, Some(&first))?;
        Ok(true)
    }

    /// Copies exactly `size` bytes of `file` plus block padding. A file that
    /// shrank while being read is padded with zeros (the header is already
    /// written); a file that grew is cut at `size`.
    fn copy_data(&mut self, file: &mut dyn Read, size: u64) -> Result<(), ArchiveError> {
        let mut remaining = size;
        while remaining > 0 {
            let want =
                usize::try_from(remaining.min(self.buf.len() as u64)).unwrap_or(self.buf.len());
            let n = match file.read(&mut self.buf[..want]) {
                Ok(0) => {
                    tracing::warn!(
                        name = %String::from_utf8_lossy(&self.path),
                        missing = remaining,
                        "file shrank while archiving, padding with zeros"
                    );
                    self.buf[..want].fill(0);
                    want
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.err("read", e)),
            };
            self.out
                .write_all(&self.buf[..n])
                .map_err(|e| ArchiveError::io("write", &self.path, e))?;
            remaining -= n as u64;
            if let Some(p) = &self.opts.progress {
                p.add_bytes(n as u64);
            }
        }
        if let Some(p) = &self.opts.progress {
            p.add_file();
        }
        self.pad(size)
    }

    fn pad(&mut self, len: u64) -> Result<(), ArchiveError> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.out
                .write_all(&[0u8; BLOCK][..BLOCK - rem])
                .map_err(|e| ArchiveError::io("write", &self.path, e))?;
        }
        Ok(())
    }

    fn map_id(&mut self, host: u32, map: fn(&ArchiveOptions) -> &super::IdMap) -> u32 {
        match map(self.opts).host_to_container(host) {
            Some(id) => id,
            None => {
                self.stats.unmapped_ids += 1;
                NOBODY_ID
            }
        }
    }

    /// Builds the header of the current entry (name/link set later) from the file's stat, its
    /// owners mapped to in-workspace ids.
    fn header(&mut self, st: &FileStat, kind: EntryType, size: u64) -> Header {
        let head = Head {
            mode: st.st_mode & 0o7777,
            uid: self.map_id(st.st_uid, |o| &o.uid_map),
            gid: self.map_id(st.st_gid, |o| &o.gid_map),
            mtime_secs: st.st_mtime,
            mtime_nanos: u32::try_from(st.st_mtime_nsec).unwrap_or(0),
        };
        self.header_of(&head, kind, size)
    }

    /// Builds a header and adds a PAX mtime record when the mtime has a sub-second part.
    fn header_of(&mut self, head: &Head, kind: EntryType, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(head.mode & 0o7777);
        h.set_uid(u64::from(head.uid));
        h.set_gid(u64::from(head.gid));
        h.set_size(size);
        let (secs, nanos) = (head.mtime_secs, head.mtime_nanos);
        h.set_mtime(u64::try_from(secs).unwrap_or(0));
        if nanos != 0 || secs < 0 {
            push_pax_record(
                &mut self.pax,
                b"mtime",
                format_pax_time(secs, nanos).as_bytes(),
            );
        }
        h
    }

    /// Adds `SCHILY.xattr.*` records for the file's xattrs (except trusted.*).
    fn add_xattrs(&mut self, file: &File) {
        let names = match file.list_xattr() {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(name = %String::from_utf8_lossy(&self.path), error = %e, "cannot list xattrs");
                return;
            }
        };
        for xname in names {
            let nb = xname.as_bytes();
            if !super::xattr_archived(nb) {
                continue;
            }
            match file.get_xattr(&xname) {
                Ok(Some(value)) => self.push_xattr(nb, &value),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(name = %String::from_utf8_lossy(&self.path), error = %e, "cannot read xattr");
                }
            }
        }
    }

    fn push_xattr(&mut self, name: &[u8], value: &[u8]) {
        if !super::xattr_archived(name) {
            return;
        }
        let mut key = Vec::with_capacity(13 + name.len());
        key.extend_from_slice(b"SCHILY.xattr.");
        key.extend_from_slice(name);
        push_pax_record(&mut self.pax, &key, value);
    }

    /// Writes [PAX header] [GNU long name] [GNU long link] header for the
    /// current entry name (`self.path`) and optional link target.
    fn write_entry(
        &mut self,
        header: &mut Header,
        link: Option<&[u8]>,
    ) -> Result<(), ArchiveError> {
        if !self.pax.is_empty() {
            let mut ph = Header::new_ustar();
            set_name_field(&mut ph, b"././@PaxHeader");
            ph.set_entry_type(EntryType::XHeader);
            ph.set_mode(0o644);
            ph.set_size(self.pax.len() as u64);
            ph.set_cksum();
            let pax = std::mem::take(&mut self.pax);
            let res = self.raw(ph.as_bytes()).and_then(|_| {
                self.raw(&pax)?;
                self.pad(pax.len() as u64)
            });
            self.pax = pax;
            res?;
        }
        let path = std::mem::take(&mut self.path);
        let res = (|| {
            if path.len() > 100 {
                self.long(EntryType::GNULongName, &path)?;
                set_name_field(header, &path[..100]);
            } else {
                set_name_field(header, &path);
            }
            if let Some(link) = link {
                if link.len() > 100 {
                    self.long(EntryType::GNULongLink, link)?;
                    set_link_field(header, &link[..100]);
                } else {
                    set_link_field(header, link);
                }
            }
            header.set_cksum();
            self.raw(header.as_bytes())
        })();
        self.path = path;
        res?;
        self.stats.entries += 1;
        Ok(())
    }

    fn long(&mut self, kind: EntryType, data: &[u8]) -> Result<(), ArchiveError> {
        let mut h = Header::new_gnu();
        set_name_field(&mut h, b"././@LongLink");
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64 + 1);
        h.set_entry_type(kind);
        h.set_cksum();
        self.raw(h.as_bytes())?;
        self.raw(data)?;
        self.raw(&[0])?;
        self.pad(data.len() as u64 + 1)
    }

    fn raw(&mut self, data: &[u8]) -> Result<(), ArchiveError> {
        self.out
            .write_all(data)
            .map_err(|e| ArchiveError::io("write", &self.path, e))
    }
}

fn set_name_field(h: &mut Header, name: &[u8]) {
    let field = &mut h.as_old_mut().name;
    field.fill(0);
    field[..name.len()].copy_from_slice(name);
}

fn set_link_field(h: &mut Header, link: &[u8]) {
    let field = &mut h.as_old_mut().linkname;
    field.fill(0);
    field[..link.len()].copy_from_slice(link);
}

/// Appends one PAX record `"<len> <key>=<value>\n"`.
fn push_pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    loop {
        let total = base + len.to_string().len();
        if total == len {
            break;
        }
        len = total;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::push_pax_record;

    #[test]
    fn pax_record_lengths() {
        for vlen in [
            0usize, 1, 4, 5, 6, 94, 95, 96, 990, 995, 996, 997, 9990, 9996,
        ] {
            let mut out = Vec::new();
            let value = vec![b'x'; vlen];
            push_pax_record(&mut out, b"k", &value);
            let space = out.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&out[..space]).unwrap().parse().unwrap();
            assert_eq!(len, out.len(), "value length {vlen}");
        }
    }
}
