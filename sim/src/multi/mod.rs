//! A deterministic simulator of several Raft groups sharing one set of nodes
//!
//! [`MultiSim`] is the multi-group sibling of [`crate::Sim`]: one seed, one virtual clock and
//! one network for every group. Each simulated node hosts a replica of several groups
//! ([`shale_core::rsm::Replica`]s over a kind of state machine chosen by [`MachineSpec`]),
//! each with its own disk on that node. Messages travel as `(group id, message)` envelopes: the
//! group id as a postcard varint, then the message in the [`shale_core::wire`] encoding, so the
//! network counts real bytes.
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
//! message or client request delivered, a timeout, a disk completion): an event starts no
//! earlier than the node's CPU is free, and moves that point on by the service time. An event
//! due while the CPU is busy is deferred, not handled early: a message is put back on the
//! network to arrive when the CPU frees up, and disk completions and timers wait until then.
//! Direct proposals ([`MultiSim::propose`]) are handled at once (the caller expects an
//! answer) but still charged. Nothing else is modelled: the service time does not depend on
//! the event, disk bandwidth stays unlimited, and the nodes' clocks stay as they are.
//!
//! Clients talk to replicas directly ([`MultiSim::propose`], [`MultiSim::take_result`]) or
//! through a [`Clerk`], which retries against whichever replica leads the way a real client
//! would; [`MultiSim::controller_call`] is a clerk call to the controller group.
//!
//! # Sharded clusters
//!
//! A [`MachineSpec::Group`] replica is the core's [`shale_core::group::GroupDriver`] (over a
//! [`Tracked`] group state, see [`SimDriver`]); its poll timer runs alongside the Raft
//! timeouts. What a driver asks of other groups and the controller, and KV clients' requests
//! and replies, travel over the same network as [`AppMessage`]s (see the `route` module: the
//! simulator only routes bytes, the protocol is the core's). [`KvClient`] drives the core's
//! sans-IO clerk; [`ShardedCluster`] builds a controller and replica groups on dedicated nodes,
//! [`KvWorkload`] runs concurrent users and records their history for the linearizability
//! checker, and [`run_sharded_seed`] is the random campaign over all of it.
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
mod workload;

use std::collections::BTreeMap;
use std::fmt;

use shale_core::controller::{GroupId, ShardController};
use shale_core::raft::{Config, Index, NodeId, Raft, Role, Term};
use shale_core::rng::Rng;
use shale_core::time::{Duration, Instant};

pub use campaign::{SHARDED_FAULT_PHASE, ShardedReport, run_sharded_seed};
pub use clerk::{CLERK_POLL, Clerk};
pub use kv::KvClient;
pub use machine::{
    EMPTY_COMMAND_DIGEST, HostedCommand, HostedKind, HostedOutput, MachineSpec, SimDriver, Tracked,
    command_digest_step, command_hash,
};
pub use node::GroupSpec;
pub use route::{APP_CHANNEL, AppMessage, CLIENT_BASE};
pub use sharded::{ShardedCluster, ShardedConfig};
pub use workload::{KvWorkload, Workload};

use check::GroupCheck;
use node::{HostedGroup, MultiNode};

use crate::disk::DiskConfig;
use crate::network::{Network, NetworkConfig, NetworkStats};
use crate::trace::Trace;
use crate::{Checker, SimError};

/// The group id of the shard controller in [`MultiSim::with_controller`]; 0 is never a
/// replica group's id (it means "no group" in a configuration)
pub const CONTROLLER: GroupId = 0;

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
    /// Network behaviour (clerks lose requests and replies at its drop rate too)
    pub network: NetworkConfig,
    /// Disk behaviour
    pub disk: DiskConfig,
    /// Most clock drift per node, in parts per million
    pub clock_drift_ppm_max: u64,
    /// CPU time a node spends on each event it handles; `None` (the default) makes CPU free
    /// (see the CPU model in the module docs)
    pub cpu_per_event: Option<Duration>,
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
        }
    }
}

