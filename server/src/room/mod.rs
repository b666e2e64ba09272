//! Rooms: one task per loaded document, which alone owns the document's `Doc` and awareness.
//! Connections talk to it over a channel ([`Cmd`]); it talks back through each connection's
//! bounded outbound queue ([`ConnSender`]). No lock guards a `Doc` and no yrs transaction ever
//! lives across an `.await`: the room applies, encodes and decides, and storage runs beside it.
//!
//! The path of one update: the connection decodes and guards the frame, the room applies it in
//! memory (which validates it), queues it for the store, and once the store reports it durable
//! (one fsync for every update that queued meanwhile: group commit), broadcasts it, encoded once,
//! to every connection including its sender.

mod task;

pub use task::{spawn, RoomConfig};

use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use yrs::{StateVector, Update};

pub type ConnId = u64;

/// How a connection may use its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Edit,
    View,
}

/// The room's handle on one connection: its outbound queue and a way to close it.
#[derive(Clone)]
pub struct ConnSender {
    pub id: ConnId,
    pub role: Role,
    pub frames: mpsc::Sender<Bytes>,
    pub close: Arc<watch::Sender<Option<(u16, String)>>>,
    /// Bytes queued and not yet written; the room adds, the connection subtracts.
    pub queued: Arc<std::sync::atomic::AtomicUsize>,
}

impl ConnSender {
    /// Queues a frame unless the connection is closed or already holds too much (a client that
    /// cannot keep up). Never waits.
    pub fn try_queue(&self, frame: Bytes) -> Result<(), QueueError> {
        use std::sync::atomic::Ordering::Relaxed;
        let len = frame.len();
        if self.queued.load(Relaxed) + len > crate::connection::OUTBOUND_QUEUE_BYTES {
            return Err(QueueError::Full);
        }
        match self.frames.try_send(frame) {
            Ok(()) => {
                self.queued.fetch_add(len, Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(QueueError::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(QueueError::Closed),
        }
    }
}

pub enum QueueError {
    /// Too many frames or bytes waiting: the client is too slow.
    Full,
    Closed,
}

impl ConnSender {
    /// Asks the connection task to send a close frame and end. Idempotent: the first reason wins.
    pub fn close(&self, code: u16, reason: &str) {
        self.close.send_if_modified(|slot| {
            if slot.is_none() {
                *slot = Some((code, reason.to_owned()));
                true
            } else {
                false
            }
        });
    }
}

/// A message a connection decoded and checked, for the room to act on.
pub enum Inbound {
    SyncStep1(StateVector),
    /// A SyncStep2 or an Update: both carry an update to apply.
    /// `types`: the shared types it creates (see `guard::decode_update_counted`).
    Update { update: Update, raw: Bytes, types: usize },
    Awareness(Bytes),
    QueryAwareness,
}

pub enum Cmd {
    Join(ConnSender),
    Leave(ConnId),
    Msg(ConnId, Inbound),
    /// The full state once everything applied so far is durable (HTTP export, `commonpad export`).
    Snapshot(oneshot::Sender<Vec<u8>>),
    /// Applies an update from the server itself (HTTP API, session template) and answers once it
    /// is durable. A dropped reply means it was not (storage failure).
    Apply { update: Update, raw: Bytes, types: usize, reply: oneshot::Sender<Result<(), ApplyRefused>> },
    /// Closes the connections of one role (all if `None`), e.g. after a link was rotated.
    /// With `unload`, the room then unloads as soon as nobody is attached (session deleted).
    Kick { role: Option<Role>, code: u16, reason: &'static str, unload: bool },
    /// Cluster mode: entries of the document's shared log, in log order, this node's own
    /// included (already applied: they only move the room's position).
    Remote(Vec<crate::store::RemoteEntry>),
    /// Cluster mode: an awareness update from another node's clients (`owner` names that node).
    RemoteAwareness { owner: u64, update: Bytes },
    /// Cluster mode: another node folded the shared log into a new snapshot.
    PeerCompacted,
}

/// What a room tells the other nodes of a cluster; nothing on a single node.
pub trait Peers: Send + Sync + 'static {
    /// Presence of this node's clients, for the other nodes' clients. Never waits.
    fn awareness(&self, doc: &str, update: &[u8]);
}

/// yrs refused an update the server was asked to apply.
#[derive(Debug)]
pub struct ApplyRefused;

/// The awareness client id under which the server publishes `{"server":{"editors":N,"viewers":M}}`
/// (viewers' own presence is never broadcast). Yjs client ids are random and non-zero in practice.
pub const SERVER_AWARENESS_ID: u64 = 0;

/// Close codes the room uses.
pub mod close {
    /// The server is going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// Malformed or hostile payload.
    pub const INVALID_DATA: u16 = 1007;
    /// Policy: a rotated link, a deleted session.
    pub const POLICY: u16 = 1008;
    /// Storage failure or a damaged document.
    pub const INTERNAL: u16 = 1011;
    /// Too slow to keep up, or limits reached: reconnect later and resync.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}
