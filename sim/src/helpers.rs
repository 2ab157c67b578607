//! Conveniences for scenario tests: waiting for leaders and for agreement, and watching
//! snapshots and compaction

use shale_core::raft::{Index, LogId, NodeId, ProposeError, Role};
use shale_core::time::Duration;

use crate::app::SimApp;
use crate::cluster::{Sim, SimError};
use shale_core::raft::{Raft, SnapshotMeta};

impl Sim {
    /// The index node `id`'s state machine was last loaded from a snapshot at (0 if it started
    /// empty); [`Sim::applied`] starts after it
    pub fn applied_base(&self, id: NodeId) -> Index {
        self.nodes[(id - 1) as usize].applied_base
    }

    /// The state machine of node `id` (as it was at the crash, for a crashed node)
    pub fn app(&self, id: NodeId) -> &SimApp {
        &self.nodes[(id - 1) as usize].app
    }

    /// The snapshot durable on node `id`'s disk, if any
    pub fn durable_snapshot(&self, id: NodeId) -> Option<&SnapshotMeta> {
        self.nodes[(id - 1) as usize].disk.snapshot.meta.as_ref()
    }

    /// Last index of the snapshot durable on node `id`'s disk (0 without one)
    pub fn snapshot_index(&self, id: NodeId) -> Index {
        self.nodes[(id - 1) as usize].disk.snapshot_index()
    }

    /// Bytes on node `id`'s disk: its durable log (payload plus fixed overhead per entry) and
    /// its snapshot data
    pub fn durable_size(&self, id: NodeId) -> usize {
        self.nodes[(id - 1) as usize].disk.size_bytes()
    }

    /// Bytes of the log node `id` holds in memory (0 while crashed)
    pub fn log_bytes(&self, id: NodeId) -> usize {
        self.node(id).map_or(0, Raft::log_bytes)
    }

    /// The largest in-memory log (bytes) node `id` held after any event so far
    pub fn peak_log_bytes(&self, id: NodeId) -> usize {
        self.nodes[(id - 1) as usize].peak_log_bytes
    }

    /// Snapshots node `id` installed from a leader (InstallSnapshot) and restored, over the
    /// whole run
    pub fn snapshots_installed(&self, id: NodeId) -> u64 {
        self.nodes[(id - 1) as usize].installs
    }

    /// Snapshots node `id` took of its own state machine, over the whole run
    pub fn snapshots_taken(&self, id: NodeId) -> u64 {
        self.nodes[(id - 1) as usize].snapshots_taken
    }

    /// Nodes that are running, not paused, and not disconnected
    pub fn connected_nodes(&self) -> Vec<NodeId> {
        self.ids()
            .into_iter()
            .filter(|&id| self.is_up(id) && !self.is_paused(id) && self.is_connected(id))
            .collect()
    }

    /// The leader of the highest term among `among`, if one of them claims it
    pub fn leader_among(&self, among: &[NodeId]) -> Option<NodeId> {
        among
            .iter()
            .filter_map(|&id| self.node(id))
            .filter(|r| r.role() == Role::Leader)
            .max_by_key(|r| r.term())
            .map(|r| r.id())
    }

    /// Runs until a connected node leads, and returns it
    pub fn wait_for_leader(&mut self, budget: Duration) -> Result<NodeId, SimError> {
        self.wait_for_leader_among(&self.connected_nodes(), budget)
    }

    /// Runs until one of `among` leads, and returns it
    pub fn wait_for_leader_among(
        &mut self,
        among: &[NodeId],
        budget: Duration,
    ) -> Result<NodeId, SimError> {
        let among = among.to_vec();
        self.run_until(budget, "a leader", |s| s.leader_among(&among).is_some())?;
        self.leader_among(&among)
            .ok_or_else(|| self.error("no leader".into()))
    }

    /// `Err` if any connected node claims to lead
    pub fn check_no_leader(&self) -> Result<(), SimError> {
        let connected = self.connected_nodes();
        match self.leader_among(&connected) {
            None => Ok(()),
            Some(id) => Err(self.error(format!("node {id} leads although no quorum is connected"))),
        }
    }

