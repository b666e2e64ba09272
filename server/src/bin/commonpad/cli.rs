//! The command line: `commonpad serve` with every setting and limit (docs/security.md lists the
//! limits), and the offline commands. Only definitions; `main.rs` acts on them.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "commonpad", version, about = "A durable, self-hosted sync server for Yjs documents")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start: the serve variant's size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
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
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "COMMONPAD_ADDR", default_value = "127.0.0.1:4455")]
    pub addr: SocketAddr,
    /// Data directory (created if missing).
    #[arg(long, env = "COMMONPAD_DATA", default_value = "commonpad-data")]
    pub data: PathBuf,
    /// Let anyone sync any document without a token.
    #[arg(long)]
    pub open: bool,
    /// Largest WebSocket message accepted, in bytes.
    #[arg(long, default_value_t = 8 << 20)]
    pub max_message_bytes: usize,
    /// Largest message a view connection may send (a state vector and its presence are a few
    /// kilobytes; the view link is public).
    #[arg(long, default_value_t = 64 << 10)]
    pub max_view_message_bytes: usize,
    /// Most editors connected to one document (viewers have their own cap, so a public view link
    /// can never lock editors out).
    #[arg(long, alias = "max-connections-per-doc", default_value_t = 1000)]
    pub max_editors_per_doc: usize,
    /// Most viewers connected to one document.
    #[arg(long, default_value_t = 1000)]
    pub max_viewers_per_doc: usize,
    /// Most connections to one document from one client address (a venue's Wi-Fi is one address
    /// for the whole room).
    #[arg(long, default_value_t = 1000)]
    pub max_connections_per_ip_per_doc: usize,
    /// A reverse proxy whose X-Forwarded-For names the client (repeat for several); other peers'
    /// X-Forwarded-For is ignored.
    #[arg(long = "trusted-proxy", value_name = "IP")]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Presence (cursors, names): client ids one connection may hold.
    #[arg(long, default_value_t = 8)]
    pub max_presence_clients_per_connection: usize,
    /// Presence: bytes of one client's state (a real one is a few hundred).
    #[arg(long, default_value_t = 8 << 10)]
    pub max_presence_state_bytes: usize,
    /// Presence: bytes of all of one connection's states.
    #[arg(long, default_value_t = 32 << 10)]
    pub max_presence_bytes_per_connection: usize,
    /// Sync requests (each answered with what the client lacks, up to the whole document) one
    /// connection may send at once; a client sends one per connection.
    #[arg(long, default_value_t = 8)]
    pub sync_requests_burst: u32,
    /// How long a client may take to send a request's headers, and an idle keep-alive connection
    /// stays open, in ms.
    #[arg(long, default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// Connections not (yet) upgraded to a WebSocket, in all.
    #[arg(long, default_value_t = 10_000)]
    pub max_pending_connections: usize,
    /// Connections not (yet) upgraded to a WebSocket from one address (browsers keep a few idle
    /// ones each; a venue's Wi-Fi is one address).
    #[arg(long, default_value_t = 2_000)]
    pub max_pending_connections_per_ip: usize,
    /// How long one message may take to arrive whole, in ms (a pong does not extend it).
    #[arg(long, default_value_t = 60_000)]
    pub message_timeout_ms: u64,
    /// Bytes of messages not received whole yet, server-wide (what clients sending large
    /// messages slowly can make the server hold).
    #[arg(long, default_value_t = 256 << 20)]
    pub max_unfinished_message_bytes: usize,
    /// How long an upgraded socket may take to send its first sync request, in ms.
    #[arg(long, default_value_t = 20_000)]
    pub first_sync_timeout_ms: u64,
    /// Updates one connection may send at once (a paste is one, a keystroke one).
    #[arg(long, default_value_t = 2000)]
    pub updates_burst: u32,
    /// Updates one connection may send per second once its burst is spent.
    #[arg(long, default_value_t = 200)]
    pub updates_per_second: u32,
    /// Largest a document may grow in storage (its snapshot and the updates since), in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_doc_bytes: u64,
    /// With --open: new documents that may be created at once, server-wide.
    #[arg(long, default_value_t = 60)]
    pub open_creations_burst: u32,
    /// With --open: new documents that may be created per minute once the burst is spent.
    #[arg(long, default_value_t = 60)]
    pub open_creations_per_minute: u32,
    /// Sync requests one connection may send per minute once its burst is spent.
    #[arg(long, default_value_t = 12)]
    pub sync_requests_per_minute: u32,
    /// Most connections in total.
    #[arg(long, default_value_t = 20_000)]
    pub max_connections: usize,
    /// Acknowledge updates without fsync. Only for like-for-like benchmarks: a crash loses data.
    #[arg(long)]
    pub no_fsync: bool,
    /// The admin token (at least 16 characters); generated and kept in DIR/admin.token if absent.
    /// Prefer the environment or --admin-token-file: a command line is visible in the process list.
    #[arg(long, env = "COMMONPAD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A file holding the admin token (its first line).
    #[arg(long, env = "COMMONPAD_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,
    /// Base URL of the share links (e.g. https://pad.example.org); default: from the request.
    #[arg(long, env = "COMMONPAD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The built web client.
    #[arg(long, env = "COMMONPAD_WEB_DIR", default_value = "web-client/dist")]
    pub web_dir: PathBuf,
    /// Make (once) a demo session from the built-in template and print its links.
    #[arg(long)]
    pub demo: bool,
    /// Cluster mode: Redis for the update streams and pub/sub (redis://HOST:PORT/). Needs
    /// --postgres too; without both the node runs alone on its disk store.
    #[arg(long, env = "COMMONPAD_REDIS", hide_env_values = true, requires = "postgres")]
    pub redis: Option<String>,
    /// Cluster mode: PostgreSQL for snapshots, sessions and shared secrets
    /// (postgres://USER@HOST:PORT/DB).
    #[arg(long, env = "COMMONPAD_POSTGRES", hide_env_values = true, requires = "redis")]
    pub postgres: Option<String>,
    /// Cluster mode: this node's name in /metrics and in the streams (default: random).
    #[arg(long, env = "COMMONPAD_NODE_ID")]
    pub node_id: Option<String>,
    /// Cluster mode: how long a compaction lease lasts if its holder dies, in ms.
    #[arg(long, default_value_t = 30_000)]
    pub lease_ms: u64,
    /// Compact a document once its log (or stream) since the last snapshot is larger than
    /// the snapshot and at least this many bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub compact_min_log_bytes: u64,
}
