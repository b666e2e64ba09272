//! Frames as a WebSocket delivers them: `decode_message` on arbitrary and on mutated valid frames,
//! with each decoded payload passed on to the decoder the connection would hand it to.

use crate::mutate;
use commonpad_core::sync::awareness::{Awareness, PresenceLimits};
use commonpad_core::sync::guard;
use commonpad_core::sync::protocol::{self, Message, Reader};
use proptest::prelude::*;
use std::time::Instant;

const LIMITS: PresenceLimits = PresenceLimits { max_clients: 8, max_state_bytes: 1024, max_bytes: 4096 };

/// One message a client may send, before encoding.
#[derive(Debug, Clone)]
enum Frame {
    Step1(Vec<u8>),
    Step2(Vec<u8>),
    Update(Vec<u8>),
    Awareness(Vec<u8>),
    QueryAwareness,
    Denied(String),
    Unknown(u64),
}

impl Frame {
    fn encode(&self) -> Vec<u8> {
        match self {
            Frame::Step1(p) => protocol::encode_sync_step1(p),
            Frame::Step2(p) => protocol::encode_sync_step2(p),
            Frame::Update(p) => protocol::encode_update(p),
            Frame::Awareness(p) => protocol::encode_awareness(p),
            Frame::QueryAwareness => vec![protocol::MSG_QUERY_AWARENESS as u8],
            Frame::Denied(reason) => protocol::encode_permission_denied(reason),
            Frame::Unknown(kind) => {
                let mut out = Vec::new();
                protocol::write_var_u64(&mut out, *kind);
                out
            }
        }
    }
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..200),
        1 => prop::collection::vec(any::<u8>(), 200..20_000),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        payload().prop_map(Frame::Step1),
        payload().prop_map(Frame::Step2),
        payload().prop_map(Frame::Update),
        payload().prop_map(Frame::Awareness),
        Just(Frame::QueryAwareness),
        ".{0,40}".prop_map(Frame::Denied),
        (4..u64::MAX).prop_map(Frame::Unknown),
    ]
}

/// Decodes a frame and passes its payload on, as a connection does. Only panics count: errors are
/// the expected answer to most of these inputs.
pub fn route(frame: &[u8]) {
    match protocol::decode_message(frame) {
        Ok(Message::SyncStep1 { state_vector }) => {
            let _ = guard::decode_state_vector(state_vector);
        }
        Ok(Message::SyncStep2 { update } | Message::Update { update }) => {
            let _ = guard::decode_update_counted(update);
        }
        Ok(Message::Awareness { update }) => {
            let _ = Awareness::with_reserved(0).apply(update, 1, &LIMITS, Instant::now());
        }
        Ok(_) | Err(_) => {}
    }
}

/// Reads a [`Reader`] can be asked for, driven by the fuzzer.
#[derive(Debug, Clone)]
enum Read {
    U8,
    VarU64,
    VarU32,
    Skip,
    Exact(usize),
    Bytes,
    Str,
    Count(usize),
}

fn read() -> impl Strategy<Value = Read> {
    prop_oneof![
        Just(Read::U8),
        Just(Read::VarU64),
        Just(Read::VarU32),
        Just(Read::Skip),
        any::<usize>().prop_map(Read::Exact),
        Just(Read::Bytes),
        Just(Read::Str),
        any::<usize>().prop_map(Read::Count),
    ]
}

proptest! {
    #![proptest_config(crate::config(2000))]

    #[test]
    fn arbitrary_frames_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        route(&bytes);
    }

    #[test]
    fn valid_frames_decode_to_what_was_encoded(f in frame(), junk in prop::collection::vec(any::<u8>(), 0..8)) {
        let mut bytes = f.encode();
        let plain = bytes.len();
        bytes.extend_from_slice(&junk); // trailing bytes are ignored, except by auth (it takes the rest)
        let decoded = protocol::decode_message(&bytes);
        match &f {
            Frame::Step1(p) => prop_assert_eq!(decoded, Ok(Message::SyncStep1 { state_vector: p })),
            Frame::Step2(p) => prop_assert_eq!(decoded, Ok(Message::SyncStep2 { update: p })),
            Frame::Update(p) => prop_assert_eq!(decoded, Ok(Message::Update { update: p })),
            Frame::Awareness(p) => prop_assert_eq!(decoded, Ok(Message::Awareness { update: p })),
            Frame::QueryAwareness => prop_assert_eq!(decoded, Ok(Message::QueryAwareness)),
            Frame::Unknown(kind) => prop_assert_eq!(decoded, Ok(Message::Unknown { kind: *kind })),
            Frame::Denied(reason) => {
                prop_assert_eq!(decoded, Ok(Message::Auth { payload: &bytes[1..] }));
                let mut r = Reader::new(&bytes[1..plain]);
                prop_assert_eq!(r.read_u8(), Ok(0));
                prop_assert_eq!(r.read_string(), Ok(reason.as_str()));
                prop_assert!(r.is_empty());
            }
        }
    }

    #[test]
    fn mutated_frames_never_panic(f in frame(), m in mutate::mutations()) {
        route(&mutate::apply(f.encode(), &m));
    }

    #[test]
    fn varints_round_trip(v in any::<u64>(), shift in 0..64u32) {
        for v in [v, v >> shift] {
            let mut out = Vec::new();
            protocol::write_var_u64(&mut out, v);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.read_var_u64(), Ok(v));
            prop_assert!(r.is_empty());
        }
    }

    #[test]
    fn reader_never_panics_or_overreads(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        reads in prop::collection::vec(read(), 0..16),
    ) {
        let mut r = Reader::new(&bytes);
        for op in reads {
            let before = r.remaining();
            match op {
                Read::U8 => prop_assert_eq!(r.read_u8().is_ok(), before > 0),
                Read::VarU64 => {
                    let _ = r.read_var_u64();
                }
                Read::VarU32 => {
                    let _ = r.read_var_u32();
                }
                Read::Skip => {
                    let _ = r.skip_varint();
                }
                Read::Exact(n) => prop_assert_eq!(r.read_exact(n % 80).is_ok(), n % 80 <= before),
                Read::Bytes => {
                    let _ = r.read_var_bytes();
                }
                Read::Str => {
                    let _ = r.read_string();
                }
                Read::Count(min) => {
                    if let Ok(n) = r.read_count(min % 8) {
                        prop_assert!(n.saturating_mul((min % 8).max(1)) <= r.remaining());
                    }
                }
            }
            prop_assert!(r.remaining() <= before);
        }
    }
}
