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
