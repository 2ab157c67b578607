//! A replica group's snapshot, streamed: records encoded from a frozen view a bounded piece at
//! a time, and decoded back into a group state from pieces of any size
//!
//! The snapshot is a sequence of records, each a little-endian `u32` length and a postcard
//! [`Record`]: one `Header` (the group, its configurations, limits and hand-over totals), then
//! for every shard slot a `Slot` record (status and pull progress) followed by that shard's
//! contents as [`ShardChunk`]s (the same chunks a hand-over moves, each about one piece's
//! budget), and a final `End`. Encoding reads from a view whose shards share their data with
//! the live state (see [`ShardState`]), so it can run on another thread while the group keeps
//! applying.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::state::{GroupState, HandoverTotals, PullProgress, ShardSlot, ShardStatus};
use crate::controller::{Configuration, GroupId, ShardId};
use crate::rsm::{RestoredState, SnapshotDecoder, SnapshotEncoder, SnapshotError};
use crate::shard::{ShardBuilder, ShardChunk, ShardCursor, ShardLimits};

/// The format of the records below; a snapshot of another format is refused
const FORMAT: u32 = 1;

/// Most bytes one record may announce (a chunk holds at most about a piece's budget plus one
/// key and value)
const MAX_RECORD_BYTES: usize = 256 << 20;

#[derive(Serialize, Deserialize)]
enum Record {
    Header {
        format: u32,
        gid: GroupId,
        config: Configuration,
        previous: Configuration,
        limits: ShardLimits,
        received: HandoverTotals,
    },
    Slot {
        shard: ShardId,
        status: ShardStatus,
        pull: PullProgress,
    },
    Chunk(ShardChunk),
    End,
}

/// The length a record's first four bytes announce
fn record_len(bytes: &[u8]) -> usize {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize
}

fn push_record(out: &mut Vec<u8>, record: &Record) {
    let bytes = postcard::to_allocvec(record).unwrap_or_default();
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&bytes);
}

/// Where the encoder stands
enum Position {
    Header,
    /// Slot `shard` next (its `Slot` record, then its chunks)
    Slot(ShardId),
    /// Inside the contents of slot `shard`, from `cursor`
    Contents(ShardId, ShardCursor),
    End,
    Done,
}

/// Encodes a frozen view of a [`GroupState`]
pub(crate) struct GroupSnapshotEncoder {
    view: GroupState,
    at: Position,
}

impl GroupSnapshotEncoder {
    pub(crate) fn new(view: GroupState) -> Self {
        GroupSnapshotEncoder {
            view,
            at: Position::Header,
        }
    }

    fn slot_after(&self, shard: Option<ShardId>) -> Position {
        let next = match shard {
            None => self.view.shards.keys().next(),
            Some(s) => self
                .view
                .shards
                .range((core::ops::Bound::Excluded(s), core::ops::Bound::Unbounded))
                .map(|(k, _)| k)
                .next(),
        };
        next.map_or(Position::End, |&s| Position::Slot(s))
    }
}

