//! The durability pipeline: apply in memory -> hand to the store -> once durable, broadcast and
//! release what waited for it. Also compaction, storage failure, and the flush at unload.
//!
//! The rule everything here keeps: nothing derived from update n reaches anyone (its sender
//! included) before the store has said update n is durable (`durable >= n`).

use super::task::{joined, Compaction, Done, Op, Parked, Room, Running};
use super::{ApplyRefused, ServerApply};
use crate::close;
use crate::metrics::Reject;
use crate::store::{Compacted, StoreError};
use crate::sync::protocol;
use bytes::Bytes;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};
use yrs::{ReadTxn, StateVector, Transact, Update};

/// How long an unload or a shutdown waits for a compaction running beside the pipeline.
const FINISH_COMPACTION_WAIT: Duration = Duration::from_secs(30);
/// How long to leave compaction to the node holding the lease before trying again.
const COMPACT_RETRY: Duration = Duration::from_secs(2);

/// Why an update was not applied.
pub(super) enum Refused {
    /// Malformed, over the type limit, refused by yrs, or the room has failed.
    Invalid,
    /// The document would pass `RoomConfig::max_doc_bytes`.
    DocumentFull,
}

impl Room {
    /// An update from the server itself: answered once durable, or refused.
    pub(super) fn server_apply(&mut self, apply: ServerApply) {
        let ServerApply { update, raw, types, reply } = apply;
        if self.apply_update(update, raw, types).is_ok() {
            self.send_when_durable(Parked::Ack(reply));
        } else if !self.failed {
            let _ = reply.send(Err(ApplyRefused));
        }
    }

