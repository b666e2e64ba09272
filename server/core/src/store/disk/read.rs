//! Reading what is on disk for one document without changing anything: the newest snapshot, its
//! log up to the last good record, and the files a finished compaction left to remove. `load`
//! acts on what this finds; `commonpad check` and `export` only report it.

use super::format::{log_name, parse_gen, parse_log, parse_snapshot, snapshot_name, LOG_MAGIC};
use crate::doc_name;
use crate::store::{Loaded, StoreError};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// What is on disk for one document, read without changing anything.
pub(super) struct Found {
    pub(super) loaded: Loaded,
    pub(super) generation: u64,
    /// Where the last good log record ends, and how much follows it.
    pub(super) log_good_len: u64,
    pub(super) torn_tail: u64,
    pub(super) log_exists: bool,
    pub(super) stale: Vec<PathBuf>,
}

pub(super) fn read_doc(doc: &str, dir: &Path) -> Result<Found, StoreError> {
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

/// The documents stored under `docs`, sorted.
pub(super) fn list(docs: &Path) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(docs).map_err(StoreError::io(docs))? {
        let entry = entry.map_err(StoreError::io(docs))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if doc_name::is_valid(&name) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// A stored document whose name differs from `doc` only in case: on a case-insensitive filesystem
/// it is the same directory, on any other a twin that must not be served beside it.
pub(super) fn case_twin(docs: &Path, doc: &str) -> Result<Option<String>, StoreError> {
    for entry in fs::read_dir(docs).map_err(StoreError::io(docs))? {
        let name = entry.map_err(StoreError::io(docs))?.file_name().to_string_lossy().into_owned();
        if name != doc && name.eq_ignore_ascii_case(doc) {
            return Ok(Some(name));
        }
    }
    Ok(None)
}
