//! Exports: JSON (described by `schema.json`), Markdown, and CSV.

use crate::model::{ms_as_int, Block, Inline, Item, ListKind, Session};
use crate::schema;
use serde_json::{json, Value};

/// The JSON export of a session, the shape `schema.json` describes: `version`, `meta`, `outline`
/// and the four lists. Collaborators' emails are never part of it (they live in the private
/// document). `readSession` of the TypeScript model returns the same value.
pub fn render_json(session: &Session) -> Value {
    let to = |v: Result<Value, serde_json::Error>| v.unwrap_or(Value::Null);
    let mut out = json!({
        "version": schema().version,
        "meta": to(serde_json::to_value(&session.meta)),
        "outline": to(serde_json::to_value(&session.outline)),
    });
    if let Value::Object(map) = &mut out {
        for list in ListKind::ALL {
            map.insert(list.as_str().to_owned(), to(serde_json::to_value(session.list(list))));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Markdown

/// The Markdown export: the meta as YAML front matter, then the outline (headings as `#`, lists as
/// `-` and `1.`, bold, italic, links), then one `##` section per list with each item's text and a
/// line of its author, votes and extra fields. User text is escaped so that it shows as written
/// rather than turning into Markdown; links other than http, https and mailto are shown as text.
pub fn render_markdown(session: &Session) -> String {
    let m = &session.meta;
    let mut out = String::from("---\n");
    for (k, v) in
        [("title", &m.title), ("event", &m.event), ("date", &m.date), ("language", &m.language), ("status", &m.status)]
    {
        // A JSON string is a valid YAML double-quoted scalar, escapes included.
        out.push_str(&format!("{k}: {}\n", serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into())));
    }
    out.push_str("---\n");
    let outline = blocks_lines(&session.outline, true);
    if !outline.is_empty() {
        out.push('\n');
        push_lines(&mut out, &outline);
    }
    for list in ListKind::ALL {
        out.push_str(&format!("\n## {}\n\n", escape(list.title())));
        let items = session.list(list);
        if items.is_empty() {
            out.push_str("*No items.*\n");
        }
        for item in items {
            push_lines(&mut out, &item_lines(list, item));
        }
    }
    out
}

fn push_lines(out: &mut String, lines: &[String]) {
    for l in lines {
        out.push_str(l.trim_end_matches(' '));
        out.push('\n');
    }
}

/// The lines of a sequence of blocks. At the top level blocks are separated by blank lines; inside
/// a list item a list follows its paragraph directly, so that lists stay tight.
fn blocks_lines(blocks: &[Block], top: bool) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for block in blocks {
        let b = block_lines(block);
        if b.is_empty() {
            continue;
        }
        let is_list = matches!(block, Block::BulletList { .. } | Block::OrderedList { .. });
        if !lines.is_empty() && (top || !is_list) {
            lines.push(String::new());
        }
        lines.extend(b);
    }
    lines
}

fn block_lines(block: &Block) -> Vec<String> {
    match block {
        Block::Heading { level, content } => {
            let text = inline_md(content, false);
            let hashes = "#".repeat(usize::from((*level).clamp(1, 6)));
            vec![if text.is_empty() { hashes } else { format!("{hashes} {text}") }]
        }
        Block::Paragraph { content } => {
            let text = inline_md(content, true);
            if text.trim().is_empty() {
                return Vec::new();
            }
            text.lines().map(|l| escape_line_start(l.trim_start())).collect()
        }
        Block::BulletList { items } => list_lines(items, |_| "- ".to_owned()),
        Block::OrderedList { items } => list_lines(items, |i| format!("{}. ", i + 1)),
    }
}

fn list_lines(items: &[Vec<Block>], marker: impl Fn(usize) -> String) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let m = marker(i);
        let pad = " ".repeat(m.len());
        let inner = blocks_lines(item, false);
        if inner.is_empty() {
            lines.push(m.trim_end().to_owned());
            continue;
        }
        for (j, l) in inner.into_iter().enumerate() {
            lines.push(match (j, l.is_empty()) {
                (0, _) => format!("{m}{l}"),
                (_, true) => l,
                _ => format!("{pad}{l}"),
            });
        }
    }
    lines
}

#[derive(Clone, PartialEq)]
enum Mark {
    Link(String),
    Bold,
    Italic,
}

/// Inline runs as Markdown. Marks are opened and closed like tags so that neighbouring runs share
/// them (`**a *b***` rather than `**a*****b***`); whitespace at the edges of a run is moved out of
/// its emphasis, since `** a**` is not bold in Markdown.
fn inline_md(content: &[Inline], breaks: bool) -> String {
    let mut pieces: Vec<(&str, Vec<Mark>)> = Vec::new();
    for inline in content {
        let link = inline.link.as_deref().filter(|h| safe_href(h)).map(|h| Mark::Link(h.to_owned()));
        let mut emphasis = link.clone().into_iter().collect::<Vec<_>>();
        if inline.bold {
            emphasis.push(Mark::Bold);
        }
        if inline.italic {
            emphasis.push(Mark::Italic);
        }
        let plain: Vec<Mark> = link.into_iter().collect();
        let t = inline.text.as_str();
        let core = t.trim();
        if core.is_empty() {
            pieces.push((t, plain));
            continue;
        }
        let start = t.len() - t.trim_start().len();
        let end = start + core.len();
        pieces.push((&t[..start], plain.clone()));
        pieces.push((core, emphasis));
        pieces.push((&t[end..], plain));
    }
    let mut out = String::new();
    let mut open: Vec<Mark> = Vec::new();
    let close = |m: &Mark, out: &mut String| match m {
        Mark::Link(h) => out.push_str(&format!("]({})", href_md(h))),
        Mark::Bold => out.push_str("**"),
        Mark::Italic => out.push('*'),
    };
    for (text, marks) in pieces {
        if text.is_empty() {
            continue;
        }
        let keep = open.iter().position(|m| !marks.contains(m)).unwrap_or(open.len());
        while open.len() > keep {
            if let Some(m) = open.pop() {
                close(&m, &mut out);
            }
        }
        for m in marks {
            if !open.contains(&m) {
                out.push_str(match m {
                    Mark::Link(_) => "[",
                    Mark::Bold => "**",
                    Mark::Italic => "*",
                });
                open.push(m);
            }
        }
        out.push_str(&escape_text(text, breaks));
    }
    while let Some(m) = open.pop() {
        close(&m, &mut out);
    }
    out
}

