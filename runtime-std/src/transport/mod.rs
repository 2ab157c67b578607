//! TCP transport between nodes: one outbound connection per peer carries every group's messages
//!
//! [`Transport::listen`] binds a listener; [`Transport::add_peer`] starts a writer thread for a
//! peer. Each connection opens with a handshake ([`handshake`]) that checks the cluster id,
//! the protocol version and the node the connecting side expects to reach; then frames
//! ([`shale_core::wire::write_frame`]) carry [`Envelope`]s, one direction per connection.
//! Application frames ([`Transport::send_app`]: opaque bytes under the reserved group id
//! [`APP_GROUP`]) share the same connections; the receiver gets them as [`Delivery::App`]
//! tagged with the sender the handshake authenticated.
//!
//! Threads: one acceptor, one writer per peer (connects with capped exponential backoff and
//! reconnects after errors), one reader per accepted connection. [`Transport::send`] never
//! blocks: each peer has a bounded queue and a message that does not fit is dropped and
//! counted (Raft tolerates loss). Readers push into one bounded inbound queue that the node's
//! driver drains with [`Transport::recv_timeout`], or hand each [`Delivery`] to a [`Sink`] of
//! the caller's ([`Transport::listen_into`]); a full inbound queue pushes back on TCP.
//!
//! Bad input (a failed handshake, an oversize frame, a frame that does not decode, a message
//! whose sender or receiver does not match the handshake) closes that connection, is counted
//! in [`TransportStats`] and logged to stderr; the transport keeps running. What concerns
//! one peer (frames sent, received, dropped; connects, failures, refusals) is also counted
//! for that peer ([`Transport::peer_stats`]).
//! [`Transport::shutdown`] (or dropping the transport) stops and joins every thread.

pub mod auth;
pub mod connect;
mod counters;
pub mod envelope;
pub mod handshake;
mod peer;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use shale_core::raft::{NodeId, Outgoing};

pub use counters::{
    PeerCounterSet, PeerCounters, PeerStats, TransportCounters, TransportStats, UNLISTED_PEERS_MAX,
    bump,
};
pub use envelope::{
    APP_GROUP, Delivery, Envelope, EnvelopeError, GroupId, append_frame, check_delivery,
    decode_delivery, decode_envelope, encode_app, encode_envelope,
};
pub use handshake::HandshakeError;

/// Default [`TransportConfig::max_frame_bytes`]: 16 MiB
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 << 20;
/// Default [`TransportConfig::outbound_queue_capacity`], in messages per peer
pub const DEFAULT_OUTBOUND_QUEUE_CAPACITY: usize = 1024;
/// Default [`TransportConfig::inbound_queue_capacity`], in messages
pub const DEFAULT_INBOUND_QUEUE_CAPACITY: usize = 4096;
/// Default [`TransportConfig::backoff_min`]
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(20);
/// Default [`TransportConfig::backoff_max`]
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Default [`TransportConfig::handshake_timeout`]
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`TransportConfig::max_inbound_connections`]
pub const DEFAULT_MAX_INBOUND_CONNECTIONS: usize = 256;

/// Settings of a [`Transport`]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportConfig {
    /// The cluster this node belongs to; connections from other clusters are refused
    pub cluster_id: u64,
    /// This node's id
    pub node_id: NodeId,
    /// Largest frame, in bytes, read or written; a larger incoming frame closes the
    /// connection, a larger outgoing message is dropped and counted
    pub max_frame_bytes: usize,
    /// Messages queued per peer before [`Transport::send`] drops them
    pub outbound_queue_capacity: usize,
    /// Messages received but not yet taken by [`Transport::recv_timeout`] before readers wait
    pub inbound_queue_capacity: usize,
    /// First delay before reconnecting to a peer
    pub backoff_min: Duration,
    /// Cap of the reconnect delay, which doubles after each failure
    pub backoff_max: Duration,
    /// Limit on connecting and on each step of the handshake
    pub handshake_timeout: Duration,
    /// Accepted connections open at once; more are refused
    pub max_inbound_connections: usize,
    /// The cluster secret every peer must prove it knows (empty: none, the default); see
    /// [`auth`]
    pub secret: Vec<u8>,
}

