//! The peer transport as tasks: runtime-std's protocol without a thread per connection
//!
//! [`SmolTransport`] speaks exactly the protocol of runtime-std's
//! [`Transport`](shale_runtime_std::transport::Transport), and reuses its pieces: the handshake
//! ([`connect::connect`], [`connect::accept`]), the frame encoding and checks
//! ([`append_frame`], [`check_delivery`]) and the counters ([`TransportCounters`]). What differs
//! is where the work runs. Reading and writing are tasks on the node's executor: one acceptor,
//! one writer per peer (connecting and reconnecting with capped exponential backoff) and one
//! reader per accepted connection, which pushes what it receives straight into the node's
//! inbox (a full inbox pushes back on TCP). Only the handshake, a few blocking round trips
//! bounded by [`TransportConfig::handshake_timeout`], runs on smol's blocking pool.
//!
//! Why: with a reader and a writer thread per peer, every message crossed two more threads
//! than it needed (writer, then reader, then the node's executor), and on a two-core machine
//! those wake-ups were a quarter of the CPU time of a write-heavy benchmark.
//!
//! [`SmolTransport::send`] never blocks: each peer has a bounded queue, and a message that does
//! not fit is dropped and counted (Raft tolerates loss). [`PeerLinks::shutdown`] stops every
//! task: pending waits see the stop signal, and open connections close with their tasks.
//!
//! Counting is per transport ([`PeerLinks::stats`]) and per peer ([`PeerLinks::peer_stats`],
//! or [`SmolTransport::peer_counters`] to keep reading them after the transport is handed to
//! the node's engine). A peer's counters sit next to its queue, and each connection task looks
//! its peer's counters up once, so counting is only relaxed atomic adds.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_channel::{Receiver, Sender};
use async_executor::{Executor, Task};
use async_io::{Async, Timer};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use futures_lite::{FutureExt, future};

use shale_core::raft::{NodeId, Outgoing};
use shale_runtime_std::node::Input;
use shale_runtime_std::transport::{
    APP_GROUP, GroupId, Outbound, PeerCounterSet, PeerCounters, PeerLinks, PeerStats,
    TransportConfig, TransportCounters, TransportStats, append_frame, bump, check_delivery,
    connect, count_unknown_peer,
};

/// Read buffer per accepted connection
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Longest [`PeerLinks::shutdown`] waits for its tasks to drop their sockets
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);
/// Bytes of frames a writer gathers from its queue before writing them with one call
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// State shared by a transport's tasks
struct Shared {
    config: TransportConfig,
    counters: TransportCounters,
    peers: Arc<PeerCounterSet>,
    live_readers: AtomicUsize,
    /// Closed (by dropping its sender) when the transport stops
    stopped: Receiver<()>,
}

impl Shared {
    /// Runs `work` unless the transport stops first (`None`)
    async fn unless_stopped<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        async { Some(work.await) }
            .or(async {
                let _ = self.stopped.recv().await;
                None
            })
            .await
    }
}

/// What the send path finds for a peer: its queue and its counters
struct Peer {
    queue: Sender<Outbound>,
    counters: Arc<PeerCounters>,
}

/// The peer transport of one node, as tasks; see the [module documentation](self)
pub struct SmolTransport {
    shared: Arc<Shared>,
    ex: Arc<Executor<'static>>,
    local_addr: SocketAddr,
    peers: HashMap<NodeId, Peer>,
    tasks: Vec<Task<()>>,
    stop: Option<Sender<()>>,
}

impl std::fmt::Debug for SmolTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmolTransport")
            .field("node_id", &self.shared.config.node_id)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl SmolTransport {
    /// Binds `addr` and accepts peers on `ex`, handing what they send to `inbox`
    pub fn listen(
        ex: &Arc<Executor<'static>>,
        addr: SocketAddr,
        config: TransportConfig,
        inbox: Sender<Input>,
    ) -> io::Result<SmolTransport> {
        SmolTransport::accept(ex, TcpListener::bind(addr)?, config, inbox)
    }

    /// Like [`listen`](Self::listen), on a listener the caller bound
    pub fn accept(
        ex: &Arc<Executor<'static>>,
        listener: TcpListener,
        config: TransportConfig,
        inbox: Sender<Input>,
    ) -> io::Result<SmolTransport> {
        let listener = Async::new(listener)?;
        let local_addr = listener.get_ref().local_addr()?;
        let (stop, stopped) = async_channel::bounded(1);
        let shared = Arc::new(Shared {
            config,
            counters: TransportCounters::default(),
            peers: Arc::default(),
            live_readers: AtomicUsize::new(0),
            stopped,
        });
        let acceptor = ex.spawn(run_acceptor(ex.clone(), shared.clone(), listener, inbox));
        Ok(SmolTransport {
            shared,
            ex: ex.clone(),
            local_addr,
            peers: HashMap::new(),
            tasks: vec![acceptor],
            stop: Some(stop),
        })
    }

    /// Starts sending to node `id` at `addr`; returns `false` (and changes nothing) if `id` is
    /// already a peer
    pub fn add_peer(&mut self, id: NodeId, addr: SocketAddr) -> bool {
        if self.peers.contains_key(&id) {
            return false;
        }
        let (queue, rx) = async_channel::bounded(self.shared.config.outbound_queue_capacity.max(1));
        let counters = self.shared.peers.peer(id);
        let writer = self.ex.spawn(run_writer(
            self.shared.clone(),
            id,
            addr,
            counters.clone(),
            rx,
        ));
        self.tasks.push(writer);
        self.peers.insert(id, Peer { queue, counters });
        true
    }

    /// The live per-peer counters: keep the `Arc` to read them (with
    /// [`PeerCounterSet::snapshot`]) once the transport is boxed into a node's engine
    pub fn peer_counters(&self) -> Arc<PeerCounterSet> {
        self.shared.peers.clone()
    }

    fn enqueue(&self, to: NodeId, frame: Outbound) -> bool {
        let Some(peer) = self.peers.get(&to) else {
            count_unknown_peer(&self.shared.counters, &self.shared.peers, to);
            return false;
        };
        let sent = peer.queue.try_send(frame).is_ok();
        if !sent {
            bump(&self.shared.counters.dropped_full);
            bump(&peer.counters.dropped_full);
        }
        sent
    }
}

