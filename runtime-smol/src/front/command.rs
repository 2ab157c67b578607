//! `COMMAND`: what the front door serves, with the arity, flags and key positions Redis
//! clients read (cluster clients use the key positions to route commands)
//!
//! `COMMAND` and `COMMAND INFO [name...]` answer, per command, `[name, arity, flags,
//! first key, last key, step, categories, tips, key specs, subcommands]` as Redis 7 does
//! (arity negative: at least that many arguments, the name counted). `COMMAND COUNT`,
//! `COMMAND LIST`, `COMMAND DOCS` (a summary per command) and `COMMAND GETKEYS command
//! args...` (the keys the command would touch, found by planning it, so they are the keys
//! the node routes by) complete it.

use super::plan;
use crate::resp::Reply;

/// One command: name, arity, whether it writes, first key, last key (-1: the last
/// argument), step between keys (0: no keys)
type Spec = (&'static str, i64, bool, i64, i64, i64);

/// Every command served, by name
const SPECS: &[Spec] = &[
    // connection and server
    ("ping", -1, false, 0, 0, 0),
    ("echo", 2, false, 0, 0, 0),
    ("hello", -1, false, 0, 0, 0),
    ("auth", -2, false, 0, 0, 0),
    ("select", 2, false, 0, 0, 0),
    ("quit", -1, false, 0, 0, 0),
    ("client", -2, false, 0, 0, 0),
    ("command", -1, false, 0, 0, 0),
    ("config", -2, false, 0, 0, 0),
    ("info", -1, false, 0, 0, 0),
    ("dbsize", 1, false, 0, 0, 0),
    ("cluster", -2, false, 0, 0, 0),
    ("readonly", 1, false, 0, 0, 0),
    ("readwrite", 1, false, 0, 0, 0),
    ("asking", 1, false, 0, 0, 0),
    ("multi", 1, false, 0, 0, 0),
    ("exec", 1, false, 0, 0, 0),
    ("discard", 1, false, 0, 0, 0),
    ("watch", -2, false, 1, -1, 1),
    ("unwatch", 1, false, 0, 0, 0),
    ("scan", -2, false, 0, 0, 0),
    ("keys", 2, false, 0, 0, 0),
    ("randomkey", 1, false, 0, 0, 0),
    ("flushall", -1, true, 0, 0, 0),
    ("flushdb", -1, true, 0, 0, 0),
    ("shale", -2, true, 0, 0, 0),
    // strings and keys
    ("get", 2, false, 1, 1, 1),
    ("set", -3, true, 1, 1, 1),
    ("setnx", 3, true, 1, 1, 1),
    ("setex", 4, true, 1, 1, 1),
    ("psetex", 4, true, 1, 1, 1),
    ("getdel", 2, true, 1, 1, 1),
    ("getex", -2, true, 1, 1, 1),
    ("getrange", 4, false, 1, 1, 1),
    ("substr", 4, false, 1, 1, 1),
    ("setrange", 4, true, 1, 1, 1),
    ("strlen", 2, false, 1, 1, 1),
    ("append", 3, true, 1, 1, 1),
    ("incr", 2, true, 1, 1, 1),
    ("decr", 2, true, 1, 1, 1),
    ("incrby", 3, true, 1, 1, 1),
    ("decrby", 3, true, 1, 1, 1),
    ("incrbyfloat", 3, true, 1, 1, 1),
    ("cas", 4, true, 1, 1, 1),
    ("mget", -2, false, 1, -1, 1),
    ("mset", -3, true, 1, -1, 2),
    ("msetnx", -3, true, 1, -1, 2),
    ("del", -2, true, 1, -1, 1),
    ("unlink", -2, true, 1, -1, 1),
    ("exists", -2, false, 1, -1, 1),
    ("type", 2, false, 1, 1, 1),
    ("rename", 3, true, 1, 2, 1),
    ("renamenx", 3, true, 1, 2, 1),
    ("copy", -3, true, 1, 2, 1),
    ("expire", -3, true, 1, 1, 1),
    ("pexpire", -3, true, 1, 1, 1),
    ("expireat", -3, true, 1, 1, 1),
    ("pexpireat", -3, true, 1, 1, 1),
    ("persist", 2, true, 1, 1, 1),
    ("ttl", 2, false, 1, 1, 1),
    ("pttl", 2, false, 1, 1, 1),
    ("expiretime", 2, false, 1, 1, 1),
    ("pexpiretime", 2, false, 1, 1, 1),
    // hashes
    ("hset", -4, true, 1, 1, 1),
    ("hmset", -4, true, 1, 1, 1),
    ("hsetnx", 4, true, 1, 1, 1),
    ("hget", 3, false, 1, 1, 1),
    ("hmget", -3, false, 1, 1, 1),
    ("hdel", -3, true, 1, 1, 1),
    ("hgetall", 2, false, 1, 1, 1),
    ("hkeys", 2, false, 1, 1, 1),
    ("hvals", 2, false, 1, 1, 1),
    ("hlen", 2, false, 1, 1, 1),
    ("hexists", 3, false, 1, 1, 1),
    ("hstrlen", 3, false, 1, 1, 1),
    ("hincrby", 4, true, 1, 1, 1),
    ("hincrbyfloat", 4, true, 1, 1, 1),
    ("hrandfield", -2, false, 1, 1, 1),
    ("hscan", -3, false, 1, 1, 1),
    // sets
    ("sadd", -3, true, 1, 1, 1),
    ("srem", -3, true, 1, 1, 1),
    ("smembers", 2, false, 1, 1, 1),
    ("sismember", 3, false, 1, 1, 1),
    ("smismember", -3, false, 1, 1, 1),
    ("scard", 2, false, 1, 1, 1),
    ("spop", -2, true, 1, 1, 1),
    ("srandmember", -2, false, 1, 1, 1),
    ("sscan", -3, false, 1, 1, 1),
    ("sinter", -2, false, 1, -1, 1),
    ("sunion", -2, false, 1, -1, 1),
    ("sdiff", -2, false, 1, -1, 1),
    ("sinterstore", -3, true, 1, -1, 1),
    ("sunionstore", -3, true, 1, -1, 1),
    ("sdiffstore", -3, true, 1, -1, 1),
    // lists
    ("lpush", -3, true, 1, 1, 1),
    ("rpush", -3, true, 1, 1, 1),
    ("lpushx", -3, true, 1, 1, 1),
    ("rpushx", -3, true, 1, 1, 1),
    ("lpop", -2, true, 1, 1, 1),
    ("rpop", -2, true, 1, 1, 1),
    ("lrange", 4, false, 1, 1, 1),
    ("llen", 2, false, 1, 1, 1),
    ("lindex", 3, false, 1, 1, 1),
    ("lset", 4, true, 1, 1, 1),
    ("lrem", 4, true, 1, 1, 1),
    ("ltrim", 4, true, 1, 1, 1),
    ("linsert", 5, true, 1, 1, 1),
    ("lpos", -3, false, 1, 1, 1),
    ("lmove", 5, true, 1, 2, 1),
    ("rpoplpush", 3, true, 1, 2, 1),
    // sorted sets
    ("zadd", -4, true, 1, 1, 1),
    ("zincrby", 4, true, 1, 1, 1),
    ("zrem", -3, true, 1, 1, 1),
    ("zscore", 3, false, 1, 1, 1),
    ("zmscore", -3, false, 1, 1, 1),
    ("zcard", 2, false, 1, 1, 1),
    ("zcount", 4, false, 1, 1, 1),
    ("zrange", -4, false, 1, 1, 1),
    ("zrangebyscore", -4, false, 1, 1, 1),
    ("zrevrangebyscore", -4, false, 1, 1, 1),
    ("zrevrange", -4, false, 1, 1, 1),
    ("zrangebylex", -4, false, 1, 1, 1),
    ("zrank", 3, false, 1, 1, 1),
    ("zrevrank", 3, false, 1, 1, 1),
    ("zpopmin", -2, true, 1, 1, 1),
    ("zpopmax", -2, true, 1, 1, 1),
    ("zscan", -3, false, 1, 1, 1),
];

fn info(spec: &Spec) -> Reply {
    let &(name, arity, write, first, last, step) = spec;
    let mut flags = vec![if write { "write" } else { "readonly" }];
    if first == 0 && !write {
        flags = vec!["fast"];
    }
    let category = if write { "@write" } else { "@read" };
    Reply::Array(Some(vec![
        Reply::bulk(name),
        Reply::Integer(arity),
        Reply::Array(Some(
            flags.into_iter().map(|f| Reply::Simple(f.into())).collect(),
        )),
        Reply::Integer(first),
        Reply::Integer(last),
        Reply::Integer(step),
        Reply::Array(Some(vec![Reply::Simple(category.into())])),
        Reply::Array(Some(Vec::new())),
        Reply::Array(Some(Vec::new())),
        Reply::Array(Some(Vec::new())),
    ]))
}

fn find(name: &[u8]) -> Option<&'static Spec> {
    SPECS
        .iter()
        .find(|s| s.0.as_bytes().eq_ignore_ascii_case(name))
}

