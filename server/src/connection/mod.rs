//! One WebSocket connection: reads frames, decodes and guards them, hands them to the room, and
//! writes what the room queues for it. Keeps the connection alive with pings.
//!
//! Decoding happens here, not in the room, so that the expensive part of a large message runs in
//! parallel across connections and a malformed message never reaches the room at all: it closes
//! its own connection with a close code and a short reason, and nobody else notices.
//!
//! As in mini-redis, a [`Handler`] holds one connection's state and each thing that can happen to
//! it (the room queued frames, the client sent one, the ping timer fired) is one small method.

mod frames;
mod watch;

pub use frames::{ws_config, PING_INTERVAL, WRITE_TIMEOUT};
pub use watch::{Budget, Progress, Watched};

use bytes::Bytes;
use commonpad_core::close;
use commonpad_core::hub::{AttachError, Attached, Hub, Who};
use commonpad_core::metrics::{Metrics, Reject};
use commonpad_core::rate::TokenBucket;
use commonpad_core::room::{Cmd, ConnId, ConnSender, Inbound, Next, Outbox};
use commonpad_core::sync::{guard, protocol};
use commonpad_core::Role;
use frames::{close_frame, fragments};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info, info_span, warn, Instrument};

/// How long the close handshake may take at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A connection's clocks and limits.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How often it is pinged; one unanswered interval closes it.
    pub ping_interval: Duration,
    /// How long it may take to send its first sync request (every client sends one at once): an
    /// upgraded socket that never syncs only holds a place.
    pub first_sync: Duration,
    /// Updates it may send: (burst, then per second). Generous: a fast typist sends ten a second
    /// and a paste is one; a flood makes the room apply and fsync for everyone.
    pub update_rate: (u32, u32),
    /// How long one message may take to arrive whole (checked at each ping, so pongs do not keep
    /// an unfinished message alive).
    pub message_timeout: Duration,
}

/// What a connection's link grants: a role, at the link's generation (0 for documents that are
/// not a session's).
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    pub role: Role,
    pub generation: u64,
}

/// Serves one upgraded socket until it closes.
pub async fn serve<S>(
    ws: WebSocketStream<S>,
    doc: String,
    grant: Grant,
    ip: IpAddr,
    hub: Hub,
    settings: Settings,
    progress: Arc<Mutex<Progress>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let id: ConnId = NEXT_CONN.fetch_add(1, Relaxed);
    let span = info_span!("conn", doc = %doc, conn = id);
    async move {
        let (mut sink, stream) = ws.split();
        let role = grant.role;
        let attached = match hub.attach(&doc, Who::Client { role, ip }).await {
            Ok(a) => a,
            Err(e) => {
                let code = match e {
                    AttachError::ShuttingDown => close::GOING_AWAY,
                    AttachError::NameConflict => close::NAME_CONFLICT,
                    _ => close::TRY_AGAIN_LATER,
                };
                info!(error = %e, "connection refused");
                let _ = sink.send(close_frame(code, &e.to_string())).await;
                return;
            }
        };
        let metrics = hub.metrics().clone();
        let mut handler = Handler::new(id, grant, (sink, stream), attached, metrics, settings, progress);
        if handler.join().await {
            handler.run().await;
        }
        handler.end().await;
    }
    .instrument(span)
    .await
}