    /// The common term of the connected nodes, or `Err` if they disagree
    pub fn check_terms(&self) -> Result<u64, SimError> {
        let terms: Vec<u64> = self
            .connected_nodes()
            .iter()
            .filter_map(|&id| self.node(id).map(|r| r.term()))
            .collect();
        match terms.first() {
            Some(&t) if terms.iter().all(|&x| x == t) => Ok(t),
            _ => Err(self.error(format!("connected nodes disagree on the term: {terms:?}"))),
        }
    }

    /// Proposes `data` on whichever connected node leads, until `expected` nodes have applied it;
    /// returns its index. Without `retry`, a proposal lost to a leader change is a failure.
    /// Mirrors the classic `one()` of the Raft lab tests.
    pub fn one(
        &mut self,
        data: &[u8],
        expected: usize,
        retry: bool,
        budget: Duration,
    ) -> Result<Index, SimError> {
        let deadline = self.now() + budget;
        while self.now() < deadline {
            let connected = self.connected_nodes();
            let mut proposed: Option<LogId> = None;
            for id in connected {
                if let Ok(log_id) = self.propose(id, data) {
                    proposed = Some(log_id);
                    break;
                }
            }
            if let Some(log_id) = proposed {
                let wait = Duration::from_secs(2).min(Duration::from_micros(
                    deadline.as_micros().saturating_sub(self.now().as_micros()),
                ));
                let agreed = self.run_until(wait, "agreement", |s| {
                    let (count, entry) = s.n_committed(log_id.index);
                    count >= expected && entry.is_some_and(|e| e.log_id() == log_id)
                });
                if agreed.is_ok() {
                    return Ok(log_id.index);
                }
                let (count, entry) = self.n_committed(log_id.index);
                if !retry {
                    return Err(self.error(format!(
                        "one({data:?}) at {log_id}: {count} of {expected} nodes applied it (entry there: {:?})",
                        entry.map(|e| e.log_id())
                    )));
                }
            } else {
                self.run_for(Duration::from_millis(50));
            }
        }
        Err(self.error(format!(
            "one({data:?}) failed to reach agreement on {expected} nodes within {budget}"
        )))
    }

    /// Runs until `expected` nodes have applied the entry `log_id`
    pub fn wait_applied(
        &mut self,
        log_id: LogId,
        expected: usize,
        budget: Duration,
    ) -> Result<(), SimError> {
        self.run_until(budget, "the entry to be applied", |s| {
            let (count, entry) = s.n_committed(log_id.index);
            count >= expected && entry.is_some_and(|e| e.log_id() == log_id)
        })
    }

    /// Proposes on the current leader, if there is one
    pub fn propose_to_leader(&mut self, data: &[u8]) -> Result<(NodeId, LogId), ProposeError> {
        let Some(leader) = self.leader() else {
            return Err(ProposeError::NotLeader { hint: None });
        };
        self.propose(leader, data).map(|id| (leader, id))
    }

    /// Crashes every node, then restarts them all
    pub fn restart_all(&mut self) {
        for id in self.ids() {
            self.crash(id);
        }
        for id in self.ids() {
            self.restart(id);
        }
    }

    /// Heals the network, resumes and restarts every stopped node, then checks that the group
    /// converges: a fresh entry is applied on every node within `budget`, and all nodes hold
    /// the same applied prefix
    pub fn check_liveness_after_heal(&mut self, budget: Duration) -> Result<(), SimError> {
        self.heal();
        for id in self.ids() {
            if !self.is_up(id) {
                self.restart(id);
            }
            if self.is_paused(id) {
                self.resume(id);
            }
        }
        let n = self.ids().len();
        self.one(b"liveness probe", n, true, budget)?;
        let committed = self.checker().commit_index();
        for id in self.ids() {
            let applied = self.app(id).applied;
            if applied > committed {
                return Err(self.error(format!(
                    "node {id} applied {applied} but only {committed} are committed"
                )));
            }
        }
        Ok(())
    }
}
