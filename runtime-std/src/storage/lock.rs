//! The directory lock: one `Storage` per directory at a time

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use super::error::StorageError;

/// The lock file's name in the storage directory
pub(crate) const FILE: &str = "LOCK";

/// An exclusive lock on a storage directory, held until dropped
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock, failing at once if anyone holds it
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock, StorageError> {
        let path = dir.join(FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(StorageError::io(&path, "open lock file"))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(StorageError::Locked {
                dir: dir.to_path_buf(),
            }),
            Err(TryLockError::Error(e)) => Err(StorageError::io(&path, "lock")(e)),
        }
    }
}
