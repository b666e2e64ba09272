//! `GET /sync/{doc}?token=...`: checks the name and the token before the upgrade, then hands the
//! socket to a connection task with the role the token grants.

use super::{json_error, App};
use crate::connection;
use crate::doc_name;
use crate::metrics::Reject;
use crate::room::Role;
use crate::sessions::split_doc;
use std::collections::HashMap;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

pub fn route(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    // The raw (not percent-decoded) tail, so that `%2F` or `%2e%2e` can never turn into a path.
    warp::path("sync")
        .and(warp::get())
        .and(warp::path::tail())
        .and(warp::query::<HashMap<String, String>>().or(warp::any().map(HashMap::new)).unify())
        .and(warp::ws().map(Some).or(warp::any().map(|| None)).unify())
        .then(move |tail: warp::path::Tail, query: HashMap<String, String>, ws: Option<warp::ws::Ws>| {
            let app = app.clone();
            async move {
            let name = tail.as_str();
            // Cluster mode: a session made through another node a moment ago.
            app.sessions.ensure_cached(split_doc(name).0).await;
            if let Some(why) = doc_name::invalid_reason(name) {
                app.hub.metrics().reject(Reject::BadName);
                return json_error(StatusCode::BAD_REQUEST, "invalid_document_name", why);
            }
            let role = match authorize(&app, name, query.get("token").map(String::as_str)) {
                Ok(role) => role,
                Err(resp) => return resp,
            };
            let Some(ws) = ws else {
                return json_error(StatusCode::UPGRADE_REQUIRED, "websocket_required", "connect with a WebSocket (y-websocket protocol v1)");
            };
            let hub = app.hub.clone();
            let name = name.to_owned();
            let ping = app.ping_interval;
            ws.max_message_size(app.max_message_bytes)
                .max_frame_size(app.max_message_bytes)
                .on_upgrade(move |socket| connection::serve(socket, name, role, hub, ping))
                .into_response()
            }
        })
}

/// The role a request gets on a document, or the HTTP error it gets instead.
fn authorize(app: &App, doc: &str, token: Option<&str>) -> Result<Role, Response> {
    let (session, private) = split_doc(doc);
    let known = app.sessions.get(session).is_some();
    match token {
        Some(token) if known => match app.sessions.role_for(session, token) {
            Some(Role::View) if private => Err(json_error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a view link cannot open the session's private data",
            )),
            Some(role) => Ok(role),
            None => Err(json_error(
                StatusCode::FORBIDDEN,
                "invalid_token",
                "this link is not valid (it may have been rotated); ask the organiser for a new one",
            )),
        },
        // A session's documents always need its token, even with --open: otherwise leaving the
        // token out of a view link would open the private document and write access.
        None if known => Err(json_error(
            StatusCode::UNAUTHORIZED,
            "token_required",
            "this document needs a token: open it through its edit or view link",
        )),
        _ if app.open => Ok(Role::Edit),
        Some(_) => Err(json_error(StatusCode::NOT_FOUND, "not_found", "no such session")),
        None => Err(json_error(
            StatusCode::UNAUTHORIZED,
            "token_required",
            "this document needs a token: open it through its edit or view link",
        )),
    }
}
