//! Quotas (issue 11, item 15): a document has a size cap with a clear refusal, a connection a
//! generous update rate limit (a fast typist and a large paste pass), and with --open the creation
//! of new documents is rate limited.

mod common;

use common::*;
use commonpad_server::server::Config;

#[tokio::test]
async fn a_document_has_a_size_cap_with_a_clear_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.room.max_doc_bytes = 64 * 1024;
    let server = start_with(dir.path(), config).await;
    let mut writer = Client::connect(server.addr, "capped").await;
    let mut accepted = 0;
    for i in 0..20 {
        let update = writer.insert_text("t", 0, &"x".repeat(8 * 1024)).await;
        if !writer.pump_until(|c| c.updates_received.contains(&update) || c.closed.is_some(), STEP).await {
            panic!("update {i} neither echoed nor refused");
        }
        if writer.closed.is_some() {
            break;
        }
        accepted += 1;
    }
    match writer.closed.clone() {
        Some(Closed::Code(code, reason)) => {
            assert_eq!(code, commonpad_core::close::DOCUMENT_FULL, "{reason}");
            assert!(reason.contains("size limit"), "{reason}");
        }
        other => panic!("160 KB went into a 64 KiB document: {other:?}"),
    }
    assert!((4..8).contains(&accepted), "{accepted} updates of 8 KiB accepted under a 64 KiB cap");
    // Readers still get the document as it is.
    let reader = Client::connect(server.addr, "capped").await;
    assert_eq!(reader.text_len("t"), accepted * 8 * 1024);
    server.shutdown().await;
}

#[tokio::test]
async fn a_flood_of_updates_is_cut_while_a_fast_typist_and_a_paste_pass() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.update_rate = (50, 20); // burst 50, then 20 a second
    let server = start_with(dir.path(), config).await;
    // A fast typist: 10 keystrokes a second for 3 s, and a paste.
    let mut typist = Client::connect(server.addr, "rate").await;
    for i in 0..30 {
        typist.insert_text("t", 0, &format!("{}", i % 10)).await;
        typist.pump_until(|_| false, std::time::Duration::from_millis(100)).await;
    }
    typist.insert_text("t", 0, &"pasted text ".repeat(5000)).await;
    typist.pump_until(|_| false, std::time::Duration::from_millis(300)).await;
    assert!(typist.closed.is_none(), "{:?}", typist.closed);
    // A flood: 1,000 updates as fast as the socket takes them.
    let mut flood = Client::connect(server.addr, "rate").await;
    for i in 0..1000 {
        flood.insert_text("f", 0, &format!("{i} ")).await;
    }
    let closed = flood.expect_closed().await;
    assert!(matches!(&closed, Closed::Code(1013, r) if r.contains("too many updates")), "{closed:?}");
    let metrics = http(server.addr, "GET", "/metrics", None, b"").await.text();
    assert!(metrics.contains("commonpad_rejected_total{reason=\"update_rate\"} 1"), "not counted");
    server.shutdown().await;
}

#[tokio::test]
async fn with_open_creating_documents_is_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { open_creations: (5, 0), ..test_config() };
    let server = start_with(dir.path(), config).await;
    for i in 0..5 {
        let mut c = Client::connect(server.addr, &format!("new-{i}")).await;
        let update = c.insert_text("t", 0, "exists now").await;
        assert!(c.pump_until(|c| c.updates_received.contains(&update), STEP).await, "document {i}");
    }
    assert_eq!(ws_status(server.addr, "/sync/new-5").await, 429, "the sixth new document in a burst of five");
    // A document that exists is not new, loaded or not.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(ws_status(server.addr, "/sync/new-0").await, 101);
    server.shutdown().await;
}
