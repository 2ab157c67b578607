//! Hashes, sets and lists: the commands that build [`CollectionOp`]s (see
//! `shale_core::shard::data` for what each does and its limits)
//!
//! Hashes: `HSET`, `HMSET`, `HSETNX`, `HGET`, `HMGET`, `HDEL`, `HGETALL`, `HKEYS`, `HVALS`,
//! `HLEN`, `HEXISTS`, `HSTRLEN`, `HINCRBY`, `HINCRBYFLOAT`, `HRANDFIELD`, `HSCAN`. Sets:
//! `SADD`, `SREM`, `SMEMBERS`, `SISMEMBER`, `SMISMEMBER`, `SCARD`, `SPOP`, `SRANDMEMBER`,
//! `SSCAN`, `SINTER`, `SUNION`, `SDIFF` and their `STORE` forms. Lists: `LPUSH`, `RPUSH`,
//! `LPUSHX`, `RPUSHX`, `LPOP`, `RPOP`, `LRANGE`, `LLEN`, `LINDEX`, `LSET`, `LREM`, `LTRIM`,
//! `LINSERT`, `LPOS`, `LMOVE`, `RPOPLPUSH`. Commands of several keys need them in one shard
//! (keys of one slot always are: use `{hash tags}`), else `-CROSSSLOT`.
//! `HSCAN` and `SSCAN` answer the whole collection at once, with cursor 0.

use shale_core::shard::KvOp;
use shale_core::shard::data::{
    AddFlags, CollectionOp, Combine, DataReply, HashOp, LexBound, ListOp, RangeBy, ScoreBound,
    SetOp, ZSetOp,
};

use super::commands::{not_integer, parse_i64, syntax_error, wrong_args};
use super::plan::{Planned, Shape};
use crate::resp::Reply;

/// The reply a [`DataReply`] is sent as
pub(crate) fn to_reply(reply: DataReply) -> Reply {
    match reply {
        DataReply::Ok => Reply::ok(),
        DataReply::Status(s) => Reply::Simple(String::from_utf8_lossy(&s).into_owned()),
        DataReply::Nil => Reply::Bulk(None),
        DataReply::NilArray => Reply::Array(None),
        DataReply::Int(n) => Reply::Integer(n),
        DataReply::Bulk(b) => Reply::Bulk(Some(b)),
        DataReply::Array(items) => Reply::Array(Some(items.into_iter().map(to_reply).collect())),
    }
}

fn on(key: &[u8], op: CollectionOp) -> KvOp {
    KvOp::Collection {
        key: key.to_vec(),
        op,
    }
}

/// `MATCH pattern` and `COUNT n` after a scan's cursor (the cursor must be a number)
fn scan_options(args: &[Vec<u8>]) -> Result<Option<Vec<u8>>, Reply> {
    let Some(cursor) = args.first() else {
        return Err(syntax_error());
    };
    if std::str::from_utf8(cursor)
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
        .is_none()
    {
        return Err(Reply::error("ERR invalid cursor"));
    }
    let mut pattern = None;
    let mut rest = args[1..].chunks(2);
    for pair in &mut rest {
        match (pair[0].to_ascii_uppercase().as_slice(), pair.get(1)) {
            (b"MATCH", Some(p)) => pattern = Some(p.clone()),
            (b"COUNT", Some(n)) => match parse_i64(n) {
                Some(n) if n >= 1 => {}
                _ => return Err(syntax_error()),
            },
            _ => return Err(syntax_error()),
        }
    }
    Ok(pattern)
}

/// `count` for `SRANDMEMBER`/`HRANDFIELD`/`SPOP`/`LPOP`/`RPOP`: the optional argument at
/// `at`
fn count_arg(args: &[Vec<u8>], at: usize) -> Result<Option<i64>, Reply> {
    match args.get(at) {
        None => Ok(None),
        Some(a) => parse_i64(a).map(Some).ok_or_else(not_integer),
    }
}

fn positive_count(args: &[Vec<u8>], at: usize) -> Result<Option<u64>, Reply> {
    match count_arg(args, at)? {
        None => Ok(None),
        Some(n) => u64::try_from(n)
            .map(Some)
            .map_err(|_| Reply::error("ERR value is out of range, must be positive")),
    }
}

