//! Simulated nodes hosting replicas of several groups, and booting them from their disks

use std::collections::BTreeMap;

use shale_core::controller::GroupId;
use shale_core::raft::{Index, NodeId, Raft};
use shale_core::time::Instant;

use super::MultiSim;
use super::machine::{Hosted, MachineSpec};
use crate::disk::SimDisk;

/// A group's definition: its voters and its kind of state machine
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSpec {
    /// The nodes hosting a replica, all voters from the start
    pub voters: Vec<NodeId>,
    /// The state machine every replica runs
    pub machine: MachineSpec,
}

/// One node's replica of one group: the running replica (none while the node is down) and
/// the group's disk on that node
pub(crate) struct HostedGroup {
    pub(crate) replica: Option<Box<dyn Hosted>>,
    pub(crate) disk: SimDisk,
    /// Snapshots this replica took of its own state machine
    pub(crate) snapshots_taken: u64,
    /// Snapshots installed from a leader and restored
    pub(crate) installs: u64,
    /// Largest in-memory log (bytes) seen after any event
    pub(crate) peak_log_bytes: usize,
}

impl HostedGroup {
    pub(crate) fn new() -> Self {
        HostedGroup {
            replica: None,
            disk: SimDisk::default(),
            snapshots_taken: 0,
            installs: 0,
            peak_log_bytes: 0,
        }
    }
}

/// One simulated node and the replicas it hosts
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
    /// Replicas by group, in group order (which fixes the order events are handled in)
    pub(crate) groups: BTreeMap<GroupId, HostedGroup>,
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
            groups: BTreeMap::new(),
        }
    }
}

impl MultiSim {
    /// Starts (or restarts) the replica of `gid` on node `id` from its disk: a fresh Raft node
    /// over the recovered state, its state machine restored from the stored snapshot
    pub(crate) fn boot_replica(&mut self, id: NodeId, gid: GroupId) {
        let spec = self.groups[&gid].clone();
        let now = self.local_time(id);
        let seed = self.config.seed;
        let node = &mut self.nodes[(id - 1) as usize];
        let mut config = self.config.raft.clone();
        config.id = id;
        config.seed = seed
            ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ gid.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
            ^ node.restarts;
        let hosted = node.groups.get_mut(&gid).expect("the node hosts the group");
        let recovered = hosted.disk.recovered();
        if let Err(e) = Raft::recover(&recovered) {
            self.fail(format!("g{gid} node {id} cannot recover its own disk: {e}"));
        }
        let raft = match Raft::new(config, &spec.voters, recovered, now) {
            Ok(raft) => raft,
            Err(e) => panic!("invalid raft config in the simulation: {e}"),
        };
        let mut replica = spec.machine.build(raft, now);
        if let Some(meta) = hosted.disk.snapshot.meta.clone()
            && !replica.restore(&hosted.disk.snapshot.data)
        {
            self.fail(format!(
                "g{gid} node {id} cannot restore its stored snapshot {}",
                meta.last
            ));
        }
        let kind = replica.kind();
        let from = hosted.disk.snapshot.meta.as_ref().map(|m| m.last);
        hosted.replica = Some(replica);
        self.trace.record(format!(
            "{} g{gid} n{id} boot {kind} (snapshot {from:?})",
            self.now
        ));
        self.check_replica(id, gid);
    }

    /// Checks the state machine of `gid`'s replica on `id` against the committed log
    pub(crate) fn check_replica(&mut self, id: NodeId, gid: GroupId) {
        let node = &self.nodes[(id - 1) as usize];
        let Some(replica) = node.groups.get(&gid).and_then(|g| g.replica.as_ref()) else {
            return;
        };
        if replica.restore_wanted().is_some() {
            return; // the state machine is stale until the snapshot is restored
        }
        let applied: Index = replica.raft().applied_index();
        let (digest, _) = replica.digest();
        let check = self
            .checks
            .get_mut(&gid)
            .expect("every group has a checker");
        if let Err(e) = check.check_state(id, applied, digest) {
            self.fail(format!("g{gid}: {e}"));
        }
    }
}
