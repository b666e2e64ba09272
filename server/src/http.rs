//! HTTP routes: the WebSocket endpoint, health and metrics. Every error is JSON
//! `{"error": code, "message": ...}` with the matching status.

use crate::connection;
use crate::doc_name;
use crate::hub::Hub;
use crate::metrics::Reject;
use crate::room::Role;
use serde_json::json;
use std::convert::Infallible;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    warp::reply::with_status(warp::reply::json(&json!({ "error": code, "message": message })), status).into_response()
}

#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub max_message_bytes: usize,
    pub ping_interval: std::time::Duration,
}

pub fn routes(hub: Hub, config: HttpConfig) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let health = warp::path!("healthz").and(warp::get()).map(|| "ok".into_response());

    let metrics_hub = hub.clone();
    let metrics = warp::path!("metrics").and(warp::get()).map(move || {
        warp::reply::with_header(metrics_hub.metrics().render(), "content-type", "text/plain; version=0.0.4").into_response()
    });

    let sync_hub = hub.clone();
    // The raw (not percent-decoded) tail, so that `%2F` or `%2e%2e` can never turn into a path.
    let sync = warp::path("sync")
        .and(warp::path::tail())
        .and(warp::ws().map(Some).or(warp::any().map(|| None)).unify())
        .map(move |tail: warp::path::Tail, ws: Option<warp::ws::Ws>| {
            let name = tail.as_str();
            if let Some(why) = doc_name::invalid_reason(name) {
                sync_hub.metrics().reject(Reject::BadName);
                return json_error(StatusCode::BAD_REQUEST, "invalid_document_name", why);
            }
            let Some(ws) = ws else {
                return json_error(StatusCode::UPGRADE_REQUIRED, "websocket_required", "connect with a WebSocket (y-websocket protocol v1)");
            };
            let hub = sync_hub.clone();
            let name = name.to_owned();
            ws.max_message_size(config.max_message_bytes)
                .max_frame_size(config.max_message_bytes)
                .on_upgrade(move |socket| connection::serve(socket, name, Role::Edit, hub, config.ping_interval))
                .into_response()
        });

    health.or(metrics).unify().or(sync).unify().recover(handle_rejection).unify()
}

async fn handle_rejection(err: Rejection) -> Result<Response, Infallible> {
    Ok(if err.is_not_found() {
        json_error(StatusCode::NOT_FOUND, "not_found", "no such route")
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
    } else {
        json_error(StatusCode::BAD_REQUEST, "bad_request", "the request could not be read")
    })
}
