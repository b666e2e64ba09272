//! One WebSocket connection: reads frames, decodes and guards them, hands them to the room, and
//! writes what the room queues for it. Keeps the connection alive with pings.
//!
//! Decoding happens here, not in the room, so that the expensive part of a large message runs in
//! parallel across connections and a malformed message never reaches the room at all: it closes
//! its own connection with a close code and a short reason, and nobody else notices.

use crate::hub::{AttachError, Hub};
use crate::metrics::{Metrics, Reject};
use crate::room::{close, Cmd, ConnId, ConnSender, Inbound, Next, Outbox, Role};
use crate::sync::{guard, protocol};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info, info_span, warn, Instrument};

/// Frames the room may queue for one connection before the client counts as too slow. Frames are
/// shared `Bytes`, so a full queue costs pointers, not copies; 1024 absorbs a burst such as a
/// reconnecting client's thousand offline edits echoed back.
pub const OUTBOUND_QUEUE: usize = 1024;

/// Bytes the room may have queued for one connection before it counts as too slow. Bounds what a
/// client that stops reading (or floods SyncStep1s, each answered with the whole document) can make
/// the server hold.
pub const OUTBOUND_QUEUE_BYTES: usize = 64 << 20;

/// How long one write to the socket may take (at most; never more than one ping interval). A client that stops reading would otherwise hold its
/// connection, its document and a connection slot for ever, with pings and closes stuck behind it.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

/// Ping interval, and how long a ping may go unanswered (the default; tests shorten it).
pub const PING_INTERVAL: Duration = Duration::from_secs(30);

/// tungstenite's read buffer: allocated up front for every connection, kept while it is open, and
/// zero-filled (up to its size) before every socket read. tungstenite's default, 128 KiB, was 93 % of
/// an idle connection's memory (docs/benchmarks.md); at 4 KiB it was still the largest part (39 %
/// in the massif profile there). What clients send is small (a keystroke's update is tens of
/// bytes); a larger message grows the buffer while it is read, and 1 KiB only means more, smaller
/// reads for it: about 8,000 `read` calls for an 8 MiB message, a few milliseconds.
pub const READ_BUFFER: usize = 1 << 10;

/// Bytes tungstenite gathers before writing to the socket (every batch below is flushed anyway).
/// Its write buffer keeps the capacity of its largest fill, so this also bounds what a burst of small
/// frames leaves allocated on an idle connection. (A single frame larger than this is still
/// buffered whole.)
pub const WRITE_BUFFER: usize = 8 << 10;

/// Messages longer than this go out as several WebSocket frames of at most this size (RFC 6455
/// fragmentation: every WebSocket client reassembles them before its application sees them).
/// tungstenite's write buffer keeps the capacity of the largest frame it was handed, so unfragmented,
/// a client that synced a 16 MB document would keep 16 MB allocated for as long as it stays
/// connected (measured: 259 to 284 KiB per idle client after syncing a 250,000-character document;
/// 34 to 67 KiB with fragments, tests/interop/probe-large-sync.mjs). Now at most about this much stays. Small enough to matter little per connection, large enough that a
/// 16 MB document is ~1,000 writes.
pub const FRAGMENT: usize = 16 << 10;

/// The WebSocket messages that carry one y-websocket message: itself, or its fragments.
fn fragments(msg: Bytes) -> impl Iterator<Item = Message> {
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
/// connection is bounded by [`OUTBOUND_QUEUE_BYTES`] and [`WRITE_TIMEOUT`] instead.
pub fn ws_config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

fn close_frame(code: u16, why: &str) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason(why).into() }))
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Close reasons are limited to 123 bytes by RFC 6455.
fn reason(s: &str) -> String {
    let mut end = s.len().min(123);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

pub async fn serve<S>(ws: WebSocketStream<S>, doc: String, role: Role, hub: Hub, ping_interval: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let id: ConnId = NEXT_CONN.fetch_add(1, Relaxed);
    let span = info_span!("conn", doc = %doc, conn = id);
    run(ws, doc, role, hub, id, ping_interval).instrument(span).await
}

/// Marks the outbox ended when the connection task ends, by any path.
struct EndOnDrop(Arc<Outbox>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end();
    }
}