impl TransportConfig {
    /// The defaults for node `node_id` of cluster `cluster_id`
    pub fn new(cluster_id: u64, node_id: NodeId) -> Self {
        TransportConfig {
            cluster_id,
            node_id,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            outbound_queue_capacity: DEFAULT_OUTBOUND_QUEUE_CAPACITY,
            inbound_queue_capacity: DEFAULT_INBOUND_QUEUE_CAPACITY,
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_inbound_connections: DEFAULT_MAX_INBOUND_CONNECTIONS,
            secret: Vec::new(),
        }
    }
}

/// Counts a message dropped because `to` is not a peer: transport-wide, and for `to` while
/// fewer than [`UNLISTED_PEERS_MAX`] such nodes have been seen
///
/// Locks `peers` once: only a send to a node with no address gets here.
pub fn count_unknown_peer(counters: &TransportCounters, peers: &PeerCounterSet, to: NodeId) {
    bump(&counters.dropped_unknown_peer);
    if let Some(peer) = peers.observed(to) {
        bump(&peer.dropped_unknown_peer);
    }
}

/// State shared by the transport and its threads
struct Shared {
    config: TransportConfig,
    counters: TransportCounters,
    peers: Arc<PeerCounterSet>,
    stopped: Mutex<bool>,
    stop_signal: Condvar,
    /// Every open connection, so shutdown can unblock the threads using them
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    live_readers: AtomicUsize,
    readers: Mutex<Vec<JoinHandle<()>>>,
    last_reason: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn is_stopped(&self) -> bool {
        *lock(&self.stopped)
    }

    /// Sleeps for `d` unless stopped first; returns whether the transport is stopping
    fn sleep(&self, d: Duration) -> bool {
        let guard = lock(&self.stopped);
        let (guard, _) = self
            .stop_signal
            .wait_timeout_while(guard, d, |stopped| !*stopped)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }

    /// Registers a connection; `None` if the transport is stopping
    fn register(&self, stream: &TcpStream) -> Option<u64> {
        let clone = stream.try_clone().ok()?;
        let mut conns = lock(&self.conns);
        if self.is_stopped() {
            return None;
        }
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        conns.insert(id, clone);
        Some(id)
    }

    fn unregister(&self, id: u64) {
        lock(&self.conns).remove(&id);
    }

    /// Logs why a connection closed or failed
    fn log(&self, reason: String) {
        eprintln!("shale transport (node {}): {reason}", self.config.node_id);
        self.remember(reason);
    }

    /// Records why a connection closed or failed without logging it again
    fn remember(&self, reason: String) {
        *lock(&self.last_reason) = Some(reason);
    }
}

/// Where readers hand what they received: returns `false` once nobody listens any more (the
/// reader then closes its connection). It may block, which pushes back on TCP.
pub type Sink = Arc<dyn Fn(Delivery) -> bool + Send + Sync>;

/// One message waiting in a peer's queue
#[derive(Debug)]
pub enum Outbound {
    /// A Raft message of a group
    Raft(GroupId, Outgoing),
    /// Application bytes ([`Transport::send_app`])
    App(Vec<u8>),
}

struct Peer {
    queue: SyncSender<Outbound>,
    counters: Arc<PeerCounters>,
    writer: JoinHandle<()>,
}

