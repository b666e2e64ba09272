//! Hostile and malformed input: each case closes only its own connection, with a close code, and
//! the server goes on serving everyone else. Nothing hostile reaches the other client.

mod common;

use common::*;
use commonpad_core::sync::protocol;
use futures_util::SinkExt;
use rand::{Rng, SeedableRng};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// An update with one `Any` value holding arrays nested `depth` deep (about 2 bytes a level).
fn nested_any_update(depth: usize) -> Vec<u8> {
    let mut u = vec![1, 1, 5, 0, 8, 1, 1, b'a', 1];
    for _ in 0..depth {
        u.extend_from_slice(&[117, 1]);
    }
    u.push(126);
    u.push(0);
    u
}

/// Sends `frame` on a fresh connection and returns the close code the server answered with.
async fn close_code_for(addr: std::net::SocketAddr, frame: Message) -> Option<u16> {
    let mut ws = raw_connect(addr, "victim").await;
    ws.send(frame).await.ok()?;
    close_code_after(&mut ws).await
}

/// The bystander still syncs, and never received anything from the attacker.
async fn bystander_unharmed(addr: std::net::SocketAddr, b: &mut Client) {
    let fresh = Client::connect(addr, "victim").await;
    assert_eq!(fresh.text("text"), "bystander");
    b.pump_until(|_| false, Duration::from_millis(50)).await;
    assert!(b.closed.is_none(), "the bystander was disconnected");
    assert!(
        b.updates_received.iter().all(|u| !u.windows(2).any(|w| w == [117, 1])),
        "hostile content reached a bystander"
    );
}

#[tokio::test]
async fn hostile_messages_close_only_their_own_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.max_message_bytes = 64 * 1024;
    let server = start_with(dir.path(), config).await;
    let mut b = Client::connect(server.addr, "victim").await;
    b.insert_text("text", 0, "bystander").await;
    assert!(b.pump_until(|c| !c.updates_received.is_empty(), STEP).await);
    let before = b.updates_received.len();

    // A state vector that claims billions of entries in five bytes.
    let bomb = protocol::encode_sync_step1(&[0x80, 0x80, 0x80, 0x80, 0x0f]);
    assert_eq!(close_code_for(server.addr, Message::binary(bomb)).await, Some(1007));
    bystander_unharmed(server.addr, &mut b).await;

    // ~20 KB of arrays nested 10,000 deep: on an unguarded yrs this overflows the stack.
    let deep = nested_any_update(10_000);
    assert!(deep.len() > 19_000);
    assert_eq!(close_code_for(server.addr, Message::binary(protocol::encode_update(&deep))).await, Some(1007));
    assert_eq!(close_code_for(server.addr, Message::binary(protocol::encode_sync_step2(&deep))).await, Some(1007));
    bystander_unharmed(server.addr, &mut b).await;

    // Text frames.
    assert_eq!(close_code_for(server.addr, Message::text("hello")).await, Some(1003));

    // A frame over the size limit.
    let big = protocol::encode_update(&vec![0u8; 100 * 1024]);
    let code = close_code_for(server.addr, Message::binary(big)).await;
    assert!(matches!(code, Some(1009) | None), "oversized frame: {code:?}");
    bystander_unharmed(server.addr, &mut b).await;

    // Every truncation of a valid update.
    let donor = yrs::Doc::new();
    let valid = {
        use yrs::{ReadTxn, Text, Transact};
        let t = donor.get_or_insert_text("other");
        t.insert(&mut donor.transact_mut(), 0, "some valid text");
        let s = donor.transact().encode_state_as_update_v1(&yrs::StateVector::default());
        s
    };
    let frame = protocol::encode_update(&valid);
    for cut in 1..frame.len() {
        // Either refused with 1007, or (short cuts that still parse as a shorter message) kept open.
        let code = close_code_for_or_open(server.addr, &frame[..cut]).await;
        assert!(matches!(code, Some(1007) | None), "cut {cut}: {code:?}");
    }
    bystander_unharmed(server.addr, &mut b).await;

    // Random bytes, seeded so a failure can be replayed.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC0FFEE);
    for _ in 0..100 {
        let len = rng.gen_range(1..512);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        bytes[0] = rng.gen_range(0..2); // mostly sync and awareness messages, the interesting ones
        let code = close_code_for_or_open(server.addr, &bytes).await;
        assert!(matches!(code, Some(1007) | None), "random frame {bytes:?}: {code:?}");
    }
    bystander_unharmed(server.addr, &mut b).await;
    assert_eq!(b.updates_received.len(), before, "the bystander received updates from attackers");
    let rejected = server.hub.metrics().rejected(commonpad_core::metrics::Reject::Malformed);
    assert!(rejected >= 4, "rejections were not counted: {rejected}");
    assert!(server.shutdown().await);
}