impl PeerLinks for SmolTransport {
    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn send(&self, to: NodeId, group: GroupId, message: Outgoing) -> bool {
        group != APP_GROUP && self.enqueue(to, Outbound::Raft(group, message))
    }

    fn send_app(&self, to: NodeId, bytes: Vec<u8>) -> bool {
        self.enqueue(to, Outbound::App(bytes))
    }

    fn stats(&self) -> TransportStats {
        self.shared.counters.snapshot()
    }

    fn peer_stats(&self) -> BTreeMap<NodeId, PeerStats> {
        self.shared.peers.snapshot()
    }

    fn shutdown(mut self: Box<Self>) {
        // Every task waiting on something sees the stop signal; writers also see their queue
        // closed. Cancelling the acceptor and the writers drops their sockets; waiting for
        // that (on the executor, bounded in case its threads are gone) frees the port before
        // this returns, so a node restarted in the same process can bind it again.
        drop(self.stop.take());
        self.peers.clear();
        let tasks = std::mem::take(&mut self.tasks);
        async_io::block_on(future::or(
            async {
                for task in tasks {
                    task.cancel().await;
                }
            },
            async {
                Timer::after(SHUTDOWN_WAIT).await;
            },
        ));
    }
}

/// Why a connection ended
enum Closed {
    Stopping,
    Error(String),
}

async fn run_acceptor(
    ex: Arc<Executor<'static>>,
    shared: Arc<Shared>,
    listener: Async<TcpListener>,
    inbox: Sender<Input>,
) {
    while let Some(accepted) = shared.unless_stopped(listener.accept()).await {
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(node = shared.config.node_id, "accept failed: {e}");
                if shared
                    .unless_stopped(Timer::after(Duration::from_millis(10)))
                    .await
                    .is_none()
                {
                    return;
                }
                continue;
            }
        };
        bump(&shared.counters.accepted);
        let live = shared.live_readers.fetch_add(1, Ordering::Relaxed);
        let (shared, inbox) = (shared.clone(), inbox.clone());
        ex.spawn(async move {
            let closed = if live >= shared.config.max_inbound_connections {
                refuse_too_many(&shared, stream).await
            } else {
                shared
                    .unless_stopped(read_connection(&shared, stream, &inbox))
                    .await
                    .unwrap_or(Closed::Stopping)
            };
            if let Closed::Error(reason) = closed {
                tracing::warn!(node = shared.config.node_id, "{reason}");
            }
            shared.live_readers.fetch_sub(1, Ordering::Relaxed);
        })
        .detach();
    }
}

async fn refuse_too_many(shared: &Shared, stream: Async<TcpStream>) -> Closed {
    use shale_runtime_std::transport::handshake::{Refusal, Reply, encode_reply};
    bump(&shared.counters.refused_handshakes);
    let reply = encode_reply(Reply::Refuse(Refusal::TooManyConnections));
    let mut frame = Vec::new();
    let _ = shale_core::wire::write_frame(&mut frame, &reply);
    let _ = (&stream).write_all(&frame).await;
    Closed::Error("refused a connection: too many connections".into())
}

