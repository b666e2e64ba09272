//! The hub: which documents are loaded, and the way in for a connection.
//!
//! A connection calls [`Hub::attach`] and gets the room's command channel, loading the room if it is
//! not loaded. The hub counts attached connections per room, so that a room can only unload when
//! nobody is attached, and marks a room as closing while it compacts, so that a connection arriving
//! then waits and starts a fresh load afterwards instead of racing the compaction on disk.

use crate::metrics::{Metrics, Reject};
use crate::room::{self, ApplyRefused, Cmd, Peers, RoomConfig, ServerApply};
use crate::store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use tokio::sync::{mpsc, watch};

/// Commands a room may have queued before it applies back-pressure to its connections. Large
/// enough to absorb a burst from many clients, small enough that a flood waits instead of growing
/// memory.
const ROOM_QUEUE: usize = 1024;

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_conns_per_doc: usize,
    pub max_conns_total: usize,
}

#[derive(Debug, Error)]
pub enum AttachError {
    #[error("this document has reached its connection limit")]
    DocFull,
    #[error("the server has reached its connection limit")]
    ServerFull,
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// Why the server could not act on a document for an HTTP request.
#[derive(Debug, Error)]
pub enum HubError {
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error("the document is unavailable (damaged, or a storage failure); try again later")]
    Unavailable,
    #[error("the update could not be applied to this document")]
    Rejected,
}

enum Entry {
    Open {
        tx: mpsc::Sender<Cmd>,
        attached: usize,
        room_id: u64,
    },
    /// Compacting before unload; `done` flips to true once the entry is gone.
    Closing {
        done: watch::Receiver<bool>,
        room_id: u64,
    },
}

pub(crate) struct HubInner {
    // std Mutex: held for a map lookup or insert, never across an await, so an async mutex would
    // only add cost.
    rooms: Mutex<HashMap<String, Entry>>,
    store: Arc<dyn Store>,
    config: RoomConfig,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    next_room: AtomicU64,
    conns: AtomicUsize,
    /// The other nodes, in cluster mode.
    peers: Option<Arc<dyn Peers>>,
}

/// What rooms see of the hub.
#[derive(Clone)]
pub struct HubRef(Arc<HubInner>);

#[derive(Clone)]
pub struct Hub(Arc<HubInner>);

/// A connection's hold on a room; dropping it detaches.
pub struct Attached {
    pub tx: mpsc::Sender<Cmd>,
    hub: Arc<HubInner>,
    name: String,
    room_id: u64,
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.hub.conns.fetch_sub(1, Relaxed);
        let mut rooms = self.hub.lock();
        if let Some(Entry::Open { attached, room_id, .. }) = rooms.get_mut(&self.name) {
            if *room_id == self.room_id {
                *attached = attached.saturating_sub(1);
            }
        }
    }
}

