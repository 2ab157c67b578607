//! Faults: crashes and restarts of whole nodes (every group on them), pauses, cut links and
//! partitions between nodes, and the network's behaviour

use shale_core::controller::GroupId;
use shale_core::raft::NodeId;

use super::MultiSim;
use crate::network::NetworkConfig;

impl MultiSim {
    /// Crashes node `id`: its host stops, and each group's disk keeps only what was durable
    /// (the oldest pending write perhaps torn)
    pub fn crash(&mut self, id: NodeId) {
        let node = &mut self.nodes[(id - 1) as usize];
        if !node.up {
            return;
        }
        node.up = false;
        node.paused = false;
        node.host = None;
        node.work.clear();
        for g in node.disks.values_mut() {
            g.disk.crash(&self.config.disk, &mut self.disk_rng);
        }
        self.trace.record(format!("{} n{id} CRASH", self.now));
    }

    /// Restarts node `id` (crashing it first if it runs): its host recovers every group it
    /// hosts from its disks
    pub fn restart(&mut self, id: NodeId) {
        self.crash(id);
        let node = &mut self.nodes[(id - 1) as usize];
        node.restarts += 1;
        node.up = true;
        let terms: Vec<(GroupId, u64)> = node
            .disks
            .iter()
            .map(|(&gid, g)| (gid, g.disk.hard_state.term))
            .collect();
        for (gid, term) in terms {
            if let Some(check) = self.checks.get_mut(&gid) {
                check.on_restart(id, term);
            }
        }
        self.boot_node(id);
        self.trace.record(format!("{} n{id} RESTART", self.now));
        self.after_event(id);
    }

    /// Pauses node `id`: no timers fire and arriving messages wait until [`MultiSim::resume`]
    pub fn pause(&mut self, id: NodeId) {
        self.nodes[(id - 1) as usize].paused = true;
        self.trace.record(format!("{} n{id} PAUSE", self.now));
    }

    /// Resumes a paused node; it sees all the time that passed at once
    pub fn resume(&mut self, id: NodeId) {
        self.nodes[(id - 1) as usize].paused = false;
        self.trace.record(format!("{} n{id} RESUME", self.now));
    }

    /// Whether node `id` is paused
    pub fn is_paused(&self, id: NodeId) -> bool {
        self.node(id).paused
    }

    /// Cuts every link to and from node `id`
    pub fn disconnect(&mut self, id: NodeId) {
        let ids = self.ids();
        self.network.set_links_of(id, &ids, true, |_| true);
        self.nodes[(id - 1) as usize].disconnected = true;
        self.trace.record(format!("{} n{id} DISCONNECT", self.now));
    }

    /// Reconnects node `id` to every node that is not disconnected itself
    pub fn connect(&mut self, id: NodeId) {
        self.nodes[(id - 1) as usize].disconnected = false;
        let ids = self.ids();
        let connected: Vec<NodeId> = ids
            .iter()
            .copied()
            .filter(|&o| self.is_connected(o))
            .collect();
        self.network
            .set_links_of(id, &ids, false, |o| connected.contains(&o));
        self.trace.record(format!("{} n{id} CONNECT", self.now));
    }

    /// Whether node `id` is not cut off by [`MultiSim::disconnect`] (partitions do not count)
    pub fn is_connected(&self, id: NodeId) -> bool {
        !self.node(id).disconnected
    }

    /// Whether messages from `from` to `to` currently get through the cut links
    pub fn link_up(&self, from: NodeId, to: NodeId) -> bool {
        !self.network.is_cut(from, to)
    }

    /// Splits the nodes into sets that hear only each other; unlisted nodes are isolated
    pub fn partition(&mut self, sets: &[&[NodeId]]) {
        let ids = self.ids();
        self.network.partition(&ids, sets);
        self.trace
            .record(format!("{} PARTITION {sets:?}", self.now));
    }

    /// Cuts (or restores) the one-way link `from -> to`
    pub fn set_link(&mut self, from: NodeId, to: NodeId, up: bool) {
        self.network.set_cut(from, to, !up);
        self.trace.record(format!(
            "{} LINK {from}->{to} {}",
            self.now,
            if up { "up" } else { "down" }
        ));
    }

    /// Restores every link
    pub fn heal(&mut self) {
        self.network.heal();
        for n in &mut self.nodes {
            n.disconnected = false;
        }
        self.trace.record(format!("{} HEAL", self.now));
    }

    /// Changes how the network behaves from now on
    pub fn set_network(&mut self, config: NetworkConfig) {
        self.network.config = config.clone();
        self.config.network = config;
    }
}
