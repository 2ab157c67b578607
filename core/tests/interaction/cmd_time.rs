//! Commands that move the shared virtual clock and fire timeouts

use shale_core::raft::{NodeId, Role};
use shale_core::time::{Duration, Instant};

use super::args::Args;
use super::env::Env;
use super::show;

/// Safety net against a node whose deadline would not move when its timeout fires
const MAX_FIRINGS: usize = 100_000;

/// One fired timeout: when, on which node, and the state changes it caused
struct Firing {
    /// The time it fired at
    at: Instant,
    /// The node
    id: NodeId,
    /// The printed state changes (empty when nothing visible changed)
    changes: Vec<String>,
}

/// Advances the clock by `MS` milliseconds, firing the timeouts of the given nodes (every node
/// when none is given) that fall due on the way, each at its own deadline (nodes due at the
/// same instant fire in id order). No message moves meanwhile.
///
/// Naming nodes is how a script keeps the others' timers from firing while it lets time pass
/// (etcd raft's tests tick nodes one by one for the same reason); the nodes left out that are
/// overdue at the end are listed.
///
/// Consecutive firings of one node that change nothing visible (a leader's heartbeats) are
/// folded into one line with a count.
pub fn elapse(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: elapse 500        (every node's timers fire)
    // Example: elapse 1000 1     (only node 1's timers fire)
    args.allow_options(&[])?;
    let (ms, ids) = match args.positional.split_first() {
        Some((ms, ids)) => (ms.parse().map_err(|_| "elapse: bad milliseconds")?, ids),
        None => return Err("elapse: expected milliseconds".to_owned()),
    };
    let mut ids = ids
        .iter()
        .map(|w| w.parse().map_err(|_| format!("elapse: bad node id `{w}`")))
        .collect::<Result<Vec<NodeId>, String>>()?;
    ids = env.ids_or_all(ids)?;
    let target = env.now + Duration::from_millis(ms);
    let mut firings = Vec::new();
    loop {
        let mut next: Option<Instant> = None;
        for &id in &ids {
            if let Some(t) = env.slot(id)?.raft.poll_timeout() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        let Some(next) = next.filter(|&t| t <= target) else {
            break;
        };
        env.now = env.now.max(next);
        for &id in &ids {
            if env
                .slot(id)?
                .raft
                .poll_timeout()
                .is_some_and(|t| t <= env.now)
            {
                let mut changes = Vec::new();
                fire(env, id, &mut changes)?;
                firings.push(Firing {
                    at: env.now,
                    id,
                    changes,
                });
            }
        }
        if firings.len() > MAX_FIRINGS {
            return Err("elapse: timeouts keep firing without time passing".to_owned());
        }
    }
    env.now = target;
    print_firings(&firings, out);
    out.push(format!("now={}", show::time(env.now)));
    print_overdue(env, &ids, out)
}

/// Lists the nodes outside `fired` whose timeout is due but did not fire
fn print_overdue(env: &Env, fired: &[NodeId], out: &mut Vec<String>) -> Result<(), String> {
    let mut due = Vec::new();
    for id in env.ids() {
        if !fired.contains(&id)
            && env
                .slot(id)?
                .raft
                .poll_timeout()
                .is_some_and(|t| t <= env.now)
        {
            due.push(id.to_string());
        }
    }
    if !due.is_empty() {
        out.push(format!("(also due, not fired: {})", due.join(" ")));
    }
    Ok(())
}

/// Prints firings, folding runs of one node's no-change firings
fn print_firings(firings: &[Firing], out: &mut Vec<String>) {
    let mut i = 0;
    while i < firings.len() {
        let f = &firings[i];
        let mut j = i + 1;
        if f.changes.is_empty() {
            while j < firings.len() && firings[j].id == f.id && firings[j].changes.is_empty() {
                j += 1;
            }
        }
        if j - i == 1 {
            out.push(format!("@{} {} timeout", show::time(f.at), f.id));
            out.extend(f.changes.iter().cloned());
        } else {
            out.push(format!(
                "@{}..{} {} timeout x{}",
                show::time(f.at),
                show::time(firings[j - 1].at),
                f.id,
                j - i
            ));
        }
        i = j;
    }
}

/// Calls `handle_timeout` on one node at the current time
fn fire(env: &mut Env, id: NodeId, out: &mut Vec<String>) -> Result<(), String> {
    let result = env.input(id, out, |raft, now| raft.handle_timeout(now))?;
    if result.is_err() {
        out.push(format!("  {id} is busy: timeout refused"));
    }
    Ok(())
}

/// Moves the clock to node `id`'s next deadline (if later than now) and fires only that node
fn fire_only(env: &mut Env, id: NodeId, out: &mut Vec<String>) -> Result<(), String> {
    let at = env
        .slot(id)?
        .raft
        .poll_timeout()
        .ok_or_else(|| format!("node {id} has no timeout"))?;
    env.now = env.now.max(at);
    out.push(format!("@{} {id} timeout", show::time(env.now)));
    fire(env, id, out)?;
    let mut also_due = Vec::new();
    for other in env.ids() {
        if other != id
            && env
                .slot(other)?
                .raft
                .poll_timeout()
                .is_some_and(|t| t <= env.now)
        {
            also_due.push(other.to_string());
        }
    }
    if !also_due.is_empty() {
        out.push(format!("(also due, not fired: {})", also_due.join(" ")));
    }
    Ok(())
}

/// Makes one non-leader time out: the clock jumps to its election deadline and only it fires
pub fn campaign(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: campaign 1
    args.allow_options(&[])?;
    let id = args.one_id()?;
    if env.slot(id)?.raft.role() == Role::Leader {
        return Err(format!("campaign: node {id} is the leader"));
    }
    fire_only(env, id, out)
}

/// Makes one leader's next timer fire (a heartbeat, or a check-quorum round when that comes
/// first): the clock jumps to the deadline and only that node fires
pub fn tick_heartbeat(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: tick-heartbeat 1
    args.allow_options(&[])?;
    let id = args.one_id()?;
    if env.slot(id)?.raft.role() != Role::Leader {
        return Err(format!("tick-heartbeat: node {id} is not the leader"));
    }
    fire_only(env, id, out)
}
