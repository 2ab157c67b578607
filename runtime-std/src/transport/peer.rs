//! The threads of a transport: acceptor, one writer per peer, one reader per accepted connection

use std::io::{self, BufReader, BufWriter};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use embedded_io::Write as _;
use embedded_io_adapters::std::FromStd;
use shale_core::raft::NodeId;
use shale_core::wire::{FrameError, read_frame, write_frame};

use super::auth;
use super::envelope::{Delivery, decode_delivery, encode_app, encode_envelope};
use super::handshake::{
    CHALLENGE_LEN, HELLO_LEN, HandshakeError, Hello, REPLY_LEN, Refusal, Reply, check_hello,
    decode_challenge, decode_hello, decode_reply, encode_challenge, encode_hello, encode_reply,
};
use super::{Outbound, Shared, Sink, bump};

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
    let peer_addr = stream
        .peer_addr()
        .map_or_else(|_| "unknown".into(), |a| a.to_string());
    let mut reader = FromStd::new(BufReader::with_capacity(READ_BUFFER_BYTES, stream));
    let mut buf = Vec::new();

    // Handshake, bounded in size and time.
    if stream
        .set_read_timeout(Some(config.handshake_timeout))
        .is_err()
    {
        return Closed::Error(format!("connection from {peer_addr}: cannot set timeout"));
    }
    let hello = match read_frame(&mut reader, &mut buf, HELLO_LEN) {
        Ok(()) => decode_hello(&buf).and_then(|hello| {
            check_hello(&hello, config.cluster_id, config.node_id).map(|()| hello)
        }),
        Err(FrameError::TooLarge { .. }) => Err(HandshakeError::Malformed),
        Err(e) => {
            if !shared.is_stopped() {
                bump(&shared.counters.refused_handshakes);
            }
            return frame_error(shared, e, &format!("handshake from {peer_addr}"));
        }
    };
    let hello = match hello {
        Ok(hello) => hello,
        Err(e) => {
            bump(&shared.counters.refused_handshakes);
            let reply = encode_reply(Reply::Refuse(e.refusal()));
            let _ = write_frame(&mut FromStd::new(stream), &reply);
            return Closed::Error(format!("refused connection from {peer_addr}: {e}"));
        }
    };
    // The connecting side proves it knows the cluster secret.
    let hello_bytes = buf.clone();
    let nonce = auth::nonce();
    if write_frame(&mut FromStd::new(stream), &encode_challenge(&nonce)).is_err() {
        bump(&shared.counters.io_errors);
        return Closed::Error(format!("challenge to {peer_addr} failed"));
    }
    let proof = match read_frame(&mut reader, &mut buf, CHALLENGE_LEN) {
        Ok(()) => decode_challenge(&buf),
        Err(e) => {
            bump(&shared.counters.refused_handshakes);
            return frame_error(shared, e, &format!("proof from {peer_addr}"));
        }
    };
    let key = auth::secret_key(&config.secret);
    if !proof.is_ok_and(|p| auth::verify(&key, &nonce, &hello_bytes, &p)) {
        bump(&shared.counters.refused_handshakes);
        let reply = encode_reply(Reply::Refuse(Refusal::BadSecret));
        let _ = write_frame(&mut FromStd::new(stream), &reply);
        return Closed::Error(format!(
            "refused connection from {peer_addr}: {}",
            Refusal::BadSecret
        ));
    }
    if write_frame(&mut FromStd::new(stream), &encode_reply(Reply::Accept)).is_err()
        || stream.set_read_timeout(None).is_err()
    {
        bump(&shared.counters.io_errors);
        return Closed::Error(format!("handshake reply to {peer_addr} failed"));
    }

    let what = format!("connection from node {} ({peer_addr})", hello.from);
    loop {
        if let Err(e) = read_frame(&mut reader, &mut buf, config.max_frame_bytes) {
            return frame_error(shared, e, &what);
        }
        let delivery = match decode_delivery(hello.from, &buf) {
            Ok(delivery) => delivery,
            Err(e) => {
                bump(&shared.counters.bad_frames);
                return Closed::Error(format!("{what}: {e}"));
            }
        };
        if let Delivery::Raft(envelope) = &delivery
            && (envelope.message.from != hello.from || envelope.message.to != config.node_id)
        {
            bump(&shared.counters.bad_frames);
            return Closed::Error(format!(
                "{what}: message from {} to {} does not match the handshake",
                envelope.message.from, envelope.message.to
            ));
        }
        // Counted before the hand-off, so the count never lags what the driver has received.
        bump(&shared.counters.received);
        if !inbound(delivery) {
            return Closed::Stopping;
        }
    }
}

