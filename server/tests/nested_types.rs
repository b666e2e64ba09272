//! Nested shared types against the real binary: yrs deletes them recursively, so a deep enough
//! chain of Y.Arrays would overflow the stack when its outer array is deleted (a process abort no
//! `catch_unwind` can catch). The server caps shared types per document (50,000) and runs its
//! workers on stacks sized for that cap; this test builds a chain at the cap, deletes it, and
//! checks the process survives and the cap holds.

mod common;

use commonpad_core::sync::protocol;
use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const CLIENT: u64 = 4242;

fn var(out: &mut Vec<u8>, v: u64) {
    protocol::write_var_u64(out, v);
}

/// `n` Y.Arrays, each inside the previous one, the first in root type "a", starting at `clock`.
fn chain(clock: u64, n: u64, parent: Option<u64>) -> Vec<u8> {
    let mut u = Vec::new();
    var(&mut u, 1);
    var(&mut u, n);
    var(&mut u, CLIENT);
    var(&mut u, clock);
    for i in 0..n {
        u.push(7); // info: Type content, no origins, so parent info follows
        match (i, parent) {
            (0, None) => {
                var(&mut u, 1);
                protocol::write_string(&mut u, "a");
            }
            (0, Some(p)) => {
                var(&mut u, 0);
                var(&mut u, CLIENT);
                var(&mut u, p);
            }
            _ => {
                var(&mut u, 0);
                var(&mut u, CLIENT);
                var(&mut u, clock + i - 1);
            }
        }
        u.push(0); // Y.Array
    }
    var(&mut u, 0); // empty delete set
    u
}

/// Deletes the item at `clock`.
fn delete(clock: u64) -> Vec<u8> {
    let mut u = Vec::new();
    var(&mut u, 0);
    var(&mut u, 1);
    var(&mut u, CLIENT);
    var(&mut u, 1);
    var(&mut u, clock);
    var(&mut u, 1);
    u
}

async fn send_and_wait_echo(ws: &mut common::Ws, update: &[u8]) -> Result<(), Option<u16>> {
    ws.send(Message::binary(protocol::encode_update(update))).await.map_err(|_| None)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => {
                if let Ok(protocol::Message::Update { update: got }) = protocol::decode_message(&b) {
                    if got == update {
                        return Ok(());
                    }
                }
            }
            Ok(Some(Ok(Message::Close(f)))) => return Err(f.map(|f| u16::from(f.code))),
            Ok(None) | Ok(Some(Err(_))) => return Err(None),
            _ => {}
        }
    }
    panic!("no echo and no close within 60 s")
}

#[test]
fn a_chain_at_the_type_cap_can_be_deleted_and_the_cap_holds() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_commonpad"))
        .args(["serve", "--open", "--addr", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr: std::net::SocketAddr = line.trim().trim_start_matches("listening on http://").parse().expect("addr");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut ws = common::raw_connect(addr, "deep").await;
        // Built in four updates of 12,500, each nested in the last: 50,000 levels, the cap.
        let quarter = 12_500;
        for k in 0..4 {
            let parent = if k == 0 { None } else { Some(k * quarter - 1) };
            send_and_wait_echo(&mut ws, &chain(k * quarter, quarter, parent))
                .await
                .expect("a chain within the cap is accepted");
        }
        // Deleting the outer array makes yrs recurse 50,000 levels deep.
        send_and_wait_echo(&mut ws, &delete(0)).await.expect("the delete is applied");
        // One type more is refused, and closes only that connection.
        let refused = send_and_wait_echo(&mut ws, &chain(4 * quarter, 1, None)).await;
        assert_eq!(refused, Err(Some(1007)), "a type over the cap was accepted");
        // The process is alive and serves others.
        let c = common::Client::connect(addr, "other").await;
        drop(c);
    });
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(alive, "the server process died");
}