impl SnapshotEncoder for GroupSnapshotEncoder {
    fn encode(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> bool {
        let start = out.len();
        loop {
            let used = out.len() - start;
            if used > 0 && used >= max_bytes {
                return !matches!(self.at, Position::Done);
            }
            let budget = max_bytes.saturating_sub(used).max(1);
            self.at = match core::mem::replace(&mut self.at, Position::Done) {
                Position::Header => {
                    let v = &self.view;
                    push_record(
                        out,
                        &Record::Header {
                            format: FORMAT,
                            gid: v.gid,
                            config: v.config.clone(),
                            previous: v.previous.clone(),
                            limits: v.limits,
                            received: v.received,
                        },
                    );
                    self.slot_after(None)
                }
                Position::Slot(shard) => match self.view.shards.get(&shard) {
                    Some(slot) => {
                        push_record(
                            out,
                            &Record::Slot {
                                shard,
                                status: slot.status,
                                pull: slot.pull.clone(),
                            },
                        );
                        Position::Contents(shard, ShardCursor::START)
                    }
                    None => self.slot_after(Some(shard)),
                },
                Position::Contents(shard, cursor) => {
                    let Some(slot) = self.view.shards.get(&shard) else {
                        return false;
                    };
                    let chunk = slot.state.chunk(&cursor, budget);
                    let next = chunk.next.clone();
                    push_record(out, &Record::Chunk(chunk));
                    match next {
                        Some(next) => Position::Contents(shard, next),
                        None => self.slot_after(Some(shard)),
                    }
                }
                Position::End => {
                    push_record(out, &Record::End);
                    Position::Done
                }
                Position::Done => return false,
            };
        }
    }
}

/// Builds a [`GroupState`] from the records of a [`GroupSnapshotEncoder`]
#[derive(Default)]
pub(crate) struct GroupSnapshotDecoder {
    /// Bytes of a record not yet whole
    pending: Vec<u8>,
    /// Offset in the snapshot of `pending`'s first byte
    offset: u64,
    state: Option<GroupState>,
    /// The slot whose contents come now: its shard, status and pull, and its contents so far
    slot: Option<(ShardId, ShardStatus, PullProgress, ShardBuilder)>,
    shards: BTreeMap<ShardId, ShardSlot>,
    ended: bool,
}

impl GroupSnapshotDecoder {
    fn malformed(&self, reason: &'static str) -> SnapshotError {
        SnapshotError::Malformed {
            offset: self.offset,
            reason,
        }
    }

    fn close_slot(&mut self) {
        if let Some((shard, status, pull, builder)) = self.slot.take() {
            let slot = ShardSlot {
                status,
                state: builder.finish(),
                pull,
            };
            self.shards.insert(shard, slot);
        }
    }

    fn take(&mut self, record: Record) -> Result<(), SnapshotError> {
        if self.ended {
            return Err(self.malformed("a record after the end"));
        }
        match record {
            Record::Header {
                format,
                gid,
                config,
                previous,
                limits,
                received,
            } => {
                if format != FORMAT {
                    return Err(self.malformed("a snapshot format this version does not read"));
                }
                if self.state.is_some() {
                    return Err(self.malformed("a second header"));
                }
                let mut state = GroupState::new(gid, config.shards.len() as u32, limits);
                state.config = config;
                state.previous = previous;
                state.received = received;
                self.state = Some(state);
            }
            _ if self.state.is_none() => return Err(self.malformed("a record before the header")),
            Record::Slot {
                shard,
                status,
                pull,
            } => {
                self.close_slot();
                if self.shards.contains_key(&shard) {
                    return Err(self.malformed("a shard twice"));
                }
                self.slot = Some((shard, status, pull, ShardBuilder::default()));
            }
            Record::Chunk(chunk) => {
                let offset = self.offset;
                let Some((_, _, _, builder)) = self.slot.as_mut() else {
                    return Err(self.malformed("shard contents outside a shard"));
                };
                builder
                    .push(chunk)
                    .map_err(|reason| SnapshotError::Malformed { offset, reason })?;
            }
            Record::End => {
                self.close_slot();
                self.ended = true;
            }
        }
        Ok(())
    }
}

impl SnapshotDecoder for GroupSnapshotDecoder {
    fn decode(&mut self, mut bytes: &[u8]) -> Result<(), SnapshotError> {
        while !bytes.is_empty() {
            // First the record's length, then the record, taking only what each needs.
            let need = if self.pending.len() < 4 {
                4 - self.pending.len()
            } else {
                let len = record_len(&self.pending);
                if len > MAX_RECORD_BYTES {
                    return Err(self.malformed("a record longer than any snapshot writes"));
                }
                4 + len - self.pending.len()
            };
            let n = need.min(bytes.len());
            self.pending.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.pending.len() >= 4 && self.pending.len() == 4 + record_len(&self.pending) {
                let record: Record = postcard::from_bytes(&self.pending[4..])
                    .map_err(|_| self.malformed("a record does not decode"))?;
                self.take(record)?;
                self.offset += self.pending.len() as u64;
                self.pending.clear();
            }
        }
        Ok(())
    }

