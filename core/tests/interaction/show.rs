//! Deterministic text for messages, entries, writes and node state changes

use shale_core::raft::{
    AppendOutcome, Entry, EntryKind, HardState, Membership, Message, NodeId, Raft, Role, Term,
    Write,
};
use shale_core::time::Instant;

/// Lists of more entries than this are abbreviated in messages and writes
const MAX_LISTED: usize = 6;

/// Milliseconds of an instant, with a fraction when needed: `500ms`, `12.5ms`
pub fn time(t: Instant) -> String {
    let us = t.as_micros();
    if us.is_multiple_of(1_000) {
        format!("{}ms", us / 1_000)
    } else {
        format!("{}.{:03}ms", us / 1_000, us % 1_000)
    }
}

/// `[1/1 1/2]`, or `[1/2 1/3 .. 4/52 (51 entries)]` for long lists
pub fn entry_ids(entries: &[Entry]) -> String {
    let ids: Vec<String> = entries.iter().map(|e| e.log_id().to_string()).collect();
    if ids.len() <= MAX_LISTED {
        return format!("[{}]", ids.join(" "));
    }
    format!(
        "[{} {} .. {} {} ({} entries)]",
        ids[0],
        ids[1],
        ids[ids.len() - 2],
        ids[ids.len() - 1],
        ids.len()
    )
}

/// A node id option: `2`, or `-` for none
pub fn opt_id(id: Option<NodeId>) -> String {
    id.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// One message, without sender and receiver
pub fn message(m: &Message) -> String {
    let verdict = |granted: bool| if granted { "granted" } else { "rejected" };
    match m {
        Message::PreVote { term, last_log } => format!("PreVote term={term} last={last_log}"),
        Message::PreVoteResponse { term, granted } => {
            format!("PreVoteResponse term={term} {}", verdict(*granted))
        }
        Message::Vote {
            term,
            last_log,
            transfer,
        } => {
            let transfer = if *transfer { " transfer" } else { "" };
            format!("Vote term={term} last={last_log}{transfer}")
        }
        Message::VoteResponse { term, granted } => {
            format!("VoteResponse term={term} {}", verdict(*granted))
        }
        Message::Append {
            term,
            prev,
            entries,
            commit,
        } => format!(
            "Append term={term} prev={prev} entries={} commit={commit}",
            entry_ids(entries)
        ),
        Message::AppendResponse {
            term,
            outcome: AppendOutcome::Accepted { match_index },
        } => format!("AppendResponse term={term} accepted match={match_index}"),
        Message::AppendResponse {
            term,
            outcome:
                AppendOutcome::Rejected {
                    rejected_prev,
                    hint,
                },
        } => format!("AppendResponse term={term} rejected prev={rejected_prev} hint={hint}"),
        Message::Heartbeat {
            term,
            commit,
            round,
        } => format!("Heartbeat term={term} commit={commit} round={round}"),
        Message::HeartbeatResponse { term, round } => {
            format!("HeartbeatResponse term={term} round={round}")
        }
        Message::ReadIndex { term, ctx } => format!("ReadIndex term={term} ctx={ctx}"),
        Message::ReadIndexResponse { term, ctx, index } => match index {
            Some(i) => format!("ReadIndexResponse term={term} ctx={ctx} index={i}"),
            None => format!("ReadIndexResponse term={term} ctx={ctx} refused"),
        },
        Message::TimeoutNow { term } => format!("TimeoutNow term={term}"),
        Message::InstallSnapshot {
            term,
            meta,
            offset,
            data,
            done,
        } => format!(
            "InstallSnapshot term={term} last={} offset={offset} bytes={}{}",
            meta.last,
            data.len(),
            if *done { " done" } else { "" }
        ),
        Message::InstallSnapshotResponse {
            term,
            index,
            next_offset,
        } => format!("InstallSnapshotResponse term={term} index={index} next={next_offset}"),
    }
}

/// The payload of an entry: `noop`, or the command bytes quoted
fn payload(e: &Entry) -> String {
    match e.kind {
        EntryKind::Noop => "noop".to_owned(),
        EntryKind::Command => format!("{:?}", String::from_utf8_lossy(e.data.as_bytes())),
        EntryKind::Membership => match postcard::from_bytes::<Membership>(e.data.as_bytes()) {
            Ok(m) => format!("config {}", membership(&m)),
            Err(_) => "config <undecodable>".to_owned(),
        },
    }
}

/// A membership: `voters=[1 2 3]`, plus `outgoing=[..]` when joint and `learners=[..]` if any
pub fn membership(m: &Membership) -> String {
    let list = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
    let mut out = format!("voters=[{}]", list(m.voters()));
    if m.is_joint() {
        out.push_str(&format!(" outgoing=[{}]", list(m.outgoing())));
    }
    if !m.learners().is_empty() {
        out.push_str(&format!(" learners=[{}]", list(m.learners())));
    }
    out
}

/// One entry: `1/2 "hello"`
pub fn entry(e: &Entry) -> String {
    format!("{} {}", e.log_id(), payload(e))
}

/// A log, one line per entry, runs of four or more alike entries (same term and payload)
/// folded into one line
pub fn log(entries: &[Entry]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let mut j = i + 1;
        while j < entries.len()
            && entries[j].term == entries[i].term
            && payload(&entries[j]) == payload(&entries[i])
        {
            j += 1;
        }
        if j - i >= 4 {
            let (first, last) = (&entries[i], &entries[j - 1]);
            out.push(format!(
                "{} .. {} {} ({} entries)",
                first.log_id(),
                last.log_id(),
                payload(first),
                j - i
            ));
        } else {
            out.extend(entries[i..j].iter().map(entry));
        }
        i = j;
    }
    if out.is_empty() {
        out.push("(empty log)".to_owned());
    }
    out
}

