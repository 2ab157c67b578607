//! Set operations: `SADD`, `SREM`, `SMEMBERS`, `SISMEMBER`, `SMISMEMBER`, `SCARD`, `SPOP`,
//! `SRANDMEMBER`, `SSCAN`, and `SINTER`, `SUNION`, `SDIFF` with their `STORE` forms
//!
//! Members keep the order they were added in.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::{Ctx, DataReply, TYPE_SET, check_count, check_pattern, glob_match};
use crate::rng::Rng;
use crate::shard::ShardStore;
use crate::shard::ops::{Bytes, KvError};

/// An operation on one set
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SetOp {
    /// Add members; the number new
    Add {
        /// The members
        members: Vec<Bytes>,
    },
    /// Remove members; the number removed
    Rem {
        /// The members
        members: Vec<Bytes>,
    },
    /// Every member (`SMEMBERS`)
    Members,
    /// Whether each member is in the set (`SISMEMBER`: one, an integer; `SMISMEMBER`: an
    /// array)
    IsMember {
        /// The members
        members: Vec<Bytes>,
        /// Answer an array
        many: bool,
    },
    /// The number of members (`SCARD`)
    Card,
    /// Remove and answer random members (`SPOP`; one without a count)
    Pop {
        /// The count given, if any
        count: Option<u64>,
    },
    /// Random members (`SRANDMEMBER`; see [`HashOp::RandField`](super::HashOp::RandField)
    /// for the count)
    RandMember {
        /// The count given, if any
        count: Option<i64>,
    },
    /// Members matching a pattern, all at once (`SSCAN`, cursor 0 back)
    Scan {
        /// `MATCH` pattern
        pattern: Option<Bytes>,
    },
}

impl SetOp {
    /// Whether it only reads
    pub fn is_read(&self) -> bool {
        !matches!(
            self,
            SetOp::Add { .. } | SetOp::Rem { .. } | SetOp::Pop { .. }
        )
    }
}

/// How [`KvOp::SetCombine`](crate::shard::KvOp::SetCombine) combines its sets
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Combine {
    /// Members of every set (`SINTER`)
    Inter,
    /// Members of any set (`SUNION`)
    Union,
    /// Members of the first set and of no other (`SDIFF`)
    Diff,
}

/// `count` positions among `len` as `SRANDMEMBER` picks them: distinct ones (up to `len`)
/// for a positive count, `-count` with repeats for a negative one
pub(crate) fn pick(rng: &mut Rng, len: usize, count: i64) -> Vec<usize> {
    if len == 0 || count == 0 {
        return Vec::new();
    }
    if count < 0 {
        return (0..count.unsigned_abs())
            .map(|_| rng.below(len as u64) as usize)
            .collect();
    }
    let mut order: Vec<usize> = (0..len).collect();
    // A partial Fisher-Yates shuffle: the first `count` positions are a random choice.
    let take = (count as usize).min(len);
    for i in 0..take {
        let j = i + rng.below((len - i) as u64) as usize;
        order.swap(i, j);
    }
    order.truncate(take);
    order
}

