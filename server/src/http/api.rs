//! The sessions API under `/api/sessions`. Admin routes (create, rotate, delete) take the admin
//! token; reading takes an edit or view link's token; writing takes an edit token. Tokens come in
//! `Authorization: Bearer ...` and never appear in logs.

use super::{json_error, App};
use crate::sessions::lifecycle::{self, CreateSession, LifecycleError};
use crate::sessions::{SessionError, SessionRecord};
use bytes::Bytes;
use commonpad_core::hub::HubError;
use commonpad_core::sync::guard;
use commonpad_core::Role;
use commonpad_schema::{self as schema, ListKind};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};
use yrs::updates::decoder::Decode;
use yrs::{Doc, Transact, Update};

pub fn route(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let limit = app.max_message_bytes as u64;
    warp::path("api")
        .and(warp::path("sessions"))
        .and(warp::path::tail())
        .and(warp::method())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("host"))
        .and(warp::query::<HashMap<String, String>>().or(warp::any().map(HashMap::new)).unify())
        .and(warp::body::stream())
        .and_then(move |tail: warp::path::Tail, method, auth, host, query, body| {
            let app = app.clone();
            async move {
                Ok::<_, Rejection>(
                    handle(app, tail.as_str().to_owned(), method, auth, host, query, Body { stream: body, limit })
                        .await,
                )
            }
        })
}

/// JSON bodies (create, rotate) are small; only `POST .../update` may use the message limit.
const JSON_BODY_LIMIT: u64 = 64 * 1024;

/// A request body not read yet: each route authenticates first, then reads it up to its own limit,
/// so an anonymous client cannot make the server buffer megabytes.
struct Body<S> {
    stream: S,
    /// The largest update body (`--max-message-bytes`).
    limit: u64,
}

impl<S, B> Body<S>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Send,
    B: bytes::Buf,
{
    async fn json(self) -> Result<Bytes, Response> {
        read_body(self.stream, JSON_BODY_LIMIT).await
    }

    async fn update(self) -> Result<Bytes, Response> {
        let limit = self.limit;
        read_body(self.stream, limit).await
    }
}

/// Reads a body ourselves, stopping at the limit: `content_length_limit` would refuse bodiless
/// requests that carry no Content-Length, and an unbounded read would let a chunked upload grow
/// without end.
async fn read_body<S, B>(body: S, limit: u64) -> Result<Bytes, Response>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Send,
    B: bytes::Buf,
{
    use futures_util::StreamExt;
    let mut out = Vec::new();
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk
            .map_err(|_| json_error(StatusCode::BAD_REQUEST, "bad_request", "the request body could not be read"))?;
        if out.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                &format!("the request body is over the limit of {limit} bytes"),
            ));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(Bytes::from(out))
}

type Reply_ = Result<Response, Response>;

