//! The simulated cluster: its configuration, nodes, disks, network and clock, and getters
//!
//! Faults live in `faults.rs`, the event loop in `events.rs`.

use std::fmt;

use shale_core::raft::{Config, Entry, Index, NodeId, Raft, Role, Term};
use shale_core::rng::Rng;
use shale_core::time::Instant;

use crate::app::{SimApp, load_snapshot};
use crate::disk::{DiskConfig, SimDisk};
use crate::invariants::Checker;
use crate::network::{Network, NetworkConfig, NetworkStats};
use crate::trace::Trace;

/// Everything that shapes one simulation; one seed drives every random choice
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed; split into independent streams for network, disk, node faults, clocks and
    /// workload
    pub seed: u64,
    /// Number of nodes the group starts with, with ids `1..=nodes`, all voters (more can join
    /// later with [`Sim::add_node`])
    pub nodes: usize,
    /// The Raft config every node starts from (`id` and `seed` are set per node)
    pub raft: Config,
    /// Network behaviour
    pub network: NetworkConfig,
    /// Disk behaviour
    pub disk: DiskConfig,
    /// Most clock drift per node, in parts per million (each node draws its own drift)
    pub clock_drift_ppm_max: u64,
    /// Each node's clock drift in parts per million (node `i + 1` takes entry `i`; positive
    /// runs fast), instead of drawing them; nodes past the list draw theirs
    pub clock_drifts_ppm: Vec<i64>,
}

impl SimConfig {
    /// `nodes` nodes on a reliable network with default Raft settings, driven by `seed`
    pub fn new(seed: u64, nodes: usize) -> Self {
        SimConfig {
            seed,
            nodes,
            raft: Config::new(0, 0),
            network: NetworkConfig::reliable(),
            disk: DiskConfig::default(),
            clock_drift_ppm_max: 0,
            clock_drifts_ppm: Vec::new(),
        }
    }
}

/// A simulation that ended in something other than success; says the seed to replay
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimError {
    /// The seed of the failed run
    pub seed: u64,
    /// What went wrong
    pub message: String,
    /// Virtual time of the failure
    pub at: Instant,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (seed {}, at {}; replay with SHALE_SEED={})",
            self.message, self.seed, self.at, self.seed
        )
    }
}

impl std::error::Error for SimError {}

/// One simulated node: the Raft state machine, its disk and its state machine
#[derive(Debug)]
pub(crate) struct SimNode {
    pub(crate) id: NodeId,
    pub(crate) raft: Option<Raft>,
    pub(crate) disk: SimDisk,
    /// The state machine (kept as it was while the node is crashed)
    pub(crate) app: SimApp,
    /// Index the state machine was last loaded from a snapshot at (0: started empty)
    pub(crate) applied_base: Index,
    /// Entries applied since the node last (re)started or restored a snapshot: the first has
    /// index `applied_base + 1`
    pub(crate) applied: Vec<Entry>,
    /// Snapshots installed from a leader and restored (not counting restarts)
    pub(crate) installs: u64,
    /// Snapshots this node took of its own state machine
    pub(crate) snapshots_taken: u64,
    /// Largest in-memory log (bytes) seen after any event, over the whole run
    pub(crate) peak_log_bytes: usize,
    pub(crate) paused: bool,
    /// Cut off from every other node by [`Sim::disconnect`]
    pub(crate) disconnected: bool,
    /// Clock drift in parts per million (positive: this node's clock runs fast)
    pub(crate) drift_ppm: i64,
    /// Times this node was restarted
    pub(crate) restarts: u64,
}

impl SimNode {
    /// A node that has not booted yet: empty disk, empty state machine
    pub(crate) fn new(id: NodeId, drift_ppm: i64) -> Self {
        SimNode {
            id,
            raft: None,
            disk: SimDisk::default(),
            app: SimApp::new(),
            applied_base: 0,
            applied: Vec::new(),
            installs: 0,
            snapshots_taken: 0,
            peak_log_bytes: 0,
            paused: false,
            disconnected: false,
            drift_ppm,
            restarts: 0,
        }
    }
}

/// A deterministic simulation of a Raft group
///
/// Time is virtual: it jumps to the next event (a message arrival, a write completing, a node's
/// timeout). The same [`SimConfig`] always produces the same run. Invariants are checked after
/// every event; a violation panics with the seed and the recent trace, so a failing test always
/// says how to replay it.
#[derive(Debug)]
pub struct Sim {
    pub(crate) config: SimConfig,
    pub(crate) now: Instant,
    pub(crate) nodes: Vec<SimNode>,
    pub(crate) network: Network,
    pub(crate) disk_rng: Rng,
    pub(crate) fault_rng: Rng,
    pub(crate) workload_rng: Rng,
    pub(crate) checker: Checker,
    pub(crate) trace: Trace,
    pub(crate) undecodable: u64,
    pub(crate) busy_drops: u64,
    /// Every committed entry as first applied anywhere (position 0 is index 1)
    pub(crate) history: Vec<Entry>,
    /// What concurrent KV clients wait for (applied entries, read states), queued for them
    pub(crate) client_hooks: crate::clients::ClientHooks,
}

