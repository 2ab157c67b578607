//! The nodes: leaves hold the entries, branches hold separator keys and children
//!
//! Every node sits behind an [`Arc`], so a clone of the map shares all of them. Writers go
//! through [`Arc::make_mut`], which copies a node only while another map still points at it;
//! [`Clone`] for a node therefore keeps the capacity of its vectors, so the copy takes further
//! inserts without reallocating.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::borrow::Borrow;
use core::cmp::Ordering;

/// Most entries a leaf holds
///
/// Leaves keep keys and values in two vectors of this capacity, allocated once: a full leaf
/// splits in two halves instead of growing. The first write to a leaf shared with a view
/// copies the whole leaf (every key and value, and the separators of every branch above it),
/// so this is also the unit of copy-on-write. Measured at 1,000,000 entries of 16-byte keys
/// and 100-byte values (see the `store` module documentation): lookups and inserts cost the
/// same within noise for 16, 32 and 64, memory per entry differs by about 3% between 16 and
/// 32, and the first write after a view costs 7.5 µs at 16/16, 10.3 µs at 32/32 and 30 µs at
/// 64/64; hence 16.
pub const LEAF_CAPACITY: usize = 16;

/// Most children a branch holds (it then holds one separator key fewer)
///
/// Branches are few (about one per 11 leaves at this capacity and a node's typical fill), so
/// their size barely shows in memory per entry; it sets the height (6 levels for a million
/// entries) and what a copy-on-write copies on each level above the leaf.
pub const BRANCH_CAPACITY: usize = 16;

/// Fewest entries in a leaf other than the root; a removal below it borrows or merges
pub(super) const LEAF_MIN: usize = LEAF_CAPACITY / 2;

/// Fewest children of a branch other than the root (the root branch has at least 2)
pub(super) const BRANCH_MIN: usize = BRANCH_CAPACITY / 2;

// A split of a full node plus the new item gives two halves of at least the minimum, and two
// siblings at the minimum (one of them one below) fit in one node when they merge.
const _: () = assert!(LEAF_CAPACITY >= 4 && BRANCH_CAPACITY >= 4);
const _: () = assert!(2 * LEAF_MIN <= LEAF_CAPACITY && 2 * BRANCH_MIN <= BRANCH_CAPACITY);

/// One node of the tree; all leaves are at the same depth
pub(crate) enum Node<K, V> {
    /// Entries, sorted by key
    Leaf(Leaf<K, V>),
    /// Separator keys and children
    Branch(Branch<K, V>),
}

/// Sorted entries: `keys[i]` maps to `vals[i]`
pub(crate) struct Leaf<K, V> {
    pub(super) keys: Vec<K>,
    pub(super) vals: Vec<V>,
}

/// `children.len() == keys.len() + 1`; every key under `children[i]` is at least `keys[i - 1]`
/// and below `keys[i]`
///
/// A separator is the first key of its right subtree when it is made, and may stay behind
/// after that key is removed: it only has to keep dividing the two subtrees.
pub(crate) struct Branch<K, V> {
    pub(super) keys: Vec<K>,
    pub(super) children: Vec<Arc<Node<K, V>>>,
}

/// Where `key` is in the sorted `keys` (`Ok`) or would go (`Err`)
///
/// Binary search down to 8 keys, then a linear scan. Comparing heap-allocated keys (`Vec<u8>`)
/// is a cache miss per key; the scan's comparisons do not depend on each other, so the CPU
/// overlaps their misses, where each step of a binary search waits for the one before. Pure
/// binary search made random lookups about twice as slow as `BTreeMap`'s (which scans).
fn search<K, Q>(keys: &[K], key: &Q) -> Result<usize, usize>
where
    K: Borrow<Q>,
    Q: Ord + ?Sized,
{
    let (mut low, mut high) = (0, keys.len());
    while high - low > 8 {
        let mid = low + (high - low) / 2;
        match keys[mid].borrow().cmp(key) {
            Ordering::Less => low = mid + 1,
            Ordering::Equal => return Ok(mid),
            Ordering::Greater => high = mid,
        }
    }
    for (i, probe) in keys[low..high].iter().enumerate() {
        match probe.borrow().cmp(key) {
            Ordering::Less => {}
            Ordering::Equal => return Ok(low + i),
            Ordering::Greater => return Err(low + i),
        }
    }
    Err(high)
}

/// A copy with the same capacity as `from` (at most `cap`), so that it grows the same way
fn clone_vec<T: Clone>(from: &Vec<T>, cap: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(from.capacity().min(cap).max(from.len()));
    out.extend_from_slice(from);
    out
}

