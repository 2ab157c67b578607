//! A shard's contents in bounded chunks, read from a cursor: how shards move between groups
//! and how snapshots stream them
//!
//! A shard is its session table and its data. [`ShardState::chunk`] reads the part after a
//! [`ShardCursor`] (sessions in client order first, then keys in order) up to a byte budget,
//! in O(log n) plus the chunk; [`ShardState::apply_chunk`] adds a chunk to a copy being built.
//! The cursor is all the state a transfer needs, so a transfer interrupted anywhere (a lost
//! message, a new leader on either side) resumes from its last cursor instead of starting
//! over, and any replica of the sending group answers the same chunk for the same cursor
//! (the shard it reads from no longer changes while it is handed over).
//!
//! ```
//! use shale_core::shard::{ClientRequest, KvOp, ShardCursor, ShardLimits, ShardState};
//!
//! let mut shard = ShardState::default();
//! let limits = ShardLimits::default();
//! for i in 0..100u64 {
//!     let op = KvOp::Put { key: format!("k{i:03}").into_bytes(), value: vec![7; 100] };
//!     shard.apply(&ClientRequest { stamp_ms: 0, client: 1, seq: i + 1, op }, &limits).unwrap();
//! }
//! let mut copy = ShardState::default();
//! let mut cursor = Some(ShardCursor::START);
//! let mut chunks = 0;
//! while let Some(from) = cursor {
//!     let chunk = shard.chunk(&from, 1024);
//!     cursor = chunk.next.clone();
//!     copy.apply_chunk(chunk);
//!     chunks += 1;
//! }
//! assert_eq!(copy, shard);
//! assert_eq!(chunks, 10, "1 KiB chunks of 10 keys each");
//! ```

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::ops::{Bytes, KvResult};
use super::session::{ClientId, ExpiryWatermarks, Session, SessionTable};
use super::store::{ShardStore, StoreBuilder};
use super::{ShardState, Store};
use crate::store::SortedBuilder;

/// Where a read of a shard's contents stands: the sessions come first, then the data (cursors
/// order as the contents they point at)
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ShardCursor {
    /// Sessions of clients above this id (from the first with `None`), then all the data
    Sessions(Option<ClientId>),
    /// Data after this key (from the first key with `None`)
    Data(Option<Bytes>),
}

impl ShardCursor {
    /// The start of a shard
    pub const START: ShardCursor = ShardCursor::Sessions(None);
}

/// What a shard holds in all, sent with its first chunk
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShardHeader {
    /// The session table's expiry watermark
    pub expired_below: ExpiryWatermarks,
    /// The session table's clock (operations applied in the shard)
    pub clock: u64,
    /// The shard's time, Unix milliseconds (see [`SessionTable::time_ms`])
    pub time_ms: u64,
    /// Sessions held
    pub sessions: u64,
    /// Keys held
    pub keys: u64,
    /// Bytes of keys and values held
    pub bytes: u64,
}

/// A bounded piece of a shard's contents, from `from` to `next`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardChunk {
    /// Where this chunk starts
    pub from: ShardCursor,
    /// The totals and the session clocks: in the first chunk (from [`ShardCursor::START`]) only
    pub header: Option<ShardHeader>,
    /// Sessions, in client order
    pub sessions: Vec<(ClientId, Session)>,
    /// Keys and values, in key order
    pub entries: Vec<(Bytes, Bytes)>,
    /// Where the next chunk starts; `None`: this is the last
    pub next: Option<ShardCursor>,
}

impl ShardChunk {
    /// Bytes of keys and values it carries
    pub fn data_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }
}

/// About how many bytes a session takes in a chunk
fn session_bytes(session: &Session) -> usize {
    let result = match &session.last_result {
        Ok(KvResult::Value(Some(v))) => v.len(),
        Ok(KvResult::Values(vs)) => vs.iter().flatten().map(Vec::len).sum(),
        Ok(KvResult::Swapped {
            previous: Some(v), ..
        })
        | Ok(KvResult::Set {
            previous: Some(v), ..
        }) => v.len(),
        _ => 0,
    };
    32 + result
}

