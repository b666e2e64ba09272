//! The CommonPad session document: its root types, a lenient typed reader, a validator, the
//! writes the server makes (creation from a template, items, the private contacts), and the
//! exports (JSON, Markdown, CSV).
//!
//! # The document
//!
//! Every client agrees on fixed root types (see `schema.json`, the single source of these facts,
//! shared with the TypeScript model in `ts/session.ts`):
//!
//! - `meta`: Y.Map of strings `title`, `event`, `date`, `language`, `status` (`draft`, `live`,
//!   `closed`).
//! - `outline`: Y.XmlFragment in the ProseMirror/Tiptap vocabulary as y-prosemirror stores it:
//!   elements `paragraph`, `heading` (attribute `level`), `bulletList`, `orderedList`, `listItem`;
//!   Y.XmlText whose marks `bold`, `italic`, `link` are formatting attributes.
//! - `needs`, `resources`, `partners`, `collaborators`: Y.Arrays of Y.Map items (`id`, `text` as
//!   Y.Text, `author`, `authorId`, `createdAt`, `votes` as Y.Map participantId -> true, and each
//!   list's extra fields).
//! - Collaborators' emails are personal data and live in a second document, `{session}.private`:
//!   root Y.Map `contacts`, item id -> Y.Map {email}.
//!
//! Documents come from any client, so reading never panics: [`read_session`] substitutes defaults
//! and [`validate`] says what it had to substitute.

mod doc;
mod model;
mod read;
mod render;
mod schema;
mod template;
mod validate;
mod write;

pub use model::{Block, Inline, Item, ListKind, Meta, NewItem, NewSession, Problem, Session, UnknownList};
pub use read::read_session;
pub use render::{render_csv, render_json, render_markdown};
pub use schema::{schema, ListFacts, Schema, SCHEMA_JSON};
pub use template::{Template, TemplateError, MAX_LIST_DEPTH, MAX_TEMPLATE_BLOCKS, MAX_TEMPLATE_BYTES};
pub use validate::{validate, MAX_PROBLEMS};
pub use write::{add_item, init_session, insert_item, read_emails, set_email};

/// The name of the private document of a session: `{session}.private`.
pub fn private_doc_name(session: &str) -> String {
    format!("{session}{}", schema().private_suffix)
}
