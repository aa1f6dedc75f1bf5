//! Creating one archive entry (folder, file, symlink, hard link) in its already-resolved parent
//! folder, with `*at` calls that never follow a symlink at the leaf.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstatat, futimens, mkdirat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use xattr::FileExt;

use super::{cstr, ignorable_chown_error, refused, DirMeta, Extractor, Meta};
use crate::archive::ArchiveError;
use crate::confine::{self, BadPath, ConfineError};

/// All-zero blocks of this size become holes instead of writes (a filesystem block).
const HOLE_BLOCK: usize = 4096;

/// Writes `data` at the file's position, seeking over all-zero blocks; answers whether it ended
/// with a hole (the file's size must then be set).
fn write_sparse(file: &mut File, data: &[u8]) -> io::Result<bool> {
    let mut pending = 0..0;
    let mut hole = false;
    for (i, block) in data.chunks(HOLE_BLOCK).enumerate() {
        let start = i * HOLE_BLOCK;
        if block.len() == HOLE_BLOCK && block.iter().all(|&b| b == 0) {
            if !pending.is_empty() {
                file.write_all(&data[pending.clone()])?;
            }
            file.seek(SeekFrom::Current(HOLE_BLOCK as i64))?;
            pending = start + HOLE_BLOCK..start + HOLE_BLOCK;
            hole = true;
        } else {
            if pending.is_empty() {
                pending = start..start;
            }
            pending.end = start + block.len();
            hole = false;
        }
    }
    if !pending.is_empty() {
        file.write_all(&data[pending])?;
    }
    Ok(hole)
}

impl Extractor<'_> {
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

    pub(super) fn owner_and_xattrs(
        &self,
        fd: &OwnedFd,
        meta: &Meta,
        raw: &[u8],
    ) -> Result<(), ArchiveError> {
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
            if !crate::archive::xattr_restored(nb) {
                tracing::debug!(entry = %String::from_utf8_lossy(raw), xattr = %String::from_utf8_lossy(nb), "dropping xattr");
                continue;
            }
            if let Err(e) = file.set_xattr(OsStr::from_bytes(nb), value) {
                tracing::debug!(entry = %String::from_utf8_lossy(raw), xattr = %String::from_utf8_lossy(nb), error = %e, "xattr refused");
            }
        }
        Ok(())
    }

    pub(super) fn dir(
        &mut self,
        pfd: &OwnedFd,
        path: &Path,
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
            path: path.to_path_buf(),
            mode: meta.mode & 0o3777,
            mtime: meta.mtime,
        });
        // Its children usually follow: keep it as the cached parent.
        self.cache = Some((path.to_path_buf(), Rc::new(fd)));
        Ok(())
    }

    pub(super) fn file(
        &mut self,
        data: &mut dyn Read,
        size: u64,
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
        let mut written: u64 = 0;
        // Runs of zeros become holes: a sparse file stays sparse, and nothing is written for them.
        let mut hole_at_end = false;
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.stream_err(e)),
            };
            hole_at_end = write_sparse(&mut file, &self.buf[..n])
                .map_err(|e| ArchiveError::io("write", raw, e))?;
            written += n as u64;
            if let Some(p) = &self.opts.progress {
                p.add_bytes(n as u64);
            }
        }
        if hole_at_end {
            file.set_len(written)
                .map_err(|e| ArchiveError::io("write", raw, e))?;
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
        if let Some(p) = &self.opts.progress {
            p.add_file();
        }
        let fd: OwnedFd = file.into();
        self.owner_and_xattrs(&fd, meta, raw)?;
        // After chown (which clears setuid); setuid/setgid are never restored.
        fchmod(fd.as_fd(), Mode::from_bits_truncate(meta.mode & 0o1777))
            .map_err(|e| ArchiveError::nix("chmod", raw, e))?;
        futimens(fd.as_fd(), &TimeSpec::UTIME_OMIT, &meta.mtime)
            .map_err(|e| ArchiveError::nix("set mtime", raw, e))?;
        Ok(())
    }

    pub(super) fn symlink(
        &mut self,
        target: &[u8],
        pfd: &OwnedFd,
        leaf: &CString,
        meta: &Meta,
        raw: &[u8],
    ) -> Result<(), ArchiveError> {
        if target.is_empty() {
            return Err(ArchiveError::Malformed(format!(
                "symlink {:?} has no target",
                String::from_utf8_lossy(raw)
            )));
        }
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

    pub(super) fn hard_link(
        &mut self,
        target_raw: &[u8],
        pfd: &OwnedFd,
        path: &Path,
        leaf: &CString,
        raw: &[u8],
    ) -> Result<(), ArchiveError> {
        if target_raw.first() == Some(&b'/') {
            return Err(ArchiveError::unsafe_entry(
                raw,
                "hard link target is absolute",
            ));
        }
        let target = match confine::normalize(target_raw) {
            Ok(p) if p.as_os_str().is_empty() => {
                return Err(ArchiveError::unsafe_entry(
                    raw,
                    "hard link to the extraction root",
                ))
            }
            Ok(p) => p,
            Err(ConfineError::BadPath(BadPath::ParentDir)) => {
                return Err(ArchiveError::unsafe_entry(
                    raw,
                    "hard link target is outside the target",
                ))
            }
            Err(e) => return Err(refused(raw, e)),
        };
        if target == path {
            return Ok(());
        }
        let (tparent, tleaf) = confine::split_parent(&target).map_err(|e| refused(raw, e))?;
        let tleaf = cstr(tleaf, raw)?;
        let tpfd: Rc<OwnedFd> = match self.open_folder(tparent) {
            Ok(fd) => fd,
            Err(ConfineError::NotFound) => {
                return Err(ArchiveError::unsafe_entry(
                    raw,
                    "hard link target does not exist",
                ))
            }
            Err(ConfineError::Io { op, source }) => return Err(ArchiveError::io(op, raw, source)),
            Err(_) => {
                return Err(ArchiveError::unsafe_entry(
                    raw,
                    "hard link target passes through a symlink or non-folder",
                ))
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
}