async fn handle<S, B>(
    app: Arc<App>,
    tail: String,
    method: Method,
    auth: Option<String>,
    host: Option<String>,
    query: HashMap<String, String>,
    body: Body<S>,
) -> Response
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Send,
    B: bytes::Buf,
{
    let bearer = auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")).map(str::trim);
    let parts: Vec<&str> = tail.split('/').filter(|p| !p.is_empty()).collect();
    if let Some(id) = parts.first() {
        // Cluster mode: a session made through another node a moment ago.
        app.sessions.ensure_cached(id).await;
    }
    let result = match (&method, parts.as_slice()) {
        (&Method::POST, []) => create(&app, bearer, host.as_deref(), body).await,
        (&Method::GET, [id]) => get(&app, id, bearer, host.as_deref()).await,
        (&Method::DELETE, [id]) => delete(&app, id, bearer).await,
        (&Method::GET, [id, "export"]) => export(&app, id, bearer, &query).await,
        (&Method::GET, [id, "update"]) => get_update(&app, id, bearer).await,
        (&Method::POST, [id, "update"]) => post_update(&app, id, bearer, body).await,
        (&Method::POST, [id, "rotate"]) => rotate(&app, id, bearer, host.as_deref(), body).await,
        (_, [] | [_] | [_, "export" | "update" | "rotate"]) => {
            Err(json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route"))
        }
        _ => Err(json_error(StatusCode::NOT_FOUND, "not_found", "no such route")),
    };
    // Replies carry share links with tokens, or a session's outcomes: no cache keeps them.
    let mut resp = result.unwrap_or_else(|e| e);
    resp.headers_mut().insert("cache-control", warp::http::HeaderValue::from_static("no-store"));
    resp
}

fn require_admin(app: &App, bearer: Option<&str>) -> Result<(), Response> {
    match bearer {
        None => Err(json_error(
            StatusCode::UNAUTHORIZED,
            "token_required",
            "send the admin token as `Authorization: Bearer ...`",
        )),
        Some(t) if app.admin.verify(t) => Ok(()),
        Some(_) => Err(json_error(StatusCode::FORBIDDEN, "invalid_token", "this is not the admin token")),
    }
}

/// The session and the role the bearer token grants on it.
fn require_role(app: &App, id: &str, bearer: Option<&str>, need_edit: bool) -> Result<(SessionRecord, Role), Response> {
    let not_found = || match app.sessions.is_deleted(id) {
        true => json_error(StatusCode::GONE, "session_deleted", "this session was deleted"),
        false => json_error(StatusCode::NOT_FOUND, "not_found", "no such session"),
    };
    let rec = app.sessions.get(id).ok_or_else(not_found)?;
    let token = bearer.ok_or_else(|| {
        json_error(StatusCode::UNAUTHORIZED, "token_required", "send the link's token as `Authorization: Bearer ...`")
    })?;
    let role = app.sessions.role_for(id, token).ok_or_else(|| {
        json_error(StatusCode::FORBIDDEN, "invalid_token", "this link is not valid (it may have been rotated)")
    })?;
    if need_edit && role != Role::Edit {
        return Err(json_error(StatusCode::FORBIDDEN, "read_only", "a view link cannot change the session"));
    }
    Ok((rec, role))
}

fn hub_error(e: HubError) -> Response {
    match e {
        HubError::Rejected => {
            json_error(StatusCode::BAD_REQUEST, "invalid_update", "the update could not be applied to this document")
        }
        e => json_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &e.to_string()),
    }
}

fn session_error(e: SessionError) -> Response {
    match e {
        SessionError::NotFound => json_error(StatusCode::NOT_FOUND, "not_found", "no such session"),
        e => {
            tracing::error!(error = %e, "session registry failure");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "storage_failure", "the server could not store the session")
        }
    }
}

fn lifecycle_error(e: LifecycleError) -> Response {
    match e {
        LifecycleError::InvalidField(why) => json_error(StatusCode::BAD_REQUEST, "invalid_field", &why),
        LifecycleError::InvalidTemplate(why) => json_error(StatusCode::BAD_REQUEST, "invalid_template", &why),
        LifecycleError::Session(e) => session_error(e),
        LifecycleError::Hub(e) => hub_error(e),
        e @ LifecycleError::Busy => json_error(StatusCode::SERVICE_UNAVAILABLE, "busy", &e.to_string()),
        // The store's error names paths on the server: the log has it, the client gets a summary.
        LifecycleError::Storage(_) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage_failure",
            "the session was removed but its files could not all be deleted",
        ),
        e @ LifecycleError::Internal(_) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()),
    }
}

/// What `POST /api/sessions` answers.
#[derive(Debug, Serialize)]
pub struct Created {
    pub id: String,
    pub edit_url: String,
    pub view_url: String,
}

async fn create<S, B>(app: &App, bearer: Option<&str>, host: Option<&str>, body: Body<S>) -> Reply_
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Send,
    B: bytes::Buf,
{
    require_admin(app, bearer)?;
    let body = body.json().await?;
    let req: CreateSession = serde_json::from_slice(&body).map_err(|e| {
        json_error(StatusCode::BAD_REQUEST, "malformed_json", &format!("the body is not a valid session request: {e}"))
    })?;
    let rec = lifecycle::create(&app.hub, &app.sessions, req, false).await.map_err(lifecycle_error)?;
    let (edit_url, view_url) = app.sessions.links(&rec, &app.base_url(host));
    let created = Created { id: rec.id, edit_url, view_url };
    Ok(warp::reply::with_status(warp::reply::json(&created), StatusCode::CREATED).into_response())
}

/// The durable state of a session document, read into the schema's model.
async fn read(app: &App, id: &str) -> Result<schema::Session, Response> {
    let state = app.hub.snapshot(id).await.map_err(hub_error)?;
    let doc = Doc::new();
    let update = Update::decode_v1(&state)
        .map_err(|e| json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &format!("state: {e}")))?;
    doc.transact_mut()
        .apply_update(update)
        .map_err(|e| json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &format!("state: {e}")))?;
    let txn = doc.transact();
    Ok(schema::read_session(&txn))
}

