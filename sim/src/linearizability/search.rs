//! The search for one key: Wing & Gong's backtracking with Lowe's memoisation
//!
//! Every operation becomes a call entry and a return entry in a doubly linked list ordered by
//! time (calls before returns at equal times, so intervals are closed and operations that
//! share an endpoint are concurrent; an unknown outcome returns at +infinity). Walking the
//! list from the front, a call entry is a candidate to linearize next: if the model accepts
//! its output from the current value, both of its entries are unlinked, the choice is pushed
//! on a stack, and the walk restarts at the front. Reaching a return entry means that
//! operation should already have been linearized, so the last choice is undone (its entries
//! relinked in place) and the walk resumes after it. A set of (linearized operations, value)
//! pairs already explored cuts off repeated work. The search succeeds once every operation
//! with a known outcome is linearized: the open ones can then all go last, where no one
//! observes them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::model::{KeyModel, KvInput, KvOutput, StateId, Step};

/// One operation of a key's sub-history, with times in microseconds
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyOp<'a> {
    pub(crate) input: &'a KvInput,
    /// `None`: the outcome is unknown
    pub(crate) output: Option<&'a KvOutput>,
    pub(crate) call: u64,
    /// `None`: never returned (+infinity)
    pub(crate) ret: Option<u64>,
}

/// The verdict of the search on one key
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Some order works
    Linearizable,
    /// No order works; with `track_longest`, the longest order the search found (indexes into
    /// the operations) and the value after it
    Illegal {
        longest: Vec<usize>,
        value: Option<Vec<u8>>,
    },
    /// The budget ran out first
    OutOfBudget,
}

const HEAD: usize = 0;
const NIL: usize = usize::MAX;

/// The list of call and return entries; entry 0 is the head sentinel
struct Entries {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// `(operation, is_call)` per entry
    what: Vec<(usize, bool)>,
    /// `(call entry, return entry)` per operation
    of_op: Vec<(usize, usize)>,
}

impl Entries {
    fn new(ops: &[KeyOp<'_>]) -> Self {
        // (time, returns after calls, operation, is_call)
        let mut events = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            events.push((op.call, 0u8, i, true));
            events.push((op.ret.unwrap_or(u64::MAX), 1u8, i, false));
        }
        events.sort_unstable();
        let n = events.len() + 1;
        let mut entries = Entries {
            next: (1..=n).collect(),
            prev: (0..n).map(|i| i.wrapping_sub(1)).collect(),
            what: vec![(NIL, false); n],
            of_op: vec![(NIL, NIL); ops.len()],
        };
        entries.next[n - 1] = NIL;
        for (slot, &(_, _, op, is_call)) in events.iter().enumerate() {
            let entry = slot + 1;
            entries.what[entry] = (op, is_call);
            if is_call {
                entries.of_op[op].0 = entry;
            } else {
                entries.of_op[op].1 = entry;
            }
        }
        entries
    }

