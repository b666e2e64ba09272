//! The built web client (`web-client/dist`): the page at `/` and `/s/{id}`, its assets by path,
//! each with headers that keep a public page from being framed, sniffed into another type, or
//! leaking its link (the token is in the fragment, but the path names the session) to other sites.

use super::{json_error, App};
use std::sync::Arc;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

pub fn route(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let index_app = app.clone();
    let index = warp::get()
        .and(warp::path::end().or(warp::path!("s" / String).map(|_| ()).untuple_one()).unify())
        .and_then(move || {
            let path = index_app.web_dir.join("index.html");
            async move {
                Ok::<_, Rejection>(match tokio::fs::read(&path).await {
                    // no-cache: the service worker and the browser must see a new build at once.
                    Ok(html) => warp::http::Response::builder()
                        .header("content-type", "text/html; charset=utf-8")
                        .header("cache-control", "no-cache")
                        .body(html.into())
                        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
                    Err(_) => json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "web_client_not_built",
                        "the web client is not built: run `npm ci && npm run build` in web-client/ (scripts/run does)",
                    ),
                })
            }
        });
    let assets = warp::get().and(warp::fs::dir(app.web_dir.clone())).map(|f: warp::fs::File| f.into_response());
    index.or(assets).unify().map(protect)
}

/// Only the server's own scripts, styles, images and connections (the sync WebSocket is
/// same-origin); styles may be inline because the editor sets style attributes; nothing may frame
/// the page.
const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; \
                   connect-src 'self'; worker-src 'self'; manifest-src 'self'; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

fn protect(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
}
