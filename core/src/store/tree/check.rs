//! Structural invariants, checked by the tests after every operation

use core::fmt::Debug;

use super::PersistentMap;
use super::node::{BRANCH_CAPACITY, BRANCH_MIN, LEAF_CAPACITY, LEAF_MIN, Node};

impl<K: Ord + Debug, V> PersistentMap<K, V> {
    /// Panics unless the tree is well formed: keys sorted and within their separators, node
    /// fill within bounds (the root may hold less), every leaf at the same depth, no vector
    /// grown past its node's capacity, and `len` the number of entries
    pub(crate) fn check_invariants(&self) {
        let Some(root) = &self.root else {
            assert_eq!(self.len, 0, "an empty tree counts entries");
            return;
        };
        let mut leaf_depth = None;
        let count = check_node(root, None, None, true, 0, &mut leaf_depth);
        assert_eq!(count, self.len, "len disagrees with the entries");
        assert!(count > 0, "a root is never empty");
    }

    /// Number of leaves
    pub(crate) fn leaf_count(&self) -> usize {
        fn count<K, V>(node: &Node<K, V>) -> usize {
            match node {
                Node::Leaf(_) => 1,
                Node::Branch(branch) => branch.children.iter().map(|child| count(child)).sum(),
            }
        }
        self.root.as_deref().map_or(0, count)
    }

    /// Levels from the root to the leaves (1 for a lone leaf, 0 when empty)
    pub(crate) fn height(&self) -> usize {
        let mut height = 0;
        let mut node = self.root.as_deref();
        while let Some(current) = node {
            height += 1;
            node = match current {
                Node::Leaf(_) => None,
                Node::Branch(branch) => branch.children.first().map(|child| &**child),
            };
        }
        height
    }
}

/// Checks the subtree at `node`, whose keys must be in `[low, high)`; returns its entries
fn check_node<K: Ord + Debug, V>(
    node: &Node<K, V>,
    low: Option<&K>,
    high: Option<&K>,
    is_root: bool,
    depth: usize,
    leaf_depth: &mut Option<usize>,
) -> usize {
    let keys = match node {
        Node::Leaf(leaf) => &leaf.keys,
        Node::Branch(branch) => &branch.keys,
    };
    assert!(
        keys.windows(2).all(|pair| pair[0] < pair[1]),
        "keys out of order: {keys:?}"
    );
    if let (Some(low), Some(first)) = (low, keys.first()) {
        assert!(first >= low, "{first:?} below the separator {low:?}");
    }
    if let (Some(high), Some(last)) = (high, keys.last()) {
        assert!(last < high, "{last:?} at or past the separator {high:?}");
    }
    match node {
        Node::Leaf(leaf) => {
            assert_eq!(leaf.keys.len(), leaf.vals.len());
            assert!(leaf.len() <= LEAF_CAPACITY, "overfull leaf");
            // (A zero-sized type's vector reports an unbounded capacity.)
            let sized = |size: usize, capacity: usize| size == 0 || capacity <= LEAF_CAPACITY;
            assert!(
                sized(size_of::<K>(), leaf.keys.capacity()),
                "leaf keys grew"
            );
            assert!(
                sized(size_of::<V>(), leaf.vals.capacity()),
                "leaf values grew"
            );
            if !is_root {
                assert!(leaf.len() >= LEAF_MIN, "underfull leaf: {}", leaf.len());
            }
            match leaf_depth {
                Some(expected) => assert_eq!(depth, *expected, "leaves at different depths"),
                None => *leaf_depth = Some(depth),
            }
            leaf.len()
        }
        Node::Branch(branch) => {
            let children = branch.children.len();
            assert_eq!(branch.keys.len() + 1, children, "separators and children");
            assert!(children <= BRANCH_CAPACITY, "overfull branch");
            assert!(branch.keys.capacity() < BRANCH_CAPACITY, "branch keys grew");
            assert!(
                branch.children.capacity() <= BRANCH_CAPACITY,
                "children grew"
            );
            let least = if is_root { 2 } else { BRANCH_MIN };
            assert!(children >= least, "underfull branch: {children}");
            let mut count = 0;
            for (i, child) in branch.children.iter().enumerate() {
                let child_low = if i == 0 { low } else { branch.keys.get(i - 1) };
                let child_high = branch.keys.get(i).or(high);
                count += check_node(child, child_low, child_high, false, depth + 1, leaf_depth);
            }
            count
        }
    }
}
