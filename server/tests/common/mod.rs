//! A small y-websocket client on tokio-tungstenite + yrs, and helpers to start the server, shared
//! by the integration tests. It speaks the protocol as y-websocket's provider does: answers the
//! server's SyncStep1, sends its own, applies what comes back.
#![allow(dead_code)]

pub mod trace;

use commonpad_core::room::RoomConfig;
use commonpad_core::store::disk::DiskStore;
use commonpad_core::store::Store;
use commonpad_core::sync::protocol::{self, Message as M};
use commonpad_server::server::{self, Config, Running};
use commonpad_server::sessions::keys::{self, ServerKey};
use commonpad_server::sessions::Sessions;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const STEP: Duration = Duration::from_secs(10);

/// Open mode (no tokens), a short unload grace.
pub fn test_config() -> Config {
    Config {
        room: RoomConfig { unload_grace: Duration::from_millis(200), ..RoomConfig::default() },
        open: true,
        ..Config::default()
    }
}

pub const ADMIN: &str = "test-admin-token-0123456789";

pub async fn start_with(dir: &std::path::Path, config: Config) -> Running {
    let store: Arc<dyn Store> = Arc::new(DiskStore::open(dir).expect("open store"));
    start_at(dir, store, config).await
}

pub async fn start_store(store: Arc<dyn Store>, config: Config) -> Running {
    // Session records and keys in a directory of their own that lives as long as the process.
    let dir = tempfile::tempdir().expect("tempdir").keep();
    start_at(&dir, store, config).await
}

async fn start_at(dir: &std::path::Path, store: Arc<dyn Store>, config: Config) -> Running {
    let key = ServerKey::load_or_create(dir).expect("server key");
    let sessions = Arc::new(Sessions::open(dir, key).expect("sessions"));
    let (admin, _) = keys::admin_token(dir, Some(ADMIN.to_owned())).expect("admin token");
    server::start("127.0.0.1:0".parse().unwrap(), config, store, sessions, admin).await.expect("start server")
}

