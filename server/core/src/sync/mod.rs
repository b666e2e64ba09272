//! Everything that knows the Yjs sync protocol and nothing of HTTP or disks: wire messages, the
//! guard that checks client bytes before yrs reads them, and awareness.
pub mod awareness;
pub mod guard;
pub mod protocol;
