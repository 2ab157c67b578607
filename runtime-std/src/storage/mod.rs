//! Durable file storage for one Raft group: hard state, write-ahead log segments, snapshots
//!
//! Directory layout:
//!
//! | file | what |
//! |---|---|
//! | `LOCK` | held with an exclusive `File::try_lock` while a [`Storage`] is open |
//! | `hardstate` | term and vote, replaced atomically |
//! | `snapshot` | the current snapshot: data, meta, checksums |
//! | `snapshot.partial` | a snapshot being received in chunks; discarded on open |
//! | `snapshot.building` | a snapshot taken here, being encoded; discarded on open |
//! | `wal-<first index>.log` | log segments of `[len][crc32][postcard Entry]` records |

mod disk;
mod error;
pub mod group_commit;
mod hard_state;
mod lock;
mod power_cut;
mod record;
mod segment;
mod snapshot;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use shale_core::raft::{Entry, HardState, Index, Raft, Recovered, SnapshotMeta, Write};

pub use disk::{Disk, DiskFile, StdDisk};
pub use error::StorageError;
pub use group_commit::{GroupCommit, GroupCommitConfig, GroupCommitError, GroupCommitStats};
pub use power_cut::{Cut, Fault, FaultOn, POWER_CUT_SECTOR_BYTES, PowerCutDisk};

use lock::DirLock;
use segment::Segment;
pub use snapshot::{
    BuiltSnapshot, Loaded, SNAPSHOT_PIECE_BYTES, build as build_snapshot, load as load_snapshot,
};
use snapshot::{Partial, SnapInfo};

/// Default for [`StorageConfig::max_segment_bytes`]: 64 MiB
pub const DEFAULT_MAX_SEGMENT_BYTES: u64 = 64 << 20;

/// Tuning of a [`Storage`]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageConfig {
    /// A segment that reached this size gets no more records: the next one starts a new
    /// segment file (a segment may exceed it by one record)
    pub max_segment_bytes: u64,
    /// Zeros written ahead of the last segment's end, in bytes (0: none). Appends then land in
    /// blocks the file already has, so their sync has no file size to commit (on ext4, no
    /// journal commit); the zeros are cut when the segment is sealed or the storage opened.
    pub preallocate_bytes: u64,
}

/// Default [`StorageConfig::preallocate_bytes`]: 1 MiB
pub const DEFAULT_PREALLOCATE_BYTES: u64 = 1 << 20;

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            max_segment_bytes: DEFAULT_MAX_SEGMENT_BYTES,
            preallocate_bytes: DEFAULT_PREALLOCATE_BYTES,
        }
    }
}

/// Syncs a directory, making creations, renames and deletions in it durable
pub(crate) fn sync_dir(disk: &dyn Disk, dir: &Path) -> Result<(), StorageError> {
    #[cfg(test)]
    tests::journal(format!("sync dir {}", dir.display()));
    disk.sync_dir(dir)
        .map_err(StorageError::io(dir, "sync directory"))
}

/// Syncs a log segment's data (and its size)
fn sync_file(file: &mut dyn DiskFile, path: &Path) -> Result<(), StorageError> {
    #[cfg(test)]
    tests::journal(format!("sync {}", path.display()));
    file.sync().map_err(StorageError::io(path, "sync"))
}

/// Creates `dir` and any missing parents, durably: each created directory's parent is
/// synced (and `dir`'s parent even when `dir` already existed), so a crash cannot lose the
/// directory after files in it were synced
pub fn create_dir_durably(disk: &dyn Disk, dir: &Path) -> Result<(), StorageError> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(path) = at {
        if path.as_os_str().is_empty() || disk.exists(path) {
            break;
        }
        missing.push(path);
        at = path.parent();
    }
    if missing.is_empty() {
        // It exists, but a crash of an earlier run between its creation and its parent's sync
        // may have left its name unsynced: sync the parent again (at open only, so cheap).
        return sync_dir(disk, &disk::parent_dir(dir));
    }
    disk.create_dir_all(dir)
        .map_err(StorageError::io(dir, "create directory"))?;
    for created in missing.iter().rev() {
        sync_dir(disk, &disk::parent_dir(created))?;
    }
    Ok(())
}

