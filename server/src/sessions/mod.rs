//! Sessions: the workshop documents CommonPad hosts. A session is a record (title, event, date, and
//! the generation of each share link) plus two documents, `{id}` and `{id}.private`. Its links carry
//! tokens signed with the server key (see [`keys`]); rotating a role bumps its generation, which
//! invalidates every older token of that role.
//!
//! On a single node, records live as one small JSON file each under `DATA/sessions/`, written
//! atomically (temporary file, fsync, rename, directory fsync), read once at start and cached. In
//! cluster mode they live in PostgreSQL (`commonpad_sessions`), every node caches them, fetches a
//! record it does not know on first use, re-reads one when another node announces a change, and
//! re-reads them all every 10 s in case an announcement was lost (the cluster reaches this module
//! through [`SharedRecords`]; this module never names the cluster).
//!
//! Creating, rotating and deleting a session, with what each does to its documents and its
//! connections, is [`lifecycle`]'s.

pub mod keys;
pub mod lifecycle;
mod shared;

pub use shared::{SessionChange, SharedRecords};

use commonpad_core::store::atomic::{self, write_atomic};
use commonpad_core::Role;
use keys::ServerKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0} is not a 32-byte server key; restore it from a backup (every link depends on it)")]
    BadKeyFile(PathBuf),
    #[error("the admin token must be at least 16 characters")]
    WeakAdminToken,
    #[error("session record {0} is damaged: {1}")]
    Corrupt(PathBuf, String),
    #[error("no such session")]
    NotFound,
    #[error("shared session store: {0}")]
    Shared(String),
}

impl From<atomic::FileError> for SessionError {
    fn from(e: atomic::FileError) -> SessionError {
        SessionError::Io { path: e.path, source: e.source }
    }
}

impl SessionError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> SessionError {
        SessionError::Io { path: path.to_owned(), source }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub event: String,
    #[serde(default)]
    pub date: String,
    pub created_at_ms: u64,
    #[serde(default)]
    pub edit_generation: u64,
    #[serde(default)]
    pub view_generation: u64,
    /// The demo session the run command prints links to (made once, reused).
    #[serde(default)]
    pub demo: bool,
    /// Deleted: the record stays, emptied, as a tombstone, so that the session's names are never
    /// served again (not even as open documents) and never given to a new session.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl SessionRecord {
    /// The generation of a role's link: tokens of an older one no longer verify.
    pub fn generation(&self, role: Role) -> u64 {
        match role {
            Role::Edit => self.edit_generation,
            Role::View => self.view_generation,
        }
    }
}

/// How long "no such session" is remembered (cluster mode), and for how many names at most.
const MISS_TTL: std::time::Duration = std::time::Duration::from_secs(2);
const MAX_MISSES: usize = 10_000;

enum Backend {
    /// One JSON file per session under this directory.
    Files(PathBuf),
    /// Shared by the nodes of a cluster (PostgreSQL).
    Shared(Arc<dyn SharedRecords>),
}

pub struct Sessions {
    backend: Backend,
    /// Cluster mode: ids recently looked up and not found, so that requests for names that are
    /// not sessions (open documents, or a flood of made-up ones) do not each cost a query.
    misses: std::sync::Mutex<HashMap<String, std::time::Instant>>,
    key: ServerKey,
    // std RwLock: held for a map read or a single insert, never across an await or I/O.
    records: RwLock<HashMap<String, SessionRecord>>,
}

/// Splits a document name into its session id and whether it is the private document.
pub fn split_doc(doc: &str) -> (&str, bool) {
    match doc.strip_suffix(commonpad_schema::schema().private_suffix.as_str()) {
        Some(id) => (id, true),
        None => (doc, false),
    }
}

/// The two documents of a session: the shared one and the private one.
pub fn documents(id: &str) -> [String; 2] {
    [id.to_owned(), commonpad_schema::private_doc_name(id)]
}

/// A new session id: 12 characters of lowercase base32 (60 random bits), a valid document name.
pub fn new_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    (0..12).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

impl Sessions {
    pub fn open(data: &Path, key: ServerKey) -> Result<Sessions, SessionError> {
        let dir = data.join("sessions");
        atomic::private_dir(&dir)?;
        let mut records = HashMap::new();
        for entry in fs::read_dir(&dir).map_err(|e| SessionError::io(&dir, e))? {
            let path = entry.map_err(|e| SessionError::io(&dir, e))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text = fs::read_to_string(&path).map_err(|e| SessionError::io(&path, e))?;
            let rec: SessionRecord =
                serde_json::from_str(&text).map_err(|e| SessionError::Corrupt(path.clone(), e.to_string()))?;
            records.insert(rec.id.clone(), rec);
        }
        Ok(Sessions { backend: Backend::Files(dir), misses: Default::default(), key, records: RwLock::new(records) })
    }

