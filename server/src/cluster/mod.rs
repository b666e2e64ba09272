//! Cluster mode: several nodes serve the same documents through Redis and PostgreSQL.
//!
//! The model is y-redis's: nodes keep no state another node needs. Each document's updates go to a
//! Redis stream (`cp:stream:{doc}`, one entry per group-committed batch); the `XADD` reply is the
//! durability point, exactly where a single node's fsync is, so the room's rule "broadcast only
//! what the store says is durable" holds unchanged. Every node that has the document loaded
//! follows the stream ([`tail`]) and applies and broadcasts what other nodes appended, in stream
//! order. Snapshots live in PostgreSQL ([`pg`]); compaction folds the stream into the snapshot
//! under a lease with a fencing token (`store::cluster`). Awareness (ephemeral) and control
//! messages (a link rotated, a session deleted, a document compacted) travel over Redis pub/sub
//! ([`bus`]): losing one costs a few seconds of staleness, never data.
//!
//! Redis must be configured for the promise: `appendonly yes` with `appendfsync always` (see
//! docs/scale-out.md for `everysec` and what it costs).

pub mod bus;
pub mod pg;
mod records;
pub mod store;
pub mod tail;

use commonpad_core::store::Position;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, Notify};

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Invalid(String),
}

/// How a node joins a cluster (from the command line).
#[derive(Clone)]
pub struct ClusterConfig {
    pub redis_url: String,
    pub postgres_url: String,
    /// This node's name in `/metrics` and in the stream entries it writes; random if not given.
    pub node_id: Option<String>,
    /// How long a compaction lease lasts if its holder never releases it (dies, hangs).
    pub lease: Duration,
    /// Test hook (`COMMONPAD_FAULT=hang-after-lease`): hang forever once a lease is acquired.
    pub hang_after_lease: bool,
}

impl std::fmt::Debug for ClusterConfig {
    // The URLs may carry passwords: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("node_id", &self.node_id)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// Redis keys and channels, in one place.
pub mod keys {
    pub fn stream(doc: &str) -> String {
        format!("cp:stream:{doc}")
    }
    pub fn lease(doc: &str) -> String {
        format!("cp:lease:{doc}")
    }
    pub fn fence(doc: &str) -> String {
        format!("cp:fence:{doc}")
    }
    pub fn awareness(doc: &str) -> String {
        format!("cp:aw:{doc}")
    }
    pub const AWARENESS_PATTERN: &str = "cp:aw:*";
    pub const AWARENESS_PREFIX: &str = "cp:aw:";
    pub const STREAM_PREFIX: &str = "cp:stream:";
    pub const CONTROL: &str = "cp:ctl";
    pub const NODES: &str = "cp:nodes";
}

/// A document the tailer follows: where it is in the stream. `generation` tells a registration
/// apart from an earlier one of the same document (unloaded and loaded again meanwhile).
struct Follow {
    position: Position,
    generation: u64,
}

/// What `/metrics` shows of the cluster, refreshed by the background tasks.
#[derive(Default)]
struct Status {
    /// Live nodes (heartbeat within 10 s) and their last heartbeat (ms since the epoch).
    peers: Vec<(String, u64)>,
    /// Per followed document: ms between an entry's append (its stream id) and this node
    /// reading it, for the last entry read.
    lag_ms: HashMap<String, u64>,
    /// Documents whose compaction lease this node holds now.
    leases: HashSet<String>,
}

/// A node's handles on the shared engines, and what its background tasks share.
pub struct Cluster {
    pub node: String,
    pub(crate) redis: redis::Client,
    /// Multiplexed, reconnecting: every non-blocking command goes through it.
    pub(crate) cmd: redis::aio::ConnectionManager,
    pub pg: pg::Pg,
    pub(crate) config: ClusterConfig,
    follows: Mutex<HashMap<String, Follow>>,
    next_generation: std::sync::atomic::AtomicU64,
    pub(crate) follows_changed: Notify,
    status: Mutex<Status>,
    /// Awareness updates rooms hand over for publishing; see [`bus::publisher`].
    publish_tx: mpsc::Sender<Publish>,
    publish_rx: Mutex<Option<mpsc::Receiver<Publish>>>,
}

/// A message for Redis pub/sub: (channel, payload).
type Publish = (String, Vec<u8>);

/// Awareness messages waiting to be published. Awareness is ephemeral and renewed every 15 s, so
/// when Redis is slower than this, dropping the newest is better than growing memory.
const PUBLISH_QUEUE: usize = 4096;

/// How long one Redis command may take before it counts as failed. Generous: with
/// `appendfsync always` an XADD waits for Redis's fsync.
pub(crate) const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

impl Cluster {
    /// Connects to both engines (failing fast with a clear error if either is unreachable) and
    /// creates the PostgreSQL tables if they are missing.
    pub async fn connect(config: ClusterConfig) -> Result<Cluster, ClusterError> {
        let redis = redis::Client::open(config.redis_url.as_str())?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let mut cmd = redis::aio::ConnectionManager::new_with_config(redis.clone(), manager_config).await?;
        let _: String = redis::cmd("PING").query_async(&mut cmd).await?;
        warn_about_redis_durability(&mut cmd).await;
        let pg = pg::Pg::connect(&config.postgres_url).await?;
        let node = config.node_id.clone().unwrap_or_else(|| {
            use rand::Rng;
            format!("node-{:08x}", rand::rngs::OsRng.gen::<u32>())
        });
        let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        Ok(Cluster {
            node,
            redis,
            cmd,
            pg,
            config,
            follows: Mutex::new(HashMap::new()),
            next_generation: std::sync::atomic::AtomicU64::new(1),
            follows_changed: Notify::new(),
            status: Mutex::new(Status::default()),
            publish_tx,
            publish_rx: Mutex::new(Some(publish_rx)),
        })
    }

