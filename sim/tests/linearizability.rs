//! Tests of `shale_sim::linearizability`: hand-made histories with known verdicts, agreement
//! with a brute-force checker on small random histories, the budget, and speed on large ones

use std::collections::HashMap;

use proptest::prelude::*;
use shale_core::rng::Rng;
use shale_core::time::Instant;
use shale_sim::linearizability::{
    CheckResult, DEFAULT_BUDGET, History, KvInput, KvOutput, Operation, check,
};

fn t(micros: u64) -> Instant {
    Instant::from_micros(micros)
}

/// A completed operation
fn op(client: u64, input: KvInput, call: u64, ret: u64, output: KvOutput) -> Operation {
    Operation::completed(client, input, t(call), t(ret), output)
}

/// A timed-out operation
fn lost(client: u64, input: KvInput, call: u64) -> Operation {
    Operation::timed_out(client, input, t(call))
}

fn verdict(ops: Vec<Operation>) -> CheckResult {
    check(&History::from(ops), DEFAULT_BUDGET)
}

fn assert_illegal(ops: Vec<Operation>, key: &str) -> String {
    match verdict(ops) {
        CheckResult::Illegal {
            key: found,
            explanation,
        } => {
            eprintln!("{explanation}");
            assert_eq!(found, key.as_bytes(), "{explanation}");
            assert!(explanation.contains(&format!("key \"{key}\"")));
            explanation
        }
        other => panic!("expected key {key} to be illegal, got {other:?}"),
    }
}

use KvOutput::{Cas, Done};
const MISSING: KvOutput = KvOutput::MISSING;
fn val(v: &str) -> KvOutput {
    KvOutput::value(v)
}

#[test]
fn sequential_history_is_linearizable() {
    let ops = vec![
        op(0, KvInput::get("x"), 0, 1, MISSING),
        op(0, KvInput::put("x", "a"), 2, 3, Done),
        op(0, KvInput::append("x", "b"), 4, 5, Done),
        op(0, KvInput::get("x"), 6, 7, val("ab")),
        op(0, KvInput::cas("x", Some(b"ab"), "c"), 8, 9, Cas(true)),
        op(0, KvInput::cas("x", Some(b"ab"), "d"), 10, 11, Cas(false)),
        op(0, KvInput::delete("x"), 12, 13, Done),
        op(0, KvInput::get("x"), 14, 15, MISSING),
        op(0, KvInput::append("x", "z"), 16, 17, Done),
        op(0, KvInput::get("x"), 18, 19, val("z")),
    ];
    assert_eq!(verdict(ops), CheckResult::Ok);
    assert_eq!(verdict(Vec::new()), CheckResult::Ok);
}

#[test]
fn stale_read_is_illegal() {
    let ops = vec![
        op(0, KvInput::put("x", "old"), 0, 10, Done),
        op(0, KvInput::put("x", "new"), 20, 30, Done),
        op(1, KvInput::get("x"), 40, 50, val("old")),
    ];
    let explanation = assert_illegal(ops, "x");
    assert!(explanation.contains("op 2  client 1"), "{explanation}");
    assert!(explanation.contains("returns at the cut"), "{explanation}");
    assert!(explanation.contains("op 0, 1"), "{explanation}");
}

#[test]
fn read_after_delete_is_checked() {
    let base = || {
        vec![
            op(0, KvInput::put("x", "a"), 0, 10, Done),
            op(0, KvInput::delete("x"), 20, 30, Done),
        ]
    };
    let mut ok = base();
    ok.push(op(1, KvInput::get("x"), 40, 50, MISSING));
    assert_eq!(verdict(ok), CheckResult::Ok);
    let mut stale = base();
    stale.push(op(1, KvInput::get("x"), 40, 50, val("a")));
    assert_illegal(stale, "x");
}

