//! Deterministic tests: edge cases, growth and shrinkage over several levels, bounds,
//! the sorted builder, borrowed lookups, views and serde

use alloc::format;
use alloc::vec::Vec;
use core::ops::Bound;

use super::node::{LEAF_CAPACITY, LEAF_MIN};
use super::{PersistentMap, SortedBuilder};

/// A permutation of `0..n` (multiplication by an odd constant modulo a power of two)
fn shuffled(n: u64) -> impl Iterator<Item = u64> {
    let size = n.next_power_of_two();
    (0..size)
        .map(move |i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & (size - 1))
        .filter(move |&i| i < n)
}

fn entries(map: &PersistentMap<u64, u64>) -> Vec<(u64, u64)> {
    map.iter().map(|(k, v)| (*k, *v)).collect()
}

#[test]
fn empty_map() {
    let mut map: PersistentMap<u64, u64> = PersistentMap::new();
    map.check_invariants();
    assert!(map.is_empty());
    assert_eq!(map.len(), 0);
    assert_eq!(map.get(&1), None);
    assert_eq!(map.get_mut(&1), None);
    assert_eq!(map.remove(&1), None);
    assert_eq!(map.first_key_value(), None);
    assert_eq!(map.last_key_value(), None);
    assert_eq!(map.iter().next(), None);
    assert_eq!(map.range_from(Bound::Included(&0)).next(), None);
    assert!(map.shares_root_with(&PersistentMap::default()));
    assert_eq!(format!("{map:?}"), "{}");
    assert_eq!(map.height(), 0);
}

#[test]
fn one_entry() {
    let mut map = PersistentMap::new();
    assert_eq!(map.insert(7u64, 70u64), None);
    map.check_invariants();
    assert_eq!(map.len(), 1);
    assert_eq!(map.get(&7), Some(&70));
    assert_eq!(map.first_key_value(), Some((&7, &70)));
    assert_eq!(map.last_key_value(), Some((&7, &70)));
    assert_eq!(map.insert(7, 71), Some(70));
    assert_eq!(map.len(), 1);
    *map.get_mut(&7).unwrap() += 1;
    assert_eq!(*map.get_or_insert_with(7, || 0), 72);
    assert_eq!(format!("{map:?}"), "{7: 72}");
    assert_eq!(map.remove(&8), None);
    assert_eq!(map.remove(&7), Some(72));
    map.check_invariants();
    assert!(map.is_empty());
    assert_eq!(map.height(), 0);
}

#[test]
fn grows_several_levels_and_shrinks_back() {
    let n = 100_000;
    let mut map = PersistentMap::new();
    let mut heights = Vec::new();
    for (count, key) in shuffled(n).enumerate() {
        assert_eq!(map.insert(key, key * 2), None);
        if count % 10_000 == 0 {
            map.check_invariants();
            heights.push(map.height());
        }
    }
    map.check_invariants();
    assert_eq!(map.len(), n as usize);
    assert!(map.height() >= 4, "height {}", map.height());
    assert!(heights.windows(2).all(|pair| pair[0] <= pair[1]));
    assert_eq!(map.first_key_value(), Some((&0, &0)));
    assert_eq!(map.last_key_value(), Some((&(n - 1), &(2 * (n - 1)))));
    assert!(entries(&map).into_iter().eq((0..n).map(|k| (k, 2 * k))));
    // Remove everything in another order; the height never grows and ends at 0.
    let mut height = map.height();
    for (count, key) in shuffled(n).map(|k| (k * 7919) % n).enumerate() {
        assert_eq!(map.remove(&key), Some(key * 2));
        assert_eq!(map.remove(&key), None);
        assert!(map.height() <= height);
        height = map.height();
        if count % 10_000 == 0 {
            map.check_invariants();
        }
    }
    map.check_invariants();
    assert!(map.is_empty());
    assert_eq!(map.height(), 0);
}