    fn follows(&self) -> std::sync::MutexGuard<'_, HashMap<String, Follow>> {
        // std Mutex: held for one map operation, never across an await.
        self.follows.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts following a document's stream after `position` (called when it is loaded).
    fn follow(&self, doc: &str, position: Position) {
        let generation = self.next_generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.follows().insert(doc.to_owned(), Follow { position, generation });
        self.follows_changed.notify_one();
    }

    fn unfollow(&self, doc: &str) {
        self.follows().remove(doc);
        self.status().lag_ms.remove(doc);
    }

    /// The documents followed and where: what the tailer asks Redis for next.
    pub(crate) fn followed(&self) -> Vec<(String, Position, u64)> {
        self.follows().iter().map(|(d, f)| (d.clone(), f.position, f.generation)).collect()
    }

    /// Records that the tailer read up to `position`, unless the document was unloaded (or
    /// loaded again) meanwhile.
    pub(crate) fn advance(&self, doc: &str, generation: u64, position: Position, lag_ms: u64) -> bool {
        let mut follows = self.follows();
        match follows.get_mut(doc) {
            Some(f) if f.generation == generation && f.position < position => {
                f.position = position;
                drop(follows);
                self.status().lag_ms.insert(doc.to_owned(), lag_ms);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn lease_taken(&self, doc: &str, held: bool) {
        let mut status = self.status();
        if held {
            status.leases.insert(doc.to_owned());
        } else {
            status.leases.remove(doc);
        }
    }

    pub(crate) fn set_peers(&self, peers: Vec<(String, u64)>) {
        self.status().peers = peers;
    }

    /// Queues an awareness update of a local client for the other nodes; drops it if the queue is
    /// full (see [`PUBLISH_QUEUE`]).
    pub fn publish_awareness(&self, doc: &str, update: &[u8]) {
        let mut payload = Vec::with_capacity(self.node.len() + 1 + update.len());
        payload.extend_from_slice(self.node.as_bytes());
        payload.push(b'\n');
        payload.extend_from_slice(update);
        let _ = self.publish_tx.try_send((keys::awareness(doc), payload));
    }

    fn control_payload(&self, msg: &bus::Control) -> Option<Vec<u8>> {
        serde_json::to_vec(&bus::Envelope { node: &self.node, msg }).ok()
    }

    /// Publishes a control message to the other nodes now (a rotation, a deletion...).
    pub async fn publish_control(&self, msg: &bus::Control) {
        let Some(payload) = self.control_payload(msg) else { return };
        let mut conn = self.cmd.clone();
        let res: Result<i64, _> = redis::cmd("PUBLISH").arg(keys::CONTROL).arg(payload).query_async(&mut conn).await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "could not tell the other nodes (they catch up within 10 s)");
        }
    }

    pub(crate) fn take_publish_rx(&self) -> Option<mpsc::Receiver<Publish>> {
        self.publish_rx.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The cluster's lines for `/metrics`.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let status = self.status();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP commonpad_cluster_peers Live nodes of the cluster (heartbeat within 10 s), this one included."
        );
        let _ = writeln!(s, "# TYPE commonpad_cluster_peers gauge\ncommonpad_cluster_peers {}", status.peers.len());
        let _ = writeln!(
            s,
            "# HELP commonpad_cluster_peer_heartbeat_ms A live node's last heartbeat (ms since the epoch)."
        );
        let _ = writeln!(s, "# TYPE commonpad_cluster_peer_heartbeat_ms gauge");
        for (node, at) in &status.peers {
            let me = if *node == self.node { "true" } else { "false" };
            let _ = writeln!(s, "commonpad_cluster_peer_heartbeat_ms{{node=\"{}\",self=\"{me}\"}} {at}", label(node));
        }
        let _ = writeln!(s, "# HELP commonpad_stream_lag_ms Per loaded document: ms from an entry's append to this node reading it (last entry).");
        let _ = writeln!(s, "# TYPE commonpad_stream_lag_ms gauge");
        let mut lags: Vec<_> = status.lag_ms.iter().collect();
        lags.sort();
        for (doc, lag) in lags {
            let _ = writeln!(s, "commonpad_stream_lag_ms{{doc=\"{doc}\"}} {lag}");
        }
        let _ = writeln!(s, "# HELP commonpad_lease_held Compaction leases this node holds now.");
        let _ = writeln!(s, "# TYPE commonpad_lease_held gauge");
        let mut leases: Vec<_> = status.leases.iter().collect();
        leases.sort();
        for doc in leases {
            let _ = writeln!(s, "commonpad_lease_held{{doc=\"{doc}\",node=\"{}\"}} 1", label(&self.node));
        }
        s
    }
}

impl commonpad_core::room::Peers for Cluster {
    fn awareness(&self, doc: &str, update: &[u8]) {
        self.publish_awareness(doc, update);
    }

