//! CommonPad's engine: everything a durable Yjs hub needs that is not HTTP, Redis or PostgreSQL.
//!
//! - [`sync`]: the y-websocket protocol, the input guard, awareness (no I/O).
//! - [`room`]: one task per loaded document, owning its `Doc`; group commit and broadcast.
//! - [`hub`]: which rooms are loaded; the way in for connections and the server's own writes.
//! - [`store`]: the `Store` trait, the batch codec, atomic file writes and the disk store.
//! - Leaves used by all of them: [`role`], [`close`] codes, [`doc_name`], [`metrics`], [`rate`].
//!
//! The server crate (`commonpad-server`) builds HTTP, sessions and cluster mode on top; nothing
//! here may depend on it, which the compiler enforces (see docs/architecture.md).

pub mod close;
pub mod doc_name;
pub mod hub;
pub mod metrics;
pub mod rate;
pub mod role;
pub mod room;
pub mod store;
pub mod sync;

pub use role::Role;
