//! Measures the storage figures the documentation quotes:
//!
//! 1. raw appends per second on the disk store (one write + one fdatasync each);
//! 2. acknowledged updates per second end to end through the real server (group commit), with 1 and
//!    with 32 closed-loop writers on one document, with fsync on and off;
//! 3. the automerge-paper editing trace: its compacted size on disk and how long loading it takes.
//!
//! ```text
//! cargo run --release -p commonpad-server --example storage_figures
//! ```
//!
//! Everything is written under a temporary directory (`$TMPDIR`, else `/tmp`), removed at the end.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use commonpad_core::store::disk::DiskStore;
use commonpad_core::store::Store;
use commonpad_core::sync::protocol::{self, Message as M};
use commonpad_server::server::{self, Config, Running};
use commonpad_server::sessions::keys::{self, ServerKey};
use commonpad_server::sessions::Sessions;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

const RAW_SECS: u64 = 3;
const E2E_SECS: u64 = 5;
const LOAD_RUNS: usize = 5;
#[path = "../tests/common/trace.rs"]
mod trace;

fn main() -> Result<()> {
    let tmp = tempfile::Builder::new().prefix("commonpad-storage-figures-").tempdir()?;
    println!("CommonPad storage figures");
    println!("=========================");
    machine(tmp.path());

    raw_appends(&tmp.path().join("raw"))?;

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!("\n## 2. Group commit, end to end (in-process server, one document, {E2E_SECS} s closed loop each)");
    println!("   writer = WebSocket client: send [0,2,update] (small Y.Text insert), wait for its own echo (sent after fsync), repeat");
    println!(
        "   {:<5} {:>7} {:>9} {:>9} {:>9} {:>10} {:>11} {:>9} {:>7}",
        "fsync", "writers", "acked/s", "mean RTT", "fsyncs/s", "mean batch", "mean append", "disk busy", "compact"
    );
    let mut rows = Vec::new();
    for (fsync, writers) in [(true, 1), (true, 32), (false, 1), (false, 32)] {
        let dir = tmp.path().join(format!("e2e-{}-{writers}", if fsync { "fsync" } else { "nofsync" }));
        let row = rt.block_on(group_commit(&dir, fsync, writers))?;
        row.print();
        rows.push(row);
    }
    group_commit_notes(&rows);
    drop(rt);

    automerge_paper(&tmp.path().join("paper"))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Machine

fn machine(tmp: &Path) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("machine: nproc = {cpus}");
    println!("temp dir: {}", tmp.display());
    match std::process::Command::new("df").arg("-T").arg(tmp).output() {
        Ok(out) if out.status.success() => {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                println!("  {line}");
            }
        }
        _ => println!("  (df -T unavailable)"),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Raw appends

fn raw_appends(dir: &Path) -> Result<()> {
    println!("\n## 1. Raw appends (DiskStore::append_blocking, one 32-byte update: one write + one fdatasync each, {RAW_SECS} s)");
    let store = DiskStore::open(dir)?;
    store.load_blocking("f")?;
    let update = [Bytes::from(vec![0xabu8; 32])];
    store.append_blocking("f", &update)?; // creates the document (directory, log, their fsyncs)
    let mut lat = Vec::with_capacity(100_000);
    let started = Instant::now();
    let end = started + Duration::from_secs(RAW_SECS);
    while Instant::now() < end {
        let t = Instant::now();
        store.append_blocking("f", &update)?;
        lat.push(t.elapsed());
    }
    let total = started.elapsed();
    let n = lat.len();
    lat.sort_unstable();
    let mean = lat.iter().sum::<Duration>() / n as u32;
    println!(
        "   appends:        {n} in {:.2} s = {:.0} appends/s",
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64()
    );
    println!(
        "   latency:        mean {}  p50 {}  p99 {}  max {}",
        fmt_dur(mean),
        fmt_dur(pct(&lat, 0.50)),
        fmt_dur(pct(&lat, 0.99)),
        fmt_dur(lat[n - 1])
    );
    Ok(())
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Group commit through the server

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Row {
    fsync: bool,
    writers: usize,
    acked: u64,
    secs: f64,
    mean_rtt: Duration,
    fsyncs: u64,
    durable: u64,
    fsync_secs: f64,
    compactions: u64,
    failures: u64,
}

impl Row {
    /// The share of the run the store spent in appends (write + fsync), from the histogram's sum.
    fn disk_busy(&self) -> f64 {
        self.fsync_secs / self.secs
    }

    fn print(&self) {
        let batch =
            if self.fsyncs > 0 { format!("{:.2}", self.durable as f64 / self.fsyncs as f64) } else { "-".into() };
        let append = if self.fsyncs > 0 {
            fmt_dur(Duration::from_secs_f64(self.fsync_secs / self.fsyncs as f64))
        } else {
            "-".into()
        };
        println!(
            "   {:<5} {:>7} {:>9.0} {:>9} {:>9.0} {:>10} {:>11} {:>8.0}% {:>7}",
            if self.fsync { "on" } else { "off" },
            self.writers,
            self.acked as f64 / self.secs,
            fmt_dur(self.mean_rtt),
            self.fsyncs as f64 / self.secs,
            batch,
            append,
            100.0 * self.disk_busy(),
            self.compactions
        );
        if self.failures > 0 {
            println!("   !! {} storage failures during this run", self.failures);
        }
    }
}

/// The counters we read from `/metrics`.
#[derive(Default, Clone, Copy)]
struct Counters {
    fsync_count: u64,
    fsync_sum: f64,
    durable: u64,
    compactions: u64,
    failures: u64,
}

/// Fetches `/metrics` over plain HTTP/1.1, as a scraper would.
async fn scrape(addr: SocketAddr) -> Result<Counters> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    let mut c = Counters::default();
    for line in body.lines() {
        let Some((name, value)) = line.split_once(' ') else { continue };
        match name {
            "commonpad_fsync_seconds_count" => c.fsync_count = value.trim().parse()?,
            "commonpad_fsync_seconds_sum" => c.fsync_sum = value.trim().parse()?,
            "commonpad_updates_durable_total" => c.durable = value.trim().parse()?,
            "commonpad_compactions_total" => c.compactions = value.trim().parse()?,
            "commonpad_storage_failures_total" => c.failures = value.trim().parse()?,
            _ => {}
        }
    }
    if !body.contains("commonpad_fsync_seconds_count") {
        bail!("/metrics did not answer as expected: {body:.200}");
    }
    Ok(c)
}

async fn group_commit(dir: &Path, fsync: bool, writers: usize) -> Result<Row> {
    let store = DiskStore::open(dir)?;
    let store = if fsync { store } else { store.without_fsync() };
    let store: Arc<dyn Store> = Arc::new(store);
    let key = ServerKey::load_or_create(dir)?;
    let sessions = Arc::new(Sessions::open(dir, key)?);
    let (admin, _) = keys::admin_token(dir, Some("storage-figures-admin-token".into()))?;
    let config = Config { open: true, ..Config::default() };
    let running: Running = server::start("127.0.0.1:0".parse()?, config, store, sessions, admin).await?;
    let addr = running.addr;

    let mut clients = Vec::with_capacity(writers);
    for _ in 0..writers {
        clients.push(Writer::connect(addr, "bench").await?);
    }
    // One acknowledged update before the clock starts, so the document and its log exist.
    clients[0].write_one().await?;

    let before = scrape(addr).await?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(E2E_SECS);
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut w| {
            tokio::spawn(async move {
                let mut acked = 0u64;
                let mut rtt = Duration::ZERO;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    w.write_one().await?;
                    rtt += t.elapsed();
                    acked += 1;
                }
                anyhow::Ok((acked, rtt, w))
            })
        })
        .collect();
    let mut acked = 0;
    let mut rtt = Duration::ZERO;
    let mut done = Vec::new();
    for t in tasks {
        let (a, r, w) = t.await??;
        acked += a;
        rtt += r;
        done.push(w);
    }
    let secs = started.elapsed().as_secs_f64();
    let after = scrape(addr).await?;
    for mut w in done {
        let _ = w.ws.close(None).await;
    }
    running.shutdown().await;
    Ok(Row {
        fsync,
        writers,
        acked,
        secs,
        mean_rtt: if acked > 0 { rtt / acked as u32 } else { Duration::ZERO },
        fsyncs: after.fsync_count - before.fsync_count,
        durable: after.durable - before.durable,
        fsync_secs: after.fsync_sum - before.fsync_sum,
        compactions: after.compactions - before.compactions,
        failures: after.failures - before.failures,
    })
}

