//! Writing to a session document: creation, items, and the private contacts document.

use crate::doc::{self, RootShape};
use crate::model::{Block, Inline, ListKind, NewItem, NewSession};
use crate::schema;
use crate::template::Template;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use yrs::types::Attrs;
use yrs::{
    Any, Array, Map, MapPrelim, MapRef, Number, Out, ReadTxn, Text, TextPrelim, TransactionMut, WriteTxn, Xml,
    XmlElementPrelim, XmlElementRef, XmlFragment, XmlTextPrelim,
};

/// Writes a new session: `meta` (with status `draft`) and the outline from `template`, in which
/// `{{title}}`, `{{event}}`, `{{date}}` and `{{language}}` are replaced by the session's values.
///
/// The server applies this exactly once, when it creates the session, before any link exists: an
/// outline written by two replicas would be merged as two copies, so clients never do it. As a
/// guard against a second call on the same document, a document that already has a status or an
/// outline is left as it is.
pub fn init_session(txn: &mut TransactionMut, meta: &NewSession, template: &Template) {
    let s = schema();
    let initialised = matches!(doc::root_map(txn, "meta"), RootShape::Ok(m) if m.contains_key(txn, "status"))
        || matches!(doc::root_fragment(txn, &s.outline_root), RootShape::Ok(f) if f.len(txn) > 0);
    if initialised
        || matches!(doc::root_map(txn, "meta"), RootShape::Wrong(_))
        || matches!(doc::root_fragment(txn, &s.outline_root), RootShape::Wrong(_))
    {
        return;
    }
    let map = txn.get_or_insert_map("meta");
    map.insert(txn, "title", meta.title.as_str());
    map.insert(txn, "event", meta.event.as_str());
    map.insert(txn, "date", meta.date.as_str());
    map.insert(txn, "language", meta.language.as_str());
    map.insert(txn, "status", s.default_status.as_str());

    let vars: [(&str, &str); 4] =
        [("title", &meta.title), ("event", &meta.event), ("date", &meta.date), ("language", &meta.language)];
    let outline = txn.get_or_insert_xml_fragment(s.outline_root.as_str());
    for block in template.blocks() {
        write_block(txn, &outline, block, &vars);
    }
}