impl Sim {
    /// Builds the cluster; every node starts as a fresh follower
    pub fn new(config: SimConfig) -> Self {
        let mut root = Rng::new(config.seed);
        let network_rng = root.fork();
        let disk_rng = root.fork();
        let fault_rng = root.fork();
        let mut clock_rng = root.fork();
        let workload_rng = root.fork();
        let mut nodes = Vec::new();
        for i in 0..config.nodes {
            let id = i as NodeId + 1;
            let max = config.clock_drift_ppm_max;
            let drawn = clock_rng.range(0, 2 * max + 1) as i64 - max as i64;
            let drift_ppm = config.clock_drifts_ppm.get(i).copied().unwrap_or(drawn);
            nodes.push(SimNode::new(id, drift_ppm));
        }
        let network = Network::new(config.network.clone(), network_rng, config.nodes);
        let mut sim = Sim {
            now: Instant::ZERO,
            nodes,
            network,
            disk_rng,
            fault_rng,
            workload_rng,
            checker: Checker::default(),
            trace: Trace::default(),
            undecodable: 0,
            busy_drops: 0,
            history: Vec::new(),
            client_hooks: Default::default(),
            config,
        };
        for id in sim.ids() {
            sim.boot(id);
        }
        sim
    }

    /// Starts (or restarts) node `id` from its disk; the nodes of [`SimConfig::nodes`] know the
    /// first membership, nodes added later ([`Sim::add_node`]) know no voters and learn the
    /// membership from the leader
    pub(crate) fn boot(&mut self, id: NodeId) {
        let voters: Vec<NodeId> = if id as usize <= self.config.nodes {
            (1..=self.config.nodes as NodeId).collect()
        } else {
            Vec::new()
        };
        let now = self.local_time(id);
        let node = &mut self.nodes[(id - 1) as usize];
        let mut config = self.config.raft.clone();
        config.id = id;
        config.seed = self.config.seed ^ (id.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ node.restarts;
        let recovered = node.disk.recovered();
        if let Err(e) = Raft::recover(&recovered) {
            self.fail(format!("node {id} cannot recover its own disk: {e}"));
        }
        match Raft::new(config, &voters, recovered, now) {
            Ok(raft) => node.raft = Some(raft),
            Err(e) => panic!("invalid raft config in the simulation: {e}"),
        }
        node.applied.clear();
        node.app = SimApp::new();
        node.applied_base = 0;
        if let Some(meta) = node.disk.snapshot.meta.clone() {
            let result = load_snapshot(&node.disk, &meta).and_then(|app| {
                self.checker.on_restore(id, app.applied, app.digest)?;
                Ok(app)
            });
            match result {
                Ok(app) => {
                    node.applied_base = app.applied;
                    node.app = app;
                }
                Err(e) => self.fail(format!("node {id} restarting: {e}")),
            }
        }
    }

    // ----- getters -----

    /// The seed of this run
    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// The configuration of this run
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Virtual time now
    pub fn now(&self) -> Instant {
        self.now
    }

    /// All node ids, ascending, including nodes added by [`Sim::add_node`] (and nodes removed
    /// from the group, which keep running until crashed)
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The Raft node `id`, unless it is crashed
    pub fn node(&self, id: NodeId) -> Option<&Raft> {
        self.nodes.get((id as usize).wrapping_sub(1))?.raft.as_ref()
    }

    /// Whether node `id` is running (not crashed; it may be paused)
    pub fn is_up(&self, id: NodeId) -> bool {
        self.node(id).is_some()
    }

    /// Entries node `id` applied since it last (re)started or loaded a snapshot, in order; the
    /// first has index [`Sim::applied_base`]` + 1` (index 1 when no snapshot was involved)
    pub fn applied(&self, id: NodeId) -> &[Entry] {
        &self.nodes[(id - 1) as usize].applied
    }

    /// The durable log of node `id` (what would survive a crash now); after compaction it
    /// starts past index 1
    pub fn durable_log(&self, id: NodeId) -> &[Entry] {
        &self.nodes[(id - 1) as usize].disk.entries
    }

    /// Network counters
    pub fn network_stats(&self) -> &NetworkStats {
        &self.network.stats
    }

    /// The invariant checker (what is known committed, leaders per term)
    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// Hash of the whole event trace so far; equal for two runs of one seed
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    /// The most recent trace lines
    pub fn trace_tail(&self) -> String {
        self.trace.tail()
    }

    /// Print every trace line to stderr as it happens
    pub fn set_trace_echo(&mut self, echo: bool) {
        self.trace.echo = echo;
    }

    /// The workload's own random stream (independent of the fault and network streams)
    pub fn workload_rng(&mut self) -> &mut Rng {
        &mut self.workload_rng
    }

    /// The fault stream, for tests that pick random victims
    pub fn fault_rng(&mut self) -> &mut Rng {
        &mut self.fault_rng
    }

    /// Messages that failed to decode on arrival, and messages a node refused as `Busy`
    pub fn dropped_on_arrival(&self) -> (u64, u64) {
        (self.undecodable, self.busy_drops)
    }

    /// The leader of the highest term among running nodes, if one claims it
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|n| n.raft.as_ref())
            .filter(|r| r.role() == Role::Leader)
            .max_by_key(|r| r.term())
            .map(Raft::id)
    }

    /// Running nodes that claim to lead, as (id, term)
    pub fn leaders(&self) -> Vec<(NodeId, Term)> {
        self.nodes
            .iter()
            .filter_map(|n| n.raft.as_ref())
            .filter(|r| r.role() == Role::Leader)
            .map(|r| (r.id(), r.term()))
            .collect()
    }

    /// How many nodes have `index` applied in their state machine in their current (or, if
    /// crashed, last) life, by applying it or by loading a snapshot covering it, and the entry
    /// at `index`
    pub fn n_committed(&self, index: Index) -> (usize, Option<Entry>) {
        let mut count = 0;
        let mut entry = None;
        for n in &self.nodes {
            if index == 0 || n.app.applied < index {
                continue;
            }
            count += 1;
            if index > n.applied_base {
                entry = n
                    .applied
                    .get((index - n.applied_base - 1) as usize)
                    .cloned();
            }
        }
        if count > 0 && entry.is_none() {
            entry = self.history.get((index - 1) as usize).cloned();
        }
        (count, entry)
    }
}
