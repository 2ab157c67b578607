//! Storage for the state machines: [`PersistentMap`], an ordered map with O(1) frozen views
//!
//! A state machine's data must sometimes be read as it was at one instant while writes go on:
//! a snapshot is encoded (and streamed, chunk by chunk) at an applied index, and a shard
//! handed over to another group is sent as it was at a configuration change. With a plain
//! `BTreeMap` that instant costs a full copy (400 ms at a million entries, below). A
//! [`PersistentMap`] is a B+tree whose nodes sit behind [`alloc::sync::Arc`]: `clone` copies
//! the root pointer and is the frozen view, and a write copies only the nodes on its path that
//! a view still shares ([`alloc::sync::Arc::make_mut`]). With no view alive every node is
//! unshared and writes change it in place, about as fast as `BTreeMap`.
//!
//! It is our own because no well-kept persistent B-tree crate builds for `no_std` + `alloc`:
//! `im` and `imbl` (B-tree `OrdMap`s) need `std` and are MPL-2.0; `rpds` builds `no_std`,
//! but its ordered map is a red-black tree with two allocations per entry (a node and the
//! entry), which costs 50% more heap per entry beyond the entry itself, 1.7 times the lookup
//! time and five times the iteration time (measurements below).
//!
//! # Shape
//!
//! Leaves hold up to [`LEAF_CAPACITY`] entries (keys and values in two vectors allocated at
//! full size once), branches up to [`BRANCH_CAPACITY`] children and one separator key fewer.
//! Every node but the root is at least half full: removals borrow from or merge with a
//! sibling and the tree loses a level when the root is left with one child. [`SortedBuilder`]
//! builds a map from ascending entries in O(n) with full leaves (snapshot restore, and
//! `Deserialize` when the keys come in order). A write right after a view copies the leaf it
//! touches and the branches above it, keys and values included (`Clone` of `K` and `V`):
//! with large values, `V = Arc<[u8]>` makes that copy cheap.
//!
//! # Measurements
//!
//! `cargo bench -p shale-benches --bench raft -- store --warm-up-time 0.5 --measurement-time 2`
//! (suite `benches/benches/suites/store.rs`) on a 2-vCPU KVM guest (AMD EPYC), release
//! profile, with another build running beside it (so ±15%): 1,000,000 entries of 16-byte keys
//! (`key:{i:012}`) and 100-byte values (`Vec<u8>`), filled in a shuffled order; random keys
//! from a pool, each write cloning its key and value (two allocations, included).
//!
//! | operation                               | `BTreeMap` | `PersistentMap` | `rpds` RB-tree |
//! |-----------------------------------------|-----------:|----------------:|---------------:|
//! | apply: insert/overwrite, random         |    2.17 µs |         2.44 µs |        3.87 µs |
//! | get, random (present)                   |    1.98 µs |         2.34 µs |        3.93 µs |
//! | view: `clone`                           |     405 ms |          4.8 ns |         5.3 ns |
//! | first write after a view                |          - |          7.7 µs |        4.3 µs |
//! | each of 1000 random writes after a view |          - |           19 µs |        7.0 µs |
//! | iterate all, per entry                  |      44 ns |           45 ns |         243 ns |
//! | `range_from` + 1000 entries, per entry  |      58 ns |           51 ns |         203 ns |
//! | build from 1M sorted entries, per entry | 34 ns [^1] |      35 ns [^2] |  638 ns [^3]   |
//! | insert 1M entries in order, per entry   |     329 ns |          336 ns |              - |
//!
//! [^1]: `collect` (sorts, then bulk-builds).
//!
//! [^2]: [`SortedBuilder`].
//!
//! [^3]: `insert_mut` in order.
//!
//! Lookups are bound by cache misses on the heap keys (a million keys are far beyond the
//! caches): each comparison of `Vec<u8>` keys reads a key from memory. Within a node the
//! search is binary down to 8 keys and then linear, so the last comparisons' misses overlap;
//! pure binary search made lookups twice as slow as `BTreeMap`'s. The writes after a view
//! copy a leaf (about 11 keys and values) and about 5 branches (11 separator keys each) per
//! write; 1000 writes cost more each than the first because their copies come from fresh
//! memory (the view keeps the originals alive), where the single write reuses what the last
//! round freed.
//!
//! Heap bytes per entry (`benches/tests/store_memory.rs`, bytes requested from the allocator,
//! 116 of them the key's and value's own): `BTreeMap` 193 by inserts and 166 built from
//! sorted entries, `PersistentMap` 191 by inserts and 172 from [`SortedBuilder`], `rpds` 228
//! (and two more allocations' malloc headers per entry than the B-trees).
//!
//! Node capacities (16/16) were chosen on the same data: 16, 32 and 64 gave the same lookup
//! and insert times within noise, 16/16 needs about 3% more memory per entry than 32/32, and
//! the first write after a view costs 7.5 µs at 16/16, 10.3 µs at 32/32 and 30 µs at 64/64
//! (a separate timing loop, without criterion).

mod tree;

pub use tree::{BRANCH_CAPACITY, Iter, LEAF_CAPACITY, PersistentMap, SortedBuilder};
