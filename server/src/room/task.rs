//! The room task itself: load, serve, group-commit, compact, unload.

use super::{close, Cmd, ConnId, ConnSender, Inbound, Peers, QueueError, Role, SERVER_AWARENESS_ID};
use crate::hub::HubRef;
use crate::metrics::{Metrics, Reject};
use crate::store::{Compacted, Position, RemoteEntry, Store, StoreError};
use crate::sync::awareness::{Awareness, AWARENESS_TIMEOUT};
use crate::sync::{guard, protocol};
use bytes::Bytes;
use std::collections::HashSet;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, info_span, warn, Instrument};
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

/// Settings a room needs, from the command line.
#[derive(Clone, Debug)]
pub struct RoomConfig {
    /// How long an empty room stays loaded before it compacts and unloads.
    pub unload_grace: Duration,
    /// Compact once the log is larger than the snapshot and at least this large.
    pub compact_min_log_bytes: u64,
    /// Awareness states one connection may hold (a tab holds one).
    pub max_awareness_per_conn: usize,
    /// Shared types (Y.Array, Y.Map, XML elements...) one document may create, deleted ones
    /// included. yrs deletes nested types recursively, so this bounds the stack a delete can
    /// need: with the binary's 64 MiB worker stacks, 50,000 nested levels are safe.
    pub max_types: usize,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            unload_grace: Duration::from_secs(5),
            compact_min_log_bytes: 1 << 20,
            max_awareness_per_conn: 8,
            max_types: 50_000,
        }
    }
}

/// Awareness states one other node's clients may hold in a room.
const REMOTE_AWARENESS_MAX: usize = 100_000;
/// How long an unload or a shutdown waits for a compaction.
const FINISH_COMPACTION_WAIT: Duration = Duration::from_secs(30);
/// How long to leave compaction to the node holding the lease before trying again.
const COMPACT_RETRY: Duration = Duration::from_secs(2);

/// Starts the task for one document. It loads the document before it reads its first command, so
/// connections that join meanwhile simply wait in the channel.
pub fn spawn(
    name: String,
    room_id: u64,
    rx: mpsc::Receiver<Cmd>,
    store: Arc<dyn Store>,
    hub: HubRef,
    config: RoomConfig,
    peers: Option<Arc<dyn Peers>>,
) {
    let span = info_span!("room", doc = %name);
    tokio::spawn(
        async move {
            let _entry = EntryGuard { hub: hub.clone(), name: name.clone(), room_id };
            let mut shutdown = hub.shutdown_signal();
            let metrics = hub.metrics();
            metrics.docs_loaded.fetch_add(1, Relaxed);
            let room = match load(&name, store.as_ref()).await {
                Ok((doc, sizes)) => {
                    Ok(Room::new(name.clone(), doc, sizes, store.clone(), metrics.clone(), config, peers))
                }
                Err(e @ StoreError::Unavailable(_)) => {
                    error!(error = %e, "document not served: shared storage is unavailable");
                    Err("shared storage is unavailable; retrying shortly")
                }
                Err(e) => {
                    error!(error = %e, "REFUSING TO SERVE DOCUMENT: it could not be loaded");
                    Err("document is damaged on the server; an operator must repair it")
                }
            };
            match room {
                Ok(mut room) => room.run(rx, &hub, room_id, &mut shutdown).await,
                Err(reason) => refuse_until_idle(rx, &hub, &name, room_id, &mut shutdown, store.as_ref(), reason).await,
            }
            metrics.docs_loaded.fetch_sub(1, Relaxed);
        }
        .instrument(span),
    );
}

/// Removes the room's hub entry when the task ends, even by a panic (see [`HubRef::forget`]).
struct EntryGuard {
    hub: HubRef,
    name: String,
    room_id: u64,
}

impl Drop for EntryGuard {
    fn drop(&mut self) {
        self.hub.forget(&self.name, self.room_id);
    }
}

#[derive(Default)]
struct Sizes {
    snapshot: u64,
    log: u64,
    /// The log held records (or a torn tail): compact before serving, see `Room::new`.
    compact_now: bool,
    /// Shared types in the stored document (see `RoomConfig::max_types`).
    types: usize,
    /// Shared store: where the loaded state is in the shared log.
    position: Position,
}

