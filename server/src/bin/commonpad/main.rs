//! The `commonpad` binary: the command line, logging, signals; the offline commands are in
//! `offline.rs`. Everything else is in the libraries.

mod offline;

use anyhow::{bail, Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use commonpad_core::hub::Limits;
use commonpad_core::store::disk::DiskStore;
use commonpad_core::store::Store;
use commonpad_core::sync::awareness::PresenceLimits;
use commonpad_server::cluster::store::ClusterStore;
use commonpad_server::cluster::{Cluster, ClusterConfig};
use commonpad_server::listener::HttpLimits;
use commonpad_server::server::{self, Config};
use commonpad_server::sessions::keys::{self, AdminToken, ServerKey};
use commonpad_server::sessions::lifecycle::{self, CreateSession};
use commonpad_server::sessions::Sessions;
use offline::lock_data_dir;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "commonpad", version, about = "A durable, self-hosted sync server for Yjs documents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the serve variant's size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Verify every stored document; exit 1 if any is damaged.
    Check {
        #[arg(long, env = "COMMONPAD_DATA")]
        data: PathBuf,
    },
    /// Fold every document's log into a fresh snapshot (server must be stopped).
    Compact {
        #[arg(long, env = "COMMONPAD_DATA")]
        data: PathBuf,
    },
    /// Write a document's full state as one Yjs update (v1) to stdout.
    Export {
        #[arg(long, env = "COMMONPAD_DATA")]
        data: PathBuf,
        doc: String,
    },
    /// Merge a Yjs update (v1) from FILE into a document (server must be stopped).
    Import {
        #[arg(long, env = "COMMONPAD_DATA")]
        data: PathBuf,
        doc: String,
        file: PathBuf,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "COMMONPAD_ADDR", default_value = "127.0.0.1:4455")]
    addr: SocketAddr,
    /// Data directory (created if missing).
    #[arg(long, env = "COMMONPAD_DATA", default_value = "commonpad-data")]
    data: PathBuf,
    /// Let anyone sync any document without a token.
    #[arg(long)]
    open: bool,
    /// Largest WebSocket message accepted, in bytes.
    #[arg(long, default_value_t = 8 << 20)]
    max_message_bytes: usize,
    /// Largest message a view connection may send (a state vector and its presence are a few
    /// kilobytes; the view link is public).
    #[arg(long, default_value_t = 64 << 10)]
    max_view_message_bytes: usize,
    /// Most editors connected to one document (viewers have their own cap, so a public view link
    /// can never lock editors out).
    #[arg(long, alias = "max-connections-per-doc", default_value_t = 1000)]
    max_editors_per_doc: usize,
    /// Most viewers connected to one document.
    #[arg(long, default_value_t = 1000)]
    max_viewers_per_doc: usize,
    /// Most connections to one document from one client address (a venue's Wi-Fi is one address
    /// for the whole room).
    #[arg(long, default_value_t = 1000)]
    max_connections_per_ip_per_doc: usize,
    /// A reverse proxy whose X-Forwarded-For names the client (repeat for several); other peers'
    /// X-Forwarded-For is ignored.
    #[arg(long = "trusted-proxy", value_name = "IP")]
    trusted_proxies: Vec<std::net::IpAddr>,
    /// Presence (cursors, names): client ids one connection may hold.
    #[arg(long, default_value_t = 8)]
    max_presence_clients_per_connection: usize,
    /// Presence: bytes of one client's state (a real one is a few hundred).
    #[arg(long, default_value_t = 8 << 10)]
    max_presence_state_bytes: usize,
    /// Presence: bytes of all of one connection's states.
    #[arg(long, default_value_t = 32 << 10)]
    max_presence_bytes_per_connection: usize,
    /// Sync requests (each answered with what the client lacks, up to the whole document) one
    /// connection may send at once; a client sends one per connection.
    #[arg(long, default_value_t = 8)]
    sync_requests_burst: u32,
    /// How long a client may take to send a request's headers, and an idle keep-alive connection
    /// stays open, in ms.
    #[arg(long, default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// Connections not (yet) upgraded to a WebSocket, in all.
    #[arg(long, default_value_t = 10_000)]
    max_pending_connections: usize,
    /// Connections not (yet) upgraded to a WebSocket from one address (browsers keep a few idle
    /// ones each; a venue's Wi-Fi is one address).
    #[arg(long, default_value_t = 2_000)]
    max_pending_connections_per_ip: usize,
    /// How long an upgraded socket may take to send its first sync request, in ms.
    #[arg(long, default_value_t = 20_000)]
    first_sync_timeout_ms: u64,
    /// Sync requests one connection may send per minute once its burst is spent.
    #[arg(long, default_value_t = 12)]
    sync_requests_per_minute: u32,
    /// Most connections in total.
    #[arg(long, default_value_t = 20_000)]
    max_connections: usize,
    /// Acknowledge updates without fsync. Only for like-for-like benchmarks: a crash loses data.
    #[arg(long)]
    no_fsync: bool,
    /// The admin token (at least 16 characters); generated and kept in DIR/admin.token if absent.
    /// Prefer the environment or --admin-token-file: a command line is visible in the process list.
    #[arg(long, env = "COMMONPAD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// A file holding the admin token (its first line).
    #[arg(long, env = "COMMONPAD_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    admin_token_file: Option<PathBuf>,
    /// Base URL of the share links (e.g. https://pad.example.org); default: from the request.
    #[arg(long, env = "COMMONPAD_PUBLIC_URL")]
    public_url: Option<String>,
    /// The built web client.
    #[arg(long, env = "COMMONPAD_WEB_DIR", default_value = "web-client/dist")]
    web_dir: PathBuf,
    /// Make (once) a demo session from the built-in template and print its links.
    #[arg(long)]
    demo: bool,
    /// Cluster mode: Redis for the update streams and pub/sub (redis://HOST:PORT/). Needs
    /// --postgres too; without both the node runs alone on its disk store.
    #[arg(long, env = "COMMONPAD_REDIS", hide_env_values = true, requires = "postgres")]
    redis: Option<String>,
    /// Cluster mode: PostgreSQL for snapshots, sessions and shared secrets
    /// (postgres://USER@HOST:PORT/DB).
    #[arg(long, env = "COMMONPAD_POSTGRES", hide_env_values = true, requires = "redis")]
    postgres: Option<String>,
    /// Cluster mode: this node's name in /metrics and in the streams (default: random).
    #[arg(long, env = "COMMONPAD_NODE_ID")]
    node_id: Option<String>,
    /// Cluster mode: how long a compaction lease lasts if its holder dies, in ms.
    #[arg(long, default_value_t = 30_000)]
    lease_ms: u64,
    /// Compact a document once its log (or stream) since the last snapshot is larger than
    /// the snapshot and at least this many bytes.
    #[arg(long, default_value_t = 1 << 20)]
    compact_min_log_bytes: u64,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("COMMONPAD_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: in a log file or journal they are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let token_on_command_line = matches
        .subcommand_matches("serve")
        .and_then(|m| m.value_source("admin_token"))
        .is_some_and(|s| s == clap::parser::ValueSource::CommandLine);
    if token_on_command_line {
        tracing::warn!(
            "--admin-token on the command line is visible to every user of this machine in the process list; \
             use COMMONPAD_ADMIN_TOKEN or --admin-token-file"
        );
    }
    raise_descriptor_limit();
    // 64 MiB stacks (virtual memory, committed only when touched): yrs deletes nested shared
    // types recursively, and RoomConfig::max_types (50,000) bounds that nesting; 64 MiB leaves
    // over 1 KiB of stack per level.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(64 << 20)
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Serve(args) => serve_command(&rt, args),
        Command::Check { data } => {
            if offline::check(&data)? > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Compact { data } => {
            let _lock = lock_data_dir(&data)?;
            offline::compact(&data)
        }
        Command::Export { data, doc } => offline::export(&data, &doc, &mut std::io::stdout().lock()),
        Command::Import { data, doc, file } => {
            let _lock = lock_data_dir(&data)?;
            offline::import(&data, &doc, &file)
        }
    }
}