#[test]
fn ascending_and_descending_inserts_keep_the_fill() {
    for keys in [
        (0..5000u64).collect::<Vec<_>>(),
        (0..5000u64).rev().collect::<Vec<_>>(),
    ] {
        let mut map = PersistentMap::new();
        for &key in &keys {
            map.insert(key, ());
        }
        map.check_invariants();
        for &key in &keys {
            map.remove(&key);
            if key % 97 == 0 {
                map.check_invariants();
            }
        }
        assert!(map.is_empty());
    }
}

#[test]
fn range_from_every_bound() {
    // Even keys 10, 12, ..., 2008: enough for several leaves.
    let map: PersistentMap<u64, u64> = (5..1005).map(|k| (2 * k, k)).collect();
    map.check_invariants();
    assert!(map.height() >= 2);
    let keys = |start: Bound<&u64>| map.range_from(start).map(|(k, _)| *k).collect::<Vec<_>>();
    let all: Vec<u64> = (5..1005).map(|k| 2 * k).collect();
    assert_eq!(keys(Bound::Unbounded), all);
    // Before the first key.
    assert_eq!(keys(Bound::Included(&0)), all);
    assert_eq!(keys(Bound::Excluded(&9)), all);
    // At the first key.
    assert_eq!(keys(Bound::Included(&10)), all);
    assert_eq!(keys(Bound::Excluded(&10)), all[1..]);
    // Every key present and every gap between keys.
    for (i, &key) in all.iter().enumerate() {
        assert_eq!(keys(Bound::Included(&key)), all[i..]);
        assert_eq!(keys(Bound::Excluded(&key)), all[i + 1..]);
        assert_eq!(keys(Bound::Included(&(key + 1))), all[i + 1..]);
        assert_eq!(keys(Bound::Excluded(&(key - 1))), all[i..]);
    }
    // At and after the last key.
    assert_eq!(keys(Bound::Included(&2008)), [2008]);
    assert!(keys(Bound::Excluded(&2008)).is_empty());
    assert!(keys(Bound::Included(&2009)).is_empty());
    assert!(keys(Bound::Included(&u64::MAX)).is_empty());
    // Size hints stay true.
    let mut iter = map.iter();
    assert_eq!(iter.size_hint(), (1000, Some(1000)));
    iter.next();
    assert_eq!(iter.size_hint(), (999, Some(999)));
    let from = map.range_from(Bound::Included(&1000));
    let (low, high) = from.size_hint();
    let count = from.count();
    assert!(low <= count && high.is_some_and(|high| count <= high));
}

#[test]
fn sorted_builder_refuses_keys_out_of_order() {
    let mut builder = SortedBuilder::new();
    assert!(builder.is_empty());
    assert_eq!(builder.push(5u64, 'a'), Ok(()));
    assert_eq!(builder.push(5, 'b'), Err((5, 'b')));
    assert_eq!(builder.push(4, 'c'), Err((4, 'c')));
    assert_eq!(builder.push(6, 'd'), Ok(()));
    assert_eq!(builder.len(), 2);
    let map = builder.finish();
    map.check_invariants();
    assert_eq!(format!("{map:?}"), "{5: 'a', 6: 'd'}");
}

#[test]
fn sorted_builder_equals_inserts_for_every_size() {
    for n in 0..=2000u64 {
        let mut builder = SortedBuilder::new();
        let mut inserted = PersistentMap::new();
        for key in 0..n {
            builder.push(key * 3, key).unwrap();
            inserted.insert(key * 3, key);
        }
        assert_eq!(builder.len(), n as usize);
        let built = builder.finish();
        built.check_invariants();
        assert_eq!(built, inserted, "size {n}");
        assert_eq!(built.len(), n as usize);
    }
}

#[test]
fn sorted_builder_fills_leaves_and_takes_writes() {
    let n = 40_000u64;
    let mut builder = SortedBuilder::new();
    for key in 0..n {
        builder.push(key, key).unwrap();
    }
    let mut map = builder.finish();
    map.check_invariants();
    // Full leaves: as few as the capacity allows (the last two may share).
    assert_eq!(map.leaf_count(), n.div_ceil(LEAF_CAPACITY as u64) as usize);
    assert_eq!(map.height(), 4);
    for key in shuffled(n) {
        map.insert(key, key + 1);
        map.insert(key + n, 0);
    }
    map.check_invariants();
    for key in shuffled(2 * n) {
        map.remove(&key);
    }
    map.check_invariants();
    assert!(map.is_empty());
}

