//! The hub: which documents are loaded, and the way in for a connection.
//!
//! A connection calls [`Hub::attach`] and gets the room's command channel, loading the room if it is
//! not loaded. The hub counts attached connections per room, so that a room can only unload when
//! nobody is attached, and marks a room as closing while it compacts, so that a connection arriving
//! then waits and starts a fresh load afterwards instead of racing the compaction on disk.

mod occupancy;
mod rooms;

use crate::metrics::{Metrics, Reject};
use crate::room::{self, ApplyRefused, Cmd, Owner, Peers, RoomConfig, RoomEnv, ServerApply};
use crate::store::Store;
use crate::Role;
use occupancy::Occupancy;
use rooms::Rooms;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

/// Commands a room may have queued before it applies back-pressure to its connections. Large
/// enough to absorb a burst from many clients, small enough that a flood waits instead of growing
/// memory.
const ROOM_QUEUE: usize = 1024;

/// How many connections may attach. Editors and viewers have caps of their own, so that a public
/// view link shared with the whole internet can never lock the workshop's editors out.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_editors_per_doc: usize,
    pub max_viewers_per_doc: usize,
    /// Connections to one document from one address (a venue's Wi-Fi is one address for
    /// everyone in the room, so this is far above a workshop's size).
    pub max_conns_per_ip_per_doc: usize,
    pub max_conns_total: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_editors_per_doc: 1000,
            max_viewers_per_doc: 1000,
            max_conns_per_ip_per_doc: 1000,
            max_conns_total: 20_000,
        }
    }
}

/// Who attaches to a room: a client connection, or the server itself (the HTTP API, a template),
/// which no limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Client { role: Role, ip: IpAddr },
    Server,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AttachError {
    #[error("this document has reached its limit of editors; try again later")]
    EditorsFull,
    #[error("this document has reached its limit of viewers; try again later")]
    ViewersFull,
    #[error("too many connections to this document from your network; try again later")]
    AddressFull,
    #[error("the server has reached its connection limit; try again later")]
    ServerFull,
    #[error("another document's name differs from this one only in case; names are one place here")]
    NameConflict,
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
        occupancy: Occupancy,
        room_id: u64,
        gone: watch::Receiver<bool>,
    },
    /// The room is flushing and compacting before it unloads.
    Closing {
        room_id: u64,
        gone: watch::Receiver<bool>,
    },
}

impl Entry {
    fn room_id(&self) -> u64 {
        match self {
            Entry::Open { room_id, .. } | Entry::Closing { room_id, .. } => *room_id,
        }
    }

    fn gone(&self) -> watch::Receiver<bool> {
        match self {
            Entry::Open { gone, .. } | Entry::Closing { gone, .. } => gone.clone(),
        }
    }
}

struct HubInner {
    // std Mutex: held for a map lookup or insert, never across an await, so an async mutex would
    // only add cost.
    rooms: Mutex<Rooms<Entry>>,
    /// What every room gets: the store, counters, settings, the other nodes, the shutdown signal.
    env: RoomEnv,
    limits: Limits,
    next_room: AtomicU64,
    conns: AtomicUsize,
    /// Every room task, so that shutdown waits for them to end instead of polling a count (a room
    /// that panicked has ended too).
    rooms_running: TaskTracker,
}

#[derive(Clone)]
pub struct Hub(Arc<HubInner>);

/// A connection's hold on a room; dropping it detaches.
pub struct Attached {
    pub tx: mpsc::Sender<Cmd>,
    hub: Arc<HubInner>,
    name: String,
    room_id: u64,
    who: Who,
}

impl Drop for Attached {
    fn drop(&mut self) {
        if self.who != Who::Server {
            self.hub.conns.fetch_sub(1, Relaxed);
        }
        let mut rooms = self.hub.lock();
        if let Some(Entry::Open { occupancy, room_id, .. }) = rooms.get_mut(&self.name) {
            if *room_id == self.room_id {
                occupancy.leave(&self.who);
            }
        }
    }
}

/// One room's place in the hub, held by the room (as its [`Owner`]): the room asks it whether it
/// may unload, and dropping it, when the room task ends by any path, removes the entry and wakes
/// whoever waits for the room to be gone.
struct Slot {
    hub: Arc<HubInner>,
    name: String,
    room_id: u64,
    gone: watch::Sender<bool>,
}

