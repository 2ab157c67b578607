//! Removal: copy-on-write down the path, then borrow from or merge with a sibling on the way
//! back up wherever a node fell below its minimum fill

use alloc::sync::Arc;
use core::borrow::Borrow;
use core::mem;

use super::node::{Branch, Node};

impl<K: Ord + Clone, V: Clone> Node<K, V> {
    /// Removes `key` from this subtree and returns its entry
    ///
    /// This node may be left underfull: its parent fixes that (the map, for the root).
    /// `found` says the key is known to be present. Until then, a shared child is searched
    /// before it is copied, so removing an absent key copies nothing.
    pub(super) fn remove<Q>(&mut self, key: &Q, mut found: bool) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self {
            Node::Leaf(leaf) => {
                let i = leaf.search(key).ok()?;
                Some((leaf.keys.remove(i), leaf.vals.remove(i)))
            }
            Node::Branch(branch) => {
                let i = branch.child_index(key);
                let child = &mut branch.children[i];
                if !found && Arc::get_mut(child).is_none() {
                    child.get(key)?;
                    found = true;
                }
                let removed = Arc::make_mut(child).remove(key, found)?;
                if branch.children[i].is_underfull() {
                    branch.rebalance(i);
                }
                Some(removed)
            }
        }
    }
}

impl<K: Clone, V: Clone> Branch<K, V> {
    /// Brings child `i` back to its minimum fill: borrow one item from a sibling that can
    /// spare it, or else merge with a sibling
    fn rebalance(&mut self, i: usize) {
        if i > 0 && self.children[i - 1].can_lend() {
            self.rotate_right(i - 1);
        } else if i + 1 < self.children.len() && self.children[i + 1].can_lend() {
            self.rotate_left(i);
        } else if i > 0 {
            self.merge(i - 1);
        } else if self.children.len() > 1 {
            self.merge(i);
        }
        // else: the root branch with this single child, which the map collapses.
    }

    /// Moves the last item of child `j` to the front of child `j + 1`
    fn rotate_right(&mut self, j: usize) {
        let (before, after) = self.children.split_at_mut(j + 1);
        let separator = &mut self.keys[j];
        match (Arc::make_mut(&mut before[j]), Arc::make_mut(&mut after[0])) {
            (Node::Leaf(left), Node::Leaf(right)) => {
                if let (Some(key), Some(value)) = (left.keys.pop(), left.vals.pop()) {
                    *separator = key.clone();
                    right.keys.insert(0, key);
                    right.vals.insert(0, value);
                }
            }
            (Node::Branch(left), Node::Branch(right)) => {
                if let (Some(key), Some(child)) = (left.keys.pop(), left.children.pop()) {
                    right.keys.insert(0, mem::replace(separator, key));
                    right.children.insert(0, child);
                }
            }
            _ => unreachable!("siblings are at the same depth"),
        }
    }

    /// Moves the first item of child `j + 1` to the end of child `j`
    fn rotate_left(&mut self, j: usize) {
        let (before, after) = self.children.split_at_mut(j + 1);
        let separator = &mut self.keys[j];
        match (Arc::make_mut(&mut before[j]), Arc::make_mut(&mut after[0])) {
            (Node::Leaf(left), Node::Leaf(right)) => {
                // `right` can lend, so it has more than LEAF_MIN >= 2 entries: after giving
                // its first, it still has a first key to become the separator.
                left.keys.push(right.keys.remove(0));
                left.vals.push(right.vals.remove(0));
                *separator = right.keys[0].clone();
            }
            (Node::Branch(left), Node::Branch(right)) => {
                // `right` can lend, so it has more than BRANCH_MIN >= 2 children.
                left.keys
                    .push(mem::replace(separator, right.keys.remove(0)));
                left.children.push(right.children.remove(0));
            }
            _ => unreachable!("siblings are at the same depth"),
        }
    }

    /// Merges child `j + 1` into child `j`; the two hold at most one node's capacity
    fn merge(&mut self, j: usize) {
        let separator = self.keys.remove(j);
        let right = Arc::unwrap_or_clone(self.children.remove(j + 1));
        match (Arc::make_mut(&mut self.children[j]), right) {
            (Node::Leaf(left), Node::Leaf(right)) => {
                left.keys.extend(right.keys);
                left.vals.extend(right.vals);
            }
            (Node::Branch(left), Node::Branch(right)) => {
                left.keys.push(separator);
                left.keys.extend(right.keys);
                left.children.extend(right.children);
            }
            _ => unreachable!("siblings are at the same depth"),
        }
    }
}
