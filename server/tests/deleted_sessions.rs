//! Links refused for good (issue 11, item 7): a deleted session's names stay reserved, even with
//! --open; deleting succeeds while clients keep trying to reconnect; and connections closed for
//! good (link rotated, session deleted) get a 4400-4499 code, which stock y-websocket clients
//! take as final, instead of 1008, after which they reconnect for ever.

mod common;

use common::*;
use commonpad_server::server::Config;
use std::time::{Duration, Instant};

/// A client that reconnects as fast as y-websocket does after a close, until `until`.
fn keep_reconnecting(addr: std::net::SocketAddr, path: String, until: Instant) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let mut attached = 0;
        while Instant::now() < until {
            if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(format!("ws://{addr}/sync/{path}")).await {
                attached += 1;
                use futures_util::{SinkExt, StreamExt};
                let _ = ws
                    .send(tokio_tungstenite::tungstenite::Message::binary(
                        commonpad_core::sync::protocol::encode_sync_step1(&[0]),
                    ))
                    .await;
                while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await {}
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        attached
    })
}

#[tokio::test]
async fn a_deleted_sessions_names_stay_reserved_and_delete_succeeds_under_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), Config { open: true, ..test_config() }).await;
    let a = server.addr;
    let (id, edit, _) = create_session(a, "Soon gone").await;
    let mut private = connect_token(a, &format!("{id}.private"), &edit).await;
    private.insert_text("emails", 0, "ana@example.org").await;
    assert!(private.pump_until(|c| !c.updates_received.is_empty(), STEP).await);
    let until = Instant::now() + Duration::from_secs(8);
    let reconnecting = [
        keep_reconnecting(a, format!("{id}?token={edit}"), until),
        keep_reconnecting(a, format!("{id}.private?token={edit}"), until),
        keep_reconnecting(a, format!("{id}.private"), until),
    ];
    let started = Instant::now();
    let deleted = http(a, "DELETE", &format!("/api/sessions/{id}"), Some(ADMIN), b"").await;
    assert_eq!(deleted.status, 204, "delete under reconnecting clients: {}", deleted.text());
    assert!(started.elapsed() < Duration::from_secs(5), "delete took {:?}", started.elapsed());
    for path in [format!("/sync/{id}"), format!("/sync/{id}.private"), format!("/sync/{id}?token={edit}")] {
        assert_eq!(ws_status(a, &path).await, 410, "{path}: a deleted session's name must stay reserved");
    }
    for r in reconnecting {
        r.await.unwrap();
    }
    // Nothing brought the documents back.
    let docs = std::fs::read_dir(dir.path().join("docs")).unwrap().filter_map(|e| e.ok()).count();
    assert_eq!(docs, 0, "a deleted session's documents were written again");
    assert_eq!(http(a, "GET", &format!("/api/sessions/{id}"), Some(&edit), b"").await.status, 410);
    server.shutdown().await;
}

#[tokio::test]
async fn connections_closed_for_good_get_a_code_stock_clients_do_not_retry() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), Config { open: false, ..test_config() }).await;
    let a = server.addr;
    let (id, edit, view) = create_session(a, "Codes").await;
    let mut viewer = connect_token(a, &id, &view).await;
    let rotated = http(a, "POST", &format!("/api/sessions/{id}/rotate"), Some(ADMIN), br#"{"role":"view"}"#).await;
    assert_eq!(rotated.status, 200);
    match viewer.expect_closed().await {
        Closed::Code(code, reason) => {
            assert!((4400..4500).contains(&code), "rotation closed with {code}: {reason}");
            assert!(reason.contains("replaced"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let mut editor = connect_token(a, &id, &edit).await;
    assert_eq!(http(a, "DELETE", &format!("/api/sessions/{id}"), Some(ADMIN), b"").await.status, 204);
    match editor.expect_closed().await {
        Closed::Code(code, reason) => {
            assert!((4400..4500).contains(&code), "deletion closed with {code}: {reason}");
            assert!(reason.contains("deleted"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}
