//! List operations: `LPUSH`, `RPUSH`, `LPUSHX`, `RPUSHX`, `LPOP`, `RPOP` (with counts),
//! `LRANGE`, `LLEN`, `LINDEX`, `LSET`, `LREM`, `LTRIM`, `LINSERT`, `LPOS`, and `LMOVE`
//! (`RPOPLPUSH`) within a shard

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::{Ctx, DataReply, TYPE_LIST, index_range};
use crate::shard::ShardStore;
use crate::shard::ops::{Bytes, KvError};

/// An operation on a list
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ListOp {
    /// Push values at the head (`left`) or tail; the new length (`only_existing`: the `X`
    /// forms, which push only onto a list that exists and answer 0 otherwise)
    Push {
        /// The values, pushed one after another
        values: Vec<Bytes>,
        /// At the head
        left: bool,
        /// Only onto an existing list
        only_existing: bool,
    },
    /// Pop from the head (`left`) or tail: one value without a count, an array with one
    Pop {
        /// From the head
        left: bool,
        /// The count given, if any
        count: Option<u64>,
    },
    /// Elements `start..=stop` (`LRANGE`; negative from the end)
    Range {
        /// First position
        start: i64,
        /// Last position
        stop: i64,
    },
    /// The length (`LLEN`)
    Len,
    /// The element at a position (`LINDEX`)
    Index {
        /// The position (negative from the end)
        index: i64,
    },
    /// Replace the element at a position (`LSET`)
    Set {
        /// The position (negative from the end)
        index: i64,
        /// The new value
        value: Bytes,
    },
    /// Remove elements equal to `value`: the first `count` from the head (positive), from
    /// the tail (negative), or all (0) (`LREM`)
    Rem {
        /// How many, and from where
        count: i64,
        /// The value
        value: Bytes,
    },
    /// Keep only `start..=stop` (`LTRIM`)
    Trim {
        /// First position kept
        start: i64,
        /// Last position kept
        stop: i64,
    },
    /// Insert `value` before or after the first `pivot` (`LINSERT`)
    Insert {
        /// Before the pivot (else after)
        before: bool,
        /// The element to insert next to
        pivot: Bytes,
        /// The new element
        value: Bytes,
    },
    /// Positions of `value` (`LPOS` with `RANK`, `COUNT`, `MAXLEN`)
    Pos {
        /// The value
        value: Bytes,
        /// Which match to start from (1: the first; negative: from the tail)
        rank: i64,
        /// How many matches to answer (`None`: one, as an integer; 0: all)
        count: Option<u64>,
        /// How many elements to look at (0: all)
        max_len: u64,
    },
}

impl ListOp {
    /// Whether it only reads
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            ListOp::Range { .. } | ListOp::Len | ListOp::Index { .. } | ListOp::Pos { .. }
        )
    }
}

fn position(index: i64, len: usize) -> Option<usize> {
    let i = if index < 0 { len as i64 + index } else { index };
    (0..len as i64).contains(&i).then_some(i as usize)
}

