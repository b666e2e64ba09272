//! Starting, addressing and stopping the servers under test. Every process is started by us, pinned
//! with `taskset`, and stopped by its PID (SIGTERM, then SIGKILL after 5 s).

use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// CommonPad's per-client limits raised out of the way (docs/security.md has the defaults).
pub const UNLIMITED: [&str; 14] = [
    "--max-pending-connections-per-ip",
    "20000",
    "--max-connections-per-ip-per-doc",
    "20000",
    "--updates-burst",
    "1000000",
    "--updates-per-second",
    "1000000",
    "--open-creations-burst",
    "100000",
    "--sync-requests-burst",
    "1000",
    "--max-doc-bytes",
    "1073741824",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    CommonPad { fsync: bool },
    Node,
    YSweet,
    Relay,
}

impl Kind {
    pub fn label(&self) -> &'static str {
        match self {
            Kind::CommonPad { fsync: true } => "commonpad",
            Kind::CommonPad { fsync: false } => "commonpad-nofsync",
            Kind::Node => "node-y-websocket",
            Kind::YSweet => "y-sweet",
            Kind::Relay => "floor:relay",
        }
    }
    /// Keeps documents (answers sync step 1, survives a restart).
    pub fn stateful(&self) -> bool {
        !matches!(self, Kind::Relay)
    }
}

/// How to address a server: the per-server URL adapter.
#[derive(Clone)]
pub struct Target {
    pub kind: Kind,
    pub addr: SocketAddr,
    /// Cluster mode (`commonpad-bench cluster`): every node's address; `url()` hands them out in
    /// turn, so each new connection goes to the next node. Empty: always `addr`.
    pub nodes: Vec<SocketAddr>,
    next_node: Arc<AtomicUsize>,
    created: Arc<Mutex<HashSet<String>>>,
}

impl Target {
    pub fn new(kind: Kind, addr: SocketAddr) -> Self {
        Target { kind, addr, nodes: Vec::new(), next_node: Arc::default(), created: Arc::default() }
    }

    /// Several CommonPad nodes serving the same documents: connections round-robin over them.
    pub fn spread(kind: Kind, nodes: Vec<SocketAddr>) -> Self {
        let first = nodes[0];
        Target { nodes, ..Target::new(kind, first) }
    }

    /// The WebSocket URL of a document. y-sweet: `POST /doc/new {"docId":..}` first (once per name).
    pub fn url(&self, doc: &str) -> Result<String> {
        Ok(match self.kind {
            Kind::CommonPad { .. } if !self.nodes.is_empty() => {
                let i = self.next_node.fetch_add(1, Ordering::Relaxed) % self.nodes.len();
                format!("ws://{}/sync/{doc}", self.nodes[i])
            }
            Kind::CommonPad { .. } => format!("ws://{}/sync/{doc}", self.addr),
            Kind::Node | Kind::Relay => format!("ws://{}/{doc}", self.addr),
            Kind::YSweet => {
                let fresh = self.created.lock().unwrap().insert(doc.to_owned());
                if fresh {
                    let body = format!("{{\"docId\":\"{doc}\"}}");
                    let resp = http_post(self.addr, "/doc/new", &body)?;
                    if !resp.starts_with("HTTP/1.1 200") {
                        bail!("y-sweet /doc/new: {}", resp.lines().next().unwrap_or(""));
                    }
                }
                format!("ws://{}/d/{doc}/ws/{doc}", self.addr)
            }
        })
    }

    /// The URL without any setup call: for documents that already exist (cold load after restart).
    pub fn url_existing(&self, doc: &str) -> String {
        match self.kind {
            Kind::YSweet => format!("ws://{}/d/{doc}/ws/{doc}", self.addr),
            _ => self.url(doc).expect("no setup call for this kind"),
        }
    }
}

