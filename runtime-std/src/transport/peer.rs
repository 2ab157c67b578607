//! The threads of a transport: acceptor, one writer per peer, one reader per accepted connection

use std::io::{self, BufReader, BufWriter, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use embedded_io_adapters::std::FromStd;
use shale_core::raft::NodeId;
use shale_core::wire::{FrameError, read_frame, write_frame};

use super::connect;
use super::envelope::{append_frame, check_delivery};
use super::handshake::{Refusal, Reply, encode_reply};
use super::{Outbound, PeerCounters, Shared, Sink, bump};

/// How often the acceptor looks at the stop flag when no connection arrives
const ACCEPT_POLL: Duration = Duration::from_millis(10);
/// Write buffer per connection; frames are flushed when the queue runs empty
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// Read buffer per connection
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Why a connection ended
enum Closed {
    /// The transport is stopping
    Stopping,
    /// An error, with its reason
    Error(String),
}

pub(super) fn run_acceptor(shared: Arc<Shared>, listener: TcpListener, inbound: Sink) {
    while !shared.is_stopped() {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if shared.sleep(ACCEPT_POLL) {
                    break;
                }
                continue;
            }
            Err(e) => {
                shared.log(format!("accept failed: {e}"));
                if shared.sleep(ACCEPT_POLL) {
                    break;
                }
                continue;
            }
        };
        bump(&shared.counters.accepted);
        // Accepted sockets inherit non-blocking mode on some platforms.
        if stream.set_nonblocking(false).is_err() || stream.set_nodelay(true).is_err() {
            continue;
        }
        let mut readers = super::lock(&shared.readers);
        // Join readers that finished, so the list stays as long as the open connections.
        let (done, open): (Vec<_>, Vec<_>) = readers.drain(..).partition(|h| h.is_finished());
        *readers = open;
        for handle in done {
            let _ = handle.join();
        }
        if shared.live_readers.load(Ordering::Relaxed) >= shared.config.max_inbound_connections {
            bump(&shared.counters.refused_handshakes);
            shared.log("refused a connection: too many connections".into());
            let reply = encode_reply(Reply::Refuse(Refusal::TooManyConnections));
            let _ = write_frame(&mut FromStd::new(&stream), &reply);
            continue;
        }
        let Some(conn) = shared.register(&stream) else {
            break;
        };
        shared.live_readers.fetch_add(1, Ordering::Relaxed);
        let reader_shared = shared.clone();
        let inbound = inbound.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("shale-read-{}", shared.config.node_id))
            .spawn(move || {
                let closed = read_connection(&reader_shared, &stream, &inbound);
                if let Closed::Error(reason) = closed {
                    reader_shared.log(reason);
                }
                reader_shared.unregister(conn);
                reader_shared.live_readers.fetch_sub(1, Ordering::Relaxed);
            });
        match spawned {
            Ok(handle) => readers.push(handle),
            Err(e) => {
                shared.unregister(conn);
                shared.live_readers.fetch_sub(1, Ordering::Relaxed);
                shared.log(format!("could not start a reader thread: {e}"));
            }
        }
    }
}

fn frame_error(shared: &Shared, e: FrameError<io::Error>, what: &str) -> Closed {
    if shared.is_stopped() {
        return Closed::Stopping;
    }
    match e {
        FrameError::Eof => Closed::Error(format!("{what}: peer closed the connection")),
        FrameError::TooLarge { .. } => {
            bump(&shared.counters.oversize_frames);
            Closed::Error(format!("{what}: {e}"))
        }
        FrameError::Io(err) => {
            bump(&shared.counters.io_errors);
            Closed::Error(format!("{what}: {err}"))
        }
    }
}

/// Serves one accepted connection: handshake, then envelopes into `inbound`
fn read_connection(shared: &Shared, stream: &TcpStream, inbound: &Sink) -> Closed {
    let config = &shared.config;
    let from = match connect::accept(config, &shared.counters, stream) {
        Ok(from) => from,
        Err(_) if shared.is_stopped() => return Closed::Stopping,
        Err(reason) => return Closed::Error(reason),
    };
    let peer = shared.peers.observed(from);
    let peer_addr = stream
        .peer_addr()
        .map_or_else(|_| "unknown".into(), |a| a.to_string());
    let mut reader = FromStd::new(BufReader::with_capacity(READ_BUFFER_BYTES, stream));
    let mut buf = Vec::new();
    let what = format!("connection from node {from} ({peer_addr})");
    loop {
        if let Err(e) = read_frame(&mut reader, &mut buf, config.max_frame_bytes) {
            return frame_error(shared, e, &what);
        }
        let delivery = match check_delivery(from, config.node_id, &buf) {
            Ok(delivery) => delivery,
            Err(e) => {
                bump(&shared.counters.bad_frames);
                return Closed::Error(format!("{what}: {e}"));
            }
        };
        // Counted before the hand-off, so the count never lags what the driver has received.
        bump(&shared.counters.received);
        if let Some(peer) = &peer {
            bump(&peer.received);
        }
        if !inbound(delivery) {
            return Closed::Stopping;
        }
    }
}

/// Sends the queue of one peer, connecting and reconnecting as needed
pub(super) fn run_writer(
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
    while !shared.is_stopped() {
        let closed = match connect::connect(config, &shared.counters, &counters, peer, addr) {
            Err(reason) => {
                bump(&shared.counters.connect_failures);
                bump(&counters.connect_failures);
                Closed::Error(reason)
            }
            Ok(stream) => match shared.register(&stream) {
                None => Closed::Stopping,
                Some(conn) => {
                    bump(&shared.counters.connects);
                    bump(&counters.connects);
                    last_logged = None;
                    backoff = config.backoff_min;
                    let closed = write_connection(&shared, &stream, &queue, peer, &counters);
                    shared.unregister(conn);
                    closed
                }
            },
        };
        match closed {
            Closed::Stopping => return,
            Closed::Error(reason) => {
                if last_logged.as_ref() != Some(&reason) {
                    shared.log(reason.clone());
                    last_logged = Some(reason);
                } else {
                    shared.remember(reason);
                }
            }
        }
        if shared.sleep(backoff) {
            return;
        }
        backoff = (backoff * 2).min(config.backoff_max);
    }
}

/// Writes queued messages to one connection until it fails or the queue is closed
fn write_connection(
    shared: &Shared,
    stream: &TcpStream,
    queue: &Receiver<Outbound>,
    peer: NodeId,
    counters: &PeerCounters,
) -> Closed {
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER_BYTES, stream);
    let mut buf = Vec::new();
    let fail = |e: io::Error| {
        if shared.is_stopped() {
            Closed::Stopping
        } else {
            bump(&shared.counters.io_errors);
            Closed::Error(format!("write to node {peer}: {e}"))
        }
    };
    loop {
        let Ok(mut next) = queue.recv() else {
            return Closed::Stopping;
        };
        // Write everything queued, then flush once.
        loop {
            buf.clear();
            if append_frame(&next, shared.config.max_frame_bytes, &mut buf) {
                if let Err(e) = writer.write_all(&buf) {
                    return fail(e);
                }
                bump(&shared.counters.sent);
                bump(&counters.sent);
            } else {
                bump(&shared.counters.dropped_oversize);
                bump(&counters.dropped_oversize);
            }
            match queue.try_recv() {
                Ok(more) => next = more,
                Err(_) => break,
            }
        }
        if let Err(e) = writer.flush() {
            return fail(e);
        }
    }
}
