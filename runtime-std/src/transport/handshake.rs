//! The handshake that opens every peer connection
//!
//! The connecting side sends a [`Hello`] frame; the accepting side checks it with
//! [`check_hello`] and either refuses with a [`Reply`] frame or sends a challenge (a random
//! nonce); the connecting side answers with a proof that it knows the cluster secret (see
//! [`super::auth`]); the accepting side answers with a [`Reply`] frame. Only after
//! [`Reply::Accept`] do envelopes flow. Every function here is pure: bytes in, values out, no
//! sockets, no panics.
//!
//! Layouts (integers little-endian):
//!
//! - hello: `[magic "SHAL"][protocol version: u8][cluster id: u64][from: u64][to: u64]`
//! - challenge: `[magic "SHAL"][protocol version: u8][nonce: 16 bytes]`
//! - proof: `[magic "SHAL"][protocol version: u8][proof: 16 bytes]`
//! - reply: `[magic "SHAL"][protocol version: u8][code: u8]` (0 accepts, see [`Refusal`])
//!
//! The magic and the version byte come first in every version, so a node can refuse a peer
//! that speaks another version with a reason it understands.

use core::fmt;

use shale_core::raft::NodeId;

/// Four bytes that start every hello and reply
pub const MAGIC: [u8; 4] = *b"SHAL";
/// Version of the transport protocol this build speaks (handshake and envelopes)
/// (3: shards move in chunks read from a cursor; 4: session watermarks per issuer; 5: client
/// requests carry the leader's stamp, values their type and expiry)
pub const PROTOCOL_VERSION: u8 = 5;
/// Length in bytes of an encoded [`Hello`]
pub const HELLO_LEN: usize = 4 + 1 + 8 + 8 + 8;
/// Length in bytes of an encoded [`Reply`]
pub const REPLY_LEN: usize = 4 + 1 + 1;
/// Length in bytes of an encoded challenge or proof
pub const CHALLENGE_LEN: usize = 4 + 1 + 16;

/// What the connecting side says first
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The cluster the connecting node belongs to
    pub cluster_id: u64,
    /// The connecting node
    pub from: NodeId,
    /// The node the connecting side expects to reach
    pub to: NodeId,
}

/// Why the accepting side refused a connection
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The hello was not a hello (bad magic, wrong length)
    Malformed,
    /// The peer speaks another protocol version
    UnsupportedVersion,
    /// The peer belongs to another cluster
    WrongCluster,
    /// The peer expected to reach another node
    WrongNode,
    /// The accepting side has too many connections open
    TooManyConnections,
    /// The proof of the cluster secret was wrong
    BadSecret,
}

impl Refusal {
    fn code(self) -> u8 {
        match self {
            Refusal::Malformed => 1,
            Refusal::UnsupportedVersion => 2,
            Refusal::WrongCluster => 3,
            Refusal::WrongNode => 4,
            Refusal::TooManyConnections => 5,
            Refusal::BadSecret => 6,
        }
    }

    fn from_code(code: u8) -> Option<Refusal> {
        Some(match code {
            1 => Refusal::Malformed,
            2 => Refusal::UnsupportedVersion,
            3 => Refusal::WrongCluster,
            4 => Refusal::WrongNode,
            5 => Refusal::TooManyConnections,
            6 => Refusal::BadSecret,
            _ => return None,
        })
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Malformed => "malformed hello",
            Refusal::UnsupportedVersion => "unsupported protocol version",
            Refusal::WrongCluster => "wrong cluster id",
            Refusal::WrongNode => "wrong node id",
            Refusal::TooManyConnections => "too many connections",
            Refusal::BadSecret => "wrong cluster secret",
        })
    }
}

/// The accepting side's answer
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Envelopes may flow
    Accept,
    /// The connection is closed for this reason
    Refuse(Refusal),
}

/// Why a handshake failed
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// The bytes do not start with [`MAGIC`] or have the wrong length
    Malformed,
    /// The other side speaks this protocol version
    UnsupportedVersion(u8),
    /// The reply carries an unknown code
    UnknownReply(u8),
    /// The hello names another cluster: (expected, received)
    WrongCluster {
        /// This node's cluster id
        expected: u64,
        /// The cluster id in the hello
        got: u64,
    },
    /// The hello expects to reach another node
    WrongNode {
        /// This node's id
        expected: NodeId,
        /// The node id the hello expects
        got: NodeId,
    },
    /// The accepting side refused the connection
    Refused(Refusal),
}

