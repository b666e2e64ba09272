//! `commonpad-bench cluster` (issue 7): scenario 1 (fan-out latency) and scenario 3 (aggregate
//! throughput) against one, two and three CommonPad nodes sharing their documents through a private
//! redis-server and PostgreSQL, next to one node on its disk store (the reference) and one cluster
//! node with Redis at `appendfsync everysec` (what `always` costs). See docs/scale-out.md, "Figures".
//!
//! Everything runs on this machine: the load generator on CPU 0, every node, redis-server and
//! PostgreSQL together on CPU 1 (`taskset -c 1`). Connections go to the nodes in turn (round-robin,
//! connection by connection), so one document's clients sit on every node and most deliveries cross
//! nodes through the Redis stream. The last column ("docs hashed") puts all of a document's clients
//! on one node instead (documents round-robin over the nodes), as a load balancer hashing on the URI
//! does; scenario 3 only (scenario 1 has one document). The correctness checks are scenario 1's and
//! 3's: every reader must see every update of every writer, in order; after scenario 1 the rest of
//! the trace goes through one node and a fresh client on the next node must read endContent.
//!
//! Every process is one we started, stopped by its PID (SIGTERM; SIGINT for PostgreSQL, its fast
//! shutdown; SIGKILL after 15 s), also when the run fails (`Drop`). As root, redis-server, initdb
//! and postgres run as the `postgres` OS user through `setpriv`, which execs, so the PID we hold is
//! the server's own.
//!
//! `BENCH_QUICK=1`: a short run (1 s of fan-out, 20 documents in scenario 3) to try the harness.

use crate::client::{self, connect, handshake, next_frame, send, Ctl, DocLoad, Feed, LoadResult, Source, WriterCfg};
use crate::proto::{self, Msg};
use crate::servers::{free_port, Bins, Kind, Server, Target};
use crate::traces::{self, Sequential};
use crate::{Cell, Results};
use anyhow::{bail, Context, Result};
use futures_util::SinkExt;
use hdrhistogram::Histogram;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, Transact, Update};

/// The table's columns, in run order. Ratios in the table are against the first.
const COLS: [&str; 6] = [
    "disk, 1 node",
    "cluster, 1 node",
    "cluster, 1 node, everysec",
    "cluster, 2 nodes",
    "cluster, 3 nodes",
    "cluster, 3 nodes, docs hashed",
];

// ---------------------------------------------------------------- processes

/// A process we started; stopped by its PID.
struct Proc {
    name: String,
    child: Option<Child>,
    /// SIGTERM (redis-server, nodes) or SIGINT (PostgreSQL: fast shutdown).
    stop_signal: libc::c_int,
    log: PathBuf,
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

impl Proc {
    /// `argv` pinned to `cpu`; as the `postgres` OS user when `as_postgres` and we are root.
    fn spawn(
        name: &str,
        argv: &[String],
        cpu: Option<usize>,
        as_postgres: bool,
        stop_signal: libc::c_int,
        cwd: &Path,
        log: &Path,
    ) -> Result<Proc> {
        let mut words: Vec<String> = Vec::new();
        if let Some(c) = cpu {
            words.extend(["taskset".into(), "-c".into(), c.to_string()]);
        }
        if as_postgres && is_root() {
            // setpriv's credential change clears the parent-death signal: set it again after.
            let sig = if stop_signal == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
            words.extend(
                ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--pdeathsig", sig, "--"]
                    .map(String::from),
            );
        }
        words.extend(argv.iter().cloned());
        let mut cmd = Command::new(&words[0]);
        cmd.args(&words[1..]).current_dir(cwd).env("COMMONPAD_LOG", "warn");
        let f = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        cmd.stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f);
        // If the runner dies (Ctrl-C, timeout), the process gets its stop signal too.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, stop_signal);
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("starting {name}: {}", words.join(" ")))?;
        Ok(Proc { name: name.to_owned(), child: Some(child), stop_signal, log: log.to_owned() })
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// If the process has ended on its own: how.
    fn exited(&mut self) -> Option<String> {
        match self.child.as_mut()?.try_wait() {
            Ok(Some(st)) => Some(st.to_string()),
            _ => None,
        }
    }

    /// Stop signal, then SIGKILL after 15 s. Returns how it ended.
    fn stop(&mut self) -> String {
        let Some(mut child) = self.child.take() else { return "not running".into() };
        let pid = child.id() as libc::pid_t;
        if let Ok(Some(st)) = child.try_wait() {
            return format!("had already ended: {st}");
        }
        unsafe { libc::kill(pid, self.stop_signal) };
        let t0 = std::time::Instant::now();
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return format!("{st} after {:.1}s", t0.elapsed().as_secs_f64());
            }
            if t0.elapsed() > Duration::from_secs(15) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let _ = child.wait();
                return "SIGKILLed after 15 s".into();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `ready` every `every` until it says yes; fails with the log's tail if the process
    /// exits first or 30 s pass (`name` and `not_ready` make the message).
    fn wait_ready(
        &mut self,
        name: &str,
        not_ready: &str,
        every: Duration,
        mut ready: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let t0 = std::time::Instant::now();
        loop {
            if ready()? {
                return Ok(());
            }
            if let Some(st) = self.exited() {
                bail!("{name} exited at start ({st}):\n{}", self.log_tail());
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("{name} {not_ready} within 30 s:\n{}", self.log_tail());
            }
            std::thread::sleep(every);
        }
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.is_some() {
            let how = self.stop();
            eprintln!("stopped {} ({how})", self.name);
        }
    }
}

