//! Who may connect when a document is crowded (issue 11, item 2): viewers at their cap never lock
//! editors out, one address cannot take every place, and each refusal closes with 1013, a reason
//! a client can show, and a count in `/metrics`.

mod common;

use common::*;
use commonpad_server::server::Config;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn config(edit: usize, view: usize, per_ip: usize) -> Config {
    let mut c = Config { open: false, ..test_config() };
    c.limits.max_editors_per_doc = edit;
    c.limits.max_viewers_per_doc = view;
    c.limits.max_conns_per_ip_per_doc = per_ip;
    c
}

/// The close code and reason a connection gets after its first message.
async fn refusal(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut c = Client::over(raw_connect(addr, path).await);
    c.send_raw(commonpad_core::sync::protocol::encode_sync_step1(&[0])).await;
    match c.expect_closed().await {
        Closed::Code(code, reason) => (code, reason),
        other => panic!("{path}: closed without a code: {other:?}"),
    }
}

async fn rejected(addr: std::net::SocketAddr, reason: &str) -> u64 {
    let metrics = http(addr, "GET", "/metrics", None, b"").await.text();
    let line = format!("commonpad_rejected_total{{reason=\"{reason}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&line)).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn editors_get_in_while_viewers_are_at_their_cap() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), config(2, 3, 1000)).await;
    let a = server.addr;
    let (id, edit, view) = create_session(a, "Crowded").await;
    let mut viewers = Vec::new();
    for _ in 0..3 {
        viewers.push(connect_token(a, &id, &view).await);
    }
    let (code, reason) = refusal(a, &format!("{id}?token={view}")).await;
    assert_eq!(code, 1013);
    assert!(reason.contains("viewers"), "{reason}");
    assert_eq!(rejected(a, "doc_viewer_limit").await, 1);
    // Editors have places of their own.
    let mut editor = connect_token(a, &id, &edit).await;
    editor.insert_text("t", 0, "still writable").await;
    let _second = connect_token(a, &id, &edit).await;
    let (code, reason) = refusal(a, &format!("{id}?token={edit}")).await;
    assert_eq!((code, reason.contains("editors")), (1013, true), "{reason}");
    // A place freed is a place taken again.
    drop(viewers.pop());
    let again = Client::connect_retrying(a, &format!("{id}?token={view}"), yrs::Doc::new(), STEP).await;
    assert!(again.closed.is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn one_address_cannot_take_every_place() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), Config { open: true, ..config(1000, 1000, 2) }).await;
    let a = server.addr;
    let _one = Client::connect(a, "venue").await;
    let _two = Client::connect(a, "venue").await;
    let (code, reason) = refusal(a, "venue").await;
    assert_eq!(code, 1013);
    assert!(reason.contains("your network"), "{reason}");
    assert_eq!(rejected(a, "address_doc_limit").await, 1);
    // Per document: the same address still opens another one.
    let _other = Client::connect(a, "other").await;
    server.shutdown().await;
}

/// Behind a reverse proxy every client has the proxy's address; the proxy's X-Forwarded-For tells
/// them apart, and only a trusted proxy's is believed.
#[tokio::test]
async fn a_trusted_proxy_tells_clients_apart() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config { open: true, ..config(1000, 1000, 1) };
    c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let server = start_with(dir.path(), c).await;
    let a = server.addr;
    let via = |client: &str| {
        let mut req = format!("ws://{a}/sync/proxied").into_client_request().unwrap();
        req.headers_mut().insert("x-forwarded-for", format!("203.0.113.9, {client}").parse().unwrap());
        req
    };
    let (ws1, _) = tokio_tungstenite::connect_async(via("192.0.2.1")).await.unwrap();
    let mut c1 = Client::over(ws1);
    c1.send_raw(commonpad_core::sync::protocol::encode_sync_step1(&[0])).await;
    assert!(c1.pump_until(|c| c.synced, STEP).await, "first client");
    let (ws2, _) = tokio_tungstenite::connect_async(via("192.0.2.2")).await.unwrap();
    let mut c2 = Client::over(ws2);
    c2.send_raw(commonpad_core::sync::protocol::encode_sync_step1(&[0])).await;
    assert!(c2.pump_until(|c| c.synced, STEP).await, "a second client behind the same proxy");
    let (ws3, _) = tokio_tungstenite::connect_async(via("192.0.2.1")).await.unwrap();
    let mut c3 = Client::over(ws3);
    c3.send_raw(commonpad_core::sync::protocol::encode_sync_step1(&[0])).await;
    assert!(matches!(c3.expect_closed().await, Closed::Code(1013, _)), "the first client's address again");
    server.shutdown().await;
}
