//! The shard store: where a shard keeps its keys and values, behind a small trait
//!
//! Everything above the store (the key-value operations, shard hand-over, snapshots) goes
//! through [`ShardStore`], so another engine (an on-disk one, say) can replace [`MemStore`]
//! without touching Raft or the hand-over protocol. The trait asks for three things besides
//! reads and writes:
//!
//! - [`Clone`] is a **point-in-time view** and must be cheap (O(1) or O(log n)): snapshots
//!   and hand-over read only from such views while the shard keeps taking writes;
//! - [`ShardStore::range_from`] iterates in key order from a cursor, so a view can be read a
//!   bounded piece at a time;
//! - [`ShardStore::len`] and [`ShardStore::data_bytes`] are counters, never scans.
//!
//! [`MemStore`] keeps the data in memory in a [`PersistentMap`]: a B+tree whose clones share
//! their nodes and copy only what a later write touches.
//!
//! ```
//! use shale_core::shard::{MemStore, ShardStore};
//!
//! let mut store = MemStore::default();
//! store.insert(b"a".to_vec(), b"1".to_vec());
//! let view = store.clone(); // frozen, O(1)
//! store.insert(b"b".to_vec(), b"22".to_vec());
//! assert_eq!(view.len(), 1);
//! assert_eq!(store.data_bytes(), 5);
//! let from_a: Vec<_> = store.range_from(Some(b"a")).collect();
//! assert_eq!(from_a, vec![(&b"b"[..], &b"22"[..])]);
//! ```

use alloc::vec::Vec;
use core::fmt;
use core::ops::Bound;

use super::ops::Bytes;
use crate::store::{PersistentMap, SortedBuilder};

/// Builds a store from entries given in ascending key order, as a snapshot restores them
pub trait StoreBuilder: Default + Send {
    /// The store it builds
    type Store;
    /// Adds an entry above every one added before; `false` (and nothing added) otherwise
    fn push(&mut self, key: Bytes, value: Bytes) -> bool;
    /// The store of every entry pushed
    fn finish(self) -> Self::Store;
}

/// Where a shard keeps its data (see the module docs)
pub trait ShardStore: Clone + Default + fmt::Debug + PartialEq + Send + Sync + 'static {
    /// Builds this store from ascending entries (a restore), denser and faster than inserts
    type Builder: StoreBuilder<Store = Self>;
    /// The value of `key`
    fn get(&self, key: &[u8]) -> Option<&[u8]>;
    /// Sets `key` to `value`; the previous value
    fn insert(&mut self, key: Bytes, value: Bytes) -> Option<Bytes>;
    /// Removes `key`; its value
    fn remove(&mut self, key: &[u8]) -> Option<Bytes>;
    /// Appends `suffix` to the value of `key` (absent counts as empty); the new length
    fn append(&mut self, key: &[u8], suffix: &[u8]) -> usize;
    /// Number of keys
    fn len(&self) -> u64;
    /// Whether no key is held
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes of keys and values held
    fn data_bytes(&self) -> u64;
    /// Entries in key order, after `after` (from the first with `None`)
    fn range_from<'a>(
        &'a self,
        after: Option<&[u8]>,
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a;
}

/// The in-memory shard store: a [`PersistentMap`] with byte counters
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MemStore {
    map: PersistentMap<Bytes, Bytes>,
    bytes: u64,
}

impl fmt::Debug for MemStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemStore")
            .field("keys", &self.map.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl MemStore {
    /// Every entry, in key order
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.map.iter()
    }
}

fn entry_bytes(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

/// Builds a [`MemStore`] with full B+tree leaves ([`SortedBuilder`])
#[derive(Default)]
pub struct MemStoreBuilder {
    builder: SortedBuilder<Bytes, Bytes>,
    bytes: u64,
}

impl StoreBuilder for MemStoreBuilder {
    type Store = MemStore;

    fn push(&mut self, key: Bytes, value: Bytes) -> bool {
        let added = entry_bytes(&key, &value);
        let pushed = self.builder.push(key, value).is_ok();
        if pushed {
            self.bytes += added;
        }
        pushed
    }

    fn finish(self) -> MemStore {
        MemStore {
            map: self.builder.finish(),
            bytes: self.bytes,
        }
    }
}

impl ShardStore for MemStore {
    type Builder = MemStoreBuilder;

    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    fn insert(&mut self, key: Bytes, value: Bytes) -> Option<Bytes> {
        let added = entry_bytes(&key, &value);
        let klen = key.len();
        let previous = self.map.insert(key, value);
        let removed = previous.as_ref().map_or(0, |p| (klen + p.len()) as u64);
        self.bytes = self.bytes + added - removed;
        previous
    }

    fn remove(&mut self, key: &[u8]) -> Option<Bytes> {
        let previous = self.map.remove(key)?;
        self.bytes -= entry_bytes(key, &previous);
        Some(previous)
    }

    fn append(&mut self, key: &[u8], suffix: &[u8]) -> usize {
        let value = match self.map.get_mut(key) {
            Some(value) => value,
            None => {
                self.bytes += key.len() as u64;
                self.map.get_or_insert_with(key.to_vec(), Vec::new)
            }
        };
        value.extend_from_slice(suffix);
        let len = value.len();
        self.bytes += suffix.len() as u64;
        len
    }

    fn len(&self) -> u64 {
        self.map.len() as u64
    }

    fn data_bytes(&self) -> u64 {
        self.bytes
    }

    fn range_from<'a>(
        &'a self,
        after: Option<&[u8]>,
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let start = match after {
            Some(key) => Bound::Excluded(key),
            None => Bound::Unbounded,
        };
        self.map
            .range_from(start)
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn counters_follow_every_write_and_views_stay_frozen() {
        let mut s = MemStore::default();
        assert_eq!(s.insert(b"k1".to_vec(), b"abc".to_vec()), None);
        assert_eq!(s.data_bytes(), 5);
        let view = s.clone();
        assert_eq!(
            s.insert(b"k1".to_vec(), b"x".to_vec()),
            Some(b"abc".to_vec())
        );
        assert_eq!(s.data_bytes(), 3);
        assert_eq!(s.append(b"k1", b"yz"), 3);
        assert_eq!(s.append(b"k2", b"q"), 1);
        assert_eq!(s.data_bytes(), 8);
        assert_eq!(s.remove(b"k1"), Some(b"xyz".to_vec()));
        assert_eq!(s.remove(b"k1"), None);
        assert_eq!((s.len(), s.data_bytes()), (1, 3));
        assert_eq!(view.get(b"k1"), Some(&b"abc"[..]));
        assert_eq!((view.len(), view.data_bytes()), (1, 5));
        let all: Vec<_> = s.range_from(None).collect();
        assert_eq!(all, vec![(&b"k2"[..], &b"q"[..])]);
        assert_eq!(s.range_from(Some(b"k2")).count(), 0);
    }

    #[test]
    fn a_builder_takes_ascending_entries_only_and_counts_their_bytes() {
        let mut b = MemStoreBuilder::default();
        assert!(b.push(b"a".to_vec(), b"12".to_vec()));
        assert!(b.push(b"b".to_vec(), b"3".to_vec()));
        assert!(!b.push(b"b".to_vec(), b"again".to_vec()));
        assert!(!b.push(b"a0".to_vec(), b"back".to_vec()));
        let built = b.finish();
        let mut inserted = MemStore::default();
        inserted.insert(b"a".to_vec(), b"12".to_vec());
        inserted.insert(b"b".to_vec(), b"3".to_vec());
        assert_eq!(built, inserted);
        assert_eq!(built.data_bytes(), 5);
    }
}
