//! Snapshots of a folder tree for comparison: type, mode, size, content hash, mtime in
//! nanoseconds and link target of every entry.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub size: u64,
    pub sha256: String,
    pub mtime_ns: i128,
    pub link: Option<PathBuf>,
}

/// Every entry below `root` (not `root` itself), keyed by relative path, minus `skip`.
pub fn snapshot(root: &Path, skip: &[&str]) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    walk(root, root, skip, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, skip: &[&str], out: &mut BTreeMap<PathBuf, Entry>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        let rel = path.strip_prefix(root).expect("below root").to_path_buf();
        if skip.iter().any(|s| rel == Path::new(s)) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).expect("lstat");
        let ft = meta.file_type();
        let (kind, sha256, link) = if ft.is_symlink() {
            (
                "symlink",
                String::new(),
                Some(std::fs::read_link(&path).expect("readlink")),
            )
        } else if ft.is_dir() {
            ("dir", String::new(), None)
        } else {
            let bytes = std::fs::read(&path).expect("read");
            ("file", hex::encode(Sha256::digest(&bytes)), None)
        };
        let mtime_ns = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
        out.insert(
            rel,
            Entry {
                kind,
                mode: meta.mode() & 0o7777,
                size: if ft.is_file() { meta.size() } else { 0 },
                sha256,
                mtime_ns,
                link,
            },
        );
        if ft.is_dir() {
            walk(root, &path, skip, out);
        }
    }
}

/// Writes a small but varied workspace: nested and empty folders, modes, symlinks, odd names,
/// a larger binary file and nanosecond mtimes.
pub fn populate(root: &Path) {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let w = |rel: &str, data: &[u8], mode: u32| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, data).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    w("README.md", b"# hello\n", 0o644);
    w("src/main.rs", b"fn main() {}\n", 0o644);
    w("bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755);
    w("secret/key", b"private", 0o600);
    w("name with spaces/and \"quotes\".txt", b"spaces", 0o644);
    w("deep/a/b/c/d/e/f/g/leaf.txt", b"leaf", 0o644);
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    w("data/blob.bin", &big, 0o644);
    w("empty-file", b"", 0o644);
    std::fs::create_dir_all(root.join("empty/dir")).expect("mkdir");
    symlink("src/main.rs", root.join("link-to-main")).expect("symlink");
    symlink("does/not/exist", root.join("dangling")).expect("symlink");
    symlink("src", root.join("link-to-dir")).expect("symlink");
    std::fs::set_permissions(root.join("secret"), std::fs::Permissions::from_mode(0o700))
        .expect("chmod");
    // Odd nanoseconds on files, folders and symlinks, set last (children change folder mtimes).
    let mut n = 0i64;
    let mut paths: Vec<PathBuf> = snapshot(root, &[]).into_keys().collect();
    paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for rel in paths {
        n += 1;
        let ts = nix::sys::time::TimeSpec::new(1_700_000_000 + n, 123_456_789 - n);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &root.join(&rel),
            &ts,
            &ts,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .expect("utimensat");
    }
}
