//! A transport's counters: transport-wide ([`TransportCounters`]) and per peer
//! ([`PeerCounters`], kept in a [`PeerCounterSet`])
//!
//! Every counter is a relaxed atomic. The send path never locks: a peer's [`PeerCounters`]
//! sit next to its queue, and each connection's task or thread looks its peer's counters up
//! once when the connection opens. The set's mutex is taken only to add a peer, to open a
//! connection, to count a send to a node that is not a peer, and to read the counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use shale_core::raft::NodeId;

/// Most nodes that are not peers ([`PeerCounterSet::observed`]: a send to an unknown node, a
/// connection from a node this one does not send to) counted apart; further ones are counted
/// only transport-wide, so a stream of odd node ids cannot grow memory
pub const UNLISTED_PEERS_MAX: usize = 64;

/// Counters of a transport, as read by [`Transport::stats`](super::Transport::stats)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Messages written to a connection
    pub sent: u64,
    /// Messages received and queued for the driver
    pub received: u64,
    /// Messages dropped because the peer's queue was full
    pub dropped_full: u64,
    /// Messages dropped because the peer is unknown
    pub dropped_unknown_peer: u64,
    /// Messages dropped because their encoding exceeds the maximum frame size
    pub dropped_oversize: u64,
    /// Connections a writer established (after a successful handshake)
    pub connects: u64,
    /// Connection attempts that failed (connect error, handshake error or refusal)
    pub connect_failures: u64,
    /// Handshakes the peer refused
    pub refused_by_peer: u64,
    /// Connections accepted (before the handshake)
    pub accepted: u64,
    /// Incoming handshakes this node refused (malformed, version, cluster, node, too many)
    pub refused_handshakes: u64,
    /// Incoming frames over the maximum size (each closed its connection)
    pub oversize_frames: u64,
    /// Incoming frames that did not decode or did not match the handshake (each closed its
    /// connection)
    pub bad_frames: u64,
    /// Connections closed by an IO error (read or write)
    pub io_errors: u64,
}

/// The live counters behind [`TransportStats`], shared by a transport's threads or tasks
///
/// Public so that another runtime's transport (the smol runtime's, for one) counts the same
/// events the same way; read them with [`TransportCounters::snapshot`].
#[derive(Debug, Default)]
pub struct TransportCounters {
    /// See [`TransportStats::sent`]
    pub sent: AtomicU64,
    /// See [`TransportStats::received`]
    pub received: AtomicU64,
    /// See [`TransportStats::dropped_full`]
    pub dropped_full: AtomicU64,
    /// See [`TransportStats::dropped_unknown_peer`]
    pub dropped_unknown_peer: AtomicU64,
    /// See [`TransportStats::dropped_oversize`]
    pub dropped_oversize: AtomicU64,
    /// See [`TransportStats::connects`]
    pub connects: AtomicU64,
    /// See [`TransportStats::connect_failures`]
    pub connect_failures: AtomicU64,
    /// See [`TransportStats::refused_by_peer`]
    pub refused_by_peer: AtomicU64,
    /// See [`TransportStats::accepted`]
    pub accepted: AtomicU64,
    /// See [`TransportStats::refused_handshakes`]
    pub refused_handshakes: AtomicU64,
    /// See [`TransportStats::oversize_frames`]
    pub oversize_frames: AtomicU64,
    /// See [`TransportStats::bad_frames`]
    pub bad_frames: AtomicU64,
    /// See [`TransportStats::io_errors`]
    pub io_errors: AtomicU64,
}

impl TransportCounters {
    /// The counters' values now
    pub fn snapshot(&self) -> TransportStats {
        TransportStats {
            sent: get(&self.sent),
            received: get(&self.received),
            dropped_full: get(&self.dropped_full),
            dropped_unknown_peer: get(&self.dropped_unknown_peer),
            dropped_oversize: get(&self.dropped_oversize),
            connects: get(&self.connects),
            connect_failures: get(&self.connect_failures),
            refused_by_peer: get(&self.refused_by_peer),
            accepted: get(&self.accepted),
            refused_handshakes: get(&self.refused_handshakes),
            oversize_frames: get(&self.oversize_frames),
            bad_frames: get(&self.bad_frames),
            io_errors: get(&self.io_errors),
        }
    }
}

/// What a transport counted for one peer, as read by
/// [`Transport::peer_stats`](super::Transport::peer_stats)
///
/// Each field is also counted in the transport-wide field of the same name in
/// [`TransportStats`], so over all peers they add up to it (unless more than
/// [`UNLISTED_PEERS_MAX`] nodes that are not peers showed up).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Messages written to a connection to the peer
    pub sent: u64,
    /// Messages received from the peer (as authenticated by the handshake)
    pub received: u64,
    /// Messages to the peer dropped because its queue was full
    pub dropped_full: u64,
    /// Messages to the peer dropped because their encoding exceeds the maximum frame size
    pub dropped_oversize: u64,
    /// Messages to this node dropped because it is not a peer (no address to send to)
    pub dropped_unknown_peer: u64,
    /// Connections to the peer established (after a successful handshake)
    pub connects: u64,
    /// Connection attempts to the peer that failed (connect error, handshake error or
    /// refusal)
    pub connect_failures: u64,
    /// Handshakes the peer refused (wrong cluster or secret, too many connections, ...)
    pub refused_by_peer: u64,
}