pub(super) fn apply<S: ShardStore>(
    ctx: &mut Ctx<'_, S>,
    key: &[u8],
    op: &ListOp,
) -> Result<DataReply, KvError> {
    let found = ctx.items(key, TYPE_LIST)?;
    let exists = found.is_some();
    let (mut list, at) = found.unwrap_or_default();
    let save =
        |ctx: &mut Ctx<'_, S>, list: &[Bytes]| ctx.save(key, TYPE_LIST, list, list.len(), at);
    match op {
        ListOp::Push {
            values,
            left,
            only_existing,
        } => {
            if *only_existing && !exists {
                return Ok(DataReply::Int(0));
            }
            if list.len().saturating_add(values.len()) > ctx.limits.max_collection_items as usize {
                return Err(KvError::TooManyItems {
                    max_items: ctx.limits.max_collection_items,
                });
            }
            if *left {
                let mut head: Vec<Bytes> = values.iter().rev().cloned().collect();
                head.append(&mut list);
                list = head;
            } else {
                list.extend(values.iter().cloned());
            }
            save(ctx, &list)?;
            Ok(DataReply::Int(list.len() as i64))
        }
        ListOp::Pop { left, count } => {
            if !exists {
                return Ok(if count.is_some() {
                    DataReply::NilArray
                } else {
                    DataReply::Nil
                });
            }
            let n = count.unwrap_or(1).min(list.len() as u64) as usize;
            let popped: Vec<Bytes> = if *left {
                list.drain(..n).collect()
            } else {
                let mut tail: Vec<Bytes> = list.drain(list.len() - n..).collect();
                tail.reverse();
                tail
            };
            save(ctx, &list)?;
            Ok(DataReply::popped(popped, count.is_some()))
        }
        ListOp::Range { start, stop } => Ok(match index_range(*start, *stop, list.len()) {
            Some((a, b)) => DataReply::bulks(list[a..=b].iter().map(Vec::as_slice)),
            None => DataReply::Array(Vec::new()),
        }),
        ListOp::Len => Ok(DataReply::Int(list.len() as i64)),
        ListOp::Index { index } => Ok(position(*index, list.len())
            .map_or(DataReply::Nil, |i| DataReply::Bulk(list[i].clone()))),
        ListOp::Set { index, value } => {
            if !exists {
                return Err(KvError::NoSuchKey);
            }
            let i = position(*index, list.len()).ok_or(KvError::IndexOutOfRange)?;
            list[i] = value.clone();
            save(ctx, &list)?;
            Ok(DataReply::Ok)
        }
        ListOp::Rem { count, value } => {
            let limit = if *count == 0 {
                usize::MAX
            } else {
                count.unsigned_abs() as usize
            };
            let mut removed = 0;
            if *count >= 0 {
                list.retain(|v| {
                    let drop = removed < limit && v == value;
                    removed += usize::from(drop);
                    !drop
                });
            } else {
                list.reverse();
                list.retain(|v| {
                    let drop = removed < limit && v == value;
                    removed += usize::from(drop);
                    !drop
                });
                list.reverse();
            }
            if removed > 0 {
                save(ctx, &list)?;
            }
            Ok(DataReply::Int(removed as i64))
        }
        ListOp::Trim { start, stop } => {
            if exists {
                list = match index_range(*start, *stop, list.len()) {
                    Some((a, b)) => list[a..=b].to_vec(),
                    None => Vec::new(),
                };
                save(ctx, &list)?;
            }
            Ok(DataReply::Ok)
        }
        ListOp::Insert {
            before,
            pivot,
            value,
        } => {
            if !exists {
                return Ok(DataReply::Int(0));
            }
            let Some(i) = list.iter().position(|v| v == pivot) else {
                return Ok(DataReply::Int(-1));
            };
            list.insert(if *before { i } else { i + 1 }, value.clone());
            save(ctx, &list)?;
            Ok(DataReply::Int(list.len() as i64))
        }
        ListOp::Pos {
            value,
            rank,
            count,
            max_len,
        } => {
            let limit = if *max_len == 0 {
                list.len()
            } else {
                (*max_len as usize).min(list.len())
            };
            let order: Vec<usize> = if *rank < 0 {
                (list.len() - limit..list.len()).rev().collect()
            } else {
                (0..limit).collect()
            };
            let skip = (rank.unsigned_abs() as usize).saturating_sub(1);
            let wanted = match count {
                None => 1,
                Some(0) => usize::MAX,
                Some(n) => *n as usize,
            };
            let hits: Vec<DataReply> = order
                .into_iter()
                .filter(|&i| list[i] == *value)
                .skip(skip)
                .take(wanted)
                .map(|i| DataReply::Int(i as i64))
                .collect();
            Ok(match count {
                None => hits.into_iter().next().unwrap_or(DataReply::Nil),
                Some(_) => DataReply::Array(hits),
            })
        }
    }
}

/// `LMOVE source destination LEFT|RIGHT LEFT|RIGHT` (both keys in one shard): the element
/// moved, or nil when the source is empty
pub(crate) fn move_element<S: ShardStore>(
    ctx: &mut Ctx<'_, S>,
    from: &[u8],
    to: &[u8],
    from_left: bool,
    to_left: bool,
) -> Result<DataReply, KvError> {
    let Some((mut source, source_at)) = ctx.items(from, TYPE_LIST)? else {
        return Ok(DataReply::Nil);
    };
    if source.is_empty() {
        return Ok(DataReply::Nil); // a damaged value: nothing to move
    }
    // The destination's type is checked before anything changes.
    let dest = ctx.items(to, TYPE_LIST)?;
    let element = if from_left {
        source.remove(0)
    } else {
        source.pop().unwrap_or_default()
    };
    let push = |list: &mut Vec<Bytes>| {
        if to_left {
            list.insert(0, element.clone());
        } else {
            list.push(element.clone());
        }
    };
    if from == to {
        push(&mut source);
        let n = source.len();
        ctx.save(to, TYPE_LIST, &source, n, source_at)?;
        return Ok(DataReply::Bulk(element));
    }
    let (mut dest, dest_at) = dest.unwrap_or_default();
    push(&mut dest);
    // Both fit, or neither changes.
    ctx.check(&dest, dest.len())?;
    let n = source.len();
    ctx.save(from, TYPE_LIST, &source, n, source_at)?;
    let n = dest.len();
    ctx.save(to, TYPE_LIST, &dest, n, dest_at)?;
    Ok(DataReply::Bulk(element))
}
