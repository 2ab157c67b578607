//! Exactly-once client sessions with deterministic expiry
//!
//! Every request carries a client id and a sequence number; a shard remembers, per client, the
//! last sequence number it applied and that request's result, so a retry gets the same answer
//! instead of being applied twice. The table travels with its shard when the shard moves.
//!
//! Expiry is deterministic (it depends only on the operations the shard applied, never on a
//! clock) and safe. A client id names its *issuer* in its low [`CLIENT_ISSUER_BITS`] bits (the
//! node that opened the session: `shale` uses the node id) and each issuer hands out ids in
//! increasing order. Sessions expire from the lowest id up, when idle for `session_idle_ops`
//! of the shard's operations or when the table exceeds `max_sessions`, and the shard keeps,
//! per issuer, the watermark below which every session of that issuer has expired; a request
//! from a client below its issuer's watermark that has no session is answered
//! [`KvError::SessionExpired`], never applied, so a retry after expiry cannot apply twice. A
//! client at or above the watermark without a session is simply new to this shard.
//!
//! The watermark is per issuer because issuers' ids are not ordered among themselves: ids
//! taken from each node's clock would otherwise let the sessions of a node whose clock is
//! ahead push the one watermark past every id a node with a slower clock hands out, and that
//! node's new clients would all be refused as expired.
//!
//! Reference: thesis §6.3 (implementing linearizable semantics).

use alloc::collections::BTreeMap;
use core::ops::Bound;

use serde::{Deserialize, Serialize};

use super::ops::{KvError, KvResult};
use crate::store::PersistentMap;

/// A client's identity: its issuer in the low [`CLIENT_ISSUER_BITS`] bits; each issuer
/// hands out its ids in increasing order
pub type ClientId = u64;

/// Bits of a [`ClientId`] that name its issuer (a node: ids of nodes 0 to 4095 each get their
/// own watermark; larger node ids share one with the node id equal modulo 4096)
pub const CLIENT_ISSUER_BITS: u32 = 12;

/// The issuer of client `id`: its low [`CLIENT_ISSUER_BITS`] bits
pub fn client_issuer(id: ClientId) -> u64 {
    id & ((1 << CLIENT_ISSUER_BITS) - 1)
}

/// Per issuer, the id below which every session has expired (see the module docs)
pub type ExpiryWatermarks = BTreeMap<u64, ClientId>;

/// How the session table is bounded
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLimits {
    /// Most sessions kept per shard; past it, the lowest ids expire
    pub max_sessions: u32,
    /// A session idle for this many of the shard's applied operations may expire
    pub session_idle_ops: u64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_sessions: 10_000,
            session_idle_ops: 1_000_000,
        }
    }
}

/// What a shard remembers of one client
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The last sequence number applied
    pub last_seq: u64,
    /// That request's result
    pub last_result: Result<KvResult, KvError>,
    /// The shard's operation count when the session was last used
    pub last_active: u64,
}

/// How to treat a request, given the session table
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Not seen before: apply it
    Apply,
    /// The last request applied, retried: answer with its recorded result
    Duplicate(Result<KvResult, KvError>),
    /// Older than the last request applied: the client no longer waits for it
    Stale,
    /// The client's session expired: refuse
    Expired,
}

/// One shard's sessions (a clone is an O(1) view, see [`PersistentMap`])
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTable {
    sessions: PersistentMap<ClientId, Session>,
    /// Per issuer: every session of a client of that issuer below this id has expired
    expired_below: ExpiryWatermarks,
    /// Operations applied in the shard (its logical clock)
    clock: u64,
    /// The latest time a request applied in the shard was applied at, Unix milliseconds:
    /// the shard's time never goes back, whichever leader stamped (see
    /// [`advance_time`](Self::advance_time))
    time_ms: u64,
}

impl SessionTable {
    /// How a request `seq` from `client` must be treated
    pub fn admit(&self, client: ClientId, seq: u64) -> Admission {
        match self.sessions.get(&client) {
            Some(s) if seq == s.last_seq => Admission::Duplicate(s.last_result.clone()),
            Some(s) if seq < s.last_seq => Admission::Stale,
            Some(_) => Admission::Apply,
            None if client < self.watermark(client_issuer(client)) => Admission::Expired,
            None => Admission::Apply,
        }
    }

    /// Records that request `seq` of `client` was applied with `result`, then expires what the
    /// limits require
    pub fn record(
        &mut self,
        client: ClientId,
        seq: u64,
        result: Result<KvResult, KvError>,
        limits: &SessionLimits,
    ) {
        self.clock += 1;
        self.sessions.insert(
            client,
            Session {
                last_seq: seq,
                last_result: result,
                last_active: self.clock,
            },
        );
        self.expire(limits);
    }

    fn expire(&mut self, limits: &SessionLimits) {
        while let Some((&oldest, session)) = self.sessions.first_key_value() {
            let over = self.sessions.len() > limits.max_sessions as usize;
            let idle = self.clock - session.last_active > limits.session_idle_ops;
            if !(over || idle) {
                break;
            }
            self.sessions.remove(&oldest);
            let mark = self.expired_below.entry(client_issuer(oldest)).or_default();
            *mark = (*mark).max(oldest + 1);
        }
    }

    /// Number of sessions held
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is held
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The lowest id a client of `issuer` may still open a session here with
    pub fn watermark(&self, issuer: u64) -> ClientId {
        self.expired_below.get(&issuer).copied().unwrap_or(0)
    }

