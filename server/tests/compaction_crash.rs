//! A compaction interrupted at each of its steps (the fault hook fails there, as a crash would stop
//! it) never loses an acknowledged update: a fresh store on the same directory loads exactly what
//! was appended before. And a compaction that completes leaves only the new generation.

mod common;

use bytes::Bytes;
use commonpad_core::store::disk::{DiskStore, FaultHook, FaultPoint};
use commonpad_core::store::{Loaded, StoreError};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact};

const DOC: &str = "doc";

const POINTS: [FaultPoint; 6] = [
    FaultPoint::CompactTmpWritten,
    FaultPoint::CompactTmpSynced,
    FaultPoint::CompactRenamed,
    FaultPoint::CompactDirSynced,
    FaultPoint::CompactNewLog,
    FaultPoint::CompactOldRemoved,
];

/// A writer's document: each edit appends to Y.Text "t" and returns the update.
struct Writer {
    doc: Doc,
    n: usize,
}

impl Writer {
    fn new() -> Self {
        Writer { doc: Doc::new(), n: 0 }
    }
    fn edit(&mut self) -> Bytes {
        let text = self.doc.get_or_insert_text("t");
        let before = self.doc.transact().state_vector();
        {
            let mut txn = self.doc.transact_mut();
            let len = text.len(&txn);
            text.insert(&mut txn, len, &format!("[{}]", self.n));
        }
        self.n += 1;
        Bytes::from(self.doc.transact().encode_state_as_update_v1(&before))
    }
    fn text(&self) -> String {
        let text = self.doc.get_or_insert_text("t");
        let s = text.get_string(&self.doc.transact());
        s
    }
    fn state(&self) -> Vec<u8> {
        self.doc.transact().encode_state_as_update_v1(&StateVector::default())
    }
}

fn text_of(loaded: &Loaded) -> String {
    common::text_of_loaded(loaded, "t")
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir.join("docs").join(DOC))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn gen_names(g: u64) -> BTreeSet<String> {
    [format!("snapshot-{g:020}"), format!("log-{g:020}")].into_iter().collect()
}

/// A store whose hook fails at `point` while `armed` is set.
fn faulty(dir: &Path, point: FaultPoint, armed: Arc<AtomicBool>) -> DiskStore {
    let hook: FaultHook = Arc::new(move |p, _doc| {
        if p == point && armed.load(Ordering::SeqCst) {
            Err(std::io::Error::other(format!("injected crash at {p:?}")))
        } else {
            Ok(())
        }
    });
    DiskStore::open(dir).unwrap().with_fault_hook(hook)
}

/// Appends `batches` batches of 1..=3 updates, each acknowledged by `append`'s Ok.
fn append_some(store: &DiskStore, w: &mut Writer, batches: usize) {
    for b in 0..batches {
        let updates: Vec<Bytes> = (0..=(b % 3)).map(|_| w.edit()).collect();
        store.append_blocking(DOC, &updates).expect("append");
    }
}

