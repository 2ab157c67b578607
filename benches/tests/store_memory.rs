//! Heap bytes per entry of `PersistentMap`, `BTreeMap` and `rpds::RedBlackTreeMapSync`
//!
//! Each map gets the same entries (16-byte keys, 100-byte values, inserted in a shuffled
//! order unless said otherwise); a byte-counting allocator measures what the map holds,
//! entries included. Run with
//! `cargo test -p shale-benches --release --test store_memory -- --nocapture` to see the
//! table. Measured at 1,000,000 entries (bytes per entry, of which 116 are the keys' and
//! values' own bytes):
//!
//! | map                                        | bytes/entry | beyond the entry's 116 |
//! |--------------------------------------------|------------:|-----------------------:|
//! | `BTreeMap`, inserts                        |       193.2 |                   77.2 |
//! | `PersistentMap`, inserts                   |       190.5 |                   74.5 |
//! | `BTreeMap`, `collect` of sorted entries    |       166.2 |                   50.2 |
//! | `PersistentMap`, `SortedBuilder`           |       171.8 |                   55.8 |
//! | `rpds::RedBlackTreeMapSync`, `insert_mut`  |       228.0 |                  112.0 |
//!
//! Bytes are those requested from the allocator; malloc adds its own rounding and headers
//! on top (about 16 bytes per allocation with glibc), which favours maps with fewer, larger
//! allocations (the B-trees) over one allocation per entry (`rpds`, two).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicIsize, Ordering};

use rpds::RedBlackTreeMapSync;
use shale_core::store::{PersistentMap, SortedBuilder};

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, keeping a count of live bytes
struct ByteCounter;

// `GlobalAlloc` is an unsafe trait; as in `shale_benches::CountingAllocator`, every method
// forwards its arguments unchanged to `System` (same contract) and only keeps a counter.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for ByteCounter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` through this wrapper with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let grown = new_size as isize - layout.size() as isize;
        LIVE_BYTES.fetch_add(grown, Ordering::Relaxed);
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: ByteCounter = ByteCounter;

/// Entries per map: 200,000 keeps this test to a couple of seconds (the table above is at
/// 1,000,000, where `BTreeMap` needs 3.5 bytes per entry more and the others the same)
const ENTRIES: u64 = 200_000;

/// The keys' and values' own bytes
const ENTRY_BYTES: f64 = 16.0 + 100.0;

/// `0..n` in a shuffled order (multiplication by an odd constant modulo a power of two)
fn shuffled(n: u64) -> impl Iterator<Item = u64> {
    let size = n.next_power_of_two();
    (0..size)
        .map(move |i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & (size - 1))
        .filter(move |&i| i < n)
}

fn entry(i: u64) -> (Vec<u8>, Vec<u8>) {
    (format!("key:{i:012}").into_bytes(), vec![i as u8; 100])
}

/// Live bytes per entry of what `build` returns, while it is alive
fn bytes_per_entry<M>(build: impl FnOnce() -> M) -> f64 {
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let map = build();
    let after = LIVE_BYTES.load(Ordering::Relaxed);
    drop(map);
    (after - before) as f64 / ENTRIES as f64
}

/// Keep this the only test in this binary: the byte count is process-wide.
#[test]
fn memory_per_entry() {
    let rows = [
        (
            "BTreeMap",
            bytes_per_entry(|| {
                // Inserted one by one: `collect` would sort and bulk-build full nodes.
                let mut map = BTreeMap::new();
                for (key, value) in shuffled(ENTRIES).map(entry) {
                    map.insert(key, value);
                }
                map
            }),
        ),
        (
            "PersistentMap",
            bytes_per_entry(|| {
                shuffled(ENTRIES)
                    .map(entry)
                    .collect::<PersistentMap<_, _>>()
            }),
        ),
        (
            "BTreeMap (from sorted)",
            bytes_per_entry(|| (0..ENTRIES).map(entry).collect::<BTreeMap<_, _>>()),
        ),
        (
            "PersistentMap (SortedBuilder)",
            bytes_per_entry(|| {
                let mut builder = SortedBuilder::new();
                for (key, value) in (0..ENTRIES).map(entry) {
                    let _ = builder.push(key, value);
                }
                builder.finish()
            }),
        ),
        (
            "rpds::RedBlackTreeMapSync",
            bytes_per_entry(|| {
                let mut map = RedBlackTreeMapSync::new_sync();
                for (key, value) in shuffled(ENTRIES).map(entry) {
                    map.insert_mut(key, value);
                }
                map
            }),
        ),
    ];
    println!(
        "{:<30} | {:>11} | {:>22}",
        "map", "bytes/entry", "beyond the entry's 116"
    );
    for (name, bytes) in rows {
        println!("{name:<30} | {bytes:>11.1} | {:>22.1}", bytes - ENTRY_BYTES);
        // Whatever the map, the entry's own bytes are there; and no map here needs more than
        // twice as much again (a leak or a node per entry would show).
        assert!(bytes >= ENTRY_BYTES, "{name}: {bytes}");
        assert!(bytes < 3.0 * ENTRY_BYTES, "{name}: {bytes}");
    }
    // Measured within 5% of `BTreeMap` either way; a bound with room for allocator noise.
    for (ours, theirs) in [(1, 0), (3, 2)] {
        let persistent = rows[ours].1 - ENTRY_BYTES;
        let btree = rows[theirs].1 - ENTRY_BYTES;
        assert!(
            persistent < 1.25 * btree,
            "{}: {persistent:.1} B/entry beyond the entry, {}: {btree:.1}",
            rows[ours].0,
            rows[theirs].0,
        );
    }
}
