//! Checking a document against the schema.

use crate::doc::{self, RootShape};
use crate::model::{ListKind, Problem};
use crate::schema;
use std::collections::HashMap;
use yrs::{Any, Array, Map, MapRef, Out, ReadTxn, Xml};

/// At most this many problems are listed (then one line says how many more there were): a hostile
/// document with a million bad items must not produce a million-line report.
pub const MAX_PROBLEMS: usize = 1000;

/// Lists what is wrong with a session document: roots of the wrong type, items that are not maps or
/// lack an id or text, text that is not a Y.Text, unknown formats, kinds or statuses, outline nodes
/// and marks outside the vocabulary, headings without a valid level, and so on. An empty list means
/// the document is exactly what the schema describes. Never panics, whatever the document holds.
///
/// The list roots may be missing (a root exists in a Yjs document only once something was written
/// to it); `meta` and `outline` are written at creation by [`crate::init_session`], so their absence
/// is reported.
pub fn validate<T: ReadTxn>(txn: &T) -> Vec<Problem> {
    let mut v = Validator { problems: Vec::new(), omitted: 0 };
    v.meta(txn);
    v.outline(txn);
    for list in ListKind::ALL {
        v.list(txn, list);
    }
    if v.omitted > 0 {
        v.problems.push(Problem { path: String::new(), message: format!("… and {} more problems", v.omitted) });
    }
    v.problems
}

struct Validator {
    problems: Vec<Problem>,
    omitted: usize,
}

