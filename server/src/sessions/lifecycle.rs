//! A session's life: created from a template, its links rotated, deleted. Each step says what it
//! does to the session's two documents and to the connections on them, on this node and (through
//! the announcement [`Sessions`] makes) on every other. The HTTP API and the command line call
//! these; they only translate requests and replies.

use super::{documents, SessionChange, SessionError, SessionRecord, Sessions};
use commonpad_core::close;
use commonpad_core::hub::{Hub, HubError};
use commonpad_core::store::StoreError;
use commonpad_core::sync::guard;
use commonpad_core::{room::Cmd, Role};
use commonpad_schema::{self as schema, NewSession, Template};
use serde::Deserialize;
use std::time::Duration;
use thiserror::Error;
use yrs::{Doc, ReadTxn, StateVector, Transact};

/// How long a delete waits for a document's room to close its connections and unload.
const UNLOAD_WAIT: Duration = Duration::from_secs(10);
/// Cluster mode: when a deleted session's documents are deleted once more (see [`delete`]).
const SECOND_DELETE_AFTER: Duration = Duration::from_secs(5);
/// What a client is told when its link stops working for good (its close code says it is final).
const DELETED: &str = "this session was deleted";
const REPLACED: &str = "this link was replaced; ask the organiser for the new one";
/// Longest title, event, date or language, in characters.
const MAX_FIELD_CHARS: usize = 200;

/// What an organiser asks for (the body of `POST /api/sessions`).
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

#[derive(Debug, Error)]
pub enum LifecycleError {
    /// A field of the request is not acceptable; the message says which and why.
    #[error("{0}")]
    InvalidField(String),
    #[error("{0}")]
    InvalidTemplate(String),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error("the session's documents are still in use; try the delete again")]
    Busy,
    #[error("the session was removed but its files could not all be deleted: {0}")]
    Storage(#[from] StoreError),
    #[error("the template could not be encoded: {0}")]
    Internal(String),
}

fn check_field(name: &str, value: &str) -> Result<(), LifecycleError> {
    if value.chars().count() > MAX_FIELD_CHARS {
        return Err(LifecycleError::InvalidField(format!("`{name}` is longer than {MAX_FIELD_CHARS} characters")));
    }
    Ok(())
}

/// Creates a session: the template is applied once, here, and is durable before the record (and
/// so any link) exists, so no client can ever see the document without it.
pub async fn create(
    hub: &Hub,
    sessions: &Sessions,
    req: CreateSession,
    demo: bool,
) -> Result<SessionRecord, LifecycleError> {
    let title = req.title.trim().to_owned();
    if title.is_empty() {
        return Err(LifecycleError::InvalidField("`title` must not be empty".into()));
    }
    check_field("title", &title)?;
    for (name, v) in [("event", &req.event), ("date", &req.date), ("language", &req.language)] {
        check_field(name, v.as_deref().unwrap_or(""))?;
    }
    let template = match &req.template {
        Some(md) => Template::from_markdown(md).map_err(|e| LifecycleError::InvalidTemplate(e.to_string()))?,
        None => Template::builtin(),
    };
    // An id is never given twice, a deleted session's included (60 random bits: a retry is rare).
    let id = std::iter::repeat_with(super::new_id).find(|id| !sessions.is_reserved(id)).unwrap_or_else(super::new_id);
    let meta = NewSession {
        title: title.clone(),
        event: req.event.unwrap_or_default(),
        date: req.date.unwrap_or_default(),
        language: req.language.unwrap_or_else(|| "en".into()),
    };
    let doc = Doc::new();
    schema::init_session(&mut doc.transact_mut(), &meta, &template);
    let raw = doc.transact().encode_state_as_update_v1(&StateVector::default());
    let (update, types) = guard::decode_update_counted(&raw).map_err(|e| LifecycleError::Internal(e.to_string()))?;
    hub.apply(&id, update, raw.into(), types).await?;
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
        deleted: false,
    };
    sessions.put(rec.clone()).await?;
    tracing::info!(session = %id, "session created");
    Ok(rec)
}

/// Replaces one role's link: every older link of that role stops working, and the connections
/// opened with it are closed, here and on every node.
pub async fn rotate(hub: &Hub, sessions: &Sessions, id: &str, role: Role) -> Result<SessionRecord, LifecycleError> {
    let rec = sessions.rotate(id, role).await?;
    disconnect(hub, &SessionChange { id: id.to_owned(), kick: Some(role), deleted: false }).await;
    tracing::info!(session = %id, %role, "link rotated");
    Ok(rec)
}

/// Closes this node's connections that a change to a session invalidates: one role's after a
/// rotation, all of them (and unloads) after a deletion. Other nodes call it when they hear of a
/// change; the node that made it, in [`rotate`] and [`delete`].
pub async fn disconnect(hub: &Hub, change: &SessionChange) {
    let (role, code, reason, unload) = match (change.kick, change.deleted) {
        (_, true) => (None, close::SESSION_DELETED, DELETED, true),
        (Some(role), false) => (Some(role), close::LINK_REPLACED, REPLACED, false),
        (None, false) => return,
    };
    for doc in documents(&change.id) {
        hub.send_if_loaded(&doc, Cmd::Kick { role, code, reason, unload }).await;
    }
}

/// Closes, on this node, every connection that a session's current record no longer allows: opened
/// with a link older than its role's generation, or on a deleted session. Run after the records
/// are re-read (cluster mode, every 10 s), it needs no announcement: a lost pub/sub message delays
/// a rotation by one refresh at most, never leaves an old link working.
pub async fn enforce(hub: &Hub, sessions: &Sessions) {
    for rec in sessions.all() {
        if rec.deleted {
            disconnect(hub, &SessionChange { id: rec.id.clone(), kick: None, deleted: true }).await;
            continue;
        }
        for doc in documents(&rec.id) {
            for role in Role::ALL {
                let generation = rec.generation(role);
                if generation > 0 {
                    let cmd = Cmd::KickStale { role, generation, code: close::LINK_REPLACED, reason: REPLACED };
                    hub.send_if_loaded(&doc, cmd).await;
                }
            }
        }
    }
}

/// Deletes a session: its record first (from then on no token verifies, so nobody can load the
/// documents again), then, once each document's room has closed its connections and unloaded,
/// the documents themselves. Files are never deleted under a live room: it would write them back.
pub async fn delete(hub: &Hub, sessions: &Sessions, id: &str) -> Result<(), LifecycleError> {
    sessions.remove(id).await?;
    for doc in documents(id) {
        if !hub.unload(&doc, close::SESSION_DELETED, DELETED, UNLOAD_WAIT).await {
            return Err(LifecycleError::Busy);
        }
        hub.store()
            .delete(&doc)
            .await
            .inspect_err(|e| tracing::error!(error = %e, "deleting a session's document failed"))?;
    }
    if hub.store().shared() {
        // Other nodes close their rooms as they hear of the deletion; an update a room there was
        // appending just then may land after our delete. Delete once more a little later.
        let (hub, id) = (hub.clone(), id.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(SECOND_DELETE_AFTER).await;
            for doc in documents(&id) {
                if !hub.is_loaded(&doc) {
                    if let Err(e) = hub.store().delete(&doc).await {
                        tracing::warn!(error = %e, "second delete of a deleted session's document failed");
                    }
                }
            }
        });
    }
    tracing::info!(session = %id, "session deleted");
    Ok(())
}
