//! The `snapshot` file, the `snapshot.partial` file a received snapshot is assembled in, and
//! the `snapshot.building` file a snapshot taken here is encoded into
//!
//! A snapshot taken here is encoded a piece at a time straight into `snapshot.building` by a
//! worker thread ([`build`]), and becomes current only when the group's WAL thread renames it
//! into place ([`super::Storage::adopt_snapshot`]), in order with the group's writes and only
//! if it is newer than the stored one. Loading ([`load`]) likewise streams the file into a
//! decoder and checks the data's checksum as it goes, holding one piece in memory.
//!
//! Format: `[data][postcard SnapshotMeta][trailer]`, the trailer being
//! `[data_len: u64 LE][meta_len: u32 LE][data_crc32: u32 LE][meta_crc32: u32 LE][magic: 8]`.
//! The file only ever appears under its final name through a rename after an fsync, so it
//! is whole or absent; the checksums catch later damage.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use shale_core::raft::{Index, SnapshotChunk, SnapshotMeta};
use shale_core::rsm::{RestoredState, SnapshotDecoder, SnapshotEncoder, SnapshotError};

use super::disk::{Disk, DiskFile};
use super::error::StorageError;
use super::{sync_dir, write_atomic};

/// The current snapshot's file name
pub(crate) const FILE: &str = "snapshot";
/// The file a snapshot being received is assembled in
pub(crate) const PARTIAL: &str = "snapshot.partial";
/// The file a snapshot taken here is encoded into
pub(crate) const BUILDING: &str = "snapshot.building";
/// Bytes a snapshot is encoded and read in per piece
pub const SNAPSHOT_PIECE_BYTES: usize = 1 << 20;

const MAGIC: &[u8; 8] = b"SHALESN1";
const TRAILER_BYTES: u64 = 8 + 4 + 4 + 4 + 8;
const READ_BUF: usize = 64 * 1024;

/// What is known of the current snapshot
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SnapInfo {
    /// What it covers
    pub(crate) meta: SnapshotMeta,
    /// Length of its data in bytes
    pub(crate) data_len: u64,
}

/// A snapshot being received
#[derive(Debug)]
pub(crate) struct Partial {
    meta: SnapshotMeta,
    file: Box<dyn DiskFile>,
    /// Bytes received so far
    len: u64,
}

/// Everything after the data: the encoded meta and the trailer
fn tail(meta: &SnapshotMeta, data_len: u64, data_crc: u32) -> Vec<u8> {
    let meta_bytes = postcard::to_allocvec(meta).unwrap_or_default();
    let mut out = meta_bytes.clone();
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(&(meta_bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&data_crc.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&meta_bytes).to_le_bytes());
    out.extend_from_slice(MAGIC);
    out
}

fn crc_of_prefix(file: &dyn DiskFile, path: &Path, len: u64) -> Result<u32, StorageError> {
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0; READ_BUF];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(READ_BUF as u64) as usize;
        file.read_at(at, &mut buf[..n])
            .map_err(StorageError::io(path, "read"))?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hasher.finalize())
}

/// Opens `path` if it exists
fn open_if_present(
    disk: &dyn Disk,
    path: &Path,
) -> Result<Option<Box<dyn DiskFile>>, StorageError> {
    match disk.open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io(path, "open")(e)),
    }
}

/// Reads and verifies the current snapshot (its whole data is checksummed)
pub(crate) fn read_info(disk: &dyn Disk, dir: &Path) -> Result<Option<SnapInfo>, StorageError> {
    let path = dir.join(FILE);
    let Some(file) = open_if_present(disk, &path)? else {
        return Ok(None);
    };
    let (meta, data_len, data_crc) = read_trailer(&*file, &path)?;
    if crc_of_prefix(&*file, &path, data_len)? != data_crc {
        return Err(StorageError::corrupt(&path, 0, "data checksum mismatch"));
    }
    Ok(Some(SnapInfo { meta, data_len }))
}

