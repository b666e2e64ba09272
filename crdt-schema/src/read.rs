//! Reading a document into the typed model, leniently.
//!
//! The rules here are mirrored exactly by `readSession` in `ts/session.ts`: the two are checked
//! against each other by the cross-language fixtures, so a change to one is a change to both.

use crate::doc::{self, RootShape};
use crate::model::{Block, Inline, Item, ListKind, Meta, Session};
use crate::schema;
use yrs::{Any, Array, Map, MapRef, Out, ReadTxn, Xml};

/// Reads a session document. Never panics and never fails: whatever a client wrote, the result is
/// a well-formed [`Session`] (which [`crate::render_json`] turns into an export that conforms to
/// `schema.json`). Missing or wrong-typed values become defaults: strings become `""`, numbers `0`,
/// an unknown status `draft`, an unknown resource kind `resource` and format `other`; list entries
/// that are not Y.Maps are skipped; an item's `text` may be a Y.Text or a plain string. Outline nodes
/// outside the vocabulary are read through: their children are read in their place, so no text is
/// lost. [`crate::validate`] reports every one of these substitutions.
pub fn read_session<T: ReadTxn>(txn: &T) -> Session {
    let mut session = Session { meta: read_meta(txn), outline: read_outline(txn), ..Session::default() };
    for list in ListKind::ALL {
        *session.list_mut(list) = read_list(txn, list);
    }
    session
}

fn read_meta<T: ReadTxn>(txn: &T) -> Meta {
    let s = schema();
    let mut meta = Meta { status: s.default_status.clone(), ..Meta::default() };
    let RootShape::Ok(map) = doc::root_map(txn, "meta") else { return meta };
    let get = |k: &str| doc::map_string(txn, &map, k).unwrap_or_default();
    meta.title = get("title");
    meta.event = get("event");
    meta.date = get("date");
    meta.language = get("language");
    let status = get("status");
    if s.statuses.contains(&status) {
        meta.status = status;
    }
    meta
}

fn read_list<T: ReadTxn>(txn: &T, list: ListKind) -> Vec<Item> {
    let RootShape::Ok(array) = doc::root_array(txn, list.as_str()) else { return Vec::new() };
    array
        .iter(txn)
        .filter_map(|v| match v {
            Out::YMap(m) => Some(read_item(txn, list, &m)),
            _ => None,
        })
        .collect()
}

pub(crate) fn read_item<T: ReadTxn>(txn: &T, list: ListKind, m: &MapRef) -> Item {
    let s = schema();
    let string = |k: &str| doc::map_string(txn, m, k).unwrap_or_default();
    let mut item = Item {
        id: string("id"),
        text: m.get(txn, "text").and_then(|v| doc::text_value(txn, &v)).unwrap_or_default(),
        author: string("author"),
        author_id: string("authorId"),
        created_at: m.get(txn, "createdAt").and_then(|v| doc::out_number(&v)).filter(|n| n.is_finite()).unwrap_or(0.0),
        votes: read_votes(txn, m),
        ..Item::default()
    };
    for field in list.extra_fields() {
        let raw = string(field);
        let value = match field.as_str() {
            "kind" if !s.resource_kinds.contains(&raw) => s.default_kind.clone(),
            "format" if !s.resource_formats.contains(&raw) => s.default_format.clone(),
            _ => raw,
        };
        item.set_extra(field, value);
    }
    item
}

/// The participants whose vote is `true`, sorted by code point (Rust's string order; the
/// TypeScript model sorts the same way, not by UTF-16 units).
fn read_votes<T: ReadTxn>(txn: &T, m: &MapRef) -> Vec<String> {
    let Some(Out::YMap(votes)) = m.get(txn, "votes") else { return Vec::new() };
    let mut ids: Vec<String> =
        votes.iter(txn).filter(|(_, v)| matches!(v, Out::Any(Any::Bool(true)))).map(|(k, _)| k.to_owned()).collect();
    ids.sort();
    ids
}

fn read_outline<T: ReadTxn>(txn: &T) -> Vec<Block> {
    let RootShape::Ok(fragment) = doc::root_fragment(txn, &schema().outline_root) else { return Vec::new() };
    let mut blocks = Vec::new();
    read_blocks(txn, &doc::xml_children(txn, &fragment), 1, &mut blocks);
    blocks
}

