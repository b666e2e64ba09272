//! The hub against a tokio-tungstenite client: the protocol as y-websocket clients rely on it.

mod common;

use common::*;
use commonpad_core::sync::protocol;
use futures_util::SinkExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use yrs::{Map, ReadTxn, Transact};

#[tokio::test]
async fn two_clients_converge_and_the_sender_gets_its_echo() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), test_config()).await;
    let mut a = Client::connect(server.addr, "doc").await;
    let mut b = Client::connect(server.addr, "doc").await;
    let ua = a.insert_text("text", 0, "hello ").await;
    let ub = b.insert_text("text", 0, "world ").await;
    assert!(a.pump_until(|c| c.updates_received.len() >= 2, STEP).await);
    assert!(b.pump_until(|c| c.updates_received.len() >= 2, STEP).await);
    // Each sender receives its own update back (y-websocket 3.1's sync status relies on it).
    assert!(a.updates_received.contains(&ua), "no echo to the sender");
    assert!(b.updates_received.contains(&ub));
    assert_eq!(a.text("text"), b.text("text"));
    assert!(a.text("text").contains("hello ") && a.text("text").contains("world "));
    // A third client's first sync already holds everything.
    let c = Client::connect(server.addr, "doc").await;
    assert_eq!(c.text("text"), a.text("text"));
    assert!(server.shutdown().await);
}

#[tokio::test]
async fn documents_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), test_config()).await;
    let mut a = Client::connect(server.addr, "one").await;
    a.insert_text("text", 0, "only in one").await;
    assert!(a.pump_until(|c| !c.updates_received.is_empty(), STEP).await);
    let b = Client::connect(server.addr, "two").await;
    assert_eq!(b.text("text"), "");
    server.shutdown().await;
}

#[tokio::test]
async fn two_clients_joining_a_new_document_at_once_both_sync() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), test_config()).await;
    for round in 0..10 {
        let name = format!("fresh-{round}");
        let (mut a, mut b) = tokio::join!(Client::connect(server.addr, &name), Client::connect(server.addr, &name));
        a.insert_text("t", 0, "a").await;
        b.insert_text("t", 0, "b").await;
        assert!(a.pump_until(|c| c.text("t").len() == 2, STEP).await, "round {round}: a saw {:?}", a.text("t"));
        assert!(b.pump_until(|c| c.text("t").len() == 2, STEP).await, "round {round}: b saw {:?}", b.text("t"));
        assert_eq!(a.text("t"), b.text("t"));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn server_greets_with_sync_step1_and_answers_every_step1() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), test_config()).await;
    let mut ws = raw_connect(server.addr, "greet").await;
    let first = next_binary(&mut ws).await;
    assert!(matches!(protocol::decode_message(&first), Ok(protocol::Message::SyncStep1 { .. })));
    // An empty state vector, twice: two SyncStep2 answers, even though both are empty.
    for _ in 0..2 {
        ws.send(Message::binary(protocol::encode_sync_step1(&[0]))).await.unwrap();
        let reply = next_binary(&mut ws).await;
        assert!(matches!(protocol::decode_message(&reply), Ok(protocol::Message::SyncStep2 { .. })), "{reply:?}");
    }
    // Query-awareness is answered with an awareness message.
    ws.send(Message::binary(vec![3])).await.unwrap();
    let reply = next_binary(&mut ws).await;
    assert!(matches!(protocol::decode_message(&reply), Ok(protocol::Message::Awareness { .. })));
    // Auth and unknown message types are ignored; the connection stays usable.
    ws.send(Message::binary(vec![2, 0, 0])).await.unwrap();
    ws.send(Message::binary(vec![42, 1, 2, 3])).await.unwrap();
    ws.send(Message::binary(protocol::encode_sync_step1(&[0]))).await.unwrap();
    let reply = next_binary(&mut ws).await;
    assert!(matches!(protocol::decode_message(&reply), Ok(protocol::Message::SyncStep2 { .. })));
    server.shutdown().await;
}

async fn next_binary(ws: &mut Ws) -> Vec<u8> {
    use futures_util::StreamExt;
    loop {
        match tokio::time::timeout(STEP, ws.next()).await.expect("timed out").expect("closed").expect("error") {
            Message::Binary(b) => return b.to_vec(),
            Message::Close(f) => panic!("closed: {f:?}"),
            _ => {}
        }
    }
}

fn awareness_update(client: u64, clock: u64, json: &str) -> Vec<u8> {
    let mut u = Vec::new();
    protocol::write_var_u64(&mut u, 1);
    protocol::write_var_u64(&mut u, client);
    protocol::write_var_u64(&mut u, clock);
    protocol::write_string(&mut u, json);
    u
}

#[tokio::test]
async fn awareness_reaches_others_and_is_removed_on_disconnect() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), test_config()).await;
    let mut a = Client::connect(server.addr, "aw").await;
    let mut b = Client::connect(server.addr, "aw").await;
    let state = awareness_update((1 << 53) - 1, 1, r#"{"user":{"name":"Ana"}}"#);
    a.send_raw(protocol::encode_awareness(&state)).await;
    assert!(b.pump_until(|c| c.awareness.contains(&state), STEP).await, "B never saw A's state");
    // The sender gets its own state back too.
    assert!(a.pump_until(|c| c.awareness.contains(&state), STEP).await, "A got no echo");
    // A newcomer is told who is here in its greeting.
    let c = Client::connect(server.addr, "aw").await;
    assert!(c.awareness.iter().any(|u| u.windows(3).any(|w| w == b"Ana")), "newcomer not told");
    drop(a);
    let removal = awareness_update((1 << 53) - 1, 2, "null");
    assert!(b.pump_until(|c| c.awareness.contains(&removal), STEP).await, "A's state was not removed");
    server.shutdown().await;
}

#[tokio::test]
async fn map_edits_from_both_sides_merge() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), test_config()).await;
    let mut a = Client::connect(server.addr, "m").await;
    let mut b = Client::connect(server.addr, "m").await;
    for (c, key) in [(&mut a, "x"), (&mut b, "y")] {
        let before = c.doc.transact().state_vector();
        let map = c.doc.get_or_insert_map("map");
        map.insert(&mut c.doc.transact_mut(), key, "v");
        let u = c.doc.transact().encode_state_as_update_v1(&before);
        c.send_update(&u).await;
    }
    let both = |c: &Client| {
        let m = c.doc.get_or_insert_map("map");
        let t = c.doc.transact();
        m.len(&t) == 2
    };
    assert!(a.pump_until(both, STEP).await);
    assert!(b.pump_until(both, STEP).await);
    assert_eq!(a.state().len(), b.state().len());
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_answers_no_ping_is_closed() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.ping_interval = Duration::from_millis(300);
    let server = start_with(dir.path(), config).await;
    // A client that reads (and so answers pings, which tungstenite does on read) stays.
    let mut alive = Client::connect(server.addr, "ping").await;
    // A client that reads nothing answers no ping.
    let mut mute = raw_connect(server.addr, "ping").await;
    alive.pump_until(|_| false, Duration::from_millis(1500)).await;
    assert!(alive.closed.is_none(), "a responsive client was closed: {:?}", alive.closed);
    let mut code = None;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(5), mute.next()).await {
        if let Message::Close(f) = msg {
            code = f.map(|f| (u16::from(f.code), f.reason.to_string()));
            break;
        }
    }
    assert_eq!(code, Some((1001, "ping timeout".to_owned())));
    server.shutdown().await;
}