/// User+system CPU seconds of a process (all its threads); with `tree`, plus its reaped children and
/// its live children (PostgreSQL's backends, redis-server's rewrite fork).
fn cpu_of(pid: i32, tree: bool) -> f64 {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let fields = |p: &str| -> Vec<f64> {
        let st = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let after = st.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        after.split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect()
    };
    let f = fields(&pid.to_string());
    let at = |f: &[f64], i: usize| f.get(i).copied().unwrap_or(0.0);
    let mut t = at(&f, 11) + at(&f, 12);
    if tree {
        t += at(&f, 13) + at(&f, 14);
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let c = fields(&name);
            if at(&c, 1) as i32 == pid {
                t += at(&c, 11) + at(&c, 12);
            }
        }
    }
    t / ticks
}

/// What runs on CPU 1, by part: (label, PIDs).
struct CpuParts(Vec<(&'static str, Vec<i32>)>);

impl CpuParts {
    fn sample(&self) -> Vec<f64> {
        self.0.iter().map(|(_, pids)| pids.iter().map(|p| cpu_of(*p, true)).sum()).collect()
    }
}

/// Busy CPU seconds of the whole machine (all CPUs) since boot, from /proc/stat.
fn machine_busy() -> f64 {
    let st = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let f: Vec<f64> =
        st.lines().next().unwrap_or("").split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0.0)).collect();
    // user nice system idle iowait irq softirq steal
    let at = |i: usize| f.get(i).copied().unwrap_or(0.0);
    (at(0) + at(1) + at(2) + at(5) + at(6) + at(7)) / ticks
}

/// Machine-wide TCP retransmitted segments, listen-queue drops and packets dropped by the softnet
/// backlog (loopback drops them when the receiving CPU cannot keep up): what explains an outlier
/// of a second or more.
fn net_counters() -> [u64; 3] {
    let pick = |file: &str, prefix: &str, name: &str| -> u64 {
        let t = std::fs::read_to_string(file).unwrap_or_default();
        let lines: Vec<&str> = t.lines().filter(|l| l.starts_with(prefix)).collect();
        if lines.len() < 2 {
            return 0;
        }
        let names = lines[0].split_whitespace();
        let values = lines[1].split_whitespace();
        names.zip(values).find(|(n, _)| *n == name).and_then(|(_, v)| v.parse().ok()).unwrap_or(0)
    };
    let softnet: u64 = std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).and_then(|v| u64::from_str_radix(v, 16).ok()))
        .sum();
    [pick("/proc/net/snmp", "Tcp:", "RetransSegs"), pick("/proc/net/netstat", "TcpExt:", "ListenDrops"), softnet]
}

/// Runs one column's scenarios and notes how much CPU the rest of the machine used meanwhile (another
/// benchmark or a build running at the same time makes the figures noise) and what the network
/// counters say.
#[allow(clippy::too_many_arguments)] // the column's settings, passed through to `scenarios` as they are
fn measured(
    rt: &tokio::runtime::Runtime,
    res: &mut Results,
    seq: &Sequential,
    t: &Target,
    quick: bool,
    per_doc: bool,
    cpu: &CpuParts,
    col: &str,
) {
    let ours = || crate::scenarios::self_cpu_secs() + cpu.sample().iter().sum::<f64>();
    let (busy0, ours0, wall0, net0) = (machine_busy(), ours(), std::time::Instant::now(), net_counters());
    rt.block_on(scenarios(res, seq, t, quick, per_doc, cpu, col));
    let other = (machine_busy() - busy0) - (ours() - ours0);
    let wall = wall0.elapsed().as_secs_f64();
    let net: Vec<u64> = net_counters().iter().zip(net0).map(|(a, b)| a - b).collect();
    res.note(format!(
        "{col}: scenarios took {wall:.0} s; CPU time of everything else on the machine meanwhile (kernel threads included; \
         rough, +-5 s between two ways of counting): {other:.1} s; \
         TCP segments retransmitted {}, listen drops {}, softnet backlog drops {}",
        net[0], net[1], net[2]
    ));
    if other > 0.2 * wall {
        res.note(format!(
            "NOISY {col}: other processes used {other:.1} CPU-seconds in {wall:.0} s: re-run when the machine is quiet"
        ));
    }
}

