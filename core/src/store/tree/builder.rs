//! Building a map from entries in ascending key order, in O(n)

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::mem;

use super::PersistentMap;
use super::node::{BRANCH_CAPACITY, BRANCH_MIN, Branch, LEAF_CAPACITY, LEAF_MIN, Leaf, Node};

/// Builds a [`PersistentMap`] from entries pushed in strictly ascending key order, in O(n)
///
/// Leaves and branches are filled to capacity, except that the last two of each level share
/// their items so that both keep the minimum fill. Nothing is searched or copied, so this is
/// the way to restore a snapshot; the first random writes afterwards split the full leaves
/// they touch.
///
/// ```
/// use shale_core::store::SortedBuilder;
///
/// let mut builder = SortedBuilder::new();
/// builder.push(1, "one").unwrap();
/// builder.push(2, "two").unwrap();
/// assert_eq!(builder.push(2, "again"), Err((2, "again")));
/// let map = builder.finish();
/// assert_eq!(map.get(&2), Some(&"two"));
/// ```
pub struct SortedBuilder<K, V> {
    /// Filled leaves, in order
    full: Vec<Leaf<K, V>>,
    /// The leaf being filled; empty only while nothing was pushed
    current: Leaf<K, V>,
    len: usize,
}

impl<K: Ord + Clone, V: Clone> Default for SortedBuilder<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Clone, V: Clone> SortedBuilder<K, V> {
    /// An empty builder
    pub fn new() -> Self {
        SortedBuilder {
            full: Vec::new(),
            current: Leaf::full_size(),
            len: 0,
        }
    }

    /// Appends an entry; refuses it (and hands it back) unless `key` is above every key
    /// pushed before
    pub fn push(&mut self, key: K, value: V) -> Result<(), (K, V)> {
        if self.current.keys.last().is_some_and(|last| key <= *last) {
            return Err((key, value));
        }
        if self.current.len() == LEAF_CAPACITY {
            let full = mem::replace(&mut self.current, Leaf::full_size());
            self.full.push(full);
        }
        self.current.keys.push(key);
        self.current.vals.push(value);
        self.len += 1;
        Ok(())
    }

    /// Entries pushed so far
    pub fn len(&self) -> usize {
        self.len
    }

    /// No entry pushed yet
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The map of every entry pushed
    pub fn finish(self) -> PersistentMap<K, V> {
        let SortedBuilder {
            full: mut leaves,
            current: mut last,
            len,
        } = self;
        if len == 0 {
            return PersistentMap::new();
        }
        if last.len() < LEAF_MIN
            && let Some(before) = leaves.last_mut()
        {
            // `before` is full, so the two hold more than LEAF_CAPACITY entries and each
            // half gets at least LEAF_MIN.
            let keep = (before.len() + last.len()) / 2;
            last.keys.splice(0..0, before.keys.drain(keep..));
            last.vals.splice(0..0, before.vals.drain(keep..));
        }
        leaves.push(last);
        // Each level is a list of (first key of the subtree, subtree); every leaf has a key.
        let mut level: Vec<(K, Arc<Node<K, V>>)> = leaves
            .into_iter()
            .filter_map(|leaf| {
                let first = leaf.keys.first()?.clone();
                Some((first, Arc::new(Node::Leaf(leaf))))
            })
            .collect();
        while level.len() > 1 {
            level = branches_over(level);
        }
        PersistentMap {
            root: level.pop().map(|(_, root)| root),
            len,
        }
    }
}

/// The level of branches above `level` (at least 2 nodes), filled like the leaves
fn branches_over<K, V>(level: Vec<(K, Arc<Node<K, V>>)>) -> Vec<(K, Arc<Node<K, V>>)> {
    let groups = level.len().div_ceil(BRANCH_CAPACITY);
    let mut sizes = alloc::vec![BRANCH_CAPACITY; groups];
    let rest = level.len() - (groups - 1) * BRANCH_CAPACITY;
    sizes[groups - 1] = rest;
    if groups > 1 && rest < BRANCH_MIN {
        // As for the last leaf: the full group before shares with it.
        let both = BRANCH_CAPACITY + rest;
        sizes[groups - 2] = both / 2;
        sizes[groups - 1] = both - both / 2;
    }
    let mut items = level.into_iter();
    let mut above = Vec::with_capacity(groups);
    for size in sizes {
        let mut branch = Branch::full_size();
        let mut first = None;
        for (key, child) in items.by_ref().take(size) {
            if first.is_none() {
                first = Some(key);
            } else {
                branch.keys.push(key);
            }
            branch.children.push(child);
        }
        if let Some(first) = first {
            above.push((first, Arc::new(Node::Branch(branch))));
        }
    }
    above
}
