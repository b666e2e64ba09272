//! `GET /sync/{doc}?token=...`: checks the name and the token before the upgrade, then hands the
//! socket to a connection task with the role the token grants.
//!
//! The WebSocket upgrade is done here rather than with `warp::ws()`, whose `Ws` cannot set
//! tungstenite's read buffer size: its default (128 KiB) was allocated for every connection and
//! zero-filled before every read (see `connection::ws_config` and docs/benchmarks.md).

use super::{json_error, App};
use crate::connection::{self, Grant, Settings, Watched};
use crate::listener::PeerAddr;
use crate::sessions::split_doc;
use base64::Engine;
use commonpad_core::doc_name;
use commonpad_core::metrics::Reject;
use commonpad_core::Role;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role as WsRole;
use tokio_tungstenite::WebSocketStream;
use tracing::debug;
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

pub fn route(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    // The raw (not percent-decoded) tail, so that `%2F` or `%2e%2e` can never turn into a path.
    warp::path("sync")
        .and(warp::get())
        .and(warp::path::tail())
        .and(warp::query::<HashMap<String, String>>().or(warp::any().map(HashMap::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<OnUpgrade>())
        .and(warp::ext::optional::<PeerAddr>())
        .then(
            move |tail: warp::path::Tail,
                  query: HashMap<String, String>,
                  headers: HeaderMap,
                  on_upgrade: Option<OnUpgrade>,
                  peer: Option<PeerAddr>| {
                let app = app.clone();
                async move {
                    let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
                    let ip = app.client_ip(peer.map(|PeerAddr(a)| a), forwarded);
                    let token = query.get("token").map(String::as_str);
                    upgrade(&app, tail.as_str(), token, &headers, on_upgrade, ip).await
                }
            },
        )
}

/// Checks the name, the token and the handshake, then answers 101 and hands the socket, once hyper
/// has upgraded it, to a connection with the role the token grants.
async fn upgrade(
    app: &App,
    name: &str,
    token: Option<&str>,
    headers: &HeaderMap,
    on_upgrade: Option<OnUpgrade>,
    ip: std::net::IpAddr,
) -> Response {
    // Cluster mode: a session made through another node a moment ago.
    app.sessions.ensure_cached(split_doc(name).0).await;
    if let Some(why) = doc_name::invalid_reason(name) {
        app.hub.metrics().reject(Reject::BadName);
        return json_error(StatusCode::BAD_REQUEST, "invalid_document_name", why);
    }
    let grant = match authorize(app, name, token) {
        Ok(grant) => grant,
        Err(resp) => return resp,
    };
    if let Err(resp) = check_creation(app, name).await {
        return resp;
    }
    let accept = match handshake(headers) {
        Ok(accept) => accept,
        Err(resp) => return resp,
    };
    // hyper leaves `OnUpgrade` in the extensions of an HTTP/1.1 request on a connection served
    // with upgrades (warp's server does); without it there is nothing to upgrade.
    let Some(on_upgrade) = on_upgrade else {
        return bad_handshake("this connection cannot be upgraded to a WebSocket (use HTTP/1.1)");
    };
    let (hub, name) = (app.hub.clone(), name.to_owned());
    let settings = Settings {
        ping_interval: app.ping_interval,
        first_sync: app.first_sync_timeout,
        update_rate: app.update_rate,
        message_timeout: app.message_timeout,
    };
    let budget = app.message_budget.clone();
    // A viewer only ever sends a state vector and its presence: a public link gets a limit that
    // size, so that it cannot make the server buffer megabytes per socket.
    let limit = match grant.role {
        Role::Edit => app.max_message_bytes,
        Role::View => app.max_view_message_bytes.min(app.max_message_bytes),
    };
    let config = connection::ws_config(limit);
    // Runs once hyper has sent the 101 below and handed over the connection.
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let (io, progress) = Watched::new(TokioIo::new(upgraded), budget);
                let ws = WebSocketStream::from_raw_socket(io, WsRole::Server, Some(config)).await;
                connection::serve(ws, name, grant, ip, hub, settings, progress).await
            }
            Err(e) => debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let mut resp = Response::default();
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a valid header value"));
    resp
}

/// With `--open`, anyone may make new documents on disk: the server-wide rate of new ones is
/// limited (`Config::open_creations`). Sessions' documents, and documents that exist, are not new.
async fn check_creation(app: &App, name: &str) -> Result<(), Response> {
    if !app.open || app.sessions.is_reserved(split_doc(name).0) || app.hub.is_loaded(name) {
        return Ok(());
    }
    match app.hub.store().exists(name).await {
        Ok(true) => return Ok(()),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not tell whether a document exists");
            return Err(json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "storage is unavailable; try again later",
            ));
        }
    }
    if app.creations.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Ok(());
    }
    app.hub.metrics().reject(Reject::OpenCreations);
    let mut resp = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_new_documents",
        "too many new documents; try again in a minute",
    );
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    Err(resp)
}

