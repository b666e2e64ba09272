//! The local-disk store: per document a directory holding one snapshot and one append-only log,
//! both named by a generation number.
//!
//! ```text
//! DATA/docs/NAME/snapshot-00000000000000000003
//! DATA/docs/NAME/log-00000000000000000003
//! ```
//!
//! The bytes inside them are [`format`]'s; reading a document without changing it is [`read`]'s;
//! this file does the I/O that changes them.
//!
//! A record is one group commit, written with one `write` and one fsync, so that a power cut in
//! the middle of it tears exactly one record, the last: whatever pages of it landed, its checksum
//! fails and it is cut, and none of its updates had been acknowledged.
//!
//! Compaction writes `snapshot-(G+1)` to a temporary file, fsyncs it, renames it, fsyncs the
//! directory, creates an empty `log-(G+1)`, and only then removes generation G. Loading picks the
//! highest snapshot generation present, so a crash between any two steps loads either the old pair
//! (the new snapshot never became visible) or the new snapshot, which already holds all of the old
//! log. The header CRC on each record tells a torn tail (cut mid-write, never acknowledged) from a
//! flipped bit in the middle (damage, refused).
//!
//! All file I/O runs on tokio's blocking pool (`spawn_blocking`), never on the async workers.

mod format;
mod read;

use super::atomic::{self, write_atomic_with};
use super::{batch, Compacted, Loaded, Position, Store, StoreError};
use crate::doc_name;
use async_trait::async_trait;
use bytes::Bytes;
use format::{encode_record, encode_snapshot, log_name, snapshot_name, LOG_MAGIC, RECORD_HEADER};
use read::read_doc;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Points where a test can make the store fail, as a crash or a disk error would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    AppendWrite,
    AppendSync,
    CompactTmpWritten,
    CompactTmpSynced,
    CompactRenamed,
    CompactDirSynced,
    CompactNewLog,
    CompactOldRemoved,
}

pub type FaultHook = Arc<dyn Fn(FaultPoint, &str) -> io::Result<()> + Send + Sync>;

/// The open log of a loaded document. Taken out of the map for the length of each operation and
/// put back only when it succeeded, so a failed write leaves the document "not loaded" and the next
/// operation must reload it from disk (a failed fsync is never simply retried).
struct OpenDoc {
    generation: u64,
    log: File,
    log_len: u64,
}

struct Inner {
    root: PathBuf,
    fsync: bool,
    hook: Option<FaultHook>,
    // std Mutex: held only for a map insert or remove, never across I/O or an await.
    open: Mutex<HashMap<String, OpenDoc>>,
}

#[derive(Clone)]
pub struct DiskStore {
    inner: Arc<Inner>,
}

/// What `check` found for one document.
#[derive(Debug)]
pub struct CheckReport {
    pub snapshot_bytes: u64,
    pub log_records: usize,
    pub log_bytes: u64,
    pub torn_tail_bytes: u64,
}

impl DiskStore {
    /// Opens (and creates) a data directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let docs = root.join("docs");
        atomic::private_dir(&root)?;
        atomic::private_dir(&docs)?;
        Ok(DiskStore { inner: Arc::new(Inner { root, fsync: true, hook: None, open: Mutex::new(HashMap::new()) }) })
    }

    /// Turns fsync off: only for like-for-like benchmarks against servers that do not fsync.
    pub fn without_fsync(self) -> Self {
        self.rebuild(|i| i.fsync = false)
    }

    /// Installs a fault hook (tests).
    pub fn with_fault_hook(self, hook: FaultHook) -> Self {
        self.rebuild(|i| i.hook = Some(hook))
    }

    fn rebuild(self, f: impl FnOnce(&mut Inner)) -> Self {
        let Inner { root, fsync, hook, .. } = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(shared) => Inner {
                root: shared.root.clone(),
                fsync: shared.fsync,
                hook: shared.hook.clone(),
                open: Mutex::new(HashMap::new()),
            },
        };
        let mut inner = Inner { root, fsync, hook, open: Mutex::new(HashMap::new()) };
        f(&mut inner);
        DiskStore { inner: Arc::new(inner) }
    }

    /// Reads a document without changing anything on disk (for `commonpad check`).
    pub fn check_doc(&self, doc: &str) -> Result<CheckReport, StoreError> {
        let dir = self.inner.doc_dir(doc)?;
        let found = read_doc(doc, &dir)?;
        Ok(CheckReport {
            snapshot_bytes: found.loaded.snapshot_bytes,
            log_records: found.loaded.updates.len(),
            log_bytes: found.loaded.log_bytes,
            torn_tail_bytes: found.torn_tail,
        })
    }

    /// Reads a document without changing anything on disk: safe while a server runs on the same
    /// directory (a record being written shows as a torn tail and is left out, not cut).
    pub fn read_blocking(&self, doc: &str) -> Result<Loaded, StoreError> {
        let dir = self.inner.doc_dir(doc)?;
        Ok(read_doc(doc, &dir)?.loaded)
    }

    pub fn list_blocking(&self) -> Result<Vec<String>, StoreError> {
        self.inner.list()
    }

    pub fn load_blocking(&self, doc: &str) -> Result<Loaded, StoreError> {
        self.inner.load(doc)
    }

    pub fn append_blocking(&self, doc: &str, updates: &[Bytes]) -> Result<u64, StoreError> {
        self.inner.append(doc, updates)
    }

    pub fn replace_snapshot_blocking(&self, doc: &str, state: &[u8]) -> Result<(), StoreError> {
        self.inner.replace_snapshot(doc, state)
    }

    pub fn release_blocking(&self, doc: &str) {
        self.inner.lock().remove(doc);
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner)).await.map_err(|e| StoreError::Task(e.to_string()))?
    }
}