/// Marks the outbox ended when the connection task ends, by any path.
struct EndOnDrop(Arc<Outbox>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Why the loop stopped, and what to tell the client.
type Closing = Option<(u16, String)>;

/// One connection's state.
struct Handler<S> {
    id: ConnId,
    role: Role,
    generation: u64,
    sink: SplitSink<WebSocketStream<S>, Message>,
    stream: SplitStream<WebSocketStream<S>>,
    attached: Attached,
    metrics: Arc<Metrics>,
    outbox: Arc<Outbox>,
    /// However the task ends, the room's later pushes fail (and it forgets the connection).
    _ended: EndOnDrop,
    ping_interval: Duration,
    first_sync: Duration,
    /// The client has sent its first sync request.
    asked_sync: bool,
    updates: TokenBucket,
    write_timeout: Duration,
    last_heard: Instant,
    /// When the last ping went out, if nothing has been heard since.
    ping_sent: Option<Instant>,
    message_timeout: Duration,
    /// The message being received, from the socket's watch.
    progress: Arc<Mutex<Progress>>,
}

impl<S> Handler<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn new(
        id: ConnId,
        grant: Grant,
        (sink, stream): (SplitSink<WebSocketStream<S>, Message>, SplitStream<WebSocketStream<S>>),
        attached: Attached,
        metrics: Arc<Metrics>,
        settings: Settings,
        progress: Arc<Mutex<Progress>>,
    ) -> Self {
        let Settings { ping_interval, first_sync, update_rate: (burst, per_sec), message_timeout } = settings;
        let outbox = Outbox::new();
        Handler {
            id,
            role: grant.role,
            generation: grant.generation,
            sink,
            stream,
            attached,
            metrics,
            _ended: EndOnDrop(outbox.clone()),
            outbox,
            ping_interval,
            first_sync,
            asked_sync: false,
            updates: TokenBucket::new(burst, f64::from(per_sec)),
            write_timeout: WRITE_TIMEOUT.min(ping_interval),
            last_heard: Instant::now(),
            ping_sent: None,
            message_timeout,
            progress,
        }
    }

    /// Joins the room; false if the room is gone already.
    async fn join(&mut self) -> bool {
        self.metrics.connections_total.fetch_add(1, Relaxed);
        self.metrics.connections_open(self.role).fetch_add(1, Relaxed);
        let sender = ConnSender::new(self.id, self.role, self.generation, self.outbox.clone());
        let joined = self.attached.tx.send(Cmd::Join(sender)).await.is_ok();
        if joined {
            debug!("connected");
        }
        joined
    }

    /// Until the client, the room or a timeout ends the connection; then closes with a reason.
    async fn run(&mut self) {
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + self.ping_interval, self.ping_interval);
        let first_sync_by = tokio::time::sleep(self.first_sync);
        tokio::pin!(first_sync_by);
        let closing = loop {
            let step = tokio::select! {
                // Write first: a client that is being answered should get its answers before we
                // read more from it.
                biased;
                next = self.outbox.next() => self.write(next).await,
                msg = self.stream.next() => self.read(msg).await,
                _ = ping.tick() => self.ping().await,
                () = &mut first_sync_by, if !self.asked_sync => self.no_sync(),
            };
            if let Err(closing) = step {
                break closing;
            }
        };
        if let Some((code, why)) = closing {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.sink.send(close_frame(code, &why))).await;
        }
    }

    /// Writes a frame the room queued, with whatever else is queued, in one flush under one
    /// deadline. The end of the queue ends the connection, with the room's reason if it gave one
    /// (e.g. 1011 after a storage failure, so that the provider reconnects and reloads).
    async fn write(&mut self, next: Next) -> Result<(), Closing> {
        let frame = match next {
            Next::Frame(frame) => frame,
            Next::End(reason) => return Err(reason),
        };
        let (sink, outbox) = (&mut self.sink, &self.outbox);
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
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(None),
            Err(_) => {
                self.metrics.reject(Reject::SlowClient);
                info!("a write did not complete in {:?}: the client stopped reading; dropping it", self.write_timeout);
                Err(None)
            }
        }
    }

    /// One message from the client: binary goes (decoded and guarded) to the room.
    async fn read(&mut self, msg: Option<Result<Message, WsError>>) -> Result<(), Closing> {
        let msg = match msg {
            None => return Err(None),
            Some(Ok(m)) => m,
            // tungstenite reports an oversized message or frame as a capacity error.
            Some(Err(e @ WsError::Capacity(_))) => {
                self.metrics.reject(Reject::TooLarge);
                warn!(error = %e, "frame over the size limit");
                return Err(Some((close::TOO_LARGE, "message too large".into())));
            }
            Some(Err(e)) => {
                debug!(error = %e, "read error");
                if self.progress.lock().unwrap_or_else(|p| p.into_inner()).over_budget {
                    self.metrics.reject(Reject::MessageBudget);
                    warn!("the server's budget for messages in progress is spent; closing");
                    return Err(Some((close::TRY_AGAIN_LATER, "the server is busy; send that again later".into())));
                }
                return Err(None);
            }
        };
        self.last_heard = Instant::now();
        match msg {
            Message::Binary(data) => {
                self.metrics.messages_in.fetch_add(1, Relaxed);
                self.metrics.bytes_in.fetch_add(data.len() as u64, Relaxed);
                match decode(&data, &self.metrics) {
                    Ok(Some(inbound)) => {
                        self.asked_sync |= matches!(inbound, Inbound::SyncStep1(_));
                        if matches!(inbound, Inbound::Update { .. }) && !self.updates.take() {
                            self.metrics.reject(Reject::UpdateRate);
                            warn!("too many updates; closing");
                            return Err(Some((close::TRY_AGAIN_LATER, "too many updates; reconnect to resync".into())));
                        }
                        if self.attached.tx.send(Cmd::Msg(self.id, Box::new(inbound))).await.is_err() {
                            return Err(None);
                        }
                    }
                    Ok(None) => {}
                    Err(closing) => {
                        warn!(reason = %closing.1, "closing connection after a bad message");
                        return Err(Some(closing));
                    }
                }
            }
            Message::Text(_) => {
                self.metrics.reject(Reject::TextFrame);
                warn!("text frame refused");
                let why = "text frames are not supported; send binary y-websocket messages";
                return Err(Some((close::UNSUPPORTED_DATA, why.into())));
            }
            Message::Close(_) => return Err(None),
            // Pings are answered by tungstenite itself; pongs only count as signs of life.
            _ => {}
        }
        Ok(())
    }

    /// Closes a connection that never asked to sync.
    fn no_sync(&self) -> Result<(), Closing> {
        self.metrics.reject(Reject::FirstSyncTimeout);
        info!("no sync request within {:?}; closing", self.first_sync);
        Err(Some((close::TRY_AGAIN_LATER, format!("no sync request within {} s", self.first_sync.as_secs()))))
    }

    /// Closes a connection that did not answer the last ping, or whose message in progress is
    /// late; else sends the next ping.
    async fn ping(&mut self) -> Result<(), Closing> {
        let started = self.progress.lock().unwrap_or_else(|p| p.into_inner()).started;
        if started.is_some_and(|t| t.elapsed() >= self.message_timeout) {
            self.metrics.reject(Reject::MessageTimeout);
            info!("a message did not arrive whole within {:?}; closing", self.message_timeout);
            let why = format!("a message did not arrive whole within {} s", self.message_timeout.as_secs());
            return Err(Some((close::POLICY, why)));
        }
        // Any frame counts as an answer: a busy client's pong may queue behind its updates.
        if self.ping_sent.is_some_and(|sent| self.last_heard < sent) {
            self.metrics.reject(Reject::PingTimeout);
            info!("no answer to a ping within {:?}; closing", self.ping_interval);
            return Err(Some((close::GOING_AWAY, "ping timeout".into())));
        }
        match tokio::time::timeout(self.write_timeout, self.sink.send(Message::Ping(Bytes::new()))).await {
            Ok(Ok(())) => {
                self.ping_sent = Some(Instant::now());
                Ok(())
            }
            _ => Err(None),
        }
    }

    /// Closes the socket, leaves the room, and is counted out.
    async fn end(mut self) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.sink.close()).await;
        let _ = self.attached.tx.send(Cmd::Leave(self.id)).await;
        drop(self.attached);
        self.metrics.connections_open(self.role).fetch_sub(1, Relaxed);
        debug!("disconnected");
    }
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