impl HandshakeError {
    /// The refusal the accepting side sends for this error
    pub fn refusal(&self) -> Refusal {
        match self {
            HandshakeError::Malformed | HandshakeError::UnknownReply(_) => Refusal::Malformed,
            HandshakeError::UnsupportedVersion(_) => Refusal::UnsupportedVersion,
            HandshakeError::WrongCluster { .. } => Refusal::WrongCluster,
            HandshakeError::WrongNode { .. } => Refusal::WrongNode,
            HandshakeError::Refused(r) => *r,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Malformed => f.write_str("malformed handshake"),
            HandshakeError::UnsupportedVersion(v) => write!(
                f,
                "peer speaks protocol version {v}, this build speaks {PROTOCOL_VERSION}"
            ),
            HandshakeError::UnknownReply(c) => write!(f, "unknown handshake reply code {c}"),
            HandshakeError::WrongCluster { expected, got } => {
                write!(f, "wrong cluster id {got} (this cluster is {expected})")
            }
            HandshakeError::WrongNode { expected, got } => {
                write!(f, "peer expects node {got}, this is node {expected}")
            }
            HandshakeError::Refused(r) => write!(f, "refused by peer: {r}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Checks magic and version; returns the bytes after them
fn check_header(bytes: &[u8], len: usize) -> Result<&[u8], HandshakeError> {
    if bytes.len() < 5 || bytes[..4] != MAGIC {
        return Err(HandshakeError::Malformed);
    }
    if bytes[4] != PROTOCOL_VERSION {
        return Err(HandshakeError::UnsupportedVersion(bytes[4]));
    }
    if bytes.len() != len {
        return Err(HandshakeError::Malformed);
    }
    Ok(&bytes[5..])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Encodes a hello
pub fn encode_hello(hello: &Hello) -> [u8; HELLO_LEN] {
    let mut out = [0u8; HELLO_LEN];
    out[..4].copy_from_slice(&MAGIC);
    out[4] = PROTOCOL_VERSION;
    out[5..13].copy_from_slice(&hello.cluster_id.to_le_bytes());
    out[13..21].copy_from_slice(&hello.from.to_le_bytes());
    out[21..29].copy_from_slice(&hello.to.to_le_bytes());
    out
}

/// Decodes a hello encoded by [`encode_hello`]
pub fn decode_hello(bytes: &[u8]) -> Result<Hello, HandshakeError> {
    let rest = check_header(bytes, HELLO_LEN)?;
    Ok(Hello {
        cluster_id: u64_at(rest, 0),
        from: u64_at(rest, 8),
        to: u64_at(rest, 16),
    })
}

/// Checks a hello received by node `node_id` of cluster `cluster_id`
pub fn check_hello(hello: &Hello, cluster_id: u64, node_id: NodeId) -> Result<(), HandshakeError> {
    if hello.cluster_id != cluster_id {
        return Err(HandshakeError::WrongCluster {
            expected: cluster_id,
            got: hello.cluster_id,
        });
    }
    if hello.to != node_id {
        return Err(HandshakeError::WrongNode {
            expected: node_id,
            got: hello.to,
        });
    }
    Ok(())
}

/// Encodes a reply
pub fn encode_reply(reply: Reply) -> [u8; REPLY_LEN] {
    let mut out = [0u8; REPLY_LEN];
    out[..4].copy_from_slice(&MAGIC);
    out[4] = PROTOCOL_VERSION;
    out[5] = match reply {
        Reply::Accept => 0,
        Reply::Refuse(r) => r.code(),
    };
    out
}

/// Encodes a challenge nonce or a proof (the same layout)
pub fn encode_challenge(bytes: &[u8; 16]) -> [u8; CHALLENGE_LEN] {
    let mut out = [0u8; CHALLENGE_LEN];
    out[..4].copy_from_slice(&MAGIC);
    out[4] = PROTOCOL_VERSION;
    out[5..].copy_from_slice(bytes);
    out
}

/// Decodes a challenge or a proof encoded by [`encode_challenge`]
pub fn decode_challenge(bytes: &[u8]) -> Result<[u8; 16], HandshakeError> {
    let rest = check_header(bytes, CHALLENGE_LEN)?;
    let mut out = [0u8; 16];
    out.copy_from_slice(rest);
    Ok(out)
}

/// Decodes a reply encoded by [`encode_reply`]
pub fn decode_reply(bytes: &[u8]) -> Result<Reply, HandshakeError> {
    let rest = check_header(bytes, REPLY_LEN)?;
    match rest[0] {
        0 => Ok(Reply::Accept),
        c => Refusal::from_code(c)
            .map(Reply::Refuse)
            .ok_or(HandshakeError::UnknownReply(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_checks() {
        let hello = Hello {
            cluster_id: 7,
            from: 1,
            to: 2,
        };
        let bytes = encode_hello(&hello);
        assert_eq!(decode_hello(&bytes), Ok(hello));
        assert_eq!(check_hello(&hello, 7, 2), Ok(()));
        assert_eq!(
            check_hello(&hello, 8, 2).unwrap_err().refusal(),
            Refusal::WrongCluster
        );
        assert_eq!(
            check_hello(&hello, 7, 3).unwrap_err().refusal(),
            Refusal::WrongNode
        );
        let mut other = bytes;
        other[4] = 9;
        assert_eq!(
            decode_hello(&other),
            Err(HandshakeError::UnsupportedVersion(9))
        );
        assert_eq!(decode_hello(&bytes[..10]), Err(HandshakeError::Malformed));
        assert_eq!(
            decode_hello(b"GET / HTTP/1.1"),
            Err(HandshakeError::Malformed)
        );
    }

    #[test]
    fn replies_round_trip() {
        for reply in [
            Reply::Accept,
            Reply::Refuse(Refusal::Malformed),
            Reply::Refuse(Refusal::UnsupportedVersion),
            Reply::Refuse(Refusal::WrongCluster),
            Reply::Refuse(Refusal::WrongNode),
            Reply::Refuse(Refusal::TooManyConnections),
            Reply::Refuse(Refusal::BadSecret),
        ] {
            assert_eq!(decode_reply(&encode_reply(reply)), Ok(reply));
        }
        let nonce = [9u8; 16];
        assert_eq!(decode_challenge(&encode_challenge(&nonce)), Ok(nonce));
        assert_eq!(decode_challenge(&nonce), Err(HandshakeError::Malformed));
        let mut bad = encode_reply(Reply::Accept);
        bad[5] = 99;
        assert_eq!(decode_reply(&bad), Err(HandshakeError::UnknownReply(99)));
    }
}
