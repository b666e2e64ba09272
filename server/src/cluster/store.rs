//! The shared backend for cluster mode: updates in a Redis stream per document, snapshots in
//! PostgreSQL (see [`crate::cluster`] for the model). It only stores: following the stream and
//! telling other nodes about compactions are the room's, through `Peers`.
//!
//! - `append`: one `XADD` per group-committed batch; its reply is the durability point.
//! - `load`: the snapshot, then the stream entries after the snapshot's position, then the
//!   snapshot's position is read again: if a compaction moved it meanwhile (and trimmed what we
//!   were reading), load again.
//! - `replace_snapshot` (compaction): take the lease (`SET NX PX`), take a fencing token
//!   (`INCR`), write the snapshot only if no later token wrote one and it covers at least as much
//!   of the stream as the stored one, then trim the stream up to the snapshot's position and
//!   release the lease. A holder that stalls past its lease can therefore never replace a newer
//!   snapshot, and trimming only ever removes entries a stored snapshot holds.

use super::{keys, tail, Cluster, ClusterError};
use async_trait::async_trait;
use bytes::Bytes;
use commonpad_core::store::{batch, Compacted, Loaded, Position, Store, StoreError};
use redis::streams::StreamRangeReply;
use std::sync::Arc;

pub struct ClusterStore {
    cluster: Arc<Cluster>,
}

/// Entries read per `XRANGE` while loading.
const LOAD_CHUNK: usize = 1000;
/// Compare-and-delete, so a node only ever releases its own lease.
const RELEASE_LEASE: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

impl From<ClusterError> for StoreError {
    fn from(e: ClusterError) -> StoreError {
        StoreError::Unavailable(e.to_string())
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("Redis: {e}"))
}

impl ClusterStore {
    pub fn new(cluster: Arc<Cluster>) -> ClusterStore {
        ClusterStore { cluster }
    }

    /// The snapshot and the entries after it: (what was read, the snapshot's position, the
    /// position of the last entry read).
    async fn load_once(&self, doc: &str) -> Result<(Loaded, Option<Position>, Position), StoreError> {
        let snapshot = self.cluster.pg.load_snapshot(doc).await?;
        let snapshot_at = snapshot.as_ref().map(|s| s.position);
        let start = snapshot_at.unwrap_or_default();
        let mut loaded = Loaded::default();
        if let Some(s) = snapshot {
            loaded.snapshot_bytes = s.state.len() as u64;
            loaded.snapshot = Some(s.state);
        }
        let mut conn = self.cluster.cmd.clone();
        let mut last = start;
        loop {
            let reply: StreamRangeReply = redis::cmd("XRANGE")
                .arg(keys::stream(doc))
                .arg(format!("({last}"))
                .arg("+")
                .arg("COUNT")
                .arg(LOAD_CHUNK)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let n = reply.ids.len();
            for id in &reply.ids {
                let entry = tail::decode_entry(id, &self.cluster.node)
                    .map_err(|detail| StoreError::Corrupt { doc: doc.to_owned(), detail })?;
                last = entry.position;
                for u in entry.updates {
                    loaded.log_bytes += u.len() as u64;
                    loaded.updates.push(u.to_vec());
                }
            }
            if n < LOAD_CHUNK {
                break;
            }
        }
        Ok((loaded, snapshot_at, start.max(last)))
    }
}

#[async_trait]
impl Store for ClusterStore {
    async fn load(&self, doc: &str) -> Result<Loaded, StoreError> {
        for _ in 0..5 {
            let (mut loaded, start, last) = self.load_once(doc).await?;
            // The snapshot we started from is still the stored one: a compaction may trim only
            // after it stores a newer snapshot, so nothing we read was trimmed under us.
            if self.cluster.pg.snapshot_position(doc).await? == start {
                loaded.position = Some(last);
                return Ok(loaded);
            }
            tracing::debug!(doc, "a compaction ran while loading; loading again");
        }
        Err(StoreError::Unavailable("the document kept being compacted while it loaded; try again".into()))
    }

    async fn append(&self, doc: &str, updates: Vec<Bytes>) -> Result<u64, StoreError> {
        let body = batch::encode(&updates);
        let len = body.len() as u64;
        let mut conn = self.cluster.cmd.clone();
        let _id: String = redis::cmd("XADD")
            .arg(keys::stream(doc))
            .arg("*")
            .arg("node")
            .arg(&self.cluster.node)
            .arg("u")
            .arg(body)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(len)
    }