/// Runs `COMMAND [subcommand args...]`
pub(crate) fn execute(args: &[Vec<u8>]) -> Reply {
    let sub = args.get(1).map(|a| a.to_ascii_uppercase());
    match sub.as_deref() {
        None => Reply::Array(Some(SPECS.iter().map(info).collect())),
        Some(b"COUNT") => Reply::Integer(SPECS.len() as i64),
        Some(b"LIST") => Reply::Array(Some(SPECS.iter().map(|s| Reply::bulk(s.0)).collect())),
        Some(b"INFO") if args.len() == 2 => Reply::Array(Some(SPECS.iter().map(info).collect())),
        Some(b"INFO") => Reply::Array(Some(
            args[2..]
                .iter()
                .map(|n| find(n).map_or(Reply::Array(None), info))
                .collect(),
        )),
        Some(b"DOCS") => {
            let wanted: Vec<&'static Spec> = if args.len() == 2 {
                SPECS.iter().collect()
            } else {
                args[2..].iter().filter_map(|n| find(n)).collect()
            };
            Reply::Map(
                wanted
                    .into_iter()
                    .map(|s| {
                        let summary = if s.2 { "writes its keys" } else { "reads" };
                        (
                            Reply::bulk(s.0),
                            Reply::Map(vec![
                                (Reply::bulk("summary"), Reply::bulk(summary)),
                                (Reply::bulk("since"), Reply::bulk("1.0.0")),
                                (Reply::bulk("group"), Reply::bulk("generic")),
                            ]),
                        )
                    })
                    .collect(),
            )
        }
        Some(b"GETKEYS") if args.len() >= 3 => {
            let name = String::from_utf8_lossy(&args[2]).to_ascii_uppercase();
            match plan::plan(&name, &args[2..], true) {
                Some(Ok(p)) => {
                    Reply::Array(Some(p.op.keys().into_iter().map(Reply::bulk).collect()))
                }
                Some(Err(e)) => e,
                None if find(&args[2]).is_some() => {
                    Reply::error("ERR The command has no key arguments")
                }
                None => Reply::error("ERR Invalid command specified"),
            }
        }
        Some(_) => Reply::error(format!(
            "ERR unknown subcommand '{}'. Try COMMAND HELP.",
            String::from_utf8_lossy(&args[1])
        )),
    }
}