    /// Cluster mode: records shared by the nodes, the server key shared through them.
    pub async fn open_shared(shared: Arc<dyn SharedRecords>) -> Result<Sessions, SessionError> {
        let key = ServerKey::shared(shared.as_ref()).await?;
        let sessions = Sessions {
            backend: Backend::Shared(shared),
            misses: Default::default(),
            key,
            records: RwLock::new(HashMap::new()),
        };
        sessions.try_refresh_all().await?;
        Ok(sessions)
    }

    fn parse(text: &str) -> Result<SessionRecord, SessionError> {
        serde_json::from_str(text)
            .map_err(|e| SessionError::Corrupt(PathBuf::from("commonpad_sessions"), e.to_string()))
    }

    async fn try_refresh_all(&self) -> Result<(), SessionError> {
        let Backend::Shared(shared) = &self.backend else { return Ok(()) };
        let mut fresh = HashMap::new();
        for text in shared.records().await? {
            match Self::parse(&text) {
                Ok(rec) => {
                    fresh.insert(rec.id.clone(), rec);
                }
                Err(e) => tracing::error!(error = %e, "damaged session record skipped"),
            }
        }
        *self.write() = fresh;
        Ok(())
    }

    /// Re-reads every record (cluster mode; a no-op on a single node).
    pub async fn refresh_all(&self) {
        if let Err(e) = self.try_refresh_all().await {
            tracing::warn!(error = %e, "could not re-read the session records; keeping the cached ones");
        }
    }

    /// Re-reads one record (cluster mode: another node changed or deleted it).
    pub async fn refresh(&self, id: &str) {
        let Backend::Shared(shared) = &self.backend else { return };
        match shared.record(id).await {
            Ok(Some(text)) => match Self::parse(&text) {
                Ok(rec) => {
                    self.write().insert(rec.id.clone(), rec);
                }
                Err(e) => tracing::error!(error = %e, "damaged session record"),
            },
            Ok(None) => {
                self.write().remove(id);
            }
            Err(e) => tracing::warn!(error = %e, "could not re-read a session record"),
        }
    }

    /// Makes sure a record another node created is known here before it is looked up (cluster
    /// mode; on a single node the cache is complete).
    pub async fn ensure_cached(&self, id: &str) {
        if !matches!(self.backend, Backend::Shared(_))
            || self.is_reserved(id)
            || !commonpad_core::doc_name::is_valid(id)
        {
            return;
        }
        let now = std::time::Instant::now();
        {
            let mut misses = self.misses();
            if misses.get(id).is_some_and(|t| now.duration_since(*t) < MISS_TTL) {
                return;
            }
            if misses.len() >= MAX_MISSES {
                misses.retain(|_, t| now.duration_since(*t) < MISS_TTL);
                if misses.len() >= MAX_MISSES {
                    misses.clear();
                }
            }
        }
        self.refresh(id).await;
        if self.get(id).is_none() {
            self.misses().insert(id.to_owned(), now);
        }
    }