    fn follow(&self, doc: &str, from: Position) {
        Cluster::follow(self, doc, from);
    }

    fn unfollow(&self, doc: &str) {
        Cluster::unfollow(self, doc);
    }

    fn compacted(&self, doc: &str) {
        // Published on a task of its own, not through the awareness queue: it must not be dropped
        // when that queue is full, nor lost when the publisher stops at shutdown (the rooms'
        // last compactions come after it).
        let Some(payload) = self.control_payload(&bus::Control::Compacted { doc: doc.to_owned() }) else { return };
        let mut conn = self.cmd.clone();
        tokio::spawn(async move {
            let res: Result<i64, _> =
                redis::cmd("PUBLISH").arg(keys::CONTROL).arg(payload).query_async(&mut conn).await;
            if let Err(e) = res {
                tracing::debug!(error = %e, "compaction not announced (the other nodes compact later)");
            }
        });
    }
}

/// A label value with the characters Prometheus's text format escapes removed.
fn label(v: &str) -> String {
    v.chars().filter(|c| !matches!(c, '"' | '\\' | '\n')).collect()
}

/// Says loudly when Redis is not set up to keep what it acknowledged.
async fn warn_about_redis_durability(conn: &mut redis::aio::ConnectionManager) {
    let get = |name: &'static str| {
        let mut conn = conn.clone();
        async move {
            let v: Result<Vec<String>, _> = redis::cmd("CONFIG").arg("GET").arg(name).query_async(&mut conn).await;
            v.ok().and_then(|v| v.get(1).cloned())
        }
    };
    match (get("appendonly").await.as_deref(), get("appendfsync").await.as_deref()) {
        (Some("yes"), Some("always")) => tracing::info!("Redis: appendonly yes, appendfsync always: acknowledged updates survive a power cut"),
        (Some("yes"), Some(fsync)) => tracing::warn!(appendfsync = fsync, "Redis is not set to `appendfsync always`: a power cut can lose up to a second of acknowledged updates"),
        (Some(_), _) => tracing::warn!("Redis runs without `appendonly yes`: a Redis restart LOSES acknowledged updates; see docs/scale-out.md"),
        _ => tracing::warn!("could not read Redis's persistence settings (CONFIG GET refused?); make sure it runs with appendonly yes and appendfsync always"),
    }
}
