//! The `commonpad` binary: the command line, logging, signals; the offline commands are in
//! `offline.rs`. Everything else is in the libraries.

mod cli;
mod offline;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Command, ServeArgs};
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
use std::sync::Arc;
use std::time::Duration;

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
    config.update_rate = (args.updates_burst, args.updates_per_second);
    config.message_timeout = Duration::from_millis(args.message_timeout_ms);
    config.max_unfinished_message_bytes = args.max_unfinished_message_bytes;
    config.open_creations = (args.open_creations_burst, args.open_creations_per_minute);
    config.room.max_doc_bytes = args.max_doc_bytes;
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
