//! Ascending iteration, from the first entry or from a bound

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::borrow::Borrow;
use core::iter::FusedIterator;
use core::ops::Bound;
use core::slice;

use super::PersistentMap;
use super::node::Node;

/// An iterator over a [`PersistentMap`]'s entries in ascending key order
///
/// Made by [`PersistentMap::iter`] and [`PersistentMap::range_from`]. It holds one position
/// per level (a small stack, allocated only for maps taller than one leaf) and borrows the
/// map, so a view keeps iterating over the state it froze while the original moves on.
pub struct Iter<'a, K, V> {
    /// For each branch above the current leaf, its children still to visit
    stack: Vec<slice::Iter<'a, Arc<Node<K, V>>>>,
    /// The rest of the current leaf
    keys: &'a [K],
    vals: &'a [V],
    /// At most this many entries are left (exactly this many when `exact`)
    remaining: usize,
    exact: bool,
}

impl<K, V> Clone for Iter<'_, K, V> {
    fn clone(&self) -> Self {
        Iter {
            stack: self.stack.clone(),
            keys: self.keys,
            vals: self.vals,
            remaining: self.remaining,
            exact: self.exact,
        }
    }
}

impl<'a, K, V> Iter<'a, K, V> {
    fn empty() -> Self {
        Iter {
            stack: Vec::new(),
            keys: &[],
            vals: &[],
            remaining: 0,
            exact: true,
        }
    }

    /// Goes down the leftmost path of `node` to its first leaf
    fn descend_first(&mut self, mut node: &'a Node<K, V>) {
        loop {
            match node {
                Node::Leaf(leaf) => {
                    self.keys = &leaf.keys;
                    self.vals = &leaf.vals;
                    return;
                }
                Node::Branch(branch) => {
                    let mut children = branch.children.iter();
                    let Some(first) = children.next() else {
                        return;
                    };
                    self.stack.push(children);
                    node = first;
                }
            }
        }
    }
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let (Some((key, keys)), Some((value, vals))) =
                (self.keys.split_first(), self.vals.split_first())
            {
                self.keys = keys;
                self.vals = vals;
                self.remaining = self.remaining.saturating_sub(1);
                return Some((key, value));
            }
            // This leaf is done: climb to the nearest branch with a child left, and go down
            // that child's leftmost path.
            let next = loop {
                let level = self.stack.last_mut()?;
                match level.next() {
                    Some(child) => break child,
                    None => {
                        self.stack.pop();
                    }
                }
            };
            self.descend_first(next);
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let low = if self.exact {
            self.remaining
        } else {
            self.keys.len()
        };
        (low, Some(self.remaining))
    }
}

impl<K, V> FusedIterator for Iter<'_, K, V> {}

impl<K, V> PersistentMap<K, V> {
    /// The entries in ascending key order
    pub fn iter(&self) -> Iter<'_, K, V> {
        let Some(root) = &self.root else {
            return Iter::empty();
        };
        let mut iter = Iter {
            remaining: self.len,
            ..Iter::empty()
        };
        iter.descend_first(root);
        iter
    }

    /// The entries in ascending key order from `start` on: keys at least (`Included`) or
    /// above (`Excluded`) the bound, or all of them (`Unbounded`)
    ///
    /// Positioning costs one descent, O(log n), like a lookup.
    pub fn range_from<Q>(&self, start: Bound<&Q>) -> Iter<'_, K, V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let Some(root) = &self.root else {
            return Iter::empty();
        };
        let mut iter = Iter {
            remaining: self.len,
            exact: matches!(start, Bound::Unbounded),
            ..Iter::empty()
        };
        let mut node: &Node<K, V> = root;
        loop {
            match node {
                Node::Branch(branch) => {
                    let i = match start {
                        Bound::Included(key) | Bound::Excluded(key) => branch.child_index(key),
                        Bound::Unbounded => 0,
                    };
                    // Keys from `start` on are in child `i` (from its separator on) and after.
                    let mut children = branch.children[i..].iter();
                    let Some(child) = children.next() else {
                        return iter;
                    };
                    iter.stack.push(children);
                    node = child;
                }
                Node::Leaf(leaf) => {
                    let at = match start {
                        Bound::Included(key) => leaf.keys.partition_point(|k| k.borrow() < key),
                        Bound::Excluded(key) => leaf.keys.partition_point(|k| k.borrow() <= key),
                        Bound::Unbounded => 0,
                    };
                    iter.keys = &leaf.keys[at..];
                    iter.vals = &leaf.vals[at..];
                    return iter;
                }
            }
        }
    }
}

impl<'a, K, V> IntoIterator for &'a PersistentMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}
