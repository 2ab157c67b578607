//! Hash operations: `HSET`, `HSETNX`, `HGET`, `HMGET`, `HDEL`, `HGETALL`, `HKEYS`, `HVALS`,
//! `HLEN`, `HEXISTS`, `HSTRLEN`, `HINCRBY`, `HINCRBYFLOAT`, `HRANDFIELD`, `HSCAN`
//!
//! Fields keep the order they were first set in, as a small Redis hash does.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::{Ctx, DataReply, TYPE_HASH, check_count, check_pattern, glob_match};
use crate::shard::ShardStore;
use crate::shard::ops::{Bytes, KvError, format_float, parse_float, parse_i64};

/// An operation on a hash
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HashOp {
    /// Set fields; the number of new ones (`only_new`: `HSETNX`, set only an absent field)
    Set {
        /// Fields and values
        pairs: Vec<(Bytes, Bytes)>,
        /// Set a field only if it is absent
        only_new: bool,
    },
    /// The value of one field (`HGET`) or of several (`HMGET`, an array)
    Get {
        /// The fields
        fields: Vec<Bytes>,
        /// Answer an array
        many: bool,
    },
    /// Remove fields; the number removed
    Del {
        /// The fields
        fields: Vec<Bytes>,
    },
    /// Every field and value (`HGETALL`)
    GetAll,
    /// Every field (`HKEYS`)
    Keys,
    /// Every value (`HVALS`)
    Vals,
    /// The number of fields (`HLEN`)
    Len,
    /// Whether a field exists (`HEXISTS`)
    Exists {
        /// The field
        field: Bytes,
    },
    /// The length of a field's value (`HSTRLEN`)
    StrLen {
        /// The field
        field: Bytes,
    },
    /// Add to a field's integer value (`HINCRBY`)
    IncrBy {
        /// The field
        field: Bytes,
        /// The amount
        by: i64,
    },
    /// Add to a field's float value (`HINCRBYFLOAT`), the amount as the client wrote it
    IncrByFloat {
        /// The field
        field: Bytes,
        /// The amount
        by: Bytes,
    },
    /// Random fields (`HRANDFIELD`): one without a count, else up to `count` distinct
    /// (positive) or `-count` with repeats (negative)
    RandField {
        /// The count given, if any
        count: Option<i64>,
        /// With their values
        with_values: bool,
    },
    /// Fields and values matching a pattern, all at once (`HSCAN`, cursor 0 back)
    Scan {
        /// `MATCH` pattern
        pattern: Option<Bytes>,
    },
}

impl HashOp {
    /// Whether it only reads
    pub fn is_read(&self) -> bool {
        !matches!(
            self,
            HashOp::Set { .. }
                | HashOp::Del { .. }
                | HashOp::IncrBy { .. }
                | HashOp::IncrByFloat { .. }
        )
    }
}

/// The hash's fields and values as pairs
fn pairs(items: Vec<Bytes>) -> Vec<(Bytes, Bytes)> {
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(f), Some(v)) = (it.next(), it.next()) {
        out.push((f, v));
    }
    out
}

fn flatten(pairs: &[(Bytes, Bytes)]) -> Vec<Bytes> {
    pairs
        .iter()
        .flat_map(|(f, v)| [f.clone(), v.clone()])
        .collect()
}