    fn finish(mut self: alloc::boxed::Box<Self>) -> Result<RestoredState, SnapshotError> {
        if !self.ended || !self.pending.is_empty() {
            return Err(SnapshotError::Truncated);
        }
        let mut state = self.state.take().ok_or(SnapshotError::Truncated)?;
        state.shards = core::mem::take(&mut self.shards);
        Ok(RestoredState::new(state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{ControllerCommand, ShardController};
    use crate::group::GroupCommand;
    use crate::rsm::{StateMachine, decode_all, encode_to_vec};
    use crate::shard::{ClientRequest, KvOp};
    use alloc::format;
    use alloc::vec;

    fn busy_group() -> GroupState {
        let mut ctl = ShardController::new(8);
        let c1 = ctl
            .apply(&ControllerCommand::Join(vec![(1, vec![1])]))
            .unwrap();
        let mut g = GroupState::new(1, 8, ShardLimits::default());
        g.apply(&GroupCommand::Reconfigure(c1));
        for i in 0..2000u64 {
            let op = KvOp::Put {
                key: format!("key-{i}").into_bytes(),
                value: vec![(i % 251) as u8; (i % 300) as usize],
            };
            let request = ClientRequest {
                stamp_ms: 0,
                client: 1 + i % 7,
                seq: 1 + i / 7,
                op,
            };
            g.apply(&GroupCommand::Client(request));
        }
        g
    }

    fn restore(bytes: &[u8], piece: usize) -> Result<GroupState, SnapshotError> {
        let mut decoder = GroupState::new(0, 0, ShardLimits::default()).restorer();
        for p in bytes.chunks(piece.max(1)) {
            decoder.decode(p)?;
        }
        Ok(decoder.finish()?.downcast::<GroupState>().unwrap())
    }

    #[test]
    fn a_snapshot_restores_the_same_state_whatever_the_piece_sizes() {
        let g = busy_group();
        for encode_piece in [1, 100, 4096, 1 << 20] {
            let bytes = encode_to_vec(g.snapshot(), encode_piece);
            for decode_piece in [1, 7, 65536, usize::MAX] {
                assert_eq!(restore(&bytes, decode_piece).unwrap(), g);
            }
        }
    }

    #[test]
    fn a_view_is_frozen_while_the_group_applies() {
        let mut g = busy_group();
        let encoder = g.snapshot();
        let before = g.clone();
        for i in 0..500u64 {
            let op = KvOp::Put {
                key: format!("key-{i}").into_bytes(),
                value: b"changed".to_vec(),
            };
            g.apply(&GroupCommand::Client(ClientRequest {
                stamp_ms: 0,
                client: 99,
                seq: i + 1,
                op,
            }));
        }
        let bytes = encode_to_vec(encoder, 512);
        assert_eq!(restore(&bytes, 1000).unwrap(), before);
        assert_ne!(before, g);
    }

    #[test]
    fn pieces_stay_bounded_and_damage_is_refused() {
        let g = busy_group();
        let mut encoder = g.snapshot();
        let mut out = Vec::new();
        let mut more = true;
        while more {
            let before = out.len();
            more = encoder.encode(&mut out, 4096);
            assert!(
                out.len() - before <= 4096 + 1024,
                "a piece of {}",
                out.len() - before
            );
        }
        let bytes = out;
        assert_eq!(
            restore(&bytes[..bytes.len() - 3], 100),
            Err(SnapshotError::Truncated)
        );
        let mut bad = bytes.clone();
        bad[4] = 0xff; // the first record's kind
        assert!(restore(&bad, 100).is_err());
        let mut long = bytes.clone();
        long[3] = 0x7f; // the first record's length
        assert!(restore(&long, 100).is_err());
        assert!(decode_all(g.restorer(), &[0xff; 8]).is_err());
    }
}