/// What a node's engine needs from a transport: its address, sending, counters and stopping
///
/// [`Transport`] (threads) implements it; so does the smol runtime's transport (tasks), which
/// shares this module's handshake ([`connect`]), frame encoding and checks
/// ([`append_frame`], [`check_delivery`]) and counters ([`TransportCounters`]).
pub trait PeerLinks: Send {
    /// The address peers connect to
    fn local_addr(&self) -> SocketAddr;
    /// Queues `message` of `group` for node `to` without blocking; `false` when dropped
    fn send(&self, to: NodeId, group: GroupId, message: Outgoing) -> bool;
    /// Queues application `bytes` for node `to` without blocking; `false` when dropped
    fn send_app(&self, to: NodeId, bytes: Vec<u8>) -> bool;
    /// The counters so far
    fn stats(&self) -> TransportStats;
    /// The counters so far of each node sent to or heard from, by node id
    fn peer_stats(&self) -> BTreeMap<NodeId, PeerStats>;
    /// Stops sending and receiving; may block briefly while threads finish
    fn shutdown(self: Box<Self>);
}

impl PeerLinks for Transport {
    fn local_addr(&self) -> SocketAddr {
        Transport::local_addr(self)
    }
    fn send(&self, to: NodeId, group: GroupId, message: Outgoing) -> bool {
        Transport::send(self, to, group, message)
    }
    fn send_app(&self, to: NodeId, bytes: Vec<u8>) -> bool {
        Transport::send_app(self, to, bytes)
    }
    fn stats(&self) -> TransportStats {
        Transport::stats(self)
    }
    fn peer_stats(&self) -> BTreeMap<NodeId, PeerStats> {
        Transport::peer_stats(self)
    }
    fn shutdown(self: Box<Self>) {
        Transport::shutdown(*self);
    }
}