    fn unlink(&mut self, entry: usize) {
        let (prev, next) = (self.prev[entry], self.next[entry]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, entry: usize) {
        let (prev, next) = (self.prev[entry], self.next[entry]);
        self.next[prev] = entry;
        if next != NIL {
            self.prev[next] = entry;
        }
    }

    /// Take an operation's two entries out of the list
    fn lift(&mut self, op: usize) {
        let (call, ret) = self.of_op[op];
        self.unlink(call);
        self.unlink(ret);
    }

    /// Undo the matching [`lift`](Self::lift); lifts must be undone last-in first-out
    fn unlift(&mut self, op: usize) {
        let (call, ret) = self.of_op[op];
        self.relink(ret);
        self.relink(call);
    }
}

/// A small multiply-rotate hasher for the memo's `u64` keys
#[derive(Default)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn finish(&self) -> u64 {
        // murmur3's finaliser, so every bit of the result depends on every input bit
        let mut h = self.0;
        h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h = (h ^ (h >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// A 64-bit mix of `x` (splitmix64's finaliser), for Zobrist hashing
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The (linearized set, value) pairs explored so far. Each set is a bitset plus one last word
/// for the value; it is found through a Zobrist hash (the xor of one random word per
/// linearized operation and one for the value) kept up to date as operations come and go, so
/// a lookup never rehashes the whole bitset.
#[derive(Default)]
struct Memo {
    seen: HashMap<u64, Vec<Box<[u64]>>, BuildHasherDefault<WordHasher>>,
}

impl Memo {
    /// Record `key` under `hash`; `false` if it was already there
    fn insert(&mut self, hash: u64, key: &[u64]) -> bool {
        let bucket = self.seen.entry(hash).or_default();
        if bucket.iter().any(|known| **known == *key) {
            return false;
        }
        bucket.push(key.into());
        true
    }
}

/// Search for a linearization of `ops` (all on one key, starting from a missing value) in at
/// most `budget` steps. `track_longest` records the longest partial order for explanations
/// (it costs time quadratic in the number of operations, so only use it on small inputs).
pub(crate) fn search(ops: &[KeyOp<'_>], budget: u64, track_longest: bool) -> Outcome {
    let mut model = KeyModel::new();
    let steps: Vec<Step> = ops
        .iter()
        .map(|op| model.compile(op.input, op.output))
        .collect();
    let mut entries = Entries::new(ops);
    let words = ops.len().div_ceil(64);
    // The linearized set, plus one last word for the value: the memo key as it stands.
    let mut key = vec![0u64; words + 1];
    let zobrist: Vec<u64> = (0..ops.len() as u64).map(mix).collect();
    let mut set_hash = 0u64;
    let mut memo = Memo::default();
    let mut stack: Vec<(usize, StateId)> = Vec::new();
    let mut longest: (Vec<usize>, StateId) = (Vec::new(), 0);
    let mut state: StateId = 0;
    let mut open_known = ops.iter().filter(|op| op.ret.is_some()).count();
    let mut entry = entries.next[HEAD];
    let mut spent = 0u64;
    loop {
        if open_known == 0 {
            return Outcome::Linearizable;
        }
        spent += 1;
        if spent > budget {
            return Outcome::OutOfBudget;
        }
        debug_assert_ne!(entry, NIL, "a known return is always left in the list");
        let (op, is_call) = entries.what[entry];
        if is_call {
            let index = u32::try_from(op).expect("fewer than 2^32 operations per key");
            if let Some(next_state) = model.step(state, index, &steps[op]) {
                key[op / 64] |= 1 << (op % 64);
                key[words] = u64::from(next_state);
                set_hash ^= zobrist[op];
                let state_hash = mix(u64::from(next_state) ^ 0x5157_a7e5_0000_0000);
                if memo.insert(set_hash ^ state_hash, &key) {
                    stack.push((op, state));
                    state = next_state;
                    entries.lift(op);
                    if ops[op].ret.is_some() {
                        open_known -= 1;
                    }
                    if track_longest && stack.len() > longest.0.len() {
                        longest = (stack.iter().map(|&(op, _)| op).collect(), state);
                    }
                    entry = entries.next[HEAD];
                    continue;
                }
                key[op / 64] &= !(1 << (op % 64));
                set_hash ^= zobrist[op];
            }
            entry = entries.next[entry];
        } else {
            let Some((op, previous)) = stack.pop() else {
                let (longest, value) = longest;
                let value = model.value(value).map(<[u8]>::to_vec);
                return Outcome::Illegal { longest, value };
            };
            key[op / 64] &= !(1 << (op % 64));
            set_hash ^= zobrist[op];
            state = previous;
            entries.unlift(op);
            if ops[op].ret.is_some() {
                open_known += 1;
            }
            entry = entries.next[entries.of_op[op].0];
        }
    }
}

/// For an illegal key, the smallest time `t` such that the history cut at `t` is already
/// illegal: operations called after `t` are dropped and those not returned by `t` become
/// open. Linearizability is prefix-closed, so the cut points (return times) can be binary
/// searched. Returns `None` if no cut is found illegal within the budget.
pub(crate) fn smallest_failing_cut(ops: &[KeyOp<'_>], budget: u64) -> Option<u64> {
    let mut cuts: Vec<u64> = ops.iter().filter_map(|op| op.ret).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let illegal_at = |cut: u64| {
        let prefix = cut_at(ops, cut).into_iter().map(|(_, op)| op);
        let prefix: Vec<KeyOp<'_>> = prefix.collect();
        matches!(search(&prefix, budget, false), Outcome::Illegal { .. })
    };
    // Invariant: every cut before `low` is legal (or undecided); `high` is illegal if set.
    let (mut low, mut high) = (0, None);
    let mut upper = cuts.len();
    while low < upper {
        let mid = low + (upper - low) / 2;
        if illegal_at(cuts[mid]) {
            high = Some(cuts[mid]);
            upper = mid;
        } else {
            low = mid + 1;
        }
    }
    high
}

/// The operations of `ops` as seen at time `cut`, each with its index in `ops`
pub(crate) fn cut_at<'a>(ops: &[KeyOp<'a>], cut: u64) -> Vec<(usize, KeyOp<'a>)> {
    ops.iter()
        .enumerate()
        .filter(|(_, op)| op.call <= cut)
        .map(|(i, op)| match op.ret {
            Some(ret) if ret <= cut => (i, *op),
            _ => (
                i,
                KeyOp {
                    output: None,
                    ret: None,
                    ..*op
                },
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op<'a>(input: &'a KvInput, output: &'a KvOutput, call: u64, ret: u64) -> KeyOp<'a> {
        KeyOp {
            input,
            output: Some(output),
            call,
            ret: Some(ret),
        }
    }

    #[test]
    fn lift_and_unlift_restore_the_list() {
        let (put, done) = (KvInput::put("k", "v"), KvOutput::Done);
        let ops = [
            op(&put, &done, 0, 10),
            op(&put, &done, 5, 15),
            op(&put, &done, 7, 8),
        ];
        let mut entries = Entries::new(&ops);
        let walk = |e: &Entries| {
            let mut out = Vec::new();
            let mut at = e.next[HEAD];
            while at != NIL {
                out.push(e.what[at]);
                at = e.next[at];
            }
            out
        };
        let before = walk(&entries);
        assert_eq!(before.len(), 6);
        assert_eq!(before[..3], [(0, true), (1, true), (2, true)]);
        entries.lift(1);
        entries.lift(2);
        assert_eq!(walk(&entries), [(0, true), (0, false)]);
        entries.unlift(2);
        entries.unlift(1);
        assert_eq!(walk(&entries), before);
    }

    #[test]
    fn finds_the_only_order_and_explains_failures() {
        let (put_a, put_b) = (KvInput::put("k", "a"), KvInput::put("k", "b"));
        let get = KvInput::get("k");
        let (done, seen_a, seen_b) = (KvOutput::Done, KvOutput::value("a"), KvOutput::value("b"));
        // Both puts overlap; the read after both pins b last.
        let ok = [
            op(&put_a, &done, 0, 10),
            op(&put_b, &done, 0, 10),
            op(&get, &seen_b, 11, 12),
        ];
        assert_eq!(search(&ok, 1000, false), Outcome::Linearizable);
        // A stale read: a then b complete in sequence, then a is read.
        let stale = [
            op(&put_a, &done, 0, 1),
            op(&put_b, &done, 2, 3),
            op(&get, &seen_a, 4, 5),
        ];
        let Outcome::Illegal { longest, value } = search(&stale, 1000, true) else {
            panic!("expected illegal");
        };
        assert_eq!(longest, [0, 1]);
        assert_eq!(value.as_deref(), Some(&b"b"[..]));
        assert_eq!(smallest_failing_cut(&stale, 1000), Some(5));
        assert_eq!(search(&stale, 3, false), Outcome::OutOfBudget);
    }

    #[test]
    fn the_hasher_spreads_keys() {
        let hash = |words: &[u64]| {
            let mut h = WordHasher::default();
            std::hash::Hash::hash(words, &mut h);
            h.finish()
        };
        assert_ne!(hash(&[1, 0]), hash(&[0, 1]));
        assert_ne!(hash(&[1]), hash(&[1, 0]));
    }
}
