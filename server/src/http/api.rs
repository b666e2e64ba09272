//! The sessions API under `/api/sessions`. Admin routes (create, rotate, delete) take the admin
//! token; reading takes an edit or view link's token; writing takes an edit token. Tokens come in
//! `Authorization: Bearer ...` and never appear in logs.

use super::{json_error, App};
use crate::hub::HubError;
use crate::room::{close, Cmd, Role};
use crate::sessions::{new_id, SessionError, SessionRecord};
use crate::sync::guard;
use bytes::Bytes;
use commonpad_schema::{self as schema, ListKind, NewSession, Template};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

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
    result.unwrap_or_else(|e| e)
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
    let not_found = || json_error(StatusCode::NOT_FOUND, "not_found", "no such session");
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    pub title: String,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    /// The organiser's own template, as Markdown; the built-in one otherwise.
    #[serde(default)]
    pub template: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Created {
    pub id: String,
    pub edit_url: String,
    pub view_url: String,
}

fn links(app: &App, rec: &SessionRecord, base: &str) -> (String, String) {
    (
        format!("{base}/s/{}#edit={}", rec.id, app.sessions.token(rec, Role::Edit)),
        format!("{base}/s/{}#view={}", rec.id, app.sessions.token(rec, Role::View)),
    )
}

fn check_field(name: &str, value: &str, max: usize) -> Result<(), Response> {
    if value.chars().count() > max {
        return Err(json_error(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            &format!("`{name}` is longer than {max} characters"),
        ));
    }
    Ok(())
}

/// Creates a session: the template is applied once, here, and is durable before the record (and so
/// any link) exists, so no client can ever see the document without it.
pub async fn create_session(app: &App, req: CreateSession, base: &str, demo: bool) -> Result<Created, Response> {
    let title = req.title.trim().to_owned();
    if title.is_empty() {
        return Err(json_error(StatusCode::BAD_REQUEST, "invalid_field", "`title` must not be empty"));
    }
    check_field("title", &title, 200)?;
    for (name, v) in [("event", &req.event), ("date", &req.date), ("language", &req.language)] {
        check_field(name, v.as_deref().unwrap_or(""), 200)?;
    }
    let template = match &req.template {
        Some(md) => Template::from_markdown(md)
            .map_err(|e| json_error(StatusCode::BAD_REQUEST, "invalid_template", &e.to_string()))?,
        None => Template::builtin(),
    };
    let id = new_id();
    let meta = NewSession {
        title: title.clone(),
        event: req.event.clone().unwrap_or_default(),
        date: req.date.clone().unwrap_or_default(),
        language: req.language.clone().unwrap_or_else(|| "en".into()),
    };
    let doc = Doc::new();
    {
        let mut txn = doc.transact_mut();
        schema::init_session(&mut txn, &meta, &template);
    }
    let raw = doc.transact().encode_state_as_update_v1(&StateVector::default());
    let (update, types) = guard::decode_update_counted(&raw)
        .map_err(|e| json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &format!("template: {e}")))?;
    app.hub.apply(&id, update, Bytes::from(raw), types).await.map_err(hub_error)?;
    let rec = SessionRecord {
        id: id.clone(),
        title,
        event: meta.event,
        date: meta.date,
        created_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        edit_generation: 0,
        view_generation: 0,
        demo,
    };
    app.sessions.put(rec.clone()).await.map_err(session_error)?;
    tracing::info!(session = %id, "session created");
    let (edit_url, view_url) = links(app, &rec, base);
    Ok(Created { id, edit_url, view_url })
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
    let created = create_session(app, req, &app.base_url(host), false).await?;
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
    let (edit_url, view_url) = links(app, &rec, &app.base_url(host));
    let links = match role {
        Role::Edit => json!({ "edit_url": edit_url, "view_url": view_url }),
        Role::View => json!({ "view_url": view_url }),
    };
    let role = match role {
        Role::Edit => "edit",
        Role::View => "view",
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
    let role = match req.role.as_str() {
        "edit" => Role::Edit,
        "view" => Role::View,
        _ => return Err(json_error(StatusCode::BAD_REQUEST, "invalid_role", "`role` must be \"edit\" or \"view\"")),
    };
    let rec = app.sessions.rotate(id, role).await.map_err(session_error)?;
    // Connections opened with the old link are cut; their tokens no longer verify on reconnect.
    let kick = |unload| Cmd::Kick { role: Some(role), code: close::POLICY, reason: "this link was rotated", unload };
    app.hub.send_if_loaded(id, kick(false)).await;
    app.hub.send_if_loaded(&format!("{id}.private"), kick(false)).await;
    tracing::info!(session = %id, role = ?role, "link rotated");
    let (edit_url, view_url) = links(app, &rec, &app.base_url(host));
    let url = if role == Role::Edit { edit_url } else { view_url };
    Ok(warp::reply::json(&json!({ "id": id, "role": req.role, "url": url })).into_response())
}

async fn delete(app: &App, id: &str, bearer: Option<&str>) -> Reply_ {
    require_admin(app, bearer)?;
    // Forget the record first: from here on no token verifies, so nobody can reload the documents.
    app.sessions.remove(id).await.map_err(session_error)?;
    for doc in [id.to_owned(), format!("{id}.private")] {
        let cmd = Cmd::Kick { role: None, code: close::POLICY, reason: "this session was deleted", unload: true };
        if app.hub.send_if_loaded(&doc, cmd).await {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while app.hub.is_loaded(&doc) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if app.hub.is_loaded(&doc) {
                // Never delete files under a live room: it would write them back.
                return Err(json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the session's documents are still in use; try the delete again",
                ));
            }
        }
        app.hub.store().delete(&doc).await.map_err(|e| {
            tracing::error!(error = %e, "deleting a session's document failed");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_failure",
                "the session was removed but its files could not all be deleted",
            )
        })?;
    }
    if app.hub.store().shared() {
        // Other nodes close their rooms as they hear of the deletion; an update a room there
        // was appending just then may land after our delete. Delete once more a little later.
        let (hub, id) = (app.hub.clone(), id.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            for doc in [id.clone(), format!("{id}.private")] {
                if !hub.is_loaded(&doc) {
                    if let Err(e) = hub.store().delete(&doc).await {
                        tracing::warn!(error = %e, "second delete of a deleted session's document failed");
                    }
                }
            }
        });
    }
    tracing::info!(session = %id, "session deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
