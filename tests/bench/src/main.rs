//! CommonPad's benchmark harness (issue 6). See docs/benchmarks.md.
//!
//!   commonpad-bench all            the whole matrix against every server, one table
//!   commonpad-bench smoke          a few seconds against CommonPad only; exit 1 if correctness fails
//!   commonpad-bench only T S...    targets T (comma list of labels) and scenarios S (1..7)
//!   commonpad-bench relay ADDR     the bare relay (started by the runner)
//!   commonpad-bench cluster        scenarios 1 and 3 on 1, 2, 3 cluster nodes (issue 7; docs/scale-out.md)

mod client;
mod cluster;
mod proto;
mod relay;
mod scenarios;
mod servers;
mod traces;

use anyhow::{Context, Result};
use scenarios::Ctx;
use servers::{Bins, Kind, Server};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

pub enum Cell {
    /// lower is better
    V(f64),
    /// higher is better
    Vh(f64),
    Fail(String),
}

/// Pause between scenario 4 and scenario 1 (see where it is used): longer than CommonPad's 5 s
/// unload grace plus the compaction of a 16 MB document, and than y-sweet's 10 s checkpoint.
const SETTLE_AFTER_S4: std::time::Duration = std::time::Duration::from_secs(12);

#[derive(Default)]
pub struct Results {
    rows: Vec<String>,
    cells: HashMap<(String, String), Cell>,
    notes: Vec<String>,
    timeouts: usize,
}

impl Results {
    /// Takes over what a (possibly cancelled) scenario recorded.
    fn merge(&mut self, other: Results) {
        for r in other.rows {
            if !self.rows.contains(&r) {
                self.rows.push(r);
            }
        }
        self.cells.extend(other.cells);
        self.notes.extend(other.notes);
        self.timeouts += other.timeouts;
    }

    pub fn put(&mut self, row: &str, target: &str, c: Cell) {
        if !self.rows.iter().any(|r| r == row) {
            self.rows.push(row.to_owned());
        }
        if let Cell::Fail(why) = &c {
            self.notes.push(format!("FAIL {row} / {target}: {why}"));
        }
        self.cells.insert((row.to_owned(), target.to_owned()), c);
    }
    pub fn fail2(&mut self, a: &str, b: &str, target: &str, why: String) {
        self.put(a, target, Cell::Fail(why.clone()));
        self.put(b, target, Cell::Fail(why));
    }
    pub fn note(&mut self, n: String) {
        eprintln!("  note: {n}");
        self.notes.push(n);
    }
    fn failures(&self) -> usize {
        self.cells.values().filter(|c| matches!(c, Cell::Fail(_))).count() + self.timeouts
    }