/// Replaces `{{name}}` placeholders in one pass (so a value containing `{{...}}` is left as is);
/// unknown placeholders stay as they are.
pub(crate) fn substitute(text: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}").and_then(|end| {
            let name = after[..end].trim();
            vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (end, *v))
        }) {
            Some((end, value)) => {
                out.push_str(value);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn write_block<F: XmlFragment>(txn: &mut TransactionMut, parent: &F, block: &Block, vars: &[(&str, &str)]) {
    let el: XmlElementRef = parent.push_back(txn, XmlElementPrelim::empty(block.node_name()));
    match block {
        Block::Paragraph { content } => write_inlines(txn, &el, content, vars),
        Block::Heading { level, content } => {
            // y-prosemirror stores node attrs as they are: the level is a number.
            el.insert_attribute(txn, "level", Any::Number(Number::Int(i64::from(*level))));
            write_inlines(txn, &el, content, vars)
        }
        Block::BulletList { items } | Block::OrderedList { items } => {
            for item in items {
                let li: XmlElementRef = el.push_back(txn, XmlElementPrelim::empty(schema().list_item.as_str()));
                for b in item {
                    write_block(txn, &li, b, vars);
                }
            }
        }
    }
}

/// Writes runs as y-prosemirror does: one Y.XmlText whose marks are formatting attributes holding
/// the mark's attrs (`{}` for bold and italic, `{href}` for a link). An empty paragraph has no text
/// node at all, as in y-prosemirror.
fn write_inlines(txn: &mut TransactionMut, el: &XmlElementRef, content: &[Inline], vars: &[(&str, &str)]) {
    if content.is_empty() {
        return;
    }
    let text = el.push_back(txn, XmlTextPrelim::new(""));
    for inline in content {
        let chunk = substitute(&inline.text, vars);
        let mut attrs = Attrs::new();
        if inline.bold {
            attrs.insert(Arc::from("bold"), Any::Map(Arc::new(HashMap::new())));
        }
        if inline.italic {
            attrs.insert(Arc::from("italic"), Any::Map(Arc::new(HashMap::new())));
        }
        if let Some(href) = &inline.link {
            let mut link = HashMap::new();
            link.insert("href".to_owned(), Any::String(Arc::from(href.as_str())));
            attrs.insert(Arc::from("link"), Any::Map(Arc::new(link)));
        }
        let at = text.len(txn);
        text.insert_with_attributes(txn, at, &chunk, attrs);
    }
}

/// Adds an item at the end of a list, with a fresh random id (a UUID v4, as the TypeScript model's
/// `crypto.randomUUID()`) and `createdAt` now. Returns the id.
pub fn add_item(txn: &mut TransactionMut, list: ListKind, item: NewItem) -> String {
    let id = new_id();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_millis() as f64);
    insert_item(txn, list, &id, now, item);
    id
}

/// Adds an item with a given id and creation time: for imports, and for reproducible fixtures.
/// [`add_item`] is this with a fresh id and the current time.
///
/// Extra fields of other lists are ignored; the list's own extra fields are always written, with
/// their defaults (`resource`, `other`, or `""`) when not given, so that the item is complete. An
/// unknown kind or format is written as given: checking user input is the caller's job, and
/// [`crate::validate`] reports it.
///
/// If the list root was created as another type (a broken or hostile document), nothing is
/// written: adding to it would only make it worse.
pub fn insert_item(txn: &mut TransactionMut, list: ListKind, id: &str, created_at: f64, item: NewItem) {
    let s = schema();
    if let RootShape::Wrong(_) = doc::root_array(txn, list.as_str()) {
        return;
    }
    let array = txn.get_or_insert_array(list.as_str());
    let map: MapRef = array.push_back(txn, MapPrelim::default());
    // Fields are written one by one, in a fixed order, so that the same calls make the same update.
    map.insert(txn, "id", id);
    map.insert(txn, "text", TextPrelim::new(item.text.as_str()));
    map.insert(txn, "author", item.author.as_str());
    map.insert(txn, "authorId", item.author_id.as_str());
    map.insert(txn, "createdAt", Any::Number(Number::Float(created_at)));
    map.insert(txn, "votes", MapPrelim::default());
    for field in list.extra_fields() {
        let value = match (field.as_str(), item.extra(field)) {
            (_, Some(v)) => v.to_owned(),
            ("kind", None) => s.default_kind.clone(),
            ("format", None) => s.default_format.clone(),
            (_, None) => String::new(),
        };
        map.insert(txn, field.as_str(), value);
    }
}

/// A random UUID v4 in the usual text form.
fn new_id() -> String {
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Sets a collaborator's email in the private document (`{session}.private`, root Y.Map
/// `contacts`, key = collaborator item id, value = Y.Map {email}). An empty email removes the
/// entry: the address is personal data, and removing it is how a person's wish to be forgotten is
/// honoured.
pub fn set_email(private_txn: &mut TransactionMut, item_id: &str, email: &str) {
    let root = &schema().contacts_root;
    if let RootShape::Wrong(_) = doc::root_map(private_txn, root) {
        return;
    }
    let contacts = private_txn.get_or_insert_map(root.as_str());
    if email.is_empty() {
        contacts.remove(private_txn, item_id);
        return;
    }
    if let Some(Out::YMap(entry)) = contacts.get(private_txn, item_id) {
        entry.insert(private_txn, "email", email);
    } else {
        let entry: MapRef = contacts.insert(private_txn, item_id, MapPrelim::default());
        entry.insert(private_txn, "email", email);
    }
}

/// All emails of the private document, by collaborator item id. Entries without a string email are
/// left out.
pub fn read_emails<T: ReadTxn>(private_txn: &T) -> BTreeMap<String, String> {
    let RootShape::Ok(contacts) = doc::root_map(private_txn, &schema().contacts_root) else { return BTreeMap::new() };
    contacts
        .iter(private_txn)
        .filter_map(|(id, v)| {
            let email = match v {
                Out::YMap(m) => doc::map_string(private_txn, &m, "email"),
                Out::Any(Any::Map(m)) => match m.get("email") {
                    Some(Any::String(s)) => Some(s.to_string()),
                    _ => None,
                },
                _ => None,
            }?;
            Some((id.to_owned(), email))
        })
        .collect()
}
