//! [`PersistentMap`]: a B+tree whose nodes are shared between clones and copied on write
//!
//! Files: `node` (the node types and capacities), `insert`, `remove` (with rebalancing),
//! `iter` (ascending iteration and `range_from`), `builder` ([`SortedBuilder`]), `serialize`
//! (as a map).

use alloc::sync::Arc;
use core::borrow::Borrow;
use core::fmt;

mod builder;
#[cfg(test)]
mod check;
mod insert;
mod iter;
#[cfg(test)]
mod model;
mod node;
mod remove;
mod serialize;
#[cfg(test)]
mod tests;

pub use builder::SortedBuilder;
pub use iter::Iter;
pub use node::{BRANCH_CAPACITY, LEAF_CAPACITY};

use insert::Inserted;
use node::{Branch, Leaf, Node};

/// An ordered map whose clones share every node until one of them writes
///
/// A B+tree: leaves hold up to [`LEAF_CAPACITY`] entries, branches up to
/// [`BRANCH_CAPACITY`] children, and every node sits behind an [`Arc`]. [`Clone`] copies the
/// root pointer only, so a clone is an O(1) view frozen at that moment. A write goes down
/// through [`Arc::make_mut`]: a node that only this map points at is changed in place (the
/// normal case, as fast as a plain B-tree), and a node that another map still sees is copied
/// first, so neither map ever observes the other's writes. The first write to a leaf after a
/// clone therefore copies that leaf (its keys and values) and the branches above it.
///
/// Removals borrow from or merge with siblings and the tree loses a level when the root is
/// left with one child, so memory follows the live size. Dropping a map recurses once per
/// level, never more.
///
/// ```
/// use shale_core::store::PersistentMap;
///
/// let mut map = PersistentMap::new();
/// map.insert(b"apple".to_vec(), 1);
/// map.insert(b"pear".to_vec(), 2);
/// let view = map.clone(); // O(1)
/// map.insert(b"apple".to_vec(), 10);
/// map.remove(&b"pear"[..]);
/// assert_eq!(view.get(&b"apple"[..]), Some(&1));
/// assert_eq!(view.get(&b"pear"[..]), Some(&2));
/// assert_eq!(map.get(&b"apple"[..]), Some(&10));
/// assert_eq!(map.len(), 1);
/// ```
pub struct PersistentMap<K, V> {
    /// `None` exactly when the map is empty
    root: Option<Arc<Node<K, V>>>,
    len: usize,
}

impl<K, V> Clone for PersistentMap<K, V> {
    /// A view of the map as it is now, in O(1): only the root pointer is copied
    fn clone(&self) -> Self {
        PersistentMap {
            root: self.root.clone(),
            len: self.len,
        }
    }
}

impl<K, V> Default for PersistentMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> PersistentMap<K, V> {
    /// An empty map (allocates nothing)
    pub const fn new() -> Self {
        PersistentMap { root: None, len: 0 }
    }

    /// Number of entries
    pub fn len(&self) -> usize {
        self.len
    }

    /// No entries
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry with the smallest key
    pub fn first_key_value(&self) -> Option<(&K, &V)> {
        let leaf = self.root.as_deref()?.edge_leaf(true);
        Some((leaf.keys.first()?, leaf.vals.first()?))
    }

    /// The entry with the largest key
    pub fn last_key_value(&self) -> Option<(&K, &V)> {
        let leaf = self.root.as_deref()?.edge_leaf(false);
        Some((leaf.keys.last()?, leaf.vals.last()?))
    }

    /// Removes every entry (nodes shared with a view stay alive for the view)
    pub fn clear(&mut self) {
        self.root = None;
        self.len = 0;
    }

    /// Both maps are the same tree: `other` is a clone of this map (or this one of `other`)
    /// and neither was written since, or both are empty
    pub fn shares_root_with(&self, other: &Self) -> bool {
        match (&self.root, &other.root) {
            (Some(mine), Some(theirs)) => Arc::ptr_eq(mine, theirs),
            (None, None) => true,
            _ => false,
        }
    }
}