    fn table(&self, cols: &[&str]) -> String {
        let cp = "commonpad-nofsync";
        let fmt = |v: f64| {
            if v >= 1000.0 {
                format!("{v:.0}")
            } else if v >= 10.0 {
                format!("{v:.1}")
            } else if v >= 0.1 {
                format!("{v:.2}")
            } else {
                format!("{v:.4}")
            }
        };
        let mut out = String::new();
        out.push_str(&format!("| scenario / metric | {} | CommonPad (no fsync) best of peers? |\n", cols.join(" | ")));
        out.push_str(&format!("|---|{}---|\n", "---|".repeat(cols.len())));
        for row in &self.rows {
            let base = match self.cells.get(&(row.clone(), cp.to_owned())) {
                Some(Cell::V(v)) | Some(Cell::Vh(v)) => Some(*v),
                _ => None,
            };
            let mut line = format!("| {row} |");
            let mut beats: Option<bool> = None;
            for col in cols {
                let s = match self.cells.get(&(row.clone(), col.to_string())) {
                    None => "-".to_owned(),
                    Some(Cell::Fail(_)) => "FAIL".to_owned(),
                    Some(Cell::V(v)) | Some(Cell::Vh(v)) => {
                        let higher = matches!(self.cells.get(&(row.clone(), col.to_string())), Some(Cell::Vh(_)));
                        let peer = matches!(*col, "node-y-websocket" | "y-sweet");
                        if peer {
                            if let Some(b) = base {
                                let better = if higher { b >= *v } else { b <= *v };
                                beats = Some(beats.unwrap_or(true) && better);
                            }
                        }
                        match base {
                            Some(b) if *col != cp && !col.starts_with("commonpad") && b != 0.0 => {
                                format!("{} ({:.2}x)", fmt(*v), v / b)
                            }
                            _ => fmt(*v),
                        }
                    }
                };
                line.push_str(&format!(" {s} |"));
            }
            line.push_str(match beats {
                Some(true) => " yes |",
                Some(false) => " **no** |",
                None => " - |",
            });
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str("\nRatios in brackets: that column's figure / CommonPad's with --no-fsync (like-for-like: no peer fsyncs).\n");
        out
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Pins this process (and every thread it starts later) to one CPU.
fn pin_self(cpu: usize) -> bool {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

fn raise_fd_limit() -> u64 {
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur as u64
    }
}

fn run(cmd: &mut Command, log: &Path) -> Result<bool> {
    let f = std::fs::File::create(log)?;
    Ok(cmd.stdout(f.try_clone()?).stderr(f).status()?.success())
}

/// The peers: npm packages into target/bench-peers/node, y-sweet via cargo install.
fn install_peers(root: &Path, skipped: &mut Vec<String>) -> (Option<PathBuf>, Option<PathBuf>) {
    let peers = root.join("target/bench-peers");
    let _ = std::fs::create_dir_all(&peers);
    let node_dir = peers.join("node");
    let server_js = node_dir.join("node_modules/@y/websocket-server/src/server.js");
    let node = if server_js.exists() {
        Some(server_js)
    } else {
        let _ = std::fs::create_dir_all(&node_dir);
        let _ = std::fs::copy(root.join("tests/bench/peers/node/package.json"), node_dir.join("package.json"));
        eprintln!("installing the Node reference server (npm) into {}", node_dir.display());
        match run(
            Command::new("npm").args(["install", "--no-audit", "--no-fund"]).current_dir(&node_dir),
            &peers.join("npm-install.log"),
        ) {
            Ok(true) if server_js.exists() => Some(server_js),
            r => {
                skipped.push(format!(
                    "node-y-websocket: npm install failed ({r:?}); see target/bench-peers/npm-install.log"
                ));
                None
            }
        }
    };
    let ysweet = if let Ok(p) = std::env::var("Y_SWEET_BIN") {
        Some(PathBuf::from(p))
    } else {
        let bin = peers.join("ysweet/bin/y-sweet");
        if bin.exists() {
            Some(bin)
        } else {
            eprintln!("installing y-sweet 0.9.1 (cargo install --locked; takes a few minutes)");
            let ok = run(
                Command::new("cargo")
                    .args(["install", "y-sweet", "--version", "0.9.1", "--locked", "--root"])
                    .arg(peers.join("ysweet")),
                &peers.join("ysweet-install.log"),
            );
            match ok {
                Ok(true) if bin.exists() => Some(bin),
                r => {
                    skipped.push(format!(
                        "y-sweet: cargo install failed ({r:?}); see target/bench-peers/ysweet-install.log"
                    ));
                    None
                }
            }
        }
    };
    (node, ysweet)
}

fn commonpad_bin(root: &Path, release: bool) -> Result<PathBuf> {
    if let Ok(p) = std::env::var("COMMONPAD_BIN") {
        return Ok(PathBuf::from(p));
    }
    let profile = if release { "release" } else { "debug" };
    let bin = root.join("target").join(profile).join("commonpad");
    if release || !bin.exists() {
        eprintln!("building commonpad ({profile})");
        let mut c = Command::new("cargo");
        c.args(["build", "--locked", "-p", "commonpad-server", "--bin", "commonpad"]).current_dir(root);
        if release {
            c.arg("--release");
        }
        anyhow::ensure!(c.status()?.success(), "building commonpad failed");
    }
    Ok(bin)
}

fn versions(bins: &Bins) -> Vec<String> {
    let out = |c: &mut Command| {
        c.output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default()
    };
    let mut v = vec![
        format!("commonpad: {}", out(Command::new(&bins.commonpad).arg("--version"))),
        format!("rustc: {}", out(Command::new("rustc").arg("--version"))),
        format!("node: {}", out(Command::new("node").arg("--version"))),
    ];
    if let Some(js) = &bins.node_server {
        let pkg = js.parent().and_then(|p| p.parent()).map(|p| p.join("package.json"));
        if let Some(text) = pkg.and_then(|p| std::fs::read_to_string(p).ok()) {
            let ver = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["version"].as_str().map(str::to_owned));
            v.push(format!("@y/websocket-server: {}", ver.unwrap_or_default()));
        }
        let yjs = js.ancestors().nth(4).map(|nm| nm.join("yjs/package.json"));
        if let Some(text) = yjs.and_then(|p| std::fs::read_to_string(p).ok()) {
            let ver = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["version"].as_str().map(str::to_owned));
            v.push(format!("yjs (Node server): {}", ver.unwrap_or_default()));
        }
    }
    if let Some(ys) = &bins.ysweet {
        v.push(format!("y-sweet: {}", out(Command::new(ys).arg("version"))));
    }
    v
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("help");
    match mode {
        "relay" => relay::run(args.get(1).map(String::as_str).unwrap_or("127.0.0.1:4466")),
        "all" => bench(None, None, false),
        "only" => {
            let targets: Vec<String> =
                args.get(1).context("only TARGETS SCENARIOS")?.split(',').map(str::to_owned).collect();
            let scen: Vec<u32> = args[2..].iter().filter_map(|s| s.parse().ok()).collect();
            let quick = std::env::var("BENCH_QUICK").is_ok();
            bench(Some(targets), if scen.is_empty() { None } else { Some(scen) }, quick)
        }
        "smoke" => smoke(),
        "cluster" => cluster::run(),
        _ => {
            eprintln!("usage: commonpad-bench all | smoke | only TARGET[,TARGET] [SCENARIO...] | cluster | relay ADDR");
            eprintln!("targets: commonpad commonpad-nofsync node-y-websocket y-sweet floor:relay");
            std::process::exit(2);
        }
    }
}

fn pinning() -> (Option<usize>, String) {
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if ncpu >= 2 && pin_self(0) {
        (Some(1), format!("pinning: load generator on CPU 0, each server on CPU 1 (taskset -c 1); {ncpu} CPUs"))
    } else {
        (None, format!("pinning: none ({ncpu} CPU)"))
    }
}

fn smoke() -> Result<()> {
    let t_start = std::time::Instant::now();
    let (server_cpu, pin) = pinning();
    eprintln!("{pin}");
    let root = repo_root();
    let release = !cfg!(debug_assertions);
    let bins = Bins {
        commonpad: commonpad_bin(&root, release)?,
        node_server: None,
        ysweet: None,
        me: std::env::current_exe()?,
        server_cpu,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let work = root.join("target/bench-smoke");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let mut res = Results::default();
    let ctx = Ctx {
        seq: Arc::new(traces::automerge_paper(50)?),
        conc: Arc::new(scenarios::truncate(&traces::clownschool()?, 1000)?),
        big: Arc::new(scenarios::BigDoc { updates: Vec::new(), text_len: 0, encoded: 0 }),
        quick: true,
    };
    eprintln!("traces loaded in {:.1}s", t_start.elapsed().as_secs_f64());
    let mut server = Server::start(Kind::CommonPad { fsync: true }, &bins, &work)?;
    let finished = rt.block_on(async {
        let all = async {
            scenarios::s1_fanout(&ctx, &server.target, &mut res).await;
            scenarios::s2_hot(&ctx, &server.target, &mut res).await;
            scenarios::s5_reconnect(&ctx, &server.target, &mut res).await;
            scenarios::s6_concurrent(&ctx, &server.target, &mut res).await;
        };
        tokio::time::timeout(std::time::Duration::from_secs(120), all).await.is_ok()
    });
    if !finished {
        res.note("FAIL smoke: did not finish within 120 s".into());
        res.timeouts += 1;
    }
    server.stop();
    print!("{}", res.table(&["commonpad"]));
    for n in &res.notes {
        println!("{n}");
    }
    let fails = res.failures();
    println!("smoke: {} checks failed, {:.1}s", fails, t_start.elapsed().as_secs_f64());
    if fails > 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn bench(only: Option<Vec<String>>, scen: Option<Vec<u32>>, quick: bool) -> Result<()> {
    let t_start = std::time::Instant::now();
    let (server_cpu, pin) = pinning();
    let fds = raise_fd_limit();
    let root = repo_root();
    let mut skipped = Vec::new();
    let want = |label: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == label));
    let run_s = |s: u32| scen.as_ref().is_none_or(|v| v.contains(&s));
    let (node_server, ysweet) =
        if want("node-y-websocket") || want("y-sweet") { install_peers(&root, &mut skipped) } else { (None, None) };
    let bins =
        Bins { commonpad: commonpad_bin(&root, true)?, node_server, ysweet, me: std::env::current_exe()?, server_cpu };
    println!("{pin}; fd limit {fds}; load average before: {}", loadavg());
    let vers = versions(&bins);
    for v in &vers {
        println!("version: {v}");
    }
    let work = root.join("target/bench-run");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    eprintln!("preparing traces and documents");
    let ctx = Ctx {
        seq: Arc::new(traces::automerge_paper(if quick { 50 } else { 500 })?),
        conc: Arc::new(traces::clownschool()?),
        big: Arc::new(scenarios::big_doc(16)),
        quick,
    };
    let mut res = Results::default();
    res.note(format!(
        "automerge-paper: {} txns replayed locally in {:.1}s; full state {} B; the 16 MB document encodes to {} B",
        ctx.seq.txns,
        ctx.seq.gen_secs,
        ctx.seq.full.len(),
        ctx.big.encoded
    ));
    if only.is_none() || want("floor:yrs") {
        scenarios::floor(&ctx, &mut res)?;
    }

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut kinds = vec![Kind::CommonPad { fsync: true }, Kind::CommonPad { fsync: false }];
    if bins.node_server.is_some() {
        kinds.push(Kind::Node);
    }
    if bins.ysweet.is_some() {
        kinds.push(Kind::YSweet);
    }
    kinds.push(Kind::Relay);
    for kind in kinds {
        let label = kind.label();
        if !want(label) {
            continue;
        }
        let t0 = std::time::Instant::now();
        eprintln!("== {label}");
        let mut server = match Server::start(kind, &bins, &work) {
            Ok(s) => s,
            Err(e) => {
                skipped.push(format!("{label}: {e:#}"));
                continue;
            }
        };
        println!("started {label} pid {} on {}", server.pid(), server.target.addr);
        // Every scenario is bounded: one that hangs is reported and the run goes on.
        async fn bounded(res: &mut Results, label: &str, s: u32, secs: u64, f: impl std::future::Future<Output = ()>) {
            eprintln!("   scenario {s}");
            if tokio::time::timeout(std::time::Duration::from_secs(secs), f).await.is_err() {
                res.note(format!("FAIL scenario {s} / {label}: did not finish within {secs} s"));
                res.timeouts += 1;
            }
        }
        rt.block_on(async {
            let t = server.target.clone();
            if run_s(7) {
                let mut r = Results::default();
                bounded(&mut res, label, 7, 120, scenarios::s7_memory(&ctx, &server, &mut r)).await;
                res.merge(r);
            }
            // Order: memory first (it needs a fresh process for its baseline), then cold load (it
            // restarts the server), then the load scenarios. Scenario 4 runs before 5 and 6 because the
            // Node server stopped echoing the last 4 MB update when scenario 6 had run before it.
            if kind.stateful() && run_s(4) {
                let mut r = Results::default();
                bounded(&mut res, label, 4, 120, scenarios::s4_cold(&ctx, &mut server, &mut r)).await;
                res.merge(r);
                // Let the server settle before latency is measured: CommonPad compacts and
                // unloads scenario 4's 16 MB document 5 s after its client left (y-sweet
                // checkpoints every 10 s), which would otherwise land in scenario 1's first
                // seconds as one stall on the server's core. The same pause for every target.
                if run_s(1) && !ctx.quick {
                    tokio::time::sleep(SETTLE_AFTER_S4).await;
                }
            }
            if run_s(1) {
                let mut r = Results::default();
                bounded(&mut res, label, 1, 180, scenarios::s1_fanout(&ctx, &t, &mut r)).await;
                res.merge(r);
            }
            if run_s(2) {
                let mut r = Results::default();
                bounded(&mut res, label, 2, 90, scenarios::s2_hot(&ctx, &t, &mut r)).await;
                res.merge(r);
            }
            if run_s(3) {
                let mut r = Results::default();
                bounded(&mut res, label, 3, 240, scenarios::s3_throughput(&ctx, &t, &server, &mut r)).await;
                res.merge(r);
            }
            if kind.stateful() {
                if run_s(5) {
                    let mut r = Results::default();
                    bounded(&mut res, label, 5, 300, scenarios::s5_reconnect(&ctx, &t, &mut r)).await;
                    res.merge(r);
                }
                if run_s(6) {
                    let mut r = Results::default();
                    bounded(&mut res, label, 6, 180, scenarios::s6_concurrent(&ctx, &t, &mut r)).await;
                    res.merge(r);
                }
            }
        });
        let pid = server.pid();
        if let Some(how) = server.exited() {
            res.note(format!(
                "{label}: the server process (pid {pid}) ended on its own: {how}; see target/bench-run/{label}.log"
            ));
        }
        server.stop();
        println!("stopped {label} pid {pid} ({:.0}s)", t0.elapsed().as_secs_f64());
    }
    let cols = ["commonpad", "commonpad-nofsync", "node-y-websocket", "y-sweet", "floor:relay", "floor:yrs in-process"];
    println!();
    print!("{}", res.table(&cols));
    println!();
    for n in &res.notes {
        println!("- {n}");
    }
    for s in &skipped {
        println!("- SKIPPED {s}");
    }
    println!("load average after: {}; total {:.0}s", loadavg(), t_start.elapsed().as_secs_f64());
    Ok(())
}
