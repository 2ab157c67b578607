//! The log record codec: `[len: u32 LE][crc32: u32 LE][postcard payload]`
//!
//! `len` is the payload's length; the CRC-32 (IEEE, crc32fast) covers the four `len` bytes
//! and the payload, so a damaged length is caught too.
//!
//! A *sync marker* is a record whose `len` has its top bit set ([`MARKER_LEN`]); its payload
//! is [`MARKER_MAGIC`] and the segment offset every byte before which was synced when the
//! marker was written. The storage starts each group commit (after the segment's first) with
//! one, so a marker that reached the disk proves every record before its offset was synced
//! and acknowledged: damage there is corruption, never a torn append.

use shale_core::raft::Entry;

/// Bytes before the payload
pub(crate) const HEADER_BYTES: usize = 8;

/// Largest payload a record may claim; anything larger is damage, not data
pub(crate) const MAX_PAYLOAD_BYTES: usize = 1 << 30;

/// The payload of a sync marker begins with these bytes (found again by searching for them
/// when damage hides the record chain)
pub(crate) const MARKER_MAGIC: [u8; 8] = *b"shaleSYN";

/// Bytes of a sync marker's payload: the magic and the synced offset (u64 LE)
const MARKER_PAYLOAD_BYTES: usize = 16;

/// The `len` field of a sync marker: the top bit set, above any entry's length
pub(crate) const MARKER_LEN: u32 = 0x8000_0000 | MARKER_PAYLOAD_BYTES as u32;

/// Bytes of a whole sync marker record
pub(crate) const MARKER_BYTES: usize = HEADER_BYTES + MARKER_PAYLOAD_BYTES;

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

