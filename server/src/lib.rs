//! CommonPad's server: a durable hub for Yjs documents.
//!
//! - [`sync`]: the y-websocket protocol, the input guard, awareness (no I/O).
//! - [`room`]: one task per loaded document, owning its `Doc`; group commit and broadcast.
//! - [`hub`]: which rooms are loaded; the way in for connections.
//! - [`connection`]: one WebSocket.
//! - [`store`]: the `Store` trait and its backends (`store::disk`, `store::cluster`).
//! - [`cluster`]: cluster mode: Redis streams and pub/sub, PostgreSQL, the stream follower.
//! - [`sessions`]: session records, share-link tokens, the admin token.
//! - [`http`]: routes (sync, API, web client). [`server`]: start, serve, shut down.

pub mod cluster;
pub mod connection;
pub mod doc_name;
pub mod http;
pub mod hub;
pub mod memory;
pub mod metrics;
pub mod room;
pub mod server;
pub mod sessions;
pub mod store;
pub mod sync;
