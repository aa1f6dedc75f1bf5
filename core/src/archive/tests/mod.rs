//! End-to-end tests of the archive format, by theme: `roundtrip` (what goes in comes out),
//! `hostile_paths` (names and links that try to leave the target, run against both path
//! resolvers), `hostile_content` (devices, setuid bits, xattrs), `stream` (formats, truncation,
//! garbage, errors). The helpers below build raw archives and check that nothing outside the
//! target changes.

mod hostile_content;
mod hostile_paths;
pub(crate) mod roundtrip;
mod stream;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::{EntryType, Header};

use super::*;

pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn set_mtime(p: &Path, secs: i64, nanos: i64) {
    utimensat(
        AT_FDCWD,
        p,
        &TimeSpec::new(secs, nanos),
        &TimeSpec::new(secs, nanos),
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

pub(crate) fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[derive(Debug, PartialEq, Eq, Clone)]
pub(crate) struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    content: Vec<u8>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// Snapshot of a tree (relative names -> metadata), not following symlinks.
/// `skip` names a top-level child to leave out.
pub(crate) fn snapshot(
    root: &Path,
    skip: Option<&str>,
    with_mtime: bool,
) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let full = root.join(&rel);
        let md = fs::symlink_metadata(&full).unwrap();
        let ft = md.file_type();
        let (kind, content) = if ft.is_dir() {
            for e in fs::read_dir(&full).unwrap() {
                let e = e.unwrap();
                let child = rel.join(e.file_name());
                if rel.as_os_str().is_empty() && Some(e.file_name().to_str().unwrap_or("")) == skip
                {
                    continue;
                }
                todo.push(child);
            }
            ("dir", Vec::new())
        } else if ft.is_symlink() {
            (
                "symlink",
                fs::read_link(&full)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            )
        } else if ft.is_file() {
            ("file", fs::read(&full).unwrap())
        } else {
            ("other", Vec::new())
        };
        let mut xattrs = BTreeMap::new();
        if !ft.is_symlink() {
            if let Ok(names) = xattr::list(&full) {
                for n in names {
                    let n = n.to_string_lossy().into_owned();
                    if n.starts_with("user.") || n == "security.capability" {
                        xattrs.insert(
                            n.clone(),
                            xattr::get(&full, &n).unwrap().unwrap_or_default(),
                        );
                    }
                }
            }
        }
        out.insert(
            rel,
            Node {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                mtime: if with_mtime {
                    (md.mtime(), md.mtime_nsec())
                } else {
                    (0, 0)
                },
                content,
                xattrs,
            },
        );
    }
    out
}

fn pax_records(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let base = k.len() + v.len() + 3;
        let mut len = base + 1;
        while base + len.to_string().len() != len {
            len = base + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

/// Appends a raw ustar entry (name and link name written byte for byte).
fn raw_entry(out: &mut Vec<u8>, name: &[u8], kind: EntryType, link: &[u8], mode: u32, data: &[u8]) {
    let mut h = Header::new_ustar();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

fn end(out: &mut Vec<u8>) {
    out.extend(std::iter::repeat_n(0u8, 1024));
}

struct Hostile {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    target: PathBuf,
}

fn hostile_env() -> Hostile {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    fs::create_dir(root.join("outside")).unwrap();
    fs::write(root.join("outside/sentinel"), b"do not touch").unwrap();
    fs::set_permissions(
        root.join("outside/sentinel"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    fs::create_dir(root.join("target")).unwrap();
    Hostile {
        target: root.join("target"),
        root,
        _tmp: tmp,
    }
}

/// Extracts `archive` into root/target and asserts nothing outside changed.
fn run_hostile(env: &Hostile, archive: &[u8]) -> Result<ArchiveStats, ArchiveError> {
    let before = snapshot(&env.root, Some("target"), true);
    let res = extract_archive(archive, &env.target, &ArchiveOptions::default());
    let after = snapshot(&env.root, Some("target"), true);
    assert_eq!(before, after, "something outside the target changed");
    let root_bytes = env.root.as_os_str().as_bytes();
    let archive_names_root = archive.windows(root_bytes.len()).any(|w| w == root_bytes);
    if let (Err(e), false) = (&res, archive_names_root) {
        let msg = e.to_string();
        assert!(
            !msg.contains(env.root.to_str().unwrap_or("\u{0}")),
            "error message leaks the host path: {msg}"
        );
    }
    res
}

/// Runs `case` with openat2 and again with the component walk of `crate::confine`, so that both
/// resolvers meet every hostile archive.
fn both_resolvers(case: impl Fn()) {
    case();
    crate::confine::with_component_walk(case);
}

fn assert_unsafe(res: Result<ArchiveStats, ArchiveError>) {
    match res {
        Err(ArchiveError::UnsafeEntry { .. }) => {}
        other => panic!("expected UnsafeEntry, got {other:?}"),
    }
}
