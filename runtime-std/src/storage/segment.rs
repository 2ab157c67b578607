//! Write-ahead log segment files: `wal-<first index, 20 digits>.log`, each a run of records
//! (see [`super::record`]) holding consecutive entries from its first index

use std::path::{Path, PathBuf};

use shale_core::raft::{Entry, Index};

use super::disk::Disk;
use super::error::StorageError;
use super::record;

const PREFIX: &str = "wal-";
const SUFFIX: &str = ".log";

/// The file name of the segment starting at `first`
pub(crate) fn file_name(first: Index) -> String {
    format!("{PREFIX}{first:020}{SUFFIX}")
}

fn parse_name(name: &str) -> Option<Index> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One segment as the storage tracks it
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Index of its first entry (from its name)
    pub(crate) first: Index,
    /// Its file
    pub(crate) path: PathBuf,
    /// Byte offset of each entry's record
    pub(crate) offsets: Vec<u64>,
    /// Bytes of good records
    pub(crate) len: u64,
}

impl Segment {
    /// A new, empty segment starting at `first`
    pub(crate) fn new(dir: &Path, first: Index) -> Segment {
        Segment {
            first,
            path: dir.join(file_name(first)),
            offsets: Vec::new(),
            len: 0,
        }
    }

    /// Index of its last entry (`first - 1` when empty)
    pub(crate) fn last(&self) -> Index {
        self.first + self.offsets.len() as Index - 1
    }
}

/// A segment read back from disk
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The segment, covering its good records
    pub(crate) segment: Segment,
    /// Its entries
    pub(crate) entries: Vec<Entry>,
    /// Set when the file has bytes past the good records: where they start and why they are
    /// bad, and whether they look like an interrupted append
    pub(crate) stop: Option<record::Stop>,
}

/// The segments in `dir`, sorted by first index
pub(crate) fn list(disk: &dyn Disk, dir: &Path) -> Result<Vec<(Index, PathBuf)>, StorageError> {
    let mut found = Vec::new();
    for name in disk.list(dir).map_err(StorageError::io(dir, "list"))? {
        if let Some(first) = parse_name(&name) {
            found.push((first, dir.join(name)));
        }
    }
    found.sort_unstable_by_key(|(first, _)| *first);
    Ok(found)
}

/// Reads one segment; entries must be consecutive from the index in its name
pub(crate) fn load(disk: &dyn Disk, first: Index, path: PathBuf) -> Result<Loaded, StorageError> {
    let buf = disk.read(&path).map_err(StorageError::io(&path, "read"))?;
    let scan = record::scan(&buf);
    for (i, (entry, offset)) in scan.entries.iter().zip(&scan.offsets).enumerate() {
        let expected = first + i as Index;
        if entry.index != expected {
            return Err(StorageError::corrupt(
                &path,
                *offset,
                format!("entry has index {}, expected {expected}", entry.index),
            ));
        }
    }
    Ok(Loaded {
        segment: Segment {
            first,
            path,
            offsets: scan.offsets,
            len: scan.end,
        },
        entries: scan.entries,
        stop: scan.stop,
    })
}
