//! The floor: a bare tokio-tungstenite relay. Every binary frame a connection sends is forwarded,
//! unparsed, to every connection on the same path (sender included, as the y-websocket servers echo).
//! It keeps no document, so it never answers sync step 1.
//!
//! Its tungstenite buffers are CommonPad's (`server/src/connection/frames.rs`: 1 KiB read, 8 KiB write
//! buffer; repeated here so that the harness does not depend on the crate it measures), so that it
//! stays a floor for memory and for the cost of a read.

use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

type Rooms = Arc<Mutex<HashMap<String, Vec<(u64, mpsc::UnboundedSender<Message>)>>>>;

pub fn run(addr: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        eprintln!("relay listening on {addr}");
        let rooms: Rooms = Arc::default();
        let mut next_id = 0u64;
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            next_id += 1;
            let id = next_id;
            let rooms = rooms.clone();
            tokio::spawn(async move {
                let mut path = String::new();
                // tungstenite's callback type fixes the (large) error variant; it is never built here.
                #[allow(clippy::result_large_err)]
                let cb = |req: &Request, resp: Response| {
                    path = req.uri().path().to_owned();
                    Ok(resp)
                };
                let config = WebSocketConfig::default().read_buffer_size(1 << 10).write_buffer_size(8 << 10);
                let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(tcp, cb, Some(config)).await else {
                    return;
                };
                let (mut sink, mut stream) = ws.split();
                let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
                rooms.lock().unwrap().entry(path.clone()).or_default().push((id, tx));
                let writer = tokio::spawn(async move {
                    while let Some(m) = rx.recv().await {
                        if sink.send(m).await.is_err() {
                            break;
                        }
                    }
                });
                while let Some(Ok(msg)) = stream.next().await {
                    match msg {
                        Message::Binary(_) => {
                            let room = rooms.lock().unwrap();
                            if let Some(conns) = room.get(&path) {
                                for (_, c) in conns {
                                    let _ = c.send(msg.clone());
                                }
                            }
                        }
                        Message::Close(_) => break,
                        _ => {}
                    }
                }
                {
                    let mut room = rooms.lock().unwrap();
                    if let Some(conns) = room.get_mut(&path) {
                        conns.retain(|(cid, _)| *cid != id);
                        if conns.is_empty() {
                            room.remove(&path);
                        }
                    }
                }
                writer.abort();
            });
        }
    })
}