impl<K: Ord, V> PersistentMap<K, V> {
    /// The value of `key`
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.root.as_deref()?.get(key)
    }

    /// The map holds `key`
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.get(key).is_some()
    }
}

impl<K: Ord + Clone, V: Clone> PersistentMap<K, V> {
    /// The value of `key`, to change in place
    ///
    /// Copies the nodes on the path to `key` that a view still shares, and nothing when the
    /// key is absent.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let mut node = self.root.as_mut()?;
        let mut found = false;
        loop {
            if !found && Arc::get_mut(node).is_none() {
                // Shared from here down: make sure the key is there before copying.
                node.get(key)?;
                found = true;
            }
            match Arc::make_mut(node) {
                Node::Leaf(leaf) => {
                    let i = leaf.search(key).ok()?;
                    return leaf.vals.get_mut(i);
                }
                Node::Branch(branch) => {
                    let i = branch.child_index(key);
                    node = &mut branch.children[i];
                }
            }
        }
    }

    /// The value of `key`, inserting `default()` first if the key is absent
    ///
    /// Costs two descents (a lookup, then the write), three when it inserts.
    pub fn get_or_insert_with(&mut self, key: K, default: impl FnOnce() -> V) -> &mut V {
        if !self.contains_key(&key) {
            self.insert(key.clone(), default());
        }
        match self.get_mut(&key) {
            Some(value) => value,
            None => unreachable!("the key is present: it was there or was just inserted"),
        }
    }

    /// Inserts an entry and returns the value it replaced
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let Some(root) = &mut self.root else {
            let mut leaf = Leaf {
                keys: alloc::vec::Vec::new(),
                vals: alloc::vec::Vec::new(),
            };
            leaf.insert_at(0, key, value);
            self.root = Some(Arc::new(Node::Leaf(leaf)));
            self.len = 1;
            return None;
        };
        match Arc::make_mut(root).insert(key, value) {
            Inserted::Replaced(old) => Some(old),
            Inserted::Added => {
                self.len += 1;
                None
            }
            Inserted::Split(separator, right) => {
                self.len += 1;
                if let Some(left) = self.root.take() {
                    let root = Branch::new_root(left, separator, right);
                    self.root = Some(Arc::new(Node::Branch(root)));
                }
                None
            }
        }
    }

    /// Removes `key` and returns its value
    ///
    /// Copies the nodes on the path that a view still shares (and their siblings that take
    /// part in rebalancing), and nothing when the key is absent.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let root = self.root.as_mut()?;
        let mut found = false;
        if Arc::get_mut(root).is_none() {
            root.get(key)?;
            found = true;
        }
        let (_, value) = Arc::make_mut(root).remove(key, found)?;
        self.len -= 1;
        self.shrink_root();
        Some(value)
    }

    /// Drops an empty root leaf, or a root branch left with one child (one level per
    /// removal at most: a removal merges at most one pair of the root's children)
    fn shrink_root(&mut self) {
        let Some(root) = &mut self.root else {
            return;
        };
        // The removal just wrote through the root, so it is not shared and this never copies.
        match Arc::make_mut(root) {
            Node::Leaf(leaf) if leaf.len() == 0 => self.root = None,
            Node::Branch(branch) if branch.children.len() == 1 => {
                let only = branch.children.pop();
                self.root = only;
            }
            _ => {}
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for PersistentMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: PartialEq, V: PartialEq> PartialEq for PersistentMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && (self.shares_root_with(other) || self.iter().eq(other.iter()))
    }
}

impl<K: Eq, V: Eq> Eq for PersistentMap<K, V> {}

impl<K: Ord + Clone, V: Clone> FromIterator<(K, V)> for PersistentMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = PersistentMap::new();
        map.extend(iter);
        map
    }
}

impl<K: Ord + Clone, V: Clone> Extend<(K, V)> for PersistentMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (key, value) in iter {
            self.insert(key, value);
        }
    }
}