/// Sends a frame, then a SyncStep1: a connection the server kept open answers with a SyncStep2.
async fn close_code_for_or_open(addr: std::net::SocketAddr, frame: &[u8]) -> Option<u16> {
    let mut ws = raw_connect(addr, "victim").await;
    let _ = ws.send(Message::binary(frame.to_vec())).await;
    let _ = ws.send(Message::binary(protocol::encode_sync_step1(&[0]))).await;
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + STEP;
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
            Ok(Some(Ok(Message::Close(f)))) => return f.map(|f| u16::from(f.code)),
            Ok(Some(Ok(Message::Binary(b)))) => {
                if matches!(protocol::decode_message(&b), Ok(protocol::Message::SyncStep2 { .. })) {
                    return None; // still open and answering
                }
            }
            Ok(None) | Ok(Some(Err(_))) => return Some(0),
            _ => {}
        }
    }
    panic!("neither closed nor answered")
}

#[tokio::test]
async fn invalid_document_names_get_400_before_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), test_config()).await;
    let long = "x".repeat(129);
    for name in ["%2e%2e", "a%2Fb", "..", ".hidden", "a%00b", long.as_str(), "sp%20ace"] {
        let url = format!("ws://{}/sync/{name}", server.addr);
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 400, "{name}");
                let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
                assert!(body.contains("invalid_document_name"), "{name}: {body}");
            }
            other => panic!("{name}: expected HTTP 400, got {:?}", other.map(|_| "upgrade")),
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn connection_limits_close_with_try_again_later() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.limits.max_editors_per_doc = 2;
    let server = start_with(dir.path(), config).await;
    let _a = Client::connect(server.addr, "full").await;
    let _b = Client::connect(server.addr, "full").await;
    let mut c = raw_connect(server.addr, "full").await;
    assert_eq!(close_code_after(&mut c).await, Some(1013));
    // Another document is unaffected.
    let _d = Client::connect(server.addr, "other").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_slow_client_is_closed_and_fast_ones_keep_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = commonpad_core::store::disk::DiskStore::open(dir.path()).unwrap().without_fsync();
    let server = start_store(std::sync::Arc::new(store), test_config()).await;
    let mut fast = Client::connect(server.addr, "slow").await;
    // The slow client connects and then never reads another byte.
    let mut slow = raw_connect(server.addr, "slow").await;
    let _ = slow.send(Message::binary(protocol::encode_sync_step1(&[0]))).await;
    let mut writer = Client::connect(server.addr, "slow").await;
    let chunk = "x".repeat(16 * 1024);
    let n = 2000; // 32 MB of echoes: more than the slow client's queue and socket buffers hold
    for i in 0..n {
        writer.insert_text("text", 0, &chunk).await;
        // The writer and the fast reader read their echoes as they go (every 20 updates they catch
        // up on all of them, however fast this machine is); only `slow` never reads.
        if i % 20 == 19 {
            let sent = i + 1;
            assert!(writer.pump_until(|c| c.updates_received.len() >= sent, STEP).await, "writer's echoes, {sent}");
            assert!(fast.pump_until(|c| c.text_len("text") == sent * chunk.len(), STEP).await, "fast reader, {sent}");
        }
    }
    assert!(writer.closed.is_none(), "the writer was closed: {:?}", writer.closed);
    let want = n * chunk.len();
    assert!(fast.pump_until(|c| c.text_len("text") == want, Duration::from_secs(60)).await, "fast client fell behind");
    assert!(fast.closed.is_none());
    let slow_closed = server.hub.metrics().rejected(commonpad_core::metrics::Reject::SlowClient);
    assert_eq!(slow_closed, 1, "the slow client should have been closed, and only it");
    // Once it reads, the slow client finds a 1013 close after the frames it had been sent.
    let mut slow_client_closed = false;
    use futures_util::StreamExt;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(10), slow.next()).await {
        match msg {
            Ok(Message::Close(Some(f))) => {
                assert_eq!(u16::from(f.code), 1013);
                slow_client_closed = true;
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(slow_client_closed, "the slow client never got its 1013");
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_floods_sync_step1_and_never_reads_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.ping_interval = Duration::from_millis(500);
    let server = start_with(dir.path(), config).await;
    // A document of about 1 MB: every SyncStep1 is answered with all of it.
    let mut writer = Client::connect(server.addr, "flood").await;
    let chunk = "y".repeat(64 * 1024);
    for _ in 0..16 {
        writer.insert_text("text", 0, &chunk).await;
    }
    assert!(writer.pump_until(|c| c.updates_received.len() >= 16, STEP).await);
    drop(writer);
    // 3,000 four-byte requests for 1 MB each, and not one byte read back.
    let mut flood = raw_connect(server.addr, "flood").await;
    for _ in 0..3000 {
        if flood.send(Message::binary(vec![0u8, 0, 1, 0])).await.is_err() {
            break;
        }
    }
    // The server drops it (queue over its byte limit, or a write that cannot finish)...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while server.hub.metrics().connections_open(commonpad_core::Role::Edit).load(std::sync::atomic::Ordering::Relaxed)
        > 0
    {
        assert!(tokio::time::Instant::now() < deadline, "the flooding connection is still open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.hub.metrics().rejected(commonpad_core::metrics::Reject::SlowClient) >= 1);
    // ...the document unloads, and others are served.
    let c = Client::connect(server.addr, "flood").await;
    assert_eq!(c.text("text").len(), 16 * chunk.len());
    drop(c);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.hub.loaded_rooms() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the room never unloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(flood);
    server.shutdown().await;
}