/// `commonpad serve`: a single node on its disk store, or a node of a cluster.
fn serve_command(rt: &tokio::runtime::Runtime, args: ServeArgs) -> Result<()> {
    let _lock = lock_data_dir(&args.data)?;
    let mut config = Config {
        max_message_bytes: args.max_message_bytes,
        max_view_message_bytes: args.max_view_message_bytes,
        open: args.open,
        public_url: args.public_url,
        web_dir: args.web_dir,
        ..Config::default()
    };
    config.limits = Limits {
        max_editors_per_doc: args.max_editors_per_doc,
        max_viewers_per_doc: args.max_viewers_per_doc,
        max_conns_per_ip_per_doc: args.max_connections_per_ip_per_doc,
        max_conns_total: args.max_connections,
    };
    config.trusted_proxies = args.trusted_proxies;
    config.room.sync_requests = (args.sync_requests_burst, args.sync_requests_per_minute);
    config.http = HttpLimits {
        header_timeout: Duration::from_millis(args.header_timeout_ms),
        max_pending: args.max_pending_connections,
        max_pending_per_ip: args.max_pending_connections_per_ip,
    };
    config.first_sync_timeout = Duration::from_millis(args.first_sync_timeout_ms);
    config.room.presence = PresenceLimits {
        max_clients: args.max_presence_clients_per_connection,
        max_state_bytes: args.max_presence_state_bytes,
        max_bytes: args.max_presence_bytes_per_connection,
    };
    config.room.compact_min_log_bytes = args.compact_min_log_bytes;
    if let (Some(redis_url), Some(postgres_url)) = (args.redis, args.postgres) {
        if args.no_fsync {
            bail!("--no-fsync is for a single node's disk store; in cluster mode durability is Redis's appendfsync setting");
        }
        let cluster = ClusterConfig {
            redis_url,
            postgres_url,
            node_id: args.node_id,
            lease: std::time::Duration::from_millis(args.lease_ms),
            hang_after_lease: std::env::var("COMMONPAD_FAULT").is_ok_and(|f| f == "hang-after-lease"),
        };
        let token = admin_token(args.admin_token, args.admin_token_file.as_deref())?;
        return rt.block_on(serve_cluster(args.addr, config, cluster, token, args.demo));
    }
    let data = &args.data;
    let key = ServerKey::load_or_create(data)?;
    let sessions = Arc::new(Sessions::open(data, key)?);
    let (admin, fresh) = keys::admin_token(data, admin_token(args.admin_token, args.admin_token_file.as_deref())?)?;
    if fresh {
        // Never the token itself: this is the log stream, kept and shipped by whatever runs us.
        tracing::info!(file = %data.join("admin.token").display(), "admin token generated (mode 0600); read it from the file");
    }
    let mut store = DiskStore::open(data).with_context(|| format!("opening data directory {}", data.display()))?;
    if args.no_fsync {
        tracing::warn!("--no-fsync: updates are acknowledged before they are on disk; a crash or power cut loses them");
        store = store.without_fsync();
    }
    rt.block_on(serve(args.addr, config, Arc::new(store), sessions, admin, args.demo, None))
}

