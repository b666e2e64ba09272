//! Shutdown is tracked, not polled: a room whose task panics has ended all the same, so shutdown
//! still finishes promptly and reports success (the binary then exits 0), and every other
//! document is flushed and compacted as usual.

mod common;

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use commonpad_core::store::disk::DiskStore;
use commonpad_core::store::{Compacted, Loaded, Position, Store, StoreError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The disk store, except that loading the document `boom` panics inside the room's task.
struct PanicsOnLoad(DiskStore);

#[async_trait]
impl Store for PanicsOnLoad {
    async fn load(&self, doc: &str) -> Result<Loaded, StoreError> {
        if doc == "boom" {
            panic!("injected: the room for {doc} panics while loading");
        }
        self.0.load(doc).await
    }
    async fn append(&self, doc: &str, updates: Vec<Bytes>) -> Result<u64, StoreError> {
        self.0.append(doc, updates).await
    }
    async fn replace_snapshot(
        &self,
        doc: &str,
        state: Vec<u8>,
        upto: Option<Position>,
    ) -> Result<Compacted, StoreError> {
        self.0.replace_snapshot(doc, state, upto).await
    }
    async fn release(&self, doc: &str) {
        self.0.release(doc).await
    }
    async fn list(&self) -> Result<Vec<String>, StoreError> {
        self.0.list().await
    }
    async fn exists(&self, doc: &str) -> Result<bool, StoreError> {
        self.0.exists(doc).await
    }
    async fn delete(&self, doc: &str) -> Result<(), StoreError> {
        self.0.delete(doc).await
    }
}

#[tokio::test]
async fn a_room_that_panicked_does_not_hold_up_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskStore::open(dir.path()).unwrap();
    let server = start_store(Arc::new(PanicsOnLoad(disk)), test_config()).await;

    // A healthy document with an acknowledged edit.
    let mut fine = Client::connect(server.addr, "fine").await;
    let update = fine.insert_text("text", 0, "kept").await;
    assert!(fine.pump_until(|c| c.updates_received.contains(&update), STEP).await, "edit not echoed");

    // A document whose room panics: its connection ends without a greeting.
    let mut boom = raw_connect(server.addr, "boom").await;
    use futures_util::StreamExt;
    let ended = tokio::time::timeout(STEP, async { while let Some(Ok(_)) = boom.next().await {} }).await;
    assert!(ended.is_ok(), "the connection to the panicked room should end");
    // The panicked room is gone from the hub, so the name can load again (and panic again).
    let deadline = Instant::now() + STEP;
    while server.hub.is_loaded("boom") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!server.hub.is_loaded("boom"), "a panicked room must leave the hub");

    let started = Instant::now();
    let ok = tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await;
    assert_eq!(ok.ok(), Some(true), "shutdown should finish and report success despite the panicked room");
    assert!(started.elapsed() < Duration::from_secs(10), "shutdown took {:?}", started.elapsed());

    // The healthy document was flushed and compacted on the way out.
    let loaded = DiskStore::open(dir.path()).unwrap().read_blocking("fine").unwrap();
    assert!(loaded.snapshot.is_some() && loaded.updates.is_empty(), "compacted at shutdown");
    let doc = loaded.to_doc("fine").unwrap();
    use yrs::{GetString, Transact};
    assert_eq!(doc.get_or_insert_text("text").get_string(&doc.transact()), "kept");
}
