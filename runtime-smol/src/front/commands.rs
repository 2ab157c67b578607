//! The commands the front door understands
//!
//! Keys and values: `GET`, `SET key value [NX|XX] [GET]`, `DEL`, `EXISTS`, `APPEND`, `INCR`,
//! `INCRBY`, `DECR`, `DECRBY`, `MGET`, `MSET`, and our compare-and-swap
//! `CAS key expected new` (`:1` when the key held `expected` and now holds `new`, `:0`
//! otherwise). Every single-key command is linearizable and applied at most once, exactly
//! once when answered, even when the node retries it on another replica or after a
//! configuration change. A command whose outcome the node does not know (no quorum answered
//! in time) is answered [`UNKNOWN_OUTCOME`], never `TRYAGAIN`, which clients retry.
//!
//! **What is atomic:** each single-key command, and the part of an `MSET` or `MGET` that falls
//! in one shard: the front door groups their keys by shard and sends one operation per shard,
//! applied (or read) all at once. Across shards they run one shard after another, so another
//! client can observe some shards' keys of an `MSET` written and others not yet (Redis would
//! make the whole command atomic); `{hash tags}` put keys in one shard when that matters.
//! `DEL` and `EXISTS` with several keys run key by key. Expiry (`SET ... EX`, `EXPIRE`, `TTL`,
//! ...) and the other string commands are in [`super::strings`].
//!
//! Connection and server: `PING`, `ECHO`, `HELLO [2|3] [AUTH user pass] [SETNAME name]`,
//! `AUTH [user] pass`, `SELECT 0`, `QUIT`, `CLIENT SETNAME|GETNAME|ID|SETINFO|INFO`,
//! `COMMAND` (see [`super::command`]), `INFO [section]`, `DBSIZE` (keys of the
//! groups this node hosts, as applied here, so it may lag), `CONFIG GET` (the few settings
//! `redis-benchmark` asks for), `CLUSTER KEYSLOT|MYID|SLOTS|SHARDS|NODES|INFO` (see
//! [`super::cluster`]), `READONLY`, `READWRITE`, `ASKING` (see the front door's docs on
//! cluster-aware connections and `-MOVED`). Anything else gets `-ERR unknown command`.

use std::collections::BTreeMap;

use shale_core::shard::{KvError, KvOp, KvResult, key_shard};
use shale_runtime_std::node::NodeError;

use super::info::{self, Section};
use super::plan;
use super::{Conn, FrontConfig};
use crate::node::NodeClient;
use crate::resp::{Protocol, Reply};

pub(crate) fn wrong_args(name: &str) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    ))
}

pub(crate) fn syntax_error() -> Reply {
    Reply::error("ERR syntax error")
}

pub(crate) fn not_integer() -> Reply {
    Reply::error("ERR value is not an integer or out of range")
}

/// The error code of a reply whose command may or may not have been applied
///
/// Clients retry `TRYAGAIN` by itself (it means "not executed"), and a retry is a new command
/// that would apply a second time, so an unknown outcome has a code of its own that no client
/// retries; the application reads the state before it tries again.
pub(crate) const UNKNOWN_OUTCOME: &str = "UNKNOWN";

/// The reply to a command the node could not complete: `TRYAGAIN` only where it surely did
/// not execute, [`UNKNOWN_OUTCOME`] where it may have
pub(crate) fn node_error(e: &NodeError) -> Reply {
    use shale_core::node::SessionError;
    let executed_maybe = match e {
        NodeError::Session(SessionError::Busy | SessionError::Unknown) => false,
        NodeError::Session(SessionError::TimedOut)
        | NodeError::Timeout
        | NodeError::Stopped
        | NodeError::Fatal(_)
        | NodeError::Boot(_)
        | NodeError::Listen(..)
        | NodeError::Io(_) => true,
    };
    if executed_maybe {
        Reply::error(format!(
            "{UNKNOWN_OUTCOME} outcome unknown, the command may or may not have been applied \
             ({e}); read before retrying"
        ))
    } else {
        Reply::error(format!("TRYAGAIN {e}"))
    }
}