/// Raises the soft limit on open descriptors to the hard limit: every connection is one, and a
/// soft limit of 1024 (a common default) would cap the server far below `--max-connections`.
fn raise_descriptor_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed in.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && {
            let before = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            before == lim.rlim_max || libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0
        }
    };
    if raised {
        tracing::debug!(limit = lim.rlim_cur, "open descriptor limit");
    } else {
        tracing::warn!("could not raise the open descriptor limit; connections may be refused early");
    }
}

/// The admin token given, from the command line, the environment or a file (first line).
fn admin_token(given: Option<String>, file: Option<&std::path::Path>) -> Result<Option<String>> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the admin token from {}", path.display()))?;
            Ok(Some(text.lines().next().unwrap_or("").trim().to_owned()))
        }
        None => Ok(given),
    }
}

/// Cluster mode: connect to Redis and PostgreSQL (failing fast, with what to check), then serve.
async fn serve_cluster(
    addr: SocketAddr,
    config: Config,
    cluster: ClusterConfig,
    admin_token: Option<String>,
    demo: bool,
) -> Result<()> {
    let cluster = Arc::new(
        Cluster::connect(cluster)
            .await
            .context("joining the cluster: check that Redis and PostgreSQL are reachable at --redis and --postgres")?,
    );
    tracing::info!(node = %cluster.node, "cluster mode: updates in Redis streams, snapshots and sessions in PostgreSQL");
    let sessions = Arc::new(Sessions::open_shared(cluster.clone()).await?);
    let (admin, fresh) = keys::shared_admin_token(cluster.as_ref(), admin_token).await?;
    if fresh {
        tracing::info!(
            "admin token generated, stored in PostgreSQL and shared by every node: \
             SELECT value FROM commonpad_settings WHERE name = 'admin_token'"
        );
    }
    let store = Arc::new(ClusterStore::new(cluster.clone()));
    serve(addr, config, store, sessions, admin, demo, Some(cluster)).await
}

async fn serve(
    addr: SocketAddr,
    config: Config,
    store: Arc<dyn Store>,
    sessions: Arc<Sessions>,
    admin: AdminToken,
    demo: bool,
    cluster: Option<Arc<Cluster>>,
) -> Result<()> {
    let running = server::start_node(addr, config, store, sessions.clone(), admin, cluster)
        .await
        .with_context(|| format!("binding {addr}"))?;
    println!("listening on http://{}", running.addr);
    if demo {
        print_demo_links(&running, &sessions).await?;
    }
    std::io::stdout().flush().ok();
    tracing::info!(addr = %running.addr, "ready");
    shutdown_signal().await;
    tracing::info!("shutting down: closing connections, flushing and compacting documents");
    if running.shutdown().await {
        tracing::info!("shutdown complete");
        Ok(())
    } else {
        bail!("shutdown did not finish in time: some documents or background tasks were still running (see the log above)")
    }
}

/// The demo session: made once from the built-in template, reused on later starts.
async fn print_demo_links(running: &server::Running, sessions: &Sessions) -> Result<()> {
    let base = running.app.base_url(Some(&running.addr.to_string()));
    let rec = match sessions.demo() {
        Some(rec) => rec,
        None => {
            let req = CreateSession {
                title: "Supporting governments to implement the UNESCO Recommendation on OER".into(),
                event: Some("CommonPad demo workshop".into()),
                date: None,
                language: Some("en".into()),
                template: None,
            };
            lifecycle::create(&running.hub, sessions, req, true).await.context("creating the demo session")?
        }
    };
    let (edit_url, view_url) = sessions.links(&rec, &base);
    println!("demo session, edit link (participants): {edit_url}");
    println!("demo session, view link (public, read-only): {view_url}");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
