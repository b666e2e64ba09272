//! Large documents survive a restart unchanged: (a) a long editing history (the automerge-paper
//! trace, 260k edits, sent as a few hundred updates so it goes through the log and several
//! compactions), (b) a 16 MiB document (sent in 64 KiB chunks, below the 8 MiB message limit;
//! synced back as one SyncStep2 far above it). Timings are printed for the notes, never asserted.

mod common;

use common::{raw_connect_unlimited, start_with, test_config, Client, STEP};
use commonpad_core::store::disk::DiskStore;
use commonpad_server::server::Config;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, Text, Transact, Update};

fn config() -> Config {
    let mut c = test_config();
    // Compact often, so that the history goes through many log-then-snapshot rounds.
    c.room.compact_min_log_bytes = 64 << 10;
    c
}

/// Sends the client's changes since `before` as one update and waits for the server's echo.
async fn send_since(c: &mut Client, before: &yrs::StateVector, sent: &mut usize) {
    let update = c.doc.transact().encode_state_as_update_v1(before);
    c.send_update(&update).await;
    *sent += 1;
    let want = *sent;
    assert!(c.pump_until(|c| c.updates_received.len() >= want, STEP).await, "no echo for update {want}");
    assert!(c.closed.is_none(), "closed: {:?}", c.closed);
}

/// Times a raw load of `doc` from the store and its application into a Doc.
fn time_store_load(dir: &std::path::Path, doc: &str) -> (Duration, Duration, u64, u64) {
    let t = Instant::now();
    let store = DiskStore::open(dir).unwrap();
    let loaded = store.load_blocking(doc).unwrap();
    let read = t.elapsed();
    let t = Instant::now();
    let d = Doc::new();
    {
        let mut txn = d.transact_mut();
        for u in loaded.snapshot.iter().chain(loaded.updates.iter()) {
            txn.apply_update(Update::decode_v1(u).unwrap()).unwrap();
        }
    }
    (read, t.elapsed(), loaded.snapshot_bytes, loaded.log_bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automerge_paper_history_survives_restart() {
    let t = Instant::now();
    let trace = common::trace::automerge_paper().expect("the automerge-paper trace");
    // Positions are in code points; yrs' default offsets are bytes. They agree on ASCII.
    assert!(trace.end_content.is_ascii(), "trace is not ASCII: offsets would need OffsetKind::Utf32");
    assert!(trace.txns.iter().all(|t| t.patches.iter().all(|p| p.2.is_ascii())));
    let patches: usize = trace.txns.iter().map(|t| t.patches.len()).sum();
    eprintln!(
        "trace: {} txns, {patches} patches, {} chars; parsed in {:?}",
        trace.txns.len(),
        trace.end_content.len(),
        t.elapsed()
    );

    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tmp.path();
    let server = start_with(dir, config()).await;
    let mut c = Client::connect(server.addr, "paper").await;
    let text = c.doc.get_or_insert_text("text");
    let t = Instant::now();
    let mut sent = 0;
    for chunk in trace.txns.chunks(1000) {
        let before = c.doc.transact().state_vector();
        for txn in chunk {
            for &(pos, del, ref ins) in &txn.patches {
                // One patch per transaction, as an editor would make them.
                let mut tx = c.doc.transact_mut();
                if del > 0 {
                    text.remove_range(&mut tx, pos, del);
                }
                if !ins.is_empty() {
                    text.insert(&mut tx, pos, ins);
                }
            }
        }
        send_since(&mut c, &before, &mut sent).await;
    }
    assert_eq!(c.text("text"), trace.end_content, "replay did not reproduce endContent");
    let compactions = server.hub.metrics().compactions.load(Relaxed);
    eprintln!("paper: replayed and sent {sent} updates in {:?} ({compactions} compactions meanwhile)", t.elapsed());
    assert!(compactions >= 1, "the history never went through a compaction");
    drop(c);
    let t = Instant::now();
    assert!(server.shutdown().await);
    eprintln!("paper: shutdown (flush + compact) {:?}", t.elapsed());
    let (read, apply, snap, log) = time_store_load(dir, "paper");
    eprintln!("paper: store load {read:?} ({snap} B snapshot, {log} B log), apply {apply:?}");

    let server = start_with(dir, config()).await;
    let t = Instant::now();
    let fresh = Client::connect(server.addr, "paper").await;
    eprintln!("paper: fresh client load + sync {:?}", t.elapsed());
    assert!(fresh.text("text") == trace.end_content, "after restart the text differs from endContent");
    drop(fresh);
    assert!(server.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_document_survives_restart() {
    const CHUNK: usize = 64 << 10;
    const CHUNKS: usize = 256; // 16 MiB
    let mut rng = StdRng::seed_from_u64(16);
    let alphabet: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,\n";
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tmp.path();
    let server = start_with(dir, test_config()).await;
    let mut c = Client::connect(server.addr, "big").await;
    let text = c.doc.get_or_insert_text("t");
    let mut expected = String::with_capacity(CHUNK * CHUNKS);
    let t = Instant::now();
    let mut sent = 0;
    for i in 0..CHUNKS {
        let chunk: String = (0..CHUNK).map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char).collect();
        let before = c.doc.transact().state_vector();
        {
            let mut tx = c.doc.transact_mut();
            // Mostly appends, some inserts in the middle, so the text is not one run.
            let len = text.len(&tx);
            let at = if i % 8 == 7 { len / 2 } else { len };
            text.insert(&mut tx, at, &chunk);
            expected.insert_str(at as usize, &chunk);
        }
        send_since(&mut c, &before, &mut sent).await;
    }
    assert_eq!(c.text("t").len(), expected.len());
    let compactions = server.hub.metrics().compactions.load(Relaxed);
    eprintln!(
        "big: sent {} MiB in {sent} updates in {:?} ({compactions} compactions meanwhile)",
        expected.len() >> 20,
        t.elapsed()
    );
    drop(c);
    let t = Instant::now();
    assert!(server.shutdown().await);
    eprintln!("big: shutdown (flush + compact) {:?}", t.elapsed());
    let (read, apply, snap, log) = time_store_load(dir, "big");
    eprintln!("big: store load {read:?} ({snap} B snapshot, {log} B log), apply {apply:?}");

    let server = start_with(dir, test_config()).await;
    let t = Instant::now();
    let ws = raw_connect_unlimited(server.addr, "big").await;
    let fresh = Client::try_sync_over(ws, Doc::new(), Duration::from_secs(60))
        .await
        .unwrap_or_else(|(closed, _)| panic!("fresh client did not sync the 16 MiB document: {closed:?}"));
    eprintln!("big: fresh client load + sync {:?}", t.elapsed());
    let got = fresh.text("t");
    assert_eq!(got.len(), expected.len(), "length after restart");
    assert!(got == expected, "16 MiB text differs after restart");
    // The full state, decoded on its own, holds the same text.
    let state = fresh.state();
    let d = Doc::new();
    d.transact_mut().apply_update(Update::decode_v1(&state).unwrap()).unwrap();
    assert!(d.get_or_insert_text("t").get_string(&d.transact()) == expected);
    eprintln!("big: full state {} B", state.len());
    drop(fresh);
    assert!(server.shutdown().await);
}
