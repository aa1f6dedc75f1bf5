//! The stored forms of the chunked archive mode.
//!
//! A **pack** is `WSDPACK1` followed by zstd frames, one per chunk; it is named by the BLAKE3 hash
//! of its bytes, so writing it twice writes the same object. A **manifest** is `WSDMANI1`
//! followed by one zstd frame (with its content checksum) of the protobuf message [`Manifest`]:
//! every entry of the tree as a tar entry holds it, each file's chunks as indices into the chunk
//! table, and where each chunk lives (pack, offset, stored and plain length). A manifest is the
//! commit point of a backup: it is written after every pack it names.
//!
//! A backup may instead be stored as a **delta manifest** against a full one of the same workspace
//! (its base): `WSDMDLT1`, the base's key (u16 little-endian length, then the key) and the BLAKE3
//! of the base's stored bytes, in the clear so that pruning learns which bases to keep from the
//! first bytes, then one zstd frame of [`Delta`]: the packs and chunks the base does not have
//! (numbered after the base's) and the entries as runs copied from the base or entries of their
//! own. An incremental backup then stores a manifest the size of what changed, not of the tree.
//!
//! Manifests come back from storage, so they are untrusted: [`decode_manifest`] checks every
//! index, length and name before anything uses them, and [`resolve_delta`] the same of the
//! manifest a delta makes; entry paths are checked by the extractor.

use std::collections::HashMap;
use std::io::Read;

use prost::Message;

pub const PACK_MAGIC: &[u8; 8] = b"WSDPACK1";
pub const MANIFEST_MAGIC: &[u8; 8] = b"WSDMANI1";
pub const MANIFEST_VERSION: u32 = 1;
pub const DELTA_MAGIC: &[u8; 8] = b"WSDMDLT1";
/// The longest base key a delta names.
const BASE_KEY_MAX: usize = 1024;
/// Bytes of a stored delta that hold its header, at most.
pub const DELTA_HEADER_MAX: usize = DELTA_MAGIC.len() + 2 + BASE_KEY_MAX + 32;

/// Content-defined chunk sizes (FastCDC 2020): minimum, average, maximum.
pub const CHUNK_MIN: u32 = 256 * 1024;
pub const CHUNK_AVG: u32 = 1024 * 1024;
pub const CHUNK_MAX: u32 = 4 * 1024 * 1024;

/// The largest stored (compressed) chunk a manifest may name: zstd's bound for the largest chunk.
const STORED_MAX: u32 = CHUNK_MAX + CHUNK_MAX / 64 + 1024;
/// A manifest larger than this after decompression is refused (about 10 million entries).
const MANIFEST_MAX: u64 = 4 << 30;

pub const KIND_DIR: i32 = 1;
pub const KIND_FILE: i32 = 2;
pub const KIND_SYMLINK: i32 = 3;
pub const KIND_HARD_LINK: i32 = 4;

pub type ChunkId = [u8; 32];

