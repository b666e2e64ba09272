//! The schema facts, read from `schema.json`.
//!
//! `schema.json` is the one place where the document's vocabulary is written down: it is a JSON
//! Schema of the export (so tools can check an export) and, through its `$defs` and `x-commonpad-*`
//! keywords, the list of roots, lists, fields, statuses, kinds, formats and outline nodes that the
//! Rust crate and the TypeScript model both read. Nothing here repeats those values; the few names
//! the code has to know by meaning (the variants of [`crate::ListKind`], [`crate::Block`] and the
//! marks of [`crate::Inline`]) are checked against this file by the tests.

use serde_json::Value;
use std::sync::LazyLock;

/// The text of `schema.json`, as shipped with this crate (for serving it, or for checking exports).
pub const SCHEMA_JSON: &str = include_str!("../schema.json");

/// One of the four lists, as `schema.json` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFacts {
    /// The root name of the list's Y.Array, also its key in the export.
    pub name: String,
    /// A human title, used as the section heading of the Markdown export.
    pub title: String,
    /// The list's fields beyond the common ones, in CSV column order.
    pub extra_fields: Vec<String>,
}

/// The facts of `schema.json` that code needs, parsed once.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Version of the export shape (`version` in the export).
    pub version: u64,
    /// The fields of the `meta` map, in order.
    pub meta_fields: Vec<String>,
    /// Allowed values of `meta.status`.
    pub statuses: Vec<String>,
    /// What a reader uses for a missing or unknown status.
    pub default_status: String,
    /// Allowed values of a resource's `kind`.
    pub resource_kinds: Vec<String>,
    /// What a reader (and `add_item`) uses for a missing or unknown kind.
    pub default_kind: String,
    /// Allowed values of a resource's `format`.
    pub resource_formats: Vec<String>,
    /// What a reader (and `add_item`) uses for a missing or unknown format.
    pub default_format: String,
    /// The fields every item has, in CSV column order.
    pub base_fields: Vec<String>,
    /// The four lists, in document order.
    pub lists: Vec<ListFacts>,
    /// Root name of the outline's Y.XmlFragment.
    pub outline_root: String,
    /// Block node names of the outline.
    pub outline_blocks: Vec<String>,
    /// Node name of a list item.
    pub list_item: String,
    /// Smallest and largest heading level, and the level used when the attribute is missing or bad.
    pub heading_min: u8,
    pub heading_max: u8,
    pub heading_default: u8,
    /// Mark names (formatting attributes of Y.XmlText).
    pub marks: Vec<String>,
    /// Deepest nesting a reader follows; deeper content of a hostile document is not read.
    pub max_depth: usize,
    /// Suffix of the private document's name (`{session}.private`).
    pub private_suffix: String,
    /// Root Y.Map of the private document: collaborator item id -> Y.Map {email}.
    pub contacts_root: String,
}

/// The parsed schema. The file is compiled into the crate and checked by the tests, so a failure to
/// parse it is a build defect, not a runtime condition.
pub fn schema() -> &'static Schema {
    static SCHEMA: LazyLock<Schema> =
        LazyLock::new(|| parse(SCHEMA_JSON).expect("schema.json shipped with commonpad-schema is malformed"));
    &SCHEMA
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array()?.iter().map(|s| s.as_str().map(str::to_owned)).collect()
}

fn string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// Parses the facts out of a schema document. Returns a description of the first missing piece.
pub(crate) fn parse(text: &str) -> Result<Schema, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let defs = &root["$defs"];
    let need = |v: Option<Vec<String>>, what: &str| v.ok_or_else(|| format!("missing {what}"));
    let need1 = |v: Option<String>, what: &str| v.ok_or_else(|| format!("missing {what}"));
    let lists = root["x-commonpad-lists"]
        .as_array()
        .ok_or("missing x-commonpad-lists")?
        .iter()
        .map(|l| {
            let name = string(&l["name"]).ok_or("list without name")?;
            let title = string(&l["title"]).ok_or("list without title")?;
            let item = l["item"].as_str().ok_or("list without item")?;
            let def = &defs[item];
            if def.is_null() {
                return Err(format!("list {name}: no $defs/{item}"));
            }
            let extra_fields = match &def["required"] {
                Value::Null => Vec::new(),
                r => strings(r).ok_or(format!("list {name}: bad required"))?,
            };
            Ok(ListFacts { name, title, extra_fields })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let outline = &root["x-commonpad-outline"];
    let levels = &outline["headingLevels"];
    let level =
        |k: &str| levels[k].as_u64().and_then(|n| u8::try_from(n).ok()).ok_or(format!("missing headingLevels.{k}"));
    let private = &root["x-commonpad-private"];
    Ok(Schema {
        version: root["x-commonpad-version"].as_u64().ok_or("missing x-commonpad-version")?,
        meta_fields: need(strings(&defs["meta"]["required"]), "$defs/meta/required")?,
        statuses: need(strings(&defs["status"]["enum"]), "$defs/status/enum")?,
        default_status: need1(string(&defs["status"]["default"]), "$defs/status/default")?,
        resource_kinds: need(strings(&defs["resourceKind"]["enum"]), "$defs/resourceKind/enum")?,
        default_kind: need1(string(&defs["resourceKind"]["default"]), "$defs/resourceKind/default")?,
        resource_formats: need(strings(&defs["resourceFormat"]["enum"]), "$defs/resourceFormat/enum")?,
        default_format: need1(string(&defs["resourceFormat"]["default"]), "$defs/resourceFormat/default")?,
        base_fields: need(strings(&defs["itemBase"]["required"]), "$defs/itemBase/required")?,
        lists,
        outline_root: need1(string(&outline["root"]), "x-commonpad-outline.root")?,
        outline_blocks: need(strings(&outline["blocks"]), "x-commonpad-outline.blocks")?,
        list_item: need1(string(&outline["listItem"]), "x-commonpad-outline.listItem")?,
        heading_min: level("min")?,
        heading_max: level("max")?,
        heading_default: level("default")?,
        marks: need(strings(&outline["marks"]), "x-commonpad-outline.marks")?,
        max_depth: outline["maxDepth"].as_u64().ok_or("missing x-commonpad-outline.maxDepth")? as usize,
        private_suffix: need1(string(&private["suffix"]), "x-commonpad-private.suffix")?,
        contacts_root: need1(string(&private["root"]), "x-commonpad-private.root")?,
    })
}

impl Schema {
    /// The facts of one list.
    pub fn list(&self, list: crate::ListKind) -> &ListFacts {
        // ListKind::ALL and x-commonpad-lists are in the same order (checked by the tests); the
        // name lookup keeps this correct even if someone reorders the file.
        self.lists.iter().find(|l| l.name == list.as_str()).unwrap_or(&self.lists[list as usize])
    }

    /// Whether `field` is one of the list's extra fields.
    pub fn has_extra(&self, list: crate::ListKind, field: &str) -> bool {
        self.list(list).extra_fields.iter().any(|f| f == field)
    }
}