async fn load(name: &str, store: &dyn Store) -> Result<(Doc, Sizes), StoreError> {
    let started = Instant::now();
    let loaded = store.load(name).await?;
    let doc = loaded.to_doc(name)?;
    info!(
        snapshot_bytes = loaded.snapshot_bytes,
        log_records = loaded.updates.len(),
        truncated_tail_bytes = loaded.truncated_tail_bytes,
        ms = started.elapsed().as_millis() as u64,
        "document loaded"
    );
    // A shared store is its own truth (no page cache between us and it): nothing to re-make durable.
    let compact_now = !store.shared() && (!loaded.updates.is_empty() || loaded.truncated_tail_bytes > 0);
    // Stored bytes were checked when they arrived; count what they hold for the type cap.
    let types = loaded.snapshot.iter().chain(loaded.updates.iter()).map(|u| guard::check_update(u).unwrap_or(0)).sum();
    let position = loaded.position.unwrap_or_default();
    Ok((doc, Sizes { snapshot: loaded.snapshot_bytes, log: loaded.log_bytes, compact_now, types, position }))
}

/// A document that failed to load: every connection is closed with 1011 and a reason until none is
/// left, then the room unloads, so that a later connection tries again (after an operator's repair).
async fn refuse_until_idle(
    mut rx: mpsc::Receiver<Cmd>,
    hub: &HubRef,
    name: &str,
    room_id: u64,
    shutdown: &mut watch::Receiver<bool>,
    store: &dyn Store,
    reason: &str,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Cmd::Join(conn)) => conn.close(close::INTERNAL, reason),
                Some(_) => {}
                None => return,
            },
            _ = tick.tick() => {
                if let Some(done) = hub.begin_unload(name, room_id) {
                    store.release(name).await;
                    hub.end_unload(name, done);
                    return;
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// A storage operation under way. One at a time per document, in order.
enum Op {
    /// `upto`: the sequence number of the batch's last update.
    Append { upto: u64, updates: Vec<Bytes>, started: Instant },
    /// `upto`: the sequence number of the last update the snapshot holds.
    Compact { state_len: u64, upto: u64 },
}

/// What a finished storage operation reports.
enum Done {
    /// The log's size after an append (a local store's; a shared store's is not known here).
    Appended(u64),
    Compacted(Compacted),
}

struct Room {
    name: String,
    doc: Doc,
    awareness: Awareness,
    conns: HashMap<ConnId, ConnSender>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    config: RoomConfig,
    /// Applied in memory, not yet handed to the store.
    pending: Vec<Bytes>,
    inflight: Option<(Op, JoinHandle<Result<Done, StoreError>>)>,
    /// Shared store only: a compaction runs beside the appends (it writes PostgreSQL and trims
    /// what a snapshot holds, appends go to the stream), so a slow database or a lease that takes
    /// long never holds up the document's editors.
    compacting: Option<(Op, JoinHandle<Result<Done, StoreError>>)>,
    /// Sequence numbers of applied and of durable updates: whatever the room sends may contain
    /// update n only once `durable >= n`.
    applied: u64,
    durable: u64,
    /// Replies computed from the state at sequence `seq`, held until that state is durable.
    parked: VecDeque<(u64, Parked)>,
    sizes: Sizes,
    idle_since: Option<Instant>,
    /// Viewers already told that their writes are ignored (once per connection).
    told_read_only: HashSet<ConnId>,
    /// Unload without waiting for the grace period (the session was deleted).
    unload_asap: bool,
    /// The (editors, viewers) last published in the server's awareness entry.
    published_counts: (usize, usize),
    /// A storage failure: nothing more is acknowledged and the room unloads, so that the document is
    /// read back from disk before it is served again.
    failed: bool,
    /// Cluster mode: the other nodes, and whether the store is shared (then `sizes.log` counts
    /// the shared log's bytes as the room reads them back, and `sizes.position` is where it is).
    peers: Option<Arc<dyn Peers>>,
    shared: bool,
    /// A compaction found the lease taken (another node compacts): not before this instant again.
    compact_not_before: Option<Instant>,
}

enum Parked {
    Frame(ConnId, Bytes),
    Snapshot(oneshot::Sender<Vec<u8>>, Vec<u8>),
    Ack(oneshot::Sender<Result<(), super::ApplyRefused>>),
}

impl Room {
    fn new(
        name: String,
        doc: Doc,
        sizes: Sizes,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        config: RoomConfig,
        peers: Option<Arc<dyn Peers>>,
    ) -> Self {
        let shared = store.shared();
        let mut room = Room {
            name,
            doc,
            awareness: Awareness::default(),
            conns: HashMap::new(),
            store,
            metrics,
            config,
            pending: Vec::new(),
            inflight: None,
            compacting: None,
            applied: 0,
            durable: 0,
            parked: VecDeque::new(),
            sizes,
            idle_since: None,
            told_read_only: HashSet::new(),
            unload_asap: false,
            published_counts: (0, 0),
            failed: false,
            peers,
            shared,
            compact_not_before: None,
        };
        // A log with records at load time means the last run did not unload cleanly (a crash, or a
        // failed write). Write what we just read into a fresh snapshot first: after a failed fsync
        // the page cache may hold data the disk does not, and this makes everything we are about
        // to serve durable for real. It also keeps the next load fast.
        if room.sizes.compact_now {
            // What we loaded counts as one update that is not durable until this snapshot is:
            // nothing from it is sent to anyone before then.
            room.applied = 1;
            room.sizes.compact_now = false;
            room.start_compaction();
        }
        room
    }

    async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Cmd>,
        hub: &HubRef,
        room_id: u64,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_expiry = Instant::now();
        self.idle_since = Some(Instant::now());
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd),
                    None => break,
                },
                res = async { (&mut self.inflight.as_mut().expect("guarded by if").1).await }, if self.inflight.is_some() => {
                    if let Some((op, _)) = self.inflight.take() {
                        self.on_store_done(op, joined(res));
                    }
                }
                res = async { (&mut self.compacting.as_mut().expect("guarded by if").1).await }, if self.compacting.is_some() => {
                    if let Some((op, _)) = self.compacting.take() {
                        self.on_store_done(op, joined(res));
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if now.duration_since(last_expiry) >= Duration::from_secs(2) {
                        last_expiry = now;
                        if let Some(removal) = self.awareness.expire(now, AWARENESS_TIMEOUT) {
                            self.broadcast(Bytes::from(protocol::encode_awareness(&removal)));
                        }
                    }
                    if self.failed && self.inflight.is_none() {
                        // Unload at once, without compaction: the disk is the truth now.
                        if let Some(done) = hub.begin_unload_now(&self.name, room_id) {
                            self.store.release(&self.name).await;
                            hub.end_unload(&self.name, done);
                            return;
                        }
                        for conn in self.conns.values() {
                            conn.close(close::INTERNAL, "storage failure on the server; reconnecting will reload the document");
                        }
                        continue;
                    }
                    let idle = self.idle_since.is_some_and(|t| self.unload_asap || now.duration_since(t) >= self.config.unload_grace);
                    if idle && self.inflight.is_none() && self.pending.is_empty() {
                        if let Some(done) = hub.begin_unload(&self.name, room_id) {
                            self.finish().await;
                            // Release before the entry goes: a new room may load right after.
                            self.store.release(&self.name).await;
                            hub.end_unload(&self.name, done);
                            return;
                        }
                    }
                }
                _ = shutdown.changed() => {
                    for conn in self.conns.values() {
                        conn.close(close::GOING_AWAY, "server shutting down");
                    }
                    self.conns.clear();
                    self.finish().await;
                    self.store.release(&self.name).await;
                    return;
                }
            }
        }
        self.finish().await;
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
            // A failed room answers nothing: what it holds may not be what is on disk.
            Cmd::Snapshot(_) | Cmd::Apply(_) if self.failed => {}
            Cmd::Snapshot(reply) => {
                let state = self.doc.transact().encode_state_as_update_v1(&StateVector::default());
                self.send_when_durable(Parked::Snapshot(reply, state));
            }
            Cmd::Apply(apply) => {
                let super::ServerApply { update, raw, types, reply } = *apply;
                if self.apply_update(update, raw, types).is_ok() {
                    self.send_when_durable(Parked::Ack(reply));
                } else if !self.failed {
                    let _ = reply.send(Err(super::ApplyRefused));
                }
            }
            Cmd::Kick { role, code, reason, unload } => {
                self.unload_asap |= unload;
                let ids: Vec<ConnId> =
                    self.conns.values().filter(|c| role.is_none_or(|r| c.role == r)).map(|c| c.id).collect();
                for id in ids {
                    self.drop_conn(id, code, reason);
                }
            }
            Cmd::Remote(entries) => self.on_remote(entries),
            Cmd::RemoteAwareness { owner, update } => {
                // Another node checked it against its own client; the cap here only bounds what
                // one node's clients may hold in this room.
                match self.awareness.apply(&update, owner, REMOTE_AWARENESS_MAX, Instant::now()) {
                    Ok(applied) => self.broadcast(Bytes::from(protocol::encode_awareness(&applied.update))),
                    Err(e) => debug!(error = %e, "awareness from another node ignored"),
                }
            }
            Cmd::PeerCompacted => {
                self.sizes.log = 0;
                self.compact_not_before = None;
            }
        }
    }

    /// Entries of the shared log, in order: other nodes' updates are applied and broadcast (they
    /// are durable already); every entry moves the room's position, which a compaction records
    /// as "the snapshot holds everything up to here".
    fn on_remote(&mut self, entries: Vec<RemoteEntry>) {
        if self.failed {
            return;
        }
        for entry in entries {
            if entry.position <= self.sizes.position {
                continue; // read while loading already
            }
            self.sizes.position = entry.position;
            self.sizes.log += entry.updates.iter().map(|u| u.len() as u64).sum::<u64>();
            if entry.own {
                continue; // applied and broadcast when it was appended
            }
            for raw in entry.updates {
                let checked = guard::decode_update_counted(&raw);
                let applied = match checked {
                    Ok((update, types)) => {
                        // Counted, never refused: it is durable, and refusing it here would leave
                        // this node's clients diverged from everyone else's.
                        self.sizes.types += types;
                        self.apply_to_doc(update)
                            .map_err(|_| "yrs panicked".to_owned())
                            .and_then(|r| r.map_err(|e| e.to_string()))
                    }
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = applied {
                    error!(error = %e, at = %entry.position, "an update from the shared log could not be applied; reloading the document");
                    self.fail();
                    return;
                }
                self.metrics.updates_remote.fetch_add(1, Relaxed);
                self.broadcast(Bytes::from(protocol::encode_update(&raw)));
            }
        }
        self.maybe_compact();
    }

    /// Compacts once the log outgrows the snapshot (and the minimum), unless another node was
    /// found compacting a moment ago.
    fn maybe_compact(&mut self) {
        if self.sizes.log <= self.sizes.snapshot.max(self.config.compact_min_log_bytes) {
            return;
        }
        if self.compact_not_before.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.start_compaction();
    }

    fn join(&mut self, conn: ConnSender) {
        if self.failed {
            conn.close(close::INTERNAL, "storage failure on the server; reconnect to reload the document");
            return;
        }
        // The reference server's greeting: our state vector, then (in its own frame) who is here.
        let sv = self.doc.transact().state_vector().encode_v1();
        let mut frames = vec![Bytes::from(protocol::encode_sync_step1(&sv))];
        if let Some(all) = self.awareness.encode_all() {
            frames.push(Bytes::from(protocol::encode_awareness(&all)));
        }
        debug!(conn = conn.id, "joined");
        self.idle_since = None;
        let id = conn.id;
        self.conns.insert(id, conn);
        for f in frames {
            self.send_to(id, f);
        }
        self.publish_counts();
    }

    /// Publishes how many editors and viewers are here, under the server's awareness id, when it
    /// changed and once any viewer has come. Viewers are counted, never shown.
    fn publish_counts(&mut self) {
        let editors = self.conns.values().filter(|c| c.role == Role::Edit).count();
        let counts = (editors, self.conns.len() - editors);
        // Until a viewer shows up there is nothing editors cannot see for themselves, and plain Yjs
        // documents stay free of a server entry.
        if counts == self.published_counts || (self.published_counts == (0, 0) && counts.1 == 0) {
            return;
        }
        self.published_counts = counts;
        let json = format!(r#"{{"server":{{"editors":{},"viewers":{}}}}}"#, counts.0, counts.1);
        let update = self.awareness.set_server_state(SERVER_AWARENESS_ID, &json, Instant::now());
        self.broadcast(Bytes::from(protocol::encode_awareness(&update)));
    }

    fn leave(&mut self, id: ConnId) {
        if self.conns.remove(&id).is_some() {
            debug!(conn = id, "left");
        }
        self.told_read_only.remove(&id);
        self.parked.retain(|(_, p)| !matches!(p, Parked::Frame(c, _) if *c == id));
        if let Some(removal) = self.awareness.remove_connection(id) {
            if let Some(peers) = &self.peers {
                peers.awareness(&self.name, &removal);
            }
            self.broadcast(Bytes::from(protocol::encode_awareness(&removal)));
        }
        if self.conns.is_empty() {
            self.idle_since = Some(Instant::now());
        }
        self.publish_counts();
    }

    fn on_message(&mut self, id: ConnId, msg: Inbound) {
        match msg {
            Inbound::SyncStep1(sv) => {
                let diff = self.doc.transact().encode_state_as_update_v1(&sv);
                self.send_when_durable(Parked::Frame(id, Bytes::from(protocol::encode_sync_step2(&diff))));
            }
            Inbound::Update { update, raw, types } => self.apply(id, update, raw, types),
            Inbound::Awareness(bytes) if self.is_viewer(id) => {
                // A viewer's presence stays private: echoed to itself only (its provider counts
                // the echo as a sign of life), never applied or shown to others.
                self.send_to(id, Bytes::from(protocol::encode_awareness(&bytes)));
            }
            Inbound::Awareness(bytes) => {
                let max = self.config.max_awareness_per_conn;
                match self.awareness.apply(&bytes, id, max, Instant::now()) {
                    // Broadcast even when nothing changed: clients count our echo of their own
                    // renewals as a sign of life (y-websocket closes after 30 s of silence).
                    Ok(applied) => {
                        if let Some(peers) = &self.peers {
                            peers.awareness(&self.name, &applied.update);
                        }
                        self.broadcast(Bytes::from(protocol::encode_awareness(&applied.update)))
                    }
                    Err(e) => {
                        self.metrics.reject(Reject::Awareness);
                        warn!(conn = id, error = %e, "awareness update refused");
                        self.drop_conn(id, close::INVALID_DATA, &format!("awareness: {e}"));
                    }
                }
            }
            Inbound::QueryAwareness => {
                let all = self.awareness.encode_all().unwrap_or_else(|| vec![0]);
                self.send_to(id, Bytes::from(protocol::encode_awareness(&all)));
            }
        }
    }

    fn is_viewer(&self, id: ConnId) -> bool {
        self.conns.get(&id).is_some_and(|c| c.role == Role::View)
    }

    fn apply(&mut self, id: ConnId, update: Update, raw: Bytes, types: usize) {
        if self.is_viewer(id) {
            // Never applied, never forwarded, whatever a modified client sends. Told once.
            if self.told_read_only.insert(id) {
                self.send_to(id, Bytes::from(protocol::encode_permission_denied("read-only")));
            }
            return;
        }
        if self.apply_update(update, raw, types).is_err() {
            self.drop_conn(id, close::INVALID_DATA, "update could not be applied");
        }
    }

    /// Applies an update in memory and queues it for the store. An empty update is a no-op that
    /// counts as applied (nothing to make durable).
    fn apply_update(&mut self, update: Update, raw: Bytes, types: usize) -> Result<(), ()> {
        if self.failed {
            return Err(());
        }
        if self.sizes.types.saturating_add(types) > self.config.max_types {
            self.metrics.reject(Reject::Malformed);
            warn!(types, stored = self.sizes.types, "update refused: the document would exceed its shared-type limit");
            return Err(());
        }
        if update.is_empty() {
            return Ok(()); // an empty SyncStep2 (a client with nothing new) changes nothing
        }
        // yrs should not panic on an update the guard let through, but if it ever does, the Doc
        // may be half-changed: refuse the update and reload the document from disk (where the
        // update never went) rather than take the process down or serve a damaged state.
        match self.apply_to_doc(update) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.metrics.reject(Reject::Malformed);
                warn!(error = %e, "update refused by yrs");
                return Err(());
            }
            Err(_) => {
                self.metrics.reject(Reject::Malformed);
                error!("yrs panicked applying an update; reloading the document from disk");
                self.fail();
                return Err(());
            }
        }
        self.applied += 1;
        self.sizes.types += types;
        self.pending.push(raw);
        self.start_next_op();
        Ok(())
    }

    /// Applies an update to the `Doc`, catching a yrs panic (the outer `Err`: the `Doc` may be
    /// half-changed and must be reloaded) apart from a refusal (the inner `Err`).
    fn apply_to_doc(&mut self, update: Update) -> std::thread::Result<Result<(), yrs::error::UpdateError>> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.doc.transact_mut().apply_update(update)))
    }

    /// Starts the next storage operation if none is under way.
    fn start_next_op(&mut self) {
        if self.inflight.is_some() || self.failed || self.pending.is_empty() {
            return;
        }
        let updates = std::mem::take(&mut self.pending);
        let upto = self.applied;
        let store = self.store.clone();
        let name = self.name.clone();
        let to_store = updates.clone();
        let handle = tokio::spawn(async move { store.append(&name, to_store).await.map(Done::Appended) });
        self.inflight = Some((Op::Append { upto, updates, started: Instant::now() }, handle));
    }

    fn start_compaction(&mut self) {
        let busy = if self.shared { self.compacting.is_some() } else { self.inflight.is_some() };
        if busy || self.failed {
            return;
        }
        let state = self.doc.transact().encode_state_as_update_v1(&StateVector::default());
        let state_len = state.len() as u64;
        let store = self.store.clone();
        let name = self.name.clone();
        let upto = self.shared.then_some(self.sizes.position);
        let handle = tokio::spawn(async move { store.replace_snapshot(&name, state, upto).await.map(Done::Compacted) });
        let op = Some((Op::Compact { state_len, upto: self.applied }, handle));
        if self.shared {
            self.compacting = op;
        } else {
            self.inflight = op;
        }
    }

    fn on_store_done(&mut self, op: Op, result: Result<Done, StoreError>) {
        match (op, result) {
            (Op::Append { upto, updates, started }, Ok(done)) => {
                self.metrics.observe_fsync(started.elapsed());
                self.metrics.updates_durable.fetch_add(updates.len() as u64, Relaxed);
                self.durable = self.durable.max(upto);
                if let (false, Done::Appended(log_len)) = (self.shared, done) {
                    self.sizes.log = log_len;
                }
                for raw in updates {
                    self.broadcast(Bytes::from(protocol::encode_update(&raw)));
                }
                self.release_parked();
                self.maybe_compact();
            }
            (Op::Compact { .. }, Ok(Done::Compacted(Compacted::Skipped)) | Ok(Done::Appended(_))) => {
                // Another node holds the lease (or stored a newer snapshot): it compacts; look
                // again in a while. Nothing became durable through us.
                self.compact_not_before = Some(Instant::now() + COMPACT_RETRY);
            }
            (Op::Compact { state_len, upto }, Ok(Done::Compacted(Compacted::Done))) => {
                self.metrics.compactions.fetch_add(1, Relaxed);
                self.durable = self.durable.max(upto);
                self.release_parked();
                debug!(snapshot_bytes = state_len, log_bytes = self.sizes.log, "compacted");
                self.sizes.snapshot = state_len;
                self.sizes.log = 0;
            }
            (Op::Compact { .. }, Err(e)) if self.shared => {
                // Nothing acknowledged depends on a compaction: the stream still holds it all.
                warn!(error = %e, "compaction failed; the stream keeps everything, trying again later");
                self.compact_not_before = Some(Instant::now() + COMPACT_RETRY);
            }
            (_, Err(e)) => {
                self.metrics.storage_failures.fetch_add(1, Relaxed);
                error!(error = %e, "STORAGE FAILURE: nothing in this batch was acknowledged; closing connections and reloading from disk");
                self.fail();
                return;
            }
        }
        self.start_next_op();
    }

    /// Storage failed (or yrs misbehaved): acknowledge nothing more, tell every writer, and let the
    /// run loop unload the room so the next connection reloads the document from disk.
    fn fail(&mut self) {
        self.failed = true;
        self.pending.clear();
        self.parked.clear();
        for conn in self.conns.values() {
            conn.close(close::INTERNAL, "storage failure on the server; reconnect to reload the document");
        }
        self.conns.clear();
        self.idle_since = Some(Instant::now());
    }

    fn send_when_durable(&mut self, reply: Parked) {
        if self.durable >= self.applied {
            self.deliver(reply);
        } else {
            self.parked.push_back((self.applied, reply));
        }
    }

    fn release_parked(&mut self) {
        while self.parked.front().is_some_and(|(seq, _)| *seq <= self.durable) {
            if let Some((_, reply)) = self.parked.pop_front() {
                self.deliver(reply);
            }
        }
    }

    fn deliver(&mut self, reply: Parked) {
        match reply {
            Parked::Frame(id, frame) => self.send_to(id, frame),
            Parked::Snapshot(tx, state) => {
                let _ = tx.send(state);
            }
            Parked::Ack(tx) => {
                let _ = tx.send(Ok(()));
            }
        }
    }

    /// Queues one frame for one connection; a full queue marks a slow client (see `broadcast`).
    fn send_to(&mut self, id: ConnId, frame: Bytes) {
        let Some(conn) = self.conns.get(&id) else { return };
        let len = frame.len() as u64;
        match conn.try_queue(frame) {
            Ok(()) => {
                self.metrics.frames_out.fetch_add(1, Relaxed);
                self.metrics.bytes_out.fetch_add(len, Relaxed);
            }
            Err(e) => self.on_send_failed(id, matches!(e, QueueError::Full)),
        }
    }

    /// Queues a frame, encoded once, for every connection. A connection whose queue is full is a
    /// client that cannot keep up: it is closed with 1013 rather than left silently diverged (its
    /// provider reconnects and resyncs from its own state vector), and nobody else waits for it.
    fn broadcast(&mut self, frame: Bytes) {
        let mut failed = Vec::new();
        for (id, conn) in &self.conns {
            match conn.try_queue(frame.clone()) {
                Ok(()) => {
                    self.metrics.frames_out.fetch_add(1, Relaxed);
                    self.metrics.bytes_out.fetch_add(frame.len() as u64, Relaxed);
                }
                Err(QueueError::Full) => failed.push((*id, true)),
                Err(QueueError::Closed) => failed.push((*id, false)),
            }
        }
        for (id, slow) in failed {
            self.on_send_failed(id, slow);
        }
    }

    fn on_send_failed(&mut self, id: ConnId, slow: bool) {
        if slow {
            self.metrics.reject(Reject::SlowClient);
            warn!(conn = id, "client too slow for its outbound queue; closing it so it resyncs");
            self.drop_conn(id, close::TRY_AGAIN_LATER, "too slow to keep up; reconnect to resync");
        } else {
            self.leave(id);
        }
    }

    fn drop_conn(&mut self, id: ConnId, code: u16, reason: &str) {
        if let Some(conn) = self.conns.get(&id) {
            conn.close(code, reason);
        }
        self.leave(id);
    }

    /// Waits up to `wait` for a compaction; one still running then is abandoned (the log keeps
    /// everything, and a shared store's lease expires by itself).
    async fn wait_compaction(&mut self, (op, mut handle): (Op, JoinHandle<Result<Done, StoreError>>), wait: Duration) {
        match tokio::time::timeout(wait, &mut handle).await {
            Ok(res) => self.on_store_done(op, joined(res)),
            Err(_) => {
                handle.abort();
                warn!("compaction did not finish in time at unload; abandoned (the log keeps everything)");
            }
        }
    }

    /// Makes everything durable and compacts: on unload and on shutdown.
    async fn finish(&mut self) {
        for _ in 0..3 {
            if let Some((op, handle)) = self.inflight.take() {
                let res = joined(handle.await);
                self.on_store_done(op, res);
            }
            if self.inflight.is_none() && self.pending.is_empty() {
                break;
            }
            self.start_next_op();
        }
        if let Some(running) = self.compacting.take() {
            // A compaction that hangs (a lease holder stuck on the database) must not hold the
            // unload or the shutdown forever; its lease expires by itself.
            self.wait_compaction(running, FINISH_COMPACTION_WAIT).await;
        }
        if self.failed {
            return;
        }
        if self.shared && self.unload_asap {
            // The session is being deleted: another node deletes the shared stream and snapshot
            // now, and a snapshot written here would bring the document back.
            info!("document unloaded (deleted)");
            return;
        }
        if self.sizes.log > 0 || self.sizes.compact_now {
            self.sizes.compact_now = false;
            self.start_compaction();
            let running = if self.shared { self.compacting.take() } else { self.inflight.take() };
            // A local compaction is always waited for: the next load must not race its files.
            let wait = if self.shared { FINISH_COMPACTION_WAIT } else { Duration::MAX };
            if let Some(running) = running {
                self.wait_compaction(running, wait).await;
            }
        }
        info!("document unloaded");
    }
}

/// A storage task's result, a panic or cancellation of the task counting as a storage failure.
fn joined(res: Result<Result<Done, StoreError>, tokio::task::JoinError>) -> Result<Done, StoreError> {
    res.unwrap_or_else(|e| Err(StoreError::Task(e.to_string())))
}
