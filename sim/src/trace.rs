//! A trace of simulated events: a ring buffer of recent lines for failure reports, and a
//! running hash of every line so two runs of one seed can be compared bit for bit

use std::collections::VecDeque;

/// How many recent lines a failure report shows
pub const TRACE_TAIL_LINES: usize = 60;

/// The event trace of one simulation
#[derive(Debug, Default)]
pub struct Trace {
    recent: VecDeque<String>,
    hash: u64,
    lines: u64,
    /// Print every line to stderr as it happens
    pub echo: bool,
}

impl Trace {
    /// Records one line
    pub fn record(&mut self, line: String) {
        for b in line.as_bytes() {
            self.hash ^= u64::from(*b);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.hash = self.hash.rotate_left(5) ^ self.lines;
        self.lines += 1;
        if self.echo {
            eprintln!("{line}");
        }
        if self.recent.len() == TRACE_TAIL_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
    }

    /// Hash of every line recorded so far
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Number of lines recorded so far
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// The most recent lines, oldest first
    pub fn tail(&self) -> String {
        let mut out = String::new();
        for l in &self.recent {
            out.push_str("  ");
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

/// Hands `out` to `raft` and describes it for the trace as
/// `<- n{from} {kind} t{term} e{entries}[ -> {role} t{term}]`; the flag is `true` when the node
/// refused the message as `Busy`
pub(crate) fn deliver_traced(
    raft: &mut shale_core::raft::Raft,
    now: shale_core::time::Instant,
    out: shale_core::raft::Outgoing,
) -> (bool, String) {
    let before = (raft.role(), raft.term());
    let kind = out.message.kind_name();
    let term = out.message.term();
    let entries = out.message.entry_count();
    let from = out.from;
    let busy = raft.handle_message(now, from, out.message).is_err();
    let after = (raft.role(), raft.term());
    let change = if before != after {
        format!(" -> {} t{}", after.0, after.1)
    } else {
        String::new()
    };
    (
        busy,
        format!("<- n{from} {kind} t{term} e{entries}{change}"),
    )
}
