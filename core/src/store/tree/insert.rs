//! Insertion: copy-on-write down the path, split full nodes on the way back up

use alloc::sync::Arc;
use core::mem;

use super::node::{BRANCH_CAPACITY, Branch, LEAF_CAPACITY, Leaf, Node};

/// What an insert into a subtree did
pub(super) enum Inserted<K, V> {
    /// The key was there; its old value
    Replaced(V),
    /// A new entry, and the subtree's root had room
    Added,
    /// A new entry, and the subtree's root split: the separator and the new right sibling,
    /// for the parent to take in
    Split(K, Arc<Node<K, V>>),
}

impl<K: Ord + Clone, V: Clone> Node<K, V> {
    /// Inserts into this subtree, copying every shared node on the path first
    pub(super) fn insert(&mut self, key: K, value: V) -> Inserted<K, V> {
        match self {
            Node::Leaf(leaf) => leaf.insert(key, value),
            Node::Branch(branch) => {
                let i = branch.child_index(&key);
                match Arc::make_mut(&mut branch.children[i]).insert(key, value) {
                    Inserted::Split(separator, right) => branch.insert_child(i, separator, right),
                    done => done,
                }
            }
        }
    }
}

impl<K: Ord + Clone, V> Leaf<K, V> {
    fn insert(&mut self, key: K, value: V) -> Inserted<K, V> {
        match self.search(&key) {
            Ok(i) => Inserted::Replaced(mem::replace(&mut self.vals[i], value)),
            Err(i) if self.len() < LEAF_CAPACITY => {
                self.insert_at(i, key, value);
                Inserted::Added
            }
            Err(i) => {
                let mid = LEAF_CAPACITY / 2;
                let mut right = self.split_off(mid);
                if i <= mid {
                    self.insert_at(i, key, value);
                } else {
                    right.insert_at(i - mid, key, value);
                }
                // `right` got LEAF_CAPACITY - mid >= 2 entries, so it has a first key.
                let separator = right.keys[0].clone();
                Inserted::Split(separator, Arc::new(Node::Leaf(right)))
            }
        }
    }
}

impl<K, V> Branch<K, V> {
    /// A new root over `left` and `right`, divided by `separator`
    pub(super) fn new_root(left: Arc<Node<K, V>>, separator: K, right: Arc<Node<K, V>>) -> Self {
        let mut root = Branch::full_size();
        root.keys.push(separator);
        root.children.push(left);
        root.children.push(right);
        root
    }

    /// Takes in `right`, the new sibling after child `i`, split off it at `separator`
    fn insert_child(&mut self, i: usize, separator: K, right: Arc<Node<K, V>>) -> Inserted<K, V> {
        if self.children.len() < BRANCH_CAPACITY {
            self.keys.insert(i, separator);
            self.children.insert(i + 1, right);
            return Inserted::Added;
        }
        // Full: this branch keeps children [..mid], the new one gets [mid..], and the
        // separator between them (keys[mid - 1]) goes up. Split first, so that neither half
        // ever outgrows its capacity.
        let mid = BRANCH_CAPACITY / 2;
        let mut sibling = Branch::full_size();
        sibling.keys.extend(self.keys.drain(mid..));
        sibling.children.extend(self.children.drain(mid..));
        let Some(up) = self.keys.pop() else {
            unreachable!("a full branch keeps mid - 1 >= 1 separators before the pop");
        };
        if i < mid {
            self.keys.insert(i, separator);
            self.children.insert(i + 1, right);
        } else {
            sibling.keys.insert(i - mid, separator);
            sibling.children.insert(i - mid + 1, right);
        }
        Inserted::Split(up, Arc::new(Node::Branch(sibling)))
    }
}
