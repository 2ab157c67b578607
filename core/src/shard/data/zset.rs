//! Sorted-set operations: `ZADD` (with `NX`, `XX`, `GT`, `LT`, `CH`, `INCR`), `ZREM`,
//! `ZSCORE`, `ZMSCORE`, `ZINCRBY`, `ZCARD`, `ZCOUNT`, `ZRANGE` (by rank, `BYSCORE`, `BYLEX`,
//! `REV`, `LIMIT`, `WITHSCORES`, and the `ZRANGEBYSCORE`/`ZREVRANGE` forms), `ZRANK`,
//! `ZREVRANK`, `ZPOPMIN`, `ZPOPMAX`, `ZSCAN`
//!
//! Members are kept in score order, ties by member bytes, as Redis orders them; each is
//! stored as the member and its score (8 bytes, a little-endian `f64`).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::{Ctx, DataReply, TYPE_ZSET, check_pattern, glob_match, index_range};
use crate::shard::ShardStore;
use crate::shard::ops::{Bytes, KvError, format_float, parse_float};

/// One end of a score range: a score, included or not
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreBound {
    /// The score (may be infinite)
    pub score: f64,
    /// Whether the score itself is outside the range (`(1.5`)
    pub exclusive: bool,
}

impl Eq for ScoreBound {}

impl core::hash::Hash for ScoreBound {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.score.to_bits().hash(state);
        self.exclusive.hash(state);
    }
}

impl ScoreBound {
    /// Parses `-inf`, `+inf`, `1.5` or `(1.5`
    pub fn parse(text: &[u8]) -> Option<ScoreBound> {
        let (exclusive, rest) = match text.split_first() {
            Some((b'(', rest)) => (true, rest),
            _ => (false, text),
        };
        Some(ScoreBound {
            score: parse_float(rest)?,
            exclusive,
        })
    }

    fn below(&self, score: f64) -> bool {
        if self.exclusive {
            self.score < score
        } else {
            self.score <= score
        }
    }

    fn above(&self, score: f64) -> bool {
        if self.exclusive {
            score < self.score
        } else {
            score <= self.score
        }
    }
}

/// One end of a lexical range: `-`, `+`, `[a` (included) or `(a` (excluded)
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LexBound {
    /// Below everything (`-`)
    Min,
    /// Above everything (`+`)
    Max,
    /// A member, included or not
    At(Bytes, bool),
}

impl LexBound {
    /// Parses `-`, `+`, `[member` or `(member`
    pub fn parse(text: &[u8]) -> Option<LexBound> {
        match text.split_first()? {
            (b'-', []) => Some(LexBound::Min),
            (b'+', []) => Some(LexBound::Max),
            (b'[', rest) => Some(LexBound::At(rest.to_vec(), false)),
            (b'(', rest) => Some(LexBound::At(rest.to_vec(), true)),
            _ => None,
        }
    }

    fn below(&self, m: &[u8]) -> bool {
        match self {
            LexBound::Min => true,
            LexBound::Max => false,
            LexBound::At(b, exclusive) => {
                if *exclusive {
                    b.as_slice() < m
                } else {
                    b.as_slice() <= m
                }
            }
        }
    }

    fn above(&self, m: &[u8]) -> bool {
        match self {
            LexBound::Min => false,
            LexBound::Max => true,
            LexBound::At(b, exclusive) => {
                if *exclusive {
                    m < b.as_slice()
                } else {
                    m <= b.as_slice()
                }
            }
        }
    }
}

/// Which members a [`ZSetOp::Range`] takes
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RangeBy {
    /// Positions `start..=stop` (negative from the end)
    Rank(i64, i64),
    /// Scores from `min` to `max`
    Score(ScoreBound, ScoreBound),
    /// Members from `min` to `max` (for members of one score)
    Lex(LexBound, LexBound),
}

/// `ZADD`'s options
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AddFlags {
    /// Only add new members
    pub nx: bool,
    /// Only update existing members
    pub xx: bool,
    /// Only update to a greater score
    pub gt: bool,
    /// Only update to a lesser score
    pub lt: bool,
    /// Count changed members, not only added ones
    pub ch: bool,
    /// Add the score to the member's (one pair), answering the new score
    pub incr: bool,
}

