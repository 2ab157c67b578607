//! Safety invariants, checked after every simulated event
//!
//! - election safety: at most one leader per term, over the whole run;
//! - log matching: an (index, term) pair always names the same entry with the same predecessor
//!   term, on every node and across crashes (checked on every write a node makes);
//! - leader completeness: a node that becomes leader holds every entry known committed;
//! - state machine safety: every node commits and applies the same entry at each index, in
//!   order, without gaps;
//! - commit and apply indexes never go backwards within one life of a node;
//! - nothing acknowledged as committed is lost (every committed entry is recorded and checked
//!   against every later leader's log);
//! - snapshots: a restored snapshot equals the committed prefix it claims to cover (compared by
//!   the rolling digest of [`crate::app`]), and a leader's compaction point agrees with the
//!   committed log.
//!
//! Entries a node compacted away are not checked against its log any more: they are covered
//! by its snapshot, which was checked when it was taken (by applying the entries) or restored.

use std::collections::{BTreeMap, HashMap};

use shale_core::raft::{
    AppendOutcome, Entry, Index, Message, NodeId, Outgoing, Raft, Role, Term, Write,
};

use crate::app::{EMPTY_DIGEST, digest_step};

/// A 64-bit FNV-1a hash of an entry's kind and payload
pub fn entry_hash(entry: &Entry) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let kind = format!("{:?}", entry.kind);
    for b in kind.as_bytes().iter().chain(entry.data.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What the checker remembers about one node (reset on restart where noted)
#[derive(Debug, Default, Clone)]
struct NodeWatch {
    /// Commit index seen last in this life
    commit: Index,
    /// Last applied index in this life
    applied: Index,
    /// Role and term seen last
    role: Option<(Role, Term)>,
    /// Highest term the node held in this life (reset to its durable term on restart)
    max_term: Term,
    /// Highest committed index whose entry the node held durably in this life
    held_committed: Index,
    /// Highest match index the node acknowledged to a leader in this life, with its term
    acked: (Term, Index),
}

/// The invariant checker; panics are raised by the simulator with the seed and a trace
#[derive(Debug, Default)]
pub struct Checker {
    leaders: BTreeMap<Term, NodeId>,
    /// (index, term) -> (entry hash, term of the entry before it)
    entries: HashMap<(Index, Term), (u64, Term)>,
    /// index - 1 -> (term, hash) of the committed entry at that index
    committed: Vec<(Term, u64)>,
    /// index - 1 -> rolling digest of the committed prefix through that index
    digests: Vec<u64>,
    nodes: BTreeMap<NodeId, NodeWatch>,
}

impl Checker {
    /// Entries known committed, in index order (position 0 is index 1) as (term, hash)
    pub fn committed(&self) -> &[(Term, u64)] {
        &self.committed
    }

    /// Highest index known committed anywhere
    pub fn commit_index(&self) -> Index {
        self.committed.len() as Index
    }

    /// The rolling digest of the committed prefix through `index` (index 0: nothing applied),
    /// if that prefix is known committed
    pub fn digest_at(&self, index: Index) -> Option<u64> {
        match index {
            0 => Some(EMPTY_DIGEST),
            i => self.digests.get((i - 1) as usize).copied(),
        }
    }

    /// The leader recorded for `term`
    pub fn leader_of(&self, term: Term) -> Option<NodeId> {
        self.leaders.get(&term).copied()
    }

    /// A node restarted from a disk holding `durable_term`: its volatile indexes start again
    /// from zero, and terms it held only in memory (or in writes lost in the crash) are
    /// forgotten, since nothing it sent could depend on them
    pub fn on_restart(&mut self, id: NodeId, durable_term: Term) {
        let w = self.nodes.entry(id).or_default();
        w.commit = 0;
        w.applied = 0;
        w.held_committed = 0;
        w.acked = (0, 0);
        w.role = None;
        w.max_term = durable_term;
    }

    /// Node `id` loaded its state machine from a snapshot through `index` whose digest is
    /// `digest` (after installing one from the leader, or on restart): it must equal the
    /// committed prefix, and the node applies from `index + 1` on
    pub fn on_restore(&mut self, id: NodeId, index: Index, digest: u64) -> Result<(), String> {
        let Some(expected) = self.digest_at(index) else {
            return Err(format!(
                "node {id} restored a snapshot through {index}, but only {} entries are known committed",
                self.committed.len()
            ));
        };
        if digest != expected {
            return Err(format!(
                "snapshot: node {id} restored a snapshot through {index} with digest {digest:x}, but the committed prefix has digest {expected:x}"
            ));
        }
        let w = self.nodes.entry(id).or_default();
        if index < w.applied {
            return Err(format!(
                "node {id}: restored a snapshot through {index} after applying {}: applied index went back",
                w.applied
            ));
        }
        w.applied = index;
        Ok(())
    }

    /// Checks a state machine's digest after applying `index` against the committed prefix
    pub fn check_digest(&self, id: NodeId, index: Index, digest: u64) -> Result<(), String> {
        match self.digest_at(index) {
            Some(expected) if expected != digest => Err(format!(
                "state machine of node {id} at {index} has digest {digest:x}, the committed prefix {expected:x}"
            )),
            _ => Ok(()),
        }
    }

    /// Checks a write the node emitted against the log-matching registry
    pub fn on_write(&mut self, node: &Raft, write: &Write) -> Result<(), String> {
        if let Some(hs) = write.hard_state {
            let w = self.nodes.entry(node.id()).or_default();
            if hs.term < w.max_term {
                return Err(format!(
                    "node {} persisted term {} after term {}: terms went backwards",
                    node.id(),
                    hs.term,
                    w.max_term
                ));
            }
            w.max_term = hs.term;
        }
        for chunk in write.snapshot_chunks.iter().filter(|c| c.install) {
            let last = chunk.meta.last;
            let committed = self.committed.get((last.index as usize).wrapping_sub(1));
            if last.index > 0 && committed.map(|c| c.0) != Some(last.term) {
                return Err(format!(
                    "snapshot: node {} installs a snapshot ending at {last} where the committed entry is {committed:?}",
                    node.id()
                ));
            }
        }
        let Some(first) = write.entries.first() else {
            return Ok(());
        };
        // The predecessor may be the compaction point (or a snapshot this write installs).
        let mut prev_term = if first.index == 1 {
            0
        } else {
            match node.term_at(first.index - 1) {
                Some(t) => t,
                None => {
                    return Err(format!(
                        "node {} wrote entry {} without its predecessor",
                        node.id(),
                        first.index
                    ));
                }
            }
        };
        for e in &write.entries {
            let value = (entry_hash(e), prev_term);
            match self.entries.get(&(e.index, e.term)) {
                Some(known) if *known != value => {
                    return Err(format!(
                        "log matching: node {} holds entry {}/{} (hash {:x}, prev term {}) but another node held {}/{} as (hash {:x}, prev term {})",
                        node.id(),
                        e.term,
                        e.index,
                        value.0,
                        value.1,
                        e.term,
                        e.index,
                        known.0,
                        known.1
                    ));
                }
                Some(_) => {}
                None => {
                    self.entries.insert((e.index, e.term), value);
                }
            }
            prev_term = e.term;
        }
        Ok(())
    }

    /// Records a message a node sends: an append acknowledgement promises that the node holds
    /// (durably) the leader's log through its match index, for as long as that term lasts
    pub fn on_send(&mut self, out: &Outgoing) {
        if let Message::AppendResponse {
            term,
            outcome: AppendOutcome::Accepted { match_index },
        } = out.message
        {
            let w = self.nodes.entry(out.from).or_default();
            if term > w.acked.0 || (term == w.acked.0 && match_index > w.acked.1) {
                w.acked = (term, match_index);
            }
        }
    }

    /// Checks a node's state after an event
    pub fn on_step(&mut self, node: &Raft) -> Result<(), String> {
        let id = node.id();
        let term = node.term();
        let role = node.role();
        let watch = self.nodes.entry(id).or_default().clone();
        if role == Role::Leader {
            match self.leaders.get(&term) {
                Some(&other) if other != id => {
                    return Err(format!(
                        "election safety: nodes {other} and {id} both lead term {term}"
                    ));
                }
                Some(_) => {}
                None => {
                    self.leaders.insert(term, id);
                    self.check_leader_completeness(node)?;
                }
            }
        }
        let commit = node.commit_index();
        if commit < watch.commit {
            return Err(format!(
                "node {id}: commit index went back from {} to {commit}",
                watch.commit
            ));
        }
        // Indexes before the first held entry are covered by a snapshot (checked on restore).
        for index in (watch.commit + 1).max(node.first_index())..=commit {
            let Some(e) = node.entry(index) else {
                return Err(format!(
                    "node {id}: commit index {commit} beyond its log ({})",
                    node.last_index()
                ));
            };
            let (t, h) = (e.term, entry_hash(e));
            self.record_committed(id, index, t, h)?;
        }
        let (acked_term, acked) = watch.acked;
        if term == acked_term && node.last_index() < acked {
            return Err(format!(
                "node {id} acknowledged entries through {acked} in term {term} but its log now ends at {} (snapshot {:?}): it dropped entries the leader counts as replicated",
                node.last_index(),
                node.snapshot().map(|s| s.last)
            ));
        }
        // A log never loses a committed entry within one life: truncation stops above the
        // commit point, and a snapshot it installs must cover what it drops.
        let last = node.last_index();
        if last < watch.held_committed {
            return Err(format!(
                "node {id} held committed entry {} durably but its log now ends at {last} (snapshot {:?}): a committed entry was dropped",
                watch.held_committed,
                node.snapshot().map(|s| s.last)
            ));
        }
        let upto = node.durable_index().min(self.committed.len() as Index);
        let holds = upto > 0 && node.term_at(upto) == Some(self.committed[(upto - 1) as usize].0);
        let w = self.nodes.entry(id).or_default();
        if holds {
            w.held_committed = w.held_committed.max(upto);
        }
        w.commit = commit;
        w.role = Some((role, term));
        w.max_term = w.max_term.max(term);
        Ok(())
    }

    /// Checks an entry the node handed to its state machine
    pub fn on_apply(&mut self, id: NodeId, entry: &Entry) -> Result<(), String> {
        let w = self.nodes.entry(id).or_default();
        if entry.index != w.applied + 1 {
            return Err(format!(
                "node {id}: applied index {} after {} (out of order or a gap)",
                entry.index, w.applied
            ));
        }
        w.applied = entry.index;
        self.record_committed(id, entry.index, entry.term, entry_hash(entry))
    }

    fn record_committed(
        &mut self,
        id: NodeId,
        index: Index,
        term: Term,
        hash: u64,
    ) -> Result<(), String> {
        let pos = (index - 1) as usize;
        match self.committed.get(pos) {
            Some(&(t, h)) if (t, h) != (term, hash) => Err(format!(
                "state machine safety: node {id} committed {term}/{index} (hash {hash:x}) where {t}/{index} (hash {h:x}) was committed"
            )),
            Some(_) => Ok(()),
            None if pos == self.committed.len() => {
                let prev = self.digests.last().copied().unwrap_or(EMPTY_DIGEST);
                self.digests.push(digest_step(prev, term, hash));
                self.committed.push((term, hash));
                Ok(())
            }
            None => Err(format!(
                "node {id} committed index {index} while only {} are known committed (a gap)",
                self.committed.len()
            )),
        }
    }

    /// A new leader holds every committed entry it has not compacted, and its compaction point
    /// and snapshot agree with the committed log
    fn check_leader_completeness(&self, node: &Raft) -> Result<(), String> {
        let base = node.first_index() - 1;
        let points = [
            Some((base, node.term_at(base))),
            node.snapshot().map(|s| (s.last.index, Some(s.last.term))),
        ];
        for (index, term) in points.into_iter().flatten().filter(|(i, _)| *i > 0) {
            let committed = self.committed.get((index - 1) as usize).map(|c| c.0);
            if committed.is_none() || committed != term {
                return Err(format!(
                    "leader completeness: node {} leads term {} with a compaction point or snapshot at {index} of term {term:?}, where the committed term is {committed:?}",
                    node.id(),
                    node.term()
                ));
            }
        }
        for (pos, &(term, hash)) in self.committed.iter().enumerate().skip(base as usize) {
            let index = pos as Index + 1;
            let held = node.entry(index).map(|e| (e.term, entry_hash(e)));
            if held != Some((term, hash)) {
                return Err(format!(
                    "leader completeness: node {} leads term {} without committed entry {term}/{index} (holds {held:?})",
                    node.id(),
                    node.term()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shale_core::raft::{Config, EntryKind, HardState, Recovered};
    use shale_core::time::Instant;

    /// A single-voter node that elects itself in `term + 1` and commits `commands`
    fn lone_leader(id: NodeId, term: Term, commands: &[&str]) -> Raft {
        let recovered = Recovered {
            hard_state: HardState { term, vote: None },
            ..Recovered::default()
        };
        let mut now = Instant::ZERO;
        let mut raft = Raft::new(Config::new(id, id), &[id], recovered, now).unwrap();
        let settle = |raft: &mut Raft, now: Instant| {
            while let Some(w) = raft.poll_write() {
                raft.handle_persisted(now, w.id);
            }
            while raft.poll_message().is_some() {}
        };
        while raft.role() != Role::Leader {
            now = raft.poll_timeout().unwrap();
            raft.handle_timeout(now).unwrap();
            settle(&mut raft, now);
        }
        for c in commands {
            raft.propose(now, *c).unwrap();
            settle(&mut raft, now);
        }
        raft
    }

    #[test]
    fn a_consistent_node_passes() {
        let mut checker = Checker::default();
        let a = lone_leader(1, 0, &["x", "y"]);
        checker.on_step(&a).unwrap();
        assert_eq!(checker.commit_index(), 3);
        assert_eq!(checker.leader_of(1), Some(1));
    }

    #[test]
    fn two_leaders_in_one_term_are_caught() {
        let mut checker = Checker::default();
        checker.on_step(&lone_leader(1, 0, &[])).unwrap();
        let err = checker.on_step(&lone_leader(2, 0, &[])).unwrap_err();
        assert!(err.contains("election safety"), "{err}");
    }

    #[test]
    fn different_committed_entries_are_caught() {
        let mut checker = Checker::default();
        checker.on_step(&lone_leader(1, 0, &["x"])).unwrap();
        let err = checker.on_step(&lone_leader(2, 4, &["y"])).unwrap_err();
        // Node 2 leads term 5 without node 1's committed entries.
        assert!(err.contains("leader completeness"), "{err}");
    }

    #[test]
    fn divergent_commits_are_caught_even_without_an_election() {
        let mut checker = Checker::default();
        let a = lone_leader(1, 0, &["x"]);
        let b = lone_leader(2, 0, &["y"]);
        checker.on_step(&a).unwrap();
        // Pretend node 2 follows: only its commit is observed, not its leadership.
        let err = checker
            .on_apply(2, b.entry(1).unwrap())
            .and_then(|_| checker.on_apply(2, b.entry(2).unwrap()));
        assert!(err.unwrap_err().contains("state machine safety"));
    }

    #[test]
    fn log_matching_violations_are_caught() {
        let mut checker = Checker::default();
        let a = lone_leader(1, 0, &["x"]);
        let entry = |data: &str| Entry {
            term: 1,
            index: 2,
            kind: EntryKind::Command,
            data: data.into(),
        };
        let write = |e: Entry| Write {
            id: 9,
            entries: vec![e],
            ..Write::default()
        };
        checker.on_write(&a, &write(entry("x"))).unwrap();
        let err = checker.on_write(&a, &write(entry("other"))).unwrap_err();
        assert!(err.contains("log matching"), "{err}");
    }

    #[test]
    fn gaps_and_reordering_in_apply_are_caught() {
        let mut checker = Checker::default();
        let a = lone_leader(1, 0, &["x", "y"]);
        let err = checker.on_apply(1, a.entry(2).unwrap()).unwrap_err();
        assert!(err.contains("out of order"), "{err}");
    }
}
