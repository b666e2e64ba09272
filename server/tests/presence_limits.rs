//! Presence (awareness) that hostile clients send (issue 11, items 4, 5 and 10): a state larger than
//! any real one, client ids created without end, another editor's state rewritten or removed, the
//! server's own entry raced. Each is refused or dropped, and newcomers still get in and see the
//! truth.

mod common;

use common::*;
use commonpad_core::sync::protocol::{self, write_string, write_var_u64, Reader};
use std::collections::HashMap;

/// An awareness update of (client id, clock, JSON state) entries.
fn presence(entries: &[(u64, u32, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    write_var_u64(&mut out, entries.len() as u64);
    for (client, clock, state) in entries {
        write_var_u64(&mut out, *client);
        write_var_u64(&mut out, u64::from(*clock));
        write_string(&mut out, state);
    }
    protocol::encode_awareness(&out)
}

/// What a client knows of everyone's presence: the last state seen per client id (None: removed).
fn known(c: &Client) -> HashMap<u64, Option<String>> {
    let mut states = HashMap::new();
    for update in &c.awareness {
        let mut r = Reader::new(update);
        let n = r.read_var_u64().unwrap();
        for _ in 0..n {
            let client = r.read_var_u64().unwrap();
            let _clock = r.read_var_u32().unwrap();
            let state = r.read_string().unwrap();
            states.insert(client, (state != "null").then(|| state.to_owned()));
        }
    }
    states
}

#[tokio::test]
async fn a_state_larger_than_any_real_presence_closes_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), test_config()).await;
    let mut hostile = Client::connect(server.addr, "big").await;
    let huge = format!(r#"{{"user":{{"name":"{}"}}}}"#, "x".repeat(512 * 1024));
    hostile.send_raw(presence(&[(77, 1, &huge)])).await;
    match hostile.expect_closed().await {
        Closed::Code(code, reason) => {
            assert_eq!(code, 1007, "{reason}");
            assert!(reason.contains("too large"), "the reason says why: {reason}");
        }
        other => panic!("closed without a code: {other:?}"),
    }
    // A newcomer is greeted without it.
    let newcomer = Client::connect(server.addr, "big").await;
    assert!(!known(&newcomer).contains_key(&77));
    server.shutdown().await;
}

#[tokio::test]
async fn client_ids_a_connection_creates_are_bounded_removals_included() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), test_config()).await;
    let mut hostile = Client::connect(server.addr, "ids").await;
    // Each new id is set, then removed: live states stay at one, removal entries pile up.
    for id in 1..=64u64 {
        hostile.send_raw(presence(&[(id, 1, "{}")])).await;
        hostile.send_raw(presence(&[(id, 2, "null")])).await;
    }
    let closed = hostile.expect_closed().await;
    assert!(matches!(closed, Closed::Code(1007, _)), "{closed:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_editor_cannot_rewrite_or_remove_another_editors_presence() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), test_config()).await;
    let mut ana = Client::connect(server.addr, "who").await;
    ana.send_raw(presence(&[(1001, 1, r#"{"user":{"name":"Ana"}}"#)])).await;
    let mut mallory = Client::connect(server.addr, "who").await;
    assert!(mallory.pump_until(|c| known(c).get(&1001).is_some_and(|s| s.is_some()), STEP).await);
    // Mallory removes Ana's state, then rewrites it, with higher clocks.
    mallory.send_raw(presence(&[(1001, 5, "null")])).await;
    mallory.send_raw(presence(&[(1001, 9, r#"{"user":{"name":"Not Ana"}}"#)])).await;
    // Mallory is not closed for it (stock clients echo what they receive), and a newcomer still
    // sees Ana as Ana.
    let mut probe = Client::connect(server.addr, "who").await;
    probe.send_raw(vec![protocol::MSG_QUERY_AWARENESS as u8]).await;
    probe.pump_until(|_| false, std::time::Duration::from_millis(500)).await;
    assert_eq!(known(&probe).get(&1001).cloned().flatten().as_deref(), Some(r#"{"user":{"name":"Ana"}}"#));
    assert!(mallory.closed.is_none(), "{:?}", mallory.closed);
    server.shutdown().await;
}

#[tokio::test]
async fn the_servers_entry_cannot_be_raced_and_a_maximum_clock_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), test_config()).await;
    let mut mallory = Client::connect(server.addr, "counts").await;
    // Before any viewer came, the server has published nothing under id 0: take it anyway.
    mallory.send_raw(presence(&[(0, u32::MAX - 1, r#"{"server":{"editors":0,"viewers":999}}"#)])).await;
    let mut probe = Client::connect(server.addr, "counts").await;
    probe.send_raw(vec![protocol::MSG_QUERY_AWARENESS as u8]).await;
    probe.pump_until(|_| false, std::time::Duration::from_millis(500)).await;
    assert!(
        !known(&probe).get(&0).cloned().flatten().is_some_and(|s| s.contains("999")),
        "a client set the server's entry: {:?}",
        known(&probe).get(&0)
    );
    // A clock at its maximum could never be superseded (its removal would need a higher one).
    mallory.send_raw(presence(&[(4242, u32::MAX, "{}")])).await;
    assert!(matches!(mallory.expect_closed().await, Closed::Code(1007, _)));
    server.shutdown().await;
}