/// An operation on a sorted set
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ZSetOp {
    /// `ZADD key [flags] score member...` (scores as the client wrote them)
    Add {
        /// Score and member pairs
        pairs: Vec<(Bytes, Bytes)>,
        /// The options
        flags: AddFlags,
    },
    /// Remove members; the number removed
    Rem {
        /// The members
        members: Vec<Bytes>,
    },
    /// Scores of members (`ZSCORE`: one; `ZMSCORE`: an array)
    Score {
        /// The members
        members: Vec<Bytes>,
        /// Answer an array
        many: bool,
    },
    /// The number of members (`ZCARD`)
    Card,
    /// Members with scores in a range (`ZCOUNT`)
    Count {
        /// Lowest
        min: ScoreBound,
        /// Highest
        max: ScoreBound,
    },
    /// Members in a range, in order (or reversed), after `offset`, at most `count`
    Range {
        /// Which
        by: RangeBy,
        /// From the highest
        rev: bool,
        /// `LIMIT offset count` (count negative: all)
        limit: Option<(i64, i64)>,
        /// With their scores
        with_scores: bool,
    },
    /// A member's position (`ZRANK`, `ZREVRANK` with `rev`)
    Rank {
        /// The member
        member: Bytes,
        /// Counted from the highest
        rev: bool,
    },
    /// Remove and answer the lowest (or highest) members with their scores
    Pop {
        /// From the highest
        max: bool,
        /// How many (none given: one)
        count: Option<u64>,
    },
    /// Members and scores matching a pattern, all at once (`ZSCAN`, cursor 0 back)
    Scan {
        /// `MATCH` pattern
        pattern: Option<Bytes>,
    },
}

impl ZSetOp {
    /// Whether it only reads
    pub fn is_read(&self) -> bool {
        !matches!(
            self,
            ZSetOp::Add { .. } | ZSetOp::Rem { .. } | ZSetOp::Pop { .. }
        )
    }
}

type Entries = Vec<(f64, Bytes)>;

fn decode(items: Vec<Bytes>) -> Entries {
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(m), Some(s)) = (it.next(), it.next()) {
        let score = s
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0.0, f64::from_le_bytes);
        out.push((score, m));
    }
    out
}

fn sort(entries: &mut Entries) {
    entries.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
}

fn encode(entries: &Entries) -> Vec<Bytes> {
    entries
        .iter()
        .flat_map(|(s, m)| [m.clone(), s.to_le_bytes().to_vec()])
        .collect()
}

fn score_reply(score: f64) -> DataReply {
    DataReply::Bulk(format_float(score).into_bytes())
}

fn members_reply(entries: &[&(f64, Bytes)], with_scores: bool) -> DataReply {
    let mut out = Vec::new();
    for (s, m) in entries {
        out.push(DataReply::Bulk(m.clone()));
        if with_scores {
            out.push(score_reply(*s));
        }
    }
    DataReply::Array(out)
}