impl HubInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Every critical section is a single map operation, so a poisoned map is still consistent.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Hub {
    pub fn new(
        store: Arc<dyn Store>,
        config: RoomConfig,
        limits: Limits,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
        peers: Option<Arc<dyn Peers>>,
    ) -> Self {
        Hub(Arc::new(HubInner {
            rooms: Mutex::new(HashMap::new()),
            store,
            config,
            limits,
            metrics,
            shutdown,
            next_room: AtomicU64::new(1),
            conns: AtomicUsize::new(0),
            peers,
        }))
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    pub fn loaded_rooms(&self) -> usize {
        self.0.lock().len()
    }

    /// Attaches to a document's room, loading it if needed.
    pub async fn attach(&self, name: &str) -> Result<Attached, AttachError> {
        let inner = &self.0;
        if inner.conns.fetch_add(1, Relaxed) >= inner.limits.max_conns_total {
            inner.conns.fetch_sub(1, Relaxed);
            inner.metrics.reject(Reject::TotalLimit);
            return Err(AttachError::ServerFull);
        }
        // From here on a failure must give the slot back; `Attached::drop` does it on success.
        let release = |e| {
            inner.conns.fetch_sub(1, Relaxed);
            e
        };
        for _ in 0..100 {
            if *inner.shutdown.borrow() {
                return Err(release(AttachError::ShuttingDown));
            }
            let mut wait = {
                let mut rooms = inner.lock();
                match rooms.get_mut(name) {
                    Some(Entry::Open { tx, attached, room_id }) => {
                        if *attached >= inner.limits.max_conns_per_doc {
                            inner.metrics.reject(Reject::DocLimit);
                            return Err(release(AttachError::DocFull));
                        }
                        *attached += 1;
                        return Ok(Attached {
                            tx: tx.clone(),
                            hub: inner.clone(),
                            name: name.to_owned(),
                            room_id: *room_id,
                        });
                    }
                    Some(Entry::Closing { done, .. }) => done.clone(),
                    None => {
                        let (tx, rx) = mpsc::channel(ROOM_QUEUE);
                        let room_id = inner.next_room.fetch_add(1, Relaxed);
                        rooms.insert(name.to_owned(), Entry::Open { tx: tx.clone(), attached: 1, room_id });
                        room::spawn(
                            name.to_owned(),
                            room_id,
                            rx,
                            inner.store.clone(),
                            HubRef(inner.clone()),
                            inner.config.clone(),
                            inner.peers.clone(),
                        );
                        return Ok(Attached { tx, hub: inner.clone(), name: name.to_owned(), room_id });
                    }
                }
            };
            // The room is compacting before it unloads: wait for it, then load afresh.
            let _ = wait.wait_for(|done| *done).await;
        }
        Err(release(AttachError::ShuttingDown))
    }

    pub fn is_loaded(&self, name: &str) -> bool {
        self.0.lock().contains_key(name)
    }

    /// Sends a command to a room only if it is loaded (no load for nothing). Returns whether it was.
    pub async fn send_if_loaded(&self, name: &str, cmd: Cmd) -> bool {
        let tx = match self.0.lock().get(name) {
            Some(Entry::Open { tx, .. }) => tx.clone(),
            _ => return false,
        };
        tx.send(cmd).await.is_ok()
    }

    /// Like [`Hub::send_if_loaded`] but never waits: for what is stale by the time a full room
    /// could take it (presence from other nodes).
    pub fn try_send_if_loaded(&self, name: &str, cmd: Cmd) -> bool {
        match self.0.lock().get(name) {
            Some(Entry::Open { tx, .. }) => tx.try_send(cmd).is_ok(),
            _ => false,
        }
    }

    /// Applies an update as the server (HTTP API, templates); returns once it is durable.
    pub async fn apply(
        &self,
        name: &str,
        update: yrs::Update,
        raw: bytes::Bytes,
        types: usize,
    ) -> Result<(), HubError> {
        let attached = self.attach(name).await?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        attached
            .tx
            .send(Cmd::Apply(Box::new(ServerApply { update, raw, types, reply })))
            .await
            .map_err(|_| HubError::Unavailable)?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(ApplyRefused)) => Err(HubError::Rejected),
            Err(_) => Err(HubError::Unavailable),
        }
    }

    /// The document's full state, once everything applied so far is durable.
    pub async fn snapshot(&self, name: &str) -> Result<Vec<u8>, HubError> {
        let attached = self.attach(name).await?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        attached.tx.send(Cmd::Snapshot(reply)).await.map_err(|_| HubError::Unavailable)?;
        rx.await.map_err(|_| HubError::Unavailable)
    }

    /// Waits until every room has flushed, compacted and ended (after the shutdown signal).
    pub async fn wait_rooms_closed(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.0.metrics.docs_loaded.load(Relaxed) == 0 {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        false
    }
}

impl HubRef {
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.0.shutdown.clone()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.0.metrics.clone()
    }

    /// Called by an idle room: if nobody is attached, marks it closing and returns the sender that
    /// [`HubRef::end_unload`] flips once the room is done.
    pub fn begin_unload(&self, name: &str, id: u64) -> Option<watch::Sender<bool>> {
        let mut rooms = self.0.lock();
        match rooms.get(name) {
            Some(Entry::Open { attached: 0, room_id, .. }) if *room_id == id => {
                let (tx, rx) = watch::channel(false);
                rooms.insert(name.to_owned(), Entry::Closing { done: rx, room_id: id });
                Some(tx)
            }
            _ => None,
        }
    }

    /// Like [`HubRef::begin_unload`], but whether or not connections are attached: a room that
    /// failed has closed them all, and reconnecting providers must not keep it alive.
    pub fn begin_unload_now(&self, name: &str, id: u64) -> Option<watch::Sender<bool>> {
        let mut rooms = self.0.lock();
        match rooms.get(name) {
            Some(Entry::Open { room_id, .. }) if *room_id == id => {
                let (tx, rx) = watch::channel(false);
                rooms.insert(name.to_owned(), Entry::Closing { done: rx, room_id: id });
                Some(tx)
            }
            _ => None,
        }
    }

    /// Called when a room task ends, however it ends (a panic included): removes its entry if it
    /// is still there, so the document can load again instead of staying dead until a restart.
    pub fn forget(&self, name: &str, id: u64) {
        let mut rooms = self.0.lock();
        let ours = match rooms.get(name) {
            Some(Entry::Open { room_id, .. }) | Some(Entry::Closing { room_id, .. }) => *room_id == id,
            None => false,
        };
        if ours {
            rooms.remove(name);
        }
    }

    pub fn end_unload(&self, name: &str, done: watch::Sender<bool>) {
        self.0.lock().remove(name);
        let _ = done.send(true);
    }
}