/// The TCP transport of one node; see the [module documentation](self)
pub struct Transport {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    peers: HashMap<NodeId, Peer>,
    inbound: Option<Receiver<Delivery>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Transport {
    /// Binds `addr` and starts accepting connections from peers
    pub fn listen<A: ToSocketAddrs>(addr: A, config: TransportConfig) -> io::Result<Transport> {
        let (inbound_tx, inbound_rx) = mpsc::sync_channel(config.inbound_queue_capacity.max(1));
        let sink: Sink = Arc::new(move |delivery| inbound_tx.send(delivery).is_ok());
        let mut transport = Transport::listen_into(addr, config, sink)?;
        transport.inbound = Some(inbound_rx);
        Ok(transport)
    }

    /// Binds `addr` and starts accepting connections from peers, handing everything received
    /// to `sink` (from the reader threads) instead of the transport's own queue;
    /// [`recv_timeout`](Self::recv_timeout) then never returns anything
    pub fn listen_into<A: ToSocketAddrs>(
        addr: A,
        config: TransportConfig,
        sink: Sink,
    ) -> io::Result<Transport> {
        Transport::accept_into(TcpListener::bind(addr)?, config, sink)
    }

    /// Like [`listen_into`](Self::listen_into), on a listener the caller bound
    pub fn accept_into(
        listener: TcpListener,
        config: TransportConfig,
        sink: Sink,
    ) -> io::Result<Transport> {
        let local_addr = listener.local_addr()?;
        // The acceptor polls so that shutdown never waits on a blocked accept.
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            config,
            counters: TransportCounters::default(),
            peers: Arc::default(),
            stopped: Mutex::new(false),
            stop_signal: Condvar::new(),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            live_readers: AtomicUsize::new(0),
            readers: Mutex::new(Vec::new()),
            last_reason: Mutex::new(None),
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("shale-accept-{}", shared.config.node_id))
                .spawn(move || peer::run_acceptor(shared, listener, sink))?
        };
        Ok(Transport {
            shared,
            local_addr,
            peers: HashMap::new(),
            inbound: None,
            acceptor: Some(acceptor),
        })
    }

    /// The address the listener is bound to (with the actual port when bound to port 0)
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This transport's settings
    pub fn config(&self) -> &TransportConfig {
        &self.shared.config
    }

    /// Starts sending to node `id` at `addr`; returns `false` (and changes nothing) if `id` is
    /// already a peer
    pub fn add_peer(&mut self, id: NodeId, addr: SocketAddr) -> io::Result<bool> {
        if self.peers.contains_key(&id) {
            return Ok(false);
        }
        let (queue, rx) = mpsc::sync_channel(self.shared.config.outbound_queue_capacity.max(1));
        let shared = self.shared.clone();
        let counters = shared.peers.peer(id);
        let writer = {
            let counters = counters.clone();
            std::thread::Builder::new()
                .name(format!("shale-write-{}-{id}", shared.config.node_id))
                .spawn(move || peer::run_writer(shared, id, addr, counters, rx))?
        };
        self.peers.insert(
            id,
            Peer {
                queue,
                counters,
                writer,
            },
        );
        Ok(true)
    }

    /// Queues `message` of `group` for node `to`; never blocks
    ///
    /// Returns `false` when the message was dropped (and counted): the peer is unknown or its
    /// queue is full. Group [`APP_GROUP`] is reserved: such a message is dropped.
    pub fn send(&self, to: NodeId, group: GroupId, message: Outgoing) -> bool {
        if group == APP_GROUP {
            return false;
        }
        self.enqueue(to, Outbound::Raft(group, message))
    }

    /// Queues application `bytes` for node `to`, which receives them as [`Delivery::App`];
    /// never blocks, and drops (and counts) like [`send`](Self::send)
    pub fn send_app(&self, to: NodeId, bytes: Vec<u8>) -> bool {
        self.enqueue(to, Outbound::App(bytes))
    }

    fn enqueue(&self, to: NodeId, frame: Outbound) -> bool {
        let Some(peer) = self.peers.get(&to) else {
            count_unknown_peer(&self.shared.counters, &self.shared.peers, to);
            return false;
        };
        match peer.queue.try_send(frame) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                bump(&self.shared.counters.dropped_full);
                bump(&peer.counters.dropped_full);
                false
            }
        }
    }

    /// Waits up to `timeout` for a message from a peer
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Delivery> {
        self.inbound.as_ref()?.recv_timeout(timeout).ok()
    }

    /// Takes a message from a peer if one is waiting
    pub fn try_recv(&self) -> Option<Delivery> {
        self.inbound.as_ref()?.try_recv().ok()
    }

    /// A snapshot of the counters
    pub fn stats(&self) -> TransportStats {
        self.shared.counters.snapshot()
    }

    /// A snapshot of the counters of each node sent to or heard from, by node id
    pub fn peer_stats(&self) -> BTreeMap<NodeId, PeerStats> {
        self.shared.peers.snapshot()
    }

    /// The live per-peer counters, to read later without the transport (say from a metrics
    /// task)
    pub fn peer_counters(&self) -> Arc<PeerCounterSet> {
        self.shared.peers.clone()
    }

    /// The last reason a connection closed or failed, as logged
    pub fn last_close_reason(&self) -> Option<String> {
        lock(&self.shared.last_reason).clone()
    }

    /// Stops and joins every thread; messages still queued are dropped
    ///
    /// Open connections are shut down to unblock their threads; a writer in the middle of
    /// connecting can hold this up to [`TransportConfig::handshake_timeout`].
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        *lock(&self.shared.stopped) = true;
        self.shared.stop_signal.notify_all();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // Readers waiting on a full inbound queue see it disconnected.
        self.inbound = None;
        for stream in lock(&self.shared.conns).values() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        // Writers waiting on their queue see it disconnected.
        for (_, peer) in self.peers.drain() {
            drop(peer.queue);
            let _ = peer.writer.join();
        }
        let readers = std::mem::take(&mut *lock(&self.shared.readers));
        for reader in readers {
            let _ = reader.join();
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("node_id", &self.shared.config.node_id)
            .field("local_addr", &self.local_addr)
            .field("peers", &self.peers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}
