//! Model test: random operations on a [`PersistentMap`] and on `BTreeMap`, side by side,
//! with views taken at random points and written on both sides afterwards

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::ops::Bound;

use proptest::prelude::*;

use super::PersistentMap;

type Map = PersistentMap<u16, u32>;
type Model = BTreeMap<u16, u32>;

/// One step; keys are drawn from a small space so that removals and overwrites hit
#[derive(Clone, Debug)]
enum Op {
    Insert(u16, u32),
    Remove(u16),
    Get(u16),
    GetMut(u16, u32),
    GetOrInsert(u16, u32),
    RangeFrom(u8, u16, u8),
    FirstLast,
    /// Inserts `count` consecutive keys from a start: grows the tree a few levels at once
    InsertMany(u16, u16, u32),
    /// Removes `count` consecutive keys from a start: shrinks it again
    RemoveMany(u16, u16),
    Clear,
    /// Freezes the map as a view, beside a copy of the model
    TakeView,
    /// Applies an operation to a view (and its model) instead of the map
    OnView(usize, Box<Op>),
    DropView(usize),
}

fn op(keys: u16) -> impl Strategy<Value = Op> {
    let key = move || 0..keys;
    let simple = prop_oneof![
        8 => (key(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        6 => key().prop_map(Op::Remove),
        2 => key().prop_map(Op::Get),
        2 => (key(), any::<u32>()).prop_map(|(k, v)| Op::GetMut(k, v)),
        2 => (key(), any::<u32>()).prop_map(|(k, v)| Op::GetOrInsert(k, v)),
        2 => (0..3u8, key(), any::<u8>()).prop_map(|(b, k, n)| Op::RangeFrom(b, k, n)),
        1 => Just(Op::FirstLast),
    ];
    prop_oneof![
        20 => simple.clone(),
        2 => (key(), 0..keys, any::<u32>()).prop_map(|(s, n, v)| Op::InsertMany(s, n, v)),
        2 => (key(), 0..keys).prop_map(|(s, n)| Op::RemoveMany(s, n)),
        1 => Just(Op::Clear),
        3 => Just(Op::TakeView),
        4 => (any::<usize>(), simple).prop_map(|(i, op)| Op::OnView(i, Box::new(op))),
        1 => any::<usize>().prop_map(Op::DropView),
    ]
}

/// A key space (a few leaves, or several levels) and a sequence of operations over it
fn scenario() -> impl Strategy<Value = (u16, Vec<Op>)> {
    prop_oneof![Just(48u16), Just(600), Just(5000)]
        .prop_flat_map(|keys| (Just(keys), proptest::collection::vec(op(keys), 1..120)))
}

/// Applies `op` to both; panics (failing the case) when they answer differently
fn apply(map: &mut Map, model: &mut Model, op: &Op, keys: u16) {
    match *op {
        Op::Insert(k, v) => assert_eq!(map.insert(k, v), model.insert(k, v)),
        Op::Remove(k) => assert_eq!(map.remove(&k), model.remove(&k)),
        Op::Get(k) => {
            assert_eq!(map.get(&k), model.get(&k));
            assert_eq!(map.contains_key(&k), model.contains_key(&k));
        }
        Op::GetMut(k, v) => {
            let ours = map.get_mut(&k).map(|value| core::mem::replace(value, v));
            let theirs = model.get_mut(&k).map(|value| core::mem::replace(value, v));
            assert_eq!(ours, theirs);
        }
        Op::GetOrInsert(k, v) => {
            let ours = map.get_or_insert_with(k, || v);
            let theirs = model.entry(k).or_insert(v);
            assert_eq!(ours, theirs);
            *ours = ours.wrapping_add(1);
            *theirs = theirs.wrapping_add(1);
        }
        Op::RangeFrom(bound, k, take) => {
            let start = match bound {
                0 => Bound::Included(&k),
                1 => Bound::Excluded(&k),
                _ => Bound::Unbounded,
            };
            let take = usize::from(take);
            let ours: Vec<_> = map.range_from(start).take(take).collect();
            let theirs: Vec<_> = model.range((start, Bound::Unbounded)).take(take).collect();
            assert_eq!(ours, theirs);
        }
        Op::FirstLast => {
            assert_eq!(map.first_key_value(), model.first_key_value());
            assert_eq!(map.last_key_value(), model.last_key_value());
        }
        Op::InsertMany(start, count, v) => {
            for i in 0..count {
                let k = (start + i) % keys;
                assert_eq!(map.insert(k, v), model.insert(k, v));
            }
        }
        Op::RemoveMany(start, count) => {
            for i in 0..count {
                let k = (start + i) % keys;
                assert_eq!(map.remove(&k), model.remove(&k));
            }
        }
        Op::Clear => {
            map.clear();
            model.clear();
        }
        Op::TakeView | Op::OnView(..) | Op::DropView(_) => {}
    }
}

/// The map is well formed and holds exactly the model's entries
fn check(map: &Map, model: &Model) {
    map.check_invariants();
    assert_eq!(map.len(), model.len());
    assert!(map.iter().eq(model.iter()), "{map:?} != {model:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Every answer matches `BTreeMap`'s; every view keeps the state it was taken in while
    /// the map moves on, and writes to a view never reach the map
    #[test]
    fn behaves_like_btreemap_with_frozen_views((keys, ops) in scenario()) {
        let mut map = Map::new();
        let mut model = Model::new();
        let mut views: Vec<(Map, Model)> = Vec::new();
        for op in &ops {
            match op {
                Op::TakeView => {
                    let view = map.clone();
                    assert!(view.shares_root_with(&map));
                    if views.len() == 4 {
                        views.remove(0);
                    }
                    views.push((view, model.clone()));
                }
                Op::OnView(i, inner) => {
                    if !views.is_empty() {
                        let len = views.len();
                        let (view, view_model) = &mut views[i % len];
                        apply(view, view_model, inner, keys);
                    }
                }
                Op::DropView(i) => {
                    if !views.is_empty() {
                        let len = views.len();
                        views.remove(i % len);
                    }
                }
                _ => apply(&mut map, &mut model, op, keys),
            }
            check(&map, &model);
            for (view, view_model) in &views {
                check(view, view_model);
            }
        }
        // Serde keeps the final state.
        let bytes = postcard::to_allocvec(&map).unwrap();
        let back: Map = postcard::from_bytes(&bytes).unwrap();
        check(&back, &model);
    }
}