/// The plan of one of this module's commands, `None` if `name` is not one of them
pub(crate) fn plan(name: &str, args: &[Vec<u8>]) -> Option<Result<Planned, Reply>> {
    let argc = args.len();
    if argc < 2 || !ALL.contains(&name) {
        return None;
    }
    let key = &args[1];
    let rest = &args[2..];
    let hash = |op| on(key, CollectionOp::Hash(op));
    let set = |op| on(key, CollectionOp::Set(op));
    let list = |op| on(key, CollectionOp::List(op));
    let zset = |op| on(key, CollectionOp::ZSet(op));
    let op = match name {
        // ----- hashes -----
        "HSET" | "HMSET" if argc >= 4 && argc.is_multiple_of(2) => hash(HashOp::Set {
            pairs: rest
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect(),
            only_new: false,
        }),
        "HSETNX" if argc == 4 => hash(HashOp::Set {
            pairs: vec![(args[2].clone(), args[3].clone())],
            only_new: true,
        }),
        "HGET" if argc == 3 => hash(HashOp::Get {
            fields: vec![args[2].clone()],
            many: false,
        }),
        "HMGET" if argc >= 3 => hash(HashOp::Get {
            fields: rest.to_vec(),
            many: true,
        }),
        "HDEL" if argc >= 3 => hash(HashOp::Del {
            fields: rest.to_vec(),
        }),
        "HGETALL" if argc == 2 => hash(HashOp::GetAll),
        "HKEYS" if argc == 2 => hash(HashOp::Keys),
        "HVALS" if argc == 2 => hash(HashOp::Vals),
        "HLEN" if argc == 2 => hash(HashOp::Len),
        "HEXISTS" if argc == 3 => hash(HashOp::Exists {
            field: args[2].clone(),
        }),
        "HSTRLEN" if argc == 3 => hash(HashOp::StrLen {
            field: args[2].clone(),
        }),
        "HINCRBY" if argc == 4 => match parse_i64(&args[3]) {
            Some(by) => hash(HashOp::IncrBy {
                field: args[2].clone(),
                by,
            }),
            None => return Some(Err(not_integer())),
        },
        "HINCRBYFLOAT" if argc == 4 => hash(HashOp::IncrByFloat {
            field: args[2].clone(),
            by: args[3].clone(),
        }),
        "HRANDFIELD" if (2..=4).contains(&argc) => {
            let count = match count_arg(args, 2) {
                Ok(c) => c,
                Err(r) => return Some(Err(r)),
            };
            let with_values = match args.get(3) {
                None => false,
                Some(w) if w.eq_ignore_ascii_case(b"WITHVALUES") => true,
                Some(_) => return Some(Err(syntax_error())),
            };
            hash(HashOp::RandField { count, with_values })
        }
        "HSCAN" if argc >= 3 => match scan_options(rest) {
            Ok(pattern) => hash(HashOp::Scan { pattern }),
            Err(r) => return Some(Err(r)),
        },
        // ----- sets -----
        "SADD" if argc >= 3 => set(SetOp::Add {
            members: rest.to_vec(),
        }),
        "SREM" if argc >= 3 => set(SetOp::Rem {
            members: rest.to_vec(),
        }),
        "SMEMBERS" if argc == 2 => set(SetOp::Members),
        "SISMEMBER" if argc == 3 => set(SetOp::IsMember {
            members: rest.to_vec(),
            many: false,
        }),
        "SMISMEMBER" if argc >= 3 => set(SetOp::IsMember {
            members: rest.to_vec(),
            many: true,
        }),
        "SCARD" if argc == 2 => set(SetOp::Card),
        "SPOP" if argc <= 3 => match positive_count(args, 2) {
            Ok(count) => set(SetOp::Pop { count }),
            Err(r) => return Some(Err(r)),
        },
        "SRANDMEMBER" if argc <= 3 => match count_arg(args, 2) {
            Ok(count) => set(SetOp::RandMember { count }),
            Err(r) => return Some(Err(r)),
        },
        "SSCAN" if argc >= 3 => match scan_options(rest) {
            Ok(pattern) => set(SetOp::Scan { pattern }),
            Err(r) => return Some(Err(r)),
        },
        "SINTER" | "SUNION" | "SDIFF" => KvOp::SetCombine {
            keys: args[1..].to_vec(),
            how: combine(name),
            store: None,
        },
        "SINTERSTORE" | "SUNIONSTORE" | "SDIFFSTORE" if argc >= 3 => KvOp::SetCombine {
            keys: rest.to_vec(),
            how: combine(name),
            store: Some(key.clone()),
        },
        // ----- lists -----
        "LPUSH" | "RPUSH" | "LPUSHX" | "RPUSHX" if argc >= 3 => list(ListOp::Push {
            values: rest.to_vec(),
            left: name.starts_with('L'),
            only_existing: name.ends_with('X'),
        }),
        "LPOP" | "RPOP" if argc <= 3 => match positive_count(args, 2) {
            Ok(count) => list(ListOp::Pop {
                left: name == "LPOP",
                count,
            }),
            Err(r) => return Some(Err(r)),
        },
        "LRANGE" | "LTRIM" if argc == 4 => {
            let (Some(start), Some(stop)) = (parse_i64(&args[2]), parse_i64(&args[3])) else {
                return Some(Err(not_integer()));
            };
            if name == "LRANGE" {
                list(ListOp::Range { start, stop })
            } else {
                list(ListOp::Trim { start, stop })
            }
        }
        "LLEN" if argc == 2 => list(ListOp::Len),
        "LINDEX" if argc == 3 => match parse_i64(&args[2]) {
            Some(index) => list(ListOp::Index { index }),
            None => return Some(Err(not_integer())),
        },
        "LSET" if argc == 4 => match parse_i64(&args[2]) {
            Some(index) => list(ListOp::Set {
                index,
                value: args[3].clone(),
            }),
            None => return Some(Err(not_integer())),
        },
        "LREM" if argc == 4 => match parse_i64(&args[2]) {
            Some(count) => list(ListOp::Rem {
                count,
                value: args[3].clone(),
            }),
            None => return Some(Err(not_integer())),
        },
        "LINSERT" if argc == 5 => {
            let before = match args[2].to_ascii_uppercase().as_slice() {
                b"BEFORE" => true,
                b"AFTER" => false,
                _ => return Some(Err(syntax_error())),
            };
            list(ListOp::Insert {
                before,
                pivot: args[3].clone(),
                value: args[4].clone(),
            })
        }
        "LPOS" if argc >= 3 => match lpos(args) {
            Ok(op) => list(op),
            Err(r) => return Some(Err(r)),
        },
        "LMOVE" if argc == 5 => {
            let side = |a: &[u8]| match a.to_ascii_uppercase().as_slice() {
                b"LEFT" => Some(true),
                b"RIGHT" => Some(false),
                _ => None,
            };
            let (Some(from_left), Some(to_left)) = (side(&args[3]), side(&args[4])) else {
                return Some(Err(syntax_error()));
            };
            KvOp::ListMove {
                from: key.clone(),
                to: args[2].clone(),
                from_left,
                to_left,
            }
        }
        "RPOPLPUSH" if argc == 3 => KvOp::ListMove {
            from: key.clone(),
            to: args[2].clone(),
            from_left: false,
            to_left: true,
        },
        // ----- sorted sets -----
        "ZADD" if argc >= 4 => match zadd(rest) {
            Ok(op) => zset(op),
            Err(r) => return Some(Err(r)),
        },
        "ZINCRBY" if argc == 4 => zset(ZSetOp::Add {
            pairs: vec![(args[2].clone(), args[3].clone())],
            flags: AddFlags {
                incr: true,
                ..AddFlags::default()
            },
        }),
        "ZREM" if argc >= 3 => zset(ZSetOp::Rem {
            members: rest.to_vec(),
        }),
        "ZSCORE" if argc == 3 => zset(ZSetOp::Score {
            members: rest.to_vec(),
            many: false,
        }),
        "ZMSCORE" if argc >= 3 => zset(ZSetOp::Score {
            members: rest.to_vec(),
            many: true,
        }),
        "ZCARD" if argc == 2 => zset(ZSetOp::Card),
        "ZCOUNT" if argc == 4 => match (ScoreBound::parse(&args[2]), ScoreBound::parse(&args[3])) {
            (Some(min), Some(max)) => zset(ZSetOp::Count { min, max }),
            _ => return Some(Err(Reply::error("ERR min or max is not a float"))),
        },
        "ZRANGE" | "ZRANGEBYSCORE" | "ZREVRANGEBYSCORE" | "ZREVRANGE" | "ZRANGEBYLEX"
            if argc >= 4 =>
        {
            match zrange(name, rest) {
                Ok(op) => zset(op),
                Err(r) => return Some(Err(r)),
            }
        }
        "ZRANK" | "ZREVRANK" if argc == 3 => zset(ZSetOp::Rank {
            member: args[2].clone(),
            rev: name == "ZREVRANK",
        }),
        "ZPOPMIN" | "ZPOPMAX" if argc <= 3 => match positive_count(args, 2) {
            Ok(count) => zset(ZSetOp::Pop {
                max: name == "ZPOPMAX",
                count,
            }),
            Err(r) => return Some(Err(r)),
        },
        "ZSCAN" if argc >= 3 => match scan_options(rest) {
            Ok(pattern) => zset(ZSetOp::Scan { pattern }),
            Err(r) => return Some(Err(r)),
        },
        _ => return Some(Err(wrong_args(name))),
    };
    Some(Ok(Planned::new(op, Shape::Data)))
}

