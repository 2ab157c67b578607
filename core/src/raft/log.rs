//! The in-memory Raft log and its bookkeeping of what has been handed out for persistence

use alloc::vec::Vec;

use super::types::{Entry, Index, LogId, Term};

/// The log entries this node holds, from `first_index()` to `last_index()`
///
/// `unwritten_from` is the first index whose current contents have not yet been handed to the
/// runtime in a write; everything from there to the end goes into the next write.
#[derive(Debug)]
pub(crate) struct RaftLog {
    /// Entries, `entries[k].index == offset + 1 + k`
    entries: Vec<Entry>,
    /// Index of the entry just before `entries[0]` (0 for a log that starts at the beginning)
    offset: Index,
    /// Term of the entry at `offset` (0 at the beginning)
    offset_term: Term,
    /// First index not yet handed out in a write
    unwritten_from: Index,
    /// Sum of `size_bytes` over `entries`
    bytes: usize,
}

impl RaftLog {
    /// A log holding `entries`, which the caller has checked are contiguous from 1 and durable
    #[cfg(test)]
    pub(crate) fn recovered(entries: Vec<Entry>) -> Self {
        Self::after(LogId::new(0, 0), entries)
    }

    /// A log that starts after `base` (a snapshot's last entry, or 0/0) and holds `entries`,
    /// which the caller has checked follow `base` contiguously and are durable
    pub(crate) fn after(base: LogId, entries: Vec<Entry>) -> Self {
        let bytes = entries.iter().map(Entry::size_bytes).sum();
        let next = base.index + entries.len() as Index + 1;
        RaftLog {
            entries,
            offset: base.index,
            offset_term: base.term,
            unwritten_from: next,
            bytes,
        }
    }

    /// Index of the entry just before the first one held (the compaction point)
    pub(crate) fn offset(&self) -> Index {
        self.offset
    }

    /// Bytes of the entries held (payload plus fixed overhead each)
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops the entries up to and including `index` (which must be held or be the offset)
    pub(crate) fn compact_through(&mut self, index: Index) {
        if index <= self.offset {
            return;
        }
        let Some(term) = self.term(index) else { return };
        let n = (index - self.offset) as usize;
        let dropped: usize = self.entries[..n].iter().map(Entry::size_bytes).sum();
        self.entries.drain(..n);
        self.bytes -= dropped;
        self.offset = index;
        self.offset_term = term;
        if self.unwritten_from <= index {
            self.unwritten_from = index + 1;
        }
    }

    /// Replaces the whole log by a snapshot ending at `last`
    pub(crate) fn install_snapshot(&mut self, last: LogId) {
        self.entries.clear();
        self.bytes = 0;
        self.offset = last.index;
        self.offset_term = last.term;
        self.unwritten_from = last.index + 1;
    }

    pub(crate) fn last_index(&self) -> Index {
        self.offset + self.entries.len() as Index
    }

    pub(crate) fn last_term(&self) -> Term {
        self.entries.last().map_or(self.offset_term, |e| e.term)
    }

    pub(crate) fn last_log_id(&self) -> LogId {
        LogId::new(self.last_term(), self.last_index())
    }

    /// The term of the entry at `index`, if this log holds it (index 0 has term 0)
    pub(crate) fn term(&self, index: Index) -> Option<Term> {
        if index == self.offset {
            return Some(self.offset_term);
        }
        self.get(index).map(|e| e.term)
    }

    pub(crate) fn get(&self, index: Index) -> Option<&Entry> {
        if index <= self.offset {
            return None;
        }
        self.entries.get((index - self.offset - 1) as usize)
    }

    /// `true` when this log holds exactly `id`
    pub(crate) fn matches(&self, id: LogId) -> bool {
        self.term(id.index) == Some(id.term)
    }

    /// Entries from `low` through `high` inclusive, at most `max_bytes` of them but at least one
    pub(crate) fn slice(&self, low: Index, high: Index, max_bytes: usize) -> Vec<Entry> {
        let mut out = Vec::with_capacity(self.range(low, high).len());
        let mut bytes = 0;
        let mut index = low;
        while index <= high {
            let Some(entry) = self.get(index) else { break };
            bytes += entry.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(entry.clone());
            index += 1;
        }
        out
    }

    /// Entries from `low` through `high` inclusive, borrowed
    pub(crate) fn range(&self, low: Index, high: Index) -> &[Entry] {
        let first = low.max(self.offset + 1);
        let last = high.min(self.last_index());
        if first > last {
            return &[];
        }
        let start = (first - self.offset - 1) as usize;
        let end = (last - self.offset) as usize;
        &self.entries[start..end]
    }