/// The lower-case name of command `name` if this front door serves it (metrics label
/// requests with it, so clients cannot create series at will)
pub(crate) fn served_name(name: &[u8]) -> Option<&'static str> {
    find(name).map(|s| s.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_command_is_listed_with_its_first_key_and_getkeys_finds_the_keys() {
        for spec in SPECS {
            let name = spec.0.to_ascii_uppercase();
            // Every command with keys plans its keys from where the table says.
            if spec.3 == 1 {
                let args: Vec<Vec<u8>> = [name.as_bytes(), b"k1", b"k2", b"1", b"1", b"1"]
                    .iter()
                    .map(|a| a.to_vec())
                    .take(spec.1.unsigned_abs().max(3) as usize)
                    .collect();
                if let Some(Ok(p)) = plan::plan(&name, &args, true) {
                    assert_eq!(p.op.key(), b"k1", "{name}");
                }
            }
        }
        // Every command the planners know is listed.
        for name in super::super::collections::ALL
            .iter()
            .chain(super::super::strings::KEY_COMMANDS)
        {
            assert!(
                served_name(name.as_bytes()).is_some(),
                "{name} is not listed"
            );
        }
        let reply = execute(&[
            b"COMMAND".to_vec(),
            b"GETKEYS".to_vec(),
            b"MSET".to_vec(),
            b"a".to_vec(),
            b"1".to_vec(),
            b"b".to_vec(),
            b"2".to_vec(),
        ]);
        assert_eq!(
            reply,
            Reply::Array(Some(vec![Reply::bulk("a"), Reply::bulk("b")]))
        );
        assert_eq!(
            execute(&[b"COMMAND".to_vec(), b"COUNT".to_vec()]),
            Reply::Integer(SPECS.len() as i64)
        );
    }
}
