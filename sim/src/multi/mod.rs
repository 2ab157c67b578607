//! A deterministic simulator of a sharded cluster: nodes hosting replicas of several Raft
//! groups, each node running the core's [`Host`](shale_core::node::Host)
//!
//! [`MultiSim`] is the multi-group sibling of [`crate::Sim`]: one seed, one virtual clock and
//! one network for every group. Each simulated node runs the code the `shale` program runs:
//! the core's node host over the replicas it hosts (the shard controller's and replica
//! groups', see [`MachineSpec`]), which routes the application protocol between groups and
//! answers clients. The simulator only moves what the host outputs: writes to each group's
//! disk on that node, Raft and application messages over the network. Raft messages travel as
//! `(group id, message)` envelopes: the group id as a postcard varint, then the message in the
//! [`shale_core::wire`] encoding, so the network counts real bytes.
//!
//! Faults are per node and hit every group on it: [`MultiSim::crash`] loses the unsynced
//! writes of every group (the oldest perhaps torn), [`MultiSim::restart`] recovers every group
//! from its disks, [`MultiSim::pause`] freezes the node; links are cut per pair of nodes
//! ([`MultiSim::partition`], [`MultiSim::disconnect`], [`MultiSim::set_link`]) and the
//! network can be made lossy ([`MultiSim::set_network`]).
//!
//! After every event, each group's own [`crate::Checker`] verifies election safety, log
//! matching, leader completeness and monotonic commits, and every replica's state machine is
//! compared by digest with the group's committed log (see [`Tracked`]); a violation panics
//! with the seed and the recent trace.
//!
//! # CPU model
//!
//! By default CPU is free: a node handles any number of events at the same virtual instant,
//! so a closed-loop load is bound by latency alone. With [`MultiConfig::cpu_per_event`] set,
//! each node is one CPU that spends that fixed service time on every event it handles (a
//! message delivered, a timeout, a disk completion); with [`MultiConfig::cpu_per_mib`] it
//! also spends time in proportion to the bytes its loop handles in the event (the message
//! received, and every message, write and snapshot it produced). An event starts no earlier
//! than the node's CPU is free, and moves that point on by its service time. An event due
//! while the CPU is busy is deferred, not handled early: a message is put back on the network
//! to arrive when the CPU frees up, and disk completions and timers wait until then. So a
//! design that does work proportional to the data on a node's loop delays its heartbeats,
//! and shows up as elections.
//!
//! # Clients
//!
//! Clients have network addresses of their own (from [`CLIENT_BASE`] up) and talk to the
//! nodes with application messages, as the `shale` program's peers do: a [`Clerk`] calls the
//! controller ([`MultiSim::controller_call`]) and a [`KvClient`] drives the core's sans-IO
//! clerk for key-value operations. [`ShardedCluster`] builds a controller and replica groups
//! on dedicated nodes, [`KvWorkload`] runs concurrent users and records their history for the
//! linearizability checker, and [`run_sharded_seed`] is the random campaign over all of it.
//!
//! ```
//! use shale_core::controller::ControllerCommand;
//! use shale_core::time::Duration;
//! use shale_sim::multi::{CONTROLLER, MultiConfig, MultiSim};
//!
//! // Five nodes; the controller group (10 shards) lives on nodes 1-3.
//! let mut sim = MultiSim::with_controller(MultiConfig::new(7, 5), &[1, 2, 3], 10);
//! let budget = Duration::from_secs(10);
//! let c1 = sim
//!     .controller_call(ControllerCommand::Join(vec![(100, vec![4, 5])]), budget)
//!     .unwrap()
//!     .unwrap();
//! assert!(c1.shards.iter().all(|&g| g == 100));
//!
//! // Crash the controller's leader: the others elect a new one, which knows configuration 1.
//! let leader = sim.leader_of(CONTROLLER).unwrap();
//! sim.crash(leader);
//! let latest = sim
//!     .controller_call(ControllerCommand::Query(None), budget)
//!     .unwrap()
//!     .unwrap();
//! assert_eq!(latest, c1);
//! sim.restart(leader);
//! sim.run_for(Duration::from_secs(1));
//! ```

mod campaign;
mod check;
mod clerk;
mod events;
mod faults;
mod kv;
mod machine;
mod node;
mod route;
mod sharded;
mod txn;
mod workload;

use std::collections::BTreeMap;
use std::fmt;

use shale_core::controller::{GroupId, ShardController};
use shale_core::raft::{Config, Index, NodeId, Raft, Role, Term};
use shale_core::rng::Rng;
use shale_core::time::{Duration, Instant};

