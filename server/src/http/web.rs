//! The built web client (`web-client/dist`): the page at `/` and `/s/{id}`, its assets by path.

use super::{json_error, App};
use std::sync::Arc;
use warp::http::StatusCode;
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
    index.or(assets).unify()
}