pub(super) fn apply<S: ShardStore>(
    ctx: &mut Ctx<'_, S>,
    key: &[u8],
    op: &HashOp,
) -> Result<DataReply, KvError> {
    let found = ctx.items(key, TYPE_HASH)?;
    let exists = found.is_some();
    let (items, at) = found.unwrap_or_default();
    let mut hash = pairs(items);
    let find = |hash: &[(Bytes, Bytes)], f: &[u8]| hash.iter().position(|(k, _)| k == f);
    let save = |ctx: &mut Ctx<'_, S>, hash: &[(Bytes, Bytes)]| {
        ctx.save(key, TYPE_HASH, &flatten(hash), hash.len(), at)
    };
    match op {
        HashOp::Set { pairs, only_new } => {
            // More fields than a hash may hold: refused before any work per field.
            if pairs.len() > ctx.limits.max_collection_items as usize {
                return Err(KvError::TooManyItems {
                    max_items: ctx.limits.max_collection_items,
                });
            }
            let mut index: BTreeMap<Bytes, usize> = hash
                .iter()
                .enumerate()
                .map(|(i, (f, _))| (f.clone(), i))
                .collect();
            let mut added = 0;
            for (f, v) in pairs {
                match index.get(f) {
                    Some(&i) if !only_new => hash[i].1 = v.clone(),
                    Some(_) => {}
                    None => {
                        index.insert(f.clone(), hash.len());
                        hash.push((f.clone(), v.clone()));
                        added += 1;
                    }
                }
            }
            if added > 0 || !only_new {
                save(ctx, &hash)?;
            }
            Ok(DataReply::Int(added))
        }
        HashOp::Get { fields, many } => {
            let value = |f: &Bytes| match find(&hash, f) {
                Some(i) => DataReply::Bulk(hash[i].1.clone()),
                None => DataReply::Nil,
            };
            if *many {
                Ok(DataReply::Array(fields.iter().map(value).collect()))
            } else {
                Ok(fields.first().map_or(DataReply::Nil, value))
            }
        }
        HashOp::Del { fields } => {
            let before = hash.len();
            let gone: BTreeSet<&Bytes> = fields.iter().collect();
            hash.retain(|(f, _)| !gone.contains(f));
            let removed = before - hash.len();
            if removed > 0 {
                save(ctx, &hash)?;
            }
            Ok(DataReply::Int(removed as i64))
        }
        HashOp::GetAll => Ok(DataReply::bulks(
            hash.iter().flat_map(|(f, v)| [f.as_slice(), v.as_slice()]),
        )),
        HashOp::Keys => Ok(DataReply::bulks(hash.iter().map(|(f, _)| f.as_slice()))),
        HashOp::Vals => Ok(DataReply::bulks(hash.iter().map(|(_, v)| v.as_slice()))),
        HashOp::Len => Ok(DataReply::Int(hash.len() as i64)),
        HashOp::Exists { field } => Ok(DataReply::Int(i64::from(find(&hash, field).is_some()))),
        HashOp::StrLen { field } => Ok(DataReply::Int(
            find(&hash, field).map_or(0, |i| hash[i].1.len() as i64),
        )),
        HashOp::IncrBy { field, by } => {
            let i = find(&hash, field);
            let current = match i {
                Some(i) => parse_i64(&hash[i].1).ok_or(KvError::HashNotInteger)?,
                None => 0,
            };
            let next = current.checked_add(*by).ok_or(KvError::Overflow)?;
            let text = alloc::format!("{next}").into_bytes();
            match i {
                Some(i) => hash[i].1 = text,
                None => hash.push((field.clone(), text)),
            }
            save(ctx, &hash)?;
            Ok(DataReply::Int(next))
        }
        HashOp::IncrByFloat { field, by } => {
            let by = parse_float(by).ok_or(KvError::NotAFloat)?;
            let i = find(&hash, field);
            let current = match i {
                Some(i) => parse_float(&hash[i].1).ok_or(KvError::HashNotFloat)?,
                None => 0.0,
            };
            let next = current + by;
            if !next.is_finite() {
                return Err(KvError::NanOrInfinity);
            }
            let text = format_float(next).into_bytes();
            match i {
                Some(i) => hash[i].1 = text.clone(),
                None => hash.push((field.clone(), text.clone())),
            }
            save(ctx, &hash)?;
            Ok(DataReply::Bulk(text))
        }
        HashOp::RandField { count, with_values } => {
            check_count(ctx, *count)?;
            let mut rng = ctx.rng();
            let Some(count) = *count else {
                if hash.is_empty() {
                    return Ok(DataReply::Nil);
                }
                let i = rng.below(hash.len() as u64) as usize;
                return Ok(DataReply::Bulk(hash[i].0.clone()));
            };
            if !exists {
                return Ok(DataReply::Array(Vec::new()));
            }
            let picks = super::set::pick(&mut rng, hash.len(), count);
            let mut out = Vec::new();
            for i in picks {
                out.push(DataReply::Bulk(hash[i].0.clone()));
                if *with_values {
                    out.push(DataReply::Bulk(hash[i].1.clone()));
                }
            }
            Ok(DataReply::Array(out))
        }
        HashOp::Scan { pattern } => {
            check_pattern(pattern.as_deref())?;
            let matching = hash
                .iter()
                .filter(|(f, _)| pattern.as_ref().is_none_or(|p| glob_match(p, f)))
                .flat_map(|(f, v)| [f.as_slice(), v.as_slice()]);
            Ok(DataReply::Array(alloc::vec![
                DataReply::Bulk(b"0".to_vec()),
                DataReply::bulks(matching)
            ]))
        }
    }
}
