//! The room's connections: joins and leaves, what a client's message asks for, presence, and
//! sending (to one, or encoded once to all). A client that cannot keep up is closed, never waited
//! for.

use super::commit::Refused;
use super::task::{Parked, Room};
use super::{ConnId, ConnSender, Inbound, QueueError, SERVER_AWARENESS_ID};
use crate::close;
use crate::metrics::Reject;
use crate::sync::protocol;
use crate::Role;
use bytes::Bytes;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;
use tracing::{debug, warn};
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, StateVector, Transact, Update};

impl Room {
    pub(super) fn join(&mut self, conn: ConnSender) {
        if self.failed {
            conn.close(close::INTERNAL, "storage failure on the server; reconnect to reload the document");
            return;
        }
        // The reference server's greeting: our state vector, then (in its own frame) who is here.
        let sv = self.doc.transact().state_vector().encode_v1();
        let mut frames = vec![Bytes::from(protocol::encode_sync_step1(&sv))];
        frames.extend(self.awareness.encode_all().iter().map(|f| Bytes::from(protocol::encode_awareness(f))));
        debug!(conn = conn.id, "joined");
        self.idle_since = None;
        let id = conn.id;
        self.conns.insert(id, conn);
        for f in frames {
            self.send_to(id, f);
        }
        self.publish_counts();
    }

