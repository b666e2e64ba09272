//! A torn log tail (a record cut mid-write: never acknowledged) is cut off and the document loads;
//! a flipped bit anywhere else (log or snapshot) is damage: the load fails with `Corrupt`, nothing on
//! disk is touched, the server refuses the document with 1011 while serving the others, and
//! `commonpad check` names it.

mod common;

use bytes::Bytes;
use common::{raw_connect, Client};
use commonpad_core::store::disk::DiskStore;
use commonpad_core::store::{Loaded, StoreError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

const DOC: &str = "doc";

/// The document's text after applying a load's snapshot and updates.
fn text_of(loaded: &Loaded) -> String {
    common::text_of_loaded(loaded, "t")
}

/// Every file under `dir`, by relative path, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn doc_file(dir: &Path, doc: &str, prefix: &str) -> PathBuf {
    let d = dir.join("docs").join(doc);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(prefix) && !n.ends_with(".tmp")
        })
        .collect();
    found.sort();
    assert_eq!(found.len(), 1, "expected one {prefix}* file in {}: {found:?}", d.display());
    found.pop().unwrap()
}

/// Builds a document on disk: 3 updates, a compaction (snapshot generation 1), then 5 more updates
/// each in its own record. Returns the text after each update (index 0: empty) and the raw updates
/// of the log.
fn build(dir: &Path) -> (Vec<String>, Vec<Vec<u8>>) {
    let store = DiskStore::open(dir).unwrap();
    assert!(store.load_blocking(DOC).unwrap().is_empty());
    let doc = Doc::new();
    let text = doc.get_or_insert_text("t");
    let mut texts = vec![String::new()];
    let mut log = Vec::new();
    for i in 0..8 {
        let before = doc.transact().state_vector();
        {
            let mut txn = doc.transact_mut();
            let len = text.len(&txn);
            text.insert(&mut txn, len, &format!("part {i} with some words; "));
        }
        let update = doc.transact().encode_state_as_update_v1(&before);
        store.append_blocking(DOC, &[Bytes::from(update.clone())]).unwrap();
        texts.push(text.get_string(&doc.transact()));
        if i == 2 {
            let state = doc.transact().encode_state_as_update_v1(&StateVector::default());
            store.replace_snapshot_blocking(DOC, &state).unwrap();
        } else if i > 2 {
            log.push(update);
        }
    }
    store.release_blocking(DOC);
    (texts, log)
}

fn load(dir: &Path) -> Result<Loaded, StoreError> {
    DiskStore::open(dir).unwrap().load_blocking(DOC)
}

#[test]
fn torn_last_record_is_cut_at_every_offset() {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tmp.path();
    let (texts, log_updates) = build(dir);
    let log_path = doc_file(dir, DOC, "log-");
    let original = std::fs::read(&log_path).unwrap();
    // one record per group commit: a 12-byte header, then each update behind its u32 length
    let last_len = 12 + 4 + log_updates.last().unwrap().len();
    let last_start = original.len() - last_len;

    // Healthy: everything.
    let all = load(dir).unwrap();
    assert_eq!(all.updates.len(), 5);
    assert_eq!(text_of(&all), texts[8]);
    assert_eq!(all.truncated_tail_bytes, 0);

    for cut in last_start..original.len() {
        std::fs::write(&log_path, &original[..cut]).unwrap();
        let loaded = load(dir).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(loaded.updates.len(), 4, "cut at {cut}");
        assert_eq!(text_of(&loaded), texts[7], "cut at {cut}: not the state before the last update");
        assert_eq!(loaded.truncated_tail_bytes, (cut - last_start) as u64, "cut at {cut}");
        let after = std::fs::read(&log_path).unwrap();
        assert_eq!(after, original[..last_start], "cut at {cut}: log not truncated to the last good record");
    }

    // Zeros after the last good record (space allocated for a write that never landed).
    let mut zeroed = original.clone();
    zeroed.extend(std::iter::repeat_n(0u8, 4096));
    std::fs::write(&log_path, &zeroed).unwrap();
    let loaded = load(dir).unwrap();
    assert_eq!(text_of(&loaded), texts[8]);
    assert_eq!(std::fs::read(&log_path).unwrap(), original);

    // A cut inside the log's own header: an empty log on top of the snapshot.
    for cut in 0..8 {
        std::fs::write(&log_path, &original[..cut]).unwrap();
        let loaded = load(dir).unwrap_or_else(|e| panic!("header cut at {cut}: {e}"));
        assert!(loaded.updates.is_empty());
        assert_eq!(text_of(&loaded), texts[3], "header cut at {cut}");
    }

    // After a cut, appends go after the last good record and read back.
    std::fs::write(&log_path, &original[..original.len() - 3]).unwrap();
    let store = DiskStore::open(dir).unwrap();
    let loaded = store.load_blocking(DOC).unwrap();
    let doc = Doc::new();
    for u in loaded.snapshot.iter().chain(loaded.updates.iter()) {
        doc.transact_mut().apply_update(Update::decode_v1(u).unwrap()).unwrap();
    }
    let before = doc.transact().state_vector();
    let text = doc.get_or_insert_text("t");
    text.insert(&mut doc.transact_mut(), 0, ">> ");
    let update = doc.transact().encode_state_as_update_v1(&before);
    store.append_blocking(DOC, &[Bytes::from(update)]).unwrap();
    drop(store);
    let loaded = load(dir).unwrap();
    assert_eq!(loaded.updates.len(), 5);
    assert_eq!(loaded.truncated_tail_bytes, 0);
    assert_eq!(text_of(&loaded), format!(">> {}", texts[7]));
}

