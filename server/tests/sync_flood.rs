//! A viewer that asks for the whole document again and again (issue 11, item 6): the full state is
//! encoded once per version of the document and shared, each connection has a budget of sync
//! answers, and an editor's echo latency stays what it was (measured as a ratio).

mod common;

use common::*;
use commonpad_core::sync::protocol;
use commonpad_server::server::Config;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// The median time from sending an edit to receiving its echo, over `n` edits.
async fn echo_p50(editor: &mut Client, n: usize) -> Duration {
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let update = editor.insert_text("probe", 0, &format!("{i} ")).await;
        assert!(editor.pump_until(|c| c.updates_received.contains(&update), STEP).await, "edit {i} not echoed");
        took.push(started.elapsed());
    }
    took.sort();
    took[n / 2]
}

#[tokio::test]
async fn a_viewer_cannot_make_the_room_send_the_document_again_and_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), Config { open: false, ..test_config() }).await;
    let a = server.addr;
    let (id, edit, view) = create_session(a, "Flooded").await;
    let mut editor = connect_token(a, &id, &edit).await;
    // A document of about 200 KB, as in the review's reproduction.
    for i in 0..40 {
        let update = editor.insert_text("body", 0, &format!("{i:04}{}", "lorem ipsum ".repeat(400))).await;
        assert!(editor.pump_until(|c| c.updates_received.contains(&update), STEP).await);
    }
    let doc_len = editor.state().len();
    assert!(doc_len > 150_000, "{doc_len}");
    let before = echo_p50(&mut editor, 40).await;

    // The flooder: 2,000 empty state vectors (12 KB sent), reading everything it gets back.
    let (mut flood, _) = tokio_tungstenite::connect_async(format!("ws://{a}/sync/{id}?token={view}")).await.unwrap();
    let sender = async {
        for _ in 0..2000 {
            if flood.send(Message::binary(protocol::encode_sync_step1(&[0]))).await.is_err() {
                break;
            }
        }
        let mut received = 0usize;
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(3), flood.next()).await {
            received += m.len();
        }
        received
    };
    let (received, during) = tokio::join!(sender, echo_p50(&mut editor, 40));
    assert!(
        received < 20 * doc_len,
        "12 KB of requests made the server send {received} bytes ({}x the document)",
        received / doc_len
    );
    // The editor's echo is not slowed down (a ratio, with a floor for sub-millisecond noise).
    assert!(
        during <= before * 3 + Duration::from_millis(5),
        "echo p50 {before:?} before the flood, {during:?} during it"
    );
    let metrics = http(a, "GET", "/metrics", None, b"").await.text();
    assert!(metrics.contains("commonpad_rejected_total{reason=\"sync_requests\"} 1"), "the refusal is counted");
    server.shutdown().await;
}