    /// Publishes how many editors and viewers are here, under the server's awareness id, when it
    /// changed and once any viewer has come. Viewers are counted, never shown.
    fn publish_counts(&mut self) {
        let editors = self.conns.values().filter(|c| c.role == Role::Edit).count();
        let counts = (editors, self.conns.len() - editors);
        // Until a viewer shows up there is nothing editors cannot see for themselves, and plain Yjs
        // documents stay free of a server entry.
        if counts == self.published_counts || (self.published_counts == (0, 0) && counts.1 == 0) {
            return;
        }
        self.published_counts = counts;
        let json = format!(r#"{{"server":{{"editors":{},"viewers":{}}}}}"#, counts.0, counts.1);
        let update = self.awareness.set_server_state(SERVER_AWARENESS_ID, &json, Instant::now());
        self.broadcast(Bytes::from(protocol::encode_awareness(&update)));
    }

    pub(super) fn leave(&mut self, id: ConnId) {
        if self.conns.remove(&id).is_some() {
            debug!(conn = id, "left");
        }
        self.told_read_only.remove(&id);
        self.parked.retain(|(_, p)| !matches!(p, Parked::Frame(c, _) if *c == id));
        if let Some(removal) = self.awareness.remove_connection(id) {
            if let Some(peers) = &self.peers {
                peers.awareness(&self.name, &removal);
            }
            self.broadcast(Bytes::from(protocol::encode_awareness(&removal)));
        }
        if self.conns.is_empty() {
            self.idle_since = Some(Instant::now());
        }
        self.publish_counts();
    }

    /// Closes the connections of one role (all if `None`); with `unload`, the room unloads as soon
    /// as nobody is attached.
    pub(super) fn kick(&mut self, role: Option<Role>, code: u16, reason: &str, unload: bool) {
        self.unload_asap |= unload;
        let ids: Vec<ConnId> = self.conns.values().filter(|c| role.is_none_or(|r| c.role == r)).map(|c| c.id).collect();
        for id in ids {
            self.drop_conn(id, code, reason);
        }
    }

    pub(super) fn kick_stale(&mut self, role: Role, generation: u64, code: u16, reason: &str) {
        let ids: Vec<ConnId> =
            self.conns.values().filter(|c| c.role == role && c.generation < generation).map(|c| c.id).collect();
        for id in ids {
            self.drop_conn(id, code, reason);
        }
    }

    pub(super) fn on_message(&mut self, id: ConnId, msg: Inbound) {
        match msg {
            Inbound::SyncStep1(sv) => self.sync_answer(id, &sv),
            Inbound::Update { update, raw, types } => self.client_update(id, update, raw, types),
            Inbound::Awareness(bytes) if self.is_viewer(id) => {
                // A viewer's presence stays private: echoed to itself only (its provider counts
                // the echo as a sign of life), never applied or shown to others.
                self.send_to(id, Bytes::from(protocol::encode_awareness(&bytes)));
            }
            Inbound::Awareness(bytes) => self.client_awareness(id, &bytes),
            Inbound::QueryAwareness => {
                let frames = self.awareness.encode_all();
                if frames.is_empty() {
                    self.send_to(id, Bytes::from(protocol::encode_awareness(&[0])));
                }
                for f in frames {
                    self.send_to(id, Bytes::from(protocol::encode_awareness(&f)));
                }
            }
        }
    }

    /// Answers a SyncStep1 with what the client lacks, within the connection's budget.
    fn sync_answer(&mut self, id: ConnId, sv: &StateVector) {
        let (burst, per_minute) = self.config.sync_requests;
        let Some(conn) = self.conns.get_mut(&id) else { return };
        if !conn.take_sync_answer(burst, per_minute) {
            self.metrics.reject(Reject::SyncRequests);
            warn!(conn = id, "too many sync requests; closing");
            self.drop_conn(id, close::TRY_AGAIN_LATER, "too many sync requests; reconnect later");
            return;
        }
        let frame = if sv.is_empty() {
            self.full_state_frame()
        } else {
            Bytes::from(protocol::encode_sync_step2(&self.doc.transact().encode_state_as_update_v1(sv)))
        };
        self.send_when_durable(Parked::Frame(id, frame));
    }

    fn client_awareness(&mut self, id: ConnId, bytes: &[u8]) {
        let limits = self.config.presence;
        match self.awareness.apply(bytes, id, &limits, Instant::now()) {
            // Broadcast even when nothing changed: clients count our echo of their own renewals
            // as a sign of life (y-websocket closes after 30 s of silence).
            Ok(applied) => {
                if let Some(peers) = &self.peers {
                    peers.awareness(&self.name, &applied.update);
                }
                self.broadcast(Bytes::from(protocol::encode_awareness(&applied.update)))
            }
            Err(e) => {
                self.metrics.reject(Reject::Awareness);
                warn!(conn = id, error = %e, "awareness update refused");
                self.drop_conn(id, close::INVALID_DATA, &format!("awareness: {e}"));
            }
        }
    }

    fn is_viewer(&self, id: ConnId) -> bool {
        self.conns.get(&id).is_some_and(|c| c.role == Role::View)
    }

    fn client_update(&mut self, id: ConnId, update: Update, raw: Bytes, types: usize) {
        if self.is_viewer(id) {
            // Never applied, never forwarded, whatever a modified client sends. Told once.
            if self.told_read_only.insert(id) {
                self.send_to(id, Bytes::from(protocol::encode_permission_denied("read-only")));
            }
            return;
        }
        match self.apply_update(update, raw, types) {
            Ok(()) => {}
            Err(Refused::Invalid) => self.drop_conn(id, close::INVALID_DATA, "update could not be applied"),
            Err(Refused::DocumentFull) => {
                let why = format!("this document has reached its size limit ({} KiB)", self.config.max_doc_bytes >> 10);
                self.drop_conn(id, close::DOCUMENT_FULL, &why);
            }
        }
    }

    /// Queues one frame for one connection; a full queue marks a slow client (see `broadcast`).
    pub(super) fn send_to(&mut self, id: ConnId, frame: Bytes) {
        let Some(conn) = self.conns.get(&id) else { return };
        let len = frame.len() as u64;
        match conn.try_queue(frame) {
            Ok(()) => {
                self.metrics.frames_out.fetch_add(1, Relaxed);
                self.metrics.bytes_out.fetch_add(len, Relaxed);
            }
            Err(e) => self.on_send_failed(id, matches!(e, QueueError::Full)),
        }
    }

    /// Queues a frame, encoded once, for every connection. A connection whose queue is full is a
    /// client that cannot keep up: it is closed with 1013 rather than left silently diverged (its
    /// provider reconnects and resyncs from its own state vector), and nobody else waits for it.
    pub(super) fn broadcast(&mut self, frame: Bytes) {
        let mut failed = Vec::new();
        for (id, conn) in &self.conns {
            match conn.try_queue(frame.clone()) {
                Ok(()) => {
                    self.metrics.frames_out.fetch_add(1, Relaxed);
                    self.metrics.bytes_out.fetch_add(frame.len() as u64, Relaxed);
                }
                Err(QueueError::Full) => failed.push((*id, true)),
                Err(QueueError::Closed) => failed.push((*id, false)),
            }
        }
        for (id, slow) in failed {
            self.on_send_failed(id, slow);
        }
    }

    fn on_send_failed(&mut self, id: ConnId, slow: bool) {
        if slow {
            self.metrics.reject(Reject::SlowClient);
            warn!(conn = id, "client too slow for its outbound queue; closing it so it resyncs");
            self.drop_conn(id, close::TRY_AGAIN_LATER, "too slow to keep up; reconnect to resync");
        } else {
            self.leave(id);
        }
    }

    fn drop_conn(&mut self, id: ConnId, code: u16, reason: &str) {
        if let Some(conn) = self.conns.get(&id) {
            conn.close(code, reason);
        }
        self.leave(id);
    }
}