/// Flips every bit of `path[range]` in turn: each load must fail with `Corrupt` and leave every file
/// exactly as it was.
fn assert_every_flip_is_refused(dir: &Path, path: &Path, range: std::ops::Range<usize>) -> usize {
    let original = std::fs::read(path).unwrap();
    let mut tried = 0;
    for i in range {
        for bit in 0..8 {
            let mut bad = original.clone();
            bad[i] ^= 1 << bit;
            std::fs::write(path, &bad).unwrap();
            let before = files(dir);
            match load(dir) {
                Err(StoreError::Corrupt { doc, .. }) => assert_eq!(doc, DOC),
                Err(e) => panic!("flip at byte {i} bit {bit} of {}: wrong error {e}", path.display()),
                Ok(l) => panic!(
                    "flip at byte {i} bit {bit} of {} went unnoticed ({} updates, {} tail bytes cut)",
                    path.display(),
                    l.updates.len(),
                    l.truncated_tail_bytes
                ),
            }
            assert!(files(dir) == before, "flip at byte {i} bit {bit}: a failed load changed files on disk");
            tried += 1;
        }
    }
    std::fs::write(path, &original).unwrap();
    tried
}

#[test]
fn flipped_bit_in_the_log_is_refused_and_nothing_moves() {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tmp.path();
    let (texts, log_updates) = build(dir);
    let log_path = doc_file(dir, DOC, "log-");
    // Leftovers a successful load would clean up: a failed one must leave them too.
    let doc_dir = dir.join("docs").join(DOC);
    std::fs::write(doc_dir.join("snapshot-00000000000000000002.tmp"), b"half a snapshot").unwrap();
    let len = std::fs::read(&log_path).unwrap().len();
    let last_start = len - 12 - log_updates.last().unwrap().len();
    let tried = assert_every_flip_is_refused(dir, &log_path, 0..last_start);
    eprintln!("log: {tried} flipped bits refused");
    // Repaired: loads again (and only now cleans up).
    assert_eq!(text_of(&load(dir).unwrap()), texts[8]);
    assert!(!doc_dir.join("snapshot-00000000000000000002.tmp").exists());
}

#[test]
fn flipped_bit_or_cut_in_the_snapshot_is_refused_and_nothing_moves() {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tmp.path();
    let (texts, _) = build(dir);
    let snap_path = doc_file(dir, DOC, "snapshot-");
    std::fs::write(dir.join("docs").join(DOC).join("snapshot-00000000000000000002.tmp"), b"half").unwrap();
    let original = std::fs::read(&snap_path).unwrap();
    let tried = assert_every_flip_is_refused(dir, &snap_path, 0..original.len());
    eprintln!("snapshot: {tried} flipped bits refused");
    // A snapshot is renamed into place whole, so a short one is damage too, never a torn write.
    for cut in [0, 7, 19, 20, original.len() / 2, original.len() - 1] {
        std::fs::write(&snap_path, &original[..cut]).unwrap();
        let before = files(dir);
        assert!(matches!(load(dir), Err(StoreError::Corrupt { .. })), "snapshot cut at {cut} accepted");
        assert!(files(dir) == before, "snapshot cut at {cut}: a failed load changed files");
    }
    std::fs::write(&snap_path, &original).unwrap();
    assert_eq!(text_of(&load(dir).unwrap()), texts[8]);
}

async fn write_text(addr: std::net::SocketAddr, doc: &str, parts: &[&str]) -> String {
    let mut c = Client::connect(addr, doc).await;
    for (i, p) in parts.iter().enumerate() {
        let len = c.text("t").len() as u32;
        c.insert_text("t", len, p).await;
        assert!(c.pump_until(|c| c.updates_received.len() > i, common::STEP).await, "no echo");
    }
    c.text("t")
}

