//! Sessions: the workshop documents CommonPad hosts. A session is a record (title, event, date, and
//! the generation of each share link) plus two documents, `{id}` and `{id}.private`. Its links carry
//! tokens signed with the server key (see [`keys`]); rotating a role bumps its generation, which
//! invalidates every older token of that role.
//!
//! Records live as one small JSON file each under `DATA/sessions/`, written atomically (temporary
//! file, fsync, rename, directory fsync). They are read once at start and cached; a cluster backend
//! would keep them in a shared database instead.

pub mod keys;

use crate::room::Role;
use keys::ServerKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
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
}

impl SessionRecord {
    fn generation(&self, role: Role) -> u64 {
        match role {
            Role::Edit => self.edit_generation,
            Role::View => self.view_generation,
        }
    }
}

pub struct Sessions {
    dir: PathBuf,
    key: ServerKey,
    // std RwLock: held for a map read or a single insert, never across an await or I/O.
    records: RwLock<HashMap<String, SessionRecord>>,
}

/// Splits a document name into its session id and whether it is the private document.
pub fn split_doc(doc: &str) -> (&str, bool) {
    match doc.strip_suffix(".private") {
        Some(id) => (id, true),
        None => (doc, false),
    }
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
        fs::create_dir_all(&dir).map_err(|e| SessionError::io(&dir, e))?;
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
        Ok(Sessions { dir, key, records: RwLock::new(records) })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, SessionRecord>> {
        // Writers replace whole entries, so a poisoned map is still consistent.
        self.records.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, SessionRecord>> {
        self.records.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, id: &str) -> Option<SessionRecord> {
        self.read().get(id).cloned()
    }

    pub fn demo(&self) -> Option<SessionRecord> {
        self.read().values().find(|r| r.demo).cloned()
    }

    pub fn token(&self, rec: &SessionRecord, role: Role) -> String {
        self.key.token(&rec.id, role, rec.generation(role))
    }

    /// The role a token grants on a session, if any.
    pub fn role_for(&self, id: &str, token: &str) -> Option<Role> {
        let rec = self.get(id)?;
        [Role::Edit, Role::View].into_iter().find(|role| self.key.verify(token, id, *role, rec.generation(*role)))
    }

    /// Stores a record durably (blocking: call from `spawn_blocking`).
    pub fn put(&self, rec: SessionRecord) -> Result<(), SessionError> {
        let path = self.dir.join(format!("{}.json", rec.id));
        let tmp = self.dir.join(format!("{}.json.tmp", rec.id));
        let body = serde_json::to_vec_pretty(&rec).map_err(|e| SessionError::Corrupt(path.clone(), e.to_string()))?;
        let mut f = fs::File::create(&tmp).map_err(|e| SessionError::io(&tmp, e))?;
        f.write_all(&body).and_then(|()| f.sync_all()).map_err(|e| SessionError::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| SessionError::io(&path, e))?;
        fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| SessionError::io(&self.dir, e))?;
        self.write().insert(rec.id.clone(), rec);
        Ok(())
    }

    /// Bumps a role's generation: every older link of that role stops working (blocking).
    pub fn rotate(&self, id: &str, role: Role) -> Result<SessionRecord, SessionError> {
        let mut rec = self.get(id).ok_or(SessionError::NotFound)?;
        match role {
            Role::Edit => rec.edit_generation += 1,
            Role::View => rec.view_generation += 1,
        }
        self.put(rec.clone())?;
        Ok(rec)
    }

    /// Forgets a session (blocking). Its documents are deleted by the caller.
    pub fn remove(&self, id: &str) -> Result<(), SessionError> {
        if self.write().remove(id).is_none() {
            return Err(SessionError::NotFound);
        }
        let path = self.dir.join(format!("{id}.json"));
        fs::remove_file(&path).map_err(|e| SessionError::io(&path, e))?;
        fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| SessionError::io(&self.dir, e))?;
        Ok(())
    }
}
