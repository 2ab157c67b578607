//! Opening a peer connection: both sides of the handshake, blocking, on a std `TcpStream`
//!
//! [`connect`] is the connecting side, [`accept`] the accepting side (see [`super::handshake`]
//! for the frames and [`super::auth`] for the cluster secret). Every step is bounded by
//! [`TransportConfig::handshake_timeout`](super::TransportConfig::handshake_timeout), and the
//! stream is left blocking with no timeouts once the handshake succeeds. The blocking transport
//! calls them on its threads; the smol runtime's transport calls them on its blocking pool and
//! then switches the stream to non-blocking mode.

use std::net::{SocketAddr, TcpStream};

use embedded_io_adapters::std::FromStd;
use shale_core::raft::NodeId;
use shale_core::wire::{FrameError, read_frame, write_frame};

use super::auth;
use super::handshake::{
    CHALLENGE_LEN, HELLO_LEN, HandshakeError, Hello, REPLY_LEN, Refusal, Reply, check_hello,
    decode_challenge, decode_hello, decode_reply, encode_challenge, encode_hello, encode_reply,
};
use super::{PeerCounters, TransportConfig, TransportCounters, bump};

/// Connects to node `peer` at `addr` and performs the connecting side of the handshake; the
/// error says what failed, for the log (a refusal is also counted in `refused_by_peer`, of
/// `counters` and of `peer_counters`, the peer's own)
pub fn connect(
    config: &TransportConfig,
    counters: &TransportCounters,
    peer_counters: &PeerCounters,
    peer: NodeId,
    addr: SocketAddr,
) -> Result<TcpStream, String> {
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
            bump(&counters.refused_by_peer);
            bump(&peer_counters.refused_by_peer);
            return Err(fail(&HandshakeError::Refused(r)));
        }
        Err(e) => return Err(fail(&e)),
    }
    stream.set_read_timeout(None).map_err(|e| fail(&e))?;
    stream.set_write_timeout(None).map_err(|e| fail(&e))?;
    Ok(stream)
}

/// Performs the accepting side of the handshake on `stream` and returns the node that
/// connected; the error says why the connection was refused or failed, for the log (and is
/// counted in `refused_handshakes`, plus `oversize_frames` or `io_errors` where they apply)
///
/// The handshake is read without a buffer, so no byte after it is consumed: the caller reads
/// the peer's frames from the same stream.
pub fn accept(
    config: &TransportConfig,
    counters: &TransportCounters,
    stream: &TcpStream,
) -> Result<NodeId, String> {
    let peer_addr = stream
        .peer_addr()
        .map_or_else(|_| "unknown".into(), |a| a.to_string());
    let mut io = FromStd::new(stream);
    let mut buf = Vec::new();
    let io_error = |what: String| {
        bump(&counters.io_errors);
        what
    };
    let refuse = |e: HandshakeError| {
        bump(&counters.refused_handshakes);
        let reply = encode_reply(Reply::Refuse(e.refusal()));
        let _ = write_frame(&mut FromStd::new(stream), &reply);
        format!("refused connection from {peer_addr}: {e}")
    };
    if stream
        .set_read_timeout(Some(config.handshake_timeout))
        .and_then(|()| stream.set_write_timeout(Some(config.handshake_timeout)))
        .is_err()
    {
        return Err(io_error(format!(
            "connection from {peer_addr}: cannot set timeout"
        )));
    }
    let hello = match read_frame(&mut io, &mut buf, HELLO_LEN) {
        Ok(()) => decode_hello(&buf).and_then(|hello| {
            check_hello(&hello, config.cluster_id, config.node_id).map(|()| hello)
        }),
        Err(FrameError::TooLarge { .. }) => Err(HandshakeError::Malformed),
        Err(e) => {
            bump(&counters.refused_handshakes);
            return Err(frame_failure(
                counters,
                e,
                &format!("handshake from {peer_addr}"),
            ));
        }
    };
    let hello = hello.map_err(refuse)?;
    // The connecting side proves it knows the cluster secret.
    let hello_bytes = buf.clone();
    let nonce = auth::nonce();
    if write_frame(&mut io, &encode_challenge(&nonce)).is_err() {
        return Err(io_error(format!("challenge to {peer_addr} failed")));
    }
    let proof = match read_frame(&mut io, &mut buf, CHALLENGE_LEN) {
        Ok(()) => decode_challenge(&buf),
        Err(e) => {
            bump(&counters.refused_handshakes);
            return Err(frame_failure(
                counters,
                e,
                &format!("proof from {peer_addr}"),
            ));
        }
    };
    let key = auth::secret_key(&config.secret);
    if !proof.is_ok_and(|p| auth::verify(&key, &nonce, &hello_bytes, &p)) {
        return Err(refuse(HandshakeError::Refused(Refusal::BadSecret)));
    }
    if write_frame(&mut io, &encode_reply(Reply::Accept)).is_err()
        || stream.set_read_timeout(None).is_err()
        || stream.set_write_timeout(None).is_err()
    {
        return Err(io_error(format!("handshake reply to {peer_addr} failed")));
    }
    Ok(hello.from)
}

/// Counts a handshake frame that could not be read and says why, for the log
fn frame_failure(
    counters: &TransportCounters,
    e: FrameError<std::io::Error>,
    what: &str,
) -> String {
    match e {
        FrameError::Eof => format!("{what}: peer closed the connection"),
        FrameError::TooLarge { .. } => {
            bump(&counters.oversize_frames);
            format!("{what}: {e}")
        }
        FrameError::Io(err) => {
            bump(&counters.io_errors);
            format!("{what}: {err}")
        }
    }
}
