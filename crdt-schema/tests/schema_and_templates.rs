//! `schema.json` agrees with the Rust types, and Markdown templates parse as documented.

use commonpad_schema::*;
use serde_json::Value;

fn schema_json() -> Value {
    serde_json::from_str(SCHEMA_JSON).expect("schema.json is JSON")
}

#[test]
fn schema_json_is_a_2020_12_schema_with_the_facts() {
    let v = schema_json();
    assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let s = schema();
    assert_eq!(s.version, 1);
    assert_eq!(s.meta_fields, ["title", "event", "date", "language", "status"]);
    assert_eq!(s.statuses, ["draft", "live", "closed"]);
    assert_eq!(s.resource_kinds, ["resource", "service"]);
    assert_eq!(s.resource_formats.len(), 13);
    assert!(s.resource_formats.contains(&s.default_format));
    assert!(s.resource_kinds.contains(&s.default_kind));
    assert!(s.statuses.contains(&s.default_status));
    assert_eq!(s.base_fields, ["id", "text", "author", "authorId", "createdAt", "votes"]);
    assert_eq!(s.contacts_root, "contacts");
    assert_eq!(s.private_suffix, ".private");
}

#[test]
fn list_kinds_match_the_schema() {
    let s = schema();
    let names: Vec<&str> = s.lists.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ListKind::ALL.map(ListKind::as_str));
    for list in ListKind::ALL {
        assert_eq!(list.as_str().parse::<ListKind>(), Ok(list));
        assert_eq!(list.to_string(), list.as_str());
        // Every extra field is one the Item struct has.
        for field in list.extra_fields() {
            let mut item = Item::default();
            assert!(item.extra(field).is_none());
            let json = serde_json::to_value(&item).expect("json");
            assert!(json.get(field).is_none());
            item = serde_json::from_value(serde_json::json!({
                "id": "", "text": "", "author": "", "authorId": "", "createdAt": 0, "votes": [], field: "v"
            }))
            .expect("an Item field");
            assert_eq!(item.extra(field), Some("v"), "{field}");
        }
        // ...and a root of the export.
        assert!(schema_json()["properties"][list.as_str()].is_object());
    }
    assert_eq!(ListKind::Resources.extra_fields(), ["kind", "format"]);
    assert_eq!(ListKind::Partners.extra_fields(), ["organization", "website"]);
    assert_eq!(ListKind::Collaborators.extra_fields(), ["name", "organization", "interests"]);
    assert!(ListKind::Needs.extra_fields().is_empty());
    assert_eq!(ListKind::Resources.title(), "Resources and services");
    let err = "ideas".parse::<ListKind>().unwrap_err();
    assert_eq!(err.to_string(), "unknown list `ideas`: expected needs, resources, partners or collaborators");
}

#[test]
fn block_names_and_marks_match_the_schema() {
    let s = schema();
    let blocks = [
        Block::Paragraph { content: vec![] },
        Block::Heading { level: 1, content: vec![] },
        Block::BulletList { items: vec![] },
        Block::OrderedList { items: vec![] },
    ];
    let names: Vec<&str> = blocks.iter().map(Block::node_name).collect();
    assert_eq!(names, s.outline_blocks);
    for b in &blocks {
        assert_eq!(serde_json::to_value(b).expect("json")["type"], b.node_name());
    }
    assert_eq!(s.marks, ["bold", "italic", "link"]);
    let all = Inline { text: "x".into(), bold: true, italic: true, link: Some("https://e.org".into()) };
    let json = serde_json::to_value(&all).expect("json");
    for mark in &s.marks {
        assert!(json.get(mark).is_some(), "{mark}");
    }
    assert_eq!(serde_json::to_value(Inline::plain("x")).expect("json"), serde_json::json!({"text": "x"}));
    assert_eq!((s.heading_min, s.heading_max, s.heading_default), (1, 6, 1));
    assert_eq!(s.list_item, "listItem");
}

// ------------------------------------------------------------------------------------------------
// Templates