impl Owner for Slot {
    fn begin_unload(&self, force: bool) -> bool {
        let mut rooms = self.hub.lock();
        match rooms.get(&self.name) {
            Some(Entry::Open { occupancy, room_id, gone, .. })
                if *room_id == self.room_id && (force || occupancy.is_empty()) =>
            {
                let gone = gone.clone();
                rooms.insert(self.name.clone(), Entry::Closing { room_id: self.room_id, gone });
                true
            }
            _ => false,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        {
            let mut rooms = self.hub.lock();
            if rooms.get(&self.name).is_some_and(|e| e.room_id() == self.room_id) {
                rooms.remove(&self.name);
            }
        }
        self.hub.env.metrics.docs_loaded.fetch_sub(1, Relaxed);
        let _ = self.gone.send(true);
    }
}

impl HubInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Rooms<Entry>> {
        // Every critical section is a single map operation, so a poisoned map is still consistent.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new room's entry, with `who` attached, and the task that will serve it, to be spawned
    /// once the lock is released (a future dropped at spawn must not find the lock held).
    fn new_room(
        self: &Arc<Self>,
        rooms: &mut Rooms<Entry>,
        name: &str,
        who: Who,
    ) -> (Attached, impl std::future::Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(ROOM_QUEUE);
        let room_id = self.next_room.fetch_add(1, Relaxed);
        let (gone_tx, gone) = watch::channel(false);
        let mut occupancy = Occupancy::default();
        occupancy.join(&who);
        rooms.insert(name.to_owned(), Entry::Open { tx: tx.clone(), occupancy, room_id, gone });
        self.env.metrics.docs_loaded.fetch_add(1, Relaxed);
        let slot = Slot { hub: self.clone(), name: name.to_owned(), room_id, gone: gone_tx };
        let task = room::run(name.to_owned(), rx, self.env.clone(), Box::new(slot));
        (Attached { tx, hub: self.clone(), name: name.to_owned(), room_id, who }, task)
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
            rooms: Mutex::new(Rooms::default()),
            env: RoomEnv { store, metrics, config, peers, shutdown },
            limits,
            next_room: AtomicU64::new(1),
            conns: AtomicUsize::new(0),
            rooms_running: TaskTracker::new(),
        }))
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.env.metrics
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.env.store
    }

    pub fn loaded_rooms(&self) -> usize {
        self.0.lock().len()
    }

    /// Attaches to a document's room, loading it if needed. A client is counted against the
    /// limits (refusals are counted in `/metrics` by reason); the server never is.
    pub async fn attach(&self, name: &str, who: Who) -> Result<Attached, AttachError> {
        let inner = &self.0;
        let client = who != Who::Server;
        if client && inner.conns.fetch_add(1, Relaxed) >= inner.limits.max_conns_total {
            inner.conns.fetch_sub(1, Relaxed);
            inner.env.metrics.reject(Reject::TotalLimit);
            return Err(AttachError::ServerFull);
        }
        // From here on a failure must give the slot back; `Attached::drop` does it on success.
        let release = |e: AttachError| {
            if client {
                inner.conns.fetch_sub(1, Relaxed);
            }
            if let Some(why) = e.reject() {
                inner.env.metrics.reject(why);
            }
            e
        };
        for _ in 0..100 {
            if *inner.env.shutdown.borrow() {
                return Err(release(AttachError::ShuttingDown));
            }
            let (attached, task) = {
                let mut rooms = inner.lock();
                if rooms.conflict(name).is_some() {
                    return Err(release(AttachError::NameConflict));
                }
                match rooms.get_mut(name) {
                    Some(Entry::Open { tx, occupancy, room_id, .. }) => {
                        occupancy.admit(&who, &inner.limits).map_err(release)?;
                        let attached = Attached {
                            tx: tx.clone(),
                            hub: inner.clone(),
                            name: name.to_owned(),
                            room_id: *room_id,
                            who,
                        };
                        (Some(attached), None)
                    }
                    Some(Entry::Closing { gone, .. }) => (None, Some(Err(gone.clone()))),
                    None => {
                        let (attached, task) = inner.new_room(&mut rooms, name, who);
                        (Some(attached), Some(Ok(task)))
                    }
                }
            };
            match (attached, task) {
                (Some(attached), Some(Ok(task))) => {
                    inner.rooms_running.spawn(task);
                    return Ok(attached);
                }
                (Some(attached), _) => return Ok(attached),
                (None, Some(Err(mut gone))) => {
                    // The room is compacting before it unloads: wait for it to be gone, then load
                    // afresh. (An error means its slot was dropped without a word: gone all the same.)
                    let _ = gone.wait_for(|gone| *gone).await;
                }
                (None, _) => {}
            }
        }
        Err(release(AttachError::ShuttingDown))
    }

    pub fn is_loaded(&self, name: &str) -> bool {
        self.0.lock().contains_key(name)
    }

    /// Closes every connection of a loaded document and unloads it, waiting up to `timeout` for
    /// it to be gone. Returns whether the document is unloaded (true at once if it was not
    /// loaded). Connections that come back meanwhile find the room closing and wait.
    pub async fn unload(&self, name: &str, code: u16, reason: &'static str, timeout: Duration) -> bool {
        let (tx, mut gone) = match self.0.lock().get(name) {
            Some(Entry::Open { tx, gone, .. }) => (Some(tx.clone()), gone.clone()),
            Some(closing) => (None, closing.gone()),
            None => return true,
        };
        if let Some(tx) = tx {
            let _ = tx.send(Cmd::Kick { role: None, code, reason, unload: true }).await;
        }
        let _ = tokio::time::timeout(timeout, gone.wait_for(|g| *g)).await;
        !self.is_loaded(name)
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
        let attached = self.attach(name, Who::Server).await?;
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
        let attached = self.attach(name, Who::Server).await?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        attached.tx.send(Cmd::Snapshot(reply)).await.map_err(|_| HubError::Unavailable)?;
        rx.await.map_err(|_| HubError::Unavailable)
    }

    /// Waits until every room has flushed, compacted and ended (after the shutdown signal), or
    /// `timeout`; whether they all did.
    pub async fn wait_rooms_closed(&self, timeout: Duration) -> bool {
        self.0.rooms_running.close();
        tokio::time::timeout(timeout, self.0.rooms_running.wait()).await.is_ok()
    }
}
