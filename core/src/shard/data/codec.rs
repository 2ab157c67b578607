//! The payload of a collection: its items one after another, each a LEB128 length and its
//! bytes
//!
//! A hash stores field, value, field, value...; a set its members in order; a list its
//! elements from head to tail; a sorted set member, score (8 bytes, little-endian `f64`),
//! member, score... in score order. Decoding borrows from the stored bytes and never
//! fails: a damaged payload yields the items before the damage.
//!
//! ```
//! use shale_core::shard::data::codec::{decode_items, encode_items};
//!
//! let bytes = encode_items([&b"a"[..], b"", b"xyz"]);
//! assert_eq!(decode_items(&bytes), vec![&b"a"[..], b"", b"xyz"]);
//! ```

use alloc::vec::Vec;

/// Appends `item` with its length to `out`
pub fn push_item(out: &mut Vec<u8>, item: &[u8]) {
    let mut len = item.len() as u64;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(item);
}

/// `items` one after another
pub fn encode_items<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        push_item(&mut out, item);
    }
    out
}

/// The items of `payload`, borrowed (up to the first damaged one)
pub fn decode_items(payload: &[u8]) -> Vec<&[u8]> {
    let mut items = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let mut len: u64 = 0;
        let mut shift = 0;
        let mut used: usize = 0;
        let mut complete = false;
        for &byte in rest.iter().take(10) {
            used += 1;
            len |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                complete = true;
                break;
            }
        }
        let Some(item) = complete
            .then(|| rest.get(used..used.saturating_add(usize::try_from(len).ok()?)))
            .flatten()
        else {
            break;
        };
        rest = &rest[used + item.len()..];
        items.push(item);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_and_damage_stops_decoding() {
        let long = alloc::vec![7u8; 300];
        let bytes = encode_items([&long[..], b"b"]);
        assert_eq!(bytes[..2], [0xac, 0x02], "300 in two bytes");
        assert_eq!(decode_items(&bytes), alloc::vec![&long[..], b"b"]);
        assert_eq!(
            decode_items(&bytes[..bytes.len() - 1]),
            alloc::vec![&long[..]]
        );
        assert!(decode_items(&[0xff; 12]).is_empty());
        assert!(decode_items(&[]).is_empty());
    }
}
