//! Secrets outside the server's own files (issue 11, item 13): a generated admin token never goes
//! to the log stream, a token can come from a file, and one given on the command line (visible to
//! every user in the process list) is warned about.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_commonpad");

/// Starts `commonpad serve` on a free port; returns the child and its address once it listens.
fn serve(args: &[&str], data: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(args)
        .env_remove("COMMONPAD_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start commonpad");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{line:?}")).to_owned();
    (child, addr)
}

/// Stops the child with SIGTERM and returns everything it wrote (stdout, stderr).
fn stop(mut child: Child) -> (String, String) {
    unsafe_kill(child.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let (mut out, mut err) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (out, err)
}

fn unsafe_kill(pid: u32) {
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

/// POST /api/sessions with `token`; the status code.
fn create(addr: &str, token: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let body = br#"{"title":"t"}"#;
    write!(
        s,
        "POST /api/sessions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn a_generated_admin_token_stays_out_of_the_log_stream() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (child, addr) = serve(&[], &data);
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_owned();
    assert!(token.len() >= 16);
    assert_eq!(create(&addr, &token), 201, "the generated token works");
    let (out, err) = stop(child);
    assert!(!err.contains(&token), "the admin token was written to the log stream (stderr):\n{err}");
    assert!(!out.contains(&token), "the admin token was written to stdout:\n{out}");
    assert!(err.contains("admin.token"), "the log says where the token is:\n{err}");
}

#[test]
fn the_admin_token_can_come_from_a_file_and_the_command_line_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "from-a-file-0123456789\n").unwrap();
    let (child, addr) = serve(&["--admin-token-file", file.to_str().unwrap()], &dir.path().join("a"));
    assert_eq!(create(&addr, "from-a-file-0123456789"), 201);
    assert_eq!(create(&addr, "something-else-0123456789"), 403);
    let (_, err) = stop(child);
    assert!(!err.contains("process list"), "no warning for a file:\n{err}");

    let (child, addr) = serve(&["--admin-token", "on-the-command-line-0123"], &dir.path().join("b"));
    assert_eq!(create(&addr, "on-the-command-line-0123"), 201);
    let (_, err) = stop(child);
    assert!(err.contains("process list"), "a token on the command line is warned about:\n{err}");
    assert!(!err.contains("on-the-command-line-0123"), "the warning does not repeat the token:\n{err}");
}
