//! The y-websocket wire protocol, version 1: lib0 variable-length integers and buffers, and the
//! four message types a client may send (sync, awareness, auth, query-awareness).
//!
//! Every length read here comes from an untrusted client, so each one is checked against the bytes
//! actually left in the frame *before* anything is sliced or allocated: a five-byte varint that claims
//! four billion entries costs us nothing.

use thiserror::Error;

pub const MSG_SYNC: u64 = 0;
pub const MSG_AWARENESS: u64 = 1;
pub const MSG_AUTH: u64 = 2;
pub const MSG_QUERY_AWARENESS: u64 = 3;

pub const SYNC_STEP1: u64 = 0;
pub const SYNC_STEP2: u64 = 1;
pub const SYNC_UPDATE: u64 = 2;

/// Why a client's bytes could not be read. The `Display` text goes into the WebSocket close reason,
/// so it stays short and never echoes client data.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message ends early")]
    UnexpectedEnd,
    #[error("integer too large")]
    VarintOverflow,
    #[error("length exceeds message")]
    LengthTooLarge,
    #[error("invalid utf-8")]
    InvalidUtf8,
    #[error("nesting too deep")]
    TooDeep,
    #[error("unknown sync message type {0}")]
    UnknownSyncType(u64),
    #[error("invalid {0}")]
    Invalid(&'static str),
    #[error("yrs rejected update: {0}")]
    Yrs(String),
}

/// A cursor over a borrowed frame. Reads never panic and never allocate.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn read_u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::UnexpectedEnd)?;
        self.pos += 1;
        Ok(b)
    }

    /// lib0 `readVarUint`: 7 bits a byte, little-endian, high bit set on every byte but the last.
    pub fn read_var_u64(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.read_u8()?;
            if shift == 63 && b > 1 {
                return Err(DecodeError::VarintOverflow);
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift > 63 {
                return Err(DecodeError::VarintOverflow);
            }
        }
    }

    pub fn read_var_u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.read_var_u64()?).map_err(|_| DecodeError::VarintOverflow)
    }

    /// Skips a signed or unsigned varint without interpreting it (both end on the first byte whose
    /// high bit is clear).
    pub fn skip_varint(&mut self) -> Result<(), DecodeError> {
        for _ in 0..10 {
            if self.read_u8()? & 0x80 == 0 {
                return Ok(());
            }
        }
        Err(DecodeError::VarintOverflow)
    }

    pub fn read_exact(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if len > self.remaining() {
            return Err(DecodeError::LengthTooLarge);
        }
        let out = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    /// lib0 `readVarUint8Array`: a varint length, then that many bytes.
    pub fn read_var_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.read_var_u64()?;
        let len = usize::try_from(len).map_err(|_| DecodeError::LengthTooLarge)?;
        self.read_exact(len)
    }

    pub fn read_string(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.read_var_bytes()?).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// Reads a count of items that each take at least `min_item_bytes`, refusing counts the rest of
    /// the message could not possibly hold. This is what keeps a lying length from reaching an
    /// allocator.
    pub fn read_count(&mut self, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let n = self.read_var_u64()?;
        let n = usize::try_from(n).map_err(|_| DecodeError::LengthTooLarge)?;
        if n.saturating_mul(min_item_bytes.max(1)) > self.remaining() {
            return Err(DecodeError::LengthTooLarge);
        }
        Ok(n)
    }
}

pub fn write_var_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn write_var_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_var_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub fn write_string(out: &mut Vec<u8>, s: &str) {
    write_var_bytes(out, s.as_bytes());
}

/// One message as a client sent it, borrowing the frame. Payloads are still raw: the sync payloads
/// are checked by [`crate::sync::guard`] before yrs sees them.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    SyncStep1 {
        state_vector: &'a [u8],
    },
    SyncStep2 {
        update: &'a [u8],
    },
    Update {
        update: &'a [u8],
    },
    Awareness {
        update: &'a [u8],
    },
    Auth {
        payload: &'a [u8],
    },
    QueryAwareness,
    /// A message type this server does not know. Kept (not an error) because newer clients may send
    /// extensions; the connection logs and counts it and goes on.
    Unknown {
        kind: u64,
    },
}

