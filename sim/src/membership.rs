//! Membership changes and leadership transfer in the simulator: brand-new nodes join with an
//! empty disk, the leader changes the membership (joint consensus, left automatically) or hands
//! leadership over, and a random membership fault for campaigns
//!
//! Nodes are never taken out of the simulation: a node removed from the group keeps running
//! (until a test crashes it), which is the harshest case for the group, since it must not be
//! disrupted by it. [`Sim::ids`] lists every node ever added; [`Sim::settled_membership`] says
//! who belongs to the group.

use shale_core::raft::{ChangeError, EntryKind, LogId, Membership, NodeId, Raft, TransferError};
use shale_core::rng::Rng;
use shale_core::time::Duration;

use crate::cluster::{Sim, SimError, SimNode};

/// Most nodes [`inject_membership_fault`] lets a simulation grow to
pub const MAX_NODES: usize = 12;
/// Fewest voters [`inject_membership_fault`] leaves when it removes one
pub const MIN_VOTERS: usize = 3;
/// Most voters [`inject_membership_fault`] promotes or adds up to
pub const MAX_VOTERS: usize = 7;

impl Sim {
    /// Adds a brand-new node with an empty disk that knows no voters; returns its id (one above
    /// the highest id so far)
    ///
    /// It campaigns for nothing until a leader adds it to the group and it learns the
    /// membership from the leader's log or snapshot. It can reach every node except those cut
    /// off by [`Sim::disconnect`] (partitions set up earlier do not cover it). Its clock drift
    /// comes from a stream of its own, so adding nodes disturbs no other random stream.
    pub fn add_node(&mut self) -> NodeId {
        let id = self.nodes.len() as NodeId + 1;
        let max = self.config.clock_drift_ppm_max;
        let mut rng =
            Rng::new(self.config.seed ^ 0x4a4f_494e ^ id.wrapping_mul(0xA076_1D64_78BD_642F));
        let drift_ppm = rng.range(0, 2 * max + 1) as i64 - max as i64;
        self.nodes.push(SimNode::new(id, drift_ppm));
        self.network.add_node();
        for other in self.ids() {
            if other != id && !self.is_connected(other) {
                self.network.set_cut(id, other, true);
                self.network.set_cut(other, id, true);
            }
        }
        self.boot(id);
        self.trace.record(format!("{} n{id} JOIN", self.now));
        self.after_event(id);
        id
    }

    /// Asks node `id` to change the membership to `voters` and `learners` (see
    /// [`Raft::change_membership`]); a crashed or unknown node answers `NotLeader`
    pub fn change_membership(
        &mut self,
        id: NodeId,
        voters: &[NodeId],
        learners: &[NodeId],
    ) -> Result<LogId, ChangeError> {
        if !self.is_up(id) {
            return Err(ChangeError::NotLeader { hint: None });
        }
        let now = self.local_time(id);
        let raft = self.nodes[(id - 1) as usize].raft.as_mut().expect("is up");
        let result = raft.change_membership(now, voters, learners);
        if let Ok(log_id) = result {
            self.trace.record(format!(
                "{} n{id} change membership {log_id} voters={voters:?} learners={learners:?}",
                self.now
            ));
        }
        self.after_event(id);
        result
    }

    /// Asks node `id` to hand leadership to `to` (see [`Raft::transfer_leader`]); a crashed or
    /// unknown node answers `NotLeader`
    pub fn transfer_leader(&mut self, id: NodeId, to: NodeId) -> Result<(), TransferError> {
        if !self.is_up(id) {
            return Err(TransferError::NotLeader { hint: None });
        }
        let now = self.local_time(id);
        let raft = self.nodes[(id - 1) as usize].raft.as_mut().expect("is up");
        let result = raft.transfer_leader(now, to);
        if result.is_ok() {
            self.trace
                .record(format!("{} n{id} transfer leadership to n{to}", self.now));
        }
        self.after_event(id);
        result
    }

    /// The membership node `id` holds (the latest configuration in its log), unless crashed
    pub fn membership(&self, id: NodeId) -> Option<&Membership> {
        self.node(id).map(Raft::membership)
    }

    /// The current leader's membership once it is committed and not joint: nothing is under
    /// way. `None` without a leader or while a change is in progress.
    pub fn settled_membership(&self) -> Option<Membership> {
        let raft = self.node(self.leader()?)?;
        let m = raft.membership();
        let latest = raft
            .entries(raft.first_index(), raft.last_index())
            .iter()
            .rev()
            .find(|e| e.kind == EntryKind::Membership)
            .map_or(0, |e| e.index);
        (!m.is_joint() && latest <= raft.commit_index()).then(|| m.clone())
    }

