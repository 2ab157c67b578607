//! `PersistentMap` against `BTreeMap` and `rpds::RedBlackTreeMapSync`, at 1,000,000 entries
//!
//! Keys are `format!("key:{i:012}")` (16 bytes), values 100 bytes, both `Vec<u8>`; the maps
//! are filled in a shuffled order. Random keys come from a fixed pool of 65,536, drawn with a
//! seeded generator, and each write clones its key and value from the pool (two allocations,
//! as an apply decoding a command pays). The three maps are built once, the first time a
//! benchmark of this suite runs, and shared by the suite.
//!
//! - `store/apply/{map}`: one insert of a random key from a space of 1,250,000 (80%
//!   overwrites at first, more as the map fills to at most 1,250,000);
//! - `store/get/{map}`: one lookup of a random present key, borrowed as `&[u8]`;
//! - `store/view/clone/{map}`: taking a view (`clone`, and dropping it): O(1) for the two
//!   persistent maps, a full copy for `BTreeMap`;
//! - `store/view/first_write/{map}`: one overwrite right after a view was taken (the view
//!   dropped outside the timing): the copy-on-write of one path;
//! - `store/view/writes_1000/{map}`: 1000 random overwrites after a view, per write;
//! - `store/iterate/full/{map}`: a full iteration, per entry;
//! - `store/iterate/range_1000/{map}`: 1000 entries from a random key on, per entry;
//! - `store/bulk_build/{how}`: building a 1,000,000-entry map from sorted entries, per entry.
//!
//! Results (2-vCPU KVM guest, release profile, `-- store --warm-up-time 0.5
//! --measurement-time 2`, another build running beside it, so ±15%), per operation or entry:
//!
//! | benchmark                  | `btree` | `persistent` | `rpds`  |
//! |----------------------------|--------:|-------------:|--------:|
//! | `apply`                    | 2.17 µs |      2.44 µs | 3.87 µs |
//! | `get`                      | 1.98 µs |      2.34 µs | 3.93 µs |
//! | `view/clone`               |  405 ms |       4.8 ns |  5.3 ns |
//! | `view/first_write`         |       - |       7.7 µs |  4.3 µs |
//! | `view/writes_1000` (each)  |       - |        19 µs |  7.0 µs |
//! | `iterate/full` (each)      |   44 ns |        45 ns |  243 ns |
//! | `iterate/range_1000` (each)|   58 ns |        51 ns |  203 ns |
//!
//! `bulk_build`, per entry: `sorted_builder` 35 ns, `btree_from_iter` 34 ns,
//! `persistent_insert` 336 ns, `btree_insert` 329 ns, `rpds_insert` 638 ns. The discussion is
//! in the documentation of `shale_core::store`; memory per entry is measured by
//! `benches/tests/store_memory.rs`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::ops::Bound;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use rpds::RedBlackTreeMapSync;
use shale_core::store::{PersistentMap, SortedBuilder};

/// Entries in every map
pub const ENTRIES: u64 = 1_000_000;

/// Bytes per value
pub const VALUE_LEN: usize = 100;

/// Random keys drawn per benchmark, reused round robin
const POOL: usize = 1 << 16;

type Bytes = Vec<u8>;

/// The 16-byte key number `i`
pub fn key(i: u64) -> Bytes {
    format!("key:{i:012}").into_bytes()
}

/// A 100-byte value
pub fn value(i: u64) -> Bytes {
    vec![i as u8; VALUE_LEN]
}

