//! PostgreSQL: document snapshots, session records and the cluster's shared secrets.
//!
//! One connection per node, re-opened when it breaks: snapshots are written only by compaction
//! and read only on load, sessions are cached in memory, so a pool would buy nothing. Queries
//! never log the URL (it may hold a password).

use super::ClusterError;
use commonpad_core::store::Position;
use std::sync::{Arc, Mutex};
use tokio_postgres::{Client, NoTls};

pub struct Pg {
    url: String,
    // std Mutex: held only to clone or replace the Arc, never across an await.
    client: Mutex<Option<Arc<Client>>>,
}

/// The tables, created on first start by whichever node gets there first (under an advisory
/// lock, because concurrent `CREATE TABLE IF NOT EXISTS` can still collide).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS commonpad_snapshots (
    doc text PRIMARY KEY,
    state bytea NOT NULL,
    stream_id text NOT NULL,
    stream_ms bigint NOT NULL,
    stream_seq bigint NOT NULL,
    fence bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS commonpad_sessions (
    id text PRIMARY KEY,
    record jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS commonpad_settings (
    name text PRIMARY KEY,
    value text NOT NULL
);";

/// A stored snapshot: the state and the stream position it holds everything up to.
pub struct Snapshot {
    pub state: Vec<u8>,
    pub position: Position,
}

impl Pg {
    pub async fn connect(url: &str) -> Result<Pg, ClusterError> {
        let pg = Pg { url: url.to_owned(), client: Mutex::new(None) };
        let client = pg.client().await?;
        client.batch_execute(&format!("BEGIN; SELECT pg_advisory_xact_lock(4455001); {SCHEMA} COMMIT;")).await?;
        Ok(pg)
    }

    /// The connection, re-opened if it broke.
    pub async fn client(&self) -> Result<Arc<Client>, ClusterError> {
        if let Some(c) = self.client.lock().unwrap_or_else(|p| p.into_inner()).as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection ended; reconnecting on next use");
            }
        });
        let client = Arc::new(client);
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = Some(client.clone());
        Ok(client)
    }

    pub async fn load_snapshot(&self, doc: &str) -> Result<Option<Snapshot>, ClusterError> {
        let c = self.client().await?;
        let row =
            c.query_opt("SELECT state, stream_ms, stream_seq FROM commonpad_snapshots WHERE doc = $1", &[&doc]).await?;
        Ok(row.map(|r| Snapshot {
            state: r.get(0),
            position: Position { ms: r.get::<_, i64>(1) as u64, seq: r.get::<_, i64>(2) as u64 },
        }))
    }

    /// The position of the stored snapshot (cheap: no state), if any.
    pub async fn snapshot_position(&self, doc: &str) -> Result<Option<Position>, ClusterError> {
        let c = self.client().await?;
        let row = c.query_opt("SELECT stream_ms, stream_seq FROM commonpad_snapshots WHERE doc = $1", &[&doc]).await?;
        Ok(row.map(|r| Position { ms: r.get::<_, i64>(0) as u64, seq: r.get::<_, i64>(1) as u64 }))
    }

    /// Writes a snapshot unless a holder of a later lease (a higher fence) already wrote one, or
    /// the stored one covers more of the stream. Returns whether it was written. This condition
    /// is what makes a stale lease holder harmless: it can never replace a newer snapshot.
    pub async fn store_snapshot(
        &self,
        doc: &str,
        state: &[u8],
        position: Position,
        fence: i64,
    ) -> Result<bool, ClusterError> {
        let c = self.client().await?;
        let n = c
            .execute(
                "INSERT INTO commonpad_snapshots (doc, state, stream_id, stream_ms, stream_seq, fence, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, now())
                 ON CONFLICT (doc) DO UPDATE SET state = EXCLUDED.state, stream_id = EXCLUDED.stream_id,
                    stream_ms = EXCLUDED.stream_ms, stream_seq = EXCLUDED.stream_seq, fence = EXCLUDED.fence,
                    updated_at = now()
                 WHERE commonpad_snapshots.fence < EXCLUDED.fence
                   AND (commonpad_snapshots.stream_ms, commonpad_snapshots.stream_seq)
                       <= (EXCLUDED.stream_ms, EXCLUDED.stream_seq)",
                &[&doc, &state, &position.to_string(), &(position.ms as i64), &(position.seq as i64), &fence],
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn delete_snapshot(&self, doc: &str) -> Result<(), ClusterError> {
        self.client().await?.execute("DELETE FROM commonpad_snapshots WHERE doc = $1", &[&doc]).await?;
        Ok(())
    }

    pub async fn snapshot_docs(&self) -> Result<Vec<String>, ClusterError> {
        let rows = self.client().await?.query("SELECT doc FROM commonpad_snapshots ORDER BY doc", &[]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    // ---- sessions: records as JSON text (the same serde form the disk backend writes).

    pub async fn session(&self, id: &str) -> Result<Option<String>, ClusterError> {
        let row =
            self.client().await?.query_opt("SELECT record::text FROM commonpad_sessions WHERE id = $1", &[&id]).await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn sessions(&self) -> Result<Vec<String>, ClusterError> {
        let rows = self.client().await?.query("SELECT record::text FROM commonpad_sessions", &[]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub async fn put_session(&self, id: &str, record: &str) -> Result<(), ClusterError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO commonpad_sessions (id, record) VALUES ($1, $2::text::jsonb)
                 ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
                &[&id, &record],
            )
            .await?;
        Ok(())
    }

    /// Bumps one generation field atomically (two nodes rotating at once both count) and returns
    /// the new record, or `None` if there is no such session.
    pub async fn bump_generation(&self, id: &str, field: &str) -> Result<Option<String>, ClusterError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "UPDATE commonpad_sessions
                 SET record = jsonb_set(record, ARRAY[$2::text], to_jsonb(COALESCE((record->>$2)::bigint, 0) + 1))
                 WHERE id = $1 RETURNING record::text",
                &[&id, &field],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn delete_session(&self, id: &str) -> Result<bool, ClusterError> {
        let n = self.client().await?.execute("DELETE FROM commonpad_sessions WHERE id = $1", &[&id]).await?;
        Ok(n == 1)
    }

    // ---- settings: the server key and the admin token, shared by every node.

    /// The stored value, or `value` stored now if there was none (the first node wins).
    pub async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String, ClusterError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO commonpad_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &value],
        )
        .await?;
        let row = c.query_one("SELECT value FROM commonpad_settings WHERE name = $1", &[&name]).await?;
        Ok(row.get(0))
    }

    pub async fn put_setting(&self, name: &str, value: &str) -> Result<(), ClusterError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO commonpad_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                &[&name, &value],
            )
            .await?;
        Ok(())
    }
}
