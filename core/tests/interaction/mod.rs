//! Scripted interaction tests: the transcript format, its parser, and the command dispatcher
//!
//! # File format
//!
//! A transcript in `core/testdata/*.txt` is a sequence of **blocks**. A block is one command
//! line, a separator line `----`, and the expected output: every following line up to the next
//! blank line (or the end of the file). Blocks are separated by one or more blank lines. Lines
//! starting with `#` between blocks are comments; they, and blank lines, are kept as they are
//! when the file is rewritten.
//!
//! ```text
//! # Node 1 times out first and asks for votes.
//! campaign 1
//! ----
//! @500ms 1 timeout
//!   1 became candidate at term 1
//!   1 voted for 1 at term 1
//! ```
//!
//! A command line is a command name followed by words. Words of the form `key=value` are
//! options; the others are positional arguments (`deliver-msgs 2 3`, `add-nodes 3
//! pre-vote=false`). Output never contains a blank line: a command that prints nothing prints
//! `ok`, so every block has a non-empty expected output.
//!
//! # The environment
//!
//! `add-nodes N` builds nodes `1..=N`, all voters, each seeded with its id and with
//! `election_timeout_min == election_timeout_max`, so timing is exact. All nodes share one
//! virtual clock that starts at 0ms and only moves when a command says so; nothing happens
//! behind the script's back: messages move only on `deliver-msgs`/`drop-msgs`/`stabilize`,
//! writes are persisted only on `process-writes`/`ack-writes`/`stabilize`. Each node has an
//! in-memory disk (hard state and log) that `restart` rebuilds it from.
//!
//! # Commands
//!
//! | command | what it does |
//! |---|---|
//! | `add-nodes N [pre-vote=B] [check-quorum=B] [election-ms=MS] [heartbeat-ms=MS] [max-inflight-msgs=N] [max-append-bytes=N]` | build the cluster |
//! | `elapse MS [ID...]` | advance the clock, firing the (given) nodes' timeouts at their deadlines |
//! | `campaign ID` | jump to a non-leader's election deadline and fire only it |
//! | `tick-heartbeat ID` | jump to a leader's next deadline and fire only it |
//! | `propose ID DATA...` | propose one command per word |
//! | `read ID CTX [serializable]` | ask node ID for a read; answers print when outputs drain |
//! | `transfer-leader ID TO` | ask leader ID to hand leadership to TO |
//! | `add-node` | add node N+1 with an empty disk and no known voters (a joining node) |
//! | `change-membership ID voters=A,B [learners=C]` | ask leader ID for a membership change |
//! | `process-writes [ID...]` | print, store and acknowledge each write |
//! | `process-writes-noack [ID...]` | print writes but leave them pending |
//! | `ack-writes ID [upto=W]` | store and acknowledge pending writes |
//! | `apply [ID...]` | hand out committed entries |
//! | `deliver-msgs [ID...] [from=ID]` | send what nodes have ready, deliver to the given receivers |
//! | `drop-msgs [from=ID] [to=ID]` | send what nodes have ready, drop the matching messages |
//! | `partition 1 2 / 3`, `heal` | drop messages across groups when delivered / stop doing so |
//! | `stabilize` | writes, applies and deliveries in rounds until nothing happens |
//! | `raft-state [ID...]`, `raft-log ID`, `raft-progress ID` | inspect nodes |
//! | `restart ID` | rebuild a node from its disk, losing unacknowledged writes and unsent messages |
//! | `set-log ID TERM... [term=T] [vote=V]` | replace a node's disk with a crafted log (`3x50`: fifty entries of term 3) and restart it |
//! | `stats` | messages delivered and dropped since the last `stats` |
//!
//! Each handler function carries `// Example:` lines. After every input the interpreter prints
//! what visibly changed on the node (role, term, vote, leader, commit index), indented under the
//! line that caused it.
//!
//! # Running
//!
//! `cargo test -p shale-core --test interaction` runs every transcript; on the first block of a
//! file whose output differs, the test prints the file, the line of the command and a diff, and
//! fails. `SHALE_REWRITE=1 cargo test -p shale-core --test interaction` instead writes the actual
//! output into the files; review the diff before committing it.

mod args;
mod cmd_network;
mod cmd_nodes;
mod cmd_storage;
mod cmd_time;
pub mod diff;
mod env;
mod show;

pub use env::Env;

use args::Args;

/// One command block of a transcript
#[derive(Debug)]
pub struct Block {
    /// 1-based line number of the command line
    pub line: usize,
    /// The command line as written
    pub command: String,
    /// The expected output lines
    pub expected: Vec<String>,
    /// Index (0-based) of the first expected-output line in the file's lines
    out_start: usize,
    /// Index (0-based) one past the last expected-output line
    out_end: usize,
}