#[test]
fn lost_updates_are_illegal() {
    // Two concurrent compare-and-swaps from the same expected value cannot both succeed.
    let both = vec![
        op(0, KvInput::put("x", "0"), 0, 1, Done),
        op(1, KvInput::cas("x", Some(b"0"), "1"), 10, 20, Cas(true)),
        op(2, KvInput::cas("x", Some(b"0"), "2"), 10, 20, Cas(true)),
    ];
    assert_illegal(both, "x");
    let one = vec![
        op(0, KvInput::put("x", "0"), 0, 1, Done),
        op(1, KvInput::cas("x", Some(b"0"), "1"), 10, 20, Cas(true)),
        op(2, KvInput::cas("x", Some(b"0"), "2"), 10, 20, Cas(false)),
        op(3, KvInput::get("x"), 30, 40, val("1")),
    ];
    assert_eq!(verdict(one), CheckResult::Ok);
    // Two concurrent appends both acknowledged: a later read must see both.
    let appends = |seen: &str| {
        vec![
            op(1, KvInput::append("x", "a"), 0, 10, Done),
            op(2, KvInput::append("x", "b"), 0, 10, Done),
            op(3, KvInput::get("x"), 20, 30, val(seen)),
        ]
    };
    assert_eq!(verdict(appends("ab")), CheckResult::Ok);
    assert_eq!(verdict(appends("ba")), CheckResult::Ok);
    assert_illegal(appends("a"), "x");
    assert_illegal(appends("b"), "x");
}

#[test]
fn increments_and_deletes_are_checked() {
    // Two increments that both saw 0: one was lost.
    let ops = vec![
        op(0, KvInput::incr("n", 1), 0, 10, KvOutput::Int(Some(1))),
        op(1, KvInput::incr("n", 1), 2, 12, KvOutput::Int(Some(1))),
    ];
    assert_illegal(ops, "n");
    let ops = vec![
        op(0, KvInput::incr("n", 1), 0, 10, KvOutput::Int(Some(1))),
        op(1, KvInput::incr("n", 2), 2, 12, KvOutput::Int(Some(3))),
        op(2, KvInput::delete("n"), 20, 21, KvOutput::Deleted(true)),
        op(2, KvInput::delete("n"), 22, 23, KvOutput::Deleted(false)),
        op(2, KvInput::put("n", "x"), 24, 25, Done),
        op(2, KvInput::incr("n", 1), 26, 27, KvOutput::Int(None)),
        op(2, KvInput::get("n"), 28, 29, val("x")),
    ];
    assert_eq!(verdict(ops), CheckResult::Ok);
    // A delete that says the key was there when nothing wrote it.
    let ops = vec![op(0, KvInput::delete("d"), 0, 1, KvOutput::Deleted(true))];
    assert_illegal(ops, "d");
}

#[test]
fn concurrent_operations_may_take_any_consistent_order() {
    // Both writes span every read, so the reads may see b then a, but not go back to b.
    let mut ops = vec![
        op(1, KvInput::put("x", "a"), 0, 100, Done),
        op(2, KvInput::put("x", "b"), 0, 100, Done),
        op(3, KvInput::get("x"), 10, 20, val("b")),
        op(3, KvInput::get("x"), 30, 40, val("a")),
    ];
    assert_eq!(verdict(ops.clone()), CheckResult::Ok);
    ops.push(op(3, KvInput::get("x"), 50, 60, val("b")));
    assert_illegal(ops, "x");
}

#[test]
fn intervals_are_closed() {
    let write = || op(0, KvInput::put("x", "a"), 0, 10, Done);
    let touching = vec![write(), op(1, KvInput::get("x"), 10, 20, MISSING)];
    assert_eq!(verdict(touching), CheckResult::Ok);
    let after = vec![write(), op(1, KvInput::get("x"), 11, 20, MISSING)];
    assert_illegal(after, "x");
}

