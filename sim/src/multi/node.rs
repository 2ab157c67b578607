//! Simulated nodes: each runs the core's [`Host`] over the replicas it hosts, each group's
//! replica with its own disk on that node, and boots them from those disks

use std::collections::BTreeMap;

use shale_core::controller::GroupId;
use shale_core::node::{Host, HostConfig, WalDone};
use shale_core::raft::{NodeId, Raft};
use shale_core::time::Instant;

use super::machine::{MachineSpec, SimMachines, kind};
use super::{CONTROLLER, MultiSim};
use crate::disk::SimDisk;

/// Tokens one boot of a node may hand out before they could meet the next boot's
const TOKENS_PER_BOOT: u64 = 1 << 40;

/// A group's definition: its voters and its kind of state machine
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSpec {
    /// The nodes hosting a replica, all voters from the start
    pub voters: Vec<NodeId>,
    /// The state machine every replica runs
    pub machine: MachineSpec,
}

/// One node's disk for one group, and what happened on it
#[derive(Debug, Default)]
pub(crate) struct GroupDisk {
    pub(crate) disk: SimDisk,
    /// Snapshots this replica took of its own state machine
    pub(crate) snapshots_taken: u64,
    /// Snapshots installed from a leader and read back for restoring
    pub(crate) installs: u64,
    /// Largest in-memory log (bytes) seen after any event
    pub(crate) peak_log_bytes: usize,
}

/// One simulated node: its host (none while it is down) and its disks
pub(crate) struct MultiNode {
    pub(crate) id: NodeId,
    /// Running (not crashed)
    pub(crate) up: bool,
    pub(crate) paused: bool,
    /// Cut off from every other node by [`MultiSim::disconnect`]
    pub(crate) disconnected: bool,
    /// Clock drift in parts per million (positive: this node's clock runs fast)
    pub(crate) drift_ppm: i64,
    /// Times this node was restarted
    pub(crate) restarts: u64,
    /// When this node's CPU is next free (stays at zero without a CPU model)
    pub(crate) cpu_free_at: Instant,
    /// Every replica of this node, with the application protocol between them
    pub(crate) host: Option<Host<SimMachines>>,
    /// Each hosted group's disk, in group order
    pub(crate) disks: BTreeMap<GroupId, GroupDisk>,
    /// Storage and worker answers due at a time (chunk reads, snapshots built or decoded),
    /// in order of time, then of submission
    pub(crate) work: BTreeMap<(Instant, u64), Work>,
    /// Submissions so far (orders work due at the same time)
    pub(crate) submitted: u64,
}

/// Work a node's storage or snapshot worker finishes at a time
pub(crate) enum Work {
    /// Report this
    Done(WalDone),
    /// A snapshot was encoded: store it unless the disk holds a newer one, then report
    SnapshotBuilt {
        gid: GroupId,
        meta: shale_core::raft::SnapshotMeta,
        bytes: Vec<u8>,
    },
}

impl MultiNode {
    /// Schedules `work` to finish at `at`
    pub(crate) fn schedule(&mut self, at: Instant, work: Work) {
        self.submitted += 1;
        self.work.insert((at, self.submitted), work);
    }

    /// When the next work finishes
    pub(crate) fn next_work(&self) -> Option<Instant> {
        self.work.keys().next().map(|(at, _)| *at)
    }
}

impl MultiNode {
    pub(crate) fn new(id: NodeId, drift_ppm: i64) -> Self {
        MultiNode {
            id,
            up: true,
            paused: false,
            disconnected: false,
            drift_ppm,
            restarts: 0,
            cpu_free_at: Instant::ZERO,
            host: None,
            disks: BTreeMap::new(),
            work: BTreeMap::new(),
            submitted: 0,
        }
    }
}

impl MultiSim {
    /// The host settings of node `id`
    fn host_config(&self, id: NodeId) -> HostConfig {
        let voters = self
            .groups
            .get(&CONTROLLER)
            .map(|g| g.voters.clone())
            .unwrap_or_default();
        let shards = self
            .groups
            .values()
            .next()
            .map_or(0, |g| g.machine.shards());
        let mut config = HostConfig::new(id, voters, shards);
        let restarts = self.nodes[(id - 1) as usize].restarts;
        config.first_token = (restarts + 1).saturating_mul(TOKENS_PER_BOOT);
        config.leader_balance_interval = self.config.leader_balance_interval;
        config
    }

    /// Starts (or restarts) node `id`'s host over every group it hosts, each recovered from
    /// its disk (a fresh Raft node, the state machine restored from the stored snapshot)
    pub(crate) fn boot_node(&mut self, id: NodeId) {
        let now = self.local_time(id);
        let config = self.host_config(id);
        let gids: Vec<GroupId> = self.nodes[(id - 1) as usize]
            .disks
            .keys()
            .copied()
            .collect();
        let mut host = Host::new(config, BTreeMap::new(), now);
        for gid in gids {
            let replica = self.boot_replica(id, gid, now);
            host.add_replica(gid, replica);
        }
        self.nodes[(id - 1) as usize].host = Some(host);
    }

    /// A replica of `gid` on node `id`, recovered from its disk
    pub(crate) fn boot_replica(
        &mut self,
        id: NodeId,
        gid: GroupId,
        now: Instant,
    ) -> super::machine::SimReplica {
        let spec = self.groups[&gid].clone();
        let seed = self.config.seed;
        let node = &self.nodes[(id - 1) as usize];
        let mut config = self.config.raft.clone();
        config.id = id;
        config.seed = seed
            ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ gid.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
            ^ node.restarts;
        let disk = &node.disks[&gid].disk;
        let recovered = disk.recovered();
        if let Err(e) = Raft::recover(&recovered) {
            self.fail(format!("g{gid} node {id} cannot recover its own disk: {e}"));
        }
        let raft = match Raft::new(config, &spec.voters, recovered, now) {
            Ok(raft) => raft,
            Err(e) => panic!("invalid raft config in the simulation: {e}"),
        };
        let mut replica = spec.machine.build(raft, now);
        if let Some(meta) = disk.snapshot.meta.clone()
            && !replica.restore(&disk.snapshot.data)
        {
            self.fail(format!(
                "g{gid} node {id} cannot restore its stored snapshot {}",
                meta.last
            ));
        }
        let from = disk.snapshot.meta.as_ref().map(|m| m.last);
        self.trace.record(format!(
            "{} g{gid} n{id} boot {} (snapshot {from:?})",
            self.now,
            kind(&replica)
        ));
        replica
    }
}