/// Decodes the one message a frame carries. Bytes after it are ignored, as the reference server does.
pub fn decode_message(frame: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut r = Reader::new(frame);
    let kind = r.read_var_u64()?;
    Ok(match kind {
        MSG_SYNC => {
            let sub = r.read_var_u64()?;
            let payload = r.read_var_bytes()?;
            match sub {
                SYNC_STEP1 => Message::SyncStep1 { state_vector: payload },
                SYNC_STEP2 => Message::SyncStep2 { update: payload },
                SYNC_UPDATE => Message::Update { update: payload },
                other => return Err(DecodeError::UnknownSyncType(other)),
            }
        }
        MSG_AWARENESS => Message::Awareness { update: r.read_var_bytes()? },
        MSG_AUTH => Message::Auth { payload: r.read_exact(r.remaining())? },
        MSG_QUERY_AWARENESS => Message::QueryAwareness,
        kind => Message::Unknown { kind },
    })
}

fn sync_frame(sub: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 12);
    write_var_u64(&mut out, MSG_SYNC);
    write_var_u64(&mut out, sub);
    write_var_bytes(&mut out, payload);
    out
}

pub fn encode_sync_step1(state_vector: &[u8]) -> Vec<u8> {
    sync_frame(SYNC_STEP1, state_vector)
}

pub fn encode_sync_step2(update: &[u8]) -> Vec<u8> {
    sync_frame(SYNC_STEP2, update)
}

pub fn encode_update(update: &[u8]) -> Vec<u8> {
    sync_frame(SYNC_UPDATE, update)
}

pub fn encode_awareness(awareness_update: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(awareness_update.len() + 6);
    write_var_u64(&mut out, MSG_AWARENESS);
    write_var_bytes(&mut out, awareness_update);
    out
}

/// The auth message y-protocols' `auth.js` reads as "permission denied": `[2, 0, reason]`.
pub fn encode_permission_denied(reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(reason.len() + 4);
    write_var_u64(&mut out, MSG_AUTH);
    write_var_u64(&mut out, 0);
    write_string(&mut out, reason);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_including_53_bit_ids() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, (1 << 53) - 1, u64::MAX] {
            let mut buf = Vec::new();
            write_var_u64(&mut buf, v);
            assert_eq!(Reader::new(&buf).read_var_u64(), Ok(v));
        }
    }

    #[test]
    fn overlong_varint_is_an_error_not_a_panic() {
        let buf = [0xffu8; 11];
        assert_eq!(Reader::new(&buf).read_var_u64(), Err(DecodeError::VarintOverflow));
    }

    #[test]
    fn lying_lengths_are_refused_before_slicing() {
        // sync step 1 whose payload claims 2^32 bytes in a 9-byte frame
        let frame = [0u8, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 1, 2];
        assert_eq!(decode_message(&frame), Err(DecodeError::LengthTooLarge));
        let mut r = Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x0f]);
        assert_eq!(r.read_count(1), Err(DecodeError::LengthTooLarge));
    }

    #[test]
    fn decodes_each_message_type() {
        assert_eq!(decode_message(&[0, 0, 1, 0]), Ok(Message::SyncStep1 { state_vector: &[0] }));
        assert_eq!(decode_message(&[0, 1, 2, 0, 0]), Ok(Message::SyncStep2 { update: &[0, 0] }));
        assert_eq!(decode_message(&[0, 2, 2, 0, 0]), Ok(Message::Update { update: &[0, 0] }));
        assert_eq!(decode_message(&[1, 1, 0]), Ok(Message::Awareness { update: &[0] }));
        assert_eq!(decode_message(&[3]), Ok(Message::QueryAwareness));
        assert_eq!(decode_message(&[9, 9]), Ok(Message::Unknown { kind: 9 }));
        assert_eq!(decode_message(&[0, 7, 0]), Err(DecodeError::UnknownSyncType(7)));
        assert_eq!(decode_message(&[]), Err(DecodeError::UnexpectedEnd));
    }
}
