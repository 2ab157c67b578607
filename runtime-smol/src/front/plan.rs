//! A command as one operation and the shape of its reply: what runs now, or waits in a
//! `MULTI` queue for `EXEC`
//!
//! [`plan`] turns the arguments of a key command into a [`Planned`] (the [`KvOp`] and how
//! its [`KvResult`] becomes a reply) or the error Redis gives for them, without running
//! anything. The front door runs a plan at once; a transaction queues plans and sends them
//! to the group as one operation (see [`super::multi`]).

use shale_core::shard::data::DataReply;
use shale_core::shard::{KvOp, KvResult, SetCondition};

use super::commands::{kv_error, not_integer, parse_i64, syntax_error, wrong_args};
use super::{collections, strings};
use crate::resp::Reply;

/// How a [`KvResult`] becomes the reply Redis gives
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `+OK`
    Ok,
    /// The value, or nil
    Bulk,
    /// An integer result
    Int,
    /// A changed-or-not flag as 1 or 0
    Flag,
    /// A length
    Length,
    /// A reply shaped in the core ([`DataReply`])
    Data,
    /// `SET`: `OK` or nil, or the previous value with `GET`
    Set {
        /// `GET` was given
        get: bool,
    },
    /// `CAS`: 1 when swapped
    Swapped,
    /// `TTL`, `PTTL`, `EXPIRETIME`, `PEXPIRETIME`
    Ttl(TtlUnit),
    /// `STRLEN`: the value's length
    StrLen,
    /// `GETRANGE start end`
    Range(i64, i64),
    /// `EXISTS`: 1 unless the type is `none`
    Exists,
    /// Several operations in one (`DEL`, `EXISTS`, `MGET`, `MSET` of several keys inside a
    /// transaction): their replies combined
    Sum,
    /// `MGET`: the values as an array
    Values,
}

/// What `TTL` and its kin answer
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TtlUnit {
    /// Seconds left
    Seconds,
    /// Milliseconds left
    Millis,
    /// The Unix time in seconds
    At,
    /// The Unix time in milliseconds
    AtMillis,
}

/// A command ready to run
#[derive(Clone, Debug)]
pub(crate) struct Planned {
    /// The operation
    pub(crate) op: KvOp,
    /// How its result is answered
    pub(crate) shape: Shape,
}

impl Planned {
    pub(crate) fn new(op: KvOp, shape: Shape) -> Self {
        Planned { op, shape }
    }
}