fn commonpad_check(dir: &Path) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_commonpad"))
        .args(["check", "--data"])
        .arg(dir)
        .env("COMMONPAD_LOG", "warn")
        .output()
        .expect("run commonpad check");
    (out.status.code().expect("exit code"), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_refuses_a_damaged_document_and_serves_the_others() {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tmp.path();

    // Three documents through the server; a graceful shutdown compacts each into a snapshot.
    let server = common::start_with(dir, common::test_config()).await;
    let good = write_text(server.addr, "good", &["a healthy ", "document"]).await;
    let bad = write_text(server.addr, "bad", &["this one ", "gets a flipped bit ", "in its snapshot"]).await;
    assert!(server.shutdown().await);
    // A fourth with records in its log (written straight to the store, as a crash would leave it).
    {
        let store = DiskStore::open(dir).unwrap();
        store.load_blocking("bad-log").unwrap();
        let doc = Doc::new();
        let text = doc.get_or_insert_text("t");
        for i in 0..4 {
            let before = doc.transact().state_vector();
            text.insert(&mut doc.transact_mut(), 0, &format!("record {i} "));
            let u = doc.transact().encode_state_as_update_v1(&before);
            store.append_blocking("bad-log", &[Bytes::from(u)]).unwrap();
        }
        store.release_blocking("bad-log");
    }
    let (code, out) = commonpad_check(dir);
    assert_eq!(code, 0, "check on a healthy directory:\n{out}");
    assert!(out.contains("ok       good") && out.contains("ok       bad") && out.contains("ok       bad-log"), "{out}");

    // Damage: a bit in the middle of bad's snapshot, a bit in bad-log's first record.
    let snap = doc_file(dir, "bad", "snapshot-");
    let snap_ok = std::fs::read(&snap).unwrap();
    let mut b = snap_ok.clone();
    let mid = b.len() / 2;
    b[mid] ^= 0x10;
    std::fs::write(&snap, &b).unwrap();
    let log = doc_file(dir, "bad-log", "log-");
    let log_ok = std::fs::read(&log).unwrap();
    let mut b = log_ok.clone();
    b[8 + 12 + 2] ^= 0x01;
    std::fs::write(&log, &b).unwrap();
    let damaged_files = files(dir);

    let server = common::start_with(dir, common::test_config()).await;
    let addr = server.addr;
    // A wrong close code is recorded and reported at the end, so that it does not hide the rest.
    let mut problems = Vec::new();
    for name in ["bad", "bad-log"] {
        let mut ws = raw_connect(addr, name).await;
        let code = common::close_code_after(&mut ws).await;
        if code != Some(1011) {
            problems
                .push(format!("{name}: expected close code 1011, got {code:?} (None: a close frame without a code)"));
        }
    }
    let c = Client::connect(addr, "good").await;
    assert_eq!(c.text("t"), good, "the healthy document is still served");
    drop(c);
    // Twice, to be sure a refused room does not get stuck or repair itself.
    let mut ws = raw_connect(addr, "bad").await;
    let code = common::close_code_after(&mut ws).await;
    if code != Some(1011) {
        problems.push(format!("bad (second try): expected close code 1011, got {code:?}"));
    }
    let now = files(dir);
    for (path, bytes) in &damaged_files {
        if path.starts_with("docs/bad") || path.starts_with("docs/bad-log") {
            assert!(now.get(path) == Some(bytes), "{}: changed while the document was refused", path.display());
        }
    }
    assert_eq!(
        now.keys().filter(|p| p.starts_with("docs/bad") || p.starts_with("docs/bad-log")).count(),
        damaged_files.keys().filter(|p| p.starts_with("docs/bad") || p.starts_with("docs/bad-log")).count(),
        "files appeared or vanished in a damaged document's directory"
    );

    // `check` (read-only, so it may run beside the server) names both.
    let (code, out) = commonpad_check(dir);
    assert_eq!(code, 1, "check on a damaged directory:\n{out}");
    assert!(out.contains("DAMAGED  bad:"), "{out}");
    assert!(out.contains("DAMAGED  bad-log:"), "{out}");
    assert!(out.contains("ok       good"), "{out}");

    // Restored from a backup while the server runs: a later connection loads it again.
    std::fs::write(&snap, &snap_ok).unwrap();
    std::fs::write(&log, &log_ok).unwrap();
    let c = Client::connect_retrying(addr, "bad", Doc::new(), Duration::from_secs(10)).await;
    assert_eq!(c.text("t"), bad);
    let c2 = Client::connect_retrying(addr, "bad-log", Doc::new(), Duration::from_secs(10)).await;
    assert_eq!(c2.text("t"), "record 3 record 2 record 1 record 0 ");
    drop((c, c2));
    assert!(server.shutdown().await);
    let (code, out) = commonpad_check(dir);
    assert_eq!(code, 0, "check after repair:\n{out}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
