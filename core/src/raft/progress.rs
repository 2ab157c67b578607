//! What a leader knows about each follower: match point, next index, and flow control

use alloc::collections::VecDeque;

use super::types::Index;
use crate::time::Instant;

/// How the leader sends to a follower
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicationState {
    /// The match point is unknown: send one append at a time and wait for its answer
    Probe {
        /// An append is outstanding; the next goes after its answer or the next heartbeat
        paused: bool,
    },
    /// The follower is known to match: stream appends up to the in-flight window
    Replicate,
    /// The follower needs entries the leader compacted: send it the snapshot ending at `index`,
    /// one chunk at a time
    Snapshot {
        /// Last index of the snapshot being sent
        index: Index,
        /// Bytes the follower acknowledged so far
        offset: u64,
        /// A chunk was asked of the runtime and not yet handed over
        requested: bool,
        /// When the outstanding chunk was asked for or sent, if one is outstanding
        sent_at: Option<Instant>,
    },
}

/// A leader's view of one follower
#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to be durable on the follower and matching the leader's log
    pub match_index: Index,
    /// Next index to send
    pub next_index: Index,
    /// Probe or replicate
    pub state: ReplicationState,
    /// Heard from since the last check-quorum round
    pub recent_active: bool,
    /// Highest commit index told to the follower
    pub sent_commit: Index,
    /// Latest heartbeat round the follower answered
    pub acked_round: u64,
    /// Appends in flight in the replicate state: (last index sent, entry bytes, when sent)
    pub(crate) inflight: VecDeque<(Index, usize, Instant)>,
    /// Sum of the bytes in `inflight`
    pub(crate) inflight_bytes: usize,
}

impl Progress {
    pub(crate) fn new(next_index: Index) -> Self {
        Progress {
            match_index: 0,
            next_index,
            state: ReplicationState::Probe { paused: false },
            recent_active: true,
            sent_commit: 0,
            acked_round: 0,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
        }
    }

    /// Records that the follower holds everything up to `index`; `true` if that is news
    pub(crate) fn advance_match(&mut self, index: Index) -> bool {
        while let Some(&(last, bytes, _)) = self.inflight.front() {
            if last > index {
                break;
            }
            self.inflight.pop_front();
            self.inflight_bytes -= bytes;
        }
        if index <= self.match_index {
            return false;
        }
        self.match_index = index;
        self.next_index = self.next_index.max(index + 1);
        true
    }

    pub(crate) fn become_probe(&mut self, next_index: Index) {
        self.state = ReplicationState::Probe { paused: false };
        self.next_index = next_index.max(self.match_index + 1);
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ReplicationState::Replicate;
        self.next_index = self.match_index + 1;
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    /// Whether another append may go out now
    pub(crate) fn can_send(&self, max_msgs: usize, max_bytes: usize) -> bool {
        match self.state {
            ReplicationState::Probe { paused } => !paused,
            ReplicationState::Replicate => {
                self.inflight.len() < max_msgs && self.inflight_bytes < max_bytes
            }
            ReplicationState::Snapshot { .. } => false,
        }
    }

    /// Starts (or restarts) sending the snapshot ending at `index`
    pub(crate) fn become_snapshot(&mut self, index: Index) {
        self.state = ReplicationState::Snapshot {
            index,
            offset: 0,
            requested: false,
            sent_at: None,
        };
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    /// When the oldest unacknowledged append in the replicate state was sent
    pub(crate) fn oldest_inflight_sent_at(&self) -> Option<Instant> {
        self.inflight.front().map(|&(_, _, at)| at)
    }

    /// Records an append sent at `now` that carried entries through `last` (`bytes` of them)
    pub(crate) fn on_sent(&mut self, last: Index, bytes: usize, now: Instant) {
        match self.state {
            ReplicationState::Probe { .. } => {
                self.state = ReplicationState::Probe { paused: true };
            }
            ReplicationState::Replicate => {
                self.next_index = last + 1;
                self.inflight.push_back((last, bytes, now));
                self.inflight_bytes += bytes;
            }
            ReplicationState::Snapshot { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_fills_and_drains_on_acks() {
        let now = Instant::ZERO;
        let later = Instant::from_micros(5);
        let mut p = Progress::new(1);
        assert!(p.can_send(2, 100));
        p.on_sent(0, 0, now);
        assert!(!p.can_send(2, 100), "a probe waits for its answer");
        assert!(!p.advance_match(0));
        p.advance_match(5);
        p.become_replicate();
        assert_eq!(p.next_index, 6);
        p.on_sent(7, 60, now);
        p.on_sent(9, 60, later);
        assert!(!p.can_send(2, 1000), "message window full");
        assert_eq!(p.next_index, 10);
        assert_eq!(p.oldest_inflight_sent_at(), Some(now));
        p.advance_match(7);
        assert!(p.can_send(2, 1000));
        assert_eq!(p.inflight_bytes, 60);
        assert_eq!(p.oldest_inflight_sent_at(), Some(later));
        p.advance_match(9);
        assert!(p.inflight.is_empty());
    }
}
