//! The seven scenarios of issue 6, and the in-process yrs floor.

use crate::client::{self, connect, handshake, next_frame, send, DocLoad, LoadResult, Source, WriterCfg};
use crate::proto::{self, Msg};
use crate::servers::{Kind, Server, Target};
use crate::traces::{self, Concurrent, Sequential};
use crate::{Cell, Results};
use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use yrs::updates::decoder::Decode;
use yrs::{ClientID, Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

pub struct Ctx {
    pub seq: Arc<Sequential>,
    pub conc: Arc<Concurrent>,
    pub big: Arc<BigDoc>,
    pub quick: bool,
}

pub struct BigDoc {
    pub updates: Vec<Vec<u8>>,
    pub text_len: usize,
    pub encoded: usize,
}

/// About 16 MB of text typed as 16,000 inserts of 1,000 characters at pseudo-random places, in 4
/// transactions (so each update stays under the servers' 8 MiB message limit).
pub fn big_doc(mb: usize) -> BigDoc {
    let doc = traces::doc_for(7777);
    let text = doc.get_or_insert_text("content");
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut updates = Vec::new();
    let chunk: String =
        "lorem ipsum dolor sit amet, consectetur adipiscing elit. ".chars().cycle().take(1000).collect();
    let inserts = mb * 1000;
    for _ in 0..4 {
        let mut txn = doc.transact_mut();
        for _ in 0..inserts / 4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = text.len(&txn);
            let pos = if len == 0 { 0 } else { (seed % u64::from(len)) as u32 };
            text.insert(&mut txn, pos, &chunk);
        }
        updates.push(txn.encode_update_v1());
    }
    let txn = doc.transact();
    let encoded = txn.encode_state_as_update_v1(&StateVector::default()).len();
    BigDoc { text_len: text.len(&txn) as usize, updates, encoded }
}

