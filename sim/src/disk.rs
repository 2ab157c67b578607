//! The simulated disk: writes become durable after a latency, in order; a crash loses every
//! write not yet durable and may tear the oldest of them
//!
//! The disk stores what [`Recovered`] needs: the hard state, the log (which after compaction
//! starts past index 1), the current snapshot (meta and data), plus a partial snapshot being
//! received in chunks. Each [`Write`] is applied in its documented order: hard state, snapshot
//! chunks, entries, compaction.

use std::collections::VecDeque;

use shale_core::raft::{
    Entry, HardState, Index, Recovered, SnapshotChunk, SnapshotMeta, Write, WriteId,
};
use shale_core::rng::Rng;
use shale_core::time::{Duration, Instant};

/// How the simulated disks behave
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    /// Shortest time for a write to become durable
    pub latency_min: Duration,
    /// Longest time for a write to become durable
    pub latency_max: Duration,
    /// On a crash, chance (per million) that the oldest pending write is torn: its hard state
    /// and a prefix of the rest (snapshot chunks as one unit, then its entries one by one, then
    /// its compaction) reach the disk although it was never reported durable
    pub torn_write_per_million: u64,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            latency_min: Duration::from_micros(100),
            latency_max: Duration::from_millis(2),
            torn_write_per_million: 300_000,
        }
    }
}

/// A snapshot as stored on a disk
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StoredSnapshot {
    /// What it covers
    pub(crate) meta: Option<SnapshotMeta>,
    /// Its bytes
    pub(crate) data: Vec<u8>,
}

/// One node's disk
#[derive(Debug, Default)]
pub(crate) struct SimDisk {
    /// Durable term and vote
    pub(crate) hard_state: HardState,
    /// Durable log entries, contiguous (the first may be past index 1 after compaction)
    pub(crate) entries: Vec<Entry>,
    /// The durable current snapshot (`meta` is `None` until the first one)
    pub(crate) snapshot: StoredSnapshot,
    /// A snapshot being received, chunk by chunk
    partial: StoredSnapshot,
    /// Writes accepted but not yet durable, with the time each completes (non-decreasing)
    pending: VecDeque<(Instant, Write)>,
    /// Bytes of entry payload written, over the disk's life
    pub(crate) bytes_written: u64,
}

impl SimDisk {
    /// What a node restarting now recovers
    pub(crate) fn recovered(&self) -> Recovered {
        Recovered {
            hard_state: self.hard_state,
            snapshot: self.snapshot.meta.clone(),
            entries: self.entries.clone(),
        }
    }

    /// Index of the durable snapshot (0 without one)
    pub(crate) fn snapshot_index(&self) -> Index {
        self.snapshot.meta.as_ref().map_or(0, |m| m.last.index)
    }

    /// Bytes stored: log entries (payload plus fixed overhead each) and snapshot data
    pub(crate) fn size_bytes(&self) -> usize {
        let log: usize = self.entries.iter().map(Entry::size_bytes).sum();
        log + self.snapshot.data.len()
    }

    /// Stores a snapshot the node took; durable at once (it goes straight to a file of its own
    /// and is synced before the node is told)
    pub(crate) fn store_snapshot(&mut self, meta: SnapshotMeta, data: Vec<u8>) {
        self.snapshot = StoredSnapshot {
            meta: Some(meta),
            data,
        };
    }

    /// Accepts a write; it completes after a random latency, never before an earlier write
    pub(crate) fn submit(
        &mut self,
        now: Instant,
        write: Write,
        config: &DiskConfig,
        rng: &mut Rng,
    ) {
        let latency = rng.range(
            config.latency_min.as_micros(),
            config.latency_max.as_micros() + 1,
        );
        let mut at = now + Duration::from_micros(latency);
        if let Some((last, _)) = self.pending.back() {
            at = at.max(*last);
        }
        self.pending.push_back((at, write));
    }

    /// When the oldest pending write completes
    pub(crate) fn next_completion(&self) -> Option<Instant> {
        self.pending.front().map(|(at, _)| *at)
    }

    /// Completes the oldest pending write if due; returns its id
    pub(crate) fn complete_due(&mut self, now: Instant) -> Option<WriteId> {
        if self.pending.front().is_none_or(|(at, _)| *at > now) {
            return None;
        }
        let (_, write) = self.pending.pop_front()?;
        let id = write.id;
        self.apply(&write, usize::MAX);
        Some(id)
    }

    /// Applies `write` in its order, stopping after `steps` steps past the hard state (the
    /// chunks count as one step, each entry as one, the compaction as one)
    fn apply(&mut self, write: &Write, mut steps: usize) {
        if let Some(hs) = write.hard_state {
            self.hard_state = hs;
        }
        if !write.snapshot_chunks.is_empty() {
            if steps == 0 {
                return;
            }
            steps -= 1;
            for chunk in &write.snapshot_chunks {
                self.store_chunk(chunk);
            }
        }
        if let Some(first) = write.entries.first() {
            self.entries.retain(|e| e.index < first.index);
            for e in write.entries.iter().take(steps) {
                self.bytes_written += e.data.len() as u64;
                self.entries.push(e.clone());
            }
            if steps < write.entries.len() {
                return;
            }
            steps -= write.entries.len();
        }
        if let Some(through) = write.compact_through
            && steps > 0
        {
            self.entries.retain(|e| e.index > through);
        }
    }

    /// Writes one received chunk into the partial snapshot; the last one installs it
    fn store_chunk(&mut self, chunk: &SnapshotChunk) {
        if chunk.offset == 0 || self.partial.meta.as_ref() != Some(&chunk.meta) {
            self.partial = StoredSnapshot {
                meta: Some(chunk.meta.clone()),
                data: Vec::new(),
            };
        }
        let start = chunk.offset as usize;
        let end = start + chunk.data.len();
        if self.partial.data.len() < end {
            self.partial.data.resize(end, 0);
        }
        self.partial.data[start..end].copy_from_slice(chunk.data.as_bytes());
        self.bytes_written += chunk.data.len() as u64;
        if chunk.install {
            self.snapshot = std::mem::take(&mut self.partial);
            self.entries.clear();
        }
    }

    /// The process died: pending writes are lost, except that the oldest may be torn
    pub(crate) fn crash(&mut self, config: &DiskConfig, rng: &mut Rng) {
        if let Some((_, write)) = self.pending.pop_front()
            && rng.chance(config.torn_write_per_million, 1_000_000)
        {
            let steps = usize::from(!write.snapshot_chunks.is_empty())
                + write.entries.len()
                + usize::from(write.compact_through.is_some());
            let prefix = rng.below(steps as u64 + 1) as usize;
            self.apply(&write, prefix);
        }
        self.pending.clear();
    }
}
