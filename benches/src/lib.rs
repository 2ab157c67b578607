//! Harness for Shale's benchmarks: a 3-node Raft cluster held in memory, in one thread
//!
//! [`Cluster`] drives three [`Raft`] nodes the way the crate documentation of `shale-core`
//! does, stripped of everything that is not consensus:
//!
//! - the **network** is one FIFO queue of [`Outgoing`] messages, moved (never encoded);
//! - **persistence** is synchronous and free: every [`Write`](shale_core::raft::Write) is
//!   dropped and [`Raft::handle_persisted`] is called at once;
//! - **applying** an entry drops it and bumps a counter;
//! - **time** is frozen after the election, so no timeout fires while measuring.
//!
//! Node 1 is always the leader. The nodes' logs are never compacted (the core has no
//! compaction yet), so long runs replace the cluster with a fresh one; see
//! [`Cluster::REBUILD_AFTER`].
//!
//! [`CountingAllocator`] counts heap allocations for [`allocations_per_entry`]; a binary that
//! wants those counts registers it with `#[global_allocator]`.
//!
//! ```
//! use shale_benches::Cluster;
//! use shale_core::raft::Payload;
//!
//! let mut cluster = Cluster::new();
//! let payload = Payload::from(&[7u8; 16]);
//! let last = cluster.commit_batch(16, &payload);
//! assert_eq!(cluster.leader().commit_index(), last.index);
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use shale_core::raft::{Config, Index, LogId, NodeId, Outgoing, Payload, Raft, Recovered, Role};
use shale_core::time::Instant;

/// The voters of every benchmark cluster
pub const VOTERS: [NodeId; 3] = [1, 2, 3];

/// The node that is leader once [`Cluster::new`] returns
pub const LEADER: NodeId = 1;

/// Three Raft nodes, a perfect in-memory network and synchronous persistence
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Raft>,
    network: VecDeque<Outgoing>,
    now: Instant,
    applied: u64,
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
            network: VecDeque::new(),
            now,
            applied: 0,
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

    fn node_mut(&mut self, id: NodeId) -> &mut Raft {
        &mut self.nodes[slot(id)]
    }

    /// The leader, node 1
    pub fn leader(&self) -> &Raft {
        self.node(LEADER)
    }

    /// Entries applied so far, summed over the three nodes
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Messages sent and not yet delivered, oldest first
    pub fn network_mut(&mut self) -> &mut VecDeque<Outgoing> {
        &mut self.network
    }

    /// Proposes `payload` on the leader (a reference-count increment, no copy) without draining
    pub fn propose(&mut self, payload: &Payload) -> LogId {
        let now = self.now;
        self.node_mut(LEADER)
            .propose(now, payload.clone())
            .expect("the leader takes proposals within its limits")
    }

    /// Drains node `id`'s outputs as a runtime would: persists every write (synchronously),
    /// queues every message on the network, applies every committed entry
    pub fn drain(&mut self, id: NodeId) {
        let now = self.now;
        let node = &mut self.nodes[slot(id)];
        while let Some(write) = node.poll_write() {
            node.handle_persisted(now, write.id);
        }
        while let Some(out) = node.poll_message() {
            self.network.push_back(out);
        }
        while let Some(entry) = node.poll_apply() {
            drop(entry);
            self.applied += 1;
        }
    }

    /// Hands `msg` to its receiver, then drains the receiver
    pub fn deliver(&mut self, msg: Outgoing) {
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

fn slot(id: NodeId) -> usize {
    assert!(VOTERS.contains(&id), "no node {id}");
    (id - 1) as usize
}

/// Heap allocations made in this process since it started, as counted by [`CountingAllocator`]
/// (always 0 when that allocator is not registered)
pub fn allocation_count() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting every `alloc`, `alloc_zeroed` and `realloc` call
///
/// Register it in a benchmark or test binary with
/// `#[global_allocator] static ALLOC: CountingAllocator = CountingAllocator;`, then read
/// [`allocation_count`]. Counting costs one relaxed atomic add per allocation.
#[derive(Clone, Copy, Debug, Default)]
pub struct CountingAllocator;

// `GlobalAlloc` is an unsafe trait, so implementing it needs `unsafe`; the workspace denies
// `unsafe_code`, and this allow covers this impl only. Every method forwards its arguments
// unchanged to `System`, whose contract is the same as ours, and only adds a counter.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` through this wrapper with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Heap allocations per committed entry in steady state, for rounds of `batch` proposals of
/// `payload_len` bytes ([`Cluster::commit_batch`]); `None` unless [`CountingAllocator`] is the
/// global allocator
///
/// Counts everything the three nodes and the harness allocate (the harness itself allocates
/// nothing once warm). The payload is built once and shared, so the figure leaves out the one
/// allocation a caller makes to build each proposal's [`Payload`]. The cluster is warmed up
/// first so queues have their steady capacity; then at least 8192 entries are measured so the
/// occasional doubling of a log `Vec` weighs next to nothing.
pub fn allocations_per_entry(batch: usize, payload_len: usize) -> Option<f64> {
    let probe = allocation_count();
    drop(std::hint::black_box(Box::new(0u64)));
    if allocation_count() == probe {
        return None;
    }
    let payload = Payload::from(vec![0xA5; payload_len]);
    let mut cluster = Cluster::new();
    let rounds = (8192 / batch).max(32);
    for _ in 0..rounds.min(256) {
        cluster.commit_batch(batch, &payload);
    }
    let before = allocation_count();
    let first = cluster.leader().commit_index();
    for _ in 0..rounds {
        cluster.commit_batch(batch, &payload);
    }
    let allocations = allocation_count() - before;
    let committed = cluster.leader().commit_index() - first;
    Some(allocations as f64 / committed as f64)
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
    fn counting_needs_the_allocator_registered() {
        // This test binary uses the system allocator directly.
        assert_eq!(allocations_per_entry(1, 16), None);
    }
}
