//! Streaming workspace archives: a tar stream (GNU headers with PAX extended
//! records for nanosecond mtimes and xattrs), optionally zstd-compressed.
//!
//! All functions are blocking and meant to run on a dedicated thread.

mod create;
mod extract;
mod idmap;
#[cfg(test)]
pub(crate) mod tests;
mod walk;

pub use create::write_archive;
pub(crate) use create::{EntryWriter, Head};
pub use extract::extract_archive;
pub(crate) use extract::{Body, EntryMeta, TreeRestore};
pub use idmap::{IdMap, IdMapEntry};
pub(crate) use walk::{file_kind, is_vanished, walk_tree};

/// The uid/gid used for ids that cannot be mapped ("nobody").
pub const NOBODY_ID: u32 = 65534;

/// Compression of the archive stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    Zstd,
    None,
}

/// Progress of an archive operation, bumped from its threads: file bytes and files done, and the
/// totals when they are known (0: unknown).
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes: std::sync::atomic::AtomicU64,
    pub files: std::sync::atomic::AtomicU64,
    pub bytes_total: std::sync::atomic::AtomicU64,
    pub files_total: std::sync::atomic::AtomicU64,
}

impl Counters {
    pub fn add_bytes(&self, n: u64) {
        self.bytes
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn add_file(&self) {
        self.files
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn set_totals(&self, bytes: u64, files: u64) {
        self.bytes_total
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
        self.files_total
            .store(files, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Options for [`write_archive`] and [`extract_archive`].
#[derive(Clone, Debug)]
pub struct ArchiveOptions {
    /// Compression used when writing (extraction detects it from the stream).
    pub compression: Compression,
    /// zstd compression level (default 1).
    pub zstd_level: i32,
    /// zstd worker threads; 0 compresses on the calling thread.
    pub zstd_workers: u32,
    /// uid map (container <-> host); identity when empty.
    pub uid_map: IdMap,
    /// gid map (container <-> host); identity when empty.
    pub gid_map: IdMap,
    /// Where the operation reports its progress, if anywhere.
    pub progress: Option<std::sync::Arc<Counters>>,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        let workers = std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(1))
            .unwrap_or(1);
        ArchiveOptions {
            compression: Compression::Zstd,
            zstd_level: 1,
            zstd_workers: workers,
            uid_map: IdMap::identity(),
            gid_map: IdMap::identity(),
            progress: None,
        }
    }
}

/// Counters of one archive operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Entries written / extracted (files, folders, symlinks, hard links).
    pub entries: u64,
    /// Sum of the sizes of regular files.
    pub content_bytes: u64,
    /// Bytes written to / read from the (possibly compressed) stream.
    pub archive_bytes: u64,
    /// Entries skipped: sockets, FIFOs, devices, unknown entry types, files
    /// that vanished while walking.
    pub skipped: u64,
    /// Owner ids (uid or gid) that were outside the id map.
    pub unmapped_ids: u64,
}

/// Errors of archive operations. Messages never contain host paths, only
/// entry names relative to the archive root.
#[derive(thiserror::Error, Debug)]
pub enum ArchiveError {
    #[error("unknown archive format (neither zstd nor tar)")]
    UnknownFormat,
    #[error("archive is truncated: {0}")]
    Truncated(String),
    #[error("archive is malformed: {0}")]
    Malformed(String),
    #[error("unsafe archive entry {name:?}: {reason}")]
    UnsafeEntry { name: String, reason: &'static str },
    #[error("{op} failed{}: {source}", entry_suffix(.name))]
    Io {
        op: &'static str,
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid id map: {0}")]
    IdMap(String),
}

/// Whether an extended attribute goes into archives: all but `trusted.*` (root-only and
/// node-local), and names that cannot be a pax record key.
pub(crate) fn xattr_archived(name: &[u8]) -> bool {
    !name.starts_with(b"trusted.") && !name.contains(&b'=') && !name.contains(&b'\n')
}

/// Whether an extended attribute from an archive is restored: what is archived, except
/// `security.capability` (file capabilities from an archive would grant privileges). ACLs
/// (`system.posix_acl_*`) and `user.*`/`security.*` labels survive the round trip.
pub(crate) fn xattr_restored(name: &[u8]) -> bool {
    xattr_archived(name) && name != b"security.capability"
}

/// ` for "name"`, or nothing for failures of the archive stream itself (no entry name).
fn entry_suffix(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" for {name:?}")
    }
}

impl ArchiveError {
    /// True if the archive stream ended early.
    pub fn is_truncation(&self) -> bool {
        matches!(self, ArchiveError::Truncated(_))
    }

    pub(crate) fn io(op: &'static str, name: &[u8], source: std::io::Error) -> Self {
        ArchiveError::Io {
            op,
            name: String::from_utf8_lossy(name).into_owned(),
            source,
        }
    }

    pub(crate) fn nix(op: &'static str, name: &[u8], errno: nix::errno::Errno) -> Self {
        Self::io(op, name, std::io::Error::from(errno))
    }

    pub(crate) fn unsafe_entry(name: &[u8], reason: &'static str) -> Self {
        ArchiveError::UnsafeEntry {
            name: String::from_utf8_lossy(name).into_owned(),
            reason,
        }
    }
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Detects the stream format from its first bytes (at least 262 bytes are
/// needed to recognize a tar stream).
pub fn detect_compression(first_bytes: &[u8]) -> Option<Compression> {
    if first_bytes.starts_with(&ZSTD_MAGIC) {
        return Some(Compression::Zstd);
    }
    if first_bytes.get(257..262) == Some(b"ustar".as_slice()) {
        return Some(Compression::None);
    }
    None
}

/// Formats a PAX time value (`secs.nanos`, 9 fraction digits).
pub(crate) fn format_pax_time(secs: i64, nanos: u32) -> String {
    if secs < 0 && nanos > 0 {
        // secs + nanos/1e9 is negative: print -(|secs| - 1).(1e9 - nanos)
        let whole = -(secs + 1);
        format!("-{}.{:09}", whole, 1_000_000_000 - nanos)
    } else {
        format!("{}.{:09}", secs, nanos)
    }
}

/// Parses a PAX time value (`[-]secs[.fraction]`) into (secs, nanos) with
/// nanos in 0..1e9 (secs floored).
pub(crate) fn parse_pax_time(value: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(value).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let mut nanos: u32 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    if !neg {
        Some((whole, nanos))
    } else if nanos == 0 {
        Some((-whole, 0))
    } else {
        Some((-whole - 1, 1_000_000_000 - nanos))
    }
}
