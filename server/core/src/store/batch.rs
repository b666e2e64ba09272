//! The batch codec: the updates of one group commit as one byte string, each update as a 4-byte
//! little-endian length and its bytes. The disk log stores one batch per record and cluster mode
//! one per stream entry, so both read and write it here.
//!
//! Decoding checks every length against the bytes left before slicing: a record's checksum guards
//! the disk log, but a stream entry is only as trustworthy as whoever could write to Redis.

use bytes::Bytes;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    #[error("batch ends inside a length")]
    TruncatedLength,
    #[error("batch entry of {len} bytes, only {left} left")]
    EntryTooLong { len: usize, left: usize },
}

/// Encodes updates as one batch.
pub fn encode(updates: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::with_capacity(updates.iter().map(|u| u.len() + 4).sum());
    for u in updates {
        // An update is at most --max-message-bytes (far below 4 GiB), so its length fits.
        out.extend_from_slice(&(u.len() as u32).to_le_bytes());
        out.extend_from_slice(u);
    }
    out
}

/// The updates of a batch, as slices of it, in order.
pub fn decode(mut payload: &[u8]) -> Result<Vec<&[u8]>, BatchError> {
    let mut out = Vec::new();
    while !payload.is_empty() {
        let Some((len, rest)) = payload.split_first_chunk::<4>() else {
            return Err(BatchError::TruncatedLength);
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err(BatchError::EntryTooLong { len, left: rest.len() });
        }
        out.push(&rest[..len]);
        payload = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_including_empty_and_large_updates() {
        let batch = vec![Bytes::from_static(b"one"), Bytes::new(), Bytes::from(vec![7u8; 70_000])];
        let encoded = encode(&batch);
        let decoded: Vec<Bytes> = decode(&encoded).unwrap().into_iter().map(Bytes::copy_from_slice).collect();
        assert_eq!(decoded, batch);
        assert_eq!(decode(&[]).unwrap().len(), 0);
    }

    #[test]
    fn lengths_that_do_not_fit_are_errors() {
        let mut lying = 1_000_000u32.to_le_bytes().to_vec();
        lying.extend_from_slice(b"short");
        assert_eq!(decode(&lying), Err(BatchError::EntryTooLong { len: 1_000_000, left: 5 }));
        assert_eq!(decode(&[1, 0]), Err(BatchError::TruncatedLength));
    }
}
