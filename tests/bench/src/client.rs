//! The load generator: y-websocket v1 clients, open-loop writers, and delivery tracking.
//!
//! Latency is measured from the *scheduled* send time of each update (open loop: a writer that falls
//! behind schedule is charged for it) to the moment a reader receives it. Each reader checks that it
//! saw every update of every writer in its document, in clock order: a gap or a missing update is a
//! correctness failure and the figure does not count.

use crate::proto::{self, Msg};
use anyhow::{bail, Context, Result};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, Text, Transact, Update};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub type Sink = SplitSink<Ws, Message>;
pub type Stream = SplitStream<Ws>;

pub fn debug(msg: impl FnOnce() -> String) {
    if std::env::var_os("BENCH_DEBUG").is_some() {
        eprintln!("    [debug] {}", msg());
    }
}

pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).unwrap()
}

pub async fn connect(url: &str) -> Result<(Sink, Stream)> {
    let cfg = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(512 << 20))
        .max_frame_size(Some(512 << 20));
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::connect_async_with_config(url, Some(cfg), true),
    )
    .await
    .context("connect timed out")?
    .with_context(|| format!("connecting to {url}"))?;
    Ok(ws.split())
}

pub async fn send(sink: &mut Sink, frame: Vec<u8>) -> Result<()> {
    sink.send(Message::Binary(frame.into())).await?;
    Ok(())
}

