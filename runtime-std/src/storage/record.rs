//! The log record codec: `[len: u32 LE][crc32: u32 LE][postcard payload]`
//!
//! `len` is the payload's length; the CRC-32 (IEEE, crc32fast) covers the four `len` bytes
//! and the payload, so a damaged length is caught too.

use shale_core::raft::Entry;

/// Bytes before the payload
pub(crate) const HEADER_BYTES: usize = 8;

/// Largest payload a record may claim; anything larger is damage, not data
pub(crate) const MAX_PAYLOAD_BYTES: usize = 1 << 30;

fn checksum(len: [u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    h.finalize()
}

/// Appends the record for `entry` to `out`
pub(crate) fn encode(entry: &Entry, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_BYTES]);
    // Serializing into a Vec only fails on allocation failure, which aborts anyway.
    let payload = postcard::to_allocvec(entry).unwrap_or_default();
    let len = (payload.len() as u32).to_le_bytes();
    let crc = checksum(len, &payload).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc);
    out.extend_from_slice(&payload);
}

/// Why decoding stopped before the end of the bytes
#[derive(Debug)]
pub(crate) struct Stop {
    /// Offset of the record that could not be decoded
    pub(crate) offset: u64,
    /// What is wrong with it
    pub(crate) reason: String,
    /// It looks like an interrupted append (incomplete, or a bad checksum on the very last
    /// record, or only zeros from here on) rather than damage to written data
    pub(crate) torn: bool,
}

/// The records decoded from one segment's bytes
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// The entries, in file order
    pub(crate) entries: Vec<Entry>,
    /// Byte offset of each entry's record
    pub(crate) offsets: Vec<u64>,
    /// Offset just past the last good record
    pub(crate) end: u64,
    /// Set when bytes after `end` could not be decoded
    pub(crate) stop: Option<Stop>,
}

/// Decodes every record in `buf`
pub(crate) fn scan(buf: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let mut pos = 0usize;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let all_zero = rest.iter().all(|&b| b == 0);
        let stop = |reason: String, torn: bool| Stop {
            offset: pos as u64,
            reason,
            torn: torn || all_zero,
        };
        if rest.len() < HEADER_BYTES {
            scan.stop = Some(stop(
                format!("incomplete record header ({} bytes)", rest.len()),
                true,
            ));
            break;
        }
        // A header of zeros is never written (a record has a payload): an append whose
        // first bytes never reached the disk. Nothing after it was synced (syncs are
        // cumulative), so it ends the log even if later, unsynced bytes did reach the disk.
        if rest[..HEADER_BYTES].iter().all(|&b| b == 0) {
            scan.stop = Some(stop("record header of zeros".into(), true));
            break;
        }
        let len_bytes = [rest[0], rest[1], rest[2], rest[3]];
        let len = u32::from_le_bytes(len_bytes) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_PAYLOAD_BYTES {
            scan.stop = Some(stop(format!("record length {len} is implausible"), false));
            break;
        }
        if rest.len() - HEADER_BYTES < len {
            scan.stop = Some(stop(
                format!(
                    "incomplete record: {len} payload bytes announced, {} present",
                    rest.len() - HEADER_BYTES
                ),
                true,
            ));
            break;
        }
        let payload = &rest[HEADER_BYTES..HEADER_BYTES + len];
        // The last record, or one followed only by zeros written ahead: an interrupted append.
        let is_last = rest[HEADER_BYTES + len..].iter().all(|&b| b == 0);
        if checksum(len_bytes, payload) != crc {
            // Torn: the last record, or one with a whole disk sector of zeros (a part of the
            // append that never reached the disk).
            let torn = is_last || has_zero_sector(buf, pos, pos + HEADER_BYTES + len);
            scan.stop = Some(stop("record checksum mismatch".into(), torn));
            break;
        }
        match postcard::from_bytes::<Entry>(payload) {
            Ok(entry) => {
                scan.entries.push(entry);
                scan.offsets.push(pos as u64);
            }
            Err(e) => {
                scan.stop = Some(stop(format!("record does not decode: {e}"), false));
                break;
            }
        }
        pos += HEADER_BYTES + len;
        scan.end = pos as u64;
    }
    scan
}

/// Bytes of a disk sector, the unit a crash writes or loses whole
const SECTOR_BYTES: usize = 512;

/// Whether `buf[start..end]` holds a whole aligned sector of zeros
fn has_zero_sector(buf: &[u8], start: usize, end: usize) -> bool {
    let first = start.div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
    (first..end)
        .step_by(SECTOR_BYTES)
        .filter(|s| s + SECTOR_BYTES <= end)
        .any(|s| buf[s..s + SECTOR_BYTES].iter().all(|&b| b == 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shale_core::raft::EntryKind;

    fn entry(index: u64) -> Entry {
        Entry {
            term: 3,
            index,
            kind: EntryKind::Command,
            data: b"hello".into(),
        }
    }

    #[test]
    fn round_trip_and_torn_tail() {
        let mut buf = Vec::new();
        encode(&entry(1), &mut buf);
        encode(&entry(2), &mut buf);
        let full = scan(&buf);
        assert_eq!(full.entries, vec![entry(1), entry(2)]);
        assert!(full.stop.is_none());
        let cut = scan(&buf[..buf.len() - 1]);
        assert_eq!(cut.entries, vec![entry(1)]);
        assert!(cut.stop.as_ref().is_some_and(|s| s.torn));
        assert_eq!(cut.end, full.offsets[1]);
    }

    #[test]
    fn an_append_lost_to_a_power_cut_is_torn_even_with_later_bytes_on_disk() {
        let mut buf = Vec::new();
        encode(&entry(1), &mut buf);
        let second = buf.len();
        encode(&entry(2), &mut buf);
        let third = buf.len();
        encode(&entry(3), &mut buf);
        buf.extend(vec![0; 64]); // zeros written ahead
        // Record 2's bytes never reached the disk, record 3's did (neither was synced).
        let mut lost = buf.clone();
        lost[second..third].fill(0);
        let s = scan(&lost);
        assert_eq!(s.entries, vec![entry(1)]);
        assert!(
            s.stop
                .as_ref()
                .is_some_and(|s| s.torn && s.offset == second as u64)
        );
        // A large record of which one sector never reached the disk, followed by more.
        let big = Entry {
            term: 3,
            index: 2,
            kind: EntryKind::Command,
            data: vec![7u8; 3000].into(),
        };
        let mut buf = Vec::new();
        encode(&entry(1), &mut buf);
        let start = buf.len();
        encode(&big, &mut buf);
        encode(&entry(3), &mut buf);
        let sector = start.div_ceil(SECTOR_BYTES) * SECTOR_BYTES + SECTOR_BYTES;
        buf[sector..sector + SECTOR_BYTES].fill(0);
        let s = scan(&buf);
        assert!(
            s.stop
                .as_ref()
                .is_some_and(|s| s.torn && s.offset == start as u64)
        );
    }

    #[test]
    fn damage_in_the_middle_is_not_torn() {
        let mut buf = Vec::new();
        encode(&entry(1), &mut buf);
        encode(&entry(2), &mut buf);
        buf[HEADER_BYTES + 1] ^= 0xff;
        let s = scan(&buf);
        assert!(s.entries.is_empty());
        assert!(s.stop.as_ref().is_some_and(|s| !s.torn && s.offset == 0));
    }
}
