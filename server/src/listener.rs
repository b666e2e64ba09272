//! Accepting connections: our own accept loop around hyper, instead of `warp::serve`, because a
//! public server must bound what a client can hold before it has said anything useful. warp builds
//! hyper's connection without a timer, so a socket that sends half a request header, or an idle
//! keep-alive connection, is held for ever; 300 of them exhausted a 256-descriptor process.
//!
//! Here: hyper with a timer and a header-read timeout (which also closes idle keep-alive
//! connections: hyper starts it whenever it waits for a request), caps on connections that have
//! not been upgraded to a WebSocket yet (in all, and per client address), and each refusal counted.
//! Once a connection is upgraded, hyper hands it over and it leaves these counts: from there the
//! WebSocket's own limits apply (see `connection` and the hub).

use commonpad_core::metrics::{Metrics, Reject};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tower_service::Service;

/// Limits on connections before their upgrade.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// How long a client may take to send a request's headers, and how long an idle keep-alive
    /// connection stays open.
    pub header_timeout: Duration,
    /// Connections not (yet) upgraded, in all.
    pub max_pending: usize,
    /// Connections not (yet) upgraded, per client address. Browsers keep a few idle keep-alive
    /// connections each, and a venue's Wi-Fi is one address for the whole room.
    pub max_pending_per_ip: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits { header_timeout: Duration::from_secs(10), max_pending: 10_000, max_pending_per_ip: 2_000 }
    }
}

/// The client's socket address, for routes (warp's own `addr::remote` is filled by `warp::serve`
/// only).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Counts of connections not upgraded yet.
#[derive(Default)]
struct Pending {
    all: AtomicUsize,
    // std Mutex: one map operation per accept and per close.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in [`Pending`]; given back when the HTTP part ends (closed or upgraded).
struct Slot {
    pending: Arc<Pending>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pending.all.fetch_sub(1, Relaxed);
        let mut per_ip = self.pending.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl Pending {
    fn admit(self: &Arc<Self>, ip: IpAddr, limits: &HttpLimits) -> Option<Slot> {
        if self.all.fetch_add(1, Relaxed) >= limits.max_pending {
            self.all.fetch_sub(1, Relaxed);
            return None;
        }
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = per_ip.entry(ip).or_default();
        if *n >= limits.max_pending_per_ip {
            drop(per_ip);
            self.all.fetch_sub(1, Relaxed);
            return None;
        }
        *n += 1;
        Some(Slot { pending: self.clone(), ip })
    }
}

/// Serves `routes` on `listener` until `shutdown` resolves, then lets open HTTP connections finish
/// (upgraded ones are the rooms' to close).
pub async fn serve<F>(
    listener: TcpListener,
    routes: F,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let pending = Arc::new(Pending::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = pending.admit(peer.ip(), &limits) else {
            metrics.reject(Reject::PendingLimit);
            drop(tcp);
            continue;
        };
        let warp_service = warp::service(routes.clone());
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(PeerAddr(peer));
            let mut s = warp_service.clone();
            async move { Ok::<_, Infallible>(s.call(req).await.unwrap_or_else(|e: Infallible| match e {})) }
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
        builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
        let conn = graceful.watch(builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}