#[async_trait]
impl Store for DiskStore {
    async fn load(&self, doc: &str) -> Result<Loaded, StoreError> {
        let doc = doc.to_owned();
        self.blocking(move |i| i.load(&doc)).await
    }

    async fn append(&self, doc: &str, updates: Vec<Bytes>) -> Result<u64, StoreError> {
        if !self.inner.fsync {
            // Without fsync an append is one buffered write into the page cache (microseconds):
            // handing it to the blocking pool costs more than it saves (profiled in
            // docs/benchmarks.md: with 200 documents the pool grew to 512 threads on one core and
            // storage took 59% of the server's CPU). The fsync path keeps the pool.
            return self.inner.append(doc, &updates);
        }
        let doc = doc.to_owned();
        self.blocking(move |i| i.append(&doc, &updates)).await
    }

    async fn replace_snapshot(
        &self,
        doc: &str,
        state: Vec<u8>,
        _upto: Option<Position>,
    ) -> Result<Compacted, StoreError> {
        let doc = doc.to_owned();
        self.blocking(move |i| i.replace_snapshot(&doc, &state)).await.map(|()| Compacted::Done)
    }

    async fn release(&self, doc: &str) {
        self.release_blocking(doc);
    }

    async fn list(&self) -> Result<Vec<String>, StoreError> {
        self.blocking(|i| i.list()).await
    }

    async fn exists(&self, doc: &str) -> Result<bool, StoreError> {
        // One stat: cheaper inline than a hand-off to the blocking pool.
        Ok(self.inner.doc_dir(doc)?.exists())
    }