/// Checks an upgrade request (RFC 6455 section 4.2.1) and returns the `Sec-WebSocket-Accept` value.
/// A request that does not ask for a WebSocket at all gets 426; one that asks for it
/// but gets the handshake wrong gets 400 saying what is wrong.
fn handshake(headers: &HeaderMap) -> Result<String, Response> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(header::UPGRADE, "websocket") {
        let mut resp = json_error(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            "connect with a WebSocket (y-websocket protocol v1)",
        );
        // RFC 9110 section 15.5.22: a 426 names the protocol to upgrade to.
        resp.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        return Err(resp);
    }
    if !has_token(header::CONNECTION, "upgrade") {
        return Err(bad_handshake("a WebSocket upgrade needs the header Connection: Upgrade"));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes().trim_ascii()) != Some(b"13") {
        let mut resp = bad_handshake("only WebSocket version 13 is supported (header Sec-WebSocket-Version: 13)");
        // RFC 6455 section 4.4: name the versions the server supports.
        resp.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return Err(resp);
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(bad_handshake("a WebSocket upgrade needs the header Sec-WebSocket-Key"));
    };
    // The key is a random 16-byte value, base64-encoded (section 4.1).
    let key = key.as_bytes().trim_ascii();
    if base64::engine::general_purpose::STANDARD.decode(key).map(|k| k.len()) != Ok(16) {
        return Err(bad_handshake("Sec-WebSocket-Key must be 16 bytes in base64"));
    }
    Ok(derive_accept_key(key))
}

fn bad_handshake(why: &str) -> Response {
    json_error(StatusCode::BAD_REQUEST, "bad_websocket_handshake", why)
}

/// The role a request gets on a document, or the HTTP error it gets instead.
fn authorize(app: &App, doc: &str, token: Option<&str>) -> Result<Grant, Response> {
    // Session ids are lower case: an upper-case twin of a session's name would name its files on a
    // case-insensitive filesystem, and with --open it would need no token.
    let folded = doc.to_ascii_lowercase();
    if folded != doc && app.sessions.get(split_doc(&folded).0).is_some() {
        app.hub.metrics().reject(Reject::BadName);
        return Err(json_error(
            StatusCode::BAD_REQUEST,
            "invalid_document_name",
            "this name differs only in case from a session's; open the session through its link",
        ));
    }
    // A deleted session's names stay reserved: never an open document, never recreated.
    if app.sessions.is_deleted(split_doc(&folded).0) {
        return Err(json_error(StatusCode::GONE, "session_deleted", "this session was deleted"));
    }
    let (session, private) = split_doc(doc);
    let record = app.sessions.get(session);
    let known = record.is_some();
    let grant = |role: Role| Grant { role, generation: record.as_ref().map_or(0, |r| r.generation(role)) };
    match token {
        Some(token) if known => match app.sessions.role_for(session, token) {
            Some(Role::View) if private => Err(json_error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a view link cannot open the session's private data",
            )),
            Some(role) => Ok(grant(role)),
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
        _ if app.open => Ok(grant(Role::Edit)),
        Some(_) => Err(json_error(StatusCode::NOT_FOUND, "not_found", "no such session")),
        None => Err(json_error(
            StatusCode::UNAUTHORIZED,
            "token_required",
            "this document needs a token: open it through its edit or view link",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(header::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// GOOD with `name` left out, or replaced by `value`.
    fn changed(name: &str, value: Option<&'static str>) -> HeaderMap {
        let mut h: Vec<(&str, &str)> = GOOD.iter().copied().filter(|(k, _)| *k != name).collect();
        if let Some(v) = value {
            h.push((name, v));
        }
        headers(&h)
    }

    fn status(h: &HeaderMap) -> u16 {
        handshake(h).expect_err("should be refused").status().as_u16()
    }

    #[test]
    fn accepts_a_proper_upgrade() {
        // The example of RFC 6455 section 1.3.
        assert_eq!(handshake(&headers(&GOOD)).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        // Token lists and any case, as browsers and proxies send them.
        let h = [("upgrade", "WebSocket"), ("connection", "keep-alive, Upgrade"), GOOD[2], GOOD[3]];
        assert!(handshake(&headers(&h)).is_ok());
    }

    #[test]
    fn a_plain_request_gets_426() {
        assert_eq!(status(&HeaderMap::new()), 426);
        assert_eq!(status(&changed("upgrade", None)), 426);
        assert_eq!(status(&changed("upgrade", Some("h2c"))), 426);
        let resp = handshake(&HeaderMap::new()).expect_err("refused");
        assert_eq!(resp.headers().get(header::UPGRADE).map(|v| v.as_bytes()), Some(&b"websocket"[..]));
    }

    #[test]
    fn a_broken_handshake_gets_400() {
        assert_eq!(status(&changed("connection", None)), 400);
        assert_eq!(status(&changed("connection", Some("keep-alive"))), 400);
        assert_eq!(status(&changed("sec-websocket-key", None)), 400);
        assert_eq!(status(&changed("sec-websocket-key", Some("not base64!"))), 400);
        // Base64, but not 16 bytes.
        assert_eq!(status(&changed("sec-websocket-key", Some("dGhlIHNhbXBsZQ=="))), 400);
        for version in [None, Some("8"), Some("14"), Some("13, 8")] {
            let resp = handshake(&changed("sec-websocket-version", version)).expect_err("refused");
            assert_eq!(resp.status().as_u16(), 400, "{version:?}");
            assert_eq!(resp.headers().get(header::SEC_WEBSOCKET_VERSION).unwrap(), "13", "{version:?}");
        }
    }
}
