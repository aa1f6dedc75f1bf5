//! Walking a folder tree without following symlinks: every folder is opened with `O_NOFOLLOW`
//! relative to its parent's descriptor, so concurrent renames or symlink swaps inside the tree
//! cannot lead the walk outside it. Entries come in a stable order (names sorted bytewise, a
//! folder before its contents), which both archive formats rely on.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode, SFlag};

use super::ArchiveError;

struct Frame {
    dir: Dir,
    names: Vec<CString>,
    idx: usize,
    prefix_len: usize,
}

/// Calls `visit(parent folder, leaf name, path relative to source)` for every entry under
/// `source` (not `source` itself). When `visit` answers an opened folder, its entries follow.
pub(crate) fn walk_tree(
    source: &Path,
    mut visit: impl FnMut(BorrowedFd<'_>, &CStr, &[u8]) -> Result<Option<Dir>, ArchiveError>,
) -> Result<(), ArchiveError> {
    let mut root = Dir::open(
        source,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ArchiveError::nix("open source folder", b".", e))?;
    let names = list_names(&mut root, b".")?;
    let mut stack = vec![Frame {
        dir: root,
        names,
        idx: 0,
        prefix_len: 0,
    }];
    let mut path = Vec::with_capacity(4096);
    while let Some(top) = stack.last_mut() {
        if top.idx >= top.names.len() {
            stack.pop();
            continue;
        }
        let name = std::mem::take(&mut top.names[top.idx]);
        top.idx += 1;
        path.truncate(top.prefix_len);
        path.extend_from_slice(name.to_bytes());
        if let Some(mut dir) = visit(top.dir.as_fd(), &name, &path)? {
            let names = list_names(&mut dir, &path)?;
            path.push(b'/');
            stack.push(Frame {
                dir,
                names,
                idx: 0,
                prefix_len: path.len(),
            });
        }
    }
    Ok(())
}

fn list_names(dir: &mut Dir, name: &[u8]) -> Result<Vec<CString>, ArchiveError> {
    let mut names = Vec::new();
    for ent in dir.iter() {
        let ent = ent.map_err(|e| ArchiveError::nix("readdir", name, e))?;
        let n = ent.file_name();
        let b = n.to_bytes();
        if b == b"." || b == b".." {
            continue;
        }
        names.push(n.to_owned());
    }
    names.sort_unstable();
    Ok(names)
}

/// Whether a failed `*at` call means the entry vanished or changed type under the walk:
/// ENOENT (removed), ELOOP / ENOTDIR (replaced by a symlink or another type).
pub(crate) fn is_vanished(e: Errno) -> bool {
    matches!(e, Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR)
}

pub(crate) fn file_kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}