/// Replaces `dir/name` with `parts` concatenated: temp file, fsync, rename, directory fsync
pub(crate) fn write_atomic(
    disk: &dyn Disk,
    dir: &Path,
    name: &str,
    parts: &[&[u8]],
) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = disk
        .create(&tmp)
        .map_err(StorageError::io(&tmp, "create"))?;
    let mut at = 0;
    for part in parts {
        file.write_at(at, part)
            .map_err(StorageError::io(&tmp, "write"))?;
        at += part.len() as u64;
    }
    file.sync().map_err(StorageError::io(&tmp, "sync"))?;
    drop(file);
    let target = dir.join(name);
    disk.rename(&tmp, &target)
        .map_err(StorageError::io(&target, "rename"))?;
    sync_dir(disk, dir)
}

fn remove_if_present(disk: &dyn Disk, path: &Path) -> Result<bool, StorageError> {
    match disk.remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StorageError::io(path, "remove")(e)),
    }
}

/// One node's durable storage for one Raft group
///
/// After any error from a writing method, drop the `Storage` and [`open`](Self::open) the
/// directory again: the in-memory view may no longer match the files.
#[derive(Debug)]
pub struct Storage {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    config: StorageConfig,
    _lock: DirLock,
    hard_state: HardState,
    snapshot: Option<SnapInfo>,
    partial: Option<Partial>,
    /// Log segments, oldest first, none empty, indexes contiguous
    segments: Vec<Segment>,
    /// Open handle on the last segment
    current: Option<Box<dyn DiskFile>>,
    /// Length of the last segment's file: its records, then zeros written ahead
    current_file_len: u64,
    /// The last segment has writes not yet synced
    log_dirty: bool,
    /// Bytes of the last segment's records known synced (see [`record::encode_marker`])
    synced_len: u64,
    /// The next append starts a group commit: it begins with a sync marker
    marker_due: bool,
    /// Segments were created or deleted since the directory was last synced
    dir_dirty: bool,
}

impl Storage {
    /// Opens (creating it if needed) the storage in `dir` with the default configuration
    pub fn open(dir: impl AsRef<Path>) -> Result<(Storage, Recovered), StorageError> {
        Storage::open_with(dir, StorageConfig::default())
    }

    /// Opens the storage in `dir` of the real file system (see [`open_on`](Self::open_on))
    pub fn open_with(
        dir: impl AsRef<Path>,
        config: StorageConfig,
    ) -> Result<(Storage, Recovered), StorageError> {
        Storage::open_on(Arc::new(StdDisk), dir, config)
    }

