//! One WebSocket connection: reads frames, decodes and guards them, hands them to the room, and
//! writes what the room queues for it. Keeps the connection alive with pings.
//!
//! Decoding happens here, not in the room, so that the expensive part of a large message runs in
//! parallel across connections and a malformed message never reaches the room at all: it closes
//! its own connection with a close code and a short reason, and nobody else notices.

use crate::hub::{AttachError, Hub};
use crate::metrics::{Metrics, Reject};
use crate::room::{close, Cmd, ConnId, ConnSender, Inbound, Role};
use crate::sync::{guard, protocol};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, info_span, warn, Instrument};
use warp::ws::{Message, WebSocket};

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

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Close reasons are limited to 123 bytes by RFC 6455.
fn reason(s: &str) -> String {
    let mut end = s.len().min(123);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

pub async fn serve(ws: WebSocket, doc: String, role: Role, hub: Hub, ping_interval: Duration) {
    let id: ConnId = NEXT_CONN.fetch_add(1, Relaxed);
    let span = info_span!("conn", doc = %doc, conn = id);
    run(ws, doc, role, hub, id, ping_interval).instrument(span).await
}

async fn run(ws: WebSocket, doc: String, role: Role, hub: Hub, id: ConnId, ping_interval: Duration) {
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
            let _ = sink.send(Message::close_with(code, reason(&e.to_string()))).await;
            return;
        }
    };
    metrics.connections_total.fetch_add(1, Relaxed);
    metrics.connections_open(role).fetch_add(1, Relaxed);
    let (frames_tx, mut frames_rx) = mpsc::channel::<Bytes>(OUTBOUND_QUEUE);
    let (close_tx, mut close_rx) = watch::channel(None);
    let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let me = ConnSender { id, role, frames: frames_tx, close: Arc::new(close_tx), queued: queued.clone() };
    if attached.tx.send(Cmd::Join(me)).await.is_err() {
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
            frame = frames_rx.recv() => {
                let Some(frame) = frame else {
                    // The room let go of us; if it said why, tell the client (e.g. 1011 after a
                    // storage failure, so that its provider reconnects and the document reloads).
                    closing = close_rx.borrow().clone();
                    break;
                };
                // Batch whatever else is queued into the same flush, all under one deadline.
                let write = async {
                    let mut next = Some(frame);
                    while let Some(f) = next {
                        let len = f.len();
                        sink.feed(Message::binary(f)).await?;
                        queued.fetch_sub(len, Relaxed);
                        next = frames_rx.try_recv().ok();
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
            _ = close_rx.changed() => {
                closing = close_rx.borrow().clone();
                break;
            }
            msg = stream.next() => {
                let msg = match msg {
                    None => break,
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        let text = e.to_string();
                        // tungstenite reports an oversized message as a capacity error.
                        if text.contains("Space limit exceeded") || text.contains("too long") {
                            metrics.reject(Reject::TooLarge);
                            warn!(error = %text, "frame over the size limit");
                            closing = Some((1009, "message too large".into()));
                        } else {
                            debug!(error = %text, "read error");
                        }
                        break;
                    }
                };
                last_heard = Instant::now();
                if msg.is_binary() {
                    metrics.messages_in.fetch_add(1, Relaxed);
                    metrics.bytes_in.fetch_add(msg.as_bytes().len() as u64, Relaxed);
                    match decode(msg.as_bytes(), &metrics) {
                        Ok(Some(inbound)) => {
                            if attached.tx.send(Cmd::Msg(id, inbound)).await.is_err() {
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
                if !matches!(tokio::time::timeout(write_timeout, sink.send(Message::ping(Bytes::new()))).await, Ok(Ok(()))) {
                    break;
                }
                ping_sent = Some(Instant::now());
            }
        }
    }
    if let Some((code, why)) = closing {
        let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(Message::close_with(code, reason(&why)))).await;
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
        M::SyncStep1 { state_vector } => Some(Inbound::SyncStep1(guard::decode_state_vector(state_vector).map_err(bad)?)),
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
