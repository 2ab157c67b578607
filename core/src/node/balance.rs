//! Leader balancing: each group's leadership settles on one chosen voter, so the leaders of
//! a node's groups spread over the nodes
//!
//! A cluster-aware client sends each key to the node that leads its group, so a node that led
//! every group would take all the load while the others only replicate. When
//! [`HostConfig::leader_balance_interval`](super::HostConfig::leader_balance_interval) is set,
//! every such interval each leader that is not its group's *preferred* voter hands leadership
//! to that voter, but only when it is reachable now and holds the whole log, so a transfer
//! (which holds proposals for at most an election timeout) is only tried when it can
//! succeed at once. The preferred voter never hands leadership away, so leadership moves at
//! most once per group and never back and forth; when the preferred voter is down, the group
//! keeps whoever won the election.

use crate::controller::GroupId;
use crate::raft::{NodeId, Role};
use crate::time::Instant;

use super::host::Host;
use super::machines::HostMachines;

/// The voter that should lead group `gid`: the voters in ascending order, the
/// `gid`-th one (wrapping), so consecutive groups prefer consecutive nodes
pub fn preferred_leader(gid: GroupId, voters: &[NodeId]) -> Option<NodeId> {
    let mut sorted = voters.to_vec();
    sorted.sort_unstable();
    let n = sorted.len() as u64;
    (n > 0).then(|| sorted[(gid % n) as usize])
}

impl<M: HostMachines> Host<M> {
    /// Hands each group led here, whose preferred voter is another node that is reachable and
    /// caught up, to that voter (see the module docs)
    pub(super) fn balance_leaders(&mut self, now: Instant) {
        let Some(interval) = self.config.leader_balance_interval else {
            return;
        };
        if now < self.next_balance {
            return;
        }
        self.next_balance = now + interval;
        for (&gid, replica) in self.replicas.iter_mut() {
            let raft = replica.raft_mut();
            if raft.role() != Role::Leader
                || raft.transfer_target().is_some()
                || raft.membership().is_joint()
            {
                continue;
            }
            let Some(to) = preferred_leader(gid, raft.membership().voters()) else {
                continue;
            };
            let last = raft.last_index();
            let ready = to != raft.id()
                && raft
                    .progress(to)
                    .is_some_and(|p| p.recent_active && p.match_index == last);
            if ready {
                let _ = raft.transfer_leader(now, to);
            }
        }
    }

    /// When [`balance_leaders`](Self::balance_leaders) runs next, if it runs at all
    pub(super) fn next_balance(&self) -> Option<Instant> {
        self.config
            .leader_balance_interval
            .map(|_| self.next_balance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_groups_prefer_consecutive_voters() {
        assert_eq!(preferred_leader(1, &[3, 1, 2]), Some(2));
        assert_eq!(preferred_leader(2, &[3, 1, 2]), Some(3));
        assert_eq!(preferred_leader(3, &[3, 1, 2]), Some(1));
        assert_eq!(preferred_leader(0, &[5]), Some(5));
        assert_eq!(preferred_leader(7, &[]), None);
    }
}