pub use campaign::{SHARDED_FAULT_PHASE, ShardedReport, run_sharded_seed};
pub use clerk::{CLERK_POLL, Clerk, ControllerResult};
pub use kv::KvClient;
pub use machine::{
    EMPTY_COMMAND_DIGEST, MachineSpec, SimDriver, SimMachines, SimReplica, Tracked,
    command_digest_step, command_hash,
};
pub use node::GroupSpec;
pub use route::{APP_CHANNEL, AppMessage, CLIENT_BASE};
pub use sharded::{ShardedCluster, ShardedConfig};
pub use txn::TxnWorkload;
pub use workload::{KvWorkload, Workload};

use check::GroupCheck;
use node::{GroupDisk, MultiNode};

use crate::disk::DiskConfig;
use crate::network::{Network, NetworkConfig, NetworkStats};
use crate::trace::Trace;
use crate::{Checker, SimError};

/// The group id of the shard controller (the core's
/// [`CONTROLLER_GROUP`](shale_core::node::CONTROLLER_GROUP)); 0 is never a replica group's id
/// (it means "no group" in a configuration)
pub const CONTROLLER: GroupId = shale_core::node::CONTROLLER_GROUP;

/// Everything that shapes one multi-group simulation; one seed drives every random choice
#[derive(Clone, Debug)]
pub struct MultiConfig {
    /// The seed; split into independent streams for network, disk, node faults, clocks and
    /// workload (clerks)
    pub seed: u64,
    /// Number of nodes, with ids `1..=nodes`
    pub nodes: usize,
    /// The Raft config every replica starts from (`id` and `seed` are set per replica)
    pub raft: Config,
    /// Network behaviour
    pub network: NetworkConfig,
    /// Disk behaviour
    pub disk: DiskConfig,
    /// Most clock drift per node, in parts per million
    pub clock_drift_ppm_max: u64,
    /// CPU time a node spends on each event it handles; `None` (the default) makes CPU free
    /// (see the CPU model in the module docs)
    pub cpu_per_event: Option<Duration>,
    /// CPU time a node's loop spends per MiB it handles in an event; `None` (the default)
    /// makes bytes free
    pub cpu_per_mib: Option<Duration>,
    /// Time a node's snapshot worker (a core of its own, not the loop's) spends per MiB it
    /// encodes or decodes; `None` (the default) takes `cpu_per_mib`
    pub worker_per_mib: Option<Duration>,
    /// How often each host hands its groups to their preferred leaders
    /// ([`HostConfig::leader_balance_interval`](shale_core::node::HostConfig::leader_balance_interval));
    /// `None` (the default): never
    pub leader_balance_interval: Option<Duration>,
}

impl MultiConfig {
    /// `nodes` nodes on a reliable network with default Raft settings, driven by `seed`
    pub fn new(seed: u64, nodes: usize) -> Self {
        MultiConfig {
            seed,
            nodes,
            raft: Config::new(0, 0),
            network: NetworkConfig::reliable(),
            disk: DiskConfig::default(),
            clock_drift_ppm_max: 0,
            cpu_per_event: None,
            cpu_per_mib: None,
            worker_per_mib: None,
            leader_balance_interval: None,
        }
    }
}

/// A deterministic simulation of a sharded cluster's nodes (see the module docs)
pub struct MultiSim {
    pub(crate) config: MultiConfig,
    pub(crate) now: Instant,
    pub(crate) nodes: Vec<MultiNode>,
    /// Every group's definition, by id
    pub(crate) groups: BTreeMap<GroupId, GroupSpec>,
    /// Every group's invariant state, by id
    pub(crate) checks: BTreeMap<GroupId, GroupCheck>,
    pub(crate) network: Network,
    pub(crate) disk_rng: Rng,
    pub(crate) fault_rng: Rng,
    pub(crate) workload_rng: Rng,
    pub(crate) trace: Trace,
    /// Envelopes that did not decode, and messages for a group the receiver does not host
    pub(crate) undecodable: u64,
    /// The next token a client gives a request
    pub(crate) next_token: u64,
    /// The clerk behind [`MultiSim::controller_call`], kept for its leader hint
    pub(crate) controller_clerk: Option<Clerk>,
    pub(crate) buf: Vec<u8>,
    /// Application messages arrived for clients, by client address
    pub(crate) client_inbox: BTreeMap<NodeId, Vec<route::AppMessage>>,
    /// The next client session id and network address offset
    pub(crate) next_client: u64,
}

