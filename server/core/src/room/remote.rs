//! Cluster inputs: entries of the document's shared log (other nodes' updates, durable already),
//! other nodes' presence, and word that another node compacted. On a single node none arrive.

use super::task::Room;
use crate::store::RemoteEntry;
use crate::sync::awareness::PresenceLimits;
use crate::sync::{guard, protocol};
use bytes::Bytes;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;
use tracing::{debug, error};

/// What one other node's clients may hold in a room together: that node checked each of its
/// connections against the same per-connection limits; this only bounds the node as a whole.
const REMOTE_PRESENCE: PresenceLimits =
    PresenceLimits { max_clients: 100_000, max_state_bytes: 64 << 10, max_bytes: 64 << 20 };

impl Room {
    /// Entries of the shared log, in order: other nodes' updates are applied and broadcast (they
    /// are durable already); every entry moves the room's position, which a compaction records
    /// as "the snapshot holds everything up to here".
    pub(super) fn on_remote(&mut self, entries: Vec<RemoteEntry>) {
        if self.failed {
            return;
        }
        for entry in entries {
            if entry.position <= self.position {
                continue; // read while loading already
            }
            self.position = entry.position;
            self.sizes.log += entry.updates.iter().map(|u| u.len() as u64).sum::<u64>();
            if entry.own {
                continue; // applied and broadcast when it was appended
            }
            for raw in entry.updates {
                if let Err(e) = self.apply_remote(&raw) {
                    error!(error = %e, at = %entry.position, "an update from the shared log could not be applied; reloading the document");
                    self.fail();
                    return;
                }
                self.metrics.updates_remote.fetch_add(1, Relaxed);
                self.broadcast(Bytes::from(protocol::encode_update(&raw)));
            }
        }
        self.maybe_compact();
    }

    fn apply_remote(&mut self, raw: &[u8]) -> Result<(), String> {
        let (update, types) = guard::decode_update_counted(raw).map_err(|e| e.to_string())?;
        // Counted, never refused: it is durable, and refusing it here would leave this node's
        // clients diverged from everyone else's.
        self.sizes.types += types;
        self.apply_to_doc(update).map_err(|_| "yrs panicked".to_owned())?.map_err(|e| e.to_string())
    }

    pub(super) fn on_remote_awareness(&mut self, owner: u64, update: &[u8]) {
        // Another node checked it against its own client; the cap here only bounds what one
        // node's clients may hold in this room.
        match self.awareness.apply(update, owner, &REMOTE_PRESENCE, Instant::now()) {
            Ok(applied) => self.broadcast(Bytes::from(protocol::encode_awareness(&applied.update))),
            Err(e) => debug!(error = %e, "awareness from another node ignored"),
        }
    }

    pub(super) fn on_peer_compacted(&mut self) {
        self.sizes.log = 0;
        self.compact_not_before = None;
    }
}