/// Serves one accepted connection: the handshake (on the blocking pool), then frames into
/// `inbox`
async fn read_connection(
    shared: &Arc<Shared>,
    stream: Async<TcpStream>,
    inbox: &Sender<Input>,
) -> Closed {
    let config = &shared.config;
    let peer_addr = stream
        .get_ref()
        .peer_addr()
        .map_or_else(|_| "unknown".into(), |a| a.to_string());
    let handshake = {
        let shared = shared.clone();
        smol::unblock(move || {
            let stream = stream.into_inner()?;
            stream.set_nonblocking(false)?;
            let from = connect::accept(&shared.config, &shared.counters, &stream);
            Ok::<_, io::Error>((from, stream))
        })
    };
    let (from, stream) = match handshake.await {
        Ok((Ok(from), stream)) => (from, stream),
        Ok((Err(reason), _)) => return Closed::Error(reason),
        Err(e) => return Closed::Error(format!("accepted connection: {e}")),
    };
    let what = format!("connection from node {from} ({peer_addr})");
    let peer = shared.peers.observed(from);
    let stream = match Async::new(stream) {
        Ok(stream) => stream,
        Err(e) => return Closed::Error(format!("{what}: {e}")),
    };
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, &stream);
    let mut len = [0u8; 4];
    let mut buf = Vec::new();
    let io_error = |e: io::Error| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Closed::Error(format!("{what}: peer closed the connection"))
        } else {
            bump(&shared.counters.io_errors);
            Closed::Error(format!("{what}: {e}"))
        }
    };
    loop {
        if let Err(e) = reader.read_exact(&mut len).await {
            return io_error(e);
        }
        let frame_len = u32::from_le_bytes(len) as usize;
        if frame_len > config.max_frame_bytes {
            bump(&shared.counters.oversize_frames);
            return Closed::Error(format!(
                "{what}: frame of {frame_len} bytes exceeds the limit of {} bytes",
                config.max_frame_bytes
            ));
        }
        buf.resize(frame_len, 0);
        if let Err(e) = reader.read_exact(&mut buf).await {
            return io_error(e);
        }
        match check_delivery(from, config.node_id, &buf) {
            Ok(delivery) => {
                bump(&shared.counters.received);
                if let Some(peer) = &peer {
                    bump(&peer.received);
                }
                if inbox.send(Input::Peer(delivery)).await.is_err() {
                    return Closed::Stopping;
                }
            }
            Err(e) => {
                bump(&shared.counters.bad_frames);
                return Closed::Error(format!("{what}: {e}"));
            }
        }
    }
}

/// Sends the queue of one peer, connecting and reconnecting as needed
async fn run_writer(
    shared: Arc<Shared>,
    peer: NodeId,
    addr: SocketAddr,
    counters: Arc<PeerCounters>,
    queue: Receiver<Outbound>,
) {
    let config = &shared.config;
    let mut backoff = config.backoff_min;
    // A peer that stays down is logged once, not on every retry.
    let mut last_logged: Option<String> = None;
    loop {
        let connecting = {
            let (shared, counters) = (shared.clone(), counters.clone());
            smol::unblock(move || {
                connect::connect(&shared.config, &shared.counters, &counters, peer, addr)
            })
        };
        let Some(connected) = shared.unless_stopped(connecting).await else {
            return;
        };
        let closed = match connected
            .and_then(|s| Async::new(s).map_err(|e| format!("connection to node {peer}: {e}")))
        {
            Err(reason) => {
                bump(&shared.counters.connect_failures);
                bump(&counters.connect_failures);
                Closed::Error(reason)
            }
            Ok(stream) => {
                bump(&shared.counters.connects);
                bump(&counters.connects);
                last_logged = None;
                backoff = config.backoff_min;
                let writing = write_connection(&shared, &stream, &queue, peer, &counters);
                shared
                    .unless_stopped(writing)
                    .await
                    .unwrap_or(Closed::Stopping)
            }
        };
        let Closed::Error(reason) = closed else {
            return;
        };
        if last_logged.as_ref() != Some(&reason) {
            tracing::warn!(node = config.node_id, "{reason}");
            last_logged = Some(reason);
        }
        if shared.unless_stopped(Timer::after(backoff)).await.is_none() {
            return;
        }
        backoff = (backoff * 2).min(config.backoff_max);
    }
}

/// Writes queued messages to one connection until it fails or the queue is closed
async fn write_connection(
    shared: &Shared,
    stream: &Async<TcpStream>,
    queue: &Receiver<Outbound>,
    peer: NodeId,
    counters: &PeerCounters,
) -> Closed {
    let mut buf = Vec::new();
    loop {
        let Ok(first) = queue.recv().await else {
            return Closed::Stopping;
        };
        // Gather everything queued (up to a batch), then write it with one call.
        buf.clear();
        let (mut sent, mut oversize) = (0, 0);
        let mut next = Some(first);
        while let Some(message) = next {
            if append_frame(&message, shared.config.max_frame_bytes, &mut buf) {
                sent += 1;
            } else {
                oversize += 1;
            }
            next = if buf.len() < WRITE_BATCH_BYTES {
                queue.try_recv().ok()
            } else {
                None
            };
        }
        // Counted once per batch: four atomic adds however many frames it holds.
        add(&shared.counters.sent, sent);
        add(&counters.sent, sent);
        add(&shared.counters.dropped_oversize, oversize);
        add(&counters.dropped_oversize, oversize);
        let mut stream = stream;
        if let Err(e) = stream.write_all(&buf).await {
            bump(&shared.counters.io_errors);
            return Closed::Error(format!("write to node {peer}: {e}"));
        }
    }
}

/// Adds `n` to `counter` (nothing to do for zero)
fn add(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
