//! Disk errors during an append: the update is acknowledged to nobody (neither its sender nor any
//! other client gets it as an update frame), every client of the document is closed with 1011,
//! and once the disk recovers, clients reconnect, re-send what was lost, and the document works.

mod common;

use common::{start_store, test_config, Client, Closed, STEP};
use commonpad_core::store::disk::{DiskStore, FaultHook, FaultPoint};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, Transact, Update};

const DOC: &str = "doc";

fn is_1011(c: &Closed) -> bool {
    matches!(c, Closed::Code(1011, _))
}

fn stored_text(dir: &std::path::Path) -> String {
    let loaded = DiskStore::open(dir).unwrap().load_blocking(DOC).unwrap();
    let doc = Doc::new();
    for u in loaded.snapshot.iter().chain(loaded.updates.iter()) {
        doc.transact_mut().apply_update(Update::decode_v1(u).unwrap()).unwrap();
    }
    let t = doc.get_or_insert_text("t");
    let s = t.get_string(&doc.transact());
    s
}

async fn failed_append_is_never_acknowledged(point: FaultPoint) {
    let tmp = tempfile::TempDir::new().unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let faults = Arc::new(AtomicUsize::new(0));
    let hook: FaultHook = {
        let (failing, faults) = (failing.clone(), faults.clone());
        Arc::new(move |p, _doc| {
            if p == point && failing.load(SeqCst) {
                faults.fetch_add(1, SeqCst);
                Err(std::io::Error::other(format!("injected disk error at {p:?}")))
            } else {
                Ok(())
            }
        })
    };
    let store = DiskStore::open(tmp.path()).unwrap().with_fault_hook(hook);
    let server = start_store(Arc::new(store), test_config()).await;
    let addr = server.addr;
    // Wrong close codes are collected and reported at the end, so that they do not hide the rest.
    let mut problems: Vec<String> = Vec::new();

    let mut a = Client::connect(addr, DOC).await;
    let mut b = Client::connect(addr, DOC).await;
    let hello = a.insert_text("t", 0, "hello ").await;
    assert!(a.pump_until(|c| c.updates_received.len() == 1, STEP).await, "A: no echo of its first edit");
    assert!(b.pump_until(|c| c.updates_received.len() == 1, STEP).await, "B: did not get A's first edit");
    assert_eq!(a.updates_received[0], hello);
    assert_eq!(b.text("t"), "hello ");

    // The disk fails: A's next update must reach nobody.
    failing.store(true, SeqCst);
    let world = a.insert_text("t", 6, "world").await;
    let a_closed = a.expect_closed().await;
    let b_closed = b.expect_closed().await;
    assert!(faults.load(SeqCst) >= 1, "{point:?}: the fault hook never fired");
    for (who, c) in [("A", &a_closed), ("B", &b_closed)] {
        if !is_1011(c) {
            problems.push(format!("{point:?}: {who} closed with {c:?}, expected Code(1011, ..)"));
        }
    }
    assert!(!a.updates_received.contains(&world), "{point:?}: A got its own unstored update echoed");
    assert!(!b.updates_received.contains(&world), "{point:?}: B got an unstored update");
    assert_eq!(a.updates_received.len(), 1, "{point:?}: A got an update frame during the failure");
    assert_eq!(b.updates_received.len(), 1, "{point:?}: B got an update frame during the failure");
    assert_eq!(b.text("t"), "hello ", "{point:?}: B's document holds the unstored update");

    // The disk recovers. Both reconnect with their own documents; A re-sends what was lost.
    failing.store(false, SeqCst);
    let Client { doc: a_doc, .. } = a;
    let Client { doc: b_doc, .. } = b;
    let mut b = Client::connect_retrying(addr, DOC, b_doc, Duration::from_secs(10)).await;
    let mut a = Client::connect_retrying(addr, DOC, a_doc, Duration::from_secs(10)).await;
    let deadline = tokio::time::Instant::now() + STEP;
    while (a.text("t") != "hello world" || b.text("t") != "hello world") && tokio::time::Instant::now() < deadline {
        a.pump_one(Duration::from_millis(20)).await;
        b.pump_one(Duration::from_millis(20)).await;
    }
    assert_eq!(a.text("t"), "hello world", "{point:?}: A after reconnect");
    assert_eq!(b.text("t"), "hello world", "{point:?}: B after reconnect (A's re-sent update did not land)");
    if point == FaultPoint::AppendWrite {
        // Nothing reached the file, so "world" can only have come back through A's SyncStep2 diff,
        // broadcast as an update frame once stored.
        assert!(!a.updates_received.is_empty(), "{point:?}: A's re-sent diff was not echoed");
        assert!(!b.updates_received.is_empty(), "{point:?}: B did not get A's re-sent diff as an update");
    }

    // New writes are stored and echoed to both.
    let (na, nb) = (a.updates_received.len(), b.updates_received.len());
    let bang = b.insert_text("t", 11, "!").await;
    assert!(b.pump_until(|c| c.updates_received.len() > nb, STEP).await, "{point:?}: B's new edit not echoed");
    assert!(a.pump_until(|c| c.updates_received.len() > na, STEP).await, "{point:?}: A did not get B's new edit");
    assert_eq!(*b.updates_received.last().unwrap(), bang);
    assert_eq!(a.text("t"), "hello world!");
    let c = Client::connect(addr, DOC).await;
    assert_eq!(c.text("t"), "hello world!");
    drop((a, b, c));
    assert!(server.shutdown().await, "{point:?}: shutdown did not finish");
    assert_eq!(stored_text(tmp.path()), "hello world!", "{point:?}: on disk after shutdown");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_write_is_never_acknowledged_and_the_document_recovers() {
    failed_append_is_never_acknowledged(FaultPoint::AppendWrite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_fsync_is_never_acknowledged_and_the_document_recovers() {
    failed_append_is_never_acknowledged(FaultPoint::AppendSync).await;
}

/// After a failed fsync the record is in the file as the page cache holds it, but may never reach
/// the disk. The room reads it back on reload and compacts first "to make everything we are about
/// to serve durable for real" (room/task.rs): so nothing read back may be sent to a client before
/// that compaction's snapshot is fsynced. Here the compaction is slowed down so that the order is
/// observable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_read_back_after_failed_fsync_is_not_served_before_it_is_durable() {
    let tmp = tempfile::TempDir::new().unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let slow_compaction = Arc::new(AtomicBool::new(false));
    let snapshot_durable: Arc<Mutex<Option<Instant>>> = Arc::default();
    let hook: FaultHook = {
        let (failing, slow, durable) = (failing.clone(), slow_compaction.clone(), snapshot_durable.clone());
        Arc::new(move |p, _doc| {
            match p {
                FaultPoint::AppendSync if failing.load(SeqCst) => {
                    return Err(std::io::Error::other("injected fsync failure"));
                }
                // Runs on the blocking pool: sleeping here only delays this compaction.
                FaultPoint::CompactTmpWritten if slow.load(SeqCst) => std::thread::sleep(Duration::from_millis(1500)),
                FaultPoint::CompactDirSynced if slow.load(SeqCst) => {
                    durable.lock().unwrap().get_or_insert_with(Instant::now);
                }
                _ => {}
            }
            Ok(())
        })
    };
    let store = DiskStore::open(tmp.path()).unwrap().with_fault_hook(hook);
    let server = start_store(Arc::new(store), test_config()).await;
    let addr = server.addr;

    let mut a = Client::connect(addr, DOC).await;
    let mut b = Client::connect(addr, DOC).await;
    a.insert_text("t", 0, "hello ").await;
    assert!(b.pump_until(|c| c.updates_received.len() == 1, STEP).await);
    failing.store(true, SeqCst);
    a.insert_text("t", 6, "world").await;
    a.expect_closed().await;
    b.expect_closed().await;
    assert_eq!(b.text("t"), "hello ");

    failing.store(false, SeqCst);
    slow_compaction.store(true, SeqCst);
    let Client { doc: b_doc, .. } = b;
    let b = Client::connect_retrying(addr, DOC, b_doc, Duration::from_secs(10)).await;
    let got_at = Instant::now();
    let served = b.text("t");
    let durable_at = *snapshot_durable.lock().unwrap();
    eprintln!("B synced with {served:?}; the reload's snapshot durable: {durable_at:?}, B synced at {got_at:?}");
    if served.contains("world") {
        assert!(
            durable_at.is_some_and(|d| d <= got_at),
            "B received \"world\" (read back from a log record whose fsync FAILED) before the reload's \
             compaction had made it durable (snapshot durable at {durable_at:?}, B synced at {got_at:?}): \
             the SyncStep2 reply is not held until that compaction completes"
        );
    }
    drop(b);
    drop(a);
    assert!(server.shutdown().await);
}
