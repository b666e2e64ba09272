//! Defensive access to the roots and values of a document.
//!
//! A document can come from any client, so nothing here trusts it. Two things about yrs shape this
//! code: a root decoded from an update carries no type (yrs reports it as
//! [`Out::UndefinedRef`] until someone asks for it as a map, an array, ...), and asking for a root
//! as a different type than it was created with does not fail but reinterprets it. So a root is
//! taken as the expected type only when it *is* that type or is still untyped, and it is read only
//! through the read-only `ReadTxn::get_*` accessors, which never create anything.

use yrs::types::text::YChange;
use yrs::{Any, Array, ArrayRef, GetString, Map, MapRef, Out, ReadTxn, Text, XmlFragmentRef, XmlTextRef};

/// What a root turned out to be.
pub(crate) enum RootShape<T> {
    /// No such root in the document.
    Missing,
    /// The expected type (or an untyped root read as it).
    Ok(T),
    /// A root created as another type: the name of that type.
    Wrong(&'static str),
}

/// The Yjs name of the type of a value, for messages.
pub(crate) fn type_name(v: &Out) -> &'static str {
    match v {
        Out::Any(Any::Null) => "null",
        Out::Any(Any::Undefined) => "undefined",
        Out::Any(Any::Bool(_)) => "a boolean",
        Out::Any(Any::Number(_)) => "a number",
        Out::Any(Any::String(_)) => "a string",
        Out::Any(Any::Buffer(_)) => "binary data",
        Out::Any(Any::Array(_)) => "a plain array",
        Out::Any(Any::Map(_)) => "a plain object",
        Out::YText(_) => "a Y.Text",
        Out::YArray(_) => "a Y.Array",
        Out::YMap(_) => "a Y.Map",
        Out::YXmlElement(_) => "a Y.XmlElement",
        Out::YXmlFragment(_) => "a Y.XmlFragment",
        Out::YXmlText(_) => "a Y.XmlText",
        Out::YDoc(_) => "a subdocument",
        #[allow(unreachable_patterns)]
        _ => "an unknown type",
    }
}

pub(crate) fn root_map<T: ReadTxn>(txn: &T, name: &str) -> RootShape<MapRef> {
    match txn.get(name) {
        None => RootShape::Missing,
        Some(Out::YMap(m)) => RootShape::Ok(m),
        Some(Out::UndefinedRef(_)) => txn.get_map(name).map_or(RootShape::Missing, RootShape::Ok),
        Some(other) => RootShape::Wrong(type_name(&other)),
    }
}

pub(crate) fn root_array<T: ReadTxn>(txn: &T, name: &str) -> RootShape<ArrayRef> {
    match txn.get(name) {
        None => RootShape::Missing,
        Some(Out::YArray(a)) => RootShape::Ok(a),
        Some(Out::UndefinedRef(_)) => txn.get_array(name).map_or(RootShape::Missing, RootShape::Ok),
        Some(other) => RootShape::Wrong(type_name(&other)),
    }
}

pub(crate) fn root_fragment<T: ReadTxn>(txn: &T, name: &str) -> RootShape<XmlFragmentRef> {
    match txn.get(name) {
        None => RootShape::Missing,
        Some(Out::YXmlFragment(f)) => RootShape::Ok(f),
        Some(Out::UndefinedRef(_)) => txn.get_xml_fragment(name).map_or(RootShape::Missing, RootShape::Ok),
        Some(other) => RootShape::Wrong(type_name(&other)),
    }
}

/// The number of live keyed entries of a root, whatever its type (an untyped root may carry both
/// keyed and sequence content when clients disagree about its type).
pub(crate) fn root_keyed_len<T: ReadTxn>(txn: &T, name: &str) -> u32 {
    txn.get_map(name).map_or(0, |m| m.len(txn))
}

/// The length of a root's sequence content, whatever its type.
pub(crate) fn root_sequence_len<T: ReadTxn>(txn: &T, name: &str) -> u32 {
    txn.get_array(name).map_or(0, |a| a.len(txn))
}