/// A parsed transcript: the file's lines and the blocks found in them
#[derive(Debug)]
pub struct Script {
    /// Every line of the file, without line terminators
    lines: Vec<String>,
    /// The command blocks, in file order
    pub blocks: Vec<Block>,
}

impl Script {
    /// Parses a transcript; fails with the line number of a malformed block
    pub fn parse(text: &str) -> Result<Script, String> {
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let mut blocks = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i].trim_end();
            if line.is_empty() || line.starts_with('#') {
                i += 1;
                continue;
            }
            if line == "----" {
                return Err(format!("line {}: `----` without a command", i + 1));
            }
            if lines.get(i + 1).map(|l| l.trim_end()) != Some("----") {
                return Err(format!(
                    "line {}: command `{line}` must be followed by a `----` line",
                    i + 1
                ));
            }
            let out_start = i + 2;
            let mut out_end = out_start;
            while out_end < lines.len() && !lines[out_end].trim().is_empty() {
                out_end += 1;
            }
            blocks.push(Block {
                line: i + 1,
                command: line.to_owned(),
                expected: lines[out_start..out_end].to_vec(),
                out_start,
                out_end,
            });
            i = out_end;
        }
        Ok(Script { lines, blocks })
    }

    /// The file's text with each block's expected output replaced by `actual[k]`
    pub fn rewritten(&self, actual: &[Vec<String>]) -> String {
        let mut out = String::new();
        let mut next = 0;
        for (block, lines) in self.blocks.iter().zip(actual) {
            for l in &self.lines[next..block.out_start] {
                out.push_str(l);
                out.push('\n');
            }
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
            next = block.out_end;
        }
        for l in &self.lines[next..] {
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

/// Runs one command line against `env` and returns its output lines (never empty)
///
/// A malformed command (unknown name, bad argument) is an `Err`: the script is wrong, not the
/// node. Failures of the node's own API (a refused proposal, say) are printed as output.
pub fn handle(env: &mut Env, command: &str) -> Result<Vec<String>, String> {
    let args = Args::parse(command)?;
    let mut out = Vec::new();
    match args.name.as_str() {
        "add-nodes" => cmd_nodes::add_nodes(env, &args, &mut out)?,
        "restart" => cmd_nodes::restart(env, &args, &mut out)?,
        "set-log" => cmd_nodes::set_log(env, &args, &mut out)?,
        "raft-state" => cmd_nodes::raft_state(env, &args, &mut out)?,
        "raft-log" => cmd_nodes::raft_log(env, &args, &mut out)?,
        "raft-progress" => cmd_nodes::raft_progress(env, &args, &mut out)?,
        "propose" => cmd_nodes::propose(env, &args, &mut out)?,
        "read" => cmd_nodes::read(env, &args, &mut out)?,
        "transfer-leader" => cmd_nodes::transfer_leader(env, &args, &mut out)?,
        "add-node" => cmd_nodes::add_node(env, &args, &mut out)?,
        "change-membership" => cmd_nodes::change_membership(env, &args, &mut out)?,
        "elapse" => cmd_time::elapse(env, &args, &mut out)?,
        "campaign" => cmd_time::campaign(env, &args, &mut out)?,
        "tick-heartbeat" => cmd_time::tick_heartbeat(env, &args, &mut out)?,
        "process-writes" => cmd_storage::process_writes(env, &args, &mut out)?,
        "process-writes-noack" => cmd_storage::process_writes_noack(env, &args, &mut out)?,
        "ack-writes" => cmd_storage::ack_writes(env, &args, &mut out)?,
        "apply" => cmd_storage::apply(env, &args, &mut out)?,
        "deliver-msgs" => cmd_network::deliver_msgs(env, &args, &mut out)?,
        "drop-msgs" => cmd_network::drop_msgs(env, &args, &mut out)?,
        "partition" => cmd_network::partition(env, &args, &mut out)?,
        "heal" => cmd_network::heal(env, &args, &mut out)?,
        "stats" => cmd_network::stats(env, &args, &mut out)?,
        "stabilize" => cmd_network::stabilize(env, &args, &mut out)?,
        other => return Err(format!("unknown command `{other}`")),
    }
    if out.is_empty() {
        out.push("ok".to_owned());
    }
    if let Some(l) = out.iter().find(|l| l.trim().is_empty()) {
        return Err(format!("internal: output contains a blank line ({l:?})"));
    }
    Ok(out)
}