#[test]
fn timed_out_writes_may_or_may_not_happen() {
    let base = || {
        vec![
            op(0, KvInput::put("x", "a"), 0, 10, Done),
            lost(1, KvInput::put("x", "b"), 20),
        ]
    };
    for seen in [val("a"), val("b")] {
        let mut ops = base();
        ops.push(op(2, KvInput::get("x"), 30, 40, seen.clone()));
        ops.push(op(2, KvInput::get("x"), 50, 60, seen));
        assert_eq!(verdict(ops), CheckResult::Ok);
    }
    // It may also happen late: after a read that did not see it.
    let mut late = base();
    late.push(op(2, KvInput::get("x"), 30, 40, val("a")));
    late.push(op(2, KvInput::get("x"), 50, 60, val("b")));
    assert_eq!(verdict(late), CheckResult::Ok);
    // But its effect cannot appear and then disappear...
    let mut flicker = base();
    flicker.push(op(2, KvInput::get("x"), 30, 40, val("b")));
    flicker.push(op(2, KvInput::get("x"), 50, 60, val("a")));
    assert_illegal(flicker, "x");
    // ...nor be seen before it was sent.
    let early = vec![
        op(2, KvInput::get("x"), 0, 5, val("b")),
        lost(1, KvInput::put("x", "b"), 10),
    ];
    assert_illegal(early, "x");
    // A timed-out append happens at most once, and a timed-out read constrains nothing.
    let once = |seen: &str| {
        vec![
            lost(1, KvInput::append("x", "+"), 0),
            lost(2, KvInput::get("x"), 0),
            op(3, KvInput::get("x"), 10, 20, val(seen)),
        ]
    };
    assert_eq!(verdict(once("+")), CheckResult::Ok);
    assert_illegal(once("++"), "x");
    // A timed-out compare-and-swap takes effect exactly when its expectation holds.
    let cas = |seen: &str| {
        vec![
            op(0, KvInput::put("x", "0"), 0, 1, Done),
            lost(1, KvInput::cas("x", Some(b"1"), "2"), 2),
            op(2, KvInput::get("x"), 10, 20, val(seen)),
        ]
    };
    assert_eq!(verdict(cas("0")), CheckResult::Ok);
    assert_illegal(cas("2"), "x");
}

#[test]
fn keys_are_independent() {
    let interleaved = vec![
        op(0, KvInput::put("x", "1"), 0, 10, Done),
        op(1, KvInput::put("y", "2"), 5, 15, Done),
        op(2, KvInput::get("y"), 20, 30, val("2")),
        op(3, KvInput::get("x"), 20, 30, val("1")),
    ];
    assert_eq!(verdict(interleaved.clone()), CheckResult::Ok);
    // A value written to x is not visible through y.
    let crossed = vec![
        op(0, KvInput::put("x", "1"), 0, 10, Done),
        op(1, KvInput::get("y"), 20, 30, val("1")),
    ];
    assert_illegal(crossed, "y");
    // A violation on y is reported as y even though x is fine, and x is fine alone.
    let mut bad_y = interleaved;
    bad_y.push(op(4, KvInput::get("y"), 40, 50, MISSING));
    let explanation = assert_illegal(bad_y, "y");
    assert!(!explanation.contains("\"x\""), "{explanation}");
}

#[test]
fn explanation_stops_at_the_smallest_failing_prefix() {
    let mut ops = vec![
        op(0, KvInput::put("x", "a"), 0, 10, Done),
        op(0, KvInput::put("x", "b"), 20, 30, Done),
        op(1, KvInput::get("x"), 40, 50, val("a")),
    ];
    for i in 0..100u64 {
        let at = 100 + 20 * i;
        ops.push(op(2, KvInput::put("x", format!("v{i}")), at, at + 5, Done));
        ops.push(op(
            3,
            KvInput::get("x"),
            at + 10,
            at + 15,
            val(&format!("v{i}")),
        ));
    }
    let explanation = assert_illegal(ops, "x");
    let listed = explanation
        .lines()
        .filter(|l| l.starts_with("  op "))
        .count();
    assert_eq!(listed, 3, "{explanation}");
    assert!(explanation.contains("cut at 0.000050s"), "{explanation}");
}

/// `n` appends that all overlap, then a read of a value none of their orders produces: the
/// search must try every order of every subset before giving up
fn pathological(key: &str, n: u8) -> Vec<Operation> {
    let mut ops: Vec<Operation> = (0..n)
        .map(|i| op(u64::from(i), KvInput::append(key, [b'a' + i]), 0, 100, Done))
        .collect();
    ops.push(op(99, KvInput::get(key), 200, 210, val("?")));
    ops
}