/// A number, from an integer or a float.
pub(crate) fn any_number(v: &Any) -> Option<f64> {
    match v {
        Any::Number(n) => Some(match *n {
            yrs::any::Number::Int(i) => i as f64,
            yrs::any::Number::Float(f) => f,
        }),
        _ => None,
    }
}

pub(crate) fn out_number(v: &Out) -> Option<f64> {
    match v {
        Out::Any(a) => any_number(a),
        _ => None,
    }
}

pub(crate) fn out_string(v: &Out) -> Option<String> {
    match v {
        Out::Any(Any::String(s)) => Some(s.to_string()),
        _ => None,
    }
}

pub(crate) fn map_string<T: ReadTxn>(txn: &T, m: &MapRef, key: &str) -> Option<String> {
    m.get(txn, key).as_ref().and_then(out_string)
}

/// The text of an item: a Y.Text, or (leniently, for documents written by simpler tools) a plain
/// string.
pub(crate) fn text_value<T: ReadTxn>(txn: &T, v: &Out) -> Option<String> {
    match v {
        Out::YText(t) => Some(t.get_string(txn)),
        Out::Any(Any::String(s)) => Some(s.to_string()),
        _ => None,
    }
}

/// The children of an XML node (fragment, element), including values that are not XML nodes (a
/// hostile client can push anything into the sequence; the XML iterator of yrs stops at the first
/// such value, the array view does not).
pub(crate) fn xml_children<T: ReadTxn, X: AsRef<ArrayRef>>(txn: &T, node: &X) -> Vec<Out> {
    node.as_ref().iter(txn).collect()
}

/// A formatted run of an XML text: its string (None for embeds) and its formatting attributes.
pub(crate) struct Run {
    pub text: Option<String>,
    pub attrs: Vec<(String, Any)>,
}

pub(crate) fn text_runs<T: ReadTxn>(txn: &T, text: &XmlTextRef) -> Vec<Run> {
    text.diff(txn, YChange::identity)
        .into_iter()
        .map(|d| Run {
            text: match d.insert {
                Out::Any(Any::String(s)) => Some(s.to_string()),
                _ => None,
            },
            attrs: {
                // Sorted, so that marks are read in the same order every time (and by the
                // TypeScript model, which sorts the same way).
                let mut attrs: Vec<(String, Any)> = d
                    .attributes
                    .map(|a| a.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
                    .unwrap_or_default();
                attrs.sort_by(|a, b| a.0.cmp(&b.0));
                attrs
            },
        })
        .collect()
}

/// The mark name of a formatting attribute key. y-prosemirror writes marks that may overlap as
/// `name--hash`; the name is the part before `--`.
pub(crate) fn mark_name(key: &str) -> &str {
    key.split_once("--").map_or(key, |(name, _)| name)
}

/// Whether a mark's value turns the mark on: y-prosemirror writes the mark's attrs (`{}` for bold);
/// `null` and `false` mean off.
pub(crate) fn mark_on(v: &Any) -> bool {
    !matches!(v, Any::Null | Any::Undefined | Any::Bool(false))
}

/// The href of a `link` mark: the `href` of its attrs object, or a bare string.
pub(crate) fn link_href(v: &Any) -> Option<String> {
    match v {
        Any::Map(m) => match m.get("href") {
            Some(Any::String(s)) => Some(s.to_string()),
            _ => None,
        },
        Any::String(s) => Some(s.to_string()),
        _ => None,
    }
}

/// The level of a heading from its `level` attribute: y-prosemirror stores attrs as they are, so a
/// number, but other writers store strings. Anything but an integer in range is `None`.
pub(crate) fn heading_level(v: Option<&Out>) -> Option<u8> {
    let s = crate::schema();
    let n = match v? {
        Out::Any(Any::String(t)) => {
            let t: &str = t;
            if t.len() == 1 && t.as_bytes()[0].is_ascii_digit() {
                f64::from(t.as_bytes()[0] - b'0')
            } else {
                return None;
            }
        }
        other => out_number(other)?,
    };
    (n.trunc() == n && n >= f64::from(s.heading_min) && n <= f64::from(s.heading_max)).then_some(n as u8)
}
