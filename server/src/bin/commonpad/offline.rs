//! Commands on a data directory with no server running on it (or, for `check` and `export`, one
//! that only reads): verify, compact, export and import documents of the disk store. They print
//! what they did for an operator; the binary only parses the command line and calls them.

use anyhow::{bail, Context, Result};
use commonpad_core::store::disk::DiskStore;
use commonpad_core::sync::guard;
use std::io::Write;
use std::path::Path;
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

/// One process per data directory: two servers (or a server and `compact`) writing the same logs
/// would interleave records.
pub fn lock_data_dir(data: &Path) -> Result<std::fs::File> {
    commonpad_core::store::atomic::private_dir(data).with_context(|| format!("creating {}", data.display()))?;
    let path = data.join("LOCK");
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .mode(0o600)
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(_) => bail!("{} is in use by another CommonPad process; stop it first", data.display()),
    }
}

fn load_doc(store: &DiskStore, name: &str) -> Result<Doc> {
    Ok(store.load_blocking(name)?.to_doc(name)?)
}

/// Reads every document; says which are damaged and returns how many.
pub fn check(data: &Path) -> Result<usize> {
    let store = DiskStore::open(data)?;
    let mut damaged = 0;
    let docs = store.list_blocking()?;
    for name in &docs {
        // Checksums first, then whether yrs can read it all: the server refuses either.
        let checked = store.check_doc(name).and_then(|r| store.read_blocking(name)?.to_doc(name).map(|_| r));
        match checked {
            Ok(r) => {
                let tail = if r.torn_tail_bytes > 0 {
                    format!(", torn tail of {} bytes (unacknowledged; cut at next load)", r.torn_tail_bytes)
                } else {
                    String::new()
                };
                println!(
                    "ok       {name}: snapshot {} B, log {} records / {} B{tail}",
                    r.snapshot_bytes, r.log_records, r.log_bytes
                );
            }
            Err(e) => {
                damaged += 1;
                println!("DAMAGED  {name}: {e}");
            }
        }
    }
    println!("{} documents checked, {damaged} damaged", docs.len());
    Ok(damaged)
}

pub fn compact(data: &Path) -> Result<()> {
    let store = DiskStore::open(data)?;
    for name in store.list_blocking()? {
        let doc = load_doc(&store, &name)?;
        let state = doc.transact().encode_state_as_update_v1(&StateVector::default());
        store.replace_snapshot_blocking(&name, &state)?;
        store.release_blocking(&name);
        println!("compacted {name}: {} B", state.len());
    }
    Ok(())
}

pub fn import(data: &Path, name: &str, file: &Path) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    guard::decode_update(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a valid Yjs v1 update: {e}", file.display()))?;
    let store = DiskStore::open(data)?;
    let doc = load_doc(&store, name)?;
    let update = Update::decode_v1(&bytes)?;
    doc.transact_mut().apply_update(update).context("applying the imported update")?;
    let state = doc.transact().encode_state_as_update_v1(&StateVector::default());
    store.replace_snapshot_blocking(name, &state)?;
    store.release_blocking(name);
    println!("imported {} B into {name}", bytes.len());
    Ok(())
}

/// Writes a document's full state (one Yjs v1 update) to `out`. Read-only, so it needs no lock:
/// exporting from a running server's directory is fine.
pub fn export(data: &Path, doc: &str, out: &mut impl Write) -> Result<()> {
    let store = DiskStore::open(data)?;
    let loaded = store.read_blocking(doc)?;
    let state = loaded.to_doc(doc)?.transact().encode_state_as_update_v1(&StateVector::default());
    out.write_all(&state).context("writing the export")?;
    Ok(())
}