pub(crate) fn kv_error(e: KvError) -> Reply {
    match e {
        KvError::NotAnInteger => not_integer(),
        KvError::Overflow => Reply::error("ERR increment or decrement would overflow"),
        KvError::WrongType => Reply::error(format!("WRONGTYPE {e}")),
        KvError::CrossShard => {
            Reply::error("CROSSSLOT Keys in request don't hash to the same slot")
        }
        other => Reply::error(format!("ERR {other}")),
    }
}

/// A decimal signed 64-bit integer argument
pub(crate) fn parse_i64(arg: &[u8]) -> Option<i64> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// The command's name for metrics: lower case if known, `unknown` otherwise (so clients
/// cannot create series at will)
pub(crate) fn metric_name(args: &[Vec<u8>]) -> &'static str {
    args.first()
        .and_then(|first| super::command::served_name(first))
        .unwrap_or("unknown")
}

/// Runs one command and returns its reply
pub(crate) async fn execute(
    node: &NodeClient,
    config: &FrontConfig,
    conn: &mut Conn,
    args: Vec<Vec<u8>>,
) -> Reply {
    let Some(first) = args.first() else {
        return Reply::error("ERR empty command");
    };
    let name = String::from_utf8_lossy(first).to_ascii_uppercase();
    let argc = args.len();
    // Before AUTH only these are allowed, as in Redis.
    if !conn.authenticated && !matches!(name.as_str(), "AUTH" | "HELLO" | "QUIT") {
        return Reply::error("NOAUTH Authentication required.");
    }
    if let Some(moved) = redirect(config, conn, &name, &args) {
        return moved;
    }
    if let Some(reply) = super::multi::intercept(node, config, conn, &name, &args).await {
        return reply;
    }
    if let Some(planned) = plan::plan(&name, &args, false) {
        return match planned {
            Ok(p) => plan::shape(run(node, conn, p.op).await, &p.shape),
            Err(reply) => reply,
        };
    }
    if let Some(reply) = super::keyspace::execute(node, config, conn, &name, &args).await {
        return reply;
    }
    match name.as_str() {
        "PING" => match argc {
            1 => Reply::Simple("PONG".into()),
            2 => Reply::bulk(&args[1]),
            _ => wrong_args(&name),
        },
        "ECHO" if argc == 2 => Reply::bulk(&args[1]),
        "QUIT" => {
            conn.quit = true;
            Reply::ok()
        }
        "SELECT" if argc == 2 => {
            if args[1] == b"0" {
                Reply::ok()
            } else {
                Reply::error("ERR DB index is out of range")
            }
        }
        "AUTH" if argc == 2 || argc == 3 => auth(config, conn, &args[argc - 1]),
        "HELLO" => hello(config, conn, &args),
        "CLIENT" if argc >= 2 => client(conn, &args),
        "COMMAND" => super::command::execute(&args),
        "CONFIG" if argc == 3 && args[1].eq_ignore_ascii_case(b"GET") => config_get(&args[2]),
        "CLUSTER" if argc >= 2 => super::cluster::execute(config, conn, &args),
        "READONLY" | "READWRITE" | "ASKING" if argc == 1 => {
            conn.cluster_aware = true;
            match name.as_str() {
                "READONLY" => conn.readonly = true,
                "READWRITE" => conn.readonly = false,
                _ => {}
            }
            Reply::ok()
        }
        "INFO" => {
            let section = args.get(1).map_or(Section::All, |s| Section::parse(s));
            match node.status().await {
                Ok(status) => Reply::bulk(info::render(config, &status, section)),
                Err(e) => node_error(&e),
            }
        }
        "DBSIZE" if argc == 1 => match node.status().await {
            Ok(status) => Reply::Integer(status.groups.iter().map(|g| g.keys as i64).sum()),
            Err(e) => node_error(&e),
        },
        "DEL" | "UNLINK" if argc >= 2 => {
            let mut removed = 0;
            for key in &args[1..] {
                match run(node, conn, KvOp::Delete { key: key.clone() }).await {
                    Ok(KvResult::Deleted(true)) => removed += 1,
                    Ok(_) => {}
                    Err(reply) => return reply,
                }
            }
            Reply::Integer(removed)
        }
        "EXISTS" if argc >= 2 => {
            let mut found = 0;
            for key in &args[1..] {
                // A key of any type exists: ask its type, not its string value.
                match run(node, conn, KvOp::Type { key: key.clone() }).await {
                    Ok(KvResult::Reply(shale_core::shard::data::DataReply::Status(t)))
                        if t != b"none" =>
                    {
                        found += 1
                    }
                    Ok(_) => {}
                    Err(reply) => return reply,
                }
            }
            Reply::Integer(found)
        }
        "MGET" if argc >= 2 => {
            let mut values = vec![Reply::Bulk(None); argc - 1];
            for (_, positions) in by_shard(&args[1..], 1, config.shard_count) {
                let keys = positions.iter().map(|&i| args[1 + i].clone()).collect();
                match run(node, conn, KvOp::MultiGet { keys }).await {
                    Ok(KvResult::Values(found)) => {
                        for (&i, v) in positions.iter().zip(found) {
                            values[i] = Reply::Bulk(v);
                        }
                    }
                    other => return unexpected(other),
                }
            }
            Reply::Array(Some(values))
        }
        "MSET" if argc >= 3 && argc % 2 == 1 => {
            for (_, positions) in by_shard(&args[1..], 2, config.shard_count) {
                let pairs = positions
                    .iter()
                    .map(|&i| (args[1 + 2 * i].clone(), args[2 + 2 * i].clone()))
                    .collect();
                if let Err(reply) = run(node, conn, KvOp::MultiSet { pairs }).await {
                    return reply;
                }
            }
            Reply::ok()
        }
        "SHALE" => super::admin::execute(node, &args).await,
        "ECHO" | "SELECT" | "AUTH" | "CLIENT" | "CONFIG" | "CLUSTER" | "DBSIZE" | "MGET"
        | "MSET" => wrong_args(&name),
        _ => {
            let shown: String = String::from_utf8_lossy(first).chars().take(128).collect();
            Reply::error(format!(
                "ERR unknown command '{shown}', with args beginning with: "
            ))
        }
    }
}

