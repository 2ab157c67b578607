//! Expiry and the string commands beyond `GET`/`SET`: `SET`'s `EX`/`PX`/`EXAT`/`PXAT`/
//! `KEEPTTL`, `SETEX`, `PSETEX`, `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT` (with
//! `NX`/`XX`/`GT`/`LT`), `TTL`, `PTTL`, `EXPIRETIME`, `PEXPIRETIME`, `PERSIST`, `GETDEL`,
//! `GETEX`, `STRLEN`, `GETRANGE`, `SETRANGE`, `TYPE`
//!
//! Times are decided in the core: a relative time (`EX 10`) travels as such and the group's
//! leader adds it to its own clock when it proposes the write, so every replica stores the
//! same absolute time (see `shale_core::shard::value`).

use shale_core::shard::{ExpireCondition, Expiry, KvOp, SetCondition};

use super::commands::{not_integer, parse_i64, syntax_error, wrong_args};
use super::plan::{Planned, Shape, TtlUnit};
use crate::resp::Reply;

/// The largest expiry Redis accepts, in milliseconds (so that adding the clock cannot
/// overflow)
const MAX_EXPIRE_MS: i64 = i64::MAX / 2;

fn invalid_expire(command: &str) -> Reply {
    Reply::error(format!(
        "ERR invalid expire time in '{}' command",
        command.to_ascii_lowercase()
    ))
}

/// `value` in `unit_ms` milliseconds as a relative or absolute expiry; `None` when out of
/// range (`strictly_positive`: zero and negative are refused too, as `SET EX` does)
fn expiry_of(value: i64, unit_ms: i64, absolute: bool, strictly_positive: bool) -> Option<Expiry> {
    if strictly_positive && value <= 0 {
        return None;
    }
    let ms = value.checked_mul(unit_ms)?;
    if ms > MAX_EXPIRE_MS {
        return None;
    }
    // A time already past (negative) deletes the key: any absolute time before now does.
    Some(match (absolute, u64::try_from(ms)) {
        (true, Ok(at)) => Expiry::At(at),
        (false, Ok(d)) => Expiry::In(d),
        (_, Err(_)) => Expiry::At(0),
    })
}

/// Parses `EX s`, `PX ms`, `EXAT s`, `PXAT ms` (and `KEEPTTL` or `PERSIST` where allowed)
/// from `options`; the expiry and the options left over
pub(crate) fn parse_set_options(
    command: &str,
    options: &[Vec<u8>],
) -> Result<(SetCondition, Expiry, bool), Reply> {
    let mut condition = SetCondition::Always;
    let mut expiry = None;
    let mut get = false;
    let mut i = 0;
    while i < options.len() {
        let option = options[i].to_ascii_uppercase();
        match option.as_slice() {
            b"NX" if condition == SetCondition::Always => condition = SetCondition::IfAbsent,
            b"XX" if condition == SetCondition::Always => condition = SetCondition::IfPresent,
            b"GET" => get = true,
            b"KEEPTTL" if expiry.is_none() => expiry = Some(Expiry::Keep),
            b"EX" | b"PX" | b"EXAT" | b"PXAT" if expiry.is_none() => {
                let Some(value) = options.get(i + 1) else {
                    return Err(syntax_error());
                };
                i += 1;
                let Some(n) = parse_i64(value) else {
                    return Err(not_integer());
                };
                let unit = if option.starts_with(b"P") { 1 } else { 1000 };
                let absolute = option.ends_with(b"AT");
                expiry = Some(
                    expiry_of(n, unit, absolute, true).ok_or_else(|| invalid_expire(command))?,
                );
            }
            _ => return Err(syntax_error()),
        }
        i += 1;
    }
    Ok((condition, expiry.unwrap_or(Expiry::Clear), get))
}

