//! The new owner's side of a hand-over: which chunks to ask for, and which answers to log
//!
//! Each shard being pulled has a pipeline on the group's leader: it asks for the chunk at the
//! pipeline's tail, logs the answer at once and asks for the next one (the answer carries its
//! cursor) without waiting for the logged chunk to be applied, keeping up to a window of
//! chunks logged but not yet applied. The applied cursor (replicated in the group's state) is
//! the truth: chunks before it are done, and whenever the pipeline stalls (a lost message, a
//! lost proposal) or leadership changes, it restarts from there. Chunks are applied only in
//! order, each only at its own cursor, so a chunk logged twice changes nothing.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use super::state::{GroupState, ShardStatus};
use crate::controller::{GroupId, ShardId};
use crate::raft::Term;
use crate::shard::ShardCursor;
use crate::time::Instant;

/// Polls in a row without the applied cursor moving after which a pipeline starts over
const STALLED_POLLS: u32 = 2;

#[derive(Debug)]
struct Pipe {
    /// Where the next chunk to ask for starts
    tail: ShardCursor,
    /// The last chunk was logged: nothing more to ask for
    done: bool,
    /// Where the chunks logged but not yet applied start, in order
    logged: VecDeque<ShardCursor>,
    /// The chunk at `tail` was asked for
    asked: bool,
    term: Term,
    /// The applied cursor at the last poll, and polls since it last moved
    applied: ShardCursor,
    stalled: u32,
}

impl Pipe {
    fn new(applied: &ShardCursor, term: Term) -> Self {
        Pipe {
            tail: applied.clone(),
            done: false,
            logged: VecDeque::new(),
            asked: false,
            term,
            applied: applied.clone(),
            stalled: 0,
        }
    }
}

/// The pull pipelines of a group's leader (see the module docs)
#[derive(Debug, Default)]
pub(crate) struct Pulls {
    pipes: BTreeMap<ShardId, Pipe>,
    /// Bytes that may still be asked for under the rate limit, and when they were counted
    allowance: u64,
    counted_at: Option<Instant>,
    /// When the rate allows the chunk a pipeline waits for (`None`: none waits for the rate)
    due: Option<Instant>,
}

/// A hand-over rate: `bytes_per_sec` (0: unlimited), in chunks of `chunk_bytes`, with up to
/// `window` chunks per shard logged and not applied
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pace {
    pub(crate) now: Instant,
    pub(crate) window: usize,
    pub(crate) chunk_bytes: usize,
    pub(crate) bytes_per_sec: u64,
}

impl Pace {
    /// The most bytes ever saved up: one chunk per shard window, so a pause is not followed by
    /// a burst
    fn burst(&self) -> u64 {
        (self.chunk_bytes as u64).saturating_mul(self.window.max(1) as u64)
    }
}

impl Pulls {
    /// Forgets every pipeline (no longer the leader)
    pub(crate) fn clear(&mut self) {
        self.pipes.clear();
    }

    /// Counts what the rate allows since the last call
    fn refill(&mut self, pace: &Pace) {
        if pace.bytes_per_sec == 0 {
            return;
        }
        let since = self
            .counted_at
            .map_or(0, |at| pace.now.saturating_since(at).as_micros());
        self.counted_at = Some(pace.now);
        let earned = u128::from(since) * u128::from(pace.bytes_per_sec) / 1_000_000;
        self.allowance = (u128::from(self.allowance) + earned).min(u128::from(pace.burst())) as u64;
    }