/// The plan of key command `name` (upper case), `None` when it is not one; multi-key
/// commands (`DEL`, `EXISTS`, `MGET`, `MSET`) plan as one operation only when
/// `one_operation` (in a transaction; elsewhere the front door splits them by shard)
pub(crate) fn plan(
    name: &str,
    args: &[Vec<u8>],
    one_operation: bool,
) -> Option<Result<Planned, Reply>> {
    let argc = args.len();
    let key = || args[1].clone();
    let planned = |op, shape| Some(Ok(Planned::new(op, shape)));
    match name {
        "GET" if argc == 2 => planned(KvOp::Get { key: key() }, Shape::Bulk),
        "SET" if argc >= 3 => Some(strings::parse_set_options("set", &args[3..]).map(
            |(condition, expiry, get)| {
                Planned::new(
                    KvOp::Set {
                        key: key(),
                        value: args[2].clone(),
                        condition,
                        expiry,
                    },
                    Shape::Set { get },
                )
            },
        )),
        "APPEND" if argc == 3 => planned(
            KvOp::Append {
                key: key(),
                value: args[2].clone(),
            },
            Shape::Length,
        ),
        "INCR" | "DECR" if argc == 2 => planned(
            KvOp::Incr {
                key: key(),
                by: if name == "INCR" { 1 } else { -1 },
            },
            Shape::Int,
        ),
        "INCRBY" | "DECRBY" if argc == 3 => {
            let Some(by) = parse_i64(&args[2]) else {
                return Some(Err(not_integer()));
            };
            let by = if name == "INCRBY" {
                Some(by)
            } else {
                by.checked_neg()
            };
            match by {
                Some(by) => planned(KvOp::Incr { key: key(), by }, Shape::Int),
                None => Some(Err(Reply::error("ERR decrement would overflow"))),
            }
        }
        "CAS" if argc == 4 => planned(
            KvOp::Cas {
                key: key(),
                expected: Some(args[2].clone()),
                new: args[3].clone(),
            },
            Shape::Swapped,
        ),
        "SETNX" if argc == 3 => planned(
            KvOp::Set {
                key: key(),
                value: args[2].clone(),
                condition: SetCondition::IfAbsent,
                expiry: shale_core::shard::Expiry::Clear,
            },
            Shape::Swapped,
        ),
        "DEL" | "UNLINK" | "EXISTS" if argc >= 2 && (argc == 2 || one_operation) => {
            let one = |k: &Vec<u8>| match name {
                "EXISTS" => Planned::new(KvOp::Type { key: k.clone() }, Shape::Exists),
                _ => Planned::new(KvOp::Delete { key: k.clone() }, Shape::Flag),
            };
            if argc == 2 {
                return Some(Ok(one(&args[1])));
            }
            planned(
                KvOp::Multi {
                    ops: args[1..].iter().map(|k| one(k).op).collect(),
                    watched: Vec::new(),
                },
                Shape::Sum,
            )
        }
        "MGET" if argc >= 2 && one_operation => planned(
            KvOp::MultiGet {
                keys: args[1..].to_vec(),
            },
            Shape::Values,
        ),
        "MSET" if argc >= 3 && argc % 2 == 1 && one_operation => planned(
            KvOp::MultiSet {
                pairs: args[1..]
                    .chunks(2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect(),
            },
            Shape::Ok,
        ),
        "RENAME" | "RENAMENX" if argc == 3 => planned(
            KvOp::Rename {
                from: key(),
                to: args[2].clone(),
                only_if_absent: name == "RENAMENX",
            },
            if name == "RENAME" {
                Shape::Ok
            } else {
                Shape::Flag
            },
        ),
        "COPY" if (3..=6).contains(&argc) => {
            let mut replace = false;
            let mut options = args[3..].iter();
            while let Some(o) = options.next() {
                match o.to_ascii_uppercase().as_slice() {
                    b"REPLACE" => replace = true,
                    b"DB" if options.next().is_some_and(|d| d == b"0") => {}
                    b"DB" => return Some(Err(Reply::error("ERR DB index is out of range"))),
                    _ => return Some(Err(syntax_error())),
                }
            }
            planned(
                KvOp::Copy {
                    from: key(),
                    to: args[2].clone(),
                    replace,
                },
                Shape::Flag,
            )
        }
        "MSETNX" if argc >= 3 && argc % 2 == 1 => planned(
            KvOp::MultiSetIfNone {
                pairs: args[1..]
                    .chunks(2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect(),
            },
            Shape::Flag,
        ),
        "INCRBYFLOAT" if argc == 3 => planned(
            KvOp::IncrFloat {
                key: key(),
                by: args[2].clone(),
            },
            Shape::Bulk,
        ),
        "RENAME" | "RENAMENX" | "COPY" | "MSETNX" | "INCRBYFLOAT" => Some(Err(wrong_args(name))),
        // Several keys outside a transaction: the front door splits them by shard.
        "DEL" | "UNLINK" | "EXISTS" | "MGET" | "MSET" if !one_operation && argc > 2 => None,
        "GET" | "SET" | "APPEND" | "INCR" | "DECR" | "INCRBY" | "DECRBY" | "CAS" | "SETNX"
        | "DEL" | "UNLINK" | "EXISTS" | "MGET" | "MSET" => Some(Err(wrong_args(name))),
        _ => strings::plan(name, args).or_else(|| collections::plan(name, args)),
    }
}

/// The reply `result` gives as `shape` (an error is already a reply)
pub(crate) fn shape(result: Result<KvResult, Reply>, shape: &Shape) -> Reply {
    let result = match result {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    match (shape, result) {
        (Shape::Ok, _) => Reply::ok(),
        (Shape::Bulk | Shape::Values, KvResult::Value(v)) => Reply::Bulk(v),
        (Shape::Values, KvResult::Values(vs)) => {
            Reply::Array(Some(vs.into_iter().map(Reply::Bulk).collect()))
        }
        (Shape::Int, KvResult::Integer(n)) => Reply::Integer(n),
        (Shape::Flag, KvResult::Flag(b) | KvResult::Deleted(b)) => Reply::Integer(i64::from(b)),
        (Shape::Length, KvResult::Length(n)) => Reply::Integer(n as i64),
        (Shape::Data, KvResult::Reply(r)) => collections::to_reply(r),
        (Shape::Set { get }, KvResult::Set { written, previous }) => {
            if *get {
                Reply::Bulk(previous)
            } else if written {
                Reply::ok()
            } else {
                Reply::Bulk(None)
            }
        }
        (Shape::Swapped, KvResult::Swapped { swapped, .. }) => Reply::Integer(i64::from(swapped)),
        (Shape::Swapped, KvResult::Set { written, .. }) => Reply::Integer(i64::from(written)),
        (
            Shape::Ttl(unit),
            KvResult::Expiry {
                exists,
                expires_at_ms,
                now_ms,
            },
        ) => Reply::Integer(match (exists, expires_at_ms) {
            (false, _) => -2,
            (true, None) => -1,
            (true, Some(at)) => {
                let left = at.saturating_sub(now_ms);
                let shown = match unit {
                    TtlUnit::Seconds => left.div_ceil(1000),
                    TtlUnit::Millis => left,
                    TtlUnit::At => at / 1000,
                    TtlUnit::AtMillis => at,
                };
                i64::try_from(shown).unwrap_or(i64::MAX)
            }
        }),
        (Shape::StrLen, KvResult::Value(v)) => Reply::Integer(v.map_or(0, |v| v.len() as i64)),
        (Shape::Range(start, end), KvResult::Value(v)) => {
            Reply::Bulk(Some(strings::range(&v.unwrap_or_default(), *start, *end)))
        }
        (Shape::Exists, KvResult::Reply(DataReply::Status(t))) => {
            Reply::Integer(i64::from(t != b"none"))
        }
        (Shape::Sum, KvResult::Many(Some(results))) => {
            let mut total = 0;
            for r in results {
                match r {
                    Ok(KvResult::Deleted(true)) => total += 1,
                    Ok(KvResult::Reply(DataReply::Status(t))) if t != b"none" => total += 1,
                    Ok(_) => {}
                    Err(e) => return kv_error(e),
                }
            }
            Reply::Integer(total)
        }
        (_, other) => Reply::error(format!("ERR internal: unexpected result {other:?}")),
    }
}
