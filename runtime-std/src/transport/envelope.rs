//! Envelopes: one message of one Raft group, as carried by a peer connection
//!
//! An envelope's bytes are `[group id: LEB128 varint][wire::encode_message bytes]`; a frame
//! ([`shale_core::wire::write_frame`]) carries one envelope. The reserved group id
//! [`APP_GROUP`] marks an application frame instead: its bytes after the group id are opaque
//! to the transport (the node layer puts [`shale_core::group::AppMessage`]s there). Decoding
//! never panics.

use core::fmt;

use shale_core::raft::{NodeId, Outgoing};
use shale_core::wire::{self, DecodeError};

/// Identifies a Raft group; every group's messages between two nodes share one connection
pub type GroupId = u64;

/// The reserved group id of application frames (never a Raft group's id)
pub const APP_GROUP: GroupId = u64::MAX;

/// Largest number of bytes a varint-encoded `u64` takes
const MAX_VARINT_BYTES: usize = 10;

/// One message of one group
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The group the message belongs to
    pub group: GroupId,
    /// The message, with its sender and receiver
    pub message: Outgoing,
}

/// Why bytes did not decode into an [`Envelope`]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The group id is missing, truncated, longer than 10 bytes or overflows a `u64`
    BadGroupId,
    /// The message after the group id does not decode
    Message(DecodeError),
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::BadGroupId => f.write_str("bad group id varint"),
            EnvelopeError::Message(e) => write!(f, "bad message: {e}"),
        }
    }
}

impl std::error::Error for EnvelopeError {}

/// What one frame from a peer carries
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A Raft message of one group
    Raft(Envelope),
    /// Application bytes from node `from`
    App {
        /// The sending node (as its handshake said)
        from: NodeId,
        /// The bytes, as given to `Transport::send_app`
        bytes: Vec<u8>,
    },
}

impl Delivery {
    /// The Raft envelope, if this is one
    pub fn into_raft(self) -> Option<Envelope> {
        match self {
            Delivery::Raft(envelope) => Some(envelope),
            Delivery::App { .. } => None,
        }
    }
}

/// Appends the encoding of `message` in `group` to `buf`
pub fn encode_envelope(group: GroupId, message: &Outgoing, buf: &mut Vec<u8>) {
    push_varint(group, buf);
    wire::encode_message(message, buf);
}

/// Appends an application frame carrying `bytes` to `buf`
pub fn encode_app(bytes: &[u8], buf: &mut Vec<u8>) {
    push_varint(APP_GROUP, buf);
    buf.extend_from_slice(bytes);
}

/// Appends `message` to `out` as one frame ([`shale_core::wire::write_frame`]'s format: the
/// length, then the bytes); returns `false`, leaving `out` as it was, when the frame would be
/// over `max_frame_bytes`
pub fn append_frame(message: &super::Outbound, max_frame_bytes: usize, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    match message {
        super::Outbound::Raft(group, message) => encode_envelope(*group, message, out),
        super::Outbound::App(bytes) => encode_app(bytes, out),
    }
    let len = out.len() - start - 4;
    match u32::try_from(len) {
        Ok(len32) if len <= max_frame_bytes => {
            out[start..start + 4].copy_from_slice(&len32.to_le_bytes());
            true
        }
        _ => {
            out.truncate(start);
            false
        }
    }
}

/// Decodes a frame that arrived on a connection from node `from` to node `me` and checks that a
/// Raft message's sender and receiver are the ones the handshake named; the error says why not
pub fn check_delivery(from: NodeId, me: NodeId, bytes: &[u8]) -> Result<Delivery, String> {
    let delivery = decode_delivery(from, bytes).map_err(|e| e.to_string())?;
    if let Delivery::Raft(envelope) = &delivery
        && (envelope.message.from != from || envelope.message.to != me)
    {
        return Err(format!(
            "message from {} to {} does not match the handshake",
            envelope.message.from, envelope.message.to
        ));
    }
    Ok(delivery)
}