/// Runs one interrupted compaction. `prior` compactions have completed before it (so an older
/// snapshot generation exists when `prior > 0`).
fn interrupted(point: FaultPoint, prior: usize) {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tmp.path();
    let armed = Arc::new(AtomicBool::new(false));
    let mut w = Writer::new();
    let store = faulty(dir, point, armed.clone());
    store.load_blocking(DOC).unwrap();
    append_some(&store, &mut w, 4);
    for _ in 0..prior {
        store.replace_snapshot_blocking(DOC, &w.state()).unwrap();
        append_some(&store, &mut w, 3);
    }
    let acknowledged = w.text();
    let gen_before = prior as u64;
    assert_eq!(names(dir), gen_names(gen_before).into_iter().filter(|n| prior > 0 || n.starts_with("log-")).collect());

    // The compaction dies at `point`.
    armed.store(true, Ordering::SeqCst);
    let err = store.replace_snapshot_blocking(DOC, &w.state()).expect_err("the hook should have failed the compaction");
    assert!(matches!(err, StoreError::Io { .. }), "{point:?}: {err}");
    armed.store(false, Ordering::SeqCst);
    // Nothing more is accepted until the document is reloaded.
    let extra = w.edit();
    assert!(
        matches!(store.append_blocking(DOC, std::slice::from_ref(&extra)), Err(StoreError::NotLoaded(_))),
        "{point:?}: append after a failed compaction must require a reload"
    );
    let on_disk = names(dir);
    drop(store);

    // "Crash" here: a fresh store (no hook) loads the acknowledged state.
    let store = DiskStore::open(dir).unwrap();
    let loaded = store
        .load_blocking(DOC)
        .unwrap_or_else(|e| panic!("{point:?} (prior {prior}): load failed: {e}; files {on_disk:?}"));
    assert_eq!(
        text_of(&loaded),
        acknowledged,
        "{point:?} (prior {prior}): wrong state after the interrupted compaction; files {on_disk:?}"
    );
    // The load settles on one generation: the old one if the new snapshot never became visible,
    // else the new one; no temporary or older files survive.
    let after = names(dir);
    let new_visible = !matches!(point, FaultPoint::CompactTmpWritten | FaultPoint::CompactTmpSynced);
    let expected_gen = if new_visible { gen_before + 1 } else { gen_before };
    let mut expected = gen_names(expected_gen);
    if expected_gen == 0 {
        expected.retain(|n| n.starts_with("log-"));
    }
    assert_eq!(after, expected, "{point:?} (prior {prior}): files after reload (were {on_disk:?})");

    // Writing goes on from there, and the whole history survives another reopen and compaction.
    store.append_blocking(DOC, &[extra]).unwrap();
    append_some(&store, &mut w, 2);
    let full = w.text();
    drop(store);
    let store = DiskStore::open(dir).unwrap();
    assert_eq!(text_of(&store.load_blocking(DOC).unwrap()), full, "{point:?} (prior {prior}): appends after recovery");
    store.replace_snapshot_blocking(DOC, &w.state()).unwrap();
    drop(store);
    let loaded = DiskStore::open(dir).unwrap().load_blocking(DOC).unwrap();
    assert!(loaded.updates.is_empty());
    assert_eq!(text_of(&loaded), full);
}

#[test]
fn interrupted_compaction_keeps_every_acknowledged_update() {
    for point in POINTS {
        for prior in [0, 1, 2] {
            interrupted(point, prior);
        }
    }
}

/// The same, but the room keeps going on the same store after the failure (as the server does after
/// a storage error: reload, then serve).
#[test]
fn reload_after_failed_compaction_on_the_same_store() {
    for point in POINTS {
        let tmp = tempfile::TempDir::new().unwrap();
        let dir = tmp.path();
        let armed = Arc::new(AtomicBool::new(false));
        let store = faulty(dir, point, armed.clone());
        let mut w = Writer::new();
        store.load_blocking(DOC).unwrap();
        append_some(&store, &mut w, 5);
        armed.store(true, Ordering::SeqCst);
        assert!(store.replace_snapshot_blocking(DOC, &w.state()).is_err());
        armed.store(false, Ordering::SeqCst);
        let loaded = store.load_blocking(DOC).unwrap();
        assert_eq!(text_of(&loaded), w.text(), "{point:?}");
        append_some(&store, &mut w, 2);
        store.replace_snapshot_blocking(DOC, &w.state()).unwrap();
        append_some(&store, &mut w, 2);
        drop(store);
        let loaded = DiskStore::open(dir).unwrap().load_blocking(DOC).unwrap();
        assert_eq!(text_of(&loaded), w.text(), "{point:?}");
    }
}

#[test]
fn completed_compaction_removes_the_old_generation() {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tmp.path();
    let store = DiskStore::open(dir).unwrap();
    let mut w = Writer::new();
    store.load_blocking(DOC).unwrap();
    append_some(&store, &mut w, 3);
    assert_eq!(names(dir), ["log-00000000000000000000".to_owned()].into_iter().collect());
    for g in 1..=3u64 {
        store.replace_snapshot_blocking(DOC, &w.state()).unwrap();
        assert_eq!(names(dir), gen_names(g), "after compaction {g}");
        let loaded = DiskStore::open(dir).unwrap().check_doc(DOC).unwrap();
        assert_eq!(loaded.log_records, 0);
        append_some(&store, &mut w, 2);
    }
    drop(store);
    let loaded = DiskStore::open(dir).unwrap().load_blocking(DOC).unwrap();
    assert_eq!(text_of(&loaded), w.text());
    assert_eq!(loaded.updates.len(), 3); // the last two batches: 1 + 2 records
}
