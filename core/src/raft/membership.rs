//! Who votes, who learns, and what a quorum of them has, including joint configurations
//!
//! A membership has incoming voters, outgoing voters (non-empty only while in a joint
//! configuration, when decisions need a majority of both), and learners, which receive the log
//! but never vote or count. Reference: thesis §4.3 (joint consensus), §4.2.1 (catching up new
//! servers as non-voting members).

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::types::{Index, NodeId};

/// The members of a group (each list sorted, without duplicates)
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Membership {
    voters: Vec<NodeId>,
    outgoing: Vec<NodeId>,
    learners: Vec<NodeId>,
}

fn sorted(ids: &[NodeId]) -> Vec<NodeId> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids
}

impl Membership {
    /// A membership of `voters` (order and duplicates do not matter), no learners
    pub fn new(voters: &[NodeId]) -> Self {
        Membership {
            voters: sorted(voters),
            outgoing: Vec::new(),
            learners: Vec::new(),
        }
    }

    /// A membership of `voters` and `learners`; a node listed in both is a voter
    pub fn with_learners(voters: &[NodeId], learners: &[NodeId]) -> Self {
        let voters = sorted(voters);
        let learners = sorted(learners)
            .into_iter()
            .filter(|l| voters.binary_search(l).is_err())
            .collect();
        Membership {
            voters,
            outgoing: Vec::new(),
            learners,
        }
    }

    /// The joint configuration moving from `self` to `target`: decisions need a majority of
    /// both voter sets until it is left
    pub fn joint(&self, target: &Membership) -> Self {
        Membership {
            voters: target.voters.clone(),
            outgoing: self.voters.clone(),
            learners: target.learners.clone(),
        }
    }

    /// The configuration after leaving the joint one: only the incoming voters remain
    pub fn leave_joint(&self) -> Self {
        Membership {
            voters: self.voters.clone(),
            outgoing: Vec::new(),
            learners: self.learners.clone(),
        }
    }

    /// The incoming (or only) voters, ascending
    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    /// The outgoing voters of a joint configuration (empty otherwise), ascending
    pub fn outgoing(&self) -> &[NodeId] {
        &self.outgoing
    }

    /// The learners, ascending
    pub fn learners(&self) -> &[NodeId] {
        &self.learners
    }

    /// Whether this is a joint configuration
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Whether `id` votes (in either voter set)
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok() || self.outgoing.binary_search(&id).is_ok()
    }

    /// Whether `id` is a learner
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.binary_search(&id).is_ok()
    }

    /// Whether `id` belongs to the group at all
    pub fn is_member(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Every member once, ascending: voters of both sets, then learners
    pub fn members(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self
            .voters
            .iter()
            .chain(&self.outgoing)
            .chain(&self.learners)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// `Some(true)` once `granted` holds for a majority (of both sets when joint),
    /// `Some(false)` once that is impossible, `None` while undecided; `vote(id)` is `None` for
    /// voters not heard from
    pub fn tally(&self, vote: impl Fn(NodeId) -> Option<bool>) -> Option<bool> {
        let incoming = majority_tally(&self.voters, &vote);
        if !self.is_joint() {
            return incoming;
        }
        match (incoming, majority_tally(&self.outgoing, &vote)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        }
    }

    /// The highest index that a majority holds (of both sets when joint), given each voter's
    /// match index
    pub fn committed(&self, match_index: impl Fn(NodeId) -> Index) -> Index {
        let incoming = majority_index(&self.voters, &match_index);
        if self.is_joint() {
            incoming.min(majority_index(&self.outgoing, &match_index))
        } else {
            incoming
        }
    }
}

fn majority_tally(voters: &[NodeId], vote: &impl Fn(NodeId) -> Option<bool>) -> Option<bool> {
    if voters.is_empty() {
        return Some(true);
    }
    let quorum = voters.len() / 2 + 1;
    let (mut yes, mut no) = (0, 0);
    for &id in voters {
        match vote(id) {
            Some(true) => yes += 1,
            Some(false) => no += 1,
            None => {}
        }
    }
    if yes >= quorum {
        Some(true)
    } else if no > voters.len() - quorum {
        Some(false)
    } else {
        None
    }
}

fn majority_index(voters: &[NodeId], match_index: &impl Fn(NodeId) -> Index) -> Index {
    // Groups are small: sort on the stack, and allocate only for unusually large groups.
    const STACK_VOTERS: usize = 16;
    let n = voters.len();
    if n == 0 {
        return Index::MAX;
    }
    let mut stack = [0; STACK_VOTERS];
    let mut heap = Vec::new();
    let matches: &mut [Index] = if n <= STACK_VOTERS {
        &mut stack[..n]
    } else {
        heap.resize(n, 0);
        &mut heap
    };
    for (slot, &id) in matches.iter_mut().zip(voters) {
        *slot = match_index(id);
    }
    matches.sort_unstable_by(|a, b| b.cmp(a));
    matches[n / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn majority_commit_and_tally() {
        let m = Membership::new(&[3, 1, 2, 2]);
        assert_eq!(m.voters(), &[1, 2, 3]);
        assert_eq!(m.committed(|id| [0, 5, 9, 7][id as usize]), 7);
        assert_eq!(m.tally(|id| (id == 1).then_some(true)), None);
        assert_eq!(m.tally(|id| (id != 3).then_some(true)), Some(true));
        assert_eq!(m.tally(|id| (id != 3).then_some(false)), Some(false));
        let five = Membership::new(&[1, 2, 3, 4, 5]);
        assert_eq!(five.committed(|id| id * 10), 30);
        let big: Vec<NodeId> = (1..=21).collect();
        assert_eq!(Membership::new(&big).committed(|id| id), 11);
    }

    #[test]
    fn joint_needs_both_majorities() {
        let old = Membership::new(&[1, 2, 3]);
        let joint = old.joint(&Membership::new(&[3, 4, 5]));
        assert!(joint.is_joint());
        assert!(joint.is_voter(1) && joint.is_voter(5));
        // Old majority {1,2} and new majority {4,5} are both needed.
        assert_eq!(joint.tally(|id| [1, 2].contains(&id).then_some(true)), None);
        assert_eq!(
            joint.tally(|id| [1, 2, 4, 5].contains(&id).then_some(true)),
            Some(true)
        );
        assert_eq!(
            joint.tally(|id| [4, 5].contains(&id).then_some(false)),
            Some(false)
        );
        // Old set holds up to 9 on a majority, new set only up to 4.
        let matches = |id: NodeId| [0, 9, 9, 4, 4, 1][id as usize];
        assert_eq!(joint.committed(matches), 4);
        let left = joint.leave_joint();
        assert!(!left.is_joint());
        assert_eq!(left.voters(), &[3, 4, 5]);
    }

    #[test]
    fn learners_never_count() {
        let m = Membership::with_learners(&[1, 2, 3], &[4, 3]);
        assert_eq!(m.learners(), &[4]);
        assert!(m.is_learner(4) && !m.is_voter(4) && m.is_member(4));
        assert_eq!(m.committed(|id| if id == 4 { 100 } else { 1 }), 1);
        assert_eq!(m.members(), vec![1, 2, 3, 4]);
    }
}
