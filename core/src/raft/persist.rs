//! The persistence contract: what must become durable, in which order, and what waits for it
//!
//! The core never writes. [`super::Raft::poll_write`] hands out [`Write`]s, numbered in order.
//! The runtime makes each durable **in order** (within one write: the hard state first, then
//! the entries) and then reports the highest durable id with
//! [`super::Raft::handle_persisted`]. Messages that depend on state not yet durable (a vote, an
//! append acknowledgement, anything carrying a new term) are held inside the core until the
//! write they depend on is reported, so the runtime can never send them too early.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::log::RaftLog;
use super::snapshot::{SnapshotChunk, SnapshotMeta};
use super::types::{Entry, HardState, Index};

/// Sequence number of a [`Write`]; the first write is 1
pub type WriteId = u64;

/// State to make durable, in this order: `hard_state`, then `snapshot_chunks`, then
/// `entries`, then `compact_through`
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Write {
    /// This write's sequence number; report it to `handle_persisted` once durable
    pub id: WriteId,
    /// A new term and vote, to replace the stored one atomically
    pub hard_state: Option<HardState>,
    /// Chunks of a snapshot being received, in order; a chunk marked `install` makes that
    /// snapshot current and deletes every stored log entry
    pub snapshot_chunks: Vec<SnapshotChunk>,
    /// Entries to store: first delete every stored entry with an index at or above
    /// `entries[0].index`, then append these (empty: no log change)
    pub entries: Vec<Entry>,
    /// The stored entries up to and including this index are covered by a durable snapshot
    /// and may be deleted
    pub compact_through: Option<Index>,
}

#[derive(Debug)]
struct IssuedWrite {
    id: WriteId,
    hard_state: Option<HardState>,
    /// Index of the first entry and of the last entry, when the write touched the log
    span: Option<(Index, Index)>,
    /// The snapshot this write installs
    installs: Option<SnapshotMeta>,
}

/// Bookkeeping of writes handed out and reported durable
#[derive(Debug)]
pub(crate) struct PersistTracker {
    next_id: WriteId,
    persisted_id: WriteId,
    issued: VecDeque<IssuedWrite>,
    /// Last index of the stored log, as far as reported writes tell
    disk_last: Index,
    /// The hard state as last reported durable
    durable_hard_state: HardState,
    /// The current hard state differs from what was last handed out
    hard_state_dirty: bool,
    /// Snapshot chunks for the next write
    chunks: Vec<SnapshotChunk>,
    /// Compaction for the next write
    compact: Option<Index>,
}

impl PersistTracker {
    pub(crate) fn recovered(hard_state: HardState, disk_last: Index) -> Self {
        PersistTracker {
            next_id: 1,
            persisted_id: 0,
            issued: VecDeque::new(),
            disk_last,
            durable_hard_state: hard_state,
            hard_state_dirty: false,
            chunks: Vec::new(),
            compact: None,
        }
    }

    /// Queues a received snapshot chunk for the next write
    pub(crate) fn add_snapshot_chunk(&mut self, chunk: SnapshotChunk) {
        self.chunks.push(chunk);
    }

    /// Lets the next write tell the runtime to delete stored entries up to `index`
    pub(crate) fn compact_through(&mut self, index: Index) {
        self.compact = Some(self.compact.map_or(index, |c| c.max(index)));
    }

    fn has_work(&self, log: &RaftLog) -> bool {
        self.hard_state_dirty
            || log.has_unwritten()
            || !self.chunks.is_empty()
            || self.compact.is_some()
    }

    pub(crate) fn mark_hard_state_dirty(&mut self) {
        self.hard_state_dirty = true;
    }

    pub(crate) fn durable_hard_state(&self) -> HardState {
        self.durable_hard_state
    }

    pub(crate) fn unpersisted_writes(&self) -> usize {
        self.issued.len()
    }

    /// The write a message created now must wait for, or `None` if everything is durable
    pub(crate) fn barrier(&self, log: &RaftLog) -> Option<WriteId> {
        if self.has_work(log) {
            Some(self.next_id)
        } else if self.next_id - 1 > self.persisted_id {
            Some(self.next_id - 1)
        } else {
            None
        }
    }

    pub(crate) fn is_durable(&self, id: WriteId) -> bool {
        id <= self.persisted_id
    }

    /// Builds the next write from the dirty hard state and unwritten entries, if any
    pub(crate) fn next_write(
        &mut self,
        hard_state: HardState,
        log: &mut RaftLog,
        max_unpersisted: usize,
    ) -> Option<Write> {
        if !self.has_work(log) || self.issued.len() >= max_unpersisted {
            return None;
        }
        let hard_state = core::mem::take(&mut self.hard_state_dirty).then_some(hard_state);
        let snapshot_chunks = core::mem::take(&mut self.chunks);
        let installs = snapshot_chunks
            .iter()
            .rev()
            .find(|c| c.install)
            .map(|c| c.meta.clone());
        let entries = log.take_unwritten();
        let span = match (&installs, entries.first(), entries.last()) {
            // An install replaces the whole stored log: nothing stored matches until it is done.
            (Some(meta), _, last) => Some((1, last.map_or(meta.last.index, |e| e.index))),
            (None, Some(first), Some(last)) => Some((first.index, last.index)),
            _ => None,
        };
        let id = self.next_id;
        self.next_id += 1;
        self.issued.push_back(IssuedWrite {
            id,
            hard_state,
            span,
            installs,
        });
        Some(Write {
            id,
            hard_state,
            snapshot_chunks,
            entries,
            compact_through: self.compact.take(),
        })
    }

    /// Records that every write up to `id` is durable; ids never handed out are ignored.
    /// Returns the newest snapshot those writes installed, if any.
    pub(crate) fn persisted(&mut self, id: WriteId) -> Option<SnapshotMeta> {
        let id = id.min(self.next_id - 1);
        let mut installed = None;
        while let Some(w) = self.issued.front() {
            if w.id > id {
                break;
            }
            if let Some(hs) = w.hard_state {
                self.durable_hard_state = hs;
            }
            if let Some((_, last)) = w.span {
                self.disk_last = last;
            }
            if let Some(w) = self.issued.pop_front()
                && w.installs.is_some()
            {
                installed = w.installs;
            }
        }
        self.persisted_id = self.persisted_id.max(id);
        installed
    }

    /// The highest index whose entry, and every entry before it, is durable as it stands in the
    /// in-memory log now
    pub(crate) fn durable_index(&self, log: &RaftLog) -> Index {
        let mut durable = self.disk_last.min(log.unwritten_from() - 1);
        for w in &self.issued {
            if let Some((first, _)) = w.span {
                durable = durable.min(first - 1);
            }
        }
        durable
    }
}