impl ShardState {
    /// The shard's contents after `from`, about `max_bytes` of them (at least one item when
    /// any is left, so an item larger than `max_bytes` makes a larger chunk)
    pub fn chunk(&self, from: &ShardCursor, max_bytes: usize) -> ShardChunk {
        let mut chunk = ShardChunk {
            from: from.clone(),
            header: (*from == ShardCursor::START).then(|| ShardHeader {
                expired_below: self.sessions.expired_below().clone(),
                clock: self.sessions.clock(),
                time_ms: self.sessions.time_ms(),
                sessions: self.sessions.len() as u64,
                keys: self.kv.len(),
                bytes: self.kv.data_bytes(),
            }),
            sessions: Vec::new(),
            entries: Vec::new(),
            next: None,
        };
        let mut used = 0usize;
        let mut data_after = match from {
            ShardCursor::Sessions(after) => {
                for (&client, session) in self.sessions.iter_from(*after) {
                    if used >= max_bytes && used > 0 {
                        chunk.next = Some(ShardCursor::Sessions(Some(
                            chunk.sessions.last().map_or(client, |(c, _)| *c),
                        )));
                        return chunk;
                    }
                    used += session_bytes(session);
                    chunk.sessions.push((client, session.clone()));
                }
                None
            }
            ShardCursor::Data(after) => after.clone(),
        };
        for (key, value) in self.kv.range_from(data_after.as_deref()) {
            if used >= max_bytes && used > 0 {
                data_after = chunk.entries.last().map(|(k, _)| k.clone());
                chunk.next = Some(ShardCursor::Data(data_after));
                return chunk;
            }
            used += key.len() + value.len();
            chunk.entries.push((key.to_vec(), value.to_vec()));
        }
        chunk
    }

    /// [`apply_chunk`](Self::apply_chunk), leaving the keys in `skip` as they are (keys that
    /// arrived, and may have been written, ahead of their chunk)
    pub fn apply_chunk_except(&mut self, mut chunk: ShardChunk, skip: &BTreeSet<Bytes>) {
        if !skip.is_empty() {
            chunk.entries.retain(|(k, _)| !skip.contains(k));
        }
        self.apply_chunk(chunk);
    }

    /// Adds a chunk read by [`chunk`](Self::chunk) to this copy (the caller feeds chunks in
    /// order, each from where the last one ended)
    pub fn apply_chunk(&mut self, chunk: ShardChunk) {
        if let Some(h) = chunk.header {
            self.sessions
                .set_clocks(h.expired_below, h.clock, h.time_ms);
        }
        for (client, session) in chunk.sessions {
            self.sessions.insert(client, session);
        }
        for (key, value) in chunk.entries {
            self.kv.insert(key, value);
        }
    }
}

/// Builds a shard from its chunks read in order from the start, with dense maps (restoring a
/// snapshot); a hand-over applies chunks to a live copy instead ([`ShardState::apply_chunk`])
#[derive(Default)]
pub struct ShardBuilder {
    header: ShardHeader,
    sessions: SortedBuilder<ClientId, Session>,
    kv: <Store as ShardStore>::Builder,
}