async fn get(app: &App, id: &str, bearer: Option<&str>, host: Option<&str>) -> Reply_ {
    let (rec, role) = require_role(app, id, bearer, false)?;
    let session = read(app, id).await?;
    let (edit_url, view_url) = app.sessions.links(&rec, &app.base_url(host));
    let links = match role {
        Role::Edit => json!({ "edit_url": edit_url, "view_url": view_url }),
        Role::View => json!({ "view_url": view_url }),
    };
    Ok(warp::reply::json(&json!({ "id": id, "role": role, "session": schema::render_json(&session), "links": links }))
        .into_response())
}

fn download(body: Vec<u8>, content_type: &str, filename: &str) -> Response {
    warp::http::Response::builder()
        .header("content-type", content_type)
        .header("content-disposition", format!("attachment; filename=\"{filename}\""))
        .body(body.into())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn export(app: &App, id: &str, bearer: Option<&str>, query: &HashMap<String, String>) -> Reply_ {
    require_role(app, id, bearer, false)?;
    let format = query.get("format").map(String::as_str).unwrap_or("json");
    let list = match (format, query.get("list")) {
        ("csv", Some(l)) => Some(l.parse::<ListKind>().map_err(|_| {
            json_error(
                StatusCode::BAD_REQUEST,
                "invalid_list",
                "`list` must be needs, resources, partners or collaborators",
            )
        })?),
        ("csv", None) => {
            return Err(json_error(
                StatusCode::BAD_REQUEST,
                "invalid_list",
                "CSV exports one list: add `list=needs` (or resources, partners, collaborators)",
            ))
        }
        _ => None,
    };
    let session = read(app, id).await?;
    Ok(match (format, list) {
        ("md", _) => download(
            schema::render_markdown(&session).into_bytes(),
            "text/markdown; charset=utf-8",
            &format!("{id}.md"),
        ),
        ("json", _) => {
            let body = serde_json::to_vec_pretty(&schema::render_json(&session)).unwrap_or_default();
            download(body, "application/json", &format!("{id}.json"))
        }
        ("csv", Some(list)) => download(
            schema::render_csv(&session, list).into_bytes(),
            "text/csv; charset=utf-8",
            &format!("{id}-{}.csv", list.as_str()),
        ),
        _ => return Err(json_error(StatusCode::BAD_REQUEST, "invalid_format", "`format` must be md, json or csv")),
    })
}

async fn get_update(app: &App, id: &str, bearer: Option<&str>) -> Reply_ {
    require_role(app, id, bearer, false)?;
    let state = app.hub.snapshot(id).await.map_err(hub_error)?;
    Ok(download(state, "application/octet-stream", &format!("{id}.yjs")))
}

async fn post_update<S, B>(app: &App, id: &str, bearer: Option<&str>, body: Body<S>) -> Reply_
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Send,
    B: bytes::Buf,
{
    require_role(app, id, bearer, true)?;
    let body = body.update().await?;
    let (update, types) = guard::decode_update_counted(&body).map_err(|e| {
        json_error(StatusCode::BAD_REQUEST, "invalid_update", &format!("the body is not a Yjs v1 update: {e}"))
    })?;
    app.hub.apply(id, update, body, types).await.map_err(hub_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    role: String,
}

async fn rotate<S, B>(app: &App, id: &str, bearer: Option<&str>, host: Option<&str>, body: Body<S>) -> Reply_
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Send,
    B: bytes::Buf,
{
    require_admin(app, bearer)?;
    let body = body.json().await?;
    let req: RotateRequest = serde_json::from_slice(&body).map_err(|e| {
        json_error(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            &format!("expected {{\"role\": \"edit\" | \"view\"}}: {e}"),
        )
    })?;
    let role: Role = req
        .role
        .parse()
        .map_err(|_| json_error(StatusCode::BAD_REQUEST, "invalid_role", "`role` must be \"edit\" or \"view\""))?;
    let rec = lifecycle::rotate(&app.hub, &app.sessions, id, role).await.map_err(lifecycle_error)?;
    let (edit_url, view_url) = app.sessions.links(&rec, &app.base_url(host));
    let url = if role == Role::Edit { edit_url } else { view_url };
    Ok(warp::reply::json(&json!({ "id": id, "role": req.role, "url": url })).into_response())
}

async fn delete(app: &App, id: &str, bearer: Option<&str>) -> Reply_ {
    require_admin(app, bearer)?;
    lifecycle::delete(&app.hub, &app.sessions, id).await.map_err(lifecycle_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
