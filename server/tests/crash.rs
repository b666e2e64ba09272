//! Crash test against the real binary: clients write uniquely tagged edits at a steady pace while
//! the server is killed with SIGKILL at random moments. After every restart, every tag any client
//! had received back from the server (as an update frame or in a SyncStep2) must still be there.
//!
//! Seed: `CRASH_SEED=n cargo test -p commonpad-server --test crash` replays a run; `CRASH_CYCLES=n`
//! runs more kill cycles (5 by default).

mod common;

use common::{Client, STEP};
use commonpad_core::sync::protocol::{self, Message as M};
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use yrs::types::ToJson;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, Map, ReadTxn, StateVector, Transact, Update};

const DOC: &str = "crash-doc";
const CLIENTS: usize = 4;
/// Kill cycles; `CRASH_CYCLES=n` for a longer run.
fn cycles() -> usize {
    std::env::var("CRASH_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(5)
}

type Tags = Arc<Mutex<BTreeSet<String>>>;

/// A `commonpad serve` child process. Dropping it (a failed assertion) kills it too.
struct Server {
    child: Option<Child>,
    addr: SocketAddr,
}

/// Starts `commonpad serve` on a free port and waits for its "listening on" line.
async fn start_server(data: &Path, log: &Path) -> Server {
    let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_commonpad"))
        .args(["serve", "--open", "--addr", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("COMMONPAD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .spawn()
        .expect("spawn commonpad");
    let stdout = child.stdout.take().expect("stdout");
    let mut server = Server { child: Some(child), addr: "127.0.0.1:0".parse().unwrap() };
    // Read stdout on a thread: the first "listening on" line, then drain it so the server never
    // blocks on a full pipe.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("listening on http://") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(rest.trim().parse::<SocketAddr>().expect("address"));
                }
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(30), rx).await {
        Ok(Ok(addr)) => server.addr = addr,
        _ => panic!("server did not start within 30 s; log:\n{}", log_tail(log)),
    }
    server
}

impl Server {
    /// SIGKILL (our own child, by its handle) and reap it.
    async fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            tokio::task::spawn_blocking(move || {
                child.kill().expect("kill server");
                child.wait().expect("reap server");
            })
            .await
            .unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tag(client: usize, n: u64) -> String {
    format!("c{client}-{n:06}")
}

/// The tags (map keys) an encoded v1 update carries. A map entry with no left neighbour (every entry
/// here: keys are never reused) is encoded with its key as a lib0 string, a length byte (9) then the
/// bytes, so the tags can be read off the bytes without integrating the update into a document
/// (which could leave it pending for lack of an earlier update).
fn tags_in(update: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for w in update.windows(10) {
        if w[0] == 9
            && w[1] == b'c'
            && w[2].is_ascii_digit()
            && w[3] == b'-'
            && w[4..10].iter().all(|b| b.is_ascii_digit())
        {
            out.push(String::from_utf8(w[1..].to_vec()).unwrap());
        }
    }
    out
}

fn map_keys(doc: &Doc) -> BTreeSet<String> {
    let map = doc.get_or_insert_map("tags");
    let txn = doc.transact();
    map.keys(&txn).map(|k| k.to_owned()).collect()
}

struct Writer {
    doc: Doc,
    next: u64,
}

/// One client session: connects, answers the sync handshake, writes a tagged edit every few ms and
/// records every tag it receives from the server, until the connection dies.
async fn write_session(
    addr: SocketAddr,
    id: usize,
    mut w: Writer,
    seed: u64,
    acked: Tags,
    sent: Tags,
    connected: tokio::sync::mpsc::Sender<()>,
) -> Writer {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/sync/{DOC}")).await.expect("writer connect");
    let sv = w.doc.transact().state_vector().encode_v1();
    let _ = ws.send(Message::binary(protocol::encode_sync_step1(&sv))).await;
    let _ = connected.send(()).await;
    let mut next_edit = tokio::time::Instant::now();
    let map = w.doc.get_or_insert_map("tags");
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_edit) => {
                let t = tag(id, w.next);
                w.next += 1;
                sent.lock().unwrap().insert(t.clone());
                let before = w.doc.transact().state_vector();
                {
                    let mut txn = w.doc.transact_mut();
                    map.insert(&mut txn, t.as_str(), w.next as i64);
                }
                let update = w.doc.transact().encode_state_as_update_v1(&before);
                if ws.send(Message::binary(protocol::encode_update(&update))).await.is_err() {
                    break;
                }
                next_edit = tokio::time::Instant::now() + Duration::from_millis(rng.gen_range(2..8));
            }
            msg = ws.next() => {
                let bytes = match msg {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                match protocol::decode_message(&bytes).expect("server sent a malformed message") {
                    M::SyncStep1 { state_vector } => {
                        let sv = StateVector::decode_v1(state_vector).expect("sv");
                        let diff = w.doc.transact().encode_state_as_update_v1(&sv);
                        if ws.send(Message::binary(protocol::encode_sync_step2(&diff))).await.is_err() {
                            break;
                        }
                    }
                    M::SyncStep2 { update } | M::Update { update } => {
                        {
                            let mut acked = acked.lock().unwrap();
                            for t in tags_in(update) {
                                acked.insert(t);
                            }
                        }
                        let u = Update::decode_v1(update).expect("server sent an undecodable update");
                        w.doc.transact_mut().apply_update(u).expect("apply");
                    }
                    _ => {}
                }
            }
        }
    }
    w
}

/// A fresh client's view of the server: the set of tags it holds.
async fn fresh_view(addr: SocketAddr) -> BTreeSet<String> {
    let c = Client::connect(addr, DOC).await;
    map_keys(&c.doc)
}

fn log_tail(log: &Path) -> String {
    let s = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_updates_survive_sigkill() {
    let seed: u64 = std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0xC0FFEE);
    eprintln!("crash test seed {seed} (set CRASH_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let data = tempfile::TempDir::new().unwrap();
    let logs = tempfile::TempDir::new().unwrap();
    let log = logs.path().join("server.log");
    let acked: Tags = Default::default();
    let sent: Tags = Default::default();
    let mut writers: Vec<Writer> = (0..CLIENTS).map(|_| Writer { doc: Doc::new(), next: 0 }).collect();
    let started = Instant::now();

    for cycle in 0..cycles() {
        let server = start_server(data.path(), &log).await;
        let addr = server.addr;
        // Everything acknowledged before the last kill must be there before anyone writes again.
        let view = fresh_view(addr).await;
        let acked_now = acked.lock().unwrap().clone();
        let missing: Vec<_> = acked_now.difference(&view).take(20).cloned().collect();
        assert!(
            missing.is_empty(),
            "cycle {cycle}: {} acknowledged tags lost after SIGKILL, e.g. {missing:?}\nserver log:\n{}",
            acked_now.difference(&view).count(),
            log_tail(&log)
        );
        let sent_now = sent.lock().unwrap().clone();
        assert!(view.is_subset(&sent_now), "cycle {cycle}: the server holds tags nobody wrote");
        eprintln!(
            "cycle {cycle}: restart ok, {} tags on the server, {} acknowledged, {} written",
            view.len(),
            acked_now.len(),
            sent_now.len()
        );

        let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel(CLIENTS);
        let mut tasks = Vec::new();
        for (id, w) in std::mem::take(&mut writers).into_iter().enumerate() {
            let s = rng.gen();
            tasks.push(tokio::spawn(write_session(addr, id, w, s, acked.clone(), sent.clone(), conn_tx.clone())));
        }
        for _ in 0..CLIENTS {
            tokio::time::timeout(STEP, conn_rx.recv()).await.expect("writers did not connect");
        }
        let run_for = Duration::from_millis(rng.gen_range(200..1500));
        tokio::time::sleep(run_for).await;
        server.kill().await;
        for t in tasks {
            let w =
                tokio::time::timeout(STEP, t).await.expect("writer did not notice the kill").expect("writer panicked");
            writers.push(w);
        }
        eprintln!("cycle {cycle}: killed after {run_for:?} of writing");
    }

    // Recovery: every client reconnects with its own document, which re-sends whatever of its edits
    // the server lost (none it had acknowledged). Everyone converges on every tag ever written.
    let server = start_server(data.path(), &log).await;
    let addr = server.addr;
    let view = fresh_view(addr).await;
    let acked_now = acked.lock().unwrap().clone();
    assert!(acked_now.is_subset(&view), "final restart lost {} acknowledged tags", acked_now.difference(&view).count());
    let all = sent.lock().unwrap().clone();
    let mut clients = Vec::new();
    for w in writers {
        clients.push(Client::connect_with(addr, DOC, w.doc).await);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while clients.iter().any(|c| map_keys(&c.doc) != all) && tokio::time::Instant::now() < deadline {
        for c in clients.iter_mut() {
            c.pump_one(Duration::from_millis(20)).await;
        }
    }
    for (i, c) in clients.iter().enumerate() {
        let keys = map_keys(&c.doc);
        assert_eq!(keys.len(), all.len(), "client {i} did not converge on every tag written");
        assert!(c.closed.is_none(), "client {i} was closed: {:?}", c.closed);
    }
    let states: Vec<yrs::Any> = clients
        .iter()
        .map(|c| {
            // Compare content, not encodings.
            let map = c.doc.get_or_insert_map("tags");
            let txn = c.doc.transact();
            map.to_json(&txn)
        })
        .collect();
    assert!(states.windows(2).all(|w| w[0] == w[1]), "clients hold different content");
    assert_eq!(fresh_view(addr).await, all, "a fresh client does not see every tag");
    // Everything is acknowledged now: one more SIGKILL must lose nothing.
    server.kill().await;
    drop(clients);
    let server = start_server(data.path(), &log).await;
    assert_eq!(fresh_view(server.addr).await, all, "tags lost by the last SIGKILL");
    server.kill().await;
    eprintln!(
        "crash test: {} tags written, {} acknowledged before kills, {} kills, {:?}",
        all.len(),
        acked_now.len(),
        cycles() + 1,
        started.elapsed()
    );
}