async fn run<S>(ws: WebSocketStream<S>, doc: String, role: Role, hub: Hub, id: ConnId, ping_interval: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let metrics = hub.metrics().clone();
    let (mut sink, mut stream) = ws.split();
    let attached = match hub.attach(&doc).await {
        Ok(a) => a,
        Err(e) => {
            let code = match e {
                AttachError::ShuttingDown => close::GOING_AWAY,
                _ => close::TRY_AGAIN_LATER,
            };
            info!(error = %e, "connection refused");
            let _ = sink.send(close_frame(code, &e.to_string())).await;
            return;
        }
    };
    metrics.connections_total.fetch_add(1, Relaxed);
    metrics.connections_open(role).fetch_add(1, Relaxed);
    let outbox = Outbox::new();
    // However this task ends, the room's later pushes fail (and it forgets the connection).
    let _ended = EndOnDrop(outbox.clone());
    if attached.tx.send(Cmd::Join(ConnSender::new(id, role, outbox.clone()))).await.is_err() {
        metrics.connections_open(role).fetch_sub(1, Relaxed);
        return;
    }
    debug!("connected");
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    let write_timeout = WRITE_TIMEOUT.min(ping_interval);
    let mut last_heard = Instant::now();
    // When the last ping went out, if nothing has been heard since.
    let mut ping_sent: Option<Instant> = None;
    let mut closing: Option<(u16, String)> = None;
    loop {
        tokio::select! {
            // Write first: a client that is being answered should get its answers before we read
            // more from it.
            biased;
            next = outbox.next() => {
                let frame = match next {
                    Next::Frame(frame) => frame,
                    // The room closed or let go of us; if it said why, tell the client (e.g. 1011
                    // after a storage failure, so that its provider reconnects and the document
                    // reloads).
                    Next::End(reason) => {
                        closing = reason;
                        break;
                    }
                };
                // Batch whatever else is queued into the same flush, all under one deadline.
                let write = async {
                    let mut next = Some(frame);
                    while let Some(f) = next {
                        for m in fragments(f) {
                            sink.feed(m).await?;
                        }
                        next = outbox.try_frame();
                    }
                    sink.flush().await
                };
                match tokio::time::timeout(write_timeout, write).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    Err(_) => {
                        metrics.reject(Reject::SlowClient);
                        info!("a write did not complete in {write_timeout:?}: the client stopped reading; dropping it");
                        break;
                    }
                }
            }
            msg = stream.next() => {
                let msg = match msg {
                    None => break,
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        // tungstenite reports an oversized message or frame as a capacity error.
                        if matches!(e, WsError::Capacity(_)) {
                            metrics.reject(Reject::TooLarge);
                            warn!(error = %e, "frame over the size limit");
                            closing = Some((1009, "message too large".into()));
                        } else {
                            debug!(error = %e, "read error");
                        }
                        break;
                    }
                };
                last_heard = Instant::now();
                if let Message::Binary(data) = &msg {
                    metrics.messages_in.fetch_add(1, Relaxed);
                    metrics.bytes_in.fetch_add(data.len() as u64, Relaxed);
                    match decode(data, &metrics) {
                        Ok(Some(inbound)) => {
                            if attached.tx.send(Cmd::Msg(id, Box::new(inbound))).await.is_err() {
                                break;
                            }
                        }
                        Ok(None) => {}
                        Err((code, why)) => {
                            warn!(reason = %why, "closing connection after a bad message");
                            closing = Some((code, why));
                            break;
                        }
                    }
                } else if msg.is_text() {
                    metrics.reject(Reject::TextFrame);
                    warn!("text frame refused");
                    closing = Some((1003, "text frames are not supported; send binary y-websocket messages".into()));
                    break;
                } else if msg.is_close() {
                    break;
                }
                // pings are answered by tungstenite itself; pongs only count as signs of life
            }
            _ = ping.tick() => {
                // Any frame counts as an answer: a busy client's pong may queue behind its updates.
                if ping_sent.is_some_and(|sent| last_heard < sent) {
                    metrics.reject(Reject::PingTimeout);
                    info!("no answer to a ping within 30 s; closing");
                    closing = Some((close::GOING_AWAY, "ping timeout".into()));
                    break;
                }
                if !matches!(tokio::time::timeout(write_timeout, sink.send(Message::Ping(Bytes::new()))).await, Ok(Ok(()))) {
                    break;
                }
                ping_sent = Some(Instant::now());
            }
        }
    }
    if let Some((code, why)) = closing {
        let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(close_frame(code, &why))).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
    let _ = attached.tx.send(Cmd::Leave(id)).await;
    drop(attached);
    metrics.connections_open(role).fetch_sub(1, Relaxed);
    debug!("disconnected");
}

/// Decodes one frame. `Ok(None)` is a message that needs nothing from the room (auth, unknown).
fn decode(frame: &[u8], metrics: &Metrics) -> Result<Option<Inbound>, (u16, String)> {
    use protocol::Message as M;
    let bad = |e: protocol::DecodeError| {
        metrics.reject(Reject::Malformed);
        (close::INVALID_DATA, format!("malformed message: {e}"))
    };
    Ok(match protocol::decode_message(frame).map_err(bad)? {
        M::SyncStep1 { state_vector } => {
            Some(Inbound::SyncStep1(guard::decode_state_vector(state_vector).map_err(bad)?))
        }
        M::SyncStep2 { update } | M::Update { update } => {
            let (decoded, types) = guard::decode_update_counted(update).map_err(bad)?;
            Some(Inbound::Update { update: decoded, raw: Bytes::copy_from_slice(update), types })
        }
        M::Awareness { update } => Some(Inbound::Awareness(Bytes::copy_from_slice(update))),
        M::QueryAwareness => Some(Inbound::QueryAwareness),
        M::Auth { .. } => None,
        M::Unknown { kind } => {
            metrics.reject(Reject::UnknownType);
            debug!(kind, "unknown message type ignored");
            None
        }
    })
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