fn wait_port(addr: SocketAddr, p: &mut Proc, within: Duration) -> Result<()> {
    let t0 = std::time::Instant::now();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(st) = p.exited() {
            bail!("{} exited at start ({st}):\n{}", p.name, p.log_tail());
        }
        if t0.elapsed() > within {
            bail!("{} did not listen on {addr} within {} s:\n{}", p.name, within.as_secs(), p.log_tail());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// uid and gid of the `postgres` OS user.
fn postgres_user() -> Result<(u32, u32)> {
    let pw = std::fs::read_to_string("/etc/passwd")?;
    for l in pw.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.first() == Some(&"postgres") && f.len() > 3 {
            return Ok((f[2].parse()?, f[3].parse()?));
        }
    }
    bail!("running as root and there is no `postgres` OS user to run redis-server and PostgreSQL as")
}

/// A fresh directory, owned by `postgres` when we are root.
fn service_dir(d: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(d);
    std::fs::create_dir_all(d)?;
    if is_root() {
        let (u, g) = postgres_user()?;
        std::os::unix::fs::chown(d, Some(u), Some(g))?;
    }
    Ok(())
}

// ---------------------------------------------------------------- redis-server

struct Redis {
    proc: Proc,
    port: u16,
}

fn resp_write(w: &mut impl Write, args: &[&[u8]]) -> Result<()> {
    let mut b = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        b.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        b.extend_from_slice(a);
        b.extend_from_slice(b"\r\n");
    }
    w.write_all(&b)?;
    Ok(())
}

/// One RESP2 reply; arrays are joined with newlines.
fn resp_read(r: &mut impl BufRead) -> Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        bail!("redis closed the connection");
    }
    let line = line.trim_end();
    let (kind, rest) = line.split_at(1);
    Ok(match kind {
        "+" | ":" => rest.to_owned(),
        "-" => bail!("redis: {rest}"),
        "$" => {
            let n: i64 = rest.parse()?;
            if n < 0 {
                return Ok(String::new());
            }
            let mut buf = vec![0; n as usize + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(n as usize);
            String::from_utf8_lossy(&buf).into_owned()
        }
        "*" => {
            let n: i64 = rest.parse()?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(resp_read(r)?);
            }
            items.join("\n")
        }
        _ => bail!("redis: unexpected reply {line:?}"),
    })
}

/// One Redis command on a fresh connection, its reply as text.
fn redis_cmd(port: u16, args: &[&str]) -> Result<String> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = s.try_clone()?;
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    resp_write(&mut w, &args)?;
    resp_read(&mut BufReader::new(s))
}