/// Reads the children of a block container (the fragment, a list item, or an unknown element).
fn read_blocks<T: ReadTxn>(txn: &T, children: &[Out], depth: usize, out: &mut Vec<Block>) {
    if depth > schema().max_depth {
        return;
    }
    for child in children {
        match child {
            Out::YXmlElement(el) => {
                let Some(tag) = el.try_tag() else { continue };
                let kids = doc::xml_children(txn, el);
                match &**tag {
                    "paragraph" => out.push(Block::Paragraph { content: read_inlines(txn, &kids, depth + 1) }),
                    "heading" => out.push(Block::Heading {
                        level: doc::heading_level(el.get_attribute(txn, "level").as_ref())
                            .unwrap_or(schema().heading_default),
                        content: read_inlines(txn, &kids, depth + 1),
                    }),
                    "bulletList" => out.push(Block::BulletList { items: read_list_items(txn, &kids, depth + 1) }),
                    "orderedList" => out.push(Block::OrderedList { items: read_list_items(txn, &kids, depth + 1) }),
                    // A list item out of a list, or a node outside the vocabulary: read through it.
                    _ => read_blocks(txn, &kids, depth + 1, out),
                }
            }
            // Text directly in a block container: read it as a paragraph.
            Out::YXmlText(_) => {
                out.push(Block::Paragraph { content: read_inlines(txn, std::slice::from_ref(child), depth + 1) })
            }
            _ => {}
        }
    }
}

fn read_list_items<T: ReadTxn>(txn: &T, children: &[Out], depth: usize) -> Vec<Vec<Block>> {
    if depth > schema().max_depth {
        return Vec::new();
    }
    let mut items = Vec::new();
    for child in children {
        let mut blocks = Vec::new();
        match child {
            Out::YXmlElement(el) if el.try_tag().is_some_and(|t| **t == *schema().list_item) => {
                read_blocks(txn, &doc::xml_children(txn, el), depth + 1, &mut blocks)
            }
            // Anything else directly in a list is an item of its own.
            Out::YXmlElement(_) | Out::YXmlText(_) => {
                read_blocks(txn, std::slice::from_ref(child), depth + 1, &mut blocks)
            }
            _ => continue,
        }
        items.push(blocks);
    }
    items
}

/// Reads the inline content of a paragraph or heading: the runs of its texts, and of the texts of
/// any elements in it, merged.
fn read_inlines<T: ReadTxn>(txn: &T, children: &[Out], depth: usize) -> Vec<Inline> {
    let mut runs = Vec::new();
    collect_inlines(txn, children, depth, &mut runs);
    merge_runs(runs)
}

fn collect_inlines<T: ReadTxn>(txn: &T, children: &[Out], depth: usize, out: &mut Vec<Inline>) {
    if depth > schema().max_depth {
        return;
    }
    for child in children {
        match child {
            Out::YXmlText(t) => {
                for run in doc::text_runs(txn, t) {
                    let Some(text) = run.text else { continue };
                    let mut inline = Inline::plain(text);
                    for (key, value) in &run.attrs {
                        match doc::mark_name(key) {
                            "bold" => inline.bold |= doc::mark_on(value),
                            "italic" => inline.italic |= doc::mark_on(value),
                            "link" => inline.link = inline.link.take().or_else(|| doc::link_href(value)),
                            _ => {}
                        }
                    }
                    out.push(inline);
                }
            }
            Out::YXmlElement(el) => collect_inlines(txn, &doc::xml_children(txn, el), depth + 1, out),
            _ => {}
        }
    }
}

/// Drops empty runs and joins neighbours with the same marks, so that how a client happened to
/// split its text into items does not show.
pub(crate) fn merge_runs(runs: Vec<Inline>) -> Vec<Inline> {
    let mut merged: Vec<Inline> = Vec::with_capacity(runs.len());
    for run in runs {
        if run.text.is_empty() {
            continue;
        }
        match merged.last_mut() {
            Some(last) if last.same_marks(&run) => last.text.push_str(&run.text),
            _ => merged.push(run),
        }
    }
    merged
}
