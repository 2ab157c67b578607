//! Faults the simulator injects: crashes, restarts, pauses, cut links and partitions

use shale_core::raft::NodeId;

use crate::cluster::Sim;
use crate::network::NetworkConfig;

impl Sim {
    /// Crashes node `id`: it stops, and its disk keeps only what was durable (perhaps with the
    /// oldest pending write torn)
    pub fn crash(&mut self, id: NodeId) {
        let i = (id - 1) as usize;
        if self.nodes[i].raft.take().is_some() {
            let cfg = self.config.disk.clone();
            self.nodes[i].disk.crash(&cfg, &mut self.disk_rng);
            self.nodes[i].paused = false;
            self.trace.record(format!("{} n{id} CRASH", self.now));
        }
    }

    /// Restarts a crashed node from its durable state (a running node is crashed first)
    pub fn restart(&mut self, id: NodeId) {
        self.crash(id);
        let i = (id - 1) as usize;
        self.nodes[i].restarts += 1;
        let durable_term = self.nodes[i].disk.hard_state.term;
        self.checker.on_restart(id, durable_term);
        self.boot(id);
        self.trace.record(format!("{} n{id} RESTART", self.now));
        self.after_event(id);
    }

    /// Pauses node `id`: no timers fire and arriving messages wait until [`Sim::resume`]
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
        self.nodes[(id - 1) as usize].paused
    }

    /// Cuts every link to and from node `id`
    pub fn disconnect(&mut self, id: NodeId) {
        let ids = self.ids();
        self.network.set_links_of(id, &ids, true, |_| true);
        self.nodes[(id - 1) as usize].disconnected = true;
        self.trace.record(format!("{} n{id} DISCONNECT", self.now));
    }

    /// Reconnects node `id` to every node that is not disconnected itself (the nodes it can
    /// reach again are those still in the connected set, as in the classic lab harness)
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

    /// Whether node `id` is not cut off by [`Sim::disconnect`] (partitions do not count)
    pub fn is_connected(&self, id: NodeId) -> bool {
        !self.nodes[(id - 1) as usize].disconnected
    }

    /// Whether messages from `from` to `to` currently get through the cut links
    pub fn link_up(&self, from: NodeId, to: NodeId) -> bool {
        !self.network.is_cut(from, to)
    }

    /// Splits the nodes into groups that hear only each other; unlisted nodes are isolated
    pub fn partition(&mut self, groups: &[&[NodeId]]) {
        let ids = self.ids();
        self.network.partition(&ids, groups);
        self.trace
            .record(format!("{} PARTITION {groups:?}", self.now));
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
        self.network.config = config;
    }
}
