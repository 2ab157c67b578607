//! Commands that build, rebuild and inspect nodes, and propose commands

use shale_core::raft::{
    Config, Entry, EntryKind, HardState, NodeId, Payload, ReadConsistency, ReplicationState,
};
use shale_core::time::Duration;

use super::args::Args;
use super::env::{Disk, Env};
use super::show;

/// Creates nodes `1..=N`, all voters, with fixed (jitter-free) election timeouts
pub fn add_nodes(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: add-nodes 3 pre-vote=false check-quorum=false election-ms=500 heartbeat-ms=50
    args.allow_options(&[
        "pre-vote",
        "check-quorum",
        "election-ms",
        "heartbeat-ms",
        "max-inflight-msgs",
        "max-append-bytes",
        "lease",
    ])?;
    if !env.nodes.is_empty() {
        return Err("add-nodes: the cluster already has nodes".to_owned());
    }
    let n: NodeId = match args.positional.as_slice() {
        [n] => n.parse().map_err(|_| "add-nodes: bad node count")?,
        _ => return Err("add-nodes: expected a node count".to_owned()),
    };
    env.voters = (1..=n).collect();
    for id in 1..=n {
        let mut config = Config::new(id, id);
        if let Some(v) = args.option("pre-vote")? {
            config.pre_vote = v;
        }
        if let Some(v) = args.option("check-quorum")? {
            config.check_quorum = v;
        }
        if let Some(ms) = args.option("election-ms")? {
            config.election_timeout_min = Duration::from_millis(ms);
        }
        config.election_timeout_max = config.election_timeout_min;
        if let Some(ms) = args.option("heartbeat-ms")? {
            config.heartbeat_interval = Duration::from_millis(ms);
        }
        if let Some(v) = args.option("max-inflight-msgs")? {
            config.max_inflight_msgs = v;
        }
        if let Some(v) = args.option("max-append-bytes")? {
            config.max_append_bytes = v;
        }
        if let Some(v) = args.option("lease")? {
            config.lease_reads = v;
        }
        env.boot(id, config, Disk::default())?;
    }
    let c = &env.slot(1)?.config;
    let lease = if c.lease_reads { " lease-reads" } else { "" };
    out.push(format!(
        "{n} nodes: pre-vote={} check-quorum={}{lease} election={}ms heartbeat={}ms",
        c.pre_vote,
        c.check_quorum,
        c.election_timeout_min.as_millis(),
        c.heartbeat_interval.as_millis()
    ));
    raft_state(env, &Args::parse("raft-state")?, out)
}

/// Rebuilds a node from its disk (hard state and log), losing everything else
pub fn restart(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: restart 2
    args.allow_options(&[])?;
    let id = args.one_id()?;
    let slot = env.slot(id)?;
    let (config, disk) = (slot.config.clone(), slot.disk.clone());
    let lost = slot.pending.len();
    if lost > 0 {
        out.push(format!("{id} loses {lost} unacknowledged write(s)"));
    }
    out.push(format!(
        "{id} restarts from disk: {} log={}",
        show::hard_state(&disk.hard_state),
        show::entry_ids(&disk.entries)
    ));
    env.boot(id, config, disk)?;
    raft_state(env, &Args::parse(&format!("raft-state {id}"))?, out)
}

/// Replaces a node's disk with a crafted log and restarts it from there
///
/// Terms are listed one per entry from index 1; `TxN` stands for `N` entries of term `T`.
/// The hard state's term defaults to the larger of the stored term and the last entry's term;
/// the vote is kept when the term does not change.
pub fn set_log(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: set-log 3 1 2x50 term=2 vote=3
    args.allow_options(&["term", "vote"])?;
    let (id, words) = args.id_and_rest()?;
    let mut entries = Vec::new();
    for w in words {
        let (term, count) = match w.split_once('x') {
            Some((t, n)) => (t.parse(), n.parse()),
            None => (w.parse(), Ok(1)),
        };
        let (Ok(term), Ok(count)) = (term, count) else {
            return Err(format!("set-log: bad term `{w}`"));
        };
        for _ in 0..count {
            entries.push(Entry {
                term,
                index: entries.len() as u64 + 1,
                kind: EntryKind::Command,
                data: Payload::default(),
            });
        }
    }
    let slot = env.slot(id)?;
    let old = slot.disk.hard_state;
    let last_term = entries.last().map_or(0, |e| e.term);
    let term = args.option("term")?.unwrap_or(old.term.max(last_term));
    let vote = match args.option::<NodeId>("vote")? {
        Some(v) => Some(v),
        None if term == old.term => old.vote,
        None => None,
    };
    let config = slot.config.clone();
    let disk = Disk {
        hard_state: HardState { term, vote },
        entries,
    };
    env.boot(id, config, disk)?;
    raft_state(env, &Args::parse(&format!("raft-state {id}"))?, out)
}

/// Prints role, term, vote, leader, last log id, commit, applied and durable index per node
pub fn raft_state(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: raft-state        (every node)
    // Example: raft-state 1 3
    args.allow_options(&[])?;
    for id in env.ids_or_all(args.node_ids()?)? {
        let raft = &env.slot(id)?.raft;
        out.push(show::state_line(raft, raft.unpersisted_writes()));
    }
    Ok(())
}

