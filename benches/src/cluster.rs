//! [`Cluster`]: three nodes, a FIFO network, synchronous persistence, and the drain loop

use std::collections::VecDeque;

use shale_core::raft::{
    Config, Index, LogId, Message, NodeId, Outgoing, Payload, Raft, Recovered, Role, SnapshotTask,
};
use shale_core::time::{Duration, Instant};

use crate::Host;

/// The voters of every benchmark cluster
pub const VOTERS: [NodeId; 3] = [1, 2, 3];

/// The node that is leader once [`Cluster::new`] returns
pub const LEADER: NodeId = 1;

/// Three Raft nodes, a perfect in-memory network and synchronous persistence
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Raft>,
    pub(crate) hosts: Vec<Host>,
    network: VecDeque<Outgoing>,
    pub(crate) now: Instant,
    applied: u64,
    isolated: [bool; 3],
    heartbeats_sent: u64,
    snapshot_chunks_sent: u64,
    pub(crate) next_ctx: u64,
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

impl Cluster {
    /// Entries in the leader's log after which a benchmark should start over with a fresh
    /// cluster, to bound memory (about 120 bytes per entry across the three logs)
    pub const REBUILD_AFTER: Index = 1 << 17;

    /// A cluster with node 1 elected leader and its first entry (the no-op) applied everywhere
    ///
    /// Uses [`Config::new`] defaults (pre-vote and check-quorum on).
    pub fn new() -> Self {
        Self::with_config(|_| {})
    }

    /// Like [`Cluster::new`], with every node's [`Config`] adjusted by `adjust` first
    pub fn with_config(adjust: impl Fn(&mut Config)) -> Self {
        Self::build(adjust, 0)
    }

    /// Like [`Cluster::new`], but each node starts from an empty recovered log whose `Vec` has
    /// room for `capacity` entries
    ///
    /// A diagnostic: the core keeps the recovered `Vec` as its log today, so up to `capacity`
    /// entries the log never reallocates, which shows what a log that grows without copying
    /// (segments, or a ring reused after compaction) would save. If the core stops keeping
    /// the `Vec`, this quietly becomes [`Cluster::new`].
    pub fn with_log_capacity(capacity: usize) -> Self {
        Self::build(|_| {}, capacity)
    }

    fn build(adjust: impl Fn(&mut Config), capacity: usize) -> Self {
        let now = Instant::ZERO;
        let nodes = VOTERS
            .iter()
            .map(|&id| {
                let mut config = Config::new(id, id);
                adjust(&mut config);
                let recovered = Recovered {
                    entries: Vec::with_capacity(capacity),
                    ..Recovered::default()
                };
                Raft::new(config, &VOTERS, recovered, now).expect("valid config")
            })
            .collect();
        let mut cluster = Cluster {
            nodes,
            hosts: VOTERS.iter().map(|_| Host::default()).collect(),
            network: VecDeque::new(),
            now,
            applied: 0,
            isolated: [false; 3],
            heartbeats_sent: 0,
            snapshot_chunks_sent: 0,
            next_ctx: 1,
        };
        cluster.elect_leader();
        cluster
    }

    /// Fires node 1's election timeout, then delivers messages until the network is quiet
    fn elect_leader(&mut self) {
        let deadline = self
            .node(LEADER)
            .poll_timeout()
            .expect("a voter has a timeout");
        self.now = deadline;
        let now = self.now;
        self.node_mut(LEADER)
            .handle_timeout(now)
            .expect("an idle node is never busy");
        self.drain(LEADER);
        self.run_until_quiet();
        assert_eq!(
            self.leader().role(),
            Role::Leader,
            "node 1 won the election"
        );
        let noop = self.leader().last_index();
        for node in &self.nodes {
            assert_eq!(
                node.applied_index(),
                noop,
                "the no-op is applied everywhere"
            );
        }
    }

    /// The node `id` (1, 2 or 3)
    pub fn node(&self, id: NodeId) -> &Raft {
        &self.nodes[slot(id)]
    }

    pub(crate) fn node_mut(&mut self, id: NodeId) -> &mut Raft {
        &mut self.nodes[slot(id)]
    }

    /// What node `id`'s runtime keeps beside it
    pub fn host(&self, id: NodeId) -> &Host {
        &self.hosts[slot(id)]
    }

    /// The leader, node 1
    pub fn leader(&self) -> &Raft {
        self.node(LEADER)
    }

    /// The harness's clock (frozen unless [`Cluster::advance`] moves it)
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Entries applied so far, summed over the three nodes
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Heartbeat messages sent so far, all nodes together
    pub fn heartbeats_sent(&self) -> u64 {
        self.heartbeats_sent
    }

    /// `InstallSnapshot` messages (snapshot chunks) sent so far, all nodes together
    pub fn snapshot_chunks_sent(&self) -> u64 {
        self.snapshot_chunks_sent
    }

    /// Messages sent and not yet delivered, oldest first
    pub fn network_mut(&mut self) -> &mut VecDeque<Outgoing> {
        &mut self.network
    }

    /// Cuts node `id` off: from now on every message to or from it is dropped on delivery
    pub fn isolate(&mut self, id: NodeId) {
        self.isolated[slot(id)] = true;
    }

    /// Undoes [`Cluster::isolate`] (messages dropped meanwhile stay lost)
    pub fn reconnect(&mut self, id: NodeId) {
        self.isolated[slot(id)] = false;
    }