impl Validator {
    fn report(&mut self, path: impl Into<String>, message: impl Into<String>) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem { path: path.into(), message: message.into() });
        } else {
            self.omitted += 1;
        }
    }

    /// Checks that a root is of the expected type, and that no client also used it as another
    /// type (an untyped root can carry keyed and sequence content at once).
    fn root<R, T: ReadTxn>(
        &mut self,
        txn: &T,
        name: &str,
        shape: RootShape<R>,
        expected: &str,
        keyed: bool,
        required: bool,
    ) -> Option<R> {
        match shape {
            RootShape::Missing => {
                if required {
                    self.report(name, format!("missing: expected {expected}"));
                }
                None
            }
            RootShape::Wrong(found) => {
                self.report(name, format!("expected {expected}, found {found}"));
                None
            }
            RootShape::Ok(r) => {
                if keyed && doc::root_sequence_len(txn, name) > 0 {
                    self.report(
                        name,
                        format!("has sequence content (a client wrote it as an array or text); expected {expected}"),
                    );
                }
                if !keyed && doc::root_keyed_len(txn, name) > 0 {
                    self.report(name, format!("has keyed entries (a client wrote it as a map); expected {expected}"));
                }
                Some(r)
            }
        }
    }

    fn meta<T: ReadTxn>(&mut self, txn: &T) {
        let s = schema();
        let Some(map) = self.root(txn, "meta", doc::root_map(txn, "meta"), "a Y.Map", true, true) else { return };
        for field in &s.meta_fields {
            let path = format!("meta.{field}");
            match map.get(txn, field) {
                None => self.report(path, "missing"),
                Some(Out::Any(Any::String(value))) => {
                    if field == "status" && !s.statuses.iter().any(|st| **st == *value) {
                        self.report(
                            path,
                            format!("unknown status `{value}`: expected one of {}", s.statuses.join(", ")),
                        );
                    }
                }
                Some(other) => self.report(path, format!("expected a string, found {}", doc::type_name(&other))),
            }
        }
    }

    fn outline<T: ReadTxn>(&mut self, txn: &T) {
        let name = &schema().outline_root;
        let Some(fragment) = self.root(txn, name, doc::root_fragment(txn, name), "a Y.XmlFragment", false, true) else {
            return;
        };
        let children = doc::xml_children(txn, &fragment);
        self.blocks(txn, &children, name, 1);
    }

    fn too_deep(&mut self, path: &str, depth: usize) -> bool {
        let max = schema().max_depth;
        if depth > max {
            self.report(path, format!("nested deeper than {max} levels: the rest is not read"));
            return true;
        }
        false
    }

    fn blocks<T: ReadTxn>(&mut self, txn: &T, children: &[Out], path: &str, depth: usize) {
        if self.too_deep(path, depth) {
            return;
        }
        let s = schema();
        for (i, child) in children.iter().enumerate() {
            let path = format!("{path}[{i}]");
            match child {
                Out::YXmlElement(el) => {
                    let Some(tag) = el.try_tag() else {
                        self.report(path, "element without a node name");
                        continue;
                    };
                    let kids = doc::xml_children(txn, el);
                    match &**tag {
                        "paragraph" => self.inlines(txn, &kids, &path, depth + 1),
                        "heading" => {
                            match el.get_attribute(txn, "level") {
                                None => self.report(format!("{path}.level"), "heading without a level"),
                                Some(v) if doc::heading_level(Some(&v)).is_none() => self.report(
                                    format!("{path}.level"),
                                    format!(
                                        "expected an integer from {} to {}, found {}",
                                        s.heading_min,
                                        s.heading_max,
                                        describe(&v)
                                    ),
                                ),
                                Some(_) => {}
                            }
                            self.inlines(txn, &kids, &path, depth + 1)
                        }
                        "bulletList" | "orderedList" => self.list_items(txn, &kids, &path, depth + 1),
                        t if t == s.list_item => {
                            self.report(&path, format!("`{t}` outside a list"));
                            self.blocks(txn, &kids, &path, depth + 1)
                        }
                        other => {
                            self.report(
                                &path,
                                format!("unknown node `{other}`: expected one of {}", s.outline_blocks.join(", ")),
                            );
                            self.blocks(txn, &kids, &path, depth + 1)
                        }
                    }
                }
                Out::YXmlText(_) => self.report(path, "text outside a paragraph or heading"),
                other => self.report(path, format!("expected an outline node, found {}", doc::type_name(other))),
            }
        }
    }

    fn list_items<T: ReadTxn>(&mut self, txn: &T, children: &[Out], path: &str, depth: usize) {
        if self.too_deep(path, depth) {
            return;
        }
        let item = &schema().list_item;
        for (i, child) in children.iter().enumerate() {
            let path = format!("{path}[{i}]");
            match child {
                Out::YXmlElement(el) if el.try_tag().is_some_and(|t| **t == **item) => {
                    self.blocks(txn, &doc::xml_children(txn, el), &path, depth + 1)
                }
                Out::YXmlElement(el) => {
                    let tag = el.try_tag().map_or("?", |t| &**t);
                    self.report(&path, format!("expected a `{item}`, found `{tag}`"));
                    self.blocks(txn, std::slice::from_ref(child), &path, depth)
                }
                other => self.report(path, format!("expected a `{item}`, found {}", doc::type_name(other))),
            }
        }
    }

    fn inlines<T: ReadTxn>(&mut self, txn: &T, children: &[Out], path: &str, depth: usize) {
        if self.too_deep(path, depth) {
            return;
        }
        let s = schema();
        for (i, child) in children.iter().enumerate() {
            let path = format!("{path}[{i}]");
            match child {
                Out::YXmlText(t) => {
                    let mut reported: Vec<String> = Vec::new();
                    for run in doc::text_runs(txn, t) {
                        for (key, value) in &run.attrs {
                            let name = doc::mark_name(key);
                            let message = if !s.marks.iter().any(|m| m == name) {
                                // y-prosemirror's own attribute for showing changes between snapshots.
                                if name == "ychange" {
                                    continue;
                                }
                                format!("unknown mark `{name}`: expected one of {}", s.marks.join(", "))
                            } else if name == "link" && doc::mark_on(value) && doc::link_href(value).is_none() {
                                "link without an href".to_owned()
                            } else {
                                continue;
                            };
                            if !reported.contains(&message) {
                                self.report(&path, message.clone());
                                reported.push(message);
                            }
                        }
                    }
                }
                Out::YXmlElement(el) => {
                    let tag = el.try_tag().map_or("?", |t| &**t);
                    self.report(
                        &path,
                        format!("unexpected node `{tag}` inside a paragraph or heading (its text is read)"),
                    );
                    self.inlines(txn, &doc::xml_children(txn, el), &path, depth + 1)
                }
                other => self.report(path, format!("expected text, found {}", doc::type_name(other))),
            }
        }
    }

    fn list<T: ReadTxn>(&mut self, txn: &T, list: ListKind) {
        let name = list.as_str();
        let Some(array) = self.root(txn, name, doc::root_array(txn, name), "a Y.Array", false, false) else { return };
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, value) in array.iter(txn).enumerate() {
            let path = format!("{name}[{i}]");
            let Out::YMap(m) = value else {
                self.report(path, format!("expected a Y.Map item, found {}", doc::type_name(&value)));
                continue;
            };
            if let Some(Out::Any(Any::String(id))) = m.get(txn, "id") {
                if id.is_empty() {
                    self.report(format!("{path}.id"), "empty id");
                } else if let Some(first) = seen.get(&*id) {
                    self.report(format!("{path}.id"), format!("duplicate id `{id}` (also {name}[{first}])"));
                } else {
                    seen.insert(id.to_string(), i);
                }
            }
            self.item(txn, list, &m, &path);
        }
    }

    fn item<T: ReadTxn>(&mut self, txn: &T, list: ListKind, m: &MapRef, path: &str) {
        let s = schema();
        for field in ["id", "author", "authorId"] {
            self.string_field(txn, m, path, field);
        }
        match m.get(txn, "text") {
            None => self.report(format!("{path}.text"), "missing"),
            Some(Out::YText(_)) => {}
            Some(Out::Any(Any::String(_))) => {
                self.report(format!("{path}.text"), "a plain string: expected a Y.Text (so that edits merge)")
            }
            Some(other) => {
                self.report(format!("{path}.text"), format!("expected a Y.Text, found {}", doc::type_name(&other)))
            }
        }
        match m.get(txn, "createdAt") {
            None => self.report(format!("{path}.createdAt"), "missing"),
            Some(v) => match doc::out_number(&v) {
                Some(n) if n.is_finite() => {}
                Some(_) => self.report(format!("{path}.createdAt"), "not a finite number"),
                None => {
                    self.report(format!("{path}.createdAt"), format!("expected a number, found {}", doc::type_name(&v)))
                }
            },
        }
        match m.get(txn, "votes") {
            None => self.report(format!("{path}.votes"), "missing"),
            Some(Out::YMap(votes)) => {
                let mut bad: Vec<(String, &'static str)> = votes
                    .iter(txn)
                    .filter(|(_, v)| !matches!(v, Out::Any(Any::Bool(true))))
                    .map(|(k, v)| (k.to_owned(), doc::type_name(&v)))
                    .collect();
                bad.sort();
                for (k, found) in bad {
                    self.report(format!("{path}.votes.{k}"), format!("expected true, found {found}"));
                }
            }
            Some(other) => {
                self.report(format!("{path}.votes"), format!("expected a Y.Map, found {}", doc::type_name(&other)))
            }
        }
        for field in list.extra_fields() {
            let Some(value) = self.string_field(txn, m, path, field) else { continue };
            let allowed = match field.as_str() {
                "kind" => &s.resource_kinds,
                "format" => &s.resource_formats,
                _ => continue,
            };
            if !allowed.contains(&value) {
                self.report(
                    format!("{path}.{field}"),
                    format!("unknown {field} `{value}`: expected one of {}", allowed.join(", ")),
                );
            }
        }
    }

    fn string_field<T: ReadTxn>(&mut self, txn: &T, m: &MapRef, path: &str, field: &str) -> Option<String> {
        match m.get(txn, field) {
            None => {
                self.report(format!("{path}.{field}"), "missing");
                None
            }
            Some(Out::Any(Any::String(s))) => Some(s.to_string()),
            Some(other) => {
                self.report(format!("{path}.{field}"), format!("expected a string, found {}", doc::type_name(&other)));
                None
            }
        }
    }
}

/// A value for a message: short scalars as JSON, anything else by its type.
fn describe(v: &Out) -> String {
    match v {
        Out::Any(a @ (Any::Number(_) | Any::Bool(_) | Any::Null)) => a.to_string(),
        Out::Any(Any::String(s)) if s.chars().count() <= 40 => format!("{s:?}"),
        other => doc::type_name(other).to_owned(),
    }
}