/// Stores a whole snapshot durably (temp file, fsync, rename, directory fsync)
pub(crate) fn save(
    disk: &dyn Disk,
    dir: &Path,
    meta: &SnapshotMeta,
    data: &[u8],
) -> Result<SnapInfo, StorageError> {
    let data_len = data.len() as u64;
    let tail = tail(meta, data_len, crc32fast::hash(data));
    write_atomic(disk, dir, FILE, &[data, &tail])?;
    Ok(SnapInfo {
        meta: meta.clone(),
        data_len,
    })
}

/// Reads up to `max` bytes of the current snapshot's data from `offset`
pub(crate) fn read_chunk(
    disk: &dyn Disk,
    dir: &Path,
    info: &SnapInfo,
    offset: u64,
    max: usize,
) -> Result<Vec<u8>, StorageError> {
    let path = dir.join(FILE);
    let n = info.data_len.saturating_sub(offset).min(max as u64) as usize;
    let mut buf = vec![0; n];
    disk.open(&path)
        .and_then(|file| file.read_at(offset, &mut buf))
        .map_err(StorageError::io(&path, "read"))?;
    Ok(buf)
}

/// Writes one received chunk into `snapshot.partial`; a chunk at offset 0 or of another
/// snapshot starts over. Returns the installed snapshot for an `install` chunk.
pub(crate) fn store_chunk(
    disk: &dyn Disk,
    dir: &Path,
    partial: &mut Option<Partial>,
    chunk: &SnapshotChunk,
) -> Result<Option<SnapInfo>, StorageError> {
    let path = dir.join(PARTIAL);
    let restart = chunk.offset == 0 || partial.as_ref().is_none_or(|p| p.meta != chunk.meta);
    if restart {
        let file = disk
            .create(&path)
            .map_err(StorageError::io(&path, "create"))?;
        *partial = Some(Partial {
            meta: chunk.meta.clone(),
            file,
            len: 0,
        });
    }
    let Some(p) = partial.as_mut() else {
        return Ok(None);
    };
    let data = chunk.data.as_bytes();
    p.file
        .write_at(chunk.offset, data)
        .map_err(StorageError::io(&path, "write"))?;
    p.len = p.len.max(chunk.offset + data.len() as u64);
    if !chunk.install {
        return Ok(None);
    }
    let Some(mut p) = partial.take() else {
        return Ok(None);
    };
    install(disk, dir, &path, &mut p).map(Some)
}

fn install(
    disk: &dyn Disk,
    dir: &Path,
    path: &PathBuf,
    p: &mut Partial,
) -> Result<SnapInfo, StorageError> {
    let data_len = p.len;
    let data_crc = crc_of_prefix(&*p.file, path, data_len)?;
    p.file
        .write_at(data_len, &tail(&p.meta, data_len, data_crc))
        .and_then(|_| p.file.sync())
        .map_err(StorageError::io(path, "write"))?;
    let target = dir.join(FILE);
    disk.rename(path, &target)
        .map_err(StorageError::io(&target, "rename"))?;
    sync_dir(disk, dir)?;
    Ok(SnapInfo {
        meta: p.meta.clone(),
        data_len,
    })
}

/// A snapshot encoded into [`BUILDING`] and synced, not yet current
#[derive(Debug)]
pub struct BuiltSnapshot {
    pub(crate) path: PathBuf,
    pub(crate) info: SnapInfo,
}

impl BuiltSnapshot {
    /// What it covers (its `size_bytes` is the data's length)
    pub fn meta(&self) -> &SnapshotMeta {
        &self.info.meta
    }
}

/// Encodes `encoder` into `dir/snapshot.building` a piece at a time, with `meta` (its size set
/// to the data's length) and checksums, and syncs it; it becomes current only through
/// [`super::Storage::adopt_snapshot`]. Runs on any thread: it touches no other file.
pub fn build(
    disk: &dyn Disk,
    dir: &Path,
    mut meta: SnapshotMeta,
    mut encoder: Box<dyn SnapshotEncoder>,
) -> Result<BuiltSnapshot, StorageError> {
    let path = dir.join(BUILDING);
    let mut file = disk
        .create(&path)
        .map_err(StorageError::io(&path, "create"))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut piece = Vec::with_capacity(SNAPSHOT_PIECE_BYTES + 4096);
    let mut data_len = 0u64;
    loop {
        piece.clear();
        let more = encoder.encode(&mut piece, SNAPSHOT_PIECE_BYTES);
        hasher.update(&piece);
        file.write_at(data_len, &piece)
            .map_err(StorageError::io(&path, "write"))?;
        data_len += piece.len() as u64;
        if !more {
            break;
        }
    }
    meta.size_bytes = data_len;
    file.write_at(data_len, &tail(&meta, data_len, hasher.finalize()))
        .and_then(|()| file.sync())
        .map_err(StorageError::io(&path, "write"))?;
    Ok(BuiltSnapshot {
        path,
        info: SnapInfo { meta, data_len },
    })
}