/// Prints a node's in-memory log, one entry per line (long runs folded)
pub fn raft_log(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: raft-log 3
    args.allow_options(&[])?;
    let raft = &env.slot(args.one_id()?)?.raft;
    out.extend(show::log(raft.entries(1, raft.last_index())));
    Ok(())
}

/// Prints what a leader knows of each follower
pub fn raft_progress(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: raft-progress 1
    args.allow_options(&[])?;
    let id = args.one_id()?;
    let raft = &env.slot(id)?.raft;
    for peer in env.ids() {
        let Some(p) = raft.progress(peer) else {
            continue;
        };
        let state = match p.state {
            ReplicationState::Probe { paused: false } => "probe",
            ReplicationState::Probe { paused: true } => "probe(paused)",
            ReplicationState::Replicate => "replicate",
            ReplicationState::Snapshot { .. } => "snapshot",
        };
        out.push(format!(
            "{peer}: {state} match={} next={} sent-commit={} active={}",
            p.match_index, p.next_index, p.sent_commit, p.recent_active
        ));
    }
    if out.is_empty() {
        out.push(format!("{id} is not a leader: no progress"));
    }
    Ok(())
}

/// Proposes one command per word on a node, printing the log id each got (or the refusal)
pub fn propose(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: propose 1 a b c      (three commands "a", "b", "c")
    args.allow_options(&[])?;
    let (id, words) = args.id_and_rest()?;
    if words.is_empty() {
        return Err("propose: expected data".to_owned());
    }
    for w in words {
        let result = env.input(id, out, |raft, now| raft.propose(now, w.as_bytes()))?;
        match result {
            Ok(log_id) => out.push(format!("{id} proposed {log_id} {w:?}")),
            Err(e) => out.push(format!("{id} refused {w:?}: {e}")),
        }
    }
    Ok(())
}

/// Asks node `ID` for a read with context `CTX` (linearizable unless `serializable` follows);
/// the answer shows up when the node's outputs are next drained (`apply`, `stabilize`)
pub fn read(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: read 1 7
    // Example: read 2 8 serializable
    args.allow_options(&[])?;
    let (id, words) = args.id_and_rest()?;
    let (ctx, consistency) = match words {
        [ctx] => (ctx, ReadConsistency::Linearizable),
        [ctx, mode] if mode.as_str() == "serializable" => (ctx, ReadConsistency::Serializable),
        _ => return Err("read: expected ID CTX [serializable]".to_owned()),
    };
    let ctx: u64 = ctx.parse().map_err(|_| "read: CTX must be a number")?;
    match env.input(id, out, |raft, now| raft.read(now, ctx, consistency))? {
        Ok(()) => out.push(format!("{id} read {ctx} asked")),
        Err(e) => out.push(format!("{id} read {ctx} refused: {e}")),
    }
    Ok(())
}

/// Asks leader `ID` to hand leadership to `TO`
pub fn transfer_leader(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: transfer-leader 1 3
    args.allow_options(&[])?;
    let (id, words) = args.id_and_rest()?;
    let to: NodeId = match words {
        [to] => to
            .parse()
            .map_err(|_| "transfer-leader: TO must be a node id")?,
        _ => return Err("transfer-leader: expected ID TO".to_owned()),
    };
    match env.input(id, out, |raft, now| raft.transfer_leader(now, to))? {
        Ok(()) => out.push(format!("{id} transferring leadership to {to}")),
        Err(e) => out.push(format!("{id} refused the transfer: {e}")),
    }
    Ok(())
}

/// Adds node `N + 1` as a brand-new node joining the group: empty disk, no known voters, so it
/// learns the membership from the leader
pub fn add_node(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: add-node
    args.allow_options(&[])?;
    if !args.positional.is_empty() {
        return Err("add-node: takes no arguments".to_owned());
    }
    let id = env.nodes.len() as NodeId + 1;
    let mut config = env.slot(1)?.config.clone();
    config.id = id;
    config.seed = id;
    env.boot(id, config, Disk::default())?;
    if let Some(groups) = env.groups.as_mut() {
        groups.push(usize::MAX); // a new node starts cut off from every partition group
    }
    out.push(format!("{id} joins with an empty disk, knowing no voters"));
    Ok(())
}

/// Asks leader `ID` to change the membership to `voters=A,B,C` and `learners=D,E`
pub fn change_membership(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: change-membership 1 voters=1,2,4 learners=5
    args.allow_options(&["voters", "learners"])?;
    let id = args.one_id()?;
    let list = |key: &str| -> Result<Vec<NodeId>, String> {
        let raw: Option<String> = args.option(key)?;
        raw.unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .map_err(|_| format!("change-membership: bad id {s:?} in {key}"))
            })
            .collect()
    };
    let (voters, learners) = (list("voters")?, list("learners")?);
    match env.input(id, out, |raft, now| {
        raft.change_membership(now, &voters, &learners)
    })? {
        Ok(log_id) => out.push(format!("{id} proposed membership change at {log_id}")),
        Err(e) => out.push(format!("{id} refused the membership change: {e}")),
    }
    Ok(())
}
