//! The directory lock: one `Storage` per directory at a time

use std::fmt::Debug;
use std::path::Path;

use super::disk::Disk;
use super::error::StorageError;

/// The lock file's name in the storage directory
pub(crate) const FILE: &str = "LOCK";

/// An exclusive lock on a storage directory, held until dropped
#[derive(Debug)]
pub(crate) struct DirLock {
    _guard: Box<dyn Debug + Send + Sync>,
}

impl DirLock {
    /// Takes the lock, failing at once if anyone holds it
    pub(crate) fn acquire(disk: &dyn Disk, dir: &Path) -> Result<DirLock, StorageError> {
        let path = dir.join(FILE);
        match disk.try_lock(&path) {
            Ok(Some(guard)) => Ok(DirLock { _guard: guard }),
            Ok(None) => Err(StorageError::Locked {
                dir: dir.to_path_buf(),
            }),
            Err(e) => Err(StorageError::io(&path, "lock")(e)),
        }
    }
}
