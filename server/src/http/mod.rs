//! HTTP: the WebSocket endpoint, the sessions API, the web client, health and metrics. Every error
//! is JSON `{"error": code, "message": ...}` with the matching status.

// Handlers return `Result<_, Response>`: the error is the reply itself, built once per request,
// so its size does not matter and boxing it would only add noise.
#![allow(clippy::result_large_err)]

mod api;
mod sync;
mod web;

use crate::sessions::keys::AdminToken;
use crate::sessions::Sessions;
use commonpad_core::hub::Hub;
use serde_json::json;
use std::convert::Infallible;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

pub use api::Created;

pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    warp::reply::with_status(warp::reply::json(&json!({ "error": code, "message": message })), status).into_response()
}

/// What the routes share.
pub struct App {
    pub hub: Hub,
    pub sessions: Arc<Sessions>,
    pub admin: AdminToken,
    /// `--open`: any valid document name syncs without a token.
    pub open: bool,
    pub max_message_bytes: usize,
    /// The largest message from a view connection.
    pub max_view_message_bytes: usize,
    pub ping_interval: Duration,
    /// Base of the links handed out (`--public-url`); else `http://` + the request's Host.
    pub public_url: Option<String>,
    pub web_dir: PathBuf,
    /// How long an upgraded socket may take to send its first sync request.
    pub first_sync_timeout: Duration,
    /// Updates a connection may send: (burst, then per second).
    pub update_rate: (u32, u32),
    /// How long one message may take to arrive whole.
    pub message_timeout: Duration,
    /// Bytes of messages in progress, server-wide.
    pub message_budget: Arc<crate::connection::Budget>,
    /// With `open`: new documents anyone may create, (burst, then per minute), server-wide.
    pub creations: std::sync::Mutex<commonpad_core::rate::TokenBucket>,
    /// `--trusted-proxy`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
}

impl App {
    /// The client's address: the peer's, or, when the peer is a trusted reverse proxy, the last
    /// address of `X-Forwarded-For` (the one that proxy added; earlier ones are the client's word).
    pub fn client_ip(&self, peer: Option<std::net::SocketAddr>, forwarded: Option<&str>) -> IpAddr {
        let peer = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip());
        if !self.trusted_proxies.contains(&peer) {
            return peer;
        }
        forwarded.and_then(|f| f.rsplit(',').next()).and_then(|last| last.trim().parse().ok()).unwrap_or(peer)
    }

    /// The base URL for links in a reply to a request that came with `host`.
    pub fn base_url(&self, host: Option<&str>) -> String {
        match (&self.public_url, host) {
            (Some(url), _) => url.trim_end_matches('/').to_owned(),
            (None, Some(h)) => format!("http://{h}"),
            (None, None) => "http://localhost".to_owned(),
        }
    }
}

pub fn routes(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let health = warp::path!("healthz").and(warp::get()).map(|| "ok".into_response());
    let metrics_app = app.clone();
    let metrics = warp::path!("metrics").and(warp::get()).map(move || {
        warp::reply::with_header(metrics_app.hub.metrics().render(), "content-type", "text/plain; version=0.0.4")
            .into_response()
    });
    health
        .or(metrics)
        .unify()
        .or(sync::route(app.clone()))
        .unify()
        .or(api::route(app.clone()))
        .unify()
        .or(web::route(app))
        .unify()
        .recover(handle_rejection)
        .unify()
}

async fn handle_rejection(err: Rejection) -> Result<Response, Infallible> {
    Ok(if err.is_not_found() {
        json_error(StatusCode::NOT_FOUND, "not_found", "no such route")
    } else if err.find::<warp::reject::PayloadTooLarge>().is_some() {
        json_error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the request body is over the size limit")
    } else if err.find::<warp::reject::LengthRequired>().is_some() {
        json_error(StatusCode::LENGTH_REQUIRED, "length_required", "send a Content-Length header")
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
    } else {
        json_error(StatusCode::BAD_REQUEST, "bad_request", "the request could not be read")
    })
}
