//! The local-disk store: per document a directory holding one snapshot and one append-only log,
//! both named by a generation number.
//!
//! ```text
//! DATA/docs/NAME/snapshot-00000000000000000003   "CPSNAP01" | len u64 | crc32c u32 | state
//! DATA/docs/NAME/log-00000000000000000003        "CPLOG001" | record*
//! record  = len u32 | crc32c(payload) u32 | crc32c(len, crc) u32 | payload   (little-endian)
//! payload = (len u32 | update)*      one record per group commit: the updates of one fsync
//! ```
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

use super::{Loaded, Store, StoreError};
use crate::doc_name;
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const SNAP_MAGIC: &[u8; 8] = b"CPSNAP01";
const LOG_MAGIC: &[u8; 8] = b"CPLOG001";
const SNAP_HEADER: usize = 8 + 8 + 4;
const RECORD_HEADER: usize = 12;

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
    pub doc: String,
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
        fs::create_dir_all(&docs).map_err(StoreError::io(&docs))?;
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

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Reads a document without changing anything on disk (for `commonpad check`).
    pub fn check_doc(&self, doc: &str) -> Result<CheckReport, StoreError> {
        let dir = self.inner.doc_dir(doc)?;
        let found = read_doc(doc, &dir)?;
        Ok(CheckReport {
            doc: doc.to_owned(),
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
        _upto: Option<super::Position>,
    ) -> Result<super::Compacted, StoreError> {
        let doc = doc.to_owned();
        self.blocking(move |i| i.replace_snapshot(&doc, &state)).await.map(|()| super::Compacted::Done)
    }

    async fn release(&self, doc: &str) {
        self.release_blocking(doc);
    }

    async fn list(&self) -> Result<Vec<String>, StoreError> {
        self.blocking(|i| i.list()).await
    }

    async fn delete(&self, doc: &str) -> Result<(), StoreError> {
        let doc = doc.to_owned();
        self.blocking(move |i| i.delete(&doc)).await
    }
}

fn snapshot_name(gen: u64) -> String {
    format!("snapshot-{gen:020}")
}

fn log_name(gen: u64) -> String {
    format!("log-{gen:020}")
}

fn parse_gen(file: &str, prefix: &str) -> Option<u64> {
    let digits = file.strip_prefix(prefix)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(StoreError::io(dir))
}

/// What is on disk for one document, read without changing anything.
struct Found {
    loaded: Loaded,
    generation: u64,
    /// Where the last good log record ends, and how much follows it.
    log_good_len: u64,
    torn_tail: u64,
    log_exists: bool,
    stale: Vec<PathBuf>,
}

fn read_doc(doc: &str, dir: &Path) -> Result<Found, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt { doc: doc.to_owned(), detail };
    let mut snapshots = Vec::new();
    let mut logs = Vec::new();
    let mut tmp = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(StoreError::io(dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(g) = parse_gen(&name, "snapshot-") {
                    snapshots.push(g);
                } else if let Some(g) = parse_gen(&name, "log-") {
                    logs.push(g);
                } else if name.ends_with(".tmp") {
                    tmp.push(entry.path());
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::Io { path: dir.to_owned(), source: e }),
    }
    let generation = snapshots.iter().copied().max().unwrap_or(0);
    let mut loaded = Loaded::default();
    if snapshots.contains(&generation) {
        let path = dir.join(snapshot_name(generation));
        let bytes = fs::read(&path).map_err(StoreError::io(&path))?;
        let state = parse_snapshot(&bytes).map_err(|d| corrupt(format!("{}: {d}", path.display())))?;
        loaded.snapshot_bytes = bytes.len() as u64;
        loaded.snapshot = Some(state.to_vec());
    }
    let log_path = dir.join(log_name(generation));
    let (log_good_len, torn_tail, log_exists) = match fs::read(&log_path) {
        Ok(bytes) => {
            let (updates, good) = parse_log(&bytes).map_err(|d| corrupt(format!("{}: {d}", log_path.display())))?;
            loaded.updates = updates;
            loaded.log_bytes = good.saturating_sub(LOG_MAGIC.len()) as u64;
            (good as u64, (bytes.len() - good) as u64, true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => (0, 0, false),
        Err(e) => return Err(StoreError::Io { path: log_path, source: e }),
    };
    loaded.truncated_tail_bytes = torn_tail;
    let mut stale = tmp;
    stale.extend(snapshots.iter().filter(|g| **g < generation).map(|g| dir.join(snapshot_name(*g))));
    stale.extend(logs.iter().filter(|g| **g < generation).map(|g| dir.join(log_name(*g))));
    Ok(Found { loaded, generation, log_good_len, torn_tail, log_exists, stale })
}

fn parse_snapshot(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < SNAP_HEADER || &bytes[..8] != SNAP_MAGIC {
        return Err("not a CommonPad snapshot (bad header)".into());
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().map_err(|_| "header")?);
    let crc = u32::from_le_bytes(bytes[16..20].try_into().map_err(|_| "header")?);
    let body = &bytes[SNAP_HEADER..];
    if body.len() as u64 != len {
        return Err(format!("snapshot holds {} bytes, header says {len}", body.len()));
    }
    if crc32c::crc32c(body) != crc {
        return Err("snapshot checksum mismatch".into());
    }
    Ok(body)
}

fn encode_snapshot(state: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SNAP_HEADER + state.len());
    out.extend_from_slice(SNAP_MAGIC);
    out.extend_from_slice(&(state.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(state).to_le_bytes());
    out.extend_from_slice(state);
    out
}

fn encode_record(out: &mut Vec<u8>, payload: &[u8]) {
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c(payload).to_le_bytes();
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&len);
    head[4..].copy_from_slice(&crc);
    out.extend_from_slice(&head);
    out.extend_from_slice(&crc32c::crc32c(&head).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Reads the records of a log. Returns them and where the last good one ends; bytes after that are
/// a torn tail. Damage anywhere else is an error.
fn parse_log(bytes: &[u8]) -> Result<(Vec<Vec<u8>>, usize), String> {
    if bytes.len() < LOG_MAGIC.len() {
        // Cut while the header was being written: an empty log.
        return Ok((Vec::new(), 0));
    }
    if &bytes[..8] != LOG_MAGIC {
        return Err("not a CommonPad log (bad header)".into());
    }
    let mut pos = LOG_MAGIC.len();
    let mut records = Vec::new();
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < RECORD_HEADER {
            break; // torn: the header itself is incomplete
        }
        let head = &rest[..8];
        let head_crc = u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if crc32c::crc32c(head) != head_crc {
            // A bad header is a torn tail only if nothing but zeros follows (space the file system
            // allocated for a write that never landed); otherwise a bit flipped in the middle.
            if rest.iter().all(|b| *b == 0) {
                break;
            }
            return Err(format!("record header at byte {pos} is damaged"));
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if rest.len() - RECORD_HEADER < len {
            break; // torn: the payload is incomplete
        }
        let payload = &rest[RECORD_HEADER..RECORD_HEADER + len];
        let end = pos + RECORD_HEADER + len;
        if crc32c::crc32c(payload) != crc {
            if end == bytes.len() {
                break; // the last record, torn inside its payload
            }
            return Err(format!("record at byte {pos} fails its checksum"));
        }
        split_batch(payload, &mut records).map_err(|d| format!("record at byte {pos}: {d}"))?;
        pos = end;
    }
    Ok((records, pos))
}

/// Splits one record's payload into its updates. The checksum already matched, so a length that
/// does not fit is a bug or tampering, not a torn write.
fn split_batch(mut payload: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), String> {
    while !payload.is_empty() {
        if payload.len() < 4 {
            return Err("batch ends inside a length".into());
        }
        let len = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
        if payload.len() - 4 < len {
            return Err("batch entry longer than its record".into());
        }
        out.push(payload[4..4 + len].to_vec());
        payload = &payload[4 + len..];
    }
    Ok(())
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
        match &self.hook {
            Some(hook) => hook(point, doc).map_err(StoreError::io(path)),
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
            sync_dir(dir)?;
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
            .open(&path)
            .map_err(StoreError::io(&path))?;
        f.write_all(LOG_MAGIC).map_err(StoreError::io(&path))?;
        self.sync_file(&f, &path)?;
        self.sync_dir(dir)?;
        Ok(f)
    }

    fn load(&self, doc: &str) -> Result<Loaded, StoreError> {
        let dir = self.doc_dir(doc)?;
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
        fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        self.sync_dir(&self.root.join("docs"))?;
        let log = self.create_log(&dir, 0)?;
        Ok((dir, OpenDoc { generation: 0, log, log_len: LOG_MAGIC.len() as u64 }))
    }

    fn append(&self, doc: &str, updates: &[Bytes]) -> Result<u64, StoreError> {
        let (dir, mut open) = self.take(doc)?;
        let path = dir.join(log_name(open.generation));
        let mut payload = Vec::with_capacity(updates.iter().map(|u| u.len() + 4).sum());
        for u in updates {
            payload.extend_from_slice(&(u.len() as u32).to_le_bytes());
            payload.extend_from_slice(u);
        }
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
        let final_path = dir.join(snapshot_name(gen));
        let tmp_path = dir.join(format!("{}.tmp", snapshot_name(gen)));
        let mut tmp = File::create(&tmp_path).map_err(StoreError::io(&tmp_path))?;
        tmp.write_all(&encode_snapshot(state)).map_err(StoreError::io(&tmp_path))?;
        self.fault(FaultPoint::CompactTmpWritten, doc, &tmp_path)?;
        self.sync_file(&tmp, &tmp_path)?;
        drop(tmp);
        self.fault(FaultPoint::CompactTmpSynced, doc, &tmp_path)?;
        fs::rename(&tmp_path, &final_path).map_err(StoreError::io(&final_path))?;
        self.fault(FaultPoint::CompactRenamed, doc, &final_path)?;
        self.sync_dir(&dir)?;
        self.fault(FaultPoint::CompactDirSynced, doc, &dir)?;
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
        let docs = self.root.join("docs");
        let mut out = Vec::new();
        for entry in fs::read_dir(&docs).map_err(StoreError::io(&docs))? {
            let entry = entry.map_err(StoreError::io(&docs))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if doc_name::is_valid(&name) {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
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

/// Reads a whole file, for `import`.
pub fn read_file(path: &Path) -> Result<Vec<u8>, StoreError> {
    let mut buf = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut buf)).map_err(StoreError::io(path))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(update: &[u8]) -> Vec<u8> {
        let mut p = (update.len() as u32).to_le_bytes().to_vec();
        p.extend_from_slice(update);
        p
    }

    #[test]
    fn a_torn_group_commit_with_zeroed_pages_is_a_torn_tail() {
        let mut log = LOG_MAGIC.to_vec();
        encode_record(&mut log, &batch(b"acknowledged"));
        let good = log.len();
        let mut payload = batch(b"one");
        payload.extend_from_slice(&batch(b"two"));
        encode_record(&mut log, &payload);
        // the header page landed, the rest did not
        for b in &mut log[good + RECORD_HEADER..] {
            *b = 0;
        }
        let (recs, end) = parse_log(&log).unwrap();
        assert_eq!(recs, vec![b"acknowledged".to_vec()]);
        assert_eq!(end, good);
    }

    #[test]
    fn records_round_trip_and_every_cut_of_the_last_is_a_torn_tail() {
        let mut log = LOG_MAGIC.to_vec();
        for p in [&b"first"[..], b"second", b"third record"] {
            encode_record(&mut log, &batch(p));
        }
        let (all, end) = parse_log(&log).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(end, log.len());
        let last_start = log.len() - RECORD_HEADER - 4 - b"third record".len();
        for cut in last_start..log.len() {
            let (recs, good) = parse_log(&log[..cut]).unwrap();
            assert_eq!(recs.len(), 2, "cut at {cut}");
            assert_eq!(good, last_start);
        }
    }

    #[test]
    fn flipped_bits_in_the_middle_are_damage() {
        let mut log = LOG_MAGIC.to_vec();
        for p in [&b"first"[..], b"second", b"third"] {
            encode_record(&mut log, &batch(p));
        }
        for i in 8..(log.len() - RECORD_HEADER - 4 - 5) {
            for bit in 0..8 {
                let mut bad = log.clone();
                bad[i] ^= 1 << bit;
                assert!(parse_log(&bad).is_err(), "flip at byte {i} bit {bit} went unnoticed");
            }
        }
    }
}
