//! Rooms: one task per loaded document, which alone owns the document's `Doc` and awareness.
//! Connections talk to it over a channel ([`Cmd`]); it talks back through each connection's
//! bounded outbound queue ([`ConnSender`]). No lock guards a `Doc` and no yrs transaction ever
//! lives across an `.await`: the room applies, encodes and decides, and storage runs beside it.
//!
//! The path of one update: the connection decodes and guards the frame, the room applies it in
//! memory (which validates it), queues it for the store, and once the store reports it durable
//! (one fsync for every update that queued meanwhile: group commit), broadcasts it, encoded once,
//! to every connection including its sender.
//!
//! The room's files, by concern: `task` (the state and the loop), `load` (start, load, a document
//! that cannot load), `commit` (apply -> store -> broadcast, compaction), `clients` (joins, leaves,
//! messages, presence, sending), `remote` (cluster inputs), `outbox` (one connection's queue).
//! The room never calls up into whoever loaded it: it asks through [`Owner`] and says it is gone by
//! dropping it, and it reaches other nodes only through [`Peers`].

mod clients;
mod commit;
mod load;
mod outbox;
mod remote;
mod task;

pub use load::{run, RoomConfig, RoomEnv};
pub use outbox::{Next, Outbox, OUTBOUND_QUEUE, OUTBOUND_QUEUE_BYTES};

use crate::rate::TokenBucket;
use crate::store::{Position, RemoteEntry};
use crate::Role;
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::oneshot;
use yrs::{StateVector, Update};

pub type ConnId = u64;

/// The room's handle on one connection: its outbound queue and a way to close it. Dropping it
/// (the room removed the connection, or the room ended) tells the connection that nothing more
/// comes: it writes what is queued and ends.
pub struct ConnSender {
    pub id: ConnId,
    pub role: Role,
    /// The generation of the link it was opened with (0 for documents that are not a session's).
    pub generation: u64,
    outbox: Arc<Outbox>,
    /// Sync answers (SyncStep2s) the connection may still ask for; see [`RoomConfig::sync_requests`].
    sync_budget: Option<TokenBucket>,
}

impl ConnSender {
    pub fn new(id: ConnId, role: Role, generation: u64, outbox: Arc<Outbox>) -> ConnSender {
        ConnSender { id, role, generation, outbox, sync_budget: None }
    }

    /// Takes one sync answer from the connection's budget (`burst` at first, then `per_minute`);
    /// false when it is spent.
    fn take_sync_answer(&mut self, burst: u32, per_minute: u32) -> bool {
        self.sync_budget.get_or_insert_with(|| TokenBucket::new(burst, f64::from(per_minute) / 60.0)).take()
    }

    /// Queues a frame unless the connection is closed or already holds too much (a client that
    /// cannot keep up). Never waits.
    pub fn try_queue(&self, frame: Bytes) -> Result<(), QueueError> {
        self.outbox.push(frame, OUTBOUND_QUEUE, OUTBOUND_QUEUE_BYTES)
    }

    /// Asks the connection task to send a close frame and end. Idempotent: the first reason wins.
    pub fn close(&self, code: u16, reason: &str) {
        self.outbox.close(code, reason);
    }
}

impl Drop for ConnSender {
    fn drop(&mut self) {
        self.outbox.release();
    }
}

pub enum QueueError {
    /// Too many frames or bytes waiting: the client is too slow.
    Full,
    Closed,
}

/// A message a connection decoded and checked, for the room to act on.
pub enum Inbound {
    SyncStep1(StateVector),
    /// A SyncStep2 or an Update: both carry an update to apply.
    /// `types`: the shared types it creates (see `guard::decode_update_counted`).
    Update {
        update: Update,
        raw: Bytes,
        types: usize,
    },
    Awareness(Bytes),
    QueryAwareness,
}

pub enum Cmd {
    Join(ConnSender),
    Leave(ConnId),
    /// Boxed, like `Apply`: the room's channel allocates its slots up front, so the largest
    /// variant sets what every slot costs.
    Msg(ConnId, Box<Inbound>),
    /// The full state once everything applied so far is durable (HTTP export, `commonpad export`).
    Snapshot(oneshot::Sender<Vec<u8>>),
    /// Applies an update from the server itself (HTTP API, session template) and answers once it
    /// is durable. A dropped reply means it was not (storage failure).
    Apply(Box<ServerApply>),
    /// Closes the connections of one role (all if `None`), e.g. after a link was rotated.
    /// With `unload`, the room then unloads as soon as nobody is attached (session deleted).
    Kick {
        role: Option<Role>,
        code: u16,
        reason: &'static str,
        unload: bool,
    },
    /// Closes the connections of `role` opened with a link older than `generation`: the check
    /// that needs no announcement (cluster mode re-reads every record periodically).
    KickStale {
        role: Role,
        generation: u64,
        code: u16,
        reason: &'static str,
    },
    /// Cluster mode: entries of the document's shared log, in log order, this node's own
    /// included (already applied: they only move the room's position).
    Remote(Vec<RemoteEntry>),
    /// Cluster mode: an awareness update from another node's clients (`owner` names that node).
    RemoteAwareness {
        owner: u64,
        update: Bytes,
    },
    /// Cluster mode: another node folded the shared log into a new snapshot.
    PeerCompacted,
}

/// An update the server itself applies (`Cmd::Apply`).
pub struct ServerApply {
    pub update: Update,
    pub raw: Bytes,
    pub types: usize,
    pub reply: oneshot::Sender<Result<(), ApplyRefused>>,
}

/// yrs refused an update the server was asked to apply.
#[derive(Debug)]
pub struct ApplyRefused;

/// What a room tells the other nodes of a cluster, and asks of them; nothing on a single node.
/// None of these waits: the room task never blocks on the network.
pub trait Peers: Send + Sync + 'static {
    /// Presence of this node's clients, for the other nodes' clients.
    fn awareness(&self, doc: &str, update: &[u8]);
    /// The room loaded `doc` up to `from` in the shared log: deliver every later entry to it as
    /// [`Cmd::Remote`], in log order.
    fn follow(&self, doc: &str, from: Position);
    /// The room unloaded: stop delivering.
    fn unfollow(&self, doc: &str);
    /// This node folded the shared log into a new snapshot (the others then need not).
    fn compacted(&self, doc: &str);
}

/// The room's handle on whoever loaded it (the hub). Dropping it says the room is gone, however
/// its task ended, a panic included, so the document can load again.
pub trait Owner: Send + Sync + 'static {
    /// The room would unload: true if it may (nobody is attached, or `force`), after which
    /// newcomers wait for the room to be gone and then load it afresh.
    fn begin_unload(&self, force: bool) -> bool;
}

/// The awareness client id under which the server publishes `{"server":{"editors":N,"viewers":M}}`
/// (viewers' own presence is never broadcast). Yjs client ids are random and non-zero in practice.
pub const SERVER_AWARENESS_ID: u64 = 0;
