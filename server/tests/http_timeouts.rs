//! What a client can hold before its WebSocket is open (issue 11, item 1), against the real binary:
//! headers must arrive in time, idle keep-alive connections are closed, an upgraded socket must
//! ask to sync, connections not yet upgraded are capped per address, and `/healthz` answers while
//! a thousand half-sent requests are held by a process started with only 256 descriptors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_commonpad");

struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `commonpad serve --open` with `args`, its soft descriptor limit lowered to `nofile`.
fn serve(args: &[&str], nofile: u64) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--open", "--addr", "127.0.0.1:0", "--admin-token", "test-admin-token-0123456789", "--data"])
        .arg(dir.path().join("data"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls (getrlimit, setrlimit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            lim.rlim_cur = nofile.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{line:?}")).to_owned();
    Server { child, addr, _dir: dir }
}

/// This test process holds a thousand sockets itself: make room for them (up to the hard limit).
fn raise_own_descriptor_limit(want: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// A socket that sent three header lines of an upgrade request, and nothing more.
fn half_request(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /sync/x HTTP/1.1\r\nHost: pad\r\nUpgrade: websocket\r\n").unwrap();
    s
}

/// Whether the server closed `s` within `within` (end of file, or a reset).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a 408 or the like, then the close
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// `GET path` on a new connection; the status, or None if no answer came within 5 s.
fn get(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: pad\r\nConnection: close\r\n\r\n").ok()?;
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn healthz_answers_while_hundreds_of_half_sent_requests_are_held_and_they_are_cut() {
    raise_own_descriptor_limit(4096);
    let server = serve(&["--header-timeout-ms", "3000"], 256);
    let mut held: Vec<TcpStream> = (0..1000).map(|_| half_request(&server.addr)).collect();
    let started = Instant::now();
    assert_eq!(get(&server.addr, "/healthz"), Some(200), "/healthz with 1,000 half-sent requests held");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Every one of them is closed once its headers are late.
    for (i, s) in held.iter_mut().enumerate().step_by(37) {
        assert!(closed_within(s, Duration::from_secs(5)), "half-sent request {i} still open");
    }
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let server = serve(&["--header-timeout-ms", "1000"], 4096);
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: pad\r\n\r\n").unwrap();
    let mut buf = [0u8; 1024];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut s, Duration::from_secs(5)), "an idle keep-alive connection stayed open");
}

#[test]
fn an_upgraded_socket_that_never_asks_to_sync_is_closed() {
    let server = serve(&["--first-sync-timeout-ms", "1000"], 4096);
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.write_all(
        b"GET /sync/quiet HTTP/1.1\r\nHost: pad\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    assert!(closed_within(&mut s, Duration::from_secs(6)), "a socket that never synced was kept");
}

#[test]
fn connections_not_yet_upgraded_are_capped_per_address() {
    let server = serve(&["--max-pending-connections-per-ip", "20", "--header-timeout-ms", "3000"], 4096);
    let _held: Vec<TcpStream> = (0..20).map(|_| half_request(&server.addr)).collect();
    let mut extra = half_request(&server.addr);
    assert!(closed_within(&mut extra, Duration::from_secs(2)), "the 21st connection from one address was kept");
    // Once the held ones are cut, the address gets in again, and the refusal was counted.
    std::thread::sleep(Duration::from_millis(3500));
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: pad\r\nConnection: close\r\n\r\n").unwrap();
    let mut metrics = String::new();
    let _ = s.read_to_string(&mut metrics);
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("commonpad_rejected_total{reason=\"http_connection_limit\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(refused.is_some_and(|n| n >= 1), "refusal not counted: {refused:?}");
}