pub async fn raw_connect(addr: SocketAddr, doc: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/sync/{doc}")).await.expect("connect");
    ws
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Closed {
    Code(u16, String),
    NoFrame,
}

pub struct Client {
    pub ws: Ws,
    pub doc: Doc,
    pub synced: bool,
    pub closed: Option<Closed>,
    /// Raw awareness updates received, in order.
    pub awareness: Vec<Vec<u8>>,
    /// Every update frame received (`[0,2,u]`), raw.
    pub updates_received: Vec<Vec<u8>>,
}

impl Client {
    pub async fn connect(addr: SocketAddr, name: &str) -> Client {
        Self::connect_with(addr, name, Doc::new()).await
    }

    /// Connects and waits until synced (the server answered our SyncStep1).
    pub async fn connect_with(addr: SocketAddr, name: &str, doc: Doc) -> Client {
        let ws = raw_connect(addr, name).await;
        let mut c = Client { doc, ..Client::over(ws) };
        let sv = c.doc.transact().state_vector().encode_v1();
        c.send_raw(protocol::encode_sync_step1(&sv)).await;
        c.pump_until(|c| c.synced, STEP).await;
        assert!(c.synced, "client did not sync within {STEP:?}");
        c
    }

    /// A client around a socket that has not synced yet.
    pub fn over(ws: Ws) -> Client {
        Client { ws, doc: Doc::new(), synced: false, closed: None, awareness: vec![], updates_received: vec![] }
    }

    pub async fn send_raw(&mut self, frame: Vec<u8>) {
        let _ = self.ws.send(Message::binary(frame)).await;
    }

    /// Sends a local update the way y-websocket does (`[0,2,update]`).
    pub async fn send_update(&mut self, update: &[u8]) {
        self.send_raw(protocol::encode_update(update)).await;
    }

    /// Inserts text locally and sends the resulting update; returns the update.
    pub async fn insert_text(&mut self, field: &str, index: u32, s: &str) -> Vec<u8> {
        let before = self.doc.transact().state_vector();
        {
            let text = self.doc.get_or_insert_text(field);
            let mut txn = self.doc.transact_mut();
            text.insert(&mut txn, index, s);
        }
        let update = self.doc.transact().encode_state_as_update_v1(&before);
        self.send_update(&update).await;
        update
    }

    pub fn text(&self, field: &str) -> String {
        let text = self.doc.get_or_insert_text(field);
        let s = text.get_string(&self.doc.transact());
        s
    }

    /// The length of a text in UTF-8 bytes without building the string (O(1) in yrs), for
    /// predicates checked after every frame of a large document.
    pub fn text_len(&self, field: &str) -> usize {
        let text = self.doc.get_or_insert_text(field);
        let len = text.len(&self.doc.transact());
        len as usize
    }

    /// Handles one incoming frame; false once the connection is closed.
    pub async fn pump_one(&mut self, timeout: Duration) -> bool {
        let next = match tokio::time::timeout(timeout, self.ws.next()).await {
            Err(_) => return true,
            Ok(n) => n,
        };
        match next {
            None | Some(Err(_)) => {
                self.closed.get_or_insert(Closed::NoFrame);
                false
            }
            Some(Ok(Message::Close(frame))) => {
                let c = frame.map_or(Closed::NoFrame, |f| Closed::Code(u16::from(f.code), f.reason.to_string()));
                self.closed = Some(c);
                false
            }
            Some(Ok(Message::Binary(b))) => {
                self.handle(&b).await;
                true
            }
            Some(Ok(_)) => true,
        }
    }

    async fn handle(&mut self, frame: &[u8]) {
        match protocol::decode_message(frame).expect("server sent a malformed message") {
            M::SyncStep1 { state_vector } => {
                let sv = StateVector::decode_v1(state_vector).expect("server state vector");
                let diff = self.doc.transact().encode_state_as_update_v1(&sv);
                self.send_raw(protocol::encode_sync_step2(&diff)).await;
            }
            M::SyncStep2 { update } => {
                self.apply(update);
                self.synced = true;
            }
            M::Update { update } => {
                self.updates_received.push(update.to_vec());
                self.apply(update);
            }
            M::Awareness { update } => self.awareness.push(update.to_vec()),
            _ => {}
        }
    }

    fn apply(&mut self, update: &[u8]) {
        let u = Update::decode_v1(update).expect("server sent an undecodable update");
        self.doc.transact_mut().apply_update(u).expect("apply");
    }

    /// Pumps frames until `done` holds, the connection closes, or `timeout` passes.
    pub async fn pump_until(&mut self, done: impl Fn(&Client) -> bool, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(self) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || !self.pump_one(left.min(Duration::from_millis(100))).await {
                return done(self);
            }
        }
        true
    }

    /// Waits for the server to close this connection; returns how.
    pub async fn expect_closed(&mut self) -> Closed {
        self.pump_until(|c| c.closed.is_some(), STEP).await;
        self.closed.clone().expect("server did not close the connection")
    }

    pub fn state(&self) -> Vec<u8> {
        let s = self.doc.transact().encode_state_as_update_v1(&StateVector::default());
        s
    }
}

/// Connects without tungstenite's message and frame size limits (a multi-megabyte document arrives
/// as one SyncStep2 frame, larger than tungstenite's 16 MiB default frame limit).
pub async fn raw_connect_unlimited(addr: SocketAddr, doc: &str) -> Ws {
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    let config = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(format!("ws://{addr}/sync/{doc}"), Some(config), false)
        .await
        .expect("connect");
    ws
}

