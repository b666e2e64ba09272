//! The typed model of a session, as read from the document and as exported.

use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// One of the four item lists of a session. Each is a root Y.Array of Y.Map items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ListKind {
    Needs,
    Resources,
    Partners,
    Collaborators,
}

impl ListKind {
    /// All lists, in the order of the document, the exports and `schema.json`.
    pub const ALL: [ListKind; 4] = [ListKind::Needs, ListKind::Resources, ListKind::Partners, ListKind::Collaborators];

    /// The root name of the list (and its key in the JSON export, and the `list=` of the CSV export).
    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Needs => "needs",
            ListKind::Resources => "resources",
            ListKind::Partners => "partners",
            ListKind::Collaborators => "collaborators",
        }
    }

    /// The human title of the list, from `schema.json`.
    pub fn title(self) -> &'static str {
        &crate::schema().list(self).title
    }

    /// The list's fields beyond the common ones, from `schema.json`, in CSV column order.
    pub fn extra_fields(self) -> &'static [String] {
        &crate::schema().list(self).extra_fields
    }
}

impl fmt::Display for ListKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A list name that is not one of [`ListKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown list `{0}`: expected needs, resources, partners or collaborators")]
pub struct UnknownList(pub String);

impl FromStr for ListKind {
    type Err = UnknownList;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ListKind::ALL.into_iter().find(|l| l.as_str() == s).ok_or_else(|| UnknownList(s.to_owned()))
    }
}

/// The `meta` map of a session. All values are strings; `status` is one of `draft`, `live`,
/// `closed` (a reader substitutes `draft` for anything else, and `validate` reports it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub title: String,
    pub event: String,
    pub date: String,
    pub language: String,
    pub status: String,
}

/// One item of a list. The common fields are always there; the list's extra fields are `Some` for
/// the list they belong to (an empty string if the document lacks them) and `None` otherwise, so
/// that the export of each list has exactly its own columns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub text: String,
    pub author: String,
    #[serde(rename = "authorId")]
    pub author_id: String,
    /// Milliseconds since the Unix epoch. Serialised as an integer when it is one, as JavaScript's
    /// `JSON.stringify` would, so that exports from Rust and TypeScript are byte-for-byte alike.
    #[serde(rename = "createdAt", serialize_with = "serialize_ms")]
    pub created_at: f64,
    /// The ids of the participants who voted, sorted by code point.
    pub votes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interests: Option<String>,
}

/// Integral milliseconds as an integer (as JSON.stringify writes them), anything else as a float.
fn serialize_ms<S: Serializer>(ms: &f64, s: S) -> Result<S::Ok, S::Error> {
    match ms_as_int(*ms) {
        Some(i) => s.serialize_i64(i),
        None => s.serialize_f64(*ms),
    }
}

/// `Some` for a finite integral value within JavaScript's safe integer range.
pub(crate) fn ms_as_int(ms: f64) -> Option<i64> {
    const SAFE: f64 = 9_007_199_254_740_991.0;
    (ms.is_finite() && ms.trunc() == ms && ms.abs() <= SAFE).then_some(ms as i64)
}

impl Item {
    /// The value of an extra field by its schema name (`kind`, `format`, ...).
    pub fn extra(&self, field: &str) -> Option<&str> {
        match field {
            "kind" => self.kind.as_deref(),
            "format" => self.format.as_deref(),
            "organization" => self.organization.as_deref(),
            "website" => self.website.as_deref(),
            "name" => self.name.as_deref(),
            "interests" => self.interests.as_deref(),
            _ => None,
        }
    }

    /// Sets an extra field by its schema name; returns false for a name the struct does not have.
    pub(crate) fn set_extra(&mut self, field: &str, value: String) -> bool {
        let slot = match field {
            "kind" => &mut self.kind,
            "format" => &mut self.format,
            "organization" => &mut self.organization,
            "website" => &mut self.website,
            "name" => &mut self.name,
            "interests" => &mut self.interests,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

/// A run of text with its marks (the `bold`, `italic` and `link` formatting attributes of the
/// Y.XmlText, as y-prosemirror writes them). Adjacent runs with the same marks are merged and empty
/// runs dropped, so the same text always reads to the same runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inline {
    pub text: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub bold: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub italic: bool,
    /// The link's href.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Inline {
    /// Plain text without marks.
    pub fn plain(text: impl Into<String>) -> Inline {
        Inline { text: text.into(), ..Inline::default() }
    }

    pub(crate) fn same_marks(&self, other: &Inline) -> bool {
        self.bold == other.bold && self.italic == other.italic && self.link == other.link
    }
}

/// A block of the outline: the ProseMirror/Tiptap nodes `heading`, `paragraph`, `bulletList` and
/// `orderedList` (whose `listItem`s each hold blocks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Block {
    Heading { level: u8, content: Vec<Inline> },
    Paragraph { content: Vec<Inline> },
    BulletList { items: Vec<Vec<Block>> },
    OrderedList { items: Vec<Vec<Block>> },
}

impl Block {
    /// The ProseMirror node name (also the `type` of the export).
    pub fn node_name(&self) -> &'static str {
        match self {
            Block::Heading { .. } => "heading",
            Block::Paragraph { .. } => "paragraph",
            Block::BulletList { .. } => "bulletList",
            Block::OrderedList { .. } => "orderedList",
        }
    }

    /// This block and every block nested in it.
    pub fn count(&self) -> usize {
        match self {
            Block::Heading { .. } | Block::Paragraph { .. } => 1,
            Block::BulletList { items } | Block::OrderedList { items } => {
                1 + items.iter().flatten().map(Block::count).sum::<usize>()
            }
        }
    }
}

/// A whole session document, read leniently (see [`crate::read_session`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub meta: Meta,
    pub outline: Vec<Block>,
    pub needs: Vec<Item>,
    pub resources: Vec<Item>,
    pub partners: Vec<Item>,
    pub collaborators: Vec<Item>,
}

impl Session {
    /// The items of one list.
    pub fn list(&self, list: ListKind) -> &[Item] {
        match list {
            ListKind::Needs => &self.needs,
            ListKind::Resources => &self.resources,
            ListKind::Partners => &self.partners,
            ListKind::Collaborators => &self.collaborators,
        }
    }

    pub(crate) fn list_mut(&mut self, list: ListKind) -> &mut Vec<Item> {
        match list {
            ListKind::Needs => &mut self.needs,
            ListKind::Resources => &mut self.resources,
            ListKind::Partners => &mut self.partners,
            ListKind::Collaborators => &mut self.collaborators,
        }
    }
}

/// One thing wrong with a document, found by [`crate::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Where: `meta.status`, `needs[3].text`, `outline[2][0]` (child indices), ...
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// What a new session starts with; the status is always `draft`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSession {
    pub title: String,
    pub event: String,
    pub date: String,
    pub language: String,
}

/// A new list item. Extra fields that do not belong to the list are ignored; missing ones of the
/// list are written as their defaults (`resource`, `other`, or an empty string), so that every
/// item a server adds is complete.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewItem {
    pub text: String,
    pub author: String,
    #[serde(rename = "authorId")]
    pub author_id: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub organization: Option<String>,
    #[serde(default)]
    pub website: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub interests: Option<String>,
}

impl NewItem {
    pub(crate) fn extra(&self, field: &str) -> Option<&str> {
        match field {
            "kind" => self.kind.as_deref(),
            "format" => self.format.as_deref(),
            "organization" => self.organization.as_deref(),
            "website" => self.website.as_deref(),
            "name" => self.name.as_deref(),
            "interests" => self.interests.as_deref(),
            _ => None,
        }
    }
}
