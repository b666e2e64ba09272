//! CommonPad's server: HTTP, sessions and cluster mode, on top of the engine in `commonpad-core`
//! (protocol, rooms, storage), which knows nothing of them.
//!
//! The modules, lowest first; each uses only those before it (docs/architecture.md says how to
//! check):
//! - [`memory`]: giving memory back after a crowd leaves.
//! - [`sessions`]: session records, share-link tokens, the admin token, a session's lifecycle.
//! - [`cluster`]: cluster mode: the shared store, the stream follower, pub/sub, PostgreSQL.
//! - [`connection`]: one WebSocket.
//! - [`http`]: routes (sync, API, web client).
//! - [`listener`]: the accept loop: header timeout, caps on connections not yet upgraded.
//! - [`server`]: start, serve, shut down.

pub mod cluster;
pub mod connection;
pub mod http;
pub mod listener;
pub mod memory;
pub mod server;
pub mod sessions;
