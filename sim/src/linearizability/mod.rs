//! A linearizability checker for key-value histories, in the style of Porcupine
//!
//! A history is linearizable if every operation can be given a single instant between its call
//! and its return such that, run one at a time in that order, the operations return what they
//! actually returned. [`check`] decides this for a [`History`] of [`KvInput`] operations
//! (get, put, delete, append, compare-and-swap), as Porcupine does:
//!
//! - **Per key.** Linearizability is compositional (Herlihy & Wing) and every operation
//!   touches one key, so the history splits by key and each key is checked alone, from a
//!   missing value. A violation on one key cannot hide behind another.
//! - **Wing & Gong's search with Lowe's memoisation** on each key: try the operations that can
//!   go next in time order, backtrack on a mismatch, and never revisit a (set of linearized
//!   operations, value) pair.
//! - **A budget.** The problem is NP-complete, so each key gets at most `budget` search steps
//!   ([`DEFAULT_BUDGET`] is ample for simulation histories). Running out gives
//!   [`CheckResult::Unknown`], which **must be treated as a failure**, never as a pass: an
//!   unchecked history proves nothing. [`CheckResult::is_ok`] and [`CheckResult::assert_ok`]
//!   do this.
//!
//! # Time and unknown outcomes
//!
//! Times are [`Instant`](shale_core::time::Instant)s of one clock (virtual time in the
//! simulator). Intervals are closed: two operations that share an endpoint count as
//! concurrent, which is the safe reading when one event causes another at the same instant.
//!
//! An operation whose client gave up (timeout, crash, lost leader) has no return: its outcome
//! is unknown. The checker lets it take effect at any moment after its call, or never, and
//! ignores what it might have returned. The client must then **continue under a new client
//! id** (as in Jepsen): its next operation is not ordered after the abandoned one, which may
//! still be floating in the system. [`HistoryRecorder`] enforces this; [`History::validate`]
//! checks it.
//!
//! # Example
//!
//! ```
//! use shale_core::time::Instant;
//! use shale_sim::linearizability::{
//!     check, CheckResult, DEFAULT_BUDGET, HistoryRecorder, KvInput, KvOutput,
//! };
//!
//! let t = Instant::from_micros;
//! let mut rec = HistoryRecorder::new();
//! let (alice, bob) = (rec.new_client(), rec.new_client());
//!
//! // Alice writes 1, then 2; Bob's read overlaps the second write, so either value is fine.
//! let op = rec.invoke(alice, KvInput::put("x", "1"), t(0));
//! rec.complete(op, KvOutput::Done, t(10));
//! let write = rec.invoke(alice, KvInput::put("x", "2"), t(20));
//! let read = rec.invoke(bob, KvInput::get("x"), t(25));
//! rec.complete(read, KvOutput::value("1"), t(30));
//! rec.complete(write, KvOutput::Done, t(40));
//!
//! // Alice's append times out: it may or may not have happened, and she gets a new id.
//! let lost = rec.invoke(alice, KvInput::append("x", "+"), t(50));
//! rec.timeout(lost);
//! let carol = rec.new_client();
//! let read = rec.invoke(carol, KvInput::get("x"), t(60));
//! rec.complete(read, KvOutput::value("2+"), t(70));
//! let history = rec.finish();
//! assert_eq!(check(&history, DEFAULT_BUDGET), CheckResult::Ok);
//!
//! // A stale read: after the write of 2 completed, nobody may read 1.
//! let mut stale = history.clone();
//! stale.push(shale_sim::linearizability::Operation::completed(
//!     99, KvInput::get("x"), t(80), t(90), KvOutput::value("1"),
//! ));
//! let verdict = check(&stale, DEFAULT_BUDGET);
//! assert!(!verdict.is_ok());
//! let CheckResult::Illegal { key, explanation } = verdict else { unreachable!() };
//! assert_eq!(key, b"x");
//! // The explanation lists the operations of the key up to the first failing point.
//! assert!(explanation.contains("get(\"x\") -> \"1\""));
//! ```

mod history;
mod model;
mod search;

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

pub use history::{ClientId, History, HistoryRecorder, OpId, Operation, Returned};
pub use model::{KvInput, KvOutput};

use model::{Bytes, MaybeBytes};
use search::{KeyOp, Outcome, cut_at, search, smallest_failing_cut};

/// The default search budget per key, in steps: far more than a linearizable simulation
/// history needs (a few steps per operation), small enough to give up within seconds
pub const DEFAULT_BUDGET: u64 = 2_000_000;

/// At most this many operations are listed in an explanation (the latest ones before the
/// failure are kept)
const EXPLAIN_MAX_OPS: usize = 60;

/// At most this many operations of the longest order found are listed (the last ones)
const EXPLAIN_MAX_ORDER: usize = 20;

/// The verdict of [`check`]
#[must_use = "a verdict other than Ok is a failure"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// Every key's history is linearizable
    Ok,
    /// The history of `key` is not linearizable. `explanation` is meant for a human: the
    /// smallest failing prefix of that key's operations, in call order, with times, results
    /// and the longest order the checker could find.
    Illegal {
        /// The first key (in byte order) found not linearizable
        key: Vec<u8>,
        /// What went wrong, over several lines
        explanation: String,
    },
    /// The budget ran out on `key` before an answer (and no key was found illegal). This is
    /// a **failure**: nothing was proven. Re-run with a larger budget, or make the history
    /// smaller or less concurrent.
    Unknown {
        /// The first key (in byte order) whose search ran out of budget
        key: Vec<u8>,
    },
}

