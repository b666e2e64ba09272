//! The room's state and its loop: one `select!` over commands, finished storage operations, a tick
//! (awareness expiry, unload when idle) and shutdown. What each input does lives beside this file:
//! `commit.rs`, `clients.rs`, `remote.rs`.

use super::{Cmd, ConnId, ConnSender, Owner, Peers, RoomConfig};
use crate::close;
use crate::metrics::Metrics;
use crate::store::{Compacted, Position, Store, StoreError};
use crate::sync::awareness::{Awareness, AWARENESS_TIMEOUT};
use crate::sync::protocol;
use bytes::Bytes;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use yrs::{Doc, ReadTxn, StateVector, Transact};

/// Why a room's loop ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Exit {
    /// Idle past the grace period (or its session deleted), nothing left to write.
    Idle,
    /// A storage failure: reload from storage before serving again.
    Failed,
    /// The server is stopping.
    Shutdown,
    /// Nobody can send to it any more (its hub is gone).
    Orphaned,
}

/// How often the loop looks at idleness, failure and awareness expiry.
const TICK: Duration = Duration::from_millis(500);
/// How often expired awareness states are removed.
const EXPIRY_EVERY: Duration = Duration::from_secs(2);

/// Byte counts that decide when to compact, and the type count that bounds a document.
#[derive(Default)]
pub(super) struct Sizes {
    pub(super) snapshot: u64,
    pub(super) log: u64,
    /// Shared types in the document (see `RoomConfig::max_types`).
    pub(super) types: usize,
    /// Bytes applied but not yet confirmed stored (counted toward `RoomConfig::max_doc_bytes`).
    pub(super) unstored: u64,
}

/// Where compaction runs, chosen once from the store; the room asks it, never the store, what that
/// implies.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Compaction {
    /// A local store: a compaction replaces the log file, so it is one more operation in the
    /// commit pipeline (no append beside it), a failure is a storage failure, and unload waits for
    /// it in full (the next load must not race its files).
    InPipeline,
    /// A shared store: a compaction writes the database and trims what the snapshot holds while
    /// appends go on to the stream. A failure is retried later (the stream keeps everything), and
    /// unload waits for it only so long (its lease expires by itself).
    Beside,
}

/// A storage operation under way. One at a time per document, in order.
impl Compaction {
    /// What the snapshot holds: everything applied (local), or the shared log up to the room's
    /// position in it.
    pub(super) fn upto(self, position: Position) -> Option<Position> {
        (self == Compaction::Beside).then_some(position)
    }

    /// Whether the store's append reports the log's size (a shared log's is counted as the room
    /// reads its own entries back).
    pub(super) fn append_reports_log_size(self) -> bool {
        self == Compaction::InPipeline
    }

    /// Whether other nodes are told of a compaction (they need not compact the same log).
    pub(super) fn announced(self) -> bool {
        self == Compaction::Beside
    }

    /// Whether a failed compaction is a storage failure (a local log file may be half replaced)
    /// rather than something to retry (the shared log keeps everything).
    pub(super) fn failure_is_fatal(self) -> bool {
        self == Compaction::InPipeline
    }

    /// Whether a document whose session is being deleted is compacted on its way out: not on a
    /// shared store, where another node deletes it and a snapshot written here would revive it.
    pub(super) fn compacts_deleted(self) -> bool {
        self == Compaction::InPipeline
    }

    /// How long unload waits for a compaction: a local one in full (the next load must not race
    /// its files), a shared one so long (its lease expires by itself).
    pub(super) fn finish_wait(self, bound: Duration) -> Duration {
        match self {
            Compaction::InPipeline => Duration::MAX,
            Compaction::Beside => bound,
        }
    }
}

pub(super) enum Op {
    /// `upto`: the sequence number of the batch's last update.
    Append { upto: u64, updates: Vec<Bytes>, started: Instant },
    /// `upto`: the sequence number of the last update the snapshot holds.
    Compact { state_len: u64, upto: u64 },
}

/// What a finished storage operation reports.
pub(super) enum Done {
    /// The log's size after an append (a local store's; a shared store's is counted as the room
    /// reads its own entries back).
    Appended(u64),
    Compacted(Compacted),
}

pub(super) type Running = (Op, JoinHandle<Result<Done, StoreError>>);

/// A reply computed from the state at some sequence number, held until that state is durable.
pub(super) enum Parked {
    Frame(ConnId, Bytes),
    Snapshot(oneshot::Sender<Vec<u8>>, Vec<u8>),
    Ack(oneshot::Sender<Result<(), super::ApplyRefused>>),
}

