//! The simulated network: delays, drops, duplicates, reordering and partitions
//!
//! Every message is encoded with [`shale_core::wire`] when sent and decoded on delivery, so the
//! byte counters are real wire sizes and the codec is exercised on every hop.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use shale_core::raft::{NodeId, Outgoing};
use shale_core::rng::Rng;
use shale_core::time::{Duration, Instant};
use shale_core::wire;

/// How the network misbehaves; rates are in parts per million of messages
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Shortest one-way delay
    pub delay_min: Duration,
    /// Longest one-way delay (delays are uniform in between, so messages reorder)
    pub delay_max: Duration,
    /// Messages dropped, per million
    pub drop_per_million: u64,
    /// Messages delivered twice, per million
    pub duplicate_per_million: u64,
    /// Messages held back for a long delay, per million
    pub long_delay_per_million: u64,
    /// Shortest long delay
    pub long_delay_min: Duration,
    /// Longest long delay
    pub long_delay_max: Duration,
}

impl NetworkConfig {
    /// A reliable LAN: 1-5 ms delays, nothing lost
    pub fn reliable() -> Self {
        NetworkConfig {
            delay_min: Duration::from_millis(1),
            delay_max: Duration::from_millis(5),
            drop_per_million: 0,
            duplicate_per_million: 0,
            long_delay_per_million: 0,
            long_delay_min: Duration::from_millis(200),
            long_delay_max: Duration::from_millis(2_200),
        }
    }

    /// The classic unreliable network: 0-26 ms delays, 10% dropped, 1% duplicated
    pub fn unreliable() -> Self {
        NetworkConfig {
            delay_min: Duration::ZERO,
            delay_max: Duration::from_millis(26),
            drop_per_million: 100_000,
            duplicate_per_million: 10_000,
            ..NetworkConfig::reliable()
        }
    }

    /// Unreliable, and additionally 60% of messages held back 200 ms to 2.2 s (long reordering)
    pub fn long_reordering() -> Self {
        NetworkConfig {
            long_delay_per_million: 600_000,
            ..NetworkConfig::unreliable()
        }
    }
}

/// Counters of what the network carried
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Messages handed to the network by nodes
    pub sent: u64,
    /// Encoded bytes handed to the network
    pub sent_bytes: u64,
    /// Messages delivered to a node
    pub delivered: u64,
    /// Messages lost: dropped at random, across a cut link, or to a crashed node
    pub dropped: u64,
    /// Extra copies delivered
    pub duplicated: u64,
    /// Messages sent by each node (index = node id - 1)
    pub sent_by_node: Vec<u64>,
    /// Messages received by each node (index = node id - 1)
    pub received_by_node: Vec<u64>,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    from: NodeId,
    to: NodeId,
    bytes: Vec<u8>,
}

/// Messages in flight and the state of every link
#[derive(Debug)]
pub(crate) struct Network {
    pub(crate) config: NetworkConfig,
    rng: Rng,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    /// Links that drop everything, as (from, to)
    cut: BTreeSet<(NodeId, NodeId)>,
    pub(crate) stats: NetworkStats,
    buf: Vec<u8>,
}

impl Network {
    pub(crate) fn new(config: NetworkConfig, rng: Rng, nodes: usize) -> Self {
        Network {
            config,
            rng,
            queue: BinaryHeap::new(),
            seq: 0,
            cut: BTreeSet::new(),
            stats: NetworkStats {
                sent_by_node: vec![0; nodes],
                received_by_node: vec![0; nodes],
                ..NetworkStats::default()
            },
            buf: Vec::new(),
        }
    }

    /// Makes room in the per-node counters for one more node (a node added to the group)
    pub(crate) fn add_node(&mut self) {
        self.stats.sent_by_node.push(0);
        self.stats.received_by_node.push(0);
    }