/// Next binary frame, or an error on close / timeout.
pub async fn next_frame(stream: &mut Stream, within: Duration) -> Result<Vec<u8>> {
    loop {
        let m = tokio::time::timeout(within, stream.next()).await.context("no frame in time")?;
        match m {
            Some(Ok(Message::Binary(b))) => return Ok(b.to_vec()),
            Some(Ok(Message::Close(c))) => bail!("closed by server: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("websocket error: {e}"),
            None => bail!("connection ended"),
        }
    }
}

/// The y-websocket handshake for a client holding `doc` (or nothing): send step 1, answer the
/// server's step 1 with our diff, apply everything that arrives, return when step 2 arrived.
pub async fn handshake(sink: &mut Sink, stream: &mut Stream, doc: Option<&Doc>) -> Result<()> {
    let sv = match doc {
        Some(d) => crate::traces::sv_bytes(d),
        None => vec![0],
    };
    send(sink, proto::step1(&sv)).await?;
    loop {
        let f = next_frame(stream, Duration::from_secs(30)).await?;
        match proto::decode(&f) {
            Msg::Step1(server_sv) => {
                let diff = match doc {
                    Some(d) => {
                        let sv = yrs::StateVector::decode_v1(server_sv)?;
                        d.transact().encode_diff_v1(&sv)
                    }
                    None => vec![0, 0],
                };
                send(sink, proto::step2(&diff)).await?;
            }
            Msg::Step2(u) => {
                if let Some(d) = doc {
                    d.transact_mut().apply_update(Update::decode_v1(u)?)?;
                }
                return Ok(());
            }
            Msg::Update(u) => {
                if let Some(d) = doc {
                    d.transact_mut().apply_update(Update::decode_v1(u)?)?;
                }
            }
            Msg::Other => {}
        }
    }
}

pub struct Sent {
    pub head: (u64, u64, u64),
    pub hash: u64,
    pub at: Instant,
}

pub fn hash_bytes(b: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// Every update the writers of one document sent, in order, with its scheduled time.
pub struct Feed {
    pub writers: HashMap<u64, usize>,
    pub sent: Vec<Mutex<Vec<Sent>>>,
}

impl Feed {
    pub fn new(clients: &[u64]) -> Arc<Feed> {
        Arc::new(Feed {
            writers: clients.iter().enumerate().map(|(i, c)| (*c, i)).collect(),
            sent: clients.iter().map(|_| Mutex::new(Vec::new())).collect(),
        })
    }
}

/// One reader's view of a feed.
pub struct Cursor {
    pub next: Vec<usize>,
    /// Updates scheduled before this instant (the warm-up) are checked but not timed.
    pub record_from: Option<Instant>,
    pub hist: Histogram<u64>,
    pub record: bool,
    pub deliveries: u64,
    pub gaps: u64,
    pub bad: u64,
}

impl Cursor {
    pub fn new(feed: &Feed, record: bool) -> Self {
        Cursor {
            next: vec![0; feed.sent.len()],
            record_from: None,
            hist: new_hist(),
            record,
            deliveries: 0,
            gaps: 0,
            bad: 0,
        }
    }

    fn deliver(&mut self, at: Instant, now: Instant) {
        self.deliveries += 1;
        if self.record && self.record_from.is_none_or(|r| at >= r) {
            self.hist.saturating_record(now.saturating_duration_since(at).as_micros().max(1) as u64);
        }
    }

    /// Matches a received update against the next one expected from its writer: by its bytes (the
    /// servers that forward raw frames), else by its header (client, first clock, number of blocks;
    /// servers that re-encode). A delete-only update has no header, so with several writers it is
    /// matched by bytes only.
    pub fn on_update(&mut self, feed: &Feed, u: &[u8], now: Instant) {
        let head = proto::update_head(u).unwrap_or((u64::MAX, 0, 0));
        let hash = hash_bytes(u);
        let candidates: Vec<usize> = if head.0 >= 1 {
            feed.writers.get(&head.1).map(|w| vec![*w]).unwrap_or_default()
        } else {
            (0..feed.sent.len()).collect()
        };
        for w in candidates {
            let sent = feed.sent[w].lock().unwrap();
            let i = self.next[w];
            let Some(e) = sent.get(i) else { continue };
            if e.hash == hash
                || (e.head == head && head.0 >= 1)
                || (head.0 == 0 && e.head.0 == 0 && feed.sent.len() == 1)
            {
                let at = e.at;
                drop(sent);
                self.next[w] += 1;
                self.deliver(at, now);
                return;
            }
            // Not the next one: lost updates in between? Look ahead by bytes.
            if let Some(j) = sent[i..].iter().position(|e| e.hash == hash) {
                let at = sent[i + j].at;
                drop(sent);
                self.gaps += j as u64;
                self.next[w] += j + 1;
                self.deliver(at, now);
                return;
            }
        }
        if head.0 != 0 || feed.sent.len() > 1 {
            // an update we cannot place (e.g. a stranger's, or a re-encoded delete-only one)
            self.bad += 1;
        }
    }

    pub fn missing(&self, feed: &Feed) -> usize {
        feed.sent.iter().zip(&self.next).map(|(s, n)| s.lock().unwrap().len().saturating_sub(*n)).sum()
    }
}

/// What a writer sends.
pub enum Source {
    /// Precomputed updates (clock before, bytes) from a trace.
    Plan(Arc<Vec<(u64, Vec<u8>)>>),
    /// Typing: one character appended to the writer's own paragraph per update.
    Typing(Doc),
}

pub struct WriterCfg {
    pub client: u64,
    pub source: Source,
    pub interval: Duration,
    pub count: usize,
    pub phase: Duration,
    /// Send at the scheduled instant to within microseconds (see [`PRECISE_SPIN`]), not at tokio's
    /// next timer tick. For the latency scenarios with few writers; it costs the generator's core
    /// up to [`PRECISE_SPIN`] of yielding per send.
    pub precise: bool,
}

/// How long before a precise writer's scheduled send it stops sleeping and yields until the
/// instant. tokio's timer has a resolution of 1 ms and rounds up, so a plain `sleep_until` sends
/// 0 to ~1 ms late; and since every send of a run is scheduled at the same sub-millisecond phase
/// (`t0 + k * interval`), that lateness was one constant of the run, added to every latency in
/// it: the run-to-run noise of about 1 ms that scenario 1 had.
pub const PRECISE_SPIN: Duration = Duration::from_millis(2);

impl Source {
    fn next(&mut self, k: usize, client: u64) -> (u64, Vec<u8>) {
        match self {
            Source::Plan(p) => p[k].clone(),
            Source::Typing(doc) => type_one(doc, client),
        }
    }

    /// `count` typing updates of `client`, made now rather than while the load runs (so that
    /// a generator near its CPU limit spends it on the network, not on yrs).
    pub fn typing_plan(client: u64, count: usize) -> Source {
        let doc = crate::traces::doc_for(client);
        Source::Plan(Arc::new((0..count).map(|_| type_one(&doc, client)).collect()))
    }
}

/// Appends one character to the writer's paragraph: (its clock before, the update).
fn type_one(doc: &Doc, client: u64) -> (u64, Vec<u8>) {
    let text = doc.get_or_insert_text("content");
    let mut txn = doc.transact_mut();
    let clock = u64::from(txn.state_vector().get(&yrs::ClientID::new(client)));
    let len = text.len(&txn);
    text.insert(&mut txn, len, "x");
    (clock, txn.encode_update_v1())
}

/// Shared control of one load run.
pub struct Ctl {
    pub writers_left: AtomicUsize,
    pub drained: AtomicBool,
    pub errors: Mutex<Vec<String>>,
}

pub struct ClientResult {
    pub cursor: Cursor,
    pub sent: usize,
    pub missing: usize,
    /// How late the sends left, summed and at most (µs), after the scheduled instant.
    pub late_sum_us: u64,
    pub late_max_us: u64,
}

/// One client: optionally a writer on its open-loop schedule, always a reader of its document.
// Eight plain settings of one client, each named at the single call site: a struct would only
// repeat the names.
#[allow(clippy::too_many_arguments)]
pub async fn run_client(
    mut sink: Sink,
    mut stream: Stream,
    feed: Arc<Feed>,
    mut writer: Option<WriterCfg>,
    record: bool,
    t0: Instant,
    warmup: Duration,
    ctl: Arc<Ctl>,
) -> ClientResult {
    let mut cursor = Cursor::new(&feed, record);
    cursor.record_from = Some(t0 + warmup);
    let mut k = 0usize;
    let mut next_at = writer.as_ref().map(|w| t0 + w.phase);
    let mut sent_n = 0;
    let (mut late_sum_us, mut late_max_us) = (0u64, 0u64);
    let precise = writer.as_ref().is_some_and(|w| w.precise);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        let send_sleep = async {
            match next_at {
                Some(t) if precise => {
                    tokio::time::sleep_until(t.checked_sub(PRECISE_SPIN).unwrap_or(t)).await;
                    // Yield, not spin: the readers on this thread keep reading meanwhile.
                    while Instant::now() < t {
                        tokio::task::yield_now().await;
                    }
                }
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            m = stream.next() => {
                match m {
                    Some(Ok(Message::Binary(b))) => {
                        let now = Instant::now();
                        match proto::decode(&b) {
                            Msg::Update(u) | Msg::Step2(u) => cursor.on_update(&feed, u, now),
                            Msg::Step1(_) => {
                                // The relay forwards clients' own step 1; real servers send theirs on connect.
                            }
                            Msg::Other => {}
                        }
                    }
                    Some(Ok(Message::Close(c))) => {
                        ctl.errors.lock().unwrap().push(format!("server closed a client: {c:?}"));
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => { ctl.errors.lock().unwrap().push(format!("client error: {e}")); break; }
                    None => { ctl.errors.lock().unwrap().push("connection ended".into()); break; }
                }
            }
            _ = send_sleep => {
                let w = writer.as_mut().unwrap();
                let scheduled = next_at.unwrap();
                let late = Instant::now().saturating_duration_since(scheduled).as_micros() as u64;
                late_sum_us += late;
                late_max_us = late_max_us.max(late);
                let (_clock, upd) = w.source.next(k, w.client);
                let widx = feed.writers[&w.client];
                let head = proto::update_head(&upd).unwrap_or((u64::MAX, 0, 0));
                feed.sent[widx].lock().unwrap().push(Sent { head, hash: hash_bytes(&upd), at: scheduled });
                if let Err(e) = send(&mut sink, proto::update(&upd)).await {
                    ctl.errors.lock().unwrap().push(format!("send failed: {e}"));
                    break;
                }
                sent_n += 1;
                k += 1;
                if k >= w.count {
                    next_at = None;
                    ctl.writers_left.fetch_sub(1, Ordering::SeqCst);
                } else {
                    next_at = Some(t0 + w.phase + w.interval * k as u32);
                }
            }
            _ = tick.tick() => {}
        }
        if ctl.drained.load(Ordering::Relaxed) {
            break;
        }
        if next_at.is_none() && ctl.writers_left.load(Ordering::SeqCst) == 0 && cursor.missing(&feed) == 0 {
            break;
        }
    }
    if let Some(w) = writer.as_ref() {
        if k < w.count {
            ctl.writers_left.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _ = sink.close().await;
    let missing = cursor.missing(&feed);
    ClientResult { cursor, sent: sent_n, missing, late_sum_us, late_max_us }
}

pub struct DocLoad {
    pub name: String,
    pub readers: usize,
    pub writers: Vec<WriterCfg>,
    /// Whether the writers' own receptions count in the latency histogram.
    pub record_writers: bool,
}

pub struct LoadResult {
    pub hist: Histogram<u64>,
    pub deliveries: u64,
    pub sent: usize,
    pub missing: usize,
    pub gaps: u64,
    pub errors: Vec<String>,
    pub secs: f64,
    /// How late the sends left after their scheduled instants (µs): mean and max.
    pub late_mean_us: f64,
    pub late_max_us: u64,
}

impl LoadResult {
    pub fn new() -> LoadResult {
        LoadResult {
            hist: new_hist(),
            deliveries: 0,
            sent: 0,
            missing: 0,
            gaps: 0,
            errors: Vec::new(),
            secs: 0.0,
            late_mean_us: 0.0,
            late_max_us: 0,
        }
    }

    /// Adds one client's figures; `late_mean_us` is a running mean over the sends.
    pub fn add(&mut self, r: &ClientResult) {
        self.hist.add(&r.cursor.hist).ok();
        self.deliveries += r.cursor.deliveries;
        self.gaps += r.cursor.gaps;
        let sent_before = self.sent as f64;
        self.sent += r.sent;
        self.missing += r.missing + r.cursor.bad as usize;
        if self.sent > 0 {
            self.late_mean_us = (self.late_mean_us * sent_before + r.late_sum_us as f64) / self.sent as f64;
        }
        self.late_max_us = self.late_max_us.max(r.late_max_us);
    }

    pub fn ok(&self) -> bool {
        self.missing == 0 && self.gaps == 0 && self.errors.is_empty()
    }
    pub fn why(&self) -> String {
        let mut s = format!(
            "missing {} of {} expected deliveries, {} gaps",
            self.missing,
            self.deliveries as usize + self.missing,
            self.gaps
        );
        if let Some(e) = self.errors.first() {
            s.push_str(&format!(", {} errors (first: {e})", self.errors.len()));
        }
        s
    }
}

/// Connects every client of every document (handshake when the server keeps state), then runs the
/// open-loop schedule, then waits up to `drain` for the last deliveries.
pub async fn run_load(
    target: &crate::servers::Target,
    docs: Vec<DocLoad>,
    drain: Duration,
    warmup: Duration,
) -> Result<LoadResult> {
    let stateful = target.kind.stateful();
    let ctl = Arc::new(Ctl {
        writers_left: AtomicUsize::new(0),
        drained: AtomicBool::new(false),
        errors: Mutex::new(Vec::new()),
    });
    struct Prepared {
        sink: Sink,
        stream: Stream,
        feed: Arc<Feed>,
        writer: Option<WriterCfg>,
        record: bool,
    }
    let mut prepared = Vec::new();
    let mut feeds = Vec::new();
    for d in docs {
        let url = target.url(&d.name)?;
        let clients: Vec<u64> = d.writers.iter().map(|w| w.client).collect();
        let feed = Feed::new(&clients);
        feeds.push(feed.clone());
        let mut conns = Vec::new();
        for w in d.writers {
            conns.push((Some(w), d.record_writers));
        }
        for _ in 0..d.readers {
            conns.push((None, true));
        }
        // connect this document's clients a few at a time
        let mut futs = Vec::new();
        for (w, record) in conns {
            let url = url.clone();
            futs.push(async move {
                let (mut sink, mut stream) = connect(&url).await?;
                if stateful {
                    handshake(&mut sink, &mut stream, None).await?;
                }
                anyhow::Ok((sink, stream, w, record))
            });
        }
        for chunk in chunked(futs, 64) {
            for r in futures_util::future::join_all(chunk).await {
                let (sink, stream, writer, record) = r?;
                if writer.is_some() {
                    ctl.writers_left.fetch_add(1, Ordering::SeqCst);
                }
                prepared.push(Prepared { sink, stream, feed: feed.clone(), writer, record });
            }
        }
    }
    debug(|| format!("{} clients connected", prepared.len()));
    // Let the relay register every connection before the first send.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now() + Duration::from_millis(100);
    let mut handles = Vec::new();
    for p in prepared {
        handles.push(tokio::spawn(run_client(p.sink, p.stream, p.feed, p.writer, p.record, t0, warmup, ctl.clone())));
    }
    // Wait for the writers, then for the drain.
    while ctl.writers_left.load(Ordering::SeqCst) > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent_done = Instant::now();
    debug(|| "writers done".into());
    let ctl2 = ctl.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(drain).await;
        ctl2.drained.store(true, Ordering::SeqCst);
    });
    let mut res = LoadResult::new();
    let mut last_recv = sent_done;
    for h in handles {
        let r = h.await?;
        last_recv = last_recv.max(Instant::now());
        res.add(&r);
    }
    timer.abort();
    debug(|| {
        format!(
            "load done: {} deliveries, {} missing; sends left {:.0} µs late on average, {} µs at most",
            res.deliveries, res.missing, res.late_mean_us, res.late_max_us
        )
    });
    res.secs = last_recv.duration_since(t0).as_secs_f64();
    res.errors = std::mem::take(&mut *ctl.errors.lock().unwrap());
    Ok(res)
}

pub fn chunked<T>(v: Vec<T>, n: usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for x in v {
        cur.push(x);
        if cur.len() == n {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