/// `ZADD`'s options and pairs
fn zadd(args: &[Vec<u8>]) -> Result<ZSetOp, Reply> {
    let mut flags = AddFlags::default();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.to_ascii_uppercase().as_slice() {
            b"NX" => flags.nx = true,
            b"XX" => flags.xx = true,
            b"GT" => flags.gt = true,
            b"LT" => flags.lt = true,
            b"CH" => flags.ch = true,
            b"INCR" => flags.incr = true,
            _ => break,
        }
        i += 1;
    }
    let pairs = &args[i..];
    if flags.nx && flags.xx {
        return Err(Reply::error(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if u8::from(flags.gt) + u8::from(flags.lt) + u8::from(flags.nx) > 1 {
        return Err(Reply::error(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if pairs.is_empty() || pairs.len() % 2 == 1 {
        return Err(syntax_error());
    }
    if flags.incr && pairs.len() > 2 {
        return Err(Reply::error(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    Ok(ZSetOp::Add {
        pairs: pairs
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect(),
        flags,
    })
}

/// `ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]` and the
/// older `ZRANGEBYSCORE`, `ZREVRANGEBYSCORE`, `ZREVRANGE`, `ZRANGEBYLEX` (`args` after the key)
fn zrange(name: &str, args: &[Vec<u8>]) -> Result<ZSetOp, Reply> {
    let (mut by_score, mut by_lex, mut rev) = match name {
        "ZRANGEBYSCORE" => (true, false, false),
        "ZREVRANGEBYSCORE" => (true, false, true),
        "ZREVRANGE" => (false, false, true),
        "ZRANGEBYLEX" => (false, true, false),
        _ => (false, false, false),
    };
    let (mut limit, mut with_scores) = (None, false);
    let mut i = 2;
    while let Some(a) = args.get(i) {
        match a.to_ascii_uppercase().as_slice() {
            b"BYSCORE" if name == "ZRANGE" => by_score = true,
            b"BYLEX" if name == "ZRANGE" => by_lex = true,
            b"REV" if name == "ZRANGE" => rev = true,
            b"WITHSCORES" => with_scores = true,
            b"LIMIT" => {
                let (Some(o), Some(c)) = (args.get(i + 1), args.get(i + 2)) else {
                    return Err(syntax_error());
                };
                let (Some(o), Some(c)) = (parse_i64(o), parse_i64(c)) else {
                    return Err(not_integer());
                };
                limit = Some((o, c));
                i += 2;
            }
            _ => return Err(syntax_error()),
        }
        i += 1;
    }
    if by_score && by_lex {
        return Err(syntax_error());
    }
    if limit.is_some() && !by_score && !by_lex {
        return Err(Reply::error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if with_scores && by_lex {
        return Err(Reply::error(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    // Reversed score and lex ranges name the high end first.
    let (lo, hi) = if rev && (by_score || by_lex) {
        (&args[1], &args[0])
    } else {
        (&args[0], &args[1])
    };
    let by = if by_score {
        match (ScoreBound::parse(lo), ScoreBound::parse(hi)) {
            (Some(min), Some(max)) => RangeBy::Score(min, max),
            _ => return Err(Reply::error("ERR min or max is not a float")),
        }
    } else if by_lex {
        match (LexBound::parse(lo), LexBound::parse(hi)) {
            (Some(min), Some(max)) => RangeBy::Lex(min, max),
            _ => return Err(Reply::error("ERR min or max not valid string range item")),
        }
    } else {
        match (parse_i64(lo), parse_i64(hi)) {
            (Some(a), Some(b)) => RangeBy::Rank(a, b),
            _ => return Err(not_integer()),
        }
    };
    Ok(ZSetOp::Range {
        by,
        rev,
        limit,
        with_scores,
    })
}

fn combine(name: &str) -> Combine {
    match &name[..5] {
        "SINTE" => Combine::Inter,
        "SUNIO" => Combine::Union,
        _ => Combine::Diff,
    }
}

fn lpos(args: &[Vec<u8>]) -> Result<ListOp, Reply> {
    let mut rank = 1;
    let mut count = None;
    let mut max_len = 0;
    let mut options = args[3..].chunks(2);
    for pair in &mut options {
        let Some(value) = pair.get(1).and_then(|v| parse_i64(v)) else {
            return Err(syntax_error());
        };
        match pair[0].to_ascii_uppercase().as_slice() {
            b"RANK" if value == 0 || value == i64::MIN => {
                return Err(Reply::error(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
            b"RANK" => rank = value,
            b"COUNT" if value >= 0 => count = Some(value as u64),
            b"MAXLEN" if value >= 0 => max_len = value as u64,
            b"COUNT" => return Err(Reply::error("ERR COUNT can't be negative")),
            b"MAXLEN" => return Err(Reply::error("ERR MAXLEN can't be negative")),
            _ => return Err(syntax_error()),
        }
    }
    Ok(ListOp::Pos {
        value: args[2].clone(),
        rank,
        count,
        max_len,
    })
}

/// Every command of this module
pub(crate) const ALL: &[&str] = &[
    "HSET",
    "HMSET",
    "HSETNX",
    "HGET",
    "HMGET",
    "HDEL",
    "HGETALL",
    "HKEYS",
    "HVALS",
    "HLEN",
    "HEXISTS",
    "HSTRLEN",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HRANDFIELD",
    "HSCAN",
    "SADD",
    "SREM",
    "SMEMBERS",
    "SISMEMBER",
    "SMISMEMBER",
    "SCARD",
    "SPOP",
    "SRANDMEMBER",
    "SSCAN",
    "SINTER",
    "SUNION",
    "SDIFF",
    "SINTERSTORE",
    "SUNIONSTORE",
    "SDIFFSTORE",
    "LPUSH",
    "RPUSH",
    "LPUSHX",
    "RPUSHX",
    "LPOP",
    "RPOP",
    "LRANGE",
    "LLEN",
    "LINDEX",
    "LSET",
    "LREM",
    "LTRIM",
    "LINSERT",
    "LPOS",
    "LMOVE",
    "RPOPLPUSH",
    "ZADD",
    "ZINCRBY",
    "ZREM",
    "ZSCORE",
    "ZMSCORE",
    "ZCARD",
    "ZCOUNT",
    "ZRANGE",
    "ZRANGEBYSCORE",
    "ZREVRANGEBYSCORE",
    "ZREVRANGE",
    "ZRANGEBYLEX",
    "ZRANK",
    "ZREVRANK",
    "ZPOPMIN",
    "ZPOPMAX",
    "ZSCAN",
];