/// `-MOVED slot host:port` for a cluster-aware connection whose command's (first) key is
/// in a slot this node knows another node leads; `None`: serve it here
fn redirect(config: &FrontConfig, conn: &Conn, name: &str, args: &[Vec<u8>]) -> Option<Reply> {
    if !conn.cluster_aware || args.len() < 2 || conn.multi.is_some() {
        return None;
    }
    // Any key command: what it would run says which key decides and whether it only reads.
    let planned = plan::plan(name, args, true)?.ok()?;
    if planned.op.is_read() && conn.readonly {
        return None;
    }
    let slot = shale_core::shard::key_slot(planned.op.key());
    let topology = config.topology.get();
    let range = topology.range_of(slot)?;
    let leader = *range.nodes.first().filter(|_| range.leader_known)?;
    if leader == config.node_id {
        return None;
    }
    let addr = config.cluster_clients.get(&leader)?;
    Some(Reply::error(format!("MOVED {slot} {addr}")))
}

/// The positions of the keys in `items` (a key every `stride` items) grouped by shard, in
/// shard order
fn by_shard(items: &[Vec<u8>], stride: usize, shards: u32) -> BTreeMap<u32, Vec<usize>> {
    let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, key) in items.iter().step_by(stride).enumerate() {
        groups.entry(key_shard(key, shards)).or_default().push(i);
    }
    groups
}

/// Runs `op` in the connection's session (opening one on first use, and a new one after
/// the old one expired)
pub(crate) async fn run(node: &NodeClient, conn: &mut Conn, op: KvOp) -> Result<KvResult, Reply> {
    let session = match conn.session {
        Some(s) => s,
        None => {
            let s = node.open_session().await.map_err(|e| node_error(&e))?;
            conn.session = Some(s);
            s
        }
    };
    match node.op(session, op).await {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(KvError::SessionExpired)) => {
            node.close_session(session);
            conn.session = None;
            Err(kv_error(KvError::SessionExpired))
        }
        Ok(Err(e)) => Err(kv_error(e)),
        Err(e) => Err(node_error(&e)),
    }
}