    /// Applies an update in memory and queues it for the store. An empty update is a no-op that
    /// counts as applied (nothing to make durable).
    pub(super) fn apply_update(&mut self, update: Update, raw: Bytes, types: usize) -> Result<(), Refused> {
        if self.failed {
            return Err(Refused::Invalid);
        }
        if self.sizes.types.saturating_add(types) > self.config.max_types {
            self.metrics.reject(Reject::Malformed);
            warn!(types, stored = self.sizes.types, "update refused: the document would exceed its shared-type limit");
            return Err(Refused::Invalid);
        }
        let stored = self.sizes.snapshot + self.sizes.log + self.sizes.unstored;
        if !update.is_empty() && stored.saturating_add(raw.len() as u64) > self.config.max_doc_bytes {
            self.metrics.reject(Reject::DocumentFull);
            warn!(stored, update = raw.len(), "update refused: the document would pass its size limit");
            return Err(Refused::DocumentFull);
        }
        if update.is_empty() {
            return Ok(()); // an empty SyncStep2 (a client with nothing new) changes nothing
        }
        // yrs should not panic on an update the guard let through, but if it ever does, the Doc
        // may be half-changed: refuse the update and reload the document from disk (where the
        // update never went) rather than take the process down or serve a damaged state.
        match self.apply_to_doc(update) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.metrics.reject(Reject::Malformed);
                warn!(error = %e, "update refused by yrs");
                return Err(Refused::Invalid);
            }
            Err(_) => {
                self.metrics.reject(Reject::Malformed);
                error!("yrs panicked applying an update; reloading the document from disk");
                self.fail();
                return Err(Refused::Invalid);
            }
        }
        self.sizes.unstored += raw.len() as u64;
        self.applied += 1;
        self.sizes.types += types;
        self.pending.push(raw);
        self.start_next_op();
        Ok(())
    }

    /// Applies an update to the `Doc`, catching a yrs panic (the outer `Err`: the `Doc` may be
    /// half-changed and must be reloaded) apart from a refusal (the inner `Err`).
    pub(super) fn apply_to_doc(&mut self, update: Update) -> std::thread::Result<Result<(), yrs::error::UpdateError>> {
        self.version += 1;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.doc.transact_mut().apply_update(update)))
    }

    /// The whole document as a SyncStep2 frame, encoded once per version and shared by every
    /// connection that asks with an empty state vector (a new client, a viewer, a flood).
    pub(super) fn full_state_frame(&mut self) -> Bytes {
        if let Some((version, frame)) = &self.full_state {
            if *version == self.version {
                return frame.clone();
            }
        }
        let state = self.doc.transact().encode_state_as_update_v1(&StateVector::default());
        let frame = Bytes::from(protocol::encode_sync_step2(&state));
        self.full_state = Some((self.version, frame.clone()));
        frame
    }

    /// Starts the next append if none is under way: everything pending goes as one batch.
    pub(super) fn start_next_op(&mut self) {
        if self.inflight.is_some() || self.failed || self.pending.is_empty() {
            return;
        }
        let updates = std::mem::take(&mut self.pending);
        let upto = self.applied;
        let (store, name, to_store) = (self.store.clone(), self.name.clone(), updates.clone());
        let handle = tokio::spawn(async move { store.append(&name, to_store).await.map(Done::Appended) });
        self.inflight = Some((Op::Append { upto, updates, started: Instant::now() }, handle));
    }

    /// Compacts once the log outgrows the snapshot (and the minimum), unless another node was
    /// found compacting a moment ago.
    pub(super) fn maybe_compact(&mut self) {
        if self.sizes.log <= self.sizes.snapshot.max(self.config.compact_min_log_bytes) {
            return;
        }
        if self.compact_not_before.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.start_compaction();
    }

    /// Where the mode puts a compaction.
    fn compaction_slot(&mut self) -> &mut Option<Running> {
        match self.compaction {
            Compaction::InPipeline => &mut self.inflight,
            Compaction::Beside => &mut self.compacting,
        }
    }

    pub(super) fn start_compaction(&mut self) {
        if self.failed || self.compaction_slot().is_some() {
            return;
        }
        let state = self.doc.transact().encode_state_as_update_v1(&StateVector::default());
        let state_len = state.len() as u64;
        let (store, name) = (self.store.clone(), self.name.clone());
        let upto = self.compaction.upto(self.position);
        let handle = tokio::spawn(async move { store.replace_snapshot(&name, state, upto).await.map(Done::Compacted) });
        *self.compaction_slot() = Some((Op::Compact { state_len, upto: self.applied }, handle));
    }

    pub(super) fn on_store_done(&mut self, op: Op, result: Result<Done, StoreError>) {
        match (op, result) {
            (Op::Append { upto, updates, started }, Ok(done)) => {
                self.metrics.observe_fsync(started.elapsed());
                self.metrics.updates_durable.fetch_add(updates.len() as u64, Relaxed);
                self.durable = self.durable.max(upto);
                let batch: u64 = updates.iter().map(|u| u.len() as u64).sum();
                self.sizes.unstored = self.sizes.unstored.saturating_sub(batch);
                if let (true, Done::Appended(log_len)) = (self.compaction.append_reports_log_size(), done) {
                    self.sizes.log = log_len;
                }
                for raw in updates {
                    self.broadcast(Bytes::from(protocol::encode_update(&raw)));
                }
                self.release_parked();
                self.maybe_compact();
            }
            (Op::Compact { .. }, Ok(Done::Compacted(Compacted::Skipped)) | Ok(Done::Appended(_))) => {
                // Another node holds the lease (or stored a newer snapshot): it compacts; look
                // again in a while. Nothing became durable through us.
                self.compact_not_before = Some(Instant::now() + COMPACT_RETRY);
            }
            (Op::Compact { state_len, upto }, Ok(Done::Compacted(Compacted::Done))) => {
                self.metrics.compactions.fetch_add(1, Relaxed);
                self.durable = self.durable.max(upto);
                self.release_parked();
                debug!(snapshot_bytes = state_len, log_bytes = self.sizes.log, "compacted");
                self.sizes.snapshot = state_len;
                self.sizes.log = 0;
                if let (true, Some(peers)) = (self.compaction.announced(), &self.peers) {
                    peers.compacted(&self.name);
                }
            }
            (Op::Compact { .. }, Err(e)) if !self.compaction.failure_is_fatal() => {
                // Nothing acknowledged depends on a compaction: the stream still holds it all.
                warn!(error = %e, "compaction failed; the stream keeps everything, trying again later");
                self.compact_not_before = Some(Instant::now() + COMPACT_RETRY);
            }
            (_, Err(e)) => {
                self.metrics.storage_failures.fetch_add(1, Relaxed);
                error!(error = %e, "STORAGE FAILURE: nothing in this batch was acknowledged; closing connections and reloading from disk");
                self.fail();
                return;
            }
        }
        self.start_next_op();
    }

    /// Storage failed (or yrs misbehaved): acknowledge nothing more, tell every writer, and let the
    /// loop unload the room so the next connection reloads the document from storage.
    pub(super) fn fail(&mut self) {
        self.failed = true;
        self.pending.clear();
        self.parked.clear();
        for conn in self.conns.values() {
            conn.close(close::INTERNAL, "storage failure on the server; reconnect to reload the document");
        }
        self.conns.clear();
        self.idle_since = Some(Instant::now());
    }

    pub(super) fn send_when_durable(&mut self, reply: Parked) {
        if self.durable >= self.applied {
            self.deliver(reply);
        } else {
            self.parked.push_back((self.applied, reply));
        }
    }

    fn release_parked(&mut self) {
        while self.parked.front().is_some_and(|(seq, _)| *seq <= self.durable) {
            if let Some((_, reply)) = self.parked.pop_front() {
                self.deliver(reply);
            }
        }
    }

    fn deliver(&mut self, reply: Parked) {
        match reply {
            Parked::Frame(id, frame) => self.send_to(id, frame),
            Parked::Snapshot(tx, state) => {
                let _ = tx.send(state);
            }
            Parked::Ack(tx) => {
                let _ = tx.send(Ok(()));
            }
        }
    }

    /// Waits up to `wait` for a compaction; one still running then is abandoned (the log keeps
    /// everything, and a shared store's lease expires by itself).
    async fn wait_compaction(&mut self, (op, mut handle): Running, wait: Duration) {
        match tokio::time::timeout(wait, &mut handle).await {
            Ok(res) => self.on_store_done(op, joined(res)),
            Err(_) => {
                handle.abort();
                warn!("compaction did not finish in time at unload; abandoned (the log keeps everything)");
            }
        }
    }

    /// Makes everything durable and compacts: on unload and on shutdown.
    pub(super) async fn finish(&mut self) {
        for _ in 0..3 {
            if let Some((op, handle)) = self.inflight.take() {
                let res = joined(handle.await);
                self.on_store_done(op, res);
            }
            if self.inflight.is_none() && self.pending.is_empty() {
                break;
            }
            self.start_next_op();
        }
        if let Some(running) = self.compacting.take() {
            // A compaction that hangs (a lease holder stuck on the database) must not hold the
            // unload or the shutdown forever; its lease expires by itself.
            self.wait_compaction(running, FINISH_COMPACTION_WAIT).await;
        }
        if self.failed {
            return;
        }
        if self.unload_asap && !self.compaction.compacts_deleted() {
            // The session is being deleted: another node deletes the shared stream and snapshot
            // now, and a snapshot written here would bring the document back.
            info!("document unloaded (deleted)");
            return;
        }
        if self.sizes.log > 0 {
            self.start_compaction();
            let wait = self.compaction.finish_wait(FINISH_COMPACTION_WAIT);
            if let Some(running) = self.compaction_slot().take() {
                self.wait_compaction(running, wait).await;
            }
        }
        info!("document unloaded");
    }
}