fn p(text: &str) -> Block {
    Block::Paragraph { content: vec![Inline::plain(text)] }
}

fn h(level: u8, text: &str) -> Block {
    Block::Heading { level, content: vec![Inline::plain(text)] }
}

fn bullets(items: &[&str]) -> Block {
    Block::BulletList { items: items.iter().map(|t| vec![p(t)]).collect() }
}

#[test]
fn the_builtin_template_follows_an_open_education_session() {
    let t = Template::builtin();
    let parsed =
        Template::from_markdown(include_str!("../templates/oer-session.md")).expect("the built-in template parses");
    assert_eq!(t, parsed);
    let blocks = t.blocks();
    assert_eq!(blocks[0], h(1, "{{title}}"));
    let sections: Vec<String> = blocks
        .iter()
        .filter_map(|b| match b {
            Block::Heading { level: 2, content } => Some(content.iter().map(|i| i.text.as_str()).collect()),
            _ => None,
        })
        .collect();
    assert_eq!(
        sections,
        [
            "Welcome and overview of the work to date",
            "What national governments will need to implement the UNESCO Recommendation on OER",
            "Refining the list of resources and direct support services",
            "Which organisations to partner with",
            "Who wants to collaborate over the next 1-2 years",
            "Next steps: share the outcomes back with the partner networks",
        ]
    );
    // Each section has prompts: a paragraph or a list after its heading.
    for (i, b) in blocks.iter().enumerate() {
        if matches!(b, Block::Heading { level: 2, .. }) {
            assert!(matches!(
                blocks.get(i + 1),
                Some(Block::Paragraph { .. } | Block::BulletList { .. } | Block::OrderedList { .. })
            ));
        }
    }
}

#[test]
fn markdown_blocks() {
    let md = "# One\n\n## Two ##\n###### Six\n####### seven is text\n#nospace\n\nfirst line\nsecond line\n\n- a\n* b\n+ c\n\n1. x\n2) y\n\n---\n\nend";
    let t = Template::from_markdown(md).expect("parses");
    assert_eq!(
        t.blocks(),
        [
            h(1, "One"),
            h(2, "Two"),
            h(6, "Six"),
            p("####### seven is text #nospace"),
            p("first line second line"),
            bullets(&["a", "b", "c"]),
            Block::OrderedList { items: vec![vec![p("x")], vec![p("y")]] },
            p("end"),
        ]
    );
}

#[test]
fn markdown_nested_lists_and_continuations() {
    let md = "- one\n  continued\n  - inner a\n  - inner b\n    1. deepest\n- two\n\n  second paragraph of two\n1. switches kind\n\nafter";
    let t = Template::from_markdown(md).expect("parses");
    assert_eq!(
        t.blocks(),
        [
            Block::BulletList {
                items: vec![
                    vec![
                        p("one continued"),
                        Block::BulletList {
                            items: vec![
                                vec![p("inner a")],
                                vec![p("inner b"), Block::OrderedList { items: vec![vec![p("deepest")]] }]
                            ]
                        }
                    ],
                    vec![p("two"), p("second paragraph of two")],
                ]
            },
            Block::OrderedList { items: vec![vec![p("switches kind")]] },
            p("after"),
        ]
    );
}