    /// Learners the leader knows to hold everything committed (they can be promoted now)
    pub fn caught_up_learners(&self) -> Vec<NodeId> {
        let Some(raft) = self.leader().and_then(|l| self.node(l)) else {
            return Vec::new();
        };
        let commit = raft.commit_index();
        raft.membership()
            .learners()
            .iter()
            .copied()
            .filter(|&l| raft.progress(l).is_some_and(|p| p.match_index >= commit))
            .collect()
    }

    /// Asks the current leader to add a brand-new node as a learner; the node is created only
    /// if the leader accepts. Returns its id.
    pub fn add_learner(&mut self) -> Result<NodeId, ChangeError> {
        let leader = self.leader().ok_or(ChangeError::NotLeader { hint: None })?;
        let m = self.membership(leader).cloned().unwrap_or_default();
        let id = self.nodes.len() as NodeId + 1;
        let learners = with(m.learners(), id);
        self.change_membership(leader, m.voters(), &learners)?;
        Ok(self.add_node())
    }

    /// Asks the current leader to make learner `id` a voter
    pub fn promote(&mut self, id: NodeId) -> Result<LogId, ChangeError> {
        let leader = self.leader().ok_or(ChangeError::NotLeader { hint: None })?;
        let m = self.membership(leader).cloned().unwrap_or_default();
        let voters = with(m.voters(), id);
        self.change_membership(leader, &voters, &without(m.learners(), id))
    }

    /// Asks the current leader to remove node `id` (voter or learner) from the group; the node
    /// keeps running
    pub fn remove_member(&mut self, id: NodeId) -> Result<LogId, ChangeError> {
        let leader = self.leader().ok_or(ChangeError::NotLeader { hint: None })?;
        let m = self.membership(leader).cloned().unwrap_or_default();
        self.change_membership(leader, &without(m.voters(), id), &without(m.learners(), id))
    }

    /// Runs until the group's membership has settled on `voters` and `learners` (the leader
    /// committed it, joint configuration left) and every running member holds it
    pub fn wait_for_membership(
        &mut self,
        voters: &[NodeId],
        learners: &[NodeId],
        budget: Duration,
    ) -> Result<(), SimError> {
        let target = Membership::with_learners(voters, learners);
        let what = format!("the membership to settle on voters {voters:?} learners {learners:?}");
        self.run_until(budget, &what, |s| {
            s.settled_membership().as_ref() == Some(&target)
                && target
                    .members()
                    .iter()
                    .all(|&id| s.membership(id).is_none_or(|m| *m == target))
        })
    }

    /// Heals the network, resumes and restarts every stopped node (members or not), then checks
    /// that the group converges: the membership settles, a fresh entry is applied on every
    /// member within `budget`, and no node applied beyond what is committed. Returns the
    /// settled membership. The membership-aware counterpart of
    /// [`Sim::check_liveness_after_heal`]: removed nodes need not apply anything.
    pub fn check_members_converge(&mut self, budget: Duration) -> Result<Membership, SimError> {
        self.heal();
        for id in self.ids() {
            if !self.is_up(id) {
                self.restart(id);
            }
            if self.is_paused(id) {
                self.resume(id);
            }
        }
        let end = self.now + budget;
        self.run_until(budget, "the membership to settle", |s| {
            s.settled_membership().is_some()
        })?;
        let mut probe = 0u64;
        loop {
            let remaining =
                Duration::from_micros(end.as_micros().saturating_sub(self.now.as_micros()));
            if remaining == Duration::ZERO {
                return Err(self.error(format!("members did not converge within {budget}")));
            }
            probe += 1;
            let data = format!("membership probe {probe}");
            let Ok((_, log_id)) = self.propose_to_leader(data.as_bytes()) else {
                self.run_for(Duration::from_millis(50).min(remaining));
                continue;
            };
            let wait = Duration::from_secs(2).min(remaining);
            let applied = self.run_until(wait, "the probe on every member", |s| {
                s.applied_by_members(log_id)
            });
            if applied.is_ok() {
                break;
            }
        }
        let committed = self.checker.commit_index();
        for id in self.ids() {
            let applied = self.app(id).applied;
            if applied > committed {
                return Err(self.error(format!(
                    "node {id} applied {applied} but only {committed} are committed"
                )));
            }
        }
        self.settled_membership()
            .ok_or_else(|| self.error("the membership changed again".into()))
    }