    async fn replace_snapshot(
        &self,
        doc: &str,
        state: Vec<u8>,
        upto: Option<Position>,
    ) -> Result<Compacted, StoreError> {
        let upto = upto.unwrap_or_default();
        let mut conn = self.cluster.cmd.clone();
        let holder = {
            use rand::Rng;
            format!("{}:{:016x}", self.cluster.node, rand::rngs::OsRng.gen::<u64>())
        };
        let lease_ms = self.cluster.config.lease.as_millis() as u64;
        let taken: Option<String> = redis::cmd("SET")
            .arg(keys::lease(doc))
            .arg(&holder)
            .arg("NX")
            .arg("PX")
            .arg(lease_ms)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if taken.is_none() {
            return Ok(Compacted::Skipped);
        }
        let fence: i64 = redis::cmd("INCR").arg(keys::fence(doc)).query_async(&mut conn).await.map_err(unavailable)?;
        self.cluster.lease_taken(doc, true);
        tracing::debug!(doc, fence, upto = %upto, "compaction lease taken");
        if self.cluster.config.hang_after_lease {
            eprintln!("fault: hanging while holding the compaction lease for {doc}");
            tracing::error!(doc, "fault: hanging while holding the compaction lease");
            std::future::pending::<()>().await;
        }
        let result = self.compact_under_lease(doc, &state, upto, fence).await;
        let _: Result<i64, _> =
            redis::Script::new(RELEASE_LEASE).key(keys::lease(doc)).arg(&holder).invoke_async(&mut conn).await;
        self.cluster.lease_taken(doc, false);
        // The room tells the other nodes (`Peers::compacted`): the store only stores.
        Ok(if result? { Compacted::Done } else { Compacted::Skipped })
    }

    /// Nothing is held per document: the room stops following the stream itself
    /// (`Peers::unfollow`).
    async fn release(&self, _doc: &str) {}

    async fn list(&self) -> Result<Vec<String>, StoreError> {
        let mut docs = self.cluster.pg.snapshot_docs().await?;
        let mut conn = self.cluster.cmd.clone();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", keys::STREAM_PREFIX))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            docs.extend(keys.iter().filter_map(|k| k.strip_prefix(keys::STREAM_PREFIX)).map(str::to_owned));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        docs.sort();
        docs.dedup();
        Ok(docs)
    }

    async fn exists(&self, doc: &str) -> Result<bool, StoreError> {
        let mut conn = self.cluster.cmd.clone();
        let streams: i64 =
            redis::cmd("EXISTS").arg(keys::stream(doc)).query_async(&mut conn).await.map_err(unavailable)?;
        Ok(streams > 0 || self.cluster.pg.snapshot_position(doc).await?.is_some())
    }

    async fn delete(&self, doc: &str) -> Result<(), StoreError> {
        let mut conn = self.cluster.cmd.clone();
        let _: i64 = redis::cmd("DEL")
            .arg(keys::stream(doc))
            .arg(keys::lease(doc))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        self.cluster.pg.delete_snapshot(doc).await?;
        Ok(())
    }

    fn shared(&self) -> bool {
        true
    }
}

impl ClusterStore {
    /// Writes the snapshot (fenced) and trims the stream; whether the snapshot was written.
    async fn compact_under_lease(
        &self,
        doc: &str,
        state: &[u8],
        upto: Position,
        fence: i64,
    ) -> Result<bool, StoreError> {
        if !self.cluster.pg.store_snapshot(doc, state, upto, fence).await? {
            tracing::info!(doc, fence, "compaction skipped: a newer snapshot is already stored");
            return Ok(false);
        }
        // XTRIM MINID keeps entries >= the id given: everything after `upto` stays.
        let keep_from = Position { ms: upto.ms, seq: upto.seq.saturating_add(1) };
        let mut conn = self.cluster.cmd.clone();
        let trimmed: i64 = redis::cmd("XTRIM")
            .arg(keys::stream(doc))
            .arg("MINID")
            .arg(keep_from.to_string())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        tracing::info!(doc, fence, snapshot_bytes = state.len(), upto = %upto, trimmed, "compacted into PostgreSQL");
        Ok(true)
    }
}
