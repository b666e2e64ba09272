//! The Markdown and CSV exports, checked against hand-checked files in `tests/expected/`, and the
//! CSV formula-injection guard.
//!
//! After a deliberate change to an export, regenerate with `COMMONPAD_UPDATE_EXPECTED=1 cargo test
//! -p commonpad-schema --test exports`, then read the diff line by line before committing it.

mod common;

use commonpad_schema::{read_session, render_csv, render_markdown, Item, ListKind, Session};
use std::path::PathBuf;
use yrs::Transact;

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/expected").join(name);
    if std::env::var_os("COMMONPAD_UPDATE_EXPECTED").is_some() {
        std::fs::write(&path, actual).expect("write expected file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if expected != actual {
        let line = expected.lines().zip(actual.lines()).position(|(a, b)| a != b);
        panic!("{name} differs (first differing line: {line:?})\n--- actual ---\n{actual}");
    }
}

fn sample() -> Session {
    read_session(&common::sample_doc().transact())
}

fn js_session() -> Session {
    let bin =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/js-session.bin")).expect("fixture");
    read_session(&common::decode(&bin).transact())
}

#[test]
fn markdown_of_the_sample_session() {
    check("sample.md", &render_markdown(&sample()));
}

#[test]
fn markdown_of_the_js_session() {
    check("js-session.md", &render_markdown(&js_session()));
}

#[test]
fn csv_of_every_list_of_the_sample_session() {
    let s = sample();
    for list in ListKind::ALL {
        check(&format!("sample-{list}.csv"), &render_csv(&s, list));
    }
}

#[test]
fn csv_of_the_js_session_needs() {
    check("js-session-needs.csv", &render_csv(&js_session(), ListKind::Needs));
}

fn one_need(text: &str, author: &str) -> Session {
    Session {
        needs: vec![Item {
            id: "x".into(),
            text: text.into(),
            author: author.into(),
            created_at: 5.0,
            ..Item::default()
        }],
        ..Session::default()
    }
}

fn data_row(s: &Session) -> String {
    let csv = render_csv(s, ListKind::Needs);
    let (_, row) = csv.split_once("\r\n").expect("header");
    row.to_owned()
}

#[test]
fn csv_cells_that_a_spreadsheet_would_run_as_formulas_are_prefixed_with_a_quote() {
    for (text, cell) in [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("=HYPERLINK(\"http://x\",\"y\")", "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""),
        ("=A1,B1", "\"'=A1,B1\""),
        ("a=1", "a=1"),
        (" =1", " =1"),
        ("", ""),
    ] {
        assert_eq!(data_row(&one_need(text, "a")), format!("x,{cell},a,,5,0\r\n"), "text {text:?}");
    }
    // Every text column is guarded, not just `text`: authors and ids come from clients too.
    assert_eq!(data_row(&one_need("t", "=cmd|' /C calc'!A0")), "x,t,'=cmd|' /C calc'!A0,,5,0\r\n");
}

#[test]
fn csv_quoting_follows_rfc_4180() {
    assert_eq!(data_row(&one_need("plain", "a")), "x,plain,a,,5,0\r\n");
    assert_eq!(data_row(&one_need("a,b", "a")), "x,\"a,b\",a,,5,0\r\n");
    assert_eq!(data_row(&one_need("say \"hi\"", "a")), "x,\"say \"\"hi\"\"\",a,,5,0\r\n");
    assert_eq!(data_row(&one_need("one\ntwo", "a")), "x,\"one\ntwo\",a,,5,0\r\n");
    assert_eq!(data_row(&one_need("one\r\ntwo", "a")), "x,\"one\r\ntwo\",a,,5,0\r\n");
    assert_eq!(data_row(&one_need("ünïcödé 🌍", "a")), "x,ünïcödé 🌍,a,,5,0\r\n");
    let csv = render_csv(&Session::default(), ListKind::Collaborators);
    assert_eq!(csv, "id,text,author,authorId,createdAt,votes,name,organization,interests\r\n");
}

#[test]
fn csv_created_at_is_an_integer_when_it_is_one() {
    let mut s = one_need("t", "a");
    s.needs[0].created_at = 1767225600000.0;
    assert_eq!(data_row(&s), "x,t,a,,1767225600000,0\r\n");
    s.needs[0].created_at = 1.5;
    assert_eq!(data_row(&s), "x,t,a,,1.5,0\r\n");
}

#[test]
fn markdown_escapes_user_text() {
    let mut s =
        one_need("# not a heading\n- not a list\n1. not ordered\n**not bold** [not](a link) <b>html</b>", "_me_");
    s.needs[0].votes = vec!["p".into()];
    let md = render_markdown(&s);
    let section = md.split("## Needs\n\n").nth(1).expect("needs section");
    let item: Vec<&str> = section.lines().take(5).collect();
    assert_eq!(
        item,
        [
            "- \\# not a heading\\",
            "  \\- not a list\\",
            "  1\\. not ordered\\",
            "  \\*\\*not bold\\*\\* \\[not\\](a link) \\<b\\>html\\</b\\>\\",
            "  *by \\_me\\_ · 1 vote*",
        ]
    );
}

#[test]
fn markdown_outline_marks_and_unsafe_links() {
    use commonpad_schema::{Block, Inline};
    let run = |text: &str, bold: bool, italic: bool, link: Option<&str>| Inline {
        text: text.into(),
        bold,
        italic,
        link: link.map(Into::into),
    };
    let s = Session {
        outline: vec![Block::Paragraph {
            content: vec![
                run("plain ", false, false, None),
                run("bold ", true, false, None),
                run("both", true, true, None),
                run(" after", false, false, None),
                run(" js", false, false, Some("javascript:alert(1)")),
                run(" ok", false, false, Some("https://example.org/a b(c)")),
            ],
        }],
        ..Session::default()
    };
    let md = render_markdown(&s);
    let para = md.lines().nth(8).expect("outline line");
    assert_eq!(para, "plain **bold** ***both*** after js[ ok](https://example.org/a%20b%28c%29)");
}