pub(super) fn apply<S: ShardStore>(
    ctx: &mut Ctx<'_, S>,
    key: &[u8],
    op: &SetOp,
) -> Result<DataReply, KvError> {
    let (mut set, at) = ctx.items(key, TYPE_SET)?.unwrap_or_default();
    match op {
        SetOp::Add { members } => {
            // More members than a set may hold: refused before any work per member.
            if members.len() > ctx.limits.max_collection_items as usize {
                return Err(KvError::TooManyItems {
                    max_items: ctx.limits.max_collection_items,
                });
            }
            let mut present: BTreeSet<Bytes> = set.iter().cloned().collect();
            let mut added = 0;
            for m in members {
                if present.insert(m.clone()) {
                    set.push(m.clone());
                    added += 1;
                }
            }
            if added > 0 {
                let n = set.len();
                ctx.save(key, TYPE_SET, &set, n, at)?;
            }
            Ok(DataReply::Int(added))
        }
        SetOp::Rem { members } => {
            let before = set.len();
            let gone: BTreeSet<&Bytes> = members.iter().collect();
            set.retain(|m| !gone.contains(m));
            let removed = before - set.len();
            if removed > 0 {
                let n = set.len();
                ctx.save(key, TYPE_SET, &set, n, at)?;
            }
            Ok(DataReply::Int(removed as i64))
        }
        SetOp::Members => Ok(DataReply::bulks(set.iter().map(Vec::as_slice))),
        SetOp::IsMember { members, many } => {
            let set: BTreeSet<&Bytes> = set.iter().collect();
            let answers: Vec<DataReply> = members
                .iter()
                .map(|m| DataReply::Int(i64::from(set.contains(m))))
                .collect();
            if *many {
                Ok(DataReply::Array(answers))
            } else {
                Ok(answers.into_iter().next().unwrap_or(DataReply::Int(0)))
            }
        }
        SetOp::Card => Ok(DataReply::Int(set.len() as i64)),
        SetOp::Pop { count } => {
            let mut rng = ctx.rng();
            let take = count.unwrap_or(1).min(set.len() as u64) as i64;
            let mut picks = pick(&mut rng, set.len(), take);
            let popped: Vec<Bytes> = picks.iter().map(|&i| set[i].clone()).collect();
            picks.sort_unstable();
            for &i in picks.iter().rev() {
                set.remove(i);
            }
            if !popped.is_empty() {
                let n = set.len();
                ctx.save(key, TYPE_SET, &set, n, at)?;
            }
            Ok(DataReply::popped(popped, count.is_some()))
        }
        SetOp::RandMember { count } => {
            check_count(ctx, *count)?;
            let mut rng = ctx.rng();
            match count {
                None if set.is_empty() => Ok(DataReply::Nil),
                None => Ok(DataReply::Bulk(
                    set[rng.below(set.len() as u64) as usize].clone(),
                )),
                Some(count) => Ok(DataReply::bulks(
                    pick(&mut rng, set.len(), *count)
                        .into_iter()
                        .map(|i| set[i].as_slice()),
                )),
            }
        }
        SetOp::Scan { pattern } => {
            check_pattern(pattern.as_deref())?;
            let matching = set
                .iter()
                .filter(|m| pattern.as_ref().is_none_or(|p| glob_match(p, m)))
                .map(Vec::as_slice);
            Ok(DataReply::Array(alloc::vec![
                DataReply::Bulk(b"0".to_vec()),
                DataReply::bulks(matching)
            ]))
        }
    }
}

/// `SINTER`, `SUNION`, `SDIFF` over `keys` (all in one shard), stored at `store` when given
/// (the number of members stored), answered otherwise
pub(crate) fn combine<S: ShardStore>(
    ctx: &mut Ctx<'_, S>,
    keys: &[Bytes],
    how: Combine,
    store: Option<&[u8]>,
) -> Result<DataReply, KvError> {
    let mut sets = Vec::with_capacity(keys.len());
    for key in keys {
        sets.push(
            ctx.items(key, TYPE_SET)?
                .map(|(s, _)| s)
                .unwrap_or_default(),
        );
    }
    let mut out: Vec<Bytes> = Vec::new();
    let lookup: Vec<BTreeSet<&Bytes>> = sets.iter().map(|s| s.iter().collect()).collect();
    match how {
        Combine::Union => {
            let mut seen = BTreeSet::new();
            for set in &sets {
                for m in set {
                    if seen.insert(m) {
                        out.push(m.clone());
                    }
                }
            }
        }
        Combine::Inter => {
            if let (Some(first), Some((_, rest))) = (sets.first(), lookup.split_first()) {
                out = first
                    .iter()
                    .filter(|m| rest.iter().all(|s| s.contains(m)))
                    .cloned()
                    .collect();
            }
        }
        Combine::Diff => {
            if let (Some(first), Some((_, rest))) = (sets.first(), lookup.split_first()) {
                out = first
                    .iter()
                    .filter(|m| rest.iter().all(|s| !s.contains(m)))
                    .cloned()
                    .collect();
            }
        }
    }
    match store {
        Some(dest) => {
            let n = out.len();
            // Checked before the destination goes: a result too large changes nothing.
            if n > 0 {
                ctx.check(&out, n)?;
            }
            ctx.store.remove(dest);
            ctx.save(dest, TYPE_SET, &out, n, None)?;
            Ok(DataReply::Int(n as i64))
        }
        None => Ok(DataReply::bulks(out.iter().map(Vec::as_slice))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_are_distinct_for_positive_counts_and_repeat_for_negative_ones() {
        let mut rng = Rng::new(7);
        let mut p = pick(&mut rng, 5, 10);
        p.sort_unstable();
        assert_eq!(p, [0, 1, 2, 3, 4]);
        assert_eq!(pick(&mut rng, 5, 3).len(), 3);
        assert_eq!(pick(&mut rng, 2, -6).len(), 6);
        assert!(pick(&mut rng, 0, 3).is_empty());
        assert_eq!(pick(&mut Rng::new(1), 9, 4), pick(&mut Rng::new(1), 9, 4));
    }
}