/// A deterministic simulation of several Raft groups over one set of nodes (see the module
/// docs)
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
    /// Inputs a Raft node refused as `Busy`
    pub(crate) busy_drops: u64,
    /// The next proposal token
    pub(crate) next_token: u64,
    /// Results of proposals, by token: `None` when the proposal was lost
    pub(crate) results: BTreeMap<u64, Option<HostedOutput>>,
    /// The clerk behind [`MultiSim::controller_call`], kept for its leader hint
    pub(crate) controller_clerk: Option<Clerk>,
    pub(crate) buf: Vec<u8>,
    /// Application messages arrived for KV clients, by client address
    pub(crate) client_inbox: BTreeMap<NodeId, Vec<route::AppMessage>>,
    /// Where to send the reply to a client request, by (node, group, token)
    pub(crate) reply_to: BTreeMap<(NodeId, GroupId, u64), NodeId>,
    /// The replica of each group that answered a fetch or delete last (the leader hint)
    pub(crate) answered_last: BTreeMap<GroupId, NodeId>,
    /// Turns of the round-robin routing of group requests, by (target group, lane)
    pub(crate) route_turns: BTreeMap<(GroupId, u64), u64>,
    /// The next KV client session id and network address offset
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
        MultiSim {
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
            busy_drops: 0,
            next_token: 1,
            results: BTreeMap::new(),
            controller_clerk: None,
            buf: Vec::new(),
            client_inbox: BTreeMap::new(),
            reply_to: BTreeMap::new(),
            answered_last: BTreeMap::new(),
            route_turns: BTreeMap::new(),
            next_client: 1,
            config,
        }
    }

    /// `config.nodes` nodes with a shard controller over `shards` shards replicated on
    /// `voters`, as group [`CONTROLLER`]
    pub fn with_controller(config: MultiConfig, voters: &[NodeId], shards: u32) -> Self {
        let mut sim = MultiSim::new(config);
        sim.add_group(CONTROLLER, voters, MachineSpec::Controller { shards });
        sim
    }

    /// Creates group `gid` with a replica on each of `voters` (all voters, fresh disks)
    ///
    /// # Panics
    ///
    /// If the group exists, `voters` is empty or names an unknown node.
    pub fn add_group(&mut self, gid: GroupId, voters: &[NodeId], machine: MachineSpec) {
        assert!(!self.groups.contains_key(&gid), "group {gid} exists");
        assert!(gid != APP_CHANNEL, "group id {gid} is reserved");
        assert!(!voters.is_empty(), "group {gid} needs voters");
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
        for id in voters {
            let node = &mut self.nodes[(id - 1) as usize];
            node.groups.insert(gid, HostedGroup::new());
            if node.up {
                self.boot_replica(id, gid);
                self.after_event(id, gid);
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

    /// The Raft node of `gid`'s replica on `id`, unless that node is down or hosts no replica
    pub fn raft(&self, gid: GroupId, id: NodeId) -> Option<&Raft> {
        let node = self.nodes.get((id as usize).wrapping_sub(1))?;
        Some(node.groups.get(&gid)?.replica.as_ref()?.raft())
    }

    /// The state machine of `gid`'s replica on `id`, if it runs and is an `S`
    pub fn machine<S: 'static>(&self, gid: GroupId, id: NodeId) -> Option<&S> {
        let node = self.nodes.get((id as usize).wrapping_sub(1))?;
        let replica = node.groups.get(&gid)?.replica.as_ref()?;
        replica.machine().downcast_ref::<S>()
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
        self.hosted(gid, id).map_or(0, |g| g.disk.snapshot_index())
    }

    /// Snapshots `gid`'s replica on `id` took of its own state machine, and installed from a
    /// leader, over the whole run
    pub fn snapshot_counts(&self, gid: GroupId, id: NodeId) -> (u64, u64) {
        self.hosted(gid, id)
            .map_or((0, 0), |g| (g.snapshots_taken, g.installs))
    }

    /// The largest in-memory log (bytes) `gid`'s replica on `id` held after any event
    pub fn peak_log_bytes(&self, gid: GroupId, id: NodeId) -> usize {
        self.hosted(gid, id).map_or(0, |g| g.peak_log_bytes)
    }

    /// Network counters (over every group)
    pub fn network_stats(&self) -> &NetworkStats {
        &self.network.stats
    }

    /// Envelopes that failed to decode or named a group the receiver does not host, and
    /// inputs a replica refused as `Busy`
    pub fn dropped_on_arrival(&self) -> (u64, u64) {
        (self.undecodable, self.busy_drops)
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

    /// The workload's own random stream (clerks draw lost requests and replies from it)
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

    pub(crate) fn hosted(&self, gid: GroupId, id: NodeId) -> Option<&HostedGroup> {
        self.nodes
            .get((id as usize).wrapping_sub(1))?
            .groups
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