    async fn delete(&self, doc: &str) -> Result<(), StoreError> {
        let doc = doc.to_owned();
        self.blocking(move |i| i.delete(&doc)).await
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, OpenDoc>> {
        // A panic while holding this lock cannot leave the map half-updated (single insert/remove),
        // so a poisoned lock is safe to use.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn doc_dir(&self, doc: &str) -> Result<PathBuf, StoreError> {
        if !doc_name::is_valid(doc) {
            return Err(StoreError::InvalidName(doc.to_owned()));
        }
        Ok(self.root.join("docs").join(doc))
    }

    fn fault(&self, point: FaultPoint, doc: &str, path: &Path) -> Result<(), StoreError> {
        self.fault_io(point, doc).map_err(StoreError::io(path))
    }

    fn fault_io(&self, point: FaultPoint, doc: &str) -> io::Result<()> {
        match &self.hook {
            Some(hook) => hook(point, doc),
            None => Ok(()),
        }
    }

    fn sync_file(&self, file: &File, path: &Path) -> Result<(), StoreError> {
        if self.fsync {
            file.sync_data().map_err(StoreError::io(path))?;
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> Result<(), StoreError> {
        if self.fsync {
            atomic::sync_dir(dir)?;
        }
        Ok(())
    }

    fn create_log(&self, dir: &Path, gen: u64) -> Result<File, StoreError> {
        let path = dir.join(log_name(gen));
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(StoreError::io(&path))?;
        f.write_all(LOG_MAGIC).map_err(StoreError::io(&path))?;
        self.sync_file(&f, &path)?;
        self.sync_dir(dir)?;
        Ok(f)
    }

    fn load(&self, doc: &str) -> Result<Loaded, StoreError> {
        let dir = self.doc_dir(doc)?;
        if let Some(existing) = read::case_twin(&self.root.join("docs"), doc)? {
            return Err(StoreError::NameConflict { doc: doc.to_owned(), existing });
        }
        self.lock().remove(doc);
        let found = read_doc(doc, &dir)?;
        let exists = dir.exists();
        let log_path = dir.join(log_name(found.generation));
        let (log, log_len) = if !exists {
            // Created on the first append, so that merely opening a name leaves nothing on disk.
            return Ok(found.loaded);
        } else if found.log_exists && found.log_good_len >= LOG_MAGIC.len() as u64 {
            let f = OpenOptions::new().read(true).write(true).open(&log_path).map_err(StoreError::io(&log_path))?;
            if found.torn_tail > 0 {
                tracing::warn!(doc, bytes = found.torn_tail, "truncating a torn log tail (never acknowledged)");
                f.set_len(found.log_good_len).map_err(StoreError::io(&log_path))?;
                self.sync_file(&f, &log_path)?;
            }
            (f, found.log_good_len)
        } else {
            (self.create_log(&dir, found.generation)?, LOG_MAGIC.len() as u64)
        };
        if !found.stale.is_empty() {
            for path in &found.stale {
                fs::remove_file(path).map_err(StoreError::io(path))?;
            }
            self.sync_dir(&dir)?;
        }
        self.lock().insert(doc.to_owned(), OpenDoc { generation: found.generation, log, log_len });
        Ok(found.loaded)
    }

    /// Takes the document's open log, creating the document on its first write.
    fn take(&self, doc: &str) -> Result<(PathBuf, OpenDoc), StoreError> {
        let dir = self.doc_dir(doc)?;
        if let Some(open) = self.lock().remove(doc) {
            return Ok((dir, open));
        }
        if dir.exists() {
            // Loaded before, then a write failed: the caller must reload first.
            return Err(StoreError::NotLoaded(doc.to_owned()));
        }
        atomic::private_dir(&dir)?;
        self.sync_dir(&self.root.join("docs"))?;
        let log = self.create_log(&dir, 0)?;
        Ok((dir, OpenDoc { generation: 0, log, log_len: LOG_MAGIC.len() as u64 }))
    }

    fn append(&self, doc: &str, updates: &[Bytes]) -> Result<u64, StoreError> {
        let (dir, mut open) = self.take(doc)?;
        let path = dir.join(log_name(open.generation));
        let payload = batch::encode(updates);
        let mut buf = Vec::with_capacity(payload.len() + RECORD_HEADER);
        encode_record(&mut buf, &payload);
        self.fault(FaultPoint::AppendWrite, doc, &path)?;
        // O_APPEND is not used: the file position is the end because we only ever write there.
        use std::io::{Seek, SeekFrom};
        open.log.seek(SeekFrom::Start(open.log_len)).map_err(StoreError::io(&path))?;
        open.log.write_all(&buf).map_err(StoreError::io(&path))?;
        self.fault(FaultPoint::AppendSync, doc, &path)?;
        self.sync_file(&open.log, &path)?;
        open.log_len += buf.len() as u64;
        let records_len = open.log_len - LOG_MAGIC.len() as u64;
        self.lock().insert(doc.to_owned(), open);
        Ok(records_len)
    }

    fn replace_snapshot(&self, doc: &str, state: &[u8]) -> Result<(), StoreError> {
        let (dir, open) = self.take(doc)?;
        let old = open.generation;
        let gen = old + 1;
        let options = atomic::Options { fsync: self.fsync, ..Default::default() };
        write_atomic_with(&dir.join(snapshot_name(gen)), &encode_snapshot(state), options, |step, _| {
            let point = match step {
                atomic::Step::Written => FaultPoint::CompactTmpWritten,
                atomic::Step::Synced => FaultPoint::CompactTmpSynced,
                atomic::Step::Renamed => FaultPoint::CompactRenamed,
                atomic::Step::DirSynced => FaultPoint::CompactDirSynced,
            };
            self.fault_io(point, doc)
        })?;
        let log = self.create_log(&dir, gen)?;
        self.fault(FaultPoint::CompactNewLog, doc, &dir)?;
        drop(open);
        for path in [dir.join(snapshot_name(old)), dir.join(log_name(old))] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::Io { path, source: e }),
            }
        }
        self.sync_dir(&dir)?;
        self.fault(FaultPoint::CompactOldRemoved, doc, &dir)?;
        self.lock().insert(doc.to_owned(), OpenDoc { generation: gen, log, log_len: LOG_MAGIC.len() as u64 });
        Ok(())
    }

    fn list(&self) -> Result<Vec<String>, StoreError> {
        read::list(&self.root.join("docs"))
    }

    fn delete(&self, doc: &str) -> Result<(), StoreError> {
        let dir = self.doc_dir(doc)?;
        self.lock().remove(doc);
        match fs::remove_dir_all(&dir) {
            Ok(()) => self.sync_dir(&self.root.join("docs")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io { path: dir, source: e }),
        }
    }
}
