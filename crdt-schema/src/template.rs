//! Session templates: the outline a new session starts with, written in a small Markdown subset.

use crate::model::{Block, Inline};
use crate::read::merge_runs;

/// Largest template accepted, in bytes: a template is a page of prompts, not a book, and it is
/// applied to every new session.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
/// Most blocks (headings, paragraphs, lists, and the blocks inside list items) in a template.
pub const MAX_TEMPLATE_BLOCKS: usize = 500;
/// Deepest list nesting in a template.
pub const MAX_LIST_DEPTH: usize = 4;

/// Why a Markdown template was refused. The messages are shown to whoever uploaded the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the template is {size} bytes; templates are limited to {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("the template has more than {max} blocks (headings, paragraphs, lists and list items)")]
    TooManyBlocks { max: usize },
    #[error("the template is empty: write at least one heading, paragraph or list")]
    Empty,
    #[error("line {line}: lists can be nested at most {max} levels deep")]
    TooDeep { line: usize, max: usize },
    #[error("line {line}: {what} are not supported in templates; use headings (#), paragraphs and lists (-, *, 1.)")]
    Unsupported { line: usize, what: &'static str },
    #[error("line {line}: control characters are not allowed in templates")]
    ControlCharacter { line: usize },
}

/// The outline a session starts with, as blocks. [`crate::init_session`] writes it into the
/// document, replacing `{{title}}`, `{{event}}`, `{{date}}` and `{{language}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    blocks: Vec<Block>,
}

/// The built-in template, kept as Markdown so that it reads like what it produces.
const BUILTIN: &str = include_str!("../templates/oer-session.md");

impl Template {
    /// The template of a typical open-education session (`templates/oer-session.md`).
    pub fn builtin() -> Template {
        // The built-in text is checked by the tests; should it ever fail to parse, a title-only
        // outline is better than a server that cannot create sessions.
        Template::from_markdown(BUILTIN).unwrap_or_else(|_| Template {
            blocks: vec![Block::Heading { level: 1, content: vec![Inline::plain("{{title}}")] }],
        })
    }

    /// A template from blocks (already checked by the caller).
    pub fn from_blocks(blocks: Vec<Block>) -> Template {
        Template { blocks }
    }

    /// The blocks of the outline.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// Parses a template written in a Markdown subset:
    ///
    /// - `#` to `######` headings;
    /// - bullet lists (`-`, `*` or `+`) and ordered lists (`1.` or `1)`), nested by indenting the
    ///   inner items by two or more spaces; indented lines under an item continue it;
    /// - paragraphs (consecutive lines are joined by a space; a blank line ends a paragraph);
    /// - inline `**bold**`, `*italic*` (or `_italic_`), `[text](https://…)` and `\` escapes.
    ///
    /// Thematic breaks (`---`) are skipped. Code blocks, block quotes and tables are refused with a
    /// line number rather than imported as something else, and so are inputs over
    /// [`MAX_TEMPLATE_BYTES`] or [`MAX_TEMPLATE_BLOCKS`].
    pub fn from_markdown(md: &str) -> Result<Template, TemplateError> {
        if md.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError::TooLarge { size: md.len(), max: MAX_TEMPLATE_BYTES });
        }
        let mut p = Parser::default();
        for (i, raw) in md.lines().enumerate() {
            p.line(i + 1, raw)?;
            // Stop early rather than build a huge tree from a small hostile input.
            if p.count > MAX_TEMPLATE_BLOCKS {
                return Err(TemplateError::TooManyBlocks { max: MAX_TEMPLATE_BLOCKS });
            }
        }
        p.close_all();
        let total: usize = p.blocks.iter().map(Block::count).sum();
        if total > MAX_TEMPLATE_BLOCKS {
            return Err(TemplateError::TooManyBlocks { max: MAX_TEMPLATE_BLOCKS });
        }
        if p.blocks.is_empty() {
            return Err(TemplateError::Empty);
        }
        Ok(Template { blocks: p.blocks })
    }
}

/// An open list while parsing.
struct OpenList {
    ordered: bool,
    /// Column of the list marker.
    indent: usize,
    items: Vec<Vec<Block>>,
}

#[derive(Default)]
struct Parser {
    blocks: Vec<Block>,
    /// Open lists, outermost first.
    lists: Vec<OpenList>,
    /// Lines of the paragraph being collected (at top level, or inside the innermost list item).
    para: Vec<String>,
    /// A blank line was seen since the last content line.
    blank: bool,
    /// Blocks made so far (an early guard; the exact count is taken at the end).
    count: usize,
}