impl ShardBuilder {
    /// Adds the next chunk; an error when it goes back on what came before
    pub fn push(&mut self, chunk: ShardChunk) -> Result<(), &'static str> {
        if let Some(h) = chunk.header {
            self.header = h;
        }
        for (client, session) in chunk.sessions {
            self.sessions
                .push(client, session)
                .map_err(|_| "sessions out of order")?;
        }
        for (key, value) in chunk.entries {
            if !self.kv.push(key, value) {
                return Err("keys out of order");
            }
        }
        Ok(())
    }

    /// The shard of every chunk pushed
    pub fn finish(self) -> ShardState {
        ShardState {
            kv: self.kv.finish(),
            sessions: SessionTable::from_parts(
                self.sessions.finish(),
                self.header.expired_below.clone(),
                self.header.clock,
                self.header.time_ms,
            ),
            flushed: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::{ClientRequest, KvOp, ShardLimits};
    use alloc::format;
    use alloc::vec;

    fn filled(sessions: u64, keys: u64, value: usize) -> ShardState {
        let mut shard = ShardState::default();
        let limits = ShardLimits::default();
        for i in 0..keys {
            let op = KvOp::Put {
                key: format!("key-{i:05}").into_bytes(),
                value: vec![b'v'; value],
            };
            let client = 1 + i % sessions.max(1);
            shard
                .apply(
                    &ClientRequest {
                        stamp_ms: 0,
                        client,
                        seq: i + 1,
                        op,
                    },
                    &limits,
                )
                .unwrap();
        }
        shard
    }

    fn copy(shard: &ShardState, max_bytes: usize) -> (ShardState, usize) {
        let mut copy = ShardState::default();
        let mut cursor = Some(ShardCursor::START);
        let mut chunks = 0;
        while let Some(from) = cursor {
            let chunk = shard.chunk(&from, max_bytes);
            assert!(
                chunk.next.is_none() || !chunk.sessions.is_empty() || !chunk.entries.is_empty(),
                "a chunk that is not the last carries something"
            );
            cursor = chunk.next.clone();
            copy.apply_chunk(chunk);
            chunks += 1;
            assert!(chunks < 100_000, "the transfer never ends");
        }
        (copy, chunks)
    }

    #[test]
    fn chunks_of_any_budget_rebuild_the_shard_exactly() {
        let shard = filled(40, 500, 30);
        for max in [0, 1, 64, 1000, 10_000, usize::MAX] {
            let (c, _) = copy(&shard, max);
            assert_eq!(c, shard, "budget {max}");
            assert_eq!(c.sessions.expired_below(), shard.sessions.expired_below());
            let mut built = ShardBuilder::default();
            let mut cursor = Some(ShardCursor::START);
            while let Some(from) = cursor {
                let chunk = shard.chunk(&from, max);
                cursor = chunk.next.clone();
                built.push(chunk).unwrap();
            }
            let built = built.finish();
            assert_eq!(built, shard, "built, budget {max}");
            assert_eq!(built.sessions.clock(), shard.sessions.clock());
        }
        let mut twice = ShardBuilder::default();
        let chunk = shard.chunk(&ShardCursor::Data(None), 100);
        twice.push(chunk.clone()).unwrap();
        assert!(twice.push(chunk).is_err(), "a chunk again is out of order");
        let (c, chunks) = copy(&ShardState::default(), 100);
        assert_eq!((c, chunks), (ShardState::default(), 1));
    }

    #[test]
    fn a_chunk_stays_near_its_budget_and_a_large_item_still_moves() {
        let shard = filled(1, 200, 1000);
        let chunk = shard.chunk(&ShardCursor::Data(None), 4096);
        assert!(
            (4..=6).contains(&chunk.entries.len()),
            "{}",
            chunk.entries.len()
        );
        let big = filled(1, 3, 50_000);
        let chunk = big.chunk(&ShardCursor::Data(None), 10);
        assert_eq!(chunk.entries.len(), 1, "one item over the budget");
        let header = shard.chunk(&ShardCursor::START, 1).header.unwrap();
        assert_eq!((header.keys, header.sessions), (200, 1));
    }

    #[test]
    fn a_cursor_resumes_where_the_last_chunk_ended() {
        let shard = filled(5, 50, 10);
        let first = shard.chunk(&ShardCursor::START, 200);
        let again = shard.chunk(&ShardCursor::START, 200);
        assert_eq!(first, again, "the same cursor reads the same chunk");
        let next = first.next.clone().unwrap();
        let second = shard.chunk(&next, 200);
        assert_eq!(second.from, next);
        assert!(second.header.is_none());
        let last_key = |c: &ShardChunk| c.entries.last().map(|(k, _)| k.clone());
        if let (Some(a), Some(b)) = (last_key(&first), second.entries.first()) {
            assert!(a < b.0);
        }
    }
}