/// What [`load`] found
pub type Loaded = Option<(SnapshotMeta, Result<RestoredState, SnapshotError>)>;

/// Streams the current snapshot of `dir` into `decoder`, if it ends at `index` (any snapshot
/// for `None`), checking its checksums; `Ok(None)` when there is no such snapshot. The file
/// is opened once, so a newer snapshot renamed over it meanwhile does not disturb the read.
pub fn load(
    disk: &dyn Disk,
    dir: &Path,
    index: Option<Index>,
    mut decoder: Box<dyn SnapshotDecoder>,
) -> Result<Loaded, StorageError> {
    let path = dir.join(FILE);
    let Some(file) = open_if_present(disk, &path)? else {
        return Ok(None);
    };
    let (meta, data_len, data_crc) = read_trailer(&*file, &path)?;
    if index.is_some_and(|i| i != meta.last.index) {
        return Ok(None);
    }
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0; SNAPSHOT_PIECE_BYTES];
    let mut at = 0;
    let mut decoded = Ok(());
    while at < data_len {
        let n = (data_len - at).min(buf.len() as u64) as usize;
        file.read_at(at, &mut buf[..n])
            .map_err(StorageError::io(&path, "read"))?;
        hasher.update(&buf[..n]);
        if decoded.is_ok() {
            decoded = decoder.decode(&buf[..n]);
        }
        at += n as u64;
    }
    if hasher.finalize() != data_crc {
        return Err(StorageError::corrupt(&path, 0, "data checksum mismatch"));
    }
    let state = decoded.and_then(|()| decoder.finish());
    Ok(Some((meta, state)))
}

/// The meta, data length and data checksum in `file`'s trailer (the meta's own checksum
/// checked)
fn read_trailer(
    file: &dyn DiskFile,
    path: &Path,
) -> Result<(SnapshotMeta, u64, u32), StorageError> {
    let len = file.size().map_err(StorageError::io(path, "stat"))?;
    if len < TRAILER_BYTES {
        return Err(StorageError::corrupt(
            path,
            0,
            "file shorter than its trailer",
        ));
    }
    let at = len - TRAILER_BYTES;
    let mut t = [0u8; TRAILER_BYTES as usize];
    file.read_at(at, &mut t)
        .map_err(StorageError::io(path, "read"))?;
    let u32_at = |i: usize| u32::from_le_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]]);
    if &t[20..28] != MAGIC {
        return Err(StorageError::corrupt(path, at + 20, "bad trailer magic"));
    }
    let mut data_len_bytes = [0u8; 8];
    data_len_bytes.copy_from_slice(&t[0..8]);
    let data_len = u64::from_le_bytes(data_len_bytes);
    let meta_len = u64::from(u32_at(8));
    let (data_crc, meta_crc) = (u32_at(12), u32_at(16));
    if data_len.checked_add(meta_len) != Some(at) {
        return Err(StorageError::corrupt(
            path,
            at,
            format!("trailer announces {data_len} data and {meta_len} meta bytes, {at} present"),
        ));
    }
    let mut meta_bytes = vec![0u8; meta_len as usize];
    file.read_at(data_len, &mut meta_bytes)
        .map_err(StorageError::io(path, "read"))?;
    if crc32fast::hash(&meta_bytes) != meta_crc {
        return Err(StorageError::corrupt(
            path,
            data_len,
            "meta checksum mismatch",
        ));
    }
    let meta: SnapshotMeta = postcard::from_bytes(&meta_bytes)
        .map_err(|e| StorageError::corrupt(path, data_len, format!("meta does not decode: {e}")))?;
    Ok((meta, data_len, data_crc))
}
