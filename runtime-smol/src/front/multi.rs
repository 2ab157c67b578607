//! Transactions: `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH`
//!
//! After `MULTI` each key command is checked and queued (`+QUEUED`), not run. As in Redis, a
//! command of the wrong arity (or one not served) is answered with its error and makes `EXEC`
//! fail with `-EXECABORT`; any other error (a bad number, a bad range) is queued and shows in
//! `EXEC`'s reply in its place.
//! `EXEC` sends every queued command to the key's group as **one operation**, logged in one
//! Raft entry and applied at once: no other client's command comes between them, on any
//! replica, and the whole transaction is linearizable. Each command answers on its own; an
//! error in one (`WRONGTYPE`, say) does not undo the others, again as in Redis. Every key of
//! a transaction must be in one shard (keys of one slot always are; use `{hash tags}`), else
//! `EXEC` answers `-CROSSSLOT` and nothing runs.
//!
//! `WATCH key...` reads a fingerprint of each key's value (a hash of its stored bytes, expiry
//! included); `EXEC` runs only if every watched key still has that fingerprint when the
//! transaction is applied, and answers nil otherwise. Unlike Redis, a key changed and then
//! changed back to the same bytes does not abort the transaction (the value is the same).
//! Watched keys must be in the transaction's shard. Commands other than key commands
//! (`PING`, `INFO`, ...) are refused inside a transaction.

use shale_core::shard::{KvOp, KvResult, key_shard};

use super::commands::{kv_error, run, wrong_args};
use super::plan::{self, Planned, Shape};
use super::{Conn, FrontConfig};
use crate::node::NodeClient;
use crate::resp::Reply;

/// A queued command: its plan, or the error it answers when `EXEC` runs (Redis checks only
/// a command's name and arity when it is queued; any other error shows in `EXEC`'s reply)
#[derive(Debug)]
enum Queued {
    Run(Planned),
    Fails(Reply),
}

/// A transaction being queued on a connection
#[derive(Debug, Default)]
pub(crate) struct Transaction {
    queued: Vec<Queued>,
    /// A queued command was refused: `EXEC` answers `-EXECABORT`
    failed: bool,
}

/// Handles `name` if it is a transaction command, or if a transaction is being queued;
/// `None` otherwise (the command runs as usual)
pub(crate) async fn intercept(
    node: &NodeClient,
    config: &FrontConfig,
    conn: &mut Conn,
    name: &str,
    args: &[Vec<u8>],
) -> Option<Reply> {
    let argc = args.len();
    match name {
        "MULTI" if argc == 1 => Some(if conn.multi.is_some() {
            Reply::error("ERR MULTI calls can not be nested")
        } else {
            conn.multi = Some(Transaction::default());
            Reply::ok()
        }),
        "DISCARD" if argc == 1 => Some(match conn.multi.take() {
            Some(_) => {
                conn.watched.clear();
                Reply::ok()
            }
            None => Reply::error("ERR DISCARD without MULTI"),
        }),
        "EXEC" if argc == 1 => Some(match conn.multi.take() {
            None => Reply::error("ERR EXEC without MULTI"),
            Some(t) => {
                let watched = std::mem::take(&mut conn.watched);
                exec(node, config, conn, t, watched).await
            }
        }),
        "WATCH" if argc >= 2 => Some(if conn.multi.is_some() {
            Reply::error("ERR WATCH inside MULTI is not allowed")
        } else {
            watch(node, conn, &args[1..]).await
        }),
        "UNWATCH" if argc == 1 => Some({
            conn.watched.clear();
            Reply::ok()
        }),
        "MULTI" | "DISCARD" | "EXEC" | "WATCH" | "UNWATCH" => Some(wrong_args(name)),
        _ => {
            let t = conn.multi.as_mut()?;
            Some(match plan::plan(name, args, true) {
                Some(Ok(p)) => {
                    t.queued.push(Queued::Run(p));
                    Reply::Simple("QUEUED".into())
                }
                Some(Err(reply)) if !is_arity_error(&reply) => {
                    t.queued.push(Queued::Fails(reply));
                    Reply::Simple("QUEUED".into())
                }
                Some(Err(reply)) => {
                    t.failed = true;
                    reply
                }
                None => {
                    t.failed = true;
                    Reply::error(format!(
                        "ERR '{}' is not allowed in a transaction here (key commands only)",
                        name.to_ascii_lowercase()
                    ))
                }
            })
        }
    }
}

/// Whether a command was refused for its number of arguments (which aborts a transaction)
fn is_arity_error(reply: &Reply) -> bool {
    matches!(reply, Reply::Error(e) if e.contains("wrong number of arguments"))
}

async fn watch(node: &NodeClient, conn: &mut Conn, keys: &[Vec<u8>]) -> Reply {
    for key in keys {
        match run(node, conn, KvOp::Watch { key: key.clone() }).await {
            Ok(KvResult::Fingerprint(f)) => conn.watched.push((key.clone(), f)),
            Ok(other) => return Reply::error(format!("ERR internal: unexpected result {other:?}")),
            Err(reply) => return reply,
        }
    }
    Reply::ok()
}

async fn exec(
    node: &NodeClient,
    config: &FrontConfig,
    conn: &mut Conn,
    t: Transaction,
    watched: Vec<(Vec<u8>, Option<u64>)>,
) -> Reply {
    if t.failed {
        return Reply::error("EXECABORT Transaction discarded because of previous errors.");
    }
    if t.queued.is_empty() {
        return Reply::Array(Some(Vec::new()));
    }
    let mut ops = Vec::new();
    let mut shapes: Vec<Result<Shape, Reply>> = Vec::new();
    for q in t.queued {
        match q {
            Queued::Run(p) => {
                ops.push(p.op);
                shapes.push(Ok(p.shape));
            }
            Queued::Fails(reply) => shapes.push(Err(reply)),
        }
    }
    if ops.is_empty() && watched.is_empty() {
        // Nothing to run: every command answers the error it was queued with.
        return Reply::Array(Some(shapes.into_iter().filter_map(Result::err).collect()));
    }
    let op = KvOp::Multi { ops, watched };
    let shards: Vec<u32> = op
        .keys()
        .into_iter()
        .map(|k| key_shard(k, config.shard_count))
        .collect();
    if shards.windows(2).any(|w| w[0] != w[1]) {
        return Reply::error("CROSSSLOT Keys in request don't hash to the same slot");
    }
    match run(node, conn, op).await {
        Ok(KvResult::Many(None)) => Reply::Array(None),
        Ok(KvResult::Many(Some(results))) => {
            let mut results = results.into_iter();
            Reply::Array(Some(
                shapes
                    .into_iter()
                    .map(|shape| match shape {
                        Ok(shape) => match results.next() {
                            Some(r) => plan::shape(r.map_err(kv_error), &shape),
                            None => Reply::error("ERR internal: a result is missing"),
                        },
                        Err(reply) => reply,
                    })
                    .collect(),
            ))
        }
        Ok(other) => Reply::error(format!("ERR internal: unexpected result {other:?}")),
        Err(reply) => reply,
    }
}
