//! The in-memory cluster: nodes with their disks, one shared virtual clock and a network queue

use shale_core::raft::Write;
use shale_core::raft::{Config, Entry, HardState, NodeId, Outgoing, Raft, Recovered, WriteId};
use shale_core::time::Instant;

use super::show::{self, Snap};

/// What a node has made durable: the hard state and the log, as the runtime stored them
#[derive(Clone, Debug, Default)]
pub struct Disk {
    /// The stored term and vote
    pub hard_state: HardState,
    /// The stored log, contiguous from index 1
    pub entries: Vec<Entry>,
}

impl Disk {
    /// Stores `write` as the persistence contract says: hard state first, then the entries
    /// (replacing every stored entry from the first new index on)
    fn store(&mut self, write: &Write) {
        if let Some(hs) = write.hard_state {
            self.hard_state = hs;
        }
        if let Some(first) = write.entries.first() {
            self.entries.truncate((first.index - 1) as usize);
            self.entries.extend(write.entries.iter().cloned());
        }
    }
}

/// One node of the cluster and everything the runtime keeps for it
#[derive(Debug)]
pub struct Slot {
    /// The Raft state machine
    pub raft: Raft,
    /// The configuration it was built with (kept for restarts)
    pub config: Config,
    /// Its durable state
    pub disk: Disk,
    /// Writes handed out by `poll_write` but not yet stored and acknowledged
    pub pending: Vec<Write>,
}

/// The whole test cluster
#[derive(Debug)]
pub struct Env {
    /// The shared virtual clock
    pub now: Instant,
    /// Nodes, `nodes[k]` has id `k + 1`
    pub nodes: Vec<Slot>,
    /// The voters every node is built with
    pub voters: Vec<NodeId>,
    /// Messages sent (polled from their node) and not yet delivered or dropped, in send order
    pub network: Vec<Outgoing>,
    /// Network partition: `group[k]` is the group of node `k + 1`; `None` when healed
    pub groups: Option<Vec<usize>>,
    /// Messages delivered since the last `stats`
    pub delivered: usize,
    /// Messages dropped since the last `stats`
    pub dropped: usize,
}

impl Env {
    /// An empty cluster at time zero
    pub fn new() -> Env {
        Env {
            now: Instant::ZERO,
            nodes: Vec::new(),
            voters: Vec::new(),
            network: Vec::new(),
            groups: None,
            delivered: 0,
            dropped: 0,
        }
    }

    /// The ids of every node, ascending
    pub fn ids(&self) -> Vec<NodeId> {
        (1..=self.nodes.len() as NodeId).collect()
    }

    /// `ids`, or every node when `ids` is empty; fails on an unknown id
    pub fn ids_or_all(&self, ids: Vec<NodeId>) -> Result<Vec<NodeId>, String> {
        if ids.is_empty() {
            return Ok(self.ids());
        }
        for &id in &ids {
            self.slot(id)?;
        }
        Ok(ids)
    }

    /// The node with id `id`
    pub fn slot(&self, id: NodeId) -> Result<&Slot, String> {
        id.checked_sub(1)
            .and_then(|k| self.nodes.get(k as usize))
            .ok_or_else(|| format!("no node {id}"))
    }

    /// The node with id `id`, mutably
    pub fn slot_mut(&mut self, id: NodeId) -> Result<&mut Slot, String> {
        id.checked_sub(1)
            .and_then(|k| self.nodes.get_mut(k as usize))
            .ok_or_else(|| format!("no node {id}"))
    }

    /// Builds (or rebuilds) node `id` from its disk, with `config`, at the current time
    pub fn boot(&mut self, id: NodeId, config: Config, disk: Disk) -> Result<(), String> {
        let recovered = Recovered {
            hard_state: disk.hard_state,
            snapshot: None,
            entries: disk.entries.clone(),
        };
        Raft::recover(&recovered).map_err(|e| format!("node {id}: {e}"))?;
        // Nodes added after the first `add-nodes` joined later: they start knowing no voters.
        let voters = if self.voters.contains(&id) {
            self.voters.clone()
        } else {
            Vec::new()
        };
        let raft = Raft::new(config.clone(), &voters, recovered, self.now)
            .map_err(|e| format!("node {id}: {e}"))?;
        let slot = Slot {
            raft,
            config,
            disk,
            pending: Vec::new(),
        };
        let k = (id - 1) as usize;
        if k < self.nodes.len() {
            self.nodes[k] = slot;
        } else {
            self.nodes.push(slot);
        }
        Ok(())
    }

    /// Runs `f` on node `id` and prints what changed in its state
    pub fn input<R>(
        &mut self,
        id: NodeId,
        out: &mut Vec<String>,
        f: impl FnOnce(&mut Raft, Instant) -> R,
    ) -> Result<R, String> {
        let now = self.now;
        let raft = &mut self.slot_mut(id)?.raft;
        let before = Snap::of(raft);
        let result = f(raft, now);
        before.changes(id, &Snap::of(raft), out);
        Ok(result)
    }

