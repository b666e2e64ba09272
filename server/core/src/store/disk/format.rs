//! The disk store's byte format, apart from its I/O: file names, the snapshot header and the log's
//! records. Everything here is a pure function of bytes, so the torn-tail and bit-flip rules are
//! tested exhaustively below without touching a disk.
//!
//! ```text
//! snapshot-G   "CPSNAP01" | len u64 | crc32c u32 | state
//! log-G        "CPLOG001" | record*
//! record  = len u32 | crc32c(payload) u32 | crc32c(len, crc) u32 | payload   (little-endian)
//! payload = a batch (store::batch): the updates of one group commit
//! ```

use crate::store::batch;

pub(super) const SNAP_MAGIC: &[u8; 8] = b"CPSNAP01";
pub(super) const LOG_MAGIC: &[u8; 8] = b"CPLOG001";
const SNAP_HEADER: usize = 8 + 8 + 4;
pub(super) const RECORD_HEADER: usize = 12;

pub(super) fn snapshot_name(gen: u64) -> String {
    format!("snapshot-{gen:020}")
}

pub(super) fn log_name(gen: u64) -> String {
    format!("log-{gen:020}")
}

pub(super) fn parse_gen(file: &str, prefix: &str) -> Option<u64> {
    let digits = file.strip_prefix(prefix)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

pub(super) fn parse_snapshot(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < SNAP_HEADER || &bytes[..8] != SNAP_MAGIC {
        return Err("not a CommonPad snapshot (bad header)".into());
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().map_err(|_| "header")?);
    let crc = u32::from_le_bytes(bytes[16..20].try_into().map_err(|_| "header")?);
    let body = &bytes[SNAP_HEADER..];
    if body.len() as u64 != len {
        return Err(format!("snapshot holds {} bytes, header says {len}", body.len()));
    }
    if crc32c::crc32c(body) != crc {
        return Err("snapshot checksum mismatch".into());
    }
    Ok(body)
}

pub(super) fn encode_snapshot(state: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SNAP_HEADER + state.len());
    out.extend_from_slice(SNAP_MAGIC);
    out.extend_from_slice(&(state.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(state).to_le_bytes());
    out.extend_from_slice(state);
    out
}

pub(super) fn encode_record(out: &mut Vec<u8>, payload: &[u8]) {
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c(payload).to_le_bytes();
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&len);
    head[4..].copy_from_slice(&crc);
    out.extend_from_slice(&head);
    out.extend_from_slice(&crc32c::crc32c(&head).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Reads the records of a log. Returns them and where the last good one ends; bytes after that are
/// a torn tail. Damage anywhere else is an error.
pub(super) fn parse_log(bytes: &[u8]) -> Result<(Vec<Vec<u8>>, usize), String> {
    if bytes.len() < LOG_MAGIC.len() {
        // Cut while the header was being written: an empty log.
        return Ok((Vec::new(), 0));
    }
    if &bytes[..8] != LOG_MAGIC {
        return Err("not a CommonPad log (bad header)".into());
    }
    let mut pos = LOG_MAGIC.len();
    let mut records = Vec::new();
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < RECORD_HEADER {
            break; // torn: the header itself is incomplete
        }
        let head = &rest[..8];
        let head_crc = u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if crc32c::crc32c(head) != head_crc {
            // A bad header is a torn tail only if nothing but zeros follows (space the file system
            // allocated for a write that never landed); otherwise a bit flipped in the middle.
            if rest.iter().all(|b| *b == 0) {
                break;
            }
            return Err(format!("record header at byte {pos} is damaged"));
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if rest.len() - RECORD_HEADER < len {
            break; // torn: the payload is incomplete
        }
        let payload = &rest[RECORD_HEADER..RECORD_HEADER + len];
        let end = pos + RECORD_HEADER + len;
        if crc32c::crc32c(payload) != crc {
            if end == bytes.len() {
                break; // the last record, torn inside its payload
            }
            return Err(format!("record at byte {pos} fails its checksum"));
        }
        let updates = batch::decode(payload).map_err(|d| format!("record at byte {pos}: {d}"))?;
        records.extend(updates.into_iter().map(<[u8]>::to_vec));
        pos = end;
    }
    Ok((records, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(update: &[u8]) -> Vec<u8> {
        let mut p = (update.len() as u32).to_le_bytes().to_vec();
        p.extend_from_slice(update);
        p
    }

    #[test]
    fn a_torn_group_commit_with_zeroed_pages_is_a_torn_tail() {
        let mut log = LOG_MAGIC.to_vec();
        encode_record(&mut log, &batch(b"acknowledged"));
        let good = log.len();
        let mut payload = batch(b"one");
        payload.extend_from_slice(&batch(b"two"));
        encode_record(&mut log, &payload);
        // the header page landed, the rest did not
        for b in &mut log[good + RECORD_HEADER..] {
            *b = 0;
        }
        let (recs, end) = parse_log(&log).unwrap();
        assert_eq!(recs, vec![b"acknowledged".to_vec()]);
        assert_eq!(end, good);
    }

    #[test]
    fn records_round_trip_and_every_cut_of_the_last_is_a_torn_tail() {
        let mut log = LOG_MAGIC.to_vec();
        for p in [&b"first"[..], b"second", b"third record"] {
            encode_record(&mut log, &batch(p));
        }
        let (all, end) = parse_log(&log).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(end, log.len());
        let last_start = log.len() - RECORD_HEADER - 4 - b"third record".len();
        for cut in last_start..log.len() {
            let (recs, good) = parse_log(&log[..cut]).unwrap();
            assert_eq!(recs.len(), 2, "cut at {cut}");
            assert_eq!(good, last_start);
        }
    }

    #[test]
    fn flipped_bits_in_the_middle_are_damage() {
        let mut log = LOG_MAGIC.to_vec();
        for p in [&b"first"[..], b"second", b"third"] {
            encode_record(&mut log, &batch(p));
        }
        for i in 8..(log.len() - RECORD_HEADER - 4 - 5) {
            for bit in 0..8 {
                let mut bad = log.clone();
                bad[i] ^= 1 << bit;
                assert!(parse_log(&bad).is_err(), "flip at byte {i} bit {bit} went unnoticed");
            }
        }
    }
}