#[derive(Clone, PartialEq, Message)]
pub struct Manifest {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    /// The workspace (meta id) whose content this is.
    #[prost(string, tag = "2")]
    pub workspace: String,
    #[prost(uint64, tag = "3")]
    pub created_unix_nanos: u64,
    /// Names of the packs the chunk table points into.
    #[prost(string, repeated, tag = "4")]
    pub packs: Vec<String>,
    #[prost(message, repeated, tag = "5")]
    pub chunks: Vec<ChunkLoc>,
    #[prost(message, repeated, tag = "6")]
    pub entries: Vec<Entry>,
    /// Sum of the sizes of regular files.
    #[prost(uint64, tag = "7")]
    pub content_bytes: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct ChunkLoc {
    /// BLAKE3 of the plain bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    /// Index into [`Manifest::packs`].
    #[prost(uint32, tag = "2")]
    pub pack: u32,
    #[prost(uint64, tag = "3")]
    pub offset: u64,
    #[prost(uint32, tag = "4")]
    pub stored_len: u32,
    #[prost(uint32, tag = "5")]
    pub plain_len: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct Entry {
    /// Relative to the content folder, `/`-separated, as in a tar stream.
    #[prost(bytes = "vec", tag = "1")]
    pub path: Vec<u8>,
    #[prost(int32, tag = "2")]
    pub kind: i32,
    /// Permission bits (`0o7777`).
    #[prost(uint32, tag = "3")]
    pub mode: u32,
    /// Owner ids inside the workspace (the id maps applied).
    #[prost(uint32, tag = "4")]
    pub uid: u32,
    #[prost(uint32, tag = "5")]
    pub gid: u32,
    #[prost(int64, tag = "6")]
    pub mtime_secs: i64,
    #[prost(uint32, tag = "7")]
    pub mtime_nanos: u32,
    /// Size of a regular file: the sum of its chunks' plain lengths.
    #[prost(uint64, tag = "8")]
    pub size: u64,
    #[prost(message, repeated, tag = "9")]
    pub xattrs: Vec<Xattr>,
    /// Symlink target, or the path of the first entry of a hard-linked file.
    #[prost(bytes = "vec", tag = "10")]
    pub link: Vec<u8>,
    /// The file's chunks in order, as indices into [`Manifest::chunks`].
    #[prost(uint32, repeated, tag = "11")]
    pub chunks: Vec<u32>,
    /// What the next backup compares to skip reading an unchanged file (host facts, meaningful
    /// only on the node that wrote the manifest).
    #[prost(int64, tag = "12")]
    pub ctime_secs: i64,
    #[prost(uint32, tag = "13")]
    pub ctime_nanos: u32,
    #[prost(uint64, tag = "14")]
    pub inode: u64,
    #[prost(uint64, tag = "15")]
    pub device: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Xattr {
    #[prost(bytes = "vec", tag = "1")]
    pub name: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// A backup's manifest as changes to a full manifest of the same workspace (see the module's
/// documentation); [`resolve_delta`] makes the manifest it stands for.
#[derive(Clone, PartialEq, Message)]
pub struct Delta {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(string, tag = "2")]
    pub workspace: String,
    #[prost(uint64, tag = "3")]
    pub created_unix_nanos: u64,
    /// Packs after the base's: a chunk's pack index counts the base's packs first.
    #[prost(string, repeated, tag = "4")]
    pub packs: Vec<String>,
    /// Chunks after the base's: an entry's chunk index counts the base's chunks first.
    #[prost(message, repeated, tag = "5")]
    pub chunks: Vec<ChunkLoc>,
    /// The entries, in order.
    #[prost(message, repeated, tag = "6")]
    pub ops: Vec<DeltaOp>,
    #[prost(uint64, tag = "7")]
    pub content_bytes: u64,
}

/// A run of `copy_len` entries of the base from `copy_from`, or one entry of its own.
#[derive(Clone, PartialEq, Message)]
pub struct DeltaOp {
    #[prost(uint32, tag = "1")]
    pub copy_from: u32,
    #[prost(uint32, tag = "2")]
    pub copy_len: u32,
    #[prost(message, optional, tag = "3")]
    pub entry: Option<Entry>,
}

/// The clear-text head of a stored delta: which full manifest it builds on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaHeader {
    /// Key of the base manifest, in the delta's bucket.
    pub base_key: String,
    /// BLAKE3 of the base's stored bytes: a base replaced by other bytes is not this one.
    pub base_hash: [u8; 32],
}

/// A manifest as stored: complete, or a delta still to be resolved against its base.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    Full(Manifest),
    Delta(DeltaHeader, Delta),
}

/// Why a stored manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a chunked manifest")]
    NotAManifest,
    #[error("manifest is damaged: {0}")]
    Damaged(String),
    #[error("manifest version {0} is not supported by this daemon")]
    Version(u32),
}