/// Connects to `addr` and performs the handshake
fn connect(shared: &Shared, peer: NodeId, addr: SocketAddr) -> Result<TcpStream, String> {
    let config = &shared.config;
    let stream = TcpStream::connect_timeout(&addr, config.handshake_timeout)
        .map_err(|e| format!("connect to node {peer} at {addr}: {e}"))?;
    let fail = |e: &dyn std::fmt::Display| format!("handshake with node {peer} at {addr}: {e}");
    stream.set_nodelay(true).map_err(|e| fail(&e))?;
    stream
        .set_read_timeout(Some(config.handshake_timeout))
        .map_err(|e| fail(&e))?;
    stream
        .set_write_timeout(Some(config.handshake_timeout))
        .map_err(|e| fail(&e))?;
    let hello = Hello {
        cluster_id: config.cluster_id,
        from: config.node_id,
        to: peer,
    };
    let mut io = FromStd::new(&stream);
    let hello_bytes = encode_hello(&hello);
    write_frame(&mut io, &hello_bytes).map_err(|e| fail(&e))?;
    let mut buf = Vec::new();
    // A refusal of the hello, or a challenge to prove the cluster secret.
    read_frame(&mut io, &mut buf, CHALLENGE_LEN.max(REPLY_LEN)).map_err(|e| fail(&e))?;
    if buf.len() == CHALLENGE_LEN {
        let nonce = decode_challenge(&buf).map_err(|e| fail(&e))?;
        let key = auth::secret_key(&config.secret);
        let proof = auth::prove(&key, &nonce, &hello_bytes);
        write_frame(&mut io, &encode_challenge(&proof)).map_err(|e| fail(&e))?;
        read_frame(&mut io, &mut buf, REPLY_LEN).map_err(|e| fail(&e))?;
    }
    match decode_reply(&buf) {
        Ok(Reply::Accept) => {}
        Ok(Reply::Refuse(r)) => {
            bump(&shared.counters.refused_by_peer);
            return Err(fail(&HandshakeError::Refused(r)));
        }
        Err(e) => return Err(fail(&e)),
    }
    stream.set_read_timeout(None).map_err(|e| fail(&e))?;
    stream.set_write_timeout(None).map_err(|e| fail(&e))?;
    Ok(stream)
}

/// Sends the queue of one peer, connecting and reconnecting as needed
pub(super) fn run_writer(
    shared: Arc<Shared>,
    peer: NodeId,
    addr: SocketAddr,
    queue: Receiver<Outbound>,
) {
    let config = &shared.config;
    let mut backoff = config.backoff_min;
    // A peer that stays down is logged once, not on every retry.
    let mut last_logged: Option<String> = None;
    while !shared.is_stopped() {
        let closed = match connect(&shared, peer, addr) {
            Err(reason) => {
                bump(&shared.counters.connect_failures);
                Closed::Error(reason)
            }
            Ok(stream) => match shared.register(&stream) {
                None => Closed::Stopping,
                Some(conn) => {
                    bump(&shared.counters.connects);
                    last_logged = None;
                    backoff = config.backoff_min;
                    let closed = write_connection(&shared, &stream, &queue, peer);
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
) -> Closed {
    let mut writer = FromStd::new(BufWriter::with_capacity(WRITE_BUFFER_BYTES, stream));
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
            match next {
                Outbound::Raft(group, message) => encode_envelope(group, &message, &mut buf),
                Outbound::App(bytes) => encode_app(&bytes, &mut buf),
            }
            if buf.len() > shared.config.max_frame_bytes {
                bump(&shared.counters.dropped_oversize);
            } else {
                if let Err(e) = write_frame(&mut writer, &buf) {
                    return fail(e);
                }
                bump(&shared.counters.sent);
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