    async fn announce(&self, id: &str, kick: Option<Role>, deleted: bool) {
        if let Backend::Shared(shared) = &self.backend {
            shared.announce(&SessionChange { id: id.to_owned(), kick, deleted }).await;
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, SessionRecord>> {
        // Writers replace whole entries, so a poisoned map is still consistent.
        self.records.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, SessionRecord>> {
        self.records.write().unwrap_or_else(|p| p.into_inner())
    }

    fn misses(&self) -> std::sync::MutexGuard<'_, HashMap<String, std::time::Instant>> {
        // Held for one map operation; a poisoned map is still consistent.
        self.misses.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A live session's record (a deleted one's is not).
    pub fn get(&self, id: &str) -> Option<SessionRecord> {
        self.read().get(id).filter(|r| !r.deleted).cloned()
    }

    /// Every record, deleted ones included.
    pub fn all(&self) -> Vec<SessionRecord> {
        self.read().values().cloned().collect()
    }

    /// Whether `id` names a deleted session (whose names stay reserved).
    pub fn is_deleted(&self, id: &str) -> bool {
        self.read().get(id).is_some_and(|r| r.deleted)
    }

    /// Whether `id` was ever given to a session, deleted or not.
    pub fn is_reserved(&self, id: &str) -> bool {
        self.read().contains_key(id)
    }

    pub fn demo(&self) -> Option<SessionRecord> {
        self.read().values().find(|r| r.demo && !r.deleted).cloned()
    }

    pub fn token(&self, rec: &SessionRecord, role: Role) -> String {
        self.key.token(&rec.id, role, rec.generation(role))
    }

    /// The edit and view links of a session under `base` (`https://pad.example.org`): the web
    /// client's page with the token in the fragment, which browsers never send to a server.
    pub fn links(&self, rec: &SessionRecord, base: &str) -> (String, String) {
        let link = |role: Role| format!("{base}/s/{}#{role}={}", rec.id, self.token(rec, role));
        (link(Role::Edit), link(Role::View))
    }

    /// The role a token grants on a session, if any.
    pub fn role_for(&self, id: &str, token: &str) -> Option<Role> {
        let rec = self.get(id)?;
        Role::ALL.into_iter().find(|role| self.key.verify(token, id, *role, rec.generation(*role)))
    }

    /// Stores a record durably.
    pub async fn put(&self, rec: SessionRecord) -> Result<(), SessionError> {
        self.store_record(&rec).await?;
        let id = rec.id.clone();
        self.misses().remove(&id);
        self.write().insert(rec.id.clone(), rec);
        self.announce(&id, None, false).await;
        Ok(())
    }

    /// Bumps a role's generation: every older link of that role stops working, on every node
    /// (their connections are closed by the caller here, and through the announcement elsewhere).
    pub async fn rotate(&self, id: &str, role: Role) -> Result<SessionRecord, SessionError> {
        let rec = match &self.backend {
            Backend::Files(_) => {
                let mut rec = self.get(id).ok_or(SessionError::NotFound)?;
                match role {
                    Role::Edit => rec.edit_generation += 1,
                    Role::View => rec.view_generation += 1,
                }
                self.put(rec.clone()).await?;
                rec
            }
            Backend::Shared(shared) => {
                // Atomic in the database: two nodes rotating at once both count.
                let text = shared.bump_generation(id, role).await?.ok_or(SessionError::NotFound)?;
                let rec = Self::parse(&text)?;
                if rec.deleted {
                    return Err(SessionError::NotFound);
                }
                self.write().insert(rec.id.clone(), rec.clone());
                rec
            }
        };
        self.announce(id, Some(role), false).await;
        Ok(rec)
    }

    /// Marks a session deleted: its record becomes an emptied tombstone, so no token verifies and
    /// its names stay reserved. Its documents are deleted by the caller.
    pub async fn remove(&self, id: &str) -> Result<(), SessionError> {
        let live = self.get(id).ok_or(SessionError::NotFound)?;
        let tombstone = SessionRecord {
            id: live.id,
            title: String::new(),
            event: String::new(),
            date: String::new(),
            created_at_ms: live.created_at_ms,
            edit_generation: live.edit_generation,
            view_generation: live.view_generation,
            demo: false,
            deleted: true,
        };
        self.store_record(&tombstone).await?;
        self.write().insert(tombstone.id.clone(), tombstone);
        self.announce(id, None, true).await;
        Ok(())
    }

    /// Writes a record durably where this node keeps them.
    async fn store_record(&self, rec: &SessionRecord) -> Result<(), SessionError> {
        match &self.backend {
            Backend::Files(dir) => {
                let (dir, stored) = (dir.clone(), rec.clone());
                tokio::task::spawn_blocking(move || write_record(&dir, &stored))
                    .await
                    .map_err(|e| SessionError::Shared(format!("task failed: {e}")))?
            }
            Backend::Shared(shared) => {
                let body = serde_json::to_string(rec).map_err(|e| SessionError::Shared(e.to_string()))?;
                shared.put_record(&rec.id, &body).await
            }
        }
    }
}

/// Writes one record file atomically (blocking).
fn write_record(dir: &Path, rec: &SessionRecord) -> Result<(), SessionError> {
    let path = dir.join(format!("{}.json", rec.id));
    let body = serde_json::to_vec_pretty(rec).map_err(|e| SessionError::Corrupt(path.clone(), e.to_string()))?;
    Ok(write_atomic(&path, &body, atomic::Options::default())?)
}