/// A minimal y-websocket writer: its own Doc, never applies what others write (its inserts only
/// depend on its own earlier ones), and recognises its echo by the bytes it sent.
struct Writer {
    ws: Ws,
    doc: Doc,
    text: yrs::TextRef,
    len: u32,
}

impl Writer {
    async fn connect(addr: SocketAddr, name: &str) -> Result<Writer> {
        // TCP_NODELAY on our side, as browsers set it on every socket.
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(format!("ws://{addr}/sync/{name}"), None, true).await?;
        let doc = Doc::new();
        let text = doc.get_or_insert_text("text");
        let mut w = Writer { ws, doc, text, len: 0 };
        // Handshake as a provider does: our SyncStep1, wait for the server's SyncStep2.
        let sv = w.doc.transact().state_vector().encode_v1();
        w.ws.send(Message::binary(protocol::encode_sync_step1(&sv))).await?;
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let frame = w.next_binary().await?;
                if let M::SyncStep2 { .. } = protocol::decode_message(&frame)? {
                    return anyhow::Ok(());
                }
            }
        })
        .await
        .context("no SyncStep2 within 10 s")??;
        Ok(w)
    }

    async fn next_binary(&mut self) -> Result<Bytes> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Binary(b))) => return Ok(b),
                Some(Ok(Message::Close(f))) => bail!("server closed the connection: {f:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("connection ended"),
            }
        }
    }

    /// Types one character, sends the update, waits until the server echoes it (after fsync).
    async fn write_one(&mut self) -> Result<()> {
        let before = self.doc.transact().state_vector();
        {
            let mut txn = self.doc.transact_mut();
            self.text.insert(&mut txn, self.len, "x");
        }
        self.len += 1;
        let update = self.doc.transact().encode_state_as_update_v1(&before);
        self.ws.send(Message::binary(protocol::encode_update(&update))).await?;
        loop {
            let frame = self.next_binary().await?;
            if let M::Update { update: echoed } = protocol::decode_message(&frame)? {
                if echoed == update.as_slice() {
                    return Ok(());
                }
            }
        }
    }
}