impl Redis {
    fn start(dir: &Path, cpu: Option<usize>) -> Result<Redis> {
        service_dir(dir)?;
        let port = free_port()?;
        let argv: Vec<String> = [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--dir",
            &dir.to_string_lossy(),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--logfile",
            "",
        ]
        .map(String::from)
        .to_vec();
        let proc = Proc::spawn("redis-server", &argv, cpu, true, libc::SIGTERM, dir, &dir.join("../redis.log"))?;
        let mut r = Redis { proc, port };
        r.proc.wait_ready("redis-server", "did not answer PING", Duration::from_millis(50), || {
            Ok(matches!(redis_cmd(port, &["PING"]), Ok(p) if p == "PONG"))
        })?;
        Ok(r)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn cmd(&self, args: &[&str]) -> Result<String> {
        redis_cmd(self.port, args)
    }

    /// One client appending a 100 B entry every millisecond for 2 s: the round trip of the
    /// durability point, in µs (2 s so that `everysec`'s background fsync falls in the window).
    fn probe_xadd(&self) -> Result<Histogram<u64>> {
        let s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut w = s.try_clone()?;
        let mut r = BufReader::new(s);
        let payload = [b'x'; 100];
        let mut h = client::new_hist();
        let start = std::time::Instant::now();
        while start.elapsed() < PROBE {
            let t0 = std::time::Instant::now();
            resp_write(&mut w, &[b"XADD", b"cp:bench-probe", b"*", b"u", &payload])?;
            resp_read(&mut r)?;
            h.saturating_record(t0.elapsed().as_micros().max(1) as u64);
            std::thread::sleep(Duration::from_millis(1));
        }
        resp_write(&mut w, &[b"DEL", b"cp:bench-probe"])?;
        resp_read(&mut r)?;
        Ok(h)
    }

    /// `field=value` pairs of one `INFO` line (e.g. `cmdstat_xadd`).
    fn info_line(&self, section: &str, key: &str) -> String {
        let info = self.cmd(&["INFO", section]).unwrap_or_default();
        info.lines().find_map(|l| l.strip_prefix(&format!("{key}:")).map(str::to_owned)).unwrap_or_default()
    }
}

/// How long each durability probe runs.
const PROBE: Duration = Duration::from_secs(2);

/// The single node's durability point on the same filesystem: append 100 B and fdatasync, every
/// millisecond for 2 s; in µs.
fn probe_fsync(dir: &Path) -> Result<Histogram<u64>> {
    let p = dir.join("fsync-probe");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&p)?;
    let mut h = client::new_hist();
    let start = std::time::Instant::now();
    while start.elapsed() < PROBE {
        let t0 = std::time::Instant::now();
        f.write_all(&[b'x'; 100])?;
        f.sync_data()?;
        h.saturating_record(t0.elapsed().as_micros().max(1) as u64);
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = std::fs::remove_file(&p);
    Ok(h)
}

// ---------------------------------------------------------------- PostgreSQL

struct Postgres {
    proc: Proc,
    bin: PathBuf,
    port: u16,
}

/// The newest /usr/lib/postgresql/*/bin holding `postgres` ($COMMONPAD_PG_BIN first).
fn pg_bin() -> Result<PathBuf> {
    if let Ok(d) = std::env::var("COMMONPAD_PG_BIN") {
        return Ok(d.into());
    }
    let mut vs: Vec<(f64, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL not found in /usr/lib/postgresql (install Debian's postgresql, or set COMMONPAD_PG_BIN)")?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, b): &(f64, PathBuf)| b.join("postgres").exists())
        .collect();
    vs.sort_by(|a, b| b.0.total_cmp(&a.0));
    vs.into_iter().next().map(|v| v.1).context("no /usr/lib/postgresql/*/bin/postgres")
}

impl Postgres {
    fn start(dir: &Path, cpu: Option<usize>) -> Result<Postgres> {
        let bin = pg_bin()?;
        service_dir(dir)?;
        let data = dir.join("data");
        let log = dir.join("../postgres.log");
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let mut init = Vec::new();
        if is_root() {
            init.extend(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"].map(String::from));
        }
        init.extend([
            s(&bin.join("initdb")),
            "-D".into(),
            s(&data),
            "--auth=trust".into(),
            "-U".into(),
            "commonpad".into(),
        ]);
        init.extend(["-E", "UTF8", "--no-locale", "--no-sync"].map(String::from));
        let f = std::fs::File::create(&log)?;
        let ok = Command::new(&init[0])
            .args(&init[1..])
            .current_dir(dir)
            .stdout(f.try_clone()?)
            .stderr(f)
            .status()?
            .success();
        if !ok {
            bail!("initdb failed; see {}", log.display());
        }
        let port = free_port()?;
        let argv = vec![
            s(&bin.join("postgres")),
            "-D".into(),
            s(&data),
            "-p".into(),
            port.to_string(),
            "-k".into(),
            s(dir),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
        ];
        let proc = Proc::spawn("postgres", &argv, cpu, true, libc::SIGINT, dir, &log)?;
        let isready = bin.join("pg_isready");
        let mut pg = Postgres { proc, bin, port };
        pg.proc.wait_ready("postgres", "did not accept connections", Duration::from_millis(100), || {
            Ok(Command::new(&isready)
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "commonpad", "-d", "postgres", "-t", "2"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?
                .success())
        })?;
        Ok(pg)
    }

    fn url(&self) -> String {
        format!("postgres://commonpad@127.0.0.1:{}/postgres", self.port)
    }

    fn psql(&self, sql: &str) -> Result<String> {
        let o = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", &self.url(), "-c", sql])
            .env("PGCONNECT_TIMEOUT", "5")
            .output()?;
        if !o.status.success() {
            bail!("psql: {}", String::from_utf8_lossy(&o.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned())
    }
}

/// Fresh shared state: no commonpad_* tables, an empty Redis, its statistics reset.
fn reset(redis: &Redis, pg: &Postgres, appendfsync: &str) -> Result<()> {
    pg.psql(
        "DO $$ DECLARE r record; BEGIN FOR r IN SELECT tablename FROM pg_tables \
         WHERE schemaname = 'public' AND tablename LIKE 'commonpad\\_%' LOOP \
         EXECUTE format('DROP TABLE %I CASCADE', r.tablename); END LOOP; END $$",
    )?;
    redis.cmd(&["FLUSHALL"])?;
    redis.cmd(&["CONFIG", "SET", "appendfsync", appendfsync])?;
    redis.cmd(&["CONFIG", "RESETSTAT"])?;
    Ok(())
}

/// `n` cluster nodes, started one after the other (the first creates the tables).
fn start_nodes(
    n: usize,
    bins: &Bins,
    redis: &Redis,
    pg: &Postgres,
    work: &Path,
    tag: &str,
) -> Result<(Vec<Proc>, Vec<SocketAddr>)> {
    let mut procs = Vec::new();
    let mut addrs = Vec::new();
    for k in 1..=n {
        let port = free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let data = work.join(format!("{tag}-node{k}-data"));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data)?;
        let log = work.join(format!("{tag}-node{k}.log"));
        let _ = std::fs::remove_file(&log);
        let argv = vec![
            bins.commonpad.to_string_lossy().into_owned(),
            "serve".into(),
            "--open".into(),
            "--addr".into(),
            addr.to_string(),
            "--data".into(),
            data.to_string_lossy().into_owned(),
            "--redis".into(),
            redis.url(),
            "--postgres".into(),
            pg.url(),
            "--node-id".into(),
            format!("node-{k}"),
            "--max-connections".into(),
            "20000".into(),
        ];
        let argv: Vec<String> =
            argv.into_iter().chain(crate::servers::UNLIMITED.iter().map(|a| a.to_string())).collect();
        let mut p = Proc::spawn(&format!("{tag} node-{k}"), &argv, bins.server_cpu, false, libc::SIGTERM, work, &log)?;
        wait_port(addr, &mut p, Duration::from_secs(60))?;
        procs.push(p);
        addrs.push(addr);
    }
    Ok((procs, addrs))
}

/// WARN and ERROR lines of a node's log: how many, and the first few different ones.
fn log_problems(log: &Path) -> Option<String> {
    let s = std::fs::read_to_string(log).ok()?;
    let bad: Vec<&str> =
        s.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("panicked")).collect();
    if bad.is_empty() {
        return None;
    }
    let mut firsts: Vec<String> = Vec::new();
    for l in &bad {
        // without the timestamp, so repeats of one message count once
        let msg: String = l.split_once(' ').map(|(_, m)| m.trim()).unwrap_or(l).chars().take(220).collect();
        if !firsts.contains(&msg) && firsts.len() < 3 {
            firsts.push(msg);
        }
    }
    Some(format!("{} WARN/ERROR lines; first different ones: {}", bad.len(), firsts.join(" | ")))
}

// ---------------------------------------------------------------- load, spread over the nodes

fn node_of(t: &Target, url: &str) -> usize {
    t.nodes.iter().position(|a| url.starts_with(&format!("ws://{a}/"))).unwrap_or(0)
}

/// `client::run_load`, but each connection asks the target for its own URL (so the connections of
/// one document go to the nodes in turn; with `per_doc`, one URL per document, as in `run_load`),
/// and the latencies of readers on another node than the document's first writer are also kept
/// apart.
async fn run_spread(
    t: &Target,
    docs: Vec<DocLoad>,
    drain: Duration,
    warmup: Duration,
    per_doc: bool,
) -> Result<(LoadResult, Histogram<u64>)> {
    let ctl = Arc::new(Ctl {
        writers_left: AtomicUsize::new(0),
        drained: AtomicBool::new(false),
        errors: Mutex::new(Vec::new()),
    });
    struct Prepared {
        sink: client::Sink,
        stream: client::Stream,
        feed: Arc<Feed>,
        writer: Option<WriterCfg>,
        record: bool,
        other: bool,
    }
    let mut prepared = Vec::new();
    for d in docs {
        let clients: Vec<u64> = d.writers.iter().map(|w| w.client).collect();
        let feed = Feed::new(&clients);
        let mut conns = Vec::new();
        let mut writer_node = None;
        let doc_url = if per_doc { Some(t.url(&d.name)?) } else { None };
        let url_for = || match &doc_url {
            Some(u) => Ok(u.clone()),
            None => t.url(&d.name),
        };
        for w in d.writers {
            let url = url_for()?;
            let node = node_of(t, &url);
            writer_node.get_or_insert(node);
            conns.push((Some(w), d.record_writers, url, node));
        }
        for _ in 0..d.readers {
            let url = url_for()?;
            let node = node_of(t, &url);
            conns.push((None, true, url, node));
        }
        let mut futs = Vec::new();
        for (w, record, url, node) in conns {
            let other = writer_node.is_some_and(|wn| wn != node);
            let feed = Arc::clone(&feed);
            futs.push(async move {
                let (mut sink, mut stream) = connect(&url).await?;
                handshake(&mut sink, &mut stream, None).await?;
                anyhow::Ok(Prepared { sink, stream, feed, writer: w, record, other })
            });
        }
        for chunk in client::chunked(futs, 64) {
            for r in futures_util::future::join_all(chunk).await {
                let p = r?;
                if p.writer.is_some() {
                    ctl.writers_left.fetch_add(1, Ordering::SeqCst);
                }
                prepared.push(p);
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now() + Duration::from_millis(100);
    let mut handles = Vec::new();
    for p in prepared {
        let h = tokio::spawn(client::run_client(p.sink, p.stream, p.feed, p.writer, p.record, t0, warmup, ctl.clone()));
        handles.push((h, p.other));
    }
    while ctl.writers_left.load(Ordering::SeqCst) > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent_done = Instant::now();
    let ctl2 = ctl.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(drain).await;
        ctl2.drained.store(true, Ordering::SeqCst);
    });
    let mut res = LoadResult::new();
    let mut other = client::new_hist();
    let mut last_recv = sent_done;
    for (h, is_other) in handles {
        let r = h.await?;
        last_recv = last_recv.max(Instant::now());
        res.add(&r);
        if is_other {
            other.add(&r.cursor.hist).ok();
        }
    }
    timer.abort();
    res.secs = last_recv.duration_since(t0).as_secs_f64();
    res.errors = std::mem::take(&mut *ctl.errors.lock().unwrap());
    Ok((res, other))
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn text_of(doc: &Doc) -> String {
    let t = doc.get_or_insert_text("content");
    t.get_string(&doc.transact())
}

// ---------------------------------------------------------------- scenario 1

/// Scenario 1 with N = 16 and 128 readers: the writer replays automerge-paper at 50 updates/s for
/// 10 s; then the rest of the trace goes as one update and a fresh client must read endContent.
async fn fanout(seq: &Sequential, t: &Target, quick: bool, col: &str, res: &mut Results) {
    let multi = t.nodes.len() > 1;
    let count = seq.prefix.len();
    for n in [16usize, 128] {
        let name = format!("s1-n{n}");
        let docs = vec![DocLoad {
            name: name.clone(),
            readers: n,
            writers: vec![WriterCfg {
                client: traces::WRITER_CLIENT,
                source: Source::Plan(Arc::new(seq.prefix.clone())),
                interval: Duration::from_millis(20),
                count,
                phase: Duration::ZERO,
                precise: true,
            }],
            record_writers: false,
        }];
        let row = |m: &str| format!("1 fan-out N={n} {m} (ms)");
        let orow = |m: &str| format!("1 fan-out N={n} {m}, readers on other nodes (ms)");
        let warm = if quick { Duration::ZERO } else { Duration::from_secs(1) };
        let why = match run_spread(t, docs, Duration::from_secs(10), warm, false).await {
            Ok((r, other)) if r.ok() => match verify_end(seq, t, &name).await {
                Ok(()) => {
                    res.put(&row("p50"), col, Cell::V(ms(r.hist.value_at_quantile(0.5))));
                    res.put(&row("p99"), col, Cell::V(ms(r.hist.value_at_quantile(0.99))));
                    res.put(&row("max"), col, Cell::V(ms(r.hist.max())));
                    if multi {
                        res.put(&orow("p50"), col, Cell::V(ms(other.value_at_quantile(0.5))));
                        res.put(&orow("p99"), col, Cell::V(ms(other.value_at_quantile(0.99))));
                    }
                    None
                }
                Err(e) => Some(format!("final text wrong: {e:#}")),
            },
            Ok((r, _)) => Some(r.why()),
            Err(e) => Some(format!("{e:#}")),
        };
        if let Some(why) = why {
            for m in ["p50", "p99", "max"] {
                res.put(&row(m), col, Cell::Fail(why.clone()));
            }
        }
    }
}

/// Connects, syncs, sends one update and waits for the node to echo an update back.
async fn push(t: &Target, doc: &str, update: &[u8]) -> Result<()> {
    let (mut sink, mut stream) = connect(&t.url(doc)?).await?;
    handshake(&mut sink, &mut stream, None).await?;
    send(&mut sink, proto::update(update)).await?;
    loop {
        let f = next_frame(&mut stream, Duration::from_secs(60)).await?;
        if let Msg::Update(_) = proto::decode(&f) {
            break;
        }
    }
    let _ = sink.close().await;
    Ok(())
}

/// The rest of the trace through one node; a fresh client on the next node must read endContent.
async fn verify_end(seq: &Sequential, t: &Target, name: &str) -> Result<()> {
    push(t, name, &seq.rest).await.context("sending the rest of the trace")?;
    let (mut sink, mut stream) = connect(&t.url(name)?).await?;
    let doc = Doc::new();
    handshake(&mut sink, &mut stream, Some(&doc)).await?;
    let want = seq.end_content.chars().count();
    let t0 = Instant::now();
    while text_of(&doc).chars().count() < want {
        let f = next_frame(&mut stream, Duration::from_secs(30).saturating_sub(t0.elapsed())).await?;
        if let Msg::Update(u) | Msg::Step2(u) = proto::decode(&f) {
            doc.transact_mut().apply_update(Update::decode_v1(u)?)?;
        }
    }
    let _ = sink.close().await;
    let got = text_of(&doc);
    if got != seq.end_content {
        bail!("{} chars, endContent has {want}", got.chars().count());
    }
    Ok(())
}

// ---------------------------------------------------------------- scenario 3

/// Scenario 3: 200 documents x 4 clients, each appending one character at `rate` updates/s for 4 s;
/// the highest total rate with p99 < 50 ms and nothing lost. Above 6,400/s the steps are 1.33x to
/// 1.5x apart (the main bench doubles), up to 38,400/s.
async fn throughput(t: &Target, quick: bool, per_doc: bool, cpu: &CpuParts, col: &str, res: &mut Results) {
    let (ndocs, secs, rates): (usize, usize, &[u32]) =
        if quick { (20, 2, &[2, 8]) } else { (200, 4, &[2, 4, 8, 12, 16, 24, 32, 48]) };
    let clients_per_doc = 4;
    let mut best: Option<(f64, f64)> = None;
    // CPU time on CPU 1 per update at the step every column holds (8 updates/s per client).
    let mut cpu_at_8: Option<(f64, f64)> = None;
    let mut notes = Vec::new();
    for &rate in rates {
        let total_clients = ndocs * clients_per_doc;
        let docs = crate::scenarios::s3_plan(rate, ndocs, clients_per_doc, secs);
        let total = (rate as usize * total_clients) as f64;
        let gen0 = crate::scenarios::self_cpu_secs();
        let cpu0 = cpu.sample();
        let wall0 = std::time::Instant::now();
        let warm = if quick { Duration::ZERO } else { Duration::from_secs(1) };
        let r = run_spread(t, docs, Duration::from_secs(5), warm, per_doc).await;
        let wall = wall0.elapsed().as_secs_f64();
        let gen = crate::scenarios::self_cpu_secs() - gen0;
        let used: Vec<f64> = cpu.sample().iter().zip(&cpu0).map(|(a, b)| a - b).collect();
        let on_cpu1: f64 = used.iter().sum();
        let parts: Vec<String> = cpu.0.iter().zip(&used).map(|((l, _), u)| format!("{l} {u:.1}s")).collect();
        match r {
            Ok((r, _)) => {
                let p99 = ms(r.hist.value_at_quantile(0.99));
                notes.push(format!(
                    "{total:.0}/s: p99 {p99:.1} ms, {} {}; CPU generator {gen:.1}s, CPU 1: {} = {on_cpu1:.1}s in {wall:.1}s",
                    r.deliveries,
                    if r.ok() { "delivered" } else { "FAILED" },
                    parts.join(", ")
                ));
                if rate == 8 && r.ok() {
                    cpu_at_8 = Some((total, on_cpu1 * 1e6 / (total * secs as f64)));
                }
                if crate::scenarios::step_held(&r, p99, &mut notes) {
                    best = Some((total, p99));
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
    let row = "3 throughput: highest updates/s held, 200 docs x 4 (higher)";
    match best {
        Some((b, p99)) => {
            res.put(row, col, Cell::Vh(b));
            res.put("3 throughput: p99 at that rate (ms)", col, Cell::V(p99));
            if b >= (*rates.last().unwrap() as usize * ndocs * clients_per_doc) as f64 {
                notes.push(format!("held the highest step offered ({b:.0}/s): the limit is higher"));
            }
        }
        None => res.put(row, col, Cell::Fail(notes.last().cloned().unwrap_or_default())),
    }
    if let Some((total, us)) = cpu_at_8 {
        res.put(&format!("3 throughput: CPU 1 time per update at {total:.0}/s (µs)"), col, Cell::V(us));
    }
    res.note(format!("scenario 3 / {col}: {}", notes.join("; ")));
}

// ---------------------------------------------------------------- the run

fn put_probe(res: &mut Results, col: &str, what: &str, h: &Histogram<u64>) {
    res.put("0 durability point: one 100 B append, p50 (ms)", col, Cell::V(ms(h.value_at_quantile(0.5))));
    res.put("0 durability point: one 100 B append, p99 (ms)", col, Cell::V(ms(h.value_at_quantile(0.99))));
    res.note(format!(
        "durability probe / {col}: {what}, one every ms for {} s from CPU 0 ({} samples): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        PROBE.as_secs(),
        h.len(),
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    ));
    res.put("0 durability point: one 100 B append, max (ms)", col, Cell::V(ms(h.max())));
}

/// Runs a bounded scenario; a hang is reported and the run goes on.
async fn bounded(res: &mut Results, what: &str, secs: u64, f: impl std::future::Future<Output = ()>) {
    eprintln!("   {what}");
    if tokio::time::timeout(Duration::from_secs(secs), f).await.is_err() {
        res.note(format!("FAIL {what}: did not finish within {secs} s"));
        res.timeouts += 1;
    }
}

/// Scenarios 1 and 3 against one column's target, each bounded in time.
async fn scenarios(
    res: &mut Results,
    seq: &Sequential,
    t: &Target,
    quick: bool,
    per_doc: bool,
    cpu: &CpuParts,
    col: &str,
) {
    if !per_doc {
        let mut r = Results::default();
        bounded(res, &format!("scenario 1 / {col}"), 120, fanout(seq, t, quick, col, &mut r)).await;
        res.merge(r);
    }
    let mut r = Results::default();
    bounded(res, &format!("scenario 3 / {col}"), 180, throughput(t, quick, per_doc, cpu, col, &mut r)).await;
    res.merge(r);
}

pub fn run() -> Result<()> {
    let t_start = std::time::Instant::now();
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let (server_cpu, pin) = crate::pinning();
    let fds = crate::raise_fd_limit();
    let root = crate::repo_root();
    let bins = Bins {
        commonpad: crate::commonpad_bin(&root, true)?,
        node_server: None,
        ysweet: None,
        me: std::env::current_exe()?,
        server_cpu,
    };
    let work = root.join("target/bench-cluster");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let cpu1 = match server_cpu {
        Some(c) => format!("every node, redis-server and postgres together on CPU {c} (taskset -c {c})"),
        None => "no pinning".into(),
    };
    println!("{pin}; cluster: {cpu1}; fd limit {fds}; load average before: {}", crate::loadavg());
    let version = |c: &mut Command| {
        c.output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default()
    };
    let pgbin = pg_bin()?;
    for v in [
        format!("commonpad: {}", version(Command::new(&bins.commonpad).arg("--version"))),
        format!("redis-server: {}", version(Command::new("redis-server").arg("--version"))),
        format!("postgres: {}", version(Command::new(pgbin.join("postgres")).arg("--version"))),
        format!("rustc: {}", version(Command::new("rustc").arg("--version"))),
        format!(
            "kernel: {}, {} CPUs",
            version(Command::new("uname").arg("-r")),
            version(Command::new("nproc").arg("--all"))
        ),
    ] {
        println!("version: {v}");
    }
    let seq = traces::automerge_paper(if quick { 50 } else { 500 })?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut res = Results::default();
    // The table's row order (rows first filled by a later column would otherwise come last).
    for m in ["p50", "p99", "max"] {
        res.rows.push(format!("0 durability point: one 100 B append, {m} (ms)"));
    }
    for n in [16, 128] {
        for m in ["p50", "p99", "max"] {
            res.rows.push(format!("1 fan-out N={n} {m} (ms)"));
        }
        for m in ["p50", "p99"] {
            res.rows.push(format!("1 fan-out N={n} {m}, readers on other nodes (ms)"));
        }
    }

    // The reference: one node on its disk store, fsync on.
    {
        let col = COLS[0];
        eprintln!("== {col} (at {:.0}s)", t_start.elapsed().as_secs_f64());
        put_probe(&mut res, col, "write + fdatasync of a file in target/bench-cluster", &probe_fsync(&work)?);
        let mut server = Server::start(Kind::CommonPad { fsync: true }, &bins, &work)?;
        let t = server.target.clone();
        let cpu = CpuParts(vec![("server", vec![server.pid() as i32])]);
        measured(&rt, &mut res, &seq, &t, quick, false, &cpu, col);
        if let Some(how) = server.exited() {
            res.note(format!("{col}: the server ended on its own: {how}"));
        }
        server.stop();
        if let Some(p) = log_problems(&work.join("commonpad.log")) {
            res.note(format!("{col} log: {p}"));
        }
    }

    let redis = Redis::start(&work.join("redis"), server_cpu)?;
    let pg = Postgres::start(&work.join("pg"), server_cpu)?;
    println!(
        "started redis-server pid {} on port {}, postgres pid {} on port {}",
        redis.proc.pid(),
        redis.port,
        pg.proc.pid(),
        pg.port
    );
    let configs = [
        (1usize, "always", false),
        (1, "everysec", false),
        (2, "always", false),
        (3, "always", false),
        (3, "always", true),
    ];
    for (i, (n, fsync, per_doc)) in configs.into_iter().enumerate() {
        let col = COLS[i + 1];
        eprintln!("== {col} (at {:.0}s)", t_start.elapsed().as_secs_f64());
        reset(&redis, &pg, fsync)?;
        let what = format!("XADD round trip, appendfsync {fsync}");
        put_probe(&mut res, col, &what, &redis.probe_xadd()?);
        let tag = format!("n{n}-{fsync}{}", if per_doc { "-hashed" } else { "" });
        let (mut nodes, addrs) = match start_nodes(n, &bins, &redis, &pg, &work, &tag) {
            Ok(x) => x,
            Err(e) => {
                res.note(format!("FAIL {col}: {e:#}"));
                res.timeouts += 1;
                continue;
            }
        };
        println!(
            "{col}: nodes {}",
            nodes.iter().zip(&addrs).map(|(p, a)| format!("pid {} on {a}", p.pid())).collect::<Vec<_>>().join(", ")
        );
        let t = Target::spread(Kind::CommonPad { fsync: true }, addrs);
        let cpu = CpuParts(vec![
            ("nodes", nodes.iter().map(Proc::pid).collect()),
            ("redis", vec![redis.proc.pid()]),
            ("postgres", vec![pg.proc.pid()]),
        ]);
        measured(&rt, &mut res, &seq, &t, quick, per_doc, &cpu, col);
        res.note(format!(
            "redis / {col}: xadd {}; xread {}; aof_delayed_fsync {}",
            redis.info_line("commandstats", "cmdstat_xadd"),
            redis.info_line("commandstats", "cmdstat_xread"),
            redis.info_line("persistence", "aof_delayed_fsync"),
        ));
        for p in nodes.iter_mut() {
            if let Some(how) = p.exited() {
                res.note(format!("FAIL {col}: {} ended on its own: {how}", p.name));
                res.timeouts += 1;
            }
            let how = p.stop();
            eprintln!("stopped {} ({how})", p.name);
            if let Some(problems) = log_problems(&p.log) {
                res.note(format!("{} log: {problems}", p.name));
            }
        }
    }
    let _ = redis.cmd(&["CONFIG", "SET", "appendfsync", "always"]);
    drop(pg);
    drop(redis);

    println!();
    print!("{}", table(&res));
    println!();
    for n in &res.notes {
        println!("- {n}");
    }
    println!("load average after: {}; total {:.0}s", crate::loadavg(), t_start.elapsed().as_secs_f64());
    let fails = res.failures();
    if fails > 0 {
        println!("{fails} checks failed");
        std::process::exit(1);
    }
    Ok(())
}

fn table(res: &Results) -> String {
    let fmt = |v: f64| {
        if v >= 1000.0 {
            format!("{v:.0}")
        } else if v >= 10.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.2}")
        }
    };
    let mut out = format!("| scenario / metric | {} |\n|---|{}\n", COLS.join(" | "), "---|".repeat(COLS.len()));
    for row in &res.rows {
        let base = match res.cells.get(&(row.clone(), COLS[0].to_owned())) {
            Some(Cell::V(v)) | Some(Cell::Vh(v)) => Some(*v),
            _ => None,
        };
        out.push_str(&format!("| {row} |"));
        for col in COLS {
            let s = match res.cells.get(&(row.clone(), col.to_owned())) {
                None => "-".to_owned(),
                Some(Cell::Fail(_)) => "FAIL".to_owned(),
                Some(Cell::V(v)) | Some(Cell::Vh(v)) => match base {
                    Some(b) if col != COLS[0] && b != 0.0 => format!("{} ({:.2}x)", fmt(*v), v / b),
                    _ => fmt(*v),
                },
            };
            out.push_str(&format!(" {s} |"));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "\nIn brackets: that figure / the \"{}\" one (one node on its disk store, fsync on).\n",
        COLS[0]
    ));
    out
}
