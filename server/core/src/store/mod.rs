//! Where documents live between restarts. The [`Store`] trait is what a room needs from storage:
//! load a document, append updates durably, replace the snapshot, and list and delete documents.
//! The local disk ([`disk::DiskStore`]) is the embedded default; cluster mode's backend (Redis and
//! PostgreSQL) implements the same trait in the server crate. Beside them: the [`batch`] codec both
//! backends store, and [`atomic`] file replacement.
//!
//! The contract every backend keeps: when `append` or `replace_snapshot` returns `Ok`, the data
//! survives a crash or a power cut. The room acknowledges nothing to any client before that.

pub mod atomic;
pub mod batch;
pub mod disk;

use async_trait::async_trait;
use bytes::Bytes;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("document {doc:?} is damaged ({detail}); it will not be served until repaired: run `commonpad check` and restore its files from a backup")]
    Corrupt { doc: String, detail: String },
    #[error("document {0:?} is not open in the store (a write failed earlier); reload it")]
    NotLoaded(String),
    #[error("invalid document name {0:?}")]
    InvalidName(String),
    #[error("document {doc:?} differs only in case from the stored {existing:?}; one of them must be renamed")]
    NameConflict { doc: String, existing: String },
    #[error("storage task failed: {0}")]
    Task(String),
    #[error("shared storage unavailable ({0}); clients will be asked to reconnect")]
    Unavailable(String),
}

impl From<atomic::FileError> for StoreError {
    fn from(e: atomic::FileError) -> StoreError {
        StoreError::Io { path: e.path, source: e.source }
    }
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}

/// A document as the store holds it: the last snapshot and the updates logged since.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The full state (`encode_state_as_update_v1`), if a snapshot was ever written.
    pub snapshot: Option<Vec<u8>>,
    /// Raw updates appended since that snapshot, oldest first.
    pub updates: Vec<Vec<u8>>,
    pub snapshot_bytes: u64,
    pub log_bytes: u64,
    /// Bytes cut from a torn log tail (a record that was being written when the process died; it was
    /// never acknowledged).
    pub truncated_tail_bytes: u64,
    /// For a shared store: the position of the last log entry included (`updates` holds everything
    /// up to it); the room follows the log from there.
    pub position: Option<Position>,
}

/// A position in a shared, ordered log (a Redis stream entry id `ms-seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Position {
    pub ms: u64,
    pub seq: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl std::str::FromStr for Position {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ms, seq) = s.split_once('-').ok_or_else(|| format!("bad log position {s:?}"))?;
        let num = |t: &str| t.parse::<u64>().map_err(|_| format!("bad log position {s:?}"));
        Ok(Position { ms: num(ms)?, seq: num(seq)? })
    }
}

/// One entry of a shared log, as read back by the node that follows it: a batch that some node
/// (this one if `own`) made durable. Its updates are already durable when the room sees them.
#[derive(Debug, Clone)]
pub struct RemoteEntry {
    pub position: Position,
    pub own: bool,
    pub updates: Vec<Bytes>,
}

/// What `replace_snapshot` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compacted {
    Done,
    /// Another node holds the compaction lease, or already stored a newer snapshot: nothing was
    /// written, try later.
    Skipped,
}

impl Loaded {
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.updates.is_empty()
    }

    /// Builds the document: the snapshot, then every logged update. Stored bytes that do not decode
    /// or apply mean damage, reported as [`StoreError::Corrupt`].
    pub fn to_doc(&self, name: &str) -> Result<yrs::Doc, StoreError> {
        use yrs::updates::decoder::Decode;
        use yrs::Transact;
        let doc = yrs::Doc::new();
        {
            let mut txn = doc.transact_mut();
            for (i, bytes) in self.snapshot.iter().chain(self.updates.iter()).enumerate() {
                let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt {
                    doc: name.to_owned(),
                    detail: format!("stored update {i}: {e}"),
                };
                let update = yrs::Update::decode_v1(bytes).map_err(|e| corrupt(&e))?;
                txn.apply_update(update).map_err(|e| corrupt(&e))?;
            }
        }
        Ok(doc)
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Loads a document (empty if it was never stored) and prepares it for appends. Damage that
    /// cannot be a torn tail is an error: the caller must not serve the document.
    async fn load(&self, doc: &str) -> Result<Loaded, StoreError>;
    /// Appends updates and makes them durable (one fsync for the whole batch). Returns the log's
    /// size afterwards. After an error the document must be loaded again before the next append.
    async fn append(&self, doc: &str, updates: Vec<Bytes>) -> Result<u64, StoreError>;
    /// Durably replaces the snapshot with `state` and starts an empty log. On a local store `state`
    /// holds everything appended so far; on a shared store it holds every log entry up to `upto`
    /// (the room's position in the log), and the log is trimmed up to there.
    async fn replace_snapshot(
        &self,
        doc: &str,
        state: Vec<u8>,
        upto: Option<Position>,
    ) -> Result<Compacted, StoreError>;
    /// Drops whatever the store keeps open for a document that was unloaded.
    async fn release(&self, doc: &str);
    async fn list(&self) -> Result<Vec<String>, StoreError>;
    /// Whether a document is stored (a name nobody ever wrote to is not).
    async fn exists(&self, doc: &str) -> Result<bool, StoreError>;
    async fn delete(&self, doc: &str) -> Result<(), StoreError>;
    /// Whether other nodes write the same documents (then the room follows the shared log, and
    /// `append`'s returned size is not the log's size).
    fn shared(&self) -> bool {
        false
    }
}