impl CheckResult {
    /// Whether the history was proven linearizable; `false` for [`CheckResult::Unknown`] too
    pub fn is_ok(&self) -> bool {
        *self == CheckResult::Ok
    }

    /// Panic with the explanation unless the history was proven linearizable
    ///
    /// # Panics
    ///
    /// On [`CheckResult::Illegal`] and on [`CheckResult::Unknown`].
    #[track_caller]
    pub fn assert_ok(&self) {
        assert!(self.is_ok(), "linearizability check failed: {self}");
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Ok => f.write_str("linearizable"),
            CheckResult::Illegal { explanation, .. } => f.write_str(explanation),
            CheckResult::Unknown { key } => write!(
                f,
                "unknown: the search on key {} ran out of budget; this counts as a failure",
                Bytes(key)
            ),
        }
    }
}

/// Check that `history` is linearizable, spending at most `budget` search steps per key
///
/// Keys are checked in byte order. The verdict is [`CheckResult::Illegal`] for the first key
/// proven not linearizable, otherwise [`CheckResult::Unknown`] for the first key whose search
/// ran out of budget, otherwise [`CheckResult::Ok`].
///
/// # Panics
///
/// If the history is malformed (see [`History::validate`]): that is a bug in the harness.
pub fn check(history: &History, budget: u64) -> CheckResult {
    if let Err(error) = history.validate() {
        panic!("malformed history: {error}");
    }
    let mut by_key: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
    for (id, op) in history.ops().iter().enumerate() {
        // A read with an unknown outcome constrains nothing: leave it out of the search.
        if op.returned.is_some() || !matches!(op.input, KvInput::Get { .. }) {
            by_key.entry(op.input.key()).or_default().push(id);
        }
    }
    let mut unknown = None;
    for (key, mut ids) in by_key {
        ids.sort_by_key(|&id| (history.ops()[id].call, id));
        let ops: Vec<KeyOp<'_>> = ids.iter().map(|&id| key_op(&history.ops()[id])).collect();
        match search(&ops, budget, false) {
            Outcome::Linearizable => {}
            Outcome::OutOfBudget => {
                unknown.get_or_insert(key);
            }
            Outcome::Illegal { .. } => {
                let explanation = explain(history, key, &ids, &ops, budget);
                return CheckResult::Illegal {
                    key: key.to_vec(),
                    explanation,
                };
            }
        }
    }
    match unknown {
        Some(key) => CheckResult::Unknown { key: key.to_vec() },
        None => CheckResult::Ok,
    }
}

fn key_op(op: &Operation) -> KeyOp<'_> {
    KeyOp {
        input: &op.input,
        output: op.returned.as_ref().map(|ret| &ret.output),
        call: op.call.as_micros(),
        ret: op.returned.as_ref().map(|ret| ret.at.as_micros()),
    }
}

/// Describe why a key is illegal: cut its history at the first failing point and list what
/// happened up to there. `ids` maps `ops` to their ids in `history`.
fn explain(history: &History, key: &[u8], ids: &[usize], ops: &[KeyOp<'_>], budget: u64) -> String {
    let cut = smallest_failing_cut(ops, budget);
    let prefix = cut_at(ops, cut.unwrap_or(u64::MAX));
    let prefix_ops: Vec<KeyOp<'_>> = prefix.iter().map(|&(_, op)| op).collect();
    let mut text = format!("key {} is not linearizable.\n", Bytes(key));
    let at_cut: Vec<usize> = prefix
        .iter()
        .filter(|(_, op)| op.ret.is_some() && op.ret == cut)
        .map(|&(i, _)| ids[i])
        .collect();
    match cut {
        Some(cut) => {
            let _ = writeln!(
                text,
                "Its history is already illegal when cut at {}, as op {} returns: no order of \
                 the {} operations called by then explains their results (those still in \
                 flight at the cut may take effect or not).",
                shale_core::time::Instant::from_micros(cut),
                list(&at_cut),
                prefix.len(),
            );
        }
        None => {
            let _ = writeln!(
                text,
                "No order of its {} operations explains their results.",
                prefix.len()
            );
        }
    }
    // The longest order costs quadratic time to track; skip it on huge prefixes.
    if prefix.len() <= 4 * EXPLAIN_MAX_OPS
        && let Outcome::Illegal { longest, value } = search(&prefix_ops, budget, true)
    {
        let order: Vec<usize> = longest.iter().map(|&i| ids[prefix[i].0]).collect();
        let shown = order.len().saturating_sub(EXPLAIN_MAX_ORDER);
        let _ = writeln!(
            text,
            "The longest order found linearizes {} of them{}{}, leaving the value {}.",
            order.len(),
            if order.is_empty() { "" } else { ": op " },
            if shown > 0 {
                format!("..., {}", list(&order[shown..]))
            } else {
                list(&order)
            },
            MaybeBytes(value.as_deref()),
        );
    }
    let skipped = prefix.len().saturating_sub(EXPLAIN_MAX_OPS);
    let _ = writeln!(
        text,
        "Operations on key {} called by then, in call order (op = index in the history){}:",
        Bytes(key),
        if skipped > 0 {
            format!("; the {skipped} earliest are not shown")
        } else {
            String::new()
        }
    );
    for &(i, cut_op) in &prefix[skipped..] {
        let id = ids[i];
        let note = if at_cut.contains(&id) {
            "   <- returns at the cut"
        } else if cut_op.ret.is_none() && history.ops()[id].returned.is_some() {
            "   (in flight at the cut)"
        } else {
            ""
        };
        let _ = writeln!(text, "  op {id}  {}{note}", history.ops()[id]);
    }
    text
}

/// `1, 4, 7`
fn list(ids: &[usize]) -> String {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    ids.join(", ")
}
