//! What can go wrong opening or writing a storage directory

use std::fmt;
use std::io;
use std::path::PathBuf;

use shale_core::raft::{Index, RecoveryError};

/// An error from [`super::Storage`]; every variant names the file (and, for corruption, the
/// byte offset) it is about
#[derive(Debug)]
pub enum StorageError {
    /// An operating-system call failed
    Io {
        /// The file or directory involved
        path: PathBuf,
        /// What was being done
        op: &'static str,
        /// The underlying error
        source: io::Error,
    },
    /// Another process (or another `Storage` in this process) holds the directory's lock
    Locked {
        /// The directory
        dir: PathBuf,
    },
    /// A file holds bytes that cannot be what this storage wrote; nothing was changed
    Corrupt {
        /// The file
        path: PathBuf,
        /// Byte offset of the first bad byte (or of the record holding it)
        offset: u64,
        /// What is wrong
        reason: String,
    },
    /// The log segments do not cover a contiguous range of indexes: a segment is missing
    MissingSegment {
        /// The segment after the hole (or the first segment, if the hole is before it)
        path: PathBuf,
        /// The first index the missing data should have held
        expected_first: Index,
        /// The first index found instead
        found_first: Index,
    },
    /// The recovered state is not one Raft can start from
    Inconsistent {
        /// The storage directory
        dir: PathBuf,
        /// What [`shale_core::raft::Raft::recover`] found
        source: RecoveryError,
    },
    /// A write asked for something the contract does not allow
    InvalidWrite {
        /// The storage directory
        dir: PathBuf,
        /// What is wrong
        reason: String,
    },
    /// The current snapshot is not the one asked for (or there is none)
    NoSnapshot {
        /// The storage directory
        dir: PathBuf,
        /// The snapshot index asked for
        index: Index,
    },
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| StorageError::Io { path, op, source }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        StorageError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io { path, op, source } => {
                write!(f, "{op} {}: {source}", path.display())
            }
            StorageError::Locked { dir } => write!(
                f,
                "storage directory {} is locked by another process or instance",
                dir.display()
            ),
            StorageError::Corrupt {
                path,
                offset,
                reason,
            } => write!(
                f,
                "corrupt file {} at byte offset {offset}: {reason}",
                path.display()
            ),
            StorageError::MissingSegment {
                path,
                expected_first,
                found_first,
            } => write!(
                f,
                "log segment missing before {}: expected entries from index {expected_first}, \
                 found index {found_first}",
                path.display()
            ),
            StorageError::Inconsistent { dir, source } => {
                write!(f, "inconsistent state in {}: {source}", dir.display())
            }
            StorageError::InvalidWrite { dir, reason } => {
                write!(f, "invalid write to {}: {reason}", dir.display())
            }
            StorageError::NoSnapshot { dir, index } => write!(
                f,
                "no snapshot ending at index {index} in {}",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