    /// The chunks to ask for now, as (shard, previous owner, cursor), with at most
    /// `pace.window` chunks logged and not applied per shard, and within the rate
    pub(crate) fn wanted(
        &mut self,
        state: &GroupState,
        term: Term,
        pace: Pace,
    ) -> Vec<(ShardId, GroupId, ShardCursor)> {
        self.refill(&pace);
        self.due = None;
        let window = pace.window;
        self.pipes.retain(|shard, _| {
            state
                .shards
                .get(shard)
                .is_some_and(|s| matches!(s.status, ShardStatus::Pulling { .. }))
        });
        let mut wanted = Vec::new();
        for (&shard, slot) in &state.shards {
            let ShardStatus::Pulling { from } = slot.status else {
                continue;
            };
            let applied = &slot.pull.next;
            let pipe = self
                .pipes
                .entry(shard)
                .or_insert_with(|| Pipe::new(applied, term));
            if pipe.term != term {
                *pipe = Pipe::new(applied, term);
            }
            pipe.logged.retain(|from| from >= applied);
            if pipe.tail < *applied {
                // Applied beyond what this pipeline logged (another leader's chunks).
                *pipe = Pipe::new(applied, term);
            }
            if !pipe.done && !pipe.asked && pipe.logged.len() < window.max(1) {
                // Under a rate, every chunk waits its turn, whole: the allowance must cover it.
                let chunk = pace.chunk_bytes as u64;
                if pace.bytes_per_sec > 0 && self.allowance < chunk {
                    let missing = chunk - self.allowance;
                    let wait = missing
                        .saturating_mul(1_000_000)
                        .checked_div(pace.bytes_per_sec)
                        .unwrap_or(0);
                    self.due = Some(pace.now + crate::time::Duration::from_micros(wait + 1));
                    continue;
                }
                if pace.bytes_per_sec > 0 {
                    self.allowance -= chunk;
                }
                pipe.asked = true;
                wanted.push((shard, from, pipe.tail.clone()));
            }
        }
        wanted
    }

    /// Whether to log the chunk of `shard` that starts at `from`: the one at the pipeline's
    /// tail, with room in the window
    pub(crate) fn accepts(
        &self,
        shard: ShardId,
        from: &ShardCursor,
        term: Term,
        window: usize,
    ) -> bool {
        self.pipes.get(&shard).is_some_and(|p| {
            p.term == term && !p.done && p.tail == *from && p.logged.len() < window.max(1)
        })
    }

    /// When a pipeline waiting for the rate may ask for its chunk
    pub(crate) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// The chunk from `from` to `next` (`None`: the last) was logged
    pub(crate) fn logged(&mut self, shard: ShardId, from: ShardCursor, next: Option<ShardCursor>) {
        if let Some(p) = self.pipes.get_mut(&shard) {
            p.logged.push_back(from);
            p.asked = false;
            match next {
                Some(next) => p.tail = next,
                None => p.done = true,
            }
        }
    }