    /// Appends one entry at the end (leader path); the caller sets index and term
    pub(crate) fn push(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index() + 1);
        debug_assert!(entry.term >= self.last_term());
        self.bytes += entry.size_bytes();
        self.entries.push(entry);
    }

    /// Appends `entries` (contiguous, following an entry this log already matches), skipping
    /// those already present and truncating at the first conflict; never truncates an entry that
    /// matches. Returns the index of the last entry of `entries` (the new match point) and the
    /// first index whose entry changed (truncated or appended), if any did.
    pub(crate) fn append_after_match(
        &mut self,
        prev: Index,
        entries: Vec<Entry>,
    ) -> (Index, Option<Index>) {
        let last_new = prev + entries.len() as Index;
        let mut iter = entries.into_iter().peekable();
        while let Some(e) = iter.peek() {
            match self.term(e.index) {
                Some(t) if t == e.term => {
                    iter.next();
                }
                Some(_) => {
                    self.truncate_from(e.index);
                    break;
                }
                None => break,
            }
        }
        let first_changed = iter.peek().map(|e| e.index);
        for e in iter {
            debug_assert_eq!(e.index, self.last_index() + 1);
            if self.unwritten_from > e.index {
                self.unwritten_from = e.index;
            }
            self.bytes += e.size_bytes();
            self.entries.push(e);
        }
        (last_new, first_changed)
    }

    /// Drops every entry at or after `index`
    fn truncate_from(&mut self, index: Index) {
        debug_assert!(index > self.offset);
        let keep = (index - self.offset - 1) as usize;
        let dropped: usize = self.entries[keep..].iter().map(Entry::size_bytes).sum();
        self.entries.truncate(keep);
        self.bytes -= dropped;
        if self.unwritten_from > index {
            self.unwritten_from = index;
        }
    }

    /// The largest index at or below `index` whose term is at most `term`, with that term
    ///
    /// Used on both sides of a rejected append to skip a whole divergent term per round trip.
    pub(crate) fn find_conflict_by_term(&self, index: Index, term: Term) -> LogId {
        let mut i = index.min(self.last_index());
        while i > self.offset {
            let t = self.term(i).unwrap_or(0);
            if t <= term {
                return LogId::new(t, i);
            }
            i -= 1;
        }
        LogId::new(self.offset_term, self.offset)
    }

    /// Raft's election restriction (§5.4.1): is a log ending at `last` at least as up to date?
    pub(crate) fn is_up_to_date(&self, last: LogId) -> bool {
        let mine = self.last_log_id();
        last.term > mine.term || (last.term == mine.term && last.index >= mine.index)
    }

    pub(crate) fn unwritten_from(&self) -> Index {
        self.unwritten_from
    }

    pub(crate) fn has_unwritten(&self) -> bool {
        self.unwritten_from <= self.last_index()
    }

    /// Sum of `size_bytes` over the entries from `low` through `high`
    pub(crate) fn range_bytes(&self, low: Index, high: Index) -> usize {
        self.range(low, high).iter().map(Entry::size_bytes).sum()
    }

    /// Everything not yet handed out for persistence; marks it handed out
    pub(crate) fn take_unwritten(&mut self) -> Vec<Entry> {
        let out = self.range(self.unwritten_from, self.last_index()).to_vec();
        self.unwritten_from = self.last_index() + 1;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::{EntryKind, Payload};

    fn e(term: Term, index: Index) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Command,
            data: Payload::default(),
        }
    }

    fn log_of(terms: &[Term]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, t)| e(*t, i as Index + 1))
            .collect();
        RaftLog::recovered(entries)
    }

    #[test]
    fn append_skips_matching_and_truncates_only_on_conflict() {
        let mut log = log_of(&[1, 1, 2, 2]);
        assert!(!log.has_unwritten());
        // All match: nothing truncated, nothing unwritten.
        assert_eq!(
            log.append_after_match(1, alloc::vec![e(1, 2), e(2, 3)]),
            (3, None)
        );
        assert_eq!(log.last_index(), 4);
        assert!(!log.has_unwritten());
        // Conflict at 3: truncate there and append.
        assert_eq!(
            log.append_after_match(2, alloc::vec![e(3, 3)]),
            (3, Some(3))
        );
        assert_eq!(log.last_log_id(), LogId::new(3, 3));
        assert_eq!(log.unwritten_from(), 3);
        assert_eq!(log.take_unwritten().len(), 1);
        assert!(!log.has_unwritten());
        assert_eq!(log.bytes(), 3 * ENTRY);
    }

    #[test]
    fn compaction_and_install_keep_terms_and_bytes() {
        let mut log = log_of(&[1, 1, 2, 2, 3]);
        log.compact_through(3);
        assert_eq!(log.offset(), 3);
        assert_eq!(log.term(3), Some(2));
        assert_eq!(log.term(2), None);
        assert!(log.get(3).is_none() && log.get(4).is_some());
        assert_eq!(log.bytes(), 2 * ENTRY);
        assert_eq!(log.find_conflict_by_term(5, 2), LogId::new(2, 4));
        assert_eq!(
            log.find_conflict_by_term(5, 1),
            LogId::new(2, 3),
            "never below the offset"
        );
        log.install_snapshot(LogId::new(7, 40));
        assert_eq!(log.last_log_id(), LogId::new(7, 40));
        assert_eq!(log.bytes(), 0);
        assert!(!log.has_unwritten());
    }

    #[test]
    fn conflict_by_term_skips_whole_terms() {
        let log = log_of(&[1, 1, 3, 3, 3, 5, 5]);
        assert_eq!(log.find_conflict_by_term(7, 4), LogId::new(3, 5));
        assert_eq!(log.find_conflict_by_term(100, 2), LogId::new(1, 2));
        assert_eq!(log.find_conflict_by_term(7, 0), LogId::new(0, 0));
        assert_eq!(log.find_conflict_by_term(4, 9), LogId::new(3, 4));
    }

    #[test]
    fn slice_respects_bytes_but_sends_at_least_one() {
        let log = log_of(&[1, 1, 1]);
        assert_eq!(log.slice(1, 3, 1).len(), 1);
        assert_eq!(log.slice(1, 3, 2 * ENTRY).len(), 2);
        assert_eq!(log.slice(2, 9, usize::MAX).len(), 2);
        assert!(log.slice(4, 9, usize::MAX).is_empty());
    }

    const ENTRY: usize = crate::raft::types::ENTRY_OVERHEAD_BYTES;

    #[test]
    fn up_to_date_compares_term_then_index() {
        let log = log_of(&[1, 2]);
        assert!(log.is_up_to_date(LogId::new(3, 1)));
        assert!(log.is_up_to_date(LogId::new(2, 2)));
        assert!(!log.is_up_to_date(LogId::new(2, 1)));
        assert!(!log.is_up_to_date(LogId::new(1, 9)));
    }
}
