//! How a value is stored: a header (its type and, if it expires, when) before its bytes
//!
//! Layout: `[flags: u8][expires at: u64 little-endian, only if flags has EXPIRES][payload]`.
//! The low bits of the flags name the type ([`TYPE_STRING`] is the only one so far); the
//! payload of a string is its bytes. Snapshots and hand-over copy stored values as they are,
//! so a key's time to live travels with its shard.
//!
//! Expiry times are Unix milliseconds from the log: the leader stamps each client request
//! with its clock when it proposes it ([`ClientRequest::stamp_ms`](super::ClientRequest)),
//! and every replica applies it at that stamp or at the shard's time, the latest stamp the
//! shard has applied ([`SessionTable::time_ms`](super::SessionTable::time_ms)), whichever is
//! later, never with its own clock, so all replicas agree and a shard's time never goes
//! back. A read is decided at the serving replica's clock or the shard's time, whichever is
//! later.
//!
//! ```
//! use shale_core::shard::value::{StoredValue, encode_string};
//!
//! let stored = encode_string(b"hi", Some(1_000));
//! let v = StoredValue::decode(&stored);
//! assert_eq!((v.payload, v.expires_at_ms), (&b"hi"[..], Some(1_000)));
//! assert!(v.live_at(999) && !v.live_at(1_000));
//! assert_eq!(StoredValue::decode(&encode_string(b"x", None)).expires_at_ms, None);
//! ```

use alloc::vec::Vec;

/// The type bits of a string
pub const TYPE_STRING: u8 = 0;
/// The flag bit of a value that expires
pub const EXPIRES: u8 = 0x80;
/// Bytes of the header of a value that does not expire
pub const HEADER_BYTES: usize = 1;

/// A stored value, decoded without copying
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredValue<'a> {
    /// Its type (the flags without [`EXPIRES`])
    pub kind: u8,
    /// When it expires, in Unix milliseconds (`None`: never)
    pub expires_at_ms: Option<u64>,
    /// Its bytes
    pub payload: &'a [u8],
}

impl<'a> StoredValue<'a> {
    /// Decodes `stored`; bytes too short for their header read as a string of those bytes
    /// (never written by this build; decoding never fails, so no peer or disk can make it
    /// panic)
    pub fn decode(stored: &'a [u8]) -> StoredValue<'a> {
        let raw = StoredValue {
            kind: TYPE_STRING,
            expires_at_ms: None,
            payload: stored,
        };
        let Some((&flags, rest)) = stored.split_first() else {
            return raw;
        };
        if flags & EXPIRES == 0 {
            return StoredValue {
                kind: flags,
                expires_at_ms: None,
                payload: rest,
            };
        }
        match rest.split_first_chunk::<8>() {
            Some((at, payload)) => StoredValue {
                kind: flags & !EXPIRES,
                expires_at_ms: Some(u64::from_le_bytes(*at)),
                payload,
            },
            None => raw,
        }
    }

    /// Whether it still exists at `now_ms`
    pub fn live_at(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|at| now_ms < at)
    }
}

/// `stored` decoded, if it holds a value that is live at `now_ms`
pub fn live(stored: Option<&[u8]>, now_ms: u64) -> Option<StoredValue<'_>> {
    stored
        .map(StoredValue::decode)
        .filter(|v| v.live_at(now_ms))
}

/// The stored form of string `value`, expiring at `expires_at_ms` if given
pub fn encode_string(value: &[u8], expires_at_ms: Option<u64>) -> Vec<u8> {
    encode(TYPE_STRING, value, expires_at_ms)
}

/// The stored form of a value of type `kind` with `payload`
pub fn encode(kind: u8, payload: &[u8], expires_at_ms: Option<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + HEADER_BYTES + 8);
    match expires_at_ms {
        Some(at) => {
            out.push(kind | EXPIRES);
            out.extend_from_slice(&at.to_le_bytes());
        }
        None => out.push(kind),
    }
    out.extend_from_slice(payload);
    out
}

/// The stored form of string `value`, reusing its buffer when it does not expire
pub fn string_from(mut value: Vec<u8>, expires_at_ms: Option<u64>) -> Vec<u8> {
    match expires_at_ms {
        None => {
            value.insert(0, TYPE_STRING);
            value
        }
        Some(at) => encode_string(&value, Some(at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_string_decodes_and_round_trips() {
        for at in [None, Some(0), Some(u64::MAX)] {
            let stored = encode_string(b"value", at);
            let v = StoredValue::decode(&stored);
            assert_eq!((v.kind, v.expires_at_ms, v.payload), (0, at, &b"value"[..]));
        }
        // Damaged headers decode as plain bytes instead of failing.
        assert_eq!(StoredValue::decode(&[]).payload, b"");
        assert_eq!(StoredValue::decode(&[0x80, 1, 2]).payload, &[0x80, 1, 2]);
        assert_eq!(live(Some(&encode_string(b"a", Some(5))), 5), None);
        assert!(live(Some(&encode_string(b"a", Some(5))), 4).is_some());
        assert_eq!(
            string_from(b"ab".to_vec(), None),
            encode_string(b"ab", None)
        );
    }
}