/// The plan of one of this module's commands, `None` if `name` is not one of them
pub(crate) fn plan(name: &str, args: &[Vec<u8>]) -> Option<Result<Planned, Reply>> {
    let argc = args.len();
    let key = || args[1].clone();
    let planned = |op, shape| Some(Ok(Planned::new(op, shape)));
    match name {
        "SETEX" | "PSETEX" if argc == 4 => {
            let unit = if name == "SETEX" { 1000 } else { 1 };
            let Some(n) = parse_i64(&args[2]) else {
                return Some(Err(not_integer()));
            };
            let Some(expiry) = expiry_of(n, unit, false, true) else {
                return Some(Err(invalid_expire(name)));
            };
            let op = KvOp::Set {
                key: key(),
                value: args[3].clone(),
                condition: SetCondition::Always,
                expiry,
            };
            planned(op, Shape::Ok)
        }
        "EXPIRE" | "PEXPIRE" | "EXPIREAT" | "PEXPIREAT" if argc == 3 || argc == 4 => {
            let Some(n) = parse_i64(&args[2]) else {
                return Some(Err(not_integer()));
            };
            let unit = if name.starts_with('P') { 1 } else { 1000 };
            let Some(expiry) = expiry_of(n, unit, name.ends_with("AT"), false) else {
                return Some(Err(invalid_expire(name)));
            };
            let condition = match args.get(3).map(|a| a.to_ascii_uppercase()).as_deref() {
                None => ExpireCondition::Always,
                Some(b"NX") => ExpireCondition::IfNone,
                Some(b"XX") => ExpireCondition::IfSome,
                Some(b"GT") => ExpireCondition::IfLater,
                Some(b"LT") => ExpireCondition::IfEarlier,
                Some(other) => {
                    return Some(Err(Reply::error(format!(
                        "ERR Unsupported option {}",
                        String::from_utf8_lossy(other)
                    ))));
                }
            };
            let op = KvOp::Expire {
                key: key(),
                expiry,
                condition,
            };
            planned(op, Shape::Flag)
        }
        "PERSIST" if argc == 2 => planned(KvOp::Persist { key: key() }, Shape::Flag),
        "TTL" | "PTTL" | "EXPIRETIME" | "PEXPIRETIME" if argc == 2 => {
            let unit = match name {
                "TTL" => TtlUnit::Seconds,
                "PTTL" => TtlUnit::Millis,
                "EXPIRETIME" => TtlUnit::At,
                _ => TtlUnit::AtMillis,
            };
            planned(KvOp::ReadExpiry { key: key() }, Shape::Ttl(unit))
        }
        "GETDEL" if argc == 2 => planned(KvOp::GetDel { key: key() }, Shape::Bulk),
        "GETEX" if argc >= 2 => {
            let expiry = match args.get(2).map(|a| a.to_ascii_uppercase()).as_deref() {
                None => Expiry::Keep,
                Some(b"PERSIST") if argc == 3 => Expiry::Clear,
                Some(_) => match parse_set_options(name, &args[2..]) {
                    Ok((SetCondition::Always, expiry, false)) if expiry != Expiry::Keep => expiry,
                    Ok(_) => return Some(Err(syntax_error())),
                    Err(reply) => return Some(Err(reply)),
                },
            };
            planned(KvOp::GetEx { key: key(), expiry }, Shape::Bulk)
        }
        "STRLEN" if argc == 2 => planned(KvOp::Get { key: key() }, Shape::StrLen),
        "TYPE" if argc == 2 => planned(KvOp::Type { key: key() }, Shape::Data),
        "GETRANGE" | "SUBSTR" if argc == 4 => {
            let (Some(start), Some(end)) = (parse_i64(&args[2]), parse_i64(&args[3])) else {
                return Some(Err(not_integer()));
            };
            planned(KvOp::Get { key: key() }, Shape::Range(start, end))
        }
        "SETRANGE" if argc == 4 => {
            let Some(offset) = parse_i64(&args[2]) else {
                return Some(Err(not_integer()));
            };
            let Ok(offset) = u64::try_from(offset) else {
                return Some(Err(Reply::error("ERR offset is out of range")));
            };
            let op = KvOp::SetRange {
                key: key(),
                offset,
                value: args[3].clone(),
            };
            planned(op, Shape::Length)
        }
        _ if KEY_COMMANDS.contains(&name) => Some(Err(wrong_args(name))),
        _ => None,
    }
}

/// `GETRANGE`'s substring: inclusive `start` and `end`, negative counting from the end
pub(crate) fn range(v: &[u8], start: i64, end: i64) -> Vec<u8> {
    let len = v.len() as i64;
    // Both from the end and in the wrong order: empty (before clamping, as Redis does).
    if len == 0 || (start < 0 && end < 0 && start > end) {
        return Vec::new();
    }
    let fix = |i: i64| if i < 0 { (len + i).max(0) } else { i };
    let (start, end) = (fix(start), fix(end).min(len - 1));
    if start > end || start >= len {
        return Vec::new();
    }
    v[start as usize..=end as usize].to_vec()
}

/// The keys the commands of this module name: the first argument
pub(crate) const KEY_COMMANDS: &[&str] = &[
    "SETEX",
    "PSETEX",
    "EXPIRE",
    "PEXPIRE",
    "EXPIREAT",
    "PEXPIREAT",
    "PERSIST",
    "TTL",
    "PTTL",
    "EXPIRETIME",
    "PEXPIRETIME",
    "GETDEL",
    "GETEX",
    "STRLEN",
    "TYPE",
    "GETRANGE",
    "SUBSTR",
    "SETRANGE",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getrange_counts_from_either_end_and_clamps() {
        assert_eq!(range(b"This is a string", 0, 3), b"This");
        assert_eq!(range(b"This is a string", -3, -1), b"ing");
        assert_eq!(range(b"This is a string", 0, -1), b"This is a string");
        assert_eq!(range(b"This is a string", 10, 100), b"string");
        assert_eq!(range(b"abc", 2, 1), b"");
        assert_eq!(range(b"", 0, -1), b"");
        assert_eq!(range(b"abc", -10, 0), b"a");
        assert_eq!(
            range(b"y", -1, -2),
            b"",
            "found by the comparison with Redis"
        );
    }

    #[test]
    fn expire_times_are_checked_as_redis_does() {
        assert_eq!(expiry_of(10, 1000, false, true), Some(Expiry::In(10_000)));
        assert_eq!(expiry_of(0, 1000, false, true), None, "SET EX 0 is refused");
        assert_eq!(expiry_of(-5, 1000, false, false), Some(Expiry::At(0)));
        assert_eq!(expiry_of(i64::MAX, 1000, false, false), None);
        assert_eq!(expiry_of(7, 1, true, true), Some(Expiry::At(7)));
    }
}
