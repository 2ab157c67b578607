//! Who votes, and what a quorum of them has

use alloc::vec::Vec;

use super::types::{Index, NodeId};

/// The voters of a group (sorted, without duplicates)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    voters: Vec<NodeId>,
}

impl Membership {
    /// A membership of `voters` (order and duplicates do not matter)
    pub fn new(voters: &[NodeId]) -> Self {
        let mut voters = voters.to_vec();
        voters.sort_unstable();
        voters.dedup();
        Membership { voters }
    }

    /// The voters, ascending
    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    /// Whether `id` votes
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok()
    }

    /// How many voters make a majority
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// `Some(true)` once `granted` holds for a majority, `Some(false)` once a majority is
    /// impossible, `None` while undecided; `vote(id)` is `None` for voters not heard from
    pub fn tally(&self, vote: impl Fn(NodeId) -> Option<bool>) -> Option<bool> {
        let (mut yes, mut no) = (0, 0);
        for &id in &self.voters {
            match vote(id) {
                Some(true) => yes += 1,
                Some(false) => no += 1,
                None => {}
            }
        }
        if yes >= self.quorum() {
            Some(true)
        } else if no > self.voters.len() - self.quorum() {
            Some(false)
        } else {
            None
        }
    }

    /// The highest index that a majority holds, given each voter's match index
    pub fn committed(&self, match_index: impl Fn(NodeId) -> Index) -> Index {
        // Groups are small: sort on the stack, and allocate only for unusually large groups.
        const STACK_VOTERS: usize = 16;
        let n = self.voters.len();
        if n == 0 {
            return 0;
        }
        let mut stack = [0; STACK_VOTERS];
        let mut heap = Vec::new();
        let matches: &mut [Index] = if n <= STACK_VOTERS {
            &mut stack[..n]
        } else {
            heap.resize(n, 0);
            &mut heap
        };
        for (slot, &id) in matches.iter_mut().zip(&self.voters) {
            *slot = match_index(id);
        }
        matches.sort_unstable_by(|a, b| b.cmp(a));
        matches[self.quorum() - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_commit_and_tally() {
        let m = Membership::new(&[3, 1, 2, 2]);
        assert_eq!(m.voters(), &[1, 2, 3]);
        assert_eq!(m.quorum(), 2);
        assert_eq!(m.committed(|id| [0, 5, 9, 7][id as usize]), 7);
        assert_eq!(m.tally(|id| (id == 1).then_some(true)), None);
        assert_eq!(m.tally(|id| (id != 3).then_some(true)), Some(true));
        assert_eq!(m.tally(|id| (id != 3).then_some(false)), Some(false));
        let five = Membership::new(&[1, 2, 3, 4, 5]);
        assert_eq!(five.committed(|id| id * 10), 30);
        let big: Vec<NodeId> = (1..=21).collect();
        assert_eq!(Membership::new(&big).committed(|id| id), 11);
    }
}