    /// Opens the storage in `dir` of `disk`: locks it, then recovers hard state, snapshot and
    /// log
    ///
    /// A torn record at the end of the last segment is cut off. Any other damage, a missing
    /// segment or a state Raft cannot start from is an error, and then nothing in the
    /// directory has been changed.
    pub fn open_on(
        disk: Arc<dyn Disk>,
        dir: impl AsRef<Path>,
        config: StorageConfig,
    ) -> Result<(Storage, Recovered), StorageError> {
        let dir = dir.as_ref().to_path_buf();
        let d = &*disk;
        create_dir_durably(d, &dir)?;
        let lock = DirLock::acquire(d, &dir)?;
        let hard_state = hard_state::read(d, &dir)?;
        let snapshot = snapshot::read_info(d, &dir)?;
        let snap_index = snapshot.as_ref().map_or(0, |s| s.meta.last.index);

        let listing = segment::list(d, &dir)?;
        let count = listing.len();
        let mut loaded = Vec::with_capacity(count);
        for (i, (first, path)) in listing.into_iter().enumerate() {
            let l = segment::load(d, first, path)?;
            let is_last = i + 1 == count;
            if let Some(stop) = &l.stop
                && (!is_last || !stop.torn)
            {
                return Err(StorageError::corrupt(
                    &l.segment.path,
                    stop.offset,
                    stop.reason.clone(),
                ));
            }
            if l.entries.is_empty() && !is_last {
                return Err(StorageError::corrupt(
                    &l.segment.path,
                    0,
                    "empty log segment",
                ));
            }
            loaded.push(l);
        }

        // Segments the snapshot covers entirely are left over from a compaction (and an
        // empty last segment from an interrupted append): they are deleted below.
        let (mut stale, mut keep): (Vec<_>, Vec<_>) = loaded
            .into_iter()
            .partition(|l| l.entries.is_empty() || l.segment.last() <= snap_index);
        if let Some(k) = keep.first()
            && k.segment.first > snap_index + 1
        {
            return Err(StorageError::MissingSegment {
                path: k.segment.path.clone(),
                expected_first: snap_index + 1,
                found_first: k.segment.first,
            });
        }
        for w in keep.windows(2) {
            if w[1].segment.first != w[0].segment.last() + 1 {
                return Err(StorageError::MissingSegment {
                    path: w[1].segment.path.clone(),
                    expected_first: w[0].segment.last() + 1,
                    found_first: w[1].segment.first,
                });
            }
        }
        // A log disagreeing with the snapshot at its last index is what an install
        // interrupted before deleting the old log leaves: that log is discarded.
        if let Some(s) = &snapshot {
            let last = s.meta.last;
            let conflict = keep
                .iter()
                .flat_map(|l| &l.entries)
                .any(|e| e.index == last.index && e.term != last.term);
            if conflict {
                stale.append(&mut keep);
            }
        }
        let torn_tail = keep
            .last()
            .and_then(|l| l.stop.as_ref().map(|_| l.segment.clone()));
        let mut segments = Vec::with_capacity(keep.len());
        let mut entries: Vec<Entry> = Vec::new();
        for l in keep {
            segments.push(l.segment);
            entries.extend(l.entries.into_iter().filter(|e| e.index > snap_index));
        }
        let recovered = Recovered {
            hard_state,
            snapshot: snapshot.as_ref().map(|s| s.meta.clone()),
            entries,
        };
        Raft::recover(&recovered).map_err(|source| StorageError::Inconsistent {
            dir: dir.clone(),
            source,
        })?;

        // Everything checked out: now repair.
        if let Some(seg) = torn_tail {
            let mut file = d
                .open(&seg.path)
                .map_err(StorageError::io(&seg.path, "open"))?;
            file.set_len(seg.len)
                .and_then(|()| file.sync())
                .map_err(StorageError::io(&seg.path, "cut torn tail"))?;
        }
        for l in stale.iter().rev() {
            remove_if_present(d, &l.segment.path)?;
            sync_dir(d, &dir)?;
        }
        let mut removed = false;
        for name in [
            "hardstate.tmp",
            "snapshot.tmp",
            snapshot::PARTIAL,
            snapshot::BUILDING,
        ] {
            removed |= remove_if_present(d, &dir.join(name))?;
        }
        if removed {
            sync_dir(d, &dir)?;
        }
        let mut storage = Storage {
            disk,
            dir,
            config,
            _lock: lock,
            hard_state,
            snapshot,
            partial: None,
            segments,
            current: None,
            current_file_len: 0,
            log_dirty: false,
            synced_len: 0,
            marker_due: false,
            dir_dirty: false,
        };
        storage.open_current()?;
        Ok((storage, recovered))
    }