#[test]
fn the_budget_bounds_the_search_and_unknown_is_a_failure() {
    let result = check(&History::from(pathological("p", 16)), 10_000);
    assert_eq!(result, CheckResult::Unknown { key: b"p".to_vec() });
    assert!(!result.is_ok());
    assert!(result.to_string().contains("failure"));
    let panicked = std::panic::catch_unwind(|| result.assert_ok());
    assert!(panicked.is_err());
    // A smaller instance finishes within the default budget.
    assert_illegal(pathological("p", 6), "p");
    // An illegal key wins over a key whose search ran out of budget.
    let mut both = pathological("p", 16);
    both.push(op(100, KvInput::get("q"), 0, 1, val("?")));
    assert!(matches!(
        check(&History::from(both), 10_000),
        CheckResult::Illegal { key, .. } if key == b"q"
    ));
}

#[test]
#[should_panic(expected = "malformed history")]
fn malformed_histories_are_rejected() {
    let ops = vec![
        lost(1, KvInput::put("x", "a"), 0),
        op(1, KvInput::get("x"), 10, 20, val("a")),
    ];
    let _ = verdict(ops);
}

// ---------------------------------------------------------------------------------------------
// Agreement with a brute-force checker on small random histories

/// The parameters of one random operation; see [`random_history`]
#[derive(Clone, Copy, Debug)]
struct Spec {
    key: u8,
    kind: u8,
    value: u8,
    expected: u8,
    call: u64,
    duration: u64,
    /// Where in its interval it takes effect, in percent
    point: u64,
    /// 0: times out after taking effect; 1: times out without taking effect; else completes
    fate: u8,
}

const VALUES: [&str; 3] = ["a", "b", "c"];

/// A history produced by a real store: each operation takes effect at one point inside its
/// interval (or at any point after its call, or never, if it times out). `corrupt` then
/// changes the result of one operation. Every operation has its own client.
fn random_history(specs: &[Spec], keys: u8, corrupt: Option<(usize, u8)>) -> History {
    let input = |s: &Spec| {
        let key = [b'x' + s.key % keys];
        let value = VALUES[usize::from(s.value) % VALUES.len()];
        match s.kind % 6 {
            0 => KvInput::get(key),
            1 => KvInput::put(key, value),
            2 => KvInput::delete(key),
            3 => KvInput::append(key, value),
            4 => KvInput::incr(key, 1 + i64::from(s.value % 3)),
            _ => {
                let expected = ["", "a", "b", "ab"][usize::from(s.expected % 4)];
                KvInput::cas(
                    key,
                    (!expected.is_empty()).then_some(expected.as_bytes()),
                    value,
                )
            }
        }
    };
    let mut effects: Vec<(u64, usize)> = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let call = 10 * s.call;
        let point = match s.fate {
            0 => Some(call + 3 * s.point),
            1 => None,
            _ => Some(call + 10 * s.duration * s.point / 100),
        };
        effects.extend(point.map(|p| (p, i)));
    }
    effects.sort_unstable();
    let mut store: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut outputs = vec![None; specs.len()];
    for &(_, i) in &effects {
        let input = input(&specs[i]);
        let mut value = store.remove(input.key());
        outputs[i] = Some(input.apply(&mut value));
        store.extend(value.map(|v| (input.key().to_vec(), v)));
    }
    if let Some((target, variant)) = corrupt {
        let replacements = [MISSING, val("a"), val("b"), val("ab"), val("ba"), val("c")];
        match &mut outputs[target % specs.len()] {
            Some(KvOutput::Cas(swapped) | KvOutput::Deleted(swapped)) => *swapped = !*swapped,
            Some(KvOutput::Int(n)) => *n = Some(n.unwrap_or(0) + 1),
            Some(output @ KvOutput::Value(_)) => {
                let mut next = usize::from(variant);
                while replacements[next % replacements.len()] == *output {
                    next += 1;
                }
                *output = replacements[next % replacements.len()].clone();
            }
            _ => {}
        }
    }
    specs
        .iter()
        .zip(outputs)
        .enumerate()
        .map(|(i, (s, output))| {
            let call = 10 * s.call;
            match (s.fate, output) {
                (0 | 1, _) => lost(i as u64, input(s), call),
                (_, Some(output)) => op(i as u64, input(s), call, call + 10 * s.duration, output),
                (_, None) => unreachable!("completed operations always take effect"),
            }
        })
        .collect()
}

/// The store as the brute-force checker sees it
type Store = HashMap<Vec<u8>, Vec<u8>>;