impl Parser {
    fn line(&mut self, n: usize, raw: &str) -> Result<(), TemplateError> {
        if raw.chars().any(|c| c.is_control() && c != '\t' && c != '\r') {
            return Err(TemplateError::ControlCharacter { line: n });
        }
        let expanded = raw.replace('\t', "    ");
        let line = expanded.trim_end();
        let indent = line.len() - line.trim_start().len();
        let body = line.trim_start();
        if body.is_empty() {
            self.flush_para();
            self.blank = true;
            return Ok(());
        }
        if body.starts_with("```")
            || body.starts_with("~~~")
            || (indent >= 4 && self.lists.is_empty() && self.para.is_empty())
        {
            return Err(TemplateError::Unsupported { line: n, what: "code blocks" });
        }
        if body.starts_with('>') {
            return Err(TemplateError::Unsupported { line: n, what: "block quotes" });
        }
        if body.starts_with('|') {
            return Err(TemplateError::Unsupported { line: n, what: "tables" });
        }
        if indent < 4 && is_thematic_break(body) {
            self.flush_para();
            self.close_all();
            self.blank = false;
            return Ok(());
        }
        if indent < 4 {
            if let Some((level, text)) = heading(body) {
                self.flush_para();
                self.close_all();
                self.push(Block::Heading { level, content: inlines(text) });
                self.blank = false;
                return Ok(());
            }
        }
        if let Some((ordered, text)) = list_marker(body) {
            self.flush_para();
            self.item(n, indent, ordered, text)?;
            self.blank = false;
            return Ok(());
        }
        // Text: continues the current paragraph, or an item it is indented under, or starts one.
        if !self.lists.is_empty() && self.blank && indent < self.lists[0].indent + 2 {
            self.close_all();
        } else if !self.lists.is_empty() && self.blank {
            // An indented paragraph after a blank line: a new paragraph in the innermost item.
            while self.lists.len() > 1 && indent < self.lists[self.lists.len() - 1].indent + 2 {
                self.close_innermost();
            }
        }
        self.para.push(body.to_owned());
        self.blank = false;
        Ok(())
    }

    fn item(&mut self, n: usize, indent: usize, ordered: bool, text: &str) -> Result<(), TemplateError> {
        // Find the list this item belongs to: close lists it is to the left of, and a list of the
        // other kind at the same level; open a list if it is the first item or nested deeper.
        loop {
            match self.lists.last() {
                Some(last) if indent < last.indent => self.close_innermost(),
                Some(last) if indent >= last.indent + 2 => break self.open(n, indent, ordered)?,
                Some(last) if last.ordered == ordered => break,
                Some(_) => self.close_innermost(),
                None => break self.open(n, indent, ordered)?,
            }
        }
        if let Some(list) = self.lists.last_mut() {
            list.items.push(Vec::new());
        }
        if !text.is_empty() {
            self.para.push(text.to_owned());
        }
        Ok(())
    }

    fn open(&mut self, n: usize, indent: usize, ordered: bool) -> Result<(), TemplateError> {
        if self.lists.len() >= MAX_LIST_DEPTH {
            return Err(TemplateError::TooDeep { line: n, max: MAX_LIST_DEPTH });
        }
        self.lists.push(OpenList { ordered, indent, items: Vec::new() });
        self.count += 1;
        Ok(())
    }

    /// Adds a block where content currently goes: the innermost open item, or the top level.
    fn push(&mut self, block: Block) {
        self.count += 1;
        match self.lists.last_mut().and_then(|l| l.items.last_mut()) {
            Some(item) => item.push(block),
            None => self.blocks.push(block),
        }
    }

    fn flush_para(&mut self) {
        if self.para.is_empty() {
            return;
        }
        let text = self.para.join(" ");
        self.para.clear();
        self.push(Block::Paragraph { content: inlines(&text) });
    }

    fn close_innermost(&mut self) {
        self.flush_para();
        let Some(list) = self.lists.pop() else { return };
        let block = if list.ordered {
            Block::OrderedList { items: list.items }
        } else {
            Block::BulletList { items: list.items }
        };
        match self.lists.last_mut().and_then(|l| l.items.last_mut()) {
            Some(item) => item.push(block),
            None => self.blocks.push(block),
        }
    }

    fn close_all(&mut self) {
        self.flush_para();
        while !self.lists.is_empty() {
            self.close_innermost();
        }
    }
}

fn is_thematic_break(body: &str) -> bool {
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    compact.len() >= 3 && ['-', '*', '_'].iter().any(|m| compact.chars().all(|c| c == *m))
}

/// `## Text` -> (2, "Text"). Closing `#`s are dropped.
fn heading(body: &str) -> Option<(u8, &str)> {
    let hashes = body.bytes().take_while(|b| *b == b'#').count();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = &body[hashes..];
    if !rest.is_empty() && !rest.starts_with(' ') {
        return None;
    }
    let mut text = rest.trim();
    let stripped = text.trim_end_matches('#');
    if stripped.is_empty() || stripped.ends_with(' ') {
        text = stripped.trim_end();
    }
    Some((hashes as u8, text))
}