    /// The storage directory
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The disk the storage is on
    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.disk
    }

    /// The stored hard state
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// What the current snapshot covers, if there is one
    pub fn snapshot_meta(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref().map(|s| &s.meta)
    }

    /// Index range of the stored log entries (`first..=last`), `None` when there are none
    pub fn log_range(&self) -> Option<(Index, Index)> {
        let first = self.segments.first()?.first;
        Some((first, self.segments.last()?.last()))
    }

    /// Number of log segment files
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Persists one write durably, in the contract's order (see
    /// [`shale_core::raft::Write`]); when this returns `Ok`, report `write.id` as persisted
    pub fn write(&mut self, write: &Write) -> Result<(), StorageError> {
        self.write_batch(std::slice::from_ref(write))
    }

    /// Persists several writes, in order, with one log sync at the end (group commit); when
    /// this returns `Ok`, report the last write's id as persisted
    pub fn write_batch(&mut self, writes: &[Write]) -> Result<(), StorageError> {
        for write in writes {
            self.apply(write)?;
        }
        self.sync()
    }

    /// Stores a snapshot the application took, durably (temp file, fsync, rename, directory
    /// fsync); the log is left alone until a write compacts it
    pub fn save_snapshot(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        self.snapshot = Some(snapshot::save(&*self.disk, &self.dir, meta, data)?);
        Ok(())
    }

    /// Makes a snapshot encoded by [`build_snapshot`] current (rename, directory fsync), in
    /// order with this group's writes, unless the current snapshot is as new or newer: then
    /// the built file is removed and `false` returned
    pub fn adopt_snapshot(&mut self, built: BuiltSnapshot) -> Result<bool, StorageError> {
        let current = self.snapshot.as_ref().map_or(0, |s| s.meta.last.index);
        if built.info.meta.last.index <= current {
            remove_if_present(&*self.disk, &built.path)?;
            return Ok(false);
        }
        let target = self.dir.join(snapshot::FILE);
        self.disk
            .rename(&built.path, &target)
            .map_err(StorageError::io(&target, "rename"))?;
        sync_dir(&*self.disk, &self.dir)?;
        self.snapshot = Some(built.info);
        Ok(true)
    }

    /// Reads up to `max_bytes` of the current snapshot's data from `offset`; it must end at
    /// `index`
    pub fn read_snapshot_chunk(
        &self,
        index: Index,
        offset: u64,
        max_bytes: usize,
    ) -> Result<Vec<u8>, StorageError> {
        match &self.snapshot {
            Some(info) if info.meta.last.index == index => {
                snapshot::read_chunk(&*self.disk, &self.dir, info, offset, max_bytes)
            }
            _ => Err(StorageError::NoSnapshot {
                dir: self.dir.clone(),
                index,
            }),
        }
    }

    /// The current snapshot with all its data, if there is one
    pub fn read_snapshot(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
        let Some(info) = &self.snapshot else {
            return Ok(None);
        };
        let data = snapshot::read_chunk(&*self.disk, &self.dir, info, 0, info.data_len as usize)?;
        Ok(Some((info.meta.clone(), data)))
    }

    fn apply(&mut self, write: &Write) -> Result<(), StorageError> {
        if let Some(hs) = write.hard_state {
            // Earlier writes' entries become durable before this hard state can.
            self.sync()?;
            hard_state::write(&*self.disk, &self.dir, &hs)?;
            self.hard_state = hs;
        }
        for chunk in &write.snapshot_chunks {
            if chunk.install {
                self.sync()?;
            }
            if let Some(info) =
                snapshot::store_chunk(&*self.disk, &self.dir, &mut self.partial, chunk)?
            {
                self.snapshot = Some(info);
                self.delete_segments_from(0)?;
            }
        }
        if let Some(first) = write.entries.first() {
            self.truncate_from(first.index)?;
            self.append(&write.entries)?;
        }
        if let Some(through) = write.compact_through {
            self.compact_files(through)?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        if self.log_dirty {
            if let (Some(file), Some(seg)) = (&mut self.current, self.segments.last()) {
                sync_file(&mut **file, &seg.path)?;
                self.synced_len = seg.len;
                self.marker_due = true;
            }
            self.log_dirty = false;
        }
        if self.dir_dirty {
            sync_dir(&*self.disk, &self.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// Opens the last segment for appends; its records are synced first (after a crash
    /// they may be in the page cache only), so the next group commit's marker tells the truth
    fn open_current(&mut self) -> Result<(), StorageError> {
        if self.current.is_none()
            && let Some(seg) = self.segments.last()
        {
            let mut file = self
                .disk
                .open(&seg.path)
                .map_err(StorageError::io(&seg.path, "open"))?;
            self.current_file_len = file
                .size()
                .and_then(|len| file.sync().map(|()| len))
                .map_err(StorageError::io(&seg.path, "open"))?;
            self.current = Some(file);
            self.synced_len = seg.len;
            self.marker_due = true;
        }
        Ok(())
    }

    /// Deletes the segments from position `keep` on, newest first, syncing the directory
    /// after each so a crash leaves a contiguous prefix
    fn delete_segments_from(&mut self, keep: usize) -> Result<(), StorageError> {
        while self.segments.len() > keep {
            let Some(seg) = self.segments.pop() else {
                break;
            };
            self.current = None;
            self.log_dirty = false;
            remove_if_present(&*self.disk, &seg.path)?;
            sync_dir(&*self.disk, &self.dir)?;
        }
        Ok(())
    }

    /// Deletes every stored entry at or above `index`
    fn truncate_from(&mut self, index: Index) -> Result<(), StorageError> {
        if let Some(last) = self.segments.last()
            && index > last.last() + 1
        {
            return Err(StorageError::InvalidWrite {
                dir: self.dir.clone(),
                reason: format!(
                    "entries from index {index} would leave a gap after the stored log ending at {}",
                    last.last()
                ),
            });
        }
        let keep = self.segments.partition_point(|s| s.first < index);
        self.delete_segments_from(keep)?;
        self.open_current()?;
        let (Some(seg), Some(file)) = (self.segments.last_mut(), &mut self.current) else {
            return Ok(());
        };
        if index <= seg.last() {
            let len = seg.offsets[(index - seg.first) as usize];
            // Synced at once: new records written over the old ones' place must never reach
            // the disk while the old size (and so older records after them) survives a crash.
            #[cfg(test)]
            tests::journal(format!("set_len {}", seg.path.display()));
            file.set_len(len)
                .map_err(StorageError::io(&seg.path, "truncate"))?;
            sync_file(&mut **file, &seg.path)?;
            seg.offsets.truncate((index - seg.first) as usize);
            seg.len = len;
            self.current_file_len = len;
            self.synced_len = len;
            self.marker_due = true;
        }
        Ok(())
    }

    /// Appends `entries` (which follow the stored log) to the log, rolling segments
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let mut buf = Vec::new();
        for entry in entries {
            let full = self.segments.last().is_none_or(|s| {
                s.len + buf.len() as u64 >= self.config.max_segment_bytes && !s.offsets.is_empty()
            });
            if full {
                self.flush(&mut buf)?;
                // The full segment loses its zeros and is synced before the next exists, so
                // only the last segment can ever end in a torn record or zeros.
                self.seal()?;
                self.sync()?;
                self.roll(entry.index)?;
            }
            if self.marker_due {
                // A group commit after the segment's first proves the earlier ones synced.
                if self.synced_len > 0 {
                    record::encode_marker(self.synced_len, &mut buf);
                }
                self.marker_due = false;
            }
            if let Some(seg) = self.segments.last_mut() {
                seg.offsets.push(seg.len + buf.len() as u64);
            }
            record::encode(entry, &mut buf);
        }
        self.flush(&mut buf)
    }

    fn roll(&mut self, first: Index) -> Result<(), StorageError> {
        let seg = Segment::new(&self.dir, first);
        let file = self
            .disk
            .create(&seg.path)
            .map_err(StorageError::io(&seg.path, "create"))?;
        self.segments.push(seg);
        self.current = Some(file);
        self.current_file_len = 0;
        self.synced_len = 0;
        self.marker_due = false;
        self.dir_dirty = true;
        Ok(())
    }

    /// Cuts the zeros written ahead of the last segment's records
    fn seal(&mut self) -> Result<(), StorageError> {
        let (Some(seg), Some(file)) = (self.segments.last(), &mut self.current) else {
            return Ok(());
        };
        if self.current_file_len > seg.len {
            file.set_len(seg.len)
                .map_err(StorageError::io(&seg.path, "seal"))?;
            self.current_file_len = seg.len;
            self.log_dirty = true;
        }
        Ok(())
    }

    /// Writes `buf` at the end of the last segment
    fn flush(&mut self, buf: &mut Vec<u8>) -> Result<(), StorageError> {
        if buf.is_empty() {
            return Ok(());
        }
        let (Some(seg), Some(file)) = (self.segments.last_mut(), self.current.as_mut()) else {
            return Ok(());
        };
        #[cfg(test)]
        tests::journal(format!("write {}", seg.path.display()));
        file.write_at(seg.len, buf)
            .map_err(StorageError::io(&seg.path, "append"))?;
        seg.len += buf.len() as u64;
        buf.clear();
        self.log_dirty = true;
        // Past the zeros written ahead: write more, synced with these records.
        let ahead = self
            .config
            .preallocate_bytes
            .min(self.config.max_segment_bytes);
        if ahead > 0 && seg.len >= self.current_file_len {
            let zeros = vec![0u8; ahead as usize];
            file.write_at(seg.len, &zeros)
                .map_err(StorageError::io(&seg.path, "preallocate"))?;
            self.current_file_len = seg.len + ahead;
        } else {
            self.current_file_len = self.current_file_len.max(seg.len);
        }
        Ok(())
    }

    /// Deletes the segments whose entries are all at or below `through`
    fn compact_files(&mut self, through: Index) -> Result<(), StorageError> {
        let drop = self.segments.partition_point(|s| s.last() <= through);
        if drop == 0 {
            return Ok(());
        }
        if drop == self.segments.len() {
            self.current = None;
            self.log_dirty = false;
        }
        for seg in self.segments.drain(..drop) {
            remove_if_present(&*self.disk, &seg.path)?;
        }
        self.dir_dirty = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use shale_core::raft::{Entry, EntryKind, Write};

    use super::{Storage, StorageConfig};

    thread_local! {
        static JOURNAL: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    /// Notes a file-system call this thread made (tests read the order back)
    pub(super) fn journal(event: String) {
        JOURNAL.with(|j| j.borrow_mut().push(event));
    }

    fn take_journal() -> Vec<String> {
        JOURNAL.with(|j| core::mem::take(&mut *j.borrow_mut()))
    }

    fn entries(term: u64, indexes: core::ops::RangeInclusive<u64>) -> Vec<Entry> {
        indexes
            .map(|index| Entry {
                term,
                index,
                kind: EntryKind::Command,
                data: vec![index as u8; 20].into(),
            })
            .collect()
    }

    #[test]
    fn a_new_group_directory_is_made_durable_in_its_parent() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("node-1").join("group-7");
        take_journal();
        let _storage = Storage::open_with(&dir, StorageConfig::default()).expect("open");
        let events = take_journal();
        for parent in [root.path().to_path_buf(), root.path().join("node-1")] {
            let want = format!("sync dir {}", parent.display());
            assert!(events.contains(&want), "{want:?} missing from {events:#?}");
        }
    }

    /// A power cut could otherwise keep the old file size and the new records: new records
    /// followed by older, truncated ones
    #[test]
    fn a_truncation_is_synced_before_records_are_written_in_its_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut storage, _) =
            Storage::open_with(dir.path(), StorageConfig::default()).expect("open");
        let write = |id, entries| Write {
            id,
            hard_state: Some(shale_core::raft::HardState {
                term: 2,
                vote: None,
            }),
            entries,
            ..Write::default()
        };
        storage.write(&write(1, entries(1, 1..=5))).expect("write");
        take_journal();
        // A new leader's entries replace 3..=5.
        storage.write(&write(2, entries(2, 3..=4))).expect("write");
        let events = take_journal();
        let cut = events
            .iter()
            .position(|e| e.starts_with("set_len "))
            .expect("the log was truncated");
        let next = events[cut + 1..]
            .iter()
            .find(|e| e.starts_with("sync ") || e.starts_with("write "));
        assert!(
            next.is_some_and(|e| e.starts_with("sync ")),
            "records were written over the truncated ones before the truncation was synced: \
             {events:#?}"
        );
        drop(storage);
        let (_, recovered) = Storage::open(dir.path()).expect("reopen");
        assert_eq!(recovered.entries.len(), 4);
        assert_eq!(recovered.entries[3].term, 2);
    }
}