pub fn encode_manifest(manifest: &Manifest) -> std::io::Result<Vec<u8>> {
    let plain = manifest.encode_to_vec();
    let mut out = Vec::with_capacity(plain.len() / 3 + 64);
    out.extend_from_slice(MANIFEST_MAGIC);
    let mut enc = zstd::stream::write::Encoder::new(out, 3)?;
    enc.include_checksum(true)?;
    std::io::Write::write_all(&mut enc, &plain)?;
    enc.finish()
}

pub fn encode_delta(header: &DeltaHeader, delta: &Delta) -> std::io::Result<Vec<u8>> {
    let key = header.base_key.as_bytes();
    let key_len = u16::try_from(key.len())
        .ok()
        .filter(|&n| usize::from(n) <= BASE_KEY_MAX)
        .ok_or_else(|| std::io::Error::other("the base manifest's key is too long"))?;
    let plain = delta.encode_to_vec();
    let mut out = Vec::with_capacity(plain.len() / 3 + DELTA_HEADER_MAX);
    out.extend_from_slice(DELTA_MAGIC);
    out.extend_from_slice(&key_len.to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&header.base_hash);
    let mut enc = zstd::stream::write::Encoder::new(out, 3)?;
    enc.include_checksum(true)?;
    std::io::Write::write_all(&mut enc, &plain)?;
    enc.finish()
}

/// Whether `bytes` begin like a manifest of either kind.
pub fn is_manifest(bytes: &[u8]) -> bool {
    bytes.starts_with(MANIFEST_MAGIC) || bytes.starts_with(DELTA_MAGIC)
}

/// Decodes and checks a full manifest read from storage (a delta is refused: see
/// [`decode_stored`]).
pub fn decode_manifest(bytes: &[u8]) -> Result<Manifest, FormatError> {
    let body = bytes
        .strip_prefix(MANIFEST_MAGIC.as_slice())
        .ok_or(FormatError::NotAManifest)?;
    let manifest = Manifest::decode(inflate(body)?.as_slice()).map_err(damaged)?;
    check(&manifest)?;
    Ok(manifest)
}

/// Decodes a manifest of either kind read from storage (a delta is checked when resolved).
pub fn decode_stored(bytes: &[u8]) -> Result<Stored, FormatError> {
    let Some((header, body)) = split_delta(bytes)? else {
        return decode_manifest(bytes).map(Stored::Full);
    };
    let delta = Delta::decode(inflate(body)?.as_slice()).map_err(damaged)?;
    Ok(Stored::Delta(header, delta))
}

/// The header of a stored delta (its first [`DELTA_HEADER_MAX`] bytes are enough); `None` for a
/// full manifest.
pub fn delta_header(bytes: &[u8]) -> Result<Option<DeltaHeader>, FormatError> {
    Ok(split_delta(bytes)?.map(|(header, _)| header))
}

fn split_delta(bytes: &[u8]) -> Result<Option<(DeltaHeader, &[u8])>, FormatError> {
    let Some(rest) = bytes.strip_prefix(DELTA_MAGIC.as_slice()) else {
        return if bytes.starts_with(MANIFEST_MAGIC) {
            Ok(None)
        } else {
            Err(FormatError::NotAManifest)
        };
    };
    let short = || FormatError::Damaged("the delta's header is cut short".into());
    let (len, rest) = rest.split_first_chunk::<2>().ok_or_else(short)?;
    let len = usize::from(u16::from_le_bytes(*len));
    if len == 0 || len > BASE_KEY_MAX {
        return Err(FormatError::Damaged(
            "the delta names no usable base".into(),
        ));
    }
    let (key, rest) = rest.split_at_checked(len).ok_or_else(short)?;
    let (hash, body) = rest.split_first_chunk::<32>().ok_or_else(short)?;
    let base_key = std::str::from_utf8(key)
        .map_err(|_| FormatError::Damaged("the delta's base key is not text".into()))?;
    Ok(Some((
        DeltaHeader {
            base_key: base_key.to_string(),
            base_hash: *hash,
        },
        body,
    )))
}

fn damaged(what: impl std::fmt::Display) -> FormatError {
    FormatError::Damaged(what.to_string())
}