/// The first second of every timed run is checked for loss but not timed (connection set-up and
/// task start-up on the generator); quick runs time everything.
fn warmup(ctx: &Ctx) -> Duration {
    if ctx.quick {
        Duration::ZERO
    } else {
        Duration::from_secs(1)
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Connects, syncs, sends one update and waits for the server to echo an update back.
async fn push(target: &Target, doc: &str, update: &[u8]) -> Result<()> {
    let (mut sink, _stream) = push_and_hold(target, doc, update).await?;
    let _ = sink.close().await;
    Ok(())
}

/// [`push`], keeping the connection open: the caller decides when it ends.
async fn push_and_hold(target: &Target, doc: &str, update: &[u8]) -> Result<(client::Sink, client::Stream)> {
    let url = target.url(doc)?;
    let (mut sink, mut stream) = connect(&url).await?;
    handshake(&mut sink, &mut stream, None).await?;
    client::debug(|| format!("push {doc}: synced, sending {} B", update.len()));
    send(&mut sink, proto::update(update)).await?;
    loop {
        let f = next_frame(&mut stream, Duration::from_secs(60)).await?;
        client::debug(|| format!("push {doc}: got frame of {} B", f.len()));
        if let Msg::Update(_) = proto::decode(&f) {
            break;
        }
    }
    Ok((sink, stream))
}

/// Aborts a task when dropped, on every path out of a scope.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A fresh client's view of a document once synced and once `done` holds (or 30 s pass).
async fn fetch(url: &str, done: impl Fn(&Doc) -> bool) -> Result<Doc> {
    let (mut sink, mut stream) = connect(url).await?;
    let doc = Doc::new();
    handshake(&mut sink, &mut stream, Some(&doc)).await?;
    client::debug(|| {
        format!("fetch: synced, {} chars, pending {}", text_len(&doc), doc.transact().has_missing_updates())
    });
    let t0 = Instant::now();
    while !done(&doc) {
        let f = next_frame(&mut stream, Duration::from_secs(30).saturating_sub(t0.elapsed())).await?;
        if let Msg::Update(u) | Msg::Step2(u) = proto::decode(&f) {
            doc.transact_mut().apply_update(Update::decode_v1(u)?)?;
        }
    }
    let _ = sink.close().await;
    Ok(doc)
}

fn text_of(doc: &Doc) -> String {
    let t = doc.get_or_insert_text("content");
    t.get_string(&doc.transact())
}

fn text_len(doc: &Doc) -> usize {
    let t = doc.get_or_insert_text("content");
    t.len(&doc.transact()) as usize
}

// ---------------------------------------------------------------- scenario 1

pub async fn s1_fanout(ctx: &Ctx, t: &Target, res: &mut Results) {
    let label = t.kind.label();
    let ns: &[usize] = if ctx.quick { &[16] } else { &[1, 16, 128] };
    // 50 updates/s for 10 s (1 s in quick runs); the rest of the trace goes as one update afterwards,
    // computed from exactly this prefix.
    let count = ctx.seq.prefix.len();
    for &n in ns {
        let name = format!("s1-n{n}");
        let plan = Arc::new(ctx.seq.prefix[..count].to_vec());
        let docs = vec![DocLoad {
            name: name.clone(),
            readers: n,
            writers: vec![WriterCfg {
                client: traces::WRITER_CLIENT,
                source: Source::Plan(plan),
                interval: Duration::from_millis(20),
                count,
                phase: Duration::ZERO,
                precise: true,
            }],
            record_writers: false,
        }];
        let row = |m: &str| format!("1 fan-out N={n} {m} (ms)");
        match client::run_load(t, docs, Duration::from_secs(10), warmup(ctx)).await {
            Ok(r) if r.ok() => {
                res.note(format!(
                    "scenario 1, {label}, N={n}: the writer's sends left {:.0} µs after their scheduled instants on average, {} µs at most",
                    r.late_mean_us, r.late_max_us
                ));
                // Correctness: the rest of the trace as one update, then a fresh client must read endContent.
                let verdict = if t.kind.stateful() { verify_end(ctx, t, &name).await } else { Ok(()) };
                match verdict {
                    Ok(()) => {
                        res.put(&row("p50"), label, Cell::V(ms(r.hist.value_at_quantile(0.5))));
                        res.put(&row("p99"), label, Cell::V(ms(r.hist.value_at_quantile(0.99))));
                        res.put(&row("max"), label, Cell::V(ms(r.hist.max())));
                    }
                    Err(e) => {
                        for m in ["p50", "p99", "max"] {
                            res.put(&row(m), label, Cell::Fail(format!("final text wrong: {e:#}")));
                        }
                    }
                }
            }
            Ok(r) => {
                for m in ["p50", "p99", "max"] {
                    res.put(&row(m), label, Cell::Fail(r.why()));
                }
            }
            Err(e) => {
                for m in ["p50", "p99", "max"] {
                    res.put(&row(m), label, Cell::Fail(format!("{e:#}")));
                }
            }
        }
    }
}

async fn verify_end(ctx: &Ctx, t: &Target, name: &str) -> Result<()> {
    if std::env::var_os("BENCH_NO_REST").is_some() {
        return Ok(());
    }
    push(t, name, &ctx.seq.rest).await.context("sending the rest of the trace")?;
    client::debug(|| "rest pushed".into());
    let want = ctx.seq.end_content.chars().count();
    let doc = fetch(&t.url(name)?, |d| text_len_utf32(d) >= want).await?;
    let got = text_of(&doc);
    if got != ctx.seq.end_content {
        bail!("{} chars, endContent has {}", got.chars().count(), want);
    }
    Ok(())
}

fn text_len_utf32(doc: &Doc) -> usize {
    text_of(doc).chars().count()
}

// ---------------------------------------------------------------- scenario 2

pub async fn s2_hot(ctx: &Ctx, t: &Target, res: &mut Results) {
    let label = t.kind.label();
    let secs = if ctx.quick { 2 } else { 8 };
    let clients = 64;
    let interval = Duration::from_millis(200);
    let writers = (0..clients)
        .map(|i| WriterCfg {
            client: 2000 + i as u64,
            source: Source::Typing(traces::doc_for(2000 + i as u64)),
            interval,
            count: 5 * secs,
            phase: interval * i as u32 / clients as u32,
            precise: false,
        })
        .collect();
    let docs = vec![DocLoad { name: "s2-hot".into(), readers: 0, writers, record_writers: true }];
    match client::run_load(t, docs, Duration::from_secs(10), warmup(ctx)).await {
        Ok(r) if r.ok() => {
            let final_ok = if t.kind.stateful() { check_len(t, "s2-hot", clients * 5 * secs).await } else { Ok(()) };
            match final_ok {
                Ok(()) => {
                    res.put("2 hot doc 64x5/s p99 (ms)", label, Cell::V(ms(r.hist.value_at_quantile(0.99))));
                    res.put("2 hot doc deliveries/s", label, Cell::Vh(r.deliveries as f64 / secs as f64));
                }
                Err(e) => res.fail2("2 hot doc 64x5/s p99 (ms)", "2 hot doc deliveries/s", label, format!("{e:#}")),
            }
        }
        Ok(r) => res.fail2("2 hot doc 64x5/s p99 (ms)", "2 hot doc deliveries/s", label, r.why()),
        Err(e) => res.fail2("2 hot doc 64x5/s p99 (ms)", "2 hot doc deliveries/s", label, format!("{e:#}")),
    }
}

async fn check_len(t: &Target, name: &str, want: usize) -> Result<()> {
    let doc = fetch(&t.url(name)?, |d| text_len(d) >= want).await?;
    let got = text_len(&doc);
    if got != want {
        bail!("server document has {got} characters, expected {want}");
    }
    Ok(())
}

// ---------------------------------------------------------------- scenario 3

/// Scenario 3's load at one step: `ndocs` documents of `per_doc` typing clients, each sending
/// `rate` updates/s for `secs` seconds, their schedules spread evenly over one interval.
pub fn s3_plan(rate: u32, ndocs: usize, per_doc: usize, secs: usize) -> Vec<DocLoad> {
    let interval = Duration::from_micros(1_000_000 / u64::from(rate));
    let total_clients = ndocs * per_doc;
    (0..ndocs)
        .map(|d| DocLoad {
            name: format!("s3-r{rate}-d{d}"),
            readers: 0,
            writers: (0..per_doc)
                .map(|j| {
                    let id = 100_000 + (d * per_doc + j) as u64;
                    let k = (d * per_doc + j) as u32;
                    let count = rate as usize * secs;
                    WriterCfg {
                        client: id,
                        source: Source::typing_plan(id, count),
                        interval,
                        count,
                        phase: interval * k / total_clients as u32,
                        precise: false,
                    }
                })
                .collect(),
            record_writers: true,
        })
        .collect()
}

pub async fn s3_throughput(ctx: &Ctx, t: &Target, server: &Server, res: &mut Results) {
    let label = t.kind.label();
    let (ndocs, secs, rates): (usize, usize, &[u32]) =
        // Steps up to 96/s per client (76,800 updates/s in all) so that "3x the Node server" can
        // be decided when Node holds 25,600/s (it held 12,800 or 25,600 depending on the run); the
        // generator's CPU seconds per step are in the notes, as it nears its own limit.
        if ctx.quick { (20, 2, &[2, 8]) } else { (200, 4, &[1, 2, 4, 8, 16, 32, 48, 64, 96]) };
    let per_doc = 4;
    let mut best: Option<f64> = None;
    let mut notes = Vec::new();
    for &rate in rates {
        let total_clients = ndocs * per_doc;
        let docs = s3_plan(rate, ndocs, per_doc, secs);
        let gen0 = self_cpu_secs();
        let srv0 = server.cpu_secs();
        let total = (rate as usize * total_clients) as f64;
        let r = client::run_load(t, docs, Duration::from_secs(5), warmup(ctx)).await;
        let gen = self_cpu_secs() - gen0;
        let srv = server.cpu_secs() - srv0;
        match r {
            Ok(r) => {
                let p99 = ms(r.hist.value_at_quantile(0.99));
                notes.push(format!(
                    "{total:.0}/s: p99 {p99:.1} ms, {} {}, cpu generator {gen:.1}s server {srv:.1}s",
                    r.deliveries,
                    if r.ok() { "delivered" } else { "FAILED" }
                ));
                if step_held(&r, p99, &mut notes) {
                    best = Some(total);
                } else {
                    break;
                }
            }
            Err(e) => {
                notes.push(format!("{total:.0}/s: {e:#}"));
                break;
            }
        }
    }
    let row = "3 throughput: highest updates/s held (200 docs x 4)";
    match best {
        Some(b) => res.put(row, label, Cell::Vh(b)),
        None => res.put(row, label, Cell::Fail(notes.last().cloned().unwrap_or_default())),
    }
    res.note(format!("scenario 3 {label}: {}", notes.join("; ")));
}

/// Scenario 3's verdict on one step (here and in the cluster bench): held if nothing was lost and
/// p99 < 50 ms. A step that lost or misordered something adds why to `notes`.
pub fn step_held(r: &LoadResult, p99_ms: f64, notes: &mut Vec<String>) -> bool {
    if !r.ok() {
        notes.push(r.why());
    }
    r.ok() && p99_ms < S3_P99_LIMIT_MS
}

/// Scenario 3's latency bound for a step to count as held.
const S3_P99_LIMIT_MS: f64 = 50.0;

pub fn self_cpu_secs() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

// ---------------------------------------------------------------- scenario 4

pub async fn s4_cold(ctx: &Ctx, server: &mut Server, res: &mut Results) {
    let label = server.target.kind.label();
    let r = async {
        let t = server.target.clone();
        push(&t, "s4-small", &ctx.seq.full).await.context("writing the 160 KB document")?;
        for u in &ctx.big.updates {
            push(&t, "s4-big", u).await.context("writing the 16 MB document")?;
        }
        // y-sweet writes its store on a checkpoint every 10 s (default): wait for it.
        let wait = if server.target.kind == Kind::YSweet { 12_000 } else { 500 };
        tokio::time::sleep(Duration::from_millis(wait)).await;
        server.restart()?;
        let disk = du(&server.data);
        let t = server.target.clone();
        let want_small = ctx.seq.end_content.len();
        let t0 = Instant::now();
        let d = fetch(&t.url_existing("s4-small"), |d| text_len(d) >= want_small).await?;
        let small = t0.elapsed();
        if text_of(&d) != ctx.seq.end_content {
            bail!("160 KB document came back wrong");
        }
        let want_big = ctx.big.text_len;
        let t0 = Instant::now();
        let d = fetch(&t.url_existing("s4-big"), |d| text_len(d) >= want_big).await?;
        let big = t0.elapsed();
        if text_len(&d) != want_big {
            bail!("16 MB document came back with {} chars, want {want_big}", text_len(&d));
        }
        anyhow::Ok((small, big, disk))
    }
    .await;
    match r {
        Ok((small, big, disk)) => {
            res.put("4 cold load 160 KB doc (ms)", label, Cell::V(small.as_secs_f64() * 1e3));
            res.put("4 cold load 16 MB doc (ms)", label, Cell::V(big.as_secs_f64() * 1e3));
            res.note(format!(
                "scenario 4 {label}: data directory {:.1} MB on disk after writing both documents",
                disk as f64 / 1e6
            ));
        }
        Err(e) => res.fail2("4 cold load 160 KB doc (ms)", "4 cold load 16 MB doc (ms)", label, format!("{e:#}")),
    }
}

fn du(p: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                total += du(&e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

// ---------------------------------------------------------------- scenario 5

pub async fn s5_reconnect(ctx: &Ctx, t: &Target, res: &mut Results) {
    let label = t.kind.label();
    let (clients, ks): (usize, &[usize]) = if ctx.quick { (10, &[0, 100]) } else { (50, &[0, 100, 1000]) };
    let mut notes = Vec::new();
    for &k in ks {
        let row = format!("5 reconnect {clients} clients x {k} offline edits (ms)");
        let gen0 = self_cpu_secs();
        match reconnect_once(t, clients, k).await {
            Ok(d) => {
                // Whose time is it: the generator's CPU over the same span (it includes setting up
                // the offline edits, which precedes the timed part).
                notes.push(format!(
                    "{k} edits: {:.2} s, generator CPU {:.2} s",
                    d.as_secs_f64(),
                    self_cpu_secs() - gen0
                ));
                res.put(&row, label, Cell::V(d.as_secs_f64() * 1e3))
            }
            Err(e) => res.put(&row, label, Cell::Fail(format!("{e:#}"))),
        }
    }
    res.note(format!("scenario 5 {label}: {}", notes.join("; ")));
}

/// Scenario 5's shared text: this, repeated (19,200 ASCII characters).
const RECONNECT_BASE_TEXT: &str = "The session outline and the four outcome lists. ";
const RECONNECT_BASE_REPEAT: usize = 400;

/// How long scenario 5 waits, without any message arriving, before it calls a client stuck.
const RECONNECT_GIVE_UP: Duration = Duration::from_secs(150);

async fn reconnect_once(t: &Target, clients: usize, k: usize) -> Result<Duration> {
    let name = format!("s5-k{k}");
    let url = t.url(&name)?;
    // The session they all had open: a shared text, so that offline edits land all over it as
    // they would in a real document (from an empty one, all 50 clients' texts are concurrent at
    // one spot, the worst case of YATA's conflict resolution, and the generator's yrs work on it
    // dominated the row: 28 to 58 s at 1,000 edits).
    let base = traces::doc_for(49_999);
    {
        let text = base.get_or_insert_text("content");
        let mut txn = base.transact_mut();
        text.insert(&mut txn, 0, &RECONNECT_BASE_TEXT.repeat(RECONNECT_BASE_REPEAT));
    }
    let base_update = base.transact().encode_state_as_update_v1(&StateVector::default());
    // Whoever wrote it stays connected for the whole scenario (someone always is, in a session), so
    // no server unloads the document between the phases: the Node server otherwise reloads it from
    // LevelDB and answers step 1 before the load, and in one full run it never sent the text at all.
    // The keeper's frames are read and dropped, so that it never counts as a slow client.
    let (mut keeper_sink, mut keeper_stream) =
        push_and_hold(t, &name, &base_update).await.context("writing the shared text")?;
    let _keeper = AbortOnDrop(tokio::spawn(async move {
        let _ = keeper_sink.flush().await;
        while let Some(Ok(_)) = keeper_stream.next().await {}
        drop(keeper_sink);
    }));
    let base_len = RECONNECT_BASE_TEXT.len() * RECONNECT_BASE_REPEAT;
    let docs: Vec<Doc> = (0..clients).map(|i| traces::doc_for(50_000 + i as u64)).collect();
    // Online once, until each client holds the shared text, then offline. Waiting for the text,
    // not only for the server's step 2: the Node server answers step 1 before it has loaded the
    // document from LevelDB and sends the content as an update afterwards.
    for d in &docs {
        let (mut sink, mut stream) = connect(&url).await?;
        handshake(&mut sink, &mut stream, Some(d)).await?;
        while text_len(d) < base_len {
            let f = next_frame(&mut stream, Duration::from_secs(30)).await.context("waiting for the shared text")?;
            if let Msg::Update(u) | Msg::Step2(u) = proto::decode(&f) {
                d.transact_mut().apply_update(Update::decode_v1(u)?)?;
            }
        }
        let _ = sink.close().await;
    }
    let mut seed = 88172645463325252u64;
    for d in &docs {
        let text = d.get_or_insert_text("content");
        for _ in 0..k {
            let mut txn = d.transact_mut();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = text.len(&txn);
            let pos = if len == 0 { 0 } else { (seed % u64::from(len + 1)) as u32 };
            text.insert(&mut txn, pos, "ab");
        }
    }
    let mut target = StateVector::default();
    for d in &docs {
        for (c, clock) in d.transact().state_vector().iter() {
            target.set_max(*c, *clock);
        }
    }
    let target = Arc::new(target);
    let t0 = Instant::now();
    let mut handles = Vec::new();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for d in docs {
        let url = url.clone();
        let target = target.clone();
        let done = done.clone();
        let n = clients;
        handles.push(tokio::spawn(async move {
            let (mut sink, mut stream) = connect(&url).await?;
            send(&mut sink, proto::step1(&traces::sv_bytes(&d))).await?;
            let mut converged: Option<Duration> = None;
            loop {
                if converged.is_none() && d.transact().state_vector() == *target {
                    converged = Some(t0.elapsed());
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                if done.load(std::sync::atomic::Ordering::SeqCst) == n {
                    break;
                }
                let m = tokio::time::timeout(Duration::from_millis(100), stream.next()).await;
                let f = match m {
                    Err(_) => {
                        // A hang detector, not a verdict: with 1,000 offline edits each, the
                        // generator's own yrs work took 28 to 58 s (it depends on the order the
                        // diffs arrive in), and 60 s once cut a slow but healthy run short.
                        if t0.elapsed() > RECONNECT_GIVE_UP {
                            bail!("not converged after {} s", RECONNECT_GIVE_UP.as_secs());
                        }
                        continue;
                    }
                    Ok(Some(Ok(Message::Binary(b)))) => b,
                    Ok(Some(Ok(Message::Close(c)))) => bail!("closed: {c:?}"),
                    Ok(Some(Ok(_))) => continue,
                    Ok(Some(Err(e))) => bail!("{e}"),
                    Ok(None) => bail!("connection ended"),
                };
                match proto::decode(&f) {
                    Msg::Step1(sv) => {
                        let diff = d.transact().encode_diff_v1(&StateVector::decode_v1(sv)?);
                        send(&mut sink, proto::step2(&diff)).await?;
                    }
                    Msg::Step2(u) | Msg::Update(u) => {
                        d.transact_mut().apply_update(Update::decode_v1(u)?)?;
                    }
                    Msg::Other => {}
                }
            }
            let _ = sink.close().await;
            anyhow::Ok((converged.unwrap(), text_of(&d)))
        }));
    }
    let mut worst = Duration::ZERO;
    let mut texts = Vec::new();
    for h in handles {
        let (d, text) = h.await??;
        worst = worst.max(d);
        texts.push(text);
    }
    if texts.windows(2).any(|w| w[0] != w[1]) {
        bail!("clients converged to different texts");
    }
    if texts[0].len() != base_len + clients * k * 2 {
        bail!("text has {} chars, want {}", texts[0].len(), base_len + clients * k * 2);
    }
    Ok(worst)
}

// ---------------------------------------------------------------- scenario 6

/// Per txn: how many non-empty txns of each agent its parents include.
fn parent_versions(c: &Concurrent) -> (Vec<Vec<usize>>, Vec<bool>) {
    let mut v: Vec<Vec<usize>> = Vec::with_capacity(c.txns.len());
    let mut pv = Vec::with_capacity(c.txns.len());
    let mut nonempty = Vec::with_capacity(c.txns.len());
    for t in &c.txns {
        let mut p = vec![0usize; c.agents];
        for &q in &t.parents {
            for (a, x) in v[q].iter().enumerate() {
                p[a] = p[a].max(*x);
            }
        }
        let ne = t.patches.iter().any(|(_, d, i)| *d > 0 || !i.is_empty());
        let mut me = p.clone();
        if ne {
            me[t.agent] += 1;
        }
        nonempty.push(ne);
        pv.push(p);
        v.push(me);
    }
    (pv, nonempty)
}

fn agent_client(a: usize) -> u64 {
    60_000 + a as u64
}

/// The first `m` transactions of a concurrent trace, with the expected text computed by an
/// in-process replay (for the smoke run, which cannot afford the whole trace).
pub fn truncate(c: &Concurrent, m: usize) -> Result<Concurrent> {
    let mut t = Concurrent {
        agents: c.agents,
        txns: c.txns[..m.min(c.txns.len())]
            .iter()
            .map(|x| traces::ConcTxn { agent: x.agent, parents: x.parents.clone(), patches: x.patches.clone() })
            .collect(),
        end_content: String::new(),
    };
    t.end_content = s6_in_process(&t)?.1;
    Ok(t)
}

/// The floor: the same replay with the three agents exchanging updates in memory.
pub fn s6_in_process(c: &Concurrent) -> Result<(Duration, String)> {
    let (pv, ne) = parent_versions(c);
    let t0 = std::time::Instant::now();
    let docs: Vec<Doc> = (0..c.agents).map(|a| traces::doc_for(agent_client(a))).collect();
    let mut log: Vec<Vec<Vec<u8>>> = vec![Vec::new(); c.agents];
    let mut applied = vec![vec![0usize; c.agents]; c.agents];
    for (i, t) in c.txns.iter().enumerate() {
        let a = t.agent;
        for b in 0..c.agents {
            if b == a {
                continue;
            }
            while applied[a][b] < pv[i][b] {
                let u = &log[b][applied[a][b]];
                docs[a].transact_mut().apply_update(Update::decode_v1(u)?)?;
                applied[a][b] += 1;
            }
        }
        if ne[i] {
            log[a].push(replay_txn(&docs[a], &t.patches));
            applied[a][a] += 1;
        }
    }
    for a in 0..c.agents {
        for b in 0..c.agents {
            while applied[a][b] < log[b].len() {
                docs[a].transact_mut().apply_update(Update::decode_v1(&log[b][applied[a][b]])?)?;
                applied[a][b] += 1;
            }
        }
    }
    let elapsed = t0.elapsed();
    let texts: Vec<String> = docs.iter().map(text_of).collect();
    if texts.windows(2).any(|w| w[0] != w[1]) {
        bail!("in-process replay: the agents diverged");
    }
    if !c.end_content.is_empty() && texts[0] != c.end_content {
        bail!("in-process replay does not end with endContent");
    }
    Ok((elapsed, texts.into_iter().next().unwrap_or_default()))
}

fn replay_txn(doc: &Doc, ps: &[traces::Patch]) -> Vec<u8> {
    let text = doc.get_or_insert_text("content");
    let mut txn = doc.transact_mut();
    traces::patch_in(&text, &mut txn, ps);
    txn.encode_update_v1()
}

pub async fn s6_concurrent(ctx: &Ctx, t: &Target, res: &mut Results) {
    let label = t.kind.label();
    let row = "6 clownschool 3-agent replay (s)";
    match s6_run(&ctx.conc, t).await {
        Ok(d) => res.put(row, label, Cell::V(d.as_secs_f64())),
        Err(e) => res.put(row, label, Cell::Fail(format!("{e:#}"))),
    }
}

/// Per sending agent, the (bytes hash, update) messages received from it and not applied yet.
type Inbox = Arc<Mutex<Vec<VecDeque<(u64, Vec<u8>)>>>>;

struct Agent {
    doc: Doc,
    sink: client::Sink,
    inbox: Inbox,
    notify: Arc<Notify>,
    applied: Vec<usize>,
    reader: tokio::task::JoinHandle<()>,
}

async fn s6_run(c: &Concurrent, t: &Target) -> Result<Duration> {
    let (pv, ne) = parent_versions(c);
    let name = "s6-clownschool";
    let url = t.url(name)?;
    let sent_clocks: Arc<Mutex<Vec<Vec<u64>>>> = Arc::new(Mutex::new(vec![Vec::new(); c.agents]));
    // Who sent which bytes: a delete-only update carries no client id.
    let by_bytes: Arc<Mutex<std::collections::HashMap<u64, usize>>> = Arc::default();
    let mut agents = Vec::new();
    for a in 0..c.agents {
        let (mut sink, mut stream) = connect(&url).await?;
        handshake(&mut sink, &mut stream, None).await?;
        let inbox: Inbox = Arc::new(Mutex::new(vec![VecDeque::new(); c.agents]));
        let notify = Arc::new(Notify::new());
        let (inbox2, notify2, n, reg) = (inbox.clone(), notify.clone(), c.agents, by_bytes.clone());
        let reader = tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                if let Message::Binary(b) = m {
                    if let Msg::Update(u) = proto::decode(&b) {
                        let head = proto::update_head(u);
                        let src = match reg.lock().unwrap().get(&client::hash_bytes(u)) {
                            Some(&src) => Some(src),
                            None => match head {
                                Some((k, client, _)) if k >= 1 => Some(client.wrapping_sub(60_000) as usize),
                                _ => None,
                            },
                        };
                        if let Some(src) = src {
                            if src < n && src != a {
                                let clock = match head {
                                    Some((k, _, clock)) if k >= 1 => clock,
                                    _ => u64::MAX,
                                };
                                inbox2.lock().unwrap()[src].push_back((clock, u.to_vec()));
                                notify2.notify_one();
                            }
                        }
                    }
                }
            }
        });
        agents.push(Agent {
            doc: traces::doc_for(agent_client(a)),
            sink,
            inbox,
            notify,
            applied: vec![0; c.agents],
            reader,
        });
    }
    let t0 = Instant::now();
    for (i, tx) in c.txns.iter().enumerate() {
        let a = tx.agent;
        #[allow(clippy::needless_range_loop)] // b indexes agent a's counters and the version row alike
        for b in 0..c.agents {
            if b != a {
                while agents[a].applied[b] < pv[i][b] {
                    take_and_apply(&mut agents[a], b, &sent_clocks).await.with_context(|| format!("txn {i}"))?;
                }
            }
        }
        if ne[i] {
            let ag = &mut agents[a];
            let clock = u64::from(ag.doc.transact().state_vector().get(&ClientID::new(agent_client(a))));
            let u = replay_txn(&ag.doc, &tx.patches);
            let has_blocks = matches!(proto::update_head(&u), Some((k, _, _)) if k >= 1);
            sent_clocks.lock().unwrap()[a].push(if has_blocks { clock } else { u64::MAX });
            by_bytes.lock().unwrap().insert(client::hash_bytes(&u), a);
            ag.applied[a] += 1;
            send(&mut ag.sink, proto::update(&u)).await?;
        }
    }
    // Everyone takes the rest.
    let totals: Vec<usize> = sent_clocks.lock().unwrap().iter().map(|v| v.len()).collect();
    for a in 0..c.agents {
        #[allow(clippy::needless_range_loop)] // b indexes agent a's counters and the totals alike
        for b in 0..c.agents {
            while agents[a].applied[b] < totals[b] {
                take_and_apply(&mut agents[a], b, &sent_clocks).await?;
            }
        }
    }
    let elapsed = t0.elapsed();
    for (a, ag) in agents.iter_mut().enumerate() {
        if text_of(&ag.doc) != c.end_content {
            bail!("agent {a} does not end with endContent");
        }
        let _ = ag.sink.close().await;
        ag.reader.abort();
    }
    let want = c.end_content.chars().count();
    let fresh = fetch(&url, |d| text_len_utf32(d) >= want).await?;
    if text_of(&fresh) != c.end_content {
        bail!("a fresh client's copy from the server is not endContent");
    }
    Ok(elapsed)
}

async fn take_and_apply(ag: &mut Agent, b: usize, sent: &Mutex<Vec<Vec<u64>>>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = ag.inbox.lock().unwrap()[b].pop_front();
        if let Some((clock, u)) = got {
            let k = ag.applied[b];
            let want = sent.lock().unwrap()[b].get(k).copied();
            if want != Some(clock) {
                bail!(
                    "update {k} of agent {b} arrived with clock {clock}, expected {want:?} (merged, reordered or lost)"
                );
            }
            ag.doc.transact_mut().apply_update(Update::decode_v1(&u)?)?;
            ag.applied[b] += 1;
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, ag.notify.notified()).await.is_err() {
            bail!("update {} of agent {b} never arrived", ag.applied[b]);
        }
    }
}

// ---------------------------------------------------------------- scenario 7

pub async fn s7_memory(ctx: &Ctx, server: &Server, res: &mut Results) {
    let label = server.target.kind.label();
    let t = server.target.clone();
    let (conns, docs) = if ctx.quick { (1000, 10) } else { (10_000, 100) };
    let r = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let base = server.rss_kib();
        // 100 small documents (1 KB of text each), each with its writer connected.
        let mut holders = Vec::new();
        for d in 0..docs {
            let url = t.url(&format!("s7-d{d}"))?;
            let (mut sink, mut stream) = connect(&url).await?;
            if t.kind.stateful() {
                handshake(&mut sink, &mut stream, None).await?;
                let doc = traces::doc_for(70_000 + d as u64);
                let upd = {
                    let text = doc.get_or_insert_text("content");
                    let mut txn = doc.transact_mut();
                    text.insert(&mut txn, 0, &"y".repeat(1000));
                    txn.encode_update_v1()
                };
                send(&mut sink, proto::update(&upd)).await?;
                loop {
                    let f = next_frame(&mut stream, Duration::from_secs(10)).await?;
                    if let Msg::Update(_) = proto::decode(&f) {
                        break;
                    }
                }
            }
            holders.push((sink, stream));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let with_docs = server.rss_kib();
        // The idle connections.
        let mut futs = Vec::new();
        for i in 0..conns {
            let url = t.url(&format!("s7-d{}", i % docs))?;
            let stateful = t.kind.stateful();
            futs.push(async move {
                let (mut sink, mut stream) = connect(&url).await?;
                if stateful {
                    handshake(&mut sink, &mut stream, None).await?;
                }
                anyhow::Ok((sink, stream))
            });
        }
        let mut idle = Vec::new();
        for chunk in client::chunked(futs, 100) {
            for r in futures_util::future::join_all(chunk).await {
                idle.push(r?);
            }
        }
        // Keep reading in the background so nothing queues up, and let the server settle.
        let mut readers = Vec::new();
        for (sink, mut stream) in idle {
            readers.push((sink, tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} })));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let with_conns = server.rss_kib();
        for (mut sink, h) in readers {
            let _ = sink.close().await;
            h.abort();
        }
        for (mut sink, _) in holders {
            let _ = sink.close().await;
        }
        tokio::time::sleep(Duration::from_secs(if ctx.quick { 2 } else { 5 })).await;
        let after = server.rss_kib();
        anyhow::Ok((base, with_docs, with_conns, after))
    }
    .await;
    let rows = [
        "7 memory per idle connection (KiB)",
        "7 memory per loaded 1 KB doc (KiB)",
        "7 memory given back after all leave (%)",
    ];
    match r {
        Ok((base, with_docs, with_conns, after)) => {
            let per_conn = (with_conns as f64 - with_docs as f64) / conns as f64;
            let per_doc = (with_docs as f64 - base as f64) / docs as f64;
            let grown = with_conns as f64 - base as f64;
            let back = if grown > 0.0 { 100.0 * (with_conns as f64 - after as f64) / grown } else { 0.0 };
            res.put(rows[0], label, Cell::V(per_conn));
            if t.kind.stateful() {
                res.put(rows[1], label, Cell::V(per_doc));
            }
            res.put(rows[2], label, Cell::Vh(back));
            res.note(format!(
                "scenario 7 {label}: RSS start {base} KiB, with {docs} docs {with_docs} KiB, with {conns} idle connections {with_conns} KiB, 5 s after all left {after} KiB"
            ));
        }
        Err(e) => {
            for r in rows {
                res.put(r, label, Cell::Fail(format!("{e:#}")));
            }
        }
    }
}