/// Appends a sync marker saying every byte of the segment before `synced` was synced
pub(crate) fn encode_marker(synced: u64, out: &mut Vec<u8>) {
    let mut payload = [0u8; MARKER_PAYLOAD_BYTES];
    payload[..8].copy_from_slice(&MARKER_MAGIC);
    payload[8..].copy_from_slice(&synced.to_le_bytes());
    let len = MARKER_LEN.to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&checksum(len, &payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// The synced offset of a valid sync marker record at the start of `bytes`, if there is one
fn marker_at(bytes: &[u8]) -> Option<u64> {
    let record = bytes.get(..MARKER_BYTES)?;
    let len = [record[0], record[1], record[2], record[3]];
    let crc = u32::from_le_bytes([record[4], record[5], record[6], record[7]]);
    let payload = &record[HEADER_BYTES..];
    let valid = u32::from_le_bytes(len) == MARKER_LEN
        && payload[..8] == MARKER_MAGIC
        && checksum(len, payload) == crc;
    let synced = payload[8..].try_into().ok().map(u64::from_le_bytes)?;
    valid.then_some(synced)
}

/// Whether a valid sync marker after `offset` proves the bytes at `offset` were synced
///
/// Searches every occurrence of the magic, so damage to the length of the record at `offset`
/// (which hides where the next record starts) does not hide the proof.
fn synced_past(buf: &[u8], offset: usize) -> bool {
    let mut from = offset + 1;
    while from + MARKER_MAGIC.len() <= buf.len() {
        let Some(found) = buf[from..]
            .windows(MARKER_MAGIC.len())
            .position(|w| w == MARKER_MAGIC)
        else {
            return false;
        };
        let magic_at = from + found;
        if let Some(start) = magic_at.checked_sub(HEADER_BYTES)
            && start > offset
            && let Some(synced) = marker_at(&buf[start..])
            && synced > offset as u64
            && synced <= start as u64
        {
            return true;
        }
        from = magic_at + 1;
    }
    false
}

/// Why decoding stopped before the end of the bytes
#[derive(Debug)]
pub(crate) struct Stop {
    /// Offset of the record that could not be decoded
    pub(crate) offset: u64,
    /// What is wrong with it
    pub(crate) reason: String,
    /// It looks like an interrupted append (incomplete, or a bad checksum on the very last
    /// record, or only zeros from here on) rather than damage to written data, and no sync
    /// marker after it proves it was synced
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
            torn: (torn || all_zero) && !synced_past(buf, pos),
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
        if let Some(synced) = marker_at(rest) {
            if synced > pos as u64 {
                scan.stop = Some(stop(
                    format!("sync marker claims {synced} bytes synced at offset {pos}"),
                    false,
                ));
                break;
            }
            pos += MARKER_BYTES;
            scan.end = pos as u64;
            continue;
        }
        let len_bytes = [rest[0], rest[1], rest[2], rest[3]];
        let raw_len = u32::from_le_bytes(len_bytes);
        let is_marker = raw_len == MARKER_LEN;
        let len = if is_marker {
            MARKER_PAYLOAD_BYTES
        } else {
            raw_len as usize
        };
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_PAYLOAD_BYTES {
            // A header in a sector that never got all of it reads as garbage.
            let torn = meets_lost_write(buf, pos, pos + HEADER_BYTES);
            scan.stop = Some(stop(format!("record length {len} is implausible"), torn));
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
            // Torn: the last record, or one with a part that never reached the disk (while
            // later parts did).
            let torn = is_last || meets_lost_write(buf, pos, pos + HEADER_BYTES + len);
            scan.stop = Some(stop("record checksum mismatch".into(), torn));
            break;
        }
        if is_marker {
            // Its checksum holds but `marker_at` refused it: not a marker this build writes.
            scan.stop = Some(stop("malformed sync marker".into(), false));
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

/// Whether the record at `buf[start..end]` shows a write that never reached the disk: some
/// aligned sector it overlaps ends in zeros (the zeros written ahead, which the sector held
/// before) from a byte of the record on. That is what a power cut leaves when the sector went
/// to the disk without the record's bytes, or with only some of them (a page written back in
/// the middle of an append), while later sectors went with theirs; and the record's own head
/// counts even when the sector begins with synced bytes of the record before it.
///
/// Damage to written bytes (a flipped bit) leaves no such zeros, except by chance where the
/// record itself holds zeros up to a sector's end; that risk is only taken for bytes no later
/// sync marker proves synced.
fn meets_lost_write(buf: &[u8], start: usize, end: usize) -> bool {
    let end = end.min(buf.len());
    let first = start / SECTOR_BYTES * SECTOR_BYTES;
    (first..end).step_by(SECTOR_BYTES).any(|sector| {
        let sector_end = (sector + SECTOR_BYTES).min(buf.len());
        // Where the sector's trailing zeros begin
        let zeros_from = buf[sector..sector_end]
            .iter()
            .rposition(|&b| b != 0)
            .map_or(sector, |i| sector + i + 1);
        zeros_from < end.min(sector_end)
    })
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
    fn a_record_whose_last_sector_never_reached_the_disk_is_torn_though_later_ones_did() {
        // Records of 300 bytes: one straddles a sector boundary by a few bytes; the sector
        // after the boundary is lost (zeros), later sectors reached the disk.
        let big = |index| Entry {
            term: 3,
            index,
            kind: EntryKind::Command,
            data: vec![9u8; 280].into(),
        };
        let mut buf = Vec::new();
        let mut starts = Vec::new();
        for i in 1..=12 {
            starts.push(buf.len());
            encode(&big(i), &mut buf);
        }
        let (torn_at, _) = starts
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, starts.get(i + 1).copied().unwrap_or(buf.len())))
            .find(|(s, e)| s / SECTOR_BYTES != (e - 1) / SECTOR_BYTES && s > &SECTOR_BYTES)
            .unwrap();
        let lost = torn_at.div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
        buf[lost..lost + SECTOR_BYTES].fill(0);
        let s = scan(&buf);
        let stop = s.stop.as_ref().expect("stops at the torn record");
        assert_eq!(stop.offset, torn_at as u64);
        assert!(stop.torn, "{stop:?}");
        // The same damage as a bit flip (no zero sector) is corruption.
        let mut buf2 = Vec::new();
        for i in 1..=12 {
            encode(&big(i), &mut buf2);
        }
        buf2[lost + 3] ^= 0x40;
        let s = scan(&buf2);
        assert!(s.stop.as_ref().is_some_and(|s| !s.torn), "{:?}", s.stop);
    }

    #[test]
    fn a_record_whose_first_bytes_never_reached_the_disk_is_torn() {
        // Record 2 starts a few bytes before a sector boundary: the sector holding record 1's end
        // and record 2's first bytes was synced before record 2 was written; after a power
        // cut it holds record 1's end and zeros, while the next sectors reached the disk.
        let small = |index, len| Entry {
            term: 3,
            index,
            kind: EntryKind::Command,
            data: vec![5u8; len].into(),
        };
        let mut buf = Vec::new();
        // Grow record 1's value until record 2 starts a few bytes (1 to 7) before the boundary.
        for len in 0.. {
            buf.clear();
            encode(&small(1, len), &mut buf);
            if buf.len() > SECTOR_BYTES - HEADER_BYTES {
                break;
            }
        }
        assert!(
            buf.len() < SECTOR_BYTES,
            "record 2's header straddles the boundary"
        );
        let second = buf.len();
        encode(&small(2, 700), &mut buf);
        encode(&small(3, 10), &mut buf);
        buf[second..SECTOR_BYTES].fill(0);
        let s = scan(&buf);
        let stop = s.stop.as_ref().expect("stops at record 2");
        assert_eq!(stop.offset, second as u64);
        assert!(stop.torn, "{stop:?}");
    }

    #[test]
    fn a_record_cut_inside_a_sector_is_torn_though_later_sectors_reached_the_disk() {
        // A page went to the disk while an append was being copied into it: the sector holds
        // the record's first bytes and then the zeros it held before, the next sectors hold
        // the rest and the records after it.
        let big = |index| Entry {
            term: 3,
            index,
            kind: EntryKind::Command,
            data: vec![9u8; 300].into(),
        };
        let mut buf = Vec::new();
        let mut starts = Vec::new();
        for i in 1..=8 {
            starts.push(buf.len());
            encode(&big(i), &mut buf);
        }
        let (at, _) = starts
            .iter()
            .zip(starts.iter().skip(1))
            .map(|(&s, &e)| (s, e))
            .find(|&(s, e)| s / SECTOR_BYTES != (e - 1) / SECTOR_BYTES && s > SECTOR_BYTES)
            .expect("a record crossing a sector boundary");
        let boundary = at.div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
        let split = at + (boundary - at) / 2;
        buf[split..boundary].fill(0);
        let s = scan(&buf);
        let stop = s.stop.as_ref().expect("stops at the cut record");
        assert_eq!(stop.offset, at as u64);
        assert!(stop.torn, "{stop:?}");
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

    #[test]
    fn a_sync_marker_after_damage_proves_it_is_not_a_torn_append() {
        let mut buf = Vec::new();
        encode(&entry(1), &mut buf);
        let second = buf.len();
        encode(&entry(2), &mut buf);
        let synced = buf.len() as u64;
        encode_marker(synced, &mut buf);
        encode(&entry(3), &mut buf);
        let whole = scan(&buf);
        assert_eq!(whole.entries, vec![entry(1), entry(2), entry(3)]);
        assert!(whole.stop.is_none());
        assert_eq!(whole.end, buf.len() as u64);
        // A damaged length hides where the next record starts; the marker is found anyway.
        let mut damaged = buf.clone();
        damaged[second + 3] = 0x7f;
        let s = scan(&damaged);
        assert!(
            s.stop
                .as_ref()
                .is_some_and(|s| !s.torn && s.offset == second as u64),
            "{:?}",
            s.stop
        );
        // Record 2 lost whole (zeros) is corruption too: the marker says it was synced.
        let mut lost = buf.clone();
        lost[second..synced as usize].fill(0);
        assert!(scan(&lost).stop.is_some_and(|s| !s.torn));
        // Damage after the marker, in the unsynced group commit, is still a torn append.
        let mut torn = buf.clone();
        let last = torn.len() - 1;
        torn[last] ^= 1;
        let s = scan(&torn);
        assert_eq!(s.entries, vec![entry(1), entry(2)]);
        assert!(s.stop.is_some_and(|s| s.torn));
    }

    #[test]
    fn a_marker_torn_by_a_crash_is_a_torn_append() {
        let mut buf = Vec::new();
        encode(&entry(1), &mut buf);
        let marker = buf.len();
        encode_marker(marker as u64, &mut buf);
        encode(&entry(2), &mut buf);
        buf.extend(vec![0; 64]);
        // The marker's header reached the disk; the rest of the group commit did not.
        buf[marker + HEADER_BYTES..].fill(0);
        let s = scan(&buf);
        assert_eq!(s.entries, vec![entry(1)]);
        assert!(
            s.stop
                .as_ref()
                .is_some_and(|s| s.torn && s.offset == marker as u64),
            "{:?}",
            s.stop
        );
    }
}