/// A hard state: `term=1 vote=2`
pub fn hard_state(hs: &HardState) -> String {
    format!("term={} vote={}", hs.term, opt_id(hs.vote))
}

/// A write, after `N write #id`: `term=1 vote=1 entries=[1/1]` (parts left out when absent)
pub fn write(w: &Write) -> String {
    let mut parts = Vec::new();
    if let Some(hs) = &w.hard_state {
        parts.push(hard_state(hs));
    }
    if !w.entries.is_empty() {
        parts.push(format!("entries={}", entry_ids(&w.entries)));
    }
    if parts.is_empty() {
        parts.push("(nothing)".to_owned());
    }
    parts.join(" ")
}

/// The part of a node's state whose changes are printed after every input
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snap {
    /// Membership in force
    membership: Membership,
    /// Role
    role: Role,
    /// Current term
    term: Term,
    /// Vote in the current term
    vote: Option<NodeId>,
    /// Known leader
    leader: Option<NodeId>,
    /// Commit index
    commit: u64,
}

impl Snap {
    /// The printed state of `node` now
    pub fn of(node: &Raft) -> Snap {
        Snap {
            membership: node.membership().clone(),
            role: node.role(),
            term: node.term(),
            vote: node.vote(),
            leader: node.leader_hint(),
            commit: node.commit_index(),
        }
    }

    /// Lines (indented by two spaces) describing what changed from `self` to `after` on `id`
    pub fn changes(&self, id: NodeId, after: &Snap, out: &mut Vec<String>) {
        let became = self.role != after.role || self.term != after.term;
        if became {
            out.push(format!(
                "  {id} became {} at term {}",
                after.role, after.term
            ));
        }
        if self.membership != after.membership {
            out.push(format!(
                "  {id} membership {}",
                membership(&after.membership)
            ));
        }
        if self.vote != after.vote
            && let Some(v) = after.vote
        {
            out.push(format!("  {id} voted for {v} at term {}", after.term));
        }
        if self.leader != after.leader {
            match after.leader {
                Some(l) if l != id => out.push(format!("  {id} follows leader {l}")),
                None if !became => out.push(format!("  {id} forgot leader")),
                _ => {}
            }
        }
        if self.commit != after.commit {
            out.push(format!("  {id} commit {} -> {}", self.commit, after.commit));
        }
    }
}

/// One line of `raft-state` for `node`
pub fn state_line(node: &Raft, pending_writes: usize) -> String {
    let mut line = format!(
        "{}: {} term={} vote={} leader={} last={} commit={} applied={} durable={}",
        node.id(),
        node.role(),
        node.term(),
        opt_id(node.vote()),
        opt_id(node.leader_hint()),
        node.last_log_id(),
        node.commit_index(),
        node.applied_index(),
        node.durable_index()
    );
    if pending_writes > 0 {
        line.push_str(&format!(" unacked-writes={pending_writes}"));
    }
    line
}