    pub(crate) fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut.contains(&(from, to))
    }

    pub(crate) fn set_cut(&mut self, from: NodeId, to: NodeId, cut: bool) {
        if cut {
            self.cut.insert((from, to));
        } else {
            self.cut.remove(&(from, to));
        }
    }

    /// Cuts (`cut`) or restores both directions of every link between `id` and the nodes in
    /// `others` for which `include` holds
    pub(crate) fn set_links_of(
        &mut self,
        id: NodeId,
        others: &[NodeId],
        cut: bool,
        include: impl Fn(NodeId) -> bool,
    ) {
        for &other in others {
            if other != id && include(other) {
                self.set_cut(id, other, cut);
                self.set_cut(other, id, cut);
            }
        }
    }

    /// Splits `ids` into `sets` that hear only each other; nodes in no set are isolated
    pub(crate) fn partition(&mut self, ids: &[NodeId], sets: &[&[NodeId]]) {
        let set_of = |id: NodeId| sets.iter().position(|g| g.contains(&id));
        for &a in ids {
            for &b in ids {
                if a != b {
                    let same = set_of(a).is_some() && set_of(a) == set_of(b);
                    self.set_cut(a, b, !same);
                }
            }
        }
    }

    pub(crate) fn heal(&mut self) {
        self.cut.clear();
    }

    /// Takes a message from a node; decides its fate now
    pub(crate) fn send(&mut self, now: Instant, out: &Outgoing) {
        self.buf.clear();
        wire::encode_message(out, &mut self.buf);
        self.send_buffered(now, out.from, out.to);
    }

    /// Takes bytes a caller encoded itself (the multi-group simulator's envelopes) from node
    /// `from` to node `to`; decides their fate now, exactly as [`Network::send`] does
    pub(crate) fn send_bytes(&mut self, now: Instant, from: NodeId, to: NodeId, bytes: &[u8]) {
        self.buf.clear();
        self.buf.extend_from_slice(bytes);
        self.send_buffered(now, from, to);
    }

    /// Sends the encoded message in `self.buf`
    fn send_buffered(&mut self, now: Instant, from: NodeId, to: NodeId) {
        self.stats.sent += 1;
        self.stats.sent_bytes += self.buf.len() as u64;
        if let Some(c) = self.stats.sent_by_node.get_mut(from as usize - 1) {
            *c += 1;
        }
        if self.is_cut(from, to) || self.rng.chance(self.config.drop_per_million, 1_000_000) {
            self.stats.dropped += 1;
            return;
        }
        let copies = if self
            .rng
            .chance(self.config.duplicate_per_million, 1_000_000)
        {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = if self
                .rng
                .chance(self.config.long_delay_per_million, 1_000_000)
            {
                self.random_delay(self.config.long_delay_min, self.config.long_delay_max)
            } else {
                self.random_delay(self.config.delay_min, self.config.delay_max)
            };
            self.seq += 1;
            self.queue.push(Reverse(InFlight {
                at: now + delay,
                seq: self.seq,
                from,
                to,
                bytes: self.buf.clone(),
            }));
        }
    }

    fn random_delay(&mut self, min: Duration, max: Duration) -> Duration {
        let micros = self.rng.range(min.as_micros(), max.as_micros() + 1);
        Duration::from_micros(micros)
    }

    /// When the next message arrives
    pub(crate) fn next_arrival(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(m)| m.at)
    }

    /// The next message due at or before `now`, as (receiver, decoded message); messages over
    /// links cut since they were sent are dropped here
    pub(crate) fn pop_due(
        &mut self,
        now: Instant,
    ) -> Option<(NodeId, Result<Outgoing, wire::DecodeError>)> {
        let (_, to, bytes) = self.pop_due_bytes(now)?;
        Some((to, wire::decode_message(&bytes)))
    }

    /// The next message due at or before `now`, undecoded, as (sender, receiver, bytes);
    /// messages over links cut since they were sent are dropped here
    pub(crate) fn pop_due_bytes(&mut self, now: Instant) -> Option<(NodeId, NodeId, Vec<u8>)> {
        loop {
            if self.queue.peek().is_none_or(|Reverse(m)| m.at > now) {
                return None;
            }
            let Reverse(m) = self.queue.pop()?;
            if self.is_cut(m.from, m.to) {
                self.stats.dropped += 1;
                continue;
            }
            return Some((m.from, m.to, m.bytes));
        }
    }

    /// Puts undecoded bytes back to arrive at `at` (a paused receiver)
    pub(crate) fn defer_bytes(&mut self, at: Instant, from: NodeId, to: NodeId, bytes: Vec<u8>) {
        self.seq += 1;
        self.queue.push(Reverse(InFlight {
            at,
            seq: self.seq,
            from,
            to,
            bytes,
        }));
    }

    /// Puts a message back to arrive at `at` (a paused receiver)
    pub(crate) fn defer(&mut self, at: Instant, out: &Outgoing) {
        self.buf.clear();
        wire::encode_message(out, &mut self.buf);
        self.seq += 1;
        self.queue.push(Reverse(InFlight {
            at,
            seq: self.seq,
            from: out.from,
            to: out.to,
            bytes: self.buf.clone(),
        }));
    }
}
