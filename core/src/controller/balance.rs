//! Deterministic, minimal-move shard balancing
//!
//! After a join or a leave, every group's target is `floor(shards / groups)` shards, and the
//! `shards mod groups` groups that already hold the most shards (ties: the lower group id) may
//! keep one more. A group over its target gives up its highest-numbered shards; shards of
//! groups that left (or never had an owner) are free; groups under their target take free
//! shards in group-id order, lowest shard first. Only shards that must move do: on a join
//! shards move only to the new groups, on a leave only away from the leaving ones. Iteration
//! follows sorted ids, never a hash order, so every replica computes the same assignment.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::{GroupId, UNASSIGNED};

/// Reassigns `shards` (owner per shard) to exactly the groups in `groups`, moving as few
/// shards as possible; leaves everything unassigned when there are no groups
pub fn rebalance(shards: &mut [GroupId], groups: &[GroupId]) {
    if groups.is_empty() {
        shards.iter_mut().for_each(|s| *s = UNASSIGNED);
        return;
    }
    // Current holdings of each live group, in shard order.
    let mut held: BTreeMap<GroupId, Vec<usize>> = groups.iter().map(|&g| (g, Vec::new())).collect();
    let mut free: Vec<usize> = Vec::new();
    for (shard, owner) in shards.iter().enumerate() {
        match held.get_mut(owner) {
            Some(list) => list.push(shard),
            None => free.push(shard),
        }
    }
    // Targets: the groups holding the most get the extra shards.
    let floor = shards.len() / groups.len();
    let extra = shards.len() % groups.len();
    let mut by_size: Vec<GroupId> = groups.to_vec();
    by_size.sort_by(|a, b| held[b].len().cmp(&held[a].len()).then(a.cmp(b)));
    let target: BTreeMap<GroupId, usize> = by_size
        .iter()
        .enumerate()
        .map(|(rank, &g)| (g, floor + usize::from(rank < extra)))
        .collect();
    // Groups over target give up their highest-numbered shards.
    for (g, list) in held.iter_mut() {
        while list.len() > target[g] {
            if let Some(shard) = list.pop() {
                free.push(shard);
            }
        }
    }
    free.sort_unstable();
    free.reverse(); // pop() then yields the lowest shard first
    for (g, list) in held.iter_mut() {
        while list.len() < target[g] {
            let Some(shard) = free.pop() else { break };
            shards[shard] = *g;
            list.push(shard);
        }
    }
    debug_assert!(free.is_empty(), "targets add up to the shard count");
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    fn counts(shards: &[GroupId], groups: &[GroupId]) -> Vec<usize> {
        groups
            .iter()
            .map(|g| shards.iter().filter(|s| *s == g).count())
            .collect()
    }

    fn balanced(shards: &[GroupId], groups: &[GroupId]) -> bool {
        let c = counts(shards, groups);
        let (min, max) = (
            c.iter().min().copied().unwrap_or(0),
            c.iter().max().copied().unwrap_or(0),
        );
        max - min <= 1 && shards.iter().all(|s| groups.contains(s))
    }

    #[test]
    fn first_join_takes_everything_and_later_joins_take_only_what_they_need() {
        let mut shards = vec![UNASSIGNED; 10];
        rebalance(&mut shards, &[7]);
        assert!(shards.iter().all(|&g| g == 7));
        let before = shards.clone();
        rebalance(&mut shards, &[7, 9]);
        assert_eq!(counts(&shards, &[7, 9]), vec![5, 5]);
        // Shards 5..10 moved from 7 to 9, nothing else.
        let moved = before.iter().zip(&shards).filter(|(a, b)| a != b).count();
        assert_eq!(moved, 5);
        rebalance(&mut shards, &[9]);
        assert!(shards.iter().all(|&g| g == 9));
        rebalance(&mut shards, &[]);
        assert!(shards.iter().all(|&g| g == UNASSIGNED));
    }

    #[test]
    fn more_groups_than_shards() {
        let mut shards = vec![UNASSIGNED; 3];
        rebalance(&mut shards, &[1, 2, 3, 4, 5]);
        assert!(balanced(&shards, &[1, 2, 3, 4, 5]));
        assert_eq!(shards, vec![1, 2, 3]);
    }

    /// The fewest shards any balanced assignment over `groups` must move away from `before`
    fn min_moves(before: &[GroupId], groups: &[GroupId]) -> usize {
        let (n, k) = (before.len(), groups.len());
        let (floor, extra) = (n / k, n % k);
        let held: Vec<usize> = groups
            .iter()
            .map(|g| before.iter().filter(|s| *s == g).count())
            .collect();
        let mut best_kept = 0;
        for mask in 0u32..(1 << k) {
            if mask.count_ones() as usize != extra {
                continue;
            }
            let kept: usize = (0..k)
                .map(|i| held[i].min(floor + usize::from(mask & (1 << i) != 0)))
                .sum();
            best_kept = best_kept.max(kept);
        }
        n - best_kept
    }

    fn sequence() -> impl Strategy<Value = (usize, Vec<(bool, u64)>)> {
        (
            1usize..40,
            proptest::collection::vec((any::<bool>(), 1u64..12), 1..30),
        )
    }

    proptest! {
        /// After any join or leave: balanced; only necessary moves; none between survivors
        #[test]
        fn joins_and_leaves_stay_balanced_with_minimal_moves((n, ops) in sequence()) {
            let mut shards = vec![UNASSIGNED; n];
            let mut groups: Vec<GroupId> = Vec::new();
            for (join, gid) in ops {
                let old_groups = groups.clone();
                if join {
                    if !groups.contains(&gid) { groups.push(gid); groups.sort_unstable(); }
                } else {
                    groups.retain(|&g| g != gid);
                }
                let before = shards.clone();
                rebalance(&mut shards, &groups);
                if groups.is_empty() {
                    prop_assert!(shards.iter().all(|&s| s == UNASSIGNED));
                    continue;
                }
                prop_assert!(balanced(&shards, &groups), "unbalanced: {shards:?} over {groups:?}");
                // No shard moves between two groups that both survive.
                for (a, b) in before.iter().zip(&shards) {
                    if a != b && old_groups.contains(a) && groups.contains(a) {
                        prop_assert!(join && !old_groups.contains(b),
                            "surviving group {a} lost a shard to {b}, which is not a new group");
                    }
                }
                // Minimal: no balanced assignment moves fewer shards (brute force over every
                // choice of which groups keep the extra shard).
                let moved = before.iter().zip(&shards).filter(|(a, b)| a != b).count();
                prop_assert_eq!(moved, min_moves(&before, &groups));
            }
        }
    }
}