fn group_commit_notes(rows: &[Row]) {
    let rate = |fsync: bool, w: usize| {
        rows.iter().find(|r| r.fsync == fsync && r.writers == w).map_or(0.0, |r| r.acked as f64 / r.secs)
    };
    let (on1, on32, off1, off32) = (rate(true, 1), rate(true, 32), rate(false, 1), rate(false, 32));
    println!(
        "   acked/s: updates acknowledged to their writers; fsyncs/s, mean batch (= updates_durable / fsync_count),"
    );
    println!(
        "   mean append (write + fsync, from commonpad_fsync_seconds), disk busy (its sum / wall time) and compact"
    );
    println!("   (snapshots written) are deltas of /metrics.");
    if on1 > 0.0 {
        println!("   fsync on:  32 writers / 1 writer = {:.1}x", on32 / on1);
    }
    if off1 > 0.0 {
        println!("   fsync off: 32 writers / 1 writer = {:.1}x", off32 / off1);
    }
    if off32 > 0.0 {
        println!("   32 writers: fsync on / fsync off = {:.2}", on32 / off32);
    }
    for r in rows.iter().filter(|r| r.writers > 1) {
        let single = rate(r.fsync, 1);
        let here = r.acked as f64 / r.secs;
        if here < single {
            println!(
                "   !! fsync {}: {} writers acknowledge fewer updates/s than 1 writer, while the store is busy only {:.0}% of the time",
                if r.fsync { "on" } else { "off" },
                r.writers,
                100.0 * r.disk_busy()
            );
            println!("      (mean round trip {}): the wait is outside the store.", fmt_dur(r.mean_rtt));
            if r.mean_rtt >= Duration::from_millis(20) {
                println!("      Tens of milliseconds with an idle disk is the signature of Nagle's algorithm meeting delayed ACKs");
                println!("      (up to 40 ms on Linux): if the server's sockets lack TCP_NODELAY, a second small frame waits for an ACK.");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. The automerge-paper trace

fn automerge_paper(dir: &Path) -> Result<()> {
    println!("\n## 3. automerge-paper trace, compacted");
    let trace = trace::automerge_paper().map_err(anyhow::Error::msg)?;
    let patches: usize = trace.txns.iter().map(|t| t.patches.len()).sum();

    let started = Instant::now();
    let doc = Doc::new();
    let text = doc.get_or_insert_text("text");
    // yrs counts in UTF-8 bytes by default and the trace in code points: the same, as it is ASCII.
    for txn in &trace.txns {
        for (pos, del, ins) in &txn.patches {
            let mut t = doc.transact_mut();
            if *del > 0 {
                text.remove_range(&mut t, *pos, *del);
            }
            if !ins.is_empty() {
                text.insert(&mut t, *pos, ins);
            }
        }
    }
    let replay = started.elapsed();
    let got = text.get_string(&doc.transact());
    if got != trace.end_content {
        bail!("replay does not match endContent ({} vs {} chars)", got.len(), trace.end_content.len());
    }
    let state = doc.transact().encode_state_as_update_v1(&StateVector::default());
    println!(
        "   trace:          {} patches (one transaction each), final text {} chars; replayed in {:.2} s",
        patches,
        trace.end_content.chars().count(),
        replay.as_secs_f64()
    );
    println!(
        "   state (v1):     {} bytes = {:.2} bytes per char of final text",
        state.len(),
        state.len() as f64 / trace.end_content.len() as f64
    );

    const NAME: &str = "automerge-paper";
    {
        let store = DiskStore::open(dir)?;
        store.load_blocking(NAME)?;
        store.replace_snapshot_blocking(NAME, &state)?;
    }
    let doc_dir = dir.join("docs").join(NAME);
    let mut apparent = 0u64;
    let mut allocated = 0u64;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&doc_dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        apparent += meta.len();
        allocated += std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
        files.push(format!("{} ({} B)", entry.file_name().to_string_lossy(), meta.len()));
    }
    files.sort();
    println!(
        "   on disk:        {} bytes ({:.1} KiB) in the document directory after compaction; {} bytes allocated",
        apparent,
        apparent as f64 / 1024.0,
        allocated
    );
    println!("                   {}", files.join(", "));

    let mut read_times = Vec::new();
    let mut total_times = Vec::new();
    for _ in 0..LOAD_RUNS {
        let t = Instant::now();
        let store = DiskStore::open(dir)?;
        let loaded = store.load_blocking(NAME)?;
        let read = t.elapsed();
        let fresh = Doc::new();
        {
            let mut txn = fresh.transact_mut();
            for bytes in loaded.snapshot.iter().chain(loaded.updates.iter()) {
                txn.apply_update(Update::decode_v1(bytes)?)?;
            }
        }
        let total = t.elapsed();
        let text = fresh.get_or_insert_text("text").get_string(&fresh.transact());
        if text != trace.end_content {
            bail!("loaded text does not equal endContent");
        }
        read_times.push(read);
        total_times.push(total);
    }
    read_times.sort_unstable();
    total_times.sort_unstable();
    println!(
        "   load:           median of {LOAD_RUNS}: {} (DiskStore::open + load_blocking {} + decode/apply into a fresh Doc), page cache warm",
        fmt_dur(total_times[LOAD_RUNS / 2]),
        fmt_dur(read_times[LOAD_RUNS / 2])
    );
    println!("   check:          loaded text equals endContent ({} chars): ok", trace.end_content.len());
    Ok(())
}