/// `- text`, `* text`, `+ text` -> (false, text); `1. text`, `1) text` -> (true, text).
fn list_marker(body: &str) -> Option<(bool, &str)> {
    let after = |rest: &str| -> Option<String> {
        if rest.is_empty() {
            Some(String::new())
        } else if rest.starts_with(' ') {
            Some(rest.trim_start().to_owned())
        } else {
            None
        }
    };
    let first = body.chars().next()?;
    if matches!(first, '-' | '*' | '+') {
        let rest = &body[1..];
        after(rest)?;
        return Some((false, rest.trim_start()));
    }
    let digits = body.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=9).contains(&digits) {
        let rest = &body[digits..];
        if rest.starts_with('.') || rest.starts_with(')') {
            let rest = &rest[1..];
            after(rest)?;
            return Some((true, rest.trim_start()));
        }
    }
    None
}

/// Parses inline Markdown: `**bold**` / `__bold__`, `*italic*` / `_italic_`, `[text](href)`, and
/// backslash escapes. A delimiter opens only if a matching one closes it later; `_` inside a word
/// (`snake_case`) is text.
pub(crate) fn inlines(text: &str) -> Vec<Inline> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    parse_inline(&chars, false, false, None, &mut out);
    merge_runs(out)
}

fn parse_inline(chars: &[char], bold: bool, italic: bool, link: Option<&str>, out: &mut Vec<Inline>) {
    let mut bold = bold;
    let mut italic = italic;
    let mut buf = String::new();
    let flush = |buf: &mut String, out: &mut Vec<Inline>, bold: bool, italic: bool| {
        if !buf.is_empty() {
            out.push(Inline { text: std::mem::take(buf), bold, italic, link: link.map(str::to_owned) });
        }
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() && chars[i + 1].is_ascii_punctuation() {
            buf.push(chars[i + 1]);
            i += 2;
            continue;
        }
        if c == '[' && link.is_none() {
            if let Some((label_end, href, end)) = find_link(chars, i) {
                flush(&mut buf, out, bold, italic);
                parse_inline(&chars[i + 1..label_end], bold, italic, Some(&href), out);
                i = end;
                continue;
            }
        }
        if c == '*' || c == '_' {
            let run = chars[i..].iter().take_while(|&&x| x == c).count();
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + run).copied();
            let intraword =
                c == '_' && prev.is_some_and(char::is_alphanumeric) && next.is_some_and(char::is_alphanumeric);
            if !intraword {
                // A delimiter run opens a mark only if it is followed by text and the same
                // delimiter appears later; it closes a mark that is open.
                let later = &chars[i + run..];
                let opens = |d: &str| next.is_some_and(|n| !n.is_whitespace()) && contains(later, d);
                let mut used = 0;
                // `***` toggles both; `**` bold; `*` italic.
                if run >= 2 && (bold || opens(&format!("{c}{c}"))) {
                    flush(&mut buf, out, bold, italic);
                    bold = !bold;
                    used = 2;
                }
                if run > used && used < 3 && (italic || opens(&c.to_string())) {
                    flush(&mut buf, out, bold, italic);
                    italic = !italic;
                    used += 1;
                }
                if used > 0 {
                    // Any further delimiters of the run are text.
                    for _ in used..run {
                        buf.push(c);
                    }
                    i += run;
                    continue;
                }
                for _ in 0..run {
                    buf.push(c);
                }
                i += run;
                continue;
            }
        }
        buf.push(c);
        i += 1;
    }
    flush(&mut buf, out, bold, italic);
}

fn contains(hay: &[char], needle: &str) -> bool {
    let n: Vec<char> = needle.chars().collect();
    hay.windows(n.len()).any(|w| w == n.as_slice())
}

/// `[label](href)` starting at `start`: (index of `]`, href, index after `)`).
fn find_link(chars: &[char], start: usize) -> Option<(usize, String, usize)> {
    let mut depth = 0usize;
    let mut j = start;
    let close = loop {
        j += 1;
        match chars.get(j)? {
            '\\' => j += 1,
            '[' => depth += 1,
            ']' if depth == 0 => break j,
            ']' => depth -= 1,
            _ => {}
        }
    };
    if chars.get(close + 1) != Some(&'(') {
        return None;
    }
    let href_start = close + 2;
    let href_end = href_start + chars[href_start..].iter().position(|&c| c == ')')?;
    let href: String = chars[href_start..href_end].iter().collect();
    let href = href.trim().trim_start_matches('<').trim_end_matches('>').to_owned();
    if href.is_empty() || href.contains(char::is_whitespace) {
        return None;
    }
    Some((close, href, href_end + 1))
}