    /// Whether the membership is settled and every member applied the entry `log_id`
    fn applied_by_members(&self, log_id: LogId) -> bool {
        let Some(m) = self.settled_membership() else {
            return false;
        };
        let (_, entry) = self.n_committed(log_id.index);
        entry.is_some_and(|e| e.log_id() == log_id)
            && m.members()
                .iter()
                .all(|&id| self.is_up(id) && self.app(id).applied >= log_id.index)
    }

    /// Whether node `id` ever led a term from `from_term` on (per the invariant checker)
    pub fn led_since(&self, id: NodeId, from_term: u64) -> bool {
        let last = self
            .nodes
            .iter()
            .filter_map(|n| n.raft.as_ref().map(Raft::term))
            .max()
            .unwrap_or(0);
        (from_term..=last).any(|t| self.checker.leader_of(t) == Some(id))
    }
}

/// `ids` with `id` added (sorted, no duplicates)
fn with(ids: &[NodeId], id: NodeId) -> Vec<NodeId> {
    let mut v = ids.to_vec();
    if !v.contains(&id) {
        v.push(id);
        v.sort_unstable();
    }
    v
}

/// `ids` without `id`
fn without(ids: &[NodeId], id: NodeId) -> Vec<NodeId> {
    ids.iter().copied().filter(|&x| x != id).collect()
}

/// Injects one random membership fault through the current leader (draws from
/// [`Sim::fault_rng`]): adds a learner, promotes a caught-up learner, removes a voter (perhaps
/// the leader), replaces a voter (by a caught-up learner or a brand-new node), or transfers
/// leadership to another voter. Does nothing without a leader or while a change is under way;
/// a change the leader refuses is simply dropped. Keeps [`MIN_VOTERS`]..=[`MAX_VOTERS`] voters
/// and at most [`MAX_NODES`] nodes. Returns what it did, for the trace or a report.
pub fn inject_membership_fault(sim: &mut Sim) -> Option<String> {
    let choice = sim.fault_rng().below(5);
    let pick = sim.fault_rng().next_u64();
    let leader = sim.leader()?;
    let m = sim.membership(leader)?.clone();
    let choose =
        |ids: &[NodeId]| (!ids.is_empty()).then(|| ids[(pick % ids.len() as u64) as usize]);
    let room = sim.ids().len() < MAX_NODES;
    let (voters, learners) = (m.voters(), m.learners());
    let what = match choice {
        0 if room => sim
            .add_learner()
            .ok()
            .map(|id| format!("add learner n{id}")),
        1 if voters.len() < MAX_VOTERS => {
            let id = choose(&sim.caught_up_learners())?;
            sim.promote(id).ok().map(|_| format!("promote n{id}"))
        }
        2 if voters.len() > MIN_VOTERS => {
            let id = choose(voters)?;
            sim.remove_member(id).ok().map(|_| format!("remove n{id}"))
        }
        3 => {
            let victim = choose(voters)?;
            let (new, fresh) = match choose(&sim.caught_up_learners()) {
                Some(l) => (l, false),
                None if room => (sim.ids().len() as NodeId + 1, true),
                None => return None,
            };
            let target = with(&without(voters, victim), new);
            sim.change_membership(leader, &target, &without(learners, new))
                .ok()?;
            if fresh {
                sim.add_node();
            }
            Some(format!("replace n{victim} by n{new}"))
        }
        4 => {
            let others = without(voters, leader);
            let to = choose(&others)?;
            sim.transfer_leader(leader, to)
                .ok()
                .map(|()| format!("transfer n{leader} -> n{to}"))
        }
        _ => None,
    }?;
    let role = sim.node(leader).map(Raft::role);
    sim.trace.record(format!(
        "{} MEMBERSHIP FAULT {what} (leader n{leader} now {role:?})",
        sim.now
    ));
    Some(what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::SimConfig;

    /// A run that never adds nodes replays as before; one that does stays deterministic
    #[test]
    fn membership_faults_are_deterministic() {
        let run = |seed: u64| {
            let mut sim = Sim::new(SimConfig::new(seed, 3));
            let mut done = Vec::new();
            for _ in 0..40 {
                sim.run_for(Duration::from_millis(300));
                let _ = sim.propose_to_leader(b"x");
                done.extend(inject_membership_fault(&mut sim));
            }
            let m = sim.check_members_converge(Duration::from_secs(30));
            (done, sim.trace_hash(), m.map_err(|e| e.to_string()))
        };
        let a = run(5);
        assert!(a.2.is_ok(), "{:?}", a.2);
        assert!(!a.0.is_empty());
        assert_eq!(a, run(5));
    }
}