#[test]
fn byte_keys_with_borrowed_lookups() {
    let mut map: PersistentMap<Vec<u8>, Vec<u8>> = PersistentMap::new();
    for i in 0..3000u32 {
        let key = format!("key:{i:012}").into_bytes();
        map.insert(key, alloc::vec![i as u8; 100]);
    }
    map.check_invariants();
    let key: &[u8] = b"key:000000001234";
    assert_eq!(map.get(key).map(|v| v[0]), Some(1234u32 as u8));
    assert!(map.contains_key(key));
    assert!(!map.contains_key(&b"key:999"[..]));
    map.get_mut(key).unwrap()[0] = 9;
    assert_eq!(map.get(key).unwrap()[0], 9);
    let after: Vec<&[u8]> = map
        .range_from(Bound::Excluded(key))
        .take(2)
        .map(|(k, _)| k.as_slice())
        .collect();
    assert_eq!(after, [&b"key:000000001235"[..], &b"key:000000001236"[..]]);
    assert_eq!(map.remove(key).map(|v| v[0]), Some(9));
    assert_eq!(map.get(key), None);
    map.check_invariants();
}

#[test]
fn views_are_frozen_both_ways() {
    let mut map: PersistentMap<u64, u64> = (0..10_000).map(|k| (k, k)).collect();
    let view = map.clone();
    assert!(view.shares_root_with(&map));
    // Reading or missing a key copies nothing.
    assert_eq!(map.get_mut(&20_000), None);
    assert_eq!(map.remove(&20_000), None);
    assert!(view.shares_root_with(&map));
    map.insert(5, 500);
    assert!(!view.shares_root_with(&map));
    for key in 0..5000 {
        map.remove(&key);
    }
    map.check_invariants();
    view.check_invariants();
    assert_eq!(view.len(), 10_000);
    assert!(entries(&view).into_iter().eq((0..10_000).map(|k| (k, k))));
    // And the other way round.
    let mut other = map.clone();
    other.clear();
    other.insert(1, 1);
    assert_eq!(map.len(), 5000);
    assert_eq!(map.first_key_value(), Some((&5000, &5000)));
}

#[test]
fn small_root_leaf_grows_to_capacity() {
    let mut map = PersistentMap::new();
    for key in 0..LEAF_CAPACITY as u64 {
        map.insert(key, key);
        map.check_invariants();
    }
    assert_eq!(map.height(), 1);
    map.insert(LEAF_CAPACITY as u64, 0);
    assert_eq!(map.height(), 2);
    for key in 0..=(LEAF_CAPACITY - LEAF_MIN) as u64 {
        map.remove(&key);
    }
    map.check_invariants();
    assert_eq!(map.height(), 1);
}

#[test]
fn serde_round_trip() {
    let map: PersistentMap<Vec<u8>, u64> = (0..500u64)
        .map(|i| (format!("k{i:04}").into_bytes(), i))
        .collect();
    let bytes = postcard::to_allocvec(&map).unwrap();
    let back: PersistentMap<Vec<u8>, u64> = postcard::from_bytes(&bytes).unwrap();
    back.check_invariants();
    assert_eq!(back, map);
    // Keys out of order (as another encoder may write them) are inserted instead; postcard
    // writes a sequence of pairs the way it writes a map.
    let mut pairs: Vec<(Vec<u8>, u64)> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
    pairs.swap(100, 400);
    pairs.push(pairs[7].clone());
    let bytes = postcard::to_allocvec(&pairs).unwrap();
    let shuffled: PersistentMap<Vec<u8>, u64> = postcard::from_bytes(&bytes).unwrap();
    shuffled.check_invariants();
    assert_eq!(shuffled, map);
}