/// Run one operation on the whole store (written independently of the checker's model)
fn run(store: &mut Store, input: &KvInput) -> KvOutput {
    match input {
        KvInput::Get { key } => KvOutput::Value(store.get(key).cloned()),
        KvInput::Put { key, value } => {
            store.insert(key.clone(), value.clone());
            Done
        }
        KvInput::Delete { key } => KvOutput::Deleted(store.remove(key).is_some()),
        KvInput::Incr { key, by } => {
            let current = match store.get(key) {
                None => Some(0),
                Some(v) => String::from_utf8_lossy(v).parse::<i64>().ok(),
            };
            let sum = current.and_then(|c| c.checked_add(*by));
            if let Some(n) = sum {
                store.insert(key.clone(), n.to_string().into_bytes());
            }
            KvOutput::Int(sum)
        }
        KvInput::Append { key, suffix } => {
            store.entry(key.clone()).or_default().extend(suffix);
            Done
        }
        KvInput::Cas { key, expected, new } => {
            if store.get(key) != expected.as_ref() {
                return Cas(false);
            }
            store.insert(key.clone(), new.clone());
            Cas(true)
        }
    }
}

/// Try every order of the whole history (all keys together) that respects real time; an
/// operation with an unknown outcome may be left out, and its result is not compared
fn brute_force(history: &History) -> bool {
    fn extend(ops: &[Operation], done: &mut Vec<bool>, store: &Store) -> bool {
        let pending_known = ops
            .iter()
            .zip(done.iter())
            .any(|(op, &d)| !d && op.returned.is_some());
        if !pending_known {
            return true;
        }
        for a in 0..ops.len() {
            // `a` can go next unless some operation not yet placed returned before it started.
            let blocked = ops
                .iter()
                .zip(done.iter())
                .any(|(b, &d)| !d && b.returned.as_ref().is_some_and(|r| r.at < ops[a].call));
            if done[a] || blocked {
                continue;
            }
            let mut next = store.clone();
            let output = run(&mut next, &ops[a].input);
            if ops[a].returned.as_ref().is_some_and(|r| r.output != output) {
                continue;
            }
            done[a] = true;
            let found = extend(ops, done, &next);
            done[a] = false;
            if found {
                return true;
            }
        }
        false
    }
    extend(
        history.ops(),
        &mut vec![false; history.len()],
        &Store::new(),
    )
}

