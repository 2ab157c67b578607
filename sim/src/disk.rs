//! The simulated disk: writes become durable after a latency, in order; a crash loses every
//! write not yet durable and may tear the oldest of them

use std::collections::VecDeque;

use shale_core::raft::{Recovered, Write, WriteId};
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
    /// and a prefix of its entries reach the disk although it was never reported durable
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

/// One node's disk
#[derive(Debug, Default)]
pub(crate) struct SimDisk {
    /// What survives a crash
    pub(crate) durable: Recovered,
    /// Writes accepted but not yet durable, with the time each completes (non-decreasing)
    pending: VecDeque<(Instant, Write)>,
    /// Bytes of entry payload written, over the disk's life
    pub(crate) bytes_written: u64,
}

impl SimDisk {
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
        self.apply(&write, write.entries.len());
        Some(id)
    }

    fn apply(&mut self, write: &Write, entry_count: usize) {
        if let Some(hs) = write.hard_state {
            self.durable.hard_state = hs;
        }
        if let Some(first) = write.entries.first() {
            let keep = (first.index - 1) as usize;
            self.durable.entries.truncate(keep);
            for e in &write.entries[..entry_count] {
                self.bytes_written += e.data.len() as u64;
                self.durable.entries.push(e.clone());
            }
        }
    }

    /// The process died: pending writes are lost, except that the oldest may be torn
    pub(crate) fn crash(&mut self, config: &DiskConfig, rng: &mut Rng) {
        if let Some((_, write)) = self.pending.pop_front()
            && rng.chance(config.torn_write_per_million, 1_000_000)
        {
            let prefix = rng.below(write.entries.len() as u64 + 1) as usize;
            self.apply(&write, prefix);
        }
        self.pending.clear();
    }
}