fn push_varint(value: u64, buf: &mut Vec<u8>) {
    let mut v = value;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf.push(byte);
            break;
        }
        buf.push(byte | 0x80);
    }
}

/// Decodes a frame from node `from`: an envelope encoded by [`encode_envelope`] or an
/// application frame encoded by [`encode_app`]
pub fn decode_delivery(from: NodeId, bytes: &[u8]) -> Result<Delivery, EnvelopeError> {
    let (group, used) = read_varint(bytes)?;
    if group == APP_GROUP {
        return Ok(Delivery::App {
            from,
            bytes: bytes[used..].to_vec(),
        });
    }
    let message = wire::decode_message(&bytes[used..]).map_err(EnvelopeError::Message)?;
    Ok(Delivery::Raft(Envelope { group, message }))
}

/// Decodes an envelope encoded by [`encode_envelope`]
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    let (group, used) = read_varint(bytes)?;
    let message = wire::decode_message(&bytes[used..]).map_err(EnvelopeError::Message)?;
    Ok(Envelope { group, message })
}

/// The varint at the start of `bytes` and how many bytes it took
fn read_varint(bytes: &[u8]) -> Result<(u64, usize), EnvelopeError> {
    let mut group: u64 = 0;
    let mut used = None;
    for (i, &byte) in bytes.iter().take(MAX_VARINT_BYTES).enumerate() {
        let bits = u64::from(byte & 0x7f);
        // The tenth byte may only carry the top bit of a u64.
        if i == MAX_VARINT_BYTES - 1 && bits > 1 {
            return Err(EnvelopeError::BadGroupId);
        }
        group |= bits << (7 * i);
        if byte & 0x80 == 0 {
            used = Some(i + 1);
            break;
        }
    }
    let used = used.ok_or(EnvelopeError::BadGroupId)?;
    Ok((group, used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shale_core::raft::Message;

    fn msg() -> Outgoing {
        Outgoing {
            from: 1,
            to: 2,
            message: Message::HeartbeatResponse { term: 3, round: 4 },
        }
    }

    #[test]
    fn round_trips_group_ids_at_varint_boundaries() {
        for group in [0, 1, 127, 128, 16_383, 16_384, u64::MAX / 2, u64::MAX] {
            let mut buf = Vec::new();
            encode_envelope(group, &msg(), &mut buf);
            assert_eq!(
                decode_envelope(&buf),
                Ok(Envelope {
                    group,
                    message: msg()
                })
            );
        }
    }

    #[test]
    fn app_frames_are_told_apart_from_raft_traffic() {
        let mut buf = Vec::new();
        encode_app(b"hello", &mut buf);
        assert_eq!(
            decode_delivery(3, &buf),
            Ok(Delivery::App {
                from: 3,
                bytes: b"hello".to_vec()
            })
        );
        buf.clear();
        encode_envelope(7, &msg(), &mut buf);
        let raft = decode_delivery(3, &buf).map(Delivery::into_raft);
        assert_eq!(
            raft,
            Ok(Some(Envelope {
                group: 7,
                message: msg()
            }))
        );
    }

    #[test]
    fn bad_group_ids_are_errors() {
        assert_eq!(decode_envelope(&[]), Err(EnvelopeError::BadGroupId));
        assert_eq!(decode_envelope(&[0x80]), Err(EnvelopeError::BadGroupId));
        assert_eq!(decode_envelope(&[0xff; 11]), Err(EnvelopeError::BadGroupId));
        let mut overflow = vec![0xff; 9];
        overflow.push(0x02);
        assert_eq!(decode_envelope(&overflow), Err(EnvelopeError::BadGroupId));
        assert_eq!(
            decode_envelope(&[5]),
            Err(EnvelopeError::Message(DecodeError::Empty))
        );
    }
}