    /// Moves the clock forward by `by`, then fires the timeout of every node whose deadline
    /// has come (in id order), draining each
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        for id in VOTERS {
            if self.node(id).poll_timeout().is_some_and(|t| t <= now) {
                self.node_mut(id)
                    .handle_timeout(now)
                    .expect("a drained node is never busy");
                self.drain(id);
            }
        }
    }

    /// Proposes `payload` on the leader (a reference-count increment, no copy) without draining
    pub fn propose(&mut self, payload: &Payload) -> LogId {
        let now = self.now;
        self.node_mut(LEADER)
            .propose(now, payload.clone())
            .expect("the leader takes proposals within its limits")
    }

    /// Drains node `id`'s outputs as a runtime would, in the documented order, until none is
    /// left: persists every write (synchronously, storing snapshot chunks in its [`Host`]),
    /// queues every message on the network, restores installed snapshots, applies every
    /// committed entry, collects reads, records `Take` tasks and answers `ReadChunk` tasks
    pub fn drain(&mut self, id: NodeId) {
        let now = self.now;
        let node = &mut self.nodes[slot(id)];
        let host = &mut self.hosts[slot(id)];
        loop {
            while let Some(write) = node.poll_write() {
                for chunk in write.snapshot_chunks {
                    host.store_chunk(chunk);
                }
                node.handle_persisted(now, write.id);
            }
            while let Some(out) = node.poll_message() {
                match out.message {
                    Message::Heartbeat { .. } => self.heartbeats_sent += 1,
                    Message::InstallSnapshot { .. } => self.snapshot_chunks_sent += 1,
                    _ => {}
                }
                self.network.push_back(out);
            }
            while let Some(meta) = node.poll_restore() {
                host.restore(&meta);
            }
            while let Some(entry) = node.poll_apply() {
                drop(entry);
                self.applied += 1;
            }
            while let Some(read) = node.poll_read() {
                host.reads.push(read);
            }
            let mut answered = false;
            while let Some(task) = node.poll_snapshot_task() {
                match task {
                    SnapshotTask::Take { applied } => host.take_asked = Some(applied),
                    SnapshotTask::ReadChunk {
                        to,
                        index,
                        offset,
                        max_bytes,
                    } => {
                        if let Some(data) = host.read_chunk(index, offset, max_bytes) {
                            node.handle_snapshot_chunk(now, to, index, offset, data);
                            answered = true;
                        }
                    }
                }
            }
            if !answered {
                break;
            }
        }
    }

    /// Hands `msg` to its receiver, then drains the receiver; drops it if either end is
    /// isolated
    pub fn deliver(&mut self, msg: Outgoing) {
        if self.isolated[slot(msg.from)] || self.isolated[slot(msg.to)] {
            return;
        }
        let now = self.now;
        self.node_mut(msg.to)
            .handle_message(now, msg.from, msg.message)
            .expect("a drained node is never busy");
        self.drain(msg.to);
    }

    /// Delivers the oldest message in flight; `false` when there was none
    pub fn deliver_next(&mut self) -> bool {
        match self.network.pop_front() {
            Some(msg) => {
                self.deliver(msg);
                true
            }
            None => false,
        }
    }

    /// Delivers messages until none is in flight
    pub fn run_until_quiet(&mut self) {
        while self.deliver_next() {}
    }

    /// Delivers messages, oldest first, until the leader has committed `index`; messages still
    /// in flight then (commit news for the followers, late acknowledgements) stay queued and go
    /// first in the next round, as they would on a pipelined connection
    ///
    /// Panics if the network goes quiet first.
    pub fn deliver_until_committed(&mut self, index: Index) {
        while self.leader().commit_index() < index {
            assert!(
                self.deliver_next(),
                "network quiet with index {index} uncommitted"
            );
        }
    }

    /// One benchmark round: `batch` proposals of `payload` on the leader, then drain the leader
    /// and deliver messages until all of them are committed on the leader; returns the id of
    /// the last proposal
    pub fn commit_batch(&mut self, batch: usize, payload: &Payload) -> LogId {
        let mut last = self.leader().last_log_id();
        for _ in 0..batch {
            last = self.propose(payload);
        }
        self.drain(LEADER);
        self.deliver_until_committed(last.index);
        last
    }

    /// `true` once the logs hold more than [`Cluster::REBUILD_AFTER`] entries
    pub fn needs_rebuild(&self) -> bool {
        self.leader().last_index() > Self::REBUILD_AFTER
    }
}

pub(crate) fn slot(id: NodeId) -> usize {
    assert!(VOTERS.contains(&id), "no node {id}");
    (id - 1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_commit_and_every_node_applies_them() {
        let payload = Payload::from(&[1u8; 16]);
        let mut cluster = Cluster::new();
        let start = cluster.leader().commit_index();
        for batch in [1, 16, 256] {
            let last = cluster.commit_batch(batch, &payload);
            assert_eq!(cluster.leader().commit_index(), last.index);
        }
        assert_eq!(cluster.leader().commit_index(), start + 273);
        cluster.run_until_quiet();
        for id in VOTERS {
            assert_eq!(cluster.node(id).applied_index(), start + 273);
        }
        assert_eq!(cluster.applied(), 3 * (start + 273));
    }

    #[test]
    fn a_reserved_log_commits_the_same() {
        let payload = Payload::from(&[2u8; 16]);
        let mut cluster = Cluster::with_log_capacity(1024);
        let last = cluster.commit_batch(256, &payload);
        assert_eq!(cluster.leader().commit_index(), last.index);
        assert!(!cluster.needs_rebuild());
    }

    #[test]
    fn an_isolated_follower_falls_behind_and_the_rest_commit() {
        let payload = Payload::from(&[3u8; 16]);
        let mut cluster = Cluster::new();
        let before = cluster.node(3).last_index();
        cluster.isolate(3);
        let last = cluster.commit_batch(8, &payload);
        cluster.run_until_quiet();
        assert_eq!(cluster.node(2).applied_index(), last.index);
        assert_eq!(cluster.node(3).last_index(), before);
    }
}