pub(super) struct Room {
    pub(super) name: String,
    pub(super) doc: Doc,
    pub(super) awareness: Awareness,
    pub(super) conns: HashMap<ConnId, ConnSender>,
    pub(super) store: Arc<dyn Store>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) config: RoomConfig,
    pub(super) compaction: Compaction,
    /// Applied in memory, not yet handed to the store.
    pub(super) pending: Vec<Bytes>,
    /// The commit pipeline's operation under way (and a local compaction's).
    pub(super) inflight: Option<Running>,
    /// A compaction running beside the pipeline (`Compaction::Beside`).
    pub(super) compacting: Option<Running>,
    /// Sequence numbers of applied and of durable updates: whatever the room sends may contain
    /// update n only once `durable >= n`.
    pub(super) applied: u64,
    pub(super) durable: u64,
    pub(super) parked: VecDeque<(u64, Parked)>,
    pub(super) sizes: Sizes,
    /// Shared store: where the room is in the shared log (what a compaction's snapshot holds).
    pub(super) position: Position,
    /// Counts changes to the `Doc`, so that the full state is encoded once per version.
    pub(super) version: u64,
    /// The full state as a SyncStep2 frame, and the version it is of (see `full_state_frame`).
    pub(super) full_state: Option<(u64, Bytes)>,
    pub(super) idle_since: Option<Instant>,
    /// Viewers already told that their writes are ignored (once per connection).
    pub(super) told_read_only: HashSet<ConnId>,
    /// Unload without waiting for the grace period (the session was deleted).
    pub(super) unload_asap: bool,
    /// The (editors, viewers) last published in the server's awareness entry.
    pub(super) published_counts: (usize, usize),
    /// A storage failure: nothing more is acknowledged and the room unloads, so that the document
    /// is read back from storage before it is served again.
    pub(super) failed: bool,
    pub(super) peers: Option<Arc<dyn Peers>>,
    /// A compaction found the lease taken (another node compacts): not before this instant again.
    pub(super) compact_not_before: Option<Instant>,
}

impl Room {
    /// Serves until the room unloads (idle, deleted or failed) or the server shuts down.
    pub(super) async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Cmd>,
        owner: &dyn Owner,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_expiry = Instant::now();
        self.idle_since = Some(Instant::now());
        let exit = loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd),
                    None => break Exit::Orphaned,
                },
                res = wait(&mut self.inflight), if self.inflight.is_some() => {
                    if let Some((op, _)) = self.inflight.take() {
                        self.on_store_done(op, res);
                    }
                }
                res = wait(&mut self.compacting), if self.compacting.is_some() => {
                    if let Some((op, _)) = self.compacting.take() {
                        self.on_store_done(op, res);
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if now.duration_since(last_expiry) >= EXPIRY_EVERY {
                        last_expiry = now;
                        if let Some(removal) = self.awareness.expire(now, AWARENESS_TIMEOUT) {
                            self.broadcast(Bytes::from(protocol::encode_awareness(&removal)));
                        }
                    }
                    if let Some(exit) = self.may_unload(owner, now) {
                        break exit;
                    }
                }
                _ = shutdown.changed() => break Exit::Shutdown,
            }
        };
        self.unload(exit).await;
    }

    /// Whether the room may unload now, and why: failed (once no write is in flight), or idle past
    /// the grace period with nothing left to write. Either way the owner has marked it closing.
    fn may_unload(&mut self, owner: &dyn Owner, now: Instant) -> Option<Exit> {
        if self.failed {
            return (self.inflight.is_none() && owner.begin_unload(true)).then_some(Exit::Failed);
        }
        let grace = self.config.unload_grace;
        let idle = self.idle_since.is_some_and(|t| self.unload_asap || now.duration_since(t) >= grace);
        let quiet = self.inflight.is_none() && self.pending.is_empty();
        (idle && quiet && owner.begin_unload(false)).then_some(Exit::Idle)
    }

    /// The one unload path. A failed room writes nothing more (storage is the truth now); any
    /// other makes everything durable and compacts first. At shutdown, connections are told why.
    /// Released before the owner hears the room is gone (the owner is dropped after this), so
    /// that a new room may load right after.
    async fn unload(&mut self, exit: Exit) {
        if exit == Exit::Shutdown {
            for conn in self.conns.values() {
                conn.close(close::GOING_AWAY, "server shutting down");
            }
            self.conns.clear();
        }
        if exit != Exit::Failed {
            self.finish().await;
        }
        self.release().await;
    }

    /// Lets go of what the store and the other nodes keep for this document.
    pub(super) async fn release(&self) {
        self.store.release(&self.name).await;
        if let Some(peers) = &self.peers {
            peers.unfollow(&self.name);
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Join(conn) => self.join(conn),
            Cmd::Leave(id) => self.leave(id),
            Cmd::Msg(id, msg) => {
                if self.conns.contains_key(&id) {
                    self.on_message(id, *msg);
                }
            }
            // A failed room answers nothing: what it holds may not be what is stored.
            Cmd::Snapshot(_) | Cmd::Apply(_) if self.failed => {}
            Cmd::Snapshot(reply) => {
                let state = self.doc.transact().encode_state_as_update_v1(&StateVector::default());
                self.send_when_durable(Parked::Snapshot(reply, state));
            }
            Cmd::Apply(apply) => self.server_apply(*apply),
            Cmd::Kick { role, code, reason, unload } => self.kick(role, code, reason, unload),
            Cmd::KickStale { role, generation, code, reason } => self.kick_stale(role, generation, code, reason),
            Cmd::Remote(entries) => self.on_remote(entries),
            Cmd::RemoteAwareness { owner, update } => self.on_remote_awareness(owner, &update),
            Cmd::PeerCompacted => self.on_peer_compacted(),
        }
    }
}

/// Waits for a storage task; a panic or cancellation of the task counts as a storage failure.
async fn wait(slot: &mut Option<Running>) -> Result<Done, StoreError> {
    match slot {
        Some((_, handle)) => joined(handle.await),
        None => std::future::pending().await,
    }
}

pub(super) fn joined(res: Result<Result<Done, StoreError>, tokio::task::JoinError>) -> Result<Done, StoreError> {
    res.unwrap_or_else(|e| Err(StoreError::Task(e.to_string())))
}