// ---------------------------------------------------------------- the in-process floor

pub fn floor(ctx: &Ctx, res: &mut Results) -> Result<()> {
    let label = "floor:yrs in-process";
    // Scenario 1: per update, what a server must at least do: decode, apply, encode the broadcast frame.
    let doc = Doc::new();
    let mut h = client::new_hist();
    let t_all = std::time::Instant::now();
    for (_, u) in &ctx.seq.prefix {
        let t0 = std::time::Instant::now();
        let upd = Update::decode_v1(u)?;
        doc.transact_mut().apply_update(upd)?;
        let frame = proto::update(u);
        std::hint::black_box(frame);
        h.saturating_record(t0.elapsed().as_nanos().max(1) as u64);
    }
    let per = t_all.elapsed().as_secs_f64() / ctx.seq.prefix.len() as f64;
    for n in [1usize, 16, 128] {
        res.put(&format!("1 fan-out N={n} p50 (ms)"), label, Cell::V(h.value_at_quantile(0.5) as f64 / 1e6));
        res.put(&format!("1 fan-out N={n} p99 (ms)"), label, Cell::V(h.value_at_quantile(0.99) as f64 / 1e6));
        res.put(&format!("1 fan-out N={n} max (ms)"), label, Cell::V(h.max() as f64 / 1e6));
    }
    // Scenario 3: updates/s one core could apply (decode + apply + encode), ignoring the fan-out.
    res.put("3 throughput: highest updates/s held (200 docs x 4)", label, Cell::Vh(1.0 / per));
    // Scenario 4: building a document from its stored state.
    let t0 = std::time::Instant::now();
    let d = Doc::new();
    d.transact_mut().apply_update(Update::decode_v1(&ctx.seq.full)?)?;
    res.put("4 cold load 160 KB doc (ms)", label, Cell::V(t0.elapsed().as_secs_f64() * 1e3));
    let t0 = std::time::Instant::now();
    let d = Doc::new();
    for u in &ctx.big.updates {
        d.transact_mut().apply_update(Update::decode_v1(u)?)?;
    }
    let st = d.transact().encode_state_as_update_v1(&StateVector::default());
    std::hint::black_box(st);
    res.put("4 cold load 16 MB doc (ms)", label, Cell::V(t0.elapsed().as_secs_f64() * 1e3));
    // Scenario 6: the same replay in memory.
    let (d6, _) = s6_in_process(&ctx.conc)?;
    res.put("6 clownschool 3-agent replay (s)", label, Cell::V(d6.as_secs_f64()));
    Ok(())
}
