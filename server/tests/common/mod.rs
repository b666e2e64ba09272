//! A small y-websocket client on tokio-tungstenite + yrs, and helpers to start the server, shared
//! by the integration tests. It speaks the protocol as y-websocket's provider does: answers the
//! server's SyncStep1, sends its own, applies what comes back.
#![allow(dead_code)]

use commonpad_server::room::RoomConfig;
use commonpad_server::server::{self, Config, Running};
use commonpad_server::store::disk::DiskStore;
use commonpad_server::store::Store;
use commonpad_server::sync::protocol::{self, Message as M};
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

pub fn test_config() -> Config {
    Config { room: RoomConfig { unload_grace: Duration::from_millis(200), ..RoomConfig::default() }, ..Config::default() }
}

pub async fn start_with(dir: &std::path::Path, config: Config) -> Running {
    let store: Arc<dyn Store> = Arc::new(DiskStore::open(dir).expect("open store"));
    server::start("127.0.0.1:0".parse().unwrap(), config, store).await.expect("start server")
}

pub async fn start_store(store: Arc<dyn Store>, config: Config) -> Running {
    server::start("127.0.0.1:0".parse().unwrap(), config, store).await.expect("start server")
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
        let mut c = Client { ws, doc, synced: false, closed: None, awareness: vec![], updates_received: vec![] };
        let sv = c.doc.transact().state_vector().encode_v1();
        c.send_raw(protocol::encode_sync_step1(&sv)).await;
        c.pump_until(|c| c.synced, STEP).await;
        assert!(c.synced, "client did not sync within {STEP:?}");
        c
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
        let mut c = Client { ws, doc, synced: false, closed: None, awareness: vec![], updates_received: vec![] };
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
                    assert!(tokio::time::Instant::now() < deadline, "could not sync {name} within {within:?}; last close: {closed:?}");
                    doc = d;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
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