/// The plain bytes of a manifest's zstd frame, refusing more than any manifest holds.
fn inflate(body: &[u8]) -> Result<Vec<u8>, FormatError> {
    let decoder = zstd::stream::read::Decoder::new(body).map_err(damaged)?;
    let mut plain = Vec::new();
    decoder
        .take(MANIFEST_MAX + 1)
        .read_to_end(&mut plain)
        .map_err(damaged)?;
    if plain.len() as u64 > MANIFEST_MAX {
        return Err(damaged("larger than any manifest this daemon writes"));
    }
    Ok(plain)
}

/// The delta that makes `new` from `base` (two full manifests of one workspace): the chunks and
/// packs `new` names that `base` does not, the entries equal to the base's entry at the same
/// path as copied runs, the others as they are.
pub fn make_delta(base: &Manifest, new: &Manifest) -> Delta {
    let base_packs: HashMap<&str, u32> = numbered(base.packs.iter().map(String::as_str));
    let base_chunks: HashMap<&[u8], u32> = numbered(base.chunks.iter().map(|c| c.id.as_slice()));
    let base_paths: HashMap<&[u8], u32> = numbered(base.entries.iter().map(|e| e.path.as_slice()));
    let mut delta = Delta {
        version: MANIFEST_VERSION,
        workspace: new.workspace.clone(),
        created_unix_nanos: new.created_unix_nanos,
        content_bytes: new.content_bytes,
        ..Default::default()
    };
    let mut new_packs: HashMap<&str, u32> = HashMap::new();
    let chunk_map: Vec<u32> = new
        .chunks
        .iter()
        .map(|c| {
            if let Some(&i) = base_chunks.get(c.id.as_slice()) {
                return i;
            }
            let name = new.packs[c.pack as usize].as_str();
            let pack = match base_packs.get(name) {
                Some(&p) => p,
                None => *new_packs.entry(name).or_insert_with(|| {
                    delta.packs.push(name.to_string());
                    count(&base.packs) + count(&delta.packs) - 1
                }),
            };
            delta.chunks.push(ChunkLoc { pack, ..c.clone() });
            count(&base.chunks) + count(&delta.chunks) - 1
        })
        .collect();
    for entry in &new.entries {
        let mut entry = entry.clone();
        for c in &mut entry.chunks {
            *c = chunk_map[*c as usize];
        }
        let copied = base_paths
            .get(entry.path.as_slice())
            .filter(|&&j| base.entries[j as usize] == entry);
        match (copied, delta.ops.last_mut()) {
            (Some(&j), Some(run)) if run.copy_len > 0 && run.copy_from + run.copy_len == j => {
                run.copy_len += 1;
            }
            (Some(&j), _) => delta.ops.push(DeltaOp {
                copy_from: j,
                copy_len: 1,
                entry: None,
            }),
            (None, _) => delta.ops.push(DeltaOp {
                entry: Some(entry),
                ..Default::default()
            }),
        }
    }
    delta
}

/// Whether storing `delta` instead of the full `new` is worth it: the delta holds at most a
/// quarter of the entries and chunks the full manifest does (past that a full manifest is
/// written, and the next deltas build on it).
pub fn delta_pays_off(delta: &Delta, new: &Manifest) -> bool {
    let own = delta.ops.iter().filter(|op| op.entry.is_some()).count() + delta.chunks.len();
    own * 4 <= new.entries.len() + new.chunks.len()
}