    /// Polls every new write of node `id`, printing each. With `ack`, first stores and
    /// acknowledges writes left pending by an earlier `process-writes-noack`, then stores and
    /// acknowledges each new write as it comes; without, leaves the new writes pending.
    /// Returns how many writes were handled.
    pub fn writes(
        &mut self,
        id: NodeId,
        ack: bool,
        out: &mut Vec<String>,
    ) -> Result<usize, String> {
        let mut count = self.slot(id)?.pending.len();
        if ack && count > 0 {
            self.ack(id, None, out)?;
        } else {
            count = 0;
        }
        loop {
            let slot = self.slot_mut(id)?;
            let Some(w) = slot.raft.poll_write() else {
                return Ok(count);
            };
            count += 1;
            let note = if ack { "" } else { " (not acknowledged)" };
            out.push(format!("{id} write #{} {}{note}", w.id, show::write(&w)));
            let write_id = w.id;
            slot.pending.push(w);
            if ack {
                self.store_and_report(id, write_id, out)?;
            }
        }
    }

    /// Stores node `id`'s pending writes up to `upto` (all when `None`) and reports them
    /// persisted, printing an `ack` line
    pub fn ack(
        &mut self,
        id: NodeId,
        upto: Option<WriteId>,
        out: &mut Vec<String>,
    ) -> Result<(), String> {
        let slot = self.slot(id)?;
        let upto = upto.unwrap_or(WriteId::MAX);
        let Some(last) = slot
            .pending
            .iter()
            .map(|w| w.id)
            .filter(|&w| w <= upto)
            .max()
        else {
            out.push(format!("{id} has no pending write to acknowledge"));
            return Ok(());
        };
        out.push(format!("{id} ack writes up to #{last}"));
        self.store_and_report(id, last, out)
    }

    /// Stores node `id`'s pending writes up to `last`, in order, then reports them persisted
    fn store_and_report(
        &mut self,
        id: NodeId,
        last: WriteId,
        out: &mut Vec<String>,
    ) -> Result<(), String> {
        let slot = self.slot_mut(id)?;
        while slot.pending.first().is_some_and(|w| w.id <= last) {
            let w = slot.pending.remove(0);
            slot.disk.store(&w);
        }
        self.input(id, out, |raft, now| raft.handle_persisted(now, last))
    }

    /// Hands out every committed entry of node `id`, printing them (runs of alike entries
    /// folded as in `raft-log`); returns how many
    pub fn apply(&mut self, id: NodeId, out: &mut Vec<String>) -> Result<usize, String> {
        let raft = &mut self.slot_mut(id)?.raft;
        let mut applied = Vec::new();
        while let Some(e) = raft.poll_apply() {
            applied.push(e);
        }
        if !applied.is_empty() {
            out.extend(
                show::log(&applied)
                    .iter()
                    .map(|l| format!("{id} apply {l}")),
            );
        }
        let mut reads = 0;
        while let Some(read) = raft.poll_read() {
            reads += 1;
            out.push(match read.result {
                Ok(index) => format!("{id} read {} ready at index {index}", read.ctx),
                Err(e) => format!("{id} read {} failed: {e}", read.ctx),
            });
        }
        Ok(applied.len() + reads)
    }

    /// Moves every message the nodes have ready onto the network queue; returns how many
    pub fn collect_messages(&mut self) -> usize {
        let mut count = 0;
        for slot in &mut self.nodes {
            while let Some(m) = slot.raft.poll_message() {
                self.network.push(m);
                count += 1;
            }
        }
        count
    }

    /// Whether the partition lets a message from `from` reach `to`
    pub fn connected(&self, from: NodeId, to: NodeId) -> bool {
        match &self.groups {
            None => true,
            Some(g) => g.get((from - 1) as usize) == g.get((to - 1) as usize),
        }
    }

    /// Delivers (or, across a partition, drops) one message, printing it and the receiver's
    /// state changes
    pub fn deliver(&mut self, m: Outgoing, out: &mut Vec<String>) -> Result<(), String> {
        let line = format!("{}->{} {}", m.from, m.to, show::message(&m.message));
        if !self.connected(m.from, m.to) {
            out.push(format!("{line} (dropped: partition)"));
            self.dropped += 1;
            return Ok(());
        }
        out.push(line);
        self.delivered += 1;
        let (from, to) = (m.from, m.to);
        let result = self.input(to, out, |raft, now| {
            raft.handle_message(now, from, m.message)
        })?;
        if result.is_err() {
            out.push(format!("  {to} is busy: message refused"));
        }
        Ok(())
    }
}
