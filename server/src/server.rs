//! Starting, running and stopping the server. Shutdown is designed in: one watch channel tells every
//! room to close its connections (1001), make its updates durable and compact; the listener stops
//! accepting first, and the process only exits once every room task and every background task has
//! ended. Both are tracked (`TaskTracker`), not polled, so a room that panicked counts as ended.

use crate::cluster::Cluster;
use crate::http::{self, App};
use crate::listener::HttpLimits;
use crate::sessions::keys::AdminToken;
use crate::sessions::Sessions;
use commonpad_core::hub::{Hub, Limits};
use commonpad_core::metrics::Metrics;
use commonpad_core::room::RoomConfig;
use commonpad_core::store::Store;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

/// How long shutdown waits for the rooms to flush and compact.
const ROOMS_CLOSE_WAIT: Duration = Duration::from_secs(60);
/// How long shutdown waits for the background tasks (the cluster heartbeat's last `HDEL`...).
const BACKGROUND_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct Config {
    pub max_message_bytes: usize,
    /// The largest message a view connection may send (a state vector, its presence).
    pub max_view_message_bytes: usize,
    /// How often connections are pinged; one unanswered interval closes them.
    pub ping_interval: Duration,
    pub limits: Limits,
    pub room: RoomConfig,
    /// Any valid document name syncs without a token.
    pub open: bool,
    /// Base of the share links handed out; else built from the request's Host header.
    pub public_url: Option<String>,
    /// The built web client.
    pub web_dir: PathBuf,
    /// Reverse proxies whose `X-Forwarded-For` names the client (its last address); any other
    /// peer is the client itself.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Connections before their upgrade: header timeout, caps.
    pub http: HttpLimits,
    /// How long an upgraded socket may take to send its first sync request.
    pub first_sync_timeout: Duration,
    /// Updates one connection may send: (burst, then per second).
    pub update_rate: (u32, u32),
    /// With `open`: new documents anyone may create, (burst, then per minute), server-wide.
    pub open_creations: (u32, u32),
    /// How long one message may take to arrive whole.
    pub message_timeout: Duration,
    /// Bytes of messages not received whole yet, server-wide.
    pub max_unfinished_message_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_bytes: 8 << 20,
            max_view_message_bytes: 64 << 10,
            ping_interval: crate::connection::PING_INTERVAL,
            limits: Limits::default(),
            room: RoomConfig::default(),
            open: false,
            public_url: None,
            web_dir: PathBuf::from("web-client/dist"),
            trusted_proxies: Vec::new(),
            http: HttpLimits::default(),
            first_sync_timeout: Duration::from_secs(20),
            update_rate: (2000, 200),
            open_creations: (60, 60),
            message_timeout: Duration::from_secs(60),
            max_unfinished_message_bytes: 256 << 20,
        }
    }
}

/// A server that is accepting connections.
pub struct Running {
    pub addr: SocketAddr,
    pub hub: Hub,
    pub app: Arc<App>,
    shutdown_tx: watch::Sender<bool>,
    serve: tokio::task::JoinHandle<()>,
    /// Tasks that run until shutdown: memory trimming, and in cluster mode the stream follower,
    /// pub/sub and heartbeat.
    background: TaskTracker,
}

impl Running {
    /// Stops accepting, closes every connection, flushes and compacts every document, and waits
    /// for the background tasks. Returns whether everything ended in time.
    pub async fn shutdown(self) -> bool {
        let _ = self.shutdown_tx.send(true);
        let _ = self.serve.await;
        let rooms = self.hub.wait_rooms_closed(ROOMS_CLOSE_WAIT).await;
        self.background.close();
        let background = tokio::time::timeout(BACKGROUND_WAIT, self.background.wait()).await.is_ok();
        if !background {
            tracing::warn!("background tasks did not end within {BACKGROUND_WAIT:?}");
        }
        rooms && background
    }
}

/// Binds and starts serving, as a single node.
pub async fn start(
    addr: SocketAddr,
    config: Config,
    store: Arc<dyn Store>,
    sessions: Arc<Sessions>,
    admin: AdminToken,
) -> std::io::Result<Running> {
    start_node(addr, config, store, sessions, admin, None).await
}

/// Binds and starts serving; with `cluster`, as one node of a cluster (the store and the sessions
/// must then be the shared ones) whose background tasks start here and end at shutdown.
pub async fn start_node(
    addr: SocketAddr,
    config: Config,
    store: Arc<dyn Store>,
    sessions: Arc<Sessions>,
    admin: AdminToken,
    cluster: Option<Arc<Cluster>>,
) -> std::io::Result<Running> {
    // TCP_NODELAY on the listening socket, inherited by every accepted one (Linux): without it
    // Nagle's algorithm holds a second small frame (an echo right after a SyncStep2, say) until
    // the client's delayed ACK, up to 40 ms, and group commit collapses (measured: 32 writers
    // acknowledged 817 updates/s with it, 34,758 without; examples/storage_figures.rs).
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    let listener: TcpListener = socket.listen(1024)?;
    let addr = listener.local_addr()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::default());
    let peers = cluster.clone().map(|c| c as Arc<dyn commonpad_core::room::Peers>);
    let hub = Hub::new(store, config.room.clone(), config.limits.clone(), metrics.clone(), shutdown_rx.clone(), peers);
    let background = TaskTracker::new();
    background.spawn(crate::memory::trim_after_drops(metrics.clone(), shutdown_rx.clone()));
    if let Some(cluster) = cluster {
        let shown = cluster.clone();
        let _ = metrics.extra.set(Box::new(move || shown.render_metrics()));
        crate::cluster::bus::spawn(&background, cluster, hub.clone(), sessions.clone(), shutdown_rx.clone());
    }
    let app = Arc::new(App {
        hub: hub.clone(),
        sessions,
        admin,
        open: config.open,
        max_message_bytes: config.max_message_bytes,
        max_view_message_bytes: config.max_view_message_bytes,
        ping_interval: config.ping_interval,
        public_url: config.public_url.clone(),
        web_dir: config.web_dir.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
        first_sync_timeout: config.first_sync_timeout,
        update_rate: config.update_rate,
        message_timeout: config.message_timeout,
        message_budget: Arc::new(crate::connection::Budget {
            max: config.max_unfinished_message_bytes,
            used: std::sync::atomic::AtomicUsize::new(0),
        }),
        creations: std::sync::Mutex::new(commonpad_core::rate::TokenBucket::new(
            config.open_creations.0,
            f64::from(config.open_creations.1) / 60.0,
        )),
    });
    let routes = http::routes(app.clone());
    let mut stop = shutdown_rx;
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let serve = tokio::spawn(crate::listener::serve(listener, routes, config.http.clone(), metrics, stopped));
    Ok(Running { addr, hub, app, shutdown_tx, serve, background })
}