/// The manifest `delta` stands for, built on `base` (a checked full manifest), checked as any
/// manifest is.
pub fn resolve_delta(base: &Manifest, delta: Delta) -> Result<Manifest, FormatError> {
    if delta.version != MANIFEST_VERSION {
        return Err(FormatError::Version(delta.version));
    }
    let mut entries = Vec::with_capacity(delta.ops.len());
    let mut copied: usize = 0;
    for op in delta.ops {
        match (op.entry, op.copy_len) {
            (Some(entry), 0) => entries.push(entry),
            (None, len) if len > 0 => {
                let from = op.copy_from as usize;
                let run = from
                    .checked_add(len as usize)
                    .and_then(|end| base.entries.get(from..end))
                    .ok_or_else(|| damaged("the delta copies entries its base does not have"))?;
                // Each entry of the base at most once in total: a delta cannot blow up.
                copied += run.len();
                if copied > base.entries.len() {
                    return Err(damaged("the delta copies more entries than its base has"));
                }
                entries.extend_from_slice(run);
            }
            _ => {
                return Err(damaged(
                    "the delta has an operation that is neither a copy nor an entry",
                ))
            }
        }
    }
    let mut packs = base.packs.clone();
    packs.extend(delta.packs);
    let mut chunks = base.chunks.clone();
    chunks.extend(delta.chunks);
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        workspace: delta.workspace,
        created_unix_nanos: delta.created_unix_nanos,
        packs,
        chunks,
        entries,
        content_bytes: delta.content_bytes,
    };
    check(&manifest)?;
    Ok(manifest)
}

fn numbered<'a, K: Eq + std::hash::Hash + ?Sized + 'a>(
    keys: impl Iterator<Item = &'a K>,
) -> HashMap<&'a K, u32> {
    let mut map = HashMap::new();
    for (i, key) in keys.enumerate() {
        map.entry(key)
            .or_insert(u32::try_from(i).unwrap_or(u32::MAX));
    }
    map
}

fn count<T>(items: &[T]) -> u32 {
    u32::try_from(items.len()).unwrap_or(u32::MAX)
}

/// Checks the references inside a manifest (not the entry paths: the extractor does that).
fn check(m: &Manifest) -> Result<(), FormatError> {
    if m.version != MANIFEST_VERSION {
        return Err(FormatError::Version(m.version));
    }
    let damaged = |what: String| Err(FormatError::Damaged(what));
    if let Some(bad) = m.packs.iter().find(|p| !is_pack_name(p)) {
        return damaged(format!("invalid pack name {bad:?}"));
    }
    for (i, c) in m.chunks.iter().enumerate() {
        if c.id.len() != 32 {
            return damaged(format!("chunk {i} has an id of {} bytes", c.id.len()));
        }
        if c.pack as usize >= m.packs.len() {
            return damaged(format!(
                "chunk {i} names pack {} of {}",
                c.pack,
                m.packs.len()
            ));
        }
        if c.plain_len > CHUNK_MAX || c.stored_len > STORED_MAX || c.stored_len == 0 {
            return damaged(format!("chunk {i} has impossible lengths"));
        }
        if c.offset < PACK_MAGIC.len() as u64 {
            return damaged(format!("chunk {i} overlaps the pack header"));
        }
    }
    let mut content_bytes: u64 = 0;
    for e in &m.entries {
        let name = || String::from_utf8_lossy(&e.path).into_owned();
        match e.kind {
            KIND_DIR | KIND_SYMLINK | KIND_HARD_LINK => {
                if !e.chunks.is_empty() {
                    return damaged(format!("entry {:?} is not a file but has data", name()));
                }
            }
            KIND_FILE => {
                let mut size: u64 = 0;
                for &c in &e.chunks {
                    let Some(chunk) = m.chunks.get(c as usize) else {
                        return damaged(format!("entry {:?} names a missing chunk", name()));
                    };
                    size += u64::from(chunk.plain_len);
                }
                if size != e.size {
                    return damaged(format!(
                        "entry {:?}: chunks do not add up to its size",
                        name()
                    ));
                }
                content_bytes = content_bytes.saturating_add(size);
            }
            other => return damaged(format!("entry {:?} has unknown kind {other}", name())),
        }
    }
    if content_bytes != m.content_bytes {
        return damaged("the file sizes do not add up to the recorded total".into());
    }
    Ok(())
}

/// A pack name: 64 lowercase hex digits (the BLAKE3 of the pack).
pub fn is_pack_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub fn chunk_id(plain: &[u8]) -> ChunkId {
    *blake3::hash(plain).as_bytes()
}