impl Client {
    /// Syncs `doc` over an open socket as `connect_with` does, but hands the doc back instead of
    /// panicking when the server closes the connection (or it does not sync within `timeout`).
    pub async fn try_sync_over(ws: Ws, doc: Doc, timeout: Duration) -> Result<Client, (Option<Closed>, Doc)> {
        let mut c = Client { doc, ..Client::over(ws) };
        let sv = c.doc.transact().state_vector().encode_v1();
        c.send_raw(protocol::encode_sync_step1(&sv)).await;
        if c.pump_until(|c| c.synced, timeout).await {
            Ok(c)
        } else {
            let Client { doc, closed, .. } = c;
            Err((closed, doc))
        }
    }

    /// `connect_with` that tolerates a refused connection (see `try_sync_over`).
    pub async fn try_connect_with(addr: SocketAddr, name: &str, doc: Doc) -> Result<Client, (Option<Closed>, Doc)> {
        match tokio_tungstenite::connect_async(format!("ws://{addr}/sync/{name}")).await {
            Ok((ws, _)) => Self::try_sync_over(ws, doc, STEP).await,
            Err(_) => Err((None, doc)),
        }
    }

    /// Keeps trying `try_connect_with` (e.g. while a failed room unloads) until it syncs or `within`
    /// passes.
    pub async fn connect_retrying(addr: SocketAddr, name: &str, mut doc: Doc, within: Duration) -> Client {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match Self::try_connect_with(addr, name, doc).await {
                Ok(c) => return c,
                Err((closed, d)) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "could not sync {name} within {within:?}; last close: {closed:?}"
                    );
                    doc = d;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// The HTTP status a WebSocket upgrade of `path` gets: 101 when it opens.
pub async fn ws_status(addr: SocketAddr, path: &str) -> u16 {
    match tokio_tungstenite::connect_async(format!("ws://{addr}{path}")).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("{path}: {e}"),
    }
}

/// Reads the close code of a raw connection after sending it something.
pub async fn close_code_after(ws: &mut Ws) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + STEP;
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => return Some(u16::from(f.code)),
            Ok(Some(Ok(Message::Close(None)))) | Ok(None) | Ok(Some(Err(_))) => return None,
            _ => {}
        }
    }
    None
}

/// A response from [`http`].
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A minimal HTTP/1.1 client (one request per connection), enough for the API tests.
pub async fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> HttpResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut raw)).await.expect("response timed out").expect("read");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("no header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))).collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        body = dechunk(&body);
    }
    HttpResponse { status, headers, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = b.windows(2).position(|w| w == b"\r\n") {
        let len = usize::from_str_radix(String::from_utf8_lossy(&b[..pos]).trim(), 16).unwrap_or(0);
        if len == 0 {
            break;
        }
        out.extend_from_slice(&b[pos + 2..pos + 2 + len]);
        b = &b[pos + 2 + len + 2..];
    }
    out
}

/// Creates a session as the admin; returns (id, edit token, view token).
pub async fn create_session(addr: SocketAddr, title: &str) -> (String, String, String) {
    let body = serde_json::json!({ "title": title, "event": "Test workshop" }).to_string();
    let resp = http(addr, "POST", "/api/sessions", Some(ADMIN), body.as_bytes()).await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let v = resp.json();
    let token = |url: &str, key: &str| url.split(&format!("#{key}=")).nth(1).expect("token in link").to_owned();
    let id = v["id"].as_str().expect("id").to_owned();
    (id, token(v["edit_url"].as_str().unwrap(), "edit"), token(v["view_url"].as_str().unwrap(), "view"))
}

/// Connects with a token (`/sync/{doc}?token=`) and syncs.
pub async fn connect_token(addr: SocketAddr, doc: &str, token: &str) -> Client {
    Client::connect(addr, &format!("{doc}?token={token}")).await
}

/// The text of field `field` after applying a load's snapshot and updates.
pub fn text_of_loaded(loaded: &commonpad_core::store::Loaded, field: &str) -> String {
    let doc = loaded.to_doc("test").expect("stored updates apply");
    let text = doc.get_or_insert_text(field);
    let s = text.get_string(&doc.transact());
    s
}
