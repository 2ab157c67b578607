//! Commands of the network: delivering, dropping, partitioning, and running until quiet

use shale_core::raft::NodeId;

use super::args::Args;
use super::env::Env;
use super::show;

/// Rounds `stabilize` runs before it gives up on a cluster that never goes quiet
const MAX_ROUNDS: usize = 1_000;

/// Sends every ready message onto the network, then delivers those queued for the given
/// receivers (every node when none) and, with `from=`, from that sender only, in send order;
/// across a partition they are dropped. The others stay queued.
pub fn deliver_msgs(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: deliver-msgs             (to every node)
    // Example: deliver-msgs 2 3         (only messages addressed to 2 or 3)
    // Example: deliver-msgs 3 from=1    (only messages from 1 to 3)
    args.allow_options(&["from"])?;
    let receivers = env.ids_or_all(args.node_ids()?)?;
    let from: Option<NodeId> = args.option("from")?;
    env.collect_messages();
    let (now, later) = std::mem::take(&mut env.network)
        .into_iter()
        .partition(|m| receivers.contains(&m.to) && from.is_none_or(|f| m.from == f));
    env.network = later;
    deliver_all(env, now, out)?;
    if out.is_empty() {
        out.push("(no messages)".to_owned());
    }
    Ok(())
}

/// Delivers `msgs` in order; returns how many there were
fn deliver_all(
    env: &mut Env,
    msgs: Vec<shale_core::raft::Outgoing>,
    out: &mut Vec<String>,
) -> Result<usize, String> {
    let count = msgs.len();
    for m in msgs {
        env.deliver(m, out)?;
    }
    Ok(count)
}

/// Sends every ready message onto the network, then drops the queued ones matching
/// `from=` and `to=` (every queued message when neither is given)
pub fn drop_msgs(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: drop-msgs from=1 to=3
    args.allow_options(&["from", "to"])?;
    if !args.positional.is_empty() {
        return Err("drop-msgs: takes only from= and to=".to_owned());
    }
    let from: Option<NodeId> = args.option("from")?;
    let to: Option<NodeId> = args.option("to")?;
    env.collect_messages();
    let (dropped, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut env.network)
        .into_iter()
        .partition(|m| from.is_none_or(|f| m.from == f) && to.is_none_or(|t| m.to == t));
    env.network = kept;
    env.dropped += dropped.len();
    for m in dropped {
        out.push(format!(
            "{}->{} {} (dropped)",
            m.from,
            m.to,
            show::message(&m.message)
        ));
    }
    if out.is_empty() {
        out.push("(no messages)".to_owned());
    }
    Ok(())
}

/// Cuts the network into groups separated by `/`; a node not listed is alone in its group.
/// Messages across groups are dropped when delivered.
pub fn partition(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: partition 1 2 / 3
    args.allow_options(&[])?;
    let n = env.nodes.len();
    let mut groups = vec![usize::MAX; n];
    let mut group = 0;
    for w in &args.positional {
        if w == "/" {
            group += 1;
            continue;
        }
        let id: NodeId = w.parse().map_err(|_| format!("partition: bad id `{w}`"))?;
        env.slot(id)?;
        groups[(id - 1) as usize] = group;
    }
    for g in groups.iter_mut().filter(|g| **g == usize::MAX) {
        group += 1;
        *g = group;
    }
    let mut names = Vec::new();
    for g in 0..=group {
        let members: Vec<String> = (0..n)
            .filter(|&k| groups[k] == g)
            .map(|k| (k + 1).to_string())
            .collect();
        if !members.is_empty() {
            names.push(format!("{{{}}}", members.join(" ")));
        }
    }
    out.push(format!("partitioned: {}", names.join(" ")));
    env.groups = Some(groups);
    Ok(())
}

/// Removes the partition
pub fn heal(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: heal
    args.allow_options(&[])?;
    env.groups = None;
    out.push("healed".to_owned());
    Ok(())
}

/// Prints the messages delivered and dropped since the last `stats`, and resets the counts
pub fn stats(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: stats
    args.allow_options(&[])?;
    out.push(format!(
        "delivered={} dropped={}",
        env.delivered, env.dropped
    ));
    env.delivered = 0;
    env.dropped = 0;
    Ok(())
}

/// Repeats rounds until nothing happens: every node's writes are stored and acknowledged and
/// its committed entries applied (in id order), then every queued message is delivered
pub fn stabilize(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: stabilize
    args.allow_options(&[])?;
    if !args.positional.is_empty() {
        return Err("stabilize: takes no arguments".to_owned());
    }
    for _ in 0..MAX_ROUNDS {
        let mut activity = 0;
        for id in env.ids() {
            activity += env.writes(id, true, out)?;
            activity += env.apply(id, out)?;
        }
        env.collect_messages();
        let msgs = std::mem::take(&mut env.network);
        activity += deliver_all(env, msgs, out)?;
        if activity == 0 {
            return Ok(());
        }
    }
    Err(format!("stabilize: still busy after {MAX_ROUNDS} rounds"))
}