/// The live counters of one peer, behind [`PeerStats`]
///
/// Public so that another runtime's transport counts per peer the same way; bump a field
/// and the transport-wide field of the same name in [`TransportCounters`] together.
#[derive(Debug, Default)]
pub struct PeerCounters {
    /// See [`PeerStats::sent`]
    pub sent: AtomicU64,
    /// See [`PeerStats::received`]
    pub received: AtomicU64,
    /// See [`PeerStats::dropped_full`]
    pub dropped_full: AtomicU64,
    /// See [`PeerStats::dropped_oversize`]
    pub dropped_oversize: AtomicU64,
    /// See [`PeerStats::dropped_unknown_peer`]
    pub dropped_unknown_peer: AtomicU64,
    /// See [`PeerStats::connects`]
    pub connects: AtomicU64,
    /// See [`PeerStats::connect_failures`]
    pub connect_failures: AtomicU64,
    /// See [`PeerStats::refused_by_peer`]
    pub refused_by_peer: AtomicU64,
}

impl PeerCounters {
    /// The counters' values now
    pub fn snapshot(&self) -> PeerStats {
        PeerStats {
            sent: get(&self.sent),
            received: get(&self.received),
            dropped_full: get(&self.dropped_full),
            dropped_oversize: get(&self.dropped_oversize),
            dropped_unknown_peer: get(&self.dropped_unknown_peer),
            connects: get(&self.connects),
            connect_failures: get(&self.connect_failures),
            refused_by_peer: get(&self.refused_by_peer),
        }
    }
}

/// The [`PeerCounters`] of every node a transport sends to or hears from
///
/// Share it (`Arc`) with whatever exports metrics: reading it does not touch the send path.
#[derive(Debug, Default)]
pub struct PeerCounterSet {
    inner: Mutex<PeerMap>,
}

#[derive(Debug, Default)]
struct PeerMap {
    counters: BTreeMap<NodeId, Arc<PeerCounters>>,
    /// Entries made by [`PeerCounterSet::observed`] (at most [`UNLISTED_PEERS_MAX`])
    unlisted: usize,
}

impl PeerCounterSet {
    /// The counters of peer `id`, created if needed; for a peer the transport sends to
    pub fn peer(&self, id: NodeId) -> Arc<PeerCounters> {
        Arc::clone(self.lock().counters.entry(id).or_default())
    }

    /// The counters of node `id`, which need not be a peer; created only while fewer than
    /// [`UNLISTED_PEERS_MAX`] such nodes have been seen (`None` after that)
    pub fn observed(&self, id: NodeId) -> Option<Arc<PeerCounters>> {
        let mut map = self.lock();
        if let Some(found) = map.counters.get(&id) {
            return Some(Arc::clone(found));
        }
        if map.unlisted >= UNLISTED_PEERS_MAX {
            return None;
        }
        map.unlisted += 1;
        Some(Arc::clone(map.counters.entry(id).or_default()))
    }

    /// Every node's counters now, by node id
    pub fn snapshot(&self) -> BTreeMap<NodeId, PeerStats> {
        self.lock()
            .counters
            .iter()
            .map(|(&id, counters)| (id, counters.snapshot()))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, PeerMap> {
        // The map is never left half-updated, so a panic elsewhere does not spoil it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Adds one to `counter`
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_always_tracked_and_unlisted_nodes_up_to_the_limit() {
        let set = PeerCounterSet::default();
        let peer = set.peer(1);
        bump(&peer.sent);
        assert!(Arc::ptr_eq(&peer, &set.peer(1)));
        for id in 100..100 + UNLISTED_PEERS_MAX as u64 {
            bump(
                &set.observed(id)
                    .expect("under the limit")
                    .dropped_unknown_peer,
            );
        }
        assert!(set.observed(10_000).is_none(), "over the limit");
        // Known nodes are still found, and peers still added, past the limit.
        assert!(set.observed(100).is_some());
        assert!(Arc::ptr_eq(&set.observed(1).unwrap(), &peer));
        bump(&set.peer(2).received);
        let stats = set.snapshot();
        assert_eq!(stats.len(), 2 + UNLISTED_PEERS_MAX);
        assert_eq!(stats[&1].sent, 1);
        assert_eq!(stats[&2].received, 1);
        assert_eq!(stats[&100].dropped_unknown_peer, 1);
    }
}