/// SplitMix64: a seeded, repeatable stream
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `0..n` in a shuffled order (Fisher-Yates)
pub fn shuffled(n: u64, seed: u64) -> Vec<u64> {
    let mut rng = Rng(seed);
    let mut order: Vec<u64> = (0..n).collect();
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// `POOL` random keys below `space`
fn pool(space: u64, seed: u64) -> Vec<Bytes> {
    let mut rng = Rng(seed);
    (0..POOL).map(|_| key(rng.below(space))).collect()
}

/// The three maps, filled with the same entries in the same shuffled order
struct Maps {
    btree: BTreeMap<Bytes, Bytes>,
    persistent: PersistentMap<Bytes, Bytes>,
    rpds: RedBlackTreeMapSync<Bytes, Bytes>,
}

impl Maps {
    fn new() -> Self {
        let mut maps = Maps {
            btree: BTreeMap::new(),
            persistent: PersistentMap::new(),
            rpds: RedBlackTreeMapSync::new_sync(),
        };
        for i in shuffled(ENTRIES, 1) {
            maps.btree.insert(key(i), value(i));
            maps.persistent.insert(key(i), value(i));
            maps.rpds.insert_mut(key(i), value(i));
        }
        maps
    }
}

/// The suite's maps, built the first time a benchmark needs them (not at all when the
/// filter leaves out the whole suite)
fn maps(fixture: &mut Option<Maps>) -> &mut Maps {
    fixture.get_or_insert_with(Maps::new)
}

/// Runs `op` once per iteration on the next key of `keys`
fn each_key(keys: &[Bytes], mut op: impl FnMut(&Bytes)) -> impl FnMut() {
    let mut next = 0;
    move || {
        op(&keys[next]);
        next = (next + 1) % keys.len();
    }
}

/// Every `store/...` benchmark but `bulk_build` (see the module documentation)
pub fn store(c: &mut Criterion) {
    let mut fixture: Option<Maps> = None;
    let writes = pool(ENTRIES + ENTRIES / 4, 2);
    let reads = pool(ENTRIES, 3);
    let fresh = value(7);

    let mut group = c.benchmark_group("store/apply");
    group.throughput(Throughput::Elements(1));
    group.bench_function("btree", |b| {
        let map = &mut maps(&mut fixture).btree;
        let mut op = each_key(&writes, |k| drop(map.insert(k.clone(), fresh.clone())));
        b.iter(&mut op);
    });
    group.bench_function("persistent", |b| {
        let map = &mut maps(&mut fixture).persistent;
        let mut op = each_key(&writes, |k| drop(map.insert(k.clone(), fresh.clone())));
        b.iter(&mut op);
    });
    group.bench_function("rpds", |b| {
        let map = &mut maps(&mut fixture).rpds;
        let mut op = each_key(&writes, |k| map.insert_mut(k.clone(), fresh.clone()));
        b.iter(&mut op);
    });
    group.finish();

    let mut group = c.benchmark_group("store/get");
    group.throughput(Throughput::Elements(1));
    group.bench_function("btree", |b| {
        let map = &maps(&mut fixture).btree;
        let mut op = each_key(&reads, |k| {
            black_box(map.get(k.as_slice()));
        });
        b.iter(&mut op);
    });
    group.bench_function("persistent", |b| {
        let map = &maps(&mut fixture).persistent;
        let mut op = each_key(&reads, |k| {
            black_box(map.get(k.as_slice()));
        });
        b.iter(&mut op);
    });
    group.bench_function("rpds", |b| {
        let map = &maps(&mut fixture).rpds;
        let mut op = each_key(&reads, |k| {
            black_box(map.get(k.as_slice()));
        });
        b.iter(&mut op);
    });
    group.finish();

    let mut group = c.benchmark_group("store/view");
    group.bench_function("clone/persistent", |b| {
        let map = &maps(&mut fixture).persistent;
        b.iter(|| black_box(map.clone()));
    });
    group.bench_function("clone/rpds", |b| {
        let map = &maps(&mut fixture).rpds;
        b.iter(|| black_box(map.clone()));
    });
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group.bench_function("clone/btree", |b| {
        let map = &maps(&mut fixture).btree;
        b.iter(|| black_box(map.clone()));
    });
    group.sampling_mode(SamplingMode::Auto).sample_size(50);
    for writes_after in [1, 1000] {
        let name = if writes_after == 1 {
            "first_write"
        } else {
            "writes_1000"
        };
        group.throughput(Throughput::Elements(writes_after));
        group.bench_function(BenchmarkId::new(name, "persistent"), |b| {
            let map = &mut maps(&mut fixture).persistent;
            let mut next = 0;
            b.iter_custom(|iters| {
                writes_after_view(iters, writes_after, map, |map, k| {
                    drop(map.insert(reads[next].clone(), k.clone()));
                    next = (next + 1) % POOL;
                })
            });
        });
        group.bench_function(BenchmarkId::new(name, "rpds"), |b| {
            let map = &mut maps(&mut fixture).rpds;
            let mut next = 0;
            b.iter_custom(|iters| {
                writes_after_view(iters, writes_after, map, |map, k| {
                    map.insert_mut(reads[next].clone(), k.clone());
                    next = (next + 1) % POOL;
                })
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("store/iterate");
    group.throughput(Throughput::Elements(ENTRIES));
    group.sample_size(10);
    group.bench_function("full/btree", |b| {
        let map = &maps(&mut fixture).btree;
        b.iter(|| map.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>());
    });
    group.bench_function("full/persistent", |b| {
        let map = &maps(&mut fixture).persistent;
        b.iter(|| map.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>());
    });
    group.bench_function("full/rpds", |b| {
        let map = &maps(&mut fixture).rpds;
        b.iter(|| map.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>());
    });
    group.sample_size(50);
    group.throughput(Throughput::Elements(1000));
    let sum = |iter: &mut dyn Iterator<Item = (&Bytes, &Bytes)>| -> usize {
        iter.take(1000).map(|(k, v)| k.len() + v.len()).sum()
    };
    group.bench_function("range_1000/btree", |b| {
        let map = &maps(&mut fixture).btree;
        let mut op = each_key(&reads, |k| {
            let start = (Bound::Included(k.as_slice()), Bound::Unbounded);
            black_box(sum(&mut map.range::<[u8], _>(start)));
        });
        b.iter(&mut op);
    });
    group.bench_function("range_1000/persistent", |b| {
        let map = &maps(&mut fixture).persistent;
        let mut op = each_key(&reads, |k| {
            black_box(sum(&mut map.range_from(Bound::Included(k.as_slice()))));
        });
        b.iter(&mut op);
    });
    group.bench_function("range_1000/rpds", |b| {
        let map = &maps(&mut fixture).rpds;
        let mut op = each_key(&reads, |k| {
            let start = (Bound::Included(k.as_slice()), Bound::Unbounded);
            black_box(sum(&mut map.range::<[u8], _>(start)));
        });
        b.iter(&mut op);
    });
    group.finish();
}

/// Times `iters` rounds of: take a view (untimed), `write` `n` times, drop the view (untimed)
fn writes_after_view<M: Clone>(
    iters: u64,
    n: u64,
    map: &mut M,
    mut write: impl FnMut(&mut M, &Bytes),
) -> Duration {
    let value = value(9);
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let view = map.clone();
        let start = Instant::now();
        for _ in 0..n {
            write(map, &value);
        }
        total += start.elapsed();
        drop(black_box(view));
    }
    total
}

/// `store/bulk_build/{how}`: a 1,000,000-entry map from sorted entries
pub fn bulk_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("store/bulk_build");
    group.throughput(Throughput::Elements(ENTRIES));
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    let sorted = || (0..ENTRIES).map(|i| (key(i), value(i))).collect::<Vec<_>>();
    group.bench_function("sorted_builder", |b| {
        b.iter_batched(
            sorted,
            |entries| {
                let mut builder = SortedBuilder::new();
                for (k, v) in entries {
                    let _ = builder.push(k, v);
                }
                builder.finish()
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("persistent_insert", |b| {
        b.iter_batched(
            sorted,
            |entries| entries.into_iter().collect::<PersistentMap<_, _>>(),
            BatchSize::PerIteration,
        );
    });
    group.bench_function("btree_from_iter", |b| {
        b.iter_batched(
            sorted,
            |entries| entries.into_iter().collect::<BTreeMap<_, _>>(),
            BatchSize::PerIteration,
        );
    });
    group.bench_function("btree_insert", |b| {
        b.iter_batched(
            sorted,
            |entries| {
                let mut map = BTreeMap::new();
                for (k, v) in entries {
                    map.insert(k, v);
                }
                map
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("rpds_insert", |b| {
        b.iter_batched(
            sorted,
            |entries| {
                let mut map = RedBlackTreeMapSync::new_sync();
                for (k, v) in entries {
                    map.insert_mut(k, v);
                }
                map
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}
