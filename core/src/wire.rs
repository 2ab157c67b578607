//! Bytes on the wire: versioned message encoding and length-prefixed frames
//!
//! A message travels as `[version: u8][postcard(Outgoing)]`. A frame on a byte stream is
//! `[length: u32 little-endian][payload]`, read and written through `embedded-io`, so the same
//! code serves a TCP stream, a UART or an in-memory buffer. Decoding never panics: anything a
//! peer can send maps to a [`DecodeError`] or [`FrameError`].
//!
//! ```
//! use shale_core::raft::{Message, Outgoing};
//! use shale_core::wire::{decode_message, encode_message, read_frame, write_frame};
//!
//! let out = Outgoing { from: 1, to: 2, message: Message::HeartbeatResponse { term: 7, round: 3 } };
//! let mut payload = Vec::new();
//! encode_message(&out, &mut payload);
//! let mut stream = Vec::new();
//! write_frame(&mut stream, &payload).unwrap();
//!
//! let mut reader: &[u8] = &stream;
//! let mut frame = Vec::new();
//! read_frame(&mut reader, &mut frame, 1024).unwrap();
//! assert_eq!(decode_message(&frame).unwrap(), out);
//! assert!(decode_message(&[9, 9, 9]).is_err());
//! ```

use alloc::vec::Vec;
use core::fmt;

use crate::raft::Outgoing;

/// Version byte that starts every encoded message
pub const WIRE_VERSION: u8 = 1;

/// Why bytes did not decode into a message
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// No bytes at all
    Empty,
    /// A version this build does not speak
    UnknownVersion(u8),
    /// The bytes after the version are not a valid message
    Malformed,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("empty message"),
            DecodeError::UnknownVersion(v) => {
                write!(
                    f,
                    "unknown wire version {v} (this build speaks {WIRE_VERSION})"
                )
            }
            DecodeError::Malformed => f.write_str("malformed message"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Appends the encoding of `out` to `buf`
pub fn encode_message(out: &Outgoing, buf: &mut Vec<u8>) {
    buf.push(WIRE_VERSION);
    // Encoding into a growable buffer cannot fail for these types.
    let encoded = postcard::to_extend(out, core::mem::take(buf));
    *buf = encoded.unwrap_or_default();
}

/// Decodes a message encoded by [`encode_message`]
pub fn decode_message(bytes: &[u8]) -> Result<Outgoing, DecodeError> {
    let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != WIRE_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    match postcard::take_from_bytes::<Outgoing>(rest) {
        Ok((out, [])) => Ok(out),
        _ => Err(DecodeError::Malformed),
    }
}

/// Number of bytes [`encode_message`] produces for `out`
pub fn encoded_len(out: &Outgoing) -> usize {
    let mut counter = ByteCounter(0);
    match postcard::to_extend(out, counter) {
        Ok(c) => {
            counter = c;
            counter.0 + 1
        }
        Err(_) => 1,
    }
}

struct ByteCounter(usize);

impl Extend<u8> for ByteCounter {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0 += iter.into_iter().count();
    }
}

/// Why a frame could not be read
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError<E> {
    /// The stream ended (cleanly between frames, or inside one)
    Eof,
    /// The length prefix announces more than the allowed maximum
    TooLarge {
        /// Announced length in bytes
        len: usize,
        /// Allowed maximum in bytes
        max: usize,
    },
    /// The underlying reader failed
    Io(E),
}

impl<E: fmt::Debug> fmt::Display for FrameError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Eof => f.write_str("stream ended"),
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max} bytes")
            }
            FrameError::Io(e) => write!(f, "read failed: {e:?}"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for FrameError<E> {}

/// Writes one frame: the payload's length, then the payload
pub fn write_frame<W: embedded_io::Write>(w: &mut W, payload: &[u8]) -> Result<(), W::Error> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    w.write_all(&len.to_le_bytes())?;
    w.write_all(payload)
}

/// Reads one frame into `buf` (replacing its contents), refusing frames over `max_frame_bytes`
/// before reading their body
pub fn read_frame<R: embedded_io::Read>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max_frame_bytes: usize,
) -> Result<(), FrameError<R::Error>> {
    let mut len = [0u8; 4];
    read_exact(r, &mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max_frame_bytes {
        return Err(FrameError::TooLarge {
            len,
            max: max_frame_bytes,
        });
    }
    buf.clear();
    buf.resize(len, 0);
    read_exact(r, buf)
}

fn read_exact<R: embedded_io::Read>(
    r: &mut R,
    mut buf: &mut [u8],
) -> Result<(), FrameError<R::Error>> {
    while !buf.is_empty() {
        match r.read(buf) {
            Ok(0) => return Err(FrameError::Eof),
            Ok(n) => buf = &mut buf[n..],
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{AppendOutcome, Entry, EntryKind, LogId, Message};
    use alloc::vec;

    fn sample() -> Outgoing {
        Outgoing {
            from: 3,
            to: 1,
            message: Message::Append {
                term: 4,
                prev: LogId::new(3, 9),
                entries: vec![Entry {
                    term: 4,
                    index: 10,
                    kind: EntryKind::Command,
                    data: b"hello".into(),
                }],
                commit: 8,
            },
        }
    }

    #[test]
    fn round_trip_and_length() {
        let out = sample();
        let mut buf = Vec::new();
        encode_message(&out, &mut buf);
        assert_eq!(buf.len(), encoded_len(&out));
        assert_eq!(decode_message(&buf), Ok(out));
        let resp = Outgoing {
            from: 1,
            to: 3,
            message: Message::AppendResponse {
                term: 4,
                outcome: AppendOutcome::Rejected {
                    rejected_prev: 9,
                    hint: LogId::new(2, 7),
                },
            },
        };
        let mut buf = Vec::new();
        encode_message(&resp, &mut buf);
        assert_eq!(decode_message(&buf), Ok(resp));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        encode_message(&sample(), &mut buf);
        assert_eq!(decode_message(&[]), Err(DecodeError::Empty));
        assert_eq!(decode_message(&[2, 0]), Err(DecodeError::UnknownVersion(2)));
        for cut in 1..buf.len() {
            assert!(decode_message(&buf[..cut]).is_err(), "truncated at {cut}");
        }
        let mut extra = buf.clone();
        extra.push(0);
        assert_eq!(decode_message(&extra), Err(DecodeError::Malformed));
    }

    #[test]
    fn oversize_frames_are_refused_before_reading() {
        let mut stream = Vec::new();
        write_frame(&mut stream, &[7u8; 100]).unwrap();
        let mut buf = Vec::new();
        let mut r: &[u8] = &stream;
        assert_eq!(
            read_frame(&mut r, &mut buf, 99),
            Err(FrameError::TooLarge { len: 100, max: 99 })
        );
        let mut r: &[u8] = &stream[..50];
        assert_eq!(read_frame(&mut r, &mut buf, 1000), Err(FrameError::Eof));
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(0u8..=255, 0..256)) {
            let _ = decode_message(&bytes);
        }
    }
}