fn agree(history: &History) -> bool {
    let fast = check(history, DEFAULT_BUDGET);
    assert!(
        !matches!(fast, CheckResult::Unknown { .. }),
        "small histories never exhaust the budget"
    );
    let slow = brute_force(history);
    assert_eq!(fast.is_ok(), slow, "checker: {fast}\nhistory: {history:#?}");
    slow
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        (0u8..2, 0u8..5, 0u8..3, 0u8..4),
        (0u64..8, 0u64..6, 0u64..=100, 0u8..8),
    )
        .prop_map(
            |((key, kind, value, expected), (call, duration, point, fate))| Spec {
                key,
                kind,
                value,
                expected,
                call,
                duration,
                point,
                fate,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn agrees_with_brute_force(
        specs in prop::collection::vec(spec_strategy(), 1..=7),
        keys in 1u8..=2,
        corrupt in prop::option::of((0usize..7, 0u8..6)),
    ) {
        let history = random_history(&specs, keys, corrupt);
        let linearizable = agree(&history);
        if corrupt.is_none() {
            prop_assert!(linearizable, "a real store's history must pass: {history:#?}");
        }
    }
}

/// The same agreement over many seeds, also counting verdicts so the test shows it can fail
#[test]
fn agrees_with_brute_force_over_seeds() {
    let mut rng = Rng::new(0x5eed);
    let (mut ok, mut illegal) = (0, 0);
    for _ in 0..10_000 {
        let n = 1 + rng.below(7) as usize;
        let specs: Vec<Spec> = (0..n)
            .map(|_| Spec {
                key: rng.below(2) as u8,
                kind: rng.below(5) as u8,
                value: rng.below(3) as u8,
                expected: rng.below(4) as u8,
                call: rng.below(8),
                duration: rng.below(6),
                point: rng.below(101),
                fate: rng.below(8) as u8,
            })
            .collect();
        let keys = 1 + rng.below(2) as u8;
        let corrupt = (rng.below(2) == 0).then(|| (rng.below(7) as usize, rng.below(6) as u8));
        let linearizable = agree(&random_history(&specs, keys, corrupt));
        assert!(linearizable || corrupt.is_some());
        if linearizable { ok += 1 } else { illegal += 1 }
    }
    eprintln!("{ok} linearizable, {illegal} not");
    assert!(ok > 2_000 && illegal > 1_000, "ok {ok}, illegal {illegal}");
}

// ---------------------------------------------------------------------------------------------
// Large histories

/// `n` operations by `clients` clients over `keys` keys, produced by a real store that runs
/// them one at a time, 100us apart; each operation's interval stretches up to 400us either
/// side of that point, so about eight are in flight at once. One in a hundred times out
/// (taking effect or not), and its client continues under a new id.
fn large_history(seed: u64, n: u64, clients: u64, keys: u64) -> History {
    let mut rng = Rng::new(seed);
    let mut store: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut ids: Vec<u64> = (0..clients).collect();
    let mut next_id = clients;
    let mut free_at = vec![0u64; clients as usize];
    let mut history = History::new();
    for i in 0..n {
        let c = (i % clients) as usize;
        let point = 100 * i + 500;
        let call = free_at[c].max(point - rng.below(400));
        let ret = point + rng.below(400);
        let key = format!("k{}", rng.below(keys)).into_bytes();
        let input = match rng.below(100) {
            0..40 => KvInput::get(&key),
            40..65 => KvInput::put(&key, format!("v{i}")),
            65..80 => KvInput::append(&key, format!("{i},")),
            80..90 => KvInput::delete(&key),
            _ => {
                let current = store.get(&key).cloned();
                let expected = if rng.below(2) == 0 {
                    current
                } else {
                    Some(b"v0".to_vec())
                };
                KvInput::cas(&key, expected.as_deref(), format!("c{i}"))
            }
        };
        let times_out = rng.below(100) == 0;
        if !(times_out && rng.below(2) == 0) {
            let mut value = store.remove(&key);
            let output = input.apply(&mut value);
            store.extend(value.map(|v| (key.clone(), v)));
            if !times_out {
                history.push(op(ids[c], input.clone(), call, ret, output));
            }
        }
        if times_out {
            history.push(lost(ids[c], input, call));
            ids[c] = next_id;
            next_id += 1;
        }
        free_at[c] = ret;
    }
    history
}

#[test]
fn large_histories_are_checked_quickly() {
    for (seed, keys) in [(1, 50), (2, 50), (3, 5), (4, 1)] {
        let history = large_history(seed, 10_000, 10, keys);
        let started = std::time::Instant::now();
        let result = check(&history, DEFAULT_BUDGET);
        let elapsed = started.elapsed();
        eprintln!("10,000 ops, {keys} keys: {result} in {elapsed:?}");
        assert_eq!(result, CheckResult::Ok);
        assert!(elapsed.as_secs() < 10, "took {elapsed:?}");
    }
}

#[test]
fn a_corrupted_large_history_is_caught() {
    let mut ops = large_history(7, 10_000, 10, 50).ops().to_vec();
    // Make a late read return the value some earlier put wrote: stale, in all likelihood.
    let read = (0..ops.len())
        .rev()
        .find(|&i| matches!(ops[i].input, KvInput::Get { .. }) && ops[i].returned.is_some())
        .unwrap();
    let key = ops[read].input.key().to_vec();
    let old = ops
        .iter()
        .find_map(|o| match &o.input {
            KvInput::Put { key: k, value } if *k == key => Some(value.clone()),
            _ => None,
        })
        .unwrap();
    ops[read].returned.as_mut().unwrap().output = KvOutput::Value(Some(old));
    let started = std::time::Instant::now();
    let result = check(&History::from(ops), DEFAULT_BUDGET);
    eprintln!("corrupted: checked in {:?}", started.elapsed());
    let CheckResult::Illegal {
        key: found,
        explanation,
    } = result
    else {
        panic!("expected illegal, got {result:?}");
    };
    eprintln!("{explanation}");
    assert_eq!(found, key);
    assert!(explanation.lines().count() < 80, "{explanation}");
}