    /// A poll: requests not answered by now are asked again, and a pipeline whose applied
    /// cursor did not move for [`STALLED_POLLS`] polls starts over from it
    pub(crate) fn poll(&mut self, state: &GroupState) {
        for (shard, pipe) in &mut self.pipes {
            pipe.asked = false;
            let Some(applied) = state.shards.get(shard).map(|s| &s.pull.next) else {
                continue;
            };
            if pipe.applied != *applied {
                pipe.applied = applied.clone();
                pipe.stalled = 0;
                continue;
            }
            pipe.stalled += 1;
            if pipe.stalled >= STALLED_POLLS {
                *pipe = Pipe::new(applied, pipe.term);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{ControllerCommand, ShardController};
    use crate::group::GroupCommand;
    use crate::shard::{ShardLimits, ShardState};
    use alloc::vec;

    /// Group 2 pulling every shard of 2 from group 1
    fn pulling() -> GroupState {
        let mut ctl = ShardController::new(2);
        let c1 = ctl
            .apply(&ControllerCommand::Join(vec![(1, vec![1])]))
            .unwrap();
        let c2 = ctl
            .apply(&ControllerCommand::Join(vec![(2, vec![2])]))
            .unwrap();
        let c3 = ctl.apply(&ControllerCommand::Leave(vec![1])).unwrap();
        let mut g = GroupState::new(2, 2, ShardLimits::default());
        for c in [c1, c2] {
            g.apply(&GroupCommand::Reconfigure(c));
        }
        // Settle what configuration 2 gave (shard 1 from group 1) by hand.
        let chunk = ShardState::default().chunk(&ShardCursor::START, 10);
        g.apply(&GroupCommand::InstallChunk {
            shard: 1,
            num: 2,
            chunk,
        });
        g.apply(&GroupCommand::DeleteConfirmed { shard: 1, num: 2 });
        g.apply(&GroupCommand::Reconfigure(c3));
        g
    }

    fn pace(window: usize) -> Pace {
        Pace {
            now: Instant::ZERO,
            window,
            chunk_bytes: 100,
            bytes_per_sec: 0,
        }
    }

    #[test]
    fn a_rate_spaces_the_chunks_asked_for() {
        let g = pulling();
        let mut p = Pulls::default();
        let at = |ms: u64| Pace {
            now: Instant::ZERO + crate::time::Duration::from_millis(ms),
            window: 4,
            chunk_bytes: 1000,
            bytes_per_sec: 10_000,
        };
        assert!(p.wanted(&g, 1, at(0)).is_empty(), "nothing saved up yet");
        assert!(
            p.wanted(&g, 1, at(50)).is_empty(),
            "500 bytes: half a chunk"
        );
        assert_eq!(p.wanted(&g, 1, at(100)).len(), 1, "one chunk after 100 ms");
        p.logged(0, ShardCursor::START, Some(data("a")));
        assert!(p.wanted(&g, 1, at(150)).is_empty());
        assert_eq!(p.wanted(&g, 1, at(250)).len(), 1);
    }

    fn data(key: &str) -> ShardCursor {
        ShardCursor::Data(Some(key.as_bytes().to_vec()))
    }

    /// Raft refuses proposals while leadership is being transferred: a chunk that could not
    /// be logged is asked for again at the next poll, not at once. Asking at once, with the
    /// previous owner on the same node (loopback, no network delay), answered and refused
    /// the chunk again and again without time passing: the node's loop never came back.
    #[test]
    fn a_refused_chunk_is_asked_again_at_the_next_poll_not_at_once() {
        let g = pulling();
        let mut p = Pulls::default();
        assert_eq!(p.wanted(&g, 1, pace(2)), vec![(0, 1, ShardCursor::START)]);
        // The driver refused to log it: nothing is marked, so nothing is asked until a poll.
        assert!(
            p.wanted(&g, 1, pace(2)).is_empty(),
            "asked again before any time passed"
        );
        p.poll(&g);
        assert_eq!(p.wanted(&g, 1, pace(2)), vec![(0, 1, ShardCursor::START)]);
    }

    #[test]
    fn a_pipeline_asks_ahead_within_its_window_and_logs_only_its_tail() {
        let g = pulling();
        let mut p = Pulls::default();
        assert_eq!(p.wanted(&g, 1, pace(2)), vec![(0, 1, ShardCursor::START)]);
        assert!(p.wanted(&g, 1, pace(2)).is_empty(), "asked already");
        assert!(!p.accepts(0, &data("a"), 1, 2), "not the tail");
        assert!(p.accepts(0, &ShardCursor::START, 1, 2));
        p.logged(0, ShardCursor::START, Some(data("a")));
        // The next chunk is asked for before the first one is applied.
        assert_eq!(p.wanted(&g, 1, pace(2)), vec![(0, 1, data("a"))]);
        assert!(
            !p.accepts(0, &ShardCursor::START, 1, 2),
            "a repeat is not logged"
        );
        p.logged(0, data("a"), Some(data("b")));
        assert!(
            p.wanted(&g, 1, pace(2)).is_empty(),
            "the window of 2 is full"
        );
        assert!(!p.accepts(0, &data("b"), 1, 2));
        // A new term starts over from the applied cursor.
        assert_eq!(p.wanted(&g, 2, pace(2)), vec![(0, 1, ShardCursor::START)]);
    }

    #[test]
    fn a_stalled_pipeline_starts_over_from_the_applied_cursor() {
        let g = pulling();
        let mut p = Pulls::default();
        p.wanted(&g, 1, pace(4));
        p.logged(0, ShardCursor::START, Some(data("x")));
        p.wanted(&g, 1, pace(4));
        p.poll(&g);
        // A poll re-asks the outstanding request (its answer may be lost).
        assert_eq!(p.wanted(&g, 1, pace(4)), vec![(0, 1, data("x"))]);
        p.poll(&g);
        // Nothing applied for two polls: the logged chunk was lost; ask from the start again.
        assert_eq!(p.wanted(&g, 1, pace(4)), vec![(0, 1, ShardCursor::START)]);
        p.logged(0, ShardCursor::START, None);
        assert!(
            p.wanted(&g, 1, pace(4)).is_empty(),
            "the last chunk is logged"
        );
    }
}
