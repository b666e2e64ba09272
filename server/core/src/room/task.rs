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

/// Where compaction runs, chosen once from the store.
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
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd),
                    None => break,
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
                    if self.try_unload(owner, now).await {
                        return;
                    }
                }
                _ = shutdown.changed() => {
                    for conn in self.conns.values() {
                        conn.close(close::GOING_AWAY, "server shutting down");
                    }
                    self.conns.clear();
                    self.finish().await;
                    self.release().await;
                    return;
                }
            }
        }
        self.finish().await;
        self.release().await;
    }

    /// The one unload path: a failed room unloads at once and writes nothing more (storage is the
    /// truth now); an idle one makes everything durable and compacts first. Returns whether the
    /// room unloaded.
    async fn try_unload(&mut self, owner: &dyn Owner, now: Instant) -> bool {
        if self.failed {
            if self.inflight.is_some() {
                return false;
            }
            if !owner.begin_unload(true) {
                return false;
            }
        } else {
            let grace = self.config.unload_grace;
            let idle = self.idle_since.is_some_and(|t| self.unload_asap || now.duration_since(t) >= grace);
            if !idle || self.inflight.is_some() || !self.pending.is_empty() || !owner.begin_unload(false) {
                return false;
            }
            self.finish().await;
        }
        // Released before the owner hears the room is gone: a new room may load right after.
        self.release().await;
        true
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
