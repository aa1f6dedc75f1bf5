//! The stored forms of the chunked archive mode.
//!
//! A **pack** is `WSDPACK1` followed by zstd frames, one per chunk; it is named by the BLAKE3 hash
//! of its bytes, so writing it twice writes the same object. A **manifest** is `WSDMANI1`
//! followed by one zstd frame (with its content checksum) of the protobuf message [`Manifest`]:
//! every entry of the tree as a tar entry holds it, each file's chunks as indices into the chunk
//! table, and where each chunk lives (pack, offset, stored and plain length). A manifest is the
//! commit point of a backup: it is written after every pack it names.
//!
//! Manifests come back from storage, so they are untrusted: [`decode_manifest`] checks every
//! index, length and name before anything uses them; entry paths are checked by the extractor.

use std::io::Read;

use prost::Message;

pub const PACK_MAGIC: &[u8; 8] = b"WSDPACK1";
pub const MANIFEST_MAGIC: &[u8; 8] = b"WSDMANI1";
pub const MANIFEST_VERSION: u32 = 1;

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

pub fn is_manifest(bytes: &[u8]) -> bool {
    bytes.starts_with(MANIFEST_MAGIC)
}

/// Decodes and checks a manifest read from storage.
pub fn decode_manifest(bytes: &[u8]) -> Result<Manifest, FormatError> {
    let body = bytes
        .strip_prefix(MANIFEST_MAGIC.as_slice())
        .ok_or(FormatError::NotAManifest)?;
    let damaged = |what: &dyn std::fmt::Display| FormatError::Damaged(what.to_string());
    let decoder = zstd::stream::read::Decoder::new(body).map_err(|e| damaged(&e))?;
    let mut plain = Vec::new();
    decoder
        .take(MANIFEST_MAX + 1)
        .read_to_end(&mut plain)
        .map_err(|e| damaged(&e))?;
    if plain.len() as u64 > MANIFEST_MAX {
        return Err(damaged(&"larger than any manifest this daemon writes"));
    }
    let manifest = Manifest::decode(plain.as_slice()).map_err(|e| damaged(&e))?;
    check(&manifest)?;
    Ok(manifest)
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
