//! The `hardstate` file: term and vote, replaced atomically
//!
//! Format: `[len: u32 LE][crc32: u32 LE][postcard HardState]`. It is written to
//! `hardstate.tmp`, fsync'd, renamed over `hardstate`, and the directory is fsync'd, so a
//! crash leaves the old value or the new one, never a mix.

use std::io::ErrorKind;
use std::path::Path;

use shale_core::raft::HardState;

use super::disk::Disk;
use super::error::StorageError;
use super::write_atomic;

/// The file's name in the storage directory
pub(crate) const FILE: &str = "hardstate";

/// Reads the stored hard state; the default if none was ever stored
pub(crate) fn read(disk: &dyn Disk, dir: &Path) -> Result<HardState, StorageError> {
    let path = dir.join(FILE);
    let buf = match disk.read(&path) {
        Ok(buf) => buf,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(HardState::default()),
        Err(e) => return Err(StorageError::io(&path, "read")(e)),
    };
    if buf.len() < 8 {
        return Err(StorageError::corrupt(
            &path,
            0,
            "file shorter than its header",
        ));
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let payload = &buf[8..];
    if payload.len() != len {
        return Err(StorageError::corrupt(
            &path,
            0,
            format!("length {len} announced, {} bytes present", payload.len()),
        ));
    }
    if crc32fast::hash(payload) != crc {
        return Err(StorageError::corrupt(&path, 8, "checksum mismatch"));
    }
    postcard::from_bytes(payload)
        .map_err(|e| StorageError::corrupt(&path, 8, format!("does not decode: {e}")))
}

/// Replaces the stored hard state durably
pub(crate) fn write(disk: &dyn Disk, dir: &Path, hs: &HardState) -> Result<(), StorageError> {
    let payload = postcard::to_allocvec(hs).unwrap_or_default();
    let mut buf = Vec::with_capacity(8 + payload.len());
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    write_atomic(disk, dir, FILE, &[&buf])
}