impl<K: Clone, V: Clone> Clone for Leaf<K, V> {
    fn clone(&self) -> Self {
        Leaf {
            keys: clone_vec(&self.keys, LEAF_CAPACITY),
            vals: clone_vec(&self.vals, LEAF_CAPACITY),
        }
    }
}

impl<K: Clone, V> Clone for Branch<K, V> {
    fn clone(&self) -> Self {
        Branch {
            keys: clone_vec(&self.keys, BRANCH_CAPACITY - 1),
            children: clone_vec(&self.children, BRANCH_CAPACITY),
        }
    }
}

impl<K: Clone, V: Clone> Clone for Node<K, V> {
    fn clone(&self) -> Self {
        match self {
            Node::Leaf(leaf) => Node::Leaf(leaf.clone()),
            Node::Branch(branch) => Node::Branch(branch.clone()),
        }
    }
}

impl<K, V> Leaf<K, V> {
    /// An empty leaf with room for [`LEAF_CAPACITY`] entries
    pub(super) fn full_size() -> Self {
        Leaf {
            keys: Vec::with_capacity(LEAF_CAPACITY),
            vals: Vec::with_capacity(LEAF_CAPACITY),
        }
    }

    /// Number of entries
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Where `key` is (`Ok`) or would go (`Err`)
    pub(super) fn search<Q>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        search(&self.keys, key)
    }

    /// Inserts at `index`, which the caller found with [`Leaf::search`]; the leaf has room
    ///
    /// A root leaf starts small and doubles (as a `Vec` does) up to [`LEAF_CAPACITY`], never
    /// past it, so a map of a few entries stays small.
    pub(super) fn insert_at(&mut self, index: usize, key: K, value: V) {
        debug_assert!(self.len() < LEAF_CAPACITY);
        if self.keys.len() == self.keys.capacity() {
            let extra = self.len().max(4).min(LEAF_CAPACITY - self.len());
            self.keys.reserve_exact(extra);
            self.vals.reserve_exact(extra);
        }
        self.keys.insert(index, key);
        self.vals.insert(index, value);
    }

    /// Moves the entries from `at` on into a new full-size leaf
    pub(super) fn split_off(&mut self, at: usize) -> Self {
        let mut right = Leaf::full_size();
        right.keys.extend(self.keys.drain(at..));
        right.vals.extend(self.vals.drain(at..));
        right
    }
}

impl<K, V> Branch<K, V> {
    /// An empty branch with room for [`BRANCH_CAPACITY`] children
    pub(super) fn full_size() -> Self {
        Branch {
            keys: Vec::with_capacity(BRANCH_CAPACITY - 1),
            children: Vec::with_capacity(BRANCH_CAPACITY),
        }
    }

    /// The index of the child whose subtree holds `key` (if the tree holds it)
    pub(super) fn child_index<Q>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        // The number of separators at most `key`.
        match search(&self.keys, key) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

impl<K, V> Node<K, V> {
    /// Below the minimum fill of a node other than the root
    pub(super) fn is_underfull(&self) -> bool {
        match self {
            Node::Leaf(leaf) => leaf.len() < LEAF_MIN,
            Node::Branch(branch) => branch.children.len() < BRANCH_MIN,
        }
    }

    /// Above the minimum fill, so it can give one item to a sibling
    pub(super) fn can_lend(&self) -> bool {
        match self {
            Node::Leaf(leaf) => leaf.len() > LEAF_MIN,
            Node::Branch(branch) => branch.children.len() > BRANCH_MIN,
        }
    }

    /// The value of `key` in this subtree
    pub(super) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let mut node = self;
        loop {
            match node {
                Node::Leaf(leaf) => return leaf.search(key).ok().map(|i| &leaf.vals[i]),
                Node::Branch(branch) => node = &branch.children[branch.child_index(key)],
            }
        }
    }

    /// The leftmost (`first`) or rightmost leaf of this subtree
    pub(super) fn edge_leaf(&self, first: bool) -> &Leaf<K, V> {
        let mut node = self;
        loop {
            match node {
                Node::Leaf(leaf) => return leaf,
                Node::Branch(branch) => {
                    // A branch has at least 2 children, so both ends exist.
                    let edge = if first {
                        branch.children.first()
                    } else {
                        branch.children.last()
                    };
                    match edge {
                        Some(child) => node = child,
                        None => unreachable!("a branch has at least 2 children"),
                    }
                }
            }
        }
    }
}