impl fmt::Debug for MultiSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiSim")
            .field("seed", &self.config.seed)
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl MultiSim {
    /// `config.nodes` running nodes hosting no group yet
    pub fn new(config: MultiConfig) -> Self {
        let mut root = Rng::new(config.seed);
        let network_rng = root.fork();
        let disk_rng = root.fork();
        let fault_rng = root.fork();
        let mut clock_rng = root.fork();
        let workload_rng = root.fork();
        let nodes = (0..config.nodes)
            .map(|i| {
                let max = config.clock_drift_ppm_max;
                let drift_ppm = clock_rng.range(0, 2 * max + 1) as i64 - max as i64;
                MultiNode::new(i as NodeId + 1, drift_ppm)
            })
            .collect();
        let mut sim = MultiSim {
            now: Instant::ZERO,
            nodes,
            groups: BTreeMap::new(),
            checks: BTreeMap::new(),
            network: Network::new(config.network.clone(), network_rng, config.nodes),
            disk_rng,
            fault_rng,
            workload_rng,
            trace: Trace::default(),
            undecodable: 0,
            next_token: 1,
            controller_clerk: None,
            buf: Vec::new(),
            client_inbox: BTreeMap::new(),
            next_client: 1,
            config,
        };
        for id in sim.ids() {
            sim.boot_node(id);
        }
        sim
    }

    /// `config.nodes` nodes with a shard controller over `shards` shards replicated on
    /// `voters`, as group [`CONTROLLER`] (moving any number of shards per configuration)
    pub fn with_controller(config: MultiConfig, voters: &[NodeId], shards: u32) -> Self {
        MultiSim::with_staged_controller(config, voters, shards, 0)
    }

    /// [`MultiSim::with_controller`], moving at most `max_moves` shards with data per
    /// configuration (see [`ShardController::with_max_moves`])
    pub fn with_staged_controller(
        config: MultiConfig,
        voters: &[NodeId],
        shards: u32,
        max_moves: u32,
    ) -> Self {
        let mut sim = MultiSim::new(config);
        let machine = MachineSpec::Controller { shards, max_moves };
        sim.add_group(CONTROLLER, voters, machine);
        sim
    }

    /// Creates group `gid` with a replica on each of `voters` (all voters, fresh disks)
    ///
    /// # Panics
    ///
    /// If the group exists, `voters` is empty or names an unknown node, or the machine does
    /// not fit the group id (the controller is group [`CONTROLLER`], and only it).
    pub fn add_group(&mut self, gid: GroupId, voters: &[NodeId], machine: MachineSpec) {
        assert!(!self.groups.contains_key(&gid), "group {gid} exists");
        assert!(gid != APP_CHANNEL, "group id {gid} is reserved");
        assert!(!voters.is_empty(), "group {gid} needs voters");
        assert_eq!(
            gid == CONTROLLER,
            matches!(machine, MachineSpec::Controller { .. }),
            "group {gid}: the controller is group {CONTROLLER}, and only it"
        );
        for &id in voters {
            assert!(
                (1..=self.nodes.len() as NodeId).contains(&id),
                "group {gid}: no node {id}"
            );
        }
        let mut voters = voters.to_vec();
        voters.sort_unstable();
        voters.dedup();
        self.groups.insert(
            gid,
            GroupSpec {
                voters: voters.clone(),
                machine,
            },
        );
        self.checks.insert(gid, GroupCheck::default());
        self.trace
            .record(format!("{} g{gid} CREATE on {voters:?}", self.now));
        if gid == CONTROLLER {
            // Every host learns the controller's voters when it boots.
            for id in self.ids() {
                if self.node(id).up {
                    self.boot_node(id);
                }
            }
        }
        for id in voters {
            let node = &mut self.nodes[(id - 1) as usize];
            node.disks.insert(gid, GroupDisk::default());
            if node.up {
                let now = self.local_time(id);
                let replica = self.boot_replica(id, gid, now);
                if let Some(host) = self.nodes[(id - 1) as usize].host.as_mut() {
                    host.add_replica(gid, replica);
                }
                self.after_event(id);
            }
        }
    }

    // ----- getters -----

    /// The seed of this run
    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// The configuration of this run
    pub fn config(&self) -> &MultiConfig {
        &self.config
    }

    /// Virtual time now
    pub fn now(&self) -> Instant {
        self.now
    }

    /// All node ids, ascending
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// All group ids, ascending
    pub fn group_ids(&self) -> Vec<GroupId> {
        self.groups.keys().copied().collect()
    }

    /// Group `gid`'s definition
    pub fn group(&self, gid: GroupId) -> Option<&GroupSpec> {
        self.groups.get(&gid)
    }

    /// Whether node `id` is running (not crashed; it may be paused)
    pub fn is_up(&self, id: NodeId) -> bool {
        self.node(id).up
    }

    /// Node `id`'s host, unless the node is down
    pub fn host(&self, id: NodeId) -> Option<&shale_core::node::Host<SimMachines>> {
        self.nodes.get((id as usize).wrapping_sub(1))?.host.as_ref()
    }

    /// `gid`'s replica on `id`, unless that node is down or hosts no replica
    pub fn replica(&self, gid: GroupId, id: NodeId) -> Option<&SimReplica> {
        self.host(id)?.replicas().get(&gid)
    }

    /// The Raft node of `gid`'s replica on `id`, unless that node is down or hosts no replica
    pub fn raft(&self, gid: GroupId, id: NodeId) -> Option<&Raft> {
        Some(self.replica(gid, id)?.raft())
    }

    /// The state machine of `gid`'s replica on `id` ([`ShardController`] or
    /// [`shale_core::group::GroupState`]), if it runs and is an `S`
    pub fn machine<S: 'static>(&self, gid: GroupId, id: NodeId) -> Option<&S> {
        machine::machine(self.replica(gid, id)?).downcast_ref::<S>()
    }

    /// The shard controller of [`CONTROLLER`]'s replica on `id`, if it runs
    pub fn controller(&self, id: NodeId) -> Option<&ShardController> {
        self.machine::<ShardController>(CONTROLLER, id)
    }

    /// The replica of `gid` claiming leadership in the highest term among running nodes
    pub fn leader_of(&self, gid: GroupId) -> Option<NodeId> {
        self.leaders_of(gid)
            .into_iter()
            .max_by_key(|&(_, term)| term)
            .map(|(id, _)| id)
    }

    /// Running replicas of `gid` that claim to lead, as (node, term)
    pub fn leaders_of(&self, gid: GroupId) -> Vec<(NodeId, Term)> {
        self.ids()
            .into_iter()
            .filter_map(|id| self.raft(gid, id))
            .filter(|r| r.role() == Role::Leader)
            .map(|r| (r.id(), r.term()))
            .collect()
    }

    /// Group `gid`'s invariant checker (what is known committed, leaders per term)
    pub fn checker(&self, gid: GroupId) -> Option<&Checker> {
        self.checks.get(&gid).map(|c| &c.checker)
    }

    /// Index of the snapshot durable on `gid`'s disk on node `id` (0 without one)
    pub fn snapshot_index(&self, gid: GroupId, id: NodeId) -> Index {
        self.disk(gid, id).map_or(0, |g| g.disk.snapshot_index())
    }

    /// Snapshots `gid`'s replica on `id` took of its own state machine, and installed from a
    /// leader, over the whole run
    pub fn snapshot_counts(&self, gid: GroupId, id: NodeId) -> (u64, u64) {
        self.disk(gid, id)
            .map_or((0, 0), |g| (g.snapshots_taken, g.installs))
    }

    /// The largest in-memory log (bytes) `gid`'s replica on `id` held after any event
    pub fn peak_log_bytes(&self, gid: GroupId, id: NodeId) -> usize {
        self.disk(gid, id).map_or(0, |g| g.peak_log_bytes)
    }

    /// Bytes durable on `gid`'s disk on node `id` (log and snapshot)
    pub fn stored_bytes(&self, gid: GroupId, id: NodeId) -> usize {
        self.disk(gid, id).map_or(0, |g| g.disk.size_bytes())
    }

    /// Network counters (over every group)
    pub fn network_stats(&self) -> &NetworkStats {
        &self.network.stats
    }

    /// Envelopes that failed to decode or named a group the receiver does not host
    pub fn undecodable(&self) -> u64 {
        self.undecodable
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

    /// The workload's own random stream
    pub fn workload_rng(&mut self) -> &mut Rng {
        &mut self.workload_rng
    }

    /// The fault stream, for tests that pick random victims
    pub fn fault_rng(&mut self) -> &mut Rng {
        &mut self.fault_rng
    }

    /// An error for this run at this time
    pub fn error(&self, message: String) -> SimError {
        SimError {
            seed: self.config.seed,
            message,
            at: self.now,
        }
    }

    pub(crate) fn node(&self, id: NodeId) -> &MultiNode {
        &self.nodes[(id - 1) as usize]
    }

    pub(crate) fn disk(&self, gid: GroupId, id: NodeId) -> Option<&GroupDisk> {
        self.nodes
            .get((id as usize).wrapping_sub(1))?
            .disks
            .get(&gid)
    }

    /// Reports an invariant violation: panics with the seed and the recent trace
    pub(crate) fn fail(&self, message: String) -> ! {
        panic!(
            "INVARIANT VIOLATED: {message}\nseed {seed} at {now}; replay with SHALE_SEED={seed}\nrecent events:\n{tail}",
            seed = self.config.seed,
            now = self.now,
            tail = self.trace.tail()
        );
    }
}

#[cfg(test)]
mod tests;
