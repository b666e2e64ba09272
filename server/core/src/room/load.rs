//! A room's start: load the document, choose how it compacts, start following the shared log, and
//! serve; or, when the document cannot be loaded, refuse every connection until nobody is left.
//! The room loads before it reads its first command, so connections that join meanwhile simply
//! wait in the channel: the first sync of a stored document is never empty.

use super::task::{Compaction, Room, Sizes};
use super::{Cmd, Owner, Peers};
use crate::close;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::sync::awareness::{Awareness, PresenceLimits};
use crate::sync::guard;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, info_span, warn, Instrument};
use yrs::Doc;

/// Settings a room needs, from the command line.
#[derive(Clone, Debug)]
pub struct RoomConfig {
    /// How long an empty room stays loaded before it compacts and unloads.
    pub unload_grace: Duration,
    /// Compact once the log is larger than the snapshot and at least this large.
    pub compact_min_log_bytes: u64,
    /// What one connection may hold in the document's presence: client ids (a tab holds one),
    /// bytes per state, bytes in all.
    pub presence: PresenceLimits,
    /// Shared types (Y.Array, Y.Map, XML elements...) one document may create, deleted ones
    /// included. yrs deletes nested types recursively, so this bounds the stack a delete can
    /// need: with the binary's 64 MiB worker stacks, 50,000 nested levels are safe.
    pub max_types: usize,
    /// Sync answers one connection may ask for: (burst, then per minute). A client asks once per
    /// connection; a viewer asking again and again would make the room send the whole document
    /// each time.
    pub sync_requests: (u32, u32),
    /// Bytes a document may take in storage (its snapshot and the updates logged since); an update
    /// that would pass it is refused with a reason.
    pub max_doc_bytes: u64,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            unload_grace: Duration::from_secs(5),
            compact_min_log_bytes: 1 << 20,
            presence: PresenceLimits { max_clients: 8, max_state_bytes: 8 << 10, max_bytes: 32 << 10 },
            max_types: 50_000,
            sync_requests: (8, 12),
            max_doc_bytes: 64 << 20,
        }
    }
}

/// How often a room that could not load looks whether it may unload.
const REFUSING_TICK: Duration = Duration::from_millis(200);

/// What every room of a hub shares: where documents are stored, the counters, the settings, the
/// other nodes (cluster mode), and the shutdown signal.
#[derive(Clone)]
pub struct RoomEnv {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub config: RoomConfig,
    pub peers: Option<Arc<dyn Peers>>,
    pub shutdown: watch::Receiver<bool>,
}

/// One document's task, from load to unload. The caller spawns it (and tracks it for shutdown);
/// `owner` is dropped when it ends, however it ends.
pub async fn run(name: String, rx: mpsc::Receiver<Cmd>, env: RoomEnv, owner: Box<dyn Owner>) {
    let RoomEnv { store, metrics, config, peers, mut shutdown } = env;
    let span = info_span!("room", doc = %name);
    async move {
        match load(&name, store.as_ref()).await {
            Ok(loaded) => {
                let mut room = Room::new(name, loaded, store, metrics, config, peers);
                room.run(rx, owner.as_ref(), &mut shutdown).await;
            }
            Err(e) => {
                let (code, reason) = match e {
                    StoreError::Unavailable(_) => {
                        error!(error = %e, "document not served: shared storage is unavailable");
                        (close::INTERNAL, "shared storage is unavailable; retrying shortly")
                    }
                    StoreError::NameConflict { .. } => {
                        warn!(error = %e, "document not served");
                        (close::NAME_CONFLICT, "another document's name differs from this one only in case")
                    }
                    _ => {
                        error!(error = %e, "REFUSING TO SERVE DOCUMENT: it could not be loaded");
                        (close::INTERNAL, "document is damaged on the server; an operator must repair it")
                    }
                };
                let refusal = Refusal { code, reason };
                refuse_until_idle(rx, owner.as_ref(), &mut shutdown, store.as_ref(), &name, refusal).await;
            }
        }
        drop(owner);
    }
    .instrument(span)
    .await
}

/// What a load hands the room.
pub(super) struct Loaded {
    doc: Doc,
    sizes: Sizes,
    /// Where the loaded state ends in a shared log.
    position: crate::store::Position,
    /// The log held records (or a torn tail): compact before serving, see `Room::new`.
    compact_now: bool,
}

async fn load(name: &str, store: &dyn Store) -> Result<Loaded, StoreError> {
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
    let sizes = Sizes { snapshot: loaded.snapshot_bytes, log: loaded.log_bytes, types, unstored: 0 };
    Ok(Loaded { doc, sizes, position: loaded.position.unwrap_or_default(), compact_now })
}

impl Room {
    fn new(
        name: String,
        loaded: Loaded,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        config: RoomConfig,
        peers: Option<Arc<dyn Peers>>,
    ) -> Self {
        let compaction = if store.shared() { Compaction::Beside } else { Compaction::InPipeline };
        if let Some(peers) = &peers {
            // Everything after the loaded state comes as `Cmd::Remote`, in log order.
            peers.follow(&name, loaded.position);
        }
        let mut room = Room {
            name,
            doc: loaded.doc,
            awareness: Awareness::with_reserved(super::SERVER_AWARENESS_ID),
            conns: HashMap::new(),
            store,
            metrics,
            config,
            compaction,
            pending: Vec::new(),
            inflight: None,
            compacting: None,
            applied: 0,
            durable: 0,
            parked: VecDeque::new(),
            sizes: loaded.sizes,
            position: loaded.position,
            version: 0,
            full_state: None,
            idle_since: None,
            told_read_only: HashSet::new(),
            unload_asap: false,
            published_counts: (0, 0),
            failed: false,
            peers,
            compact_not_before: None,
        };
        // A log with records at load time means the last run did not unload cleanly (a crash, or a
        // failed write). Write what we just read into a fresh snapshot first: after a failed fsync
        // the page cache may hold data the disk does not, and this makes everything we are about
        // to serve durable for real. It also keeps the next load fast.
        if loaded.compact_now {
            // What we loaded counts as one update that is not durable until this snapshot is:
            // nothing from it is sent to anyone before then.
            room.applied = 1;
            room.start_compaction();
        }
        room
    }
}

/// How connections to a document that could not load are closed.
struct Refusal {
    code: u16,
    reason: &'static str,
}

/// A document that failed to load: every connection is closed with a code and a reason until none
/// is left, then the room unloads, so that a later connection tries again (after an operator's
/// repair).
async fn refuse_until_idle(
    mut rx: mpsc::Receiver<Cmd>,
    owner: &dyn Owner,
    shutdown: &mut watch::Receiver<bool>,
    store: &dyn Store,
    name: &str,
    refusal: Refusal,
) {
    let mut tick = tokio::time::interval(REFUSING_TICK);
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Cmd::Join(conn)) => conn.close(refusal.code, refusal.reason),
                Some(_) => {}
                None => return,
            },
            _ = tick.tick() => {
                if owner.begin_unload(false) {
                    store.release(name).await;
                    return;
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