pub(super) fn apply<S: ShardStore>(
    ctx: &mut Ctx<'_, S>,
    key: &[u8],
    op: &ZSetOp,
) -> Result<DataReply, KvError> {
    let (items, at) = ctx.items(key, TYPE_ZSET)?.unwrap_or_default();
    let mut z = decode(items);
    let save = |ctx: &mut Ctx<'_, S>, z: &mut Entries| {
        sort(z);
        let n = z.len();
        ctx.save(key, TYPE_ZSET, &encode(z), n, at)
    };
    match op {
        ZSetOp::Add { pairs, flags } => {
            if pairs.len() > ctx.limits.max_collection_items as usize {
                return Err(KvError::TooManyItems {
                    max_items: ctx.limits.max_collection_items,
                });
            }
            let mut parsed = Vec::with_capacity(pairs.len());
            for (s, m) in pairs {
                parsed.push((parse_float(s).ok_or(KvError::NotAFloat)?, m));
            }
            let mut index: BTreeMap<Bytes, usize> = z
                .iter()
                .enumerate()
                .map(|(i, (_, m))| (m.clone(), i))
                .collect();
            let (mut added, mut changed) = (0, 0);
            let mut last = None;
            for (score, member) in parsed {
                match index.get(member) {
                    Some(&i) => {
                        if flags.nx {
                            continue;
                        }
                        let old = z[i].0;
                        let new = if flags.incr { old + score } else { score };
                        if new.is_nan() {
                            return Err(KvError::NotANumber);
                        }
                        if (flags.gt && new <= old) || (flags.lt && new >= old) {
                            continue;
                        }
                        if new != old {
                            z[i].0 = new;
                            changed += 1;
                        }
                        last = Some(new);
                    }
                    None => {
                        if flags.xx {
                            continue;
                        }
                        index.insert(member.clone(), z.len());
                        z.push((score, member.clone()));
                        added += 1;
                        last = Some(score);
                    }
                }
            }
            if added + changed > 0 {
                save(ctx, &mut z)?;
            }
            if flags.incr {
                return Ok(last.map_or(DataReply::Nil, score_reply));
            }
            Ok(DataReply::Int(if flags.ch {
                added + changed
            } else {
                added
            }))
        }
        ZSetOp::Rem { members } => {
            let gone: alloc::collections::BTreeSet<&Bytes> = members.iter().collect();
            let before = z.len();
            z.retain(|(_, m)| !gone.contains(m));
            let removed = before - z.len();
            if removed > 0 {
                save(ctx, &mut z)?;
            }
            Ok(DataReply::Int(removed as i64))
        }
        ZSetOp::Score { members, many } => {
            let score = |m: &Bytes| {
                z.iter()
                    .find(|(_, x)| x == m)
                    .map_or(DataReply::Nil, |(s, _)| score_reply(*s))
            };
            if *many {
                Ok(DataReply::Array(members.iter().map(score).collect()))
            } else {
                Ok(members.first().map_or(DataReply::Nil, score))
            }
        }
        ZSetOp::Card => Ok(DataReply::Int(z.len() as i64)),
        ZSetOp::Count { min, max } => Ok(DataReply::Int(
            z.iter()
                .filter(|(s, _)| min.below(*s) && max.above(*s))
                .count() as i64,
        )),
        ZSetOp::Range {
            by,
            rev,
            limit,
            with_scores,
        } => {
            let ordered: Vec<&(f64, Bytes)> = if *rev {
                z.iter().rev().collect()
            } else {
                z.iter().collect()
            };
            let picked: Vec<&(f64, Bytes)> = match by {
                RangeBy::Rank(start, stop) => match index_range(*start, *stop, ordered.len()) {
                    Some((a, b)) => ordered[a..=b].to_vec(),
                    None => Vec::new(),
                },
                RangeBy::Score(min, max) => ordered
                    .into_iter()
                    .filter(|(s, _)| min.below(*s) && max.above(*s))
                    .collect(),
                RangeBy::Lex(min, max) => ordered
                    .into_iter()
                    .filter(|(_, m)| min.below(m) && max.above(m))
                    .collect(),
            };
            let picked = match limit {
                Some((offset, count)) if *offset >= 0 => {
                    let taken = if *count < 0 {
                        usize::MAX
                    } else {
                        *count as usize
                    };
                    picked
                        .into_iter()
                        .skip(*offset as usize)
                        .take(taken)
                        .collect()
                }
                Some(_) => Vec::new(),
                None => picked,
            };
            Ok(members_reply(&picked, *with_scores))
        }
        ZSetOp::Rank { member, rev } => Ok(z
            .iter()
            .position(|(_, m)| m == member)
            .map_or(DataReply::Nil, |i| {
                DataReply::Int(if *rev { z.len() - 1 - i } else { i } as i64)
            })),
        ZSetOp::Pop { max, count } => {
            let n = count.unwrap_or(1).min(z.len() as u64) as usize;
            let popped: Vec<(f64, Bytes)> = if *max {
                let mut tail: Vec<_> = z.drain(z.len() - n..).collect();
                tail.reverse();
                tail
            } else {
                z.drain(..n).collect()
            };
            if n > 0 {
                save(ctx, &mut z)?;
            }
            let refs: Vec<&(f64, Bytes)> = popped.iter().collect();
            Ok(members_reply(&refs, true))
        }
        ZSetOp::Scan { pattern } => {
            check_pattern(pattern.as_deref())?;
            let matching: Vec<&(f64, Bytes)> = z
                .iter()
                .filter(|(_, m)| pattern.as_ref().is_none_or(|p| glob_match(p, m)))
                .collect();
            Ok(DataReply::Array(alloc::vec![
                DataReply::Bulk(b"0".to_vec()),
                members_reply(&matching, true)
            ]))
        }
    }
}