fn http_post(addr: SocketAddr, path: &str, body: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Where the binaries and packages of each server live.
#[derive(Clone)]
pub struct Bins {
    pub commonpad: PathBuf,
    pub node_server: Option<PathBuf>,
    pub ysweet: Option<PathBuf>,
    pub me: PathBuf,
    pub server_cpu: Option<usize>,
}

pub struct Server {
    pub target: Target,
    pub data: PathBuf,
    child: Option<Child>,
    bins: Bins,
    log: PathBuf,
}

impl Server {
    pub fn start(kind: Kind, bins: &Bins, workdir: &Path) -> Result<Server> {
        let port = free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let data = workdir.join(format!("data-{}", kind.label()));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data)?;
        let log = workdir.join(format!("{}.log", kind.label()));
        let mut s = Server { target: Target::new(kind, addr), data, child: None, bins: bins.clone(), log };
        s.spawn()?;
        Ok(s)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    fn spawn(&mut self) -> Result<()> {
        let addr = self.target.addr;
        let mut cmd = match self.bins.server_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string());
                c
            }
            None => Command::new("env"),
        };
        // BENCH_WRAP="valgrind --tool=callgrind ..." runs the server under a profiler (CommonPad only).
        let wrap = std::env::var("BENCH_WRAP").ok().filter(|_| matches!(self.target.kind, Kind::CommonPad { .. }));
        for w in wrap.iter().flat_map(|w| w.split_whitespace()) {
            cmd.arg(w);
        }
        match self.target.kind {
            Kind::CommonPad { fsync } => {
                cmd.arg(&self.bins.commonpad)
                    .arg("serve")
                    .arg("--open")
                    .arg("--addr")
                    .arg(addr.to_string())
                    .arg("--data")
                    .arg(&self.data)
                    .arg("--max-connections")
                    .arg("20000")
                    // The benchmark measures the engine, not the limits a public server sets on
                    // one client: every scenario's load comes from one address, as fast as it can.
                    .args(crate::servers::UNLIMITED);
                if !fsync {
                    cmd.arg("--no-fsync");
                }
                cmd.env("COMMONPAD_LOG", "warn");
            }
            Kind::Node => {
                cmd.arg("node")
                    .arg(self.bins.node_server.as_ref().context("node server not installed")?)
                    .env("HOST", "127.0.0.1")
                    .env("PORT", addr.port().to_string())
                    .env("YPERSISTENCE", &self.data);
            }
            Kind::YSweet => {
                cmd.arg(self.bins.ysweet.as_ref().context("y-sweet not installed")?)
                    .arg("serve")
                    .arg(&self.data)
                    .arg("--host")
                    .arg("127.0.0.1")
                    .arg("--port")
                    .arg(addr.port().to_string())
                    .env("RUST_LOG", "warn");
            }
            Kind::Relay => {
                cmd.arg(&self.bins.me).arg("relay").arg(addr.to_string());
            }
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        // If the runner dies (Ctrl-C, timeout), the server gets SIGTERM too.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let child = cmd.spawn().with_context(|| format!("starting {}", self.target.kind.label()))?;
        self.child = Some(child);
        // Ready when the port accepts connections.
        let t0 = Instant::now();
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait()? {
                bail!("{} exited at start ({st}); see {}", self.target.kind.label(), self.log.display());
            }
            if t0.elapsed() > Duration::from_secs(120) {
                bail!("{} did not listen within 120 s; see {}", self.target.kind.label(), self.log.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process by its PID: SIGTERM, then SIGKILL after 5 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as libc::pid_t;
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let t0 = Instant::now();
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                if t0.elapsed() > Duration::from_secs(5) {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    let _ = child.wait();
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// If the process has ended on its own: how.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(st)) => Some(format!("{st}")),
            _ => None,
        }
    }

    /// Stops and starts again on the same port and data directory.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }

    /// Resident memory in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let st = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        st.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// User+system CPU seconds the process has used so far.
    pub fn cpu_secs(&self) -> f64 {
        let st = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let after = st.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let u: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let s: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        (u + s) / ticks
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