fn safe_href(h: &str) -> bool {
    let l = h.trim_start().to_ascii_lowercase();
    l.starts_with("https://") || l.starts_with("http://") || l.starts_with("mailto:")
}

fn href_md(h: &str) -> String {
    let mut out = String::with_capacity(h.len());
    for c in h.trim().chars() {
        match c {
            ' ' => out.push_str("%20"),
            '(' => out.push_str("%28"),
            ')' => out.push_str("%29"),
            '<' => out.push_str("%3C"),
            '>' => out.push_str("%3E"),
            '\\' => out.push_str("%5C"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Escapes the characters that are Markdown syntax anywhere in a line. With `breaks`, a newline
/// becomes a hard line break; otherwise a space (headings are one line).
fn escape_text(text: &str, breaks: bool) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '&' => {
                out.push('\\');
                out.push(c);
            }
            '\n' if breaks => out.push_str("\\\n"),
            '\n' | '\r' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn escape(text: &str) -> String {
    escape_text(text, false)
}

/// Escapes what is Markdown syntax only at the start of a line: headings, quotes, list markers,
/// setext underlines.
fn escape_line_start(line: &str) -> String {
    let first = line.chars().next();
    if matches!(first, Some('#' | '>' | '-' | '+' | '=')) {
        return format!("\\{line}");
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && matches!(line.as_bytes().get(digits), Some(b'.' | b')')) {
        return format!("{}\\{}", &line[..digits], &line[digits..]);
    }
    line.to_owned()
}

fn item_lines(list: ListKind, item: &Item) -> Vec<String> {
    let mut text: Vec<String> = item
        .text
        .split('\n')
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .map(|l| escape_line_start(&escape(l)))
        .collect();
    if text.is_empty() {
        text.push("*(no text)*".to_owned());
    }
    let mut parts = Vec::new();
    if !item.author.trim().is_empty() {
        parts.push(format!("by {}", escape(item.author.trim())));
    }
    let n = item.votes.len();
    parts.push(format!("{n} {}", if n == 1 { "vote" } else { "votes" }));
    for field in list.extra_fields() {
        let Some(value) = item.extra(field).map(str::trim).filter(|v| !v.is_empty()) else { continue };
        let shown = if field == "website"
            && safe_href(value)
            && !value.contains(|c: char| c.is_whitespace() || c == '<' || c == '>')
        {
            format!("<{value}>")
        } else {
            escape(value)
        };
        parts.push(format!("{}: {shown}", label(field)));
    }
    let mut lines = Vec::with_capacity(text.len() + 1);
    for (i, l) in text.into_iter().enumerate() {
        // Each line ends with a hard break (`\`), so the item shows its lines and then its details.
        lines.push(format!("{}{l}\\", if i == 0 { "- " } else { "  " }));
    }
    lines.push(format!("  *{}*", parts.join(" · ")));
    lines
}

/// `organization` -> `Organization`.
fn label(field: &str) -> String {
    let mut c = field.chars();
    c.next().map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}

// ---------------------------------------------------------------------------------------------
// CSV

/// One list as CSV (RFC 4180: comma-separated, CRLF line ends, fields with a quote, comma or line
/// break quoted with `"` and inner quotes doubled). Columns: `id,text,author,authorId,createdAt,votes`
/// and the list's extra fields, in `schema.json` order. `createdAt` is in milliseconds since the
/// epoch, `votes` is the number of votes.
///
/// Formula injection: a spreadsheet treats a cell starting with `=`, `+`, `-` or `@` (or a tab or
/// carriage return) as a formula, so any text a participant wrote could run as one when the export
/// is opened. Every text cell that starts with one of those characters is prefixed with a single
/// quote `'`, which spreadsheets show as text (OWASP's recommendation). The numeric columns are
/// written by us and never prefixed.
pub fn render_csv(session: &Session, list: ListKind) -> String {
    let s = schema();
    let extras = list.extra_fields();
    let mut out = String::new();
    let header: Vec<String> = s.base_fields.iter().chain(extras.iter()).map(|h| csv_cell(h)).collect();
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    for item in session.list(list) {
        let created = match ms_as_int(item.created_at) {
            Some(i) => i.to_string(),
            None if item.created_at.is_finite() => item.created_at.to_string(),
            None => String::new(),
        };
        let mut row = vec![
            csv_cell(&item.id),
            csv_cell(&item.text),
            csv_cell(&item.author),
            csv_cell(&item.author_id),
            created,
            item.votes.len().to_string(),
        ];
        row.extend(extras.iter().map(|f| csv_cell(item.extra(f).unwrap_or(""))));
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

/// A text cell: guarded against formula injection, then quoted if needed.
fn csv_cell(value: &str) -> String {
    let guarded =
        if value.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{value}") } else { value.to_owned() };
    if guarded.contains(['"', ',', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}