#[test]
fn markdown_inline_marks() {
    let inl = |md: &str| match &Template::from_markdown(md).expect("parses").blocks()[0] {
        Block::Paragraph { content } => content.clone(),
        other => panic!("{other:?}"),
    };
    let b = |t: &str| Inline { text: t.into(), bold: true, ..Inline::default() };
    let i = |t: &str| Inline { text: t.into(), italic: true, ..Inline::default() };
    let t = Inline::plain;
    assert_eq!(inl("a **b** c"), [t("a "), b("b"), t(" c")]);
    assert_eq!(inl("a __b__ *c* _d_"), [t("a "), b("b"), t(" "), i("c"), t(" "), i("d")]);
    assert_eq!(inl("***both*** x"), [Inline { text: "both".into(), bold: true, italic: true, link: None }, t(" x")]);
    assert_eq!(
        inl("see [the **Recommendation**](https://www.unesco.org/x) now"),
        [
            t("see "),
            Inline { text: "the ".into(), link: Some("https://www.unesco.org/x".into()), ..Inline::default() },
            Inline {
                text: "Recommendation".into(),
                bold: true,
                link: Some("https://www.unesco.org/x".into()),
                ..Inline::default()
            },
            t(" now"),
        ]
    );
    // Not emphasis: unclosed, intraword underscores, escaped, a lone star, a broken link.
    assert_eq!(inl("2 * 3 = 6"), [t("2 * 3 = 6")]);
    assert_eq!(inl("snake_case_name"), [t("snake_case_name")]);
    assert_eq!(inl("\\*not\\* \\[x\\](y)"), [t("*not* [x](y)")]);
    assert_eq!(inl("**open only"), [t("**open only")]);
    assert_eq!(inl("[text](no closing"), [t("[text](no closing")]);
    assert_eq!(inl("{{title}} – {{date}}"), [t("{{title}} – {{date}}")]);
}

#[test]
fn markdown_refusals_have_clear_messages() {
    let err = |md: &str| Template::from_markdown(md).unwrap_err();
    let big = "a".repeat(MAX_TEMPLATE_BYTES + 1);
    assert_eq!(err(&big), TemplateError::TooLarge { size: MAX_TEMPLATE_BYTES + 1, max: MAX_TEMPLATE_BYTES });
    assert_eq!(err(&big).to_string(), "the template is 65537 bytes; templates are limited to 65536 bytes");
    // Exactly at the limit is fine.
    assert!(Template::from_markdown(&"a".repeat(MAX_TEMPLATE_BYTES)).is_ok());

    let many = "para\n\n".repeat(MAX_TEMPLATE_BLOCKS + 1);
    assert_eq!(err(&many), TemplateError::TooManyBlocks { max: 500 });
    assert!(Template::from_markdown(&"para\n\n".repeat(MAX_TEMPLATE_BLOCKS)).is_ok());
    let many_items = "- item\n".repeat(MAX_TEMPLATE_BLOCKS);
    assert_eq!(err(&many_items), TemplateError::TooManyBlocks { max: 500 }, "a list item's paragraph counts");

    for empty in ["", "   \n\n\t\n", "---\n***\n"] {
        assert_eq!(err(empty), TemplateError::Empty);
    }
    assert_eq!(err("").to_string(), "the template is empty: write at least one heading, paragraph or list");

    let deep = "- 1\n  - 2\n    - 3\n      - 4\n        - 5\n";
    assert_eq!(err(deep), TemplateError::TooDeep { line: 5, max: 4 });
    assert!(Template::from_markdown("- 1\n  - 2\n    - 3\n      - 4\n").is_ok());

    assert_eq!(err("# T\n\n```\ncode\n```"), TemplateError::Unsupported { line: 3, what: "code blocks" });
    assert_eq!(
        err("# T\n\n```\ncode\n```").to_string(),
        "line 3: code blocks are not supported in templates; use headings (#), paragraphs and lists (-, *, 1.)"
    );
    assert_eq!(err("> quoted"), TemplateError::Unsupported { line: 1, what: "block quotes" });
    assert_eq!(err("a\n\n| a | b |"), TemplateError::Unsupported { line: 3, what: "tables" });
    assert_eq!(err("    indented code"), TemplateError::Unsupported { line: 1, what: "code blocks" });
    assert_eq!(err("ok\nbad\u{0}"), TemplateError::ControlCharacter { line: 2 });
}

#[test]
fn crlf_and_tabs_are_accepted() {
    let t = Template::from_markdown("# Title\r\n\r\n-\tone\r\n- two\r\n").expect("parses");
    assert_eq!(t.blocks(), [h(1, "Title"), bullets(&["one", "two"])]);
}
