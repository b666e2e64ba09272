//! What a view link may send (issue 11, item 3, in part): a viewer only ever sends a state vector
//! and its presence, kilobytes, so its message limit is that, not the editors' 8 MiB: a public link
//! cannot make the server buffer megabytes per socket.

mod common;

use common::*;
use commonpad_server::server::Config;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_viewers_message_limit_is_what_a_viewer_ever_sends() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), Config { open: false, ..test_config() }).await;
    let a = server.addr;
    let (id, edit, view) = create_session(a, "Viewer limits").await;
    // A viewer's real traffic passes.
    let viewer = connect_token(a, &id, &view).await;
    assert!(viewer.closed.is_none());
    // 200 KB from a viewer (an editor may send that much in one paste) is refused with 1009.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{a}/sync/{id}?token={view}")).await.unwrap();
    let big = commonpad_core::sync::protocol::encode_update(&vec![0u8; 200 * 1024]);
    let _ = ws.send(Message::binary(big.clone())).await;
    assert_eq!(close_code_after(&mut ws).await, Some(1009));
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{a}/sync/{id}?token={edit}")).await.unwrap();
    let _ = ws.send(Message::binary(big)).await;
    assert_ne!(close_code_after(&mut ws).await, Some(1009), "an editor's limit is the message limit");
    server.shutdown().await;
}

/// The first fragment of a binary message, never followed by its last.
fn first_fragment(len: usize) -> Message {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    Message::Frame(Frame::message(vec![0u8; len], OpCode::Data(Data::Binary), false))
}

/// Reads (answering pings, as every client library does) until the connection closes; its code.
async fn close_code_while_answering_pings(ws: &mut Ws, within: std::time::Duration) -> Option<u16> {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, ws.next()).await {
        match msg {
            Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

#[tokio::test]
async fn a_message_that_never_completes_is_closed_even_while_pongs_come() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        ping_interval: std::time::Duration::from_millis(400),
        message_timeout: std::time::Duration::from_secs(1),
        ..test_config()
    };
    let server = start_with(dir.path(), config).await;
    let mut ws = raw_connect(server.addr, "stalled").await;
    ws.send(Message::binary(commonpad_core::sync::protocol::encode_sync_step1(&[0]))).await.unwrap();
    ws.send(first_fragment(100_000)).await.unwrap();
    let code = close_code_while_answering_pings(&mut ws, std::time::Duration::from_secs(8)).await;
    assert_eq!(code, Some(1008), "an unfinished message was kept alive by pongs");
    server.shutdown().await;
}

#[tokio::test]
async fn bytes_in_unfinished_messages_have_a_server_wide_budget() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { max_unfinished_message_bytes: 150_000, ..test_config() };
    let server = start_with(dir.path(), config).await;
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..4 {
        let mut ws = raw_connect(server.addr, "budget").await;
        let _ = ws.send(first_fragment(60_000)).await;
        held.push(ws);
    }
    for ws in &mut held {
        if close_code_while_answering_pings(ws, std::time::Duration::from_millis(1500)).await == Some(1013) {
            refused += 1;
        }
    }
    assert!(refused >= 1, "240 KB of unfinished messages were held under a 150 KB budget");
    let metrics = http(server.addr, "GET", "/metrics", None, b"").await.text();
    assert!(!metrics.contains("commonpad_rejected_total{reason=\"message_budget\"} 0"), "not counted");
    server.shutdown().await;
}
