//! Commands of the storage side: writes, acknowledgements and applying committed entries

use super::args::Args;
use super::env::Env;

/// Polls each node's writes, stores each in the node's in-memory disk and reports it
/// persisted at once (a synchronous disk); writes left pending earlier are acknowledged first
pub fn process_writes(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: process-writes        (every node)
    // Example: process-writes 2 3
    args.allow_options(&[])?;
    for id in env.ids_or_all(args.node_ids()?)? {
        env.writes(id, true, out)?;
    }
    Ok(())
}

/// Polls each node's writes but leaves them pending: not stored, not reported persisted
pub fn process_writes_noack(
    env: &mut Env,
    args: &Args,
    out: &mut Vec<String>,
) -> Result<(), String> {
    // Example: process-writes-noack 1
    args.allow_options(&[])?;
    for id in env.ids_or_all(args.node_ids()?)? {
        env.writes(id, false, out)?;
    }
    Ok(())
}

/// Stores a node's pending writes (all, or up to write `upto=N`) and reports them persisted
pub fn ack_writes(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: ack-writes 1
    // Example: ack-writes 1 upto=2
    args.allow_options(&["upto"])?;
    let id = args.one_id()?;
    let upto = args.option("upto")?;
    env.ack(id, upto, out)
}

/// Hands out each node's committed (and locally durable) entries to its state machine
pub fn apply(env: &mut Env, args: &Args, out: &mut Vec<String>) -> Result<(), String> {
    // Example: apply        (every node)
    // Example: apply 2
    args.allow_options(&[])?;
    for id in env.ids_or_all(args.node_ids()?)? {
        env.apply(id, out)?;
    }
    Ok(())
}
