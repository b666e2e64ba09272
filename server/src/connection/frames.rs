//! What goes on the wire for one connection: the tungstenite settings, the close frame, and a
//! long message cut into fragments. Pure functions of their inputs, tested below.

use bytes::Bytes;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;

/// How long one write to the socket may take (never more than one ping interval). A client that
/// stops reading would otherwise hold its connection, its document and a connection slot for ever,
/// with pings and closes stuck behind it.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

/// Ping interval, and how long a ping may go unanswered (the default; tests shorten it).
pub const PING_INTERVAL: Duration = Duration::from_secs(30);

/// tungstenite's read buffer: allocated up front for every connection, kept while it is open, and
/// zero-filled (up to its size) before every socket read. Idle connections are what a workshop
/// server holds most of, and what clients send is small (a keystroke's update is tens of bytes),
/// so it is small: a larger message grows the buffer while it is read, and costs only more,
/// smaller reads (about 8,000 for an 8 MiB message, a few milliseconds). Figures in
/// docs/benchmarks.md.
pub const READ_BUFFER: usize = 1 << 10;

/// Bytes tungstenite gathers before writing to the socket (every batch is flushed anyway). Its
/// write buffer keeps the capacity of its largest fill, so this also bounds what a burst of small
/// frames leaves allocated on an idle connection. (A single frame larger than this is still
/// buffered whole.)
pub const WRITE_BUFFER: usize = 8 << 10;

/// Messages longer than this go out as several WebSocket frames of at most this size (RFC 6455
/// fragmentation: every WebSocket client reassembles them before its application sees them).
/// tungstenite's write buffer keeps the capacity of the largest frame it was handed, so
/// unfragmented, a client that synced a 16 MB document would keep 16 MB allocated for as long as
/// it stays connected; with fragments at most about this much stays (measured in
/// docs/benchmarks.md). Small enough to matter little per connection, large enough that a 16 MB
/// document is ~1,000 writes.
pub const FRAGMENT: usize = 16 << 10;

/// The WebSocket messages that carry one y-websocket message: itself, or its fragments.
pub fn fragments(msg: Bytes) -> impl Iterator<Item = Message> {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let len = msg.len();
    let count = if len <= FRAGMENT { 1 } else { len.div_ceil(FRAGMENT) };
    (0..count).map(move |i| {
        if count == 1 {
            return Message::Binary(msg.clone());
        }
        let chunk = msg.slice(i * FRAGMENT..((i + 1) * FRAGMENT).min(len));
        let opcode = OpCode::Data(if i == 0 { Data::Binary } else { Data::Continue });
        Message::Frame(Frame::message(chunk, opcode, i + 1 == count))
    })
}

/// The tungstenite settings of every `/sync` connection. `max_write_buffer_size` stays unlimited:
/// a frame over it would be refused, and a frame can be a whole document; what may queue for a
/// connection is bounded by the outbox's limits and [`WRITE_TIMEOUT`] instead.
pub fn ws_config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

pub fn close_frame(code: u16, why: &str) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason(why).into() }))
}

/// Close reasons are limited to 123 bytes by RFC 6455.
fn reason(s: &str) -> String {
    let mut end = s.len().min(123);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    /// (opcode, fin, payload) of each message `fragments` makes.
    fn parts(len: usize) -> Vec<(Option<OpCode>, bool, Bytes)> {
        let msg = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        fragments(msg)
            .map(|m| match m {
                Message::Binary(b) => (None, true, b),
                Message::Frame(f) => (Some(f.header().opcode), f.header().is_final, f.into_payload()),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn small_messages_stay_one_frame() {
        for len in [0, 1, FRAGMENT] {
            let p = parts(len);
            assert_eq!(p.len(), 1);
            assert_eq!(p[0].2.len(), len);
            assert!(p[0].0.is_none(), "a plain binary message");
        }
    }

    #[test]
    fn large_messages_are_fragmented_and_reassemble_exactly() {
        for len in [FRAGMENT + 1, 3 * FRAGMENT, 5 * FRAGMENT + 17] {
            let p = parts(len);
            assert_eq!(p.len(), len.div_ceil(FRAGMENT));
            assert_eq!(p[0].0, Some(OpCode::Data(Data::Binary)));
            for (i, (op, fin, payload)) in p.iter().enumerate() {
                assert!(payload.len() <= FRAGMENT);
                assert_eq!(*fin, i + 1 == p.len(), "only the last fragment is final");
                if i > 0 {
                    assert_eq!(*op, Some(OpCode::Data(Data::Continue)));
                }
            }
            let joined: Vec<u8> = p.iter().flat_map(|(_, _, b)| b.iter().copied()).collect();
            let want: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            assert_eq!(joined, want);
        }
    }
}