pub(crate) fn unexpected(result: Result<KvResult, Reply>) -> Reply {
    match result {
        Err(reply) => reply,
        Ok(other) => Reply::error(format!("ERR internal: unexpected result {other:?}")),
    }
}

fn auth(config: &FrontConfig, conn: &mut Conn, password: &[u8]) -> Reply {
    match &config.requirepass {
        None => Reply::error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        ),
        Some(expected) if expected.as_bytes() == password => {
            conn.authenticated = true;
            Reply::ok()
        }
        Some(_) => Reply::error("WRONGPASS invalid username-password pair or user is disabled."),
    }
}

fn hello(config: &FrontConfig, conn: &mut Conn, args: &[Vec<u8>]) -> Reply {
    let mut rest = args[1..].iter();
    let mut protocol = conn.protocol;
    if let Some(version) = rest.next() {
        match version.as_slice() {
            b"2" => protocol = Protocol::Resp2,
            b"3" => protocol = Protocol::Resp3,
            _ if parse_i64(version).is_some() => {
                return Reply::error("NOPROTO unsupported protocol version");
            }
            _ => return Reply::error("ERR Protocol version is not an integer or out of range"),
        }
    }
    while let Some(option) = rest.next() {
        match option.to_ascii_uppercase().as_slice() {
            b"AUTH" => {
                let (Some(_user), Some(pass)) = (rest.next(), rest.next()) else {
                    return syntax_error();
                };
                let reply = auth(config, conn, pass);
                if matches!(reply, Reply::Error(_)) {
                    return reply;
                }
            }
            b"SETNAME" => {
                let Some(name) = rest.next() else {
                    return syntax_error();
                };
                conn.name = Some(name.clone());
            }
            _ => return syntax_error(),
        }
    }
    if !conn.authenticated {
        return Reply::error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        );
    }
    conn.protocol = protocol;
    let proto = if protocol == Protocol::Resp3 { 3 } else { 2 };
    Reply::Map(vec![
        (Reply::bulk("server"), Reply::bulk("shale")),
        (
            Reply::bulk("version"),
            Reply::bulk(env!("CARGO_PKG_VERSION")),
        ),
        (Reply::bulk("proto"), Reply::Integer(proto)),
        (Reply::bulk("id"), Reply::Integer(conn.id as i64)),
        (Reply::bulk("mode"), Reply::bulk("cluster")),
        (Reply::bulk("role"), Reply::bulk("master")),
        (Reply::bulk("modules"), Reply::Array(Some(Vec::new()))),
    ])
}

fn client(conn: &mut Conn, args: &[Vec<u8>]) -> Reply {
    let sub = args[1].to_ascii_uppercase();
    match (sub.as_slice(), args.len()) {
        (b"SETNAME", 3) => {
            if args[2].iter().any(|b| *b <= b' ' || *b > b'~') {
                return Reply::error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            conn.name = (!args[2].is_empty()).then(|| args[2].clone());
            Reply::ok()
        }
        (b"GETNAME", 2) => Reply::Bulk(conn.name.clone()),
        (b"ID", 2) => Reply::Integer(conn.id as i64),
        (b"SETINFO", 4) => Reply::ok(),
        (b"INFO", 2) => {
            let name = conn
                .name
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            Reply::bulk(format!("id={} name={name} db=0\n", conn.id))
        }
        _ => Reply::error(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'",
            String::from_utf8_lossy(&args[1])
        )),
    }
}

/// `CONFIG GET`: the settings clients such as `redis-benchmark` read at start-up
fn config_get(pattern: &[u8]) -> Reply {
    let known: [(&str, &str); 3] = [("save", ""), ("appendonly", "yes"), ("databases", "1")];
    let pattern = pattern.to_ascii_lowercase();
    let mut pairs = Vec::new();
    for (name, value) in known {
        if pattern == b"*" || pattern == name.as_bytes() {
            pairs.push((Reply::bulk(name), Reply::bulk(value)));
        }
    }
    Reply::Map(pairs)
}