    /// Every issuer's watermark (issuers with none are at 0)
    pub fn expired_below(&self) -> &ExpiryWatermarks {
        &self.expired_below
    }

    /// Operations applied in the shard (the table's logical clock)
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// The sessions of clients above `after` (from the lowest with `None`), in id order
    pub fn iter_from(
        &self,
        after: Option<ClientId>,
    ) -> impl Iterator<Item = (&ClientId, &Session)> {
        let start = match after {
            Some(ref id) => Bound::Excluded(id),
            None => Bound::Unbounded,
        };
        self.sessions.range_from(start)
    }

    /// Takes over the expiry watermark and the clocks of another copy of this table (a shard
    /// being moved or restored); its time never goes back
    pub(crate) fn set_clocks(&mut self, expired_below: ExpiryWatermarks, clock: u64, time_ms: u64) {
        self.expired_below = expired_below;
        self.clock = clock;
        self.time_ms = self.time_ms.max(time_ms);
    }

    /// The shard's time, Unix milliseconds: the latest an operation was applied at
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }

    /// Moves the shard's time to `stamp_ms` unless it is already later; the time to apply at.
    /// Stamps come from whichever replica led when each request was proposed, and clocks
    /// differ: the shard applies at the latest time it has seen, so expiry never goes back
    pub fn advance_time(&mut self, stamp_ms: u64) -> u64 {
        self.time_ms = self.time_ms.max(stamp_ms);
        self.time_ms
    }

    /// Takes over one session of another copy of this table
    pub(crate) fn insert(&mut self, client: ClientId, session: Session) {
        self.sessions.insert(client, session);
    }

    /// A table of `sessions` with the given watermark and clock (a restore)
    pub(crate) fn from_parts(
        sessions: PersistentMap<ClientId, Session>,
        expired_below: ExpiryWatermarks,
        clock: u64,
        time_ms: u64,
    ) -> Self {
        SessionTable {
            sessions,
            expired_below,
            clock,
            time_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Result<KvResult, KvError> {
        Ok(KvResult::Done)
    }

    #[test]
    fn retries_get_the_recorded_answer_and_old_requests_are_stale() {
        let mut t = SessionTable::default();
        let l = SessionLimits::default();
        assert_eq!(t.admit(7, 1), Admission::Apply);
        t.record(7, 1, Ok(KvResult::Length(3)), &l);
        assert_eq!(t.admit(7, 1), Admission::Duplicate(Ok(KvResult::Length(3))));
        assert_eq!(t.admit(7, 2), Admission::Apply);
        t.record(7, 2, ok(), &l);
        assert_eq!(t.admit(7, 1), Admission::Stale);
    }

    #[test]
    fn expiry_is_bounded_ordered_and_refuses_expired_clients() {
        let mut t = SessionTable::default();
        let l = SessionLimits {
            max_sessions: 2,
            session_idle_ops: 1_000,
        };
        t.record(1, 1, ok(), &l);
        t.record(2, 1, ok(), &l);
        t.record(3, 1, ok(), &l); // over the cap: client 1 expires
        assert_eq!(t.len(), 2);
        assert_eq!(t.watermark(client_issuer(1)), 2);
        // Client 1's retry is refused, not applied again.
        assert_eq!(t.admit(1, 1), Admission::Expired);
        // A client above the watermark that is new here is admitted.
        assert_eq!(t.admit(9, 1), Admission::Apply);
    }

    #[test]
    fn idle_sessions_expire_by_operation_count_not_time() {
        let mut t = SessionTable::default();
        let l = SessionLimits {
            max_sessions: 100,
            session_idle_ops: 3,
        };
        t.record(1, 1, ok(), &l);
        for seq in 1..=3 {
            t.record(2, seq, ok(), &l);
        }
        assert_eq!(
            t.admit(1, 1),
            Admission::Duplicate(ok()),
            "idle for exactly 3: kept"
        );
        t.record(2, 4, ok(), &l);
        assert_eq!(t.admit(1, 1), Admission::Expired);
        assert_eq!(t.admit(2, 4), Admission::Duplicate(ok()));
    }

    /// Ids from each node's clock, node 2's clock an hour behind node 1's: node 1's expired
    /// sessions must not refuse node 2's new clients
    #[test]
    fn an_issuer_with_a_slow_clock_is_not_refused_for_another_issuers_expiry() {
        let id = |micros: u64, node: u64| (micros << CLIENT_ISSUER_BITS) | node;
        let hour = 3_600_000_000;
        let now = 1_700_000_000_000_000;
        let mut t = SessionTable::default();
        let l = SessionLimits {
            max_sessions: 2,
            session_idle_ops: 1_000,
        };
        for i in 0..3 {
            t.record(id(now + i, 1), 1, ok(), &l);
        }
        assert_eq!(t.admit(id(now, 1), 1), Admission::Expired);
        assert_eq!(
            t.admit(id(now - hour, 2), 1),
            Admission::Apply,
            "a new client of the slow node is new here, not expired"
        );
        // Over the cap the lowest id expires, here the slow node's own session: that client's
        // retry is refused, the slow node's next client is admitted.
        t.record(id(now - hour, 2), 1, ok(), &l);
        assert_eq!(t.len(), 2);
        assert_eq!(t.admit(id(now - hour, 2), 1), Admission::Expired);
        assert_eq!(t.admit(id(now - hour + 1, 2), 1), Admission::Apply);
    }
}
